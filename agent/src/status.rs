//! What `agent status` shows: every slot joined from the slot table and HAProxy, each
//! pool's slot -> instance map (the map HAProxy's log line reads), and every operation
//! in flight with its progress. Built by the service, printed by the command line.

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

/// A slot that holds a member: which instance, where it is in its life, and what
/// HAProxy says of it. The same pairs as the instance map HAProxy's log line reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInstance {
    /// The slot (server name, `slot3`).
    pub slot: String,
    /// The instance map's key (`web/slot3`), as the log line's backend/server.
    pub key: String,
    /// The instance id in it.
    pub instance: String,
    /// Its life stage on this host: `joining`, `up` or `draining`.
    pub state: String,
    /// HAProxy's status of the slot (`UP`, `DOWN 1/2`, `DRAIN`...; empty when HAProxy
    /// has no stats row for it).
    pub status: String,
    /// Its Availability Zone, when a message said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Its configured weight (`None`: HAProxy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// The weight the traffic policy gives it now (`0` standing by for another zone,
    /// `100%` HAProxy's own); `None` while leaving or when HAProxy does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<String>,
}

/// One pool's slot -> instance map and how many slots are left before a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMap {
    /// The pool.
    pub pool: String,
    /// Slots HAProxy declares.
    pub slots: u32,
    /// Slots held by a member or an eviction.
    pub used: u32,
    /// Declared slots nobody holds: members that fit without a reload.
    pub free: u32,
    /// Every slot holding a member, by slot number.
    pub instances: Vec<SlotInstance>,
}

/// One of HAProxy's sockets the agent uses, and whether it answered `agent status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketStatus {
    /// `admin` (the stats socket: every command) or `master` (the master CLI: reloads,
    /// and noticing reloads by someone else).
    pub role: String,
    /// Where it is (agent.toml).
    pub endpoint: String,
    /// Why it did not answer; `None` when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A reload or restart of HAProxy by someone else, as the service noticed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalReload {
    /// When it was noticed (unix ms).
    pub at_ms: u64,
    /// The worker before (pid).
    pub from_pid: u32,
    /// The new worker (pid).
    pub to_pid: u32,
    /// Members and drains re-sent to the new worker (`None`: not restored yet).
    pub restored: Option<u64>,
}

/// Everything `agent status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The host's name.
    pub host: String,
    /// Every slot of every pool.
    pub slots: Vec<SlotStatus>,
    /// Per pool, the slots that hold a member and which instance (agent.toml's order).
    #[serde(default)]
    pub pools: Vec<PoolMap>,
    /// Operations in flight.
    pub operations: Vec<OperationStatus>,
    /// Hitless reloads this service did (slot growth).
    pub reloads: u64,
    /// Why HAProxy's sockets did not answer, when they did not: the slots are then the
    /// agent's table alone, HAProxy's columns `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy_down: Option<String>,
    /// The version of the HAProxy the service drives (`show info`), once it reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy_version: Option<String>,
    /// HAProxy's sockets and whether they answered.
    #[serde(default)]
    pub sockets: Vec<SocketStatus>,
    /// HAProxy workers the service did not start (reloads or restarts by someone else).
    #[serde(default)]
    pub external_reloads: u64,
    /// The last of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_external_reload: Option<ExternalReload>,
    /// This host's zone (agent.toml `zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_zone: Option<String>,
    /// Zones taken away on this host (`agent zone away`): their members are drained.
    #[serde(default)]
    pub away_zones: Vec<String>,
    /// Pools whose traffic spills out of this host's zone (too few of its members UP).
    #[serde(default)]
    pub spilled: Vec<String>,
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

impl Status {
    /// Only `pool`'s slots, maps and operations (all pools without one), and with
    /// `used` only the slots that hold a member (a pool at its cap lists 4,096 otherwise).
    pub fn only(mut self, pool: Option<&str>, used: bool) -> Self {
        let keep = |p: &str| pool.is_none_or(|want| want == p);
        self.slots
            .retain(|s| keep(&s.pool) && (!used || s.member.is_some()));
        self.pools.retain(|p| keep(&p.pool));
        self.operations.retain(|o| keep(&o.pool));
        self
    }

