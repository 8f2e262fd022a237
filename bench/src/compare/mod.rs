//! The side-by-side benchmark (`stagecast-bench compare`): one workload, one harness, each
//! relay in turn (`relays.rs`), in one run on one machine:
//!
//! - fan-out: N subscribers stepped up, a fresh relay for each N, until the relay falls
//!   behind (more than 1% of objects later than the lateness threshold, or missing);
//! - chain: a few subscribers through 1, 2 and 3 relays of the same kind, for the latency
//!   each hop adds;
//! - join: SUBSCRIBE to the first object of a group, with a warm cache (`join.rs`).
//!
//! Results go to `compare.json` and a chart, `compare.png` (`chart.rs`).

pub(crate) mod chart;
mod join;

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::cpu_pinning::Pinning;
use crate::fanout;
use crate::relays::{self, RelayKind};
use crate::report::{command_line, Machine, RunResult};
use crate::Workload;
use join::JoinResult;

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Relays to compare (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = RelayKind::ALL.to_vec(), value_enum)]
    pub relays: Vec<RelayKind>,
    /// Subscriber counts of the fan-out steps; a relay's steps stop after the first it
    /// falls behind at.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,400,800")]
    pub steps: Vec<usize>,
    /// Subscribers of the chain measurement.
    #[arg(long, default_value_t = 10)]
    pub chain_subscribers: usize,
    /// Longest chain measured (1 to this many relays).
    #[arg(long, default_value_t = 3)]
    pub chain_hops: usize,
    /// Joins measured per relay.
    #[arg(long, default_value_t = 20)]
    pub joins: usize,
    /// Runs of each fan-out step and chain length per relay; the least disturbed counts.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Which measurements to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![Part::Fanout, Part::Chain, Part::Join], value_enum)]
    pub parts: Vec<Part>,
    #[command(flatten)]
    pub workload: Workload,
    /// Where the independent relays are installed.
    #[arg(long, default_value_os_t = relays::default_peers_dir())]
    pub peers_dir: PathBuf,
    /// Do not pin the relays and the load generator to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Where to write the results (JSON, PNG) and the relays' logs.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
    /// Draw the chart of an earlier run's JSON instead of measuring.
    #[arg(long)]
    pub chart_only: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Fanout,
    Chain,
    Join,
}

/// One fan-out step of one relay.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct FanoutStep {
    #[serde(flatten)]
    pub result: serde_json::Value,
    /// Under 1% of the expected objects late or missing, every subscriber subscribed.
    pub keeps_up: bool,
    /// Every run of this step (`result` is the best of them).
    #[serde(default)]
    pub repeats: Vec<serde_json::Value>,
}

/// One chain length of one relay.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ChainStep {
    pub relays: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub missing: u64,
    pub load_average: f64,
}

/// Everything measured of one relay.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct RelayResults {
    pub relay: String,
    /// Highest N at which the relay kept up (`null`: not even the first step).
    pub highest_n_keeping_up: Option<usize>,
    /// Payload Gbit/s delivered per relay CPU core, at the highest N it kept up with.
    pub gbit_per_core: Option<f64>,
    /// End-to-end latency at the first step, ms (publisher stamp to subscriber read).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Relay RSS growth per subscriber at the highest N it kept up with, KiB.
    pub kib_per_subscriber: Option<f64>,
    pub fanout: Vec<FanoutStep>,
    pub chain: Vec<ChainStep>,
    /// Latency added per hop: (latency through the longest chain - through one relay) /
    /// (relays - 1), p50, ms.
    pub added_ms_per_hop_p50: Option<f64>,
    pub join: Option<serde_json::Value>,
    /// Why a part could not be measured, if one could not.
    pub errors: Vec<String>,
}

#[derive(Serialize, serde::Deserialize)]
pub struct CompareResults {
    pub command: String,
    pub machine: serde_json::Value,
    pub pinning: String,
    pub workload: serde_json::Value,
    pub relays: Vec<RelayResults>,
    /// Every relay at the largest N all of them kept up with.
    #[serde(default)]
    pub common: Option<CommonStep>,
}

