//! Broadcasts made by `moq-pub` (the moq-rs / moq-transport family's publisher), so that a
//! Stagecast subscriber can play them.
//!
//! `moq-pub` does not follow MSF. Its layout:
//! - the catalog is on the track [`CATALOG_TRACK`] (`.catalog`, not MSF's `catalog`), in
//!   the older schema of draft-ietf-moq-catalogformat-01 (`version` 1, `streamingFormat`
//!   1, `streamingFormatVersion` "0.2", `commonTrackFields`, per-track `selectionParams`);
//! - the init data is not in the catalog: it is the one object of its own track
//!   (`initTrack`, `0.mp4`), and it is one `ftyp` + `moov` declaring *every* track, where
//!   CMSF has one CMAF header per track;
//! - media tracks are named `<track_ID>.m4s` (track_ID of the `moov`), one MoQ group per
//!   video GOP (audio groups are cut at the video keyframes too), one object per
//!   `moof` + `mdat`, as in CMSF.
//!
//! [`MoqPubCatalog::from_json`] reads the catalog; [`split_init`] turns the shared init
//! segment into one CMAF header per catalog track, ready for
//! [`crate::egress::FragmentedMp4Writer::from_init_segments`].

use mp4_atom::{Atom, Decode, Encode, Ftyp, Moov, Mvex};
use serde_json::Value;

use crate::boxes::top_level_boxes;
use crate::catalog::MAX_CATALOG_SIZE;

/// The name of the catalog track of a `moq-pub` broadcast.
pub const CATALOG_TRACK: &str = ".catalog";

/// Why a `moq-pub` catalog or init segment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MoqPubError {
    #[error("the catalog is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("the catalog is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the catalog is not a catalogformat-01 catalog: {0}")]
    Schema(&'static str),
    #[error("the catalog lists no CMAF track")]
    NoTracks,
    #[error("the tracks name different init tracks ({0} and {1}); one is supported")]
    SeveralInitTracks(String, String),
    #[error("the init segment is malformed: {0}")]
    MalformedInit(mp4_atom::Error),
    #[error("the init segment is invalid: {0}")]
    InvalidInit(String),
    #[error("cannot encode a track's init segment: {0}")]
    Encode(mp4_atom::Error),
}

/// One media track of a `moq-pub` catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoqPubTrack {
    /// The MoQ track name, e.g. `1.m4s`.
    pub name: String,
    /// The track holding the init segment, e.g. `0.mp4`.
    pub init_track: String,
    /// The RFC 6381 codec (`selectionParams.codec`), if given.
    pub codec: Option<String>,
}

/// The parts of a catalogformat-01 catalog (as `moq-pub` writes it) a player needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoqPubCatalog {
    /// The CMAF tracks, in catalog order (which is `moq-pub`'s `moov` order).
    pub tracks: Vec<MoqPubTrack>,
}

impl MoqPubCatalog {
    /// Parses a catalog object, refusing one larger than [`MAX_CATALOG_SIZE`]. A track's
    /// fields may be given on it or in `commonTrackFields`; tracks whose packaging is not
    /// `cmaf` are left out.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MoqPubError> {
        if bytes.len() > MAX_CATALOG_SIZE {
            return Err(MoqPubError::TooLarge {
                size: bytes.len(),
                max: MAX_CATALOG_SIZE,
            });
        }
        let root: Value = serde_json::from_slice(bytes)?;
        let root = root
            .as_object()
            .ok_or(MoqPubError::Schema("not an object"))?;
        if root.get("streamingFormat").is_none() {
            return Err(MoqPubError::Schema("no streamingFormat"));
        }
        let common = root.get("commonTrackFields").and_then(Value::as_object);
        let field = |track: &serde_json::Map<String, Value>, key: &str| -> Option<String> {
            track
                .get(key)
                .or_else(|| common.and_then(|c| c.get(key)))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let list = root
            .get("tracks")
            .and_then(Value::as_array)
            .ok_or(MoqPubError::Schema("no tracks array"))?;
        let mut tracks = Vec::new();
        for track in list {
            let track = track
                .as_object()
                .ok_or(MoqPubError::Schema("a track is not an object"))?;
            let name = field(track, "name").ok_or(MoqPubError::Schema("a track has no name"))?;
            if field(track, "packaging").is_some_and(|p| p != "cmaf") {
                continue;
            }
            let init_track =
                field(track, "initTrack").ok_or(MoqPubError::Schema("a track has no initTrack"))?;
            let codec = track
                .get("selectionParams")
                .or_else(|| common.and_then(|c| c.get("selectionParams")))
                .and_then(|p| p.get("codec"))
                .and_then(Value::as_str)
                .map(str::to_string);
            tracks.push(MoqPubTrack {
                name,
                init_track,
                codec,
            });
        }
        if tracks.is_empty() {
            return Err(MoqPubError::NoTracks);
        }
        Ok(Self { tracks })
    }

