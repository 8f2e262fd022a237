//! `stagecast-server`: the Stagecast origin. One UDP port serves MoQ Transport draft-18 over
//! raw QUIC and WebTransport; one TCP port serves HTTP. Out of the box it publishes a demo
//! channel and uses a development certificate kept in its data directory.

mod demo;
mod viewer;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stagecast_proto::certificate::ServerIdentity;
use stagecast_proto::endpoint::ServerEndpoint;
use stagecast_relay::auth_args::AuthArgs;
use stagecast_relay::{Relay, RelayConfig};

/// The Stagecast origin server.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// UDP address for MoQ over QUIC (moqt://) and WebTransport (https://).
    #[arg(long, env = "STAGECAST_BIND", default_value = "[::]:4443")]
    bind: SocketAddr,
    /// TCP address for HTTP (/healthz, /metrics, /certificate.sha256, /api/broadcasts).
    #[arg(long, env = "STAGECAST_HTTP_BIND", default_value = "[::]:8080")]
    http_bind: SocketAddr,
    /// Directory for the development certificate and stored state.
    #[arg(long, env = "STAGECAST_DATA_DIR", default_value = "./stagecast-data")]
    data_dir: PathBuf,
    /// PEM certificate chain (with --tls-key); otherwise a development certificate is made.
    #[arg(long, env = "STAGECAST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "STAGECAST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra host names for the development certificate (besides localhost, 127.0.0.1, ::1).
    #[arg(
        long = "dev-cert-host",
        env = "STAGECAST_DEV_CERT_HOSTS",
        value_delimiter = ','
    )]
    dev_cert_hosts: Vec<String>,
    /// Do not publish the demo channel (demo/live).
    #[arg(long, env = "STAGECAST_NO_DEMO")]
    no_demo: bool,
    /// On SIGTERM, how long sessions get to leave before they are closed.
    #[arg(long, env = "STAGECAST_DRAIN_TIMEOUT", default_value = "10s", value_parser = stagecast_proto::duration::parse_duration)]
    drain_timeout: std::time::Duration,
    #[command(flatten)]
    auth: AuthArgs,
    /// One byte budget for all cached groups (`512MiB`, `2GiB`); default an eighth of
    /// the machine's memory.
    #[arg(long, env = "STAGECAST_CACHE_BYTES", value_parser = stagecast_proto::byte_size::parse_byte_size)]
    cache_bytes: Option<usize>,
    /// TOML file of options (`bind = "[::]:4443"`); flags and environment variables win.
    #[arg(long, env = "STAGECAST_CONFIG")]
    config: Option<PathBuf>,
}

/// The token key the origin makes in its data directory when none is given.
const AUTH_KEY_FILE: &str = "auth.key";

/// How often a running server checks whether its development certificate needs renewing.
const RENEW_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Keeps the development certificate fresh while the server runs: new connections get the
/// renewed one (and `/certificate.sha256` names it); open ones keep theirs.
async fn renew_dev_certificate(
    data_dir: PathBuf,
    hosts: Vec<String>,
    switch: stagecast_proto::endpoint::EndpointHandle,
    fingerprint: tokio::sync::watch::Sender<String>,
) {
    let mut every = tokio::time::interval(RENEW_CHECK_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match ServerIdentity::load_or_create_dev(&data_dir, &hosts) {
            Ok(identity) if *fingerprint.borrow() != identity.fingerprint => {
                match switch.set_identity(&identity) {
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

fn main() -> anyhow::Result<()> {
    stagecast_proto::logging::init();
    // Before the runtime's threads exist: the config file sets environment defaults.
    stagecast_relay::config_file::apply_config_file::<Args>()?;
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => ServerIdentity::load_pem(cert, key)?,
        _ => ServerIdentity::load_or_create_dev(&args.data_dir, &args.dev_cert_hosts)?,
    };
    let cache_bytes = args
        .cache_bytes
        .unwrap_or_else(stagecast_proto::byte_size::default_cache_bytes);
    let relay = Relay::new(RelayConfig {
        auth: args.auth.policy(Some(&args.data_dir.join(AUTH_KEY_FILE)))?,
        ..RelayConfig::with_cache_budget(cache_bytes)
    });
    let endpoint = ServerEndpoint::bind(args.bind, &identity)?;
    let http = tokio::net::TcpListener::bind(args.http_bind)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", args.http_bind))?;
    let quic_addr = endpoint.local_addr()?;
    let http_addr = http.local_addr()?;
    tracing::info!(
        bind = %quic_addr,
        http = %http_addr,
        fingerprint = %identity.fingerprint,
        "stagecast-server listening"
    );
    eprintln!("Stagecast origin ready");
    eprintln!(
        "  MoQ (QUIC):         moqt://localhost:{}",
        quic_addr.port()
    );
    eprintln!(
        "  MoQ (WebTransport): https://localhost:{}",
        quic_addr.port()
    );
    eprintln!(
        "  HTTP:               http://localhost:{}",
        http_addr.port()
    );
    eprintln!("  certificate SHA-256 {}", identity.fingerprint);
    if let Some(key) = args
        .auth
        .auth_key_file
        .clone()
        .or_else(|| Some(args.data_dir.join(AUTH_KEY_FILE)))
        .filter(|_| !args.auth.no_auth)
    {
        eprintln!("  token key:          {}", key.display());
    }
    if !args.no_demo {
        eprintln!("  demo channel:       {}", demo::DEMO_BROADCAST);
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(err) = demo::run_demo(relay).await {
                tracing::error!(%err, "demo channel stopped");
            }
        });
    }
    let (fingerprint, fingerprint_rx) = tokio::sync::watch::channel(identity.fingerprint.clone());
    if identity.expires.is_some() {
        tokio::spawn(renew_dev_certificate(
            args.data_dir.clone(),
            args.dev_cert_hosts.clone(),
            endpoint.handle(),
            fingerprint,
        ));
    }
    tokio::spawn(stagecast_relay::http::serve(
        http,
        web::routes(relay.clone(), fingerprint_rx).merge(viewer::routes(quic_addr.port())),
    ));
    let handle = endpoint.handle();
    let accept = tokio::spawn(stagecast_relay::accept::serve_endpoint(
        relay.clone(),
        endpoint,
    ));
    tokio::select! {
        _ = accept => {},
        () = stagecast_relay::drain::shutdown_signal() => {
            stagecast_relay::drain::drain(&relay, &handle, args.drain_timeout).await;
        }
    }
    Ok(())
}
