//! The slot table and the planner: which member holds which slot, and what to do
//! about a change. Pure logic, no I/O, so every rule here is unit-tested.
//!
//! Rules:
//! - A member keeps its slot for its whole life; the lowest free slot is taken first,
//!   so freed slots are reused before untouched ones and high slots stay free to shrink.
//! - A slot is free only when the table has no member in it *and* HAProxy shows it in
//!   maintenance; a slot HAProxy serves that the table does not know is left alone
//!   (`agent sync` deals with it).
//! - Every member remembers the generation of the last message that touched it, and
//!   members that left are remembered (bounded) with the generation that removed them:
//!   an older message about them is `stale` and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use infra::{Member, MemberId, OutcomeStatus, Port};
use serde::{Deserialize, Serialize};

use crate::haproxy::ServerState;

/// How many departed members are remembered per pool for generation checks. Late
/// events arrive seconds to minutes late, and the reactor also checks the group's
/// truth before sending, so a thousand departures back is plenty; the table stays
/// small enough to read and write on every run.
pub const RETIRED_KEEP: usize = 1024;

/// The table format version written to disk.
pub const TABLE_VERSION: u32 = 1;

/// Every pool's slots; written to `slots.json` after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTable {
    /// Always [`TABLE_VERSION`].
    pub version: u32,
    /// Per pool (HAProxy backend name).
    pub pools: BTreeMap<String, PoolSlots>,
}

/// One pool's members and departed members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSlots {
    /// Members holding a slot.
    pub members: BTreeMap<MemberId, Entry>,
    /// Members that left, with the generation that removed them.
    #[serde(default)]
    pub retired: BTreeMap<MemberId, u64>,
}

/// Where a member is in its life on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Given its slot; waiting to pass health checks.
    Joining,
    /// Passed its checks; serving.
    Up,
    /// Taking no new requests; finishing the ones it has.
    Draining,
}

/// A member in its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The slot number (server `slot<N>`).
    pub slot: u32,
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: Port,
    /// The generation of the last message that touched it.
    pub generation: u64,
    /// Where it is in its life.
    pub state: EntryState,
}

impl PoolSlots {
    /// Slot numbers the table holds.
    pub fn used(&self) -> BTreeSet<u32> {
        self.members.values().map(|e| e.slot).collect()
    }

    /// The member in `slot`, if any.
    pub fn member_in(&self, slot: u32) -> Option<(&MemberId, &Entry)> {
        self.members.iter().find(|(_, e)| e.slot == slot)
    }

    /// Remembers that `id` left at `generation`, forgetting the oldest beyond the bound.
    pub fn retire(&mut self, id: &MemberId, generation: u64) {
        self.members.remove(id);
        let g = self.retired.entry(id.clone()).or_insert(0);
        *g = (*g).max(generation);
        while self.retired.len() > RETIRED_KEEP {
            let oldest = self
                .retired
                .iter()
                .min_by_key(|(_, g)| **g)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.retired.remove(&k),
                None => break,
            };
        }
    }
}

/// What the live HAProxy says about one pool's slots, by slot number.
#[derive(Debug, Clone, Default)]
pub struct LiveSlots {
    /// Slots declared in HAProxy, by number.
    pub slots: BTreeMap<u32, ServerState>,
}

impl LiveSlots {
    /// The slots of `backend` among `states`.
    pub fn of(backend: &str, states: &[ServerState]) -> Self {
        let slots = states
            .iter()
            .filter(|s| s.backend == backend)
            .filter_map(|s| crate::cfgfile::slot_number(&s.server).map(|n| (n, s.clone())))
            .collect();
        Self { slots }
    }

