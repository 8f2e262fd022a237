//! Reads the input's `ftyp` + `moov`: which tracks we carry, under which names, and each
//! track's own CMAF header (ftyp + a moov holding only that track), from which the
//! catalog is built.
//!
//! Several video tracks in one input are renditions of one source (an ffmpeg ladder:
//! one process, several `-map`s of the same picture): they are listed as alternates of
//! one another, in one `altGroup` ([`VIDEO_ALT_GROUP`]), each labelled by its height
//! (`720p`) when the heights differ. Audio tracks are left as they are.

use mp4_atom::{Encode, FourCC, Ftyp, Moov, Mvex, StszSamples, Trak, Trex};

use super::codec::{self, MediaKind};
use super::IngestError;
use crate::catalog::{
    numbered_track_name, Catalog, CatalogTrack, AUDIO_TRACK, GROUPS_ALIGNED, ROLE_AUDIO,
    ROLE_VIDEO, VIDEO_TRACK,
};

/// All our media tracks share one render group: they are meant to be played together.
const RENDER_GROUP: u64 = 1;

/// The alternate group of the video renditions when the input has more than one.
pub const VIDEO_ALT_GROUP: u64 = 1;

/// What the catalog says that is learnt from the media rather than the `moov`.
#[derive(Debug, Clone)]
pub(super) struct CatalogFacts {
    /// Per track: frames per second measured from the first fragment.
    pub framerates: Vec<Option<f64>>,
    /// Per track: the measured bitrate of a track that declares none.
    pub bitrates: Vec<Option<u64>>,
    /// False once the video alternates were seen to start groups at different times.
    pub groups_aligned: bool,
}

impl CatalogFacts {
    pub fn new(tracks: usize) -> Self {
        Self {
            framerates: vec![None; tracks],
            bitrates: vec![None; tracks],
            groups_aligned: true,
        }
    }
}

/// One audio or video track of the input.
#[derive(Debug, Clone)]
pub(super) struct MovieTrack {
    /// The track_ID used by the input's `tkhd`/`tfhd`.
    pub track_id: u32,
    pub kind: MediaKind,
    /// `mdhd` timescale: units of `tfdt` and sample durations.
    pub timescale: u32,
    /// Fragment defaults for samples that do not carry their own size/duration/flags.
    pub trex: Trex,
    /// The catalog entry (name, codec, init data...); framerate is filled in later.
    pub entry: CatalogTrack,
}

/// What a fragment's track_ID refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrackRef {
    /// Index into [`Movie::tracks`].
    Media(usize),
    /// A track the moov declares but we do not carry (subtitles, data...).
    Ignored,
    /// Not declared at all.
    Unknown,
}

/// The tracks of one input file.
#[derive(Debug, Clone)]
pub(super) struct Movie {
    pub tracks: Vec<MovieTrack>,
    ignored: Vec<u32>,
}

impl Movie {
    /// Analyses `moov`; `ftyp` is copied into every per-track init segment.
    pub fn new(ftyp: Option<&Ftyp>, moov: &Moov) -> Result<Self, IngestError> {
        let mvex = moov
            .mvex
            .as_ref()
            .ok_or_else(|| IngestError::NotFragmented {
                reason: "the moov has no mvex box, so no movie fragments follow".into(),
            })?;
        let ftyp = ftyp.cloned().unwrap_or_else(default_ftyp);

        let mut tracks = Vec::new();
        let mut ignored = Vec::new();
        let (mut videos, mut audios) = (0, 0);
        for trak in &moov.trak {
            let track_id = trak.tkhd.track_id;
            let handler = trak.mdia.hdlr.handler;
            let kind = if handler == FourCC::new(b"vide") {
                MediaKind::Video
            } else if handler == FourCC::new(b"soun") {
                MediaKind::Audio
            } else {
                tracing::warn!(track_id, %handler, "ignoring a track that is neither audio nor video");
                ignored.push(track_id);
                continue;
            };
            check_no_samples(trak)?;
            let name = match kind {
                MediaKind::Video => {
                    videos += 1;
                    numbered_track_name(VIDEO_TRACK, videos - 1)
                }
                MediaKind::Audio => {
                    audios += 1;
                    numbered_track_name(AUDIO_TRACK, audios - 1)
                }
            };
            tracks.push(Self::track(&ftyp, moov, mvex, trak, kind, name)?);
        }
        if tracks.is_empty() {
            return Err(IngestError::NoMediaTracks);
        }
        if videos > 1 {
            mark_alternates(&mut tracks);
        }
        Ok(Self { tracks, ignored })
    }

