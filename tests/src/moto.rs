//! The project's AWS emulator (`tests/emulator`: moto plus lifecycle hooks, EventBridge
//! events, faults, call log) as a child process on a free loopback port, its control API,
//! and a tiny client for AWS JSON-protocol services (SQS, EventBridge) that needs no SDK.
//!
//! The process is stopped (SIGTERM, then SIGKILL) when the handle drops. The launcher and
//! the HTTP client are the reactor's test kit (`reactor::testkit`): one of each.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reactor::testkit::Moto;
use serde_json::Value;

/// The region every local client uses.
pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";

pub use reactor::testkit::{venv_python, workspace_root};

/// The emulator process (the reactor's [`reactor::testkit::Moto`], with `anyhow` errors
/// and an SDK-free client for AWS JSON-protocol services).
pub struct MotoServer {
    inner: Moto,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl MotoServer {
    /// Starts `tests/emulator/server.py` on a free port and waits (at most 120 s) for its
    /// ready line. Its stderr goes to `log` when given.
    pub fn start(log: Option<&Path>) -> anyhow::Result<Self> {
        let inner = Moto::start_logged(log).map_err(anyhow::Error::msg)?;
        let addr = inner.addr.clone();
        Ok(Self { inner, addr })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// A control call (`/moto-ext/...`); its JSON answer (`Null` when empty).
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.inner
            .control(method, path, body)
            .map_err(anyhow::Error::msg)
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
        let (status, text) = reactor::testkit::exchange(
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
        )
        .map_err(anyhow::Error::msg)?;
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
        self.inner.stop();
    }
}
