//! Serves request streams at the origin: the hello (which broadcast, whose token), then
//! requests answered in order by the [`Authority`]. Also the relay engine's two hooks:
//! interaction streams land here, and the `interaction` track of every live broadcast is
//! served from its timeline.
//!
//! A hello is taken only for a broadcast live here (matched exactly, so made-up sub-paths
//! open nothing) that the token, or anonymous access, may watch. A stream that sends
//! nothing for [`ServiceConfig::idle_timeout`] is closed (the viewer page opens a new one
//! when it has something to say), and channels nobody uses after their broadcast ended
//! are closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use moq_transport::coding::TrackNamespace;
use stagecast_proto::interaction::frame::encode_frame;
use stagecast_proto::interaction::{
    Answer, FrameError, FrameReader, Hello, Reason, Request, INTERACTION_TRACK,
};
use stagecast_proto::path::namespace_from_path;
use stagecast_proto::token::{now_secs, Claims, TokenKey};
use stagecast_proto::web_transport_quinn;
use stagecast_relay::auth::{AuthPolicy, SessionAuth};
use stagecast_relay::cache::TrackCache;
use stagecast_relay::demux::InteractionStream;
use stagecast_relay::hooks::{ExtraTracks, InteractionAuthority};
use stagecast_relay::Relay;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use super::authority::{Authority, OpenError};
use super::clock::run_clock;
use super::rules::{now_ms, Actor, Role};
use crate::names::{normalize_name, ReservedNames};

/// How long a new stream has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often time-driven events (poll ends, reaction windows) are checked.
const TICK: Duration = Duration::from_millis(100);
/// Requests waiting for the authority's thread; a stream whose request does not fit waits
/// to send it.
const REQUEST_QUEUE: usize = 1024;
/// How often channels are checked for having become idle.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the service needs besides the authority.
#[derive(Clone)]
pub struct ServiceConfig {
    pub key: Option<TokenKey>,
    /// The node's access rules: a hello must come from someone who may watch.
    pub auth: AuthPolicy,
    /// Creators' display names, which no one else may appear under.
    pub names: Arc<ReservedNames>,
    /// A stream silent this long after its hello is closed.
    pub idle_timeout: Duration,
}

pub struct InteractionService {
    authority: Arc<Authority>,
    config: ServiceConfig,
    relay: OnceLock<Relay>,
    requests: mpsc::Sender<Job>,
    /// Keys for anonymous streams, each counted as one viewer.
    anonymous: Arc<AtomicU64>,
}

/// One request for the authority's thread, and where its answer goes.
struct Job {
    path: String,
    actor: Option<Actor>,
    request: Request,
    answer: oneshot::Sender<Answer>,
}

/// Answers requests one after another on a thread of its own. The authority orders every
/// event under one lock and writes each to SQLite before answering; one thread doing that
/// in turn keeps the runtime's threads free, where a blocking section per stream piled up
/// hundreds of threads waiting for the lock in a chat burst.
fn run_authority_thread(authority: Arc<Authority>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        let answer = authority.handle(now_ms(), &job.path, job.actor.as_ref(), job.request);
        let _ = job.answer.send(answer);
    }
}

