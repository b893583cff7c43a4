//! The systemd units the agent owns, written from agent.toml so their paths agree
//! with the configuration: the agent service's unit ([`agent_unit`],
//! `agent config unit`) and a drop-in for Debian's `haproxy.service`
//! ([`haproxy_dropin`], `agent config haproxy-dropin`).
//!
//! Both are sandboxed as far as each program tolerates:
//!
//! - The agent runs as root **without any capability**. It must replace haproxy.cfg
//!   (root's, in root's directory) and reload HAProxy through the master socket, and
//!   whoever can do both can make HAProxy's master (root) run anything, so a separate
//!   user would guard nothing and need the configuration directory and both sockets
//!   handed over to it. What limits it instead: an empty capability bounding set (it
//!   reaches root's files and sockets as their owner, never by overriding permissions),
//!   a read-only file system except the state directory, the control socket's
//!   directory and haproxy.cfg's directory, no new privileges, a system-call filter and
//!   the address families it uses (unix sockets; IPv4/IPv6 for AWS and TCP sockets).
//! - HAProxy's master keeps only what it uses before its workers drop to
//!   `user`/`group` inside `chroot`: binding ports below 1024, setuid/setgid,
//!   chroot, and signalling its workers (which run as another user: CAP_KILL).

use std::path::{Path, PathBuf};

use crate::config::{AgentConfig, LogTarget};
use crate::haproxy::Endpoint;

/// The agent service's unit name.
pub const AGENT_UNIT: &str = "haproxy-asg-agent.service";
/// Where the agent service's unit is installed.
pub const AGENT_UNIT_PATH: &str = "/etc/systemd/system/haproxy-asg-agent.service";
/// Where HAProxy's drop-in is installed.
pub const HAPROXY_DROPIN_PATH: &str = "/etc/systemd/system/haproxy.service.d/haproxy-asg.conf";
/// Where the agent binary is installed on a host.
pub const DEFAULT_AGENT_BINARY: &str = "/usr/local/bin/agent";
/// Optional environment for the agent service (`AWS_REGION`, proxy settings...).
pub const AGENT_ENVIRONMENT_FILE: &str = "/etc/default/haproxy-asg-agent";

/// Why a unit could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// A path a unit needs is relative or holds characters a unit line can not.
    #[error("{what} {path:?} can not go into a systemd unit: use an absolute path of letters, digits and '/._-+@:'")]
    Path {
        /// Which path.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// HAProxy's drop-in needs the master socket.
    #[error("agent.toml has no haproxy.master_socket: HAProxy's drop-in starts it with `-S <master socket>` for the agent's hitless reloads; set haproxy.master_socket (for example \"/run/haproxy/master.sock\")")]
    NoMasterSocket,
}