pub async fn run(args: CompareArgs, pinning: Pinning) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    if let Some(json) = &args.chart_only {
        let text = std::fs::read_to_string(json)
            .with_context(|| format!("cannot read {}", json.display()))?;
        let mut results: CompareResults = serde_json::from_str(&text)?;
        results.common = common_step(&results.relays);
        print_summary(&results);
        let png = args.out_dir.join("compare.png");
        chart::draw(&results, &png)?;
        println!("chart: {}", png.display());
        return Ok(());
    }
    relays::check_installed(&args.relays, &args.peers_dir)?;
    let machine = Machine::now();
    println!("machine: {}; {}", machine.describe(), pinning.describe());
    let setup = crate::report::Setup::new(&args.workload, &pinning);
    let mut all: Vec<RelayResults> = args
        .relays
        .iter()
        .map(|kind| RelayResults {
            relay: kind.name().to_string(),
            ..Default::default()
        })
        .collect();
    for kind in &args.relays {
        std::fs::create_dir_all(relay_dir(&args, *kind))?;
    }
    if args.parts.contains(&Part::Fanout) {
        fanout_steps(&args, &pinning, &mut all).await;
    }
    if args.parts.contains(&Part::Chain) {
        chain_steps(&args, &pinning, &mut all).await;
    }
    if args.parts.contains(&Part::Join) {
        println!("join, {} per relay:", args.joins);
        for (kind, results) in args.relays.iter().zip(all.iter_mut()) {
            let outcome = async {
                let relay = kind.start(
                    &args.peers_dir,
                    &relay_dir(&args, *kind),
                    "join",
                    None,
                    &pinning,
                )?;
                join::measure(&args.workload, relay, args.joins).await
            }
            .await;
            match outcome {
                Ok(join) => {
                    print_join(kind.name(), &join);
                    results.join = Some(serde_json::to_value(&join)?);
                }
                Err(err) => note_error(results, "join", &err),
            }
        }
    }
    let results = CompareResults {
        command: command_line(),
        machine: serde_json::to_value(&machine)?,
        pinning: pinning.describe(),
        workload: serde_json::to_value(&setup)?,
        common: common_step(&all),
        relays: all,
    };
    let json = args.out_dir.join("compare.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("cannot write {}", json.display()))?;
    print_summary(&results);
    let png = args.out_dir.join("compare.png");
    chart::draw(&results, &png)?;
    println!("results: {}; chart: {}", json.display(), png.display());
    Ok(())
}

/// Where a relay's files and logs go.
fn relay_dir(args: &CompareArgs, kind: RelayKind) -> PathBuf {
    args.out_dir.join("compare").join(kind.name())
}

fn note_error(results: &mut RelayResults, part: &str, err: &anyhow::Error) {
    println!("  {} {part}: could not measure: {err:#}", results.relay);
    results.errors.push(format!("{part}: {err:#}"));
}

/// Fan-out, step by step; within a step the relays take turns (and each repeats), so
/// the relays compared at one N were measured minutes apart at most, under the same
/// background load. A relay's steps stop after the first it falls behind at.
async fn fanout_steps(args: &CompareArgs, pinning: &Pinning, all: &mut [RelayResults]) {
    let mut done = vec![false; args.relays.len()];
    for &n in &args.steps {
        println!("fan-out, N={n}:");
        print!("{:<16}", "relay");
        crate::report::print_header();
        for (i, kind) in args.relays.iter().enumerate() {
            if done[i] {
                continue;
            }
            let mut runs = Vec::new();
            for repeat in 0..args.repeat.max(1) {
                let outcome = async {
                    let name = format!("fanout-n{n}-{repeat}");
                    let relay = kind.start(
                        &args.peers_dir,
                        &relay_dir(args, *kind),
                        &name,
                        None,
                        pinning,
                    )?;
                    fanout::measure(&args.workload, vec![relay], n).await
                }
                .await;
                match outcome {
                    Ok(run) => {
                        print!("{:<16}", kind.name());
                        crate::report::print_row(&run);
                        runs.push(run);
                    }
                    Err(err) => note_error(&mut all[i], &format!("fan-out N={n}"), &err),
                }
            }
            let Some(best) = best_run(&runs) else {
                done[i] = true;
                continue;
            };
            let results = &mut all[i];
            let keeps_up = keeps_up(best);
            if results.latency_p50_ms.is_none() {
                results.latency_p50_ms = Some(best.delivery.latency_ms.p50);
                results.latency_p99_ms = Some(best.delivery.latency_ms.p99);
            }
            if keeps_up {
                results.highest_n_keeping_up = Some(n);
                results.gbit_per_core = Some(best.delivered_gbit_per_cpu_second);
                results.kib_per_subscriber = Some(best.relay_kib_per_subscriber);
            } else {
                crate::report::print_notes(best);
                done[i] = true;
            }
            results.fanout.push(FanoutStep {
                result: serde_json::to_value(best).unwrap_or_default(),
                keeps_up,
                repeats: runs
                    .iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect(),
            });
        }
    }
}

