//! The stack the end-to-end lifecycle tests share: the emulator's Auto Scaling, EC2,
//! Run Command, EventBridge, SQS and DynamoDB; two real HAProxy hosts, the proxy group's
//! instances, with their agent service reporting to the reactor's inbox; real backends
//! on the instances' addresses; and the reactor, fed by the inbox as Lambda's SQS event
//! source mapping feeds it (one poller: batches handled one at a time, in the order the
//! queue gave them). The control plane and the reactor's run are the `stack` crate's,
//! as the demo and e2e-bench run them; the backend group and the waits are the tests'.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use harness::fleet::Fleet;
use harness::pump::{Delivery, Pump};
use harness::world::{
    autoscaling_pattern, ec2_warnings_pattern, ControlPath, LAUNCH_HOOK, PROXY_GROUP,
    TERMINATE_HOOK,
};
use harness::{
    free_port, http, wait_for_async, GroupSpec, Host, HostSpec, PoolSpec, ReactorEnv, World,
};
use reactor::summary::Summary;
use serde_json::Value;
use stack::control::{self, ReactorRun, RunOptions};
use stack::plane::{ControlPlane, PlaneSpec};

/// The backend group.
pub const GROUP: &str = "web-asg";

/// One handled invocation: how long it took, and what it did.
#[derive(Debug, Clone)]
pub struct Handled {
    pub ms: u64,
    pub summary: Summary,
}

impl Handled {
    /// Whether it handled an input of `kind`.
    pub fn is(&self, kind: &str) -> bool {
        self.summary.inputs.contains_key(kind)
    }
}

/// The stack under test: the world, its backend group and fleet, and the stack crate's
/// control plane ([`ControlPlane`]) and reactor ([`ReactorRun`], one invocation at a
/// time, fed by one poller).
pub struct Stack {
    pub w: Arc<World>,
    pub hosts: Vec<Host>,
    pub port: u16,
    pub fleet: Fleet,
    pub path: ControlPath,
    pump: Pump,
    reactor: ReactorRun,
    /// What the reactor handled: received, and taken from the channel so far.
    handled: Mutex<(mpsc::Receiver<control::Handled>, Vec<Handled>)>,
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
    /// How many proxies.
    pub proxies: usize,
    /// More group tags (propagated to the instances it launches).
    pub tags: Vec<(&'static str, String)>,
    /// The group over two subnets in [`ZONES`], the proxies one in each zone with
    /// `zone_affinity = "prefer"`, and the reactor sending members' zones.
    pub zones: bool,
}

/// The zones of a [`StackSpec::zones`] stack: proxy `i` is in `ZONES[i]`.
pub const ZONES: [&str; 2] = ["us-east-1a", "us-east-1b"];

impl StackSpec {
    /// Hooks with `heartbeat_s`, pools draining for up to `drain_s`, two proxies.
    pub fn new(heartbeat_s: i32, drain_s: u64) -> Self {
        Self {
            heartbeat_s,
            drain_s,
            env: Vec::new(),
            warm_pool: None,
            initial: 0,
            proxies: 2,
            tags: Vec::new(),
            zones: false,
        }
    }
}

/// The health timeout of the stack's pools and reactor.
pub const HEALTH_S: u64 = 10;

impl Stack {
    /// A group with both hooks, the proxies, and the reactor consuming the inbox.
    pub async fn start(spec: StackSpec) -> Self {
        let w = Arc::new(World::start(None).await.expect("emulated world"));
        let port = free_port();
        let subnet = match spec.zones {
            false => w.subnet.clone(),
            true => zone_subnets(&w).await,
        };
        let group = spec.tags.iter().fold(
            GroupSpec::new(GROUP, &subnet).hooks(spec.heartbeat_s),
            |g, (k, v)| g.tag(k, v),
        );
        w.group(&group).await.expect("group");
        let ControlPlane { path, hosts } = ControlPlane::start(&w, plane(&spec, port))
            .await
            .expect("control plane");
        // After the rules: its launches into the pool are events too.
        if let Some((min, prepared, reuse)) = spec.warm_pool {
            w.warm_pool(GROUP, min, prepared, reuse)
                .await
                .expect("warm pool");
        }
        let fleet = Fleet::start(
            Arc::clone(&w),
            &subnet,
            port,
            "web",
            Duration::from_millis(50),
            Duration::from_secs(600),
        );
        if spec.initial > 0 {
            w.scale(GROUP, spec.initial)
                .await
                .expect("initial capacity");
        }
        let mut env = spec.env.clone();
        if spec.zones {
            env.push(("MEMBER_ZONES", "true".into()));
        }
        let config = reactor_config(&path, port, spec.drain_s, &env);
        let (report, reports) = mpsc::channel();
        let options = RunOptions {
            reconcile: None,
            one_at_a_time: true,
        };
        let reactor = ReactorRun::start_with(&w, config, options, report).expect("reactor");
        let pump = reactor.pump(&w, &path, 1, Duration::from_secs(600));
        Self {
            w,
            hosts,
            port,
            fleet,
            path,
            pump,
            reactor,
            handled: Mutex::new((reports, Vec::new())),
        }
    }

