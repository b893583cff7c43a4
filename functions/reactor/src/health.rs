//! Proxy-detected health (pure): what the proxies said of a member's health checks,
//! and whether that is enough to tell Auto Scaling the instance is unhealthy.
//!
//! Opt-in per group (`PROXY_HEALTH_GROUPS`, like a group's ELB health check type).
//! Agents report a member that went DOWN after it had been UP on their host, and when
//! it came back ([`infra::HealthReport`]). The reactor keeps each host's latest word
//! in a [`Watch`] (a ledger record `health#<instance>`). When a quorum of the proxies
//! in service (`UNHEALTHY_QUORUM`, default a majority) has seen it DOWN for
//! `UNHEALTHY_AFTER_S`, the reactor calls `SetInstanceHealth(Unhealthy)` once, and Auto
//! Scaling replaces the instance through its terminate hook (drained as any leaving
//! member). Guard rail: a group never has more than `MAX_UNHEALTHY_FRACTION` of its
//! members (at least one) set unhealthy by the reactor and not yet gone ([`Marks`], a
//! ledger record `unhealthy#<group>`): a dependency of every backend failing must not
//! empty the group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use infra::GroupName;
use infra::{HealthReport, HostId, MemberId, PoolName};
use serde::{Deserialize, Serialize};

/// The operator's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// `PROXY_HEALTH_GROUPS`: the groups (names or globs with `*`) whose members the
    /// proxies' checks may have replaced; none: health reports are ignored.
    pub groups: Vec<String>,
    /// `UNHEALTHY_AFTER_S` (default 30): how long the quorum must have seen it DOWN.
    pub after: Duration,
    /// `UNHEALTHY_QUORUM` (default 0: a majority of the proxies in service).
    pub quorum: usize,
    /// `MAX_UNHEALTHY_FRACTION` (default 0.25): the most of a group's members set
    /// unhealthy at once (at least one).
    pub max_fraction: f64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            after: Duration::from_secs(30),
            quorum: 0,
            max_fraction: 0.25,
        }
    }
}

impl HealthPolicy {
    /// Whether any group opted in.
    pub fn is_on(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether `group` opted in.
    pub fn covers(&self, group: &str) -> bool {
        self.groups
            .iter()
            .any(|g| crate::managed::glob(g.as_bytes(), group.as_bytes()))
    }

    /// How many of `proxies` hosts must agree.
    pub fn quorum_of(&self, proxies: usize) -> usize {
        if self.quorum > 0 {
            self.quorum.min(proxies).max(1)
        } else {
            proxies / 2 + 1
        }
    }

    /// How many of a group of `members` may be set unhealthy at once.
    pub fn allowed(&self, members: usize) -> usize {
        // Truncation intended: a quarter of 7 members is 1.
        ((self.max_fraction * members as f64).floor() as usize).max(1)
    }

    fn after_ms(&self) -> u64 {
        u64::try_from(self.after.as_millis()).unwrap_or(u64::MAX)
    }
}

/// One host's latest word on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Word {
    /// UP (true) or DOWN.
    pub healthy: bool,
    /// Since when (the host's clock, ms).
    pub since_ms: u64,
}

/// What the proxies said of one member (ledger record `health#<instance>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The member.
    pub instance: MemberId,
    /// The pool it was reported in.
    pub pool: PoolName,
    /// Each host's latest word.
    pub hosts: BTreeMap<HostId, Word>,
    /// When the reactor set it unhealthy (it does so once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_ms: Option<u64>,
    /// The stored version (optimistic writes); not part of the record's body.
    #[serde(skip)]
    pub version: u64,
}

impl Watch {
    /// A watch with nothing heard yet.
    pub fn new(instance: MemberId, pool: PoolName) -> Self {
        Self {
            instance,
            pool,
            hosts: BTreeMap::new(),
            marked_ms: None,
            version: 0,
        }
    }

