//! `agent`: the command operators and SSM run on every HAProxy host.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use agent::control::{self, DiffLine, Reply, Request, SyncReply, MAX_MESSAGE};
use agent::haproxy_cfg::{self, CheckFailure};
use agent::status::Status;
use agent::units;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use infra::{Change, Desired, OutcomeStatus, Report};

/// Keeps HAProxy's backends in step with EC2 Auto Scaling groups, over HAProxy's
/// runtime socket: members take pre-declared slots (no reload while slots are free),
/// join only once healthy, and leave only once drained.
///
/// `agent run` is the service (one per host, started by systemd); `apply`, `sync` and
/// `status` hand their work to it over its control socket.
///
/// Exit codes: 0 the change was accepted (`apply`), or every member reached its target
/// (`apply --wait`, `sync`); 1 some member failed (see its reason); 2 the input or the
/// host was unusable (or the service is not running) and nothing was changed.
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

    /// More logging on stderr: -v info, -vv debug (`run` logs info already: there -v is
    /// debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent service in the foreground (what its systemd unit starts).
    ///
    /// It owns HAProxy's runtime state on this host: the slot table, the server-state
    /// file, the configuration's slot blocks and every join and drain in flight, each
    /// member on its own. It listens on the control socket (agent.toml
    /// `[service] control_socket`, default `<state_dir>/agent.sock`, mode 0660), resumes
    /// what a stopped service left, and with `[aws]` groups syncs from AWS at start and
    /// every `sync_interval_s`. With `[metrics] agent = "IP:PORT"` it serves its own
    /// Prometheus metrics at `/metrics` there. SIGTERM or Ctrl-C stops it; operations in
    /// flight resume at the next start.
    Run,
    /// Apply a change message: bring members up (health-gated) and drain members out.
    ///
    /// The message is versioned JSON, for example:
    ///   {"version":1,"generation":1732262400123,"pools":[{"pool":"web",
    ///    "add":[{"id":"i-0abc","address":"10.0.1.23","port":8080}],"remove":["i-0def"]}]}
    /// Read from --change, --change-base64, --file (or `--file -`), else standard input;
    /// at most 1 MiB. By hand, `"generation":"now"` takes this host's clock (ms): newer
    /// than anything sent before, so it is never STALE.
    ///
    /// Returns as soon as the service accepted the change (what Run Command runs: no
    /// health rise or drain holds it), printing one line per member: PENDING (started,
    /// or already converging under an earlier change, named in the reason), or what is
    /// known at once: UP (already serving), DRAINED (not in the pool), STALE (a newer
    /// message about it was already applied). Each member's outcome then goes to the
    /// reactor's inbox ([report] in agent.toml) when it is reached.
    ///
    /// With --wait it waits for this change's members instead and prints their
    /// outcomes: UP, DRAINED, FAILED (with the reason), STALE or PENDING.
    Apply {
        /// The change message as an argument.
        #[arg(long, conflicts_with_all = ["file", "change_base64"])]
        change: Option<String>,
        /// The change message as an argument, base64-encoded (standard alphabet, padded).
        /// What the SSM document passes: base64 needs no shell quoting, and the shell
        /// can `exec` the agent with no pipeline to start first.
        #[arg(long, value_name = "BASE64", conflicts_with = "file")]
        change_base64: Option<String>,
        /// A file holding the change message (`-` for standard input).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Wait for every member of this change to reach its target (health checks
        /// passed, drain ended; a member already converging under an earlier change is
        /// waited for until that operation ends); exit 1 if one failed, 2 if the service
        /// stopped before one had an outcome (it is `pending`, and resumes when the
        /// service starts again); progress goes to stderr.
        #[arg(long)]
        wait: bool,
        /// Accepted for scripts written before `apply` returned at once (it is the
        /// default now).
        #[arg(long, hide = true, conflicts_with = "wait")]
        no_wait: bool,
        /// Machine-readable output (one JSON report on stdout).
        #[arg(long)]
        json: bool,
    },
    /// Converge HAProxy to a full desired state and print the diff it applies.
    ///
    /// Members missing from the desired state are drained and released; servers HAProxy
    /// runs in a slot no member owns are drained and put in maintenance; members whose
    /// slot lost its address are set again. Members already converging stay as they are
    /// (waited for until their operation ends, unless --no-wait).
    Sync {
        /// A desired-state file ({"version":1,"generation":N,"pools":[{"pool":"web","members":[...]}]}).
        /// Without it the service reads the groups of agent.toml's [aws] section from AWS.
        #[arg(long)]
        desired: Option<PathBuf>,
        /// Print the diff only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for health checks or drains.
        #[arg(long)]
        no_wait: bool,
        /// Machine-readable output: {"dry_run":..,"diff":[..],"report":{..}|null}.
        #[arg(long)]
        json: bool,
    },
    /// Show every slot (member, address, admin and health state, sessions, last check),
    /// each pool's slot -> instance map (slots used and free; per used slot the
    /// instance, its state and HAProxy's status) and every operation in flight
    /// (elapsed, sessions left, deadline).
    ///
    /// A summary comes first (per pool: members by stage, slots used and free). When
    /// HAProxy does not answer, it says so and shows the agent's own table, HAProxy's
    /// columns `?`.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only this pool.
        #[arg(long)]
        pool: Option<String>,
        /// Only the slots that hold a member.
        #[arg(long)]
        used: bool,
    },
    /// Take an Availability Zone away on this host, bring it back, or list those away.
    ///
    /// `agent zone away us-east-1a` drains this host's members in that zone (in every
    /// pool): they take no new request, the ones they have finish, and they keep their
    /// slots (nothing is removed, no change message is needed). Members that join into
    /// it later join drained. `agent zone back us-east-1a` makes them ready again. Which
    /// zones are away is kept in the service's state: it survives a restart.
    ///
    /// It acts on this host only: to take a zone away for the whole fleet, run it on
    /// every proxy, e.g. with Run Command (AWS-RunShellScript) targeting the proxies'
    /// tag. Auto Scaling's zonal shift is not read (the reactor does not learn of it).
    ///
    /// With `zone_affinity = "prefer"`, members of an away zone do not count as this
    /// host's zone: taking the host's own zone away spills its traffic to the others
    /// first, then drains.
    Zone {
        #[command(subcommand)]
        action: Option<ZoneCmd>,
    },
    /// Produce or check the HAProxy configuration the pools need.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
