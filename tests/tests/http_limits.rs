//! The HTTP port's limits and headers against a real `stagecast-server` on loopback
//! (relay/src/node/http_server.rs, server/src/viewer.rs):
//!
//! - 1,100 idle sockets, with the node started under the common soft open-files limit of
//!   1024 (before, past about a thousand, `accept` failed and `/healthz` went unanswered),
//!   leave `/healthz` and `/readyz` answering, and each is closed after the header-read
//!   timeout;
//! - past `--http-max-connections`, or `--http-max-connections-per-address` for its
//!   client address, a connection is closed on arrival and counted, and other addresses
//!   still get in;
//! - a body over `--http-max-body` gets 413 (declared or chunked), a body that does not
//!   arrive within `--http-request-timeout` gets 408;
//! - pages, scripts and API answers carry the security headers (CSP, no framing, no
//!   referrer, nosniff);
//! - with a real certificate (made here by rcgen, signed by a CA of the test's own) the
//!   same port answers HTTPS to a client that trusts that CA, and plain HTTP still.
//!
//! The tests of this file run one at a time (one lock): the first lowers the test
//! process's open-files limit while it starts its node, so that the node inherits it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stagecast_tests::node::{metric, Node};
use stagecast_tests::{http_get, output_dir, wait_until};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Idle sockets held open at once: more than a 1024 open-files limit leaves a node.
const IDLE: usize = 1100;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts an origin whose soft open-files limit is `soft` when it starts (what a shell
/// with the usual `ulimit -n 1024` would give it), then restores this process's.
fn origin_with_files_limit(dir: &std::path::Path, extra: &[&str], soft: u64) -> Node {
    let (old_soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    rlimit::setrlimit(rlimit::Resource::NOFILE, soft.min(hard), hard).expect("setrlimit");
    let node = Node::origin(dir, "origin", extra);
    rlimit::setrlimit(rlimit::Resource::NOFILE, old_soft, hard).expect("restore rlimit");
    node
}

/// Opens `n` TCP connections to `port` that send nothing, from loopback address
/// 127.0.0.`host` (Linux routes all of 127/8 to loopback: each is another client address).
fn idle_sockets_from(host: u8, port: u16, n: usize) -> Vec<TcpStream> {
    let source = Ipv4Addr::new(127, 0, 0, host);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind((source, 0).into())
                .expect("bind the source address");
            let connect = socket.connect((Ipv4Addr::LOCALHOST, port).into());
            let stream = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .unwrap_or_else(|_| panic!("idle socket {i} from {source}: connect timed out"))
                .unwrap_or_else(|e| panic!("idle socket {i} from {source}: {e}"));
            let stream = stream.into_std().expect("into_std");
            stream.set_nonblocking(false).expect("blocking");
            sockets.push(stream);
        }
        sockets
    })
}

/// Opens `n` TCP connections to `port` that send nothing.
fn idle_sockets(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("idle socket {i}: {e}"))
        })
        .collect()
}

/// Whether the peer has closed `socket`, waiting at most until `deadline`.
fn closed_by(socket: &mut TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    socket
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("set_read_timeout");
    let mut buf = [0u8; 64];
    match socket.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true, // a refusal with a few words: closed right after
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true, // reset
    }
}

/// Whether `socket` is still open now (no close has arrived), without waiting.
fn open_now(socket: &TcpStream) -> bool {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1];
    let open = matches!((&*socket).read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    socket.set_nonblocking(false).expect("blocking");
    open
}

