//! The health part of a host report: members that went DOWN (or came back UP) on a
//! proxy after they were UP there. It rides in the host report's message
//! ([`crate::input::report`]), its sender checked the same way:
//!
//! ```json
//! {"kind": "haproxy-asg.host-report", "version": 1, "host": "i-0123456789abcdef0",
//!  "sent_ms": 1764000000123, "reports": [],
//!  "health": [{"pool": "web", "member": "i-0aaa", "healthy": false, "since_ms": 1764000000100}]}
//! ```
//!
//! Each host's word is kept in the member's watch ([`crate::health::Watch`]); when the
//! proxies' quorum has seen it DOWN long enough, the member is set unhealthy in Auto
//! Scaling once, within the group's guard rail, and the decision is logged with its
//! evidence. A reminder brings the reactor back when a quorum's DOWN words will have
//! lasted long enough; any later report about the member looks again too.

use std::collections::{BTreeMap, BTreeSet};

use infra::aws::Discovery;
use infra::now_ms;
use infra::GroupName;
use infra::{HealthReport, HostId, MemberId};

use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::health::{Marks, Watch};
use crate::ledger::{Doc, Ledger, LedgerError};
use crate::lifecycle::{InstanceOfGroup, LifecycleApi};
use crate::remind::Reminders;
use crate::summary::Summary;

/// How many times a record is re-read after another writer changed it.
const ROUNDS: usize = 5;
/// How long a watch or a group's marks stay after their last change (TTL).
const KEEP_S: u64 = 7 * 86_400;

fn doc_of<T: serde::Serialize>(id: String, version: u64, body: &T) -> Doc {
    Doc {
        id,
        version,
        body: serde_json::to_string(body).unwrap_or_default(),
        expires_at_s: Some(now_ms() / 1000 + KEEP_S),
    }
}

fn corrupt(id: &str, e: serde_json::Error) -> LedgerError {
    LedgerError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    }
}

impl<B: Boundaries> Reactor<B> {
    /// Records the hosts' health words, then judges the members they are about.
    pub(crate) async fn health_reports(
        &self,
        batch: &Batch,
        words: Vec<(HostId, HealthReport)>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        if !self.config.health.is_on() || words.is_empty() {
            return Ok(());
        }
        let mut by_member: BTreeMap<MemberId, Vec<(HostId, HealthReport)>> = BTreeMap::new();
        for (host, r) in words {
            tracing::info!(host = %host, pool = %r.pool, instance = %r.member, healthy = r.healthy, "a proxy saw a member's health change");
            by_member
                .entry(r.member.clone())
                .or_default()
                .push((host, r));
        }
        let mut watches = Vec::new();
        for (member, words) in &by_member {
            watches.extend(self.hear(member, words).await?);
        }
        self.judge_watches(batch, watches, summary).await
    }

