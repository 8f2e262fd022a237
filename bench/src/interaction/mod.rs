//! The interaction benchmark (`stagecast-bench interaction`): a real origin and one relay
//! under it (`deployment.rs`), then
//! 1. chat latency to N subscribers of the `interaction` track through the relay, for
//!    each N asked for (`latency.rs`);
//! 2. how many chat messages, then reactions, per second the origin accepts and publishes
//!    with many viewers sending at once (`throughput.rs`).
//!
//! Results go to `interaction.json` in the output directory, with the machine and its
//! load average, since the machine is shared and figures from a busy one are noisy.

mod deployment;
mod latency;
mod probe;
mod throughput;
mod users;

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::cpu_pinning::Pinning;
use crate::report::{command_line, Machine};
use deployment::Deployment;
use latency::{LatencyParams, LatencyResult};
use throughput::{Load, ThroughputResult};

#[derive(clap::Args, Debug, Clone)]
pub struct InteractionArgs {
    /// Subscriber counts of the latency measurement, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,1000")]
    pub subscribers: Vec<usize>,
    /// Chat messages per second sent during the latency measurement.
    #[arg(long, default_value_t = 10.0)]
    pub messages_per_second: f64,
    /// Length of each latency measurement, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Viewers sending their 5 allowed chat messages at once (0: skip).
    #[arg(long, default_value_t = 4000)]
    pub chat_users: usize,
    /// Viewers sending reactions as fast as allowed (0: skip).
    #[arg(long, default_value_t = 3000)]
    pub reaction_users: usize,
    /// How long the reaction senders send, in seconds.
    #[arg(long, default_value_t = 10)]
    pub reaction_seconds: u64,
    /// Connect the throughput senders at the relay instead of the origin.
    #[arg(long)]
    pub senders_via_relay: bool,
    /// Subscribers connecting at the same time while the set is built.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Do not pin the nodes and the load generator to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Where to write the results (JSON) and the nodes' logs.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
}

#[derive(Serialize)]
struct Results<'a> {
    command: String,
    #[serde(flatten)]
    machine: Machine,
    pinning: String,
    messages_per_second: f64,
    seconds: u64,
    latency: &'a [LatencyResult],
    throughput: &'a [ThroughputResult],
}

pub async fn run(args: InteractionArgs, pinning: Pinning) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let machine = Machine::now();
    println!("machine: {}; {}", machine.describe(), pinning.describe());
    let dir = args.out_dir.join("interaction");
    let mut deployment = Deployment::start(&dir, &pinning).await?;
    let outcome = measure(&args, &mut deployment).await;
    deployment.stop();
    let (latency, throughput) = outcome?;
    let results = Results {
        command: command_line(),
        machine,
        pinning: pinning.describe(),
        messages_per_second: args.messages_per_second,
        seconds: args.seconds,
        latency: &latency,
        throughput: &throughput,
    };
    let path = args.out_dir.join("interaction.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("results: {} (logs in {})", path.display(), dir.display());
    Ok(())
}

async fn measure(
    args: &InteractionArgs,
    deployment: &mut Deployment,
) -> anyhow::Result<(Vec<LatencyResult>, Vec<ThroughputResult>)> {
    let mut latency = Vec::new();
    println!(
        "chat latency through one relay, {} messages/s for {} s:",
        args.messages_per_second, args.seconds
    );
    println!("  subscribers  accepted  delivered  missing  latency p50/p90/p99/max ms   to all p50/p99 ms  answer p50/p99 ms  origin CPU%  relay CPU%  loadgen CPU%  load");
    for (step, &subscribers) in args.subscribers.iter().enumerate() {
        let params = LatencyParams {
            subscribers,
            messages_per_second: args.messages_per_second,
            seconds: args.seconds,
            connect_concurrency: args.connect_concurrency,
        };
        let r = latency::run(deployment, &params, step).await?;
        println!(
            "  {:>11}  {:>8}  {:>9}  {:>7}  {:>6.1} {:>6.1} {:>6.1} {:>7.1}   {:>7.1} {:>7.1}    {:>6.1} {:>6.1}   {:>10.1}  {:>10.1}  {:>12.1}  {:.2}",
            r.subscribed,
            r.messages_accepted,
            r.deliveries,
            r.deliveries_missing,
            r.delivery_ms.p50,
            r.delivery_ms.p90,
            r.delivery_ms.p99,
            r.delivery_ms.max,
            r.delivery_to_all_ms.p50,
            r.delivery_to_all_ms.p99,
            r.answer_ms.p50,
            r.answer_ms.p99,
            r.origin_cpu_percent,
            r.relay_cpu_percent,
            r.loadgen_cpu_percent,
            r.load_average
        );
        latency.push(r);
    }
    let mut throughput = Vec::new();
    let phases = [
        (Load::Chat, args.chat_users, 0, "chat"),
        (
            Load::Reactions,
            args.reaction_users,
            args.reaction_seconds,
            "react",
        ),
    ];
    println!(
        "origin throughput (senders connected at the {}):",
        if args.senders_via_relay {
            "relay"
        } else {
            "origin"
        }
    );
    for (load, users, seconds, tag) in phases {
        if users == 0 {
            continue;
        }
        let r = throughput::run(
            deployment,
            load,
            users,
            seconds,
            tag,
            args.senders_via_relay,
        )
        .await?;
        println!(
            "  {:?}: {} users on {} connections: {} accepted in {:.2} s = {:.0}/s, peak {}/s (per second: {:?}); rejected {:?}, failed {}; answer p50/p99 {:.1}/{:.1} ms; origin CPU {:.0}%, up to {} origin threads, load generator CPU {:.0}%, load average {:.2} -> {:.2}",
            r.load,
            r.users,
            r.connections,
            r.accepted,
            r.busy_seconds,
            r.accepted_per_second,
            r.peak_accepted_per_second,
            r.accepted_per_second_series,
            r.rejected,
            r.failed,
            r.answer_ms.p50,
            r.answer_ms.p99,
            r.origin_cpu_percent,
            r.origin_threads_max,
            r.loadgen_cpu_percent,
            r.load_average_at_start,
            r.load_average
        );
        for (at, seen, dropped) in [
            ("origin", &r.seen_at_origin, r.origin_groups_dropped),
            ("relay", &r.seen_at_relay, r.relay_groups_dropped),
        ] {
            println!(
                "    watcher at the {at}: events {:?}, reactions counted {}, chat events {:.0}/s; groups dropped there {:?}",
                seen.events, seen.reactions_counted, seen.chat_events_per_second, dropped
            );
        }
        throughput.push(r);
    }
    Ok((latency, throughput))
}
