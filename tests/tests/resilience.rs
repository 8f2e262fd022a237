//! Resilient chaining: a relay in the middle of a chain dies and comes back, an upstream
//! fails and the relay fails over; subscribers continue on the next group without
//! resubscribing, and what they receive stays decodable.

use std::path::Path;
use std::time::{Duration, Instant};

use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::Node;
use stagecast_tests::{output_dir, wait_exit, wait_until};

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits until `path` grows past `from`, returning how long that took.
fn wait_growth(path: &Path, from: u64, within: Duration) -> Duration {
    let started = Instant::now();
    wait_until(&format!("{} to grow", path.display()), within, || {
        size(path) > from + 20_000
    });
    started.elapsed()
}

#[test]
fn far_subscriber_resumes_when_the_middle_relay_restarts() {
    let dir = output_dir("middle_relay_restart");
    let clip = media::make_clip(&dir, "clip.mp4", 25, Layout::FragEveryFrame, false);
    let origin = Node::bare_origin(&dir, "origin");
    let mut mid = Node::relay(&dir, "mid", &origin);
    let edge = Node::relay(&dir, "edge", &mid);
    let broadcast = "live/resilient";
    let (mut publisher, mut source) = media::publish_live(
        &dir,
        &origin,
        &origin,
        &origin.moqt_url(),
        broadcast,
        &clip,
        Layout::FragEveryFrame,
    );
    let (mut subscriber, output) = media::subscriber(
        &dir,
        "far",
        &edge.moqt_url(),
        broadcast,
        &edge.fingerprint,
        &[],
    );
    edge.wait_metric("stagecast_subscriptions", 3.0);
    source.open_gate();
    wait_growth(&output, 0, Duration::from_secs(20));

    mid.kill();
    mid.restart();
    let at_restart = size(&output);
    let took = wait_growth(&output, at_restart, Duration::from_secs(30));
    eprintln!("the far subscriber resumed {took:?} after the restart");
    assert!(
        took < Duration::from_secs(12),
        "resumed only after {took:?}"
    );
    assert!(
        edge.metric("stagecast_source_resumes_total").unwrap_or(0.0) >= 1.0,
        "the edge did not resume its source"
    );
    assert!(
        edge.metric("stagecast_upstream_reconnects_total")
            .unwrap_or(0.0)
            >= 1.0
    );

    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", Duration::from_secs(60)).success());
    let status = wait_exit(&mut subscriber, "subscriber", Duration::from_secs(60));
    assert!(
        status.success(),
        "the far subscriber should end normally: {status}"
    );
    assert!(media::first_video_packet_is_key(&output));
    assert_eq!(
        media::decode_errors(&output),
        "",
        "output must decode cleanly across the restart"
    );
    let frames = media::video_frame_count(&output);
    assert!(frames > 25 * 30 / 2, "only {frames} of 750 frames arrived");
}

#[test]
fn relay_fails_over_to_its_second_upstream() {
    let dir = output_dir("upstream_failover");
    let origin = Node::origin(&dir, "origin", &[]);
    let mut first = Node::relay(&dir, "first", &origin);
    let second = Node::relay(&dir, "second", &origin);
    let edge = Node::relay_with_failover(&dir, "edge", &[&first, &second]);
    let (mut subscriber, output) = media::subscriber(
        &dir,
        "viewer",
        &edge.moqt_url(),
        "demo/live",
        &edge.fingerprint,
        &["--duration", "20"],
    );
    wait_growth(&output, 0, Duration::from_secs(20));
    assert!(
        first.metric("stagecast_subscriptions").unwrap_or(0.0) >= 3.0,
        "the edge should start on its first upstream"
    );

    first.kill();
    let at_failure = size(&output);
    let took = wait_growth(&output, at_failure, Duration::from_secs(30));
    eprintln!("the edge failed over in {took:?}");
    assert!(
        took < Duration::from_secs(12),
        "failed over only after {took:?}"
    );
    assert!(
        second.metric("stagecast_subscriptions").unwrap_or(0.0) >= 3.0,
        "the edge should now use its second upstream"
    );

    assert!(wait_exit(&mut subscriber, "viewer", Duration::from_secs(60)).success());
    assert_eq!(
        media::decode_errors(&output),
        "",
        "output must decode cleanly across the failover"
    );
}
