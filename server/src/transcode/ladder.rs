//! The ladder the origin makes from a single-rendition broadcast: `--transcode` parsed into
//! rungs, and which rungs apply to a source of a given height (never upscaled).
//!
//! Syntax: a comma-separated list of `HEIGHTp:BITRATE` rungs, bitrate in bit/s with an
//! optional `k` or `M` suffix (`720p:2500k,480p:1200k,240p:400k`), or the name `default`
//! ([`DEFAULT_LADDER`]). Heights are even (4:2:0 video) and at most 4320; every rung is
//! different. Width follows the source's aspect ratio.

use std::fmt;
use std::str::FromStr;

/// `--transcode default`: the three rungs of the README's ladder.
pub const DEFAULT_LADDER: &str = "720p:2500k,480p:1200k,240p:400k";

/// Largest height a rung may ask for (8K).
const MAX_HEIGHT: u32 = 4320;

/// One rendition the transcoder makes: picture height and target video bitrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    pub height: u32,
    pub bitrate: u64,
}

impl Rung {
    /// The rung's label in the catalog and for `--rendition`: `480p`.
    pub fn label(&self) -> String {
        format!("{}p", self.height)
    }

    /// The MoQ track name of this rung made from source track `source`: `video.480p`.
    pub fn track_name(&self, source: &str) -> String {
        format!("{source}.{}p", self.height)
    }

    /// The rung's width for a `source_width`x`source_height` picture: the same aspect
    /// ratio, rounded to an even number (what ffmpeg's `scale=-2:H` does).
    pub fn width_for(&self, source_width: u32, source_height: u32) -> u32 {
        if source_height == 0 {
            return 0;
        }
        let exact = u64::from(source_width) * u64::from(self.height) / u64::from(source_height);
        let even = exact.div_ceil(2) * 2;
        u32::try_from(even.max(2)).unwrap_or(u32::MAX)
    }
}

/// A parsed `--transcode` value: rungs, highest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder {
    rungs: Vec<Rung>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LadderError {
    #[error("empty ladder: give rungs like 720p:2500k,480p:1200k or `default`")]
    Empty,
    #[error("rung {0:?}: expected HEIGHTp:BITRATE, e.g. 480p:1200k")]
    Syntax(String),
    #[error("rung {0:?}: the height must be even and between 2 and {MAX_HEIGHT}")]
    Height(String),
    #[error("rung {0:?}: the bitrate must be a number of bit/s (k or M suffix) above 0")]
    Bitrate(String),
    #[error("rung {0:?} appears twice")]
    Duplicate(String),
}

impl FromStr for Ladder {
    type Err = LadderError;

    fn from_str(text: &str) -> Result<Self, LadderError> {
        let text = text.trim();
        let text = if text == "default" {
            DEFAULT_LADDER
        } else {
            text
        };
        let mut rungs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let rung = parse_rung(part)?;
            if rungs.contains(&rung) {
                return Err(LadderError::Duplicate(part.to_string()));
            }
            rungs.push(rung);
        }
        if rungs.is_empty() {
            return Err(LadderError::Empty);
        }
        rungs.sort_by(|a, b| b.height.cmp(&a.height).then(b.bitrate.cmp(&a.bitrate)));
        Ok(Ladder { rungs })
    }
}

