//! The agent's configuration file (`/etc/haproxy-asg/agent.toml`).
//!
//! It says where HAProxy's sockets, configuration and binary are, where the agent keeps
//! its state, and which pools (backends) it manages. The format is documented in
//! `docs/interfaces.md`; every field is checked when the file is read, so a typo stops
//! the agent before it touches HAProxy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::{Pool, PoolName, Port, ServerOptions};
use serde::Deserialize;

use crate::haproxy::Endpoint;

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
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The name this host reports (defaults to the hostname).
    pub host: String,
    /// HAProxy's files and sockets.
    pub haproxy: HaproxyConfig,
    /// The agent service's own socket.
    pub service: ServiceConfig,
    /// Options for `agent config render`.
    pub render: RenderConfig,
    /// The managed pools, in file order.
    pub pools: Vec<PoolConfig>,
    /// Auto Scaling group -> pools, for syncing from AWS.
    pub aws_groups: BTreeMap<String, Vec<PoolName>>,
    /// How often the service syncs from AWS (with `[aws]` groups), besides at start.
    pub sync_interval: Duration,
}

/// The agent service (`agent run`).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The control socket `agent apply`, `sync` and `status` talk to (mode 0660).
    pub control_socket: PathBuf,
}

/// Where HAProxy is.
#[derive(Debug, Clone)]
pub struct HaproxyConfig {
    /// haproxy.cfg, which holds the pools' slot blocks.
    pub config: PathBuf,
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
}

impl HaproxyConfig {
    /// The slot table file.
    pub fn slots_path(&self) -> PathBuf {
        self.state_dir.join("slots.json")
    }

    /// HAProxy's server-state file (`server-state-file` in haproxy.cfg).
    pub fn server_state_path(&self) -> PathBuf {
        self.state_dir.join("server-state")
    }

    /// The lock that keeps one agent service per state directory.
    pub fn lock_path(&self) -> PathBuf {
        self.state_dir.join("lock")
    }
}

/// Options for `agent config render`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderConfig {
    /// Bind frontends with `accept-proxy` (behind an NLB with proxy protocol v2).
    #[serde(default)]
    pub accept_proxy: bool,
}

/// One managed pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Name, default port and server options.
    pub pool: Pool,
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
    haproxy: RawHaproxy,
    #[serde(default)]
    service: RawService,
    #[serde(default)]
    render: RenderConfig,
    #[serde(default, rename = "pool")]
    pools: Vec<RawPool>,
    #[serde(default)]
    aws: RawAws,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    config: PathBuf,
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
    groups: BTreeMap<String, Vec<PoolName>>,
    #[serde(default = "default_sync_interval")]
    sync_interval_s: f64,
}

impl Default for RawAws {
    fn default() -> Self {
        Self {
            groups: BTreeMap::new(),
            sync_interval_s: default_sync_interval(),
        }
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
    health_path: Option<String>,
    #[serde(default = "default_health_timeout")]
    health_timeout_s: f64,
    #[serde(default = "default_drain_timeout")]
    drain_timeout_s: f64,
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

impl AgentConfig {
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
        let admin_socket = Endpoint::parse(&raw.haproxy.admin_socket)
            .map_err(|e| format!("haproxy.admin_socket: {e}"))?;
        let master_socket = raw
            .haproxy
            .master_socket
            .as_deref()
            .map(Endpoint::parse)
            .transpose()
            .map_err(|e| format!("haproxy.master_socket: {e}"))?;
        let mut pools = Vec::new();
        for p in raw.pools {
            if pools.iter().any(|q: &PoolConfig| q.pool.name == p.name) {
                return Err(format!("pool {} is defined twice", p.name));
            }
            if !(1..=100_000).contains(&p.slots) {
                return Err(format!(
                    "pool {}: slots = {} is out of range (1 to 100000)",
                    p.name, p.slots
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
            pools.push(PoolConfig {
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
                },
                bind: p.bind,
                slots: p.slots,
                health_path: p.health_path,
            });
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
        Ok(Self {
            host: raw.host.unwrap_or_else(hostname),
            service: ServiceConfig { control_socket },
            sync_interval,
            haproxy: HaproxyConfig {
                config: raw.haproxy.config,
                admin_socket,
                master_socket,
                binary: raw.haproxy.binary,
                state_dir: raw.haproxy.state_dir,
                timeout: Duration::from_millis(raw.haproxy.timeout_ms.max(1)),
            },
            render: raw.render,
            pools,
            aws_groups: raw.aws.groups,
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
}
