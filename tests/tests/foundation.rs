//! The foundation slice end to end: publish CMAF made by ffmpeg, carry it over MoQ through
//! an origin and chained relays, subscribe, and compare every sample.

use std::path::Path;
use std::time::Duration;

use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::Node;
use stagecast_tests::{output_dir, wait_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Publishes `clip` at `publish_at`, subscribes at `subscribe_at` over `scheme`, and checks
/// that every sample arrived intact. `origin` is where routes are listed.
fn round_trip(
    dir: &Path,
    origin: &Node,
    publish_at: &Node,
    subscribe_at: &Node,
    clip: &Path,
    layout: Layout,
    https: bool,
) {
    let broadcast = "live/alice";
    let url = |node: &Node| {
        if https {
            node.https_url()
        } else {
            node.moqt_url()
        }
    };
    let (mut publisher, mut source) = media::publish_live(
        dir,
        origin,
        publish_at,
        &url(publish_at),
        broadcast,
        clip,
        layout,
    );

    let before = subscribe_at
        .metric("stagecast_subscriptions")
        .unwrap_or(0.0);
    let (mut subscriber, output) = media::subscriber(
        dir,
        "output",
        &url(subscribe_at),
        broadcast,
        &subscribe_at.fingerprint,
        &[],
    );
    // Catalog, video and audio subscribed end to end: from here every group reaches it.
    subscribe_at.wait_metric("stagecast_subscriptions", before + 3.0);
    source.open_gate();
    let captured = source.captured.clone();
    source.finish();

    let status = wait_exit(&mut publisher, "publisher", EXIT_TIMEOUT);
    assert!(status.success(), "publisher failed: {status}");
    let status = wait_exit(&mut subscriber, "subscriber", EXIT_TIMEOUT);
    assert!(status.success(), "subscriber failed: {status}");
    media::assert_same_samples(&captured, &output);
    assert_eq!(
        media::decode_errors(&output),
        "",
        "output does not decode cleanly"
    );
}

#[test]
fn publish_to_origin_and_subscribe_every_sample_identical() {
    let dir = output_dir("publish_to_origin");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragKeyframe, false);
    let origin = Node::bare_origin(&dir, "origin");
    round_trip(
        &dir,
        &origin,
        &origin,
        &origin,
        &clip,
        Layout::FragKeyframe,
        false,
    );
}

#[test]
fn fragment_per_frame_with_b_frames_over_webtransport() {
    let dir = output_dir("frag_every_frame_webtransport");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragEveryFrame, true);
    let origin = Node::bare_origin(&dir, "origin");
    round_trip(
        &dir,
        &origin,
        &origin,
        &origin,
        &clip,
        Layout::FragEveryFrame,
        true,
    );
}

#[test]
fn chain_publish_at_origin_subscribe_at_far_edge() {
    let dir = output_dir("chain_origin_to_edge");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragKeyframe, false);
    let origin = Node::bare_origin(&dir, "origin");
    let mid = Node::relay(&dir, "mid", &origin);
    let edge = Node::relay(&dir, "edge", &mid);
    round_trip(
        &dir,
        &origin,
        &origin,
        &edge,
        &clip,
        Layout::FragKeyframe,
        false,
    );
}

#[test]
fn chain_publish_at_far_edge_subscribe_at_origin() {
    let dir = output_dir("chain_edge_to_origin");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragEveryFrame, false);
    let origin = Node::bare_origin(&dir, "origin");
    let mid = Node::relay(&dir, "mid", &origin);
    let edge = Node::relay(&dir, "edge", &mid);
    round_trip(
        &dir,
        &origin,
        &edge,
        &origin,
        &clip,
        Layout::FragEveryFrame,
        false,
    );
}
