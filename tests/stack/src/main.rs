//! `demo`: the whole loop on this machine. The AWS emulator stands in for AWS, local
//! HTTP servers play a backend group's instances, the proxy group's two instances are
//! real HAProxy hosts with their agents, and the reactor (the Lambda's code) takes its
//! inbox: the groups' lifecycle events from EventBridge and the hosts' reports, through
//! SQS, in batches as Lambda's event source mapping delivers them. It sends each change
//! to the hosts with Run Command and completes the lifecycle actions from the hosts'
//! reports, kept in its ledger (DynamoDB). A scripted scenario runs under live HTTP
//! load: scale out, scale in, churn that forces slot growth, an agent service killed
//! while it drains, restarted by its supervisor, resuming the drain and reporting it.
//! Ends with a summary and a picture of the run (an HTML page in the run directory,
//! [`stack::page`]); exit code 0 only if no request failed, no lifecycle action was left
//! pending and no process was left running.
#![recursion_limit = "256"]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use harness::fleet::Fleet;
use harness::process::{alive, processes_matching};
use harness::pump::Pump;
use harness::world::{autoscaling_pattern, Blocking, DOCUMENT, PROXY_GROUP};
use harness::{free_port, unix_ms, GroupSpec, Host, Load, LoadStats};
use reactor::input::lifecycle::{LAUNCH_DETAIL_TYPE, TERMINATE_DETAIL_TYPE};
use reactor::summary::Summary;
use stack::control::{
    reactor_config, Handled, ReactorRun, Record, DOCUMENT_TIMEOUT_S, HOST_REPORT, RECHECK,
};
use stack::plane::{ControlPlane, PlaneSpec};
use stack::recorder::Recorder;
use stack::{install_signal_handlers, percentile, proxy_spec, say, say_at, stopping, until};

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
    /// Keep the whole run directory (logs, configs); without it only the run's page
    /// (page.html) is kept there.
    #[arg(long)]
    keep: bool,
}

/// The run's picture, in the run directory.
const PAGE: &str = "page.html";

/// Everything running; dropped in field order (the recorder and the load first, the
/// emulator last).
struct Stack {
    recorder: Recorder,
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
    /// Member reports the hosts sent (in every report message).
    member_reports: u64,
    /// Of which the reactor recorded in its ledger.
    applied: u64,
    /// Hosts dropped from an action's quorum.
    dropped: u64,
    /// Report messages refused as forged.
    forged: u64,
    /// Invocations of the reactor.
    invocations: u64,
}

impl Stack {
    fn requests(&self) -> (u64, u64) {
        // Load only exposes completed requests while running; failures come at stop.
        (self.loads.iter().map(Load::completed).sum(), 0)
    }

    /// Prints what the reactor did since the last call: one line per invocation that
    /// did something (a batch of host reports that changed nothing is not printed).
    fn drain_reports(&self, t: &mut Tally) {
        while let Ok(h) = self.reports.try_recv() {
            t.invocations += 1;
            self.mark_records(&h, t);
            let (req, _) = self.requests();
            let what = describe(&h.records);
            match &h.result {
                Err(e) => {
                    say_at!(h.at_s, "reactor  {what}: FAILED after {} ms: {e}", h.ms);
                    t.errors.push(format!("{what}: {e}"));
                }
                Ok(s) => {
                    t.add_summary(s, &what);
                    if let Some(line) = summary_line(&h.records, s, &what) {
                        say_at!(h.at_s, "{line} [{} ms] | requests so far {req}", h.ms);
                    }
                }
            }
        }
    }

