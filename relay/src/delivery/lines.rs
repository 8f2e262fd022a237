//! Which group of a track a subscriber's connection sends next, and which it gives up:
//! the decisions of [`super::TimedSend`] as plain data with time passed in.
//!
//! Why: QUIC takes whatever is written into its send buffer and delivers all of it
//! eventually; a subscriber slower than the stream therefore receives the whole backlog,
//! later and later, and (newest first) every group cut short. A group is only worth
//! something whole, so each track of a connection is a *line* of groups:
//! - a group may write once the group before it has been written out (the connection keeps
//!   up) or, once the line is [behind](Line::behind), delivered (acknowledged): then at
//!   most one group's tail sits in QUIC's buffer and the rest of the backlog stays in the
//!   relay's cache, where it can still be dropped whole;
//! - a line that is behind starts the newest waiting group and drops the older waiting
//!   ones, which have sent nothing yet: whole groups lost, the subscriber back near live;
//! - a group that a newer one has *superseded* (begun after it) and that is not delivered
//!   [`grace`](GroupLines::new) later is reset: it would only hold the line. This bounds
//!   how far behind live a subscriber can be, whatever its link.
//!
//! A line is behind when its last group took longer than [`slack`] from being written out
//! to being acknowledged: its data queued behind the link. It catches up when a group is
//! acknowledged promptly again.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A data stream of the connection, as [`super::TimedSend`] numbers them.
pub type StreamKey = u32;

/// What the connection should do with a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The stream may write: its group is next in its line.
    Go(StreamKey),
    /// Reset the stream: its group is given up (never started, or overdue).
    Drop(StreamKey),
    /// Ask [`GroupLines::expired`] about the stream at this time: it was superseded.
    Deadline(StreamKey, Instant),
}

/// How long a group may take from being written out to being acknowledged before its line
/// counts as behind: two round trips (data out, acknowledgement back, with a loss or an
/// acknowledgement delay in between) and a margin for the peer's scheduling.
pub fn slack(rtt: Duration) -> Duration {
    rtt * 2 + Duration::from_millis(100)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for its turn; nothing written.
    Waiting,
    /// Writing (the group is still being produced, or its data still being handed over).
    Writing,
    /// Finished: all its data is in QUIC's hands, not yet acknowledged.
    Written { at: Instant },
}

#[derive(Clone, Debug)]
struct Entry {
    key: StreamKey,
    group: u64,
    state: State,
    /// When a newer group of the line began.
    superseded_at: Option<Instant>,
}

/// One track's groups on the connection, oldest first.
#[derive(Clone, Debug, Default)]
struct Line {
    entries: Vec<Entry>,
    /// The line's last delivery was slow (or a group was overdue): new groups wait for the
    /// one before to be acknowledged, and waiting groups are dropped for newer ones.
    behind: bool,
}

/// The lines of one connection, by track alias.
#[derive(Clone, Debug)]
pub struct GroupLines {
    grace: Duration,
    lines: HashMap<u64, Line>,
    /// Which line each stream is in.
    streams: HashMap<StreamKey, u64>,
}

impl GroupLines {
    /// Lines whose superseded groups are reset `grace` after a newer group began.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            lines: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// Changes the grace for groups superseded from now on (a relay link, once known).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Whether the line of `track` is behind (for logs and tests).
    pub fn is_behind(&self, track: u64) -> bool {
        self.lines.get(&track).is_some_and(|line| line.behind)
    }

