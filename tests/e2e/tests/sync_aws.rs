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
    // The host starts before the group exists: its service's start-up sync finds no
    // group, refuses to empty the pool, and leaves the syncing to the commands below.
    let port = free_port();
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

    let dry = h.agent(&["sync", "--dry-run"], None).unwrap();
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for (id, ip) in &found {
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
    let stray = Backend::start("stray", "127.0.0.1").unwrap();
    let c = h.client();
    let web = PoolName::new("web").unwrap();
    let port = Port::new(i64::from(stray.addr.port())).unwrap();
    c.batch(&[
        Command::join(&web, 4, stray.addr.ip(), port, false),
        vec![Command::new(&web, 1, Op::Maint)],
    ])
    .unwrap();
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

    // A group AWS does not know is an error, never an empty pool.
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
