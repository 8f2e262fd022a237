//! The link from this relay to the next one up the chain (ultimately the origin).
//!
//! Over the link this relay is a subscriber for tracks nobody publishes here, and a
//! publisher of every namespace that is published here (forwarded with PUBLISH_NAMESPACE,
//! so the origin knows the route down to the publisher). When the link drops it is
//! re-established with exponential backoff and jitter, trying each configured upstream in
//! turn, and the namespaces are forwarded again.

use std::collections::HashMap;
use std::time::Duration;

use moq_transport::coding::TrackNamespace;
use moq_transport::session::{Publisher, Session, Subscriber};
use rand::Rng;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use tokio::sync::watch;
use tokio::task::JoinSet;
use url::Url;

use crate::relay::Relay;
use crate::router::SessionId;
use crate::session::run_session;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An upstream that does not complete its handshake within this is given up for the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A link that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The upstream session while it is up.
#[derive(Clone)]
pub struct UpstreamSession {
    pub id: SessionId,
    pub url: Url,
    pub subscriber: Subscriber,
}

/// Where the link stands, for logs and progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting { url: Url },
    Connected { url: Url },
    Disconnected { reason: String, retry_in: Duration },
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Upstreams in order of preference; the next is tried when one fails.
    pub urls: Vec<Url>,
    pub trust: ClientTrust,
}

/// Runs the link until the process ends. `state` reports its progress.
pub async fn run_upstream(
    relay: Relay,
    client: ClientEndpoint,
    config: UpstreamConfig,
    state: watch::Sender<LinkState>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut attempt: usize = 0;
    loop {
        let Some(url) = config.urls.get(attempt % config.urls.len().max(1)).cloned() else {
            return;
        };
        state.send_replace(LinkState::Connecting { url: url.clone() });
        let started = tokio::time::Instant::now();
        let reason = match connect(&client, &url, &config.trust).await {
            Ok((session, publisher, subscriber)) => {
                let id = relay.next_session_id();
                if relay.metrics().upstream_connected.get() == 0 && attempt > 0 {
                    relay.metrics().upstream_reconnects_total.inc();
                }
                relay.metrics().upstream_connected.inc();
                relay.set_upstream(Some(UpstreamSession {
                    id,
                    url: url.clone(),
                    subscriber: subscriber.clone(),
                }));
                state.send_replace(LinkState::Connected { url: url.clone() });
                tracing::info!(%url, session = id, "upstream link up");
                let result = tokio::select! {
                    result = run_session(&relay, id, session, Some(publisher.clone()), Some(subscriber)) => result,
                    () = forward_namespaces(relay.clone(), id, publisher) => Ok(()),
                };
                relay.set_upstream(None);
                relay.metrics().upstream_connected.dec();
                match result {
                    Ok(()) => "upstream closed the session".to_string(),
                    Err(err) => err.to_string(),
                }
            }
            Err(err) => err,
        };
        if started.elapsed() >= STABLE_AFTER {
            backoff = BACKOFF_MIN;
        }
        // The next attempt goes to the next upstream in order (failover), and round again.
        attempt += 1;
        let jitter = rand::thread_rng().gen_range(0.5..1.0);
        let retry_in = backoff.mul_f64(jitter);
        tracing::warn!(%url, %reason, ?retry_in, "upstream link down");
        state.send_replace(LinkState::Disconnected { reason, retry_in });
        tokio::time::sleep(retry_in).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn connect(
    client: &ClientEndpoint,
    url: &Url,
    trust: &ClientTrust,
) -> Result<(Session, Publisher, Subscriber), String> {
    let (session, transport) = tokio::time::timeout(CONNECT_TIMEOUT, client.connect(url, trust))
        .await
        .map_err(|_| format!("no answer from {url} within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    Session::connect(session.into(), None, transport)
        .await
        .map_err(|e| format!("MoQ setup with {url} failed: {e}"))
}

/// Keeps every namespace published here (except those that came from the upstream
/// itself) published upstream too, and answers the SUBSCRIBEs that arrive for them.
async fn forward_namespaces(relay: Relay, upstream_id: SessionId, publisher: Publisher) {
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
) {
    let publication = match publisher.publish_namespace_start(namespace.clone()).await {
        Ok(publication) => publication,
        Err(err) => {
            tracing::warn!(%namespace, %err, "could not forward namespace upstream");
            return;
        }
    };
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
