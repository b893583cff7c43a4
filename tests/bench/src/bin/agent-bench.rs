//! `agent-bench`: how fast the agent service applies changes over HAProxy's socket, how
//! much memory it takes, whether churn under HTTP load loses requests or reloads while
//! slots are free, and whether a change waits for other members' drains (a launch during
//! a long drain, ten separate applies at once), and how fast every member serves again
//! after a reload by someone else. Real HAProxy, real backends, the real
//! agent service and binary; loopback only.
//!
//! Prints a table; `--json PATH` also writes the figures.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use agent::haproxy::{Command, Op};
use anyhow::{ensure, Context};
use clap::Parser;
use harness::{http, wait_for, Backend, Host, HostSpec, Load, PoolSpec};
use infra::{Change, Member, MemberId, OutcomeStatus, PoolChange, PoolName, Port};

/// Measures the agent against a real HAProxy.
#[derive(Parser)]
struct Args {
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Add/remove cycles in the churn run.
    #[arg(long, default_value = "100")]
    cycles: u32,
    /// Repetitions per apply size (the median is reported).
    #[arg(long, default_value = "5")]
    reps: u32,
    /// The HAProxy binary to run (default: `$HAPROXY_BIN`, else `haproxy` from PATH),
    /// e.g. one `scripts/haproxy-versions` printed.
    #[arg(long)]
    haproxy: Option<std::path::PathBuf>,
}

fn member(id: String, ip: IpAddr, port: u16) -> Member {
    Member::new(
        MemberId::new(id).expect("generated ids are valid"),
        ip,
        Port::new(port as i64).expect("generated ports are valid"),
    )
    .expect("generated members are valid")
}

fn change(generation: u64, add: Vec<Member>, remove: Vec<MemberId>) -> Change {
    Change::new(
        generation,
        vec![PoolChange {
            pool: PoolName::new("web").expect("valid"),
            add,
            remove,
            drain_by_ms: Default::default(),
        }],
    )
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median wall time of `agent apply --no-wait` adding `n` fresh members (socket only).
fn apply_time(
    host: &Host,
    n: usize,
    reps: u32,
    gen: &mut u64,
    rss: &mut i64,
) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for rep in 0..reps {
        let add: Vec<Member> = (0..n)
            .map(|i| {
                let ip = IpAddr::from([127, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8]);
                member(format!("i-{n}-{rep}-{i}"), ip, 8080)
            })
            .collect();
        let ids: Vec<MemberId> = add.iter().map(|m| m.id.clone()).collect();
        *gen += 1;
        let body = change(*gen, add, vec![]).to_json();
        let t = Instant::now();
        let run = host.agent(&["apply", "--json", "--change", &body], None)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(run.code == 0, "apply of {n} failed: {}", run.stderr);
        *rss = (*rss).max(run.max_rss_kb);
        ensure!(
            !run.stdout.contains("\"reloads\":1"),
            "the bench host must not grow"
        );
        *gen += 1;
        let run = host.agent(
            &[
                "apply",
                "--wait",
                "--json",
                "--change",
                &change(*gen, vec![], ids).to_json(),
            ],
            None,
        )?;
        ensure!(run.code == 0, "removal of {n} failed: {}", run.stderr);
        *rss = (*rss).max(run.max_rss_kb);
    }
    Ok(median(times))
}

/// Median time HAProxy itself takes for the commands of an `n`-member add (address,
/// ready, health down per slot), sent through the agent's client as the agent sends
/// them: the socket-only part of an apply.
fn socket_time(host: &Host, n: usize, reps: u32) -> anyhow::Result<f64> {
    let client = host.client();
    let mut times = Vec::new();
    for rep in 0..reps {
        let web = PoolName::new("web")?;
        let port = Port::new(i64::from(9000 + rep))?;
        let cmds: Vec<Vec<Command>> = (1..=n)
            .map(|i| {
                let addr =
                    std::net::IpAddr::from([127, 0, (2 + i / 250) as u8, (1 + i % 250) as u8]);
                Command::join(&web, i as u32, addr, port, true)
            })
            .collect();
        let t = Instant::now();
        client.batch(&cmds)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let reset: Vec<Vec<Command>> = (1..=n)
            .map(|i| vec![Command::new(&web, i as u32, Op::Maint)])
            .collect();
        client.batch(&reset)?;
    }
    Ok(median(times))
}

