//! `stagecast subscribe`: receives a broadcast and writes it as one playable fragmented
//! MP4 (init segment, then fragments) to stdout or a file.
//!
//! The catalog comes first (MSF): it names the media tracks and carries their init
//! segments. At a relay that does not cache, a late subscriber may get nothing of the
//! catalog's group on its subscription; it then takes object 0 by a Joining FETCH. Each
//! media track is then read group by group, starting at the newest group the relay holds
//! (for video a keyframe), and its fragments are written as they arrive.
//!
//! A broadcast without an MSF `catalog` track may come from `moq-pub` (the moq-rs
//! publisher): its catalog is on `.catalog` and its init segment on a track of its own
//! (see [`stagecast_media::moq_pub`]); it is played the same way.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Args;
use moq_transport::coding::TrackNamespace;
use moq_transport::message::RequestErrorCode;
use moq_transport::serve::{
    ServeError, SubgroupReader, SubgroupsReader, Track, TrackReader, TrackReaderMode,
};
use moq_transport::session::{Subscribe, Subscriber};
use stagecast_media::catalog::{Catalog, CATALOG_TRACK};
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_media::moq_pub::{self, MoqPubCatalog};
use stagecast_proto::goaway::GoAway;
use stagecast_proto::path::namespace_from_path;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use url::Url;

use crate::connect::{connect_session, ConnectArgs};
use crate::continuity::Continuity;

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
    let goaway = connection.goaway.clone();
    let session_task = tokio::spawn(connection.session.run());
    let mut moved = Vec::new();

    let output: Box<dyn AsyncWrite + Unpin + Send> = match &args.output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let result = receive(
        &args,
        namespace,
        connection.subscriber,
        goaway,
        &mut moved,
        output,
    )
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
    for session in &moved {
        session.transport.close(0, b"done");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.client.wait_idle()).await;
    session_task.abort();
    result
}

/// One object of a media track, as a reader passes it to the output.
struct Received {
    track: String,
    group: u64,
    object: u64,
    payload: Bytes,
}

/// A session this command moved to after a GOAWAY, kept until the command ends.
struct MovedSession {
    transport: stagecast_proto::web_transport_quinn::Session,
    _client: stagecast_proto::endpoint::ClientEndpoint,
    _subscriptions: Vec<Subscribe>,
    _task: tokio::task::AbortHandle,
}

