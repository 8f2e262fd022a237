//! Turns the per-track chunks of one fragment into [`MediaObject`]s: output decode time
//! (loop shift), keyframe and group start, and the payload, passed through byte for byte
//! when the input `moof` is already a self-contained single-track chunk, else rewritten.

use bytes::{Bytes, BytesMut};
use mp4_atom::Tfdt;

use super::codec::MediaKind;
use super::grouping::GroupPlanner;
use super::movie::Movie;
use super::split::{self, Fragment, TrackChunk};
use super::timeline::LoopTimeline;
use super::{IngestError, MediaObject};
use crate::catalog::Catalog;
use crate::fragment::{encode_single_track_chunk, is_sync_sample};

/// The input's tracks and the per-track state that outlives one fragment.
#[derive(Debug)]
pub(super) struct Tracks {
    movie: Movie,
    timeline: LoopTimeline,
    groups: GroupPlanner,
}

impl Tracks {
    pub fn new(movie: Movie) -> Self {
        Self {
            timeline: LoopTimeline::new(movie.tracks.iter().map(|t| t.timescale)),
            groups: GroupPlanner::new(movie.tracks.iter().map(|t| t.kind)),
            movie,
        }
    }

    /// The fragment's chunks of carried tracks, video first: an audio chunk of the same
    /// fragment then sees the video group that starts in it.
    pub fn split(&self, fragment: &Fragment) -> Result<Vec<TrackChunk>, IngestError> {
        let mut chunks = split::split(fragment, &self.movie)?;
        chunks.sort_by_key(|c| self.movie.tracks[c.track].kind != MediaKind::Video);
        Ok(chunks)
    }

    /// The catalog, with video framerates measured from `chunks` (the first fragment's).
    pub fn catalog(&self, chunks: &[TrackChunk]) -> Catalog {
        let framerates: Vec<Option<f64>> = (0..self.movie.tracks.len())
            .map(|track| measured_framerate(&self.movie, chunks, track))
            .collect();
        self.movie.catalog(&framerates)
    }

    /// The same file starts again: later decode times and sequence numbers continue.
    pub fn begin_pass(&mut self) {
        self.timeline.begin_pass();
    }

    /// One object per chunk, in `chunks` order.
    pub fn objects(
        &mut self,
        fragment: &Fragment,
        chunks: Vec<TrackChunk>,
    ) -> Result<Vec<MediaObject>, IngestError> {
        let sequence = self.timeline.sequence(fragment.moof.mfhd.sequence_number);
        // Byte-for-byte is possible only for a single-traf moof whose times we keep.
        let pass_through = fragment.moof.traf.len() == 1 && !self.timeline.rewriting();
        let mut objects = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let track = &self.movie.tracks[chunk.track];
            let decode_time = self.timeline.place(
                chunk.track,
                track.track_id,
                chunk.decode_time,
                chunk.duration,
            )?;
            let keyframe = is_sync_sample(chunk.first_sample_flags);
            let starts_group = self.groups.starts_group(
                chunk.track,
                decode_time,
                chunk.duration,
                track.timescale,
                keyframe,
            );
            let verbatim = pass_through
                && chunk.traf.tfhd.base_data_offset.is_none()
                && chunk.decode_time.is_some();
            let payload = if verbatim {
                concat(&fragment.moof_bytes, &fragment.mdat_bytes)
            } else {
                rewrite(fragment, &chunk, sequence, decode_time)?
            };
            objects.push(MediaObject {
                track: track.entry.name.clone(),
                starts_group,
                keyframe,
                payload,
                decode_time,
                timescale: track.timescale,
                duration: chunk.duration,
                sample_count: chunk.sample_count,
            });
        }
        Ok(objects)
    }
}

fn concat(a: &[u8], b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.freeze()
}

/// One self-contained moof + mdat for `chunk`, at the given sequence number and decode
/// time, with the sample bytes copied as they are.
fn rewrite(
    fragment: &Fragment,
    chunk: &TrackChunk,
    sequence: u32,
    decode_time: u64,
) -> Result<Bytes, IngestError> {
    let mut traf = chunk.traf.clone();
    traf.tfdt = Some(Tfdt {
        base_media_decode_time: decode_time,
    });
    let runs: Vec<&[u8]> = chunk
        .runs
        .iter()
        .map(|range| &fragment.mdat_bytes[range.clone()])
        .collect();
    encode_single_track_chunk(sequence, traf, &runs)
        .map(Bytes::from)
        .map_err(IngestError::Encode)
}

/// Frames per second of a video track, from the most common sample duration of its chunk
/// in the first fragment (ffmpeg sometimes gives the very first sample an odd duration).
fn measured_framerate(movie: &Movie, chunks: &[TrackChunk], track: usize) -> Option<f64> {
    /// Enough samples for a reliable answer without walking a huge run.
    const MAX_SAMPLES: usize = 1000;
    let info = &movie.tracks[track];
    if info.kind != MediaKind::Video {
        return None;
    }
    let chunk = chunks.iter().find(|c| c.track == track)?;
    let default = chunk
        .traf
        .tfhd
        .default_sample_duration
        .unwrap_or(info.trex.default_sample_duration);
    let mut counts: Vec<(u32, usize)> = Vec::new();
    let durations = chunk
        .traf
        .trun
        .iter()
        .flat_map(|trun| trun.samples.iter())
        .take(MAX_SAMPLES)
        .map(|sample| sample.duration.unwrap_or(default));
    for duration in durations {
        match counts.iter_mut().find(|(d, _)| *d == duration) {
            Some((_, n)) => *n += 1,
            None => counts.push((duration, 1)),
        }
    }
    let (duration, _) = counts.into_iter().max_by_key(|(_, n)| *n)?;
    if duration == 0 {
        return None;
    }
    let fps = f64::from(info.timescale) / f64::from(duration);
    Some((fps * 1000.0).round() / 1000.0)
}
