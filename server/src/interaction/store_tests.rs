//! Tests of the store's compaction (`store.rs`, `snapshot.rs`): idempotency answers expire
//! after the window, events are deleted behind a stored snapshot that restores the same
//! state, and an ignored bench of opening a channel with 1M stored events.

use std::path::PathBuf;

use stagecast_proto::interaction::{Answer, Event};

use super::*;
use crate::interaction::rules::{Actor, Role};
use crate::interaction::snapshot::{self, ChannelSnapshots};

const CHANNEL: &str = "demo/live";
const T0: u64 = 1_800_000_000_000;

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stagecast-store-tests-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("interaction.db")
}

fn chat(seq: u64, user: &str) -> StoredEvent {
    StoredEvent {
        channel: CHANNEL.into(),
        at_ms: T0 + seq,
        actor: Some(user.into()),
        media_ms: Some(seq * 10),
        event: Event::Chat {
            seq,
            user: user.into(),
            name: user.to_uppercase(),
            role: "viewer".into(),
            text: format!("message {seq}"),
        },
    }
}

fn ban(seq: u64, user: &str) -> StoredEvent {
    StoredEvent {
        channel: CHANNEL.into(),
        at_ms: T0 + seq,
        actor: Some("creator".into()),
        media_ms: None,
        event: Event::Moderation {
            seq,
            action: "ban".into(),
            user: Some(user.into()),
            secs: None,
            by: "creator".into(),
        },
    }
}

fn answered(user: &str, key: &str) -> Commit {
    Commit {
        answer: Some((
            user.into(),
            key.into(),
            Answer::Accepted {
                key: key.into(),
                seq: None,
                balance: Some(1),
            },
        )),
        ..Default::default()
    }
}

fn state_json(state: &crate::interaction::rules::ChannelState) -> serde_json::Value {
    serde_json::to_value(state).unwrap()
}

#[test]
fn answers_expire_after_the_idempotency_window_and_not_before() {
    let path = temp_db("answers");
    let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
    store.commit_at(&answered("u1", "old"), T0).unwrap();
    store.commit_at(&answered("u1", "new"), T0 + 1000).unwrap();
    // Within the window, a retry gets the same answer.
    assert_eq!(store.expire_answers(T0 + IDEMPOTENCY_WINDOW_MS).unwrap(), 0);
    assert!(store.answer("u1", "old").unwrap().is_some());
    // Past it, the old answer is gone and the newer one stays.
    assert_eq!(
        store
            .expire_answers(T0 + IDEMPOTENCY_WINDOW_MS + 1)
            .unwrap(),
        1
    );
    assert_eq!(store.answer("u1", "old").unwrap(), None);
    assert!(store.answer("u1", "new").unwrap().is_some());
    // The sweep runs by itself on a commit once its interval has passed.
    let later = T0 + IDEMPOTENCY_WINDOW_MS + ANSWER_SWEEP_EVERY_MS + 1001;
    store.commit_at(&answered("u2", "k"), later).unwrap();
    assert_eq!(store.answer("u1", "new").unwrap(), None);
    assert_eq!(store.count("answers").unwrap(), 1);
}

#[test]
fn answers_of_an_older_database_are_kept_for_a_whole_window() {
    let path = temp_db("migrate");
    {
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE answers (user TEXT NOT NULL, key TEXT NOT NULL, answer TEXT NOT NULL, PRIMARY KEY (user, key));",
        )
        .unwrap();
        db.execute(
            "INSERT INTO answers VALUES ('u1', 'k1', ?1)",
            params![serde_json::to_string(&Answer::Accepted {
                key: "k1".into(),
                seq: None,
                balance: None
            })
            .unwrap()],
        )
        .unwrap();
    }
    let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
    let now = crate::interaction::rules::now_ms();
    assert_eq!(store.expire_answers(now).unwrap(), 0);
    assert!(store.answer("u1", "k1").unwrap().is_some());
    assert_eq!(
        store
            .expire_answers(now + IDEMPOTENCY_WINDOW_MS + 60_000)
            .unwrap(),
        1
    );
}

