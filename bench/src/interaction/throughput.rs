//! How many requests a second the origin accepts, sequences and publishes, with many
//! viewers sending at once on request streams straight to the origin (or through the
//! relay, which forwards each request stream upstream on a stream of its own), and what two
//! watchers of the `interaction` track (one at the origin, one through the relay) see.
//!
//! - chat: every viewer sends its 5 allowed messages (the per-user limit is 5 per 10 s)
//!   at the same moment, answers awaited one by one; the origin stores and publishes
//!   each as an event, so the burst's accepted-per-second is the origin's sequencing rate
//!   while its queue is never empty;
//! - reactions: every viewer sends reactions back to back for a fixed time, pausing
//!   when told to (20 per second per user); the origin counts them into a window and
//!   publishes one `reactions` event per 500 ms, so what the watchers see is the sum of
//!   the counts, not one event each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use stagecast_proto::interaction::{Action, Answer, Reason, Request, INTERACTION_TRACK};
use stagecast_proto::path::namespace_from_path;
use stagecast_proto::trust::ClientTrust;
use tokio::sync::{watch, Barrier};

use super::deployment::{Deployment, BROADCAST};
use super::probe::{EventLog, SeenEvent};
use super::users::{open_users, User};
use crate::analysis::Percentiles;
use crate::payload::now_ns;
use crate::procfs;
use crate::subscriber;

/// Chat messages a user may send per 10 s (the origin's limit).
const CHATS_PER_USER: usize = 5;
/// Reactions a user may send per second (the origin's limit).
const REACTIONS_PER_SECOND: usize = 20;
/// How long watchers may take to see the last events.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    Chat,
    Reactions,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThroughputResult {
    pub load: Load,
    /// Whether the senders were connected at the relay (else at the origin).
    pub via_relay: bool,
    pub users: usize,
    pub connections: usize,
    pub requests_sent: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Errors other than answers (a stream that failed or timed out).
    pub failed: u64,
    /// From the first request to the last answer.
    pub busy_seconds: f64,
    /// Accepted requests over the busy time.
    pub accepted_per_second: f64,
    /// The same per whole second of the busy time, first to last.
    pub accepted_per_second_series: Vec<u64>,
    /// The most accepted in one whole second (the last, partial second left out).
    pub peak_accepted_per_second: u64,
    pub answer_ms: Percentiles,
    /// What the watcher at the origin and the one through the relay received.
    pub seen_at_origin: Seen,
    pub seen_at_relay: Seen,
    pub origin_cpu_percent: f64,
    pub loadgen_cpu_percent: f64,
    pub load_average: f64,
    /// The most threads the origin had during the phase (sampled every 100 ms): its
    /// request handling blocks a runtime thread per request in flight.
    pub origin_threads_max: u64,
    pub load_average_at_start: f64,
    /// Groups the origin and the relay dropped for subscribers that fell behind
    /// (`stagecast_groups_dropped_total` over the phase).
    pub origin_groups_dropped: Option<f64>,
    pub relay_groups_dropped: Option<f64>,
}

/// Events one watcher received from the phase's start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Seen {
    /// Events by type (`chat`, `reactions`, `viewers`, ...).
    pub events: BTreeMap<String, u64>,
    /// Reactions counted in the `reactions` events.
    pub reactions_counted: u64,
    /// Chat events per second from the first to the last one received.
    pub chat_events_per_second: f64,
    pub unreadable_objects: u64,
}

fn seen(log: &EventLog, from_ns: u64) -> Seen {
    let events: Vec<SeenEvent> = log
        .events()
        .into_iter()
        .filter(|e| e.received_ns >= from_ns)
        .collect();
    let mut out = Seen {
        unreadable_objects: log.unreadable(),
        ..Default::default()
    };
    for event in &events {
        *out.events.entry(event.kind.to_string()).or_default() += 1;
        if event.kind == "reactions" {
            out.reactions_counted += event.weight;
        }
    }
    let chats: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == "chat")
        .map(|e| e.received_ns)
        .collect();
    if let (Some(first), Some(last)) = (chats.iter().min(), chats.iter().max()) {
        if last > first {
            out.chat_events_per_second = (chats.len() - 1) as f64 / ((last - first) as f64 / 1e9);
        }
    }
    out
}

