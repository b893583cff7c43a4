//! `demo`: the whole loop on this machine. The AWS emulator stands in for AWS, local
//! HTTP servers play a backend group's instances, two real HAProxy hosts with their
//! agents sit in front, and the reactor (the Lambda's code) gets the group's lifecycle
//! events from EventBridge through SQS. A scripted scenario runs under live HTTP load:
//! scale out, scale in, churn that forces slot growth, an agent killed mid-apply and
//! repaired by `agent sync`. Ends with a summary; exit code 0 only if no request failed,
//! no lifecycle action was left pending and no process was left running.
#![recursion_limit = "256"]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use demo::control::{reactor_config, Handled, ReactorRun};
use demo::{install_signal_handlers, percentile, proxy_host, say, say_at, stopping, until};
use harness::fleet::Fleet;
use harness::process::{alive, bin_path, processes_matching};
use harness::pump::Pump;
use harness::world::Blocking;
use harness::{free_port, unix_ms, GroupSpec, Host, Load, World};

const GROUP: &str = "demo-web";
const POOL: &str = "web";

/// The embedded demo: HAProxy kept in step with an Auto Scaling group, end to end, on
/// this machine (AWS emulated, instances played by local HTTP servers).
#[derive(Parser, Debug)]
#[command(name = "demo", version, max_term_width = 100)]
struct Args {
    /// Run a shortened scenario (a few cycles), as the tests do.
    #[arg(long)]
    quick: bool,
    /// Initial slots per HAProxy host; the churn goes beyond it, forcing slot growth.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Seconds between reconciles (the scheduled event).
    #[arg(long, default_value_t = 10)]
    reconcile_s: u64,
    /// HTTP load workers per HAProxy frontend.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Keep the run directory (logs, configs) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// Everything running; dropped in field order (load first, emulator last).
struct Stack {
    loads: Vec<Load>,
    pump: Pump,
    reactor: ReactorRun,
    fleet: Fleet,
    hosts: Vec<Host>,
    world: Blocking,
    reports: mpsc::Receiver<Handled>,
}

#[derive(Default)]
struct Tally {
    events: BTreeMap<String, u64>,
    /// (transition, decision, completed) -> count, from the reactor's summaries.
    decisions: BTreeMap<(String, String, bool), u64>,
    errors: Vec<String>,
    last_state: String,
}

impl Stack {
    fn requests(&self) -> (u64, u64) {
        // Load only exposes completed requests while running; failures come at stop.
        (self.loads.iter().map(Load::completed).sum(), 0)
    }

    /// Prints what the reactor did since the last call.
    fn drain_reports(&self, t: &mut Tally) {
        while let Ok(h) = self.reports.try_recv() {
            *t.events.entry(h.detail_type.clone()).or_default() += 1;
            let (req, _) = self.requests();
            let inst = h.instance.as_deref().unwrap_or("");
            match &h.result {
                Err(e) => {
                    say_at!(
                        h.at_s,
                        "reactor  {} {inst}: FAILED after {} ms: {e}",
                        h.detail_type,
                        h.ms
                    );
                    t.errors.push(format!("{} {inst}: {e}", h.detail_type));
                }
                Ok(s) => {
                    for a in &s.actions {
                        *t.decisions
                            .entry((a.transition.clone(), a.decision.clone(), a.completed))
                            .or_default() += 1;
                    }
                    let reconcile = h.detail_type == "Scheduled Event";
                    let what = if reconcile {
                        "reconcile".to_string()
                    } else {
                        short_kind(&h.detail_type).to_string()
                    };
                    let hosts_ok = s.hosts.iter().filter(|x| x.ok).count();
                    let mut line = format!("reactor  {what:<17} {inst:<20}");
                    if let Some(c) = &s.change {
                        let adds: usize = c.pools.iter().map(|p| p.add.len()).sum();
                        let removes: usize = c.pools.iter().map(|p| p.remove.len()).sum();
                        let verb = if reconcile {
                            "full membership re-sent"
                        } else {
                            "change"
                        };
                        line.push_str(&format!(
                            " {verb} +{adds}/-{removes} -> {hosts_ok}/{} hosts ok",
                            s.hosts.len()
                        ));
                    } else if let Some(i) = &s.ignored {
                        line.push_str(&format!(" ignored ({i})"));
                    } else {
                        line.push_str(" in step");
                    }
                    for a in &s.actions {
                        line.push_str(&format!(
                            "; lifecycle {} {} {}",
                            a.transition,
                            a.decision,
                            if a.completed {
                                "completed"
                            } else {
                                "(not pending)"
                            }
                        ));
                    }
                    line.push_str(&format!(" [{} ms] | requests so far {req}", h.ms));
                    say_at!(h.at_s, "{line}");
                }
            }
        }
    }

