//! Access tokens: JWTs (HS256, signed with a key the origin and its relays share) naming
//! who the holder is and which broadcast path prefixes it may publish to and subscribe
//! from, until when.
//!
//! On the wire a token travels in the draft-18 AUTHORIZATION TOKEN setup option (§10.3.1.4,
//! token type [`JWT_TOKEN_TYPE`]) or, for browsers, in the WebTransport URL as `?jwt=`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// The AUTHORIZATION TOKEN type Stagecast uses for its JWTs. Type 0 is reserved for a type
/// agreed out of band (draft-18 §10.3.1.4), which is what a deployment's shared key is.
pub const JWT_TOKEN_TYPE: u64 = 0;
/// Longest token accepted, so a peer cannot make us parse megabytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The latest expiry a token can name, 9999-12-31T23:59:59Z: a later `exp` means the same.
pub const MAX_EXP_SECS: u64 = 253_402_300_799;

/// Why a token was not accepted. Each says whose fault it is: the holder's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token's signature does not match this deployment's key")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the signing key must be at least 32 bytes")]
    WeakKey,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// Who the holder is (a user id, or a relay's name).
    pub sub: String,
    /// A display name, for interaction features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `viewer`, `moderator`, `creator` or `relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Path prefixes the holder may publish to (`live/alice`, or `""` for everything).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Path prefixes the holder may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Path prefixes the holder moderates (with role `moderator`); none by default, so a
    /// moderator token moderates only the broadcasts it names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moderate: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
}

impl Claims {
    pub fn may_publish(&self, path: &str) -> bool {
        self.publish
            .iter()
            .any(|prefix| path_has_prefix(path, prefix))
    }

    pub fn may_subscribe(&self, path: &str) -> bool {
        self.subscribe
            .iter()
            .any(|prefix| path_has_prefix(path, prefix))
    }

    pub fn may_moderate(&self, path: &str) -> bool {
        self.moderate
            .iter()
            .any(|prefix| path_has_prefix(path, prefix))
    }

    /// When the token expires. An `exp` past [`MAX_EXP_SECS`] (the end of year 9999)
    /// counts as that: `UNIX_EPOCH + u64::MAX` seconds is not a time and would panic.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp.min(MAX_EXP_SECS))
    }
}

/// Whether `path` is `prefix` or lies under it, segment by segment: `live/` and `live`
/// cover `live/alice`; `live/al` does not; `""` covers everything.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_matches('/');
    let path = path.trim_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
}

/// The shared HS256 key of a deployment.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn new(secret: Vec<u8>) -> Result<Self, TokenError> {
        if secret.len() < 32 {
            return Err(TokenError::WeakKey);
        }
        Ok(Self { secret })
    }

    /// Reads a key file: base64 text (as `stagecast token key` writes), surrounding
    /// whitespace ignored.
    pub fn from_text(text: &str) -> Result<Self, TokenError> {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| TokenError::WeakKey)?;
        Self::new(secret)
    }

    /// A new random key, as base64 text.
    pub fn generate_text() -> String {
        let mut secret = [0u8; 48];
        // ring's system RNG; failing to read it leaves no safe fallback.
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the system random number generator is unavailable");
        base64::engine::general_purpose::STANDARD.encode(secret)
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Checks the signature and expiry (no leeway: an expired token is expired).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.decode(token, true)
    }

    /// Checks the signature only: for telling who held a token that has since expired
    /// (a guest renewing its identity), never for granting access.
    pub fn verify_ignoring_expiry(&self, token: &str) -> Result<Claims, TokenError> {
        self.decode(token, false)
    }

    fn decode(&self, token: &str, check_expiry: bool) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = check_expiry;
        validation.required_spec_claims = ["exp"].into_iter().map(String::from).collect();
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&self.secret), &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })
    }
}

/// Seconds since the Unix epoch now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_text(&TokenKey::generate_text()).unwrap()
    }

    fn claims(ttl: i64) -> Claims {
        Claims {
            sub: "alice".into(),
            name: Some("Alice".into()),
            role: Some("creator".into()),
            publish: vec!["live/alice".into()],
            subscribe: vec!["live/".into()],
            moderate: Vec::new(),
            exp: (now_secs() as i64 + ttl) as u64,
            iat: now_secs(),
        }
    }

    #[test]
    fn issued_tokens_verify_and_grant_by_prefix() {
        let key = key();
        let token = key.issue(&claims(60)).unwrap();
        let got = key.verify(&token).unwrap();
        assert_eq!(got, claims(60));
        assert!(got.may_publish("live/alice"));
        assert!(got.may_publish("live/alice/backup"));
        assert!(!got.may_publish("live/alicia"));
        assert!(!got.may_publish("live/bob"));
        assert!(got.may_subscribe("live/bob"));
        assert!(!got.may_subscribe("vip/show"));
    }

    #[test]
    fn forged_expired_and_garbage_tokens_are_refused() {
        let key = key();
        let other = self::key();
        let forged = other.issue(&claims(60)).unwrap();
        assert_eq!(key.verify(&forged), Err(TokenError::BadSignature));
        let expired = key.issue(&claims(-5)).unwrap();
        assert_eq!(key.verify(&expired), Err(TokenError::Expired));
        assert_eq!(key.verify("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(
            key.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(TokenError::TooLong)
        );
        // A token whose payload was edited keeps its old signature, which no longer fits.
        let token = key.issue(&claims(60)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&parts[1])
                .unwrap(),
        )
        .unwrap();
        payload["publish"] = serde_json::json!([""]);
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
        assert_eq!(key.verify(&parts.join(".")), Err(TokenError::BadSignature));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(TokenKey::new(vec![1; 16]).unwrap_err(), TokenError::WeakKey);
        assert!(TokenKey::from_text("not base64!").is_err());
    }

    #[test]
    fn empty_prefix_covers_everything() {
        assert!(path_has_prefix("a/b", ""));
        assert!(path_has_prefix("a/b", "/"));
        assert!(path_has_prefix("a/b", "a/"));
        assert!(!path_has_prefix("ab/c", "a"));
    }

    #[test]
    fn an_expiry_past_the_representable_is_the_latest_expiry() {
        // A correctly signed token with exp = u64::MAX made `expires_at` (and with it the
        // relay's session task) panic: UNIX_EPOCH + u64::MAX seconds overflows.
        let key = key();
        let mut far = claims(60);
        far.exp = u64::MAX;
        let got = key.verify(&key.issue(&far).unwrap()).unwrap();
        assert_eq!(
            got.expires_at(),
            UNIX_EPOCH + Duration::from_secs(MAX_EXP_SECS)
        );
    }
}
