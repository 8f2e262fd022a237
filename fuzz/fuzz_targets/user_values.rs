//! What people type into flags and config values: byte sizes
//! (`proto/src/byte_size.rs`), durations (`proto/src/duration.rs`) and broadcast paths
//! (`proto/src/path.rs`, `proto/src/token.rs` prefixes) and certificate fingerprints
//! (`proto/src/trust.rs`, `--fingerprint` and the viewer's `?fingerprint=`). Nothing may
//! panic; a size or duration that parses must equal the same value written as a plain
//! number, a path that becomes a namespace must come back to the same namespace, and a
//! fingerprint must parse again from its hex.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stagecast_proto::byte_size::parse_byte_size;
use stagecast_proto::duration::parse_duration;
use stagecast_proto::path::{namespace_from_path, path_from_namespace};
use stagecast_proto::token::path_has_prefix;
use stagecast_proto::trust::parse_fingerprint;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(bytes) = parse_byte_size(&text) {
        assert_eq!(parse_byte_size(&bytes.to_string()), Ok(bytes));
    }
    if let Ok(duration) = parse_duration(&text) {
        if duration.subsec_nanos() == 0 {
            let secs = duration.as_secs().to_string();
            assert_eq!(parse_duration(&secs), Ok(duration));
        } else {
            let millis = duration.as_millis();
            assert_eq!(Duration::from_millis(millis as u64), duration);
        }
    }
    if let Ok(namespace) = namespace_from_path(&text) {
        let path = path_from_namespace(&namespace);
        assert_eq!(namespace_from_path(&path).as_ref(), Ok(&namespace));
        assert!(path_has_prefix(&path, &path));
        assert!(path_has_prefix(&path, ""));
    }
    if let Ok(fingerprint) = parse_fingerprint(&text) {
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_fingerprint(&hex).ok(), Some(fingerprint));
    }
    let (path, prefix) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = path_has_prefix(path, prefix);
});
