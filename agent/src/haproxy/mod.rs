//! The one HAProxy client: the admin (stats) socket and the master CLI.
//!
//! Framing and parsing live here; what to send is a typed [`Command`]:
//! - reads: [`Client::servers_state`], [`Client::stats`], [`Client::proc_info`], each one
//!   command on one connection, the reply read to EOF and parsed;
//! - writes: [`Client::batch`] sends groups of [`Command`]s joined by `;` on as few
//!   lines as possible (HAProxy applies a whole line before looking at anything else,
//!   which is what keeps `state ready; health down` from ever being UP in between). Each
//!   command's reply ends with an empty line; a reply that is not that command's success
//!   text ([`Op::succeeded`]) is an error that carries HAProxy's own words;
//! - the instance map the log line reads: [`Op::MapAdd`], [`Op::MapSet`], [`Op::MapDel`]
//!   (and [`Command::map_put`]) through [`Client::batch`], [`Client::show_map`] to read it;
//! - the master: [`Client::reload`] (its answer: [`ReloadAnswer`]) and `show proc`;
//! - which HAProxy it is: [`Client::version`] (`show info`), refused below
//!   [`MIN_VERSION`];
//! - after a reload, writes sent to the admin socket can still reach the old worker for
//!   ~100 ms and be lost; [`Client::via_master`] sends every command through the master
//!   CLI as `@1 <command>`, which always reaches the newest worker.

mod command;
mod parse;

pub use command::{Command, MapFile, MapFileError, Op, SetWeight, REMOVABLE_WAIT_MS};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub use parse::{
    parse_binary_version, parse_info_version, parse_map, parse_proc, parse_reload,
    parse_servers_state, parse_stat, ProcInfo, ReloadAnswer, ServerState, StatRow, Version,
};

/// The oldest HAProxy branch the agent drives: 2.6 (the first LTS with `add server`
/// and `del server` stable, and what Debian 12 ships).
pub const MIN_VERSION: (u32, u32) = (2, 6);

/// The branches tested in CI against real binaries (`scripts/test`); 2.8 by its
/// answers' texts (unit tests).
pub const TESTED_VERSIONS: &str = "2.6, 2.8, 3.0 and 3.2";

/// [`TESTED_VERSIONS`] as branches.
pub const TESTED_BRANCHES: [(u32, u32); 4] = [(2, 6), (2, 8), (3, 0), (3, 2)];

/// The first branch on which the agent adds servers at runtime when a pool's slots run
/// out, instead of growing the block with a reload. 2.6 keeps the reload: deleting a
/// server with live streams could crash it, and servers added at runtime did not reuse
/// connections; 2.8 is not tested against a real binary here, so it keeps it too.
pub const RUNTIME_SERVERS_SINCE: (u32, u32) = (3, 0);

/// Whether the agent adds servers at runtime on HAProxy `v` (see
/// [`RUNTIME_SERVERS_SINCE`]); otherwise it grows the slot block with a reload.
pub fn adds_servers(v: &Version) -> bool {
    v.branch >= RUNTIME_SERVERS_SINCE
}

/// Why HAProxy `v` keeps the reload path, for logs and `agent config check`; `None`
/// when it adds servers at runtime.
pub fn reload_path_reason(v: &Version) -> Option<String> {
    if adds_servers(v) {
        return None;
    }
    let why = match v.branch {
        (2, 6) => "HAProxy 2.6 could crash deleting a server that still had streams, and did not reuse connections to servers added at runtime",
        _ => "servers added at runtime are not tested against this branch",
    };
    Some(format!(
        "HAProxy {} grows a pool past its slots with a hitless reload ({why}); from {}.{} the agent adds servers at runtime instead",
        v.text, RUNTIME_SERVERS_SINCE.0, RUNTIME_SERVERS_SINCE.1
    ))
}

/// Server options HAProxy refuses for a server added at runtime (`'<keyword>' option is
/// not accepted for dynamic server`), as 3.0.11 and 3.2.26 answer: a pool whose
/// `server_options` hold one keeps the reload path.
pub const REFUSED_AT_RUNTIME: [&str; 11] = [
    "init-addr",
    "resolvers",
    "resolve-prefer",
    "resolve-net",
    "resolve-opts",
    "namespace",
    "redir",
    "socks4",
    "tcp-ut",
    "max-reuse",
    "log-proto",
];

