//! The end of the run: the table of every approach's figures on stdout, the JSON
//! figures (`--json`) and the page of the latency distributions (`--html`).

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::{json, Value};
use stack::percentile;

use crate::figures::Figures;
use crate::{Args, SERVER_OPTIONS};

/// Prints one row per approach that ran, in `names`' order, and what the columns mean.
pub fn table(names: &[&'static str], results: &BTreeMap<&'static str, Figures>) {
    println!();
    println!(
        "{:<18} {:>9} {:>7} {:>7} {:>13} {:>13} {:>17} {:>17} {:>10}",
        "approach",
        "requests",
        "failed",
        "reloads",
        "e2s p50 ms",
        "e2s p99 ms",
        "excl-check p50",
        "excl-check p99",
        "ctl CPU s"
    );
    for name in names {
        let Some(f) = results.get(name) else {
            continue;
        };
        println!(
            "{:<18} {:>9} {:>7} {:>7} {:>13} {:>13} {:>17} {:>17} {:>10.2}",
            name,
            f.requests,
            f.failed,
            f.reloads,
            percentile(&f.serving(), 50.0),
            percentile(&f.serving(), 99.0),
            percentile(&f.excl_check(), 50.0),
            percentile(&f.excl_check(), 99.0),
            f.control_cpu_s
        );
    }
    println!("(e2s: Auto Scaling's event about the new instance -> first request it served through HAProxy; excl-check: that event -> its server left MAINT with its address on the last host. The JSON also has the same figures from the scale request, which add the emulator's launch.)");
}

/// With `--json`, writes each approach's figures ([`Figures::json`]) and the settings.
pub fn json(
    args: &Args,
    results: &BTreeMap<&'static str, Figures>,
    zones: Option<&Value>,
) -> anyhow::Result<()> {
    let Some(p) = &args.json else {
        return Ok(());
    };
    let mut out = serde_json::Map::new();
    for (k, f) in results {
        out.insert((*k).to_string(), f.json());
    }
    if let Some(z) = zones {
        out.insert(crate::zones::NAME.into(), z.clone());
    }
    out.insert(
        "settings".into(),
        json!({"cycles": args.cycles, "poll_interval_s": args.poll_interval_s, "hosts": 2,
               "workers_per_frontend": args.workers, "slots": args.slots, "pollers": args.pollers,
               "server_options": SERVER_OPTIONS, "profile": if cfg!(debug_assertions) { "debug" } else { "release" }}),
    );
    std::fs::write(p, serde_json::to_string_pretty(&Value::Object(out))?)
        .with_context(|| format!("writing {}", p.display()))?;
    println!("figures written to {}", p.display());
    Ok(())
}

/// Prints the `zones` approach's figures, each with its target.
pub fn zones(z: &Value) {
    println!("zones (2 hosts in two zones, real HAProxy and agent service, loopback backends):");
    for (key, target) in [
        ("same_zone_fraction", ">= 0.95"),
        ("same_zone_fraction_blind", "zone-blind, for comparison"),
        ("zone_loss_failed_requests", "0"),
        ("zone_spill_ms", "< 1000"),
        (
            "zone_death_failed_requests",
            "the last local member dies unannounced",
        ),
        (
            "zone_death_failed_requests_blind",
            "a member dies unannounced, zone-blind, for comparison",
        ),
    ] {
        println!("  {key:<30} {:>10}  {target}", z[key]);
    }
}

/// With `--html`, writes the page of the latency distributions per approach, in
/// `names`' order.
pub fn html(
    args: &Args,
    names: &[&'static str],
    results: &BTreeMap<&'static str, Figures>,
) -> anyhow::Result<()> {
    let Some(p) = &args.html else {
        return Ok(());
    };
    let rows: Vec<(String, Vec<u64>, Vec<u64>)> = names
        .iter()
        .filter_map(|name| {
            results
                .get(name)
                .map(|f| ((*name).into(), f.serving(), f.excl_check()))
        })
        .collect();
    let what = format!(
        "{} cycles per approach, 2 hosts, {} slots",
        args.cycles, args.slots
    );
    stack::page::latencies("e2e-bench: event to serving per approach", &what, &rows)
        .write(p)
        .with_context(|| format!("writing {}", p.display()))?;
    println!("page written to {}", p.display());
    Ok(())
}
