//! Support for the reactor's tests and benchmark and for the end-to-end harness (not
//! used by the Lambda itself): the project's AWS emulator (`tests/emulator`) as a child
//! process, a tiny HTTP client for its control API, the emulated network and group
//! reads every local run shares, and a minimal Lambda Runtime API server.
//!
//! Everything here is bounded in time and talks to loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The Python of the emulator's virtualenv, created with `scripts/setup-venv` when
/// missing.
pub fn venv_python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("HAPROXY_ASG_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/haproxy-asg/venv")))
        .ok_or("no HOME to find the emulator's virtualenv")?;
    let python = venv.join("bin/python");
    if !python.exists() {
        let root = workspace_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/setup-venv"))
            .arg("--quiet")
            .current_dir(&root)
            .status()
            .map_err(|e| format!("scripts/setup-venv: {e}"))?;
        if !status.success() || !python.exists() {
            return Err(format!(
                "scripts/setup-venv failed ({status}); {} is missing",
                python.display()
            ));
        }
    }
    Ok(python)
}

/// One HTTP/1.1 exchange with the emulator, JSON body: status and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    exchange(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.unwrap_or(""),
        Duration::from_secs(30),
    )
}

/// One HTTP/1.1 exchange with `addr` (the emulator closes every connection): status and
/// body. `headers` are sent as given.
pub fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{method} {path}: {e}");
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(io)?;
    let raw = read_answer(&mut s).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: malformed HTTP answer"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no HTTP status"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
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
    while let Some((size, after)) = rest.split_once("\r\n") {
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

/// The emulator, running as a child process on a free loopback port; stopped on drop
/// (SIGTERM first, so it stops the Run Command processes it started).
pub struct Moto {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Moto {
    /// Starts it, its stderr discarded; see [`Moto::start_logged`].
    pub fn start() -> Result<Self, String> {
        Self::start_logged(None)
    }

    /// Starts `tests/emulator/server.py` on a free port and waits (at most 120 s) for its
    /// ready line. Its stderr goes to `log` when given.
    pub fn start_logged(log: Option<&Path>) -> Result<Self, String> {
        let python = venv_python()?;
        let server = workspace_root().join("tests/emulator/server.py");
        let stderr = match log {
            Some(p) => {
                Stdio::from(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?)
            }
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
            .map_err(|e| format!("starting the emulator (tests/emulator/server.py): {e}"))?;
        let stdout = child.stdout.take().ok_or("the emulator has no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("emulator ready on http://") {
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
            Err(_) => Err("the emulator did not get ready within 120 s".into()),
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the emulator: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let exited = wait_until(Duration::from_secs(5), || c.try_wait().ok().flatten());
            if exited.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A control call (`/moto-ext/...`); the JSON answer.
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let text = body.map(Value::to_string);
        let (status, body) = http(&self.addr, method, path, text.as_deref())?;
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path}: HTTP {status}: {body}"));
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body).map_err(|e| format!("{method} {path}: {e}: {body}"))
    }

    /// The AWS calls served so far: `(service, action)` pairs.
    pub fn calls(&self) -> Result<Vec<(String, String)>, String> {
        let v = self.control("GET", "/moto-ext/calls", None)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["service"].as_str().unwrap_or_default().to_string(),
                            c["action"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// An SDK configuration for this emulator (the project's retry settings).
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        infra::aws::sdk_loader()
            .endpoint_url(self.url())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
                "test", "test", None, None, "testkit",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The emulated network every local run uses: a VPC of 127.0.0.0/16, so instances get
/// loopback addresses that need no setup, and a launch template named
/// `launch_template` for the groups. The VPC id.
pub async fn loopback_vpc(
    ec2: &aws_sdk_ec2::Client,
    launch_template: &str,
) -> Result<String, String> {
    use aws_sdk_ec2::error::DisplayErrorContext;
    use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};

    let vpc = ec2
        .create_vpc()
        .cidr_block("127.0.0.0/16")
        .send()
        .await
        .map_err(|e| format!("CreateVpc: {}", DisplayErrorContext(e)))?;
    let vpc = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or("CreateVpc returned no id")?
        .to_string();
    ec2.create_launch_template()
        .launch_template_name(launch_template)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("CreateLaunchTemplate: {}", DisplayErrorContext(e)))?;
    Ok(vpc)
}

/// A subnet of `vpc` (e.g. `127.0.1.0/24`); its id.
pub async fn subnet(ec2: &aws_sdk_ec2::Client, vpc: &str, cidr: &str) -> Result<String, String> {
    let out = ec2
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateSubnet {cidr}: {}",
                aws_sdk_ec2::error::DisplayErrorContext(e)
            )
        })?;
    out.subnet()
        .and_then(|s| s.subnet_id())
        .map(str::to_string)
        .ok_or_else(|| format!("CreateSubnet {cidr} returned no id"))
}

