//! The producer's wall clock travels with the media (`prft` in front of each video chunk),
//! so a viewer can measure glass-to-glass latency: an encoder's own times (ffmpeg
//! `-write_prft wallclock`) reach the subscriber unchanged, and a file paced as live is
//! stamped as it is sent, not with the times it was made.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stagecast_media::producer_time::{decode_prft, ProducerTime};
use stagecast_tests::media::{self, Layout, LiveSource};
use stagecast_tests::node::Node;
use stagecast_tests::{bin, output_dir, wait_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Every `prft` at the top level of an MP4 file, in order.
fn producer_times(path: &Path) -> Vec<ProducerTime> {
    let data = std::fs::read(path).expect("read mp4");
    let mut times = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "box at {at} of {}",
            path.display()
        );
        if &data[at + 4..at + 8] == b"prft" {
            times.push(decode_prft(&data[at..at + size]).expect("a valid prft").1);
        }
        at += size;
    }
    times
}

/// The video track's timescale, from ffprobe's time base (`1/15360`).
fn video_timescale(path: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=time_base",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, scale) = text.trim().split_once('/').expect("a time base");
    scale.parse().expect("a number")
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn wall(time: &ProducerTime) -> Duration {
    time.since_unix_epoch().expect("after 1970")
}

#[test]
fn the_encoders_clock_reaches_the_subscriber() {
    let dir = output_dir("glass_to_glass_encoder");
    let clip = media::make_clip(&dir, "clip.mp4", 3, Layout::FragEveryFrame, false);
    let origin = Node::origin(&dir, "origin", &[]);
    let broadcast = "live/alice";
    let started = now();

    let mut publisher = media::publisher(
        &dir,
        &origin.moqt_url(),
        broadcast,
        &origin.fingerprint,
        &origin.publish_token(broadcast),
    );
    let stdin = publisher.stdin.take().unwrap();
    let mut source = LiveSource::start_with(
        &clip,
        Layout::FragEveryFrame,
        &["-write_prft", "wallclock"],
        stdin,
        dir.join("input.mp4"),
    );
    stagecast_tests::wait_until(
        "the broadcast to be listed",
        Duration::from_secs(20),
        || stagecast_tests::origin_lists(&origin, broadcast),
    );
    let before = origin.metric("stagecast_subscriptions").unwrap_or(0.0);
    let (mut subscriber, output) = media::subscriber(
        &dir,
        "output",
        &origin.moqt_url(),
        broadcast,
        &origin.fingerprint,
        &[],
    );
    origin.wait_metric("stagecast_subscriptions", before + 3.0);
    source.open_gate();
    let captured = source.captured.clone();
    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", EXIT_TIMEOUT).success());
    assert!(wait_exit(&mut subscriber, "subscriber", EXIT_TIMEOUT).success());
    let finished = now();

    let sent = producer_times(&captured);
    let received = producer_times(&output);
    // ffmpeg writes one per fragment (video and audio); the publisher keeps the video's.
    assert!(
        received.len() >= 60,
        "{} prfts in the output",
        received.len()
    );
    for time in &received {
        assert!(sent.contains(time), "{time:?} is not one the encoder wrote");
        assert!(wall(time) >= started && wall(time) <= finished, "{time:?}");
    }
}

#[test]
fn a_file_paced_as_live_is_stamped_as_it_is_sent() {
    let dir = output_dir("glass_to_glass_file");
    // Made (and stamped by ffmpeg) before the publish, all within a moment.
    let clip = dir.join("stamped.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(media::make_clip(
            &dir,
            "clip.mp4",
            3,
            Layout::FragEveryFrame,
            false,
        ))
        .args([
            "-c",
            "copy",
            "-f",
            "mp4",
            "-movflags",
            Layout::FragEveryFrame.movflags(),
        ])
        .args(["-write_prft", "wallclock"])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    let in_file = producer_times(&clip);
    assert!(!in_file.is_empty(), "ffmpeg wrote no prft");

    let origin = Node::origin(&dir, "origin", &[]);
    let broadcast = "live/bob";
    let started = now();
    let mut publisher = std::process::Command::new(bin("stagecast"))
        .args([
            "publish",
            &origin.moqt_url(),
            broadcast,
            "--fingerprint",
            &origin.fingerprint,
        ])
        .args(["--token", &origin.publish_token(broadcast), "--file"])
        .arg(&clip)
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("publish.log")).unwrap())
        .spawn()
        .expect("stagecast publish");
    stagecast_tests::wait_until(
        "the broadcast to be listed",
        Duration::from_secs(20),
        || stagecast_tests::origin_lists(&origin, broadcast),
    );
    let (mut subscriber, output) = media::subscriber(
        &dir,
        "output",
        &origin.moqt_url(),
        broadcast,
        &origin.fingerprint,
        &[],
    );
    assert!(wait_exit(&mut publisher, "publisher", EXIT_TIMEOUT).success());
    assert!(wait_exit(&mut subscriber, "subscriber", EXIT_TIMEOUT).success());

    let received = producer_times(&output);
    assert!(received.len() >= 30, "{} prfts", received.len());
    for time in &received {
        assert!(
            !in_file.contains(time),
            "the file's own time was sent: {time:?}"
        );
        assert!(wall(time) >= started, "{time:?} is before the publish");
    }
    // Paced in real time: the stamps spread like the media they date.
    let (first, last) = (&received[0], &received[received.len() - 1]);
    let ticks = (last.media_time - first.media_time) as f64;
    let media_span = Duration::from_secs_f64(ticks / video_timescale(&clip));
    let wall_span = wall(last) - wall(first);
    assert!(
        wall_span.abs_diff(media_span) < Duration::from_millis(500),
        "wall {wall_span:?} vs media {media_span:?}"
    );
}
