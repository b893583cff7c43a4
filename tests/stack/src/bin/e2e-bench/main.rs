//! `e2e-bench`: the local stack (emulator, instances played by local backends, two
//! HAProxy hosts under HTTP load) through N scale-out/scale-in cycles, once per approach,
//! each on fresh HAProxy hosts and its own group:
//!
//! - `ours`: lifecycle hooks, EventBridge -> the reactor's inbox (SQS) -> the reactor
//!   (in-process, fed as Lambda's event source mapping feeds it) -> SSM Run Command of
//!   the project's document -> `agent apply` -> the agent services (health-gated join,
//!   drain before release, no reload while slots are free), which report each member's
//!   outcome to the inbox; the hosts' reports complete the lifecycle action;
//! - `mixed` (ours again): each cycle terminates one member while a 5 s request is in
//!   flight on it, and Auto Scaling launches its replacement at once: launches and drains
//!   overlap, as in an instance refresh;
//! - `spot` (ours again): each cycle, EC2's Spot interruption warning for one member,
//!   which EC2 reclaims 10 s later (no terminate lifecycle action: it vanishes), and Auto
//!   Scaling's replacement; the warning must drain it first (deadline 8 s) so that no
//!   request fails;
//! - `reload_per_change` (baseline, implemented here): on each Auto Scaling event, rewrite
//!   the config with static `server` lines for the current members and reload HAProxy
//!   through the master socket, as template-based setups do;
//! - `polling` (baseline, implemented here): every 5 s DescribeAutoScalingGroups +
//!   DescribeInstances, then runtime-socket `set server addr` + `state ready` for new
//!   members and straight `maint` for removed ones, without drain, as ElasticPyProxy does;
//! - `zones` (not cycles, [`zones`]): same-zone routing on two hosts in two zones: the
//!   share kept in each proxy's zone with `zone_affinity = "prefer"` and without, the
//!   requests failed while a zone's members leave, and how long a proxy takes to spill
//!   when its zone's last member dies.
//!
//! Prints a table; `--json PATH` writes the figures, `--html PATH` a page of the latency
//! distributions per approach ([`stack::page::latencies`]).
//!
//! The parts: each approach is an [`approach::Approach`] in a file of its own under
//! [`approach`]; [`run`] takes one through its setup, its cycles and its teardown on a
//! [`rig::Rig`] (the group, the hosts, the watches, the fleet); [`cycle`] holds what the
//! cycles share, [`figures`] what they measure, [`cpu`] the control plane's CPU time,
//! [`trace`] the `--trace` files, [`cleanup`] the emulator's teardown and [`report`] the
//! table and the files written at the end.
#![recursion_limit = "256"]

mod approach;
mod cleanup;
mod cycle;
mod figures;
mod report;
mod rig;
mod run;
mod trace;
mod zones;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The pool every approach feeds.
const POOL: &str = "web";
/// The servers' options in the hosts' rendered config (and the reload baseline's lines).
const SERVER_OPTIONS: &str = "check inter 100ms fall 2 rise 2";

/// End-to-end benchmark: this project against two baselines, under HTTP load.
#[derive(Parser, Debug)]
#[command(name = "e2e-bench", version, max_term_width = 100)]
struct Args {
    /// Scale-out/scale-in cycles per approach.
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML page of the latency distributions per approach here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Approaches to run (comma separated): ours, mixed, spot, reload_per_change,
    /// polling, zones (same-zone routing on two hosts in two zones: not cycles).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,mixed,spot,reload_per_change,polling,zones"
    )]
    approaches: Vec<String>,
    /// The polling baseline's interval, seconds.
    #[arg(long, default_value_t = 5.0)]
    poll_interval_s: f64,
    /// Initial slots per host (the cycles need 3, so no growth).
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// HTTP load workers per frontend.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Ours: pollers feeding the reactor from its inbox (the event source mapping's
    /// maximum concurrency; Terraform's default is 5).
    #[arg(long, default_value_t = stack::control::POLLERS)]
    pollers: usize,
    /// Also write, per approach, DIR/<approach>.json: every sample's timestamps, the
    /// reactor's invocations (their records, when received, how long, what they did),
    /// the agent runs (start, end), the emulator's call log (arrival, lock, end of each
    /// AWS call) and the events it emitted; to see where the time went.
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    stack::install_signal_handlers();
    stack::elapsed_s();
    match run::all(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("e2e-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
