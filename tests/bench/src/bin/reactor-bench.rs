//! reactor-bench: what one event costs the reactor.
//!
//! Runs against the project's AWS emulator (`tests/emulator`, started on a free port):
//! a backend group of `--group-size` in-service members (default 100) with launch and
//! terminate hooks, and 2 proxy hosts on which Run Command runs the project's document
//! (`fake_host.py` playing the agent, `--drain-s` seconds per command, default 2, so
//! drains are in progress when later events come). The group scales out one instance at
//! a time (`--events`, default 20), then in one at a time; every lifecycle event, and
//! every command's status event, goes through the reactor.
//!
//! Reports, as a table (and with `--json PATH` as JSON):
//! - invocation time per event kind, p50/p99: a launch action, a terminate action while
//!   drains run on the hosts, a command's status event (no invocation waits for a host);
//! - event in -> change dispatched (discovery + planning), p50/p99; the emulator's own
//!   latency per call is reported separately;
//! - AWS calls per lifecycle event, by kind (from `/moto-ext/calls`), and how many of
//!   them are discovery (`DescribeAutoScalingGroups` + `DescribeInstances` before the
//!   dispatch); AWS calls per status event;
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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use harness::emulator::{venv_python, workspace_root};
use harness::runtime_api::{lambda_env, RuntimeApi};
use harness::world::{commands_pattern, DocumentHost, DOCUMENT, PROXY_TAG};
use harness::{GroupSpec, World};
use infra::aws::AwsDiscovery;
use infra::Change;
use reactor::config::Config;
use reactor::context::Context as Completion;
use reactor::dispatch::{CommandInfo, DispatchError, Dispatcher, HostResult, Sent, SsmDispatcher};
use reactor::dns::Route53Dns;
use reactor::lifecycle::AwsLifecycle;
use reactor::reactor::Reactor;
use serde_json::{json, Value};

const GROUP: &str = "web-asg";
const POOLS: &str = r#"{"web-asg":[{"name":"web","port":8080}]}"#;

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

/// The SSM dispatcher, noting when a change was sent and the calls made before.
struct Timed {
    inner: SsmDispatcher,
    world: std::sync::Arc<World>,
    at: Mutex<Option<(Instant, Vec<String>)>>,
}

fn call_actions(world: &World) -> Vec<String> {
    world
        .emulator
        .calls()
        .unwrap_or_default()
        .into_iter()
        .map(|(_, action)| action)
        .collect()
}

impl Dispatcher for Timed {
    async fn hosts(&self, group: &str) -> Result<Vec<String>, DispatchError> {
        self.inner.hosts(group).await
    }

    async fn send(
        &self,
        hosts: &[String],
        change: &Change,
        context: &Completion,
        group: &str,
    ) -> Result<Vec<Sent>, DispatchError> {
        let now = Instant::now();
        let world = self.world.clone();
        let before = tokio::task::spawn_blocking(move || call_actions(&world))
            .await
            .unwrap_or_default();
        if let Ok(mut at) = self.at.lock() {
            *at = Some((now, before));
        }
        self.inner.send(hosts, change, context, group).await
    }

    async fn results(&self, command_id: &str) -> Result<Vec<HostResult>, DispatchError> {
        self.inner.results(command_id).await
    }

    async fn commands(&self, since_ms: u64) -> Result<Vec<CommandInfo>, DispatchError> {
        self.inner.commands(since_ms).await
    }
}

type Bench = Reactor<AwsDiscovery, Timed, AwsLifecycle, Route53Dns>;

