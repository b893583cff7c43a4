//! Traffic policy: members' weights, same-zone
//! routing with spill (`zone_affinity = "prefer"`), zones taken away (`agent zone`).
//!
//! Two proxy hosts, one in zone-a and one in zone-b (agent.toml `zone`), real HAProxy,
//! the real agent service, real backends on 127.0.0.x loopback addresses; members carry
//! their zone (and weight) in the change messages, as the reactor sends them. Shares are
//! counted per proxy from what each answer says served it. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use harness::{wait_for, Backend, Host, HostSpec, Load, LoadStats, PoolSpec};
use infra::{Member, OutcomeStatus, Weight, Zone};

use crate::util::{change, member, outcome};

/// A host in `zone` whose pool `web` has `pool_toml` (e.g. `zone_affinity = "prefer"`).
fn host_in(name: &str, zone: &str, pool_toml: &str) -> Host {
    let mut pool = PoolSpec::new("web", 8);
    pool.extra_toml = pool_toml.into();
    let spec = HostSpec {
        name: name.into(),
        pools: vec![pool],
        extra_toml: String::new(),
        env: Vec::new(),
    };
    Host::start_with_top(&spec, &format!("zone = \"{zone}\"\n")).expect("start haproxy host")
}

const PREFER: &str = "zone_affinity = \"prefer\"\nmin_zone_members = 1\n";

fn zoned(id: &str, addr: SocketAddr, zone: &str) -> Member {
    member(id, addr).with_zone(Some(Zone::new(zone).unwrap()))
}

fn weighted(id: &str, addr: SocketAddr, weight: i64) -> Member {
    member(id, addr).with_weight(Some(Weight::new(weight).unwrap()))
}

/// Applies `add` (and `remove`) at `generation` on every host, waiting for the outcomes.
fn apply_all(hosts: &[&Host], generation: u64, add: &[Member], remove: &[&str]) {
    for h in hosts {
        let (r, run) = h.apply(&change(generation, add.to_vec(), remove)).unwrap();
        assert!(r.ok, "{}: {r:?} {}", h.name, run.stderr);
        for m in add {
            assert_eq!(outcome(&r, m.id.as_str()).0, OutcomeStatus::Up, "{r:?}");
        }
    }
}

/// What `agent status --json` says each instance's effective weight is.
fn effective(h: &Host) -> BTreeMap<String, String> {
    let s = h.status_all().unwrap();
    let mut out = BTreeMap::new();
    for p in s["pools"].as_array().into_iter().flatten() {
        for i in p["instances"].as_array().into_iter().flatten() {
            let id = i["instance"].as_str().unwrap_or_default().to_string();
            let w = i["effective"].as_str().unwrap_or("-").to_string();
            out.insert(id, w);
        }
    }
    out
}

/// The weight HAProxy has for member `id` (its slot's `srv_uweight`).
fn haproxy_weight(h: &Host, id: &str) -> Option<u16> {
    let rows = h.status().ok()?;
    let slot = rows.iter().find(|r| r["member"] == id)?["slot"]
        .as_str()?
        .to_string();
    let states = h.client().servers_state(Some("web")).ok()?;
    states.iter().find(|s| s.server == slot).map(|s| s.uweight)
}

/// Whether HAProxy's current worker has member `id`'s slot UP.
fn haproxy_up(h: &Host, id: &str) -> bool {
    let slot = h.status().ok().and_then(|rows| {
        rows.iter()
            .find(|r| r["member"] == id)
            .and_then(|r| r["slot"].as_str().map(str::to_string))
    });
    let Some(slot) = slot else { return false };
    h.client().stats().is_ok_and(|rows| {
        rows.iter()
            .any(|r| r.backend == "web" && r.server == slot && r.is_up())
    })
}

