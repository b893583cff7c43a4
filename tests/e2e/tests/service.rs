//! The agent service: every member's join and drain runs on its own, so no change on a
//! host waits for another member's drain; a member in flight is taken over by a newer
//! change; a service killed at any moment resumes where it was.
//!
//! Real HAProxy (2.6, or `$HAPROXY_BIN`), real backend processes, the real `agent run` under a supervisor
//! that restarts it (as systemd does), real `agent apply` processes. Every wait is
//! bounded.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{self, backends, change, join_one, member, outcome};
use harness::{http, wait_for, Backend, Host, HostSpec, Load, PoolSpec};
use infra::{Change, OutcomeStatus, PoolName, Report};
use serde_json::Value;

fn host_with(pool: PoolSpec) -> Host {
    util::host_with("proxy-svc", pool)
}

/// What one `agent apply` gave.
struct Applied {
    report: Option<Report>,
    code: i32,
    stderr: String,
    /// When it returned.
    done: Instant,
}

impl Applied {
    /// What a finished `agent apply --wait --json` said, now.
    fn of(out: &std::process::Output) -> Self {
        Applied {
            report: Report::from_json(String::from_utf8_lossy(&out.stdout).trim()).ok(),
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            done: Instant::now(),
        }
    }
}

/// `agent apply --json` of `c` on its own thread.
fn apply_async(h: &Host, c: &Change) -> JoinHandle<Applied> {
    let config = h.config.clone();
    let text = c.to_json();
    std::thread::spawn(move || {
        let out = std::process::Command::new(harness::process::bin_path("agent").unwrap())
            .arg("--config")
            .arg(config)
            .args(["apply", "--wait", "--json", "--change", &text])
            .output()
            .unwrap();
        Applied::of(&out)
    })
}

fn slot_of<'a>(rows: &'a [Value], id: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["member"] == id)
}

/// Waits until `agent status` shows `id` in stage `stage`.
fn wait_stage(h: &Host, id: &str, stage: &str, within: Duration) {
    wait_for(within, || {
        let rows = h.status().ok()?;
        (slot_of(&rows, id)?["stage"] == stage).then_some(())
    })
    .unwrap_or_else(|| panic!("{id} never reached stage {stage}: {:?}", h.status()));
}

/// Every member the table holds is where HAProxy serves it, and every server HAProxy
/// runs belongs to a member: no slot lost or given twice.
fn table_matches_haproxy(h: &Host) {
    let rows = h.status().unwrap();
    let mut slots = BTreeSet::new();
    for r in &rows {
        if let Some(m) = r["member"].as_str() {
            assert!(
                slots.insert(r["slot"].to_string()),
                "slot given twice: {rows:?}"
            );
            assert_ne!(
                r["admin"], "maint",
                "{m} owns a slot in maintenance: {rows:?}"
            );
        } else {
            assert_eq!(
                r["admin"], "maint",
                "a server without an owner runs: {rows:?}"
            );
        }
    }
}

