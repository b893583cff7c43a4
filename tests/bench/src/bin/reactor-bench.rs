//! reactor-bench: what one lifecycle event costs the reactor.
//!
//! Runs against the project's AWS emulator (`tests/emulator`, started on a free port):
//! a backend group of `--group-size` in-service members (default 100) gets a launch
//! hook, then scales out one instance at a time (`--events`, default 20); each launch
//! event goes through the reactor (SSM dispatch to 2 proxy hosts playing an agent).
//!
//! Reports, as a table (and with `--json PATH` as JSON):
//! - event in -> change dispatched (discovery + planning, i.e. until the dispatcher is
//!   called), p50/p99; the emulator's own latency per call is reported separately;
//! - AWS calls per lifecycle event, by kind (from `/moto-ext/calls`), and how many of
//!   them are discovery (`DescribeAutoScalingGroups` + `DescribeInstances` before the
//!   dispatch);
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
use harness::{GroupSpec, World};
use infra::aws::AwsDiscovery;
use infra::Change;
use reactor::config::Config;
use reactor::dispatch::{DispatchError, Dispatcher, HostResult, SsmDispatcher};
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
    reactor: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        json: None,
        events: 20,
        group_size: 100,
        reactor: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--json" => a.json = Some(PathBuf::from(val()?)),
            "--events" => a.events = val()?.parse().context("--events")?,
            "--group-size" => a.group_size = val()?.parse().context("--group-size")?,
            "--reactor" => a.reactor = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                println!("usage: reactor-bench [--json PATH] [--events N] [--group-size N] [--reactor PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    if a.events == 0 || a.group_size < 1 {
        bail!("--events and --group-size must be positive");
    }
    Ok(a)
}

/// The SSM dispatcher, noting when it was called and the calls made before.
struct Timed {
    inner: SsmDispatcher,
    emulator: std::sync::Arc<World>,
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
    async fn dispatch(
        &self,
        change: &Change,
        group: &str,
        deadline: Instant,
    ) -> Result<Vec<HostResult>, DispatchError> {
        let now = Instant::now();
        let world = self.emulator.clone();
        let before = tokio::task::spawn_blocking(move || call_actions(&world))
            .await
            .unwrap_or_default();
        if let Ok(mut at) = self.at.lock() {
            *at = Some((now, before));
        }
        self.inner.dispatch(change, group, deadline).await
    }
}

/// The emulated world and the bench's scratch directory.
struct Bench {
    w: std::sync::Arc<World>,
    dir: PathBuf,
}

