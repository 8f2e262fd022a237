//! The demo channel: a short H.264 + AAC clip built into the binary, published on
//! `demo/live` in a loop as if live, so a newcomer sees something play at once.
//!
//! It goes through the same CMAF publisher as `stagecast publish --file --loop`.

use stagecast_cli::broadcast::{CmafBroadcast, ProducerClock};
use stagecast_cli::pacing::Pacer;
use stagecast_media::ingest::{CmafIngest, IngestEvent};
use stagecast_proto::path::namespace_from_path;
use stagecast_relay::router::{Owner, Source};
use stagecast_relay::Relay;

pub const DEMO_BROADCAST: &str = "demo/live";
/// The clip (see `media/assets/README.md` for the ffmpeg command that made it).
const DEMO_CLIP: &[u8] = include_bytes!("../../media/assets/demo.mp4");
/// Bytes handed to ingest at a time, as if read from a pipe.
const FEED_CHUNK: usize = 16 * 1024;

/// Publishes the demo channel until the process ends.
pub async fn run_demo(relay: Relay) -> anyhow::Result<()> {
    let namespace = namespace_from_path(DEMO_BROADCAST)?;
    let mut broadcast = CmafBroadcast::new(namespace.clone(), relay.config().cache)
        .with_producer_clock(ProducerClock::Publishing);
    let _route = relay.router().register(
        namespace,
        Source::Local(broadcast.broadcast().clone()),
        Owner::Local,
    )?;
    let mut ingest = CmafIngest::new();
    let mut pacer = Pacer::default();
    tracing::info!(broadcast = DEMO_BROADCAST, "demo channel live");
    loop {
        for chunk in DEMO_CLIP.chunks(FEED_CHUNK) {
            for event in ingest.push(chunk)? {
                if let IngestEvent::Object(object) = &event {
                    pacer.wait(object.media_time_secs()).await;
                }
                broadcast.apply(event)?;
            }
        }
        for event in ingest.finish()? {
            broadcast.apply(event)?;
        }
        ingest.begin_loop();
    }
}
