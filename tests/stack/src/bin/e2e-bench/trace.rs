//! The `--trace` file of an approach, `DIR/<approach>.json`: every sample's timestamps,
//! what the control plane adds ([`Trace`]: the reactor's invocations, the agent runs)
//! and the emulator's call log and events; to see where the time went.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use harness::world::Blocking;
use serde_json::{json, Value};

use crate::figures::Figures;

/// What an approach's control plane adds to its trace (empty for the baselines).
#[derive(Debug, Default)]
pub struct Trace {
    /// Each invocation of the reactor ([`handled_json`]).
    pub reactor: Vec<Value>,
    /// Each Run Command invocation's run on its host ([`command_runs`]).
    pub agent_runs: Vec<Value>,
}

/// Writes `DIR/<name>.json`.
pub fn write(
    dir: &Path,
    name: &str,
    world: &Blocking,
    f: &Figures,
    trace: Trace,
) -> anyhow::Result<()> {
    let calls = world.emulator.control("GET", "/moto-ext/calls", None)?;
    let events = world.emulator.control("GET", "/moto-ext/events", None)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let trace = json!({"samples": f.samples, "reactor": trace.reactor, "agent_runs": trace.agent_runs,
                       "emulator_calls": calls, "events": events});
    std::fs::write(&path, trace.to_string()).with_context(|| format!("writing {}", path.display()))
}

/// One invocation of the reactor, for `--trace` and the setup's diagnostics: each record
/// (kind, instance or reporting host, arrival in the inbox, member reports), when the
/// reactor got it, how long it took, the changes it sent (generation, commands), the
/// actions it decided, what the reports did.
pub fn handled_json(h: &stack::control::Handled) -> Value {
    let records: Vec<Value> = h
        .records
        .iter()
        .map(|r| {
            json!({"kind": r.kind, "instance": r.instance, "inbox_ms": r.inbox_ms,
                   "reports": r.reports.iter().map(|m| format!("{} {} {}", m.member, m.status, m.generation)).collect::<Vec<_>>()})
        })
        .collect();
    let summary = match &h.result {
        Ok(s) => json!({
            "changes": s.changes.iter().map(|c| json!({"label": c.label, "generation": c.generation,
                "commands": c.commands, "hosts": c.hosts, "sent_ms": c.sent_ms})).collect::<Vec<_>>(),
            "actions": s.actions.iter().map(|a| format!("{} {} {} {}", a.transition, a.instance, a.decision,
                if a.completed { "completed" } else { "" })).collect::<Vec<_>>(),
            "reports": s.reports, "ignored": s.ignored, "failed": s.failed,
        }),
        Err(e) => json!({"error": e}),
    };
    json!({"records": records, "received_ms": h.received_ms, "ms": h.ms, "summary": summary})
}

/// Each Run Command invocation's run on its host, from the emulator's status events:
/// when it went `InProgress` (its process started) and when it ended (unix ms): `agent
/// apply` handing the change to the service, not the join or the drain, which the hosts'
/// reports tell.
pub fn command_runs(events: &[Value]) -> Vec<Value> {
    let mut runs: BTreeMap<(String, String), (Option<u64>, Option<u64>)> = BTreeMap::new();
    for e in events {
        if e["detail-type"] != "EC2 Command Invocation Status-change Notification" {
            continue;
        }
        let d = &e["detail"];
        let key = (
            d["command-id"].as_str().unwrap_or_default().to_string(),
            d["instance-id"].as_str().unwrap_or_default().to_string(),
        );
        let at = e["emitted"].as_f64().map(|t| (t * 1000.0).round() as u64);
        let run = runs.entry(key).or_default();
        match d["status"].as_str() {
            Some("InProgress") => run.0 = run.0.or(at),
            Some("Pending" | "Delayed") | None => {}
            Some(_) => run.1 = at,
        }
    }
    runs.into_iter()
        .map(|((command, instance), (start, end))| {
            json!({"command": command, "instance": instance, "started_ms": start, "ended_ms": end})
        })
        .collect()
}
