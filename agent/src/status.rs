//! `agent status`: every slot of every pool, joined from the slot table and HAProxy.

use serde::Serialize;

use crate::cfgfile::slot_name;
use crate::config::AgentConfig;
use crate::engine::EngineError;
use crate::haproxy::Client;
use crate::slots::{LiveSlots, SlotTable};
use crate::store;

/// One slot as `agent status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// The pool.
    pub pool: String,
    /// The slot (server name).
    pub slot: String,
    /// The member holding it, if any.
    pub member: Option<String>,
    /// The member's life stage in the table (`joining`, `up`, `draining`).
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

/// Reads the table and HAProxy's state (without taking the apply lock).
pub fn collect(cfg: &AgentConfig) -> Result<Vec<SlotStatus>, EngineError> {
    let table: SlotTable = store::read_json(&cfg.haproxy.slots_path())?;
    let client = Client::new(
        cfg.haproxy.admin_socket.clone(),
        cfg.haproxy.master_socket.clone(),
        cfg.haproxy.timeout,
    );
    let states = client.servers_state(None)?;
    let rows = client.stats()?;
    let mut out = Vec::new();
    for pc in &cfg.pools {
        let pool = pc.name().as_str();
        let live = LiveSlots::of(pool, &states);
        let t = table.pools.get(pool);
        for (n, s) in &live.slots {
            let name = slot_name(*n);
            let row = rows.iter().find(|r| r.backend == pool && r.server == name);
            let owner = t.and_then(|t| t.member_in(*n));
            out.push(SlotStatus {
                pool: pool.to_string(),
                slot: name,
                member: owner.map(|(m, _)| m.to_string()),
                stage: owner.map(|(_, e)| {
                    serde_json::to_value(e.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                }),
                address: format!("{}:{}", s.addr, s.port),
                admin: if s.in_maint() {
                    "maint"
                } else if s.draining() {
                    "drain"
                } else {
                    "ready"
                }
                .into(),
                status: row.map(|r| r.status.clone()).unwrap_or_default(),
                sessions: row.map(|r| r.scur).unwrap_or(0),
                last_check: row.map(|r| r.check_summary()).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}
