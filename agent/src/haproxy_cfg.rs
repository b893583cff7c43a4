//! haproxy.cfg: the slot blocks the agent owns inside an operator's configuration.
//!
//! Each pool's backend declares its slots with one line of the reload-safe form
//! (`slot.invalid` with `init-addr last,0.0.0.0`: an IP-literal template comes back as
//! 0.0.0.0 after a reload, see HAPROXY.md):
//!
//! ```text
//! backend web
//!     server-template slot 1-16 slot.invalid:8080 init-addr last,0.0.0.0 disabled check inter 500ms
//! ```
//!
//! The agent only ever rewrites the `1-N` of that line (when slots grow or shrink); the
//! rest of the file is the operator's. [`render`] writes a complete starting
//! configuration from `agent.toml`, and [`check`] says what a hand-written one lacks.
//!
//! A rendered configuration confines HAProxy: the master (root) opens the sockets and
//! reads the server-state and map files, then the workers drop to `user`/`group` inside
//! `chroot` (agent.toml `[render]`). Every request is logged (`log`, `option httplog`)
//! with the instance that served it: see [`crate::instances`]. With `[metrics] haproxy`
//! it also declares a frontend serving HAProxy's built-in Prometheus exporter at
//! `/metrics` ([`metrics_frontend`]).

use crate::config::{AgentConfig, PoolConfig};
use crate::haproxy::Endpoint;
use crate::slots::SlotTable;

/// The transaction variable each pool's backend sets to `<pool>/slot<N>` (the slot that
/// served) for the frontend's log line.
pub const SLOT_VAR: &str = "txn.asg_slot";

/// HAProxy's HTTP log format (`option httplog`, HAProxy 2.6), which the rendered
/// `log-format` extends.
pub const HTTPLOG_FORMAT: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r";

/// The `log-format` of an HTTP frontend: httplog's fields, then `instance=` and the
/// instance id of the member that served the request, looked up in the instance map
/// (`-` when no member served it or the slot has no entry).
pub fn http_log_format(cfg: &AgentConfig) -> String {
    format!(
        "{HTTPLOG_FORMAT} instance=%[var({SLOT_VAR}),map({},-)]",
        cfg.haproxy.instances_map
    )
}

/// The prefix of every slot server's name: slot 3 of pool `web` is `web/slot3`.
pub const SLOT_PREFIX: &str = "slot";

/// The server name of slot `n`.
pub fn slot_name(n: u32) -> String {
    format!("{SLOT_PREFIX}{n}")
}

/// The slot number of a server name, if it is a slot.
pub fn slot_number(server: &str) -> Option<u32> {
    server.strip_prefix(SLOT_PREFIX)?.parse().ok()
}

/// The `server-template` line for a pool with `n` slots.
pub fn slot_line(pool: &PoolConfig, n: u32) -> String {
    let opts = pool.pool.server_options.as_str();
    let mut line = format!(
        "server-template {SLOT_PREFIX} 1-{n} slot.invalid:{} init-addr last,0.0.0.0 disabled",
        pool.pool.port
    );
    if !opts.is_empty() {
        line.push(' ');
        line.push_str(opts);
    }
    line
}

/// Why `haproxy -c` did not accept a configuration ([`haproxy_check`]).
#[derive(Debug)]
pub enum CheckFailure {
    /// The candidate file could not be written.
    Write(std::io::Error),
    /// The haproxy binary could not be run.
    Run(std::io::Error),
    /// HAProxy refused it: its own output.
    Invalid(String),
}

/// Writes `text` to `candidate`, runs `binary -c` on it (after `before`, before `after`:
/// haproxy.cfg and the agent's own file of backends load together), and removes it: the
/// one `haproxy -c` of a configuration before it is installed (a growth, `agent config
/// render --output`, the service writing its file of backends).
pub fn haproxy_check(
    binary: &std::path::Path,
    candidate: &std::path::Path,
    text: &str,
    before: Option<&std::path::Path>,
    after: Option<&std::path::Path>,
) -> Result<(), CheckFailure> {
    std::fs::write(candidate, text).map_err(CheckFailure::Write)?;
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("-c");
    for f in [before, Some(candidate), after].into_iter().flatten() {
        cmd.arg("-f").arg(f);
    }
    let out = cmd.output();
    let _ = std::fs::remove_file(candidate);
    let out = out.map_err(CheckFailure::Run)?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(CheckFailure::Invalid(output));
    }
    Ok(())
}

/// Why the configuration file can not be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum CfgError {
    /// A pool has no slot line in its backend.
    #[error("{path}: backend {pool} has no `server-template {SLOT_PREFIX} 1-N slot.invalid:PORT init-addr last,0.0.0.0 disabled ...` line; add `{line}` to it (or generate a file with `agent config render`)")]
    MissingBlock {
        /// The file.
        path: String,
        /// The pool.
        pool: String,
        /// The line to add.
        line: String,
    },
}

