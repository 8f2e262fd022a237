//! The deployment the interaction benchmark runs against: a real `stagecast-server` origin
//! (authorization on, its token key made in its data directory), one `stagecast-relay`
//! under it, and a synthetic publisher keeping the broadcast live at the origin (an
//! origin opens a broadcast's interaction channel only while it is live).
//!
//! The relay's and the publisher's tokens come from `stagecast token issue`, as an
//! operator makes them; the thousands of viewer tokens are signed in this process with
//! the same key and the same code (`TokenKey::issue`), which spawning the CLI for each
//! would only slow down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use stagecast_proto::path::namespace_from_path;
use stagecast_proto::token::{now_secs, Claims, TokenKey};
use stagecast_proto::trust::ClientTrust;

use crate::cpu_pinning::Pinning;
use crate::publisher::SyntheticPublisher;
use crate::relay_process::{workspace_binary, RelayProcess};

/// The broadcast whose interaction is measured.
pub const BROADCAST: &str = "bench/live";
/// The publisher keeps the broadcast live with a small track: the media is not measured.
const MEDIA_FPS: u32 = 30;
const MEDIA_OBJECT_BYTES: usize = 1_000;
/// Lifetime of every token the benchmark makes.
const TOKEN_SECS: u64 = 3_600;

pub struct Deployment {
    pub origin: RelayProcess,
    pub relay: RelayProcess,
    pub key: TokenKey,
    publisher: SyntheticPublisher,
    dir: PathBuf,
}

impl Deployment {
    /// Starts the origin and the relay (both on the relay CPU when pinned) with their
    /// files under `dir`, and the publisher in this process.
    pub async fn start(dir: &Path, pinning: &Pinning) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let origin_data = dir.join("origin");
        let origin = RelayProcess::start_stagecast(
            &workspace_binary("stagecast-server"),
            &origin_data,
            &["--no-demo".to_string()],
            dir.join("origin.log"),
            pinning,
            "warn",
        )?;
        let key_file = origin_data.join("auth.key");
        let key_text = std::fs::read_to_string(&key_file)
            .with_context(|| format!("the origin made no token key at {}", key_file.display()))?;
        let key = TokenKey::from_text(&key_text)?;
        let relay_token = cli_token(
            &key_file,
            &[
                "--sub",
                "bench-relay",
                "--role",
                "relay",
                "--publish",
                "",
                "--subscribe",
                "",
            ],
        )?;
        let relay = RelayProcess::start_stagecast(
            &workspace_binary("stagecast-relay"),
            &dir.join("relay"),
            &[
                "--upstream".into(),
                origin.url.to_string(),
                "--upstream-fingerprint".into(),
                origin.fingerprint.clone(),
                "--auth-key-file".into(),
                key_file.display().to_string(),
                "--upstream-token".into(),
                relay_token,
            ],
            dir.join("relay.log"),
            pinning,
            "warn",
        )?;
        relay
            .wait_metric("stagecast_upstream_connected", 1.0, Duration::from_secs(20))
            .await?;
        let publisher_token = cli_token(
            &key_file,
            &["--sub", "bench-publisher", "--publish", BROADCAST],
        )?;
        let publisher = SyntheticPublisher::start(
            origin.url.clone(),
            ClientTrust::pinned_hex(&origin.fingerprint)?,
            namespace_from_path(BROADCAST)?,
            "video",
            MEDIA_FPS,
            MEDIA_OBJECT_BYTES,
            Some(publisher_token),
        )
        .await?;
        Ok(Self {
            origin,
            relay,
            key,
            publisher,
            dir: dir.to_path_buf(),
        })
    }

    /// A viewer token for user `sub`.
    pub fn viewer_token(&self, sub: &str) -> anyhow::Result<String> {
        let now = now_secs();
        Ok(self.key.issue(&Claims {
            sub: sub.to_string(),
            name: Some(sub.to_string()),
            role: Some("viewer".into()),
            publish: Vec::new(),
            subscribe: vec![String::new()],
            moderate: Vec::new(),
            exp: now + TOKEN_SECS,
            iat: now,
        })?)
    }

    pub fn origin_trust(&self) -> anyhow::Result<ClientTrust> {
        Ok(ClientTrust::pinned_hex(&self.origin.fingerprint)?)
    }

    pub fn relay_trust(&self) -> anyhow::Result<ClientTrust> {
        Ok(ClientTrust::pinned_hex(&self.relay.fingerprint)?)
    }

    /// Stops everything; the logs stay in the output directory, the data goes.
    pub fn stop(mut self) {
        self.publisher.stop();
        self.relay.stop();
        self.origin.stop();
        let _ = std::fs::remove_dir_all(self.dir.join("origin"));
        let _ = std::fs::remove_dir_all(self.dir.join("relay"));
    }

    /// Fails when the origin or the relay has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for (name, node) in [("origin", &mut self.origin), ("relay", &mut self.relay)] {
            if !node.is_running() {
                bail!("the {name} exited; see {}", node.log.display());
            }
        }
        Ok(())
    }
}

/// `stagecast token issue --key-file KEY --ttl 1h ARGS`.
fn cli_token(key_file: &Path, args: &[&str]) -> anyhow::Result<String> {
    let cli = workspace_binary("stagecast");
    let output = Command::new(&cli)
        .args(["token", "issue", "--ttl", "1h", "--key-file"])
        .arg(key_file)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", cli.display()))?;
    if !output.status.success() {
        bail!(
            "stagecast token issue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
