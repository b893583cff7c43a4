//! The agent against a real HAProxy (Debian 12's 2.6, or `$HAPROXY_BIN`: `scripts/test` runs
//! it again against 3.0 and 3.2) and real backend processes.
//!
//! Each test starts its own HAProxy (master-worker) in a temp dir, its own backends on
//! loopback, and drives the real `agent` binary. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::util::{
    self, all, backends, change, member, members_of, outcome, servers_state, without_times,
};
use harness::process::bin_path;
use harness::{free_port, http, wait_for, Backend, Host, HostSpec, Load, PoolSpec};
use infra::{OutcomeStatus, Report};

fn host(slots: u32) -> Host {
    host_with(PoolSpec::new("web", slots))
}

/// A pool HAProxy cannot add servers to at runtime (`balance static-rr`): it grows with a
/// reload on every version, so the tests of the reload path hold on each.
fn reload_host(slots: u32) -> Host {
    host_with(PoolSpec::new("web", slots).static_rr())
}

fn host_with(pool: PoolSpec) -> Host {
    util::host_with("proxy-test", pool)
}

fn statuses(r: &Report) -> Vec<(String, OutcomeStatus)> {
    r.outcomes
        .iter()
        .map(|o| (o.member.to_string(), o.status))
        .collect()
}

