//! From a group's truth to the change an event needs: which members join or leave
//! which pools ([`plan_group_change`]). Pure: no I/O here. What the events select is
//! [`crate::plan`]'s; the full membership a sync needs is infra's
//! ([`infra::aws::desired_pools`]), shared with the agent.

use std::collections::BTreeMap;

use infra::aws::{GroupMember, GroupState, Phase};
use infra::{Change, Member, MemberId, Pool, PoolChange};

/// A change planned from a group's truth.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlannedChange {
    /// Per pool: members to add, members to remove.
    pub pools: Vec<PoolChange>,
    /// Joining or serving members selected for the change that have no address yet:
    /// they can not be added now (a later event or the reconcile adds them).
    pub unaddressed: Vec<MemberId>,
}

impl PlannedChange {
    /// Whether nothing would be sent.
    pub fn is_empty(&self) -> bool {
        self.pools
            .iter()
            .all(|p| p.add.is_empty() && p.remove.is_empty())
    }

    /// The message, with its generation.
    pub fn into_change(self, generation: u64) -> Change {
        Change::new(generation, self.pools)
    }
}

/// Plans the change for `pools` from `state`, for the members `select` keeps.
///
/// Joining and serving members are added (with the pool's port), leaving members are
/// removed: the truth decides, whatever event asked. Members without an address can
/// not be added and are listed in [`PlannedChange::unaddressed`].
pub fn plan_group_change(
    pools: &[Pool],
    state: &GroupState,
    select: impl Fn(&GroupMember) -> bool,
) -> PlannedChange {
    let mut unaddressed = Vec::new();
    let mut add_ids = Vec::new();
    let mut remove = Vec::new();
    let mut drain_by_ms = BTreeMap::new();
    for m in state.members.iter().filter(|m| select(m)) {
        match (m.phase, m.address) {
            (Phase::Leaving, _) => {
                remove.push(m.id.clone());
                if let Some(by) = m.interrupted.and_then(|i| i.drain_by_ms) {
                    drain_by_ms.insert(m.id.clone(), by);
                }
            }
            (_, Some(addr)) => add_ids.push((m.id.clone(), addr, m.zone.clone())),
            (_, None) => unaddressed.push(m.id.clone()),
        }
    }
    let pools = pools
        .iter()
        .map(|p| PoolChange {
            pool: p.name.clone(),
            add: add_ids
                .iter()
                .filter_map(|(id, addr, zone)| {
                    let m = Member::new(id.clone(), *addr, p.port).ok()?;
                    Some(m.with_zone(zone.clone()).with_weight(p.weight))
                })
                .collect(),
            remove: remove.clone(),
            drain_by_ms: drain_by_ms.clone(),
        })
        .collect();
    PlannedChange { pools, unaddressed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{group, member, pool};

    fn state(members: Vec<GroupMember>) -> GroupState {
        group("g", members, 1000)
    }

    #[test]
    fn the_truth_decides_add_or_remove() {
        let s = state(vec![
            member("i-1", "InService", Some("10.0.0.1")),
            member("i-2", "Pending:Wait", Some("10.0.0.2")),
            member("i-3", "Terminating:Wait", Some("10.0.0.3")),
            member("i-4", "Pending", None),
        ]);
        let pools = [pool("web", 8080), pool("api", 9000)];
        let plan = plan_group_change(&pools, &s, |_| true);
        assert_eq!(plan.pools.len(), 2);
        let web = &plan.pools[0];
        assert_eq!(
            web.add.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["i-1", "i-2"]
        );
        assert_eq!(web.add[0].port.get(), 8080);
        assert_eq!(plan.pools[1].add[0].port.get(), 9000);
        assert_eq!(web.remove, [MemberId::new("i-3").unwrap()]);
        assert_eq!(plan.unaddressed, [MemberId::new("i-4").unwrap()]);
        // Selecting one member: only it.
        let plan = plan_group_change(&pools, &s, |m| m.id.as_str() == "i-3");
        assert!(plan.pools.iter().all(|p| p.add.is_empty()));
        assert!(!plan.is_empty());
        let change = plan.into_change(7);
        assert_eq!(change.generation, 7);
        // The message is valid for the agent.
        assert_eq!(Change::from_json(&change.to_json()).unwrap(), change);
    }

    #[test]
    fn an_interrupted_member_is_removed_with_its_deadline() {
        use infra::aws::Interruption;
        let s = state(vec![
            member("i-1", "InService", Some("10.0.0.1")).interrupt(Interruption {
                drain_by_ms: Some(90_000),
            }),
            member("i-2", "InService", Some("10.0.0.2"))
                .interrupt(Interruption { drain_by_ms: None }),
            member("i-3", "InService", Some("10.0.0.3")),
        ]);
        let pools = [pool("web", 8080)];
        let plan = plan_group_change(&pools, &s, |_| true);
        let web = &plan.pools[0];
        assert_eq!(
            web.add.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["i-3"]
        );
        assert_eq!(web.remove.len(), 2);
        assert_eq!(
            web.drain_by_ms,
            BTreeMap::from([(MemberId::new("i-1").unwrap(), 90_000)])
        );
        let change = plan.into_change(1);
        assert_eq!(Change::from_json(&change.to_json()).unwrap(), change);
    }
}
