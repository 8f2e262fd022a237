//! The interaction commands: `chat`, `poll`, `tip`, `credit`, `react`, `goal`, `moderate`
//! and `state`. Each connects like `subscribe` does and speaks the interaction protocol
//! on that one connection (`docs/interaction.md`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use moq_transport::coding::TrackNamespace;
use stagecast_proto::interaction::timeline::TimelineFollower;
pub use stagecast_proto::interaction::Action;
use stagecast_proto::interaction::{Answer, Event, Reason, Request, Snapshot};
use stagecast_proto::path::namespace_from_path;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use url::Url;

use crate::connect::{connect_session, ConnectArgs, Connection};
use crate::interact::requests::{reason_text, Refused};
use crate::interact::{follow_timeline, new_key, RequestStream};

/// Tries per request when the connection fails (each with the same idempotency key).
const ATTEMPTS: usize = 5;
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// A pause in the timeline this long after its snapshot means the cached events are in.
const CATCH_UP_QUIET: Duration = Duration::from_millis(300);

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Server or relay URL (`moqt://host:port` or `https://host:port`).
    pub url: Url,
    /// Broadcast path, e.g. `demo/live`.
    pub broadcast: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RequestArgs {
    #[command(flatten)]
    pub target: Target,
    /// Idempotency key (default: a fresh one). Sending the same key again never applies
    /// the request twice.
    #[arg(long)]
    pub key: Option<String>,
    /// Print the answer as the JSON frame the origin sent.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Send this message and exit, instead of the interactive chat.
    #[arg(long)]
    pub send: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PollCommand {
    /// Open a poll (creator or moderator).
    Open {
        #[command(flatten)]
        request: RequestArgs,
        #[arg(long)]
        question: String,
        /// An option; give 2 to 6.
        #[arg(long = "option", required = true)]
        options: Vec<String>,
        /// How long it stays open (e.g. `60s`, `5m`).
        #[arg(long, default_value = "60s", value_parser = stagecast_proto::duration::parse_duration)]
        duration: Duration,
    },
    /// Close the open poll (creator or moderator).
    Close {
        #[command(flatten)]
        request: RequestArgs,
        /// The poll's id (default: the open poll).
        #[arg(long)]
        poll: Option<u64>,
    },
    /// Vote in the open poll.
    Vote {
        #[command(flatten)]
        request: RequestArgs,
        /// The option's index, from 0.
        #[arg(long)]
        option: usize,
        #[arg(long)]
        poll: Option<u64>,
    },
}

#[derive(Args, Debug)]
pub struct TipArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[arg(long)]
    pub amount: u64,
    #[arg(long)]
    pub message: Option<String>,
}

#[derive(Args, Debug)]
pub struct CreditArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[arg(long)]
    pub amount: u64,
}

#[derive(Args, Debug)]
pub struct ReactArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// The reaction, e.g. an emoji.
    pub emoji: String,
}

#[derive(Args, Debug)]
pub struct GoalArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[arg(long)]
    pub title: String,
    #[arg(long)]
    pub target: u64,
}

#[derive(Subcommand, Debug)]
pub enum ModerateCommand {
    /// Delete a chat message by its sequence number.
    Delete {
        #[command(flatten)]
        request: RequestArgs,
        #[arg(long)]
        message: u64,
    },
    /// Keep a user out of chat for a while.
    Timeout {
        #[command(flatten)]
        request: RequestArgs,
        #[arg(long)]
        user: String,
        #[arg(long, value_parser = stagecast_proto::duration::parse_duration)]
        duration: Duration,
    },
    Ban {
        #[command(flatten)]
        request: RequestArgs,
        #[arg(long)]
        user: String,
    },
    Unban {
        #[command(flatten)]
        request: RequestArgs,
        #[arg(long)]
        user: String,
    },
    /// One message per this long per viewer (`0s` turns it off).
    SlowMode {
        #[command(flatten)]
        request: RequestArgs,
        #[arg(long, value_parser = stagecast_proto::duration::parse_duration)]
        every: Duration,
    },
}

#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    pub target: Target,
    /// Keep printing the state (one JSON line) after every change.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: stop after this long.
    #[arg(long, value_parser = stagecast_proto::duration::parse_duration)]
    pub duration: Option<Duration>,
}

/// An open connection with its MoQ session running.
struct Live {
    client: stagecast_proto::endpoint::ClientEndpoint,
    transport: stagecast_proto::web_transport_quinn::Session,
    subscriber: moq_transport::session::Subscriber,
    namespace: TrackNamespace,
    session: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn connect(target: &Target) -> anyhow::Result<Self> {
        let namespace = namespace_from_path(&target.broadcast)?;
        let trust = target.connect.trust(&target.url).await?;
        let Connection {
            client,
            transport,
            session,
            subscriber,
            ..
        } = connect_session(&target.url, &trust, target.connect.token.as_deref()).await?;
        let session = tokio::spawn(async move {
            let _ = session.run().await;
        });
        Ok(Self {
            client,
            transport,
            subscriber,
            namespace,
            session,
        })
    }

