//! A proxy host booted on this machine from the user data Terraform renders, inside a
//! throwaway root: what `scripts/check-proxy-boot` runs to prove that the user data, the
//! templates, the units and the agent agree before an operator's account finds out.
//!
//! The throwaway root is a private mount namespace (`unshare --mount`) in which the
//! trees the user data writes to (`/etc`, `/usr/local`, `/var`, `/opt`) are overlays
//! whose writable layer is a tmpfs, and `/run` and `/tmp` are fresh tmpfs mounts: the
//! machine's files (its `/usr`, Debian's real `haproxy` binary and `haproxy.service`,
//! the `haproxy` user) are seen as they are, nothing outside the namespace is written,
//! and everything goes when its last process ends. The network is this machine's: the rendered frontends listen on
//! loopback addresses the test chose.
//!
//! What cannot run here is replaced by stand-ins in `/usr/local/sbin` (first on the
//! user data's `PATH`), each of which records how it was called in [`CALLS`]:
//! `apt-get` (this machine's haproxy stands for Debian's package; it creates what the
//! package would: the chroot directory and `/run/haproxy`), `curl` (answers IMDSv2 with
//! the instance id the test gives and hands out the SSM Agent package it gives), `dpkg`, `aws s3 cp` (copies the objects the test
//! put in the emulated bucket) and `systemctl` (records; [`BootedHost::start_units`]
//! then starts what it was asked to start, reading the unit files the user data
//! wrote, as systemd would).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::process::terminate;

/// Where the stand-ins record their calls, inside the root: one line each, the
/// program's name then its arguments.
pub const CALLS: &str = "/opt/boot/calls";

/// Units the user data may start that something else stands for here: the SSM Agent
/// (the emulator's Run Command runs the project's document on this host instead).
pub const STOOD_IN_UNITS: &[&str] = &["amazon-ssm-agent.service"];

/// How long the user data may run.
const USER_DATA_TIMEOUT: Duration = Duration::from_secs(120);

/// What the throwaway root is given.
#[derive(Debug, Clone, Default)]
pub struct BootSpec {
    /// The user data, as the instance would receive it (a shell script).
    pub user_data: String,
    /// Objects of the emulated S3: `bucket/key` -> a file on this machine.
    pub s3_objects: Vec<(String, PathBuf)>,
    /// What `curl` hands out as the SSM Agent's `.deb`.
    pub ssm_agent_deb: Vec<u8>,
    /// What `curl` answers for IMDSv2's `meta-data/instance-id` (after handing out a
    /// session token): the instance the host is.
    pub instance_id: String,
    /// What it answers for `meta-data/placement/availability-zone` (`us-east-1a` when
    /// empty).
    pub zone: String,
}

/// A proxy host booted from its user data (see the module doc). Dropping it stops its
/// services and its root.
pub struct BootedHost {
    dir: tempfile::TempDir,
    holder: Child,
    services: Vec<(String, Child)>,
}

