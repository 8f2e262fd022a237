//! Node config files (`proto/src/config_file.rs`, applied by `relay/src/node/config_file.rs`
//! and the server): any text as TOML, turned into option settings, and every resulting
//! value through the option parsers a node would apply to it (durations, byte sizes,
//! broadcast paths). Also `--config` lookup over arbitrary arguments.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stagecast_proto::byte_size::parse_byte_size;
use stagecast_proto::config_file::{config_path, settings};
use stagecast_proto::duration::parse_duration;
use stagecast_proto::path::namespace_from_path;

const KNOWN: &[&str] = &[
    "STAGECAST_BIND",
    "STAGECAST_UPSTREAM",
    "STAGECAST_CACHE_BYTES",
    "STAGECAST_DRAIN_TIMEOUT",
    "STAGECAST_ANONYMOUS_SUBSCRIBE",
    "STAGECAST_NO_DEMO",
    "A",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let known: Vec<String> = KNOWN.iter().map(|k| k.to_string()).collect();
    if let Ok(found) = settings(Path::new("fuzz.toml"), &text, &known) {
        for (variable, value) in found {
            assert!(known.contains(&variable));
            let _ = parse_duration(&value);
            let _ = parse_byte_size(&value);
            for part in value.split(',') {
                let _ = namespace_from_path(part);
            }
        }
    }
    let args: Vec<String> = text.split('\n').map(str::to_string).collect();
    let _ = config_path(&args);
});
