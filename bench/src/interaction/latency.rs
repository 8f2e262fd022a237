//! Chat latency to many subscribers through one relay: N subscribers of the broadcast's
//! `interaction` track at the relay; viewers, also connected at the relay, send chat
//! messages at a fixed rate (request stream → relay → origin, which sequences the event
//! and publishes it → relay → every subscriber). A message's latency at a subscriber is
//! its first arrival there minus the moment its request was written.
//!
//! Messages are spread over enough senders that none comes near the per-user chat limit
//! (5 per 10 s): a rejection would measure the limiter, not the path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use stagecast_proto::interaction::{Action, Answer, Request};
use stagecast_proto::path::namespace_from_path;
use tokio::sync::{watch, Semaphore};

use super::deployment::{Deployment, BROADCAST};
use super::probe::{marker_text, MarkerLog};
use super::users::open_users;
use crate::analysis::Percentiles;
use crate::payload::now_ns;
use crate::procfs;
use crate::subscriber;

/// How long every subscriber may take to connect and subscribe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// After the last message, how long arrivals are waited for.
const GRACE: Duration = Duration::from_secs(5);
/// A sender sends at most this many chat messages per 10 s (the origin allows 5).
const PER_SENDER_PER_10S: f64 = 3.0;

#[derive(Clone, Debug)]
pub struct LatencyParams {
    pub subscribers: usize,
    pub messages_per_second: f64,
    pub seconds: u64,
    pub connect_concurrency: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    pub subscribers: usize,
    pub subscribed: usize,
    pub subscribe_failures: usize,
    pub connect_seconds: f64,
    pub senders: usize,
    pub messages_sent: usize,
    pub messages_accepted: usize,
    pub messages_rejected: usize,
    /// Request written to answer read, at the sender (through the relay to the origin).
    pub answer_ms: Percentiles,
    /// Request written to first arrival, over every (accepted message, subscriber) pair.
    pub delivery_ms: Percentiles,
    /// Request written to arrival at the last of the subscribers, per message.
    pub delivery_to_all_ms: Percentiles,
    /// (accepted message, subscriber) pairs that never arrived within the grace period.
    pub deliveries_missing: u64,
    pub deliveries: u64,
    pub origin_cpu_percent: f64,
    pub relay_cpu_percent: f64,
    pub loadgen_cpu_percent: f64,
    pub load_average: f64,
}

struct Sent {
    id: usize,
    sent_ns: u64,
    answered_ns: u64,
    accepted: bool,
}

