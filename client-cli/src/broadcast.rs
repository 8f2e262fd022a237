//! Maps CMAF ingest output onto a MoQ broadcast published in this process (MSF/CMSF):
//! a `catalog` track whose every group holds the whole catalog JSON as object 0, and one
//! track per media track whose groups start where the ingest says (a GOP per group for
//! video), one object per CMAF chunk.
//!
//! Group ids start at the wall-clock time in milliseconds (MSF "Group numbering"), so a
//! publisher that restarts continues above its previous groups. A media group's id is that
//! base plus the ingest's group number ([`MediaObject::group`]), which alternates share:
//! group N of every rendition of a ladder starts at the same media time, so a viewer can
//! switch renditions at any group boundary. The catalog track counts its own groups.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_transport::coding::TrackNamespace;
use stagecast_media::catalog::{Catalog, CatalogTrack, CATALOG_TRACK};
use stagecast_media::ingest::{IngestEvent, MediaObject};
use stagecast_media::producer_time::{with_producer_time, ProducerTime};
use stagecast_proto::interaction::{EVENT_TYPE, INTERACTION_TRACK};
use stagecast_relay::cache::{CacheLimits, GroupInfo, TrackCache, TrackEnd};
use stagecast_relay::local::LocalBroadcast;

/// Publisher priorities (lower is sent first): the catalog, then audio, then video, so a
/// congested link keeps sound and the ability to start playing.
const CATALOG_PRIORITY: u8 = 0;
const AUDIO_PRIORITY: u8 = 1;
const VIDEO_PRIORITY: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("media object for track {0:?}, which the catalog does not list")]
    UnknownTrack(String),
    #[error("the first object of track {0:?} does not start a group")]
    NoGroupStart(String),
    #[error("track {track:?}: group number {group} does not follow group {previous}")]
    GroupOrder {
        track: String,
        group: u64,
        previous: u64,
    },
    #[error("cache refused the object: {0}")]
    Cache(#[from] stagecast_relay::cache::CacheError),
}

struct TrackState {
    cache: TrackCache,
    priority: u8,
    /// Video chunks carry the producer's wall clock in front (glass-to-glass latency).
    stamped: bool,
    /// The id the next group gets unless the caller names one; always above the last.
    next_group_id: u64,
    open: Option<OpenGroup>,
}

struct OpenGroup {
    seq: u64,
    next_object_id: u64,
}

impl TrackState {
    fn new(cache: TrackCache, priority: u8, first_group_id: u64) -> Self {
        Self {
            cache,
            priority,
            stamped: priority == VIDEO_PRIORITY,
            next_group_id: first_group_id,
            open: None,
        }
    }

    /// Ends the open group and begins group `group_id`, which must be above every id
    /// this track used (MSF: group ids increase).
    fn start_group(&mut self, group_id: u64) -> Result<(), BroadcastError> {
        if let Some(open) = self.open.take() {
            self.cache.end_group(open.seq);
        }
        let seq = self.cache.begin_group(GroupInfo {
            group_id,
            subgroup_id: 0,
            priority: self.priority,
        })?;
        self.next_group_id = group_id.saturating_add(1);
        self.open = Some(OpenGroup {
            seq,
            next_object_id: 0,
        });
        Ok(())
    }

    fn push(&mut self, payload: Bytes) -> Result<(), BroadcastError> {
        let open = self.open.as_mut().ok_or(BroadcastError::Cache(
            stagecast_relay::cache::CacheError::Ended,
        ))?;
        self.cache
            .push_object(open.seq, open.next_object_id, payload)?;
        open.next_object_id += 1;
        Ok(())
    }

    fn finish(&mut self) {
        if let Some(open) = self.open.take() {
            self.cache.end_group(open.seq);
        }
        self.cache.end(TrackEnd::Finished);
    }
}

/// Where the wall-clock time in front of each video chunk comes from (a `prft`, which
/// viewers read to show glass-to-glass latency: `media/src/producer_time.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProducerClock {
    /// The encoder's own `prft` when the input has one (ffmpeg `-write_prft wallclock`),
    /// else the time the chunk is published: for a live pipe.
    #[default]
    Encoder,
    /// The time the chunk is published: for a file paced as live, whose `prft`s (if any)
    /// are from when it was made.
    Publishing,
}

/// A CMAF broadcast being published into a [`LocalBroadcast`].
pub struct CmafBroadcast {
    broadcast: LocalBroadcast,
    limits: CacheLimits,
    first_group_id: u64,
    catalog: Option<TrackState>,
    tracks: HashMap<String, TrackState>,
    /// The catalog published last, so an identical one (a looped file) is not re-sent.
    current_catalog: Option<Bytes>,
    /// Whether the catalog lists the origin's `interaction` track.
    interaction: bool,
    clock: ProducerClock,
    pub stats: BroadcastStats,
}

/// Running totals, for progress displays.
#[derive(Clone, Copy, Debug, Default)]
pub struct BroadcastStats {
    pub objects: u64,
    pub groups: u64,
    pub bytes: u64,
    /// Media time of the newest object, in seconds.
    pub media_time: f64,
}

