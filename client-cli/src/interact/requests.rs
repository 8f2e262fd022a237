//! A request stream: the hello, then requests answered in order.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use stagecast_proto::interaction::frame::encode_frame;
use stagecast_proto::interaction::{Answer, FrameReader, Hello, Request, STREAM_HEADER};
use stagecast_proto::web_transport_quinn::{RecvStream, SendStream, Session};
use tokio::io::AsyncWriteExt;

/// How long an answer may take before the stream is given up (the request may be retried
/// with the same key).
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct RequestStream {
    send: SendStream,
    frames: FrameReader<RecvStream>,
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

impl RequestStream {
    /// Opens a request stream on `transport` for `broadcast`; returns it with the welcome.
    pub async fn open(
        transport: &Session,
        broadcast: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(Self, Answer)> {
        let (mut send, recv) = transport
            .open_bi()
            .await
            .context("cannot open an interaction stream")?;
        let hello = encode_frame(&Hello {
            broadcast: broadcast.to_string(),
            token: token.map(str::to_string),
        })?;
        let mut first = STREAM_HEADER.to_vec();
        first.extend_from_slice(&hello);
        AsyncWriteExt::write_all(&mut send, &first).await?;
        let mut stream = Self {
            send,
            frames: FrameReader::new(recv, Bytes::new()),
        };
        match stream.answer().await? {
            welcome @ Answer::Welcome { .. } => Ok((stream, welcome)),
            Answer::Error { reason, message } => Err(Refused { reason, message }.into()),
            other => bail!("unexpected first answer: {other:?}"),
        }
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&mut self, request: &Request) -> anyhow::Result<Answer> {
        let frame = encode_frame(request)?;
        AsyncWriteExt::write_all(&mut self.send, &frame).await?;
        self.answer().await
    }

    async fn answer(&mut self) -> anyhow::Result<Answer> {
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, self.frames.next_message::<Answer>())
            .await
            .map_err(|_| anyhow!("no answer within {ANSWER_TIMEOUT:?}"))??;
        answer.ok_or_else(|| anyhow!("the interaction stream closed"))
    }

    /// Ends the stream politely.
    pub async fn finish(mut self) {
        let _ = self.send.shutdown().await;
    }
}

/// The origin (or a relay) refused the stream itself: retrying will not help.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", reason_text(*reason))]
pub struct Refused {
    pub reason: stagecast_proto::interaction::Reason,
    pub message: String,
}

/// A rejection reason as a person reads it.
pub fn reason_text(reason: stagecast_proto::interaction::Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_else(|| format!("{reason:?}"))
}
