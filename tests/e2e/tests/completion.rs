//! Lifecycle actions completed from the hosts' reports, never by a waiting invocation:
//! the reactor fed by its inbox as Lambda's SQS event source mapping feeds it, against
//! the emulator's Auto Scaling, EC2, Run Command (whose SSM Agent runs 5 commands at
//! once per instance, as the real one does), EventBridge, SQS and DynamoDB; two real
//! HAProxy hosts whose agent service reports to the inbox; real backends.
//!
//! - Six members leave with 20 s drains, then one member is launched: it serves on
//!   every host within 2 s of its event (delivery returns at once: no SSM Agent worker
//!   is held by a drain), and every terminate is continued after its own drain, from
//!   the hosts' reports.
//! - A 90 s drain under a 30 s hook heartbeat timeout: the schedule heartbeats the
//!   action, the hook never times out, the action ends with CONTINUE from the reactor.
//! - A proxy whose agent is dead: the launch is continued `HOST_REPORT_TIMEOUT_S` after
//!   the other proxy reported, not at the hook's timeout; the dead host is reported.
//! - A host killed mid-drain resumes, and its report still arrives.
//! - A host that missed the change stays silent; the schedule re-sends it, and its
//!   report decides the action.
//! - A forged report and a command of the document sent by someone else complete
//!   nothing.
//! - A member whose backend dies is seen DOWN by both proxies, set unhealthy once
//!   (`PROXY_HEALTH_GROUPS`), and replaced through the hooks.
//! - A group over two zones: the reactor sends members' zones (`MEMBER_ZONES`), and each
//!   proxy, in one zone with `zone_affinity = "prefer"`, keeps its traffic there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::util::lifecycle::*;
use harness::unix_ms;
use harness::watch::SocketWatch;
use harness::world::DocumentHost;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_serves_at_once_while_six_drains_run_and_each_terminate_waits_for_its_own() {
    let s = Stack::start(StackSpec::new(300, 60)).await;
    let ids = s.launched(7).await;
    let leaving: Vec<String> = ids[..6].to_vec();
    let mut requests = Vec::new();
    for id in &leaving {
        let ip = s.w.private_ip(id).await.expect("address");
        requests.push(s.long_requests_to(&ip, 20_000).await);
    }
    let mut watches: Vec<SocketWatch> = s
        .hosts
        .iter()
        .map(|h| {
            SocketWatch::start(
                h.client(),
                "web",
                Duration::from_millis(10),
                Duration::from_secs(90),
            )
        })
        .collect();
    let opened = Instant::now();
    for id in &leaving {
        s.w.terminate(id, true).await.expect("terminate");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.w.scale(GROUP, 2).await.expect("scale out");
    let joining = s.new_member(&ids).await;
    let joining_ip = s.w.private_ip(&joining).await.expect("address");

    // The launch: serving everywhere within 2 s of its event, continued at once.
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
        "the launch waited for the drains"
    );
    for w in &mut watches {
        w.stop();
    }

    // Each terminate: continued once its own drain ended, from the hosts' reports.
    for id in &leaving {
        let (result, by, started, done) =
            s.completed(id, "terminate", Duration::from_secs(60)).await;
        assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"), "{id}");
        assert!(
            done >= started + 15_000,
            "{id} continued {} ms after its action started, before its 20 s drain ended",
            done - started
        );
    }
    for r in requests.into_iter().flatten() {
        let (status, len) = r.join().expect("request thread").expect("the long request");
        assert_eq!(status, 200, "a draining member's request was cut");
        assert!(len >= 20, "the whole streamed answer arrived ({len} bytes)");
    }
    let handled = s.stop().await;
    for id in &leaving {
        let event = action_event(&handled, id, "terminate");
        assert!(
            event.ms < 2_000,
            "the terminate's invocation took {} ms",
            event.ms
        );
        let by_report = decided(&handled, id, "terminate", "CONTINUE");
        assert!(by_report.is("host-report"), "{by_report:#?}");
    }
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
            s.schedule();
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
    let heartbeat_runs: BTreeMap<bool, usize> = handled
        .iter()
        .filter(|h| !h.summary.heartbeats.is_empty())
        .fold(BTreeMap::new(), |mut m, h| {
            *m.entry(h.is("reconcile")).or_default() += 1;
            m
        });
    assert!(
        heartbeat_runs.contains_key(&true),
        "the schedule heartbeats running drains: {heartbeat_runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_whose_agent_is_dead_holds_a_launch_only_for_the_report_timeout() {
    let mut spec = StackSpec::new(300, 30);
    spec.env.push(("HOST_REPORT_TIMEOUT_S", "3".into()));
    let s = Stack::start(spec).await;
    let ids = s.launched(1).await;
    let dead = s.hosts[1].name.clone();
    s.hosts[1].stop_service();
    s.w.scale(GROUP, 2).await.expect("scale out");
    let joining = s.new_member(&ids).await;
    let (result, by, started, done) = s
        .completed(&joining, "launch", Duration::from_secs(30))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    assert!(
        done < started + 20_000,
        "continued {} ms after its event: the hook's 300 s timeout was not waited for",
        done - started
    );
    // The schedule notices the silence (reports alone never come from the dead host).
    let until = Instant::now() + Duration::from_secs(20);
    let handled = loop {
        let handled = s.handled();
        if handled.iter().any(|h| {
            h.summary
                .reports
                .hosts_dropped
                .iter()
                .any(|d| d.starts_with(&dead))
        }) {
            break handled;
        }
        assert!(
            Instant::now() < until,
            "the dead host was never reported: {handled:#?}"
        );
        s.schedule();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    };
    let decision = decided(&handled, &joining, "launch", "CONTINUE");
    let reason = &decision
        .summary
        .decision(&joining, "launch")
        .expect("decision")
        .reason;
    assert!(reason.contains("dropped"), "{reason}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_killed_mid_drain_resumes_and_its_report_still_arrives() {
    let s = Stack::start(StackSpec::new(300, 60)).await;
    let ids = s.launched(2).await;
    let leaving = ids[0].clone();
    let ip = s.w.private_ip(&leaving).await.expect("address");
    let requests = s.long_requests_to(&ip, 6_000).await;
    s.w.terminate(&leaving, true).await.expect("terminate");
    // Once the drain runs on host 0, its service is killed; the supervisor restarts it.
    let h = &s.hosts[0];
    harness::wait_for(Duration::from_secs(10), || {
        h.status()
            .ok()?
            .iter()
            .any(|r| r["member"] == leaving.as_str() && r["admin"] == "drain")
            .then_some(())
    })
    .expect("draining on host 0");
    let killed = h.kill_service().expect("a service to kill");
    let (result, by, started, done) = s
        .completed(&leaving, "terminate", Duration::from_secs(40))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    assert!(
        done >= started + 5_000,
        "continued before the 6 s drain ended"
    );
    assert!(
        h.service_restarts() >= 1 && h.service_pid() != Some(killed),
        "the service was restarted"
    );
    for r in requests {
        assert_eq!(r.join().expect("thread").expect("request").0, 200);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schedule_re_sends_to_a_host_that_missed_a_change() {
    let s = Stack::start(StackSpec::new(300, 30)).await;
    let ids = s.launched(1).await;
    // Host 1 misses the next change: its Run Command fails without running the agent.
    let missing = &s.hosts[1];
    s.w.program_hosts(&json!({ missing.name.clone(): {"status": "Failed", "code": 1, "stderr": "the SSM Agent is down"} }))
        .expect("program");
    s.w.scale(GROUP, 2).await.expect("scale out");
    let joining = s.new_member(&ids).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        s.action(&joining, "launch").is_none(),
        "decided without host 1's report"
    );
    // It comes back; the schedule re-sends the membership; its report decides.
    let agent = harness::process::bin_path("agent")
        .expect("agent")
        .display()
        .to_string();
    s.w.document_hosts(&[DocumentHost {
        instance: missing.name.clone(),
        agent,
        env: missing.document_env(),
    }])
    .expect("program");
    s.schedule();
    let (result, by, _, done) = s
        .completed(&joining, "launch", Duration::from_secs(20))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    assert!(done <= unix_ms());
    let handled = s.stop().await;
    let d = decided(&handled, &joining, "launch", "CONTINUE");
    assert!(d.is("host-report"), "decided by a report: {d:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_report_and_someone_elses_command_complete_nothing() {
    let mut spec = StackSpec::new(300, 30);
    spec.env.push(("HOST_REPORT_TIMEOUT_S", "600".into()));
    let s = Stack::start(spec).await;
    let ids = s.launched(1).await;
    // An instance outside the proxy group that carries the proxy tag (anyone who can
    // tag an instance can make one): it is no proxy.
    let (tag_key, tag_value) = harness::world::PROXY_TAG;
    let rogue =
        s.w.run_instances(1, &s.w.subnet, tag_key, tag_value)
            .await
            .expect("a tagged instance")
            .remove(0);
    // No agent answers: the launch stays open in the ledger, waiting for both proxies.
    for h in &s.hosts {
        h.stop_service();
    }
    s.w.scale(GROUP, 2).await.expect("scale out");
    let joining = s.new_member(&ids).await;
    let g = the_launch_sent_to_the_two_proxies(&s, &joining);
    let up = |host: &str| up_report(host, &joining, g);
    let (p0, p1) = (s.hosts[0].name.clone(), s.hosts[1].name.clone());
    // Proxy 1 reports for both, and a principal that is no proxy reports for proxy 0.
    let session1 = s.w.proxy_session(&s.path, &p1).expect("session");
    for (key, body) in [
        (session1.access_key.as_str(), up(&p0)),
        ("testing", up(&p0)),
        ("testing", up(&p1)),
    ] {
        send_to_the_inbox(&s, key, &body);
    }
    harness::wait_for(Duration::from_secs(10), || {
        (s.handled()
            .iter()
            .map(|h| h.summary.reports.forged)
            .sum::<usize>()
            >= 3)
            .then_some(())
    })
    .expect("three forged reports refused");
    let ignored = |s: &Stack| {
        s.handled()
            .iter()
            .map(|h| h.summary.reports.ignored)
            .sum::<usize>()
    };
    let before = ignored(&s);
    // The tagged instance reports the member up with the proxies' role, as itself: a
    // true sender, but no host this action waits for.
    let rogue_session = s.w.proxy_session(&s.path, &rogue).expect("session");
    send_to_the_inbox(&s, &rogue_session.access_key, &up(&rogue));
    harness::wait_for(Duration::from_secs(10), || {
        (ignored(&s) > before).then_some(())
    })
    .expect("the tagged instance's report was read and changed nothing");
    // A command of the document with a completion context of its own is refused by the
    // document; one that adds another member changes nothing about this launch.
    a_command_with_a_context_of_its_own_is_refused(&s, &p0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        s.action(&joining, "launch").is_none(),
        "completed by a forgery: {:#?}",
        s.handled()
    );
    s.stop().await;
}

/// Waits (10 s) until the launch of `joining` was sent, and checks every change went
/// to the two proxies only; the latest change's generation.
fn the_launch_sent_to_the_two_proxies(s: &Stack, joining: &str) -> u64 {
    harness::wait_for(Duration::from_secs(10), || {
        s.handled()
            .iter()
            .any(|h| h.summary.decision(joining, "launch").is_some())
            .then_some(())
    })
    .expect("the launch was sent");
    let g = s
        .handled()
        .iter()
        .flat_map(|h| h.summary.changes.clone())
        .map(|c| c.generation)
        .max()
        .expect("a change");
    let sent: Vec<usize> = s
        .handled()
        .iter()
        .flat_map(|h| h.summary.changes.clone())
        .map(|c| c.hosts)
        .collect();
    assert!(
        sent.iter().all(|n| *n == 2),
        "changes went to the two proxies only: {sent:?}"
    );
    g
}

/// A command of the document with a completion context of its own is refused by the
/// document.
async fn a_command_with_a_context_of_its_own_is_refused(s: &Stack, p0: &str) {
    let ssm = aws_sdk_ssm::Client::new(&s.w.sdk);
    let forged = ssm
        .send_command()
        .document_name(harness::world::DOCUMENT)
        .instance_ids(p0)
        .parameters("Change", vec!["e30g".into()])
        .parameters("Context", vec!["eyJ2IjoxfQ==".into()])
        .send()
        .await;
    assert!(forged.is_err(), "the document takes no Context parameter");
}

/// A host report of `host` saying member `id` of pool `web` is up at generation `g`,
/// as the one message the agent would send.
fn up_report(host: &str, id: &str, g: u64) -> String {
    infra::HostReport {
        host: infra::HostId::new(host).unwrap(),
        sent_ms: unix_ms(),
        reports: vec![infra::MemberReport::new(
            infra::PoolName::new("web").unwrap(),
            infra::MemberId::new(id).unwrap(),
            g,
            infra::OutcomeStatus::Up,
            None,
            1,
        )],
        health: Vec::new(),
    }
    .to_messages(infra::MAX_MESSAGE_BYTES)
    .remove(0)
}

/// Sends `body` to the reactor's inbox as the holder of access key `key`.
fn send_to_the_inbox(s: &Stack, key: &str, body: &str) {
    s.w.emulator
        .aws_json_as(
            key,
            "sqs",
            "AmazonSQS.SendMessage",
            &json!({"QueueUrl": s.path.inbox, "MessageBody": body}),
            Duration::from_secs(10),
        )
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_both_proxies_see_down_is_set_unhealthy_once_and_replaced() {
    let mut spec = StackSpec::new(300, 5);
    spec.env = vec![
        ("PROXY_HEALTH_GROUPS", "web-*".into()),
        ("UNHEALTHY_AFTER_S", "5".into()),
    ];
    let s = Stack::start(spec).await;
    let ids = s.launched(4).await;
    let sick = ids[0].clone();
    assert!(s.fleet.fail(&sick), "{sick}'s backend was running");
    // Both proxies see it DOWN within a few checks and report it; 5 s later the
    // reactor sets it unhealthy, and Auto Scaling replaces it through the hooks.
    let (result, by, _, _) = s
        .completed(&sick, "terminate", Duration::from_secs(60))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    let new = s.new_member(&ids).await;
    let (result, _, _, _) = s.completed(&new, "launch", Duration::from_secs(30)).await;
    assert_eq!(result, "CONTINUE", "{:#?}", s.handled());
    for id in &ids[1..] {
        assert!(s.action(id, "terminate").is_none(), "{id} is healthy");
    }
    // Its reports kept coming until it was gone: still one call.
    assert_eq!(s.w.count("SetInstanceHealth").expect("calls"), 1);
    let handled = s.stop().await;
    let set: Vec<String> = handled
        .iter()
        .flat_map(|h| h.summary.unhealthy.clone())
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(
        set[0].starts_with(&sick) && set[0].contains("DOWN on"),
        "{set:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_failing_at_once_has_at_most_the_fraction_set_unhealthy_at_a_time() {
    let mut spec = StackSpec::new(300, 5);
    spec.env = vec![
        ("PROXY_HEALTH_GROUPS", "web-asg".into()),
        ("UNHEALTHY_AFTER_S", "5".into()),
        ("MAX_UNHEALTHY_FRACTION", "0.25".into()),
    ];
    let s = Stack::start(spec).await;
    let ids = s.launched(4).await;
    for id in &ids {
        assert!(s.fleet.fail(id), "{id}'s backend was running");
    }
    // A shared dependency failing: every member DOWN on both proxies. A quarter of four
    // may be unhealthy at once; watch the group until two were set unhealthy in turn
    // (the first replaced before the second), never two at once.
    let until = Instant::now() + Duration::from_secs(90);
    let mut most = 0;
    while s.w.count("SetInstanceHealth").expect("calls") < 2 {
        assert!(
            Instant::now() < until,
            "no second replacement within 90 s: {:#?}",
            s.handled()
        );
        let members = s.w.members(GROUP).await.expect("members");
        let unhealthy = members
            .iter()
            .filter(|m| ids.contains(&m.id) && !m.healthy)
            .count();
        most = most.max(unhealthy);
        assert!(
            unhealthy <= 1,
            "{unhealthy} set unhealthy at once: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most, 1, "the first was set unhealthy and seen so");
    let handled = s.stop().await;
    let held: usize = handled.iter().map(|h| h.summary.unhealthy_held.len()).sum();
    assert!(
        held >= 1,
        "the others were held back while one was unhealthy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reactor_sends_members_zones_and_each_proxy_keeps_its_traffic_in_its_zone() {
    let mut spec = StackSpec::new(300, 5);
    spec.zones = true;
    let s = Stack::start(spec).await;
    s.launched(4).await;
    let members = s.w.members(GROUP).await.expect("members");
    let zone_of: BTreeMap<String, String> = members
        .iter()
        .map(|m| (format!("web-{}", m.id), m.zone.clone()))
        .collect();
    for zone in ZONES {
        let n = zone_of.values().filter(|z| *z == zone).count();
        assert_eq!(
            n, 2,
            "Auto Scaling spreads the group over its zones: {zone_of:?}"
        );
    }
    for (h, zone) in s.hosts.iter().zip(ZONES) {
        // Until the other zone stands by (bounded; it still gets a trickle, about 1
        // request in 256 per local member), then a window of requests.
        let until = Instant::now() + Duration::from_secs(10);
        let local = |st: &harness::LoadStats| {
            let ok: u64 = st.by_backend.values().sum();
            let here: u64 = st
                .by_backend
                .iter()
                .filter(|(b, _)| zone_of.get(*b).is_some_and(|z| z == zone))
                .map(|(_, n)| n)
                .sum();
            here as f64 / ok.max(1) as f64
        };
        let fe = h.frontend("web");
        while local(&requests_through(fe, 100).await) < 0.95 {
            assert!(
                Instant::now() < until,
                "{}: traffic never stayed in {zone}",
                h.name
            );
        }
        let st = requests_through(fe, 1_000).await;
        assert_eq!(st.failed, 0, "{st:?}");
        assert!(
            local(&st) >= 0.95,
            "{}: {:.3} in {zone}: {st:?}",
            h.name,
            local(&st)
        );
    }
    s.stop().await;
}

/// `n` requests through frontend `fe` (4 workers, at most 60 s), off the runtime.
async fn requests_through(fe: std::net::SocketAddr, n: u64) -> harness::LoadStats {
    tokio::task::spawn_blocking(move || {
        harness::Load::start(fe, 4, Duration::from_secs(60), n).wait()
    })
    .await
    .expect("requests")
}