/// A host of `pool` and two backends named `first` and `second`; `i-<first>` joined
/// (UP), the other not yet.
fn first_of_two(pool: PoolSpec, first: &str, second: &str) -> (Host, Backend, Backend) {
    let h = host_with(pool);
    let (one, two) = (
        Backend::start(first, "127.0.0.1").unwrap(),
        Backend::start(second, "127.0.0.1").unwrap(),
    );
    let id = format!("i-{first}");
    let (r, _) = h
        .apply(&change(1, vec![member(&id, one.addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, &id).0, OutcomeStatus::Up, "{r:?}");
    (h, one, two)
}

/// A request through `h` that its backend answers slowly (`ms`; the client gives up
/// after `timeout`), sent while `b` is the only member so it lands there; waits (at
/// most 5 s) until `b` has it.
fn slow_request_to(
    h: &Host,
    b: &Backend,
    ms: u64,
    timeout: Duration,
) -> JoinHandle<std::io::Result<harness::http::Response>> {
    let fe = h.frontend("web");
    let slow = std::thread::spawn(move || http::get(fe, &format!("/slow?ms={ms}"), timeout));
    wait_for(Duration::from_secs(5), || {
        (b.served().ok()? == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the slow request reached {}", b.name));
    slow
}

#[test]
fn a_launch_during_a_long_drain_is_not_delayed() {
    let mut pool = PoolSpec::new("web", 4);
    pool.drain_timeout_s = 40.0;
    let (h, x, y) = first_of_two(pool, "x", "y");

    // A 20 s request lands on X, the only member.
    let fe = h.frontend("web");
    let slow = slow_request_to(&h, &x, 20_000, Duration::from_secs(60));

    // X leaves: its drain waits for the request.
    let removal = apply_async(&h, &change(2, vec![], &["i-x"]));
    wait_stage(&h, "i-x", "draining", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));

    // A second later Y launches; the reactor's change also names X, in transition.
    // Y serves within its rise: the launch waits for no other member's drain.
    let t = Instant::now();
    let launch = apply_async(&h, &change(3, vec![member("i-y", y.addr)], &["i-x"]));
    wait_stage(&h, "i-y", "up", Duration::from_secs(5));
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "Y waited {took:?}: a launch must not wait for another member's drain"
    );
    assert!(
        !launch.is_finished(),
        "change 3 waits for X's drain as well"
    );

    // X takes no new request; Y takes them all.
    let x_before = x.served().unwrap();
    for _ in 0..20 {
        let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.trim()), (200, "y"));
    }
    assert_eq!(
        x.served().unwrap(),
        x_before,
        "a draining member got new requests"
    );
    // X still holds its slot: its request is still open.
    let rows = h.status().unwrap();
    let xs = slot_of(&rows, "i-x").expect("X still holds its slot while draining");
    assert!(xs["sessions"].as_u64().unwrap_or(0) >= 1, "{xs}");

    let slow = slow.join().unwrap().unwrap();
    let slow_done = Instant::now();
    assert_eq!(
        (slow.status, slow.body.trim()),
        (200, "x"),
        "the in-flight request completed"
    );
    let removed = removal.join().unwrap();
    let rep = removed.report.expect("the removal reports");
    assert_eq!(
        outcome(&rep, "i-x"),
        (OutcomeStatus::Drained, String::new()),
        "{}",
        removed.stderr
    );
    assert!(
        removed.done + Duration::from_millis(50) >= slow_done,
        "X's slot was freed only after its sessions ended"
    );
    // Change 3, waiting, learned how X's drain (started by change 2) ended.
    let launched = launch.join().unwrap();
    assert_eq!(launched.code, 0, "{}", launched.stderr);
    let rep = launched.report.expect("change 3 reports");
    assert_eq!(outcome(&rep, "i-y").0, OutcomeStatus::Up, "{rep:?}");
    assert_eq!(outcome(&rep, "i-x").0, OutcomeStatus::Drained, "{rep:?}");
    assert!(slot_of(&h.status().unwrap(), "i-x").is_none());
    table_matches_haproxy(&h);
}

#[test]
fn ten_separate_applies_at_once_all_come_up_within_the_rise() {
    let h = host_with(PoolSpec::new("web", 16));
    let backends = backends("b", 10);
    let go = Arc::new(Barrier::new(11));
    let runs: Vec<JoinHandle<Applied>> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let c = change(10 + i as u64, vec![member(&format!("i-{i}"), b.addr)], &[]);
            let (config, go) = (h.config.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                let out = std::process::Command::new(harness::process::bin_path("agent").unwrap())
                    .arg("--config")
                    .arg(config)
                    .args(["apply", "--wait", "--json", "--change", &c.to_json()])
                    .output()
                    .unwrap();
                Applied::of(&out)
            })
        })
        .collect();
    go.wait();
    let t = Instant::now();
    let done: Vec<Applied> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let all = t.elapsed();
    let mut rise = Duration::ZERO;
    for (i, a) in done.iter().enumerate() {
        let r = a.report.as_ref().unwrap_or_else(|| panic!("{}", a.stderr));
        assert_eq!(a.code, 0);
        let o = &r.outcomes[0];
        assert_eq!(
            (o.member.as_str(), o.status),
            (format!("i-{i}").as_str(), OutcomeStatus::Up)
        );
        rise = rise.max(Duration::from_millis(o.ms));
    }
    // One at a time would take ten rises; side by side it takes one.
    assert!(
        all < rise + Duration::from_secs(1),
        "10 applies took {all:?} with a rise of {rise:?}"
    );
    assert_eq!(h.assignments().unwrap().len(), 10);
    table_matches_haproxy(&h);
}

