//! reactor-bench: what one event, and one batch of host reports, costs the reactor.
//!
//! Runs against the project's AWS emulator (`tests/emulator`, started on a free port):
//! a backend group of `--group-size` in-service members (default 100) with launch and
//! terminate hooks; the reactor's control path (its inbox queue, the lifecycle ledger
//! table, the proxies' role); and the proxy group's 2 instances, on which Run Command
//! runs the project's document and forwards it to stand-in proxies
//! ([`harness::standin`]: the agent's side without HAProxy). A stand-in answers at once,
//! as `agent apply` does, and reports each member's outcome to the inbox with its
//! instance's own session, as the agent service does: a join `up` 200 ms later, a drain
//! `drained` `--drain-s` seconds later (default 2, so drains are in progress when later
//! events come). The group scales out one instance at a time (`--events`, default 20):
//! each launch action goes to the reactor, then the batch of the two hosts' reports that
//! completes it; then it scales in one at a time, each terminate action handled while
//! the earlier drains run, and the inbox's batches of drain reports are handled until
//! every action is completed.
//!
//! Reports, as a table (and with `--json PATH` as JSON):
//! - invocation time per input, p50/p99: a launch action, a terminate action while
//!   drains run on the hosts (no invocation waits for a host), a batch of host reports
//!   (an SQS batch of up to 10 messages, as Lambda's event source mapping delivers it);
//! - event in -> change dispatched (discovery + planning + the ledger), p50/p99; the
//!   emulator's own latency per call is reported separately;
//! - the reactor's AWS calls (the call log's, by the reactor's own access key: not the
//!   stand-ins' reports) per lifecycle event and per batch of reports, by kind, and how
//!   many of a lifecycle event's are discovery (`DescribeAutoScalingGroups` +
//!   `DescribeInstances` before the dispatch; the proxy group is read with the others);
//! - the release binary's init time (process start -> first `next` request on a local
//!   Lambda Runtime API) and peak memory (VmHWM) after serving events;
//! - the Lambda zip size (`dist/reactor.zip` or cargo-lambda's zip if present,
//!   otherwise the release binary zipped as `bootstrap` here, labelled so).
//!
//! `--reactor PATH` names the release binary (default: `reactor` next to this program,
//! i.e. build it with `cargo build --release -p reactor -p bench`).
#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use harness::emulator::workspace_root;
use harness::pump::sqs_event;
use harness::runtime_api::{lambda_env, RuntimeApi};
use harness::standin::{Behaviour, StandIns};
use harness::world::ControlPath;
use harness::{GroupSpec, ReactorEnv, World};
use infra::aws::AwsDiscovery;
use infra::{Change, HostId};
use reactor::config::Config;
use reactor::dispatch::{DispatchError, Dispatcher, Sent, SsmDispatcher};
use reactor::dns::Route53Dns;
use reactor::handler::{Boundaries, Parts, Reactor};
use reactor::ledger::DynamoLedger;
use reactor::lifecycle::AwsLifecycle;
use reactor::remind::SqsReminders;
use reactor::summary::Summary;
use serde_json::{json, Value};

const GROUP: &str = "web-asg";
/// The reactor's access key: the call log names its calls by it.
const REACTOR_KEY: &str = "reactor-bench";
/// A stand-in's join takes this long (its health rise) before it reports `up`.
const RISE: Duration = Duration::from_millis(200);

struct Args {
    json: Option<PathBuf>,
    events: usize,
    group_size: i32,
    drain_s: f64,
    reactor: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        json: None,
        events: 20,
        group_size: 100,
        drain_s: 2.0,
        reactor: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--json" => a.json = Some(PathBuf::from(val()?)),
            "--events" => a.events = val()?.parse().context("--events")?,
            "--group-size" => a.group_size = val()?.parse().context("--group-size")?,
            "--drain-s" => a.drain_s = val()?.parse().context("--drain-s")?,
            "--reactor" => a.reactor = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                println!("usage: reactor-bench [--json PATH] [--events N] [--group-size N] [--drain-s SECONDS] [--reactor PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    if a.events == 0 || a.group_size < 1 || !a.drain_s.is_finite() || a.drain_s < 0.0 {
        bail!("--events and --group-size must be positive, --drain-s not negative");
    }
    Ok(a)
}

