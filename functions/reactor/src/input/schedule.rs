//! The schedule's `Scheduled Event`: reconcile. AWS's sample (EventBridge User Guide,
//! a schedule rule's event; `tests/samples`):
//!
//! ```json
//! { "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
//!   "detail-type": "Scheduled Event", "source": "aws.events",
//!   "account": "123456789012", "time": "2015-10-08T16:53:06Z", "region": "us-east-1",
//!   "resources": [ "arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule" ],
//!   "detail": {} }
//! ```
//!
//! Events and reports can be lost, duplicated or late; the schedule repairs what they
//! left, from the truth:
//! - every managed group is read; each open ledger item is checked against it: an
//!   action no longer pending is closed (settled elsewhere), proxies that left service
//!   are removed from its quorum, silent hosts are dropped, what is now decided (or
//!   overdue) is completed, and what still waits gets a heartbeat;
//! - every group's full membership goes to every proxy, with the pending actions no
//!   item covers yet (their events were lost): this also re-sends to a silent host
//!   what it may have missed;
//! - the proxy fleet's DNS records are put in step.

use std::collections::{BTreeMap, BTreeSet};

use infra::aws::{Discovery, GroupState};
use infra::now_ms;
use infra::{GroupName, HostId, Pool};
use serde_json::Value;

use super::{check_source, Envelope, Input};
use crate::group_change::{plan_group_change, PlannedChange};
use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::ledger::{self, ActionKey, Item, Ledger, Verdict};
use crate::outgoing::Outgoing;
use crate::plan::{merge_pool_changes, pending_actions, PendingAction};
use crate::summary::{PendingSummary, Summary};

/// The detail type.
pub const DETAIL_TYPE: &str = "Scheduled Event";
/// An action open longer than this gets a heartbeat at every schedule: a drain may
/// outlast the hook's heartbeat timeout (at least 30 s, Auto Scaling's minimum). One
/// decided within seconds of its start never needs one.
const HEARTBEAT_AFTER_MS: u64 = 5_000;

/// Reads the schedule's event.
pub fn classify(env: &Envelope<Value>) -> Input {
    if let Some(i) = check_source(&env.source, "aws.events", DETAIL_TYPE) {
        return i;
    }
    Input::Schedule
}

/// What the groups' truth says.
struct Truth {
    plan: PlannedChange,
    pending: Vec<PendingAction>,
    groups: BTreeMap<GroupName, Vec<Pool>>,
    read_at_ms: u64,
}