impl CmafBroadcast {
    pub fn new(namespace: TrackNamespace, limits: CacheLimits) -> Self {
        let first_group_id = since_unix_epoch().as_millis() as u64;
        let broadcast = LocalBroadcast::new(namespace);
        // The catalog track exists from the start, so a subscriber that arrives before the
        // publisher's first bytes waits for the catalog instead of being told "not found".
        let catalog_cache = broadcast.create_track(CATALOG_TRACK, limits);
        Self {
            broadcast,
            limits,
            first_group_id,
            catalog: Some(TrackState::new(
                catalog_cache,
                CATALOG_PRIORITY,
                first_group_id,
            )),
            tracks: HashMap::new(),
            current_catalog: None,
            interaction: true,
            clock: ProducerClock::default(),
            stats: BroadcastStats::default(),
        }
    }

    /// Leaves the origin's `interaction` track out of the catalog (a broadcast published
    /// to relays without an interaction authority).
    pub fn without_interaction(mut self) -> Self {
        self.interaction = false;
        self
    }

    /// Numbers media groups from `first_group_id` (group id = it + the ingest's group
    /// number) instead of the wall clock: for a publisher whose group numbers are given in
    /// another broadcast's ids (the origin's transcoder, whose renditions take the ids of
    /// the source's groups).
    pub fn with_first_group_id(mut self, first_group_id: u64) -> Self {
        self.first_group_id = first_group_id;
        self
    }

    /// Where video chunks' wall-clock times come from.
    pub fn with_producer_clock(mut self, clock: ProducerClock) -> Self {
        self.clock = clock;
        self
    }

    /// The broadcast, to register with a relay's router.
    pub fn broadcast(&self) -> &LocalBroadcast {
        &self.broadcast
    }

    pub fn apply(&mut self, event: IngestEvent) -> Result<(), BroadcastError> {
        match event {
            IngestEvent::Catalog(catalog) => self.publish_catalog(&catalog),
            IngestEvent::Object(object) => self.publish_object(object),
        }
    }

    fn publish_catalog(&mut self, catalog: &Catalog) -> Result<(), BroadcastError> {
        let mut catalog = catalog.clone();
        if self.interaction && catalog.track(INTERACTION_TRACK).is_none() {
            // Served by the origin, not by this publisher (docs/interaction.md §2).
            let media: Vec<&str> = catalog.tracks.iter().map(|t| t.name.as_str()).collect();
            let timeline = CatalogTrack::event_timeline(INTERACTION_TRACK, EVENT_TYPE, &media);
            catalog.tracks.push(timeline);
        }
        let json = Bytes::from(catalog.to_json());
        if self.current_catalog.as_ref() == Some(&json) {
            return Ok(());
        }
        for track in &catalog.tracks {
            if !track.is_cmaf() || self.tracks.contains_key(&track.name) {
                continue;
            }
            let priority = if track.is_video() {
                VIDEO_PRIORITY
            } else {
                AUDIO_PRIORITY
            };
            let cache = self.broadcast.create_track(&track.name, self.limits);
            self.tracks.insert(
                track.name.clone(),
                TrackState::new(cache, priority, self.first_group_id),
            );
        }
        let catalog_track = self.catalog.get_or_insert_with(|| {
            let cache = self.broadcast.create_track(CATALOG_TRACK, self.limits);
            TrackState::new(cache, CATALOG_PRIORITY, self.first_group_id)
        });
        let catalog_group = catalog_track.next_group_id;
        catalog_track.start_group(catalog_group)?;
        catalog_track.push(json.clone())?;
        // Ended at once: the catalog group is whole, and stays cached as the newest.
        if let Some(open) = catalog_track.open.take() {
            catalog_track.cache.end_group(open.seq);
        }
        self.current_catalog = Some(json);
        Ok(())
    }

    fn publish_object(&mut self, object: MediaObject) -> Result<(), BroadcastError> {
        let track = self
            .tracks
            .get_mut(&object.track)
            .ok_or_else(|| BroadcastError::UnknownTrack(object.track.clone()))?;
        if object.starts_group {
            let group_id = self.first_group_id.saturating_add(object.group);
            if group_id < track.next_group_id {
                // The ingest numbers each track's groups increasingly; a repeat would
                // make the cache refuse the group or mix two GOPs under one id.
                return Err(BroadcastError::GroupOrder {
                    track: object.track,
                    group: object.group,
                    previous: (track.next_group_id - 1).saturating_sub(self.first_group_id),
                });
            }
            track.start_group(group_id)?;
            self.stats.groups += 1;
        } else if track.open.is_none() {
            return Err(BroadcastError::NoGroupStart(object.track));
        }
        self.stats.objects += 1;
        self.stats.media_time = self.stats.media_time.max(object.media_time_secs());
        let payload = if track.stamped {
            let time = match (self.clock, object.producer_time) {
                (ProducerClock::Encoder, Some(time)) => time,
                _ => ProducerTime::from_unix(since_unix_epoch(), object.decode_time),
            };
            with_producer_time(&object.payload, object.track_id, time)
        } else {
            object.payload
        };
        self.stats.bytes += payload.len() as u64;
        track.push(payload)
    }

    /// Ends every track cleanly: subscribers receive the last groups whole, then the end.
    pub fn finish(&mut self) {
        for track in self.tracks.values_mut() {
            track.finish();
        }
        if let Some(catalog) = &mut self.catalog {
            catalog.finish();
        }
    }
}

/// The wall clock now (zero on a clock set before 1970).
fn since_unix_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