    /// The lines after the tables: HAProxy's version and reloads (this service's and
    /// anyone else's), and its sockets. `now_ms`: for "how long ago".
    pub fn footer(&self, now_ms: u64) -> Vec<String> {
        let mut out = Vec::new();
        let version = self
            .haproxy_version
            .as_deref()
            .map_or("HAProxy (version not read yet)".to_string(), |v| {
                format!("HAProxy {v}")
            });
        let mut line = format!(
            "{version}: {} reloads by this service, {} by someone else",
            self.reloads, self.external_reloads
        );
        if let Some(x) = &self.last_external_reload {
            let ago = now_ms.saturating_sub(x.at_ms) as f64 / 1000.0;
            let restored = x.restored.map_or("not restored yet".to_string(), |n| {
                format!("{n} members or drains restored")
            });
            line.push_str(&format!(
                " (last {ago:.0}s ago: worker {} -> {}, {restored})",
                x.from_pid, x.to_pid
            ));
        }
        out.push(line);
        for sock in &self.sockets {
            out.push(match &sock.error {
                None => format!("{} socket {}: answers", sock.role, sock.endpoint),
                Some(e) => format!(
                    "{} socket {}: does not answer ({e})",
                    sock.role, sock.endpoint
                ),
            });
        }
        out
    }

    /// One line per pool first: its members by stage and its slots.
    pub fn summary(&self) -> Vec<String> {
        self.pools
            .iter()
            .map(|p| {
                let stage = |s: &str| p.instances.iter().filter(|i| i.state == s).count();
                let slots = if self.haproxy_down.is_some() {
                    "slots ? (HAProxy does not answer)".to_string()
                } else {
                    format!("{} of {} slots used, {} free", p.used, p.slots, p.free)
                };
                format!(
                    "{}: {} members ({} joining, {} up, {} draining); {slots}",
                    p.pool,
                    p.instances.len(),
                    stage("joining"),
                    stage("up"),
                    stage("draining")
                )
            })
            .collect()
    }
}

/// The agent's own view when HAProxy does not answer (`why`): one row per member of the
/// table, HAProxy's columns `?`.
pub fn without_haproxy(
    host: &str,
    pools: &[String],
    table: &SlotTable,
    reloads: u64,
    why: String,
) -> Status {
    let mut out = build(host, pools, table, &[], &[], 0, reloads);
    out.operations.clear();
    for pool in pools {
        let Some(t) = table.pools.get(pool) else {
            continue;
        };
        let mut held: Vec<(&infra::MemberId, &crate::slots::Entry)> = t.members.iter().collect();
        held.sort_by_key(|(_, e)| e.slot);
        for (id, e) in held {
            out.slots.push(SlotStatus {
                pool: pool.clone(),
                slot: slot_name(e.slot),
                member: Some(id.to_string()),
                stage: Some(e.state.to_string()),
                address: format!("{}:{}", e.address, e.port),
                admin: "?".into(),
                status: "?".into(),
                sessions: 0,
                last_check: "?".into(),
            });
        }
    }
    out.haproxy_down = Some(why);
    out
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
        let mut map = PoolMap {
            pool: pool.clone(),
            slots: live.size(),
            used: 0,
            free: live.size(),
            instances: Vec::new(),
        };
        let Some(t) = t else {
            out.pools.push(map);
            continue;
        };
        map.used = u32::try_from(t.used().len()).unwrap_or(u32::MAX);
        map.free = map.slots.saturating_sub(map.used);
        let mut held: Vec<(&infra::MemberId, &crate::slots::Entry)> = t.members.iter().collect();
        held.sort_by_key(|(_, e)| e.slot);
        for (id, e) in held {
            map.instances.push(SlotInstance {
                slot: slot_name(e.slot),
                key: format!("{pool}/{}", slot_name(e.slot)),
                instance: id.to_string(),
                state: e.state.to_string(),
                status: row(e.slot).map(|r| r.status.clone()).unwrap_or_default(),
                zone: e.zone.as_ref().map(ToString::to_string),
                weight: e.weight.map(infra::Weight::get),
                effective: None,
            });
        }
        out.pools.push(map);
        out.operations.extend(operations(pool, t, &row, now_ms));
    }
    out
}

