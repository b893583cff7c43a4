//! The reactor driving a real agent service and a real HAProxy host through the
//! production path: SSM Run Command of the project's document on the proxy instance,
//! which returns as soon as the service accepted the change; the service's reports back
//! through the inbox (an SQS queue, sent with the proxy's own session); the emulator's
//! lifecycle hooks. A member that answers health checks is continued, one that never
//! does is abandoned.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use harness::pump::sqs_event;
use harness::world::{autoscaling_pattern, ControlPath, LAUNCH_HOOK, PROXY_GROUP};
use harness::{free_port, GroupSpec, HostSpec, PoolSpec, World};
use serde_json::{json, Value};

const GROUP: &str = "web-asg";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_gates_launches_on_health() {
    let w = World::start(None).await.expect("emulated world");
    let port = free_port();
    let mut spec = GroupSpec::new(GROUP, &w.subnet);
    spec.launch_hook = Some(300);
    w.group(&spec).await.expect("group");
    w.ssm_document(120).await.expect("document");
    // Only the proxies' reports reach the inbox: the events are handed over by hand.
    let path = w
        .control_path("reactor", &[autoscaling_pattern(&["no-such-group"])])
        .expect("control path");
    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    pool.server_options = "check inter 200ms fall 2 rise 1".into();
    pool.health_timeout_s = 4.0;
    pool.drain_timeout_s = 2.0;
    let proxy_subnet = w.add_subnet("127.0.2.0/24").await.expect("subnet");
    let hosts = w
        .proxy_fleet(
            &path,
            &proxy_subnet,
            vec![HostSpec {
                name: String::new(),
                pools: vec![pool],
                extra_toml: String::new(),
                env: Vec::new(),
            }],
        )
        .await
        .expect("proxy fleet");
    w.scale(GROUP, 2).await.expect("scale");
    let members = w.members(GROUP).await.expect("members");
    let (healthy, sick) = (members[0].id.clone(), members[1].id.clone());
    // Only the first member serves (a TCP check is enough).
    let ip = w.private_ip(&healthy).await.expect("address");
    let listener = TcpListener::bind(format!("{ip}:{port}")).expect("backend listener");
    std::thread::spawn(move || for _ in listener.incoming() {});

    let r = reactor_for(&w, &path, port);
    let event = w
        .events_about("EC2 Instance-launch Lifecycle Action", &healthy)
        .expect("events")
        .into_iter()
        .next()
        .expect("a launch event");
    let sent = r.handle(&event).await.expect("handled");
    assert_eq!(sent.changes.len(), 1, "{sent:?}");
    assert_eq!(sent.changes[0].hosts, 1);
    assert!(
        sent.actions.iter().all(|a| a.decision == "WAIT"),
        "{sent:?}"
    );
    // The host's reports come back through the inbox, sent from its own session.
    let decisions = decisions_from_the_reports(&w, &path, &hosts[0].name, &r).await;
    let decision = |id: &str| {
        decisions
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    };
    assert_eq!(decision(&healthy), "CONTINUE", "{decisions:?}");
    assert_eq!(
        decision(&sick),
        "ABANDON",
        "the agent reported {sick} up although nothing listens on its address: a slot must not \
         count as UP before its first health check passed\n{decisions:?}"
    );
    let result = |id: &str| -> Option<String> {
        w.actions_of(id, "launch")
            .expect("lifecycle")
            .iter()
            .find_map(|r: &Value| r["result"].as_str().map(str::to_string))
    };
    assert_eq!(result(&healthy).as_deref(), Some("CONTINUE"));
    assert_eq!(result(&sick).as_deref(), Some("ABANDON"));
    let _ = PROXY_GROUP;
}

/// The reactor of `path` in `w`, for pool `web` of group web-asg on `port`, its launch hook
/// and 10 s timeouts.
fn reactor_for(w: &World, path: &ControlPath, port: u16) -> reactor::AwsReactor {
    let env = harness::ReactorEnv::new(path)
        .pool("web-asg", "web", port)
        .timeouts(10, 10)
        .hooks(&[LAUNCH_HOOK]);
    let config = reactor::config::Config::from_lookup(|k| env.get(k)).expect("config");
    reactor::build(config, &w.sdk)
}

/// The host's reports come back through the inbox, sent from its own session (`host`'s,
/// of the proxies' role); `r` handles them until (60 s at most) it decided two
/// launches. The decisions: (instance, decision).
async fn decisions_from_the_reports(
    w: &World,
    path: &ControlPath,
    host: &str,
    r: &reactor::AwsReactor,
) -> Vec<(String, String)> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut decisions = Vec::new();
    while decisions.len() < 2 {
        assert!(
            Instant::now() < until,
            "no decision for both launches: {decisions:?}"
        );
        let records = w.receive_records(&path.inbox, 1).expect("receive");
        if records.is_empty() {
            continue;
        }
        for m in &records {
            assert!(
                m.attributes["SenderId"]
                    .as_str()
                    .is_some_and(|s| s == format!("{}:{}", path.role_id, host)),
                "sent by the proxy's session: {:?}",
                m.attributes
            );
        }
        let i = r.invoke(&sqs_event(&path.inbox, &records)).await;
        assert_eq!(i.response, json!({"batchItemFailures": []}), "{i:?}");
        decisions.extend(
            i.summary
                .actions
                .iter()
                .map(|a| (a.instance.clone(), a.decision.clone())),
        );
        let handles: Vec<String> = records.iter().map(|m| m.handle.clone()).collect();
        w.delete(&path.inbox, &handles).expect("delete");
    }
    decisions
}
