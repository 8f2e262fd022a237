//! The `stagecast` command line: publish CMAF from ffmpeg or a file, subscribe to a
//! broadcast into a playable MP4, chat, vote, tip and moderate.
//!
//! The CMAF publisher ([`broadcast::CmafBroadcast`]) is also what the origin uses for its
//! looped demo channel, so both publish media the same way.

pub mod broadcast;
pub mod connect;
pub mod continuity;
pub mod interact;
pub mod interact_cmd;
pub mod pacing;
pub mod progress;
pub mod publish;
pub mod subscribe;
pub mod token;
pub mod track_reader;