/// Of repeated runs, the one least disturbed by the rest of the machine: the one that
/// kept up with the least relay CPU per gigabyte, else the one with the fewest late or
/// missing objects.
fn best_run(runs: &[RunResult]) -> Option<&RunResult> {
    let kept: Vec<&RunResult> = runs.iter().filter(|r| keeps_up(r)).collect();
    if kept.is_empty() {
        runs.iter()
            .min_by_key(|r| r.delivery.objects_late + r.delivery.objects_missing)
    } else {
        kept.into_iter().max_by(|a, b| {
            a.delivered_gbit_per_cpu_second
                .total_cmp(&b.delivered_gbit_per_cpu_second)
        })
    }
}

/// Under 1% of the expected objects late or missing, and every subscriber subscribed.
fn keeps_up(run: &RunResult) -> bool {
    let d = &run.delivery;
    let expected = d.objects_expected.max(1) as f64;
    run.subscribe_failures == 0
        && run.subscribed == run.subscribers
        && (d.objects_late + d.objects_missing) as f64 / expected < 0.01
}

/// Chains of 1.. relays of one kind; per length the relays take turns (and repeat; the
/// run with the fewest missing objects, then the lowest median latency, counts).
async fn chain_steps(args: &CompareArgs, pinning: &Pinning, all: &mut [RelayResults]) {
    let mut done = vec![false; args.relays.len()];
    for hops in 1..=args.chain_hops.max(1) {
        println!(
            "chain of {hops}, {} subscribers at the last relay:",
            args.chain_subscribers
        );
        for (i, kind) in args.relays.iter().enumerate() {
            if done[i] {
                continue;
            }
            let mut best: Option<ChainStep> = None;
            for repeat in 0..args.repeat.max(1) {
                let outcome = async {
                    let mut chain = Vec::with_capacity(hops);
                    for r in 0..hops {
                        let relay = kind.start(
                            &args.peers_dir,
                            &relay_dir(args, *kind),
                            &format!("chain{hops}-{repeat}-relay{r}"),
                            chain.last(),
                            pinning,
                        )?;
                        chain.push(relay);
                    }
                    fanout::measure(&args.workload, chain, args.chain_subscribers).await
                }
                .await;
                match outcome {
                    Ok(run) => {
                        let d = &run.delivery;
                        println!(
                            "  {:<16} latency p50 {:.2} ms, p99 {:.2} ms, {} missing, {} late (load average {:.2})",
                            kind.name(), d.latency_ms.p50, d.latency_ms.p99, d.objects_missing, d.objects_late, run.load_average
                        );
                        let step = ChainStep {
                            relays: hops,
                            latency_p50_ms: d.latency_ms.p50,
                            latency_p99_ms: d.latency_ms.p99,
                            missing: d.objects_missing,
                            load_average: run.load_average,
                        };
                        // A run that lost objects does not stand for the chain's latency.
                        let better = best.as_ref().is_none_or(|b| {
                            (step.missing, step.latency_p50_ms) < (b.missing, b.latency_p50_ms)
                        });
                        if better {
                            best = Some(step);
                        }
                    }
                    Err(err) => note_error(&mut all[i], &format!("chain of {hops}"), &err),
                }
            }
            match best {
                Some(step) => all[i].chain.push(step),
                None => done[i] = true,
            }
        }
    }
    for results in all.iter_mut() {
        if let (Some(one), Some(longest)) = (results.chain.first(), results.chain.last()) {
            if longest.relays > 1 {
                results.added_ms_per_hop_p50 = Some(
                    (longest.latency_p50_ms - one.latency_p50_ms) / (longest.relays - 1) as f64,
                );
            }
        }
    }
}