async fn receive(
    args: &SubscribeArgs,
    namespace: TrackNamespace,
    subscriber: Subscriber,
    mut goaway: watch::Receiver<Option<GoAway>>,
    moved: &mut Vec<MovedSession>,
    mut output: Box<dyn AsyncWrite + Unpin + Send>,
) -> anyhow::Result<Ending> {
    let broadcast = &args.broadcast;
    let Layout {
        mut writer,
        tracks,
        mut subscriptions,
    } = open_broadcast(args, &namespace, &subscriber).await?;

    let (tx, mut rx) = mpsc::channel::<Received>(OUTPUT_QUEUE);
    // Readers are numbered by session: when the command moves, the old session's readers
    // ending (GOING_AWAY) is no reason to report an abnormal end.
    let mut session_number = 0u32;
    let mut readers = tokio::task::JoinSet::new();
    for name in &tracks {
        let (sub, reader) = subscribe(&subscriber, &namespace, name)
            .await
            .map_err(|err| refusal(err, broadcast, &args.url))?;
        subscriptions.push(sub);
        readers.spawn(numbered(
            session_number,
            read_track(name.clone(), reader, tx.clone()),
        ));
    }
    // Kept for the readers of a session moved to; dropped once no reader is left, so the
    // queue ends.
    let mut spare_tx = Some(tx);
    let mut current_url = args.url.clone();

    write_all(&mut output, &writer.init_segment()).await?;
    let deadline = args
        .duration
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs_f64(secs));
    let mut continuity = Continuity::default();
    let mut fragments = 0u64;
    let mut ending = Ending::Normal;
    // Set when a track of the current session ended with GOING_AWAY: until then its
    // GOAWAY may still come.
    let mut awaiting_goaway: Option<tokio::time::Instant> = None;
    loop {
        let goaway_overdue = async {
            match awaiting_goaway {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        let until_deadline = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = rx.recv() => {
                let Some(received) = received else { break };
                if !continuity.accept(&received.track, received.group, received.object) {
                    continue;
                }
                let bytes = writer
                    .fragment(&received.track, received.payload)
                    .with_context(|| format!("bad fragment on track {}", received.track))?;
                write_all(&mut output, &bytes).await?;
                fragments += 1;
            }
            Some(done) = readers.join_next(), if !readers.is_empty() => {
                if let Ok((number, Err(err))) = done {
                    if number != session_number {
                        // A session already moved away from.
                    } else if err.is::<ServerGoingAway>() && spare_tx.is_some() {
                        awaiting_goaway.get_or_insert_with(|| tokio::time::Instant::now() + GOAWAY_WAIT);
                    } else {
                        tracing::warn!("broadcast ended abnormally: {err:#}");
                        ending = Ending::Abnormal;
                    }
                }
                if readers.is_empty() && awaiting_goaway.is_none() {
                    spare_tx = None;
                }
            }
            () = goaway_overdue, if readers.is_empty() => {
                tracing::warn!("broadcast ended abnormally: the server is going away and said nowhere to go");
                ending = Ending::Abnormal;
                awaiting_goaway = None;
                spare_tx = None;
            }
            Ok(()) = goaway.changed(), if spare_tx.is_some() => {
                let Some(notice) = goaway.borrow_and_update().clone() else { continue };
                let Some(tx) = spare_tx.clone() else { continue };
                match move_session(args, &notice, &current_url, &namespace, &tracks).await {
                    Ok((session, url, next_goaway, track_readers)) => {
                        session_number += 1;
                        for (name, reader) in track_readers {
                            readers.spawn(numbered(session_number, read_track(name, reader, tx.clone())));
                        }
                        tracing::info!("the server is going away: moved to {url}");
                        awaiting_goaway = None;
                        moved.push(session);
                        current_url = url;
                        goaway = next_goaway;
                    }
                    Err(err) => {
                        tracing::warn!("the server is going away, and moving failed: {err:#}");
                        spare_tx = None;
                    }
                }
            }
            () = until_deadline => break,
        }
    }
    output.flush().await.ok();
    // With --duration the readers may still be going.
    readers.abort_all();
    while let Some(done) = readers.join_next().await {
        if let Ok((number, Err(err))) = done {
            if number == session_number {
                tracing::warn!("broadcast ended abnormally: {err:#}");
                ending = Ending::Abnormal;
            }
        }
    }

    drop(subscriptions);
    if fragments == 0 && deadline.is_none() {
        bail!("{broadcast} ended before any media arrived");
    }
    tracing::info!(fragments, "done");
    Ok(ending)
}

/// Tags a reader's result with the number of the session it reads from.
async fn numbered<T>(number: u32, reader: impl std::future::Future<Output = T>) -> (u32, T) {
    (number, reader.await)
}

/// Opens a session where a GOAWAY says (its URI, or else the current one) and subscribes
/// to `tracks` there. The catalog is not read again: the broadcast is the same.
async fn move_session(
    args: &SubscribeArgs,
    notice: &GoAway,
    current_url: &Url,
    namespace: &TrackNamespace,
    tracks: &[String],
) -> anyhow::Result<(
    MovedSession,
    Url,
    watch::Receiver<Option<GoAway>>,
    Vec<(String, TrackReader)>,
)> {
    let url = match notice.new_session_uri.as_str() {
        "" => current_url.clone(),
        uri => Url::parse(uri).with_context(|| format!("GOAWAY named a bad URI {uri:?}"))?,
    };
    let trust = args.connect.trust(&url).await?;
    let connection = connect_session(&url, &trust, args.connect.token.as_deref()).await?;
    let task = tokio::spawn(connection.session.run()).abort_handle();
    let mut subscriptions = Vec::new();
    let mut readers = Vec::new();
    for name in tracks {
        let (sub, reader) = subscribe(&connection.subscriber, namespace, name)
            .await
            .map_err(|err| refusal(err, &args.broadcast, &url))?;
        subscriptions.push(sub);
        readers.push((name.clone(), reader));
    }
    let session = MovedSession {
        transport: connection.transport,
        _client: connection.client,
        _subscriptions: subscriptions,
        _task: task,
    };
    Ok((session, url, connection.goaway, readers))
}

