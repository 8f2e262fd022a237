//! The HTTP routes every node serves: `/healthz`, `/readyz`, Prometheus `/metrics`, and
//! `/certificate.sha256` (the fingerprint clients pin for a development certificate). The
//! origin adds its own routes to this router. [`crate::node::http_server`] serves it, within
//! the HTTP port's limits.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use tokio::sync::watch;

use crate::node::http_server::HttpMetrics;
use crate::relay::Relay;

#[derive(Clone)]
struct NodeState {
    relay: Relay,
    /// Changes when a development certificate is renewed.
    fingerprint: watch::Receiver<String>,
}

pub fn routes(relay: Relay, fingerprint: watch::Receiver<String>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/certificate.sha256", get(certificate))
        .with_state(NodeState { relay, fingerprint })
}

/// The relay's metrics, and the HTTP port's when [`crate::node::http_server::serve`] serves it.
async fn metrics(
    State(state): State<NodeState>,
    http: Option<Extension<HttpMetrics>>,
) -> impl IntoResponse {
    let mut text = state
        .relay
        .metrics()
        .render(state.relay.registry().budget().used());
    if let Some(Extension(http)) = http {
        text.push_str(&http.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// 200 while the node can serve; 503 while draining or while its upstream link is down.
async fn readyz(State(state): State<NodeState>) -> impl IntoResponse {
    if state.relay.is_ready() {
        (axum::http::StatusCode::OK, "ready\n")
    } else if state.relay.is_draining() {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "upstream down\n",
        )
    }
}

async fn certificate(State(state): State<NodeState>) -> impl IntoResponse {
    // Any page may read it: a viewer served by the origin pins a relay's certificate.
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        format!("{}\n", *state.fingerprint.borrow()),
    )
}