#[test]
fn events_are_kept_only_behind_a_snapshot_that_restores_the_same_state() {
    let path = temp_db("compact");
    let compaction = Compaction {
        snapshot_every_events: 100,
        ..Compaction::default()
    };
    let mut reference = crate::interaction::rules::ChannelState::default();
    let last = 1234;
    {
        let mut store =
            SqliteStore::open_with(&path, Some(Box::new(ChannelSnapshots)), compaction).unwrap();
        for seq in 1..=last {
            let event = if seq == 500 {
                ban(seq, "troll")
            } else {
                chat(seq, &format!("user{}", seq % 37))
            };
            reference.apply(
                &event.event,
                event.actor.as_deref(),
                event.at_ms,
                event.media_ms,
            );
            let commit = Commit {
                events: vec![event],
                ..Default::default()
            };
            store.commit_at(&commit, T0 + seq).unwrap();
            assert!(
                store.count("events").unwrap() < 100,
                "history stays behind a snapshot"
            );
        }
        assert_eq!(store.count("snapshots").unwrap(), 1);
    }
    // A restart: the snapshot plus the tail give the state every event gave.
    let mut store =
        SqliteStore::open_with(&path, Some(Box::new(ChannelSnapshots)), compaction).unwrap();
    let replay = store.replay(CHANNEL).unwrap();
    assert_eq!(replay.snapshot.as_ref().map(|(seq, _)| *seq), Some(1200));
    assert_eq!(replay.events.len(), 34);
    let (state, restored) = snapshot::restore(&mut store, CHANNEL, T0 + last).unwrap();
    assert!(restored.from_snapshot);
    assert_eq!(restored.events, 34);
    assert_eq!(state.view.seq, last);
    assert_eq!(state_json(&state), state_json(&reference));
    // What only the authority knows survives the snapshot: the ban still holds.
    let troll = Actor {
        user: "troll".into(),
        name: "Troll".into(),
        role: Role::Viewer,
    };
    let action = stagecast_proto::interaction::Action::Chat { text: "hi".into() };
    assert!(state.decide(&troll, &action, T0 + last, 0).is_err());
}

