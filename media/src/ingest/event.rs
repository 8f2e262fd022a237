//! What the ingest produces: the catalog (again when it changes), and one [`MediaObject`]
//! per track per CMAF chunk.

use bytes::Bytes;

use crate::catalog::Catalog;

/// One output of [`super::CmafIngest::push`] / [`super::CmafIngest::finish`].
#[derive(Debug, Clone, PartialEq)]
pub enum IngestEvent {
    /// The broadcast's catalog: emitted before the first object, and again whenever what
    /// it says changed (the same tracks, with a measured bitrate or alignment news).
    Catalog(Catalog),
    /// A CMAF chunk of one track, to be sent as one MoQ object.
    Object(MediaObject),
}

/// One CMAF chunk (`moof` + `mdat`) of one track: the payload of one MoQ object.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaObject {
    /// The catalog track name this object belongs to (`video`, `audio`, ...).
    pub track: String,
    /// This object opens a new MoQ group (video: it starts with a keyframe; audio: it is
    /// aligned with the latest video group, or ~2 s passed on an audio-only stream).
    pub starts_group: bool,
    /// The number of the group this object belongs to, counted from 0 for the input and
    /// shared by alternates: group N of every video rendition starts at the same
    /// presentation time (when their keyframes are aligned), and an audio group takes the
    /// number of the video group it follows. Increases with each group of a track.
    pub group: u64,
    /// The chunk's first sample is a sync sample (random access point).
    pub keyframe: bool,
    /// The whole `moof` + `mdat`, self-contained (moof-relative data offsets, one track).
    pub payload: Bytes,
    /// `tfdt` base media decode time, in `timescale` units (after any loop shift).
    pub decode_time: u64,
    /// Units per second of `decode_time` and `duration` (the track's `mdhd` timescale).
    pub timescale: u32,
    /// Sum of the chunk's sample durations, in `timescale` units.
    pub duration: u64,
    /// Number of samples in the chunk.
    pub sample_count: u32,
    /// The track's id in the input (`tkhd`), which a `prft` in front of the payload names.
    pub track_id: u32,
    /// The encoder's wall clock for this chunk, from a `prft` before its `moof` (ffmpeg
    /// `-write_prft wallclock`), moved with the chunk's decode time when a loop shifts it.
    /// The payload itself never carries it; the publisher adds its own `prft`.
    pub producer_time: Option<crate::producer_time::ProducerTime>,
}

impl MediaObject {
    /// The chunk's decode time in seconds, for pacing a file in real time.
    pub fn media_time_secs(&self) -> f64 {
        if self.timescale == 0 {
            return 0.0;
        }
        self.decode_time as f64 / f64::from(self.timescale)
    }
}
