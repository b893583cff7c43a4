//! `polling` (baseline, implemented here), as ElasticPyProxy does: the group has no
//! hooks and nothing is told of its changes; every `--poll-interval-s` (5 s) the loop
//! reads the group (DescribeAutoScalingGroups + DescribeInstances) and sets the slots
//! over each host's runtime socket (one connection per command): a new member's slot
//! gets its address and goes straight to `ready`, a removed member's slot straight to
//! `maint`, without drain. A cycle scales out to 3 and back to 2.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::haproxy::Client;
use harness::world::Blocking;
use harness::Host;
use infra::aws::AwsDiscovery;

use super::baseline::{self, serving_members, Baseline};
use super::Approach;
use crate::figures::Figures;
use crate::rig::{Rig, Setup};
use crate::trace::Trace;
use crate::{cleanup, cycle, POOL};
use stack::usage::CpuMark;

/// Its name.
pub const NAME: &str = "polling";

/// `polling`, started.
pub struct Polling {
    /// The group.
    group: String,
    baseline: Baseline,
}

impl Approach for Polling {
    fn start(setup: &Setup) -> anyhow::Result<(Self, Vec<Host>)> {
        let hosts = baseline::start(setup, NAME)?;
        let slots = Slots {
            clients: hosts.iter().map(Host::client).collect(),
            count: setup.args.slots,
            port: setup.port,
            assigned: BTreeMap::new(),
        };
        let every = Duration::from_secs_f64(setup.args.poll_interval_s.max(0.1));
        let group = setup.group.clone();
        let baseline = Baseline::start(&setup.world.world, move |discovery, stop| {
            polling_loop(discovery, stop, group, slots, every)
        })?;
        let polling = Self {
            group: setup.group.clone(),
            baseline,
        };
        Ok((polling, hosts))
    }

    fn cycle(&mut self, rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        cycle::scale_out_in(rig, c, f)
    }

    /// The loop's CPU time (its thread's).
    fn stop(&mut self, _: &Rig, _: &CpuMark, f: &mut Figures) -> anyhow::Result<Trace> {
        f.control_cpu_s = self.baseline.finish();
        Ok(Trace::default())
    }

    fn clean(self: Box<Self>, world: &Blocking) -> anyhow::Result<()> {
        cleanup::delete_group(world, &self.group)
    }
}

/// Every `every`, describe the group and set the slots to its in-service members.
async fn polling_loop(
    discovery: AwsDiscovery,
    stop: Arc<AtomicBool>,
    group: String,
    mut slots: Slots,
    every: Duration,
) -> f64 {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(50).min(next - Instant::now())).await;
            continue;
        }
        next += every;
        let Some(members) = serving_members(&discovery, &group, NAME).await else {
            continue;
        };
        slots.release_gone(&members);
        slots.assign_new(&members);
    }
    // Nothing outside the thread.
    0.0
}

/// The pool's slots (`slot1`..`slot<count>`) on every host, set over the runtime socket.
struct Slots {
    /// Each host's runtime socket.
    clients: Vec<Client>,
    count: u32,
    /// The members' port.
    port: u16,
    /// Member -> slot, the same on every host.
    assigned: BTreeMap<String, String>,
}

impl Slots {
    /// Puts the slots of the members no longer in `members` straight into MAINT.
    fn release_gone(&mut self, members: &BTreeMap<String, String>) {
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|id| !members.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(slot) = self.assigned.remove(&id) {
                self.send(&[format!("set server {POOL}/{slot} state maint")]);
            }
        }
    }

    /// Gives each new member of `members` a free slot, its address and state `ready`.
    fn assign_new(&mut self, members: &BTreeMap<String, String>) {
        for (id, ip) in members {
            if self.assigned.contains_key(id) {
                continue;
            }
            let used: BTreeSet<&String> = self.assigned.values().collect();
            let Some(slot) = (1..=self.count)
                .map(|i| format!("slot{i}"))
                .find(|s| !used.contains(s))
            else {
                eprintln!("{NAME}: no free slot for {id}");
                continue;
            };
            self.send(&[
                format!("set server {POOL}/{slot} addr {ip} port {}", self.port),
                format!("set server {POOL}/{slot} state ready"),
            ]);
            self.assigned.insert(id.clone(), slot);
        }
    }

    /// Sends `commands` to each host in turn; a command a host's socket did not take is
    /// said on stderr.
    fn send(&self, commands: &[String]) {
        for c in &self.clients {
            for command in commands {
                if let Err(e) = c.query(command) {
                    eprintln!("{NAME}: {command}: {e}");
                }
            }
        }
    }
}
