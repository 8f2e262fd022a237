//! The fan-out benchmark: for each subscriber count N, a fresh relay, one publisher and N
//! subscribers, measured over a fixed window. [`measure`] drives any relay (see
//! `relays.rs`); `stagecast-bench fanout` runs it on `stagecast-relay` alone, `compare`
//! on each relay in turn.
//!
//! One run, in order:
//! 1. start the relay (pinned to its CPU), start the publisher, let it run 2 s, read the
//!    relay's RSS (the baseline);
//! 2. connect and subscribe N subscribers, a bounded number at a time;
//! 3. warm up, then measure: relay CPU time and RSS, this process's CPU time, the relay's
//!    /metrics counters (Stagecast only), at the window's start and end, RSS once a second
//!    in between;
//! 4. a grace period for objects sent at the end of the window, then stop everything
//!    and work out delivery figures from what was sent and received (`analysis.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use stagecast_proto::path::namespace_from_path;
use stagecast_proto::trust::ClientTrust;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::analysis::{self, Percentiles, Window};
use crate::cpu_pinning::Pinning;
use crate::payload::now_ns;
use crate::procfs;
use crate::prometheus;
use crate::publisher::SyntheticPublisher;
use crate::relay_process::{self, RelayProcess};
use crate::report::{self, RunResult, Setup};
use crate::subscriber::{self, MediaLog, ReceiveLog};
use crate::{FanoutArgs, Workload};

pub const BROADCAST: &str = "bench/live";
pub const TRACK: &str = "video";
/// Publishing before the baseline RSS is read, so the relay's start-up is behind it.
const SETTLE: Duration = Duration::from_secs(2);
/// Beyond the lateness threshold, how long objects sent at the end of the window may take.
const GRACE_EXTRA: Duration = Duration::from_millis(500);
/// How long all subscribers may take to connect and subscribe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(args: FanoutArgs, pinning: Pinning) -> anyhow::Result<()> {
    let binary = args
        .relay_bin
        .clone()
        .unwrap_or_else(relay_process::default_binary);
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let setup = Setup::new(&args.workload, &pinning);
    report::print_setup(&setup);
    report::print_header();
    let mut results = Vec::new();
    for &n in &args.subscribers {
        let data_dir = std::env::temp_dir().join(format!("stagecast-bench-{}", std::process::id()));
        let log = args.out_dir.join(format!("relay-n{n}.log"));
        let relay = RelayProcess::start(&binary, &data_dir, log, &pinning)?;
        let result = measure(&args.workload, vec![relay], n).await;
        let _ = std::fs::remove_dir_all(&data_dir);
        let result = result?;
        report::print_row(&result);
        results.push(result);
    }
    println!();
    for result in &results {
        report::print_notes(result);
    }
    let path = args.out_dir.join("fanout.json");
    report::write_json(&path, &setup, &results)?;
    println!("results: {}", path.display());
    Ok(())
}

/// One fan-out measurement with `n` subscribers over `relays` (just started, nothing
/// published yet): the publisher at the first, the subscribers at the last (the same one
/// when there is one; a chain otherwise). CPU, memory and logs are the last relay's.
/// Stops the relays when done.
pub async fn measure(
    workload: &Workload,
    mut relays: Vec<RelayProcess>,
    n: usize,
) -> anyhow::Result<RunResult> {
    let Some(first) = relays.first() else {
        bail!("no relay to measure");
    };
    let publisher = SyntheticPublisher::start(
        first.moqt_url(),
        ClientTrust::pinned_hex(&first.fingerprint)?,
        namespace_from_path(BROADCAST)?,
        TRACK,
        workload.fps,
        workload.object_bytes,
        None,
    )
    .await?;
    let Some(mut relay) = relays.pop() else {
        bail!("no relay to measure");
    };
    let result = measure_edge(workload, &mut relays, &mut relay, &publisher, n).await;
    publisher.stop();
    relay.stop();
    for upper in &mut relays {
        upper.stop();
    }
    result
}

