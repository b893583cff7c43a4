//! The agent's configuration file (`/etc/haproxy-asg/agent.toml`).
//!
//! It says where HAProxy's sockets, configuration and binary are, where the agent keeps
//! its state, and which pools (backends) it manages. The format is documented in
//! `docs/interfaces.md`; every field is checked when the file is read, so a typo stops
//! the agent before it touches HAProxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::{GroupName, Pool, PoolName, Port, ServerOptions, Weight, Zone};
use serde::Deserialize;

use crate::haproxy::{Endpoint, MapFile};
use crate::limits::Network;

/// Where the agent looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/haproxy-asg/agent.toml";

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read agent configuration {path}: {source}. Pass --config PATH or set AGENT_CONFIG"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a field is wrong.
    #[error("invalid agent configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the field.
        message: String,
    },
}

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The name this host reports (defaults to the hostname).
    pub host: String,
    /// The Availability Zone this proxy runs in (`zone`), for pools with
    /// `zone_affinity = "prefer"`.
    pub zone: Option<Zone>,
    /// HAProxy's files and sockets.
    pub haproxy: HaproxyConfig,
    /// The agent service's own socket.
    pub service: ServiceConfig,
    /// Options for `agent config render`.
    pub render: RenderConfig,
    /// The managed pools, in file order.
    pub pools: Vec<PoolConfig>,
    /// Auto Scaling group -> pools, for syncing from AWS.
    pub aws_groups: BTreeMap<GroupName, Vec<PoolName>>,
    /// Auto Scaling group -> the weight of its members in every pool it feeds
    /// (`[aws] weights`), for syncing from AWS.
    pub aws_weights: BTreeMap<GroupName, Weight>,
    /// How often the service syncs from AWS (with `[aws]` groups), besides at start.
    pub sync_interval: Duration,
    /// The networks members may be in (`member_networks`); empty: any unicast address
    /// except the ones always refused (see [`crate::limits`]).
    pub member_networks: Vec<Network>,
    /// Where HAProxy's and the agent's Prometheus metrics are served, if anywhere.
    pub metrics: MetricsConfig,
    /// Where members' outcomes are reported (the reactor's inbox), if anywhere.
    pub report: Option<ReportConfig>,
}

/// The `[report]` section: the reactor's inbox, an SQS queue the service sends every
/// member's outcome to (UP, DRAINED, FAILED, STALE) as the member reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportConfig {
    /// The inbox's queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
    pub queue_url: String,
    /// Outcomes that end within this window of the first share a message.
    pub batch: Duration,
    /// How often members that are UP are looked at for a health change to report
    /// (`health_interval_ms`, default 1000); `None`: never (0).
    pub health_interval: Option<Duration>,
}

/// The default `[report] health_interval_ms`.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 1000;

/// The default `[report] batch_ms`.
pub const DEFAULT_REPORT_BATCH_MS: u64 = 5;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    queue_url: String,
    #[serde(default = "default_report_batch_ms")]
    batch_ms: u64,
    #[serde(default = "default_health_interval_ms")]
    health_interval_ms: u64,
}

fn default_health_interval_ms() -> u64 {
    DEFAULT_HEALTH_INTERVAL_MS
}

fn default_report_batch_ms() -> u64 {
    DEFAULT_REPORT_BATCH_MS
}

impl RawReport {
    fn check(self, host: &str) -> Result<ReportConfig, String> {
        let url = self.queue_url.trim();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let path = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_once('/'));
        let chars_ok = url
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/._-[]%".contains(c));
        if !scheme_ok
            || !chars_ok
            || path.is_none_or(|(authority, p)| authority.is_empty() || p.is_empty())
        {
            return Err(format!(
                "report.queue_url = {url:?} is not a queue URL: give the reactor's inbox as SQS shows it, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/haproxy-asg-inbox (Terraform's output inbox_queue_url)"
            ));
        }
        if self.batch_ms > 1000 {
            return Err(format!(
                "report.batch_ms = {} is out of range (0 to 1000 ms; {DEFAULT_REPORT_BATCH_MS} is the default)",
                self.batch_ms
            ));
        }
        if infra::HostId::new(host).is_err() {
            return Err(format!(
                "host = {host:?} can not name this host in its reports: with [report], host must be the proxy's instance id (1-128 of letters, digits, '-', '_', '.', ':'), e.g. host = \"i-0123456789abcdef0\"; the reactor checks it against the report's sender"
            ));
        }
        if self.health_interval_ms > 60_000 {
            return Err(format!(
                "report.health_interval_ms = {} is out of range (0 to 60000 ms; 0 reports no health changes, {DEFAULT_HEALTH_INTERVAL_MS} is the default)",
                self.health_interval_ms
            ));
        }
        Ok(ReportConfig {
            queue_url: url.to_string(),
            batch: Duration::from_millis(self.batch_ms),
            health_interval: (self.health_interval_ms > 0)
                .then(|| Duration::from_millis(self.health_interval_ms)),
        })
    }
}

/// The `[metrics]` section: where Prometheus scrapes this host. Both are optional and
/// off by default; each is an IP `address:port` (host names are not resolved: a
/// listener must not depend on DNS at boot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// HAProxy's built-in Prometheus exporter: `agent config render` declares a
    /// frontend there serving `/metrics` (`http-request use-service
    /// prometheus-exporter`).
    pub haproxy: Option<SocketAddr>,
    /// The agent service's own `/metrics` ([`crate::metrics`]).
    pub agent: Option<SocketAddr>,
}