    fn track(
        ftyp: &Ftyp,
        moov: &Moov,
        mvex: &Mvex,
        trak: &Trak,
        kind: MediaKind,
        name: String,
    ) -> Result<MovieTrack, IngestError> {
        let track_id = trak.tkhd.track_id;
        let invalid = |reason: &str| IngestError::InvalidTrack {
            track_id,
            reason: reason.to_string(),
        };
        let timescale = trak.mdia.mdhd.timescale;
        if timescale == 0 {
            return Err(invalid("mdhd timescale is 0"));
        }
        let trex = mvex
            .trex
            .iter()
            .find(|t| t.track_id == track_id)
            .cloned()
            .ok_or_else(|| invalid("the mvex has no trex for this track"))?;
        let sample_entry = trak
            .mdia
            .minf
            .stbl
            .stsd
            .codecs
            .first()
            .ok_or_else(|| invalid("the stsd has no sample entry"))?;
        let info = codec::describe(track_id, sample_entry)?;
        if info.kind != kind {
            return Err(invalid(
                "the sample entry does not match the track's handler",
            ));
        }

        let init = init_segment(ftyp, moov, mvex, trak, &trex)?;
        let mut entry = CatalogTrack::cmaf(name);
        entry.role = Some(
            match kind {
                MediaKind::Video => ROLE_VIDEO,
                MediaKind::Audio => ROLE_AUDIO,
            }
            .to_string(),
        );
        entry.codec = Some(info.codec);
        entry.width = info.width;
        entry.height = info.height;
        entry.samplerate = info.samplerate.or(match kind {
            MediaKind::Audio => Some(timescale),
            MediaKind::Video => None,
        });
        entry.channel_config = info.channels.map(|c| c.to_string());
        entry.bitrate = info.bitrate;
        entry.timescale = Some(timescale);
        entry.render_group = Some(RENDER_GROUP);
        entry.set_init_segment(&init);

        Ok(MovieTrack {
            track_id,
            kind,
            timescale,
            trex,
            entry,
        })
    }

    /// What `track_id` (from a `tfhd`) refers to.
    pub fn lookup(&self, track_id: u32) -> TrackRef {
        if let Some(index) = self.tracks.iter().position(|t| t.track_id == track_id) {
            TrackRef::Media(index)
        } else if self.ignored.contains(&track_id) {
            TrackRef::Ignored
        } else {
            TrackRef::Unknown
        }
    }

    /// The catalog, with what was learnt from the media so far.
    pub fn catalog(&self, facts: &CatalogFacts) -> Catalog {
        let tracks = self
            .tracks
            .iter()
            .enumerate()
            .map(|(i, track)| {
                let mut entry = track.entry.clone();
                entry.framerate = facts.framerates.get(i).copied().flatten();
                if entry.bitrate.is_none() {
                    entry.bitrate = facts.bitrates.get(i).copied().flatten();
                }
                if entry.alt_group.is_some() && !facts.groups_aligned {
                    // Still alternates of one another (MSF: the same content on the same
                    // timeline), but group N no longer starts at the same time in each:
                    // a player switches at a keyframe of the new rendition instead.
                    entry.extra.insert(GROUPS_ALIGNED.into(), false.into());
                }
                entry
            })
            .collect();
        Catalog::new(tracks)
    }
}

/// Puts every video track in [`VIDEO_ALT_GROUP`] and, when their heights differ, labels
/// each by its height.
fn mark_alternates(tracks: &mut [MovieTrack]) {
    let heights: Vec<Option<u32>> = tracks
        .iter()
        .filter(|t| t.kind == MediaKind::Video)
        .map(|t| t.entry.height)
        .collect();
    let distinct = heights
        .iter()
        .enumerate()
        .all(|(i, h)| h.is_some() && !heights[..i].contains(h));
    for track in tracks.iter_mut().filter(|t| t.kind == MediaKind::Video) {
        track.entry.alt_group = Some(VIDEO_ALT_GROUP);
        if distinct {
            track.entry.label = track.entry.height.map(|h| format!("{h}p"));
        }
    }
}

/// An input whose moov already lists samples carries its first fragment the progressive
/// way (ffmpeg `frag_keyframe` without `empty_moov`); we cannot stream that part.
fn check_no_samples(trak: &Trak) -> Result<(), IngestError> {
    let count = match &trak.mdia.minf.stbl.stsz.samples {
        StszSamples::Identical { count, .. } => *count as usize,
        StszSamples::Different { sizes } => sizes.len(),
    };
    if count == 0 {
        return Ok(());
    }
    Err(IngestError::NotFragmented {
        reason: format!(
            "the moov itself holds {count} samples of track {}",
            trak.tkhd.track_id
        ),
    })
}

/// ftyp + moov(mvhd, trak, mvex(trex)) for one track, keeping its track_ID.
fn init_segment(
    ftyp: &Ftyp,
    moov: &Moov,
    mvex: &Mvex,
    trak: &Trak,
    trex: &Trex,
) -> Result<Vec<u8>, IngestError> {
    let single = Moov {
        mvhd: moov.mvhd.clone(),
        meta: None,
        mvex: Some(Mvex {
            mehd: mvex.mehd.clone(),
            trex: vec![trex.clone()],
        }),
        trak: vec![trak.clone()],
        udta: None,
        ainf: None,
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out).map_err(IngestError::Encode)?;
    single.encode(&mut out).map_err(IngestError::Encode)?;
    Ok(out)
}

/// The ftyp we use when the input starts directly with its moov.
fn default_ftyp() -> Ftyp {
    Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    }
}
