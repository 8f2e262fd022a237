//! Interop with independent MoQ Transport draft-18 implementations from crates.io,
//! installed by `scripts/interop-peers.sh` (these tests fail, naming that script, when
//! they are missing): `moq-relay-ietf`, `moq-pub`, `moq-sub`, `moq-clock-ietf` (the
//! moq-transport 0.17 family) and `moq-relay` (moq-dev, a separate code base). The peers
//! are started by `stagecast_tests::peers`.
//!
//! Every process runs on loopback and is killed at the end of its test (the handles kill
//! on drop). Where a peer departs from the draft, the test that meets it says how (message,
//! field, section) and checks that Stagecast does what the draft says; `docs/interop.md`
//! collects those findings.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use stagecast_proto::certificate::ServerIdentity;
use stagecast_tests::media::{self, Layout, LiveSource};
use stagecast_tests::node::{issue_token, Node};
use stagecast_tests::peers::clock::{
    assert_clock_received, auth_token_arg, clock, clock_lines, subscribe_clock_when_routed,
};
use stagecast_tests::peers::moq_pub::{
    assert_moq_sub_received, moq_pub, moq_sub, wait_for_moq_sub, MoqPub,
};
use stagecast_tests::peers::relays::{
    coordinator_routes, moq_relay, moq_relay_ietf, negotiated_draft_18, PeerCert,
};
use stagecast_tests::peers::{tail, Peer};
use stagecast_tests::{output_dir, wait_exit, wait_until};

/// How long a media subscriber gets to end after its publisher finished or went.
const END_TIMEOUT: Duration = Duration::from_secs(30);

/// A development certificate (ECDSA P-256, for `localhost` and 127.0.0.1) made the way
/// Stagecast nodes make theirs, for a peer relay.
fn peer_cert(dir: &Path, name: &str) -> PeerCert {
    let at = dir.join(name);
    let identity = ServerIdentity::load_or_create_dev(&at, &[]).expect("make a certificate");
    PeerCert {
        cert: at.join("dev-cert.pem"),
        key: at.join("dev-key.pem"),
        fingerprint: identity.fingerprint,
    }
}

/// A Stagecast relay without authorization (the peers present no Stagecast token) under
/// `upstream` (any MoQ relay, pinned by `fingerprint`), linked before it returns.
fn open_relay_under(dir: &Path, name: &str, upstream: &str, fingerprint: &str) -> Node {
    let relay = Node::relay_with_args(
        dir,
        name,
        &[
            "--upstream",
            upstream,
            "--upstream-fingerprint",
            fingerprint,
            "--no-auth",
        ],
    );
    relay.wait_metric("stagecast_upstream_connected", 1.0);
    relay
}

// ---------------------------------------------------------------------------------------
// moq-clock-ietf through Stagecast

/// moq-clock-ietf on either side of Stagecast relays (an origin and an edge under it). It
/// presents a Stagecast token in SETUP's AUTHORIZATION TOKEN (draft-18 §10.3.1.4, Token
/// Type 0) to publish.
/// - Published at the edge (which announces it upstream with PUBLISH_NAMESPACE): printed
///   by subscribers at the edge and at the origin.
/// - Published at the origin: printed by a subscriber at the edge (which subscribes
///   upstream).
#[test]
fn clock_publishes_and_subscribes_through_stagecast_relays_both_ways() {
    let dir = output_dir("interop_clock_stagecast");
    let origin = Node::bare_origin(&dir, "origin");
    let edge = Node::relay(&dir, "edge", &origin);
    let token = issue_token(&origin.key_file, "clock", &["clock"], &[], "1h");
    let auth = auth_token_arg(&token);

    let mut up_pub = clock(
        &dir,
        "clock-pub-edge",
        &edge.moqt_url(),
        "clock/edge",
        true,
        &["--auth-token", &auth],
    );
    wait_until(
        "the origin to list clock/edge",
        Duration::from_secs(20),
        || stagecast_tests::origin_lists(&origin, "clock/edge"),
    );
    let mut at_edge = clock(
        &dir,
        "clock-sub-edge",
        &edge.moqt_url(),
        "clock/edge",
        false,
        &[],
    );
    let mut at_origin = clock(
        &dir,
        "clock-sub-origin",
        &origin.moqt_url(),
        "clock/edge",
        false,
        &[],
    );
    assert_clock_received(&mut up_pub, &mut at_edge, 3);
    assert_clock_received(&mut up_pub, &mut at_origin, 3);

    let mut down_pub = clock(
        &dir,
        "clock-pub-origin",
        &origin.moqt_url(),
        "clock/origin",
        true,
        &["--auth-token", &auth],
    );
    wait_until(
        "the origin to list clock/origin",
        Duration::from_secs(20),
        || stagecast_tests::origin_lists(&origin, "clock/origin"),
    );
    let mut down_sub =
        subscribe_clock_when_routed(&dir, "clock-sub-down", &edge.moqt_url(), "clock/origin");
    assert_clock_received(&mut down_pub, &mut down_sub, 3);
}

