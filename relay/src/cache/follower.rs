//! One reader's position in a [`TrackCache`]: a pure core ([`TrackFollower::try_next`],
//! the next [`FollowStep`] if one is ready) under a thin async shell
//! ([`TrackFollower::next`], which waits on the cache's version counter).

use bytes::Bytes;
use tokio::sync::watch;

use super::{GroupInfo, TrackCache, TrackEnd};

/// What a follower reads next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowStep {
    /// A group starts; `seq` names it in the steps that follow.
    Group { seq: u64, info: GroupInfo },
    Object {
        seq: u64,
        object_id: u64,
        payload: Bytes,
    },
    /// The group is whole.
    GroupEnd { seq: u64 },
    /// The group was evicted or abandoned before this follower read all of it.
    GroupAbandoned { seq: u64 },
    /// The track ended; nothing follows.
    End(TrackEnd),
    /// The follower's last group ([`GroupRange::end`]) is whole; nothing follows for it.
    RangeEnd,
}

/// Which groups a follower reads, by group id (a subscription filter, draft-18 §5.1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupRange {
    /// The first group id to read: the oldest group held from it on, else the first to
    /// arrive. `None`: start at the newest group (a live subscriber's start).
    pub start: Option<u64>,
    /// The last group id to read, inclusive.
    pub end: Option<u64>,
}

pub(super) struct ActiveGroup {
    seq: u64,
    next_object: usize,
}

/// One reader's position in a [`TrackCache`].
pub struct TrackFollower {
    pub(super) cache: TrackCache,
    pub(super) version: watch::Receiver<u64>,
    pub(super) next_seq: u64,
    pub(super) active: Vec<ActiveGroup>,
    pub(super) range: GroupRange,
    /// The range's last group was started, or a later one exists.
    pub(super) passed_end: bool,
}

impl TrackFollower {
    /// The next step if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<FollowStep> {
        let state = self.cache.lock();

        // Groups this follower is inside of, oldest first.
        let mut index = 0;
        while index < self.active.len() {
            let active = &mut self.active[index];
            let Some(group) = state.group(active.seq) else {
                let seq = active.seq;
                self.active.remove(index);
                return Some(FollowStep::GroupAbandoned { seq });
            };
            if let Some((object_id, payload)) = group.objects.get(active.next_object) {
                active.next_object += 1;
                return Some(FollowStep::Object {
                    seq: group.seq,
                    object_id: *object_id,
                    payload: payload.clone(),
                });
            }
            if group.complete {
                let seq = group.seq;
                self.active.remove(index);
                return Some(FollowStep::GroupEnd { seq });
            }
            index += 1;
        }

        // A follower that fell behind eviction skips to the newest group: it loses old
        // groups, never the present.
        if let Some(first) = state.groups.front() {
            if self.next_seq < first.seq {
                self.next_seq = state.groups.back().map_or(first.seq, |g| g.seq);
            }
        }
        // The next group held (past any dropped or abandoned in between), skipping groups
        // before the range's start and stopping after its end.
        while let Some(group) = state.group_from(self.next_seq) {
            let seq = group.seq;
            let info = group.info;
            if self.range.end.is_some_and(|end| info.group_id > end) {
                self.passed_end = true;
                break;
            }
            self.next_seq = seq + 1;
            if self.range.start.is_some_and(|start| info.group_id < start) {
                continue;
            }
            if self.range.end.is_some_and(|end| info.group_id >= end) {
                self.passed_end = true;
            }
            self.active.push(ActiveGroup {
                seq,
                next_object: 0,
            });
            return Some(FollowStep::Group { seq, info });
        }
        if self.next_seq < state.next_seq {
            // The groups after were abandoned; move past them.
            self.next_seq = state.next_seq;
        }

        if self.active.is_empty() {
            if let Some(end) = &state.end {
                return Some(FollowStep::End(end.clone()));
            }
            if self.passed_end {
                return Some(FollowStep::RangeEnd);
            }
        }
        None
    }

    /// The next step, waiting for the source if needed.
    pub async fn next(&mut self) -> FollowStep {
        loop {
            // Mark the current version seen before looking, so a change made after the
            // look wakes the wait below.
            self.version.borrow_and_update();
            if let Some(step) = self.try_next() {
                return step;
            }
            if self.version.changed().await.is_err() {
                // The cache itself is gone: nothing more can arrive.
                return FollowStep::End(TrackEnd::Failed {
                    code: 0,
                    reason: "track cache dropped".into(),
                });
            }
        }
    }
}
