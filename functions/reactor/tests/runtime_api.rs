//! The real reactor binary through a local Lambda Runtime API: the `lambda_runtime`
//! entry point, state built at cold start, events in, answers out, JSON logs.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use harness::runtime_api::{lambda_env, RuntimeApi};
use serde_json::{json, Value};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_events_from_the_runtime_api() {
    let w = Fixture::new().await;
    w.group(GROUP, true, false, &[]).await;
    let proxies = w.proxies(2, &[host_env(&[]), host_env(&[])]).await;
    w.scale(GROUP, 1).await;
    let id = w.members(GROUP).await[0].0.clone();
    let launch = w.event("EC2 Instance-launch Lifecycle Action", &id);
    let events = vec![json!({"not": "an event"}), launch];
    let api = RuntimeApi::start(events, 60_000).expect("runtime api");

    let log_path = w.dir.path().join("reactor.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let metrics_path = w.dir.path().join("reactor.stdout");
    let metrics_file = std::fs::File::create(&metrics_path).expect("stdout file");
    let child = Command::new(env!("CARGO_BIN_EXE_reactor"))
        .envs(lambda_env(api.addr))
        .env("AWS_ENDPOINT_URL", w.emulator.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("POOLS", POOLS)
        .env("SSM_DOCUMENT", harness::world::DOCUMENT)
        .env("PROXY_TAG_KEY", "Role")
        .env("PROXY_TAG_VALUE", "proxy")
        .env("HEALTH_TIMEOUT_S", "10")
        .env("DRAIN_TIMEOUT_S", "10")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(metrics_file)
        .stderr(log_file)
        .spawn()
        .expect("reactor binary");
    let _guard = Killed(child);

    let (log, api) = tokio::task::spawn_blocking(move || {
        let l = api.wait_for(2, Duration::from_secs(90));
        (l, api)
    })
    .await
    .expect("join");
    assert_eq!(log.responses.len(), 2, "{log:?}");
    assert_eq!(log.responses[1].1["actions"][0]["decision"], json!("WAIT"));
    // The command's status event, as EventBridge would deliver it to the function.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        assert!(std::time::Instant::now() < until, "no status event");
        let (mut events, _) = w.world.receive(&w.queue, 1).expect("receive");
        if let Some(e) = events.pop() {
            break e;
        }
    };
    api.push(status);
    let (log, _api) = tokio::task::spawn_blocking(move || {
        let l = api.wait_for(3, Duration::from_secs(90));
        (l, api)
    })
    .await
    .expect("join");
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    assert_eq!(log.responses.len(), 3, "{log:?}");
    let (id0, first) = &log.responses[0];
    assert_eq!(id0, "req-1");
    assert_eq!(first["event"], json!("ignored"));
    assert!(
        first["ignored"]
            .as_str()
            .unwrap_or_default()
            .contains("detail-type"),
        "{first}"
    );
    let (_, third) = &log.responses[2];
    assert_eq!(third["event"], json!("command-ended"));
    assert_eq!(
        third["actions"][0]["decision"],
        json!("CONTINUE"),
        "{third}"
    );
    assert_eq!(third["hosts"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        w.members(GROUP).await,
        [(id.clone(), "InService".to_string())]
    );
    for p in &proxies {
        assert_eq!(w.serving(p, "web"), std::slice::from_ref(&id));
    }
    // The fourth `next` is held open: the reactor waits for work, as in Lambda.
    assert!(log.next_at.len() >= 3);

    // Logs are JSON lines with the span's fields.
    let text = std::fs::read_to_string(&log_path).expect("log");
    let decision: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] == json!("lifecycle decision")
                && v["fields"]["outcome"] == json!("CONTINUE")
        })
        .unwrap_or_else(|| panic!("no JSON decision line in:\n{text}"));
    assert_eq!(decision["fields"]["outcome"], json!("CONTINUE"));
    assert_eq!(decision["fields"]["pool"], json!("web"));
    assert_eq!(decision["fields"]["instance"], json!(id));
    assert!(
        decision["span"]["generation"].as_u64().is_some(),
        "{decision}"
    );

    // Metrics: Embedded Metric Format lines on stdout, one invocation's worth each.
    let text = std::fs::read_to_string(&metrics_path).expect("stdout");
    let emf: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let metric = |name: &str, dim: &str, value: &str| {
        emf.iter()
            .filter(|v| v[dim] == json!(value) && v[name].is_number())
            .filter(|v| {
                v["_aws"]["CloudWatchMetrics"][0]["Namespace"] == json!("HaproxyAsg")
                    && v["Function"] == json!("reactor")
            })
            .count()
    };
    assert_eq!(metric("Events", "Kind", "ignored"), 1, "{text}");
    assert_eq!(
        metric("Events", "Kind", "launch-lifecycle-action"),
        1,
        "{text}"
    );
    assert_eq!(
        metric("EventToDispatch", "Kind", "launch-lifecycle-action"),
        1,
        "{text}"
    );
    assert_eq!(
        metric("InvocationDuration", "Kind", "command-ended"),
        1,
        "{text}"
    );
    assert_eq!(metric("LifecycleDecisions", "Result", "WAIT"), 1, "{text}");
    assert_eq!(
        metric("LifecycleDecisions", "Result", "CONTINUE"),
        1,
        "{text}"
    );
}
