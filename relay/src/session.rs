//! One accepted MoQ session: its SETUP, then the requests it makes of this relay, for as
//! long as it stays connected.
//!
//! As a subscriber the peer sends SUBSCRIBE (answered by the engine); as a publisher it
//! sends PUBLISH_NAMESPACE (routed here until withdrawn or the session ends). Requests
//! this relay does not serve yet are refused with a clear error instead of left waiting.

use std::sync::Arc;

use moq_transport::message::RequestErrorCode;
use moq_transport::serve::ServeError;
use moq_transport::session::{Publisher, Session, SessionError, Subscriber};
use stagecast_proto::endpoint::Accepted;
use stagecast_proto::path::path_from_namespace;

use tokio::sync::mpsc;

use crate::auth::{SessionAuth, SESSION_EXPIRED_AUTH_TOKEN};
use crate::demux::DemuxSession;
use crate::forward::{serve_interaction, StreamAllowance, MAX_STREAMS_PER_SESSION, STREAM_QUEUE};
use crate::metrics::GaugeGuard;
use crate::relay::Relay;
use crate::router::{SessionId, Source};

/// Draft-18 §15.10.1 PROTOCOL_VIOLATION: the peer did not follow the protocol (here: no
/// SETUP in time).
const SESSION_PROTOCOL_VIOLATION: u32 = 0x3;
/// How long a publisher at a relay waits for the upstream's answer to its namespace.
const UPSTREAM_VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a session closed for a reason is kept while the close reaches the peer.
const CLOSE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves an accepted connection until it closes.
pub async fn serve_session(relay: Relay, accepted: Accepted) -> Result<(), SessionError> {
    let remote = accepted.remote;
    let _permit = accepted.permit;
    let transport = accepted.session.clone();
    let (interaction_tx, interaction_rx) = mpsc::channel(STREAM_QUEUE);
    let demux = DemuxSession::new(
        accepted.session,
        interaction_tx,
        relay.metrics().clone(),
        relay.goaway_notice(),
    );
    let lines = demux.lines().clone();
    let setup_timeout = relay.config().sessions.setup_timeout;
    let setup = Session::accept(
        moq_transport::session::transport::Session::new(demux, accepted.url.clone()),
        None,
        accepted.transport,
    );
    let Ok(setup) = tokio::time::timeout(setup_timeout, setup).await else {
        relay.metrics().limits_refused.inc("setup_timeout");
        tracing::info!(%remote, "session refused: no SETUP in time");
        transport.close(SESSION_PROTOCOL_VIOLATION, b"no SETUP in time");
        return Ok(());
    };
    let (session, publisher, subscriber) = setup?;
    let auth = match relay
        .config()
        .auth
        .authorize(session.setup_params(), &accepted.url)
    {
        Ok(auth) => Arc::new(auth),
        Err(err) => {
            relay.metrics().auth_failures_total.inc();
            tracing::info!(%remote, %err, "session refused");
            transport.close(err.session_code(), err.to_string().as_bytes());
            // Hold the session until the close has gone out: dropping it at once stops the
            // HTTP/3 streams first, and a browser then sees "connection lost", not why.
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, transport.closed()).await;
            return Ok(());
        }
    };
    if auth.is_relay_link() {
        lines.set_relay_link();
    }
    let allowance = auth
        .is_relay_link()
        .then(|| StreamAllowance::relay_link(transport.clone()));
    let stream_cap = (!auth.is_relay_link() && !matches!(*auth, SessionAuth::Open))
        .then_some(MAX_STREAMS_PER_SESSION);
    let id = relay.next_session_id();
    relay.metrics().sessions_total.inc();
    let _open = GaugeGuard::new(&relay.metrics().sessions);
    tracing::info!(session = id, %remote, transport = ?accepted.transport, who = auth.subject(), "session started");
    let expiry = auth.expires_at();
    let result = tokio::select! {
        result = run_session(&relay, id, auth, session, publisher, subscriber) => result,
        () = serve_interaction(relay.clone(), id, interaction_rx, allowance, stream_cap) => Ok(()),
        // Closed inside the branch's future, before select drops the session's tasks:
        // their stream resets would otherwise reach the peer ahead of the reason.
        () = async {
            expire(expiry).await;
            relay.metrics().auth_failures_total.inc();
            tracing::info!(session = id, "authorization token expired; closing the session");
            transport.close(SESSION_EXPIRED_AUTH_TOKEN, b"authorization token expired");
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, transport.closed()).await;
        } => Ok(())
    };
    tracing::info!(session = id, ?result, "session ended");
    result
}

/// Resolves when the session's token expires (never, without one).
async fn expire(at: Option<std::time::SystemTime>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(left).await;
}

/// Drives a session's requests in both roles. Also used for the upstream link, where this
/// relay is the client.
pub(crate) async fn run_session(
    relay: &Relay,
    id: SessionId,
    auth: Arc<SessionAuth>,
    session: Session,
    publisher: Option<Publisher>,
    subscriber: Option<Subscriber>,
) -> Result<(), SessionError> {
    tokio::select! {
        result = session.run() => result,
        () = answer_subscribes(relay.clone(), id, auth.clone(), publisher.clone()) => Ok(()),
        () = answer_fetches(relay.clone(), id, auth.clone(), publisher.clone()) => Ok(()),
        () = refuse_unsupported(publisher, subscriber.clone()) => Ok(()),
        () = accept_namespaces(relay.clone(), id, auth, subscriber) => Ok(()),
    }
}

