//! Finding the project's binaries and the processes a run started, and stopping them.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// Stops a child process the way its supervisor would: SIGTERM, then SIGKILL if it has
/// not exited after `grace`; reaped either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signalling our own child process, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if crate::wait_for(grace, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The HAProxy every host runs (and its agent checks configurations with): `$HAPROXY_BIN`
/// when set (`scripts/test` runs the real-HAProxy suites once per version so), else
/// `haproxy` from `PATH`.
pub fn haproxy_bin() -> PathBuf {
    std::env::var_os("HAPROXY_BIN")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("haproxy"), PathBuf::from)
}

/// The branch of [`haproxy_bin`] (`haproxy -v`): (2, 6), (3, 0), (3, 2)...
pub fn haproxy_branch() -> anyhow::Result<(u32, u32)> {
    let out = std::process::Command::new(haproxy_bin())
        .arg("-v")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `HAProxy version 3.0.11-9e587df 2025/06/02 - https://haproxy.org/`
    let version = text
        .split_whitespace()
        .nth(2)
        .ok_or_else(|| anyhow::anyhow!("no version in `haproxy -v`: {text}"))?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let mut next = || -> anyhow::Result<u32> {
        Ok(parts
            .next()
            .ok_or_else(|| anyhow::anyhow!("bad version {version}"))?
            .parse()?)
    };
    Ok((next()?, next()?))
}

/// Whether the agent adds servers at runtime on [`haproxy_bin`] (3.0 and later) instead
/// of growing a pool's slot block with a reload.
pub fn haproxy_adds_servers() -> bool {
    haproxy_branch().is_ok_and(|b| b >= (3, 0))
}

/// The path of binary `name` built in the same target directory as the running
/// executable (tests live in `target/<profile>/deps`, binaries in `target/<profile>`).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    anyhow::bail!(
        "binary `{name}` not found near {}; build it first: cargo build --workspace --bins",
        exe.display()
    )
}

/// The processes whose command line contains `needle` (from `/proc`), other than the
/// caller: `(pid, command line)`.
pub fn processes_matching(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) && !is_zombie(pid) {
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

/// Whether `pid` is alive (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
