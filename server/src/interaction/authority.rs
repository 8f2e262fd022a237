//! The one place each broadcast's events are ordered: checks a request against the
//! channel's rules, stores what it changes, then publishes the events on the broadcast's
//! timeline. One lock over all channels: balances are per user across channels, and every
//! step under it is short (a SQLite commit in WAL mode is one append).

use stagecast_proto::sync::lock_or_recover;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use stagecast_proto::interaction::{Action, Answer, Event, Reason, Request};
use stagecast_relay::cache::TrackCache;

use super::clock::MediaClock;
use super::payments::CreditSource;
use super::rate_limit::{RateLimiter, ANY_LIMIT, CHAT_LIMIT, REACT_LIMIT};
use super::rules::{now_ms, Actor, ChannelState, Rejection};
use super::store::{Commit, Store, StoreError, StoredEvent, Transfer};
use super::timeline::TimelineWriter;

/// How long reactions are counted before their window is published.
pub const REACTION_WINDOW_MS: u64 = 500;
/// The viewer count is republished at most this often.
const VIEWERS_EVERY_MS: u64 = 2_000;
/// Reaction idempotency keys remembered (reactions are not stored).
const REACTION_KEYS: usize = 10_000;
/// The longest idempotency key.
pub const MAX_KEY_CHARS: usize = 64;

/// The account tips to a channel are credited to.
pub fn channel_account(path: &str) -> String {
    format!("channel:{path}")
}

/// The reactions a viewer may send by default: the viewer page's buttons.
pub const DEFAULT_REACTIONS: &[&str] = &["❤️", "😂", "👏", "🔥", "🎉"];

/// What the authority holds for the channels it serves, bounded.
#[derive(Clone, Debug)]
pub struct ChannelLimits {
    /// Channels open at once (each has a timeline cache and a clock task).
    pub max_channels: usize,
    /// A channel whose broadcast is no longer live, and that nobody has used for this
    /// long, is closed.
    pub idle: Duration,
    /// The reactions accepted; anything else is refused (each distinct one would grow
    /// every snapshot).
    pub reactions: Vec<String>,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            max_channels: 1024,
            idle: Duration::from_secs(60),
            reactions: DEFAULT_REACTIONS.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// A channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this origin already serves {0} interaction channels")]
    TooMany(usize),
}

struct Channel {
    state: ChannelState,
    writer: TimelineWriter,
    clock: MediaClock,
    reactions: BTreeMap<String, u64>,
    window_started_ms: u64,
    /// Streams open per viewer (a user id, or one key per anonymous stream): the count
    /// shown is of viewers, however many streams each holds.
    watching: HashMap<String, u32>,
    /// When a request was last answered or a viewer came or went.
    last_active_ms: u64,
    viewers: u64,
    viewers_published: u64,
    viewers_published_ms: u64,
    _clock_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Some(task) = &self._clock_task {
            task.abort();
        }
    }
}

struct Inner {
    store: Box<dyn Store>,
    balances: HashMap<String, u64>,
    channels: HashMap<String, Channel>,
    limiter: RateLimiter,
    reaction_keys: RecentKeys,
    credits: Box<dyn CreditSource>,
    limits: ChannelLimits,
}

/// The last [`REACTION_KEYS`] `(user, key)` pairs of reactions, oldest forgotten first.
#[derive(Default)]
struct RecentKeys {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl RecentKeys {
    fn contains(&self, key: &(String, String)) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: (String, String)) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
        }
        if self.order.len() > REACTION_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

pub struct Authority {
    inner: Mutex<Inner>,
}

