//! The loop that serves a node's HTTP port, with every resource it can be made to hold
//! bounded (`axum::serve` has no header-read timeout, so idle sockets were kept forever):
//!
//! - a cap on open connections, in total and per client address (an IPv6 client by its
//!   /64): past either a new connection is closed at once, and counted;
//! - a header-read timeout (hyper's): a connection that has not sent a whole request head
//!   in time, first request or next one on a kept-alive connection, is closed;
//! - a whole-request timeout: reading the body and answering, else `408`;
//! - a body size limit: a larger declared body gets `413` before it is read, a larger
//!   chunked one is cut off by [`http_body_util::Limited`] (axum answers `413`).
//!
//! Every response gets the security headers a browser needs (`nosniff`, no referrer, no
//! framing); a route may set its own Content-Security-Policy (the viewer's pages do),
//! the others get one that allows nothing.
//!
//! With a TLS configuration (a real certificate) the same port also speaks HTTPS: the
//! first byte of a connection tells (`0x16`, a TLS handshake record, or the first letter of
//! an HTTP method), so health checks and scrapers may keep using plain HTTP.

use stagecast_proto::sync::lock_or_recover;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use stagecast_proto::address_limit::{AddressCounts, CapReached};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::metrics::{Counter, Gauge, GaugeGuard};

/// Largest request head hyper buffers (request line and headers): a request needs far
/// less, and every open connection may hold this much.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// File descriptors kept for everything but HTTP connections (the UDP socket, the
/// database, logs, qlog files) when the connection cap is clamped to the process's limit.
const RESERVED_FDS: usize = 128;
/// How long to stop accepting after `accept` fails (out of file descriptors): trying
/// again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// The limits of one node's HTTP port.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a connection may take to send a request head.
    pub header_timeout: Duration,
    /// How long a request may take, from its head to the response (reading its body too).
    pub request_timeout: Duration,
    /// Connections open at once; more are closed on arrival.
    pub max_connections: usize,
    /// Connections one client address may have open at once.
    pub max_connections_per_address: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 256,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// What the HTTP port counts, rendered beside the relay's metrics at `/metrics`.
#[derive(Default)]
pub struct HttpMetricsInner {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub connections_refused_total: Counter,
    pub connections_per_address_refused_total: Counter,
    pub header_timeouts_total: Counter,
    pub request_timeouts_total: Counter,
    pub bodies_refused_total: Counter,
    pub tls_handshake_failures_total: Counter,
}

/// Shared handle to the HTTP port's metrics.
#[derive(Clone, Default)]
pub struct HttpMetrics(Arc<HttpMetricsInner>);

impl std::ops::Deref for HttpMetrics {
    type Target = HttpMetricsInner;
    fn deref(&self) -> &HttpMetricsInner {
        &self.0
    }
}

impl HttpMetrics {
    /// The Prometheus text of these metrics.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP stagecast_http_connections Open HTTP connections.\n# TYPE stagecast_http_connections gauge\nstagecast_http_connections {}",
            self.connections.get()
        );
        for (name, help, value) in [
            ("stagecast_http_connections_total", "HTTP connections accepted.", &self.connections_total),
            (
                "stagecast_http_connections_refused_total",
                "HTTP connections closed on arrival: the connection cap (--http-max-connections) was reached.",
                &self.connections_refused_total,
            ),
            (
                "stagecast_http_connections_per_address_refused_total",
                "HTTP connections closed on arrival: their client address had --http-max-connections-per-address open.",
                &self.connections_per_address_refused_total,
            ),
            (
                "stagecast_http_header_timeouts_total",
                "HTTP connections closed for not sending a request head within --http-header-timeout.",
                &self.header_timeouts_total,
            ),
            (
                "stagecast_http_request_timeouts_total",
                "HTTP requests answered 408: not done within --http-request-timeout.",
                &self.request_timeouts_total,
            ),
            (
                "stagecast_http_bodies_refused_total",
                "HTTP requests answered 413: a body over --http-max-body.",
                &self.bodies_refused_total,
            ),
            (
                "stagecast_http_tls_handshake_failures_total",
                "HTTPS connections whose TLS handshake failed or timed out.",
                &self.tls_handshake_failures_total,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.get()
            );
        }
        out
    }
}

