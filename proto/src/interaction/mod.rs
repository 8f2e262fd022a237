//! The interaction protocol (version 1, specified in `docs/interaction.md`): the frames
//! of request streams (client -> origin), and the snapshot and events of the
//! `interaction` track (origin -> everyone), with the reducer both ends apply them with.

pub mod frame;
pub mod message;
pub mod timeline;

pub use frame::{FrameError, FrameReader, MAX_FRAME_BYTES, STREAM_HEADER};
pub use message::{Action, Answer, Hello, Reason, Request};
pub use timeline::{Event, Record, Snapshot, TimelineData};

/// The track of a broadcast that carries its interaction timeline.
pub const INTERACTION_TRACK: &str = "interaction";
/// The catalog's `eventType` for that track.
pub const EVENT_TYPE: &str = "dev.stagecast.interaction.v1";
