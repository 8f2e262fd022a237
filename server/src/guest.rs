//! `POST /api/guest`: a token for a viewer who has none, with the display name they chose,
//! so they can chat, vote and tip (docs/interaction.md §1.3).
//!
//! A guest may watch exactly what an anonymous viewer may (`--anonymous-subscribe`) and
//! publish nothing. Identities are rationed: each client address gets a token bucket
//! (`--guest-burst`, `--guest-per-minute`), and a browser that shows its previous guest
//! token (even one expired up to [`RENEW_GRACE_SECS`] ago) keeps its identity, so bans,
//! time-outs, rate limits and one vote per user mean something. `--no-guests` turns the
//! endpoint off.

use stagecast_proto::sync::lock_or_recover;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use stagecast_proto::address_limit::{AddressBuckets, Rate};
use stagecast_proto::token::{now_secs, Claims, TokenKey};
use stagecast_relay::metrics::Metrics;

use crate::names::ReservedNames;

/// How long a guest token lasts.
const GUEST_TTL_SECS: u64 = 12 * 3600;
/// How long after its expiry a guest token still names its holder for a renewal.
pub const RENEW_GRACE_SECS: u64 = 30 * 86_400;
/// The `sub` prefix of guest identities: only these are renewed as guests.
const GUEST_PREFIX: &str = "guest-";
/// The role guests hold.
const GUEST_ROLE: &str = "viewer";

/// How the origin hands out guest identities.
pub struct GuestPolicy {
    pub key: Option<TokenKey>,
    /// What a guest may watch: the anonymous prefixes.
    pub subscribe: Vec<String>,
    pub enabled: bool,
    pub rate: Rate,
}

struct GuestState {
    policy: GuestPolicy,
    buckets: Mutex<AddressBuckets>,
    names: Arc<ReservedNames>,
    metrics: Metrics,
}

#[derive(serde::Deserialize)]
struct GuestRequest {
    name: String,
    /// The guest token this browser held before, to keep its identity.
    #[serde(default)]
    token: Option<String>,
}

#[derive(serde::Serialize)]
struct GuestToken {
    token: String,
    user: String,
    name: String,
    expires_in: u64,
}

pub fn routes(policy: GuestPolicy, names: Arc<ReservedNames>, metrics: Metrics) -> Router {
    let buckets = Mutex::new(AddressBuckets::new(policy.rate));
    Router::new()
        .route("/api/guest", post(guest))
        .with_state(Arc::new(GuestState {
            policy,
            buckets,
            names,
            metrics,
        }))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn guest(
    State(state): State<Arc<GuestState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<GuestRequest>,
) -> Response {
    let policy = &state.policy;
    if !policy.enabled {
        return refuse(StatusCode::FORBIDDEN, "guest access is off on this origin");
    }
    let Some(key) = policy.key.as_ref() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this origin has no token key",
        );
    };
    let taken = lock_or_recover(&state.buckets).take(peer.ip(), Instant::now());
    if let Err(wait) = taken {
        state.metrics.limits_refused.inc("guest_rate");
        let secs = wait.as_secs().max(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            format!("too many guest sign-ins from your address; try again in {secs} s"),
        )
            .into_response();
    }
    let name = match state.names.guest_name(&request.name) {
        Ok(name) => name,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let now = now_secs();
    let user = request
        .token
        .as_deref()
        .and_then(|token| previous_guest(key, token, now))
        .unwrap_or_else(|| format!("{GUEST_PREFIX}{:016x}", rand::thread_rng().gen::<u64>()));
    let claims = Claims {
        sub: user.clone(),
        name: Some(name.clone()),
        role: Some(GUEST_ROLE.into()),
        publish: Vec::new(),
        subscribe: policy.subscribe.clone(),
        moderate: Vec::new(),
        exp: now.saturating_add(GUEST_TTL_SECS),
        iat: now,
    };
    match key.issue(&claims) {
        Ok(token) => Json(GuestToken {
            token,
            user,
            name,
            expires_in: GUEST_TTL_SECS,
        })
        .into_response(),
        Err(err) => refuse(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// The guest identity a previous guest token names, if it is ours, a guest's, and not
/// expired longer than [`RENEW_GRACE_SECS`].
fn previous_guest(key: &TokenKey, token: &str, now: u64) -> Option<String> {
    let claims = key.verify_ignoring_expiry(token).ok()?;
    let fresh = claims.exp.saturating_add(RENEW_GRACE_SECS) > now;
    (fresh && claims.sub.starts_with(GUEST_PREFIX) && claims.role.as_deref() == Some(GUEST_ROLE))
        .then_some(claims.sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_text(&TokenKey::generate_text()).unwrap()
    }

    fn token(key: &TokenKey, sub: &str, role: &str, exp: u64) -> String {
        key.issue(&Claims {
            sub: sub.into(),
            name: None,
            role: Some(role.into()),
            publish: Vec::new(),
            subscribe: Vec::new(),
            moderate: Vec::new(),
            exp,
            iat: 0,
        })
        .unwrap()
    }

    #[test]
    fn a_previous_guest_token_keeps_its_identity_within_the_grace() {
        let key = key();
        let now = now_secs();
        let live = token(&key, "guest-00000000000000aa", "viewer", now + 60);
        assert_eq!(
            previous_guest(&key, &live, now).as_deref(),
            Some("guest-00000000000000aa")
        );
        let lately = token(&key, "guest-00000000000000bb", "viewer", now - 3600);
        assert!(previous_guest(&key, &lately, now).is_some());
        let long_ago = token(
            &key,
            "guest-00000000000000cc",
            "viewer",
            now - RENEW_GRACE_SECS - 1,
        );
        assert_eq!(previous_guest(&key, &long_ago, now), None);
        // Not a guest's: a creator's identity is never handed to a guest.
        let creator = token(&key, "alice", "creator", now + 60);
        assert_eq!(previous_guest(&key, &creator, now), None);
        let forged = token(&self::key(), "guest-00000000000000dd", "viewer", now + 60);
        assert_eq!(previous_guest(&key, &forged, now), None);
    }
}
