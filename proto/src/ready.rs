//! The one line a node prints on stderr once it serves, for scripts, tests and the bench:
//! `stagecast-ready {"quic_port":4443,"http_port":8080,"fingerprint":"…","https":false}`.
//! The banner above it is for people and may change; this line is the stable interface.

use serde::{Deserialize, Serialize};

/// What starts the line.
pub const READY_PREFIX: &str = "stagecast-ready ";

/// Where a ready node listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyLine {
    /// UDP port of MoQ over QUIC and WebTransport.
    pub quic_port: u16,
    /// TCP port of HTTP (and HTTPS, when `https`).
    pub http_port: u16,
    /// SHA-256 of the certificate, lowercase hex (what clients pin for a dev certificate).
    pub fingerprint: String,
    /// Whether the HTTP port also answers HTTPS.
    pub https: bool,
}

impl ReadyLine {
    /// The line as printed, without its newline.
    pub fn to_line(&self) -> String {
        // Serializing plain fields cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{READY_PREFIX}{json}")
    }

    /// The ready line in `line`, if it is one.
    pub fn parse(line: &str) -> Option<ReadyLine> {
        let json = line.trim_end().strip_prefix(READY_PREFIX)?;
        serde_json::from_str(json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_other_lines() {
        let ready = ReadyLine {
            quic_port: 4443,
            http_port: 8080,
            fingerprint: "ab".repeat(32),
            https: true,
        };
        assert_eq!(ReadyLine::parse(&ready.to_line()), Some(ready.clone()));
        assert_eq!(
            ReadyLine::parse(&format!("{}\n", ready.to_line())),
            Some(ready)
        );
        assert_eq!(ReadyLine::parse("  HTTP: http://localhost:8080"), None);
        assert_eq!(ReadyLine::parse("stagecast-ready {not json"), None);
    }
}
