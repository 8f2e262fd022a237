//! Real-time pacing: releases media no faster than its own clock, so a file is published
//! as if it were live.

use std::time::Duration;

use tokio::time::Instant;

/// Maps media time onto wall-clock time from the first object on.
#[derive(Default)]
pub struct Pacer {
    origin: Option<(Instant, f64)>,
}

impl Pacer {
    /// How long to wait before releasing media stamped `media_time` (seconds).
    pub fn delay(&mut self, media_time: f64, now: Instant) -> Duration {
        let (start, first) = *self.origin.get_or_insert((now, media_time));
        let due = start + Duration::from_secs_f64((media_time - first).max(0.0));
        due.saturating_duration_since(now)
    }

    /// Waits until media stamped `media_time` is due.
    pub async fn wait(&mut self, media_time: f64) {
        let delay = self.delay(media_time, Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_media_time_against_the_clock() {
        let mut pacer = Pacer::default();
        let start = Instant::now();
        assert_eq!(pacer.delay(100.0, start), Duration::ZERO);
        assert_eq!(pacer.delay(101.5, start), Duration::from_millis(1500));
        pacer.wait(102.0).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // Media that is already due (a late start) is released at once.
        assert_eq!(pacer.delay(101.0, Instant::now()), Duration::ZERO);
    }
}