    /// Counts an invocation's inputs, and marks its lifecycle hooks and hosts' reports
    /// on the timeline.
    fn mark_records(&self, h: &Handled, t: &mut Tally) {
        for r in &h.records {
            *t.events.entry(r.kind.clone()).or_default() += 1;
            let inst = r.instance.as_deref().unwrap_or("");
            let mark = match r.kind.as_str() {
                LAUNCH_DETAIL_TYPE => Some(("launch-hook", format!("launch hook {inst}"))),
                TERMINATE_DETAIL_TYPE => Some(("terminate-hook", format!("terminate hook {inst}"))),
                HOST_REPORT => {
                    t.member_reports += r.reports.len() as u64;
                    let what: Vec<String> = r
                        .reports
                        .iter()
                        .map(|m| format!("{} {}", m.member, m.status))
                        .collect();
                    Some(("report", format!("{inst} reported {}", what.join(", "))))
                }
                _ => None,
            };
            if let Some((kind, label)) = mark {
                self.recorder.mark(h.at_s, kind, label);
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

    /// Scales the group without waiting for it to converge.
    fn scale_to(&self, _t: &mut Tally, desired: usize, what: &str) -> anyhow::Result<()> {
        let before = self.world.members(GROUP)?.len();
        let (req, _) = self.requests();
        say!("scenario {what}: {before} -> {desired} instances | requests {req}");
        self.requested(desired, what);
        self.fleet
            .requested_ms
            .store(unix_ms(), std::sync::atomic::Ordering::SeqCst);
        self.world.scale(GROUP, i32::try_from(desired)?)?;
        Ok(())
    }

    /// Records a scale request on the timeline.
    fn requested(&self, desired: usize, what: &str) {
        self.recorder.desired(desired as u64);
        self.recorder
            .mark(stack::elapsed_s(), "scale", format!("{what}: -> {desired}"));
    }

    /// Scales the group and waits (at most 90 s) for it to converge.
    fn scale(&self, t: &mut Tally, desired: usize, what: &str, served: bool) -> anyhow::Result<()> {
        self.scale_to(t, desired, what)?;
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

fn short_kind(kind: &str) -> &str {
    match kind {
        HOST_REPORT => "host report",
        RECHECK => "recheck reminder",
        "Scheduled Event" => "reconcile",
        "EC2 Instance-launch Lifecycle Action" => "launch hook",
        "EC2 Instance-terminate Lifecycle Action" => "terminate hook",
        "EC2 Instance Launch Successful" => "launch done",
        "EC2 Instance Terminate Successful" => "terminate done",
        "EC2 Instance Launch Unsuccessful" => "launch failed",
        other => other,
    }
}

/// What an invocation was given, in a few words: `launch hook i-0abc`, `2 host reports
/// (i-1, i-2)`, `reconcile`, or a batch's parts joined by `+`.
fn describe(records: &[Record]) -> String {
    let mut hosts: Vec<&str> = records
        .iter()
        .filter(|r| r.kind == HOST_REPORT)
        .filter_map(|r| r.instance.as_deref())
        .collect();
    let messages = hosts.len();
    hosts.sort_unstable();
    hosts.dedup();
    let mut parts: Vec<String> = records
        .iter()
        .filter(|r| r.kind != HOST_REPORT)
        .map(|r| match &r.instance {
            Some(i) => format!("{} {i}", short_kind(&r.kind)),
            None => short_kind(&r.kind).to_string(),
        })
        .collect();
    match messages {
        0 => {}
        1 => parts.push(format!("host report ({})", hosts.join(", "))),
        n => parts.push(format!("{n} host reports ({})", hosts.join(", "))),
    }
    parts.join(" + ")
}

impl Tally {
    /// Counts what the reactor's summary of an invocation (`what`) decided and recorded.
    fn add_summary(&mut self, s: &Summary, what: &str) {
        for a in &s.actions {
            *self
                .decisions
                .entry((a.transition.clone(), a.decision.clone(), a.completed))
                .or_default() += 1;
        }
        self.applied += s.reports.applied as u64;
        self.dropped += s.reports.hosts_dropped.len() as u64;
        self.forged += s.reports.forged as u64;
        if !s.failed.is_empty() {
            self.errors.push(format!(
                "{what}: {} record(s) given back to the inbox",
                s.failed.len()
            ));
        }
    }
}

/// The line an invocation (`what`, given `records`) is printed as, without its time and
/// the requests so far; none for a batch of host reports that changed nothing.
fn summary_line(records: &[Record], s: &Summary, what: &str) -> Option<String> {
    let reports_only = records.iter().all(|r| r.kind == HOST_REPORT);
    let quiet = s.actions.is_empty()
        && s.changes.is_empty()
        && s.reports.hosts_dropped.is_empty()
        && s.reports.forged == 0
        && s.failed.is_empty();
    if reports_only && quiet {
        return None;
    }
    let mut line = format!("reactor  {what:<37}");
    if reports_only {
        line.push_str(&format!(
            " {} member report(s) applied, {} changed nothing",
            s.reports.applied, s.reports.ignored
        ));
    }
    line.push_str(&changes_text(s, reports_only));
    line.push_str(&decisions_text(s));
    Some(line.trim_end_matches(';').to_string())
}

/// The changes an invocation sent, each with its `;`; or, when it sent none (and was not
/// only host reports), why: what it ignored, or that the hosts were in step.
fn changes_text(s: &Summary, reports_only: bool) -> String {
    let mut text = String::new();
    for c in &s.changes {
        let adds: usize = c.change.pools.iter().map(|p| p.add.len()).sum();
        let removes: usize = c.change.pools.iter().map(|p| p.remove.len()).sum();
        let verb = if c.label == "(reconcile)" {
            "full membership sent"
        } else {
            "change sent"
        };
        text.push_str(&format!(
            " {verb} +{adds}/-{removes} to {} host(s), generation {} ({} command(s));",
            c.hosts,
            c.generation,
            c.commands.len()
        ));
    }
    if s.changes.is_empty() && !reports_only {
        if !s.ignored.is_empty() && s.actions.is_empty() {
            let why = s.ignored.join("; ");
            let why = match why.char_indices().nth(100) {
                Some((i, _)) => format!("{}...", &why[..i]),
                None => why,
            };
            text.push_str(&format!(" ignored ({why})"));
        } else {
            text.push_str(" in step");
        }
    }
    text
}

/// An invocation's decisions (one mention per kind, with the count), heartbeats, hosts
/// dropped, forged messages and records to retry, each with its `;`.
fn decisions_text(s: &Summary) -> String {
    let mut text = String::new();
    let mut kinds: BTreeMap<(String, String, bool), usize> = BTreeMap::new();
    for a in &s.actions {
        *kinds
            .entry((a.transition.clone(), a.decision.clone(), a.completed))
            .or_default() += 1;
    }
    for ((transition, decision, completed), n) in kinds {
        let what = match (decision.as_str(), completed) {
            ("WAIT", _) => "waits for the hosts' reports",
            (_, true) => "completed",
            (_, false) => "(no longer pending)",
        };
        let label = if decision == "WAIT" {
            String::new()
        } else {
            format!(" {decision}")
        };
        text.push_str(&format!(" {n} {transition}{label} {what};"));
    }
    if !s.heartbeats.is_empty() {
        text.push_str(&format!(" {} heartbeat(s);", s.heartbeats.len()));
    }
    for d in &s.reports.hosts_dropped {
        text.push_str(&format!(" host dropped from the quorum: {d};"));
    }
    if s.reports.forged > 0 {
        text.push_str(&format!(" {} forged message(s) refused;", s.reports.forged));
    }
    if !s.failed.is_empty() {
        text.push_str(&format!(" {} record(s) to retry;", s.failed.len()));
    }
    text
}

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handlers();
    stack::elapsed_s();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (dir, tag) = stack::run_dir("haproxy-asg-demo-")?;
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
    } else if dir.path().join(PAGE).exists() {
        // The page outlives the run; the logs and configs do not.
        let kept = dir.keep();
        if let Ok(entries) = std::fs::read_dir(&kept) {
            for e in entries.flatten() {
                if e.file_name() != PAGE {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
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
    let mut stack = start_stack(args, dir, tag, moto_pid)?;
    let mut t = Tally::default();
    let initial = start_load(&mut stack, &mut t, args)?;
    for (n, what) in steps(args) {
        if stopping() {
            break;
        }
        stack.scale(&mut t, n, what, true)?;
    }
    let mut checks_ok = true;
    if !stopping() {
        checks_ok &= fault(&stack, &mut t)?;
    }
    // A last reconcile-free look: every host holds exactly the group's members.
    stack.drain_reports(&mut t);
    let members: BTreeSet<String> = stack
        .world
        .members(GROUP)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    checks_ok &= hosts_hold(&stack, &members)?;
    let f = Figures::collect(&mut stack, &mut t, &initial)?;
    print_summary(&stack, &t, &f);
    let page = write_page(args, dir, &stack, &t, &f);
    print_stats(&t, &f, members.len(), &page, checks_ok);
    let _ = std::io::stdout().flush();
    drop(stack);
    Ok(checks_ok
        && f.failed == 0
        && f.pending.is_empty()
        && t.errors.is_empty()
        && !f.latencies.is_empty())
}

/// Starts the emulator (its pid in `moto_pid`), the group with its control path, the
/// proxy group's HAProxy hosts, the fleet playing the instances, the recorder and the
/// reactor with its inbox's pollers.
fn start_stack(
    args: &Args,
    dir: &Path,
    tag: &str,
    moto_pid: &mut Option<u32>,
) -> anyhow::Result<Stack> {
    let world = start_emulator(dir, moto_pid)?;
    let port = backend_group(&world)?;
    let ControlPlane { path, hosts } = control_plane(&world, port, args.slots)?;
    let fleet = Fleet::start(
        world.world.clone(),
        &world.subnet,
        port,
        tag,
        Duration::from_millis(100),
        Duration::from_secs(1800),
    );
    let recorder = Recorder::start(
        world.world.clone(),
        &world.subnet,
        POOL,
        hosts.iter().map(|h| (h.name.clone(), h.client())).collect(),
        Duration::from_millis(500),
        Duration::from_secs(1800),
    );
    recorder.desired(0);
    let (report_tx, reports) = mpsc::channel();
    let reactor = ReactorRun::start(
        &world,
        reactor_config(&path, GROUP, POOL, port)?,
        Some(Duration::from_secs(args.reconcile_s.max(1))),
        report_tx,
    )?;
    let pump = reactor.pump(
        &world.world,
        &path,
        stack::control::POLLERS,
        Duration::from_secs(1800),
    );
    say!(
        "setup    reactor in-process (the Lambda's code: SSM to the proxy fleet, the ledger in DynamoDB), fed by the inbox as Lambda's event source mapping feeds it ({} pollers, batches of up to 10), reconcile every {} s",
        stack::control::POLLERS,
        args.reconcile_s
    );
    Ok(Stack {
        recorder,
        loads: Vec::new(),
        pump,
        reactor,
        fleet,
        hosts,
        world,
        reports,
    })
}

/// Starts the AWS emulator, its log in `dir`; its pid in `moto_pid`.
fn start_emulator(dir: &Path, moto_pid: &mut Option<u32>) -> anyhow::Result<Blocking> {
    say!("setup    starting the AWS emulator (moto + the project's extension)");
    let world = Blocking::start(Some(&dir.join("emulator.log")))?;
    *moto_pid = world.emulator.pid();
    println!("CHILD_PID {}", moto_pid.unwrap_or(0));
    say!(
        "setup    emulator on {}; VPC 127.0.0.0/16",
        world.emulator.url()
    );
    Ok(world)
}

/// The backend group (with lifecycle hooks, its pool on a free port): its port.
fn backend_group(world: &Blocking) -> anyhow::Result<u16> {
    let port = free_port();
    let subnet = world.subnet.clone();
    world.group(&GroupSpec::new(GROUP, &subnet).hooks(120).pool(POOL, port))?;
    say!("setup    group {GROUP} (launch + terminate lifecycle hooks), subnet 127.0.1.0/24, pool {POOL} port {port}");
    Ok(port)
}

/// The control plane ([`ControlPlane`]): the SSM document, the reactor's control path
/// and the proxy group's two instances, one HAProxy host each with `slots` slots.
fn control_plane(world: &Blocking, port: u16, slots: u32) -> anyhow::Result<ControlPlane> {
    let spec = PlaneSpec {
        name: "demo".into(),
        rules: vec![autoscaling_pattern(&[GROUP, PROXY_GROUP])],
        document_timeout_s: DOCUMENT_TIMEOUT_S,
        proxy_subnet: "127.0.2.0/24".into(),
        proxies: (0..2)
            .map(|_| proxy_spec(POOL, port, slots, Some(GROUP)))
            .collect(),
        zones: Vec::new(),
    };
    let plane = world.block_on(ControlPlane::start(world, spec))?;
    say!("setup    SSM document {DOCUMENT} (Terraform's template); the reactor's inbox demo-inbox (SQS), fed by an EventBridge rule (the groups' Auto Scaling events) and by the proxies' reports; its ledger demo-ledger (DynamoDB); the proxies' role demo-proxy");
    for h in &plane.hosts {
        say!(
            "setup    HAProxy host {}: frontend {} , {} slots, dir {}",
            h.name,
            h.frontend(POOL),
            slots,
            h.dir().display()
        );
    }
    say!(
        "setup    proxy group {PROXY_GROUP}: instances {} (subnet 127.0.2.0/24, tag {}={}), one HAProxy host each, named after it; Run Command runs the document there with the host's agent, whose service reports to the inbox with the instance's own session",
        plane.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
        harness::world::PROXY_TAG.0,
        harness::world::PROXY_TAG.1
    );
    Ok(plane)
}

/// Scales to the initial capacity, then starts the HTTP load on every frontend: the
/// initial members (latency counts the launches made under load, not these).
fn start_load(stack: &mut Stack, t: &mut Tally, args: &Args) -> anyhow::Result<BTreeSet<String>> {
    stack.scale(t, 2, "initial capacity", false)?;
    let initial: BTreeSet<String> = stack
        .world
        .members(GROUP)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    for h in &stack.hosts {
        let load = Load::start(
            h.frontend(POOL),
            args.workers,
            Duration::from_secs(1800),
            u64::MAX,
        );
        stack.recorder.add_load(load.counter());
        stack.loads.push(load);
    }
    say!(
        "load     {} workers on each of the {} frontends",
        args.workers,
        stack.hosts.len()
    );
    Ok(initial)
}

/// The scenario's steps under load: (desired instances, what).
fn steps(args: &Args) -> Vec<(usize, &'static str)> {
    if args.quick {
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
    }
}

/// Whether every host holds exactly the group's `members` (each one that does not is
/// printed; not a failure once the demo is stopping).
fn hosts_hold(stack: &Stack, members: &BTreeSet<String>) -> anyhow::Result<bool> {
    let mut ok = true;
    for h in &stack.hosts {
        let got: BTreeSet<String> = h.assignments()?.into_keys().collect();
        if &got != members && !stopping() {
            say!(
                "check    {} holds {:?}, the group has {:?}",
                h.name,
                got,
                members
            );
            ok = false;
        }
    }
    Ok(ok)
}

/// The run's figures, once the load stopped.
struct Figures {
    /// Each load's counts.
    stats: Vec<LoadStats>,
    requests: u64,
    failed: u64,
    /// The reactor's CPU time, s.
    reactor_cpu: f64,
    /// Completed lifecycle actions: (transition, `RESULT by WHO`) -> count.
    actions: BTreeMap<(String, String), u64>,
    /// Lifecycle actions still pending: `transition instance`.
    pending: Vec<String>,
    /// Event-to-serving of the launches under load, ms.
    latencies: Vec<u64>,
    /// Reloads by host.
    reloads: Vec<(String, u64)>,
    /// Inputs handled: events, host reports, reminders.
    events: u64,
    host_reports: u64,
    reminders: u64,
}

impl Figures {
    /// Stops the loads, the recorder, the pump and the reactor, and reads the figures
    /// (`initial`: the members before the load).
    fn collect(
        stack: &mut Stack,
        t: &mut Tally,
        initial: &BTreeSet<String>,
    ) -> anyhow::Result<Figures> {
        let loads = std::mem::take(&mut stack.loads);
        let stats: Vec<_> = loads.into_iter().map(Load::stop).collect();
        let requests: u64 = stats.iter().map(|s| s.requests).sum();
        let failed: u64 = stats.iter().map(|s| s.failed).sum();
        // The last look, with the loads' final counts.
        stack.recorder.finish();
        stack.pump.stop();
        let reactor_cpu = stack.reactor.finish();
        stack.drain_reports(t);
        let (actions, pending) = lifecycle_actions(&stack.world.lifecycle()?);
        let latencies = latencies(stack, initial);
        let mut reloads = Vec::new();
        for h in &stack.hosts {
            reloads.push((h.name.clone(), h.reloads().unwrap_or(0)));
        }
        let host_reports = t.events.get(HOST_REPORT).copied().unwrap_or(0);
        let reminders = t.events.get(RECHECK).copied().unwrap_or(0);
        let events: u64 = t.events.values().sum::<u64>() - host_reports - reminders;
        Ok(Figures {
            stats,
            requests,
            failed,
            reactor_cpu,
            actions,
            pending,
            latencies,
            reloads,
            events,
            host_reports,
            reminders,
        })
    }

    /// Lifecycle actions completed.
    fn completed(&self) -> u64 {
        self.actions.values().sum::<u64>()
    }

    /// The reloads, as `host n, host n`.
    fn reload_text(&self) -> String {
        let reload_text: Vec<String> = self
            .reloads
            .iter()
            .map(|(h, n)| format!("{h} {n}"))
            .collect();
        reload_text.join(", ")
    }
}

/// The emulator's lifecycle actions: the completed ones counted by (transition,
/// `RESULT by WHO`), and the pending ones as `transition instance`.
fn lifecycle_actions(
    lifecycle: &[serde_json::Value],
) -> (BTreeMap<(String, String), u64>, Vec<String>) {
    let mut actions: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut pending = Vec::new();
    for a in lifecycle {
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
    (actions, pending)
}

/// Event-to-serving of each instance launched under load (not in `initial`): Auto
/// Scaling's event about it -> the first request it served through HAProxy, ms.
fn latencies(stack: &Stack, initial: &BTreeSet<String>) -> Vec<u64> {
    let instances = stack.fleet.instances();
    let announced = match stack.world.announced() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("warning: could not read the emulator's events: {e:#}");
            BTreeMap::new()
        }
    };
    instances
        .iter()
        .filter(|i| !initial.contains(&i.id))
        .filter_map(|i| Some(i.first_ms?.saturating_sub(*announced.get(&i.id)?)))
        .collect()
}

/// Prints the summary.
fn print_summary(stack: &Stack, t: &Tally, f: &Figures) {
    println!();
    println!("==================== summary ====================");
    let (events, host_reports, reminders) = (f.events, f.host_reports, f.reminders);
    println!(
        "inputs handled         {} ({events} events, {host_reports} host reports, {reminders} reminders) in {} invocations",
        events + host_reports + reminders,
        t.invocations
    );
    for (k, n) in &t.events {
        println!("  {n:>5}  {k}");
    }
    println!(
        "host reports           {host_reports} messages, {} member reports, {} applied to the ledger, {} hosts dropped from a quorum, {} forged",
        t.member_reports, t.applied, t.dropped, t.forged
    );
    println!(
        "lifecycle actions      {} completed, {} pending",
        f.completed(),
        f.pending.len()
    );
    for ((tr, r), n) in &f.actions {
        println!("  {n:>5}  {tr} {r}");
    }
    for p in &f.pending {
        println!("  PENDING {p}");
    }
    let latencies = &f.latencies;
    println!(
        "event-to-serving       {} launches: p50 {} ms, p99 {} ms, max {} ms (Auto Scaling's event about the instance -> first request it served through HAProxy, health-check rise included)",
        latencies.len(),
        percentile(latencies, 50.0),
        percentile(latencies, 99.0),
        latencies.iter().max().copied().unwrap_or(0)
    );
    let (requests, failed) = (f.requests, f.failed);
    println!(
        "requests               {requests} sent, {} served, {failed} failed",
        requests - failed
    );
    for s in &f.stats {
        for e in s.errors.iter().take(5) {
            println!("  error: {e}");
        }
    }
    println!(
        "reloads                {} (slot growth only)",
        f.reload_text()
    );
    println!("reactor CPU            {:.2} s", f.reactor_cpu);
    if !t.errors.is_empty() {
        println!("reactor errors         {}", t.errors.len());
    }
    if !stack.fleet.errors().is_empty() {
        println!("fleet errors           {:?}", stack.fleet.errors());
    }
}

/// Writes the run's page in `dir` (printing where, or a warning); its path.
fn write_page(args: &Args, dir: &Path, stack: &Stack, t: &Tally, f: &Figures) -> PathBuf {
    let page = dir.join(PAGE);
    let picture = stack.recorder.recorded().page(
        "haproxy-asg demo",
        &format!(
            "Auto Scaling group {GROUP} behind two HAProxy hosts (pool {POOL}, {} initial slots each), under HTTP load; {}",
            args.slots,
            if args.quick { "--quick scenario" } else { "full scenario" }
        ),
        page_facts(t, f),
    );
    match picture.write(&page) {
        Ok(()) => println!("page                   {}", page.display()),
        Err(e) => eprintln!(
            "warning: cannot write the run's page {}: {e}",
            page.display()
        ),
    }
    page
}

/// The facts the run's page shows beside its picture.
fn page_facts(t: &Tally, f: &Figures) -> Vec<(String, String)> {
    vec![
        (
            "requests".to_string(),
            format!("{} sent, {} failed", f.requests, f.failed),
        ),
        (
            "reloads".into(),
            format!("{} (slot growth only)", f.reload_text()),
        ),
        (
            "lifecycle actions".into(),
            format!("{} completed, {} pending", f.completed(), f.pending.len()),
        ),
        (
            "event-to-serving".into(),
            format!(
                "{} launches: p50 {} ms, p99 {} ms",
                f.latencies.len(),
                percentile(&f.latencies, 50.0),
                percentile(&f.latencies, 99.0)
            ),
        ),
        (
            "inputs handled".into(),
            format!(
                "{} events, {} host reports ({} member reports, {} applied), in {} invocations",
                f.events, f.host_reports, t.member_reports, t.applied, t.invocations
            ),
        ),
    ]
}

/// Prints the `STATS` line (JSON) the tests read; `members`: the group's final size.
fn print_stats(t: &Tally, f: &Figures, members: usize, page: &Path, checks_ok: bool) {
    let hooks = |kind: &str| t.events.get(kind).copied().unwrap_or(0);
    let reloads = &f.reloads;
    println!(
        "STATS {}",
        serde_json::json!({
            "events": f.events, "host_reports": f.host_reports, "reminders": f.reminders, "member_reports": t.member_reports,
            "reports_applied": t.applied, "hosts_dropped": t.dropped, "forged_reports": t.forged,
            "invocations": t.invocations, "requests": f.requests, "failed_requests": f.failed,
            "lifecycle_completed": f.completed(), "lifecycle_pending": f.pending.len(),
            "reloads": reloads.iter().map(|r| r.1).sum::<u64>(),
            "reloads_by_host": reloads.iter().map(|(h, n)| (h.clone(), *n)).collect::<BTreeMap<_, _>>(),
            "event_to_serving_ms_p50": percentile(&f.latencies, 50.0),
            "event_to_serving_ms_p99": percentile(&f.latencies, 99.0),
            "launch_hooks": hooks(LAUNCH_DETAIL_TYPE), "terminate_hooks": hooks(TERMINATE_DETAIL_TYPE),
            "final_members": members,
            "page": page.display().to_string(),
            "checks_ok": checks_ok,
        })
    );
}

/// The injected fault: the second host's agent service is SIGKILLed while it drains a
/// leaving member that still has requests in flight. Its supervisor starts it again (as
/// systemd's `Restart=on-failure` does), the service resumes the drain with what was left
/// of its timeout, the in-flight requests complete, and the restarted service reports
/// the member drained: that report completes the terminate action.
fn fault(stack: &Stack, t: &mut Tally) -> anyhow::Result<bool> {
    let host = &stack.hosts[1];
    let members = stack.world.members(GROUP)?;
    let n = members.len();
    let Some(leaving) = members.first().map(|m| m.id.clone()) else {
        anyhow::bail!("the group has no member to scale in");
    };
    let slow = slow_requests(host, &leaving, n);
    stack.scale_to(t, n - 1, "scale in under slow requests")?;
    let restarted = kill_while_draining(stack, host, &leaving)?;
    let mut served = 0;
    for s in slow {
        if matches!(s.join(), Ok(Ok(r)) if r.status == 200) {
            served += 1;
        }
    }
    say!("fault    {served}/{n} slow requests completed with 200");
    // The restarted service reports the drain it resumed: that completes the action.
    stack.converge(t, n - 1, false, Duration::from_secs(60))?;
    let done = stack
        .world
        .actions_of(&leaving, "terminate")?
        .iter()
        .any(|a| a["result"] == "CONTINUE");
    say!(
        "repair   {leaving}'s terminate action {}",
        if done {
            "completed CONTINUE"
        } else {
            "NOT completed"
        }
    );
    Ok(restarted && served == n && done)
}

/// A slow request (6 s) in flight.
type SlowRequest = std::thread::JoinHandle<std::io::Result<harness::http::Response>>;

/// One slow request per member (`n` of them) through `host` (round robin spreads them);
/// waits (a while) until `leaving` holds one.
fn slow_requests(host: &Host, leaving: &str, n: usize) -> Vec<SlowRequest> {
    let fe = host.frontend(POOL);
    let slow: Vec<SlowRequest> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                harness::http::get(fe, "/slow?ms=6000", Duration::from_secs(30))
            })
        })
        .collect();
    let busy = until(Duration::from_secs(10), || {
        host.status().ok().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["member"] == leaving && r["sessions"].as_u64().unwrap_or(0) > 0)
        })
    });
    say!(
        "fault    {} slow requests (6 s) in flight through {}; {leaving} holds {}",
        n,
        host.name,
        if busy { "one of them" } else { "none yet" }
    );
    slow
}

