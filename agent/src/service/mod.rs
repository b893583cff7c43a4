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

mod error;
mod files;
mod health;
pub mod inbox;
mod request;
mod reread;
mod resize;
mod resume;
mod runtime;
mod scrape;
mod server;
mod tick;
mod version;
mod zones;

pub use error::ServiceError;
use error::{error_kind, haproxy_kind};
use request::{timeouts, Reported, Results};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use infra::{Desired, MemberId, PoolName};

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
    /// HAProxy's master stopped answering the watch (logged once until it answers).
    haproxy_lost: bool,
    /// Pools HAProxy refused an `add server` for (why): they grow with a reload until
    /// the service restarts.
    runtime_refused: BTreeMap<PoolName, String>,
    /// Empty servers past a pool's slots may be waiting to be given back
    /// ([`Service::remove_empty`]): the ticker keeps looking.
    removals_pending: bool,
    /// Pools whose traffic spills out of this host's zone, as last seen
    /// ([`crate::zones`]).
    spilled: BTreeMap<PoolName, bool>,
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

fn now_ms() -> u64 {
    infra::now_ms()
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
                haproxy_lost: false,
                runtime_refused: BTreeMap::new(),
                removals_pending: false,
                spilled: BTreeMap::new(),
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
            for p in &mut snap.pools {
                p.spilled = st
                    .spilled
                    .iter()
                    .any(|(name, s)| *s && name.as_str() == p.pool);
            }
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
        let lives = read
            .as_ref()
            .ok()
            .map(|(states, _)| zones::lives_of(&self.cfg, states));
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
        self.fill_zones(&mut status, &table, lives.as_ref());
        Ok(status)
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
