//! The `--config FILE` of the servers: keys are option names, flags win over the file, and
//! a mistyped key is a clear error.

use std::process::Command;

use stagecast_tests::node::Node;
use std::time::Duration;

use stagecast_tests::{bin, origin_lists, output_dir, wait_until};

#[test]
fn config_file_sets_options_and_flags_win() {
    let dir = output_dir("config_file");
    let config = dir.join("origin.toml");
    // `http-bind` here is not even an address: the harness's --http-bind flag must win.
    std::fs::write(&config, "no-demo = true\nhttp-bind = \"not an address\"\n").unwrap();
    let origin = Node::origin(&dir, "origin", &["--config", &config.display().to_string()]);
    // The same server without the file lists its demo channel once it is up...
    let control = Node::origin(&dir, "control", &[]);
    wait_until(
        "the control origin's demo channel",
        Duration::from_secs(10),
        || origin_lists(&control, "demo/live"),
    );
    // ...and by then the configured one, started first, would have too.
    assert!(
        !origin_lists(&origin, "demo/live"),
        "no-demo from the file was not applied"
    );
}

#[test]
fn unknown_config_keys_are_refused_by_name() {
    let dir = output_dir("config_unknown_key");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "bnid = \"[::]:4443\"\n").unwrap();
    let output = Command::new(bin("stagecast-server"))
        .args([
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &dir.join("data").display().to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("\"bnid\"") && stderr.contains("bind"),
        "unclear: {stderr}"
    );
}
