//! Progress of a publish: a status line redrawn in place on a terminal, or a plain log
//! line every few seconds otherwise.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use stagecast_relay::upstream::LinkState;
use tokio::time::Instant;

use crate::broadcast::BroadcastStats;

const LOG_EVERY: Duration = Duration::from_secs(5);
const REDRAW_EVERY: Duration = Duration::from_millis(500);

pub struct Progress {
    terminal: bool,
    last_shown: Instant,
    last_bytes: u64,
    shown_once: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last_shown: Instant::now(),
            last_bytes: 0,
            shown_once: false,
        }
    }

    /// Shows the state if it is time to.
    pub fn update(&mut self, stats: &BroadcastStats, link: &LinkState) {
        let every = if self.terminal {
            REDRAW_EVERY
        } else {
            LOG_EVERY
        };
        let elapsed = self.last_shown.elapsed();
        if self.shown_once && elapsed < every {
            return;
        }
        let bits = (stats.bytes - self.last_bytes) as f64 * 8.0;
        let rate = bits / elapsed.as_secs_f64().max(0.001) / 1e6;
        let link = match link {
            LinkState::Connecting { url } => format!("connecting to {url}"),
            LinkState::Connected { url } => format!("connected to {url}"),
            LinkState::Refused { reason } => format!("refused: {reason}"),
            LinkState::Disconnected { reason, retry_in } => {
                format!(
                    "disconnected ({reason}); retrying in {:.1}s",
                    retry_in.as_secs_f64()
                )
            }
        };
        let line = format!(
            "{link} | {rate:.2} Mbit/s | groups {} | objects {} | media {:.1}s",
            stats.groups, stats.objects, stats.media_time
        );
        if self.terminal {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else {
            tracing::info!("{line}");
        }
        self.last_shown = Instant::now();
        self.last_bytes = stats.bytes;
        self.shown_once = true;
    }

    /// Ends the status line so later output starts on its own line.
    pub fn finish(&self) {
        if self.terminal && self.shown_once {
            eprintln!();
        }
    }
}
