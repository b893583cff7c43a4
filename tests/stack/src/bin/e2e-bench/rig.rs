//! What an approach runs on: [`Setup`], what its start is given (the emulator, its
//! group's name, subnet and port, the settings), and [`Rig`], what its cycles are given
//! (the group, its two HAProxy hosts, a watch of each host's servers, the fleet of local
//! backends playing the group's instances).

use std::sync::atomic::Ordering;
use std::time::Duration;

use harness::fleet::{Fleet, Instance};
use harness::watch::{Seen, SocketWatch};
use harness::world::Blocking;
use harness::{free_port, unix_ms, GroupSpec, Host};

use crate::{Args, POOL};

/// How long the watches, the fleet, the load and the pumps may run at most.
pub const MAX: Duration = Duration::from_secs(6 * 3600);

/// What an approach's start is given.
pub struct Setup<'a> {
    pub world: &'a Blocking,
    pub args: &'a Args,
    /// The approach's place in the run: its subnets and the names of its queues.
    pub idx: usize,
    /// Its group: `bench-<approach>`.
    pub group: String,
    /// The group's subnet: a `/21` of its own.
    pub subnet: String,
    /// The members' port.
    pub port: u16,
}

impl<'a> Setup<'a> {
    /// The setup of approach `name`, the `idx`-th of the run: its group's name, its
    /// subnet (created) and a free port.
    pub fn new(
        world: &'a Blocking,
        args: &'a Args,
        idx: usize,
        name: &str,
    ) -> anyhow::Result<Self> {
        let group = format!("bench-{}", name.replace('_', "-"));
        let port = free_port();
        let subnet = world.add_subnet(&format!("127.0.{}.0/21", 16 * (idx + 1)))?;
        Ok(Self {
            world,
            args,
            idx,
            group,
            subnet,
            port,
        })
    }

    /// Creates the group (at most 10 instances, its members in [`POOL`] on the port),
    /// with launch and terminate lifecycle hooks (heartbeat 120 s) when `hooks`.
    pub fn create_group(&self, hooks: bool) -> anyhow::Result<()> {
        let mut spec = GroupSpec::new(&self.group, &self.subnet).pool(POOL, self.port);
        spec.max = 10;
        if hooks {
            spec = spec.hooks(120);
        }
        self.world.group(&spec)
    }

    /// The name of the approach's control path or queue: `bench-<idx>`.
    pub fn prefix(&self) -> String {
        format!("bench-{}", self.idx)
    }
}

/// What an approach's cycles are given. Dropped in field order: the watches, the fleet,
/// the hosts.
pub struct Rig<'a> {
    pub world: &'a Blocking,
    /// The approach's group.
    pub group: String,
    /// How long a change may take to serve or to settle: 30 s + the poll interval.
    pub wait_change: Duration,
    /// A `show stat` watch of each host, every 5 ms.
    pub watches: Vec<SocketWatch>,
    /// The local backends playing the group's instances (polling every 50 ms).
    pub fleet: Fleet,
    /// The approach's two HAProxy hosts.
    pub hosts: Vec<Host>,
}

impl<'a> Rig<'a> {
    /// The watches of `hosts` and the fleet of `setup`'s group, started.
    pub fn start(setup: &Setup<'a>, hosts: Vec<Host>, tag: &str) -> Self {
        let watches = hosts
            .iter()
            .map(|h| SocketWatch::start(h.client(), POOL, Duration::from_millis(5), MAX))
            .collect();
        let fleet = Fleet::start(
            setup.world.world.clone(),
            &setup.subnet,
            setup.port,
            tag,
            Duration::from_millis(50),
            MAX,
        );
        Self {
            world: setup.world,
            group: setup.group.clone(),
            wait_change: Duration::from_secs(30)
                + Duration::from_secs_f64(setup.args.poll_interval_s),
            watches,
            fleet,
            hosts,
        }
    }

    /// A scale request now: the instances the fleet sees from here on carry it. Its
    /// time (unix ms).
    pub fn request(&self) -> u64 {
        let t0 = unix_ms();
        self.fleet.requested_ms.store(t0, Ordering::SeqCst);
        t0
    }

    /// The address of instance `id`, once the fleet has seen it.
    pub fn ip(&self, id: &str) -> Option<String> {
        self.fleet.instance(id).map(|i| i.ip)
    }

    /// When the server at `ip` got to `at` on the last host, as the watches saw it by
    /// now (`None` until every host has).
    pub fn last_host(&self, ip: &str, at: fn(&Seen) -> Option<u64>) -> Option<u64> {
        self.watches
            .iter()
            .map(|w| w.get(ip).as_ref().and_then(at))
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().max())
    }

    /// Whether `instance` is UP on every host.
    pub fn up_everywhere(&self, instance: &Instance) -> bool {
        self.watches
            .iter()
            .all(|w| w.get(&instance.ip).is_some_and(|s| s.up_ms.is_some()))
    }

    /// Whether any host still has a server with `ip` out of MAINT.
    pub fn in_rotation(&self, ip: &str) -> bool {
        self.hosts.iter().any(|h| serving_ip(h, ip))
    }

    /// Whether every host has a session open on the server with `ip`.
    pub fn in_session_everywhere(&self, ip: &str) -> bool {
        self.hosts.iter().all(|h| {
            h.client().stats().ok().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r.addr.rsplit_once(':').is_some_and(|(a, _)| a == ip) && r.scur > 0)
            })
        })
    }

    /// The reloads the hosts' HAProxy did so far. A host whose master did not answer
    /// counts 0, and `errors` says so.
    pub fn reloads(&self, errors: &mut Vec<String>) -> u64 {
        self.hosts
            .iter()
            .map(|h| match h.reloads() {
                Ok(n) => n,
                Err(e) => {
                    errors.push(format!("reloads: {}'s count unread: {e:#}", h.name));
                    0
                }
            })
            .sum()
    }
}

/// Whether any server of `host`'s pool has `ip` and is not in MAINT.
fn serving_ip(host: &Host, ip: &str) -> bool {
    host.client().stats().ok().is_some_and(|rows| {
        rows.iter().any(|r| {
            r.backend == POOL
                && r.addr.rsplit_once(':').is_some_and(|(a, _)| a == ip)
                && !r.status.starts_with("MAINT")
        })
    })
}
