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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::fleet::Fleet;
use harness::pump::{scheduled_event, Pump};
use harness::watch::SocketWatch;
use harness::world::{
    autoscaling_pattern, commands_pattern, DOCUMENT, LAUNCH_HOOK, PROXY_TAG, TERMINATE_HOOK,
};
use harness::{free_port, http, unix_ms, GroupSpec, Host, HostSpec, PoolSpec, World};
use reactor::reactor::Summary;
use serde_json::Value;
use tokio::sync::mpsc;

const GROUP: &str = "web-asg";

/// One handled event: its kind, when its invocation started and how long it took, and
/// what the reactor answered.
#[derive(Debug, Clone)]
struct Handled {
    started_ms: u64,
    ms: u64,
    summary: Summary,
}

/// The stack under test.
struct Stack {
    w: Arc<World>,
    hosts: Vec<Host>,
    port: u16,
    _fleet: Fleet,
    pump: Pump,
    /// Events for the reactor (the pump's, and scheduled ones).
    tx: mpsc::UnboundedSender<Value>,
    handled: Arc<Mutex<Vec<Handled>>>,
    consumer: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// A group with both hooks (`heartbeat_s`), two proxy hosts whose pools drain for
    /// up to `drain_s`, and the reactor consuming the group's and the document's events.
    async fn start(heartbeat_s: i32, drain_s: u64) -> Self {
        let w = Arc::new(World::start(None).await.expect("emulated world"));
        let port = free_port();
        w.group(&GroupSpec::new(GROUP, &w.subnet).hooks(heartbeat_s))
            .await
            .expect("group");
        let health_s = 10;
        let execution_timeout = health_s + drain_s + 60;
        w.ssm_document(execution_timeout).await.expect("document");
        let queue = w
            .event_queue(
                "reactor",
                &[autoscaling_pattern(&[GROUP]), commands_pattern(DOCUMENT)],
            )
            .expect("queue");
        let fleet = Fleet::start(
            Arc::clone(&w),
            &w.subnet,
            port,
            "web",
            Duration::from_millis(50),
            Duration::from_secs(600),
        );
        let mut hosts = Vec::new();
        for name in ["proxy1", "proxy2"] {
            let mut pool = PoolSpec::new("web", 4);
            pool.port = port;
            pool.server_options = "check inter 100ms fall 2 rise 1".into();
            pool.health_timeout_s = health_s as f64;
            pool.drain_timeout_s = drain_s as f64;
            hosts.push(
                Host::start(&HostSpec {
                    name: name.into(),
                    pools: vec![pool],
                    extra_toml: String::new(),
                    env: Vec::new(),
                })
                .expect("HAProxy host"),
            );
        }
        let proxy_subnet = w.add_subnet("127.0.2.0/24").await.expect("subnet");
        let refs: Vec<&Host> = hosts.iter().collect();
        w.proxy_fleet(&proxy_subnet, &refs)
            .await
            .expect("proxy fleet");

        let pools = format!(r#"{{"{GROUP}":[{{"name":"web","port":{port}}}]}}"#);
        let hooks = format!("{LAUNCH_HOOK},{TERMINATE_HOOK}");
        let (health, drain) = (health_s.to_string(), drain_s.to_string());
        let env = [
            ("POOLS", pools.as_str()),
            ("SSM_DOCUMENT", DOCUMENT),
            ("PROXY_TAG_KEY", PROXY_TAG.0),
            ("PROXY_TAG_VALUE", PROXY_TAG.1),
            ("HEALTH_TIMEOUT_S", health.as_str()),
            ("DRAIN_TIMEOUT_S", drain.as_str()),
            ("LIFECYCLE_HOOKS", hooks.as_str()),
        ];
        let config = reactor::config::Config::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .expect("config");
        let r = reactor::build(config, &w.sdk);

        // One concurrent invocation: events are handled one after the other.
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let pump = Pump::start(Arc::clone(&w), queue, tx.clone(), Duration::from_secs(600));
        let handled: Arc<Mutex<Vec<Handled>>> = Arc::default();
        let log = Arc::clone(&handled);
        let consumer = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let started_ms = unix_ms();
                let t = Instant::now();
                match r.handle(&event).await {
                    Ok(summary) => log.lock().unwrap().push(Handled {
                        started_ms,
                        ms: t.elapsed().as_millis() as u64,
                        summary,
                    }),
                    Err(e) => panic!("the reactor failed on {event}: {e:#}"),
                }
            }
        });
        Self {
            w,
            hosts,
            port,
            _fleet: fleet,
            pump,
            tx,
            handled,
            consumer,
        }
    }

    fn handled(&self) -> Vec<Handled> {
        self.handled.lock().unwrap().clone()
    }

    /// The lifecycle action of `id` for `transition`: its result, who completed it, when
    /// it started and when it was completed (unix ms).
    fn action(&self, id: &str, transition: &str) -> Option<(String, String, u64, u64)> {
        let records = self.w.actions_of(id, transition).expect("lifecycle");
        let r = records.first()?;
        let ms = |v: &Value| v.as_f64().map(|s| (s * 1000.0) as u64);
        Some((
            r["result"].as_str()?.to_string(),
            r["by"].as_str().unwrap_or_default().to_string(),
            ms(&r["started"])?,
            ms(&r["time"])?,
        ))
    }

    /// Waits (bounded) until the action of `id` for `transition` is completed.
    async fn completed(
        &self,
        id: &str,
        transition: &str,
        within: Duration,
    ) -> (String, String, u64, u64) {
        let until = Instant::now() + within;
        loop {
            if let Some(a) = self.action(id, transition) {
                return a;
            }
            assert!(
                Instant::now() < until,
                "the {transition} action of {id} was not completed within {within:?}: {:#?}",
                self.handled()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The group's members, waiting (bounded) until there are `n` of them.
    async fn members(&self, n: usize) -> Vec<String> {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.w.members(GROUP).await.expect("members");
            if m.len() == n {
                return m.into_iter().map(|m| m.id).collect();
            }
            assert!(Instant::now() < until, "{} members, not {n}", m.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first member (waiting, bounded) that is not one of `known`.
    async fn new_member(&self, known: &[String]) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.w.members(GROUP).await.expect("members");
            if let Some(new) = m.into_iter().find(|m| !known.contains(&m.id)) {
                return new.id;
            }
            assert!(Instant::now() < until, "no new member within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Scales to `n` members and waits until every launch was continued.
    async fn launched(&self, n: usize) -> Vec<String> {
        self.w.scale(GROUP, n as i32).await.expect("scale");
        let ids = self.members(n).await;
        for id in &ids {
            let (result, _, _, _) = self.completed(id, "launch", Duration::from_secs(30)).await;
            assert_eq!(result, "CONTINUE", "{:#?}", self.handled());
        }
        ids
    }

    /// Opens a request through every host's frontend that the backend streams for
    /// `ms`, and waits until each host shows one session on `ip`'s server. Returns the
    /// requests' threads (each gives the status and body length, or the error).
    async fn long_requests_to(
        &self,
        ip: &str,
        ms: u64,
    ) -> Vec<std::thread::JoinHandle<Result<(u16, usize), String>>> {
        let mut threads = Vec::new();
        for h in &self.hosts {
            let fe = h.frontend("web");
            let client = h.client();
            let port = self.port;
            let ip = ip.to_string();
            // Round robin over the members: open requests until one lands on `ip`.
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                assert!(
                    Instant::now() < until,
                    "no long request reached {ip}: {:#?}",
                    client.stats()
                );
                threads.push(std::thread::spawn(move || {
                    http::get(fe, &format!("/stream?ms={ms}"), Duration::from_secs(5))
                        .map(|r| (r.status, r.body.len()))
                        .map_err(|e| e.to_string())
                }));
                let on_ip = |rows: &[agent::haproxy::StatRow]| {
                    rows.iter()
                        .filter(|r| r.addr == format!("{ip}:{port}"))
                        .map(|r| r.scur)
                        .sum::<u64>()
                };
                let mut seen = 0;
                for _ in 0..20 {
                    seen = on_ip(&client.stats().expect("stats"));
                    if seen > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                if seen > 0 {
                    break;
                }
            }
        }
        threads
    }

    /// Stops the pump and the consumer; the hosts stop when dropped.
    async fn stop(mut self) -> Vec<Handled> {
        self.pump.stop();
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.consumer).await;
        let h = self.handled.lock().unwrap().clone();
        h
    }
}

/// The invocation that handled the lifecycle action event of `id` for `transition`.
fn action_event<'a>(handled: &'a [Handled], id: &str, transition: &str) -> &'a Handled {
    let kind = format!("{transition}-lifecycle-action");
    handled
        .iter()
        .find(|h| h.summary.event == kind && h.summary.actions.iter().any(|a| a.instance == id))
        .unwrap_or_else(|| panic!("no {kind} event of {id} was handled: {handled:#?}"))
}

/// The invocation that decided `decision` for `id`'s `transition`.
fn decided<'a>(handled: &'a [Handled], id: &str, transition: &str, decision: &str) -> &'a Handled {
    handled
        .iter()
        .find(|h| {
            h.summary.actions.iter().any(|a| {
                a.instance == id
                    && a.transition == transition
                    && a.decision == decision
                    && a.completed
            })
        })
        .unwrap_or_else(|| {
            panic!("nothing decided {decision} for the {transition} of {id}: {handled:#?}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_is_not_held_up_by_a_drain_and_each_action_completes_from_its_own_event() {
    let s = Stack::start(300, 30).await;
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
    let s = Stack::start(30, 120).await;
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
