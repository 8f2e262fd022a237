//! The accept loop: every connection the endpoint completes becomes a session task.

use stagecast_proto::endpoint::ServerEndpoint;

use crate::relay::Relay;
use crate::session::serve_session;

/// Accepts sessions until the endpoint closes; connections a limit refuses are counted in
/// `stagecast_limit_refused_total`.
pub async fn serve_endpoint(relay: Relay, mut endpoint: ServerEndpoint) {
    let metrics = relay.metrics().clone();
    endpoint.on_limit(std::sync::Arc::new(move |limit| {
        metrics.limits_refused.inc(limit)
    }));
    while let Some(accepted) = endpoint.accept().await {
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_session(relay, accepted).await {
                tracing::debug!(%err, "session failed");
            }
        });
    }
}
