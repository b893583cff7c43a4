//! scale-bench: the control path at fleet scale. One emulated account (AWS's request
//! quotas on, `--quotas`), `--groups` backend groups with both lifecycle hooks, a proxy
//! fleet of `--hosts` stand-in proxies (they answer Run Command and report to the inbox
//! like the agent service, without HAProxy) plus `--real` real HAProxy hosts with their
//! agent service under HTTP load, and the reactor fed by its inbox as Lambda's SQS event
//! source mapping feeds it (`--pollers` batches at once). Each group starts with
//! `--base` members in service (the load always has somewhere to go); then a burst of
//! `--members` launches spread over the groups (each group scaled out by `--step` every
//! `--interval-ms`), then as many terminations the same way.
//!
//! The default pace (25 launches every 10 s) keeps inside Auto Scaling's one
//! account-wide API bucket with the emulator's figure for it (40 tokens, 10 a second,
//! `--quotas aws-default`; AWS does not publish it): every lifecycle action costs one
//! `CompleteLifecycleAction`, and the scaling calls, the reactor's group reads and
//! whatever else the account runs share the bucket. A faster pace shows what throttling
//! does (retried, nothing lost; `throttled_by_api`). It also leaves the emulator (one
//! Python process: each change is 102 Run Command deliveries it serves one at a time)
//! time to catch up between steps; its figures are latencies of this machine's
//! emulator as much as of the control path, and shrink with `--hosts`.
//!
//! Figures (printed; `--json PATH` writes them):
//! - `aws_calls_per_lifecycle_action`: the reactor's AWS calls (Auto Scaling, EC2, SSM,
//!   DynamoDB, its reminders), per lifecycle action decided: what weighs on the account's
//!   request quotas. `report_messages_per_lifecycle_action`: the proxies' `SendMessage`
//!   calls (their reports; each proxy calls with its own credentials).
//!   `all_calls_per_lifecycle_action` adds both and the event source mapping's receives
//!   and deletes (`event_source_calls`). `aws_calls_by_api` splits them (`reactor:` /
//!   `proxies:` prefixes).
//! - `lambda_invocations`, `throttled_calls` (any caller, during the burst;
//!   `throttled_by_api` splits them). `records_given_back`: inbox records the reactor
//!   failed (back after the visibility timeout); the first reasons are printed.
//! - `event_to_decision_ms_p50` / `_p99`: from an instance entering `Pending:Wait` or
//!   `Terminating:Wait` to its action's completion by the reactor.
//! - `event_to_serving_ms_p99`: from a launch's wait starting to the member UP on every
//!   real host.
//! - `failed_requests`: HTTP requests through the real hosts that failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use harness::listeners::Listeners;
use harness::pump::{Batching, Delivery, Pump};
use harness::standin::{Behaviour, StandIns};
use harness::watch::SocketWatch;
use harness::world::{autoscaling_pattern, ControlPath, LAUNCH_HOOK, PROXY_GROUP, TERMINATE_HOOK};
use harness::{free_port, GroupSpec, Host, HostSpec, Load, PoolSpec, ReactorEnv, World};
use serde_json::{json, Value};
use stack::percentile;