#[test]
fn freed_slots_are_reused_and_reapplying_changes_nothing() {
    let h = host(4);
    let (a, b, c, d) = (
        Backend::start("a", "127.0.0.1").unwrap(),
        Backend::start("b", "127.0.0.1").unwrap(),
        Backend::start("c", "127.0.0.1").unwrap(),
        Backend::start("d", "127.0.0.1").unwrap(),
    );
    let (r, run) = h
        .apply(&change(
            1,
            vec![
                member("i-a", a.addr),
                member("i-b", b.addr),
                member("i-c", c.addr),
            ],
            &[],
        ))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?} {}", run.stderr);
    let before = h.assignments().unwrap();
    assert_eq!(before["i-b"], "slot2");

    let (r, _) = h.apply(&change(2, vec![], &["i-b"])).unwrap();
    assert_eq!(statuses(&r), vec![("i-b".into(), OutcomeStatus::Drained)]);
    let (r, _) = h
        .apply(&change(3, vec![member("i-d", d.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");
    let after = h.assignments().unwrap();
    assert_eq!(after["i-d"], "slot2", "the freed slot is reused: {after:?}");
    assert_eq!(after["i-a"], before["i-a"]);
    assert_eq!(after["i-c"], before["i-c"]);

    // The same message again: same outcome, HAProxy untouched.
    let state = servers_state(&h);
    let (r, run) = h
        .apply(&change(3, vec![member("i-d", d.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");
    assert_eq!(run.code, 0);
    assert_eq!(servers_state(&h), state);
    assert_eq!(h.reloads().unwrap(), 0);
}

#[test]
fn membership_changes_never_reload_while_slots_are_free() {
    let h = host(4);
    let backends = backends("b", 3);
    let mut gen = 0;
    for cycle in 0..3 {
        for (i, b) in backends.iter().enumerate() {
            gen += 1;
            let (r, _) = h
                .apply(&change(
                    gen,
                    vec![member(&format!("i-{cycle}-{i}"), b.addr)],
                    &[],
                ))
                .unwrap();
            assert!(all(&r, OutcomeStatus::Up), "{r:?}");
            assert_eq!(r.reloads, 0);
        }
        gen += 1;
        let ids: Vec<String> = (0..3).map(|i| format!("i-{cycle}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (r, _) = h.apply(&change(gen, vec![], &ids)).unwrap();
        assert!(all(&r, OutcomeStatus::Drained), "{r:?}");
    }
    assert_eq!(h.reloads().unwrap(), 0, "no reload while free slots exist");
    let cfg = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    assert!(cfg.contains("server-template slot 1-4 "), "{cfg}");
}

/// A pool whose balance algorithm cannot take servers added at runtime (`static-rr`;
/// on 2.6 any pool) grows its slot block with one hitless reload.
#[test]
fn growth_reloads_once_and_no_request_fails_across_it() {
    let h = reload_host(2);
    let first = Backend::start("first", "127.0.0.1").unwrap();
    let (r, _) = h
        .apply(&change(1, vec![member("i-first", first.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");

    let load = Load::start(h.frontend("web"), 4, Duration::from_secs(60), 1_000_000);
    wait_for(Duration::from_secs(5), || {
        (load.completed() > 50).then_some(())
    });
    let more = backends("n", 5);
    let add = members_of(&more);
    let (r, run) = h.apply(&change(2, add, &[])).unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?} {}", run.stderr);
    assert_eq!(r.reloads, 1, "one reload for the growth");
    // Requests keep flowing after the reload, and reach the new members.
    let served_before = load.completed();
    wait_for(Duration::from_secs(5), || {
        (load.completed() > served_before + 200).then_some(())
    });
    let stats = load.stop();
    assert_eq!(
        stats.failed, 0,
        "failed requests across the growth reload: {:?}",
        stats.errors
    );
    assert!(stats.requests > 250, "{stats:?}");
    assert!(
        more.iter()
            .any(|b| stats.by_backend.get(&b.name).copied().unwrap_or(0) > 0),
        "{stats:?}"
    );
    assert_eq!(h.reloads().unwrap(), 1);
    let cfg = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    assert!(cfg.contains("server-template slot 1-8 "), "{cfg}");
    // Why it reloads, in the log and in `agent config check`: the pool's balance
    // algorithm, or on 2.6 the version.
    let check = h.agent(&["config", "check"], None).unwrap().stdout;
    if harness::process::haproxy_adds_servers() {
        let log = h.agent_log();
        assert!(
            log.contains("growing the block with a reload (backend web uses `balance static-rr`"),
            "{log}"
        );
        assert!(
            check.contains("warning: pool web grows past its slots with a reload, not with servers added at runtime: backend web uses `balance static-rr`"),
            "{check}"
        );
    } else {
        assert!(
            check.contains("grows a pool past its slots with a hitless reload (HAProxy 2.6 could crash deleting a server that still had streams"),
            "{check}"
        );
    }
    // The new worker has every assignment.
    let a = h.assignments().unwrap();
    assert_eq!(a.len(), 6, "{a:?}");
}

#[test]
fn drain_lets_an_inflight_request_finish_and_sends_no_new_requests() {
    let mut pool = PoolSpec::new("web", 4);
    pool.drain_timeout_s = 20.0;
    let h = host_with(pool);
    let (a, b) = (
        Backend::start("a", "127.0.0.1").unwrap(),
        Backend::start("b", "127.0.0.1").unwrap(),
    );
    let (r, _) = h
        .apply(&change(1, vec![member("i-b", b.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");

    // A slow request lands on b, the only member.
    let fe = h.frontend("web");
    let slow = std::thread::spawn(move || http::get(fe, "/slow?ms=2500", Duration::from_secs(20)));
    wait_for(Duration::from_secs(5), || {
        (b.served().ok()? == 1).then_some(())
    })
    .expect("slow request reached b");

    let (r, _) = h
        .apply(&change(2, vec![member("i-a", a.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");

    let started = Instant::now();
    let config = h.config.clone();
    let agent = bin_path("agent").unwrap();
    let removal = std::thread::spawn(move || {
        std::process::Command::new(agent)
            .arg("--config")
            .arg(config)
            .args([
                "apply",
                "--wait",
                "--json",
                "--change",
                &change(3, vec![], &["i-b"]).to_json(),
            ])
            .output()
    });
    // Once b is draining, new requests all go to a.
    wait_for(Duration::from_secs(5), || {
        let s = h.status().ok()?;
        s.iter()
            .any(|r| r["member"] == "i-b" && r["admin"] == "drain")
            .then_some(())
    })
    .expect("b is draining");
    let b_before = b.served().unwrap();
    for _ in 0..20 {
        let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.trim()), (200, "a"));
    }
    assert_eq!(
        b.served().unwrap(),
        b_before,
        "a draining member got new requests"
    );

    let slow = slow.join().unwrap().unwrap();
    assert_eq!(
        (slow.status, slow.body.trim()),
        (200, "b"),
        "the in-flight request completed"
    );
    let out = removal.join().unwrap().unwrap();
    let report = Report::from_json(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(
        statuses(&report),
        vec![("i-b".into(), OutcomeStatus::Drained)]
    );
    assert_eq!(
        report.outcomes[0].reason, None,
        "drained without forcing: {report:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the drain waited for the request"
    );
    let s = h.status().unwrap();
    assert!(s.iter().all(|r| r["member"] != "i-b"));
}

#[test]
fn a_member_that_never_passes_checks_gets_no_traffic_and_is_reported_failed() {
    let mut pool = PoolSpec::new("web", 4);
    pool.health_path = Some("/healthz".into());
    pool.health_timeout_s = 2.0;
    let h = host_with(pool);
    let good = Backend::start("good", "127.0.0.1").unwrap();
    let (r, _) = h
        .apply(&change(1, vec![member("i-good", good.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");

    let load = Load::start(h.frontend("web"), 3, Duration::from_secs(30), 1_000_000);
    let unhealthy = Backend::start_unhealthy("sick", "127.0.0.1").unwrap();
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (r, run) = h
        .apply(&change(
            2,
            vec![member("i-closed", closed), member("i-sick", unhealthy.addr)],
            &[],
        ))
        .unwrap();
    let stats = load.stop();
    assert_eq!(run.code, 1, "exit code says a member failed");
    assert!(all(&r, OutcomeStatus::Failed), "{r:?}");
    for o in &r.outcomes {
        let reason = o.reason.as_deref().unwrap_or("");
        assert!(
            reason.contains("did not pass health checks within"),
            "{reason}"
        );
    }
    assert!(
        run.stdout.contains("L4CON") || run.stdout.contains("L7STS"),
        "{}",
        run.stdout
    );
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    assert!(stats.requests > 0);
    assert_eq!(
        unhealthy.served().unwrap(),
        0,
        "an unhealthy member received requests"
    );
    assert_eq!(stats.by_backend.keys().collect::<Vec<_>>(), vec!["good"]);
    // Their slots are free again.
    let s = h.status().unwrap();
    let owned: Vec<_> = s.iter().filter(|r| !r["member"].is_null()).collect();
    assert_eq!(owned.len(), 1, "{s:?}");
    // The failed join's generation is honoured: the same message again (a retry, a
    // re-delivery) is STALE and takes no slot; a newer one tries again.
    let (r, run) = h
        .apply(&change(2, vec![member("i-sick", unhealthy.addr)], &[]))
        .unwrap();
    assert_eq!(outcome(&r, "i-sick").0, OutcomeStatus::Stale, "{r:?}");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        h.status()
            .unwrap()
            .iter()
            .filter(|r| !r["member"].is_null())
            .count(),
        1
    );
}

#[test]
fn assignments_survive_a_reload_and_a_full_restart() {
    let mut h = host(4);
    let backends = backends("s", 3);
    let add = members_of(&backends);
    let (r, _) = h.apply(&change(1, add, &[])).unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");
    let before = h.assignments().unwrap();
    let fe = h.frontend("web");
    let all_serve = |h: &Host| {
        wait_for(Duration::from_secs(10), || {
            let ups = h
                .status()
                .ok()?
                .iter()
                .filter(|r| r["status"] == "UP")
                .count();
            (ups == 3).then_some(())
        })
        .is_some()
    };
    let spread = || {
        let mut seen = BTreeMap::new();
        for _ in 0..30 {
            let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
            assert_eq!(r.status, 200);
            *seen.entry(r.body.trim().to_string()).or_insert(0) += 1;
        }
        seen.len()
    };

    let _ = h.client().master("reload");
    wait_for(Duration::from_secs(10), || {
        (h.reloads().ok()? == 1).then_some(())
    })
    .expect("reloaded");
    wait_for(Duration::from_secs(5), || {
        let s = h.status().ok()?;
        (s.iter().filter(|r| r["admin"] == "ready").count() == 3).then_some(())
    });
    assert_eq!(h.assignments().unwrap(), before);
    assert!(all_serve(&h));
    assert_eq!(spread(), 3);

    h.stop_haproxy();
    assert!(
        http::get(fe, "/", Duration::from_secs(1)).is_err(),
        "haproxy is down"
    );
    // The service says HAProxy went away, and that it is back.
    wait_for(Duration::from_secs(5), || {
        h.agent_log()
            .contains("HAProxy's master does not answer")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("HAProxy lost, unsaid:\n{}", h.agent_log()));
    h.start_haproxy().unwrap();
    wait_for(Duration::from_secs(5), || {
        h.agent_log()
            .contains("HAProxy's master answers again")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("HAProxy back, unsaid:\n{}", h.agent_log()));
    assert_eq!(h.assignments().unwrap(), before);
    assert!(all_serve(&h), "{:?}", h.status());
    assert_eq!(spread(), 3);
    // The agent agrees: reapplying finds everything in place.
    let (r, _) = h.apply(&change(1, members_of(&backends), &[])).unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");
}

/// What a refused message must leave as it was: the slot table, the server-state
/// file (without its times), haproxy.cfg, and HAProxy's servers.
type Untouched = ((Vec<u8>, String, Vec<u8>), String);

fn untouched(h: &Host) -> Untouched {
    let files = (
        std::fs::read(h.dir().join("state/slots.json")).unwrap(),
        without_times(&std::fs::read_to_string(h.dir().join("state/server-state")).unwrap()),
        std::fs::read(h.dir().join("haproxy.cfg")).unwrap(),
    );
    (files, servers_state(h))
}

/// A change (generation 5) adding member i-x at `addr`:`port` to `pool`, as text.
fn adding_i_x(pool: &str, addr: &str, port: &str) -> String {
    format!(
        r#"{{"version":1,"generation":5,"pools":[{{"pool":"{pool}","add":[{{"id":"i-x","address":"{addr}","port":{port}}}]}}]}}"#
    )
}

#[test]
fn bad_input_gives_a_clear_error_and_changes_nothing() {
    let mut h = host(4);
    let a = Backend::start("a", "127.0.0.1").unwrap();
    let (r, _) = h
        .apply(&change(1, vec![member("i-a", a.addr)], &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up));
    let before = untouched(&h);
    for (input, expected) in &bad_changes(&a) {
        let run = h.agent(&["apply", "--file", "-"], Some(input)).unwrap();
        assert_eq!(run.code, 2, "{input}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{input}: expected {expected:?} in {}",
            run.stderr
        );
        assert_eq!(untouched(&h), before, "{input} changed something");
    }
    // The SSM document's form: an argument that is not base64, and base64 of a
    // message that is not one.
    for (arg, expected) in [
        ("not base64!", "--change-base64 is not valid base64"),
        ("bm90IGpzb24=", "malformed change message"),
    ] {
        let run = h.agent(&["apply", "--change-base64", arg], None).unwrap();
        assert_eq!(run.code, 2, "{arg}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{arg}: expected {expected:?} in {}",
            run.stderr
        );
        assert_eq!(untouched(&h), before, "{arg} changed something");
    }

    a_service_without_its_haproxy_socket_refuses(&h, &before);

    // HAProxy down.
    h.stop_haproxy();
    let run = h
        .agent(
            &["apply", "--change", &adding_i_x("web", "127.0.0.1", "81")],
            None,
        )
        .unwrap();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot reach HAProxy"),
        "{}",
        run.stderr
    );
    h.start_haproxy().unwrap();
    assert_eq!(untouched(&h), before);

    // No service: every command that needs it says so and how to start it.
    h.stop_service();
    for args in [
        vec![
            "apply",
            "--change",
            adding_i_x("web", "127.0.0.1", "81").as_str(),
        ],
        vec!["sync", "--dry-run"],
        vec!["status"],
    ] {
        let run = h.agent(&args, None).unwrap();
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("the agent service is not running")
                && run.stderr.contains("agent run"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(untouched(&h), before);
}

/// Messages `agent apply` refuses, and what its error says of each; `a` serves member
/// i-a.
fn bad_changes(a: &Backend) -> Vec<(String, &'static str)> {
    let body = adding_i_x;
    vec![
        (
            body("web", "999.1.1.1", "80"),
            "invalid address \"999.1.1.1\"",
        ),
        (body("web", "127.0.0.1", "0"), "invalid port 0"),
        (body("web", "127.0.0.1", "99999"), "invalid port 99999"),
        (body("web", "0.0.0.0", "80"), "can not be a member"),
        (body("nope", "127.0.0.1", "80"), "unknown pool nope"),
        (body("web;shutdown", "127.0.0.1", "80"), "invalid pool name"),
        (
            "{\"version\":1,\"generation\":".to_string(),
            "malformed change message",
        ),
        ("not json".to_string(), "malformed change message"),
        // A second member at i-a's address and port.
        (
            body("web", &a.addr.ip().to_string(), &a.addr.port().to_string()),
            "i-a already holds that address and port",
        ),
        // More than the 1 MiB a message may be.
        (
            format!(
                "{}{}",
                body("web", "127.0.0.1", "80"),
                " ".repeat(1024 * 1024)
            ),
            "message too large",
        ),
        // A generation far ahead of this host's clock.
        (
            body("web", "127.0.0.1", "80")
                .replace("\"generation\":5", "\"generation\":99999999999999"),
            "ahead of this host's clock",
        ),
    ]
}

/// A service whose HAProxy socket is missing (its own state directory and control
/// socket, the same HAProxy configuration file as `h`'s): `apply` says it cannot reach
/// HAProxy, and nothing of `h` changes.
fn a_service_without_its_haproxy_socket_refuses(h: &Host, before: &Untouched) {
    let cfg = std::fs::read_to_string(&h.config).unwrap();
    let other = h.dir().join("broken");
    std::fs::create_dir_all(&other).unwrap();
    let broken = other.join("agent.toml");
    let state = h.dir().join("state").display().to_string();
    std::fs::write(
        &broken,
        cfg.replace("admin.sock", "missing.sock")
            .replace(&state, &other.display().to_string()),
    )
    .unwrap();
    let agent = bin_path("agent").unwrap();
    let mut service = std::process::Command::new(&agent)
        .arg("--config")
        .arg(&broken)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(other.join("agent.sock")).ok()
    })
    .expect("the second service listens");
    let out = std::process::Command::new(&agent)
        .arg("--config")
        .arg(&broken)
        .args(["apply", "--change", &adding_i_x("web", "127.0.0.1", "81")])
        .output()
        .unwrap();
    let _ = service.kill();
    let _ = service.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot reach HAProxy at") && err.contains("missing.sock"),
        "{err}"
    );
    assert_eq!(untouched(h), *before);
}

#[test]
fn status_into_a_closed_pipe_ends_quietly() {
    // 1024 slots: more output than a pipe holds, so the writer meets the closed end.
    let h = host(1024);
    // `agent status | head -c 1`: the reader leaves after the first byte.
    let script = format!(
        "{} --config {} status | head -c 1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        bin_path("agent").unwrap().display(),
        h.config.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, "0", "agent status exited {code}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A reload HAProxy refuses although `haproxy -c` passed (here a check that passes
/// everything, so the invalid file reaches the master): the agent reports it failed,
/// with HAProxy's own reasons where the version gives them in the reload's answer
/// (2.8+: `Success=0`, `--`, the [ALERT] lines), puts the old file back, and the old
/// worker keeps serving.
#[test]
fn a_reload_haproxy_refuses_fails_with_its_reasons_and_keeps_the_old_worker() {
    let h = reload_host(2);
    let version = h.client().version().unwrap();
    let (path, with_static) = static_slot3(&h);
    let passes = h.dir().join("check-passes");
    std::fs::write(&passes, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&passes, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let toml = std::fs::read_to_string(&h.config).unwrap();
    let binary = format!(
        "binary = \"{}\"\n",
        harness::process::haproxy_bin().display()
    );
    assert!(toml.contains(&binary), "{toml}");
    let toml = toml.replace(&binary, &format!("binary = \"{}\"\n", passes.display()));
    std::fs::write(&h.config, toml).unwrap();
    h.kill_service();
    h.wait_service(Duration::from_secs(10)).unwrap();
    let before = h.client().proc_info().unwrap();

    let (_backends, run) = apply_three(&h, "r");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("HAProxy reload failed"),
        "{}",
        run.stderr
    );
    if version.branch >= (2, 8) {
        assert!(
            run.stderr.contains("did not load the new configuration")
                && run.stderr.contains("slot3"),
            "HAProxy {version}'s reasons are shown: {}",
            run.stderr
        );
    } else {
        assert!(run.stderr.contains("[failed]"), "{}", run.stderr);
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), with_static);
    let after = h.client().proc_info().unwrap();
    assert_eq!(after.failed, before.failed + 1, "{after:?}");
    assert_eq!(
        after.workers.len(),
        1,
        "the old worker serves on: {after:?}"
    );
    assert!(http::get(h.frontend("web"), "/", Duration::from_secs(5)).is_ok());
}

/// An operator's static server named like the next slot (`slot3`) in a 2-slot pool's
/// haproxy.cfg, which makes the grown configuration invalid: the file and its text.
fn static_slot3(h: &Host) -> (std::path::PathBuf, String) {
    let path = h.dir().join("haproxy.cfg");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let with_static = cfg.replace(
        "    server-template slot 1-2",
        "    server slot3 127.0.0.1:1 disabled\n    server-template slot 1-2",
    );
    std::fs::write(&path, &with_static).unwrap();
    (path, with_static)
}

/// Three new members (`i-<prefix>0..2`, each a real backend) in one `agent apply`, which
/// needs more slots than a 2-slot pool has; the backends and the run.
fn apply_three(h: &Host, prefix: &str) -> (Vec<Backend>, harness::host::AgentRun) {
    let backends = backends(prefix, 3);
    let add = members_of(&backends);
    let run = h
        .agent(&["apply", "--change", &change(1, add, &[]).to_json()], None)
        .unwrap();
    (backends, run)
}

#[test]
fn growth_refuses_an_invalid_config_and_keeps_the_old_one() {
    let h = reload_host(2);
    // An operator's static server named like the next slot makes the grown config invalid.
    let (path, with_static) = static_slot3(&h);
    let (_backends, run) = apply_three(&h, "g");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("failed `haproxy -c`"), "{}", run.stderr);
    assert!(
        run.stderr.contains("slot3"),
        "HAProxy's own reason is shown: {}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), with_static);
    assert_eq!(h.reloads().unwrap(), 0);
    let leftovers: Vec<_> = std::fs::read_dir(h.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("agent-new"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Nine members (backends named `<prefix>0..8`) applied to a 4-slot pool, all UP: from
/// HAProxy 3.0 five servers added at runtime (no reload, the block declared `1-9`), on
/// 2.6 one growth reload (`1-16`). Returns the backends and the block size expected in
/// the file.
fn grow_to_nine(h: &Host, prefix: &str) -> (Vec<Backend>, u32) {
    let backends = backends(prefix, 9);
    let add = members_of(&backends);
    let (r, run) = h.apply(&change(1, add, &[])).unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?} {}", run.stderr);
    if harness::process::haproxy_adds_servers() {
        assert_eq!(r.reloads, 0, "servers added at runtime");
        (backends, 9)
    } else {
        assert_eq!(r.reloads, 1, "one reload for the growth");
        (backends, 16)
    }
}

/// All nine members UP in HAProxy, as `agent status` shows them.
fn every_member_serves(h: &Host) -> Option<()> {
    nine_up(&h.status().ok()?).then_some(())
}

fn nine_up(rows: &[serde_json::Value]) -> bool {
    let up = rows
        .iter()
        .filter(|r| r["member"].is_string() && r["status"] == "UP")
        .count();
    up == 9
}

/// Waits until all nine members are UP again after `what`, or panics with what the
/// last look saw (not a fresh one: on a loaded CI machine the state may settle between
/// the deadline and the message) and the agent's log. The bound is generous: a restart's
/// worker and the checks are quick, but every look spawns `agent status`.
fn every_member_serves_again(h: &Host, what: &str) {
    let mut seen = None;
    wait_for(Duration::from_secs(15), || {
        let status = h.status();
        let done = status.as_deref().is_ok_and(nine_up).then_some(());
        seen = Some(status);
        done
    })
    .unwrap_or_else(|| panic!("{what}: last seen {seen:?}\n{}", h.agent_log()));
}

/// What an operator's tools do to HAProxy behind the agent's back: the agent grew the
/// pool for 9 members (servers added at runtime from 3.0, a reload to 16 slots on 2.6);
/// a template run puts back haproxy.cfg with the initial 4 slots and reloads through the
/// master socket (the agent adds what the new worker lacks at runtime, or grows the
/// block back with a reload), and later HAProxy is restarted
/// `-sf`-style (a new master taking over from the old). Each time every member serves
/// again, no request fails, and the log, the metrics and `agent status` say so.
#[test]
fn a_reload_or_restart_by_someone_else_loses_no_member() {
    let mut h = host(4);
    let original = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    let (_backends, size) = grow_to_nine(&h, "m");
    every_member_serves(&h).expect("nine members UP before");

    let load = Load::start(h.frontend("web"), 3, Duration::from_secs(60), 1_000_000);
    wait_for(Duration::from_secs(5), || {
        (load.completed() > 50).then_some(())
    });

    // 1. The operator's template gives back the initial block; a reload by hand.
    std::fs::write(h.dir().join("haproxy.cfg"), &original).unwrap();
    let check = h.agent(&["config", "check"], None).unwrap();
    assert_eq!(check.code, 1, "{}", check.stdout);
    assert!(
        check
            .stdout
            .contains("backend web declares 4 slots but the slot table holds a member in slot9"),
        "{}",
        check.stdout
    );
    h.client().master("reload").unwrap();
    every_member_serves_again(&h, "members lost after a reload by hand");
    let log = h.agent_log();
    assert!(
        log.contains("HAProxy has a worker this service did not start"),
        "{log}"
    );
    assert!(log.contains("declares 4 slots for pool web"), "{log}");
    let cfg = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    assert!(
        cfg.contains(&format!("server-template slot 1-{size} ")),
        "grown back: {cfg}"
    );

    // 2. A new master takes over from the old one (`haproxy -sf`).
    h.restart_haproxy_sf().unwrap();
    every_member_serves_again(&h, "members lost after a restart");

    let served = load.completed();
    wait_for(Duration::from_secs(5), || {
        (load.completed() > served + 100).then_some(())
    });
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
    // The restart's new worker may serve every member from the server-state file
    // before the service's next look at the master (every 200 ms) counts it.
    wait_for(Duration::from_secs(10), || {
        (h.status_all().ok()?["external_reloads"] == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("two reloads by someone else: {:?}", h.status_all()));
    let shown = h.agent(&["status"], None).unwrap().stdout;
    assert!(shown.contains("2 by someone else"), "{shown}");
}

/// With `[haproxy] pools_config` haproxy.cfg is the operator's: the pools' backends live
/// in the agent's own file (a second `-f`). After growth to 9 members the operator puts
/// their own haproxy.cfg in place (frontends only) and reloads through the master
/// socket, then restarts HAProxy `-sf`-style: every member serves, no request fails,
/// and the agent never wrote haproxy.cfg.
#[test]
fn with_a_file_of_its_own_the_agent_never_rewrites_haproxy_cfg() {
    let mut h = Host::start_with_pools_file(&HostSpec {
        name: "proxy-own".into(),
        pools: vec![PoolSpec::new("web", 4)],
        extra_toml: String::new(),
        env: Vec::new(),
    })
    .unwrap();
    let own = h.dir().join("haproxy-asg.cfg");
    let rendered = std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap();
    assert!(!rendered.contains("\nbackend web"), "{rendered}");
    let (backends, size) = grow_to_nine(&h, "o");
    let grown = std::fs::read_to_string(&own).unwrap();
    assert!(
        grown.contains(&format!("server-template slot 1-{size} ")),
        "{grown}"
    );
    assert_eq!(
        std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap(),
        rendered,
        "growth rewrote the agent's own file only"
    );
    let fe = h.frontend("web");
    let load = Load::start(fe, 3, Duration::from_secs(60), 1_000_000);
    wait_for(Duration::from_secs(5), || {
        (load.completed() > 50).then_some(())
    });

    // The operator's own haproxy.cfg: the global and defaults `agent config render`
    // started them with, then their own frontend, routing to the pool by name.
    let head = rendered
        .split("\nfrontend ")
        .next()
        .unwrap_or_default()
        .to_string();
    let mine = format!(
        "{head}\nfrontend mine\n    bind {fe}\n    http-request set-header X-Operator yes\n    default_backend web\n"
    );
    std::fs::write(h.dir().join("haproxy.cfg"), &mine).unwrap();
    let check = h.agent(&["config", "check"], None).unwrap();
    assert_eq!(check.code, 0, "{}", check.stdout);
    h.client().master("reload").unwrap();
    wait_for(Duration::from_secs(15), || {
        (h.agent_log().contains("did not start") && every_member_serves(&h).is_some()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "after the operator's reload: {:?}\n{}",
            h.status(),
            h.agent_log()
        )
    });
    h.restart_haproxy_sf().unwrap();
    every_member_serves_again(&h, "after a restart");
    // Each worker someone else started got what it lacked: the service resumed after
    // both (at its start, after the reload, after the restart), instead of retrying for
    // ever on the instance map the operator's configuration does not load.
    wait_for(Duration::from_secs(10), || {
        let log = h.agent_log();
        let resumed = log
            .matches("resumed: HAProxy matches the slot table")
            .count();
        (resumed >= 3).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no resume after the operator's reload and restart:\n{}",
            h.agent_log()
        )
    });

    let served = load.completed();
    wait_for(Duration::from_secs(5), || {
        (load.completed() > served + 100).then_some(())
    });
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
    assert!(
        backends
            .iter()
            .filter(|b| stats.by_backend.contains_key(&b.name))
            .count()
            == 9,
        "every member served: {stats:?}"
    );
    assert_eq!(
        std::fs::read_to_string(h.dir().join("haproxy.cfg")).unwrap(),
        mine,
        "the operator's file is theirs"
    );
    assert!(
        !h.agent_log().contains("declares 4 slots"),
        "{}",
        h.agent_log()
    );
}

/// README.md's "Running the agent" block, run as it is in a clean directory with the
/// built `agent` and the HAProxy under test first on the PATH, gives a working host: a
/// member applied through the service serves through HAProxy.
#[test]
fn the_readme_quick_start_runs_as_written() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("end-to-end test runs this block as it is):\n\n```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README.md's quick-start block");
    let agent_dir = bin_path("agent").unwrap().parent().unwrap().to_path_buf();
    let haproxy = harness::process::haproxy_bin();
    let mut path = vec![agent_dir];
    if let Some(dir) = haproxy.parent().filter(|d| !d.as_os_str().is_empty()) {
        path.push(dir.to_path_buf());
    }
    let path = std::env::join_paths(path.into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let run = std::process::Command::new("timeout")
        .args(["120", "bash", "-e", "-c", block])
        .env("PATH", path)
        .env_remove("AGENT_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    // What a failed run left behind (the block's last line stops them otherwise).
    if !run.status.success() {
        for f in ["agent.pid", "backend.pid", "haproxy.pid"] {
            let pid =
                std::fs::read_to_string(format!("/tmp/haproxy-asg-try/{f}")).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<u32>() {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 reached their target"), "{stdout}");
    assert!(stdout.contains("200 from the pool"), "{stdout}");
    assert!(
        stdout.contains("web          slot1    i-local                up"),
        "{stdout}"
    );
}

/// The servers HAProxy's running worker has in backend `web` (`show servers state web`).
fn web_servers(h: &Host) -> usize {
    h.client()
        .servers_state(Some("web"))
        .map(|s| s.len())
        .unwrap_or(0)
}

/// Every member of `ids` UP in HAProxy as `agent status` shows it.
fn all_up(h: &Host, n: usize) -> Option<()> {
    let rows = h.status().ok()?;
    let up = rows
        .iter()
        .filter(|r| r["member"].is_string() && r["status"] == "UP")
        .count();
    (up == n).then_some(())
}

/// Issue 24: a pool of 4 slots grows to 40 members under load and shrinks back to 4.
/// From HAProxy 3.0 it grows with servers added at runtime (no reload), a reload by
/// someone else in the middle loses none of them (the agent's own file declares them),
/// and once their drains end the servers past the 4 slots are deleted (`show servers
/// state` lists 4 again, the file declares 4 again). On 2.6 the same growth reloads.
/// No request fails on any version.
#[test]
fn a_pool_grows_past_its_slots_and_shrinks_back_without_failing_a_request() {
    let runtime = harness::process::haproxy_adds_servers();
    let h = Host::start_with_pools_file(&HostSpec {
        name: "proxy-test".into(),
        pools: vec![PoolSpec::new("web", 4)],
        extra_toml: String::new(),
        env: Vec::new(),
    })
    .unwrap();
    let pools_file = h.dir().join("haproxy-asg.cfg");
    let backends = backends("r", 40);
    let (r, _) = h
        .apply(&change(1, members_of(&backends[0..4]), &[]))
        .unwrap();
    assert!(all(&r, OutcomeStatus::Up), "{r:?}");
    let load = Load::start(h.frontend("web"), 4, Duration::from_secs(120), 10_000_000);
    wait_for(Duration::from_secs(5), || {
        (load.completed() > 50).then_some(())
    });

    let reloads = grow_to_40_through_a_reload_by_someone_else(&h, &backends);
    wait_for(Duration::from_secs(5), || all_up(&h, 40))
        .unwrap_or_else(|| panic!("40 members UP: {:?}", h.status()));
    let file = std::fs::read_to_string(&pools_file).unwrap();
    if runtime {
        grown_at_runtime(&h, reloads, &file);
    } else {
        assert!(reloads >= 1, "2.6 grows with a reload");
        assert!(h.reloads().unwrap() >= 1);
    }
    // Every member took traffic.
    let served_before = load.completed();
    wait_for(Duration::from_secs(10), || {
        (load.completed() > served_before + 400).then_some(())
    });

    // Back to the first 4 members.
    let gone: Vec<String> = (4..40).map(|i| format!("i-r{i}")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    let (r, run) = h.apply(&change(10, vec![], &gone)).unwrap();
    assert!(all(&r, OutcomeStatus::Drained), "{r:?} {}", run.stderr);
    wait_for(Duration::from_secs(5), || all_up(&h, 4))
        .unwrap_or_else(|| panic!("4 members UP: {:?}", h.status()));
    if runtime {
        shrunk_at_runtime(&h, &pools_file);
    }
    let served = load.completed();
    wait_for(Duration::from_secs(5), || {
        (load.completed() > served + 100).then_some(())
    });
    let stats = load.stop();
    assert_eq!(
        stats.failed,
        0,
        "failed requests: {:?}\n{}",
        stats.errors,
        h.agent_log()
    );
    for b in &backends {
        assert!(
            stats.by_backend.get(&b.name).copied().unwrap_or(0) > 0,
            "{} served nothing: {stats:?}",
            b.name
        );
    }
}

/// Members 4 to 40 join the 4 of `h` in three changes; in the middle, someone else
/// reloads HAProxy and every member serves again. The reloads the changes made.
fn grow_to_40_through_a_reload_by_someone_else(h: &Host, backends: &[Backend]) -> u32 {
    let mut reloads = 0;
    for (gen, (from, to)) in [(4, 16), (16, 28), (28, 40)].into_iter().enumerate() {
        let (r, run) = h
            .apply(&change(
                2 + gen as u64,
                members_of(&backends[from..to]),
                &[],
            ))
            .unwrap();
        assert!(all(&r, OutcomeStatus::Up), "{r:?} {}", run.stderr);
        reloads += r.reloads;
        if gen == 1 {
            // Someone else reloads HAProxy mid-growth: every member serves again.
            h.client().master("reload").unwrap();
            wait_for(Duration::from_secs(5), || {
                (h.status_all().ok()?["external_reloads"] == 1).then_some(())
            })
            .expect("the reload by someone else was seen");
            wait_for(Duration::from_secs(5), || all_up(h, 28)).unwrap_or_else(|| {
                panic!(
                    "members lost after a reload by someone else: {:?}\n{}",
                    h.status(),
                    h.agent_log()
                )
            });
        }
    }
    reloads
}

/// Grown past the slots from HAProxy 3.0 on: no reload but someone else's, 36 servers
/// added at runtime and declared in the pools `file` for the next reload.
fn grown_at_runtime(h: &Host, reloads: u32, file: &str) {
    assert_eq!(
        reloads,
        0,
        "growth past the slots without a reload: {}",
        h.agent_log()
    );
    assert_eq!(h.reloads().unwrap(), 1, "only the reload by someone else");
    assert_eq!(web_servers(h), 40, "4 declared + 36 added at runtime");
    assert!(
        file.contains("server-template slot 1-40 "),
        "the added servers are declared for the next reload: {file}"
    );
    let log = h.agent_log();
    assert!(log.contains("at runtime"), "{log}");
    let check = h.agent(&["config", "check"], None).unwrap();
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert!(!check.stdout.contains("with a reload"), "{}", check.stdout);
}

/// Shrunk back to 4 from HAProxy 3.0 on: the empty servers past the 4 slots deleted,
/// the pools file declaring 4 again, no reload but someone else's.
fn shrunk_at_runtime(h: &Host, pools_file: &std::path::Path) {
    wait_for(Duration::from_secs(10), || {
        (web_servers(h) == 4).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the empty servers past the 4 slots are deleted: {}\n{}",
            h.client().query("show servers state web").unwrap(),
            h.agent_log()
        )
    });
    let stat = h.client().query("show stat -1 4 -1").unwrap();
    let listed = stat.lines().filter(|l| l.starts_with("web,")).count();
    assert_eq!(listed, 4, "{stat}");
    wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(pools_file)
            .ok()?
            .contains("server-template slot 1-4 ")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the file declares 4 again: {}",
            std::fs::read_to_string(pools_file).unwrap()
        )
    });
    assert_eq!(h.reloads().unwrap(), 1, "only the reload by someone else");
}

/// An HAProxy older than the agent drives (a stand-in `haproxy` printing 2.4's version,
/// as `[haproxy] binary`): `agent config check` refuses it, naming the binary, the
/// version and what to do.
#[test]
fn an_unsupported_haproxy_binary_is_refused_by_config_check() {
    let h = host(2);
    let old = h.dir().join("haproxy-2.4");
    std::fs::write(
        &old,
        "#!/bin/sh\necho 'HAProxy version 2.4.22-f8e3218 2023/02/14 - https://haproxy.org/'\n",
    )
    .unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let toml = std::fs::read_to_string(&h.config).unwrap();
    let binary = format!(
        "binary = \"{}\"\n",
        harness::process::haproxy_bin().display()
    );
    assert!(toml.contains(&binary), "{toml}");
    let check = h.agent(&["config", "check"], None).unwrap();
    assert_eq!(check.code, 0, "the real binary passes: {}", check.stdout);
    std::fs::write(
        &h.config,
        toml.replace(&binary, &format!("binary = \"{}\"\n", old.display())),
    )
    .unwrap();
    let check = h.agent(&["config", "check"], None).unwrap();
    assert_eq!(check.code, 1, "{}\n{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains(&format!(
            "problem: {}: HAProxy 2.4.22-f8e3218 is not supported: the agent drives HAProxy 2.6 or later",
            old.display()
        )) && check.stdout.contains("upgrade HAProxy"),
        "{}",
        check.stdout
    );
}
