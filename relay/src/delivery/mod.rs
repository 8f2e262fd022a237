//! Per-subscriber delivery on the QUIC connection itself: each track's groups go one after
//! another, a subscriber that cannot keep up loses whole old groups ([`lines`]), and a
//! stream the subscriber cannot take for [`STALL_TIMEOUT`] is reset, so the relay never
//! queues a slow subscriber's backlog without bound.
//!
//! Why here: the MoQ session layer queues each subscription's groups in memory and writes
//! them to QUIC streams; a write or a stream opening that waits on a slow subscriber's
//! flow control holds that queue. Bounding how long either may wait bounds what one
//! subscriber can hold (its bitrate times the timeout, plus QUIC's send window), whatever
//! it does, and never touches other connections.
//!
//! Why lines: QUIC buffers whatever is written (its send window is megabytes), so write
//! timeouts alone never fire on a slow link: the whole backlog reaches the subscriber
//! late, and with newest-first priorities every group is cut short by the next one. A
//! group's first write (its SUBGROUP_HEADER names the track alias and group) therefore
//! waits for its turn in its track's line, and a group the line gives up is reset; the
//! decisions are [`lines::GroupLines`], this module only carries them out. Tracks of [`IN_ORDER_PRIORITY`] (every group
//! matters, the interaction timeline) and FETCH streams are not in lines: never dropped
//! for a newer group. A relay link (a downstream relay, by its token's role) is in lines
//! with a longer grace, [`RELAY_LINK_GRACE`]: every group it loses, all its viewers lose,
//! but holding it further behind live than that would make its viewers late too.
//!
//! Priority: QUIC sends higher priorities first. MoQ publisher priorities are the other
//! way round (lower is more important, draft-18 §7), so a data stream's QUIC priority is
//! the inverted publisher priority, then the stream's opening order, oldest first: a
//! group kept in its line is sent before the next one, which would otherwise take the
//! link from it. Control streams go before all data.

pub mod lines;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stagecast_proto::sync::lock_or_recover;
use stagecast_proto::varint::get_varint;
use tokio::sync::watch;
use web_transport_quinn::{SendStream, Session, SessionError, WriteError};

use crate::goaway::{ControlSlot, ControlWriter, SharedControl};
use crate::metrics::Metrics;
use lines::{Action, GroupLines, StreamKey};

/// How long a write to (or the opening of) a subscriber's data stream may wait.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(4);
/// Reset code of a stream dropped because its subscriber could not keep up (the
/// draft-18 §11.4.1 DELIVERY_TIMEOUT reset code).
pub const DELIVERY_TIMEOUT_CODE: u32 = 0x2;
/// Publisher priority of tracks none of whose groups is given up for a newer one (they
/// stay out of lines): every group of such a track matters, as for the interaction
/// timeline, whose groups are a few milliseconds apart in a chat burst. They go oldest
/// first like all data, since a relay caches groups in order (a late older group is
/// dropped as stale).
pub const IN_ORDER_PRIORITY: u8 = 0;
/// How long a group superseded by a newer one of its track may stay undelivered on a
/// viewer's connection before it is reset: a group at least this late is not worth the
/// link any more. Also how far behind live (past a group's length) a slow viewer can be.
pub const VIEWER_GRACE: Duration = Duration::from_secs(2);
/// The same on a relay link, longer: a group it loses is lost to every viewer behind it.
pub const RELAY_LINK_GRACE: Duration = Duration::from_secs(6);
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

/// What a stream in a line is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    Wait,
    Go,
    /// Its group is given up: reset the stream.
    Drop,
}

/// A connection's lines of groups ([`GroupLines`]) and the streams waiting on them.
#[derive(Clone)]
pub struct Lines(Arc<LinesInner>);

struct LinesInner {
    state: std::sync::Mutex<LinesState>,
    /// For the round trip, which tells a slow delivery from a prompt one.
    session: Session,
    metrics: Metrics,
}

struct LinesState {
    lines: GroupLines,
    turns: HashMap<StreamKey, watch::Sender<Turn>>,
}

impl Lines {
    pub fn new(session: Session, metrics: Metrics) -> Self {
        Self(Arc::new(LinesInner {
            state: std::sync::Mutex::new(LinesState {
                lines: GroupLines::new(VIEWER_GRACE),
                turns: HashMap::new(),
            }),
            session,
            metrics,
        }))
    }

    /// The peer is a relay: its groups get [`RELAY_LINK_GRACE`].
    pub fn set_relay_link(&self) {
        lock_or_recover(&self.0.state)
            .lines
            .set_grace(RELAY_LINK_GRACE);
    }

    fn open(&self, key: StreamKey, track: u64, group: u64) -> watch::Receiver<Turn> {
        let (tx, rx) = watch::channel(Turn::Wait);
        let mut state = lock_or_recover(&self.0.state);
        state.turns.insert(key, tx);
        let actions = state
            .lines
            .open(key, track, group, tokio::time::Instant::now());
        self.apply(&mut state, actions);
        rx
    }