/// The service's peak resident memory (VmHWM, KiB; -1 when it does not run).
fn service_rss_kb(host: &Host) -> i64 {
    host.service_pid()
        .and_then(stack::usage::peak_rss_kb)
        .and_then(|kb| i64::try_from(kb).ok())
        .unwrap_or(-1)
}

/// Wall time of one `agent apply` (waiting for the outcome), ms, and the report.
fn timed_apply(host: &Host, c: &Change) -> anyhow::Result<(f64, infra::Report)> {
    let t = Instant::now();
    let (report, run) = host.apply(c)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    ensure!(report.ok, "{report:?} {}", run.stderr);
    Ok((ms, report))
}

/// Timings of changes that must not wait for other members.
struct Independence {
    rise_ms: f64,
    launch_during_drain_ms: f64,
    burst_10_ms: f64,
    rss_kb: i64,
}

/// A host with checks every 100 ms (rise 2): how long a lone join takes (the rise), a
/// launch while another member drains a 20 s request, and ten separate applies at once.
fn independence(reps: u32) -> anyhow::Result<Independence> {
    let bed = Bed::start()?;
    let mut gen = 1u64;
    let rise_ms = rise(&bed, reps, &mut gen)?;
    let drain = launch_during_drain(&bed, &mut gen)?;
    let launch_during_drain_ms = drain.launch_ms;
    let burst_10_ms = burst(&bed, &mut gen)?;
    drain.finish()?;
    Ok(Independence {
        rise_ms,
        launch_during_drain_ms,
        burst_10_ms,
        rss_kb: service_rss_kb(&bed.host),
    })
}

/// The independence runs' host and its 14 backends (dropped first).
struct Bed {
    backends: Vec<Backend>,
    host: Host,
}

impl Bed {
    fn start() -> anyhow::Result<Bed> {
        let mut pool = PoolSpec::new("web", 32);
        pool.drain_timeout_s = 60.0;
        let host = Host::start(&HostSpec {
            name: "bench-independence".into(),
            pools: vec![pool],
            extra_toml: String::new(),
            env: Vec::new(),
        })?;
        let backends: Vec<Backend> = (0..14)
            .map(|i| Backend::start(&format!("m{i}"), "127.0.0.1"))
            .collect::<Result<_, _>>()?;
        Ok(Bed { backends, host })
    }

    /// Backend `i` as member `i-TAG-i`.
    fn m(&self, i: usize, tag: &str) -> Member {
        member(
            format!("i-{tag}-{i}"),
            self.backends[i].addr.ip(),
            self.backends[i].addr.port(),
        )
    }
}

/// The rise: a lone member's change -> UP, with nothing else in flight (median of
/// `reps`, at least 3).
fn rise(bed: &Bed, reps: u32, gen: &mut u64) -> anyhow::Result<f64> {
    let mut rises = Vec::new();
    for r in 0..reps.max(3) {
        *gen += 1;
        let (ms, _) = timed_apply(
            &bed.host,
            &change(*gen, vec![bed.m(13, &r.to_string())], vec![]),
        )?;
        rises.push(ms);
        *gen += 1;
        let id = MemberId::new(format!("i-{r}-13"))?;
        timed_apply(&bed.host, &change(*gen, vec![], vec![id]))?;
    }
    Ok(median(rises))
}

/// X's drain under way while Y launched: its slow request and its removal, still
/// running, and Y's launch time.
struct Drain {
    slow: std::thread::JoinHandle<std::io::Result<http::Response>>,
    removal: std::thread::JoinHandle<anyhow::Result<std::process::Output>>,
    launch_ms: f64,
}