/// What a broadcast's catalog says: the media tracks to read and how to mux them.
struct Layout {
    writer: FragmentedMp4Writer,
    tracks: Vec<String>,
    /// The catalog's (and init track's) subscriptions, held until the end.
    subscriptions: Vec<Subscribe>,
}

/// Reads the broadcast's catalog: MSF's `catalog` track, or else `moq-pub`'s `.catalog`.
async fn open_broadcast(
    args: &SubscribeArgs,
    namespace: &TrackNamespace,
    subscriber: &Subscriber,
) -> anyhow::Result<Layout> {
    let broadcast = &args.broadcast;
    let (catalog_sub, catalog_reader) = match subscribe(subscriber, namespace, CATALOG_TRACK).await
    {
        Ok(subscribed) => subscribed,
        Err(err) if is_not_found(&err) => {
            // No MSF catalog: a moq-pub broadcast has `.catalog` instead. If it has neither,
            // the first refusal says what is wrong.
            return match subscribe(subscriber, namespace, moq_pub::CATALOG_TRACK).await {
                Ok((sub, reader)) => open_moq_pub(args, namespace, subscriber, sub, reader).await,
                Err(_) => Err(refusal(err, broadcast, &args.url)),
            };
        }
        Err(err) => return Err(refusal(err, broadcast, &args.url)),
    };
    let catalog_json = tokio::time::timeout(
        CATALOG_TIMEOUT,
        first_object_joined(subscriber, &catalog_sub, catalog_reader),
    )
    .await
    .map_err(|_| anyhow!("{broadcast} sent no catalog within {CATALOG_TIMEOUT:?}"))??;
    let catalog =
        Catalog::from_json(&catalog_json).context("the broadcast's catalog is not valid MSF")?;
    let writer =
        FragmentedMp4Writer::new(&catalog).context("cannot build an MP4 from the catalog")?;
    tracing::info!(tracks = catalog.tracks.len(), "catalog received");
    Ok(Layout {
        writer,
        // Media only: the catalog may also list event timelines (the origin's interaction).
        tracks: catalog
            .tracks
            .iter()
            .filter(|t| t.is_cmaf())
            .map(|t| t.name.clone())
            .collect(),
        subscriptions: vec![catalog_sub],
    })
}

/// A `moq-pub` broadcast: its `.catalog` (catalogformat-01) names the media tracks and the
/// init track, whose one object is the `ftyp` + `moov` of every track.
async fn open_moq_pub(
    args: &SubscribeArgs,
    namespace: &TrackNamespace,
    subscriber: &Subscriber,
    catalog_sub: Subscribe,
    catalog_reader: TrackReader,
) -> anyhow::Result<Layout> {
    let broadcast = &args.broadcast;
    let catalog_json = tokio::time::timeout(
        CATALOG_TIMEOUT,
        first_object_joined(subscriber, &catalog_sub, catalog_reader),
    )
    .await
    .map_err(|_| anyhow!("{broadcast} sent no catalog within {CATALOG_TIMEOUT:?}"))??;
    let catalog = MoqPubCatalog::from_json(&catalog_json)
        .context("the broadcast has no MSF catalog, and its .catalog is not moq-pub's")?;
    let init_track = catalog.init_track()?.to_string();
    let (init_sub, init_reader) = subscribe(subscriber, namespace, &init_track)
        .await
        .map_err(|err| refusal(err, broadcast, &args.url))?;
    let init = tokio::time::timeout(
        CATALOG_TIMEOUT,
        first_object_joined(subscriber, &init_sub, init_reader),
    )
    .await
    .map_err(|_| anyhow!("{broadcast} sent no init segment within {CATALOG_TIMEOUT:?}"))??;
    let inits = moq_pub::split_init(&init, &catalog.tracks)
        .with_context(|| format!("bad init segment on track {init_track}"))?;
    let writer = FragmentedMp4Writer::from_init_segments(inits)
        .context("cannot build an MP4 from the init segment")?;
    tracing::info!(
        tracks = catalog.tracks.len(),
        "moq-pub catalog (.catalog) and init segment ({init_track}) received"
    );
    Ok(Layout {
        writer,
        tracks: catalog.tracks.iter().map(|t| t.name.clone()).collect(),
        subscriptions: vec![catalog_sub, init_sub],
    })
}

