//! The real reactor binary through a local Lambda Runtime API: the `lambda_runtime`
//! entry point, state built at cold start from the control path's environment, bare
//! events and batches of the inbox (SQS events) in, answers out (a batch's names the
//! records to retry), JSON logs, Embedded Metric Format lines.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harness::runtime_api::{lambda_env, RuntimeApi, RuntimeLog};
use harness::standin::Behaviour;
use harness::world::Received;
use serde_json::{json, Value};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for the `n`th answer, off the runtime's threads.
async fn answers(api: RuntimeApi, n: usize) -> (RuntimeLog, RuntimeApi) {
    tokio::task::spawn_blocking(move || {
        let l = api.wait_for(n, Duration::from_secs(90));
        (l, api)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_events_and_inbox_batches_from_the_runtime_api() {
    let w = Fixture::new(2, Behaviour::default()).await;
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let launch = w.event(LAUNCH, &id);
    // 1: a bare event that is none; 2: a batch of the inbox with the launch event in a
    // record (as the lifecycle rule delivers it) beside one that is not JSON.
    let batch = sqs_event(
        &w.path.inbox,
        &[
            event_record("m-launch", &launch),
            Received {
                body: "not json".into(),
                ..event_record("m-junk", &json!(null))
            },
        ],
    );
    let api =
        RuntimeApi::start(vec![json!({"not": "an event"}), batch], 60_000).expect("runtime api");
    let reactor = Reactor::start(&w, &api);

    let (log, api) = answers(api, 2).await;
    first_two_answers(&log);
    assert_eq!(w.result(&id, "launch"), None, "sent, waiting for the hosts");

    // 3: the hosts' reports, as the event source mapping hands them over.
    let records = reports_of_both_hosts(&w, &id);
    api.push(sqs_event(&w.path.inbox, &records));
    let (log, api) = answers(api, 3).await;
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    assert_eq!(log.responses.len(), 3, "{log:?}");
    assert_eq!(log.responses[2].1, json!({"batchItemFailures": []}));
    let handles: Vec<String> = records.iter().map(|m| m.handle.clone()).collect();
    w.delete(&w.path.inbox, &handles).expect("delete");
    assert_eq!(w.result(&id, "launch").as_deref(), Some("CONTINUE"));
    assert_eq!(
        w.members(GROUP).await,
        [(id.clone(), "InService".to_string())]
    );
    for p in &w.proxies {
        assert_eq!(w.serving(p, "web"), std::slice::from_ref(&id));
    }

    // 4: a batch whose event can not be handled: its record, and only it, is retried.
    let _api = a_failing_batch_gives_back_its_record(&w, api, &launch).await;

    reactor.logs_are_json_lines_with_the_spans_fields(&id);
    reactor.metrics_are_emf_lines();
}

/// The reactor binary under the runtime API at `api`, its logs (stderr) and its
/// Embedded Metric Format lines (stdout) in files of the fixture's directory; killed
/// on drop.
struct Reactor {
    log_path: std::path::PathBuf,
    metrics_path: std::path::PathBuf,
    _child: Killed,
}

impl Reactor {
    fn start(w: &Fixture, api: &RuntimeApi) -> Self {
        let log_path = w.dir.path().join("reactor.log");
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let metrics_path = w.dir.path().join("reactor.stdout");
        let metrics_file = std::fs::File::create(&metrics_path).expect("stdout file");
        let child = Command::new(env!("CARGO_BIN_EXE_reactor"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(lambda_env(api.addr))
            .envs(w.emulator.aws_env())
            .envs(w.env(&[]).vars())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(metrics_file)
            .stderr(log_file)
            .spawn()
            .expect("reactor binary");
        Self {
            log_path,
            metrics_path,
            _child: Killed(child),
        }
    }

    /// Logs are JSON lines with the span's fields: the decision on member `id`, and
    /// the failed input.
    fn logs_are_json_lines_with_the_spans_fields(&self, id: &str) {
        let text = std::fs::read_to_string(&self.log_path).expect("log");
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        let decision = lines
            .iter()
            .find(|v| {
                v["fields"]["message"] == json!("lifecycle decision")
                    && v["fields"]["outcome"] == json!("CONTINUE")
            })
            .unwrap_or_else(|| panic!("no JSON decision line in:\n{text}"));
        assert_eq!(decision["fields"]["pool"], json!("web"));
        assert_eq!(decision["fields"]["instance"], json!(id));
        assert!(
            decision["fields"]["generation"].as_u64().is_some(),
            "{decision}"
        );
        assert_eq!(decision["span"]["name"], json!("batch"), "{decision}");
        let failure = lines
            .iter()
            .find(|v| v["fields"]["message"] == json!("input failed; its records are retried"))
            .unwrap_or_else(|| panic!("no failure line in:\n{text}"));
        let error = failure["fields"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("DescribeAutoScalingGroups") && error.contains(GROUP),
            "{failure}"
        );
    }

    /// Metrics: Embedded Metric Format lines on stdout, one invocation's worth each.
    fn metrics_are_emf_lines(&self) {
        let text = std::fs::read_to_string(&self.metrics_path).expect("stdout");
        let emf: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let ours = |v: &&Value| {
            v["_aws"]["CloudWatchMetrics"][0]["Namespace"] == json!("HaproxyAsg")
                && v["Function"] == json!("reactor")
        };
        let metric = |name: &str, dim: &str, value: &str| {
            emf.iter()
                .filter(ours)
                .filter(|v| v[dim] == json!(value) && v[name].is_number())
                .count()
        };
        let sum = |name: &str| -> f64 {
            emf.iter()
                .filter(ours)
                .filter_map(|v| v[name].as_f64())
                .sum()
        };
        assert_eq!(metric("Events", "Kind", "ignored"), 2, "{text}");
        assert_eq!(metric("Events", "Kind", "ignored-error"), 1, "{text}");
        assert_eq!(
            metric("Events", "Kind", "launch-lifecycle-action"),
            1,
            "{text}"
        );
        assert_eq!(
            metric("Events", "Kind", "launch-lifecycle-action-error"),
            1,
            "{text}"
        );
        assert_eq!(metric("Events", "Kind", "host-report"), 1, "{text}");
        assert_eq!(
            metric("EventToDispatch", "Kind", "launch-lifecycle-action"),
            1,
            "{text}"
        );
        assert_eq!(
            metric("InvocationDuration", "Kind", "host-report"),
            1,
            "{text}"
        );
        assert_eq!(metric("InvocationDuration", "Kind", "mixed"), 2, "{text}");
        assert_eq!(metric("LifecycleDecisions", "Result", "WAIT"), 1, "{text}");
        assert_eq!(
            metric("LifecycleDecisions", "Result", "CONTINUE"),
            1,
            "{text}"
        );
        assert!(sum("ReportsApplied") >= 2.0, "{text}");
        assert_eq!(sum("ForgedReports"), 0.0, "{text}");
    }
}

/// The answers to 1 (a bare event that is none) and 2 (the batch with the launch).
fn first_two_answers(log: &RuntimeLog) {
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    assert_eq!(log.responses.len(), 2, "{log:?}");
    let (id0, first) = &log.responses[0];
    assert_eq!(id0, "req-1");
    assert_eq!(first["inputs"], json!({"ignored": 1}), "{first}");
    assert!(
        first["ignored"][0]
            .as_str()
            .unwrap_or_default()
            .contains("detail-type"),
        "{first}"
    );
    // A batch's answer names the records to retry: none.
    assert_eq!(log.responses[1].1, json!({"batchItemFailures": []}));
}

/// Receives (bounded, 30 s) records of the inbox until both hosts have reported on `id`.
fn reports_of_both_hosts(w: &Fixture, id: &str) -> Vec<Received> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut records: Vec<Received> = Vec::new();
    let reporters = |records: &[Received]| {
        records
            .iter()
            .filter_map(|m| infra::HostReport::from_json(&m.body).ok())
            .filter(|m| m.reports.iter().any(|r| r.member.as_str() == id))
            .map(|m| m.host.to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    while reporters(&records).len() < 2 {
        assert!(
            Instant::now() < until,
            "no reports from both hosts: {records:?}"
        );
        records.extend(w.world.receive_records(&w.path.inbox, 1).expect("receive"));
    }
    records
}

/// 4: a batch whose event can not be handled (Auto Scaling keeps failing): its record,
/// and only it, is given back to the queue. Returns the runtime API, which holds the
/// fifth `next` open.
async fn a_failing_batch_gives_back_its_record(
    w: &Fixture,
    api: RuntimeApi,
    launch: &Value,
) -> RuntimeApi {
    let forever = json!({"service":"autoscaling","action":"DescribeAutoScalingGroups","code":"ServiceUnavailable","status":503,"count":-1});
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&forever))
        .expect("faults");
    let mut junk = event_record("m-junk-2", &json!(null));
    junk.body = "[1, 2]".into();
    api.push(sqs_event(
        &w.path.inbox,
        &[event_record("m-again", launch), junk],
    ));
    let (log, api) = answers(api, 4).await;
    w.emulator
        .control("DELETE", "/moto-ext/faults", None)
        .expect("clear faults");
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    assert_eq!(log.responses.len(), 4, "{log:?}");
    assert_eq!(
        log.responses[3].1,
        json!({"batchItemFailures": [{"itemIdentifier": "m-again"}]})
    );
    // The fifth `next` is held open: the reactor waits for work, as in Lambda.
    assert!(log.next_at.len() >= 4);
    api
}
