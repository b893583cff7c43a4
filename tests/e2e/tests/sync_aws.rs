//! `agent sync` reading the desired state from AWS (the moto emulator with the project's
//! extension), against a real HAProxy and real backends at the instances' addresses.

use std::time::Duration;

use agent::haproxy::{Command, Op};
use harness::{free_port, http, wait_for, Backend, GroupSpec, Host, HostSpec, PoolSpec, World};
use infra::{PoolName, Port};

/// Instance id -> private address, of the group's members.
async fn members(w: &World, name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in w.members(name).await.unwrap() {
        let ip = w.private_ip(&m.id).await.unwrap();
        out.push((m.id, ip));
    }
    out
}

#[test]
fn sync_reads_the_group_from_aws_and_repairs_drift() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt
        .block_on(World::start(None))
        .expect("start the AWS emulator (scripts/setup-venv)");
    let port = free_port();
    let h = a_host_started_before_its_group(&w, port);
    let mut spec = GroupSpec::new("web-asg", &w.subnet);
    spec.max = 10;
    spec.desired = 2;
    rt.block_on(w.group(&spec)).unwrap();
    let found = rt.block_on(members(&w, "web-asg"));
    assert_eq!(found.len(), 2, "{found:?}");

    // Each instance is a real server at its (loopback) private address.
    let backends: Vec<Backend> = found
        .iter()
        .map(|(id, ip)| Backend::spawn(id, &format!("{ip}:{port}"), false).unwrap())
        .collect();

    a_dry_run_lists_the_members_and_changes_nothing(&h, &found, port);

    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let a = h.assignments().unwrap();
    assert_eq!(a.len(), 2, "{a:?}");
    let fe = h.frontend("web");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200);
        seen.insert(r.body.trim().to_string());
    }
    assert_eq!(seen.len(), 2, "both instances serve: {seen:?}");

    // Drift: a slot HAProxy serves that no member owns, and a member put in maint by hand.
    let stray = a_stray_server_and_a_member_in_maint(&h);
    // Scale in: the oldest instance goes.
    rt.block_on(w.scale("web-asg", 1)).unwrap();
    let left = rt.block_on(members(&w, "web-asg"));
    assert_eq!(left.len(), 1);
    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("! web"),
        "the stray server is evicted: {}",
        run.stdout
    );
    let a = h.assignments().unwrap();
    assert_eq!(
        a.keys().cloned().collect::<Vec<_>>(),
        vec![left[0].0.clone()]
    );
    wait_for(Duration::from_secs(5), || {
        let s = h.status().ok()?;
        let up = s.iter().filter(|r| r["status"] == "UP").count();
        (up == 1).then_some(())
    })
    .expect("only the remaining instance serves");
    let before = stray.served().unwrap();
    for _ in 0..10 {
        let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.trim()), (200, left[0].0.as_str()));
    }
    assert_eq!(stray.served().unwrap(), before);
    drop(backends);

    a_group_aws_does_not_know_is_an_error_never_an_empty_pool(&h);
}

/// A host of pool `web` on `port` whose agent.toml maps group web-asg to it, started
/// before the group exists: its service's start-up sync finds no group, refuses to
/// empty the pool, and leaves the syncing to the commands of the test.
fn a_host_started_before_its_group(w: &World, port: u16) -> Host {
    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    let h = Host::start(&HostSpec {
        name: "proxy-aws".into(),
        pools: vec![pool],
        extra_toml: "[aws]\ngroups = { \"web-asg\" = [\"web\"] }\n".into(),
        env: w.emulator.aws_env(),
    })
    .unwrap();
    wait_for(Duration::from_secs(10), || {
        h.agent_log()
            .contains("no such Auto Scaling group")
            .then_some(())
    })
    .expect("the start-up sync ran and refused a group AWS does not know");
    h
}

/// `agent sync --dry-run` lists every member `found` (id, address) on `port`, and
/// changes nothing.
fn a_dry_run_lists_the_members_and_changes_nothing(
    h: &Host,
    found: &[(String, String)],
    port: u16,
) {
    let dry = h.agent(&["sync", "--dry-run"], None).unwrap();
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for (id, ip) in found {
        assert!(
            dry.stdout.contains(&format!("+ web          {id}")),
            "{}",
            dry.stdout
        );
        assert!(
            dry.stdout.contains(&format!("{ip}:{port}")),
            "{}",
            dry.stdout
        );
    }
    assert!(dry.stdout.contains("dry run: nothing was changed"));
    assert!(
        h.assignments().unwrap().is_empty(),
        "a dry run changes nothing"
    );
}

/// Drift: a slot HAProxy serves that no member owns (slot 4: the returned backend), and
/// a member put in maint by hand (slot 1).
fn a_stray_server_and_a_member_in_maint(h: &Host) -> Backend {
    let stray = Backend::start("stray", "127.0.0.1").unwrap();
    let c = h.client();
    let web = PoolName::new("web").unwrap();
    let port = Port::new(i64::from(stray.addr.port())).unwrap();
    c.batch(&[
        Command::join(&web, 4, stray.addr.ip(), port, false),
        vec![Command::new(&web, 1, Op::Maint)],
    ])
    .unwrap();
    stray
}