    /// A stream of group `group` of track `track` wants to write its first bytes.
    pub fn open(&mut self, key: StreamKey, track: u64, group: u64, now: Instant) -> Vec<Action> {
        let grace = self.grace;
        let line = self.lines.entry(track).or_default();
        self.streams.insert(key, track);
        let mut actions = Vec::new();
        // Another subgroup of a group already going goes too.
        let going = line
            .entries
            .iter()
            .find(|e| e.group == group && e.state != State::Waiting);
        if let Some(going) = going {
            let superseded_at = going.superseded_at;
            line.entries.push(Entry {
                key,
                group,
                state: State::Writing,
                superseded_at,
            });
            line.entries.sort_by_key(|e| e.group);
            actions.push(Action::Go(key));
            if let Some(at) = superseded_at {
                actions.push(Action::Deadline(key, at + grace));
            }
            return actions;
        }
        let newest = line.entries.iter().map(|e| e.group).max();
        // A group older than one already here is superseded from the start.
        let superseded_at = newest.filter(|n| *n > group).map(|_| now);
        for entry in line.entries.iter_mut().filter(|e| e.group < group) {
            if entry.superseded_at.is_none() {
                entry.superseded_at = Some(now);
                actions.push(Action::Deadline(entry.key, now + grace));
            }
        }
        if let Some(at) = superseded_at {
            actions.push(Action::Deadline(key, at + grace));
        }
        if line.behind {
            // Behind, the newest waiting group goes next: older waiting ones never will.
            let stale: Vec<StreamKey> = line
                .entries
                .iter()
                .filter(|e| e.state == State::Waiting && e.group < group)
                .map(|e| e.key)
                .collect();
            line.entries.retain(|e| !stale.contains(&e.key));
            for key in stale {
                self.streams.remove(&key);
                actions.push(Action::Drop(key));
            }
        }
        let line = self.lines.entry(track).or_default();
        line.entries.push(Entry {
            key,
            group,
            state: State::Waiting,
            superseded_at,
        });
        line.entries.sort_by_key(|e| e.group);
        actions.extend(self.release(track));
        actions
    }

    /// The stream has written all its data and its FIN.
    pub fn finished(&mut self, key: StreamKey, now: Instant) -> Vec<Action> {
        let Some(track) = self.streams.get(&key).copied() else {
            return Vec::new();
        };
        if let Some(entry) = self.entry_mut(track, key) {
            entry.state = State::Written { at: now };
        }
        self.release(track)
    }

    /// The peer acknowledged all of the stream's data: its group is delivered. `rtt` is the
    /// connection's round trip now.
    pub fn delivered(&mut self, key: StreamKey, now: Instant, rtt: Duration) -> Vec<Action> {
        let Some((track, entry)) = self.remove(key) else {
            return Vec::new();
        };
        if let State::Written { at } = entry.state {
            if let Some(line) = self.lines.get_mut(&track) {
                line.behind = now.saturating_duration_since(at) > slack(rtt);
            }
        }
        self.release(track)
    }

    /// The stream ended otherwise (reset, stopped by the peer, dropped): it holds no one.
    pub fn gone(&mut self, key: StreamKey) -> Vec<Action> {
        match self.remove(key) {
            Some((track, _)) => self.release(track),
            None => Vec::new(),
        }
    }

    /// A [`Action::Deadline`] has come: a superseded group not delivered by now is dropped,
    /// and its line is behind.
    pub fn expired(&mut self, key: StreamKey, now: Instant) -> Vec<Action> {
        let grace = self.grace;
        let Some(track) = self.streams.get(&key).copied() else {
            return Vec::new();
        };
        let due = self
            .entry_mut(track, key)
            .and_then(|e| e.superseded_at)
            .is_some_and(|at| at + grace <= now);
        if !due {
            return Vec::new();
        }
        self.remove(key);
        if let Some(line) = self.lines.get_mut(&track) {
            line.behind = true;
        }
        let mut actions = vec![Action::Drop(key)];
        actions.extend(self.release(track));
        actions
    }

