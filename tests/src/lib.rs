//! Harness for Stagecast's end-to-end tests: starts the real binaries (`stagecast-server`,
//! `stagecast-relay`, `stagecast`) on loopback ports they choose themselves, makes media
//! with ffmpeg, and compares media per sample with ffmpeg's `framemd5`.
//!
//! The binaries must be built first (`cargo build --bins`); `scripts/test.sh` does that.
//! Every test writes its logs and media under `tests/output/<test name>/`.

pub mod clips;
pub mod groups;
pub mod impair;
pub mod media;
pub mod netns;
pub mod node;
pub mod peers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory of a test's artifacts, emptied at the start of the test.
pub fn output_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("output")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test output dir");
    dir
}

/// A binary of the workspace, built into the same target directory as this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Polls `condition` until it holds, failing the test with `what` after `timeout`.
/// For waiting on another process's state (a port, a metric), never for timing.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GETs a URL on loopback and returns its body.
pub fn http_get(url: &str) -> anyhow::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    Ok(agent.get(url).call()?.body_mut().read_to_string()?)
}

/// Waits for a child process to exit, killing it and failing the test after `timeout`.
pub fn wait_exit(
    child: &mut std::process::Child,
    what: &str,
    timeout: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the origin lists `broadcast` in `/api/broadcasts`.
pub fn origin_lists(origin: &node::Node, broadcast: &str) -> bool {
    http_get(&format!(
        "http://127.0.0.1:{}/api/broadcasts",
        origin.http_port
    ))
    .is_ok_and(|body| body.contains(&format!("\"{broadcast}\"")))
}

/// A two-thread runtime for the tests that drive clients in their own process.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
