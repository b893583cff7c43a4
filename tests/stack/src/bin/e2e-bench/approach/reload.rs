//! `reload_per_change` (baseline, implemented here), as template-based setups
//! (consul-template, Data Plane API discovery) do: the group has no hooks; each Auto
//! Scaling event of the group reaches a queue (EventBridge -> SQS, one poller, as a
//! template tool's single watcher, coalescing what is queued); the loop then reads the
//! group (DescribeAutoScalingGroups + DescribeInstances) and, when the in-service
//! members changed, rewrites the pool as static `server` lines, checks the config
//! (`haproxy -c`) and reloads HAProxy through the master socket, on both hosts. A cycle
//! scales out to 3 and back to 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::haproxy::Client;
use anyhow::Context;
use harness::pump::{Delivery, Pump};
use harness::world::{autoscaling_pattern, Blocking};
use harness::Host;
use infra::aws::AwsDiscovery;
use serde_json::json;
use tokio::sync::mpsc as tmpsc;

use super::baseline::{self, serving_members, Baseline};
use super::Approach;
use crate::figures::Figures;
use crate::rig::{Rig, Setup, MAX};
use crate::trace::Trace;
use crate::{cleanup, cycle, POOL, SERVER_OPTIONS};
use stack::usage::CpuMark;

/// Its name.
pub const NAME: &str = "reload_per_change";

/// `reload_per_change`, started.
pub struct Reload {
    /// The group.
    group: String,
    /// The queue's name (`bench-<idx>`) and URL.
    queue: (String, String),
    pump: Pump,
    baseline: Baseline,
}

impl Approach for Reload {
    fn start(setup: &Setup) -> anyhow::Result<(Self, Vec<Host>)> {
        let hosts = baseline::start(setup, NAME)?;
        let world = setup.world;
        let name = setup.prefix();
        let url = world.event_queue(&name, &[autoscaling_pattern(&[&setup.group])])?;
        let (tx, rx) = tmpsc::unbounded_channel::<Delivery>();
        // One poller, as a template tool's single watcher.
        let pump = Pump::start(world.world.clone(), url.clone(), tx, MAX, 1);
        let targets: Vec<(PathBuf, Client)> = hosts
            .iter()
            .map(|h| (h.dir().join("haproxy.cfg"), h.client()))
            .collect();
        let (group, port) = (setup.group.clone(), setup.port);
        let baseline = Baseline::start(&world.world, move |discovery, stop| {
            reload_loop(discovery, stop, group, port, rx, targets)
        })?;
        let reload = Self {
            group: setup.group.clone(),
            queue: (name, url),
            pump,
            baseline,
        };
        Ok((reload, hosts))
    }

    fn cycle(&mut self, rig: &Rig, c: usize, f: &mut Figures) -> anyhow::Result<()> {
        cycle::scale_out_in(rig, c, f)
    }

    /// The loop's CPU time: its thread and its `haproxy -c` checks.
    fn stop(&mut self, _: &Rig, _: &CpuMark, f: &mut Figures) -> anyhow::Result<Trace> {
        f.control_cpu_s = self.baseline.finish();
        self.pump.stop();
        Ok(Trace::default())
    }

    fn clean(self: Box<Self>, world: &Blocking) -> anyhow::Result<()> {
        cleanup::delete_group(world, &self.group)?;
        cleanup::delete_queue(world, &self.queue.0, &self.queue.1, 1)
    }
}

/// Every event of the group -> describe -> static config -> check -> master reload, on
/// every host (`targets`: each host's config and socket); the CPU seconds of the checks.
async fn reload_loop(
    discovery: AwsDiscovery,
    stop: Arc<AtomicBool>,
    group: String,
    port: u16,
    mut events: tmpsc::UnboundedReceiver<Delivery>,
    targets: Vec<(PathBuf, Client)>,
) -> f64 {
    let mut children_cpu = 0.0;
    let mut last: Option<BTreeMap<String, String>> = None;
    while !stop.load(Ordering::Relaxed) {
        let got = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
        let Ok(Some(event)) = got else { continue };
        // Taken: the poller deletes it. Coalesce what is queued, as a template
        // tool's debounce would.
        event.answer(json!({"batchItemFailures": []}));
        while let Ok(more) = events.try_recv() {
            more.answer(json!({"batchItemFailures": []}));
        }
        let Some(members) = serving_members(&discovery, &group, NAME).await else {
            continue;
        };
        if last.as_ref() == Some(&members) {
            continue;
        }
        for (cfg, client) in &targets {
            match rewrite_and_reload(cfg, client, &members, port) {
                Ok(cpu) => children_cpu += cpu,
                Err(e) => eprintln!("{NAME}: {e:#}"),
            }
        }
        last = Some(members);
    }
    children_cpu
}

/// Rewrites the pool's servers as static lines, validates (`haproxy -c`) and reloads
/// through the master socket; the CPU seconds of the check.
fn rewrite_and_reload(
    cfg: &Path,
    client: &Client,
    members: &BTreeMap<String, String>,
    port: u16,
) -> anyhow::Result<f64> {
    let text =
        std::fs::read_to_string(cfg).with_context(|| format!("reading {}", cfg.display()))?;
    let tmp = cfg.with_extension("cfg.new");
    std::fs::write(&tmp, with_servers(&text, members, port))
        .with_context(|| format!("writing {}", tmp.display()))?;
    let check = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(&tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running haproxy -c")?;
    let (code, cpu) = stack::usage::wait_cpu(check);
    anyhow::ensure!(code == 0, "haproxy -c refused the rewritten config");
    std::fs::rename(&tmp, cfg).with_context(|| format!("replacing {}", cfg.display()))?;
    client
        .master("reload")
        .map_err(|e| anyhow::anyhow!("reload: {e}"))?;
    Ok(cpu)
}

/// Config `text` with the pool's `server` and `server-template` lines replaced by one
/// static `server` line per member.
fn with_servers(text: &str, members: &BTreeMap<String, String>, port: u16) -> String {
    let mut out = String::new();
    let mut in_pool = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("backend ")
            || t.starts_with("frontend ")
            || t.starts_with("defaults")
            || t.starts_with("global")
        {
            in_pool = t == format!("backend {POOL}");
        }
        if in_pool && (t.starts_with("server ") || t.starts_with("server-template ")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if in_pool && t == format!("backend {POOL}") {
            // The servers right after the `backend` line: HAProxy takes them anywhere
            // in the section.
            for (id, ip) in members {
                out.push_str(&format!("    server {id} {ip}:{port} {SERVER_OPTIONS}\n"));
            }
        }
    }
    out
}