pub async fn run(
    deployment: &mut Deployment,
    params: &LatencyParams,
    step: usize,
) -> anyhow::Result<LatencyResult> {
    let total = (params.messages_per_second * params.seconds as f64).round() as usize;
    let senders = ((params.messages_per_second * 10.0 / PER_SENDER_PER_10S).ceil() as usize).max(1);
    let namespace = namespace_from_path(BROADCAST)?;
    let relay_url = deployment.relay.url.clone();
    let relay_trust = deployment.relay_trust()?;

    // Subscribers first: each its own connection, a bounded number connecting at a time.
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(params.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut connecting = Vec::with_capacity(params.subscribers);
    for _ in 0..params.subscribers {
        let (url, trust, namespace, gate) = (
            relay_url.clone(),
            relay_trust.clone(),
            namespace.clone(),
            gate.clone(),
        );
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                subscriber::connect(
                    &url,
                    &trust,
                    &namespace,
                    stagecast_proto::interaction::INTERACTION_TRACK,
                ),
            )
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))?
        }));
    }
    let mut logs = Vec::with_capacity(params.subscribers);
    let mut readers = Vec::with_capacity(params.subscribers);
    let mut failures = 0;
    for task in connecting {
        match task.await? {
            Ok(subscribed) => {
                let log = Arc::new(MarkerLog::new(step, total));
                logs.push(log.clone());
                let stop = stop_rx.clone();
                readers.push(tokio::spawn(
                    async move { subscribed.receive(log, stop).await },
                ));
            }
            Err(err) => {
                failures += 1;
                tracing::warn!("subscriber failed: {err:#}");
            }
        }
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    if logs.is_empty() {
        bail!("no subscriber could subscribe to the interaction track at the relay");
    }

    // Senders, at the relay too.
    let tokens = (0..senders)
        .map(|i| deployment.viewer_token(&format!("latency{step}-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (connections, users) = open_users(&relay_url, &relay_trust, BROADCAST, tokens, 8).await?;
    // Let the subscribers' first groups (snapshots) arrive before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let relay_start = procfs::sample(deployment.relay.pid())?;
    let origin_start = procfs::sample(deployment.origin.pid())?;
    let own_start = procfs::sample(std::process::id())?;
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / params.messages_per_second);
    let mut sending = Vec::with_capacity(users.len());
    for mut user in users {
        let ids: Vec<usize> = (user.index..total).step_by(senders).collect();
        sending.push(tokio::spawn(async move {
            let mut sent = Vec::with_capacity(ids.len());
            for id in ids {
                tokio::time::sleep_until(start + period * id as u32).await;
                let request = Request {
                    key: format!("m{id}"),
                    action: Action::Chat {
                        text: marker_text(step, id),
                    },
                };
                let sent_ns = now_ns();
                let answer = user.stream.request(&request).await;
                let answered_ns = now_ns();
                if let Ok(Answer::Rejected {
                    reason, message, ..
                }) = &answer
                {
                    tracing::warn!(
                        id,
                        ?reason,
                        message,
                        "a benchmark chat message was rejected"
                    );
                }
                sent.push(Sent {
                    id,
                    sent_ns,
                    answered_ns,
                    accepted: matches!(answer, Ok(Answer::Accepted { .. })),
                });
            }
            sent
        }));
    }
    let mut sent: Vec<Sent> = Vec::with_capacity(total);
    for task in sending {
        sent.extend(task.await?);
    }
    sent.sort_by_key(|s| s.id);
    let accepted: Vec<usize> = sent.iter().filter(|s| s.accepted).map(|s| s.id).collect();
    // Wait for every subscriber to have every accepted message, up to the grace period.
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline
        && !logs
            .iter()
            .all(|log| log.seen_of(&accepted) == accepted.len())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = started.elapsed().as_secs_f64();
    let relay_end = procfs::sample(deployment.relay.pid())?;
    let origin_end = procfs::sample(deployment.origin.pid())?;
    let own_end = procfs::sample(std::process::id())?;
    let load_average = procfs::load_average();
    deployment.check_running()?;
    let _ = stop_tx.send(true);
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    }
    for connection in connections {
        connection.close();
    }

    let mut delivery = Vec::new();
    let mut to_all = Vec::new();
    let mut missing = 0u64;
    let seen: Vec<Vec<u64>> = logs.iter().map(|log| log.first_seen()).collect();
    for s in sent.iter().filter(|s| s.accepted) {
        let mut last = 0u64;
        let mut complete = true;
        for subscriber in &seen {
            match subscriber.get(s.id).copied().filter(|&t| t > 0) {
                Some(at) => {
                    let latency = at.saturating_sub(s.sent_ns);
                    delivery.push(latency);
                    last = last.max(latency);
                }
                None => {
                    missing += 1;
                    complete = false;
                }
            }
        }
        if complete {
            to_all.push(last);
        }
    }
    let mut answers: Vec<u64> = sent
        .iter()
        .map(|s| s.answered_ns.saturating_sub(s.sent_ns))
        .collect();
    let ticks = procfs::clock_ticks_per_second() as f64;
    let cpu = |end: procfs::ProcessSample, start: procfs::ProcessSample| {
        100.0 * end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks / window
    };
    Ok(LatencyResult {
        subscribers: params.subscribers,
        subscribed: logs.len(),
        subscribe_failures: failures,
        connect_seconds,
        senders,
        messages_sent: sent.len(),
        messages_accepted: accepted.len(),
        messages_rejected: sent.len() - accepted.len(),
        answer_ms: Percentiles::of(&mut answers, 1e-6),
        deliveries: delivery.len() as u64,
        delivery_ms: Percentiles::of(&mut delivery, 1e-6),
        delivery_to_all_ms: Percentiles::of(&mut to_all, 1e-6),
        deliveries_missing: missing,
        origin_cpu_percent: cpu(origin_end, origin_start),
        relay_cpu_percent: cpu(relay_end, relay_start),
        loadgen_cpu_percent: cpu(own_end, own_start),
        load_average,
    })
}
