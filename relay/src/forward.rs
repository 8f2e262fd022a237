//! Interaction streams accepted on a session: served by the interaction authority when
//! this node is the origin, else forwarded as opaque bytes over the upstream link toward
//! it, through any depth of chaining (`docs/interaction.md`). The relay reads only the
//! stream header; what the frames say is the authority's business.

use stagecast_proto::endpoint::{RELAY_LINK_BIDI_STREAMS, RELAY_LINK_MAX_BIDI_STREAMS};
use stagecast_proto::interaction::frame::encode_frame;
use stagecast_proto::interaction::{Answer, Reason, STREAM_HEADER};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use web_transport_quinn::quinn::VarInt;

use crate::demux::InteractionStream;
use crate::forward_share::ShareRefused;
use crate::relay::Relay;
use crate::router::SessionId;

/// Interaction streams one viewer session may have open at once; more are refused with
/// an answer saying so (a relay link carries its viewers' streams and is not held to it).
pub const MAX_STREAMS_PER_SESSION: usize = 64;
/// Streams waiting between the connection's demultiplexer and this session's server: a
/// burst beyond it is reset before it is read.
pub const STREAM_QUEUE: usize = 128;

/// How many bidirectional streams a relay link may open: from
/// [`RELAY_LINK_BIDI_STREAMS`], doubled whenever its interaction streams reach a quarter
/// of it (the rest leaves room for its MoQ requests), up to
/// [`RELAY_LINK_MAX_BIDI_STREAMS`].
pub struct StreamAllowance {
    transport: web_transport_quinn::Session,
    allowed: u32,
}

impl StreamAllowance {
    pub fn relay_link(transport: web_transport_quinn::Session) -> Self {
        transport.set_max_concurrent_bi_streams(VarInt::from_u32(RELAY_LINK_BIDI_STREAMS));
        Self {
            transport,
            allowed: RELAY_LINK_BIDI_STREAMS,
        }
    }

    /// Grows the allowance if `open` interaction streams call for it.
    fn make_room(&mut self, open: usize) {
        if let Some(allowed) = grown_allowance(open, self.allowed) {
            self.allowed = allowed;
            self.transport
                .set_max_concurrent_bi_streams(VarInt::from_u32(allowed));
        }
    }
}

fn grown_allowance(open: usize, allowed: u32) -> Option<u32> {
    let crowded = open.saturating_mul(4) >= allowed as usize;
    (crowded && allowed < RELAY_LINK_MAX_BIDI_STREAMS)
        .then(|| allowed.saturating_mul(2).min(RELAY_LINK_MAX_BIDI_STREAMS))
}

/// Serves the interaction streams of session `id` until the session ends, at most
/// `cap` at once (`None`: a relay link, or authorization off), growing a relay link's
/// stream allowance as they need. Never returns.
pub async fn serve_interaction(
    relay: Relay,
    id: SessionId,
    mut streams: mpsc::Receiver<InteractionStream>,
    mut allowance: Option<StreamAllowance>,
    cap: Option<usize>,
) {
    let mut serving = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            stream = streams.recv() => match stream {
                Some(stream) => {
                    relay.metrics().interaction_streams_total.inc();
                    if cap.is_some_and(|cap| serving.len() >= cap) {
                        relay.metrics().limits_refused.inc("interaction_streams_per_session");
                        serving.spawn(refuse(
                            stream,
                            "too many interaction streams open on this connection",
                        ));
                        continue;
                    }
                    serving.spawn(serve_stream(relay.clone(), id, stream));
                    if let Some(allowance) = allowance.as_mut() {
                        allowance.make_room(serving.len());
                    }
                }
                None => break,
            },
            Some(_) = serving.join_next(), if !serving.is_empty() => {}
        }
    }
    while serving.join_next().await.is_some() {}
    std::future::pending().await
}

