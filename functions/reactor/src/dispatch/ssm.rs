//! SSM Run Command of the project's document on every proxy host.
//!
//! 1. The proxies are the in-service instances of the proxy group (`PROXY_GROUP`,
//!    one `DescribeAutoScalingGroups`, or the reactor's own read of the groups a change
//!    is about, [`Dispatcher::hosts_among`]) that carry the proxy tag (`PROXY_TAG_KEY` =
//!    `PROXY_TAG_VALUE`, one `DescribeTags` of the ids not seen with it in the last
//!    minute, [`super::tags`]): tagging another instance does not make it a proxy, and a
//!    proxy leaving service gets nothing more.
//! 2. A change whose parameters would pass Run Command's 64 KB limit is split into parts
//!    of the same generation ([`split_change`]).
//! 3. `SendCommand` per part and per 50 instance ids (the API's limit), a few side by
//!    side, parameters `Change` (base64 of the change JSON) and `Action=apply`;
//!    `TimeoutSeconds` 60 (the delivery timeout: the agent returns as soon as its
//!    service accepted the change), `MaxConcurrency` the whole chunk, `MaxErrors` 100%
//!    (one broken host must not cancel the others). Nothing waits for the hosts and
//!    nothing is read back.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use infra::aws::{api_error, AwsError};
use infra::GroupName;
use infra::{Change, HostId, MemberId, PoolChange};

use super::tags::TagMemory;
use super::{DispatchError, Dispatcher, Sent};
use crate::join::join_all;

/// Values per EC2 filter (the API's limit), so instance ids per `DescribeTags`.
const TAG_FILTER_VALUES: usize = 200;

/// Instance ids per `SendCommand` (the API's limit).
pub const SSM_INSTANCE_BATCH: usize = 50;

/// `SendCommand` calls in flight at once: a change for 100 proxies is 2 or 3 commands,
/// sent side by side instead of one after the other (each is a round trip of about
/// 100 ms); a few at once stays inside SSM's request rate, whose figure AWS does not
/// publish for SendCommand (the emulator models it as a token bucket, tests/emulator).
const SENDS_AT_ONCE: usize = 5;

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
    /// The proxy fleet's group (`PROXY_GROUP`).
    pub proxy_group: GroupName,
}

/// Sends changes through SSM Run Command.
#[derive(Debug, Clone)]
pub struct SsmDispatcher {
    settings: SsmSettings,
    ssm: aws_sdk_ssm::Client,
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    /// The proxies seen with the proxy tag lately (shared by clones).
    tags: Arc<Mutex<TagMemory>>,
}

fn api<E: std::error::Error>(api: &'static str, subject: &str, e: &E) -> DispatchError {
    api_error(api, subject, e).into()
}

/// The encoded size of a change's parameters.
fn encoded_len(change: &Change) -> usize {
    change.to_json().len().div_ceil(3) * 4 + "apply".len()
}

/// Splits a change whose parameters pass `budget` bytes into parts of the same
/// generation, each within it (members of a pool spread over parts in order). A change
/// that fits is one part.
pub fn split_change(change: &Change, budget: usize) -> Vec<Change> {
    if encoded_len(change) <= budget {
        return vec![change.clone()];
    }
    enum Item<'a> {
        Add(&'a infra::Member),
        Remove(&'a MemberId),
    }
    let per_item = |n: usize| n.div_ceil(3) * 4 + 8;
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
            let len = match item {
                Item::Add(m) => serde_json::to_string(m).map_or(256, |j| j.len()),
                // The id in `remove`, and in `drain_by_ms` with its deadline when it has one.
                Item::Remove(id) => {
                    let deadline = p
                        .drain_by_ms
                        .get(id)
                        .map_or(0, |by| id.as_str().len() + by.to_string().len() + 4);
                    id.as_str().len() + 3 + deadline
                }
            };
            let cost = per_item(len + p.pool.as_str().len());
            if size + cost > budget.saturating_sub(512) && size > 0 {
                parts.push(std::mem::take(&mut part));
                size = 0;
            }
            size += cost;
            if part.last().is_none_or(|last| last.pool != p.pool) {
                part.push(PoolChange {
                    pool: p.pool.clone(),
                    add: Vec::new(),
                    remove: Vec::new(),
                    drain_by_ms: Default::default(),
                });
            }
            let Some(entry) = part.last_mut() else {
                continue;
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
    parts
        .into_iter()
        .map(|pools| Change::new(change.generation, pools))
        .collect()
}

impl SsmDispatcher {
    /// A dispatcher with clients from `config`.
    pub fn new(settings: SsmSettings, config: &aws_config::SdkConfig) -> Self {
        Self {
            settings,
            ssm: aws_sdk_ssm::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            asg: aws_sdk_autoscaling::Client::new(config),
            tags: Arc::default(),
        }
    }

    async fn send_one(
        &self,
        hosts: &[HostId],
        change: &Change,
        label: &str,
    ) -> Result<String, DispatchError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(change.to_json());
        let subject = format!("the change for {label}");
        let out = self
            .ssm
            .send_command()
            .document_name(&self.settings.document)
            .set_instance_ids(Some(hosts.iter().map(ToString::to_string).collect()))
            .parameters("Change", vec![encoded])
            .parameters("Action", vec!["apply".to_string()])
            .max_concurrency(hosts.len().max(1).to_string())
            .max_errors("100%")
            .timeout_seconds(DELIVERY_TIMEOUT_S)
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

    /// The remembered tag verdicts (a poisoned lock is still a usable memory).
    fn memory(&self) -> std::sync::MutexGuard<'_, TagMemory> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of `ids` that carry the proxy tag (`DescribeTags`).
    async fn tagged(&self, ids: &[String]) -> Result<Vec<String>, DispatchError> {
        use aws_sdk_ec2::types::Filter;
        let subject = format!("the proxies of group {}", self.settings.proxy_group);
        let mut tagged = Vec::new();
        for chunk in ids.chunks(TAG_FILTER_VALUES) {
            let filter = |name: &str, values: &[String]| {
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.to_vec()))
                    .build()
            };
            let mut pages = self
                .ec2
                .describe_tags()
                .filters(filter("resource-id", chunk))
                .filters(filter("key", std::slice::from_ref(&self.settings.tag_key)))
                .filters(filter(
                    "value",
                    std::slice::from_ref(&self.settings.tag_value),
                ))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| api("DescribeTags", &subject, &e))?;
                tagged.extend(
                    page.tags()
                        .iter()
                        .filter_map(|t| t.resource_id())
                        .map(str::to_string),
                );
            }
        }
        Ok(tagged)
    }

    /// The in-service instances of the proxy group.
    async fn in_service(&self) -> Result<Vec<String>, DispatchError> {
        let group = &self.settings.proxy_group;
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group.as_str())
            .send()
            .await
            .map_err(|e| {
                api(
                    "DescribeAutoScalingGroups",
                    &format!("proxy group {group}"),
                    &e,
                )
            })?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .filter(|g| g.auto_scaling_group_name() == Some(group.as_str()))
            .flat_map(|g| g.instances())
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect())
    }
}

