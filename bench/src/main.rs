//! `stagecast-bench`: benchmarks of Stagecast's relay and origin.
//!
//! - `fanout` starts the real `stagecast-relay` binary, publishes one synthetic live track
//!   to it from this process, connects N subscribers over loopback and reports, for each
//!   N, the relay's CPU per delivered gigabyte, objects missing or late, end-to-end latency
//!   and the relay's memory per subscriber (`fanout.rs`);
//! - `interaction` starts a real origin and a relay under it and measures chat latency to
//!   many subscribers and the origin's request throughput (`interaction/`);
//! - `compare` drives `stagecast-relay`, `moq-relay-ietf` and `moq-relay` with the same
//!   workload: fan-out stepped up until a relay falls behind, chains, joins (`compare/`);
//! - `flood`: a viewer's join time under a flood of handshakes (`flood.rs`);
//! - `network`: the viewer in Chromium behind slow, distant and lossy links, a ladder
//!   and one rendition side by side (`network.rs`, `bench/network/cell.mjs`).
//!
//! Figures and commands: `docs/benchmarks.md`.

mod analysis;
mod compare;
mod cpu_pinning;
mod fanout;
mod flood;
mod interaction;
mod network;
mod network_chart;
mod payload;
mod procfs;
mod prometheus;
mod publisher;
mod relay_process;
mod relays;
mod report;
mod subscriber;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of the Stagecast relay and origin")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One relay, one 30 fps ~3 Mbit/s track, N subscribers over loopback.
    Fanout(FanoutArgs),
    /// Chat latency to many subscribers through a relay, and the origin's request rate.
    Interaction(interaction::InteractionArgs),
    /// stagecast-relay, moq-relay-ietf and moq-relay side by side: fan-out, chains, joins.
    Compare(compare::CompareArgs),
    /// A viewer's join time and the node's CPU and memory under a flood of handshakes,
    /// with and without address validation.
    Flood(flood::FloodArgs),
    /// The viewer in Chromium behind slow, distant and lossy links: a ladder and one
    /// rendition over a grid of link rate, round trip and loss.
    Network(network::NetworkArgs),
}

/// The synthetic live track and how a fan-out run is measured.
#[derive(clap::Args, Debug, Clone)]
pub struct Workload {
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of delivery to every subscriber before the window starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Objects per second (one group per second of objects).
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Bytes per object (12500 at 30 fps is 3 Mbit/s).
    #[arg(long, default_value_t = 12_500)]
    pub object_bytes: usize,
    /// An object received later than this after it was sent counts as late.
    #[arg(long, default_value_t = 500)]
    pub late_ms: u64,
    /// Subscribers connecting at the same time while the set is built.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Subscriber counts to measure, one fresh relay each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,100,500")]
    pub subscribers: Vec<usize>,
    #[command(flatten)]
    pub workload: Workload,
    /// The relay binary (default: target/release/stagecast-relay of this workspace).
    #[arg(long)]
    pub relay_bin: Option<PathBuf>,
    /// Do not pin the relay and the load generator to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Where to write the results (JSON) and the relay's logs.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        // Subscribers closing at the end make moq-transport log a stream error each; what
        // matters of their errors is counted in the results instead.
        std::env::set_var("RUST_LOG", "warn,moq_transport=off,moq_session=off");
    }
    stagecast_proto::logging::init();
    let cli = Cli::parse();
    let no_pin = match &cli.command {
        Command::Fanout(args) => args.no_pin,
        Command::Interaction(args) => args.no_pin,
        Command::Compare(args) => args.no_pin,
        Command::Flood(args) => args.no_pin,
        Command::Network(args) => args.no_pin,
    };
    // Before the runtime's threads exist: they inherit this thread's CPU affinity.
    let pinning = if no_pin {
        cpu_pinning::Pinning::Off
    } else {
        cpu_pinning::pin_self(cpu_pinning::LOAD_CPU)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Fanout(args) => runtime.block_on(fanout::run(args, pinning)),
        Command::Interaction(args) => runtime.block_on(interaction::run(args, pinning)),
        Command::Compare(args) => runtime.block_on(compare::run(args, pinning)),
        Command::Flood(args) => runtime.block_on(flood::run(args, pinning)),
        Command::Network(args) => network::run(args),
    }
}
