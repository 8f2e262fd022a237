//! Join time with a warm cache: a relay already delivering the track to one subscriber
//! (its upstream subscription open, recent groups cached) gets new subscribers, one at a
//! time, each on a connection already set up. A join's time runs from sending SUBSCRIBE
//! to reading the first object of a group (object 0, where a decoder can start). Joins
//! are spread over the group period so they land at different points of a group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use stagecast_proto::path::namespace_from_path;
use stagecast_proto::trust::ClientTrust;
use tokio::sync::watch;

use crate::analysis::Percentiles;
use crate::fanout::{subscribe_when_routed, BROADCAST, TRACK};
use crate::publisher::SyntheticPublisher;
use crate::relay_process::RelayProcess;
use crate::subscriber::{self, FirstGroupStart, MediaLog};
use crate::Workload;

/// How long one join may take before it counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Delivery to the warm subscriber before the first join.
const WARM: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Serialize)]
pub struct JoinResult {
    pub joins: usize,
    pub failed: usize,
    /// SUBSCRIBE sent to the first object of a group read.
    pub join_ms: Percentiles,
    /// Joins whose first object was not a group's first (the relay started mid-group,
    /// and the subscriber waited for the next group).
    pub joined_mid_group: usize,
    pub load_average: f64,
}

pub async fn measure(
    workload: &Workload,
    mut relay: RelayProcess,
    joins: usize,
) -> anyhow::Result<JoinResult> {
    let trust = ClientTrust::pinned_hex(&relay.fingerprint)?;
    let url = relay.moqt_url();
    let namespace = namespace_from_path(BROADCAST)?;
    let publisher = SyntheticPublisher::start(
        url.clone(),
        trust.clone(),
        namespace.clone(),
        TRACK,
        workload.fps,
        workload.object_bytes,
        None,
    )
    .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let warm = subscribe_when_routed(&url, &trust, &namespace).await?;
    let warm_task = tokio::spawn(warm.receive(MediaLog::new(workload.object_bytes), stop_rx));
    tokio::time::sleep(WARM).await;

    // A step that is not a multiple of the frame period walks the joins across the group.
    let group = Duration::from_secs(1);
    let step = group * 7 / 23;
    let mut times = Vec::with_capacity(joins);
    let (mut failed, mut mid_group) = (0, 0);
    for _ in 0..joins {
        tokio::time::sleep(step).await;
        match join_once(&url, &trust, &namespace).await {
            Ok((elapsed, objects_before)) => {
                times.push(elapsed.as_nanos() as u64);
                if objects_before > 0 {
                    mid_group += 1;
                }
            }
            Err(err) => {
                tracing::warn!("join failed: {err:#}");
                failed += 1;
            }
        }
    }
    let load_average = crate::procfs::load_average();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), warm_task).await;
    publisher.stop();
    relay.stop();
    Ok(JoinResult {
        joins,
        failed,
        join_ms: Percentiles::of(&mut times, 1e-6),
        joined_mid_group: mid_group,
        load_average,
    })
}

/// One join: connect (not timed), SUBSCRIBE, wait for a group's first object.
async fn join_once(
    url: &url::Url,
    trust: &ClientTrust,
    namespace: &moq_transport::coding::TrackNamespace,
) -> anyhow::Result<(Duration, u64)> {
    let connected = subscriber::connect_only(url, trust).await?;
    let started = Instant::now();
    let subscribed = connected.subscribe(namespace, TRACK).await?;
    let sink = Arc::new(FirstGroupStart::default());
    let (done_tx, done_rx) = watch::channel(false);
    let reader = tokio::spawn(subscribed.receive(sink.clone(), done_rx));
    let first = tokio::time::timeout(JOIN_TIMEOUT, sink.wait()).await;
    let _ = done_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    let (_, at) = first.map_err(|_| anyhow::anyhow!("no group start within {JOIN_TIMEOUT:?}"))?;
    Ok((at.duration_since(started), sink.objects_before()))
}