impl MetricsConfig {
    /// Reads one listen address of `[metrics]`: an IP address and a port, neither
    /// zero nor multicast.
    pub fn parse_listen(field: &str, s: &str) -> Result<SocketAddr, String> {
        match s.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!(
                "metrics.{field} = {s:?}: port 0 is not a fixed port Prometheus can scrape; give one (e.g. 127.0.0.1:{})",
                if field == "haproxy" { 8405 } else { 9405 }
            )),
            Ok(a) if a.ip().is_multicast() => Err(format!(
                "metrics.{field} = {s:?} is a multicast address; give a local address to listen on"
            )),
            Ok(a) => Ok(a),
            Err(_) => Err(format!(
                "metrics.{field} = {s:?} is not an IP address:port (127.0.0.1:{port}, [::1]:{port}, 0.0.0.0:{port}); host names are not resolved",
                port = if field == "haproxy" { 8405 } else { 9405 }
            )),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    haproxy: Option<String>,
    agent: Option<String>,
}

impl RawMetrics {
    fn check(self) -> Result<MetricsConfig, String> {
        let haproxy = self
            .haproxy
            .as_deref()
            .map(|s| MetricsConfig::parse_listen("haproxy", s))
            .transpose()?;
        let agent = self
            .agent
            .as_deref()
            .map(|s| MetricsConfig::parse_listen("agent", s))
            .transpose()?;
        if let (Some(h), Some(a)) = (haproxy, agent) {
            if h.port() == a.port()
                && (h.ip() == a.ip() || h.ip().is_unspecified() || a.ip().is_unspecified())
            {
                return Err(format!(
                    "metrics.haproxy ({h}) and metrics.agent ({a}) would listen on the same port; give them different ports"
                ));
            }
        }
        Ok(MetricsConfig { haproxy, agent })
    }
}

/// The agent service (`agent run`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The control socket `agent apply`, `sync` and `status` talk to (mode 0660).
    pub control_socket: PathBuf,
}

/// Where HAProxy is.
#[derive(Debug, Clone, PartialEq)]
pub struct HaproxyConfig {
    /// haproxy.cfg: the operator's (frontends, rules), and the pools' slot blocks too
    /// unless `pools_config` is set.
    pub config: PathBuf,
    /// A file of the agent's own holding the pools' backends (slot blocks, server
    /// options, the server-state wiring), loaded by HAProxy as a second `-f`: the agent
    /// writes it and never touches `config`. `None`: the slot blocks live in `config`.
    pub pools_config: Option<PathBuf>,
    /// The admin-level stats socket.
    pub admin_socket: Endpoint,
    /// The master CLI socket (master-worker mode), needed for hitless reloads.
    pub master_socket: Option<Endpoint>,
    /// The haproxy binary, for `haproxy -c`.
    pub binary: PathBuf,
    /// The agent's own state: slot table, lock and HAProxy's server-state file.
    pub state_dir: PathBuf,
    /// How long one socket exchange may take.
    pub timeout: Duration,
    /// The instance map the log line reads (`<state_dir>/instances.map`), checked to be
    /// safe to write into haproxy.cfg and runtime commands.
    pub instances_map: MapFile,
}

/// The instance map's file name inside the state directory.
pub const INSTANCES_MAP: &str = "instances.map";

impl HaproxyConfig {
    /// The file that holds the pools' slot blocks, which the agent resizes:
    /// `pools_config` when set, else `config`.
    pub fn slots_file(&self) -> &std::path::Path {
        self.pools_config.as_deref().unwrap_or(&self.config)
    }

    /// The slot table file.
    pub fn slots_path(&self) -> PathBuf {
        self.state_dir.join("slots.json")
    }

    /// HAProxy's server-state file (`server-state-file` in haproxy.cfg).
    pub fn server_state_path(&self) -> PathBuf {
        self.state_dir.join("server-state")
    }

    /// The outbox of reports waiting for the reactor's inbox (`[report]`).
    pub fn reports_path(&self) -> PathBuf {
        self.state_dir.join("reports.json")
    }

    /// The lock that keeps one agent service per state directory.
    pub fn lock_path(&self) -> PathBuf {
        self.state_dir.join("lock")
    }
}

/// Options for `agent config render`: how HAProxy is confined and where it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Bind frontends with `accept-proxy` (behind an NLB with proxy protocol v2).
    pub accept_proxy: bool,
    /// `user`: the workers run as this user, not root (`None`: not rendered).
    pub user: Option<String>,
    /// `group`: the workers' group (`None`: not rendered).
    pub group: Option<String>,
    /// `chroot`: the workers' root directory (`None`: not rendered).
    pub chroot: Option<PathBuf>,
    /// `log <target> local0`: where every request's log line goes.
    pub log: LogTarget,
    /// `timeout http-request`: how long a client may take to send a request's head
    /// (HAProxy's own anti-slowloris advice is a few seconds; the client timeout would
    /// otherwise apply).
    pub http_request_timeout_s: u32,
    /// `hard-stop-after`: how long an old worker may keep its sessions after a reload
    /// (each growth past the slots reloads; without it long sessions keep old workers
    /// forever).
    pub hard_stop_after_s: u32,
}