    /// Waits until the group has exactly `desired` InService instances, each serving
    /// through HAProxy, and no backend of a departed instance runs.
    /// `served`: also require each member to have served a request through HAProxy
    /// (while the load runs), else only that it is UP on every host.
    fn converge(
        &self,
        t: &mut Tally,
        desired: usize,
        served: bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut err = None;
        let ok = until(timeout, || {
            self.drain_reports(t);
            let members = match self.world.members(GROUP) {
                Ok(m) => m,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &members {
                *by_state.entry(m.state.as_str()).or_default() += 1;
            }
            let state = by_state
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ");
            if state != t.last_state {
                say!(
                    "group    {GROUP}: {}",
                    if state.is_empty() {
                        "no instances".to_string()
                    } else {
                        state.clone()
                    }
                );
                t.last_state = state;
            }
            let ids: BTreeSet<String> = members.iter().map(|m| m.id.clone()).collect();
            let running: BTreeSet<String> = self.fleet.running().into_iter().collect();
            members.len() == desired
                && members.iter().all(|m| m.state == "InService")
                && ids == running
                && if served {
                    members.iter().all(|m| {
                        self.fleet
                            .instance(&m.id)
                            .is_some_and(|i| i.first_ms.is_some())
                    })
                } else {
                    self.hosts.iter().all(|h| up_on(h, &ids))
                }
        });
        self.drain_reports(t);
        if let Some(e) = err {
            return Err(e);
        }
        anyhow::ensure!(
            ok || stopping(),
            "the group did not converge to {desired} serving instances within {timeout:?}"
        );
        Ok(())
    }

    fn scale(&self, t: &mut Tally, desired: usize, what: &str, served: bool) -> anyhow::Result<()> {
        let before = self.world.members(GROUP)?.len();
        let (req, _) = self.requests();
        say!("scenario {what}: {before} -> {desired} instances | requests {req}");
        self.fleet
            .requested_ms
            .store(unix_ms(), std::sync::atomic::Ordering::SeqCst);
        self.world.scale(GROUP, i32::try_from(desired)?)?;
        self.converge(t, desired, served, Duration::from_secs(90))
    }
}

/// Whether every member of `ids` is UP on `host` (by `agent status`).
fn up_on(host: &Host, ids: &BTreeSet<String>) -> bool {
    let Ok(rows) = host.status() else {
        return false;
    };
    ids.iter().all(|id| {
        rows.iter().any(|r| {
            r["member"].as_str() == Some(id)
                && r["status"].as_str().is_some_and(|s| s.starts_with("UP"))
        })
    })
}

fn short_kind(detail_type: &str) -> &str {
    match detail_type {
        "EC2 Instance-launch Lifecycle Action" => "launch hook",
        "EC2 Instance-terminate Lifecycle Action" => "terminate hook",
        "EC2 Instance Launch Successful" => "launch done",
        "EC2 Instance Terminate Successful" => "terminate done",
        "EC2 Instance Launch Unsuccessful" => "launch failed",
        other => other,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handlers();
    demo::elapsed_s();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (dir, tag) = demo::run_dir("haproxy-asg-demo-")?;
    println!("RUN_DIR {}", dir.path().display());
    let mut moto_pid = None;
    let result = scenario(args, dir.path(), &tag, &mut moto_pid);
    // Everything of the scenario is dropped (stopped) by now.
    let left = until(Duration::from_secs(5), || {
        processes_matching(&tag).is_empty() && !moto_pid.is_some_and(alive)
    });
    let mut left_over: Vec<String> = processes_matching(&tag)
        .into_iter()
        .map(|(pid, cmd)| format!("{pid} {cmd}"))
        .collect();
    if let Some(p) = moto_pid.filter(|p| alive(*p)) {
        left_over.push(format!("{p} (emulator)"));
    }
    if left && left_over.is_empty() {
        say!("cleanup  every process stopped (emulator, HAProxy, agents, backends)");
    } else {
        say!("cleanup  processes left running: {left_over:?}");
    }
    if args.keep {
        let kept = dir.keep();
        println!("run directory kept: {}", kept.display());
    }
    let ok = match result {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("demo: {e:#}");
            false
        }
    };
    if stopping() {
        println!("RESULT interrupted");
        return Ok(ExitCode::from(130));
    }
    let pass = ok && left_over.is_empty();
    println!("RESULT {}", if pass { "ok" } else { "FAILED" });
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs the scenario; `Ok(true)` when every check passed.
fn scenario(
    args: &Args,
    dir: &Path,
    tag: &str,
    moto_pid: &mut Option<u32>,
) -> anyhow::Result<bool> {
    say!("setup    starting the AWS emulator (moto + the project's extension)");
    let world = Blocking::start(Some(&dir.join("emulator.log")))?;
    *moto_pid = world.emulator.pid();
    println!("CHILD_PID {}", moto_pid.unwrap_or(0));
    // The agents the reactor runs inherit the process's environment: point it at the
    // emulator (before any thread of ours reads the environment).
    for (k, v) in world.emulator.aws_env() {
        std::env::set_var(k, v);
    }
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");
    say!(
        "setup    emulator on {}; VPC 127.0.0.0/16",
        world.emulator.url()
    );
    let port = free_port();
    let subnet = world.subnet.clone();
    world.group(&GroupSpec::new(GROUP, &subnet).hooks(120).pool(POOL, port))?;
    let queue = world.event_queue(
        "demo-events",
        &serde_json::json!({"source": ["aws.autoscaling"], "detail": {"AutoScalingGroupName": [GROUP]}}),
    )?;
    say!("setup    group {GROUP} (launch + terminate lifecycle hooks), subnet 127.0.1.0/24, pool {POOL} port {port}");
    say!("setup    EventBridge rule (source aws.autoscaling) -> SQS queue demo-events");
    let mut hosts = Vec::new();
    for i in 1..=2 {
        let h = proxy_host(&format!("proxy-{i}"), POOL, args.slots, GROUP)?;
        say!(
            "setup    HAProxy host proxy-{i}: frontend {} , {} slots, dir {}",
            h.frontend(POOL),
            args.slots,
            h.dir().display()
        );
        hosts.push(h);
    }
    let agent = bin_path("agent")?;
    let agents: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                agent.display().to_string(),
                "--config".into(),
                h.config.display().to_string(),
            ]
        })
        .collect();
    let fleet = Fleet::start(
        world.world.clone(),
        &subnet,
        port,
        tag,
        Duration::from_millis(100),
        Duration::from_secs(1800),
    );
    let (report_tx, reports) = mpsc::channel();
    let reactor = ReactorRun::start(
        &world,
        reactor_config(GROUP, POOL, port, &agents)?,
        Some(Duration::from_secs(args.reconcile_s.max(1))),
        report_tx,
    )?;
    let pump = Pump::start(
        world.world.clone(),
        queue,
        reactor.sender(),
        Duration::from_secs(1800),
    );
    say!(
        "setup    reactor in-process (local dispatcher over both hosts), reconcile every {} s",
        args.reconcile_s
    );
    let mut stack = Stack {
        loads: Vec::new(),
        pump,
        reactor,
        fleet,
        hosts,
        world,
        reports,
    };
    let mut t = Tally::default();

