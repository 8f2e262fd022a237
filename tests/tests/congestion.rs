//! Congestion isolation: a subscriber that stops reading (its process frozen with SIGSTOP,
//! so it neither reads nor acknowledges) never slows the others or the publisher, and the
//! relay's memory stays bounded: the frozen session is closed at the idle timeout.

use std::time::{Duration, Instant};

use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::{signal, Node};
use stagecast_tests::{output_dir, wait_exit, wait_until};

/// An origin publishing a live clip (gated: nothing flows until `source.open_gate()`) and
/// an edge relay under it, where the test's subscribers connect.
struct LiveAtEdge {
    dir: std::path::PathBuf,
    _origin: Node,
    edge: Node,
    broadcast: &'static str,
    publisher: std::process::Child,
    source: media::LiveSource,
}

impl LiveAtEdge {
    fn start(test: &str, broadcast: &'static str) -> Self {
        let dir = output_dir(test);
        let clip = media::make_clip(&dir, "clip.mp4", 12, Layout::FragEveryFrame, false);
        let origin = Node::bare_origin(&dir, "origin");
        let edge = Node::relay(&dir, "edge", &origin);
        let (publisher, source) = media::publish_live(
            &dir,
            &origin,
            &origin,
            &origin.moqt_url(),
            broadcast,
            &clip,
            Layout::FragEveryFrame,
        );
        Self {
            dir,
            _origin: origin,
            edge,
            broadcast,
            publisher,
            source,
        }
    }

    /// A `stagecast subscribe` at the edge.
    fn subscriber(&self, name: &str) -> (std::process::Child, std::path::PathBuf) {
        media::subscriber(
            &self.dir,
            name,
            &self.edge.moqt_url(),
            self.broadcast,
            &self.edge.fingerprint,
            &[],
        )
    }

    /// Ends the source and checks that every one of `normal` received every sample, and
    /// that the edge's memory grew by less than 64 MiB since `rss_before`.
    fn finish(mut self, normal: Vec<(std::process::Child, std::path::PathBuf)>, rss_before: u64) {
        let captured = self.source.captured.clone();
        self.source.finish();
        assert!(wait_exit(&mut self.publisher, "publisher", Duration::from_secs(60)).success());
        let rss_peak = self.edge.rss_bytes();
        for (mut child, output) in normal {
            let status = wait_exit(&mut child, "subscriber", Duration::from_secs(30));
            assert!(status.success(), "{} failed: {status}", output.display());
            media::assert_same_samples(&captured, &output);
        }
        let growth = rss_peak.saturating_sub(rss_before);
        assert!(growth < 64 << 20, "the edge grew by {} MiB", growth >> 20);
    }
}

#[test]
fn a_frozen_subscriber_does_not_hold_back_ten_others() {
    let mut live = LiveAtEdge::start("frozen_subscriber", "live/congested");
    let (mut frozen, frozen_output) = live.subscriber("frozen");
    let normal: Vec<_> = (0..10)
        .map(|i| live.subscriber(&format!("normal{i}")))
        .collect();
    live.edge.wait_metric("stagecast_subscriptions", 33.0);
    let rss_before = live.edge.rss_bytes();
    live.source.open_gate();
    wait_until(
        "media at the frozen subscriber",
        Duration::from_secs(20),
        || std::fs::metadata(&frozen_output).is_ok_and(|m| m.len() > 20_000),
    );
    signal(frozen.id(), "STOP");
    let frozen_at = Instant::now();

    // The edge gives up on the frozen session at the idle timeout, while the others play on.
    live.edge
        .wait_metric_below("stagecast_sessions", 11.0 + 0.5);
    let closed_after = frozen_at.elapsed();
    assert!(
        closed_after < Duration::from_secs(15),
        "the frozen session lingered {closed_after:?}"
    );
    live.finish(normal, rss_before);
    signal(frozen.id(), "CONT");
    let _ = frozen.kill();
    let _ = frozen.wait();
}

/// A subscriber whose QUIC stack stays alive (it acknowledges and keeps the connection
/// open) but whose application reads nothing after SUBSCRIBE: it accepts no data stream
/// and grants the relay only a little flow-control credit. Built in this process on a
/// QUIC endpoint of its own, with small receive windows.
mod stalled {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use moq_transport::serve::Track;
    use moq_transport::session::{Session, Subscribe, Transport};
    use stagecast_proto::endpoint::MOQT_ALPN;
    use stagecast_proto::path::namespace_from_path;
    use stagecast_proto::trust::ClientTrust;
    use stagecast_proto::web_transport_quinn::proto::ConnectResponse;
    use stagecast_proto::web_transport_quinn::{self as wtq, quinn};

    /// The connection as MoQ sees it: after SETUP's stream, no stream is ever accepted.
    #[derive(Clone)]
    struct ReadsNothing {
        inner: wtq::Session,
        setup_taken: Arc<AtomicBool>,
    }

