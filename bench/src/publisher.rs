//! The synthetic live publisher: one track of `fps` objects a second, a new group every
//! second, each object stamped with its send time (see `payload.rs`).
//!
//! It publishes exactly as `stagecast publish` does: a small relay node in this process
//! holds the broadcast ([`LocalBroadcast`]) and its upstream link to the relay under test
//! announces the namespace (PUBLISH_NAMESPACE) and answers the relay's SUBSCRIBE from the
//! local cache.

use stagecast_proto::sync::lock_or_recover;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moq_transport::coding::TrackNamespace;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_relay::cache::{CacheLimits, GroupInfo, TrackCache};
use stagecast_relay::local::LocalBroadcast;
use stagecast_relay::router::{Owner, RouteGuard, Source};
use stagecast_relay::upstream::{run_upstream, LinkState, UpstreamConfig};
use stagecast_relay::{Relay, RelayConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::payload;

/// How long the link to the relay may take to come up.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
const PRIORITY: u8 = 1;

/// What the publisher did, object by object.
#[derive(Default)]
pub struct PublishLog {
    /// Send time of every object, in order.
    pub sent_ns: Vec<u64>,
    /// How late each object was sent after its scheduled tick (load generator saturation).
    pub tick_lag_us: Vec<u32>,
}

pub struct SyntheticPublisher {
    log: Arc<Mutex<PublishLog>>,
    pacer: JoinHandle<()>,
    link: JoinHandle<()>,
    _route: RouteGuard,
}

impl SyntheticPublisher {
    /// Connects to `url` (presenting `token`, if any), announces `namespace` and starts
    /// publishing track `track`.
    pub async fn start(
        url: Url,
        trust: ClientTrust,
        namespace: TrackNamespace,
        track: &str,
        fps: u32,
        object_bytes: usize,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        let relay = Relay::new(RelayConfig::default());
        let broadcast = LocalBroadcast::new(namespace.clone());
        let cache = broadcast.create_track(track, CacheLimits::default());
        let route = relay
            .router()
            .register(namespace, Source::Local(broadcast), Owner::Local)?;
        let (state_tx, mut state_rx) = watch::channel(LinkState::Connecting { url: url.clone() });
        let link = tokio::spawn(run_upstream(
            relay,
            ClientEndpoint::new()?,
            UpstreamConfig {
                urls: vec![url],
                trust,
                token,
                stop_when_refused: false,
            },
            state_tx,
        ));
        let connected = matches!(
            tokio::time::timeout(
                LINK_TIMEOUT,
                state_rx.wait_for(|s| matches!(s, LinkState::Connected { .. })),
            )
            .await,
            Ok(Ok(_))
        );
        if !connected {
            link.abort();
            let state = format!("{:?}", *state_rx.borrow());
            anyhow::bail!("the publisher could not connect to the relay: {state}");
        }
        let log = Arc::new(Mutex::new(PublishLog::default()));
        let pacer = tokio::spawn(pace(cache, fps.max(1), object_bytes, log.clone()));
        Ok(Self {
            log,
            pacer,
            link,
            _route: route,
        })
    }

    /// Runs `f` over what was published so far.
    pub fn with_log<T>(&self, f: impl FnOnce(&PublishLog) -> T) -> T {
        f(&lock_or_recover(&self.log))
    }

    pub fn stop(self) {
        self.pacer.abort();
        self.link.abort();
    }
}

/// Writes objects into the track's cache on a fixed clock until aborted.
async fn pace(cache: TrackCache, fps: u32, object_bytes: usize, log: Arc<Mutex<PublishLog>>) {
    let period = Duration::from_secs(1) / fps;
    let mut ticks = tokio::time::interval(period);
    // A late load generator catches up at once rather than shifting every later object.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut group_id = 0u64;
    let mut open: Option<u64> = None;
    let mut object_id = 0u64;
    loop {
        let scheduled = ticks.tick().await;
        let lag = scheduled.elapsed();
        if object_id == 0 {
            match cache.begin_group(GroupInfo {
                group_id,
                subgroup_id: 0,
                priority: PRIORITY,
            }) {
                Ok(seq) => open = Some(seq),
                Err(err) => {
                    tracing::error!("the publisher's cache refused a group: {err}");
                    return;
                }
            }
        }
        let Some(seq) = open else { return };
        let sent = payload::now_ns();
        if let Err(err) = cache.push_object(seq, object_id, payload::make(object_bytes, sent)) {
            tracing::error!("the publisher's cache refused an object: {err}");
            return;
        }
        {
            let mut log = lock_or_recover(&log);
            log.sent_ns.push(sent);
            log.tick_lag_us
                .push(u32::try_from(lag.as_micros()).unwrap_or(u32::MAX));
        }
        object_id += 1;
        if object_id == u64::from(fps) {
            cache.end_group(seq);
            group_id += 1;
            object_id = 0;
        }
    }
}