/// Handles each request `next` yields in a task owned by this future, so the work ends
/// with the session; `handle` returns `None` for a request it refused outright. Never
/// returns (the session's other branches decide when it ends).
async fn serve_each<T, Next, NextFut, Handle, Work>(mut next: Next, mut handle: Handle)
where
    Next: FnMut() -> NextFut,
    NextFut: std::future::Future<Output = Option<T>>,
    Handle: FnMut(T) -> Option<Work>,
    Work: std::future::Future<Output = ()> + Send + 'static,
{
    let mut serving = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            request = next() => match request {
                Some(request) => {
                    if let Some(work) = handle(request) {
                        serving.spawn(work);
                    }
                }
                None => break,
            },
            Some(_) = serving.join_next(), if !serving.is_empty() => {}
        }
    }
    while serving.join_next().await.is_some() {}
    std::future::pending().await
}

async fn answer_subscribes(
    relay: Relay,
    id: SessionId,
    auth: Arc<SessionAuth>,
    publisher: Option<Publisher>,
) {
    let Some(publisher) = publisher else {
        return std::future::pending().await;
    };
    let next = || {
        let mut publisher = publisher.clone();
        async move { publisher.subscribed().await }
    };
    serve_each(next, |subscribed| {
        let path = path_from_namespace(&subscribed.info.track_namespace);
        if let Err(err) = auth.check_subscribe(&path) {
            relay.metrics().auth_failures_total.inc();
            tracing::info!(session = id, %err, "subscribe refused");
            let _ = subscribed.close(ServeError::Closed(RequestErrorCode::Unauthorized as u64));
            return None;
        }
        let relay = relay.clone();
        Some(async move { relay.serve_subscribe(subscribed, id).await })
    })
    .await
}

async fn answer_fetches(
    relay: Relay,
    id: SessionId,
    auth: Arc<SessionAuth>,
    publisher: Option<Publisher>,
) {
    let Some(publisher) = publisher else {
        return std::future::pending().await;
    };
    let next = || {
        let mut publisher = publisher.clone();
        async move { publisher.fetch_requested().await }
    };
    serve_each(next, |request| {
        Some(crate::fetch::serve_fetch(
            relay.clone(),
            request,
            id,
            auth.clone(),
        ))
    })
    .await
}

/// SUBSCRIBE_NAMESPACE, TRACK_STATUS and PUBLISH are not served yet: refuse them at once
/// rather than leave them queued.
async fn refuse_unsupported(publisher: Option<Publisher>, subscriber: Option<Subscriber>) {
    let (Some(mut publisher), Some(mut subscriber)) = (publisher, subscriber) else {
        return std::future::pending().await;
    };
    let publishes = async {
        while let Some(publish) = subscriber.publish_received().await {
            publish.close(ServeError::NotImplemented(
                "PUBLISH is not supported by this relay; use PUBLISH_NAMESPACE".into(),
            ));
        }
    };
    let mut status_publisher = publisher.clone();
    let namespaces = async {
        while let Some(request) = publisher.subscribed_namespace().await {
            let _ = request.reject(
                moq_transport::message::RequestErrorCode::NotSupported as u64,
                "SUBSCRIBE_NAMESPACE is not supported by this relay",
            );
        }
    };
    let statuses = async {
        while let Some(request) = status_publisher.track_status_requested().await {
            drop(request);
        }
    };
    futures_util::join!(namespaces, statuses, publishes);
    std::future::pending().await
}

async fn accept_namespaces(
    relay: Relay,
    id: SessionId,
    auth: Arc<SessionAuth>,
    subscriber: Option<Subscriber>,
) {
    let Some(subscriber) = subscriber else {
        return std::future::pending().await;
    };
    let next = || {
        let mut subscriber = subscriber.clone();
        async move { subscriber.published_namespace().await }
    };
    // Each route lives in its task, so it is withdrawn when the session ends.
    serve_each(next, |mut published| {
        let path = path_from_namespace(&published.info.namespace);
        if let Err(err) = auth.check_publish(&path) {
            relay.metrics().auth_failures_total.inc();
            tracing::info!(session = id, %err, "namespace refused");
            let _ = published.reject(RequestErrorCode::Unauthorized as u64, &err.to_string());
            return None;
        }
        let relay = relay.clone();
        let owner = auth.owner();
        let source = Source::Session {
            session: id,
            subscriber: Box::new(subscriber.clone()),
        };
        Some(async move {
            let namespace = published.info.namespace.clone();
            let _route = match relay.router().register(namespace.clone(), source, owner) {
                Ok(route) => route,
                Err(err) => {
                    relay.metrics().auth_failures_total.inc();
                    tracing::info!(session = id, %err, "namespace refused: not a reconnect of its publisher");
                    let _ = published.reject(RequestErrorCode::Unauthorized as u64, &err.to_string());
                    return;
                }
            };
            // A relay answers its publisher once its upstream has: a path live upstream
            // under another identity is refused here too, not served to this relay's
            // viewers. With the upstream unreachable, the publisher is taken (it is
            // announced when the link is back).
            let upstream_up = relay.upstream().borrow().is_some();
            if upstream_up
                && relay.router().upstream_verdict(&namespace, UPSTREAM_VERDICT_WAIT).await == Some(false)
            {
                relay.metrics().auth_failures_total.inc();
                tracing::info!(session = id, %namespace, "namespace refused: refused upstream");
                let _ = published.reject(
                    RequestErrorCode::Unauthorized as u64,
                    "the upstream refused this path: another publisher is live there",
                );
                return;
            }
            if let Err(err) = published.ok() {
                tracing::debug!(%namespace, %err, "could not accept namespace");
                return;
            }
            relay.metrics().namespaces_published_total.inc();
            tracing::info!(session = id, %namespace, "namespace published");
            let _ = published.closed().await;
            tracing::info!(session = id, %namespace, "namespace withdrawn");
        })
    })
    .await
}
