//! The run: every approach asked for, in order, on one emulator ([`all`]), and one
//! approach's course ([`one`]): its start, the initial capacity, the cycles under load,
//! its stop and figures, and its teardown, which leaves the emulator as it was found.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use harness::world::Blocking;
use harness::{Load, LoadStats};
use stack::{percentile, say, stopping, until};

use crate::approach::{self, Approach};
use crate::figures::{spans, Figures};
use crate::rig::{Rig, Setup, MAX};
use crate::{report, trace, zones, Args, POOL};
use stack::usage::CpuMark;

/// Runs every approach of `args` and reports their figures; exit code 130 when stopped.
pub fn all(args: &Args) -> anyhow::Result<ExitCode> {
    let (zones, cycled): (Vec<&str>, Vec<&str>) = args
        .approaches
        .iter()
        .map(|a| a.trim())
        .partition(|a| *a == zones::NAME);
    let kinds = cycled
        .iter()
        .map(|a| approach::by_name(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The run's directory (TMPDIR: every host's files) lives until the last approach.
    let (dir, tag) = stack::run_dir("haproxy-asg-bench-")?;
    let results = if kinds.is_empty() {
        BTreeMap::new()
    } else {
        cycled_approaches(args, &kinds, dir.path(), &tag)?
    };
    let zone_figures = match zones.is_empty() || stopping() {
        true => None,
        false => {
            say!(
                "approach {} (2 hosts in two zones, 4 measurements)",
                zones::NAME
            );
            Some(zones::run().context("approach zones")?)
        }
    };
    let names: Vec<&'static str> = kinds.iter().map(|k| k.name).collect();
    if !names.is_empty() {
        report::table(&names, &results);
    }
    if let Some(z) = &zone_figures {
        report::zones(z);
    }
    report::json(args, &results, zone_figures.as_ref())?;
    report::html(args, &names, &results)?;
    drop(dir);
    if stopping() {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the approaches that cycle a group, each on the one emulator, in order.
fn cycled_approaches(
    args: &Args,
    kinds: &[&'static approach::Kind],
    dir: &std::path::Path,
    tag: &str,
) -> anyhow::Result<BTreeMap<&'static str, Figures>> {
    say!("setup    starting the AWS emulator");
    let world = Blocking::start(Some(&dir.join("emulator.log")))?;
    let mut results: BTreeMap<&'static str, Figures> = BTreeMap::new();
    for (i, kind) in kinds.iter().enumerate() {
        if stopping() {
            break;
        }
        say!("approach {} ({} cycles)", kind.name, args.cycles);
        let f =
            one(&world, kind, i, args, tag).with_context(|| format!("approach {}", kind.name))?;
        say!(
            "approach {}: {} requests, {} failed, {} reloads, p99 {} ms ({} ms excl. check), CPU {:.2} s",
            kind.name,
            f.requests,
            f.failed,
            f.reloads,
            percentile(&f.serving(), 99.0),
            percentile(&f.excl_check(), 99.0),
            f.control_cpu_s
        );
        results.insert(kind.name, f);
    }
    drop(world);
    Ok(results)
}

/// Approach `kind`, the `idx`-th of the run, from its start to its teardown; its figures.
fn one(
    world: &Blocking,
    kind: &approach::Kind,
    idx: usize,
    args: &Args,
    tag: &str,
) -> anyhow::Result<Figures> {
    let setup = Setup::new(world, args, idx, kind.name)?;
    let (mut approach, hosts) = (kind.start)(&setup)?;
    let rig = Rig::start(&setup, hosts, tag);
    initial_capacity(&rig, approach.as_mut())?;
    let (mut f, mark) = cycles(&rig, approach.as_mut(), kind.name, args)?;
    let trace = approach.stop(&rig, &mark, &mut f)?;
    when_announced_and_seen(&rig, &mut f)?;
    if let Some(dir) = &args.trace {
        trace::write(dir, kind.name, world, &f, trace)?;
    }
    drop(rig);
    approach.clean(world)?;
    Ok(f)
}

/// Scales the group to 2 and waits until both members are UP on every host, before the
/// load starts; a setup that does not get there fails, saying what each member, agent
/// and the control plane saw.
fn initial_capacity(rig: &Rig, approach: &mut dyn Approach) -> anyhow::Result<()> {
    rig.request();
    rig.world.scale(&rig.group, 2)?;
    let up = until(rig.wait_change * 2, || {
        let ids = rig.world.members(&rig.group).unwrap_or_default();
        ids.len() == 2
            && ids.iter().all(|m| m.state == "InService")
            && ids.iter().all(|m| {
                rig.fleet
                    .instance(&m.id)
                    .is_some_and(|i| rig.up_everywhere(&i))
            })
    });
    if up || stopping() {
        return Ok(());
    }
    let members = rig.world.members(&rig.group).unwrap_or_default();
    let states: Vec<String> = members
        .iter()
        .map(|m| {
            let seen: Vec<String> = rig
                .fleet
                .instance(&m.id)
                .map(|i| {
                    rig.watches
                        .iter()
                        .map(|w| format!("{:?}", w.get(&i.ip)))
                        .collect()
                })
                .unwrap_or_default();
            format!("{} {} (on the hosts: {})", m.id, m.state, seen.join(", "))
        })
        .collect();
    let logs: Vec<String> = rig
        .hosts
        .iter()
        .map(|h| {
            let log = h.agent_log();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            format!("{}: {}", h.name, tail.join(" | "))
        })
        .collect();
    anyhow::bail!(
        "the initial 2 members did not come up: {}; agents: {}; reactor: {}",
        states.join("; "),
        logs.join("; "),
        approach.handled().join("; ")
    )
}

/// The cycles under HTTP load on both frontends: the figures of the load, the samples,
/// the errors and the reloads; and the CPU counters taken before the first cycle.
fn cycles(
    rig: &Rig,
    approach: &mut dyn Approach,
    name: &str,
    args: &Args,
) -> anyhow::Result<(Figures, CpuMark)> {
    let loads: Vec<Load> = rig
        .hosts
        .iter()
        .map(|h| Load::start(h.frontend(POOL), args.workers, MAX, u64::MAX))
        .collect();
    let mut f = Figures::default();
    let reloads_before = rig.reloads(&mut f.errors);
    let mark = CpuMark::take(&rig.hosts, rig.world.emulator.pid());
    for c in 0..args.cycles {
        if stopping() {
            break;
        }
        approach.cycle(rig, c, &mut f)?;
        f.cycles = c + 1;
        if (c + 1) % 10 == 0 || c + 1 == args.cycles {
            let sent: u64 = loads.iter().map(Load::completed).sum();
            let from_request = spans(&f.samples, |s| Some(s.requested_ms), |s| s.ready_ms);
            say!(
                "{:<18} cycle {:>4}/{}: scale request -> out of MAINT p50 {} ms, p99 {} ms | requests {sent}",
                name,
                c + 1,
                args.cycles,
                percentile(&from_request, 50.0),
                percentile(&from_request, 99.0)
            );
        }
    }
    let stats: Vec<LoadStats> = loads.into_iter().map(Load::stop).collect();
    f.requests = stats.iter().map(|s| s.requests).sum();
    f.failed = stats.iter().map(|s| s.failed).sum();
    for s in &stats {
        for e in s.errors.iter().take(3) {
            f.errors.push(format!("request: {e}"));
        }
    }
    f.reloads = rig.reloads(&mut f.errors).saturating_sub(reloads_before);
    Ok((f, mark))
}

/// Each sample's event (Auto Scaling's first event about the instance) and, on the last
/// host, as the watches saw it by now, when its server left MAINT and was UP: the member
/// may have served through one host before the other had it out of MAINT or UP.
fn when_announced_and_seen(rig: &Rig, f: &mut Figures) -> anyhow::Result<()> {
    let announced = rig.world.announced()?;
    for s in &mut f.samples {
        s.event_ms = announced.get(&s.instance).copied();
        if let Some(ip) = rig.ip(&s.instance) {
            s.ready_ms = rig.last_host(&ip, |x| x.ready_ms);
            s.up_ms = rig.last_host(&ip, |x| x.up_ms);
        }
    }
    Ok(())
}
