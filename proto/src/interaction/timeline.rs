//! The `interaction` track's content (`docs/interaction.md` §2): MSF event timeline
//! records whose data is a snapshot of a broadcast's state or one event, and the reducer
//! that applies events to a snapshot. The origin and every client use the same reducer,
//! so they cannot disagree on what an event means.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many chat messages a snapshot keeps.
pub const CHAT_BACKLOG: usize = 50;
/// How many top tippers a snapshot lists.
pub const TOP_TIPPERS: usize = 5;

/// An MSF event timeline record: a media PTS in milliseconds (`M`) and the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "M", default, skip_serializing_if = "Option::is_none")]
    pub media_ms: Option<u64>,
    pub data: TimelineData,
}

/// A record's data: the whole state, or one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimelineData {
    Snapshot(Snapshot),
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    pub seq: u64,
    pub user: String,
    pub name: String,
    pub role: String,
    pub text: String,
    #[serde(rename = "M", default, skip_serializing_if = "Option::is_none")]
    pub media_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollView {
    pub id: u64,
    pub question: String,
    pub options: Vec<String>,
    pub tallies: Vec<u64>,
    pub open: bool,
    pub closes_at_ms: u64,
    pub winner: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalView {
    pub title: String,
    pub target: u64,
    pub progress: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tipper {
    pub user: String,
    pub name: String,
    pub total: u64,
}

/// A broadcast's whole interaction state, as of event `seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "snapshot")]
pub struct Snapshot {
    pub seq: u64,
    pub chat: Vec<ChatLine>,
    pub poll: Option<PollView>,
    pub goal: Option<GoalView>,
    pub top_tippers: Vec<Tipper>,
    pub viewers: u64,
    pub slow_mode_secs: u64,
    pub reactions: BTreeMap<String, u64>,
}

/// One change to the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Chat {
        seq: u64,
        user: String,
        name: String,
        role: String,
        text: String,
    },
    ChatDeleted {
        seq: u64,
        message: u64,
        by: String,
    },
    PollOpened {
        seq: u64,
        poll: PollView,
    },
    Vote {
        seq: u64,
        poll: u64,
        tallies: Vec<u64>,
    },
    PollClosed {
        seq: u64,
        poll: u64,
        tallies: Vec<u64>,
        winner: Option<usize>,
    },
    Tip {
        seq: u64,
        user: String,
        name: String,
        amount: u64,
        message: Option<String>,
        goal: Option<GoalView>,
    },
    Goal {
        seq: u64,
        goal: GoalView,
    },
    Reactions {
        seq: u64,
        counts: BTreeMap<String, u64>,
        window_ms: u64,
    },
    Viewers {
        seq: u64,
        count: u64,
    },
    Moderation {
        seq: u64,
        action: String,
        user: Option<String>,
        secs: Option<u64>,
        by: String,
    },
}

impl Event {
    pub fn seq(&self) -> u64 {
        match self {
            Event::Chat { seq, .. }
            | Event::ChatDeleted { seq, .. }
            | Event::PollOpened { seq, .. }
            | Event::Vote { seq, .. }
            | Event::PollClosed { seq, .. }
            | Event::Tip { seq, .. }
            | Event::Goal { seq, .. }
            | Event::Reactions { seq, .. }
            | Event::Viewers { seq, .. }
            | Event::Moderation { seq, .. } => *seq,
        }
    }
}

/// Why an event could not be applied to a snapshot.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("event {got} does not follow the state's event {have}")]
    OutOfOrder { have: u64, got: u64 },
}