#[test]
fn a_newer_change_takes_over_a_member_in_flight_under_load() {
    let mut pool = PoolSpec::new("web", 8);
    pool.health_path = Some("/healthz".into());
    pool.health_timeout_s = 15.0;
    pool.drain_timeout_s = 30.0;
    let (h, a, b) = first_of_two(pool, "a", "b");
    let fe = h.frontend("web");
    // A request in flight keeps A draining.
    let slow = slow_request_to(&h, &a, 4_000, Duration::from_secs(30));
    let (r, _) = h
        .apply(&change(2, vec![member("i-b", b.addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-b").0, OutcomeStatus::Up);
    let load = Load::start(fe, 2, Duration::from_secs(60), 1_000_000);

    // Re-added while draining: back to serving at once; the drain's caller hears why.
    let removal = apply_async(&h, &change(3, vec![], &["i-a"]));
    wait_stage(&h, "i-a", "draining", Duration::from_secs(5));
    let t = Instant::now();
    let (r, _) = h
        .apply(&change(4, vec![member("i-a", a.addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-a").0, OutcomeStatus::Up, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "re-added in {:?}",
        t.elapsed()
    );
    let removed = removal.join().unwrap();
    let (status, reason) = outcome(removed.report.as_ref().unwrap(), "i-a");
    assert_eq!(status, OutcomeStatus::Stale, "{reason}");
    assert!(reason.contains("added again at generation 4"), "{reason}");
    let before = a.served().unwrap();
    wait_for(Duration::from_secs(5), || {
        (a.served().ok()? > before).then_some(())
    })
    .expect("A serves new requests again");
    assert_eq!(slow.join().unwrap().unwrap().status, 200);

    // Removed while joining: C never passes its checks; its join stops and its slot is
    // released at once.
    let c = Backend::start_unhealthy("c", "127.0.0.1").unwrap();
    let join = apply_async(&h, &change(5, vec![member("i-c", c.addr)], &[]));
    wait_stage(&h, "i-c", "joining", Duration::from_secs(5));
    let (r, _) = h.apply(&change(6, vec![], &["i-c"])).unwrap();
    let (status, reason) = outcome(&r, "i-c");
    assert_eq!(status, OutcomeStatus::Drained, "{r:?}");
    assert!(reason.contains("removed while joining"), "{reason}");
    let joined = join.join().unwrap();
    let (status, reason) = outcome(joined.report.as_ref().unwrap(), "i-c");
    assert_eq!(status, OutcomeStatus::Stale, "{reason}");
    assert!(reason.contains("removed at generation 6"), "{reason}");
    assert!(slot_of(&h.status().unwrap(), "i-c").is_none());

    let stats = load.stop();
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    assert!(stats.requests > 0);
    assert_eq!(
        c.served().unwrap(),
        0,
        "a member that never passed its checks took requests"
    );
    table_matches_haproxy(&h);
}

/// Growth with a reload (a `static-rr` pool, which HAProxy cannot add servers to at
/// runtime; any pool on 2.6): two changes needing new slots at once share one reload.
#[test]
fn two_concurrent_changes_that_need_new_slots_share_one_reload() {
    let h = host_with(PoolSpec::new("web", 2).static_rr());
    let backends = backends("g", 4);
    let (r, _) = h
        .apply(&change(
            1,
            vec![
                member("i-0", backends[0].addr),
                member("i-1", backends[1].addr),
            ],
            &[],
        ))
        .unwrap();
    assert!(r.ok, "{r:?}");
    let load = Load::start(h.frontend("web"), 2, Duration::from_secs(60), 1_000_000);
    let first = apply_async(&h, &change(2, vec![member("i-2", backends[2].addr)], &[]));
    let second = apply_async(&h, &change(3, vec![member("i-3", backends[3].addr)], &[]));
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    for (a, id) in [(&first, "i-2"), (&second, "i-3")] {
        let r = a.report.as_ref().unwrap_or_else(|| panic!("{}", a.stderr));
        assert_eq!(outcome(r, id).0, OutcomeStatus::Up, "{r:?}");
    }
    assert_eq!(h.reloads().unwrap(), 1, "one reload served both changes");
    let cfg = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    assert!(cfg.contains("server-template slot 1-4 "), "{cfg}");
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    table_matches_haproxy(&h);
}

#[test]
fn a_killed_service_resumes_drains_joins_and_reloads_and_no_request_fails() {
    // `static-rr`: the growth below reloads on every version (killed mid-reload).
    let mut pool = PoolSpec::new("web", 4).static_rr();
    // A join takes ~2 s (20 checks 100 ms apart): time to kill the service mid-join.
    pool.server_options = "check inter 100ms fall 2 rise 20".into();
    pool.health_timeout_s = 20.0;
    pool.drain_timeout_s = 30.0;
    let h = host_with(pool);
    let backends = backends("k", 8);
    let fe = h.frontend("web");
    let (r, _) = h
        .apply(&change(1, vec![member("i-0", backends[0].addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-0").0, OutcomeStatus::Up);
    let slow = std::thread::spawn(move || http::get(fe, "/slow?ms=6000", Duration::from_secs(60)));
    wait_for(Duration::from_secs(5), || {
        (backends[0].served().ok()? == 1).then_some(())
    })
    .expect("the slow request reached i-0");
    let (r, _) = h
        .apply(&change(2, vec![member("i-1", backends[1].addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-1").0, OutcomeStatus::Up);
    let load = Load::start(fe, 2, Duration::from_secs(120), 1_000_000);

    killed_mid_drain(&h, slow);
    killed_mid_join(&h, &backends);
    killed_mid_reload(&h, &backends);

    let stats = load.stop();
    assert_eq!(
        stats.failed, 0,
        "requests failed across the kills: {:?}",
        stats.errors
    );
    assert!(stats.requests > 100, "{stats:?}");
}

/// The service killed while i-0 drains (a slow request in flight on it, `slow`): the
/// drain resumes with what was left of its timeout, the request completes, and the
/// same change sent again converges.
fn killed_mid_drain(h: &Host, slow: JoinHandle<std::io::Result<http::Response>>) {
    let removal = apply_async(h, &change(3, vec![], &["i-0"]));
    wait_stage(h, "i-0", "draining", Duration::from_secs(5));
    let ops = h.operations().unwrap();
    let left = ops[0]["deadline_in_s"].as_f64().unwrap();
    h.kill_service().expect("the service was running");
    let cut = removal.join().unwrap();
    assert_eq!(cut.code, 2, "{}", cut.stderr);
    assert!(cut.stderr.contains("stopped answering"), "{}", cut.stderr);
    h.wait_service(Duration::from_secs(10)).unwrap();
    let ops = h.operations().unwrap();
    let drain = ops
        .iter()
        .find(|o| o["member"] == "i-0")
        .expect("the drain resumed");
    assert_eq!(drain["kind"], "drain");
    assert!(
        drain["deadline_in_s"].as_f64().unwrap() < left,
        "the drain goes on with what was left of its timeout: {drain}"
    );
    assert_eq!(
        slow.join().unwrap().unwrap().status,
        200,
        "the in-flight request completed"
    );
    wait_for(Duration::from_secs(10), || {
        slot_of(&h.status().ok()?, "i-0").is_none().then_some(())
    })
    .expect("i-0's drain finished after the restart");
    // Sending the same change again converges.
    let (r, _) = h.apply(&change(3, vec![], &["i-0"])).unwrap();
    assert_eq!(outcome(&r, "i-0").0, OutcomeStatus::Drained, "{r:?}");
}

/// The service killed while i-2 joins: the join goes on to UP, and the same change sent
/// again converges.
fn killed_mid_join(h: &Host, backends: &[Backend]) {
    let join = apply_async(h, &change(4, vec![member("i-2", backends[2].addr)], &[]));
    wait_stage(h, "i-2", "joining", Duration::from_secs(5));
    h.kill_service().expect("the service was running");
    assert_eq!(join.join().unwrap().code, 2);
    h.wait_service(Duration::from_secs(10)).unwrap();
    wait_stage(h, "i-2", "up", Duration::from_secs(10));
    let (r, _) = h
        .apply(&change(4, vec![member("i-2", backends[2].addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-2").0, OutcomeStatus::Up, "{r:?}");
    table_matches_haproxy(h);
}

/// Mid-reload: `haproxy -c` made slow, the service killed while it validates the
/// grown configuration (nothing of it stays), then again right after the reload took
/// (the change sent again converges without a second reload).
fn killed_mid_reload(h: &Host, backends: &[Backend]) {
    let wrapper = h.dir().join("slow-haproxy");
    let haproxy = harness::process::haproxy_bin();
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nsleep 1.5\nexec {} \"$@\"\n", haproxy.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = std::fs::read_to_string(&h.config).unwrap();
    let binary = format!("binary = \"{}\"\n", haproxy.display());
    assert!(cfg.contains(&binary), "{cfg}");
    std::fs::write(
        &h.config,
        cfg.replace(&binary, &format!("binary = \"{}\"\n", wrapper.display())),
    )
    .unwrap();
    h.kill_service();
    h.wait_service(Duration::from_secs(10)).unwrap();
    let cfg_before = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    let grow = change(
        5,
        (3..6)
            .map(|i| member(&format!("i-{i}"), backends[i].addr))
            .collect(),
        &[],
    );
    let run = apply_async(h, &grow);
    let candidate = h.dir().join(".haproxy.cfg.agent-new");
    wait_for(Duration::from_secs(5), || candidate.exists().then_some(()))
        .expect("the grown configuration is being validated");
    h.kill_service();
    assert_eq!(run.join().unwrap().code, 2);
    h.wait_service(Duration::from_secs(10)).unwrap();
    assert!(!candidate.exists(), "the candidate file is cleaned up");
    assert_eq!(
        std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap(),
        cfg_before
    );
    assert_eq!(h.reloads().unwrap(), 0);
    table_matches_haproxy(h);
    // Again, killed as soon as the reload took.
    let run = apply_async(h, &grow);
    wait_for(Duration::from_secs(15), || {
        (h.reloads().ok()? == 1).then_some(())
    })
    .expect("the reload took");
    h.kill_service();
    let _ = run.join().unwrap();
    h.wait_service(Duration::from_secs(10)).unwrap();
    let (r, _) = h.apply(&grow).unwrap();
    assert!(r.ok, "{r:?}");
    for i in 3..6 {
        assert_eq!(outcome(&r, &format!("i-{i}")).0, OutcomeStatus::Up, "{r:?}");
    }
    assert_eq!(h.reloads().unwrap(), 1, "no second reload");
    assert!(
        h.service_restarts() >= 5,
        "the supervisor restarted the service each time"
    );
    table_matches_haproxy(h);
}

/// `agent apply` returns as soon as the service accepted the change (what Run Command
/// runs: no health rise holds it), and `--wait` waits for the outcome.
#[test]
fn apply_returns_once_accepted_and_wait_waits() {
    let b = Backend::start("slow", "127.0.0.1").expect("backend");
    let mut pool = PoolSpec::new("web", 4);
    pool.server_options = "check inter 500ms fall 2 rise 3".into();
    let h = host_with(pool);
    let t = Instant::now();
    let run = h
        .apply_arg(&["--json"], &change(1, vec![member("i-acc", b.addr)], &[]))
        .expect("apply");
    let quick = t.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = Report::from_json(run.stdout.trim()).expect("report");
    assert_eq!(
        outcome(&report, "i-acc").0,
        OutcomeStatus::Pending,
        "{report:?}"
    );
    assert!(
        outcome(&report, "i-acc").1.contains("started"),
        "{report:?}"
    );
    assert!(
        quick < Duration::from_millis(1000),
        "apply waited {quick:?} for a rise of 1.5 s"
    );
    // The human form says where the outcomes go.
    let run = h
        .apply_arg(&[], &change(2, vec![], &["i-none"]))
        .expect("apply");
    assert!(run.stdout.contains("accepted 1 members"), "{}", run.stdout);
    // --wait waits for the rise (another backend: one address, one member).
    let b2 = Backend::start("slow-2", "127.0.0.1").expect("backend");
    let t = Instant::now();
    let (report, run) = h
        .apply(&change(3, vec![member("i-acc2", b2.addr)], &[]))
        .expect("apply --wait");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(outcome(&report, "i-acc2").0, OutcomeStatus::Up);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "--wait returned before three checks"
    );
}

/// A waiting `agent apply --wait` whose service stops is not told "ok": it exits 2 with
/// the member `pending` and why (it used to exit 0 with `"ok":true` and no outcome).
#[test]
fn a_wait_cut_short_by_the_service_stopping_is_no_success() {
    let b = Backend::start("cut", "127.0.0.1").expect("backend");
    let mut pool = PoolSpec::new("web", 4);
    // A rise of 20 checks 500 ms apart: the join is still running when the service stops.
    pool.server_options = "check inter 500ms fall 2 rise 20".into();
    let h = host_with(pool);
    let waiting = apply_async(&h, &change(1, vec![member("i-cut", b.addr)], &[]));
    wait_stage(&h, "i-cut", "joining", Duration::from_secs(10));
    h.stop_service();
    let applied = waiting.join().expect("apply thread");
    assert_eq!(applied.code, 2, "{}", applied.stderr);
    let report = applied.report.expect("a JSON report");
    assert!(!report.ok, "{report:?}");
    let (status, reason) = outcome(&report, "i-cut");
    assert_eq!(status, OutcomeStatus::Pending, "{report:?}");
    assert!(reason.contains("stopped"), "{reason}");
}

/// `agent status` summarises first, filters by pool and to the used slots, and still
/// answers when HAProxy is down (the agent's own table, HAProxy's columns `?`).
#[test]
fn status_summarises_filters_and_answers_with_haproxy_down() {
    let b = Backend::start("stat", "127.0.0.1").expect("backend");
    let mut h = host_with(PoolSpec::new("web", 4));
    join_one(&h, 1, "i-stat", b.addr);
    let run = h.agent(&["status", "--used"], None).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first, "web: 1 members (0 joining, 1 up, 0 draining); 1 of 4 slots used, 3 free",
        "{}",
        run.stdout
    );
    let slot_rows = run.stdout.lines().filter(|l| l.starts_with("web ")).count();
    assert_eq!(
        slot_rows, 1,
        "--used shows the member's slot only: {}",
        run.stdout
    );
    let run = h.agent(&["status", "--pool", "nope"], None).unwrap();
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("unknown pool nope"), "{}", run.stderr);
    h.stop_haproxy();
    let run = h.agent(&["status"], None).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("HAProxy does not answer"),
        "{}",
        run.stdout
    );
    let row = run
        .stdout
        .lines()
        .find(|l| l.contains("i-stat"))
        .unwrap_or_else(|| panic!("the member from the table: {}", run.stdout));
    assert!(row.contains(" ? ") && row.contains("up"), "{row}");
    for role in ["admin", "master"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{role} socket "))
                    && l.contains(": does not answer (")),
            "{}",
            run.stdout
        );
    }
}

/// A master socket that does not answer is said at start, with the right fix (HAProxy in
/// master-worker mode with that socket), not first at a growth, long after.
#[test]
fn a_master_socket_that_does_not_answer_is_said_at_start() {
    let mut h = host_with(PoolSpec::new("web", 4));
    let toml = std::fs::read_to_string(&h.config).unwrap();
    let line = toml
        .lines()
        .find(|l| l.starts_with("master_socket"))
        .expect("a master_socket line")
        .to_string();
    let nowhere = h.dir().join("nowhere.sock");
    let toml = toml.replace(&line, &format!("master_socket = \"{}\"", nowhere.display()));
    std::fs::write(&h.config, toml).unwrap();
    h.stop_service();
    h.start_service().unwrap();
    wait_for(Duration::from_secs(10), || {
        let log = h.agent_log();
        (log.contains("master socket") && log.contains("does not answer") && log.contains("-W -S"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no start-up warning: {}", h.agent_log()));
}

/// The human summary of `agent apply --wait` counts a STALE member apart: it did not
/// reach the target this message asked for (a newer message rules it).
#[test]
fn a_stale_member_is_counted_apart_from_those_that_reached_their_target() {
    let b = Backend::start("st", "127.0.0.1").expect("backend");
    let h = host_with(PoolSpec::new("web", 4));
    join_one(&h, 5, "i-st", b.addr);
    let older = change(4, vec![], &["i-st"]).to_json();
    let run = h
        .agent(&["apply", "--wait", "--change", &older], None)
        .unwrap();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("1 members, 0 reached their target, 0 failed, 1 stale"),
        "{}",
        run.stdout
    );
}

/// A state directory that cannot be written (full, read-only) refuses joins, which need
/// their intent on disk first, but never a drain: taking traffic away must not wait for
/// a disk.
#[test]
fn a_state_directory_that_cannot_be_written_still_drains() {
    let b = Backend::start("ro", "127.0.0.1").expect("backend");
    let other = Backend::start("ro-2", "127.0.0.1").expect("backend");
    let h = host_with(PoolSpec::new("web", 4));
    join_one(&h, 1, "i-ro", b.addr);
    // The slot table can no longer be replaced (as root, permissions would not stop it:
    // a directory where its file goes does).
    let table = h.dir().join("state").join("slots.json");
    assert!(table.exists(), "{}", table.display());
    std::fs::remove_file(&table).unwrap();
    std::fs::create_dir(&table).unwrap();
    let join = h
        .apply_arg(
            &["--wait", "--json"],
            &change(2, vec![member("i-ro-2", other.addr)], &[]),
        )
        .unwrap();
    assert_eq!(
        join.code, 2,
        "a join without its intent on disk: {}",
        join.stdout
    );
    let drain = h.apply(&change(3, vec![], &["i-ro"])).expect("apply");
    assert_eq!(
        outcome(&drain.0, "i-ro").0,
        OutcomeStatus::Drained,
        "{}",
        drain.1.stderr
    );
    let rows = h.status().unwrap();
    assert!(slot_of(&rows, "i-ro").is_none(), "{rows:?}");
    assert!(
        h.agent_log().contains("draining anyway"),
        "{}",
        h.agent_log()
    );
}

/// The service's reports reach the reactor's inbox through an SQS outage and a restart:
/// retried with backoff while SendMessage fails (counted), kept in the outbox file
/// across a stop, and sent by the next service, from the host's own session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_survive_an_sqs_outage_and_a_restart_of_the_service() {
    let w = harness::World::start(None).await.expect("world");
    let path = w.control_path("reactor", &[]).expect("control path");
    let b = Backend::start("reported", "127.0.0.1").expect("backend");
    let mut pool = PoolSpec::new("web", 4);
    pool.server_options = "check inter 100ms fall 2 rise 1".into();
    let subnet = w.add_subnet("127.0.2.0/24").await.expect("subnet");
    let metrics: SocketAddr = format!("127.0.0.1:{}", harness::free_port())
        .parse()
        .unwrap();
    let spec = HostSpec {
        name: String::new(),
        pools: vec![pool],
        extra_toml: format!("\n[metrics]\nagent = \"{metrics}\"\n"),
        env: Vec::new(),
    };
    let mut hosts = w
        .proxy_fleet(&path, &subnet, vec![spec])
        .await
        .expect("proxy");
    let mut h = hosts.remove(0);
    let fault = serde_json::json!({"service": "sqs", "action": "SendMessage", "code": "ServiceUnavailable", "status": 503, "count": -1});
    w.emulator
        .control("POST", "/moto-ext/faults", Some(&fault))
        .expect("fault");
    let (report, _) = h
        .apply(&change(7, vec![member("i-rep", b.addr)], &[]))
        .expect("apply");
    assert_eq!(outcome(&report, "i-rep").0, OutcomeStatus::Up);
    let failing = wait_for(Duration::from_secs(10), || {
        let m = harness::metrics::scrape(metrics).ok()?;
        (m.value("haproxy_asg_agent_report_send_failures_total", &[])? >= 1.0).then_some(m)
    })
    .expect("failed sends are counted");
    assert_eq!(
        failing.value("haproxy_asg_agent_reports_pending", &[]),
        Some(1.0)
    );
    assert_eq!(
        failing.value("haproxy_asg_agent_reports_sent_total", &[]),
        Some(0.0)
    );
    // Stopped with the report unsent: it is in the outbox file.
    h.stop_service();
    let outbox = std::fs::read_to_string(h.dir().join("state/reports.json")).expect("outbox");
    assert!(outbox.contains("i-rep"), "{outbox}");
    w.emulator
        .control("DELETE", "/moto-ext/faults", None)
        .expect("clear");
    assert!(
        w.receive_records(&path.inbox, 0)
            .expect("receive")
            .is_empty(),
        "nothing got through the outage"
    );
    h.start_service().expect("restart");
    let got = wait_for(Duration::from_secs(20), || {
        let r = w.receive_records(&path.inbox, 1).ok()?;
        (!r.is_empty()).then_some(r)
    })
    .expect("the report arrives after the restart");
    assert_eq!(
        got[0].attributes["SenderId"],
        Value::from(format!("{}:{}", path.role_id, h.name))
    );
    let body = infra::HostReport::from_json(&got[0].body).expect("a host report");
    assert_eq!(body.host.as_str(), h.name);
    assert_eq!(
        (
            body.reports[0].member.as_str(),
            body.reports[0].status,
            body.reports[0].generation
        ),
        ("i-rep", OutcomeStatus::Up, 7)
    );
}

/// A waiting `agent sync` that finds a member still joining under an earlier change (the
/// service's own start-up sync, a `--no-wait` apply) waits for that join and reports its
/// outcome: it is not a member "without an outcome" and the sync exits 0.
#[test]
fn a_waiting_sync_waits_for_a_member_already_joining() {
    let b = Backend::start("joining", "127.0.0.1").expect("backend");
    let mut pool = PoolSpec::new("web", 4);
    // A rise of 6 checks 500 ms apart: the join takes about 3 s.
    pool.server_options = "check inter 500ms fall 2 rise 6".into();
    let h = host_with(pool);
    let accepted = h
        .apply_arg(&[], &change(1, vec![member("i-j", b.addr)], &[]))
        .expect("apply");
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
    wait_stage(&h, "i-j", "joining", Duration::from_secs(5));
    let desired = h.dir().join("desired.json");
    let d = infra::Desired::new(
        2,
        vec![infra::PoolDesired {
            pool: PoolName::new("web").unwrap(),
            members: vec![member("i-j", b.addr)],
        }],
    );
    std::fs::write(&desired, d.to_json()).unwrap();
    let run = h
        .agent(&["sync", "--desired", desired.to_str().unwrap()], None)
        .expect("sync");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("1 members, 1 reached their target, 0 failed, 0 stale"),
        "{}",
        run.stdout
    );
    assert_eq!(
        slot_of(&h.status().unwrap(), "i-j").map(|r| r["stage"].clone()),
        Some(Value::from("up"))
    );
}

/// SIGHUP (the unit's `systemctl reload`) re-reads agent.toml: a limit lowered there holds
/// at once in the same process; a file that does not read, or that moves the state
/// directory the process holds, is refused with a log line and changes nothing.
#[test]
fn sighup_rereads_agent_toml_and_refuses_what_cannot_change_in_place() {
    let h = host_with(PoolSpec::new("web", 4));
    let pid = h.service_pid().expect("the service runs");
    let (a, b) = (
        Backend::start("hup-a", "127.0.0.1").unwrap(),
        Backend::start("hup-b", "127.0.0.1").unwrap(),
    );
    let hup = |h: &Host, says: &str| h.hup_service(says).unwrap();
    let toml = std::fs::read_to_string(&h.config).unwrap();
    // Lowered: one member per message in pool web.
    let lowered = toml.replacen("name = \"web\"\n", "name = \"web\"\nmax_members = 1\n", 1);
    std::fs::write(&h.config, &lowered).unwrap();
    hup(&h, "[[pool]] changed");
    h.wait_service(Duration::from_secs(10)).unwrap();
    let two = change(1, vec![member("i-a", a.addr), member("i-b", b.addr)], &[]);
    let run = h
        .agent(&["apply", "--change", &two.to_json()], None)
        .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("max_members = 1"), "{}", run.stderr);
    assert_eq!(h.service_pid(), Some(pid), "the same process");

    // A file that does not read: refused, the service goes on with what it had.
    std::fs::write(&h.config, "[haproxy\n").unwrap();
    hup(&h, "does not read, so nothing changed");
    // (The command line reads the file too: put it back for `agent apply`.)
    std::fs::write(&h.config, &lowered).unwrap();
    let run = h
        .apply_arg(&[], &change(2, vec![member("i-a", a.addr)], &[]))
        .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A state directory the running process holds: refused by name.
    std::fs::write(&h.config, lowered.replace("/state\"", "/elsewhere\"")).unwrap();
    hup(&h, "SIGHUP: [haproxy] state_dir");
    assert_eq!(h.service_pid(), Some(pid));
    assert_eq!(h.service_restarts(), 0, "{}", h.agent_log());
}

/// Ctrl-C on a waiting `agent apply --wait` stops only the command: it says so and that
/// the service carries the change on (naming it), exits 130, and the member still joins.
#[test]
fn an_interrupted_apply_says_the_service_carries_the_change_on() {
    let b = Backend::start("int", "127.0.0.1").unwrap();
    let mut pool = PoolSpec::new("web", 4);
    // A rise of 4 checks 500 ms apart: the join is running when Ctrl-C comes.
    pool.server_options = "check inter 500ms fall 2 rise 4".into();
    let h = host_with(pool);
    let child = std::process::Command::new(harness::process::bin_path("agent").unwrap())
        .arg("--config")
        .arg(&h.config)
        .args(["apply", "--wait", "--change"])
        .arg(change(7, vec![member("i-int", b.addr)], &[]).to_json())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_stage(&h, "i-int", "joining", Duration::from_secs(5));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: only this command stopped; the service carries change 7 on"),
        "{err}"
    );
    wait_stage(&h, "i-int", "up", Duration::from_secs(10));
}

/// An operator's reload that HAProxy refuses leaves its old worker serving (which then
/// counts one reload survived, on every version). A service started meanwhile still
/// knows that worker as the one serving, so the operator's next, good reload is seen as
/// someone else's and what its new worker lacks is restored.
#[test]
fn a_good_reload_after_a_refused_one_is_seen_and_restored() {
    let b = Backend::start("fr", "127.0.0.1").unwrap();
    let h = host_with(PoolSpec::new("web", 4));
    let (r, run) = h
        .apply(&change(1, vec![member("i-fr", b.addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-fr").0, OutcomeStatus::Up, "{}", run.stderr);

    let cfg = h.dir().join("haproxy.cfg");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\nnot-a-keyword here\n")).unwrap();
    let _ = h.client().master("reload");
    wait_for(Duration::from_secs(10), || {
        (h.client().proc_info().ok()?.failed == 1).then_some(())
    })
    .expect("HAProxy refused the broken file");
    std::fs::write(&cfg, &good).unwrap();
    // The service starts again while the refused reload's worker serves.
    h.kill_service();
    h.wait_service(Duration::from_secs(10)).unwrap();
    wait_stage(&h, "i-fr", "up", Duration::from_secs(5));

    let _ = h.client().master("reload");
    wait_for(Duration::from_secs(5), || {
        (h.status_all().ok()?["external_reloads"] == 1).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the operator's reload was not seen: {:?}\n{}",
            h.status_all(),
            h.agent_log()
        )
    });
    // HAProxy's new worker serves the member again.
    wait_for(Duration::from_secs(5), || {
        let rows = h.status().ok()?;
        (slot_of(&rows, "i-fr")?["status"] == "UP").then_some(())
    })
    .unwrap_or_else(|| panic!("i-fr lost: {:?}\n{}", h.status(), h.agent_log()));
    assert!(http::get(h.frontend("web"), "/", Duration::from_secs(5)).is_ok());
}
