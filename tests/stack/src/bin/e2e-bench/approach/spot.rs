//! `spot`: this project ([`Project`], as `ours`, the reactor's Spot drain deadline set
//! to [`SPOT_DRAIN`]) under Spot interruptions. A cycle sends EC2's interruption
//! warning for the oldest member, which EC2 reclaims [`SPOT_RECLAIM_MS`] later (the
//! member vanishes: no terminate lifecycle action), and Auto Scaling launches a
//! replacement. The warning reaches the reactor through the inbox; the reactor drains
//! the member on both hosts by the deadline, so that no request fails. A member still
//! in rotation when EC2 reclaims it is an error.
//!
//! [`Project`]: super::project::Project

use std::time::Duration;

use harness::unix_ms;
use stack::until;

use super::project::ProjectCycle;
use crate::cycle::{await_new, members_before, settle};
use crate::figures::Figures;
use crate::rig::Rig;

/// EC2 reclaims an instance this long after its warning.
pub const SPOT_RECLAIM_MS: u64 = 10_000;
/// The reactor's drain deadline after a warning (before the reclaim).
pub const SPOT_DRAIN: Duration = Duration::from_secs(8);

/// Its name.
pub const NAME: &str = "spot";

/// `spot`'s cycle.
pub struct Spot;

impl ProjectCycle for Spot {
    fn cycle(rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        let (members, before) = members_before(rig)?;
        let t0 = rig.request();
        // The warning; EC2 takes the instance 10 s later, Auto Scaling replaces it.
        let victim = members.first().map(|m| m.id.clone()).unwrap_or_default();
        let ip = rig.ip(&victim).unwrap_or_default();
        rig.world
            .spot_interruption(&victim, None, SPOT_RECLAIM_MS)?;
        let drained = until(Duration::from_millis(SPOT_RECLAIM_MS), || {
            !rig.in_rotation(&ip)
        });
        if drained {
            f.warning_to_drained.push(unix_ms().saturating_sub(t0));
        } else {
            f.errors.push(format!(
                "cycle {c}: {victim} was still in rotation when EC2 reclaimed it"
            ));
        }
        let wait = rig.wait_change + Duration::from_millis(SPOT_RECLAIM_MS);
        await_new(rig, &before, t0, wait, c, f);
        let leaving_ip = rig.ip(&victim);
        settle(rig, leaving_ip.as_deref(), c, f);
        Ok(())
    }
}
