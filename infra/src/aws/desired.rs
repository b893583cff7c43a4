//! From groups' truth to the full membership a sync needs ([`desired_pools`],
//! [`desired_from_states`]), and the generations that order every message
//! ([`Generations`]). Pure. (The change an event needs is the reactor's to plan.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{now_ms, Desired, Member, MemberId, Pool, PoolDesired, PoolName};

use super::group::{GroupState, Phase};

/// Hands out generations that only grow: the time of the read, or one more than the
/// last generation handed out when the clock has not moved past it.
#[derive(Debug, Default)]
pub struct Generations {
    last: AtomicU64,
}

impl Generations {
    /// A fresh counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The generation for a state read at `read_at_ms`: `max(read_at_ms, last + 1)`.
    pub fn next(&self, read_at_ms: u64) -> u64 {
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = read_at_ms.max(prev.saturating_add(1));
            match self
                .last
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => prev = seen,
            }
        }
    }

    /// Notes a generation seen elsewhere (for example in a host's report), so the next
    /// one is newer still.
    pub fn observe(&self, generation: u64) {
        self.last.fetch_max(generation, Ordering::Relaxed);
    }
}

/// The full membership of the pools fed by some groups: every joining or serving
/// member with an address. A pool fed by several groups gets all of their members.
pub fn desired_pools<'a>(
    groups: impl IntoIterator<Item = (&'a [Pool], &'a GroupState)>,
) -> Vec<PoolDesired> {
    let mut by_pool: BTreeMap<PoolName, (BTreeSet<MemberId>, Vec<Member>)> = BTreeMap::new();
    for (pools, state) in groups {
        for pool in pools {
            let entry = by_pool.entry(pool.name.clone()).or_default();
            for m in &state.members {
                if m.phase == Phase::Leaving {
                    continue;
                }
                let Some(addr) = m.address else { continue };
                if !entry.0.insert(m.id.clone()) {
                    continue;
                }
                if let Ok(member) = Member::new(m.id.clone(), addr, pool.port) {
                    entry
                        .1
                        .push(member.with_zone(m.zone.clone()).with_weight(pool.weight));
                }
            }
        }
    }
    by_pool
        .into_iter()
        .map(|(pool, (_, members))| PoolDesired { pool, members })
        .collect()
}

/// The desired state of the pools fed by `groups`, with the generation taken from the
/// latest read among them (through `generations`, so it only grows).
pub fn desired_from_states(
    groups: &[(Vec<Pool>, GroupState)],
    generations: &Generations,
) -> Desired {
    let read = groups
        .iter()
        .map(|(_, s)| s.read_at_ms)
        .max()
        .unwrap_or_else(now_ms);
    let pools = desired_pools(groups.iter().map(|(p, s)| (p.as_slice(), s)));
    Desired::new(generations.next(read), pools)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::group::GroupMember;
    use crate::{GroupName, Port};

    fn pool(name: &str, port: i64) -> Pool {
        Pool {
            name: PoolName::new(name).unwrap(),
            port: Port::new(port).unwrap(),
            server_options: Default::default(),
            weight: None,
        }
    }

    fn member(id: &str, state: &str, addr: Option<&str>) -> GroupMember {
        GroupMember::new(
            MemberId::new(id).unwrap(),
            state,
            Some("running".into()),
            addr.map(|a| a.parse().unwrap()),
        )
    }

    fn state(members: Vec<GroupMember>) -> GroupState {
        GroupState {
            name: GroupName::new("g").unwrap(),
            tags: BTreeMap::new(),
            members,
            read_at_ms: 1000,
        }
    }

    #[test]
    fn generations_only_grow() {
        let g = Generations::new();
        assert_eq!(g.next(100), 100);
        assert_eq!(g.next(100), 101);
        assert_eq!(g.next(50), 102, "a clock going back never lowers it");
        assert_eq!(g.next(500), 500);
        g.observe(900);
        assert_eq!(g.next(600), 901);
    }

    #[test]
    fn an_interrupted_member_is_never_desired() {
        use super::super::group::Interruption;
        let s = state(vec![
            member("i-1", "InService", Some("10.0.0.1")).interrupt(Interruption {
                drain_by_ms: Some(90_000),
            }),
            member("i-2", "InService", Some("10.0.0.2"))
                .interrupt(Interruption { drain_by_ms: None }),
            member("i-3", "InService", Some("10.0.0.3")),
        ]);
        let pools = [pool("web", 8080)];
        let d = desired_from_states(&[(pools.to_vec(), s)], &Generations::new());
        assert_eq!(d.pools[0].members.len(), 1);
    }

    #[test]
    fn desired_merges_groups_feeding_one_pool() {
        let a = state(vec![
            member("i-1", "InService", Some("10.0.0.1")),
            member("i-3", "Terminating", Some("10.0.0.3")),
        ]);
        let mut b = state(vec![member("i-2", "Pending:Wait", Some("10.0.0.2"))]);
        b.read_at_ms = 2000;
        let groups = vec![
            (vec![pool("web", 80)], a),
            (vec![pool("web", 81), pool("blue", 82)], b),
        ];
        let g = Generations::new();
        let d = desired_from_states(&groups, &g);
        assert_eq!(d.generation, 2000);
        assert_eq!(d.pools.len(), 2);
        let web = d.pools.iter().find(|p| p.pool.as_str() == "web").unwrap();
        assert_eq!(web.members.len(), 2);
        assert_eq!(web.members[1].port.get(), 81);
        assert_eq!(Desired::from_json(&d.to_json()).unwrap(), d);
        let d2 = desired_from_states(&groups, &g);
        assert!(d2.generation > d.generation);
    }
}
