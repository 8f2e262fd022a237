//! One byte budget for the caches of every track in the process (`--cache-bytes`), and for
//! FETCH data in flight.
//!
//! Each cache counts its bytes (payloads plus per-object and per-group overheads) into the
//! budget; after a write pushes the total over the limit, the oldest group across all
//! tracks (by a process-wide stamp given when the group began) is evicted, again and
//! again, until the total fits. A track's newest group is never evicted (it is where new
//! subscribers start), but it counts: when only newest groups are left and the total is
//! still over, [`CacheBudget::enforce`] says so and the writing track drops the group it
//! was growing. So the total stays within the budget plus one object in flight.
//!
//! Data fetched from a source for a FETCH is held outside any track cache, so it is
//! charged here through a [`BudgetCharge`]: a reservation that grows as objects arrive,
//! is refused when even evicting every old group would not make room, or when charges
//! would hold more than [`CHARGE_SHARE`] of the budget (so FETCHes can never squeeze out
//! live groups), and is given back when the fetched range is dropped.
//!
//! Lock order: the budget's list, then one track at a time. A track never takes the
//! budget's list while it holds its own lock.

use stagecast_proto::sync::lock_or_recover;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use super::TrackState;

struct Registered {
    state: Weak<Mutex<TrackState>>,
    /// Wakes the track's followers after an eviction.
    version: watch::Sender<u64>,
}

/// The most of a budget that charges (FETCH data in flight) may hold together: a quarter.
pub const CHARGE_SHARE: (usize, usize) = (1, 4);

pub struct CacheBudget {
    limit: usize,
    used: AtomicUsize,
    /// What charges hold, within `used`.
    charged: AtomicUsize,
    next_stamp: AtomicU64,
    caches: Mutex<Vec<Registered>>,
}

impl CacheBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            charged: AtomicUsize::new(0),
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
        let mut caches = lock_or_recover(&self.caches);
        caches.retain(|c| c.state.strong_count() > 0);
        caches.push(Registered {
            state: Arc::downgrade(state),
            version: version.clone(),
        });
    }

    /// Reserves `bytes` for data held outside the track caches (a fetched range),
    /// evicting old groups to make room; `None` if even that leaves no room.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Option<BudgetCharge> {
        let mut charge = BudgetCharge {
            budget: self.clone(),
            bytes: 0,
        };
        charge.grow(bytes).then_some(charge)
    }

    /// Evicts the oldest evictable groups across all tracks until the budget holds;
    /// `false` if it still does not (only newest groups, and charges, are left).
    pub(crate) fn enforce(&self) -> bool {
        while self.used() > self.limit {
            let caches = lock_or_recover(&self.caches);
            let oldest = caches
                .iter()
                .filter_map(|c| {
                    let state = c.state.upgrade()?;
                    let stamp = lock_or_recover(&state).oldest_evictable_stamp()?;
                    Some((stamp, state, c.version.clone()))
                })
                .min_by_key(|(stamp, _, _)| *stamp);
            drop(caches);
            let Some((_, state, version)) = oldest else {
                // Only newest groups are left: they stay, and the caller decides.
                return false;
            };
            let evicted = lock_or_recover(&state).evict_oldest();
            version.send_modify(|v| *v = v.wrapping_add(1));
            if !evicted {
                return self.used() <= self.limit;
            }
        }
        true
    }
}

/// Bytes reserved in a [`CacheBudget`] for data held outside the track caches; given
/// back when dropped.
pub struct BudgetCharge {
    budget: Arc<CacheBudget>,
    bytes: usize,
}

impl BudgetCharge {
    /// Reserves `more` bytes too; `false` (and nothing more reserved) if the budget has
    /// no room even after evicting old groups.
    pub fn grow(&mut self, more: usize) -> bool {
        let budget = &self.budget;
        let share = budget.limit / CHARGE_SHARE.1 * CHARGE_SHARE.0;
        let before = budget.charged.fetch_add(more, Ordering::Relaxed);
        if before.saturating_add(more) > share {
            budget.charged.fetch_sub(more, Ordering::Relaxed);
            return false;
        }
        budget.add(more);
        if budget.enforce() {
            self.bytes += more;
            true
        } else {
            budget.sub(more);
            budget.charged.fetch_sub(more, Ordering::Relaxed);
            false
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BudgetCharge {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
        self.budget.charged.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{CacheLimits, GroupInfo, TrackCache};

    #[test]
    fn twenty_tracks_stay_within_one_budget_and_keep_their_newest_groups_unless_over_it() {
        const OBJECT: usize = 10_000;
        let budget = CacheBudget::new(1_000_000);
        let limits = CacheLimits {
            max_groups: 100,
            max_bytes: usize::MAX,
            max_group_bytes: 200_000,
            keep_for: std::time::Duration::ZERO,
            ..Default::default()
        };
        let tracks: Vec<TrackCache> = (0..20)
            .map(|_| TrackCache::with_budget(limits, &budget))
            .collect();
        let mut rng: u64 = 0x2545F4914F6CDD1D;
        let mut seqs: [Option<u64>; 20] = [None; 20];
        let mut next_group = [0u64; 20];
        let mut dropped = [false; 20];
        for _ in 0..5_000 {
            // xorshift: a deterministic mix of tracks writing in turn.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let t = (rng % 20) as usize;
            let start = seqs[t].is_none() || rng.is_multiple_of(10);
            if start {
                dropped[t] = false;
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
            if let Err(err) = tracks[t].push_object(seq, object, Bytes::from(vec![0u8; OBJECT])) {
                // Newest groups count: past the budget the group written to goes.
                if matches!(err, crate::cache::CacheError::BudgetFull(_)) {
                    dropped[t] = true;
                }
            }
            assert!(
                budget.used() <= budget.limit(),
                "{} > budget",
                budget.used()
            );
            let sum: usize = tracks.iter().map(|c| c.bytes()).sum();
            assert_eq!(sum, budget.used(), "accounting drifted");
        }
        for (t, track) in tracks.iter().enumerate() {
            if next_group[t] > 0 && !dropped[t] {
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

    #[test]
    fn a_charge_evicts_old_groups_for_room_is_refused_past_it_and_gives_back() {
        let budget = CacheBudget::new(40_000);
        let limits = CacheLimits {
            keep_for: std::time::Duration::ZERO,
            ..Default::default()
        };
        let cache = TrackCache::with_budget(limits, &budget);
        for id in 0..2 {
            let seq = cache
                .begin_group(GroupInfo {
                    group_id: id,
                    subgroup_id: 0,
                    priority: 0,
                })
                .unwrap();
            cache
                .push_object(seq, 0, Bytes::from(vec![0u8; 15_000]))
                .unwrap();
            cache.end_group(seq);
        }
        // 2 x 15,320 cached; a 9,500 charge (within a quarter) evicts the older group.
        let mut charge = budget.charge(9_500).expect("room once the old group goes");
        assert_eq!(
            cache.group_count(),
            1,
            "the old group was evicted for the charge"
        );
        assert!(
            !charge.grow(2_000),
            "charges hold at most a quarter of the budget"
        );
        assert_eq!(charge.bytes(), 9_500);
        let mut other = budget.charge(500).expect("within the quarter");
        assert!(!other.grow(1));
        drop(other);
        assert!(budget.used() <= budget.limit());
        assert!(budget.charge(budget.limit()).is_none());
        drop(charge);
        assert_eq!(budget.used(), cache.bytes());
    }
}
