//! The group cache of one track: the most recent groups, each a list of objects whose
//! payloads are shared `Bytes`, and followers that read them.
//!
//! One writer (the track's source: an upstream subscription or a local publisher) appends
//! groups and objects; any number of [`TrackFollower`]s read them. A follower starts at the
//! start of the newest group (a join point: for video a keyframe), then follows every group
//! as it is written, several at once if the source interleaves them. The cache keeps at most
//! `max_groups` groups and `max_bytes` bytes, evicting the oldest groups first but never the
//! newest. A follower still reading an evicted group is told to abandon it, so what it has
//! forwarded of that group is ended as incomplete rather than passed off as whole.
//!
//! Plain data under a `std::sync::Mutex` (held only for short, non-async sections), plus a
//! `tokio::sync::watch` version counter to wake followers: one cheap wake-up per change
//! however many followers there are.
//!
//! What a cache holds is charged at its cost, not only its payload: every object costs
//! [`OBJECT_OVERHEAD_BYTES`] besides its payload and every group [`GROUP_OVERHEAD_BYTES`],
//! so a flood of empty objects is bounded like a flood of large ones; a group holds at most
//! [`CacheLimits::max_group_objects`] objects. Under a shared [`CacheBudget`] a track's
//! newest group counts too: when only newest groups are left and a write would take the
//! budget past its limit, the group written to is dropped ([`CacheError::BudgetFull`]).
//!
//! - [`follower`]: [`TrackFollower`], one reader's position;
//! - [`budget`]: [`CacheBudget`], one byte budget for every track of a process, which
//!   also charges FETCH data in flight ([`budget::BudgetCharge`]).

pub mod budget;
mod follower;

use stagecast_proto::sync::lock_or_recover;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

pub use budget::CacheBudget;
pub use follower::{FollowStep, GroupRange, TrackFollower};

/// What one cached object costs besides its payload (its entry, the `Bytes` handle and
/// the buffer's own header, rounded up): an empty object is not free.
pub const OBJECT_OVERHEAD_BYTES: usize = 64;
/// What one cached group costs besides its objects.
pub const GROUP_OVERHEAD_BYTES: usize = 256;
/// The default of [`CacheLimits::max_group_objects`] (`--max-group-objects`): a GOP of
/// one object per frame at 60 fps may last almost three minutes.
pub const DEFAULT_MAX_GROUP_OBJECTS: usize = 10_000;

/// Bounds of one track's cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub max_groups: usize,
    pub max_bytes: usize,
    /// A group growing past this is dropped rather than cached, so no single group can
    /// take a whole budget.
    pub max_group_bytes: usize,
    /// Groups younger than this stay beyond `max_groups` (within the byte limits and
    /// [`MAX_CACHED_GROUPS`]): a track of short groups, such as interaction in a chat
    /// burst, keeps a span of time and not only a count, so a follower a little behind is
    /// not cut off.
    pub keep_for: Duration,
    /// A group growing past this many objects is dropped rather than cached.
    pub max_group_objects: usize,
}

/// No track caches more groups than this, however young.
pub const MAX_CACHED_GROUPS: usize = 1024;

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_groups: 4,
            max_bytes: 64 * 1024 * 1024,
            max_group_bytes: 32 * 1024 * 1024,
            keep_for: Duration::from_secs(2),
            max_group_objects: DEFAULT_MAX_GROUP_OBJECTS,
        }
    }
}

/// How a track ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackEnd {
    /// The publisher ended the track normally.
    Finished,
    /// The source failed or vanished; the code is a draft-18 PUBLISH_DONE status code.
    Failed { code: u64, reason: String },
}

/// Identity of a group as its source sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub group_id: u64,
    pub subgroup_id: u64,
    pub priority: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("group {0} is not newer than the newest cached group; dropped as a duplicate")]
    StaleGroup(u64),
    #[error("object {object_id} of group {group_id} is not after the previous object")]
    ObjectOrder { group_id: u64, object_id: u64 },
    #[error("the track has ended")]
    Ended,
    #[error("group {0} grew past the largest group this cache holds; dropped")]
    GroupTooLarge(u64),
    #[error("group {0} grew past the most objects a cached group may hold; dropped")]
    TooManyObjects(u64),
    #[error("group {0} would take the cache past its byte budget; dropped")]
    BudgetFull(u64),
}

