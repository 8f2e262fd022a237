//! `--qlog-dir`: a node writes a qlog of each QUIC connection, for debugging.

use std::time::Duration;

use stagecast_tests::media;
use stagecast_tests::node::Node;
use stagecast_tests::{output_dir, wait_exit};

#[test]
fn a_qlog_is_written_per_connection() {
    let dir = output_dir("qlog");
    let qlogs = dir.join("qlog");
    let origin = Node::origin(
        &dir,
        "origin",
        &["--qlog-dir", &qlogs.display().to_string()],
    );
    let (mut viewer, _) = media::subscriber(
        &dir,
        "viewer",
        &origin.moqt_url(),
        "demo/live",
        &origin.fingerprint,
        &["--duration", "1"],
    );
    assert!(wait_exit(&mut viewer, "viewer", Duration::from_secs(20)).success());
    drop(origin);
    let files: Vec<_> = std::fs::read_dir(&qlogs)
        .expect("qlog dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(files.len(), 1, "one connection, one qlog");
    let text = std::fs::read_to_string(files[0].path()).expect("read qlog");
    assert!(
        text.contains("\"qlog_version\"") || text.contains("qlog_format"),
        "not a qlog: {}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains("packet_sent"), "no packets recorded");
}