    /// Lets the next waiting group of `track` go when nothing holds the line; a line that is
    /// behind takes the newest waiting group and drops the older ones.
    fn release(&mut self, track: u64) -> Vec<Action> {
        let Some(line) = self.lines.get_mut(&track) else {
            return Vec::new();
        };
        let behind = line.behind;
        let held = line.entries.iter().any(|e| match e.state {
            State::Writing => true,
            State::Written { .. } => behind,
            State::Waiting => false,
        });
        let waiting: Vec<u64> = line
            .entries
            .iter()
            .filter(|e| e.state == State::Waiting)
            .map(|e| e.group)
            .collect();
        let next = match (held, behind) {
            (true, _) => None,
            (false, false) => waiting.first().copied(),
            (false, true) => waiting.last().copied(),
        };
        let Some(next) = next else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        let mut dropped = Vec::new();
        for entry in line.entries.iter_mut() {
            if entry.state != State::Waiting {
                continue;
            }
            if entry.group == next {
                entry.state = State::Writing;
                actions.push(Action::Go(entry.key));
            } else if entry.group < next {
                dropped.push(entry.key);
            }
        }
        for key in dropped {
            self.remove(key);
            actions.push(Action::Drop(key));
        }
        actions
    }

    fn entry_mut(&mut self, track: u64, key: StreamKey) -> Option<&mut Entry> {
        self.lines
            .get_mut(&track)?
            .entries
            .iter_mut()
            .find(|e| e.key == key)
    }