/// The SSM dispatcher, noting when a change was sent and the reactor's calls before.
struct Timed {
    inner: SsmDispatcher,
    world: Arc<World>,
    at: Mutex<Option<(Instant, Vec<String>)>>,
}

/// The reactor's AWS calls since the call log's last reset (its access key's).
fn reactor_calls(world: &World) -> Vec<String> {
    let log = world
        .emulator
        .control("GET", "/moto-ext/calls", None)
        .unwrap_or_default();
    log.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|c| c["key"] == REACTOR_KEY)
        .filter_map(|c| c["action"].as_str().map(str::to_string))
        .collect()
}

impl Dispatcher for Timed {
    async fn hosts(&self) -> Result<Vec<HostId>, DispatchError> {
        self.inner.hosts().await
    }

    async fn hosts_among(&self, in_service: Vec<String>) -> Result<Vec<HostId>, DispatchError> {
        self.inner.hosts_among(in_service).await
    }

    async fn send(
        &self,
        hosts: &[HostId],
        change: &Change,
        label: &str,
    ) -> Result<Vec<Sent>, DispatchError> {
        let now = Instant::now();
        let world = self.world.clone();
        let before = tokio::task::spawn_blocking(move || reactor_calls(&world))
            .await
            .unwrap_or_default();
        if let Ok(mut at) = self.at.lock() {
            *at = Some((now, before));
        }
        self.inner.send(hosts, change, label).await
    }
}

/// The reactor's boundaries here: AWS (the emulator), with the timed dispatcher.
struct OnBench;

impl Boundaries for OnBench {
    type Discovery = AwsDiscovery;
    type Dispatcher = Timed;
    type Lifecycle = AwsLifecycle;
    type Dns = Route53Dns;
    type Ledger = DynamoLedger;
    type Reminders = SqsReminders;
}

type Bench = Reactor<OnBench>;

/// The reactor's environment: the control path's, the pool, the timeouts.
fn env(path: &ControlPath) -> ReactorEnv {
    ReactorEnv::new(path)
        .pool(GROUP, "web", 8080)
        .timeouts(10, 10)
}

