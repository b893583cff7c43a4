//! One lifecycle action in the ledger, and every rule about it. Pure.
//!
//! An item is opened when a change carrying its action is sent; it names the proxies
//! that were in service then (the hosts it waits for) and records what each of them
//! reported, per pool. It is decided from those reports alone:
//!
//! - launch: ABANDON as soon as one host reports the member `failed` in one of its
//!   pools; CONTINUE once every host it waits for reports it `up` in every pool;
//! - terminate: CONTINUE once every host reports it `drained` in every pool, or once
//!   its drain deadline passed;
//! - a host that stays silent [`Timing::host_report_ms`] after another host reported
//!   (or past the action's deadline) is dropped from the quorum: a proxy never vetoes
//!   for long. So is a proxy that left service. With no host left to wait for, the
//!   action is continued: joins are health-gated on every proxy whatever the reactor
//!   decides, so continuing never sends traffic to an unchecked member.
//!
//! Reports are idempotent: a duplicate, an older one, one about an earlier life of the
//! instance (a generation below the item's first) or one arriving after the decision
//! changes nothing.
//!
//! Invocations run concurrently (the event source mapping's pollers), and two may read
//! the same decided item. Only the one holding its [`Claim`] completes the action: the
//! claim is taken in the same conditional write that recorded the deciding reports (or
//! in one of its own), and lapses after [`CLAIM_MS`] should its holder die before it
//! closed the item.

use std::collections::BTreeMap;

use infra::GroupName;
use infra::{HostId, MemberId, MemberReport, OutcomeStatus, PoolName};
use serde::{Deserialize, Serialize};

use crate::lifecycle::Transition;

/// Which action an item is: the instance and the transition (an instance has at most
/// one pending action per transition at a time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionKey {
    /// The instance.
    pub instance: MemberId,
    /// Launch or terminate.
    pub transition: Transition,
}

impl ActionKey {
    /// The ledger's item id: `<instance>#<launch|terminate>`.
    pub fn id(&self) -> String {
        format!("{}#{}", self.instance, self.transition)
    }

    /// The action a report of `status` is about: `up` and `failed` end joins
    /// (launches), `drained` ends drains (terminations); `stale` and `pending` none.
    pub fn of_report(member: &MemberId, status: OutcomeStatus) -> Option<Self> {
        let transition = match status {
            OutcomeStatus::Up | OutcomeStatus::Failed => Transition::Launch,
            OutcomeStatus::Drained => Transition::Terminate,
            OutcomeStatus::Stale | OutcomeStatus::Pending => return None,
        };
        Some(Self {
            instance: member.clone(),
            transition,
        })
    }
}

impl std::fmt::Display for ActionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.transition, self.instance)
    }
}

/// What one host said about the member in one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolOutcome {
    /// `up`, `drained` or `failed`.
    #[serde(rename = "s")]
    pub status: OutcomeStatus,
    /// The report's generation.
    #[serde(rename = "g")]
    pub generation: u64,
    /// When the reactor recorded it (ms since the epoch).
    #[serde(rename = "t")]
    pub at_ms: u64,
    /// Why, when it failed or was forced.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One host the action waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReports {
    /// Its reports by pool; a pool absent here is still awaited.
    #[serde(rename = "p", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<PoolName, PoolOutcome>,
    /// Why it no longer counts, when it was dropped from the quorum.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}

/// CONTINUE or ABANDON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Let the transition go on.
    Continue,
    /// Stop it (a launch: the instance is terminated).
    Abandon,
}

impl Verdict {
    /// The `LifecycleActionResult` Auto Scaling takes.
    pub fn as_aws(self) -> &'static str {
        match self {
            Self::Continue => "CONTINUE",
            Self::Abandon => "ABANDON",
        }
    }
}

/// A decision, once made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// CONTINUE or ABANDON.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Whether Auto Scaling took the completion (false: the action was no longer
    /// pending, completed or timed out elsewhere).
    pub completed: bool,
}

/// What to do with an item now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Complete the action with this verdict.
    Complete(Verdict, String),
    /// Keep waiting, and why.
    Wait(String),
}

impl Decision {
    /// `CONTINUE`, `ABANDON` or `WAIT`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Complete(v, _) => v.as_aws(),
            Self::Wait(_) => "WAIT",
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Self::Complete(_, r) | Self::Wait(r) => r,
        }
    }
}

