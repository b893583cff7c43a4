//! What HAProxy must be sent to match the slot table again after it lost state: the
//! agent service restarted while HAProxy ran on, or HAProxy was reloaded or restarted by
//! anyone (an operator's `systemctl reload`, a configuration management run, a package
//! upgrade) and its new worker came up from a configuration and a server-state file
//! that do not hold everything the table does.
//!
//! Pure: the slot table and HAProxy's server states in, the commands out. The service
//! ([`crate::service`]) reads the states, sends the commands and logs what was restored.

use std::collections::BTreeSet;

use infra::{MemberId, PoolName, Zone};

use crate::haproxy::{Command, Op};
use crate::slots::{EntryState, LiveSlots, PoolSlots};

/// Why a slot is sent something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// A member that was serving: its address and `ready` again, without health gating
    /// (it passed its checks a moment ago; a member that died since fails them again).
    Up,
    /// A member still joining: its address, `ready` and `health down` again, so it
    /// still serves only once its checks pass.
    Joining,
    /// A member or a stray server being drained that HAProxy serves normally again.
    Draining,
}

/// One slot brought back, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The member (`None` for a server being evicted).
    pub member: Option<MemberId>,
    /// Its slot.
    pub slot: u32,
    /// What it was restored to.
    pub restored: Restored,
}

/// The commands that make `live` (HAProxy's slots of `pool`) match `table`, each group
/// on one line, and what they restore. `check`: the pool's servers have health checks
/// (a join is gated by `health down` only then).
///
/// - a member `up` whose slot does not serve its address and port (maintenance, the
///   address HAProxy gave it at start, draining): address and `ready`;
/// - a member `joining` whose slot does not serve it: the join again (gated);
/// - a member `draining`, or a stray server being evicted, whose slot HAProxy serves
///   normally again: `drain` (a slot already in maintenance holds no sessions: the
///   drain ends at the next look);
/// - a slot HAProxy lacks (the block is smaller than the table): nothing here; the
///   caller grows the block first.
pub fn restore(
    pool: &PoolName,
    table: &PoolSlots,
    live: &LiveSlots,
    check: bool,
) -> (Vec<Vec<Command>>, Vec<Line>) {
    restore_away(pool, table, live, check, &BTreeSet::new())
}

