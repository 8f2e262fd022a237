//! CMAF chunk helpers shared by ingest and egress: sample-flag decoding and re-encoding a
//! single-track `moof` + `mdat` whose data offsets are relative to the `moof`.
//!
//! Every rewrite goes through [`encode_single_track_chunk`], which always produces the
//! self-contained form CMAF asks for: one `traf`, `default-base-is-moof`, no absolute
//! `base_data_offset`, every `trun` with an explicit `data_offset`. Sample bytes are copied
//! unchanged.

use mp4_atom::{Atom, Encode, Header, Mdat, Mfhd, Moof, Traf};

/// The `tfdt` base media decode time of a CMAF chunk (`moof` + `mdat`), in its track's
/// timescale; `None` if the chunk has no `moof` with one. Boxes before the `moof` are
/// skipped: a published video chunk carries the producer's `prft` in front
/// ([`crate::producer_time::with_producer_time`]).
pub fn chunk_decode_time(chunk: &[u8]) -> Option<u64> {
    let mut rest = chunk;
    loop {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if rest.get(4..8)? == b"moof" {
            break;
        }
        if size < 8 || size > rest.len() {
            return None;
        }
        rest = &rest[size..];
    }
    let moof = <Moof as mp4_atom::Decode>::decode(&mut rest).ok()?;
    Some(moof.traf.first()?.tfdt.as_ref()?.base_media_decode_time)
}

/// `sample_is_non_sync_sample` bit of ISO/IEC 14496-12 sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// True when sample flags describe a sync sample (a random access point): not marked
/// `is_non_sync_sample`, and `sample_depends_on` is not 1 ("depends on others").
pub(crate) fn is_sync_sample(flags: u32) -> bool {
    let depends_on = (flags >> 24) & 0b11;
    flags & NON_SYNC == 0 && depends_on != 1
}

/// Encodes `moof(mfhd(sequence), traf)` + `mdat(runs...)`, pointing each `trun` of `traf`
/// at its run of sample bytes. `runs` holds one byte run per `trun`, in order.
///
/// The caller guarantees `runs.len() == traf.trun.len()`.
pub(crate) fn encode_single_track_chunk(
    sequence: u32,
    mut traf: Traf,
    runs: &[&[u8]],
) -> Result<Vec<u8>, mp4_atom::Error> {
    if runs.len() != traf.trun.len() {
        return Err(mp4_atom::Error::InvalidCombination(
            "one byte run per trun is required",
        ));
    }
    traf.tfhd.base_data_offset = None;
    traf.tfhd.default_base_is_moof = true;
    // A placeholder offset: the field is fixed-size, so the moof's size does not depend
    // on its value and one trial encode tells us where the mdat payload starts.
    for trun in &mut traf.trun {
        trun.data_offset = Some(0);
    }
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: vec![traf],
    };
    let mut trial = Vec::new();
    moof.encode(&mut trial)?;
    let payload_start = trial.len() + 8; // + mdat header
    let payload_len: usize = runs.iter().map(|r| r.len()).sum();

    let mut offset = payload_start;
    for (trun, run) in moof.traf[0].trun.iter_mut().zip(runs) {
        trun.data_offset =
            Some(i32::try_from(offset).map_err(|_| mp4_atom::Error::TooLarge(Moof::KIND))?);
        offset += run.len();
    }

    let mut out = Vec::with_capacity(payload_start + payload_len);
    moof.encode(&mut out)?;
    if out.len() != trial.len() {
        return Err(mp4_atom::Error::InvalidCombination(
            "moof size changed between encodes",
        ));
    }
    Header {
        kind: Mdat::KIND,
        size: Some(payload_len),
    }
    .encode(&mut out)?;
    if out.len() != payload_start {
        // Only a > 4 GiB mdat takes a 16-byte header; the 64 MiB box bound rules it out.
        return Err(mp4_atom::Error::TooLarge(Mdat::KIND));
    }
    for run in runs {
        out.extend_from_slice(run);
    }
    Ok(out)
}

