//! Making HAProxy match the slot table where it may not: when the service starts, and
//! whenever HAProxy has a worker this service did not start (a reload or restart by
//! anyone: `systemctl reload`, a configuration management run, `haproxy -sf`, a package
//! upgrade). What is sent comes from [`crate::reassert`]; this file reads HAProxy, grows
//! a slot block that came back short, sends, logs and counts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use infra::PoolName;
use tracing::{error, info, warn};

use super::runtime::Wanted;
use super::{now_ms, resize, Service, ServiceError, State};
use crate::haproxy_cfg::slot_name;
use crate::reassert;
use crate::slots::LiveSlots;
use crate::status::ExternalReload;

/// How often the service asks HAProxy's master which worker serves: a reload by
/// someone else is noticed within this.
pub(super) const WATCH: Duration = Duration::from_millis(200);

impl Service {
    /// Makes HAProxy match the table: grows slot blocks that are shorter than the table
    /// (a reload cut short, a configuration replaced), and restores every member and
    /// drain HAProxy lost. Once per start and once per worker this service did not start.
    pub fn resume(&self) -> Result<(), ServiceError> {
        let mut st = self.lock();
        if st.resumed {
            return Ok(());
        }
        let _ = std::fs::remove_file(resize::candidate_path(self.cfg.haproxy.slots_file()));
        // The worker first: one that comes while we work is noticed by the next watch.
        if self.cfg.haproxy.master_socket.is_some() {
            st.worker = self
                .client
                .proc_info()
                .ok()
                .and_then(|p| p.current_worker());
        }
        let client = self.haproxy(&st);
        self.learn_version(&mut st, &client)?;
        let lives = self.regrow(&mut st)?;
        let mut groups = Vec::new();
        let mut restored = 0usize;
        for pc in &self.cfg.pools {
            let pool = pc.name();
            let (Some(t), Some(live)) = (st.table.pools.get(pool.as_str()), lives.get(pool)) else {
                continue;
            };
            let check = pc.pool.server_options.has_check();
            let away = &st.table.away_zones;
            let (g, lines) = reassert::restore_away(pool, t, live, check, away);
            for l in &lines {
                let who = l
                    .member
                    .as_ref()
                    .map_or("-".to_string(), ToString::to_string);
                info!(pool = %pool, instance = %who, slot = %slot_name(l.slot), restored = ?l.restored, "restoring what HAProxy lacked");
            }
            restored += lines.len();
            groups.extend(g);
        }
        let client = self.haproxy(&st);
        st.instances = None;
        groups.extend(self.map_commands(&mut st, &client));
        if let Err(e) = client.batch(&groups) {
            st.instances = None;
            return Err(e.into());
        }
        st.resumed = true;
        self.zones_after_resume(&mut st);
        // Empty servers past the slots (a reload declared them) are given back.
        st.removals_pending = true;
        if let Some(x) = st.external.as_mut() {
            if x.restored.is_none() {
                x.restored = Some(restored as u64);
            }
        }
        self.metric(|m| m.restored(restored));
        self.persist(&st);
        info!(
            restored,
            sent = groups.len(),
            "resumed: HAProxy matches the slot table"
        );
        Ok(())
    }

