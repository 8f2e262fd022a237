//! Per-subscriber delivery on the QUIC connection itself: the data streams MoQ opens to a
//! subscriber are sent newest first, and a stream the subscriber cannot take for
//! [`STALL_TIMEOUT`] is reset, so a subscriber that cannot keep up loses old groups
//! instead of making the relay queue them without bound.
//!
//! Why here: the MoQ session layer queues each subscription's groups in memory and writes
//! them to QUIC streams; a write or a stream opening that waits on a slow subscriber's
//! flow control holds that queue. Bounding how long either may wait bounds what one
//! subscriber can hold (its bitrate times the timeout, plus QUIC's send window), whatever
//! it does, and never touches other connections.
//!
//! Priority: QUIC sends higher priorities first. MoQ publisher priorities are the other
//! way round (lower is more important, draft-18 §7), so a data stream's QUIC priority is
//! the inverted publisher priority, then the stream's opening order: within a priority the
//! newest group goes first, and an old group waits (and times out) behind it. Publisher
//! priority 0 is the exception, [`IN_ORDER_PRIORITY`]: its groups go oldest first. Control
//! streams go before all data.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use web_transport_quinn::{SendStream, Session, SessionError, WriteError};

use crate::goaway::{ControlSlot, ControlWriter, SharedControl};
use crate::metrics::Metrics;

/// How long a write to (or the opening of) a subscriber's data stream may wait.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(4);
/// Reset code of a stream dropped because its subscriber could not keep up (the
/// draft-18 §11.4.1 DELIVERY_TIMEOUT reset code).
pub const DELIVERY_TIMEOUT_CODE: u32 = 0x2;
/// Publisher priority of tracks whose groups are sent in order, oldest first: every group
/// of such a track matters and a relay caches groups in order (a late older group is
/// dropped as stale), as for the interaction timeline, whose groups are a few
/// milliseconds apart in a chat burst. Newest-first would reorder exactly those.
pub const IN_ORDER_PRIORITY: u8 = 0;
/// QUIC priority of control streams: before any data.
const CONTROL_PRIORITY: i32 = i32::MAX;
/// First byte of a stream that starts with SETUP (type 0x2F00 as a varint): the
/// session's control stream (draft-18 §10.3).
const SETUP_FIRST_BYTE: u8 = 0xAF;

/// What a stream carries, known from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Opened by the MoQ session, nothing written yet.
    Unknown,
    /// SUBGROUP_HEADER or FETCH_HEADER: media, subject to the stall timeout.
    Data,
    /// SETUP, bidirectional requests: never timed out, sent first.
    Control,
}

/// Numbers data streams in opening order, per connection.
#[derive(Clone, Default)]
pub struct StreamOrder(Arc<AtomicU32>);

impl StreamOrder {
    fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// A send stream of a subscriber's connection.
pub struct TimedSend {
    inner: Inner,
    /// Where the control stream is shared with the drain, once it is known to be one.
    control_slot: Option<ControlSlot>,
    kind: Kind,
    /// The MoQ publisher priority the session asked for.
    publisher_priority: u8,
    order: u32,
    metrics: Metrics,
}

impl TimedSend {
    /// A bidirectional (request) stream.
    pub fn control(inner: SendStream, metrics: Metrics) -> Self {
        let _ = inner.set_priority(CONTROL_PRIORITY);
        Self {
            inner: Inner::Own(inner),
            control_slot: None,
            kind: Kind::Control,
            publisher_priority: 0,
            order: 0,
            metrics,
        }
    }

    /// Opens a unidirectional stream, waiting at most [`STALL_TIMEOUT`] for the
    /// subscriber to allow one more. If it turns out to be the control stream, it is put
    /// in `control_slot`.
    pub async fn open_uni(
        session: &Session,
        order: &StreamOrder,
        metrics: &Metrics,
        control_slot: &ControlSlot,
    ) -> Result<Self, SessionError> {
        match tokio::time::timeout(STALL_TIMEOUT, session.open_uni()).await {
            Ok(opened) => Ok(Self {
                inner: Inner::Own(opened?),
                control_slot: Some(control_slot.clone()),
                kind: Kind::Unknown,
                publisher_priority: 0,
                order: order.next(),
                metrics: metrics.clone(),
            }),
            Err(_) => {
                metrics.groups_dropped_total.inc();
                tracing::debug!("subscriber allows no new stream; group dropped");
                // Fails this group only: MoQ's serving loop goes on with the next.
                Err(SessionError::ConnectionError(
                    web_transport_quinn::quinn::ConnectionError::TimedOut,
                ))
            }
        }
    }

    fn classify(&mut self, first: u8) {
        // Draft-18 §10.4: SUBGROUP_HEADER types are 0b0XX1XXXX, FETCH_HEADER is 0x05.
        let data = first & 0x90 == 0x10 || first == 0x05;
        self.kind = if data { Kind::Data } else { Kind::Control };
        let priority = match self.kind {
            Kind::Data => quic_priority(self.publisher_priority, self.order),
            _ => CONTROL_PRIORITY,
        };
        if let Inner::Own(stream) = &self.inner {
            let _ = stream.set_priority(priority);
        }
        if first == SETUP_FIRST_BYTE {
            self.share_control();
        }
    }

