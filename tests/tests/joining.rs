//! Joining mid-stream, and fan-out at an edge: late subscribers start on a keyframe, and
//! many subscribers share one upstream subscription per track.

use std::time::Duration;

use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::Node;
use stagecast_tests::{output_dir, wait_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn late_subscriber_to_demo_channel_starts_on_a_keyframe_and_decodes() {
    let dir = output_dir("late_subscriber");
    let origin = Node::origin(&dir, "origin", &[]);
    let edge = Node::relay(&dir, "edge", &origin);
    // The demo channel loops a clip with 1 s GOPs: whenever these join, they are mid-GOP
    // at the publisher, and must still start on the newest group's keyframe.
    for (name, node) in [("at_origin", &origin), ("at_edge", &edge)] {
        let (mut child, output) = media::subscriber(
            &dir,
            name,
            &node.moqt_url(),
            "demo/live",
            &node.fingerprint,
            &["--duration", "3"],
        );
        let status = wait_exit(&mut child, name, EXIT_TIMEOUT);
        assert!(status.success(), "{name} subscriber failed: {status}");
        assert!(
            media::first_video_packet_is_key(&output),
            "{name}: output does not start on a keyframe"
        );
        assert_eq!(
            media::decode_errors(&output),
            "",
            "{name}: output does not decode cleanly"
        );
        let frames = media::video_frame_count(&output);
        assert!(frames >= 30, "{name}: only {frames} video frames in 3 s");
    }
}

#[test]
fn fifty_subscribers_at_an_edge_share_one_upstream_subscription_per_track() {
    let dir = output_dir("fifty_subscribers");
    let clip = media::make_clip(&dir, "clip.mp4", 3, Layout::FragEveryFrame, false);
    let origin = Node::bare_origin(&dir, "origin");
    let edge = Node::relay(&dir, "edge", &origin);
    let broadcast = "live/crowd";
    let (mut publisher, mut source) = media::publish_live(
        &dir,
        &origin,
        &origin,
        &origin.moqt_url(),
        broadcast,
        &clip,
        Layout::FragEveryFrame,
    );

    let subscribers: Vec<_> = (0..50)
        .map(|i| {
            media::subscriber(
                &dir,
                &format!("sub{i:02}"),
                &edge.moqt_url(),
                broadcast,
                &edge.fingerprint,
                &[],
            )
        })
        .collect();
    edge.wait_metric("stagecast_subscriptions", 150.0);
    assert_eq!(
        edge.metric("stagecast_upstream_subscriptions"),
        Some(3.0),
        "the edge should hold one upstream subscription each for catalog, video and audio"
    );
    source.open_gate();
    let captured = source.captured.clone();
    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", EXIT_TIMEOUT).success());
    for (mut child, output) in subscribers {
        let status = wait_exit(&mut child, "subscriber", EXIT_TIMEOUT);
        assert!(
            status.success(),
            "subscriber {} failed: {status}",
            output.display()
        );
        media::assert_same_samples(&captured, &output);
    }
    assert_eq!(
        edge.metric("stagecast_upstream_subscribes_total"),
        Some(3.0),
        "the edge subscribed upstream more than once per track"
    );
    assert_eq!(edge.metric("stagecast_cache_misses_total"), Some(3.0));
    assert_eq!(edge.metric("stagecast_cache_hits_total"), Some(147.0));
    // Every byte that came in once went out to each of the 50 subscribers.
    let bytes_in = edge.metric("stagecast_bytes_in_total").unwrap_or(0.0);
    let bytes_out = edge.metric("stagecast_bytes_out_total").unwrap_or(0.0);
    assert!(bytes_in > 0.0);
    assert_eq!(
        bytes_out,
        50.0 * bytes_in,
        "fan-out bytes: {bytes_out} out for {bytes_in} in"
    );
    assert_eq!(edge.metric("stagecast_groups_dropped_total"), Some(0.0));
}