/// Waits (bounded) until the policy has `ids` standing by (effective weight 1), every
/// other member at the weight the policy gives it (the local ones at 256), and HAProxy
/// has all of them so: traffic stays in the host's zone from then on, but for a trickle.
fn wait_standby(h: &Host, ids: &[&str]) {
    wait_for(Duration::from_secs(10), || {
        let e = effective(h);
        let standing_by = ids
            .iter()
            .all(|id| e.get(*id).map(String::as_str) == Some("1"));
        let in_haproxy = e.iter().all(|(id, w)| {
            w.parse::<u16>()
                .is_ok_and(|w| haproxy_weight(h, id) == Some(w))
        });
        (standing_by && in_haproxy && e.len() > ids.len()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{}: {ids:?} never stood by at weight 1: {:?}",
            h.name,
            effective(h)
        )
    });
}

/// `n` requests to `h`'s frontend (4 workers, at most 60 s).
fn window(h: &Host, n: u64) -> LoadStats {
    Load::start(h.frontend("web"), 4, Duration::from_secs(60), n).wait()
}

/// The share of `stats`' answers served by backends named in `names`.
fn share(stats: &LoadStats, names: &[&str]) -> f64 {
    let ok: u64 = stats.by_backend.values().sum();
    let by: u64 = names
        .iter()
        .map(|n| stats.by_backend.get(*n).copied().unwrap_or(0))
        .sum();
    by as f64 / ok.max(1) as f64
}

#[test]
fn each_proxy_keeps_its_traffic_in_its_zone() {
    let a = host_in("proxy-zone-a", "zone-a", PREFER);
    let b = host_in("proxy-zone-b", "zone-b", PREFER);
    let backends: Vec<Backend> = [("a1", 2), ("a2", 3), ("b1", 4), ("b2", 5)]
        .iter()
        .map(|(n, ip)| Backend::start(n, &format!("127.0.0.{ip}")).unwrap())
        .collect();
    let members: Vec<Member> = backends
        .iter()
        .map(|be| {
            let zone = if be.name.starts_with('a') {
                "zone-a"
            } else {
                "zone-b"
            };
            zoned(&format!("i-{}", be.name), be.addr, zone)
        })
        .collect();
    apply_all(&[&a, &b], 1, &members, &[]);
    wait_standby(&a, &["i-b1", "i-b2"]);
    wait_standby(&b, &["i-a1", "i-a2"]);
    let on_a = window(&a, 1500);
    let on_b = window(&b, 1500);
    assert_eq!((on_a.failed, on_b.failed), (0, 0), "{on_a:?} {on_b:?}");
    let (sa, sb) = (share(&on_a, &["a1", "a2"]), share(&on_b, &["b1", "b2"]));
    assert!(
        sa >= 0.95,
        "zone-a's proxy sent {sa:.3} to zone-a: {on_a:?}"
    );
    assert!(
        sb >= 0.95,
        "zone-b's proxy sent {sb:.3} to zone-b: {on_b:?}"
    );
    // Both local members share their zone's traffic.
    for n in ["a1", "a2"] {
        assert!(
            on_a.by_backend.get(n).copied().unwrap_or(0) > 300,
            "{on_a:?}"
        );
    }
    let s = a.status_all().unwrap();
    assert_eq!(s["host_zone"], "zone-a");
    assert!(s["spilled"].as_array().is_some_and(Vec::is_empty), "{s}");
}