    stack.scale(&mut t, 2, "initial capacity", false)?;
    // Latency counts the launches made under load, not the initial ones.
    let initial: BTreeSet<String> = stack
        .world
        .members(GROUP)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    for h in &stack.hosts {
        stack.loads.push(Load::start(
            h.frontend(POOL),
            args.workers,
            Duration::from_secs(1800),
            u64::MAX,
        ));
    }
    say!(
        "load     {} workers on each of the {} frontends",
        args.workers,
        stack.hosts.len()
    );
    let steps: Vec<(usize, &str)> = if args.quick {
        vec![
            (3, "scale out"),
            (2, "scale in"),
            (args.slots as usize + 2, "churn (beyond the slots)"),
            (2, "churn back"),
        ]
    } else {
        vec![
            (4, "scale out"),
            (2, "scale in"),
            (args.slots as usize + 3, "churn burst (beyond the slots)"),
            (3, "churn"),
            (6, "churn"),
            (2, "churn back"),
            (4, "scale out"),
            (3, "scale in"),
        ]
    };
    for (n, what) in steps {
        if stopping() {
            break;
        }
        stack.scale(&mut t, n, what, true)?;
    }
    let mut checks_ok = true;
    if !stopping() {
        checks_ok &= fault(&stack, &mut t, dir, port)?;
    }
    // A last reconcile-free look: every host holds exactly the group's members.
    stack.drain_reports(&mut t);
    let members: BTreeSet<String> = stack
        .world
        .members(GROUP)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    for h in &stack.hosts {
        let got: BTreeSet<String> = h.assignments()?.into_keys().collect();
        if got != members && !stopping() {
            say!(
                "check    {} holds {:?}, the group has {:?}",
                h.name,
                got,
                members
            );
            checks_ok = false;
        }
    }

