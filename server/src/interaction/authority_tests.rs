//! The authority driven without sockets or a clock: an in-memory SQLite store, times
//! passed in.

use std::path::Path;

use stagecast_proto::interaction::{Action, Answer, Reason, Request};

use super::*;
use crate::interaction::payments::DevCredits;
use crate::interaction::rules::Role;
use crate::interaction::store::SqliteStore;

const T0: u64 = 1_800_000_000_000;

fn authority(limits: ChannelLimits) -> Authority {
    let store = SqliteStore::open(Path::new(":memory:")).unwrap();
    let credits = DevCredits {
        prefixes: vec!["demo/".into()],
    };
    Authority::new(Box::new(store), Box::new(credits), limits).unwrap()
}

fn open(authority: &Authority, path: &str) -> Result<(), OpenError> {
    authority
        .open_channel(path, |_| tokio::spawn(async {}))
        .map(|_| ())
}

fn ann() -> Actor {
    Actor {
        user: "ann".into(),
        name: "Ann".into(),
        role: Role::Viewer,
    }
}

fn ask(authority: &Authority, now: u64, path: &str, key: &str, action: Action) -> Answer {
    let request = Request {
        key: key.into(),
        action,
    };
    authority.handle(now, path, Some(&ann()), request)
}

fn reason(answer: &Answer) -> Option<Reason> {
    match answer {
        Answer::Rejected { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn channels_are_capped_and_closed_once_their_broadcast_ended_and_nobody_is_on() {
    let authority = authority(ChannelLimits {
        max_channels: 2,
        ..ChannelLimits::default()
    });
    open(&authority, "demo/live").unwrap();
    open(&authority, "live/a").unwrap();
    assert!(matches!(
        open(&authority, "live/b"),
        Err(OpenError::TooMany(2))
    ));
    // Reopening an open channel is not a new one.
    open(&authority, "live/a").unwrap();

    authority.viewer_joined(T0, "live/a", "ann", true);
    let idle = ChannelLimits::default().idle.as_millis() as u64;
    let later = T0 + idle + 1;
    // Someone is on live/a, and demo/live is still live: neither closes.
    assert!(authority
        .close_idle(later, |path| path == "demo/live")
        .is_empty());
    authority.viewer_joined(later, "live/a", "ann", false);
    // Left just now: not idle yet.
    assert!(authority
        .close_idle(later + 1, |path| path == "demo/live")
        .is_empty());
    assert_eq!(
        authority.close_idle(later + idle, |path| path == "demo/live"),
        vec!["live/a".to_string()]
    );
    assert_eq!(authority.channel_count(), 1);
    open(&authority, "live/b").unwrap();
}

#[tokio::test]
async fn the_viewer_count_counts_users_not_streams() {
    let authority = authority(ChannelLimits::default());
    open(&authority, "demo/live").unwrap();
    for _ in 0..5 {
        authority.viewer_joined(T0, "demo/live", "ann", true);
    }
    authority.viewer_joined(T0, "demo/live", "bob", true);
    assert_eq!(authority.viewers("demo/live"), Some(2));
    for _ in 0..4 {
        authority.viewer_joined(T0, "demo/live", "ann", false);
    }
    assert_eq!(authority.viewers("demo/live"), Some(2));
    authority.viewer_joined(T0, "demo/live", "ann", false);
    assert_eq!(authority.viewers("demo/live"), Some(1));
}

#[tokio::test]
async fn reactions_and_credits_follow_the_channel_rules() {
    let authority = authority(ChannelLimits::default());
    open(&authority, "demo/live").unwrap();
    open(&authority, "live/a").unwrap();
    let react = |emoji: &str| Action::React {
        emoji: emoji.into(),
    };
    assert!(matches!(
        ask(&authority, T0, "demo/live", "r1", react("🔥")),
        Answer::Accepted { .. }
    ));
    assert_eq!(
        reason(&ask(&authority, T0, "demo/live", "r2", react("x"))),
        Some(Reason::Invalid)
    );
    let credit = Action::Credit { amount: 100 };
    assert!(matches!(
        ask(&authority, T0, "demo/live", "c1", credit.clone()),
        Answer::Accepted {
            balance: Some(100),
            ..
        }
    ));
    assert_eq!(
        reason(&ask(&authority, T0, "live/a", "c2", credit)),
        Some(Reason::NotAuthorized)
    );
    assert_eq!(authority.balance("ann", "demo/live"), 100);
    assert_eq!(authority.balance("ann", "live/a"), 0);
    let tip = Action::Tip {
        amount: 1,
        message: None,
    };
    assert_eq!(
        reason(&ask(&authority, T0, "live/a", "t1", tip)),
        Some(Reason::InsufficientBalance)
    );
}
