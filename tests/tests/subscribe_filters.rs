//! SUBSCRIBE filters (draft-18 §5.1.2) at an edge relay: a subscription that starts at a
//! group the edge holds is served from its cache with no upstream request (how a player
//! joins another rendition at a group boundary), and one that starts at the next group
//! begins there, never inside a group.

use std::time::Duration;

use moq_transport::coding::{KeyValuePairs, Location, TrackNamespace};
use moq_transport::message::{FilterType, SubscriptionFilter};
use moq_transport::serve::{Track, TrackReaderMode};
use moq_transport::session::{Subscribe, Subscriber};
use stagecast_tests::node::{moq_session, Node};
use stagecast_tests::output_dir;

const BROADCAST: &str = "demo/live";
/// The demo clip's video track: one group per 1 s GOP.
const VIDEO: &str = "video";

/// A video subscription with `filter` (none: unfiltered), and the ids of its first
/// `count` groups, each read whole from object 0.
async fn first_groups(
    subscriber: &mut Subscriber,
    filter: Option<SubscriptionFilter>,
    count: usize,
) -> (Subscribe, Vec<u64>) {
    let (writer, reader) =
        Track::new(TrackNamespace::from_utf8_path(BROADCAST), VIDEO.to_string()).produce();
    let mut params = KeyValuePairs::default();
    if let Some(filter) = &filter {
        params.set_subscription_filter(filter).unwrap();
    }
    let subscription = subscriber
        .subscribe_open_with_params(writer, params)
        .await
        .expect("SUBSCRIBE_OK");
    let TrackReaderMode::Subgroups(mut subgroups) = reader.mode().await.expect("track mode") else {
        panic!("video is not sent on subgroups");
    };
    let mut groups = Vec::new();
    while groups.len() < count {
        let mut group = tokio::time::timeout(Duration::from_secs(10), subgroups.next())
            .await
            .expect("a group within 10 s")
            .expect("subgroup")
            .expect("the track goes on");
        let first = group.next().await.expect("object").expect("an object");
        assert_eq!(
            first.object_id, 0,
            "group {} started mid-way",
            group.group_id
        );
        groups.push(group.group_id);
    }
    (subscription, groups)
}

fn absolute_start(group: u64) -> SubscriptionFilter {
    SubscriptionFilter {
        filter_type: FilterType::AbsoluteStart,
        start_location: Some(Location::new(group, 0)),
        end_group_id: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_starting_at_a_held_group_is_served_from_the_edge_cache() {
    let dir = output_dir("subscribe_filters");
    let origin = Node::origin(&dir, "origin", &[]);
    let edge = Node::relay(&dir, "edge", &origin);

    // A first viewer at the edge makes it carry the track, and sees three groups go by.
    let (_c1, mut first) = moq_session(&edge).await;
    let (_watching, seen) = first_groups(&mut first, None, 3).await;
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    let upstream = edge.metric("stagecast_upstream_subscribes_total");

    // A second viewer asks from the oldest of those groups: it gets that group and the
    // ones after, in order, from the edge's cache; the edge asks its upstream nothing.
    let (_c2, mut second) = moq_session(&edge).await;
    let (_from_past, got) = first_groups(&mut second, Some(absolute_start(seen[0])), 3).await;
    assert_eq!(got, seen, "served from the group asked for");
    assert_eq!(edge.metric("stagecast_upstream_subscribes_total"), upstream);

    // NEXT_GROUP_START begins after the largest group held, at object 0.
    let (_c3, mut third) = moq_session(&edge).await;
    let next = SubscriptionFilter {
        filter_type: FilterType::NextGroupStart,
        start_location: None,
        end_group_id: None,
    };
    let (_next, got) = first_groups(&mut third, Some(next), 1).await;
    assert!(got[0] > seen[2], "next group {} after {:?}", got[0], seen);

    // An AbsoluteStart ahead of the live edge waits for that group instead of sending the
    // ones before it.
    let (_c4, mut fourth) = moq_session(&edge).await;
    let ahead = got[0] + 2;
    let (_ahead, got) = first_groups(&mut fourth, Some(absolute_start(ahead)), 1).await;
    assert_eq!(got, [ahead]);
}
