//! The reactor driving real agent services and real HAProxy hosts through the production
//! path: SSM Run Command of the project's document on each proxy instance, the
//! command's status event back through EventBridge and SQS, the emulator's lifecycle
//! hooks. A member that answers health checks is continued, one that never does is
//! abandoned.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use harness::world::{commands_pattern, DOCUMENT, LAUNCH_HOOK};
use harness::{free_port, GroupSpec, Host, HostSpec, PoolSpec, World};
use serde_json::Value;

const GROUP: &str = "web-asg";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_gates_launches_on_health() {
    let w = World::start(None).await.expect("emulated world");
    let port = free_port();
    let mut spec = GroupSpec::new(GROUP, &w.subnet);
    spec.launch_hook = Some(300);
    w.group(&spec).await.expect("group");
    w.ssm_document(120).await.expect("document");
    let queue = w
        .event_queue("commands", &[commands_pattern(DOCUMENT)])
        .expect("queue");
    w.scale(GROUP, 2).await.expect("scale");
    let members = w.members(GROUP).await.expect("members");
    let (healthy, sick) = (members[0].id.clone(), members[1].id.clone());
    // Only the first member serves (a TCP check is enough).
    let ip = w.private_ip(&healthy).await.expect("address");
    let listener = TcpListener::bind(format!("{ip}:{port}")).expect("backend listener");
    std::thread::spawn(move || for _ in listener.incoming() {});

    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    pool.server_options = "check inter 200ms fall 2 rise 1".into();
    pool.health_timeout_s = 4.0;
    pool.drain_timeout_s = 2.0;
    let host = Host::start(&HostSpec {
        name: "proxy1".into(),
        pools: vec![pool],
        extra_toml: String::new(),
        env: Vec::new(),
    })
    .expect("HAProxy host");
    let proxy_subnet = w.add_subnet("127.0.2.0/24").await.expect("subnet");
    w.proxy_fleet(&proxy_subnet, &[&host])
        .await
        .expect("proxy fleet");

    let pools = format!(r#"{{"web-asg":[{{"name":"web","port":{port}}}]}}"#);
    let env = [
        ("POOLS", pools.as_str()),
        ("SSM_DOCUMENT", DOCUMENT),
        ("PROXY_TAG_KEY", harness::world::PROXY_TAG.0),
        ("PROXY_TAG_VALUE", harness::world::PROXY_TAG.1),
        ("HEALTH_TIMEOUT_S", "10"),
        ("DRAIN_TIMEOUT_S", "10"),
        ("LIFECYCLE_HOOKS", LAUNCH_HOOK),
    ];
    let config = reactor::config::Config::from_lookup(|k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .expect("config");
    let r = reactor::build(config, &w.sdk);
    let event = w
        .events_about("EC2 Instance-launch Lifecycle Action", &healthy)
        .expect("events")
        .into_iter()
        .next()
        .expect("a launch event");
    let sent = r.handle(&event).await.expect("handled");
    assert_eq!(sent.commands.len(), 1, "{sent:?}");
    // The hosts' reports come back with the command's status event.
    let until = Instant::now() + Duration::from_secs(60);
    let s = loop {
        assert!(Instant::now() < until, "no status event");
        let (events, handles) = w.receive(&queue, 1).expect("receive");
        w.delete(&queue, &handles).expect("delete");
        if let Some(ev) = events.first() {
            break r.handle(ev).await.expect("handled");
        }
    };
    let decision = |id: &str| {
        s.actions
            .iter()
            .find(|a| a.instance == id)
            .map(|a| a.decision.clone())
            .unwrap_or_default()
    };
    assert_eq!(decision(&healthy), "CONTINUE", "{s:?}");
    assert_eq!(
        decision(&sick),
        "ABANDON",
        "the agent reported {sick} up although nothing listens on its address: a slot must not \
         count as UP before its first health check passed\n{s:?}"
    );
    let result = |id: &str| -> Option<String> {
        w.actions_of(id, "launch")
            .expect("lifecycle")
            .iter()
            .find_map(|r: &Value| r["result"].as_str().map(str::to_string))
    };
    assert_eq!(result(&healthy).as_deref(), Some("CONTINUE"));
    assert_eq!(result(&sick).as_deref(), Some("ABANDON"));
}