fn parse_rung(part: &str) -> Result<Rung, LadderError> {
    let (height, bitrate) = part
        .split_once(':')
        .ok_or_else(|| LadderError::Syntax(part.to_string()))?;
    let height = height
        .strip_suffix('p')
        .ok_or_else(|| LadderError::Syntax(part.to_string()))?;
    let height: u32 = height
        .parse()
        .map_err(|_| LadderError::Height(part.to_string()))?;
    if !(2..=MAX_HEIGHT).contains(&height) || !height.is_multiple_of(2) {
        return Err(LadderError::Height(part.to_string()));
    }
    let (digits, scale) = match bitrate.as_bytes().last() {
        Some(b'k' | b'K') => (&bitrate[..bitrate.len() - 1], 1_000),
        Some(b'M' | b'm') => (&bitrate[..bitrate.len() - 1], 1_000_000),
        _ => (bitrate, 1),
    };
    let bitrate = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| LadderError::Bitrate(part.to_string()))?;
    Ok(Rung { height, bitrate })
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .rungs
            .iter()
            .map(|r| format!("{}p:{}k", r.height, r.bitrate / 1000))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Ladder {
    /// The rungs to make from a source `source_height` pixels high: those no higher than
    /// it (a rung at the source's own height re-encodes at the rung's bitrate; a higher
    /// one would only upscale), highest first. Empty: nothing to make.
    pub fn for_source(&self, source_height: u32) -> Vec<Rung> {
        self.rungs
            .iter()
            .copied()
            .filter(|r| r.height <= source_height)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rungs_highest_first() {
        let ladder: Ladder = "240p:400k, 720p:2500k".parse().expect("valid");
        assert_eq!(
            ladder.for_source(u32::MAX),
            &[
                Rung {
                    height: 720,
                    bitrate: 2_500_000
                },
                Rung {
                    height: 240,
                    bitrate: 400_000
                }
            ]
        );
        assert_eq!(ladder.to_string(), "720p:2500k,240p:400k");
        let plain: Ladder = "360p:800000,144p:1M".parse().expect("valid");
        assert_eq!(plain.for_source(u32::MAX)[0].bitrate, 800_000);
        assert_eq!(plain.for_source(u32::MAX)[1].bitrate, 1_000_000);
    }

    #[test]
    fn default_is_the_readme_ladder() {
        let ladder: Ladder = "default".parse().expect("default");
        assert_eq!(ladder.to_string(), DEFAULT_LADDER);
    }

    #[test]
    fn refuses_bad_rungs() {
        assert_eq!("".parse::<Ladder>(), Err(LadderError::Empty));
        assert_eq!(" , ".parse::<Ladder>(), Err(LadderError::Empty));
        assert!(matches!(
            "480:1200k".parse::<Ladder>(),
            Err(LadderError::Syntax(_))
        ));
        assert!(matches!(
            "480p".parse::<Ladder>(),
            Err(LadderError::Syntax(_))
        ));
        assert!(matches!(
            "481p:1200k".parse::<Ladder>(),
            Err(LadderError::Height(_))
        ));
        assert!(matches!(
            "9000p:1200k".parse::<Ladder>(),
            Err(LadderError::Height(_))
        ));
        assert!(matches!(
            "480p:0k".parse::<Ladder>(),
            Err(LadderError::Bitrate(_))
        ));
        assert!(matches!(
            "720p:2.5M".parse::<Ladder>(),
            Err(LadderError::Bitrate(_))
        ));
        assert!(matches!(
            "480p:fast".parse::<Ladder>(),
            Err(LadderError::Bitrate(_))
        ));
        assert!(matches!(
            "480p:99999999999999999999k".parse::<Ladder>(),
            Err(LadderError::Bitrate(_))
        ));
        assert!(matches!(
            "480p:1200k,480p:1200k".parse::<Ladder>(),
            Err(LadderError::Duplicate(_))
        ));
    }

    #[test]
    fn never_upscales() {
        let ladder: Ladder = "720p:2500k,480p:1200k,240p:400k".parse().expect("valid");
        let heights = |h| {
            ladder
                .for_source(h)
                .iter()
                .map(|r| r.height)
                .collect::<Vec<_>>()
        };
        assert_eq!(heights(1080), vec![720, 480, 240]);
        assert_eq!(heights(720), vec![720, 480, 240]);
        assert_eq!(heights(360), vec![240]);
        assert_eq!(heights(180), Vec::<u32>::new());
    }

    #[test]
    fn widths_keep_the_aspect_ratio_and_are_even() {
        let rung = Rung {
            height: 144,
            bitrate: 1,
        };
        assert_eq!(rung.width_for(320, 180), 256);
        assert_eq!(rung.width_for(1280, 720), 256);
        let rung = Rung {
            height: 480,
            bitrate: 1,
        };
        assert_eq!(rung.width_for(1280, 720), 854);
        assert_eq!(rung.width_for(0, 0), 0);
        assert_eq!(rung.label(), "480p");
        assert_eq!(rung.track_name("video"), "video.480p");
    }
}
