//! Choosing renditions: one track per alternate group of a catalog (MSF `altGroup`), by
//! name or as the lowest or highest, and every other media track as it is.
//!
//! A subscriber (`stagecast subscribe --rendition`) asks [`choose_tracks`] for the tracks
//! to subscribe to. Tracks that share an `altGroup` are alternates: exactly one of them is
//! taken. A video track without an `altGroup` is a rendition on its own (so a broadcast
//! with one video track still answers to its name). Tracks without an `altGroup` are
//! always taken, audio included.
//!
//! Ranking ("lowest", "highest") is by `bitrate` when every alternate of the group has
//! one, else by picture area, then framerate; ties keep catalog order.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Catalog, CatalogTrack};

/// Which rendition to take from each alternate group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RenditionChoice {
    /// The best of every group (the default: the subscriber takes what the publisher
    /// offers at its best).
    #[default]
    Highest,
    /// The cheapest of every group.
    Lowest,
    /// The track with this name or label (`video1`, `480p`); other groups take their
    /// highest.
    Named(String),
}

impl FromStr for RenditionChoice {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "highest" => Self::Highest,
            "lowest" => Self::Lowest,
            name => Self::Named(name.to_string()),
        })
    }
}

/// The named rendition is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no rendition {name:?} in this broadcast; it has: {}", list(.available))]
pub struct UnknownRendition {
    /// The name asked for.
    pub name: String,
    /// What there is, one line per rendition: `video1 (480p, 854x480, 1200 kbit/s)`.
    pub available: Vec<String>,
}

fn list(available: &[String]) -> String {
    if available.is_empty() {
        "no video renditions".to_string()
    } else {
        available.join(", ")
    }
}

/// One rendition, as a person reads it: `video1 (480p, 854x480, 30 fps, 1200 kbit/s)`.
pub fn describe(track: &CatalogTrack) -> String {
    let mut parts = Vec::new();
    if let Some(label) = &track.label {
        parts.push(label.clone());
    }
    if let (Some(w), Some(h)) = (track.width, track.height) {
        parts.push(format!("{w}x{h}"));
    }
    if let Some(fps) = track.framerate {
        parts.push(format!("{fps} fps"));
    }
    if let Some(bitrate) = track.bitrate {
        parts.push(format!("{} kbit/s", bitrate.div_ceil(1000)));
    }
    if parts.is_empty() {
        track.name.clone()
    } else {
        format!("{} ({})", track.name, parts.join(", "))
    }
}

/// A set of tracks of which one is taken.
struct Alternates<'a> {
    tracks: Vec<&'a CatalogTrack>,
}

impl Alternates<'_> {
    fn ranked(&self, order: fn(Ordering) -> Ordering) -> Option<&CatalogTrack> {
        let by_bitrate = self.tracks.iter().all(|t| t.bitrate.is_some());
        let key = |t: &CatalogTrack| {
            let area = u64::from(t.width.unwrap_or(0)) * u64::from(t.height.unwrap_or(0));
            let fps = t.framerate.unwrap_or(0.0);
            let bitrate = t.bitrate.unwrap_or(0);
            (by_bitrate.then_some(bitrate), area, fps, bitrate)
        };
        // The first of equals wins: fold keeps the earlier one unless strictly better.
        self.tracks
            .iter()
            .copied()
            .fold(None, |best, t| match best {
                None => Some(t),
                Some(b) => {
                    let cmp = order(key(t).partial_cmp(&key(b)).unwrap_or(Ordering::Equal));
                    Some(if cmp == Ordering::Greater { t } else { b })
                }
            })
    }
}

/// Every rendition of `catalog` a [`RenditionChoice::Named`] may name: the members of
/// alternate groups and every video track, described by [`describe`].
pub fn renditions(catalog: &Catalog) -> Vec<String> {
    catalog
        .tracks
        .iter()
        .filter(|t| is_rendition(t))
        .map(describe)
        .collect()
}

fn is_rendition(track: &CatalogTrack) -> bool {
    track.is_cmaf() && (track.alt_group.is_some() || track.is_video())
}

