//! Command-line and environment settings for authorization, shared by `stagecast-server`
//! and `stagecast-relay`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
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

fn load_or_create_key(path: &Path, may_create: bool) -> anyhow::Result<TokenKey> {
    if may_create && !path.exists() {
        std::fs::write(path, TokenKey::generate_text() + "\n")
            .with_context(|| format!("cannot write the token key {}", path.display()))?;
        restrict_permissions(path);
        tracing::info!(path = %path.display(), "made a new token key");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token key {}", path.display()))?;
    TokenKey::from_text(&text)
        .with_context(|| format!("{} is not a usable token key", path.display()))
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}
