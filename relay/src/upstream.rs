//! The link from this relay to the next one up the chain (ultimately the origin).
//!
//! Over the link this relay is a subscriber for tracks nobody publishes here, and a
//! publisher of every namespace that is published here (forwarded with PUBLISH_NAMESPACE,
//! so the origin knows the route down to the publisher). When the link drops it is
//! re-established with exponential backoff and jitter, trying each configured upstream in
//! turn, and the namespaces are forwarded again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moq_transport::coding::TrackNamespace;
use moq_transport::message::RequestErrorCode;
use moq_transport::serve::ServeError;
use moq_transport::session::{Publisher, Session, Subscriber};
use moq_transport::setup::AuthorizationToken;
use rand::Rng;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::goaway::GoAway;
use stagecast_proto::migration::{goaway_received, MigratingSession};
use stagecast_proto::token::JWT_TOKEN_TYPE;
use stagecast_proto::trust::ClientTrust;
use tokio::sync::watch;
use tokio::task::JoinSet;
use url::Url;

use crate::auth::SessionAuth;
use crate::control::link_plan::{GoAwayTarget, LinkEnd, LinkPlan};
use crate::relay::Relay;
use crate::router::SessionId;
use crate::session::run_session;

/// An upstream that does not complete its handshake within this is given up for the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The upstream session while it is up.
#[derive(Clone)]
pub struct UpstreamSession {
    pub id: SessionId,
    pub url: Url,
    pub subscriber: Subscriber,
    /// The link's connection, for opening interaction streams toward the origin.
    pub transport: web_transport_quinn::Session,
}

/// Where the link stands, for logs and progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting {
        url: Url,
    },
    Connected {
        url: Url,
    },
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
    /// The upstream refused this node's authorization (its token, or a namespace it
    /// forwarded); retrying will not help until the token or the grant changes.
    Refused {
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Upstreams in order of preference; the next is tried when one fails.
    pub urls: Vec<Url>,
    pub trust: ClientTrust,
    /// The token this node presents upstream (draft-18 AUTHORIZATION TOKEN in SETUP).
    pub token: Option<String>,
    /// End the link at the first authorization refusal, leaving `state` at `Refused` (a
    /// publisher's bad token will not heal by retrying). A relay keeps retrying instead:
    /// its operator may fix the upstream's key while it runs.
    pub stop_when_refused: bool,
}

/// Runs the link until the process ends, or with `stop_when_refused` until the upstream
/// refuses the token. `state` reports its progress.
pub async fn run_upstream(
    relay: Relay,
    client: ClientEndpoint,
    config: UpstreamConfig,
    state: watch::Sender<LinkState>,
) {
    let mut plan = LinkPlan::new(config.urls.clone());
    loop {
        let Some(url) = plan.next_url() else {
            return;
        };
        state.send_replace(LinkState::Connecting { url: url.clone() });
        let started = tokio::time::Instant::now();
        let mut going_away = false;
        let mut refusal = None;
        let reason = match connect(&client, &url, &config).await {
            Ok((transport, goaway, session, publisher, subscriber)) => {
                let id = relay.next_session_id();
                if relay.metrics().upstream_connected.get() == 0 && plan.is_retry() {
                    relay.metrics().upstream_reconnects_total.inc();
                }
                relay.metrics().upstream_connected.inc();
                relay.set_upstream(Some(UpstreamSession {
                    id,
                    url: url.clone(),
                    subscriber: subscriber.clone(),
                    transport: transport.clone(),
                }));
                state.send_replace(LinkState::Connected { url: url.clone() });
                tracing::info!(%url, session = id, "upstream link up");
                let result = tokio::select! {
                    result = run_session(&relay, id, Arc::new(SessionAuth::Upstream), session, Some(publisher.clone()), Some(subscriber)) => result,
                    () = forward_namespaces(relay.clone(), id, publisher, state.clone()) => Ok(()),
                    goaway = goaway_received(goaway) => {
                        // Move now, while the draining upstream still serves: subscribers
                        // continue on the next group from the new link.
                        going_away = true;
                        if plan.on_goaway(&url, &goaway.new_session_uri) == GoAwayTarget::Refused {
                            relay.metrics().limits_refused.inc("goaway_elsewhere");
                            tracing::warn!(%url, to = %goaway.new_session_uri, "not following GOAWAY to a host that is not a configured upstream");
                        }
                        transport.close(0, b"going away");
                        Ok(())
                    }
                };
                relay.set_upstream(None);
                relay.metrics().upstream_connected.dec();
                match result {
                    Ok(()) if going_away => "upstream sent GOAWAY".to_string(),
                    Ok(()) => "upstream closed the session".to_string(),
                    Err(err) => {
                        refusal = auth_refusal(&err, &transport).await;
                        err.to_string()
                    }
                }
            }
            Err((reason, refused)) => {
                refusal = refused;
                reason
            }
        };
        if let Some(refusal) = refusal {
            tracing::warn!(%url, %refusal, "upstream refused this node's token");
            state.send_replace(LinkState::Refused { reason: refusal });
            if config.stop_when_refused {
                return;
            }
        }
        let end = if going_away {
            LinkEnd::GoingAway
        } else {
            LinkEnd::Down
        };
        let jitter = rand::thread_rng().gen_range(0.5..1.0);
        let retry_in = plan.on_end(end, started.elapsed(), jitter);
        tracing::warn!(%url, %reason, ?retry_in, "upstream link down");
        state.send_replace(LinkState::Disconnected { reason, retry_in });
        tokio::time::sleep(retry_in).await;
    }
}

