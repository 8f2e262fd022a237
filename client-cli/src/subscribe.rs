//! `stagecast subscribe`: receives a broadcast and writes it as one playable fragmented
//! MP4 (init segment, then fragments) to stdout or a file.
//!
//! The catalog comes first (MSF): it names the media tracks and carries their init
//! segments. Each media track is then read group by group, starting at the newest group
//! the relay holds (for video a keyframe), and its fragments are written as they arrive.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Args;
use moq_transport::coding::TrackNamespace;
use moq_transport::message::RequestErrorCode;
use moq_transport::serve::{ServeError, Track, TrackReader, TrackReaderMode};
use moq_transport::session::{Subscribe, Subscriber};
use stagecast_media::catalog::{Catalog, CATALOG_TRACK};
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_proto::path::namespace_from_path;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use url::Url;

use crate::connect::{connect_session, ConnectArgs};

/// Fragments waiting to be written; the readers wait when the output is slower.
const OUTPUT_QUEUE: usize = 64;
/// How long to wait for the catalog once subscribed.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct SubscribeArgs {
    /// Server or relay URL: moqt://HOST:PORT (raw QUIC) or https://HOST:PORT (WebTransport).
    pub url: Url,
    /// Broadcast path, for example live/alice.
    pub broadcast: String,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Stop after this many seconds of receiving media.
    #[arg(long)]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    let namespace = namespace_from_path(&args.broadcast)?;
    let trust = args.connect.trust(&args.url).await?;
    let connection = connect_session(&args.url, &trust, args.connect.token.as_deref()).await?;
    let session_task = tokio::spawn(connection.session.run());

    let output: Box<dyn AsyncWrite + Unpin + Send> = match &args.output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let result = receive(&args, namespace, connection.subscriber, output)
        .await
        .map_err(|err| match connection.transport.close_reason() {
            // The server closed the whole session (a refused or expired token): that is the
            // cause worth showing.
            Some(reason) => anyhow!("the server closed the session: {reason}").context(err),
            None => err,
        });
    if let Ok(Ending::Abnormal) = result {
        // Tracks that broke off together usually mean the server closed the session (an
        // expired token, a restart): wait a moment for its reason, which says more.
        if let Some((code, reason)) = stagecast_proto::close::connection_close(
            &connection.transport,
            Duration::from_millis(500),
        )
        .await
        {
            tracing::warn!(code, "the server closed the session: {reason}");
        }
    }
    let result = result.map(|_| ());
    // Close with a reason so the server ends its side at once rather than on idle timeout.
    connection.transport.close(0, b"done");
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.client.wait_idle()).await;
    session_task.abort();
    result
}

async fn receive(
    args: &SubscribeArgs,
    namespace: TrackNamespace,
    subscriber: Subscriber,
    mut output: Box<dyn AsyncWrite + Unpin + Send>,
) -> anyhow::Result<Ending> {
    let broadcast = &args.broadcast;
    let (catalog_sub, catalog_reader) = subscribe(&subscriber, &namespace, CATALOG_TRACK)
        .await
        .map_err(|err| refusal(err, broadcast, &args.url))?;
    let catalog_json = tokio::time::timeout(CATALOG_TIMEOUT, first_object(catalog_reader))
        .await
        .map_err(|_| anyhow!("{broadcast} sent no catalog within {CATALOG_TIMEOUT:?}"))??;
    let catalog =
        Catalog::from_json(&catalog_json).context("the broadcast's catalog is not valid MSF")?;
    let mut writer =
        FragmentedMp4Writer::new(&catalog).context("cannot build an MP4 from the catalog")?;
    tracing::info!(tracks = catalog.tracks.len(), "catalog received");

    let (tx, mut rx) = mpsc::channel::<(String, Bytes)>(OUTPUT_QUEUE);
    let mut subscriptions: Vec<Subscribe> = vec![catalog_sub];
    let mut readers = tokio::task::JoinSet::new();
    // Media only: the catalog may also list event timelines (the origin's interaction).
    for track in catalog.tracks.iter().filter(|t| t.is_cmaf()) {
        let (sub, reader) = subscribe(&subscriber, &namespace, &track.name)
            .await
            .map_err(|err| refusal(err, broadcast, &args.url))?;
        subscriptions.push(sub);
        readers.spawn(read_track(track.name.clone(), reader, tx.clone()));
    }
    drop(tx);

    write_all(&mut output, &writer.init_segment()).await?;
    let deadline = args
        .duration
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs_f64(secs));
    let mut fragments = 0u64;
    loop {
        let received = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(received) => received,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some((track, payload)) = received else {
            break;
        };
        let bytes = writer
            .fragment(&track, payload)
            .with_context(|| format!("bad fragment on track {track}"))?;
        write_all(&mut output, &bytes).await?;
        fragments += 1;
    }
    output.flush().await.ok();
    // With --duration the readers are still going; otherwise they have all ended, and
    // how they ended (publisher finished, or gone) is worth a message.
    readers.abort_all();
    let mut ending = Ending::Normal;
    while let Some(done) = readers.join_next().await {
        if let Ok(Err(err)) = done {
            tracing::warn!("broadcast ended abnormally: {err:#}");
            ending = Ending::Abnormal;
        }
    }

    drop(subscriptions);
    if fragments == 0 && deadline.is_none() {
        bail!("{broadcast} ended before any media arrived");
    }
    tracing::info!(fragments, "done");
    Ok(ending)
}

