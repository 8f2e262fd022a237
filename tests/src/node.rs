//! Server and relay processes for tests: started on ports they pick (`:0`), found from
//! what they print, logged to the test's output directory, killed when dropped.

use stagecast_proto::ready::ReadyLine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{bin, http_get};

/// A running `stagecast-server` or `stagecast-relay`.
pub struct Node {
    pub name: String,
    child: Child,
    binary: String,
    args: Vec<String>,
    dir: PathBuf,
    pub quic_port: u16,
    pub http_port: u16,
    pub fingerprint: String,
    /// Where the node's log goes.
    pub log: PathBuf,
    /// The deployment's token key (the origin's, shared by its relays).
    pub key_file: PathBuf,
}

impl Node {
    /// Starts an origin with its data under `dir/<name>`.
    pub fn origin(dir: &Path, name: &str, extra: &[&str]) -> Node {
        let data = dir.join(name);
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "[::]:0".into(),
            "--http-bind".into(),
            "[::]:0".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = Node::start(dir, name, "stagecast-server", &args);
        node.key_file = data.join("auth.key");
        node
    }

    /// Starts an origin without the demo channel.
    pub fn bare_origin(dir: &Path, name: &str) -> Node {
        Node::origin(dir, name, &["--no-demo"])
    }

    /// Starts a relay under `upstream`.
    pub fn relay(dir: &Path, name: &str, upstream: &Node) -> Node {
        Node::relay_with_failover(dir, name, &[upstream])
    }

    /// Starts a relay under the first of `upstreams` that answers, in order.
    pub fn relay_with_failover(dir: &Path, name: &str, upstreams: &[&Node]) -> Node {
        Node::relay_under(dir, name, upstreams, &[])
    }

    /// [`Node::relay_with_failover`] with `extra` arguments.
    pub fn relay_under(dir: &Path, name: &str, upstreams: &[&Node], extra: &[&str]) -> Node {
        let data = dir.join(name);
        let urls: Vec<String> = upstreams.iter().map(|n| n.moqt_url()).collect();
        let key_file = upstreams[0].key_file.clone();
        let token = issue_role_token(&key_file, name, "relay", &[""], &[""]);
        let pins: Vec<String> = upstreams.iter().map(|n| n.fingerprint.clone()).collect();
        let args: Vec<String> = vec![
            "--upstream".into(),
            urls.join(","),
            "--upstream-fingerprint".into(),
            pins.join(","),
            "--bind".into(),
            "[::]:0".into(),
            "--http-bind".into(),
            "[::]:0".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--auth-key-file".into(),
            key_file.display().to_string(),
            "--upstream-token".into(),
            token,
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        let mut node = Node::start(dir, name, "stagecast-relay", &args);
        node.key_file = key_file;
        let http = node.http_port;
        crate::wait_until(
            &format!("{name} to connect upstream"),
            Duration::from_secs(20),
            || metric(http, "stagecast_upstream_connected") == Some(1.0),
        );
        node
    }

    /// Starts a relay on loopback ports with its data under `dir/<name>` and `extra`
    /// arguments (an `--upstream` that is not a Stagecast node, `--no-auth`, ...). Unlike
    /// [`Node::relay`] it does not wait for an upstream link.
    pub fn relay_with_args(dir: &Path, name: &str, extra: &[&str]) -> Node {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "[::]:0".into(),
            "--http-bind".into(),
            "[::]:0".into(),
            "--data-dir".into(),
            dir.join(name).display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::start(dir, name, "stagecast-relay", &args)
    }

    fn start(dir: &Path, name: &str, binary: &str, args: &[String]) -> Node {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(bin(binary))
            .args(args)
            .env("RUST_LOG", "info,stagecast_relay=debug")
            // Only SIGTERM drains (other stops are SIGKILL): keep drain tests short.
            .env("STAGECAST_DRAIN_TIMEOUT", "3s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<String>();
        let log_path = log.clone();
        // Drains stderr for the node's whole life (a full pipe would stall it) into the log,
        // and hands over the start-up lines that name its ports.
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let ready = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{binary} did not start; see {}", log.display()));
            if let Some(ready) = ReadyLine::parse(&line) {
                break ready;
            }
        };
        // Keep draining into the log; the channel's further lines are not needed.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Node {
            name: name.to_string(),
            child,
            binary: binary.to_string(),
            args: args.to_vec(),
            dir: dir.to_path_buf(),
            key_file: PathBuf::new(),
            quic_port: ready.quic_port,
            http_port: ready.http_port,
            fingerprint: ready.fingerprint,
            log,
        }
    }