impl BootedHost {
    /// Creates the root and runs the user data in it, until it ends (at most two
    /// minutes). Whether it succeeded: [`BootedHost::user_data_status`].
    pub fn boot(spec: &BootSpec) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("haproxy-asg-boot.")
            .tempdir()
            .context("creating the boot directory")?;
        let src = dir.path().join("src");
        let sbin = src.join("sbin");
        let opt = src.join("opt");
        std::fs::create_dir_all(&sbin)?;
        std::fs::create_dir_all(opt.join("s3"))?;
        std::fs::create_dir_all(src.join("layers"))?;
        for (name, text) in STAND_INS {
            let path = sbin.join(name);
            std::fs::write(&path, text)?;
            set_mode(&path, 0o755)?;
        }
        for (object, file) in &spec.s3_objects {
            let to = opt.join("s3").join(object);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(file, &to)
                .with_context(|| format!("copying {} to s3://{object}", file.display()))?;
        }
        std::fs::write(opt.join("amazon-ssm-agent.deb"), &spec.ssm_agent_deb)?;
        std::fs::write(opt.join("instance-id"), &spec.instance_id)?;
        let zone = if spec.zone.is_empty() {
            "us-east-1a"
        } else {
            &spec.zone
        };
        std::fs::write(opt.join("zone"), zone)?;
        std::fs::write(opt.join("user-data.sh"), &spec.user_data)?;
        std::fs::write(src.join("holder.sh"), HOLDER)?;
        let log = File::create(dir.path().join("holder.log"))?;
        let holder = Command::new("unshare")
            .current_dir("/")
            .args(["--mount", "--propagation", "private", "bash"])
            .arg(src.join("holder.sh"))
            .arg(&src)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("unshare --mount (util-linux; needs root)")?;
        let mut host = Self {
            dir,
            holder,
            services: Vec::new(),
        };
        // The user data's end, or the root's (Err: how it ended).
        let ended = crate::wait_for(USER_DATA_TIMEOUT, || {
            if host.user_data_status().is_some() {
                return Some(Ok(()));
            }
            host.holder.try_wait().ok().flatten().map(Err)
        });
        match ended {
            Some(Ok(())) => Ok(host),
            Some(Err(status)) => bail!(
                "the boot root ended ({status}) before the user data did: {}",
                host.holder_log()
            ),
            None => bail!(
                "the user data did not end within {USER_DATA_TIMEOUT:?}; so far:\n{}",
                host.user_data_output()
            ),
        }
    }

    /// The process whose mount namespace is the root.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `path` of the root, as this process reaches it.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.pid(),
            path.trim_start_matches('/')
        ))
    }

    /// The argv prefix that runs a program inside the root.
    pub fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--mount=/proc/{}/ns/mnt", self.pid()),
            "--".into(),
        ]
    }

    /// The user data's exit code, once it ended.
    pub fn user_data_status(&self) -> Option<i32> {
        std::fs::read_to_string(self.path("/opt/boot/user-data.rc"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// What the user data printed.
    pub fn user_data_output(&self) -> String {
        std::fs::read_to_string(self.path("/opt/boot/user-data.out")).unwrap_or_default()
    }

    /// The stand-ins' calls, in order: `program arg...`.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path(CALLS))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn holder_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("holder.log")).unwrap_or_default()
    }

    /// What a started unit printed.
    pub fn unit_log(&self, unit: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{unit}.log"))).unwrap_or_default()
    }

    /// Reads a unit as systemd would from this root: its file in `/etc/systemd/system`
    /// or `/lib/systemd/system`, then its drop-ins (`<unit>.d/*.conf`) by name.
    pub fn load_unit(&self, name: &str) -> anyhow::Result<Unit> {
        const DIRS: [&str; 3] = [
            "/etc/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ];
        let main = DIRS
            .iter()
            .map(|d| self.path(&format!("{d}/{name}")))
            .find(|p| p.is_file())
            .with_context(|| format!("no unit file defines {name} ({})", DIRS.join(", ")))?;
        let mut texts = vec![std::fs::read_to_string(&main)?];
        let mut dropins = BTreeMap::new();
        for d in DIRS.iter().rev() {
            let Ok(entries) = std::fs::read_dir(self.path(&format!("{d}/{name}.d"))) else {
                continue;
            };
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().to_string();
                if file.ends_with(".conf") {
                    // Same name in /etc overrides /lib: /etc is read last.
                    dropins.insert(file, e.path());
                }
            }
        }
        for path in dropins.values() {
            texts.push(std::fs::read_to_string(path)?);
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(Unit::parse(name, &texts))
    }

    /// `systemd-analyze verify` of `units` inside the root: their files and drop-ins
    /// parse, every setting is one this machine's systemd knows, and the programs they
    /// run exist there. `Ok(None)` when they pass; `Ok(Some(complaints))` when not;
    /// an error when systemd-analyze cannot run here.
    pub fn verify_units(&self, units: &[String]) -> anyhow::Result<Option<String>> {
        let out = Command::new("nsenter")
            .current_dir("/")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .args(["--", "systemd-analyze", "verify", "--man=no"])
            .args(units)
            .env("SYSTEMD_LOG_COLOR", "0")
            .stdin(Stdio::null())
            .output()
            .context("systemd-analyze verify")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Unknown or unparsable settings are only warnings ("..., ignoring"): a unit
        // that relies on one would not do what it says, so they count.
        let complaints: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if out.status.success() && complaints.is_empty() {
            Ok(None)
        } else {
            Ok(Some(format!("({}) {}", out.status, complaints.join("\n"))))
        }
    }

    /// The units the user data asked `systemctl` to start or restart, then those it
    /// only enabled (a reboot would start them), less [`STOOD_IN_UNITS`].
    pub fn units_to_start(&self) -> Vec<String> {
        let mut started = Vec::new();
        let mut enabled = Vec::new();
        for call in self.calls() {
            let words: Vec<&str> = call.split_whitespace().collect();
            let [program, rest @ ..] = words.as_slice() else {
                continue;
            };
            if *program != "systemctl" {
                continue;
            }
            let args: Vec<&str> = rest
                .iter()
                .copied()
                .filter(|a| !a.starts_with('-'))
                .collect();
            let Some((verb, units)) = args.split_first() else {
                continue;
            };
            let now = rest.contains(&"--now");
            let list = match *verb {
                "start" | "restart" | "reload-or-restart" => &mut started,
                "enable" if now => &mut started,
                "enable" => &mut enabled,
                _ => continue,
            };
            for u in units {
                let u = if u.contains('.') {
                    u.to_string()
                } else {
                    format!("{u}.service")
                };
                if !list.contains(&u) {
                    list.push(u);
                }
            }
        }
        for u in enabled {
            if !started.contains(&u) {
                started.push(u);
            }
        }
        started.retain(|u| !STOOD_IN_UNITS.contains(&u.as_str()));
        started
    }

    /// Starts [`Self::units_to_start`] as systemd would: the state and runtime
    /// directories they declare, their environment (`Environment=`, then
    /// `EnvironmentFile=`, then `extra_env`: what the instance's metadata would give),
    /// `ExecStartPre=` to the end, then `ExecStart=`, which must still run a second
    /// later. Sandboxing settings are not applied (systemd is not running here).
    /// The units started, in order.
    pub fn start_units(&mut self, extra_env: &[(String, String)]) -> anyhow::Result<Vec<String>> {
        let names = self.units_to_start();
        for name in &names {
            let unit = self.load_unit(name)?;
            self.start_unit(&unit, extra_env)
                .with_context(|| format!("starting {name}"))?;
        }
        Ok(names)
    }

    fn start_unit(&mut self, unit: &Unit, extra_env: &[(String, String)]) -> anyhow::Result<()> {
        for d in &unit.state_directories {
            std::fs::create_dir_all(self.path(&format!("/var/lib/{d}")))?;
        }
        for d in &unit.runtime_directories {
            std::fs::create_dir_all(self.path(&format!("/run/{d}")))?;
        }
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
        env.extend(unit.environment.iter().cloned());
        for (optional, file) in &unit.environment_files {
            match std::fs::read_to_string(self.path(file)) {
                Ok(text) => env.extend(parse_environment_file(&text)),
                Err(_) if *optional => {}
                Err(e) => bail!("EnvironmentFile={file}: {e}"),
            }
        }
        env.extend(extra_env.iter().cloned());
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", unit.name)))?;
        for line in &unit.exec_start_pre {
            let (ignore_failure, argv) = expand_exec(line, &env)?;
            let status = self
                .command(&argv, &env)
                .stdout(log.try_clone()?)
                .stderr(log.try_clone()?)
                .status()?;
            if !status.success() && !ignore_failure {
                bail!("ExecStartPre={line} failed ({status})");
            }
        }
        let line = unit
            .exec_start
            .last()
            .with_context(|| format!("{} has no ExecStart=", unit.name))?;
        let (_, argv) = expand_exec(line, &env)?;
        let mut child = self
            .command(&argv, &env)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        std::thread::sleep(Duration::from_secs(1));
        if let Some(status) = child.try_wait()? {
            bail!(
                "ExecStart={line} ended at once ({status}):\n{}",
                self.unit_log(&unit.name)
            );
        }
        self.services.push((unit.name.clone(), child));
        Ok(())
    }

    fn command(&self, argv: &[String], env: &BTreeMap<String, String>) -> Command {
        let mut c = Command::new("nsenter");
        // systemd starts a service in / unless WorkingDirectory= says otherwise.
        c.current_dir("/")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .arg("--")
            .arg("env")
            .arg("-i");
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.args(argv).stdin(Stdio::null());
        c
    }

    /// Whether a started unit's main process still runs.
    pub fn running(&mut self, unit: &str) -> bool {
        self.services
            .iter_mut()
            .find(|(n, _)| n == unit)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for BootedHost {
    fn drop(&mut self) {
        // Services first (the agent before HAProxy), then the root.
        for (_, child) in self.services.iter_mut().rev() {
            terminate(child, Duration::from_secs(5));
        }
        terminate(&mut self.holder, Duration::from_secs(5));
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A service unit, as far as starting it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unit {
    /// `haproxy.service`.
    pub name: String,
    /// `Environment=` assignments, in order.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=`: (optional, path), in order.
    pub environment_files: Vec<(bool, String)>,
    /// `ExecStartPre=` lines.
    pub exec_start_pre: Vec<String>,
    /// `ExecStart=` lines (an empty assignment clears the list).
    pub exec_start: Vec<String>,
    /// `StateDirectory=` names (under /var/lib).
    pub state_directories: Vec<String>,
    /// `RuntimeDirectory=` names (under /run).
    pub runtime_directories: Vec<String>,
}

impl Unit {
    /// A unit from its file and drop-ins (`texts`, in the order systemd reads them).
    pub fn parse(name: &str, texts: &[&str]) -> Self {
        let mut u = Unit {
            name: name.into(),
            ..Unit::default()
        };
        for text in texts {
            let mut section = String::new();
            let mut logical = String::new();
            for raw in text.lines() {
                // A line ending in a backslash continues on the next.
                if let Some(part) = raw.strip_suffix('\\') {
                    logical.push_str(part);
                    logical.push(' ');
                    continue;
                }
                logical.push_str(raw);
                let line = std::mem::take(&mut logical);
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = s.to_string();
                    continue;
                }
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let (key, value) = (key.trim(), value.trim());
                match (section.as_str(), key) {
                    ("Service", "Environment") if value.is_empty() => u.environment.clear(),
                    ("Service", "Environment") => {
                        for word in split_words(value) {
                            if let Some((k, v)) = word.split_once('=') {
                                u.environment.push((k.to_string(), v.to_string()));
                            }
                        }
                    }
                    ("Service", "EnvironmentFile") if value.is_empty() => {
                        u.environment_files.clear()
                    }
                    ("Service", "EnvironmentFile") => {
                        let (optional, path) = match value.strip_prefix('-') {
                            Some(p) => (true, p),
                            None => (false, value),
                        };
                        u.environment_files.push((optional, path.to_string()));
                    }
                    ("Service", "ExecStartPre") if value.is_empty() => u.exec_start_pre.clear(),
                    ("Service", "ExecStartPre") => u.exec_start_pre.push(value.to_string()),
                    ("Service", "ExecStart") if value.is_empty() => u.exec_start.clear(),
                    ("Service", "ExecStart") => u.exec_start.push(value.to_string()),
                    ("Service", "StateDirectory") => u
                        .state_directories
                        .extend(value.split_whitespace().map(String::from)),
                    ("Service", "RuntimeDirectory") => u
                        .runtime_directories
                        .extend(value.split_whitespace().map(String::from)),
                    _ => {}
                }
            }
        }
        u
    }
}

/// Words of a unit setting: separated by blanks, grouped by double or single quotes.
fn split_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            (_, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Where a `${NAME}` expansion opens and closes (named, so that the line reads the same
/// to a brace-counting scan of the source as to the compiler).
const VAR_OPEN: &str = "${";
const VAR_CLOSE: &str = "}";

/// An `Exec*=` line as systemd runs it: its `-` prefix (failure ignored), then argv with
/// `$NAME` (a whole word: split on blanks) and `${NAME}` (in place) expanded.
fn expand_exec(line: &str, env: &BTreeMap<String, String>) -> anyhow::Result<(bool, Vec<String>)> {
    let mut rest = line;
    let mut ignore_failure = false;
    while let Some(c) = rest.chars().next().filter(|c| "-@+!:".contains(*c)) {
        ignore_failure |= c == '-';
        rest = &rest[c.len_utf8()..];
    }
    let mut argv = Vec::new();
    for word in split_words(rest) {
        if let Some(name) = word
            .strip_prefix('$')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            if let Some(v) = env.get(name) {
                argv.extend(v.split_whitespace().map(String::from));
            }
            continue;
        }
        let mut out = String::new();
        let mut w = word.as_str();
        while let Some(start) = w.find(VAR_OPEN) {
            out.push_str(&w[..start]);
            let after = &w[start + VAR_OPEN.len()..];
            let end = after
                .find(VAR_CLOSE)
                .with_context(|| format!("unclosed {VAR_OPEN} in {line:?}"))?;
            out.push_str(env.get(&after[..end]).map_or("", String::as_str));
            w = &after[end + VAR_CLOSE.len()..];
        }
        out.push_str(w);
        argv.push(out);
    }
    if argv.is_empty() {
        bail!("empty command line {line:?}");
    }
    Ok((ignore_failure, argv))
}

/// `KEY=VALUE` lines (blank lines and `#` comments skipped; one level of quotes
/// removed), as systemd reads an `EnvironmentFile=`.
fn parse_environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// Runs in the new mount namespace: the fresh directories, the stand-ins, the user
/// data, then waits (bounded) while the test starts the units.
const HOLDER: &str = r#"set -euo pipefail
src=$1
# Every write lands in a tmpfs: an overlay on each tree the user data writes to, fresh
# /run and /tmp.
mount -t tmpfs -o mode=0700 haproxy-asg-boot "$src/layers"
for d in /etc /usr/local /var /opt; do
    name=${d//\//_}
    mkdir -p "$src/layers/$name/upper" "$src/layers/$name/work"
    mount -t overlay haproxy-asg-boot -o "lowerdir=$d,upperdir=$src/layers/$name/upper,workdir=$src/layers/$name/work" "$d"
done
mount -t tmpfs -o mode=0755 haproxy-asg-boot /run
mkdir -p /usr/local/sbin /opt/boot
cp -a "$src/sbin/." /usr/local/sbin/
cp -a "$src/opt/." /opt/boot/
: >/opt/boot/calls
mount -t tmpfs -o mode=1777 haproxy-asg-boot /tmp
set +e
# As cloud-init runs it: from /, whatever directory started this test.
cd /
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    bash /opt/boot/user-data.sh >/opt/boot/user-data.out 2>&1
echo $? >/opt/boot/user-data.rc.new
mv /opt/boot/user-data.rc.new /opt/boot/user-data.rc
exec sleep 900
"#;

/// The stand-ins (see the module doc), as (name in /usr/local/sbin, script).
const STAND_INS: &[(&str, &str)] = &[
    (
        "apt-get",
        r#"#!/bin/bash
# Stand-in: this machine's haproxy stands for Debian's package, which also creates the
# workers' chroot and (through its tmpfiles.d) /run/haproxy.
printf '%s\n' "apt-get $*" >>/opt/boot/calls
if [[ " $* " == *" install "* && " $* " == *" haproxy "* ]]; then
    if [[ ! -x /usr/sbin/haproxy ]]; then
        echo "apt-get (boot stand-in): this machine has no /usr/sbin/haproxy to stand for Debian's package" >&2
        exit 100
    fi
    install -d -m 0755 /var/lib/haproxy /var/lib/haproxy/dev
    install -d -m 2775 -o haproxy -g haproxy /run/haproxy
fi
"#,
    ),
    (
        "systemctl",
        r#"#!/bin/bash
# Stand-in: records; the test starts what was asked from the unit files.
printf '%s\n' "systemctl $*" >>/opt/boot/calls
"#,
    ),
    (
        "dpkg",
        r#"#!/bin/bash
printf '%s\n' "dpkg $*" >>/opt/boot/calls
"#,
    ),
    (
        "curl",
        r#"#!/bin/bash
# Stand-in: IMDSv2 (a session token, then the instance id and the zone, which need the
# token) and the SSM Agent's package (hands out the test's).
printf '%s\n' "curl $*" >>/opt/boot/calls
out=""
url=""
token=""
while (($#)); do
    case "$1" in
        -o) out="$2"; shift ;;
        -H) [[ "$2" == X-aws-ec2-metadata-token:* ]] && token="${2#*: }"; shift ;;
        -X | --max-time | --retry) shift ;;
        -*) ;;
        *) url="$1" ;;
    esac
    shift
done
case "$url" in
    http://169.254.169.254/latest/api/token) printf 'boot-token'; exit 0 ;;
    http://169.254.169.254/latest/meta-data/instance-id)
        [[ "$token" == boot-token ]] || { echo "curl: (22) The requested URL returned error: 401" >&2; exit 22; }
        cat /opt/boot/instance-id; exit 0 ;;
    http://169.254.169.254/latest/meta-data/placement/availability-zone)
        [[ "$token" == boot-token ]] || { echo "curl: (22) The requested URL returned error: 401" >&2; exit 22; }
        cat /opt/boot/zone; exit 0 ;;
    http://169.254.169.254/*) echo "curl: (22) The requested URL returned error: 404" >&2; exit 22 ;;
esac
[[ -n "$out" ]] || { echo "curl (boot stand-in): no -o FILE for $url" >&2; exit 2; }
cp /opt/boot/amazon-ssm-agent.deb "$out"
"#,
    ),
    (
        "aws",
        r#"#!/bin/bash
# Stand-in: `aws s3 cp s3://bucket/key FILE` from the test's objects.
printf '%s\n' "aws $*" >>/opt/boot/calls
[[ "${1:-} ${2:-}" == "s3 cp" ]] || { echo "aws (boot stand-in): only s3 cp" >&2; exit 2; }
shift 2
args=()
while (($#)); do
    case "$1" in
        --region) shift ;;
        --*) ;;
        *) args+=("$1") ;;
    esac
    shift
done
src="${args[0]:-}"
dst="${args[1]:-}"
object="/opt/boot/s3/${src#s3://}"
if [[ "$src" != s3://* || ! -f "$object" ]]; then
    echo "fatal error: An error occurred (404) when calling the HeadObject operation: Key \"${src#s3://*/}\" does not exist" >&2
    exit 1
fi
cp "$object" "$dst"
"#,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropin_resets_exec_start_and_adds_environment() {
        let base = "[Unit]\nAfter=network-online.target\n[Service]\nEnvironmentFile=-/etc/default/haproxy\nEnvironment=\"CONFIG=/etc/haproxy/haproxy.cfg\" \"PIDFILE=/run/haproxy.pid\"\nExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS\n";
        let dropin = "[Service]\nEnvironment=\"EXTRAOPTS=-S /run/haproxy/master.sock\" \"PIDFILE=/run/haproxy/haproxy.pid\"\nExecStart=\nExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p ${PIDFILE} $EXTRAOPTS\nStateDirectory=haproxy-asg\n";
        let u = Unit::parse("haproxy.service", &[base, dropin]);
        assert_eq!(u.exec_start.len(), 1, "{u:?}");
        assert_eq!(u.state_directories, vec!["haproxy-asg".to_string()]);
        assert_eq!(
            u.environment_files,
            vec![(true, "/etc/default/haproxy".to_string())]
        );
        let env: BTreeMap<String, String> = u.environment.iter().cloned().collect();
        assert_eq!(env["PIDFILE"], "/run/haproxy/haproxy.pid");
        let (ignore, argv) = expand_exec(&u.exec_start[0], &env).unwrap();
        assert!(!ignore);
        assert_eq!(
            argv,
            [
                "/usr/sbin/haproxy",
                "-Ws",
                "-f",
                "/etc/haproxy/haproxy.cfg",
                "-p",
                "/run/haproxy/haproxy.pid",
                "-S",
                "/run/haproxy/master.sock"
            ]
        );
    }

    #[test]
    fn a_dash_prefix_ignores_failure_and_unknown_variables_vanish() {
        let env = BTreeMap::new();
        let (ignore, argv) = expand_exec("-/bin/mkdir -p /run/x $NOPE", &env).unwrap();
        assert!(ignore);
        assert_eq!(argv, ["/bin/mkdir", "-p", "/run/x"]);
        assert!(expand_exec("$NOPE", &env).is_err());
    }

    #[test]
    fn environment_files_drop_comments_and_quotes() {
        let vars = parse_environment_file("# region\nAWS_REGION=\"us-east-1\"\n\nX=a b\n");
        assert_eq!(
            vars,
            [
                ("AWS_REGION".to_string(), "us-east-1".to_string()),
                ("X".to_string(), "a b".to_string())
            ]
        );
    }
}