/// Whether a refused SUBSCRIBE means the track does not exist.
fn is_not_found(err: &ServeError) -> bool {
    match err {
        ServeError::Closed(code) => *code == RequestErrorCode::DoesNotExist as u64,
        ServeError::NotFound | ServeError::NotFoundWithId(..) => true,
        _ => false,
    }
}

/// A track ended with PUBLISH_DONE `GOING_AWAY`: its GOAWAY, saying where to go, may
/// arrive just after it on the control stream.
#[derive(Debug, thiserror::Error)]
#[error("the server is going away")]
struct ServerGoingAway;

/// How long to wait for a GOAWAY once every track ended with `GOING_AWAY`.
const GOAWAY_WAIT: Duration = Duration::from_secs(5);

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
        err if is_not_found(&err) => anyhow!("not found: nobody publishes {broadcast} at {url}"),
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
            anyhow::Error::new(ServerGoingAway)
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

/// Object 0 of the first group that the subscription delivers from its start. A relay
/// that does not cache forwards a group from wherever its subscriber joined it; such a
/// group (and any later object of a catalog, a delta update) is passed over.
async fn first_object(reader: TrackReader) -> anyhow::Result<Bytes> {
    let mut subgroups = subgroups(reader).await?;
    loop {
        let mut group = subgroups
            .next()
            .await?
            .ok_or_else(|| anyhow!("the track ended before an object 0"))?;
        let Some(mut object) = group.next().await? else {
            continue;
        };
        if object.object_id == 0 {
            return read_object(&mut object, stagecast_media::catalog::MAX_CATALOG_SIZE).await;
        }
    }
}

/// Object 0 of the newest group of a track that starts each group with a whole document
/// (a catalog, an init segment): from the subscription, or from a Joining FETCH of that
/// group (draft-18 §10.12.2) sent with it, whichever comes first.
///
/// A relay need not cache (draft-18 §9.1) and forwards *new* objects (§9.4): moq-relay-ietf
/// sends a late subscriber nothing of a group already complete, so a catalog published
/// once reaches it only by the FETCH, which the relay passes to the publisher. A caching
/// relay (Stagecast's) sends the group from object 0 at once, and answers the FETCH from
/// its cache. MSF ("Catalog") asks catalog subscribers to send the Joining FETCH with the
/// SUBSCRIBE; see docs/interop.md. When SUBSCRIBE_OK names no largest location
/// (LARGEST_OBJECT, §10.2.11) nothing is published yet, and the object can only come live.
async fn first_object_joined(
    subscriber: &Subscriber,
    subscription: &Subscribe,
    reader: TrackReader,
) -> anyhow::Result<Bytes> {
    let live = first_object(reader);
    tokio::pin!(live);
    let published = subscription
        .subscribe_ok()
        .and_then(|ok| ok.params.largest_object().ok().flatten())
        .is_some();
    if !published {
        return live.await;
    }
    let track = subscription.info.track_name.to_string();
    let fetch = fetch_first_object(subscriber, subscription.info.id);
    tokio::pin!(fetch);
    tokio::select! {
        object = &mut live => match object {
            Ok(object) => Ok(object),
            Err(err) => {
                tracing::debug!(track, "subscription ended ({err:#}); waiting for the FETCH");
                fetch.await
            }
        },
        fetched = &mut fetch => match fetched {
            Ok(object) => {
                tracing::info!(track, "nothing on the subscription: object 0 taken by a Joining FETCH");
                Ok(object)
            }
            Err(err) => {
                tracing::info!(track, "Joining FETCH failed ({err:#}); waiting for the subscription");
                live.await
            }
        },
    }
}

