//! Turns the per-track chunks of one fragment into [`MediaObject`]s: output decode time
//! (loop shift), keyframe, group start and group number, and the payload, passed through
//! byte for byte when the input `moof` is already a self-contained single-track chunk,
//! else rewritten. It also keeps what the catalog says beyond the `moov` (framerates and
//! bitrates measured from the media, whether alternates' groups line up) and says when
//! that changed.

use bytes::{Bytes, BytesMut};
use mp4_atom::Tfdt;

use super::bitrate::BitrateMeters;
use super::codec::MediaKind;
use super::grouping::GroupPlanner;
use super::movie::{CatalogFacts, Movie};
use super::numbering::{GroupNumbering, MediaTime};
use super::split::{self, Fragment, TrackChunk};
use super::timeline::LoopTimeline;
use super::{IngestError, MediaObject};
use crate::catalog::Catalog;
use crate::fragment::{encode_single_track_chunk, is_sync_sample};
use crate::producer_time::ProducerTime;

/// The input's tracks and the per-track state that outlives one fragment.
#[derive(Debug)]
pub(super) struct Tracks {
    movie: Movie,
    timeline: LoopTimeline,
    groups: GroupPlanner,
    numbering: GroupNumbering,
    /// The number of each track's current group (valid once its first chunk is placed).
    current_group: Vec<u64>,
    meters: BitrateMeters,
    /// What the catalog says that the moov does not.
    facts: CatalogFacts,
    /// `facts` changed since the catalog was last taken: it must be published again.
    catalog_changed: bool,
}

impl Tracks {
    pub fn new(movie: Movie) -> Self {
        Self {
            timeline: LoopTimeline::new(movie.tracks.iter().map(|t| t.timescale)),
            groups: GroupPlanner::new(movie.tracks.iter().map(|t| t.kind)),
            numbering: GroupNumbering::new(movie.tracks.iter().map(|t| t.kind == MediaKind::Video)),
            current_group: vec![0; movie.tracks.len()],
            meters: BitrateMeters::new(movie.tracks.iter().map(|t| (t.entry.bitrate, t.timescale))),
            facts: CatalogFacts::new(movie.tracks.len()),
            catalog_changed: false,
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

    /// The catalog as it stands (the first one, or any later one): what it says is taken
    /// as published.
    pub fn catalog(&mut self) -> Catalog {
        self.catalog_changed = false;
        self.movie.catalog(&self.facts)
    }

    /// Whether every video track has had a chunk, so the catalog can give each a
    /// framerate.
    pub fn every_video_track_seen(&self) -> bool {
        self.movie
            .tracks
            .iter()
            .zip(&self.facts.framerates)
            .all(|(track, framerate)| track.kind != MediaKind::Video || framerate.is_some())
    }

    /// The catalog again, if what it says changed since it was last taken.
    pub fn catalog_update(&mut self) -> Option<Catalog> {
        if !std::mem::take(&mut self.catalog_changed) {
            return None;
        }
        Some(self.movie.catalog(&self.facts))
    }

    /// The input ended: bitrates still being measured are taken from what there was.
    pub fn end_of_input(&mut self) {
        for (track, bitrate) in self.meters.finish() {
            self.facts.bitrates[track] = Some(bitrate);
            self.catalog_changed = true;
        }
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
            if self.facts.framerates[chunk.track].is_none() {
                // From the track's first chunk (fragmented moovs carry no sample timing).
                if let Some(framerate) = measured_framerate(&self.movie, &chunk) {
                    self.facts.framerates[chunk.track] = Some(framerate);
                    self.catalog_changed = true;
                }
            }
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
            if starts_group {
                let start = MediaTime {
                    ticks: i64::try_from(decode_time)
                        .unwrap_or(i64::MAX)
                        .saturating_add(chunk.first_composition_offset),
                    timescale: track.timescale,
                };
                // Half of the chunk's mean sample duration: two starts closer than that
                // are the same frame time.
                let tolerance = chunk.duration / u64::from(chunk.sample_count.max(1)) / 2;
                self.current_group[chunk.track] =
                    self.numbering.number(chunk.track, start, tolerance);
            }
            let sample_bytes: usize = chunk.runs.iter().map(|r| r.len()).sum();
            if let Some(bitrate) = self
                .meters
                .add(chunk.track, sample_bytes as u64, chunk.duration)
            {
                self.facts.bitrates[chunk.track] = Some(bitrate);
                self.catalog_changed = true;
            }
            let verbatim = pass_through
                && chunk.traf.tfhd.base_data_offset.is_none()
                && chunk.decode_time.is_some();
            let payload = if verbatim {
                concat(&fragment.moof_bytes, &fragment.mdat_bytes)
            } else {
                rewrite(fragment, &chunk, sequence, decode_time)?
            };
            let producer_time = fragment
                .producer_time
                .filter(|(id, _)| *id == track.track_id)
                .zip(chunk.decode_time)
                .map(|((_, time), original)| ProducerTime {
                    media_time: time
                        .media_time
                        .saturating_add(decode_time)
                        .saturating_sub(original),
                    ..time
                });
            objects.push(MediaObject {
                track: track.entry.name.clone(),
                starts_group,
                group: self.current_group[chunk.track],
                keyframe,
                payload,
                decode_time,
                timescale: track.timescale,
                duration: chunk.duration,
                sample_count: chunk.sample_count,
                track_id: track.track_id,
                producer_time,
            });
        }
        if self.facts.groups_aligned && !self.numbering.aligned() {
            self.facts.groups_aligned = false;
            self.catalog_changed = true;
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

/// Frames per second of a video track, from the most common sample duration of one of
/// its chunks (ffmpeg sometimes gives the very first sample an odd duration).
fn measured_framerate(movie: &Movie, chunk: &TrackChunk) -> Option<f64> {
    /// Enough samples for a reliable answer without walking a huge run.
    const MAX_SAMPLES: usize = 1000;
    let info = &movie.tracks[chunk.track];
    if info.kind != MediaKind::Video {
        return None;
    }
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
