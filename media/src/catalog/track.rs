//! One entry of an MSF catalog's `tracks` array (MSF "Track Object Fields", CMSF `cmaf`
//! packaging).
//!
//! Field names follow the drafts exactly (camelCase in JSON). Fields this crate does not
//! model are kept in [`CatalogTrack::extra`], so a catalog parsed and re-serialised keeps
//! them.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::CatalogError;

/// Packaging value for CMAF-packaged tracks (CMSF, Table 1).
pub const PACKAGING_CMAF: &str = "cmaf";

/// Role value of a video track (MSF Table 4).
pub const ROLE_VIDEO: &str = "video";

/// Role value of an audio track (MSF Table 4).
pub const ROLE_AUDIO: &str = "audio";

/// Packaging value of an MSF event timeline track (MSF Table 3).
pub const PACKAGING_EVENT_TIMELINE: &str = "eventtimeline";

/// A track object of an MSF catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogTrack {
    /// Track name (`name`): the MoQ track name, unique within the namespace.
    pub name: String,

    /// Track namespace (`namespace`); absent means "the catalog's own namespace".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Payload encapsulation (`packaging`): `"cmaf"` for our media tracks.
    pub packaging: String,

    /// Whether new objects will still be added (`isLive`, required by MSF).
    pub is_live: bool,

    /// Content role (`role`): `"video"`, `"audio"`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,

    /// Human-readable label (`label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,

    /// Tracks meant to be rendered together share a render group (`renderGroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_group: Option<u64>,

    /// Alternate encodings of the same content share an alternate group (`altGroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_group: Option<u64>,

    /// RFC 6381 codec string (`codec`), e.g. `avc1.64001f`, `mp4a.40.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,

    /// MIME type (`mimeType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,

    /// Frames per second (`framerate`), video only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "number::serialize_f64"
    )]
    pub framerate: Option<f64>,

    /// Media time units per second (`timescale`): the timescale of the track's `tfdt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timescale: Option<u32>,

    /// Maximum bitrate in bits per second (`bitrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,

    /// Encoded width in pixels (`width`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,

    /// Encoded height in pixels (`height`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,

    /// Audio sample rate in Hz (`samplerate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplerate: Option<u32>,

    /// Audio channel configuration (`channelConfig`), a string per MSF (e.g. `"2"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_config: Option<String>,

    /// Dominant language (`lang`), an RFC 5646 tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,

    /// Reference to an `initDataList` entry (`initRef`, MSF draft-01). On parse, an inline
    /// entry is copied into [`CatalogTrack::init_data`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_ref: Option<String>,

    /// Base64 of the track's CMAF header: ftyp + moov (`initData`, CMSF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_data: Option<String>,

    /// Every field we do not model, kept verbatim so nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CatalogTrack {
    /// A live CMAF track with only the required fields set.
    pub fn cmaf(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: None,
            packaging: PACKAGING_CMAF.to_string(),
            is_live: true,
            role: None,
            label: None,
            render_group: None,
            alt_group: None,
            codec: None,
            mime_type: None,
            framerate: None,
            timescale: None,
            bitrate: None,
            width: None,
            height: None,
            samplerate: None,
            channel_config: None,
            lang: None,
            init_ref: None,
            init_data: None,
            extra: serde_json::Map::new(),
        }
    }

    /// An MSF event timeline track of JSON records about the tracks named in `depends`
    /// (MSF "Event Timeline Catalog requirements").
    pub fn event_timeline(name: impl Into<String>, event_type: &str, depends: &[&str]) -> Self {
        let mut track = Self::cmaf(name);
        track.packaging = PACKAGING_EVENT_TIMELINE.to_string();
        track.mime_type = Some("application/json".to_string());
        track.role = Some("data".to_string());
        track.extra.insert("eventType".into(), event_type.into());
        track.extra.insert(
            "depends".into(),
            depends
                .iter()
                .map(|d| serde_json::Value::from(*d))
                .collect(),
        );
        track
    }

    /// True for a track whose role is `video`.
    pub fn is_video(&self) -> bool {
        self.role.as_deref() == Some(ROLE_VIDEO)
    }

    /// True for a track whose role is `audio`.
    pub fn is_audio(&self) -> bool {
        self.role.as_deref() == Some(ROLE_AUDIO)
    }

    /// False when the catalog says this alternate's groups do not line up with those of
    /// the other tracks of its `altGroup` ([`super::GROUPS_ALIGNED`]); then a switch to it
    /// must wait for its next keyframe by media time, not its next group number.
    pub fn groups_aligned(&self) -> bool {
        self.extra
            .get(super::GROUPS_ALIGNED)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true)
    }

    /// True for a CMAF-packaged track (`packaging: "cmaf"`).
    pub fn is_cmaf(&self) -> bool {
        self.packaging == PACKAGING_CMAF
    }

    /// The track's CMAF init segment (ftyp + moov), decoded from `initData`.
    pub fn init_segment(&self) -> Result<Vec<u8>, CatalogError> {
        let encoded = self
            .init_data
            .as_deref()
            .ok_or_else(|| CatalogError::MissingInitData {
                track: self.name.clone(),
            })?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|source| CatalogError::InitDataBase64 {
                track: self.name.clone(),
                source,
            })
    }

    /// Stores `segment` as this track's base64 `initData`.
    pub fn set_init_segment(&mut self, segment: &[u8]) {
        self.init_data = Some(base64::engine::general_purpose::STANDARD.encode(segment));
    }
}

/// JSON number helpers: MSF examples write whole numbers without a fraction (`30`, not
/// `30.0`), so integral floats are written as integers.
mod number {
    use serde::Serializer;

    #[allow(clippy::ref_option)] // serde's `serialize_with` hands us `&Option<T>`
    pub(super) fn serialize_f64<S: Serializer>(
        value: &Option<f64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) if v.fract() == 0.0 && *v >= 0.0 && *v < u64::MAX as f64 => {
                serializer.serialize_u64(*v as u64)
            }
            Some(v) => serializer.serialize_f64(*v),
            None => serializer.serialize_none(),
        }
    }
}
