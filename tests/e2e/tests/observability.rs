//! What an operator sees of a host, against a real HAProxy (2.6, or `$HAPROXY_BIN`),
//! real backends and the real agent service:
//!
//! - the agent's own `/metrics` (`[metrics] agent`) and HAProxy's built-in Prometheus
//!   exporter (`[metrics] haproxy`, a frontend `agent config render` declares) follow a
//!   scale-out that needs more slots than are free: slots, members by state, joins in
//!   flight, the growth reload, the outcome histogram, errors; HAProxy's servers UP;
//! - a request served through HAProxy is logged with the instance that served it (a
//!   UDP syslog receiver on 127.0.0.1), and scrapes of the exporter are not logged;
//! - `agent status` shows each pool's slot -> instance map, as the instance map holds it.
//!
//! Members that must stay joining are given a port nothing listens on until the test
//! starts their backend, so every intermediate state is waited for, not raced. All
//! traffic stays on loopback; every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::util::{change, member};
use agent::config::AgentConfig;
use harness::metrics::{scrape, Scrape};
use harness::syslog::{tagged_requests, Syslog};
use harness::{free_port, http, wait_for, Backend, Host, HostSpec, PoolSpec};
use infra::OutcomeStatus;

/// A host observed: its metrics addresses, logging to `syslog`.
struct Observed {
    host: Host,
    /// HAProxy's exporter.
    haproxy: SocketAddr,
    /// The agent's `/metrics`.
    agent: SocketAddr,
}

/// A host with pool `web` of `slots` slots (TCP checks every 100 ms, rise 2; joins may
/// wait a minute), both metrics endpoints on free loopback ports, and HAProxy logging
/// to `syslog`. HAProxy runs unconfined here (confinement is `confined.rs`'s subject).
fn observed(name: &str, slots: u32, syslog: &Syslog) -> Observed {
    let (haproxy, agent): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let mut pool = PoolSpec::new("web", slots);
    pool.health_timeout_s = 60.0;
    let host = Host::start(&HostSpec {
        name: name.into(),
        pools: vec![pool],
        extra_toml: format!(
            "[render]\nuser = \"\"\ngroup = \"\"\nchroot = \"\"\nlog = \"{}\"\n[metrics]\nhaproxy = \"{haproxy}\"\nagent = \"{agent}\"\n",
            syslog.addr
        ),
        env: Vec::new(),
    })
    .expect("start a host with both metrics endpoints");
    Observed {
        host,
        haproxy,
        agent,
    }
}

/// Shorthands for the agent's metrics of pool `web`.
fn web(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("pool", "web")];
    all.extend_from_slice(labels);
    let name = format!("haproxy_asg_agent_{name}");
    s.value(&name, &all)
        .unwrap_or_else(|| panic!("no {name}{all:?} in the agent's metrics: {s:#?}"))
}

fn agent_value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let name = format!("haproxy_asg_agent_{name}");
    s.value(&name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the agent's metrics: {s:#?}"))
}

/// HAProxy's servers of backend `web` in `state` (its exporter's state set).
fn haproxy_servers(s: &Scrape, state: &str) -> f64 {
    s.sum(
        "haproxy_server_status",
        &[("proxy", "web"), ("state", state)],
    )
}

