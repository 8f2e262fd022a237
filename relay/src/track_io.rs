//! Moves objects between moq-transport's in-memory tracks (what its session layer reads
//! from and writes to) and the relay's [`TrackCache`].
//!
//! - [`fill_cache`]: a subscription's incoming track -> the cache (once per track, whatever
//!   the number of subscribers);
//! - [`deliver`]: the cache -> one downstream subscriber's track, starting at the newest
//!   group. Payloads are `Bytes` clones (a reference count), never copies.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use moq_transport::data::ObjectStatus;
use moq_transport::message::PublishDoneCode;
use moq_transport::serve::{
    ServeError, Subgroup, SubgroupReader, SubgroupWriter, TrackReader, TrackReaderMode, TrackWriter,
};

use crate::cache::{FollowStep, GroupInfo, TrackCache, TrackEnd, TrackFollower};
use crate::metrics::Metrics;

/// Largest object the relay accepts from a source; a bigger one ends its group as malformed.
pub const MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;
/// How long the last groups of an ended track may take to arrive after PUBLISH_DONE.
const TAIL_TIMEOUT: Duration = Duration::from_secs(3);
/// Subgroup streams of one track read at once; more wait (QUIC flow control pushes back).
const MAX_CONCURRENT_SUBGROUPS: usize = 64;

/// How a source subscription stopped filling the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEnd {
    /// The publisher ended the track (PUBLISH_DONE with TRACK_ENDED, or a clean end).
    Finished,
    /// The source was lost or failed; the track may continue from another source.
    Lost { code: u64, reason: String },
}

/// Reads `reader` (an upstream or publisher subscription) into `cache` until the
/// subscription ends, and says how it ended. The cache itself is not ended: the caller
/// decides whether the track is over or resumes from another source. Groups left
/// unfinished are abandoned.
pub async fn fill_cache(reader: TrackReader, cache: &TrackCache, metrics: &Metrics) -> SourceEnd {
    match fill_inner(reader, cache, metrics).await {
        Ok(()) => SourceEnd::Finished,
        Err(err) => match serve_error_code(&err) {
            code if code == PublishDoneCode::TrackEnded as u64 => SourceEnd::Finished,
            code => SourceEnd::Lost {
                code,
                reason: err.to_string(),
            },
        },
    }
}

async fn fill_inner(
    reader: TrackReader,
    cache: &TrackCache,
    metrics: &Metrics,
) -> Result<(), ServeError> {
    let mut subgroups = match reader.mode().await? {
        TrackReaderMode::Subgroups(subgroups) => subgroups,
        // Stagecast tracks are carried on subgroup streams (MSF); datagram-only tracks are
        // refused rather than silently delivered as nothing.
        _ => {
            return Err(ServeError::NotImplemented(
                "tracks not sent on subgroup streams".into(),
            ))
        }
    };
    let mut reading = FuturesUnordered::new();
    // Groups begun in the cache and not yet ended: if this source stops, they are
    // abandoned, so no follower waits on them or passes them off as whole.
    let mut open: Vec<u64> = Vec::new();
    let mut source_done = false;
    let mut ended = Ok(());
    let result = loop {
        tokio::select! {
            next = subgroups.next(), if !source_done && reading.len() < MAX_CONCURRENT_SUBGROUPS => match next {
                Ok(Some(subgroup)) => {
                    let info = GroupInfo {
                        group_id: subgroup.group_id,
                        subgroup_id: subgroup.subgroup_id,
                        priority: subgroup.priority,
                    };
                    match cache.begin_group(info) {
                        Ok(seq) => {
                            open.push(seq);
                            reading.push(fill_group(subgroup, cache.clone(), seq, metrics.clone()));
                        }
                        Err(err) => {
                            metrics.source_groups_skipped_total.inc();
                            tracing::debug!(%err, "skipping group");
                        }
                    }
                }
                // The subscription's track went away without PUBLISH_DONE: the source is
                // gone (seen when an upstream relay restarts), not finished.
                Ok(None) => {
                    source_done = true;
                    ended = Err(ServeError::Cancel);
                }
                // The publisher ended the track (PUBLISH_DONE): the groups still arriving
                // on their own streams are finished before the track is (draft-18 §10.1.2
                // lets PUBLISH_DONE overtake data). A lost source is another matter.
                Err(err) if serve_error_code(&err) == PublishDoneCode::TrackEnded as u64 => {
                    source_done = true;
                    ended = Err(err);
                }
                Err(err) => break Err(err),
            },
            Some(seq) = reading.next(), if !reading.is_empty() => open.retain(|s| *s != seq),
            () = tokio::time::sleep(TAIL_TIMEOUT), if source_done && !reading.is_empty() => break ended,
            else => break ended,
        }
    };
    for seq in open {
        cache.abandon_group(seq);
    }
    result
}

