//! Open to the public (issue 11): what a hostile viewer or publisher can try, against real
//! origins on loopback, each refused with a clear answer while friendly users carry on.
//!
//! - guests watch only what anonymous viewers may, are rationed per address and keep
//!   their identity; interaction hellos need watch rights; moderators moderate only
//!   their paths; development credits, reactions and display names follow the rules;
//! - a second publisher cannot take over a live path;
//! - hellos to made-up sub-paths open no channels;
//! - idle QUIC connections past the per-address cap are refused while a viewer from
//!   another address still plays, and a connection that never sends SETUP is closed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use stagecast_cli::connect::{connect_session, Connection};
use stagecast_cli::interact::{new_key, Refused, RequestStream};
use stagecast_proto::interaction::{Action, Answer, Reason, Request};
use stagecast_proto::trust::ClientTrust;
use stagecast_tests::media::{make_clip, Layout};
use stagecast_tests::node::Node;
use stagecast_tests::{bin, origin_lists, output_dir, runtime, wait_exit, wait_until};

/// `POST /api/guest` from `host` (`127.0.0.1` or `[::1]`): status and body.
fn post_guest(node: &Node, host: &str, body: serde_json::Value) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!("http://{host}:{}/api/guest", node.http_port))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("POST /api/guest");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn guest(node: &Node, host: &str, name: &str, previous: Option<&str>) -> serde_json::Value {
    let (status, body) = post_guest(
        node,
        host,
        serde_json::json!({"name": name, "token": previous}),
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A token's claims (not verified: the test only reads what the origin put in it).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// `stagecast token issue` with any extra arguments.
fn token(key_file: &Path, args: &[&str]) -> String {
    let output = Command::new(bin("stagecast"))
        .args(["token", "issue", "--key-file"])
        .arg(key_file)
        .args(["--ttl", "1h"])
        .args(args)
        .output()
        .expect("run stagecast token issue");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `stagecast publish --file CLIP --loop` of `broadcast` at `node` with `token`.
fn publish_file(
    dir: &Path,
    node: &Node,
    broadcast: &str,
    clip: &Path,
    token: &str,
    name: &str,
) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(bin("stagecast"))
        .args([
            "publish",
            &node.moqt_url(),
            broadcast,
            "--fingerprint",
            &node.fingerprint,
        ])
        .args(["--token", token, "--loop", "--file"])
        .arg(clip)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast publish")
}

/// A connection to `node` holding one request stream for `broadcast`; the first answer.
async fn hello(
    node: &Node,
    broadcast: &str,
    token: Option<&str>,
) -> (Connection, Option<RequestStream>, Answer) {
    let url = url::Url::parse(&node.moqt_url()).unwrap();
    let trust = ClientTrust::pinned_hex(&node.fingerprint).unwrap();
    let connection = connect_session(&url, &trust, None).await.expect("connect");
    match RequestStream::open(&connection.transport, broadcast, token).await {
        Ok((stream, answer)) => (connection, Some(stream), answer),
        Err(err) => (connection, None, refusal(err)),
    }
}

async fn send(stream: &mut RequestStream, action: Action) -> Answer {
    let request = Request {
        key: new_key(),
        action,
    };
    stream.request(&request).await.expect("an answer")
}

/// A refused hello as the error answer it was.
fn refusal(err: anyhow::Error) -> Answer {
    match err.downcast::<Refused>() {
        Ok(Refused { reason, message }) => Answer::Error { reason, message },
        Err(err) => panic!("no answer to a hello: {err:#}"),
    }
}

fn reason(answer: &Answer) -> Option<Reason> {
    match answer {
        Answer::Rejected { reason, .. } | Answer::Error { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn guests_watch_only_what_anonymous_viewers_may_and_are_rationed_per_address() {
    let dir = output_dir("public_guests");
    let origin = Node::origin(
        &dir,
        "origin",
        &[
            "--anonymous-subscribe",
            "demo/",
            "--guest-burst",
            "3",
            "--guest-per-minute",
            "1",
        ],
    );
    let first = guest(&origin, "127.0.0.1", "Ann", None);
    let token_a = first["token"].as_str().unwrap().to_string();
    assert_eq!(claims(&token_a)["subscribe"], serde_json::json!(["demo/"]));
    let second = guest(&origin, "127.0.0.1", "Bob", None);
    assert_ne!(first["user"], second["user"]);
    // The same browser showing its previous token keeps its identity, whatever its name.
    let again = guest(&origin, "127.0.0.1", "Ann B.", Some(&token_a));
    assert_eq!(again["user"], first["user"]);
    assert_eq!(again["name"], "Ann B.");
    // The burst is spent: the next one from this address is refused, and counted.
    let (status, body) = post_guest(&origin, "127.0.0.1", serde_json::json!({"name": "Eve"}));
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too many guest sign-ins"), "{body}");
    assert!(origin.metric("stagecast_limit_refused_total{limit=\"guest_rate\"}") >= Some(1.0));
    // Another address has its own bucket.
    guest(&origin, "[::1]", "Zoe", None);
    // Malformed and oversized requests get a clear 4xx, and a forged previous token
    // yields a new identity, never someone else's.
    let (status, _) = post_guest(&origin, "[::1]", serde_json::json!("not an object"));
    assert!((400..500).contains(&status), "{status}");
    let (status, body) = post_guest(
        &origin,
        "[::1]",
        serde_json::json!({"name": "x".repeat(100)}),
    );
    assert_eq!(status, 400, "{body}");
    let forged = format!("{}x", token_a);
    let other = guest(&origin, "[::1]", "Ann", Some(&forged));
    assert_ne!(other["user"], first["user"]);

    // The guest token cannot watch a private channel, nor take part in it.
    let clip = make_clip(&dir, "clip", 4, Layout::FragKeyframe, false);
    let alice = token(
        &origin.key_file,
        &["--sub", "alice", "--publish", "live/alice"],
    );
    let mut publisher = publish_file(&dir, &origin, "live/alice", &clip, &alice, "publish-alice");
    wait_until("live/alice to be listed", Duration::from_secs(20), || {
        origin_lists(&origin, "live/alice")
    });
    let refused = Command::new(bin("stagecast"))
        .args([
            "subscribe",
            &origin.moqt_url(),
            "live/alice",
            "--fingerprint",
            &origin.fingerprint,
        ])
        .args(["--token", &token_a, "--duration", "3", "--output"])
        .arg(dir.join("guest-alice.mp4"))
        .output()
        .expect("run stagecast subscribe");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a guest watched live/alice: {stderr}"
    );
    assert!(stderr.to_lowercase().contains("not authorized"), "{stderr}");
    runtime().block_on(async {
        let (_c, _s, answer) = hello(&origin, "live/alice", Some(&token_a)).await;
        assert_eq!(reason(&answer), Some(Reason::NotAuthorized), "{answer:?}");
        let (_c, _s, answer) = hello(&origin, "live/alice", None).await;
        assert_eq!(reason(&answer), Some(Reason::NotAuthorized), "{answer:?}");
        let (_c, _s, answer) = hello(&origin, "demo/live", Some(&token_a)).await;
        assert!(matches!(answer, Answer::Welcome { .. }), "{answer:?}");
    });
    let _ = publisher.kill();
    let _ = publisher.wait();

    let closed = Node::origin(&dir, "closed", &["--no-guests", "--no-demo"]);
    let (status, body) = post_guest(&closed, "127.0.0.1", serde_json::json!({"name": "Ann"}));
    assert_eq!(status, 403, "{body}");
}

#[test]
fn moderators_credits_reactions_and_names_follow_the_rules() {
    let dir = output_dir("public_rules");
    let origin = Node::origin(&dir, "origin", &[]);
    let clip = make_clip(&dir, "clip", 4, Layout::FragKeyframe, false);
    let alice = token(
        &origin.key_file,
        &[
            "--sub",
            "alice",
            "--name",
            "Alice Star",
            "--role",
            "creator",
            "--publish",
            "live/alice",
            "--subscribe",
            "",
        ],
    );
    let mut publisher = publish_file(&dir, &origin, "live/alice", &clip, &alice, "publish-alice");
    wait_until("live/alice to be listed", Duration::from_secs(20), || {
        origin_lists(&origin, "live/alice")
    });
    let moderator = token(
        &origin.key_file,
        &[
            "--sub",
            "mo",
            "--role",
            "moderator",
            "--moderate",
            "live/alice",
            "--subscribe",
            "",
        ],
    );
    let viewer = token(
        &origin.key_file,
        &["--sub", "vic", "--name", "Vic", "--subscribe", ""],
    );
    runtime().block_on(async {
        // The creator's name is theirs once they have been seen.
        let (_c, _s, welcome) = hello(&origin, "live/alice", Some(&alice)).await;
        assert!(matches!(welcome, Answer::Welcome { ref role, .. } if role.as_deref() == Some("creator")), "{welcome:?}");

        let (_c1, s1, _) = hello(&origin, "demo/live", Some(&moderator)).await;
        let mut in_demo = s1.unwrap();
        let ban = Action::Ban { user: "vic".into() };
        assert_eq!(reason(&send(&mut in_demo, ban.clone()).await), Some(Reason::NotAuthorized));
        let (_c2, s2, _) = hello(&origin, "live/alice", Some(&moderator)).await;
        let mut in_alice = s2.unwrap();
        assert!(matches!(send(&mut in_alice, ban).await, Answer::Accepted { .. }));

        // Development credits: the demo channel has them, live/alice does not, and the
        // demo's credits are not spendable there.
        let (_c3, s3, _) = hello(&origin, "demo/live", Some(&viewer)).await;
        let mut vic_demo = s3.unwrap();
        assert!(matches!(send(&mut vic_demo, Action::Credit { amount: 100 }).await, Answer::Accepted { .. }));
        assert!(matches!(
            send(&mut vic_demo, Action::Tip { amount: 10, message: None }).await,
            Answer::Accepted { .. }
        ));
        let viewer2 = token(&origin.key_file, &["--sub", "val", "--name", "Val", "--subscribe", ""]);
        let (_c4, s4, welcome) = hello(&origin, "live/alice", Some(&viewer2)).await;
        let mut val_alice = s4.unwrap();
        assert_eq!(reason(&send(&mut val_alice, Action::Credit { amount: 100 }).await), Some(Reason::NotAuthorized));
        let (_c5, s5, _) = hello(&origin, "demo/live", Some(&viewer2)).await;
        let mut val_demo = s5.unwrap();
        assert!(matches!(send(&mut val_demo, Action::Credit { amount: 50 }).await, Answer::Accepted { .. }));
        assert_eq!(
            reason(&send(&mut val_alice, Action::Tip { amount: 1, message: None }).await),
            Some(Reason::InsufficientBalance)
        );
        assert!(matches!(welcome, Answer::Welcome { balance: Some(0), .. }), "{welcome:?}");

        // Only the configured reactions.
        assert!(matches!(send(&mut val_demo, Action::React { emoji: "🔥".into() }).await, Answer::Accepted { .. }));
        assert_eq!(
            reason(&send(&mut val_demo, Action::React { emoji: "💩x".into() }).await),
            Some(Reason::Invalid)
        );
    });
    // Guests cannot pass for the creator or the site, and their names are normalized.
    for lookalike in ["alice star", "ALICE ★ STAR", "Ａｌｉｃｅ Star", "Admin"] {
        let (status, body) =
            post_guest(&origin, "127.0.0.1", serde_json::json!({"name": lookalike}));
        assert_eq!(status, 400, "{lookalike}: {body}");
    }
    let fine = guest(&origin, "[::1]", "Zo\u{200B}e\u{202E}", None);
    assert_eq!(fine["name"], "Zoe");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn a_second_publisher_cannot_take_over_a_live_path() {
    let dir = output_dir("public_takeover");
    let origin = Node::bare_origin(&dir, "origin");
    let clip = make_clip(&dir, "clip", 4, Layout::FragKeyframe, false);
    let alice = token(
        &origin.key_file,
        &["--sub", "alice", "--publish", "live/alice"],
    );
    let mut first = publish_file(&dir, &origin, "live/alice", &clip, &alice, "publish-alice");
    wait_until("live/alice to be listed", Duration::from_secs(20), || {
        origin_lists(&origin, "live/alice")
    });
    // Mallory may publish under live/, but live/alice is Alice's while she is live.
    let mallory = token(
        &origin.key_file,
        &["--sub", "mallory", "--publish", "live/"],
    );
    let mut takeover = publish_file(
        &dir,
        &origin,
        "live/alice",
        &clip,
        &mallory,
        "publish-mallory",
    );
    let status = wait_exit(
        &mut takeover,
        "the second publisher",
        Duration::from_secs(20),
    );
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.join("publish-mallory.log")).unwrap();
    assert!(log.contains("another publisher is live there"), "{log}");
    let origin_log = std::fs::read_to_string(&origin.log).unwrap();
    assert!(
        origin_log.contains("live/alice is already being published by someone else"),
        "{origin_log}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first publisher stopped"
    );
    assert_eq!(
        origin.metric("stagecast_namespaces_published_total"),
        Some(1.0)
    );
    // Nor through an edge: the edge answers Mallory only once the origin has, so its
    // viewers never get her stream under Alice's path.
    let edge = Node::relay(&dir, "edge", &origin);
    edge.wait_metric("stagecast_upstream_connected", 1.0);
    let mut via_edge = publish_file(
        &dir,
        &edge,
        "live/alice",
        &clip,
        &mallory,
        "publish-mallory-edge",
    );
    let status = wait_exit(
        &mut via_edge,
        "the publisher at the edge",
        Duration::from_secs(20),
    );
    assert!(!status.success());
    let edge_log = std::fs::read_to_string(&edge.log).unwrap();
    assert!(
        edge_log.contains("namespace refused: refused upstream"),
        "{edge_log}"
    );
    assert_eq!(
        edge.metric("stagecast_namespaces_published_total"),
        Some(0.0)
    );
    // Alice reconnecting (a new session, the old one not yet gone) is not a takeover.
    let mut second = publish_file(
        &dir,
        &origin,
        "live/alice",
        &clip,
        &alice,
        "publish-alice-again",
    );
    origin.wait_metric("stagecast_namespaces_published_total", 2.0);
    assert!(
        second.try_wait().unwrap().is_none(),
        "alice's reconnect was refused"
    );
    let _ = first.kill();
    let _ = first.wait();
    let _ = second.kill();
    let _ = second.wait();
}

#[test]
fn hellos_to_made_up_sub_paths_leave_the_channel_count_and_memory_bounded() {
    const HELLOS: usize = 10_000;
    const AT_ONCE: usize = 32;
    let dir = output_dir("public_made_up_paths");
    let origin = Node::origin(&dir, "origin", &[]);
    runtime().block_on(async {
        let (connection, _s, welcome) = hello(&origin, "demo/live", None).await;
        assert!(matches!(welcome, Answer::Welcome { .. }), "{welcome:?}");
        let rss_before = origin.rss_bytes();
        let mut sent = 0;
        while sent < HELLOS {
            let batch: Vec<_> = (sent..(sent + AT_ONCE).min(HELLOS))
                .map(|i| {
                    let transport = connection.transport.clone();
                    tokio::spawn(async move {
                        let path = format!("demo/live/{i:x}{}", new_key());
                        match RequestStream::open(&transport, &path, None).await {
                            Ok((_, answer)) => answer,
                            Err(err) => refusal(err),
                        }
                    })
                })
                .collect();
            for task in batch {
                let answer = task.await.unwrap();
                assert_eq!(reason(&answer), Some(Reason::Unavailable), "{answer:?}");
                sent += 1;
            }
        }
        // Past the per-connection cap, more streams are refused with an answer.
        let mut held = Vec::new();
        for _ in 0..64 {
            if let Ok((stream, _)) =
                RequestStream::open(&connection.transport, "demo/live", None).await
            {
                held.push(stream);
            }
        }
        assert_eq!(held.len(), 63, "one stream was already open");
        assert!(
            origin
                .metric("stagecast_limit_refused_total{limit=\"interaction_streams_per_session\"}")
                >= Some(1.0)
        );
        drop(held);
        let channels = origin.metric("stagecast_interaction_channels");
        assert_eq!(channels, Some(1.0), "only demo/live has a channel");
        let grown = origin.rss_bytes().saturating_sub(rss_before);
        assert!(
            grown < 64 << 20,
            "the origin grew by {grown} bytes over {HELLOS} hellos"
        );
    });
}

#[test]
fn idle_connections_past_the_per_address_cap_are_refused_while_a_viewer_plays() {
    const IDLE: usize = 2_000;
    let dir = output_dir("public_idle_connections");
    // A long SETUP deadline, so the idle connections stay for the whole test.
    let origin = Node::origin(&dir, "origin", &["--setup-timeout", "120s"]);
    let url = url::Url::parse(&format!("moqt://127.0.0.1:{}", origin.quic_port)).unwrap();
    let trust = ClientTrust::pinned_hex(&origin.fingerprint).unwrap();
    runtime().block_on(async {
        let client = stagecast_proto::endpoint::ClientEndpoint::new().unwrap();
        let mut held = Vec::new();
        let mut refused = 0;
        let started = Instant::now();
        for chunk in (0..IDLE).collect::<Vec<_>>().chunks(8) {
            let attempts: Vec<_> = chunk.iter().map(|_| client.connect(&url, &trust)).collect();
            for result in futures_util::future::join_all(attempts).await {
                match result {
                    Ok(session) => held.push(session),
                    Err(_) => refused += 1,
                }
            }
        }
        eprintln!(
            "{} held, {refused} refused in {:?}",
            held.len(),
            started.elapsed()
        );
        assert_eq!(
            held.len(),
            100,
            "the default cap is 100 connections per address"
        );
        assert_eq!(refused, IDLE - 100);
        let counted = origin
            .metric("stagecast_limit_refused_total{limit=\"quic_connections_per_address\"}")
            .unwrap_or(0.0);
        assert!(counted >= (IDLE - 100) as f64, "{counted}");
        // A viewer from another address still connects and gets media.
        let output = dir.join("viewer.mp4");
        let viewer = Command::new(bin("stagecast"))
            .args([
                "subscribe",
                &format!("moqt://[::1]:{}", origin.quic_port),
                "demo/live",
            ])
            .args([
                "--fingerprint",
                &origin.fingerprint,
                "--duration",
                "3",
                "--output",
            ])
            .arg(&output)
            .output()
            .expect("run stagecast subscribe");
        assert!(
            viewer.status.success(),
            "{}",
            String::from_utf8_lossy(&viewer.stderr)
        );
        assert!(stagecast_tests::media::video_frame_count(&output) > 0);
        drop(held);
    });
}

#[test]
fn a_connection_that_never_sends_setup_is_closed() {
    let dir = output_dir("public_setup_deadline");
    let origin = Node::origin(&dir, "origin", &["--setup-timeout", "1s", "--no-demo"]);
    let url = url::Url::parse(&origin.moqt_url()).unwrap();
    let trust = ClientTrust::pinned_hex(&origin.fingerprint).unwrap();
    runtime().block_on(async {
        let client = stagecast_proto::endpoint::ClientEndpoint::new().unwrap();
        let (session, _) = client.connect(&url, &trust).await.expect("connect");
        // The node's keep-alives would hold it forever; the deadline closes it.
        let closed = tokio::time::timeout(Duration::from_secs(10), session.closed()).await;
        let err = closed.expect("the connection was not closed within 10 s");
        eprintln!("closed: {err}");
    });
    assert_eq!(
        origin.metric("stagecast_limit_refused_total{limit=\"setup_timeout\"}"),
        Some(1.0)
    );
}

/// Issuing a moderator token without `--moderate` is refused, so no token moderates
/// everything by accident.
#[test]
fn a_moderator_token_must_name_what_it_moderates() {
    let dir = output_dir("public_moderator_token");
    let key = dir.join("key");
    std::fs::create_dir_all(&dir).unwrap();
    let made = Command::new(bin("stagecast"))
        .args(["token", "key"])
        .output()
        .unwrap();
    std::fs::write(&key, made.stdout).unwrap();
    std::fs::set_permissions(
        &key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let refused = Command::new(bin("stagecast"))
        .args(["token", "issue", "--key-file"])
        .arg(&key)
        .args(["--sub", "mo", "--role", "moderator", "--subscribe", ""])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--moderate"));
}

/// A relay shares its upstream link's interaction streams: idle connections holding all
/// they can take leave room for a new viewer's chat.
#[test]
fn idle_connections_at_an_edge_cannot_take_every_chat_stream() {
    const IDLE: usize = 20;
    let dir = output_dir("public_forward_shares");
    let origin = Node::origin(&dir, "origin", &[]);
    let edge = Node::relay_under(
        &dir,
        "edge",
        &[&origin],
        &[
            "--forward-streams-per-session",
            "4",
            "--forward-streams",
            "100",
        ],
    );
    edge.wait_metric("stagecast_upstream_connected", 1.0);
    let viewer = token(
        &origin.key_file,
        &["--sub", "vic", "--name", "Vic", "--subscribe", ""],
    );
    runtime().block_on(async {
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            let (connection, first, _) = hello(&edge, "demo/live", None).await;
            let mut streams: Vec<RequestStream> = first.into_iter().collect();
            // Each tries for 8; its share is 4.
            for _ in 1..8 {
                if let Ok((stream, _)) =
                    RequestStream::open(&connection.transport, "demo/live", None).await
                {
                    streams.push(stream);
                }
            }
            assert_eq!(
                streams.len(),
                4,
                "a connection's share of the edge's streams"
            );
            idle.push((connection, streams));
        }
        let refused = edge
            .metric("stagecast_limit_refused_total{limit=\"forward_streams_per_session\"}")
            .unwrap_or(0.0);
        assert_eq!(refused, (IDLE * 4) as f64);
        // A viewer arriving now still chats.
        let (_c, stream, welcome) = hello(&edge, "demo/live", Some(&viewer)).await;
        assert!(matches!(welcome, Answer::Welcome { .. }), "{welcome:?}");
        let mut stream = stream.unwrap();
        let answer = send(
            &mut stream,
            Action::Chat {
                text: "still heard".into(),
            },
        )
        .await;
        assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    });
}

/// A relay follows a GOAWAY only to the same host or an upstream its operator configured:
/// one naming another host would be handed the relay's token.
#[test]
fn a_relay_does_not_follow_goaway_to_a_host_it_was_not_given() {
    let dir = output_dir("public_goaway_elsewhere");
    // "Another host": the relay knows its upstream as localhost, this one as [::1].
    let elsewhere = Node::origin(&dir, "elsewhere", &["--no-demo"]);
    let goaway_to = format!("moqt://[::1]:{}", elsewhere.quic_port);
    let origin = Node::origin(
        &dir,
        "origin",
        &["--goaway-uri", &goaway_to, "--drain-timeout", "3s"],
    );
    let edge = Node::relay(&dir, "edge", &origin);
    edge.wait_metric("stagecast_upstream_connected", 1.0);
    origin.terminate();
    edge.wait_metric(
        "stagecast_limit_refused_total{limit=\"goaway_elsewhere\"}",
        1.0,
    );
    assert_eq!(elsewhere.metric("stagecast_sessions_total"), Some(0.0));
    let log = std::fs::read_to_string(&edge.log).unwrap();
    assert!(log.contains("not following GOAWAY"), "{log}");
}
