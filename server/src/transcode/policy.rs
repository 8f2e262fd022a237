//! The transcoder's decisions as plain types, time passed in: how many transcodes may run
//! ([`TranscodeCap`]), how long to wait before starting a dead transcoder again
//! ([`RestartBackoff`]), which group id of the source a transcoded group takes
//! ([`GroupIds`]), and which capture time a transcoded chunk carries ([`CaptureTimes`]).

use std::collections::VecDeque;
use std::time::Duration;

/// At most `max` transcodes at once; past that a broadcast stays single-rendition.
#[derive(Debug)]
pub struct TranscodeCap {
    max: usize,
    running: usize,
}

impl TranscodeCap {
    pub fn new(max: usize) -> Self {
        Self { max, running: 0 }
    }

    /// Takes a place if one is free.
    pub fn try_take(&mut self) -> bool {
        if self.running >= self.max {
            return false;
        }
        self.running += 1;
        true
    }

    /// Gives back a place taken with [`TranscodeCap::try_take`].
    pub fn release(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    pub fn running(&self) -> usize {
        self.running
    }
}

/// Waits between restarts of a transcoder: doubling from `first` up to `max` while it
/// keeps dying soon after starting, back to `first` once one run lasted `healthy`. A
/// process that cannot start at all (no ffmpeg) is retried at `max` pace, forever: it
/// costs little, and the broadcast plays its original rendition meanwhile.
#[derive(Clone, Debug)]
pub struct RestartBackoff {
    first: Duration,
    max: Duration,
    healthy: Duration,
    next: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(250),
            Duration::from_secs(10),
            Duration::from_secs(30),
        )
    }
}

impl RestartBackoff {
    pub fn new(first: Duration, max: Duration, healthy: Duration) -> Self {
        Self {
            first,
            max,
            healthy,
            next: first,
        }
    }