/// X serves a 20 s request and is removed; a second later Y launches.
fn launch_during_drain(bed: &Bed, gen: &mut u64) -> anyhow::Result<Drain> {
    let host = &bed.host;
    *gen += 1;
    timed_apply(host, &change(*gen, vec![bed.m(0, "x")], vec![]))?;
    let fe = host.frontend("web");
    let slow = std::thread::spawn(move || http::get(fe, "/slow?ms=20000", Duration::from_secs(60)));
    wait_for(Duration::from_secs(5), || {
        (bed.backends[0].served().ok()? == 1).then_some(())
    })
    .context("the slow request did not reach X")?;
    *gen += 1;
    let x = MemberId::new("i-x-0")?;
    let removal = {
        let (config, body) = (host.config.clone(), change(*gen, vec![], vec![x]).to_json());
        std::thread::spawn(move || {
            std::process::Command::new(harness::process::bin_path("agent")?)
                .arg("--config")
                .arg(config)
                .args(["apply", "--wait", "--json", "--change", &body])
                .output()
                .map_err(anyhow::Error::from)
        })
    };
    wait_for(Duration::from_secs(5), || {
        let rows = host.status().ok()?;
        rows.iter()
            .any(|r| r["member"] == "i-x-0" && r["stage"] == "draining")
            .then_some(())
    })
    .context("X did not start draining")?;
    std::thread::sleep(Duration::from_secs(1));
    *gen += 1;
    // X is left out: a member in flight is converging under its own change (naming it
    // again answers `pending`, and the report is not ok).
    let (launch_ms, _) = timed_apply(host, &change(*gen, vec![bed.m(1, "y")], vec![]))?;
    Ok(Drain {
        slow,
        removal,
        launch_ms,
    })
}

