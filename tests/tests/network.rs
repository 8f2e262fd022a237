//! Real networks: a QUIC session through the userspace impairment relay (delay and loss),
//! and viewers in a network namespace behind a `tc tbf` rate limit, the link rate changed
//! while they watch. See docs/testing.md for the rig.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stagecast_tests::groups::{group_report, GroupReport};
use stagecast_tests::impair::{
    down_seed, DropReason, GilbertElliott, ImpairRelay, ImpairStats, Impairment, PathImpairment,
    Policy, Verdict,
};
use stagecast_tests::media::{self, Layout};
use stagecast_tests::netns::{Direction, LinkSpec, NetNs, Rate};
use stagecast_tests::node::Node;
use stagecast_tests::{bin, clips, output_dir, wait_exit, wait_until};

/// A namespace or the test fails: a rig that cannot be built is an error, never a skip.
fn netns(spec: LinkSpec) -> NetNs {
    NetNs::new(spec).unwrap_or_else(|err| {
        panic!("cannot build the network namespace (root and iproute2 are needed): {err}")
    })
}

/// `stagecast subscribe URL BROADCAST` run through `command` (inside a namespace or not),
/// writing `dir/<name>.mp4` and its log.
fn subscribe(
    mut command: Command,
    dir: &Path,
    name: &str,
    url: &str,
    broadcast: &str,
    fingerprint: &str,
) -> (Child, PathBuf) {
    let output = dir.join(format!("{name}.mp4"));
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let child = command
        .args(["subscribe", url, broadcast, "--fingerprint", fingerprint])
        .arg("--output")
        .arg(&output)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast subscribe");
    (child, output)
}

/// Waits until the origin holds `more` subscriptions beyond `before`: the subscriber's
/// catalog, video and audio are in place before the source's gate opens.
fn wait_subscribed(origin: &Node, before: f64, more: f64) {
    origin.wait_metric("stagecast_subscriptions", before + more);
}

/// What came out of a subscription through the impairment relay.
struct Impaired {
    captured: PathBuf,
    output: PathBuf,
    stats: ImpairStats,
}

/// Publishes a clip at an origin on loopback and subscribes to it with the CLI through an
/// impairment relay with `path` (the same both ways).
fn subscribe_impaired(test: &str, path: PathImpairment, seed: u64) -> Impaired {
    let rtt = path.up.delay + path.down.delay;
    let loss = path.down.loss;
    let dir = output_dir(test);
    let clip = media::make_clip(&dir, "clip.mp4", 8, Layout::FragEveryFrame, false);
    let origin = Node::bare_origin(&dir, "origin");
    let broadcast = "live/impaired";
    let (mut publisher, mut source) = media::publish_live(
        &dir,
        &origin,
        &origin,
        &origin.moqt_url(),
        broadcast,
        &clip,
        Layout::FragEveryFrame,
    );
    let relay = ImpairRelay::start(
        "[::1]:0".parse().unwrap(),
        format!("[::1]:{}", origin.quic_port).parse().unwrap(),
        path,
        seed,
    )
    .expect("an impairment relay on loopback");
    let before = origin.metric("stagecast_subscriptions").unwrap_or(0.0);
    let started = Instant::now();
    let (mut subscriber, output) = subscribe(
        Command::new(bin("stagecast")),
        &dir,
        "far",
        &format!("moqt://{}", relay.addr()),
        broadcast,
        &origin.fingerprint,
    );
    wait_subscribed(&origin, before, 3.0);
    let setup = started.elapsed();
    // The handshake, SETUP, the catalog and two SUBSCRIBEs take several round trips.
    assert!(
        setup >= rtt * 3,
        "subscribed after {setup:?}: the delay is not applied"
    );
    source.open_gate();
    let captured = source.captured.clone();
    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", Duration::from_secs(30)).success());
    let status = wait_exit(&mut subscriber, "subscriber", Duration::from_secs(30));
    assert!(status.success(), "the subscriber failed: {status}");
    let stats = relay.stats();
    eprintln!("{test}: subscribed after {setup:?}; impairment relay: {stats:?}");
    // Both directions together, within four standard deviations of the set ratio: a
    // seeded policy, but the packets it decides on vary from run to run.
    let packets = (stats.up.packets + stats.down.packets) as f64;
    let lost = (stats.up.dropped_random + stats.down.dropped_random) as f64;
    let (mean, sd) = (packets * loss, (packets * loss * (1.0 - loss)).sqrt());
    assert!(packets > 300.0, "only {packets} packets crossed");
    assert!(
        (lost > 0.0 || loss == 0.0) && (lost - mean).abs() <= 4.0 * sd,
        "{lost} of {packets} packets lost, {loss} set"
    );
    Impaired {
        captured,
        output,
        stats,
    }
}

