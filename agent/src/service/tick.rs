//! The ticker's look at HAProxy: every operation in flight moved on from its stats.

use std::collections::BTreeMap;

use infra::PoolName;
use tracing::{info, warn};

use super::*;

impl Service {
    /// Whether a join, drain or eviction is in flight.
    pub(super) fn busy(st: &State) -> bool {
        st.removals_pending
            || st
                .table
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
        let removed = self.look_for_removals(&mut st, &rows, !finished.is_empty());
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
        self.record_finished(&mut st, finished);
        if changed || removed > 0 || !commands.is_empty() {
            self.persist(&st);
        }
        let busy = Self::busy(&st);
        drop(st);
        if changed {
            self.changed.notify_all();
        }
        busy
    }

    /// Gives back the empty servers past the pools' slots when one may be waiting
    /// ([`State::removals_pending`]); returns how many. An operation that `ended` in this
    /// look may leave one: it shows in maintenance from the next look on.
    fn look_for_removals(&self, st: &mut State, rows: &[StatRow], ended: bool) -> usize {
        if !std::mem::replace(&mut st.removals_pending, ended) {
            return 0;
        }
        let (removed, left) = self.remove_empty(st, rows);
        st.removals_pending |= left;
        removed
    }

    /// Logs, counts and reports each operation that ended, and keeps its outcome for a
    /// caller waiting for it.
    fn record_finished(&self, st: &mut State, finished: Vec<(PoolName, Finished)>) {
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
                self.report(st, &pool, member, reported);
            }
            st.results.record(&pool, f);
        }
    }
}
