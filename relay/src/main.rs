//! `stagecast-relay`: an edge or mid-tier relay node under an origin.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stagecast_proto::certificate::ServerIdentity;
use stagecast_proto::endpoint::{ClientEndpoint, ServerEndpoint};
use stagecast_proto::trust::ClientTrust;
use stagecast_relay::auth_args::AuthArgs;
use stagecast_relay::upstream::{run_upstream, LinkState, UpstreamConfig};
use stagecast_relay::{Relay, RelayConfig};
use url::Url;

/// A Stagecast relay: caches and fans out MoQ tracks from its upstream to its subscribers,
/// and forwards what publishers publish here toward the origin.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Upstream relay or origin (moqt:// or https://); repeat for failover, in order.
    #[arg(long, env = "STAGECAST_UPSTREAM", value_delimiter = ',')]
    upstream: Vec<Url>,
    /// UDP address for MoQ over QUIC and WebTransport.
    #[arg(long, env = "STAGECAST_BIND", default_value = "[::]:4444")]
    bind: SocketAddr,
    /// TCP address for HTTP (/healthz, /metrics, /certificate.sha256).
    #[arg(long, env = "STAGECAST_HTTP_BIND", default_value = "[::]:8081")]
    http_bind: SocketAddr,
    /// Directory for the development certificate.
    #[arg(
        long,
        env = "STAGECAST_DATA_DIR",
        default_value = "./stagecast-relay-data"
    )]
    data_dir: PathBuf,
    /// PEM certificate chain (with --tls-key); otherwise a development certificate is used.
    #[arg(long, env = "STAGECAST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "STAGECAST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Trust upstream certificates with these SHA-256 fingerprints (hex; repeat or
    /// comma-separate, one per upstream) instead of the system roots.
    #[arg(long, env = "STAGECAST_UPSTREAM_FINGERPRINT", value_delimiter = ',')]
    upstream_fingerprint: Vec<String>,
    /// Token this relay presents to its upstream (`stagecast token issue --sub relay-1
    /// --publish "" --subscribe ""`).
    #[arg(long, env = "STAGECAST_UPSTREAM_TOKEN", hide_env_values = true)]
    upstream_token: Option<String>,
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
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => ServerIdentity::load_pem(cert, key)?,
        _ => ServerIdentity::load_or_create_dev(&args.data_dir, &[])?,
    };
    let cache_bytes = args
        .cache_bytes
        .unwrap_or_else(stagecast_proto::byte_size::default_cache_bytes);
    let relay = Relay::new(RelayConfig {
        auth: args.auth.policy(None)?,
        has_upstream: !args.upstream.is_empty(),
        ..RelayConfig::with_cache_budget(cache_bytes)
    });
    let endpoint = ServerEndpoint::bind(args.bind, &identity)?;
    let http = tokio::net::TcpListener::bind(args.http_bind)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", args.http_bind))?;
    tracing::info!(
        bind = %endpoint.local_addr()?,
        http = %http.local_addr()?,
        fingerprint = %identity.fingerprint,
        "stagecast-relay listening"
    );
    let quic_port = endpoint.local_addr()?.port();
    let http_port = http.local_addr()?.port();
    eprintln!("Stagecast relay ready");
    eprintln!("  MoQ (QUIC):         moqt://localhost:{quic_port}");
    eprintln!("  MoQ (WebTransport): https://localhost:{quic_port}");
    eprintln!("  HTTP:               http://localhost:{http_port}");
    eprintln!("  certificate SHA-256 {}", identity.fingerprint);
    let (_fingerprint, fingerprint_rx) = tokio::sync::watch::channel(identity.fingerprint.clone());
    let routes = stagecast_relay::http::routes(relay.clone(), fingerprint_rx);
    tokio::spawn(stagecast_relay::http::serve(http, routes));

    if !args.upstream.is_empty() {
        let trust = if args.upstream_fingerprint.is_empty() {
            stagecast_proto::trust::trust_for_urls(&args.upstream).await?
        } else {
            let pins = args
                .upstream_fingerprint
                .iter()
                .map(|hex| stagecast_proto::trust::parse_fingerprint(hex))
                .collect::<Result<Vec<_>, _>>()?;
            ClientTrust::Pinned(pins)
        };
        let config = UpstreamConfig {
            urls: args.upstream.clone(),
            trust,
            token: args.upstream_token.clone(),
        };
        let (state, _) = tokio::sync::watch::channel(LinkState::Disconnected {
            reason: "not started".into(),
            retry_in: Default::default(),
        });
        tokio::spawn(run_upstream(
            relay.clone(),
            ClientEndpoint::new()?,
            config,
            state,
        ));
    }
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