impl<B: Boundaries> Reactor<B> {
    /// Reconciles every managed group, the ledger and the DNS records.
    pub(crate) async fn reconcile(
        &self,
        batch: &Batch,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let names = self.managed_groups(summary).await;
        let (states, hosts, open) = tokio::join!(
            self.discovery.groups(&names),
            batch.hosts(&self.dispatcher),
            self.ledger.open()
        );
        let (states, hosts, open) = (states?, hosts?, open?);
        for n in &names {
            if !states.iter().any(|s| &s.name == n) {
                summary.note(format!("group {n} does not exist"));
            }
        }
        let truth = self.truth(&states, summary);
        let mut first_error = None;
        let left = self.reconcile_ledger(open, &truth, &hosts, summary).await?;
        if !truth.groups.is_empty() {
            let sent = self
                .send(
                    Outgoing {
                        plan: truth.plan,
                        actions: left,
                        hosts,
                        groups: truth.groups,
                        read_at_ms: truth.read_at_ms,
                        label: "(reconcile)".into(),
                        kind: "reconcile",
                        event_ms: None,
                        resend: None,
                        known: crate::ledger::Known::new(),
                    },
                    summary,
                )
                .await;
            if let Err(e) = sent {
                first_error.get_or_insert(e);
            }
        }
        let proxy = self.config.proxy_group.clone();
        summary.groups.push(proxy.clone());
        if let Err(e) = self.sync_dns(&proxy, summary).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The groups the schedule reads: `POOLS`' and the tagged ones it manages.
    async fn managed_groups(&self, summary: &mut Summary) -> Vec<GroupName> {
        let mut names: BTreeSet<GroupName> = self.config.pools.groups().cloned().collect();
        match self.discovery.tagged_groups().await {
            Ok(tagged) => {
                for g in tagged {
                    if self.config.manages(&g) {
                        names.insert(g);
                    } else if self.config.proxy_group != *g {
                        tracing::warn!(group = %g, "group carries haproxy:pool but is not managed; ignored");
                        summary.note(format!("group {g} carries the haproxy:pool tag but is not managed (POOLS does not name it, it matches no MANAGED_GROUPS entry): its instances are never added"));
                    }
                }
            }
            Err(e) => summary.note(format!(
                "could not list tagged groups ({e}); reconciling the configured ones"
            )),
        }
        names.remove(&self.config.proxy_group);
        names.into_iter().collect()
    }

    /// The full membership of `states` and their pending actions.
    fn truth(&self, states: &[GroupState], summary: &mut Summary) -> Truth {
        let mut pool_changes = Vec::new();
        let mut unaddressed = Vec::new();
        let mut pending = Vec::new();
        let mut groups = BTreeMap::new();
        let mut read_at_ms = 0;
        for state in states {
            let Some(pools) = self.pools_of(state, summary) else {
                continue;
            };
            summary.groups.push(state.name.clone());
            read_at_ms = read_at_ms.max(state.read_at_ms);
            let plan = plan_group_change(&pools, state, |_| true);
            pool_changes.extend(plan.pools);
            unaddressed.extend(plan.unaddressed);
            pending.extend(pending_actions(state, |_| true, &[]).0);
            groups.insert(state.name.clone(), pools);
        }
        let plan = PlannedChange {
            pools: merge_pool_changes(pool_changes),
            unaddressed,
        };
        Truth {
            plan,
            pending,
            groups,
            read_at_ms,
        }
    }

    /// Brings the open items in step with the truth and the proxies, decides and
    /// heartbeats them; returns the pending actions no open item covers.
    async fn reconcile_ledger(
        &self,
        open: Vec<Item>,
        truth: &Truth,
        proxies: &[HostId],
        summary: &mut Summary,
    ) -> Result<Vec<PendingAction>, ReactorError> {
        let now = now_ms();
        let timing = self.timing();
        let pending: BTreeSet<ActionKey> = truth
            .pending
            .iter()
            .map(|a| ActionKey {
                instance: a.instance.clone(),
                transition: a.transition,
            })
            .collect();
        let proxies: BTreeSet<&HostId> = proxies.iter().collect();
        let keys: Vec<ActionKey> = open.iter().map(Item::key).collect();
        let mut dropped: BTreeMap<ActionKey, Vec<String>> = BTreeMap::new();
        let by = ledger::claim_id();
        let items = ledger::update(&self.ledger, &keys, |k, item| {
            let mut item = item.filter(Item::is_open)?;
            let mut gone: Vec<String> = Vec::new();
            if truth.groups.contains_key(&item.group) && !pending.contains(k) {
                item.close(Verdict::Continue, "no longer pending in the group: settled elsewhere (completed by someone else, timed out, or the instance left)", false, now);
                return Some(item);
            }
            let left: Vec<HostId> = item.hosts.keys().filter(|h| !proxies.contains(h)).cloned().collect();
            for h in left {
                if item.remove_host(&h, "the proxy left service") {
                    gone.push(format!("{h} {k} (the proxy left service)"));
                }
            }
            for (h, why) in item.drop_silent(now, timing) {
                gone.push(format!("{h} {k} ({why})"));
            }
            dropped.insert(k.clone(), gone);
            item.claim(&by, now);
            Some(item)
        })
        .await?;
        for d in dropped.into_values().flatten() {
            tracing::warn!(dropped = %d, "a host dropped from an action's quorum");
            summary.reports.hosts_dropped.push(d);
        }
        let decided = self.decide_items(&items, &by, false, summary).await;
        let still: Vec<&Item> = items
            .iter()
            .filter(|i| i.is_open() && !matches!(i.decide(now), ledger::Decision::Complete(..)))
            .collect();
        summary.pending = Some(PendingSummary {
            actions: still.len(),
            max_age_s: still
                .iter()
                .map(|i| now.saturating_sub(i.started_ms) / 1000)
                .max()
                .unwrap_or(0),
        });
        for item in still
            .iter()
            .filter(|i| now.saturating_sub(i.started_ms) >= HEARTBEAT_AFTER_MS)
        {
            self.heartbeat(item, summary).await;
        }
        decided?;
        let covered: BTreeSet<ActionKey> = items
            .iter()
            .filter(|i| i.is_open())
            .map(Item::key)
            .collect();
        Ok(truth
            .pending
            .iter()
            .filter(|a| {
                !covered.contains(&ActionKey {
                    instance: a.instance.clone(),
                    transition: a.transition,
                })
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::classify as classify_event;
    use crate::input::samples::sample;

    #[test]
    fn the_aws_sample_is_read() {
        assert_eq!(classify_event(&sample("scheduled-event")), Input::Schedule);
        let mut v = sample("scheduled-event");
        v["source"] = "my.app".into();
        assert!(
            matches!(classify_event(&v), Input::Ignored(r) if r.contains("expected \"aws.events\""))
        );
    }
}
