//! SSM Run Command of the project's document on every proxy host.
//!
//! 1. The proxy hosts are the running instances tagged `PROXY_TAG_KEY=PROXY_TAG_VALUE`
//!    (one `DescribeInstances`, paginated).
//! 2. `SendCommand` per 50 instance ids (the API's limit), parameters `Change` (base64
//!    of the change JSON) and `Action=apply`. `MaxConcurrency` covers the whole chunk
//!    (every host applies at once: each host health-gates its own adds) and `MaxErrors`
//!    is 100% (one broken host must not cancel the others; each host is judged on its
//!    own report).
//! 3. Waits with backoff: one `ListCommandInvocations` per command per round for the
//!    statuses, then one `GetCommandInvocation` per finished host for its output (24,000
//!    characters, where the list keeps 2,500).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ssm::error::DisplayErrorContext;
use aws_sdk_ssm::types::CommandInvocationStatus;
use base64::Engine;
use infra::Change;

use super::{excerpt, parse_agent_output, DispatchError, Dispatcher, HostResult};

/// Instance ids per `SendCommand` (the API's limit).
pub const SSM_INSTANCE_BATCH: usize = 50;

/// What the SSM dispatcher needs to know.
#[derive(Debug, Clone)]
pub struct SsmSettings {
    /// The project's SSM document (`SSM_DOCUMENT`).
    pub document: String,
    /// The proxy fleet's tag key (`PROXY_TAG_KEY`).
    pub tag_key: String,
    /// The proxy fleet's tag value (`PROXY_TAG_VALUE`).
    pub tag_value: String,
}

/// Sends changes through SSM Run Command.
#[derive(Debug, Clone)]
pub struct SsmDispatcher {
    settings: SsmSettings,
    ssm: aws_sdk_ssm::Client,
    ec2: aws_sdk_ec2::Client,
}

fn api<E: std::error::Error>(api: &'static str, group: &str, e: &E) -> DispatchError {
    infra::aws::api_error(api, &format!("group {group}"), e).into()
}

/// Where one invocation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    Running,
    Finished,
}

fn progress(status: &CommandInvocationStatus) -> Progress {
    match status {
        CommandInvocationStatus::Success
        | CommandInvocationStatus::Failed
        | CommandInvocationStatus::TimedOut
        | CommandInvocationStatus::Cancelled => Progress::Finished,
        _ => Progress::Running,
    }
}

/// Judges one finished invocation: its report (exit 0, or 1 with a report), or the
/// host's failure with the status and the reason.
pub fn judge_invocation(
    status: &str,
    status_details: Option<&str>,
    response_code: i32,
    stdout: &str,
    stderr: &str,
) -> Result<infra::Report, String> {
    match status {
        "Success" | "Failed" if response_code >= 0 => {
            parse_agent_output(Some(response_code), stdout, stderr)
                .map_err(|e| format!("SSM status {status}: {e}"))
        }
        other => Err(format!(
            "SSM status {other}{}: {}",
            status_details
                .filter(|d| *d != other)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            excerpt(if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            })
        )),
    }
}

impl SsmDispatcher {
    /// A dispatcher with clients from `config`.
    pub fn new(settings: SsmSettings, config: &aws_config::SdkConfig) -> Self {
        Self {
            settings,
            ssm: aws_sdk_ssm::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
        }
    }

