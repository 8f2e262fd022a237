//! One benchmark subscriber: its own QUIC connection (its own UDP socket, as a viewer
//! has), one SUBSCRIBE, and a record of every object it receives: when it was sent (the
//! stamp) and when it was read whole.
//!
//! Groups are read concurrently, as they arrive, so one group the relay is slow to finish
//! never holds back the next.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{FuturesUnordered, StreamExt};
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{SubgroupReader, Track, TrackReaderMode};
use moq_transport::session::{Session, Subscribe};
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_proto::web_transport_quinn;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::payload;

/// What one subscriber saw.
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

/// A connected, subscribed subscriber, before it reads anything.
pub struct Subscribed {
    client: ClientEndpoint,
    transport: web_transport_quinn::Session,
    session: JoinHandle<()>,
    subscription: Subscribe,
    reader: moq_transport::serve::TrackReader,
}

/// Connects (with a fresh endpoint) and subscribes to `namespace`/`track`.
pub async fn connect(
    url: &Url,
    trust: &ClientTrust,
    namespace: &TrackNamespace,
    track: &str,
) -> anyhow::Result<Subscribed> {
    let client = ClientEndpoint::new()?;
    let (transport, kind) = client.connect(url, trust).await?;
    let (session, _publisher, subscriber) = Session::connect(transport.clone().into(), None, kind)
        .await
        .context("MoQ setup failed")?;
    let session = tokio::spawn(async move {
        let _ = session.run().await;
    });
    let (writer, reader) = Track::new(namespace.clone(), track.to_string()).produce();
    let mut subscriber = subscriber;
    let subscription = match subscriber.subscribe_open(writer).await {
        Ok(subscription) => subscription,
        Err(err) => {
            session.abort();
            bail!("SUBSCRIBE refused: {err}");
        }
    };
    Ok(Subscribed {
        client,
        transport,
        session,
        subscription,
        reader,
    })
}

impl Subscribed {
    /// Reads objects until `stop` turns true or the track ends, then closes the session.
    pub async fn receive(self, object_bytes: usize, mut stop: watch::Receiver<bool>) -> ReceiveLog {
        let log = Arc::new(Mutex::new(ReceiveLog::default()));
        let ended = tokio::select! {
            ended = read_track(self.reader, object_bytes, log.clone()) => ended.err().map(|e| format!("{e:#}")),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        drop(self.subscription);
        self.transport.close(0, b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.wait_idle()).await;
        self.session.abort();
        let mut log = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
        log.ended = ended.or(log.ended);
        log
    }
}

async fn read_track(
    reader: moq_transport::serve::TrackReader,
    object_bytes: usize,
    log: Arc<Mutex<ReceiveLog>>,
) -> anyhow::Result<()> {
    let TrackReaderMode::Subgroups(mut subgroups) = reader.mode().await? else {
        bail!("the track is not sent on subgroup streams");
    };
    let mut groups = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = subgroups.next() => match next? {
                Some(group) => groups.push(read_group(group, object_bytes, log.clone())),
                None => bail!("the track ended"),
            },
            Some(()) = groups.next(), if !groups.is_empty() => {}
        }
    }
}

async fn read_group(mut group: SubgroupReader, object_bytes: usize, log: Arc<Mutex<ReceiveLog>>) {
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
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if object.object_id != expected {
            log.groups_with_gaps += 1;
        }
        expected = object.object_id + 1;
        if bytes.len() != object_bytes {
            log.wrong_size += 1;
        }
        if let Some(sent) = payload::sent_ns(&bytes) {
            log.objects.push((sent, received));
        }
    }
    log.lock().unwrap_or_else(|p| p.into_inner()).groups_cut += 1;
}