enum ZoneCmd {
    /// Drain this host's members in ZONE (kept, not removed) until `agent zone back`.
    Away {
        /// The zone, as the members' messages name it (e.g. us-east-1a).
        zone: String,
    },
    /// Make this host's members in ZONE ready again (those otherwise joining or up).
    Back {
        /// The zone.
        zone: String,
    },
    /// Print this host's zone, the zones away and the pools whose traffic spills out
    /// of this host's zone (the default).
    List,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a complete haproxy.cfg for agent.toml (frontends, backends, slot lines,
    /// admin socket, server-state file; workers as `user`/`group` in `chroot`, logging
    /// every request with the instance that served it; with `[metrics] haproxy`, a
    /// frontend serving HAProxy's Prometheus exporter at `/metrics`). Run HAProxy with it in
    /// master-worker mode: `haproxy -W -S /run/haproxy/master.sock -f haproxy.cfg`.
    ///
    /// With `[haproxy] pools_config` the backends are not in it: they live in that file,
    /// which the agent writes (the service at start and on growth; --output when it does
    /// not exist yet), and HAProxy loads it after haproxy.cfg
    /// (`-f haproxy.cfg -f <pools_config>`). haproxy.cfg is then yours: route to the
    /// pools by name; the agent never writes it again.
    ///
    /// Also creates the instance map (`<state_dir>/instances.map`) empty when it does
    /// not exist: HAProxy refuses to start without it. An existing one is left alone.
    ///
    /// With --output, writes the file instead of printing it: only once `haproxy -c`
    /// accepts it, and atomically (a shell redirection `> haproxy.cfg` empties the file
    /// before anything is rendered, and leaves it empty when rendering fails).
    Render {
        /// Where to write it (e.g. /etc/haproxy/haproxy.cfg); the file is left as it was
        /// when the rendered configuration is refused.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Check that haproxy.cfg has what the agent needs (slot lines, server-state file,
    /// user, group, chroot, log; the exporter frontend with `[metrics] haproxy`), and
    /// say what to add if not.
    Check,
    /// Print the slot line for one pool, to paste into a hand-written backend.
    Block {
        /// The pool.
        #[arg(long)]
        pool: String,
    },
    /// Print the agent service's systemd unit (install it as
    /// /etc/systemd/system/haproxy-asg-agent.service): `agent --config <this agent.toml>
    /// run`, restarted on failure, sandboxed to the state directory, the control
    /// socket's directory and haproxy.cfg's directory.
    Unit {
        /// Where the agent binary is installed on the host.
        #[arg(long, default_value = units::DEFAULT_AGENT_BINARY)]
        agent_binary: PathBuf,
    },
    /// Print the drop-in for Debian's haproxy.service (install it as
    /// /etc/systemd/system/haproxy.service.d/haproxy-asg.conf): master-worker with
    /// agent.toml's master socket and haproxy.cfg, and the sandbox HAProxy tolerates.
    HaproxyDropin,
}

/// How a command ended: its exit code, or an error (exit 2).
type CommandResult = anyhow::Result<ExitCode>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, matches!(cli.command, Cmd::Run));
    match run(cli) {
        Ok(code) => code,
        // Piped into `head` and the like: the reader is gone, nothing is wrong.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agent: error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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

/// The log level `-v` (counted) asks for: the service logs info by default, a command
/// warnings.
fn log_level(verbose: u8, service: bool) -> &'static str {
    match (verbose, service) {
        (0, false) => "warn",
        (1, false) | (0, true) => "info",
        (_, false) | (1, true) => "debug",
        (_, true) => "trace",
    }
}

fn init_logging(verbose: u8, service: bool) {
    let default = log_level(verbose, service);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: the journal (or a log file) would keep the escape codes.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Writes to standard output; a closed pipe comes back as an error [`main`] ends
/// quietly on.
fn out(text: &str) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())?;
    o.write_all(b"\n")
}