    /// The one init track every listed track refers to.
    pub fn init_track(&self) -> Result<&str, MoqPubError> {
        let first = &self.tracks[0].init_track;
        if let Some(other) = self.tracks.iter().find(|t| &t.init_track != first) {
            return Err(MoqPubError::SeveralInitTracks(
                first.clone(),
                other.init_track.clone(),
            ));
        }
        Ok(first)
    }
}

/// Splits a multi-track init segment (`ftyp` + `moov`) into one CMAF header per catalog
/// track: `(track name, ftyp + moov with that track alone)`, in catalog order.
///
/// A track is matched to its `trak` by `moq-pub`'s naming, `<track_ID>.m4s`; when a name
/// does not follow it, by position (catalog order is `moov` order, as `moq-sub` assumes).
pub fn split_init(
    init: &[u8],
    tracks: &[MoqPubTrack],
) -> Result<Vec<(String, Vec<u8>)>, MoqPubError> {
    let invalid = |reason: String| MoqPubError::InvalidInit(reason);
    let mut ftyp = None;
    let mut moov = None;
    for raw in top_level_boxes(init).map_err(MoqPubError::MalformedInit)? {
        let mut cursor = raw.bytes;
        if raw.kind == Ftyp::KIND {
            ftyp = Some(Ftyp::decode(&mut cursor).map_err(MoqPubError::MalformedInit)?);
        } else if raw.kind == Moov::KIND {
            moov = Some(Moov::decode(&mut cursor).map_err(MoqPubError::MalformedInit)?);
        }
    }
    let moov = moov.ok_or_else(|| invalid("no moov".into()))?;
    let trexs = moov
        .mvex
        .as_ref()
        .map(|mvex| mvex.trex.clone())
        .ok_or_else(|| invalid("no mvex: not a fragmented-MP4 header".into()))?;
    let mut out = Vec::with_capacity(tracks.len());
    for (index, track) in tracks.iter().enumerate() {
        let by_name = track
            .name
            .strip_suffix(".m4s")
            .and_then(|id| id.parse::<u32>().ok())
            .and_then(|id| moov.trak.iter().find(|t| t.tkhd.track_id == id));
        let trak = by_name
            .or_else(|| moov.trak.get(index))
            .ok_or_else(|| invalid(format!("no trak for track {}", track.name)))?;
        let id = trak.tkhd.track_id;
        let trex = trexs
            .iter()
            .find(|t| t.track_id == id)
            .ok_or_else(|| invalid(format!("no trex for track_ID {id}")))?;
        let single = Moov {
            mvhd: moov.mvhd.clone(),
            meta: None,
            mvex: Some(Mvex {
                mehd: None,
                trex: vec![trex.clone()],
            }),
            trak: vec![trak.clone()],
            udta: None,
            ainf: None,
        };
        let mut bytes = Vec::new();
        if let Some(ftyp) = &ftyp {
            ftyp.encode(&mut bytes).map_err(MoqPubError::Encode)?;
        }
        single.encode(&mut bytes).map_err(MoqPubError::Encode)?;
        out.push((track.name.clone(), bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog `moq-pub` 0.10 printed for a 320x180 H.264 + AAC input (from the
    /// interop test's log), with its common fields hoisted as it does.
    const CATALOG: &str = r#"{
      "version": 1,
      "streamingFormat": 1,
      "streamingFormatVersion": "0.2",
      "streamingDeltaUpdates": true,
      "commonTrackFields": {
        "namespace": "live/pub",
        "packaging": "cmaf",
        "renderGroup": 1,
        "initTrack": "0.mp4"
      },
      "tracks": [
        {"name": "1.m4s", "selectionParams": {"codec": "avc1.640016", "width": 320, "height": 180}},
        {"name": "2.m4s", "selectionParams": {"codec": "mp4a.40.2", "samplerate": 44100, "channelConfig": "1", "bitrate": 69000}}
      ]
    }"#;

    #[test]
    fn reads_tracks_with_common_fields() {
        let catalog = MoqPubCatalog::from_json(CATALOG.as_bytes()).expect("catalog");
        assert_eq!(catalog.tracks.len(), 2);
        assert_eq!(catalog.tracks[0].name, "1.m4s");
        assert_eq!(catalog.tracks[1].codec.as_deref(), Some("mp4a.40.2"));
        assert_eq!(catalog.init_track().expect("one init track"), "0.mp4");
    }

    #[test]
    fn refuses_an_msf_catalog_and_garbage() {
        let msf = br#"{"version":"draft-01","tracks":[{"name":"video","packaging":"cmaf","isLive":true}]}"#;
        assert!(matches!(
            MoqPubCatalog::from_json(msf),
            Err(MoqPubError::Schema(_))
        ));
        assert!(MoqPubCatalog::from_json(b"not json").is_err());
        let none = br#"{"streamingFormat":1,"tracks":[]}"#;
        assert!(matches!(
            MoqPubCatalog::from_json(none),
            Err(MoqPubError::NoTracks)
        ));
    }

    /// The demo clip has moq-pub's shape: one `ftyp` + two-track `moov`, then one
    /// `moof` + `mdat` per frame. Split its header, mux every chunk back, and the
    /// fragments pass through byte for byte under their own track_IDs.
    #[test]
    fn splits_a_two_track_header_and_muxes_its_fragments() {
        use crate::egress::FragmentedMp4Writer;
        use mp4_atom::Moof;

        let clip = include_bytes!("../assets/demo.mp4");
        let boxes = top_level_boxes(clip).expect("boxes");
        let header_end: usize = boxes
            .iter()
            .take_while(|b| b.kind != Moof::KIND)
            .map(|b| b.bytes.len())
            .sum();
        let tracks = MoqPubCatalog::from_json(CATALOG.as_bytes())
            .expect("catalog")
            .tracks;
        let inits = split_init(&clip[..header_end], &tracks).expect("split");
        assert_eq!(inits.len(), 2);
        let mut writer = FragmentedMp4Writer::from_init_segments(inits).expect("writer");
        assert_eq!(writer.track_id("1.m4s"), Some(1));
        assert_eq!(writer.track_id("2.m4s"), Some(2));

        let mut chunks = 0;
        for pair in boxes[2..].chunks(2) {
            let mut cursor = pair[0].bytes;
            let moof = Moof::decode(&mut cursor).expect("moof");
            let name = format!("{}.m4s", moof.traf[0].tfhd.track_id);
            let payload = [pair[0].bytes, pair[1].bytes].concat();
            let out = writer
                .fragment(&name, bytes::Bytes::from(payload.clone()))
                .expect("fragment");
            assert_eq!(out.as_ref(), payload.as_slice());
            chunks += 1;
        }
        assert!(chunks > 500, "{chunks} chunks");
        // A track the header does not declare is refused by position too.
        let three = [
            tracks[0].clone(),
            tracks[1].clone(),
            MoqPubTrack {
                name: "9.m4s".into(),
                init_track: "0.mp4".into(),
                codec: None,
            },
        ];
        assert!(split_init(&clip[..header_end], &three).is_err());
    }

    #[test]
    fn split_refuses_garbage() {
        let tracks = MoqPubCatalog::from_json(CATALOG.as_bytes())
            .expect("catalog")
            .tracks;
        assert!(split_init(b"\0\0\0\x08free", &tracks).is_err());
        assert!(split_init(b"\0\0\0\x09free", &tracks).is_err());
    }
}