impl Snapshot {
    /// Applies the event that follows this state. `media_ms` is the record's `M`.
    pub fn apply(&mut self, event: &Event, media_ms: Option<u64>) -> Result<(), ApplyError> {
        // The last possible sequence number has no successor: nothing follows it.
        if self.seq.checked_add(1) != Some(event.seq()) {
            return Err(ApplyError::OutOfOrder {
                have: self.seq,
                got: event.seq(),
            });
        }
        self.seq = event.seq();
        match event {
            Event::Chat {
                seq,
                user,
                name,
                role,
                text,
            } => {
                self.chat.push(ChatLine {
                    seq: *seq,
                    user: user.clone(),
                    name: name.clone(),
                    role: role.clone(),
                    text: text.clone(),
                    media_ms,
                });
                if self.chat.len() > CHAT_BACKLOG {
                    let over = self.chat.len() - CHAT_BACKLOG;
                    self.chat.drain(..over);
                }
            }
            Event::ChatDeleted { message, .. } => self.chat.retain(|line| line.seq != *message),
            Event::PollOpened { poll, .. } => self.poll = Some(poll.clone()),
            Event::Vote { poll, tallies, .. } => {
                if let Some(open) = self.poll.as_mut().filter(|p| p.id == *poll) {
                    open.tallies.clone_from(tallies);
                }
            }
            Event::PollClosed {
                poll,
                tallies,
                winner,
                ..
            } => {
                if let Some(closed) = self.poll.as_mut().filter(|p| p.id == *poll) {
                    closed.tallies.clone_from(tallies);
                    closed.open = false;
                    closed.winner = *winner;
                }
            }
            Event::Tip {
                user,
                name,
                amount,
                goal,
                ..
            } => {
                self.goal.clone_from(goal);
                self.credit_tipper(user, name, *amount);
            }
            Event::Goal { goal, .. } => self.goal = Some(goal.clone()),
            Event::Reactions { counts, .. } => self.reactions.clone_from(counts),
            Event::Viewers { count, .. } => self.viewers = *count,
            Event::Moderation { action, secs, .. } => {
                if action == "slow_mode" {
                    self.slow_mode_secs = secs.unwrap_or(0);
                }
            }
        }
        Ok(())
    }

    fn credit_tipper(&mut self, user: &str, name: &str, amount: u64) {
        match self.top_tippers.iter_mut().find(|t| t.user == user) {
            // Saturating: a total past u64::MAX only comes from a hostile timeline, and
            // every replica saturates alike, so they still agree.
            Some(tipper) => tipper.total = tipper.total.saturating_add(amount),
            None => self.top_tippers.push(Tipper {
                user: user.to_string(),
                name: name.to_string(),
                total: amount,
            }),
        }
        // Highest first; ties by user id, so every replica orders them the same.
        self.top_tippers
            .sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.user.cmp(&b.user)));
        self.top_tippers.truncate(TOP_TIPPERS);
    }
}

/// Follows a timeline as its objects arrive, in whatever order: keeps the newest
/// snapshot, applies events in sequence, holds events that arrive ahead of their turn.
#[derive(Debug, Default)]
pub struct TimelineFollower {
    state: Option<Snapshot>,
    ahead: BTreeMap<u64, (Event, Option<u64>)>,
}

/// The most events held waiting for an earlier one; past this the follower waits for the
/// next snapshot instead.
const MAX_AHEAD: usize = 1024;

impl TimelineFollower {
    /// The current state, once a snapshot arrived.
    pub fn state(&self) -> Option<&Snapshot> {
        self.state.as_ref()
    }

    /// Takes one record; returns the events applied because of it, in order, each with
    /// its media time.
    pub fn push(&mut self, record: Record) -> Vec<(Event, Option<u64>)> {
        match record.data {
            TimelineData::Snapshot(snapshot) => {
                if self.state.as_ref().is_none_or(|s| snapshot.seq > s.seq) {
                    self.state = Some(snapshot);
                }
            }
            TimelineData::Event(event) => {
                if self.state.as_ref().is_none_or(|s| event.seq() > s.seq)
                    && self.ahead.len() < MAX_AHEAD
                {
                    self.ahead.insert(event.seq(), (event, record.media_ms));
                }
            }
        }
        self.drain()
    }

