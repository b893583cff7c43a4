//! SSM Run Command of the project's document on every proxy host.
//!
//! Sending:
//! 1. The proxy hosts are the running instances tagged `PROXY_TAG_KEY=PROXY_TAG_VALUE`
//!    (one `DescribeInstances`, paginated; the reactor lists them while it reads the
//!    group, see [`Dispatcher::hosts`]).
//! 2. A change whose parameters would pass Run Command's 64 KB limit is split into parts
//!    of the same generation ([`split_change`]); each action goes with the part holding
//!    its instance.
//! 3. `SendCommand` per part and per 50 instance ids (the API's limit), parameters
//!    `Change` (base64 of the change JSON), `Action=apply` and `Context` (base64 of the
//!    completion context). `MaxConcurrency` covers the whole chunk (every host applies at
//!    once) and `MaxErrors` is 100% (one broken host must not cancel the others; each
//!    host is judged on its own report). Nothing waits for the hosts.
//!
//! Reading (when the command's status-change event comes): one
//! `ListCommandInvocations` for the statuses, then one `GetCommandInvocation` per
//! finished host for its output (24,000 characters, where the list keeps 2,500).

use std::collections::BTreeSet;

use aws_sdk_ssm::types::{CommandFilter, CommandFilterKey, CommandInvocationStatus};
use base64::Engine;
use infra::aws::{api_error, AwsError};
use infra::{Change, MemberId, PoolChange};

use super::{
    excerpt, parse_agent_output, CommandInfo, DispatchError, Dispatcher, HostFailure, HostResult,
    Sent,
};
use crate::context::Context;

/// Instance ids per `SendCommand` (the API's limit).
pub const SSM_INSTANCE_BATCH: usize = 50;

/// The bytes of parameters one command may carry: Run Command refuses a request whose
/// document and parameters pass 64 KB; the document takes about 2 KB of it.
pub const PARAMETERS_BUDGET: usize = 60_000;

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

/// Sends changes through SSM Run Command and reads their invocations.
#[derive(Debug, Clone)]
pub struct SsmDispatcher {
    settings: SsmSettings,
    ssm: aws_sdk_ssm::Client,
    ec2: aws_sdk_ec2::Client,
}

fn api<E: std::error::Error>(api: &'static str, subject: &str, e: &E) -> DispatchError {
    api_error(api, subject, e).into()
}

/// Whether an invocation has ended.
fn finished(status: &CommandInvocationStatus) -> bool {
    matches!(
        status,
        CommandInvocationStatus::Success
            | CommandInvocationStatus::Failed
            | CommandInvocationStatus::TimedOut
            | CommandInvocationStatus::Cancelled
    )
}

/// Judges one finished invocation: its report (exit 0, or 1 with a report), or the
/// host's failure with the status and the reason.
pub fn judge_invocation(
    status: &str,
    status_details: Option<&str>,
    response_code: i32,
    stdout: &str,
    stderr: &str,
) -> Result<infra::Report, HostFailure> {
    match status {
        "Success" | "Failed" if response_code >= 0 => {
            parse_agent_output(Some(response_code), stdout, stderr)
        }
        other => Err(HostFailure::Status {
            status: other.to_string(),
            details: status_details
                .filter(|d| *d != other && !d.is_empty())
                .map(str::to_string),
            excerpt: excerpt(if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            }),
        }),
    }
}

/// The encoded size of a part's parameters.
fn encoded_len(change: &Change, context: &Context) -> usize {
    let b64 = |n: usize| n.div_ceil(3) * 4;
    b64(change.to_json().len()) + context.encode().len() + "apply".len()
}