/// A real QUIC session crosses the impairment relay's 100 ms and 2% loss each way: it
/// completes, recovers its losses, and what it writes is the published media without a
/// corrupt sample. (That every sample arrives is the next test's claim, which fails today.)
#[test]
fn a_quic_session_through_100_ms_and_2_percent_loss_completes_uncorrupted() {
    let run = subscribe_impaired("impaired_session", rtt_loss(100, 0.02), 12);
    let report = group_report(&run.captured, &run.output);
    eprintln!("100 ms, 2% loss: {}", report.summary());
    assert_never_corrupt(&report, &run.output);
    assert!(
        report.samples() * 10 >= report.total_samples() * 9,
        "less than 90% arrived: {}",
        report.summary()
    );
    assert!(run.stats.up.dropped_random > 0 && run.stats.down.dropped_random > 0);
}

fn rtt_loss(rtt_ms: u64, loss: f64) -> PathImpairment {
    PathImpairment::rtt_loss(Duration::from_millis(rtt_ms), loss)
}

/// Jitter, random loss and reordering on one path: QUIC sorts it out, and the CLI's
/// output stays a clean run of the input's samples.
#[test]
fn a_quic_session_through_jitter_loss_and_reordering_is_never_corrupt() {
    let path = PathImpairment::symmetric(Impairment {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        loss: 0.02,
        reorder: 0.02,
        reorder_extra: Duration::from_millis(15),
        ..Impairment::default()
    });
    let run = subscribe_impaired("impaired_jitter", path, 5);
    let report = group_report(&run.captured, &run.output);
    eprintln!("jitter, loss, reordering: {}", report.summary());
    assert_never_corrupt(&report, &run.output);
    assert!(
        report.samples() * 10 >= report.total_samples() * 9,
        "less than 90% arrived: {}",
        report.summary()
    );
    let (up, down) = (run.stats.up, run.stats.down);
    assert!(up.reordered + down.reordered > 0, "{:?}", run.stats);
}

/// Bursty loss (3% in bursts of about 3 packets, per packet as netem's `gemodel`) with
/// jitter and reordering, 40 ms round trip: every sample arrives.
///
/// With seed 5 this failed (2 to 5 of 8 groups lost from group 3 on), and the cause was
/// the seed, not the mix: its down chain loses packets 274 to 291 in a row, 18 packets
/// (a chance of about (2/3)^17). A burst that long takes every packet of QUIC's probe
/// timeouts, which back off exponentially, so the link was dark for 7 s (a qlog of the
/// origin: packets 276 to 292 lost from 2.9 s to 9.9 s, nothing acknowledged between): a
/// live subscriber that far behind loses its old groups by design (the baseline test).
/// "Bursts alone lose nothing" was another sequence of the same seed (no jitter, no
/// draws for it). The chain's decisions do not depend on timing, so the test checks the
/// seed models what it says, bursts of a few packets, before it runs.
#[test]
fn a_quic_session_through_bursts_jitter_and_reordering_receives_every_sample() {
    let path = PathImpairment::symmetric(Impairment {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        burst_loss: Some(GilbertElliott::bursts(0.03, 3.0)),
        reorder: 0.02,
        reorder_extra: Duration::from_millis(15),
        ..Impairment::default()
    });
    let seed = 18;
    // The session takes about 700 packets down and 330 up; a margin over both.
    let down = longest_burst(&path.down, down_seed(seed), 1000);
    let up = longest_burst(&path.up, seed, 500);
    assert!(
        down <= 5 && up <= 5,
        "seed {seed} loses {down} packets in a row down, {up} up: an outage, not bursts"
    );
    let run = subscribe_impaired("impaired_bursts", path, seed);
    let report = group_report(&run.captured, &run.output);
    eprintln!("bursts, jitter, reordering: {}", report.summary());
    assert_never_corrupt(&report, &run.output);
    let (up, down) = (run.stats.up, run.stats.down);
    assert!(up.dropped_burst + down.dropped_burst > 0, "{:?}", run.stats);
    media::assert_same_samples(&run.captured, &run.output);
}