    impl web_transport_trait::Session for ReadsNothing {
        type SendStream = wtq::SendStream;
        type RecvStream = wtq::RecvStream;
        type Error = wtq::SessionError;

        async fn accept_uni(&self) -> Result<Self::RecvStream, Self::Error> {
            if self.setup_taken.swap(true, Ordering::SeqCst) {
                return std::future::pending().await;
            }
            self.inner.accept_uni().await
        }
        async fn accept_bi(&self) -> Result<(Self::SendStream, Self::RecvStream), Self::Error> {
            self.inner.accept_bi().await
        }
        async fn open_bi(&self) -> Result<(Self::SendStream, Self::RecvStream), Self::Error> {
            self.inner.open_bi().await
        }
        async fn open_uni(&self) -> Result<Self::SendStream, Self::Error> {
            self.inner.open_uni().await
        }
        fn send_datagram(&self, payload: Bytes) -> Result<(), Self::Error> {
            self.inner.send_datagram(payload)
        }
        async fn recv_datagram(&self) -> Result<Bytes, Self::Error> {
            self.inner.read_datagram().await
        }
        fn max_datagram_size(&self) -> usize {
            self.inner.max_datagram_size()
        }
        fn close(&self, code: u32, reason: &str) {
            self.inner.close(code, reason.as_bytes());
        }
        async fn closed(&self) -> Self::Error {
            self.inner.closed().await
        }
    }

    /// Holds the stalled subscription open while alive.
    pub struct Stalled {
        _endpoint: quinn::Endpoint,
        _subscription: Subscribe,
        _session: tokio::task::JoinHandle<()>,
    }

    pub async fn subscribe(port: u16, fingerprint: &str, broadcast: &str, track: &str) -> Stalled {
        let mut tls = ClientTrust::pinned_hex(fingerprint)
            .unwrap()
            .client_config()
            .unwrap();
        tls.alpn_protocols = vec![MOQT_ALPN.as_bytes().to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut transport = quinn::TransportConfig::default();
        transport.receive_window(quinn::VarInt::from_u32(32 * 1024));
        transport.stream_receive_window(quinn::VarInt::from_u32(16 * 1024));
        transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(8));
        transport.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(([127, 0, 0, 1], port).into(), "localhost")
            .unwrap()
            .await
            .expect("QUIC handshake");
        let url = url::Url::parse(&format!("moqt://localhost:{port}/")).unwrap();
        let session = wtq::Session::raw(conn, url.clone(), ConnectResponse::default());
        let reads_nothing = ReadsNothing {
            inner: session,
            setup_taken: Arc::default(),
        };
        let (session, _publisher, subscriber) = Session::connect_with_tokens(
            moq_transport::session::transport::Session::new(reads_nothing, url),
            None,
            Transport::RawQuic,
            Vec::new(),
        )
        .await
        .expect("MoQ setup");
        let session = tokio::spawn(async move {
            let _ = session.run().await;
        });
        let namespace = namespace_from_path(broadcast).unwrap();
        let (writer, _reader) = Track::new(namespace, track.to_string()).produce();
        let mut subscriber = subscriber;
        let subscription = subscriber
            .subscribe_open(writer)
            .await
            .expect("SUBSCRIBE_OK");
        Stalled {
            _endpoint: endpoint,
            _subscription: subscription,
            _session: session,
        }
    }
}

#[test]
fn a_subscriber_that_reads_nothing_loses_old_groups_and_holds_no_memory() {
    let mut live = LiveAtEdge::start("stalled_subscriber", "live/stalled");
    let normal: Vec<_> = (0..10)
        .map(|i| live.subscriber(&format!("normal{i}")))
        .collect();
    let edge = &live.edge;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Ten CLI subscribers hold three subscriptions each (catalog, video, audio).
    edge.wait_metric("stagecast_subscriptions", 30.0);
    let stalled = runtime.block_on(stalled::subscribe(
        edge.quic_port,
        &edge.fingerprint,
        live.broadcast,
        "video",
    ));
    edge.wait_metric("stagecast_subscriptions", 31.0);
    let rss_before = edge.rss_bytes();
    live.source.open_gate();

    // The stalled subscriber stays connected, and the edge drops what it cannot take.
    let edge = &live.edge;
    wait_until(
        "groups dropped for the stalled subscriber",
        Duration::from_secs(30),
        || {
            edge.metric("stagecast_groups_dropped_total")
                .is_some_and(|n| n >= 2.0)
        },
    );
    assert_eq!(
        edge.metric("stagecast_sessions"),
        Some(11.0),
        "the stalled session is alive: its loss is the relay's decision, not a timeout"
    );
    live.finish(normal, rss_before);
    drop(stalled);
}