async fn fill_group(
    mut subgroup: SubgroupReader,
    cache: TrackCache,
    seq: u64,
    metrics: Metrics,
) -> u64 {
    let result: Result<(), ServeError> = async {
        while let Some(mut object) = subgroup.next().await? {
            if object.status != ObjectStatus::NormalObject {
                continue;
            }
            let mut chunks: Vec<Bytes> = Vec::new();
            let mut size = 0;
            while let Some(chunk) = object.read().await? {
                size += chunk.len();
                if size > MAX_OBJECT_BYTES {
                    return Err(ServeError::Size);
                }
                chunks.push(chunk);
            }
            // Objects usually arrive in one chunk: keep that buffer rather than copy.
            let payload = match chunks.len() {
                1 => chunks.pop().unwrap_or_default(),
                _ => Bytes::from(chunks.concat()),
            };
            metrics.objects_in_total.inc();
            metrics.bytes_in_total.add(payload.len() as u64);
            if let Err(err) = cache.push_object(seq, object.object_id, payload) {
                if let Some(limit) = err.limit() {
                    metrics.limits_refused.inc(limit);
                }
                // A group a limit dropped is gone from the cache: the rest of its
                // objects are read and ignored, like any object the cache does not keep.
                tracing::debug!(%err, "dropping object");
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => cache.end_group(seq),
        Err(err) => {
            tracing::debug!(%err, group = seq, "group ended incomplete");
            cache.abandon_group(seq);
        }
    }
    seq
}

/// Writes what `follower` reads (from the newest group on) into `writer` (one downstream
/// subscriber's track), until the track ends or the subscriber goes away.
/// Ends early when `stop` resolves (the node is draining): the subscription then ends
/// with PUBLISH_DONE GOING_AWAY, which tells the subscriber to go elsewhere.
pub async fn deliver(
    mut follower: TrackFollower,
    writer: TrackWriter,
    stop: impl std::future::Future<Output = ()>,
    metrics: &Metrics,
) {
    tokio::pin!(stop);
    let mut subgroups = match writer.subgroups() {
        Ok(subgroups) => subgroups,
        Err(_) => return,
    };
    let mut open: HashMap<u64, SubgroupWriter> = HashMap::new();
    loop {
        let step = tokio::select! {
            step = follower.next() => step,
            () = &mut stop => {
                for (_, subgroup) in open.drain() {
                    let _ = subgroup.close(ServeError::Cancel);
                }
                let _ = subgroups.close(ServeError::Closed(PublishDoneCode::GoingAway as u64));
                return;
            }
        };
        match step {
            FollowStep::Group { seq, info } => {
                let created = subgroups.create(Subgroup {
                    group_id: info.group_id,
                    subgroup_id: info.subgroup_id,
                    priority: info.priority,
                });
                match created {
                    Ok(subgroup) => {
                        open.insert(seq, subgroup);
                    }
                    // This subscriber already had this group (cut short when its source
                    // was lost, now sent again by the resumed source): a group is sent once,
                    // so it goes on with the next.
                    Err(ServeError::Duplicate) => {}
                    // The subscriber is gone or its session refused more streams.
                    Err(_) => return,
                }
            }
            FollowStep::Object {
                seq,
                object_id,
                payload,
            } => {
                let Some(subgroup) = open.get_mut(&seq) else {
                    continue;
                };
                let size = payload.len();
                let written = subgroup
                    .create_with_id(object_id, size, None)
                    .and_then(|mut object| object.write(payload));
                if written.is_ok() {
                    metrics.objects_out_total.inc();
                    metrics.bytes_out_total.add(size as u64);
                }
                if written.is_err() {
                    open.remove(&seq);
                }
            }
            FollowStep::GroupEnd { seq } => {
                if let Some(subgroup) = open.remove(&seq) {
                    let _ = subgroup.finish();
                }
            }
            FollowStep::GroupAbandoned { seq } => {
                metrics.groups_dropped_total.inc();
                if let Some(subgroup) = open.remove(&seq) {
                    // Resets the stream (CANCELLED): the subscriber sees an incomplete group
                    // as such, and the subscription goes on with the next group. (A
                    // TOO_FAR_BEHIND reset ends the whole subscription in moq-transport's
                    // serving loop: seen when a middle relay restarted.)
                    let _ = subgroup.close(ServeError::Cancel);
                }
            }
            FollowStep::End(end) => {
                for (_, subgroup) in open.drain() {
                    let _ = subgroup.close(ServeError::Cancel);
                }
                let err = match end {
                    TrackEnd::Finished => ServeError::Closed(PublishDoneCode::TrackEnded as u64),
                    TrackEnd::Failed { code, .. } => ServeError::Closed(code),
                };
                let _ = subgroups.close(err);
                return;
            }
            FollowStep::RangeEnd => {
                let done = ServeError::Closed(PublishDoneCode::SubscriptionEnded as u64);
                let _ = subgroups.close(done);
                return;
            }
        }
    }
}

/// The PUBLISH_DONE status code for a source that ended with `err`.
fn serve_error_code(err: &ServeError) -> u64 {
    match err {
        // Only an explicit PUBLISH_DONE TRACK_ENDED means the publisher finished; a track
        // that merely ended (Done) lost its source.
        ServeError::Closed(code) => *code,
        ServeError::Size => PublishDoneCode::MalformedTrack as u64,
        _ => PublishDoneCode::InternalError as u64,
    }
}