async fn measure_edge(
    workload: &Workload,
    upper: &mut [RelayProcess],
    relay: &mut RelayProcess,
    publisher: &SyntheticPublisher,
    n: usize,
) -> anyhow::Result<RunResult> {
    // Start-up lines are not the run's problems.
    let log_from = relay.log_lines();
    let trust = ClientTrust::pinned_hex(&relay.fingerprint)?;
    let url = relay.moqt_url();
    let namespace = namespace_from_path(BROADCAST)?;
    tokio::time::sleep(SETTLE).await;
    let rss_before = procfs::sample(relay.pid())?.rss_kib;

    // Subscribers: each its own task; the semaphore bounds the handshakes in flight.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(n.max(1));
    let gate = Arc::new(Semaphore::new(workload.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (url, trust, namespace) = (url.clone(), trust.clone(), namespace.clone());
        let (gate, ready, stop) = (gate.clone(), ready_tx.clone(), stop_rx.clone());
        let object_bytes = workload.object_bytes;
        tasks.push(tokio::spawn(async move {
            let connected = {
                let _permit = gate.acquire_owned().await;
                subscribe_when_routed(&url, &trust, &namespace).await
            };
            match connected {
                Ok(subscribed) => {
                    let _ = ready.send(Ok(())).await;
                    let sink = MediaLog::new(object_bytes);
                    let ended = subscribed.receive(sink.clone(), stop).await;
                    Some(sink.take(ended))
                }
                Err(err) => {
                    let _ = ready.send(Err(format!("{err:#}"))).await;
                    None
                }
            }
        }));
    }
    drop(ready_tx);
    let (mut subscribed, mut failures, mut first_error) = (0, 0, None);
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while subscribed + failures < n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => subscribed += 1,
            Ok(Some(Err(err))) => {
                failures += 1;
                first_error.get_or_insert(err);
            }
            Ok(None) => break,
            Err(_) => bail!(
                "N={n}: only {subscribed} of {n} subscribers connected within {CONNECT_TIMEOUT:?}"
            ),
        }
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(workload.warmup)).await;

    // The window.
    let start_ns = now_ns();
    let started = Instant::now();
    let relay_start = procfs::sample(relay.pid())?;
    let own_start = procfs::sample(std::process::id())?;
    let metrics_start = relay.metrics().await.ok();
    let udp_start = procfs::udp_counters();
    let drops_start = procfs::udp_drops_by_port(relay.quic_port);
    let mut rss_series = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for _ in 0..workload.seconds {
        tick.tick().await;
        for node in upper.iter_mut().chain(std::iter::once(&mut *relay)) {
            if !node.is_running() {
                bail!(
                    "N={n}: a relay exited during the run; see {}",
                    node.log.display()
                );
            }
        }
        rss_series.push(procfs::sample(relay.pid())?.rss_kib as f64 / 1024.0);
    }
    let end_ns = now_ns();
    let window_seconds = started.elapsed().as_secs_f64();
    let relay_end = procfs::sample(relay.pid())?;
    let own_end = procfs::sample(std::process::id())?;
    let metrics_end = relay.metrics().await.ok();
    let udp_end = procfs::udp_counters();
    let drops_end = procfs::udp_drops_by_port(relay.quic_port);
    let load_average = procfs::load_average();

    // Let objects sent at the very end arrive, then stop.
    tokio::time::sleep(Duration::from_millis(workload.late_ms) + GRACE_EXTRA).await;
    // What the relay logs from here on is about subscribers and the publisher leaving.
    let log_to = relay.log_lines();
    let _ = stop_tx.send(true);
    let mut logs: Vec<ReceiveLog> = Vec::with_capacity(subscribed);
    for task in tasks {
        if let Ok(Ok(Some(log))) = tokio::time::timeout(Duration::from_secs(10), task).await {
            logs.push(log);
        }
    }
    let (sent_ns, mut lag_us) = publisher.with_log(|log| {
        let lag: Vec<u64> = log
            .sent_ns
            .iter()
            .zip(&log.tick_lag_us)
            .filter(|(&sent, _)| start_ns <= sent && sent < end_ns)
            .map(|(_, &lag)| u64::from(lag))
            .collect();
        (log.sent_ns.clone(), lag)
    });
    let (relay_log_warnings, relay_log_samples) =
        relay_process::log_problems(&relay.log, log_from..log_to, 8);

    let window = Window { start_ns, end_ns };
    let delivery = analysis::delivery(window, &sent_ns, &logs, workload.late_ms * 1_000_000);
    let ticks = procfs::clock_ticks_per_second() as f64;
    let relay_cpu_seconds =
        relay_end.cpu_ticks.saturating_sub(relay_start.cpu_ticks) as f64 / ticks;
    let own_cpu_seconds = own_end.cpu_ticks.saturating_sub(own_start.cpu_ticks) as f64 / ticks;
    let delivered_gb = delivery.objects_delivered as f64 * workload.object_bytes as f64 / 1e9;
    let counter = |name: &str| -> Option<f64> {
        let end = prometheus::value(metrics_end.as_deref()?, name).unwrap_or(0.0);
        Some(end - prometheus::value(metrics_start.as_deref()?, name).unwrap_or(0.0))
    };
    let rss_end_kib = relay_end.rss_kib;
    Ok(RunResult {
        subscribers: n,
        subscribed,
        subscribe_failures: failures,
        subscribe_error: first_error,
        connect_seconds,
        window_seconds,
        delivered_gb,
        relay_cpu_seconds,
        relay_cpu_percent: 100.0 * relay_cpu_seconds / window_seconds,
        relay_cpu_seconds_per_gb: if delivered_gb > 0.0 {
            relay_cpu_seconds / delivered_gb
        } else {
            0.0
        },
        delivered_gbit_per_cpu_second: if relay_cpu_seconds > 0.0 {
            delivered_gb * 8.0 / relay_cpu_seconds
        } else {
            0.0
        },
        relay_rss_before_mib: rss_before as f64 / 1024.0,
        relay_rss_end_mib: rss_end_kib as f64 / 1024.0,
        relay_rss_series_mib: rss_series,
        relay_kib_per_subscriber: (rss_end_kib as f64 - rss_before as f64)
            / subscribed.max(1) as f64,
        relay_objects_out: counter("stagecast_objects_out_total"),
        relay_bytes_out: counter("stagecast_bytes_out_total"),
        relay_groups_dropped: counter("stagecast_groups_dropped_total"),
        udp_receive_buffer_errors: udp_end
            .receive_buffer_errors
            .saturating_sub(udp_start.receive_buffer_errors),
        udp_send_buffer_errors: udp_end
            .send_buffer_errors
            .saturating_sub(udp_start.send_buffer_errors),
        udp_drops_relay_socket: drops_end.0.saturating_sub(drops_start.0),
        udp_drops_other_sockets: drops_end.1.saturating_sub(drops_start.1),
        load_average,
        loadgen_cpu_percent: 100.0 * own_cpu_seconds / window_seconds,
        publisher_lag_ms: Percentiles::of(&mut lag_us, 1e-3),
        relay_log_warnings,
        relay_log_samples,
        delivery,
    })
}

/// Connects and subscribes to the benchmark track, trying again for a few seconds while
/// the relay does not know the track yet (a relay may route the publisher's namespace a
/// moment after accepting it).
pub async fn subscribe_when_routed(
    url: &url::Url,
    trust: &ClientTrust,
    namespace: &moq_transport::coding::TrackNamespace,
) -> anyhow::Result<subscriber::Subscribed> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match subscriber::connect(url, trust, namespace, TRACK).await {
            Ok(subscribed) => return Ok(subscribed),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