/// [`restore`] on a host where the zones `away` are taken away: their members are
/// restored drained (address, `ready`, `drain` on one line: never a request between),
/// and one that HAProxy holds drained at its address is left so.
pub fn restore_away(
    pool: &PoolName,
    table: &PoolSlots,
    live: &LiveSlots,
    check: bool,
    away: &BTreeSet<Zone>,
) -> (Vec<Vec<Command>>, Vec<Line>) {
    let mut groups = Vec::new();
    let mut lines = Vec::new();
    let serving_normally = |slot: u32| {
        live.slots
            .get(&slot)
            .is_some_and(|s| !s.in_maint() && !s.draining())
    };
    for (id, e) in &table.members {
        if !live.slots.contains_key(&e.slot) {
            continue;
        }
        let is_away = e.zone.as_ref().is_some_and(|z| away.contains(z));
        let held = if is_away {
            live.holds(e.slot, e.address, e.port)
        } else {
            live.serves(e.slot, e.address, e.port)
        };
        let join = |check: bool| {
            let mut g = Command::join(pool, e.slot, e.address, e.port, check);
            if is_away {
                g.push(Command::new(pool, e.slot, Op::Drain));
            }
            g
        };
        let restored = match e.state {
            EntryState::Up if !held => {
                groups.push(join(false));
                Restored::Up
            }
            EntryState::Joining if !held => {
                groups.push(join(check));
                Restored::Joining
            }
            EntryState::Draining if serving_normally(e.slot) => {
                groups.push(vec![Command::new(pool, e.slot, Op::Drain)]);
                Restored::Draining
            }
            _ => continue,
        };
        lines.push(Line {
            member: Some(id.clone()),
            slot: e.slot,
            restored,
        });
    }
    for slot in table.evicting.keys() {
        if serving_normally(*slot) {
            groups.push(vec![Command::new(pool, *slot, Op::Drain)]);
            lines.push(Line {
                member: None,
                slot: *slot,
                restored: Restored::Draining,
            });
        }
    }
    (groups, lines)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use infra::Port;

    use super::*;
    use crate::haproxy::ServerState;
    use crate::slots::{Entry, Eviction};

    fn web() -> PoolName {
        PoolName::new("web").unwrap()
    }

    /// `n` slots as a new worker starts them: maintenance at 0.0.0.0.
    fn fresh(n: u32) -> LiveSlots {
        LiveSlots {
            slots: (1..=n)
                .map(|i| {
                    let s = ServerState {
                        backend: "web".into(),
                        server: format!("slot{i}"),
                        addr: "0.0.0.0".into(),
                        port: 80,
                        op_state: 0,
                        admin_state: 0x01,
                        uweight: 1,
                        iweight: 1,
                    };
                    (i, s)
                })
                .collect(),
        }
    }

    fn serve(l: &mut LiveSlots, slot: u32, last: u8, admin: u32) {
        let s = l.slots.get_mut(&slot).unwrap();
        s.addr = format!("10.0.0.{last}");
        s.admin_state = admin;
        s.op_state = 2;
    }

    fn entry(slot: u32, last: u8, state: EntryState) -> Entry {
        Entry {
            slot,
            address: IpAddr::from([10, 0, 0, last]),
            port: Port::new(80).unwrap(),
            generation: 1,
            state,
            op: None,
            zone: None,
            weight: None,
            touched: 0,
        }
    }

    fn table(entries: &[(&str, Entry)]) -> PoolSlots {
        let mut t = PoolSlots::default();
        for (id, e) in entries {
            t.members.insert(MemberId::new(*id).unwrap(), e.clone());
        }
        t
    }

    fn lines(l: &[Line]) -> Vec<(Option<String>, u32, Restored)> {
        l.iter()
            .map(|l| {
                (
                    l.member.as_ref().map(ToString::to_string),
                    l.slot,
                    l.restored,
                )
            })
            .collect()
    }

    #[test]
    fn a_member_of_an_away_zone_comes_back_drained_and_stays_so() {
        let a = Zone::new("zone-a").unwrap();
        let mut e = entry(1, 1, EntryState::Up);
        e.zone = Some(a.clone());
        let t = table(&[("i-a", e)]);
        let away = BTreeSet::from([a]);
        let (groups, _) = restore_away(&web(), &t, &fresh(2), true, &away);
        let text: Vec<String> = groups[0].iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "set server web/slot1 addr 10.0.0.1 port 80",
                "set server web/slot1 state ready",
                "set server web/slot1 state drain"
            ]
        );
        // Drained at its address already: left so.
        let mut live = fresh(2);
        serve(&mut live, 1, 1, 0x08);
        assert!(restore_away(&web(), &t, &live, true, &away).0.is_empty());
    }

    #[test]
    fn a_new_worker_from_a_stale_state_file_gets_every_member_back() {
        let t = table(&[
            ("i-up", entry(1, 1, EntryState::Up)),
            ("i-join", entry(2, 2, EntryState::Joining)),
            ("i-drain", entry(3, 3, EntryState::Draining)),
        ]);
        let (groups, l) = restore(&web(), &t, &fresh(4), true);
        // The draining member's slot is in maintenance: no sessions, its drain ends.
        assert_eq!(
            lines(&l),
            vec![
                (Some("i-join".into()), 2, Restored::Joining),
                (Some("i-up".into()), 1, Restored::Up),
            ]
        );
        let ip = |last| IpAddr::from([10, 0, 0, last]);
        let port = Port::new(80).unwrap();
        assert_eq!(
            groups,
            vec![
                Command::join(&web(), 2, ip(2), port, true),
                // Serving a moment ago: back at once, not gated by a new rise.
                Command::join(&web(), 1, ip(1), port, false),
            ]
        );
        assert!(!groups[1].contains(&Command::new(&web(), 1, Op::HealthDown)));
        assert!(groups[0].contains(&Command::new(&web(), 2, Op::HealthDown)));
        // A state file that had it before its drain: HAProxy serves it normally again.
        let mut live = fresh(4);
        serve(&mut live, 3, 3, 0);
        let (groups, l) = restore(&web(), &t, &live, true);
        assert_eq!(
            l[0],
            Line {
                member: Some(MemberId::new("i-drain").unwrap()),
                slot: 3,
                restored: Restored::Draining
            }
        );
        assert_eq!(groups[0], vec![Command::new(&web(), 3, Op::Drain)]);
    }

    #[test]
    fn what_haproxy_still_serves_right_is_left_alone() {
        let t = table(&[
            ("i-up", entry(1, 1, EntryState::Up)),
            ("i-join", entry(2, 2, EntryState::Joining)),
            ("i-drain", entry(3, 3, EntryState::Draining)),
        ]);
        let mut live = fresh(4);
        serve(&mut live, 1, 1, 0);
        serve(&mut live, 2, 2, 0);
        serve(&mut live, 3, 3, 0x08);
        let (groups, l) = restore(&web(), &t, &live, true);
        assert!(groups.is_empty() && l.is_empty(), "{groups:?}");
        // Without checks a join is not gated.
        let (groups, _) = restore(&web(), &t, &fresh(4), false);
        assert!(groups.iter().flatten().all(|c| c.op != Op::HealthDown));
    }

    #[test]
    fn a_wrong_address_or_a_drain_by_hand_is_set_right() {
        let t = table(&[("i-up", entry(1, 1, EntryState::Up))]);
        let mut live = fresh(2);
        serve(&mut live, 1, 9, 0);
        let (_, l) = restore(&web(), &t, &live, true);
        assert_eq!(lines(&l), vec![(Some("i-up".into()), 1, Restored::Up)]);
        serve(&mut live, 1, 1, 0x08);
        let (_, l) = restore(&web(), &t, &live, true);
        assert_eq!(lines(&l), vec![(Some("i-up".into()), 1, Restored::Up)]);
    }

    #[test]
    fn slots_the_block_lacks_and_strays_already_out_are_not_sent_anything() {
        let mut t = table(&[("i-far", entry(9, 9, EntryState::Up))]);
        t.evicting.insert(
            2,
            Eviction {
                addr: "10.0.0.7:80".into(),
                started_ms: 0,
                deadline_ms: 1,
                touched: 0,
            },
        );
        let (groups, l) = restore(&web(), &t, &fresh(4), true);
        assert!(groups.is_empty() && l.is_empty(), "{groups:?}");
        // A stray HAProxy serves again (the state file had it): drained again.
        let mut live = fresh(4);
        serve(&mut live, 2, 7, 0);
        let (groups, l) = restore(&web(), &t, &live, true);
        assert_eq!(lines(&l), vec![(None, 2, Restored::Draining)]);
        assert_eq!(groups, vec![vec![Command::new(&web(), 2, Op::Drain)]]);
    }
}
