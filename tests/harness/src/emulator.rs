//! The project's AWS emulator (`tests/emulator`: moto plus lifecycle hooks, Auto Scaling,
//! EC2 and Run Command events, SSM execution, faults, a call log) as a child process on a
//! free loopback port, its control API (`/moto-ext/...`), and a client for AWS
//! JSON-protocol services (SQS, EventBridge) that needs no SDK.
//!
//! The process is stopped (SIGTERM, so it stops the Run Command processes it started,
//! then SIGKILL) when the handle drops.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::http;

/// The region every local client uses.
pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";

/// The workspace root (the harness lives in `tests/harness`).
pub fn workspace_root() -> PathBuf {
    // Where cargo runs the program from (a test or `cargo run`: its package), else the
    // working directory: the checkout being tested. The path built in comes last: a
    // build cache shared with another checkout (~/.cache) bakes in that checkout's.
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok());
    if let Some(root) = runtime
        .iter()
        .flat_map(|p| p.ancestors())
        .find(|d| d.join("tests/emulator/server.py").is_file())
    {
        return root.to_path_buf();
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..")
        .canonicalize()
        .unwrap_or_else(|_| here.join("../.."))
}

/// The Python of the emulator's virtualenv, created with `scripts/setup-venv` when
/// missing.
pub fn venv_python() -> anyhow::Result<PathBuf> {
    let venv = std::env::var_os("HAPROXY_ASG_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/haproxy-asg/venv")))
        .context("no HOME to find the emulator's virtualenv")?;
    let python = venv.join("bin/python");
    if !python.exists() {
        let root = workspace_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/setup-venv"))
            .arg("--quiet")
            .current_dir(&root)
            .status()
            .context("running scripts/setup-venv")?;
        if !status.success() || !python.exists() {
            bail!(
                "scripts/setup-venv failed ({status}); {} is missing",
                python.display()
            );
        }
    }
    Ok(python)
}

/// The emulator, running as a child process on a free loopback port.
pub struct Emulator {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The connections its API calls go over, kept open between calls.
    conns: http::KeepAlive,
}

impl Emulator {
    /// Starts `tests/emulator/server.py` on a free port and waits (at most 120 s) for its
    /// ready line. Its stderr goes to `log` when given, else nowhere.
    pub fn start(log: Option<&Path>) -> anyhow::Result<Self> {
        let python = venv_python()?;
        let server = workspace_root().join("tests/emulator/server.py");
        let stderr = match log {
            Some(p) => Stdio::from(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut child = Command::new(python)
            .arg(&server)
            .args(["--host", "127.0.0.1", "--port", "0"])
            // Its own process group: a terminal's Ctrl-C then reaches only the program
            // that started it, which stops it in order (the emulator last).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting the emulator ({})", server.display()))?;
        let stdout = child.stdout.take().context("the emulator has no stdout")?;
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
            conns: http::KeepAlive::new(""),
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => {
                me.conns = http::KeepAlive::new(&addr);
                me.addr = addr;
                Ok(me)
            }
            Err(_) => bail!("the emulator did not get ready within 120 s"),
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
        let r = self
            .conns
            .request(
                method,
                path,
                &[("Content-Type", "application/json")],
                &text,
                Duration::from_secs(30),
            )
            .with_context(|| format!("{method} {path}"))?;
        if !(200..300).contains(&r.status) {
            bail!("{method} {path}: HTTP {}: {}", r.status, r.body);
        }
        if r.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&r.body).with_context(|| format!("{method} {path}: {}", r.body))
    }

    /// The AWS calls served so far: `(service, action)` pairs.
    pub fn calls(&self) -> anyhow::Result<Vec<(String, String)>> {
        let v = self.control("GET", "/moto-ext/calls", None)?;
        Ok(v.as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c["service"].as_str().unwrap_or_default().to_string(),
                    c["action"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// An AWS JSON-protocol call: `service` as in the SigV4 scope (`sqs`, `events`,
    /// `dynamodb`), `target` the `X-Amz-Target` (`AmazonSQS.ReceiveMessage`,
    /// `AWSEvents.PutRule`). The emulator does not check signatures, only the scope that
    /// names the service.
    pub fn aws_json(
        &self,
        service: &str,
        target: &str,
        body: &Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.aws_json_as("testing", service, target, body, timeout)
    }

    /// [`Emulator::aws_json`] with the access key `access_key` (a proxy's session
    /// credentials: SQS then names that session as the message's sender).
    pub fn aws_json_as(
        &self,
        access_key: &str,
        service: &str,
        target: &str,
        body: &Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
        );
        let content_type = if service == "sqs" || service == "dynamodb" {
            "application/x-amz-json-1.0"
        } else {
            "application/x-amz-json-1.1"
        };
        let r = self
            .conns
            .request(
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
            )
            .with_context(|| target.to_string())?;
        if !(200..300).contains(&r.status) {
            bail!("{target}: HTTP {}: {}", r.status, r.body);
        }
        if r.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&r.body).with_context(|| format!("{target}: {}", r.body))
    }

    /// An AWS query-protocol call (IAM, STS): `Action` and its parameters, form-encoded;
    /// the XML answer as text.
    pub fn aws_query(
        &self,
        service: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
        );
        let mut body = format!("Action={action}&Version={}", query_version(service));
        for (k, v) in params {
            body.push('&');
            body.push_str(k);
            body.push('=');
            body.push_str(&form_encode(v));
        }
        let r = self
            .conns
            .request(
                "POST",
                "/",
                &[
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    ),
                    ("X-Amz-Date", "20260101T000000Z"),
                    ("Authorization", &auth),
                ],
                &body,
                Duration::from_secs(30),
            )
            .with_context(|| format!("{service} {action}"))?;
        if !(200..300).contains(&r.status) {
            bail!("{service} {action}: HTTP {}: {}", r.status, r.body);
        }
        Ok(r.body)
    }

    /// An SDK configuration for this emulator, with the project's retry settings.
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        self.sdk_as("test").await
    }

    /// [`Emulator::sdk`] with the access key `key` (the call log names the caller by it:
    /// a benchmark gives the reactor one of its own).
    pub async fn sdk_as(&self, key: &str) -> aws_config::SdkConfig {
        infra::aws::sdk_loader()
            .endpoint_url(self.url())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
                key, "test", None, None, "harness",
            ))
            .load()
            .await
    }

    /// The environment a process needs to use this emulator as AWS (the agents, the
    /// reactor binary).
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Stops the emulator: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::process::terminate(&mut c, Duration::from_secs(5));
        }
    }
}

/// The API version a query-protocol service wants.
fn query_version(service: &str) -> &'static str {
    match service {
        "iam" => "2010-05-08",
        "sts" => "2011-06-15",
        _ => "2011-01-01",
    }
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of the first `<tag>...</tag>` in an XML answer.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml.get(start..)?.find(&format!("</{tag}>"))?;
    Some(xml.get(start..start + len)?.trim().to_string())
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
