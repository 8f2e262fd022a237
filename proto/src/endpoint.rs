//! QUIC endpoints: one UDP port serving MoQ Transport draft-18 over both WebTransport
//! (HTTP/3, ALPN `h3`, MoQT version chosen through `WT-Available-Protocols`) and raw QUIC
//! (ALPN `moqt-18`), and the client that connects to either by URL scheme
//! (`https://` or `moqt://`).
//!
//! What comes out is a `web_transport_quinn::Session` either way, so the MoQ session layer
//! above never needs to know which transport carried it.

use crate::sync::lock_or_recover;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use moq_transport::session::Transport;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use url::Url;
use web_transport_quinn::proto::{ConnectRequest, ConnectResponse};
use web_transport_quinn::Session;

use crate::admission::{Admission, AdmissionLimits, Admit};
use crate::certificate::ServerIdentity;
use crate::trust::ClientTrust;

/// The raw-QUIC ALPN for MoQ Transport draft-18.
pub const MOQT_ALPN: &str = "moqt-18";
/// UDP socket buffer size requested for endpoints.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// A connection silent this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a peer gets to finish the QUIC and WebTransport handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more wait in quinn's queue (and are refused by it
/// when that fills), so a flood of half-open connections cannot grow memory.
const MAX_PENDING_HANDSHAKES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("URL {0} must start with moqt:// (raw QUIC) or https:// (WebTransport)")]
    Scheme(String),
    #[error("URL {0} has no host")]
    NoHost(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("timed out connecting to {0}")]
    Timeout(String),
}

/// Bytes a peer may send on one connection ahead of what this side has read, by default.
/// quinn's own default is unbounded (VarInt::MAX): one peer could make a node buffer
/// hundreds of MB it has not read. 16 MiB is a second of 128 Mbit/s.
pub const DEFAULT_RECEIVE_WINDOW: u64 = 16 * 1024 * 1024;

/// What a server endpoint bounds, and where it writes qlogs.
#[derive(Clone, Debug)]
pub struct EndpointOptions {
    pub admission: AdmissionLimits,
    /// Connection-level flow-control window (bytes received but not yet read).
    pub receive_window: u64,
    /// Where to write a qlog per connection; off when `None`.
    pub qlog_dir: Option<PathBuf>,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            admission: AdmissionLimits::default(),
            receive_window: DEFAULT_RECEIVE_WINDOW,
            qlog_dir: None,
        }
    }
}

fn transport_config(receive_window: u64) -> Arc<quinn::TransportConfig> {
    Arc::new(base_transport_config(receive_window))
}

fn base_transport_config(receive_window: u64) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.receive_window(
        quinn::VarInt::from_u64(receive_window).unwrap_or(quinn::VarInt::from_u32(u32::MAX)),
    );
    // A vanished peer is noticed within IDLE_TIMEOUT (a live stream stalled longer is
    // broken anyway); keep-alives stop an idle but healthy session (a subscriber waiting
    // for the next group) from timing out.
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).unwrap_or(quinn::VarInt::from_u32(6_000).into()),
    ));
    transport.keep_alive_interval(Some(IDLE_TIMEOUT / 3));
    // MoQ opens one unidirectional stream per subgroup; bound how many a peer may
    // have open at once.
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(256));
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(PEER_BIDI_STREAMS));
    transport
}

/// Bidirectional streams any peer may have open at once: a viewer's MoQ requests and its
/// interaction request stream fit many times over.
pub const PEER_BIDI_STREAMS: u32 = 128;

/// Bidirectional streams a relay link may have open at first: it carries one interaction
/// request stream for each viewer of the relay (and of relays under it), each held for the
/// viewer's whole visit, beside its MoQ requests. quinn sets up state for every stream a
/// peer may open (about 100 bytes each), so the allowance starts here and grows with use
/// up to [`RELAY_LINK_MAX_BIDI_STREAMS`].
pub const RELAY_LINK_BIDI_STREAMS: u32 = 1024;
/// The most bidirectional streams a relay link may grow to.
pub const RELAY_LINK_MAX_BIDI_STREAMS: u32 = 65_536;

