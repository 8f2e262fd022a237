//! Splits one `moof` + `mdat` into per-track CMAF chunks: for every `traf`, where its
//! sample bytes lie in the `mdat`, how long it lasts, and whether it starts with a sync
//! sample.
//!
//! Data offsets are resolved exactly as ISO/IEC 14496-12 §8.8.7 says: an explicit
//! `base_data_offset` is a file position; otherwise `default-base-is-moof` (or the first
//! `traf` of the `moof`) starts at the `moof`; otherwise a `traf` continues where the
//! previous one's data ended. A `trun` without `data_offset` continues the previous run.

use std::ops::Range;

use bytes::Bytes;
use mp4_atom::{Moof, Traf, TrunSamples};

use super::movie::{Movie, TrackRef};
use super::IngestError;

/// A `moof` and the `mdat` after it, as they arrived.
#[derive(Debug, Clone)]
pub(super) struct Fragment {
    /// The whole `moof` box.
    pub moof_bytes: Bytes,
    pub moof: Moof,
    /// The whole `mdat` box, header included.
    pub mdat_bytes: Bytes,
    /// Length of the `mdat` header (8, or 16 with a 64-bit size).
    pub mdat_header_len: usize,
    /// Offset of the `moof` from the start of the file (for absolute `base_data_offset`).
    pub file_offset: u64,
    /// The `prft` that came before the `moof`: its reference track's id and time.
    pub producer_time: Option<(u32, crate::producer_time::ProducerTime)>,
}

/// The part of a fragment that belongs to one track.
#[derive(Debug, Clone)]
pub(super) struct TrackChunk {
    /// Index into [`Movie::tracks`].
    pub track: usize,
    /// The input's `traf`, unchanged.
    pub traf: Traf,
    /// One byte range per `trun`, as positions in [`Fragment::mdat_bytes`].
    pub runs: Vec<Range<usize>>,
    /// `tfdt`, when present.
    pub decode_time: Option<u64>,
    /// Sum of sample durations.
    pub duration: u64,
    pub sample_count: u32,
    /// Flags of the first sample (resolved against tfhd and trex defaults).
    pub first_sample_flags: u32,
    /// Composition offset of the first sample (its presentation time minus its decode
    /// time; 0 when the run carries none).
    pub first_composition_offset: i64,
}

/// Cuts `fragment` into one chunk per carried track with at least one sample, in `traf`
/// order.
pub(super) fn split(fragment: &Fragment, movie: &Movie) -> Result<Vec<TrackChunk>, IngestError> {
    let moof_len = fragment.moof_bytes.len() as i64;
    let body =
        (moof_len + fragment.mdat_header_len as i64)..(moof_len + fragment.mdat_bytes.len() as i64);

    let mut chunks = Vec::new();
    // Where the previous traf's data ended (moof-relative), for implicit base offsets.
    let mut previous_end = 0i64;
    for (index, traf) in fragment.moof.traf.iter().enumerate() {
        let tfhd = &traf.tfhd;
        let track_id = tfhd.track_id;
        let base = match tfhd.base_data_offset {
            Some(absolute) => i64::try_from(absolute)
                .ok()
                .and_then(|a| a.checked_sub(fragment.file_offset as i64))
                .ok_or(IngestError::SampleDataOutOfRange { track_id })?,
            None if tfhd.default_base_is_moof || index == 0 => 0,
            None => previous_end,
        };

        let track = match movie.lookup(track_id) {
            TrackRef::Media(track) => Some(track),
            TrackRef::Ignored => None,
            TrackRef::Unknown => return Err(IngestError::UnknownTrack { track_id }),
        };
        let trex = track.map(|t| &movie.tracks[t].trex);
        let default_size = tfhd
            .default_sample_size
            .or(trex.map(|t| t.default_sample_size))
            .unwrap_or(0);
        let default_duration = tfhd
            .default_sample_duration
            .or(trex.map(|t| t.default_sample_duration))
            .unwrap_or(0);
        let default_flags = tfhd
            .default_sample_flags
            .or(trex.map(|t| t.default_sample_flags))
            .unwrap_or(0);

        let overflow = |what| IngestError::Overflow { track_id, what };
        let mut cursor = base;
        let mut runs = Vec::with_capacity(traf.trun.len());
        let mut duration = 0u64;
        let mut sample_count = 0u32;
        let mut first_sample_flags = None;
        let mut first_composition_offset = None;
        for trun in &traf.trun {
            let start = match trun.data_offset {
                Some(offset) => base
                    .checked_add(i64::from(offset))
                    .ok_or(IngestError::SampleDataOutOfRange { track_id })?,
                None => cursor,
            };
            let (bytes, run_duration) = run_totals(&trun.samples, default_size, default_duration)
                .ok_or_else(|| overflow("sample size or duration sum"))?;
            let end = i64::try_from(bytes)
                .ok()
                .and_then(|b| start.checked_add(b))
                .ok_or_else(|| overflow("sample data size"))?;
            if start < body.start || end > body.end {
                return Err(IngestError::SampleDataOutOfRange { track_id });
            }
            runs.push((start - moof_len) as usize..(end - moof_len) as usize);
            cursor = end;
            duration = duration
                .checked_add(run_duration)
                .ok_or_else(|| overflow("duration"))?;
            let count = u32::try_from(trun.samples.len()).map_err(|_| overflow("sample count"))?;
            sample_count = sample_count
                .checked_add(count)
                .ok_or_else(|| overflow("sample count"))?;
            if first_sample_flags.is_none() {
                if let Some(first) = trun.samples.get(0) {
                    first_sample_flags = Some(first.flags.unwrap_or(default_flags));
                    first_composition_offset = first.cts;
                }
            }
        }
        previous_end = cursor;

        let Some(track) = track else {
            continue;
        };
        if sample_count == 0 {
            tracing::debug!(track_id, "skipping a traf without samples");
            continue;
        }
        chunks.push(TrackChunk {
            track,
            traf: traf.clone(),
            runs,
            decode_time: traf.tfdt.as_ref().map(|t| t.base_media_decode_time),
            duration,
            sample_count,
            first_sample_flags: first_sample_flags.unwrap_or(default_flags),
            first_composition_offset: first_composition_offset.unwrap_or(0),
        });
    }
    Ok(chunks)
}

/// Total bytes and duration of a run. A run without per-sample fields is `count` times
/// the defaults, computed without visiting each (possibly billions of) samples.
fn run_totals(
    samples: &TrunSamples,
    default_size: u32,
    default_duration: u32,
) -> Option<(u64, u64)> {
    match samples {
        TrunSamples::Inherited { count, .. } => Some((
            u64::from(*count).checked_mul(u64::from(default_size))?,
            u64::from(*count).checked_mul(u64::from(default_duration))?,
        )),
        TrunSamples::Explicit(entries) => entries.iter().try_fold((0u64, 0u64), |(b, d), e| {
            Some((
                b.checked_add(u64::from(e.size.unwrap_or(default_size)))?,
                d.checked_add(u64::from(e.duration.unwrap_or(default_duration)))?,
            ))
        }),
    }
}