/// SIGKILLs `host`'s agent service once `leaving` drains there (or after a while), and
/// waits for its supervisor to restart it: whether it did.
fn kill_while_draining(stack: &Stack, host: &Host, leaving: &str) -> anyhow::Result<bool> {
    let draining = until(Duration::from_secs(10), || {
        host.status().ok().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["member"] == leaving && r["stage"] == "draining")
        })
    });
    let killed = host.kill_service();
    stack.recorder.mark(
        stack::elapsed_s(),
        "fault",
        format!("{}'s agent service SIGKILLed", host.name),
    );
    say!(
        "fault    {}'s agent service (pid {}) SIGKILLed while {leaving} {}",
        host.name,
        killed.map_or_else(|| "?".into(), |p| p.to_string()),
        if draining {
            "drains"
        } else {
            "was about to drain"
        }
    );
    let restarted = until(Duration::from_secs(10), || host.service_restarts() >= 1);
    host.wait_service(Duration::from_secs(10))?;
    let ops = host.operations().unwrap_or_default();
    let resumed = ops.iter().find(|o| o["member"] == leaving);
    say!(
        "repair   the supervisor restarted it ({}); {}",
        if restarted {
            "after ~1 s"
        } else {
            "NOT restarted"
        },
        match resumed {
            Some(o) => format!(
                "it resumed draining {leaving}: {} session(s) left, {:.1} s of its deadline left",
                o["sessions"],
                o["deadline_in_s"].as_f64().unwrap_or(0.0)
            ),
            None => "the drain had already ended".into(),
        }
    );
    Ok(restarted)
}
