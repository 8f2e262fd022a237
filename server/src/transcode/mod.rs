//! Origin transcoding (`--transcode LADDER`): for a broadcast that arrives with one video
//! rendition, the origin makes the ladder itself and serves the rungs inside the same
//! broadcast, through the relay engine's [`ExtraTracks`] hook.
//!
//! - When a broadcast is announced here, the origin starts serving the broadcast's
//!   `catalog` itself: a copy of the publisher's, group for group, so that a viewer's
//!   catalog subscription always lands on the track that will list the ladder (a viewer
//!   who had subscribed to the publisher's own catalog would never hear of the rungs). The
//!   hook also starts it when a catalog subscription arrives first.
//! - On the first catalog, if it lists exactly one video rendition and some rung of the
//!   ladder is no higher than it, and fewer than `--max-transcodes` transcodes run, one
//!   ffmpeg ([`ffmpeg`]) is fed the video's init segment and chunks as they arrive; its
//!   output is ingested (`CmafIngest`) and published (`CmafBroadcast`) into tracks named
//!   after the rungs (`video.240p`). Each output group takes the id of the source group
//!   that starts at the same media time ([`policy::GroupIds`]), so group N of every
//!   rendition starts at the same time. Once the rungs exist, the catalog is published
//!   again, as a new group, listing them as alternates of the source ([`catalog`]).
//! - Past the cap the broadcast stays single-rendition: a warning names it, and
//!   `stagecast_limit_refused_total{limit="transcodes"}` counts it.
//! - An ffmpeg that dies is started again after a bounded backoff
//!   ([`policy::RestartBackoff`], `stagecast_transcode_restarts_total`) from the source's
//!   next group; the rung tracks stay and go on, and the source rendition, served from
//!   the publisher's own track, never depends on the transcoder.
//! - A publisher that comes back (within the relay's resume window) with another video
//!   (a new init segment or picture size) gets a new ffmpeg in the same place under the
//!   cap; the old rung tracks end, since their init segments no longer describe the rungs.
//! - When the publisher's catalog ends, so do the origin's catalog and rungs, and ffmpeg is
//!   stopped (killed with its handle).
//!
//! Broadcasts published inside the origin itself (the demo channel) are not transcoded.

mod catalog;
mod ffmpeg;
pub mod ladder;
mod policy;
mod run;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_transport::coding::TrackNamespace;
use stagecast_cli::broadcast::{CmafBroadcast, ProducerClock};
use stagecast_media::catalog::{Catalog, CatalogTrack, CATALOG_TRACK};
use stagecast_media::chunk_decode_time;
use stagecast_media::ingest::{CmafIngest, IngestEvent};
use stagecast_media::producer_time::{producer_time, ProducerTime};
use stagecast_proto::path::path_from_namespace;
use stagecast_proto::sync::lock_or_recover;
use stagecast_relay::cache::{FollowStep, GroupInfo, TrackCache, TrackEnd};
use stagecast_relay::hooks::ExtraTracks;
use stagecast_relay::router::Source;
use stagecast_relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

pub use ladder::Ladder;
use ladder::Rung;
use policy::{CaptureTimes, GroupIds, RestartBackoff, TranscodeCap};
use run::Transcode;

/// Bytes read from ffmpeg at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Transcoded group numbers whose source id is remembered (ffmpeg's tracks start a group
/// together; a few groups of slack between them is plenty).
const RESOLVED_GROUPS: u64 = 16;

/// What `--transcode` and `--max-transcodes` say.
#[derive(Clone, Debug)]
pub struct TranscodeConfig {
    pub ladder: Ladder,
    pub max_transcodes: usize,
    /// The ffmpeg to run.
    pub ffmpeg: PathBuf,
}

/// The origin's transcoder: the tracks it serves, and the transcodes running.
pub struct Transcoder {
    config: TranscodeConfig,
    relay: OnceLock<Relay>,
    me: Weak<Transcoder>,
    state: Mutex<State>,
}

struct State {
    /// By broadcast path: what the origin serves in that broadcast.
    broadcasts: HashMap<String, Arc<Served>>,
    cap: TranscodeCap,
}

/// The tracks the origin serves inside one broadcast.
struct Served {
    catalog: TrackCache,
    rungs: Mutex<HashMap<String, TrackCache>>,
}

impl Served {
    fn end(&self) {
        self.catalog.end(TrackEnd::Finished);
        self.end_rungs();
    }

    /// Ends the rung tracks (their subscribers see them end, not stall) and forgets them.
    fn end_rungs(&self) {
        for (_, rung) in lock_or_recover(&self.rungs).drain() {
            rung.end(TrackEnd::Finished);
        }
    }
}

