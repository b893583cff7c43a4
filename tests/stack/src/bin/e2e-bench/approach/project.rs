//! This project's control plane, which `ours`, `mixed` and `spot` share: the group with
//! lifecycle hooks; its control path (the inbox fed by the group's and the proxies'
//! Auto Scaling events and EC2's warnings, the ledger, the proxies' role); the proxy
//! fleet, two HAProxy hosts whose agent services report to the inbox; the reactor,
//! in-process, fed from the inbox as Lambda's event source mapping feeds it, sending
//! the changes to the hosts through the project's SSM document.

use std::marker::PhantomData;
use std::sync::mpsc;

use harness::pump::Pump;
use harness::world::{autoscaling_pattern, ec2_warnings_pattern, Blocking, PROXY_GROUP};
use harness::Host;
use stack::control::{reactor_config, Handled, ReactorRun, DOCUMENT_TIMEOUT_S};
use stack::plane::{ControlPlane, PlaneSpec};
use stack::proxy_spec;

use super::spot::SPOT_DRAIN;
use super::stages::Stages;
use super::Approach;
use crate::cleanup;
use crate::figures::Figures;
use crate::rig::{Rig, Setup, MAX};
use crate::trace::{command_runs, handled_json, Trace};
use crate::POOL;
use stack::usage::{children_cpu_s, services_cpu_s, CpuMark};

/// The running control plane of one of this project's approaches.
pub struct Project {
    /// The approach's group.
    group: String,
    /// The inbox's queue name (`bench-<idx>-inbox`) and URL.
    inbox: (String, String),
    pump: Pump,
    reactor: ReactorRun,
    /// Every invocation the reactor handled.
    reports: mpsc::Receiver<Handled>,
}

/// The EventBridge rules feeding the inbox: the groups' Auto Scaling events, EC2's
/// warnings.
const INBOX_RULES: usize = 2;

impl Project {
    /// Creates the group (with hooks), the SSM document, the control path and the proxy
    /// fleet, and starts the reactor and the inbox's pollers; the proxy fleet's hosts.
    pub fn start(setup: &Setup) -> anyhow::Result<(Self, Vec<Host>)> {
        let world = setup.world;
        setup.create_group(true)?;
        let spec = PlaneSpec {
            name: setup.prefix(),
            rules: vec![
                autoscaling_pattern(&[&setup.group, PROXY_GROUP]),
                ec2_warnings_pattern(),
            ],
            document_timeout_s: DOCUMENT_TIMEOUT_S,
            proxy_subnet: format!("127.0.{}.0/24", 16 * (setup.idx + 1) + 8),
            proxies: (0..2)
                .map(|_| proxy_spec(POOL, setup.port, setup.args.slots, Some(&setup.group)))
                .collect(),
            zones: Vec::new(),
        };
        let ControlPlane { path, hosts } = world.block_on(ControlPlane::start(world, spec))?;
        let (report_tx, reports) = mpsc::channel();
        let mut config = reactor_config(&path, &setup.group, POOL, setup.port)?;
        // EC2 reclaims the bench's Spot instances 10 s after the warning.
        config.spot_drain_timeout = SPOT_DRAIN;
        let reactor = ReactorRun::start(world, config, None, report_tx)?;
        let pump = reactor.pump(&world.world, &path, setup.args.pollers, MAX);
        let project = Self {
            group: setup.group.clone(),
            inbox: (format!("{}-inbox", setup.prefix()), path.inbox),
            pump,
            reactor,
            reports,
        };
        Ok((project, hosts))
    }

    /// The reactor's invocations so far, as JSON lines ([`handled_json`]).
    pub fn handled(&mut self) -> Vec<String> {
        self.reports
            .try_iter()
            .map(|h| handled_json(&h).to_string())
            .collect()
    }

    /// Stops the pollers and the reactor; the samples' stages from the reactor's
    /// invocations and the emulator's logs ([`Stages`]), and the control plane's CPU
    /// time during the cycles: the reactor's thread, every Run Command the hosts ran
    /// (`agent apply` and its shell, which the emulator reaped by now) and the agent
    /// services, which do the joins and the drains.
    pub fn stop(&mut self, rig: &Rig, since: &CpuMark, f: &mut Figures) -> anyhow::Result<Trace> {
        self.pump.stop();
        let reactor_cpu = self.reactor.finish();
        let (stages, handled) = Stages::of(&self.reports);
        let events = rig.world.events()?;
        stages.apply(rig.world, &events, rig.hosts.len(), &mut f.samples)?;
        let agents = (children_cpu_s(rig.world.emulator.pid()) - since.commands_s).max(0.0);
        let agent_runs = command_runs(&events);
        let services = (services_cpu_s(&rig.hosts) - since.services_s).max(0.0);
        f.control_cpu_s = reactor_cpu + agents + services;
        Ok(Trace {
            reactor: handled,
            agent_runs,
        })
    }

    /// Deletes the proxy group (the next approach of ours starts a fresh one of the same
    /// name), the group, the inbox and its rules, and the SSM document.
    pub fn clean(self, world: &Blocking) -> anyhow::Result<()> {
        cleanup::delete_group(world, PROXY_GROUP)?;
        cleanup::delete_group(world, &self.group)?;
        cleanup::delete_queue(world, &self.inbox.0, &self.inbox.1, INBOX_RULES)?;
        cleanup::delete_document(world)
    }
}

/// What one of this project's approaches does in a cycle; [`OnProject`] is the rest.
pub trait ProjectCycle {
    /// Cycle `c` (as [`Approach::cycle`]).
    fn cycle(rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()>;
}

/// One of this project's approaches: the control plane ([`Project`]) and `C`'s cycle.
pub struct OnProject<C> {
    project: Project,
    cycle: PhantomData<C>,
}

impl<C: ProjectCycle> Approach for OnProject<C> {
    fn start(setup: &Setup) -> anyhow::Result<(Self, Vec<Host>)> {
        let (project, hosts) = Project::start(setup)?;
        let cycle = PhantomData;
        Ok((Self { project, cycle }, hosts))
    }

    fn cycle(&mut self, rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        C::cycle(rig, c, f)
    }

    fn stop(&mut self, rig: &Rig, since: &CpuMark, f: &mut Figures) -> anyhow::Result<Trace> {
        self.project.stop(rig, since, f)
    }

    fn clean(self: Box<Self>, world: &Blocking) -> anyhow::Result<()> {
        self.project.clean(world)
    }

    fn handled(&mut self) -> Vec<String> {
        self.project.handled()
    }
}
