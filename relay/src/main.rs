//! `stagecast-relay`: an edge or mid-tier relay node under an origin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_relay::node::NodeArgs;
use stagecast_relay::upstream::{run_upstream, LinkState, UpstreamConfig};
use stagecast_relay::Relay;
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
    /// TCP address for HTTP (/healthz, /readyz, /metrics, /certificate.sha256).
    #[arg(long, env = "STAGECAST_HTTP_BIND", default_value = "[::]:8081")]
    http_bind: SocketAddr,
    /// Directory for the development certificate.
    #[arg(
        long,
        env = "STAGECAST_DATA_DIR",
        default_value = "./stagecast-relay-data"
    )]
    data_dir: PathBuf,
    /// Trust upstream certificates with these SHA-256 fingerprints (hex; repeat or
    /// comma-separate, one per upstream) instead of the system roots.
    #[arg(long, env = "STAGECAST_UPSTREAM_FINGERPRINT", value_delimiter = ',')]
    upstream_fingerprint: Vec<String>,
    /// Token this relay presents to its upstream (`stagecast token issue --sub relay-1
    /// --publish "" --subscribe ""`).
    #[arg(long, env = "STAGECAST_UPSTREAM_TOKEN", hide_env_values = true)]
    upstream_token: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> anyhow::Result<()> {
    stagecast_proto::logging::init();
    // Before the runtime's threads exist: the config file sets environment defaults.
    stagecast_relay::node::config_file::apply_config_file::<Args>()?;
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let relay = Relay::new(args.node.relay_config(None, !args.upstream.is_empty())?);
    let listeners = args
        .node
        .listen(args.bind, args.http_bind, &args.data_dir)
        .await?;
    listeners.print_banner("Stagecast relay ready", &[])?;
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
            stop_when_refused: false,
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
    let routes = stagecast_relay::node::http::routes(relay.clone(), listeners.fingerprint.clone());
    listeners.serve(relay, routes, &args.node).await;
    Ok(())
}
