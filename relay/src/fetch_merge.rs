//! FETCHes in flight at this node, and their bounds.
//!
//! - Concurrent FETCH misses for the same range merge into one FETCH at the source (the
//!   "cache lock" CDNs use), and its result is kept for a moment so requests arriving just
//!   after are answered from it too.
//! - What a FETCH reads from its source is held outside the track caches, so it is charged
//!   to the same byte budget ([`BudgetCharge`]) as it arrives, at its cost (payload plus
//!   [`OBJECT_OVERHEAD_BYTES`] per object), up to [`FetchLimits::max_bytes`] (and all
//!   FETCHes together to a quarter of the budget, so they never squeeze out live groups:
//!   [`CHARGE_SHARE`](crate::cache::budget::CHARGE_SHARE)); it is given
//!   back when the last request answered from it is done with it. Payloads stay the
//!   `Bytes` the transport handed over (one chunk, as objects usually arrive, is kept as
//!   is) and are shared, never copied, by every response.
//! - A session may have at most [`FetchLimits::per_session`] FETCHes being served at once
//!   ([`FetchMerger::begin`]).
//! - A range is cut to [`FetchLimits::max_groups`] groups ([`clamp_range`]) before
//!   anything looks at it, so a FETCH of groups `0..u64::MAX` costs what one of that many
//!   groups does: a standalone FETCH keeps its start, a Joining FETCH its end (next to
//!   its subscription).

use stagecast_proto::sync::lock_or_recover;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use moq_transport::coding::{KeyValuePairs, Location};
use moq_transport::data::FetchRecord;
use moq_transport::message::StandaloneFetch;
use moq_transport::session::Subscriber;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::budget::{BudgetCharge, CacheBudget};
use crate::cache::{GroupInfo, OBJECT_OVERHEAD_BYTES};
use crate::router::SessionId;
use crate::track_io::MAX_OBJECT_BYTES;

/// How long a fetched range is kept for requests arriving just after.
const KEEP_FOR: Duration = Duration::from_secs(2);
/// How long the source has to answer a FETCH (FETCH_OK or REQUEST_ERROR).
const SOURCE_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`FetchLimits::max_bytes`] (`--max-fetch-bytes`).
pub const DEFAULT_MAX_FETCH_BYTES: usize = 64 * 1024 * 1024;
/// Default of [`FetchLimits::per_session`] (`--max-fetches-per-session`).
pub const DEFAULT_FETCHES_PER_SESSION: usize = 8;
/// Default of [`FetchLimits::max_groups`] (`--max-fetch-groups`).
pub const DEFAULT_MAX_FETCH_GROUPS: u64 = 256;

/// Bounds on FETCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// FETCHes one session may have served at once; more are refused (EXCESSIVE_LOAD).
    pub per_session: usize,
    /// Groups one FETCH may span; a longer range is cut to this.
    pub max_groups: u64,
    /// Bytes one FETCH may read from its source (also charged to the cache budget).
    pub max_bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            per_session: DEFAULT_FETCHES_PER_SESSION,
            max_groups: DEFAULT_MAX_FETCH_GROUPS,
            max_bytes: DEFAULT_MAX_FETCH_BYTES,
        }
    }
}

/// Why a FETCH could not be served from its source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the source refused the FETCH: {0}")]
    Refused(String),
    #[error("the FETCH from the source broke off: {0}")]
    Broken(String),
    #[error("the fetched range is larger than {0} bytes; ask for less")]
    TooLarge(usize),
    #[error("the relay's cache budget has no room for the fetched range now")]
    BudgetFull,
    #[error("the merged FETCH was abandoned")]
    Abandoned,
}

impl FetchError {
    /// The name of the limit that refused, for `stagecast_limit_refused_total`.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            FetchError::TooLarge(_) => Some("fetch_bytes"),
            FetchError::BudgetFull => Some("fetch_budget"),
            _ => None,
        }
    }
}

/// Which end of a long range [`clamp_range`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// A standalone FETCH: the groups from its start (FETCH_OK's end location says where
    /// the answer stops, so the requester can ask for the rest).
    Start,
    /// A Joining FETCH: the groups just before its end, where the subscription begins.
    End,
}