impl CacheError {
    /// Whether the error dropped the group written to: nothing more of it is cached, so
    /// its reader may stop reading it.
    pub fn dropped_group(&self) -> bool {
        matches!(
            self,
            CacheError::GroupTooLarge(_)
                | CacheError::TooManyObjects(_)
                | CacheError::BudgetFull(_)
        )
    }

    /// The name of the limit that refused, for `stagecast_limit_refused_total`.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            CacheError::GroupTooLarge(_) => Some("cache_group_bytes"),
            CacheError::TooManyObjects(_) => Some("cache_group_objects"),
            CacheError::BudgetFull(_) => Some("cache_budget"),
            _ => None,
        }
    }
}

struct CachedGroup {
    /// Position in the track's sequence of cached groups; followers refer to groups by it.
    seq: u64,
    /// Age across every track sharing a budget: the budget evicts the lowest stamp first.
    stamp: u64,
    info: GroupInfo,
    objects: Vec<(u64, Bytes)>,
    complete: bool,
    /// What the group is charged: payloads plus overheads.
    bytes: usize,
    began: Instant,
}

pub(super) struct TrackState {
    groups: VecDeque<CachedGroup>,
    next_seq: u64,
    bytes: usize,
    end: Option<TrackEnd>,
    limits: CacheLimits,
    budget: Option<Arc<CacheBudget>>,
}

impl TrackState {
    // Groups are in increasing `seq` but not always contiguous: a group a limit dropped,
    // or one its source abandoned, leaves a hole while newer groups stay. Without a hole
    // a group is at `seq - first`; past one, a binary search finds it.
    #[inline]
    fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.groups.front()?.seq;
        let guess = usize::try_from(seq.checked_sub(first)?).ok()?;
        match self.groups.get(guess) {
            Some(group) if group.seq == seq => Some(guess),
            // Past the newest group: not begun yet (a caught-up follower's question).
            None if self.groups.back().is_some_and(|newest| seq > newest.seq) => None,
            _ => self.groups.binary_search_by_key(&seq, |g| g.seq).ok(),
        }
    }

    #[inline]
    fn group(&self, seq: u64) -> Option<&CachedGroup> {
        self.groups.get(self.index_of(seq)?)
    }

    fn group_mut(&mut self, seq: u64) -> Option<&mut CachedGroup> {
        let index = self.index_of(seq)?;
        self.groups.get_mut(index)
    }

    /// The oldest group held whose `seq` is `seq` or later.
    fn group_from(&self, seq: u64) -> Option<&CachedGroup> {
        if let Some(group) = self.group(seq) {
            return Some(group);
        }
        if self.groups.back()?.seq < seq {
            return None;
        }
        let index = self.groups.partition_point(|g| g.seq < seq);
        self.groups.get(index)
    }

    fn add_bytes(&mut self, n: usize) {
        self.bytes += n;
        if let Some(budget) = &self.budget {
            budget.add(n);
        }
    }

    fn sub_bytes(&mut self, n: usize) {
        self.bytes -= n;
        if let Some(budget) = &self.budget {
            budget.sub(n);
        }
    }

    /// Drops the oldest group, never the newest. Returns whether one was dropped.
    pub(super) fn evict_oldest(&mut self) -> bool {
        if self.groups.len() <= 1 {
            return false;
        }
        match self.groups.pop_front() {
            Some(old) => {
                self.sub_bytes(old.bytes);
                true
            }
            None => false,
        }
    }

    /// The stamp of the group the budget would evict here, if any may be.
    pub(super) fn oldest_evictable_stamp(&self) -> Option<u64> {
        (self.groups.len() > 1)
            .then(|| self.groups.front().map(|g| g.stamp))
            .flatten()
    }

    /// Keeps `max_groups` groups, and younger ones beyond that up to [`MAX_CACHED_GROUPS`].
    /// Only a new group adds to the count, so only [`TrackCache::begin_group`] calls this.
    fn evict_old_groups(&mut self) {
        while self.groups.len() > self.limits.max_groups {
            let young = self
                .groups
                .front()
                .is_some_and(|oldest| oldest.began.elapsed() < self.limits.keep_for);
            if (young && self.groups.len() <= MAX_CACHED_GROUPS) || !self.evict_oldest() {
                break;
            }
        }
    }

    fn evict_over_bytes(&mut self) {
        while self.bytes > self.limits.max_bytes && self.evict_oldest() {}
    }

    fn remove_group(&mut self, seq: u64) {
        if let Some(pos) = self.groups.iter().position(|g| g.seq == seq) {
            if let Some(group) = self.groups.remove(pos) {
                self.sub_bytes(group.bytes);
            }
        }
    }
}

