//! The request path: a change or a desired state planned under the lock
//! ([`Service::start`]), the members it waits for, and the report it ends with.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use infra::{Change, Desired, MemberId, Outcome, OutcomeStatus, PoolName, Report};
use tracing::{info, info_span, warn};

use super::*;

/// A finished outcome, by pool, member and the change it belonged to.
pub(super) type ResultKey = (PoolName, MemberId, u64);

/// Outcomes of finished operations, kept only while a caller waits for them. A caller
/// registers what it waits for in the same critical section that starts the operations,
/// so no outcome can end before it is wanted; outcomes nobody waits for (`--no-wait`, a
/// caller gone, operations resumed after a restart) are not kept at all. Keeping every
/// outcome for a while instead held megabytes after a few thousand-member changes.
#[derive(Default)]
pub(super) struct Results {
    pub(super) by_key: BTreeMap<ResultKey, Finished>,
    /// How many callers wait for each key.
    pub(super) wanted: BTreeMap<ResultKey, u32>,
}

impl Results {
    /// Keeps `f` if a caller waits for it.
    pub(super) fn record(&mut self, pool: &PoolName, f: Finished) {
        let Some(member) = f.member.clone() else {
            return;
        };
        let key = (pool.clone(), member, f.change);
        if self.wanted.contains_key(&key) {
            self.by_key.insert(key, f);
        }
    }

    /// One more caller waits for `key`.
    pub(super) fn want(&mut self, key: ResultKey) {
        *self.wanted.entry(key).or_default() += 1;
    }

    /// A caller is done with `key` (its request ended); the outcome is forgotten with
    /// its last caller.
    pub(super) fn release(&mut self, key: &ResultKey) {
        if let Some(n) = self.wanted.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.wanted.remove(key);
                self.by_key.remove(key);
            }
        }
    }
}

/// An outcome for the inbox.
pub(super) struct Reported {
    pub(super) generation: u64,
    pub(super) status: OutcomeStatus,
    pub(super) reason: Option<String>,
    pub(super) ms: u64,
}

impl Reported {
    pub(super) fn now(generation: u64, status: OutcomeStatus, reason: Option<String>) -> Self {
        Self {
            generation,
            status,
            reason,
            ms: 0,
        }
    }
}

/// A member this request waits for.
pub(super) struct Wait {
    pub(super) pool: PoolName,
    pub(super) member: MemberId,
    pub(super) change: u64,
    pub(super) slot: u32,
    pub(super) deadline: Instant,
}

impl Wait {
    pub(super) fn key(&self) -> ResultKey {
        (self.pool.clone(), self.member.clone(), self.change)
    }
}

/// What planning a request gave: outcomes known now, members to wait for.
pub(super) struct Started {
    pub(super) outcomes: Vec<Outcome>,
    pub(super) waits: Vec<Wait>,
    pub(super) reloads: u32,
    pub(super) diff: Vec<DiffLine>,
}

pub(super) fn outcome(
    pool: &PoolName,
    member: &MemberId,
    slot: Option<u32>,
    status: OutcomeStatus,
    reason: Option<String>,
    ms: u64,
) -> Outcome {
    Outcome {
        pool: pool.clone(),
        member: member.clone(),
        slot: slot.map(slot_name),
        status,
        reason,
        ms,
    }
}

/// The pool's timeouts in ms.
pub(super) fn timeouts(pc: &PoolConfig) -> Timeouts {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Timeouts {
        health_ms: ms(pc.health_timeout),
        drain_ms: ms(pc.drain_timeout),
    }
}

pub(super) fn progress_line(pending: &[Wait], rows: &[StatRow]) -> String {
    let mut parts = Vec::new();
    for w in pending.iter().take(8) {
        let name = slot_name(w.slot);
        let r = rows
            .iter()
            .find(|r| r.backend == w.pool.as_str() && r.server == name);
        let what = match r {
            Some(r) if r.status.starts_with("DRAIN") || r.status.starts_with("MAINT") => {
                format!("{} sessions, {} queued", r.scur, r.qcur)
            }
            Some(r) => r.check_summary(),
            None => "no stats yet".into(),
        };
        parts.push(format!("{}/{name} {}: {what}", w.pool, w.member));
    }
    if pending.len() > 8 {
        parts.push(format!("and {} more", pending.len() - 8));
    }
    format!(
        "waiting for {} member(s) ({})",
        pending.len(),
        parts.join("; ")
    )
}