/// A watcher of the timeline at `url`.
struct Watcher {
    log: Arc<EventLog>,
    task: tokio::task::JoinHandle<Option<String>>,
}

async fn watch_timeline(
    url: &url::Url,
    trust: &ClientTrust,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Watcher> {
    let namespace = namespace_from_path(BROADCAST)?;
    let subscribed = subscriber::connect(url, trust, &namespace, INTERACTION_TRACK).await?;
    let log = Arc::new(EventLog::default());
    let sink = log.clone();
    let task = tokio::spawn(async move { subscribed.receive(sink, stop).await });
    Ok(Watcher { log, task })
}

/// Outcome of one request at a sender.
struct Outcome {
    sent_ns: u64,
    answered_ns: u64,
    answer: Result<Answer, ()>,
}

pub async fn run(
    deployment: &mut Deployment,
    load: Load,
    users: usize,
    seconds: u64,
    tag: &str,
    via_relay: bool,
) -> anyhow::Result<ThroughputResult> {
    let origin_url = deployment.origin.url.clone();
    let origin_trust = deployment.origin_trust()?;
    let (senders_url, senders_trust) = if via_relay {
        (deployment.relay.url.clone(), deployment.relay_trust()?)
    } else {
        (origin_url.clone(), origin_trust.clone())
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let at_origin = watch_timeline(&origin_url, &origin_trust, stop_rx.clone()).await?;
    let at_relay =
        watch_timeline(&deployment.relay.url, &deployment.relay_trust()?, stop_rx).await?;

    let tokens = (0..users)
        .map(|i| deployment.viewer_token(&format!("{tag}-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (connections, senders) =
        open_users(&senders_url, &senders_trust, BROADCAST, tokens, 16).await?;
    let connection_count = connections.len();
    // The viewer count changes as they join: let its event go out before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let barrier = Arc::new(Barrier::new(senders.len() + 1));
    let deadline_after = Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(senders.len());
    for user in senders {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            match load {
                Load::Chat => send_chats(user).await,
                Load::Reactions => send_reactions(user, Instant::now() + deadline_after).await,
            }
        }));
    }
    let dropped_start = groups_dropped(deployment).await;
    let load_average_at_start = procfs::load_average();
    let threads = ThreadSampler::start(deployment.origin.pid());
    let origin_start = procfs::sample(deployment.origin.pid())?;
    let own_start = procfs::sample(std::process::id())?;
    let from_ns = now_ns();
    let started = Instant::now();
    barrier.wait().await;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for task in tasks {
        outcomes.extend(task.await?);
    }
    let busy = started.elapsed().as_secs_f64();
    let origin_threads_max = threads.stop().await;
    let origin_end = procfs::sample(deployment.origin.pid())?;
    let own_end = procfs::sample(std::process::id())?;
    let load_average = procfs::load_average();
    tokio::time::sleep(SETTLE).await;
    deployment.check_running()?;
    let dropped_end = groups_dropped(deployment).await;
    let _ = stop_tx.send(true);
    for connection in connections {
        connection.close();
    }
    for watcher in [&at_origin, &at_relay] {
        if watcher.task.is_finished() {
            tracing::warn!("a timeline watcher ended early");
        }
    }
    let seen_at_origin = seen(&at_origin.log, from_ns);
    let seen_at_relay = seen(&at_relay.log, from_ns);
    at_origin.task.abort();
    at_relay.task.abort();

    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut accepted, mut failed) = (0u64, 0u64);
    let mut per_second: Vec<u64> = Vec::new();
    let mut answers = Vec::with_capacity(outcomes.len());
    for outcome in &outcomes {
        answers.push(outcome.answered_ns.saturating_sub(outcome.sent_ns));
        match &outcome.answer {
            Ok(Answer::Accepted { .. }) => {
                accepted += 1;
                let second = (outcome.answered_ns.saturating_sub(from_ns) / 1_000_000_000) as usize;
                if per_second.len() <= second {
                    per_second.resize(second + 1, 0);
                }
                per_second[second] += 1;
            }
            Ok(Answer::Rejected { reason, .. }) => {
                *rejected.entry(reason_name(*reason)).or_default() += 1;
            }
            _ => failed += 1,
        }
    }
    let last_answer = outcomes
        .iter()
        .map(|o| o.answered_ns)
        .max()
        .unwrap_or(from_ns);
    let busy_seconds = if load == Load::Chat {
        (last_answer.saturating_sub(from_ns)) as f64 / 1e9
    } else {
        busy
    };
    let ticks = procfs::clock_ticks_per_second() as f64;
    let cpu = |end: procfs::ProcessSample, start: procfs::ProcessSample| {
        100.0 * end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks / busy
    };
    Ok(ThroughputResult {
        load,
        via_relay,
        users,
        connections: connection_count,
        requests_sent: outcomes.len() as u64,
        accepted,
        rejected,
        failed,
        busy_seconds,
        accepted_per_second: accepted as f64 / busy_seconds.max(1e-9),
        peak_accepted_per_second: per_second
            .iter()
            .take(per_second.len().saturating_sub(1).max(1))
            .copied()
            .max()
            .unwrap_or(0),
        accepted_per_second_series: per_second,
        answer_ms: Percentiles::of(&mut answers, 1e-6),
        seen_at_origin,
        seen_at_relay,
        origin_cpu_percent: cpu(origin_end, origin_start),
        loadgen_cpu_percent: cpu(own_end, own_start),
        load_average,
        origin_threads_max,
        load_average_at_start,
        origin_groups_dropped: dropped_end.0.zip(dropped_start.0).map(|(e, s)| e - s),
        relay_groups_dropped: dropped_end.1.zip(dropped_start.1).map(|(e, s)| e - s),
    })
}

/// Samples a process's thread count until stopped; keeps the highest.
struct ThreadSampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl ThreadSampler {
    fn start(pid: u32) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut most = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => most = most.max(procfs::threads(pid).unwrap_or(0)),
                    _ = stopped.changed() => return most,
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}

/// `stagecast_groups_dropped_total` at the origin and at the relay.
async fn groups_dropped(deployment: &Deployment) -> (Option<f64>, Option<f64>) {
    const NAME: &str = "stagecast_groups_dropped_total";
    let origin = deployment.origin.metrics().await.ok();
    let relay = deployment.relay.metrics().await.ok();
    (
        origin.and_then(|text| crate::prometheus::value(&text, NAME)),
        relay.and_then(|text| crate::prometheus::value(&text, NAME)),
    )
}

fn reason_name(reason: Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{reason:?}"))
}

async fn request(user: &mut User, action: Action, key: String) -> Outcome {
    let sent_ns = now_ns();
    let answer = user
        .stream
        .request(&Request { key, action })
        .await
        .map_err(|_| ());
    Outcome {
        sent_ns,
        answered_ns: now_ns(),
        answer,
    }
}

async fn send_chats(mut user: User) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(CHATS_PER_USER);
    for i in 0..CHATS_PER_USER {
        let text = format!("load {} {i}", user.index);
        let outcome = request(&mut user, Action::Chat { text }, format!("c{i}")).await;
        let failed = outcome.answer.is_err();
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    user.stream.finish().await;
    outcomes
}

/// Sends bursts of the allowed 20 reactions, one burst a second, until `until`. The next
/// burst starts a second (and a margin) after the first answer of the last one: by then
/// the origin's sliding window, which counts from when it accepted each, has let it go.
async fn send_reactions(mut user: User, until: Instant) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut i = 0u64;
    'bursts: while Instant::now() < until {
        let mut first_answer = None;
        for _ in 0..REACTIONS_PER_SECOND {
            let outcome = request(
                &mut user,
                Action::React {
                    emoji: "\u{1f525}".to_string(),
                },
                format!("r{i}"),
            )
            .await;
            i += 1;
            first_answer.get_or_insert_with(Instant::now);
            let stop = outcome.answer.is_err();
            let limited = matches!(outcome.answer, Ok(Answer::Rejected { .. }));
            outcomes.push(outcome);
            if stop {
                break 'bursts;
            }
            if limited || Instant::now() >= until {
                break;
            }
        }
        let next = first_answer.unwrap_or_else(Instant::now) + Duration::from_millis(1_020);
        tokio::time::sleep_until(next.min(until).into()).await;
    }
    user.stream.finish().await;
    outcomes
}
