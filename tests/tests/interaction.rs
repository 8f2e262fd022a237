//! Interaction end to end (docs/interaction.md): real origins and relays on loopback, real
//! QUIC connections from clients in this process (the CLI's own client library), each
//! sending requests on its MoQ connection and following the broadcast's timeline.
//!
//! - convergence: 20 clients over an origin and two chained relays all end with the same
//!   events and the same state, and a late joiner's first snapshot equals that state;
//! - exactly once: a tip retried 5 times, and one sent while its relay restarts, apply
//!   once; after `kill -9` of the origin the ledger holds each accepted tip once;
//! - rejections: each documented reason, on the wire.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stagecast_cli::connect::{connect_session, Connection};
use stagecast_cli::interact::{follow_timeline, new_key, RequestStream};
use stagecast_proto::interaction::timeline::TimelineFollower;
use stagecast_proto::interaction::{Action, Answer, Event, Reason, Request, Snapshot};
use stagecast_proto::path::namespace_from_path;
use stagecast_proto::trust::ClientTrust;
use stagecast_tests::node::Node;
use stagecast_tests::{bin, output_dir, runtime};

const BROADCAST: &str = "demo/live";
const WAIT: Duration = Duration::from_secs(30);

/// A token with a display name and role, from the deployment's key.
fn token(key_file: &Path, user: &str, role: &str) -> String {
    let mut cmd = Command::new(bin("stagecast"));
    cmd.args(["token", "issue", "--key-file"]).arg(key_file);
    cmd.args([
        "--sub",
        user,
        "--name",
        &format!("Name {user}"),
        "--role",
        role,
    ]);
    cmd.args(["--subscribe", "", "--ttl", "1h"]);
    if role == "creator" {
        cmd.args(["--publish", "demo/"]);
    }
    let output = cmd.output().expect("run stagecast token issue");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// What a client saw on the timeline: its first snapshot's seq, every event applied after
/// it, and the state after each.
#[derive(Default)]
struct Seen {
    first_seq: Option<u64>,
    events: Vec<Event>,
    states: BTreeMap<u64, Snapshot>,
}

/// A viewer: one QUIC connection carrying its MoQ session, its timeline subscription and
/// its request stream.
struct Client {
    _endpoint: stagecast_proto::endpoint::ClientEndpoint,
    transport: stagecast_proto::web_transport_quinn::Session,
    requests: RequestStream,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Client {
    async fn join(node: &Node, token: Option<&str>) -> Client {
        let url = url::Url::parse(&node.moqt_url()).unwrap();
        let trust = ClientTrust::pinned_hex(&node.fingerprint).unwrap();
        let Connection {
            client,
            transport,
            session,
            subscriber,
            ..
        } = connect_session(&url, &trust, token).await.expect("connect");
        let mut tasks = vec![tokio::spawn(async move {
            let _ = session.run().await;
        })];
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let namespace = namespace_from_path(BROADCAST).unwrap();
        let follow_subscriber = subscriber.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(err) = follow_timeline(&follow_subscriber, &namespace, tx).await {
                eprintln!("timeline ended: {err:#}");
            }
        }));
        let record_into = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut follower = TimelineFollower::default();
            while let Some(record) = rx.recv().await {
                let applied = follower.push(record);
                let Some(state) = follower.state() else {
                    continue;
                };
                let mut seen = record_into.lock().unwrap();
                if seen.first_seq.is_none() {
                    seen.first_seq = Some(state.seq);
                    seen.states.insert(state.seq, state.clone());
                }
                // Rebuild the state after each applied event, so any seq can be compared.
                for (event, media_ms) in applied {
                    let Some(mut next) = seen.states.values().next_back().cloned() else {
                        continue;
                    };
                    if next.apply(&event, media_ms).is_ok() {
                        seen.states.insert(event.seq(), next);
                    }
                    seen.events.push(event);
                }
            }
        }));
        let (requests, welcome) = RequestStream::open(&transport, BROADCAST, token)
            .await
            .expect("open a request stream");
        assert!(matches!(welcome, Answer::Welcome { .. }), "{welcome:?}");
        let client = Client {
            _endpoint: client,
            transport,
            requests,
            seen,
            tasks,
        };
        client
            .wait_for("a first snapshot", |seen| seen.first_seq.is_some())
            .await;
        client
    }

    async fn send(&mut self, action: Action) -> Answer {
        self.send_keyed(&new_key(), action).await
    }

    async fn send_keyed(&mut self, key: &str, action: Action) -> Answer {
        let request = Request {
            key: key.to_string(),
            action,
        };
        self.requests.request(&request).await.expect("an answer")
    }

    async fn accepted(&mut self, action: Action) -> Option<u64> {
        match self.send(action.clone()).await {
            Answer::Accepted { seq, .. } => seq,
            other => panic!("{action:?} was not accepted: {other:?}"),
        }
    }

    async fn rejected(&mut self, action: Action) -> (Reason, Option<u64>) {
        match self.send(action.clone()).await {
            Answer::Rejected {
                reason,
                retry_after_ms,
                ..
            } => (reason, retry_after_ms),
            other => panic!("{action:?} was not rejected: {other:?}"),
        }
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.seen.lock().unwrap()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn state_at(&self, seq: u64) -> Snapshot {
        self.wait_for(&format!("state {seq}"), |seen| {
            seen.states.contains_key(&seq)
        })
        .await;
        self.seen.lock().unwrap().states[&seq].clone()
    }

    fn close(self) {
        self.transport.close(0, b"done");
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Waits until a relay's upstream link is up, so its clients reach the origin.
fn linked(relay: &Node) {
    relay.wait_metric("stagecast_upstream_connected", 1.0);
}

#[test]
fn twenty_clients_over_a_relay_chain_converge_and_a_late_joiner_agrees() {
    let dir = output_dir("interaction_convergence");
    let origin = Node::origin(&dir, "origin", &[]);
    let near = Node::relay(&dir, "near", &origin);
    let far = Node::relay(&dir, "far", &near);
    linked(&near);
    linked(&far);
    let nodes = [&origin, &near, &far];
    runtime().block_on(async {
        let creator_token = token(&origin.key_file, "creator", "creator");
        let mut creator = Client::join(&origin, Some(&creator_token)).await;
        let poll_opened = creator
            .accepted(Action::PollOpen {
                question: "Which song?".into(),
                options: vec!["one".into(), "two".into()],
                duration_secs: 600,
            })
            .await
            .unwrap();
        creator
            .accepted(Action::Goal {
                title: "New mic".into(),
                target: 1000,
            })
            .await;

        let mut clients = Vec::new();
        for i in 0..20 {
            let node = nodes[i % 3];
            let token = token(&origin.key_file, &format!("viewer{i:02}"), "viewer");
            clients.push(Client::join(node, Some(&token)).await);
        }
        // Everyone at once: chat, a vote, credits and a tip each.
        let mut sends = tokio::task::JoinSet::new();
        for (i, mut client) in clients.into_iter().enumerate() {
            sends.spawn(async move {
                client.accepted(Action::Credit { amount: 50 }).await;
                for n in 0..3 {
                    client
                        .accepted(Action::Chat {
                            text: format!("hello {n} from {i}"),
                        })
                        .await;
                }
                client
                    .accepted(Action::Vote {
                        poll: 1,
                        option: i % 2,
                    })
                    .await;
                client
                    .accepted(Action::Tip {
                        amount: 5 + i as u64,
                        message: Some(format!("tip {i}")),
                    })
                    .await;
                client
            });
        }
        let mut clients = Vec::new();
        while let Some(client) = sends.join_next().await {
            clients.push(client.unwrap());
        }
        let last = creator
            .accepted(Action::Chat {
                text: "that's all".into(),
            })
            .await
            .unwrap();

        // Every client reaches `last` and holds the same events and the same state there.
        let reference = creator.state_at(last).await;
        let start = {
            let mut start = poll_opened;
            for client in &clients {
                start = start.max(client.seen.lock().unwrap().first_seq.unwrap());
            }
            start
        };
        let events_between = |client: &Client| -> Vec<Event> {
            let seen = client.seen.lock().unwrap();
            seen.events
                .iter()
                .filter(|e| e.seq() > start && e.seq() <= last)
                .cloned()
                .collect()
        };
        let reference_events = events_between(&creator);
        assert_eq!(
            reference_events.first().map(Event::seq),
            Some(start + 1),
            "the creator saw every event from {start}"
        );
        assert_eq!(reference_events.len() as u64, last - start, "no gaps");
        for (i, client) in clients.iter().enumerate() {
            assert_eq!(
                client.state_at(last).await,
                reference,
                "client {i}'s state at {last}"
            );
            assert_eq!(
                events_between(client),
                reference_events,
                "client {i}'s events"
            );
        }
        let poll = reference.poll.clone().unwrap();
        assert_eq!(
            poll.tallies,
            vec![10, 10],
            "one vote per viewer, all counted"
        );
        let tipped: u64 = (0..20).map(|i| 5 + i as u64).sum();
        assert_eq!(reference.goal.as_ref().unwrap().progress, tipped);
        assert_eq!(reference.top_tippers[0].user, "viewer19");
        let chats = reference_events
            .iter()
            .filter(|e| matches!(e, Event::Chat { .. }))
            .count();
        assert_eq!(chats, 61);
        assert!(
            reference.chat.iter().all(|line| line.media_ms.is_some()),
            "chat lines carry the media time of the demo channel"
        );

        // A late joiner at the far edge starts from a snapshot equal to everyone's state.
        let late_token = token(&origin.key_file, "late", "viewer");
        let late = Client::join(&far, Some(&late_token)).await;
        // Its first group opens with a snapshot equal to the state everyone had at that
        // point, and the group's cached events bring it to the same state at `last`.
        let first = late.seen.lock().unwrap().first_seq.unwrap();
        assert!(
            first > start,
            "the late joiner's snapshot ({first}) is recent"
        );
        assert_eq!(late.state_at(first).await, creator.state_at(first).await);
        assert_eq!(late.state_at(last).await, reference);
        for client in clients {
            client.close();
        }
        late.close();
        creator.close();
    });
}

/// Runs `stagecast tip` against `node` with a fixed idempotency key; the answer's JSON.
fn cli_tip(node: &Node, token: &str, key: &str, amount: u64) -> std::process::Child {
    Command::new(bin("stagecast"))
        .args(["tip", &node.moqt_url(), BROADCAST, "--json", "--key", key])
        .args(["--amount", &amount.to_string(), "--token", token])
        .args(["--fingerprint", &node.fingerprint])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("run stagecast tip")
}

fn answer_of(child: std::process::Child) -> Answer {
    let output = child.wait_with_output().expect("stagecast tip");
    assert!(output.status.success(), "stagecast tip failed: {output:?}");
    serde_json::from_slice(&output.stdout).expect("an answer on stdout")
}

/// Tips and balances as the origin's database holds them.
struct Ledger {
    tips: Vec<(u64, String, u64)>,
    balances: BTreeMap<String, i64>,
}

fn ledger(data_dir: &Path) -> Ledger {
    let db = rusqlite::Connection::open(data_dir.join("interaction.db")).unwrap();
    let mut tips = Vec::new();
    let mut rows = db
        .prepare("SELECT seq, data FROM events WHERE channel = 'demo/live'")
        .unwrap();
    let mut query = rows.query([]).unwrap();
    while let Some(row) = query.next().unwrap() {
        let data: String = row.get(1).unwrap();
        if let Ok(Event::Tip {
            seq, user, amount, ..
        }) = serde_json::from_str(&data)
        {
            tips.push((seq, user, amount));
        }
    }
    let mut balances = BTreeMap::new();
    let mut rows = db.prepare("SELECT account, credits FROM balances").unwrap();
    let mut query = rows.query([]).unwrap();
    while let Some(row) = query.next().unwrap() {
        balances.insert(
            row.get::<_, String>(0).unwrap(),
            row.get::<_, i64>(1).unwrap(),
        );
    }
    Ledger { tips, balances }
}

#[test]
fn a_tip_is_applied_once_through_retries_a_relay_restart_and_an_origin_crash() {
    let dir = output_dir("interaction_exactly_once");
    let mut origin = Node::origin(&dir, "origin", &[]);
    let mut edge = Node::relay(&dir, "edge", &origin);
    linked(&edge);
    let tipper = token(&origin.key_file, "tipper", "viewer");
    let rt = runtime();
    rt.block_on(async {
        let mut client = Client::join(&origin, Some(&tipper)).await;
        client.accepted(Action::Credit { amount: 100 }).await;
        client.close();
    });

    // The same tip five times through the edge: one event, the same answer each time.
    let answers: Vec<Answer> = (0..5)
        .map(|_| answer_of(cli_tip(&edge, &tipper, "tip-one", 10)))
        .collect();
    assert!(
        matches!(
            answers[0],
            Answer::Accepted {
                seq: Some(_),
                balance: Some(90),
                ..
            }
        ),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "retries get the first answer: {answers:?}"
    );

    // A tip sent while its edge is down and coming back: the CLI retries with its key.
    edge.kill();
    let during_restart = cli_tip(&edge, &tipper, "tip-two", 7);
    // Whichever way the CLI finds the edge (handshake packets retransmitted into the new
    // process, a refused stream while its upstream link comes up, or a new connection),
    // the tip must land once.
    std::thread::sleep(Duration::from_millis(1500));
    edge.restart();
    let answer = answer_of(during_restart);
    assert!(
        matches!(
            answer,
            Answer::Accepted {
                balance: Some(83),
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(answer_of(cli_tip(&edge, &tipper, "tip-two", 7)), answer);

    // kill -9 of the origin, and back: every accepted tip once, credits conserved.
    let data_dir = dir.join("origin");
    let before = ledger(&data_dir);
    origin.restart();
    let after = ledger(&data_dir);
    assert_eq!(after.tips.len(), 2, "two tips, once each: {:?}", after.tips);
    assert_eq!(after.tips, before.tips);
    // Development credits (the demo channel's) are booked in the user's dev: account.
    assert_eq!(after.balances.get("dev:tipper"), Some(&83));
    assert_eq!(after.balances.get("channel:demo/live"), Some(&17));
    assert_eq!(
        after.balances.values().sum::<i64>(),
        100,
        "only the grant adds credits"
    );
    // The restarted origin still knows the first answer, and its state kept the tips.
    linked(&edge);
    assert_eq!(
        answer_of(cli_tip(&origin, &tipper, "tip-one", 10)),
        answers[0]
    );
    rt.block_on(async {
        let client = Client::join(&origin, Some(&tipper)).await;
        let first = client.seen.lock().unwrap().first_seq.unwrap();
        let state = client.state_at(first).await;
        assert_eq!(state.top_tippers.first().map(|t| t.total), Some(17));
        client.close();
    });
}

#[test]
fn every_rejection_has_its_typed_reason() {
    let dir = output_dir("interaction_rejections");
    let origin = Node::origin(&dir, "origin", &[]);
    runtime().block_on(async {
        let creator_token = token(&origin.key_file, "boss", "creator");
        let mut creator = Client::join(&origin, Some(&creator_token)).await;
        let ann_token = token(&origin.key_file, "ann", "viewer");
        let mut ann = Client::join(&origin, Some(&ann_token)).await;
        let bob_token = token(&origin.key_file, "bob", "viewer");
        let mut bob = Client::join(&origin, Some(&bob_token)).await;

        let chat = |text: &str| Action::Chat {
            text: text.to_string(),
        };
        assert_eq!(
            bob.rejected(chat(&"x".repeat(501))).await.0,
            Reason::TooLong
        );
        for n in 0..5 {
            ann.accepted(chat(&format!("message {n}"))).await;
        }
        let (reason, retry) = ann.rejected(chat("one too many")).await;
        assert_eq!(reason, Reason::RateLimited);
        assert!(retry.is_some_and(|ms| ms > 0 && ms <= 10_000), "{retry:?}");

        assert_eq!(
            ann.rejected(Action::PollOpen {
                question: "q".into(),
                options: vec!["a".into(), "b".into()],
                duration_secs: 60
            })
            .await
            .0,
            Reason::NotAuthorized,
            "viewers cannot open polls"
        );
        let open = Action::PollOpen {
            question: "q".into(),
            options: vec!["a".into(), "b".into()],
            duration_secs: 60,
        };
        creator.accepted(open).await;
        ann.accepted(Action::Vote { poll: 1, option: 0 }).await;
        assert_eq!(
            ann.rejected(Action::Vote { poll: 1, option: 1 }).await.0,
            Reason::AlreadyVoted
        );
        creator.accepted(Action::PollClose { poll: 1 }).await;
        assert_eq!(
            bob.rejected(Action::Vote { poll: 1, option: 1 }).await.0,
            Reason::PollClosed
        );

        bob.accepted(Action::Credit { amount: 20 }).await;
        assert_eq!(
            bob.rejected(Action::Tip {
                amount: 21,
                message: None
            })
            .await
            .0,
            Reason::InsufficientBalance
        );
        bob.accepted(Action::Tip {
            amount: 20,
            message: None,
        })
        .await;
        assert_eq!(
            bob.rejected(Action::Tip {
                amount: 1,
                message: None
            })
            .await
            .0,
            Reason::InsufficientBalance
        );

        creator.accepted(Action::Ban { user: "bob".into() }).await;
        assert_eq!(bob.rejected(chat("let me in")).await.0, Reason::Banned);
        creator
            .accepted(Action::Timeout {
                user: "ann".into(),
                secs: 60,
            })
            .await;
        let (reason, retry) = ann
            .rejected(Action::React {
                emoji: "🔥".into()
            })
            .await;
        assert_eq!(reason, Reason::TimedOut);
        assert!(retry.is_some_and(|ms| ms > 50_000), "{retry:?}");

        // No token: watching is fine, taking part is not.
        let mut anonymous = Client::join(&origin, None).await;
        assert_eq!(
            anonymous.rejected(chat("hi")).await.0,
            Reason::NotAuthorized
        );
        // Reusing a key returns the first answer, whatever the request says now.
        let first = creator.send_keyed("same-key", chat("first")).await;
        assert_eq!(creator.send_keyed("same-key", chat("second")).await, first);
        for client in [creator, ann, bob, anonymous] {
            client.close();
        }
    });
}

#[test]
fn malformed_streams_get_a_clear_error_and_the_session_lives_on() {
    use stagecast_proto::interaction::frame::encode_frame;
    use stagecast_proto::interaction::{FrameReader, Hello, MAX_FRAME_BYTES, STREAM_HEADER};
    use stagecast_proto::varint::put_varint;
    use tokio::io::AsyncWriteExt;

    let dir = output_dir("interaction_malformed");
    let origin = Node::origin(&dir, "origin", &[]);
    runtime().block_on(async {
        let viewer = token(&origin.key_file, "ann", "viewer");
        let client = Client::join(&origin, Some(&viewer)).await;
        let first_error = |bytes: Vec<u8>| {
            let transport = client.transport.clone();
            async move {
                let (mut send, recv) = transport.open_bi().await.unwrap();
                AsyncWriteExt::write_all(&mut send, &bytes).await.unwrap();
                let mut frames = FrameReader::new(recv, bytes::Bytes::new());
                loop {
                    match frames.next_message::<Answer>().await.unwrap() {
                        Some(Answer::Error { reason, .. }) => return reason,
                        Some(Answer::Welcome { .. }) => continue,
                        other => panic!("expected an error, got {other:?}"),
                    }
                }
            }
        };
        let with_header = |rest: &[u8]| [&STREAM_HEADER[..], rest].concat();
        let forged = format!("{}x", viewer);
        let hello = |token: &str| {
            encode_frame(&Hello {
                broadcast: BROADCAST.into(),
                token: Some(token.into()),
            })
            .unwrap()
            .to_vec()
        };
        assert_eq!(
            first_error(with_header(&hello(&forged))).await,
            Reason::NotAuthorized
        );
        let mut oversized = Vec::new();
        put_varint(&mut oversized, MAX_FRAME_BYTES as u64 + 1);
        assert_eq!(first_error(with_header(&oversized)).await, Reason::TooLarge);
        assert_eq!(
            first_error(with_header(&[3, b'{', b'}', b'x'])).await,
            Reason::Invalid
        );
        let offline = encode_frame(&Hello {
            broadcast: "nobody/here".into(),
            token: None,
        })
        .unwrap();
        assert_eq!(
            first_error(with_header(&offline)).await,
            Reason::Unavailable
        );
        let mut oversized_after_hello = hello(&viewer);
        oversized_after_hello.extend_from_slice(&oversized);
        assert_eq!(
            first_error(with_header(&oversized_after_hello)).await,
            Reason::TooLarge
        );
        // The connection, its MoQ session and its first request stream are unharmed.
        let mut client = client;
        client
            .accepted(Action::Chat {
                text: "still here".into(),
            })
            .await;
        let seq = client
            .accepted(Action::Chat {
                text: "and here".into(),
            })
            .await
            .unwrap();
        client.state_at(seq).await;
        client.close();
    });
}

/// A relay carries each of its viewers' request streams on its one upstream connection, so
/// the origin lets a relay link (token role `relay`) hold far more streams than the 128 one
/// viewer connection may, and more than the 1,024 it starts with: 1,080 viewers' streams
/// held open at one relay are all welcomed, and the last one's chat is accepted.
#[test]
fn a_relay_link_carries_more_request_streams_than_one_connection_may_hold() {
    const CONNECTIONS: usize = 18;
    const STREAMS_PER_CONNECTION: usize = 60;
    let dir = output_dir("interaction_many_streams");
    let origin = Node::origin(&dir, "origin", &[]);
    // Each test connection holds 60 streams, past a viewer's default share of 8.
    let relay = Node::relay_under(
        &dir,
        "relay",
        &[&origin],
        &["--forward-streams-per-session", "64"],
    );
    linked(&relay);
    runtime().block_on(async {
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for c in 0..CONNECTIONS {
            let token = token(&origin.key_file, &format!("viewer{c}"), "viewer");
            let client = Client::join(&relay, Some(&token)).await;
            for s in 1..STREAMS_PER_CONNECTION {
                let (stream, welcome) =
                    RequestStream::open(&client.transport, BROADCAST, Some(&token))
                        .await
                        .unwrap_or_else(|err| {
                            panic!("stream {} of connection {c}: {err:#}", s + 1)
                        });
                assert!(matches!(welcome, Answer::Welcome { .. }), "{welcome:?}");
                held.push(stream);
            }
            clients.push(client);
        }
        assert_eq!(
            held.len() + clients.len(),
            CONNECTIONS * STREAMS_PER_CONNECTION
        );
        let last = held.last_mut().expect("a held stream");
        let request = Request {
            key: new_key(),
            action: Action::Chat {
                text: "one of many".into(),
            },
        };
        let answer = last.request(&request).await.expect("an answer");
        assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
        for client in clients {
            client.close();
        }
    });
}
