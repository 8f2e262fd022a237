//! The results of a fan-out benchmark: one [`RunResult`] per subscriber count, printed as
//! a table and written as JSON.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::analysis::{Delivery, Percentiles};
use crate::cpu_pinning::Pinning;
use crate::procfs;
use crate::Workload;

/// The machine and settings the figures were measured with.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    pub command: String,
    #[serde(flatten)]
    pub machine: Machine,
    pub pinning: String,
    pub clock_ticks_per_second: u64,
    pub window_seconds: u64,
    pub warmup_seconds: u64,
    pub fps: u32,
    pub object_bytes: usize,
    pub late_ms: u64,
}

/// Figures for one subscriber count.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub subscribers: usize,
    pub subscribed: usize,
    pub subscribe_failures: usize,
    /// First subscribe error, if any failed.
    pub subscribe_error: Option<String>,
    /// How long connecting and subscribing all of them took.
    pub connect_seconds: f64,
    pub window_seconds: f64,
    pub delivery: Delivery,
    /// Payload bytes delivered in the window (objects delivered times object size).
    pub delivered_gb: f64,
    pub relay_cpu_seconds: f64,
    /// Relay CPU time over the window's wall time (100 = one core busy).
    pub relay_cpu_percent: f64,
    pub relay_cpu_seconds_per_gb: f64,
    /// Payload delivered per second of relay CPU time: Gbit/s per busy core.
    pub delivered_gbit_per_cpu_second: f64,
    pub relay_rss_before_mib: f64,
    pub relay_rss_end_mib: f64,
    /// The relay's RSS sampled once a second through the window.
    pub relay_rss_series_mib: Vec<f64>,
    pub relay_kib_per_subscriber: f64,
    /// From the relay's /metrics, over the window (Stagecast relays only).
    pub relay_objects_out: Option<f64>,
    pub relay_bytes_out: Option<f64>,
    pub relay_groups_dropped: Option<f64>,
    /// Load generator (this process) CPU over the window's wall time.
    pub loadgen_cpu_percent: f64,
    /// UDP datagrams dropped for full socket buffers during the window (whole system).
    pub udp_receive_buffer_errors: u64,
    pub udp_send_buffer_errors: u64,
    /// Of those, dropped at the relay's socket and at the others (the load generator's),
    /// counted per socket while the sockets were open.
    pub udp_drops_relay_socket: u64,
    pub udp_drops_other_sockets: u64,
    /// One-minute load average at the window's end (2 = both cores busy).
    pub load_average: f64,
    /// How late the publisher sent its objects after their scheduled time.
    pub publisher_lag_ms: Percentiles,
    pub relay_log_warnings: u64,
    pub relay_log_samples: Vec<(String, u64)>,
}

impl Setup {
    pub fn new(workload: &Workload, pinning: &Pinning) -> Self {
        Self {
            command: command_line(),
            machine: Machine::now(),
            pinning: pinning.describe(),
            clock_ticks_per_second: procfs::clock_ticks_per_second(),
            window_seconds: workload.seconds,
            warmup_seconds: workload.warmup,
            fps: workload.fps,
            object_bytes: workload.object_bytes,
            late_ms: workload.late_ms,
        }
    }
}

/// The machine a run was measured on, and what else it was doing.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    /// One-minute load average when the run started (2 = both cores busy).
    pub load_average_at_start: f64,
    /// The checkout's commit, with `-dirty` when it had uncommitted changes.
    pub revision: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
}

impl Machine {
    pub fn now() -> Self {
        let (cpus, cpu_model) = procfs::cpus();
        Self {
            cpus,
            cpu_model,
            memory_gib: procfs::memory_kib() as f64 / (1024.0 * 1024.0),
            load_average_at_start: procfs::load_average(),
            revision: revision(),
            started_unix: crate::payload::now_ns() / 1_000_000_000,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} CPU(s), {}, {:.0} GiB; load average {:.2} at start; revision {}",
            self.cpus, self.cpu_model, self.memory_gib, self.load_average_at_start, self.revision
        )
    }
}

