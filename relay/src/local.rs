//! A broadcast published inside this process (the origin's demo channel, or the
//! `stagecast publish` command's own node): a namespace with named tracks, each a
//! [`TrackCache`] the publisher writes into and subscribers follow directly.

use stagecast_proto::sync::lock_or_recover;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use moq_transport::coding::TrackNamespace;

use crate::cache::{CacheLimits, TrackCache};

#[derive(Clone)]
pub struct LocalBroadcast {
    namespace: TrackNamespace,
    tracks: Arc<Mutex<HashMap<String, TrackCache>>>,
}

impl LocalBroadcast {
    pub fn new(namespace: TrackNamespace) -> Self {
        Self {
            namespace,
            tracks: Default::default(),
        }
    }

    pub fn namespace(&self) -> &TrackNamespace {
        &self.namespace
    }

    /// Creates (or replaces) a track and returns the cache to write it into.
    pub fn create_track(&self, name: &str, limits: CacheLimits) -> TrackCache {
        let cache = TrackCache::new(limits);
        lock_or_recover(&self.tracks).insert(name.to_string(), cache.clone());
        cache
    }

    /// The track named `name`, if it was created.
    pub fn track(&self, name: &str) -> Option<TrackCache> {
        lock_or_recover(&self.tracks).get(name).cloned()
    }
}
