//! `agent run`: the service's threads. The control socket's accept loop (woken by
//! `poll` when a client connects; one thread per request, bounded), the ticker
//! (operations advanced from HAProxy's stats), with `[aws]` groups the periodic sync
//! from AWS, and with `[metrics] agent` the `/metrics` endpoint ([`super::scrape`]).
//! SIGTERM or SIGINT stops it cleanly; the operations in flight are in the table and
//! resume at the next start. SIGHUP re-reads agent.toml ([`super::reread`]).

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use infra::{Change, Desired};
use tracing::{error, info, warn};

use super::resume::WATCH;
use super::zones::ZONE_LOOK;
use super::{scrape, Service, ServiceError, TICK};
use crate::config::AgentConfig;
use crate::control::{self, Reply, Request, MAX_MESSAGE};
use crate::metrics;
use crate::store;

/// Requests served at once; more wait for a place (connections queue in the kernel).
const MAX_CLIENTS: usize = 64;
/// How long a stopping service waits for the requests it serves to be answered (a
/// waiting `agent apply --wait` is told its members are pending within a tick).
const CLIENTS_GRACE: Duration = Duration::from_secs(5);

static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// A SIGHUP came: agent.toml is to be read again.
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    HANGUP.store(true, Ordering::SeqCst);
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The table or the lock.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Another service holds the state directory.
    #[error("another agent service holds {path} (pid {holder}): one service per state directory; stop it first (`systemctl stop haproxy-asg-agent`)")]
    Running {
        /// The lock file.
        path: PathBuf,
        /// Its holder's pid.
        holder: String,
    },
    /// The control socket could not be set up.
    #[error("cannot listen on the control socket {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sender of reports to the reactor's inbox could not start.
    #[error("cannot start reporting to the reactor's inbox ([report] in agent.toml): {0}")]
    Report(String),
    /// The metrics endpoint could not be set up.
    #[error("cannot serve metrics on {addr} (agent.toml [metrics] agent): {source}; free the port or choose another")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs the service in the foreground until SIGTERM or SIGINT. SIGHUP re-reads the