/// What `agent config check` says about growth past the slots: why the HAProxy at
/// `version` keeps the reload path (2.6, 2.8), or, where it adds servers at runtime, each
/// pool that keeps it anyway (a static balance algorithm in `blocks`, the file holding
/// the slot blocks; server options HAProxy refuses for servers added at runtime).
pub fn growth_notes(
    cfg: &AgentConfig,
    blocks: Option<&str>,
    version: Result<&crate::haproxy::Version, String>,
) -> Vec<String> {
    let v = match version {
        Ok(v) => v,
        Err(e) => return vec![format!("cannot tell how pools grow past their slots: {e}")],
    };
    if let Some(why) = crate::haproxy::reload_path_reason(v) {
        return vec![why];
    }
    let mut out = Vec::new();
    for p in &cfg.pools {
        let name = p.name().as_str();
        if let Some(why) = blocks.and_then(|t| static_balance(t, name)) {
            out.push(format!("pool {name} grows past its slots with a reload, not with servers added at runtime: {why}; use roundrobin, leastconn, random or `hash-type consistent` to grow without reloads"));
        }
        let refused = crate::haproxy::refused_at_runtime(&p.pool.server_options);
        if !refused.is_empty() {
            out.push(format!("pool {name} grows past its slots with a reload, not with servers added at runtime: its server_options hold {}, which HAProxy refuses for servers added at runtime", refused.join(", ")));
        }
    }
    out
}

/// Why servers cannot be added at runtime to backend `pool` as `text` declares it (its
/// balance algorithm is static: `static-rr`, or a hash-based one without `hash-type
/// consistent`, which is map-based), or `None` when they can. Reads the backend's own
/// `balance` and `hash-type`, else the last `defaults` section's before it.
pub fn static_balance(text: &str, pool: &str) -> Option<String> {
    let mut defaults: (Option<String>, Option<String>) = (None, None);
    let mut own: Option<(Option<String>, Option<String>)> = None;
    let mut section = "";
    for line in text.lines() {
        if let Some((kw, name)) = section_of(line) {
            if own.is_some() {
                break;
            }
            section = kw;
            if matches!(kw, "backend" | "listen") && name == Some(pool) {
                own = Some(defaults.clone());
            } else if kw == "defaults" {
                defaults = (None, None);
            }
            continue;
        }
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let (Some(&kw), Some(_)) = (words.first(), words.get(1)) else {
            continue;
        };
        let value = words.get(1..).unwrap_or_default().join(" ");
        let slot = match (&mut own, section) {
            (Some(o), _) => o,
            (None, "defaults") => &mut defaults,
            _ => continue,
        };
        match kw {
            "balance" => slot.0 = Some(value),
            "hash-type" => slot.1 = Some(value),
            _ => {}
        }
    }
    let (balance, hash_type) = own?;
    let balance = balance.unwrap_or_else(|| "roundrobin".into());
    let algo = balance.split([' ', '(']).next().unwrap_or_default();
    if algo == "static-rr" {
        return Some(format!("backend {pool} uses `balance static-rr`, which HAProxy cannot give servers added at runtime"));
    }
    let hashed = matches!(
        algo,
        "source" | "uri" | "url_param" | "hdr" | "rdp-cookie" | "hash"
    );
    let consistent = hash_type
        .as_deref()
        .is_some_and(|h| h.split(' ').next() == Some("consistent"));
    if hashed && !consistent {
        return Some(format!("backend {pool} uses `balance {balance}` with a map-based hash (no `hash-type consistent`), which HAProxy cannot give servers added at runtime"));
    }
    None
}

fn section_of(line: &str) -> Option<(&str, Option<&str>)> {
    let mut w = line.split_whitespace();
    let kw = w.next()?;
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    match kw {
        "global" | "defaults" | "frontend" | "backend" | "listen" | "peers" | "resolvers"
        | "userlist" | "program" | "cache" | "ring" | "mailers" | "http-errors" => {
            Some((kw, w.next()))
        }
        _ => None,
    }
}

/// Where a pool's slot line is: (line index, current slot count).
pub fn find_block(text: &str, pool: &str) -> Option<(usize, u32)> {
    let mut in_pool = false;
    for (i, line) in text.lines().enumerate() {
        if let Some((kw, name)) = section_of(line) {
            in_pool = matches!(kw, "backend" | "listen") && name == Some(pool);
            continue;
        }
        if !in_pool {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 4 && w[0] == "server-template" && w[1] == SLOT_PREFIX {
            let n = w[2].strip_prefix("1-").and_then(|n| n.parse().ok())?;
            return Some((i, n));
        }
    }
    None
}

/// `text` with the pool's slot count set to `n` (None when the pool has no block). Only
/// the `1-N` word changes; the line's indentation and separators (spaces or tabs) stay.
pub fn set_slots(text: &str, pool: &str, n: u32) -> Option<String> {
    let (idx, _) = find_block(text, pool)?;
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i != idx {
            out.push_str(line);
            continue;
        }
        // The third word is `1-N` (find_block checked it); words are slices of `line`.
        let range = line.split_whitespace().nth(2)?;
        let at = range.as_ptr() as usize - line.as_ptr() as usize;
        out.push_str(line.get(..at)?);
        out.push_str(&format!("1-{n}"));
        out.push_str(line.get(at + range.len()..)?);
    }
    Some(out)
}