pub(super) fn diff_lines(pool: &PoolName, plan: &PoolPlan) -> Vec<DiffLine> {
    plan.actions
        .iter()
        .map(|a| {
            let (op, member, slot, detail) = diff_of(a);
            DiffLine {
                pool: pool.to_string(),
                op,
                member: member.to_string(),
                slot: slot.map(slot_name),
                detail,
            }
        })
        .collect()
}

/// One planned action as a diff line says it: its sign, member, slot and what is done.
fn diff_of(a: &Action) -> (char, &str, Option<u32>, String) {
    match a {
        Action::Join {
            member,
            slot,
            send: slots::JoinSend::Join { addr, port },
        } => (
            '+',
            member.as_str(),
            Some(*slot),
            format!("set {addr}:{port} ready, health-gated"),
        ),
        Action::Join {
            member,
            slot,
            send: slots::JoinSend::Ready,
        } => (
            '~',
            member.as_str(),
            Some(*slot),
            "back to ready (was draining)".into(),
        ),
        Action::Drain { member, slot } => (
            '-',
            member.as_str(),
            Some(*slot),
            "drain, then release the slot".into(),
        ),
        Action::Release { member, slot } => (
            '-',
            member.as_str(),
            Some(*slot),
            "release the slot (never took traffic)".into(),
        ),
        Action::Evict { slot, addr } => (
            '!',
            "-",
            Some(*slot),
            format!("{addr} is served but no member owns it: drain and release"),
        ),
        Action::Pending {
            member,
            slot,
            change,
        } => (
            '=',
            member.as_str(),
            Some(*slot),
            format!("in flight under change {change}"),
        ),
        Action::Await { member, slot } => (
            '=',
            member.as_str(),
            Some(*slot),
            "in flight under this change".into(),
        ),
        Action::Done {
            member,
            slot,
            status,
            reason,
        } => (
            '=',
            member.as_str(),
            *slot,
            format!(
                "{status}{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ),
    }
}

/// Per pool, the slots the plans join that HAProxy lacks and the slot count they need
/// (pools that need nothing left out).
fn wanted_slots(
    plans: &[(PoolName, PoolPlan)],
    lives: &BTreeMap<PoolName, LiveSlots>,
) -> BTreeMap<PoolName, runtime::Wanted> {
    let mut out = BTreeMap::new();
    for (p, plan) in plans {
        let empty = LiveSlots::default();
        let live = lives.get(p).unwrap_or(&empty);
        let missing: std::collections::BTreeSet<u32> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Join { slot, .. } if !live.slots.contains_key(slot) => Some(*slot),
                _ => None,
            })
            .collect();
        if !missing.is_empty() || plan.size_needed > live.size() {
            out.insert(
                p.clone(),
                runtime::Wanted {
                    missing,
                    size: plan.size_needed,
                },
            );
        }
    }
    out
}

impl Service {
    /// Plans `per_pool` (pool -> plan function) under the lock, grows slots if needed,
    /// writes the intent, sends the commands. Nothing is left changed on error.
    pub(super) fn start<F>(
        &self,
        pools: &[PoolName],
        generation: u64,
        dry_run: bool,
        plan_pool: F,
    ) -> Result<Started, ServiceError>
    where
        F: FnMut(&PoolName, &mut slots::PoolSlots, &LiveSlots, Clock) -> PoolPlan,
    {
        for p in pools {
            self.pool_cfg(p)?;
        }
        // A change must not act before what a stopped service left was re-sent.
        self.resume()?;
        let mut st = self.lock();
        let client = self.haproxy(&st);
        let mut lives = BTreeMap::new();
        for p in pools {
            lives.insert(p.clone(), Self::live(&client, p)?);
        }
        self.record_slots(&lives);
        let snapshot = st.table.clone();
        let plans = self.plan(&mut st, pools, &lives, plan_pool)?;
        let diff: Vec<DiffLine> = plans
            .iter()
            .flat_map(|(p, plan)| diff_lines(p, plan))
            .collect();
        if dry_run {
            st.table = snapshot;
            return Ok(Started {
                outcomes: Vec::new(),
                waits: Vec::new(),
                reloads: 0,
                diff,
            });
        }
        let reloads = match self.send(&mut st, &plans, &lives) {
            Ok(r) => r,
            Err(e) => {
                // As it was, on disk too (a failed batch may have reached HAProxy in part:
                // the next change or sync repairs it from this table).
                st.table = snapshot;
                if matches!(e, ServiceError::Haproxy(_)) {
                    self.persist(&st);
                }
                return Err(e);
            }
        };
        // A released slot past the pool's slots is given back by the ticker.
        st.removals_pending |= plans.iter().any(|(_, p)| {
            p.actions
                .iter()
                .any(|a| matches!(a, Action::Release { .. }))
        });
        let started = self.record_started(&mut st, plans, generation, reloads, diff);
        self.persist(&st);
        drop(st);
        self.changed.notify_all();
        Ok(started)
    }