/// configuration at `path` ([`super::reread`]): one that reads and changes only what may
/// change restarts the service in place (the same process, lock, control socket and
/// metrics listener; operations in flight continue from the slot table, a waiting
/// `agent apply --wait` is told its members are pending).
pub fn run(cfg: AgentConfig, path: &Path) -> Result<(), StartError> {
    few_malloc_arenas();
    let _lock = take_lock(&cfg)?;
    // A candidate left by a service killed mid-validation goes before anyone is answered
    // (the resume removes it too, for a worker someone else started).
    let _ = std::fs::remove_file(super::resize::candidate_path(cfg.haproxy.slots_file()));
    let socket = cfg.service.control_socket.clone();
    let listener = listen(&socket)?;
    let on = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    let hup = on_hup as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on);
        libc::signal(libc::SIGINT, on);
        libc::signal(libc::SIGHUP, hup);
    }
    let metrics = cfg
        .metrics
        .agent
        .map(|addr| {
            scrape::bind(addr)
                .map(|l| (addr, Arc::new(l)))
                .map_err(|source| StartError::Metrics { addr, source })
        })
        .transpose()?;
    let mut cfg = cfg;
    loop {
        let service = Arc::new(Service::open(cfg.clone())?);
        let threads = start(&service, metrics.as_ref(), &socket)?;
        let clients = Arc::new(Clients::default());
        let next = accept(&listener, &service, &clients, path);
        match &next {
            None => info!("stopping: operations in flight stay in the slot table and resume at the next start"),
            Some(_) => info!("restarting in place with the re-read agent.toml: operations in flight stay in the slot table and resume at once"),
        }
        service.shutdown();
        for t in threads {
            let _ = t.join();
        }
        // Every request in flight is answered before the process ends (a waiter told
        // "pending" must not read a closed socket instead).
        let unanswered = clients.wait_idle(CLIENTS_GRACE);
        if unanswered > 0 {
            warn!(unanswered, "stopping with requests still unanswered after {CLIENTS_GRACE:?}: their clients read a closed socket");
        }
        service.persist(&service.lock());
        match next {
            Some(new) => cfg = new,
            None => break,
        }
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// One service per state directory: its lock, held until the process ends.
fn take_lock(cfg: &AgentConfig) -> Result<store::Lock, StartError> {
    let dir = &cfg.haproxy.state_dir;
    std::fs::create_dir_all(dir)
        .map_err(|source| store::StoreError::Io {
            action: "cannot create state directory",
            path: dir.clone(),
            source,
        })
        .map_err(ServiceError::from)?;
    match store::lock(&cfg.haproxy.lock_path(), Duration::ZERO, |_| {}) {
        Ok(l) => Ok(l),
        Err(store::StoreError::LockTimeout { path, holder, .. }) => {
            Err(StartError::Running { path, holder })
        }
        Err(e) => Err(ServiceError::from(e).into()),
    }
}

/// The control socket, mode 0660; a socket file left behind (by a dead service: we hold
/// the lock) is replaced.
fn listen(socket: &Path) -> Result<UnixListener, StartError> {
    let listen = |source| StartError::Listen {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(listen)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(listen(e)),
        _ => {}
    }
    let listener = UnixListener::bind(socket).map_err(listen)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    Ok(listener)
}

/// Brings `service` up (its own file of backends, the resume, the master probe) and
/// starts its threads: the ticker, the sync from AWS, the inbox sender, the metrics.
fn start(
    service: &Arc<Service>,
    metrics: Option<&(std::net::SocketAddr, Arc<std::net::TcpListener>)>,
    socket: &Path,
) -> Result<Vec<std::thread::JoinHandle<()>>, StartError> {
    let spawn_failed = |source| StartError::Listen {
        path: socket.to_path_buf(),
        source,
    };
    if let Err(e) = service.write_pools_file() {
        error!(error = %e, "cannot write the pools' backends ([haproxy] pools_config); HAProxy keeps what it loaded, and growth fails until this is fixed");
    }
    if let Err(e) = service.resume() {
        warn!(error = %e, "cannot reach HAProxy yet; operations resume once it answers");
    }
    probe_master(service);
    info!(socket = %socket.display(), pools = service.cfg.pools.len(), "agent service ready");
    let mut threads = Vec::new();
    let s = service.clone();
    threads.push(
        std::thread::Builder::new()
            .name("ticker".into())
            .spawn(move || ticker(&s))
            .map_err(spawn_failed)?,
    );
    if !service.cfg.aws_groups.is_empty() {
        let s = service.clone();
        threads.push(
            std::thread::Builder::new()
                .name("aws-sync".into())
                .spawn(move || aws_sync(&s))
                .map_err(spawn_failed)?,
        );
    }
    threads.extend(spawn_sender(service)?);
    if let Some(interval) = service.cfg.report.as_ref().and_then(|r| r.health_interval) {
        let s = service.clone();
        threads.push(
            std::thread::Builder::new()
                .name("health".into())
                .spawn(move || s.watch_health(interval))
                .map_err(spawn_failed)?,
        );
    }
    if let Some((addr, listener)) = metrics {
        let (s, l, addr) = (service.clone(), listener.clone(), *addr);
        info!(addr = %addr, "serving the agent's metrics at /metrics");
        threads.push(
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || scrape::serve(&l, &s))
                .map_err(|source| StartError::Metrics { addr, source })?,
        );
    }
    Ok(threads)
}