/// A transcode running for a broadcast.
struct Running {
    /// Dropped first: the task (and its ffmpeg) stops before the place is given back.
    task: AbortOnDrop,
    rungs: Vec<Rung>,
    /// The source video it was started for: a different one (a publisher back with other
    /// settings) needs a new ffmpeg, fed the new init segment.
    video: CatalogTrack,
    slot: Slot,
}

/// A place under `--max-transcodes`, given back when dropped.
struct Slot(Arc<Transcoder>);

impl Drop for Slot {
    fn drop(&mut self) {
        lock_or_recover(&self.0.state).cap.release();
        if let Some(relay) = self.0.relay.get() {
            relay.metrics().transcodes.dec();
        }
    }
}

/// Aborts a task when dropped, so a transcode never outlives its broadcast.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Transcoder {
    pub fn new(config: TranscodeConfig) -> Arc<Self> {
        let cap = TranscodeCap::new(config.max_transcodes);
        Arc::new_cyclic(|me| Self {
            config,
            relay: OnceLock::new(),
            me: me.clone(),
            state: Mutex::new(State {
                broadcasts: HashMap::new(),
                cap,
            }),
        })
    }

    /// Starts serving broadcasts as `relay` announces them.
    pub fn attach(self: &Arc<Self>, relay: Relay) {
        let mut announced = relay.router().announced();
        let _ = self.relay.set(relay);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let namespaces = announced.borrow_and_update().clone();
                let Some(transcoder) = me.upgrade() else {
                    return;
                };
                for namespace in &namespaces {
                    transcoder.serve(namespace);
                }
                drop(transcoder);
                if announced.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// What the origin serves in `namespace`, started now if it is a broadcast a peer
    /// publishes here and nothing is served for it yet.
    fn serve(&self, namespace: &TrackNamespace) -> Option<Arc<Served>> {
        let relay = self.relay.get()?;
        let path = path_from_namespace(namespace);
        let mut state = lock_or_recover(&self.state);
        if let Some(served) = state.broadcasts.get(&path) {
            return Some(served.clone());
        }
        if !matches!(
            relay.router().route(namespace),
            Some(Source::Session { .. })
        ) {
            return None;
        }
        let me = self.me.upgrade()?;
        let served = Arc::new(Served {
            catalog: TrackCache::new(relay.config().cache),
            rungs: Mutex::default(),
        });
        state.broadcasts.insert(path.clone(), served.clone());
        drop(state);
        let namespace = namespace.clone();
        let broadcast = served.clone();
        tokio::spawn(async move {
            me.run_broadcast(namespace, path, broadcast).await;
        });
        Some(served)
    }

    /// Serves one broadcast's catalog (and through it, its transcode) until the
    /// publisher's catalog ends.
    async fn run_broadcast(
        self: Arc<Self>,
        namespace: TrackNamespace,
        path: String,
        served: Arc<Served>,
    ) {
        if let Err(err) = self.mirror_catalog(&namespace, &path, &served).await {
            tracing::debug!(broadcast = %path, %err, "no catalog to transcode from");
        }
        served.end();
        let mut state = lock_or_recover(&self.state);
        if state
            .broadcasts
            .get(&path)
            .is_some_and(|current| Arc::ptr_eq(current, &served))
        {
            state.broadcasts.remove(&path);
        }
    }

    async fn mirror_catalog(
        &self,
        namespace: &TrackNamespace,
        path: &str,
        served: &Arc<Served>,
    ) -> Result<(), moq_transport::serve::ServeError> {
        let Some(relay) = self.relay.get() else {
            return Ok(());
        };
        let mut followed = relay.follow_published(namespace, CATALOG_TRACK).await?;
        let mut writer = CatalogWriter::new(served.catalog.clone());
        let (made_tx, mut made_rx) = watch::channel::<Option<Catalog>>(None);
        let mut source: Option<Catalog> = None;
        let mut transcode: Option<Running> = None;
        let mut decided = false;
        let mut made_open = true;
        loop {
            tokio::select! {
                step = followed.follower.next() => match step {
                    FollowStep::Object { object_id: 0, payload, .. } => {
                        match Catalog::from_json(&payload) {
                            Ok(catalog) => source = Some(catalog),
                            Err(err) => {
                                tracing::warn!(broadcast = %path, %err, "publisher's catalog unreadable; not transcoding it");
                                continue;
                            }
                        }
                    }
                    FollowStep::End(_) => return Ok(()),
                    _ => continue,
                },
                changed = made_rx.changed(), if made_open => {
                    if changed.is_err() {
                        made_open = false;
                        continue;
                    }
                }
            }
            let Some(current) = &source else {
                continue;
            };
            if !decided {
                decided = true;
                transcode = self.start(namespace, path, current, served, made_tx.clone(), None);
            } else if let Some(running) = transcode.take_if(|running| {
                !catalog::same_video(&running.video, catalog::single_video(current))
            }) {
                tracing::info!(broadcast = %path, "the source's video changed; transcoding it again");
                let Running { task, slot, .. } = running;
                drop(task);
                served.end_rungs();
                made_tx.send_replace(None);
                // The place is kept for the broadcast, not taken again (it could be
                // lost to another broadcast in between).
                transcode = self.start(
                    namespace,
                    path,
                    current,
                    served,
                    made_tx.clone(),
                    Some(slot),
                );
            }
            let published = match (&transcode, made_rx.borrow().as_ref()) {
                (Some(running), Some(made)) => {
                    catalog::ladder_catalog(current, made, &running.rungs)
                }
                _ => None,
            };
            writer.publish(published.as_ref().unwrap_or(current));
        }
    }

    /// Decides whether `catalog`'s broadcast is transcoded, and starts it if so, in
    /// `slot` if the broadcast holds one already (else it takes one, if one is free).
    fn start(
        &self,
        namespace: &TrackNamespace,
        path: &str,
        catalog: &Catalog,
        served: &Arc<Served>,
        made: watch::Sender<Option<Catalog>>,
        slot: Option<Slot>,
    ) -> Option<Running> {
        let relay = self.relay.get()?;
        let Some(video) = catalog::single_video(catalog) else {
            tracing::info!(broadcast = %path, "not transcoded: the broadcast has no single video rendition");
            return None;
        };
        let height = video.height?;
        let rungs = self.config.ladder.for_source(height);
        if rungs.is_empty() {
            tracing::info!(broadcast = %path, height, ladder = %self.config.ladder, "not transcoded: every rung is above the source");
            return None;
        }
        let slot = match slot {
            Some(slot) => slot,
            None => self.take_slot(path)?,
        };
        let source_width = video.width.unwrap_or(0);
        let labels: Vec<String> = rungs
            .iter()
            .map(|r| {
                format!(
                    "{}x{}@{}k",
                    r.width_for(source_width, height),
                    r.height,
                    r.bitrate / 1000
                )
            })
            .collect();
        tracing::info!(broadcast = %path, source = %video.name, height, rungs = ?labels, "transcoding");
        let job = Transcode {
            relay: relay.clone(),
            namespace: namespace.clone(),
            path: path.to_string(),
            video: video.clone(),
            rungs: rungs.clone(),
            served: served.clone(),
            made,
            ffmpeg: self.config.ffmpeg.clone(),
        };
        let task = tokio::spawn(job.run());
        Some(Running {
            task: AbortOnDrop(task),
            rungs,
            video: video.clone(),
            slot,
        })
    }

    /// A place under `--max-transcodes` for broadcast `path`, if one is free; a refusal
    /// is logged and counted.
    fn take_slot(&self, path: &str) -> Option<Slot> {
        let relay = self.relay.get()?;
        let mut state = lock_or_recover(&self.state);
        let taken = state.cap.try_take();
        let running = state.cap.running();
        drop(state);
        if !taken {
            relay.metrics().limits_refused.inc("transcodes");
            tracing::warn!(
                broadcast = %path,
                running,
                max = self.config.max_transcodes,
                "transcode refused: --max-transcodes reached; the broadcast stays single-rendition"
            );
            return None;
        }
        relay.metrics().transcodes.inc();
        Some(Slot(self.me.upgrade()?))
    }
}

