//! Decides which objects open a new MoQ group.
//!
//! - Video: a group per GOP: a chunk opens a group exactly when its first sample is a
//!   sync sample (and the first chunk of a track always does). A chunk that does not
//!   begin with a sync sample stays in the current group even if a keyframe appears later
//!   inside it: chunks are never split, so such a keyframe is not a join point.
//! - Audio next to video: a new audio group opens at the first audio chunk that reaches
//!   past the start of the latest video group (its end is after that start: it contains
//!   the video keyframe's time, or comes later). So audio groups line up with video GOPs
//!   even when audio chunk boundaries do not fall exactly on the keyframe time.
//! - Audio only: a new group about every [`AUDIO_ONLY_GROUP_SECS`] seconds.

use super::codec::MediaKind;

/// Group length for audio when the input has no video.
pub const AUDIO_ONLY_GROUP_SECS: u64 = 2;

/// A media time as ticks of a timescale.
#[derive(Debug, Clone, Copy)]
struct Instant {
    ticks: u64,
    timescale: u32,
}

impl Instant {
    /// `self > other`, compared exactly.
    fn after(self, other: Instant) -> bool {
        u128::from(self.ticks) * u128::from(other.timescale)
            > u128::from(other.ticks) * u128::from(self.timescale)
    }
}

#[derive(Debug, Clone)]
struct TrackGroups {
    kind: MediaKind,
    /// Decode time of the current group's first chunk; `None` before the first chunk.
    group_start: Option<u64>,
    /// Audio: start of a video group this track has not yet followed.
    pending_video_start: Option<Instant>,
}

/// Per-track group state.
#[derive(Debug, Clone)]
pub(super) struct GroupPlanner {
    tracks: Vec<TrackGroups>,
    has_video: bool,
}

impl GroupPlanner {
    pub fn new(kinds: impl IntoIterator<Item = MediaKind>) -> Self {
        let tracks: Vec<TrackGroups> = kinds
            .into_iter()
            .map(|kind| TrackGroups {
                kind,
                group_start: None,
                pending_video_start: None,
            })
            .collect();
        let has_video = tracks.iter().any(|t| t.kind == MediaKind::Video);
        Self { tracks, has_video }
    }

    /// Whether the chunk of `track` at `decode_time` lasting `duration` opens a group.
    /// Call in output order, video chunks of a fragment before its audio chunks.
    pub fn starts_group(
        &mut self,
        track: usize,
        decode_time: u64,
        duration: u64,
        timescale: u32,
        keyframe: bool,
    ) -> bool {
        let state = &mut self.tracks[track];
        let starts = match (state.kind, state.group_start) {
            (_, None) => true,
            (MediaKind::Video, Some(_)) => keyframe,
            (MediaKind::Audio, Some(start)) if !self.has_video => {
                decode_time.saturating_sub(start)
                    >= AUDIO_ONLY_GROUP_SECS.saturating_mul(u64::from(timescale))
            }
            (MediaKind::Audio, Some(_)) => {
                let end = Instant {
                    ticks: decode_time.saturating_add(duration),
                    timescale,
                };
                state
                    .pending_video_start
                    .is_some_and(|video| end.after(video))
            }
        };
        if !starts {
            return false;
        }
        state.group_start = Some(decode_time);
        match state.kind {
            MediaKind::Audio => state.pending_video_start = None,
            MediaKind::Video => {
                let start = Instant {
                    ticks: decode_time,
                    timescale,
                };
                for other in &mut self.tracks {
                    if other.kind == MediaKind::Audio {
                        other.pending_video_start = Some(start);
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_follows_video_groups() {
        let mut planner = GroupPlanner::new([MediaKind::Video, MediaKind::Audio]);
        // First objects always start groups.
        assert!(planner.starts_group(0, 0, 512, 15360, true));
        assert!(planner.starts_group(1, 0, 1024, 48000, true));
        // Non-key video, audio without a new video group: no new groups.
        assert!(!planner.starts_group(0, 512, 512, 15360, false));
        assert!(!planner.starts_group(1, 1024, 1024, 48000, true));
        // Audio chunk ending just before the next keyframe time (1 s), arriving late.
        assert!(planner.starts_group(0, 15360, 512, 15360, true));
        assert!(!planner.starts_group(1, 46976, 1024, 48000, true)); // ends at 48000 = 1 s
        assert!(planner.starts_group(1, 48000, 1024, 48000, true));
        assert!(!planner.starts_group(1, 49024, 1024, 48000, true));
    }

    #[test]
    fn audio_chunk_spanning_the_keyframe_starts_the_group() {
        let mut planner = GroupPlanner::new([MediaKind::Video, MediaKind::Audio]);
        assert!(planner.starts_group(0, 0, 15360, 15360, true));
        assert!(planner.starts_group(1, 0, 47104, 48000, true));
        assert!(planner.starts_group(0, 15360, 15360, 15360, true));
        // Starts at 0.98 s, before the keyframe at 1 s, but contains it.
        assert!(planner.starts_group(1, 47104, 49152, 48000, true));
    }

    #[test]
    fn audio_only_groups_every_two_seconds() {
        let mut planner = GroupPlanner::new([MediaKind::Audio]);
        let mut starts = Vec::new();
        for i in 0..300u64 {
            if planner.starts_group(0, i * 1024, 1024, 48000, true) {
                starts.push(i * 1024);
            }
        }
        assert_eq!(starts, vec![0, 96256, 192512, 288768]);
    }
}