/// Default `timeout http-request`, seconds.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT_S: u32 = 10;
/// Default `hard-stop-after`, seconds (an hour: long enough for most long polls and
/// downloads, short enough that reloads do not pile up workers).
pub const DEFAULT_HARD_STOP_AFTER_S: u32 = 3600;

/// The user and group HAProxy's workers run as by default (Debian's package creates them).
pub const DEFAULT_HAPROXY_USER: &str = "haproxy";
/// HAProxy's default chroot (Debian's package creates it, with `dev/log` for syslog).
pub const DEFAULT_CHROOT: &str = "/var/lib/haproxy";
/// The default syslog target.
pub const DEFAULT_LOG: &str = "/dev/log";

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            accept_proxy: false,
            user: Some(DEFAULT_HAPROXY_USER.into()),
            group: Some(DEFAULT_HAPROXY_USER.into()),
            chroot: Some(PathBuf::from(DEFAULT_CHROOT)),
            log: LogTarget::Path(PathBuf::from(DEFAULT_LOG)),
            http_request_timeout_s: DEFAULT_HTTP_REQUEST_TIMEOUT_S,
            hard_stop_after_s: DEFAULT_HARD_STOP_AFTER_S,
        }
    }
}

/// Where HAProxy sends its log lines: a syslog socket path or a UDP `address:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// A unix datagram socket (`/dev/log`). Under a chroot the workers resolve it
    /// inside the chroot: Debian's unit binds `/dev/log` to `/var/lib/haproxy/dev/log`.
    Path(PathBuf),
    /// A syslog server over UDP (`127.0.0.1:514`, `[::1]:514`).
    Udp(SocketAddr),
}

impl LogTarget {
    /// Reads a path (absolute, safe characters) or an IP `address:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            if safe_path(s) {
                return Ok(Self::Path(PathBuf::from(s)));
            }
            return Err(format!(
                "render.log = {s:?}: a path must hold only letters, digits, '/', '.', '_' and '-'"
            ));
        }
        match s.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast() => {
                Ok(Self::Udp(a))
            }
            _ => Err(format!(
                "render.log = {s:?} is neither a socket path (/dev/log) nor an IP address:port (127.0.0.1:514, [::1]:514); host names are not resolved"
            )),
        }
    }
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Udp(a) => write!(f, "{a}"),
        }
    }
}

/// A path HAProxy reads unquoted: absolute, only `[A-Za-z0-9/._-]`.
fn safe_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

/// A user or group name HAProxy can look up and a line can hold.
fn safe_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRender {
    #[serde(default)]
    accept_proxy: bool,
    user: Option<String>,
    group: Option<String>,
    chroot: Option<String>,
    log: Option<String>,
    http_request_timeout_s: Option<u32>,
    hard_stop_after_s: Option<u32>,
}

impl RawRender {
    fn check(self) -> Result<RenderConfig, String> {
        let name = |field: &str, v: Option<String>| -> Result<Option<String>, String> {
            match v.as_deref() {
                None => Ok(Some(DEFAULT_HAPROXY_USER.into())),
                Some("") => Ok(None),
                Some(n) if safe_name(n) => Ok(Some(n.into())),
                Some(n) => Err(format!("render.{field} = {n:?} is not a user or group name (lower-case letters, digits, '_', '-'; at most 32)")),
            }
        };
        let chroot = match self.chroot.as_deref() {
            None => Some(PathBuf::from(DEFAULT_CHROOT)),
            Some("") => None,
            Some(p) if safe_path(p) => Some(PathBuf::from(p)),
            Some(p) => return Err(format!("render.chroot = {p:?} must be an absolute path of letters, digits, '/', '.', '_' and '-' (or \"\" for no chroot)")),
        };
        let log = match self.log.as_deref() {
            None => LogTarget::Path(PathBuf::from(DEFAULT_LOG)),
            Some("") => return Err("render.log is empty: HAProxy must log somewhere; give a socket path (/dev/log) or an IP address:port".into()),
            Some(t) => LogTarget::parse(t)?,
        };
        let http_request_timeout_s = self
            .http_request_timeout_s
            .unwrap_or(DEFAULT_HTTP_REQUEST_TIMEOUT_S);
        if !(1..=300).contains(&http_request_timeout_s) {
            return Err(format!("render.http_request_timeout_s = {http_request_timeout_s} must be from 1 to 300 seconds (a few seconds is HAProxy's own advice against slow request heads)"));
        }
        let hard_stop_after_s = self.hard_stop_after_s.unwrap_or(DEFAULT_HARD_STOP_AFTER_S);
        if !(10..=604_800).contains(&hard_stop_after_s) {
            return Err(format!("render.hard_stop_after_s = {hard_stop_after_s} must be from 10 seconds to a week (604800): how long an old worker keeps its sessions after a reload"));
        }
        Ok(RenderConfig {
            accept_proxy: self.accept_proxy,
            user: name("user", self.user)?,
            group: name("group", self.group)?,
            chroot,
            log,
            http_request_timeout_s,
            hard_stop_after_s,
        })
    }
}

