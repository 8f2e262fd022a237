//! Cache accounting against a real relay on loopback: a publisher that floods one group
//! with empty objects gets that group dropped at `--max-group-objects` (counted in
//! `stagecast_limit_refused_total{limit="cache_group_objects"}`), its subscriber is not
//! handed the flood as a whole group, and the publisher's next group arrives whole.
//!
//! The publisher is an in-process node (as `stagecast publish` is) whose own cache has no
//! object cap, linked to the relay under test.

use std::time::Duration;

use bytes::Bytes;
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{Track, TrackReaderMode};
use moq_transport::session::Session;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_relay::cache::{CacheLimits, GroupInfo};
use stagecast_relay::local::LocalBroadcast;
use stagecast_relay::router::{Owner, Source};
use stagecast_relay::upstream::{run_upstream, LinkState, UpstreamConfig};
use stagecast_relay::{Relay, RelayConfig};
use stagecast_tests::node::Node;
use stagecast_tests::{output_dir, wait_until};
use tokio::sync::watch;

const FLOOD: u64 = 5_000;
const CAP: &str = "1000";

#[tokio::test(flavor = "multi_thread")]
async fn a_group_flooded_with_empty_objects_is_dropped_at_the_cap_and_the_next_arrives() {
    let dir = output_dir("cache_limits");
    let edge = Node::relay_with_args(&dir, "edge", &["--no-auth", "--max-group-objects", CAP]);

    // The publisher's own node: no object cap of its own.
    let namespace = TrackNamespace::from_utf8_path("flood/live");
    let publisher = Relay::new(RelayConfig::default());
    let broadcast = LocalBroadcast::new(namespace.clone());
    let track = broadcast.create_track(
        "video",
        CacheLimits {
            max_bytes: usize::MAX,
            max_group_bytes: usize::MAX,
            max_group_objects: usize::MAX,
            ..CacheLimits::default()
        },
    );
    let _route = publisher
        .router()
        .register(namespace.clone(), Source::Local(broadcast), Owner::Local)
        .unwrap();
    let (link_tx, mut link) = watch::channel(LinkState::Connecting {
        url: edge.moqt_url().parse().unwrap(),
    });
    tokio::spawn(run_upstream(
        publisher.clone(),
        ClientEndpoint::new().unwrap(),
        UpstreamConfig {
            urls: vec![edge.moqt_url().parse().unwrap()],
            trust: ClientTrust::pinned_hex(&edge.fingerprint).unwrap(),
            token: None,
            stop_when_refused: true,
        },
        link_tx,
    ));
    tokio::time::timeout(
        Duration::from_secs(20),
        link.wait_for(|s| matches!(s, LinkState::Connected { .. })),
    )
    .await
    .expect("the publisher links to the edge")
    .unwrap();
    wait_until(
        "the edge to have the namespace",
        Duration::from_secs(20),
        || edge.metric("stagecast_namespaces_published_total") == Some(1.0),
    );
    let info = |group_id| GroupInfo {
        group_id,
        subgroup_id: 0,
        priority: 0,
    };
    // A first group, so the subscription has somewhere to start.
    let first = track.begin_group(info(1)).unwrap();
    track
        .push_object(first, 0, Bytes::from_static(b"one"))
        .unwrap();
    track.end_group(first);

    // A viewer at the edge: the edge subscribes to the publisher and caches the track.
    let client = ClientEndpoint::new().unwrap();
    let (session, transport) = client
        .connect(
            &edge.moqt_url().parse().unwrap(),
            &ClientTrust::pinned_hex(&edge.fingerprint).unwrap(),
        )
        .await
        .unwrap();
    let (session, _p, mut subscriber) = Session::connect(session.into(), None, transport)
        .await
        .unwrap();
    tokio::spawn(session.run());
    let (writer, reader) = Track::new(namespace.clone(), "video".to_string()).produce();
    let _subscription = subscriber.subscribe_open(writer).await.unwrap();
    let TrackReaderMode::Subgroups(mut groups) = reader.mode().await.unwrap() else {
        panic!("the track is not on subgroups");
    };
    let mut group = groups.next().await.unwrap().expect("group 1");
    assert_eq!(group.group_id, 1);
    while group.next().await.unwrap().is_some() {}

    // The flood: 5,000 empty objects in group 2, then group 3 of three small objects.
    let flooded = track.begin_group(info(2)).unwrap();
    for object in 0..FLOOD {
        track.push_object(flooded, object, Bytes::new()).unwrap();
    }
    track.end_group(flooded);
    let next = track.begin_group(info(3)).unwrap();
    for object in 0..3 {
        track
            .push_object(next, object, Bytes::from_static(b"ok"))
            .unwrap();
    }
    track.end_group(next);

    // Whatever the viewer got of group 2 is cut short (at most the cap); group 3 is whole.
    let mut flood_objects = 0u64;
    let mut whole_next = None;
    let read = async {
        while let Some(mut group) = groups.next().await.unwrap() {
            let id = group.group_id;
            let mut objects = 0u64;
            while let Ok(Some(mut object)) = group.next().await {
                while let Ok(Some(_)) = object.read().await {}
                objects += 1;
            }
            match id {
                2 => flood_objects = objects,
                3 => {
                    whole_next = Some(objects);
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("group 3 reaches the viewer");
    assert_eq!(
        whole_next,
        Some(3),
        "the group after the flood arrives whole"
    );
    assert!(
        flood_objects <= 1_000,
        "{flood_objects} objects of the flooded group were forwarded"
    );
    assert_eq!(
        edge.metric("stagecast_limit_refused_total{limit=\"cache_group_objects\"}"),
        Some(1.0)
    );
}
