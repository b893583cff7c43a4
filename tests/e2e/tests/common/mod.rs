//! The stack the end-to-end lifecycle tests share: the emulator's Auto Scaling, EC2,
//! Run Command and EventBridge; two real HAProxy hosts with their agent service as the
//! proxy fleet; real backends on the instances' addresses; and the reactor, run as
//! Lambda runs it with one concurrent invocation (events handled one at a time, in the
//! order EventBridge delivered them).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::fleet::Fleet;
use harness::pump::Pump;
use harness::world::{
    autoscaling_pattern, commands_pattern, ec2_warnings_pattern, DOCUMENT, LAUNCH_HOOK, PROXY_TAG,
    TERMINATE_HOOK,
};
use harness::{free_port, http, unix_ms, GroupSpec, Host, HostSpec, PoolSpec, World};
use reactor::reactor::Summary;
use serde_json::Value;
use tokio::sync::mpsc;

/// The backend group.
pub const GROUP: &str = "web-asg";

/// One handled event: its kind, when its invocation started and how long it took, and
/// what the reactor answered.
#[derive(Debug, Clone)]
pub struct Handled {
    pub started_ms: u64,
    pub ms: u64,
    pub summary: Summary,
}

/// The stack under test.
pub struct Stack {
    pub w: Arc<World>,
    pub hosts: Vec<Host>,
    pub port: u16,
    pub fleet: Fleet,
    pump: Pump,
    /// Events for the reactor (the pump's, and scheduled ones).
    pub tx: mpsc::UnboundedSender<Value>,
    handled: Arc<Mutex<Vec<Handled>>>,
    consumer: tokio::task::JoinHandle<()>,
}

/// What to build.
pub struct StackSpec {
    /// The hooks' heartbeat timeout.
    pub heartbeat_s: i32,
    /// The pools' (and the reactor's) drain timeout.
    pub drain_s: u64,
    /// More reactor settings (`REBALANCE`, `SPOT_DRAIN_TIMEOUT_S`, ...).
    pub env: Vec<(&'static str, String)>,
    /// A warm pool on the group: `(min size, max prepared capacity, reuse on
    /// scale-in)`, instances stopped.
    pub warm_pool: Option<(i32, i32, bool)>,
    /// The group's desired capacity before the reactor starts (none of its events is
    /// handled: a warm pool fills then).
    pub initial: i32,
}

impl StackSpec {
    /// Hooks with `heartbeat_s`, pools draining for up to `drain_s`, nothing else.
    pub fn new(heartbeat_s: i32, drain_s: u64) -> Self {
        Self {
            heartbeat_s,
            drain_s,
            env: Vec::new(),
            warm_pool: None,
            initial: 0,
        }
    }
}

impl Stack {
    /// A group with both hooks, two proxy hosts, and the reactor consuming the group's,
    /// the document's and EC2's warning events.
    pub async fn start(spec: StackSpec) -> Self {
        let StackSpec {
            heartbeat_s,
            drain_s,
            ..
        } = spec;
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
                &[
                    autoscaling_pattern(&[GROUP]),
                    commands_pattern(DOCUMENT),
                    ec2_warnings_pattern(),
                ],
            )
            .expect("queue");
        // After the rules: its launches into the pool are events too.
        if let Some((min, prepared, reuse)) = spec.warm_pool {
            w.warm_pool(GROUP, min, prepared, reuse)
                .await
                .expect("warm pool");
        }
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
            spec.env
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    env.iter()
                        .find(|(n, _)| *n == k)
                        .map(|(_, v)| v.to_string())
                })
        })
        .expect("config");
        if spec.initial > 0 {
            w.scale(GROUP, spec.initial)
                .await
                .expect("initial capacity");
        }
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
            fleet,
            pump,
            tx,
            handled,
            consumer,
        }
    }

    pub fn handled(&self) -> Vec<Handled> {
        self.handled.lock().unwrap().clone()
    }

    /// The lifecycle action of `id` for `transition`: its result, who completed it, when
    /// it started and when it was completed (unix ms).
    pub fn action(&self, id: &str, transition: &str) -> Option<(String, String, u64, u64)> {
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
    pub async fn completed(
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
    pub async fn members(&self, n: usize) -> Vec<String> {
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
    pub async fn new_member(&self, known: &[String]) -> String {
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
    pub async fn launched(&self, n: usize) -> Vec<String> {
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
    pub async fn long_requests_to(
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
    pub async fn stop(mut self) -> Vec<Handled> {
        self.pump.stop();
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.consumer).await;
        let h = self.handled.lock().unwrap().clone();
        h
    }
}

/// The invocation that handled the lifecycle action event of `id` for `transition`.
pub fn action_event<'a>(handled: &'a [Handled], id: &str, transition: &str) -> &'a Handled {
    let kind = format!("{transition}-lifecycle-action");
    handled
        .iter()
        .find(|h| h.summary.event == kind && h.summary.actions.iter().any(|a| a.instance == id))
        .unwrap_or_else(|| panic!("no {kind} event of {id} was handled: {handled:#?}"))
}

/// The invocation that decided `decision` for `id`'s `transition`.
pub fn decided<'a>(
    handled: &'a [Handled],
    id: &str,
    transition: &str,
    decision: &str,
) -> &'a Handled {
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
