//! One HAProxy host: a temp directory with its own agent.toml, haproxy.cfg (rendered by
//! `agent config render`), sockets and state, a real HAProxy in master-worker mode, and
//! the real agent service (`agent run`) under a supervisor that restarts it when it dies,
//! as its systemd unit's `Restart=on-failure` does; `agent apply`, `sync` and `status`
//! are the real binary too.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::haproxy::{Client, Endpoint};
use anyhow::Context;
use infra::{Change, Report};

use crate::process::bin_path;
use crate::{free_port, wait_for};

/// A pool on a test host.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// The pool (backend) name.
    pub name: String,
    /// Initial slots.
    pub slots: u32,
    /// HTTP health-check path (`None`: TCP checks).
    pub health_path: Option<String>,
    /// Health timeout, seconds.
    pub health_timeout_s: f64,
    /// Drain timeout, seconds.
    pub drain_timeout_s: f64,
    /// Server options.
    pub server_options: String,
    /// The members' default port.
    pub port: u16,
    /// The backend's `balance` (`None`: agent.toml's default, roundrobin).
    pub balance: Option<String>,
    /// More keys of the pool's `[[pool]]` table, as is (e.g. `zone_affinity = "prefer"`).
    pub extra_toml: String,
}

impl PoolSpec {
    /// A pool with fast checks (inter 100ms, rise 2) and short timeouts, for tests.
    pub fn new(name: &str, slots: u32) -> Self {
        Self {
            name: name.into(),
            slots,
            health_path: None,
            health_timeout_s: 5.0,
            drain_timeout_s: 10.0,
            server_options: "check inter 100ms fall 2 rise 2".into(),
            port: 80,
            balance: None,
            extra_toml: String::new(),
        }
    }

    /// The same pool with `balance static-rr`: HAProxy cannot add servers to it at
    /// runtime, so it grows with a reload on every version (the tests of the reload
    /// path run on every version so).
    pub fn static_rr(mut self) -> Self {
        self.balance = Some("static-rr".into());
        self
    }
}

/// What a host runs.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// The host's name (reported by its agent).
    pub name: String,
    /// Its pools.
    pub pools: Vec<PoolSpec>,
    /// Extra agent.toml text appended as is (e.g. an `[aws]` section).
    pub extra_toml: String,
    /// Environment for every agent run (e.g. `AWS_ENDPOINT_URL` of the emulator).
    pub env: Vec<(String, String)>,
}

/// The result of one agent run.
#[derive(Debug, Clone)]
pub struct AgentRun {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The agent process's peak resident memory (KiB), from `wait4`.
    pub max_rss_kb: i64,
}

/// The agent service process and its supervisor's switch.
#[derive(Default)]
struct Service {
    child: Option<Child>,
    /// Restart it when it dies (false while a test stops it on purpose).
    supervise: bool,
    /// How many times the supervisor started it again.
    restarts: u32,
}

/// A running HAProxy host; the agent service and HAProxy are stopped when dropped.
pub struct Host {
    dir: tempfile::TempDir,
    /// The host's name.
    pub name: String,
    /// Its agent.toml.
    pub config: PathBuf,
    /// Frontend address per pool.
    pub frontends: BTreeMap<String, SocketAddr>,
    /// Environment for every agent run.
    pub env: Vec<(String, String)>,
    haproxy: Option<Child>,
    /// The agent's own file of backends, when it has one (a second `-f`).
    pools_file: Option<PathBuf>,
    service: Arc<Mutex<Service>>,
    supervisor: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// How long the supervisor waits before starting a dead service again (systemd's
/// `RestartSec` in the unit).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

impl Host {
    /// The environment Run Command's document needs to run this host's agent: the
    /// host's own environment plus `AGENT_CONFIG` naming its agent.toml.
    pub fn document_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.push(("AGENT_CONFIG".into(), self.config.display().to_string()));
        env
    }

    /// Writes the host's files and starts HAProxy: the pools' slot blocks inside
    /// haproxy.cfg.
    pub fn start(spec: &HostSpec) -> anyhow::Result<Self> {
        Self::start_as(spec, false, "")
    }

    /// [`Host::start`] with top-level agent.toml keys (`top`, e.g. `zone = "zone-a"\n`)
    /// before the first section.
    pub fn start_with_top(spec: &HostSpec, top: &str) -> anyhow::Result<Self> {
        Self::start_as(spec, false, top)
    }

    /// [`Host::start`] with the pools' backends in a file of the agent's own
    /// (`[haproxy] pools_config`, `haproxy-asg.cfg` beside haproxy.cfg), written by
    /// `agent config render --output` and loaded by HAProxy as a second `-f`.
    pub fn start_with_pools_file(spec: &HostSpec) -> anyhow::Result<Self> {
        Self::start_as(spec, true, "")
    }

