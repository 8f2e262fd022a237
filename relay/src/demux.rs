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

use bytes::{Buf, Bytes, BytesMut};
use stagecast_proto::interaction::STREAM_HEADER;
use stagecast_proto::varint::get_varint;

use crate::delivery::{Lines, StreamOrder, TimedSend};
use crate::goaway::{ControlSlot, GoAwayNotice, RequestIds};
use crate::metrics::Metrics;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
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
    lines: Lines,
    metrics: Metrics,
    control: ControlSlot,
}

impl DemuxSession {
    /// Starts classifying `session`'s incoming bidirectional streams. Interaction streams
    /// are offered to `interaction`; when it is full or closed they are refused. The
    /// classifying task ends with the connection. When `goaway` says the node drains, the
    /// session's control stream gets a GOAWAY.
    pub fn new(
        session: Session,
        interaction: mpsc::Sender<InteractionStream>,
        metrics: Metrics,
        goaway: watch::Receiver<Option<GoAwayNotice>>,
    ) -> Self {
        let (moq_tx, moq_rx) = mpsc::channel(MOQ_BACKLOG);
        let requests = RequestIds::default();
        let control = ControlSlot::default();
        tokio::spawn(classify_streams(
            session.clone(),
            moq_tx,
            interaction,
            requests.clone(),
        ));
        let closed = session.clone();
        let session_for_lines = session.clone();
        let send_goaway = crate::goaway::send_on_drain(goaway, control.clone(), requests);
        tokio::spawn(async move {
            tokio::select! {
                () = send_goaway => {}
                _ = closed.closed() => {}
            }
        });
        Self {
            inner: session,
            moq: Arc::new(tokio::sync::Mutex::new(moq_rx)),
            order: StreamOrder::default(),
            lines: Lines::new(session_for_lines, metrics.clone()),
            metrics,
            control,
        }
    }

    /// The connection's lines of groups (see `delivery`), to mark a relay link once known.
    pub fn lines(&self) -> &Lines {
        &self.lines
    }
}

async fn classify_streams(
    session: Session,
    moq: mpsc::Sender<MoqStream>,
    interaction: mpsc::Sender<InteractionStream>,
    requests: RequestIds,
) {
    let mut classifying = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = session.accept_bi(), if classifying.len() < MAX_CLASSIFYING => {
                match accepted {
                    Ok((send, recv)) => {
                        classifying.spawn(classify(send, recv, moq.clone(), interaction.clone(), requests.clone()));
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
    requests: RequestIds,
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
    let mut prefix = BytesMut::from(&prefix[..len]);
    match tokio::time::timeout(CLASSIFY_TIMEOUT, read_request_id(&mut recv, &mut prefix)).await {
        Ok(Ok(Some(id))) => requests.saw(id),
        Ok(Ok(None)) => {}
        // Whatever was read goes to the MoQ session, which reports the problem itself.
        Ok(Err(_)) | Err(_) => {}
    }
    let recv = PrefixedRecv {
        prefix: prefix.freeze(),
        inner: recv,
    };
    let _ = moq.send(Ok((send, recv))).await;
}

/// Reads, after a request message's first byte in `prefix`, the rest of its header and
/// its Request ID (the first field of every message that opens a request stream in
/// draft-18), keeping every byte read in `prefix` for the MoQ session.
async fn read_request_id(
    recv: &mut RecvStream,
    prefix: &mut BytesMut,
) -> std::io::Result<Option<u64>> {
    // A one-byte type (every request type is below 0x80), then the 16-bit Length.
    if prefix.first().is_none_or(|first| *first >= 0x80) {
        return Ok(None);
    }
    let mut header = [0u8; 3];
    AsyncReadExt::read_exact(recv, &mut header).await?;
    prefix.extend_from_slice(&header);
    let id_len = (header[2].leading_ones() as usize + 1).min(9);
    let mut rest = [0u8; 8];
    AsyncReadExt::read_exact(recv, &mut rest[..id_len - 1]).await?;
    prefix.extend_from_slice(&rest[..id_len - 1]);
    Ok(get_varint(&prefix[3..]).map(|(id, _)| id))
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
        TimedSend::open_uni(
            &self.inner,
            &self.order,
            &self.metrics,
            &self.control,
            &self.lines,
        )
        .await
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
