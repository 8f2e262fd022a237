//! What the interaction authority must not lose: every event, the credit ledger and the
//! answers to accepted requests (for idempotency). [`Store`] is the interface; SQLite in
//! the data directory (WAL) is the implementation, so a server database can replace it.
//!
//! Every accepted request is one [`Commit`], written in one transaction before the request
//! is answered: after a crash, what was answered `accepted` is all there, once.

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

pub trait Store: Send + 'static {
    /// A channel's events, in sequence.
    fn events(&mut self, channel: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// Every account's credits.
    fn balances(&mut self) -> Result<HashMap<String, u64>, StoreError>;
    /// The answer given to an accepted request, if this key was used by this user.
    fn answer(&mut self, user: &str, key: &str) -> Result<Option<Answer>, StoreError>;
    fn commit(&mut self, commit: &Commit) -> Result<(), StoreError>;
}

/// The SQLite store.
pub struct SqliteStore {
    db: Connection,
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
";

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        // WAL: readers never block the writer, and a commit is one append. NORMAL sync is
        // durable across a crash of this process (the OS has the pages); only a power cut
        // can lose the last commits (SQLite "PRAGMA synchronous" docs).
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }
}

impl Store for SqliteStore {
    fn events(&mut self, channel: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let mut statement = self.db.prepare_cached(
            "SELECT at_ms, actor, media_ms, data FROM events WHERE channel = ?1 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![channel], |row| {
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
                at_ms: at_ms as u64,
                actor,
                media_ms: media_ms.map(|m| m as u64),
                event: serde_json::from_str(&data)?,
            });
        }
        Ok(events)
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
        let now = crate::interaction::rules::now_ms() as i64;
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
            tx.prepare_cached("INSERT INTO answers (user, key, answer) VALUES (?1, ?2, ?3)")?
                .execute(params![user, key, serde_json::to_string(answer)?])?;
        }
        tx.commit()?;
        Ok(())
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
