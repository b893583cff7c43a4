//! Parsers for HAProxy's `show stat`, `show servers state`, `show proc`, `show map`,
//! `show info` (its version) and the master's `reload` answers.
//!
//! Columns are found by their header names, not by position, so an HAProxy that adds
//! columns does not shift what is read.

use std::collections::HashMap;

/// One server line of `show servers state` (format version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Backend name.
    pub backend: String,
    /// Server (slot) name.
    pub server: String,
    /// Current address (`0.0.0.0` for a never-used slot).
    pub addr: String,
    /// Current port.
    pub port: u16,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// `srv_admin_state` bitmask (HAProxy's `SRV_ADMF_*`): 0x01 forced maint, 0x02
    /// inherited maint, 0x04 "configured disabled" (a marker that stays set after
    /// `state ready`, not a maintenance by itself), 0x08/0x10 forced/inherited drain,
    /// 0x20 maint after a resolution failure.
    pub admin_state: u32,
    /// `srv_uweight`: the weight set at runtime (`set server ... weight`), or the
    /// configured one.
    pub uweight: u16,
    /// `srv_iweight`: the weight the configuration gave it (`weight` in the server
    /// options, else 1): what `weight 100%` goes back to.
    pub iweight: u16,
}

impl ServerState {
    /// In maintenance for any reason: takes no traffic, runs no checks.
    pub fn in_maint(&self) -> bool {
        // SRV_ADMF_MAINT: every maintenance flag except the configuration marker.
        self.admin_state & 0x23 != 0
    }

    /// Draining: keeps its connections, takes no new ones.
    pub fn draining(&self) -> bool {
        self.admin_state & (0x08 | 0x10) != 0
    }

    /// Running (UP or going down but still serving).
    pub fn running(&self) -> bool {
        self.op_state == 2
    }
}

/// Parses `show servers state [backend]`.
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some("1") => {}
        Some(other) => return Err(format!("server state format {other:?} is not version 1")),
        None => return Err("empty reply".into()),
    }
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or("missing `# be_id ...` header line")?;
    let cols: HashMap<&str, usize> = header
        .split_whitespace()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let col = |name: &str| {
        cols.get(name)
            .copied()
            .ok_or_else(|| format!("no {name} column"))
    };
    let (be, sv, addr, port, op, adm) = (
        col("be_name")?,
        col("srv_name")?,
        col("srv_addr")?,
        col("srv_port")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
    );
    let (uw, iw) = (
        cols.get("srv_uweight").copied(),
        cols.get("srv_iweight").copied(),
    );
    let mut out = Vec::new();
    for line in lines {
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("short line {line:?}"))
        };
        let weight = |i: Option<usize>| {
            i.and_then(|i| f.get(i))
                .and_then(|w| w.parse().ok())
                .unwrap_or(1)
        };
        out.push(ServerState {
            backend: get(be)?.to_string(),
            server: get(sv)?.to_string(),
            addr: get(addr)?.to_string(),
            port: get(port)?
                .parse()
                .map_err(|_| format!("bad port in {line:?}"))?,
            op_state: get(op)?
                .parse()
                .map_err(|_| format!("bad op state in {line:?}"))?,
            admin_state: get(adm)?
                .parse()
                .map_err(|_| format!("bad admin state in {line:?}"))?,
            uweight: weight(uw),
            iweight: weight(iw),
        });
    }
    Ok(out)
}

/// One server row of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatRow {
    /// Backend name.
    pub backend: String,
    /// Server name.
    pub server: String,
    /// Current sessions.
    pub scur: u64,
    /// Queued requests.
    pub qcur: u64,
    /// Total sessions served.
    pub stot: u64,
    /// `UP`, `DOWN`, `MAINT`, `DRAIN`, `UP 1/2`, `no check`...
    pub status: String,
    /// Last check result (`L4OK`, `L4CON`, `L7STS`, `INI`...).
    pub check_status: String,
    /// Last check's description (HAProxy 2.x `last_chk`).
    pub last_chk: String,
    /// `addr:port`.
    pub addr: String,
}

impl StatRow {
    /// Passing health checks and taking traffic (or ready with checks disabled).
    pub fn is_up(&self) -> bool {
        self.status == "UP" || self.status.starts_with("UP ") || self.status == "no check"
    }

