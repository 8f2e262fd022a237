//! `stagecast-server`: the Stagecast origin. One UDP port serves MoQ Transport draft-18 over
//! raw QUIC and WebTransport; one TCP port serves HTTP (health, metrics, the viewer). Out of
//! the box it publishes a demo channel and uses a development certificate and a token key
//! kept in its data directory.

mod demo;
mod extra_tracks;
mod guest;
mod interaction;
mod names;
mod settings;
mod transcode;
mod viewer;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use interaction::authority::Authority;
use interaction::payments::DevCredits;
use interaction::service::{InteractionService, ServiceConfig};
use interaction::store::SqliteStore;
use stagecast_relay::node::NodeArgs;
use stagecast_relay::Relay;

/// The Stagecast origin server.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// UDP address for MoQ over QUIC (moqt://) and WebTransport (https://).
    #[arg(long, env = "STAGECAST_BIND", default_value = "[::]:4443")]
    bind: SocketAddr,
    /// TCP address for HTTP (viewer, /healthz, /readyz, /metrics, /certificate.sha256,
    /// /api/broadcasts).
    #[arg(long, env = "STAGECAST_HTTP_BIND", default_value = "[::]:8080")]
    http_bind: SocketAddr,
    /// Directory for the development certificate, the token key and stored state.
    #[arg(long, env = "STAGECAST_DATA_DIR", default_value = "./stagecast-data")]
    data_dir: PathBuf,
    /// Do not publish the demo channel (demo/live).
    #[arg(long, env = "STAGECAST_NO_DEMO")]
    no_demo: bool,
    #[command(flatten)]
    origin: settings::OriginArgs,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    viewer: viewer::ViewerArgs,
}

/// The token key the origin makes in its data directory when none is given.
const AUTH_KEY_FILE: &str = "auth.key";
/// Chat history, polls and the credit ledger, in the data directory.
const INTERACTION_DB: &str = "interaction.db";

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
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let generated_key = args.data_dir.join(AUTH_KEY_FILE);
    let mut config = args.node.relay_config(Some(&generated_key), false)?;
    let store = SqliteStore::open(&args.data_dir.join(INTERACTION_DB))
        .context("cannot open the interaction database")?;
    let demo = (!args.no_demo).then_some(demo::DEMO_BROADCAST);
    let credits = DevCredits {
        prefixes: args.origin.dev_credit_prefixes(demo),
    };
    if !credits.prefixes.is_empty() {
        tracing::info!(channels = ?credits.prefixes, "development credits are on");
    }
    let authority = Authority::new(
        Box::new(store),
        Box::new(credits),
        args.origin.channel_limits(),
    )
    .context("cannot load the credit ledger")?;
    let token_key = config.auth.key.clone();
    let names = Arc::new(names::ReservedNames::default());
    let interaction = InteractionService::new(
        authority,
        ServiceConfig {
            key: token_key.clone(),
            auth: config.auth.clone(),
            names: names.clone(),
            idle_timeout: args.origin.interaction_idle_timeout,
        },
    )
    .context("cannot start the interaction authority")?;
    config.interaction = Some(interaction.clone());
    let transcoder = args
        .origin
        .transcode_config()
        .map(transcode::Transcoder::new);
    let mut extra_tracks: Vec<Arc<dyn stagecast_relay::hooks::ExtraTracks>> =
        vec![interaction.clone()];
    if let Some(transcoder) = &transcoder {
        extra_tracks.push(transcoder.clone());
    }
    config.extra_tracks = Some(Arc::new(extra_tracks::ExtraTrackSet::new(extra_tracks)));
    let relay = Relay::new(config);
    interaction.attach(relay.clone());
    if let Some(transcoder) = &transcoder {
        transcoder.attach(relay.clone());
        tracing::info!(
            ladder = %args.origin.transcode.as_ref().map(ToString::to_string).unwrap_or_default(),
            max = args.origin.max_transcodes,
            "origin transcoding is on"
        );
    }
    let listeners = args
        .node
        .listen(args.bind, args.http_bind, &args.data_dir)
        .await?;
    let mut extra = Vec::new();
    if !args.node.auth.no_auth {
        let key = args
            .node
            .auth
            .auth_key_file
            .clone()
            .unwrap_or(generated_key);
        extra.push(format!("token key:          {}", key.display()));
    }
    if !args.no_demo {
        extra.push(format!("demo channel:       {}", demo::DEMO_BROADCAST));
    }
    listeners.print_banner("Stagecast origin ready", &extra)?;
    if !args.no_demo {
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(err) = demo::run_demo(relay).await {
                tracing::error!(%err, "demo channel stopped");
            }
        });
    }
    let quic_port = listeners.endpoint.local_addr()?.port();
    let routes = web::routes(relay.clone(), listeners.fingerprint.clone())
        .merge(viewer::routes(viewer::ViewerConfig {
            moqt_port: quic_port,
            relays: args.viewer.viewer_relays.clone(),
            loopback_http: listeners.https.is_none(),
        }))
        .merge(guest::routes(
            guest::GuestPolicy {
                key: token_key,
                subscribe: relay.config().auth.anonymous_subscribe.clone(),
                enabled: !args.origin.no_guests,
                rate: args.origin.guest_rate(),
            },
            names,
            relay.metrics().clone(),
        ));
    listeners.serve(relay, routes, &args.node).await;
    Ok(())
}