/// How long a claim holds (ms): longer than completing an action's hooks takes, short
/// enough that the schedule decides an item whose claimant died.
pub const CLAIM_MS: u64 = 30_000;

/// An invocation's claim to complete an item's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Who holds it (an id drawn per invocation, [`claim_id`]).
    pub by: String,
    /// When it was taken (ms since the epoch).
    pub at_ms: u64,
}

/// A fresh claimant id: random, so concurrent invocations (in one process or many)
/// never share one.
pub fn claim_id() -> String {
    format!("{:016x}", random_u64())
}

/// 64 random bits (a randomly keyed hash of the time and the process), different at
/// every call and in every process.
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The reactor's timeouts, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a join may take to pass its checks (`HEALTH_TIMEOUT_S`).
    pub health_ms: u64,
    /// How long a drain may take (`DRAIN_TIMEOUT_S`).
    pub drain_ms: u64,
    /// How long a host may stay silent once another host reported
    /// (`HOST_REPORT_TIMEOUT_S`).
    pub host_report_ms: u64,
}

/// What applying one report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Recorded.
    Recorded,
    /// Nothing changed, and why.
    Ignored(String),
}

/// One lifecycle action and what the hosts reported about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The instance waiting.
    pub instance: MemberId,
    /// Which transition it waits in.
    pub transition: Transition,
    /// Its Auto Scaling group.
    pub group: GroupName,
    /// The hooks to complete.
    pub hooks: Vec<String>,
    /// The token of the lifecycle event, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The pools whose reports decide it.
    pub pools: Vec<PoolName>,
    /// When the action started (ms since the epoch).
    pub started_ms: u64,
    /// The generation of the first change sent for it: a report below it is about an
    /// earlier life of the instance.
    pub first_generation: u64,
    /// When silent hosts are dropped and a drain is over, whatever was reported (ms).
    pub deadline_ms: u64,
    /// The hosts it waits for: the proxies in service when its change was sent.
    pub hosts: BTreeMap<HostId, HostReports>,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Decided>,
    /// Who is completing it, while it is decided but not yet closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// The ledger's version of this item (0: not written yet). Not part of the
    /// document: the table keeps it in an attribute of its own.
    #[serde(skip)]
    pub version: u64,
}

/// What an item is opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The action.
    pub key: ActionKey,
    /// Its group.
    pub group: GroupName,
    /// Its hooks.
    pub hooks: Vec<String>,
    /// The event's token, if any.
    pub token: Option<String>,
    /// The pools.
    pub pools: Vec<PoolName>,
    /// When it started (the event's time, else now).
    pub started_ms: u64,
    /// The generation of the change that carries it.
    pub generation: u64,
    /// The proxies the change goes to.
    pub hosts: Vec<HostId>,
}

impl Item {
    /// A new item for `o`, with its deadline from `timing`.
    pub fn open(o: Opening, timing: Timing) -> Self {
        let wait = match o.key.transition {
            Transition::Launch => timing.health_ms.saturating_add(timing.host_report_ms),
            Transition::Terminate => timing.drain_ms,
        };
        Self {
            instance: o.key.instance,
            transition: o.key.transition,
            group: o.group,
            hooks: o.hooks,
            token: o.token,
            pools: o.pools,
            started_ms: o.started_ms,
            first_generation: o.generation,
            deadline_ms: o.started_ms.saturating_add(wait),
            hosts: o
                .hosts
                .into_iter()
                .map(|h| (h, HostReports::default()))
                .collect(),
            decided: None,
            claim: None,
            version: 0,
        }
    }

    /// The action it is about.
    pub fn key(&self) -> ActionKey {
        ActionKey {
            instance: self.instance.clone(),
            transition: self.transition,
        }
    }

    /// Whether it still waits for a decision.
    pub fn is_open(&self) -> bool {
        self.decided.is_none()
    }

    /// What a later change carrying the same action adds: the hook and token when the
    /// item lacked them (it was opened by the schedule, before the event came).
    pub fn merge(&mut self, o: &Opening) {
        if self.token.is_none() {
            self.token.clone_from(&o.token);
        }
        for h in &o.hooks {
            if !self.hooks.contains(h) {
                self.hooks.push(h.clone());
            }
        }
    }