/// The agent's own file of backends as it should be now: each pool's block at the
/// largest of its `slots`, the size `existing` (the file as it is) gives it, and the
/// highest slot the table uses, so rewriting it never takes a slot from a member.
pub fn pools_file(cfg: &AgentConfig, existing: Option<&str>, table: &SlotTable) -> String {
    render_pools(cfg, |p| {
        let name = p.name().as_str();
        let had = existing
            .and_then(|t| find_block(t, name))
            .map_or(0, |b| b.1);
        p.slots.max(had).max(table.highest_used(name))
    })
}

/// Problems that keep `text` (haproxy.cfg) from working with the agent, each with what
/// to do. With `[haproxy] pools_config`, the slot blocks are checked in that file
/// ([`check_pools_file`]) and haproxy.cfg must leave the pools' backends to it.
pub fn check(cfg: &AgentConfig, text: &str) -> Vec<String> {
    let path = cfg.haproxy.config.display().to_string();
    let mut problems = Vec::new();
    match &cfg.haproxy.pools_config {
        None => {
            problems.extend(check_blocks(cfg, &path, text));
            problems.extend(check_state_lines(cfg, &path, text));
        }
        Some(own) => {
            for p in &cfg.pools {
                let defined = text.lines().any(|l| {
                    section_of(l).is_some_and(|(kw, name)| {
                        matches!(kw, "backend" | "listen") && name == Some(p.name().as_str())
                    })
                });
                if defined {
                    problems.push(format!("{path}: defines backend {}, which the agent keeps in {} ([haproxy] pools_config): HAProxy refuses two backends of one name; remove it from {path} (route to it with `use_backend`/`default_backend` by name)", p.name(), own.display()));
                }
            }
        }
    }
    for p in &cfg.pools {
        if !p.pool.server_options.has_check() {
            problems.push(format!("pool {}: server_options has no `check`, so new members take traffic before anything proves them healthy; add `check`", p.name()));
        }
    }
    problems.extend(check_confinement(&path, text));
    problems.extend(check_metrics(cfg, &path, text));
    problems
}

/// Problems of the agent's own file of backends (`[haproxy] pools_config`).
pub fn check_pools_file(cfg: &AgentConfig, text: &str) -> Vec<String> {
    let path = cfg.haproxy.slots_file().display().to_string();
    check_blocks(cfg, &path, text)
}

/// Each pool's slot line in `text` (the file at `path`), and what it must hold.
fn check_blocks(cfg: &AgentConfig, path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for p in &cfg.pools {
        match find_block(text, p.name().as_str()) {
            None => problems.push(
                CfgError::MissingBlock {
                    path: path.to_string(),
                    pool: p.name().to_string(),
                    line: slot_line(p, p.slots),
                }
                .to_string(),
            ),
            Some((i, _)) => {
                let line = text.lines().nth(i).unwrap_or_default();
                for needed in ["slot.invalid:", "init-addr last,0.0.0.0", " disabled"] {
                    if !line.contains(needed) {
                        problems.push(format!("{path}:{}: the slot line of backend {} lacks `{}`: without it slots lose their address or take traffic on reload; use `{}`", i + 1, p.name(), needed.trim(), slot_line(p, p.slots)));
                    }
                }
            }
        }
    }
    problems
}

/// The server-state lines haproxy.cfg needs when it holds the slot blocks.
fn check_state_lines(cfg: &AgentConfig, path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let state = cfg.haproxy.server_state_path().display().to_string();
    if !text
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["server-state-file", &state])
    {
        problems.push(format!("{path}: the global section needs `server-state-file {state}` so slots keep their members across reloads and restarts"));
    }
    if !text.lines().any(|l| {
        l.trim_start()
            .starts_with("load-server-state-from-file global")
    }) {
        problems.push(format!(
            "{path}: the defaults section needs `load-server-state-from-file global`"
        ));
    }
    problems
}

/// Slot blocks smaller than the slot table uses (a template or a tool put back an older
/// size after the agent grew it), each with what happens and what to do. `text` is the
/// file that holds the slot blocks.
pub fn check_against_table(cfg: &AgentConfig, text: &str, table: &SlotTable) -> Vec<String> {
    let path = cfg.haproxy.slots_file().display().to_string();
    let mut out = Vec::new();
    for p in &cfg.pools {
        let name = p.name().as_str();
        let Some((i, declared)) = find_block(text, name) else {
            continue;
        };
        let top = table.highest_used(name);
        if top > declared {
            out.push(format!("{path}:{}: backend {name} declares {declared} slots but the slot table holds a member in {}: HAProxy's next reload or restart serves only the members in the first {declared} (the agent service grows the block back once it sees that reload); put back the `1-N` the agent wrote (at least `1-{top}`), or set [haproxy] pools_config so the agent keeps its backends in a file of its own", i + 1, slot_name(top)));
        }
    }
    out
}

