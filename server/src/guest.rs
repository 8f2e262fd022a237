//! `POST /api/guest`: a token for a viewer who has none, with the display name they chose,
//! so they can chat, vote and tip (docs/interaction.md §1.3). Guests may watch everything
//! and publish nothing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use stagecast_proto::token::{now_secs, Claims, TokenKey};

/// How long a guest token lasts.
const GUEST_TTL_SECS: u64 = 12 * 3600;
const MAX_NAME_CHARS: usize = 32;

#[derive(serde::Deserialize)]
struct GuestRequest {
    name: String,
}

#[derive(serde::Serialize)]
struct GuestToken {
    token: String,
    user: String,
    name: String,
    expires_in: u64,
}

pub fn routes(key: Option<TokenKey>) -> Router {
    Router::new()
        .route("/api/guest", post(guest))
        .with_state(key)
}

async fn guest(
    State(key): State<Option<TokenKey>>,
    Json(request): Json<GuestRequest>,
) -> Result<Json<GuestToken>, (StatusCode, String)> {
    let key = key.ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "this origin has no token key".to_string(),
    ))?;
    let name = valid_name(&request.name).ok_or((
        StatusCode::BAD_REQUEST,
        format!("a display name is 1 to {MAX_NAME_CHARS} printable characters"),
    ))?;
    let user = format!("guest-{:016x}", rand::thread_rng().gen::<u64>());
    let now = now_secs();
    let claims = Claims {
        sub: user.clone(),
        name: Some(name.clone()),
        role: Some("viewer".into()),
        publish: Vec::new(),
        subscribe: vec![String::new()],
        exp: now + GUEST_TTL_SECS,
        iat: now,
    };
    let token = key
        .issue(&claims)
        .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    Ok(Json(GuestToken {
        token,
        user,
        name,
        expires_in: GUEST_TTL_SECS,
    }))
}

fn valid_name(name: &str) -> Option<String> {
    let name = name.trim();
    let chars = name.chars().count();
    ((1..=MAX_NAME_CHARS).contains(&chars) && !name.chars().any(char::is_control))
        .then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name("  Ann "), Some("Ann".into()));
        assert_eq!(valid_name("   "), None);
        assert_eq!(valid_name(&"x".repeat(33)), None);
        assert_eq!(valid_name("a\u{7}b"), None);
        assert_eq!(valid_name("<b>Zoë</b>"), Some("<b>Zoë</b>".into()));
    }
}