/// The names of the CMAF tracks to take from `catalog`, in catalog order: one per
/// alternate group as `choice` says, and every track that has no alternates.
pub fn choose_tracks(
    catalog: &Catalog,
    choice: &RenditionChoice,
) -> Result<Vec<String>, UnknownRendition> {
    let media: Vec<&CatalogTrack> = catalog.tracks.iter().filter(|t| t.is_cmaf()).collect();
    let mut groups: Vec<(u64, Alternates)> = Vec::new();
    for track in &media {
        if let Some(group) = track.alt_group {
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, alternates)) => alternates.tracks.push(track),
                None => groups.push((
                    group,
                    Alternates {
                        tracks: vec![track],
                    },
                )),
            }
        }
    }
    let named = match choice {
        RenditionChoice::Named(name) => {
            let found = media
                .iter()
                .find(|t| is_rendition(t) && &t.name == name)
                .or_else(|| {
                    media
                        .iter()
                        .find(|t| is_rendition(t) && t.label.as_deref() == Some(name.as_str()))
                });
            match found {
                Some(track) => Some(track.name.as_str()),
                None => {
                    return Err(UnknownRendition {
                        name: name.clone(),
                        available: renditions(catalog),
                    })
                }
            }
        }
        _ => None,
    };
    let mut chosen: Vec<&str> = Vec::new();
    for (_, alternates) in &groups {
        let pick = match (choice, named) {
            (_, Some(name)) if alternates.tracks.iter().any(|t| t.name == name) => Some(name),
            (RenditionChoice::Lowest, _) => alternates
                .ranked(Ordering::reverse)
                .map(|t| t.name.as_str()),
            _ => alternates.ranked(|o| o).map(|t| t.name.as_str()),
        };
        chosen.extend(pick);
    }
    Ok(media
        .iter()
        .filter(|t| t.alt_group.is_none() || chosen.contains(&t.name.as_str()))
        .map(|t| t.name.clone())
        .collect())
}

impl fmt::Display for RenditionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Highest => f.write_str("highest"),
            Self::Lowest => f.write_str("lowest"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(name: &str, height: u32, bitrate: Option<u64>, alt: Option<u64>) -> CatalogTrack {
        let mut track = CatalogTrack::cmaf(name);
        track.role = Some("video".into());
        track.width = Some(height * 16 / 9);
        track.height = Some(height);
        track.framerate = Some(30.0);
        track.bitrate = bitrate;
        track.alt_group = alt;
        track.label = Some(format!("{height}p"));
        track
    }

    fn audio() -> CatalogTrack {
        let mut track = CatalogTrack::cmaf("audio");
        track.role = Some("audio".into());
        track.bitrate = Some(128_000);
        track
    }

    fn ladder() -> Catalog {
        Catalog::new(vec![
            video("video", 720, Some(2_500_000), Some(1)),
            video("video1", 480, Some(1_200_000), Some(1)),
            video("video2", 240, Some(400_000), Some(1)),
            audio(),
            CatalogTrack::event_timeline("interaction", "x", &["video"]),
        ])
    }

    fn choose(catalog: &Catalog, choice: &str) -> Result<Vec<String>, UnknownRendition> {
        choose_tracks(catalog, &choice.parse().expect("infallible"))
    }

    #[test]
    fn one_per_alternate_group_plus_audio() {
        let catalog = ladder();
        assert_eq!(choose(&catalog, "highest").unwrap(), ["video", "audio"]);
        assert_eq!(choose(&catalog, "lowest").unwrap(), ["video2", "audio"]);
        assert_eq!(choose(&catalog, "video1").unwrap(), ["video1", "audio"]);
        assert_eq!(choose(&catalog, "240p").unwrap(), ["video2", "audio"]);
        assert_eq!(RenditionChoice::default(), RenditionChoice::Highest);
    }

    #[test]
    fn ranking_falls_back_to_size_when_a_bitrate_is_missing() {
        let mut catalog = ladder();
        // The 240p rung has the highest bitrate but no longer every one has a bitrate.
        catalog.tracks[2].bitrate = Some(9_000_000);
        catalog.tracks[1].bitrate = None;
        assert_eq!(choose(&catalog, "highest").unwrap(), ["video", "audio"]);
        assert_eq!(choose(&catalog, "lowest").unwrap(), ["video2", "audio"]);
        // With every bitrate known, bitrate decides.
        catalog.tracks[1].bitrate = Some(1);
        assert_eq!(choose(&catalog, "highest").unwrap(), ["video2", "audio"]);
        assert_eq!(choose(&catalog, "lowest").unwrap(), ["video1", "audio"]);
    }

    #[test]
    fn unknown_name_lists_the_renditions() {
        let err = choose(&ladder(), "1080p").expect_err("no such rendition");
        assert_eq!(err.available.len(), 3);
        let text = err.to_string();
        assert!(text.contains("\"1080p\""), "{text}");
        assert!(
            text.contains("video1 (480p, 853x480, 30 fps, 1200 kbit/s)"),
            "{text}"
        );
        // Audio is not a rendition to choose.
        assert!(choose(&ladder(), "audio").is_err());
    }

    #[test]
    fn single_rendition_broadcasts_are_unchanged() {
        let catalog = Catalog::new(vec![video("video", 720, None, None), audio()]);
        for choice in ["highest", "lowest", "video", "720p"] {
            assert_eq!(
                choose(&catalog, choice).unwrap(),
                ["video", "audio"],
                "{choice}"
            );
        }
        assert!(choose(&catalog, "video1").is_err());
    }
}