fn read_input(
    change: Option<String>,
    change_base64: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<String> {
    if let Some(c) = change {
        return Ok(c);
    }
    if let Some(encoded) = change_base64 {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| {
                anyhow::anyhow!(
                    "--change-base64 is not valid base64 ({e}): pass the change message encoded with the standard alphabet, padded (`base64 -w0`)"
                )
            })?;
        return String::from_utf8(bytes).map_err(|_| {
            anyhow::anyhow!("--change-base64 decodes to bytes that are not UTF-8: encode the JSON change message itself")
        });
    }
    let mut text = String::new();
    let limit = u64::try_from(MAX_MESSAGE).unwrap_or(u64::MAX) + 1;
    match file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::File::open(&p)
                .and_then(|f| f.take(limit).read_to_string(&mut text))
                .with_context(|| format!("cannot read change file {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .take(limit)
                .read_to_string(&mut text)
                .context("cannot read the change message from standard input")?;
        }
    }
    Ok(text)
}

fn check_size(text: &str) -> anyhow::Result<()> {
    if text.len() > MAX_MESSAGE {
        bail!(
            "message too large: more than {MAX_MESSAGE} bytes (1 MiB); split the change into several messages"
        );
    }
    Ok(())
}

/// Sends `request` to the service, showing its progress on stderr.
fn call(cfg: &AgentConfig, request: &Request) -> anyhow::Result<Reply> {
    let started = std::time::Instant::now();
    let reply = control::call(&cfg.service.control_socket, request, |p| {
        let _ = writeln!(std::io::stderr(), "agent: {p}");
    })?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "service answered"
    );
    Ok(reply)
}

/// What an interrupted waiting command prints before it exits 130.
static INTERRUPTED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

