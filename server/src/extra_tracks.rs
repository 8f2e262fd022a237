//! The origin's tracks inside broadcasts others publish come from more than one service
//! (the interaction timeline, the transcoder's catalog and rungs); the relay engine takes
//! one [`ExtraTracks`], so this asks each in turn.

use std::sync::Arc;

use moq_transport::coding::TrackNamespace;
use stagecast_relay::cache::TrackCache;
use stagecast_relay::hooks::ExtraTracks;

/// Several providers; the first that serves a track name wins.
pub struct ExtraTrackSet(Vec<Arc<dyn ExtraTracks>>);

impl ExtraTrackSet {
    pub fn new(providers: Vec<Arc<dyn ExtraTracks>>) -> Self {
        Self(providers)
    }
}

impl ExtraTracks for ExtraTrackSet {
    fn track(&self, namespace: &TrackNamespace, name: &str) -> Option<TrackCache> {
        self.0
            .iter()
            .find_map(|provider| provider.track(namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagecast_relay::cache::CacheLimits;

    /// Serves one track name, with a cache whose group count tells providers apart.
    struct One(&'static str, TrackCache);

    impl ExtraTracks for One {
        fn track(&self, _: &TrackNamespace, name: &str) -> Option<TrackCache> {
            (name == self.0).then(|| self.1.clone())
        }
    }

    #[test]
    fn asks_each_provider_in_order() {
        let first = TrackCache::new(CacheLimits::default());
        let second = TrackCache::new(CacheLimits::default());
        let _ = second.begin_group(stagecast_relay::cache::GroupInfo {
            group_id: 1,
            subgroup_id: 0,
            priority: 0,
        });
        let set = ExtraTrackSet::new(vec![
            Arc::new(One("interaction", first)),
            Arc::new(One("catalog", second.clone())),
            Arc::new(One("catalog", TrackCache::new(CacheLimits::default()))),
        ]);
        let namespace = TrackNamespace::from_utf8_path("live/a");
        assert_eq!(
            set.track(&namespace, "interaction")
                .map(|c| c.group_count()),
            Some(0)
        );
        assert_eq!(
            set.track(&namespace, "catalog").map(|c| c.group_count()),
            Some(1),
            "the first provider of a name"
        );
        assert!(set.track(&namespace, "video").is_none());
    }
}