    /// Passing its health checks, whether it takes new traffic or is drained
    /// (`DRAIN`: running, admin-drained; a member joining into a zone taken away).
    pub fn passes_checks(&self) -> bool {
        self.is_up() || self.status == "DRAIN" || self.status.starts_with("DRAIN ")
    }

    /// A short description of the last check, for messages.
    pub fn check_summary(&self) -> String {
        match (self.check_status.as_str(), self.last_chk.as_str()) {
            ("", "") => self.status.clone(),
            (s, "") => s.to_string(),
            (s, d) => format!("{s} {d}"),
        }
    }
}

/// Parses `show stat` CSV, keeping server rows only.
pub fn parse_stat(text: &str) -> Result<Vec<StatRow>, String> {
    let mut lines = text.lines();
    let header = lines
        .find(|l| l.starts_with("# "))
        .ok_or("missing `# pxname,...` header")?;
    let cols: HashMap<&str, usize> = header[2..]
        .split(',')
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let idx = |n: &str| cols.get(n).copied();
    let need = |n: &str| idx(n).ok_or_else(|| format!("no {n} column"));
    let (px, sv, scur, qcur, stot, status) = (
        need("pxname")?,
        need("svname")?,
        need("scur")?,
        need("qcur")?,
        need("stot")?,
        need("status")?,
    );
    let (chk, last, addr) = (idx("check_status"), idx("last_chk"), idx("addr"));
    let mut out = Vec::new();
    for line in lines {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let s = |i: Option<usize>| i.and_then(|i| f.get(i)).copied().unwrap_or("").to_string();
        let n = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0u64);
        let name = s(Some(sv));
        if name == "FRONTEND" || name == "BACKEND" {
            continue;
        }
        out.push(StatRow {
            backend: s(Some(px)),
            server: name,
            scur: n(scur),
            qcur: n(qcur),
            stot: n(stot),
            status: s(Some(status)),
            check_status: s(chk).trim_start_matches(['*', ' ']).to_string(),
            last_chk: s(last),
            addr: s(addr),
        });
    }
    Ok(out)
}

/// The master's view of its processes (`show proc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// The master's reload count.
    pub reloads: u64,
    /// Reloads that failed (bad configuration; the old worker kept serving).
    pub failed: u64,
    /// Workers: (pid, reloads survived). The newest has 0.
    pub workers: Vec<(u32, u64)>,
}

impl ProcInfo {
    /// The serving worker's pid: the newest, the one that survived the fewest reloads
    /// (0 after a successful reload; after a failed one the worker still serving has
    /// survived it, 1, and the old ones more).
    pub fn current_worker(&self) -> Option<u32> {
        self.workers.iter().min_by_key(|w| w.1).map(|w| w.0)
    }
}

/// Parses `show proc`. Every version lists the master, then `# workers`; a worker's
/// `<reloads>` is how many reloads it survived (the current one 0, but 1 after a failed
/// reload, on every version). 2.6 to 3.0 end with `# programs`; 3.1+ list the workers
/// left from earlier reloads (and, after a failed reload, the one still serving) under
/// `# old workers` instead, and have no `# programs`. Worker lines read the same in
/// either section.
pub fn parse_proc(text: &str) -> Result<ProcInfo, String> {
    let mut reloads = None;
    let mut failed = 0;
    let mut workers = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.get(1).copied() {
            Some("master") => {
                reloads = f.get(2).and_then(|v| v.parse().ok());
                if let Some(i) = f.iter().position(|w| *w == "[failed:") {
                    failed = f
                        .get(i + 1)
                        .map(|v| v.trim_end_matches(']'))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
            }
            Some("worker") => {
                if let (Some(pid), Some(r)) = (
                    f.first().and_then(|v| v.parse().ok()),
                    f.get(2).and_then(|v| v.parse().ok()),
                ) {
                    workers.push((pid, r));
                }
            }
            _ => {}
        }
    }
    Ok(ProcInfo {
        reloads: reloads.ok_or_else(|| format!("no master line in {text:?}"))?,
        failed,
        workers,
    })
}

/// What the master CLI's `reload` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadAnswer {
    /// HAProxy 2.6 answers nothing at once (the reload runs after the connection
    /// closed): only `show proc` tells how it went.
    Unconfirmed,
    /// 2.8 and later answer once the new worker is up or failed: `Success=1`, `--`,
    /// then the start-up log. The new worker is serving.
    Succeeded {
        /// The start-up log (`[NOTICE] ... Loading success.` ...).
        log: String,
    },
    /// `Success=0`: the new configuration did not load; the old worker keeps serving.
    Failed {
        /// HAProxy's reasons (`[ALERT] ... config : parsing [...] : ...`).
        log: String,
    },
}

