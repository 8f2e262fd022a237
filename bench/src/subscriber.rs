//! One benchmark subscriber: its own QUIC connection (its own UDP socket, as a viewer
//! has), one SUBSCRIBE, and every object it receives handed to an [`ObjectSink`] with the
//! time it was read whole. What a benchmark keeps of the objects is the sink's business:
//! [`MediaLog`] records the stamp of each synthetic media object.
//!
//! Groups are read concurrently, as they arrive, so one group the relay is slow to finish
//! never holds back the next.

use stagecast_proto::sync::lock_or_recover;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{SubgroupReader, Track, TrackReaderMode};
use moq_transport::session::{Session, Subscribe, Subscriber};
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_proto::web_transport_quinn;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::payload;

/// Where a subscriber's objects go. Called from the subscriber's tasks, so it locks
/// what it shares.
pub trait ObjectSink: Send + Sync + 'static {
    /// An object read whole at `received_ns`; `in_order` is false when its group skipped
    /// an object id before it.
    fn object(
        &self,
        group_id: u64,
        object_id: u64,
        payload: &Bytes,
        received_ns: u64,
        in_order: bool,
    );
    /// A group that ended in a stream error rather than cleanly.
    fn group_cut(&self) {}
}

/// A connected subscriber, after the MoQ SETUP and before any SUBSCRIBE.
pub struct Connected {
    client: ClientEndpoint,
    transport: web_transport_quinn::Session,
    session: JoinHandle<()>,
    subscriber: Subscriber,
}

/// A connected, subscribed subscriber, before it reads anything.
pub struct Subscribed {
    connected: Connected,
    subscription: Subscribe,
    reader: moq_transport::serve::TrackReader,
}

/// Connects with a fresh endpoint (its own UDP socket) and completes the MoQ SETUP.
pub async fn connect_only(url: &Url, trust: &ClientTrust) -> anyhow::Result<Connected> {
    let client = ClientEndpoint::new()?;
    let (transport, kind) = client.connect(url, trust).await?;
    let (session, _publisher, subscriber) = Session::connect(transport.clone().into(), None, kind)
        .await
        .context("MoQ setup failed")?;
    let session = tokio::spawn(async move {
        let _ = session.run().await;
    });
    Ok(Connected {
        client,
        transport,
        session,
        subscriber,
    })
}

/// Connects and subscribes to `namespace`/`track`.
pub async fn connect(
    url: &Url,
    trust: &ClientTrust,
    namespace: &TrackNamespace,
    track: &str,
) -> anyhow::Result<Subscribed> {
    connect_only(url, trust)
        .await?
        .subscribe(namespace, track)
        .await
}

impl Connected {
    /// Sends SUBSCRIBE and waits for SUBSCRIBE_OK.
    pub async fn subscribe(
        mut self,
        namespace: &TrackNamespace,
        track: &str,
    ) -> anyhow::Result<Subscribed> {
        let (writer, reader) = Track::new(namespace.clone(), track.to_string()).produce();
        let subscription = match self.subscriber.subscribe_open(writer).await {
            Ok(subscription) => subscription,
            Err(err) => {
                self.close().await;
                bail!("SUBSCRIBE refused: {err}");
            }
        };
        Ok(Subscribed {
            connected: self,
            subscription,
            reader,
        })
    }

    /// Closes the connection, waiting a moment for the close to go out.
    pub async fn close(self) {
        self.transport.close(0, b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.wait_idle()).await;
        self.session.abort();
    }
}

impl Subscribed {
    /// Hands objects to `sink` until `stop` turns true or the track ends, then closes the
    /// session. Returns why the subscription ended before `stop`, if it did.
    pub async fn receive<S: ObjectSink>(
        self,
        sink: Arc<S>,
        mut stop: watch::Receiver<bool>,
    ) -> Option<String> {
        let ended = tokio::select! {
            ended = read_track(self.reader, sink) => ended.err().map(|e| format!("{e:#}")),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        drop(self.subscription);
        self.connected.close().await;
        ended
    }
}

async fn read_track<S: ObjectSink>(
    reader: moq_transport::serve::TrackReader,
    sink: Arc<S>,
) -> anyhow::Result<()> {
    let TrackReaderMode::Subgroups(mut subgroups) = reader.mode().await? else {
        bail!("the track is not sent on subgroup streams");
    };
    let mut groups = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = subgroups.next() => match next? {
                Some(group) => groups.push(read_group(group, sink.clone())),
                None => bail!("the track ended"),
            },
            Some(()) = groups.next(), if !groups.is_empty() => {}
        }
    }
}

