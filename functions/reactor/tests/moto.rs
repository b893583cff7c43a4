//! The reactor against the project's AWS emulator (`tests/emulator`) on its control
//! path: real lifecycle hooks, Run Command of the project's SSM document to the proxy
//! fleet's instances (stand-in proxies, which answer at once and report each member's
//! outcome to the reactor's inbox with their own role session, as the agent service
//! does), the inbox (SQS) and the lifecycle ledger (DynamoDB), fault injection,
//! Route 53. Each test starts its own emulator on a free port.
//!
//! An invocation never waits for the hosts: a lifecycle event's invocation opens the
//! action in the ledger, sends the change and returns; the hosts' reports, batches of the
//! inbox ([`Fixture::settle`] plays Lambda's event source mapping for them), decide it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use harness::standin::Behaviour;
use harness::world::{Received, LAUNCH_HOOK, PROXY_GROUP};
use harness::GroupSpec;
use infra::OutcomeStatus;
use reactor::AwsReactor;
use serde_json::{json, Value};

fn result_of(records: &[Value]) -> Option<String> {
    records
        .iter()
        .find_map(|r| r["result"].as_str().map(str::to_string))
}

/// When an action was completed (ms since the epoch), from the emulator's record.
fn completed_ms(records: &[Value]) -> u64 {
    let s = records
        .iter()
        .find(|r| r["result"].is_string())
        .and_then(|r| r["time"].as_f64())
        .unwrap_or_else(|| panic!("no completion time in {records:?}"));
    (s * 1000.0) as u64
}

/// Settles the reactor's work (30 s at most) until `instance`'s `transition` action has
/// a result; what the reactor handled on the way.
async fn settled(w: &Fixture, r: &AwsReactor, instance: &str, transition: &str) -> Vec<Handled> {
    w.settle(r, Duration::from_secs(30), |w| {
        w.result(instance, transition).is_some()
    })
    .await
}

/// [`settled`], and the action's records, which say CONTINUE.
async fn continued(
    w: &Fixture,
    r: &AwsReactor,
    instance: &str,
    transition: &str,
) -> (Vec<Handled>, Vec<Value>) {
    let handled = settled(w, r, instance, transition).await;
    let records = w.actions_of(instance, transition);
    assert_eq!(
        result_of(&records).as_deref(),
        Some("CONTINUE"),
        "{}",
        describe(&handled)
    );
    (handled, records)
}

/// The invocation that decided `instance`'s `transition`.
fn deciding<'a>(handled: &'a [Handled], instance: &str, transition: &str) -> &'a Handled {
    handled
        .iter()
        .find(|h| {
            h.summary
                .decision(instance, transition)
                .is_some_and(|a| a.decision != "WAIT")
        })
        .unwrap_or_else(|| {
            panic!(
                "no invocation decided {transition} {instance}:\n{}",
                describe(handled)
            )
        })
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

/// `calls` as round trips: each is the calls sent before the first of them was answered
/// (the calls of one round go out at once), by action.
fn round_trips<'a>(calls: &[&'a Value]) -> Vec<BTreeMap<&'a str, usize>> {
    let mut left: Vec<&Value> = calls.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let first_end = left.iter().map(|c| at(c, "end")).fold(f64::MAX, f64::min);
        let (wave, rest): (Vec<&Value>, Vec<&Value>) =
            left.into_iter().partition(|c| at(c, "time") < first_end);
        out.push(wave.iter().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c["action"].as_str().unwrap_or_default())
                .or_default() += 1;
            m
        }));
        left = rest;
    }
    out
}

fn at(c: &Value, k: &str) -> f64 {
    c[k].as_f64().unwrap_or_else(|| panic!("no {k} in {c}"))
}

