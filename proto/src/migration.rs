//! A client's side of session migration: the connection MoQ runs on, with any GOAWAY the
//! server sends on the control stream taken off that stream and reported instead.
//!
//! moq-transport 0.17 reads GOAWAY as the New Session URI alone; the draft-18 message it
//! would receive from a draining Stagecast node (and any draft-18 server) also has a
//! Timeout and a Request ID, which it would treat as a malformed message and close the
//! session with PROTOCOL_VIOLATION. [`MigratingSession`] passes it every other message
//! unchanged, so the session keeps running while its owner moves to the new URI.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use web_transport_quinn::{ReadError, RecvStream, SendStream, Session, SessionError};

use crate::goaway::{GoAway, MessageSplitter, GOAWAY_TYPE};

/// Largest read asked of QUIC at once on the control stream.
const READ_CHUNK: usize = 16 * 1024;
/// First byte of SETUP's type (0x2F00 as a varint), which opens a control stream.
const SETUP_FIRST_BYTE: u8 = 0xAF;

/// A client connection for a MoQ session; see the module documentation.
#[derive(Clone)]
pub struct MigratingSession {
    inner: Session,
    /// Whether the server's control stream (the unidirectional stream it opens with
    /// SETUP, draft-18 §10.3) has been accepted.
    control_accepted: Arc<AtomicBool>,
    goaway: watch::Sender<Option<GoAway>>,
}

impl MigratingSession {
    pub fn new(inner: Session) -> Self {
        Self {
            inner,
            control_accepted: Arc::new(AtomicBool::new(false)),
            goaway: watch::Sender::new(None),
        }
    }

    /// Changes to `Some` when the server sends GOAWAY.
    pub fn goaway(&self) -> watch::Receiver<Option<GoAway>> {
        self.goaway.subscribe()
    }

    /// This connection as moq-transport's session transport.
    pub fn transport(&self) -> moq_transport::session::transport::Session {
        let url = self.inner.request().url.clone();
        moq_transport::session::transport::Session::new(self.clone(), url)
    }
}