/// The longest run of packets in a row that a direction seeded with `seed` loses to
/// bursts among its first `packets`. Without a rate limit the policy draws the same
/// numbers whatever the timing, so this is what a session's packets meet, in order.
fn longest_burst(impairment: &Impairment, seed: u64, packets: usize) -> usize {
    let mut policy = Policy::new(impairment.clone(), seed);
    let now = Instant::now();
    let (mut longest, mut run) = (0, 0);
    for _ in 0..packets {
        match policy.decide(now, 1200) {
            Verdict::Drop(DropReason::Burst) => run += 1,
            _ => run = 0,
        }
        longest = longest.max(run);
    }
    longest
}

/// The diagnosis of the bursts test's former failure, kept as a check: seed 5's down
/// chain, with jitter and reordering drawing too, loses 18 packets in a row early in the
/// session (the 7 s outage), and without jitter it does not.
#[test]
fn seed_5_of_the_bursty_path_is_an_outage_only_with_jitter_drawing() {
    let bursty = Impairment {
        delay: Duration::from_millis(20),
        burst_loss: Some(GilbertElliott::bursts(0.03, 3.0)),
        ..Impairment::default()
    };
    let jittery = Impairment {
        jitter: Duration::from_millis(15),
        reorder: 0.02,
        reorder_extra: Duration::from_millis(15),
        ..bursty.clone()
    };
    assert!(longest_burst(&jittery, down_seed(5), 300) >= 18);
    assert!(longest_burst(&bursty, down_seed(5), 300) < 10);
}

/// Issue 12: "100 ms round trip with 2% loss" must lose nothing. The CLI gives up on the
/// tail of a group left silent once the next group has begun; with a fixed 500 ms grace
/// a retransmission at this round trip came later (0 to 12 of 240 video samples lost per
/// run); the grace now follows the connection's round trip (client-cli track_reader.rs,
/// `stale_group_grace`).
#[test]
fn a_quic_session_through_100_ms_and_2_percent_loss_receives_every_sample() {
    let run = subscribe_impaired("impaired_every_sample", rtt_loss(100, 0.02), 12);
    media::assert_same_samples(&run.captured, &run.output);
}

/// What the tbf of a direction sent, in bits per second, over `window` from now.
fn measure_rate(ns: &NetNs, direction: Direction, window: Duration) -> f64 {
    let before = ns.qdisc_stats(direction).expect("tc statistics");
    let start = Instant::now();
    std::thread::sleep(window);
    let after = ns.qdisc_stats(direction).expect("tc statistics");
    (after.sent_bytes - before.sent_bytes) as f64 * 8.0 / start.elapsed().as_secs_f64()
}

/// What a viewer behind a narrow link received of a whole clip.
struct Baseline {
    report: GroupReport,
    output: PathBuf,
    /// What the link carried while the clip played, in bit/s.
    link_rate: f64,
    /// How long after the publisher's end the viewer's ended: how far behind live it was.
    lag_at_end: Duration,
    /// Groups the origin dropped for the viewer (`stagecast_groups_dropped_total`).
    origin_dropped: f64,
}

