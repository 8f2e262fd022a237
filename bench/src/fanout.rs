//! The fan-out benchmark: for each subscriber count N, a fresh relay, one publisher and N
//! subscribers, measured over a fixed window.
//!
//! One run, in order:
//! 1. start `stagecast-relay` (pinned to its CPU), start the publisher, let it run 2 s,
//!    read the relay's RSS (the baseline);
//! 2. connect and subscribe N subscribers, a bounded number at a time;
//! 3. warm up, then measure: relay CPU time and RSS, this process's CPU time, the relay's
//!    /metrics counters, at the window's start and end, RSS once a second in between;
//! 4. a grace period for objects sent at the end of the window, then stop everything
//!    and work out delivery figures from what was sent and received (`analysis.rs`).

use std::path::Path;
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
use crate::subscriber::{self, ReceiveLog};
use crate::FanoutArgs;

const BROADCAST: &str = "bench/live";
const TRACK: &str = "video";
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
    let (cpus, cpu_model) = procfs::cpus();
    let setup = Setup {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cpus,
        cpu_model,
        pinning: pinning.describe(),
        clock_ticks_per_second: procfs::clock_ticks_per_second(),
        window_seconds: args.seconds,
        warmup_seconds: args.warmup,
        fps: args.fps,
        object_bytes: args.object_bytes,
        late_ms: args.late_ms,
    };
    report::print_setup(&setup);
    report::print_header();
    let mut results = Vec::new();
    for &n in &args.subscribers {
        let result = run_one(&args, &setup, &pinning, &binary, n).await?;
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

async fn run_one(
    args: &FanoutArgs,
    setup: &Setup,
    pinning: &Pinning,
    binary: &Path,
    n: usize,
) -> anyhow::Result<RunResult> {
    let data_dir = std::env::temp_dir().join(format!("stagecast-bench-{}", std::process::id()));
    let log = args.out_dir.join(format!("relay-n{n}.log"));
    let mut relay = RelayProcess::start(binary, &data_dir, log, pinning)?;
    // Start-up lines (the "authorization is off" warning) are not the run's problems.
    let log_from = relay.log_lines();
    let trust = ClientTrust::pinned_hex(&relay.fingerprint)?;
    let url = relay.moqt_url();
    let namespace = namespace_from_path(BROADCAST)?;
    let publisher = SyntheticPublisher::start(
        url.clone(),
        trust.clone(),
        namespace.clone(),
        TRACK,
        args.fps,
        args.object_bytes,
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let rss_before = procfs::sample(relay.pid())?.rss_kib;

    // Subscribers: each its own task; the semaphore bounds the handshakes in flight.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(n.max(1));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (url, trust, namespace) = (url.clone(), trust.clone(), namespace.clone());
        let (gate, ready, stop) = (gate.clone(), ready_tx.clone(), stop_rx.clone());
        let object_bytes = args.object_bytes;
        tasks.push(tokio::spawn(async move {
            let connected = {
                let _permit = gate.acquire_owned().await;
                subscriber::connect(&url, &trust, &namespace, TRACK).await
            };
            match connected {
                Ok(subscribed) => {
                    let _ = ready.send(Ok(())).await;
                    Some(subscribed.receive(object_bytes, stop).await)
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
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    // The window.
    let start_ns = now_ns();
    let started = Instant::now();
    let relay_start = procfs::sample(relay.pid())?;
    let own_start = procfs::sample(std::process::id())?;
    let metrics_start = relay.metrics().await?;
    let udp_start = procfs::udp_counters();
    let drops_start = procfs::udp_drops_by_port(relay.quic_port);
    let mut rss_series = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for _ in 0..args.seconds {
        tick.tick().await;
        if !relay.is_running() {
            bail!(
                "N={n}: the relay exited during the run; see {}",
                relay.log.display()
            );
        }
        rss_series.push(procfs::sample(relay.pid())?.rss_kib as f64 / 1024.0);
    }
    let end_ns = now_ns();
    let window_seconds = started.elapsed().as_secs_f64();
    let relay_end = procfs::sample(relay.pid())?;
    let own_end = procfs::sample(std::process::id())?;
    let metrics_end = relay.metrics().await?;
    let udp_end = procfs::udp_counters();
    let drops_end = procfs::udp_drops_by_port(relay.quic_port);
    let load_average = procfs::load_average();

    // Let objects sent at the very end arrive, then stop.
    tokio::time::sleep(Duration::from_millis(args.late_ms) + GRACE_EXTRA).await;
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
        let in_window = |&(sent, _): &(u64, u32)| start_ns <= sent && sent < end_ns;
        let pairs: Vec<(u64, u32)> = log
            .sent_ns
            .iter()
            .copied()
            .zip(log.tick_lag_us.iter().copied())
            .collect();
        let lag: Vec<u64> = pairs
            .iter()
            .filter(|p| in_window(p))
            .map(|&(_, lag)| u64::from(lag))
            .collect();
        (log.sent_ns.clone(), lag)
    });
    publisher.stop();
    relay.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
    let (relay_log_warnings, relay_log_samples) =
        relay_process::log_problems(&relay.log, log_from..log_to, 8);

    let window = Window { start_ns, end_ns };
    let delivery = analysis::delivery(window, &sent_ns, &logs, args.late_ms * 1_000_000);
    let ticks = setup.clock_ticks_per_second as f64;
    let relay_cpu_seconds =
        relay_end.cpu_ticks.saturating_sub(relay_start.cpu_ticks) as f64 / ticks;
    let own_cpu_seconds = own_end.cpu_ticks.saturating_sub(own_start.cpu_ticks) as f64 / ticks;
    let delivered_gb = delivery.objects_delivered as f64 * args.object_bytes as f64 / 1e9;
    let counter = |name: &str| {
        let end = prometheus::value(&metrics_end, name).unwrap_or(0.0);
        end - prometheus::value(&metrics_start, name).unwrap_or(0.0)
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