/// What the release binary's runs need of the world.
struct BenchWorld {
    w: Arc<World>,
    env: Vec<(String, String)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Lambda zip: an existing artefact, or the release binary zipped as `bootstrap`.
fn zip_size(binary: Option<&Path>, dir: &Path) -> (Option<u64>, String) {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for candidate in [
        root.join("dist/reactor.zip"),
        target.join("lambda/reactor/bootstrap.zip"),
    ] {
        if let Ok(m) = std::fs::metadata(&candidate) {
            return (Some(m.len()), format!("{}", candidate.display()));
        }
    }
    let Some(binary) = binary else {
        return (None, "no release binary to zip".into());
    };
    let out = dir.join("bootstrap.zip");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n    z.write(sys.argv[1], 'bootstrap')\n";
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(binary)
        .arg(&out)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    match std::fs::metadata(&out) {
        Ok(m) if ok => (
            Some(m.len()),
            format!(
                "{} zipped as bootstrap by reactor-bench (not a cargo-lambda build)",
                binary.display()
            ),
        ),
        _ => (None, "zipping the release binary failed".into()),
    }
}

struct BinaryFigures {
    init_ms: f64,
    peak_rss_kb: Option<u64>,
    answers: usize,
}

/// Runs the release binary through a local Runtime API: init time and peak memory.
async fn run_binary(w: &BenchWorld, binary: &Path, events: Vec<Value>) -> Result<BinaryFigures> {
    let n = events.len();
    let api = RuntimeApi::start(events, 60_000)?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .envs(lambda_env(api.addr))
        .envs(w.env.clone())
        .env("AWS_ENDPOINT_URL", w.w.emulator.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", REACTOR_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    let (log, api) = tokio::task::spawn_blocking(move || {
        let log = if n == 0 {
            // Only the init: wait for the first `next`.
            let until = Instant::now() + Duration::from_secs(30);
            while api.log().next_at.is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
            api.log()
        } else {
            api.wait_for(n, Duration::from_secs(120))
        };
        (log, api)
    })
    .await?;
    let peak = stack::usage::peak_rss_kb(pid);
    let _ = child.kill();
    let _ = child.wait();
    drop(api);
    let first = log
        .next_at
        .first()
        .context("the binary never asked for an event")?;
    Ok(BinaryFigures {
        init_ms: ms(first.duration_since(started)),
        peak_rss_kb: peak,
        answers: log.responses.len(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let tmp = std::env::temp_dir().join(format!("reactor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = run(&args, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The event the emulator emitted of `detail_type` about `instance`.
fn event_of(w: &World, detail_type: &str, instance: &str) -> Result<Value> {
    w.events_about(detail_type, instance)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no {detail_type} event for {instance}"))
}

/// Scales to `desired`; the instance that came or went.
async fn scale(w: &World, desired: i32) -> Result<String> {
    let before = w.members(GROUP).await?;
    w.scale(GROUP, desired).await?;
    let after = w.members(GROUP).await?;
    // The instance that came, or the one that went into the terminate hook now (those
    // of earlier terminations still wait there while they drain).
    after
        .iter()
        .find(|m| {
            let was = before.iter().find(|b| b.id == m.id);
            match was {
                None => true,
                Some(b) => m.state == "Terminating:Wait" && b.state != m.state,
            }
        })
        .map(|m| m.id.clone())
        .context("no instance came or went")
}

/// The batches of host reports handed to the reactor, and what they cost.
#[derive(Default)]
struct Batches {
    /// Invocation time of each, ms.
    ms: Vec<f64>,
    /// Messages in them.
    messages: usize,
    /// The reactor's AWS calls, by kind.
    kinds: BTreeMap<String, usize>,
    /// Inputs, by the reactor's kind (`host-report`, `recheck`...).
    inputs: BTreeMap<String, usize>,
    /// Member reports recorded in the ledger / that changed nothing.
    applied: usize,
    ignored: usize,
    /// Records given back, messages refused as forged, hosts dropped.
    failed: usize,
    forged: usize,
    dropped: usize,
}

impl Batches {
    fn calls(&self) -> usize {
        self.kinds.values().sum()
    }
}

/// Receives what the inbox has (up to 10 messages, waiting up to 1 s), hands it to the
/// reactor as one batch (timed, its AWS calls counted) and deletes what the answer does
/// not name, as the event source mapping does. The reactor's summary, if there was a
/// batch.
async fn one_batch(r: &Bench, w: &World, inbox: &str, b: &mut Batches) -> Result<Option<Summary>> {
    let messages = w.receive_records(inbox, 1)?;
    if messages.is_empty() {
        return Ok(None);
    }
    let event = sqs_event(inbox, &messages);
    w.emulator.control("POST", "/moto-ext/calls/reset", None)?;
    let t = Instant::now();
    let i = r.invoke(&event).await;
    b.ms.push(ms(t.elapsed()));
    for c in reactor_calls(w) {
        *b.kinds.entry(c).or_default() += 1;
    }
    let s = i.summary;
    b.messages += messages.len();
    for (k, n) in &s.inputs {
        *b.inputs.entry(k.clone()).or_default() += n;
    }
    b.applied += s.reports.applied;
    b.ignored += s.reports.ignored;
    b.forged += s.reports.forged;
    b.dropped += s.reports.hosts_dropped.len();
    b.failed += s.failed.len();
    let handles: Vec<String> = messages
        .iter()
        .filter(|m| !s.failed.contains(&m.id))
        .map(|m| m.handle.clone())
        .collect();
    w.delete(inbox, &handles)?;
    Ok(Some(s))
}

/// Lifecycle actions still pending in the emulator.
fn pending(w: &World) -> Result<usize> {
    Ok(w.lifecycle()?
        .iter()
        .filter(|a| a["result"].is_null())
        .count())
}

/// Handles the inbox's batches until no lifecycle action is pending (at most `within`).
async fn until_decided(
    r: &Bench,
    w: &World,
    inbox: &str,
    b: &mut Batches,
    within: Duration,
) -> Result<()> {
    let until = Instant::now() + within;
    while pending(w)? > 0 {
        if Instant::now() > until {
            bail!(
                "{} lifecycle action(s) still pending after {within:?}",
                pending(w)?
            );
        }
        one_batch(r, w, inbox, b).await?;
    }
    Ok(())
}

async fn run(args: &Args, tmp: &Path) -> Result<()> {
    let rig = Rig::start(args).await?;
    warm_up(&rig).await?;
    let mut desired = args.group_size;
    let launches = launch_phase(&rig, args.events, &mut desired).await?;
    let terminates = terminate_phase(&rig, args, &mut desired).await?;
    eprintln!("reactor-bench: the drains' reports");
    let mut drains = Batches::default();
    until_decided(
        &rig.r,
        &rig.w,
        &rig.path.inbox,
        &mut drains,
        Duration::from_secs(300),
    )
    .await?;
    let mut measured = Measured {
        launches,
        terminates,
        drains,
        reports_sent: rig.standins.messages_sent(),
        emulator_ms: Vec::new(),
    };
    measured.sort();
    measured.emulator_ms = emulator_latency(&rig.w).await?;
    let release = release_binary(args, &rig, &mut desired, tmp).await?;

    let all = AllBatches::of(&measured);
    let figures = figures(args, &rig, &measured, &all, &release);
    print_table(args, &figures, rig.proxies.len());
    print_by_kind(args, &measured, &all);
    print_notes(&release);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("reactor-bench: figures written to {}", path.display());
    }
    Ok(())
}

/// The world the bench runs in (the emulator with the backend group, the control path,
/// the proxy group and its stand-ins) and the reactor under test. Dropped in field
/// order: the reactor first, the world last.
struct Rig {
    r: Bench,
    /// The reactor's environment.
    env: ReactorEnv,
    standins: StandIns,
    /// The proxy group's instances.
    proxies: Vec<String>,
    path: ControlPath,
    w: Arc<World>,
}

impl Rig {
    /// Starts the emulator, the backend group, the control path, the proxy group with
    /// its stand-ins, and the reactor (with the timed dispatcher).
    async fn start(args: &Args) -> Result<Rig> {
        eprintln!(
            "reactor-bench: starting the emulator and a group of {}",
            args.group_size
        );
        let w = Arc::new(World::start(None).await?);
        let mut spec = GroupSpec::new(GROUP, &w.subnet).hooks(600);
        spec.max = args.group_size + i32::try_from(args.events).unwrap_or(1000) + 10;
        spec.desired = args.group_size;
        w.group(&spec).await?;
        // The initial members wait on the launch hook; the warm-up reconcile completes them.
        w.ssm_document(120).await?;
        // No event rule: the bench hands the lifecycle events to the reactor itself; the
        // inbox gets the stand-ins' reports (and the reactor's reminders).
        let path = w.control_path("bench", &[])?;
        let proxy_subnet = w.add_subnet("127.0.2.0/24").await?;
        let proxies = w.proxy_group(&proxy_subnet, 2).await?;
        let behaviour = Behaviour {
            rise: RISE,
            drain: Duration::from_secs_f64(args.drain_s),
            ..Behaviour::default()
        };
        let standins = StandIns::start(w.clone(), &path, &proxies, &behaviour)?;
        w.program_hosts(&standins.programs())?;
        let env = env(&path);
        let r = reactor(&w, &env).await?;
        Ok(Rig {
            r,
            env,
            standins,
            proxies,
            path,
            w,
        })
    }
}

/// The reactor on the emulator, as the reactor's access key, with the timed dispatcher.
async fn reactor(w: &Arc<World>, env: &ReactorEnv) -> Result<Bench> {
    let config = Config::from_lookup(|k| env.get(k))?;
    let sdk = w.emulator.sdk_as(REACTOR_KEY).await;
    let timed = Timed {
        inner: SsmDispatcher::new(config.ssm.clone(), &sdk),
        world: w.clone(),
        at: Mutex::new(None),
    };
    let ledger = DynamoLedger::new(&sdk, &config.ledger_table, config.ledger_ttl.as_secs());
    let reminders = SqsReminders::new(&sdk, &config.inbox_url);
    Ok(Reactor::new(
        config,
        Parts {
            discovery: AwsDiscovery::new(&sdk),
            dispatcher: timed,
            lifecycle: AwsLifecycle::new(&sdk),
            dns: None,
            ledger,
            reminders,
        },
    ))
}

/// The scheduled event (a reconcile).
fn scheduled_event() -> Value {
    json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}})
}

/// Warm up: every member onto the hosts, their launch actions completed from the hosts'
/// reports (not measured).
async fn warm_up(rig: &Rig) -> Result<()> {
    rig.r.handle(&scheduled_event()).await?;
    until_decided(
        &rig.r,
        &rig.w,
        &rig.path.inbox,
        &mut Batches::default(),
        Duration::from_secs(120),
    )
    .await
    .context("warm-up")
}

/// What the launch phase measured.
#[derive(Default)]
struct Launches {
    /// Invocation time of each launch action, ms.
    ms: Vec<f64>,
    /// Event in -> change dispatched, ms.
    to_dispatch: Vec<f64>,
    /// The reactor's AWS calls, by kind.
    kinds: BTreeMap<String, usize>,
    /// Of which discovery, the proxies' listing left out.
    discovery_calls: usize,
    /// Commands the changes were sent as.
    commands: usize,
    /// The batches of reports that complete a launch (the two hosts' `up`).
    batches: Batches,
}

/// What the terminate phase measured.
#[derive(Default)]
struct Terminates {
    /// Invocation time of each terminate action, ms.
    ms: Vec<f64>,
    /// The reactor's AWS calls, by kind.
    kinds: BTreeMap<String, usize>,
    /// Commands the changes were sent as.
    commands: usize,
}

/// Everything the two phases measured, and the emulator's own latency.
struct Measured {
    launches: Launches,
    terminates: Terminates,
    /// The batches of the drains' reports, which come while later events are handled.
    drains: Batches,
    /// Report messages the stand-ins sent.
    reports_sent: usize,
    /// The emulator's own latency per call, ms, sorted.
    emulator_ms: Vec<f64>,
}

impl Measured {
    /// Sorts the timings, for their percentiles.
    fn sort(&mut self) {
        for v in [
            &mut self.launches.to_dispatch,
            &mut self.launches.ms,
            &mut self.terminates.ms,
            &mut self.launches.batches.ms,
            &mut self.drains.ms,
        ] {
            v.sort_by(f64::total_cmp);
        }
    }
}

/// Scales out one instance at a time, `events` times: each launch action to the
/// reactor (timed, its calls counted), then the hosts' reports until one batch
/// completes it.
async fn launch_phase(rig: &Rig, events: usize, desired: &mut i32) -> Result<Launches> {
    let mut l = Launches::default();
    eprintln!("reactor-bench: {events} launch events");
    for _ in 0..events {
        *desired += 1;
        let id = scale(&rig.w, *desired).await?;
        let event = event_of(&rig.w, "EC2 Instance-launch Lifecycle Action", &id)?;
        rig.w
            .emulator
            .control("POST", "/moto-ext/calls/reset", None)?;
        let t0 = Instant::now();
        let summary = rig.r.handle(&event).await?;
        l.ms.push(ms(t0.elapsed()));
        l.commands += commands_of(&summary);
        let (at, before) = rig
            .r
            .dispatcher()
            .at
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .take()
            .context("the change was never dispatched")?;
        l.to_dispatch.push(ms(at.duration_since(t0)));
        l.discovery_calls += before
            .iter()
            .filter(|a| *a == "DescribeAutoScalingGroups" || *a == "DescribeInstances")
            .count();
        for c in reactor_calls(&rig.w) {
            *l.kinds.entry(c).or_default() += 1;
        }
        until_launched(rig, &id, &mut l.batches).await?;
    }
    Ok(l)
}

/// The commands a summary's changes were sent as.
fn commands_of(summary: &Summary) -> usize {
    summary
        .changes
        .iter()
        .map(|c| c.commands.len())
        .sum::<usize>()
}

/// The hosts' reports, batch by batch as they come, until one completes `id`'s launch.
async fn until_launched(rig: &Rig, id: &str, batches: &mut Batches) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > until {
            bail!("the launch of {id} was not completed from the hosts' reports within 30 s");
        }
        let done = one_batch(&rig.r, &rig.w, &rig.path.inbox, batches)
            .await?
            .is_some_and(|s| s.decision(id, "launch").is_some_and(|a| a.completed));
        if done {
            return Ok(());
        }
    }
}

