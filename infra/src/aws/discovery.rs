//! What a group holds, and the desired state and changes built from it.
//!
//! [`Discovery`] is the I/O boundary (the AWS implementation is
//! [`AwsDiscovery`](super::AwsDiscovery); tests use an in-process fake); everything
//! else here is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Change, Desired, Member, MemberId, Pool, PoolChange, PoolDesired, PoolName};

use super::AwsError;

/// Where a member is in its life, as far as the pools are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Launching (`Pending`, `Pending:Wait`, `Pending:Proceed`): added to the pools,
    /// but takes traffic only once healthy.
    Joining,
    /// `InService`: should be serving.
    Serving,
    /// Terminating, terminated, detaching, standby, or stopped in EC2: drained and
    /// released.
    Leaving,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Joining => "joining",
            Self::Serving => "serving",
            Self::Leaving => "leaving",
        })
    }
}

/// The Auto Scaling lifecycle state of a member waiting on a launch hook.
pub const PENDING_WAIT: &str = "Pending:Wait";
/// The Auto Scaling lifecycle state of a member waiting on a terminate hook.
pub const TERMINATING_WAIT: &str = "Terminating:Wait";

/// Maps an Auto Scaling lifecycle state (and, when known, the EC2 instance state) to a
/// [`Phase`].
///
/// An instance EC2 reports as stopping, stopped, shutting down or terminated is leaving
/// whatever Auto Scaling still says. Unknown Auto Scaling states (including `Standby`
/// and warm-pool states) count as leaving: a member is only added when the group says
/// it is launching or in service.
pub fn phase_of(lifecycle_state: &str, ec2_state: Option<&str>) -> Phase {
    if matches!(
        ec2_state,
        Some("shutting-down" | "terminated" | "stopping" | "stopped")
    ) {
        return Phase::Leaving;
    }
    match lifecycle_state {
        "Pending" | "Pending:Wait" | "Pending:Proceed" => Phase::Joining,
        "InService" => Phase::Serving,
        _ => Phase::Leaving,
    }
}

/// One instance of a group, as read from Auto Scaling and EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The instance id.
    pub id: MemberId,
    /// The Auto Scaling lifecycle state (`InService`, `Pending:Wait`, ...).
    pub lifecycle_state: String,
    /// The EC2 instance state (`running`, ...), when EC2 knows the instance.
    pub ec2_state: Option<String>,
    /// The private address, when EC2 has one for it.
    pub address: Option<IpAddr>,
    /// Derived from the two states with [`phase_of`].
    pub phase: Phase,
}

impl GroupMember {
    /// Builds a member, deriving its phase.
    pub fn new(
        id: MemberId,
        lifecycle_state: impl Into<String>,
        ec2_state: Option<String>,
        address: Option<IpAddr>,
    ) -> Self {
        let lifecycle_state = lifecycle_state.into();
        let phase = phase_of(&lifecycle_state, ec2_state.as_deref());
        Self {
            id,
            lifecycle_state,
            ec2_state,
            address,
            phase,
        }
    }

    /// Whether it waits on a launch lifecycle hook.
    pub fn is_pending_wait(&self) -> bool {
        self.lifecycle_state == PENDING_WAIT
    }

    /// Whether it waits on a terminate lifecycle hook.
    pub fn is_terminating_wait(&self) -> bool {
        self.lifecycle_state == TERMINATING_WAIT
    }
}

/// A group's truth at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The Auto Scaling group name.
    pub name: String,
    /// Its tags (key -> value).
    pub tags: BTreeMap<String, String>,
    /// Its instances, in the order Auto Scaling listed them.
    pub members: Vec<GroupMember>,
    /// When it was read (ms since the epoch): the basis of the generation.
    pub read_at_ms: u64,
}

impl GroupState {
    /// The member with this instance id, if the group still lists it.
    pub fn member(&self, id: &str) -> Option<&GroupMember> {
        self.members.iter().find(|m| m.id.as_str() == id)
    }
}

