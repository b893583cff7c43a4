//! A host report: an agent service tells which members reached their target on its
//! host. It is not an AWS event but an SQS message of the inbox, sent by the proxy
//! with its instance profile; AWS's sample of such a record (AWS Lambda Developer
//! Guide, an SQS event; `tests/samples`), whose body here is a host report
//! ([`infra::HostReport`]) and whose `SenderId` is `<proxy role id>:<instance id>`:
//!
//! ```json
//! { "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
//!   "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
//!   "body": "Test message.",
//!   "attributes": { "ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183",
//!     "SenderId": "AIDAIENQZJOLO23YVJ4VO",
//!     "ApproximateFirstReceiveTimestamp": "1545082649185" },
//!   "messageAttributes": {}, "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
//!   "eventSource": "aws:sqs",
//!   "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
//!   "awsRegion": "us-east-2" }
//! ```
//!
//! The inbox checked the sender ([`crate::inbox`]). Every member report is applied to
//! the ledger item of its action (`up` and `failed` to the launch, `drained` to the
//! terminate), all of a batch's reports in one pass; the items they complete are
//! decided and their actions completed at once. A report for no open action, a
//! duplicate, an older or a late one changes nothing.

use std::collections::BTreeMap;

use infra::now_ms;
use infra::{HealthReport, HostId, HostReport, MemberReport};

use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::ledger::{self, ActionKey, Applied};
use crate::remind::Reminders;
use crate::summary::Summary;

/// A host report whose sender is the host it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMessage {
    /// The reporting proxy (its instance id).
    pub host: HostId,
    /// What it reports.
    pub report: HostReport,
}

impl<B: Boundaries> Reactor<B> {
    /// Applies a batch's reports to the ledger and decides what they complete; the
    /// batch's reminders (`rechecks`, [`crate::input::recheck`]) are looked at in the
    /// same pass: their silent hosts dropped, what that decides completed.
    pub(crate) async fn host_reports(
        &self,
        batch: &Batch,
        messages: Vec<HostMessage>,
        rechecks: Vec<ActionKey>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let (by_key, health) = by_action(messages, rechecks, summary);
        let keys: Vec<ActionKey> = by_key.keys().cloned().collect();
        let now = now_ms();
        let timing = self.timing();
        // Re-run on a conflict: what each key's reports did is kept from the last run.
        let mut effects: BTreeMap<ActionKey, (usize, Vec<String>, bool)> = BTreeMap::new();
        // What these reports decide is claimed in the same write: a concurrent batch
        // that read the item before sees the claim and leaves the completion to us.
        let by = ledger::claim_id();
        let items = ledger::update(&self.ledger, &keys, |k, item| {
            let mut item = item?;
            let reports = by_key.get(k).map(Vec::as_slice).unwrap_or_default();
            if reports.is_empty() && !item.is_open() {
                return Some(item); // a reminder of an action decided since: nothing to do
            }
            let first = !item.hosts.values().any(|h| !h.pools.is_empty());
            let mut applied = 0;
            for (host, r) in reports {
                match item.apply(host, r, now) {
                    Applied::Recorded => applied += 1,
                    Applied::Ignored(why) => {
                        tracing::debug!(host = %host, instance = %r.member, generation = r.generation, reason = %why, "report changes nothing")
                    }
                }
            }
            let dropped = item
                .drop_silent(now, timing)
                .into_iter()
                .map(|(h, why)| format!("{h} {} ({why})", item.key()))
                .collect();
            // This batch brought the action's first report: the others' silence counts
            // from now, and a reminder brings the reactor back when it ran out.
            let started = first && item.hosts.values().any(|h| !h.pools.is_empty());
            effects.insert(k.clone(), (applied, dropped, started));
            item.claim(&by, now);
            Some(item)
        })
        .await?;
        let reported: usize = by_key.values().map(Vec::len).sum();
        let applied: usize = effects.values().map(|(a, _, _)| a).sum();
        summary.reports.applied += applied;
        summary.reports.ignored += reported - applied;
        let mut remind = Vec::new();
        for (k, (_, dropped, started)) in effects {
            for d in dropped {
                tracing::warn!(dropped = %d, "a host dropped from an action's quorum");
                summary.reports.hosts_dropped.push(d);
            }
            if started {
                remind.push(k);
            }
        }
        let decided = self.decide_items(&items, &by, false, summary).await;
        // Health words ride along; their failure retries the batch like the rest.
        self.health_reports(batch, health, summary).await?;
        let open: Vec<ActionKey> = items
            .iter()
            .filter(|i| {
                i.is_open()
                    && remind.contains(&i.key())
                    && !matches!(i.decide(now), ledger::Decision::Complete(..))
            })
            .map(ledger::Item::key)
            .collect();
        if !open.is_empty() {
            let after = self.config.host_report_timeout + std::time::Duration::from_secs(1);
            if let Err(e) = self.reminders.remind(&open, after).await {
                // The schedule looks at them anyway; a late drop is no lost decision.
                tracing::warn!(error = %e, actions = open.len(), "cannot set a reminder; the schedule drops silent hosts instead");
            }
        }
        decided
    }
}

/// Member reports by the action each is about.
type ByAction = BTreeMap<ActionKey, Vec<(HostId, MemberReport)>>;

/// A batch's member reports by the action each is about (the reminders' actions with
/// none), and the health words that rode along.
fn by_action(
    messages: Vec<HostMessage>,
    rechecks: Vec<ActionKey>,
    summary: &mut Summary,
) -> (ByAction, Vec<(HostId, HealthReport)>) {
    let mut by_key: ByAction = rechecks.into_iter().map(|k| (k, Vec::new())).collect();
    let mut health = Vec::new();
    for m in messages {
        health.extend(m.report.health.into_iter().map(|h| (m.host.clone(), h)));
        for r in m.report.reports {
            match ActionKey::of_report(&r.member, r.status) {
                Some(k) => by_key.entry(k).or_default().push((m.host.clone(), r)),
                None => {
                    tracing::debug!(host = %m.host, pool = %r.pool, instance = %r.member, generation = r.generation, reason = r.reason.as_deref().unwrap_or(""), "stale report: a newer change rules the member");
                    summary.reports.ignored += 1;
                }
            }
        }
    }
    (by_key, health)
}
