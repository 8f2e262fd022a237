//! The relays the side-by-side benchmarks drive with one workload: `stagecast-relay` and
//! two independent draft-18 relays from crates.io, `moq-relay-ietf` and `moq-relay`
//! (installed into `.interop/bin` by `scripts/interop-peers.sh`). Each is started the same
//! way for every benchmark: on loopback, without authorization, optionally chained under
//! another relay of its kind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use stagecast_proto::certificate::ServerIdentity;

use crate::cpu_pinning::Pinning;
use crate::procfs;
use crate::relay_process::{self, RelayProcess};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayKind {
    /// `stagecast-relay` (this workspace's release build).
    StagecastRelay,
    /// `moq-relay-ietf` (the moq-transport 0.17 family).
    MoqRelayIetf,
    /// `moq-relay` (moq-dev; negotiates moqt-18 among other versions).
    MoqRelay,
}

impl RelayKind {
    pub const ALL: [RelayKind; 3] = [
        RelayKind::StagecastRelay,
        RelayKind::MoqRelayIetf,
        RelayKind::MoqRelay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RelayKind::StagecastRelay => "stagecast-relay",
            RelayKind::MoqRelayIetf => "moq-relay-ietf",
            RelayKind::MoqRelay => "moq-relay",
        }
    }

    /// Where the binary is: the workspace's release build, or `peers_dir`.
    pub fn binary(self, peers_dir: &Path) -> PathBuf {
        match self {
            RelayKind::StagecastRelay => relay_process::default_binary(),
            _ => peers_dir.join(self.name()),
        }
    }

    /// Starts one relay of this kind with its files under `dir`, named `name`; under
    /// `upstream` (a relay of the same kind) when given, for chains.
    pub fn start(
        self,
        peers_dir: &Path,
        dir: &Path,
        name: &str,
        upstream: Option<&RelayProcess>,
        pinning: &Pinning,
    ) -> anyhow::Result<RelayProcess> {
        let binary = self.binary(peers_dir);
        let data = dir.join(name);
        std::fs::create_dir_all(&data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let log = dir.join(format!("{name}.log"));
        match self {
            RelayKind::StagecastRelay => {
                let mut args: Vec<String> = vec!["--no-auth".into()];
                if let Some(up) = upstream {
                    args.extend([
                        "--upstream".into(),
                        up.url.to_string(),
                        "--upstream-fingerprint".into(),
                        up.fingerprint.clone(),
                    ]);
                }
                RelayProcess::start_stagecast(&binary, &data, &args, log, pinning, "warn")
            }
            RelayKind::MoqRelayIetf => {
                let identity = identity(&data)?;
                let port = procfs::free_udp_port()?;
                let coordinator = data.join("coordinator.json");
                if let Some(up) = upstream {
                    // The file coordinator's routes: namespace (fields hex, dot-joined) and
                    // the relay that serves it; a SUBSCRIBE for a namespace not published
                    // here is sent there.
                    let key = coordinator_key(crate::fanout::BROADCAST);
                    let json = format!(
                        r#"{{"namespaces":{{"":{{"{key}":"moqt://127.0.0.1:{}"}}}}}}"#,
                        up.quic_port
                    );
                    std::fs::write(&coordinator, json)?;
                }
                let args: Vec<String> = vec![
                    "--bind".into(),
                    format!("127.0.0.1:{port}"),
                    "--tls-cert".into(),
                    data.join("dev-cert.pem").display().to_string(),
                    "--tls-key".into(),
                    data.join("dev-key.pem").display().to_string(),
                    // As a client of the relay above it in a chain.
                    "--tls-disable-verify".into(),
                    "--coordinator-file".into(),
                    coordinator.display().to_string(),
                ];
                RelayProcess::start_peer(&binary, &args, port, &identity.fingerprint, log, pinning)
            }
            RelayKind::MoqRelay => {
                let identity = identity(&data)?;
                let port = procfs::free_udp_port()?;
                let mut args: Vec<String> = vec![
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--listen-tls-cert".into(),
                    data.join("dev-cert.pem").display().to_string(),
                    "--listen-tls-key".into(),
                    data.join("dev-key.pem").display().to_string(),
                    "--auth-public".into(),
                    "**".into(),
                    "--log-level".into(),
                    "warn".into(),
                ];
                if let Some(up) = upstream {
                    args.extend([
                        "--cluster-connect".into(),
                        format!("moqt://127.0.0.1:{}", up.quic_port),
                        "--cluster-node".into(),
                        format!("moqt://127.0.0.1:{port}"),
                        "--connect-tls-fingerprint".into(),
                        up.fingerprint.clone(),
                    ]);
                }
                RelayProcess::start_peer(&binary, &args, port, &identity.fingerprint, log, pinning)
            }
        }
    }
}

/// A development certificate (ECDSA P-256, for `localhost` and 127.0.0.1) made the way
/// Stagecast nodes make theirs, for an independent relay.
fn identity(dir: &Path) -> anyhow::Result<ServerIdentity> {
    ServerIdentity::load_or_create_dev(dir, &[])
        .with_context(|| format!("cannot make a certificate in {}", dir.display()))
}

/// The key `moq-relay-ietf`'s file coordinator gives a namespace (its fields' bytes in
/// hex, joined by dots).
fn coordinator_key(path: &str) -> String {
    path.split('/')
        .map(|field| {
            field
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The default folder of the independent relays: `$STAGECAST_INTEROP_ROOT/bin`, else
/// `<repo>/.interop/bin`.
pub fn default_peers_dir() -> PathBuf {
    match std::env::var_os("STAGECAST_INTEROP_ROOT") {
        Some(root) => PathBuf::from(root).join("bin"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.interop/bin"),
    }
}

/// Fails naming the install script when a relay's binary is missing.
pub fn check_installed(kinds: &[RelayKind], peers_dir: &Path) -> anyhow::Result<()> {
    for kind in kinds {
        let binary = kind.binary(peers_dir);
        if !binary.is_file() {
            bail!(
                "{} is not at {}: {}",
                kind.name(),
                binary.display(),
                if *kind == RelayKind::StagecastRelay {
                    "cargo build --release -p stagecast-relay"
                } else {
                    "run ./scripts/interop-peers.sh (or pass --peers-dir)"
                }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_keys_are_hex_fields() {
        assert_eq!(coordinator_key("bench/live"), "62656e6368.6c697665");
    }
}
