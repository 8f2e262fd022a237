//! How the CLI trusts a development certificate: fetched from a loopback server's
//! `/certificate.sha256`, or pinned by hand; a wrong pin is refused with a clear message.

use std::process::{Command, Stdio};
use std::time::Duration;

use stagecast_tests::media;
use stagecast_tests::node::Node;
use stagecast_tests::{bin, http_get, output_dir, wait_exit};

#[test]
fn fingerprint_is_fetched_from_a_loopback_server() {
    let dir = output_dir("trust_fetch");
    let origin = Node::origin(&dir, "origin", &[]);
    let served = http_get(&format!(
        "http://127.0.0.1:{}/certificate.sha256",
        origin.http_port
    ))
    .expect("fingerprint");
    assert_eq!(served.trim(), origin.fingerprint);
    let output = dir.join("demo.mp4");
    let mut child = Command::new(bin("stagecast"))
        .args([
            "subscribe",
            &origin.moqt_url(),
            "demo/live",
            "--duration",
            "2",
        ])
        .args([
            "--cert-url",
            &format!("http://localhost:{}/certificate.sha256", origin.http_port),
        ])
        .arg("--output")
        .arg(&output)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start subscribe");
    assert!(wait_exit(&mut child, "subscriber", Duration::from_secs(30)).success());
    assert!(media::video_frame_count(&output) > 0);
}

#[test]
fn a_wrong_fingerprint_is_refused_clearly() {
    let dir = output_dir("trust_wrong_pin");
    let origin = Node::origin(&dir, "origin", &[]);
    let wrong = "00".repeat(32);
    let output = Command::new(bin("stagecast"))
        .args([
            "subscribe",
            &origin.moqt_url(),
            "demo/live",
            "--fingerprint",
            &wrong,
            "--duration",
            "1",
        ])
        .arg("--output")
        .arg(dir.join("never.mp4"))
        .stdin(Stdio::null())
        .output()
        .expect("run subscribe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("fingerprint"), "unclear message: {stderr}");
}
