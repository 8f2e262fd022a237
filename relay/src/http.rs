//! The HTTP routes every node serves: `/healthz` and Prometheus `/metrics`. The origin adds
//! its own routes to this router.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::relay::Relay;

pub fn routes(relay: Relay) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(relay)
}

async fn metrics(State(relay): State<Relay>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        relay.metrics().render(),
    )
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
