//! Lifecycle actions completed by events, never by a waiting invocation: the reactor,
//! run as Lambda runs it with one concurrent invocation (events handled one at a time,
//! in the order EventBridge delivered them), against the emulator's Auto Scaling, EC2,
//! Run Command and EventBridge, two real HAProxy hosts with their agent service, and
//! real backends on the instances' addresses.
//!
//! - A terminate whose member drains a 20 s request does not hold up a launch a second
//!   later: the launch serves on every host within 2 s of its event and is continued
//!   within 1 s of being UP everywhere; the terminate's invocation returns at once and
//!   its CONTINUE comes from the command's status event once the drain ended.
//! - A 90 s drain under a 30 s hook heartbeat timeout: the schedule heartbeats the
//!   action while the command runs, the hook never times out, and the action ends with
//!   CONTINUE from the reactor.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use harness::pump::scheduled_event;
use harness::unix_ms;
use harness::watch::SocketWatch;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_is_not_held_up_by_a_drain_and_each_action_completes_from_its_own_event() {
    let s = Stack::start(StackSpec::new(300, 30)).await;
    let ids = s.launched(2).await;
    let leaving = ids[0].clone();
    let leaving_ip = s.w.private_ip(&leaving).await.expect("address");

    // A 20 s request on the member that leaves, on every host.
    let requests = s.long_requests_to(&leaving_ip, 20_000).await;
    let mut watches: Vec<SocketWatch> = s
        .hosts
        .iter()
        .map(|h| {
            SocketWatch::start(
                h.client(),
                "web",
                Duration::from_millis(10),
                Duration::from_secs(60),
            )
        })
        .collect();
    let opened = Instant::now();
    s.w.terminate(&leaving, true).await.expect("terminate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.w.scale(GROUP, 2).await.expect("scale out");
    let joining = s.new_member(&ids).await;
    let joining_ip = s.w.private_ip(&joining).await.expect("address");

    // The launch: serving everywhere within 2 s of its event, continued within 1 s of
    // being UP everywhere, long before the drain ends.
    let (result, by, event_ms, continued_ms) = s
        .completed(&joining, "launch", Duration::from_secs(15))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    let up_everywhere = watches
        .iter()
        .map(|w| {
            w.get(&joining_ip)
                .and_then(|seen| seen.up_ms)
                .expect("UP on every host before its CONTINUE")
        })
        .max()
        .unwrap_or_default();
    assert!(
        up_everywhere <= event_ms + 2_000,
        "UP everywhere {} ms after its event",
        up_everywhere.saturating_sub(event_ms)
    );
    assert!(
        continued_ms <= up_everywhere + 1_000,
        "continued {} ms after UP everywhere",
        continued_ms.saturating_sub(up_everywhere)
    );
    assert!(
        opened.elapsed() < Duration::from_secs(15),
        "the launch waited for the drain"
    );
    for w in &mut watches {
        w.stop();
    }

    // The terminate: its invocation returned at once; its CONTINUE came once the drain
    // ended, from the command's status event.
    let (result, by, _, terminated_ms) = s
        .completed(&leaving, "terminate", Duration::from_secs(60))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    for r in requests {
        let (status, len) = r.join().expect("request thread").expect("the long request");
        assert_eq!(status, 200, "the draining member's request was cut");
        assert!(len >= 20, "the whole streamed answer arrived ({len} bytes)");
    }
    let drained_ms = unix_ms();
    let handled = s.stop().await;
    let terminate = action_event(&handled, &leaving, "terminate");
    assert!(
        terminate.ms < 2_000,
        "the terminate's invocation took {} ms",
        terminate.ms
    );
    let by_status = decided(&handled, &leaving, "terminate", "CONTINUE");
    assert_eq!(by_status.summary.event, "command-ended", "{by_status:#?}");
    assert!(
        by_status.started_ms >= terminate.started_ms + 19_000 && terminated_ms <= drained_ms,
        "the terminate was continued {} ms after its event, before the 20 s drain ended: {:#?}",
        by_status.started_ms.saturating_sub(terminate.started_ms),
        by_status.summary
    );
    let launch = decided(&handled, &joining, "launch", "CONTINUE");
    assert!(
        launch.started_ms < by_status.started_ms,
        "the launch was decided after the terminate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_longer_than_the_heartbeat_timeout_is_kept_alive_and_continued() {
    let s = Stack::start(StackSpec::new(30, 120)).await;
    let ids = s.launched(2).await;
    let leaving = ids[0].clone();
    let ip = s.w.private_ip(&leaving).await.expect("address");
    let requests = s.long_requests_to(&ip, 90_000).await;
    s.w.terminate(&leaving, true).await.expect("terminate");

    // The schedule, every 10 s, as the Terraform rule would send it.
    let until = Instant::now() + Duration::from_secs(150);
    let mut next = Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        if let Some(a) = s.action(&leaving, "terminate") {
            break a;
        }
        assert!(
            Instant::now() < until,
            "the terminate action was not completed within 150 s: {:#?}",
            s.handled()
        );
        if Instant::now() >= next {
            next += Duration::from_secs(10);
            s.tx.send(scheduled_event("schedule")).expect("schedule");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (result, by, started_ms, completed_ms) = outcome;
    assert_eq!(
        (result.as_str(), by.as_str()),
        ("CONTINUE", "api"),
        "the hook timed out or was abandoned"
    );
    assert!(
        completed_ms >= started_ms + 89_000,
        "continued after {} ms, before the 90 s drain ended",
        completed_ms - started_ms
    );
    let records = s.w.actions_of(&leaving, "terminate").expect("lifecycle");
    let heartbeats = records[0]["heartbeats"].as_u64().unwrap_or(0);
    assert!(
        heartbeats >= 3,
        "{heartbeats} heartbeats over 90 s under a 30 s timeout"
    );
    for r in requests {
        let (status, len) = r.join().expect("request thread").expect("the long request");
        assert_eq!(status, 200);
        assert!(len >= 90, "the whole streamed answer arrived ({len} bytes)");
    }
    let handled = s.stop().await;
    let heartbeat_runs: BTreeMap<String, usize> = handled
        .iter()
        .filter(|h| !h.summary.heartbeats.is_empty())
        .fold(BTreeMap::new(), |mut m, h| {
            *m.entry(h.summary.event.clone()).or_default() += 1;
            m
        });
    assert!(
        heartbeat_runs.contains_key("reconcile"),
        "the schedule heartbeats running drains: {heartbeat_runs:?}"
    );
}