    /// Its ledger record id.
    pub fn id_of(instance: &MemberId) -> String {
        format!("health#{instance}")
    }

    /// Takes `host`'s word `r`, unless the host said something newer already. Returns
    /// whether it changed anything.
    pub fn hear(&mut self, host: &HostId, r: &HealthReport) -> bool {
        let word = Word {
            healthy: r.healthy,
            since_ms: r.since_ms,
        };
        match self.hosts.get(host) {
            Some(w) if w.since_ms > word.since_ms || *w == word => false,
            _ => {
                self.hosts.insert(host.clone(), word);
                true
            }
        }
    }

    /// The hosts among `proxies` that have seen it DOWN for the policy's time at
    /// `now_ms`, with since when.
    pub fn evidence(
        &self,
        proxies: &BTreeSet<HostId>,
        policy: &HealthPolicy,
        now_ms: u64,
    ) -> Vec<(HostId, u64)> {
        self.hosts
            .iter()
            .filter(|(h, w)| {
                proxies.contains(*h)
                    && !w.healthy
                    && w.since_ms.saturating_add(policy.after_ms()) <= now_ms
            })
            .map(|(h, w)| (h.clone(), w.since_ms))
            .collect()
    }

    /// Whether a quorum of `proxies` has seen it DOWN long enough at `now_ms`.
    pub fn is_due(&self, proxies: &BTreeSet<HostId>, policy: &HealthPolicy, now_ms: u64) -> bool {
        self.marked_ms.is_none()
            && !proxies.is_empty()
            && self.evidence(proxies, policy, now_ms).len() >= policy.quorum_of(proxies.len())
    }

    /// When to look again: the time the newest DOWN word of the quorum would have
    /// lasted long enough, if enough hosts see it DOWN now; `None` otherwise.
    pub fn look_again_at(&self, policy: &HealthPolicy, quorum: usize) -> Option<u64> {
        if self.marked_ms.is_some() {
            return None;
        }
        let mut down: Vec<u64> = self
            .hosts
            .values()
            .filter(|w| !w.healthy)
            .map(|w| w.since_ms)
            .collect();
        down.sort_unstable();
        let nth = down.get(quorum.checked_sub(1)?)?;
        Some(nth.saturating_add(policy.after_ms()))
    }
}

/// A group's members the reactor set unhealthy and that were still in it when last
/// looked at (ledger record `unhealthy#<group>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// The group.
    pub group: GroupName,
    /// Member -> when it was set unhealthy.
    pub marked: BTreeMap<MemberId, u64>,
    /// The stored version (optimistic writes); not part of the record's body.
    #[serde(skip)]
    pub version: u64,
}

/// Why a member was not set unhealthy although the proxies agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Members of the group set unhealthy and not gone yet.
    pub marked: Vec<MemberId>,
    /// How many may be.
    pub allowed: usize,
}

impl Marks {
    /// No member of `group` marked yet.
    pub fn new(group: GroupName) -> Self {
        Self {
            group,
            marked: BTreeMap::new(),
            version: 0,
        }
    }

    /// Its ledger record id.
    pub fn id_of(group: &str) -> String {
        format!("unhealthy#{group}")
    }

    /// Forgets members no longer in the group (`members`: those still there, leaving
    /// ones included), then admits `instance` if fewer than `allowed` remain.
    pub fn admit(
        &mut self,
        instance: &MemberId,
        members: &BTreeSet<MemberId>,
        allowed: usize,
        now_ms: u64,
    ) -> Result<(), Held> {
        self.marked.retain(|m, _| members.contains(m));
        if self.marked.contains_key(instance) {
            return Ok(());
        }
        if self.marked.len() >= allowed {
            return Err(Held {
                marked: self.marked.keys().cloned().collect(),
                allowed,
            });
        }
        self.marked.insert(instance.clone(), now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u8) -> HostId {
        HostId::new(format!("i-proxy{n}")).unwrap()
    }

    fn word(healthy: bool, since_ms: u64) -> HealthReport {
        HealthReport {
            pool: PoolName::new("web").unwrap(),
            member: MemberId::new("i-1").unwrap(),
            healthy,
            since_ms,
        }
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            groups: vec!["web-*".into()],
            ..HealthPolicy::default()
        }
    }

