//! What subscribers of a broadcast's `interaction` track keep of it (sinks for
//! `subscriber.rs`):
//!
//! - [`MarkerLog`]: when each benchmark chat message (text `lat<run>#<id>#`) first arrived,
//!   found by scanning the objects' bytes: a thousand subscribers cannot afford to parse
//!   every snapshot, and the first arrival is all the latency needs;
//! - [`EventLog`]: every event record, parsed, with its arrival time, counted once per
//!   `seq` (what the origin published, as one watcher saw it).

use stagecast_proto::sync::lock_or_recover;
use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use stagecast_proto::interaction::{Event, Record, TimelineData};

use crate::subscriber::ObjectSink;

/// The prefix of the messages of measurement `run`: messages of an earlier run are
/// still in the chat backlog of every snapshot, and must not count as arrivals.
pub fn marker_prefix(run: usize) -> Vec<u8> {
    format!("lat{run}#").into_bytes()
}

/// The text of benchmark chat message `id` of measurement `run`.
pub fn marker_text(run: usize, id: usize) -> String {
    format!("lat{run}#{id}#")
}

/// The ids of every `<prefix><id>#` marker in `payload`, in order.
fn markers<'a>(payload: &'a [u8], prefix: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        while let Some(found) = payload[at..]
            .windows(prefix.len())
            .position(|w| w == prefix)
        {
            let digits = at + found + prefix.len();
            let end = payload[digits..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(payload.len(), |n| digits + n);
            at = end;
            if end > digits && payload.get(end) == Some(&b'#') {
                let id = std::str::from_utf8(&payload[digits..end])
                    .ok()?
                    .parse()
                    .ok();
                if id.is_some() {
                    return id;
                }
            }
        }
        None
    })
}

/// First arrival (ns since the Unix epoch, 0 = not yet) of each benchmark message.
pub struct MarkerLog {
    prefix: Vec<u8>,
    first_seen: Mutex<Vec<u64>>,
}

impl MarkerLog {
    /// A log for messages `0..messages` of measurement `run`.
    pub fn new(run: usize, messages: usize) -> Self {
        Self {
            prefix: marker_prefix(run),
            first_seen: Mutex::new(vec![0; messages]),
        }
    }

    pub fn first_seen(&self) -> Vec<u64> {
        lock_or_recover(&self.first_seen).clone()
    }

    /// How many of `ids` have arrived.
    pub fn seen_of(&self, ids: &[usize]) -> usize {
        let seen = lock_or_recover(&self.first_seen);
        ids.iter()
            .filter(|&&id| seen.get(id).is_some_and(|&t| t > 0))
            .count()
    }
}

impl ObjectSink for MarkerLog {
    fn object(
        &self,
        _group: u64,
        _object: u64,
        payload: &Bytes,
        received_ns: u64,
        _in_order: bool,
    ) {
        let mut seen = lock_or_recover(&self.first_seen);
        for id in markers(payload, &self.prefix) {
            if let Some(slot) = seen.get_mut(id) {
                if *slot == 0 {
                    *slot = received_ns;
                }
            }
        }
    }
}

/// One event as a watcher saw it.
#[derive(Clone, Debug)]
pub struct SeenEvent {
    pub received_ns: u64,
    /// `chat`, `reactions`, `viewers`, ...
    pub kind: &'static str,
    /// Reactions counted in a `reactions` event; 1 for any other event.
    pub weight: u64,
}

/// Every event a watcher received, once per `seq`.
#[derive(Default)]
pub struct EventLog {
    inner: Mutex<EventLogInner>,
}

#[derive(Default)]
struct EventLogInner {
    events: Vec<SeenEvent>,
    seqs: HashSet<u64>,
    unreadable: u64,
}

impl EventLog {
    pub fn events(&self) -> Vec<SeenEvent> {
        lock_or_recover(&self.inner).events.clone()
    }

    /// Objects that were not a JSON array of records.
    pub fn unreadable(&self) -> u64 {
        lock_or_recover(&self.inner).unreadable
    }
}

fn kind_of(event: &Event) -> (&'static str, u64) {
    match event {
        Event::Chat { .. } => ("chat", 1),
        Event::Reactions { counts, .. } => ("reactions", counts.values().sum()),
        Event::Viewers { .. } => ("viewers", 1),
        Event::Tip { .. } => ("tip", 1),
        Event::Vote { .. } => ("vote", 1),
        _ => ("other", 1),
    }
}

impl ObjectSink for EventLog {
    fn object(
        &self,
        _group: u64,
        _object: u64,
        payload: &Bytes,
        received_ns: u64,
        _in_order: bool,
    ) {
        let mut inner = lock_or_recover(&self.inner);
        let Ok(records) = serde_json::from_slice::<Vec<Record>>(payload) else {
            inner.unreadable += 1;
            return;
        };
        for record in records {
            let TimelineData::Event(event) = record.data else {
                continue;
            };
            if inner.seqs.insert(event.seq()) {
                let (kind, weight) = kind_of(&event);
                inner.events.push(SeenEvent {
                    received_ns,
                    kind,
                    weight,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_marker_once_in_order() {
        let payload = br#"[{"data":{"text":"lat1#12#","x":"lat1#"}},{"t":"lat1#3#lat1#x#lat0#5#lat1#45"}, "lat1#7#"]"#;
        let prefix = marker_prefix(1);
        assert_eq!(
            markers(payload, &prefix).collect::<Vec<_>>(),
            vec![12, 3, 7]
        );
        assert_eq!(markers(b"", &prefix).count(), 0);
        assert_eq!(marker_text(1, 9).as_bytes(), b"lat1#9#");
    }

    #[test]
    fn marker_log_keeps_the_first_arrival() {
        let log = MarkerLog::new(0, 3);
        log.object(
            1,
            0,
            &Bytes::from_static(b"lat0#1# lat0#9# lat1#0#"),
            100,
            true,
        );
        log.object(1, 1, &Bytes::from_static(b"lat0#1# lat0#2#"), 200, true);
        assert_eq!(log.first_seen(), vec![0, 100, 200]);
        assert_eq!(log.seen_of(&[0, 1, 2]), 2);
    }
}
