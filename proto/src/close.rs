//! Why a peer closed a session: the application close code and reason, whichever way the
//! transport carried them (a QUIC CONNECTION_CLOSE for raw QUIC, a WebTransport
//! CLOSE_WEBTRANSPORT_SESSION capsule for WebTransport).

use moq_transport::session::transport::Error as TransportError;
use moq_transport::session::SessionError;
use web_transport_quinn::{quinn, SessionError as QuinnSessionError, WebTransportError};

/// The peer's close code and reason, if the session ended because the peer closed it.
pub fn peer_close(err: &SessionError) -> Option<(u64, String)> {
    let SessionError::WebTransport(err) = err else {
        return None;
    };
    let session = match err {
        TransportError::Session(session) => session,
        TransportError::Read(web_transport_quinn::ReadError::SessionError(session)) => session,
        TransportError::Write(web_transport_quinn::WriteError::SessionError(session)) => session,
        _ => return None,
    };
    match session {
        QuinnSessionError::WebTransportError(WebTransportError::Closed(code, reason)) => {
            Some((u64::from(*code), reason.to_string()))
        }
        QuinnSessionError::ConnectionError(quinn::ConnectionError::ApplicationClosed(close)) => {
            Some((
                close.error_code.into_inner(),
                String::from_utf8_lossy(&close.reason).into_owned(),
            ))
        }
        _ => None,
    }
}

/// Waits up to `wait` for the QUIC connection under `session` to close, and returns the
/// peer's close code and reason if it closed it. Read from the connection itself: the
/// session layer above may have closed its side first and so lost the peer's reason.
pub async fn connection_close(
    session: &web_transport_quinn::Session,
    wait: std::time::Duration,
) -> Option<(u64, String)> {
    let connection: &quinn::Connection = session;
    let error = tokio::time::timeout(wait, connection.closed()).await.ok()?;
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => Some((
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        )),
        _ => None,
    }
}