/// A group's instances and their lifecycle states (`Pending:Wait`, `InService`...), in
/// the order Auto Scaling lists them; empty when the group does not exist.
pub async fn group_members(
    asg: &aws_sdk_autoscaling::Client,
    group: &str,
) -> Result<Vec<(String, String)>, String> {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeAutoScalingGroups {group}: {}",
                aws_sdk_autoscaling::error::DisplayErrorContext(e)
            )
        })?;
    Ok(out
        .auto_scaling_groups()
        .first()
        .map(|g| {
            g.instances()
                .iter()
                .map(|i| {
                    (
                        i.instance_id().unwrap_or_default().to_string(),
                        i.lifecycle_state()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// What the runtime API server saw.
#[derive(Debug, Clone, Default)]
pub struct RuntimeLog {
    /// When each `next` request arrived (from the server's start).
    pub next_at: Vec<Instant>,
    /// `(request id, body)` of each `/response`.
    pub responses: Vec<(String, Value)>,
    /// `(request id, body)` of each `/error` (init errors use id `init`).
    pub errors: Vec<(String, Value)>,
}

/// A minimal Lambda Runtime API: hands out the queued events one by one on
/// `GET /2018-06-01/runtime/invocation/next`, records `/response` and `/error`. When
/// the queue is empty a `next` request is held open (as Lambda does) until the server
/// is dropped.
pub struct RuntimeApi {
    /// `127.0.0.1:PORT`: the value of `AWS_LAMBDA_RUNTIME_API`.
    pub addr: SocketAddr,
    log: Arc<Mutex<RuntimeLog>>,
    queue: Arc<Mutex<Vec<Value>>>,
    /// Milliseconds each invocation may take (its deadline).
    pub timeout_ms: u64,
}

fn write_response(stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &str) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

impl RuntimeApi {
    /// Starts serving on a free loopback port.
    pub fn start(events: Vec<Value>, timeout_ms: u64) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let log = Arc::new(Mutex::new(RuntimeLog::default()));
        let queue = Arc::new(Mutex::new(events.into_iter().rev().collect::<Vec<_>>()));
        let (l2, q2) = (Arc::clone(&log), Arc::clone(&queue));
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((method, path, body)) = read_request(&mut stream) else {
                    continue;
                };
                if method == "GET" && path.ends_with("/runtime/invocation/next") {
                    if let Ok(mut l) = l2.lock() {
                        l.next_at.push(Instant::now());
                    }
                    let event = q2.lock().ok().and_then(|mut q| q.pop());
                    match event {
                        Some(ev) => {
                            n += 1;
                            let deadline = infra::aws::now_ms() + timeout_ms;
                            let headers = vec![
                                (
                                    "Lambda-Runtime-Aws-Request-Id".to_string(),
                                    format!("req-{n}"),
                                ),
                                (
                                    "Lambda-Runtime-Deadline-Ms".to_string(),
                                    deadline.to_string(),
                                ),
                                (
                                    "Lambda-Runtime-Invoked-Function-Arn".to_string(),
                                    "arn:aws:lambda:us-east-1:123456789012:function:reactor"
                                        .to_string(),
                                ),
                                (
                                    "Lambda-Runtime-Trace-Id".to_string(),
                                    format!("Root=1-00000000-{n:024}"),
                                ),
                            ];
                            write_response(&mut stream, "200 OK", &headers, &ev.to_string());
                        }
                        // Hold the request open: Lambda would freeze the process here.
                        None => held.push(stream),
                    }
                    continue;
                }
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                let id = path.split('/').rev().nth(1).unwrap_or_default().to_string();
                if let Ok(mut l) = l2.lock() {
                    if path.ends_with("/response") {
                        l.responses.push((id, value));
                    } else if path.ends_with("/error") {
                        let id = if path.contains("/init/") {
                            "init".to_string()
                        } else {
                            id
                        };
                        l.errors.push((id, value));
                    }
                }
                write_response(&mut stream, "202 Accepted", &[], "{\"status\":\"OK\"}");
            }
        });
        Ok(Self {
            addr,
            log,
            queue,
            timeout_ms,
        })
    }

    /// Queues one more event.
    pub fn push(&self, event: Value) {
        if let Ok(mut q) = self.queue.lock() {
            q.insert(0, event);
        }
    }

    /// A copy of what was seen so far.
    pub fn log(&self) -> RuntimeLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (bounded) until `n` responses or errors arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> RuntimeLog {
        let until = Instant::now() + timeout;
        loop {
            let l = self.log();
            if l.responses.len() + l.errors.len() >= n || Instant::now() >= until {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The environment `lambda_runtime` requires, for a runtime API at `addr`.
pub fn lambda_env(addr: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "reactor".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".to_string()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/reactor".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Polls `f` every 50 ms until it returns `Some`, at most `timeout`.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