/// A group AWS does not know is an error, never an empty pool.
fn a_group_aws_does_not_know_is_an_error_never_an_empty_pool(h: &Host) {
    let cfg = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, cfg.replace("\"web-asg\"", "\"web-asg-typo\"")).unwrap();
    // The service reads agent.toml when it starts: restart it (as after an edit).
    h.kill_service();
    h.wait_service(Duration::from_secs(10)).unwrap();
    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("web-asg-typo") && run.stderr.contains("refusing to empty"),
        "{}",
        run.stderr
    );
    assert_eq!(h.assignments().unwrap().len(), 1, "nothing was drained");
}

#[test]
fn the_service_syncs_from_aws_at_start_and_every_interval() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt
        .block_on(World::start(None))
        .expect("start the AWS emulator (scripts/setup-venv)");
    let mut spec = GroupSpec::new("web-asg", &w.subnet);
    spec.max = 10;
    spec.desired = 2;
    rt.block_on(w.group(&spec)).unwrap();
    let found = rt.block_on(members(&w, "web-asg"));
    let port = free_port();
    let _backends: Vec<Backend> = found
        .iter()
        .map(|(id, ip)| Backend::spawn(id, &format!("{ip}:{port}"), false).unwrap())
        .collect();
    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    pool.drain_timeout_s = 5.0;
    // No `agent sync` is run: the service syncs when it starts and every 2 s.
    let h = Host::start(&HostSpec {
        name: "proxy-aws".into(),
        pools: vec![pool],
        extra_toml: "[aws]\ngroups = { \"web-asg\" = [\"web\"] }\nsync_interval_s = 2\n".into(),
        env: w.emulator.aws_env(),
    })
    .unwrap();
    let serving = |n: usize| {
        wait_for(Duration::from_secs(15), || {
            let s = h.status().ok()?;
            let up: Vec<String> = s
                .iter()
                .filter(|r| r["status"] == "UP")
                .filter_map(|r| r["member"].as_str().map(str::to_string))
                .collect();
            (up.len() == n).then_some(up)
        })
    };
    let up = serving(2).expect("the start-up sync brought both members in");
    assert_eq!(up.len(), 2);
    // A lost event: the group scales in and nobody tells the host.
    rt.block_on(w.scale("web-asg", 1)).unwrap();
    let left = rt.block_on(members(&w, "web-asg"));
    let up = serving(1).expect("the periodic sync drained the member that left");
    assert_eq!(up, vec![left[0].0.clone()]);
    assert!(
        h.agent_log().contains("synced from AWS"),
        "{}",
        h.agent_log()
    );
}