/// Resolves with the server's GOAWAY; pending forever if none comes.
pub async fn goaway_received(mut goaway: watch::Receiver<Option<GoAway>>) -> GoAway {
    loop {
        if let Some(received) = goaway.borrow_and_update().clone() {
            return received;
        }
        if goaway.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// A received stream: the server's control stream is filtered, every other one passed
/// through.
pub struct ClientRecv {
    inner: RecvStream,
    state: RecvState,
}

enum RecvState {
    /// A unidirectional stream whose first bytes are not read yet: it may be the server's
    /// control stream.
    Undecided {
        accepted: Arc<AtomicBool>,
        goaway: watch::Sender<Option<GoAway>>,
    },
    Control(ControlFilter),
    /// Any other stream, with the bytes read to decide put back in front.
    Passthrough(Bytes),
}

struct ControlFilter {
    splitter: MessageSplitter,
    /// Whole messages ready for the MoQ session.
    ready: BytesMut,
    goaway: watch::Sender<Option<GoAway>>,
}

impl ControlFilter {
    /// Takes every whole message out of the splitter: GOAWAY is reported, the rest queued.
    fn sort(&mut self) {
        while let Some(message) = self.splitter.next_message() {
            // A second GOAWAY, or one that does not parse, is left to the MoQ session,
            // which closes with PROTOCOL_VIOLATION as the draft asks.
            if message.message_type == GOAWAY_TYPE && self.goaway.borrow().is_none() {
                match GoAway::decode_payload(message.payload(), true) {
                    Ok(goaway) => {
                        tracing::info!(
                            uri = %goaway.new_session_uri,
                            timeout_ms = goaway.timeout_ms,
                            "server sent GOAWAY"
                        );
                        self.goaway.send_replace(Some(goaway));
                        continue;
                    }
                    Err(err) => tracing::debug!(%err, "malformed GOAWAY"),
                }
            }
            self.ready.extend_from_slice(&message.bytes);
        }
    }

    /// The next bytes for the MoQ session, reading `inner` until a whole message is in.
    async fn read(
        &mut self,
        inner: &mut RecvStream,
        max: usize,
    ) -> Result<Option<Bytes>, ReadError> {
        while self.ready.is_empty() {
            match web_transport_trait::RecvStream::read_chunk(inner, READ_CHUNK).await? {
                Some(chunk) => {
                    self.splitter.push(&chunk);
                    self.sort();
                }
                // The stream ended: what is left of an unfinished message goes to the
                // session, which reports the truncation itself.
                None if self.splitter.at_boundary() => return Ok(None),
                None => {
                    let rest = self.splitter.take_rest();
                    self.ready.extend_from_slice(&rest);
                }
            }
        }
        let n = max.min(self.ready.len());
        Ok(Some(self.ready.split_to(n).freeze()))
    }
}

impl web_transport_trait::RecvStream for ClientRecv {
    type Error = ReadError;

    async fn read(&mut self, dst: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        if dst.is_empty() {
            return Ok(Some(0));
        }
        Ok(self.read_chunk(dst.len()).await?.map(|chunk| {
            dst[..chunk.len()].copy_from_slice(&chunk);
            chunk.len()
        }))
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, Self::Error> {
        loop {
            match &mut self.state {
                RecvState::Passthrough(read) if !read.is_empty() => {
                    let n = max.min(read.len());
                    return Ok(Some(read.split_to(n)));
                }
                RecvState::Passthrough(_) => {
                    return web_transport_trait::RecvStream::read_chunk(&mut self.inner, max).await;
                }
                RecvState::Control(filter) => return filter.read(&mut self.inner, max).await,
                RecvState::Undecided { accepted, goaway } => {
                    let (accepted, goaway) = (accepted.clone(), goaway.clone());
                    let Some(first) =
                        web_transport_trait::RecvStream::read_chunk(&mut self.inner, READ_CHUNK)
                            .await?
                    else {
                        return Ok(None);
                    };
                    let is_control = first.first() == Some(&SETUP_FIRST_BYTE)
                        && !accepted.swap(true, Ordering::AcqRel);
                    self.state = if is_control {
                        let mut filter = ControlFilter {
                            splitter: MessageSplitter::default(),
                            ready: BytesMut::new(),
                            goaway,
                        };
                        filter.splitter.push(&first);
                        filter.sort();
                        RecvState::Control(filter)
                    } else {
                        RecvState::Passthrough(first)
                    };
                }
            }
        }
    }

    fn stop(&mut self, code: u32) {
        web_transport_trait::RecvStream::stop(&mut self.inner, code);
    }

    async fn closed(&mut self) -> Result<(), Self::Error> {
        web_transport_trait::RecvStream::closed(&mut self.inner).await
    }
}

impl web_transport_trait::Session for MigratingSession {
    type SendStream = SendStream;
    type RecvStream = ClientRecv;
    type Error = SessionError;

    async fn accept_uni(&self) -> Result<Self::RecvStream, Self::Error> {
        let state = if self.control_accepted.load(Ordering::Acquire) {
            RecvState::Passthrough(Bytes::new())
        } else {
            RecvState::Undecided {
                accepted: self.control_accepted.clone(),
                goaway: self.goaway.clone(),
            }
        };
        Ok(ClientRecv {
            inner: self.inner.accept_uni().await?,
            state,
        })
    }

    async fn accept_bi(&self) -> Result<(Self::SendStream, Self::RecvStream), Self::Error> {
        let (send, inner) = self.inner.accept_bi().await?;
        Ok((
            send,
            ClientRecv {
                inner,
                state: RecvState::Passthrough(Bytes::new()),
            },
        ))
    }

    async fn open_bi(&self) -> Result<(Self::SendStream, Self::RecvStream), Self::Error> {
        let (send, inner) = self.inner.open_bi().await?;
        Ok((
            send,
            ClientRecv {
                inner,
                state: RecvState::Passthrough(Bytes::new()),
            },
        ))
    }

    async fn open_uni(&self) -> Result<Self::SendStream, Self::Error> {
        self.inner.open_uni().await
    }

    fn send_datagram(&self, payload: Bytes) -> Result<(), Self::Error> {
        self.inner.send_datagram(payload)
    }

    async fn recv_datagram(&self) -> Result<Bytes, Self::Error> {
        self.inner.read_datagram().await
    }

    fn max_datagram_size(&self) -> usize {
        self.inner.max_datagram_size()
    }

    fn protocol(&self) -> Option<&str> {
        web_transport_trait::Session::protocol(&self.inner)
    }

    fn close(&self, code: u32, reason: &str) {
        self.inner.close(code, reason.as_bytes());
    }

    async fn closed(&self) -> Self::Error {
        self.inner.closed().await
    }

    #[allow(refining_impl_trait)]
    fn stats(&self) -> web_transport_quinn::SessionStats {
        self.inner.stats()
    }
}
