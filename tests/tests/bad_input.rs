//! Bad input gets a clear error and loses nothing: garbage on the publisher's stdin, a
//! broadcast nobody publishes, a publisher that vanishes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::Node;
use stagecast_tests::{bin, output_dir, wait_exit, wait_until};

#[test]
fn non_mp4_on_publish_stdin_exits_nonzero_with_a_clear_message() {
    let dir = output_dir("publish_garbage");
    let origin = Node::bare_origin(&dir, "origin");
    let mut child = Command::new(bin("stagecast"))
        .args([
            "publish",
            &origin.moqt_url(),
            "live/garbage",
            "--fingerprint",
            &origin.fingerprint,
        ])
        .args(["--token", &origin.publish_token("live/garbage")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start publish");
    let mut stdin = child.stdin.take().expect("stdin");
    // A text file is what people pipe by mistake.
    let _ = stdin.write_all(
        b"Hello, this is not a video. It is a plain text file, long enough to hold a box header.\n",
    );
    drop(stdin);
    let status = wait_exit(&mut child, "publisher", Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).ok();
    assert!(!status.success(), "publishing garbage must fail");
    assert!(
        stderr.contains("not usable CMAF"),
        "unclear message: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("mp4"),
        "message should say what was expected: {stderr}"
    );
}

#[test]
fn subscribing_to_an_unknown_broadcast_fails_fast_with_not_found() {
    let dir = output_dir("subscribe_unknown");
    let origin = Node::bare_origin(&dir, "origin");
    let edge = Node::relay(&dir, "edge", &origin);
    for node in [&origin, &edge] {
        let started = Instant::now();
        let output = Command::new(bin("stagecast"))
            .args([
                "subscribe",
                &node.moqt_url(),
                "live/nobody",
                "--fingerprint",
                &node.fingerprint,
            ])
            .args([
                "--output",
                &dir.join(format!("{}.mp4", node.name)).display().to_string(),
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run subscribe");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "subscribing to nothing must fail");
        assert!(
            stderr.contains("not found"),
            "at {}: unclear message: {stderr}",
            node.name
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "at {}: took {:?}",
            node.name,
            started.elapsed()
        );
    }
}

#[test]
fn a_vanishing_publisher_ends_its_subscribers_cleanly() {
    let dir = output_dir("vanishing_publisher");
    let clip = media::make_clip(&dir, "clip.mp4", 20, Layout::FragEveryFrame, false);
    let origin = Node::bare_origin(&dir, "origin");
    let edge = Node::relay(&dir, "edge", &origin);
    let broadcast = "live/vanishing";
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
        "sub",
        &edge.moqt_url(),
        broadcast,
        &edge.fingerprint,
        &[],
    );
    edge.wait_metric("stagecast_subscriptions", 3.0);
    source.open_gate();
    // Let some media flow, then the publisher dies without a word.
    wait_until(
        "media to reach the subscriber",
        Duration::from_secs(20),
        || std::fs::metadata(&output).is_ok_and(|m| m.len() > 100_000),
    );
    publisher.kill().expect("kill publisher");
    let _ = publisher.wait();
    // The origin notices within its idle timeout (10 s) and ends the subscriptions.
    let status = wait_exit(&mut subscriber, "subscriber", Duration::from_secs(30));
    assert!(status.success(), "subscriber should end cleanly: {status}");
    let log = std::fs::read_to_string(dir.join("sub.log")).unwrap_or_default();
    assert!(
        log.contains("went away") || log.contains("ended"),
        "no explanation in: {log}"
    );
    assert_eq!(
        media::decode_errors(&output),
        "",
        "what arrived must decode cleanly"
    );
    assert!(media::video_frame_count(&output) > 0);
    drop(source);
}