/// Tags only narrow: whoever can tag a group that feeds `web` cannot move its instances
/// into another pool this host serves (`internal`) or onto another port.
#[test]
fn a_group_tag_never_moves_members_into_another_pool_or_port() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt
        .block_on(World::start(None))
        .expect("start the AWS emulator (scripts/setup-venv)");
    let (port, internal_port) = (free_port(), free_port());
    let mut spec = GroupSpec::new("web-asg", &w.subnet)
        .tag(infra::aws::POOL_TAG, "internal")
        .tag(infra::aws::PORT_TAG, &internal_port.to_string());
    spec.max = 10;
    spec.desired = 2;
    rt.block_on(w.group(&spec)).unwrap();
    let found = rt.block_on(members(&w, "web-asg"));
    assert_eq!(found.len(), 2, "{found:?}");
    let _backends: Vec<Backend> = found
        .iter()
        .map(|(id, ip)| Backend::spawn(id, &format!("{ip}:{port}"), false).unwrap())
        .collect();
    let mut web = PoolSpec::new("web", 4);
    web.port = port;
    let mut internal = PoolSpec::new("internal", 4);
    internal.port = internal_port;
    let h = Host::start(&HostSpec {
        name: "proxy-tags".into(),
        pools: vec![web, internal],
        extra_toml: "[aws]\ngroups = { \"web-asg\" = [\"web\"] }\n".into(),
        env: w.emulator.aws_env(),
    })
    .unwrap();
    // The service's start-up sync, then one asked for: both meet the same tags.
    wait_for(Duration::from_secs(10), || {
        let s = h.status().ok()?;
        let up = s.iter().filter(|r| r["status"] == "UP").count();
        (up == 2).then_some(())
    })
    .expect("the start-up sync brought both members up");
    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let mut placed: Vec<(String, String)> = h
        .status()
        .unwrap()
        .iter()
        .filter(|r| r["member"].is_string())
        .map(|r| {
            let pool = r["pool"].as_str().unwrap_or_default().to_string();
            (pool, r["address"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    placed.sort();
    let mut want: Vec<(String, String)> = found
        .iter()
        .map(|(_, ip)| ("web".to_string(), format!("{ip}:{port}")))
        .collect();
    want.sort();
    assert_eq!(
        placed, want,
        "in web, at web's port ({internal_port} is internal's)"
    );
    let fe = h.frontend("web");
    wait_for(Duration::from_secs(10), || {
        let r = http::get(fe, "/", Duration::from_secs(2)).ok()?;
        (r.status == 200).then_some(())
    })
    .expect("the members serve in web, at the port agent.toml gives it");
    let r = http::get(h.frontend("internal"), "/", Duration::from_secs(2)).unwrap();
    assert_eq!(r.status, 503, "no member reached the internal pool");
    let log = h.agent_log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a group tag was refused"))
        .collect();
    assert_eq!(refused.len(), 2, "one line per refused tag, once: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log that is no terminal: {log:?}"
    );
    assert!(
        refused.iter().any(|l| l.contains("haproxy:pool"))
            && refused.iter().any(|l| l.contains("haproxy:port")),
        "{log}"
    );
}

/// One map for both sides, or at least no flapping: a member the reactor added from a
/// group agent.toml does not map is kept by the agent's syncs (logged and counted once),
/// while a member in no group at all is still drained.
#[test]
fn a_member_from_a_group_agent_toml_does_not_map_does_not_flap() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt
        .block_on(World::start(None))
        .expect("start the AWS emulator (scripts/setup-venv)");
    let port = free_port();
    for (name, n) in [("web-asg", 1), ("batch-asg", 1)] {
        let mut spec = GroupSpec::new(name, &w.subnet);
        spec.max = 4;
        spec.desired = n;
        rt.block_on(w.group(&spec)).unwrap();
    }
    let web = rt.block_on(members(&w, "web-asg"));
    let batch = rt.block_on(members(&w, "batch-asg"));
    let _backends: Vec<Backend> = web
        .iter()
        .chain(&batch)
        .map(|(id, ip)| Backend::spawn(id, &format!("{ip}:{port}"), false).unwrap())
        .collect();
    let stranger = Backend::start("i-0000000000000beef", "127.0.0.1").unwrap();
    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    let h = Host::start(&HostSpec {
        name: "proxy-map".into(),
        pools: vec![pool],
        extra_toml: "[aws]\ngroups = { \"web-asg\" = [\"web\"] }\n".into(),
        env: w.emulator.aws_env(),
    })
    .unwrap();
    wait_for(Duration::from_secs(10), || {
        h.assignments().ok()?.contains_key(&web[0].0).then_some(())
    })
    .expect("the service's start-up sync added web-asg's instance");
    // The reactor (whose map holds batch-asg) adds batch-asg's instance; someone adds an
    // instance that is in no group.
    let member = |id: &str, addr: &str, port: u16| {
        infra::Member::new(
            infra::MemberId::new(id).unwrap(),
            addr.parse().unwrap(),
            Port::new(i64::from(port)).unwrap(),
        )
        .unwrap()
    };
    let (bid, bip) = &batch[0];
    let change = infra::Change {
        version: infra::MESSAGE_VERSION,
        generation: harness::unix_ms(),
        pools: vec![infra::PoolChange {
            pool: PoolName::new("web").unwrap(),
            add: vec![
                member(bid, bip, port),
                member("i-0000000000000beef", "127.0.0.1", stranger.addr.port()),
            ],
            remove: vec![],
            drain_by_ms: Default::default(),
        }],
    };
    let (report, run) = h.apply(&change).unwrap();
    assert!(report.ok, "{}", run.stderr);
    wait_for(Duration::from_secs(10), || {
        let s = h.status().ok()?;
        let up = s.iter().filter(|r| r["status"] == "UP").count();
        (up >= 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "web-asg's and batch-asg's instances serve: {:#?}\n{}",
            h.status(),
            h.agent_log()
        )
    });
    for round in 0..3 {
        let run = h.agent(&["sync"], None).unwrap();
        assert_eq!(run.code, 0, "sync {round}: {}\n{}", run.stdout, run.stderr);
        let a = h.assignments().unwrap();
        assert!(
            a.contains_key(bid),
            "sync {round} drained the unmapped member: {a:?}"
        );
        assert!(a.contains_key(&web[0].0), "sync {round}: {a:?}");
        assert!(
            !a.contains_key("i-0000000000000beef"),
            "sync {round} kept a member in no group: {a:?}"
        );
    }
    let up = wait_for(Duration::from_secs(10), || {
        let s = h.status().ok()?;
        s.iter()
            .any(|r| r["member"] == bid.as_str() && r["status"] == "UP")
            .then_some(())
    });
    assert!(up.is_some(), "the unmapped member serves throughout");
    let log = h.agent_log();
    let kept = log
        .lines()
        .filter(|l| l.contains("is kept, not drained"))
        .count();
    assert_eq!(kept, 1, "logged once over three syncs: {log}");
}