/// Parses the master's answer to `reload`:
/// - 2.6: empty;
/// - 2.8+: `Success=1` or `Success=0`, a `--` line, then the new worker's start-up log
///   (on 3.0.11: `[NOTICE]   (2151) : New worker (2178) forked`, `Loading success.`;
///   on failure the `[ALERT]` lines and `[WARNING] ... Loading failure!`).
pub fn parse_reload(text: &str) -> Result<ReloadAnswer, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(ReloadAnswer::Unconfirmed);
    }
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let log = rest
        .trim_start()
        .strip_prefix("--")
        .unwrap_or(rest)
        .trim()
        .to_string();
    match first.trim() {
        "Success=1" => Ok(ReloadAnswer::Succeeded { log }),
        "Success=0" => Ok(ReloadAnswer::Failed { log }),
        _ => Err(format!("neither empty nor `Success=0|1`: {text:?}")),
    }
}

/// The HAProxy a socket answers for (`show info`'s `Version:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// As HAProxy writes it: `2.6.12-1+deb12u4`, `3.0.11-9e587df`, `3.2.26-1`.
    pub text: String,
    /// The branch: (2, 6), (3, 0), (3, 2)...
    pub branch: (u32, u32),
}

impl Version {
    /// Reads a version string (`3.0.11-9e587df`, `2.6.12-1+deb12u4`, `3.3-dev4`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = text.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self {
            text: text.to_string(),
            branch: (major, minor),
        })
    }

    /// `major.minor`.
    pub fn branch_text(&self) -> String {
        format!("{}.{}", self.branch.0, self.branch.1)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses `show info` for its `Version:` line.
pub fn parse_info_version(text: &str) -> Result<Version, String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .ok_or_else(|| format!("no `Version:` line in {:?}", text.trim()))?;
    Version::parse(line).ok_or_else(|| format!("unreadable version {:?}", line.trim()))
}

