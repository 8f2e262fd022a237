//! Keeps one track's source subscription alive for its subscribers: subscribes at the
//! source (a publisher's session or the upstream link), fills the shared cache, and when the
//! source is lost (a publisher reconnecting, an upstream relay restarting) subscribes again
//! at whatever source the route then names, so subscribers continue on the next group
//! without resubscribing. Only when no source comes back within the resume window
//! ([`ResumePolicy`]) does the track end for them.

use std::time::Duration;

use moq_transport::coding::{TrackName, TrackNamespace};
use moq_transport::message::PublishDoneCode;
use moq_transport::serve::{ServeError, Track};
use moq_transport::session::Subscriber;
use tokio::sync::watch;

use crate::cache::{TrackCache, TrackEnd};
use crate::control::resume::{OnLost, ResumePolicy};
use crate::registry::Readiness;
use crate::relay::Relay;
use crate::router::SessionId;
use crate::track_io::{fill_cache, SourceEnd};

/// How long a source gets to accept a SUBSCRIBE.
const SOURCE_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a subscription asks of the source.
pub struct SourceRequest {
    pub namespace: TrackNamespace,
    pub name: TrackName,
    /// The session the first subscriber came from, never asked for its own track back.
    pub from: SessionId,
}

/// Runs until the track ends or its last subscriber leaves (the task is then aborted).
pub async fn run_source(
    relay: Relay,
    request: SourceRequest,
    cache: TrackCache,
    ready: watch::Sender<Readiness>,
) {
    let mut policy = ResumePolicy::default();
    loop {
        let resumed = policy.is_resuming();
        let subscriber = match relay.source_subscriber(&request.namespace, request.from) {
            Some(subscriber) => subscriber,
            None if !resumed => {
                fail(&cache, &ready, ServeError::NotFound);
                return;
            }
            None => match wait_for_source(&relay, &request, &policy).await {
                Some(subscriber) => subscriber,
                None => {
                    end_lost(&cache, &request, "no source came back");
                    return;
                }
            },
        };
        let (writer, reader) =
            Track::new(request.namespace.clone(), request.name.clone()).produce();
        let mut subscriber = subscriber;
        let accepted =
            tokio::time::timeout(SOURCE_ACCEPT_TIMEOUT, subscriber.subscribe_open(writer)).await;
        let subscription = match accepted {
            Ok(Ok(subscription)) => subscription,
            Ok(Err(err)) if !resumed => {
                fail(&cache, &ready, err);
                return;
            }
            Err(_) if !resumed => {
                fail(&cache, &ready, ServeError::Timeout);
                return;
            }
            Ok(Err(_)) | Err(_) => {
                // The route names a source that cannot serve the track (yet): wait for the
                // routes to change, within the resume time.
                match wait_for_source(&relay, &request, &policy).await {
                    Some(_) => continue,
                    None => {
                        end_lost(&cache, &request, "the source refused to resume");
                        return;
                    }
                }
            }
        };
        relay.metrics().upstream_subscribes_total.inc();
        if resumed {
            relay.metrics().source_resumes_total.inc();
            tracing::info!(namespace = %request.namespace, track = %request.name, "source resumed");
        }
        ready.send_replace(Readiness::Ready);
        let groups_before = cache.newest_group_id();
        let end = fill_cache(reader, &cache, relay.metrics()).await;
        drop(subscription);
        if cache.newest_group_id() != groups_before {
            policy.on_progress();
        }
        match end {
            SourceEnd::Finished => {
                cache.end(TrackEnd::Finished);
                return;
            }
            SourceEnd::Lost { code, reason } => {
                tracing::info!(namespace = %request.namespace, track = %request.name, code, %reason, "source lost; waiting for it to come back");
                match policy.on_lost(tokio::time::Instant::now()) {
                    OnLost::GiveUp => {
                        end_lost(&cache, &request, "the source kept breaking off");
                        return;
                    }
                    OnLost::RetryAfter(pause) => tokio::time::sleep(pause).await,
                }
            }
        }
    }
}

fn fail(cache: &TrackCache, ready: &watch::Sender<Readiness>, err: ServeError) {
    cache.end(TrackEnd::Failed {
        code: PublishDoneCode::InternalError as u64,
        reason: err.to_string(),
    });
    ready.send_replace(Readiness::Failed(err));
}

fn end_lost(cache: &TrackCache, request: &SourceRequest, why: &str) {
    tracing::info!(namespace = %request.namespace, track = %request.name, why, "track ended");
    cache.end(TrackEnd::Failed {
        code: PublishDoneCode::InternalError as u64,
        reason: why.to_string(),
    });
}

/// Waits, within the resume window, for the routes or the upstream link to change and name
/// a source for the track.
async fn wait_for_source(
    relay: &Relay,
    request: &SourceRequest,
    policy: &ResumePolicy,
) -> Option<Subscriber> {
    let mut routes = relay.router().announced();
    let mut upstream = relay.upstream();
    let deadline = policy.wait_deadline(tokio::time::Instant::now());
    // Changes seen from now on; the current state was already found wanting.
    routes.borrow_and_update();
    upstream.borrow_and_update();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return None,
            changed = routes.changed() => if changed.is_err() { return None },
            changed = upstream.changed() => if changed.is_err() { return None },
        }
        if let Some(subscriber) = relay.source_subscriber(&request.namespace, request.from) {
            return Some(subscriber);
        }
    }
}