/// One rendition of about 3 Mbit/s to a CLI viewer in a namespace behind a 2 Mbit/s
/// `tbf` link, the origin outside.
fn baseline(test: &str) -> Baseline {
    let dir = output_dir(test);
    let clip = clips::cbr_clip(16, 640, 360, 3000, Layout::FragEveryFrame);
    let ns = netns(LinkSpec::down(Rate::mbit(2.0)));
    let origin = Node::bare_origin(&dir, "origin");
    let broadcast = "live/baseline";
    let (mut publisher, mut source) = media::publish_live(
        &dir,
        &origin,
        &origin,
        &origin.moqt_url(),
        broadcast,
        &clip,
        Layout::FragEveryFrame,
    );
    let before = origin.metric("stagecast_subscriptions").unwrap_or(0.0);
    let (mut subscriber, output) = subscribe(
        ns.command(bin("stagecast")),
        &dir,
        "slow",
        &ns.host_url("moqt", origin.quic_port),
        broadcast,
        &origin.fingerprint,
    );
    wait_subscribed(&origin, before, 3.0);
    source.open_gate();
    // Past the start, while the clip plays: the link is full.
    std::thread::sleep(Duration::from_secs(3));
    let link_rate = measure_rate(&ns, Direction::Down, Duration::from_secs(6));
    let captured = source.captured.clone();
    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", Duration::from_secs(30)).success());
    let published = Instant::now();
    let status = wait_exit(&mut subscriber, "subscriber", Duration::from_secs(40));
    let lag_at_end = published.elapsed();
    assert!(status.success(), "the subscriber failed: {status}");
    let report = group_report(&captured, &output);
    let origin_dropped = origin
        .metric("stagecast_groups_dropped_total")
        .unwrap_or(0.0);
    eprintln!(
        "{test}: {} kbit/s clip behind 2 Mbit/s: the link carried {:.2} Mbit/s; {}; the \
         origin dropped {origin_dropped} groups; the viewer ended {lag_at_end:?} after the \
         publisher; tbf {:?}",
        clips::bitrate(&clip) / 1000,
        link_rate / 1e6,
        report.summary(),
        ns.qdisc_stats(Direction::Down).expect("tc statistics"),
    );
    Baseline {
        report,
        output,
        link_rate,
        lag_at_end,
        origin_dropped,
    }
}

/// The baseline, what holds today: the link is the limit (full, at its rate,
/// and not everything arrives), and what the viewer writes is never corrupt: each group
/// it has starts at its keyframe and has no hole, and the file decodes.
#[test]
fn a_3_mbit_stream_behind_a_2_mbit_link_is_never_corrupt() {
    let run = baseline("baseline_2mbit");
    assert!(
        run.link_rate > 1.6e6 && run.link_rate < 2.2e6,
        "the link carried {} bit/s, set to 2 Mbit/s",
        run.link_rate
    );
    assert_never_corrupt(&run.report, &run.output);
    assert!(
        run.report.samples() < run.report.total_samples(),
        "everything arrived: the link did not limit"
    );
}

/// The baseline, the designed rest of it: a viewer that cannot keep up loses
/// whole old groups and stays near the live edge. Before the relay's lines of groups
/// (relay/src/delivery/lines.rs) the origin sent the whole backlog (6.76 MB through the
/// link, no group dropped), the viewer ended about 13 s behind, and every group was cut
/// short (about 16 of 30 frames each); now about 10 of 16 groups arrive whole, the rest
/// not at all, and the viewer ends about 3 s after the publisher.
#[test]
fn a_3_mbit_stream_behind_a_2_mbit_link_loses_whole_groups_and_stays_live() {
    let run = baseline("baseline_2mbit_designed");
    assert_never_corrupt(&run.report, &run.output);
    assert!(
        run.report.cut_short() <= 1,
        "groups cut short instead of dropped whole: {}",
        run.report.summary()
    );
    assert!(run.report.skipped() >= 1, "{}", run.report.summary());
    assert!(run.origin_dropped >= 1.0, "the origin dropped no group");
    assert!(
        run.lag_at_end < Duration::from_secs(5),
        "the viewer ended {:?} after the publisher",
        run.lag_at_end
    );
}