/// Parses `haproxy -v`'s first line (`HAProxy version 3.0.11-9e587df 2025/06/02 -
/// https://haproxy.org/`) for its version.
pub fn parse_binary_version(text: &str) -> Result<Version, String> {
    let word = text
        .lines()
        .find_map(|l| l.strip_prefix("HAProxy version "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("no `HAProxy version` line in {:?}", text.trim()))?;
    Version::parse(word).ok_or_else(|| format!("unreadable version {word:?}"))
}

/// Parses `show map <file>`: one `0x<entry address> <key> <value>` line per entry.
/// Anything else is HAProxy refusing the command, returned as its words.
pub fn parse_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut w = line.splitn(3, ' ');
        match (w.next(), w.next(), w.next()) {
            (Some(ptr), Some(key), Some(value)) if ptr.starts_with("0x") => {
                out.push((key.to_string(), value.to_string()));
            }
            _ => return Err(text.trim().to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_entries_parse_and_refusals_are_errors() {
        let text = "0x557173c6aaa0 web/slot1 i-one\n0x7fada404c500 api/slot7 i-7\n\n";
        assert_eq!(
            parse_map(text).unwrap(),
            vec![
                ("web/slot1".to_string(), "i-one".to_string()),
                ("api/slot7".to_string(), "i-7".to_string())
            ]
        );
        assert!(parse_map("\n").unwrap().is_empty());
        assert_eq!(
            parse_map("Unknown map identifier. Please use #<id> or <file>.\n\n").unwrap_err(),
            "Unknown map identifier. Please use #<id> or <file>."
        );
    }

    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 web 1 slot1 127.0.0.9 2 0 1 1 2 1 0 0 14 0 0 0 slot.invalid 9999 - 0 0 - - 0\n3 web 2 slot2 0.0.0.0 0 5 1 1 2 1 0 0 14 0 0 0 slot.invalid 80 - 0 0 - - 0\n\n";

    #[test]
    fn servers_state_is_read_by_column_name() {
        let s = parse_servers_state(STATE).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].addr, "127.0.0.9");
        assert_eq!(s[0].port, 9999);
        assert!(s[0].running() && !s[0].in_maint());
        assert!(s[1].in_maint());
        assert!(parse_servers_state("2\n").is_err());
    }

    #[test]
    fn stat_rows_skip_frontends_and_backends() {
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,check_status,last_chk,addr\nf,FRONTEND,,,0,0,,0,OPEN,,,\nweb,slot1,0,0,3,3,,10,UP,L4OK,,127.0.0.9:9999\nweb,slot2,1,0,0,0,,0,DOWN,* L4CON,Connection refused,127.0.0.10:1\nweb,BACKEND,0,0,3,3,,10,UP,,,\n\n";
        let rows = parse_stat(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].scur, 3);
        assert!(rows[0].is_up());
        assert!(!rows[1].is_up());
        assert_eq!(rows[1].qcur, 1);
        assert_eq!(rows[1].check_summary(), "L4CON Connection refused");
    }

    // `show proc` of each version, captured from the real binaries: after a reload,
    // then after a failed reload (the serving worker then has 1 reload).
    const PROC_2_6: [&str; 2] = [
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n539             master          1 [failed: 0]   0d00h00m01s     2.6.12-1+deb12u4\n# workers\n549             worker          0               0d00h00m00s     2.6.12-1+deb12u4\n# programs\n\n",
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n539             master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4\n# workers\n549             worker          1               0d00h00m01s     2.6.12-1+deb12u4\n# programs\n\n",
    ];
    const PROC_3_0: [&str; 2] = [
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n2151            master          1 [failed: 0]   0d00h00m01s     3.0.11-9e587df \n# workers\n2178            worker          0               0d00h00m01s     3.0.11-9e587df \n# programs\n\n",
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n2151            master          2 [failed: 1]   0d00h00m02s     3.0.11-9e587df \n# workers\n2178            worker          1               0d00h00m02s     3.0.11-9e587df \n# programs\n\n",
    ];
    const PROC_3_2: [&str; 2] = [
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n3488            master          1 [failed: 0]   0d00h00m01s     3.2.26-1       \n# workers\n3501            worker          0               0d00h00m01s     3.2.26-1       \n\n",
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n3488            master          2 [failed: 1]   0d00h00m01s     3.2.26-1       \n# workers\n# old workers\n3501            worker          1               0d00h00m01s     3.2.26-1       \n\n",
    ];

    #[test]
    fn proc_reads_the_same_on_every_version() {
        for (version, [reloaded, failed], worker) in [
            ("2.6", PROC_2_6, 549),
            ("3.0", PROC_3_0, 2178),
            ("3.2", PROC_3_2, 3501),
        ] {
            let p = parse_proc(reloaded).unwrap();
            assert_eq!((p.reloads, p.failed), (1, 0), "{version}");
            assert_eq!(p.current_worker(), Some(worker), "{version}");
            let p = parse_proc(failed).unwrap();
            assert_eq!((p.reloads, p.failed), (2, 1), "{version}");
            assert_eq!(p.workers, vec![(worker, 1)], "{version}");
            // The worker that kept serving through the failed reload.
            assert_eq!(p.current_worker(), Some(worker), "{version}");
        }
    }

    #[test]
    fn reload_answers_of_every_version() {
        // 2.6.12: nothing, at once.
        assert_eq!(parse_reload("").unwrap(), ReloadAnswer::Unconfirmed);
        // 3.0.11 (2.8 answers the same way), once the new worker is up.
        let ok = "Success=1\n--\n[NOTICE]   (2151) : New worker (2178) forked\n[NOTICE]   (2151) : Loading success.\n[NOTICE]   (2151) : haproxy version is 3.0.11-9e587df\n[NOTICE]   (2151) : path to executable is /root/.cache/haproxy-asg/haproxy/3.0/bin/haproxy\n[WARNING]  (2151) : Former worker (2153) exited with code 0 (Exit)\n\n";
        match parse_reload(ok).unwrap() {
            ReloadAnswer::Succeeded { log } => {
                assert!(log.starts_with("[NOTICE]   (2151) : New worker (2178) forked"));
            }
            other => panic!("{other:?}"),
        }
        let failed_3_0 = "Success=0\n--\n[NOTICE]   (2151) : haproxy version is 3.0.11-9e587df\n[NOTICE]   (2151) : path to executable is /root/.cache/haproxy-asg/haproxy/3.0/bin/haproxy\n[ALERT]    (2151) : config : parsing [/tmp/cap24-tsd2jo6w/haproxy.cfg:13] : unknown keyword 'bogus' in 'backend' section\n[ALERT]    (2151) : config : Error(s) found in configuration file : /tmp/cap24-tsd2jo6w/haproxy.cfg\n[ALERT]    (2151) : config : Fatal errors found in configuration.\n[WARNING]  (2151) : Loading failure!\n\n";
        // 3.2.26: the new worker parses the file itself and says so.
        let ok_3_2 = "Success=1\n--\n[NOTICE]   (3488) : Initializing new worker (3501)\n[NOTICE]   (3488) : Loading success.\n[NOTICE]   (3488) : haproxy version is 3.2.26-1\n[NOTICE]   (3488) : path to executable is /root/.cache/haproxy-asg/haproxy/3.2/root/usr/sbin/haproxy\n[WARNING]  (3488) : Former worker (3493) exited with code 0 (Exit)\n\n";
        assert!(matches!(
            parse_reload(ok_3_2).unwrap(),
            ReloadAnswer::Succeeded { .. }
        ));
        let failed_3_2 = "Success=0\n--\n[NOTICE]   (3488) : Initializing new worker (3514)\n[NOTICE]   (3514) : haproxy version is 3.2.26-1\n[NOTICE]   (3514) : path to executable is /root/.cache/haproxy-asg/haproxy/3.2/root/usr/sbin/haproxy\n[ALERT]    (3514) : config : parsing [/tmp/cap24-af3h6cy2/haproxy.cfg:13] : unknown keyword 'bogus' in 'backend' section\n[ALERT]    (3514) : config : Error(s) found in configuration file : /tmp/cap24-af3h6cy2/haproxy.cfg\n[ALERT]    (3514) : config : Fatal errors found in configuration.\n[NOTICE]   (3488) : haproxy version is 3.2.26-1\n[NOTICE]   (3488) : path to executable is /root/.cache/haproxy-asg/haproxy/3.2/root/usr/sbin/haproxy\n[WARNING]  (3488) : Failed to load worker (3514) exited with code 1 (Exit)\n\n";
        for failed in [failed_3_0, failed_3_2] {
            match parse_reload(failed).unwrap() {
                ReloadAnswer::Failed { log } => {
                    assert!(
                        log.contains("unknown keyword 'bogus' in 'backend' section"),
                        "{log}"
                    );
                    assert!(!log.starts_with("--"));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(parse_reload("Unknown command: 'reload'\n").is_err());
    }

    #[test]
    fn versions_are_read_from_show_info() {
        for (info, text, branch) in [
            (
                "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nRelease_date: 2026/10/17\n",
                "2.6.12-1+deb12u4",
                (2, 6),
            ),
            (
                "Name: HAProxy\nVersion: 3.0.11-9e587df\nRelease_date: 2025/06/02\n",
                "3.0.11-9e587df",
                (3, 0),
            ),
            (
                "Name: HAProxy\nVersion: 3.2.26-1\nRelease_date: 2026/10/14\n",
                "3.2.26-1",
                (3, 2),
            ),
            ("Version: 3.3-dev4\n", "3.3-dev4", (3, 3)),
        ] {
            let v = parse_info_version(info).unwrap();
            assert_eq!((v.text.as_str(), v.branch), (text, branch));
        }
        assert!(parse_info_version("Name: HAProxy\n").is_err());
        assert!(parse_info_version("Version: banana\n").is_err());
    }

    #[test]
    fn proc_shows_reloads_and_the_newest_worker() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>\n5123            master          1 [failed: 2]   0d00h01m05s     2.6.12\n# workers\n5538            worker          0               0d00h00m00s     2.6.12\n5126            worker          1               0d00h01m00s     2.6.12\n# programs\n";
        let p = parse_proc(text).unwrap();
        assert_eq!(p.reloads, 1);
        assert_eq!(p.failed, 2);
        assert_eq!(p.current_worker(), Some(5538));
    }

    /// `haproxy -v` of each binary tested (their first lines, as printed).
    #[test]
    fn binary_versions_of_every_version() {
        for (text, branch) in [
            ("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term supported branch - will stop receiving fixes around Q2 2027.\n", (2, 6)),
            ("HAProxy version 3.0.11-9e587df 2025/06/02 - https://haproxy.org/\n", (3, 0)),
            ("HAProxy version 3.2.26-1 2026/10/14 - https://haproxy.org/\n", (3, 2)),
        ] {
            let v = parse_binary_version(text).unwrap();
            assert_eq!(v.branch, branch, "{text}");
            assert!(text.contains(&v.text));
        }
        assert!(parse_binary_version("haproxy: not found").is_err());
    }
}
