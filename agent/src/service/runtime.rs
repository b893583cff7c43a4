//! Slots past the declared block, added and given back at runtime (HAProxy 3.0 and
//! later, a pool whose balance algorithm takes them): no reload.
//!
//! - A slot the plans need that HAProxy lacks is added with `add server <pool>/slot<N>
//!   0.0.0.0:<port> <server options> disabled` (and `enable health`): in maintenance
//!   and at 0.0.0.0, as a declared slot starts, so joining it is the same health-gated
//!   join (`set server ... addr`, `state ready; health down` on one line).
//! - The file holding the slot blocks is then rewritten with each such pool's block at
//!   `max(slots, highest slot in use)` (checked with `haproxy -c`), so the next reload or
//!   restart, ours or anyone's, declares them; the server-state file written after every
//!   change and the resume give them their members back.
//! - A slot beyond `slots` that is in maintenance and holds no member (its drain ended)
//!   is given back with `wait <ms> srv-removable` then `del server`, and the block
//!   shrinks with it.
//!
//! Every other pool (HAProxy 2.6 and 2.8, a static balance algorithm, `add server`
//! refused) grows its block with a hitless reload ([`super::resize`]).

use std::collections::{BTreeMap, BTreeSet};

use infra::PoolName;
use tracing::{debug, info, warn};

use super::{Service, ServiceError, State};
use crate::config::PoolConfig;
use crate::haproxy::{self, Command, HaproxyError, StatRow, Version};
use crate::haproxy_cfg::{self, slot_name};
use crate::slots::LiveSlots;
use crate::store;

/// At most this many slots are given back per look (each waits up to
/// [`haproxy::REMOVABLE_WAIT_MS`] under the state's lock when it still has connections).
const REMOVALS_PER_LOOK: usize = 16;

/// Slots a pool needs that HAProxy lacks, and the slot count the plans need.
#[derive(Debug, Clone, Default)]
pub(super) struct Wanted {
    /// Slot numbers HAProxy does not have.
    pub(super) missing: BTreeSet<u32>,
    /// The highest slot needed.
    pub(super) size: u32,
}

/// `a`..`b` ranges of slot numbers, for logs: `slot5-slot9, slot12`.
fn ranges(slots: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = slots.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            slot_name(start)
        } else {
            format!("{}-{}", slot_name(start), slot_name(end))
        });
    }
    out.join(", ")
}

