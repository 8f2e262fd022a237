//! MSF catalogs (`media/src/catalog/`) and moq-pub's catalogformat-01 catalogs
//! (`media/src/moq_pub.rs`), as a subscriber receives them on the catalog track. A catalog
//! that parses must serialise and parse back to itself; its tracks' init data is decoded
//! and handed to the egress muxer, which must refuse bad init segments with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagecast_media::catalog::Catalog;
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_media::moq_pub::MoqPubCatalog;

fuzz_target!(|data: &[u8]| {
    if let Ok(catalog) = Catalog::from_json(data) {
        let json = catalog.to_json();
        let back = Catalog::from_json(&json).expect("own output parses");
        assert_eq!(back, catalog, "catalog does not round-trip");
        assert_eq!(back.to_json(), json, "catalog text does not round-trip");
        for track in &catalog.tracks {
            let _ = track.init_segment();
            let _ = (track.is_video(), track.is_audio(), track.is_cmaf());
        }
        if let Ok(writer) = FragmentedMp4Writer::new(&catalog) {
            let _ = writer.init_segment();
        }
    }
    if let Ok(catalog) = MoqPubCatalog::from_json(data) {
        assert!(!catalog.tracks.is_empty());
        let _ = catalog.init_track();
    }
});
