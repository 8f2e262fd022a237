//! The origin's own options (besides every node's): guests, development credits, and the
//! bounds of interaction. Each has a default, a flag and an environment variable (so the
//! config file sets it too).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use stagecast_proto::address_limit::Rate;
use stagecast_proto::duration::parse_duration;

use crate::interaction::authority::{ChannelLimits, DEFAULT_REACTIONS};
use crate::transcode::{Ladder, TranscodeConfig};

#[derive(Args, Debug, Clone)]
pub struct OriginArgs {
    /// Channels under these path prefixes hand out development credits to anyone who asks
    /// (repeat or comma-separate; "" for every channel). Credits got this way are spent
    /// only in those channels. Default: the demo channel while it runs, nothing else.
    #[arg(long, env = "STAGECAST_DEV_CREDITS", value_delimiter = ',')]
    pub dev_credits: Option<Vec<String>>,
    /// No development credits anywhere, the demo channel included.
    #[arg(long, env = "STAGECAST_NO_DEV_CREDITS", conflicts_with = "dev_credits")]
    pub no_dev_credits: bool,
    /// Turn off `POST /api/guest`: only viewers with a token may chat, vote or tip.
    #[arg(long, env = "STAGECAST_NO_GUESTS")]
    pub no_guests: bool,
    /// Guest sign-ins one client address (an IPv6 /64) may make at once.
    #[arg(long, env = "STAGECAST_GUEST_BURST", default_value_t = 5)]
    pub guest_burst: u32,
    /// Guest sign-ins an address gets back per minute after its burst.
    #[arg(long, env = "STAGECAST_GUEST_PER_MINUTE", default_value_t = 6)]
    pub guest_per_minute: u32,
    /// The reactions viewers may send (comma-separated); default the viewer page's buttons.
    #[arg(long, env = "STAGECAST_REACTIONS", value_delimiter = ',')]
    pub reactions: Option<Vec<String>>,
    /// Interaction channels open at once (one per live broadcast that someone uses).
    #[arg(long, env = "STAGECAST_MAX_CHANNELS", default_value_t = 1024)]
    pub max_channels: usize,
    /// An interaction stream that sends nothing for this long after its hello is closed.
    #[arg(long, env = "STAGECAST_INTERACTION_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub interaction_idle_timeout: Duration,
    /// Make a ladder for every broadcast that arrives with one video rendition: rungs
    /// `HEIGHTp:BITRATE` (k or M suffix), comma-separated, e.g. `480p:1200k,240p:400k`, or
    /// `default` (720p:2500k,480p:1200k,240p:400k). Rungs above the source are skipped.
    #[arg(long, env = "STAGECAST_TRANSCODE")]
    pub transcode: Option<Ladder>,
    /// Transcodes (one ffmpeg per broadcast) running at once; past it a broadcast stays
    /// single-rendition.
    #[arg(long, env = "STAGECAST_MAX_TRANSCODES", default_value_t = 2)]
    pub max_transcodes: usize,
    /// The ffmpeg that transcodes.
    #[arg(long, env = "STAGECAST_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
}

impl OriginArgs {
    /// The channels with development credits; `demo` names the demo channel if it runs.
    pub fn dev_credit_prefixes(&self, demo: Option<&str>) -> Vec<String> {
        if self.no_dev_credits {
            return Vec::new();
        }
        match &self.dev_credits {
            Some(prefixes) => prefixes.clone(),
            None => demo.map(str::to_string).into_iter().collect(),
        }
    }

    /// The transcoder's settings, if `--transcode` is given.
    pub fn transcode_config(&self) -> Option<TranscodeConfig> {
        Some(TranscodeConfig {
            ladder: self.transcode.clone()?,
            max_transcodes: self.max_transcodes,
            ffmpeg: self.ffmpeg.clone(),
        })
    }

    pub fn guest_rate(&self) -> Rate {
        Rate {
            burst: self.guest_burst,
            per_minute: self.guest_per_minute,
        }
    }

    pub fn channel_limits(&self) -> ChannelLimits {
        ChannelLimits {
            max_channels: self.max_channels,
            reactions: self
                .reactions
                .clone()
                .unwrap_or_else(|| DEFAULT_REACTIONS.iter().map(|r| r.to_string()).collect()),
            ..ChannelLimits::default()
        }
    }
}
