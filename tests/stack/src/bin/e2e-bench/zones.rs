//! `zones`: same-zone routing on two real HAProxy hosts, one in zone-a and one in
//! zone-b (agent.toml `zone`), each with the agent service; four real backends on
//! loopback, two per zone; the members carry their zone in the change messages as the
//! reactor sends them with `MEMBER_ZONES=true`. Not a cycle of scaling like the other
//! approaches: four measurements, each on fresh hosts.
//!
//! - `same_zone_fraction`: with `zone_affinity = "prefer"`, the share of each proxy's
//!   answers served by its own zone's members (the lower of the two proxies), once the
//!   other zone stands by at weight 1 (a trickle); `same_zone_fraction_blind`, the same
//!   without affinity (every member gets its share: about a half).
//! - `zone_loss_failed_requests`: under load on zone-a's proxy, zone-a's two members
//!   leave (drained, one change each): requests that failed while traffic spilled.
//! - `zone_spill_ms`: zone-a's last member dies (its backend stops, unannounced): from
//!   that moment until every answer on zone-a's proxy comes from zone-b; the requests
//!   that failed in those 3 s are `zone_death_failed_requests` (HAProxy's checks notice
//!   a death, not a drain), and `zone_death_failed_requests_blind` the same death in a
//!   zone-blind pool, for comparison.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use harness::{Backend, Host, HostSpec, Load, LoadStats, PoolSpec};
use infra::{Change, Member, MemberId, PoolChange, PoolName, Port, Zone};
use serde_json::{json, Value};
use stack::say;

/// Its name.
pub const NAME: &str = "zones";

const PREFER: &str = "zone_affinity = \"prefer\"\nmin_zone_members = 1\n";
/// Requests per proxy for a share.
const WINDOW: u64 = 2_000;

/// Runs the four measurements; their figures.
pub fn run() -> anyhow::Result<Value> {
    say!("zones    blind: affinity off");
    let blind = same_zone(false)?;
    say!("zones    prefer: each proxy's own zone");
    let prefer = same_zone(true)?;
    say!("zones    zone-a's members leave under load");
    let loss = zone_loss()?;
    say!("zones    zone-a's last member dies under load");
    let (spill_ms, death_failed) = zone_death(true)?;
    say!("zones    blind: a member dies under load");
    let (_, death_failed_blind) = zone_death(false)?;
    Ok(json!({
        "same_zone_fraction": prefer,
        "same_zone_fraction_blind": blind,
        "zone_loss_failed_requests": loss,
        "zone_spill_ms": spill_ms,
        "zone_death_failed_requests": death_failed,
        "zone_death_failed_requests_blind": death_failed_blind,
        "requests_per_share": WINDOW,
        "targets": {"same_zone_fraction": ">= 0.95", "zone_loss_failed_requests": 0, "zone_spill_ms": "< 1000"},
    }))
}

/// Two hosts (zone-a, zone-b), with or without affinity.
fn hosts(prefer: bool) -> anyhow::Result<(Host, Host)> {
    let host = |name: &str, zone: &str| {
        let mut pool = PoolSpec::new(crate::POOL, 8);
        pool.server_options = "check inter 100ms fall 2 rise 1".into();
        if prefer {
            pool.extra_toml = PREFER.into();
        }
        let spec = HostSpec {
            name: name.into(),
            pools: vec![pool],
            extra_toml: String::new(),
            env: Vec::new(),
        };
        Host::start_with_top(&spec, &format!("zone = \"{zone}\"\n"))
            .with_context(|| format!("starting {name}"))
    };
    Ok((host("zones-a", "zone-a")?, host("zones-b", "zone-b")?))
}

/// Backends `names` (`a1`, `b2`: the letter is the zone) on 127.0.0.x.
fn backends(names: &[(&str, u8)]) -> anyhow::Result<Vec<Backend>> {
    names
        .iter()
        .map(|(n, ip)| Backend::start(n, &format!("127.0.0.{ip}")))
        .collect()
}

/// The member of backend `b`, in its zone.
fn member(b: &Backend) -> anyhow::Result<Member> {
    let zone = format!("zone-{}", &b.name[..1]);
    let port = Port::new(i64::from(b.addr.port()))?;
    Ok(
        Member::new(MemberId::new(format!("i-{}", b.name))?, b.addr.ip(), port)?
            .with_zone(Some(Zone::new(zone)?)),
    )
}