/// Object 0 of the group the subscription `subscription_id` joined, by a Relative Joining
/// FETCH with Joining Start 0 (§10.12.2).
async fn fetch_first_object(
    subscriber: &Subscriber,
    subscription_id: u64,
) -> anyhow::Result<Bytes> {
    use moq_transport::coding::KeyValuePairs;
    use moq_transport::data::FetchRecord;
    use moq_transport::message::FetchType;

    let mut fetch = subscriber
        .clone()
        .joining_fetch(
            FetchType::RelativeJoining,
            subscription_id,
            0,
            KeyValuePairs::default(),
        )
        .await?;
    fetch.ok().await?;
    while let Some(record) = fetch.next().await? {
        let FetchRecord::Object(object) = record else {
            continue;
        };
        let mut payload = Vec::new();
        while let Some(chunk) = fetch.read_payload_chunk(64 * 1024).await? {
            payload.extend_from_slice(&chunk);
            if payload.len() > stagecast_media::catalog::MAX_CATALOG_SIZE {
                bail!(
                    "the fetched object is larger than {} bytes",
                    stagecast_media::catalog::MAX_CATALOG_SIZE
                );
            }
        }
        if object.object_id == 0 {
            return Ok(Bytes::from(payload));
        }
    }
    bail!("the Joining FETCH ended without object 0")
}

/// How long a group may stay silent once a newer group of its track has begun before the
/// reader gives up on the rest of it. A sender has to FIN a finished subgroup stream
/// (draft-18 "Closing Subgroup Streams"), but a relay that holds the FIN back would
/// otherwise stall the track behind one group; objects still in flight arrive well within
/// this.
const STALE_GROUP_GRACE: Duration = Duration::from_millis(500);