/// Sends `request` (raw bytes) and returns the status code of the answer, waiting at most
/// `timeout`.
fn raw_status(port: u16, request: &[u8], timeout: Duration) -> Option<u16> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    socket.write_all(request).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = socket.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn idle_sockets_leave_healthz_answering_and_are_closed_after_the_header_timeout() {
    let _one = one_at_a_time();
    let dir = output_dir("http_idle_sockets");
    let header_timeout = Duration::from_secs(5);
    let node = origin_with_files_limit(&dir, &["--no-demo", "--http-header-timeout", "5s"], 1024);
    let port = node.http_port;

    // From five client addresses, each under the per-address cap (256 by default).
    let opened = Instant::now();
    let mut sockets: Vec<TcpStream> = (2..7)
        .flat_map(|host| idle_sockets_from(host, port, IDLE / 5))
        .collect();

    // Health checks still get in (http_get gives up after 5 s).
    let asked = Instant::now();
    let health = http_get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(
        health.as_deref().ok(),
        Some("ok\n"),
        "/healthz with {IDLE} idle sockets open: {health:?}"
    );
    let ready = http_get(&format!("http://127.0.0.1:{port}/readyz"));
    assert_eq!(ready.as_deref().ok(), Some("ready\n"), "/readyz: {ready:?}");
    let took = asked.elapsed();

    // Each is closed by the server once the header timeout has passed, not before.
    let deadline = opened + header_timeout + Duration::from_secs(20);
    let first = &mut sockets[0];
    assert!(
        closed_by(first, deadline),
        "the first idle socket was not closed"
    );
    let first_closed = opened.elapsed();
    assert!(
        first_closed >= header_timeout - Duration::from_millis(500),
        "closed after {first_closed:?}, before the {header_timeout:?} header timeout"
    );
    let still_open = sockets
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| (!closed_by(s, deadline)).then_some(i))
        .collect::<Vec<_>>();
    assert!(
        still_open.is_empty(),
        "idle sockets still open: {still_open:?}"
    );
    // Every one was accepted and then timed out; none was refused at the cap. A socket
    // is seen closed a moment before the server counts its timeout: wait for the count.
    node.wait_metric("stagecast_http_header_timeouts_total", IDLE as f64);
    let timeouts = node
        .metric("stagecast_http_header_timeouts_total")
        .unwrap_or(0.0);
    assert_eq!(
        node.metric("stagecast_http_connections_refused_total"),
        Some(0.0)
    );
    wait_until(
        "the idle connections to be gone",
        Duration::from_secs(10),
        || {
            // This scrape's own connection is the one left.
            node.metric("stagecast_http_connections") == Some(1.0)
        },
    );
    println!(
        "{IDLE} idle sockets: health checks answered in {took:?}; first closed after {first_closed:?}; {timeouts} header timeouts"
    );
}

#[test]
fn connections_past_the_cap_are_closed_on_arrival_and_counted() {
    let _one = one_at_a_time();
    let dir = output_dir("http_connection_cap");
    let node = Node::origin(
        &dir,
        "origin",
        &[
            "--no-demo",
            "--http-max-connections",
            "50",
            "--http-header-timeout",
            "60s",
        ],
    );
    let port = node.http_port;
    // Accepted in the order they connect: the first 50 take every place.
    let held = idle_sockets(port, 50);
    let mut extra = idle_sockets(port, 10);
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, s) in extra.iter_mut().enumerate() {
        assert!(
            closed_by(s, deadline),
            "connection {} past the cap was not closed",
            50 + i
        );
    }
    let open = held.iter().filter(|s| open_now(s)).count();
    assert_eq!(open, 50, "the connections within the cap stay open");
    // While the cap is full, a scrape is refused too; once the idle ones go, it is back.
    drop(held);
    wait_until("the refusals counted", Duration::from_secs(10), || {
        metric(port, "stagecast_http_connections_refused_total").is_some_and(|n| n >= 10.0)
    });
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/healthz"))
            .ok()
            .as_deref(),
        Some("ok\n")
    );
}

#[test]
fn one_address_is_refused_past_its_cap_while_others_get_in() {
    let _one = one_at_a_time();
    let dir = output_dir("http_address_cap");
    let node = Node::origin(
        &dir,
        "origin",
        &[
            "--no-demo",
            "--http-max-connections-per-address",
            "20",
            "--http-header-timeout",
            "60s",
        ],
    );
    let port = node.http_port;
    let held = idle_sockets_from(2, port, 20);
    let mut extra = idle_sockets_from(2, port, 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, s) in extra.iter_mut().enumerate() {
        assert!(
            closed_by(s, deadline),
            "connection {} of 127.0.0.2 was not closed",
            20 + i
        );
    }
    assert_eq!(
        held.iter().filter(|s| open_now(s)).count(),
        20,
        "those within the cap stay open"
    );
    // Another address is not held back by this one.
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/healthz"))
            .ok()
            .as_deref(),
        Some("ok\n")
    );
    assert_eq!(
        node.metric("stagecast_http_connections_per_address_refused_total"),
        Some(5.0)
    );
    assert_eq!(
        node.metric("stagecast_http_connections_refused_total"),
        Some(0.0)
    );
}

