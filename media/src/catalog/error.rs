//! Errors from reading an MSF catalog or the init data it carries.

/// Why a catalog (or a track's init data) could not be read.
///
/// Every variant is the fault of whoever produced the catalog bytes (the peer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The catalog is larger than [`super::MAX_CATALOG_SIZE`]; we refuse to parse it.
    #[error("catalog is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the offered catalog in bytes.
        size: usize,
        /// The limit it exceeded.
        max: usize,
    },

    /// The catalog is not valid JSON or lacks a required MSF field.
    #[error("catalog is not a valid MSF catalog: {0}")]
    Json(#[from] serde_json::Error),

    /// A track's `initData` is not valid base64.
    #[error("track {track:?}: initData is not valid base64: {source}")]
    InitDataBase64 {
        /// The track whose init data is broken.
        track: String,
        /// What the base64 decoder objected to.
        source: base64::DecodeError,
    },

    /// A track carries no inline init data (no `initData`, and no `initRef` to an inline
    /// `initDataList` entry).
    #[error("track {track:?} carries no initData")]
    MissingInitData {
        /// The track without init data.
        track: String,
    },
}