    /// Records `host`'s report `r` at `now_ms`.
    pub fn apply(&mut self, host: &HostId, r: &MemberReport, now_ms: u64) -> Applied {
        let ignored = |why: String| Applied::Ignored(why);
        if self.decided.is_some() {
            return ignored("the action was already decided".into());
        }
        if ActionKey::of_report(&r.member, r.status).map(|k| k.transition) != Some(self.transition)
        {
            return ignored(format!(
                "{} says nothing about a {}",
                r.status, self.transition
            ));
        }
        if !self.pools.contains(&r.pool) {
            return ignored(format!("pool {} does not decide this action", r.pool));
        }
        if r.generation > now_ms.saturating_add(infra::MAX_GENERATION_AHEAD_MS) {
            return ignored(format!(
                "generation {} is more than 5 minutes ahead of the reactor's clock ({now_ms} ms): no change was ever sent at it",
                r.generation
            ));
        }
        if r.generation < self.first_generation {
            return ignored(format!(
                "generation {} is older than the first change sent for this action ({})",
                r.generation, self.first_generation
            ));
        }
        let Some(reports) = self.hosts.get_mut(host) else {
            return ignored(format!("host {host} is not one this action waits for"));
        };
        if let Some(why) = &reports.dropped {
            return ignored(format!("host {host} was dropped from the quorum ({why})"));
        }
        if let Some(known) = reports.pools.get(&r.pool) {
            if known.generation > r.generation
                || (known.generation == r.generation && known.status == r.status)
            {
                return ignored("a duplicate, or older than what the host reported".into());
            }
        }
        reports.pools.insert(
            r.pool.clone(),
            PoolOutcome {
                status: r.status,
                generation: r.generation,
                at_ms: now_ms,
                reason: r.reason.clone(),
            },
        );
        Applied::Recorded
    }

    /// Whether `host` reported every pool.
    fn complete_on(&self, reports: &HostReports) -> bool {
        self.pools.iter().all(|p| reports.pools.contains_key(p))
    }

    /// Drops hosts that stayed silent: [`Timing::host_report_ms`] after another host
    /// reported, or past the deadline. Returns them with the reason.
    pub fn drop_silent(&mut self, now_ms: u64, timing: Timing) -> Vec<(HostId, String)> {
        if self.decided.is_some() {
            return Vec::new();
        }
        let first_report = self
            .hosts
            .values()
            .filter(|h| h.dropped.is_none())
            .flat_map(|h| h.pools.values().map(|o| o.at_ms))
            .min();
        let silent_after = first_report.map(|t| t.saturating_add(timing.host_report_ms));
        let overdue = now_ms >= self.deadline_ms;
        let mut dropped = Vec::new();
        let pools = self.pools.clone();
        for (host, reports) in &mut self.hosts {
            let done = pools.iter().all(|p| reports.pools.contains_key(p));
            if reports.dropped.is_some() || done {
                continue;
            }
            let reason = if silent_after.is_some_and(|t| now_ms >= t) {
                format!(
                    "silent {} s after another host reported (HOST_REPORT_TIMEOUT_S)",
                    timing.host_report_ms / 1000
                )
            } else if overdue {
                "silent past the action's deadline".to_string()
            } else {
                continue;
            };
            reports.dropped = Some(reason.clone());
            dropped.push((host.clone(), reason));
        }
        dropped
    }

    /// Drops `host` (a proxy that left service); whether it was counted.
    pub fn remove_host(&mut self, host: &HostId, why: &str) -> bool {
        match self.hosts.get_mut(host) {
            Some(r) if r.dropped.is_none() && self.decided.is_none() => {
                r.dropped = Some(why.to_string());
                true
            }
            _ => false,
        }
    }