/// The keywords of `options` HAProxy refuses for a server added at runtime.
pub fn refused_at_runtime(options: &infra::ServerOptions) -> Vec<&'static str> {
    let words: Vec<&str> = options.as_str().split(' ').collect();
    REFUSED_AT_RUNTIME
        .into_iter()
        .filter(|k| words.contains(k))
        .collect()
}

/// The version of the HAProxy binary at `binary` (`haproxy -v`), for `agent config
/// check` (the service asks the running HAProxy instead).
pub fn binary_version(binary: &std::path::Path) -> Result<Version, HaproxyError> {
    let out = std::process::Command::new(binary)
        .arg("-v")
        .output()
        .map_err(|e| HaproxyError::Binary {
            binary: binary.to_path_buf(),
            detail: e.to_string(),
        })?;
    parse_binary_version(&String::from_utf8_lossy(&out.stdout)).map_err(|detail| {
        HaproxyError::Binary {
            binary: binary.to_path_buf(),
            detail,
        }
    })
}

/// Whether `reply` to `add server` is HAProxy refusing servers added at runtime in a
/// backend whose balance algorithm is static (`static-rr`, a map-based hash): the pool
/// then keeps the reload path. Every version answers it in these words.
pub fn refuses_for_balance(reply: &str) -> bool {
    reply.contains("must use a dynamic load balancing to support dynamic servers")
}

/// Longest `;`-joined line sent at once (HAProxy's own ingress controller uses 16,000).
const MAX_LINE: usize = 16_000;

/// Connections a batch may use at most at once.
pub const PARALLEL: usize = 4;

/// Connections a batch uses at once: one per CPU, up to [`PARALLEL`]. HAProxy runs one
/// thread per CPU, so more connections than CPUs only queue behind each other and
/// compete with this process (a 1000-member batch against HAProxy 2.6 on 2 CPUs, sent
/// from a test client: 29 ms over 2 connections, 38 ms over 4). Asked once: it reads
/// the cgroup's CPU quota.
fn parallel() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, PARALLEL)
    })
}

/// A socket address that is neither a path nor `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a socket path (/run/haproxy/admin.sock) nor host:port (127.0.0.1:9999)")]
pub struct EndpointError(pub String);

/// Where a socket is: a unix path or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Reads `/path/to.sock`, `unix:/path`, or `host:port`.
    pub fn parse(s: &str) -> Result<Self, EndpointError> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        match s.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(Self::Tcp(s.into())),
            _ => Err(EndpointError(s.to_string())),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => f.write_str(a),
        }
    }
}

/// What went wrong talking to HAProxy.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// Nothing listens at the socket.
    #[error("cannot reach HAProxy at {endpoint}: {source}. Is HAProxy running, and does its global section have `stats socket {endpoint} level admin` (or `-S` for the master socket)?")]
    Connect {
        /// The socket.
        endpoint: Endpoint,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection broke or timed out mid-exchange.
    #[error("HAProxy at {endpoint} did not answer `{command}`: {source}")]
    Io {
        /// The socket.
        endpoint: Endpoint,
        /// The command sent (the first, for a batch).
        command: String,
        /// The OS error (a timeout shows as `WouldBlock`/`TimedOut`).
        source: std::io::Error,
    },
    /// HAProxy refused a command; `reply` is its own text.
    #[error("HAProxy refused `{command}`: {reply}")]
    Refused {
        /// The command.
        command: String,
        /// HAProxy's answer.
        reply: String,
    },
    /// The reply did not have the expected shape.
    #[error("unexpected reply from HAProxy to `{command}`: {detail}")]
    Protocol {
        /// The command.
        command: String,
        /// What was wrong with it.
        detail: String,
    },
    /// An HAProxy older than [`MIN_VERSION`].
    #[error("HAProxy {version} is not supported: the agent drives HAProxy 2.6 or later (tested: {TESTED_VERSIONS}); upgrade HAProxy")]
    Unsupported {
        /// The version HAProxy reported.
        version: String,
    },
    /// `haproxy -v` did not run or did not say its version.
    #[error("cannot read the version of {binary} (`{binary} -v`): {detail}")]
    Binary {
        /// The binary.
        binary: PathBuf,
        /// Why.
        detail: String,
    },
    /// A master-socket operation without a master socket configured.
    #[error("this needs HAProxy's master socket: run HAProxy in master-worker mode (`haproxy -W -S /run/haproxy/master.sock ...`) and set haproxy.master_socket in agent.toml")]
    NoMaster,
}

