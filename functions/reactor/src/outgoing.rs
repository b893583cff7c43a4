//! Sending a change: the lifecycle actions it serves are opened in the ledger (with the
//! proxies it goes to as the hosts they wait for), then the change goes to every proxy
//! and the invocation returns. The hosts' reports decide the actions later.
//!
//! A lifecycle event's change covers every member in transition (a lost event is
//! repaired by the next one), but a member whose action the ledger already has open
//! was sent by the change that opened it: it is left out unless an event of this batch
//! names it, so a burst of launches sends each member once, not once per event (the
//! schedule re-sends to hosts that stay silent).

use std::collections::BTreeMap;

use infra::aws::Phase;
use infra::now_ms;
use infra::{Change, GroupName, HostId, MemberId, Pool, PoolName};

use crate::dispatch::Dispatcher;
use crate::group_change::PlannedChange;
use crate::handler::{Boundaries, Reactor, ReactorError};
use crate::ledger::{self, ActionKey, Item, Opening, Verdict};
use crate::lifecycle::Transition;
use crate::plan::{merge_pool_changes, PendingAction};
use crate::summary::{SentChange, Summary, MIXED};

/// A decided item is replaced by a new one for the same instance and transition (a
/// warm pool instance launching again) once its decision is this old, or at once when
/// the new lifecycle event carries another token.
const REOPEN_AFTER_MS: u64 = 60_000;

/// What one input sends.
pub(crate) struct Outgoing {
    /// The change.
    pub plan: PlannedChange,
    /// The lifecycle actions it serves.
    pub actions: Vec<PendingAction>,
    /// The proxies it goes to.
    pub hosts: Vec<HostId>,
    /// The pools of each group it covers.
    pub groups: BTreeMap<GroupName, Vec<Pool>>,
    /// When the groups were read (ms): the generation is at least this.
    pub read_at_ms: u64,
    /// What it is for (a group name, `(reconcile)`), for logs and Run Command.
    pub label: String,
    /// The kind of input that sends it, for the metrics.
    pub kind: &'static str,
    /// The earliest time of the events it answers, if known.
    pub event_ms: Option<u64>,
    /// When members already in flight (an action an earlier change opened, and so
    /// carried) are to be left out: the ones to send all the same (the instances of
    /// events the inbox delivered again); `None` sends every member of the plan.
    pub resend: Option<Vec<String>>,
    /// What the input read of its actions' ledger items already (`None`: none yet):
    /// opening them does not read those again.
    pub known: ledger::Known,
}

impl Outgoing {
    /// `self` and `other` (another group's events of the same batch) as one change:
    /// their pool changes merged, their actions served together. The hosts stay
    /// `self`'s: the caller names them once for the merged change.
    pub(crate) fn merge(mut self, other: Outgoing) -> Outgoing {
        let pools = self
            .plan
            .pools
            .into_iter()
            .chain(other.plan.pools)
            .collect();
        self.plan.pools = merge_pool_changes(pools);
        self.plan.unaddressed.extend(other.plan.unaddressed);
        self.actions.extend(other.actions);
        self.groups.extend(other.groups);
        self.read_at_ms = self.read_at_ms.max(other.read_at_ms);
        self.label = format!("{},{}", self.label, other.label);
        if self.kind != other.kind {
            self.kind = MIXED;
        }
        self.event_ms = match (self.event_ms, other.event_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.resend = match (self.resend, other.resend) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        self.known.extend(other.known);
        self
    }
}

/// `change` as sent: its members' zones left out unless `MEMBER_ZONES` (an agent older
/// than zones refuses a member carrying one).
fn without_zones_unless(mut change: Change, member_zones: bool) -> Change {
    if !member_zones {
        change
            .pools
            .iter_mut()
            .flat_map(|p| p.add.iter_mut())
            .for_each(|m| m.zone = None);
    }
    change
}

impl<B: Boundaries> Reactor<B> {
    /// Opens the actions `out` serves in the ledger, then sends its change to its
    /// hosts, and returns. A launch whose instance is already leaving is abandoned now;
    /// with no proxy host, every action is continued now.
    pub(crate) async fn send(
        &self,
        out: Outgoing,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        for id in &out.plan.unaddressed {
            summary.note(format!(
                "instance {id} has no private address yet; it is added later"
            ));
        }
        let mut openings = self.openings(&out, summary).await?;
        if out.plan.is_empty() {
            if openings.is_empty() {
                summary.note("nothing to change");
            }
            for o in &openings {
                let item = Item::open(o.clone(), self.timing());
                crate::decide::record(summary, &item, "WAIT", "nothing could be sent for it yet (no address); a later event or the schedule sends it", false);
            }
            return Ok(());
        }
        if out.hosts.is_empty() {
            for o in openings {
                self.complete_at_once(
                    o,
                    Verdict::Continue,
                    "no proxy host to gate on",
                    true,
                    summary,
                )
                .await?;
            }
            summary.note("no proxy host is in service: nothing was sent");
            return Ok(());
        }
        let generation = self.generations.next(out.read_at_ms);
        tracing::Span::current().record("generation", generation);
        for o in &mut openings {
            o.generation = generation;
        }
        // The ledger first: a host may report before SendCommand has even answered.
        let items = self.open(&openings, out.known).await?;
        let (plan, items) = leave_in_flight(out.plan, items, out.resend.as_deref(), generation);
        if plan.is_empty() {
            summary.note(
                "every member in transition was already sent by the change that opened its action",
            );
            return Ok(());
        }
        let change = without_zones_unless(plan.into_change(generation), self.config.member_zones);
        let sent = self
            .dispatcher
            .send(&out.hosts, &change, &out.label)
            .await?;
        let commands: Vec<String> = sent.iter().map(|s| s.command_id.clone()).collect();
        tracing::info!(
            generation,
            commands = commands.len(),
            hosts = out.hosts.len(),
            actions = items.len(),
            "change sent"
        );
        let waiting = format!(
            "sent to {} host(s) at generation {generation}; decided from their reports",
            out.hosts.len()
        );
        for item in &items {
            crate::decide::record(summary, item, "WAIT", &waiting, false);
        }
        summary.changes.push(SentChange {
            label: out.label,
            generation,
            commands,
            hosts: out.hosts.len(),
            change,
            sent_ms: now_ms(),
            event_ms: out.event_ms,
            kind: out.kind.to_string(),
        });
        Ok(())
    }

