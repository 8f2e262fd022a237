//! When a track whose source broke off is given up: a lost source may come back (a
//! publisher reconnecting, an upstream relay restarting) within a resume window, counted
//! from the first loss that was not followed by any delivered group.

use std::time::Duration;

use tokio::time::Instant;

/// How long a lost source may take to come back before the track ends for its subscribers.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before asking a source again after it broke off, so a source that breaks off at
/// once is not asked again in a tight loop.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What to do after the source broke off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLost {
    /// Ask a source again after this pause.
    RetryAfter(Duration),
    /// The source has been lost for longer than the resume window: end the track.
    GiveUp,
}

/// The resume state of one track's source subscription.
#[derive(Clone, Debug)]
pub struct ResumePolicy {
    timeout: Duration,
    retry_pause: Duration,
    /// Whether the source was lost at least once (then failures wait for it to come back
    /// instead of failing the first subscriber's request).
    resuming: bool,
    /// When the source was first lost with no group delivered since.
    lost_since: Option<Instant>,
}

impl Default for ResumePolicy {
    fn default() -> Self {
        Self::new(RESUME_TIMEOUT, RETRY_PAUSE)
    }
}

impl ResumePolicy {
    pub fn new(timeout: Duration, retry_pause: Duration) -> Self {
        Self {
            timeout,
            retry_pause,
            resuming: false,
            lost_since: None,
        }
    }

    /// Whether the source was lost before: a refusal now is waited out, not reported.
    pub fn is_resuming(&self) -> bool {
        self.resuming
    }

    /// The source delivered a new group: the loss, if any, is healed.
    pub fn on_progress(&mut self) {
        self.lost_since = None;
    }

    /// The source broke off at `now`.
    pub fn on_lost(&mut self, now: Instant) -> OnLost {
        self.resuming = true;
        let since = *self.lost_since.get_or_insert(now);
        if now.saturating_duration_since(since) > self.timeout {
            OnLost::GiveUp
        } else {
            OnLost::RetryAfter(self.retry_pause)
        }
    }

    /// Until when to wait, from `now`, for the routes to name a source again.
    pub fn wait_deadline(&self, now: Instant) -> Instant {
        now + self.timeout
    }
}
