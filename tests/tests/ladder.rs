//! A ladder published from one ffmpeg file (three video renditions of one source, plus
//! audio), end to end through an origin: the catalog lists the renditions as alternates,
//! group N of every rendition starts at the same media time, `stagecast subscribe
//! --rendition` takes one rendition (every sample of it, byte for byte, and no other video
//! track), an unknown rendition is a clear error, and bad ladders (unaligned keyframes, a
//! rendition that stops early) still publish and play.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{Track, TrackReaderMode};
use moq_transport::session::{Session, Subscribe, Subscriber};
use serde_json::Value;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_tests::media::{self, Layout, LiveSource, Rung};
use stagecast_tests::netns::{Direction, LinkSpec, NetNs, Rate};
use stagecast_tests::node::Node;
use stagecast_tests::{bin, origin_lists, output_dir, runtime, wait_exit, wait_until};
use tokio::sync::watch;

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
const SECONDS: u32 = 4;
const VIDEO_TRACKS: [&str; 3] = ["video", "video1", "video2"];

/// The ladder of these tests: small pictures (two cores encode it in about a second) with
/// the bitrate steps of a real one.
const LADDER: [Rung; 3] = [
    Rung::new(640, 360, 800),
    Rung::new(426, 240, 400),
    Rung::new(256, 144, 150),
];

/// A track reader's task: object 0 of every group it read, by group id.
type Groups = tokio::task::JoinHandle<BTreeMap<u64, Bytes>>;

/// A MoQ client in the test process, to see group ids and the catalog as a player does.
struct Watcher {
    _client: ClientEndpoint,
    subscriber: Subscriber,
}

impl Watcher {
    async fn connect(node: &Node) -> Watcher {
        let client = ClientEndpoint::new().expect("client endpoint");
        let trust = ClientTrust::pinned_hex(&node.fingerprint).expect("fingerprint");
        let url = node.moqt_url().parse().expect("url");
        let (session, transport) = client.connect(&url, &trust).await.expect("connect");
        let (session, _publisher, subscriber) = Session::connect(session.into(), None, transport)
            .await
            .expect("MoQ session");
        tokio::spawn(session.run());
        Watcher {
            _client: client,
            subscriber,
        }
    }

    /// Subscribes to `track`; the task returns, once the track ends, object 0 of every
    /// group by group id, and the receiver counts the groups read so far.
    async fn subscribe(&self, broadcast: &str, track: &str) -> (Groups, watch::Receiver<usize>) {
        let (writer, reader) =
            Track::new(TrackNamespace::from_utf8_path(broadcast), track.to_string()).produce();
        let mut subscriber = self.subscriber.clone();
        let subscription: Subscribe = subscriber
            .subscribe_open(writer)
            .await
            .unwrap_or_else(|err| panic!("subscribe to {track}: {err}"));
        let track = track.to_string();
        let (count_tx, count_rx) = watch::channel(0);
        let task = tokio::spawn(async move {
            let _subscription = subscription;
            let mut firsts = BTreeMap::new();
            let mode = reader.mode().await.expect("track mode");
            let TrackReaderMode::Subgroups(mut groups) = mode else {
                panic!("{track} is not sent on subgroups");
            };
            // Ends with None or an error when the publisher finishes the track.
            while let Ok(Some(mut group)) = groups.next().await {
                let Ok(Some(mut object)) = group.next().await else {
                    continue;
                };
                assert_eq!(
                    object.object_id, 0,
                    "{track}: group {} joined late",
                    group.group_id
                );
                let mut payload = Vec::new();
                while let Ok(Some(chunk)) = object.read().await {
                    payload.extend_from_slice(&chunk);
                }
                firsts.insert(group.group_id, Bytes::from(payload));
                count_tx.send_replace(firsts.len());
            }
            firsts
        });
        (task, count_rx)
    }