/// The changes sent by `handled`'s invocations (one command per
/// change and host here: small changes, a handful of hosts).
fn sent(handled: &[Handled]) -> usize {
    handled.iter().map(|h| h.summary.changes.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_continues_only_after_the_member_is_up_on_every_proxy() {
    let w = Fixture::new(2, Behaviour::default()).await;
    // The second proxy takes 1.5 s to see the member healthy.
    let slow = w.proxies[1].clone();
    w.standins
        .set(&slow, |b| b.rise = Duration::from_millis(1500));
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let (id, state) = w.members(GROUP).await[0].clone();
    assert_eq!(state, "Pending:Wait");

    let r = w.reactor(&[]);
    let t = Instant::now();
    let sent = r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the invocation waited for the hosts: {:?}",
        t.elapsed()
    );
    assert_eq!(sent.actions.len(), 1, "{sent:?}");
    assert_eq!(sent.actions[0].decision, "WAIT");
    assert_eq!(sent.changes.len(), 1);
    assert_eq!(sent.changes[0].hosts, 2);
    assert_eq!(result_of(&w.actions_of(&id, "launch")), None);

    // Completed CONTINUE, after the slow proxy reported it up.
    let (handled, records) = continued(&w, &r, &id, "launch").await;
    let completed = completed_ms(&records);
    let address = w.private_ip(&id).await;
    for p in &w.proxies {
        let changes = w.standins.changes(p);
        assert_eq!(changes.len(), 1, "one change per proxy");
        let added = &changes[0].pools[0].add[0];
        assert_eq!(added.id.as_str(), id);
        assert_eq!(added.address.to_string(), address);
        assert_eq!(added.port.get(), 8080);
        let up = report_sent_ms(&handled, p, &id, OutcomeStatus::Up)
            .unwrap_or_else(|| panic!("no UP report from {p}:\n{}", describe(&handled)));
        assert!(
            completed >= up,
            "CONTINUE at {completed} before host {p} reported it up at {up}"
        );
        assert_eq!(w.serving(p, "web"), std::slice::from_ref(&id));
    }
    // The fast proxy's report alone decided nothing: the slow one's did.
    let d = deciding(&handled, &id, "launch");
    assert!(
        d.reports()
            .iter()
            .any(|(h, r)| *h == slow && r.member.as_str() == id),
        "{}",
        describe(&handled)
    );
    let decision = d.summary.decision(&id, "launch").expect("decision");
    assert_eq!(decision.decision, "CONTINUE");
    assert_eq!(decision.reason, "UP on all 2 host(s)");
    assert!(decision.completed);
    assert!(handled.iter().all(|h| h.failures().is_empty()));
    assert_eq!(
        w.members(GROUP).await,
        [(id.clone(), "InService".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_event_reads_the_group_and_its_instance_in_one_round_trip() {
    let w = Fixture::new(1, Behaviour::default()).await;
    w.group(GROUP, true, false, &[]).await;
    // Two launches at once: the event names the first; the second waits too.
    w.scale(GROUP, 2).await;
    let members = w.members(GROUP).await;
    let (first, second) = (members[0].0.clone(), members[1].0.clone());
    let event = w.event(LAUNCH, &first);
    let r = w.reactor(&[]);
    // Real AWS answers in tens of milliseconds; make each read take 400 ms, so reading
    // one thing after the other shows.
    let slow = json!([
        {"service":"autoscaling","action":"DescribeAutoScalingGroups","delay_ms":400,"count":-1},
        {"service":"ec2","action":"DescribeInstances","delay_ms":400,"count":-1},
        {"service":"ec2","action":"DescribeTags","delay_ms":400,"count":-1},
        {"service":"dynamodb","action":"BatchGetItem","delay_ms":400,"count":-1}
    ]);
    w.fresh_calls_with_faults(&slow);
    let summary = r.handle(&event).await.expect("handled");
    w.clear_faults();

    // The reads: the event's own ledger item (is its member sent already?); the backend
    // group with the proxy group (the proxies are the proxy group's in-service
    // instances) in one DescribeAutoScalingGroups, with the event's instance; then, at
    // once, the other waiting member (one more call, only because there is one), the
    // proxies' tag (DescribeTags of the proxy group's ids: the first change of a warm
    // reactor, then once a minute) and the other member's ledger item.
    let groups = logged(&w, "DescribeAutoScalingGroups");
    let instances = logged(&w, "DescribeInstances");
    let tags = logged(&w, "DescribeTags");
    let items = logged(&w, "BatchGetItem");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(instances.len(), 2, "{instances:?}");
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(
        items.len(),
        2,
        "its own item, then the other member's: {items:?}"
    );
    let reads: Vec<&Value> = groups
        .iter()
        .chain(&instances)
        .chain(&tags)
        .chain(&items)
        .collect();
    let expected: [&[(&str, usize)]; 3] = [
        &[("BatchGetItem", 1)],
        &[("DescribeAutoScalingGroups", 1), ("DescribeInstances", 1)],
        &[
            ("BatchGetItem", 1),
            ("DescribeInstances", 1),
            ("DescribeTags", 1),
        ],
    ];
    let waves: Vec<BTreeMap<&str, usize>> = round_trips(&reads);
    assert_eq!(
        waves,
        expected
            .iter()
            .map(|w| w.iter().copied().collect::<BTreeMap<&str, usize>>())
            .collect::<Vec<_>>(),
        "the reads did not go out in three round trips: {reads:?}"
    );

    let change = &summary.changes[0].change;
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
    assert_eq!(w.result(&first, "launch").as_deref(), Some("CONTINUE"));
    assert_eq!(w.result(&second, "launch").as_deref(), Some("CONTINUE"));

    // Steady state (the only waiting member is the event's): the groups and the
    // event's instance, in one round trip; the proxies' tag is known.
    w.scale(GROUP, 3).await;
    let third = w
        .members(GROUP)
        .await
        .into_iter()
        .find(|(id, _)| *id != first && *id != second)
        .expect("third")
        .0;
    let event = w.event(LAUNCH, &third);
    w.emulator
        .control("POST", "/moto-ext/calls/reset", None)
        .expect("reset");
    let summary = r.handle(&event).await.expect("handled");
    assert_eq!(logged(&w, "DescribeAutoScalingGroups").len(), 1);
    assert_eq!(
        logged(&w, "DescribeInstances").len(),
        1,
        "the event's instance"
    );
    assert_eq!(
        logged(&w, "DescribeTags").len(),
        0,
        "the proxies' tag is known"
    );
    let change = &summary.changes[0].change;
    assert_eq!(change.pools[0].add.len(), 1);
    assert_eq!(change.pools[0].add[0].id.as_str(), third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_gets_healthy_is_abandoned() {
    let w = Fixture::new(2, Behaviour::default()).await;
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let (id, _) = w.members(GROUP).await[0].clone();
    // The first proxy never sees it healthy: it reports it failed after 1 s.
    let sick = w.proxies[0].clone();
    w.standins.set(&sick, |b| {
        b.failing.insert(id.clone());
        b.health_timeout = Duration::from_secs(1);
    });
    let r = w.reactor(&[]);
    r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    let handled = settled(&w, &r, &id, "launch").await;
    assert_eq!(
        w.result(&id, "launch").as_deref(),
        Some("ABANDON"),
        "{}",
        describe(&handled)
    );
    let d = deciding(&handled, &id, "launch");
    let decision = d.summary.decision(&id, "launch").expect("decision");
    assert_eq!(decision.decision, "ABANDON");
    assert!(
        decision.reason.contains(&format!("host {sick}"))
            && decision.reason.contains("did not pass health checks"),
        "{decision:?}"
    );
    // ABANDON terminates it; the group launches a replacement, held again.
    assert!(w.members(GROUP).await.iter().all(|(i, _)| *i != id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_completes_the_terminate_hook_only_after_the_drain() {
    let w = Fixture::new(2, Behaviour::default()).await;
    // Draining takes 1.5 s on the second proxy.
    let slow = w.proxies[1].clone();
    w.standins
        .set(&slow, |b| b.drain = Duration::from_millis(1500));
    w.group(GROUP, false, true, &[]).await;
    w.scale(GROUP, 2).await;
    let r = w.reactor(&[]);
    // Bring both members in (no launch hook: the schedule adds them), through the inbox
    // as the schedule's rule delivers it.
    w.to_inbox(&scheduled());
    w.settle(&r, Duration::from_secs(30), |w| {
        w.proxies.iter().all(|p| w.serving(p, "web").len() == 2)
    })
    .await;
    let members = w.members(GROUP).await;

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
    assert_eq!(summary.actions[0].decision, "WAIT", "{summary:?}");
    assert_eq!(result_of(&w.actions_of(&leaving, "terminate")), None);

    let (handled, records) = continued(&w, &r, &leaving, "terminate").await;
    let completed = completed_ms(&records);
    for p in &w.proxies {
        let changes = w.standins.changes(p);
        let last = changes.last().expect("changes");
        assert_eq!(
            last.pools[0].remove,
            [infra::MemberId::new(leaving.as_str()).unwrap()]
        );
        let drained = report_sent_ms(&handled, p, &leaving, OutcomeStatus::Drained)
            .unwrap_or_else(|| panic!("no DRAINED report from {p}:\n{}", describe(&handled)));
        assert!(completed >= drained, "CONTINUE before the drain on {p}");
        assert_eq!(w.serving(p, "web"), [members[1].0.clone()]);
    }
    let d = deciding(&handled, &leaving, "terminate");
    assert_eq!(
        d.summary
            .decision(&leaving, "terminate")
            .map(|a| a.reason.as_str()),
        Some("drained on all 2 host(s)")
    );
    assert!(w.members(GROUP).await.iter().all(|(i, _)| *i != leaving));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_reordered_and_lost_events_converge() {
    let w = Fixture::new(1, Behaviour::default()).await;
    let proxy = w.proxies[0].clone();
    w.group(GROUP, true, true, &[]).await;
    let r = w.reactor(&[]);
    let mut summaries = Vec::new();

    // A launches; before its launch event is handled it is terminated (terminate before
    // launch in delivery order).
    w.scale(GROUP, 1).await;
    let a = w.members(GROUP).await[0].0.clone();
    let launch_a = w.event(LAUNCH, &a);
    w.terminate(&a, true).await.expect("terminate");
    let terminate_a = w.event(TERMINATE, &a);
    summaries.push(r.handle(&terminate_a).await.expect("terminate first"));
    let handled = settled(&w, &r, &a, "terminate").await;
    assert_eq!(
        w.result(&a, "terminate").as_deref(),
        Some("CONTINUE"),
        "{}",
        describe(&handled)
    );
    // The late launch event and a duplicate of the terminate one change nothing.
    for late in [&launch_a, &terminate_a] {
        let s = r.handle(late).await.expect("late");
        assert!(s.actions.is_empty(), "{s:?}");
        summaries.push(s);
    }
    let expected: usize = summaries.iter().map(|s| s.changes.len()).sum::<usize>() + sent(&handled);
    w.settle(&r, Duration::from_secs(30), |w| {
        w.standins.changes(&proxy).len() >= expected
    })
    .await;
    for c in w.standins.changes(&proxy) {
        for p in &c.pools {
            assert!(
                p.add.iter().all(|m| m.id.as_str() != a),
                "A was added by generation {}",
                c.generation
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
    w.to_inbox(&scheduled());
    let handled = settled(&w, &r, &b, "launch").await;
    assert_eq!(
        w.result(&b, "launch").as_deref(),
        Some("CONTINUE"),
        "{}",
        describe(&handled)
    );
    let schedule = handled
        .iter()
        .find(|h| h.summary.inputs.contains_key("reconcile"))
        .expect("the schedule was handled");
    assert_eq!(
        schedule
            .summary
            .decision(&b, "launch")
            .map(|a| a.decision.as_str()),
        Some("WAIT"),
        "the schedule opened B's action: {:?}",
        schedule.summary
    );
    // B's event turning up late, twice: nothing changes.
    let launch_b = w.event(LAUNCH, &b);
    let completions = w.count("CompleteLifecycleAction");
    let before = w.standins.changes(&proxy).len();
    let mut more = 0;
    for _ in 0..2 {
        let s = r.handle(&launch_b).await.expect("late again");
        assert!(s.actions.is_empty(), "{s:?}");
        more += s.changes.len();
    }
    assert_eq!(w.count("CompleteLifecycleAction"), completions);
    assert_eq!(w.actions_of(&b, "launch").len(), 1);
    w.settle(&r, Duration::from_secs(30), |w| {
        w.standins.changes(&proxy).len() >= before + more
    })
    .await;
    assert_eq!(w.serving(&proxy, "web"), std::slice::from_ref(&b));
    assert_eq!(
        w.members(GROUP).await,
        [(b.clone(), "InService".to_string())]
    );
    // Every change had its own generation: commands to one host may run in any order
    // (Run Command does not queue them), and the agent orders them by generation.
    let gens: Vec<u64> = w
        .standins
        .changes(&proxy)
        .iter()
        .map(|c| c.generation)
        .collect();
    let unique: BTreeSet<u64> = gens.iter().copied().collect();
    assert_eq!(unique.len(), gens.len(), "{gens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_about_one_instance_in_one_batch_are_one_change() {
    // The inbox delivers at least once: one batch may hold an event twice, or two events
    // about one instance (a late launch and its terminate).
    let w = Fixture::new(1, Behaviour::default()).await;
    w.group(GROUP, true, true, &[]).await;
    w.scale(GROUP, 1).await;
    let a = w.members(GROUP).await[0].0.clone();
    let launch = w.event(LAUNCH, &a);
    let r = w.reactor(&[]);
    let twice = w
        .invoke_batch(
            &r,
            vec![event_record("e1", &launch), event_record("e2", &launch)],
        )
        .await;
    assert!(twice.failures().is_empty(), "{:?}", twice.summary);
    assert_eq!(twice.summary.changes.len(), 1, "{:?}", twice.summary);
    assert_eq!(twice.summary.actions.len(), 1, "{:?}", twice.summary);
    settled(&w, &r, &a, "launch").await;
    assert_eq!(w.result(&a, "launch").as_deref(), Some("CONTINUE"));

    w.terminate(&a, true).await.expect("terminate");
    let terminate = w.event(TERMINATE, &a);
    let both = w
        .invoke_batch(
            &r,
            vec![event_record("late", &launch), event_record("t", &terminate)],
        )
        .await;
    assert!(both.failures().is_empty(), "{:?}", both.summary);
    assert_eq!(both.summary.changes.len(), 1, "{:?}", both.summary);
    let removed = &both.summary.changes[0].change.pools[0];
    assert!(removed.add.is_empty(), "{removed:?}");
    assert_eq!(removed.remove.len(), 1, "{removed:?}");
    assert_eq!(
        both.summary
            .decision(&a, "terminate")
            .map(|d| d.decision.as_str()),
        Some("WAIT")
    );
    settled(&w, &r, &a, "terminate").await;
    assert_eq!(w.result(&a, "terminate").as_deref(), Some("CONTINUE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_missing_instance_and_malformed_events_are_acknowledged() {
    let w = Fixture::new(1, Behaviour::default()).await;
    w.group(GROUP, true, false, &[]).await;
    w.group("other-asg", true, false, &[]).await;
    w.scale("other-asg", 1).await;
    let other = w.members("other-asg").await[0].0.clone();
    let r = w.reactor(&[]);

    let unmanaged = w.event(LAUNCH, &other);
    let s = r.handle(&unmanaged).await.expect("unmanaged");
    assert!(s.ignored.iter().any(|i| i.contains("not managed")), "{s:?}");
    let mut gone = w.event(LAUNCH, &other);
    gone["detail"]["AutoScalingGroupName"] = json!("no-such-asg");
    let s = r.handle(&gone).await.expect("no such group");
    assert!(s.ignored.iter().any(|i| i.contains("not managed")), "{s:?}");
    let bad = [
        json!("hello"),
        json!({"detail-type": LAUNCH, "source": "aws.autoscaling", "detail": {}}),
        json!(null),
    ];
    for b in &bad {
        let s = r.handle(b).await.expect("malformed");
        assert!(!s.ignored.is_empty(), "{s:?}");
    }

    // The same through the inbox, with a body that is not JSON and an event sent with
    // a proxy's credentials: all acknowledged, none given back to be retried.
    w.to_inbox(&unmanaged);
    w.to_inbox(&gone);
    for b in &bad {
        w.to_inbox(b);
    }
    w.to_inbox_raw("hello, not JSON");
    let session = w
        .proxy_session(&w.path, &w.proxies[0])
        .expect("a proxy's session");
    w.emulator
        .aws_json_as(
            &session.access_key,
            "sqs",
            "AmazonSQS.SendMessage",
            &json!({"QueueUrl": w.path.inbox, "MessageBody": unmanaged.to_string()}),
            Duration::from_secs(30),
        )
        .expect("a proxy sends an event");
    let handled = w.settle_records(&r, 7, Duration::from_secs(30)).await;
    for h in &handled {
        assert!(h.failures().is_empty(), "{}", describe(&handled));
        assert!(h.summary.changes.is_empty() && h.summary.actions.is_empty());
    }
    let ignored: usize = handled.iter().map(|h| h.summary.ignored.len()).sum();
    assert_eq!(ignored, 7, "{}", describe(&handled));
    let forged: usize = handled.iter().map(|h| h.summary.reports.forged).sum();
    assert_eq!(forged, 1, "{}", describe(&handled));
    assert!(w.receive().is_empty(), "every record was deleted");
    assert_eq!(w.count("SendCommand"), 0, "ignored events send nothing");
    assert_eq!(w.result(&other, "launch"), None, "not ours to complete");

    // A terminate event for an instance the group never had (or no longer has).
    let mut missing = w.event(LAUNCH, &other);
    missing["detail-type"] = json!(TERMINATE);
    missing["detail"]["AutoScalingGroupName"] = json!(GROUP);
    missing["detail"]["EC2InstanceId"] = json!("i-0000000000000dead");
    missing["detail"]["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_TERMINATING");
    let s = r.handle(&missing).await.expect("missing instance");
    let change = &s.changes.first().expect("a removal is sent").change;
    assert_eq!(change.pools[0].remove[0].as_str(), "i-0000000000000dead");
    assert!(
        s.notes.iter().any(|n| n.contains("no longer in the group")),
        "{:?}",
        s.notes
    );
    assert!(s.actions.is_empty(), "{s:?}");
    assert_eq!(w.count("CompleteLifecycleAction"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_retried_and_a_final_failure_names_the_api_and_group() {
    let w = Fixture::new(1, Behaviour::default()).await;
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let first = w.members(GROUP).await[0].0.clone();
    let event = w.event(LAUNCH, &first);
    let r = w.reactor(&[]);
    let faults = json!([
        {"service":"autoscaling","action":"DescribeAutoScalingGroups","code":"Throttling","status":400,"count":2},
        {"service":"ec2","action":"DescribeInstances","code":"RequestLimitExceeded","status":503,"count":1},
        {"service":"dynamodb","action":"BatchGetItem","code":"ThrottlingException","status":400,"count":1},
        {"service":"dynamodb","action":"PutItem","code":"ProvisionedThroughputExceededException","status":400,"count":1},
        {"service":"ssm","action":"SendCommand","code":"InternalFailure","status":500,"count":1},
        {"service":"autoscaling","action":"CompleteLifecycleAction","code":"Throttling","status":400,"count":2}
    ]);
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&faults))
        .expect("faults");
    let s = r.handle(&event).await.expect("retried through");
    let handled = settled(&w, &r, &first, "launch").await;
    assert_eq!(
        w.result(&first, "launch").as_deref(),
        Some("CONTINUE"),
        "{s:?}\n{}",
        describe(&handled)
    );
    let calls = w.emulator.control("GET", "/moto-ext/calls", None).unwrap();
    let faulted: Vec<&Value> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("fault").is_some())
        .collect();
    assert_eq!(
        faulted.len(),
        8,
        "every injected fault was hit, then retried: {faulted:?}"
    );

    // A fault that never clears: the hosts' report is given back to the queue, and the
    // error names the API and the group.
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
    let s = r.handle(&w.event(LAUNCH, &second)).await.expect("sent");
    assert_eq!(s.actions[0].decision, "WAIT");
    // The report's batch is where the completion fails for good.
    let mut failing = |_: &Fixture, h: &[Handled]| h.iter().any(|x| !x.failures().is_empty());
    let handled = w
        .settle_with(&r, Duration::from_secs(90), &mut failing, |_| None)
        .await;
    let failed = handled
        .iter()
        .find(|h| !h.failures().is_empty())
        .expect("a failure");
    let report_ids: Vec<String> = failed
        .records
        .iter()
        .filter(|m| infra::HostReport::from_json(&m.body).is_ok())
        .map(|m| m.id.clone())
        .collect();
    assert!(!report_ids.is_empty(), "{}", describe(&handled));
    assert_eq!(
        failed.failures(),
        report_ids,
        "the report's records are retried"
    );
    assert_eq!(failed.summary.failed, report_ids);
    assert_eq!(w.result(&second, "launch"), None);
    // The schedule, handed the same action, says why.
    let e = r
        .handle(&scheduled())
        .await
        .expect_err("the completion fails for good")
        .to_string();
    assert!(
        e.contains("CompleteLifecycleAction") && e.contains(GROUP),
        "{e}"
    );
    // Once the API is back, the retried report completes it.
    w.clear_faults();
    let handled = settled(&w, &r, &second, "launch").await;
    assert_eq!(
        w.result(&second, "launch").as_deref(),
        Some("CONTINUE"),
        "{}",
        describe(&handled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_run_command_fails_is_dropped_from_the_quorum_after_the_report_timeout() {
    let w = Fixture::new(2, Behaviour::default()).await;
    let (good, broken) = (w.proxies[0].clone(), w.proxies[1].clone());
    // Run Command fails on the second proxy: the change never reaches its agent, which
    // so never reports.
    w.program_hosts(&json!({broken.clone(): {"status": "Failed", "stdout": "", "stderr": "agent: the service is not running", "code": 1, "delay_ms": 100}}))
        .expect("a failing host");
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[("HOST_REPORT_TIMEOUT_S", "1")]);
    let sent = r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    assert_eq!(sent.actions[0].decision, "WAIT");
    assert_eq!(sent.changes[0].hosts, 2);
    let (handled, records) = continued(&w, &r, &id, "launch").await;
    // Not before the timeout: the good host's report alone decided nothing, the
    // reminder the reactor set itself brought it back a second later.
    let up =
        report_sent_ms(&handled, &good, &id, OutcomeStatus::Up).expect("the good host's report");
    assert!(completed_ms(&records) >= up + 1_000);
    let d = deciding(&handled, &id, "launch");
    assert!(d.summary.inputs.contains_key("recheck"), "{:?}", d.summary);
    let decision = d.summary.decision(&id, "launch").expect("decision");
    assert_eq!(
        decision.reason,
        "UP on all 1 host(s) (1 dropped from the quorum)"
    );
    let dropped = &d.summary.reports.hosts_dropped;
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(
        dropped[0].starts_with(&format!("{broken} launch {id} "))
            && dropped[0].contains("HOST_REPORT_TIMEOUT_S"),
        "{dropped:?}"
    );
    // The broken host never got the change, and Run Command says so.
    assert!(w.standins.changes(&broken).is_empty());
    let ssm = aws_sdk_ssm::Client::new(&w.sdk);
    let invocation = ssm
        .get_command_invocation()
        .command_id(&sent.changes[0].commands[0])
        .instance_id(&broken)
        .send()
        .await
        .expect("GetCommandInvocation");
    assert_eq!(
        invocation.status().map(|s| s.as_str()),
        Some("Failed"),
        "{invocation:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_records_follow_the_proxy_fleet() {
    let w = Fixture::new(3, Behaviour::default()).await;
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
    let r = w.reactor(&[
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
    let members = w.members(PROXY_GROUP).await;
    assert_eq!(members.len(), 3);
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
    w.scale(PROXY_GROUP, 2).await;
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
    // A 7 s heartbeat timeout, and a proxy that needs 9 s: without heartbeats the hook
    // would time out (default ABANDON) before the member is up. The schedule, every
    // 0.5 s here, heartbeats the actions open for more than 5 s.
    let w = Fixture::new(1, behaviour(|b| b.rise = Duration::from_secs(9))).await;
    w.group(GROUP, false, false, &[]).await;
    w.hook(GROUP, LAUNCH_HOOK, "autoscaling:EC2_INSTANCE_LAUNCHING", 7)
        .await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[]);
    r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    let mut next = Instant::now();
    let handled = w
        .settle_with(
            &r,
            Duration::from_secs(40),
            &mut |w: &Fixture, _: &[Handled]| w.result(&id, "launch").is_some(),
            |now| {
                (now >= next).then(|| {
                    next = now + Duration::from_millis(500);
                    scheduled()
                })
            },
        )
        .await;
    let records = w.actions_of(&id, "launch");
    assert_eq!(
        result_of(&records).as_deref(),
        Some("CONTINUE"),
        "{records:?}\n{}",
        describe(&handled)
    );
    assert_eq!(records[0]["by"], json!("api"));
    assert!(w.count("RecordLifecycleActionHeartbeat") >= 2);
    assert!(
        handled.iter().any(|h| !h.summary.heartbeats.is_empty()),
        "{}",
        describe(&handled)
    );
    assert!(
        handled
            .iter()
            .filter_map(|h| h.summary.pending)
            .any(|p| p.actions == 1 && p.max_age_s >= 5),
        "the schedule counts the open action: {}",
        describe(&handled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_report_is_repaired_by_the_schedule_and_duplicates_change_nothing() {
    // Each proxy's reports of its first change are lost on the way.
    let w = Fixture::new(2, behaviour(|b| b.lose = 1)).await;
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let r = w.reactor(&[]);
    let first = r.handle(&w.event(LAUNCH, &id)).await.expect("handled");
    assert_eq!(first.actions[0].decision, "WAIT");
    // Both proxies applied the change and reported it: lost.
    let lost = harness::wait_for(Duration::from_secs(10), || {
        w.proxies
            .iter()
            .all(|p| w.standins.lost(p) == 1)
            .then_some(())
    });
    assert!(lost.is_some(), "the reports were never sent");
    assert!(w.receive().is_empty(), "a lost report reached the inbox");
    assert_eq!(w.result(&id, "launch"), None);
    // The schedule sends every proxy the group's membership again; they report it.
    let s = r.handle(&scheduled()).await.expect("reconcile");
    assert_eq!(s.pending.map(|p| p.actions), Some(1), "{s:?}");
    assert_eq!(s.changes.len(), 1, "{s:?}");
    let generation = s.changes[0].generation;
    let handled = settled(&w, &r, &id, "launch").await;
    let records = w.actions_of(&id, "launch");
    assert_eq!(
        result_of(&records).as_deref(),
        Some("CONTINUE"),
        "{s:?}\n{}",
        describe(&handled)
    );
    let d = deciding(&handled, &id, "launch");
    assert_eq!(
        d.summary.decision(&id, "launch").map(|a| a.reason.as_str()),
        Some("UP on all 2 host(s)")
    );
    assert!(reports(&handled)
        .iter()
        .all(|(_, r)| r.generation == generation));

    // The reports turning up again, twice: nothing changes.
    let again: Vec<Received> = handled.iter().flat_map(|h| h.records.clone()).collect();
    let completions = w.count("CompleteLifecycleAction");
    for _ in 0..2 {
        let h = w.invoke_batch(&r, again.clone()).await;
        assert!(h.failures().is_empty());
        assert_eq!(h.summary.reports.applied, 0, "{:?}", h.summary);
        assert!(h.summary.actions.is_empty(), "{:?}", h.summary);
    }
    assert_eq!(w.count("CompleteLifecycleAction"), completions);
    let records = w.actions_of(&id, "launch");
    assert_eq!(records.len(), 1);
    assert_eq!(result_of(&records).as_deref(), Some("CONTINUE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_of_1000_members_on_2_hosts_is_decided() {
    const N: usize = 1000;
    let t0 = Instant::now();
    let w = Fixture::new(2, Behaviour::default()).await;
    let members = members_waiting_in_pending(&w, N).await;
    let created = t0.elapsed();

    let r = w.reactor(&[]);
    let t1 = Instant::now();
    let s = r.handle(&scheduled()).await.expect("reconcile");
    let reconciled = t1.elapsed();
    assert_eq!(s.actions.len(), N, "every action opened");
    assert!(s.actions.iter().all(|a| a.decision == "WAIT"));
    assert_eq!(s.changes.len(), 1);
    let commands = s.changes[0].commands.clone();
    assert!(
        commands.len() >= 2,
        "a change of {N} members is split over several commands: {commands:?}"
    );
    let generation = s.changes[0].generation;

    let t2 = Instant::now();
    let continued = |w: &Fixture| {
        w.lifecycle()
            .iter()
            .filter(|a| a["group"] == json!(GROUP) && a["result"] == json!("CONTINUE"))
            .count()
    };
    let handled = w
        .settle(&r, Duration::from_secs(120), |w| continued(w) == N)
        .await;
    let decided = t2.elapsed();

    every_action_continued_by_the_reactor(&w, &handled, N);
    let ids: BTreeSet<String> = members.iter().map(|(i, _)| i.clone()).collect();
    every_proxy_got_every_member_once(&w, &commands, generation, &ids).await;
    let (report_messages, largest) = every_proxy_reported_every_member_up(&w, &handled, &ids);
    eprintln!(
        "{N} members, the emulator's busiest calls: {:?}",
        busiest_calls(&w)
    );
    eprintln!(
        "{N} members: created in {created:?}, reconciled in {reconciled:?} ({} commands), decided in {decided:?} \
         ({report_messages} report messages, largest {largest} bytes, {} invocations); {:?} in all",
        commands.len(),
        handled.len(),
        t0.elapsed()
    );
}

/// A group of `n` members in a /20 of their own, every instance waiting in
/// Pending:Wait; their events are never delivered. Returns the members.
async fn members_waiting_in_pending(w: &Fixture, n: usize) -> Vec<(String, String)> {
    // 1,000 addresses: a /20 of their own.
    let subnet = w.add_subnet("127.0.16.0/20").await.expect("subnet");
    let mut spec = GroupSpec::new(GROUP, &subnet);
    spec.max = n as i32;
    spec.launch_hook = Some(600);
    w.world.group(&spec).await.expect("group");
    // Every instance waits in Pending:Wait; their events are never delivered.
    w.scale(GROUP, n as i32).await;
    let members = w.members(GROUP).await;
    assert_eq!(members.len(), n);
    assert!(members.iter().all(|(_, s)| s == "Pending:Wait"));
    members
}

/// Every one of the `n` actions continued by the reactor, none abandoned or timed out,
/// and no invocation failed.
fn every_action_continued_by_the_reactor(w: &Fixture, handled: &[Handled], n: usize) {
    let actions: Vec<Value> = w
        .lifecycle()
        .into_iter()
        .filter(|a| a["group"] == json!(GROUP))
        .collect();
    assert_eq!(actions.len(), n);
    assert!(
        actions
            .iter()
            .all(|a| a["result"] == json!("CONTINUE") && a["by"] == json!("api")),
        "{:?}",
        actions.iter().find(|a| a["result"] != json!("CONTINUE"))
    );
    assert!(
        handled.iter().all(|h| h.failures().is_empty()),
        "{}",
        describe(handled)
    );
}

/// Each proxy got the parts of one generation, every member once, and every command
/// succeeded on both: none failed for its size.
async fn every_proxy_got_every_member_once(
    w: &Fixture,
    commands: &[String],
    generation: u64,
    ids: &BTreeSet<String>,
) {
    for p in &w.proxies {
        let changes = w.standins.changes(p);
        assert_eq!(changes.len(), commands.len(), "one part per command");
        assert!(changes.iter().all(|c| c.generation == generation));
        let added: Vec<String> = changes
            .iter()
            .flat_map(|c| {
                c.pools
                    .iter()
                    .flat_map(|p| p.add.iter().map(|m| m.id.to_string()))
            })
            .collect();
        assert_eq!(added.len(), ids.len());
        assert_eq!(added.into_iter().collect::<BTreeSet<_>>(), *ids);
    }
    let ssm = aws_sdk_ssm::Client::new(&w.sdk);
    for c in commands {
        for p in &w.proxies {
            let i = ssm
                .get_command_invocation()
                .command_id(c)
                .instance_id(p)
                .send()
                .await
                .expect("GetCommandInvocation");
            assert_eq!(i.status().map(|s| s.as_str()), Some("Success"), "{i:?}");
        }
    }
}

/// Each proxy reported every member up, in messages under SQS's 256 KiB. Returns how
/// many report messages there were and the largest's size.
fn every_proxy_reported_every_member_up(
    w: &Fixture,
    handled: &[Handled],
    ids: &BTreeSet<String>,
) -> (usize, usize) {
    let report_records: Vec<&Received> = handled
        .iter()
        .flat_map(|h| &h.records)
        .filter(|m| infra::HostReport::from_json(&m.body).is_ok())
        .collect();
    let largest = report_records
        .iter()
        .map(|m| m.body.len())
        .max()
        .unwrap_or(0);
    assert!(largest <= 262_144, "a report of {largest} bytes");
    let mut up: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (host, r) in reports(handled) {
        if r.status == OutcomeStatus::Up {
            up.entry(host).or_default().insert(r.member.to_string());
        }
    }
    for p in &w.proxies {
        assert_eq!(up.get(p), Some(ids), "{p}'s reports");
    }
    (report_records.len(), largest)
}

/// Where the time went: the emulator's calls by action (count, seconds served), the
/// eight busiest.
fn busiest_calls(w: &Fixture) -> Vec<(String, (usize, f64))> {
    let calls = w
        .emulator
        .control("GET", "/moto-ext/calls", None)
        .expect("calls");
    let mut by_action: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for c in calls.as_array().map(Vec::as_slice).unwrap_or_default() {
        let e = by_action
            .entry(c["action"].as_str().unwrap_or_default().to_string())
            .or_default();
        e.0 += 1;
        e.1 += c["end"].as_f64().unwrap_or(0.0) - c["time"].as_f64().unwrap_or(0.0);
    }
    let mut busiest: Vec<(String, (usize, f64))> = by_action.into_iter().collect();
    busiest.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    busiest.truncate(8);
    busiest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_of_one_change_are_sent_side_by_side() {
    use reactor::dispatch::{Dispatcher, SsmDispatcher, SsmSettings};
    let w = Fixture::new(1, Behaviour::default()).await;
    // 6,000 members leaving: more than one command's 60 KB of parameters, so the change
    // goes out as several commands to the one proxy.
    let remove: Vec<infra::MemberId> = (0..6_000)
        .map(|i| infra::MemberId::new(format!("i-{i:017x}")).expect("member id"))
        .collect();
    let change = infra::Change::new(
        infra::now_ms(),
        vec![infra::PoolChange {
            pool: infra::PoolName::new("web").expect("pool"),
            add: Vec::new(),
            remove,
            drain_by_ms: BTreeMap::new(),
        }],
    );
    let dispatcher = SsmDispatcher::new(
        SsmSettings {
            document: harness::world::DOCUMENT.to_string(),
            tag_key: harness::world::PROXY_TAG.0.to_string(),
            tag_value: harness::world::PROXY_TAG.1.to_string(),
            proxy_group: infra::GroupName::new(PROXY_GROUP).unwrap(),
        },
        &w.sdk,
    );
    let hosts = dispatcher.hosts().await.expect("the proxies");
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    // Real SSM answers SendCommand in about 100 ms; make each take 400 ms, so sending
    // one after the other shows.
    let slow = json!([{"service":"ssm","action":"SendCommand","delay_ms":400,"count":-1}]);
    w.fresh_calls_with_faults(&slow);
    let sent = dispatcher.send(&hosts, &change, "a large scale-in").await;
    w.clear_faults();
    let sent = sent.expect("sent");
    let calls = logged(&w, "SendCommand");
    assert!(sent.len() >= 2, "several commands: {sent:?}");
    assert_eq!(calls.len(), sent.len(), "{calls:?}");
    // Every command was asked for before the first one was answered.
    let first_end = calls.iter().map(|c| at(c, "end")).fold(f64::MAX, f64::min);
    let late: Vec<&Value> = calls
        .iter()
        .filter(|c| at(c, "time") >= first_end)
        .collect();
    assert!(
        late.is_empty(),
        "commands sent one after the other: {late:?} of {calls:?}"
    );
}

/// A ledger transaction is all or nothing in DynamoDB: when one item's condition fails
/// (another invocation wrote it since it was read), none of its items is written and all
/// of them come back, so the next round reads them again and writes them in one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_transaction_with_one_stale_item_writes_none_and_the_next_round_writes_all() {
    use reactor::ledger::{self, ActionKey, Item, Ledger, Opening, Timing};
    use reactor::lifecycle::Transition;

    let w = Fixture::new(1, Behaviour::default()).await;
    let r = w.reactor(&[]);
    let table = r.ledger();
    let key = |i: &str| ActionKey {
        instance: infra::MemberId::new(i).unwrap(),
        transition: Transition::Launch,
    };
    let timing = Timing {
        health_ms: 60_000,
        drain_ms: 60_000,
        host_report_ms: 10_000,
    };
    let keys: Vec<ActionKey> = ["i-1", "i-2", "i-3"].into_iter().map(key).collect();
    let opened: Vec<Item> = keys
        .iter()
        .map(|k| {
            let opening = Opening {
                key: k.clone(),
                group: infra::GroupName::new("web").unwrap(),
                hooks: vec![LAUNCH_HOOK.to_string()],
                token: None,
                pools: vec![infra::PoolName::new("web").unwrap()],
                started_ms: infra::now_ms(),
                generation: 1,
                hosts: vec![infra::HostId::new("i-p0").unwrap()],
            };
            Item::open(opening, timing)
        })
        .collect();
    assert!(table.put(&opened).await.unwrap().is_empty());
    let read = table.get(&keys).await.unwrap();
    assert!(read.iter().all(|i| i.version == 1), "{read:?}");
    // Another writer changes i-2 after this one read it.
    let mut other = read.iter().find(|i| i.key() == keys[1]).unwrap().clone();
    other.token = Some("other".into());
    assert!(table.put(&[other]).await.unwrap().is_empty());
    let mut stale = read.clone();
    for i in &mut stale {
        i.token = Some("mine".into());
    }
    let back = table.put(&stale).await.unwrap();
    let mut back_keys: Vec<ActionKey> = back.iter().map(|u| u.key.clone()).collect();
    back_keys.sort();
    assert_eq!(back_keys, keys, "every item of the transaction comes back");
    // The one whose condition failed comes back as stored (the other writer's); the
    // others are as they were read.
    for u in &back {
        match &u.stored {
            ledger::Stored::Returned(i) => assert_eq!(
                (&u.key, i.version, i.token.as_deref()),
                (&keys[1], 2, Some("other"))
            ),
            other => assert_eq!((other, u.key != keys[1]), (&ledger::Stored::AsRead, true)),
        }
    }
    let now = table.get(&keys).await.unwrap();
    for i in &now {
        let expected = if i.key() == keys[1] { 2 } else { 1 };
        assert_eq!(i.version, expected, "nothing else was written: {i:?}");
    }
    // update() reads them again and writes all three in one transaction.
    w.emulator
        .control("POST", "/moto-ext/calls/reset", None)
        .unwrap();
    let after = ledger::update(table, &keys, |_, item| {
        let mut item = item?;
        item.hooks.push("seen".into());
        Some(item)
    })
    .await
    .unwrap();
    assert_eq!(after.len(), 3);
    assert_eq!(w.count("TransactWriteItems"), 1);
    assert!(after.iter().all(|i| i.hooks.contains(&"seen".to_string())));
}
