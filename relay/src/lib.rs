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
//! streams are forwarded toward the origin as opaque bytes.

pub mod accept;
pub mod auth;
pub mod auth_args;
pub mod cache;
/// The cache's byte budget, at its old path (`cache::budget`).
pub use cache::budget;
pub mod config_file;
pub mod control;
pub mod delivery;
pub mod demux;
pub mod drain;
pub mod fetch;
pub mod fetch_merge;
pub mod forward;
pub mod forward_share;
pub mod goaway;
pub mod hooks;
pub mod http;
pub mod http_server;
pub mod local;
pub mod metrics;
pub mod node;
pub mod quic_args;
pub mod registry;
pub mod relay;
pub mod router;
pub mod session;
pub mod source;
pub mod track_io;
pub mod upstream;

pub use relay::{Relay, RelayConfig};