/// What a viewer that cannot take everything must never see: a sample that is not the
/// input's, out of order, or after a hole in its group; output that does not start at a
/// keyframe or does not decode.
fn assert_never_corrupt(report: &GroupReport, output: &Path) {
    assert!(
        report.faults.is_empty(),
        "corrupt output: {:?}",
        report.faults
    );
    assert!(media::first_video_packet_is_key(output));
    assert_eq!(media::decode_errors(output), "", "the output must decode");
}

/// A viewer in a namespace reaching the origin through the impairment relay and the
/// link's rate limit (what a browser test uses), the rate opened from 1 to 8 Mbit/s while
/// it watches: first it gets what 1 Mbit/s carries, after the change every group whole.
#[test]
fn a_link_opened_while_watching_carries_the_whole_stream() {
    let dir = output_dir("link_opened");
    let clip = clips::cbr_clip(16, 640, 360, 3000, Layout::FragEveryFrame);
    let ns = netns(LinkSpec::down(Rate::mbit(1.0)));
    let origin = Node::bare_origin(&dir, "origin");
    let relay = ns
        .impair_to(
            format!("[::1]:{}", origin.quic_port).parse().unwrap(),
            PathImpairment::rtt_loss(Duration::from_millis(40), 0.0),
            7,
        )
        .expect("an impairment relay on the link");
    let broadcast = "live/opened";
    let (mut publisher, mut source) = media::publish_live(
        &dir,
        &origin,
        &origin,
        &origin.moqt_url(),
        broadcast,
        &clip,
        Layout::FragEveryFrame,
    );
    let before = origin.metric("stagecast_subscriptions").unwrap_or(0.0);
    let (mut subscriber, output) = subscribe(
        ns.command(bin("stagecast")),
        &dir,
        "viewer",
        &format!("moqt://{}", relay.addr()),
        broadcast,
        &origin.fingerprint,
    );
    wait_subscribed(&origin, before, 3.0);
    source.open_gate();
    let opened_gate = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let narrow = measure_rate(&ns, Direction::Down, Duration::from_secs(3));
    ns.set_rate(Direction::Down, Rate::mbit(8.0))
        .expect("tc qdisc replace");
    let opened_at = opened_gate.elapsed();
    // The backlog clears, then the link carries the stream's 3 Mbit/s.
    std::thread::sleep(Duration::from_secs(3));
    let wide = measure_rate(&ns, Direction::Down, Duration::from_secs(4));
    let captured = source.captured.clone();
    source.finish();
    assert!(wait_exit(&mut publisher, "publisher", Duration::from_secs(30)).success());
    let status = wait_exit(&mut subscriber, "subscriber", Duration::from_secs(30));
    assert!(status.success(), "the viewer failed: {status}");

    let report = group_report(&captured, &output);
    eprintln!(
        "1 Mbit/s carried {:.2} Mbit/s, then 8 Mbit/s carried {:.2} Mbit/s (opened {opened_at:?} \
         into the clip); {}; relay {:?}",
        narrow / 1e6,
        wide / 1e6,
        report.summary(),
        relay.stats()
    );
    assert!(
        narrow < 1.1e6,
        "1 Mbit/s carried {narrow} bit/s: the limit does not hold"
    );
    assert!(
        wide > 2.5e6,
        "8 Mbit/s carried {wide} bit/s: the new rate is not in force"
    );
    assert_never_corrupt(&report, &output);
    // From two groups after the change on, every group arrives whole.
    let from = opened_at.as_secs() as usize + 2;
    let missing: Vec<usize> = (from..report.group_sizes.len())
        .filter(|g| report.received[*g] != report.group_sizes[*g])
        .collect();
    assert!(
        missing.is_empty(),
        "groups {missing:?} incomplete after the link opened: {}",
        report.summary()
    );
}