fn print_join(relay: &str, join: &JoinResult) {
    println!(
        "  {relay:<16} {} joins, {} failed: SUBSCRIBE to a group's first object p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms; {} joined mid-group (load average {:.2})",
        join.joins,
        join.failed,
        join.join_ms.p50,
        join.join_ms.p90,
        join.join_ms.max,
        join.joined_mid_group,
        join.load_average
    );
}

/// The summary tables: each relay's own figures, then all relays at the largest N every
/// one of them kept up with, as ratios to the first relay.
fn print_summary(results: &CompareResults) {
    println!();
    println!("relay              highest N   Gbit/s per core   first-step e2e p50/p99 ms   KiB/sub   added ms/hop   join p50 ms");
    for r in &results.relays {
        let join_p50 = r
            .join
            .as_ref()
            .and_then(|j| j.pointer("/join_ms/p50"))
            .and_then(|v| v.as_f64());
        println!(
            "{:<18} {:>9}   {:>15}   {:>25}   {:>7}   {:>12}   {:>11}",
            r.relay,
            r.highest_n_keeping_up.map_or("-".into(), |n| n.to_string()),
            r.gbit_per_core.map_or("-".into(), |v| format!("{v:.3}")),
            match (r.latency_p50_ms, r.latency_p99_ms) {
                (Some(a), Some(b)) => format!("{a:.1}/{b:.1}"),
                _ => "-".into(),
            },
            r.kib_per_subscriber
                .map_or("-".into(), |v| format!("{v:.0}")),
            r.added_ms_per_hop_p50
                .map_or("-".into(), |v| format!("{v:.2}")),
            join_p50.map_or("-".into(), |v| format!("{v:.1}")),
        );
    }
    let Some(common) = &results.common else {
        return;
    };
    println!();
    println!(
        "at N={}, the largest N every relay kept up with (ratios: the first relay's figure over this one's, >1 = the first relay is better):",
        common.subscribers
    );
    println!("relay              Gbit/s per core   ratio   e2e p50 ms   ratio   e2e p99 ms   ratio   KiB/sub   ratio");
    let Some(first) = common.relays.first() else {
        return;
    };
    for r in &common.relays {
        println!(
            "{:<18} {:>15.3}   {:>5.2}   {:>10.1}   {:>5.2}   {:>10.1}   {:>5.2}   {:>7.0}   {:>5.2}",
            r.relay,
            r.gbit_per_core,
            first.gbit_per_core / r.gbit_per_core.max(1e-9),
            r.latency_p50_ms,
            r.latency_p50_ms / first.latency_p50_ms.max(1e-9),
            r.latency_p99_ms,
            r.latency_p99_ms / first.latency_p99_ms.max(1e-9),
            r.kib_per_subscriber,
            r.kib_per_subscriber / first.kib_per_subscriber.max(1e-9),
        );
    }
}

/// Every relay at one N.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CommonStep {
    pub subscribers: usize,
    pub relays: Vec<CommonFigures>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CommonFigures {
    pub relay: String,
    pub gbit_per_core: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub kib_per_subscriber: f64,
}

/// The largest step every relay kept up at, with each relay's figures there.
fn common_step(relays: &[RelayResults]) -> Option<CommonStep> {
    let number = |v: &serde_json::Value, pointer: &str| v.pointer(pointer).and_then(|x| x.as_f64());
    let kept = |r: &RelayResults| -> Vec<usize> {
        r.fanout
            .iter()
            .filter(|s| s.keeps_up)
            .filter_map(|s| number(&s.result, "/subscribers").map(|n| n as usize))
            .collect()
    };
    let first = kept(relays.first()?);
    let n = first
        .into_iter()
        .filter(|n| relays.iter().all(|r| kept(r).contains(n)))
        .max()?;
    let figures = relays
        .iter()
        .map(|r| {
            let step = r
                .fanout
                .iter()
                .find(|s| number(&s.result, "/subscribers") == Some(n as f64))?;
            Some(CommonFigures {
                relay: r.relay.clone(),
                gbit_per_core: number(&step.result, "/delivered_gbit_per_cpu_second")?,
                latency_p50_ms: number(&step.result, "/delivery/latency_ms/p50")?,
                latency_p99_ms: number(&step.result, "/delivery/latency_ms/p99")?,
                kib_per_subscriber: number(&step.result, "/relay_kib_per_subscriber")?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(CommonStep {
        subscribers: n,
        relays: figures,
    })
}
