//! The project's AWS emulator (`tests/moto_ext`: moto plus lifecycle hooks, EventBridge
//! events, faults, call log) as a child process on a free loopback port, its control API,
//! and a tiny client for AWS JSON-protocol services (SQS, EventBridge) that needs no SDK.
//!
//! The process is stopped (SIGTERM, then SIGKILL) when the handle drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::wait_for;

/// The region every local client uses.
pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("..")
        .canonicalize()
        .unwrap_or_else(|_| here.join(".."))
}

/// The emulator's virtualenv Python: `$HAPROXY_ASG_VENV` or `~/.cache/haproxy-asg/venv`,
/// created with `scripts/setup-venv` when missing.
pub fn venv_python() -> anyhow::Result<PathBuf> {
    let venv = match std::env::var_os("HAPROXY_ASG_VENV") {
        Some(v) => PathBuf::from(v),
        None => {
            let home =
                std::env::var_os("HOME").context("no HOME to find the emulator's virtualenv")?;
            Path::new(&home).join(".cache/haproxy-asg/venv")
        }
    };
    let python = venv.join("bin/python");
    if !python.exists() {
        let root = workspace_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/setup-venv"))
            .arg("--quiet")
            .current_dir(&root)
            .stdout(Stdio::null())
            .status()
            .context("running scripts/setup-venv")?;
        anyhow::ensure!(
            status.success() && python.exists(),
            "scripts/setup-venv failed ({status}); {} is missing",
            python.display()
        );
    }
    Ok(python)
}

/// One HTTP/1.1 exchange with `addr` (the emulator closes every connection): status,
/// body. `headers` are sent as given.
pub fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let mut s =
        TcpStream::connect_timeout(&sock, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let raw = read_answer(&mut s).with_context(|| format!("{method} {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: malformed HTTP answer"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: no HTTP status"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

/// Reads one HTTP answer: up to its Content-Length when it has one (the emulator closes
/// the connection only after its handler thread winds down, a few milliseconds later
/// on a busy machine), otherwise to the end of the connection.
fn read_answer(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let Some(length) = length else {
            s.read_to_end(&mut raw)?;
            return Ok(raw);
        };
        while raw.len() < end + 4 + length {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        return Ok(raw);
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    for _ in 0..100_000 {
        let Some((size, after)) = rest.split_once("\r\n") else {
            break;
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The emulator process.
pub struct MotoServer {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl MotoServer {
    /// Starts `tests/moto_ext/server.py` on a free port and waits (at most 120 s) for its
    /// ready line. Its stderr goes to `log` when given.
    pub fn start(log: Option<&Path>) -> anyhow::Result<Self> {
        let python = venv_python()?;
        let server = workspace_root().join("tests/moto_ext/server.py");
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p)?),
            None => Stdio::null(),
        };
        let mut child = Command::new(python)
            .arg(server)
            .args(["--host", "127.0.0.1", "--port", "0"])
            // Its own process group: a terminal's Ctrl-C then reaches only the program
            // that started it, which stops it in order (the emulator last).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting the emulator (tests/moto_ext/server.py)")?;
        let stdout = child.stdout.take().context("emulator has no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("moto_ext ready on http://") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let mut me = Self {
            child: Some(child),
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => {
                me.addr = addr;
                Ok(me)
            }
            Err(_) => anyhow::bail!("the emulator did not get ready within 120 s"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A control call (`/moto-ext/...`); its JSON answer (`Null` when empty).
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let text = body.map(Value::to_string).unwrap_or_default();
        let (status, body) = exchange(
            &self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            &text,
            Duration::from_secs(30),
        )?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {body}"
        );
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body).with_context(|| format!("{method} {path}: {body}"))
    }

    /// An AWS JSON-protocol call: `service` as in the SigV4 scope (`sqs`, `events`),
    /// `target` the `X-Amz-Target` (`AmazonSQS.ReceiveMessage`, `AWSEvents.PutRule`).
    /// The emulator does not check signatures, only the scope that names the service.
    pub fn aws_json(
        &self,
        service: &str,
        target: &str,
        body: &Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
        );
        let content_type = if service == "sqs" {
            "application/x-amz-json-1.0"
        } else {
            "application/x-amz-json-1.1"
        };
        let (status, text) = exchange(
            &self.addr,
            "POST",
            "/",
            &[
                ("Content-Type", content_type),
                ("X-Amz-Target", target),
                ("X-Amz-Date", "20260101T000000Z"),
                ("Authorization", &auth),
            ],
            &body.to_string(),
            timeout,
        )?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "{target}: HTTP {status}: {text}"
        );
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{target}: {text}"))
    }

    /// Stops the emulator: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            if wait_for(Duration::from_secs(5), || c.try_wait().ok().flatten()).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
