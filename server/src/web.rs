//! The origin's HTTP endpoints: every node's (`/healthz`, `/metrics`,
//! `/certificate.sha256`), plus `/api/broadcasts`, the broadcasts published here.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use stagecast_relay::Relay;
use tokio::sync::watch;

pub fn routes(relay: Relay, fingerprint: watch::Receiver<String>) -> Router {
    let own = Router::new()
        .route("/api/broadcasts", get(broadcasts))
        .with_state(relay.clone());
    stagecast_relay::node::http::routes(relay, fingerprint).merge(own)
}

#[derive(serde::Serialize)]
struct Broadcasts {
    broadcasts: Vec<String>,
}

async fn broadcasts(State(relay): State<Relay>) -> Json<Broadcasts> {
    Json(Broadcasts {
        broadcasts: relay.router().paths(),
    })
}