    fn remove(&mut self, key: StreamKey) -> Option<(u64, Entry)> {
        let track = self.streams.remove(&key)?;
        let line = self.lines.get_mut(&track)?;
        let at = line.entries.iter().position(|e| e.key == key)?;
        Some((track, line.entries.remove(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(2);
    const RTT: Duration = Duration::from_millis(20);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn goes(actions: &[Action]) -> Vec<StreamKey> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Go(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    fn drops(actions: &[Action]) -> Vec<StreamKey> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Drop(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_subscriber_that_keeps_up_gets_each_group_as_soon_as_the_last_is_written() {
        let t0 = Instant::now();
        let mut lines = GroupLines::new(GRACE);
        assert_eq!(goes(&lines.open(1, 7, 10, t0)), vec![1]);
        // Group 11 begins before 10's FIN is written: it waits, then goes at the FIN,
        // without waiting for the acknowledgement.
        let opened = lines.open(2, 7, 11, at(t0, 1000));
        assert!(goes(&opened).is_empty());
        assert!(opened.contains(&Action::Deadline(1, at(t0, 1000) + GRACE)));
        assert_eq!(goes(&lines.finished(1, at(t0, 1001))), vec![2]);
        // Acknowledged a round trip later: the line is not behind.
        assert!(lines.delivered(1, at(t0, 1021), RTT).is_empty());
        assert!(!lines.is_behind(7));
        // A deadline for a delivered group is nothing.
        assert!(lines.expired(1, at(t0, 3000)).is_empty());
    }

    #[test]
    fn a_slow_subscriber_loses_whole_waiting_groups_and_keeps_the_one_it_receives() {
        let t0 = Instant::now();
        let mut lines = GroupLines::new(GRACE);
        lines.open(1, 7, 0, t0);
        lines.open(2, 7, 1, at(t0, 1000));
        assert_eq!(goes(&lines.finished(1, at(t0, 1000))), vec![2]);
        // Group 0 is acknowledged 580 ms after its FIN was written: behind.
        lines.delivered(1, at(t0, 1580), RTT);
        assert!(lines.is_behind(7));
        // Group 2 begins while 1 is still being written: it waits...
        assert!(goes(&lines.open(3, 7, 2, at(t0, 2000))).is_empty());
        // ...and, behind, still waits once 1 is written: 1 is not delivered yet.
        assert!(goes(&lines.finished(2, at(t0, 2010))).is_empty());
        // Group 3 begins: 2, which sent nothing, is dropped whole; 3 waits for 1.
        let opened = lines.open(4, 7, 3, at(t0, 3000));
        assert_eq!(drops(&opened), vec![3]);
        assert!(goes(&opened).is_empty());
        // Group 1 delivered (within its grace): 3 goes.
        assert_eq!(goes(&lines.delivered(2, at(t0, 3160), RTT)), vec![4]);
        // The line stays behind while deliveries are slow.
        assert!(lines.is_behind(7));
    }

    #[test]
    fn a_superseded_group_not_delivered_within_the_grace_is_dropped() {
        let t0 = Instant::now();
        let mut lines = GroupLines::new(GRACE);
        lines.open(1, 7, 0, t0);
        let opened = lines.open(2, 7, 1, at(t0, 1000));
        let deadline = at(t0, 1000) + GRACE;
        assert!(opened.contains(&Action::Deadline(1, deadline)));
        // Not due yet: nothing.
        assert!(lines.expired(1, at(t0, 2999)).is_empty());
        // Due: group 0 is reset, the line is behind and group 1 goes.
        let expired = lines.expired(1, deadline);
        assert_eq!(drops(&expired), vec![1]);
        assert_eq!(goes(&expired), vec![2]);
        assert!(lines.is_behind(7));
        // A stream dropped is gone: a late FIN or acknowledgement changes nothing.
        assert!(lines.finished(1, deadline).is_empty());
        assert!(lines.delivered(1, deadline, RTT).is_empty());
    }

    #[test]
    fn a_line_that_catches_up_sends_waiting_groups_in_order_again() {
        let t0 = Instant::now();
        let mut lines = GroupLines::new(GRACE);
        lines.open(1, 7, 0, t0);
        lines.open(2, 7, 1, at(t0, 1000));
        lines.finished(1, at(t0, 1000));
        lines.delivered(1, at(t0, 1600), RTT);
        assert!(lines.is_behind(7));
        lines.finished(2, at(t0, 2000));
        // Delivered promptly: caught up.
        lines.delivered(2, at(t0, 2030), RTT);
        assert!(!lines.is_behind(7));
        // A burst of cached groups (a subscription that starts in the past) is sent in
        // order, none dropped.
        assert_eq!(goes(&lines.open(3, 7, 2, at(t0, 2100))), vec![3]);
        assert!(lines
            .open(4, 7, 3, at(t0, 2100))
            .iter()
            .all(|a| !matches!(a, Action::Drop(_))));
        assert!(lines
            .open(5, 7, 4, at(t0, 2100))
            .iter()
            .all(|a| !matches!(a, Action::Drop(_))));
        assert_eq!(goes(&lines.finished(3, at(t0, 2101))), vec![4]);
        assert_eq!(goes(&lines.finished(4, at(t0, 2102))), vec![5]);
    }

    #[test]
    fn tracks_and_subgroups_do_not_hold_one_another() {
        let t0 = Instant::now();
        let mut lines = GroupLines::new(GRACE);
        assert_eq!(goes(&lines.open(1, 7, 0, t0)), vec![1]);
        // Another track's group goes at once.
        assert_eq!(goes(&lines.open(2, 8, 5, t0)), vec![2]);
        // A second subgroup of group 0 goes with it.
        assert_eq!(goes(&lines.open(3, 7, 0, t0)), vec![3]);
        // The next group waits for both.
        lines.open(4, 7, 1, at(t0, 1000));
        assert!(goes(&lines.finished(1, at(t0, 1000))).is_empty());
        assert_eq!(goes(&lines.finished(3, at(t0, 1000))), vec![4]);
        // A stream that went away (reset, stopped) holds nobody.
        lines.open(5, 8, 6, at(t0, 1000));
        assert_eq!(goes(&lines.gone(2)), vec![5]);
    }

    #[test]
    fn a_late_older_group_is_superseded_from_the_start() {
        let t0 = Instant::now();
        let mut lines = GroupLines::new(GRACE);
        lines.open(1, 7, 5, t0);
        let opened = lines.open(2, 7, 4, at(t0, 10));
        assert!(opened.contains(&Action::Deadline(2, at(t0, 10) + GRACE)));
        assert_eq!(drops(&lines.expired(2, at(t0, 10) + GRACE)), vec![2]);
    }
}