/// Moves every `trun` data offset of `traf` by `delta` bytes (after the `moof` holding it
/// grew or shrank by `delta`). Only valid for offsets that count from the `moof`.
pub(crate) fn shift_data_offsets(traf: &mut Traf, delta: i64) -> Result<(), mp4_atom::Error> {
    for trun in &mut traf.trun {
        if let Some(offset) = trun.data_offset {
            let moved = i64::from(offset) + delta;
            trun.data_offset =
                Some(i32::try_from(moved).map_err(|_| mp4_atom::Error::TooLarge(Moof::KIND))?);
        }
    }
    Ok(())
}

/// A printable rendering of a box type for error messages: `moov`, or hex when the
/// four bytes are not printable ASCII (e.g. a text or binary file).
pub(crate) fn describe_kind(kind: mp4_atom::FourCC) -> String {
    let bytes: [u8; 4] = kind.into();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(&bytes))
    } else {
        format!(
            "bytes {:02x} {:02x} {:02x} {:02x}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Decode, Tfdt, Tfhd, Trun, TrunEntry};

    #[test]
    fn decode_time_is_read_back_from_every_chunk_of_the_demo_clip() {
        let mut ingest = crate::ingest::CmafIngest::new();
        let clip = include_bytes!("../assets/demo.mp4");
        let mut seen = 0;
        for event in ingest
            .push(clip)
            .unwrap()
            .into_iter()
            .chain(ingest.finish().unwrap())
        {
            if let crate::ingest::IngestEvent::Object(object) = event {
                assert_eq!(chunk_decode_time(&object.payload), Some(object.decode_time));
                let time = crate::producer_time::ProducerTime {
                    ntp_timestamp: 1 << 32,
                    media_time: object.decode_time,
                };
                let stamped = crate::producer_time::with_producer_time(
                    &object.payload,
                    object.track_id,
                    time,
                );
                assert_eq!(
                    chunk_decode_time(&stamped),
                    Some(object.decode_time),
                    "with a prft in front"
                );
                seen += 1;
            }
        }
        assert!(seen > 100, "{seen} chunks");
        assert_eq!(chunk_decode_time(b"not a moof"), None);
        assert_eq!(chunk_decode_time(&[]), None);
    }

    #[test]
    fn sync_flags() {
        assert!(is_sync_sample(0x0200_0000)); // depends on nothing: I-frame
        assert!(is_sync_sample(0)); // unknown dependency, not marked non-sync
        assert!(!is_sync_sample(0x0101_0000)); // depends on others, non-sync
        assert!(!is_sync_sample(0x0001_0000)); // non-sync
        assert!(!is_sync_sample(0x0100_0000)); // depends on others
    }

    #[test]
    fn single_track_chunk_points_at_its_samples() {
        let traf = Traf {
            tfhd: Tfhd {
                track_id: 7,
                base_data_offset: Some(1234),
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: 90_000,
            }),
            trun: vec![
                Trun {
                    data_offset: Some(99),
                    samples: vec![TrunEntry {
                        size: Some(3),
                        ..Default::default()
                    }]
                    .into(),
                },
                Trun {
                    data_offset: None,
                    samples: vec![TrunEntry {
                        size: Some(2),
                        ..Default::default()
                    }]
                    .into(),
                },
            ],
            ..Default::default()
        };
        let bytes = encode_single_track_chunk(5, traf, &[b"abc", b"de"]).expect("encode");
        let mut cursor = bytes.as_slice();
        let moof = Moof::decode(&mut cursor).expect("moof");
        let moof_len = bytes.len() - cursor.len();
        let mdat = Mdat::decode(&mut cursor).expect("mdat");
        assert_eq!(mdat.data, b"abcde");
        let traf = &moof.traf[0];
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfhd.base_data_offset, None);
        assert_eq!(traf.trun[0].data_offset, Some(moof_len as i32 + 8));
        assert_eq!(traf.trun[1].data_offset, Some(moof_len as i32 + 11));
        assert_eq!(moof.mfhd.sequence_number, 5);
    }

    #[test]
    fn kinds_are_described_readably() {
        assert_eq!(describe_kind(mp4_atom::FourCC::new(b"moov")), "\"moov\"");
        assert_eq!(
            describe_kind(mp4_atom::FourCC::new(b"\x00\x01ab")),
            "bytes 00 01 61 62"
        );
    }
}
