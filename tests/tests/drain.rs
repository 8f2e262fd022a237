//! Graceful drain on SIGTERM: the node stops being ready, moves its subscribers away
//! (PUBLISH_DONE GOING_AWAY), closes what is left when the drain time is up, and exits.

use std::time::{Duration, Instant};

use stagecast_tests::media;
use stagecast_tests::node::Node;
use stagecast_tests::{http_get, output_dir, wait_exit, wait_until};

#[test]
fn sigterm_moves_subscribers_away_and_exits_within_the_drain_time() {
    let dir = output_dir("sigterm_drain");
    let origin = Node::origin(&dir, "origin", &[]);
    let mut edge = Node::relay(&dir, "edge", &origin);
    let ready = http_get(&format!("http://127.0.0.1:{}/readyz", edge.http_port)).expect("readyz");
    assert_eq!(ready.trim(), "ready");

    let (mut viewer, output) = media::subscriber(
        &dir,
        "viewer",
        &edge.moqt_url(),
        "demo/live",
        &edge.fingerprint,
        &[],
    );
    wait_until("media at the viewer", Duration::from_secs(20), || {
        std::fs::metadata(&output).is_ok_and(|m| m.len() > 50_000)
    });
    // A publisher session stays until the drain time closes it.
    let mut publisher = media::publisher(
        &dir,
        &edge.moqt_url(),
        "live/draining",
        &edge.fingerprint,
        &edge.publish_token("live/draining"),
    );
    edge.wait_metric("stagecast_sessions", 2.0);

    let started = Instant::now();
    edge.terminate();
    let status = wait_exit(&mut viewer, "viewer", Duration::from_secs(10));
    assert!(status.success(), "the viewer should end cleanly: {status}");
    let log = std::fs::read_to_string(dir.join("viewer.log")).unwrap_or_default();
    assert!(
        log.contains("going away"),
        "the viewer should say the server is going away: {log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "subscribers are moved at once, not at the end of the drain"
    );

    let status = edge.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "the relay should exit cleanly: {status}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "drain of 3 s took {took:?}"
    );
    let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
    assert!(
        log.contains("drain time is up; closing the remaining sessions"),
        "the publisher's session should have been closed at the end"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert_eq!(media::decode_errors(&output), "");
}