impl Drop for TrackState {
    fn drop(&mut self) {
        // Give the budget back what this track held.
        let held = self.bytes;
        if let Some(budget) = &self.budget {
            budget.sub(held);
        }
    }
}

/// Shared handle to one track's cache.
#[derive(Clone)]
pub struct TrackCache {
    state: Arc<Mutex<TrackState>>,
    version: watch::Sender<u64>,
}

impl TrackCache {
    pub fn new(limits: CacheLimits) -> Self {
        Self::build(limits, None)
    }

    /// A cache whose bytes count against `budget`, shared by many tracks.
    pub fn with_budget(limits: CacheLimits, budget: &Arc<CacheBudget>) -> Self {
        let cache = Self::build(limits, Some(budget.clone()));
        budget.register(&cache.state, &cache.version);
        cache
    }

    fn build(limits: CacheLimits, budget: Option<Arc<CacheBudget>>) -> Self {
        let limits = CacheLimits {
            max_groups: limits.max_groups.max(1),
            ..limits
        };
        Self {
            state: Arc::new(Mutex::new(TrackState {
                groups: VecDeque::new(),
                next_seq: 0,
                bytes: 0,
                end: None,
                limits,
                budget,
            })),
            version: watch::Sender::new(0),
        }
    }

    /// Brings the shared budget (if any) back within its limit after a write; `false` if
    /// it could not (only newest groups are left).
    fn enforce_budget(&self) -> bool {
        let budget = self.lock().budget.clone();
        budget.is_none_or(|budget| budget.enforce())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackState> {
        // A panic while holding this lock cannot leave the plain data inconsistent in a way
        // that matters more than stopping the relay, so a poisoned lock is used as is.
        lock_or_recover(&self.state)
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Starts a group; the previous groups stay open until [`Self::end_group`].
    /// Returns the group's sequence number, used to append to it.
    pub fn begin_group(&self, info: GroupInfo) -> Result<u64, CacheError> {
        let seq = {
            let mut state = self.lock();
            if state.end.is_some() {
                return Err(CacheError::Ended);
            }
            if let Some(newest) = state.groups.back() {
                if info.group_id <= newest.info.group_id {
                    return Err(CacheError::StaleGroup(info.group_id));
                }
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            let stamp = state.budget.as_ref().map_or(seq, |b| b.next_stamp());
            state.groups.push_back(CachedGroup {
                seq,
                stamp,
                info,
                objects: Vec::new(),
                complete: false,
                bytes: GROUP_OVERHEAD_BYTES,
                began: Instant::now(),
            });
            state.add_bytes(GROUP_OVERHEAD_BYTES);
            state.evict_old_groups();
            state.evict_over_bytes();
            seq
        };
        self.changed();
        self.enforce_budget();
        Ok(seq)
    }

    /// Appends an object to an open group. Appending to an evicted group is not an error:
    /// nobody can read it any more, so the object is dropped. A group that would grow past
    /// [`CacheLimits::max_group_bytes`] or [`CacheLimits::max_group_objects`], or take a
    /// shared budget past its limit when nothing older is left to evict, is dropped and the
    /// error says so ([`CacheError::dropped_group`]).
    pub fn push_object(&self, seq: u64, object_id: u64, payload: Bytes) -> Result<(), CacheError> {
        let cost = payload.len().saturating_add(OBJECT_OVERHEAD_BYTES);
        let group_id = {
            let mut state = self.lock();
            let limits = state.limits;
            let Some(group) = state.group_mut(seq) else {
                return Ok(());
            };
            let group_id = group.info.group_id;
            let refused = if group.bytes.saturating_add(cost) > limits.max_group_bytes {
                Some(CacheError::GroupTooLarge(group_id))
            } else if group.objects.len() >= limits.max_group_objects {
                Some(CacheError::TooManyObjects(group_id))
            } else {
                None
            };
            if let Some(err) = refused {
                state.remove_group(seq);
                drop(state);
                self.changed();
                return Err(err);
            }
            if group
                .objects
                .last()
                .is_some_and(|(last, _)| object_id <= *last)
            {
                return Err(CacheError::ObjectOrder {
                    group_id,
                    object_id,
                });
            }
            group.objects.push((object_id, payload));
            group.bytes += cost;
            state.add_bytes(cost);
            state.evict_over_bytes();
            group_id
        };
        self.changed();
        if !self.enforce_budget() {
            // Only newest groups are left and they are over the budget: this one goes.
            self.lock().remove_group(seq);
            self.changed();
            return Err(CacheError::BudgetFull(group_id));
        }
        Ok(())
    }

    /// Marks a group whole: followers end their copy of it cleanly.
    pub fn end_group(&self, seq: u64) {
        if let Some(group) = self.lock().group_mut(seq) {
            group.complete = true;
        }
        self.changed();
    }

    /// Drops a group the source could not finish, so no follower passes it off as whole.
    pub fn abandon_group(&self, seq: u64) {
        self.lock().remove_group(seq);
        self.changed();
    }

    /// Ends the track. Open groups that were not ended are abandoned.
    pub fn end(&self, end: TrackEnd) {
        {
            let mut state = self.lock();
            if state.end.is_some() {
                return;
            }
            state.end = Some(end);
            let unfinished: Vec<u64> = state
                .groups
                .iter()
                .filter(|g| !g.complete)
                .map(|g| g.seq)
                .collect();
            for seq in unfinished {
                state.remove_group(seq);
            }
        }
        self.changed();
    }

    pub fn is_ended(&self) -> bool {
        self.lock().end.is_some()
    }

    /// Bytes charged for what is held: payloads plus per-object and per-group overheads.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Number of groups held.
    pub fn group_count(&self) -> usize {
        self.lock().groups.len()
    }

    /// The newest group's id, if any.
    pub fn newest_group_id(&self) -> Option<u64> {
        self.lock().groups.back().map(|g| g.info.group_id)
    }

    /// The newest (group, object) held: the Largest Location a SUBSCRIBE_OK reports, so a
    /// Joining FETCH (draft-18 §10.12.2) can be resolved against it. A newest group with
    /// no object yet counts as not held.
    pub fn largest_location(&self) -> Option<(u64, u64)> {
        let state = self.lock();
        state.groups.iter().rev().find_map(|group| {
            let (object_id, _) = group.objects.last()?;
            Some((group.info.group_id, *object_id))
        })
    }

    /// The cached objects from `start` (group, object) up to `end` in draft-18 FETCH
    /// encoding (`(group, 0)`: through the whole of `group`; otherwise up to but not
    /// including that object), with their group's identity. `None` when the cache does
    /// not hold the start of the range: the caller must go to the source.
    pub fn objects_in(
        &self,
        start: (u64, u64),
        end: (u64, u64),
    ) -> Option<Vec<(GroupInfo, u64, Bytes)>> {
        let state = self.lock();
        let first = state.groups.front()?;
        if start.0 < first.info.group_id {
            return None;
        }
        let before_end = |group_id: u64, object_id: u64| {
            if end.1 == 0 {
                group_id <= end.0
            } else {
                (group_id, object_id) < end
            }
        };
        let mut found = Vec::new();
        for group in &state.groups {
            for (object_id, payload) in &group.objects {
                let at = (group.info.group_id, *object_id);
                if at >= start && before_end(at.0, at.1) {
                    found.push((group.info, *object_id, payload.clone()));
                }
            }
        }
        Some(found)
    }

    /// A follower that starts at the start of the newest group.
    pub fn follow(&self) -> TrackFollower {
        self.follow_range(GroupRange::default())
    }

    /// A follower of the groups in `range`: from the oldest group held whose id is at
    /// least `range.start` (or the newest group, without a start), up to `range.end`.
    pub fn follow_range(&self, range: GroupRange) -> TrackFollower {
        let start = {
            let state = self.lock();
            let newest = state.groups.back().map_or(state.next_seq, |g| g.seq);
            match range.start {
                None => newest,
                Some(start) => {
                    let index = state.groups.partition_point(|g| g.info.group_id < start);
                    state.groups.get(index).map_or(state.next_seq, |g| g.seq)
                }
            }
        };
        TrackFollower {
            cache: self.clone(),
            version: self.version.subscribe(),
            next_seq: start,
            active: Vec::new(),
            range,
            passed_end: false,
        }
    }
}

#[cfg(test)]
mod tests;