/// Splits a change whose parameters pass `budget` bytes into parts of the same
/// generation, each within it (members of a pool spread over parts in order); every
/// action goes with the part that names its instance (the first part when none does).
/// A change that fits is one part.
pub fn split_change(change: &Change, context: &Context, budget: usize) -> Vec<(Change, Context)> {
    if encoded_len(change, context) <= budget {
        return vec![(change.clone(), context.clone())];
    }
    // The parts fill in order, each entry sized by its own JSON (base64 adds a third).
    enum Item<'a> {
        Add(&'a infra::Member),
        Remove(&'a MemberId),
    }
    let per_item = |n: usize| n.div_ceil(3) * 4 + 8;
    let action_size = |a: &crate::context::ActionRef| {
        per_item(serde_json::to_string(a).map(|s| s.len()).unwrap_or(512))
    };
    let mut parts: Vec<Vec<PoolChange>> = Vec::new();
    let mut part: Vec<PoolChange> = Vec::new();
    let mut size = 0usize;
    for p in &change.pools {
        let items = p
            .add
            .iter()
            .map(Item::Add)
            .chain(p.remove.iter().map(Item::Remove));
        for item in items {
            let (id, json) = match item {
                Item::Add(m) => (&m.id, serde_json::to_string(m).unwrap_or_default()),
                Item::Remove(id) => {
                    let deadline = p
                        .drain_by_ms
                        .get(id)
                        .map(|by| {
                            format!("{}:{by},", serde_json::to_string(id).unwrap_or_default())
                        })
                        .unwrap_or_default();
                    (
                        id,
                        serde_json::to_string(id).unwrap_or_default() + &deadline,
                    )
                }
            };
            let actions: usize = context
                .actions
                .iter()
                .filter(|a| &a.instance == id)
                .map(action_size)
                .sum();
            let cost = per_item(json.len() + p.pool.as_str().len()) + actions;
            if size + cost > budget.saturating_sub(512) && size > 0 {
                parts.push(std::mem::take(&mut part));
                size = 0;
            }
            size += cost;
            let entry = match part.last_mut() {
                Some(last) if last.pool == p.pool => last,
                _ => {
                    part.push(PoolChange {
                        pool: p.pool.clone(),
                        add: Vec::new(),
                        remove: Vec::new(),
                        drain_by_ms: Default::default(),
                    });
                    match part.last_mut() {
                        Some(e) => e,
                        None => continue,
                    }
                }
            };
            match item {
                Item::Add(m) => entry.add.push(m.clone()),
                Item::Remove(id) => {
                    entry.remove.push(id.clone());
                    if let Some(by) = p.drain_by_ms.get(id) {
                        entry.drain_by_ms.insert(id.clone(), *by);
                    }
                }
            }
        }
    }
    if !part.is_empty() || parts.is_empty() {
        parts.push(part);
    }
    let mut placed: BTreeSet<usize> = BTreeSet::new();
    let mut out: Vec<(Change, Context)> = parts
        .into_iter()
        .map(|pools| {
            let names: BTreeSet<&MemberId> = pools
                .iter()
                .flat_map(|p| p.add.iter().map(|m| &m.id).chain(p.remove.iter()))
                .collect();
            let actions = context
                .actions
                .iter()
                .enumerate()
                .filter(|(i, a)| names.contains(&a.instance) && placed.insert(*i))
                .map(|(_, a)| a.clone())
                .collect();
            let mut part_context = Context::new(context.generation, actions);
            part_context.riders = context
                .riders
                .iter()
                .filter(|r| names.contains(&r.instance))
                .cloned()
                .collect();
            (Change::new(change.generation, pools), part_context)
        })
        .collect();
    let rest: Vec<_> = context
        .actions
        .iter()
        .enumerate()
        .filter(|(i, _)| !placed.contains(i))
        .map(|(_, a)| a.clone())
        .collect();
    if let Some(first) = out.first_mut() {
        first.1.actions.extend(rest);
    }
    out
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

    async fn send_one(
        &self,
        hosts: &[String],
        change: &Change,
        context: &Context,
        group: &str,
    ) -> Result<String, DispatchError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(change.to_json());
        let subject = format!("group {group}");
        let out = self
            .ssm
            .send_command()
            .document_name(&self.settings.document)
            .set_instance_ids(Some(hosts.to_vec()))
            .parameters("Change", vec![encoded])
            .parameters("Action", vec!["apply".to_string()])
            .parameters("Context", vec![context.encode()])
            .max_concurrency(hosts.len().max(1).to_string())
            .max_errors("100%")
            .timeout_seconds(60)
            .comment(format!(
                "haproxy-asg change generation {}",
                change.generation
            ))
            .send()
            .await
            .map_err(|e| api("SendCommand", &subject, &e))?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| {
                AwsError::Api {
                    api: "SendCommand",
                    subject,
                    message: "the answer has no command id".into(),
                }
                .into()
            })
    }

    async fn fetch_result(
        &self,
        command_id: &str,
        instance: &str,
    ) -> Result<infra::Report, HostFailure> {
        let out = self
            .ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance)
            .send()
            .await
            .map_err(|e| {
                HostFailure::Unreadable(
                    api_error("GetCommandInvocation", &format!("command {command_id}"), &e)
                        .to_string(),
                )
            })?;
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
}