/// One managed pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Name, default port and server options.
    pub pool: Pool,
    /// The other ports a group's `haproxy:port` tag may choose for this pool (the
    /// reactor's `POOLS` `ports`; default none: the tag can not move the port).
    pub ports: Vec<Port>,
    /// Frontend bind (for `agent config render`), e.g. `:80` or `127.0.0.1:8080`.
    pub bind: Option<String>,
    /// The slot count a fresh config starts with, and the floor slots shrink to.
    pub slots: u32,
    /// HTTP path for health checks (`option httpchk GET <path>`), if any.
    pub health_path: Option<String>,
    /// How long a joining member may take to pass its checks.
    pub health_timeout: Duration,
    /// How long a leaving member may take to finish its requests.
    pub drain_timeout: Duration,
    /// The most members of this pool one message may name (adds and removes).
    pub max_members: usize,
    /// The most slots the pool may grow to; a change needing more is refused.
    pub max_slots: u32,
    /// The backend's `balance` line as rendered (default `roundrobin`). A static
    /// algorithm (`static-rr`, a hash without `hash-type consistent`) cannot take
    /// servers added at runtime: such a pool grows with a reload on every version.
    pub balance: String,
    /// Same-zone routing (`zone_affinity`): with `prefer`, members of other zones stand
    /// by at weight 1 while enough members of this host's zone are UP.
    pub zone_affinity: ZoneAffinity,
    /// How many members of this host's zone must be UP for `prefer` to keep traffic in
    /// the zone (`min_zone_members`, at least 1); below it, traffic spills to every zone.
    pub min_zone_members: u32,
}

/// A pool's same-zone routing (`zone_affinity` in agent.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneAffinity {
    /// Every member takes its share, whatever its zone (the default).
    #[default]
    Off,
    /// Members of this host's zone take the traffic while at least `min_zone_members`
    /// of them are UP (sharing weight 256 by their own weights); the others stand by at
    /// weight 1 (health-checked, a trickle of traffic HAProxy fails over to at once) and
    /// take their share again as soon as the zone falls below that.
    Prefer,
}

impl std::fmt::Display for ZoneAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Prefer => "prefer",
        })
    }
}

impl PoolConfig {
    /// The pool's name (its HAProxy backend).
    pub fn name(&self) -> &PoolName {
        &self.pool.name
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    host: Option<String>,
    zone: Option<Zone>,
    haproxy: RawHaproxy,
    #[serde(default)]
    service: RawService,
    #[serde(default)]
    render: RawRender,
    #[serde(default)]
    member_networks: Vec<String>,
    #[serde(default, rename = "pool")]
    pools: Vec<RawPool>,
    #[serde(default)]
    aws: RawAws,
    #[serde(default)]
    metrics: RawMetrics,
    report: Option<RawReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    config: PathBuf,
    pools_config: Option<PathBuf>,
    admin_socket: String,
    master_socket: Option<String>,
    #[serde(default = "default_binary")]
    binary: PathBuf,
    state_dir: PathBuf,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    control_socket: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    #[serde(default)]
    groups: BTreeMap<GroupName, Vec<PoolName>>,
    #[serde(default = "default_sync_interval")]
    sync_interval_s: f64,
    #[serde(default)]
    weights: BTreeMap<GroupName, Weight>,
}

impl Default for RawAws {
    fn default() -> Self {
        Self {
            groups: BTreeMap::new(),
            weights: BTreeMap::new(),
            sync_interval_s: default_sync_interval(),
        }
    }
}

impl RawHaproxy {
    fn check(self) -> Result<HaproxyConfig, String> {
        let admin_socket = Endpoint::parse(&self.admin_socket)
            .map_err(|e| format!("haproxy.admin_socket: {e}"))?;
        let master_socket = self
            .master_socket
            .as_deref()
            .map(Endpoint::parse)
            .transpose()
            .map_err(|e| format!("haproxy.master_socket: {e}"))?;
        if let Some(p) = &self.pools_config {
            if !p.is_absolute() || *p == self.config {
                return Err(format!("haproxy.pools_config = {:?}: give an absolute path of its own, not haproxy.config (e.g. \"/etc/haproxy/haproxy-asg.cfg\"): the agent writes the pools' backends there and HAProxy loads it as a second -f", p.display()));
            }
        }
        let instances_map = MapFile::new(&self.state_dir.join(INSTANCES_MAP))
            .map_err(|e| format!("haproxy.state_dir: {e}"))?;
        Ok(HaproxyConfig {
            config: self.config,
            pools_config: self.pools_config,
            admin_socket,
            master_socket,
            binary: self.binary,
            state_dir: self.state_dir,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            instances_map,
        })
    }
}

impl RawPool {
    fn check(self) -> Result<PoolConfig, String> {
        self.validate()?;
        let p = self;
        Ok(PoolConfig {
            health_timeout: seconds(
                &format!("pool {}: health_timeout_s", p.name),
                p.health_timeout_s,
            )?,
            drain_timeout: seconds(
                &format!("pool {}: drain_timeout_s", p.name),
                p.drain_timeout_s,
            )?,
            pool: Pool {
                name: p.name,
                port: p.port,
                server_options: p.server_options,
                weight: None,
            },
            ports: p.ports,
            bind: p.bind,
            slots: p.slots,
            health_path: p.health_path,
            max_members: p.max_members,
            max_slots: p.max_slots,
            balance: p.balance.split_whitespace().collect::<Vec<_>>().join(" "),
            zone_affinity: p.zone_affinity,
            min_zone_members: p.min_zone_members,
        })
    }

