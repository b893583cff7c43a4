//! `ours`: this project as deployed ([`Project`]). Auto Scaling's lifecycle actions go
//! through EventBridge to the reactor's inbox (SQS); the reactor sends each change by
//! SSM Run Command of the project's document to the proxy hosts, where `agent apply`
//! hands it to the agent services: a health-gated join into a free slot, a drain before
//! the release, no reload while slots are free. The hosts' reports come back through
//! the inbox and complete the lifecycle actions. A cycle scales out to 3 and back to 2.
//!
//! [`Project`]: super::project::Project

use super::project::ProjectCycle;
use crate::cycle;
use crate::figures::Figures;
use crate::rig::Rig;

/// Its name.
pub const NAME: &str = "ours";

/// `ours`'s cycle.
pub struct Ours;

impl ProjectCycle for Ours {
    fn cycle(rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        cycle::scale_out_in(rig, c, f)
    }
}