/// What a configuration had better have, each with what to do: not needed for the agent
/// to work (existing configurations keep working), but HAProxy's own hardening.
pub fn advice(cfg: &AgentConfig, text: &str) -> Vec<String> {
    let path = cfg.haproxy.config.display().to_string();
    let r = &cfg.render;
    let mut out = Vec::new();
    let has = |kw: &[&str]| {
        text.lines().any(|l| {
            let words: Vec<&str> = l
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            words.starts_with(kw)
        })
    };
    if !has(&["timeout", "http-request"]) {
        out.push(format!("{path}: no `timeout http-request`: a client may take the whole client timeout to send a request head (slowloris); add `timeout http-request {}s` to defaults (agent.toml [render] http_request_timeout_s)", r.http_request_timeout_s));
    }
    if !global_lines(text)
        .iter()
        .any(|w| w.first() == Some(&"hard-stop-after"))
    {
        out.push(format!("{path}: no `hard-stop-after`: after each reload (growth past the slots) old workers keep long sessions for ever; add `hard-stop-after {}s` to global (agent.toml [render] hard_stop_after_s)", r.hard_stop_after_s));
    }
    out
}

/// The keywords of the global section, one list of words per line (comments dropped).
fn global_lines(text: &str) -> Vec<Vec<&str>> {
    let mut in_global = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some((kw, _)) = section_of(line) {
            in_global = kw == "global";
            continue;
        }
        let code = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = code.split_whitespace().collect();
        if in_global && !words.is_empty() {
            out.push(words);
        }
    }
    out
}

/// What a configuration lacks to run HAProxy's workers unprivileged, chrooted and
/// logging.
fn check_confinement(path: &str, text: &str) -> Vec<String> {
    let global = global_lines(text);
    let has = |kws: &[&str]| {
        global
            .iter()
            .any(|w| w.first().is_some_and(|k| kws.contains(k)))
    };
    let mut problems = Vec::new();
    if !has(&["user", "uid"]) {
        problems.push(format!("{path}: the global section has no `user`: HAProxy's workers keep running as root; add `user haproxy` (agent.toml [render] user)"));
    }
    if !has(&["group", "gid"]) {
        problems.push(format!("{path}: the global section has no `group`: HAProxy's workers keep root's group; add `group haproxy` (agent.toml [render] group)"));
    }
    if !has(&["chroot"]) {
        problems.push(format!("{path}: the global section has no `chroot`: a compromised worker sees the whole file system; add `chroot /var/lib/haproxy` (agent.toml [render] chroot)"));
    }
    if !has(&["log"]) {
        problems.push(format!("{path}: the global section has no `log`: requests leave no trace; add `log /dev/log local0` (agent.toml [render] log), and `log global` with `option httplog` in defaults"));
    }
    problems
}

/// The frontend serving HAProxy's Prometheus exporter (agent.toml `[metrics] haproxy`).
pub const METRICS_FRONTEND: &str = "asg_metrics";

/// A `bind` address for `addr`, with its family spelled out (`ipv4@127.0.0.1:8405`,
/// `ipv6@::1:8405`), which HAProxy reads without brackets.
pub fn bind_addr(addr: &std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(a) => format!("ipv4@{a}"),
        std::net::SocketAddr::V6(a) => format!("ipv6@{}:{}", a.ip(), a.port()),
    }
}

/// The frontend that serves HAProxy's built-in Prometheus exporter at `addr`: `/metrics`
/// only (anything else is a 404), not logged (scrapes would drown the request log).
pub fn metrics_frontend(addr: &std::net::SocketAddr) -> String {
    let mut s = String::new();
    s.push_str(&format!("\nfrontend {METRICS_FRONTEND}\n"));
    s.push_str("    # HAProxy's own metrics for Prometheus (agent.toml [metrics] haproxy).\n");
    s.push_str(&format!("    bind {}\n", bind_addr(addr)));
    // Not `no log`: with the defaults' `option httplog` it warns `log format ignored
    // for frontend 'asg_metrics' since it has no log address` on every version.
    s.push_str("    http-request set-log-level silent\n");
    s.push_str("    http-request use-service prometheus-exporter if { path /metrics }\n");
    s.push_str("    http-request return status 404 content-type text/plain string \"not found: HAProxy's metrics are at /metrics\\n\"\n");
    s
}

/// What a configuration lacks to serve HAProxy's exporter at agent.toml's `[metrics]
/// haproxy` address.
fn check_metrics(cfg: &AgentConfig, path: &str, text: &str) -> Vec<String> {
    let Some(addr) = cfg.metrics.haproxy else {
        return Vec::new();
    };
    let bind = bind_addr(&addr);
    let binds = text.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.first() == Some(&"bind")
            && w.get(1)
                .is_some_and(|a| *a == bind || *a == addr.to_string())
    });
    let exports = text.lines().any(|l| {
        l.split('#')
            .next()
            .unwrap_or_default()
            .contains("use-service prometheus-exporter")
    });
    if binds && exports {
        return Vec::new();
    }
    vec![format!("{path}: agent.toml's [metrics] haproxy = \"{addr}\" but no frontend binds it with `http-request use-service prometheus-exporter if {{ path /metrics }}`; add this (or generate the file with `agent config render`):{}", metrics_frontend(&addr).trim_end().replace('\n', "\n  "))]
}

/// The `stats socket` address form for an endpoint.
fn socket_addr(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => p.display().to_string(),
        Endpoint::Tcp(a) => format!("ipv4@{a}"),
    }
}

