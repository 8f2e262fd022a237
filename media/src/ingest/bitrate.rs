//! Measures the bitrate of tracks whose sample entry declares none (no `btrt`, e.g. x264
//! in CRF mode without `-maxrate`), since MSF requires a `bitrate` for audio and video
//! and a player ranks alternates by it.
//!
//! The figure is measured once, over the first [`BITRATE_WINDOW_SECS`] seconds of the
//! track (sample bytes over sample durations, rounded up to whole bit/s), and never
//! changed afterwards, so the catalog does not move while the broadcast goes on. It is a
//! mean, not the peak MSF's "maximum bitrate" asks for: a declared bitrate is always
//! preferred (ffmpeg writes `btrt` from `-b:v` / `-maxrate`).

/// Media seconds over which an undeclared bitrate is measured.
pub const BITRATE_WINDOW_SECS: u64 = 2;

#[derive(Debug, Clone)]
struct Meter {
    timescale: u32,
    bytes: u64,
    ticks: u64,
}

impl Meter {
    fn bitrate(&self) -> Option<u64> {
        if self.ticks == 0 {
            return None;
        }
        let bits = u128::from(self.bytes) * 8 * u128::from(self.timescale);
        u64::try_from(bits.div_ceil(u128::from(self.ticks))).ok()
    }
}

/// One meter per track that needs one. See the [module documentation](self).
#[derive(Debug, Clone)]
pub(super) struct BitrateMeters {
    /// `None` for a track with a declared bitrate, or once its figure is known.
    meters: Vec<Option<Meter>>,
}

impl BitrateMeters {
    /// Meters for the tracks whose `declared` bitrate is `None`, with their timescales.
    pub fn new(tracks: impl IntoIterator<Item = (Option<u64>, u32)>) -> Self {
        Self {
            meters: tracks
                .into_iter()
                .map(|(declared, timescale)| {
                    declared.is_none().then_some(Meter {
                        timescale,
                        bytes: 0,
                        ticks: 0,
                    })
                })
                .collect(),
        }
    }

    /// Counts a chunk of `track`; returns its bitrate once the window is full.
    pub fn add(&mut self, track: usize, bytes: u64, duration: u64) -> Option<u64> {
        let slot = self.meters.get_mut(track)?;
        let meter = slot.as_mut()?;
        meter.bytes = meter.bytes.saturating_add(bytes);
        meter.ticks = meter.ticks.saturating_add(duration);
        let window = BITRATE_WINDOW_SECS.saturating_mul(u64::from(meter.timescale));
        if meter.ticks < window {
            return None;
        }
        let bitrate = meter.bitrate();
        *slot = None;
        bitrate
    }

    /// The input ended before some windows were full: the figures over what there was,
    /// as `(track, bitrate)`.
    pub fn finish(&mut self) -> Vec<(usize, u64)> {
        self.meters
            .iter_mut()
            .enumerate()
            .filter_map(|(track, slot)| {
                let bitrate = slot.as_ref()?.bitrate()?;
                *slot = None;
                Some((track, bitrate))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_once_over_the_window_and_only_when_undeclared() {
        // Track 0 declares 2.5 Mbit/s; track 1 (15360 Hz) does not.
        let mut meters = BitrateMeters::new([(Some(2_500_000), 15360), (None, 15360)]);
        assert_eq!(meters.add(0, 1_000_000, 15360), None);
        // 1 s of 100 kB, then 1 s of 50 kB: 1.2 Mbit over 2 s.
        assert_eq!(meters.add(1, 100_000, 15360), None);
        assert_eq!(meters.add(1, 50_000, 15360), Some(600_000));
        // Never again.
        assert_eq!(meters.add(1, 10_000_000, 15360), None);
        assert!(meters.finish().is_empty());
    }

    #[test]
    fn a_short_input_is_measured_over_what_there_was() {
        let mut meters = BitrateMeters::new([(None, 48000), (None, 90000)]);
        assert_eq!(meters.add(0, 1000, 24000), None);
        // 8000 bits in 0.5 s, rounded up; track 1 saw nothing.
        assert_eq!(meters.finish(), vec![(0, 16000)]);
    }
}