/// The control path at fleet scale: a burst of launches, then of terminations, against
/// a proxy fleet of stand-ins and real hosts, with AWS's request quotas on.
#[derive(Parser, Debug, Clone)]
#[command(name = "scale-bench", max_term_width = 100)]
struct Args {
    /// Stand-in proxies.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Real HAProxy hosts with their agent service (under HTTP load).
    #[arg(long, default_value_t = 2)]
    real: usize,
    /// Backend groups (one pool each).
    #[arg(long, default_value_t = 5)]
    groups: usize,
    /// Launches in all (then as many terminations), spread over the groups.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Members each group has in service before the burst and keeps after it.
    #[arg(long, default_value_t = 2)]
    base: usize,
    /// Instances each group gains (then loses) per step.
    #[arg(long, default_value_t = 5)]
    step: usize,
    /// Time between steps, ms.
    #[arg(long, default_value_t = 10000)]
    interval_ms: u64,
    /// Batches the reactor handles at once (the module's `inbox_max_concurrency`; what
    /// its README advises for a fleet of this size: every proxy reports on the same
    /// actions, so more batches at once mostly rewrite the same ledger items).
    #[arg(long, default_value_t = 2)]
    pollers: usize,
    /// The most inbox messages per invocation (the reactor module's `inbox_batch_size`,
    /// its default; above 10 needs a batching window, AWS's rule).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// How long a poller gathers a batch, ms (the module's `inbox_batching_window_s`,
    /// its default 0: each batch is what one receive brings). A window of 1000 costs
    /// fewer calls and up to a second on each of the two hops (event, reports).
    #[arg(long, default_value_t = 0)]
    batching_window_ms: u64,
    /// The stand-ins' batching window (agent.toml `[report] batch_ms`): outcomes that end
    /// within it share a message. The agent's default, as the real hosts keep: a
    /// stand-in's members of one change rise (or drain) together, so they share one.
    #[arg(long, default_value_t = agent::config::DEFAULT_REPORT_BATCH_MS)]
    report_batch_ms: u64,
    /// The emulator's request quotas during the burst: a profile (`aws-default`) or
    /// `none`.
    #[arg(long, default_value = "aws-default")]
    quotas: String,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write the raw logs the figures come from as JSON here (`calls`: the emulator's
    /// call log, `lifecycle`: its lifecycle actions), for a closer look at a run.
    #[arg(long)]
    log: Option<std::path::PathBuf>,
    /// The real hosts' health check interval, ms (HAProxy's `inter`): a slot leaving
    /// maintenance is first checked at its next tick, so a join there takes up to this
    /// long whatever else is fast, and a launch's decision with it. Every member of
    /// every pool is checked this often on each real host.
    #[arg(long, default_value_t = 500)]
    check_inter_ms: u64,
    /// Give up a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// One request per this, per pool of each real host: 50 a second each, CPU left for
/// the emulator and the fleet on a 2-core machine.
const LOAD_PACE: Duration = Duration::from_millis(20);

/// The access key the reactor calls AWS with (the call log names callers by it).
const REACTOR_KEY: &str = "reactor";

/// Everything a run starts.
struct Run {
    w: Arc<World>,
    groups: Vec<String>,
    hosts: Vec<Host>,
    _standins: StandIns,
    _listeners: Listeners,
    pump: Pump,
    invocations: Invocations,
    watches: Vec<SocketWatch>,
    loads: Vec<Load>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        (1..=10_000).contains(&args.batch_size),
        "--batch-size must be 1 to 10000 (what an SQS event source mapping takes)"
    );
    ensure!(
        args.batch_size <= 10 || args.batching_window_ms >= 1000,
        "--batch-size {} needs --batching-window-ms 1000 or more: AWS takes a batch size above 10 only with a batching window of at least a second",
        args.batch_size
    );
    ensure!(
        args.groups > 0 && args.members >= args.groups && args.step > 0,
        "--groups, --members and --step must be positive, with at least one member per group"
    );
    ensure!(
        args.members / args.groups + args.base <= 250,
        "at most 250 members per group, --base included (one /24 of loopback addresses each)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let figures = rt.block_on(run(&args))?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    let mut r = start(args).await?;
    eprintln!(
        "scale-bench: {} stand-ins and {} real hosts ready; quotas {}",
        args.hosts, args.real, args.quotas
    );
    if args.quotas != "none" {
        r.w.emulator.control(
            "POST",
            "/moto-ext/quotas",
            Some(&json!({"profile": args.quotas})),
        )?;
    }
    r.w.emulator
        .control("POST", "/moto-ext/calls/reset", None)?;
    let per_group = args.members / args.groups;
    let t0 = harness::unix_ms();
    let since = t0 as f64 / 1000.0;
    scale(&r, args, per_group, true).await?;
    settled(&r, args, "launch", per_group * args.groups, since).await?;
    eprintln!(
        "scale-bench: every launch decided ({} s)",
        (harness::unix_ms() - t0) / 1000
    );
    scale(&r, args, per_group, false).await?;
    settled(&r, args, "terminate", per_group * args.groups, since).await?;
    eprintln!(
        "scale-bench: every termination decided ({} s)",
        (harness::unix_ms() - t0) / 1000
    );
    let calls = r.w.emulator.control("GET", "/moto-ext/calls", None)?;
    let lifecycle: Vec<Value> =
        r.w.lifecycle()?
            .into_iter()
            .filter(|a| a["started"].as_f64().is_some_and(|s| s >= since))
            .collect();
    if let Some(p) = &args.log {
        let handled = r.invocations.lock().map(|v| v.clone()).unwrap_or_default();
        let raw = json!({"calls": calls, "lifecycle": lifecycle, "invocations": handled});
        std::fs::write(p, serde_json::to_string(&raw)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    r.pump.stop();
    for w in &mut r.watches {
        w.stop();
    }
    let stats: Vec<_> = r.loads.drain(..).map(Load::stop).collect();
    let requests: u64 = stats.iter().map(|s| s.requests).sum();
    let failed: u64 = stats.iter().map(|s| s.failed).sum();
    if let Some(e) = stats.iter().flat_map(|s| s.errors.first()).next() {
        eprintln!("scale-bench: {failed} of {requests} requests failed; first: {e}");
    }
    let up = up_times(&r);
    let ips = instance_ips(&r.w)?;
    let handled = r.invocations.lock().map(|v| v.clone()).unwrap_or_default();
    let given_back = records_given_back(&handled);
    Ok(figures(
        args,
        &calls,
        &lifecycle,
        &Serving { up, ips },
        (requests, failed),
        (handled.len() as u64, given_back),
    ))
}

/// The world, the groups, the proxies (stand-ins and real hosts), the reactor on its
/// inbox, the load.
async fn start(args: &Args) -> anyhow::Result<Run> {
    let w = Arc::new(World::start(None).await?);
    let port = free_port();
    let groups: Vec<String> = (1..=args.groups).map(|i| format!("g{i}")).collect();
    let per_group = args.members / args.groups;
    let mut addrs = Vec::new();
    let size = per_group + args.base;
    for (i, g) in groups.iter().enumerate() {
        let subnet = w.add_subnet(&format!("127.0.{}.0/24", 10 + i)).await?;
        let mut spec = GroupSpec::new(g, &subnet).hooks(600);
        spec.max = i32::try_from(size)?;
        w.group(&spec).await?;
        // moto hands out .4, .5, ... in launch order.
        addrs.extend(
            (4..4 + size).map(|h| SocketAddr::from(([127, 0, 10 + i as u8, h as u8], port))),
        );
    }
    let listeners = Listeners::start(&addrs)?;
    w.ssm_document(120).await?;
    let mut names: Vec<&str> = groups.iter().map(String::as_str).collect();
    names.push(PROXY_GROUP);
    let path = w.control_path("reactor", &[autoscaling_pattern(&names)])?;
    let proxy_subnet = w.add_subnet("127.0.2.0/24").await?;
    let ids = w
        .proxy_group(&proxy_subnet, i32::try_from(args.hosts + args.real)?)
        .await?;
    let (real_ids, standin_ids) = ids.split_at(args.real);
    let specs = (0..args.real)
        .map(|_| host_spec(&groups, port, per_group, args.check_inter_ms))
        .collect();
    let hosts = w.proxy_hosts(&path, real_ids, specs).await?;
    let behaviour = Behaviour {
        batch: Duration::from_millis(args.report_batch_ms),
        ..Behaviour::default()
    };
    let standins = StandIns::start(w.clone(), &path, standin_ids, &behaviour)?;
    w.program_hosts(&standins.programs())?;
    let (pump, invocations) = reactor(&w, &path, args, &groups, port).await?;
    launch_base(&w, args, &groups).await?;
    let (watches, loads) = watch_and_load(&hosts, &groups);
    Ok(Run {
        w,
        groups,
        hosts,
        _standins: standins,
        _listeners: listeners,
        pump,
        invocations,
        watches,
        loads,
    })
}

/// The base members, through the same path, before anything is measured.
async fn launch_base(w: &Arc<World>, args: &Args, groups: &[String]) -> anyhow::Result<()> {
    let t = harness::unix_ms() as f64 / 1000.0;
    for g in groups {
        w.scale(g, i32::try_from(args.base)?).await?;
    }
    let launched = |w: &Arc<World>| -> anyhow::Result<usize> {
        Ok(completed(&w.lifecycle()?, "launch")
            .iter()
            .filter(|c| c.1 >= t)
            .count())
    };
    let until = Instant::now() + Duration::from_secs(args.timeout_s);
    while launched(w)? < args.base * groups.len() {
        ensure!(
            Instant::now() < until,
            "the base members were not launched within --timeout-s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// On each real host: a watch of its servers (when each member came UP; the groups'
/// addresses are apart, so one watch serves every pool) and, per pool, a paced HTTP
/// load through its frontend.
fn watch_and_load(hosts: &[Host], groups: &[String]) -> (Vec<SocketWatch>, Vec<Load>) {
    let watches = hosts
        .iter()
        .map(|h| {
            SocketWatch::start_every_backend(
                h.client(),
                Duration::from_millis(50),
                Duration::from_secs(3600),
            )
        })
        .collect();
    let loads = hosts
        .iter()
        .flat_map(|h| {
            groups.iter().map(|g| {
                Load::start_paced(
                    h.frontend(&pool(g)),
                    1,
                    LOAD_PACE,
                    Duration::from_secs(3600),
                    u64::MAX,
                )
            })
        })
        .collect();
    (watches, loads)
}

fn pool(group: &str) -> String {
    format!("p{}", group.trim_start_matches('g'))
}

fn host_spec(groups: &[String], port: u16, per_group: usize, inter_ms: u64) -> HostSpec {
    let pools = groups
        .iter()
        .map(|g| {
            let mut p = PoolSpec::new(&pool(g), u32::try_from(per_group + 16).unwrap_or(256));
            p.port = port;
            p.server_options =
                format!("check inter {inter_ms}ms fastinter 200ms downinter 200ms fall 2 rise 1");
            p.health_timeout_s = 20.0;
            p.drain_timeout_s = 10.0;
            p
        })
        .collect();
    HostSpec {
        name: String::new(),
        pools,
        extra_toml: String::new(),
        env: Vec::new(),
    }
}

/// What each invocation of the reactor did (for `--log`): when it started and ended
/// (s since the epoch), its inputs by kind, the changes it sent (hosts each) and the
/// lifecycle actions it decided.
type Invocations = Arc<std::sync::Mutex<Vec<Value>>>;

/// The reactor, fed by `pollers` pollers of its inbox, each batch handled as its own
/// invocation; what each invocation did.
async fn reactor(
    w: &Arc<World>,
    path: &ControlPath,
    args: &Args,
    groups: &[String],
    port: u16,
) -> anyhow::Result<(Pump, Invocations)> {
    let env = groups
        .iter()
        .fold(ReactorEnv::new(path), |e, g| e.pool(g, &pool(g), port))
        .timeouts(20, 10)
        .hooks(&[LAUNCH_HOOK, TERMINATE_HOOK]);
    let config = reactor::config::Config::from_lookup(|k| env.get(k))?;
    let r = Arc::new(reactor::build(
        config,
        &w.emulator.sdk_as(REACTOR_KEY).await,
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    let invocations = Invocations::default();
    let handled = invocations.clone();
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            let (r, handled) = (r.clone(), handled.clone());
            tokio::spawn(async move {
                let started = harness::unix_ms();
                let i = r.invoke(&d.event).await;
                let s = &i.summary;
                let done = json!({
                    "started": started as f64 / 1000.0,
                    "ended": harness::unix_ms() as f64 / 1000.0,
                    "inputs": s.inputs,
                    "changes": s.changes.iter().map(|c| c.hosts).collect::<Vec<_>>(),
                    "decided": s.actions.iter().filter(|a| a.decision != "WAIT").count(),
                    "failed": s.failed.len(),
                    "errors": s.errors,
                });
                if let Ok(mut v) = handled.lock() {
                    v.push(done);
                }
                d.answer(i.response);
            });
        }
    });
    let pump = Pump::start_batched(
        w.clone(),
        path.inbox.clone(),
        tx,
        Duration::from_secs(7200),
        args.pollers,
        Batching {
            size: args.batch_size,
            window: Duration::from_millis(args.batching_window_ms),
        },
    );
    Ok((pump, invocations))
}

/// Scales every group out to `per_group` (or in to 0) by `--step` every `--interval-ms`.
async fn scale(r: &Run, args: &Args, per_group: usize, out: bool) -> anyhow::Result<()> {
    let mut at = 0usize;
    while at < per_group {
        at = (at + args.step).min(per_group);
        let desired = args.base + if out { at } else { per_group - at };
        for g in &r.groups {
            r.w.scale(g, i32::try_from(desired)?).await?;
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    Ok(())
}

/// Waits until `n` actions of `transition` started `since` (unix s) were completed
/// (bounded by `--timeout-s`).
async fn settled(
    r: &Run,
    args: &Args,
    transition: &str,
    n: usize,
    since: f64,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(args.timeout_s);
    loop {
        let done = completed(&r.w.lifecycle()?, transition)
            .iter()
            .filter(|c| c.1 >= since)
            .count();
        if done >= n {
            return Ok(());
        }
        ensure!(
            Instant::now() < until,
            "{done} of {n} {transition} actions completed within {} s",
            args.timeout_s
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The completed actions of `transition`: (instance, started s, completed s, by).
fn completed(lifecycle: &[Value], transition: &str) -> Vec<(String, f64, f64, String)> {
    let wanted = match transition {
        "launch" => "autoscaling:EC2_INSTANCE_LAUNCHING",
        _ => "autoscaling:EC2_INSTANCE_TERMINATING",
    };
    lifecycle
        .iter()
        .filter(|a| a["transition"] == wanted && a["result"].is_string())
        .map(|a| {
            (
                a["instance"].as_str().unwrap_or_default().to_string(),
                a["started"].as_f64().unwrap_or_default(),
                a["time"].as_f64().unwrap_or_default(),
                a["by"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// When each member was first UP on every real host (unix ms), by address.
fn up_times(r: &Run) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for w in &r.watches {
        for (ip, seen) in w.all() {
            if let Some(up) = seen.up_ms {
                let e = out.entry(ip).or_default();
                e.0 += 1;
                e.1 = e.1.max(up);
            }
        }
    }
    let needed = r.hosts.len();
    out.into_iter()
        .filter(|(_, (n, _))| *n >= needed)
        .map(|(ip, (_, t))| (ip, t))
        .collect()
}

/// When members served on every real host, and every instance's address.
struct Serving {
    /// Address -> first time UP on every real host (unix ms).
    up: BTreeMap<String, u64>,
    /// Instance -> address.
    ips: BTreeMap<String, String>,
}

/// Every instance's address, from the emulator's own listing (no AWS call: the
/// measured calls stay the product's).
fn instance_ips(w: &World) -> anyhow::Result<BTreeMap<String, String>> {
    let all = w.emulator.control("GET", "/moto-ext/instances", None)?;
    Ok(all
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| Some((i["id"].as_str()?.to_string(), i["ip"].as_str()?.to_string())))
        .collect())
}

/// The records the reactor gave back to the inbox (to be delivered again after the
/// visibility timeout); says the first few reasons.
fn records_given_back(handled: &[Value]) -> u64 {
    let mut n = 0;
    let mut said = 0;
    for i in handled {
        n += i["failed"].as_u64().unwrap_or_default();
        for e in i["errors"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if said < 5 {
                eprintln!("scale-bench: the reactor gave records back: {e}");
                said += 1;
            }
        }
    }
    n
}

/// The figures from the call log, the lifecycle log and the watches.
fn figures(
    args: &Args,
    calls: &Value,
    lifecycle: &[Value],
    served: &Serving,
    (requests, failed): (u64, u64),
    (invocations, given_back): (u64, u64),
) -> Value {
    let calls = calls.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut by_api: BTreeMap<String, u64> = BTreeMap::new();
    let mut event_source = 0u64;
    let mut throttled = 0u64;
    let mut throttled_by_api: BTreeMap<String, u64> = BTreeMap::new();
    for c in calls {
        let action = c["action"].as_str().unwrap_or_default();
        if c["throttled"] == json!(true) {
            throttled += 1;
            *throttled_by_api.entry(action.to_string()).or_default() += 1;
        }
        let who = match c["key"].as_str().unwrap_or_default() {
            REACTOR_KEY => "reactor",
            k if k.starts_with("ASIA") || k.starts_with("FSIA") => "proxies",
            _ if matches!(
                action,
                "ReceiveMessage" | "DeleteMessageBatch" | "DeleteMessage"
            ) =>
            {
                event_source += 1;
                continue;
            }
            _ => continue,
        };
        *by_api.entry(format!("{who}:{action}")).or_default() += 1;
    }
    let mut decided = Vec::new();
    let mut by_api_decided = 0usize;
    for t in ["launch", "terminate"] {
        for (_, started, done, by) in completed(lifecycle, t) {
            by_api_decided += usize::from(by == "api");
            decided.push(((done - started) * 1000.0).max(0.0) as u64);
        }
    }
    decided.sort_unstable();
    let launches = completed(lifecycle, "launch");
    let mut serving: Vec<u64> = launches
        .iter()
        .filter_map(|(i, started, _, _)| {
            let up = served.up.get(served.ips.get(i)?)?;
            Some(up.saturating_sub((started * 1000.0) as u64))
        })
        .collect();
    serving.sort_unstable();
    let sum = |who: &str| -> u64 {
        by_api
            .iter()
            .filter(|(k, _)| k.starts_with(who))
            .map(|(_, n)| n)
            .sum()
    };
    let (reactor, proxies) = (sum("reactor:"), sum("proxies:"));
    let actions = decided.len().max(1) as f64;
    let per = |n: u64| (n as f64 / actions * 100.0).round() / 100.0;
    json!({
        "hosts": args.hosts, "real_hosts": args.real, "groups": args.groups, "members": args.members,
        "base": args.base, "step": args.step, "interval_ms": args.interval_ms, "pollers": args.pollers,
        "batch_size": args.batch_size, "batching_window_ms": args.batching_window_ms, "quotas": args.quotas,
        "report_batch_ms": args.report_batch_ms, "check_inter_ms": args.check_inter_ms,
        "lifecycle_actions": decided.len(), "completed_by_reactor": by_api_decided,
        "aws_calls_per_lifecycle_action": per(reactor),
        "report_messages_per_lifecycle_action": per(proxies),
        "all_calls_per_lifecycle_action": per(reactor + proxies + event_source),
        "aws_calls_by_api": by_api, "event_source_calls": event_source,
        "lambda_invocations": invocations, "records_given_back": given_back, "throttled_calls": throttled, "throttled_by_api": throttled_by_api,
        "event_to_decision_ms_p50": percentile(&decided, 50.0), "event_to_decision_ms_p99": percentile(&decided, 99.0),
        "event_to_serving_ms_p99": percentile(&serving, 99.0), "serving_measured": serving.len(),
        "requests": requests, "failed_requests": failed,
    })
}