impl InteractionService {
    pub fn new(authority: Authority, config: ServiceConfig) -> std::io::Result<Arc<Self>> {
        let authority = Arc::new(authority);
        let (requests, jobs) = mpsc::channel(REQUEST_QUEUE);
        let answering = authority.clone();
        std::thread::Builder::new()
            .name("interaction-authority".into())
            .spawn(move || run_authority_thread(answering, jobs))?;
        let service = Arc::new(Self {
            authority,
            config,
            relay: OnceLock::new(),
            requests,
            anonymous: Arc::default(),
        });
        let authority = Arc::downgrade(&service.authority);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(authority) = authority.upgrade() else {
                    return;
                };
                tokio::task::block_in_place(|| authority.tick(now_ms()));
            }
        });
        Ok(service)
    }

    /// Closes channels whose broadcast ended and that nobody uses, until the service goes.
    fn close_idle_channels(&self, relay: Relay) {
        let authority = Arc::downgrade(&self.authority);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(IDLE_CHECK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(authority) = authority.upgrade() else {
                    return;
                };
                let is_live = |path: &str| {
                    namespace_from_path(path).is_ok_and(|ns| relay.router().is_published(&ns))
                };
                for path in authority.close_idle(now_ms(), is_live) {
                    tracing::info!(
                        channel = path,
                        "interaction channel closed: broadcast ended"
                    );
                }
                let open = i64::try_from(authority.channel_count()).unwrap_or(i64::MAX);
                relay.metrics().interaction_channels.set(open);
            }
        });
    }

    /// Connects the service to the engine it serves (made after the service, with it in
    /// its configuration).
    pub fn attach(&self, relay: Relay) {
        if self.relay.set(relay.clone()).is_ok() {
            self.close_idle_channels(relay);
        }
    }

    /// The timeline of a broadcast live at this node (exactly this path, not one under
    /// it), opening its channel if needed.
    fn channel(&self, namespace: &TrackNamespace, path: &str) -> Option<TrackCache> {
        let relay = self.relay.get()?;
        if !relay.router().is_published(namespace) {
            return None;
        }
        let opened = self.authority.open_channel(path, |clock| {
            tokio::spawn(run_clock(relay.clone(), namespace.clone(), clock))
        });
        match opened {
            Ok(cache) => {
                let open = i64::try_from(self.authority.channel_count()).unwrap_or(i64::MAX);
                relay.metrics().interaction_channels.set(open);
                Some(cache)
            }
            Err(OpenError::TooMany(open)) => {
                relay.metrics().limits_refused.inc("interaction_channels");
                tracing::warn!(
                    channel = path,
                    open,
                    "interaction channel refused: too many open"
                );
                None
            }
            Err(err) => {
                tracing::error!(channel = path, %err, "cannot load the channel's interaction state");
                None
            }
        }
    }

    async fn serve_stream(self: Arc<Self>, stream: InteractionStream) {
        let InteractionStream { mut send, recv } = stream;
        let mut frames = FrameReader::new(recv, Bytes::new());
        let result = self.converse(&mut frames, &mut send).await;
        if let Err((reason, message)) = result {
            tracing::debug!(?reason, %message, "interaction stream closed");
            write(&mut send, &Answer::Error { reason, message }).await;
        }
        let _ = send.shutdown().await;
    }

    async fn converse(
        &self,
        frames: &mut FrameReader<web_transport_quinn::RecvStream>,
        send: &mut web_transport_quinn::SendStream,
    ) -> Result<(), (Reason, String)> {
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, frames.next_message::<Hello>()).await
        {
            Ok(Ok(Some(hello))) => hello,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(err)) => return Err(frame_failure(err, "the first frame must be a hello")),
            Err(_) => return Err((Reason::Invalid, "no hello within 10 s".into())),
        };
        let claims = match &hello.token {
            Some(token) => Some(self.verify(token)?),
            None => None,
        };
        let namespace = namespace_from_path(&hello.broadcast)
            .map_err(|err| (Reason::Invalid, format!("bad broadcast path: {err}")))?;
        // One spelling per channel: `/live/alice/` and `live/alice` are the same one.
        let path = stagecast_proto::path::path_from_namespace(&namespace);
        let may_watch = if self.config.auth.disabled {
            SessionAuth::Open
        } else {
            SessionAuth::Checked {
                claims: claims.clone(),
                anonymous_subscribe: self.config.auth.anonymous_subscribe.clone(),
            }
        };
        if let Err(err) = may_watch.check_subscribe(&path) {
            return Err((Reason::NotAuthorized, err.to_string()));
        }
        if self.channel(&namespace, &path).is_none() {
            return Err((Reason::Unavailable, format!("{path} is not live here")));
        }
        let actor = claims
            .as_ref()
            .map(|claims| actor_for(claims, &path, &self.config.names));
        let welcome = Answer::Welcome {
            user: actor.as_ref().map(|a| a.user.clone()),
            name: actor.as_ref().map(|a| a.name.clone()),
            role: actor.as_ref().map(|a| a.role.as_str().to_string()),
            balance: actor
                .as_ref()
                .map(|a| self.authority.balance(&a.user, &path)),
        };
        write(send, &welcome).await;
        let viewer = match &actor {
            Some(actor) => actor.user.clone(),
            None => format!(
                "anonymous:{}",
                self.anonymous.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let _viewer = ViewerGuard::join(self.authority.clone(), path.clone(), viewer);
        let idle = self.config.idle_timeout;
        loop {
            let frame = match tokio::time::timeout(idle, frames.next()).await {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(err)) => return Err(frame_failure(err, "")),
                Err(_) => {
                    return Err((
                        Reason::Unavailable,
                        format!("closed after {} s without a request", idle.as_secs()),
                    ))
                }
            };
            if claims.as_ref().is_some_and(|c| c.exp <= now_secs()) {
                return Err((Reason::NotAuthorized, "your token expired".into()));
            }
            let answer = match serde_json::from_slice::<Request>(&frame) {
                Ok(request) => self.answer(&path, actor.as_ref(), request).await?,
                Err(err) => Answer::Rejected {
                    key: key_of(&frame),
                    reason: Reason::Invalid,
                    message: format!("not a request this origin understands: {err}"),
                    retry_after_ms: None,
                },
            };
            write(send, &answer).await;
        }
    }

    /// The authority's answer to `request`, from its thread.
    async fn answer(
        &self,
        path: &str,
        actor: Option<&Actor>,
        request: Request,
    ) -> Result<Answer, (Reason, String)> {
        let stopped = || {
            (
                Reason::Unavailable,
                "the interaction authority stopped".to_string(),
            )
        };
        let (answer, answered) = oneshot::channel();
        let job = Job {
            path: path.to_string(),
            actor: actor.cloned(),
            request,
            answer,
        };
        self.requests.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())
    }

    fn verify(&self, token: &str) -> Result<Claims, (Reason, String)> {
        let key = self.config.key.as_ref().ok_or((
            Reason::NotAuthorized,
            "this origin has no token key".to_string(),
        ))?;
        key.verify(token)
            .map_err(|err| (Reason::NotAuthorized, format!("token refused: {err}")))
    }
}