    /// A token from this deployment's key allowing to publish under `prefix`.
    pub fn publish_token(&self, prefix: &str) -> String {
        issue_token(&self.key_file, "publisher", &[prefix], &[], "1h")
    }

    pub fn moqt_url(&self) -> String {
        format!("moqt://localhost:{}", self.quic_port)
    }

    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.quic_port)
    }

    /// The node's process id (to find the processes it started).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A metric's current value.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric(self.http_port, name)
    }

    /// Waits until a metric reaches at least `value`.
    pub fn wait_metric(&self, name: &str, value: f64) {
        crate::wait_until(
            &format!("{} {name} >= {value}", self.name),
            Duration::from_secs(30),
            || self.metric(name).is_some_and(|v| v >= value),
        );
    }

    /// Starts the node again after [`Node::kill`], on the same ports and data directory
    /// (so with the same certificate), logging to a new file.
    pub fn restart(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        for (flag, port) in [("--bind", self.quic_port), ("--http-bind", self.http_port)] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = format!("[::]:{port}");
            }
        }
        let restarted = Node::start(
            &self.dir,
            &format!("{}-restarted", self.name),
            &self.binary,
            &args,
        );
        assert_eq!(
            (restarted.quic_port, restarted.http_port),
            (self.quic_port, self.http_port)
        );
        let old = std::mem::replace(self, restarted);
        self.name = old.name.clone();
        self.key_file = old.key_file.clone();
        // Dropping the old handle kills nothing: its process is already gone.
        drop(old);
    }

    /// The process's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.child.id())
    }

    /// Sends SIGTERM (a graceful drain).
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    /// Waits for the process to exit by itself, failing after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        crate::wait_exit(&mut self.child, &self.name, timeout)
    }

    /// Waits until a metric drops below `value`.
    pub fn wait_metric_below(&self, name: &str, value: f64) {
        crate::wait_until(
            &format!("{} {name} < {value}", self.name),
            Duration::from_secs(30),
            || self.metric(name).is_some_and(|v| v < value),
        );
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads one metric from a node's `/metrics`.
pub fn metric(http_port: u16, name: &str) -> Option<f64> {
    let body = http_get(&format!("http://127.0.0.1:{http_port}/metrics")).ok()?;
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Issues a token with `stagecast token issue`.
pub fn issue_token(
    key_file: &Path,
    sub: &str,
    publish: &[&str],
    subscribe: &[&str],
    ttl: &str,
) -> String {
    issue(key_file, &["--sub", sub, "--ttl", ttl], publish, subscribe)
}

/// A one-hour token with a role (`relay` for a relay's upstream link).
pub fn issue_role_token(
    key_file: &Path,
    sub: &str,
    role: &str,
    publish: &[&str],
    subscribe: &[&str],
) -> String {
    let args = ["--sub", sub, "--role", role, "--ttl", "1h"];
    issue(key_file, &args, publish, subscribe)
}

fn issue(key_file: &Path, args: &[&str], publish: &[&str], subscribe: &[&str]) -> String {
    let mut cmd = Command::new(bin("stagecast"));
    cmd.args(["token", "issue", "--key-file"]).arg(key_file);
    cmd.args(args);
    for p in publish {
        cmd.args(["--publish", p]);
    }
    for p in subscribe {
        cmd.args(["--subscribe", p]);
    }
    let output = cmd.output().expect("run stagecast token issue");
    assert!(
        output.status.success(),
        "token issue failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A process's resident memory in bytes (VmRSS in /proc/PID/status), 0 if unreadable.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Sends a signal (`STOP`, `CONT`, `TERM`...) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A MoQ session with `node` from the test process (for requests the CLI does not make:
/// FETCH, subscription filters), pinned to its certificate; the session runs in the
/// background. Keep the endpoint alive as long as the subscriber.
pub async fn moq_session(
    node: &Node,
) -> (
    stagecast_proto::endpoint::ClientEndpoint,
    moq_transport::session::Subscriber,
) {
    let client = stagecast_proto::endpoint::ClientEndpoint::new().expect("a client endpoint");
    let trust = stagecast_proto::trust::ClientTrust::pinned_hex(&node.fingerprint)
        .expect("the node's fingerprint");
    let url = node.moqt_url().parse().expect("the node's URL");
    let (session, transport) = client
        .connect(&url, &trust)
        .await
        .expect("connect to the node");
    let (session, _publisher, subscriber) =
        moq_transport::session::Session::connect(session.into(), None, transport)
            .await
            .expect("MoQ SETUP");
    tokio::spawn(session.run());
    (client, subscriber)
}
