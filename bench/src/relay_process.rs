//! A node under test as a child process on loopback: `stagecast-relay` or
//! `stagecast-server` (ports they pick, found from the lines they print at start), or an
//! independent relay (`moq-relay-ietf`, `moq-relay`: a port picked for them, waited for
//! until bound). Its stderr goes to a log file; it is killed when dropped.

use stagecast_proto::ready::ReadyLine;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::cpu_pinning::{relay_command, Pinning};

/// How long a node may take to print its addresses or bind its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RelayProcess {
    child: Child,
    pub quic_port: u16,
    /// Stagecast nodes' HTTP port (`/metrics`); the independent relays have none here.
    pub http_port: Option<u16>,
    /// SHA-256 of the node's certificate (hex), for the clients' pin.
    pub fingerprint: String,
    /// The URL clients use (`moqt://`, raw QUIC).
    pub url: url::Url,
    /// The node's stderr, whole.
    pub log: PathBuf,
    /// Lines of the log written so far, to tell start-up and shutdown lines from the run's.
    log_lines: Arc<AtomicU64>,
}

/// The workspace's release build of a Stagecast binary.
pub fn workspace_binary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name)
}

/// The workspace's release build of the relay.
pub fn default_binary() -> PathBuf {
    workspace_binary("stagecast-relay")
}

fn check_binary(binary: &Path) -> anyhow::Result<()> {
    if !binary.is_file() {
        bail!(
            "no binary at {}: build it first (`cargo build --release -p stagecast-relay -p stagecast-server -p stagecast-cli`; the independent relays with ./scripts/interop-peers.sh)",
            binary.display()
        );
    }
    Ok(())
}

/// Spawns `command` with stderr drained, line by line, into `log` (a full pipe would stall
/// the node); the lines also go to the returned channel.
fn spawn_logged(
    mut command: Command,
    log: &Path,
) -> anyhow::Result<(Child, mpsc::Receiver<String>, Arc<AtomicU64>)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let log_lines = Arc::new(AtomicU64::new(0));
    let lines = log_lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
            lines.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(line);
        }
    });
    Ok((child, rx, log_lines))
}

impl RelayProcess {
    /// Starts the relay under test for the fan-out benchmark: `binary` with authorization
    /// off and its data (the development certificate) in `data_dir`.
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        log: PathBuf,
        pinning: &Pinning,
    ) -> anyhow::Result<Self> {
        let args: Vec<String> = vec!["--no-auth".into()];
        Self::start_stagecast(binary, data_dir, &args, log, pinning, "warn")
    }

    /// Starts a Stagecast node (`stagecast-relay` or `stagecast-server`) on loopback ports
    /// it picks, with its data in `data_dir` and `args` besides, logging at `log_level`.
    pub fn start_stagecast(
        binary: &Path,
        data_dir: &Path,
        args: &[String],
        log: PathBuf,
        pinning: &Pinning,
        log_level: &str,
    ) -> anyhow::Result<Self> {
        check_binary(binary)?;
        let mut command = relay_command(binary, pinning);
        command
            .args(["--bind", "[::]:0", "--http-bind", "[::]:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", log_level)
            .env("NO_COLOR", "1");
        let (mut child, rx, log_lines) = spawn_logged(command, &log)?;
        let ready = loop {
            let Ok(line) = rx.recv_timeout(START_TIMEOUT) else {
                let _ = child.kill();
                bail!("{} did not start; see {}", binary.display(), log.display());
            };
            if let Some(ready) = ReadyLine::parse(&line) {
                break ready;
            }
        };
        // The rest of the lines are only wanted in the log file.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let quic_port = ready.quic_port;
        Ok(Self {
            child,
            quic_port,
            http_port: Some(ready.http_port),
            fingerprint: ready.fingerprint,
            url: url::Url::parse(&format!("moqt://localhost:{quic_port}"))?,
            log,
            log_lines,
        })
    }

    /// Starts an independent relay: `binary` with `args`, which make it listen on UDP
    /// 127.0.0.1:`port` with the certificate whose fingerprint is `fingerprint`.
    pub fn start_peer(
        binary: &Path,
        args: &[String],
        port: u16,
        fingerprint: &str,
        log: PathBuf,
        pinning: &Pinning,
    ) -> anyhow::Result<Self> {
        check_binary(binary)?;
        let mut command = relay_command(binary, pinning);
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        let (mut child, rx, log_lines) = spawn_logged(command, &log)?;
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let deadline = Instant::now() + START_TIMEOUT;
        while !crate::procfs::udp_port_bound(port) {
            if !matches!(child.try_wait(), Ok(None)) || Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "{} did not bind UDP {port}; see {}",
                    binary.display(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            quic_port: port,
            http_port: None,
            fingerprint: fingerprint.to_string(),
            url: url::Url::parse(&format!("moqt://127.0.0.1:{port}"))?,
            log,
            log_lines,
        })
    }

    /// Lines the node has logged so far.
    pub fn log_lines(&self) -> u64 {
        self.log_lines.load(Ordering::Relaxed)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn moqt_url(&self) -> url::Url {
        self.url.clone()
    }

    /// The node's `/metrics` text (Stagecast nodes only).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let port = self
            .http_port
            .ok_or_else(|| anyhow!("this relay serves no /metrics"))?;
        let url = format!("http://localhost:{port}/metrics");
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            Ok(agent.get(&url).call()?.body_mut().read_to_string()?)
        })
        .await?
    }

    /// Polls `/metrics` until `name` reaches `value`, failing after `timeout`.
    pub async fn wait_metric(
        &self,
        name: &str,
        value: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = self.metrics().await.unwrap_or_default();
            if crate::prometheus::value(&text, name).is_some_and(|v| v >= value) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{name} did not reach {value} within {timeout:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the node is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the node and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Warnings and errors the relay logged in lines `lines` of its log: their count, and up
/// to `keep` distinct messages (timestamps cut off, digits masked) with how often each
/// occurred.
pub fn log_problems(
    log: &Path,
    lines: std::ops::Range<u64>,
    keep: usize,
) -> (u64, Vec<(String, u64)>) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return (0, Vec::new());
    };
    let mut count = 0;
    let mut distinct: Vec<(String, u64)> = Vec::new();
    let skip = usize::try_from(lines.start).unwrap_or(usize::MAX);
    let take = usize::try_from(lines.end - lines.start.min(lines.end)).unwrap_or(usize::MAX);
    for line in text.lines().skip(skip).take(take) {
        let Some(pos) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        count += 1;
        // Digits (session ids, counts) vary between otherwise equal messages.
        let message: String = line[pos + 1..]
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        if let Some((_, n)) = distinct.iter_mut().find(|(m, _)| *m == message) {
            *n += 1;
        } else if distinct.len() < 1000 {
            distinct.push((message, 1));
        }
    }
    distinct.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    distinct.truncate(keep);
    (count, distinct)
}
