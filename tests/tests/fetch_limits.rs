//! FETCH bounds against a real relay on loopback: one session cannot hold more FETCHes at
//! once than `--max-fetches-per-session` (the next is refused with EXCESSIVE_LOAD at once,
//! and counted), while another session keeps its own share.
//!
//! The relay's upstream here is a MoQ server of this test that accepts every FETCH and
//! never answers it, so FETCHes stay in flight for as long as the test needs: no timing.

use std::sync::Arc;
use std::time::Duration;

use moq_transport::coding::{KeyValuePairs, Location, TrackNamespace};
use moq_transport::message::{RequestErrorCode, StandaloneFetch};
use moq_transport::session::{FetchRequested, Session};
use stagecast_proto::certificate::ServerIdentity;
use stagecast_proto::endpoint::ServerEndpoint;
use stagecast_tests::node::{moq_session, Node};
use stagecast_tests::{output_dir, wait_until};
use tokio::sync::watch;

/// A MoQ server that takes FETCHes and never answers them; `held` counts them.
async fn silent_upstream(
    dir: &std::path::Path,
) -> (
    u16,
    String,
    watch::Receiver<usize>,
    tokio::task::JoinHandle<()>,
) {
    let identity = ServerIdentity::load_or_create_dev(&dir.join("silent"), &[]).unwrap();
    let mut endpoint = ServerEndpoint::bind("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let port = endpoint.local_addr().unwrap().port();
    let (count, held) = watch::channel(0usize);
    let task = tokio::spawn(async move {
        let count = Arc::new(count);
        while let Some(accepted) = endpoint.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok((session, publisher, _subscriber)) =
                    Session::accept(accepted.session.into(), None, accepted.transport).await
                else {
                    return;
                };
                let _permit = accepted.permit;
                tokio::spawn(session.run());
                let Some(mut publisher) = publisher else {
                    return;
                };
                let mut requests: Vec<FetchRequested> = Vec::new();
                while let Some(request) = publisher.fetch_requested().await {
                    requests.push(request);
                    count.send_modify(|c| *c += 1);
                }
            });
        }
    });
    (port, identity.fingerprint.clone(), held, task)
}

fn range(group: u64) -> StandaloneFetch {
    StandaloneFetch {
        track_namespace: TrackNamespace::from_utf8_path("held/live"),
        track_name: "video".to_string().into(),
        start_location: Location::new(group, 0),
        end_location: Location::new(group, 0),
    }
}

async fn wait_held(held: &mut watch::Receiver<usize>, n: usize) {
    tokio::time::timeout(Duration::from_secs(20), held.wait_for(|c| *c >= n))
        .await
        .unwrap_or_else(|_| panic!("{n} FETCHes did not reach the upstream"))
        .expect("upstream running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_past_its_fetch_cap_is_refused_at_once_and_others_keep_theirs() {
    let dir = output_dir("fetch_limits");
    let (port, fingerprint, mut held, _upstream) = silent_upstream(&dir).await;
    let edge = Node::relay_with_args(
        &dir,
        "edge",
        &[
            "--upstream",
            &format!("moqt://127.0.0.1:{port}"),
            "--upstream-fingerprint",
            &fingerprint,
            "--no-auth",
            "--max-fetches-per-session",
            "2",
        ],
    );
    wait_until("the edge's upstream link", Duration::from_secs(20), || {
        edge.metric("stagecast_upstream_connected") == Some(1.0)
    });

    let (_c1, mut greedy) = moq_session(&edge).await;
    // Two FETCHes of ranges nobody caches: the edge asks its upstream, which never
    // answers, so both stay in flight.
    let mut in_flight = Vec::new();
    for group in 0..2 {
        in_flight.push(
            greedy
                .fetch(range(group), KeyValuePairs::default())
                .await
                .unwrap(),
        );
    }
    wait_held(&mut held, 2).await;

    // A third at once is refused immediately (today it joined the other two, without bound).
    let third = greedy
        .fetch(range(2), KeyValuePairs::default())
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), third.ok())
        .await
        .expect("the third FETCH is answered at once, not held");
    assert!(answer.is_err(), "the third FETCH must be refused");
    let rejection = third.rejection().expect("a REQUEST_ERROR");
    assert_eq!(
        rejection.error_code,
        RequestErrorCode::ExcessiveLoad as u64,
        "{rejection:?}"
    );
    assert_eq!(
        edge.metric("stagecast_limit_refused_total{limit=\"fetch_per_session\"}"),
        Some(1.0)
    );

    // Another session has its own share: its FETCH goes upstream.
    let (_c2, mut other) = moq_session(&edge).await;
    let _theirs = other
        .fetch(range(3), KeyValuePairs::default())
        .await
        .unwrap();
    wait_held(&mut held, 3).await;
    assert_eq!(
        *held.borrow(),
        3,
        "the refused FETCH never reached the upstream"
    );
    drop(in_flight);
}