/// Without a token the Stagecast relay refuses moq-clock-ietf's PUBLISH_NAMESPACE
/// (REQUEST_ERROR UNAUTHORIZED), and moq-clock-ietf ends with that error.
#[test]
fn clock_without_token_is_refused_by_stagecast() {
    let dir = output_dir("interop_clock_refused");
    let origin = Node::bare_origin(&dir, "origin");
    let mut publisher = clock(&dir, "clock-pub", &origin.moqt_url(), "clock", true, &[]);
    let status = publisher.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "moq-clock-ietf was not refused");
    assert!(
        publisher.log_text().contains("closed, code=1"),
        "moq-clock-ietf was not refused with UNAUTHORIZED (0x1); its log ends:\n{}",
        tail(&publisher.log_text(), 20)
    );
    assert!(!stagecast_tests::origin_lists(&origin, "clock"));
}

/// moq-clock-ietf's joining subscriber (`--join-groups 1`) at a Stagecast relay, while the
/// publisher is still in its first minute (its first group, m). The subscriber's Relative
/// Joining FETCH asks for groups m-1..m (draft-18 §10.12.2.1). The relay holds group m
/// from object 0 but cannot know whether m-1 exists, so it asks the publisher (§10.12.3:
/// an object "not cached and has unknown status" is confirmed upstream) and passes its
/// answer on.
///
/// Deviation, moq-clock-ietf as publisher: it answers that FETCH with REQUEST_ERROR, Error
/// Code DOES_NOT_EXIST (0x10), because the range starts before its retained history. Per
/// §10.12.3 the publisher "is responsible for delivering all available Objects in the
/// requested range", a gap meaning objects that do not exist, and DOES_NOT_EXIST (§10.6)
/// means the track is not available: FETCH_OK and group m would be right. The subscriber
/// then exits.
#[test]
fn clock_joining_fetch_in_the_first_minute_is_refused_by_the_clock_publisher() {
    let dir = output_dir("interop_clock_join");
    let origin = Node::bare_origin(&dir, "origin");
    let token = issue_token(&origin.key_file, "clock", &["clock"], &[], "1h");
    let auth = auth_token_arg(&token);
    // The publisher's first group must still be the newest when the subscriber joins, and
    // its ID (the minute of the hour, UTC) at least 1: the subscriber asks for
    // min(1, current group) groups back, so in minute :00 it asks for the current group
    // alone, which the publisher has.
    wait_until(
        "a minute other than :00 with 15 s left",
        Duration::from_secs(90),
        || {
            let (minute, second) = minute_and_second();
            minute != 0 && second < 45
        },
    );
    let mut publisher = clock(
        &dir,
        "clock-pub",
        &origin.moqt_url(),
        "clock",
        true,
        &["--auth-token", &auth],
    );
    let mut plain = subscribe_clock_when_routed(&dir, "clock-sub", &origin.moqt_url(), "clock");
    assert_clock_received(&mut publisher, &mut plain, 2);
    let mut joining = clock(
        &dir,
        "clock-join",
        &origin.moqt_url(),
        "clock",
        false,
        &["--join-groups", "1"],
    );
    let status = joining.wait_exit(Duration::from_secs(20));
    let log = joining.log_text();
    assert!(
        !status.success() && log.contains("closed, code=16"),
        "the joining subscriber was not refused with DOES_NOT_EXIST (0x10): moq-clock-ietf \
         may now answer a FETCH that starts before its first group (update docs/interop.md); \
         its log ends:\n{}",
        tail(&log, 20)
    );
    let minutes: std::collections::BTreeSet<String> = clock_lines(&publisher)
        .iter()
        .map(|time| time[..16].to_string())
        .collect();
    assert_eq!(
        minutes.len(),
        1,
        "the publisher left its first minute before the join: {minutes:?}"
    );
}

