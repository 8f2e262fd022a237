//! Independent MoQ Transport draft-18 implementations from crates.io, for the interop
//! tests: `moq-relay-ietf`, `moq-pub`, `moq-sub`, `moq-clock-ietf` (the moq-transport 0.17
//! family) and `moq-relay` (moq-dev). `scripts/interop-peers.sh` installs them into
//! `.interop/bin`; a test that needs one fails with that instruction when it is missing.
//!
//! This module runs a peer as a child process, its stderr (and, when asked, stdout) in
//! the test's output directory, killed when its [`Peer`] is dropped. The submodules start
//! each peer the way the tests use it.

pub mod clock;
pub mod moq_pub;
pub mod relays;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the peers are installed: `$STAGECAST_INTEROP_ROOT/bin`, by default
/// `<repo>/.interop/bin` (the same default as `scripts/interop-peers.sh`).
pub fn peers_dir() -> PathBuf {
    match std::env::var_os("STAGECAST_INTEROP_ROOT") {
        Some(root) => PathBuf::from(root).join("bin"),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("repo root")
            .join(".interop")
            .join("bin"),
    }
}

/// The path of an installed peer binary; fails the test, naming the install script, when
/// it is missing.
pub fn peer_bin(name: &str) -> PathBuf {
    let path = peers_dir().join(name);
    assert!(
        path.is_file(),
        "the interop peer {name} is not installed at {}: run ./scripts/interop-peers.sh \
         (scripts/test.sh does) to build the interop peers from crates.io",
        path.display()
    );
    path
}

/// A running peer process.
pub struct Peer {
    pub name: String,
    child: Child,
    /// Its stderr (logs).
    pub log: PathBuf,
    /// Its stdout, when captured to a file.
    pub stdout: Option<PathBuf>,
}

/// How to start a peer.
pub struct PeerCommand {
    name: String,
    command: Command,
    stdout_file: bool,
    stdin: Option<Stdio>,
}

impl PeerCommand {
    /// `binary` (a peer's name) with `args`, known in the test as `name`.
    pub fn new(name: &str, binary: &str, args: &[&str]) -> Self {
        let mut command = Command::new(peer_bin(binary));
        command.args(args);
        // Their logs are what tells a failure apart: informative by default, and
        // `STAGECAST_PEER_LOG` (a RUST_LOG filter) turns up the detail when debugging.
        let filter =
            std::env::var("STAGECAST_PEER_LOG").unwrap_or_else(|_| "info,quinn=warn".into());
        command.env("RUST_LOG", filter).env("NO_COLOR", "1");
        PeerCommand {
            name: name.to_string(),
            command,
            stdout_file: false,
            stdin: None,
        }
    }

    /// Writes its stdout to `<dir>/<name>.out`.
    pub fn stdout_to_file(mut self) -> Self {
        self.stdout_file = true;
        self
    }

    /// Gives it this stdin (default: none).
    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.stdin = Some(stdin);
        self
    }

    pub fn spawn(mut self, dir: &Path) -> Peer {
        let log = dir.join(format!("{}.log", self.name));
        let stderr = std::fs::File::create(&log).expect("peer log file");
        let stdout_path = dir.join(format!("{}.out", self.name));
        let stdout = if self.stdout_file {
            Stdio::from(std::fs::File::create(&stdout_path).expect("peer stdout file"))
        } else {
            Stdio::null()
        };
        let child = self
            .command
            .stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        Peer {
            name: self.name,
            child,
            log,
            stdout: self.stdout_file.then_some(stdout_path),
        }
    }
}

impl Peer {
    /// The file its stdout goes to; fails the test when it was not captured.
    pub fn output_path(&self) -> PathBuf {
        self.stdout
            .clone()
            .unwrap_or_else(|| panic!("{}'s stdout is not captured", self.name))
    }

    /// Its stdout so far (empty when not captured).
    pub fn output(&self) -> String {
        self.stdout
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Its stdin, when started with [`PeerCommand::stdin`]`(Stdio::piped())`.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Fails the test (quoting the end of its log) if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({status}); its log ends:\n{}",
                self.name,
                tail(&self.log_text(), 30)
            );
        }
    }

    /// Waits until its log contains `text`, failing after `timeout` or if it exits.
    pub fn wait_log(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(text) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} did not log {text:?} within {timeout:?}; its log ends:\n{}",
                self.name,
                tail(&self.log_text(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until it logs `marker` followed by the loopback address it listens on, and
    /// returns that port. Peers are started on port 0, so the kernel picks a free one and
    /// the log is the only place that names it.
    pub fn wait_listening(&mut self, marker: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(port) = listening_port(&self.log_text(), marker) {
                return port;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} did not log {marker:?} and its address; its log ends:\n{}",
                self.name,
                tail(&self.log_text(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (moq-pub ignores SIGINT).
    pub fn terminate(&self) {
        crate::node::signal(self.child.id(), "TERM");
    }

    /// Waits for it to exit by itself, failing after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        crate::wait_exit(&mut self.child, &self.name, timeout)
    }

    /// Kills it at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The port of the first `127.0.0.1:<port>` after `marker` on a line of `log`.
fn listening_port(log: &str, marker: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let after = &line[line.find(marker)? + marker.len()..];
        let digits: String = after[after.find("127.0.0.1:")? + "127.0.0.1:".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_from_either_relays_log() {
        let ietf = "2026 INFO moq_relay_ietf::relay: listening on 127.0.0.1:37206\n";
        assert_eq!(listening_port(ietf, "listening on"), Some(37206));
        let dev = "x INFO moq_relay::relay: listening addr=127.0.0.1:56803 kind=\"quic\"";
        assert_eq!(listening_port(dev, "listening addr="), Some(56803));
        assert_eq!(listening_port("bound bind=127.0.0.1:0", "listening"), None);
    }
}
