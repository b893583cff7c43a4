//! `e2e-bench`: the local stack (emulator, instances played by local backends, two
//! HAProxy hosts under HTTP load) through N scale-out/scale-in cycles, once per approach,
//! each on fresh HAProxy hosts and its own group:
//!
//! - `ours`: lifecycle hooks, EventBridge -> the reactor's inbox (SQS) -> the reactor
//!   (in-process, fed as Lambda's event source mapping feeds it) -> SSM Run Command of
//!   the project's document -> `agent apply` -> the agent services (health-gated join,
//!   drain before release, no reload while slots are free), which report each member's
//!   outcome to the inbox; the hosts' reports complete the lifecycle action;
//! - `mixed` (ours again): each cycle terminates one member while a 5 s request is in
//!   flight on it, and Auto Scaling launches its replacement at once: launches and drains
//!   overlap, as in an instance refresh;
//! - `spot` (ours again): each cycle, EC2's Spot interruption warning for one member,
//!   which EC2 reclaims 10 s later (no terminate lifecycle action: it vanishes), and Auto
//!   Scaling's replacement; the warning must drain it first (deadline 8 s) so that no
//!   request fails;
//! - `reload_per_change` (baseline, implemented here): on each Auto Scaling event, rewrite
//!   the config with static `server` lines for the current members and reload HAProxy
//!   through the master socket, as template-based setups do;
//! - `polling` (baseline, implemented here): every 5 s DescribeAutoScalingGroups +
//!   DescribeInstances, then runtime-socket `set server addr` + `state ready` for new
//!   members and straight `maint` for removed ones, without drain, as ElasticPyProxy does.
//!
//! Prints a table; `--json PATH` writes the figures, `--html PATH` a page of the latency
//! distributions per approach ([`demo::page::latencies`]).//!
//! The parts: [`figures`] holds what a run measures, [`cpu`] the control plane's CPU
//! time, [`trace`] the `--trace` files and [`report`] the table and the files written at
//! the end.
#![recursion_limit = "256"]

mod cpu;
mod figures;
mod report;
mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::haproxy::Client;
use anyhow::Context;
use clap::Parser;
use demo::control::{reactor_config, thread_cpu_s, ReactorRun, DOCUMENT_TIMEOUT_S, HOST_REPORT};
use demo::{install_signal_handlers, percentile, proxy_host, proxy_spec, say, stopping, until};
use harness::fleet::Fleet;
use harness::pump::{Delivery, Pump};
use harness::watch::SocketWatch;
use harness::world::{autoscaling_pattern, ec2_warnings_pattern, Blocking, PROXY_GROUP};
use harness::{free_port, unix_ms, GroupSpec, Host, Load, World};
use infra::aws::{AwsDiscovery, Discovery, Phase};
use infra::OutcomeStatus;
use serde_json::{json, Value};
use tokio::sync::mpsc as tmpsc;

use crate::cpu::{children_cpu_s, services_cpu_s};
use crate::figures::{spans, Figures, Sample};
use crate::trace::{command_runs, handled_json, Trace};

const POOL: &str = "web";
const SERVER_OPTIONS: &str = "check inter 100ms fall 2 rise 2";
/// `spot`: EC2 reclaims an instance this long after its warning.
const SPOT_RECLAIM_MS: u64 = 10_000;
/// `spot`: the reactor's drain deadline after a warning (before the reclaim).
const SPOT_DRAIN: Duration = Duration::from_secs(8);