    fn finished(&self, key: StreamKey) {
        let mut state = lock_or_recover(&self.0.state);
        let actions = state.lines.finished(key, tokio::time::Instant::now());
        self.apply(&mut state, actions);
    }

    fn delivered(&self, key: StreamKey) {
        let rtt = self.0.session.rtt();
        let mut state = lock_or_recover(&self.0.state);
        state.turns.remove(&key);
        let actions = state.lines.delivered(key, tokio::time::Instant::now(), rtt);
        self.apply(&mut state, actions);
    }

    fn gone(&self, key: StreamKey) {
        let mut state = lock_or_recover(&self.0.state);
        state.turns.remove(&key);
        let actions = state.lines.gone(key);
        self.apply(&mut state, actions);
    }

    fn expired(&self, key: StreamKey) {
        let mut state = lock_or_recover(&self.0.state);
        let actions = state.lines.expired(key, tokio::time::Instant::now());
        self.apply(&mut state, actions);
    }

    fn apply(&self, state: &mut LinesState, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Go(key) => {
                    if let Some(turn) = state.turns.get(&key) {
                        turn.send_replace(Turn::Go);
                    }
                }
                Action::Drop(key) => {
                    self.0.metrics.groups_dropped_total.inc();
                    tracing::debug!(stream = key, "subscriber behind; group given up");
                    if let Some(turn) = state.turns.remove(&key) {
                        turn.send_replace(Turn::Drop);
                    }
                }
                Action::Deadline(key, at) => {
                    let lines = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        lines.expired(key);
                    });
                }
            }
        }
    }
}

/// A stream's place in its line: its key and what it is told.
struct InLine {
    key: StreamKey,
    turn: watch::Receiver<Turn>,
    lines: Lines,
}