async fn serve_stream(relay: Relay, id: SessionId, stream: InteractionStream) {
    if let Some(authority) = relay.config().interaction.clone() {
        return authority.serve(stream).await;
    }
    let upstream = relay
        .upstream()
        .borrow()
        .as_ref()
        .filter(|upstream| upstream.id != id)
        .map(|upstream| upstream.transport.clone());
    match upstream {
        Some(transport) => {
            let share = relay.forward_shares().acquire(id);
            if let Err(refused) = share {
                let (limit, why) = match refused {
                    ShareRefused::Session => (
                        "forward_streams_per_session",
                        "this connection holds its share of the relay's chat streams",
                    ),
                    ShareRefused::Link => (
                        "forward_streams",
                        "this relay's chat streams are all in use",
                    ),
                };
                relay.metrics().limits_refused.inc(limit);
                return refuse(stream, why).await;
            }
            relay.metrics().interaction_streams_forwarded_total.inc();
            let forwarded = forward(stream, transport).await;
            relay.forward_shares().release(id);
            if let Err(err) = forwarded {
                tracing::debug!(session = id, %err, "interaction stream forwarding ended");
            }
        }
        None => {
            relay.metrics().interaction_streams_refused_total.inc();
            refuse(
                stream,
                "no interaction authority is reachable from this node",
            )
            .await;
        }
    }
}

/// Copies the stream both ways between the downstream peer and a new stream upstream.
async fn forward(
    down: InteractionStream,
    upstream: web_transport_quinn::Session,
) -> Result<(), std::io::Error> {
    let InteractionStream {
        send: mut down_send,
        recv: mut down_recv,
    } = down;
    let opened = tokio::time::timeout(OPEN_UPSTREAM_TIMEOUT, upstream.open_bi()).await;
    let opened = match opened {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(format!("the upstream link failed: {err}")),
        Err(_) => Err("the upstream link has no stream free; try again".to_string()),
    };
    let (mut up_send, mut up_recv) = match opened {
        Ok(stream) => stream,
        Err(why) => {
            let mut down = InteractionStream {
                send: down_send,
                recv: down_recv,
            };
            refuse_with(&mut down, &why).await;
            return Err(std::io::Error::other(why));
        }
    };
    AsyncWriteExt::write_all(&mut up_send, &STREAM_HEADER).await?;
    let upward = async {
        tokio::io::copy(&mut down_recv, &mut up_send).await?;
        up_send.shutdown().await
    };
    let downward = async {
        tokio::io::copy(&mut up_recv, &mut down_send).await?;
        down_send.shutdown().await
    };
    // Either direction failing ends both: a half-forwarded request must not look answered.
    let result = tokio::try_join!(upward, downward).map(|_| ());
    if result.is_err() {
        let _ = down_send.reset(FORWARD_FAILED);
        let _ = up_send.reset(FORWARD_FAILED);
    }
    result
}

/// How long a forwarded stream waits for the upstream link to allow one more stream (the
/// origin grants a relay link more as its streams fill).
const OPEN_UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Stream reset code when a forwarded stream broke on the other side.
const FORWARD_FAILED: u32 = 0x11;

async fn refuse(mut stream: InteractionStream, why: &str) {
    refuse_with(&mut stream, why).await;
}

async fn refuse_with(stream: &mut InteractionStream, why: &str) {
    let answer = Answer::Error {
        reason: Reason::Unavailable,
        message: why.to_string(),
    };
    if let Ok(frame) = encode_frame(&answer) {
        let _ = stream.send.write_all(&frame).await;
    }
    let _ = stream.send.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_links_allowance_doubles_when_a_quarter_is_in_use_up_to_the_cap() {
        assert_eq!(grown_allowance(255, 1024), None);
        assert_eq!(grown_allowance(256, 1024), Some(2048));
        assert_eq!(grown_allowance(600, 2048), Some(4096));
        assert_eq!(grown_allowance(20_000, 65_536), None);
        assert_eq!(
            grown_allowance(20_000, 40_000),
            Some(RELAY_LINK_MAX_BIDI_STREAMS)
        );
    }
}
