//! Numbers the MoQ groups of a broadcast so that alternate renditions line up: group N of
//! every video track starts at the same presentation time (CMSF "Switching sets and
//! tracks": the presentation time of the first sample of each equally numbered group is
//! identical), so a viewer can leave one rendition after its group N and continue with
//! group N + 1 of another without a gap or a repeat.
//!
//! Numbers come from one counter shared by all video tracks, keyed by start time:
//! - a video group that starts (within half a frame) where another video track already
//!   started one takes that group's number;
//! - otherwise it takes the next unused number.
//!
//! So renditions with aligned keyframes get identical number sequences, and equal numbers
//! always mean equal start times. When keyframes are not aligned, numbers still increase
//! per track and follow the order in which groups start, but some numbers exist in one
//! rendition and not in another: a track that goes on from number `a` to `b` while another
//! video track began a group numbered between them has skipped that group boundary. That
//! is recorded ([`GroupNumbering::aligned`] turns false), so the catalog can stop claiming
//! alignment.
//!
//! Audio groups follow video groups (see `grouping`): an audio group takes the number of
//! the latest video group, or the next number of its own track when that one is used.

use std::collections::VecDeque;

/// Group starts remembered for matching: far more than the renditions of a ladder can be
/// apart in a muxed stream, and bounded so a long broadcast does not grow the list.
const REMEMBERED_STARTS: usize = 64;

/// A presentation time as ticks of a timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MediaTime {
    pub ticks: i64,
    pub timescale: u32,
}

impl MediaTime {
    /// Whether `self` and `other` are at most `tolerance` apart (`tolerance` in ticks of
    /// `self`'s timescale), compared exactly.
    fn within(self, other: MediaTime, tolerance: u64) -> bool {
        let (a_ts, b_ts) = (i128::from(self.timescale), i128::from(other.timescale));
        // Both over the common denominator a_ts * b_ts.
        let difference = i128::from(self.ticks) * b_ts - i128::from(other.ticks) * a_ts;
        difference.abs() <= i128::from(tolerance) * b_ts
    }
}

#[derive(Debug, Clone)]
struct TrackNumbers {
    video: bool,
    /// The number of this track's latest group.
    last: Option<u64>,
}

/// Group numbers for every track of one input. See the [module documentation](self).
#[derive(Debug, Clone)]
pub(super) struct GroupNumbering {
    tracks: Vec<TrackNumbers>,
    /// Recent video group starts and their numbers, oldest first.
    starts: VecDeque<(MediaTime, u64)>,
    /// The lowest number no video group has taken.
    next: u64,
    /// The number of the latest video group started, for audio to follow.
    latest_video: Option<u64>,
    aligned: bool,
}

impl GroupNumbering {
    /// Numbering for tracks that are video (`true`) or not, in track order.
    pub fn new(video: impl IntoIterator<Item = bool>) -> Self {
        Self {
            tracks: video
                .into_iter()
                .map(|video| TrackNumbers { video, last: None })
                .collect(),
            starts: VecDeque::new(),
            next: 0,
            latest_video: None,
            aligned: true,
        }
    }

    /// False once a video track was seen to skip a group boundary of another video track.
    pub fn aligned(&self) -> bool {
        self.aligned
    }

    /// The number of a group that `track` starts now, at presentation time `start`;
    /// `tolerance` (ticks of `start`'s timescale, about half a frame) is how far apart two
    /// starts may be and still be the same boundary.
    pub fn number(&mut self, track: usize, start: MediaTime, tolerance: u64) -> u64 {
        let Some(state) = self.tracks.get(track) else {
            return 0;
        };
        let last = state.last;
        let number = if state.video {
            self.number_video(last, start, tolerance)
        } else {
            // Audio (or another kind next to video) follows the latest video group; alone,
            // it counts its own groups.
            match (self.latest_video, last) {
                (Some(video), Some(last)) if video > last => video,
                (Some(video), None) => video,
                (_, Some(last)) => last.saturating_add(1),
                (None, None) => 0,
            }
        };
        if let Some(state) = self.tracks.get_mut(track) {
            state.last = Some(number);
        }
        number
    }

    fn number_video(&mut self, last: Option<u64>, start: MediaTime, tolerance: u64) -> u64 {
        let after_last = |n: u64| last.is_none_or(|last| n > last);
        let matched = self
            .starts
            .iter()
            .find(|(time, n)| after_last(*n) && start.within(*time, tolerance))
            .map(|(_, n)| *n);
        let number = match matched {
            Some(n) => n,
            None => {
                let n = last.map_or(self.next, |last| self.next.max(last.saturating_add(1)));
                self.starts.push_back((start, n));
                if self.starts.len() > REMEMBERED_STARTS {
                    self.starts.pop_front();
                }
                n
            }
        };
        if let Some(last) = last {
            let skipped = self.starts.iter().any(|(_, n)| *n > last && *n < number);
            if skipped && self.aligned {
                tracing::warn!(
                    "the video renditions' keyframes are not aligned: their groups do not \
                     all start at the same times"
                );
                self.aligned = false;
            }
        }
        self.next = self.next.max(number.saturating_add(1));
        self.latest_video = Some(self.latest_video.map_or(number, |v| v.max(number)));
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ticks: i64) -> MediaTime {
        MediaTime {
            ticks,
            timescale: 15360,
        }
    }

