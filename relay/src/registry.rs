//! One subscription to a source per track, however many subscribers want it.
//!
//! The first subscriber of a track starts the source subscription (the "cache lock" of a
//! CDN: concurrent requests for the same track merge into one); later ones share it. The
//! entry lives as long as any subscriber holds its [`SharedTrack`]; when the last one
//! leaves, the source subscription is cancelled. What feeds the cache is the caller's
//! task ([`crate::source`]); this table only shares it.

use stagecast_proto::sync::lock_or_recover;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use moq_transport::coding::{TrackName, TrackNamespace};
use moq_transport::serve::ServeError;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::cache::budget::CacheBudget;
use crate::cache::{CacheLimits, TrackCache};
use crate::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TrackKey {
    namespace: TrackNamespace,
    name: TrackName,
}

/// Where a shared subscription stands.
#[derive(Clone, Debug)]
pub enum Readiness {
    Pending,
    Ready,
    Failed(ServeError),
}

/// A track subscribed at a source, shared by its subscribers.
pub struct SharedTrack {
    key: TrackKey,
    pub cache: TrackCache,
    ready: watch::Receiver<Readiness>,
    task: AbortHandle,
    registry: TrackRegistry,
}

impl SharedTrack {
    /// Waits until the source accepted the subscription or refused it.
    pub async fn ready(&self) -> Result<(), ServeError> {
        let mut ready = self.ready.clone();
        let outcome = ready
            .wait_for(|r| !matches!(r, Readiness::Pending))
            .await
            .map(|r| r.clone());
        match outcome {
            Ok(Readiness::Failed(err)) => Err(err),
            Ok(_) => Ok(()),
            Err(_) => Err(ServeError::Internal("source task ended".into())),
        }
    }
}

impl Drop for SharedTrack {
    fn drop(&mut self) {
        self.task.abort();
        self.registry.metrics.upstream_subscriptions.dec();
        let mut entries = self.registry.lock();
        if entries
            .get(&self.key)
            .is_some_and(|weak| weak.strong_count() == 0)
        {
            entries.remove(&self.key);
        }
    }
}

/// The table of shared source subscriptions.
#[derive(Clone)]
pub struct TrackRegistry {
    entries: Arc<Mutex<HashMap<TrackKey, Weak<SharedTrack>>>>,
    limits: CacheLimits,
    budget: Arc<CacheBudget>,
    metrics: Metrics,
}

impl TrackRegistry {
    pub fn new(limits: CacheLimits, budget: Arc<CacheBudget>, metrics: Metrics) -> Self {
        Self {
            entries: Default::default(),
            limits,
            budget,
            metrics,
        }
    }

    /// The byte budget all these tracks' caches share.
    pub fn budget(&self) -> &Arc<CacheBudget> {
        &self.budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TrackKey, Weak<SharedTrack>>> {
        lock_or_recover(&self.entries)
    }

    /// Number of tracks currently subscribed at sources.
    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live shared subscription of a track, if there is one.
    pub fn get(&self, namespace: &TrackNamespace, name: &TrackName) -> Option<Arc<SharedTrack>> {
        let key = TrackKey {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let found = self.lock().get(&key).and_then(Weak::upgrade);
        // Dropped (if it was the last reference) outside the lock, which its Drop takes.
        found.filter(|shared| !shared.cache.is_ended())
    }

    /// The shared subscription for a track, starting one with `start` if there is none (or
    /// the previous one has ended). `start` spawns the task that feeds the cache and
    /// reports readiness.
    pub fn get_or_start(
        &self,
        namespace: &TrackNamespace,
        name: &TrackName,
        start: impl FnOnce(TrackCache, watch::Sender<Readiness>) -> JoinHandle<()>,
    ) -> Arc<SharedTrack> {
        let key = TrackKey {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        // An ended entry found under the lock is released only after the lock is: its
        // Drop takes the same lock.
        let mut stale: Option<Arc<SharedTrack>> = None;
        let shared = {
            let mut entries = self.lock();
            match entries.get(&key).and_then(Weak::upgrade) {
                Some(existing) if !existing.cache.is_ended() => {
                    self.metrics.cache_hits_total.inc();
                    existing
                }
                existing => {
                    stale = existing;
                    self.metrics.cache_misses_total.inc();
                    let cache = TrackCache::with_budget(self.limits, &self.budget);
                    let (ready_tx, ready_rx) = watch::channel(Readiness::Pending);
                    let task = start(cache.clone(), ready_tx);
                    self.metrics.upstream_subscriptions.inc();
                    let shared = Arc::new(SharedTrack {
                        key: key.clone(),
                        cache,
                        ready: ready_rx,
                        task: task.abort_handle(),
                        registry: self.clone(),
                    });
                    entries.insert(key, Arc::downgrade(&shared));
                    shared
                }
            }
        };
        drop(stale);
        shared
    }
}
