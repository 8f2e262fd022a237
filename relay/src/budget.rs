//! One byte budget for the caches of every track in the process (`--cache-bytes`).
//!
//! Each cache counts its bytes into the budget; after a write pushes the total over the
//! limit, the oldest group across all tracks (by a process-wide stamp given when the group
//! began) is evicted, again and again, until the total fits. A track's newest group is
//! never evicted (it is where new subscribers start), and a single group is capped by
//! `CacheLimits::max_group_bytes`, so the total stays within the budget plus one object
//! in flight, unless the newest groups alone exceed it.
//!
//! Lock order: the budget's list, then one track at a time. A track never takes the
//! budget's list while it holds its own lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::cache::TrackState;

struct Registered {
    state: Weak<Mutex<TrackState>>,
    /// Wakes the track's followers after an eviction.
    version: watch::Sender<u64>,
}

pub struct CacheBudget {
    limit: usize,
    used: AtomicUsize,
    next_stamp: AtomicU64,
    caches: Mutex<Vec<Registered>>,
}

impl CacheBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            next_stamp: AtomicU64::new(0),
            caches: Mutex::new(Vec::new()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by all caches under this budget.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn next_stamp(&self) -> u64 {
        self.next_stamp.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register(&self, state: &Arc<Mutex<TrackState>>, version: &watch::Sender<u64>) {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|c| c.state.strong_count() > 0);
        caches.push(Registered {
            state: Arc::downgrade(state),
            version: version.clone(),
        });
    }

    /// Evicts the oldest evictable groups across all tracks until the budget holds.
    pub(crate) fn enforce(&self) {
        while self.used() > self.limit {
            let caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = caches
                .iter()
                .filter_map(|c| {
                    let state = c.state.upgrade()?;
                    let stamp = state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .oldest_evictable_stamp()?;
                    Some((stamp, state, c.version.clone()))
                })
                .min_by_key(|(stamp, _, _)| *stamp);
            drop(caches);
            let Some((_, state, version)) = oldest else {
                // Only newest groups are left: they stay.
                return;
            };
            let evicted = state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .evict_oldest();
            version.send_modify(|v| *v = v.wrapping_add(1));
            if !evicted {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{CacheLimits, GroupInfo, TrackCache};

    #[test]
    fn twenty_tracks_stay_within_one_budget_and_keep_their_newest_groups() {
        const OBJECT: usize = 10_000;
        let budget = CacheBudget::new(1_000_000);
        let limits = CacheLimits {
            max_groups: 100,
            max_bytes: usize::MAX,
            max_group_bytes: 200_000,
            keep_for: std::time::Duration::ZERO,
        };
        let tracks: Vec<TrackCache> = (0..20)
            .map(|_| TrackCache::with_budget(limits, &budget))
            .collect();
        let mut rng: u64 = 0x2545F4914F6CDD1D;
        let mut seqs: [Option<u64>; 20] = [None; 20];
        let mut next_group = [0u64; 20];
        for _ in 0..5_000 {
            // xorshift: a deterministic mix of tracks writing in turn.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let t = (rng % 20) as usize;
            let start = seqs[t].is_none() || rng.is_multiple_of(10);
            if start {
                if let Some(seq) = seqs[t] {
                    tracks[t].end_group(seq);
                }
                let info = GroupInfo {
                    group_id: next_group[t],
                    subgroup_id: 0,
                    priority: 0,
                };
                next_group[t] += 1;
                seqs[t] = Some(tracks[t].begin_group(info).unwrap());
            }
            let seq = seqs[t].unwrap();
            let object = tracks[t].group_count() as u64 * 1000 + rng % 1000;
            let _ = tracks[t].push_object(seq, object, Bytes::from(vec![0u8; OBJECT]));
            assert!(
                budget.used() <= budget.limit() + OBJECT,
                "{} > budget",
                budget.used()
            );
            let sum: usize = tracks.iter().map(|c| c.bytes()).sum();
            assert_eq!(sum, budget.used(), "accounting drifted");
        }
        for (t, track) in tracks.iter().enumerate() {
            if next_group[t] > 0 {
                assert_eq!(
                    track.newest_group_id(),
                    Some(next_group[t] - 1),
                    "track {t} lost its newest group"
                );
            }
        }
        drop(tracks);
        assert_eq!(budget.used(), 0, "dropped caches give their bytes back");
    }

    #[test]
    fn an_oversized_group_is_dropped_not_cached() {
        let budget = CacheBudget::new(100_000);
        let limits = CacheLimits {
            max_group_bytes: 30_000,
            ..Default::default()
        };
        let cache = TrackCache::with_budget(limits, &budget);
        let seq = cache
            .begin_group(GroupInfo {
                group_id: 1,
                subgroup_id: 0,
                priority: 0,
            })
            .unwrap();
        cache
            .push_object(seq, 0, Bytes::from(vec![0u8; 20_000]))
            .unwrap();
        let err = cache
            .push_object(seq, 1, Bytes::from(vec![0u8; 20_000]))
            .unwrap_err();
        assert_eq!(err, crate::cache::CacheError::GroupTooLarge(1));
        assert_eq!(budget.used(), 0);
        assert_eq!(cache.group_count(), 0);
    }
}
