//! What `agent status` shows: every slot joined from the slot table and HAProxy, and
//! every operation in flight with its progress. Built by the service, printed by the
//! command line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::haproxy::{ServerState, StatRow};
use crate::haproxy_cfg::slot_name;
use crate::slots::{EntryState, LiveSlots, SlotTable};

/// One slot as `agent status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    /// The pool.
    pub pool: String,
    /// The slot (server name).
    pub slot: String,
    /// The member holding it, if any.
    pub member: Option<String>,
    /// The member's life stage on this host (`joining`, `up`, `draining`).
    pub stage: Option<String>,
    /// HAProxy's address for the slot.
    pub address: String,
    /// `ready`, `drain` or `maint`.
    pub admin: String,
    /// HAProxy's status (`UP`, `DOWN`, `MAINT`, `DRAIN`...).
    pub status: String,
    /// Current sessions.
    pub sessions: u64,
    /// Last health check.
    pub last_check: String,
}

/// A join, drain or eviction in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// The pool.
    pub pool: String,
    /// The member (`-` for an eviction of a server no member owns).
    pub member: String,
    /// Its slot.
    pub slot: String,
    /// `join`, `drain` or `evict`.
    pub kind: String,
    /// The change that started it (its generation; 0 for an eviction).
    pub change: u64,
    /// Seconds since it started.
    pub elapsed_s: f64,
    /// Seconds until it gives up (join) or closes what is left (drain).
    pub deadline_in_s: f64,
    /// Sessions still open on the slot.
    pub sessions: u64,
    /// The slot's last health check.
    pub last_check: String,
}

/// Everything `agent status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The host's name.
    pub host: String,
    /// Every slot of every pool.
    pub slots: Vec<SlotStatus>,
    /// Operations in flight.
    pub operations: Vec<OperationStatus>,
    /// Hitless reloads this service did (slot growth).
    pub reloads: u64,
}

fn admin_word(s: &ServerState) -> &'static str {
    if s.in_maint() {
        "maint"
    } else if s.draining() {
        "drain"
    } else {
        "ready"
    }
}

/// Joins the table with HAProxy's server states and stats, for the pools named.
pub fn build(
    host: &str,
    pools: &[String],
    table: &SlotTable,
    states: &[ServerState],
    rows: &[StatRow],
    now_ms: u64,
    reloads: u64,
) -> Status {
    let mut out = Status {
        host: host.to_string(),
        reloads,
        ..Status::default()
    };
    let secs = |ms: u64| ms as f64 / 1000.0;
    for pool in pools {
        let live = LiveSlots::of(pool, states);
        let by_name: BTreeMap<&str, &StatRow> = rows
            .iter()
            .filter(|r| &r.backend == pool)
            .map(|r| (r.server.as_str(), r))
            .collect();
        let row = |slot: u32| by_name.get(slot_name(slot).as_str()).copied();
        let t = table.pools.get(pool);
        for (n, s) in &live.slots {
            let r = row(*n);
            let owner = t.and_then(|t| t.member_in(*n));
            out.slots.push(SlotStatus {
                pool: pool.clone(),
                slot: slot_name(*n),
                member: owner.map(|(m, _)| m.to_string()),
                stage: owner.map(|(_, e)| e.state.to_string()),
                address: format!("{}:{}", s.addr, s.port),
                admin: admin_word(s).into(),
                status: r.map(|r| r.status.clone()).unwrap_or_default(),
                sessions: r.map_or(0, |r| r.scur),
                last_check: r.map(StatRow::check_summary).unwrap_or_default(),
            });
        }
        let Some(t) = t else { continue };
        for (id, e) in &t.members {
            let Some(op) = e.op else { continue };
            let r = row(e.slot);
            out.operations.push(OperationStatus {
                pool: pool.clone(),
                member: id.to_string(),
                slot: slot_name(e.slot),
                kind: match e.state {
                    EntryState::Draining => "drain",
                    _ => "join",
                }
                .into(),
                change: op.change,
                elapsed_s: secs(now_ms.saturating_sub(op.started_ms)),
                deadline_in_s: secs(op.deadline_ms.saturating_sub(now_ms)),
                sessions: r.map_or(0, |r| r.scur),
                last_check: r.map(StatRow::check_summary).unwrap_or_default(),
            });
        }
        for (slot, ev) in &t.evicting {
            let r = row(*slot);
            out.operations.push(OperationStatus {
                pool: pool.clone(),
                member: "-".into(),
                slot: slot_name(*slot),
                kind: "evict".into(),
                change: 0,
                elapsed_s: secs(now_ms.saturating_sub(ev.started_ms)),
                deadline_in_s: secs(ev.deadline_ms.saturating_sub(now_ms)),
                sessions: r.map_or(0, |r| r.scur),
                last_check: r.map(StatRow::check_summary).unwrap_or_default(),
            });
        }
    }
    out
}