/// Who a token's holder is in channel `path`: a creator only where they may publish, a
/// moderator only where their token says they moderate, and under a normalized name that
/// passes for a creator's only if they are one.
fn actor_for(claims: &Claims, path: &str, names: &ReservedNames) -> Actor {
    let role = match claims.role.as_deref() {
        Some("creator") if claims.may_publish(path) => Role::Creator,
        Some("moderator") if claims.may_moderate(path) => Role::Moderator,
        _ => Role::Viewer,
    };
    let raw = claims.name.as_deref().unwrap_or(&claims.sub);
    let name = normalize_name(raw).unwrap_or_else(|_| claims.sub.chars().take(32).collect());
    let name = if role == Role::Creator {
        names.reserve(&name);
        name
    } else {
        names.viewer_name(name)
    };
    Actor {
        user: claims.sub.clone(),
        name,
        role,
    }
}

fn frame_failure(err: FrameError, context: &str) -> (Reason, String) {
    match err {
        FrameError::TooLarge(_) => (Reason::TooLarge, err.to_string()),
        err if context.is_empty() => (Reason::Invalid, err.to_string()),
        err => (Reason::Invalid, format!("{context}: {err}")),
    }
}

/// The `key` of a frame that is not a valid request, if it has one.
fn key_of(frame: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_default()
}

async fn write(send: &mut web_transport_quinn::SendStream, answer: &Answer) {
    if let Ok(frame) = encode_frame(answer) {
        let _ = AsyncWriteExt::write_all(send, &frame).await;
    }
}

/// Counts a connected viewer while alive.
struct ViewerGuard {
    authority: Arc<Authority>,
    path: String,
    viewer: String,
}

impl ViewerGuard {
    fn join(authority: Arc<Authority>, path: String, viewer: String) -> Self {
        authority.viewer_joined(now_ms(), &path, &viewer, true);
        Self {
            authority,
            path,
            viewer,
        }
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.authority
            .viewer_joined(now_ms(), &self.path, &self.viewer, false);
    }
}

impl InteractionAuthority for InteractionService {
    fn serve(&self, stream: InteractionStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // The engine holds the service in an Arc; a clone of its parts keeps the future 'static.
        let service = Arc::new(Self {
            authority: self.authority.clone(),
            config: self.config.clone(),
            relay: self.relay.clone(),
            requests: self.requests.clone(),
            anonymous: self.anonymous.clone(),
        });
        Box::pin(service.serve_stream(stream))
    }
}

impl ExtraTracks for InteractionService {
    fn track(&self, namespace: &TrackNamespace, name: &str) -> Option<TrackCache> {
        if name != INTERACTION_TRACK {
            return None;
        }
        let path = stagecast_proto::path::path_from_namespace(namespace);
        self.channel(namespace, &path)
    }
}