impl Bench {
    async fn members(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .w
            .members(GROUP)
            .await?
            .into_iter()
            .map(|m| (m.id, m.state))
            .collect())
    }

    fn launch_event(&self, instance: &str) -> Result<Value> {
        self.w
            .events_about("EC2 Instance-launch Lifecycle Action", instance)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no launch event for {instance}"))
    }

    /// Scales out by one and returns the new instance's launch event.
    async fn scale_out_one(&self, desired: i32) -> Result<(String, Value)> {
        let before: Vec<String> = self.members().await?.into_iter().map(|(i, _)| i).collect();
        self.w.scale(GROUP, desired).await?;
        let new = self
            .members()
            .await?
            .into_iter()
            .find(|(i, _)| !before.contains(i))
            .context("no new instance")?;
        let ev = self.launch_event(&new.0)?;
        Ok((new.0, ev))
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("POOLS", POOLS),
            ("SSM_DOCUMENT", "haproxy-asg-apply"),
            ("PROXY_TAG_KEY", "Role"),
            ("PROXY_TAG_VALUE", "proxy"),
            ("HEALTH_TIMEOUT_S", "10"),
            ("DRAIN_TIMEOUT_S", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
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
async fn run_binary(w: &Bench, binary: &Path, events: Vec<Value>) -> Result<BinaryFigures> {
    let n = events.len();
    let api = RuntimeApi::start(events, 60_000)?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .envs(lambda_env(api.addr))
        .envs(w.env())
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

async fn run(args: &Args, tmp: &Path) -> Result<()> {
    eprintln!(
        "reactor-bench: starting the emulator and a group of {}",
        args.group_size
    );
    let w = Bench {
        w: std::sync::Arc::new(World::start(None).await?),
        dir: tmp.to_path_buf(),
    };
    let mut spec = GroupSpec::new(GROUP, &w.w.subnet);
    spec.max = args.group_size + i32::try_from(args.events).unwrap_or(1000) + 10;
    spec.desired = args.group_size;
    spec.launch_hook = Some(300);
    w.w.group(&spec).await?;
    // Two proxy hosts playing an agent.
    let proxies = w.w.run_instances(2, &w.w.subnet, "Role", "proxy").await?;
    let python = venv_python()?;
    let script = workspace_root().join("functions/reactor/tests/fake_host.py");
    let mut programs = serde_json::Map::new();
    for id in &proxies {
        programs.insert(
            id.clone(),
            json!({"exec": [python, script], "env": {"FAKE_DIR": w.dir.join(id)}}),
        );
    }
    w.w.program_hosts(&Value::Object(programs))?;

    let env: BTreeMap<String, String> = w.env().into_iter().collect();
    let config = Config::from_lookup(|k| env.get(k).cloned())?;
    let settings = config.transport.ssm_settings().context("ssm settings")?;
    let timed = Timed {
        inner: SsmDispatcher::new(settings, &w.w.sdk),
        emulator: w.w.clone(),
        at: Mutex::new(None),
    };
    let r: Reactor<AwsDiscovery, Timed, AwsLifecycle, Route53Dns> = Reactor::new(
        config,
        AwsDiscovery::new(&w.w.sdk),
        timed,
        AwsLifecycle::new(&w.w.sdk),
        None,
    );
    // Warm up: every member onto the hosts (not measured).
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    r.handle(&sched, Instant::now() + Duration::from_secs(120))
        .await?;

    let mut to_dispatch = Vec::new();
    let mut totals = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut discovery_calls = 0usize;
    let mut all_calls = 0usize;
    let mut desired = args.group_size;
    eprintln!("reactor-bench: {} lifecycle events", args.events);
    for _ in 0..args.events {
        desired += 1;
        let (id, event) = w.scale_out_one(desired).await?;
        w.w.emulator
            .control("POST", "/moto-ext/calls/reset", None)?;
        let t0 = Instant::now();
        let summary = r
            .handle(&event, Instant::now() + Duration::from_secs(60))
            .await?;
        totals.push(ms(t0.elapsed()));
        let (at, before) = r_dispatched(&r)?;
        to_dispatch.push(ms(at.duration_since(t0)));
        discovery_calls += before
            .iter()
            .filter(|a| *a == "DescribeAutoScalingGroups" || *a == "DescribeInstances")
            .count();
        let calls = call_actions(&w.w);
        all_calls += calls.len();
        for c in calls {
            *kinds.entry(c).or_default() += 1;
        }
        let decided = summary
            .actions
            .iter()
            .find(|a| a.instance == id)
            .map(|a| a.decision.clone());
        if decided.as_deref() != Some("CONTINUE") {
            bail!("instance {id} was not continued: {summary:?}");
        }
    }
    let n = args.events as f64;
    to_dispatch.sort_by(f64::total_cmp);
    totals.sort_by(f64::total_cmp);

    // The emulator's own latency, per call.
    let mut emu = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        w.w.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await?;
        emu.push(ms(t.elapsed()));
    }
    emu.sort_by(f64::total_cmp);
    // The emulator's time for the whole discovery read (both calls) of this group.
    let discovery = AwsDiscovery::new(&w.w.sdk);
    let mut reads = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        infra::aws::Discovery::group(&discovery, GROUP).await?;
        reads.push(ms(t.elapsed()));
    }
    reads.sort_by(f64::total_cmp);

    // The release binary.
    let binary = args.reactor.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("reactor")))
            .filter(|p| p.exists())
    });
    let binary_figures = match &binary {
        Some(b) => {
            // Cold starts: the median of 5 (the machine may be busy), then one run
            // serving a reconcile and a lifecycle event for the peak memory.
            let mut inits = Vec::new();
            for _ in 0..5 {
                inits.push(run_binary(&w, b, Vec::new()).await?.init_ms);
            }
            inits.sort_by(f64::total_cmp);
            desired += 1;
            let (_, ev) = w.scale_out_one(desired).await?;
            let mut f = run_binary(&w, b, vec![sched.clone(), ev]).await?;
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
        "event_to_dispatch_ms_p50": percentile(&to_dispatch, 50.0),
        "event_to_dispatch_ms_p99": percentile(&to_dispatch, 99.0),
        "discovery_calls_per_lifecycle_event": discovery_calls as f64 / n,
        "aws_calls_per_lifecycle_event": all_calls as f64 / n,
        "init_ms": binary_figures.as_ref().map(|b| b.init_ms),
        "peak_rss_kb": binary_figures.as_ref().and_then(|b| b.peak_rss_kb),
        "zip_bytes": zip_bytes,
        "event_to_completion_ms_p50": percentile(&totals, 50.0),
        "event_to_completion_ms_p99": percentile(&totals, 99.0),
        "emulator_call_ms_p50": percentile(&emu, 50.0),
        "discovery_read_ms_p50": percentile(&reads, 50.0),
        "aws_calls_per_lifecycle_event_by_kind": kinds_per_event,
        "group_size": args.group_size,
        "events": args.events,
        "proxy_hosts": 2,
        "zip_source": zip_source,
        "binary": binary.as_ref().map(|b| b.display().to_string()),
    });

    let num = |k: &str| match figures[k].as_f64() {
        Some(v) => format!("{v:.1}"),
        None => "n/a".to_string(),
    };
    println!(
        "reactor-bench: group of {} members, {} launch events, 2 proxy hosts (SSM emulated)",
        args.group_size, args.events
    );
    println!("{:<44} {:>12}  target / note", "figure", "value");
    let rows = [
        (
            "event -> change dispatched p50 (ms)",
            num("event_to_dispatch_ms_p50"),
            "discovery + planning, emulator calls included".to_string(),
        ),
        (
            "event -> change dispatched p99 (ms)",
            num("event_to_dispatch_ms_p99"),
            String::new(),
        ),
        (
            "emulator latency per call p50 (ms)",
            num("emulator_call_ms_p50"),
            "reported separately".to_string(),
        ),
        (
            "discovery read alone p50 (ms)",
            num("discovery_read_ms_p50"),
            "the 2 emulator calls, outside the reactor".to_string(),
        ),
        (
            "event -> action completed p50 (ms)",
            num("event_to_completion_ms_p50"),
            "incl. SSM round trip and agents".to_string(),
        ),
        (
            "discovery calls per lifecycle event",
            num("discovery_calls_per_lifecycle_event"),
            "<= 2".to_string(),
        ),
        (
            "AWS calls per lifecycle event",
            num("aws_calls_per_lifecycle_event"),
            String::new(),
        ),
        (
            "release init to first `next` (ms)",
            num("init_ms"),
            "< 50".to_string(),
        ),
        (
            "release peak RSS (kB, VmHWM)",
            num("peak_rss_kb"),
            String::new(),
        ),
        (
            "Lambda zip (bytes)",
            num("zip_bytes"),
            format!(
                "< 10 MB; {}",
                figures["zip_source"].as_str().unwrap_or_default()
            ),
        ),
    ];
    for (name, value, note) in rows {
        println!("{name:<44} {value:>12}  {note}");
    }
    println!("AWS calls per lifecycle event, by kind:");
    for (k, v) in &kinds {
        println!("  {k:<42} {:>12.2}", *v as f64 / n);
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

fn r_dispatched(
    r: &Reactor<AwsDiscovery, Timed, AwsLifecycle, Route53Dns>,
) -> Result<(Instant, Vec<String>)> {
    r.dispatcher()
        .at
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .take()
        .context("the change was never dispatched")
}