impl Dispatcher for SsmDispatcher {
    /// The running instances of the proxy fleet.
    async fn hosts(&self, group: &str) -> Result<Vec<String>, DispatchError> {
        use aws_sdk_ec2::types::Filter;
        // The state first: an evaluator that stops at the first filter an instance fails
        // (the emulator does) skips the terminated instances without reading their tags.
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", self.settings.tag_key))
                    .values(&self.settings.tag_value)
                    .build(),
            )
            .into_paginator()
            .send();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                api(
                    "DescribeInstances",
                    &format!("the proxy hosts of group {group}"),
                    &e,
                )
            })?;
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
        context: &Context,
        group: &str,
    ) -> Result<Vec<Sent>, DispatchError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let parts = split_change(change, context, PARAMETERS_BUDGET);
        if parts.len() > 1 {
            tracing::info!(
                parts = parts.len(),
                generation = change.generation,
                "change split to fit Run Command's parameter limit"
            );
        }
        let mut sent = Vec::new();
        for (part, ctx) in &parts {
            for chunk in hosts.chunks(SSM_INSTANCE_BATCH) {
                let id = self.send_one(chunk, part, ctx, group).await?;
                tracing::info!(command_id = %id, hosts = chunk.len(), generation = change.generation, actions = ctx.actions.len(), "change sent");
                sent.push(Sent {
                    command_id: id,
                    hosts: chunk.to_vec(),
                });
            }
        }
        Ok(sent)
    }

    async fn results(&self, command_id: &str) -> Result<Vec<HostResult>, DispatchError> {
        let subject = format!("command {command_id}");
        let mut pages = self
            .ssm
            .list_command_invocations()
            .command_id(command_id)
            .into_paginator()
            .send();
        let mut statuses = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api("ListCommandInvocations", &subject, &e))?;
            for inv in page.command_invocations() {
                if let (Some(id), Some(status)) = (inv.instance_id(), inv.status()) {
                    statuses.push((id.to_string(), status.clone()));
                }
            }
        }
        statuses.sort_by(|a, b| a.0.cmp(&b.0));
        statuses.dedup_by(|a, b| a.0 == b.0);
        let mut tasks = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for (host, status) in statuses {
            if !finished(&status) {
                results.push(HostResult::failed(
                    host,
                    HostFailure::Running(status.as_str().to_string()),
                ));
                continue;
            }
            let (me, id) = (self.clone(), command_id.to_string());
            tasks.spawn(async move {
                let outcome = me.fetch_result(&id, &host).await;
                HostResult { host, outcome }
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!(error = %e, "reading an invocation failed"),
            }
        }
        results.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(results)
    }

    async fn commands(&self, since_ms: u64) -> Result<Vec<CommandInfo>, DispatchError> {
        let since = aws_sdk_ssm::primitives::DateTime::from_millis(
            i64::try_from(since_ms).unwrap_or(i64::MAX),
        );
        let since_text = since
            .fmt(aws_sdk_ssm::primitives::DateTimeFormat::DateTime)
            .unwrap_or_default();
        let filters = [
            (
                CommandFilterKey::DocumentName,
                self.settings.document.clone(),
            ),
            (CommandFilterKey::InvokedAfter, since_text),
        ];
        let mut req = self.ssm.list_commands();
        for (key, value) in filters {
            if let Ok(f) = CommandFilter::builder().key(key).value(value).build() {
                req = req.filters(f);
            }
        }
        let subject = format!("document {}", self.settings.document);
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api("ListCommands", &subject, &e))?;
            for c in page.commands() {
                // Filters are applied here too: an emulator may ignore them.
                if c.document_name() != Some(self.settings.document.as_str()) {
                    continue;
                }
                let requested_ms = c
                    .requested_date_time()
                    .and_then(|t| u64::try_from(t.to_millis().ok()?).ok())
                    .unwrap_or(0);
                if requested_ms < since_ms {
                    continue;
                }
                let Some(id) = c.command_id() else { continue };
                let status = c
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                let context = c
                    .parameters()
                    .and_then(|p| p.get("Context"))
                    .and_then(|v| v.first())
                    .and_then(|v| Context::decode(v).ok().flatten());
                out.push(CommandInfo {
                    command_id: id.to_string(),
                    finished: matches!(
                        status.as_str(),
                        "Success" | "Failed" | "TimedOut" | "Cancelled"
                    ),
                    status,
                    requested_ms,
                    context,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ActionRef;
    use crate::event::Transition;
    use infra::{Member, PoolName, Port};

    const REPORT: &str = r#"{"host":"h","generation":5,"ok":false,"reloads":0,"outcomes":[{"pool":"web","member":"i-1","status":"failed","reason":"never healthy","ms":3}]}"#;

    #[test]
    fn invocations_are_judged_by_status_exit_code_and_output() {
        assert!(judge_invocation("Success", None, 0, REPORT, "").is_ok());
        // Exit 1: some member failed, and the report says which.
        assert!(judge_invocation("Failed", Some("Failed"), 1, REPORT, "").is_ok());
        let e = judge_invocation("Failed", Some("Failed"), 2, "", "lock timeout")
            .unwrap_err()
            .to_string();
        assert!(e.contains("code 2") && e.contains("lock timeout"), "{e}");
        let e = judge_invocation("TimedOut", Some("ExecutionTimedOut"), -1, "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("TimedOut (ExecutionTimedOut)"), "{e}");
        let e = judge_invocation("Cancelled", None, -1, "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Cancelled"), "{e}");
        let e = judge_invocation("Success", None, 0, "not json", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unparsable"), "{e}");
    }

    fn big(n: usize) -> (Change, Context) {
        let web = PoolName::new("web").unwrap();
        let add: Vec<Member> = (0..n)
            .map(|i| {
                Member::new(
                    MemberId::new(format!("i-{i:017x}")).unwrap(),
                    std::net::IpAddr::from([
                        10,
                        (i / 65536) as u8,
                        (i / 256 % 256) as u8,
                        (i % 256) as u8,
                    ]),
                    Port::new(8080).unwrap(),
                )
                .unwrap()
            })
            .collect();
        let actions = (0..n)
            .step_by(50)
            .map(|i| ActionRef {
                group: "web-asg".into(),
                instance: add[i].id.clone(),
                transition: Transition::Launch,
                hooks: vec!["launch".into()],
                token: Some("87654321-4321-4321-4321-210987654321".into()),
                started_ms: Some(1),
                pools: vec![web.clone()],
            })
            .collect();
        (
            Change::new(
                9,
                vec![PoolChange {
                    pool: web,
                    add,
                    remove: vec![MemberId::new("i-gone").unwrap()],
                    drain_by_ms: Default::default(),
                }],
            ),
            Context::new(9, actions),
        )
    }

    #[test]
    fn a_change_too_large_for_one_command_is_split_keeping_every_member_and_action() {
        let (change, context) = big(5000);
        assert!(encoded_len(&change, &context) > PARAMETERS_BUDGET);
        let parts = split_change(&change, &context, PARAMETERS_BUDGET);
        assert!(parts.len() > 1);
        let mut members = 0;
        let mut actions = 0;
        for (c, ctx) in &parts {
            assert!(
                encoded_len(c, ctx) <= PARAMETERS_BUDGET,
                "{}",
                encoded_len(c, ctx)
            );
            assert_eq!((c.generation, ctx.generation), (9, 9));
            members += c
                .pools
                .iter()
                .map(|p| p.add.len() + p.remove.len())
                .sum::<usize>();
            for a in &ctx.actions {
                assert!(
                    c.pools
                        .iter()
                        .any(|p| p.add.iter().any(|m| m.id == a.instance)),
                    "an action travels with its instance"
                );
            }
            actions += ctx.actions.len();
            // Each part is a valid message for the agent.
            assert_eq!(Change::from_json(&c.to_json()).unwrap(), *c);
        }
        assert_eq!(members, 5001);
        assert_eq!(actions, context.actions.len());
        let (small, ctx) = big(3);
        assert_eq!(split_change(&small, &ctx, PARAMETERS_BUDGET).len(), 1);
    }
}