/// The start of HAProxy's answer to a map command naming a map its configuration does
/// not load (every version 2.6-3.2).
pub const UNKNOWN_MAP: &str = "Unknown map identifier";

impl HaproxyError {
    /// HAProxy refused a map command because its configuration does not load that map
    /// (an operator's haproxy.cfg whose frontends do not use it).
    pub fn is_unknown_map(&self) -> bool {
        matches!(self, Self::Refused { reply, .. } if reply.trim_start().starts_with(UNKNOWN_MAP))
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn connect(ep: &Endpoint, timeout: Duration) -> std::io::Result<Self> {
        let s = match ep {
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Self::Unix(s)
            }
            Endpoint::Tcp(a) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(a)?
                    .next()
                    .ok_or_else(|| std::io::Error::other("address did not resolve"))?;
                let s = TcpStream::connect_timeout(&addr, timeout)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                Self::Tcp(s)
            }
        };
        Ok(s)
    }
}

impl Stream {
    /// Tells HAProxy nothing more comes (the master CLI waits for this before answering).
    fn finish(&self) -> std::io::Result<()> {
        match self {
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            Self::Tcp(s) => s.flush(),
        }
    }
}

/// A connection factory for one HAProxy: the admin socket and, optionally, the master.
#[derive(Debug, Clone)]
pub struct Client {
    admin: Endpoint,
    master: Option<Endpoint>,
    via_master: bool,
    timeout: Duration,
}

impl Client {
    /// A client for `admin` (and `master`, for reloads), with a per-exchange timeout.
    pub fn new(admin: Endpoint, master: Option<Endpoint>, timeout: Duration) -> Self {
        Self {
            admin,
            master,
            via_master: false,
            timeout,
        }
    }

    /// A client sending every worker command through the master CLI as `@1 <command>`,
    /// so it reaches the newest worker (used after a reload; see the module doc).
    pub fn via_master(&self) -> Result<Self, HaproxyError> {
        if self.master.is_none() {
            return Err(HaproxyError::NoMaster);
        }
        Ok(Self {
            via_master: true,
            ..self.clone()
        })
    }

    /// Whether a master socket is configured.
    pub fn has_master(&self) -> bool {
        self.master.is_some()
    }

    fn worker_endpoint(&self) -> &Endpoint {
        match (&self.master, self.via_master) {
            (Some(m), true) => m,
            _ => &self.admin,
        }
    }

    fn worker_cmd(&self, cmd: &str) -> String {
        if self.via_master {
            format!("@1 {cmd}")
        } else {
            cmd.to_string()
        }
    }

