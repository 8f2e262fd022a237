//! A broadcast's media clock at the origin: the presentation time of its live edge, so
//! every event can say at which point of the video it happened (`M` in the timeline).
//!
//! The origin follows the broadcast's first video track (else its first media track)
//! through its own relay engine and reads each chunk's `tfdt`; between chunks the clock
//! runs on wall time. The decode time stands in for the presentation time: they differ by
//! the composition offset of B-frames, a frame or two.

use stagecast_proto::sync::lock_or_recover;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moq_transport::coding::TrackNamespace;
use stagecast_media::catalog::{Catalog, CATALOG_TRACK};
use stagecast_media::chunk_decode_time;
use stagecast_relay::cache::FollowStep;
use stagecast_relay::Relay;

/// A clock not fed for this long is stale: the broadcast stopped.
const STALE_AFTER: Duration = Duration::from_secs(5);
/// Pause before following the broadcast again after it ended or failed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
pub struct MediaClock(Arc<Mutex<Option<(u64, Instant)>>>);

impl MediaClock {
    /// The live edge's presentation time in milliseconds, if media is flowing.
    pub fn now_ms(&self) -> Option<u64> {
        let (pts_ms, at) = (*lock_or_recover(&self.0))?;
        let elapsed = at.elapsed();
        (elapsed < STALE_AFTER).then(|| pts_ms + elapsed.as_millis() as u64)
    }

    fn set(&self, pts_ms: u64) {
        *lock_or_recover(&self.0) = Some((pts_ms, Instant::now()));
    }
}

/// Keeps `clock` fed from the broadcast's media for as long as the task runs.
pub async fn run_clock(relay: Relay, namespace: TrackNamespace, clock: MediaClock) {
    loop {
        if let Err(err) = follow_media(&relay, &namespace, &clock).await {
            tracing::debug!(%namespace, %err, "media clock not running");
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn follow_media(
    relay: &Relay,
    namespace: &TrackNamespace,
    clock: &MediaClock,
) -> anyhow::Result<()> {
    let mut catalog = relay.follow(namespace, CATALOG_TRACK).await?;
    let catalog = loop {
        match catalog.follower.next().await {
            FollowStep::Object { payload, .. } => break Catalog::from_json(&payload)?,
            FollowStep::End(_) => anyhow::bail!("the catalog track ended"),
            _ => {}
        }
    };
    let track = catalog
        .tracks
        .iter()
        .filter(|t| t.is_cmaf() && t.timescale.is_some_and(|s| s > 0))
        .min_by_key(|t| !t.is_video())
        .ok_or_else(|| anyhow::anyhow!("the catalog lists no media track with a timescale"))?;
    let timescale = u64::from(track.timescale.unwrap_or(1));
    let mut media = relay.follow(namespace, &track.name).await?;
    loop {
        match media.follower.next().await {
            FollowStep::Object { payload, .. } => {
                if let Some(decode_time) = chunk_decode_time(&payload) {
                    clock.set(decode_time.saturating_mul(1000) / timescale);
                }
            }
            FollowStep::End(_) => return Ok(()),
            _ => {}
        }
    }
}
