//! Writes a broadcast's interaction timeline into the track cache relays subscribe to:
//! every group opens with a snapshot of the whole state, then one object per event
//! (`docs/interaction.md` §2). A new group starts after [`GROUP_MAX_AGE`] or
//! [`GROUP_MAX_EVENTS`] events, so a joiner's first snapshot is small and recent.

use std::time::{Duration, Instant};

use bytes::Bytes;
use stagecast_proto::interaction::{Event, Record, Snapshot, TimelineData};
use stagecast_relay::cache::{CacheLimits, GroupInfo, TrackCache};

pub const GROUP_MAX_AGE: Duration = Duration::from_secs(2);
pub const GROUP_MAX_EVENTS: u64 = 64;
/// Interaction goes first on a congested link (it is small), and in order: every event
/// matters, so its groups are not sent newest first like media's.
const PRIORITY: u8 = stagecast_relay::delivery::IN_ORDER_PRIORITY;

/// A few groups of a few kilobytes each: enough for joiners and FETCH; in a burst, the
/// groups of the last two seconds, so a subscriber a little behind loses no event.
pub fn cache_limits() -> CacheLimits {
    CacheLimits {
        max_groups: 4,
        max_bytes: 16 << 20,
        max_group_bytes: 2 << 20,
        keep_for: Duration::from_secs(2),
        ..Default::default()
    }
}

pub struct TimelineWriter {
    cache: TrackCache,
    open: Option<OpenGroup>,
    last_group_id: u64,
}

struct OpenGroup {
    seq: u64,
    next_object: u64,
    started: Instant,
}

impl TimelineWriter {
    /// Starts the timeline with a group holding `state`'s snapshot.
    pub fn new(state: &Snapshot, media_ms: Option<u64>) -> Self {
        let mut writer = Self {
            cache: TrackCache::new(cache_limits()),
            open: None,
            last_group_id: 0,
        };
        writer.start_group(state, media_ms);
        writer
    }

    pub fn cache(&self) -> &TrackCache {
        &self.cache
    }

    /// Publishes `event`; `before` is the state it follows (the snapshot of a new group).
    pub fn push_event(&mut self, before: &Snapshot, event: &Event, media_ms: Option<u64>) {
        let full = self.open.as_ref().is_none_or(|open| {
            open.next_object > GROUP_MAX_EVENTS || open.started.elapsed() >= GROUP_MAX_AGE
        });
        if full {
            self.start_group(before, media_ms);
        }
        self.push(Record {
            media_ms,
            data: TimelineData::Event(event.clone()),
        });
    }

    fn start_group(&mut self, state: &Snapshot, media_ms: Option<u64>) {
        if let Some(open) = self.open.take() {
            self.cache.end_group(open.seq);
        }
        // Wall-clock group ids keep increasing across an origin restart (MSF group
        // numbering), so relays that cached the old timeline accept the new one.
        let group_id = crate::interaction::rules::now_ms().max(self.last_group_id + 1);
        self.last_group_id = group_id;
        match self.cache.begin_group(GroupInfo {
            group_id,
            subgroup_id: 0,
            priority: PRIORITY,
        }) {
            Ok(seq) => {
                self.open = Some(OpenGroup {
                    seq,
                    next_object: 0,
                    started: Instant::now(),
                });
                self.push(Record {
                    media_ms,
                    data: TimelineData::Snapshot(state.clone()),
                });
            }
            Err(err) => tracing::error!(%err, "interaction timeline group refused"),
        }
    }

    fn push(&mut self, record: Record) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let payload = match serde_json::to_vec(&[record]) {
            Ok(json) => Bytes::from(json),
            Err(err) => return tracing::error!(%err, "cannot encode a timeline record"),
        };
        if let Err(err) = self.cache.push_object(open.seq, open.next_object, payload) {
            tracing::error!(%err, "interaction timeline object refused");
        }
        open.next_object += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagecast_relay::cache::FollowStep;

    fn records(step: FollowStep) -> Option<Vec<Record>> {
        match step {
            FollowStep::Object { payload, .. } => Some(serde_json::from_slice(&payload).unwrap()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_joiner_reads_a_snapshot_then_the_events_since() {
        let mut state = Snapshot::default();
        let mut writer = TimelineWriter::new(&state, Some(5));
        let mut follower = writer.cache().follow();
        for seq in 1..=(GROUP_MAX_EVENTS + 2) {
            let event = Event::Viewers { seq, count: seq };
            writer.push_event(&state, &event, None);
            state.apply(&event, None).unwrap();
        }
        let mut groups = Vec::new();
        while let Some(step) = follower.try_next() {
            match step {
                FollowStep::Group { .. } => groups.push(Vec::new()),
                step => {
                    if let Some(mut rs) = records(step) {
                        groups.last_mut().unwrap().append(&mut rs);
                    }
                }
            }
        }
        assert_eq!(
            groups.len(),
            2,
            "a group holds one snapshot and at most {GROUP_MAX_EVENTS} events"
        );
        let second = &groups[1];
        assert!(matches!(&second[0].data, TimelineData::Snapshot(s) if s.seq == GROUP_MAX_EVENTS));
        assert!(
            matches!(&second[1].data, TimelineData::Event(e) if e.seq() == GROUP_MAX_EVENTS + 1)
        );
        assert_eq!(groups[0][0].media_ms, Some(5));
    }
}