    /// The record `id` read as a `T`, with its version; `new()` at version 0 when there
    /// is none.
    async fn read_doc<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        new: impl FnOnce() -> T,
    ) -> Result<(T, u64), ReactorError> {
        match self.ledger.docs(&[id.to_string()]).await?.pop() {
            Some(d) => {
                let t = serde_json::from_str(&d.body).map_err(|e| corrupt(id, e))?;
                Ok((t, d.version))
            }
            None => Ok((new(), 0)),
        }
    }

    /// Adds `words` to the watch of `member` (optimistic, re-read on a conflict); the
    /// watch as stored, with its version (none for no words).
    async fn hear(
        &self,
        member: &MemberId,
        words: &[(HostId, HealthReport)],
    ) -> Result<Option<(Watch, u64)>, ReactorError> {
        let id = Watch::id_of(member);
        for _ in 0..ROUNDS {
            let Some(pool) = words.first().map(|(_, r)| r.pool.clone()) else {
                return Ok(None);
            };
            let (mut watch, version) = self
                .read_doc(&id, || Watch::new(member.clone(), pool))
                .await?;
            let changed = words.iter().fold(false, |c, (h, r)| watch.hear(h, r) || c);
            if !changed {
                return Ok(Some((watch, version)));
            }
            if self
                .ledger
                .put_doc(&doc_of(id.clone(), version, &watch))
                .await?
            {
                return Ok(Some((watch, version + 1)));
            }
        }
        Err(LedgerError::Contended {
            ids: id,
            rounds: ROUNDS as u32,
        }
        .into())
    }

    /// Judges the watches of `members` (a reminder's), as [`Reactor::judge_watches`].
    pub(crate) async fn judge_health(
        &self,
        batch: &Batch,
        members: &[MemberId],
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let ids: Vec<String> = members.iter().map(Watch::id_of).collect();
        let mut watches = Vec::new();
        for d in self.ledger.docs(&ids).await? {
            let w: Watch = serde_json::from_str(&d.body).map_err(|e| corrupt(&d.id, e))?;
            watches.push((w, d.version));
        }
        self.judge_watches(batch, watches, summary).await
    }

    /// Sets unhealthy the members whose watch (with its stored version) is due, within
    /// each group's guard rail; sets a reminder for those whose quorum is only waiting,
    /// and for those held back (their group's place may be free by then).
    async fn judge_watches(
        &self,
        batch: &Batch,
        watches: Vec<(Watch, u64)>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        if watches.iter().all(|(w, _)| w.marked_ms.is_some()) {
            return Ok(());
        }
        // The proxies as the batch's other inputs see them: listed once.
        let proxies: BTreeSet<HostId> = batch.hosts(&self.dispatcher).await?.into_iter().collect();
        let (due, later) = self.sort_watches(watches, &proxies);
        let held = self.act_on_due(due, &proxies, summary).await?;
        let policy = &self.config.health;
        let mut reminders: Vec<(Vec<MemberId>, u64)> = Vec::new();
        if let Some(wait) = later.iter().map(|(_, ms)| *ms).max() {
            reminders.push((later.into_iter().map(|(m, _)| m).collect(), wait));
        }
        if !held.is_empty() {
            let wait = u64::try_from(policy.after.as_millis()).unwrap_or(u64::MAX);
            reminders.push((held, wait));
        }
        for (members, wait) in reminders {
            let after = std::time::Duration::from_millis(wait.saturating_add(1_000));
            if let Err(e) = self.reminders.remind_health(&members, after).await {
                tracing::warn!(error = %e, "cannot set a reminder for health watches; the next report about them looks again");
            }
        }
        Ok(())
    }

    /// The watches due now (with their versions), and the members to look at again
    /// later (in how many ms) because their quorum only waits for time.
    #[allow(clippy::type_complexity)]
    fn sort_watches(
        &self,
        watches: Vec<(Watch, u64)>,
        proxies: &BTreeSet<HostId>,
    ) -> (Vec<(Watch, u64)>, Vec<(MemberId, u64)>) {
        let policy = &self.config.health;
        let quorum = policy.quorum_of(proxies.len());
        let now = now_ms();
        let mut due = Vec::new();
        let mut later = Vec::new();
        for (w, version) in watches {
            if w.is_due(proxies, policy, now) {
                due.push((w, version));
            } else if let Some(at) = w.look_again_at(policy, quorum).filter(|at| *at > now) {
                later.push((w.instance.clone(), at - now));
            }
        }
        (due, later)
    }

    /// Sets unhealthy each of `due` Auto Scaling still holds healthy and in service in
    /// a group that opted in; returns those held back by their group's guard rail.
    async fn act_on_due(
        &self,
        due: Vec<(Watch, u64)>,
        proxies: &BTreeSet<HostId>,
        summary: &mut Summary,
    ) -> Result<Vec<MemberId>, ReactorError> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let policy = &self.config.health;
        let names: Vec<String> = due.iter().map(|(w, _)| w.instance.to_string()).collect();
        let of_group: BTreeMap<String, InstanceOfGroup> = self
            .lifecycle
            .instances(&names)
            .await?
            .into_iter()
            .map(|i| (i.instance.clone(), i))
            .collect();
        let now = now_ms();
        let mut held = Vec::new();
        for (w, version) in due {
            let evidence = w.evidence(proxies, policy, now);
            match of_group.get(w.instance.as_str()) {
                Some(i)
                    if policy.covers(&i.group) && i.healthy && i.lifecycle_state == "InService" =>
                {
                    let instance = w.instance.clone();
                    if !self
                        .set_unhealthy(w, version, i, &evidence, summary)
                        .await?
                    {
                        held.push(instance);
                    }
                }
                Some(i) => {
                    tracing::debug!(instance = %w.instance, group = %i.group, state = %i.lifecycle_state, healthy = i.healthy, "proxies see it down; not set unhealthy (group not opted in, already unhealthy or leaving)")
                }
                None => {
                    tracing::debug!(instance = %w.instance, "proxies see it down; no group holds it")
                }
            }
        }
        Ok(held)
    }

    /// Claims the watch, takes a place in the group's guard rail, and calls
    /// `SetInstanceHealth`; held back (logged, counted) when the group is at its limit.
    /// Returns false when held back.
    async fn set_unhealthy(
        &self,
        mut watch: Watch,
        version: u64,
        instance: &InstanceOfGroup,
        evidence: &[(HostId, u64)],
        summary: &mut Summary,
    ) -> Result<bool, ReactorError> {
        let group = &instance.group;
        let seen: Vec<String> = evidence
            .iter()
            .map(|(h, since)| format!("{h} since {since}"))
            .collect();
        let line = format!(
            "{} in {group} (pool {}): DOWN on {}",
            watch.instance,
            watch.pool,
            seen.join(", ")
        );
        if let Err(held) = self.take_place(group, &watch.instance).await? {
            let marked: Vec<String> = held.marked.iter().map(ToString::to_string).collect();
            tracing::warn!(instance = %watch.instance, group = %group, evidence = %seen.join(", "), marked = %marked.join(","), allowed = held.allowed, "the proxies see it down, but the group already has as many members set unhealthy as MAX_UNHEALTHY_FRACTION allows; held back");
            summary.unhealthy_held.push(line);
            return Ok(false);
        }
        let now = now_ms();
        watch.marked_ms = Some(now);
        let id = Watch::id_of(&watch.instance);
        if !self
            .ledger
            .put_doc(&doc_of(id.clone(), version, &watch))
            .await?
        {
            // Another invocation changed the watch: the next report or reminder judges.
            return Ok(true);
        }
        if let Err(e) = self
            .lifecycle
            .set_unhealthy(instance.instance.as_str())
            .await
        {
            // Not set: the watch unclaimed, so the retried batch judges it again.
            watch.marked_ms = None;
            let _ = self.ledger.put_doc(&doc_of(id, version + 1, &watch)).await;
            return Err(e.into());
        }
        tracing::warn!(instance = %watch.instance, group = %group, pool = %watch.pool, evidence = %seen.join(", "), "set unhealthy in Auto Scaling: a quorum of proxies saw it down long enough; Auto Scaling replaces it through its terminate hook");
        summary.unhealthy.push(line);
        Ok(true)
    }

    /// A place for `instance` among the group's members set unhealthy (optimistic).
    async fn take_place(
        &self,
        group: &GroupName,
        instance: &MemberId,
    ) -> Result<Result<(), crate::health::Held>, ReactorError> {
        let state = self.discovery.groups(std::slice::from_ref(group)).await?;
        let members: BTreeSet<MemberId> = state
            .iter()
            .flat_map(|g| g.members.iter().map(|m| m.id.clone()))
            .collect();
        let serving = state
            .iter()
            .flat_map(|g| &g.members)
            .filter(|m| m.phase != infra::aws::Phase::Leaving)
            .count();
        let allowed = self.config.health.allowed(serving.max(1));
        let id = Marks::id_of(group);
        for _ in 0..ROUNDS {
            let (mut marks, version) = self.read_doc(&id, || Marks::new(group.clone())).await?;
            if let Err(held) = marks.admit(instance, &members, allowed, now_ms()) {
                return Ok(Err(held));
            }
            if self
                .ledger
                .put_doc(&doc_of(id.clone(), version, &marks))
                .await?
            {
                return Ok(Ok(()));
            }
        }
        Err(LedgerError::Contended {
            ids: id,
            rounds: ROUNDS as u32,
        }
        .into())
    }
}
