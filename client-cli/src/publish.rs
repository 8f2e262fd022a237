//! `stagecast publish`: reads fragmented MP4 (CMAF) from stdin or a file and publishes it
//! as a MoQ broadcast at a server.
//!
//! The command runs a small relay node of its own: the broadcast lives in its cache and
//! its upstream link (with reconnection) carries the PUBLISH_NAMESPACE and answers the
//! server's SUBSCRIBEs, exactly as an edge relay forwards a publisher.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use stagecast_media::catalog::rendition::describe;
use stagecast_media::catalog::{Catalog, CatalogTrack};
use stagecast_media::ingest::{CmafIngest, IngestEvent};
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::path::namespace_from_path;
use stagecast_relay::cache::CacheLimits;
use stagecast_relay::router::{Owner, Source};
use stagecast_relay::upstream::{run_upstream, LinkState, UpstreamConfig};
use stagecast_relay::{Relay, RelayConfig};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use url::Url;

use crate::broadcast::{CmafBroadcast, ProducerClock};
use crate::connect::ConnectArgs;
use crate::pacing::Pacer;
use crate::progress::Progress;

/// How long the command waits, after its input ends, for the server to receive the last
/// groups before it disconnects.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 64 * 1024;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Server or relay URL: moqt://HOST:PORT (raw QUIC) or https://HOST:PORT (WebTransport).
    pub url: Url,
    /// Broadcast path, for example live/alice.
    pub broadcast: String,
    /// Read this file instead of stdin, paced in real time as if live.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// With --file: start again at the end, forever, with timestamps continuing.
    #[arg(long = "loop", requires = "file")]
    pub repeat: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let namespace = namespace_from_path(&args.broadcast)?;
    let relay = Relay::new(RelayConfig::default());
    // A file is paced as live: its chunks are "made" when they are sent.
    let clock = match args.file {
        Some(_) => ProducerClock::Publishing,
        None => ProducerClock::Encoder,
    };
    let mut broadcast =
        CmafBroadcast::new(namespace.clone(), CacheLimits::default()).with_producer_clock(clock);
    let _route = relay.router().register(
        namespace,
        Source::Local(broadcast.broadcast().clone()),
        Owner::Local,
    )?;

    let trust = args.connect.trust(&args.url).await?;
    let (link_tx, link_rx) = watch::channel(LinkState::Connecting {
        url: args.url.clone(),
    });
    let link = tokio::spawn(run_upstream(
        relay.clone(),
        ClientEndpoint::new()?,
        UpstreamConfig {
            urls: vec![args.url.clone()],
            trust,
            token: args.connect.token.clone(),
            stop_when_refused: true,
        },
        link_tx,
    ));

    let mut progress = Progress::new();
    let mut refused = link_rx.clone();
    // A refusal (bad token, no grant for this path) will not heal by retrying: stop.
    let result = tokio::select! {
        result = read_input(&args, &mut broadcast, &mut progress, &link_rx) => result,
        refusal = refused.wait_for(|s| matches!(s, LinkState::Refused { .. })) => {
            let reason = match refusal.as_deref() {
                Ok(LinkState::Refused { reason }) => reason.clone(),
                _ => "refused".to_string(),
            };
            Err(anyhow::anyhow!("the server refused the broadcast: {reason}"))
        }
    };
    progress.finish();
    result?;
    broadcast.finish();
    drain(&relay).await;
    link.abort();
    tracing::info!(
        groups = broadcast.stats.groups,
        objects = broadcast.stats.objects,
        "input ended; broadcast finished"
    );
    Ok(())
}

/// Publishes the whole input: stdin, or the file (once, or looped).
async fn read_input(
    args: &PublishArgs,
    broadcast: &mut CmafBroadcast,
    progress: &mut Progress,
    link: &watch::Receiver<LinkState>,
) -> anyhow::Result<()> {
    let mut ingest = CmafIngest::new();
    let Some(path) = &args.file else {
        return pump(
            tokio::io::stdin(),
            &mut ingest,
            broadcast,
            None,
            progress,
            link,
        )
        .await;
    };
    let mut pacer = Pacer::default();
    loop {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        pump(
            file,
            &mut ingest,
            broadcast,
            Some(&mut pacer),
            progress,
            link,
        )
        .await?;
        if !args.repeat {
            return Ok(());
        }
        ingest.begin_loop();
    }
}

/// Feeds one pass over `input` through ingest into the broadcast.
async fn pump(
    mut input: impl AsyncRead + Unpin,
    ingest: &mut CmafIngest,
    broadcast: &mut CmafBroadcast,
    mut pacer: Option<&mut Pacer>,
    progress: &mut Progress,
    link: &watch::Receiver<LinkState>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let n = tokio::select! {
            n = input.read(&mut buf) => n.context("cannot read the input")?,
            _ = tick.tick() => {
                progress.update(&broadcast.stats, &link.borrow());
                continue;
            }
        };
        if n == 0 {
            break;
        }
        total += n;
        let events = ingest
            .push(&buf[..n])
            .context("the input is not usable CMAF")?;
        publish(events, broadcast, pacer.as_deref_mut(), progress, link).await?;
    }
    if total == 0 {
        bail!("the input was empty: expected fragmented MP4 (ffmpeg -f mp4 -movflags cmaf+empty_moov+frag_keyframe+default_base_moof -)");
    }
    let events = ingest.finish().context("the input is not usable CMAF")?;
    publish(events, broadcast, pacer, progress, link).await
}

async fn publish(
    events: Vec<IngestEvent>,
    broadcast: &mut CmafBroadcast,
    mut pacer: Option<&mut Pacer>,
    progress: &mut Progress,
    link: &watch::Receiver<LinkState>,
) -> anyhow::Result<()> {
    for event in events {
        if let (IngestEvent::Object(object), Some(pacer)) = (&event, pacer.as_deref_mut()) {
            pacer.wait(object.media_time_secs()).await;
        }
        if let IngestEvent::Catalog(catalog) = &event {
            log_renditions(catalog);
        }
        broadcast.apply(event)?;
        progress.update(&broadcast.stats, &link.borrow());
    }
    Ok(())
}

/// Says which renditions a ladder is published as, each time the catalog says something
/// new about them (a measured bitrate, unaligned keyframes).
fn log_renditions(catalog: &Catalog) {
    let alternates: Vec<&CatalogTrack> = catalog
        .tracks
        .iter()
        .filter(|t| t.alt_group.is_some())
        .collect();
    if alternates.is_empty() {
        return;
    }
    let list: Vec<String> = alternates.iter().map(|t| describe(t)).collect();
    if alternates.iter().all(|t| t.groups_aligned()) {
        tracing::info!(
            "publishing {} renditions as alternates, groups aligned: {}",
            alternates.len(),
            list.join(", ")
        );
    } else {
        tracing::warn!(
            "publishing {} renditions as alternates, but their keyframes are not aligned \
             (the catalog says groupsAligned: false; players switch at keyframes): {}",
            alternates.len(),
            list.join(", ")
        );
    }
}

/// Waits until the server has finished its subscriptions (it received the end of every
/// track), or the drain time runs out.
async fn drain(relay: &Relay) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while relay.metrics().subscriptions.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
