//! Carries out plans on one HAProxy: slot growth with a validated hitless reload,
//! health-gated joins, drains, and the files that make it all survive restarts.
//!
//! One [`Engine`] is one locked run on a host. Its order of work is what keeps the
//! invariants:
//! 1. read HAProxy's live slots; refuse unknown pools and missing backends before
//!    anything is written;
//! 2. plan (pure, `slots`); grow the slot blocks first if the plan needs more slots;
//! 3. write the slot table *before* sending commands, so a killed run leaves a record of
//!    what it may have done, which the next run re-asserts;
//! 4. send every command in `;` batches (`state ready; health down` on one line keeps a
//!    new member DOWN until it passes `rise` checks);
//! 5. wait: joins until UP (or the health timeout: the slot goes back to maint), leaves
//!    until their sessions and queue are 0 (or the drain timeout: remaining sessions
//!    are shut), then `maint` frees the slot;
//! 6. after every change, write the slot table and HAProxy's server-state file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use infra::{Change, Desired, MemberId, Outcome, OutcomeStatus, PoolName, Report};
use tracing::{info, info_span, warn};

use crate::cfgfile::{self, slot_name};
use crate::config::{AgentConfig, PoolConfig};
use crate::haproxy::{Client, HaproxyError, ServerState};
use crate::slots::{self, EntryState, LiveSlots, PoolPlan, SlotTable, Step};
use crate::store::{self, Lock, StoreError};

/// How often HAProxy's stats are polled while waiting for checks or drains.
const POLL: Duration = Duration::from_millis(50);
/// How long a reload may take before it is reported as stuck.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a run could not do what it was asked. Errors before any command was sent
/// change nothing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The message names a pool agent.toml does not define.
    #[error("unknown pool {pool}: this host manages {known}; add a [[pool]] entry to agent.toml or fix the message")]
    UnknownPool {
        /// The pool named.
        pool: PoolName,
        /// The pools this host manages.
        known: String,
    },
    /// HAProxy has no slots for a pool agent.toml defines.
    #[error("HAProxy has no slots for pool {pool}: its backend lacks the `server-template slot` line, or HAProxy runs another configuration. Run `agent config check`")]
    NoBackend {
        /// The pool.
        pool: PoolName,
    },
    /// Talking to HAProxy failed.
    #[error(transparent)]
    Haproxy(#[from] HaproxyError),
    /// A state file or the lock failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The grown configuration failed `haproxy -c`; the running one is untouched.
    #[error("the configuration with more slots failed `haproxy -c` and was not installed; HAProxy keeps running the old one. HAProxy said:\n{output}")]
    ConfigInvalid {
        /// HAProxy's own output.
        output: String,
    },
    /// The configuration file could not be read, or lacks a pool's slot line.
    #[error("{0}")]
    Config(String),
    /// The reload did not take.
    #[error("HAProxy reload failed: {0}. The previous configuration was put back; the old worker keeps serving")]
    Reload(String),
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wait for health checks and drains (false: send and return, outcomes `pending`).
    pub wait: bool,
    /// Print progress lines on stderr while waiting.
    pub progress: bool,
}

/// One line of what `agent sync` changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffLine {
    /// The pool.
    pub pool: String,
    /// `+` join, `-` leave, `!` evict unknown server, `=` unchanged, `~` re-set.
    pub op: char,
    /// The member (or `-` for an unknown server).
    pub member: String,
    /// The slot.
    pub slot: Option<String>,
    /// What happens.
    pub detail: String,
}

/// A locked run against one HAProxy.
pub struct Engine<'a> {
    cfg: &'a AgentConfig,
    client: Client,
    table: SlotTable,
    reloads: u32,
    _lock: Lock,
}

struct Pending {
    pool: PoolName,
    member: Option<MemberId>,
    slot: u32,
    kind: Kind,
    deadline: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Join { fresh: bool },
    Leave,
    Evict,
}

