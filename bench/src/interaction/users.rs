//! Viewers who send requests: each has its own token and request stream (the CLI's
//! client, `stagecast_cli::interact::RequestStream`), several viewers share one QUIC
//! connection (its MoQ session carries their streams, as a browser tab's would carry
//! one), so thousands of viewers need only hundreds of connections.

use std::sync::Arc;

use anyhow::Context;
use stagecast_cli::connect::{connect_session, Connection};
use stagecast_cli::interact::RequestStream;
use stagecast_proto::interaction::Answer;
use stagecast_proto::trust::ClientTrust;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use url::Url;

/// Request streams a benchmark connection carries (relays refuse more than 16 at once).
pub const STREAMS_PER_CONNECTION: usize = 16;

/// One connection's MoQ session, kept running while its viewers' streams are used.
pub struct UserConnection {
    _client: stagecast_proto::endpoint::ClientEndpoint,
    transport: stagecast_proto::web_transport_quinn::Session,
    session: JoinHandle<()>,
}

impl UserConnection {
    pub fn close(self) {
        self.transport.close(0, b"done");
        self.session.abort();
    }
}

/// A viewer ready to send: its index among the benchmark's viewers and its stream.
pub struct User {
    pub index: usize,
    pub stream: RequestStream,
}

/// Connects `tokens.len()` viewers to `url`, [`STREAMS_PER_CONNECTION`] per connection,
/// `concurrency` connections being set up at a time; each viewer's hello is answered
/// before this returns.
pub async fn open_users(
    url: &Url,
    trust: &ClientTrust,
    broadcast: &str,
    tokens: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<(Vec<UserConnection>, Vec<User>)> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    let chunks: Vec<Vec<(usize, String)>> = tokens
        .into_iter()
        .enumerate()
        .collect::<Vec<_>>()
        .chunks(STREAMS_PER_CONNECTION)
        .map(<[_]>::to_vec)
        .collect();
    for chunk in chunks {
        let (url, trust, gate, broadcast) = (
            url.clone(),
            trust.clone(),
            gate.clone(),
            broadcast.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let Connection {
                client,
                transport,
                session,
                ..
            } = connect_session(&url, &trust, None).await?;
            let session = tokio::spawn(async move {
                let _ = session.run().await;
            });
            let connection = UserConnection {
                _client: client,
                transport,
                session,
            };
            let mut users = Vec::with_capacity(chunk.len());
            for (index, token) in chunk {
                let (stream, welcome) =
                    RequestStream::open(&connection.transport, &broadcast, Some(&token))
                        .await
                        .with_context(|| format!("viewer {index}: no request stream"))?;
                if !matches!(welcome, Answer::Welcome { user: Some(_), .. }) {
                    anyhow::bail!("viewer {index} was not welcomed: {welcome:?}");
                }
                users.push(User { index, stream });
            }
            anyhow::Ok((connection, users))
        }));
    }
    let mut connections = Vec::new();
    let mut users = Vec::new();
    for task in tasks {
        let (connection, mut some) = task.await??;
        connections.push(connection);
        users.append(&mut some);
    }
    users.sort_by_key(|u| u.index);
    Ok((connections, users))
}
