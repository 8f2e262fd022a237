//! Reading one MoQ media track for `stagecast subscribe`: the first object 0 of a track
//! (by its subscription or a Joining FETCH), then its objects group by group, giving up
//! a group left open once a newer one has begun (after a grace that follows the
//! connection's round trip), and whole objects only, size-bounded.

use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use moq_transport::serve::{
    ServeError, SubgroupReader, SubgroupsReader, TrackReader, TrackReaderMode,
};
use moq_transport::session::{Subscribe, Subscriber};
use tokio::sync::mpsc;

/// One object of a media track, as a reader passes it to the output.
pub(crate) struct Received {
    pub track: String,
    pub group: u64,
    pub object: u64,
    pub payload: Bytes,
}

/// A track ended with PUBLISH_DONE `GOING_AWAY`: its GOAWAY, saying where to go, may
/// arrive just after it on the control stream.
#[derive(Debug, thiserror::Error)]
#[error("the server is going away")]
pub(crate) struct ServerGoingAway;

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
pub(crate) async fn first_object_joined(
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

/// Least time a group may stay silent once a newer group of its track has begun before
/// the reader gives up on the rest of it. A sender has to FIN a finished subgroup stream
/// (draft-18 "Closing Subgroup Streams"), but a relay that holds the FIN back would
/// otherwise stall the track behind one group.
const STALE_GROUP_GRACE_FLOOR: Duration = Duration::from_millis(500);
/// The grace in round trips, when that is more than the floor: the rest of a group can be
/// silent while a lost packet is detected and sent again (about one and a half round
/// trips), or several times over when the retransmission is lost too. At 100 ms and 2%
/// loss a 500 ms grace dropped group tails that arrived later (docs/testing.md).
const STALE_GROUP_GRACE_RTTS: u32 = 12;
/// Most time a silent group is waited for, however long the round trip.
const STALE_GROUP_GRACE_CAP: Duration = Duration::from_secs(5);

/// The grace for a silent group on a connection whose smoothed round trip is `rtt`.
fn stale_group_grace(rtt: Option<Duration>) -> Duration {
    let by_rtt = rtt.unwrap_or_default() * STALE_GROUP_GRACE_RTTS;
    by_rtt.clamp(STALE_GROUP_GRACE_FLOOR, STALE_GROUP_GRACE_CAP)
}

/// Where a reader's grace for a silent group comes from: the connection it reads from
/// (its round trip, measured again each time), or the floor alone.
#[derive(Clone, Default)]
pub(crate) struct StaleGrace(Option<stagecast_proto::web_transport_quinn::Session>);

impl StaleGrace {
    pub(crate) fn of(session: &stagecast_proto::web_transport_quinn::Session) -> Self {
        Self(Some(session.clone()))
    }

    fn now(&self) -> Duration {
        stale_group_grace(self.0.as_ref().map(|session| session.rtt()))
    }
}

/// Reads a media track group by group and sends each object's payload on. A group joined
/// after its start (not from object 0) is skipped, so output always starts at a group
/// start; groups older than one already read are skipped too. Once a newer group has begun,
/// the current one ends after `grace` (see [`stale_group_grace`]) without an object.
///
/// Objects with a status (draft-18 §11.2.1.1) carry no media: End of Group ends the
/// group, End of Track the track (moq-relay sends one where a track ends); a zero-length
/// Normal object is passed over. A PUBLISH_DONE with `TRACK_ENDED` is a normal end too.
pub(crate) async fn read_track(
    name: String,
    reader: TrackReader,
    tx: mpsc::Sender<Received>,
    grace: StaleGrace,
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
            let next = watching_for_newer(
                next,
                current,
                &grace,
                &mut subgroups,
                &mut waiting,
                &mut ended,
            );
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
            let read = watching_for_newer(
                read,
                current,
                &grace,
                &mut subgroups,
                &mut waiting,
                &mut ended,
            );
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
/// dropped) or the track's end; once a newer group waits, `work` has the grace left
/// (`None` after).
async fn watching_for_newer<T>(
    work: impl std::future::Future<Output = T>,
    current: u64,
    grace: &StaleGrace,
    subgroups: &mut SubgroupsReader,
    waiting: &mut Option<SubgroupReader>,
    ended: &mut Option<anyhow::Result<()>>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        if waiting.is_some() {
            return tokio::time::timeout(grace.now(), &mut work).await.ok();
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
    use moq_transport::coding::TrackNamespace;
    use moq_transport::serve::Subgroup;
    use moq_transport::serve::Track;

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
        let reading = tokio::spawn(read_track(
            "video".into(),
            reader,
            tx,
            StaleGrace::default(),
        ));

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

    /// The grace follows the round trip above its floor, up to its cap.
    #[test]
    fn the_grace_for_a_silent_group_follows_the_round_trip() {
        assert_eq!(stale_group_grace(None), STALE_GROUP_GRACE_FLOOR);
        assert_eq!(
            stale_group_grace(Some(Duration::from_millis(1))),
            STALE_GROUP_GRACE_FLOOR
        );
        assert_eq!(
            stale_group_grace(Some(Duration::from_millis(100))),
            Duration::from_millis(1200)
        );
        assert_eq!(
            stale_group_grace(Some(Duration::from_secs(2))),
            STALE_GROUP_GRACE_CAP
        );
    }

    /// An object over the limit is refused with a clear error; one within it arrives whole.
    #[tokio::test]
    async fn an_object_over_the_limit_is_refused_and_one_within_it_is_whole() {
        let namespace = TrackNamespace::from_utf8_path("live/alice");
        let (writer, reader) = Track::new(namespace, "video").produce();
        let mut groups = writer.subgroups().expect("subgroups");
        let mut writing = groups.create(group(0)).expect("group 0");
        writing.write(Bytes::from(vec![7u8; 32])).expect("write");
        writing.write(Bytes::from(vec![8u8; 16])).expect("write");
        writing.finish().expect("finish");

        let mut subgroups = subgroups(reader).await.expect("subgroups");
        let mut reading = subgroups.next().await.expect("read").expect("group 0");
        let mut big = reading.next().await.expect("read").expect("object 0");
        let err = read_object(&mut big, 16)
            .await
            .expect_err("32 bytes over a 16-byte limit");
        assert!(
            err.to_string().contains("object 0 is larger than 16 bytes"),
            "{err}"
        );
        let mut small = reading.next().await.expect("read").expect("object 1");
        let payload = read_object(&mut small, 16)
            .await
            .expect("16 bytes within the limit");
        assert_eq!(payload, Bytes::from(vec![8u8; 16]));
    }
}
