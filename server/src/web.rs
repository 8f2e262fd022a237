//! The origin's HTTP endpoints: the relay's `/healthz` and `/metrics`, the development
//! certificate's fingerprint at `/certificate.sha256` (what browsers and the CLI pin), and
//! `/api/broadcasts`, the broadcasts published here.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use stagecast_relay::Relay;
use tokio::sync::watch;

#[derive(Clone)]
struct WebState {
    relay: Relay,
    /// The certificate's fingerprint, changed when a development certificate is renewed.
    fingerprint: watch::Receiver<String>,
}

pub fn routes(relay: Relay, fingerprint: watch::Receiver<String>) -> Router {
    let state = WebState {
        relay: relay.clone(),
        fingerprint,
    };
    let own = Router::new()
        .route("/certificate.sha256", get(certificate))
        .route("/api/broadcasts", get(broadcasts))
        .with_state(state);
    stagecast_relay::http::routes(relay).merge(own)
}

async fn certificate(State(state): State<WebState>) -> String {
    format!("{}\n", *state.fingerprint.borrow())
}

#[derive(serde::Serialize)]
struct Broadcasts {
    broadcasts: Vec<String>,
}

async fn broadcasts(State(state): State<WebState>) -> Json<Broadcasts> {
    Json(Broadcasts {
        broadcasts: state.relay.router().paths(),
    })
}