/// End-to-end benchmark: this project against two baselines, under HTTP load.
#[derive(Parser, Debug)]
#[command(name = "e2e-bench", version, max_term_width = 100)]
struct Args {
    /// Scale-out/scale-in cycles per approach.
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML page of the latency distributions per approach here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Approaches to run (comma separated): ours, mixed, spot, reload_per_change,
    /// polling.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,mixed,spot,reload_per_change,polling"
    )]
    approaches: Vec<String>,
    /// The polling baseline's interval, seconds.
    #[arg(long, default_value_t = 5.0)]
    poll_interval_s: f64,
    /// Initial slots per host (the cycles need 3, so no growth).
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// HTTP load workers per frontend.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Ours: pollers feeding the reactor from its inbox (the event source mapping's
    /// maximum concurrency; Terraform's default is 5).
    #[arg(long, default_value_t = demo::control::POLLERS)]
    pollers: usize,
    /// Also write, per approach, DIR/<approach>.json: every sample's timestamps, the
    /// reactor's invocations (their records, when received, how long, what they did),
    /// the agent runs (start, end), the emulator's call log (arrival, lock, end of each
    /// AWS call) and the events it emitted; to see where the time went.
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Mixed,
    Spot,
    Reload,
    Polling,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Mixed => "mixed",
            Kind::Spot => "spot",
            Kind::Reload => "reload_per_change",
            Kind::Polling => "polling",
        }
    }

    /// This project's setup (hooks, the reactor, the agents).
    fn ours(self) -> bool {
        matches!(self, Kind::Ours | Kind::Mixed | Kind::Spot)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handlers();
    demo::elapsed_s();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("e2e-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut kinds = Vec::new();
    for a in &args.approaches {
        kinds.push(match a.trim() {
            "ours" => Kind::Ours,
            "mixed" => Kind::Mixed,
            "spot" => Kind::Spot,
            "reload_per_change" | "reload" => Kind::Reload,
            "polling" => Kind::Polling,
            other => anyhow::bail!(
                "unknown approach {other:?} (ours, mixed, spot, reload_per_change, polling)"
            ),
        });
    }
    let (dir, tag) = demo::run_dir("haproxy-asg-bench-")?;
    say!("setup    starting the AWS emulator");
    let world = Blocking::start(Some(&dir.path().join("emulator.log")))?;
    let mut results: BTreeMap<&'static str, Figures> = BTreeMap::new();
    for (i, kind) in kinds.iter().enumerate() {
        if stopping() {
            break;
        }
        say!("approach {} ({} cycles)", kind.name(), args.cycles);
        let f = run_approach(&world, *kind, i, args, &tag)
            .with_context(|| format!("approach {}", kind.name()))?;
        say!(
            "approach {}: {} requests, {} failed, {} reloads, p99 {} ms ({} ms excl. check), CPU {:.2} s",
            kind.name(),
            f.requests,
            f.failed,
            f.reloads,
            percentile(&f.serving(), 99.0),
            percentile(&f.excl_check(), 99.0),
            f.control_cpu_s
        );
        results.insert(kind.name(), f);
    }
    drop(world);
    let names: Vec<&'static str> = kinds.iter().map(|k| k.name()).collect();
    report::table(&names, &results);
    report::json(args, &results)?;
    report::html(args, &names, &results)?;
    if stopping() {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
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

/// Whether any server of `host`'s pool has `ip` and is not in MAINT.
fn serving_ip(host: &Host, ip: &str) -> bool {
    host.client().stats().ok().is_some_and(|rows| {
        rows.iter().any(|r| {
            r.backend == POOL
                && r.addr.rsplit_once(':').is_some_and(|(a, _)| a == ip)
                && !r.status.starts_with("MAINT")
        })
    })
}

fn run_approach(
    world: &Blocking,
    kind: Kind,
    idx: usize,
    args: &Args,
    tag: &str,
) -> anyhow::Result<Figures> {
    let group = format!("bench-{}", kind.name().replace('_', "-"));
    let port = free_port();
    let subnet = world.add_subnet(&format!("127.0.{}.0/21", 16 * (idx + 1)))?;
    let mut spec = GroupSpec::new(&group, &subnet).pool(POOL, port);
    spec.max = 10;
    if kind.ours() {
        spec = spec.hooks(120);
    }
    world.group(&spec)?;
    let max = Duration::from_secs(6 * 3600);
    // Ours: the control path (the inbox fed by the group's and the proxies' Auto
    // Scaling events and the EC2 warnings, the ledger, the proxies' role) and the proxy
    // fleet, whose hosts report to the inbox; the baselines: two hosts of their own.
    let mut path = None;
    let hosts = if kind.ours() {
        world.block_on(world.ssm_document(DOCUMENT_TIMEOUT_S)).ok(); // Or an earlier approach's.
        let p = world.control_path(
            &format!("bench-{idx}"),
            &[
                autoscaling_pattern(&[&group, PROXY_GROUP]),
                ec2_warnings_pattern(),
            ],
        )?;
        let proxy_subnet = world.add_subnet(&format!("127.0.{}.0/24", 16 * (idx + 1) + 8))?;
        let specs = (0..2)
            .map(|_| proxy_spec(POOL, port, args.slots, Some(&group)))
            .collect();
        let hosts = world.block_on(world.proxy_fleet(&p, &proxy_subnet, specs))?;
        path = Some(p);
        hosts
    } else {
        let mut hosts = Vec::new();
        for i in 1..=2 {
            // The baselines manage their hosts' servers themselves: no agent sync there.
            hosts.push(proxy_host(
                &format!("{}-{i}", kind.name()),
                (POOL, port),
                args.slots,
                None,
                world.emulator.aws_env(),
            )?);
        }
        hosts
    };
    let watches: Vec<SocketWatch> = hosts
        .iter()
        .map(|h| SocketWatch::start(h.client(), POOL, Duration::from_millis(5), max))
        .collect();
    let fleet = Fleet::start(
        world.world.clone(),
        &subnet,
        port,
        tag,
        Duration::from_millis(50),
        max,
    );
    let (tx, rx) = tmpsc::unbounded_channel::<Delivery>();
    let mut control = if let Some(path) = &path {
        let (report_tx, report_rx) = mpsc::channel();
        let mut config = reactor_config(path, &group, POOL, port)?;
        // EC2 reclaims the bench's Spot instances 10 s after the warning.
        config.spot_drain_timeout = SPOT_DRAIN;
        let reactor = ReactorRun::start(world, config, None, report_tx)?;
        let pump = reactor.pump(&world.world, path, args.pollers, max);
        drop(rx);
        Control::Ours {
            pump,
            reactor,
            reports: report_rx,
        }
    } else if kind == Kind::Reload {
        let queue =
            world.event_queue(&format!("bench-{idx}"), &[autoscaling_pattern(&[&group])])?;
        // One poller, as a template tool's single watcher.
        let pump = Pump::start(world.world.clone(), queue, tx, max, 1);
        let targets: Vec<(PathBuf, Client)> = hosts
            .iter()
            .map(|h| (h.dir().join("haproxy.cfg"), h.client()))
            .collect();
        let b = Baseline::start(&world.world, group.clone(), port, move |w, g, p, stop| {
            reload_loop(w, g, p, rx, targets, stop)
        });
        Control::Baseline {
            _pump: Some(pump),
            baseline: b,
        }
    } else {
        drop(rx);
        drop(tx);
        let clients: Vec<Client> = hosts.iter().map(Host::client).collect();
        let every = Duration::from_secs_f64(args.poll_interval_s.max(0.1));
        let slots = args.slots;
        let b = Baseline::start(&world.world, group.clone(), port, move |w, g, p, stop| {
            polling_loop(w, g, p, clients, slots, every, stop)
        });
        Control::Baseline {
            _pump: None,
            baseline: b,
        }
    };

    let mut f = Figures::default();
    let wait_change = Duration::from_secs(30) + Duration::from_secs_f64(args.poll_interval_s);
    // Initial capacity: 2 members UP on every host, before the load starts.
    fleet.requested_ms.store(unix_ms(), Ordering::SeqCst);
    world.scale(&group, 2)?;
    let up = until(wait_change * 2, || {
        let ids = world.members(&group).unwrap_or_default();
        ids.len() == 2
            && ids.iter().all(|m| m.state == "InService")
            && ids.iter().all(|m| {
                fleet.instance(&m.id).is_some_and(|i| {
                    watches
                        .iter()
                        .all(|w| w.get(&i.ip).is_some_and(|s| s.up_ms.is_some()))
                })
            })
    });
    if !up && !stopping() {
        let members = world.members(&group).unwrap_or_default();
        let states: Vec<String> = members
            .iter()
            .map(|m| {
                let seen: Vec<String> = fleet
                    .instance(&m.id)
                    .map(|i| {
                        watches
                            .iter()
                            .map(|w| format!("{:?}", w.get(&i.ip)))
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{} {} (on the hosts: {})", m.id, m.state, seen.join(", "))
            })
            .collect();
        let logs: Vec<String> = hosts
            .iter()
            .map(|h| {
                let log = h.agent_log();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                format!("{}: {}", h.name, tail.join(" | "))
            })
            .collect();
        let mut handled = Vec::new();
        if let Control::Ours { reports, .. } = &control {
            while let Ok(h) = reports.try_recv() {
                handled.push(handled_json(&h).to_string());
            }
        }
        anyhow::bail!(
            "the initial 2 members did not come up: {}; agents: {}; reactor: {}",
            states.join("; "),
            logs.join("; "),
            handled.join("; ")
        );
    }
    let loads: Vec<Load> = hosts
        .iter()
        .map(|h| Load::start(h.frontend(POOL), args.workers, max, u64::MAX))
        .collect();
    let reloads_before: u64 = hosts.iter().map(|h| h.reloads().unwrap_or(0)).sum();
    let services_before = services_cpu_s(&hosts);
    let commands_before = children_cpu_s(world.emulator.pid());
    for c in 0..args.cycles {
        if stopping() {
            break;
        }
        let members = world.members(&group)?;
        let before: BTreeSet<String> = members.iter().map(|m| m.id.clone()).collect();
        // Mixed: a 5 s request in flight on the oldest member, through every host.
        let mut slow = Vec::new();
        let mut mixed_leaving = None;
        if kind == Kind::Mixed {
            let oldest = members.first().map(|m| m.id.clone()).unwrap_or_default();
            for h in &hosts {
                let fe = h.frontend(POOL);
                // Round robin over the two members: two requests reach both.
                for _ in 0..2 {
                    slow.push(std::thread::spawn(move || {
                        harness::http::get(fe, "/slow?ms=5000", Duration::from_secs(30))
                    }));
                }
            }
            let ip = fleet.instance(&oldest).map(|i| i.ip).unwrap_or_default();
            until(Duration::from_secs(3), || {
                hosts.iter().all(|h| {
                    h.client().stats().ok().is_some_and(|rows| {
                        rows.iter().any(|r| {
                            r.addr.rsplit_once(':').is_some_and(|(a, _)| a == ip) && r.scur > 0
                        })
                    })
                })
            });
            mixed_leaving = Some(oldest);
        }
        let t0 = unix_ms();
        fleet.requested_ms.store(t0, Ordering::SeqCst);
        if kind == Kind::Spot {
            // The warning; EC2 takes the instance 10 s later, Auto Scaling replaces it.
            let victim = members.first().map(|m| m.id.clone()).unwrap_or_default();
            let ip = fleet.instance(&victim).map(|i| i.ip).unwrap_or_default();
            world.spot_interruption(&victim, None, SPOT_RECLAIM_MS)?;
            let drained = until(Duration::from_millis(SPOT_RECLAIM_MS), || {
                hosts.iter().all(|h| !serving_ip(h, &ip))
            });
            if drained {
                f.warning_to_drained.push(unix_ms().saturating_sub(t0));
            } else {
                f.errors.push(format!(
                    "cycle {c}: {victim} was still in rotation when EC2 reclaimed it"
                ));
            }
            mixed_leaving = Some(victim);
        }
        match (&mixed_leaving, kind) {
            (Some(_), Kind::Spot) => {}
            // Terminated without decrement: Auto Scaling launches the replacement at once.
            (Some(oldest), _) => world.block_on(world.terminate(oldest, false))?,
            (None, _) => world.scale(&group, 3)?,
        }
        let mut new = None;
        let wait_new = if kind == Kind::Spot {
            wait_change + Duration::from_millis(SPOT_RECLAIM_MS)
        } else {
            wait_change
        };
        let served = until(wait_new, || {
            new = fleet
                .instances()
                .into_iter()
                .find(|i| !before.contains(&i.id) && i.started_ms >= t0 && i.first_ms.is_some());
            new.is_some()
        });
        match (&new, served) {
            (Some(i), true) => f.samples.push(Sample {
                instance: i.id.clone(),
                requested_ms: t0,
                event_ms: None,
                received_ms: None,
                send_ms: None,
                sent_ms: None,
                host_ms: None,
                ready_ms: watches
                    .iter()
                    .map(|w| w.get(&i.ip).and_then(|s| s.ready_ms))
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max()),
                up_ms: watches
                    .iter()
                    .map(|w| w.get(&i.ip).and_then(|s| s.up_ms))
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max()),
                reported_ms: None,
                completed_ms: None,
                first_ms: i.first_ms.unwrap_or(t0),
            }),
            _ => f.errors.push(format!(
                "cycle {c}: the new member served nothing within {wait_change:?}"
            )),
        }
        let leaving = match &mixed_leaving {
            Some(id) => Some(id.clone()),
            None => world
                .members(&group)?
                .into_iter()
                .map(|m| m.id)
                .find(|id| before.contains(id)),
        };
        let leaving_ip = leaving
            .as_ref()
            .and_then(|id| fleet.instance(id))
            .map(|i| i.ip);
        if mixed_leaving.is_none() {
            world.scale(&group, 2)?;
        }
        // The local checks first: the group is asked (an AWS call, under the emulator's
        // lock) only once the fleet and the hosts agree, so this watch does not load
        // the emulator while the leaving member drains.
        let done = until(wait_change, || {
            fleet.running().len() == 2
                && leaving_ip
                    .as_ref()
                    .is_none_or(|ip| hosts.iter().all(|h| !serving_ip(h, ip)))
                && {
                    let m = world.members(&group).unwrap_or_default();
                    m.len() == 2 && m.iter().all(|x| x.state == "InService")
                }
        });
        if !done {
            f.errors.push(format!(
                "cycle {c}: scale-in did not settle within {wait_change:?}"
            ));
        }
        for s in slow {
            match s.join() {
                Ok(Ok(r)) if r.status == 200 => {}
                other => {
                    f.slow_failed += 1;
                    f.errors.push(format!(
                        "cycle {c}: a request in flight on the leaving member failed: {other:?}"
                    ));
                }
            }
        }
        f.cycles = c + 1;
        if (c + 1) % 10 == 0 || c + 1 == args.cycles {
            let sent: u64 = loads.iter().map(Load::completed).sum();
            let from_request = spans(&f.samples, |s| Some(s.requested_ms), |s| s.ready_ms);
            say!(
                "{:<18} cycle {:>4}/{}: scale request -> out of MAINT p50 {} ms, p99 {} ms | requests {sent}",
                kind.name(),
                c + 1,
                args.cycles,
                percentile(&from_request, 50.0),
                percentile(&from_request, 99.0)
            );
        }
    }
    let stats: Vec<_> = loads.into_iter().map(Load::stop).collect();
    f.requests = stats.iter().map(|s| s.requests).sum();
    f.failed = stats.iter().map(|s| s.failed).sum();
    for s in &stats {
        for e in s.errors.iter().take(3) {
            f.errors.push(format!("request: {e}"));
        }
    }
    f.reloads = hosts
        .iter()
        .map(|h| h.reloads().unwrap_or(0))
        .sum::<u64>()
        .saturating_sub(reloads_before);
    let (mut handled, mut agent_runs) = (Vec::new(), Vec::new());
    f.control_cpu_s = match &mut control {
        Control::Ours {
            pump,
            reactor,
            reports,
        } => {
            pump.stop();
            let reactor_cpu = reactor.finish();
            // Per launched instance: when the reactor got its launch action and the
            // commands of the change that added it; when each host's first report of
            // it `up` reached the inbox.
            let mut received = BTreeMap::new();
            let mut commands: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut reported: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            while let Ok(h) = reports.try_recv() {
                handled.push(handled_json(&h));
                for r in &h.records {
                    let Some(instance) = &r.instance else {
                        continue;
                    };
                    if r.kind == HOST_REPORT {
                        for m in r.reports.iter().filter(|m| m.status == OutcomeStatus::Up) {
                            let at = reported
                                .entry(m.member.to_string())
                                .or_default()
                                .entry(instance.clone())
                                .or_insert(u64::MAX);
                            *at = (*at).min(r.inbox_ms.unwrap_or(h.received_ms));
                        }
                    } else if r.kind == "EC2 Instance-launch Lifecycle Action" {
                        received.entry(instance.clone()).or_insert(h.received_ms);
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
                            commands
                                .entry(instance.clone())
                                .or_insert(c.commands.clone());
                        }
                    }
                }
            }
            let events = world.events()?;
            let calls = world.emulator.control("GET", "/moto-ext/calls", None)?;
            let lifecycle = world.lifecycle()?;
            for s in &mut f.samples {
                s.received_ms = received.get(&s.instance).copied();
                if let Some(ids) = commands.get(&s.instance) {
                    (s.send_ms, s.sent_ms, s.host_ms) = command_stages(ids, &events, &calls);
                }
                s.reported_ms = reported
                    .get(&s.instance)
                    .filter(|by_host| by_host.len() == hosts.len())
                    .and_then(|by_host| by_host.values().max().copied());
                s.completed_ms = lifecycle
                    .iter()
                    .find(|a| {
                        a["instance"] == s.instance.as_str()
                            && a["transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
                            && a["result"] == "CONTINUE"
                    })
                    .and_then(|a| a["time"].as_f64())
                    .map(|t| (t * 1000.0).round() as u64);
            }
            // Every command the hosts ran (`agent apply` and its shell): the emulator
            // reaped them all by now.
            let agents = (children_cpu_s(world.emulator.pid()) - commands_before).max(0.0);
            agent_runs = command_runs(&events);
            // The agent services do the joins and drains: their CPU during the cycles.
            let services = (services_cpu_s(&hosts) - services_before).max(0.0);
            reactor_cpu + agents + services
        }
        Control::Baseline { baseline, .. } => baseline.finish(),
    };
    let announced = world.announced()?;
    for s in &mut f.samples {
        s.event_ms = announced.get(&s.instance).copied();
        // On the last host, as the watches saw it by now: the member may have served
        // through one host before the other had it out of MAINT or UP.
        if let Some(ip) = fleet.instance(&s.instance).map(|i| i.ip) {
            let last = |f: fn(&harness::watch::Seen) -> Option<u64>| {
                watches
                    .iter()
                    .map(|w| w.get(&ip).as_ref().and_then(f))
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max())
            };
            s.ready_ms = last(|x| x.ready_ms);
            s.up_ms = last(|x| x.up_ms);
        }
    }
    if let Some(dir) = &args.trace {
        let trace = Trace {
            reactor: handled,
            agent_runs,
        };
        trace::write(dir, kind.name(), world, &f, trace)?;
    }
    drop(control);
    drop(watches);
    drop(fleet);
    drop(hosts);
    // Leave the emulator clean for the next approach (whose proxy fleet is a new group
    // of the same name).
    world.scale(&group, 0)?;
    if kind.ours() {
        world
            .block_on(
                world
                    .asg
                    .delete_auto_scaling_group()
                    .auto_scaling_group_name(PROXY_GROUP)
                    .force_delete(true)
                    .send(),
            )
            .context("DeleteAutoScalingGroup of the proxy fleet")?;
    }
    Ok(f)
}

enum Control {
    Ours {
        pump: Pump,
        reactor: ReactorRun,
        reports: mpsc::Receiver<demo::control::Handled>,
    },
    Baseline {
        _pump: Option<Pump>,
        baseline: Baseline,
    },
}

/// A baseline's control loop on its own thread and runtime; its CPU time (thread +
/// its `haproxy -c` children) comes back from [`Baseline::finish`].
struct Baseline {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<f64>>,
}

impl Baseline {
    fn start<F>(world: &Arc<World>, group: String, port: u16, body: F) -> Self
    where
        F: FnOnce(Arc<World>, String, u16, Arc<AtomicBool>) -> f64 + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let w = world.clone();
        let s = stop.clone();
        let thread = std::thread::spawn(move || body(w, group, port, s));
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(&mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The group's in-service members with addresses: id -> ip.
async fn serving_members(
    discovery: &AwsDiscovery,
    group: &str,
) -> Option<BTreeMap<String, String>> {
    let state = discovery.group(group).await.ok()??;
    Some(
        state
            .members
            .iter()
            .filter(|m| m.phase == Phase::Serving)
            .filter_map(|m| Some((m.id.to_string(), m.address?.to_string())))
            .collect(),
    )
}

/// `reload_per_change`: every event of the group -> describe -> static config -> check
/// -> master reload, on every host.
fn reload_loop(
    world: Arc<World>,
    group: String,
    port: u16,
    mut events: tmpsc::UnboundedReceiver<Delivery>,
    targets: Vec<(PathBuf, Client)>,
    stop: Arc<AtomicBool>,
) -> f64 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 0.0;
    };
    let discovery = AwsDiscovery::new(&world.sdk);
    let mut children_cpu = 0.0;
    let mut last: Option<BTreeMap<String, String>> = None;
    rt.block_on(async {
        while !stop.load(Ordering::Relaxed) {
            let got = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
            let Ok(Some(event)) = got else { continue };
            // Taken: the poller deletes it. Coalesce what is queued, as a template
            // tool's debounce would.
            event.answer(json!({"batchItemFailures": []}));
            while let Ok(more) = events.try_recv() {
                more.answer(json!({"batchItemFailures": []}));
            }
            let Some(members) = serving_members(&discovery, &group).await else {
                continue;
            };
            if last.as_ref() == Some(&members) {
                continue;
            }
            for (cfg, client) in &targets {
                match rewrite_and_reload(cfg, client, &members, port) {
                    Ok(cpu) => children_cpu += cpu,
                    Err(e) => eprintln!("reload_per_change: {e:#}"),
                }
            }
            last = Some(members);
        }
    });
    thread_cpu_s() + children_cpu
}

/// Rewrites the pool's servers as static lines, validates (`haproxy -c`) and reloads
/// through the master socket; the CPU seconds of the check.
fn rewrite_and_reload(
    cfg: &Path,
    client: &Client,
    members: &BTreeMap<String, String>,
    port: u16,
) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(cfg)?;
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
            // Servers go after the backend's other lines; HAProxy accepts them anywhere.
            for (id, ip) in members {
                out.push_str(&format!("    server {id} {ip}:{port} {SERVER_OPTIONS}\n"));
            }
        }
    }
    let tmp = cfg.with_extension("cfg.new");
    std::fs::write(&tmp, &out)?;
    let check = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(&tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let (code, cpu) = bench::wait_cpu(check);
    anyhow::ensure!(code == 0, "haproxy -c refused the rewritten config");
    std::fs::rename(&tmp, cfg)?;
    client
        .master("reload")
        .map_err(|e| anyhow::anyhow!("reload: {e}"))?;
    Ok(cpu)
}