    fn start_as(spec: &HostSpec, pools_file: bool, top: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("haproxy-asg-").tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("state"))?;
        let mut toml = format!(
            "host = \"{}\"\n{top}[haproxy]\nbinary = \"{}\"\nconfig = \"{}\"\nadmin_socket = \"{}\"\nmaster_socket = \"{}\"\nstate_dir = \"{}\"\n",
            spec.name,
            crate::process::haproxy_bin().display(),
            d.join("haproxy.cfg").display(),
            d.join("admin.sock").display(),
            d.join("master.sock").display(),
            d.join("state").display()
        );
        let pools_file = pools_file.then(|| d.join("haproxy-asg.cfg"));
        if let Some(p) = &pools_file {
            toml.push_str(&format!("pools_config = \"{}\"\n", p.display()));
        }
        let mut frontends = BTreeMap::new();
        for p in &spec.pools {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            frontends.insert(p.name.clone(), addr);
            toml.push_str(&format!(
                "[[pool]]\nname = \"{}\"\nport = {}\nbind = \"{addr}\"\nslots = {}\nserver_options = \"{}\"\nhealth_timeout_s = {}\ndrain_timeout_s = {}\n",
                p.name, p.port, p.slots, p.server_options, p.health_timeout_s, p.drain_timeout_s
            ));
            if let Some(h) = &p.health_path {
                toml.push_str(&format!("health_path = \"{h}\"\n"));
            }
            if let Some(b) = &p.balance {
                toml.push_str(&format!("balance = \"{b}\"\n"));
            }
            toml.push_str(&p.extra_toml);
        }
        toml.push_str(&spec.extra_toml);
        // HAProxy drops to its user inside a chroot only when started as root; a test
        // run as another user keeps it unconfined (unless the spec says otherwise).
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root && !spec.extra_toml.contains("[render]") {
            toml.push_str("[render]\nuser = \"\"\ngroup = \"\"\nchroot = \"\"\n");
        }
        let config = d.join("agent.toml");
        std::fs::write(&config, toml)?;
        let mut host = Self {
            dir,
            name: spec.name.clone(),
            config,
            frontends,
            env: spec.env.clone(),
            haproxy: None,
            pools_file,
            service: Arc::default(),
            supervisor: None,
            stop: Arc::new(AtomicBool::new(false)),
        };
        if host.pools_file.is_some() {
            let out = host.dir.path().join("haproxy.cfg");
            let args = ["config", "render", "--output", path_str(&out)?];
            let cfg = host.agent(&args, None)?;
            anyhow::ensure!(
                cfg.code == 0,
                "agent config render --output failed: {}",
                cfg.stderr
            );
        } else {
            let cfg = host.agent(&["config", "render"], None)?;
            anyhow::ensure!(cfg.code == 0, "agent config render failed: {}", cfg.stderr);
            std::fs::write(host.dir.path().join("haproxy.cfg"), cfg.stdout)?;
        }
        std::fs::write(host.dir.path().join("state/server-state"), "1\n")?;
        host.start_haproxy()?;
        host.start_service()?;
        host.supervise();
        Ok(host)
    }

    /// The agent service's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir().join("state/agent.sock")
    }

    fn spawn_service(config: &Path, dir: &Path, env: &[(String, String)]) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))?;
        Command::new(bin_path("agent")?)
            .arg("--config")
            .arg(config)
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting the agent service")
    }

    /// Starts the agent service (`agent run`) and waits until its control socket
    /// answers; the supervisor keeps it running from then on.
    pub fn start_service(&mut self) -> anyhow::Result<()> {
        let child = Self::spawn_service(&self.config, self.dir(), &self.env)?;
        {
            let mut s = self.service.lock().unwrap_or_else(|e| e.into_inner());
            s.child = Some(child);
            s.supervise = true;
        }
        self.wait_service(Duration::from_secs(10))
    }

    /// Waits until the service answers `agent status` (bounded).
    pub fn wait_service(&self, timeout: Duration) -> anyhow::Result<()> {
        let sock = self.control_socket();
        let up = wait_for(timeout, || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
        if up.is_none() {
            anyhow::bail!(
                "the agent service did not listen on {} within {timeout:?}; its log:\n{}",
                sock.display(),
                self.agent_log()
            );
        }
        Ok(())
    }

    /// The supervisor: restarts the service [`RESTART_DELAY`] after it died.
    fn supervise(&mut self) {
        let (service, stop) = (self.service.clone(), self.stop.clone());
        let (config, dir, env) = (
            self.config.clone(),
            self.dir().to_path_buf(),
            self.env.clone(),
        );
        self.supervisor = Some(std::thread::spawn(move || {
            let mut dead_since: Option<std::time::Instant> = None;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                let mut s = service.lock().unwrap_or_else(|e| e.into_inner());
                let exited = s
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some());
                if !(s.supervise && (exited || s.child.is_none())) {
                    dead_since = None;
                    continue;
                }
                let since = *dead_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() < RESTART_DELAY {
                    continue;
                }
                dead_since = None;
                match Self::spawn_service(&config, &dir, &env) {
                    Ok(c) => {
                        s.child = Some(c);
                        s.restarts += 1;
                    }
                    Err(e) => eprintln!("supervisor: cannot restart the agent service: {e:#}"),
                }
            }
        }));
    }

    /// The service's pid, when it runs.
    pub fn service_pid(&self) -> Option<u32> {
        let s = self.service.lock().unwrap_or_else(|e| e.into_inner());
        s.child.as_ref().map(Child::id)
    }

    /// Sends the agent service SIGHUP (it re-reads agent.toml in place, as `systemctl
    /// reload` does), and waits (at most 10 s) until its log has one more line
    /// containing `says` than before.
    pub fn hup_service(&self, says: &str) -> anyhow::Result<()> {
        let before = self.agent_log().matches(says).count();
        let pid = self
            .service_pid()
            .context("the agent service does not run")?;
        let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            anyhow::bail!("kill -HUP {pid}: {}", std::io::Error::last_os_error());
        }
        crate::wait_for(Duration::from_secs(10), || {
            (self.agent_log().matches(says).count() > before).then_some(())
        })
        .with_context(|| format!("no {says:?} after SIGHUP:\n{}", self.agent_log()))
    }

    /// How many times the supervisor restarted the service.
    pub fn service_restarts(&self) -> u32 {
        self.service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restarts
    }

    /// SIGKILLs the service (a crash); the supervisor starts it again after
    /// [`RESTART_DELAY`]. Returns the killed pid.
    pub fn kill_service(&self) -> Option<u32> {
        let mut s = self.service.lock().unwrap_or_else(|e| e.into_inner());
        let c = s.child.as_mut()?;
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        Some(pid)
    }

    /// Stops the service for good (SIGTERM, then SIGKILL after 5 s); no restart.
    pub fn stop_service(&self) {
        let child = {
            let mut s = self.service.lock().unwrap_or_else(|e| e.into_inner());
            s.supervise = false;
            s.child.take()
        };
        if let Some(mut c) = child {
            crate::process::terminate(&mut c, Duration::from_secs(5));
        }
    }

    /// The service's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("agent.log")).unwrap_or_default()
    }

    /// The host's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pool's frontend.
    pub fn frontend(&self, pool: &str) -> SocketAddr {
        self.frontends[pool]
    }

    /// A client for this host's sockets.
    pub fn client(&self) -> Client {
        Client::new(
            Endpoint::Unix(self.dir().join("admin.sock")),
            Some(Endpoint::Unix(self.dir().join("master.sock"))),
            Duration::from_secs(5),
        )
    }

    /// Starts HAProxy (master-worker, master socket) and waits until it answers.
    pub fn start_haproxy(&mut self) -> anyhow::Result<()> {
        self.spawn_haproxy(&[], None)
    }

    /// Restarts HAProxy the way `haproxy -sf <pid> -x <admin socket>` does (an operator's
    /// script, an older init system): a new master starts from the same files, takes the
    /// listening sockets over from the old worker (HAProxy's seamless restart; without
    /// `-x` a connection waiting in the old listener's queue is reset) and tells the old
    /// one to finish; returns once the new master's worker answers. The old master exits
    /// by itself once its worker finished (its sessions closed).
    pub fn restart_haproxy_sf(&mut self) -> anyhow::Result<()> {
        let old = self.haproxy.take().context("HAProxy is not running")?;
        let before = self.client().proc_info()?.current_worker();
        let pid = old.id().to_string();
        let admin = self.dir.path().join("admin.sock");
        let admin = admin.to_string_lossy().into_owned();
        self.spawn_haproxy(&["-sf", &pid, "-x", &admin], before)?;
        // Reaped in the background: it ends once its worker's sessions are done.
        std::thread::spawn(move || {
            let mut old = old;
            let _ = old.wait();
        });
        Ok(())
    }

    /// Starts HAProxy with `extra` arguments and waits until a worker other than
    /// `not_worker` answers.
    fn spawn_haproxy(&mut self, extra: &[&str], not_worker: Option<u32>) -> anyhow::Result<()> {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("haproxy.log"))?;
        let child = Command::new(crate::process::haproxy_bin())
            .arg("-W")
            .arg("-S")
            .arg(d.join("master.sock"))
            .arg("-f")
            .arg(d.join("haproxy.cfg"))
            .args(
                self.pools_file
                    .iter()
                    .flat_map(|p| ["-f".as_ref(), p.as_os_str()]),
            )
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C then reaches only the program
            // that started it, which stops it in order.
            .process_group(0)
            .spawn()
            .context("cannot start haproxy; install it (apt-get install haproxy)")?;
        self.haproxy = Some(child);
        let client = self.client();
        let up = wait_for(Duration::from_secs(10), || {
            let info = client.query("show info").ok()?;
            let procs = client.proc_info().ok()?;
            let worker = procs.current_worker();
            (info.contains("Pid:") && worker.is_some() && worker != not_worker).then_some(())
        });
        if up.is_none() {
            let log = std::fs::read_to_string(d.join("haproxy.log")).unwrap_or_default();
            anyhow::bail!("haproxy did not come up within 10s; its log:\n{log}");
        }
        Ok(())
    }

    /// Stops HAProxy (SIGTERM to the master, then SIGKILL after 3 s).
    pub fn stop_haproxy(&mut self) {
        if let Some(mut c) = self.haproxy.take() {
            crate::process::terminate(&mut c, Duration::from_secs(3));
        }
    }

    /// Whether HAProxy is running.
    pub fn haproxy_running(&mut self) -> bool {
        self.haproxy
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Runs the agent with this host's config and `args`, feeding `stdin`.
    pub fn agent(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<AgentRun> {
        let mut cmd = Command::new(bin_path("agent")?);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        if let Some(mut si) = child.stdin.take() {
            if let Some(text) = stdin {
                si.write_all(text.as_bytes())?;
            }
        }
        let read = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut s);
                }
                s
            })
        };
        let out = read(child.stdout.take().map(|s| Box::new(s) as _));
        let err = read(child.stderr.take().map(|s| Box::new(s) as _));
        let (code, max_rss_kb) = wait_with_rusage(&mut child)?;
        Ok(AgentRun {
            code,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            max_rss_kb,
        })
    }

    /// `agent apply --json` of `change`; the report and the raw run.
    pub fn apply(&self, change: &Change) -> anyhow::Result<(Report, AgentRun)> {
        let run = self.agent(
            &["apply", "--wait", "--json", "--file", "-"],
            Some(&change.to_json()),
        )?;
        let report = Report::from_json(run.stdout.trim()).with_context(|| {
            format!(
                "agent apply gave no report (exit {}): {}",
                run.code, run.stderr
            )
        })?;
        Ok((report, run))
    }

    /// `agent apply <flags> --change <json>`: the change on the command line, as Run
    /// Command's document passes it; it returns as soon as the service took the change,
    /// unless `flags` holds `--wait`.
    pub fn apply_arg(&self, flags: &[&str], change: &Change) -> anyhow::Result<AgentRun> {
        let json = change.to_json();
        let args: Vec<&str> = std::iter::once("apply")
            .chain(flags.iter().copied())
            .chain(["--change", json.as_str()])
            .collect();
        self.agent(&args, None)
    }

    /// `agent status --json`: the slots.
    pub fn status(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(self.status_all()?["slots"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// `agent status --json`: the operations in flight.
    pub fn operations(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(self.status_all()?["operations"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// `agent status --json`, whole.
    pub fn status_all(&self) -> anyhow::Result<serde_json::Value> {
        let run = self.agent(&["status", "--json"], None)?;
        anyhow::ensure!(run.code == 0, "agent status failed: {}", run.stderr);
        Ok(serde_json::from_str(&run.stdout)?)
    }

    /// Member -> slot, from `agent status`.
    pub fn assignments(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .status()?
            .iter()
            .filter_map(|r| {
                Some((
                    r["member"].as_str()?.to_string(),
                    r["slot"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// The master's reload count.
    pub fn reloads(&self) -> anyhow::Result<u64> {
        Ok(self.client().proc_info()?.reloads)
    }

    /// HAProxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("haproxy.log")).unwrap_or_default()
    }
}

/// Waits for `child` with `wait4`, returning its exit code (-1 if signalled) and its
/// own peak RSS in KiB.
fn wait_with_rusage(child: &mut Child) -> anyhow::Result<(i32, i64)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        let out = child.wait()?;
        return Ok((out.code().unwrap_or(-1), -1));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss))
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
        self.stop_service();
        self.stop_haproxy();
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}
