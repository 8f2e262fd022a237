//! One channel's interaction rules as a pure state machine: what a request from whom
//! becomes (events and credit transfers) or why it is refused, and how events change the
//! state. No I/O and no clock of its own: the authority passes the time in, so tests and
//! the replay after a restart drive it exactly like live requests.

use std::collections::{BTreeMap, HashMap, HashSet};

use stagecast_proto::interaction::timeline::{GoalView, PollView};
use stagecast_proto::interaction::{Action, Event, Reason, Snapshot};

pub const MAX_CHAT_CHARS: usize = 500;
pub const MAX_TIP_MESSAGE_CHARS: usize = 200;
pub const MAX_EMOJI_BYTES: usize = 16;
pub const MAX_CREDIT_GRANT: u64 = 10_000;
const MAX_QUESTION_CHARS: usize = 200;
const MAX_OPTION_CHARS: usize = 80;
const MAX_TITLE_CHARS: usize = 80;
const MAX_TIMEOUT_SECS: u64 = 86_400;
const MAX_SLOW_MODE_SECS: u64 = 3_600;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Moderator,
    Creator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Moderator => "moderator",
            Role::Creator => "creator",
        }
    }

    fn moderates(self) -> bool {
        matches!(self, Role::Moderator | Role::Creator)
    }
}

/// Who sent a request, from their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub name: String,
    pub role: Role,
}

/// A refusal, as the answer will carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms.max(1));
        self
    }
}

/// What an accepted request does: the events it adds (numbered from the state's next
/// sequence number) and how much it moves from or to the actor's account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub events: Vec<Event>,
    /// Credits taken from the actor (a tip) and given to the channel.
    pub tip: Option<u64>,
    /// Credits granted to the actor (development credits).
    pub grant: Option<u64>,
    /// A reaction to count into the current window (no event of its own).
    pub reaction: Option<String>,
}

/// One channel's state: the public snapshot plus what only the authority needs. Stored
/// whole as JSON behind compacted history (`snapshot.rs`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ChannelState {
    pub view: Snapshot,
    /// Who voted in the current poll.
    voters: HashSet<String>,
    last_poll_id: u64,
    /// user -> until (ms since the epoch; `u64::MAX` for a ban).
    restricted: HashMap<String, u64>,
    /// user -> when they last chatted, for slow mode.
    last_chat_ms: HashMap<String, u64>,
}

impl ChannelState {
    fn next_seq(&self) -> u64 {
        self.view.seq + 1
    }