/// Scales in one instance at a time, `--events` times, each terminate action handled
/// (timed, its calls counted) while the earlier drains run.
async fn terminate_phase(rig: &Rig, args: &Args, desired: &mut i32) -> Result<Terminates> {
    let mut t = Terminates::default();
    eprintln!(
        "reactor-bench: {} terminate events while drains run ({} s each)",
        args.events, args.drain_s
    );
    for _ in 0..args.events {
        *desired -= 1;
        let id = scale(&rig.w, *desired).await?;
        let event = event_of(&rig.w, "EC2 Instance-terminate Lifecycle Action", &id)?;
        rig.w
            .emulator
            .control("POST", "/moto-ext/calls/reset", None)?;
        let t0 = Instant::now();
        let summary = rig.r.handle(&event).await?;
        t.ms.push(ms(t0.elapsed()));
        for c in reactor_calls(&rig.w) {
            *t.kinds.entry(c).or_default() += 1;
        }
        t.commands += commands_of(&summary);
    }
    Ok(t)
}

/// The emulator's own latency, per call, ms, sorted.
async fn emulator_latency(w: &World) -> Result<Vec<f64>> {
    let mut emu = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        w.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await?;
        emu.push(ms(t.elapsed()));
    }
    emu.sort_by(f64::total_cmp);
    Ok(emu)
}