    /// What the reactor handled so far; panics if it failed on something (the error
    /// and what it was given).
    pub fn handled(&self) -> Vec<Handled> {
        let mut guard = self.handled.lock().unwrap();
        let (reports, seen) = &mut *guard;
        for h in reports.try_iter() {
            match h.result {
                Ok(summary) => seen.push(Handled { ms: h.ms, summary }),
                Err(e) => panic!("the reactor failed on {:?}: {e}", h.records),
            }
        }
        seen.clone()
    }

    /// Sends the schedule's event to the reactor (directly, as a bare event).
    pub fn schedule(&self) {
        self.reactor
            .sender()
            .send(Delivery::bare(harness::pump::scheduled_event("schedule")))
            .expect("schedule");
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
        wait_for_async(within, Duration::from_millis(50), || async {
            self.action(id, transition)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the {transition} action of {id} was not completed within {within:?}: {:#?}",
                self.handled()
            )
        })
    }

    /// The group's members, waiting (bounded) until there are `n` of them.
    pub async fn members(&self, n: usize) -> Vec<String> {
        let seen = std::cell::Cell::new(0);
        wait_for_async(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || async {
                let m = self.w.members(GROUP).await.expect("members");
                seen.set(m.len());
                (m.len() == n).then(|| m.into_iter().map(|m| m.id).collect())
            },
        )
        .await
        .unwrap_or_else(|| panic!("{} members, not {n}", seen.get()))
    }

    /// The first member (waiting, bounded) that is not one of `known`.
    pub async fn new_member(&self, known: &[String]) -> String {
        wait_for_async(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                let m = self.w.members(GROUP).await.expect("members");
                m.into_iter().find(|m| !known.contains(&m.id)).map(|m| m.id)
            },
        )
        .await
        .expect("no new member within 20 s")
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
            threads.extend(long_requests_on(h, ip, self.port, ms).await);
        }
        threads
    }

    /// Waits (bounded) until Run Command ended every one of `commands` (their
    /// command-level status event): every host accepted the change they carry.
    pub async fn commands_ended(&self, commands: &[String], within: Duration) {
        wait_for_async(within, Duration::from_millis(50), || async {
            let events = self.w.events().expect("events");
            let ended = |id: &String| {
                events.iter().any(|e| {
                    e["detail-type"] == "EC2 Command Status-change Notification"
                        && e["detail"]["command-id"] == id.as_str()
                        && e["detail"]["status"] != "InProgress"
                })
            };
            commands.iter().all(ended).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("commands {commands:?} did not end within {within:?}"))
    }

    /// Stops the pump and the reactor (what is in flight finishes, bounded); what it
    /// handled. The hosts stop when dropped.
    pub async fn stop(mut self) -> Vec<Handled> {
        self.pump.stop();
        self.reactor.finish();
        self.handled()
    }
}