/// Serves the control socket until SIGTERM or SIGINT (`None`) or a SIGHUP whose
/// agent.toml is to be applied (`Some`, the new configuration).
fn accept(
    listener: &UnixListener,
    service: &Arc<Service>,
    clients: &Arc<Clients>,
    path: &Path,
) -> Option<AgentConfig> {
    while !SIGNALLED.load(Ordering::SeqCst) {
        if HANGUP.swap(false, Ordering::SeqCst) {
            if let Some(new) = super::reread::reread(path, &service.cfg) {
                return Some(new);
            }
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if !clients.enter(MAX_CLIENTS) {
                    let _ = stream.set_nonblocking(false);
                    control::send(&stream, &Reply::Error(format!("the agent service is busy: {MAX_CLIENTS} requests are in flight; try again")));
                    continue;
                }
                let (s, c) = (service.clone(), clients.clone());
                let spawned = std::thread::Builder::new()
                    .name("client".into())
                    .spawn(move || {
                        serve(&s, &stream);
                        c.leave();
                    });
                if let Err(e) = spawned {
                    clients.leave();
                    error!(error = %e, "cannot start a thread for a request");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_readable(listener, ACCEPT_WAIT),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    None
}

/// The requests being served: bounded, and waited for when the service stops.
#[derive(Default)]
struct Clients {
    count: Mutex<usize>,
    left: Condvar,
}

impl Clients {
    /// Counts one more request, unless `max` are in flight.
    fn enter(&self, max: usize) -> bool {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// One request was answered (or never started).
    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.left.notify_all();
    }

    /// Waits until no request is in flight or `within` passed; how many still are.
    fn wait_idle(&self, within: Duration) -> usize {
        let n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let (n, _) = self
            .left
            .wait_timeout_while(n, within, |n| *n > 0)
            .unwrap_or_else(|e| e.into_inner());
        *n
    }
}

/// With `[report]`, the thread that sends members' outcomes to the reactor's inbox.
fn spawn_sender(service: &Arc<Service>) -> Result<Option<std::thread::JoinHandle<()>>, StartError> {
    let Some(report) = service.cfg.report.clone() else {
        return Ok(None);
    };
    let failed = |e: String| StartError::Report(e);
    let host = infra::HostId::new(service.cfg.host.as_str()).map_err(|e| failed(e.to_string()))?;
    let mut sink =
        super::inbox::SqsSink::new(&report.queue_url).map_err(|e| failed(e.to_string()))?;
    let s = service.clone();
    info!(queue = %report.queue_url, host = %host, "reporting members' outcomes to the reactor's inbox");
    std::thread::Builder::new()
        .name("inbox".into())
        .spawn(move || super::inbox::run(&s, &host, report.batch, &mut sink))
        .map(Some)
        .map_err(|e| failed(e.to_string()))
}

/// Caps glibc's malloc at two arenas. Each request is served on a thread of its own, and
/// glibc gives every new thread an arena of its own that keeps its freed pages: a burst of
/// concurrent `agent apply` would leave the long-running service's memory at its peak.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator (it takes its own lock).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How long the accept loop sleeps in `poll` between looks at the stop flag when no
/// client comes (a signal ends the sleep at once, with `EINTR`; a connection too: every
/// `agent apply` that SSM runs would pay a fixed sleep between looks at the socket).
const ACCEPT_WAIT: Duration = Duration::from_millis(500);

/// Sleeps until `fd` is readable (a listener: a connection waits), a signal arrives or
/// `timeout` passed.
pub(super) fn wait_readable(fd: &impl std::os::fd::AsRawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for a descriptor the caller owns, for the call's duration.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
        // poll itself failed (it should not): do not spin on it.
        std::thread::sleep(timeout.min(Duration::from_millis(20)));
    }
}

/// Moves operations on every [`TICK`] while some are in flight, and waits for work
/// otherwise; looks at which HAProxy worker serves every [`WATCH`], and with a traffic
/// policy to keep ([`Service::rebalance`]) at HAProxy's servers every [`ZONE_LOOK`].
fn ticker(service: &Service) {
    let mut watched = Instant::now();
    let mut zoned = Instant::now();
    while !service.stopping() {
        let busy = service.tick();
        if watched.elapsed() >= WATCH {
            service.watch();
            watched = Instant::now();
        }
        // Only while some pool prefers its zone (or a zone is away): one read of
        // HAProxy's servers per look.
        if zoned.elapsed() >= ZONE_LOOK && service.zones_watched() {
            service.rebalance();
            zoned = Instant::now();
        }
        let st = service.lock();
        let wait = if busy { TICK } else { WATCH };
        let _ = service.changed.wait_timeout(st, wait);
    }
}

/// Says at start, not at the first growth, when HAProxy's master socket (what a reload
/// past the declared slots goes through) is not configured or does not answer, with the
/// fix: HAProxy started in master-worker mode with that socket.
fn probe_master(service: &Service) {
    let Some(master) = &service.cfg.haproxy.master_socket else {
        warn!("agent.toml sets no haproxy.master_socket: a pool that outgrows its slots cannot be reloaded; set it and start HAProxy with `-W -S <that socket>` (`agent config haproxy-dropin` writes the systemd drop-in)");
        return;
    };
    if let Err(e) = service.client.proc_info() {
        warn!(error = %e, "HAProxy's master socket {master} does not answer: a pool that outgrows its slots cannot be reloaded; start HAProxy in master-worker mode with `-W -S {master}` (`agent config haproxy-dropin` writes the systemd drop-in that does; a `stats socket` line is not it)");
    }
}

/// Syncs from AWS at start and every `sync_interval`, never waiting for outcomes.
fn aws_sync(service: &Service) {
    let mut next = Instant::now();
    while !service.stopping() {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(200).min(next - Instant::now()));
            continue;
        }
        next = Instant::now() + service.cfg.sync_interval;
        match crate::aws::desired(&service.cfg)
            .map_err(|e| e.to_string())
            .and_then(|read| desired_from_aws(service, read))
        {
            Ok(desired) => match service.sync(&desired, false, false, &mut |_| {}) {
                Ok(r) => {
                    service.synced_from_aws();
                    let changes = r.diff.iter().filter(|d| d.op != '=').count();
                    info!(generation = desired.generation, changes, "synced from AWS");
                }
                Err(e) => {
                    service.metric(|m| m.error(metrics::ErrorKind::SyncFailed));
                    warn!(error = %e, "sync from AWS failed; next try in sync_interval_s")
                }
            },
            Err(e) => {
                service.metric(|m| m.error(metrics::ErrorKind::SyncFailed));
                warn!(error = %e, "reading the groups from AWS failed; next try in sync_interval_s")
            }
        }
    }
}