/// Binds a UDP socket; an IPv6 wildcard also accepts IPv4 (dual stack), because Chromium
/// reaches `localhost` over `::1` only while command-line tools often use 127.0.0.1.
fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, EndpointError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| EndpointError::Bind { addr, source };
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(err)?;
    }
    // The default receive buffer (about 200 KiB) overflows when one object fans out to
    // hundreds of connections and their ACKs arrive together: measured with
    // stagecast-bench at 500 subscribers (18,600 datagrams dropped in 20 s). Ask for more;
    // the kernel caps it at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into()).map_err(err)?;
    tracing::debug!(
        recv = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
    Ok(socket.into())
}

/// A session a peer opened, with how it arrived.
pub struct Accepted {
    pub session: Session,
    pub transport: Transport,
    pub remote: SocketAddr,
    /// The WebTransport CONNECT URL (path and query carry the broadcast and `?jwt=`);
    /// for raw QUIC the path arrives later in the MoQ SETUP.
    pub url: Url,
    /// Holds the connection's slot against the endpoint's connection caps until dropped:
    /// keep it as long as the session.
    pub permit: ConnectionPermit,
}

/// Told each time a limit refuses (or, for `quic_retry`, defers) a connection.
pub type LimitHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// A connection's slot against the caps of [`AdmissionLimits`]; released when dropped.
pub struct ConnectionPermit {
    admission: Arc<std::sync::Mutex<Admission>>,
    ip: std::net::IpAddr,
    established: bool,
}

impl ConnectionPermit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        lock_or_recover(&self.admission)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let ip = self.ip;
        if self.established {
            self.lock().closed(ip);
        } else {
            self.lock().handshake_done(ip, false);
        }
    }
}

type Handshake = futures_util::future::BoxFuture<'static, Result<Accepted, String>>;

/// The listening side: accepts QUIC connections and completes their handshakes.
pub struct ServerEndpoint {
    quic: quinn::Endpoint,
    handshakes: futures_util::stream::FuturesUnordered<Handshake>,
    /// Where to write a qlog per connection, for debugging QUIC; off when `None`.
    qlog_dir: Option<Arc<PathBuf>>,
    /// The server configuration in use (shared with [`EndpointHandle`], which replaces it
    /// on certificate renewal); connections with a qlog are accepted with a copy of it.
    config: Arc<std::sync::Mutex<quinn::ServerConfig>>,
    /// Set by [`EndpointHandle::refuse_new`]: new connections are refused at once
    /// (CONNECTION_REFUSED), so a client that retries here learns it without waiting.
    refusing: Arc<std::sync::atomic::AtomicBool>,
    admission: Arc<std::sync::Mutex<Admission>>,
    on_limit: LimitHook,
    receive_window: u64,
}

/// The QUIC server configuration for `identity`, offering WebTransport and raw MoQT.
fn server_config(
    identity: &ServerIdentity,
    receive_window: u64,
) -> Result<quinn::ServerConfig, EndpointError> {
    let mut alpns: Vec<&[u8]> = vec![web_transport_quinn::ALPN.as_bytes()];
    alpns.extend(
        moq_transport::setup::SUPPORTED_ALPNS
            .iter()
            .map(|a| a.as_bytes()),
    );
    let tls = identity
        .server_config(&alpns)
        .map_err(|e| EndpointError::Tls(e.to_string()))?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(receive_window));
    Ok(config)
}

