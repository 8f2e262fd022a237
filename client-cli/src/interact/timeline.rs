//! Follows a broadcast's `interaction` track: every record, in arrival order, parsed.

use anyhow::{anyhow, bail};
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{Track, TrackReaderMode};
use moq_transport::session::Subscriber;
use stagecast_proto::interaction::{Record, INTERACTION_TRACK};
use tokio::sync::mpsc;

/// Largest timeline object accepted (a snapshot is a few kilobytes).
const MAX_OBJECT_BYTES: usize = 1 << 20;

/// Subscribes to the timeline and sends every record on `records` until the track ends,
/// the receiver goes away, or the subscription fails.
pub async fn follow_timeline(
    subscriber: &Subscriber,
    namespace: &TrackNamespace,
    records: mpsc::Sender<Record>,
) -> anyhow::Result<()> {
    let (writer, reader) = Track::new(namespace.clone(), INTERACTION_TRACK.to_string()).produce();
    let mut subscriber = subscriber.clone();
    let _subscription = subscriber
        .subscribe_open(writer)
        .await
        .map_err(|err| anyhow!("cannot subscribe to the interaction timeline: {err}"))?;
    let TrackReaderMode::Subgroups(mut groups) = reader.mode().await? else {
        bail!("the interaction timeline is not sent on subgroup streams");
    };
    while let Some(mut group) = groups.next().await? {
        while let Ok(Some(mut object)) = group.next().await {
            let mut payload = Vec::new();
            while let Some(chunk) = object.read().await? {
                payload.extend_from_slice(&chunk);
                if payload.len() > MAX_OBJECT_BYTES {
                    bail!("a timeline object is larger than {MAX_OBJECT_BYTES} bytes");
                }
            }
            let parsed: Vec<Record> = match serde_json::from_slice(&payload) {
                Ok(parsed) => parsed,
                Err(err) => {
                    tracing::warn!(%err, "timeline object is not readable; skipped");
                    continue;
                }
            };
            for record in parsed {
                if records.send(record).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
