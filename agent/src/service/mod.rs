//! The agent service (`agent run`): one long-running process per host that owns
//! HAProxy's runtime state (the slot table, the server-state file, the configuration's
//! slot blocks) and every join and drain in flight.
//!
//! - Each member is its own state machine ([`crate::slots`]), advanced from HAProxy's
//!   stats by one ticker thread ([`Service::tick`]). Waiting never holds a lock: only
//!   the short critical sections (planning, a batch of socket commands, a table write, a
//!   configuration rewrite and reload) hold the state's mutex.
//! - Requests come over the control socket ([`server`]); `agent apply` hands its change
//!   over and waits only for the members of its change.
//! - The slot table is written before anything is sent ([`Service::save_table`]), so a
//!   service killed at any moment resumes where it was ([`Service::resume`]). When it
//!   cannot be written, a change that only takes traffic away (drains, releases,
//!   evictions) goes ahead anyway, the table kept in memory; a join is refused.
//! - With `[aws]` groups, the service syncs from AWS when it starts and every
//!   `sync_interval_s`, as one more change among the others.
//! - With `[metrics] agent`, it serves its own Prometheus metrics ([`scrape`]), fed as
//!   things happen ([`crate::metrics`]).
//! - With `[report]`, every member's outcome (UP, DRAINED, FAILED, STALE) goes to the
//!   reactor's inbox as it is reached ([`inbox`]), through an outbox persisted with the
//!   table ([`crate::outbox`]).

mod grow;
pub mod inbox;
mod resume;
mod scrape;
mod server;
mod version;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use infra::{Change, Desired, MemberId, MessageError, Outcome, OutcomeStatus, PoolName, Report};
use tracing::{info, info_span, warn};

use crate::config::{AgentConfig, PoolConfig};
use crate::control::{DiffLine, SyncReply};
use crate::haproxy::{Client, Command, HaproxyError, StatRow};
use crate::haproxy_cfg::slot_name;
use crate::instances;
use crate::metrics::{self, ErrorKind};
use crate::outbox::Outbox;
use crate::slots::{self, Action, Clock, Finished, LiveSlots, PoolPlan, SlotTable, Timeouts};
use crate::status::Status;
use crate::store::{self, StoreError};

pub use server::run;

/// How often HAProxy's stats are read while operations are in flight.
const TICK: Duration = Duration::from_millis(50);
/// The reason of a member a waiting request got no outcome for because the service
/// stopped.
const STOPPED_WHILE_WAITING: &str = "no outcome: the agent service stopped while this request waited; the operation stays in the slot table and resumes when the service starts again (`agent status` shows it)";
/// How long after a reload every command goes through the master socket: writes to the
/// admin socket can reach the old worker for ~100 ms after a reload and be lost.
const VIA_MASTER_AFTER_RELOAD: Duration = Duration::from_secs(5);
/// How long a waiter waits past an operation's deadline for its outcome.
const OUTCOME_GRACE: Duration = Duration::from_secs(10);