/// The range `start..end` cut to at most `max_groups` groups (draft-18 encoding: an end
/// object of 0 means through the whole end group), keeping the end `keep` says; `None`
/// if it spans no more than that already.
pub fn clamp_range(
    start: Location,
    end: Location,
    max_groups: u64,
    keep: Keep,
) -> Option<(Location, Location)> {
    let span = max_groups.max(1) - 1;
    if end.group_id.saturating_sub(start.group_id) <= span {
        return None;
    }
    Some(match keep {
        Keep::Start => (start, Location::new(start.group_id + span, 0)),
        Keep::End => (Location::new(end.group_id - span, 0), end),
    })
}

/// One object of a fetched range.
pub type FetchedObject = (GroupInfo, u64, Bytes);

/// A range read from a source: its objects, and their charge to the cache budget, given
/// back when the last holder drops it.
pub struct FetchedRange {
    pub objects: Vec<FetchedObject>,
    _charge: BudgetCharge,
}

/// Builds a [`FetchedRange`] object by object, charging the budget as bytes arrive.
pub struct RangeReader {
    objects: Vec<FetchedObject>,
    charge: BudgetCharge,
    max_bytes: usize,
    /// The object being read: its identity and chunks so far.
    current: Option<(GroupInfo, u64, Vec<Bytes>, usize)>,
}

impl RangeReader {
    /// A reader charging `budget`; `Err(BudgetFull)` if it has no room at all.
    pub fn new(budget: &Arc<CacheBudget>, max_bytes: usize) -> Result<Self, FetchError> {
        Ok(Self {
            objects: Vec::new(),
            charge: budget.charge(0).ok_or(FetchError::BudgetFull)?,
            max_bytes,
            current: None,
        })
    }

    fn reserve(&mut self, bytes: usize) -> Result<(), FetchError> {
        if self.charge.bytes().saturating_add(bytes) > self.max_bytes {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        if !self.charge.grow(bytes) {
            return Err(FetchError::BudgetFull);
        }
        Ok(())
    }

    /// An object starts (the previous one, if any, is finished).
    pub fn begin_object(&mut self, info: GroupInfo, object_id: u64) -> Result<(), FetchError> {
        self.finish_object();
        self.reserve(OBJECT_OVERHEAD_BYTES)?;
        self.current = Some((info, object_id, Vec::new(), 0));
        Ok(())
    }

    /// A chunk of the current object's payload.
    pub fn chunk(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        let size = self.current.as_ref().map_or(0, |(_, _, _, size)| *size);
        if size.saturating_add(chunk.len()) > MAX_OBJECT_BYTES {
            return Err(FetchError::TooLarge(MAX_OBJECT_BYTES));
        }
        self.reserve(chunk.len())?;
        if let Some((_, _, chunks, size)) = &mut self.current {
            *size += chunk.len();
            chunks.push(chunk);
        }
        Ok(())
    }

    fn finish_object(&mut self) {
        if let Some((info, object_id, mut chunks, size)) = self.current.take() {
            // Objects usually arrive in one chunk: keep that buffer rather than copy.
            let payload = match chunks.len() {
                0 => Bytes::new(),
                1 => chunks.pop().unwrap_or_default(),
                _ => {
                    let mut joined = BytesMut::with_capacity(size);
                    for chunk in &chunks {
                        joined.extend_from_slice(chunk);
                    }
                    joined.freeze()
                }
            };
            self.objects.push((info, object_id, payload));
        }
    }

    /// The whole range, still charged.
    pub fn finish(mut self) -> FetchedRange {
        self.finish_object();
        FetchedRange {
            objects: self.objects,
            _charge: self.charge,
        }
    }
}

type Outcome = Option<Result<Arc<FetchedRange>, FetchError>>;

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

/// The FETCHes in flight (or just done) at sources, and the count being served per
/// session.
#[derive(Clone)]
pub struct FetchMerger {
    entries: Arc<Mutex<HashMap<RangeKey, Entry>>>,
    sessions: Arc<Mutex<HashMap<SessionId, usize>>>,
    budget: Arc<CacheBudget>,
    limits: FetchLimits,
}

impl Default for FetchMerger {
    fn default() -> Self {
        Self::new(CacheBudget::new(usize::MAX), FetchLimits::default())
    }
}

/// One FETCH being served for a session; dropping it frees the session's slot.
pub struct FetchPermit {
    sessions: Arc<Mutex<HashMap<SessionId, usize>>>,
    session: SessionId,
}

impl Drop for FetchPermit {
    fn drop(&mut self) {
        let mut sessions = lock_or_recover(&self.sessions);
        if let Some(count) = sessions.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                sessions.remove(&self.session);
            }
        }
    }
}