    /// A run that lasted `ran_for` ended: how long to wait before the next.
    pub fn on_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy {
            self.next = self.first;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// Source groups remembered for matching: a few GOPs of delay through ffmpeg, with room.
const REMEMBERED: usize = 64;

/// Gives each transcoded group the id of the source group that starts at the same media
/// time, so group N of every rendition starts at the same time (the ingest of ffmpeg's
/// output counts groups from 0 at every restart, which says nothing about the source's
/// ids). ffmpeg keeps the source's timestamps (`-copyts`) and keyframes
/// (`-force_key_frames source`), so every output group has a source group at its start
/// time, within `tolerance` (rounding between timescales, and a B-frame decode delay).
#[derive(Debug)]
pub struct GroupIds {
    /// Source group starts (seconds) and ids, oldest first.
    starts: VecDeque<(f64, u64)>,
    /// The last id given: ids only increase, so a group already published (a restart
    /// re-encodes the group it was in) is not given again.
    last: Option<u64>,
    tolerance: f64,
}

/// Why a transcoded group gets no id.
#[derive(Debug, PartialEq)]
pub enum Unmatched {
    /// No source group starts at this time: a keyframe the source does not have.
    NoSourceGroup,
    /// The source group was given already (to a run before a restart).
    AlreadyPublished(u64),
}

impl GroupIds {
    pub fn new(tolerance: f64) -> Self {
        Self {
            starts: VecDeque::new(),
            last: None,
            tolerance,
        }
    }

    /// The source's group `id` starts at `start` seconds.
    pub fn source_group(&mut self, start: f64, id: u64) {
        if self.starts.back().is_some_and(|(_, last)| *last >= id) {
            return;
        }
        if self.starts.len() == REMEMBERED {
            self.starts.pop_front();
        }
        self.starts.push_back((start, id));
    }

    /// The id for a transcoded group starting at `start` seconds.
    pub fn transcoded_group(&mut self, start: f64) -> Result<u64, Unmatched> {
        let (_, id) = self
            .starts
            .iter()
            .filter(|(time, _)| (time - start).abs() <= self.tolerance)
            .min_by(|a, b| (a.0 - start).abs().total_cmp(&(b.0 - start).abs()))
            .copied()
            .ok_or(Unmatched::NoSourceGroup)?;
        if self.last.is_some_and(|last| id <= last) {
            return Err(Unmatched::AlreadyPublished(id));
        }
        self.last = Some(id);
        Ok(id)
    }
}

/// Source chunks whose capture time is remembered: seconds of per-frame chunks.
const REMEMBERED_CAPTURES: usize = 256;

/// The creator's wall clock at points of the source's media timeline (the `prft` of each
/// source chunk), so a transcoded chunk carries the time its picture was captured, not
/// the time the transcoder finished it: a rung viewer's glass-to-glass latency then counts
/// the transcode too.
#[derive(Debug, Default)]
pub struct CaptureTimes {
    /// (media time in seconds, wall clock since the Unix epoch), in media time order.
    points: VecDeque<(f64, Duration)>,
}

impl CaptureTimes {
    /// The source chunk at media time `media` was captured at `wall`.
    pub fn source_chunk(&mut self, media: f64, wall: Duration) {
        if self.points.back().is_some_and(|(last, _)| *last >= media) {
            // A loop or restart went back in media time: start over from here.
            self.points.clear();
        }
        if self.points.len() == REMEMBERED_CAPTURES {
            self.points.pop_front();
        }
        self.points.push_back((media, wall));
    }

    /// The capture time of the picture at media time `media`: from the latest source
    /// chunk at or before it, plus the media time since (a frame of a chunk is captured
    /// that much later than its first). `None` before any known point.
    pub fn at(&self, media: f64) -> Option<Duration> {
        let (start, wall) = self
            .points
            .iter()
            .rev()
            .find(|(start, _)| *start <= media + 1e-6)?;
        let since = (media - start).max(0.0);
        Some(*wall + Duration::from_secs_f64(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_past_its_maximum_and_frees_on_release() {
        let mut cap = TranscodeCap::new(2);
        assert!(cap.try_take());
        assert!(cap.try_take());
        assert!(!cap.try_take());
        assert_eq!(cap.running(), 2);
        cap.release();
        assert!(cap.try_take());
        let mut none = TranscodeCap::new(0);
        assert!(!none.try_take());
        none.release();
        assert_eq!(none.running(), 0);
    }

    #[test]
    fn backoff_doubles_to_its_bound_and_resets_after_a_healthy_run() {
        let ms = Duration::from_millis;
        let mut backoff = RestartBackoff::new(ms(100), ms(500), Duration::from_secs(5));
        let quick = ms(10);
        assert_eq!(backoff.on_exit(quick), ms(100));
        assert_eq!(backoff.on_exit(quick), ms(200));
        assert_eq!(backoff.on_exit(quick), ms(400));
        assert_eq!(backoff.on_exit(quick), ms(500));
        assert_eq!(backoff.on_exit(quick), ms(500));
        assert_eq!(backoff.on_exit(Duration::from_secs(6)), ms(100));
        assert_eq!(backoff.on_exit(quick), ms(200));
    }

    #[test]
    fn transcoded_groups_take_the_source_ids_by_start_time() {
        let mut ids = GroupIds::new(0.02);
        for (n, id) in [(0u32, 1000u64), (1, 1001), (2, 1002), (3, 1005)] {
            ids.source_group(f64::from(n) * 2.0 + 100.0, id);
        }
        // A repeat or an older id from the source is ignored.
        ids.source_group(110.0, 1002);
        assert_eq!(ids.transcoded_group(102.001), Ok(1001));
        assert_eq!(ids.transcoded_group(104.0), Ok(1002));
        // Ids follow the source's even where it skips some.
        assert_eq!(ids.transcoded_group(106.0), Ok(1005));
        assert_eq!(ids.transcoded_group(107.0), Err(Unmatched::NoSourceGroup));
        // After a restart, the group that was being published is not given twice.
        assert_eq!(
            ids.transcoded_group(106.0),
            Err(Unmatched::AlreadyPublished(1005))
        );
    }

    #[test]
    fn only_recent_source_groups_are_kept() {
        let mut ids = GroupIds::new(0.02);
        for id in 0..(REMEMBERED as u64 + 10) {
            ids.source_group(id as f64, id);
        }
        assert_eq!(ids.transcoded_group(3.0), Err(Unmatched::NoSourceGroup));
        assert_eq!(ids.transcoded_group(70.0), Ok(70));
    }

    #[test]
    fn capture_times_follow_the_source_chunks() {
        let secs = Duration::from_secs;
        let mut times = CaptureTimes::default();
        assert_eq!(times.at(1.0), None);
        times.source_chunk(10.0, secs(1000));
        times.source_chunk(11.0, secs(1001) + Duration::from_millis(20));
        assert_eq!(times.at(9.0), None, "before the first known chunk");
        assert_eq!(times.at(10.0), Some(secs(1000)));
        assert_eq!(
            times.at(10.5),
            Some(secs(1000) + Duration::from_millis(500))
        );
        assert_eq!(times.at(11.0), Some(secs(1001) + Duration::from_millis(20)));
        // Going back in media time (a looped file) forgets what came before.
        times.source_chunk(0.0, secs(2000));
        assert_eq!(
            times.at(10.5),
            Some(secs(2000) + Duration::from_millis(10_500))
        );
        for n in 0..(REMEMBERED_CAPTURES as u32 + 5) {
            times.source_chunk(f64::from(n) + 1.0, secs(3000 + u64::from(n)));
        }
        assert_eq!(times.at(2.0), None, "only recent chunks are kept");
    }
}
