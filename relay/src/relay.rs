//! The relay engine: answers SUBSCRIBEs from whichever source publishes the track, through
//! one shared subscription and cache per track, and tracks the sessions it serves.
//!
//! A SUBSCRIBE is resolved in this order: a broadcast published in this process, a peer
//! session that published the namespace here, the upstream link. A request is never sent
//! back to the session it came from, which is what keeps chains free of routing loops.

use stagecast_proto::sync::lock_or_recover;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use moq_transport::coding::{Location, TrackNamespace};
use moq_transport::serve::{ServeError, Track};
use moq_transport::session::{SubscribeInfo, Subscribed, Subscriber};
use tokio::sync::watch;

use crate::auth::AuthPolicy;
use crate::cache::budget::CacheBudget;
use crate::cache::{CacheLimits, GroupRange, TrackCache};
use crate::control::source_choice::{choose_source, Routed, SourceChoice};
use crate::fetch_merge::FetchMerger;
use crate::goaway::GoAwayNotice;
use crate::hooks::{ExtraTracks, InteractionAuthority};
use crate::metrics::{GaugeGuard, Metrics};
use crate::registry::{SharedTrack, TrackRegistry};
use crate::router::{Router, SessionId, Source};
use crate::source::{run_source, SourceRequest};
use crate::track_io::deliver;
use crate::upstream::UpstreamSession;
use moq_transport::message::RequestErrorCode;

/// Settings of the engine itself (not of its listeners).
#[derive(Clone, Default)]
pub struct RelayConfig {
    pub cache: CacheLimits,
    /// One byte budget for every track cached here; `None` for a publisher's own node.
    pub cache_bytes: Option<usize>,
    pub auth: AuthPolicy,
    /// Whether this node serves through an upstream link (then it is ready only while the
    /// link is up).
    pub has_upstream: bool,
    /// The origin's interaction authority; without one, interaction streams are forwarded
    /// to the upstream link.
    pub interaction: Option<Arc<dyn InteractionAuthority>>,
    /// Tracks this node adds to broadcasts routed here (the origin's `interaction`
    /// track), served before any other source.
    pub extra_tracks: Option<Arc<dyn ExtraTracks>>,
    /// FETCHes per session, groups per FETCH, bytes per FETCH.
    pub fetch: crate::fetch_merge::FetchLimits,
    /// What one session may hold and how long it has to set up.
    pub sessions: SessionLimits,
}

/// Bounds on one peer session.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// How long a new connection has to complete the MoQ SETUP exchange (a connection
    /// that never sends one would otherwise be kept alive by the node's keep-alives).
    pub setup_timeout: std::time::Duration,
    /// Interaction streams one downstream session may have forwarded upstream at once.
    pub forward_per_session: usize,
    /// Interaction streams this relay may have forwarded on its upstream link at once.
    pub forward_total: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            setup_timeout: std::time::Duration::from_secs(10),
            forward_per_session: crate::forward_share::DEFAULT_PER_SESSION,
            forward_total: crate::forward_share::DEFAULT_TOTAL,
        }
    }
}

impl RelayConfig {
    /// A node's settings with one cache budget of `cache_bytes` for all its tracks; no
    /// single group may take more than an eighth of it.
    pub fn with_cache_budget(cache_bytes: usize) -> Self {
        Self {
            cache: CacheLimits {
                max_group_bytes: (cache_bytes / 8).max(1 << 20),
                ..Default::default()
            },
            cache_bytes: Some(cache_bytes),
            ..Default::default()
        }
    }
}

struct RelayInner {
    router: Router,
    registry: TrackRegistry,
    metrics: Metrics,
    config: RelayConfig,
    next_session: AtomicU64,
    /// The upstream link's live session, if this relay has an upstream and it is up.
    upstream: watch::Sender<Option<UpstreamSession>>,
    /// Set when the node starts draining: subscriptions are ended with GOING_AWAY.
    draining: watch::Sender<bool>,
    /// What sessions are told when the node drains.
    goaway: watch::Sender<Option<GoAwayNotice>>,
    /// FETCH misses in flight at sources, merged per range.
    fetches: FetchMerger,
    /// The upstream link's interaction streams, shared among downstream sessions.
    forward_shares: std::sync::Mutex<crate::forward_share::ForwardShares>,
}

/// Handle to the engine; clones share it.
#[derive(Clone)]
pub struct Relay(Arc<RelayInner>);