/// A complete haproxy.cfg for `cfg`: a frontend per pool with a `bind`, the admin
/// socket, and (unless `[haproxy] pools_config` puts them in the agent's own file,
/// [`render_pools`]) a backend per pool with its slot line at the initial size and the
/// server-state file.
pub fn render(cfg: &AgentConfig) -> String {
    let own_file = cfg.haproxy.pools_config.as_deref();
    let mut s = String::new();
    s.push_str("# Written by `agent config render` from the agent's agent.toml.\n");
    match own_file {
        None => s.push_str(
            "# Edit freely; the agent only rewrites the `1-N` of each `server-template slot` line.\n",
        ),
        Some(pools) => {
            s.push_str("# Yours to edit: the agent never writes it. The pools' backends are in\n");
            s.push_str(&format!(
                "# {}, which the agent writes: HAProxy loads both\n",
                pools.display()
            ));
            s.push_str(&format!(
                "# (`-f {} -f {}`; `agent config haproxy-dropin` does). Route to the pools\n",
                cfg.haproxy.config.display(),
                pools.display()
            ));
            s.push_str("# by name (`use_backend`, `default_backend`); define no backend of theirs here.\n");
        }
    }
    render_global(cfg, &mut s, own_file.is_none());
    render_defaults(cfg, &mut s, own_file.is_none());
    for p in &cfg.pools {
        if let Some(bind) = &p.bind {
            s.push_str(&format!("\nfrontend {}_in\n", p.name()));
            let proxy = if cfg.render.accept_proxy {
                " accept-proxy"
            } else {
                ""
            };
            s.push_str(&format!("    bind {bind}{proxy}\n"));
            s.push_str("    # httplog's fields, then the instance that served the request (the agent keeps\n");
            s.push_str("    # the map of slot to instance in step; `-`: no member served it).\n");
            s.push_str(&format!("    log-format \"{}\"\n", http_log_format(cfg)));
            s.push_str(&format!("    default_backend {}\n", p.name()));
        }
        if own_file.is_none() {
            s.push_str(&backend_section(p, p.slots, None));
        }
    }
    if let Some(addr) = &cfg.metrics.haproxy {
        s.push_str(&metrics_frontend(addr));
    }
    s
}

fn render_global(cfg: &AgentConfig, s: &mut String, state_file: bool) {
    s.push_str("global\n");
    // `expose-fd listeners`: a new HAProxy started by hand (`-sf <pid> -x <this socket>`)
    // takes the listening sockets over instead of binding its own, so no connection
    // waiting in the old one's accept queue is reset.
    s.push_str(&format!(
        "    stats socket {} mode 600 level admin expose-fd listeners\n",
        socket_addr(&cfg.haproxy.admin_socket)
    ));
    s.push_str("    stats timeout 30s\n");
    if state_file {
        s.push_str(&format!(
            "    server-state-file {}\n",
            cfg.haproxy.server_state_path().display()
        ));
    }
    let r = &cfg.render;
    if r.user.is_some() || r.group.is_some() || r.chroot.is_some() {
        s.push_str(
            "    # The master (root) opens the sockets and reads the server-state and map files;\n",
        );
        s.push_str("    # then the workers drop to this user and group inside the chroot.\n");
    }
    if let Some(u) = &r.user {
        s.push_str(&format!("    user {u}\n"));
    }
    if let Some(g) = &r.group {
        s.push_str(&format!("    group {g}\n"));
    }
    if let Some(c) = &r.chroot {
        s.push_str(&format!("    chroot {}\n", c.display()));
    }
    s.push_str(&format!("    log {} local0\n", r.log));
    s.push_str(
        "    # Old workers keep their sessions this long after a reload (agent.toml [render]).\n",
    );
    s.push_str(&format!("    hard-stop-after {}s\n", r.hard_stop_after_s));
}

fn render_defaults(cfg: &AgentConfig, s: &mut String, state_file: bool) {
    s.push_str("\ndefaults\n");
    // Every pool is HTTP today: a TCP pool would take `mode tcp` and `option tcplog`.
    s.push_str("    mode http\n");
    s.push_str("    log global\n");
    s.push_str("    option httplog\n");
    s.push_str("    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n");
    s.push_str("    timeout http-keep-alive 10s\n");
    s.push_str(
        "    # A request head must arrive within this (slow clients; agent.toml [render]).\n",
    );
    s.push_str(&format!(
        "    timeout http-request {}s\n",
        cfg.render.http_request_timeout_s
    ));
    s.push_str(
        "    # A slot that was ready but failing checks comes back UP after a reload until its\n",
    );
    s.push_str("    # first failed check; retrying elsewhere keeps those requests from failing.\n");
    s.push_str("    retries 2\n    option redispatch 1\n");
    if state_file {
        s.push_str("    load-server-state-from-file global\n");
    }
}

