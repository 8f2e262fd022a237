//! Errors of the egress muxer.

use crate::catalog::CatalogError;

/// Why the egress could not build the init segment or a fragment.
///
/// Init errors are the catalog producer's fault; fragment errors the publisher's (or a
/// mix-up of tracks by the caller, for [`EgressError::UnknownTrack`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// The catalog lists no CMAF track with init data.
    #[error("the catalog has no CMAF track with initData")]
    NoTracks,

    /// A track's `initData` cannot be decoded.
    #[error("track {track:?}: {source}")]
    InitData {
        /// The track.
        track: String,
        /// Why its init data is unreadable.
        source: CatalogError,
    },

    /// A track's init segment is not valid ISO BMFF.
    #[error("track {track:?}: malformed init segment: {source}")]
    MalformedInit {
        /// The track.
        track: String,
        /// What mp4-atom objected to.
        source: mp4_atom::Error,
    },

    /// A track's init segment is valid ISO BMFF but not a single-track CMAF header.
    #[error("track {track:?}: unusable init segment: {reason}")]
    InvalidInit {
        /// The track.
        track: String,
        /// What is missing or ambiguous.
        reason: String,
    },

    /// [`super::FragmentedMp4Writer::fragment`] was given a track that is not in the file.
    #[error("track {track:?} is not part of this file")]
    UnknownTrack {
        /// The unknown track name.
        track: String,
    },

    /// An object payload is not a sequence of complete ISO BMFF boxes with a moof.
    #[error("track {track:?}: malformed fragment: {reason}")]
    MalformedFragment {
        /// The track.
        track: String,
        /// What is wrong.
        reason: String,
    },

    /// An object's `tfhd` names another track than the one its init segment declares.
    #[error(
        "track {track:?}: fragment is for track_ID {found}, its init segment declares {expected}"
    )]
    TrackMismatch {
        /// The track.
        track: String,
        /// The track_ID of its init segment.
        expected: u32,
        /// The track_ID found in the fragment.
        found: u32,
    },

    /// Re-encoding failed (a bug on our side).
    #[error("internal error encoding: {0}")]
    Encode(mp4_atom::Error),
}
