//! FETCH (draft-18 §10.12) against real nodes: answered from a relay's cache when it holds
//! the range, and passed through to the source when it does not.

use std::time::Duration;

use moq_transport::coding::{KeyValuePairs, Location, TrackNamespace};
use moq_transport::data::FetchRecord;
use moq_transport::message::{FetchType, StandaloneFetch};
use moq_transport::serve::Track;
use moq_transport::session::{Fetch, Subscriber};
use stagecast_tests::media;
use stagecast_tests::node::{moq_session, Node};
use stagecast_tests::{output_dir, wait_until};

/// FETCHes whole group `group` of the demo catalog and returns the payloads.
async fn fetch_catalog_group(subscriber: &mut Subscriber, group: u64) -> Vec<bytes::Bytes> {
    let mut fetch = subscriber
        .fetch(
            StandaloneFetch {
                track_namespace: TrackNamespace::from_utf8_path("demo/live"),
                track_name: "catalog".to_string().into(),
                start_location: Location::new(group, 0),
                end_location: Location::new(group, 0),
            },
            KeyValuePairs::default(),
        )
        .await
        .expect("send FETCH");
    fetch.ok().await.expect("FETCH_OK");
    read_fetched(&mut fetch).await
}

/// The payloads of every object a FETCH returns.
async fn read_fetched(fetch: &mut Fetch) -> Vec<bytes::Bytes> {
    let mut payloads = Vec::new();
    while let Some(record) = fetch.next().await.expect("fetch record") {
        if let FetchRecord::Object(_) = record {
            let mut payload = Vec::new();
            while let Some(chunk) = fetch.read_payload_chunk(64 * 1024).await.expect("payload") {
                payload.extend_from_slice(&chunk);
            }
            payloads.push(payload.into());
        }
    }
    payloads
}

/// The id of the newest catalog group at `subscriber`'s node.
async fn newest_catalog_group(subscriber: &mut Subscriber) -> u64 {
    let (writer, reader) = Track::new(
        TrackNamespace::from_utf8_path("demo/live"),
        "catalog".to_string(),
    )
    .produce();
    let _subscription = subscriber
        .subscribe_open(writer)
        .await
        .expect("subscribe to the catalog");
    match reader.mode().await.expect("catalog mode") {
        moq_transport::serve::TrackReaderMode::Subgroups(mut subgroups) => {
            subgroups
                .next()
                .await
                .expect("catalog group")
                .expect("a group")
                .group_id
        }
        _ => panic!("catalog not on subgroups"),
    }
}

fn assert_is_catalog(payloads: &[bytes::Bytes]) {
    assert_eq!(payloads.len(), 1, "one catalog object per group");
    let catalog: serde_json::Value =
        serde_json::from_slice(&payloads[0]).expect("the catalog is JSON");
    assert!(
        catalog["tracks"].as_array().is_some_and(|t| !t.is_empty()),
        "{catalog}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_is_served_from_the_cache_or_through_to_the_source() {
    let dir = output_dir("fetch");
    let origin = Node::origin(&dir, "origin", &[]);
    let edge = Node::relay(&dir, "edge", &origin);
    let (_c1, mut at_origin) = moq_session(&origin).await;
    let group = newest_catalog_group(&mut at_origin).await;

    // Nobody watches at the edge yet: it holds nothing and goes to the source, once for
    // ten requesters asking at the same time.
    // Two sessions of five: one session may have at most 8 FETCHes served at once.
    let (_c2, at_edge) = moq_session(&edge).await;
    let (_c3, at_edge_too) = moq_session(&edge).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..10 {
        let mut subscriber = if i % 2 == 0 {
            at_edge.clone()
        } else {
            at_edge_too.clone()
        };
        requests.spawn(async move { fetch_catalog_group(&mut subscriber, group).await });
    }
    while let Some(payloads) = requests.join_next().await {
        assert_is_catalog(&payloads.expect("fetch task"));
    }
    assert_eq!(edge.metric("stagecast_fetches_total"), Some(10.0));
    assert_eq!(
        edge.metric("stagecast_fetch_cache_hits_total"),
        Some(0.0),
        "nothing was cached at the edge"
    );
    assert_eq!(
        edge.metric("stagecast_upstream_fetches_total"),
        Some(1.0),
        "ten misses, one FETCH upstream"
    );
    let mut at_edge = at_edge;

    // A viewer at the edge makes it cache the catalog: now the edge answers itself.
    let (mut viewer, output) = media::subscriber(
        &dir,
        "viewer",
        &edge.moqt_url(),
        "demo/live",
        &edge.fingerprint,
        &["--duration", "30"],
    );
    wait_until("media at the viewer", Duration::from_secs(20), || {
        std::fs::metadata(&output).is_ok_and(|m| m.len() > 10_000)
    });
    // The viewer's own Joining FETCHes (catalog, init segments) were answered before its
    // media arrived; count from here.
    let hits = edge
        .metric("stagecast_fetch_cache_hits_total")
        .unwrap_or(0.0);
    let upstream = edge.metric("stagecast_upstream_fetches_total");
    assert_is_catalog(&fetch_catalog_group(&mut at_edge, group).await);
    assert_eq!(
        edge.metric("stagecast_fetch_cache_hits_total"),
        Some(hits + 1.0),
        "the edge answered from its cache"
    );
    assert_eq!(
        edge.metric("stagecast_upstream_fetches_total"),
        upstream,
        "nothing went upstream"
    );

    // An MSF catalog subscriber (MSF "Catalog": SUBSCRIBE plus a Joining FETCH) gets the
    // current catalog at once from the edge's cache.
    let (writer, _reader) = Track::new(
        TrackNamespace::from_utf8_path("demo/live"),
        "catalog".to_string(),
    )
    .produce();
    let subscription = at_edge
        .subscribe_open(writer)
        .await
        .expect("subscribe to the catalog");
    let mut joining = at_edge
        .joining_fetch(
            FetchType::RelativeJoining,
            subscription.info.id,
            0,
            KeyValuePairs::default(),
        )
        .await
        .expect("send the Joining FETCH");
    joining.ok().await.expect("the Joining FETCH is accepted");
    assert_is_catalog(&read_fetched(&mut joining).await);

    // A range nobody holds is refused with a clear error, not left hanging.
    let missing = at_origin
        .fetch(
            StandaloneFetch {
                track_namespace: TrackNamespace::from_utf8_path("demo/live"),
                track_name: "catalog".to_string().into(),
                start_location: Location::new(1, 0),
                end_location: Location::new(1, 0),
            },
            KeyValuePairs::default(),
        )
        .await
        .expect("send FETCH");
    assert!(
        missing.ok().await.is_err(),
        "group 1 is long gone: the FETCH must be refused"
    );
    let _ = viewer.kill();
    let _ = viewer.wait();
}
