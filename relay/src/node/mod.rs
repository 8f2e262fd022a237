//! What every node binary (`stagecast-server`, `stagecast-relay`) does around the engine:
//! its shared options, its certificate (kept fresh while it runs), its listeners, the
//! banner naming its addresses, and serving until SIGTERM, then draining. The HTTP port is
//! served within its limits (`--http-*`), and over HTTPS too with a real certificate.
//!
//! This module is the node shell; the engine (routing, cache, sources, sessions) is the
//! rest of the crate and knows nothing of flags, files or HTTP.

pub mod auth_args;
pub mod config_file;
pub mod drain;
pub mod http;
pub mod http_server;
pub mod quic_args;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use stagecast_proto::certificate::ServerIdentity;
use stagecast_proto::endpoint::{EndpointHandle, ServerEndpoint};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::auth_args::AuthArgs;
use crate::node::http_server::{HttpLimits, HttpMetrics};
use crate::relay::{Relay, RelayConfig};

/// Options shared by the node binaries (each binary adds its own addresses and data
/// directory, whose defaults differ).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// PEM certificate chain (with --tls-key); otherwise a development certificate is made.
    #[arg(long, env = "STAGECAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "STAGECAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra host names for the development certificate (besides localhost, 127.0.0.1, ::1).
    #[arg(
        long = "dev-cert-host",
        env = "STAGECAST_DEV_CERT_HOSTS",
        value_delimiter = ','
    )]
    pub dev_cert_hosts: Vec<String>,
    /// On SIGTERM, how long sessions get to leave before they are closed.
    #[arg(long, env = "STAGECAST_DRAIN_TIMEOUT", default_value = "10s", value_parser = stagecast_proto::duration::parse_duration)]
    pub drain_timeout: Duration,
    /// On SIGTERM, where sessions are told to reconnect (GOAWAY's New Session URI);
    /// default: the URI they used, for a load balancer to send elsewhere.
    #[arg(long, env = "STAGECAST_GOAWAY_URI")]
    pub goaway_uri: Option<url::Url>,
    /// One byte budget for all cached groups (`512MiB`, `2GiB`); default an eighth of
    /// the machine's memory.
    #[arg(long, env = "STAGECAST_CACHE_BYTES", value_parser = stagecast_proto::byte_size::parse_byte_size)]
    pub cache_bytes: Option<usize>,
    /// TOML file of options (`bind = "[::]:4443"`); flags and environment variables win.
    #[arg(long, env = "STAGECAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write a qlog of every QUIC connection into this directory (for debugging QUIC).
    #[arg(long, env = "STAGECAST_QLOG_DIR")]
    pub qlog_dir: Option<PathBuf>,
    /// HTTP port: how long a connection may take to send a request head (also how long
    /// an idle kept-alive connection stays open).
    #[arg(long, env = "STAGECAST_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = stagecast_proto::duration::parse_duration)]
    pub http_header_timeout: Duration,
    /// HTTP port: how long one request may take, reading its body and answering (else 408).
    #[arg(long, env = "STAGECAST_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = stagecast_proto::duration::parse_duration)]
    pub http_request_timeout: Duration,
    /// HTTP port: connections open at once; more are closed on arrival (kept below the
    /// open-files limit).
    #[arg(long, env = "STAGECAST_HTTP_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// HTTP port: connections one client address (an IPv6 one by its /64) may have open
    /// at once; behind a proxy that hides client addresses, set it to the total.
    #[arg(long, env = "STAGECAST_HTTP_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections_per_address: u32,
    /// HTTP port: the largest request body (`64KiB`); larger ones get 413.
    #[arg(long, env = "STAGECAST_HTTP_MAX_BODY", default_value = "64KiB", value_parser = stagecast_proto::byte_size::parse_byte_size)]
    pub http_max_body: usize,
    #[command(flatten)]
    pub quic: crate::node::quic_args::QuicArgs,
    /// FETCHes one session may have served at once; more are refused (EXCESSIVE_LOAD).
    #[arg(long, env = "STAGECAST_MAX_FETCHES_PER_SESSION", default_value_t = crate::fetch_merge::DEFAULT_FETCHES_PER_SESSION)]
    pub max_fetches_per_session: usize,
    /// Groups one FETCH may span; a longer range is cut to this (a standalone FETCH keeps
    /// its start, a Joining FETCH its end).
    #[arg(long, env = "STAGECAST_MAX_FETCH_GROUPS", default_value_t = crate::fetch_merge::DEFAULT_MAX_FETCH_GROUPS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_fetch_groups: u64,
    /// Bytes one FETCH may read from its source (`64MiB`); charged to --cache-bytes.
    #[arg(long, env = "STAGECAST_MAX_FETCH_BYTES", default_value = "64MiB", value_parser = stagecast_proto::byte_size::parse_byte_size)]
    pub max_fetch_bytes: usize,
    /// Objects one cached group may hold; a group growing past it is dropped.
    #[arg(long, env = "STAGECAST_MAX_GROUP_OBJECTS", default_value_t = crate::cache::DEFAULT_MAX_GROUP_OBJECTS)]
    pub max_group_objects: usize,
    #[command(flatten)]
    pub auth: AuthArgs,
}