impl Authority {
    /// Loads the ledger; channels are loaded when first opened.
    pub fn new(
        mut store: Box<dyn Store>,
        credits: Box<dyn CreditSource>,
        limits: ChannelLimits,
    ) -> Result<Self, StoreError> {
        let balances = store.balances()?;
        Ok(Self {
            inner: Mutex::new(Inner {
                store,
                balances,
                channels: HashMap::new(),
                limiter: RateLimiter::default(),
                reaction_keys: Default::default(),
                credits,
                limits,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock_or_recover(&self.inner)
    }

    /// The timeline of channel `path`, opening the channel (replaying its stored events)
    /// if needed; `start_clock` starts the task that feeds its media clock.
    pub fn open_channel(
        &self,
        path: &str,
        start_clock: impl FnOnce(MediaClock) -> tokio::task::JoinHandle<()>,
    ) -> Result<TrackCache, OpenError> {
        let mut inner = self.lock();
        if let Some(channel) = inner.channels.get(path) {
            return Ok(channel.writer.cache().clone());
        }
        if inner.channels.len() >= inner.limits.max_channels {
            return Err(OpenError::TooMany(inner.channels.len()));
        }
        // The newest stored snapshot plus the events after it (bounded by compaction).
        let (state, restored) = super::snapshot::restore(&mut *inner.store, path, now_ms())?;
        tracing::info!(
            channel = path,
            events = restored.events,
            from_snapshot = restored.from_snapshot,
            compacted = restored.compacted,
            seq = state.view.seq,
            "interaction channel open"
        );
        let clock = MediaClock::default();
        let task = start_clock(clock.clone());
        let writer = TimelineWriter::new(&state.view, clock.now_ms());
        let cache = writer.cache().clone();
        inner.channels.insert(
            path.to_string(),
            Channel {
                viewers_published: state.view.viewers,
                state,
                writer,
                clock,
                reactions: BTreeMap::new(),
                window_started_ms: 0,
                watching: HashMap::new(),
                last_active_ms: now_ms(),
                viewers: 0,
                viewers_published_ms: 0,
                _clock_task: Some(task),
            },
        );
        Ok(cache)
    }

    /// What `user` has to spend in channel `path`.
    pub fn balance(&self, user: &str, path: &str) -> u64 {
        let inner = self.lock();
        let account = inner.credits.account(user, path);
        inner.balances.get(&account).copied().unwrap_or(0)
    }

    /// A request stream of `viewer` (a user id, or a key of its own for an anonymous
    /// stream) opened (`joined`) or closed.
    pub fn viewer_joined(&self, now_ms: u64, path: &str, viewer: &str, joined: bool) {
        if let Some(channel) = self.lock().channels.get_mut(path) {
            channel.last_active_ms = now_ms;
            if joined {
                *channel.watching.entry(viewer.to_string()).or_default() += 1;
            } else if let Some(streams) = channel.watching.get_mut(viewer) {
                *streams = streams.saturating_sub(1);
                if *streams == 0 {
                    channel.watching.remove(viewer);
                }
            }
            channel.viewers = channel.watching.len() as u64;
        }
    }

    /// How many viewers channel `path` counts now, if it is open.
    #[cfg(test)]
    pub fn viewers(&self, path: &str) -> Option<u64> {
        self.lock().channels.get(path).map(|c| c.viewers)
    }

    /// How many channels are open.
    pub fn channel_count(&self) -> usize {
        self.lock().channels.len()
    }

    /// Closes the channels whose broadcast is no longer live (`is_live` says) and that
    /// nobody has used for [`ChannelLimits::idle`]; returns their paths. What they stored
    /// stays: a channel opened again replays it.
    pub fn close_idle(&self, now_ms: u64, is_live: impl Fn(&str) -> bool) -> Vec<String> {
        let mut inner = self.lock();
        let idle_ms = u64::try_from(inner.limits.idle.as_millis()).unwrap_or(u64::MAX);
        let closing: Vec<String> = inner
            .channels
            .iter()
            .filter(|(path, channel)| {
                channel.watching.is_empty()
                    && now_ms.saturating_sub(channel.last_active_ms) >= idle_ms
                    && !is_live(path)
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in &closing {
            inner.channels.remove(path);
        }
        closing
    }

    /// Answers one request from `actor` (`None`: a viewer without a token) at `now`
    /// (ms since the epoch).
    pub fn handle(&self, now: u64, path: &str, actor: Option<&Actor>, request: Request) -> Answer {
        let key = request.key.clone();
        let reject = |rejection: Rejection| Answer::Rejected {
            key: key.clone(),
            reason: rejection.reason,
            message: rejection.message,
            retry_after_ms: rejection.retry_after_ms,
        };
        let Some(actor) = actor else {
            return reject(Rejection::new(
                Reason::NotAuthorized,
                "join with a name to take part",
            ));
        };
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return reject(Rejection::new(
                Reason::Invalid,
                "an idempotency key is 1 to 64 characters",
            ));
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        match inner.store.answer(&actor.user, &key) {
            Ok(Some(first)) => return first,
            Ok(None) => {}
            Err(err) => {
                tracing::error!(%err, "idempotency lookup failed");
                return reject(Rejection::new(
                    Reason::Unavailable,
                    "storage is unavailable; retry",
                ));
            }
        }
        let reaction_key = (actor.user.clone(), key.clone());
        if inner.reaction_keys.contains(&reaction_key) {
            return Answer::Accepted {
                key,
                seq: None,
                balance: None,
            };
        }
        if let Action::React { emoji } = &request.action {
            if !inner.limits.reactions.iter().any(|r| r == emoji) {
                return reject(Rejection::new(
                    Reason::Invalid,
                    format!("reactions here are {}", inner.limits.reactions.join(" ")),
                ));
            }
        }
        let limits = match &request.action {
            Action::Chat { .. } => Some(CHAT_LIMIT),
            Action::React { .. } => Some(REACT_LIMIT),
            _ => None,
        };
        let limited = inner
            .limiter
            .check(&actor.user, ANY_LIMIT, now)
            .and_then(|()| {
                limits.map_or(Ok(()), |limit| inner.limiter.check(&actor.user, limit, now))
            });
        if let Err(rejection) = limited {
            return reject(rejection);
        }
        if let Action::Credit { amount } = request.action {
            if let Err(rejection) = inner.credits.authorize(actor, path, amount) {
                return reject(rejection);
            }
        }
        let Some(channel) = inner.channels.get_mut(path) else {
            return reject(Rejection::new(
                Reason::Unavailable,
                "this broadcast is not live here",
            ));
        };
        channel.last_active_ms = now;
        let account = inner.credits.account(&actor.user, path);
        let balance = inner.balances.get(&account).copied().unwrap_or(0);
        let decision = match channel.state.decide(actor, &request.action, now, balance) {
            Ok(decision) => decision,
            Err(rejection) => return reject(rejection),
        };
        if let Some(emoji) = decision.reaction {
            if channel.reactions.is_empty() {
                channel.window_started_ms = now;
            }
            *channel.reactions.entry(emoji).or_default() += 1;
            inner.reaction_keys.insert(reaction_key);
            return Answer::Accepted {
                key,
                seq: None,
                balance: None,
            };
        }
        let mut transfers = Vec::new();
        let mut new_balance = None;
        if let Some(amount) = decision.tip {
            transfers.push(Transfer {
                account: account.clone(),
                delta: -i64::try_from(amount).unwrap_or(i64::MAX),
                reason: "tip",
            });
            transfers.push(Transfer {
                account: channel_account(path),
                delta: i64::try_from(amount).unwrap_or(i64::MAX),
                reason: "tip received",
            });
            new_balance = Some(balance.saturating_sub(amount));
        }
        if let Some(amount) = decision.grant {
            transfers.push(Transfer {
                account: account.clone(),
                delta: i64::try_from(amount).unwrap_or(i64::MAX),
                reason: "development credit",
            });
            new_balance = Some(balance.saturating_add(amount));
        }
        let answer = Answer::Accepted {
            key: key.clone(),
            seq: decision.events.first().map(Event::seq),
            balance: new_balance,
        };
        let commit = Commit {
            events: stored(path, channel, &decision.events, Some(&actor.user), now),
            transfers,
            answer: Some((actor.user.clone(), key.clone(), answer.clone())),
        };
        if let Err(err) = inner.store.commit(&commit) {
            tracing::error!(%err, "could not store an accepted request");
            return reject(Rejection::new(
                Reason::Unavailable,
                "storage is unavailable; retry",
            ));
        }
        for transfer in &commit.transfers {
            let credits = inner.balances.entry(transfer.account.clone()).or_default();
            *credits = credits.saturating_add_signed(transfer.delta);
        }
        publish(channel, &commit.events);
        answer
    }

    /// Time-driven events: polls that ran out, reaction windows, the viewer count.
    pub fn tick(&self, now: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.limiter.prune(now);
        for (path, channel) in inner.channels.iter_mut() {
            let mut due = Vec::new();
            if let Some(close) = channel.state.expired_poll(now) {
                due.push(close);
            }
            for event in due.drain(..) {
                sequence(&mut *inner.store, path, channel, event, now);
            }
            if !channel.reactions.is_empty()
                && now >= channel.window_started_ms + REACTION_WINDOW_MS
            {
                let counts = std::mem::take(&mut channel.reactions);
                let event = channel.state.reactions_event(counts, REACTION_WINDOW_MS);
                sequence(&mut *inner.store, path, channel, event, now);
            }
            if channel.viewers != channel.viewers_published
                && now >= channel.viewers_published_ms + VIEWERS_EVERY_MS
            {
                let event = channel.state.viewers_event(channel.viewers);
                if sequence(&mut *inner.store, path, channel, event, now) {
                    channel.viewers_published = channel.viewers;
                    channel.viewers_published_ms = now;
                }
            }
        }
    }
}

/// Stores and publishes one event nobody asked for; `false` if it could not be stored.
fn sequence(
    store: &mut dyn Store,
    path: &str,
    channel: &mut Channel,
    event: Event,
    now: u64,
) -> bool {
    let events = stored(path, channel, &[event], None, now);
    let commit = Commit {
        events,
        ..Default::default()
    };
    if let Err(err) = store.commit(&commit) {
        tracing::error!(%err, channel = path, "could not store an event");
        return false;
    }
    publish(channel, &commit.events);
    true
}

fn stored(
    path: &str,
    channel: &Channel,
    events: &[Event],
    actor: Option<&str>,
    now: u64,
) -> Vec<StoredEvent> {
    let media_ms = channel.clock.now_ms();
    events
        .iter()
        .map(|event| StoredEvent {
            channel: path.to_string(),
            at_ms: now,
            actor: actor.map(str::to_string),
            media_ms,
            event: event.clone(),
        })
        .collect()
}

fn publish(channel: &mut Channel, events: &[StoredEvent]) {
    for stored in events {
        channel
            .writer
            .push_event(&channel.state.view, &stored.event, stored.media_ms);
        channel.state.apply(
            &stored.event,
            stored.actor.as_deref(),
            stored.at_ms,
            stored.media_ms,
        );
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