fn synchronous(store: &SqliteStore) -> i64 {
    store
        .db
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn credit_commits_are_synced_and_the_others_are_not() {
    let path = temp_db("sync");
    let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
    let chat_only = Commit {
        events: vec![chat(1, "u")],
        ..answered("u", "k1")
    };
    store.commit_at(&chat_only, T0).unwrap();
    assert_eq!(synchronous(&store), 1, "chat: NORMAL");
    let tip = Commit {
        transfers: vec![Transfer {
            account: "u".into(),
            delta: 5,
            reason: "development credit",
        }],
        ..answered("u", "k2")
    };
    assert!(SqliteStore::synced_commit(&tip));
    store.commit_at(&tip, T0).unwrap();
    // The mode is set before the transaction: the credit commit ran under FULL.
    assert_eq!(synchronous(&store), 2, "credits: FULL");
    store.commit_at(&chat_only_at(2), T0).unwrap();
    assert_eq!(synchronous(&store), 1);
}

fn chat_only_at(seq: u64) -> Commit {
    Commit {
        events: vec![chat(seq, "u")],
        ..Default::default()
    }
}

#[test]
fn commits_of_many_events_are_counted_once_each() {
    let path = temp_db("batch");
    let compaction = Compaction {
        snapshot_every_events: 100,
        ..Compaction::default()
    };
    let mut store =
        SqliteStore::open_with(&path, Some(Box::new(ChannelSnapshots)), compaction).unwrap();
    let batch = |from: u64| Commit {
        events: (from..from + 60).map(|seq| chat(seq, "u")).collect(),
        ..Default::default()
    };
    store.commit_at(&batch(1), T0).unwrap();
    assert_eq!(
        store.count("events").unwrap(),
        60,
        "60 < 100: nothing compacted"
    );
    store.commit_at(&batch(61), T0).unwrap();
    assert_eq!(store.count("events").unwrap(), 0, "120 >= 100: compacted");
    assert_eq!(
        store.replay(CHANNEL).unwrap().snapshot.map(|(seq, _)| seq),
        Some(120)
    );
}

#[test]
fn opening_a_long_uncompacted_history_stores_a_snapshot_at_once() {
    let path = temp_db("restore");
    let total = SNAPSHOT_EVERY_EVENTS + 5;
    {
        // As a database written before compaction existed: no snapshotter.
        let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
        let events = (1..=total).map(|seq| chat(seq, "u")).collect();
        let commit = Commit {
            events,
            ..Default::default()
        };
        store.commit_at(&commit, T0).unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    let (first, restored) = snapshot::restore(&mut store, CHANNEL, T0).unwrap();
    assert_eq!(restored.events as u64, total);
    assert_eq!(restored.compacted as u64, total);
    assert_eq!(store.count("events").unwrap(), 0);
    let (second, restored) = snapshot::restore(&mut store, CHANNEL, T0).unwrap();
    assert!(restored.from_snapshot);
    assert_eq!(restored.events, 0);
    assert_eq!(state_json(&first), state_json(&second));
}

/// Opening a channel with 1M stored events, as every event (what the code before
/// compaction did) and as snapshot plus tail. Run by hand:
/// `cargo test --release -p stagecast-server restart_with_a_million_events -- --ignored --nocapture`
#[test]
#[ignore = "a bench: writes 1M events (a minute or more)"]
fn restart_with_a_million_events() {
    let path = temp_db("million");
    let total: u64 = 1_000_000;
    {
        let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
        let start = std::time::Instant::now();
        for batch in 0..total / 10_000 {
            let events = (1..=10_000)
                .map(|i| {
                    let seq = batch * 10_000 + i;
                    chat(seq, &format!("user{}", seq % 1000))
                })
                .collect();
            let commit = Commit {
                events,
                ..Default::default()
            };
            store.commit_at(&commit, T0).unwrap();
        }
        eprintln!("wrote {total} events in {:?}", start.elapsed());
    }
    // Before: every event replayed (no snapshot), as opening did before compaction.
    let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
    let start = std::time::Instant::now();
    let replay = store.replay(CHANNEL).unwrap();
    let all = snapshot::fold(&replay).unwrap();
    let before = start.elapsed();
    assert_eq!(all.view.seq, total);
    eprintln!(
        "open, all {} events replayed: {before:?}",
        replay.events.len()
    );
    drop(replay);
    // The first opening with compaction replays them once more and stores a snapshot.
    let mut store = SqliteStore::open(&path).unwrap();
    let start = std::time::Instant::now();
    let (_, restored) = snapshot::restore(&mut store, CHANNEL, T0).unwrap();
    eprintln!(
        "first open with compaction (replays {} and stores a snapshot, deleting {}): {:?}",
        restored.events,
        restored.compacted,
        start.elapsed()
    );
    // After: snapshot plus a tail of SNAPSHOT_EVERY_EVENTS - 1 (the worst case).
    let tail = (1..SNAPSHOT_EVERY_EVENTS)
        .map(|i| chat(total + i, &format!("user{}", i % 1000)))
        .collect();
    store
        .commit_at(
            &Commit {
                events: tail,
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    drop(store);
    let mut store = SqliteStore::open(&path).unwrap();
    let start = std::time::Instant::now();
    let (state, restored) = snapshot::restore(&mut store, CHANNEL, T0).unwrap();
    let after = start.elapsed();
    assert!(restored.from_snapshot);
    assert_eq!(state.view.seq, total + SNAPSHOT_EVERY_EVENTS - 1);
    eprintln!(
        "open after compaction (snapshot + {} events): {after:?}",
        restored.events
    );
}

/// What a synced (`FULL`) commit costs against a `NORMAL` one on this disk: 2,000
/// commits of one chat event each, and 2,000 of one credit transfer each. Run by hand:
/// `cargo test --release -p stagecast-server commit_cost_full_against_normal -- --ignored --nocapture`
#[test]
#[ignore = "a bench"]
fn commit_cost_full_against_normal() {
    let path = temp_db("sync-cost");
    let mut store = SqliteStore::open_with(&path, None, Compaction::default()).unwrap();
    for credits in [false, true] {
        let start = std::time::Instant::now();
        for seq in 1..=2_000 {
            let seq = seq + if credits { 2_000 } else { 0 };
            let commit = Commit {
                events: vec![chat(seq, "u")],
                transfers: if credits {
                    vec![Transfer {
                        account: "u".into(),
                        delta: 1,
                        reason: "development credit",
                    }]
                } else {
                    Vec::new()
                },
                ..answered("u", &format!("k{seq}"))
            };
            store.commit_at(&commit, T0 + seq).unwrap();
        }
        let elapsed = start.elapsed();
        let kind = if credits {
            "credit (FULL)"
        } else {
            "chat (NORMAL)"
        };
        eprintln!(
            "{kind}: 2000 commits in {elapsed:?}, {:.0} µs per commit",
            elapsed.as_micros() as f64 / 2000.0
        );
    }
}
