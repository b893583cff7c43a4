//! The health watch: with `[report]` (and `health_interval_ms` above 0), members UP on
//! this host are looked at every interval, and one that went DOWN or came back UP is
//! queued for the reactor's inbox ([`crate::health`] decides what changed).

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use super::{now_ms, Service};
use crate::haproxy_cfg::slot_number;
use crate::health::{HealthWatch, Seen};
use crate::slots::EntryState;

/// The longest sleep between looks at the stop flag.
const STEP: Duration = Duration::from_millis(100);

impl Service {
    /// Looks at the members UP every `interval` until the service stops.
    pub(super) fn watch_health(&self, interval: Duration) {
        let mut watch = HealthWatch::default();
        let mut failing = false;
        while !self.stopping() {
            let client = self.haproxy(&self.lock());
            match client.stats() {
                Ok(rows) => {
                    failing = false;
                    self.health_look(&mut watch, &rows);
                }
                Err(e) if !failing => {
                    failing = true;
                    warn!(error = %e, "cannot read HAProxy's stats for the health watch; trying again");
                }
                Err(_) => {}
            }
            // Not woken by changes (they come in bursts): a stop is seen within 100 ms.
            let until = std::time::Instant::now() + interval;
            while !self.stopping() && std::time::Instant::now() < until {
                std::thread::sleep(STEP.min(until - std::time::Instant::now()));
            }
        }
    }

    fn health_look(&self, watch: &mut HealthWatch, rows: &[crate::haproxy::StatRow]) {
        let rows: BTreeMap<(&str, u32), &str> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    (r.backend.as_str(), slot_number(&r.server)?),
                    r.status.as_str(),
                ))
            })
            .collect();
        let mut st = self.lock();
        let mut seen = Vec::new();
        for (pool, t) in &st.table.pools {
            let Ok(pool) = infra::PoolName::new(pool.as_str()) else {
                continue;
            };
            for (member, e) in &t.members {
                if e.state != EntryState::Up || e.op.is_some() {
                    continue;
                }
                let s = rows
                    .get(&(pool.as_str(), e.slot))
                    .map_or(Seen::Other, |status| Seen::of_status(status));
                seen.push((pool.clone(), member.clone(), s));
            }
        }
        let changes = watch.look(seen, now_ms());
        if changes.is_empty() {
            return;
        }
        for h in changes {
            info!(pool = %h.pool, instance = %h.member, healthy = h.healthy, "health changed after the member was up; reporting it");
            let dropped = st.outbox.push_health(h, now_ms());
            if dropped > 0 {
                self.metric(|m| m.reports_dropped(dropped));
            }
        }
        self.save_outbox(&st);
        drop(st);
        self.changed.notify_all();
    }
}