/// `pool`'s joins, drains and evictions in flight, with what HAProxy says of their slots.
fn operations<'a>(
    pool: &str,
    t: &crate::slots::PoolSlots,
    row: &dyn Fn(u32) -> Option<&'a StatRow>,
    now_ms: u64,
) -> Vec<OperationStatus> {
    let secs = |ms: u64| ms as f64 / 1000.0;
    let mut ops = Vec::new();
    for (id, e) in &t.members {
        let Some(op) = e.op else { continue };
        let r = row(e.slot);
        ops.push(OperationStatus {
            pool: pool.to_string(),
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
        ops.push(OperationStatus {
            pool: pool.to_string(),
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
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON examples of docs/interfaces.md read as the types that carry them: the
    /// change message, the apply report, the host report and `agent status --json`
    /// (its `[...]` shortenings read as empty lists).
    #[test]
    fn the_json_examples_in_the_docs_read_as_the_real_types() {
        let doc = include_str!("../../docs/interfaces.md");
        let blocks: Vec<&str> = doc
            .split("```json\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        let find = |start: &str| {
            blocks
                .iter()
                .find(|b| b.starts_with(start))
                .unwrap_or_else(|| panic!("no example starting {start:?} in docs/interfaces.md"))
                .to_string()
        };
        let change = find("{\"version\":1,\"generation\"");
        infra::Change::from_json(&change).unwrap_or_else(|e| panic!("{e}\n{change}"));
        let report = find("{\"host\":\"i-");
        infra::Report::from_json(&report).unwrap_or_else(|e| panic!("{e}\n{report}"));
        let host = find("{\"kind\":\"haproxy-asg.host-report\"");
        infra::HostReport::from_json(&host).unwrap_or_else(|e| panic!("{e}\n{host}"));
        let status = find("{\"host\":\"proxy-a\"").replace("[...]", "[]");
        let s: Status = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}\n{status}"));
        assert_eq!(s.external_reloads, 1);
        assert_eq!(s.sockets.len(), 2);
    }
    use crate::slots::{Entry, Op, PoolSlots};
    use infra::{MemberId, Port};

    fn state(server: &str, admin_state: u32) -> ServerState {
        ServerState {
            backend: "web".into(),
            server: server.into(),
            addr: "10.0.0.1".into(),
            port: 80,
            op_state: 2,
            admin_state,
            uweight: 1,
            iweight: 1,
        }
    }

    fn row(server: &str, status: &str) -> StatRow {
        StatRow {
            backend: "web".into(),
            server: server.into(),
            scur: 0,
            qcur: 0,
            stot: 0,
            status: status.into(),
            check_status: String::new(),
            last_chk: String::new(),
            addr: "10.0.0.1:80".into(),
        }
    }

    #[test]
    fn each_pool_maps_its_used_slots_to_instances() {
        let entry = |slot, state, op: bool| Entry {
            slot,
            address: [10, 0, 0, 1].into(),
            port: Port::new(80).unwrap(),
            generation: 1,
            state,
            op: op.then_some(Op {
                change: 1,
                started_ms: 0,
                deadline_ms: 10_000,
                fresh: true,
            }),
            zone: None,
            weight: None,
            touched: 0,
        };
        let mut web = PoolSlots::default();
        web.members.insert(
            MemberId::new("i-late").unwrap(),
            entry(3, EntryState::Joining, true),
        );
        web.members.insert(
            MemberId::new("i-first").unwrap(),
            entry(1, EntryState::Up, false),
        );
        let mut table = SlotTable::default();
        table.pools.insert("web".into(), web);
        let states: Vec<ServerState> = (1..=4)
            .map(|n| state(&slot_name(n), if n == 2 || n == 4 { 0x21 } else { 0 }))
            .collect();
        let rows = vec![row("slot1", "UP"), row("slot3", "DOWN 1/2")];
        let pools = vec!["web".to_string(), "api".to_string()];
        let s = build("h", &pools, &table, &states, &rows, 0, 0);
        assert_eq!(s.pools.len(), 2);
        let web = &s.pools[0];
        assert_eq!((web.slots, web.used, web.free), (4, 2, 2));
        let got: Vec<(&str, &str, &str, &str, &str)> = web
            .instances
            .iter()
            .map(|i| {
                (
                    i.slot.as_str(),
                    i.key.as_str(),
                    i.instance.as_str(),
                    i.state.as_str(),
                    i.status.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("slot1", "web/slot1", "i-first", "up", "UP"),
                ("slot3", "web/slot3", "i-late", "joining", "DOWN 1/2"),
            ],
            "by slot number, keyed as the instance map"
        );
        assert_eq!(
            web.instances[0].key,
            crate::instances::key(&infra::PoolName::new("web").unwrap(), 1)
        );
        let api = &s.pools[1];
        assert_eq!((api.slots, api.used, api.free), (0, 0, 0));
        assert!(api.instances.is_empty());
        // Older answers without the map still read.
        let old: Status =
            serde_json::from_str(r#"{"host":"h","slots":[],"operations":[],"reloads":0}"#).unwrap();
        assert!(old.pools.is_empty());
    }
}