/// This process's command line, as run.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// `git describe --always --dirty` of the workspace, or "unknown".
fn revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "unknown".to_string(), |s| s.trim().to_string())
}

pub fn print_setup(setup: &Setup) {
    println!("machine: {}; {}", setup.machine.describe(), setup.pinning);
    println!(
        "track: {} objects/s of {} bytes ({:.2} Mbit/s), one group per second; window {} s after {} s warm-up",
        setup.fps,
        setup.object_bytes,
        f64::from(setup.fps) * setup.object_bytes as f64 * 8.0 / 1e6,
        setup.window_seconds,
        setup.warmup_seconds
    );
}

const HEADER: &str = "    N  subscribed  delivered GB  relay CPU s  CPU s/GB  relay CPU%  missing     late  p50 ms  p99 ms  max ms  RSS before MiB  RSS end MiB  KiB/sub  groups dropped  loadgen CPU%  pub lag p99 ms";

pub fn print_header() {
    println!("{HEADER}");
}

pub fn print_row(r: &RunResult) {
    let d = &r.delivery;
    println!(
        "{:>5}  {:>10}  {:>12.3}  {:>11.2}  {:>8.2}  {:>10.1}  {:>7}  {:>7}  {:>6.1}  {:>6.1}  {:>6.1}  {:>14.1}  {:>11.1}  {:>7.0}  {:>14}  {:>12.1}  {:>14.1}",
        r.subscribers,
        r.subscribed,
        r.delivered_gb,
        r.relay_cpu_seconds,
        r.relay_cpu_seconds_per_gb,
        r.relay_cpu_percent,
        d.objects_missing,
        d.objects_late,
        d.latency_ms.p50,
        d.latency_ms.p99,
        d.latency_ms.max,
        r.relay_rss_before_mib,
        r.relay_rss_end_mib,
        r.relay_kib_per_subscriber,
        r.relay_groups_dropped.map_or_else(|| "-".to_string(), |v| v.to_string()),
        r.loadgen_cpu_percent,
        r.publisher_lag_ms.p99,
    );
}

/// Details worth reading under the table: anything that went wrong.
pub fn print_notes(r: &RunResult) {
    let d = &r.delivery;
    let n = r.subscribers;
    if r.subscribe_failures > 0 {
        println!(
            "  N={n}: {} subscribe(s) failed; first: {}",
            r.subscribe_failures,
            r.subscribe_error.as_deref().unwrap_or("?")
        );
    }
    if d.subscriptions_ended_early + d.objects_duplicate + d.objects_wrong_size + d.groups_cut > 0 {
        println!(
            "  N={n}: {} subscription(s) ended early, {} duplicate and {} wrong-size objects, {} groups cut, {} groups with gaps",
            d.subscriptions_ended_early,
            d.objects_duplicate,
            d.objects_wrong_size,
            d.groups_cut,
            d.groups_with_gaps
        );
    }
    if let (Some(objects), Some(bytes)) = (r.relay_objects_out, r.relay_bytes_out) {
        println!(
            "  N={n}: relay /metrics over the window: {objects:.0} objects, {:.3} GB out",
            bytes / 1e9
        );
    }
    println!(
        "  N={n}: connected in {:.1} s; UDP buffer drops: {} receive ({} at the relay's socket, {} at the load generator's), {} send; load average {:.2}",
        r.connect_seconds,
        r.udp_receive_buffer_errors,
        r.udp_drops_relay_socket,
        r.udp_drops_other_sockets,
        r.udp_send_buffer_errors,
        r.load_average
    );
    if r.relay_log_warnings > 0 {
        println!(
            "  N={n}: the relay logged {} warning/error lines; most frequent:",
            r.relay_log_warnings
        );
        for (message, count) in &r.relay_log_samples {
            println!("    {count:>6} x {message}");
        }
    }
}

pub fn write_json(path: &Path, setup: &Setup, results: &[RunResult]) -> anyhow::Result<()> {
    let json = serde_json::json!({ "setup": setup, "results": results });
    std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}