    /// What to do now, from the reports.
    pub fn decide(&self, now_ms: u64) -> Decision {
        if let Some(d) = &self.decided {
            return Decision::Complete(d.verdict, d.reason.clone());
        }
        let id = &self.instance;
        let counted: Vec<(&HostId, &HostReports)> = self
            .hosts
            .iter()
            .filter(|(_, r)| r.dropped.is_none())
            .collect();
        if self.transition == Transition::Launch {
            for (host, r) in &counted {
                if let Some((pool, o)) = r
                    .pools
                    .iter()
                    .find(|(_, o)| o.status == OutcomeStatus::Failed)
                {
                    return Decision::Complete(
                        Verdict::Abandon,
                        format!(
                            "host {host} reports {id} failed in pool {pool}: {}",
                            o.reason.as_deref().unwrap_or("no reason given")
                        ),
                    );
                }
            }
        }
        let dropped = self.hosts.len() - counted.len();
        let everywhere = match self.transition {
            Transition::Launch => "UP",
            Transition::Terminate => "drained",
        };
        if self.hosts.is_empty() {
            return Decision::Complete(Verdict::Continue, "no proxy host to gate on".into());
        }
        if counted.is_empty() {
            return Decision::Complete(
                Verdict::Continue,
                format!("every one of the {dropped} proxy host(s) was dropped from the quorum (silent or gone); joins stay health-gated on each proxy"),
            );
        }
        let waiting: Vec<String> = counted
            .iter()
            .filter(|(_, r)| !self.complete_on(r))
            .map(|(h, _)| h.to_string())
            .collect();
        if waiting.is_empty() {
            let also = if dropped > 0 {
                format!(" ({dropped} dropped from the quorum)")
            } else {
                String::new()
            };
            return Decision::Complete(
                Verdict::Continue,
                format!("{everywhere} on all {} host(s){also}", counted.len()),
            );
        }
        if self.transition == Transition::Terminate && now_ms >= self.deadline_ms {
            return Decision::Complete(
                Verdict::Continue,
                format!(
                    "the drain timeout passed ({} s after the action started); not yet drained on {}",
                    self.deadline_ms.saturating_sub(self.started_ms) / 1000,
                    waiting.join(", ")
                ),
            );
        }
        Decision::Wait(format!("waiting for {}", waiting.join(", ")))
    }

    /// Claims it for `by` when its reports decide it now and no other claimant holds
    /// it (a claim younger than [`CLAIM_MS`]); whether `by` holds it afterwards.
    pub fn claim(&mut self, by: &str, now_ms: u64) -> bool {
        if !self.is_open() || !matches!(self.decide(now_ms), Decision::Complete(..)) {
            return false;
        }
        match &self.claim {
            Some(c) if c.by == by => return true,
            Some(c) if now_ms < c.at_ms.saturating_add(CLAIM_MS) => return false,
            _ => {}
        }
        self.claim = Some(Claim {
            by: by.to_string(),
            at_ms: now_ms,
        });
        true
    }

    /// Whether `by` holds its claim.
    pub fn claimed_by(&self, by: &str) -> bool {
        self.claim.as_ref().is_some_and(|c| c.by == by)
    }

    /// Gives up `by`'s claim (its completion failed: the next report or the schedule
    /// tries again); whether it held one.
    pub fn release(&mut self, by: &str) -> bool {
        let held = self.claimed_by(by);
        if held {
            self.claim = None;
        }
        held
    }

