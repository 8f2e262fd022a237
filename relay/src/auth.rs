//! Who may do what on a session: the token presented at setup (draft-18 AUTHORIZATION
//! TOKEN, or `?jwt=` in a WebTransport URL), checked against the deployment's key, and the
//! path prefixes anyone may subscribe to without one.

use std::time::SystemTime;

use moq_transport::coding::KeyValuePairs;
use stagecast_proto::token::{path_has_prefix, Claims, TokenError, TokenKey, JWT_TOKEN_TYPE};
use url::Url;

/// Draft-18 session termination codes (§15.10.1) for a refused token.
pub const SESSION_UNAUTHORIZED: u32 = 0x2;
pub const SESSION_MALFORMED_AUTH_TOKEN: u32 = 0x16;
pub const SESSION_EXPIRED_AUTH_TOKEN: u32 = 0x18;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authorization token refused: {0}")]
    Token(#[from] TokenError),
    #[error("the AUTHORIZATION TOKEN setup option is malformed: {0}")]
    Setup(String),
    #[error("this node has no key to verify tokens with")]
    NoKey,
    #[error("not authorized to publish {0}")]
    Publish(String),
    #[error("not authorized to subscribe to {0}")]
    Subscribe(String),
}

impl AuthError {
    /// The session termination code for a session refused at setup.
    pub fn session_code(&self) -> u32 {
        match self {
            AuthError::Token(TokenError::Expired) => SESSION_EXPIRED_AUTH_TOKEN,
            AuthError::Token(TokenError::Malformed | TokenError::TooLong) | AuthError::Setup(_) => {
                SESSION_MALFORMED_AUTH_TOKEN
            }
            _ => SESSION_UNAUTHORIZED,
        }
    }
}

/// A node's authorization settings.
#[derive(Clone, Debug, Default)]
pub struct AuthPolicy {
    /// The deployment's shared key. Without one no token can be verified, so nobody may
    /// publish here.
    pub key: Option<TokenKey>,
    /// Path prefixes anyone may subscribe to without a token (`""` for all).
    pub anonymous_subscribe: Vec<String>,
    /// Authorization off: everyone may do everything (development only).
    pub disabled: bool,
}

impl AuthPolicy {
    /// Decides what a new session may do from what it presented.
    pub fn authorize(&self, setup: &KeyValuePairs, url: &Url) -> Result<SessionAuth, AuthError> {
        if self.disabled {
            return Ok(SessionAuth::Open);
        }
        let claims = match (presented_token(setup, url)?, &self.key) {
            (Some(token), Some(key)) => Some(key.verify(&token)?),
            (Some(_), None) => return Err(AuthError::NoKey),
            (None, _) => None,
        };
        Ok(SessionAuth::Checked {
            claims,
            anonymous_subscribe: self.anonymous_subscribe.clone(),
        })
    }
}

/// The JWT a session presented: the first AUTHORIZATION TOKEN of Stagecast's type in
/// SETUP, else a `jwt` query parameter of the WebTransport URL.
fn presented_token(setup: &KeyValuePairs, url: &Url) -> Result<Option<String>, AuthError> {
    let tokens = moq_transport::setup::decode_setup_tokens(setup)
        .map_err(|e| AuthError::Setup(e.to_string()))?;
    if let Some(token) = tokens.iter().find(|t| t.token_type == JWT_TOKEN_TYPE) {
        let text = std::str::from_utf8(token.value)
            .map_err(|_| AuthError::Token(TokenError::Malformed))?;
        return Ok(Some(text.to_string()));
    }
    Ok(url
        .query_pairs()
        .find(|(name, _)| name == "jwt")
        .map(|(_, value)| value.into_owned()))
}

/// The token role of a relay's upstream link (`stagecast token issue --role relay`).
pub const RELAY_ROLE: &str = "relay";

/// What one session may do.
#[derive(Clone, Debug)]
pub enum SessionAuth {
    /// Authorization is off on this node.
    Open,
    /// The link to this node's own upstream: it only asks for what we announced to it.
    Upstream,
    /// Checked against a token (or its absence).
    Checked {
        claims: Option<Claims>,
        anonymous_subscribe: Vec<String>,
    },
}

impl SessionAuth {
    pub fn check_publish(&self, path: &str) -> Result<(), AuthError> {
        match self {
            SessionAuth::Open | SessionAuth::Upstream => Ok(()),
            SessionAuth::Checked { claims, .. } => match claims {
                Some(claims) if claims.may_publish(path) => Ok(()),
                _ => Err(AuthError::Publish(path.to_string())),
            },
        }
    }

    pub fn check_subscribe(&self, path: &str) -> Result<(), AuthError> {
        match self {
            SessionAuth::Open | SessionAuth::Upstream => Ok(()),
            SessionAuth::Checked {
                claims,
                anonymous_subscribe,
            } => {
                let anonymous = anonymous_subscribe.iter().any(|p| path_has_prefix(path, p));
                if anonymous || claims.as_ref().is_some_and(|c| c.may_subscribe(path)) {
                    Ok(())
                } else {
                    Err(AuthError::Subscribe(path.to_string()))
                }
            }
        }
    }