    /// Half a frame at 30 fps in a 15360 Hz timescale.
    const HALF_FRAME: u64 = 256;

    #[test]
    fn aligned_renditions_share_numbers() {
        let mut numbering = GroupNumbering::new([true, true, true, false]);
        for second in 0..4i64 {
            for track in 0..3 {
                let number = numbering.number(track, at(second * 15360), HALF_FRAME);
                assert_eq!(number, second as u64, "track {track} at {second} s");
            }
            assert_eq!(numbering.number(3, at(0), 0), second as u64, "audio");
        }
        assert!(numbering.aligned());
    }

    #[test]
    fn starts_a_tick_apart_in_other_timescales_match() {
        let mut numbering = GroupNumbering::new([true, true]);
        assert_eq!(numbering.number(0, at(30720), HALF_FRAME), 0);
        // 2 s in a 90 kHz timescale, one tick late.
        let other = MediaTime {
            ticks: 180_001,
            timescale: 90_000,
        };
        assert_eq!(numbering.number(1, other, 1500), 0);
        assert!(numbering.aligned());
    }

    #[test]
    fn a_rendition_that_joins_late_or_ends_early_keeps_the_shared_numbers() {
        let mut numbering = GroupNumbering::new([true, true]);
        assert_eq!(numbering.number(0, at(0), HALF_FRAME), 0);
        assert_eq!(numbering.number(0, at(15360), HALF_FRAME), 1);
        // Track 1 begins at 1 s: it takes that boundary's number.
        assert_eq!(numbering.number(1, at(15360), HALF_FRAME), 1);
        assert_eq!(numbering.number(0, at(30720), HALF_FRAME), 2);
        // ...and track 1 ends; track 0 goes on.
        assert_eq!(numbering.number(0, at(46080), HALF_FRAME), 3);
        assert!(numbering.aligned());
    }

    #[test]
    fn unaligned_keyframes_keep_numbers_increasing_and_are_reported() {
        // Track 0: a keyframe every 2 s; track 1: every 1.5 s.
        let mut numbering = GroupNumbering::new([true, true]);
        assert_eq!(numbering.number(0, at(0), HALF_FRAME), 0);
        assert_eq!(numbering.number(1, at(0), HALF_FRAME), 0);
        assert_eq!(numbering.number(1, at(23040), HALF_FRAME), 1);
        assert!(numbering.aligned());
        // Track 0 goes from 0 to a new boundary, past track 1's number 1.
        assert_eq!(numbering.number(0, at(30720), HALF_FRAME), 2);
        assert!(!numbering.aligned());
        assert_eq!(numbering.number(1, at(46080), HALF_FRAME), 3);
        // A shared boundary (6 s) still shares its number.
        assert_eq!(numbering.number(0, at(61440), HALF_FRAME), 4);
        assert_eq!(numbering.number(1, at(69120), HALF_FRAME), 5);
        assert_eq!(numbering.number(0, at(92160), HALF_FRAME), 6);
        assert_eq!(numbering.number(1, at(92160), HALF_FRAME), 6);
    }

    #[test]
    fn audio_follows_the_latest_video_group_and_never_repeats() {
        let mut numbering = GroupNumbering::new([true, false]);
        assert_eq!(numbering.number(1, at(0), 0), 0);
        assert_eq!(numbering.number(0, at(0), HALF_FRAME), 0);
        // Audio starting a group again before video did: its own next number.
        assert_eq!(numbering.number(1, at(0), 0), 1);
        assert_eq!(numbering.number(0, at(15360), HALF_FRAME), 1);
        assert_eq!(numbering.number(1, at(0), 0), 2);
        assert_eq!(numbering.number(0, at(30720), HALF_FRAME), 2);
        assert_eq!(numbering.number(0, at(46080), HALF_FRAME), 3);
        assert_eq!(numbering.number(1, at(0), 0), 3);
    }

    #[test]
    fn audio_alone_counts_its_groups() {
        let mut numbering = GroupNumbering::new([false]);
        let numbers: Vec<u64> = (0..3).map(|_| numbering.number(0, at(0), 0)).collect();
        assert_eq!(numbers, vec![0, 1, 2]);
    }
}
