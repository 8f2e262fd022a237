//! The `--config FILE` of the servers: a TOML file whose keys are the long option names
//! (`bind = "[::]:4443"`, `upstream = ["moqt://a:4443", "moqt://b:4443"]`). Each key is
//! applied as the default of the option's environment variable, so precedence is
//! command-line flag > environment variable > config file > built-in default, and every
//! key is also a flag and a variable.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the config file {path} sets {key:?}, which is not an option here (known: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("the config file {path} sets {key:?} to a table or date; use a plain value or a list")]
    Nested { path: PathBuf, key: String },
}

/// Where the config file is: `--config PATH`, `--config=PATH`, or `STAGECAST_CONFIG`.
pub fn config_path(args: &[String]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("STAGECAST_CONFIG").map(PathBuf::from)
}

/// The environment variables a config file at `path` sets, for options whose variables
/// are in `known` (`STAGECAST_BIND`, ...). Pure: reading the environment and setting it is
/// the caller's.
pub fn settings(
    path: &Path,
    text: &str,
    known: &[String],
) -> Result<Vec<(String, String)>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut settings = Vec::new();
    for (key, value) in table {
        let variable = format!("STAGECAST_{}", key.to_uppercase().replace('-', "_"));
        if !known.contains(&variable) {
            let known = known
                .iter()
                .filter_map(|v| v.strip_prefix("STAGECAST_"))
                .map(|v| v.to_lowercase().replace('_', "-"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key,
                known,
            });
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(v).ok_or(()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|()| ConfigError::Nested {
                    path: path.to_path_buf(),
                    key: key.clone(),
                })?
                .join(","),
            other => scalar(other).ok_or_else(|| ConfigError::Nested {
                path: path.to_path_buf(),
                key: key.clone(),
            })?,
        };
        settings.push((variable, text));
    }
    Ok(settings)
}

/// A plain value as the text an option would be given; `None` for tables.
fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads the config file named on the command line (if any) and applies its settings to
/// the environment where a variable is not already set. Call before any thread starts.
pub fn apply(args: &[String], known: &[String]) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = config_path(args) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    for (variable, value) in settings(&path, &text, known)? {
        if std::env::var_os(&variable).is_none() {
            // Single-threaded at this point (before the runtime starts), so setting the
            // environment cannot race a reader.
            std::env::set_var(variable, value);
        }
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        [
            "STAGECAST_BIND",
            "STAGECAST_UPSTREAM",
            "STAGECAST_NO_DEMO",
            "STAGECAST_DRAIN_TIMEOUT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn keys_become_variables() {
        let text = "bind = \"[::]:5000\"\nupstream = [\"moqt://a:1\", \"moqt://b:2\"]\nno-demo = true\ndrain_timeout = \"3s\"\n";
        let mut got = settings(Path::new("c.toml"), text, &known()).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("STAGECAST_BIND".into(), "[::]:5000".into()),
                ("STAGECAST_DRAIN_TIMEOUT".into(), "3s".into()),
                ("STAGECAST_NO_DEMO".into(), "true".into()),
                ("STAGECAST_UPSTREAM".into(), "moqt://a:1,moqt://b:2".into()),
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_clear_errors() {
        let err = settings(Path::new("c.toml"), "bnid = 1", &known()).unwrap_err();
        assert!(err.to_string().contains("\"bnid\""), "{err}");
        assert!(err.to_string().contains("bind"), "{err}");
        let err = settings(Path::new("c.toml"), "bind = ", &known()).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = settings(Path::new("c.toml"), "[bind]\nx = 1", &known()).unwrap_err();
        assert!(matches!(err, ConfigError::Nested { .. }), "{err}");
    }

    #[test]
    fn finds_the_path_on_the_command_line() {
        let args: Vec<String> = ["x", "--bind", "a", "--config", "c.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(config_path(&args), Some(PathBuf::from("c.toml")));
        let args: Vec<String> = ["x", "--config=d.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(config_path(&args), Some(PathBuf::from("d.toml")));
    }
}