    /// The number of slots HAProxy has (the highest slot number).
    pub fn size(&self) -> u32 {
        self.slots.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether `slot` is at `addr:port`, ready (not maint, not drain).
    pub fn serves(&self, slot: u32, addr: IpAddr, port: Port) -> bool {
        self.slots.get(&slot).is_some_and(|s| {
            !s.in_maint()
                && !s.draining()
                && s.port == port.get()
                && s.addr.parse::<IpAddr>().ok() == Some(addr)
        })
    }
}

/// One thing to do for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bring `member` up in `slot`, health-gated.
    Join {
        /// The member.
        member: Member,
        /// Its slot.
        slot: u32,
        /// Send the address and state (false: HAProxy already has it, only wait for UP).
        set: bool,
        /// Newly joining in this message: on failure its slot is released.
        fresh: bool,
    },
    /// Drain `member` out of `slot`, then release the slot.
    Leave {
        /// The member.
        member: MemberId,
        /// Its slot.
        slot: u32,
    },
    /// A slot HAProxy serves that no member owns (drift): drain it and put it in maint.
    Evict {
        /// The slot.
        slot: u32,
        /// What HAProxy has there.
        addr: String,
    },
    /// Nothing to do; the outcome is already known.
    Done {
        /// The member.
        member: MemberId,
        /// Its slot, if it has one.
        slot: Option<u32>,
        /// The outcome.
        status: OutcomeStatus,
        /// Why, when not obvious.
        reason: Option<String>,
    },
}

/// The steps for one pool and the slot count they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPlan {
    /// In order: joins first, then leaves, then evictions and known outcomes.
    pub steps: Vec<Step>,
    /// Slots HAProxy must have for these steps (more than it has: grow first).
    pub size_needed: u32,
}

/// Plans adding `add` and removing `remove` at `generation`, updating `table` (slot
/// assignments and states) as if the steps succeed; the caller persists it before
/// touching HAProxy, so a killed agent leaves an accurate record of its intent.
pub fn plan_change(
    table: &mut PoolSlots,
    live: &LiveSlots,
    add: &[Member],
    remove: &[MemberId],
    generation: u64,
) -> PoolPlan {
    let mut steps = Vec::new();
    let mut size_needed = live.size();
    let mut taken = table.used();
    // Slots are only taken within one plan, so the search resumes where it stopped.
    let mut cursor = 1;
    let is_free = |n: u32, taken: &BTreeSet<u32>| {
        !taken.contains(&n) && live.slots.get(&n).is_none_or(|s| s.in_maint())
    };
    for m in add {
        if let Some(&r) = table.retired.get(&m.id) {
            if r >= generation {
                steps.push(stale(&m.id, None, format!("it was removed at generation {r}, newer than or equal to this message's {generation}")));
                continue;
            }
        }
        if let Some(e) = table.members.get_mut(&m.id) {
            if e.generation > generation {
                steps.push(stale(
                    &m.id,
                    Some(e.slot),
                    format!(
                        "generation {} already applied is newer than this message's {generation}",
                        e.generation
                    ),
                ));
                continue;
            }
            e.generation = generation;
            let moved = e.address != m.address || e.port != m.port;
            let set =
                moved || !live.serves(e.slot, m.address, m.port) || e.state == EntryState::Draining;
            e.address = m.address;
            e.port = m.port;
            if set && e.state != EntryState::Up {
                e.state = EntryState::Joining;
            }
            if moved {
                e.state = EntryState::Joining;
            }
            let fresh = e.state == EntryState::Joining;
            steps.push(Step::Join {
                member: m.clone(),
                slot: e.slot,
                set,
                fresh,
            });
            continue;
        }
        while !is_free(cursor, &taken) {
            cursor += 1;
        }
        let n = cursor;
        taken.insert(n);
        size_needed = size_needed.max(n);
        table.members.insert(
            m.id.clone(),
            Entry {
                slot: n,
                address: m.address,
                port: m.port,
                generation,
                state: EntryState::Joining,
            },
        );
        steps.push(Step::Join {
            member: m.clone(),
            slot: n,
            set: true,
            fresh: true,
        });
    }
    for id in remove {
        match table.members.get_mut(id) {
            Some(e) if e.generation > generation => {
                steps.push(stale(
                    id,
                    Some(e.slot),
                    format!(
                        "generation {} already applied is newer than this message's {generation}",
                        e.generation
                    ),
                ));
            }
            Some(e) => {
                e.generation = generation;
                e.state = EntryState::Draining;
                steps.push(Step::Leave {
                    member: id.clone(),
                    slot: e.slot,
                });
            }
            None => {
                table.retire(id, generation);
                steps.push(Step::Done {
                    member: id.clone(),
                    slot: None,
                    status: OutcomeStatus::Drained,
                    reason: Some("not in the pool on this host".into()),
                });
            }
        }
    }
    PoolPlan { steps, size_needed }
}

