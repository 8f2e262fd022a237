//! The MSF catalog: the JSON document, published on the track named [`CATALOG_TRACK`],
//! that lists a broadcast's tracks, their codecs and their CMAF init segments.
//!
//! Publishers build a [`Catalog`] (the ingest does it from the input's `moov`) and send
//! [`Catalog::to_json`] as the first object of a catalog group; subscribers call
//! [`Catalog::from_json`], pick tracks, and feed [`CatalogTrack::init_segment`] to their
//! decoder (or the whole catalog to [`crate::egress::FragmentedMp4Writer`]).
//!
//! Choices made here, per MSF draft-01 and CMSF:
//! - `version` is written as the string [`MSF_VERSION`]; a number (as in the CMSF
//!   examples) is accepted on parse and kept as its decimal string.
//! - init data is written inline as each track's `initData` (CMSF). A catalog that instead
//!   uses MSF's root `initDataList` with `initRef` is accepted: inline entries are copied
//!   into the referencing tracks' `initData` on parse.
//! - media tracks are named [`VIDEO_TRACK`] and [`AUDIO_TRACK`] (as in the MSF examples);
//!   a second track of the same role gets a numeric suffix (`video1`, `audio1`, ...).
//! - unknown fields are ignored by the typed view but preserved in `extra`, so a parsed
//!   catalog re-serialises without losing them.
//! - video renditions of one source share an `altGroup` and are time-aligned (CMSF: group
//!   N of each starts at the same presentation time). Where a publisher found that not to
//!   hold (unaligned keyframes), it says so with the extension field [`GROUPS_ALIGNED`]
//!   (`"groupsAligned": false`); [`rendition`] chooses one track per alternate group.

mod error;
pub mod rendition;
mod track;

pub use error::CatalogError;
pub use rendition::{choose_tracks, RenditionChoice, UnknownRendition};
pub use track::{CatalogTrack, PACKAGING_CMAF, PACKAGING_EVENT_TIMELINE, ROLE_AUDIO, ROLE_VIDEO};

use serde::{Deserialize, Serialize};

/// The case-sensitive name of the top-level catalog track (MSF "Catalog").
pub const CATALOG_TRACK: &str = "catalog";

/// Name of the (first) video track a Stagecast publisher produces.
pub const VIDEO_TRACK: &str = "video";

/// Name of the (first) audio track a Stagecast publisher produces.
pub const AUDIO_TRACK: &str = "audio";

/// Track field (a Stagecast extension) set to `false` on the alternates of an `altGroup`
/// whose groups were found not to start at the same media times in every rendition
/// (renditions with unaligned keyframes). Absent means aligned, as CMSF requires of a
/// switching set: group N of each starts at the same presentation time.
pub const GROUPS_ALIGNED: &str = "groupsAligned";

/// The MSF version this crate writes: the spec text we follow is draft-ietf-moq-msf-01.
pub const MSF_VERSION: &str = "draft-01";

/// The largest catalog [`Catalog::from_json`] accepts, in bytes (1 MiB).
pub const MAX_CATALOG_SIZE: usize = 1 << 20;

/// The name of the `index`-th track (0-based) with a given base name:
/// `video`, `video1`, `video2`, ...
pub fn numbered_track_name(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}{index}")
    }
}

/// An independent (non-delta) MSF catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// MSF version (`version`), e.g. `"draft-01"`.
    #[serde(deserialize_with = "version::deserialize")]
    pub version: String,

    /// Wall-clock generation time in ms since the Unix epoch (`generatedAt`). This crate
    /// never reads a clock; the publisher may set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<u64>,

    /// Set (to true) once the broadcast is over (`isComplete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,

    /// The tracks (`tracks`).
    pub tracks: Vec<CatalogTrack>,

    /// Shared init data referenced by tracks' `initRef` (`initDataList`, MSF draft-01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_data_list: Option<Vec<InitDataEntry>>,

    /// Every root field we do not model, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One entry of MSF's root `initDataList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitDataEntry {
    /// The id tracks refer to with `initRef`.
    pub id: String,
    /// `inline`, `track-property` or `object-property`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `inline`: base64 of the init data.
    pub data: String,
    /// Every field we do not model, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Catalog {
    /// A catalog of the given tracks, at [`MSF_VERSION`].
    pub fn new(tracks: Vec<CatalogTrack>) -> Self {
        Self {
            version: MSF_VERSION.to_string(),
            generated_at: None,
            is_complete: None,
            tracks,
            init_data_list: None,
            extra: serde_json::Map::new(),
        }
    }

    /// The track called `name`, if listed.
    pub fn track(&self, name: &str) -> Option<&CatalogTrack> {
        self.tracks.iter().find(|t| t.name == name)
    }

    /// The catalog as compact JSON, ready to be an object payload.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail; fall back to an empty
        // object rather than panic if serde_json ever disagrees.
        serde_json::to_vec(self).unwrap_or_else(|err| {
            tracing::error!(%err, "catalog serialisation failed");
            b"{}".to_vec()
        })
    }

    /// Parses a catalog object, refusing anything larger than [`MAX_CATALOG_SIZE`].
    ///
    /// Unknown fields are tolerated (MSF: "A parser MUST ignore fields it does not
    /// understand"). Inline `initDataList` entries are resolved into `initData`.
    pub fn from_json(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        if bytes.len() > MAX_CATALOG_SIZE {
            return Err(CatalogError::TooLarge {
                size: bytes.len(),
                max: MAX_CATALOG_SIZE,
            });
        }
        let mut catalog: Catalog = serde_json::from_slice(bytes)?;
        catalog.resolve_init_refs();
        Ok(catalog)
    }

    /// Copies inline `initDataList` entries into the `initData` of tracks that reference
    /// them and carry none of their own.
    fn resolve_init_refs(&mut self) {
        let Some(list) = &self.init_data_list else {
            return;
        };
        for track in &mut self.tracks {
            if track.init_data.is_some() {
                continue;
            }
            let Some(reference) = &track.init_ref else {
                continue;
            };
            if let Some(entry) = list
                .iter()
                .find(|e| &e.id == reference && e.kind == "inline")
            {
                track.init_data = Some(entry.data.clone());
            }
        }
    }
}

/// `version` is a string in MSF draft-01 ("draft-01") but a number in the CMSF examples
/// (`1`); accept both and keep the text.
mod version {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Version {
        Text(String),
        Number(serde_json::Number),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Version::deserialize(d)? {
            Version::Text(text) => text,
            Version::Number(number) => number.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