impl Relay {
    pub fn new(config: RelayConfig) -> Self {
        let metrics = Metrics::default();
        // One budget for cached groups and for FETCH data in flight.
        let budget = CacheBudget::new(config.cache_bytes.unwrap_or(usize::MAX));
        let fetches = FetchMerger::new(budget.clone(), config.fetch);
        let forward_shares = std::sync::Mutex::new(crate::forward_share::ForwardShares::new(
            config.sessions.forward_per_session,
            config.sessions.forward_total,
        ));
        Self(Arc::new(RelayInner {
            router: Router::default(),
            registry: TrackRegistry::new(config.cache, budget.clone(), metrics.clone()),
            metrics,
            config,
            next_session: AtomicU64::new(1),
            upstream: watch::Sender::new(None),
            draining: watch::Sender::new(false),
            goaway: watch::Sender::new(None),
            fetches,
            forward_shares,
        }))
    }

    pub fn router(&self) -> &Router {
        &self.0.router
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn config(&self) -> &RelayConfig {
        &self.0.config
    }

    pub fn fetch_merger(&self) -> &FetchMerger {
        &self.0.fetches
    }

    /// The shares of the upstream link's interaction streams.
    pub fn forward_shares(&self) -> std::sync::MutexGuard<'_, crate::forward_share::ForwardShares> {
        lock_or_recover(&self.0.forward_shares)
    }

    pub fn registry(&self) -> &TrackRegistry {
        &self.0.registry
    }

    pub fn next_session_id(&self) -> SessionId {
        self.0.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn set_upstream(&self, session: Option<UpstreamSession>) {
        self.0.upstream.send_replace(session);
    }

    /// The upstream session now and as it changes (`None` while disconnected or absent).
    pub fn upstream(&self) -> watch::Receiver<Option<UpstreamSession>> {
        self.0.upstream.subscribe()
    }

    /// Starts draining: every session gets a GOAWAY carrying `notice`, every subscription
    /// served here ends with PUBLISH_DONE GOING_AWAY so its subscriber moves elsewhere,
    /// and new ones are refused.
    pub fn start_drain(&self, notice: GoAwayNotice) {
        self.0.goaway.send_replace(Some(notice));
        self.0.draining.send_replace(true);
    }

    /// Becomes `Some` when the node starts draining.
    pub fn goaway_notice(&self) -> watch::Receiver<Option<GoAwayNotice>> {
        self.0.goaway.subscribe()
    }

    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    /// Whether the node can serve: not draining, and its upstream link up if it has one.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && (!self.0.config.has_upstream || self.0.upstream.borrow().is_some())
    }