/// One pool's backend: balance, the variable naming the slot that served, the health
/// check, the slot line with `n` slots. `state_file`: in the agent's own file, the
/// server-state file each backend loads by itself (`local`), so the operator's
/// haproxy.cfg needs no line for it.
fn backend_section(p: &PoolConfig, n: u32, state_file: Option<&std::path::Path>) -> String {
    let mut s = String::new();
    s.push_str(&format!("\nbackend {}\n", p.name()));
    s.push_str(&format!("    balance {}\n", p.balance));
    if let Some(path) = state_file {
        s.push_str("    load-server-state-from-file local\n");
        s.push_str(&format!("    server-state-file-name {}\n", path.display()));
    }
    s.push_str("    # The slot that served (<pool>/slot<N>), for the log line's instance.\n");
    s.push_str(&format!(
        "    http-after-response set-var-fmt({SLOT_VAR}) \"%b/%s\"\n"
    ));
    if let Some(path) = &p.health_path {
        s.push_str(&format!("    option httpchk GET {path}\n"));
        s.push_str("    http-check expect status 200\n");
    }
    s.push_str(&format!("    {}\n", slot_line(p, n)));
    s
}

/// The agent's own file of the pools' backends (`[haproxy] pools_config`), each slot
/// block of `size(pool)` slots. Written by the agent service; HAProxy loads it after
/// haproxy.cfg.
pub fn render_pools(cfg: &AgentConfig, size: impl Fn(&PoolConfig) -> u32) -> String {
    let mut s = String::new();
    s.push_str(
        "# Written by the haproxy-asg agent from agent.toml ([[pool]]): do not edit, it is\n",
    );
    s.push_str("# rewritten. The slot blocks grow with the pools; HAProxy loads this file after\n");
    s.push_str(&format!(
        "# {} (a second -f).\n",
        cfg.haproxy.config.display()
    ));
    let state = cfg.haproxy.server_state_path();
    for p in &cfg.pools {
        s.push_str(&backend_section(p, size(p), Some(&state)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_own_file() -> AgentConfig {
        let mut c = cfg();
        c.haproxy.pools_config = Some("/etc/haproxy/haproxy-asg.cfg".into());
        c
    }

    #[test]
    fn with_a_file_of_its_own_the_agent_leaves_haproxy_cfg_to_the_operator() {
        let c = with_own_file();
        let ours = render(&c);
        assert!(!ours.contains("\nbackend "), "{ours}");
        assert!(!ours.contains("server-state-file"), "{ours}");
        assert!(ours.contains("default_backend web"), "{ours}");
        assert!(ours.contains("-f /etc/haproxy/haproxy.cfg -f /etc/haproxy/haproxy-asg.cfg"));
        assert!(check(&c, &ours).is_empty(), "{:?}", check(&c, &ours));
        let pools = pools_file(&c, None, &SlotTable::default());
        assert!(check_pools_file(&c, &pools).is_empty(), "{pools}");
        for line in [
            "\nbackend web\n",
            "    load-server-state-from-file local\n",
            "    server-state-file-name /var/lib/asg/server-state\n",
            "    server-template slot 1-4 slot.invalid:8080 ",
            "    server-template slot 1-8 slot.invalid:9000 ",
        ] {
            assert!(pools.contains(line), "{line:?} in\n{pools}");
        }
        // A grown block stays grown; a pool's backend left in haproxy.cfg is named.
        let grown = set_slots(&pools, "web", 32).unwrap();
        let again = pools_file(&c, Some(&grown), &SlotTable::default());
        assert_eq!(find_block(&again, "web").map(|b| b.1), Some(32));
        let p = check(&c, &render(&cfg()));
        assert!(
            p.iter().any(|m| m.contains(
                "defines backend web, which the agent keeps in /etc/haproxy/haproxy-asg.cfg"
            )),
            "{p:?}"
        );
    }

    #[test]
    fn a_block_smaller_than_the_table_is_named_with_the_fix() {
        let c = cfg();
        let text = render(&c);
        let mut table = SlotTable::default();
        let t = table.pools.entry("web".into()).or_default();
        t.members.insert(
            infra::MemberId::new("i-9").unwrap(),
            crate::slots::Entry {
                slot: 9,
                address: [10, 0, 0, 9].into(),
                port: infra::Port::new(8080).unwrap(),
                generation: 1,
                state: crate::slots::EntryState::Up,
                op: None,
                zone: None,
                weight: None,
                touched: 0,
            },
        );
        let p = check_against_table(&c, &text, &table);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("backend web declares 4 slots")
                && p[0].contains("slot9")
                && p[0].contains("1-9"),
            "{}",
            p[0]
        );
        let grown = set_slots(&text, "web", 16).unwrap();
        assert!(check_against_table(&c, &grown, &table).is_empty());
    }

    fn cfg() -> AgentConfig {
        AgentConfig::parse(
            r#"
[haproxy]
config = "/etc/haproxy/haproxy.cfg"
admin_socket = "/run/admin.sock"
state_dir = "/var/lib/asg"
[render]
accept_proxy = true
[[pool]]
name = "web"
port = 8080
bind = ":80"
slots = 4
health_path = "/healthz"
[[pool]]
name = "api"
port = 9000
slots = 8
"#,
        )
        .unwrap()
    }

    #[test]
    fn hardening_is_rendered_and_its_absence_is_advised_not_refused() {
        let c = cfg();
        let text = render(&c);
        assert!(text.contains("    hard-stop-after 3600s\n"), "{text}");
        assert!(text.contains("    timeout http-request 10s\n"), "{text}");
        assert!(advice(&c, &text).is_empty(), "{:?}", advice(&c, &text));
        // An older configuration without them still works; `config check` warns.
        let old: String = text
            .lines()
            .filter(|l| !l.contains("hard-stop-after") && !l.contains("timeout http-request"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(check(&c, &old).is_empty(), "{:?}", check(&c, &old));
        let a = advice(&c, &old).join("\n");
        assert!(
            a.contains("timeout http-request 10s") && a.contains("hard-stop-after 3600s"),
            "{a}"
        );
    }

    #[test]
    fn a_rendered_config_passes_its_own_check() {
        let c = cfg();
        let text = render(&c);
        assert!(check(&c, &text).is_empty(), "{:?}", check(&c, &text));
        assert!(text.contains("bind :80 accept-proxy"));
        assert!(text.contains("server-state-file /var/lib/asg/server-state"));
        assert_eq!(
            find_block(&text, "web"),
            Some((
                text.lines()
                    .position(|l| l.contains("server-template slot 1-4"))
                    .unwrap(),
                4
            ))
        );
        assert_eq!(find_block(&text, "api").map(|b| b.1), Some(8));
        assert_eq!(find_block(&text, "nope"), None);
    }

    #[test]
    fn the_haproxy_exporter_frontend_is_rendered_only_when_asked_and_checked() {
        let c = cfg();
        let text = render(&c);
        assert!(!text.contains("prometheus-exporter"), "off by default");
        let with = |addr: &str| {
            let mut c = cfg();
            c.metrics.haproxy = Some(addr.parse().unwrap());
            c
        };
        let c4 = with("127.0.0.1:8405");
        let text = render(&c4);
        assert!(check(&c4, &text).is_empty(), "{:?}", check(&c4, &text));
        let fe = text.split("frontend asg_metrics\n").nth(1).unwrap();
        for line in [
            "    bind ipv4@127.0.0.1:8405\n",
            "    http-request set-log-level silent\n",
            "    http-request use-service prometheus-exporter if { path /metrics }\n",
            "    http-request return status 404 ",
        ] {
            assert!(fe.contains(line), "{line:?} in\n{fe}");
        }
        let c6 = with("[::1]:8405");
        assert!(render(&c6).contains("    bind ipv6@::1:8405\n"));
        // A configuration without it: check says what to add.
        let problems = check(&c4, &render(&c));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("[metrics] haproxy = \"127.0.0.1:8405\"")
                && problems[0].contains("bind ipv4@127.0.0.1:8405"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_rendered_config_is_confined_and_logs_the_instance() {
        let text = render(&cfg());
        let global: Vec<String> = global_lines(&text).iter().map(|w| w.join(" ")).collect();
        for line in [
            "user haproxy",
            "group haproxy",
            "chroot /var/lib/haproxy",
            "log /dev/log local0",
        ] {
            assert!(global.iter().any(|l| l == line), "{line}: {global:?}");
        }
        assert!(
            text.contains("\n    log global\n    option httplog\n"),
            "{text}"
        );
        assert!(text.contains("instance=%[var(txn.asg_slot),map(/var/lib/asg/instances.map,-)]\""));
        assert!(text.contains(&format!("log-format \"{HTTPLOG_FORMAT} instance=")));
        // Every pool's backend names its slot, frontend or not.
        assert_eq!(
            text.matches("http-after-response set-var-fmt(txn.asg_slot) \"%b/%s\"")
                .count(),
            2
        );
    }

    #[test]
    fn render_keys_change_or_drop_the_confinement_lines() {
        let mut c = cfg();
        c.render.user = Some("www".into());
        c.render.group = None;
        c.render.chroot = None;
        c.render.log = crate::config::LogTarget::parse("127.0.0.1:5514").unwrap();
        let text = render(&c);
        assert!(text.contains("    user www\n"));
        assert!(!text.contains("    group "));
        assert!(!text.contains("    chroot "));
        assert!(text.contains("    log 127.0.0.1:5514 local0\n"));
        let p = check(&c, &text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("no `group`") && p[1].contains("no `chroot`"),
            "{p:?}"
        );
    }

    #[test]
    fn check_names_missing_confinement() {
        let c = cfg();
        let text = render(&c);
        for (drop, says) in [
            ("    user haproxy\n", "no `user`"),
            ("    group haproxy\n", "no `group`"),
            ("    chroot /var/lib/haproxy\n", "no `chroot`"),
            ("    log /dev/log local0\n", "no `log`"),
        ] {
            let p = check(&c, &text.replace(drop, ""));
            assert_eq!(p.len(), 1, "{drop}: {p:?}");
            assert!(p[0].contains(says), "{p:?}");
        }
        // `uid`/`gid` do as well; a commented-out line or one outside global does not.
        let alt = text
            .replace("    user haproxy\n", "    uid 102\n")
            .replace("    group haproxy\n", "    gid 105\n");
        assert!(check(&c, &alt).is_empty(), "{:?}", check(&c, &alt));
        let commented = text.replace(
            "    chroot /var/lib/haproxy\n",
            "    # chroot /var/lib/haproxy\n",
        );
        assert!(check(&c, &commented)
            .iter()
            .any(|m| m.contains("no `chroot`")));
        let moved = text
            .replace("    log /dev/log local0\n", "")
            .replace("defaults\n", "defaults\n    log /dev/log local0\n");
        assert!(check(&c, &moved).iter().any(|m| m.contains("no `log`")));
    }

    #[test]
    fn resizing_touches_only_that_pools_line() {
        let text = render(&cfg());
        let grown = set_slots(&text, "web", 32).unwrap();
        assert_eq!(find_block(&grown, "web").unwrap().1, 32);
        assert_eq!(find_block(&grown, "api").unwrap().1, 8);
        let diff: Vec<_> = text
            .lines()
            .zip(grown.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(diff.len(), 1);
        assert!(diff[0]
            .1
            .starts_with("    server-template slot 1-32 slot.invalid:8080"));
        assert!(set_slots(&text, "nope", 3).is_none());
    }

    #[test]
    fn a_tab_separated_slot_line_is_read_and_resized_in_place() {
        let text = "backend web\n\tserver-template\tslot\t1-4\tslot.invalid:80 init-addr last,0.0.0.0 disabled check\n";
        assert_eq!(find_block(text, "web"), Some((1, 4)));
        let grown = set_slots(text, "web", 8).unwrap();
        assert_eq!(
            grown,
            "backend web\n\tserver-template\tslot\t1-8\tslot.invalid:80 init-addr last,0.0.0.0 disabled check\n"
        );
        assert_eq!(find_block(&grown, "web"), Some((1, 8)));
    }

    #[test]
    fn check_names_what_is_missing() {
        let c = cfg();
        let text = render(&c).replace(
            "server-template slot 1-8 slot.invalid:9000",
            "server-template slot 1-8 0.0.0.0:9000",
        );
        let p = check(&c, &text);
        assert!(
            p.iter()
                .any(|m| m.contains("backend api") && m.contains("slot.invalid")),
            "{p:?}"
        );
        let text = render(&c).replace("    server-state-file /var/lib/asg/server-state\n", "");
        assert!(check(&c, &text)
            .iter()
            .any(|m| m.contains("server-state-file")));
    }

    #[test]
    fn slot_names_round_trip() {
        assert_eq!(slot_name(12), "slot12");
        assert_eq!(slot_number("slot12"), Some(12));
        assert_eq!(slot_number("web1"), None);
    }

    #[test]
    fn static_balance_algorithms_are_named_and_dynamic_ones_pass() {
        let backend = |lines: &str| {
            format!("defaults\n    mode http\n\nbackend web\n{lines}\n    server-template slot 1-4 slot.invalid:80 init-addr last,0.0.0.0 disabled check\n\nbackend other\n    balance static-rr\n")
        };
        for dynamic in [
            "    balance roundrobin",
            "    balance leastconn",
            "    balance first",
            "    balance random",
            "    balance source\n    hash-type consistent",
            "    balance hdr(host)\n    hash-type consistent sdbm avalanche",
            "",
        ] {
            assert_eq!(static_balance(&backend(dynamic), "web"), None, "{dynamic}");
        }
        for (fixed, words) in [
            ("    balance static-rr", "static-rr"),
            ("    balance source", "map-based"),
            ("    balance uri whole", "map-based"),
            ("    balance hdr(host)", "map-based"),
            ("    balance source\n    hash-type map-based", "map-based"),
        ] {
            let why = static_balance(&backend(fixed), "web").unwrap_or_default();
            assert!(
                why.contains(words) && why.contains("backend web"),
                "{fixed}: {why}"
            );
        }
        // The defaults' balance holds unless the backend says otherwise.
        let text =
            "defaults\n    balance static-rr\n\nbackend web\n    server-template slot 1-4 x\n";
        assert!(static_balance(text, "web").is_some());
        let text = "defaults\n    balance static-rr\n\nbackend web\n    balance roundrobin\n";
        assert_eq!(static_balance(text, "web"), None);
        // A backend the text does not have: nothing to say.
        assert_eq!(static_balance(text, "api"), None);
    }

    #[test]
    fn config_check_says_which_pools_grow_with_a_reload_and_why() {
        use crate::haproxy::Version;
        let mut c = cfg();
        let text = render(&c);
        let v26 = Version::parse("2.6.12-1+deb12u4").unwrap();
        let v30 = Version::parse("3.0.11-9e587df").unwrap();
        let notes = growth_notes(&c, Some(&text), Ok(&v26));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains(
                "HAProxy 2.6.12-1+deb12u4 grows a pool past its slots with a hitless reload"
            ),
            "{notes:?}"
        );
        assert!(growth_notes(&c, Some(&text), Ok(&v30)).is_empty());
        c.pools[0].balance = "static-rr".into();
        c.pools[0].pool.server_options = infra::ServerOptions::new("check resolvers dns").unwrap();
        let notes = growth_notes(&c, Some(&render(&c)), Ok(&v30));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("balance static-rr"), "{notes:?}");
        assert!(notes[1].contains("resolvers"), "{notes:?}");
        let notes = growth_notes(&c, None, Err("no haproxy".into()));
        assert!(notes[0].contains("cannot tell"), "{notes:?}");
    }
}
