//! What the interaction authority must not lose: every event, the credit ledger and the
//! answers to accepted requests (for idempotency). [`Store`] is the interface; SQLite in
//! the data directory (WAL) is the implementation, so a server database can replace it.
//!
//! Every accepted request is one [`Commit`], written in one transaction before the request
//! is answered: after a crash, what was answered `accepted` is all there, once.
//!
//! Durability: the database runs in WAL mode. A commit that moves credits (a tip, a
//! grant: anything with [`Transfer`]s) is written with `synchronous=FULL`: the WAL is
//! synced to the disk before the request is answered, so neither a crash of the process
//! nor a power cut loses it, nor anything committed before it. Every other commit (chat,
//! votes, polls, moderation, reaction windows, viewer counts) is written with
//! `synchronous=NORMAL`: it survives a crash of the process, but a power cut or an
//! operating-system crash can lose the commits of that kind made after the last credit
//! commit that the operating system had not yet written back (typically the last few
//! seconds); they come back as never accepted (a retry with the same key is decided
//! anew). Syncing every commit would cost about 0.7 to 2.7 ms each on the disk measured
//! (against 0.12 ms), and all commits run one at a time under the authority's lock.

//! Compaction keeps the database and the restart time bounded:
//! - `answers` (idempotency) expire after [`IDEMPOTENCY_WINDOW_MS`]: a retry with the
//!   same key within the window gets the same answer; older answers are deleted by a
//!   sweep every [`ANSWER_SWEEP_EVERY_MS`] of commit time.
//! - `events` are kept only behind a stored snapshot: every [`SNAPSHOT_EVERY_EVENTS`]
//!   events of a channel, its state (folded by a [`Snapshotter`]) is stored in `snapshots`
//!   and the events it covers are deleted, so opening a channel reads one snapshot and at
//!   most that many events. The credit ledger (`ledger`) is history of money and is never
//!   compacted.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use stagecast_proto::interaction::{Answer, Event};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is not readable: {0}")]
    Json(#[from] serde_json::Error),
}

/// One sequenced event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub channel: String,
    pub at_ms: u64,
    /// Who caused it (a user id), for the authority's own bookkeeping (votes, bans).
    pub actor: Option<String>,
    pub media_ms: Option<u64>,
    pub event: Event,
}

/// A change of one account's credits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub account: String,
    pub delta: i64,
    pub reason: &'static str,
}

/// Everything one accepted request changes, stored all together or not at all.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    pub events: Vec<StoredEvent>,
    pub transfers: Vec<Transfer>,
    /// `(user, idempotency key, answer)`.
    pub answer: Option<(String, String, Answer)>,
}

/// How long the answer to an accepted request is kept for retries with the same key.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// How often (in commit time) expired answers are deleted.
pub const ANSWER_SWEEP_EVERY_MS: u64 = 10 * 60 * 1000;
/// A channel's state is snapshotted, and the events behind it deleted, every this many
/// events: the most a restart replays.
pub const SNAPSHOT_EVERY_EVENTS: u64 = 10_000;

/// What a channel's stored history is on opening: its newest snapshot, if any, and the
/// events after it, in sequence.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// `(seq, state)`: the state (as the [`Snapshotter`] wrote it) as of event `seq`.
    pub snapshot: Option<(u64, String)>,
    pub events: Vec<StoredEvent>,
}

/// Folds a channel's history into one stored state: its snapshot (if any) and the events
/// after it in, `(seq, state)` out. The store does not know the state's shape; the
/// interaction rules do (`snapshot::ChannelSnapshots`).
pub trait Snapshotter: Send + 'static {
    fn fold(&self, replay: &Replay) -> Result<(u64, String), StoreError>;
}

