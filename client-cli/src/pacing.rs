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
        // Media times come from the input's tfdt: a jump of 2^63 ticks is a valid u64, but
        // `start + ahead` would overflow an Instant. Compared as durations, nothing can.
        let ahead =
            Duration::try_from_secs_f64((media_time - first).max(0.0)).unwrap_or(Duration::MAX);
        ahead.saturating_sub(now.saturating_duration_since(start))
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

    #[tokio::test(start_paused = true)]
    async fn a_media_time_far_ahead_is_a_long_delay_not_a_panic() {
        // A file whose tfdt jumps from 0 to 2^63 (timescale 1): `Instant + 2^63 s`
        // overflowed and the publisher panicked.
        let mut pacer = Pacer::default();
        let start = Instant::now();
        assert_eq!(pacer.delay(0.0, start), Duration::ZERO);
        assert_eq!(
            pacer.delay(2f64.powi(63), start),
            Duration::from_secs(1 << 63)
        );
        assert_eq!(pacer.delay(f64::MAX, start), Duration::MAX);
        assert_eq!(
            pacer.delay(1.0, start + Duration::from_secs(5)),
            Duration::ZERO
        );
    }
}
