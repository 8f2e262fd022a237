//! Egress: MoQ objects of several tracks back into one playable fragmented MP4.
//!
//! [`FragmentedMp4Writer`] is sans-IO: build it from the catalog, write
//! [`FragmentedMp4Writer::init_segment`] once, then append what
//! [`FragmentedMp4Writer::fragment`] returns for every received object, in arrival order.
//! A subscriber that joins mid-stream should start each track at a group start (a
//! keyframe); decode times are kept as they are, so the file may start at a large time.
//!
//! Track IDs: each catalog track's init segment declares its own track_ID. When two
//! tracks share one (two publishers each numbering from 1, say), the later one is
//! renumbered in the merged `moov` and the `tfhd` of its fragments is rewritten to match
//! (moving `trun` data offsets by however much the `moof` changed size). Otherwise
//! fragments are passed through byte for byte, after checking their track_ID.

mod error;
mod init;

pub use error::EgressError;

use bytes::Bytes;
use mp4_atom::{Atom, Decode, Encode, Moof};

use crate::boxes::top_level_boxes;
use crate::catalog::Catalog;
use crate::fragment::shift_data_offsets;
use init::MergedTrack;

/// Muxes per-track CMAF objects into one fragmented MP4 stream. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct FragmentedMp4Writer {
    init: Bytes,
    tracks: Vec<MergedTrack>,
}

impl FragmentedMp4Writer {
    /// A writer for every CMAF track of `catalog` that carries (inline) init data, in
    /// catalog order.
    pub fn new(catalog: &Catalog) -> Result<Self, EgressError> {
        let names: Vec<&str> = catalog
            .tracks
            .iter()
            .filter(|t| t.is_cmaf() && t.init_data.is_some())
            .map(|t| t.name.as_str())
            .collect();
        Self::for_tracks(catalog, &names)
    }

    /// A writer for the named catalog tracks only (e.g. video alone), in that order.
    pub fn for_tracks(catalog: &Catalog, names: &[&str]) -> Result<Self, EgressError> {
        let mut inits = Vec::with_capacity(names.len());
        for name in names {
            let track = catalog
                .track(name)
                .ok_or_else(|| EgressError::UnknownTrack {
                    track: name.to_string(),
                })?;
            let init = track
                .init_segment()
                .map_err(|source| EgressError::InitData {
                    track: name.to_string(),
                    source,
                })?;
            inits.push((name.to_string(), init));
        }
        Self::from_init_segments(inits)
    }

    /// A writer from `(track name, CMAF header)` pairs, in output track order.
    pub fn from_init_segments(
        inits: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Self, EgressError> {
        let inits: Vec<(String, Vec<u8>)> = inits.into_iter().collect();
        let merged = init::merge(&inits)?;
        Ok(Self {
            init: Bytes::from(merged.bytes),
            tracks: merged.tracks,
        })
    }

    /// The combined ftyp + moov declaring every track: write it first.
    pub fn init_segment(&self) -> Bytes {
        self.init.clone()
    }

    /// The track_ID `track` has in the output file.
    pub fn track_id(&self, track: &str) -> Option<u32> {
        self.tracks
            .iter()
            .find(|t| t.name == track)
            .map(|t| t.output_id)
    }

    /// The bytes to append for one object of `track`: the payload itself when its
    /// track_ID already matches the output, else a copy with its `tfhd`s renumbered.
    pub fn fragment(&mut self, track: &str, payload: Bytes) -> Result<Bytes, EgressError> {
        let merged = self
            .tracks
            .iter()
            .find(|t| t.name == track)
            .ok_or_else(|| EgressError::UnknownTrack {
                track: track.to_string(),
            })?;
        let malformed = |reason: String| EgressError::MalformedFragment {
            track: track.to_string(),
            reason,
        };
        let boxes = top_level_boxes(&payload).map_err(|e| malformed(e.to_string()))?;
        let renumber = merged.input_id != merged.output_id;
        let mut out = renumber.then(|| Vec::with_capacity(payload.len() + 16));
        let mut moofs = 0;
        for raw in boxes {
            if raw.kind != Moof::KIND {
                if let Some(out) = &mut out {
                    let at = out.len();
                    out.extend_from_slice(raw.bytes);
                    // A producer time names its track (after the full-box header).
                    if raw.kind == mp4_atom::FourCC::new(b"prft") && raw.bytes.len() >= 16 {
                        out[at + 12..at + 16].copy_from_slice(&merged.output_id.to_be_bytes());
                    }
                }
                continue;
            }
            moofs += 1;
            let mut cursor = raw.bytes;
            let mut moof = Moof::decode(&mut cursor).map_err(|e| malformed(e.to_string()))?;
            for traf in &moof.traf {
                if traf.tfhd.track_id != merged.input_id {
                    return Err(EgressError::TrackMismatch {
                        track: track.to_string(),
                        expected: merged.input_id,
                        found: traf.tfhd.track_id,
                    });
                }
            }
            if let Some(out) = &mut out {
                renumber_moof(&mut moof, raw.bytes.len(), merged.output_id, out)
                    .map_err(|reason| malformed(reason.to_string()))?;
            }
        }
        if moofs == 0 {
            return Err(malformed("no moof box".to_string()));
        }
        Ok(match out {
            Some(out) => Bytes::from(out),
            None => payload,
        })
    }
}

/// Rewrites every `tfhd` of `moof` to `track_id` and appends the re-encoded `moof`,
/// moving data offsets that count from the `moof` by the change in its size.
fn renumber_moof(
    moof: &mut Moof,
    old_len: usize,
    track_id: u32,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    for traf in &mut moof.traf {
        if traf.tfhd.base_data_offset.is_some() {
            return Err("absolute base_data_offset in an object is not supported");
        }
        traf.tfhd.track_id = track_id;
    }
    let mut trial = Vec::new();
    moof.encode(&mut trial)
        .map_err(|_| "cannot re-encode moof")?;
    let delta = trial.len() as i64 - old_len as i64;
    if delta != 0 {
        // Only data offsets of trafs based at the moof move; a later traf without
        // default-base-is-moof counts from the previous traf's data, which moved too.
        for (index, traf) in moof.traf.iter_mut().enumerate() {
            if traf.tfhd.default_base_is_moof || index == 0 {
                shift_data_offsets(traf, delta).map_err(|_| "data offset overflow")?;
            }
        }
        trial.clear();
        moof.encode(&mut trial)
            .map_err(|_| "cannot re-encode moof")?;
    }
    out.extend_from_slice(&trial);
    Ok(())
}