/// Reads groups and their members. Implemented for AWS by
/// [`AwsDiscovery`](super::AwsDiscovery); fakes implement it in tests.
pub trait Discovery: Send + Sync {
    /// One group, or `None` when it does not exist.
    fn group(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<GroupState>, AwsError>> + Send;

    /// One group as an event about `instance` needs it: every member's lifecycle state,
    /// and EC2's facts (address, state) for the members such an event's change names,
    /// those not `InService` and `instance` itself. In-service members may come without
    /// EC2 facts. `None` when the group does not exist.
    ///
    /// This is the reactor's hot path: AWS reads the event's instance at the same time
    /// as the group, so a launch costs one round trip instead of two. The default reads
    /// the whole group with [`Discovery::group`].
    fn group_for_event(
        &self,
        name: &str,
        instance: Option<&str>,
    ) -> impl Future<Output = Result<Option<GroupState>, AwsError>> + Send {
        let _ = instance;
        self.group(name)
    }

    /// Several groups at once (missing ones are left out), in as few calls as the API
    /// allows.
    fn groups(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<GroupState>, AwsError>> + Send;

    /// The group an instance belongs to, or `None` when it is in no group.
    fn group_of_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;

    /// Names of the groups carrying the `haproxy:pool` tag.
    fn tagged_groups(&self) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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
pub fn plan_change(
    pools: &[Pool],
    state: &GroupState,
    select: impl Fn(&GroupMember) -> bool,
) -> PlannedChange {
    let mut unaddressed = Vec::new();
    let mut add_ids = Vec::new();
    let mut remove = Vec::new();
    for m in state.members.iter().filter(|m| select(m)) {
        match (m.phase, m.address) {
            (Phase::Leaving, _) => remove.push(m.id.clone()),
            (_, Some(addr)) => add_ids.push((m.id.clone(), addr)),
            (_, None) => unaddressed.push(m.id.clone()),
        }
    }
    let pools = pools
        .iter()
        .map(|p| PoolChange {
            pool: p.name.clone(),
            add: add_ids
                .iter()
                .filter_map(|(id, addr)| Member::new(id.clone(), *addr, p.port).ok())
                .collect(),
            remove: remove.clone(),
        })
        .collect();
    PlannedChange { pools, unaddressed }
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
                    entry.1.push(member);
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
    use crate::Port;

    fn pool(name: &str, port: i64) -> Pool {
        Pool {
            name: PoolName::new(name).unwrap(),
            port: Port::new(port).unwrap(),
            server_options: Default::default(),
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
            name: "g".into(),
            tags: BTreeMap::new(),
            members,
            read_at_ms: 1000,
        }
    }

    #[test]
    fn lifecycle_states_map_to_phases() {
        for s in ["Pending", "Pending:Wait", "Pending:Proceed"] {
            assert_eq!(phase_of(s, Some("running")), Phase::Joining, "{s}");
        }
        assert_eq!(phase_of("InService", Some("running")), Phase::Serving);
        assert_eq!(phase_of("InService", None), Phase::Serving);
        for s in [
            "Terminating",
            "Terminating:Wait",
            "Terminating:Proceed",
            "Terminated",
            "Detaching",
            "Detached",
            "EnteringStandby",
            "Standby",
            "Warmed:Running",
        ] {
            assert_eq!(phase_of(s, Some("running")), Phase::Leaving, "{s}");
        }
        // EC2's word wins when the instance is going away.
        assert_eq!(phase_of("InService", Some("shutting-down")), Phase::Leaving);
        assert_eq!(phase_of("Pending:Wait", Some("terminated")), Phase::Leaving);
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
    fn the_truth_decides_add_or_remove() {
        let s = state(vec![
            member("i-1", "InService", Some("10.0.0.1")),
            member("i-2", "Pending:Wait", Some("10.0.0.2")),
            member("i-3", "Terminating:Wait", Some("10.0.0.3")),
            member("i-4", "Pending", None),
        ]);
        let pools = [pool("web", 8080), pool("api", 9000)];
        let plan = plan_change(&pools, &s, |_| true);
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
        let plan = plan_change(&pools, &s, |m| m.id.as_str() == "i-3");
        assert!(plan.pools.iter().all(|p| p.add.is_empty()));
        assert!(!plan.is_empty());
        let change = plan.into_change(7);
        assert_eq!(change.generation, 7);
        // The message is valid for the agent.
        assert_eq!(Change::from_json(&change.to_json()).unwrap(), change);
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
