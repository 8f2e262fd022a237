//! Applies a node's `--config FILE` (TOML) before its options are parsed: every key is a
//! long option name and becomes that option's environment default
//! ([`stagecast_proto::config_file`]).

use clap::CommandFactory;

/// Reads the config file named by `--config` or `STAGECAST_CONFIG`, if any, into the
/// environment defaults of `A`'s options. Call first thing in `main`, before any thread.
pub fn apply_config_file<A: CommandFactory>() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let command = A::command();
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| e != "STAGECAST_CONFIG")
        .collect();
    stagecast_proto::config_file::apply(&args, &known)?;
    Ok(())
}
