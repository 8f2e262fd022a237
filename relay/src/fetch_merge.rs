//! Concurrent FETCH misses for the same range merge into one FETCH at the source (the
//! "cache lock" CDNs use), and its result is kept for a moment so requests arriving just
//! after are answered from it too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use moq_transport::coding::KeyValuePairs;
use moq_transport::data::FetchRecord;
use moq_transport::message::StandaloneFetch;
use moq_transport::session::Subscriber;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::GroupInfo;
use crate::track_io::MAX_OBJECT_BYTES;

/// How long a fetched range is kept for requests arriving just after.
const KEEP_FOR: Duration = Duration::from_secs(2);
/// Most bytes one merged FETCH may hold; a larger range is refused (ask the publisher).
const MAX_FETCH_BYTES: usize = 64 * 1024 * 1024;

/// One object of a fetched range.
pub type FetchedObject = (GroupInfo, u64, Bytes);
type Outcome = Option<Result<Arc<Vec<FetchedObject>>, String>>;

#[derive(Clone, Hash, PartialEq, Eq)]
struct RangeKey {
    namespace: String,
    name: String,
    start: (u64, u64),
    end: (u64, u64),
}

struct Entry {
    outcome: watch::Receiver<Outcome>,
    started: Instant,
}

/// The table of FETCHes in flight (or just done) at sources.
#[derive(Clone, Default)]
pub struct FetchMerger {
    entries: Arc<Mutex<HashMap<RangeKey, Entry>>>,
}

impl FetchMerger {
    /// The objects of `range` from `source`, fetched once for everyone asking at about the
    /// same time. Returns whether this call went to the source, and the outcome.
    pub async fn fetch(
        &self,
        source: Subscriber,
        range: StandaloneFetch,
    ) -> (bool, Result<Arc<Vec<FetchedObject>>, String>) {
        let key = RangeKey {
            namespace: range.track_namespace.to_string(),
            name: range.track_name.to_string(),
            start: (
                range.start_location.group_id,
                range.start_location.object_id,
            ),
            end: (range.end_location.group_id, range.end_location.object_id),
        };
        let (mut outcome, sender) = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.retain(|_, e| e.started.elapsed() < KEEP_FOR || e.outcome.borrow().is_none());
            match entries.get(&key) {
                Some(entry) => (entry.outcome.clone(), None),
                None => {
                    let (tx, rx) = watch::channel(None);
                    entries.insert(
                        key,
                        Entry {
                            outcome: rx.clone(),
                            started: Instant::now(),
                        },
                    );
                    (rx, Some(tx))
                }
            }
        };
        let went = sender.is_some();
        if let Some(sender) = sender {
            let result = fetch_all(source, range).await.map(Arc::new);
            sender.send_replace(Some(result));
        }
        let result = match outcome.wait_for(|o| o.is_some()).await {
            Ok(done) => done.clone().unwrap_or_else(|| Err("no outcome".into())),
            Err(_) => Err("the merged FETCH was abandoned".into()),
        };
        (went, result)
    }
}

/// Reads a whole FETCH response from the source into memory (bounded).
async fn fetch_all(
    mut source: Subscriber,
    range: StandaloneFetch,
) -> Result<Vec<FetchedObject>, String> {
    let mut fetch = source
        .fetch(range, KeyValuePairs::default())
        .await
        .map_err(|e| format!("the source refused the FETCH: {e}"))?;
    fetch
        .ok()
        .await
        .map_err(|e| format!("the source refused the FETCH: {e}"))?;
    let mut objects = Vec::new();
    let mut total = 0usize;
    while let Some(record) = fetch.next().await.map_err(|e| e.to_string())? {
        let FetchRecord::Object(object) = record else {
            continue;
        };
        let mut payload = Vec::new();
        while let Some(chunk) = fetch
            .read_payload_chunk(64 * 1024)
            .await
            .map_err(|e| e.to_string())?
        {
            payload.extend_from_slice(&chunk);
            total += chunk.len();
            if payload.len() > MAX_OBJECT_BYTES || total > MAX_FETCH_BYTES {
                return Err("the fetched range is too large to relay".into());
            }
        }
        let info = GroupInfo {
            group_id: object.group_id,
            subgroup_id: object.subgroup_id.unwrap_or(0),
            priority: object.publisher_priority,
        };
        objects.push((info, object.object_id, Bytes::from(payload)));
    }
    Ok(objects)
}