    /// Each pool's plan, the table changed as it says (the caller puts it back when
    /// what follows fails).
    fn plan<F>(
        &self,
        st: &mut State,
        pools: &[PoolName],
        lives: &BTreeMap<PoolName, LiveSlots>,
        mut plan_pool: F,
    ) -> Result<Vec<(PoolName, PoolPlan)>, ServiceError>
    where
        F: FnMut(&PoolName, &mut slots::PoolSlots, &LiveSlots, Clock) -> PoolPlan,
    {
        st.epoch += 1;
        let now = now_ms();
        let mut plans = Vec::new();
        for p in pools {
            let pc = self.pool_cfg(p)?;
            let clock = Clock {
                now_ms: now,
                timeouts: timeouts(pc),
                epoch: st.epoch,
            };
            let empty = LiveSlots::default();
            let live = lives.get(p).unwrap_or(&empty);
            let t = st.table.pools.entry(p.to_string()).or_default();
            plans.push((p.clone(), plan_pool(p, t, live, clock)));
        }
        Ok(plans)
    }

    /// Grows what the plans need, writes the intent, sends the commands; the reloads it
    /// took. On error the caller puts the table back.
    fn send(
        &self,
        st: &mut State,
        plans: &[(PoolName, PoolPlan)],
        lives: &BTreeMap<PoolName, LiveSlots>,
    ) -> Result<u32, ServiceError> {
        let wanted = wanted_slots(plans, lives);
        // Slots HAProxy lacks: added at runtime where the version and the pool allow
        // it, the rest grown with a reload.
        let needs = self.add_missing(st, &wanted, lives)?;
        let reloads = u32::from(!needs.is_empty());
        if !needs.is_empty() {
            self.resize_slots(st, &needs)?;
        }
        // The intent, before any command: a service killed from here on re-asserts it.
        let joins = !wanted.is_empty()
            || plans
                .iter()
                .any(|(_, p)| p.actions.iter().any(slots::Action::is_join));
        self.save_intent(st, joins)?;
        // The instance map first, so the first request a joining slot serves is
        // logged with its instance.
        let client = self.haproxy(st);
        let mut groups = self.map_commands(st, &client);
        // The traffic policy as the plans leave the table: a join gets its weight (and
        // its drain, into an away zone) on its own line.
        let mut zoned = self.zone_plans(&st.table, lives, None);
        for (p, plan) in plans {
            groups.extend(self.plan_groups(st, p, plan, lives, zoned.get_mut(p))?);
        }
        // What gives traffic first (the spill before the drain of a zone's last member),
        // what takes it away last.
        let (raise, lower) = zones::staged(&zoned);
        let sent = client.batch(&raise).and_then(|()| client.batch(&groups));
        if let Err(e) = sent {
            st.instances = None;
            return Err(e.into());
        }
        if let Err(e) = client.batch(&lower) {
            self.metric(|m| m.error(haproxy_kind(&e)));
            warn!(error = %e, "cannot set the weights the traffic policy takes away; the next look tries again");
        }
        self.note_spills(st, &zoned);
        Ok(reloads)
    }

    /// The command groups of one pool's plan, each join with the traffic policy's
    /// commands around it ([`Service::around_join`]).
    fn plan_groups(
        &self,
        st: &State,
        p: &PoolName,
        plan: &PoolPlan,
        lives: &BTreeMap<PoolName, LiveSlots>,
        mut zoned: Option<&mut crate::zones::PoolZones>,
    ) -> Result<Vec<Vec<Command>>, ServiceError> {
        let pc = self.pool_cfg(p)?;
        let check = pc.pool.server_options.has_check();
        let empty = LiveSlots::default();
        let live = lives.get(p).unwrap_or(&empty);
        let policy = self.policy(pc, &st.table);
        let mut groups = Vec::new();
        for a in &plan.actions {
            let cmds = slots::commands(p, a, check);
            let Action::Join { member, slot, .. } = a else {
                groups.extend(cmds);
                continue;
            };
            let entry = st
                .table
                .pools
                .get(p.as_str())
                .and_then(|t| t.members.get(member));
            for g in cmds {
                let z = zoned.as_deref_mut();
                groups.push(Self::around_join(
                    z,
                    &policy,
                    entry,
                    live,
                    (p, member, *slot),
                    g,
                ));
            }
        }
        Ok(groups)
    }