/// The minute of the hour and the second of the minute by the wall clock (UTC), which
/// moq-clock-ietf's groups follow (group ID = minute of the hour at the group's start).
fn minute_and_second() -> (u64, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    (now.as_secs() / 60 % 60, now.as_secs() % 60)
}

// ---------------------------------------------------------------------------------------
// moq-pub (fragmented MP4 from ffmpeg) into Stagecast and moq-relay-ietf

/// moq-pub publishes fMP4 from ffmpeg into a Stagecast edge relay; `stagecast subscribe`
/// at the edge and moq-sub at the origin above it both receive every sample and decode it
/// cleanly. moq-pub's layout is not MSF (see `stagecast_media::moq_pub`); `stagecast
/// subscribe` reads its `.catalog` and shared init track.
#[test]
fn moq_pub_into_stagecast_relay_reaches_moq_sub_and_stagecast_subscribe() {
    let dir = output_dir("interop_moq_pub");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragEveryFrame, false);
    // moq-pub presents no token: these nodes run without authorization.
    let origin = Node::origin(&dir, "origin", &["--no-demo", "--no-auth"]);
    let edge = open_relay_under(&dir, "edge", &origin.moqt_url(), &origin.fingerprint);
    let broadcast = "live/pub";
    let (moq_pub, mut source) = moq_pub(&dir, &edge.moqt_url(), broadcast, &clip, &[]);
    wait_until(
        "the origin to list the broadcast",
        Duration::from_secs(20),
        || stagecast_tests::origin_lists(&origin, broadcast),
    );
    let (mut subscriber, output) = subscribe_once_published(
        &dir,
        "stagecast-sub",
        &edge.moqt_url(),
        broadcast,
        &edge.fingerprint,
    );
    let mut moq_sub = moq_sub(&dir, &origin.moqt_url(), broadcast);
    source.open_gate();
    let captured = source.captured.clone();
    source.finish();
    finish_moq_pub(&captured, moq_pub, &mut subscriber, &output, &mut moq_sub);
}

/// After moq-pub's input ended: waits until both subscribers have every sample, stops
/// moq-pub (it never ends its tracks by itself), checks that `stagecast subscribe` and
/// moq-sub end by themselves once their source is gone, and that both outputs hold every
/// sample and decode cleanly.
fn finish_moq_pub(
    captured: &Path,
    moq_pub: MoqPub,
    subscriber: &mut Child,
    output: &Path,
    moq_sub: &mut Peer,
) {
    wait_until(
        "stagecast subscribe to have every packet",
        Duration::from_secs(20),
        || media::has_all_packets(output, captured),
    );
    wait_for_moq_sub(moq_sub, captured);
    moq_pub.stop();
    let status = wait_exit(subscriber, "stagecast subscribe", END_TIMEOUT);
    assert!(status.success(), "stagecast subscribe failed: {status}");
    media::assert_same_samples(captured, output);
    assert_eq!(
        media::decode_errors(output),
        "",
        "stagecast's output does not decode cleanly"
    );
    assert_moq_sub_received(moq_sub, captured);
}

