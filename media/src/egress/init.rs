//! Merges per-track CMAF headers (ftyp + single-track moov) into one ftyp + moov that
//! declares every track, renumbering track_IDs that collide.

use mp4_atom::{Atom, Decode, Encode, Ftyp, Moov, Mvex, Trak, Trex};

use super::EgressError;
use crate::boxes::top_level_boxes;

/// One track of the merged file.
#[derive(Debug, Clone)]
pub(super) struct MergedTrack {
    pub name: String,
    /// track_ID in the track's own init segment (and so in its fragments).
    pub input_id: u32,
    /// track_ID in the merged init segment.
    pub output_id: u32,
}

/// The merged init segment and the track_ID mapping.
#[derive(Debug, Clone)]
pub(super) struct MergedInit {
    pub bytes: Vec<u8>,
    pub tracks: Vec<MergedTrack>,
}

/// A parsed single-track header.
struct TrackHeader {
    ftyp: Option<Ftyp>,
    moov: Moov,
    trak: Trak,
    trex: Trex,
}

/// Merges the named init segments, in order. The first one's `ftyp` and `mvhd` are used.
pub(super) fn merge(inits: &[(String, Vec<u8>)]) -> Result<MergedInit, EgressError> {
    let mut headers = Vec::with_capacity(inits.len());
    for (name, bytes) in inits {
        headers.push(parse(name, bytes)?);
    }
    let Some(first) = headers.first() else {
        return Err(EgressError::NoTracks);
    };
    let ftyp = first.ftyp.clone();
    let mut mvhd = first.moov.mvhd.clone();

    let mut used: Vec<u32> = Vec::new();
    let mut tracks = Vec::with_capacity(headers.len());
    let mut traks = Vec::with_capacity(headers.len());
    let mut trexs = Vec::with_capacity(headers.len());
    for ((name, _), header) in inits.iter().zip(headers) {
        let input_id = header.trak.tkhd.track_id;
        let output_id = if input_id == 0 || used.contains(&input_id) {
            used.iter().max().copied().unwrap_or(0).saturating_add(1)
        } else {
            input_id
        };
        used.push(output_id);
        let mut trak = header.trak;
        let mut trex = header.trex;
        trak.tkhd.track_id = output_id;
        trex.track_id = output_id;
        traks.push(trak);
        trexs.push(trex);
        tracks.push(MergedTrack {
            name: name.clone(),
            input_id,
            output_id,
        });
    }
    mvhd.next_track_id = used.iter().max().copied().unwrap_or(0).saturating_add(1);

    let moov = Moov {
        mvhd,
        meta: None,
        mvex: Some(Mvex {
            mehd: None,
            trex: trexs,
        }),
        trak: traks,
        udta: None,
        ainf: None,
    };
    let mut bytes = Vec::new();
    if let Some(ftyp) = ftyp {
        ftyp.encode(&mut bytes).map_err(EgressError::Encode)?;
    }
    moov.encode(&mut bytes).map_err(EgressError::Encode)?;
    Ok(MergedInit { bytes, tracks })
}

fn parse(name: &str, bytes: &[u8]) -> Result<TrackHeader, EgressError> {
    let malformed = |source| EgressError::MalformedInit {
        track: name.to_string(),
        source,
    };
    let invalid = |reason: &str| EgressError::InvalidInit {
        track: name.to_string(),
        reason: reason.to_string(),
    };
    let mut ftyp = None;
    let mut moov = None;
    for raw in top_level_boxes(bytes).map_err(malformed)? {
        let mut cursor = raw.bytes;
        if raw.kind == Ftyp::KIND {
            ftyp = Some(Ftyp::decode(&mut cursor).map_err(malformed)?);
        } else if raw.kind == Moov::KIND {
            moov = Some(Moov::decode(&mut cursor).map_err(malformed)?);
        }
    }
    let moov = moov.ok_or_else(|| invalid("no moov"))?;
    let trak = match moov.trak.as_slice() {
        [trak] => trak.clone(),
        [] => return Err(invalid("the moov has no trak")),
        _ => return Err(invalid("the moov has several traks")),
    };
    let trex = moov
        .mvex
        .as_ref()
        .and_then(|mvex| mvex.trex.iter().find(|t| t.track_id == trak.tkhd.track_id))
        .cloned()
        .ok_or_else(|| invalid("no mvex/trex for its track: not a fragmented-MP4 header"))?;
    Ok(TrackHeader {
        ftyp,
        moov,
        trak,
        trex,
    })
}