impl RelayConfig {
    /// The FETCH and per-group object limits of `args`.
    fn with_data_limits(mut self, args: &NodeArgs) -> Self {
        self.fetch = crate::fetch_merge::FetchLimits {
            per_session: args.max_fetches_per_session,
            max_groups: args.max_fetch_groups,
            max_bytes: args.max_fetch_bytes,
        };
        self.cache.max_group_objects = args.max_group_objects;
        self
    }
}

/// How often a running node checks whether its development certificate needs renewing.
const RENEW_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// A node's listeners, bound and ready to serve.
pub struct NodeListeners {
    pub identity: ServerIdentity,
    pub endpoint: ServerEndpoint,
    pub http: TcpListener,
    /// The certificate fingerprint now (changes when a development certificate renews).
    pub fingerprint: watch::Receiver<String>,
    /// With a real certificate, the HTTP port's TLS set-up: it speaks HTTPS too.
    pub https: Option<Arc<rustls::ServerConfig>>,
}

impl NodeArgs {
    /// The engine settings these options describe. `generated_key` is where the origin
    /// keeps the token key it makes when none is given.
    pub fn relay_config(
        &self,
        generated_key: Option<&Path>,
        has_upstream: bool,
    ) -> anyhow::Result<RelayConfig> {
        let cache_bytes = self
            .cache_bytes
            .unwrap_or_else(stagecast_proto::byte_size::default_cache_bytes);
        Ok(RelayConfig {
            auth: self.auth.policy(generated_key)?,
            has_upstream,
            sessions: crate::relay::SessionLimits {
                setup_timeout: self.quic.setup_timeout,
                forward_per_session: self.quic.forward_streams_per_session,
                forward_total: self.quic.forward_streams,
            },
            ..RelayConfig::with_cache_budget(cache_bytes)
        }
        .with_data_limits(self))
    }

    /// The limits of the HTTP port these options describe.
    pub fn http_limits(&self) -> HttpLimits {
        let wanted = usize::try_from(self.http_max_connections).unwrap_or(usize::MAX);
        HttpLimits {
            header_timeout: self.http_header_timeout,
            request_timeout: self.http_request_timeout,
            max_connections: crate::node::http_server::effective_max_connections(wanted),
            max_connections_per_address: usize::try_from(self.http_max_connections_per_address)
                .unwrap_or(usize::MAX),
            max_body_bytes: self.http_max_body,
        }
    }