    /// Moves the control stream where the drain can reach it.
    fn share_control(&mut self) {
        let Some(slot) = self.control_slot.take() else {
            return;
        };
        if slot.get().is_some() {
            return;
        }
        if let Inner::Own(stream) = std::mem::replace(&mut self.inner, Inner::Moved) {
            let shared: SharedControl =
                std::sync::Arc::new(tokio::sync::Mutex::new(ControlWriter::new(stream)));
            let _ = slot.set(shared.clone());
            self.inner = Inner::Shared(shared);
        }
    }
}

/// The QUIC stream behind a [`TimedSend`].
enum Inner {
    Own(SendStream),
    /// The session's control stream, shared with the drain's GOAWAY.
    Shared(SharedControl),
    /// Only while being moved into `Shared`.
    Moved,
}

impl Inner {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, WriteError> {
        match self {
            Inner::Own(stream) => stream.write(buf).await,
            Inner::Shared(shared) => shared.lock().await.write(buf).await,
            Inner::Moved => Err(WriteError::ClosedStream),
        }
    }

    /// Runs `f` on the stream now, or (for the shared control stream, while the drain
    /// writes to it) as soon as it is free.
    fn with_stream(&mut self, f: impl FnOnce(&mut SendStream) + Send + 'static) {
        match self {
            Inner::Own(stream) => f(stream),
            Inner::Shared(shared) => match shared.clone().try_lock_owned() {
                Ok(mut writer) => f(writer.stream()),
                Err(_) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { f(shared.lock().await.stream()) });
                }
            },
            Inner::Moved => {}
        }
    }
}

/// Inverted publisher priority in the top bits, opening order below (newest highest, or
/// oldest for [`IN_ORDER_PRIORITY`]). The order keeps 22 bits, so even publisher priority
/// 0 stays below control streams.
fn quic_priority(publisher_priority: u8, order: u32) -> i32 {
    let order = order & ORDER_MASK;
    let order = match publisher_priority {
        IN_ORDER_PRIORITY => ORDER_MASK - order,
        _ => order,
    };
    (i32::from(255 - publisher_priority) << 23) | order as i32
}

const ORDER_MASK: u32 = 0x3F_FFFF;

impl web_transport_trait::SendStream for TimedSend {
    type Error = WriteError;

    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if self.kind == Kind::Unknown {
            if let Some(&first) = buf.first() {
                self.classify(first);
            }
        }
        if self.kind != Kind::Data {
            return self.inner.write(buf).await;
        }
        match tokio::time::timeout(STALL_TIMEOUT, self.inner.write(buf)).await {
            Ok(written) => written,
            Err(_) => {
                self.metrics.groups_dropped_total.inc();
                tracing::debug!("subscriber stalled for {STALL_TIMEOUT:?}; stream reset");
                self.inner.with_stream(|stream| {
                    let _ = stream.reset(DELIVERY_TIMEOUT_CODE);
                });
                Err(WriteError::Stopped(DELIVERY_TIMEOUT_CODE))
            }
        }
    }

    fn set_priority(&mut self, order: u8) {
        self.publisher_priority = order;
    }

    fn finish(&mut self) -> Result<(), Self::Error> {
        match &mut self.inner {
            Inner::Own(stream) => web_transport_trait::SendStream::finish(stream),
            shared => {
                shared.with_stream(|stream| {
                    let _ = web_transport_trait::SendStream::finish(stream);
                });
                Ok(())
            }
        }
    }

    fn reset(&mut self, code: u32) {
        self.inner.with_stream(move |stream| {
            web_transport_trait::SendStream::reset(stream, code);
        });
    }

    async fn closed(&mut self) -> Result<(), Self::Error> {
        match &mut self.inner {
            Inner::Own(stream) => web_transport_trait::SendStream::closed(stream).await,
            Inner::Shared(shared) => {
                web_transport_trait::SendStream::closed(shared.lock().await.stream()).await
            }
            Inner::Moved => Err(WriteError::ClosedStream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{quic_priority, CONTROL_PRIORITY};

    #[test]
    fn important_tracks_then_newest_groups_go_first() {
        // Publisher priority 1 (audio) before 2 (video), whatever the order.
        assert!(quic_priority(1, 0) > quic_priority(2, 5_000_000));
        // Within a priority, a newer stream before an older one...
        assert!(quic_priority(2, 11) > quic_priority(2, 10));
        // ...except in the in-order class, and that class still goes before the others.
        assert!(quic_priority(0, 10) > quic_priority(0, 11));
        assert!(quic_priority(0, u32::MAX) > quic_priority(1, 0));
        assert!(quic_priority(0, u32::MAX) < CONTROL_PRIORITY);
        assert!(quic_priority(255, 0) >= 0);
    }
}
