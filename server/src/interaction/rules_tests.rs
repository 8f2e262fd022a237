//! Tests of the channel rules (`rules.rs`): every request kind, each typed rejection, and
//! how events change the state.

use super::*;

fn actor(user: &str, role: Role) -> Actor {
    Actor {
        user: user.into(),
        name: user.to_uppercase(),
        role,
    }
}

fn run(
    state: &mut ChannelState,
    who: &Actor,
    action: Action,
    now: u64,
) -> Result<Decision, Rejection> {
    let decision = state.decide(who, &action, now, 100)?;
    for event in &decision.events {
        state.apply(event, Some(&who.user), now, None);
    }
    Ok(decision)
}

fn reason(result: Result<Decision, Rejection>) -> Reason {
    result.expect_err("should be refused").reason
}

#[test]
fn polls_count_one_vote_each_and_close_with_a_winner() {
    let mut state = ChannelState::default();
    let creator = actor("c", Role::Creator);
    let ann = actor("ann", Role::Viewer);
    let open = Action::PollOpen {
        question: "Next?".into(),
        options: vec!["a".into(), "b".into()],
        duration_secs: 60,
    };
    assert_eq!(
        reason(run(&mut state, &ann, open.clone(), 0)),
        Reason::NotAuthorized
    );
    run(&mut state, &creator, open, 0).unwrap();
    let vote = |option| Action::Vote { poll: 1, option };
    run(&mut state, &ann, vote(1), 1).unwrap();
    assert_eq!(
        reason(run(&mut state, &ann, vote(0), 2)),
        Reason::AlreadyVoted
    );
    assert_eq!(
        reason(run(&mut state, &creator, vote(5), 2)),
        Reason::Invalid
    );
    assert_eq!(
        reason(run(
            &mut state,
            &creator,
            Action::Vote { poll: 9, option: 0 },
            2
        )),
        Reason::PollClosed
    );
    assert_eq!(state.expired_poll(59_999), None);
    let close = state.expired_poll(60_000).unwrap();
    state.apply(&close, None, 60_000, None);
    let poll = state.view.poll.clone().unwrap();
    assert_eq!(
        (poll.open, poll.tallies, poll.winner),
        (false, vec![0, 1], Some(1))
    );
    assert_eq!(
        reason(run(
            &mut state,
            &actor("bob", Role::Viewer),
            vote(0),
            60_001
        )),
        Reason::PollClosed
    );
}

#[test]
fn chat_limits_and_moderation() {
    let mut state = ChannelState::default();
    let ann = actor("ann", Role::Viewer);
    let moderator = actor("mo", Role::Moderator);
    let chat = |text: &str| Action::Chat { text: text.into() };
    assert_eq!(
        reason(run(&mut state, &ann, chat(&"x".repeat(501)), 0)),
        Reason::TooLong
    );
    assert_eq!(
        reason(run(&mut state, &ann, chat("   "), 0)),
        Reason::Invalid
    );
    run(&mut state, &ann, chat("hello"), 0).unwrap();
    run(&mut state, &moderator, Action::SlowMode { secs: 10 }, 0).unwrap();
    let slowed = run(&mut state, &ann, chat("again"), 4_000).unwrap_err();
    assert_eq!(
        (slowed.reason, slowed.retry_after_ms),
        (Reason::RateLimited, Some(6_000))
    );
    run(&mut state, &moderator, chat("mods are exempt"), 4_000).unwrap();
    run(
        &mut state,
        &moderator,
        Action::Timeout {
            user: "ann".into(),
            secs: 30,
        },
        5_000,
    )
    .unwrap();
    let timed_out = run(&mut state, &ann, chat("hi"), 20_000).unwrap_err();
    assert_eq!(
        (timed_out.reason, timed_out.retry_after_ms),
        (Reason::TimedOut, Some(15_000))
    );
    run(&mut state, &ann, chat("back"), 35_000).unwrap();
    run(
        &mut state,
        &moderator,
        Action::Ban { user: "ann".into() },
        36_000,
    )
    .unwrap();
    assert_eq!(
        reason(run(&mut state, &ann, chat("hi"), 99_000_000)),
        Reason::Banned
    );
    assert_eq!(
        reason(run(
            &mut state,
            &ann,
            Action::React {
                emoji: "🔥".into()
            },
            99_000_000
        )),
        Reason::Banned
    );
    run(
        &mut state,
        &moderator,
        Action::Unban { user: "ann".into() },
        36_000,
    )
    .unwrap();
    run(&mut state, &ann, chat("thanks"), 99_000_000).unwrap();
    let first = state.view.chat[0].seq;
    run(&mut state, &moderator, Action::Delete { message: first }, 0).unwrap();
    assert!(state.view.chat.iter().all(|line| line.seq != first));
    assert_eq!(
        reason(run(&mut state, &ann, Action::Delete { message: 2 }, 0)),
        Reason::NotAuthorized
    );
}

#[test]
fn tips_need_the_balance_and_move_the_goal() {
    let mut state = ChannelState::default();
    let creator = actor("c", Role::Creator);
    let ann = actor("ann", Role::Viewer);
    run(
        &mut state,
        &creator,
        Action::Goal {
            title: "mic".into(),
            target: 500,
        },
        0,
    )
    .unwrap();
    let tip = |amount| Action::Tip {
        amount,
        message: Some(" gg ".into()),
    };
    assert_eq!(
        reason(state.decide(&ann, &tip(101), 0, 100)),
        Reason::InsufficientBalance
    );
    assert_eq!(reason(state.decide(&ann, &tip(0), 0, 100)), Reason::Invalid);
    let decision = run(&mut state, &ann, tip(40), 0).unwrap();
    assert_eq!(decision.tip, Some(40));
    assert_eq!(state.view.goal.as_ref().map(|g| g.progress), Some(40));
    assert_eq!(state.view.top_tippers[0].total, 40);
    assert!(matches!(&decision.events[0], Event::Tip { message: Some(m), .. } if m == "gg"));
}

#[test]
fn replaying_events_rebuilds_the_same_state() {
    let mut live = ChannelState::default();
    let creator = actor("c", Role::Creator);
    let mut log = Vec::new();
    for (who, action) in [
        (
            actor("ann", Role::Viewer),
            Action::Chat { text: "hi".into() },
        ),
        (
            creator.clone(),
            Action::PollOpen {
                question: "q".into(),
                options: vec!["a".into(), "b".into()],
                duration_secs: 30,
            },
        ),
        (
            actor("ann", Role::Viewer),
            Action::Vote { poll: 1, option: 0 },
        ),
        (creator.clone(), Action::Ban { user: "bob".into() }),
    ] {
        for event in run(&mut live, &who, action, 10).unwrap().events {
            log.push((event, who.user.clone()));
        }
    }
    let mut replayed = ChannelState::default();
    for (event, user) in &log {
        replayed.apply(event, Some(user), 10, None);
    }
    assert_eq!(replayed.view, live.view);
    let ann = actor("ann", Role::Viewer);
    assert_eq!(
        reason(replayed.decide(&ann, &Action::Vote { poll: 1, option: 1 }, 11, 0)),
        Reason::AlreadyVoted
    );
    assert_eq!(
        reason(replayed.decide(
            &actor("bob", Role::Viewer),
            &Action::Chat { text: "x".into() },
            11,
            0
        )),
        Reason::Banned
    );
}