pub trait Store: Send + 'static {
    /// A channel's events after its newest snapshot, in sequence.
    fn events(&mut self, channel: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// A channel's newest snapshot and the events after it.
    fn replay(&mut self, channel: &str) -> Result<Replay, StoreError> {
        Ok(Replay {
            snapshot: None,
            events: self.events(channel)?,
        })
    }
    /// Stores `state` as channel's snapshot as of event `seq` and deletes the events it
    /// covers; how many were deleted. A store that keeps full history may ignore it.
    fn save_snapshot(
        &mut self,
        _channel: &str,
        _seq: u64,
        _state: &str,
        _now_ms: u64,
    ) -> Result<usize, StoreError> {
        Ok(0)
    }
    /// Every account's credits.
    fn balances(&mut self) -> Result<HashMap<String, u64>, StoreError>;
    /// The answer given to an accepted request, if this key was used by this user.
    fn answer(&mut self, user: &str, key: &str) -> Result<Option<Answer>, StoreError>;
    fn commit(&mut self, commit: &Commit) -> Result<(), StoreError>;
}

/// When the SQLite store compacts (defaults: the constants above).
#[derive(Clone, Copy, Debug)]
pub struct Compaction {
    pub answer_ttl_ms: u64,
    pub answer_sweep_every_ms: u64,
    /// `0`: never snapshot.
    pub snapshot_every_events: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Self {
            answer_ttl_ms: IDEMPOTENCY_WINDOW_MS,
            answer_sweep_every_ms: ANSWER_SWEEP_EVERY_MS,
            snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
        }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    db: Connection,
    snapshotter: Option<Box<dyn Snapshotter>>,
    compaction: Compaction,
    /// Per channel, events stored after its snapshot (learnt on the first replay or
    /// commit of the channel in this process).
    since_snapshot: HashMap<String, u64>,
    last_sweep_ms: u64,
    /// Whether the connection is at `synchronous=FULL` (else NORMAL).
    synced: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    channel  TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    actor    TEXT,
    media_ms INTEGER,
    data     TEXT    NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    credits INTEGER NOT NULL CHECK (credits >= 0)
);
CREATE TABLE IF NOT EXISTS ledger (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    account TEXT    NOT NULL,
    delta   INTEGER NOT NULL,
    reason  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    user   TEXT NOT NULL,
    key    TEXT NOT NULL,
    answer TEXT NOT NULL,
    PRIMARY KEY (user, key)
);
CREATE TABLE IF NOT EXISTS snapshots (
    channel TEXT    PRIMARY KEY,
    seq     INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    state   TEXT    NOT NULL
);
";

