//! The producer's wall clock beside the media: a Producer Reference Time box (`prft`,
//! ISO/IEC 14496-12 §8.16.5) ties a track's media time to a UTC time, so a viewer can tell
//! how long ago a frame on screen was made (glass-to-glass latency). CMAF (23000-19 §7.3.3)
//! lets a `prft` precede a chunk's `moof`; players that do not read it skip it.
//!
//! The ingest keeps the `prft`s an encoder wrote (ffmpeg `-write_prft wallclock`); the
//! publisher puts one in front of each video chunk it sends, with the encoder's time or,
//! when the input has none (or is a file paced as live), the time it sends the chunk.

use std::time::Duration;

use bytes::Bytes;
use mp4_atom::{Atom, Decode, Encode, Prft, ReferenceTime};

use crate::boxes::top_level_boxes;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A UTC time paired with a media time of one track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerTime {
    /// NTP format: seconds since 1900 in the high 32 bits, the fraction in the low 32.
    pub ntp_timestamp: u64,
    /// Presentation time in the track's timescale that `ntp_timestamp` refers to.
    pub media_time: u64,
}

impl ProducerTime {
    /// `since_unix_epoch` (a wall clock reading) at media time `media_time`.
    pub fn from_unix(since_unix_epoch: Duration, media_time: u64) -> Self {
        let secs = since_unix_epoch
            .as_secs()
            .saturating_add(NTP_UNIX_OFFSET_SECS);
        let fraction = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        Self {
            ntp_timestamp: (secs << 32) | fraction,
            media_time,
        }
    }

    /// The UTC time as a duration since the Unix epoch (`None` before 1970).
    pub fn since_unix_epoch(&self) -> Option<Duration> {
        let secs = (self.ntp_timestamp >> 32).checked_sub(NTP_UNIX_OFFSET_SECS)?;
        let nanos = ((self.ntp_timestamp & 0xFFFF_FFFF) * 1_000_000_000) >> 32;
        Some(Duration::new(secs, nanos as u32))
    }

    fn from_box(prft: &Prft) -> Self {
        Self {
            ntp_timestamp: prft.ntp_timestamp,
            media_time: prft.media_time,
        }
    }
}

/// Reads a whole `prft` box.
pub fn decode_prft(bytes: &[u8]) -> Result<(u32, ProducerTime), mp4_atom::Error> {
    let mut cursor = bytes;
    let prft = Prft::decode(&mut cursor)?;
    Ok((prft.reference_track_id, ProducerTime::from_box(&prft)))
}

/// `payload` (a CMAF chunk of track `track_id`) with a `prft` for `time` in front, in
/// place of any it had.
pub fn with_producer_time(payload: &Bytes, track_id: u32, time: ProducerTime) -> Bytes {
    let prft = Prft {
        reference_track_id: track_id,
        ntp_timestamp: time.ntp_timestamp,
        media_time: time.media_time,
        // The time the chunk was finished and handed on (what both ffmpeg's wallclock
        // mode and the publisher's own stamp record).
        utc_time_semantics: ReferenceTime::Finalised,
    };
    let body = strip_producer_time(payload);
    let mut out = Vec::with_capacity(body.len() + 32);
    // Encoding a fixed-size box into a growable buffer cannot fail.
    let _ = prft.encode(&mut out);
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The producer time a chunk carries in front of its `moof`, if any.
pub fn producer_time(payload: &[u8]) -> Option<ProducerTime> {
    let boxes = top_level_boxes(payload).ok()?;
    let prft = boxes
        .iter()
        .take_while(|b| b.kind != moof())
        .find(|b| b.kind == Prft::KIND)?;
    decode_prft(prft.bytes).ok().map(|(_, time)| time)
}

/// `payload` without a leading `prft` (the chunk as the encoder made it).
pub fn strip_producer_time(payload: &Bytes) -> Bytes {
    match top_level_boxes(payload) {
        Ok(boxes) if boxes.first().is_some_and(|b| b.kind == Prft::KIND) => {
            payload.slice(boxes[0].bytes.len()..)
        }
        _ => payload.clone(),
    }
}

fn moof() -> mp4_atom::FourCC {
    mp4_atom::FourCC::new(b"moof")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_and_ntp_times_convert_both_ways() {
        let at = Duration::new(1_796_000_000, 250_000_000);
        let time = ProducerTime::from_unix(at, 90_000);
        let back = time.since_unix_epoch().unwrap();
        assert!(back.abs_diff(at) < Duration::from_nanos(2), "{back:?}");
        assert_eq!(
            ProducerTime {
                ntp_timestamp: 0,
                media_time: 0
            }
            .since_unix_epoch(),
            None
        );
    }

    #[test]
    fn a_chunk_carries_one_producer_time_in_front() {
        let chunk = Bytes::from_static(b"\0\0\0\x08moof\0\0\0\x09mdat!");
        let first = ProducerTime::from_unix(Duration::from_secs(1_800_000_000), 1000);
        let stamped = with_producer_time(&chunk, 1, first);
        assert_eq!(producer_time(&stamped), Some(first));
        assert_eq!(&stamped[stamped.len() - chunk.len()..], &chunk[..]);
        // Stamping again replaces the time; it does not pile up boxes.
        let second = ProducerTime::from_unix(Duration::from_secs(1_800_000_001), 2000);
        let restamped = with_producer_time(&stamped, 1, second);
        assert_eq!(restamped.len(), stamped.len());
        assert_eq!(producer_time(&restamped), Some(second));
        assert_eq!(strip_producer_time(&restamped), chunk);
        assert_eq!(producer_time(&chunk), None);
        assert_eq!(producer_time(b"garbage"), None);
    }
}
