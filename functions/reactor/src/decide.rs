//! Deciding and completing lifecycle actions: from the ledger's items (the hosts'
//! reports, the deadlines) to `CompleteLifecycleAction`, the item closed once Auto
//! Scaling took it; heartbeats for actions that wait long; which hooks an action is
//! completed on.

use std::collections::BTreeMap;

use infra::aws::AwsError;
use infra::now_ms;
use infra::GroupName;

use crate::handler::{Boundaries, Reactor, ReactorError};
use crate::join::join_all;
use crate::ledger::{self, ActionKey, Decided, Decision, Item, Ledger as _, Opening, Verdict};
use crate::lifecycle::{ActionAnswer, LifecycleApi, Transition};
use crate::plan::PendingAction;
use crate::summary::{ActionSummary, Summary};

/// `CompleteLifecycleAction` calls in flight at once: a burst of decisions is completed
/// in a fraction of the time one after the other takes, and a few at once stays well
/// inside Auto Scaling's one request bucket for its whole API (its size is not
/// published; the emulator's figure is 40, refilled at 10 a second).
const COMPLETIONS_AT_ONCE: usize = 5;

impl<B: Boundaries> Reactor<B> {
    /// Decides every open item of `items` now: those their reports (or deadline) decide
    /// are claimed for `by` (unless `by` already holds them), completed and closed in
    /// the ledger; one another invocation holds is left to it. With `record_waits`, the
    /// others are noted as waiting. A completion that fails gives its claim back and
    /// leaves its item open (retried by the next report or the schedule), and is
    /// returned as the error, after the others.
    pub(crate) async fn decide_items(
        &self,
        items: &[Item],
        by: &str,
        record_waits: bool,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let now = now_ms();
        let items = self.claim(items, by, now).await?;
        let mut due = Vec::new();
        for item in items.iter().filter(|i| i.is_open()) {
            match item.decide(now) {
                Decision::Complete(..) if !item.claimed_by(by) => {
                    tracing::debug!(instance = %item.instance, "another invocation completes this action");
                }
                Decision::Complete(verdict, reason) => due.push((item, verdict, reason)),
                Decision::Wait(reason) if record_waits => {
                    record(summary, item, "WAIT", &reason, false);
                }
                Decision::Wait(_) => {}
            }
        }
        let mut closed = Vec::new();
        let mut failed = Vec::new();
        let mut first_error = None;
        for chunk in due.chunks(COMPLETIONS_AT_ONCE) {
            let calls = chunk
                .iter()
                .map(|(item, verdict, reason)| self.complete(item, *verdict, reason));
            let results = join_all(calls.collect()).await;
            for ((item, verdict, reason), result) in chunk.iter().zip(results) {
                match result {
                    Ok(completed) => {
                        record(summary, item, verdict.as_aws(), reason, completed);
                        let mut done = (*item).clone();
                        done.close(*verdict, reason, completed, now);
                        closed.push(done);
                    }
                    Err(e) => {
                        tracing::error!(instance = %item.instance, error = %e, "lifecycle completion failed; the action stays open");
                        failed.push(item.key());
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        // Written as read (the claim's write gave the version): a conflict is re-read.
        let conflicts = if closed.is_empty() {
            Vec::new()
        } else {
            self.ledger.put(&closed).await?
        };
        if !conflicts.is_empty() {
            closed.retain(|i| conflicts.iter().any(|c| c.key == i.key()));
            self.close(&closed, now).await?;
        }
        if !failed.is_empty() {
            let released = ledger::update(&self.ledger, &failed, |_, item| {
                let mut item = item?;
                item.release(by).then_some(item)
            })
            .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "cannot give claims back; they lapse on their own");
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// `items`, with those decided now but not yet held by `by` claimed for it where no
    /// other invocation holds them (one conditional write for all of them).
    async fn claim(&self, items: &[Item], by: &str, now: u64) -> Result<Vec<Item>, ReactorError> {
        let wanted: Vec<ActionKey> = items
            .iter()
            .filter(|i| {
                i.is_open() && !i.claimed_by(by) && matches!(i.decide(now), Decision::Complete(..))
            })
            .map(Item::key)
            .collect();
        if wanted.is_empty() {
            return Ok(items.to_vec());
        }
        let claimed: BTreeMap<ActionKey, Item> =
            ledger::update(&self.ledger, &wanted, |_, item| {
                let mut item = item?;
                item.claim(by, now).then_some(item)
            })
            .await?
            .into_iter()
            .map(|i| (i.key(), i))
            .collect();
        Ok(items
            .iter()
            .map(|i| claimed.get(&i.key()).cloned().unwrap_or_else(|| i.clone()))
            .collect())
    }

    /// Writes the decision each item of `done` carries onto its item in the ledger,
    /// re-read, where that one is still open.
    async fn close(&self, done: &[Item], now: u64) -> Result<(), ReactorError> {
        let decided: BTreeMap<ActionKey, &Decided> = done
            .iter()
            .filter_map(|i| Some((i.key(), i.decided.as_ref()?)))
            .collect();
        if decided.is_empty() {
            return Ok(());
        }
        let keys: Vec<ActionKey> = decided.keys().cloned().collect();
        ledger::update(&self.ledger, &keys, |k, item| {
            let mut item = item.filter(Item::is_open)?;
            let d = decided.get(k)?;
            item.close(d.verdict, &d.reason, d.completed, now);
            Some(item)
        })
        .await?;
        Ok(())
    }

    /// `CompleteLifecycleAction` with `verdict` on every hook of `item`, and logs it;
    /// whether Auto Scaling took it (false: no such action was pending any more).
    pub(crate) async fn complete(
        &self,
        item: &Item,
        verdict: Verdict,
        reason: &str,
    ) -> Result<bool, AwsError> {
        let mut completed = false;
        for hook in &item.hooks {
            let done = self
                .lifecycle
                .complete(
                    &item.group,
                    hook,
                    item.instance.as_str(),
                    item.token.as_deref(),
                    verdict.as_aws(),
                )
                .await?;
            match done {
                ActionAnswer::Done => completed = true,
                ActionAnswer::NotPending(m) => {
                    tracing::info!(instance = %item.instance, hook, reason = %m, "action no longer pending")
                }
            }
        }
        for pool in &item.pools {
            tracing::info!(
                pool = %pool,
                instance = %item.instance,
                group = %item.group,
                transition = %item.transition,
                generation = item.first_generation,
                outcome = verdict.as_aws(),
                reason,
                completed,
                "lifecycle decision"
            );
        }
        Ok(completed)
    }

    /// Completes an action that needs no host's word (a warm pool move, a proxy's own
    /// action, a launch of an instance already leaving, no proxy at all), and closes
    /// its item when the ledger has an open one (with `tracked`).
    pub(crate) async fn complete_at_once(
        &self,
        opening: Opening,
        verdict: Verdict,
        reason: &str,
        tracked: bool,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let mut item = Item::open(opening, self.timing());
        let completed = self.complete(&item, verdict, reason).await?;
        record(summary, &item, verdict.as_aws(), reason, completed);
        if tracked {
            let now = now_ms();
            item.close(verdict, reason, completed, now);
            self.close(&[item], now).await?;
        }
        Ok(())
    }

    /// `RecordLifecycleActionHeartbeat` on every hook of `item`: a drain may outlast
    /// the hook's heartbeat timeout. A failure is logged, not returned.
    pub(crate) async fn heartbeat(&self, item: &Item, summary: &mut Summary) {
        for hook in &item.hooks {
            let r = self
                .lifecycle
                .heartbeat(
                    &item.group,
                    hook,
                    item.instance.as_str(),
                    item.token.as_deref(),
                )
                .await;
            match r {
                Ok(ActionAnswer::Done) => {
                    tracing::info!(instance = %item.instance, hook, "lifecycle heartbeat recorded");
                    summary
                        .heartbeats
                        .push(format!("{} {}", item.transition, item.instance));
                }
                Ok(ActionAnswer::NotPending(m)) => {
                    tracing::info!(instance = %item.instance, hook, reason = %m, "no action to heartbeat")
                }
                Err(e) => {
                    tracing::warn!(instance = %item.instance, hook, error = %e, "lifecycle heartbeat failed")
                }
            }
        }
    }

    /// The hooks each action is completed on (the event's hook, or the transition's
    /// hooks the reactor owns); actions waiting on no hook of ours are left alone.
    pub(crate) async fn targets(
        &self,
        actions: Vec<PendingAction>,
        summary: &mut Summary,
    ) -> Result<Vec<(PendingAction, Vec<String>)>, ReactorError> {
        let mut out = Vec::new();
        for action in actions {
            let names: Vec<String> = match &action.hook {
                Some(h) => vec![h.clone()],
                None => self
                    .lifecycle
                    .hooks(&action.group)
                    .await?
                    .iter()
                    .filter(|h| h.transition == action.transition && self.config.owns_hook(&h.name))
                    .map(|h| h.name.clone())
                    .collect(),
            };
            if names.is_empty() {
                summary.note(format!(
                    "instance {} of group {} waits on no {} hook of ours (LIFECYCLE_HOOKS); left alone",
                    action.instance, action.group, action.transition
                ));
                continue;
            }
            out.push((action, names));
        }
        Ok(out)
    }

    /// The lifecycle hook of ours that gated `transition` in a managed backend `group`,
    /// if it has one. An instance that finished that transition then went through the
    /// change the hook's event sent, and its action was completed from every host's
    /// report: re-sending the member would change nothing anywhere and cost a command on
    /// every host. The proxy group's events are never covered (they keep its DNS
    /// records); a failure to read the hooks answers `None`, so the event re-sends.
    pub(crate) async fn gating_hook(
        &self,
        group: &GroupName,
        transition: Transition,
    ) -> Option<String> {
        if &self.config.proxy_group == group || !self.config.manages(group) {
            return None;
        }
        match self.lifecycle.hooks(group).await {
            Ok(hooks) => hooks
                .into_iter()
                .find(|h| h.transition == transition && self.config.owns_hook(&h.name))
                .map(|h| h.name),
            Err(e) => {
                tracing::warn!(error = %e, "reading the group's lifecycle hooks failed; re-sending its member");
                None
            }
        }
    }
}

/// Notes an action's fate in the summary.
pub(crate) fn record(
    summary: &mut Summary,
    item: &Item,
    decision: &str,
    reason: &str,
    completed: bool,
) {
    summary.actions.push(ActionSummary {
        group: item.group.clone(),
        instance: item.instance.to_string(),
        transition: item.transition.to_string(),
        decision: decision.to_string(),
        reason: reason.to_string(),
        completed,
    });
}
