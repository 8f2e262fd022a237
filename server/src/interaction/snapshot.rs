//! A channel's state as stored behind its compacted history: [`ChannelSnapshots`] folds a
//! stored snapshot and the events after it into a new snapshot (for the store's
//! compaction), and [`restore`] rebuilds a channel's [`ChannelState`] on opening from the
//! newest snapshot plus the events after it, so opening replays at most
//! [`SNAPSHOT_EVERY_EVENTS`](super::store::SNAPSHOT_EVERY_EVENTS) events however long
//! the channel has run.
//!
//! The snapshot is the whole [`ChannelState`] as JSON (the public view and what only the
//! authority needs: voters, bans and time-outs, slow-mode times), so replaying a snapshot
//! and a tail gives exactly the state replaying every event gives.

use super::rules::ChannelState;
use super::store::{Replay, Snapshotter, Store, StoreError, SNAPSHOT_EVERY_EVENTS};

/// The interaction rules' [`Snapshotter`].
pub struct ChannelSnapshots;

impl Snapshotter for ChannelSnapshots {
    fn fold(&self, replay: &Replay) -> Result<(u64, String), StoreError> {
        let state = fold(replay)?;
        Ok((state.view.seq, serde_json::to_string(&state)?))
    }
}

/// The state a replay describes: its snapshot with its events applied in order.
pub fn fold(replay: &Replay) -> Result<ChannelState, StoreError> {
    let mut state = match &replay.snapshot {
        Some((_, json)) => serde_json::from_str::<ChannelState>(json)?,
        None => ChannelState::default(),
    };
    for stored in &replay.events {
        state.apply(
            &stored.event,
            stored.actor.as_deref(),
            stored.at_ms,
            stored.media_ms,
        );
    }
    Ok(state)
}

/// What opening a channel read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Events replayed after the snapshot.
    pub events: usize,
    pub from_snapshot: bool,
    /// Events deleted because this opening stored a new snapshot.
    pub compacted: usize,
}

/// Rebuilds channel `path`'s state from `store`. If the tail replayed was long (a
/// database from before compaction, or one written with compaction off), the state is
/// stored as a snapshot at once, so the next opening is short.
pub fn restore(
    store: &mut dyn Store,
    path: &str,
    now_ms: u64,
) -> Result<(ChannelState, Restored), StoreError> {
    let replay = store.replay(path)?;
    let state = fold(&replay)?;
    let mut restored = Restored {
        events: replay.events.len(),
        from_snapshot: replay.snapshot.is_some(),
        compacted: 0,
    };
    if replay.events.len() as u64 >= SNAPSHOT_EVERY_EVENTS {
        let json = serde_json::to_string(&state)?;
        restored.compacted = store.save_snapshot(path, state.view.seq, &json, now_ms)?;
    }
    Ok((state, restored))
}