/// The desired state read from AWS, after logging (once each) and counting the group
/// tags it refused (a tag never widens what this host serves), and with the members
/// this host serves from groups agent.toml does not map kept as they are (logged and
/// counted once each): the reactor's map holds their group, so draining them would
/// only have its next reconcile add them back.
fn desired_from_aws(
    service: &Service,
    read: infra::aws::DesiredFromAws,
) -> Result<Desired, String> {
    for t in &read.refused {
        if service.metric(|m| m.once(metrics::ErrorKind::TagRefused, &t.to_string())) {
            warn!(group = %t.group, tag = t.tag, refused = %t, "a group tag was refused; counted in errors_total{{kind=\"tag_refused\"}}");
        }
    }
    let mut desired = read.desired;
    let strays = service.strays(&desired);
    if strays.is_empty() {
        return Ok(desired);
    }
    let ids: Vec<infra::MemberId> = strays.iter().map(|(_, m)| m.id.clone()).collect();
    let groups = crate::aws::groups_of(&ids).map_err(|e| {
        format!("cannot tell the groups of the members this host serves that the groups of agent.toml do not list ({e}); nothing was drained")
    })?;
    let strays = strays
        .into_iter()
        .map(|(pool, member)| crate::aws::Stray {
            group: groups.get(&member.id).cloned().flatten(),
            pool,
            member,
        })
        .collect();
    for s in crate::aws::keep_unmapped(&mut desired, strays, &service.cfg.aws_groups) {
        let what = format!("{}/{}", s.pool, s.member.id);
        if service.metric(|m| m.once(metrics::ErrorKind::UnmappedMember, &what)) {
            warn!(pool = %s.pool, instance = %s.member.id, group = s.group.as_deref().unwrap_or(""), "a member from a group agent.toml does not map is kept, not drained: add the group to [aws] groups (the reactor maps it); counted in errors_total{{kind=\"unmapped_member\"}}");
        }
    }
    Ok(desired)
}

