//! `stagecast`: the Stagecast command line.

use clap::{Parser, Subcommand};
use stagecast_cli::interact_cmd::{self as interact, Action};
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
    /// Show a broadcast's live chat and send lines (or one message with --send).
    Chat(interact::ChatArgs),
    /// Open or close a poll, or vote.
    #[command(subcommand)]
    Poll(interact::PollCommand),
    /// Tip the creator credits, with an optional message.
    Tip(interact::TipArgs),
    /// Get development credits to tip with (when the origin grants them).
    Credit(interact::CreditArgs),
    /// Send a reaction.
    React(interact::ReactArgs),
    /// Set the tip goal (creator).
    Goal(interact::GoalArgs),
    /// Delete messages, time out, ban or unban users, set slow mode (creator, moderators).
    #[command(subcommand)]
    Moderate(interact::ModerateCommand),
    /// Print a broadcast's interaction state (chat, poll, goal, ...) as JSON.
    State(interact::StateArgs),
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
        Command::Chat(args) => interact::chat(args).await,
        Command::Poll(command) => interact::poll(command).await,
        Command::Tip(args) => {
            let action = Action::Tip {
                amount: args.amount,
                message: args.message,
            };
            interact::send_action(&args.request, action).await
        }
        Command::Credit(args) => {
            interact::send_action(
                &args.request,
                Action::Credit {
                    amount: args.amount,
                },
            )
            .await
        }
        Command::React(args) => {
            interact::send_action(&args.request, Action::React { emoji: args.emoji }).await
        }
        Command::Goal(args) => {
            let action = Action::Goal {
                title: args.title,
                target: args.target,
            };
            interact::send_action(&args.request, action).await
        }
        Command::Moderate(command) => interact::moderate(command).await,
        Command::State(args) => interact::state(args).await,
    };
    if let Err(err) = result {
        eprintln!("stagecast: {err:#}");
        std::process::exit(1);
    }
}