    fn drain(&mut self) -> Vec<(Event, Option<u64>)> {
        let Some(state) = self.state.as_mut() else {
            return Vec::new();
        };
        let mut applied = Vec::new();
        while let Some(entry) = self.ahead.first_entry() {
            let seq = *entry.key();
            if seq <= state.seq {
                entry.remove();
            } else if state.seq.checked_add(1) == Some(seq) {
                let (event, media_ms) = entry.remove();
                if state.apply(&event, media_ms).is_ok() {
                    applied.push((event, media_ms));
                }
            } else {
                break;
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(seq: u64, text: &str) -> Event {
        Event::Chat {
            seq,
            user: "u1".into(),
            name: "Ann".into(),
            role: "viewer".into(),
            text: text.into(),
        }
    }

    fn record(data: TimelineData) -> Record {
        Record {
            media_ms: Some(1000),
            data,
        }
    }

    #[test]
    fn records_parse_as_documented() {
        let snapshot: Record = serde_json::from_str(
            r#"{"M":5,"data":{"type":"snapshot","seq":3,"chat":[],"poll":null,"goal":null,"top_tippers":[],"viewers":2,"slow_mode_secs":0,"reactions":{}}}"#,
        )
        .unwrap();
        assert!(matches!(
            snapshot.data,
            TimelineData::Snapshot(Snapshot {
                seq: 3,
                viewers: 2,
                ..
            })
        ));
        let event: Record =
            serde_json::from_str(r#"{"data":{"type":"viewers","seq":4,"count":7}}"#).unwrap();
        assert_eq!(
            event.data,
            TimelineData::Event(Event::Viewers { seq: 4, count: 7 })
        );
        let text = serde_json::to_string(&record(TimelineData::Event(chat(9, "<b>")))).unwrap();
        assert_eq!(
            serde_json::from_str::<Record>(&text).unwrap(),
            record(TimelineData::Event(chat(9, "<b>")))
        );
    }

    #[test]
    fn a_follower_converges_whatever_order_objects_arrive_in() {
        let mut origin = Snapshot::default();
        let events: Vec<Event> = (1..=6).map(|seq| chat(seq, &format!("m{seq}"))).collect();
        let mut at_three = None;
        for event in &events {
            origin.apply(event, Some(1000)).unwrap();
            if event.seq() == 3 {
                at_three = Some(origin.clone());
            }
        }
        // Events 5 and 6 before the snapshot they follow, 4 after it, and 2 again (old).
        let mut follower = TimelineFollower::default();
        assert!(follower
            .push(record(TimelineData::Event(events[5].clone())))
            .is_empty());
        assert!(follower
            .push(record(TimelineData::Event(events[4].clone())))
            .is_empty());
        assert!(follower
            .push(record(TimelineData::Snapshot(at_three.unwrap())))
            .is_empty());
        assert_eq!(
            follower
                .push(record(TimelineData::Event(events[3].clone())))
                .len(),
            3
        );
        assert!(follower
            .push(record(TimelineData::Event(events[1].clone())))
            .is_empty());
        assert_eq!(follower.state(), Some(&origin));
    }

    #[test]
    fn out_of_order_application_is_refused() {
        let mut state = Snapshot::default();
        assert_eq!(
            state.apply(&chat(2, "x"), None),
            Err(ApplyError::OutOfOrder { have: 0, got: 2 })
        );
    }

    #[test]
    fn chat_backlog_and_top_tippers_stay_bounded_and_ordered() {
        let mut state = Snapshot::default();
        for seq in 1..=60 {
            state.apply(&chat(seq, "x"), None).unwrap();
        }
        assert_eq!(state.chat.len(), CHAT_BACKLOG);
        assert_eq!(state.chat[0].seq, 11);
        for (i, user) in ["a", "b", "c", "d", "e", "f", "b"].iter().enumerate() {
            let seq = state.seq + 1;
            let tip = Event::Tip {
                seq,
                user: user.to_string(),
                name: user.to_string(),
                amount: 10 + i as u64,
                message: None,
                goal: None,
            };
            state.apply(&tip, None).unwrap();
        }
        assert_eq!(state.top_tippers.len(), TOP_TIPPERS);
        assert_eq!(state.top_tippers[0].user, "b");
        assert_eq!(state.top_tippers[0].total, 11 + 16);
    }

    #[test]
    fn the_last_sequence_number_has_no_successor() {
        // A snapshot at seq u64::MAX (from a hostile timeline) made `seq + 1` overflow.
        let mut state = Snapshot {
            seq: u64::MAX,
            ..Snapshot::default()
        };
        assert_eq!(
            state.apply(&chat(0, "x"), None),
            Err(ApplyError::OutOfOrder {
                have: u64::MAX,
                got: 0
            })
        );
        let mut follower = TimelineFollower::default();
        follower.push(record(TimelineData::Event(chat(0, "early"))));
        assert!(follower
            .push(record(TimelineData::Snapshot(state.clone())))
            .is_empty());
        assert_eq!(follower.state(), Some(&state));
    }

    #[test]
    fn tip_totals_saturate_instead_of_overflowing() {
        let mut state = Snapshot::default();
        for seq in 1..=2 {
            let tip = Event::Tip {
                seq,
                user: "whale".into(),
                name: "W".into(),
                amount: u64::MAX - 1,
                message: None,
                goal: None,
            };
            state.apply(&tip, None).unwrap();
        }
        assert_eq!(state.top_tippers[0].total, u64::MAX);
    }
}