impl Service {
    /// Whether pool `pc` takes servers added at runtime now; `Err` says why it keeps
    /// the reload path (the HAProxy version, its balance algorithm, or HAProxy refused
    /// an `add server` for it since the service started).
    pub(super) fn runtime_path(&self, st: &State, pc: &PoolConfig) -> Result<(), String> {
        let v = st
            .haproxy_version
            .as_deref()
            .and_then(Version::parse)
            .ok_or_else(|| "HAProxy's version is not known yet".to_string())?;
        if let Some(why) = haproxy::reload_path_reason(&v) {
            return Err(why);
        }
        if let Some(why) = st.runtime_refused.get(pc.name()) {
            return Err(why.clone());
        }
        let refused = haproxy::refused_at_runtime(&pc.pool.server_options);
        if !refused.is_empty() {
            return Err(format!(
                "pool {}'s server_options hold {}, which HAProxy refuses for servers added at runtime",
                pc.name(),
                refused.join(", ")
            ));
        }
        let text = std::fs::read_to_string(self.cfg.haproxy.slots_file()).unwrap_or_default();
        match haproxy_cfg::static_balance(&text, pc.name().as_str()) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Adds at runtime the slots `wanted` names, for the pools that take them, and
    /// folds them into the file holding the slot blocks. Returns the pools left to grow
    /// with a reload, with the size each needs.
    pub(super) fn add_missing(
        &self,
        st: &mut State,
        wanted: &BTreeMap<PoolName, Wanted>,
        lives: &BTreeMap<PoolName, LiveSlots>,
    ) -> Result<BTreeMap<PoolName, u32>, ServiceError> {
        let mut reload = BTreeMap::new();
        let mut added = false;
        for (pool, w) in wanted {
            let pc = self.pool_cfg(pool)?;
            let current = lives.get(pool).map_or(0, LiveSlots::size);
            crate::limits::check_growth(pc, current, w.size)?;
            if let Err(why) = self.runtime_path(st, pc) {
                if w.size > current {
                    info!(pool = %pool, "pool {pool} needs {} slots, HAProxy has {current}: growing the block with a reload ({why})", w.size);
                    reload.insert(pool.clone(), w.size);
                }
                continue;
            }
            if w.missing.is_empty() {
                continue;
            }
            match self.add_servers(st, pc, &w.missing, current) {
                Ok(()) => added = true,
                Err(ServiceError::Haproxy(HaproxyError::Refused { command, reply }))
                    if command.starts_with("add server ") =>
                {
                    let why = format!("HAProxy refused `{command}`: {reply}");
                    warn!(pool = %pool, "{why}; pool {pool} grows with a reload from now on (until the service restarts){}", if haproxy::refuses_for_balance(&reply) { "" } else { ": remove what it refuses from server_options to grow without reloads" });
                    st.runtime_refused.insert(pool.clone(), why);
                    reload.insert(pool.clone(), w.size.max(current));
                }
                Err(e) => {
                    // Some may have been added: empty past the slots, they are given back.
                    st.removals_pending = true;
                    return Err(e);
                }
            }
        }
        if added {
            self.fold_slots_file(st);
        }
        Ok(reload)
    }

    /// `add server` (and `enable health`) for `slots` of pool `pc`, one group each.
    /// `current`: the slots HAProxy had (the slots gauge follows).
    fn add_servers(
        &self,
        st: &State,
        pc: &PoolConfig,
        slots: &BTreeSet<u32>,
        current: u32,
    ) -> Result<(), ServiceError> {
        let pool = pc.name();
        let groups: Vec<Vec<Command>> = slots
            .iter()
            .map(|n| Command::add_slot(pool, *n, pc.pool.port, &pc.pool.server_options))
            .collect();
        self.haproxy(st).batch(&groups)?;
        info!(pool = %pool, added = slots.len(), slots = %ranges(slots), "added {} servers to pool {pool} at runtime ({}), beyond its {} declared slots: no reload", slots.len(), ranges(slots), pc.slots);
        let size = slots.last().copied().unwrap_or(0).max(current);
        self.metric(|m| {
            m.servers_added(slots.len());
            m.set_slots(pool.as_str(), size);
        });
        Ok(())
    }

    /// Rewrites the file holding the slot blocks so each pool on the runtime path
    /// declares `max(slots, highest slot in use)`: the next reload or restart, by
    /// anyone, has the servers added at runtime as declared slots, and no longer the
    /// ones given back. Checked with `haproxy -c` first; a failure is logged (the
    /// service adds what a new worker lacks again when it sees it).
    pub(super) fn fold_slots_file(&self, st: &State) {
        let path = self.cfg.haproxy.slots_file();
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot read the file holding the slot blocks to declare the servers added at runtime");
                return;
            }
        };
        let mut text = old.clone();
        let mut sizes = Vec::new();
        for pc in &self.cfg.pools {
            let name = pc.name().as_str();
            let Some((_, cur)) = haproxy_cfg::find_block(&text, name) else {
                continue;
            };
            if self.runtime_path(st, pc).is_err() {
                continue;
            }
            let want = pc.slots.max(st.table.highest_used(name));
            if want == cur {
                continue;
            }
            if let Some(t) = haproxy_cfg::set_slots(&text, name, want) {
                sizes.push(format!("{name} {cur} -> {want}"));
                text = t;
            }
        }
        if text == old {
            return;
        }
        let written = self
            .validate(&text)
            .and_then(|()| store::write_atomic(path, text.as_bytes()).map_err(Into::into));
        match written {
            Ok(()) => {
                info!(file = %path.display(), slots = %sizes.join(", "), "declared slots {} in {} for the next reload or restart (no reload now)", sizes.join(", "), path.display())
            }
            Err(e) => {
                self.metric(|m| m.error(super::error_kind(&e)));
                warn!(file = %path.display(), error = %e, "cannot declare the servers added at runtime in the file; a reload by anyone drops them until the service adds them back");
            }
        }
    }

    /// Gives back, with `del server`, the slots beyond a pool's `slots` that are in
    /// maintenance in `rows` and hold no member (drained, released, or an empty slot a
    /// reload declared), on the pools that add servers at runtime; then shrinks their
    /// blocks in the file. Returns how many it gave back, and whether any is left to
    /// try at a later look.
    pub(super) fn remove_empty(&self, st: &mut State, rows: &[StatRow]) -> (usize, bool) {
        let client = self.haproxy(st);
        let mut removed: BTreeMap<PoolName, BTreeSet<u32>> = BTreeMap::new();
        let mut left = false;
        for pc in &self.cfg.pools {
            let name = pc.name().as_str();
            let used = st.table.used(name);
            let empty: Vec<u32> = rows
                .iter()
                .filter(|r| r.backend == name && r.status.starts_with("MAINT"))
                .filter_map(|r| haproxy_cfg::slot_number(&r.server))
                .filter(|n| *n > pc.slots && !used.contains(n))
                .collect();
            if empty.is_empty() || self.runtime_path(st, pc).is_err() {
                continue;
            }
            left |= empty.len() > REMOVALS_PER_LOOK;
            for n in empty.into_iter().take(REMOVALS_PER_LOOK) {
                match client.batch(&[Command::remove_slot(pc.name(), n)]) {
                    Ok(()) => {
                        removed.entry(pc.name().clone()).or_default().insert(n);
                    }
                    Err(e) => {
                        debug!(pool = %name, slot = %slot_name(n), error = %e, "not removable yet; trying again at the next look");
                        left = true;
                    }
                }
            }
        }
        for (pool, slots) in &removed {
            info!(pool = %pool, removed = slots.len(), slots = %ranges(slots), "gave back {} empty servers of pool {pool} beyond its slots ({}) with del server", slots.len(), ranges(slots));
            let size = rows
                .iter()
                .filter(|r| r.backend == pool.as_str())
                .filter_map(|r| haproxy_cfg::slot_number(&r.server))
                .filter(|n| !slots.contains(n))
                .max()
                .unwrap_or(0);
            self.metric(|m| {
                m.servers_removed(slots.len());
                m.set_slots(pool.as_str(), size);
            });
        }
        if !removed.is_empty() {
            self.fold_slots_file(st);
        }
        (removed.values().map(BTreeSet::len).sum(), left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ranges_read_compactly() {
        let s: BTreeSet<u32> = [5, 6, 7, 9, 12, 13].into_iter().collect();
        assert_eq!(ranges(&s), "slot5-slot7, slot9, slot12-slot13");
        assert_eq!(ranges(&BTreeSet::new()), "");
    }
}