    /// What the ledger opens for `out`'s actions (those on a hook of ours); a launch whose
    /// instance is already leaving is abandoned now instead.
    async fn openings(
        &self,
        out: &Outgoing,
        summary: &mut Summary,
    ) -> Result<Vec<Opening>, ReactorError> {
        let mut openings = Vec::new();
        for (action, hooks) in self.targets(out.actions.clone(), summary).await? {
            let opening = Opening {
                key: ActionKey {
                    instance: action.instance.clone(),
                    transition: action.transition,
                },
                group: action.group.clone(),
                hooks,
                token: action.token.clone(),
                pools: pool_names(&out.groups, &action.group),
                started_ms: action.started_ms.unwrap_or_else(now_ms),
                generation: 0,
                hosts: out.hosts.clone(),
            };
            if action.transition == Transition::Launch && action.phase == Phase::Leaving {
                let why = format!(
                    "instance {} is leaving (EC2 state {}) before it finished launching",
                    action.instance,
                    action.ec2_state.as_deref().unwrap_or("unknown")
                );
                self.complete_at_once(opening, Verdict::Abandon, &why, true, summary)
                    .await?;
                continue;
            }
            openings.push(opening);
        }
        Ok(openings)
    }

    /// Opens (or refreshes) the ledger items of `openings` (what `known` has of them is
    /// not read again); returns them as stored.
    async fn open(
        &self,
        openings: &[Opening],
        known: ledger::Known,
    ) -> Result<Vec<Item>, ReactorError> {
        if openings.is_empty() {
            return Ok(Vec::new());
        }
        let by_key: BTreeMap<ActionKey, &Opening> =
            openings.iter().map(|o| (o.key.clone(), o)).collect();
        let keys: Vec<ActionKey> = by_key.keys().cloned().collect();
        let timing = self.timing();
        let now = now_ms();
        let items = ledger::update_from(&self.ledger, &keys, known, |k, existing| {
            let o = by_key.get(k)?;
            match existing {
                Some(mut item) if item.is_open() => {
                    item.merge(o);
                    Some(item)
                }
                Some(item) if !replaces(&item, o, now) => Some(item),
                Some(old) => {
                    let mut fresh = Item::open((*o).clone(), timing);
                    fresh.version = old.version;
                    Some(fresh)
                }
                None => Some(Item::open((*o).clone(), timing)),
            }
        })
        .await?;
        Ok(items.into_iter().filter(Item::is_open).collect())
    }
}

/// With `resend`, `plan` and `items` without the members whose action another change
/// opened (and so carries), but those of `resend`.
fn leave_in_flight(
    mut plan: PlannedChange,
    mut items: Vec<Item>,
    resend: Option<&[String]>,
    generation: u64,
) -> (PlannedChange, Vec<Item>) {
    let Some(resend) = resend else {
        return (plan, items);
    };
    // Opened by another change: an earlier one, or a concurrent invocation's with a
    // newer generation (which hosts apply over this one's anyway).
    let in_flight: Vec<MemberId> = items
        .iter()
        .filter(|i| i.first_generation != generation)
        .filter(|i| !resend.iter().any(|n| n == i.instance.as_str()))
        .map(|i| i.instance.clone())
        .collect();
    if in_flight.is_empty() {
        return (plan, items);
    }
    tracing::debug!(
        members = in_flight.len(),
        "members already sent by the change that opened their action: left out"
    );
    for p in &mut plan.pools {
        p.add.retain(|m| !in_flight.contains(&m.id));
        p.remove.retain(|m| !in_flight.contains(m));
    }
    plan.pools
        .retain(|p| !p.add.is_empty() || !p.remove.is_empty());
    items.retain(|i| !in_flight.contains(&i.instance));
    (plan, items)
}

/// Whether a new action replaces the decided `item` of the same instance and transition.
fn replaces(item: &Item, o: &Opening, now: u64) -> bool {
    let other_token = matches!((&item.token, &o.token), (Some(a), Some(b)) if a != b);
    let old = item
        .decided
        .as_ref()
        .is_some_and(|d| now.saturating_sub(d.at_ms) >= REOPEN_AFTER_MS);
    other_token || old
}

/// The names of `group`'s pools.
fn pool_names(groups: &BTreeMap<GroupName, Vec<Pool>>, group: &str) -> Vec<PoolName> {
    groups
        .get(group)
        .map(|p| p.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default()
}
