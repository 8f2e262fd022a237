//! `stagecast`: the Stagecast command line.

use clap::{Parser, Subcommand};
use stagecast_cli::{publish, subscribe, token};

/// Stagecast: interactive live streaming over Media over QUIC.
#[derive(Parser, Debug)]
#[command(name = "stagecast", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish fragmented MP4 (CMAF) from stdin or a file as a broadcast.
    Publish(publish::PublishArgs),
    /// Receive a broadcast as a playable fragmented MP4 on stdout or a file.
    Subscribe(subscribe::SubscribeArgs),
    /// Make the token key, issue and verify access tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

#[tokio::main]
async fn main() {
    // The CLI explains how things ended in its own words; the MoQ library's logs (stream
    // resets at the end of a session are logged as errors) are for RUST_LOG=moq_transport=debug.
    stagecast_proto::logging::init_with_default("info,moq_transport=off");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Publish(args) => publish::run(args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Token(command) => token::run(command),
    };
    if let Err(err) = result {
        eprintln!("stagecast: {err:#}");
        std::process::exit(1);
    }
}