    /// After the commands went out: superseded operations reported STALE, each action
    /// tracked and turned into an outcome or a member to wait for (wanted at once, in
    /// this critical section, so no outcome ends before it is wanted).
    fn record_started(
        &self,
        st: &mut State,
        plans: Vec<(PoolName, PoolPlan)>,
        generation: u64,
        reloads: u32,
        diff: Vec<DiffLine>,
    ) -> Started {
        let mut started = Started {
            outcomes: Vec::new(),
            waits: Vec::new(),
            reloads,
            diff,
        };
        let base = Instant::now();
        for (p, plan) in plans {
            for s in plan.superseded {
                info!(pool = %p, instance = %s.member, generation = s.change, reason = %s.reason, "superseded");
                self.report(
                    st,
                    &p,
                    &s.member,
                    Reported {
                        generation: s.change,
                        status: OutcomeStatus::Stale,
                        reason: Some(s.reason.clone()),
                        ms: 0,
                    },
                );
                st.results.record(
                    &p,
                    Finished {
                        member: Some(s.member),
                        slot: 0,
                        change: s.change,
                        status: OutcomeStatus::Stale,
                        reason: Some(s.reason),
                        ms: 0,
                    },
                );
            }
            for a in plan.actions {
                self.track(st, &p, generation, &a);
                self.account(st, &p, generation, a, base, &mut started);
            }
        }
        for w in &started.waits {
            st.results.want(w.key());
        }
        started
    }

    /// What the inbox learns from one planned action: an outcome known now is reported
    /// at once; a member found converging under an earlier change is remembered, so its
    /// outcome is reported under this change's generation too.
    pub(super) fn track(&self, st: &mut State, pool: &PoolName, generation: u64, action: &Action) {
        match action {
            Action::Pending { member, .. } => {
                let asked = st.asked.entry((pool.clone(), member.clone())).or_default();
                *asked = (*asked).max(generation);
            }
            Action::Join { member, .. } | Action::Drain { member, .. } => {
                st.asked.remove(&(pool.clone(), member.clone()));
            }
            Action::Release { member, .. } => {
                let reason = "removed while joining: it took no traffic and its slot was released";
                self.report(
                    st,
                    pool,
                    member,
                    Reported::now(generation, OutcomeStatus::Drained, Some(reason.into())),
                );
            }
            Action::Done {
                member,
                status,
                reason,
                ..
            } => self.report(
                st,
                pool,
                member,
                Reported::now(generation, *status, reason.clone()),
            ),
            Action::Await { .. } | Action::Evict { .. } => {}
        }
    }

    /// Turns one action into an outcome known now or a member to wait for.
    pub(super) fn account(
        &self,
        st: &State,
        pool: &PoolName,
        generation: u64,
        action: Action,
        base: Instant,
        started: &mut Started,
    ) {
        let t = st.table.pools.get(pool.as_str());
        let deadline_of = |member: &MemberId| {
            let left = t
                .and_then(|t| t.members.get(member))
                .and_then(|e| e.op)
                .map_or(0, |op| op.deadline_ms.saturating_sub(now_ms()));
            base + Duration::from_millis(left) + OUTCOME_GRACE
        };
        match action {
            Action::Join { member, slot, .. }
            | Action::Drain { member, slot }
            | Action::Await { member, slot } => {
                info!(pool = %pool, instance = %member, generation, slot = %slot_name(slot), "operation started");
                started.waits.push(Wait {
                    deadline: deadline_of(&member),
                    pool: pool.clone(),
                    member,
                    change: generation,
                    slot,
                });
            }
            Action::Release { member, slot } => {
                info!(pool = %pool, instance = %member, generation, slot = %slot_name(slot), "released while joining");
                started.outcomes.push(outcome(
                    pool,
                    &member,
                    Some(slot),
                    OutcomeStatus::Drained,
                    Some("removed while joining: it had not passed its checks, took no traffic, and its slot was released".into()),
                    0,
                ));
            }
            // Converging under an earlier change: a waiting caller waits for that
            // change's outcome of the member (a caller that does not wait is told so).
            Action::Pending {
                member,
                slot,
                change,
            } => {
                info!(pool = %pool, instance = %member, generation, slot = %slot_name(slot), earlier = change, "already converging");
                started.waits.push(Wait {
                    deadline: deadline_of(&member),
                    pool: pool.clone(),
                    member,
                    change,
                    slot,
                });
            }
            Action::Done {
                member,
                slot,
                status,
                reason,
            } => {
                started
                    .outcomes
                    .push(outcome(pool, &member, slot, status, reason, 0));
            }
            Action::Evict { slot, addr } => {
                warn!(pool = %pool, slot = %slot_name(slot), addr = %addr, "evicting a server no member owns");
            }
        }
    }

