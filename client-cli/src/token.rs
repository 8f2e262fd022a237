//! `stagecast token`: makes the deployment's key, issues access tokens from it, and checks
//! tokens.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use stagecast_proto::token::{now_secs, Claims, TokenKey, MAX_EXP_SECS};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a new random key (base64). Give the same file to the origin and its relays.
    Key,
    /// Issue a token.
    Issue(IssueArgs),
    /// Check a token's signature and expiry, and print its claims.
    Verify {
        token: String,
        #[arg(long, env = "STAGECAST_AUTH_KEY_FILE")]
        key_file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    /// The key file (the origin keeps one at stagecast-data/auth.key).
    #[arg(long, env = "STAGECAST_AUTH_KEY_FILE")]
    pub key_file: PathBuf,
    /// Who the holder is.
    #[arg(long, default_value = "user")]
    pub sub: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// viewer, moderator, creator or relay.
    #[arg(long)]
    pub role: Option<String>,
    /// Path prefix the holder may publish to; repeat for several ("" for all).
    #[arg(long)]
    pub publish: Vec<String>,
    /// Path prefix the holder may subscribe to; repeat for several ("" for all).
    #[arg(long)]
    pub subscribe: Vec<String>,
    /// Path prefix the holder moderates (role moderator); repeat for several.
    #[arg(long)]
    pub moderate: Vec<String>,
    /// Lifetime: seconds, or a number with s, m, h or d (`90s`, `30m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Key => println!("{}", TokenKey::generate_text()),
        TokenCommand::Issue(args) => {
            if args.publish.is_empty() && args.subscribe.is_empty() {
                bail!("a token must grant something: give --publish and/or --subscribe");
            }
            if args.role.as_deref() == Some("moderator") && args.moderate.is_empty() {
                bail!("a moderator token names what it moderates: give --moderate PREFIX");
            }
            let key = read_key(&args.key_file)?;
            let now = now_secs();
            let claims = Claims {
                sub: args.sub,
                name: args.name,
                role: args.role,
                publish: args.publish,
                subscribe: args.subscribe,
                moderate: args.moderate,
                exp: expiry(now, args.ttl)?,
                iat: now,
            };
            println!("{}", key.issue(&claims)?);
        }
        TokenCommand::Verify { token, key_file } => {
            let claims = read_key(&key_file)?.verify(token.trim())?;
            println!("{}", serde_json::to_string_pretty(&claims)?);
        }
    }
    Ok(())
}

fn read_key(path: &PathBuf) -> anyhow::Result<TokenKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    TokenKey::from_text(&text).with_context(|| format!("{} is not a usable key", path.display()))
}

/// The `exp` of a token issued at `now` (seconds since the epoch) that lasts `ttl`.
fn expiry(now: u64, ttl: Duration) -> anyhow::Result<u64> {
    now.checked_add(ttl.as_secs())
        .filter(|exp| *exp <= MAX_EXP_SECS)
        .with_context(|| format!("a lifetime of {}s ends after the year 9999", ttl.as_secs()))
}

/// A positive lifetime (`90s`, `30m`, `1h`, `7d`).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = stagecast_proto::duration::parse_duration(text)?;
    if ttl.as_secs() == 0 {
        return Err("the lifetime must be at least one second".into());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lifetimes() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("500ms").is_err());
        assert!(parse_ttl("1w").is_err());
    }

    #[test]
    fn a_lifetime_past_the_year_9999_is_refused() {
        // `--ttl 18446744073709551615` parses; `now + ttl` overflowed (a panic in debug
        // builds, a token expired since 1970 in release ones).
        let ttl = parse_ttl(&u64::MAX.to_string()).unwrap();
        assert!(expiry(now_secs(), ttl).is_err());
        assert!(expiry(u64::MAX, Duration::from_secs(1)).is_err());
        assert_eq!(expiry(100, Duration::from_secs(60)).unwrap(), 160);
    }
}
