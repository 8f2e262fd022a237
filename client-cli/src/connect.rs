//! Connection options shared by the commands: which server, and how to trust its
//! certificate.

use anyhow::Context;
use clap::Args;
use moq_transport::session::{Publisher, Session, Subscriber};
use moq_transport::setup::AuthorizationToken;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::goaway::GoAway;
use stagecast_proto::migration::MigratingSession;
use stagecast_proto::token::JWT_TOKEN_TYPE;
use stagecast_proto::trust::{trust_for, ClientTrust};
use stagecast_proto::web_transport_quinn;
use tokio::sync::watch;
use url::Url;

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Trust the server's certificate by its SHA-256 fingerprint (hex, as the server prints
    /// it) instead of the system's roots.
    #[arg(long, env = "STAGECAST_FINGERPRINT", global = true)]
    pub fingerprint: Option<String>,
    /// Where a loopback server publishes its fingerprint
    /// (default http://HOST:8080/certificate.sha256).
    #[arg(long, env = "STAGECAST_CERT_URL", global = true)]
    pub cert_url: Option<Url>,
    /// Access token (from `stagecast token issue`), presented at setup.
    #[arg(long, env = "STAGECAST_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    pub async fn trust(&self, url: &Url) -> anyhow::Result<ClientTrust> {
        trust_for(url, self.fingerprint.as_deref(), self.cert_url.as_ref())
            .await
            .context("cannot decide how to trust the server's certificate")
    }
}

/// A connected MoQ session and the handles to use it.
pub struct Connection {
    pub client: ClientEndpoint,
    /// The transport session, kept to close it with a reason when done.
    pub transport: web_transport_quinn::Session,
    /// Becomes `Some` when the server sends GOAWAY (it is draining).
    pub goaway: watch::Receiver<Option<GoAway>>,
    pub session: Session,
    pub publisher: Publisher,
    pub subscriber: Subscriber,
}

/// Connects and completes the MoQ SETUP.
pub async fn connect_session(
    url: &Url,
    trust: &ClientTrust,
    token: Option<&str>,
) -> anyhow::Result<Connection> {
    let client = ClientEndpoint::new()?;
    let (transport_session, transport) = client.connect(url, trust).await?;
    let tokens = token
        .iter()
        .map(|t| AuthorizationToken::new(JWT_TOKEN_TYPE, t.as_bytes().to_vec()))
        .collect();
    let migrating = MigratingSession::new(transport_session.clone());
    let (session, publisher, subscriber) =
        Session::connect_with_tokens(migrating.transport(), None, transport, tokens)
            .await
            .with_context(|| format!("MoQ setup with {url} failed"))?;
    Ok(Connection {
        client,
        transport: transport_session,
        goaway: migrating.goaway(),
        session,
        publisher,
        subscriber,
    })
}