/// Two backend subnets, one in each of [`ZONES`]: their ids, comma-joined (a group's
/// `VPCZoneIdentifier`, the fleet's subnets).
async fn zone_subnets(w: &World) -> String {
    let mut ids = Vec::new();
    for (zone, cidr) in ZONES.iter().zip(["127.0.3.0/24", "127.0.4.0/24"]) {
        ids.push(w.add_subnet_in(cidr, Some(zone)).await.expect("subnet"));
    }
    ids.join(",")
}

/// The control plane of `spec`: the inbox fed by the groups' Auto Scaling events and
/// EC2's warnings; the proxy fleet, with zones proxy `i` in `ZONES[i]`, its pool
/// preferring its zone.
fn plane(spec: &StackSpec, port: u16) -> PlaneSpec {
    let mut proxies: Vec<HostSpec> = (0..spec.proxies)
        .map(|_| proxy_spec(port, spec.drain_s))
        .collect();
    let mut zones = Vec::new();
    if spec.zones {
        for s in &mut proxies {
            for p in &mut s.pools {
                p.extra_toml = "zone_affinity = \"prefer\"\n".into();
            }
        }
        zones = ZONES.iter().map(|z| z.to_string()).collect();
    }
    PlaneSpec {
        name: "reactor".into(),
        rules: vec![
            autoscaling_pattern(&[GROUP, PROXY_GROUP]),
            ec2_warnings_pattern(),
        ],
        document_timeout_s: 120,
        proxy_subnet: "127.0.2.0/24".into(),
        proxies,
        zones,
    }
}

/// A proxy's host spec: the web pool on `port`, fast checks, drains up to `drain_s`.
pub fn proxy_spec(port: u16, drain_s: u64) -> HostSpec {
    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    pool.server_options = "check inter 100ms fall 2 rise 1".into();
    pool.health_timeout_s = HEALTH_S as f64;
    pool.drain_timeout_s = drain_s as f64;
    HostSpec {
        name: String::new(),
        pools: vec![pool],
        extra_toml: String::new(),
        env: Vec::new(),
    }
}

/// The reactor's configuration for `path`, the web pool on `port`, drains up to
/// `drain_s`, and `extra` settings.
pub fn reactor_config(
    path: &ControlPath,
    port: u16,
    drain_s: u64,
    extra: &[(&'static str, String)],
) -> reactor::config::Config {
    let env = ReactorEnv::new(path)
        .pool(GROUP, "web", port)
        .timeouts(HEALTH_S, drain_s)
        .hooks(&[LAUNCH_HOOK, TERMINATE_HOOK])
        .set_all(extra.iter().cloned());
    reactor::config::Config::from_lookup(|k| env.get(k)).expect("reactor config")
}

/// Requests through `h`'s frontend streaming for `ms`, opened until one lands on `ip`'s
/// server (round robin over the members), which `h` then shows holding a session.
pub async fn long_requests_on(
    h: &Host,
    ip: &str,
    port: u16,
    ms: u64,
) -> Vec<std::thread::JoinHandle<Result<(u16, usize), String>>> {
    let mut threads = Vec::new();
    let fe = h.frontend("web");
    let client = h.client();
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
        for _ in 0..20 {
            if on_ip(&client.stats().expect("stats")) > 0 {
                return threads;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The invocation that handled the lifecycle action event of `id` for `transition`.
pub fn action_event<'a>(handled: &'a [Handled], id: &str, transition: &str) -> &'a Handled {
    let kind = format!("{transition}-lifecycle-action");
    handled
        .iter()
        .find(|h| h.is(&kind) && h.summary.actions.iter().any(|a| a.instance == id))
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