/// moq-pub into moq-relay-ietf: moq-sub, subscribed from the start, receives every sample;
/// `stagecast subscribe`, joining two groups later, receives every sample from a keyframe
/// to the end.
///
/// moq-relay-ietf does not cache (draft-18 §9.1 allows that): it forwards to a subscriber
/// only the objects that arrive after its SUBSCRIBE (§9.4), so a late subscriber of
/// `.catalog` and `0.mp4`, whose one object each was sent once at the start, gets nothing
/// on its subscriptions. `stagecast subscribe` then joins those groups with a Joining FETCH
/// (§5.1.3, §10.12.2), which moq-relay-ietf forwards to moq-pub as a standalone FETCH
/// (moq-pub answers FETCH only with `--fetch-groups`).
#[test]
fn moq_pub_through_moq_relay_ietf_late_subscriber_joins_by_fetch() {
    let late = moq_pub_late_join_through_moq_relay_ietf(
        "interop_moq_pub_moq_relay_ietf",
        &["--fetch-groups", "4"],
    );
    let log = late.log();
    assert!(
        late.status.success(),
        "stagecast subscribe failed ({}): {log}",
        late.status
    );
    for track in [".catalog", "0.mp4"] {
        assert!(
            log.contains(&format!(
                "object 0 taken by a Joining FETCH track=\"{track}\""
            )),
            "the late subscriber got {track} without a FETCH: moq-relay-ietf now serves late \
             subscribers from a cache (update docs/interop.md); its log: {log}"
        );
    }
    let video = media::assert_suffix_of(&late.captured, &late.output);
    assert!(
        video >= 30,
        "the late subscriber got {video} video packets, not a group"
    );
    assert!(
        media::first_video_packet_is_key(&late.output),
        "stagecast subscribe did not start at a keyframe"
    );
    assert_eq!(
        media::decode_errors(&late.output),
        "",
        "stagecast's output does not decode cleanly"
    );
}

/// What cannot work: moq-pub without `--fetch-groups` refuses FETCH (REQUEST_ERROR
/// NOT_SUPPORTED, 0x3), so through moq-relay-ietf (no cache) a late subscriber can never
/// get the catalog, sent once. `stagecast subscribe` tries the Joining FETCH, is refused,
/// and fails with a clear error after its 10 s wait; moq-sub (which never FETCHes a
/// catalog) would wait forever.
#[test]
fn moq_pub_without_fetch_through_moq_relay_ietf_cannot_be_joined_late() {
    let late = moq_pub_late_join_through_moq_relay_ietf("interop_moq_pub_no_fetch", &[]);
    let log = late.log();
    assert!(
        !late.status.success(),
        "the late subscriber got the stream: update docs/interop.md"
    );
    assert!(
        log.contains("Joining FETCH failed (closed, code=3)"),
        "moq-pub did not refuse FETCH with NOT_SUPPORTED (0x3): {log}"
    );
    assert!(log.contains("live/pub sent no catalog within 10s"), "{log}");
}

/// How a late `stagecast subscribe` ended, next to what was published.
struct LateJoin {
    dir: PathBuf,
    status: std::process::ExitStatus,
    output: PathBuf,
    captured: PathBuf,
}

impl LateJoin {
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("stagecast-sub.log")).unwrap_or_default();
        strip_ansi(&log)
    }
}

/// moq-pub (with `moq_pub_args`) publishing an 8 s clip into moq-relay-ietf; moq-sub,
/// subscribed from the start, must receive every sample; `stagecast subscribe` starts two
/// groups later and is left to reach the end (or fail) before moq-pub stops.
fn moq_pub_late_join_through_moq_relay_ietf(test: &str, moq_pub_args: &[&str]) -> LateJoin {
    let dir = output_dir(test);
    // Long enough that the late subscriber, after its FETCHes, still sees new groups.
    let clip = media::make_clip(&dir, "clip.mp4", 8, Layout::FragEveryFrame, false);
    let cert = peer_cert(&dir, "relay-cert");
    let relay = moq_relay_ietf(&dir, "moq-relay-ietf", &cert, None);
    let broadcast = "live/pub";
    let (moq_pub, mut source) = moq_pub(&dir, &relay.url, broadcast, &clip, moq_pub_args);
    wait_until(
        "moq-relay-ietf to take the namespace",
        Duration::from_secs(20),
        || relay.peer.log_text().contains("serving PUBLISH_NAMESPACE"),
    );
    let mut moq_sub = moq_sub(&dir, &relay.url, broadcast);
    source.open_gate();
    wait_until(
        "moq-sub to receive two groups",
        Duration::from_secs(20),
        || media::video_packets_so_far(&moq_sub.output_path()) >= 60,
    );
    let (mut subscriber, output) = media::subscriber(
        &dir,
        "stagecast-sub",
        &relay.url,
        broadcast,
        &cert.fingerprint,
        &[],
    );
    let captured = source.captured.clone();
    source.finish();
    wait_for_moq_sub(&moq_sub, &captured);
    wait_until(
        "the late stagecast subscribe to reach the end, or fail",
        END_TIMEOUT,
        || {
            subscriber.try_wait().expect("try_wait").is_some()
                || media::has_tail(&output, &captured)
        },
    );
    // moq-pub never ends its tracks: when it goes, the subscriptions end.
    moq_pub.stop();
    let status = wait_exit(&mut subscriber, "stagecast subscribe", END_TIMEOUT);
    assert_moq_sub_received(&mut moq_sub, &captured);
    LateJoin {
        dir,
        status,
        output,
        captured,
    }
}