    /// The pool's values in range, in the order a reader of agent.toml meets them.
    fn validate(&self) -> Result<(), String> {
        let p = self;
        if !(1..=100_000).contains(&p.slots) {
            return Err(format!(
                "pool {}: slots = {} is out of range (1 to 100000)",
                p.name, p.slots
            ));
        }
        if !(1..=100_000).contains(&p.max_slots) || p.max_slots < p.slots {
            return Err(format!(
                "pool {}: max_slots = {} must be from slots ({}) to 100000",
                p.name, p.max_slots, p.slots
            ));
        }
        if !(1..=100_000).contains(&p.max_members) {
            return Err(format!(
                "pool {}: max_members = {} is out of range (1 to 100000)",
                p.name, p.max_members
            ));
        }
        let balance_ok = !p.balance.trim().is_empty()
            && p.balance.len() <= 128
            && p.balance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " -_.,()".contains(c));
        if !balance_ok {
            return Err(format!(
                "pool {}: balance {:?} must be an HAProxy balance algorithm (roundrobin, leastconn, static-rr, source...) of letters, digits and ' -_.,()'",
                p.name, p.balance
            ));
        }
        if let Some(path) = &p.health_path {
            let ok = path.starts_with('/')
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/-_.~%?=&".contains(c));
            if !ok {
                return Err(format!("pool {}: health_path {path:?} must start with '/' and hold only URL-safe characters", p.name));
            }
        }
        if p.min_zone_members == 0 || p.min_zone_members > 100_000 {
            return Err(format!(
                "pool {}: min_zone_members = {} is out of range (1 to 100000): how many members of this host's zone must be UP to keep traffic in the zone",
                p.name, p.min_zone_members
            ));
        }
        if let Some(bind) = &p.bind {
            let ok = !bind.is_empty()
                && bind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":.[]*".contains(c));
            if !ok {
                return Err(format!(
                    "pool {}: bind {bind:?} must look like ':80' or '127.0.0.1:8080'",
                    p.name
                ));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: PoolName,
    port: Port,
    bind: Option<String>,
    #[serde(default = "default_slots")]
    slots: u32,
    #[serde(default)]
    server_options: ServerOptions,
    #[serde(default)]
    ports: Vec<Port>,
    health_path: Option<String>,
    #[serde(default = "default_health_timeout")]
    health_timeout_s: f64,
    #[serde(default = "default_drain_timeout")]
    drain_timeout_s: f64,
    #[serde(default = "default_max_members")]
    max_members: usize,
    #[serde(default = "default_max_slots")]
    max_slots: u32,
    #[serde(default = "default_balance")]
    balance: String,
    #[serde(default)]
    zone_affinity: ZoneAffinity,
    #[serde(default = "default_min_zone_members")]
    min_zone_members: u32,
}

fn default_binary() -> PathBuf {
    PathBuf::from("haproxy")
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_slots() -> u32 {
    16
}
fn default_health_timeout() -> f64 {
    30.0
}
fn default_drain_timeout() -> f64 {
    60.0
}
fn default_sync_interval() -> f64 {
    300.0
}
fn default_max_members() -> usize {
    1000
}
fn default_max_slots() -> u32 {
    4096
}
fn default_min_zone_members() -> u32 {
    1
}
fn default_balance() -> String {
    "roundrobin".into()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn seconds(field: &str, s: f64) -> Result<Duration, String> {
    if !(s.is_finite() && (0.0..=86_400.0).contains(&s)) {
        return Err(format!(
            "{field} = {s} is out of range (0 to 86400 seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// `[aws] weights` name groups of `[aws] groups`.
fn check_weights(aws: &RawAws) -> Result<(), String> {
    for group in aws.weights.keys() {
        if !aws.groups.contains_key(group) {
            return Err(format!(
                "aws.weights: group {group} is not in aws.groups: a weight is that group's members' weight in the pools it feeds; add the group to aws.groups or remove its weight"
            ));
        }
    }
    Ok(())
}

/// A pool with `zone_affinity = "prefer"` needs the host's `zone`.
fn check_affinity(zone: Option<&Zone>, pools: &[PoolConfig]) -> Result<(), String> {
    if zone.is_some() {
        return Ok(());
    }
    match pools
        .iter()
        .find(|p| p.zone_affinity == ZoneAffinity::Prefer)
    {
        Some(p) => Err(format!(
            "pool {}: zone_affinity = \"prefer\" needs the top-level zone (this proxy's Availability Zone, e.g. zone = \"us-east-1a\" before the first [section]): without it no member is in this host's zone; set zone, or zone_affinity = \"off\"",
            p.name()
        )),
        None => Ok(()),
    }
}

impl AgentConfig {
    /// Whether some pool routes to its own zone first.
    pub fn affinity_anywhere(&self) -> bool {
        self.zone.is_some()
            && self
                .pools
                .iter()
                .any(|p| p.zone_affinity == ZoneAffinity::Prefer)
    }

    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses configuration text (the checks of [`AgentConfig::load`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut pools = Vec::new();
        for p in raw.pools {
            if pools.iter().any(|q: &PoolConfig| q.pool.name == p.name) {
                return Err(format!("pool {} is defined twice", p.name));
            }
            pools.push(p.check()?);
        }
        for (group, names) in &raw.aws.groups {
            for n in names {
                if !pools.iter().any(|p| &p.pool.name == n) {
                    return Err(format!(
                        "aws.groups: group {group} maps to pool {n}, which has no [[pool]] entry"
                    ));
                }
            }
        }
        check_weights(&raw.aws)?;
        check_affinity(raw.zone.as_ref(), &pools)?;
        let sync_interval = seconds("aws.sync_interval_s", raw.aws.sync_interval_s)?;
        if sync_interval < Duration::from_secs(1) {
            return Err(format!(
                "aws.sync_interval_s = {} is too short: at least 1 second (300 is the default)",
                raw.aws.sync_interval_s
            ));
        }
        let control_socket = raw
            .service
            .control_socket
            .unwrap_or_else(|| raw.haproxy.state_dir.join("agent.sock"));
        let haproxy = raw.haproxy.check()?;
        let member_networks = raw
            .member_networks
            .iter()
            .map(|n| {
                n.parse::<Network>()
                    .map_err(|e| format!("member_networks: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let render = raw.render.check()?;
        let metrics = raw.metrics.check()?;
        let host = raw.host.unwrap_or_else(hostname);
        let report = raw.report.map(|r| r.check(&host)).transpose()?;
        Ok(Self {
            host,
            zone: raw.zone,
            aws_weights: raw.aws.weights,
            report,
            service: ServiceConfig { control_socket },
            sync_interval,
            haproxy,
            render,
            pools,
            aws_groups: raw.aws.groups,
            member_networks,
            metrics,
        })
    }

    /// The pool named `name`, if managed here.
    pub fn pool(&self, name: &PoolName) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| &p.pool.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every agent.toml the docs show (README.md, docs/interfaces.md) is one the agent
    /// reads: a key renamed in the code and not in the docs fails here.
    #[test]
    fn the_agent_toml_examples_in_the_docs_parse() {
        let docs = [
            ("README.md", include_str!("../../README.md")),
            (
                "docs/interfaces.md",
                include_str!("../../docs/interfaces.md"),
            ),
        ];
        let mut seen = 0;
        for (name, text) in docs {
            for block in text.split("```toml\n").skip(1) {
                let block = block.split("```").next().unwrap_or_default();
                if !block.contains("[haproxy]") {
                    continue;
                }
                seen += 1;
                if let Err(e) = AgentConfig::parse(block) {
                    panic!("{name}: an agent.toml example does not parse: {e}\n{block}");
                }
            }
        }
        assert!(seen >= 2, "the docs' agent.toml examples were not found");
    }

    const GOOD: &str = r#"
host = "proxy-a"
[haproxy]
config = "/etc/haproxy/haproxy.cfg"
admin_socket = "/run/haproxy/admin.sock"
master_socket = "127.0.0.1:9999"
state_dir = "/var/lib/haproxy-asg"
[[pool]]
name = "web"
port = 8080
bind = ":80"
health_path = "/healthz"
[aws]
groups = { "web-asg" = ["web"] }
"#;

    #[test]
    fn a_full_file_parses_with_defaults() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.host, "proxy-a");
        assert_eq!(c.pools[0].slots, 16);
        assert_eq!(c.pools[0].drain_timeout, Duration::from_secs(60));
        assert!(matches!(c.haproxy.master_socket, Some(Endpoint::Tcp(_))));
        assert!(c.pools[0].pool.server_options.has_check());
        assert_eq!(
            c.service.control_socket,
            PathBuf::from("/var/lib/haproxy-asg/agent.sock")
        );
        assert_eq!(c.sync_interval, Duration::from_secs(300));
    }

    #[test]
    fn the_report_section_names_the_inbox_and_needs_an_instance_id() {
        assert_eq!(AgentConfig::parse(GOOD).unwrap().report, None);
        let with = |host: &str, body: &str| {
            AgentConfig::parse(
                &GOOD
                    .replace("host = \"proxy-a\"", &format!("host = \"{host}\""))
                    .replace("[aws]", &format!("[report]\n{body}\n[aws]")),
            )
        };
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/haproxy-asg-inbox";
        let c = with("i-0123456789abcdef0", &format!("queue_url = \"{url}\"")).unwrap();
        assert_eq!(
            c.report,
            Some(ReportConfig {
                queue_url: url.into(),
                batch: Duration::from_millis(DEFAULT_REPORT_BATCH_MS),
                health_interval: Some(Duration::from_millis(DEFAULT_HEALTH_INTERVAL_MS)),
            })
        );
        let c = with(
            "i-1",
            &format!("queue_url = \"{url}\"\nhealth_interval_ms = 0"),
        )
        .unwrap();
        assert_eq!(c.report.map(|r| r.health_interval), Some(None));
        let e = with(
            "i-1",
            &format!("queue_url = \"{url}\"\nhealth_interval_ms = 600000"),
        )
        .unwrap_err();
        assert!(e.contains("report.health_interval_ms"), "{e}");
        let c = with(
            "i-1",
            "queue_url = \"http://127.0.0.1:5000/123456789012/inbox\"\nbatch_ms = 0",
        )
        .unwrap();
        assert_eq!(c.report.map(|r| r.batch), Some(Duration::ZERO));
        let e = with("i-1", "queue_url = \"inbox\"").unwrap_err();
        assert!(
            e.contains("report.queue_url") && e.contains("inbox_queue_url"),
            "{e}"
        );
        let e = with(
            "i-1",
            "queue_url = \"https://sqs.example.com/q\"\nbatch_ms = 5000",
        )
        .unwrap_err();
        assert!(e.contains("report.batch_ms"), "{e}");
        let e = with("proxy a", &format!("queue_url = \"{url}\"")).unwrap_err();
        assert!(e.contains("instance id"), "{e}");
        let e = with("i-1", "queue = \"x\"").unwrap_err();
        assert!(e.contains("queue"), "{e}");
    }

    #[test]
    fn confinement_and_limits_default_and_validate() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.render, RenderConfig::default());
        assert_eq!(c.render.user.as_deref(), Some("haproxy"));
        assert_eq!(c.render.chroot, Some(PathBuf::from("/var/lib/haproxy")));
        assert_eq!(c.render.log.to_string(), "/dev/log");
        assert_eq!(c.pools[0].max_members, 1000);
        assert_eq!(c.pools[0].max_slots, 4096);
        assert!(c.member_networks.is_empty());
        assert_eq!(
            c.haproxy.instances_map.as_str(),
            "/var/lib/haproxy-asg/instances.map"
        );

        let set = GOOD.replace(
            "[aws]",
            "max_members = 5\nmax_slots = 64\n[render]\nuser = \"www\"\ngroup = \"\"\nchroot = \"\"\nlog = \"[::1]:5514\"\n[aws]",
        );
        let set = format!("member_networks = [\"10.0.0.0/16\", \"fd00::/8\"]\n{set}");
        let c = AgentConfig::parse(&set).unwrap();
        assert_eq!(c.render.user.as_deref(), Some("www"));
        assert_eq!(c.render.group, None, "an empty group is not rendered");
        assert_eq!(c.render.chroot, None, "an empty chroot disables it");
        assert_eq!(c.render.log.to_string(), "[::1]:5514");
        assert_eq!((c.pools[0].max_members, c.pools[0].max_slots), (5, 64));
        assert_eq!(
            c.member_networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.0/16", "fd00::/8"]
        );
    }

    #[test]
    fn bad_confinement_and_limits_name_the_key() {
        let with_render = |body: &str| {
            AgentConfig::parse(&GOOD.replace("[aws]", &format!("[render]\n{body}\n[aws]")))
                .unwrap_err()
        };
        let e = with_render("log = \"syslog.example.com:514\"");
        assert!(
            e.contains("render.log") && e.contains("not resolved"),
            "{e}"
        );
        let e = with_render("log = \"/dev/log; rm\"");
        assert!(e.contains("render.log"), "{e}");
        let e = with_render("log = \"\"");
        assert!(e.contains("render.log is empty"), "{e}");
        let e = with_render("chroot = \"var/lib/haproxy\"");
        assert!(e.contains("render.chroot"), "{e}");
        let e = with_render("user = \"root\\nchroot /\"");
        assert!(e.contains("render.user"), "{e}");
        let e = with_render("http_request_timeout_s = 0");
        assert!(e.contains("render.http_request_timeout_s = 0"), "{e}");
        let e = with_render("hard_stop_after_s = 5");
        assert!(e.contains("render.hard_stop_after_s = 5"), "{e}");
        let e = AgentConfig::parse(&format!("member_networks = [\"10.0.0.1/16\"]\n{GOOD}"))
            .unwrap_err();
        assert!(
            e.contains("member_networks") && e.contains("10.0.0.0/16"),
            "{e}"
        );
        let e = AgentConfig::parse(&GOOD.replace("[aws]", "slots = 64\nmax_slots = 32\n[aws]"))
            .unwrap_err();
        assert!(e.contains("max_slots = 32"), "{e}");
        let e = AgentConfig::parse(&GOOD.replace("[aws]", "max_members = 0\n[aws]")).unwrap_err();
        assert!(e.contains("max_members = 0"), "{e}");
        let e = AgentConfig::parse(&GOOD.replace("/var/lib/haproxy-asg", "/var/lib/my state"))
            .unwrap_err();
        assert!(e.contains("haproxy.state_dir"), "{e}");
    }

    #[test]
    fn metrics_addresses_are_optional_and_checked() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.metrics, MetricsConfig::default(), "off unless asked");
        let with = |body: &str| AgentConfig::parse(&format!("{GOOD}[metrics]\n{body}\n"));
        let c = with("haproxy = \"127.0.0.1:8405\"\nagent = \"[::1]:9405\"").unwrap();
        assert_eq!(c.metrics.haproxy, Some("127.0.0.1:8405".parse().unwrap()));
        assert_eq!(c.metrics.agent, Some("[::1]:9405".parse().unwrap()));
        let e = with("agent = \"localhost:9405\"").unwrap_err();
        assert!(
            e.contains("metrics.agent") && e.contains("host names are not resolved"),
            "{e}"
        );
        let e = with("haproxy = \"8405\"").unwrap_err();
        assert!(
            e.contains("metrics.haproxy") && e.contains("IP address:port"),
            "{e}"
        );
        let e = with("haproxy = \"127.0.0.1:0\"").unwrap_err();
        assert!(e.contains("port 0"), "{e}");
        let e = with("agent = \"224.0.0.1:9405\"").unwrap_err();
        assert!(e.contains("multicast"), "{e}");
        let e = with("haproxy = \"0.0.0.0:9405\"\nagent = \"127.0.0.1:9405\"").unwrap_err();
        assert!(e.contains("same port"), "{e}");
        let e = with("prometheus = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("prometheus"), "{e}");
    }

    #[test]
    fn mistakes_name_the_field() {
        let e = AgentConfig::parse(&GOOD.replace("port = 8080", "port = 99999")).unwrap_err();
        assert!(e.contains("invalid port 99999"), "{e}");
        let e = AgentConfig::parse(&GOOD.replace("[\"web\"]", "[\"api\"]")).unwrap_err();
        assert!(e.contains("pool api, which has no [[pool]] entry"), "{e}");
        let e = AgentConfig::parse(&GOOD.replace("/healthz", "healthz now")).unwrap_err();
        assert!(e.contains("health_path"), "{e}");
        let e =
            AgentConfig::parse(&GOOD.replace("bind = \":80\"", "bind = \":80 ssl\"")).unwrap_err();
        assert!(e.contains("bind"), "{e}");
        let e = AgentConfig::parse(&GOOD.replace("state_dir", "stat_dir")).unwrap_err();
        assert!(e.contains("stat_dir"), "{e}");
    }

    #[test]
    fn a_pool_balances_round_robin_unless_it_says_otherwise() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.pools[0].balance, "roundrobin");
        let with = |b: &str| {
            AgentConfig::parse(&GOOD.replace(
                "bind = \":80\"",
                &format!("bind = \":80\"\nbalance = \"{b}\""),
            ))
        };
        assert_eq!(with("static-rr").unwrap().pools[0].balance, "static-rr");
        assert_eq!(with("hdr(host)  ").unwrap().pools[0].balance, "hdr(host)");
        for bad in ["", "roundrobin; del server web/slot1", "uri\\nbackend x"] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("balance"), "{bad}: {e}");
        }
    }
    #[test]
    fn zone_affinity_defaults_off_and_prefer_needs_the_hosts_zone() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.zone, None);
        assert_eq!(c.pools[0].zone_affinity, ZoneAffinity::Off);
        assert_eq!(c.pools[0].min_zone_members, 1);
        assert!(!c.affinity_anywhere());
        let prefer = GOOD.replace(
            "[aws]",
            "zone_affinity = \"prefer\"\nmin_zone_members = 2\n[aws]",
        );
        let e = AgentConfig::parse(&prefer).unwrap_err();
        assert!(
            e.contains("zone_affinity = \"prefer\"") && e.contains("top-level zone"),
            "{e}"
        );
        let c = AgentConfig::parse(&format!("zone = \"us-east-1a\"\n{prefer}")).unwrap();
        assert_eq!(c.zone.as_ref().map(Zone::as_str), Some("us-east-1a"));
        assert_eq!(c.pools[0].zone_affinity, ZoneAffinity::Prefer);
        assert_eq!(c.pools[0].min_zone_members, 2);
        assert!(c.affinity_anywhere());
        let e = AgentConfig::parse(&GOOD.replace("[aws]", "zone_affinity = \"always\"\n[aws]"))
            .unwrap_err();
        assert!(e.contains("always") && e.contains("prefer"), "{e}");
        let e =
            AgentConfig::parse(&GOOD.replace("[aws]", "min_zone_members = 0\n[aws]")).unwrap_err();
        assert!(e.contains("min_zone_members = 0"), "{e}");
        let e = AgentConfig::parse(&format!("zone = \"us east\"\n{GOOD}")).unwrap_err();
        assert!(e.contains("invalid zone"), "{e}");
    }

    #[test]
    fn aws_weights_name_groups_of_aws_groups() {
        let with = |w: &str| {
            AgentConfig::parse(&GOOD.replace(
                "groups = { \"web-asg\" = [\"web\"] }",
                &format!("groups = {{ \"web-asg\" = [\"web\"] }}\nweights = {w}"),
            ))
        };
        let c = with("{ \"web-asg\" = 90 }").unwrap();
        assert_eq!(c.aws_weights["web-asg"].get(), 90);
        let e = with("{ \"api-asg\" = 90 }").unwrap_err();
        assert!(e.contains("aws.weights") && e.contains("api-asg"), "{e}");
        let e = with("{ \"web-asg\" = 300 }").unwrap_err();
        assert!(e.contains("invalid weight 300"), "{e}");
    }

    #[test]
    fn aws_groups_are_auto_scaling_group_names() {
        let e = AgentConfig::parse(&GOOD.replace(
            "groups = { \"web-asg\" = [\"web\"] }",
            "groups = { \"\" = [\"web\"] }",
        ))
        .unwrap_err();
        assert!(e.contains("invalid Auto Scaling group name"), "{e}");
    }
}