fn stale(id: &MemberId, slot: Option<u32>, reason: String) -> Step {
    Step::Done {
        member: id.clone(),
        slot,
        status: OutcomeStatus::Stale,
        reason: Some(reason),
    }
}

/// Plans converging a pool to exactly `members` at `generation`: joins for every
/// member, leaves for table members not listed (unless a newer message added them),
/// and evictions for slots HAProxy serves that no member owns.
pub fn plan_sync(
    table: &mut PoolSlots,
    live: &LiveSlots,
    members: &[Member],
    generation: u64,
) -> PoolPlan {
    let wanted: BTreeSet<&MemberId> = members.iter().map(|m| &m.id).collect();
    let remove: Vec<MemberId> = table
        .members
        .iter()
        .filter(|(id, e)| !wanted.contains(id) && e.generation <= generation)
        .map(|(id, _)| id.clone())
        .collect();
    let mut plan = plan_change(table, live, members, &remove, generation);
    let used = table.used();
    for (n, s) in &live.slots {
        if !used.contains(n) && !s.in_maint() {
            plan.steps.push(Step::Evict {
                slot: *n,
                addr: format!("{}:{}", s.addr, s.port),
            });
        }
    }
    plan
}

/// The slot count a pool should have: at least `needed` (the highest slot in use or
/// about to be), doubling when it must grow; shrinking towards `floor` only when at
/// most a quarter is used, never below the highest slot in use.
pub fn target_size(current: u32, floor: u32, needed: u32, used_count: u32) -> u32 {
    if needed > current {
        let mut n = current.max(floor).max(1);
        while n < needed {
            n *= 2;
        }
        return n;
    }
    if current > floor && used_count * 4 <= current {
        let want = (used_count * 2).max(floor).max(needed);
        return want.min(current);
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, last: u8) -> Member {
        Member::new(
            MemberId::new(id).unwrap(),
            IpAddr::from([10, 0, 0, last]),
            Port::new(80).unwrap(),
        )
        .unwrap()
    }
    fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }
    fn live(n: u32) -> LiveSlots {
        LiveSlots {
            slots: (1..=n)
                .map(|i| {
                    (
                        i,
                        ServerState {
                            backend: "web".into(),
                            server: format!("slot{i}"),
                            addr: "0.0.0.0".into(),
                            port: 80,
                            op_state: 0,
                            admin_state: 5,
                        },
                    )
                })
                .collect(),
        }
    }
    fn serving(l: &mut LiveSlots, slot: u32, last: u8) {
        let s = l.slots.get_mut(&slot).unwrap();
        s.addr = format!("10.0.0.{last}");
        s.admin_state = 0;
        s.op_state = 2;
    }
    fn joins(p: &PoolPlan) -> Vec<(String, u32, bool)> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Join {
                    member, slot, set, ..
                } => Some((member.id.to_string(), *slot, *set)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn members_take_the_lowest_free_slots_and_freed_slots_are_reused() {
        let mut t = PoolSlots::default();
        let p = plan_change(&mut t, &live(4), &[m("a", 1), m("b", 2), m("c", 3)], &[], 1);
        assert_eq!(
            joins(&p),
            vec![
                ("a".into(), 1, true),
                ("b".into(), 2, true),
                ("c".into(), 3, true)
            ]
        );
        t.retire(&id("b"), 2);
        let p = plan_change(&mut t, &live(4), &[m("d", 4)], &[], 3);
        assert_eq!(joins(&p), vec![("d".into(), 2, true)]);
        assert_eq!(p.size_needed, 4);
    }

    #[test]
    fn applying_the_same_state_twice_sends_nothing() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1);
        t.members.get_mut(&id("a")).unwrap().state = EntryState::Up;
        serving(&mut l, 1, 1);
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 1);
        assert_eq!(joins(&p), vec![("a".into(), 1, false)]);
        let before = t.clone();
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1);
        assert_eq!(t, before);
    }

    #[test]
    fn older_messages_are_stale() {
        let mut t = PoolSlots::default();
        let l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 5);
        let p = plan_change(&mut t, &l, &[], &[id("a")], 4);
        assert!(matches!(
            &p.steps[0],
            Step::Done {
                status: OutcomeStatus::Stale,
                ..
            }
        ));
        assert_eq!(t.members[&id("a")].state, EntryState::Joining);
        // A removal at 6, then a late add from generation 5: the member stays out.
        t.retire(&id("a"), 6);
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 5);
        assert!(matches!(
            &p.steps[0],
            Step::Done {
                status: OutcomeStatus::Stale,
                ..
            }
        ));
        assert!(t.members.is_empty());
        // A newer add brings it back.
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 7);
        assert_eq!(joins(&p), vec![("a".into(), 1, true)]);
    }

    #[test]
    fn a_removal_of_an_unknown_member_is_already_drained() {
        let mut t = PoolSlots::default();
        let p = plan_change(&mut t, &live(2), &[], &[id("x")], 3);
        assert!(matches!(
            &p.steps[0],
            Step::Done {
                status: OutcomeStatus::Drained,
                ..
            }
        ));
        assert_eq!(t.retired[&id("x")], 3);
    }

    #[test]
    fn slots_beyond_the_block_mean_growth() {
        let mut t = PoolSlots::default();
        let p = plan_change(&mut t, &live(2), &[m("a", 1), m("b", 2), m("c", 3)], &[], 1);
        assert_eq!(p.size_needed, 3);
        assert_eq!(target_size(2, 2, 3, 3), 4);
        assert_eq!(target_size(16, 16, 17, 17), 32);
        assert_eq!(target_size(8, 8, 8, 8), 8);
    }

    #[test]
    fn slots_shrink_only_when_mostly_free_and_never_below_a_used_slot() {
        assert_eq!(target_size(64, 16, 3, 3), 16);
        assert_eq!(target_size(64, 16, 40, 10), 40);
        assert_eq!(target_size(64, 16, 20, 17), 64);
        assert_eq!(target_size(16, 16, 1, 1), 16);
    }

    #[test]
    fn a_slot_haproxy_serves_without_an_owner_is_not_free_and_sync_evicts_it() {
        let mut t = PoolSlots::default();
        let mut l = live(3);
        serving(&mut l, 1, 9);
        let p = plan_sync(&mut t, &l, &[m("a", 1)], 1);
        assert_eq!(joins(&p), vec![("a".into(), 2, true)]);
        assert!(p.steps.contains(&Step::Evict {
            slot: 1,
            addr: "10.0.0.9:80".into()
        }));
    }

    #[test]
    fn sync_removes_members_not_listed_unless_newer() {
        let mut t = PoolSlots::default();
        let l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1);
        plan_change(&mut t, &l, &[m("b", 2)], &[], 9);
        let p = plan_sync(&mut t, &l, &[], 5);
        assert_eq!(
            p.steps,
            vec![Step::Leave {
                member: id("a"),
                slot: 1
            }]
        );
    }

    #[test]
    fn a_member_whose_slot_lost_its_address_is_set_again() {
        let mut t = PoolSlots::default();
        let l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1);
        t.members.get_mut(&id("a")).unwrap().state = EntryState::Up;
        // HAProxy shows slot 1 in maint at 0.0.0.0 (e.g. restarted without state).
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 2);
        assert_eq!(joins(&p), vec![("a".into(), 1, true)]);
    }
}
