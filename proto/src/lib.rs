//! Stagecast's shared protocol code: what every binary speaks.
//!
//! - [`address_limit`]: per-client-address rate and count limits (QUIC, guest sign-ins);
//! - [`admission`]: which new QUIC connections a server takes (Retry, caps per address);
//! - [`certificate`]: server identities, from PEM files or a self-made development
//!   certificate that browsers can pin by its SHA-256 fingerprint;
//! - [`trust`]: how a client decides to trust a server (system roots or a pinned fingerprint);
//! - [`endpoint`]: one UDP port serving MoQ Transport draft-18 over both WebTransport
//!   (HTTP/3, ALPN `h3`) and raw QUIC (ALPN `moqt-18`), and the matching client;
//! - [`key_file`]: the private data directory and key files (0700/0600, refused if open);
//! - [`path`]: broadcast paths (`live/alice`) and their MoQ track namespaces.

pub mod address_limit;
pub mod admission;
pub mod byte_size;
pub mod certificate;
pub mod close;
pub mod config_file;
pub mod duration;
pub mod endpoint;
pub mod goaway;
pub mod interaction;
pub mod key_file;
pub mod logging;
pub mod migration;
pub mod path;
pub mod ready;
pub mod sync;
pub mod token;
pub mod trust;
pub mod varint;

pub use moq_transport;
pub use web_transport_quinn;