    /// The running instances of the proxy fleet.
    pub async fn proxy_hosts(&self, group: &str) -> Result<Vec<String>, DispatchError> {
        use aws_sdk_ec2::types::Filter;
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", self.settings.tag_key))
                    .values(&self.settings.tag_value)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .build(),
            )
            .into_paginator()
            .send();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api("DescribeInstances", group, &e))?;
            for r in page.reservations() {
                ids.extend(
                    r.instances()
                        .iter()
                        .filter_map(|i| i.instance_id())
                        .map(str::to_string),
                );
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn send(
        &self,
        hosts: &[String],
        change: &Change,
        group: &str,
    ) -> Result<String, DispatchError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(change.to_json());
        let out = self
            .ssm
            .send_command()
            .document_name(&self.settings.document)
            .set_instance_ids(Some(hosts.to_vec()))
            .parameters("Change", vec![encoded])
            .parameters("Action", vec!["apply".to_string()])
            .max_concurrency(hosts.len().max(1).to_string())
            .max_errors("100%")
            .timeout_seconds(60)
            .comment(format!(
                "haproxy-asg change generation {}",
                change.generation
            ))
            .send()
            .await
            .map_err(|e| api("SendCommand", group, &e))?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| {
                infra::aws::AwsError::Api {
                    api: "SendCommand",
                    subject: format!("group {group}"),
                    message: "the answer has no command id".into(),
                }
                .into()
            })
    }

    /// Statuses of a command's invocations (instance id -> status), one call per page.
    async fn statuses(
        &self,
        command_id: &str,
    ) -> Result<BTreeMap<String, CommandInvocationStatus>, String> {
        let mut pages = self
            .ssm
            .list_command_invocations()
            .command_id(command_id)
            .into_paginator()
            .send();
        let mut out = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DisplayErrorContext(&e).to_string())?;
            for inv in page.command_invocations() {
                if let (Some(id), Some(status)) = (inv.instance_id(), inv.status()) {
                    out.insert(id.to_string(), status.clone());
                }
            }
        }
        Ok(out)
    }

    async fn fetch_result(
        &self,
        command_id: &str,
        instance: &str,
    ) -> Result<infra::Report, String> {
        let out = self
            .ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance)
            .send()
            .await
            .map_err(|e| format!("GetCommandInvocation failed: {}", DisplayErrorContext(&e)))?;
        let status = out
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        judge_invocation(
            &status,
            out.status_details(),
            out.response_code(),
            out.standard_output_content().unwrap_or_default(),
            out.standard_error_content().unwrap_or_default(),
        )
    }

    /// Waits for every invocation of `command_id` on `hosts` until `deadline`.
    async fn wait(&self, command_id: &str, hosts: &[String], deadline: Instant) -> Vec<HostResult> {
        let mut pending: Vec<String> = hosts.to_vec();
        let mut results = Vec::new();
        let mut delay = Duration::from_millis(150);
        let mut last_error: Option<String>;
        loop {
            match self.statuses(command_id).await {
                Ok(statuses) => {
                    last_error = None;
                    let mut still = Vec::new();
                    for host in pending {
                        match statuses.get(&host).map(progress) {
                            Some(Progress::Finished) => {
                                let outcome = self.fetch_result(command_id, &host).await;
                                results.push(HostResult { host, outcome });
                            }
                            _ => still.push(host),
                        }
                    }
                    pending = still;
                }
                Err(e) => {
                    tracing::warn!(command_id, error = %e, "ListCommandInvocations failed; retrying");
                    last_error = Some(e);
                }
            }
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                for host in pending {
                    let reason = match &last_error {
                        Some(e) => format!("no answer before the deadline (last error: {e})"),
                        None => format!(
                            "no answer before the deadline (command {command_id} still running)"
                        ),
                    };
                    results.push(HostResult::failed(host, reason));
                }
                break;
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
        results
    }
}

impl Dispatcher for SsmDispatcher {
    async fn dispatch(
        &self,
        change: &Change,
        group: &str,
        deadline: Instant,
    ) -> Result<Vec<HostResult>, DispatchError> {
        let hosts = self.proxy_hosts(group).await?;
        let mut commands = Vec::new();
        for chunk in hosts.chunks(SSM_INSTANCE_BATCH) {
            let id = self.send(chunk, change, group).await?;
            tracing::info!(command_id = %id, hosts = chunk.len(), generation = change.generation, "change sent");
            commands.push((id, chunk.to_vec()));
        }
        let mut results = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (id, chunk) in commands {
            let me = self.clone();
            tasks.spawn(async move { me.wait(&id, &chunk, deadline).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(r) => results.extend(r),
                Err(e) => tracing::error!(error = %e, "an SSM wait task failed"),
            }
        }
        for host in &hosts {
            if !results.iter().any(|r: &HostResult| &r.host == host) {
                results.push(HostResult::failed(host.clone(), "SSM wait task failed"));
            }
        }
        results.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"host":"h","generation":5,"ok":false,"reloads":0,"outcomes":[{"pool":"web","member":"i-1","status":"failed","reason":"never healthy","ms":3}]}"#;

    #[test]
    fn invocations_are_judged_by_status_exit_code_and_output() {
        assert!(judge_invocation("Success", None, 0, REPORT, "").is_ok());
        // Exit 1: some member failed, and the report says which.
        assert!(judge_invocation("Failed", Some("Failed"), 1, REPORT, "").is_ok());
        let e = judge_invocation("Failed", Some("Failed"), 2, "", "lock timeout").unwrap_err();
        assert!(
            e.contains("SSM status Failed") && e.contains("code 2") && e.contains("lock timeout"),
            "{e}"
        );
        let e = judge_invocation("TimedOut", Some("DeliveryTimedOut"), -1, "", "").unwrap_err();
        assert!(e.contains("TimedOut (DeliveryTimedOut)"), "{e}");
        let e = judge_invocation("Cancelled", None, -1, "", "").unwrap_err();
        assert!(e.contains("Cancelled"), "{e}");
        let e = judge_invocation("Success", None, 0, "not json", "").unwrap_err();
        assert!(e.contains("unparsable"), "{e}");
    }
}
