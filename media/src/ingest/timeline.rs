//! Keeps decode times and fragment sequence numbers increasing when the same file is fed
//! again and again ("looped as if live").
//!
//! In the first pass everything is left as it is. When a new pass begins, every track is
//! moved to start where the longest track of the previous pass ended (in seconds, rounded
//! up to the track's timescale), so audio and video stay in sync across loops: the
//! shorter track gets a gap of less than one sample rather than drifting. `mfhd` sequence
//! numbers continue after the largest one sent.

use super::IngestError;

#[derive(Debug, Clone)]
struct TrackClock {
    timescale: u32,
    /// Added to every input decode time of this pass.
    offset: u64,
    /// The input decode time of the track's first chunk in the file.
    first_input_time: Option<u64>,
    /// Input decode time expected for the next chunk (used when a traf has no tfdt).
    next_input_time: u64,
    /// Largest output `decode_time + duration` so far.
    end: u64,
}

/// Decode-time and sequence-number mapping across loop passes.
#[derive(Debug, Clone)]
pub(super) struct LoopTimeline {
    tracks: Vec<TrackClock>,
    /// Number of passes begun after the first.
    passes: u32,
    sequence_offset: u32,
    first_input_sequence: Option<u32>,
    max_sequence: u32,
}

impl LoopTimeline {
    /// A timeline for tracks with these timescales.
    pub fn new(timescales: impl IntoIterator<Item = u32>) -> Self {
        Self {
            tracks: timescales
                .into_iter()
                .map(|timescale| TrackClock {
                    timescale,
                    offset: 0,
                    first_input_time: None,
                    next_input_time: 0,
                    end: 0,
                })
                .collect(),
            passes: 0,
            sequence_offset: 0,
            first_input_sequence: None,
            max_sequence: 0,
        }
    }

    /// True once decode times or sequence numbers are being rewritten.
    pub fn rewriting(&self) -> bool {
        self.passes > 0
    }

    /// Maps a chunk's input decode time (`None`: the traf had no tfdt) to its output
    /// decode time, and records its duration.
    pub fn place(
        &mut self,
        track: usize,
        track_id: u32,
        input_time: Option<u64>,
        duration: u64,
    ) -> Result<u64, IngestError> {
        let overflow = || IngestError::Overflow {
            track_id,
            what: "decode time",
        };
        let clock = &mut self.tracks[track];
        let input = input_time.unwrap_or(clock.next_input_time);
        clock.first_input_time.get_or_insert(input);
        clock.next_input_time = input.checked_add(duration).ok_or_else(overflow)?;
        let output = input.checked_add(clock.offset).ok_or_else(overflow)?;
        let end = output.checked_add(duration).ok_or_else(overflow)?;
        clock.end = clock.end.max(end);
        Ok(output)
    }

    /// Maps an input `mfhd` sequence number to the output one.
    pub fn sequence(&mut self, input: u32) -> u32 {
        self.first_input_sequence.get_or_insert(input);
        let output = input.wrapping_add(self.sequence_offset);
        self.max_sequence = self.max_sequence.max(output);
        output
    }

    /// Starts a new pass over the same file.
    pub fn begin_pass(&mut self) {
        self.passes = self.passes.saturating_add(1);
        // The latest end over all tracks, compared exactly as ticks/timescale.
        let latest = self
            .tracks
            .iter()
            .map(|c| (c.end, c.timescale))
            .max_by(|a, b| {
                (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
            });
        for clock in &mut self.tracks {
            let start = match latest {
                Some((ticks, timescale)) if timescale > 0 => {
                    let scaled = (u128::from(ticks) * u128::from(clock.timescale))
                        .div_ceil(u128::from(timescale));
                    u64::try_from(scaled).unwrap_or(u64::MAX).max(clock.end)
                }
                _ => clock.end,
            };
            let first = clock.first_input_time.unwrap_or(0);
            clock.offset = start.saturating_sub(first);
            clock.next_input_time = first;
        }
        let first_sequence = self.first_input_sequence.unwrap_or(1);
        self.sequence_offset = self
            .max_sequence
            .wrapping_add(1)
            .wrapping_sub(first_sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_continue_where_the_longest_track_ended() {
        // video: 15360 Hz, 3 s; audio: 48000 Hz, 3.0187 s.
        let mut timeline = LoopTimeline::new([15360, 48000]);
        assert_eq!(timeline.place(0, 1, Some(0), 46080).expect("v"), 0);
        assert_eq!(timeline.place(1, 2, Some(0), 144_896).expect("a"), 0);
        assert_eq!(timeline.sequence(1), 1);
        assert_eq!(timeline.sequence(2), 2);
        assert!(!timeline.rewriting());

        timeline.begin_pass();
        assert!(timeline.rewriting());
        // 144896 / 48000 s = 3.01866 s -> ceil(46366.7) = 46367 video ticks.
        assert_eq!(timeline.place(0, 1, Some(0), 46080).expect("v"), 46367);
        assert_eq!(timeline.place(1, 2, Some(0), 144_896).expect("a"), 144_896);
        assert_eq!(timeline.sequence(1), 3);

        timeline.begin_pass();
        assert_eq!(timeline.place(1, 2, None, 1024).expect("a"), 289_792);
    }

    #[test]
    fn decode_times_near_u64_max_are_an_error_not_a_wrap() {
        let overflow = |r: Result<u64, IngestError>| {
            matches!(r, Err(IngestError::Overflow { track_id: 1, .. }))
        };
        // A tfdt 10 ticks short of u64::MAX and a chunk of 1024 ticks.
        let mut timeline = LoopTimeline::new([90_000]);
        assert!(overflow(timeline.place(0, 1, Some(u64::MAX - 10), 1024)));
        // A traf without tfdt continues the previous chunk, past u64::MAX.
        let mut timeline = LoopTimeline::new([90_000]);
        assert_eq!(
            timeline.place(0, 1, Some(u64::MAX - 1024), 1024).ok(),
            Some(u64::MAX - 1024)
        );
        assert!(overflow(timeline.place(0, 1, None, 1)));
        // A loop pass moves times past the end of the first: past u64::MAX here.
        let mut timeline = LoopTimeline::new([90_000]);
        timeline.place(0, 1, Some(0), 1).unwrap();
        timeline.place(0, 1, Some(u64::MAX - 1), 1).unwrap();
        timeline.begin_pass();
        // The second pass starts at u64::MAX: its first chunk cannot end.
        assert!(overflow(timeline.place(0, 1, Some(0), 1)));
    }
}
