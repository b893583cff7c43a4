//! `mixed`: this project ([`Project`], as `ours`) with launches and drains overlapping,
//! as in an instance refresh. A cycle puts two 5 s requests through each host (round
//! robin over the two members reaches both), waits (at most 3 s) until every host has
//! a session on the oldest member, and terminates that member without decrement: its
//! drain runs while Auto Scaling launches its replacement. Every one of those requests
//! must complete with a 200.
//!
//! [`Project`]: super::project::Project

use std::thread::JoinHandle;
use std::time::Duration;

use stack::until;

use super::project::ProjectCycle;
use crate::cycle::{await_new, members_before, settle};
use crate::figures::Figures;
use crate::rig::Rig;
use crate::POOL;

/// Its name.
pub const NAME: &str = "mixed";

/// `mixed`'s cycle.
pub struct Mixed;

/// A 5 s request in flight through a host: its response or its error.
type Slow = JoinHandle<std::io::Result<harness::http::Response>>;

impl ProjectCycle for Mixed {
    fn cycle(rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        let (members, before) = members_before(rig)?;
        let oldest = members.first().map(|m| m.id.clone()).unwrap_or_default();
        let slow = slow_requests(rig);
        let ip = rig.ip(&oldest).unwrap_or_default();
        until(Duration::from_secs(3), || rig.in_session_everywhere(&ip));
        let t0 = rig.request();
        // Terminated without decrement: Auto Scaling launches the replacement at once.
        rig.world.block_on(rig.world.terminate(&oldest, false))?;
        await_new(rig, &before, t0, rig.wait_change, c, f);
        let leaving_ip = rig.ip(&oldest);
        settle(rig, leaving_ip.as_deref(), c, f);
        for s in slow {
            match s.join() {
                Ok(Ok(r)) if r.status == 200 => {}
                other => {
                    f.slow_failed += 1;
                    f.errors.push(format!(
                        "cycle {c}: a request in flight on the leaving member failed: {other:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Two 5 s requests through each host's frontend.
fn slow_requests(rig: &Rig) -> Vec<Slow> {
    let mut slow = Vec::new();
    for h in &rig.hosts {
        let fe = h.frontend(POOL);
        // Round robin over the two members: two requests reach both.
        for _ in 0..2 {
            slow.push(std::thread::spawn(move || {
                harness::http::get(fe, "/slow?ms=5000", Duration::from_secs(30))
            }));
        }
    }
    slow
}