/// The distinct servers HAProxy's exporter lists for backend `web`.
fn haproxy_server_count(s: &Scrape) -> usize {
    s.matching("haproxy_server_status", &[("proxy", "web")])
        .filter_map(|x| x.labels.get("server"))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[test]
fn both_metrics_endpoints_follow_a_scale_out_that_grows_the_slots() {
    let syslog = Syslog::start().unwrap();
    let o = observed("proxy-metrics", 2, &syslog);
    let h = &o.host;
    two_free_slots_nothing_up_no_reload_every_series_present(&o);

    let runtime = harness::process::haproxy_adds_servers();
    // Three members for two free slots: the service grows the pool (a server added at
    // runtime from 3.0, a reload on 2.6) and joins them; nothing listens on their ports yet, so they stay joining.
    let ports: Vec<SocketAddr> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .collect();
    let ids = ["i-a", "i-b", "i-c"];
    let change = change(
        1,
        ids.iter()
            .zip(&ports)
            .map(|(id, a)| member(id, *a))
            .collect(),
        &[],
    );
    std::thread::scope(|scope| {
        let apply = scope.spawn(|| h.apply(&change).unwrap());
        let during = wait_for(Duration::from_secs(20), || {
            let s = scrape(o.agent).ok()?;
            (web(&s, "members", &[("state", "joining")]) == 3.0).then_some(s)
        })
        .unwrap_or_else(|| {
            panic!(
                "the agent's metrics never showed 3 members joining; its log:\n{}",
                h.agent_log()
            )
        });
        // From HAProxy 3.0 one server is added at runtime (no reload); 2.6 doubles the
        // block with a reload.
        let (slots, reloads) = if runtime { (3, 0) } else { (4, 1) };
        three_joining_in_grown_slots(&o, &during, slots, reloads);

        // Their instances boot: the joins end UP.
        let backends: Vec<Backend> = ids
            .iter()
            .zip(&ports)
            .map(|(id, a)| Backend::spawn(id, &a.to_string(), false).unwrap())
            .collect();
        let (report, run) = apply.join().unwrap();
        assert!(
            report.outcomes.len() == 3
                && report
                    .outcomes
                    .iter()
                    .all(|o| o.status == OutcomeStatus::Up),
            "{report:?} {}",
            run.stderr
        );
        assert_eq!(report.reloads, reloads);

        three_up_with_their_latencies_and_the_reload_if_any(&o, slots, reloads);
        drop(backends);
    });
}

/// Before: two free slots, nothing up, no reload, every series present.
fn two_free_slots_nothing_up_no_reload_every_series_present(o: &Observed) {
    let before = scrape(o.agent).unwrap();
    for (family, kind) in [
        ("slots", "gauge"),
        ("slots_used", "gauge"),
        ("slots_free", "gauge"),
        ("members", "gauge"),
        ("operations_in_flight", "gauge"),
        ("operation_duration_seconds", "histogram"),
        ("reloads_total", "counter"),
        ("errors_total", "counter"),
        ("aws_syncs_total", "counter"),
        ("aws_last_sync_timestamp_seconds", "gauge"),
    ] {
        assert_eq!(
            before
                .types
                .get(&format!("haproxy_asg_agent_{family}"))
                .map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(web(&before, "slots", &[]), 2.0);
    assert_eq!(web(&before, "slots_used", &[]), 0.0);
    assert_eq!(web(&before, "slots_free", &[]), 2.0);
    assert_eq!(web(&before, "members", &[("state", "up")]), 0.0);
    assert_eq!(agent_value(&before, "reloads_total", &[]), 0.0);
    assert_eq!(
        web(
            &before,
            "operation_duration_seconds_count",
            &[("outcome", "up")]
        ),
        0.0
    );
    let hp = scrape(o.haproxy).unwrap();
    assert_eq!(
        hp.value("haproxy_backend_active_servers", &[("proxy", "web")]),
        Some(0.0)
    );
    assert_eq!(haproxy_server_count(&hp), 2, "two slots declared");
}

/// While three members join (nothing listens on their ports yet), as the agent's
/// metrics showed them (`during`) and as HAProxy's exporter shows them: `slots` slots,
/// `reloads` reloads.
fn three_joining_in_grown_slots(o: &Observed, during: &Scrape, slots: u32, reloads: u32) {
    assert_eq!(web(during, "slots", &[]), f64::from(slots), "grown from 2");
    assert_eq!(web(during, "slots_used", &[]), 3.0);
    assert_eq!(web(during, "slots_free", &[]), f64::from(slots - 3));
    assert_eq!(
        web(during, "operations_in_flight", &[("kind", "join")]),
        3.0
    );
    assert_eq!(web(during, "members", &[("state", "up")]), 0.0);
    assert_eq!(
        agent_value(during, "reloads_total", &[]),
        f64::from(reloads)
    );
    assert_eq!(
        agent_value(during, "servers_added_total", &[]),
        f64::from(1 - reloads),
        "one server added at runtime, or none on the reload path"
    );
    let hp = scrape(o.haproxy).unwrap();
    assert_eq!(
        haproxy_server_count(&hp),
        slots as usize,
        "HAProxy has the slots"
    );
    assert_eq!(haproxy_servers(&hp, "UP"), 0.0, "nothing passed its checks");
    assert_eq!(
        hp.value("haproxy_backend_active_servers", &[("proxy", "web")]),
        Some(0.0)
    );
}

/// After: three members up, their latencies in the histogram, the reload if any; in
/// HAProxy's exporter, the members' slots are UP.
fn three_up_with_their_latencies_and_the_reload_if_any(o: &Observed, slots: u32, reloads: u32) {
    let h = &o.host;
    let s = scrape(o.agent).unwrap();
    assert_eq!(web(&s, "members", &[("state", "up")]), 3.0);
    assert_eq!(web(&s, "members", &[("state", "joining")]), 0.0);
    assert_eq!(web(&s, "operations_in_flight", &[("kind", "join")]), 0.0);
    assert_eq!(
        (web(&s, "slots", &[]), web(&s, "slots_used", &[])),
        (f64::from(slots), 3.0)
    );
    assert_eq!(agent_value(&s, "reloads_total", &[]), f64::from(reloads));
    let up = [("outcome", "up")];
    assert_eq!(web(&s, "operation_duration_seconds_count", &up), 3.0);
    assert_eq!(
        web(
            &s,
            "operation_duration_seconds_bucket",
            &[("outcome", "up"), ("le", "+Inf")]
        ),
        3.0
    );
    assert!(web(&s, "operation_duration_seconds_sum", &up) > 0.0);
    let buckets: Vec<f64> = s
        .matching(
            "haproxy_asg_agent_operation_duration_seconds_bucket",
            &[("pool", "web"), ("outcome", "up")],
        )
        .map(|x| x.value)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert_eq!(
        s.sum("haproxy_asg_agent_errors_total", &[]),
        0.0,
        "no error: {:?}; the agent's log:\n{}",
        s.matching("haproxy_asg_agent_errors_total", &[])
            .map(|x| (x.labels["kind"].clone(), x.value))
            .collect::<Vec<_>>(),
        h.agent_log()
    );

    // HAProxy's exporter: the members' slots are UP.
    let hp = scrape(o.haproxy).unwrap();
    assert_eq!(
        hp.value("haproxy_backend_active_servers", &[("proxy", "web")]),
        Some(3.0)
    );
    assert_eq!(haproxy_servers(&hp, "UP"), 3.0);
    for slot in h.assignments().unwrap().values() {
        assert_eq!(
            hp.value(
                "haproxy_server_status",
                &[("proxy", "web"), ("server", slot), ("state", "UP")]
            ),
            Some(1.0),
            "{slot}"
        );
    }
}

#[test]
fn refused_messages_are_counted_and_only_get_metrics_is_served() {
    let syslog = Syslog::start().unwrap();
    let o = observed("proxy-refused", 2, &syslog);
    let h = &o.host;
    let s = scrape(o.agent).unwrap();
    assert_eq!(
        agent_value(&s, "errors_total", &[("kind", "refused_message")]),
        0.0
    );
    // A member at a link-local address: refused whole, counted by kind.
    let bad = change(
        1,
        vec![member("i-bad", "169.254.169.254:80".parse().unwrap())],
        &[],
    );
    let run = h
        .agent(&["apply", "--json", "--file", "-"], Some(&bad.to_json()))
        .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let s = scrape(o.agent).unwrap();
    assert_eq!(
        agent_value(&s, "errors_total", &[("kind", "refused_message")]),
        1.0,
        "{}",
        h.agent_log()
    );
    assert_eq!(web(&s, "slots_used", &[]), 0.0, "nothing changed");

    let r = http::get(o.agent, "/", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http::request(o.agent, "POST", "/metrics", &[], "", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 405, "{}", r.body);
    let r = http::get(o.haproxy, "/stats", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn a_request_through_haproxy_logs_the_instance_that_served_it() {
    let syslog = Syslog::start().unwrap();
    let o = observed("proxy-logs", 2, &syslog);
    let h = &o.host;
    let (a, b) = (
        Backend::start("a", "127.0.0.1").unwrap(),
        Backend::start("b", "127.0.0.1").unwrap(),
    );
    let (report, run) = h
        .apply(&change(
            1,
            vec![member("i-a", a.addr), member("i-b", b.addr)],
            &[],
        ))
        .unwrap();
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Up),
        "{report:?} {}",
        run.stderr
    );
    // Scrapes of HAProxy's exporter come first and must leave no line.
    for _ in 0..3 {
        scrape(o.haproxy).unwrap();
    }
    let sent = tagged_requests(h.frontend("web"), "obs", 10).unwrap();
    let instance_of: BTreeMap<&str, &str> = [("a", "i-a"), ("b", "i-b")].into();
    let lines = syslog
        .wait_requests("obs", sent.len(), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("not every request was logged: {:?}", syslog.lines()));
    for (req, backend) in &sent {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("/?n={req} ")))
            .unwrap_or_else(|| panic!("no log line for {req}: {lines:?}"));
        let want = format!("instance={}", instance_of[backend.as_str()]);
        assert!(
            line.ends_with(&want),
            "{req} was served by {backend}: its line should end with {want}: {line}"
        );
    }
    let scraped: Vec<String> = syslog
        .lines()
        .into_iter()
        .filter(|l| l.contains("asg_metrics"))
        .collect();
    assert!(scraped.is_empty(), "scrapes were logged: {scraped:?}");
}

#[test]
fn agent_status_shows_the_slot_to_instance_map() {
    let syslog = Syslog::start().unwrap();
    let o = observed("proxy-status", 4, &syslog);
    let h = &o.host;
    let a = Backend::start("a", "127.0.0.1").unwrap();
    // i-b's instance has not booted: it stays joining until its backend starts.
    let b_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let run = h
        .agent(
            &["apply", "--file", "-"],
            Some(&change(1, vec![member("i-a", a.addr), member("i-b", b_addr)], &[]).to_json()),
        )
        .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);

    let map_of = |v: &serde_json::Value| -> Vec<(String, String, String, String)> {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap().to_string(),
                    i["instance"].as_str().unwrap().to_string(),
                    i["state"].as_str().unwrap().to_string(),
                    i["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let status_json = || -> serde_json::Value {
        let run = h.agent(&["status", "--json"], None).unwrap();
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap()
    };
    // Wait (bounded) for i-a UP while i-b is still joining.
    let pool = wait_for(Duration::from_secs(20), || {
        let s = status_json();
        let p = s["pools"][0].clone();
        let m = map_of(&p);
        (m.len() == 2 && m[0].2 == "up" && m[0].3 == "UP").then_some(p)
    })
    .expect("i-a UP in agent status --json");
    assert_eq!(pool["pool"], "web");
    assert_eq!(
        (&pool["slots"], &pool["used"], &pool["free"]),
        (&4.into(), &2.into(), &2.into())
    );
    let m = map_of(&pool);
    assert_eq!(
        (m[0].0.as_str(), m[0].1.as_str(), m[0].2.as_str()),
        ("web/slot1", "i-a", "up")
    );
    assert_eq!(
        (m[1].0.as_str(), m[1].1.as_str(), m[1].2.as_str()),
        ("web/slot2", "i-b", "joining")
    );
    assert!(m[1].3.starts_with("DOWN"), "nothing listens: {:?}", m[1]);

    // The same pairs as the instance map HAProxy's log line reads.
    let cfg = AgentConfig::load(&h.config).unwrap();
    let file = std::fs::read_to_string(cfg.haproxy.instances_map.path()).unwrap();
    let pairs: Vec<(String, String)> = m.iter().map(|x| (x.0.clone(), x.1.clone())).collect();
    let in_file: Vec<(String, String)> = file
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(pairs, in_file);

    // The human output: a section per pool, one line per used slot.
    let run = h.agent(&["status"], None).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.stdout;
    assert!(out.contains("SLOT -> INSTANCE"), "{out}");
    assert!(out.contains("web: 2 of 4 slots used, 2 free"), "{out}");
    let line_of = |key: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no line for {key} in\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(line_of("web/slot1")[..4], ["web/slot1", "i-a", "up", "UP"]);
    assert_eq!(
        line_of("web/slot2")[..4],
        ["web/slot2", "i-b", "joining", "DOWN"]
    );

    // i-b boots: the map shows it up.
    let _b = Backend::spawn("b", &b_addr.to_string(), false).unwrap();
    let both_up = wait_for(Duration::from_secs(20), || {
        let m = map_of(&status_json()["pools"][0]);
        m.iter().all(|x| x.2 == "up" && x.3 == "UP").then_some(m)
    });
    assert!(both_up.is_some(), "i-b never showed up in agent status");
}

/// The version `haproxy -v` of the binary the hosts run prints (`3.0.11-9e587df`).
fn haproxy_v() -> String {
    let out = std::process::Command::new(harness::process::haproxy_bin())
        .arg("-v")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string()
}

#[test]
fn the_rendered_configuration_checks_clean_and_the_agent_names_its_haproxy() {
    let syslog = Syslog::start().unwrap();
    let o = observed("proxy-version", 2, &syslog);
    let h = &o.host;

    // `agent config render`'s configuration, metrics frontend included, passes
    // `haproxy -c` without a warning (each version warned `log format ignored for
    // frontend 'asg_metrics'` with `no log` there), so `zero-warning` could be set.
    let check = std::process::Command::new(harness::process::haproxy_bin())
        .arg("-c")
        .arg("-f")
        .arg(h.dir().join("haproxy.cfg"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "haproxy -c: {said}");
    assert!(!said.contains("WARNING"), "haproxy -c warned: {said}");

    // The service read HAProxy's version when it reached it: in /metrics and status.
    let version = haproxy_v();
    let info = wait_for(Duration::from_secs(20), || {
        scrape(o.agent)
            .ok()?
            .value("haproxy_asg_agent_haproxy_info", &[("version", &version)])
    })
    .unwrap_or_else(|| panic!("haproxy_info{{version={version:?}}} in the agent's metrics"));
    assert_eq!(info, 1.0);
    let run = h.agent(&["status", "--json"], None).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["haproxy_version"], version.as_str());
    let run = h.agent(&["status"], None).unwrap();
    assert!(
        run.stdout.contains(&format!(
            "HAProxy {version}: 0 reloads by this service, 0 by someone else"
        )),
        "{}",
        run.stdout
    );
    // Both sockets, and whether they answer.
    for role in ["admin", "master"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{role} socket ")) && l.ends_with(": answers")),
            "{}",
            run.stdout
        );
    }
}