#[test]
fn removing_a_zones_last_member_spills_first_and_traffic_returns_once_a_new_one_is_up() {
    let a = host_in("proxy-zone-a", "zone-a", PREFER);
    let a1 = Backend::start("a1", "127.0.0.2").unwrap();
    let b1 = Backend::start("b1", "127.0.0.4").unwrap();
    let b2 = Backend::start("b2", "127.0.0.5").unwrap();
    let (ma1, mb1, mb2) = (
        zoned("i-a1", a1.addr, "zone-a"),
        zoned("i-b1", b1.addr, "zone-b"),
        zoned("i-b2", b2.addr, "zone-b"),
    );
    apply_all(&[&a], 1, &[ma1, mb1, mb2], &[]);
    wait_standby(&a, &["i-b1", "i-b2"]);
    // Load throughout: not one request may fail.
    let all = Load::start(a.frontend("web"), 2, Duration::from_secs(120), 1_000_000);
    let before = window(&a, 600);
    assert!(share(&before, &["a1"]) >= 0.95, "{before:?}");

    // The last member of zone-a leaves: zone-b takes the traffic before it is drained.
    apply_all(&[&a], 2, &[], &["i-a1"]);
    let spilled = window(&a, 600);
    assert_eq!(share(&spilled, &["b1", "b2"]), 1.0, "{spilled:?}");
    let s = a.status_all().unwrap();
    assert_eq!(s["spilled"], serde_json::json!(["web"]), "{s}");

    // A new member of zone-a: once it is UP, traffic goes back to zone-a.
    let a3 = Backend::start("a3", "127.0.0.3").unwrap();
    apply_all(&[&a], 3, &[zoned("i-a3", a3.addr, "zone-a")], &[]);
    wait_standby(&a, &["i-b1", "i-b2"]);
    let back = window(&a, 1000);
    let stats = all.stop();
    assert_eq!(stats.failed, 0, "requests failed: {stats:?}");
    assert!(stats.requests > 500, "{stats:?}");
    assert_eq!(back.failed, 0, "{back:?}");
    assert!(share(&back, &["a3"]) >= 0.95, "{back:?}");
}

/// zone-a's proxy preferring its zone, with one member in each zone (i-a1, i-b1) joined
/// and i-b1 standing by.
fn one_member_each() -> (Host, Backend, Backend) {
    let (a, a1, b1) = one_member_each_on(host_in("proxy-zone-a", "zone-a", PREFER));
    wait_standby(&a, &["i-b1"]);
    (a, a1, b1)
}

/// `h` (in zone-a) with one member in each zone (i-a1, i-b1) joined.
fn one_member_each_on(h: Host) -> (Host, Backend, Backend) {
    let a1 = Backend::start("a1", "127.0.0.2").unwrap();
    let b1 = Backend::start("b1", "127.0.0.4").unwrap();
    apply_all(
        &[&h],
        1,
        &[
            zoned("i-a1", a1.addr, "zone-a"),
            zoned("i-b1", b1.addr, "zone-b"),
        ],
        &[],
    );
    (h, a1, b1)
}

#[test]
fn a_local_member_down_by_health_check_spills_and_its_return_brings_traffic_back() {
    let (a, mut a1, _b1) = one_member_each();
    let a1_addr = a1.addr;
    let before = window(&a, 500);
    assert!(share(&before, &["a1"]) >= 0.95, "{before:?}");

    // a1 dies, unannounced, then a request every 10 ms for 1.5 s, each on its own: not
    // one fails. HAProxy redispatches those that meet the dead a1 to i-b1, standing by
    // at weight 1, and sends it everything once its checks mark a1 DOWN, before the
    // agent looks again; then the agent gives i-b1 its weight (the spill).
    a1.stop();
    let probes = harness::probe(
        a.frontend("web"),
        Duration::from_millis(10),
        Duration::from_millis(1500),
    );
    let failed: Vec<_> = probes.iter().filter(|p| !p.ok()).collect();
    assert!(failed.is_empty(), "after a1's death: {failed:?}");
    wait_for(Duration::from_secs(10), || {
        (effective(&a).get("i-b1").map(String::as_str) == Some("100%")).then_some(())
    })
    .unwrap_or_else(|| panic!("traffic never spilled to zone-b: {:?}", a.status_all()));
    let spilled = window(&a, 500);
    assert_eq!(spilled.failed, 0, "{spilled:?}");
    assert_eq!(share(&spilled, &["b1"]), 1.0, "{spilled:?}");

    // a1 comes back at its address: UP again, traffic returns to zone-a.
    let _a1 = Backend::spawn("a1", &a1_addr.to_string(), false).unwrap();
    wait_standby(&a, &["i-b1"]);
    let back = window(&a, 500);
    assert_eq!(back.failed, 0, "{back:?}");
    assert!(share(&back, &["a1"]) >= 0.95, "{back:?}");
}

