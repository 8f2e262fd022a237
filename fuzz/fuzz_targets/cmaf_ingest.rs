//! CMAF ingest (`media/src/ingest/`): a publisher's fragmented-MP4 byte stream, pushed in
//! irregular pieces, then finished, optionally looped once more. Errors must be typed
//! (never a panic) and final; every object must carry the decode time it reports, and
//! the egress muxer built from the ingest's own catalog must accept every object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagecast_fuzz::chunks;
use stagecast_media::chunk_decode_time;
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_media::ingest::{CmafIngest, IngestError, IngestEvent};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (head, stream) = data.split_at(3);
    let (sizes, flags) = (&head[..2], head[2]);
    let mut ingest = CmafIngest::new();
    let mut events = Vec::new();
    let passes = if flags & 1 == 1 { 2 } else { 1 };
    let mut failed = false;
    'passes: for pass in 0..passes {
        if pass > 0 {
            ingest.begin_loop();
        }
        for chunk in chunks(stream, sizes) {
            match ingest.push(chunk) {
                Ok(more) => events.extend(more),
                Err(_) => {
                    failed = true;
                    break 'passes;
                }
            }
        }
        match ingest.finish() {
            Ok(more) => events.extend(more),
            Err(_) => {
                failed = true;
                break 'passes;
            }
        }
    }
    if failed {
        assert!(matches!(
            ingest.push(b"more"),
            Err(IngestError::AlreadyFailed)
        ));
        assert!(matches!(ingest.finish(), Err(IngestError::AlreadyFailed)));
    }

    let mut writer = None;
    let mut catalogs = 0;
    let mut track_names: Option<Vec<String>> = None;
    for event in events {
        match event {
            IngestEvent::Catalog(catalog) => {
                catalogs += 1;
                let json = catalog.to_json();
                let parsed = stagecast_media::catalog::Catalog::from_json(&json)
                    .expect("the ingest's catalog parses");
                // An update (measured bitrate, alignment) lists the same tracks; the
                // writer made from the first one goes on serving them.
                let names: Vec<String> = parsed.tracks.iter().map(|t| t.name.clone()).collect();
                match &track_names {
                    Some(first) => assert_eq!(first, &names, "a catalog update changed the tracks"),
                    None => {
                        writer = FragmentedMp4Writer::new(&parsed).ok();
                        track_names = Some(names);
                    }
                }
            }
            IngestEvent::Object(object) => {
                assert!(catalogs >= 1, "an object before the catalog");
                assert_eq!(
                    chunk_decode_time(&object.payload),
                    Some(object.decode_time),
                    "object payload and decode time disagree"
                );
                if let Some(writer) = &mut writer {
                    if let Err(err) = writer.fragment(&object.track, object.payload.clone()) {
                        panic!("egress refused an ingest object: {err}");
                    }
                }
            }
        }
    }
});
