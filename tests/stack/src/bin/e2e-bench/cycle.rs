//! What the cycles share: the plain scale-out/scale-in cycle ([`scale_out_in`]: `ours`
//! and the baselines), the group's members before a change ([`members_before`]), the
//! wait for the new member to serve ([`await_new`]) and the wait for the scale-in to
//! settle ([`settle`]).

use std::collections::BTreeSet;
use std::time::Duration;

use harness::fleet::Instance;
use harness::world::GroupInstance;
use stack::until;

use crate::figures::{Figures, Sample};
use crate::rig::Rig;

/// A plain cycle: scale out to 3, wait until the new member serves, scale back to 2
/// (Auto Scaling takes the oldest) and wait until that settled.
pub fn scale_out_in(rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
    let (_, before) = members_before(rig)?;
    let t0 = rig.request();
    rig.world.scale(&rig.group, 3)?;
    await_new(rig, &before, t0, rig.wait_change, c, f);
    let leaving = rig
        .world
        .members(&rig.group)?
        .into_iter()
        .map(|m| m.id)
        .find(|id| before.contains(id));
    let leaving_ip = leaving.and_then(|id| rig.ip(&id));
    rig.world.scale(&rig.group, 2)?;
    settle(rig, leaving_ip.as_deref(), c, f);
    Ok(())
}

/// The group's members (oldest first) and their ids, before a cycle's change.
pub fn members_before(rig: &Rig) -> anyhow::Result<(Vec<GroupInstance>, BTreeSet<String>)> {
    let members = rig.world.members(&rig.group)?;
    let before = members.iter().map(|m| m.id.clone()).collect();
    Ok((members, before))
}

/// Waits (at most `wait`) for a member not in `before`, started since the scale request
/// at `t0`, to serve its first request through HAProxy; its sample goes to `f`, or an
/// error if none did.
pub fn await_new(
    rig: &Rig,
    before: &BTreeSet<String>,
    t0: u64,
    wait: Duration,
    c: usize,
    f: &mut Figures,
) {
    let mut new = None;
    let served = until(wait, || {
        new = rig
            .fleet
            .instances()
            .into_iter()
            .find(|i| !before.contains(&i.id) && i.started_ms >= t0 && i.first_ms.is_some());
        new.is_some()
    });
    match (&new, served) {
        (Some(i), true) => f.samples.push(sample(rig, i, t0)),
        _ => f.errors.push(format!(
            "cycle {c}: the new member served nothing within {:?}",
            rig.wait_change
        )),
    }
}

/// The sample of `new`, requested at `t0`, as the fleet and the watches saw it by now.
fn sample(rig: &Rig, new: &Instance, t0: u64) -> Sample {
    Sample {
        instance: new.id.clone(),
        requested_ms: t0,
        event_ms: None,
        received_ms: None,
        send_ms: None,
        sent_ms: None,
        host_ms: None,
        ready_ms: rig.last_host(&new.ip, |s| s.ready_ms),
        up_ms: rig.last_host(&new.ip, |s| s.up_ms),
        reported_ms: None,
        completed_ms: None,
        first_ms: new.first_ms.unwrap_or(t0),
    }
}

/// Waits (at most the rig's `wait_change`) until the group is back to 2 InService
/// members, 2 backends run and no host sends to `leaving_ip` any more; an error in `f`
/// if not.
pub fn settle(rig: &Rig, leaving_ip: Option<&str>, c: usize, f: &mut Figures) {
    // The local checks first: the group is asked (an AWS call, under the emulator's
    // lock) only once the fleet and the hosts agree, so this watch does not load
    // the emulator while the leaving member drains.
    let done = until(rig.wait_change, || {
        rig.fleet.running().len() == 2 && leaving_ip.is_none_or(|ip| !rig.in_rotation(ip)) && {
            let m = rig.world.members(&rig.group).unwrap_or_default();
            m.len() == 2 && m.iter().all(|x| x.state == "InService")
        }
    });
    if !done {
        f.errors.push(format!(
            "cycle {c}: scale-in did not settle within {:?}",
            rig.wait_change
        ));
    }
}