/// How the media tracks ended.
enum Ending {
    /// The publisher finished, or `--duration` passed.
    Normal,
    /// A track broke off: its source went away or the session closed.
    Abnormal,
}

async fn write_all(output: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> anyhow::Result<()> {
    match output.write_all(bytes).await {
        // A reader that went away (ffplay closed) ends the command quietly.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write the output"),
    }?;
    output.flush().await.context("cannot write the output")
}

async fn subscribe(
    subscriber: &Subscriber,
    namespace: &TrackNamespace,
    name: &str,
) -> Result<(Subscribe, TrackReader), ServeError> {
    let (writer, reader) = Track::new(namespace.clone(), name.to_string()).produce();
    let mut subscriber = subscriber.clone();
    let subscription = subscriber.subscribe_open(writer).await?;
    Ok((subscription, reader))
}

/// Turns a refused SUBSCRIBE into a message a person can act on.
fn refusal(err: ServeError, broadcast: &str, url: &Url) -> anyhow::Error {
    match err {
        ServeError::Closed(code) if code == RequestErrorCode::DoesNotExist as u64 => {
            anyhow!("not found: nobody publishes {broadcast} at {url}")
        }
        ServeError::NotFound | ServeError::NotFoundWithId(..) => {
            anyhow!("not found: nobody publishes {broadcast} at {url}")
        }
        ServeError::Closed(code) if code == RequestErrorCode::Unauthorized as u64 => {
            anyhow!("not authorized to subscribe to {broadcast}")
        }
        other => anyhow!("subscribing to {broadcast} failed: {other}"),
    }
}

/// Largest media object accepted, as on the relay.
const MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;

/// Reads a whole object, refusing one larger than `limit` before holding it all.
async fn read_object(
    object: &mut moq_transport::serve::SubgroupObjectReader,
    limit: usize,
) -> anyhow::Result<Bytes> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    while let Some(chunk) = object.read().await? {
        size += chunk.len();
        if size > limit {
            bail!("object {} is larger than {limit} bytes", object.object_id);
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Explains how a track's source ended, from the PUBLISH_DONE status code (draft-18 §10.1.2
/// registry) the relay passed on.
fn track_end(err: ServeError) -> anyhow::Error {
    use moq_transport::message::PublishDoneCode;
    match err {
        ServeError::Closed(code) if code == PublishDoneCode::TrackEnded as u64 => {
            anyhow!("the publisher ended the track")
        }
        ServeError::Closed(code) if code == PublishDoneCode::GoingAway as u64 => {
            anyhow!("the server is going away")
        }
        ServeError::Closed(code) if code == PublishDoneCode::InternalError as u64 => {
            anyhow!("the publisher went away (its session ended without finishing the track)")
        }
        other => anyhow!("the track ended: {other}"),
    }
}

async fn subgroups(reader: TrackReader) -> anyhow::Result<moq_transport::serve::SubgroupsReader> {
    match reader.mode().await? {
        TrackReaderMode::Subgroups(subgroups) => Ok(subgroups),
        _ => bail!("track {} is not sent on subgroup streams", reader.name),
    }
}

async fn first_object(reader: TrackReader) -> anyhow::Result<Bytes> {
    let mut subgroups = subgroups(reader).await?;
    let mut group = subgroups
        .next()
        .await?
        .ok_or_else(|| anyhow!("the catalog track ended empty"))?;
    let mut object = group
        .next()
        .await?
        .ok_or_else(|| anyhow!("the catalog group was empty"))?;
    read_object(&mut object, stagecast_media::catalog::MAX_CATALOG_SIZE).await
}

/// Reads a media track group by group and sends each object's payload on. A group joined
/// after its start (not from object 0) is skipped, so output always starts at a group
/// start; groups older than one already read are skipped too.
async fn read_track(
    name: String,
    reader: TrackReader,
    tx: mpsc::Sender<(String, Bytes)>,
) -> anyhow::Result<()> {
    let mut subgroups = subgroups(reader).await?;
    let mut newest: Option<u64> = None;
    while let Some(mut group) = subgroups.next().await.map_err(track_end)? {
        if newest.is_some_and(|n| group.group_id <= n) {
            continue;
        }
        newest = Some(group.group_id);
        let mut expected = 0;
        loop {
            // A group the relay had to cut short (its stream reset) ends here; the
            // track goes on with the next group.
            let Ok(Some(mut object)) = group.next().await else {
                break;
            };
            if object.object_id != expected {
                // A gap: the rest of this group cannot be decoded in order.
                break;
            }
            expected += 1;
            let Ok(payload) = read_object(&mut object, MAX_OBJECT_BYTES).await else {
                break;
            };
            if tx.send((name.clone(), payload)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