/// An endpoint configuration whose stateless-reset key and connection-ID validation key
/// come from the identity, so they survive a restart: a restarted node recognises its
/// predecessor's connection IDs and resets those connections at once (RFC 9000 §10.3),
/// and their peers reconnect within a keep-alive instead of an idle timeout.
fn restart_safe_config(identity: &ServerIdentity) -> quinn::EndpointConfig {
    let secret = identity.reset_secret();
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&secret[24..]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// Controls a running endpoint from outside its accept loop.
#[derive(Clone)]
pub struct EndpointHandle {
    quic: quinn::Endpoint,
    config: Arc<std::sync::Mutex<quinn::ServerConfig>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    receive_window: u64,
}

impl EndpointHandle {
    /// Replaces the certificate: new handshakes use the new one, open connections keep
    /// theirs.
    pub fn set_identity(&self, identity: &ServerIdentity) -> Result<(), EndpointError> {
        let config = server_config(identity, self.receive_window)?;
        *lock_or_recover(&self.config) = config.clone();
        self.quic.set_server_config(Some(config));
        Ok(())
    }

    /// Stops accepting new connections; existing ones continue.
    pub fn refuse_new(&self) {
        self.refusing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Closes every connection with `code` and `reason`.
    pub fn close(&self, code: u32, reason: &str) {
        self.quic
            .close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }

    /// Waits until closed connections have said goodbye (bound it with a timeout).
    pub async fn wait_idle(&self) {
        self.quic.wait_idle().await;
    }
}

impl ServerEndpoint {
    pub fn bind(addr: SocketAddr, identity: &ServerIdentity) -> Result<Self, EndpointError> {
        Self::bind_with(addr, identity, EndpointOptions::default())
    }

    /// Like [`Self::bind`], with the limits and qlog directory of `options`.
    pub fn bind_with(
        addr: SocketAddr,
        identity: &ServerIdentity,
        options: EndpointOptions,
    ) -> Result<Self, EndpointError> {
        let config = server_config(identity, options.receive_window)?;
        let shared_config = Arc::new(std::sync::Mutex::new(config.clone()));
        let socket = bind_udp(addr)?;
        let runtime = quinn::default_runtime().ok_or_else(|| EndpointError::Bind {
            addr,
            source: std::io::Error::other("no async runtime"),
        })?;
        let quic =
            quinn::Endpoint::new(restart_safe_config(identity), Some(config), socket, runtime)
                .map_err(|source| EndpointError::Bind { addr, source })?;
        Ok(Self {
            quic,
            handshakes: Default::default(),
            qlog_dir: options.qlog_dir.map(Arc::new),
            config: shared_config,
            refusing: Default::default(),
            admission: Arc::new(std::sync::Mutex::new(Admission::new(options.admission))),
            on_limit: Arc::new(|_| {}),
            receive_window: options.receive_window,
        })
    }

    /// Calls `hook` with the limit's name each time one refuses a connection.
    pub fn on_limit(&mut self, hook: LimitHook) {
        self.on_limit = hook;
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.quic.local_addr()
    }

    /// A handle to control the endpoint while its accept loop runs.
    pub fn handle(&self) -> EndpointHandle {
        EndpointHandle {
            quic: self.quic.clone(),
            config: self.config.clone(),
            refusing: self.refusing.clone(),
            receive_window: self.receive_window,
        }
    }

    /// The next peer whose handshake completed, or `None` once the endpoint is closed.
    /// Failed handshakes are logged and skipped.
    pub async fn accept(&mut self) -> Option<Accepted> {
        loop {
            tokio::select! {
                incoming = self.quic.accept(), if self.handshakes.len() < MAX_PENDING_HANDSHAKES => {
                    let incoming = incoming?;
                    if self.refusing.load(std::sync::atomic::Ordering::Relaxed) {
                        incoming.refuse();
                        continue;
                    }
                    let ip = incoming.remote_address().ip();
                    let admit = lock_or_recover(&self.admission)
                        .incoming(ip, incoming.remote_address_validated(), incoming.may_retry());
                    match admit {
                        Admit::Accept => {}
                        Admit::Retry => {
                            (self.on_limit)("quic_retry");
                            if let Err(err) = incoming.retry() {
                                err.into_incoming().ignore();
                            }
                            continue;
                        }
                        Admit::Refuse(limit) => {
                            (self.on_limit)(limit);
                            tracing::debug!(%ip, limit, "connection refused by a limit");
                            incoming.refuse();
                            continue;
                        }
                    }
                    let permit = ConnectionPermit {
                        admission: self.admission.clone(),
                        ip,
                        established: false,
                    };
                    let qlog = self.qlog_dir.as_ref().map(|dir| {
                        (
                            dir.clone(),
                            lock_or_recover(&self.config).clone(),
                            self.receive_window,
                        )
                    });
                    let handshake = async move {
                        let mut accepted =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(incoming, qlog, permit))
                                .await
                                .map_err(|_| "handshake timed out".to_string())??;
                        accepted.permit.lock().handshake_done(ip, true);
                        accepted.permit.established = true;
                        Ok(accepted)
                    };
                    self.handshakes.push(handshake.boxed());
                }
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => match done {
                    Ok(accepted) => return Some(accepted),
                    Err(reason) => tracing::debug!(%reason, "handshake failed"),
                }
            }
        }
    }
}

/// Accepts with a transport configuration that writes this connection's qlog into `dir`.
fn accept_with_qlog(
    incoming: quinn::Incoming,
    dir: &Path,
    mut config: quinn::ServerConfig,
    receive_window: u64,
) -> Result<quinn::Connecting, String> {
    let cid = incoming.orig_dst_cid();
    let path = dir.join(format!("{cid}_server.qlog"));
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut transport = base_transport_config(receive_window);
    let mut qlog = quinn::QlogConfig::default();
    qlog.writer(Box::new(std::io::BufWriter::new(file)))
        .title(Some("stagecast".into()));
    transport.qlog_stream(qlog.into_stream());
    config.transport_config(Arc::new(transport));
    incoming
        .accept_with(Arc::new(config))
        .map_err(|e| e.to_string())
}

async fn handshake(
    incoming: quinn::Incoming,
    qlog: Option<(Arc<PathBuf>, quinn::ServerConfig, u64)>,
    permit: ConnectionPermit,
) -> Result<Accepted, String> {
    let remote = incoming.remote_address();
    let connecting = match qlog {
        Some((dir, config, window)) => accept_with_qlog(incoming, &dir, config, window)?,
        None => incoming.accept().map_err(|e| e.to_string())?,
    };
    let conn = connecting.await.map_err(|e| e.to_string())?;
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .unwrap_or_default();
    if alpn == web_transport_quinn::ALPN.as_bytes() {
        let request = web_transport_quinn::Request::accept(conn.clone())
            .await
            .map_err(|e| format!("WebTransport request: {e}"))?;
        let url = request.url.clone();
        // draft-18 §3.1.3: the MoQT version comes from WT-Available-Protocols; a client
        // offering none we speak gets a 406 rather than a session that fails at SETUP.
        let Some(selected) = moq_transport::setup::negotiate_version(&request.protocols) else {
            let offered = request.protocols.len();
            let _ = request
                .reject(web_transport_quinn::http::StatusCode::NOT_ACCEPTABLE)
                .await;
            let _ = tokio::time::timeout(Duration::from_millis(250), conn.closed()).await;
            conn.close(
                quinn::VarInt::from_u32(0x100),
                b"no supported MoQT version offered",
            );
            return Err(format!(
                "WebTransport CONNECT offered no moqt-18 ({offered} protocols)"
            ));
        };
        let response = ConnectResponse::OK.with_protocol(selected.to_string());
        let session = request
            .respond(response)
            .await
            .map_err(|e| format!("WebTransport respond: {e}"))?;
        Ok(Accepted {
            session,
            transport: Transport::WebTransport,
            remote,
            url,
            permit,
        })
    } else if alpn == MOQT_ALPN.as_bytes() {
        let url = Url::parse("moqt://localhost/").map_err(|e| e.to_string())?;
        let session = Session::raw(conn, url.clone(), ConnectResponse::default());
        Ok(Accepted {
            session,
            transport: Transport::RawQuic,
            remote,
            url,
            permit,
        })
    } else {
        conn.close(quinn::VarInt::from_u32(0x100), b"unsupported ALPN");
        Err(format!(
            "unsupported ALPN {:?}",
            String::from_utf8_lossy(&alpn)
        ))
    }
}

/// The connecting side: one UDP socket (dual stack) for any number of connections.
#[derive(Clone)]
pub struct ClientEndpoint {
    quic: quinn::Endpoint,
}

impl ClientEndpoint {
    pub fn new() -> Result<Self, EndpointError> {
        let socket = bind_udp(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
            .or_else(|_| bind_udp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))?;
        let addr = socket.local_addr().map_err(|source| EndpointError::Bind {
            addr: SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            source,
        })?;
        let runtime = quinn::default_runtime().ok_or_else(|| EndpointError::Bind {
            addr,
            source: std::io::Error::other("no async runtime"),
        })?;
        let quic = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        Ok(Self { quic })
    }

    /// Connects to `url` (`moqt://host:port/...` or `https://host:port/...`) and returns
    /// the session, ready for the MoQ SETUP exchange.
    pub async fn connect(
        &self,
        url: &Url,
        trust: &ClientTrust,
    ) -> Result<(Session, Transport), EndpointError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect_inner(url, trust))
            .await
            .map_err(|_| EndpointError::Timeout(url.to_string()))?
    }

    async fn connect_inner(
        &self,
        url: &Url,
        trust: &ClientTrust,
    ) -> Result<(Session, Transport), EndpointError> {
        let transport = match url.scheme() {
            "https" => Transport::WebTransport,
            "moqt" => Transport::RawQuic,
            _ => return Err(EndpointError::Scheme(url.to_string())),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(EndpointError::NoHost(url.to_string())),
        };
        let port = url.port().unwrap_or(443);
        let addr = resolve(&host, port).await?;

        let mut tls = trust
            .client_config()
            .map_err(|e| EndpointError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![match transport {
            Transport::WebTransport => web_transport_quinn::ALPN.as_bytes().to_vec(),
            Transport::RawQuic => MOQT_ALPN.as_bytes().to_vec(),
        }];
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config(DEFAULT_RECEIVE_WINDOW));

        let connect_err = |reason: String| EndpointError::Connect {
            url: url.to_string(),
            reason,
        };
        let conn = self
            .quic
            .connect_with(config, addr, &host)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let session = match transport {
            Transport::WebTransport => {
                let mut request = ConnectRequest::new(url.clone());
                for alpn in moq_transport::setup::SUPPORTED_ALPNS {
                    request = request.with_protocol(alpn.to_string());
                }
                Session::connect(conn, request)
                    .await
                    .map_err(|e| connect_err(e.to_string()))?
            }
            Transport::RawQuic => Session::raw(conn, url.clone(), ConnectResponse::default()),
        };
        Ok((session, transport))
    }

    /// Waits until every connection of this endpoint has closed, so close frames are sent
    /// before the process exits.
    pub async fn wait_idle(&self) {
        self.quic.wait_idle().await;
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, EndpointError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolve_err = |reason: String| EndpointError::Resolve {
        host: host.to_string(),
        reason,
    };
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| resolve_err(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| resolve_err("no addresses".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quinn's own default connection window is unbounded (VarInt::MAX); ours is the
    /// configured one, for servers and clients alike.
    #[test]
    fn the_connection_receive_window_is_bounded() {
        let shown = format!("{:?}", base_transport_config(DEFAULT_RECEIVE_WINDOW));
        assert!(
            shown.contains(&format!("receive_window: {DEFAULT_RECEIVE_WINDOW}")),
            "{shown}"
        );
        let unbounded = format!("{:?}", quinn::TransportConfig::default());
        assert!(!unbounded.contains(&format!("receive_window: {DEFAULT_RECEIVE_WINDOW}")));
        let small = format!("{:?}", base_transport_config(1 << 20));
        assert!(small.contains("receive_window: 1048576"), "{small}");
    }
}
