//! Stagecast's relay engine, shared by `stagecast-relay` (edge and mid-tier nodes) and the
//! origin `stagecast-server`.
//!
//! ```text
//!  publisher session ──PUBLISH_NAMESPACE──▶ router ◀── local broadcasts (in-process)
//!                                              │
//!  subscriber session ──SUBSCRIBE──▶ relay ────┤ (no route here) ──▶ upstream link
//!                                     │        │
//!                                     │   registry: one source subscription per track
//!                                     │        │
//!                                     └◀── cache (recent groups, shared Bytes) ◀── source
//! ```
//!
//! Media-agnostic: nothing here parses CMAF, catalogs or interaction payloads; interaction
//! streams are forwarded toward the origin as opaque bytes. The control decisions are
//! plain types in [`control`]; what a node binary adds around the engine (flags, config
//! file, HTTP, drain, banner) is [`node`].

pub mod accept;
pub mod auth;
pub mod cache;
pub mod control;
pub mod delivery;
pub mod demux;
pub mod fetch;
pub mod fetch_merge;
pub mod forward;
pub mod forward_share;
pub mod goaway;
pub mod hooks;
pub mod local;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod relay;
pub mod router;
pub mod session;
pub mod source;
pub mod track_io;
pub mod upstream;

pub use relay::{Relay, RelayConfig};