    /// Marks it decided at `now_ms`; `completed` says whether Auto Scaling took it.
    pub fn close(&mut self, verdict: Verdict, reason: &str, completed: bool, now_ms: u64) {
        self.claim = None;
        self.decided = Some(Decided {
            verdict,
            reason: reason.to_string(),
            at_ms: now_ms,
            completed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        health_ms: 60_000,
        drain_ms: 120_000,
        host_report_ms: 30_000,
    };

    fn host(h: &str) -> HostId {
        HostId::new(h).unwrap()
    }

    fn item(t: Transition, pools: &[&str], hosts: &[&str]) -> Item {
        Item::open(
            Opening {
                key: ActionKey {
                    instance: MemberId::new("i-1").unwrap(),
                    transition: t,
                },
                group: GroupName::new("g").unwrap(),
                hooks: vec!["h".into()],
                token: None,
                pools: pools.iter().map(|p| PoolName::new(*p).unwrap()).collect(),
                started_ms: 1_000,
                generation: 100,
                hosts: hosts.iter().map(|h| host(h)).collect(),
            },
            T,
        )
    }

    fn r(pool: &str, status: OutcomeStatus, generation: u64) -> MemberReport {
        MemberReport::new(
            PoolName::new(pool).unwrap(),
            MemberId::new("i-1").unwrap(),
            generation,
            status,
            (status == OutcomeStatus::Failed).then(|| "no check passed".into()),
            5,
        )
    }

    use OutcomeStatus::*;

    #[test]
    fn a_launch_continues_once_up_everywhere_in_every_pool() {
        let mut i = item(Transition::Launch, &["web", "api"], &["h1", "h2"]);
        assert_eq!(i.decide(0).label(), "WAIT");
        for h in ["h1", "h2"] {
            assert_eq!(
                i.apply(&host(h), &r("web", Up, 100), 2_000),
                Applied::Recorded
            );
        }
        let d = i.decide(0);
        assert!(
            matches!(&d, Decision::Wait(w) if w.contains("h1") && w.contains("h2")),
            "{d:?}"
        );
        i.apply(&host("h1"), &r("api", Up, 101), 2_000);
        i.apply(&host("h2"), &r("api", Up, 100), 2_000);
        assert_eq!(
            i.decide(0),
            Decision::Complete(Verdict::Continue, "UP on all 2 host(s)".into())
        );
    }

    #[test]
    fn a_launch_is_abandoned_when_one_host_reports_it_failed() {
        let mut i = item(Transition::Launch, &["web"], &["h1", "h2"]);
        i.apply(&host("h1"), &r("web", Up, 100), 2_000);
        i.apply(&host("h2"), &r("web", Failed, 100), 2_000);
        let d = i.decide(0);
        assert_eq!(d.label(), "ABANDON");
        assert!(d.reason().contains("host h2") && d.reason().contains("no check passed"));
    }

    #[test]
    fn reports_lost_duplicated_reordered_or_late_change_nothing_wrong() {
        let mut i = item(Transition::Launch, &["web"], &["h1", "h2"]);
        // An earlier life of the instance, another transition, another pool, another host.
        assert!(
            matches!(i.apply(&host("h1"), &r("web", Up, 99), 0), Applied::Ignored(w) if w.contains("older than the first change"))
        );
        assert!(matches!(
            i.apply(&host("h1"), &r("web", Drained, 100), 0),
            Applied::Ignored(_)
        ));
        assert!(matches!(
            i.apply(&host("h1"), &r("api", Up, 100), 0),
            Applied::Ignored(_)
        ));
        assert!(
            matches!(i.apply(&host("h9"), &r("web", Up, 100), 0), Applied::Ignored(w) if w.contains("not one this action waits for"))
        );
        // A duplicate, then an older report arriving after a newer one.
        assert_eq!(
            i.apply(&host("h1"), &r("web", Up, 105), 0),
            Applied::Recorded
        );
        assert!(matches!(
            i.apply(&host("h1"), &r("web", Up, 105), 0),
            Applied::Ignored(_)
        ));
        assert!(matches!(
            i.apply(&host("h1"), &r("web", Failed, 101), 0),
            Applied::Ignored(_)
        ));
        assert_eq!(i.decide(0).label(), "WAIT");
        i.apply(&host("h2"), &r("web", Up, 100), 0);
        let d = i.decide(0);
        assert_eq!(d.label(), "CONTINUE");
        i.close(Verdict::Continue, d.reason(), true, 10);
        // After the decision nothing changes it.
        assert!(
            matches!(i.apply(&host("h2"), &r("web", Failed, 200), 0), Applied::Ignored(w) if w.contains("already decided"))
        );
        assert_eq!(i.decide(0).label(), "CONTINUE");
        // The document round-trips (the version lives beside it).
        let back: Item = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        assert_eq!(back, Item { version: 0, ..i });
    }

    #[test]
    fn a_report_from_the_future_changes_nothing() {
        let now = 1_800_000_000_000;
        let mut i = item(Transition::Launch, &["web"], &["h1"]);
        for g in [u64::MAX, now + infra::MAX_GENERATION_AHEAD_MS + 1] {
            assert!(
                matches!(i.apply(&host("h1"), &r("web", Failed, g), now), Applied::Ignored(w) if w.contains("ahead of the reactor's clock")),
                "{g}"
            );
        }
        // It did not hide the host's true report behind a huge generation.
        assert_eq!(
            i.apply(&host("h1"), &r("web", Up, now), now),
            Applied::Recorded
        );
        assert_eq!(i.decide(now).label(), "CONTINUE");
    }

    #[test]
    fn a_silent_host_is_dropped_after_the_timeout_and_never_vetoes() {
        let mut i = item(Transition::Launch, &["web"], &["h1", "h2", "h3"]);
        assert!(i.drop_silent(10_000, T).is_empty(), "nobody reported yet");
        i.apply(&host("h1"), &r("web", Up, 100), 10_000);
        i.apply(&host("h2"), &r("web", Up, 100), 11_000);
        assert!(i.drop_silent(39_999, T).is_empty());
        let dropped = i.drop_silent(40_000, T);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, host("h3"));
        assert!(dropped[0].1.contains("HOST_REPORT_TIMEOUT_S"));
        let d = i.decide(40_000);
        assert_eq!(d.label(), "CONTINUE");
        assert!(d.reason().contains("1 dropped"), "{d:?}");
        // Its report, if it ever comes, counts no more.
        assert!(matches!(
            i.apply(&host("h3"), &r("web", Failed, 100), 0),
            Applied::Ignored(_)
        ));
    }

    #[test]
    fn with_every_host_silent_past_the_deadline_a_launch_continues() {
        let mut i = item(Transition::Launch, &["web"], &["h1"]);
        assert!(i.drop_silent(i.deadline_ms - 1, T).is_empty());
        assert_eq!(i.deadline_ms, 1_000 + 60_000 + 30_000);
        assert_eq!(i.drop_silent(i.deadline_ms, T).len(), 1);
        let d = i.decide(i.deadline_ms);
        assert_eq!(d.label(), "CONTINUE");
        assert!(d.reason().contains("health-gated"));
        // No proxy at all: nothing to gate on.
        assert_eq!(
            item(Transition::Launch, &["web"], &[]).decide(0).label(),
            "CONTINUE"
        );
    }

    #[test]
    fn a_terminate_continues_once_drained_everywhere_or_at_its_deadline() {
        let mut i = item(Transition::Terminate, &["web"], &["h1", "h2"]);
        i.apply(&host("h1"), &r("web", Drained, 100), 0);
        assert_eq!(i.decide(1_000).label(), "WAIT");
        let d = i.decide(121_000);
        assert_eq!(d.label(), "CONTINUE");
        assert!(
            d.reason().contains("drain timeout") && d.reason().contains("h2"),
            "{d:?}"
        );
        i.apply(&host("h2"), &r("web", Drained, 100), 0);
        assert_eq!(
            i.decide(1_000),
            Decision::Complete(Verdict::Continue, "drained on all 2 host(s)".into())
        );
        // A failed join says nothing about a drain.
        let mut j = item(Transition::Terminate, &["web"], &["h1"]);
        assert!(matches!(
            j.apply(&host("h1"), &r("web", Failed, 100), 0),
            Applied::Ignored(_)
        ));
    }

    #[test]
    fn a_proxy_that_left_service_is_removed_from_the_quorum() {
        let mut i = item(Transition::Terminate, &["web"], &["h1", "h2"]);
        i.apply(&host("h1"), &r("web", Drained, 100), 0);
        assert!(i.remove_host(&host("h2"), "proxy left service"));
        assert!(!i.remove_host(&host("h2"), "again"), "counted once");
        assert_eq!(i.decide(0).label(), "CONTINUE");
        // A token and hooks learnt later are kept.
        let mut o = item(Transition::Launch, &["web"], &["h1"]);
        o.merge(&Opening {
            key: o.key(),
            group: GroupName::new("g").unwrap(),
            hooks: vec!["h".into(), "h2".into()],
            token: Some("t".into()),
            pools: Vec::new(),
            started_ms: 0,
            generation: 1,
            hosts: Vec::new(),
        });
        assert_eq!((o.token.as_deref(), o.hooks.len()), (Some("t"), 2));
        assert_eq!(o.key().id(), "i-1#launch");
    }

    #[test]
    fn one_claimant_completes_a_decided_item_until_its_claim_lapses() {
        let mut i = item(Transition::Launch, &["web"], &["h1"]);
        assert!(!i.claim("a", 0), "nothing decides it yet: no claim");
        i.apply(&host("h1"), &r("web", Up, 100), 0);
        assert!(i.claim("a", 10) && i.claimed_by("a"));
        assert!(i.claim("a", 20), "its holder keeps it");
        assert!(
            !i.claim("b", 20) && !i.claimed_by("b"),
            "another invocation does not"
        );
        assert!(i.claim("b", 10 + CLAIM_MS), "a lapsed claim is taken over");
        assert!(!i.release("a") && i.release("b") && i.claim.is_none());
        i.claim("a", 0);
        i.close(Verdict::Continue, "UP", true, 50);
        assert!(
            i.claim.is_none() && !i.claim("c", 60),
            "a closed item is claimed by no one"
        );
        assert_ne!(claim_id(), claim_id());
        let text = serde_json::to_string(&i).unwrap();
        let back: Item = serde_json::from_str(&text).unwrap();
        assert_eq!(back, i);
    }
}
