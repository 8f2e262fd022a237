//! GOAWAY from a draining node (draft-18 "GOAWAY"): each session's control stream gets one
//! naming where to reconnect, how long the drain waits, and the smallest peer Request ID
//! not processed, written between two of the MoQ session's own messages.
//!
//! moq-transport 0.17 cannot send the draft's GOAWAY (its message has the New Session URI
//! only), so the node writes it itself: the control stream's send side is shared between
//! the MoQ session and the drain, and [`ControlWriter`] tracks message boundaries so the
//! GOAWAY never lands inside another message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use stagecast_proto::goaway::{GoAway, MessageSplitter};
use tokio::sync::watch;
use web_transport_quinn::{SendStream, WriteError};

/// What a draining node tells its sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoAwayNotice {
    /// Where sessions should reconnect; empty: the same URI (another node behind it).
    pub new_session_uri: String,
    /// How long the node waits before closing what is left.
    pub timeout: Duration,
}

/// The send side of a session's control stream, shared by the MoQ session and the drain.
pub type SharedControl = Arc<tokio::sync::Mutex<ControlWriter>>;

/// Where a session's control stream is put once the MoQ session has opened it.
pub type ControlSlot = Arc<OnceLock<SharedControl>>;

/// Writes a control stream, holding back an injected message until the one being written
/// is whole.
pub struct ControlWriter {
    stream: SendStream,
    written: MessageSplitter,
    pending: Option<Bytes>,
}

impl ControlWriter {
    pub fn new(stream: SendStream) -> Self {
        Self {
            stream,
            written: MessageSplitter::default(),
            pending: None,
        }
    }

    pub fn stream(&mut self) -> &mut SendStream {
        &mut self.stream
    }

    /// Writes what the MoQ session asked for, then a held-back message if this write ended
    /// the one in progress.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, WriteError> {
        let n = self.stream.write(buf).await?;
        self.written.push(&buf[..n]);
        while self.written.next_message().is_some() {}
        if self.written.at_boundary() {
            if let Some(message) = self.pending.take() {
                self.stream.write_all(&message).await?;
            }
        }
        Ok(n)
    }

    /// Writes `message` now if no other message is half written, else after it.
    pub async fn inject(&mut self, message: Bytes) -> Result<(), WriteError> {
        if self.written.at_boundary() {
            self.stream.write_all(&message).await
        } else {
            self.pending = Some(message);
            Ok(())
        }
    }
}

/// The peer's Request IDs seen on this session, for GOAWAY's Request ID field.
#[derive(Clone, Default)]
pub struct RequestIds {
    /// One more than the largest seen; 0 when none.
    next: Arc<AtomicU64>,
}

impl RequestIds {
    pub fn saw(&self, id: u64) {
        self.next.fetch_max(id.saturating_add(1), Ordering::Relaxed);
    }

    /// The smallest peer Request ID not processed: 0 at a server that processed none,
    /// else the one after the largest (a client's IDs go up by two).
    pub fn first_unprocessed(&self) -> u64 {
        match self.next.load(Ordering::Relaxed) {
            0 => 0,
            next => next + 1,
        }
    }
}

/// Sends a GOAWAY on the session's control stream once `notice` says the node drains;
/// ends when it is sent or the notice's sender is gone.
pub async fn send_on_drain(
    mut notice: watch::Receiver<Option<GoAwayNotice>>,
    control: ControlSlot,
    requests: RequestIds,
) {
    let notice = match notice.wait_for(Option::is_some).await {
        Ok(notice) => notice.clone(),
        Err(_) => return,
    };
    let Some(notice) = notice else {
        return;
    };
    let Some(control) = control.get() else {
        // No SETUP was sent on this session yet: there is no control stream to use.
        return;
    };
    let goaway = GoAway {
        new_session_uri: notice.new_session_uri,
        timeout_ms: u64::try_from(notice.timeout.as_millis()).unwrap_or(u64::MAX),
        request_id: Some(requests.first_unprocessed()),
    };
    let message = match goaway.encode() {
        Ok(message) => message,
        Err(err) => {
            tracing::warn!(%err, "cannot send GOAWAY");
            return;
        }
    };
    if let Err(err) = control.lock().await.inject(message).await {
        tracing::debug!(%err, "GOAWAY not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    #[test]
    fn first_unprocessed_request_id() {
        let ids = RequestIds::default();
        assert_eq!(ids.first_unprocessed(), 0);
        ids.saw(4);
        ids.saw(0);
        assert_eq!(ids.first_unprocessed(), 6);
    }
}