    /// When the session's token expires, and with it the session.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self {
            SessionAuth::Checked {
                claims: Some(claims),
                ..
            } => Some(claims.expires_at()),
            _ => None,
        }
    }

    /// Whether the session is a relay carrying its viewers' interaction streams: its token
    /// says role `relay`. (With authorization off no session is taken for one: raising
    /// every connection's stream allowance would cost every viewer memory.)
    pub fn is_relay_link(&self) -> bool {
        match self {
            SessionAuth::Checked { claims, .. } => claims
                .as_ref()
                .is_some_and(|c| c.role.as_deref() == Some(RELAY_ROLE)),
            SessionAuth::Open | SessionAuth::Upstream => false,
        }
    }

    /// Who owns what this session publishes: a second session may replace its routes
    /// only with the same identity (a reconnect).
    pub fn owner(&self) -> crate::router::Owner {
        match self {
            SessionAuth::Checked {
                claims: Some(c), ..
            } => crate::router::Owner::Subject(c.sub.clone()),
            _ => crate::router::Owner::Anyone,
        }
    }

    /// Who the holder is, for logs.
    pub fn subject(&self) -> &str {
        match self {
            SessionAuth::Open => "open",
            SessionAuth::Upstream => "upstream",
            SessionAuth::Checked {
                claims: Some(c), ..
            } => &c.sub,
            SessionAuth::Checked { claims: None, .. } => "anonymous",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagecast_proto::token::now_secs;

    fn policy() -> (AuthPolicy, TokenKey) {
        let key = TokenKey::from_text(&TokenKey::generate_text()).unwrap();
        (
            AuthPolicy {
                key: Some(key.clone()),
                anonymous_subscribe: vec!["demo/".into()],
                disabled: false,
            },
            key,
        )
    }

    fn url(query: &str) -> Url {
        Url::parse(&format!("https://localhost:4443/{query}")).unwrap()
    }

    fn token(key: &TokenKey, publish: &[&str], subscribe: &[&str], ttl: i64) -> String {
        key.issue(&Claims {
            sub: "t".into(),
            name: None,
            role: None,
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            moderate: Vec::new(),
            exp: (now_secs() as i64 + ttl) as u64,
            iat: now_secs(),
        })
        .unwrap()
    }

    #[test]
    fn anonymous_sessions_only_subscribe_to_open_prefixes() {
        let (policy, _) = policy();
        let auth = policy
            .authorize(&KeyValuePairs::default(), &url(""))
            .unwrap();
        assert!(auth.check_subscribe("demo/live").is_ok());
        assert_eq!(
            auth.check_subscribe("live/alice"),
            Err(AuthError::Subscribe("live/alice".into()))
        );
        assert_eq!(
            auth.check_publish("demo/live"),
            Err(AuthError::Publish("demo/live".into()))
        );
    }

    #[test]
    fn query_tokens_grant_what_they_name() {
        let (policy, key) = policy();
        let jwt = token(&key, &[], &["live/"], 60);
        let auth = policy
            .authorize(&KeyValuePairs::default(), &url(&format!("?jwt={jwt}")))
            .unwrap();
        assert!(auth.check_subscribe("live/alice").is_ok());
        assert!(auth.check_publish("live/alice").is_err());
        assert!(auth.expires_at().is_some());
    }

    #[test]
    fn bad_tokens_refuse_the_session_with_the_draft_codes() {
        let (policy, key) = policy();
        let expired = token(&key, &["live/"], &[], -1);
        let err = policy
            .authorize(&KeyValuePairs::default(), &url(&format!("?jwt={expired}")))
            .unwrap_err();
        assert_eq!(err.session_code(), SESSION_EXPIRED_AUTH_TOKEN);
        let (_, other_key) = self::policy();
        let forged = token(&other_key, &["live/"], &[], 60);
        let err = policy
            .authorize(&KeyValuePairs::default(), &url(&format!("?jwt={forged}")))
            .unwrap_err();
        assert_eq!(err.session_code(), SESSION_UNAUTHORIZED);
        let err = policy
            .authorize(&KeyValuePairs::default(), &url("?jwt=garbage"))
            .unwrap_err();
        assert_eq!(err.session_code(), SESSION_MALFORMED_AUTH_TOKEN);
    }

    #[test]
    fn disabled_means_open_and_no_key_means_no_publishing() {
        let open = AuthPolicy {
            disabled: true,
            ..Default::default()
        };
        let auth = open.authorize(&KeyValuePairs::default(), &url("")).unwrap();
        assert!(auth.check_publish("anything").is_ok());
        let keyless = AuthPolicy {
            anonymous_subscribe: vec!["".into()],
            ..Default::default()
        };
        let auth = keyless
            .authorize(&KeyValuePairs::default(), &url(""))
            .unwrap();
        assert!(auth.check_publish("live/x").is_err());
        assert!(auth.check_subscribe("live/x").is_ok());
        let err = keyless
            .authorize(&KeyValuePairs::default(), &url("?jwt=a.b.c"))
            .unwrap_err();
        assert_eq!(err, AuthError::NoKey);
    }
}