/// Serves one request on one connection.
fn serve(service: &Service, stream: &UnixStream) {
    let _ = stream.set_nonblocking(false);
    let request = match control::read_request(stream) {
        Ok(r) => r,
        // A probe that only connected: nothing to answer or count.
        Err(control::RequestError::Empty) => return,
        Err(e) => {
            service.metric(|m| m.error(metrics::ErrorKind::RefusedMessage));
            warn!(error = %e, "a request was refused");
            control::send(stream, &Reply::Error(e.to_string()));
            return;
        }
    };
    let mut progress = |line: String| {
        control::send(stream, &Reply::Progress(line));
    };
    let what = match &request {
        Request::Apply { .. } => "apply",
        Request::Sync { .. } => "sync",
        Request::Status => "status",
        Request::Zone { .. } => "zone",
    };
    let reply = match request {
        Request::Apply { change, wait } => message(service, &change, Change::from_json)
            .and_then(|c| {
                service
                    .apply(&c, wait, &mut progress)
                    .map_err(|e| e.to_string())
            })
            .map(Reply::Report),
        Request::Sync {
            desired,
            dry_run,
            wait,
        } => {
            let from_aws = desired.is_none();
            let desired = match desired {
                Some(d) => message(service, &d, Desired::from_json),
                None if service.cfg.aws_groups.is_empty() => {
                    Err(crate::aws::SourceError::NoGroups.to_string())
                }
                None => {
                    progress("reading the groups from AWS...".into());
                    crate::aws::desired(&service.cfg)
                        .map_err(|e| e.to_string())
                        .and_then(|read| desired_from_aws(service, read))
                }
            };
            let reply = desired
                .and_then(|d| {
                    service
                        .sync(&d, dry_run, wait, &mut progress)
                        .map_err(|e| e.to_string())
                })
                .map(Reply::Sync);
            match (&reply, from_aws && !dry_run) {
                (Ok(_), true) => service.synced_from_aws(),
                (Err(_), true) => service.metric(|m| m.error(metrics::ErrorKind::SyncFailed)),
                _ => {}
            }
            reply
        }
        Request::Status => service
            .status()
            .map(Reply::Status)
            .map_err(|e| e.to_string()),
        Request::Zone { action } => service
            .zone(action)
            .map(Reply::Zones)
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = &reply {
        // What the caller is told, the log keeps too (the caller may be Run Command).
        warn!(request = what, error = %e, "a request was refused or failed (the caller was told why)");
    }
    control::send(stream, &reply.unwrap_or_else(Reply::Error));
}

/// A message of a request, bounded and validated (a refusal is counted).
fn message<T>(
    service: &Service,
    v: &serde_json::Value,
    parse: impl Fn(&str) -> Result<T, infra::MessageError>,
) -> Result<T, String> {
    let text = v.to_string();
    let parsed = if text.len() > MAX_MESSAGE {
        Err(format!(
            "message too large: {} bytes, at most {MAX_MESSAGE}",
            text.len()
        ))
    } else {
        parse(&text).map_err(|e| e.to_string())
    };
    if parsed.is_err() {
        service.metric(|m| m.error(metrics::ErrorKind::RefusedMessage));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded_and_a_stop_waits_for_the_ones_in_flight() {
        let clients = Arc::new(Clients::default());
        assert!(clients.enter(2) && clients.enter(2));
        assert!(
            !clients.enter(2),
            "a third request past the bound is refused"
        );
        clients.leave();
        let c = clients.clone();
        let answering = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c.leave();
        });
        assert_eq!(clients.wait_idle(Duration::from_secs(10)), 0);
        let _ = answering.join();
        assert!(clients.enter(2));
        assert_eq!(
            clients.wait_idle(Duration::from_millis(20)),
            1,
            "one that never answers is counted, not waited for forever"
        );
    }
}