    /// One connection: writes `payload`, half-closes, reads the reply to EOF. `first`
    /// names the command in errors.
    fn exchange(&self, ep: &Endpoint, payload: &str, first: &str) -> Result<String, HaproxyError> {
        let mut s = Stream::connect(ep, self.timeout).map_err(|source| HaproxyError::Connect {
            endpoint: ep.clone(),
            source,
        })?;
        let io = |source| HaproxyError::Io {
            endpoint: ep.clone(),
            command: first.to_string(),
            source,
        };
        s.write_all(payload.as_bytes()).map_err(io)?;
        s.finish().map_err(io)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(io)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Sends one worker command and returns HAProxy's whole reply.
    pub fn query(&self, cmd: &str) -> Result<String, HaproxyError> {
        let line = self.worker_cmd(cmd);
        self.exchange(self.worker_endpoint(), &format!("{line}\n"), cmd)
    }

    /// `show servers state`, as HAProxy writes it (what the server-state file holds).
    pub fn servers_state_text(&self) -> Result<String, HaproxyError> {
        const CMD: &str = "show servers state";
        let text = self.query(CMD)?;
        if !text.starts_with('1') {
            return Err(HaproxyError::Protocol {
                command: CMD.into(),
                detail: format!("unexpected start {:?}", text.lines().next()),
            });
        }
        Ok(text)
    }

    /// `show servers state [backend]`, parsed. A backend HAProxy does not know is
    /// [`HaproxyError::Refused`] with HAProxy's own words.
    pub fn servers_state(&self, backend: Option<&str>) -> Result<Vec<ServerState>, HaproxyError> {
        let cmd = match backend {
            Some(b) => format!("show servers state {b}"),
            None => "show servers state".to_string(),
        };
        let text = self.query(&cmd)?;
        if !text.starts_with('1') {
            return Err(HaproxyError::Refused {
                command: cmd,
                reply: text.trim().to_string(),
            });
        }
        parse_servers_state(&text).map_err(|detail| HaproxyError::Protocol {
            command: cmd,
            detail,
        })
    }

    /// Every server's row of `show stat`.
    pub fn stats(&self) -> Result<Vec<StatRow>, HaproxyError> {
        const CMD: &str = "show stat -1 4 -1";
        parse_stat(&self.query(CMD)?).map_err(|detail| HaproxyError::Protocol {
            command: CMD.into(),
            detail,
        })
    }

    /// The master's `show proc`, parsed.
    pub fn proc_info(&self) -> Result<ProcInfo, HaproxyError> {
        const CMD: &str = "show proc";
        parse_proc(&self.master(CMD)?).map_err(|detail| HaproxyError::Protocol {
            command: CMD.into(),
            detail,
        })
    }

    /// Sends one command to the master process itself (`show proc`, `reload`).
    pub fn master(&self, cmd: &str) -> Result<String, HaproxyError> {
        let ep = self.master.as_ref().ok_or(HaproxyError::NoMaster)?;
        self.exchange(ep, &format!("{cmd}\n"), cmd)
    }

    /// Asks the master for a hitless reload, waiting up to `wait` for its answer.
    /// HAProxy 2.6 answers nothing and closes ([`ReloadAnswer::Unconfirmed`]: whether
    /// it worked shows in [`Client::proc_info`], a new worker or `[failed]`); 2.8 and
    /// later answer once the new worker is up or failed, with the start-up log.
    pub fn reload(&self, wait: Duration) -> Result<ReloadAnswer, HaproxyError> {
        const CMD: &str = "reload";
        let ep = self.master.as_ref().ok_or(HaproxyError::NoMaster)?;
        let patient = Self {
            timeout: wait.max(self.timeout),
            ..self.clone()
        };
        let text = patient.exchange(ep, "reload\n", CMD)?;
        parse_reload(&text).map_err(|detail| HaproxyError::Protocol {
            command: CMD.into(),
            detail,
        })
    }

    /// The version of the HAProxy behind the admin socket (`show info`), refused with
    /// [`HaproxyError::Unsupported`] when older than [`MIN_VERSION`].
    pub fn version(&self) -> Result<Version, HaproxyError> {
        const CMD: &str = "show info";
        let v = parse_info_version(&self.query(CMD)?).map_err(|detail| HaproxyError::Protocol {
            command: CMD.into(),
            detail,
        })?;
        supported(v)
    }

    /// Sends groups of commands; each group stays on one `;` line, so HAProxy applies
    /// it as a whole (a new member's `state ready; health down` is never UP in
    /// between). Lines go over one connection per CPU (at most [`PARALLEL`]) at once:
    /// HAProxy runs one thread per CPU, and commands on different servers proceed in
    /// parallel. A reply that is not the command's success text is
    /// [`HaproxyError::Refused`].
    pub fn batch(&self, groups: &[Vec<Command>]) -> Result<(), HaproxyError> {
        let groups: Vec<Vec<(&Command, String)>> = groups
            .iter()
            .map(|g| g.iter().map(|c| (c, c.to_string())).collect())
            .collect();
        let mut lines: Vec<Vec<&(&Command, String)>> = Vec::new();
        let mut cur: Vec<&(&Command, String)> = Vec::new();
        let mut len = 0;
        for g in &groups {
            let glen: usize = g.iter().map(|(_, c)| c.len() + 8).sum();
            if !cur.is_empty() && len + glen >= MAX_LINE {
                lines.push(std::mem::take(&mut cur));
                len = 0;
            }
            cur.extend(g.iter());
            len += glen;
        }
        if !cur.is_empty() {
            lines.push(cur);
        }
        match lines.len() {
            0 => Ok(()),
            1 => self.send_line(&lines[0]),
            n => {
                let workers = n.min(parallel());
                let lines = &lines;
                std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..workers)
                        .map(|w| {
                            scope.spawn(move || {
                                for line in lines.iter().skip(w).step_by(workers) {
                                    self.send_line(line)?;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    let mut result = Ok(());
                    for h in handles {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(HaproxyError::Protocol {
                                command: String::new(),
                                detail: "a socket writer thread panicked".into(),
                            })
                        });
                        if result.is_ok() {
                            result = r;
                        }
                    }
                    result
                })
            }
        }
    }

    fn send_line(&self, chunk: &[&(&Command, String)]) -> Result<(), HaproxyError> {
        let line = chunk
            .iter()
            .map(|(_, c)| self.worker_cmd(c))
            .collect::<Vec<_>>()
            .join("; ");
        let first = chunk.first().map(|(_, c)| c.as_str()).unwrap_or_default();
        let reply = self.exchange(self.worker_endpoint(), &format!("{line}\n"), first)?;
        check_batch_reply(chunk, &reply)
    }

    /// The entries of a map (`show map <file>`): key and value, in HAProxy's order. A
    /// map HAProxy does not know is [`HaproxyError::Refused`] with its own words.
    pub fn show_map(&self, map: &MapFile) -> Result<Vec<(String, String)>, HaproxyError> {
        let cmd = format!("show map {map}");
        let text = self.query(&cmd)?;
        parse::parse_map(&text).map_err(|reply| HaproxyError::Refused {
            command: cmd,
            reply,
        })
    }
}

/// `v` when the agent drives it, else [`HaproxyError::Unsupported`].
pub fn supported(v: Version) -> Result<Version, HaproxyError> {
    if v.branch < MIN_VERSION {
        return Err(HaproxyError::Unsupported { version: v.text });
    }
    Ok(v)
}

fn check_batch_reply(cmds: &[&(&Command, String)], reply: &str) -> Result<(), HaproxyError> {
    // Each command's reply is its text followed by an empty line (`lines`, not
    // `split`: the last newline ends the last reply, it does not start another).
    let mut blocks: Vec<String> = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in reply.lines() {
        if line.is_empty() {
            blocks.push(cur.join("\n"));
            cur.clear();
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        blocks.push(cur.join("\n"));
    }
    for (i, (typed, cmd)) in cmds.iter().map(|c| (c.0, &c.1)).enumerate() {
        match blocks.get(i) {
            Some(b) if typed.op.succeeded(b) => {}
            Some(b) => {
                return Err(HaproxyError::Refused {
                    command: cmd.to_string(),
                    reply: b.trim().to_string(),
                })
            }
            None => {
                return Err(HaproxyError::Protocol {
                    command: cmd.to_string(),
                    detail: format!(
                        "{} commands sent, only {} replies: {:?}",
                        cmds.len(),
                        blocks.len(),
                        reply
                    ),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("/run/a.sock").unwrap(),
            Endpoint::Unix("/run/a.sock".into())
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:9999").unwrap(),
            Endpoint::Tcp("127.0.0.1:9999".into())
        );
        assert!(Endpoint::parse("nonsense").is_err());
    }

    #[test]
    fn groups_are_never_split_across_lines() {
        // A Unix socket that records each line and answers each command as HAProxy 3.0
        // does when nothing changes: `nothing changed` to an address, nothing to a state.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut line = String::new();
                let _ = conn.read_to_string(&mut line);
                let reply: String = line
                    .trim_end()
                    .split("; ")
                    .map(|c| {
                        if c.contains(" addr ") {
                            "nothing changed\n\n"
                        } else {
                            "\n"
                        }
                    })
                    .collect();
                let _ = conn.write_all(reply.as_bytes());
                seen.lock().unwrap().push(line.trim_end().to_string());
            }
        });
        let client = Client::new(Endpoint::Unix(path), None, Duration::from_secs(5));
        let web = infra::PoolName::new("web").unwrap();
        let port = infra::Port::new(8080).unwrap();
        let groups: Vec<Vec<Command>> = (0..600u32)
            .map(|i| {
                let addr = std::net::IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
                Command::join(&web, i, addr, port, true)
            })
            .collect();
        client.batch(&groups).unwrap();
        let lines = lines.lock().unwrap();
        assert!(lines.len() > 1, "several lines were needed");
        let mut total = 0;
        for l in lines.iter() {
            assert!(l.len() < MAX_LINE + 200);
            let cmds: Vec<&str> = l.split("; ").collect();
            assert_eq!(cmds.len() % 3, 0, "a group was split: {l}");
            for g in cmds.chunks(3) {
                assert!(
                    g[0].contains(" addr ")
                        && g[1].ends_with("state ready")
                        && g[2].ends_with("health down")
                );
            }
            total += cmds.len();
        }
        assert_eq!(total, 1800);
    }

    /// A socket answering every connection with `reply` (a stand-in for HAProxy only
    /// where no real HAProxy can give the answer: a version it is not).
    fn answering(dir: &std::path::Path, reply: &'static str) -> Endpoint {
        let path = dir.join("admin.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut asked = String::new();
                let _ = conn.read_to_string(&mut asked);
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        Endpoint::Unix(path)
    }

    #[test]
    fn an_haproxy_older_than_2_6_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ep = answering(
            dir.path(),
            "Name: HAProxy\nVersion: 2.4.22-0ubuntu0.22.04.3\nRelease_date: 2023/02/14\n\n",
        );
        let client = Client::new(ep, None, Duration::from_secs(5));
        let e = client.version().unwrap_err();
        assert!(matches!(e, HaproxyError::Unsupported { .. }), "{e:?}");
        let msg = e.to_string();
        for words in [
            "HAProxy 2.4.22-0ubuntu0.22.04.3 is not supported",
            "2.6 or later",
            "3.2",
        ] {
            assert!(msg.contains(words), "{words:?} in {msg}");
        }
        for ok in [
            "2.6.12-1+deb12u4",
            "2.8.5",
            "3.0.11-9e587df",
            "3.2.26-1",
            "3.3-dev4",
        ] {
            assert!(supported(Version::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        assert!(supported(Version::parse("1.8.30").unwrap()).is_err());
    }

    #[test]
    fn batch_replies_are_checked_per_command() {
        let web = infra::PoolName::new("web").unwrap();
        let typed = Command::join(
            &web,
            1,
            "10.0.0.1".parse().unwrap(),
            infra::Port::new(80).unwrap(),
            false,
        );
        let pairs: Vec<(&Command, String)> = typed.iter().map(|c| (c, c.to_string())).collect();
        let cmds: Vec<&(&Command, String)> = pairs.iter().collect();
        let ok = "IP changed from '0.0.0.0' to '10.0.0.1' by 'stats socket command'\n\n\n";
        assert!(check_batch_reply(&cmds, ok).is_ok());
        let bad = "No such server.\n\n\n";
        match check_batch_reply(&cmds, bad) {
            Err(HaproxyError::Refused { command, reply }) => {
                assert_eq!(command, "set server web/slot1 addr 10.0.0.1 port 80");
                assert_eq!(reply, "No such server.");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_batch_reply(&cmds, ""),
            Err(HaproxyError::Protocol { .. })
        ));
    }

    #[test]
    fn a_map_put_on_a_slot_without_an_entry_succeeds() {
        // `del map; add map` on one line, as HAProxy 2.6.12 answers it when the slot
        // had no entry yet: `Key not found.` for the delete, nothing for the add.
        let web = infra::PoolName::new("web").unwrap();
        let map = MapFile::new(std::path::Path::new("/s/instances.map")).unwrap();
        let id = infra::MemberId::new("i-1").unwrap();
        let typed = Command::map_put(&web, 7, &map, &id);
        let pairs: Vec<(&Command, String)> = typed.iter().map(|c| (c, c.to_string())).collect();
        let cmds: Vec<&(&Command, String)> = pairs.iter().collect();
        assert!(check_batch_reply(&cmds, "Key not found.\n\n\n").is_ok());
        match check_batch_reply(
            &cmds,
            "Unknown map identifier. Please use #<id> or <file>.\n\n\n",
        ) {
            Err(e @ HaproxyError::Refused { .. }) => {
                assert!(e.is_unknown_map(), "{e}");
                assert!(e.to_string().contains("del map /s/instances.map web/slot7"));
            }
            other => panic!("{other:?}"),
        }
        // The add refused after a delete that found nothing.
        assert!(matches!(
            check_batch_reply(
                &cmds,
                "Key not found.\n\nUnknown map identifier. Please use #<id> or <file>.\n\n"
            ),
            Err(HaproxyError::Refused { .. })
        ));
    }

    /// A slot given back on one line, as HAProxy 3.0.11 and 3.2.26 answer it (`state
    /// maint` silent, then `Done.`, then `Server deleted.`, each with its empty line),
    /// and as each answers when the server still holds a connection.
    #[test]
    fn a_slot_removal_is_judged_per_command() {
        let web = infra::PoolName::new("web").unwrap();
        let typed = Command::remove_slot(&web, 5);
        let pairs: Vec<(&Command, String)> = typed.iter().map(|c| (c, c.to_string())).collect();
        let cmds: Vec<&(&Command, String)> = pairs.iter().collect();
        assert!(check_batch_reply(&cmds, "\nDone.\n\nServer deleted.\n\n").is_ok());
        for (version, expired) in [("3.0", "Wait delay expired."), ("3.2", "Interrupted.")] {
            let reply = format!(
                "\n{expired}\n\nServer still has connections attached to it, cannot remove it.\n\n"
            );
            match check_batch_reply(&cmds, &reply) {
                Err(HaproxyError::Refused { command, reply }) => {
                    assert_eq!(command, "wait 200ms srv-removable web/slot5", "{version}");
                    assert_eq!(reply, expired, "{version}");
                }
                other => panic!("{version}: {other:?}"),
            }
        }
        // An added slot: `New server registered.` then the silent `enable health`.
        let opts = infra::ServerOptions::new("check").unwrap();
        let typed = Command::add_slot(&web, 5, infra::Port::new(80).unwrap(), &opts);
        let pairs: Vec<(&Command, String)> = typed.iter().map(|c| (c, c.to_string())).collect();
        let cmds: Vec<&(&Command, String)> = pairs.iter().collect();
        assert!(check_batch_reply(&cmds, "New server registered.\n\n\n").is_ok());
        match check_batch_reply(
            &cmds,
            "Backend must use a dynamic load balancing to support dynamic servers.\n\nNo such server.\n\n",
        ) {
            Err(HaproxyError::Refused { reply, .. }) => assert!(refuses_for_balance(&reply)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn servers_are_added_at_runtime_from_3_0_and_2_6_keeps_the_reload() {
        for (text, adds) in [
            ("2.6.12-1+deb12u4", false),
            ("2.8.5", false),
            ("3.0.11-9e587df", true),
            ("3.2.26-1", true),
            ("3.3-dev4", true),
        ] {
            let v = Version::parse(text).unwrap();
            assert_eq!(adds_servers(&v), adds, "{text}");
            assert_eq!(reload_path_reason(&v).is_none(), adds, "{text}");
        }
        let why = reload_path_reason(&Version::parse("2.6.12-1+deb12u4").unwrap()).unwrap();
        for words in [
            "HAProxy 2.6.12-1+deb12u4",
            "hitless reload",
            "crash",
            "from 3.0",
        ] {
            assert!(why.contains(words), "{words:?} in {why}");
        }
        assert!(refuses_for_balance(
            "Backend must use a dynamic load balancing to support dynamic servers."
        ));
        assert!(!refuses_for_balance(
            "'init-addr' option is not accepted for dynamic server"
        ));
        let opts = |s: &str| infra::ServerOptions::new(s).unwrap();
        assert!(refused_at_runtime(&opts("check inter 500ms weight 10 slowstart 10s")).is_empty());
        assert_eq!(
            refused_at_runtime(&opts("check resolvers dns resolve-prefer ipv4")),
            ["resolvers", "resolve-prefer"]
        );
    }
}