impl<'a> Engine<'a> {
    /// Takes the host's lock (waiting up to `lock_timeout`) and loads the slot table.
    pub fn open(cfg: &'a AgentConfig, lock_timeout: Duration) -> Result<Self, EngineError> {
        let dir = &cfg.haproxy.state_dir;
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "cannot create state directory",
            path: dir.clone(),
            source,
        })?;
        let lock = store::lock(&cfg.haproxy.lock_path(), lock_timeout, |holder| {
            eprintln!(
                "agent: waiting for another agent run (pid {holder}) to finish (up to {lock_timeout:?})..."
            );
        })?;
        let mut table: SlotTable = store::read_json(&cfg.haproxy.slots_path())?;
        table.version = slots::TABLE_VERSION;
        Ok(Self {
            cfg,
            client: Client::new(
                cfg.haproxy.admin_socket.clone(),
                cfg.haproxy.master_socket.clone(),
                cfg.haproxy.timeout,
            ),
            table,
            reloads: 0,
            _lock: lock,
        })
    }

    fn pool_cfg(&self, pool: &PoolName) -> Result<&'a PoolConfig, EngineError> {
        self.cfg.pool(pool).ok_or_else(|| EngineError::UnknownPool {
            pool: pool.clone(),
            known: self
                .cfg
                .pools
                .iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// HAProxy's live server states of `pools` (one query per pool, so a host with
    /// many pools only reads those a message touches).
    pub fn live<'p>(
        &self,
        pools: impl IntoIterator<Item = &'p PoolName>,
    ) -> Result<Vec<ServerState>, EngineError> {
        let mut out = Vec::new();
        for pool in pools {
            match self.client.servers_state(Some(pool.as_str())) {
                Ok(states) => out.extend(states),
                // "Can't find backend." and the like.
                Err(HaproxyError::Refused { .. }) => {
                    return Err(EngineError::NoBackend { pool: pool.clone() })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    fn live_pool(&self, states: &[ServerState], pool: &PoolName) -> Result<LiveSlots, EngineError> {
        let live = LiveSlots::of(pool.as_str(), states);
        if live.size() == 0 {
            return Err(EngineError::NoBackend { pool: pool.clone() });
        }
        Ok(live)
    }

    /// Applies a change message and reports every member's outcome.
    pub fn apply(&mut self, change: &Change, opts: &Options) -> Result<Report, EngineError> {
        let span = info_span!("apply", generation = change.generation);
        let _g = span.enter();
        for p in &change.pools {
            self.pool_cfg(&p.pool)?;
        }
        let states = self.live(change.pools.iter().map(|p| &p.pool))?;
        let mut plans = Vec::new();
        for p in &change.pools {
            let live = self.live_pool(&states, &p.pool)?;
            let t = self.table.pools.entry(p.pool.to_string()).or_default();
            let plan = slots::plan_change(t, &live, &p.add, &p.remove, change.generation);
            plans.push((p.pool.clone(), plan));
        }
        self.execute(plans, &states, change.generation, opts)
    }

    /// Plans converging the pools of `desired`; with `dry_run`, only says what it would do.
    pub fn sync(
        &mut self,
        desired: &Desired,
        opts: &Options,
        dry_run: bool,
    ) -> Result<(Vec<DiffLine>, Option<Report>), EngineError> {
        let span = info_span!("sync", generation = desired.generation);
        let _g = span.enter();
        for p in &desired.pools {
            self.pool_cfg(&p.pool)?;
        }
        let states = self.live(desired.pools.iter().map(|p| &p.pool))?;
        let saved = self.table.clone();
        let mut plans = Vec::new();
        let mut diff = Vec::new();
        for p in &desired.pools {
            let live = self.live_pool(&states, &p.pool)?;
            let t = self.table.pools.entry(p.pool.to_string()).or_default();
            let plan = slots::plan_sync(t, &live, &p.members, desired.generation);
            diff.extend(diff_lines(&p.pool, &plan));
            plans.push((p.pool.clone(), plan));
        }
        if dry_run {
            self.table = saved;
            return Ok((diff, None));
        }
        let report = self.execute(plans, &states, desired.generation, opts)?;
        Ok((diff, Some(report)))
    }

    /// Writes the slot table and HAProxy's server-state file.
    fn save(&self) -> Result<(), EngineError> {
        self.save_table()?;
        self.save_server_state()
    }

    /// Writes the slot table only (the intent, before HAProxy is touched).
    fn save_table(&self) -> Result<(), EngineError> {
        let json = serde_json::to_vec(&self.table).unwrap_or_default();
        store::write_atomic(&self.cfg.haproxy.slots_path(), &json)?;
        Ok(())
    }

    fn save_server_state(&self) -> Result<(), EngineError> {
        let text = self.client.query("show servers state")?;
        if !text.starts_with('1') {
            return Err(HaproxyError::Protocol {
                command: "show servers state".into(),
                detail: format!("unexpected start {:?}", text.lines().next()),
            }
            .into());
        }
        store::write_atomic(&self.cfg.haproxy.server_state_path(), text.as_bytes())?;
        Ok(())
    }

    fn execute(
        &mut self,
        plans: Vec<(PoolName, PoolPlan)>,
        states: &[ServerState],
        generation: u64,
        opts: &Options,
    ) -> Result<Report, EngineError> {
        let start = Instant::now();
        // Grow first: every slot the plan uses must exist before commands are sent.
        let mut needs = BTreeMap::new();
        for (pool, plan) in &plans {
            let live = LiveSlots::of(pool.as_str(), states);
            if plan.size_needed > live.size() {
                needs.insert(pool.clone(), plan.size_needed);
            }
        }
        if !needs.is_empty() {
            self.resize(&needs)?;
        }
        // The intent, before any command: a run killed from here on is re-asserted by
        // the next one.
        self.save_table()?;

        // Each member's commands form one group: applied together by HAProxy.
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut pending = Vec::new();
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut order: Vec<(PoolName, MemberId)> = Vec::new();
        for (pool, plan) in &plans {
            let pc = self.pool_cfg(pool)?;
            let check = pc.pool.server_options.has_check();
            for step in &plan.steps {
                match step {
                    Step::Join {
                        member,
                        slot,
                        set,
                        fresh,
                    } => {
                        let srv = format!("{pool}/{}", slot_name(*slot));
                        if *set {
                            let mut g = vec![
                                format!(
                                    "set server {srv} addr {} port {}",
                                    member.address, member.port
                                ),
                                format!("set server {srv} state ready"),
                            ];
                            if check {
                                g.push(format!("set server {srv} health down"));
                            }
                            groups.push(g);
                        }
                        info!(pool = %pool, instance = %member.id, slot = %srv, set, "join");
                        order.push((pool.clone(), member.id.clone()));
                        pending.push(Pending {
                            pool: pool.clone(),
                            member: Some(member.id.clone()),
                            slot: *slot,
                            kind: Kind::Join { fresh: *fresh },
                            deadline: start + pc.health_timeout,
                        });
                    }
                    Step::Leave { member, slot } => {
                        let srv = format!("{pool}/{}", slot_name(*slot));
                        groups.push(vec![format!("set server {srv} state drain")]);
                        info!(pool = %pool, instance = %member, slot = %srv, "drain");
                        order.push((pool.clone(), member.clone()));
                        pending.push(Pending {
                            pool: pool.clone(),
                            member: Some(member.clone()),
                            slot: *slot,
                            kind: Kind::Leave,
                            deadline: start + pc.drain_timeout,
                        });
                    }
                    Step::Evict { slot, addr } => {
                        let srv = format!("{pool}/{}", slot_name(*slot));
                        warn!(pool = %pool, slot = %srv, addr = %addr, "evicting a server no member owns");
                        groups.push(vec![format!("set server {srv} state drain")]);
                        pending.push(Pending {
                            pool: pool.clone(),
                            member: None,
                            slot: *slot,
                            kind: Kind::Evict,
                            deadline: start + pc.drain_timeout,
                        });
                    }
                    Step::Done {
                        member,
                        slot,
                        status,
                        reason,
                    } => {
                        order.push((pool.clone(), member.clone()));
                        outcomes.push(Outcome {
                            pool: pool.clone(),
                            member: member.clone(),
                            slot: slot.map(slot_name),
                            status: *status,
                            reason: reason.clone(),
                            ms: 0,
                        });
                    }
                }
            }
        }
        if !groups.is_empty() {
            let refs: Vec<&[String]> = groups.iter().map(Vec::as_slice).collect();
            self.client.batch_groups(&refs)?;
            if opts.wait {
                // HAProxy changed: keep its state file current while we wait.
                self.save_server_state()?;
            }
        }
        if opts.wait {
            self.wait(&mut pending, &mut outcomes, generation, start, opts)?;
        } else {
            for p in pending.drain(..) {
                if let Some(m) = p.member {
                    outcomes.push(Outcome {
                        pool: p.pool,
                        member: m,
                        slot: Some(slot_name(p.slot)),
                        status: OutcomeStatus::Pending,
                        reason: Some("not waited for (--no-wait)".into()),
                        ms: ms(start),
                    });
                }
            }
        }
        self.save()?;
        // Report in the message's order.
        let mut by_key: std::collections::HashMap<(PoolName, MemberId), Outcome> = outcomes
            .into_iter()
            .map(|o| ((o.pool.clone(), o.member.clone()), o))
            .collect();
        let sorted: Vec<Outcome> = order.iter().filter_map(|k| by_key.remove(k)).collect();
        let ok = sorted.iter().all(|o| o.status.is_success());
        Ok(Report {
            host: self.cfg.host.clone(),
            generation,
            ok,
            reloads: self.reloads,
            outcomes: sorted,
        })
    }

    fn wait(
        &mut self,
        pending: &mut Vec<Pending>,
        outcomes: &mut Vec<Outcome>,
        generation: u64,
        start: Instant,
        opts: &Options,
    ) -> Result<(), EngineError> {
        let mut last_progress = Instant::now();
        while !pending.is_empty() {
            let rows = self.client.stats()?;
            let row = |pool: &PoolName, slot: u32| {
                let name = slot_name(slot);
                rows.iter()
                    .find(|r| r.backend == pool.as_str() && r.server == name)
            };
            let now = Instant::now();
            let mut cmds = Vec::new();
            let mut changed = false;
            let mut i = 0;
            while i < pending.len() {
                let p = &pending[i];
                let srv = format!("{}/{}", p.pool, slot_name(p.slot));
                let r = row(&p.pool, p.slot);
                let done: Option<(OutcomeStatus, Option<String>)> = match p.kind {
                    Kind::Join { fresh } => {
                        if r.is_some_and(|r| r.is_up()) {
                            self.set_state(&p.pool, p.member.as_ref(), EntryState::Up);
                            Some((OutcomeStatus::Up, None))
                        } else if now >= p.deadline {
                            let last = r.map(|r| r.check_summary()).unwrap_or_default();
                            let pc = self.pool_cfg(&p.pool)?;
                            if fresh {
                                cmds.push(format!("set server {srv} state maint"));
                                if let (Some(m), Some(t)) =
                                    (&p.member, self.table.pools.get_mut(p.pool.as_str()))
                                {
                                    t.members.remove(m);
                                }
                            }
                            Some((
                                OutcomeStatus::Failed,
                                Some(format!(
                                    "did not pass health checks within {:?} (last check: {last}){}",
                                    pc.health_timeout,
                                    if fresh {
                                        "; it took no traffic and its slot was released"
                                    } else {
                                        ""
                                    }
                                )),
                            ))
                        } else {
                            None
                        }
                    }
                    Kind::Leave | Kind::Evict => {
                        let (scur, qcur) = r.map(|r| (r.scur, r.qcur)).unwrap_or((0, 0));
                        if scur == 0 && qcur == 0 {
                            cmds.push(format!("set server {srv} state maint"));
                            Some((OutcomeStatus::Drained, None))
                        } else if now >= p.deadline {
                            cmds.push(format!("shutdown sessions server {srv}"));
                            cmds.push(format!("set server {srv} state maint"));
                            let pc = self.pool_cfg(&p.pool)?;
                            Some((OutcomeStatus::Drained, Some(format!(
                                "drain timeout ({:?}): {scur} sessions were still open and were closed, {qcur} queued",
                                pc.drain_timeout
                            ))))
                        } else {
                            None
                        }
                    }
                };
                match done {
                    Some((status, reason)) => {
                        let p = pending.swap_remove(i);
                        changed = true;
                        if let Some(m) = &p.member {
                            if p.kind == Kind::Leave {
                                if let Some(t) = self.table.pools.get_mut(p.pool.as_str()) {
                                    t.retire(m, generation);
                                }
                            }
                            info!(pool = %p.pool, instance = %m, slot = %slot_name(p.slot), outcome = %status, "done");
                            outcomes.push(Outcome {
                                pool: p.pool,
                                member: m.clone(),
                                slot: Some(slot_name(p.slot)),
                                status,
                                reason,
                                ms: ms(start),
                            });
                        }
                    }
                    None => i += 1,
                }
            }
            if !cmds.is_empty() {
                self.client.batch(&cmds)?;
            }
            if changed {
                self.save()?;
            }
            if opts.progress
                && !pending.is_empty()
                && last_progress.elapsed() >= Duration::from_secs(1)
            {
                last_progress = Instant::now();
                eprintln!(
                    "agent: {:.1}s: {}",
                    start.elapsed().as_secs_f64(),
                    progress_line(pending, &rows)
                );
                let _ = std::io::stderr().flush();
            }
            if !pending.is_empty() {
                std::thread::sleep(POLL);
            }
        }
        Ok(())
    }

    fn set_state(&mut self, pool: &PoolName, member: Option<&MemberId>, state: EntryState) {
        if let (Some(m), Some(t)) = (member, self.table.pools.get_mut(pool.as_str())) {
            if let Some(e) = t.members.get_mut(m) {
                e.state = state;
            }
        }
    }

    /// Resizes slot blocks (growing those in `needs`, shrinking mostly-free ones),
    /// validates the configuration and reloads HAProxy through the master socket.
    fn resize(&mut self, needs: &BTreeMap<PoolName, u32>) -> Result<(), EngineError> {
        // Every pool may shrink here, so read every pool's slots (rare: reloads only).
        let states = self.client.servers_state(None)?;
        let states = states.as_slice();
        let path = &self.cfg.haproxy.config;
        let old = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut new = old.clone();
        let mut sizes = Vec::new();
        for pc in &self.cfg.pools {
            let name = pc.name().as_str();
            let Some((_, cur)) = cfgfile::find_block(&new, name) else {
                if needs.contains_key(pc.name()) {
                    return Err(EngineError::Config(format!(
                        "{}: backend {name} has no `server-template slot` line to grow; run `agent config check`",
                        path.display()
                    )));
                }
                continue;
            };
            let live = LiveSlots::of(name, states);
            let busy_max = live
                .slots
                .iter()
                .filter(|(_, s)| !s.in_maint())
                .map(|(n, _)| *n)
                .max()
                .unwrap_or(0);
            let used = self
                .table
                .pools
                .get(name)
                .map(|t| t.used())
                .unwrap_or_default();
            let used_max = used.iter().next_back().copied().unwrap_or(0);
            let needed = needs
                .get(pc.name())
                .copied()
                .unwrap_or(0)
                .max(used_max)
                .max(busy_max);
            let target = slots::target_size(cur, pc.slots, needed, used.len() as u32);
            if target != cur {
                sizes.push(format!("{name} {cur} -> {target}"));
                new = cfgfile::set_slots(&new, name, target).unwrap_or(new);
            }
        }
        if new == old {
            return Ok(());
        }
        let span = info_span!("reload", slots = %sizes.join(", "));
        let _g = span.enter();
        eprintln!(
            "agent: slots {}: validating and reloading HAProxy",
            sizes.join(", ")
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("haproxy.cfg");
        let candidate = dir.join(format!(".{name}.agent-new"));
        std::fs::write(&candidate, &new).map_err(|e| {
            EngineError::Config(format!("cannot write {}: {e}", candidate.display()))
        })?;
        let out = Command::new(&self.cfg.haproxy.binary)
            .arg("-c")
            .arg("-f")
            .arg(&candidate)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_file(&candidate);
                return Err(EngineError::Config(format!(
                    "cannot run {} -c: {e}; set haproxy.binary in agent.toml",
                    self.cfg.haproxy.binary.display()
                )));
            }
        };
        if !out.status.success() {
            let _ = std::fs::remove_file(&candidate);
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(EngineError::ConfigInvalid { output });
        }
        let _ = std::fs::remove_file(&candidate);
        if !self.client.has_master() {
            return Err(HaproxyError::NoMaster.into());
        }

        // Slots ready but DOWN would come back UP after the reload until their first
        // failed check: park them in maint across it and restore them after.
        let parked: Vec<String> = states
            .iter()
            .filter(|s| cfgfile::slot_number(&s.server).is_some() && !s.in_maint() && !s.running())
            .map(|s| format!("{}/{}", s.backend, s.server))
            .collect();
        if !parked.is_empty() {
            let cmds: Vec<String> = parked
                .iter()
                .map(|s| format!("set server {s} state maint"))
                .collect();
            self.client.batch(&cmds)?;
        }
        self.save_server_state()?;
        let before = self.client.proc_info()?;
        store::write_atomic(path, new.as_bytes())?;
        let _ = self.client.master("reload");
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                let _ = store::write_atomic(path, old.as_bytes());
                return Err(EngineError::Reload(format!(
                    "no new worker within {RELOAD_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
            let Ok(now) = self.client.proc_info() else {
                continue;
            };
            if now.failed > before.failed {
                let _ = store::write_atomic(path, old.as_bytes());
                return Err(EngineError::Reload(
                    "the master reported `[failed]` for the new configuration".into(),
                ));
            }
            if now.reloads > before.reloads
                && now.current_worker().is_some()
                && now.current_worker() != before.current_worker()
            {
                break;
            }
        }
        // Writes to the admin socket can still reach the old worker for a while: talk
        // to the new one through the master from now on.
        self.client.route_via_master()?;
        if !parked.is_empty() {
            let groups: Vec<Vec<String>> = parked
                .iter()
                .map(|s| {
                    vec![
                        format!("set server {s} state ready"),
                        format!("set server {s} health down"),
                    ]
                })
                .collect();
            let refs: Vec<&[String]> = groups.iter().map(Vec::as_slice).collect();
            self.client.batch_groups(&refs)?;
        }
        self.reloads += 1;
        info!(reloads = self.reloads, "reloaded");
        Ok(())
    }
}

fn ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

fn progress_line(pending: &[Pending], rows: &[crate::haproxy::StatRow]) -> String {
    let mut joining = Vec::new();
    let mut draining = Vec::new();
    for p in pending {
        let name = slot_name(p.slot);
        let r = rows
            .iter()
            .find(|r| r.backend == p.pool.as_str() && r.server == name);
        let who = p
            .member
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "unknown server".into());
        match p.kind {
            Kind::Join { .. } => joining.push(format!(
                "{}/{name} {who}: {}",
                p.pool,
                r.map(|r| r.check_summary()).unwrap_or_default()
            )),
            _ => draining.push(format!(
                "{}/{name} {who}: {} sessions, {} queued",
                p.pool,
                r.map(|r| r.scur).unwrap_or(0),
                r.map(|r| r.qcur).unwrap_or(0)
            )),
        }
    }
    let mut parts = Vec::new();
    if !joining.is_empty() {
        parts.push(format!(
            "waiting for {} to pass checks ({})",
            joining.len(),
            joining.join("; ")
        ));
    }
    if !draining.is_empty() {
        parts.push(format!(
            "draining {} ({})",
            draining.len(),
            draining.join("; ")
        ));
    }
    parts.join(", ")
}

fn diff_lines(pool: &PoolName, plan: &PoolPlan) -> Vec<DiffLine> {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::Join {
                member,
                slot,
                set,
                fresh,
            } => DiffLine {
                pool: pool.to_string(),
                op: if !set {
                    '='
                } else if *fresh {
                    '+'
                } else {
                    '~'
                },
                member: member.id.to_string(),
                slot: Some(slot_name(*slot)),
                detail: if *set {
                    format!("set {}:{} ready, health-gated", member.address, member.port)
                } else {
                    format!("{}:{} in place", member.address, member.port)
                },
            },
            Step::Leave { member, slot } => DiffLine {
                pool: pool.to_string(),
                op: '-',
                member: member.to_string(),
                slot: Some(slot_name(*slot)),
                detail: "drain, then release the slot".into(),
            },
            Step::Evict { slot, addr } => DiffLine {
                pool: pool.to_string(),
                op: '!',
                member: "-".into(),
                slot: Some(slot_name(*slot)),
                detail: format!("{addr} is served but no member owns it: drain and release"),
            },
            Step::Done {
                member,
                slot,
                status,
                reason,
            } => DiffLine {
                pool: pool.to_string(),
                op: '=',
                member: member.to_string(),
                slot: slot.map(slot_name),
                detail: format!(
                    "{status}{}",
                    reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            },
        })
        .collect()
}