/// The release binary, its figures if there is one, and the Lambda zip's size.
struct Release {
    binary: Option<PathBuf>,
    figures: Option<BinaryFigures>,
    zip_bytes: Option<u64>,
    zip_source: String,
}

/// The release binary's figures (if there is one) and the Lambda zip's size. Scales
/// out one more instance for the binary's lifecycle event.
async fn release_binary(args: &Args, rig: &Rig, desired: &mut i32, tmp: &Path) -> Result<Release> {
    let binary = args.reactor.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("reactor")))
            .filter(|p| p.exists())
    });
    let bench = BenchWorld {
        w: rig.w.clone(),
        env: rig.env.vars(),
    };
    let figures = match &binary {
        Some(b) => Some(binary_figures(&bench, b, desired).await?),
        None => None,
    };
    let (zip_bytes, zip_source) = zip_size(binary.as_deref(), tmp);
    Ok(Release {
        binary,
        figures,
        zip_bytes,
        zip_source,
    })
}

/// Cold starts: the median of 5 (the machine may be busy), then one run serving a
/// reconcile and a lifecycle event for the peak memory.
async fn binary_figures(bench: &BenchWorld, b: &Path, desired: &mut i32) -> Result<BinaryFigures> {
    let mut inits = Vec::new();
    for _ in 0..5 {
        inits.push(run_binary(bench, b, Vec::new()).await?.init_ms);
    }
    inits.sort_by(f64::total_cmp);
    *desired += 1;
    let id = scale(&bench.w, *desired).await?;
    let ev = event_of(&bench.w, "EC2 Instance-launch Lifecycle Action", &id)?;
    let mut f = run_binary(bench, b, vec![scheduled_event(), ev]).await?;
    f.init_ms = percentile(&inits, 50.0);
    Ok(f)
}