impl Drain {
    /// Waits for X's in-flight request (which must succeed) and its removal.
    fn finish(self) -> anyhow::Result<()> {
        let served = self
            .slow
            .join()
            .map_err(|_| anyhow::anyhow!("the slow request panicked"))??;
        ensure!(
            served.status == 200,
            "X's in-flight request failed: {}",
            served.status
        );
        let out = self
            .removal
            .join()
            .map_err(|_| anyhow::anyhow!("the removal panicked"))??;
        ensure!(
            out.status.success(),
            "X's removal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// Ten members by ten separate applies at once: until all are UP, ms.
fn burst(bed: &Bed, gen: &mut u64) -> anyhow::Result<f64> {
    let go = std::sync::Arc::new(std::sync::Barrier::new(11));
    let runs: Vec<_> = (2..12)
        .map(|i| {
            *gen += 1;
            let (go, config, body) = (
                go.clone(),
                bed.host.config.clone(),
                change(*gen, vec![bed.m(i, "b")], vec![]).to_json(),
            );
            std::thread::spawn(move || -> anyhow::Result<bool> {
                go.wait();
                let out = std::process::Command::new(harness::process::bin_path("agent")?)
                    .arg("--config")
                    .arg(config)
                    .args(["apply", "--wait", "--json", "--change", &body])
                    .output()?;
                Ok(out.status.success())
            })
        })
        .collect();
    go.wait();
    let t = Instant::now();
    for r in runs {
        ensure!(
            r.join()
                .map_err(|_| anyhow::anyhow!("an apply thread panicked"))??,
            "a burst apply failed"
        );
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

struct Churn {
    requests: u64,
    failed: u64,
    growth_reloads: u64,
    reloads_while_free: u64,
    /// Cycles that needed a slot beyond the ones the pool had.
    growths_past_slots: u64,
    /// Reloads those cycles took: 0 where HAProxy takes servers added at runtime
    /// (3.0+), one per growth where the pool grows its block with a reload (2.6).
    reloads_past_slots: u64,
    cycles: u32,
    seconds: f64,
    errors: Vec<String>,
}

/// An operator's reload behind the agent's back, `reps` times: how long until every
/// member serves again, and the requests of the load across them.
struct Recovery {
    ms: Vec<f64>,
    requests: u64,
    failed: u64,
}

/// After growth to 9 members (4 slots -> 16), each rep puts back the haproxy.cfg the
/// host started with and reloads HAProxy through the master socket, under HTTP load.
/// Without `pools_file` that file holds the initial slot block (a template run): the
/// agent notices the new worker and grows the block back. With it, the pools' backends
/// are in the agent's own file and haproxy.cfg is the operator's alone. Timed: the
/// reload sent -> all 9 UP in the new worker (read through the master, 20 ms polls).
fn external_reload(reps: u32, pools_file: bool) -> anyhow::Result<Recovery> {
    let spec = HostSpec {
        name: "bench-reload".into(),
        pools: vec![PoolSpec::new("web", 4)],
        extra_toml: String::new(),
        env: Vec::new(),
    };
    let host = if pools_file {
        Host::start_with_pools_file(&spec)?
    } else {
        Host::start(&spec)?
    };
    let cfg = host.dir().join("haproxy.cfg");
    let original = std::fs::read_to_string(&cfg)?;
    let backends: Vec<Backend> = (0..9)
        .map(|i| Backend::start(&format!("r{i}"), "127.0.0.1"))
        .collect::<Result<_, _>>()?;
    let add = backends
        .iter()
        .enumerate()
        .map(|(i, b)| member(format!("i-r{i}"), b.addr.ip(), b.addr.port()))
        .collect();
    let (report, _) = host.apply(&change(1, add, vec![]))?;
    ensure!(report.ok, "9 members: {report:?}");
    let load = Load::start(
        host.frontend("web"),
        2,
        Duration::from_secs(300),
        10_000_000,
    );
    let client = host.client();
    let all_up = |before: Option<u32>| {
        let now = client.proc_info().ok()?.current_worker()?;
        if Some(now) == before {
            return None;
        }
        let rows = client.via_master().ok()?.stats().ok()?;
        let up = rows
            .iter()
            .filter(|r| r.backend == "web" && r.is_up())
            .count();
        (up == 9).then_some(now)
    };
    let mut ms = Vec::new();
    for rep in 0..reps {
        std::fs::write(&cfg, &original)?;
        let before = client.proc_info()?.current_worker();
        let since = harness::unix_ms();
        let t = Instant::now();
        client.master("reload")?;
        wait_for(Duration::from_secs(10), || all_up(before))
            .with_context(|| format!("rep {rep}: the members were not all back within 10 s"))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        // The agent noticed this reload and finished its restore (a regrowth included)
        // before the next rep.
        wait_for(Duration::from_secs(10), || {
            let s = host.status_all().ok()?;
            let x = &s["last_external_reload"];
            let done = x["at_ms"].as_u64()? >= since && x["restored"].is_u64();
            (done && all_up(None).is_some()).then_some(())
        })
        .with_context(|| format!("rep {rep}: the agent did not finish its restore"))?;
    }
    let stats = load.stop();
    Ok(Recovery {
        ms,
        requests: stats.requests,
        failed: stats.failed,
    })
}

fn slot_count(host: &Host) -> anyhow::Result<u32> {
    let cfg = std::fs::read_to_string(host.dir().join("haproxy.cfg"))?;
    agent::haproxy_cfg::find_block(&cfg, "web")
        .map(|b| b.1)
        .context("no slot line")
}

/// The churn run's members: each with the index of its backend.
type ChurnMembers = std::collections::VecDeque<(MemberId, usize)>;

/// The next backend (from `next` on, round robin over `backends`) that is not a member's.
fn next_free_backend(members: &ChurnMembers, backends: usize, next: &mut usize) -> usize {
    let in_use: Vec<usize> = members.iter().map(|m| m.1).collect();
    while in_use.contains(&(*next % backends)) {
        *next += 1;
    }
    let bi = *next % backends;
    *next += 1;
    bi
}

/// The oldest member, taken out of `members` once 10 serve; else none.
fn oldest_out(members: &mut ChurnMembers) -> Vec<MemberId> {
    if members.len() >= 10 {
        members.pop_front().map(|m| vec![m.0]).unwrap_or_default()
    } else {
        vec![]
    }
}

/// The churn run's reloads, counted cycle by cycle.
#[derive(Default)]
struct ChurnReloads {
    /// Reloads in cycles that had a slot free.
    while_free: u64,
    /// Cycles that needed a slot beyond the ones the pool had, and their reloads.
    growths_past_slots: u64,
    past_slots: u64,
}

impl ChurnReloads {
    /// Counts a cycle's `reloaded` reloads (`free_before`: it had a slot free).
    fn count(&mut self, free_before: bool, reloaded: u64) {
        if free_before {
            self.while_free += reloaded;
        } else {
            self.growths_past_slots += 1;
            self.past_slots += reloaded;
        }
    }
}

fn churn(
    cycles: u32,
    rss: &mut i64,
    rss_with_check: &mut i64,
    service_rss: &mut i64,
) -> anyhow::Result<Churn> {
    let host = Host::start(&HostSpec {
        name: "bench-churn".into(),
        pools: vec![PoolSpec::new("web", 2)],
        extra_toml: String::new(),
        env: Vec::new(),
    })?;
    let backends: Vec<Backend> = (0..12)
        .map(|i| Backend::start(&format!("b{i}"), "127.0.0.1"))
        .collect::<Result<_, _>>()?;
    let mut members: ChurnMembers = Default::default();
    let mut gen = 1u64;
    // The pool serves before the load starts (an empty pool answers 503 by design).
    let first = member(
        "i-first".into(),
        backends[0].addr.ip(),
        backends[0].addr.port(),
    );
    let (report, _) = host.apply(&change(gen, vec![first.clone()], vec![]))?;
    ensure!(report.ok, "first member: {report:?}");
    members.push_back((first.id, 0));
    let load = Load::start(
        host.frontend("web"),
        4,
        Duration::from_secs(600),
        10_000_000,
    );
    let started = Instant::now();
    let mut next_backend = 1usize;
    let mut reloads = ChurnReloads::default();
    for c in 0..cycles {
        let size = slot_count(&host)?;
        let free_before = (members.len() as u32) < size;
        // One member in (a backend not currently in the pool), the oldest out once 10 serve.
        let bi = next_free_backend(&members, backends.len(), &mut next_backend);
        let b = &backends[bi];
        let new = member(format!("i-c{c}"), b.addr.ip(), b.addr.port());
        let remove = oldest_out(&mut members);
        gen += 1;
        let before = host.reloads()?;
        let (report, run) = host.apply(&change(gen, vec![new.clone()], remove))?;
        ensure!(
            report
                .outcomes
                .iter()
                .all(|o| matches!(o.status, OutcomeStatus::Up | OutcomeStatus::Drained)),
            "cycle {c}: {report:?} {}",
            run.stderr
        );
        let reloaded = host.reloads()? - before;
        // wait4 counts reaped children too: a growth run includes `haproxy -c`.
        if reloaded == 0 {
            *rss = (*rss).max(run.max_rss_kb);
        } else {
            *rss_with_check = (*rss_with_check).max(run.max_rss_kb);
        }
        reloads.count(free_before, reloaded);
        members.push_back((new.id, bi));
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = load.stop();
    *service_rss = (*service_rss).max(service_rss_kb(&host));
    Ok(Churn {
        requests: stats.requests,
        failed: stats.failed,
        growth_reloads: host.reloads()?,
        reloads_while_free: reloads.while_free,
        growths_past_slots: reloads.growths_past_slots,
        reloads_past_slots: reloads.past_slots,
        cycles,
        seconds,
        errors: stats.errors,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(bin) = &args.haproxy {
        // Read by the harness for every host it starts and their agents' `haproxy -c`;
        // set before any thread starts.
        std::env::set_var("HAPROXY_BIN", bin);
    }
    let f = measure(&args)?;
    println!("agent-bench (real HAProxy {}, loopback)", haproxy_version());
    println!("{:<44} {:>12} {:>10}", "figure", "value", "target");
    let rows = apply_rows(&f)
        .into_iter()
        .chain(churn_rows(&f.churn))
        .chain(reload_rows(&f));
    for (k, v, t) in rows {
        println!("{k:<44} {v:>12} {t:>10}");
    }
    if !f.churn.errors.is_empty() {
        println!("first errors: {:?}", f.churn.errors);
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&f.json())? + "\n")?;
        eprintln!("agent-bench: wrote {}", path.display());
    }
    Ok(())
}

/// The apply timings on a host with 1024 slots.
struct Applies {
    apply_1: f64,
    apply_100: f64,
    apply_1000: f64,
    socket_1000: f64,
    /// HAProxy reloads during them.
    reloads: u64,
    /// The service's peak RSS (KiB).
    service_rss: i64,
}

/// Times applies of 1, 100 and 1000 members (whole agent runs) and a 1000-member add
/// over the socket only; `rss`: the `agent apply` client's peak RSS so far.
fn applies(args: &Args, rss: &mut i64) -> anyhow::Result<Applies> {
    let mut pool = PoolSpec::new("web", 1024);
    pool.server_options = "check inter 2s fall 2 rise 2".into();
    let host = Host::start(&HostSpec {
        name: "bench-apply".into(),
        pools: vec![pool],
        extra_toml: String::new(),
        env: Vec::new(),
    })?;
    let mut gen = 0;
    eprintln!(
        "agent-bench: timing applies of 1, 100, 1000 members ({} reps each)...",
        args.reps
    );
    let reps = args.reps.max(1);
    let apply_1 = apply_time(&host, 1, reps * 4, &mut gen, rss)?;
    let apply_100 = apply_time(&host, 100, reps, &mut gen, rss)?;
    let apply_1000 = apply_time(&host, 1000, reps, &mut gen, rss)?;
    // 40 ms a rep: four times the reps, so one preempted rep on a busy machine does not
    // move the median.
    let socket_1000 = socket_time(&host, 1000, reps * 4)?;
    Ok(Applies {
        apply_1,
        apply_100,
        apply_1000,
        socket_1000,
        reloads: host.reloads()?,
        service_rss: service_rss_kb(&host),
    })
}

/// Every figure of the bench.
struct Figures {
    applies: Applies,
    ind: Independence,
    churn: Churn,
    /// `agent apply` client peak RSS (KiB), without / with a `haproxy -c` child.
    rss: i64,
    rss_with_check: i64,
    /// The service's peak RSS over every host (KiB).
    service_rss: i64,
    /// Reloads by someone else: with the initial slot block put back, and with the
    /// pools in the agent's own file.
    shrunk: Recovery,
    own: Recovery,
}

/// Runs every measurement, in turn.
fn measure(args: &Args) -> anyhow::Result<Figures> {
    let mut rss = 0;
    let applies = applies(args, &mut rss)?;
    let mut service_rss = applies.service_rss;
    eprintln!("agent-bench: a launch during a 20 s drain, ten separate applies at once...");
    let ind = independence(args.reps)?;
    service_rss = service_rss.max(ind.rss_kb);
    eprintln!(
        "agent-bench: churn: {} add/remove cycles under HTTP load...",
        args.cycles
    );
    let mut rss_with_check = 0;
    let churn = churn(args.cycles, &mut rss, &mut rss_with_check, &mut service_rss)?;
    eprintln!(
        "agent-bench: reloads by someone else ({} each): a 4-slot haproxy.cfg put back, then an operator's haproxy.cfg beside the agent's own file...",
        args.reps
    );
    let shrunk = external_reload(args.reps.max(1), false)?;
    let own = external_reload(args.reps.max(1), true)?;
    Ok(Figures {
        applies,
        ind,
        churn,
        rss,
        rss_with_check,
        service_rss,
        shrunk,
        own,
    })
}

/// A row of the table: the figure, its value, its target.
type Row = (&'static str, String, &'static str);

/// The table's rows of applies, memory and independence.
fn apply_rows(f: &Figures) -> Vec<Row> {
    let (a, ind) = (&f.applies, &f.ind);
    vec![
        (
            "apply 1 member (ms, median, whole agent run)",
            format!("{:.1}", a.apply_1),
            "",
        ),
        ("apply 100 members (ms)", format!("{:.1}", a.apply_100), ""),
        (
            "apply 1000 members (ms, whole agent run)",
            format!("{:.1}", a.apply_1000),
            "",
        ),
        (
            "apply 1000 members, socket only (ms)",
            format!("{:.1}", a.socket_1000),
            "< 50",
        ),
        ("reloads during apply timing", a.reloads.to_string(), "0"),
        (
            "service peak RSS (KiB, VmHWM)",
            f.service_rss.to_string(),
            "< 15360",
        ),
        ("`agent apply` client peak RSS (KiB)", f.rss.to_string(), ""),
        (
            "  growth runs, incl. `haproxy -c` child (KiB)",
            f.rss_with_check.to_string(),
            "",
        ),
        (
            "rise: a lone member's change -> UP (ms)",
            format!("{:.0}", ind.rise_ms),
            "",
        ),
        (
            "launch during a 20 s drain -> UP (ms)",
            format!("{:.0}", ind.launch_during_drain_ms),
            "< rise + 200",
        ),
        (
            "10 separate applies at once -> all UP (ms)",
            format!("{:.0}", ind.burst_10_ms),
            "< rise + 1000",
        ),
    ]
}

/// The table's rows of the churn run.
fn churn_rows(c: &Churn) -> Vec<Row> {
    vec![
        ("churn cycles", c.cycles.to_string(), ""),
        ("churn seconds", format!("{:.1}", c.seconds), ""),
        ("churn requests", c.requests.to_string(), ""),
        ("churn failed requests", c.failed.to_string(), "0"),
        (
            "churn growths past the slots",
            c.growths_past_slots.to_string(),
            ">= 3",
        ),
        (
            "  reloads for them",
            c.reloads_past_slots.to_string(),
            if harness::process::haproxy_adds_servers() {
                "0"
            } else {
                "= growths"
            },
        ),
        ("churn reloads in all", c.growth_reloads.to_string(), ""),
        (
            "reloads while slots were free",
            c.reloads_while_free.to_string(),
            "0",
        ),
    ]
}

/// The table's rows of reloads by someone else.
fn reload_rows(f: &Figures) -> Vec<Row> {
    let (shrunk, own) = (&f.shrunk, &f.own);
    vec![
        (
            "reload by someone else -> all UP (ms, median)",
            format!("{:.0}", median(shrunk.ms.clone())),
            "< 1000",
        ),
        (
            "  slowest of them (ms)",
            format!("{:.0}", max(&shrunk.ms)),
            "< 1000",
        ),
        (
            "  with pools_config (ms, median)",
            format!("{:.0}", median(own.ms.clone())),
            "< 1000",
        ),
        (
            "  failed requests across them",
            format!(
                "{} of {}",
                shrunk.failed + own.failed,
                shrunk.requests + own.requests
            ),
            "0",
        ),
    ]
}

impl Figures {
    /// The figures as `--json` writes them.
    fn json(&self) -> serde_json::Value {
        let (a, c, ind) = (&self.applies, &self.churn, &self.ind);
        let (shrunk, own) = (&self.shrunk, &self.own);
        serde_json::json!({
            "apply_1_ms": a.apply_1,
            "apply_100_ms": a.apply_100,
            "apply_1000_ms": a.apply_1000,
            "apply_1000_socket_ms": a.socket_1000,
            "churn_cycles": c.cycles,
            "churn_requests": c.requests,
            "churn_failed_requests": c.failed,
            "reloads_while_slots_free": c.reloads_while_free,
            "growth_reloads": c.growth_reloads,
            "growths_past_slots": c.growths_past_slots,
            "reloads_past_slots": c.reloads_past_slots,
            "agent_peak_rss_kb": self.rss,
            "agent_growth_run_peak_rss_kb_incl_haproxy_check": self.rss_with_check,
            "service_rss_kb": self.service_rss,
            "rise_ms": ind.rise_ms,
            "launch_during_drain_ms": ind.launch_during_drain_ms,
            "burst_10_separate_applies_ms": ind.burst_10_ms,
            "haproxy_version": haproxy_version(),
            "external_reload_recovery_ms": median(shrunk.ms.clone()),
            "external_reload_recovery_max_ms": max(&shrunk.ms),
            "external_reload_recovery_pools_config_ms": median(own.ms.clone()),
            "external_reload_failed_requests": shrunk.failed + own.failed,
            "external_reload_requests": shrunk.requests + own.requests,
        })
    }
}

fn haproxy_version() -> String {
    std::process::Command::new(harness::process::haproxy_bin())
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_default()
}