/// Reads a media track group by group and sends each object's payload on. A group joined
/// after its start (not from object 0) is skipped, so output always starts at a group
/// start; groups older than one already read are skipped too. Once a newer group has begun,
/// the current one ends after [`STALE_GROUP_GRACE`] without an object.
///
/// Objects with a status (draft-18 §11.2.1.1) carry no media: End of Group ends the
/// group, End of Track the track (moq-relay sends one where a track ends); a zero-length
/// Normal object is passed over. A PUBLISH_DONE with `TRACK_ENDED` is a normal end too.
async fn read_track(
    name: String,
    reader: TrackReader,
    tx: mpsc::Sender<Received>,
) -> anyhow::Result<()> {
    use moq_transport::data::ObjectStatus;

    let mut subgroups = subgroups(reader).await?;
    let mut newest: Option<u64> = None;
    // A newer group that arrived while the current one was still being read.
    let mut waiting: Option<SubgroupReader> = None;
    // How the track ended, once it has, while its last group is still being read.
    let mut ended: Option<anyhow::Result<()>> = None;
    loop {
        let mut group = match (waiting.take(), ended.take()) {
            (Some(group), end) => {
                ended = end;
                group
            }
            (None, Some(end)) => return end,
            (None, None) => match next_group(&mut subgroups).await {
                Ok(Some(group)) => group,
                Ok(None) => return Ok(()),
                Err(err) => return Err(err),
            },
        };
        if newest.is_some_and(|n| group.group_id <= n) {
            continue;
        }
        newest = Some(group.group_id);
        let mut expected = 0;
        loop {
            // A group the relay had to cut short (its stream reset) ends here; the track
            // goes on with the next group.
            let current = group.group_id;
            let next = group.next();
            let next = watching_for_newer(next, current, &mut subgroups, &mut waiting, &mut ended);
            let Some(Ok(Some(mut object))) = next.await else {
                break;
            };
            match object.status {
                ObjectStatus::EndOfTrack => return Ok(()),
                ObjectStatus::EndOfGroup => break,
                ObjectStatus::NormalObject => {}
            }
            if object.object_id != expected {
                // A gap: the rest of this group cannot be decoded in order.
                break;
            }
            expected += 1;
            let read = read_object(&mut object, MAX_OBJECT_BYTES);
            let read = watching_for_newer(read, current, &mut subgroups, &mut waiting, &mut ended);
            let Some(Ok(payload)) = read.await else {
                break;
            };
            if payload.is_empty() {
                continue;
            }
            let received = Received {
                track: name.clone(),
                group: group.group_id,
                object: object.object_id,
                payload,
            };
            if tx.send(received).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The track's next group; `None` where the track has ended normally (a PUBLISH_DONE with
/// `TRACK_ENDED`, or the end of its subgroups).
async fn next_group(subgroups: &mut SubgroupsReader) -> anyhow::Result<Option<SubgroupReader>> {
    use moq_transport::message::PublishDoneCode;
    match subgroups.next().await {
        Ok(group) => Ok(group),
        Err(ServeError::Closed(code)) if code == PublishDoneCode::TrackEnded as u64 => Ok(None),
        Err(err) => Err(track_end(err)),
    }
}

/// Awaits `work` on group `current` while taking note of a newer group (older ones are
/// dropped) or the track's end; once a newer group waits, `work` has
/// [`STALE_GROUP_GRACE`] left (`None` after).
async fn watching_for_newer<T>(
    work: impl std::future::Future<Output = T>,
    current: u64,
    subgroups: &mut SubgroupsReader,
    waiting: &mut Option<SubgroupReader>,
    ended: &mut Option<anyhow::Result<()>>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        if waiting.is_some() {
            return tokio::time::timeout(STALE_GROUP_GRACE, &mut work)
                .await
                .ok();
        }
        if ended.is_some() {
            return Some(work.await);
        }
        // Both futures are cancel-safe: each takes its item before returning it.
        tokio::select! {
            out = &mut work => return Some(out),
            arrived = next_group(subgroups) => match arrived {
                Ok(Some(newer)) if newer.group_id > current => *waiting = Some(newer),
                Ok(Some(_older)) => {}
                Ok(None) => *ended = Some(Ok(())),
                Err(err) => *ended = Some(Err(err)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moq_transport::serve::Subgroup;

    fn group(id: u64) -> Subgroup {
        Subgroup {
            group_id: id,
            subgroup_id: 0,
            priority: 0,
        }
    }

    async fn received(rx: &mut mpsc::Receiver<Received>) -> (u64, Bytes) {
        // A bound so a regression fails instead of hanging; the assertion is on what arrives.
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        let got = next.expect("an object within 10 s").expect("an object");
        (got.group, got.payload)
    }

    /// A relay that never FINs a finished group must not stall the track behind it, and an
    /// object of the older group still in flight when a newer group starts is kept.
    #[tokio::test]
    async fn a_group_without_its_fin_yields_to_the_next_one() {
        let namespace = TrackNamespace::from_utf8_path("live/alice");
        let (writer, reader) = Track::new(namespace, "video").produce();
        let mut groups = writer.subgroups().expect("subgroups");
        let (tx, mut rx) = mpsc::channel(8);
        let reading = tokio::spawn(read_track("video".into(), reader, tx));

        let mut unfinished = groups.create(group(0)).expect("group 0");
        unfinished.write(Bytes::from_static(b"a")).expect("write");
        assert_eq!(received(&mut rx).await, (0, Bytes::from_static(b"a")));

        let mut next = groups.create(group(1)).expect("group 1");
        next.write(Bytes::from_static(b"b")).expect("write");
        assert_eq!(received(&mut rx).await, (1, Bytes::from_static(b"b")));

        let mut newer = groups.create(group(2)).expect("group 2");
        newer.write(Bytes::from_static(b"c")).expect("write");
        next.write(Bytes::from_static(b"b2")).expect("write");
        next.finish().expect("finish");
        assert_eq!(received(&mut rx).await, (1, Bytes::from_static(b"b2")));
        assert_eq!(received(&mut rx).await, (2, Bytes::from_static(b"c")));

        newer.finish().expect("finish");
        drop(unfinished);
        drop(groups);
        reading.abort();
    }
}