/// The rig cleans up: a namespace dropped (here by a panicking test) leaves no
/// namespace and no interface behind, and two at once never share a name or prefix.
#[test]
fn namespaces_are_unique_and_removed_even_when_a_test_panics() {
    let a = netns(LinkSpec::down(Rate::mbit(2.0)));
    let b = netns(LinkSpec::symmetric(Rate::kbit(500)));
    assert_ne!(a.name(), b.name());
    assert_ne!(a.host_addr(), b.host_addr());
    let name = b.name().to_string();
    let host_if = b.host_interface().to_string();
    let inside = b
        .command("sleep")
        .arg("30")
        .spawn()
        .expect("a process inside");
    wait_until("the process to be inside", Duration::from_secs(5), || {
        b.pids().contains(&inside.id())
    });
    // The shaping is what was asked, both ways.
    let shown = Command::new("ip")
        .args(["netns", "exec", &name, "tc", "qdisc", "show"])
        .output()
        .expect("tc");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("rate 500Kbit"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _b = b;
        panic!("a test fails while its namespace exists");
    }));
    assert!(panicked.is_err());
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&name),
        "{name} is still there"
    );
    let mut inside = inside;
    let killed = wait_exit(&mut inside, "the process inside", Duration::from_secs(5));
    assert!(!killed.success(), "it was killed, not finished: {killed}");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&host_if),
        "{host_if} is still there"
    );
    drop(a);
}

/// `stagecast-netrig`, the rig for tests that are not Rust (node): it prints where the
/// link is, changes its rate on command, answers a bad command with an error, and removes
/// everything when its stdin ends.
#[test]
fn the_netrig_process_builds_changes_and_removes_a_link() {
    use std::io::{BufRead, BufReader, Write};
    let mut rig = Command::new(bin("stagecast-netrig"))
        .args(["--down", "2mbit", "--target", "[::1]:9", "--rtt", "40ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start stagecast-netrig");
    let mut stdin = rig.stdin.take().expect("stdin");
    let mut lines = BufReader::new(rig.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().expect("a line").expect("stdout");
    let ready: serde_json::Value = serde_json::from_str(&next()).expect("a JSON ready line");
    let name = ready["namespace"].as_str().expect("namespace").to_string();
    let host = ready["hostAddr"].as_str().expect("hostAddr");
    assert!(host.starts_with("fd42:"), "{ready}");
    assert!(
        ready["relay"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("[{host}]:"))),
        "{ready}"
    );
    let wrapper = std::fs::read_to_string(ready["chromium"].as_str().expect("chromium"))
        .expect("the Chromium wrapper");
    assert!(wrapper.contains(&format!("ip netns exec {name} /usr/bin/chromium")));

    let dev = ready["hostInterface"].as_str().expect("hostInterface");
    let qdisc = || {
        let out = Command::new("tc")
            .args(["qdisc", "show", "dev", dev])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(qdisc().contains("rate 2Mbit"), "{}", qdisc());
    writeln!(stdin, "rate down 6mbit").unwrap();
    assert_eq!(next(), "ok");
    assert!(qdisc().contains("rate 6Mbit"), "{}", qdisc());
    writeln!(stdin, "impair 100ms 0.02").unwrap();
    assert_eq!(next(), "ok");
    writeln!(stdin, "rate down fast").unwrap();
    assert!(next().starts_with("error: "));
    drop(stdin);
    assert!(wait_exit(&mut rig, "stagecast-netrig", Duration::from_secs(10)).success());
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&name),
        "{name} is still there"
    );
}