/// Applies a change (`add`, `remove` by backend name) on `hosts`, waiting for it.
fn apply(
    hosts: &[&Host],
    generation: u64,
    add: &[&Backend],
    remove: &[&str],
) -> anyhow::Result<()> {
    let change = Change::new(
        generation,
        vec![PoolChange {
            pool: PoolName::new(crate::POOL)?,
            add: add
                .iter()
                .map(|b| member(b))
                .collect::<anyhow::Result<_>>()?,
            remove: remove
                .iter()
                .map(|n| MemberId::new(format!("i-{n}")))
                .collect::<Result<_, _>>()?,
            drain_by_ms: Default::default(),
        }],
    );
    for h in hosts {
        let (r, run) = h.apply(&change)?;
        if !r.ok {
            bail!(
                "{}: the change did not converge: {r:?} {}",
                h.name,
                run.stderr
            );
        }
    }
    Ok(())
}

/// `n` requests through `h` (4 workers, at most 60 s).
fn window(h: &Host, n: u64) -> LoadStats {
    Load::start(h.frontend(crate::POOL), 4, Duration::from_secs(60), n).wait()
}

/// The share of `stats`' answers served by backends of `zone` (`a`, `b`).
fn share(stats: &LoadStats, zone: &str) -> f64 {
    let ok: u64 = stats.by_backend.values().sum();
    let by: u64 = stats
        .by_backend
        .iter()
        .filter(|(name, _)| name.starts_with(zone))
        .map(|(_, n)| n)
        .sum();
    by as f64 / ok.max(1) as f64
}

/// Waits (at most 10 s) until `WINDOW / 10` requests through `h` stay in `zone` but for
/// a trickle (at least 95 %): the other zone stands by.
fn settle(h: &Host, zone: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while share(&window(h, WINDOW / 10), zone) < 0.95 {
        if Instant::now() > until {
            bail!("{}: traffic never stayed in zone-{zone}", h.name);
        }
    }
    Ok(())
}

/// The lower of the two proxies' same-zone shares.
fn same_zone(prefer: bool) -> anyhow::Result<f64> {
    let (a, b) = hosts(prefer)?;
    let bs = backends(&[("a1", 2), ("a2", 3), ("b1", 4), ("b2", 5)])?;
    apply(&[&a, &b], 1, &bs.iter().collect::<Vec<_>>(), &[])?;
    if prefer {
        settle(&a, "a")?;
        settle(&b, "b")?;
    }
    let (on_a, on_b) = (window(&a, WINDOW), window(&b, WINDOW));
    if on_a.failed + on_b.failed > 0 {
        bail!("requests failed in a steady state: {on_a:?} {on_b:?}");
    }
    Ok(share(&on_a, "a").min(share(&on_b, "b")))
}

/// Failed requests on zone-a's proxy while both its members leave, one change each.
fn zone_loss() -> anyhow::Result<u64> {
    let (a, b) = hosts(true)?;
    let bs = backends(&[("a1", 2), ("a2", 3), ("b1", 4), ("b2", 5)])?;
    apply(&[&a, &b], 1, &bs.iter().collect::<Vec<_>>(), &[])?;
    settle(&a, "a")?;
    let load = Load::start(
        a.frontend(crate::POOL),
        4,
        Duration::from_secs(60),
        u64::MAX,
    );
    std::thread::sleep(Duration::from_millis(500));
    apply(&[&a, &b], 2, &[], &["a1"])?;
    apply(&[&a, &b], 3, &[], &["a2"])?;
    std::thread::sleep(Duration::from_millis(500));
    let stats = load.stop();
    let after = window(&a, WINDOW / 10);
    if share(&after, "b") < 1.0 {
        bail!("zone-a's proxy did not spill to zone-b: {after:?}");
    }
    Ok(stats.failed)
}

/// zone-a's only member dies: ms until every answer on zone-a's proxy comes from
/// zone-b, and the requests that failed in the 3 s. A request goes out every 20 ms on a
/// thread of its own (as a loaded proxy sees them), so one request HAProxy retries
/// against the dead server does not hold the others back.
fn zone_death(prefer: bool) -> anyhow::Result<(u64, u64)> {
    let (a, b) = hosts(prefer)?;
    let mut bs = backends(&[("a1", 2), ("b1", 4), ("b2", 5)])?;
    apply(&[&a, &b], 1, &bs.iter().collect::<Vec<_>>(), &[])?;
    if prefer {
        settle(&a, "a")?;
    }
    bs[0].stop();
    let probes = harness::probe(
        a.frontend(crate::POOL),
        Duration::from_millis(20),
        Duration::from_secs(3),
    );
    // In the order sent: the spill is done at the first answer from zone-b after the
    // last one that was not (a failure, or zone-a's member before it died).
    let mut spilled = None::<Duration>;
    for p in &probes {
        match p.served_by() {
            Some(b) if b.starts_with('b') => {
                spilled.get_or_insert(p.done);
            }
            _ => spilled = None,
        }
    }
    let failed = probes.iter().filter(|p| !p.ok()).count() as u64;
    let spilled = spilled
        .context("zone-a's proxy did not spill to zone-b within 3 s of its last member's death")?;
    Ok((spilled.as_millis() as u64, failed))
}