/// The batches of host reports of both phases (the launches' and the drains'), together.
struct AllBatches {
    /// Invocation time of each, ms, sorted.
    ms: Vec<f64>,
    /// How many (at least 1, to divide by).
    count: f64,
    /// Messages in them (at least 1, to divide by).
    messages: f64,
    /// The reactor's AWS calls, by kind.
    kinds: BTreeMap<String, usize>,
    /// Inputs, by the reactor's kind.
    inputs: BTreeMap<String, usize>,
}

impl AllBatches {
    fn of(m: &Measured) -> AllBatches {
        let (launch, drain) = (&m.launches.batches, &m.drains);
        let mut ms: Vec<f64> = launch.ms.iter().chain(&drain.ms).copied().collect();
        ms.sort_by(f64::total_cmp);
        let mut kinds = launch.kinds.clone();
        for (k, v) in &drain.kinds {
            *kinds.entry(k.clone()).or_default() += v;
        }
        let mut inputs = launch.inputs.clone();
        for (k, v) in &drain.inputs {
            *inputs.entry(k.clone()).or_default() += v;
        }
        AllBatches {
            ms,
            count: (launch.ms.len() + drain.ms.len()).max(1) as f64,
            messages: (launch.messages + drain.messages).max(1) as f64,
            kinds,
            inputs,
        }
    }
}

/// Calls by kind, per input (`n` inputs).
fn per(kinds: &BTreeMap<String, usize>, n: f64) -> serde_json::Map<String, Value> {
    kinds
        .iter()
        .map(|(k, v)| (k.clone(), json!(*v as f64 / n)))
        .collect()
}