/// Why a request could not be carried out. Errors before any command was sent change
/// nothing; a failed send puts the table back as it was.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The message is malformed or invalid.
    #[error(transparent)]
    Message(#[from] MessageError),
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
    /// haproxy.cfg could not be read or written.
    #[error("{action} {path}: {source}")]
    ConfigFile {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A pool that must grow has no slot line in haproxy.cfg.
    #[error("{path}: backend {pool} has no `server-template slot` line to grow; run `agent config check`")]
    NoSlotLine {
        /// haproxy.cfg.
        path: PathBuf,
        /// The pool.
        pool: PoolName,
    },
    /// `haproxy -c` could not be run.
    #[error("cannot run {binary} -c: {source}; set haproxy.binary in agent.toml")]
    Check {
        /// The haproxy binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The grown configuration failed `haproxy -c`; the running one is untouched.
    #[error("the configuration with more slots failed `haproxy -c` and was not installed; HAProxy keeps running the old one. HAProxy said:\n{output}")]
    ConfigInvalid {
        /// HAProxy's own output.
        output: String,
    },
    /// The reload did not take.
    #[error("HAProxy reload failed: {0}. The previous configuration was put back; the old worker keeps serving")]
    Reload(String),
    /// Reading the desired state from AWS failed.
    #[error(transparent)]
    Aws(#[from] crate::aws::SourceError),
    /// The message (or the growth it needs) is beyond what this host accepts.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

/// A finished outcome, by pool, member and the change it belonged to.
type ResultKey = (PoolName, MemberId, u64);

/// Outcomes of finished operations, kept only while a caller waits for them. A caller
/// registers what it waits for in the same critical section that starts the operations,
/// so no outcome can end before it is wanted; outcomes nobody waits for (`--no-wait`, a
/// caller gone, operations resumed after a restart) are not kept at all. Keeping every
/// outcome for a while instead held megabytes after a few thousand-member changes.
#[derive(Default)]
struct Results {
    by_key: BTreeMap<ResultKey, Finished>,
    /// How many callers wait for each key.
    wanted: BTreeMap<ResultKey, u32>,
}

impl Results {
    /// Keeps `f` if a caller waits for it.
    fn record(&mut self, pool: &PoolName, f: Finished) {
        let Some(member) = f.member.clone() else {
            return;
        };
        let key = (pool.clone(), member, f.change);
        if self.wanted.contains_key(&key) {
            self.by_key.insert(key, f);
        }
    }

    /// One more caller waits for `key`.
    fn want(&mut self, key: ResultKey) {
        *self.wanted.entry(key).or_default() += 1;
    }

    /// A caller is done with `key` (its request ended); the outcome is forgotten with
    /// its last caller.
    fn release(&mut self, key: &ResultKey) {
        if let Some(n) = self.wanted.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.wanted.remove(key);
                self.by_key.remove(key);
            }
        }
    }
}

/// Everything the mutex guards.
struct State {
    table: SlotTable,
    results: Results,
    /// Counts planning steps; see [`slots::Entry::touched`].
    epoch: u64,
    reloads: u64,
    reloaded_at: Option<Instant>,
    /// The last stats read (progress lines).
    rows: Vec<StatRow>,
    /// Why the last stats read failed, if it did.
    last_error: Option<String>,
    /// Whether the start-up resume reached HAProxy.
    resumed: bool,
    /// The version HAProxy reported (`show info`), when known.
    haproxy_version: Option<String>,
    /// What the running worker's instance map holds, as far as we know; `None` after a
    /// reload or a failed batch, when only `show map` can tell.
    instances: Option<instances::Entries>,
    /// Outcomes waiting for the reactor's inbox (`[report]`; empty without it).
    outbox: Outbox,
    /// For members in flight: the newest generation that asked for their target while
    /// an earlier change's operation converged them. Their outcome is reported under it,
    /// so the change that found them converging learns how it ended.
    asked: BTreeMap<(PoolName, MemberId), u64>,
    /// The HAProxy worker the table was last made true on (its pid): another one is a
    /// reload or restart by someone else ([`Service::watch`]).
    worker: Option<u32>,
    /// Workers this service did not start that it has seen.
    external_reloads: u64,
    /// The last of them.
    external: Option<crate::status::ExternalReload>,
}

/// An outcome for the inbox.
struct Reported {
    generation: u64,
    status: OutcomeStatus,
    reason: Option<String>,
    ms: u64,
}

impl Reported {
    fn now(generation: u64, status: OutcomeStatus, reason: Option<String>) -> Self {
        Self {
            generation,
            status,
            reason,
            ms: 0,
        }
    }
}

/// A member this request waits for.
struct Wait {
    pool: PoolName,
    member: MemberId,
    change: u64,
    slot: u32,
    deadline: Instant,
}

impl Wait {
    fn key(&self) -> ResultKey {
        (self.pool.clone(), self.member.clone(), self.change)
    }
}

/// What planning a request gave: outcomes known now, members to wait for.
struct Started {
    outcomes: Vec<Outcome>,
    waits: Vec<Wait>,
    reloads: u32,
    diff: Vec<DiffLine>,
}

/// The service: configuration, HAProxy client and the guarded state.
pub struct Service {
    cfg: AgentConfig,
    client: Client,
    state: Mutex<State>,
    /// Notified when an operation starts or ends.
    changed: Condvar,
    stop: AtomicBool,
    /// Counters and histogram for `/metrics`; locked after `state` when both are.
    metrics: Mutex<metrics::Registry>,
}

/// The metrics kind of an error a request or a tick met.
fn error_kind(e: &ServiceError) -> ErrorKind {
    match e {
        ServiceError::Message(_) | ServiceError::UnknownPool { .. } | ServiceError::Limit(_) => {
            ErrorKind::RefusedMessage
        }
        ServiceError::NoBackend { .. } => ErrorKind::NoSlots,
        ServiceError::Haproxy(h) => haproxy_kind(h),
        ServiceError::Store(_) => ErrorKind::StateWriteFailed,
        ServiceError::ConfigFile { .. }
        | ServiceError::NoSlotLine { .. }
        | ServiceError::Check { .. }
        | ServiceError::ConfigInvalid { .. }
        | ServiceError::Reload(_) => ErrorKind::ReloadFailed,
        ServiceError::Aws(_) => ErrorKind::SyncFailed,
    }
}

/// The metrics kind of a failed exchange with HAProxy.
fn haproxy_kind(e: &HaproxyError) -> ErrorKind {
    match e {
        HaproxyError::Connect { .. } | HaproxyError::Io { .. } => ErrorKind::HaproxyUnreachable,
        HaproxyError::Refused { .. } | HaproxyError::Protocol { .. } => ErrorKind::BatchFailed,
        HaproxyError::NoMaster => ErrorKind::ReloadFailed,
        HaproxyError::Unsupported { .. } => ErrorKind::UnsupportedHaproxy,
    }
}

fn now_ms() -> u64 {
    infra::aws::now_ms()
}

fn outcome(
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

impl Service {
    /// A service for `cfg` with the table found in its state directory (upgraded to
    /// this build's format).
    pub fn open(cfg: AgentConfig) -> Result<Self, ServiceError> {
        let mut table: SlotTable = store::read_json(&cfg.haproxy.slots_path())?;
        let outbox: Outbox = match cfg.report {
            Some(_) => store::read_json(&cfg.haproxy.reports_path())?,
            None => Outbox::default(),
        };
        table.version = slots::TABLE_VERSION;
        let now = now_ms();
        for pc in &cfg.pools {
            if let Some(t) = table.pools.get_mut(pc.name().as_str()) {
                t.upgrade(now, timeouts(pc));
            }
        }
        let client = Client::new(
            cfg.haproxy.admin_socket.clone(),
            cfg.haproxy.master_socket.clone(),
            cfg.haproxy.timeout,
        );
        let pools: Vec<String> = cfg.pools.iter().map(|p| p.name().to_string()).collect();
        let registry = metrics::Registry::new(&pools, now_ms() as f64 / 1000.0);
        Ok(Self {
            cfg,
            client,
            state: Mutex::new(State {
                table,
                results: Results::default(),
                epoch: 0,
                reloads: 0,
                reloaded_at: None,
                instances: None,
                rows: Vec::new(),
                last_error: None,
                resumed: false,
                haproxy_version: None,
                outbox,
                asked: BTreeMap::new(),
                worker: None,
                external_reloads: 0,
                external: None,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            metrics: Mutex::new(registry),
        })
    }

    /// Feeds the metrics registry (a panic elsewhere leaves plain numbers: recovered).
    fn metric<T>(&self, f: impl FnOnce(&mut metrics::Registry) -> T) -> T {
        f(&mut self.metrics.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts `e` by its kind and hands it back.
    fn counted<T>(&self, r: Result<T, ServiceError>) -> Result<T, ServiceError> {
        if let Err(e) = &r {
            self.metric(|m| m.error(error_kind(e)));
        }
        r
    }

    /// Records a successful sync from AWS (its time and count).
    /// The members this host serves (joining or up) in `desired`'s pools that `desired`
    /// leaves out: what a sync to it would drain.
    fn strays(&self, desired: &Desired) -> Vec<(PoolName, infra::Member)> {
        let st = self.lock();
        let mut out = Vec::new();
        for pd in &desired.pools {
            let Some(t) = st.table.pools.get(pd.pool.as_str()) else {
                continue;
            };
            for (id, e) in &t.members {
                let listed = pd.members.iter().any(|m| &m.id == id);
                if listed || e.state == slots::EntryState::Draining {
                    continue;
                }
                if let Ok(m) = infra::Member::new(id.clone(), e.address, e.port) {
                    out.push((pd.pool.clone(), m));
                }
            }
        }
        out
    }

    fn synced_from_aws(&self) {
        self.metric(|m| m.synced(now_ms() as f64 / 1000.0));
    }

    /// Records that HAProxy declares `lives`' slot counts.
    fn record_slots(&self, lives: &BTreeMap<PoolName, LiveSlots>) {
        self.metric(|m| {
            for (p, l) in lives {
                m.set_slots(p.as_str(), l.size());
            }
        });
    }

    /// Everything `/metrics` shows, in Prometheus' text format: the counters, and the
    /// table's gauges as they are now.
    pub fn metrics_text(&self) -> String {
        let pools: Vec<String> = self
            .cfg
            .pools
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let snap = {
            let st = self.lock();
            let mut snap = metrics::Snapshot::of(&st.table, &pools, st.reloads);
            snap.reports_pending = st.outbox.len() as u64;
            snap.haproxy_version.clone_from(&st.haproxy_version);
            snap
        };
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(&snap)
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the table on disk is still whole, so
        // keep serving rather than poisoning every later request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client for now: through the master for a while after a reload.
    fn haproxy(&self, st: &State) -> Client {
        match st.reloaded_at {
            Some(at) if at.elapsed() < VIA_MASTER_AFTER_RELOAD => self
                .client
                .via_master()
                .unwrap_or_else(|_| self.client.clone()),
            _ => self.client.clone(),
        }
    }

    fn pool_cfg(&self, pool: &PoolName) -> Result<&PoolConfig, ServiceError> {
        self.cfg
            .pool(pool)
            .ok_or_else(|| ServiceError::UnknownPool {
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

    /// HAProxy's live slots of `pool`.
    fn live(client: &Client, pool: &PoolName) -> Result<LiveSlots, ServiceError> {
        match client.servers_state(Some(pool.as_str())) {
            Ok(states) => {
                let live = LiveSlots::of(pool.as_str(), &states);
                if live.size() == 0 {
                    return Err(ServiceError::NoBackend { pool: pool.clone() });
                }
                Ok(live)
            }
            // "Can't find backend." and the like.
            Err(HaproxyError::Refused { .. }) => {
                Err(ServiceError::NoBackend { pool: pool.clone() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the slot table: the intent, before HAProxy is touched.
    fn save_table(&self, st: &State) -> Result<(), ServiceError> {
        let json = serde_json::to_vec(&st.table).map_err(|e| StoreError::Encode(e.to_string()))?;
        store::write_atomic(&self.cfg.haproxy.slots_path(), &json)?;
        Ok(())
    }

    /// Writes the slot table before a change touches HAProxy. When it cannot be written,
    /// a change that `joins` nothing goes ahead anyway: taking traffic away must never
    /// wait for a disk (the table stays in memory and the next change writes it).
    fn save_intent(&self, st: &State, joins: bool) -> Result<(), ServiceError> {
        match self.save_table(st) {
            Err(e) if !joins => {
                self.metric(|m| m.error(ErrorKind::StateWriteFailed));
                tracing::error!(error = %e, "cannot write the slot table; draining anyway (the table is kept in memory until it can be written; a restart before then forgets these drains and the reactor's next reconcile repeats them)");
                Ok(())
            }
            r => r,
        }
    }

    /// Writes the instance map HAProxy reads at its next start or reload. Written after
    /// the commands (the running worker gets its entries over the socket, and a reload
    /// only happens under the lock this change holds): one synced write less before a
    /// member reaches HAProxy. A service killed before it re-writes it when it resumes.
    fn save_map(&self, st: &State) -> Result<(), ServiceError> {
        let map = instances::render(&instances::entries(&st.table));
        store::write_atomic(
            std::path::Path::new(self.cfg.haproxy.instances_map.as_str()),
            map.as_bytes(),
        )?;
        Ok(())
    }

    /// The commands that bring the worker's instance map to the table; once they are
    /// sent the worker holds the table's entries. Asks HAProxy first when what it holds
    /// is unknown, and puts every entry when it cannot say (a put replaces).
    fn map_commands(&self, st: &mut State, client: &Client) -> Vec<Vec<Command>> {
        let map = &self.cfg.haproxy.instances_map;
        let wanted = instances::entries(&st.table);
        let current: Option<Vec<(instances::Slot, MemberId)>> = match st.instances.take() {
            Some(known) => Some(known.into_iter().collect()),
            None => match client.show_map(map) {
                Ok(pairs) => Some(instances::parse_live(&pairs)),
                Err(e) => {
                    warn!(error = %e, "cannot read the instance map; sending it whole");
                    None
                }
            },
        };
        let groups = instances::commands(map, current, &wanted);
        st.instances = Some(wanted);
        groups
    }

    /// Writes HAProxy's server-state file, which a reload or restart loads.
    fn save_server_state(&self, st: &State) -> Result<(), ServiceError> {
        let text = self.haproxy(st).servers_state_text()?;
        store::write_atomic(&self.cfg.haproxy.server_state_path(), text.as_bytes())?;
        Ok(())
    }

    /// Writes the outbox (`[report]` only); a failure is logged and counted, the
    /// reports stay in memory and the next write tries again.
    fn save_outbox(&self, st: &State) {
        if self.cfg.report.is_none() {
            return;
        }
        let written = serde_json::to_vec(&st.outbox)
            .map_err(|e| StoreError::Encode(e.to_string()))
            .and_then(|json| store::write_atomic(&self.cfg.haproxy.reports_path(), &json));
        if let Err(e) = written {
            self.metric(|m| m.error(ErrorKind::StateWriteFailed));
            warn!(error = %e, "cannot write the outbox of reports; they stay in memory");
        }
    }

    /// Puts a member's outcome in the outbox for the reactor's inbox (`[report]` only):
    /// under the newest generation that asked for it, when a later change found it
    /// converging.
    fn report(&self, st: &mut State, pool: &PoolName, member: &MemberId, f: Reported) {
        let asked = st.asked.remove(&(pool.clone(), member.clone()));
        if self.cfg.report.is_none() || f.status == OutcomeStatus::Pending {
            return;
        }
        let generation = asked.map_or(f.generation, |a| a.max(f.generation));
        let dropped = st.outbox.push(
            infra::MemberReport::new(
                pool.clone(),
                member.clone(),
                generation,
                f.status,
                f.reason,
                f.ms,
            ),
            now_ms(),
        );
        if dropped > 0 {
            self.metric(|m| m.reports_dropped(dropped));
            tracing::error!(dropped, "the outbox is full: the oldest reports were dropped (the reactor's schedule repairs what they said)");
        }
    }

    /// Every file; failures are logged (the next change writes them again).
    fn persist(&self, st: &State) {
        if let Err(e) = self.save_table(st).and_then(|()| self.save_map(st)) {
            self.metric(|m| m.error(ErrorKind::StateWriteFailed));
            warn!(error = %e, "cannot write the slot table or the instance map");
        }
        self.save_outbox(st);
        if let Err(e) = self.save_server_state(st) {
            self.metric(|m| m.error(error_kind(&e)));
            warn!(error = %e, "cannot write the server-state file");
        }
    }

    /// Plans `per_pool` (pool -> plan function) under the lock, grows slots if needed,
    /// writes the intent, sends the commands. Nothing is left changed on error.
    fn start<F>(
        &self,
        pools: &[PoolName],
        generation: u64,
        dry_run: bool,
        mut plan_pool: F,
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
            let live = &lives[p];
            let t = st.table.pools.entry(p.to_string()).or_default();
            plans.push((p.clone(), plan_pool(p, t, live, clock)));
        }
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
        let needs: BTreeMap<PoolName, u32> = plans
            .iter()
            .filter(|(p, plan)| plan.size_needed > lives[p].size())
            .map(|(p, plan)| (p.clone(), plan.size_needed))
            .collect();
        let mut reloads = 0;
        if !needs.is_empty() {
            if let Err(e) = self.grow(&mut st, &needs) {
                st.table = snapshot;
                return Err(e);
            }
            reloads = 1;
        }
        // The intent, before any command: a service killed from here on re-asserts it.
        let joins = !needs.is_empty()
            || plans
                .iter()
                .any(|(_, p)| p.actions.iter().any(slots::Action::is_join));
        if let Err(e) = self.save_intent(&st, joins) {
            st.table = snapshot;
            return Err(e);
        }
        // The instance map first, so the first request a joining slot serves is
        // logged with its instance.
        let client = self.haproxy(&st);
        let mut groups = self.map_commands(&mut st, &client);
        for (p, plan) in &plans {
            let check = self.pool_cfg(p)?.pool.server_options.has_check();
            for a in &plan.actions {
                groups.extend(slots::commands(p, a, check));
            }
        }
        if let Err(e) = client.batch(&groups) {
            st.table = snapshot;
            st.instances = None;
            self.persist(&st);
            return Err(e.into());
        }
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
                    &mut st,
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
                self.track(&mut st, &p, generation, &a);
                self.account(&st, &p, generation, a, base, &mut started);
            }
        }
        for w in &started.waits {
            st.results.want(w.key());
        }
        self.persist(&st);
        drop(st);
        self.changed.notify_all();
        Ok(started)
    }

    /// What the inbox learns from one planned action: an outcome known now is reported
    /// at once; a member found converging under an earlier change is remembered, so its
    /// outcome is reported under this change's generation too.
    fn track(&self, st: &mut State, pool: &PoolName, generation: u64, action: &Action) {
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
    fn account(
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
    fn wait(&self, waits: Vec<Wait>, progress: &mut dyn FnMut(String)) -> Vec<Outcome> {
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
                    slots::plan_change_by(
                        t,
                        live,
                        &pc.add,
                        &pc.remove,
                        &pc.drain_by_ms,
                        change.generation,
                        clock,
                    )
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

    fn finish(
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

    /// Every slot and every operation in flight.
    pub fn status(&self) -> Result<Status, ServiceError> {
        let (client, table, reloads, version, external) = {
            let st = self.lock();
            let external = (st.external_reloads, st.external.clone());
            let version = st.haproxy_version.clone();
            (
                self.haproxy(&st),
                st.table.clone(),
                st.reloads,
                version,
                external,
            )
        };
        let pools: Vec<String> = self
            .cfg
            .pools
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let read = client
            .servers_state(None)
            .and_then(|s| Ok((s, client.stats()?)));
        let mut sockets = vec![crate::status::SocketStatus {
            role: "admin".into(),
            endpoint: self.cfg.haproxy.admin_socket.to_string(),
            error: read.as_ref().err().map(ToString::to_string),
        }];
        if let Some(master) = &self.cfg.haproxy.master_socket {
            sockets.push(crate::status::SocketStatus {
                role: "master".into(),
                endpoint: master.to_string(),
                error: self.client.proc_info().err().map(|e| e.to_string()),
            });
        }
        let mut status = match read {
            Ok((states, rows)) => crate::status::build(
                &self.cfg.host,
                &pools,
                &table,
                &states,
                &rows,
                now_ms(),
                reloads,
            ),
            Err(e) => {
                let why = format!("{e}: the slots below are the agent's table; is HAProxy running (`systemctl status haproxy`)?");
                crate::status::without_haproxy(&self.cfg.host, &pools, &table, reloads, why)
            }
        };
        status.haproxy_version = version;
        status.sockets = sockets;
        status.external_reloads = external.0;
        status.last_external_reload = external.1;
        Ok(status)
    }

    /// Whether a join, drain or eviction is in flight.
    fn busy(st: &State) -> bool {
        st.table
            .pools
            .values()
            .any(|t| !t.evicting.is_empty() || t.members.values().any(|e| e.op.is_some()))
    }

    /// One look at HAProxy: moves every operation on, sends what that needs, records
    /// the outcomes. Returns whether operations are still in flight.
    pub fn tick(&self) -> bool {
        let (client, seen, resumed) = {
            let st = self.lock();
            if st.resumed && !Self::busy(&st) {
                return false;
            }
            (self.haproxy(&st), st.epoch, st.resumed)
        };
        if !resumed {
            if let Err(e) = self.resume() {
                // HAProxy is not there yet: try again in a second.
                let mut st = self.lock();
                if st.last_error.is_none() {
                    self.metric(|m| m.error(error_kind(&e)));
                }
                st.last_error = Some(e.to_string());
                return false;
            }
        }
        let rows = match client.stats() {
            Ok(r) => r,
            Err(e) => {
                let mut st = self.lock();
                if st.last_error.is_none() {
                    self.metric(|m| m.error(haproxy_kind(&e)));
                    warn!(error = %e, "cannot read HAProxy's stats; operations wait");
                }
                st.last_error = Some(e.to_string());
                return true;
            }
        };
        let mut st = self.lock();
        st.last_error = None;
        let now = now_ms();
        let mut commands: Vec<Vec<Command>> = Vec::new();
        let mut finished: Vec<(PoolName, Finished)> = Vec::new();
        for pc in &self.cfg.pools {
            let pool = pc.name();
            let Some(t) = st.table.pools.get_mut(pool.as_str()) else {
                continue;
            };
            let by_slot: BTreeMap<u32, &StatRow> = rows
                .iter()
                .filter(|r| r.backend == pool.as_str())
                .filter_map(|r| Some((crate::haproxy_cfg::slot_number(&r.server)?, r)))
                .collect();
            let adv = slots::advance(pool, t, &by_slot, now, seen);
            commands.extend(adv.commands.into_iter().map(|c| vec![c]));
            finished.extend(adv.finished.into_iter().map(|f| (pool.clone(), f)));
        }
        st.rows = rows;
        if !finished.is_empty() {
            // A released slot leaves the map.
            commands.extend(self.map_commands(&mut st, &client));
        }
        if !commands.is_empty() {
            if let Err(e) = client.batch(&commands) {
                st.instances = None;
                self.metric(|m| m.error(haproxy_kind(&e)));
                warn!(error = %e, "cannot send the commands that end operations; the next sync repairs the slots");
            }
        }
        let changed = !finished.is_empty();
        for (pool, f) in finished {
            info!(
                pool = %pool,
                instance = %f.member.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into()),
                generation = f.change,
                slot = %slot_name(f.slot),
                outcome = %f.status,
                reason = f.reason.as_deref().unwrap_or(""),
                ms = f.ms,
                "operation finished"
            );
            if let Some(member) = &f.member {
                self.metric(|m| m.observe(pool.as_str(), f.status, f.ms));
                let reported = Reported {
                    generation: f.change,
                    status: f.status,
                    reason: f.reason.clone(),
                    ms: f.ms,
                };
                self.report(&mut st, &pool, member, reported);
            }
            st.results.record(&pool, f);
        }
        if changed || !commands.is_empty() {
            self.persist(&st);
        }
        let busy = Self::busy(&st);
        drop(st);
        if changed {
            self.changed.notify_all();
        }
        busy
    }

    /// Asks every loop to stop.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Whether a stop was asked.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The pool's timeouts in ms.
fn timeouts(pc: &PoolConfig) -> Timeouts {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Timeouts {
        health_ms: ms(pc.health_timeout),
        drain_ms: ms(pc.drain_timeout),
    }
}

fn progress_line(pending: &[Wait], rows: &[StatRow]) -> String {
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

fn diff_lines(pool: &PoolName, plan: &PoolPlan) -> Vec<DiffLine> {
    let line = |op: char, member: &str, slot: Option<u32>, detail: String| DiffLine {
        pool: pool.to_string(),
        op,
        member: member.to_string(),
        slot: slot.map(slot_name),
        detail,
    };
    plan.actions
        .iter()
        .map(|a| match a {
            Action::Join {
                member,
                slot,
                send: slots::Send::Join { addr, port },
            } => line(
                '+',
                member.as_str(),
                Some(*slot),
                format!("set {addr}:{port} ready, health-gated"),
            ),
            Action::Join {
                member,
                slot,
                send: slots::Send::Ready,
            } => line(
                '~',
                member.as_str(),
                Some(*slot),
                "back to ready (was draining)".into(),
            ),
            Action::Drain { member, slot } => line(
                '-',
                member.as_str(),
                Some(*slot),
                "drain, then release the slot".into(),
            ),
            Action::Release { member, slot } => line(
                '-',
                member.as_str(),
                Some(*slot),
                "release the slot (never took traffic)".into(),
            ),
            Action::Evict { slot, addr } => line(
                '!',
                "-",
                Some(*slot),
                format!("{addr} is served but no member owns it: drain and release"),
            ),
            Action::Pending {
                member,
                slot,
                change,
            } => line(
                '=',
                member.as_str(),
                Some(*slot),
                format!("in flight under change {change}"),
            ),
            Action::Await { member, slot } => line(
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
            } => line(
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
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
