//! Splits a connection's incoming bidirectional streams in two: interaction streams
//! (`docs/interaction.md` §1.1: they start with [`STREAM_HEADER`]) go to this node's
//! interaction handling, everything else to the MoQ session, which never sees the others.
//!
//! The MoQ session layer takes any `web_transport_trait::Session`; [`DemuxSession`] is one
//! that wraps the real connection and hands the MoQ session only its own streams, and
//! whose send streams bound how long a slow subscriber can hold data (see `delivery`). Streams
//! are classified in tasks of their own, so a peer that opens a stream and sends nothing
//! delays no other stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use stagecast_proto::interaction::STREAM_HEADER;

use crate::delivery::{StreamOrder, TimedSend};
use crate::metrics::Metrics;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use web_transport_quinn::{ReadError, RecvStream, SendStream, Session, SessionError};

/// How long a new stream may take to show its first bytes.
const CLASSIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams being classified at once per connection; more wait to be accepted.
const MAX_CLASSIFYING: usize = 32;
/// Classified MoQ request streams the MoQ session has not yet taken.
const MOQ_BACKLOG: usize = 16;
/// Code for streams refused because this connection has too many interaction streams.
pub const STREAM_REFUSED: u32 = 0x10;

/// An interaction stream whose header has been read.
pub struct InteractionStream {
    pub send: SendStream,
    pub recv: RecvStream,
}

/// A MoQ request stream, or the connection's end.
type MoqStream = Result<(SendStream, PrefixedRecv), SessionError>;

/// The connection as the MoQ session sees it: every stream but interaction streams.
#[derive(Clone)]
pub struct DemuxSession {
    inner: Session,
    moq: Arc<tokio::sync::Mutex<mpsc::Receiver<MoqStream>>>,
    order: StreamOrder,
    metrics: Metrics,
}

impl DemuxSession {
    /// Starts classifying `session`'s incoming bidirectional streams. Interaction streams
    /// are offered to `interaction`; when it is full or closed they are refused. The
    /// classifying task ends with the connection.
    pub fn new(
        session: Session,
        interaction: mpsc::Sender<InteractionStream>,
        metrics: Metrics,
    ) -> Self {
        let (moq_tx, moq_rx) = mpsc::channel(MOQ_BACKLOG);
        tokio::spawn(classify_streams(session.clone(), moq_tx, interaction));
        Self {
            inner: session,
            moq: Arc::new(tokio::sync::Mutex::new(moq_rx)),
            order: StreamOrder::default(),
            metrics,
        }
    }
}

async fn classify_streams(
    session: Session,
    moq: mpsc::Sender<MoqStream>,
    interaction: mpsc::Sender<InteractionStream>,
) {
    let mut classifying = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = session.accept_bi(), if classifying.len() < MAX_CLASSIFYING => {
                match accepted {
                    Ok((send, recv)) => {
                        classifying.spawn(classify(send, recv, moq.clone(), interaction.clone()));
                    }
                    Err(err) => {
                        let _ = moq.send(Err(err)).await;
                        return;
                    }
                }
            }
            Some(_) = classifying.join_next(), if !classifying.is_empty() => {}
            () = moq.closed() => return,
        }
    }
}

async fn classify(
    send: SendStream,
    mut recv: RecvStream,
    moq: mpsc::Sender<MoqStream>,
    interaction: mpsc::Sender<InteractionStream>,
) {
    // One byte decides: no MoQ message type's varint starts with 0xE0 (it would need a
    // type above 2^21), so a MoQ request is passed on without waiting for more bytes.
    let mut prefix = [0u8; STREAM_HEADER.len()];
    let read = tokio::time::timeout(CLASSIFY_TIMEOUT, async {
        AsyncReadExt::read_exact(&mut recv, &mut prefix[..1]).await?;
        if prefix[0] == STREAM_HEADER[0] {
            AsyncReadExt::read_exact(&mut recv, &mut prefix[1..]).await?;
            return Ok::<_, std::io::Error>(STREAM_HEADER.len());
        }
        Ok(1)
    })
    .await;
    let len = match read {
        Ok(Ok(len)) => len,
        Ok(Err(err)) => {
            tracing::debug!(%err, "stream ended before its first bytes");
            return;
        }
        Err(_) => {
            tracing::debug!("stream sent nothing within {CLASSIFY_TIMEOUT:?}; dropped");
            return;
        }
    };
    if prefix[..len] == STREAM_HEADER {
        if let Err(refused) = interaction.try_send(InteractionStream { send, recv }) {
            let InteractionStream { mut send, mut recv } = refused.into_inner();
            tracing::debug!("interaction stream refused: too many on this connection");
            let _ = send.reset(STREAM_REFUSED);
            let _ = recv.stop(STREAM_REFUSED);
        }
        return;
    }
    let recv = PrefixedRecv {
        prefix: Bytes::copy_from_slice(&prefix[..len]),
        inner: recv,
    };
    let _ = moq.send(Ok((send, recv))).await;
}

impl web_transport_trait::Session for DemuxSession {
    type SendStream = TimedSend;
    type RecvStream = PrefixedRecv;
    type Error = SessionError;

    async fn accept_uni(&self) -> Result<Self::RecvStream, Self::Error> {
        let inner = self.inner.accept_uni().await?;
        Ok(PrefixedRecv {
            prefix: Bytes::new(),
            inner,
        })
    }

    async fn accept_bi(&self) -> Result<(Self::SendStream, Self::RecvStream), Self::Error> {
        match self.moq.lock().await.recv().await {
            Some(stream) => {
                let (send, recv) = stream?;
                Ok((TimedSend::control(send, self.metrics.clone()), recv))
            }
            // The classifier stopped only after reporting the connection's error.
            None => Err(self.inner.closed().await),
        }
    }

    async fn open_bi(&self) -> Result<(Self::SendStream, Self::RecvStream), Self::Error> {
        let (send, inner) = self.inner.open_bi().await?;
        Ok((
            TimedSend::control(send, self.metrics.clone()),
            PrefixedRecv {
                prefix: Bytes::new(),
                inner,
            },
        ))
    }

    async fn open_uni(&self) -> Result<Self::SendStream, Self::Error> {
        TimedSend::open_uni(&self.inner, &self.order, &self.metrics).await
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

/// A received stream with the bytes read to classify it put back in front.
pub struct PrefixedRecv {
    prefix: Bytes,
    inner: RecvStream,
}

impl web_transport_trait::RecvStream for PrefixedRecv {
    type Error = ReadError;

    async fn read(&mut self, dst: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        if !self.prefix.is_empty() {
            let n = dst.len().min(self.prefix.len());
            self.prefix.copy_to_slice(&mut dst[..n]);
            return Ok(Some(n));
        }
        web_transport_trait::RecvStream::read(&mut self.inner, dst).await
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, Self::Error> {
        if !self.prefix.is_empty() {
            let n = max.min(self.prefix.len());
            return Ok(Some(self.prefix.split_to(n)));
        }
        web_transport_trait::RecvStream::read_chunk(&mut self.inner, max).await
    }

    fn stop(&mut self, code: u32) {
        web_transport_trait::RecvStream::stop(&mut self.inner, code);
    }

    async fn closed(&mut self) -> Result<(), Self::Error> {
        web_transport_trait::RecvStream::closed(&mut self.inner).await
    }
}