/// The connection cap actually used: `wanted`, with the process's soft open-files limit
/// first raised as far as its hard limit allows (it is often 1024, which a thousand idle
/// sockets fill: then `accept` fails and nobody gets in), and the cap kept under that
/// limit, [`RESERVED_FDS`] below it for the rest of the node.
pub fn effective_max_connections(wanted: usize) -> usize {
    let wanted_files = u64::try_from(wanted.saturating_add(RESERVED_FDS)).unwrap_or(u64::MAX);
    let limit = match rlimit::increase_nofile_limit(wanted_files) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(err) => {
            tracing::warn!(%err, "cannot read or raise the open-files limit");
            return wanted;
        }
    };
    if wanted.saturating_add(RESERVED_FDS) <= limit {
        return wanted;
    }
    let cap = limit.saturating_sub(RESERVED_FDS).max(1);
    tracing::warn!(
        wanted,
        cap,
        open_files_limit = limit,
        "--http-max-connections is above what the open-files limit allows; raise the hard limit (`ulimit -Hn`, LimitNOFILE=) to use it"
    );
    cap
}

/// Serves `router` on `listener` until the process ends, within `limits`; with `tls`,
/// HTTPS as well as HTTP. Counts into `metrics` (which `/metrics` renders: the router gets
/// them as an extension).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: HttpMetrics,
) {
    let router = router.layer(axum::Extension(metrics.clone()));
    let counts = Arc::new(Mutex::new(AddressCounts::new(
        limits.max_connections_per_address,
        limits.max_connections,
    )));
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "cannot accept an HTTP connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let slot = match Slot::take(&counts, peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                match cap {
                    CapReached::Total => metrics.connections_refused_total.inc(),
                    CapReached::PerKey => metrics.connections_per_address_refused_total.inc(),
                }
                drop(stream);
                continue;
            }
        };
        metrics.connections_total.inc();
        tokio::spawn(connection(
            stream,
            peer,
            slot,
            router.clone(),
            limits,
            tls.clone(),
            metrics.clone(),
        ));
    }
}

/// A connection's place under the caps, given back when it is dropped.
struct Slot {
    counts: Arc<Mutex<AddressCounts>>,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Arc<Mutex<AddressCounts>>, ip: IpAddr) -> Result<Slot, CapReached> {
        lock_or_recover(counts).acquire(ip)?;
        Ok(Slot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock_or_recover(&self.counts).release(self.ip);
    }
}

/// One connection, from its first byte to its close; holds its place under the caps.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    router: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: HttpMetrics,
) {
    let _open = GaugeGuard::new(&metrics.connections);
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return http1(stream, peer, router, limits, &metrics).await;
    };
    // Plain HTTP or TLS? Waiting for the first byte is waiting for the head.
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.header_timeout, stream.peek(&mut first)).await {
        Err(_) => {
            metrics.header_timeouts_total.inc();
            return;
        }
        Ok(Err(_)) | Ok(Ok(0)) => return,
        Ok(Ok(_)) => {}
    }
    if first[0] != TLS_HANDSHAKE {
        return http1(stream, peer, router, limits, &metrics).await;
    }
    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => http1(stream, peer, router, limits, &metrics).await,
        Ok(Err(err)) => {
            metrics.tls_handshake_failures_total.inc();
            tracing::debug!(%err, "HTTPS handshake failed");
        }
        Err(_) => {
            metrics.tls_handshake_failures_total.inc();
            metrics.header_timeouts_total.inc();
        }
    }
}

/// Serves HTTP/1.1 requests on `io` until the peer closes or a limit closes it.
async fn http1<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    metrics: &HttpMetrics,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_metrics = metrics.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        // Routes that limit by client address read it as axum's ConnectInfo.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        handle(router.clone(), limits, request_metrics.clone(), request)
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .await;
    match served {
        Ok(()) => {}
        Err(err) if err.is_timeout() => metrics.header_timeouts_total.inc(),
        Err(err) => tracing::debug!(%err, "HTTP connection ended with an error"),
    }
}

/// One request: the body limit, the request timeout, the router, the security headers.
async fn handle(
    router: Router,
    limits: HttpLimits,
    metrics: HttpMetrics,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large =
        |declared: u64| usize::try_from(declared).map_or(true, |n| n > limits.max_body_bytes);
    if declared.is_some_and(too_large) {
        metrics.bodies_refused_total.inc();
        return Ok(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large\n",
        ));
    }
    let request = request.map(|body| http_body_util::Limited::new(body, limits.max_body_bytes));
    let mut response =
        match tokio::time::timeout(limits.request_timeout, router.oneshot(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                metrics.request_timeouts_total.inc();
                refusal(StatusCode::REQUEST_TIMEOUT, "the request took too long\n")
            }
        };
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && declared.is_none() {
        metrics.bodies_refused_total.inc();
    }
    security_headers(response.headers_mut());
    Ok(response)
}

/// A plain-text refusal that also ends the connection (the rest of what the peer sent
/// is not read).
fn refusal(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    security_headers(headers);
    response
}

/// The Content-Security-Policy of a response that is not a page: nothing may load it as
/// one, nor frame it.
pub const NO_CONTENT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the headers every response carries (a route's own Content-Security-Policy stays).
fn security_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(NO_CONTENT_POLICY));
}
