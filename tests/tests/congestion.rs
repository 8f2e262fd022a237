//! Congestion isolation: a subscriber that stops reading (its process frozen with SIGSTOP,
//! so it neither reads nor acknowledges) never slows the others or the publisher, and the
//! relay's memory stays bounded: the frozen session is closed at the idle timeout.

use std::time::{Duration, Instant};

use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::{signal, Node};
use stagecast_tests::{output_dir, wait_exit, wait_until};

#[test]
fn a_frozen_subscriber_does_not_hold_back_ten_others() {
    let dir = output_dir("frozen_subscriber");
    let clip = media::make_clip(&dir, "clip.mp4", 12, Layout::FragEveryFrame, false);
    let origin = Node::bare_origin(&dir, "origin");
    let edge = Node::relay(&dir, "edge", &origin);
    let broadcast = "live/congested";
    let (mut publisher, mut source) = media::publish_live(
        &dir,
        &origin,
        &origin,
        &origin.moqt_url(),
        broadcast,
        &clip,
        Layout::FragEveryFrame,
    );

    let (mut frozen, frozen_output) = media::subscriber(
        &dir,
        "frozen",
        &edge.moqt_url(),
        broadcast,
        &edge.fingerprint,
        &[],
    );
    let normal: Vec<_> = (0..10)
        .map(|i| {
            media::subscriber(
                &dir,
                &format!("normal{i}"),
                &edge.moqt_url(),
                broadcast,
                &edge.fingerprint,
                &[],
            )
        })
        .collect();
    edge.wait_metric("stagecast_subscriptions", 33.0);
    let rss_before = edge.rss_bytes();
    source.open_gate();
    wait_until(
        "media at the frozen subscriber",
        Duration::from_secs(20),
        || std::fs::metadata(&frozen_output).is_ok_and(|m| m.len() > 20_000),
    );
    signal(frozen.id(), "STOP");
    let frozen_at = Instant::now();

    // The edge gives up on the frozen session at the idle timeout, while the others play on.
    edge.wait_metric_below("stagecast_sessions", 11.0 + 0.5);
    let closed_after = frozen_at.elapsed();
    assert!(
        closed_after < Duration::from_secs(15),
        "the frozen session lingered {closed_after:?}"
    );

    let captured = source.captured.clone();
    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", Duration::from_secs(60)).success());
    let rss_peak = edge.rss_bytes();
    for (mut child, output) in normal {
        let status = wait_exit(&mut child, "subscriber", Duration::from_secs(30));
        assert!(status.success(), "{} failed: {status}", output.display());
        media::assert_same_samples(&captured, &output);
    }
    signal(frozen.id(), "CONT");
    let _ = frozen.kill();
    let _ = frozen.wait();
    let growth = rss_peak.saturating_sub(rss_before);
    assert!(growth < 64 << 20, "the edge grew by {} MiB", growth >> 20);
}