/// The invocation times' `p`th percentiles, by input.
fn invocation_ms(m: &Measured, all: &AllBatches, p: f64) -> Value {
    json!({
        "launch_action": percentile(&m.launches.ms, p),
        "terminate_action": percentile(&m.terminates.ms, p),
        "report_batch": percentile(&all.ms, p),
        "launch_report_batch": percentile(&m.launches.batches.ms, p),
        "drain_report_batch": percentile(&m.drains.ms, p),
    })
}

/// The figures, as the JSON `--json` writes.
fn figures(args: &Args, rig: &Rig, m: &Measured, all: &AllBatches, release: &Release) -> Value {
    let n = args.events as f64;
    let (l, t, d) = (&m.launches, &m.terminates, &m.drains);
    let batch_calls = (l.batches.calls() + d.calls()) as f64;
    let all_calls: usize = l.kinds.values().sum();
    json!({
        "invocation_ms_p50": invocation_ms(m, all, 50.0),
        "invocation_ms_p99": invocation_ms(m, all, 99.0),
        "event_to_dispatch_ms_p50": percentile(&l.to_dispatch, 50.0),
        "event_to_dispatch_ms_p99": percentile(&l.to_dispatch, 99.0),
        "discovery_calls_per_lifecycle_event": l.discovery_calls as f64 / n,
        "aws_calls_per_lifecycle_event": all_calls as f64 / n,
        "aws_calls_per_terminate_event": t.kinds.values().sum::<usize>() as f64 / n,
        "aws_calls_per_report_batch": batch_calls / all.count,
        "aws_calls_per_report_message": batch_calls / all.messages,
        "aws_calls_per_launch_report_batch": l.batches.calls() as f64 / l.batches.ms.len().max(1) as f64,
        "aws_calls_per_drain_report_batch": d.calls() as f64 / d.ms.len().max(1) as f64,
        "messages_per_report_batch": all.messages / all.count,
        "init_ms": release.figures.as_ref().map(|b| b.init_ms),
        "peak_rss_kb": release.figures.as_ref().and_then(|b| b.peak_rss_kb),
        "zip_bytes": release.zip_bytes,
        "emulator_call_ms_p50": percentile(&m.emulator_ms, 50.0),
        "aws_calls_per_lifecycle_event_by_kind": per(&l.kinds, n),
        "aws_calls_per_terminate_event_by_kind": per(&t.kinds, n),
        "aws_calls_per_report_batch_by_kind": per(&all.kinds, all.count),
        "report_batch_inputs": all.inputs,
        "report_batches": all.count as usize,
        "report_messages": all.messages as usize,
        "report_messages_sent": m.reports_sent,
        "member_reports_applied": l.batches.applied + d.applied,
        "member_reports_ignored": l.batches.ignored + d.ignored,
        "records_failed": l.batches.failed + d.failed,
        "forged": l.batches.forged + d.forged,
        "hosts_dropped": l.batches.dropped + d.dropped,
        "commands": l.commands + t.commands,
        "group_size": args.group_size,
        "events": args.events,
        "drain_s": args.drain_s,
        "rise_ms": RISE.as_millis() as u64,
        "proxy_hosts": rig.proxies.len(),
        "zip_source": release.zip_source,
        "binary": release.binary.as_ref().map(|b| b.display().to_string()),
    })
}

/// A figure with one decimal, or `n/a`.
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(v) => format!("{v:.1}"),
        None => "n/a".to_string(),
    }
}

/// An invocation time's `p50 / p99`.
fn pair(figures: &Value, a: &str, b: &str) -> String {
    format!(
        "{} / {}",
        num(&figures["invocation_ms_p50"][a]),
        num(&figures["invocation_ms_p99"][b])
    )
}

