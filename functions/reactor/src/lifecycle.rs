//! Completing lifecycle actions, keeping them alive, and marking the instances EC2
//! warned about: the boundary ([`LifecycleApi`]) and its Auto Scaling and EC2
//! implementation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use infra::aws::{AwsError, Interruption, INTERRUPTED_TAG};
use infra::GroupName;

use serde::{Deserialize, Serialize};

/// Which lifecycle hook transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// `autoscaling:EC2_INSTANCE_LAUNCHING`.
    Launch,
    /// `autoscaling:EC2_INSTANCE_TERMINATING`.
    Terminate,
}

impl Transition {
    /// The name Auto Scaling uses.
    pub fn as_aws(self) -> &'static str {
        match self {
            Self::Launch => "autoscaling:EC2_INSTANCE_LAUNCHING",
            Self::Terminate => "autoscaling:EC2_INSTANCE_TERMINATING",
        }
    }

    /// The kind of input its lifecycle event is (`launch-lifecycle-action`,
    /// `terminate-lifecycle-action`), as summaries and metrics name it.
    pub fn event_kind(self) -> &'static str {
        match self {
            Self::Launch => "launch-lifecycle-action",
            Self::Terminate => "terminate-lifecycle-action",
        }
    }

    /// Parses the Auto Scaling name.
    pub fn from_aws(s: &str) -> Option<Self> {
        match s {
            "autoscaling:EC2_INSTANCE_LAUNCHING" => Some(Self::Launch),
            "autoscaling:EC2_INSTANCE_TERMINATING" => Some(Self::Terminate),
            _ => None,
        }
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Launch => "launch",
            Self::Terminate => "terminate",
        })
    }
}

/// A lifecycle hook of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Its name.
    pub name: String,
    /// Launch or terminate.
    pub transition: Transition,
    /// How long an action waits without a heartbeat before the default result.
    pub heartbeat_timeout: Duration,
}

/// What Auto Scaling answered a completion or a heartbeat of a lifecycle action (the
/// word is not `Completion`: a heartbeat completes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionAnswer {
    /// Taken: the action completed, or its timeout restarted.
    Done,
    /// There was no such action pending (completed already, or timed out): the reason.
    NotPending(String),
}

/// Lifecycle hooks and actions of Auto Scaling groups.
pub trait LifecycleApi: Send + Sync {
    /// The group's hooks (read once per cold start and cached).
    fn hooks(&self, group: &GroupName) -> impl Future<Output = Result<Vec<Hook>, AwsError>> + Send;

    /// `CompleteLifecycleAction` with `result` (`CONTINUE` or `ABANDON`).
    fn complete(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        token: Option<&str>,
        result: &'static str,
    ) -> impl Future<Output = Result<ActionAnswer, AwsError>> + Send;

    /// `RecordLifecycleActionHeartbeat`: restarts the hook's timeout.
    fn heartbeat(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        token: Option<&str>,
    ) -> impl Future<Output = Result<ActionAnswer, AwsError>> + Send;

    /// Tags `instance` with [`INTERRUPTED_TAG`]: every later read of its group sees it
    /// leaving, so no event and no schedule adds it back while Auto Scaling still lists
    /// it in service. The stateless reactor keeps this one fact on the instance itself.
    fn mark_interrupted(
        &self,
        instance: &str,
        interruption: &Interruption,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `DescribeAutoScalingInstances`: the group, lifecycle state and health of each of
    /// `instances` that a group holds (others are left out).
    fn instances(
        &self,
        instances: &[String],
    ) -> impl Future<Output = Result<Vec<InstanceOfGroup>, AwsError>> + Send;

    /// `SetInstanceHealth(Unhealthy)`, respecting the group's grace period: Auto Scaling
    /// replaces the instance through its terminate hook.
    fn set_unhealthy(&self, instance: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// An instance as Auto Scaling lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceOfGroup {
    /// The instance id.
    pub instance: String,
    /// Its group.
    pub group: GroupName,
    /// `InService`, `Terminating:Wait`, ...
    pub lifecycle_state: String,
    /// Whether Auto Scaling holds it healthy.
    pub healthy: bool,
}

/// [`LifecycleApi`] on Auto Scaling.
#[derive(Debug)]
pub struct AwsLifecycle {
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    hooks: Mutex<HashMap<GroupName, Vec<Hook>>>,
}

fn not_pending<E: ProvideErrorMetadata>(e: &E) -> Option<String> {
    let msg = e.message().unwrap_or_default();
    (e.code() == Some("ValidationError") && msg.contains("No active Lifecycle Action"))
        .then(|| msg.to_string())
}

/// What a lifecycle call's answer means: done, already settled elsewhere, or an error
/// naming the API and the group.
fn settle<T, E>(
    r: Result<T, E>,
    api: &'static str,
    group: &GroupName,
) -> Result<ActionAnswer, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match r {
        Ok(_) => Ok(ActionAnswer::Done),
        Err(e) => match not_pending(&e) {
            Some(m) => Ok(ActionAnswer::NotPending(m)),
            None => Err(infra::aws::api_error(api, &format!("group {group}"), &e)),
        },
    }
}

impl AwsLifecycle {
    /// A client from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            asg: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            hooks: Mutex::new(HashMap::new()),
        }
    }

    async fn complete_once(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        token: Option<&str>,
        result: &'static str,
    ) -> Result<ActionAnswer, AwsError> {
        let r = self
            .asg
            .complete_lifecycle_action()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance)
            .set_lifecycle_action_token(token.map(str::to_string))
            .lifecycle_action_result(result)
            .send()
            .await;
        settle(r, "CompleteLifecycleAction", group)
    }

    async fn heartbeat_once(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        token: Option<&str>,
    ) -> Result<ActionAnswer, AwsError> {
        let r = self
            .asg
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance)
            .set_lifecycle_action_token(token.map(str::to_string))
            .send()
            .await;
        settle(r, "RecordLifecycleActionHeartbeat", group)
    }
}