    // Figures.
    let loads = std::mem::take(&mut stack.loads);
    let stats: Vec<_> = loads.into_iter().map(Load::stop).collect();
    let requests: u64 = stats.iter().map(|s| s.requests).sum();
    let failed: u64 = stats.iter().map(|s| s.failed).sum();
    stack.pump.stop();
    let reactor_cpu = stack.reactor.finish();
    stack.drain_reports(&mut t);
    let lifecycle = stack.world.lifecycle()?;
    let mut actions: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut pending = Vec::new();
    for a in &lifecycle {
        let transition = a["transition"]
            .as_str()
            .unwrap_or("?")
            .replace("autoscaling:EC2_INSTANCE_", "")
            .to_lowercase();
        match a["result"].as_str() {
            Some(r) => {
                *actions
                    .entry((
                        transition,
                        format!("{r} by {}", a["by"].as_str().unwrap_or("?")),
                    ))
                    .or_default() += 1
            }
            None => pending.push(format!(
                "{} {}",
                transition,
                a["instance"].as_str().unwrap_or("?")
            )),
        }
    }
    let instances = stack.fleet.instances();
    let announced = match stack.world.announced() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("warning: could not read the emulator's events: {e:#}");
            BTreeMap::new()
        }
    };
    let latencies: Vec<u64> = instances
        .iter()
        .filter(|i| !initial.contains(&i.id))
        .filter_map(|i| Some(i.first_ms?.saturating_sub(*announced.get(&i.id)?)))
        .collect();
    let mut reloads = Vec::new();
    for h in &stack.hosts {
        reloads.push((h.name.clone(), h.reloads().unwrap_or(0)));
    }
    println!();
    println!("==================== summary ====================");
    let events: u64 = t.events.values().sum();
    println!("events handled         {events}");
    for (k, n) in &t.events {
        println!("  {n:>5}  {k}");
    }
    println!(
        "lifecycle actions      {} completed, {} pending",
        actions.values().sum::<u64>(),
        pending.len()
    );
    for ((tr, r), n) in &actions {
        println!("  {n:>5}  {tr} {r}");
    }
    for p in &pending {
        println!("  PENDING {p}");
    }
    println!(
        "event-to-serving       {} launches: p50 {} ms, p99 {} ms, max {} ms (Auto Scaling's event about the instance -> first request it served through HAProxy, health-check rise included)",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.iter().max().copied().unwrap_or(0)
    );
    println!(
        "requests               {requests} sent, {} served, {failed} failed",
        requests - failed
    );
    for s in &stats {
        for e in s.errors.iter().take(5) {
            println!("  error: {e}");
        }
    }
    let reload_text: Vec<String> = reloads.iter().map(|(h, n)| format!("{h} {n}")).collect();
    println!(
        "reloads                {} (slot growth only)",
        reload_text.join(", ")
    );
    println!("reactor CPU            {reactor_cpu:.2} s");
    if !t.errors.is_empty() {
        println!("reactor errors         {}", t.errors.len());
    }
    if !stack.fleet.errors().is_empty() {
        println!("fleet errors           {:?}", stack.fleet.errors());
    }
    println!(
        "STATS {}",
        serde_json::json!({
            "events": events, "requests": requests, "failed_requests": failed,
            "lifecycle_completed": actions.values().sum::<u64>(), "lifecycle_pending": pending.len(),
            "reloads": reloads.iter().map(|r| r.1).sum::<u64>(),
            "event_to_serving_ms_p50": percentile(&latencies, 50.0),
            "event_to_serving_ms_p99": percentile(&latencies, 99.0),
            "checks_ok": checks_ok,
        })
    );
    let _ = std::io::stdout().flush();
    drop(stack);
    Ok(checks_ok
        && failed == 0
        && pending.is_empty()
        && t.errors.is_empty()
        && !latencies.is_empty())
}