    /// Subscribes to the catalog and, once it has arrived (so the broadcast's media tracks
    /// exist), to `tracks`.
    async fn watch(&self, broadcast: &str, tracks: &[&str]) -> (Groups, Vec<Groups>) {
        let (catalogs, mut count) = self.subscribe(broadcast, "catalog").await;
        tokio::time::timeout(Duration::from_secs(20), count.wait_for(|n| *n > 0))
            .await
            .expect("the catalog within 20 s")
            .expect("the catalog reader");
        let mut readers = Vec::new();
        for track in tracks {
            readers.push(self.subscribe(broadcast, track).await.0);
        }
        (catalogs, readers)
    }
}

/// The `tfdt` of the first `traf` of a CMAF chunk (moof + mdat).
fn first_decode_time(chunk: &[u8]) -> Option<u64> {
    fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = data;
        std::iter::from_fn(move || {
            let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            if size < 8 || size > rest.len() {
                return None;
            }
            let (this, next) = rest.split_at(size);
            rest = next;
            Some((&this[4..8], &this[8..]))
        })
    }
    let (_, moof) = boxes(chunk).find(|(kind, _)| *kind == b"moof")?;
    let (_, traf) = boxes(moof).find(|(kind, _)| *kind == b"traf")?;
    let (_, tfdt) = boxes(traf).find(|(kind, _)| *kind == b"tfdt")?;
    match tfdt.first()? {
        1 => Some(u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)),
        _ => Some(u64::from(u32::from_be_bytes(
            tfdt.get(4..8)?.try_into().ok()?,
        ))),
    }
}

/// Per group id, the media time in seconds at which a track's group starts.
fn group_starts(firsts: &BTreeMap<u64, Bytes>, timescale: u64) -> BTreeMap<u64, f64> {
    firsts
        .iter()
        .map(|(group, payload)| {
            let time = first_decode_time(payload).expect("a tfdt in object 0");
            (*group, time as f64 / timescale as f64)
        })
        .collect()
}

fn track<'a>(catalog: &'a Value, name: &str) -> &'a Value {
    catalog["tracks"]
        .as_array()
        .and_then(|tracks| tracks.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no track {name} in {catalog}"))
}

/// Starts one `stagecast subscribe` per `(name, --rendition)` (None: the default) at once,
/// so the gate opens soon, and returns them once each has written its init segment (by then
/// it has subscribed to everything it takes), with the number of downstream subscriptions
/// they added at the origin together.
fn subscribe_renditions(
    dir: &Path,
    origin: &Node,
    broadcast: &str,
    renditions: &[(&str, Option<&str>)],
) -> (Vec<(Child, PathBuf)>, f64) {
    let before = origin.metric("stagecast_subscriptions").unwrap_or(0.0);
    let started: Vec<(Child, PathBuf)> = renditions
        .iter()
        .map(|(name, rendition)| {
            let extra: Vec<&str> = rendition.map_or(vec![], |r| vec!["--rendition", r]);
            media::subscriber(
                dir,
                name,
                &origin.moqt_url(),
                broadcast,
                &origin.fingerprint,
                &extra,
            )
        })
        .collect();
    for (_, output) in &started {
        wait_until(
            &format!("{} to hold an init segment", output.display()),
            Duration::from_secs(20),
            || std::fs::metadata(output).is_ok_and(|m| m.len() > 0),
        );
    }
    let wanted = before + 3.0 * renditions.len() as f64;
    wait_until(
        "the subscribers' subscriptions at the origin",
        Duration::from_secs(10),
        || origin.metric("stagecast_subscriptions").unwrap_or(0.0) >= wanted,
    );
    let added = origin.metric("stagecast_subscriptions").unwrap_or(0.0) - before;
    (started, added)
}