/// A row of the table: the figure, its value, the target or a note.
type Row = (&'static str, String, String);

/// The table's rows of invocation and dispatch times.
fn time_rows(f: &Value) -> Vec<Row> {
    vec![
        (
            "invocation: launch action p50 / p99 (ms)",
            pair(f, "launch_action", "launch_action"),
            "returns after sending".to_string(),
        ),
        (
            "invocation: terminate action, drains running (ms)",
            pair(f, "terminate_action", "terminate_action"),
            "p99 < 2000 whatever the drain".to_string(),
        ),
        (
            "invocation: batch of host reports p50 / p99 (ms)",
            pair(f, "report_batch", "report_batch"),
            "records the reports, completes what they decide".to_string(),
        ),
        (
            "  of which completing a launch (ms)",
            pair(f, "launch_report_batch", "launch_report_batch"),
            String::new(),
        ),
        (
            "  of which drains' reports (ms)",
            pair(f, "drain_report_batch", "drain_report_batch"),
            String::new(),
        ),
        (
            "event -> change dispatched p50 (ms)",
            num(&f["event_to_dispatch_ms_p50"]),
            "discovery + planning + ledger, emulator calls included".to_string(),
        ),
        (
            "event -> change dispatched p99 (ms)",
            num(&f["event_to_dispatch_ms_p99"]),
            String::new(),
        ),
        (
            "emulator latency per call p50 (ms)",
            num(&f["emulator_call_ms_p50"]),
            "reported separately".to_string(),
        ),
    ]
}

/// The table's rows of AWS calls.
fn call_rows(f: &Value) -> Vec<Row> {
    vec![
        (
            "discovery calls per lifecycle event",
            num(&f["discovery_calls_per_lifecycle_event"]),
            "<= 2".to_string(),
        ),
        (
            "AWS calls per launch event",
            num(&f["aws_calls_per_lifecycle_event"]),
            String::new(),
        ),
        (
            "AWS calls per terminate event",
            num(&f["aws_calls_per_terminate_event"]),
            String::new(),
        ),
        (
            "AWS calls per batch of host reports",
            num(&f["aws_calls_per_report_batch"]),
            format!(
                "{} messages per batch; no per-host read",
                num(&f["messages_per_report_batch"])
            ),
        ),
        (
            "AWS calls per host report message",
            num(&f["aws_calls_per_report_message"]),
            String::new(),
        ),
    ]
}

/// The table's rows of the release binary and the zip.
fn release_rows(f: &Value) -> Vec<Row> {
    vec![
        (
            "release init to first `next` (ms)",
            num(&f["init_ms"]),
            "< 50".to_string(),
        ),
        (
            "release peak RSS (kB, VmHWM)",
            num(&f["peak_rss_kb"]),
            String::new(),
        ),
        (
            "Lambda zip (bytes)",
            num(&f["zip_bytes"]),
            format!("< 10 MB; {}", f["zip_source"].as_str().unwrap_or_default()),
        ),
    ]
}

/// Prints the headline and the table of figures.
fn print_table(args: &Args, figures: &Value, proxy_hosts: usize) {
    println!(
        "reactor-bench: group of {} members, {} launch and {} terminate events, {} batches of host reports ({} messages), {} proxy hosts (Run Command emulated, stand-ins reporting {} ms after a join, {} s after a drain)",
        args.group_size,
        args.events,
        args.events,
        figures["report_batches"],
        figures["report_messages"],
        proxy_hosts,
        RISE.as_millis(),
        args.drain_s
    );
    println!("{:<48} {:>12}  target / note", "figure", "value");
    let rows = time_rows(figures)
        .into_iter()
        .chain(call_rows(figures))
        .chain(release_rows(figures));
    for (name, value, note) in rows {
        println!("{name:<48} {value:>12}  {note}");
    }
}

/// Prints the AWS calls per input, by kind.
fn print_by_kind(args: &Args, m: &Measured, all: &AllBatches) {
    let n = args.events as f64;
    for (title, kinds, n) in [
        ("AWS calls per launch event, by kind:", &m.launches.kinds, n),
        (
            "AWS calls per terminate event, by kind:",
            &m.terminates.kinds,
            n,
        ),
        (
            "AWS calls per batch of host reports, by kind:",
            &all.kinds,
            all.count,
        ),
    ] {
        println!("{title}");
        for (k, v) in kinds {
            println!("  {k:<46} {:>12.2}", *v as f64 / n);
        }
    }
}

/// Notes about the release binary: none found, or not every event answered.
fn print_notes(release: &Release) {
    if release.binary.is_none() {
        println!("note: no release reactor binary found; build it with `cargo build --release -p reactor` or pass --reactor PATH");
    }
    if let Some(b) = &release.figures {
        if b.answers < 2 {
            println!(
                "note: the release binary answered {} of 2 events",
                b.answers
            );
        }
    }
}