/// SendCommand's `TimeoutSeconds`: how long Run Command may take to deliver the command
/// (the agent answers as soon as its service accepted the change).
pub const DELIVERY_TIMEOUT_S: i32 = 60;

impl Dispatcher for SsmDispatcher {
    async fn hosts(&self) -> Result<Vec<HostId>, DispatchError> {
        let in_service = self.in_service().await?;
        self.hosts_among(in_service).await
    }

    async fn hosts_among(&self, in_service: Vec<String>) -> Result<Vec<HostId>, DispatchError> {
        let now = Instant::now();
        let unknown = self.memory().unknown(&in_service, now);
        if !unknown.is_empty() {
            let tagged = self.tagged(&unknown).await?;
            self.memory().record(&tagged, now);
        }
        let mut ids: Vec<HostId> = self
            .memory()
            .tagged(&in_service, now)
            .into_iter()
            .filter_map(|id| HostId::new(id).ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn send(
        &self,
        hosts: &[HostId],
        change: &Change,
        label: &str,
    ) -> Result<Vec<Sent>, DispatchError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let parts = split_change(change, PARAMETERS_BUDGET);
        if parts.len() > 1 {
            tracing::info!(
                parts = parts.len(),
                generation = change.generation,
                "change split to fit Run Command's parameter limit"
            );
        }
        let commands: Vec<(&Change, &[HostId])> = parts
            .iter()
            .flat_map(|part| hosts.chunks(SSM_INSTANCE_BATCH).map(move |c| (part, c)))
            .collect();
        let mut sent = Vec::with_capacity(commands.len());
        let mut first_error = None;
        for batch in commands.chunks(SENDS_AT_ONCE) {
            let calls = batch
                .iter()
                .map(|(part, chunk)| self.send_one(chunk, part, label));
            for ((_, chunk), result) in batch.iter().zip(join_all(calls.collect()).await) {
                match result {
                    Ok(id) => {
                        tracing::debug!(command_id = %id, hosts = chunk.len(), generation = change.generation, "command sent");
                        sent.push(Sent {
                            command_id: id,
                            hosts: chunk.to_vec(),
                        });
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::{Member, PoolName, Port};

    fn big(n: usize) -> Change {
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
        let gone = MemberId::new("i-gone").unwrap();
        Change::new(
            9,
            vec![PoolChange {
                pool: web,
                add,
                remove: vec![gone.clone()],
                drain_by_ms: [(gone, 77)].into(),
            }],
        )
    }

    #[test]
    fn a_change_too_large_for_one_command_is_split_keeping_every_member() {
        let change = big(5000);
        assert!(encoded_len(&change) > PARAMETERS_BUDGET);
        let parts = split_change(&change, PARAMETERS_BUDGET);
        assert!(parts.len() > 1);
        let mut members = 0;
        for c in &parts {
            assert!(encoded_len(c) <= PARAMETERS_BUDGET, "{}", encoded_len(c));
            assert_eq!(c.generation, 9);
            members += c
                .pools
                .iter()
                .map(|p| p.add.len() + p.remove.len())
                .sum::<usize>();
            // Each part is a valid message for the agent.
            assert_eq!(Change::from_json(&c.to_json()).unwrap(), *c);
        }
        assert_eq!(members, 5001);
        let last = parts.last().unwrap();
        assert_eq!(
            last.pools[0]
                .drain_by_ms
                .values()
                .copied()
                .collect::<Vec<_>>(),
            [77]
        );
        assert_eq!(split_change(&big(3), PARAMETERS_BUDGET).len(), 1);
    }
}
