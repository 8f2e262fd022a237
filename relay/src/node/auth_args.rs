//! Command-line and environment settings for authorization, shared by `stagecast-server`
//! and `stagecast-relay`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use stagecast_proto::key_file::{self, Existing, KeyFileError};
use stagecast_proto::token::TokenKey;

use crate::auth::AuthPolicy;

#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// File holding the deployment's token key (base64, as `stagecast token key` prints).
    /// The origin makes one in its data directory if none is given; relays need the same
    /// file to accept publishers.
    #[arg(long, env = "STAGECAST_AUTH_KEY_FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// Path prefixes anyone may subscribe to without a token; repeat or comma-separate.
    /// The default "" lets anyone watch everything.
    #[arg(long, env = "STAGECAST_ANONYMOUS_SUBSCRIBE", value_delimiter = ',', default_values_t = vec![String::new()])]
    pub anonymous_subscribe: Vec<String>,
    /// Turn authorization off: anyone may publish anything (development only).
    #[arg(long, env = "STAGECAST_NO_AUTH")]
    pub no_auth: bool,
}

impl AuthArgs {
    /// The policy these settings describe. `generated_key`, for the origin, is where a key
    /// is made and kept when no key file is given.
    pub fn policy(&self, generated_key: Option<&Path>) -> anyhow::Result<AuthPolicy> {
        let key_file = self.auth_key_file.as_deref().or(generated_key);
        let key = match key_file {
            Some(path) => Some(load_or_create_key(path, self.auth_key_file.is_none())?),
            None => None,
        };
        if self.no_auth {
            tracing::warn!("authorization is off: anyone may publish anything");
        } else if key.is_none() {
            tracing::info!("no --auth-key-file: publishing here is refused; subscribing follows --anonymous-subscribe");
        }
        Ok(AuthPolicy {
            key,
            anonymous_subscribe: self.anonymous_subscribe.clone(),
            disabled: self.no_auth,
        })
    }
}

/// Loads the token key at `path`; with `may_create` (the origin's own data directory),
/// makes one first if there is none: the directory is made private (0700) and the key is
/// written 0600 atomically. A key file that group or others may read is refused, with the
/// `chmod` that fixes it.
fn load_or_create_key(path: &Path, may_create: bool) -> anyhow::Result<TokenKey> {
    if may_create {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            key_file::create_private_dir(dir)?;
        }
        if !path.exists() {
            let text = TokenKey::generate_text() + "\n";
            match key_file::write_secret(path, text.as_bytes(), Existing::Keep) {
                Ok(()) => tracing::info!(path = %path.display(), "made a new token key"),
                // Another process made it first: use theirs.
                Err(KeyFileError::Exists(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    let bytes = key_file::read_private(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable token key: not UTF-8", path.display()))?;
    TokenKey::from_text(&text)
        .with_context(|| format!("{} is not a usable token key", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stagecast-authargs-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_made_key_is_0600_in_a_0700_directory_and_is_reused() {
        let root = temp_dir("made");
        let data = root.join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = data.join("auth.key");
        load_or_create_key(&path, true).unwrap();
        let made = std::fs::read_to_string(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&data), 0o700);
        load_or_create_key(&path, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            made,
            "the key is kept"
        );
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_key_readable_by_others_is_refused_at_start_with_the_fix() {
        let root = temp_dir("open");
        let path = root.join("auth.key");
        std::fs::write(&path, TokenKey::generate_text()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let args = AuthArgs {
            auth_key_file: Some(path.clone()),
            anonymous_subscribe: vec![String::new()],
            no_auth: false,
        };
        let err = args.policy(None).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(args.policy(None).unwrap().key.is_some());
        std::fs::remove_dir_all(root).ok();
    }
}
