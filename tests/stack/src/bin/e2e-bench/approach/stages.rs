//! Where each of this project's samples spent its time before and after HAProxy had
//! it: from the reactor's invocations (when it got the launch action, the commands of
//! the change that added the instance, when each host's report of it `up` reached the
//! inbox) and from the emulator's logs (SendCommand's arrival, the commands' status
//! events, the completed lifecycle actions).

use std::collections::BTreeMap;
use std::sync::mpsc;

use harness::world::Blocking;
use infra::OutcomeStatus;
use serde_json::Value;
use stack::control::{Handled, Record, HOST_REPORT};

use crate::figures::Sample;
use crate::trace::handled_json;

/// What the reactor's invocations said, per launched instance.
#[derive(Debug, Default)]
pub struct Stages {
    /// When the reactor got its launch action (unix ms).
    received: BTreeMap<String, u64>,
    /// The commands of the change that added it.
    commands: BTreeMap<String, Vec<String>>,
    /// Per host, when its first report of the instance `up` reached the inbox (unix ms).
    reported: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Stages {
    /// Reads every invocation the reactor handled; also each one as JSON, for the trace.
    pub fn of(reports: &mpsc::Receiver<Handled>) -> (Self, Vec<Value>) {
        let mut stages = Self::default();
        let mut handled = Vec::new();
        for h in reports.try_iter() {
            handled.push(handled_json(&h));
            for r in &h.records {
                let Some(instance) = &r.instance else {
                    continue;
                };
                if r.kind == HOST_REPORT {
                    stages.host_report(r, instance, &h);
                } else if r.kind == "EC2 Instance-launch Lifecycle Action" {
                    stages.launch(instance, &h);
                }
            }
        }
        (stages, handled)
    }

    /// A report of host `host`: when each member it reports `up` reached the inbox.
    fn host_report(&mut self, r: &Record, host: &str, h: &Handled) {
        for m in r.reports.iter().filter(|m| m.status == OutcomeStatus::Up) {
            let at = self
                .reported
                .entry(m.member.to_string())
                .or_default()
                .entry(host.to_string())
                .or_insert(u64::MAX);
            *at = (*at).min(r.inbox_ms.unwrap_or(h.received_ms));
        }
    }

    /// A launch action of `instance`: when the reactor got it, the commands of the
    /// change that added the instance.
    fn launch(&mut self, instance: &str, h: &Handled) {
        self.received
            .entry(instance.to_string())
            .or_insert(h.received_ms);
        let adds = |c: &&reactor::summary::SentChange| {
            c.change
                .pools
                .iter()
                .any(|p| p.add.iter().any(|m| m.id.as_str() == instance))
        };
        if let Some(c) = h
            .result
            .as_ref()
            .ok()
            .and_then(|s| s.changes.iter().find(adds))
        {
            self.commands
                .entry(instance.to_string())
                .or_insert(c.commands.clone());
        }
    }

    /// Fills each sample's stages: received, the command's send, answer and start on
    /// the last host ([`command_stages`]), reported (once all `hosts` reported it `up`),
    /// its launch action completed.
    pub fn apply(
        &self,
        world: &Blocking,
        events: &[Value],
        hosts: usize,
        samples: &mut [Sample],
    ) -> anyhow::Result<()> {
        let calls = world.emulator.control("GET", "/moto-ext/calls", None)?;
        let lifecycle = world.lifecycle()?;
        for s in samples {
            s.received_ms = self.received.get(&s.instance).copied();
            if let Some(ids) = self.commands.get(&s.instance) {
                (s.send_ms, s.sent_ms, s.host_ms) = command_stages(ids, events, &calls);
            }
            s.reported_ms = self
                .reported
                .get(&s.instance)
                .filter(|by_host| by_host.len() == hosts)
                .and_then(|by_host| by_host.values().max().copied());
            s.completed_ms = launch_completed_ms(&lifecycle, &s.instance);
        }
        Ok(())
    }
}

/// When `instance`'s launch action was completed with CONTINUE (unix ms).
fn launch_completed_ms(lifecycle: &[Value], instance: &str) -> Option<u64> {
    lifecycle
        .iter()
        .find(|a| {
            a["instance"] == instance
                && a["transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
                && a["result"] == "CONTINUE"
        })
        .and_then(|a| a["time"].as_f64())
        .map(|t| (t * 1000.0).round() as u64)
}

/// When the commands of a change were sent (SendCommand's arrival), answered (the
/// command's InProgress status event) and started on the last host (the invocations'
/// InProgress events), from the emulator's events and call log (unix ms).
fn command_stages(
    ids: &[String],
    events: &[Value],
    calls: &Value,
) -> (Option<u64>, Option<u64>, Option<u64>) {
    let ms = |v: &Value| v.as_f64().map(|t| (t * 1000.0).round() as u64);
    let status_at = |dt: &str, id: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| {
                e["detail-type"] == dt
                    && e["detail"]["command-id"] == id
                    && e["detail"]["status"] == "InProgress"
            })
            .filter_map(|e| ms(&e["emitted"]))
            .collect()
    };
    let Some(id) = ids.first() else {
        return (None, None, None);
    };
    let sent = status_at("EC2 Command Status-change Notification", id)
        .into_iter()
        .min();
    let host = status_at("EC2 Command Invocation Status-change Notification", id)
        .into_iter()
        .max();
    // The last SendCommand to arrive before the command's InProgress event. (The
    // emulator may emit that event before the call's answer has been written, so the
    // call's end does not say which call it was.)
    let send = sent.and_then(|at| {
        calls
            .as_array()?
            .iter()
            .filter(|c| c["action"] == "SendCommand")
            .filter_map(|c| ms(&c["time"]))
            .filter(|start| *start <= at)
            .max()
    });
    (send, sent, host)
}