    /// Gives HAProxy back every slot the table uses that it lacks (a configuration
    /// replaced or re-rendered with a smaller block, a reload cut short): added at
    /// runtime where the version and the pool allow it, else the block grown with a
    /// reload. Returns each pool's slots as HAProxy has them then.
    fn regrow(&self, st: &mut State) -> Result<BTreeMap<PoolName, LiveSlots>, ServiceError> {
        let mut wanted = BTreeMap::new();
        let mut lives = BTreeMap::new();
        for pc in &self.cfg.pools {
            let pool = pc.name();
            let live = Self::live(&self.haproxy(st), pool)?;
            let used = st.table.used(pool.as_str());
            let missing: BTreeSet<u32> = used
                .into_iter()
                .filter(|n| !live.slots.contains_key(n))
                .collect();
            if let Some(top) = missing.iter().next_back().copied() {
                let how = match self.runtime_path(st, pc) {
                    Ok(()) => "adding the servers it lacks at runtime".to_string(),
                    Err(_) => "growing the block back".to_string(),
                };
                error!(
                    pool = %pool,
                    file = %self.cfg.haproxy.slots_file().display(),
                    declared = live.size(),
                    used = top,
                    "HAProxy declares {} slots for pool {pool} but the slot table holds a member in {}: {how} (the file was replaced or re-rendered without the agent's slot line, or a reload was cut short); keep the `1-N` the agent writes, or set [haproxy] pools_config so the agent keeps its backends in a file of its own",
                    live.size(),
                    slot_name(top)
                );
                let size = top.max(live.size());
                wanted.insert(pool.clone(), Wanted { missing, size });
            }
            lives.insert(pool.clone(), live);
        }
        self.record_slots(&lives);
        if wanted.is_empty() {
            return Ok(lives);
        }
        let needs = self.add_missing(st, &wanted, &lives)?;
        if !needs.is_empty() {
            self.resize_slots(st, &needs)?;
        }
        lives.clear();
        for pc in &self.cfg.pools {
            let live = Self::live(&self.haproxy(st), pc.name())?;
            lives.insert(pc.name().clone(), live);
        }
        self.record_slots(&lives);
        Ok(lives)
    }

    /// One look at which worker serves: a worker this service did not start (a reload
    /// or restart by anyone) is logged, counted, shown in `agent status`, and what it
    /// lacks is restored at once (the server-state file it loaded is written after
    /// every change, so that is mostly a slot block that came back short). Needs the
    /// master socket.
    pub(super) fn watch(&self) {
        if self.cfg.haproxy.master_socket.is_none() {
            return;
        }
        let ours = {
            let st = self.lock();
            if !st.resumed {
                return;
            }
            st.reloads
        };
        // Asked without the lock: a master re-executing for a reload answers only once
        // it is up again, and no request waits for that.
        let asked = self.client.proc_info();
        let mut st = self.lock();
        // A reload of ours meanwhile recorded its own worker; the next look compares.
        if st.reloads != ours || !st.resumed {
            return;
        }
        let procs = match asked {
            Ok(p) => p,
            Err(e) => {
                if !st.haproxy_lost {
                    st.haproxy_lost = true;
                    self.metric(|m| m.error(crate::metrics::ErrorKind::HaproxyUnreachable));
                    warn!(error = %e, "HAProxy's master does not answer: HAProxy is stopped or restarting; what a new worker lacks is restored once it answers");
                }
                return;
            }
        };
        if st.haproxy_lost {
            st.haproxy_lost = false;
            info!("HAProxy's master answers again");
        }
        let Some(now) = procs.current_worker() else {
            return;
        };
        let before = match st.worker {
            Some(w) if w != now => w,
            Some(_) => return,
            None => {
                st.worker = Some(now);
                return;
            }
        };
        warn!(
            from = before,
            to = now,
            "HAProxy has a worker this service did not start (pid {before} -> {now}): reloaded or restarted by someone else; restoring what it lacks"
        );
        st.worker = Some(now);
        st.resumed = false;
        // Writes to the admin socket may still reach the old worker for a moment.
        st.reloaded_at = Some(Instant::now());
        st.external_reloads += 1;
        st.external = Some(ExternalReload {
            at_ms: now_ms(),
            from_pid: before,
            to_pid: now,
            restored: None,
        });
        self.metric(|m| m.external_reload());
        drop(st);
        if let Err(e) = self.resume() {
            self.metric(|m| m.error(super::error_kind(&e)));
            warn!(error = %e, "cannot restore what HAProxy's new worker lacks yet; trying again");
            let mut st = self.lock();
            st.last_error = Some(e.to_string());
        }
    }
}