    #[test]
    fn a_majority_down_for_long_enough_is_due_and_only_once() {
        let p = policy();
        let proxies: BTreeSet<HostId> = (1..=3).map(host).collect();
        let mut w = Watch::new(MemberId::new("i-1").unwrap(), PoolName::new("web").unwrap());
        assert!(w.hear(&host(1), &word(false, 1_000)));
        assert!(!w.is_due(&proxies, &p, 100_000), "one of three");
        assert_eq!(w.look_again_at(&p, 2), None);
        assert!(w.hear(&host(2), &word(false, 5_000)));
        assert_eq!(w.look_again_at(&p, 2), Some(35_000));
        assert!(!w.is_due(&proxies, &p, 34_999), "not for 30 s yet");
        assert!(w.is_due(&proxies, &p, 35_000));
        // An older word changes nothing; a host that is no proxy any more counts nothing.
        assert!(!w.hear(&host(2), &word(true, 4_000)));
        assert!(!w.is_due(&[host(1), host(3), host(4)].into(), &p, 99_000));
        w.marked_ms = Some(35_000);
        assert!(!w.is_due(&proxies, &p, 99_000), "set unhealthy once");
    }

    #[test]
    fn a_member_back_up_on_one_host_breaks_the_quorum() {
        let p = policy();
        let proxies: BTreeSet<HostId> = (1..=2).map(host).collect();
        let mut w = Watch::new(MemberId::new("i-1").unwrap(), PoolName::new("web").unwrap());
        w.hear(&host(1), &word(false, 0));
        w.hear(&host(2), &word(false, 0));
        assert!(w.is_due(&proxies, &p, 30_000));
        w.hear(&host(2), &word(true, 10_000));
        assert!(!w.is_due(&proxies, &p, 60_000), "2 of 2 needed");
    }

    #[test]
    fn quorums_groups_and_the_fraction_allowed() {
        let mut p = policy();
        assert_eq!(
            (
                p.quorum_of(1),
                p.quorum_of(2),
                p.quorum_of(3),
                p.quorum_of(100)
            ),
            (1, 2, 2, 51)
        );
        p.quorum = 5;
        assert_eq!((p.quorum_of(3), p.quorum_of(100)), (3, 5));
        assert!(p.covers("web-asg") && !p.covers("api-asg"));
        assert_eq!(
            (p.allowed(2), p.allowed(4), p.allowed(7), p.allowed(8)),
            (1, 1, 1, 2)
        );
        assert!(!HealthPolicy::default().is_on());
    }

    #[test]
    fn marks_hold_the_group_to_its_fraction_and_forget_members_gone() {
        let id = |s: &str| MemberId::new(s).unwrap();
        let members: BTreeSet<MemberId> = ["i-1", "i-2", "i-3", "i-4"].map(id).into();
        let mut m = Marks::new(GroupName::new("web-asg").unwrap());
        assert_eq!(m.admit(&id("i-1"), &members, 1, 1), Ok(()));
        assert_eq!(m.admit(&id("i-1"), &members, 1, 2), Ok(()), "already in");
        let held = m.admit(&id("i-2"), &members, 1, 3).unwrap_err();
        assert_eq!((held.marked, held.allowed), (vec![id("i-1")], 1));
        // i-1 was replaced: its place is free.
        let after: BTreeSet<MemberId> = ["i-2", "i-3", "i-4", "i-5"].map(id).into();
        assert_eq!(m.admit(&id("i-2"), &after, 1, 4), Ok(()));
        assert_eq!(m.marked.keys().collect::<Vec<_>>(), vec![&id("i-2")]);
    }
}
