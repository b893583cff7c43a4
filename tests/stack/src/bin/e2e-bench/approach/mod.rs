//! The approaches compared, one file each: `ours`, `mixed` and `spot` (this project,
//! on [`project::Project`]) and the two baselines, `reload_per_change` and `polling`
//! (on [`baseline::Baseline`]); the [`Approach`] trait the run drives them through and
//! their `--approaches` names ([`by_name`]).

mod baseline;
mod mixed;
mod ours;
mod polling;
mod project;
mod reload;
mod spot;
mod stages;

use harness::world::Blocking;
use harness::Host;

use self::project::OnProject;
use crate::figures::Figures;
use crate::rig::{Rig, Setup};
use crate::trace::Trace;
use stack::usage::CpuMark;

/// One way of delivering an Auto Scaling group's membership changes to the HAProxy
/// hosts, as the run drives it: started, cycled, stopped, cleaned away.
pub trait Approach {
    /// Creates the approach's group, its two HAProxy hosts and its control plane, and
    /// starts the control plane; the hosts.
    fn start(setup: &Setup) -> anyhow::Result<(Self, Vec<Host>)>
    where
        Self: Sized;

    /// Cycle `c`: one change of membership, waited for until the new member serves and
    /// the group settled; its sample, or its errors, go to `f`.
    fn cycle(&mut self, rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()>;

    /// Stops the control plane: its CPU time since `since` (the start of the cycles) and
    /// the stages only it saw go to `f`; what it adds to the `--trace` file.
    fn stop(&mut self, rig: &Rig, since: &CpuMark, f: &mut Figures) -> anyhow::Result<Trace>;

    /// Once the hosts are gone, removes what [`Approach::start`] created in the
    /// emulator: the next approach finds it as this one did.
    fn clean(self: Box<Self>, world: &Blocking) -> anyhow::Result<()>;

    /// What the control plane did so far, for the diagnostics of a failed setup (the
    /// reactor's invocations; nothing for the baselines).
    fn handled(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// An approach the run can start: its name (in `--approaches`, the progress lines, the
/// table, the JSON) and its [`Approach::start`].
pub struct Kind {
    pub name: &'static str,
    pub start: Start,
}

/// [`Approach::start`] of one approach, boxed.
pub type Start = fn(&Setup) -> anyhow::Result<(Box<dyn Approach>, Vec<Host>)>;

fn boxed<A: Approach + 'static>(setup: &Setup) -> anyhow::Result<(Box<dyn Approach>, Vec<Host>)> {
    let (approach, hosts) = A::start(setup)?;
    Ok((Box::new(approach), hosts))
}

/// Every approach, in the default order.
static ALL: [Kind; 5] = [
    Kind {
        name: ours::NAME,
        start: boxed::<OnProject<ours::Ours>>,
    },
    Kind {
        name: mixed::NAME,
        start: boxed::<OnProject<mixed::Mixed>>,
    },
    Kind {
        name: spot::NAME,
        start: boxed::<OnProject<spot::Spot>>,
    },
    Kind {
        name: reload::NAME,
        start: boxed::<reload::Reload>,
    },
    Kind {
        name: polling::NAME,
        start: boxed::<polling::Polling>,
    },
];

/// The approach named `name` in `--approaches` (`reload` is `reload_per_change`).
pub fn by_name(name: &str) -> anyhow::Result<&'static Kind> {
    let name = if name == "reload" { reload::NAME } else { name };
    ALL.iter().find(|k| k.name == name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown approach {name:?} (ours, mixed, spot, reload_per_change, polling, zones)"
        )
    })
}