impl SqliteStore {
    /// Opens (or creates) the database at `path`, compacting as [`Compaction::default`]
    /// says with the interaction rules' snapshots.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            Some(Box::new(super::snapshot::ChannelSnapshots)),
            Compaction::default(),
        )
    }

    /// Opens (or creates) the database at `path`; without a `snapshotter`, events are
    /// never compacted.
    pub fn open_with(
        path: &Path,
        snapshotter: Option<Box<dyn Snapshotter>>,
        compaction: Compaction,
    ) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        // WAL: readers never block the writer, and a commit is one append. Each commit
        // sets `synchronous` for itself (`write`): FULL for credit transfers, so they
        // survive a power cut, NORMAL for the rest. See the module documentation.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        migrate_answers(&db, crate::interaction::rules::now_ms())?;
        Ok(Self {
            db,
            snapshotter,
            compaction,
            since_snapshot: HashMap::new(),
            last_sweep_ms: 0,
            synced: true,
        })
    }

    /// [`Store::commit`] at time `now_ms` (ledger and answer times; compaction's clock).
    pub fn commit_at(&mut self, commit: &Commit, now_ms: u64) -> Result<(), StoreError> {
        self.write(commit, now_ms)?;
        // The commit is stored: compaction problems are logged, never turned into a
        // refusal of a request that is already accepted.
        self.after_commit(commit, now_ms);
        Ok(())
    }

    /// Deletes answers older than the idempotency window; how many.
    pub fn expire_answers(&mut self, now_ms: u64) -> Result<usize, StoreError> {
        self.last_sweep_ms = now_ms;
        let before = now_ms.saturating_sub(self.compaction.answer_ttl_ms);
        let deleted = self
            .db
            .prepare_cached("DELETE FROM answers WHERE at_ms < ?1")?
            .execute(params![clamp_i64(before)])?;
        if deleted > 0 {
            tracing::debug!(deleted, "expired idempotency answers");
        }
        Ok(deleted)
    }

    /// Folds channel's snapshot and events into a new snapshot and deletes the events it
    /// covers; how many were deleted. Nothing happens without a snapshotter.
    pub fn compact_channel(&mut self, channel: &str, now_ms: u64) -> Result<usize, StoreError> {
        let Some(snapshotter) = &self.snapshotter else {
            return Ok(0);
        };
        let replay = read_replay(&self.db, channel)?;
        if replay.events.is_empty() {
            return Ok(0);
        }
        let (seq, state) = snapshotter.fold(&replay)?;
        self.save_snapshot(channel, seq, &state, now_ms)
    }

    /// Rows in `table` (for tests and the restart bench).
    #[cfg(test)]
    pub fn count(&self, table: &str) -> Result<u64, StoreError> {
        let sql = match table {
            "events" => "SELECT COUNT(*) FROM events",
            "answers" => "SELECT COUNT(*) FROM answers",
            "snapshots" => "SELECT COUNT(*) FROM snapshots",
            _ => "SELECT COUNT(*) FROM ledger",
        };
        Ok(self.db.query_row(sql, [], |row| row.get::<_, i64>(0))? as u64)
    }

    fn after_commit(&mut self, commit: &Commit, now_ms: u64) {
        if now_ms
            >= self
                .last_sweep_ms
                .saturating_add(self.compaction.answer_sweep_every_ms)
        {
            if let Err(err) = self.expire_answers(now_ms) {
                tracing::warn!(%err, "could not expire idempotency answers");
            }
        }
        let every = self.compaction.snapshot_every_events;
        if every == 0 || self.snapshotter.is_none() {
            return;
        }
        // Events this commit added, per channel.
        let mut added: Vec<(&str, u64)> = Vec::new();
        for stored in &commit.events {
            match added.iter_mut().find(|(c, _)| *c == stored.channel) {
                Some((_, n)) => *n += 1,
                None => added.push((&stored.channel, 1)),
            }
        }
        let mut due = Vec::new();
        for (channel, n) in added {
            let count = match self.since_snapshot.get(channel) {
                Some(count) => count.saturating_add(n),
                // First seen in this process: the count includes this commit's events.
                None => match count_since_snapshot(&self.db, channel) {
                    Ok(count) => count,
                    Err(err) => {
                        tracing::warn!(%err, "could not count a channel's events");
                        continue;
                    }
                },
            };
            self.since_snapshot.insert(channel.to_string(), count);
            if count >= every {
                due.push(channel.to_string());
            }
        }
        for channel in due {
            match self.compact_channel(&channel, now_ms) {
                Ok(deleted) => tracing::info!(channel, deleted, "interaction history compacted"),
                Err(err) => tracing::warn!(%err, channel, "could not compact a channel"),
            }
        }
    }

    /// Whether `commit` is synced to the disk before it returns: credit transfers are.
    pub fn synced_commit(commit: &Commit) -> bool {
        !commit.transfers.is_empty()
    }

    fn write(&mut self, commit: &Commit, now_ms: u64) -> Result<(), StoreError> {
        let now = clamp_i64(now_ms);
        let sync = Self::synced_commit(commit);
        if sync != self.synced {
            // Outside any transaction; takes effect for the next commit.
            let mode = if sync { "FULL" } else { "NORMAL" };
            self.db.pragma_update(None, "synchronous", mode)?;
            self.synced = sync;
        }
        let tx = self.db.transaction()?;
        for stored in &commit.events {
            tx.prepare_cached(
                "INSERT INTO events (channel, seq, at_ms, actor, media_ms, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                stored.channel,
                stored.event.seq() as i64,
                stored.at_ms as i64,
                stored.actor,
                stored.media_ms.map(|m| m as i64),
                serde_json::to_string(&stored.event)?,
            ])?;
        }
        for transfer in &commit.transfers {
            // UPDATE first: an INSERT's CHECK would judge the delta alone, not the sum.
            let updated = tx
                .prepare_cached("UPDATE balances SET credits = credits + ?2 WHERE account = ?1")?
                .execute(params![transfer.account, transfer.delta])?;
            if updated == 0 {
                tx.prepare_cached("INSERT INTO balances (account, credits) VALUES (?1, ?2)")?
                    .execute(params![transfer.account, transfer.delta])?;
            }
            tx.prepare_cached(
                "INSERT INTO ledger (at_ms, account, delta, reason) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                now,
                transfer.account,
                transfer.delta,
                transfer.reason
            ])?;
        }
        if let Some((user, key, answer)) = &commit.answer {
            tx.prepare_cached(
                "INSERT INTO answers (user, key, answer, at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![user, key, serde_json::to_string(answer)?, now])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Databases made before answers expired have no `at_ms` column: add it, dating every
/// answer kept so far `now_ms` (so each still gets a whole window).
fn migrate_answers(db: &Connection, now_ms: u64) -> Result<(), StoreError> {
    let has_at: bool = db
        .prepare("SELECT COUNT(*) FROM pragma_table_info('answers') WHERE name = 'at_ms'")?
        .query_row([], |row| row.get::<_, i64>(0))?
        > 0;
    if !has_at {
        db.execute_batch("ALTER TABLE answers ADD COLUMN at_ms INTEGER NOT NULL DEFAULT 0")?;
        db.execute("UPDATE answers SET at_ms = ?1", params![clamp_i64(now_ms)])?;
    }
    db.execute_batch("CREATE INDEX IF NOT EXISTS answers_at ON answers (at_ms)")?;
    Ok(())
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn snapshot_seq(db: &Connection, channel: &str) -> Result<Option<(u64, String)>, StoreError> {
    Ok(db
        .prepare_cached("SELECT seq, state FROM snapshots WHERE channel = ?1")?
        .query_row(params![channel], |row| {
            Ok((
                row.get::<_, i64>(0)?.max(0) as u64,
                row.get::<_, String>(1)?,
            ))
        })
        .optional()?)
}

fn count_since_snapshot(db: &Connection, channel: &str) -> Result<u64, StoreError> {
    let after = snapshot_seq(db, channel)?.map_or(0, |(seq, _)| seq);
    Ok(db
        .prepare_cached("SELECT COUNT(*) FROM events WHERE channel = ?1 AND seq > ?2")?
        .query_row(params![channel, clamp_i64(after)], |row| {
            row.get::<_, i64>(0)
        })?
        .max(0) as u64)
}

fn read_events(db: &Connection, channel: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
    let mut statement = db.prepare_cached(
        "SELECT at_ms, actor, media_ms, data FROM events WHERE channel = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let rows = statement.query_map(params![channel, clamp_i64(after)], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, Option<String>>(1)?,
            row.get::<_, Option<i64>>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (at_ms, actor, media_ms, data) = row?;
        events.push(StoredEvent {
            channel: channel.to_string(),
            at_ms: at_ms.max(0) as u64,
            actor,
            media_ms: media_ms.map(|m| m.max(0) as u64),
            event: serde_json::from_str(&data)?,
        });
    }
    Ok(events)
}

fn read_replay(db: &Connection, channel: &str) -> Result<Replay, StoreError> {
    let snapshot = snapshot_seq(db, channel)?;
    let after = snapshot.as_ref().map_or(0, |(seq, _)| *seq);
    Ok(Replay {
        events: read_events(db, channel, after)?,
        snapshot,
    })
}

impl Store for SqliteStore {
    fn events(&mut self, channel: &str) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self.replay(channel)?.events)
    }

    fn replay(&mut self, channel: &str) -> Result<Replay, StoreError> {
        let replay = read_replay(&self.db, channel)?;
        self.since_snapshot
            .insert(channel.to_string(), replay.events.len() as u64);
        Ok(replay)
    }

    fn save_snapshot(
        &mut self,
        channel: &str,
        seq: u64,
        state: &str,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let tx = self.db.transaction()?;
        tx.prepare_cached(
            "INSERT INTO snapshots (channel, seq, at_ms, state) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel) DO UPDATE SET seq = excluded.seq, at_ms = excluded.at_ms, state = excluded.state",
        )?
        .execute(params![channel, clamp_i64(seq), clamp_i64(now_ms), state])?;
        let deleted = tx
            .prepare_cached("DELETE FROM events WHERE channel = ?1 AND seq <= ?2")?
            .execute(params![channel, clamp_i64(seq)])?;
        let left: i64 = tx
            .prepare_cached("SELECT COUNT(*) FROM events WHERE channel = ?1")?
            .query_row(params![channel], |row| row.get(0))?;
        tx.commit()?;
        self.since_snapshot
            .insert(channel.to_string(), left.max(0) as u64);
        Ok(deleted)
    }

    fn balances(&mut self) -> Result<HashMap<String, u64>, StoreError> {
        let mut statement = self
            .db
            .prepare_cached("SELECT account, credits FROM balances")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut balances = HashMap::new();
        for row in rows {
            let (account, credits) = row?;
            balances.insert(account, credits.max(0) as u64);
        }
        Ok(balances)
    }

    fn answer(&mut self, user: &str, key: &str) -> Result<Option<Answer>, StoreError> {
        let json: Option<String> = self
            .db
            .prepare_cached("SELECT answer FROM answers WHERE user = ?1 AND key = ?2")?
            .query_row(params![user, key], |row| row.get(0))
            .optional()?;
        Ok(match json {
            Some(json) => Some(serde_json::from_str(&json)?),
            None => None,
        })
    }

    fn commit(&mut self, commit: &Commit) -> Result<(), StoreError> {
        self.commit_at(commit, crate::interaction::rules::now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stagecast-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("interaction.db")
    }

    #[test]
    fn commits_survive_reopening_and_are_all_or_nothing() {
        let path = temp_db("commit");
        let event = Event::Viewers { seq: 1, count: 3 };
        {
            let mut store = SqliteStore::open(&path).unwrap();
            let commit = Commit {
                events: vec![StoredEvent {
                    channel: "demo/live".into(),
                    at_ms: 5,
                    actor: Some("u1".into()),
                    media_ms: Some(7),
                    event: event.clone(),
                }],
                transfers: vec![Transfer {
                    account: "u1".into(),
                    delta: 100,
                    reason: "credit",
                }],
                answer: Some((
                    "u1".into(),
                    "k1".into(),
                    Answer::Accepted {
                        key: "k1".into(),
                        seq: Some(1),
                        balance: Some(100),
                    },
                )),
            };
            store.commit(&commit).unwrap();
            let spend = Commit {
                transfers: vec![
                    Transfer {
                        account: "u1".into(),
                        delta: -40,
                        reason: "tip",
                    },
                    Transfer {
                        account: "channel:demo/live".into(),
                        delta: 40,
                        reason: "tip received",
                    },
                ],
                ..Default::default()
            };
            store.commit(&spend).unwrap();
            // Overdrawing fails the CHECK, and nothing of that commit is kept.
            let overdraw = Commit {
                events: vec![StoredEvent {
                    event: Event::Viewers { seq: 2, count: 4 },
                    ..commit.events[0].clone()
                }],
                transfers: vec![Transfer {
                    account: "u1".into(),
                    delta: -61,
                    reason: "tip",
                }],
                answer: None,
            };
            assert!(store.commit(&overdraw).is_err());
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let events = store.events("demo/live").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, event);
        assert_eq!(events[0].actor.as_deref(), Some("u1"));
        let balances = store.balances().unwrap();
        assert_eq!(balances.get("u1"), Some(&60));
        assert_eq!(balances.get("channel:demo/live"), Some(&40));
        assert!(matches!(
            store.answer("u1", "k1").unwrap(),
            Some(Answer::Accepted { seq: Some(1), .. })
        ));
        assert_eq!(store.answer("u2", "k1").unwrap(), None);
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod compaction_tests;
