//! The control decisions driven with made-up times and sessions.

use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::link_plan::{goaway_target, GoAwayTarget, LinkEnd, LinkPlan, BACKOFF_MAX, BACKOFF_MIN};
use super::resume::{OnLost, ResumePolicy};
use super::source_choice::{choose_source, Routed, SourceChoice};

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn goaway_is_followed_only_to_the_same_host_or_a_configured_upstream() {
    let current = url("moqt://origin-a.example:4443");
    let configured = [current.clone(), url("moqt://origin-b.example:4443")];
    let to = |uri: &str| goaway_target(&current, &configured, uri).map(|u| u.to_string());
    assert_eq!(
        to("moqt://origin-a.example:5443/").as_deref(),
        Some("moqt://origin-a.example:5443/")
    );
    assert_eq!(
        to("moqt://origin-b.example:4443").as_deref(),
        Some("moqt://origin-b.example:4443")
    );
    // Another host, or a configured host on another port, would be given our token.
    assert_eq!(to("moqt://evil.example:4443"), None);
    assert_eq!(to("moqt://origin-b.example:9999"), None);
    assert_eq!(to("http://origin-a.example:4443"), None);
    assert_eq!(to(""), None);
    assert_eq!(to("not a url"), None);
}

#[test]
fn a_link_fails_over_in_order_and_backs_off_up_to_the_cap() {
    let (a, b) = (url("moqt://a.example:1"), url("moqt://b.example:1"));
    let mut plan = LinkPlan::new(vec![a.clone(), b.clone()]);
    assert!(!plan.is_retry());
    let mut waits = Vec::new();
    let mut tried = Vec::new();
    for _ in 0..8 {
        tried.push(plan.next_url().unwrap());
        waits.push(plan.on_end(LinkEnd::Down, Duration::ZERO, 1.0));
    }
    assert!(plan.is_retry());
    assert_eq!(tried[..4], [a.clone(), b.clone(), a.clone(), b]);
    assert_eq!(waits[0], BACKOFF_MIN);
    assert_eq!(waits[1], BACKOFF_MIN * 2);
    assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
    // Jitter scales the wait down, never up.
    assert!(plan.on_end(LinkEnd::Down, Duration::ZERO, 0.5) <= BACKOFF_MAX / 2);
}

#[test]
fn a_stable_link_resets_the_backoff_and_a_goaway_moves_at_once() {
    let a = url("moqt://a.example:1");
    let mut plan = LinkPlan::new(vec![a.clone()]);
    for _ in 0..5 {
        plan.on_end(LinkEnd::Down, Duration::ZERO, 1.0);
    }
    assert_eq!(
        plan.on_end(LinkEnd::Down, Duration::from_secs(60), 1.0),
        BACKOFF_MIN
    );
    // The GOAWAY's target is tried once, with no wait, then the configured list again.
    let moved = url("moqt://a.example:2/");
    assert_eq!(
        plan.on_goaway(&a, moved.as_str()),
        GoAwayTarget::Follow(moved.clone())
    );
    assert_eq!(
        plan.on_end(LinkEnd::GoingAway, Duration::ZERO, 1.0),
        Duration::ZERO
    );
    assert_eq!(plan.next_url(), Some(moved));
    assert_eq!(plan.next_url(), Some(a.clone()));
    assert_eq!(
        plan.on_goaway(&a, "moqt://evil.example:1"),
        GoAwayTarget::Refused
    );
    assert_eq!(plan.on_goaway(&a, ""), GoAwayTarget::None);
    assert_eq!(plan.next_url(), Some(a));
    assert_eq!(LinkPlan::new(Vec::new()).next_url(), None);
}

#[test]
fn a_lost_source_is_given_up_only_after_the_window_without_progress() {
    let window = Duration::from_secs(5);
    let mut policy = ResumePolicy::new(window, Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(!policy.is_resuming());
    assert_eq!(
        policy.on_lost(t0),
        OnLost::RetryAfter(Duration::from_millis(100))
    );
    assert!(policy.is_resuming());
    // Breaking off again and again counts from the first loss.
    assert!(matches!(
        policy.on_lost(t0 + window / 2),
        OnLost::RetryAfter(_)
    ));
    assert_eq!(policy.on_lost(t0 + window * 2), OnLost::GiveUp);

    // A group delivered in between heals the loss: the window starts again.
    let mut policy = ResumePolicy::new(window, Duration::ZERO);
    policy.on_lost(t0);
    policy.on_progress();
    assert!(matches!(
        policy.on_lost(t0 + window * 2),
        OnLost::RetryAfter(_)
    ));
    assert_eq!(
        policy.on_lost(t0 + window * 3 + Duration::from_millis(1)),
        OnLost::GiveUp
    );
    assert_eq!(policy.wait_deadline(t0), t0 + window);
}

#[test]
fn a_track_is_never_asked_of_the_session_it_came_from() {
    let (peer, upstream, viewer) = (7, 9, 11);
    assert_eq!(
        choose_source(Routed::Peer(peer), Some(upstream), viewer),
        Some(SourceChoice::Peer(peer))
    );
    // The publisher's own request for its namespace is not sent back to it, nor upstream.
    assert_eq!(
        choose_source(Routed::Peer(peer), Some(upstream), peer),
        None
    );
    assert_eq!(
        choose_source(Routed::Nowhere, Some(upstream), viewer),
        Some(SourceChoice::Upstream(upstream))
    );
    // A request that came down the upstream link is not sent back up it.
    assert_eq!(
        choose_source(Routed::Nowhere, Some(upstream), upstream),
        None
    );
    assert_eq!(choose_source(Routed::Nowhere, None, viewer), None);
    assert_eq!(choose_source(Routed::Local, Some(upstream), viewer), None);
}