/// The injected fault: an `agent apply` on the second host is killed while it waits
/// for health checks; `agent sync` then repairs the host from AWS's truth.
fn fault(stack: &Stack, t: &mut Tally, dir: &Path, port: u16) -> anyhow::Result<bool> {
    let host = &stack.hosts[1];
    let ghost = "i-0fa11ed0000000001";
    let ghost_ip = "127.0.9.9";
    let change = format!(
        r#"{{"version":1,"generation":{},"pools":[{{"pool":"{POOL}","add":[{{"id":"{ghost}","address":"{ghost_ip}","port":{port}}}],"remove":[]}}]}}"#,
        unix_ms()
    );
    say!("fault    {}: `agent apply` adds {ghost} ({ghost_ip}, never boots); it will be killed while waiting for health checks", host.name);
    let mut child = Command::new(bin_path("agent")?)
        .arg("--config")
        .arg(&host.config)
        .args(["apply", "--json", "--change", &change])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting agent apply")?;
    let client = host.client();
    let reached = until(Duration::from_secs(10), || {
        client.stats().ok().is_some_and(|rows| {
            rows.iter().any(|r| {
                r.addr.starts_with(&format!("{ghost_ip}:")) && !r.status.starts_with("MAINT")
            })
        })
    });
    match child.try_wait()? {
        Some(status) => say!(
            "fault    the agent finished before it could be killed ({status}); the repair below still runs | requests {}",
            stack.requests().0
        ),
        None => {
            let _ = child.kill();
            let status = child.wait()?;
            say!(
                "fault    agent killed mid-apply ({status}; its slot change had {}reached the socket) | requests {}",
                if reached { "" } else { "not " },
                stack.requests().0
            );
        }
    }
    let listed = host
        .assignments()
        .map(|a| a.contains_key(ghost))
        .unwrap_or(false);
    say!("fault    {} now holds {ghost}: {listed}", host.name);
    stack.drain_reports(t);
    // Repair: `agent sync` reads the group from AWS (the standard AWS environment and
    // agent.toml's [aws] groups). Older agents need --desired; build it from the group.
    let run = host.agent(&["sync", "--json"], None)?;
    let run = if run.code != 0 && run.stderr.contains("--desired") {
        say!("repair   this agent cannot read AWS itself yet; syncing with --desired built from the group");
        let desired = stack
            .world
            .block_on(desired_from_group(&stack.world, port))?;
        let file: PathBuf = dir.join("desired.json");
        std::fs::write(&file, desired.to_json())?;
        host.agent(
            &["sync", "--json", "--desired", &file.display().to_string()],
            None,
        )?
    } else {
        say!("repair   `agent sync` read the group from AWS");
        run
    };
    for line in run.stdout.lines().chain(run.stderr.lines()).take(12) {
        say!("repair   | {line}");
    }
    let members: BTreeSet<String> = stack
        .world
        .members(GROUP)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    let held: BTreeSet<String> = host.assignments()?.into_keys().collect();
    let ok = run.code == 0 && held == members;
    say!(
        "repair   agent sync exit {}; {} holds {} members, the group has {}: {}",
        run.code,
        host.name,
        held.len(),
        members.len(),
        if ok { "repaired" } else { "NOT repaired" }
    );
    Ok(ok)
}

/// The group's desired state, as `agent sync` without `--desired` would read it.
async fn desired_from_group(world: &World, port: u16) -> anyhow::Result<infra::Desired> {
    let pool = infra::Pool {
        name: infra::PoolName::new(POOL)?,
        port: infra::Port::new(i64::from(port))?,
        server_options: infra::ServerOptions::default(),
    };
    let groups = BTreeMap::from([(GROUP.to_string(), vec![pool])]);
    let discovery = infra::aws::AwsDiscovery::new(&world.sdk);
    Ok(
        infra::aws::desired_from_discovery(&discovery, &groups, &infra::aws::Generations::new())
            .await?,
    )
}