    async fn requests(&self, target: &Target) -> anyhow::Result<(RequestStream, Answer)> {
        RequestStream::open(
            &self.transport,
            &target.broadcast,
            target.connect.token.as_deref(),
        )
        .await
    }

    async fn close(self) {
        self.transport.close(0, b"done");
        self.session.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.wait_idle()).await;
    }
}

/// Sends one request, retrying on a fresh connection with the same key if the connection
/// fails, and prints the answer. A rejection is an error.
pub async fn send_action(args: &RequestArgs, action: Action) -> anyhow::Result<()> {
    let request = Request {
        key: args.key.clone().unwrap_or_else(new_key),
        action,
    };
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match try_send(&args.target, &request).await {
            Ok(answer) => return report(&answer, args.json),
            Err(Attempt::Final(err)) => return Err(err),
            Err(Attempt::Retry(err)) => {
                tracing::info!(attempt, %err, "request not answered; retrying with the same key");
                last_error = Some(err);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("request not sent")))
}

/// How a try failed: worth another try (the server was unreachable, or the connection
/// broke before the answer), or not (refused, untrusted certificate, bad arguments).
enum Attempt {
    Retry(anyhow::Error),
    Final(anyhow::Error),
}

async fn try_send(target: &Target, request: &Request) -> Result<Answer, Attempt> {
    let live = match Live::connect(target).await {
        Ok(live) => live,
        Err(err) => {
            let unreachable = err.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<stagecast_proto::endpoint::EndpointError>(),
                    Some(stagecast_proto::endpoint::EndpointError::Timeout(_))
                )
            });
            return Err(if unreachable {
                Attempt::Retry(err)
            } else {
                Attempt::Final(err)
            });
        }
    };
    let result = async {
        let (mut stream, _welcome) = live.requests(target).await?;
        let answer = stream.request(request).await?;
        stream.finish().await;
        Ok(answer)
    }
    .await;
    live.close().await;
    result.map_err(|err: anyhow::Error| {
        // `unavailable` is what a relay says while its upstream is down: worth a retry.
        match err.downcast_ref::<Refused>() {
            Some(refused) if refused.reason != Reason::Unavailable => Attempt::Final(err),
            _ => Attempt::Retry(err),
        }
    })
}

fn report(answer: &Answer, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(answer)?);
    }
    match answer {
        Answer::Accepted { seq, balance, .. } => {
            if !json {
                let seq = seq.map_or(String::new(), |s| format!(" as event {s}"));
                let balance = balance.map_or(String::new(), |b| format!("; balance {b}"));
                println!("accepted{seq}{balance}");
            }
            Ok(())
        }
        Answer::Rejected {
            reason,
            message,
            retry_after_ms,
            ..
        } => {
            let retry = retry_after_ms.map_or(String::new(), |ms| {
                format!(" (retry in {:.1} s)", ms as f64 / 1000.0)
            });
            bail!("rejected, {}: {message}{retry}", reason_text(*reason))
        }
        Answer::Error { reason, message } => bail!("{}: {message}", reason_text(*reason)),
        Answer::Welcome { .. } => bail!("unexpected answer"),
    }
}

/// The broadcast's state from its timeline's first snapshot.
async fn current_state(target: &Target) -> anyhow::Result<Snapshot> {
    let live = Live::connect(target).await?;
    let (tx, mut rx) = mpsc::channel(64);
    let subscriber = live.subscriber.clone();
    let namespace = live.namespace.clone();
    let follow = tokio::spawn(async move { follow_timeline(&subscriber, &namespace, tx).await });
    let mut follower = TimelineFollower::default();
    let state = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(record) = rx.recv().await {
            follower.push(record);
            if follower.state().is_some() {
                break;
            }
        }
        // The events after the snapshot come from the relay's cache right behind it: take
        // them until the timeline pauses.
        while let Ok(Some(record)) = tokio::time::timeout(CATCH_UP_QUIET, rx.recv()).await {
            follower.push(record);
        }
        follower.state().cloned()
    })
    .await;
    follow.abort();
    live.close().await;
    match state {
        Ok(Some(state)) => Ok(state),
        Ok(None) => bail!("the interaction timeline ended before its first snapshot"),
        Err(_) => bail!("no interaction state within 10 s"),
    }
}

async fn open_poll_id(target: &Target, given: Option<u64>) -> anyhow::Result<u64> {
    if let Some(id) = given {
        return Ok(id);
    }
    current_state(target)
        .await?
        .poll
        .filter(|p| p.open)
        .map(|p| p.id)
        .context("no poll is open")
}

pub async fn poll(command: PollCommand) -> anyhow::Result<()> {
    match command {
        PollCommand::Open {
            request,
            question,
            options,
            duration,
        } => {
            let action = Action::PollOpen {
                question,
                options,
                duration_secs: duration.as_secs(),
            };
            send_action(&request, action).await
        }
        PollCommand::Close { request, poll } => {
            let poll = open_poll_id(&request.target, poll).await?;
            send_action(&request, Action::PollClose { poll }).await
        }
        PollCommand::Vote {
            request,
            option,
            poll,
        } => {
            let poll = open_poll_id(&request.target, poll).await?;
            send_action(&request, Action::Vote { poll, option }).await
        }
    }
}

