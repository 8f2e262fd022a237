//! Command-line and environment settings for what a node's connections and sessions may
//! hold: address validation, connection and handshake caps, the connection receive
//! window, how long a new connection has to send its MoQ SETUP, and how a relay shares its
//! upstream link's interaction streams.

use std::time::Duration;

use clap::Args;
use stagecast_proto::admission::AdmissionLimits;
use stagecast_proto::endpoint::{EndpointOptions, DEFAULT_RECEIVE_WINDOW};

#[derive(Args, Debug, Clone)]
pub struct QuicArgs {
    /// QUIC connections open at once (handshaking or established); more are refused.
    #[arg(long, env = "STAGECAST_MAX_CONNECTIONS", default_value_t = AdmissionLimits::default().max_connections)]
    pub max_connections: usize,
    /// QUIC connections one client address (an IPv6 /64) may hold open.
    #[arg(long, env = "STAGECAST_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = AdmissionLimits::default().max_connections_per_address)]
    pub max_connections_per_address: usize,
    /// QUIC handshakes one client address may have in progress.
    #[arg(long, env = "STAGECAST_MAX_HANDSHAKES_PER_ADDRESS", default_value_t = AdmissionLimits::default().max_handshakes_per_address)]
    pub max_handshakes_per_address: usize,
    /// Handshakes in progress above which a client must prove its address with a QUIC
    /// Retry first (0: always).
    #[arg(long, env = "STAGECAST_RETRY_ABOVE", default_value_t = AdmissionLimits::default().retry_above)]
    pub retry_above: usize,
    /// Bytes a peer may send on one connection ahead of what the node has read
    /// (`16MiB`).
    #[arg(long, env = "STAGECAST_QUIC_RECEIVE_WINDOW", default_value_t = DEFAULT_RECEIVE_WINDOW as usize, value_parser = stagecast_proto::byte_size::parse_byte_size)]
    pub quic_receive_window: usize,
    /// How long a new connection has to complete its MoQ SETUP.
    #[arg(long, env = "STAGECAST_SETUP_TIMEOUT", default_value = "10s", value_parser = stagecast_proto::duration::parse_duration)]
    pub setup_timeout: Duration,
    /// Interaction streams one downstream session may have forwarded upstream at once
    /// (a viewer page uses one).
    #[arg(long, env = "STAGECAST_FORWARD_STREAMS_PER_SESSION", default_value_t = crate::forward_share::DEFAULT_PER_SESSION)]
    pub forward_streams_per_session: usize,
    /// Interaction streams a relay may have forwarded on its upstream link at once.
    #[arg(long, env = "STAGECAST_FORWARD_STREAMS", default_value_t = crate::forward_share::DEFAULT_TOTAL)]
    pub forward_streams: usize,
}

impl QuicArgs {
    /// The endpoint options these settings describe (qlog off; the caller sets it).
    pub fn endpoint_options(&self) -> EndpointOptions {
        EndpointOptions {
            admission: AdmissionLimits {
                max_connections: self.max_connections,
                max_connections_per_address: self.max_connections_per_address,
                max_handshakes_per_address: self.max_handshakes_per_address,
                retry_above: self.retry_above,
                ..AdmissionLimits::default()
            },
            receive_window: self.quic_receive_window as u64,
            qlog_dir: None,
        }
    }
}