/// Resolves when the stream's group is given up.
async fn dropped(turn: &mut watch::Receiver<Turn>) {
    // A sender gone (the line removed the stream) is no drop: wait forever then.
    if turn.wait_for(|t| *t == Turn::Drop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How long a header takes to reach a subscriber and be read, at round trip `rtt`: out,
/// a loss and its retransmission, and the peer's scheduling.
fn header_arrival(rtt: Duration) -> Duration {
    rtt * 3 + Duration::from_millis(100)
}

/// The track alias and group id of a SUBGROUP_HEADER (draft-18 §10.4.2: type, Track
/// Alias, Group ID, ...), or `None` if `buf` does not hold them.
fn subgroup_track_and_group(buf: &[u8]) -> Option<(u64, u64)> {
    let (_, type_len) = get_varint(buf)?;
    let rest = buf.get(type_len..)?;
    let (alias, alias_len) = get_varint(rest)?;
    let (group, _) = get_varint(rest.get(alias_len..)?)?;
    Some((alias, group))
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
    /// The connection's lines, for a data stream that may join one.
    lines: Option<Lines>,
    /// Its place in its track's line, once its header has been seen.
    in_line: Option<InLine>,
    /// Whether anything has been written to QUIC.
    started: bool,
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
            lines: None,
            in_line: None,
            started: false,
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
        lines: &Lines,
    ) -> Result<Self, SessionError> {
        match tokio::time::timeout(STALL_TIMEOUT, session.open_uni()).await {
            Ok(opened) => Ok(Self {
                inner: Inner::Own(opened?),
                control_slot: Some(control_slot.clone()),
                kind: Kind::Unknown,
                publisher_priority: 0,
                order: order.next(),
                metrics: metrics.clone(),
                lines: Some(lines.clone()),
                in_line: None,
                started: false,
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

    /// Classifies the stream by its first write, `buf`, and puts a subgroup stream of a
    /// track that is not [`IN_ORDER_PRIORITY`] in its line.
    fn classify(&mut self, buf: &[u8]) {
        let Some(&first) = buf.first() else {
            return;
        };
        // Draft-18 §10.4: SUBGROUP_HEADER types are 0b0XX1XXXX, FETCH_HEADER is 0x05.
        let subgroup = first & 0x90 == 0x10;
        let data = subgroup || first == 0x05;
        if subgroup && self.publisher_priority != IN_ORDER_PRIORITY {
            // MoQ writes a header whole in one write; one cut short stays out of lines.
            if let (Some(lines), Some((track, group))) =
                (&self.lines, subgroup_track_and_group(buf))
            {
                self.in_line = Some(InLine {
                    key: self.order,
                    turn: lines.open(self.order, track, group),
                    lines: lines.clone(),
                });
            }
        }
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

impl TimedSend {
    /// Sends the SUBGROUP_HEADER (`header`, the stream's first write) of a group given up
    /// before it began, and waits for it to arrive before the reset that follows: a
    /// subscriber counts a subscription's streams by their headers (draft-18 PUBLISH_DONE
    /// Stream Count), and one reset before its header would make it wait out a timer at
    /// the end of the track. QUIC may discard what a reset stream received but not yet
    /// read, hence the wait; the header goes before any media.
    async fn send_header_before_reset(&mut self, header: &[u8]) {
        let Some(lines) = &self.lines else {
            return;
        };
        let wait = header_arrival(lines.0.session.rtt());
        if let Inner::Own(stream) = &self.inner {
            let _ = stream.set_priority(CONTROL_PRIORITY - 1);
        }
        let write = async {
            let mut sent = 0;
            while sent < header.len() {
                match self.inner.write(&header[sent..]).await {
                    Ok(n) if n > 0 => sent += n,
                    _ => return,
                }
            }
            tokio::time::sleep(wait).await;
        };
        let _ = tokio::time::timeout(STALL_TIMEOUT, write).await;
    }

    /// Resets the stream of a group its line gave up (the line has already forgotten it).
    fn give_up(&mut self) -> WriteError {
        self.in_line = None;
        tracing::debug!("group given up for a newer one; stream reset");
        self.inner.with_stream(|stream| {
            let _ = stream.reset(DELIVERY_TIMEOUT_CODE);
        });
        WriteError::Stopped(DELIVERY_TIMEOUT_CODE)
    }
}

impl Drop for TimedSend {
    fn drop(&mut self) {
        // A stream the session let go of (cancelled, reset, done) holds its line no more.
        if let Some(in_line) = self.in_line.take() {
            in_line.lines.gone(in_line.key);
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

/// Inverted publisher priority in the top bits, opening order below, oldest highest. The
/// order keeps 22 bits, so even publisher priority 0 stays below control streams.
fn quic_priority(publisher_priority: u8, order: u32) -> i32 {
    let order = ORDER_MASK - (order & ORDER_MASK);
    (i32::from(255 - publisher_priority) << 23) | order as i32
}

const ORDER_MASK: u32 = 0x3F_FFFF;

impl web_transport_trait::SendStream for TimedSend {
    type Error = WriteError;

    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if self.kind == Kind::Unknown {
            self.classify(buf);
        }
        if self.kind != Kind::Data {
            return self.inner.write(buf).await;
        }
        if let Some(in_line) = &mut self.in_line {
            // Its turn first: a group waits for the one before it, or is given up.
            let _ = in_line.turn.wait_for(|t| *t != Turn::Wait).await;
            if *in_line.turn.borrow() == Turn::Drop {
                if !self.started {
                    self.send_header_before_reset(buf).await;
                }
                return Err(self.give_up());
            }
        }
        self.started = true;
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
        if let Some(in_line) = &self.in_line {
            if *in_line.turn.borrow() == Turn::Drop {
                return Err(self.give_up());
            }
            in_line.lines.finished(in_line.key);
        }
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
        if let Some(in_line) = self.in_line.take() {
            in_line.lines.gone(in_line.key);
        }
        self.inner.with_stream(move |stream| {
            web_transport_trait::SendStream::reset(stream, code);
        });
    }

    async fn closed(&mut self) -> Result<(), Self::Error> {
        if let (Some(in_line), Inner::Own(stream)) = (&mut self.in_line, &mut self.inner) {
            // Delivered (every byte acknowledged), stopped, or given up meanwhile.
            let closed = tokio::select! {
                closed = web_transport_trait::SendStream::closed(stream) => Some(closed),
                () = dropped(&mut in_line.turn) => None,
            };
            return match closed {
                Some(closed) => {
                    if let Some(in_line) = self.in_line.take() {
                        match &closed {
                            Ok(()) => in_line.lines.delivered(in_line.key),
                            Err(_) => in_line.lines.gone(in_line.key),
                        }
                    }
                    closed
                }
                None => Err(self.give_up()),
            };
        }
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
    use super::{quic_priority, subgroup_track_and_group, CONTROL_PRIORITY};

    #[test]
    fn important_tracks_then_oldest_groups_go_first() {
        // Publisher priority 1 (audio) before 2 (video), whatever the order.
        assert!(quic_priority(1, 5_000_000) > quic_priority(2, 0));
        // Within a priority, an older stream before a newer one (lines keep at most the
        // tail of one group ahead of the next)...
        assert!(quic_priority(2, 10) > quic_priority(2, 11));
        // ...and the in-order class before the others.
        assert!(quic_priority(0, 10) > quic_priority(0, 11));
        assert!(quic_priority(0, u32::MAX) > quic_priority(1, 0));
        assert!(quic_priority(0, u32::MAX) < CONTROL_PRIORITY);
        assert!(quic_priority(255, 0) >= 0);
    }

    #[test]
    fn a_subgroup_header_names_its_track_and_group() {
        // Type 0x14, alias 3, group 300 (a two-byte varint, 0b10 then 14 bits), subgroup
        // 0, priority 2.
        let header = [0x14, 0x03, 0x81, 0x2c, 0x00, 0x02];
        assert_eq!(subgroup_track_and_group(&header), Some((3, 300)));
        // Cut short: not enough to know.
        assert_eq!(subgroup_track_and_group(&header[..3]), None);
        assert_eq!(subgroup_track_and_group(&[]), None);
    }
}
