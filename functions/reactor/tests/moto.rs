//! The reactor against the project's AWS emulator (`tests/emulator`): real lifecycle
//! hooks, Run Command running the project's SSM document on each proxy host
//! (`fake_host.py` playing the agent), the document's status-change events coming back
//! through EventBridge and SQS, fault injection, Route 53. Each test starts its own
//! emulator on a free port.
//!
//! An invocation never waits for the hosts: a lifecycle event's invocation sends the
//! change and returns, and the command's status event completes the action
//! ([`Fixture::settle`] plays Lambda for those, one at a time).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const LAUNCH: &str = "EC2 Instance-launch Lifecycle Action";
const TERMINATE: &str = "EC2 Instance-terminate Lifecycle Action";

fn result_of(records: &[Value]) -> Option<String> {
    records
        .iter()
        .find_map(|r| r["result"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_continues_only_after_the_member_is_up_on_every_proxy() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    // The second proxy takes 1.5 s to see the member healthy.
    let proxies = w
        .proxies(2, &[host_env(&[]), host_env(&[("FAKE_DELAY_S", "1.5")])])
        .await;
    w.scale(GROUP, 1).await;
    let members = w.members(GROUP).await;
    let (id, state) = members[0].clone();
    assert_eq!(state, "Pending:Wait");
    let event = w.event(LAUNCH, &id);

    let r = w.reactor(&[]);
    let t = Instant::now();
    let sent = r.handle(&event).await.expect("handled");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the invocation waited for the hosts: {:?}",
        t.elapsed()
    );
    assert_eq!(sent.actions[0].decision, "WAIT");
    assert_eq!(result_of(&w.actions_of(&id, "launch")), None);
    let handled = w
        .settle(&r, Duration::from_secs(30), |w| {
            w.result(&id, "launch").is_some()
        })
        .await;
    let summary = handled.last().expect("the status event").clone();

    // Completed CONTINUE, after the slow proxy reported it up.
    let records = w.actions_of(&id, "launch");
    assert_eq!(
        result_of(&records).as_deref(),
        Some("CONTINUE"),
        "{summary:?}"
    );
    let completed_at = records[0]["time"].as_f64().expect("completion time");
    for p in &proxies {
        let log = w.host_log(p);
        assert_eq!(log.len(), 1, "one change per proxy");
        let added = &log[0]["change"]["pools"][0]["add"][0];
        assert_eq!(added["id"], json!(id));
        assert_eq!(added["address"], json!(w.private_ip(&id).await));
        assert_eq!(added["port"], json!(8080));
        let done = log[0]["done"].as_f64().expect("done");
        assert!(
            completed_at >= done,
            "CONTINUE at {completed_at} before host {p} was up at {done}"
        );
        assert_eq!(w.serving(p, "web"), std::slice::from_ref(&id));
    }
    assert_eq!(
        w.members(GROUP).await,
        [(id.clone(), "InService".to_string())]
    );
    assert_eq!(summary.actions[0].decision, "CONTINUE");
    assert_eq!(summary.hosts.len(), 2);
}

/// The calls of `action` the emulator logged since the last reset.
fn logged(w: &Fixture, action: &str) -> Vec<Value> {
    let calls = w
        .emulator
        .control("GET", "/moto-ext/calls", None)
        .expect("calls");
    calls
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["action"] == json!(action))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_event_reads_the_group_and_its_instance_in_one_round_trip() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    w.proxies(1, &[host_env(&[])]).await;
    // Two launches at once: the event names the first; the second waits too.
    w.scale(GROUP, 2).await;
    let members = w.members(GROUP).await;
    let (first, second) = (members[0].0.clone(), members[1].0.clone());
    // Real AWS answers in tens of milliseconds; make each read take 400 ms, so reading
    // the group and then the instance would take 800 ms.
    let slow = json!([
        {"service":"autoscaling","action":"DescribeAutoScalingGroups","delay_ms":400,"count":1},
        {"service":"ec2","action":"DescribeInstances","delay_ms":400,"count":1}
    ]);
    w.emulator
        .control("POST", "/moto-ext/calls/reset", None)
        .expect("reset");
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&slow))
        .expect("faults");
    let r = w.reactor(&[]);
    let summary = r.handle(&w.event(LAUNCH, &first)).await.expect("handled");

    let groups = logged(&w, "DescribeAutoScalingGroups");
    // The last DescribeInstances looks the proxy hosts up for Run Command; the ones
    // before it are discovery's.
    let mut instances = logged(&w, "DescribeInstances");
    instances.pop();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let at = |c: &Value, k: &str| c[k].as_f64().unwrap_or_else(|| panic!("no {k} in {c}"));
    let (g, i) = (&groups[0], &instances[0]);
    assert!(
        at(i, "time") < at(g, "end") && at(g, "time") < at(i, "end"),
        "the group and the event's instance were read one after the other: {g} {i}"
    );
    // The other waiting member's address takes one more call, and both are sent.
    assert_eq!(instances.len(), 2, "{instances:?}");
    let change = summary.change.expect("a change was sent");
    let mut added: Vec<(String, String)> = change.pools[0]
        .add
        .iter()
        .map(|m| (m.id.to_string(), m.address.to_string()))
        .collect();
    added.sort();
    let mut expected = vec![
        (first.clone(), w.private_ip(&first).await),
        (second.clone(), w.private_ip(&second).await),
    ];
    expected.sort();
    assert_eq!(added, expected);
    w.settle(&r, Duration::from_secs(30), |w| {
        w.result(&first, "launch").is_some() && w.result(&second, "launch").is_some()
    })
    .await;
    assert_eq!(
        result_of(&w.actions_of(&first, "launch")).as_deref(),
        Some("CONTINUE")
    );

    // Steady state (the only waiting member is the event's): one read of each.
    w.scale(GROUP, 3).await;
    let third = w
        .members(GROUP)
        .await
        .into_iter()
        .find(|(id, _)| *id != first && *id != second)
        .expect("third")
        .0;
    w.emulator
        .control("POST", "/moto-ext/calls/reset", None)
        .expect("reset");
    let summary = r.handle(&w.event(LAUNCH, &third)).await.expect("handled");
    assert_eq!(logged(&w, "DescribeAutoScalingGroups").len(), 1);
    assert_eq!(
        logged(&w, "DescribeInstances").len(),
        2,
        "discovery's one, and the proxy hosts'"
    );
    let change = summary.change.expect("a change was sent");
    assert_eq!(change.pools[0].add.len(), 1);
    assert_eq!(change.pools[0].add[0].id.as_str(), third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_gets_healthy_is_abandoned() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let (id, _) = w.members(GROUP).await[0].clone();
    // The first proxy never sees it healthy.
    w.proxies(2, &[host_env(&[("FAKE_FAIL", id.as_str())]), host_env(&[])])
        .await;
    let event = w.event(LAUNCH, &id);
    let r = w.reactor(&[]);
    r.handle(&event).await.expect("handled");
    let handled = w
        .settle(&r, Duration::from_secs(30), |w| {
            w.result(&id, "launch").is_some()
        })
        .await;
    let summary = handled.last().expect("the status event");
    assert_eq!(
        result_of(&w.actions_of(&id, "launch")).as_deref(),
        Some("ABANDON")
    );
    assert_eq!(summary.actions[0].decision, "ABANDON");
    assert!(
        summary.actions[0]
            .reason
            .contains("health check did not pass"),
        "{summary:?}"
    );
    // ABANDON terminates it; the group launches a replacement, held again.
    assert!(w.members(GROUP).await.iter().all(|(i, _)| *i != id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_completes_the_terminate_hook_only_after_the_drain() {
    let w = Fixture::new().await;
    w.group(GROUP, false, true, &[]).await;
    w.scale(GROUP, 2).await;
    // Draining takes 1.5 s on the second proxy.
    let proxies = w
        .proxies(2, &[host_env(&[]), host_env(&[("FAKE_DELAY_S", "1.5")])])
        .await;
    let r = w.reactor(&[]);
    // Bring both members in (no launch hook: the schedule adds them).
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    r.handle(&sched).await.expect("reconcile");
    w.settle(&r, Duration::from_secs(30), |w| {
        w.serving(&proxies[1], "web").len() == 2
    })
    .await;
    let members = w.members(GROUP).await;
    assert_eq!(w.serving(&proxies[0], "web").len(), 2);

    w.scale(GROUP, 1).await;
    let leaving = members[0].0.clone(); // oldest first
    let states = w.members(GROUP).await;
    assert!(
        states.contains(&(leaving.clone(), "Terminating:Wait".to_string())),
        "{states:?}"
    );
    let event = w.event(TERMINATE, &leaving);
    let t = Instant::now();
    let summary = r.handle(&event).await.expect("handled");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the invocation waited for the drain: {:?}",
        t.elapsed()
    );
    assert_eq!(result_of(&w.actions_of(&leaving, "terminate")), None);
    w.settle(&r, Duration::from_secs(30), |w| {
        w.result(&leaving, "terminate").is_some()
    })
    .await;

    let records = w.actions_of(&leaving, "terminate");
    assert_eq!(
        result_of(&records).as_deref(),
        Some("CONTINUE"),
        "{summary:?}"
    );
    let completed_at = records[0]["time"].as_f64().expect("time");
    for p in &proxies {
        let log = w.host_log(p);
        let last = log.last().expect("log");
        assert_eq!(last["change"]["pools"][0]["remove"], json!([leaving]));
        assert!(
            completed_at >= last["done"].as_f64().unwrap_or(f64::MAX),
            "CONTINUE before the drain on {p}"
        );
        assert_eq!(w.serving(p, "web"), [members[1].0.clone()]);
    }
    assert!(w.members(GROUP).await.iter().all(|(i, _)| *i != leaving));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_reordered_and_lost_events_converge() {
    let w = Fixture::new().await;
    w.group(GROUP, true, true, &[]).await;
    let proxies = w.proxies(1, &[host_env(&[])]).await;
    let r = w.reactor(&[]);

    // A launches; before its launch event is handled it is terminated (terminate before
    // launch in delivery order).
    w.scale(GROUP, 1).await;
    let a = w.members(GROUP).await[0].0.clone();
    let launch_a = w.event(LAUNCH, &a);
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&a)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("terminate");
    let terminate_a = w.event(TERMINATE, &a);
    r.handle(&terminate_a).await.expect("terminate first");
    w.settle(&r, Duration::from_secs(30), |w| {
        w.result(&a, "terminate").is_some()
    })
    .await;
    assert_eq!(
        result_of(&w.actions_of(&a, "terminate")).as_deref(),
        Some("CONTINUE")
    );
    // The late launch event and a duplicate of the terminate one change nothing.
    let late = r.handle(&launch_a).await.expect("late launch");
    assert!(late.actions.is_empty(), "{late:?}");
    r.handle(&terminate_a).await.expect("duplicate");
    w.settle(&r, Duration::from_secs(30), |w| {
        w.host_log(&proxies[0]).len() >= 3
    })
    .await;
    for entry in w.host_log(&proxies[0]) {
        for p in entry["change"]["pools"].as_array().unwrap() {
            assert!(
                p["add"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m["id"] != json!(a)),
                "A was added by {entry}"
            );
        }
    }

    // B launches and its event is lost: the schedule finds it and finishes the job.
    w.scale(GROUP, 1).await;
    let b = w
        .members(GROUP)
        .await
        .into_iter()
        .find(|(i, _)| *i != a)
        .expect("B")
        .0;
    // Duplicates of B's event delivered twice, out of band of the schedule, are fine too.
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    let s = r.handle(&sched).await.expect("reconcile");
    w.settle(&r, Duration::from_secs(30), |w| {
        w.result(&b, "launch").is_some()
    })
    .await;
    assert_eq!(
        result_of(&w.actions_of(&b, "launch")).as_deref(),
        Some("CONTINUE"),
        "{s:?}"
    );
    let launch_b = w.event(LAUNCH, &b);
    let logged_before = w.host_log(&proxies[0]).len();
    r.handle(&launch_b).await.expect("dup 1");
    r.handle(&launch_b).await.expect("dup 2");
    w.settle(&r, Duration::from_secs(30), |w| {
        w.host_log(&proxies[0]).len() >= logged_before + 2
    })
    .await;
    assert_eq!(w.serving(&proxies[0], "web"), std::slice::from_ref(&b));
    assert_eq!(
        w.members(GROUP).await,
        [(b.clone(), "InService".to_string())]
    );
    // Every message had its own generation: commands to one host may run in any order
    // (Run Command does not queue them), and the agent orders them by generation.
    let gens: Vec<u64> = w
        .host_log(&proxies[0])
        .iter()
        .map(|e| e["change"]["generation"].as_u64().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<u64> = gens.iter().copied().collect();
    assert_eq!(unique.len(), gens.len(), "{gens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_missing_instance_and_malformed_events_are_acknowledged() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    w.group("other-asg", true, false, &[]).await;
    w.proxies(1, &[host_env(&[])]).await;
    w.scale("other-asg", 1).await;
    let other = w.members("other-asg").await[0].0.clone();
    let r = w.reactor(&[]);

    let s = r.handle(&w.event(LAUNCH, &other)).await.expect("unmanaged");
    assert!(
        s.ignored
            .as_deref()
            .unwrap_or_default()
            .contains("not managed"),
        "{s:?}"
    );
    let mut gone = w.event(LAUNCH, &other);
    gone["detail"]["AutoScalingGroupName"] = json!("no-such-asg");
    let s = r.handle(&gone).await.expect("no such group");
    assert!(s
        .ignored
        .as_deref()
        .unwrap_or_default()
        .contains("not managed"));
    for bad in [
        json!("hello"),
        json!({"detail-type": LAUNCH, "source": "aws.autoscaling", "detail": {}}),
        json!(null),
    ] {
        let s = r.handle(&bad).await.expect("malformed");
        assert!(s.ignored.is_some());
    }
    assert_eq!(w.count("SendCommand"), 0, "ignored events send nothing");
    assert_eq!(
        result_of(&w.actions_of(&other, "launch")),
        None,
        "not ours to complete"
    );

    // A terminate event for an instance the group never had (or no longer has).
    let mut missing = w.event(LAUNCH, &other);
    missing["detail-type"] = json!(TERMINATE);
    missing["detail"]["AutoScalingGroupName"] = json!(GROUP);
    missing["detail"]["EC2InstanceId"] = json!("i-0000000000000dead");
    missing["detail"]["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_TERMINATING");
    let s = r.handle(&missing).await.expect("missing instance");
    let change = s.change.expect("a removal is sent");
    assert_eq!(change.pools[0].remove[0].as_str(), "i-0000000000000dead");
    assert!(
        s.notes.iter().any(|n| n.contains("no longer in the group")),
        "{:?}",
        s.notes
    );
    assert_eq!(w.count("CompleteLifecycleAction"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_retried_and_a_final_failure_names_the_api_and_group() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    w.proxies(1, &[host_env(&[])]).await;
    w.scale(GROUP, 1).await;
    let first = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[]);
    let faults = json!([
        {"service":"autoscaling","action":"DescribeAutoScalingGroups","code":"Throttling","status":400,"count":2},
        {"service":"ec2","action":"DescribeInstances","code":"RequestLimitExceeded","status":503,"count":1},
        {"service":"ssm","action":"SendCommand","code":"InternalFailure","status":500,"count":1},
        {"service":"autoscaling","action":"CompleteLifecycleAction","code":"Throttling","status":400,"count":2}
    ]);
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&faults))
        .expect("faults");
    let s = r
        .handle(&w.event(LAUNCH, &first))
        .await
        .expect("retried through");
    w.settle(&r, Duration::from_secs(30), |w| {
        w.result(&first, "launch").is_some()
    })
    .await;
    assert_eq!(
        result_of(&w.actions_of(&first, "launch")).as_deref(),
        Some("CONTINUE"),
        "{s:?}"
    );
    let calls = w.emulator.control("GET", "/moto-ext/calls", None).unwrap();
    let faulted = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("fault").is_some())
        .count();
    assert_eq!(faulted, 6, "every injected fault was hit, then retried");

    // A fault that never clears: the error names the API and the group.
    let forever = json!({"service":"autoscaling","action":"CompleteLifecycleAction","code":"ServiceUnavailable","status":503,"count":-1});
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&forever))
        .expect("faults");
    w.scale(GROUP, 2).await;
    let second = w
        .members(GROUP)
        .await
        .into_iter()
        .find(|(i, _)| *i != first)
        .expect("second")
        .0;
    r.handle(&w.event(LAUNCH, &second)).await.expect("sent");
    // Its command's status event is where the completion fails for good.
    let until = Instant::now() + Duration::from_secs(90);
    let e = loop {
        assert!(Instant::now() < until, "the completion never failed");
        let (events, handles) = w.world.receive(&w.queue, 1).expect("receive");
        w.world.delete(&w.queue, &handles).expect("delete");
        let mut failed = None;
        for ev in events {
            if let Err(e) = r.handle(&ev).await {
                failed = Some(e.to_string());
            }
        }
        if let Some(e) = failed {
            break e;
        }
    };
    assert!(
        e.contains("CompleteLifecycleAction") && e.contains(GROUP),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssm_host_failure_is_reported_with_the_host_and_the_reason() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    let proxies = w
        .proxies(
            3,
            &[
                host_env(&[]),
                host_env(&[("FAKE_MODE", "exit2")]),
                host_env(&[("FAKE_MODE", "garbage")]),
            ],
        )
        .await;
    // A fourth, with a canned SSM failure.
    let canned = w.proxies(1, &[]).await;
    w.emulator
        .control(
            "POST",
            "/moto-ext/ssm/hosts",
            Some(&json!({canned[0].clone(): {"status": "TimedOut", "stdout": "", "stderr": "", "code": -1, "delay_ms": 200}})),
        )
        .expect("canned");
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[]);
    r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    let handled = w
        .settle(&r, Duration::from_secs(30), |w| {
            w.count("GetCommandInvocation") >= 3
        })
        .await;
    let s = handled
        .iter()
        .find(|s| !s.hosts.is_empty())
        .expect("the status event was handled")
        .clone();
    let err_of = |h: &str| {
        s.hosts
            .iter()
            .find(|x| x.host == h)
            .and_then(|x| x.error.clone())
            .unwrap_or_default()
    };
    assert!(s.hosts.iter().any(|h| h.host == proxies[0] && h.ok));
    assert!(
        err_of(&proxies[1]).contains("HAProxy unreachable")
            && err_of(&proxies[1]).contains("code 2"),
        "{s:?}"
    );
    assert!(err_of(&proxies[2]).contains("unparsable"), "{s:?}");
    assert!(err_of(&canned[0]).contains("TimedOut"), "{s:?}");
    // Not up everywhere: not continued, and the reason names the hosts.
    assert_eq!(s.actions[0].decision, "WAIT");
    assert!(
        s.actions[0].reason.contains(&proxies[1]),
        "{}",
        s.actions[0].reason
    );
    assert_eq!(result_of(&w.actions_of(&id, "launch")), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_records_follow_the_proxy_fleet() {
    let w = Fixture::new().await;
    let r53 = aws_sdk_route53::Client::new(&w.sdk);
    let zone = r53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("t1")
        .send()
        .await
        .expect("zone");
    let zone_id = zone
        .hosted_zone()
        .map(|z| z.id().to_string())
        .expect("zone id");
    w.group("proxies", false, false, &[]).await;
    w.scale("proxies", 3).await;
    let r = w.reactor(&[
        ("PROXY_GROUP", "proxies"),
        ("DNS_ZONE_ID", &zone_id),
        ("DNS_RECORD_NAME", "lb.example.com"),
        ("DNS_TTL", "30"),
    ]);
    let records = |r53: aws_sdk_route53::Client, zone_id: String| async move {
        let out = r53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .send()
            .await
            .expect("list");
        let mut v: Vec<(String, String)> = out
            .resource_record_sets()
            .iter()
            .filter(|s| s.name().starts_with("lb.example.com"))
            .map(|s| {
                (
                    s.set_identifier().unwrap_or_default().to_string(),
                    s.resource_records()
                        .first()
                        .map(|r| r.value().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    };
    // Route 53 is busy once: retried.
    let busy = json!({"service":"route53","action":"ChangeResourceRecordSets","code":"PriorRequestNotComplete","status":400,"count":1});
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&busy))
        .expect("fault");
    let members = w.members("proxies").await;
    let ev = w.event("EC2 Instance Launch Successful", &members[2].0);
    let s = r.handle(&ev).await.expect("handled");
    let mut want = Vec::new();
    for (id, _) in &members {
        want.push((id.clone(), w.private_ip(id).await));
    }
    want.sort();
    assert_eq!(records(r53.clone(), zone_id.clone()).await, want, "{s:?}");
    assert_eq!(s.dns.as_ref().map(|d| d.upserts), Some(3));

    // Scale-in: the gone proxy's record is deleted.
    w.scale("proxies", 2).await;
    let gone = members[0].0.clone();
    let ev = w.event("EC2 Instance Terminate Successful", &gone);
    let s = r.handle(&ev).await.expect("handled");
    want.retain(|(id, _)| *id != gone);
    assert_eq!(records(r53.clone(), zone_id.clone()).await, want, "{s:?}");
    assert_eq!(s.dns.as_ref().map(|d| d.deletes), Some(1));
    assert_eq!(
        w.count("SendCommand"),
        0,
        "the proxy group is not a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_keeps_a_long_wait_alive_with_heartbeats() {
    let w = Fixture::new().await;
    w.group(GROUP, false, false, &[]).await;
    // A 2 s heartbeat timeout, and a proxy that needs 3.5 s: without heartbeats the hook
    // would time out (default ABANDON) before the member is up. The schedule, every
    // 0.7 s here, heartbeats the actions whose command still runs.
    w.hook(
        GROUP,
        "launch-hook",
        "autoscaling:EC2_INSTANCE_LAUNCHING",
        2,
    )
    .await;
    w.proxies(1, &[host_env(&[("FAKE_DELAY_S", "3.5")])]).await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[]);
    r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    let mut next = Instant::now();
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    let handled = w
        .settle_with(
            &r,
            Duration::from_secs(30),
            &mut |w: &Fixture| w.result(&id, "launch").is_some(),
            |now| {
                (now >= next).then(|| {
                    next = now + Duration::from_millis(700);
                    sched.clone()
                })
            },
        )
        .await;
    let records = w.actions_of(&id, "launch");
    assert_eq!(
        result_of(&records).as_deref(),
        Some("CONTINUE"),
        "{records:?} {handled:?}"
    );
    assert_eq!(records[0]["by"], json!("api"));
    assert!(w.count("RecordLifecycleActionHeartbeat") >= 2);
    assert!(
        handled.iter().any(|s| !s.heartbeats.is_empty()),
        "{handled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_event_is_repaired_by_the_schedule_and_duplicates_change_nothing() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    w.proxies(2, &[host_env(&[]), host_env(&[])]).await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[]);
    r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    // The command ends; its status event is lost (taken from the queue, never handled).
    let mut lost = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while lost.is_empty() {
        assert!(Instant::now() < until, "the command never ended");
        let (events, handles) = w.world.receive(&w.queue, 1).expect("receive");
        w.world.delete(&w.queue, &handles).expect("delete");
        lost.extend(events);
    }
    assert_eq!(result_of(&w.actions_of(&id, "launch")), None);
    // The schedule finds the ended command and decides from its reports.
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    let s = r.handle(&sched).await.expect("reconcile");
    assert_eq!(
        result_of(&w.actions_of(&id, "launch")).as_deref(),
        Some("CONTINUE"),
        "{s:?}"
    );
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("without its status event")),
        "{s:?}"
    );
    // The lost event turning up late, twice: nothing changes.
    let completions = w.count("CompleteLifecycleAction");
    for ev in [&lost[0], &lost[0]] {
        let s = r.handle(ev).await.expect("late");
        assert!(s.actions.iter().all(|a| !a.completed), "{s:?}");
    }
    let records = w.actions_of(&id, "launch");
    assert_eq!(records.len(), 1);
    assert_eq!(result_of(&records).as_deref(), Some("CONTINUE"));
    assert!(w.count("CompleteLifecycleAction") >= completions);
}
