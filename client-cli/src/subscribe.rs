//! `stagecast subscribe`: receives a broadcast and writes it as one playable fragmented
//! MP4 (init segment, then fragments) to stdout or a file.
//!
//! The catalog comes first (MSF): it names the media tracks and carries their init
//! segments. Of alternate renditions (tracks sharing an `altGroup`, a ladder) only one is
//! taken, `--rendition NAME|lowest|highest` (default highest); every other media track,
//! audio included, is taken as it is. At a relay that does not cache, a late subscriber may get nothing of the
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
use clap::Args;
use moq_transport::coding::TrackNamespace;
use moq_transport::message::RequestErrorCode;
use moq_transport::serve::{ServeError, Track, TrackReader};
use moq_transport::session::{Subscribe, Subscriber};
use stagecast_media::catalog::rendition::describe;
use stagecast_media::catalog::{choose_tracks, Catalog, RenditionChoice, CATALOG_TRACK};
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_media::moq_pub::{self, MoqPubCatalog};
use stagecast_proto::goaway::GoAway;
use stagecast_proto::path::namespace_from_path;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use url::Url;

use crate::connect::{connect_session, ConnectArgs};
use crate::continuity::Continuity;
use crate::track_reader::{first_object_joined, read_track, Received, ServerGoingAway, StaleGrace};

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
    /// Which rendition of a ladder to receive: a track name or label (video1, 480p), or
    /// lowest, or highest. One per alternate group; audio is always received.
    #[arg(long, default_value = "highest", value_name = "NAME|lowest|highest")]
    pub rendition: RenditionChoice,
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
        StaleGrace::of(&connection.transport),
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
    grace: StaleGrace,
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
            read_track(name.clone(), reader, tx.clone(), grace.clone()),
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
                        let grace = StaleGrace::of(&session.transport);
                        for (name, reader) in track_readers {
                            readers.spawn(numbered(session_number, read_track(name, reader, tx.clone(), grace.clone())));
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
    // The token goes only back to the host it was given for: a GOAWAY to another host is
    // followed without it (a public broadcast goes on; a private one is refused there).
    let token = if url.host() == current_url.host() {
        args.connect.token.as_deref()
    } else {
        if args.connect.token.is_some() {
            tracing::warn!(%url, "following GOAWAY to another host without the access token");
        }
        None
    };
    let trust = args.connect.trust(&url).await?;
    let connection = connect_session(&url, &trust, token).await?;
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
    tracing::info!(tracks = catalog.tracks.len(), "catalog received");
    // Media only (the catalog may also list event timelines, the origin's interaction),
    // and one rendition per alternate group.
    let tracks = choose_tracks(&catalog, &args.rendition)?;
    let with_init: Vec<&str> = tracks
        .iter()
        .map(String::as_str)
        .filter(|name| catalog.track(name).is_some_and(|t| t.init_data.is_some()))
        .collect();
    let writer = FragmentedMp4Writer::for_tracks(&catalog, &with_init)
        .context("cannot build an MP4 from the catalog")?;
    let alternates = catalog
        .tracks
        .iter()
        .filter(|t| t.alt_group.is_some())
        .count();
    if alternates > 0 {
        for name in &tracks {
            if let Some(track) = catalog.track(name).filter(|t| t.alt_group.is_some()) {
                tracing::info!(
                    "receiving rendition {}, one of {alternates} alternates (--rendition {})",
                    describe(track),
                    args.rendition
                );
            }
        }
    }
    Ok(Layout {
        writer,
        tracks,
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
    if args.rendition != RenditionChoice::default() {
        // Its catalog format names no alternates: every track is taken.
        tracing::warn!(
            "--rendition {} ignored: a moq-pub broadcast lists no alternate renditions",
            args.rendition
        );
    }
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