/// How long a failed session's connection is given to show the upstream's close.
const CLOSE_READ_WAIT: Duration = Duration::from_millis(500);

/// The upstream's reason, when it closed the session over authorization (draft-18
/// §15.10.1: UNAUTHORIZED, MALFORMED_AUTH_TOKEN, EXPIRED_AUTH_TOKEN). Read from the
/// error, or else from the QUIC connection itself: depending on which read or write met
/// the close first, the error may not carry it.
async fn auth_refusal(
    err: &moq_transport::session::SessionError,
    link: &web_transport_quinn::Session,
) -> Option<String> {
    let (code, reason) = match stagecast_proto::close::peer_close(err) {
        Some(close) => close,
        None => stagecast_proto::close::connection_close(link, CLOSE_READ_WAIT).await?,
    };
    is_auth_refusal(code).then_some(reason)
}

fn is_auth_refusal(code: u64) -> bool {
    use crate::auth::{
        SESSION_EXPIRED_AUTH_TOKEN, SESSION_MALFORMED_AUTH_TOKEN, SESSION_UNAUTHORIZED,
    };
    [
        SESSION_UNAUTHORIZED,
        SESSION_MALFORMED_AUTH_TOKEN,
        SESSION_EXPIRED_AUTH_TOKEN,
    ]
    .map(u64::from)
    .contains(&code)
}

async fn connect(
    client: &ClientEndpoint,
    url: &Url,
    config: &UpstreamConfig,
) -> Result<
    (
        web_transport_quinn::Session,
        watch::Receiver<Option<GoAway>>,
        Session,
        Publisher,
        Subscriber,
    ),
    (String, Option<String>),
> {
    let (session, transport) =
        tokio::time::timeout(CONNECT_TIMEOUT, client.connect(url, &config.trust))
            .await
            .map_err(|_| {
                (
                    format!("no answer from {url} within {CONNECT_TIMEOUT:?}"),
                    None,
                )
            })?
            .map_err(|e| (e.to_string(), None))?;
    let tokens = config
        .token
        .iter()
        .map(|t| AuthorizationToken::new(JWT_TOKEN_TYPE, t.as_bytes().to_vec()))
        .collect();
    let link = session.clone();
    let migrating = MigratingSession::new(session);
    let goaway = migrating.goaway();
    match Session::connect_with_tokens(migrating.transport(), None, transport, tokens).await {
        Ok((session, publisher, subscriber)) => Ok((link, goaway, session, publisher, subscriber)),
        Err(e) => Err((
            format!("MoQ setup with {url} failed: {e}"),
            auth_refusal(&e, &link).await,
        )),
    }
}

/// Keeps every namespace published here (except those that came from the upstream
/// itself) published upstream too, and answers the SUBSCRIBEs that arrive for them.
async fn forward_namespaces(
    relay: Relay,
    upstream_id: SessionId,
    publisher: Publisher,
    state: watch::Sender<LinkState>,
) {
    let mut announced = relay.router().announced();
    let mut forwarded: HashMap<TrackNamespace, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let wanted = relay.router().namespaces_not_from(Some(upstream_id));
        forwarded.retain(|namespace, task| {
            let keep = wanted.contains(namespace);
            if !keep {
                task.abort();
            }
            keep
        });
        for namespace in wanted {
            if forwarded.contains_key(&namespace) {
                continue;
            }
            let task = tasks.spawn(forward_one(
                relay.clone(),
                upstream_id,
                publisher.clone(),
                namespace.clone(),
                state.clone(),
            ));
            forwarded.insert(namespace, task);
        }
        tokio::select! {
            changed = announced.changed() => if changed.is_err() { return },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn forward_one(
    relay: Relay,
    upstream_id: SessionId,
    mut publisher: Publisher,
    namespace: TrackNamespace,
    state: watch::Sender<LinkState>,
) {
    let publication = match publisher.publish_namespace_start(namespace.clone()).await {
        Ok(publication) => publication,
        Err(err) => {
            tracing::warn!(%namespace, %err, "could not forward namespace upstream");
            return;
        }
    };
    if let Err(err) = publication.ok().await {
        let path = stagecast_proto::path::path_from_namespace(&namespace);
        let reason = match err {
            // The session is ending, not the request refused: the session's close says
            // why (a token the upstream refused closes the session just after SETUP, and
            // the request can fail a moment before that close is read).
            ServeError::Cancel => {
                tracing::debug!(%namespace, "namespace request ended with its session");
                return;
            }
            // moq-transport does not pass on the error's reason phrase, so say both
            // things the upstream refuses a namespace for.
            ServeError::Closed(code) if code == RequestErrorCode::Unauthorized as u64 => {
                format!("not authorized to publish {path} (the token does not allow it, or another publisher is live there)")
            }
            other => format!("publishing {path} was refused: {other}"),
        };
        relay.router().set_upstream_verdict(&namespace, false);
        tracing::warn!(%reason, "upstream refused namespace");
        state.send_replace(LinkState::Refused { reason });
        return;
    }
    relay.router().set_upstream_verdict(&namespace, true);
    let mut serving = JoinSet::new();
    loop {
        tokio::select! {
            subscribed = publication.subscribed() => match subscribed {
                Ok(Some(subscribed)) => {
                    let relay = relay.clone();
                    serving.spawn(async move { relay.serve_subscribe(subscribed, upstream_id).await });
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%namespace, %err, "upstream refused namespace");
                    break;
                }
            },
            Some(_) = serving.join_next(), if !serving.is_empty() => {}
        }
    }
    while serving.join_next().await.is_some() {}
}
