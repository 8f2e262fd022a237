//! `moq-pub` publishing fragmented MP4 read from its stdin (a [`LiveSource`] of ffmpeg),
//! and `moq-sub` writing what it receives to its stdout, as fragmented MP4.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{tail, Peer, PeerCommand};
use crate::media::{self, Layout, LiveSource};
use crate::wait_until;

/// How long moq-sub gets to end after its publisher went.
const END_TIMEOUT: Duration = Duration::from_secs(30);

/// moq-pub publishing `broadcast` at `url`, reading a gated live source of `clip`.
pub fn moq_pub(
    dir: &Path,
    url: &str,
    broadcast: &str,
    clip: &Path,
    extra: &[&str],
) -> (MoqPub, LiveSource) {
    let mut args = vec!["--tls-disable-verify", "--name", broadcast];
    args.extend_from_slice(extra);
    args.push(url);
    let mut peer = PeerCommand::new("moq-pub", "moq-pub", &args)
        .stdin(Stdio::piped())
        .spawn(dir);
    let stdin = Arc::new(Mutex::new(Some(peer.take_stdin().expect("moq-pub stdin"))));
    let source = LiveSource::start(
        clip,
        Layout::FragEveryFrame,
        SharedPipe(stdin.clone()),
        dir.join("input.mp4"),
    );
    (MoqPub { peer, stdin }, source)
}

/// A running moq-pub and the pipe to its stdin.
///
/// The pipe stays open until moq-pub is stopped: at the end of its input moq-pub reads the
/// closed stdin in a loop that never yields (`run_media` in its `main.rs`), which starves
/// its MoQ session in the same task, so objects not yet sent would never leave.
pub struct MoqPub {
    peer: Peer,
    stdin: Arc<Mutex<Option<std::process::ChildStdin>>>,
}

impl MoqPub {
    /// Stops moq-pub (SIGTERM: it ignores SIGINT) and closes its stdin. It ends its QUIC
    /// connection with no CONNECTION_CLOSE, so the relay notices at its idle timeout.
    pub fn stop(mut self) {
        self.peer.assert_running();
        self.peer.terminate();
        self.peer.wait_exit(Duration::from_secs(10));
        self.stdin.lock().expect("pipe lock").take();
    }
}

/// A writer into a pipe that another handle can keep open after the writer is dropped.
struct SharedPipe(Arc<Mutex<Option<std::process::ChildStdin>>>);

impl Write for SharedPipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock().expect("pipe lock").as_mut() {
            Some(pipe) => pipe.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock().expect("pipe lock").as_mut() {
            Some(pipe) => pipe.flush(),
            None => Ok(()),
        }
    }
}

/// moq-sub (reading moq-pub's `.catalog`, `--catalog`) writing `broadcast` to its stdout
/// file; returns once it subscribed its tracks (it logs "playing" after the init segment).
pub fn moq_sub(dir: &Path, url: &str, broadcast: &str) -> Peer {
    let mut peer = PeerCommand::new(
        "moq-sub",
        "moq-sub",
        &[
            "--tls-disable-verify",
            "--catalog",
            "--name",
            broadcast,
            url,
        ],
    )
    .stdout_to_file()
    .spawn(dir);
    peer.wait_log("playing", Duration::from_secs(20));
    peer
}

/// How many bytes of moq-sub's output may sit unwritten while it runs: it writes to
/// Rust's standard output, whose line buffer (1 KiB) holds what follows the last `\n`
/// byte, and it never flushes while live; the rest reaches the file when it exits.
const MOQ_SUB_UNFLUSHED: u64 = 1024;

/// Waits until moq-sub's output is complete but for what its stdout buffer may hold.
pub fn wait_for_moq_sub(moq_sub: &Peer, captured: &Path) {
    let want = std::fs::metadata(captured).expect("captured input").len();
    let out = moq_sub.output_path();
    wait_until(
        "moq-sub to write all but its stdout buffer",
        Duration::from_secs(20),
        || std::fs::metadata(&out).is_ok_and(|m| m.len() + MOQ_SUB_UNFLUSHED >= want),
    );
}

/// Waits for moq-sub to end by itself (its subscriptions ended, so it exits and flushes
/// its stdout), then checks it holds every sample of `captured` and decodes cleanly.
pub fn assert_moq_sub_received(moq_sub: &mut Peer, captured: &Path) {
    let status = moq_sub.wait_exit(END_TIMEOUT);
    assert!(
        status.success(),
        "moq-sub failed ({status}); its log ends:\n{}",
        tail(&moq_sub.log_text(), 20)
    );
    let out = moq_sub.output_path();
    media::assert_same_samples(captured, &out);
    assert_eq!(
        media::decode_errors(&out),
        "",
        "moq-sub's output does not decode cleanly"
    );
}