pub async fn moderate(command: ModerateCommand) -> anyhow::Result<()> {
    let (request, action) = match command {
        ModerateCommand::Delete { request, message } => (request, Action::Delete { message }),
        ModerateCommand::Timeout {
            request,
            user,
            duration,
        } => (
            request,
            Action::Timeout {
                user,
                secs: duration.as_secs().max(1),
            },
        ),
        ModerateCommand::Ban { request, user } => (request, Action::Ban { user }),
        ModerateCommand::Unban { request, user } => (request, Action::Unban { user }),
        ModerateCommand::SlowMode { request, every } => (
            request,
            Action::SlowMode {
                secs: every.as_secs(),
            },
        ),
    };
    send_action(&request, action).await
}

/// `stagecast state`: the current state as one JSON line, or (--follow) after every change.
pub async fn state(args: StateArgs) -> anyhow::Result<()> {
    if !args.follow {
        println!(
            "{}",
            serde_json::to_string(&current_state(&args.target).await?)?
        );
        return Ok(());
    }
    let live = Live::connect(&args.target).await?;
    let (tx, mut rx) = mpsc::channel(256);
    let subscriber = live.subscriber.clone();
    let namespace = live.namespace.clone();
    let follow = tokio::spawn(async move { follow_timeline(&subscriber, &namespace, tx).await });
    let mut follower = TimelineFollower::default();
    let mut printed = None;
    let run = async {
        while let Some(record) = rx.recv().await {
            follower.push(record);
            if let Some(state) = follower.state() {
                if printed != Some(state.seq) {
                    println!("{}", serde_json::to_string(state)?);
                    printed = Some(state.seq);
                }
            }
        }
        anyhow::Ok(())
    };
    let result = match args.duration {
        Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or(Ok(())),
        None => run.await,
    };
    follow.abort();
    live.close().await;
    result
}

/// `stagecast chat`: `--send` one message, or show the live chat and send what is typed.
pub async fn chat(args: ChatArgs) -> anyhow::Result<()> {
    if let Some(text) = args.send {
        return send_action(&args.request, Action::Chat { text }).await;
    }
    let target = &args.request.target;
    let live = Live::connect(target).await?;
    let (mut stream, welcome) = live.requests(target).await?;
    if let Answer::Welcome {
        name: Some(name), ..
    } = &welcome
    {
        eprintln!("chatting as {name}; type a line and press enter");
    } else {
        eprintln!("watching the chat (no token: read only)");
    }
    let (tx, mut rx) = mpsc::channel(256);
    let subscriber = live.subscriber.clone();
    let namespace = live.namespace.clone();
    let follow = tokio::spawn(async move { follow_timeline(&subscriber, &namespace, tx).await });
    let mut follower = TimelineFollower::default();
    let mut shown_backlog = false;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let result: anyhow::Result<()> = loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { break Ok(()) };
                for (event, _) in follower.push(record) {
                    if let Some(line) = describe(&event) {
                        println!("{line}");
                    }
                }
                if !shown_backlog {
                    if let Some(state) = follower.state() {
                        for line in &state.chat {
                            println!("{}: {}", line.name, line.text);
                        }
                        shown_backlog = true;
                    }
                }
            }
            line = lines.next_line() => {
                let Ok(Some(text)) = line else { break Ok(()) };
                if text.trim().is_empty() { continue; }
                let request = Request { key: new_key(), action: Action::Chat { text } };
                match stream.request(&request).await {
                    Ok(Answer::Rejected { reason, message, .. }) => {
                        eprintln!("not sent ({}): {message}", reason_text(reason));
                    }
                    Ok(_) => {}
                    Err(err) => break Err(err),
                }
            }
        }
    };
    follow.abort();
    stream.finish().await;
    live.close().await;
    result
}

/// One line for a person, for the events the chat shows.
fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::Chat { name, text, .. } => format!("{name}: {text}"),
        Event::Tip {
            name,
            amount,
            message,
            ..
        } => match message {
            Some(message) => format!("* {name} tipped {amount}: {message}"),
            None => format!("* {name} tipped {amount}"),
        },
        Event::PollOpened { poll, .. } => format!(
            "* poll {}: {} [{}]",
            poll.id,
            poll.question,
            poll.options.join(" / ")
        ),
        Event::PollClosed {
            poll,
            tallies,
            winner,
            ..
        } => format!(
            "* poll {poll} closed: {tallies:?}{}",
            winner.map_or(String::new(), |w| format!(", option {w} wins"))
        ),
        Event::ChatDeleted { message, .. } => format!("* message {message} deleted"),
        Event::Moderation {
            action, user, secs, ..
        } => match (action.as_str(), user, secs) {
            ("slow_mode", _, Some(0) | None) => "* slow mode off".to_string(),
            ("slow_mode", _, Some(secs)) => format!("* slow mode: one message every {secs} s"),
            ("timeout", Some(user), Some(secs)) => format!("* {user} timed out for {secs} s"),
            (action, Some(user), _) => format!("* {action} {user}"),
            (action, None, _) => format!("* {action}"),
        },
        _ => return None,
    })
}