impl LifecycleApi for AwsLifecycle {
    async fn hooks(&self, group: &GroupName) -> Result<Vec<Hook>, AwsError> {
        if let Ok(cache) = self.hooks.lock() {
            if let Some(h) = cache.get(group) {
                return Ok(h.clone());
            }
        }
        let out = self
            .asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .map_err(|e| {
                infra::aws::api_error("DescribeLifecycleHooks", &format!("group {group}"), &e)
            })?;
        let hooks: Vec<Hook> = out
            .lifecycle_hooks()
            .iter()
            .filter_map(|h| {
                Some(Hook {
                    name: h.lifecycle_hook_name()?.to_string(),
                    transition: Transition::from_aws(h.lifecycle_transition()?)?,
                    heartbeat_timeout: Duration::from_secs(
                        u64::try_from(h.heartbeat_timeout().unwrap_or(3600)).unwrap_or(3600),
                    ),
                })
            })
            .collect();
        if let Ok(mut cache) = self.hooks.lock() {
            cache.insert(group.clone(), hooks.clone());
        }
        Ok(hooks)
    }

    async fn complete(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        token: Option<&str>,
        result: &'static str,
    ) -> Result<ActionAnswer, AwsError> {
        let first = self
            .complete_once(group, hook, instance, token, result)
            .await?;
        match (first, token) {
            // A token from an old or duplicated event: the instance id finds the live one.
            (ActionAnswer::NotPending(_), Some(_)) => {
                self.complete_once(group, hook, instance, None, result)
                    .await
            }
            (c, _) => Ok(c),
        }
    }

    async fn heartbeat(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        token: Option<&str>,
    ) -> Result<ActionAnswer, AwsError> {
        let first = self.heartbeat_once(group, hook, instance, token).await?;
        match (first, token) {
            (ActionAnswer::NotPending(_), Some(_)) => {
                self.heartbeat_once(group, hook, instance, None).await
            }
            (c, _) => Ok(c),
        }
    }

    async fn mark_interrupted(
        &self,
        instance: &str,
        interruption: &Interruption,
    ) -> Result<(), AwsError> {
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(INTERRUPTED_TAG)
            .value(interruption.tag_value())
            .build();
        self.ec2
            .create_tags()
            .resources(instance)
            .tags(tag)
            .send()
            .await
            .map_err(|e| {
                infra::aws::api_error("CreateTags", &format!("instance {instance}"), &e)
            })?;
        Ok(())
    }

    async fn instances(&self, instances: &[String]) -> Result<Vec<InstanceOfGroup>, AwsError> {
        let mut out = Vec::new();
        // The API takes 50 ids a call.
        for chunk in instances.chunks(50) {
            let answer = self
                .asg
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    infra::aws::api_error("DescribeAutoScalingInstances", "instances", &e)
                })?;
            out.extend(answer.auto_scaling_instances().iter().filter_map(|i| {
                Some(InstanceOfGroup {
                    instance: i.instance_id()?.to_string(),
                    group: GroupName::new(i.auto_scaling_group_name()?).ok()?,
                    lifecycle_state: i.lifecycle_state()?.to_string(),
                    healthy: i
                        .health_status()
                        .is_none_or(|h| h.eq_ignore_ascii_case("healthy")),
                })
            }));
        }
        Ok(out)
    }

    async fn set_unhealthy(&self, instance: &str) -> Result<(), AwsError> {
        self.asg
            .set_instance_health()
            .instance_id(instance)
            .health_status("Unhealthy")
            .should_respect_grace_period(true)
            .send()
            .await
            .map_err(|e| {
                infra::aws::api_error("SetInstanceHealth", &format!("instance {instance}"), &e)
            })?;
        Ok(())
    }
}