    /// Loads the certificate, binds the UDP endpoint and the HTTP listener, and keeps a
    /// development certificate fresh while the node runs.
    pub async fn listen(
        &self,
        bind: SocketAddr,
        http_bind: SocketAddr,
        data_dir: &Path,
    ) -> anyhow::Result<NodeListeners> {
        stagecast_proto::key_file::create_private_dir(data_dir)?;
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ServerIdentity::load_pem(cert, key)?,
            _ => ServerIdentity::load_or_create_dev(data_dir, &self.dev_cert_hosts)?,
        };
        if let Some(dir) = &self.qlog_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the qlog directory {}", dir.display()))?;
        }
        let endpoint = ServerEndpoint::bind_with(
            bind,
            &identity,
            stagecast_proto::endpoint::EndpointOptions {
                qlog_dir: self.qlog_dir.clone(),
                ..self.quic.endpoint_options()
            },
        )?;
        let http = TcpListener::bind(http_bind)
            .await
            .with_context(|| format!("cannot listen for HTTP on {http_bind}"))?;
        // A development certificate is for QUIC pinning; browsers would not trust it.
        let https = match identity.expires {
            None => Some(Arc::new(
                identity
                    .server_config(&[b"http/1.1"])
                    .context("cannot use the certificate for HTTPS")?,
            )),
            Some(_) => None,
        };
        let (fingerprint_tx, fingerprint) = watch::channel(identity.fingerprint.clone());
        if identity.expires.is_some() {
            tokio::spawn(renew_dev_certificate(
                data_dir.to_path_buf(),
                self.dev_cert_hosts.clone(),
                endpoint.handle(),
                fingerprint_tx,
            ));
        }
        Ok(NodeListeners {
            identity,
            endpoint,
            http,
            fingerprint,
            https,
        })
    }
}

impl NodeListeners {
    /// Prints where the node listens on stderr: a banner for people (ending with the
    /// binary's own `extra` lines), then the
    /// [`ReadyLine`](stagecast_proto::ready::ReadyLine) that scripts and tests read.
    pub fn print_banner(&self, title: &str, extra: &[String]) -> anyhow::Result<()> {
        let quic = self.endpoint.local_addr()?.port();
        let http = self.http.local_addr()?.port();
        tracing::info!(quic, http, fingerprint = %self.identity.fingerprint, "{title}");
        eprintln!("{title}");
        eprintln!("  MoQ (QUIC):         moqt://localhost:{quic}");
        eprintln!("  MoQ (WebTransport): https://localhost:{quic}");
        eprintln!("  HTTP:               http://localhost:{http}");
        if self.https.is_some() {
            eprintln!("  HTTPS (same port):  https://localhost:{http}");
        }
        eprintln!("  certificate SHA-256 {}", self.identity.fingerprint);
        for line in extra {
            eprintln!("  {line}");
        }
        let ready = stagecast_proto::ready::ReadyLine {
            quic_port: quic,
            http_port: http,
            fingerprint: self.identity.fingerprint.clone(),
            https: self.https.is_some(),
        };
        eprintln!("{}", ready.to_line());
        Ok(())
    }

    /// Serves `routes` over HTTP and MoQ sessions on the endpoint until SIGTERM or Ctrl-C,
    /// then drains as `args` say.
    pub async fn serve(self, relay: Relay, routes: axum::Router, args: &NodeArgs) {
        tokio::spawn(crate::node::http_server::serve(
            self.http,
            routes,
            args.http_limits(),
            self.https,
            HttpMetrics::default(),
        ));
        let handle: EndpointHandle = self.endpoint.handle();
        let accept = tokio::spawn(crate::accept::serve_endpoint(relay.clone(), self.endpoint));
        tokio::select! {
            _ = accept => {},
            () = crate::node::drain::shutdown_signal() => {
                crate::node::drain::drain(&relay, &handle, args.drain_timeout, args.goaway_uri.as_ref())
                    .await;
            }
        }
    }
}

/// Keeps the development certificate fresh while the node runs: new connections get the
/// renewed one (and `/certificate.sha256` names it); open ones keep theirs.
async fn renew_dev_certificate(
    data_dir: PathBuf,
    hosts: Vec<String>,
    endpoint: EndpointHandle,
    fingerprint: watch::Sender<String>,
) {
    let mut every = tokio::time::interval(RENEW_CHECK_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match ServerIdentity::load_or_create_dev(&data_dir, &hosts) {
            Ok(identity) if *fingerprint.borrow() != identity.fingerprint => {
                match endpoint.set_identity(&identity) {
                    Ok(()) => {
                        tracing::info!(fingerprint = %identity.fingerprint, "development certificate renewed");
                        fingerprint.send_replace(identity.fingerprint);
                    }
                    Err(err) => tracing::error!(%err, "cannot use the renewed certificate"),
                }
            }
            Ok(_) => {}
            Err(err) => tracing::error!(%err, "cannot renew the development certificate"),
        }
    }
}