fn env() -> Vec<(String, String)> {
    [
        ("POOLS", POOLS),
        ("SSM_DOCUMENT", DOCUMENT),
        ("PROXY_TAG_KEY", PROXY_TAG.0),
        ("PROXY_TAG_VALUE", PROXY_TAG.1),
        ("HEALTH_TIMEOUT_S", "10"),
        ("DRAIN_TIMEOUT_S", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What the release binary's runs need of the world.
struct BenchWorld {
    w: std::sync::Arc<World>,
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

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
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
        .envs(env())
        .env("AWS_ENDPOINT_URL", w.w.emulator.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
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
    let peak = vm_hwm_kb(pid);
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
    let before: Vec<String> = w.members(GROUP).await?.into_iter().map(|m| m.id).collect();
    w.scale(GROUP, desired).await?;
    let after = w.members(GROUP).await?;
    if let Some(new) = after.iter().find(|m| !before.contains(&m.id)) {
        return Ok(new.id.clone());
    }
    after
        .iter()
        .find(|m| m.state == "Terminating:Wait")
        .map(|m| m.id.clone())
        .context("no instance came or went")
}

/// Handles every status event waiting in the queue (timing each), until `n` were handled.
async fn status_events(
    r: &Bench,
    w: &World,
    queue: &str,
    n: usize,
    times: &mut Vec<f64>,
    calls: &mut usize,
) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(300);
    let mut handled = 0;
    while handled < n {
        if Instant::now() > until {
            bail!("only {handled} of {n} status events came within 300 s");
        }
        let (events, handles) = w.receive(queue, 1)?;
        w.delete(queue, &handles)?;
        for ev in events {
            w.emulator.control("POST", "/moto-ext/calls/reset", None)?;
            let t = Instant::now();
            r.handle(&ev).await?;
            times.push(ms(t.elapsed()));
            *calls += call_actions(w).len();
            handled += 1;
        }
    }
    Ok(())
}

async fn run(args: &Args, tmp: &Path) -> Result<()> {
    eprintln!(
        "reactor-bench: starting the emulator and a group of {}",
        args.group_size
    );
    let w = std::sync::Arc::new(World::start(None).await?);
    let mut spec = GroupSpec::new(GROUP, &w.subnet).hooks(600);
    spec.max = args.group_size + i32::try_from(args.events).unwrap_or(1000) + 10;
    spec.desired = args.group_size;
    w.group(&spec).await?;
    // The initial members wait on the launch hook; the warm-up reconcile completes them.
    w.ssm_document(600).await?;
    let queue = w.event_queue("commands", &[commands_pattern(DOCUMENT)])?;
    let proxy_subnet = w.add_subnet("127.0.2.0/24").await?;
    let proxies = w
        .run_instances(2, &proxy_subnet, PROXY_TAG.0, PROXY_TAG.1)
        .await?;
    let agent = format!(
        "{} {}",
        venv_python()?.display(),
        workspace_root()
            .join("functions/reactor/tests/fake_host.py")
            .display()
    );
    let hosts: Vec<DocumentHost> = proxies
        .iter()
        .map(|id| DocumentHost {
            instance: id.clone(),
            agent: agent.clone(),
            env: vec![
                ("FAKE_DIR".to_string(), tmp.join(id).display().to_string()),
                ("FAKE_DELAY_S".to_string(), args.drain_s.to_string()),
            ],
        })
        .collect();
    w.document_hosts(&hosts)?;

    let env: BTreeMap<String, String> = env().into_iter().collect();
    let config = Config::from_lookup(|k| env.get(k).cloned())?;
    let timed = Timed {
        inner: SsmDispatcher::new(config.ssm.clone(), &w.sdk),
        world: w.clone(),
        at: Mutex::new(None),
    };
    let r: Bench = Reactor::new(
        config,
        AwsDiscovery::new(&w.sdk),
        timed,
        AwsLifecycle::new(&w.sdk),
        None,
    );
    // Warm up: every member onto the hosts, their launch actions completed (not measured).
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    r.handle(&sched).await?;
    status_events(&r, &w, &queue, 1, &mut Vec::new(), &mut 0).await?;

    let mut to_dispatch = Vec::new();
    let mut launch_ms = Vec::new();
    let mut terminate_ms = Vec::new();
    let mut status_ms = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut discovery_calls = 0usize;
    let mut all_calls = 0usize;
    let mut status_calls = 0usize;
    let mut desired = args.group_size;
    eprintln!("reactor-bench: {} launch events", args.events);
    let mut commands = 0;
    for _ in 0..args.events {
        desired += 1;
        let id = scale(&w, desired).await?;
        let event = event_of(&w, "EC2 Instance-launch Lifecycle Action", &id)?;
        w.emulator.control("POST", "/moto-ext/calls/reset", None)?;
        let t0 = Instant::now();
        let summary = r.handle(&event).await?;
        launch_ms.push(ms(t0.elapsed()));
        commands += summary.commands.len();
        let (at, before) = r
            .dispatcher()
            .at
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .take()
            .context("the change was never dispatched")?;
        to_dispatch.push(ms(at.duration_since(t0)));
        discovery_calls += before
            .iter()
            .filter(|a| *a == "DescribeAutoScalingGroups" || *a == "DescribeInstances")
            .count()
            // The proxy hosts' lookup is the dispatcher's, not discovery's.
            .saturating_sub(1);
        let calls = call_actions(&w);
        all_calls += calls.len();
        for c in calls {
            *kinds.entry(c).or_default() += 1;
        }
    }
    eprintln!(
        "reactor-bench: {} terminate events while drains run ({} s each)",
        args.events, args.drain_s
    );
    for _ in 0..args.events {
        desired -= 1;
        let id = scale(&w, desired).await?;
        let event = event_of(&w, "EC2 Instance-terminate Lifecycle Action", &id)?;
        let t0 = Instant::now();
        let summary = r.handle(&event).await?;
        terminate_ms.push(ms(t0.elapsed()));
        commands += summary.commands.len();
    }
    eprintln!("reactor-bench: {commands} status events");
    status_events(&r, &w, &queue, commands, &mut status_ms, &mut status_calls).await?;
    let lifecycle = w.lifecycle()?;
    let pending = lifecycle.iter().filter(|a| a["result"].is_null()).count();
    if pending > 0 {
        bail!("{pending} lifecycle action(s) left pending");
    }
    let n = args.events as f64;
    for v in [
        &mut to_dispatch,
        &mut launch_ms,
        &mut terminate_ms,
        &mut status_ms,
    ] {
        v.sort_by(f64::total_cmp);
    }

    // The emulator's own latency, per call.
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

    // The release binary.
    let binary = args.reactor.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("reactor")))
            .filter(|p| p.exists())
    });
    let bench = BenchWorld { w: w.clone() };
    let binary_figures = match &binary {
        Some(b) => {
            // Cold starts: the median of 5 (the machine may be busy), then one run
            // serving a reconcile and a lifecycle event for the peak memory.
            let mut inits = Vec::new();
            for _ in 0..5 {
                inits.push(run_binary(&bench, b, Vec::new()).await?.init_ms);
            }
            inits.sort_by(f64::total_cmp);
            desired += 1;
            let id = scale(&w, desired).await?;
            let ev = event_of(&w, "EC2 Instance-launch Lifecycle Action", &id)?;
            let mut f = run_binary(&bench, b, vec![sched.clone(), ev]).await?;
            f.init_ms = percentile(&inits, 50.0);
            Some(f)
        }
        None => None,
    };
    let (zip_bytes, zip_source) = zip_size(binary.as_deref(), tmp);

    let mut kinds_per_event = serde_json::Map::new();
    for (k, v) in &kinds {
        kinds_per_event.insert(k.clone(), json!(*v as f64 / n));
    }
    let figures = json!({
        "invocation_ms_p50": {
            "launch_action": percentile(&launch_ms, 50.0),
            "terminate_action": percentile(&terminate_ms, 50.0),
            "status_event": percentile(&status_ms, 50.0),
        },
        "invocation_ms_p99": {
            "launch_action": percentile(&launch_ms, 99.0),
            "terminate_action": percentile(&terminate_ms, 99.0),
            "status_event": percentile(&status_ms, 99.0),
        },
        "event_to_dispatch_ms_p50": percentile(&to_dispatch, 50.0),
        "event_to_dispatch_ms_p99": percentile(&to_dispatch, 99.0),
        "discovery_calls_per_lifecycle_event": discovery_calls as f64 / n,
        "aws_calls_per_lifecycle_event": all_calls as f64 / n,
        "aws_calls_per_status_event": status_calls as f64 / status_ms.len().max(1) as f64,
        "init_ms": binary_figures.as_ref().map(|b| b.init_ms),
        "peak_rss_kb": binary_figures.as_ref().and_then(|b| b.peak_rss_kb),
        "zip_bytes": zip_bytes,
        "emulator_call_ms_p50": percentile(&emu, 50.0),
        "aws_calls_per_lifecycle_event_by_kind": kinds_per_event,
        "group_size": args.group_size,
        "events": args.events,
        "status_events": status_ms.len(),
        "drain_s": args.drain_s,
        "proxy_hosts": 2,
        "zip_source": zip_source,
        "binary": binary.as_ref().map(|b| b.display().to_string()),
    });

    let num = |v: &Value| match v.as_f64() {
        Some(v) => format!("{v:.1}"),
        None => "n/a".to_string(),
    };
    println!(
        "reactor-bench: group of {} members, {} launch and {} terminate events, {} status events, 2 proxy hosts (SSM emulated, {} s per command)",
        args.group_size, args.events, args.events, status_ms.len(), args.drain_s
    );
    println!("{:<48} {:>12}  target / note", "figure", "value");
    let rows = [
        (
            "invocation: launch action p50 / p99 (ms)",
            format!(
                "{} / {}",
                num(&figures["invocation_ms_p50"]["launch_action"]),
                num(&figures["invocation_ms_p99"]["launch_action"])
            ),
            "returns after sending".to_string(),
        ),
        (
            "invocation: terminate action, drains running (ms)",
            format!(
                "{} / {}",
                num(&figures["invocation_ms_p50"]["terminate_action"]),
                num(&figures["invocation_ms_p99"]["terminate_action"])
            ),
            "p99 < 2000 whatever the drain".to_string(),
        ),
        (
            "invocation: status event p50 / p99 (ms)",
            format!(
                "{} / {}",
                num(&figures["invocation_ms_p50"]["status_event"]),
                num(&figures["invocation_ms_p99"]["status_event"])
            ),
            "reads every host's report, completes".to_string(),
        ),
        (
            "event -> change dispatched p50 (ms)",
            num(&figures["event_to_dispatch_ms_p50"]),
            "discovery + planning, emulator calls included".to_string(),
        ),
        (
            "event -> change dispatched p99 (ms)",
            num(&figures["event_to_dispatch_ms_p99"]),
            String::new(),
        ),
        (
            "emulator latency per call p50 (ms)",
            num(&figures["emulator_call_ms_p50"]),
            "reported separately".to_string(),
        ),
        (
            "discovery calls per lifecycle event",
            num(&figures["discovery_calls_per_lifecycle_event"]),
            "<= 2".to_string(),
        ),
        (
            "AWS calls per lifecycle event",
            num(&figures["aws_calls_per_lifecycle_event"]),
            String::new(),
        ),
        (
            "AWS calls per status event",
            num(&figures["aws_calls_per_status_event"]),
            String::new(),
        ),
        (
            "release init to first `next` (ms)",
            num(&figures["init_ms"]),
            "< 50".to_string(),
        ),
        (
            "release peak RSS (kB, VmHWM)",
            num(&figures["peak_rss_kb"]),
            String::new(),
        ),
        (
            "Lambda zip (bytes)",
            num(&figures["zip_bytes"]),
            format!(
                "< 10 MB; {}",
                figures["zip_source"].as_str().unwrap_or_default()
            ),
        ),
    ];
    for (name, value, note) in rows {
        println!("{name:<48} {value:>12}  {note}");
    }
    println!("AWS calls per lifecycle event, by kind:");
    for (k, v) in &kinds {
        println!("  {k:<46} {:>12.2}", *v as f64 / n);
    }
    if binary.is_none() {
        println!("note: no release reactor binary found; build it with `cargo build --release -p reactor` or pass --reactor PATH");
    }
    if let Some(b) = &binary_figures {
        if b.answers < 2 {
            println!(
                "note: the release binary answered {} of 2 events",
                b.answers
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("reactor-bench: figures written to {}", path.display());
    }
    Ok(())
}
