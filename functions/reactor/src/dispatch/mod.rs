//! Getting a change to every proxy host, and reading what each host reported.
//!
//! [`Dispatcher`] is the boundary: [`SsmDispatcher`] sends through SSM Run Command of the
//! project's document and reads the invocations' output; unit tests use fakes. Sending
//! never waits for the hosts: the command's status-change event brings the reactor back
//! when they are done.

use std::future::Future;

use infra::aws::AwsError;
use infra::{Change, Report};

use crate::context::Context;

mod ssm;

pub use ssm::{judge_invocation, split_change, SsmDispatcher, SsmSettings, SSM_INSTANCE_BATCH};

/// Why a host has no report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostFailure {
    /// Run Command did not run the agent to its end (timed out, cancelled,
    /// undeliverable...).
    #[error("SSM status {status}{}: {excerpt}", details.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Status {
        /// The invocation's status.
        status: String,
        /// Its status details, when they say more.
        details: Option<String>,
        /// The end of its output.
        excerpt: String,
    },
    /// The agent refused the change or could not reach HAProxy (exit 2), or died.
    #[error("agent exited with {}: {excerpt}", code.map_or_else(|| "a signal".to_string(), |c| format!("code {c}")))]
    Exit {
        /// The exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// The end of its output.
        excerpt: String,
    },
    /// The agent's output is not a report.
    #[error("unparsable agent output ({error}): {excerpt}")]
    Unparsable {
        /// The parser's reason.
        error: String,
        /// The end of the output.
        excerpt: String,
    },
    /// The invocation has not finished.
    #[error("still running (SSM status {0})")]
    Running(String),
    /// Its result could not be read.
    #[error("its result could not be read: {0}")]
    Unreadable(String),
}

/// What one host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResult {
    /// The host: its instance id.
    pub host: String,
    /// Its report, or why there is none.
    pub outcome: Result<Report, HostFailure>,
}

impl HostResult {
    /// A host that answered with a report.
    pub fn report(host: impl Into<String>, report: Report) -> Self {
        Self {
            host: host.into(),
            outcome: Ok(report),
        }
    }

    /// A host that failed.
    pub fn failed(host: impl Into<String>, failure: HostFailure) -> Self {
        Self {
            host: host.into(),
            outcome: Err(failure),
        }
    }
}

/// One command sent (a change goes out as one command per 50 hosts, and per part when it
/// is too large for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The command id.
    pub command_id: String,
    /// The hosts it targets.
    pub hosts: Vec<String>,
}

/// A command of the project's document, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    /// The command id.
    pub command_id: String,
    /// Its status (`InProgress`, `Success`, `Failed`...).
    pub status: String,
    /// Whether it has ended.
    pub finished: bool,
    /// When it was sent (ms since the epoch).
    pub requested_ms: u64,
    /// The context it carries, when it carries a readable one.
    pub context: Option<Context>,
}

/// Why a change could not be sent, or a command not read.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// An AWS call failed after retries.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Sends changes to every proxy host and reads their reports.
pub trait Dispatcher: Send + Sync {
    /// The proxy hosts a change would go to now (about `group`, for error messages).
    /// Listed apart from [`Dispatcher::send`] so that the reactor can read them while it
    /// reads the group: the two reads overlap instead of adding up before every change.
    fn hosts(&self, group: &str)
        -> impl Future<Output = Result<Vec<String>, DispatchError>> + Send;

    /// Sends `change` with `context` (about `group`, for error messages) to `hosts` (from
    /// [`Dispatcher::hosts`]) and returns at once; no host means nothing is sent and the
    /// list is empty.
    fn send(
        &self,
        hosts: &[String],
        change: &Change,
        context: &Context,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Sent>, DispatchError>> + Send;

    /// Every targeted host's result of command `command_id`.
    fn results(
        &self,
        command_id: &str,
    ) -> impl Future<Output = Result<Vec<HostResult>, DispatchError>> + Send;

    /// The project document's commands sent since `since_ms`.
    fn commands(
        &self,
        since_ms: u64,
    ) -> impl Future<Output = Result<Vec<CommandInfo>, DispatchError>> + Send;
}

/// Reads an agent's answer: its report when the output parses, whatever the exit code
/// (exit 1 means "some member failed", and the report says which); otherwise why not.
pub fn parse_agent_output(
    exit_code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<Report, HostFailure> {
    match exit_code {
        Some(0 | 1) => Report::from_json(stdout.trim()).map_err(|e| HostFailure::Unparsable {
            error: e.to_string(),
            excerpt: excerpt(if stdout.trim().is_empty() {
                stderr
            } else {
                stdout
            }),
        }),
        code => Err(HostFailure::Exit {
            code,
            excerpt: excerpt(if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            }),
        }),
    }
}

/// The last 500 characters of some output, on one line.
pub fn excerpt(s: &str) -> String {
    let s = s.trim();
    let n = s.chars().count();
    let tail: String = s.chars().skip(n.saturating_sub(500)).collect();
    let one_line = tail.replace('\n', " | ");
    if one_line.is_empty() {
        "(no output)".into()
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"host":"h","generation":5,"ok":true,"reloads":0,"outcomes":[{"pool":"web","member":"i-1","status":"up","ms":3}]}"#;

    #[test]
    fn agent_output_is_read_by_the_contract() {
        assert_eq!(
            parse_agent_output(Some(0), REPORT, "").unwrap().generation,
            5
        );
        assert!(
            parse_agent_output(Some(1), REPORT, "").is_ok(),
            "exit 1 still reports"
        );
        let e = parse_agent_output(Some(2), "", "error: HAProxy unreachable\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("code 2") && e.contains("HAProxy unreachable"),
            "{e}"
        );
        let e = parse_agent_output(Some(0), "hello", "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unparsable agent output") && e.contains("hello"),
            "{e}"
        );
        let e = parse_agent_output(None, "", "").unwrap_err().to_string();
        assert!(e.contains("a signal"), "{e}");
    }
}