    /// Waits (without the lock) for every member of `waits`, calling `progress` every
    /// second with what is still in flight.
    pub(super) fn wait(&self, waits: Vec<Wait>, progress: &mut dyn FnMut(String)) -> Vec<Outcome> {
        let start = Instant::now();
        let mut out = Vec::new();
        let mut pending = waits;
        let mut st = self.lock();
        let mut last_progress = Instant::now();
        loop {
            pending.retain(|w| match st.results.by_key.get(&w.key()) {
                Some(f) => {
                    out.push(outcome(
                        &w.pool,
                        &w.member,
                        Some(w.slot),
                        f.status,
                        f.reason.clone(),
                        f.ms,
                    ));
                    false
                }
                None if Instant::now() >= w.deadline => {
                    let why = st
                        .last_error
                        .clone()
                        .map(|e| format!(": the service could not read HAProxy's stats ({e})"))
                        .unwrap_or_default();
                    out.push(outcome(
                        &w.pool,
                        &w.member,
                        Some(w.slot),
                        OutcomeStatus::Failed,
                        Some(format!("no outcome within {:?}{why}", start.elapsed())),
                        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    ));
                    false
                }
                None => true,
            });
            if pending.is_empty() {
                return out;
            }
            if self.stop.load(Ordering::Relaxed) {
                // No outcome is not success: say what goes on instead.
                out.extend(pending.iter().map(|w| {
                    outcome(
                        &w.pool,
                        &w.member,
                        Some(w.slot),
                        OutcomeStatus::Pending,
                        Some(STOPPED_WHILE_WAITING.into()),
                        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    )
                }));
                return out;
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                let line = progress_line(&pending, &st.rows);
                drop(st);
                progress(format!("{:.1}s: {line}", start.elapsed().as_secs_f64()));
                st = self.lock();
                continue;
            }
            st = self
                .changed
                .wait_timeout(st, Duration::from_millis(250))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Applies a change message: the members' outcomes (waiting for them unless `wait`
    /// is false, when operations in flight are `pending`).
    pub fn apply(
        &self,
        change: &Change,
        wait: bool,
        progress: &mut dyn FnMut(String),
    ) -> Result<Report, ServiceError> {
        let span = info_span!("apply", generation = change.generation);
        let _g = span.enter();
        self.counted(crate::limits::check_change(&self.cfg, change, now_ms()).map_err(Into::into))?;
        let held = crate::limits::check_addresses(change, &self.lock().table);
        self.counted(held.map_err(Into::into))?;
        let pools: Vec<PoolName> = change.pools.iter().map(|p| p.pool.clone()).collect();
        let by_pool: BTreeMap<&PoolName, &infra::PoolChange> =
            change.pools.iter().map(|p| (&p.pool, p)).collect();
        let started =
            self.counted(
                self.start(&pools, change.generation, false, |p, t, live, clock| {
                    let Some(pc) = by_pool.get(p) else {
                        return PoolPlan::default();
                    };
                    let input = slots::ChangeInput::of(pc, change.generation);
                    slots::plan_change_by(t, live, input, clock)
                }),
            )?;
        Ok(self.finish(change.generation, started, wait, progress))
    }

    /// Converges the pools of `desired`; with `dry_run`, only says what it would do.
    pub fn sync(
        &self,
        desired: &Desired,
        dry_run: bool,
        wait: bool,
        progress: &mut dyn FnMut(String),
    ) -> Result<SyncReply, ServiceError> {
        let span = info_span!("sync", generation = desired.generation);
        let _g = span.enter();
        self.counted(
            crate::limits::check_desired(&self.cfg, desired, now_ms()).map_err(Into::into),
        )?;
        let pools: Vec<PoolName> = desired.pools.iter().map(|p| p.pool.clone()).collect();
        let by_pool: BTreeMap<&PoolName, &infra::PoolDesired> =
            desired.pools.iter().map(|p| (&p.pool, p)).collect();
        let started =
            self.counted(
                self.start(&pools, desired.generation, dry_run, |p, t, live, clock| {
                    let Some(pd) = by_pool.get(p) else {
                        return PoolPlan::default();
                    };
                    slots::plan_sync(t, live, &pd.members, desired.generation, clock)
                }),
            )?;
        let diff = started.diff.clone();
        let report = (!dry_run).then(|| self.finish(desired.generation, started, wait, progress));
        Ok(SyncReply {
            dry_run,
            diff,
            report,
        })
    }

    pub(super) fn finish(
        &self,
        generation: u64,
        started: Started,
        wait: bool,
        progress: &mut dyn FnMut(String),
    ) -> Report {
        let mut outcomes = started.outcomes;
        let keys: Vec<ResultKey> = started.waits.iter().map(Wait::key).collect();
        if wait {
            outcomes.extend(self.wait(started.waits, progress));
        } else {
            let why = match &self.cfg.report {
                Some(_) => "started; its outcome goes to the reactor's inbox when it ends",
                None => {
                    "started; not waited for (`agent status` shows it, `agent apply --wait` waits)"
                }
            };
            outcomes.extend(started.waits.iter().map(|w| {
                let why = if w.change == generation {
                    why.to_string()
                } else {
                    format!(
                        "already converging under change {}; that change reports its outcome",
                        w.change
                    )
                };
                outcome(
                    &w.pool,
                    &w.member,
                    Some(w.slot),
                    OutcomeStatus::Pending,
                    Some(why),
                    0,
                )
            }));
        }
        // This request's outcomes, read or not wanted, are forgotten with it.
        let mut st = self.lock();
        for k in &keys {
            st.results.release(k);
        }
        drop(st);
        // A waited request is ok only when every member reached its target; without
        // waiting, `pending` is what was asked for.
        let unfinished = wait && outcomes.iter().any(|o| o.status == OutcomeStatus::Pending);
        Report {
            host: self.cfg.host.clone(),
            generation,
            ok: !unfinished && outcomes.iter().all(|o| o.status.is_success()),
            reloads: started.reloads,
            outcomes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::Finished;

    fn finished(member: &str, change: u64) -> Finished {
        Finished {
            member: Some(MemberId::new(member).unwrap()),
            slot: 1,
            change,
            status: OutcomeStatus::Up,
            reason: None,
            ms: 5,
        }
    }

    fn key(pool: &PoolName, member: &str, change: u64) -> ResultKey {
        (pool.clone(), MemberId::new(member).unwrap(), change)
    }

    #[test]
    fn outcomes_are_kept_only_while_a_caller_waits_for_them() {
        let web = PoolName::new("web").unwrap();
        let mut r = Results::default();
        // Nobody waits (--no-wait, a caller gone, resumed after a restart): not kept.
        r.record(&web, finished("i-1", 1));
        assert!(r.by_key.is_empty());

        r.want(key(&web, "i-2", 2));
        r.record(&web, finished("i-2", 2));
        r.record(&web, finished("i-2", 1)); // an older change of the same member
        assert_eq!(r.by_key.len(), 1);
        assert_eq!(r.by_key[&key(&web, "i-2", 2)].status, OutcomeStatus::Up);
        r.release(&key(&web, "i-2", 2));
        assert!(r.by_key.is_empty() && r.wanted.is_empty());
    }

    #[test]
    fn an_outcome_two_callers_wait_for_stays_until_both_read_it() {
        let web = PoolName::new("web").unwrap();
        let k = key(&web, "i-1", 7);
        let mut r = Results::default();
        r.want(k.clone());
        r.want(k.clone());
        r.record(&web, finished("i-1", 7));
        r.release(&k);
        assert!(
            r.by_key.contains_key(&k),
            "the second caller has not read it yet"
        );
        r.release(&k);
        assert!(r.by_key.is_empty() && r.wanted.is_empty());
        r.release(&k); // a release too many changes nothing
        assert!(r.wanted.is_empty());
    }
}