/// `polling`: every `every`, describe the group and set the slots over the runtime
/// socket (one connection per command), new members straight to `ready`, removed ones
/// straight to `maint`.
fn polling_loop(
    world: Arc<World>,
    group: String,
    port: u16,
    clients: Vec<Client>,
    slots: u32,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> f64 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 0.0;
    };
    let discovery = AwsDiscovery::new(&world.sdk);
    // member -> slot, the same on every host.
    let mut assigned: BTreeMap<String, String> = BTreeMap::new();
    let mut next = Instant::now();
    rt.block_on(async {
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() < next {
                tokio::time::sleep(Duration::from_millis(50).min(next - Instant::now())).await;
                continue;
            }
            next += every;
            let Some(members) = serving_members(&discovery, &group).await else {
                continue;
            };
            let gone: Vec<String> = assigned
                .keys()
                .filter(|id| !members.contains_key(*id))
                .cloned()
                .collect();
            for id in gone {
                if let Some(slot) = assigned.remove(&id) {
                    for c in &clients {
                        let _ = c.query(&format!("set server {POOL}/{slot} state maint"));
                    }
                }
            }
            for (id, ip) in &members {
                if assigned.contains_key(id) {
                    continue;
                }
                let used: BTreeSet<&String> = assigned.values().collect();
                let Some(slot) = (1..=slots)
                    .map(|i| format!("slot{i}"))
                    .find(|s| !used.contains(s))
                else {
                    eprintln!("polling: no free slot for {id}");
                    continue;
                };
                for c in &clients {
                    let _ = c.query(&format!("set server {POOL}/{slot} addr {ip} port {port}"));
                    let _ = c.query(&format!("set server {POOL}/{slot} state ready"));
                }
                assigned.insert(id.clone(), slot);
            }
        }
    });
    thread_cpu_s()
}