impl ExtraTracks for Transcoder {
    fn track(&self, namespace: &TrackNamespace, name: &str) -> Option<TrackCache> {
        if name == CATALOG_TRACK {
            return self.serve(namespace).map(|served| served.catalog.clone());
        }
        let path = path_from_namespace(namespace);
        let served = lock_or_recover(&self.state).broadcasts.get(&path)?.clone();
        let rungs = lock_or_recover(&served.rungs);
        rungs.get(name).cloned()
    }
}

/// Publishes catalogs as groups of one object (MSF: every catalog group is whole and
/// independent), skipping one equal to the last.
struct CatalogWriter {
    cache: TrackCache,
    next_group: u64,
    last: Option<Bytes>,
}

impl CatalogWriter {
    fn new(cache: TrackCache) -> Self {
        // Wall-clock milliseconds, as the publishing pipeline numbers groups (MSF).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            cache,
            next_group: u64::try_from(now.as_millis()).unwrap_or(0),
            last: None,
        }
    }

    fn publish(&mut self, catalog: &Catalog) {
        let json = Bytes::from(catalog.to_json());
        if self.last.as_ref() == Some(&json) {
            return;
        }
        let info = GroupInfo {
            group_id: self.next_group,
            subgroup_id: 0,
            priority: 0,
        };
        self.next_group += 1;
        let result = self.cache.begin_group(info).and_then(|seq| {
            let pushed = self.cache.push_object(seq, 0, json.clone());
            self.cache.end_group(seq);
            pushed
        });
        match result {
            Ok(()) => self.last = Some(json),
            Err(err) => tracing::warn!(%err, "cannot publish the transcoded catalog"),
        }
    }
}