/// Publishes `clip` live through a gated source, like [`media::publish_live`], with
/// ffmpeg's interleaving wait cut to 200 ms (`-max_interleave_delta`): by default a
/// rendition that ends early holds the others back to the end of the clip, which then
/// arrives in one burst (sent newest group first, so a subscriber skips older ones).
fn publish_ladder(
    dir: &Path,
    origin: &Node,
    broadcast: &str,
    clip: &Path,
    layout: Layout,
) -> (Child, LiveSource) {
    let mut child = media::publisher(
        dir,
        &origin.moqt_url(),
        broadcast,
        &origin.fingerprint,
        &origin.publish_token(broadcast),
    );
    let stdin = child.stdin.take().expect("publisher stdin");
    let source = LiveSource::start_with(
        clip,
        layout,
        &["-max_interleave_delta", "200000"],
        stdin,
        dir.join("input.mp4"),
    );
    wait_until(
        "the origin to list the broadcast",
        Duration::from_secs(20),
        || origin_lists(origin, broadcast),
    );
    (child, source)
}

/// Opens the gate, lets the clip play out, and checks that the publisher and every
/// subscriber exit cleanly.
fn play_out(source: LiveSource, publisher: &mut Child, subscribers: &mut [(Child, PathBuf)]) {
    let mut source = source;
    source.open_gate();
    source.finish();
    assert_exit_ok(publisher, "publisher");
    for (child, output) in subscribers {
        assert_exit_ok(child, &output.display().to_string());
    }
}

/// Asserts that `output` holds exactly one video stream, the samples of stream `stream`
/// of the published input, and all of its audio, byte for byte; and decodes cleanly.
fn assert_rendition(published: &Path, output: &Path, stream: usize) {
    let input = media::stream_hashes(published);
    let got = media::stream_hashes(output);
    let kinds: Vec<&str> = got.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["video", "audio"],
        "{}: one video track and audio",
        output.display()
    );
    let (_, want_video) = &input[stream];
    let (_, want_audio) = input.last().expect("input audio");
    for (kind, got, want) in [
        ("video", &got[0].1, want_video),
        ("audio", &got[1].1, want_audio),
    ] {
        assert_eq!(
            got.len(),
            want.len(),
            "{}: {kind} sample count (video of rendition {stream})",
            output.display()
        );
        let differs = got.iter().zip(want).position(|(g, w)| g != w);
        assert_eq!(
            differs,
            None,
            "{}: the {kind} sample at this index differs",
            output.display()
        );
    }
    assert_eq!(
        media::decode_errors(output),
        "",
        "{} does not decode cleanly",
        output.display()
    );
}

fn assert_exit_ok(child: &mut Child, what: &str) {
    let status = wait_exit(child, what, EXIT_TIMEOUT);
    assert!(status.success(), "{what} failed: {status}");
}

