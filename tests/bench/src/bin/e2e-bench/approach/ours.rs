//! `ours`: this project as deployed ([`Project`]). Auto Scaling's lifecycle actions go
//! through EventBridge to the reactor's inbox (SQS); the reactor sends each change by
//! SSM Run Command of the project's document to the proxy hosts, where `agent apply`
//! hands it to the agent services: a health-gated join into a free slot, a drain before
//! the release, no reload while slots are free. The hosts' reports come back through
//! the inbox and complete the lifecycle actions. A cycle scales out to 3 and back to 2.

use harness::world::Blocking;
use harness::Host;

use super::project::Project;
use super::Approach;
use crate::cpu::CpuMark;
use crate::cycle;
use crate::figures::Figures;
use crate::rig::{Rig, Setup};
use crate::trace::Trace;

/// Its name.
pub const NAME: &str = "ours";

/// `ours`, started.
pub struct Ours {
    project: Project,
}

impl Approach for Ours {
    fn start(setup: &Setup) -> anyhow::Result<(Self, Vec<Host>)> {
        let (project, hosts) = Project::start(setup)?;
        Ok((Self { project }, hosts))
    }

    fn cycle(&mut self, rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        cycle::scale_out_in(rig, c, f)
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
