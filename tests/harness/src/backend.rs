//! Backend processes: real HTTP servers (the `backend` binary) on loopback.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http;
use crate::process::bin_path;

/// A running backend server, killed on drop.
pub struct Backend {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name (what `GET /` answers).
    pub name: String,
}

impl Backend {
    /// Starts a healthy backend on a free port of `ip` (e.g. 127.0.0.1 or 127.0.1.4).
    pub fn start(name: &str, ip: &str) -> anyhow::Result<Self> {
        Self::spawn(name, &format!("{ip}:0"), false)
    }

    /// Starts a backend that serves `/` but fails `/healthz`.
    pub fn start_unhealthy(name: &str, ip: &str) -> anyhow::Result<Self> {
        Self::spawn(name, &format!("{ip}:0"), true)
    }

    /// Starts a backend on exactly `listen`.
    pub fn spawn(name: &str, listen: &str, unhealthy: bool) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin_path("backend")?);
        cmd.args(["--listen", listen, "--name", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Its own process group: a terminal's Ctrl-C then reaches only the program that
        // started it, which stops it in order.
        cmd.process_group(0);
        if unhealthy {
            cmd.arg("--unhealthy");
        }
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("backend has no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            anyhow::bail!("backend {name} did not start on {listen}: {line:?}");
        };
        Ok(Self {
            child,
            addr,
            name: name.to_string(),
        })
    }

    /// Requests this backend served (health checks and stats excluded), asked directly.
    pub fn served(&self) -> anyhow::Result<u64> {
        let r = http::get(self.addr, "/__stats", Duration::from_secs(5))?;
        let v: serde_json::Value = serde_json::from_str(r.body.trim())?;
        v["requests"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("bad stats {:?}", r.body))
    }

    /// Stops the process now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}
