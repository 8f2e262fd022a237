//! The encoder's wall clock (`prft`, ffmpeg `-write_prft wallclock`) survives the ingest:
//! each video object knows when it was made, in its own media time, also when a looped
//! file shifts decode times; and the payload stays the chunk the encoder wrote.

mod common;

use common::*;
use stagecast_media::catalog::VIDEO_TRACK;
use stagecast_media::producer_time::{producer_time, with_producer_time};

#[test]
fn producer_reference_times_reach_the_objects() {
    let dir = TempDir::new("prft");
    let mut args = h264_aac(true);
    args.extend_from_slice(&[
        "-f",
        "mp4",
        "-movflags",
        "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        "-write_prft",
        "wallclock",
    ]);
    let input = make_clip(&dir, "prft.mp4", 2, &args);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();

    let single = ingest(&input, 1000, 1);
    let video = single.track(VIDEO_TRACK);
    assert!(!video.is_empty());
    for object in &video {
        let time = object.producer_time.expect("every video chunk has a prft");
        // ffmpeg stamped it moments ago, at its own muxing time.
        let made = time.since_unix_epoch().expect("after 1970");
        assert!(now.abs_diff(made).as_secs() < 120, "{made:?} vs {now:?}");
        // The box refers to the chunk's own first frame.
        assert_eq!(time.media_time, object.decode_time, "{time:?}");
        // The payload is the encoder's chunk: a moof first, no prft in it.
        assert_eq!(&object.payload[4..8], b"moof");
        assert_eq!(producer_time(&object.payload), None);
    }
    // Stamped by a publisher, the chunk carries the time in front of its moof.
    let stamped = with_producer_time(
        &video[0].payload,
        video[0].track_id,
        video[0].producer_time.unwrap(),
    );
    assert_eq!(producer_time(&stamped), video[0].producer_time);

    // Looped, the second pass's media times move with its decode times.
    let looped = ingest(&input, 1000, 2);
    let video = looped.track(VIDEO_TRACK);
    for object in &video {
        let time = object.producer_time.expect("prft");
        assert_eq!(time.media_time, object.decode_time);
    }
    // A clip without prfts gives objects without producer times.
    let mut plain = h264_aac(true);
    plain.extend_from_slice(&[
        "-f",
        "mp4",
        "-movflags",
        "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
    ]);
    let input = make_clip(&dir, "plain.mp4", 1, &plain);
    assert!(ingest(&input, 1000, 1)
        .objects
        .iter()
        .all(|o| o.producer_time.is_none()));
}

#[test]
fn a_malformed_prft_costs_only_its_time_never_the_media() {
    let dir = TempDir::new("prft_bad");
    let mut args = h264_aac(true);
    args.extend_from_slice(&[
        "-f",
        "mp4",
        "-movflags",
        "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        "-write_prft",
        "wallclock",
    ]);
    let good = make_clip(&dir, "prft.mp4", 1, &args);
    // Every prft gets an unknown version (the byte after its header): none decodes.
    let mut bad = good.clone();
    let mut at = 0;
    let mut spoiled = 0;
    while at + 8 <= bad.len() {
        let size = u32::from_be_bytes(bad[at..at + 4].try_into().unwrap()) as usize;
        if &bad[at + 4..at + 8] == b"prft" {
            bad[at + 8] = 7;
            spoiled += 1;
        }
        at += size.max(8);
    }
    assert!(spoiled > 0);
    let (good, bad) = (ingest(&good, 1000, 1), ingest(&bad, 1000, 1));
    assert_eq!(bad.objects.len(), good.objects.len(), "no object lost");
    assert!(bad.objects.iter().all(|o| o.producer_time.is_none()));
    for (b, g) in bad.objects.iter().zip(&good.objects) {
        assert_eq!(b.payload, g.payload);
    }
}