/// `path` as unit text, if it can be written there as is (no quoting, no `%`).
fn unit_path(what: &'static str, path: &Path) -> Result<String, UnitError> {
    let bad = || UnitError::Path {
        what,
        path: path.to_path_buf(),
    };
    let text = path.to_str().ok_or_else(bad)?;
    let ok = text.starts_with('/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+@:".contains(c));
    if !ok {
        return Err(bad());
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The directory of a file, as unit text.
fn dir_of(what: &'static str, file: &Path) -> Result<String, UnitError> {
    let parent = file.parent().unwrap_or(Path::new(""));
    unit_path(what, parent)
}

/// Writable directories, said the way that creates them when systemd can:
/// `StateDirectory=` under /var/lib, `RuntimeDirectory=` under /run, else
/// `ReadWritePaths=` (which must exist).
#[derive(Default)]
struct Writable {
    state: Vec<String>,
    runtime: Vec<String>,
    paths: Vec<String>,
}

impl Writable {
    /// A directory that must already exist (another package's).
    fn add_existing(&mut self, dir: String) {
        if !dir.is_empty() && !self.paths.contains(&dir) {
            self.paths.push(dir);
        }
    }

    fn add(&mut self, dir: String) {
        let (list, name) = if let Some(rest) = dir.strip_prefix("/var/lib/") {
            (&mut self.state, rest.to_string())
        } else if let Some(rest) = dir.strip_prefix("/run/") {
            (&mut self.runtime, rest.to_string())
        } else {
            (&mut self.paths, dir)
        };
        if !name.is_empty() && !list.contains(&name) {
            list.push(name);
        }
    }

    fn lines(&self, s: &mut String) {
        if !self.state.is_empty() {
            s.push_str(&format!("StateDirectory={}\n", self.state.join(" ")));
            s.push_str("StateDirectoryMode=0750\n");
        }
        if !self.runtime.is_empty() {
            s.push_str(&format!("RuntimeDirectory={}\n", self.runtime.join(" ")));
            s.push_str("RuntimeDirectoryMode=0750\n");
            s.push_str("RuntimeDirectoryPreserve=restart\n");
        }
        if !self.paths.is_empty() {
            s.push_str(&format!("ReadWritePaths={}\n", self.paths.join(" ")));
        }
    }
}

/// The sandbox both units share (what HAProxy tolerates as well as the agent).
const COMMON_HARDENING: &str = "\
NoNewPrivileges=yes
ProtectSystem=strict
PrivateTmp=yes
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
PrivateMounts=yes
SystemCallArchitectures=native
SystemCallErrorNumber=EPERM
UMask=0027
";

/// The agent service's unit (`haproxy-asg-agent.service`) for `cfg`, read from
/// `config_path`, with the agent at `agent_binary`.
pub fn agent_unit(
    cfg: &AgentConfig,
    config_path: &Path,
    agent_binary: &Path,
) -> Result<String, UnitError> {
    let binary = unit_path("the agent binary", agent_binary)?;
    let config = unit_path("agent.toml", config_path)?;
    let mut writable = Writable::default();
    writable.add(unit_path("haproxy.state_dir", &cfg.haproxy.state_dir)?);
    writable.add(dir_of(
        "the control socket's directory",
        &cfg.service.control_socket,
    )?);
    // Where it writes the slot blocks (haproxy.cfg, or its own file of backends) and
    // the candidate `haproxy -c` checks beside them.
    writable.add(dir_of(
        "the slot blocks' directory",
        cfg.haproxy.slots_file(),
    )?);
    let mut s = String::new();
    s.push_str(&format!("# {AGENT_UNIT_PATH}\n"));
    s.push_str(&format!(
        "# Written by `agent config unit` from {config}; paths follow it.\n"
    ));
    s.push_str("[Unit]\n");
    s.push_str(
        "Description=haproxy-asg agent: HAProxy's backends in step with Auto Scaling groups\n",
    );
    s.push_str("After=haproxy.service network-online.target\n");
    s.push_str("Wants=haproxy.service network-online.target\n");
    s.push_str("\n[Service]\n");
    s.push_str("Type=simple\n");
    s.push_str(&format!("ExecStart={binary} --config {config} run\n"));
    s.push_str("# `systemctl reload`: agent.toml read again, applied in place when it may be.\n");
    s.push_str("ExecReload=/bin/kill -HUP $MAINPID\n");
    s.push_str("Restart=on-failure\n");
    s.push_str("RestartSec=1\n");
    s.push_str("# AWS_REGION and the like, for syncing from AWS.\n");
    s.push_str(&format!("EnvironmentFile=-{AGENT_ENVIRONMENT_FILE}\n"));
    s.push_str("# Root without any capability: it reaches haproxy.cfg and HAProxy's sockets as\n");
    s.push_str("# their owner; nothing else is writable.\n");
    s.push_str("CapabilityBoundingSet=\n");
    s.push_str("AmbientCapabilities=\n");
    writable.lines(&mut s);
    s.push_str(COMMON_HARDENING);
    s.push_str("PrivateDevices=yes\n");
    s.push_str("ProtectProc=invisible\n");
    s.push_str("MemoryDenyWriteExecute=yes\n");
    // Traced through growth, reload and `haproxy -c`: nothing outside @system-service,
    // nothing of @privileged or @resources.
    s.push_str("SystemCallFilter=@system-service\n");
    s.push_str("SystemCallFilter=~@privileged @resources\n");
    s.push_str("\n[Install]\n");
    s.push_str("WantedBy=multi-user.target\n");
    Ok(s)
}

/// The `-S` argument for the master socket.
fn master_arg(ep: &Endpoint) -> Result<String, UnitError> {
    match ep {
        Endpoint::Unix(p) => unit_path("haproxy.master_socket", p),
        Endpoint::Tcp(a) => {
            let ok = a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:[]-".contains(c));
            if !ok {
                return Err(UnitError::Path {
                    what: "haproxy.master_socket",
                    path: PathBuf::from(a),
                });
            }
            Ok(format!("ipv4@{a}"))
        }
    }
}

/// HAProxy's drop-in (`haproxy.service.d/haproxy-asg.conf`) for `cfg`: master-worker
/// with the master socket agent.toml names, the configuration it names, and the
/// sandbox HAProxy tolerates.
pub fn haproxy_dropin(cfg: &AgentConfig) -> Result<String, UnitError> {
    let master = cfg
        .haproxy
        .master_socket
        .as_ref()
        .ok_or(UnitError::NoMasterSocket)?;
    let master = master_arg(master)?;
    let config = unit_path("haproxy.config", &cfg.haproxy.config)?;
    let binary = binary_arg(cfg)?;
    let writable = haproxy_writable(cfg)?;
    let mut s = String::new();
    s.push_str(&format!("# {HAPROXY_DROPIN_PATH}\n"));
    s.push_str("# Written by `agent config haproxy-dropin` from agent.toml; paths follow it.\n");
    s.push_str("[Service]\n");
    // The agent's own file of backends loads after haproxy.cfg (start and reload check).
    let pools = match &cfg.haproxy.pools_config {
        Some(p) => format!(" -f {}", unit_path("haproxy.pools_config", p)?),
        None => String::new(),
    };
    s.push_str(&format!(
        "Environment=\"CONFIG={config}\" \"PIDFILE=/run/haproxy/haproxy.pid\" \"EXTRAOPTS=-S {master}{pools}\"\n"
    ));
    s.push_str("# Master-worker (-Ws: -W plus the notification Type=notify needs), with the\n");
    s.push_str("# master socket for the agent's hitless reloads.\n");
    s.push_str("ExecStart=\n");
    s.push_str(&format!(
        "ExecStart={binary} -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS\n"
    ));
    s.push_str("ExecReload=\n");
    s.push_str(&format!(
        "ExecReload={binary} -Ws -f $CONFIG -c -q $EXTRAOPTS\n"
    ));
    s.push_str("ExecReload=/bin/kill -USR2 $MAINPID\n");
    s.push_str("# The master binds ports below 1024, drops its workers to user/group in the\n");
    s.push_str("# chroot, and signals them (they run as another user); nothing more.\n");
    s.push_str(
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_SYS_CHROOT CAP_KILL\n",
    );
    s.push_str("AmbientCapabilities=\n");
    writable.lines(&mut s);
    if let (Some(chroot), LogTarget::Path(log)) = (&cfg.render.chroot, &cfg.render.log) {
        // Workers resolve the log socket inside the chroot.
        let log = unit_path("render.log", log)?;
        let chroot = unit_path("render.chroot", chroot)?;
        s.push_str(&format!("BindReadOnlyPaths={log}:{chroot}{log}\n"));
    }
    s.push_str(COMMON_HARDENING);
    s.push_str("ProtectProc=invisible\n");
    // Traced through start, traffic, map commands and a reload: @system-service plus
    // chroot. (Not ~@resources: `cpu-map` or `nice` in a hand-edited haproxy.cfg need
    // it. Not MemoryDenyWriteExecute: Debian's HAProxy uses PCRE2's JIT. Not
    // PrivateDevices: Debian's unit binds /dev/log into the chroot.)
    s.push_str("SystemCallFilter=@system-service\n");
    s.push_str("SystemCallFilter=chroot\n");
    Ok(s)
}

/// HAProxy's binary as the unit names it: an absolute path, or a bare name systemd looks
/// up in /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin.
fn binary_arg(cfg: &AgentConfig) -> Result<String, UnitError> {
    if cfg.haproxy.binary.is_absolute() {
        return unit_path("haproxy.binary", &cfg.haproxy.binary);
    }
    let name = cfg.haproxy.binary.to_str().unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(UnitError::Path {
            what: "haproxy.binary",
            path: cfg.haproxy.binary.clone(),
        });
    }
    Ok(name.to_string())
}

/// What HAProxy's unit may write: the pid file and, in Debian's layout, both sockets live
/// in /run/haproxy, which Debian's tmpfiles.d creates (haproxy:haproxy 2775), writable as
/// it is (not a RuntimeDirectory= that would take it over); and the sockets' directories.
fn haproxy_writable(cfg: &AgentConfig) -> Result<Writable, UnitError> {
    let mut writable = Writable::default();
    writable.add_existing("/run/haproxy".into());
    for ep in [
        Some(&cfg.haproxy.admin_socket),
        cfg.haproxy.master_socket.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Endpoint::Unix(p) = ep {
            writable.add_existing(dir_of("a HAProxy socket's directory", p)?);
        }
    }
    Ok(writable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> AgentConfig {
        AgentConfig::parse(&format!(
            r#"
[haproxy]
config = "/etc/haproxy/haproxy.cfg"
admin_socket = "/run/haproxy/admin.sock"
master_socket = "/run/haproxy/master.sock"
binary = "/usr/sbin/haproxy"
state_dir = "/var/lib/haproxy-asg"
{extra}
[[pool]]
name = "web"
port = 8080
"#
        ))
        .unwrap()
    }

    fn lines(unit: &str, key: &str) -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_agent_unit_follows_agent_toml() {
        let u = agent_unit(
            &cfg(""),
            Path::new("/etc/haproxy-asg/agent.toml"),
            Path::new(DEFAULT_AGENT_BINARY),
        )
        .unwrap();
        assert_eq!(
            lines(&u, "ExecStart"),
            ["/usr/local/bin/agent --config /etc/haproxy-asg/agent.toml run"]
        );
        assert_eq!(lines(&u, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
        assert_eq!(lines(&u, "Restart"), ["on-failure"]);
        assert_eq!(lines(&u, "RestartSec"), ["1"]);
        assert_eq!(
            lines(&u, "After"),
            ["haproxy.service network-online.target"]
        );
        assert_eq!(
            lines(&u, "Wants"),
            ["haproxy.service network-online.target"]
        );
        // The default control socket is in the state directory: one directory.
        assert_eq!(lines(&u, "StateDirectory"), ["haproxy-asg"]);
        assert_eq!(lines(&u, "ReadWritePaths"), ["/etc/haproxy"]);
        assert!(lines(&u, "RuntimeDirectory").is_empty());
        assert_eq!(lines(&u, "CapabilityBoundingSet"), [""]);
        for key in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "ProtectKernelTunables=yes",
            "ProtectControlGroups=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "SystemCallFilter=@system-service",
            "SystemCallFilter=~@privileged @resources",
        ] {
            assert!(u.lines().any(|l| l == key), "{key}:\n{u}");
        }
    }

    #[test]
    fn writable_directories_follow_the_paths() {
        let c = cfg("[service]\ncontrol_socket = \"/run/haproxy-asg/agent.sock\"").clone();
        let mut c = c;
        c.haproxy.config = PathBuf::from("/srv/lb/haproxy.cfg");
        let u = agent_unit(&c, Path::new("/etc/a.toml"), Path::new("/opt/bin/agent")).unwrap();
        assert_eq!(lines(&u, "StateDirectory"), ["haproxy-asg"]);
        assert_eq!(lines(&u, "RuntimeDirectory"), ["haproxy-asg"]);
        assert_eq!(lines(&u, "ReadWritePaths"), ["/srv/lb"]);
        assert_eq!(
            lines(&u, "ExecStart"),
            ["/opt/bin/agent --config /etc/a.toml run"]
        );
        let e = agent_unit(&c, Path::new("agent.toml"), Path::new("/opt/bin/agent")).unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
        let e =
            agent_unit(&c, Path::new("/etc/a b.toml"), Path::new("/opt/bin/agent")).unwrap_err();
        assert!(e.to_string().contains("agent.toml"), "{e}");
    }

    #[test]
    fn the_haproxy_dropin_follows_agent_toml() {
        let d = haproxy_dropin(&cfg("")).unwrap();
        assert_eq!(
            lines(&d, "Environment"),
            ["\"CONFIG=/etc/haproxy/haproxy.cfg\" \"PIDFILE=/run/haproxy/haproxy.pid\" \"EXTRAOPTS=-S /run/haproxy/master.sock\""]
        );
        assert_eq!(
            lines(&d, "ExecStart"),
            [
                "",
                "/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS"
            ]
        );
        assert_eq!(
            lines(&d, "CapabilityBoundingSet"),
            ["CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_SYS_CHROOT CAP_KILL"]
        );
        assert_eq!(lines(&d, "ReadWritePaths"), ["/run/haproxy"]);
        assert!(lines(&d, "RuntimeDirectory").is_empty());
        assert_eq!(
            lines(&d, "BindReadOnlyPaths"),
            ["/dev/log:/var/lib/haproxy/dev/log"]
        );
        assert_eq!(lines(&d, "SystemCallFilter"), ["@system-service", "chroot"]);
        // No chroot: nothing to bind into it. A TCP master socket; an admin socket
        // elsewhere.
        let mut c = cfg("[render]\nchroot = \"\"");
        c.haproxy.admin_socket = Endpoint::Unix(PathBuf::from("/var/run/lb/admin.sock"));
        c.haproxy.master_socket = Some(Endpoint::Tcp("127.0.0.1:9999".into()));
        let d = haproxy_dropin(&c).unwrap();
        assert!(lines(&d, "BindReadOnlyPaths").is_empty());
        assert!(d.contains("\"EXTRAOPTS=-S ipv4@127.0.0.1:9999\""), "{d}");
        assert_eq!(lines(&d, "ReadWritePaths"), ["/run/haproxy /var/run/lb"]);
        c.haproxy.master_socket = None;
        let e = haproxy_dropin(&c).unwrap_err();
        assert!(e.to_string().contains("haproxy.master_socket"), "{e}");
    }

    #[test]
    fn the_agents_own_file_of_backends_loads_after_haproxy_cfg() {
        let c = cfg("pools_config = \"/etc/haproxy/haproxy-asg.cfg\"");
        let d = haproxy_dropin(&c).unwrap();
        assert!(
            d.contains("\"EXTRAOPTS=-S /run/haproxy/master.sock -f /etc/haproxy/haproxy-asg.cfg\""),
            "{d}"
        );
        // Start and the reload's check both load it.
        assert!(d.contains("-f $CONFIG -p $PIDFILE $EXTRAOPTS"), "{d}");
        assert!(d.contains("-f $CONFIG -c -q $EXTRAOPTS"), "{d}");
    }
}