impl FetchMerger {
    /// Charges fetched data to `budget` (the caches' budget), within `limits`.
    pub fn new(budget: Arc<CacheBudget>, limits: FetchLimits) -> Self {
        Self {
            entries: Arc::default(),
            sessions: Arc::default(),
            budget,
            limits,
        }
    }

    pub fn limits(&self) -> FetchLimits {
        self.limits
    }

    /// A slot for one more FETCH of `session`, or `None` if it has
    /// [`FetchLimits::per_session`] being served already.
    pub fn begin(&self, session: SessionId) -> Option<FetchPermit> {
        let mut sessions = lock_or_recover(&self.sessions);
        let count = sessions.entry(session).or_default();
        if *count >= self.limits.per_session {
            return None;
        }
        *count += 1;
        Some(FetchPermit {
            sessions: self.sessions.clone(),
            session,
        })
    }

    /// The objects of `range` from `source`, fetched once for everyone asking at about the
    /// same time. Returns whether this call went to the source, and the outcome.
    pub async fn fetch(
        &self,
        source: Subscriber,
        range: StandaloneFetch,
    ) -> (bool, Result<Arc<FetchedRange>, FetchError>) {
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
            let mut entries = lock_or_recover(&self.entries);
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
            let result = self.fetch_all(source, range).await.map(Arc::new);
            sender.send_replace(Some(result));
        }
        let result = match outcome.wait_for(|o| o.is_some()).await {
            Ok(done) => done.clone().unwrap_or(Err(FetchError::Abandoned)),
            Err(_) => Err(FetchError::Abandoned),
        };
        (went, result)
    }

    /// Reads a whole FETCH response from the source, charged and bounded.
    async fn fetch_all(
        &self,
        mut source: Subscriber,
        range: StandaloneFetch,
    ) -> Result<FetchedRange, FetchError> {
        let mut reader = RangeReader::new(&self.budget, self.limits.max_bytes)?;
        let mut fetch = source
            .fetch(range, KeyValuePairs::default())
            .await
            .map_err(|e| FetchError::Refused(e.to_string()))?;
        // A source that never answers must not hold the requesters' FETCH slots.
        tokio::time::timeout(SOURCE_ANSWER_TIMEOUT, fetch.ok())
            .await
            .map_err(|_| FetchError::Refused("no answer in time".into()))?
            .map_err(|e| FetchError::Refused(e.to_string()))?;
        let broken = |e: moq_transport::session::SessionError| FetchError::Broken(e.to_string());
        while let Some(record) = fetch.next().await.map_err(broken)? {
            let FetchRecord::Object(object) = record else {
                continue;
            };
            let info = GroupInfo {
                group_id: object.group_id,
                subgroup_id: object.subgroup_id.unwrap_or(0),
                priority: object.publisher_priority,
            };
            reader.begin_object(info, object.object_id)?;
            while let Some(chunk) = fetch.read_payload_chunk(64 * 1024).await.map_err(broken)? {
                reader.chunk(chunk)?;
            }
        }
        Ok(reader.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group_id: u64) -> GroupInfo {
        GroupInfo {
            group_id,
            subgroup_id: 0,
            priority: 0,
        }
    }

    fn groups(range: Option<(Location, Location)>) -> Option<(u64, u64, u64, u64)> {
        range.map(|(s, e)| (s.group_id, s.object_id, e.group_id, e.object_id))
    }

    #[test]
    fn a_huge_range_is_clamped_to_max_groups_at_the_end_that_matters() {
        let all = (Location::new(0, 0), Location::new(u64::MAX, 0));
        assert_eq!(
            groups(clamp_range(all.0, all.1, 256, Keep::Start)),
            Some((0, 0, 255, 0))
        );
        // A Joining FETCH keeps the groups just before the live edge.
        let join = (Location::new(0, 0), Location::new(1_000_000, 7));
        assert_eq!(
            groups(clamp_range(join.0, join.1, 256, Keep::End)),
            Some((999_745, 0, 1_000_000, 7))
        );
        // Near the top of the range: no overflow.
        let top = (Location::new(u64::MAX - 1, 3), Location::new(u64::MAX, 9));
        assert_eq!(clamp_range(top.0, top.1, 256, Keep::Start), None);
        assert_eq!(
            clamp_range(Location::new(10, 0), Location::new(12, 5), 256, Keep::Start),
            None
        );
        // max_groups 0 still allows one group.
        assert_eq!(
            groups(clamp_range(
                Location::new(10, 2),
                Location::new(12, 5),
                0,
                Keep::Start
            )),
            Some((10, 2, 10, 0))
        );
    }

    #[test]
    fn fetched_bytes_are_charged_to_the_budget_until_the_range_is_dropped() {
        let budget = CacheBudget::new(200_000);
        let mut reader = RangeReader::new(&budget, usize::MAX).unwrap();
        reader.begin_object(info(1), 0).unwrap();
        reader.chunk(Bytes::from(vec![1u8; 30_000])).unwrap();
        reader.begin_object(info(1), 1).unwrap();
        reader.chunk(Bytes::from(vec![2u8; 10_000])).unwrap();
        let range = Arc::new(reader.finish());
        assert_eq!(budget.used(), 40_000 + 2 * OBJECT_OVERHEAD_BYTES);
        let second_holder = range.clone();
        drop(range);
        assert_eq!(budget.used(), 40_000 + 2 * OBJECT_OVERHEAD_BYTES);
        drop(second_holder);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_range_past_the_budget_or_the_fetch_limit_is_refused_and_gives_back() {
        // Charges may hold a quarter of the budget: 50,000.
        let budget = CacheBudget::new(200_000);
        let mut reader = RangeReader::new(&budget, usize::MAX).unwrap();
        reader.begin_object(info(1), 0).unwrap();
        reader.chunk(Bytes::from(vec![0u8; 40_000])).unwrap();
        assert_eq!(
            reader.chunk(Bytes::from(vec![0u8; 40_000])),
            Err(FetchError::BudgetFull)
        );
        drop(reader);
        assert_eq!(budget.used(), 0);
        let mut reader = RangeReader::new(&budget, 10_000).unwrap();
        reader.begin_object(info(1), 0).unwrap();
        let err = reader.chunk(Bytes::from(vec![0u8; 20_000])).unwrap_err();
        assert_eq!(err, FetchError::TooLarge(10_000));
        assert_eq!(err.limit(), Some("fetch_bytes"));
    }

    #[test]
    fn payloads_are_shared_not_copied() {
        let budget = CacheBudget::new(usize::MAX);
        let mut reader = RangeReader::new(&budget, usize::MAX).unwrap();
        let payload = Bytes::from(vec![7u8; 1000]);
        reader.begin_object(info(1), 0).unwrap();
        reader.chunk(payload.clone()).unwrap();
        reader.begin_object(info(1), 1).unwrap();
        reader.chunk(Bytes::from_static(b"ab")).unwrap();
        reader.chunk(Bytes::from_static(b"cd")).unwrap();
        let range = reader.finish();
        assert_eq!(
            range.objects[0].2.as_ptr(),
            payload.as_ptr(),
            "one chunk kept as is"
        );
        assert_eq!(&range.objects[1].2[..], b"abcd");
    }

    #[test]
    fn a_session_gets_per_session_fetches_at_once_and_a_slot_back_when_one_ends() {
        let merger = FetchMerger::new(
            CacheBudget::new(usize::MAX),
            FetchLimits {
                per_session: 2,
                ..FetchLimits::default()
            },
        );
        let first = merger.begin(1).unwrap();
        let _second = merger.begin(1).unwrap();
        assert!(merger.begin(1).is_none(), "a third at once is refused");
        let _other = merger.begin(2).expect("another session has its own slots");
        drop(first);
        assert!(merger.begin(1).is_some());
        drop(merger.begin(1));
        let sessions = merger.sessions.lock().unwrap();
        assert_eq!(sessions.get(&1), Some(&1));
    }
}