extern "C" fn on_interrupt(_: libc::c_int) {
    if let Some(m) = INTERRUPTED.get() {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer was set before
        // the handler was installed and lives for the whole process.
        unsafe {
            libc::write(2, m.as_ptr().cast(), m.len());
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(130) }
}

/// Ctrl-C (or SIGTERM) while a command waits for the service stops only the command:
/// it says so, and what goes on in the service (`what`), then exits 130.
fn say_on_interrupt(what: String) {
    let text = format!("\nagent: interrupted: only this command stopped; {what}\n");
    if INTERRUPTED.set(text.into_bytes()).is_ok() {
        let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe {
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
    }
}

fn run(cli: Cli) -> CommandResult {
    let cfg = || -> anyhow::Result<AgentConfig> { Ok(AgentConfig::load(&cli.config)?) };
    match cli.command {
        Cmd::Run => {
            agent::service::run(cfg()?, &cli.config)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply {
            change,
            change_base64,
            file,
            wait,
            no_wait: _,
            json,
        } => {
            let text = read_input(change, change_base64, file)?;
            apply_cmd(cfg, &text, wait, json)
        }
        Cmd::Sync {
            desired,
            dry_run,
            no_wait,
            json,
        } => sync_cmd(cfg, desired, dry_run, no_wait, json),
        Cmd::Status { json, pool, used } => status_cmd(&cfg()?, &cli.config, pool, used, json),
        Cmd::Zone { action } => zone_cmd(&cfg()?, action),
        Cmd::Config(c) => config_cmd(&cfg()?, c, &cli.config),
    }
}

/// `agent apply`: hands the change `text` to the service; with `wait`, until its members
/// are there. The change is read before the configuration (`cfg` loads it): a bad change
/// is what is said first.
fn apply_cmd(
    cfg: impl FnOnce() -> anyhow::Result<AgentConfig>,
    text: &str,
    wait: bool,
    json: bool,
) -> CommandResult {
    check_size(text)?;
    let text = control::generation_now(text, infra::now_ms());
    let change = Change::from_json(&text)?;
    let cfg = &cfg()?;
    let request = Request::Apply {
        change: serde_json::to_value(&change)?,
        wait,
    };
    if wait {
        let goes = if cfg.report.is_some() {
            "their outcomes go to the reactor's inbox"
        } else {
            "`agent status` shows them"
        };
        say_on_interrupt(format!(
            "the service carries change {} on: its members keep joining and draining, and {goes}",
            change.generation
        ));
    }
    match call(cfg, &request)? {
        Reply::Report(r) if wait => print_report(&r, json),
        Reply::Report(r) => print_acceptance(&r, json, cfg.report.is_some()),
        other => bail!("unexpected answer from the agent service: {other:?}"),
    }
}

/// `agent sync`: the service converges on `desired` (or its own view of the fleet), read
/// before the configuration (`cfg` loads it).
fn sync_cmd(
    cfg: impl FnOnce() -> anyhow::Result<AgentConfig>,
    desired: Option<PathBuf>,
    dry_run: bool,
    no_wait: bool,
    json: bool,
) -> CommandResult {
    let desired = desired
        .map(|p| -> anyhow::Result<serde_json::Value> {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read desired state {}", p.display()))?;
            check_size(&text)?;
            let text = control::generation_now(&text, infra::now_ms());
            Ok(serde_json::to_value(Desired::from_json(&text)?)?)
        })
        .transpose()?;
    let cfg = &cfg()?;
    let request = Request::Sync {
        desired,
        dry_run,
        wait: !no_wait,
    };
    if !no_wait && !dry_run {
        say_on_interrupt("the service carries the sync on: its members keep joining and draining, and `agent status` shows them".into());
    }
    match call(cfg, &request)? {
        Reply::Sync(s) => print_sync(&s, json, !no_wait),
        other => bail!("unexpected answer from the agent service: {other:?}"),
    }
}

/// `agent status`: the service's pools and members (of `pool` only, when named).
fn status_cmd(
    cfg: &AgentConfig,
    path: &Path,
    pool: Option<String>,
    used: bool,
    json: bool,
) -> CommandResult {
    if let Some(p) = &pool {
        if cfg.pool(&infra::PoolName::new(p.as_str())?).is_none() {
            let names: Vec<String> = cfg.pools.iter().map(|c| c.name().to_string()).collect();
            bail!(
                "unknown pool {p}: {} defines no such [[pool]] (its pools: {})",
                path.display(),
                names.join(", ")
            );
        }
    }
    match call(cfg, &Request::Status)? {
        Reply::Status(s) => print_status(&s.only(pool.as_deref(), used), json),
        other => bail!("unexpected answer from the agent service: {other:?}"),
    }
}

/// `agent zone`: lists the zones taken away, or takes one away or back.
fn zone_cmd(cfg: &AgentConfig, action: Option<ZoneCmd>) -> CommandResult {
    let action = match action.unwrap_or(ZoneCmd::List) {
        ZoneCmd::Away { zone } => Some(control::ZoneAction::Away(infra::Zone::new(zone)?)),
        ZoneCmd::Back { zone } => Some(control::ZoneAction::Back(infra::Zone::new(zone)?)),
        ZoneCmd::List => None,
    };
    match call(cfg, &Request::Zone { action })? {
        Reply::Zones(z) => print_zones(&z),
        other => bail!("unexpected answer from the agent service: {other:?}"),
    }
}

/// Writes the rendered configuration to `path` once `haproxy -c` accepts it, atomically;
/// `path` is untouched otherwise.
fn render_to(cfg: &AgentConfig, path: &Path) -> anyhow::Result<()> {
    let text = haproxy_cfg::render(cfg);
    let mut name = path.as_os_str().to_owned();
    name.push(".agent-render");
    let candidate = PathBuf::from(name);
    // HAProxy loads the agent's own file of backends with it: written now when there is
    // none yet, so HAProxy can start before the agent service first runs.
    let pools = cfg.haproxy.pools_config.as_deref();
    let new_pools = pools.filter(|p| !p.exists());
    if let Some(p) = new_pools {
        let table: agent::slots::SlotTable = agent::store::read_json(&cfg.haproxy.slots_path())?;
        let backends = haproxy_cfg::pools_file(cfg, None, &table);
        agent::store::write_atomic(p, backends.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let checked = haproxy_cfg::haproxy_check(&cfg.haproxy.binary, &candidate, &text, None, pools);
    if checked.is_err() {
        if let Some(p) = new_pools {
            let _ = std::fs::remove_file(p);
        }
    } else if let Some(p) = new_pools {
        let _ = writeln!(
            std::io::stderr(),
            "agent: wrote {} (the pools' backends, which the agent keeps; HAProxy loads it after {})",
            p.display(),
            path.display()
        );
    }
    match checked {
        Ok(()) => {}
        Err(CheckFailure::Write(e)) => bail!("cannot write {}: {e}", candidate.display()),
        Err(CheckFailure::Run(e)) => bail!(
            "cannot run {} -c to check the rendered configuration ({e}); {} was not written",
            cfg.haproxy.binary.display(),
            path.display()
        ),
        Err(CheckFailure::Invalid(output)) => bail!(
            "haproxy -c refused the rendered configuration, so {} was left as it was:\n{output}",
            path.display()
        ),
    }
    agent::store::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Creates the instance map empty when it does not exist (HAProxy refuses to start
/// without it); says so on stderr, and warns when it can not.
fn ensure_instances_map(cfg: &AgentConfig) {
    let path = cfg.haproxy.instances_map.path();
    // The state directory too, on a fresh host (the service would create it later).
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "agent: created {} (empty): the instance map haproxy.cfg's log-format reads; the agent service keeps it in step",
                path.display()
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "agent: warning: cannot create {} ({e}): HAProxy refuses to start without it; create the state directory and run `agent config render` again, or create the file empty",
                path.display()
            );
        }
    }
    // An empty server-state file (its format's version line), so HAProxy's first start
    // does not warn about a missing one; the service writes it after every change.
    let state = cfg.haproxy.server_state_path();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&state)
    {
        let _ = f.write_all(b"1\n");
    }
}

fn config_cmd(cfg: &AgentConfig, c: ConfigCmd, file: &Path) -> CommandResult {
    match c {
        ConfigCmd::Render { output: None } => {
            out(haproxy_cfg::render(cfg).trim_end())?;
            ensure_instances_map(cfg);
        }
        ConfigCmd::Render { output: Some(path) } => {
            ensure_instances_map(cfg);
            render_to(cfg, &path)?;
            let _ = writeln!(
                std::io::stderr(),
                "agent: wrote {} (haproxy -c accepted it)",
                path.display()
            );
        }
        ConfigCmd::Unit { agent_binary } => {
            let file = std::path::absolute(file)
                .with_context(|| format!("cannot make {} absolute", file.display()))?;
            out(units::agent_unit(cfg, &file, &agent_binary)?.trim_end())?;
        }
        ConfigCmd::HaproxyDropin => out(units::haproxy_dropin(cfg)?.trim_end())?,
        ConfigCmd::Block { pool } => {
            let name = infra::PoolName::new(pool)?;
            let Some(pc) = cfg.pool(&name) else {
                bail!(
                    "unknown pool {name}: {} defines no such [[pool]]",
                    file.display()
                );
            };
            out(&haproxy_cfg::slot_line(pc, pc.slots))?;
        }
        ConfigCmd::Check => return config_check(cfg),
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent config check`: haproxy.cfg (and the agent's own file of backends) against
/// agent.toml and the slot table; exit 1 with each problem and its fix.
fn config_check(cfg: &AgentConfig) -> CommandResult {
    let path = &cfg.haproxy.config;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut problems = haproxy_cfg::check(cfg, &text);
    let map = cfg.haproxy.instances_map.path();
    if text.contains(cfg.haproxy.instances_map.as_str()) && !map.exists() {
        problems.push(format!("{}: the log-format reads {}, which does not exist: HAProxy refuses to start without it; run `agent config render` once (it creates it) or create it empty", path.display(), map.display()));
    }
    let blocks = match &cfg.haproxy.pools_config {
        None => Some(text.clone()),
        Some(own) => match std::fs::read_to_string(own) {
            Ok(t) => {
                problems.extend(haproxy_cfg::check_pools_file(cfg, &t));
                Some(t)
            }
            Err(e) => {
                problems.push(format!("{}: cannot read it ({e}): the agent service writes it when it starts, `agent config render --output` when it is missing; HAProxy refuses to start without it", own.display()));
                None
            }
        },
    };
    let table: agent::slots::SlotTable = agent::store::read_json(&cfg.haproxy.slots_path())?;
    if let Some(blocks) = &blocks {
        problems.extend(haproxy_cfg::check_against_table(cfg, blocks, &table));
    }
    for a in haproxy_cfg::advice(cfg, &text) {
        out(&format!("warning: {a}"))?;
    }
    let version = agent::haproxy::binary_version(&cfg.haproxy.binary).map_err(|e| e.to_string());
    if let Ok(v) = &version {
        if let Err(e) = agent::haproxy::supported(v.clone()) {
            problems.push(format!("{}: {e}", cfg.haproxy.binary.display()));
        }
    }
    for n in haproxy_cfg::growth_notes(
        cfg,
        blocks.as_deref(),
        version.as_ref().map_err(Clone::clone),
    ) {
        out(&format!("warning: {n}"))?;
    }
    for line in affinity_notes(cfg) {
        out(&line)?;
    }
    if problems.is_empty() {
        out(&format!(
            "{}: ok ({} pools)",
            path.display(),
            cfg.pools.len()
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        out(&format!("problem: {p}"))?;
    }
    Ok(ExitCode::from(1))
}

/// `agent config check`'s word on same-zone routing: each pool that prefers this
/// host's zone, and what spills it.
fn affinity_notes(cfg: &AgentConfig) -> Vec<String> {
    let Some(zone) = &cfg.zone else {
        return Vec::new();
    };
    cfg.pools
        .iter()
        .filter(|p| p.zone_affinity == agent::config::ZoneAffinity::Prefer)
        .map(|p| {
            format!(
                "zone affinity: pool {} prefers zone {zone}: while at least {} member(s) of {zone} are UP they share weight 256 and members of other zones stand by at weight 1 (a trickle HAProxy fails over to the moment the last local one fails), below that every member takes its own weight; members need their zone in the change messages (the reactor's MEMBER_ZONES)",
                p.name(),
                p.min_zone_members
            )
        })
        .collect()
}

/// 0 when every member reached its target (or, not `waited`, was started), 2 when a
/// `waited` request ended without an outcome for one of them (`pending`: the service
/// stopped), 1 when one failed.
fn exit_for(r: &Report, waited: bool) -> ExitCode {
    if r.ok {
        ExitCode::SUCCESS
    } else if waited
        && r.outcomes
            .iter()
            .any(|o| o.status == OutcomeStatus::Pending)
    {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

fn print_report(r: &Report, json: bool) -> CommandResult {
    if json {
        out(&serde_json::to_string(r)?)?;
        return Ok(exit_for(r, true));
    }
    for o in &r.outcomes {
        out(&format!(
            "{:<12} {:<22} {:<8} {:<8} {:>7.1}s  {}",
            o.pool.as_str(),
            o.member.as_str(),
            o.slot.as_deref().unwrap_or("-"),
            o.status.to_string(),
            o.ms as f64 / 1000.0,
            o.reason.as_deref().unwrap_or("")
        ))?;
    }
    let count = |s: OutcomeStatus| r.outcomes.iter().filter(|o| o.status == s).count();
    let (failed, pending) = (count(OutcomeStatus::Failed), count(OutcomeStatus::Pending));
    let stale = count(OutcomeStatus::Stale);
    out(&format!(
        "{}: {} members, {} reached their target, {} failed, {} stale (a newer message rules them), {} without an outcome; {} reload(s)",
        r.host,
        r.outcomes.len(),
        r.outcomes.len() - failed - pending - stale,
        failed,
        stale,
        pending,
        r.reloads
    ))?;
    Ok(exit_for(r, true))
}

/// What `agent apply` prints when it returns at once: the members as the service
/// accepted them, and where their outcomes go.
fn print_acceptance(r: &Report, json: bool, reporting: bool) -> CommandResult {
    if json {
        out(&serde_json::to_string(r)?)?;
        return Ok(exit_for(r, false));
    }
    for o in &r.outcomes {
        out(&format!(
            "{:<12} {:<22} {:<8} {:<8} {}",
            o.pool.as_str(),
            o.member.as_str(),
            o.slot.as_deref().unwrap_or("-"),
            o.status.to_string(),
            o.reason.as_deref().unwrap_or("")
        ))?;
    }
    let pending = r
        .outcomes
        .iter()
        .filter(|o| o.status == infra::OutcomeStatus::Pending)
        .count();
    let whereto = if reporting {
        "their outcomes go to the reactor's inbox as they are reached"
    } else {
        "`agent status` shows them; `agent apply --wait` waits for them"
    };
    out(&format!(
        "{}: accepted {} members: {} in progress, {} settled at once; {} reload(s); {whereto}",
        r.host,
        r.outcomes.len(),
        pending,
        r.outcomes.len() - pending,
        r.reloads
    ))?;
    Ok(exit_for(r, false))
}

fn print_sync(s: &SyncReply, json: bool, waited: bool) -> CommandResult {
    let code = s
        .report
        .as_ref()
        .map(|r| exit_for(r, waited))
        .unwrap_or(ExitCode::SUCCESS);
    if json {
        out(&serde_json::to_string(s)?)?;
        return Ok(code);
    }
    print_diff(&s.diff, s.dry_run)?;
    if let Some(r) = &s.report {
        print_report(r, false)?;
    }
    Ok(code)
}

fn print_diff(diff: &[DiffLine], dry_run: bool) -> std::io::Result<()> {
    if diff.is_empty() {
        out("nothing to change")?;
    }
    for d in diff {
        out(&format!(
            "{} {:<12} {:<22} {:<8} {}",
            d.op,
            d.pool,
            d.member,
            d.slot.as_deref().unwrap_or("-"),
            d.detail
        ))?;
    }
    if dry_run {
        out("(dry run: nothing was changed)")?;
    }
    Ok(())
}

fn print_zones(z: &control::ZonesReply) -> CommandResult {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    out(&format!(
        "host zone: {}",
        z.host_zone
            .as_deref()
            .unwrap_or("(not set: agent.toml zone)")
    ))?;
    out(&format!("zones away: {}", list(&z.away)))?;
    out(&format!(
        "pools spilled out of this zone: {}",
        list(&z.spilled)
    ))?;
    if z.commands > 0 {
        out(&format!("{} commands sent to HAProxy", z.commands))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent status`'s slot -> instance map of each pool, with each member's zone and
/// weights (nothing when no pool has a slot).
fn print_instance_maps(s: &Status) -> std::io::Result<()> {
    if !s
        .pools
        .iter()
        .any(|p| p.slots > 0 || !p.instances.is_empty())
    {
        return Ok(());
    }
    out("")?;
    out(&format!(
        "{:<20} {:<22} {:<9} {:<9} {:<12} {:>6} {:>9}  (the instance map: a log line's instance=)",
        "SLOT -> INSTANCE", "INSTANCE", "STATE", "STATUS", "ZONE", "WEIGHT", "EFFECTIVE"
    ))?;
    for p in &s.pools {
        out(&format!(
            "{}: {} of {} slots used, {} free",
            p.pool, p.used, p.slots, p.free
        ))?;
        for i in &p.instances {
            out(&format!(
                "  {:<18} {:<22} {:<9} {:<9} {:<12} {:>6} {:>9}",
                i.key,
                i.instance,
                i.state,
                if i.status.is_empty() { "-" } else { &i.status },
                i.zone.as_deref().unwrap_or("-"),
                i.weight.map_or("-".to_string(), |w| w.to_string()),
                i.effective.as_deref().unwrap_or("-"),
            ))?;
        }
    }
    Ok(())
}

fn print_status(s: &Status, json: bool) -> CommandResult {
    if json {
        out(&serde_json::to_string(s)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(why) = &s.haproxy_down {
        out(&format!("HAProxy does not answer: {why}"))?;
    }
    for line in s.summary() {
        out(&line)?;
    }
    out("")?;
    out(&format!(
        "{:<12} {:<8} {:<22} {:<9} {:<24} {:<6} {:<9} {:>5}  LAST CHECK",
        "POOL", "SLOT", "MEMBER", "STAGE", "ADDRESS", "ADMIN", "STATUS", "SESS"
    ))?;
    for r in &s.slots {
        out(&format!(
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
        ))?;
    }
    print_instance_maps(s)?;
    if !s.operations.is_empty() {
        out("")?;
        out(&format!(
            "{:<12} {:<22} {:<8} {:<6} {:>16} {:>9} {:>10} {:>5}  LAST CHECK",
            "IN FLIGHT", "MEMBER", "SLOT", "KIND", "CHANGE", "ELAPSED", "DEADLINE", "SESS"
        ))?;
        for o in &s.operations {
            out(&format!(
                "{:<12} {:<22} {:<8} {:<6} {:>16} {:>8.1}s {:>9.1}s {:>5}  {}",
                o.pool,
                o.member,
                o.slot,
                o.kind,
                o.change,
                o.elapsed_s,
                o.deadline_in_s,
                o.sessions,
                o.last_check
            ))?;
        }
    }
    if s.host_zone.is_some() || !s.away_zones.is_empty() {
        out("")?;
        out(&format!(
            "zone {}; zones away: {}; spilled out of this zone: {}",
            s.host_zone.as_deref().unwrap_or("(not set)"),
            if s.away_zones.is_empty() {
                "none".into()
            } else {
                s.away_zones.join(", ")
            },
            if s.spilled.is_empty() {
                "none".into()
            } else {
                s.spilled.join(", ")
            }
        ))?;
    }
    out("")?;
    for line in s.footer(infra::now_ms()) {
        out(&line)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use clap::CommandFactory;

    use super::*;

    /// Each command of clap's tree and its long options, but `--help`/`--version` and
    /// hidden ones; the global options once, on the root.
    fn tree(c: &clap::Command, path: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
        let root = path.is_empty();
        let flags = c
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter(|a| root || !a.is_global_set())
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "help" | "version"))
            .map(str::to_string)
            .collect();
        if root || c.get_subcommands().next().is_none() {
            out.insert(path.to_string(), flags);
        }
        for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
            let p = format!("{path} {}", sub.get_name());
            tree(sub, p.trim(), out);
        }
    }

    /// docs/interfaces.md's synopsis names every command and option the binary has, and
    /// none it does not.
    #[test]
    fn the_cli_synopsis_in_the_docs_is_the_command_tree() {
        let doc = include_str!("../../docs/interfaces.md");
        let block = doc
            .split("## Agent command line\n```\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("the synopsis block");
        let mut documented = BTreeMap::new();
        for line in block.lines().filter(|l| l.starts_with("agent ")) {
            // The synopsis, before the description (two spaces or more apart).
            let line = line.split("  ").next().unwrap_or_default();
            let path: Vec<&str> = line
                .split_whitespace()
                .skip(1)
                .take_while(|w| !w.starts_with(['[', '-', '<']))
                .collect();
            let flags: BTreeSet<String> = line
                .split("--")
                .skip(1)
                .map(|f| {
                    f.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect::<String>()
                })
                .filter(|f| !f.is_empty())
                .collect();
            documented.insert(path.join(" "), flags);
        }
        let mut actual = BTreeMap::new();
        let mut cmd = Cli::command();
        cmd.build();
        tree(&cmd, "", &mut actual);
        assert_eq!(documented, actual);
    }

    #[test]
    fn config_check_names_the_pools_that_prefer_their_zone() {
        let toml = "[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"\nadmin_socket = \"/run/admin.sock\"\nstate_dir = \"/var/lib/asg\"\n[[pool]]\nname = \"web\"\nport = 80\nzone_affinity = \"prefer\"\nmin_zone_members = 2\n[[pool]]\nname = \"api\"\nport = 81\n";
        let cfg = AgentConfig::parse(&format!("zone = \"zone-a\"\n{toml}")).unwrap();
        let notes = affinity_notes(&cfg);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("pool web prefers zone zone-a") && notes[0].contains("at least 2"),
            "{notes:?}"
        );
        let plain = AgentConfig::parse(&toml.replace("zone_affinity = \"prefer\"\n", "")).unwrap();
        assert!(affinity_notes(&plain).is_empty());
    }

    #[test]
    fn each_v_adds_a_level_to_what_the_command_logs_anyway() {
        let levels = |service| (0..3).map(|v| log_level(v, service)).collect::<Vec<_>>();
        assert_eq!(levels(false), ["warn", "info", "debug"]);
        assert_eq!(levels(true), ["info", "debug", "trace"]);
    }
}