#[test]
fn a_zone_taken_away_gets_no_new_request_until_it_is_back_even_across_a_restart() {
    let (a, _a1, _b1) = one_member_each();
    let all = Load::start(a.frontend("web"), 2, Duration::from_secs(120), 1_000_000);

    let run = a.agent(&["zone", "away", "zone-a"], None).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("zones away: zone-a"), "{}", run.stdout);
    // Within 10 s no new request reaches zone-a (its slot is kept, drained).
    let none_to_a = |h: &Host| {
        wait_for(Duration::from_secs(10), || {
            let w = window(h, 100);
            (!w.by_backend.contains_key("a1") && w.failed == 0).then_some(())
        })
    };
    none_to_a(&a).expect("zone-a still got requests");
    let w = window(&a, 500);
    assert_eq!(w.by_backend.get("a1"), None, "{w:?}");
    assert_eq!(w.failed, 0, "{w:?}");
    let s = a.status_all().unwrap();
    assert_eq!(s["away_zones"], serde_json::json!(["zone-a"]), "{s}");
    let rows = a.status().unwrap();
    let row = rows
        .iter()
        .find(|r| r["member"] == "i-a1")
        .expect("a1 keeps its slot");
    assert_eq!(row["admin"], "drain", "{row}");

    // The service restarts: zone-a stays away.
    a.kill_service();
    a.wait_service(Duration::from_secs(10)).unwrap();
    wait_for(Duration::from_secs(10), || a.status_all().ok()).expect("the service is back");
    let w = window(&a, 300);
    assert_eq!(w.by_backend.get("a1"), None, "{w:?}");
    // A member joining into the away zone joins (UP: it passes its checks) drained.
    let a2 = Backend::start("a2", "127.0.0.3").unwrap();
    apply_all(&[&a], 2, &[zoned("i-a2", a2.addr, "zone-a")], &[]);
    let w = window(&a, 300);
    assert_eq!(
        (w.by_backend.get("a1"), w.by_backend.get("a2")),
        (None, None),
        "{w:?}"
    );
    let listed = a.agent(&["zone"], None).unwrap();
    assert!(
        listed.stdout.contains("zones away: zone-a"),
        "{}",
        listed.stdout
    );

    // Back: zone-a takes the traffic again.
    let run = a.agent(&["zone", "back", "zone-a"], None).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    wait_standby(&a, &["i-b1"]);
    let back = window(&a, 500);
    let stats = all.stop();
    assert_eq!(stats.failed, 0, "requests failed: {stats:?}");
    assert!(share(&back, &["a1", "a2"]) >= 0.95, "{back:?}");
    assert!(
        back.by_backend.get("a2").copied().unwrap_or(0) > 100,
        "{back:?}"
    );
}

/// A host without affinity whose pool has two members weighted 90 (i-blue) and 10
/// (i-green), joined.
fn blue_green_90_10() -> (Host, Backend, Backend) {
    let h = host_in("proxy-weights", "zone-a", "");
    let blue = Backend::start("blue", "127.0.0.2").unwrap();
    let green = Backend::start("green", "127.0.0.3").unwrap();
    apply_all(
        &[&h],
        1,
        &[
            weighted("i-blue", blue.addr, 90),
            weighted("i-green", green.addr, 10),
        ],
        &[],
    );
    (h, blue, green)
}

