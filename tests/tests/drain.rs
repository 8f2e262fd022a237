//! Graceful drain on SIGTERM: the node stops being ready, tells every session to move
//! (GOAWAY with the configured URI) and its subscribers too (PUBLISH_DONE GOING_AWAY),
//! closes what is left when the drain time is up, and exits.

use std::time::{Duration, Instant};

use stagecast_proto::goaway::GoAway;
use stagecast_proto::migration::MigratingSession;
use stagecast_tests::media;
use stagecast_tests::node::Node;
use stagecast_tests::{http_get, output_dir, wait_exit, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_moves_subscribers_away_and_exits_within_the_drain_time() {
    let dir = output_dir("sigterm_drain");
    let origin = Node::origin(&dir, "origin", &[]);
    let mut edge = Node::relay(&dir, "edge", &origin);
    let ready = http_get(&format!("http://127.0.0.1:{}/readyz", edge.http_port)).expect("readyz");
    assert_eq!(ready.trim(), "ready");

    let (mut viewer, output) = media::subscriber(
        &dir,
        "viewer",
        &edge.moqt_url(),
        "demo/live",
        &edge.fingerprint,
        &[],
    );
    wait_until("media at the viewer", Duration::from_secs(20), || {
        std::fs::metadata(&output).is_ok_and(|m| m.len() > 50_000)
    });
    // A session that does not move when told stays until the drain time closes it.
    let (_client, _goaway, _catalog) = subscribed_client(&edge).await;
    edge.wait_metric("stagecast_sessions", 2.0);

    let started = Instant::now();
    edge.terminate();
    let status = wait_exit(&mut viewer, "viewer", Duration::from_secs(10));
    assert!(status.success(), "the viewer should end cleanly: {status}");
    let log = std::fs::read_to_string(dir.join("viewer.log")).unwrap_or_default();
    assert!(
        log.contains("going away"),
        "the viewer should say the server is going away: {log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "subscribers are moved at once, not at the end of the drain"
    );

    let status = edge.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "the relay should exit cleanly: {status}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "drain of 3 s took {took:?}"
    );
    let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
    assert!(
        log.contains("drain time is up; closing the remaining sessions"),
        "the session that stayed should have been closed at the end"
    );
    assert_eq!(media::decode_errors(&output), "");
}

/// Connects a MoQ client to `node` that reports the server's GOAWAY, and subscribes to the
/// demo catalog on it (its request, ID 0, is one the server processed).
async fn subscribed_client(
    node: &Node,
) -> (
    stagecast_proto::endpoint::ClientEndpoint,
    tokio::sync::watch::Receiver<Option<GoAway>>,
    moq_transport::serve::TrackReader,
) {
    let client = stagecast_proto::endpoint::ClientEndpoint::new().unwrap();
    let trust = stagecast_proto::trust::ClientTrust::pinned_hex(&node.fingerprint).unwrap();
    let url = node.moqt_url().parse().unwrap();
    let (session, transport) = client.connect(&url, &trust).await.unwrap();
    let migrating = MigratingSession::new(session);
    let goaway = migrating.goaway();
    let (session, _publisher, mut subscriber) =
        moq_transport::session::Session::connect(migrating.transport(), None, transport)
            .await
            .unwrap();
    tokio::spawn(session.run());
    let (writer, reader) = moq_transport::serve::Track::new(
        moq_transport::coding::TrackNamespace::from_utf8_path("demo/live"),
        "catalog".to_string(),
    )
    .produce();
    let subscription = subscriber.subscribe_open(writer).await.expect("subscribe");
    assert_eq!(subscription.info.id, 0, "the client's first request");
    std::mem::forget(subscription);
    (client, goaway, reader)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sends_goaway_and_a_chained_relay_moves_to_its_uri() {
    let dir = output_dir("sigterm_goaway");
    let origin = Node::origin(&dir, "origin", &[]);
    let spare = Node::relay(&dir, "spare", &origin);
    let spare_url = spare.moqt_url();
    // The edge has the spare's certificate, so a client that pinned it trusts the spare.
    let cert = dir.join("spare/dev-cert.pem").display().to_string();
    let key = dir.join("spare/dev-key.pem").display().to_string();
    let mut edge = Node::relay_under(
        &dir,
        "edge",
        &[&origin],
        &[
            "--goaway-uri",
            &spare_url,
            "--drain-timeout",
            "5s",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert_eq!(edge.fingerprint, spare.fingerprint);
    let (mover, moved_output) = media::subscriber(
        &dir,
        "mover",
        &edge.moqt_url(),
        "demo/live",
        &edge.fingerprint,
        &[],
    );
    // The far relay's own failover list would take it to the origin next; only the
    // GOAWAY names the spare.
    let far = Node::relay_with_failover(&dir, "far", &[&edge, &origin, &spare]);
    let (viewer, output) = media::subscriber(
        &dir,
        "viewer",
        &far.moqt_url(),
        "demo/live",
        &far.fingerprint,
        &[],
    );
    wait_until("media at both viewers", Duration::from_secs(20), || {
        [&output, &moved_output]
            .iter()
            .all(|o| std::fs::metadata(o).is_ok_and(|m| m.len() > 50_000))
    });
    let (_client, mut goaway, _catalog) = subscribed_client(&edge).await;

    edge.terminate();
    let received = tokio::time::timeout(Duration::from_secs(5), goaway.wait_for(Option::is_some))
        .await
        .expect("GOAWAY within 5 s of SIGTERM")
        .expect("session alive")
        .clone()
        .expect("a GOAWAY");
    assert_eq!(received.new_session_uri, spare_url);
    assert_eq!(received.timeout_ms, 5000, "the drain time");
    assert_eq!(
        received.request_id,
        Some(2),
        "the client's request 0 was processed; 2 would be its next"
    );

    // The far relay moved to the spare while the edge was still draining.
    wait_until(
        "the far relay to link to the spare",
        Duration::from_secs(15),
        || {
            std::fs::read_to_string(&far.log).is_ok_and(|log| {
                log.lines()
                    .any(|line| line.contains("upstream link up") && line.contains(&spare_url))
            })
        },
    );
    assert!(
        std::fs::read_to_string(&far.log).is_ok_and(|log| log.contains("upstream sent GOAWAY")),
        "the far relay should say why it moved"
    );
    let status = edge.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "the edge should exit cleanly: {status}");

    // The viewer at the far relay, and the one that was at the edge, go on with whole
    // groups from the spare.
    let size = |o: &std::path::Path| std::fs::metadata(o).map(|m| m.len()).unwrap_or(0);
    let before = [size(&output), size(&moved_output)];
    wait_until("more media after the move", Duration::from_secs(30), || {
        size(&output) > before[0] + 100_000 && size(&moved_output) > before[1] + 100_000
    });
    let mover_log = std::fs::read_to_string(dir.join("mover.log")).unwrap_or_default();
    assert!(
        mover_log.contains("moved to"),
        "the viewer should say it moved: {mover_log}"
    );
    for (mut child, output) in [(viewer, output), (mover, moved_output)] {
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(media::decode_errors(&output), "", "{}", output.display());
    }
}