    /// Decides a request; `balance` is the actor's credits now.
    pub fn decide(
        &self,
        actor: &Actor,
        action: &Action,
        now_ms: u64,
        balance: u64,
    ) -> Result<Decision, Rejection> {
        let seq = self.next_seq();
        let moderator_only = || {
            if actor.role.moderates() {
                Ok(())
            } else {
                Err(Rejection::new(
                    Reason::NotAuthorized,
                    "only the creator and moderators may do that",
                ))
            }
        };
        match action {
            Action::Chat { text } => {
                self.check_restricted(actor, now_ms)?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(Rejection::new(Reason::Invalid, "the message is empty"));
                }
                if text.chars().count() > MAX_CHAT_CHARS {
                    return Err(Rejection::new(
                        Reason::TooLong,
                        format!("messages are at most {MAX_CHAT_CHARS} characters"),
                    ));
                }
                let slow = self.view.slow_mode_secs * 1000;
                if slow > 0 && !actor.role.moderates() {
                    if let Some(last) = self.last_chat_ms.get(&actor.user) {
                        let next = last + slow;
                        if now_ms < next {
                            return Err(Rejection::new(
                                Reason::RateLimited,
                                format!("slow mode: one message every {} s", slow / 1000),
                            )
                            .retry_after(next - now_ms));
                        }
                    }
                }
                Ok(Decision {
                    events: vec![Event::Chat {
                        seq,
                        user: actor.user.clone(),
                        name: actor.name.clone(),
                        role: actor.role.as_str().to_string(),
                        text: text.to_string(),
                    }],
                    ..Default::default()
                })
            }
            Action::React { emoji } => {
                self.check_restricted(actor, now_ms)?;
                if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
                    return Err(Rejection::new(
                        Reason::TooLong,
                        format!("a reaction is 1 to {MAX_EMOJI_BYTES} bytes"),
                    ));
                }
                Ok(Decision {
                    reaction: Some(emoji.clone()),
                    ..Default::default()
                })
            }
            Action::Vote { poll, option } => {
                self.check_restricted(actor, now_ms)?;
                let open = self.open_poll(*poll, now_ms)?;
                if *option >= open.options.len() {
                    return Err(Rejection::new(Reason::Invalid, "no such option"));
                }
                if self.voters.contains(&actor.user) {
                    return Err(Rejection::new(
                        Reason::AlreadyVoted,
                        "you already voted in this poll",
                    ));
                }
                let mut tallies = open.tallies.clone();
                tallies[*option] += 1;
                Ok(Decision {
                    events: vec![Event::Vote {
                        seq,
                        poll: *poll,
                        tallies,
                    }],
                    ..Default::default()
                })
            }
            Action::Tip { amount, message } => {
                if *amount == 0 {
                    return Err(Rejection::new(
                        Reason::Invalid,
                        "a tip is at least 1 credit",
                    ));
                }
                let message = message.as_deref().map(str::trim).filter(|m| !m.is_empty());
                if message.is_some_and(|m| m.chars().count() > MAX_TIP_MESSAGE_CHARS) {
                    return Err(Rejection::new(
                        Reason::TooLong,
                        format!("tip messages are at most {MAX_TIP_MESSAGE_CHARS} characters"),
                    ));
                }
                if balance < *amount {
                    return Err(Rejection::new(
                        Reason::InsufficientBalance,
                        format!("you have {balance} credits"),
                    ));
                }
                let goal = self.view.goal.clone().map(|mut goal| {
                    goal.progress += amount;
                    goal
                });
                Ok(Decision {
                    events: vec![Event::Tip {
                        seq,
                        user: actor.user.clone(),
                        name: actor.name.clone(),
                        amount: *amount,
                        message: message.map(str::to_string),
                        goal,
                    }],
                    tip: Some(*amount),
                    ..Default::default()
                })
            }
            Action::Credit { amount } => {
                if *amount == 0 || *amount > MAX_CREDIT_GRANT {
                    return Err(Rejection::new(
                        Reason::Invalid,
                        format!("a grant is 1 to {MAX_CREDIT_GRANT} credits"),
                    ));
                }
                Ok(Decision {
                    grant: Some(*amount),
                    ..Default::default()
                })
            }
            Action::PollOpen {
                question,
                options,
                duration_secs,
            } => {
                moderator_only()?;
                if self.view.poll.as_ref().is_some_and(|p| p.open) {
                    return Err(Rejection::new(Reason::Invalid, "close the open poll first"));
                }
                let question = question.trim();
                if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
                    return Err(Rejection::new(
                        Reason::TooLong,
                        format!("a question is 1 to {MAX_QUESTION_CHARS} characters"),
                    ));
                }
                if !(2..=6).contains(&options.len())
                    || options
                        .iter()
                        .any(|o| o.trim().is_empty() || o.chars().count() > MAX_OPTION_CHARS)
                {
                    return Err(Rejection::new(
                        Reason::Invalid,
                        format!("a poll has 2 to 6 options of 1 to {MAX_OPTION_CHARS} characters"),
                    ));
                }
                if !(5..=3600).contains(duration_secs) {
                    return Err(Rejection::new(Reason::Invalid, "a poll lasts 5 s to 1 h"));
                }
                Ok(Decision {
                    events: vec![Event::PollOpened {
                        seq,
                        poll: PollView {
                            id: self.last_poll_id + 1,
                            question: question.to_string(),
                            options: options.iter().map(|o| o.trim().to_string()).collect(),
                            tallies: vec![0; options.len()],
                            open: true,
                            closes_at_ms: now_ms + duration_secs * 1000,
                            winner: None,
                        },
                    }],
                    ..Default::default()
                })
            }
            Action::PollClose { poll } => {
                moderator_only()?;
                let open = self.open_poll(*poll, u64::MIN)?;
                Ok(Decision {
                    events: vec![close_event(seq, open)],
                    ..Default::default()
                })
            }
            Action::Goal { title, target } => {
                if actor.role != Role::Creator {
                    return Err(Rejection::new(
                        Reason::NotAuthorized,
                        "only the creator sets the goal",
                    ));
                }
                let title = title.trim();
                if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS || *target == 0 {
                    return Err(Rejection::new(
                        Reason::Invalid,
                        format!(
                            "a goal has a title of 1 to {MAX_TITLE_CHARS} characters and a target"
                        ),
                    ));
                }
                Ok(Decision {
                    events: vec![Event::Goal {
                        seq,
                        goal: GoalView {
                            title: title.to_string(),
                            target: *target,
                            progress: 0,
                        },
                    }],
                    ..Default::default()
                })
            }
            Action::Delete { message } => {
                moderator_only()?;
                if !self.view.chat.iter().any(|line| line.seq == *message) {
                    return Err(Rejection::new(Reason::Invalid, "no such recent message"));
                }
                Ok(Decision {
                    events: vec![Event::ChatDeleted {
                        seq,
                        message: *message,
                        by: actor.user.clone(),
                    }],
                    ..Default::default()
                })
            }
            Action::Timeout { user, secs } => {
                moderator_only()?;
                if *secs == 0 || *secs > MAX_TIMEOUT_SECS {
                    return Err(Rejection::new(Reason::Invalid, "a timeout is 1 s to 1 day"));
                }
                Ok(self.moderation(seq, actor, "timeout", Some(user), Some(*secs)))
            }
            Action::Ban { user } => {
                moderator_only()?;
                Ok(self.moderation(seq, actor, "ban", Some(user), None))
            }
            Action::Unban { user } => {
                moderator_only()?;
                Ok(self.moderation(seq, actor, "unban", Some(user), None))
            }
            Action::SlowMode { secs } => {
                moderator_only()?;
                if *secs > MAX_SLOW_MODE_SECS {
                    return Err(Rejection::new(Reason::Invalid, "slow mode is at most 1 h"));
                }
                Ok(self.moderation(seq, actor, "slow_mode", None, Some(*secs)))
            }
        }
    }

    fn moderation(
        &self,
        seq: u64,
        actor: &Actor,
        action: &str,
        user: Option<&String>,
        secs: Option<u64>,
    ) -> Decision {
        Decision {
            events: vec![Event::Moderation {
                seq,
                action: action.to_string(),
                user: user.cloned(),
                secs,
                by: actor.user.clone(),
            }],
            ..Default::default()
        }
    }

    fn check_restricted(&self, actor: &Actor, now_ms: u64) -> Result<(), Rejection> {
        match self.restricted.get(&actor.user) {
            Some(&u64::MAX) => Err(Rejection::new(
                Reason::Banned,
                "you are banned from this chat",
            )),
            Some(&until) if until > now_ms => {
                Err(Rejection::new(Reason::TimedOut, "you are timed out")
                    .retry_after(until - now_ms))
            }
            _ => Ok(()),
        }
    }

    /// The poll `id` if it is the open one (and, for votes, not past its end).
    fn open_poll(&self, id: u64, now_ms: u64) -> Result<&PollView, Rejection> {
        self.view
            .poll
            .as_ref()
            .filter(|p| p.id == id && p.open && now_ms < p.closes_at_ms)
            .ok_or_else(|| Rejection::new(Reason::PollClosed, "that poll is closed"))
    }

    /// The event closing the open poll if its time is up.
    pub fn expired_poll(&self, now_ms: u64) -> Option<Event> {
        let poll = self
            .view
            .poll
            .as_ref()
            .filter(|p| p.open && now_ms >= p.closes_at_ms)?;
        Some(close_event(self.next_seq(), poll))
    }

    /// Applies a sequenced event: the public view, then the authority's own bookkeeping.
    pub fn apply(&mut self, event: &Event, actor: Option<&str>, at_ms: u64, media_ms: Option<u64>) {
        if self.view.apply(event, media_ms).is_err() {
            tracing::error!(
                seq = event.seq(),
                have = self.view.seq,
                "event out of sequence; ignored"
            );
            return;
        }
        match event {
            Event::Chat { user, .. } => {
                self.last_chat_ms.insert(user.clone(), at_ms);
            }
            Event::PollOpened { poll, .. } => {
                self.voters.clear();
                self.last_poll_id = self.last_poll_id.max(poll.id);
            }
            Event::Vote { .. } => {
                if let Some(actor) = actor {
                    self.voters.insert(actor.to_string());
                }
            }
            Event::Moderation {
                action, user, secs, ..
            } => {
                let Some(user) = user else { return };
                match action.as_str() {
                    "timeout" => {
                        let until = at_ms + secs.unwrap_or(0) * 1000;
                        self.restricted.insert(user.clone(), until);
                    }
                    "ban" => {
                        self.restricted.insert(user.clone(), u64::MAX);
                    }
                    "unban" => {
                        self.restricted.remove(user);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A reaction window's counts as an event.
    pub fn reactions_event(&self, counts: BTreeMap<String, u64>, window_ms: u64) -> Event {
        Event::Reactions {
            seq: self.next_seq(),
            counts,
            window_ms,
        }
    }

    pub fn viewers_event(&self, count: u64) -> Event {
        Event::Viewers {
            seq: self.next_seq(),
            count,
        }
    }
}

fn close_event(seq: u64, poll: &PollView) -> Event {
    let best = poll.tallies.iter().copied().max().unwrap_or(0);
    // Ties go to the earliest option; no votes, no winner.
    let winner = (best > 0)
        .then(|| poll.tallies.iter().position(|&t| t == best))
        .flatten();
    Event::PollClosed {
        seq,
        poll: poll.id,
        tallies: poll.tallies.clone(),
        winner,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