async fn read_group<S: ObjectSink>(mut group: SubgroupReader, sink: Arc<S>) {
    let group_id = group.info.group_id;
    let mut expected = 0u64;
    loop {
        let mut object = match group.next().await {
            Ok(Some(object)) => object,
            Ok(None) => return,
            Err(_) => break,
        };
        let Ok(bytes) = object.read_all().await else {
            break;
        };
        let received = payload::now_ns();
        let object_id = object.object_id;
        sink.object(group_id, object_id, &bytes, received, object_id == expected);
        expected = object_id + 1;
    }
    sink.group_cut();
}

/// What one subscriber of the synthetic media track saw.
#[derive(Default, Debug)]
pub struct ReceiveLog {
    /// (send time, receive time) of every object read whole, in ns since the Unix epoch.
    pub objects: Vec<(u64, u64)>,
    /// Objects whose size was not the size sent (a partial object passed off as whole).
    pub wrong_size: u64,
    /// Groups that ended in an error (the relay reset the stream) rather than cleanly.
    pub groups_cut: u64,
    /// Groups that skipped an object id.
    pub groups_with_gaps: u64,
    /// Why the subscription ended before the benchmark stopped it, if it did.
    pub ended: Option<String>,
}

/// The sink of a fan-out subscriber: the stamp and arrival of every object.
pub struct MediaLog {
    object_bytes: usize,
    log: Mutex<ReceiveLog>,
}

impl MediaLog {
    pub fn new(object_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            object_bytes,
            log: Mutex::new(ReceiveLog::default()),
        })
    }

    /// The log so far, with why the subscription ended.
    pub fn take(&self, ended: Option<String>) -> ReceiveLog {
        let mut log = std::mem::take(&mut *lock_or_recover(&self.log));
        log.ended = ended;
        log
    }
}

impl ObjectSink for MediaLog {
    fn object(&self, _group: u64, _object: u64, payload: &Bytes, received_ns: u64, in_order: bool) {
        let mut log = lock_or_recover(&self.log);
        if !in_order {
            log.groups_with_gaps += 1;
        }
        if payload.len() != self.object_bytes {
            log.wrong_size += 1;
        }
        if let Some(sent) = payload::sent_ns(payload) {
            log.objects.push((sent, received_ns));
        }
    }

    fn group_cut(&self) {
        lock_or_recover(&self.log).groups_cut += 1;
    }
}

/// The sink of a join measurement: when the first object that starts a group arrived.
#[derive(Default)]
pub struct FirstGroupStart {
    /// (group id, arrival) of the first object 0 seen, and how many objects came before it.
    first: Mutex<(Option<(u64, Instant)>, u64)>,
    arrived: tokio::sync::Notify,
}

impl FirstGroupStart {
    /// Waits until a group's first object has arrived; its group id and arrival time.
    pub async fn wait(&self) -> (u64, Instant) {
        loop {
            let notified = self.arrived.notified();
            if let (Some(first), _) = *lock_or_recover(&self.first) {
                return first;
            }
            notified.await;
        }
    }

    /// Objects received before the first group start (a join mid-group).
    pub fn objects_before(&self) -> u64 {
        lock_or_recover(&self.first).1
    }
}

impl ObjectSink for FirstGroupStart {
    fn object(
        &self,
        group_id: u64,
        object_id: u64,
        _payload: &Bytes,
        _received: u64,
        _in_order: bool,
    ) {
        let now = Instant::now();
        let mut first = lock_or_recover(&self.first);
        if first.0.is_some() {
            return;
        }
        if object_id == 0 {
            first.0 = Some((group_id, now));
            self.arrived.notify_waiters();
        } else {
            first.1 += 1;
        }
    }
}