/// `text` without terminal colour codes (the CLI colours its log).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, up to a final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Stagecast media through peer relays

/// `stagecast subscribe` at a relay, started again while the relay answers "not found"
/// (the publisher's PUBLISH_NAMESPACE may not have reached it yet). Returns once its
/// output has the init segment: by then every track is subscribed.
fn subscribe_once_published(
    dir: &Path,
    name: &str,
    url: &str,
    broadcast: &str,
    fingerprint: &str,
) -> (Child, PathBuf) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (mut child, output) = media::subscriber(dir, name, url, broadcast, fingerprint, &[]);
        let started = Instant::now();
        loop {
            if std::fs::metadata(&output).is_ok_and(|m| m.len() > 0) {
                return (child, output);
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                let log =
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                assert!(
                    log.contains("not found") && Instant::now() < deadline,
                    "{name} exited ({status}) before subscribing: {log}"
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{name} did not subscribe within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A pause before asking again, so a relay still routing is not flooded.
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `stagecast publish` at `url` (a peer, or a Stagecast node without authorization)
/// reading a gated live source of `clip`. It presents no token: moq-relay closes a session
/// whose AUTHORIZATION TOKEN it cannot verify.
fn publish_to_peer(
    dir: &Path,
    url: &str,
    broadcast: &str,
    fingerprint: &str,
    clip: &Path,
) -> (Child, LiveSource) {
    let log = std::fs::File::create(dir.join("publish.log")).expect("log file");
    let mut child = std::process::Command::new(stagecast_tests::bin("stagecast"))
        .args(["publish", url, broadcast, "--fingerprint", fingerprint])
        .env_remove("STAGECAST_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast publish");
    let stdin = child.stdin.take().expect("publisher stdin");
    let source = LiveSource::start(clip, Layout::FragKeyframe, stdin, dir.join("input.mp4"));
    (child, source)
}

/// `stagecast publish` at `publish` and `stagecast subscribe` at `subscribe` (each a URL
/// and the fingerprint to pin; either may be a peer): the subscriber there from the start
/// receives every sample; a second one, joining two groups later, receives every sample
/// from a keyframe to the end. Both end by themselves when the publisher finishes.
fn stagecast_round_trip(dir: &Path, publish: (&str, &str), subscribe: (&str, &str)) {
    // Six seconds, so the late subscriber has four to connect while the broadcast is live.
    let clip = media::make_clip(dir, "clip.mp4", 6, Layout::FragKeyframe, false);
    let broadcast = "live/alice";
    let (mut publisher, mut source) = publish_to_peer(dir, publish.0, broadcast, publish.1, &clip);
    let (mut subscriber, output) =
        subscribe_once_published(dir, "output", subscribe.0, broadcast, subscribe.1);
    source.open_gate();
    wait_until(
        "the subscriber to receive two groups",
        Duration::from_secs(20),
        || media::video_packets_so_far(&output) >= 60,
    );
    // The late subscriber is subscribed before the publisher finishes: a relay forgets a
    // broadcast once its publisher has gone.
    let (mut late, late_output) =
        subscribe_once_published(dir, "late", subscribe.0, broadcast, subscribe.1);
    let captured = source.captured.clone();
    source.finish();
    let status = wait_exit(&mut publisher, "stagecast publish", END_TIMEOUT);
    assert!(status.success(), "stagecast publish failed: {status}");
    let status = wait_exit(&mut subscriber, "stagecast subscribe", END_TIMEOUT);
    assert!(status.success(), "stagecast subscribe failed: {status}");
    media::assert_same_samples(&captured, &output);
    assert_eq!(
        media::decode_errors(&output),
        "",
        "the output does not decode cleanly"
    );

    let status = wait_exit(&mut late, "the late stagecast subscribe", END_TIMEOUT);
    assert!(
        status.success(),
        "the late stagecast subscribe failed: {status}"
    );
    media::assert_suffix_of(&captured, &late_output);
    assert!(
        media::first_video_packet_is_key(&late_output),
        "the late subscriber did not start at a keyframe"
    );
    assert_eq!(
        media::decode_errors(&late_output),
        "",
        "the late output does not decode cleanly"
    );
}

/// `stagecast publish` into moq-relay-ietf and `stagecast subscribe` from it. The late
/// subscriber gets the catalog by a Joining FETCH, which moq-relay-ietf forwards to the
/// publisher (`stagecast publish` serves FETCH from its own cache).
#[test]
fn stagecast_publish_and_subscribe_through_moq_relay_ietf() {
    let dir = output_dir("interop_moq_relay_ietf");
    let cert = peer_cert(&dir, "relay-cert");
    let relay = moq_relay_ietf(&dir, "moq-relay-ietf", &cert, None);
    let at = (relay.url.as_str(), cert.fingerprint.as_str());
    stagecast_round_trip(&dir, at, at);
}

/// `stagecast publish` into moq-relay (which negotiates draft-18 with Stagecast among the
/// versions it speaks) and `stagecast subscribe` from it. moq-relay ends a finished track
/// with an End of Track status object (draft-18 §11.2.1.1), which Stagecast takes as the
/// end of the track.
#[test]
fn stagecast_publish_and_subscribe_through_moq_relay() {
    let dir = output_dir("interop_moq_relay");
    let cert = peer_cert(&dir, "relay-cert");
    let relay = moq_relay(&dir, "moq-relay", &cert);
    let at = (relay.url.as_str(), cert.fingerprint.as_str());
    stagecast_round_trip(&dir, at, at);
    assert!(
        negotiated_draft_18(&relay.peer),
        "moq-relay did not speak draft-18"
    );
}

/// A SETUP whose AUTHORIZATION TOKEN (Alias Type USE_VALUE, Token Type 0, a value that is
/// no JWT) cannot be used: draft-18 §10.2.2 says "the receiver of a message containing a
/// well-formed Token structure but otherwise invalid AUTHORIZATION TOKEN parameter MUST
/// reject that message with an MALFORMED_AUTH_TOKEN error", which for SETUP (§10.3.1.4)
/// means closing the session with MALFORMED_AUTH_TOKEN (0x16, §3.5). Stagecast does.
///
/// Deviation, moq-relay: it closes the session with UNAUTHORIZED (0x2).
#[test]
fn malformed_token_closes_the_session_malformed_at_stagecast_unauthorized_at_moq_relay() {
    let dir = output_dir("interop_malformed_token");
    let cert = peer_cert(&dir, "relay-cert");
    let relay = moq_relay(&dir, "moq-relay", &cert);
    let origin = Node::bare_origin(&dir, "origin");
    let (code, reason) = setup_close(&origin.moqt_url(), &origin.fingerprint, b"not-a-jwt");
    assert_eq!(
        code, 0x16,
        "Stagecast did not close with MALFORMED_AUTH_TOKEN (0x16) but {code:#x} ({reason})"
    );
    let (code, reason) = setup_close(&relay.url, &cert.fingerprint, b"not-a-jwt");
    assert_eq!(
        code, 0x2,
        "moq-relay no longer closes with UNAUTHORIZED (0x2) but {code:#x} ({reason}): update \
         docs/interop.md"
    );
}

/// Connects to `url` presenting `token` (Token Type 0) in SETUP and returns the close code
/// and reason the server ends the session with, whether it refuses SETUP or closes later.
fn setup_close(url: &str, fingerprint: &str, token: &[u8]) -> (u64, String) {
    use moq_transport::session::Session;
    use moq_transport::setup::AuthorizationToken;
    use stagecast_proto::close::{connection_close, peer_close};
    use stagecast_proto::endpoint::ClientEndpoint;
    use stagecast_proto::trust::ClientTrust;

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client = ClientEndpoint::new().expect("client endpoint");
        let trust = ClientTrust::pinned_hex(fingerprint).expect("fingerprint");
        let url: url::Url = url.parse().expect("url");
        let (session, transport) = client.connect(&url, &trust).await.expect("QUIC handshake");
        let connection = session.clone();
        let tokens = vec![AuthorizationToken::new(0, token.to_vec())];
        let error =
            match Session::connect_with_tokens(session.into(), None, transport, tokens).await {
                Err(error) => error,
                // SETUP accepted, then the session closed: its end says why.
                Ok((session, _publisher, _subscriber)) => {
                    tokio::time::timeout(Duration::from_secs(10), session.run())
                        .await
                        .expect("the server kept the session with an unusable token")
                        .expect_err("the session ended without an error")
                }
            };
        match peer_close(&error) {
            Some(close) => close,
            None => connection_close(&connection, Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{url} did not close the session: {error}")),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Chains of Stagecast and moq-relay-ietf

/// A Stagecast relay under moq-relay-ietf (`--upstream` the peer): the clock published at
/// moq-relay-ietf is printed at the Stagecast relay; the clock published at the Stagecast
/// relay (which announces it upstream with PUBLISH_NAMESPACE) is printed at moq-relay-ietf;
/// Stagecast media published at moq-relay-ietf arrives whole at the Stagecast relay.
#[test]
fn stagecast_relay_chained_under_moq_relay_ietf() {
    let dir = output_dir("interop_chain_under_moq_relay_ietf");
    let cert = peer_cert(&dir, "relay-cert");
    let upper = moq_relay_ietf(&dir, "moq-relay-ietf", &cert, None);
    let edge = open_relay_under(&dir, "edge", &upper.url, &cert.fingerprint);

    let mut down_pub = clock(&dir, "clock-pub-upper", &upper.url, "clock/down", true, &[]);
    let mut down_sub =
        subscribe_clock_when_routed(&dir, "clock-sub-edge", &edge.moqt_url(), "clock/down");
    assert_clock_received(&mut down_pub, &mut down_sub, 3);

    let mut up_pub = clock(
        &dir,
        "clock-pub-edge",
        &edge.moqt_url(),
        "clock/up",
        true,
        &[],
    );
    let mut up_sub = subscribe_clock_when_routed(&dir, "clock-sub-upper", &upper.url, "clock/up");
    assert_clock_received(&mut up_pub, &mut up_sub, 3);

    stagecast_round_trip(
        &dir,
        (&upper.url, &cert.fingerprint),
        (&edge.moqt_url(), &edge.fingerprint),
    );
}

/// moq-relay-ietf under a Stagecast relay: its coordinator routes the namespaces to the
/// Stagecast relay, which it dials as a client. The clock and Stagecast media published at
/// the Stagecast relay arrive at moq-relay-ietf's subscribers.
#[test]
fn moq_relay_ietf_chained_under_stagecast_relay() {
    let dir = output_dir("interop_chain_under_stagecast");
    let upper = Node::relay_with_args(&dir, "stagecast-relay", &["--no-auth"]);
    let route = format!("moqt://127.0.0.1:{}", upper.quic_port);
    let coordinator = coordinator_routes(&["clock", "live/alice"], &route);
    let cert = peer_cert(&dir, "relay-cert");
    let edge = moq_relay_ietf(&dir, "moq-relay-ietf", &cert, Some(&coordinator));

    let mut publisher = clock(&dir, "clock-pub", &upper.moqt_url(), "clock", true, &[]);
    let mut subscriber = subscribe_clock_when_routed(&dir, "clock-sub", &edge.url, "clock");
    assert_clock_received(&mut publisher, &mut subscriber, 3);

    stagecast_round_trip(
        &dir,
        (&upper.moqt_url(), &upper.fingerprint),
        (&edge.url, &cert.fingerprint),
    );
}
