//! `moq-clock-ietf`: publishes the wall-clock time, one group per minute whose object 0 is
//! the minute ("YYYY-MM-DD HH:MM:") and each later object a second ("SS"), and prints
//! what it sends or receives, one time a line.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{tail, Peer, PeerCommand};

/// How long a clock subscriber gets to print its lines.
pub const CLOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// `moq-clock-ietf` publishing (`publish`) or printing the time of `namespace`/`now`.
pub fn clock(
    dir: &Path,
    name: &str,
    url: &str,
    namespace: &str,
    publish: bool,
    extra: &[&str],
) -> Peer {
    let mut args = vec![url, "--tls-disable-verify", "--namespace", namespace];
    if publish {
        args.push("--publish");
    }
    args.extend_from_slice(extra);
    PeerCommand::new(name, "moq-clock-ietf", &args)
        .stdout_to_file()
        .spawn(dir)
}

/// The lines a clock printed, as `YYYY-MM-DD HH:MM:SS` or panicking on another shape.
pub fn clock_lines(peer: &Peer) -> Vec<String> {
    let text = peer.output();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for line in &lines {
        assert!(
            is_clock_time(line),
            "{} printed {line:?}, not a time: the first object of its group was not the \
             minute base (object 0), so a group was delivered from its middle",
            peer.name
        );
    }
    lines
}

fn is_clock_time(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Waits until `subscriber` has printed `count` times, and checks each is a time that
/// `publisher` printed (sent), in increasing order.
pub fn assert_clock_received(publisher: &mut Peer, subscriber: &mut Peer, count: usize) {
    let deadline = Instant::now() + CLOCK_TIMEOUT;
    while clock_lines(subscriber).len() < count {
        subscriber.assert_running();
        publisher.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} printed {} of {count} times within {CLOCK_TIMEOUT:?}; its log ends:\n{}",
            subscriber.name,
            clock_lines(subscriber).len(),
            tail(&subscriber.log_text(), 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let received = clock_lines(subscriber);
    let sent = clock_lines(publisher);
    for time in &received {
        assert!(
            sent.contains(time),
            "{} printed {time}, which {} never sent",
            subscriber.name,
            publisher.name
        );
    }
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "{} printed times out of order: {received:?}",
        subscriber.name
    );
}

/// The `--auth-token` value that makes moq-clock-ietf present `token` in SETUP's
/// AUTHORIZATION TOKEN with Token Type 0 (draft-18 §10.2.2: negotiated out of band; a
/// Stagecast JWT).
pub fn auth_token_arg(token: &str) -> String {
    format!("0:{}", base64url(token.as_bytes()))
}

/// Base64url without padding (moq-clock-ietf's `--auth-token TYPE:BASE64URL`).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A moq-clock-ietf subscriber, started again while the relay does not know the
/// namespace yet (moq-clock-ietf exits when its SUBSCRIBE is refused).
pub fn subscribe_clock_when_routed(dir: &Path, name: &str, url: &str, namespace: &str) -> Peer {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut peer = clock(dir, name, url, namespace, false, &[]);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            if !peer.output().is_empty() {
                return peer;
            }
            if peer.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if peer.exited().is_none() {
            return peer;
        }
        assert!(
            Instant::now() < deadline,
            "{name} kept failing to subscribe; its log ends:\n{}",
            tail(&peer.log_text(), 20)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_without_padding() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn clock_times_have_one_shape() {
        assert!(is_clock_time("2026-11-24 16:43:24"));
        assert!(!is_clock_time("2026-11-24 16:43:2424"));
        assert!(!is_clock_time("24"));
    }
}