#[test]
fn weights_are_restored_after_haproxy_is_restarted_by_someone_else() {
    let (mut h, _blue, _green) = blue_green_90_10();
    // Someone restarts HAProxy from a server-state file that knows nothing: the new
    // worker starts every slot at its configured weight, and the service restores it.
    std::fs::write(h.dir().join("state/server-state"), "1\n").unwrap();
    h.restart_haproxy_sf().unwrap();
    wait_for(Duration::from_secs(10), || {
        (haproxy_weight(&h, "i-blue") == Some(90) && haproxy_weight(&h, "i-green") == Some(10))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("weights not restored: {}", h.agent_log()));
    // A new worker from a state file that knows nothing starts its servers over.
    wait_for(Duration::from_secs(10), || {
        (haproxy_up(&h, "i-blue") && haproxy_up(&h, "i-green")).then_some(())
    })
    .unwrap_or_else(|| panic!("the new worker's servers never came UP: {}", h.agent_log()));
    // With 3.2, some requests right after that still got 503 (cause not found: see the
    // closing note of 2026-12-07); wait (bounded) for a clean short window first.
    wait_for(Duration::from_secs(10), || {
        (window(&h, 100).failed == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("requests kept failing after the restart: {}", h.agent_log()));
    let w = window(&h, 2000);
    assert_eq!(w.failed, 0, "{w:?}");
    let s = share(&w, &["blue"]);
    assert!((0.85..=0.95).contains(&s), "blue's share {s:.3}: {w:?}");
}

#[test]
fn two_groups_weighted_90_10_share_a_pool_90_10_and_a_new_weight_applies_without_reload() {
    let (h, blue, green) = blue_green_90_10();
    let w = window(&h, 2000);
    assert_eq!(w.failed, 0, "{w:?}");
    let s = share(&w, &["blue"]);
    assert!((0.85..=0.95).contains(&s), "blue's share {s:.3}: {w:?}");
    let reloads = h.reloads().unwrap();

    // A later message gives them other weights: applied at once, no reload.
    apply_all(
        &[&h],
        2,
        &[
            weighted("i-blue", blue.addr, 10),
            weighted("i-green", green.addr, 90),
        ],
        &[],
    );
    // fwrr gives a server whose weight grew a catch-up burst of about one round: the
    // shares are measured after it.
    window(&h, 300);
    let w = window(&h, 2000);
    let s = share(&w, &["green"]);
    assert!((0.85..=0.95).contains(&s), "green's share {s:.3}: {w:?}");
    assert_eq!(
        h.reloads().unwrap(),
        reloads,
        "a weight change reloaded HAProxy"
    );
    let e = effective(&h);
    assert_eq!(e["i-green"], "90", "{e:?}");
}

#[test]
fn zone_affinity_turned_on_and_off_by_sighup_moves_traffic_in_place() {
    let (h, _a1, _b1) = one_member_each_on(host_in("proxy-zone-a", "zone-a", ""));
    let pid = h.service_pid().expect("the service runs");
    let both = window(&h, 400);
    assert!(share(&both, &["b1"]) > 0.3, "affinity is off: {both:?}");
    let hup = |toml: &str, restarts: usize| {
        std::fs::write(&h.config, toml).unwrap();
        h.hup_service("[[pool]] changed").unwrap();
        assert_eq!(
            h.agent_log().matches("[[pool]] changed").count(),
            restarts,
            "one restart in place per SIGHUP"
        );
        h.wait_service(Duration::from_secs(10)).unwrap();
    };
    let off = std::fs::read_to_string(&h.config).unwrap();
    let on = off.replacen("name = \"web\"\n", &format!("name = \"web\"\n{PREFER}"), 1);
    hup(&on, 1);
    wait_standby(&h, &["i-b1"]);
    let kept = window(&h, 500);
    assert!(share(&kept, &["a1"]) >= 0.95, "{kept:?}");
    // Off again: the restarted service gives both their configured weight (1) back.
    hup(&off, 2);
    wait_for(Duration::from_secs(10), || {
        let e = effective(&h);
        (e.values().all(|w| w == "100%")
            && haproxy_weight(&h, "i-a1") == Some(1)
            && haproxy_weight(&h, "i-b1") == Some(1))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("the weights never went back:\n{}", h.agent_log()));
    let both = window(&h, 400);
    assert!(share(&both, &["b1"]) > 0.3, "{both:?}");
    assert_eq!(h.service_pid(), Some(pid), "the same process");
}
