//! `agent`: the command operators and SSM run on every HAProxy host.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use agent::engine::{DiffLine, Engine, Options};
use agent::{cfgfile, status};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use infra::{Change, Desired, Report};

/// Keeps HAProxy's backends in step with EC2 Auto Scaling groups, over HAProxy's
/// runtime socket: members take pre-declared slots (no reload while slots are free),
/// join only once healthy, and leave only once drained.
///
/// Exit codes: 0 every member reached its target; 1 some member failed (see its
/// reason); 2 the input or the host was unusable and nothing was changed.
#[derive(Parser)]
#[command(
    name = "agent",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// The agent configuration (sockets, state directory, pools).
    #[arg(long, global = true, env = "AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,

    /// More logging on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Apply a change message: bring members up (health-gated) and drain members out.
    ///
    /// The message is versioned JSON, for example:
    ///   {"version":1,"generation":1732262400123,"pools":[{"pool":"web",
    ///    "add":[{"id":"i-0abc","address":"10.0.1.23","port":8080}],"remove":["i-0def"]}]}
    /// Read from --change, --file (or `--file -`), else standard input. Prints one line
    /// per member: UP, DRAINED, FAILED (with the reason) or STALE (a newer message about
    /// it was already applied). Messages older than what a member has seen change nothing.
    Apply {
        /// The change message as an argument.
        #[arg(long, conflicts_with = "file")]
        change: Option<String>,
        /// A file holding the change message (`-` for standard input).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Send the commands and return without waiting for health checks or drains
        /// (outcomes are PENDING).
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Converge HAProxy to a full desired state and print the diff it applies.
    ///
    /// Members missing from the desired state are drained and released; servers HAProxy
    /// runs in a slot no member owns are drained and put in maintenance; members whose
    /// slot lost its address are set again.
    Sync {
        /// A desired-state file ({"version":1,"generation":N,"pools":[{"pool":"web","members":[...]}]}).
        /// Without it the groups named in agent.toml's [aws] section are read from AWS.
        #[arg(long)]
        desired: Option<PathBuf>,
        /// Print the diff only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for health checks or drains.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show every slot: member, address, admin and health state, sessions, last check.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Produce or check the HAProxy configuration the pools need.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Args)]
struct RunArgs {
    /// Machine-readable output (one JSON report on stdout).
    #[arg(long)]
    json: bool,
    /// How long to wait for another agent run on this host to finish.
    #[arg(long, default_value = "300", value_name = "SECONDS")]
    lock_timeout: f64,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a complete haproxy.cfg for agent.toml (frontends, backends, slot lines,
    /// admin socket, server-state file). Run HAProxy with it in master-worker mode:
    /// `haproxy -W -S /run/haproxy/master.sock -f haproxy.cfg`.
    Render,
    /// Check that haproxy.cfg has what the agent needs, and say what to add if not.
    Check,
    /// Print the slot line for one pool, to paste into a hand-written backend.
    Block {
        /// The pool.
        #[arg(long)]
        pool: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent: error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, leaving out causes the message already quotes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    Ok(AgentConfig::load(path)?)
}

fn read_input(change: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    if let Some(c) = change {
        return Ok(c);
    }
    let mut text = String::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read change file {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the change message from standard input")?;
        }
    }
    Ok(text)
}

fn lock_timeout(s: f64) -> anyhow::Result<Duration> {
    if !(s.is_finite() && s >= 0.0) {
        bail!("--lock-timeout must be a number of seconds >= 0");
    }
    Ok(Duration::from_secs_f64(s))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Apply {
            change,
            file,
            no_wait,
            run,
        } => {
            let text = read_input(change, file)?;
            let change = Change::from_json(&text)?;
            let cfg = load(&cli.config)?;
            let mut engine = Engine::open(&cfg, lock_timeout(run.lock_timeout)?)?;
            let opts = Options {
                wait: !no_wait,
                progress: true,
            };
            let report = engine.apply(&change, &opts)?;
            print_report(&report, run.json);
            Ok(exit_for(&report))
        }
        Cmd::Sync {
            desired,
            dry_run,
            no_wait,
            run,
        } => {
            let cfg = load(&cli.config)?;
            let desired = match desired {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read desired state {}", p.display()))?;
                    Desired::from_json(&text)?
                }
                None => desired_from_aws(&cfg)?,
            };
            let mut engine = Engine::open(&cfg, lock_timeout(run.lock_timeout)?)?;
            let opts = Options {
                wait: !no_wait,
                progress: true,
            };
            let (diff, report) = engine.sync(&desired, &opts, dry_run)?;
            if run.json {
                let v = serde_json::json!({"dry_run": dry_run, "diff": diff, "report": report});
                println!("{v}");
            } else {
                print_diff(&diff, dry_run);
                if let Some(r) = &report {
                    print_report(r, false);
                }
            }
            Ok(report.as_ref().map(exit_for).unwrap_or(ExitCode::SUCCESS))
        }
        Cmd::Status { json } => {
            let cfg = load(&cli.config)?;
            let rows = status::collect(&cfg)?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<12} {:<8} {:<22} {:<9} {:<24} {:<6} {:<9} {:>5}  LAST CHECK",
                    "POOL", "SLOT", "MEMBER", "STAGE", "ADDRESS", "ADMIN", "STATUS", "SESS"
                );
                for r in rows {
                    println!(
                        "{:<12} {:<8} {:<22} {:<9} {:<24} {:<6} {:<9} {:>5}  {}",
                        r.pool,
                        r.slot,
                        r.member.as_deref().unwrap_or("-"),
                        r.stage.as_deref().unwrap_or("-"),
                        r.address,
                        r.admin,
                        r.status,
                        r.sessions,
                        r.last_check
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(c) => {
            let cfg = load(&cli.config)?;
            match c {
                ConfigCmd::Render => print!("{}", cfgfile::render(&cfg)),
                ConfigCmd::Block { pool } => {
                    let name = infra::PoolName::new(pool)?;
                    let Some(pc) = cfg.pool(&name) else {
                        bail!("unknown pool {name}: agent.toml defines no such [[pool]]");
                    };
                    println!("{}", cfgfile::slot_line(pc, pc.slots));
                }
                ConfigCmd::Check => {
                    let path = &cfg.haproxy.config;
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let problems = cfgfile::check(&cfg, &text);
                    if problems.is_empty() {
                        println!("{}: ok ({} pools)", path.display(), cfg.pools.len());
                    } else {
                        for p in &problems {
                            println!("problem: {p}");
                        }
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn desired_from_aws(cfg: &AgentConfig) -> anyhow::Result<Desired> {
    eprintln!(
        "agent: reading groups {} from AWS...",
        cfg.aws_groups
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(agent::aws::desired(cfg)?)
}

fn exit_for(r: &Report) -> ExitCode {
    if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_report(r: &Report, json: bool) {
    if json {
        // A closed stdout (e.g. piped into `head`) is not worth a panic.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string(r).unwrap_or_default()
        );
        return;
    }
    for o in &r.outcomes {
        println!(
            "{:<12} {:<22} {:<8} {:<8} {:>7.1}s  {}",
            o.pool.as_str(),
            o.member.as_str(),
            o.slot.as_deref().unwrap_or("-"),
            o.status.to_string(),
            o.ms as f64 / 1000.0,
            o.reason.as_deref().unwrap_or("")
        );
    }
    let failed = r.outcomes.iter().filter(|o| !o.status.is_success()).count();
    println!(
        "{}: {} members, {} reached their target, {} failed; {} reload(s)",
        r.host,
        r.outcomes.len(),
        r.outcomes.len() - failed,
        failed,
        r.reloads
    );
}

fn print_diff(diff: &[DiffLine], dry_run: bool) {
    if diff.is_empty() {
        println!("nothing to change");
    }
    for d in diff {
        println!(
            "{} {:<12} {:<22} {:<8} {}",
            d.op,
            d.pool,
            d.member,
            d.slot.as_deref().unwrap_or("-"),
            d.detail
        );
    }
    if dry_run {
        println!("(dry run: nothing was changed)");
    }
}