    /// Answers one SUBSCRIBE that arrived on session `from`, serving it until the
    /// subscriber leaves or the track ends.
    pub async fn serve_subscribe(&self, subscribed: Subscribed, from: SessionId) {
        self.0.metrics.subscribes_total.inc();
        if self.is_draining() {
            self.0.metrics.subscribes_refused_total.inc();
            let _ = subscribed.close(ServeError::Closed(RequestErrorCode::GoingAway as u64));
            return;
        }
        let namespace = subscribed.info.track_namespace.clone();
        let name = subscribed.info.track_name.clone();
        let (cache, shared) = match self.resolve(&namespace, &name, from, true).await {
            Ok(found) => found,
            Err(err) => {
                self.0.metrics.subscribes_refused_total.inc();
                tracing::debug!(%namespace, track = %name, %err, "subscribe refused");
                let _ = subscribed.close(err);
                return;
            }
        };
        // Follow before counting the subscription as served, so whoever waits on the count
        // knows every group from now on reaches this subscriber.
        let largest = cache
            .largest_location()
            .map(|(group, object)| Location::new(group, object));
        let follower = cache.follow_range(subscription_range(&subscribed.info, largest));
        let _serving = GaugeGuard::new(&self.0.metrics.subscriptions);
        let (writer, reader) = Track::new(namespace, name).produce();
        // The reader is empty until delivery starts, so its own largest location would be
        // none and a Joining FETCH for this subscription could not be resolved.
        let serve = subscribed.serve_with_largest_location(reader, largest);
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => {
                if let Err(err) = result {
                    tracing::debug!(%err, "subscription ended");
                }
            }
            () = deliver(follower, writer, drained(self.0.draining.subscribe()), &self.0.metrics) => {
                // The track ended; let the session flush what it holds and say so.
                let _ = serve.await;
            }
        }
        drop(shared);
    }

    /// Follows a track from inside this process (the origin's own use of its broadcasts),
    /// through the same cache and source subscription as any subscriber.
    pub async fn follow(
        &self,
        namespace: &TrackNamespace,
        name: &str,
    ) -> Result<FollowedTrack, ServeError> {
        let name = moq_transport::coding::TrackName::from(name);
        let (cache, shared) = self.resolve(namespace, &name, SessionId::MAX, true).await?;
        Ok(FollowedTrack {
            follower: cache.follow(),
            _shared: shared,
        })
    }

    /// Follows a track as its publisher sends it, past any [`ExtraTracks`] this node
    /// serves under the same name: how a node that replaces a track (the origin's
    /// transcoder serves its own `catalog`) reads the one it replaces.
    pub async fn follow_published(
        &self,
        namespace: &TrackNamespace,
        name: &str,
    ) -> Result<FollowedTrack, ServeError> {
        let name = moq_transport::coding::TrackName::from(name);
        let (cache, shared) = self
            .resolve(namespace, &name, SessionId::MAX, false)
            .await?;
        Ok(FollowedTrack {
            follower: cache.follow(),
            _shared: shared,
        })
    }

    async fn resolve(
        &self,
        namespace: &TrackNamespace,
        name: &moq_transport::coding::TrackName,
        from: SessionId,
        extra: bool,
    ) -> Result<(TrackCache, Option<Arc<SharedTrack>>), ServeError> {
        let path = stagecast_proto::path::path_from_namespace(namespace);
        let not_found = || {
            ServeError::NotFoundWithId(
                format!("no broadcast {path}/{name} is published here"),
                Default::default(),
            )
        };
        if let Some(cache) = extra.then(|| self.extra_track(namespace, name)).flatten() {
            return Ok((cache, None));
        }
        if let Some(Source::Local(broadcast)) = self.0.router.route(namespace) {
            let cache = broadcast.track(&name.to_string()).ok_or_else(not_found)?;
            return Ok((cache, None));
        }
        let relay = self.clone();
        let request = SourceRequest {
            namespace: namespace.clone(),
            name: name.clone(),
            from,
        };
        let shared = self
            .0
            .registry
            .get_or_start(namespace, name, move |cache, ready| {
                tokio::spawn(run_source(relay, request, cache, ready))
            });
        shared.ready().await.map_err(|err| match err {
            ServeError::NotFound => not_found(),
            other => other,
        })?;
        Ok((shared.cache.clone(), Some(shared)))
    }

    /// The cache of a track this node holds now (published here, or subscribed at a source
    /// for someone), without subscribing anywhere.
    pub fn cached_track(
        &self,
        namespace: &TrackNamespace,
        name: &moq_transport::coding::TrackName,
    ) -> Option<TrackCache> {
        if let Some(cache) = self.extra_track(namespace, name) {
            return Some(cache);
        }
        if let Some(Source::Local(broadcast)) = self.0.router.route(namespace) {
            return broadcast.track(&name.to_string());
        }
        self.0
            .registry
            .get(namespace, name)
            .map(|shared| shared.cache.clone())
    }

    fn extra_track(
        &self,
        namespace: &TrackNamespace,
        name: &moq_transport::coding::TrackName,
    ) -> Option<TrackCache> {
        let extra = self.0.config.extra_tracks.as_ref()?;
        extra.track(namespace, &name.to_string())
    }

    /// The peer to subscribe at for a track in `namespace`, for a request that came from
    /// session `from`: the session that published the namespace here, else the upstream.
    /// Never `from` itself: answering a request from where it came would loop.
    pub fn source_subscriber(
        &self,
        namespace: &TrackNamespace,
        from: SessionId,
    ) -> Option<Subscriber> {
        let route = self.0.router.route(namespace);
        let routed = match &route {
            Some(Source::Session { session, .. }) => Routed::Peer(*session),
            Some(Source::Local(_)) => Routed::Local,
            None => Routed::Nowhere,
        };
        let upstream = self.0.upstream.borrow();
        match choose_source(routed, upstream.as_ref().map(|u| u.id), from)? {
            SourceChoice::Peer(_) => match route {
                Some(Source::Session { subscriber, .. }) => Some(*subscriber),
                _ => None,
            },
            SourceChoice::Upstream(_) => upstream.as_ref().map(|u| u.subscriber.clone()),
        }
    }
}

/// A track followed in-process; holds its source subscription while alive.
pub struct FollowedTrack {
    pub follower: crate::cache::TrackFollower,
    _shared: Option<Arc<SharedTrack>>,
}

/// The groups a SUBSCRIBE asks for, from its filter (draft-18 §5.1.2) given the largest
/// location held now. moq-transport's delivery filter drops objects outside the filter;
/// this picks where in the cache delivery starts, so a start in the past is served from
/// the groups held (an alternate rendition joined at the next group boundary) and a start
/// in the future waits for that group instead of streaming groups that would be dropped.
/// Without a filter, or with an AbsoluteStart of {0, 0} (its equal), a subscriber starts
/// at the newest group.
pub fn subscription_range(info: &SubscribeInfo, largest: Option<Location>) -> GroupRange {
    let filter = info.delivery_filter(largest);
    let start = filter
        .start_location
        .filter(|start| (start.group_id, start.object_id) != (0, 0))
        .map(|start| start.group_id);
    GroupRange {
        start,
        end: filter.end_group_id,
    }
}

/// Resolves once the node starts draining.
async fn drained(mut draining: watch::Receiver<bool>) {
    let _ = draining.wait_for(|d| *d).await;
}
