//! Getting a change to every proxy host and its report back.
//!
//! [`Dispatcher`] is the boundary: [`SsmDispatcher`] (SSM Run Command of the project's
//! document, in AWS) and [`LocalDispatcher`] (runs the agent binary directly: the demo
//! and the end-to-end tests) implement it; unit tests use fakes.

use std::future::Future;
use std::time::Instant;

use infra::{Change, Report};

mod local;
mod ssm;

pub use local::LocalDispatcher;
pub use ssm::{SsmDispatcher, SsmSettings, SSM_INSTANCE_BATCH};

/// What one host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResult {
    /// The host: its instance id (SSM) or `local-N` (local agents).
    pub host: String,
    /// Its report, or why there is none (the host failed, timed out, printed garbage).
    pub outcome: Result<Report, String>,
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
    pub fn failed(host: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            outcome: Err(reason.into()),
        }
    }
}

/// Why a change could not be sent at all.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// An AWS call failed after retries.
    #[error(transparent)]
    Aws(#[from] infra::aws::AwsError),
}

/// Sends a change to every proxy host and collects each host's report.
pub trait Dispatcher: Send + Sync {
    /// Sends `change` (about `group`, for error messages) and waits for every host's
    /// answer until `deadline`; a host that has not answered by then is reported as
    /// failed with that reason.
    fn dispatch(
        &self,
        change: &Change,
        group: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<HostResult>, DispatchError>> + Send;
}

/// Reads an agent's answer: its report when the output parses, whatever the exit code
/// (exit 1 means "some member failed", and the report says which); otherwise a
/// failure with the exit code and the error output.
pub fn parse_agent_output(
    exit_code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<Report, String> {
    match exit_code {
        Some(0 | 1) => Report::from_json(stdout.trim()).map_err(|e| {
            format!(
                "unparsable agent output ({e}): {}",
                excerpt(if stdout.trim().is_empty() {
                    stderr
                } else {
                    stdout
                })
            )
        }),
        code => Err(format!(
            "agent exited with {}: {}",
            code.map_or_else(|| "a signal".to_string(), |c| format!("code {c}")),
            excerpt(if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            })
        )),
    }
}

/// The last 500 characters of some output, on one line.
pub fn excerpt(s: &str) -> String {
    let s = s.trim();
    let tail: String = {
        let n = s.chars().count();
        s.chars().skip(n.saturating_sub(500)).collect()
    };
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
        let e = parse_agent_output(Some(2), "", "error: HAProxy unreachable\n").unwrap_err();
        assert!(
            e.contains("code 2") && e.contains("HAProxy unreachable"),
            "{e}"
        );
        let e = parse_agent_output(Some(0), "hello", "").unwrap_err();
        assert!(
            e.contains("unparsable agent output") && e.contains("hello"),
            "{e}"
        );
        let e = parse_agent_output(None, "", "").unwrap_err();
        assert!(e.contains("a signal"), "{e}");
    }
}
