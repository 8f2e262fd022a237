//! Errors of the CMAF ingest. Every variant except [`IngestError::Encode`] (ours) and
//! [`IngestError::AlreadyFailed`] (API misuse) is a fault of the input stream.

/// The `-movflags` we recommend when the input is not usable as it is.
pub const RECOMMENDED_MOVFLAGS: &str = "cmaf+empty_moov+frag_keyframe+default_base_moof";

/// Why the ingest rejected its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The stream does not start like an MP4 file at all (a text file, a transport stream...).
    #[error("input is not fragmented MP4: expected ftyp/moov, found {found}")]
    NotMp4 {
        /// The first box type seen, printed readably.
        found: String,
    },

    /// The input is an ordinary (progressive) MP4, or fragmented in a way we cannot stream.
    #[error(
        "input MP4 is not fragmented ({reason}); remux it with \
         `ffmpeg -i IN -c copy -f mp4 -movflags {RECOMMENDED_MOVFLAGS} OUT.mp4`"
    )]
    NotFragmented {
        /// What gave it away.
        reason: String,
    },

    /// A movie fragment came before the movie box that describes its tracks.
    #[error("fragment ({kind} box) before the moov: the stream must start with ftyp + moov")]
    FragmentBeforeMoov {
        /// `moof` or `mdat`.
        kind: String,
    },

    /// An `ftyp` or `moov` arrived among the fragments without
    /// [`super::CmafIngest::begin_loop`] having announced a new pass over the file.
    #[error("unexpected {kind} after the fragments started (to repeat the same file, call begin_loop() before it)")]
    UnexpectedHeader {
        /// `ftyp` or `moov`.
        kind: String,
    },

    /// An `mdat` that no `moof` describes.
    #[error("mdat without a preceding moof")]
    OrphanMdat,

    /// The repeated `ftyp`/`moov` of a looped file differs from the first loop's.
    #[error("looped input differs from the first loop: its {kind} box is not the same")]
    LoopMismatch {
        /// `ftyp` or `moov`.
        kind: String,
    },

    /// A top-level box is larger than we are willing to buffer.
    #[error("{kind} box of {size} bytes exceeds the {max}-byte limit for a top-level box")]
    BoxTooLarge {
        /// The box type.
        kind: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        max: u64,
    },

    /// A box header declares an impossible size.
    #[error("{kind} box has an invalid size in its header")]
    InvalidBoxSize {
        /// The box type.
        kind: String,
    },

    /// A box of size 0 ("extends to the end of the file") cannot be framed in a stream.
    #[error("{kind} box extends to the end of the file (size 0), which a stream cannot frame")]
    UnboundedBox {
        /// The box type.
        kind: String,
    },

    /// A box could not be decoded.
    #[error("malformed {kind} box: {source}")]
    Malformed {
        /// The top-level box type.
        kind: String,
        /// What mp4-atom objected to.
        source: mp4_atom::Error,
    },

    /// The input ended in the middle of something.
    #[error("input is truncated: {what}")]
    Truncated {
        /// What was left incomplete.
        what: String,
    },

    /// A `moof` was not followed by its `mdat`.
    #[error("moof is not followed by an mdat (found {found})")]
    MissingMdat {
        /// The box found instead.
        found: String,
    },

    /// The `moov` describes no audio or video track we can carry.
    #[error("the input has no audio or video track")]
    NoMediaTracks,

    /// A track uses a codec we cannot describe in the catalog.
    #[error(
        "track {track_id}: unsupported codec {codec} (supported: avc1/avc3, hev1/hvc1, mp4a, opus)"
    )]
    UnsupportedCodec {
        /// The track's ID.
        track_id: u32,
        /// The sample entry type.
        codec: String,
    },

    /// A track description is incomplete or inconsistent.
    #[error("track {track_id}: {reason}")]
    InvalidTrack {
        /// The track's ID.
        track_id: u32,
        /// What is wrong.
        reason: String,
    },

    /// A fragment refers to a track the `moov` does not declare.
    #[error("fragment refers to track {track_id}, which the moov does not declare")]
    UnknownTrack {
        /// The undeclared track ID.
        track_id: u32,
    },

    /// A `trun` points at bytes outside the `mdat` that follows its `moof`.
    #[error("track {track_id}: sample data lies outside the mdat that follows its moof")]
    SampleDataOutOfRange {
        /// The track whose samples are misplaced.
        track_id: u32,
    },

    /// Sample counts, sizes or times overflow.
    #[error("track {track_id}: {what} overflows")]
    Overflow {
        /// The track.
        track_id: u32,
        /// What overflowed.
        what: &'static str,
    },

    /// Re-encoding a fragment failed (a bug on our side, not in the input).
    #[error("internal error re-encoding a fragment: {0}")]
    Encode(mp4_atom::Error),

    /// A previous call failed; the ingest cannot resynchronise.
    #[error("ingest already failed earlier; start a new CmafIngest")]
    AlreadyFailed,
}