#[test]
fn ladder_alternates_aligned_groups_and_rendition_choice() {
    let dir = output_dir("ladder");
    let clip = media::make_ladder(&dir, "ladder.mp4", SECONDS, &LADDER, Layout::FragKeyframe);
    let origin = Node::bare_origin(&dir, "origin");
    let broadcast = "live/ladder";
    let (mut publisher, source) =
        publish_ladder(&dir, &origin, broadcast, &clip, Layout::FragKeyframe);
    let published = source.captured.clone();

    let rt = runtime();
    let watcher = rt.block_on(Watcher::connect(&origin));
    let (catalogs, videos) = rt.block_on(watcher.watch(broadcast, &VIDEO_TRACKS));

    // An unknown rendition: a clear error naming what there is, before any media flows.
    let unknown = Command::new(bin("stagecast"))
        .args(["subscribe", &origin.moqt_url(), broadcast])
        .args(["--fingerprint", &origin.fingerprint, "--rendition", "1080p"])
        .args(["--output"])
        .arg(dir.join("unknown.mp4"))
        .stdin(Stdio::null())
        .output()
        .expect("run stagecast subscribe");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success(),
        "an unknown rendition must fail: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("no rendition"))
        .unwrap_or_else(|| panic!("no clear error: {stderr}"));
    assert!(line.contains("\"1080p\""), "{line}");
    for (name, rung) in VIDEO_TRACKS.iter().zip(&LADDER) {
        let shown = format!("{name} ({}p, {}x{}", rung.height, rung.width, rung.height);
        assert!(line.contains(&shown), "{line} lacks {shown}");
    }

    let choices = [
        ("lowest", Some("lowest")),
        ("named", Some("video1")),
        ("label", Some("144p")),
        ("default", None),
    ];
    let (mut subscribers, added) = subscribe_renditions(&dir, &origin, broadcast, &choices);
    // Catalog, one video track and audio each, not the broadcast's five tracks.
    assert_eq!(
        added,
        3.0 * choices.len() as f64,
        "subscriptions added at the origin"
    );
    play_out(source, &mut publisher, &mut subscribers);

    // The catalog: three alternates with their properties; audio apart.
    let catalogs = rt.block_on(catalogs).expect("catalog reader");
    assert_eq!(
        catalogs.len(),
        1,
        "declared bitrates: the catalog never changes"
    );
    let catalog: Value =
        serde_json::from_slice(catalogs.values().next().expect("a catalog")).expect("catalog JSON");
    let declared = media::video_bitrates(&published);
    let alt_group = &track(&catalog, "video")["altGroup"];
    assert!(alt_group.is_u64(), "{catalog}");
    for (i, (name, rung)) in VIDEO_TRACKS.iter().zip(&LADDER).enumerate() {
        let t = track(&catalog, name);
        assert_eq!(&t["altGroup"], alt_group, "{name}");
        assert_eq!(t["width"], rung.width, "{name}");
        assert_eq!(t["height"], rung.height, "{name}");
        assert_eq!(t["framerate"], 30, "{name}");
        assert_eq!(
            t["bitrate"], declared[i],
            "{name}: the stream's declared bitrate"
        );
        assert_eq!(t["label"], format!("{}p", rung.height), "{name}");
        assert!(t.get("groupsAligned").is_none(), "{name}: {t}");
    }
    // A remux declares the measured mean, near each rung's -b:v.
    for (rate, rung) in declared.iter().zip(&LADDER) {
        let target = u64::from(rung.kbps) * 1000;
        assert!(
            *rate > target / 2 && *rate < target * 2,
            "{rate} for {target}"
        );
    }
    assert!(
        declared[0] > declared[1] && declared[1] > declared[2],
        "{declared:?}"
    );
    assert!(track(&catalog, "audio").get("altGroup").is_none());

    // Group N of every rendition starts at the same media time: 4 one-second groups
    // with consecutive ids, the same in each.
    let starts: Vec<BTreeMap<u64, f64>> = videos
        .into_iter()
        .zip(VIDEO_TRACKS)
        .map(|(reader, name)| {
            let timescale = track(&catalog, name)["timescale"]
                .as_u64()
                .expect("timescale");
            group_starts(&rt.block_on(reader).expect("video reader"), timescale)
        })
        .collect();
    assert_eq!(starts[0].len(), SECONDS as usize, "{starts:?}");
    let ids: Vec<u64> = starts[0].keys().copied().collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    for (name, track_starts) in VIDEO_TRACKS.iter().zip(&starts) {
        assert_eq!(track_starts, &starts[0], "{name}'s groups against video's");
    }
    let times: Vec<f64> = starts[0].values().copied().collect();
    assert_eq!(times, [0.0, 1.0, 2.0, 3.0]);

    // Each subscriber got every sample of its rendition, and all audio.
    for ((_, output), stream) in subscribers.iter().zip([2, 1, 2, 0]) {
        assert_rendition(&published, output, stream);
    }
}