#[test]
fn bodies_over_the_limit_get_413_and_slow_ones_408() {
    let _one = one_at_a_time();
    let dir = output_dir("http_body_limits");
    let node = Node::origin(
        &dir,
        "origin",
        &[
            "--no-demo",
            "--http-max-body",
            "1KiB",
            "--http-request-timeout",
            "2s",
        ],
    );
    let port = node.http_port;
    let wait = Duration::from_secs(10);

    // Within the limit: answered (the guest route also reads the client's address).
    let name = r#"{"name":"Small Body"}"#;
    let fits = format!(
        "POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{name}",
        name.len()
    );
    assert_eq!(
        raw_status(port, fits.as_bytes(), wait),
        Some(200),
        "a body within the limit"
    );

    // Declared too large: refused before it is read.
    let declared = format!(
        "POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2048\r\n\r\n{}",
        "x".repeat(2048)
    );
    assert_eq!(
        raw_status(port, declared.as_bytes(), wait),
        Some(413),
        "declared body"
    );

    // Chunked, no length given: cut off at the limit.
    let chunk = format!("{{\"name\":\"{}\"}}", "y".repeat(3000));
    let chunked = format!(
        "POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_eq!(
        raw_status(port, chunked.as_bytes(), wait),
        Some(413),
        "chunked body"
    );

    // A body that never arrives whole: 408 once the request timeout passes.
    let started = Instant::now();
    let slow = b"POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":";
    assert_eq!(raw_status(port, slow, wait), Some(408), "slow body");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "408 after {took:?}"
    );

    assert!(
        node.metric("stagecast_http_bodies_refused_total")
            .unwrap_or(0.0)
            >= 2.0
    );
    assert!(
        node.metric("stagecast_http_request_timeouts_total")
            .unwrap_or(0.0)
            >= 1.0
    );
}

/// The headers of a GET, lower-case names.
fn headers_of(agent: &ureq::Agent, url: &str) -> Vec<(String, String)> {
    let response = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

#[test]
fn pages_scripts_and_answers_carry_the_security_headers() {
    let _one = one_at_a_time();
    let dir = output_dir("http_security_headers");
    let node = Node::origin(&dir, "origin", &["--no-demo"]);
    let base = format!("http://127.0.0.1:{}", node.http_port);
    let agent = plain_agent();
    for path in [
        "/",
        "/watch/demo/live",
        "/viewer/js/watch.js",
        "/viewer/style.css",
    ] {
        let h = headers_of(&agent, &format!("{base}{path}"));
        let csp = header(&h, "content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        for part in [
            "script-src 'self';",
            "style-src 'self';",
            "frame-ancestors 'none'",
            "default-src 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP {csp:?} lacks {part:?}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(
            header(&h, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    for path in [
        "/healthz",
        "/viewer/config.json",
        "/api/broadcasts",
        "/certificate.sha256",
    ] {
        let h = headers_of(&agent, &format!("{base}{path}"));
        assert_eq!(
            header(&h, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            header(&h, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[test]
fn with_a_real_certificate_the_http_port_answers_https_too() {
    let _one = one_at_a_time();
    let dir = output_dir("http_https");
    // A CA of this test's own, and a certificate for localhost that it signs.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stagecast test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).expect("write cert");
    {
        // Only its owner may read a key file (the node refuses it otherwise).
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .expect("create key file");
        file.write_all(leaf_key.serialize_pem().as_bytes())
            .expect("write key");
    }

    let node = Node::origin(
        &dir,
        "origin",
        &[
            "--no-demo",
            "--tls-cert",
            cert.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ],
    );
    let port = node.http_port;
    let roots =
        ureq::tls::RootCerts::Specific(Arc::new(vec![
            ureq::tls::Certificate::from_der(ca.der()).to_owned()
        ]));
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .tls_config(tls)
        .build()
        .into();
    let body = agent
        .get(&format!("https://localhost:{port}/healthz"))
        .call()
        .expect("GET https://localhost/healthz")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert_eq!(body, "ok\n");
    let h = headers_of(&agent, &format!("https://localhost:{port}/watch/demo/live"));
    assert!(
        header(&h, "content-security-policy").is_some_and(|c| c.contains("frame-ancestors 'none'"))
    );
    // Without the loopback development set-up, pages may not fetch from plain-HTTP ports.
    assert!(!header(&h, "content-security-policy")
        .unwrap_or_default()
        .contains("http://localhost"));
    // A client that does not trust the CA is refused by its own TLS check.
    let untrusting = plain_agent();
    assert!(untrusting
        .get(&format!("https://localhost:{port}/healthz"))
        .call()
        .is_err());
    // The same port still answers plain HTTP (health checks, scrapers).
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/healthz"))
            .ok()
            .as_deref(),
        Some("ok\n")
    );
    // A client that starts a handshake and stops is closed like an idle one; counted.
    let failures_before = node.metric("stagecast_http_tls_handshake_failures_total");
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .expect("write");
    assert!(
        closed_by(&mut garbage, Instant::now() + Duration::from_secs(15)),
        "a broken handshake is closed"
    );
    assert!(node.metric("stagecast_http_tls_handshake_failures_total") > failures_before);
}
