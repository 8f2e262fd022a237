//! Authorization end to end: tokens from the deployment's key decide who may publish and
//! subscribe; missing, wrong, forged and expired tokens are refused with clear messages.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use stagecast_tests::media;
use stagecast_tests::node::{issue_token, Node};
use stagecast_tests::{bin, output_dir, wait_exit};

/// Runs `stagecast publish` with `token` on a few bytes of real CMAF and returns its output.
fn publish_with(
    origin: &Node,
    dir: &std::path::Path,
    broadcast: &str,
    token: Option<&str>,
) -> Output {
    let clip = media::make_clip(
        dir,
        &format!("{}.mp4", broadcast.replace('/', "_")),
        2,
        media::Layout::FragEveryFrame,
        false,
    );
    let mut cmd = Command::new(bin("stagecast"));
    cmd.args([
        "publish",
        &origin.moqt_url(),
        broadcast,
        "--fingerprint",
        &origin.fingerprint,
    ]);
    cmd.arg("--file").arg(&clip).arg("--loop");
    if let Some(token) = token {
        cmd.args(["--token", token]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start publish");
    // A looped file never ends by itself: only a refusal stops it.
    let status = wait_exit(&mut child, "refused publisher", Duration::from_secs(20));
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().expect("stderr"), &mut stderr).ok();
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

fn assert_refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should have been refused");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

#[test]
fn publishing_needs_a_token_that_grants_the_path() {
    let dir = output_dir("auth_publish");
    let origin = Node::bare_origin(&dir, "origin");
    assert_refused(
        &publish_with(&origin, &dir, "live/alice", None),
        "not authorized to publish live/alice",
    );
    let subscribe_only = issue_token(&origin.key_file, "viewer", &[], &["live/"], "1h");
    assert_refused(
        &publish_with(&origin, &dir, "live/alice", Some(&subscribe_only)),
        "not authorized to publish live/alice",
    );
    let bobs = issue_token(&origin.key_file, "bob", &["live/bob"], &[], "1h");
    assert_refused(
        &publish_with(&origin, &dir, "live/alice", Some(&bobs)),
        "not authorized to publish live/alice",
    );
    assert!(
        origin
            .metric("stagecast_auth_failures_total")
            .unwrap_or(0.0)
            >= 3.0
    );
}

#[test]
fn forged_and_expired_tokens_close_the_session() {
    let dir = output_dir("auth_forged");
    let origin = Node::bare_origin(&dir, "origin");
    let other = Node::bare_origin(&dir, "other");
    let forged = issue_token(&other.key_file, "mallory", &["live/"], &["live/"], "1h");
    assert_refused(
        &publish_with(&origin, &dir, "live/alice", Some(&forged)),
        "signature does not match",
    );
    let expired = issue_token(&origin.key_file, "late", &["live/"], &[], "1s");
    std::thread::sleep(Duration::from_millis(2100)); // let the 1 s token lapse: the point of this test
    assert_refused(
        &publish_with(&origin, &dir, "live/alice", Some(&expired)),
        "expired",
    );
}

#[test]
fn a_session_is_closed_when_its_token_expires() {
    let dir = output_dir("auth_expiry");
    // Anonymous viewers may watch nothing here, so the token is what lets this one watch.
    let origin = Node::origin(&dir, "origin", &["--anonymous-subscribe", "nothing/"]);
    let anonymous = Command::new(bin("stagecast"))
        .args([
            "subscribe",
            &origin.moqt_url(),
            "demo/live",
            "--fingerprint",
            &origin.fingerprint,
            "--duration",
            "1",
        ])
        .arg("--output")
        .arg(dir.join("anonymous.mp4"))
        .output()
        .expect("run subscribe");
    assert_refused(&anonymous, "not authorized to subscribe to demo/live");

    let token = issue_token(&origin.key_file, "viewer", &[], &["demo/"], "4s");
    let started = Instant::now();
    let (mut child, output) = {
        let out = dir.join("viewer.mp4");
        let log = std::fs::File::create(dir.join("viewer.log")).expect("log");
        let child = Command::new(bin("stagecast"))
            .args([
                "subscribe",
                &origin.moqt_url(),
                "demo/live",
                "--fingerprint",
                &origin.fingerprint,
                "--token",
                &token,
            ])
            .arg("--output")
            .arg(&out)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start subscribe");
        (child, out)
    };
    wait_exit(
        &mut child,
        "viewer with an expiring token",
        Duration::from_secs(20),
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(12),
        "session ended after {took:?}"
    );
    assert!(
        media::video_frame_count(&output) > 0,
        "the viewer watched until expiry"
    );
    let log = std::fs::read_to_string(&origin.log).unwrap_or_default();
    assert!(
        log.contains("authorization token expired; closing the session"),
        "the origin did not close the session for expiry"
    );
    // One refusal for the anonymous viewer, one for the expiry.
    assert!(
        origin
            .metric("stagecast_auth_failures_total")
            .unwrap_or(0.0)
            >= 2.0
    );
}
