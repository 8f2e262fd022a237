//! The relay under test: the real `stagecast-relay` binary as a child process on loopback
//! ports it picks, found from the lines it prints at start, logged to a file, killed when
//! dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::cpu_pinning::{relay_command, Pinning};

/// How long the relay may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RelayProcess {
    child: Child,
    pub quic_port: u16,
    pub http_port: u16,
    pub fingerprint: String,
    /// The relay's stderr, whole.
    pub log: PathBuf,
    /// Lines of the log written so far, to tell start-up and shutdown lines from the run's.
    log_lines: Arc<AtomicU64>,
}

/// The workspace's release build of the relay.
pub fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/stagecast-relay")
}

impl RelayProcess {
    /// Starts `binary` with authorization off and its data (the development certificate)
    /// in `data_dir`.
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        log: PathBuf,
        pinning: &Pinning,
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "no relay binary at {}: build it first with `cargo build --release -p stagecast-relay` (or pass --relay-bin)",
                binary.display()
            );
        }
        let mut child = relay_command(binary, pinning)
            .args(["--no-auth", "--bind", "[::]:0", "--http-bind", "[::]:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let log_lines = Arc::new(AtomicU64::new(0));
        let lines = log_lines.clone();
        // Drains stderr for the relay's whole life (a full pipe would stall it) into the
        // log, and hands over the lines until the start-up ones have been read.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
                lines.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(line);
            }
        });
        let (mut quic_port, mut http_port, mut fingerprint) = (None, None, None);
        while quic_port.is_none() || http_port.is_none() || fingerprint.is_none() {
            let Ok(line) = rx.recv_timeout(START_TIMEOUT) else {
                let _ = child.kill();
                bail!("the relay did not start; see {}", log.display());
            };
            if let Some(rest) = line.split("moqt://localhost:").nth(1) {
                quic_port = rest.trim().parse().ok();
            } else if let Some(rest) = line.split("http://localhost:").nth(1) {
                http_port = rest.trim().parse().ok();
            } else if let Some(rest) = line.split("certificate SHA-256 ").nth(1) {
                fingerprint = Some(rest.trim().to_string());
            }
        }
        // The rest of the lines are only wanted in the log file.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Ok(Self {
            child,
            quic_port: quic_port.unwrap_or_default(),
            http_port: http_port.unwrap_or_default(),
            fingerprint: fingerprint.unwrap_or_default(),
            log,
            log_lines,
        })
    }

    /// Lines the relay has logged so far.
    pub fn log_lines(&self) -> u64 {
        self.log_lines.load(Ordering::Relaxed)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn moqt_url(&self) -> url::Url {
        url::Url::parse(&format!("moqt://localhost:{}", self.quic_port))
            .expect("a moqt URL with a port is valid")
    }

    /// The relay's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://localhost:{}/metrics", self.http_port);
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            Ok(agent.get(&url).call()?.body_mut().read_to_string()?)
        })
        .await?
    }

    /// Whether the relay is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the relay and waits for it.
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
