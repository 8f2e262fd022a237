//! Graceful shutdown on SIGTERM (or Ctrl-C): refuse new sessions, send every session a
//! GOAWAY (with the configured new URI and the drain time), end every subscription with
//! PUBLISH_DONE GOING_AWAY so subscribers move elsewhere, give sessions up to the drain
//! time to leave, then close the rest with GOAWAY_TIMEOUT and return.

use std::time::Duration;

use stagecast_proto::endpoint::EndpointHandle;

use crate::goaway::GoAwayNotice;
use crate::relay::Relay;

/// Draft-18 §15.10.1 GOAWAY_TIMEOUT: sessions still open when the drain time is up.
const SESSION_GOAWAY_TIMEOUT: u32 = 0x10;
/// How often the drain checks whether the last session has left.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Drains the node: returns when every session has left or `timeout` has passed.
pub async fn drain(
    relay: &Relay,
    endpoint: &EndpointHandle,
    timeout: Duration,
    new_session_uri: Option<&url::Url>,
) {
    tracing::info!(
        ?timeout,
        "draining: refusing new sessions, moving subscribers away"
    );
    endpoint.refuse_new();
    relay.start_drain(GoAwayNotice {
        new_session_uri: new_session_uri.map(|u| u.to_string()).unwrap_or_default(),
        timeout,
    });
    let deadline = tokio::time::Instant::now() + timeout;
    while relay.metrics().sessions.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let left = relay.metrics().sessions.get();
    if left > 0 {
        tracing::info!(
            sessions = left,
            "drain time is up; closing the remaining sessions"
        );
    }
    endpoint.close(SESSION_GOAWAY_TIMEOUT, "going away");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    tracing::info!("drained");
}
