//! `stagecast-bench flood`: a legitimate viewer's join time, and the node's CPU and memory,
//! while a flood of QUIC handshakes arrives (each completed, then left idle without a MoQ
//! SETUP, as a cheap attacker would), with address validation (QUIC Retry for everyone)
//! and without it (Retry only above the default handshake load). The flood comes from
//! 127.0.0.1 and the viewer from ::1; the per-address caps are lifted for the run, so
//! what is measured is the cost of the handshakes themselves.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;

use crate::cpu_pinning::Pinning;
use crate::procfs;
use crate::relay_process::{default_binary, RelayProcess};

#[derive(clap::Args, Debug, Clone)]
pub struct FloodArgs {
    /// Handshakes per second the flood starts (comma-separated: one run each).
    #[arg(long, value_delimiter = ',', default_value = "100,400")]
    pub rates: Vec<u32>,
    /// Seconds each flood lasts.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The node binary (default: target/release/stagecast-relay of this workspace).
    #[arg(long)]
    pub relay_bin: Option<PathBuf>,
    /// Do not pin the node and the load generator to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
}

pub async fn run(args: FloodArgs, pinning: Pinning) -> anyhow::Result<()> {
    let binary = args.relay_bin.clone().unwrap_or_else(default_binary);
    std::fs::create_dir_all(&args.out_dir)?;
    println!("rate/s  validation  handshakes  refused  viewer join ms (median, max)  node CPU %  node RSS MiB");
    for &rate in &args.rates {
        for validate in [false, true] {
            let retry_above = if validate { "0" } else { "32" };
            let dir = args.out_dir.join(format!("flood-{rate}-{validate}"));
            let node_args: Vec<String> = vec![
                "--no-auth".into(),
                "--retry-above".into(),
                retry_above.into(),
                // Idle flood connections are held for the whole run, as the worst case.
                "--setup-timeout".into(),
                "120s".into(),
                "--max-connections-per-address".into(),
                "100000".into(),
                "--max-handshakes-per-address".into(),
                "256".into(),
                "--max-connections".into(),
                "100000".into(),
            ];
            let log = args.out_dir.join(format!("flood-{rate}-{validate}.log"));
            let mut node =
                RelayProcess::start_stagecast(&binary, &dir, &node_args, log, &pinning, "warn")?;
            let port = node.moqt_url().port().unwrap_or_default();
            let flood_url = url::Url::parse(&format!("moqt://127.0.0.1:{port}"))?;
            let viewer_url = url::Url::parse(&format!("moqt://[::1]:{port}"))?;
            let trust = ClientTrust::pinned_hex(&node.fingerprint)?;
            let result = measure(
                &flood_url,
                &viewer_url,
                &trust,
                node.pid(),
                rate,
                args.seconds,
            )
            .await?;
            println!(
                "{rate:>6}  {:>10}  {:>10}  {:>7}  {:>14.1} {:>8.1}  {:>10.1}  {:>12.1}",
                if validate { "Retry" } else { "default" },
                result.handshakes,
                result.refused,
                result.join_median_ms,
                result.join_max_ms,
                result.cpu_percent,
                result.rss_mib
            );
            node.stop();
        }
    }
    Ok(())
}

struct FloodResult {
    handshakes: u64,
    refused: u64,
    join_median_ms: f64,
    join_max_ms: f64,
    cpu_percent: f64,
    rss_mib: f64,
}

async fn measure(
    url: &url::Url,
    viewer_url: &url::Url,
    trust: &ClientTrust,
    pid: u32,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<FloodResult> {
    let flood = ClientEndpoint::new()?;
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let before = procfs::sample(pid)?;
    let started = Instant::now();
    let mut held = tokio::task::JoinSet::new();
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut joins = Vec::new();
    let mut next_join = started;
    while started.elapsed() < Duration::from_secs(seconds) {
        every.tick().await;
        let (flood, to, pin) = (flood.clone(), url.clone(), trust.clone());
        let (done, refused) = (done.clone(), refused.clone());
        held.spawn(async move {
            match flood.connect(&to, &pin).await {
                Ok(session) => {
                    done.fetch_add(1, Ordering::Relaxed);
                    // Held idle until the run ends.
                    tokio::time::sleep(Duration::from_secs(seconds + 1)).await;
                    drop(session);
                }
                Err(_) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        if Instant::now() >= next_join {
            next_join += Duration::from_secs(1);
            let (url, trust) = (viewer_url.clone(), trust.clone());
            joins.push(tokio::spawn(async move {
                let t = Instant::now();
                let joined = crate::subscriber::connect_only(&url, &trust).await;
                joined.map(|c| (t.elapsed(), c))
            }));
        }
    }
    let after = procfs::sample(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut times: Vec<f64> = Vec::new();
    for join in joins {
        if let Ok(Ok((took, connected))) = join.await {
            times.push(took.as_secs_f64() * 1000.0);
            connected.close().await;
        }
    }
    held.abort_all();
    times.sort_by(f64::total_cmp);
    let ticks = procfs::clock_ticks_per_second().max(1) as f64;
    Ok(FloodResult {
        handshakes: done.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        join_median_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        join_max_ms: times.last().copied().unwrap_or(f64::NAN),
        cpu_percent: (after.cpu_ticks.saturating_sub(before.cpu_ticks)) as f64 / ticks / elapsed
            * 100.0,
        rss_mib: after.rss_kib as f64 / 1024.0,
    })
}
