//! The peer relays: `moq-relay-ietf` (the moq-transport family's) and `moq-relay`
//! (moq-dev's), each on 127.0.0.1 with a certificate the test made, so Stagecast clients
//! can pin it.

use std::path::{Path, PathBuf};

use super::{Peer, PeerCommand};

/// A certificate and key (PEM) for a peer relay, and its SHA-256 fingerprint (hex) for a
/// Stagecast client's pin.
pub struct PeerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
}

/// A running peer relay and the URL to reach it (`moqt://127.0.0.1:<port>`).
pub struct PeerRelay {
    pub peer: Peer,
    pub url: String,
}

/// `moq-relay-ietf` on 127.0.0.1. Its file coordinator (a JSON file it reads and writes)
/// starts as `coordinator` when given: routes from namespaces to other relays, which it
/// dials as a client (trusting them without verification, `--tls-disable-verify`).
pub fn moq_relay_ietf(
    dir: &Path,
    name: &str,
    cert: &PeerCert,
    coordinator: Option<&str>,
) -> PeerRelay {
    let coordinator_file = dir.join(format!("{name}-coordinator.json"));
    if let Some(json) = coordinator {
        std::fs::write(&coordinator_file, json).expect("write the coordinator file");
    }
    let mut peer = PeerCommand::new(
        name,
        "moq-relay-ietf",
        &[
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            &cert.cert.display().to_string(),
            "--tls-key",
            &cert.key.display().to_string(),
            "--tls-disable-verify",
            "--coordinator-file",
            &coordinator_file.display().to_string(),
        ],
    )
    .spawn(dir);
    let port = peer.wait_listening("listening on");
    PeerRelay {
        peer,
        url: format!("moqt://127.0.0.1:{port}"),
    }
}

/// A coordinator file for [`moq_relay_ietf`] that routes each of `namespaces` (paths
/// such as `live/alice`) to the relay at `url`.
pub fn coordinator_routes(namespaces: &[&str], url: &str) -> String {
    let routes: Vec<String> = namespaces
        .iter()
        .map(|ns| format!("\"{}\":\"{url}\"", coordinator_key(ns)))
        .collect();
    format!(r#"{{"namespaces":{{"":{{{}}}}}}}"#, routes.join(","))
}

/// The key `moq-relay-ietf`'s file coordinator gives a namespace: each field's bytes in
/// hex, the fields joined by dots.
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

/// `moq-relay` on 127.0.0.1, open to anonymous publishers and subscribers
/// (`--auth-public **`). It is built with its `noq` QUIC stack alone (see
/// `scripts/interop-peers.sh`).
pub fn moq_relay(dir: &Path, name: &str, cert: &PeerCert) -> PeerRelay {
    let mut peer = PeerCommand::new(
        name,
        "moq-relay",
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen-tls-cert",
            &cert.cert.display().to_string(),
            "--listen-tls-key",
            &cert.key.display().to_string(),
            "--auth-public",
            "**",
        ],
    )
    .spawn(dir);
    let port = peer.wait_listening("listening addr=");
    PeerRelay {
        peer,
        url: format!("moqt://127.0.0.1:{port}"),
    }
}

/// Whether moq-relay negotiated draft-18 with some client (it speaks several versions).
pub fn negotiated_draft_18(relay: &Peer) -> bool {
    relay
        .log_text()
        .contains("negotiated version=moq-transport-18")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_keys_are_hex_fields_joined_by_dots() {
        assert_eq!(coordinator_key("clock"), "636c6f636b");
        assert_eq!(
            coordinator_routes(&["live/pub"], "moqt://127.0.0.1:1"),
            r#"{"namespaces":{"":{"6c697665.707562":"moqt://127.0.0.1:1"}}}"#
        );
    }
}