#[test]
fn unaligned_keyframes_still_play_and_the_catalog_stops_claiming_alignment() {
    let dir = output_dir("ladder_unaligned");
    // The middle rung has 1.5 s GOPs; the others 1 s. One fragment per frame.
    let mut rungs = LADDER;
    rungs[1].gop = 45;
    let clip = media::make_ladder(&dir, "ladder.mp4", SECONDS, &rungs, Layout::FragEveryFrame);
    let origin = Node::bare_origin(&dir, "origin");
    let broadcast = "live/unaligned";
    let (mut publisher, source) =
        publish_ladder(&dir, &origin, broadcast, &clip, Layout::FragEveryFrame);
    let published = source.captured.clone();
    let rt = runtime();
    let watcher = rt.block_on(Watcher::connect(&origin));
    let (catalogs, videos) = rt.block_on(watcher.watch(broadcast, &VIDEO_TRACKS));
    let choices = [("lowest", Some("lowest")), ("middle", Some("240p"))];
    let (mut subscribers, _) = subscribe_renditions(&dir, &origin, broadcast, &choices);
    play_out(source, &mut publisher, &mut subscribers);

    // First the usual claim (nothing contradicted it yet), then an update withdrawing it;
    // the renditions stay alternates.
    let catalogs: Vec<Value> = rt
        .block_on(catalogs)
        .expect("catalog reader")
        .values()
        .map(|json| serde_json::from_slice(json).expect("catalog JSON"))
        .collect();
    assert_eq!(catalogs.len(), 2, "{catalogs:?}");
    for name in VIDEO_TRACKS {
        // Per-frame fragments: each rendition's first chunk has its own moof, and the
        // first catalog still has every framerate.
        assert_eq!(track(&catalogs[0], name)["framerate"], 30, "{name}");
        assert!(track(&catalogs[0], name).get("groupsAligned").is_none());
        let t = track(&catalogs[1], name);
        assert_eq!(t["groupsAligned"], false, "{name}: {t}");
        assert_eq!(t["altGroup"], track(&catalogs[0], name)["altGroup"]);
    }

    // Ids are shared exactly where groups start at the same time, and otherwise follow
    // start times across renditions: a switch "from the next group" by id lands on the
    // new rendition's next keyframe.
    let mut all: Vec<(u64, f64)> = Vec::new();
    let mut per_track = Vec::new();
    for (reader, name) in videos.into_iter().zip(VIDEO_TRACKS) {
        let timescale = track(&catalogs[1], name)["timescale"]
            .as_u64()
            .expect("timescale");
        let starts = group_starts(&rt.block_on(reader).expect("video reader"), timescale);
        all.extend(starts.iter().map(|(id, t)| (*id, *t)));
        per_track.push(starts);
    }
    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for pair in all.windows(2) {
        let ((id0, t0), (id1, t1)) = (pair[0], pair[1]);
        if id0 == id1 {
            assert!(
                (t0 - t1).abs() < 0.001,
                "group {id0} starts at {t0} and {t1}"
            );
        } else {
            assert!(
                t1 > t0,
                "group {id1} at {t1} s starts before group {id0} at {t0} s"
            );
        }
    }
    let times = |i: usize| per_track[i].values().copied().collect::<Vec<f64>>();
    assert_eq!(times(0), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(times(1), [0.0, 1.5, 3.0]);
    assert_eq!(
        per_track[0], per_track[2],
        "the two 1 s renditions stay aligned"
    );

    // Each rendition plays whole.
    for ((_, output), stream) in subscribers.iter().zip([2, 1]) {
        assert_rendition(&published, output, stream);
    }
}

#[test]
fn a_rendition_that_ends_early_ends_alone() {
    let dir = output_dir("ladder_rendition_ends");
    // The lowest rung stops after 2 of the 4 seconds; the others and audio go on.
    let mut rungs = LADDER;
    rungs[2].ends_after = Some(2);
    let clip = media::make_ladder(&dir, "ladder.mp4", SECONDS, &rungs, Layout::FragKeyframe);
    let origin = Node::bare_origin(&dir, "origin");
    let broadcast = "live/short";
    let (mut publisher, source) =
        publish_ladder(&dir, &origin, broadcast, &clip, Layout::FragKeyframe);
    let published = source.captured.clone();
    let choices = [("lowest", Some("lowest")), ("highest", Some("highest"))];
    let (mut subscribers, _) = subscribe_renditions(&dir, &origin, broadcast, &choices);
    play_out(source, &mut publisher, &mut subscribers);

    let input = media::stream_hashes(&published);
    assert_eq!(
        input[2].1.len(),
        60,
        "the short rendition has 2 s of frames"
    );
    assert_eq!(input[0].1.len(), 120);
    for ((_, output), stream) in subscribers.iter().zip([2, 0]) {
        assert_rendition(&published, output, stream);
    }
}

/// The CLI rendition test: a ladder of about 2.5 Mbit/s, 1.2 Mbit/s and 400 kbit/s,
/// and a viewer behind a 1 Mbit/s link (a network namespace with a `tbf` limit) asking for
/// the lowest rung gets every sample of it and of the audio: only what it asked for
/// crosses the link.
#[test]
fn the_lowest_rendition_behind_a_1_mbit_link_arrives_whole() {
    let dir = output_dir("ladder_rendition_1mbit");
    let rungs = [
        Rung::new(640, 360, 2500),
        Rung::new(426, 240, 1200),
        Rung::new(256, 144, 400),
    ];
    let clip = media::make_ladder(&dir, "ladder.mp4", 6, &rungs, Layout::FragKeyframe);
    let ns = NetNs::new(LinkSpec::down(Rate::mbit(1.0))).unwrap_or_else(|err| {
        panic!("cannot build the network namespace (root and iproute2 are needed): {err}")
    });
    let origin = Node::bare_origin(&dir, "origin");
    let broadcast = "live/narrow";
    let (mut publisher, source) =
        publish_ladder(&dir, &origin, broadcast, &clip, Layout::FragKeyframe);
    let published = source.captured.clone();
    let declared = media::video_bitrates(&clip);
    // The whole ladder would not fit the link; the top rung alone would not either.
    assert!(
        declared[0] > 1_500_000,
        "the top rung is {} bit/s",
        declared[0]
    );
    assert!(
        declared[2] < 600_000,
        "the lowest rung is {} bit/s",
        declared[2]
    );

    let before = origin.metric("stagecast_subscriptions").unwrap_or(0.0);
    let output = dir.join("narrow.mp4");
    let log = std::fs::File::create(dir.join("narrow.log")).expect("log file");
    let subscriber = ns
        .command(bin("stagecast"))
        .args([
            "subscribe",
            &ns.host_url("moqt", origin.quic_port),
            broadcast,
        ])
        .args([
            "--fingerprint",
            &origin.fingerprint,
            "--rendition",
            "lowest",
        ])
        .arg("--output")
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast subscribe in the namespace");
    origin.wait_metric("stagecast_subscriptions", before + 3.0);
    let mut subscribers = vec![(subscriber, output.clone())];
    play_out(source, &mut publisher, &mut subscribers);
    assert_rendition(&published, &output, 2);
    // What crossed the link is that rendition and the audio (plus QUIC's overhead), not
    // the ladder.
    let sent = ns
        .qdisc_stats(Direction::Down)
        .expect("tc statistics")
        .sent_bytes;
    let received = std::fs::metadata(&output).expect("output").len();
    let ladder = std::fs::metadata(&published).expect("input").len();
    eprintln!(
        "behind 1 Mbit/s: {sent} bytes crossed the link, {received} written, {ladder} published"
    );
    assert!(
        sent < received * 3 / 2 && sent < ladder / 4,
        "{sent} bytes crossed the link for {received} bytes of output ({ladder} published)"
    );
}
