//! `EC2 Instance Launch/Terminate/Detach Successful/Unsuccessful`: an Auto Scaling
//! activity ended. AWS's sample (Amazon EC2 Auto Scaling event reference, successful
//! scaling events; `tests/samples`):
//!
//! ```json
//! { "version": "0", "id": "12345678-1234-1234-1234-123456789012",
//!   "detail-type": "EC2 Instance Launch Successful", "source": "aws.autoscaling",
//!   "account": "123456789012", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-west-2",
//!   "resources": [ "auto-scaling-group-arn", "instance-arn" ],
//!   "detail": { "StatusCode": "InProgress",
//!     "Description": "Launching a new EC2 instance: i-12345678",
//!     "AutoScalingGroupName": "my-asg", "ActivityId": "87654321-4321-4321-4321-210987654321",
//!     "Details": { "Availability Zone": "us-west-2b", "Subnet ID": "subnet-12345678" },
//!     "RequestId": "12345678-1234-1234-1234-123456789012", "StatusMessage": "",
//!     "EndTime": "yyyy-mm-ddThh:mm:ssZ", "EC2InstanceId": "i-1234567890abcdef0",
//!     "StartTime": "yyyy-mm-ddThh:mm:ssZ",
//!     "Cause": "description-text", "Origin": "EC2", "Destination": "AutoScalingGroup" } }
//! ```
//!
//! The group is read again and the events' instances (only them: members in
//! transition have their own lifecycle events) are sent as the truth has them. What
//! changes nothing is not sent: a launch or termination that a lifecycle hook of ours
//! gated already went through our change and was decided from every host's report; a
//! launch into the warm pool (`Destination: WarmPool`) is no launch into the group; an
//! activity that created no instance (`EC2InstanceId` null or empty) names nobody. A
//! detached instance is no longer listed, so it leaves the pools drained.

use infra::aws::Discovery;
use infra::GroupName;
use serde::Deserialize;

use super::{
    check_source, group_name, ignored, non_empty, null_as_empty, parse_rfc3339_ms, Envelope, Input,
};
use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::lifecycle::Transition;
use crate::outgoing::Outgoing;
use crate::plan::Scope;
use crate::summary::Summary;

/// The activity detail types.
pub const DETAIL_TYPES: [&str; 6] = [
    "EC2 Instance Launch Successful",
    "EC2 Instance Launch Unsuccessful",
    "EC2 Instance Terminate Successful",
    "EC2 Instance Terminate Unsuccessful",
    "EC2 Instance Detach Successful",
    "EC2 Instance Detach Unsuccessful",
];

/// The detail of an activity event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivityDetail {
    /// The instance (null or empty when no instance was created).
    #[serde(rename = "EC2InstanceId", default, deserialize_with = "null_as_empty")]
    pub ec2_instance_id: String,
    /// The group.
    pub auto_scaling_group_name: String,
    /// `InProgress`, `Successful`, `Failed`, ...
    #[serde(default)]
    pub status_code: Option<String>,
    /// Why the activity happened.
    #[serde(default)]
    pub cause: Option<String>,
    /// Where the instance came from (`EC2`, `AutoScalingGroup`, `WarmPool`).
    #[serde(default)]
    pub origin: Option<String>,
    /// Where it went.
    #[serde(default)]
    pub destination: Option<String>,
}

/// Which activity ended, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// `EC2 Instance Launch Successful`.
    LaunchSuccessful,
    /// `EC2 Instance Launch Unsuccessful`.
    LaunchUnsuccessful,
    /// `EC2 Instance Terminate Successful`.
    TerminateSuccessful,
    /// `EC2 Instance Terminate Unsuccessful`.
    TerminateUnsuccessful,
    /// `EC2 Instance Detach Successful`.
    DetachSuccessful,
    /// `EC2 Instance Detach Unsuccessful`.
    DetachUnsuccessful,
}

impl Activity {
    /// The transition a successful launch or termination completed: a hook of ours
    /// gating it means our change already went through.
    pub fn succeeded(self) -> Option<Transition> {
        match self {
            Self::LaunchSuccessful => Some(Transition::Launch),
            Self::TerminateSuccessful => Some(Transition::Terminate),
            _ => None,
        }
    }

    fn detail_type(self) -> &'static str {
        match self {
            Self::LaunchSuccessful => DETAIL_TYPES[0],
            Self::LaunchUnsuccessful => DETAIL_TYPES[1],
            Self::TerminateSuccessful => DETAIL_TYPES[2],
            Self::TerminateUnsuccessful => DETAIL_TYPES[3],
            Self::DetachSuccessful => DETAIL_TYPES[4],
            Self::DetachUnsuccessful => DETAIL_TYPES[5],
        }
    }
}

/// An activity event, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEvent {
    /// Which.
    pub activity: Activity,
    /// The group.
    pub group: GroupName,
    /// The instance, when there is one.
    pub instance: Option<String>,
    /// It went into the warm pool (`Destination: WarmPool`), not into the group.
    pub into_warm_pool: bool,
    /// When it happened (ms since the epoch).
    pub time_ms: Option<u64>,
}

/// Reads an activity event.
pub fn classify(env: Envelope<ActivityDetail>, activity: Activity) -> Input {
    let dt = activity.detail_type();
    if let Some(i) = check_source(&env.source, "aws.autoscaling", dt) {
        return i;
    }
    let Some(group) = group_name(&env.detail.auto_scaling_group_name) else {
        return ignored(format!("{dt} without a group name"));
    };
    Input::Activity(ActivityEvent {
        activity,
        group,
        instance: non_empty(&env.detail.ec2_instance_id),
        into_warm_pool: env.detail.destination.as_deref() == Some("WarmPool"),
        time_ms: env.time.as_deref().and_then(parse_rfc3339_ms),
    })
}

impl<B: Boundaries> Reactor<B> {
    /// The activity events of one batch about `group`: their instances, as the truth
    /// has them, in one change.
    pub(crate) async fn activity_events(
        &self,
        batch: &Batch,
        group: &GroupName,
        events: Vec<ActivityEvent>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        summary.groups.push(group.clone());
        if &self.config.proxy_group == group {
            return self.proxy_activity(group, &events, summary).await;
        }
        if !self.config.manages(group) {
            summary.ignore(format!("group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"));
            return Ok(());
        }
        let mut instances = Vec::new();
        for e in &events {
            if let Some(i) = self.worth_sending(group, e, summary).await {
                if !instances.contains(&i) {
                    instances.push(i);
                }
            }
        }
        if instances.is_empty() {
            return Ok(());
        }
        let (state, hosts) = tokio::join!(
            self.discovery.group_for_event(group, &instances),
            batch.hosts(&self.dispatcher)
        );
        let Some(state) = state? else {
            summary.ignore(format!("group {group} does not exist (any more)"));
            return Ok(());
        };
        let Some(out) = self.group_change(&state, Scope::Instances(&instances), &[], summary)
        else {
            return Ok(());
        };
        let event_ms = events.iter().filter_map(|e| e.time_ms).min();
        self.send(
            Outgoing {
                hosts: hosts?,
                event_ms,
                kind: "activity",
                ..out
            },
            summary,
        )
        .await
    }

    /// The instance of `e` when sending it may change something on the hosts.
    async fn worth_sending(
        &self,
        group: &GroupName,
        e: &ActivityEvent,
        summary: &mut Summary,
    ) -> Option<String> {
        let dt = e.activity.detail_type();
        let Some(instance) = e.instance.clone() else {
            summary.ignore(format!(
                "{dt} of group {group} names no instance (none was created): nothing to send"
            ));
            return None;
        };
        if e.into_warm_pool {
            summary.ignore(format!("{dt}: instance {instance} went into the warm pool, not into group {group}: it joins no pool"));
            return None;
        }
        if let Some(t) = e.activity.succeeded() {
            if let Some(hook) = self.gating_hook(group, t).await {
                summary.ignore(format!(
                    "{t} of instance {instance} passed through hook {hook} of ours, which is completed only from the hosts' reports of the change that carried it: nothing left to send (the schedule's reconcile and the hosts' periodic sync repair what a timed-out action left behind)"
                ));
                return None;
            }
        }
        Some(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::classify as classify_event;
    use crate::input::samples::sample;
    use serde_json::json;

    fn read(v: &serde_json::Value) -> ActivityEvent {
        match classify_event(v) {
            Input::Activity(e) => e,
            other => panic!("expected an activity, got {other:?}"),
        }
    }

    #[test]
    fn the_aws_samples_are_read() {
        let e = read(&sample("launch-successful"));
        assert_eq!(
            e,
            ActivityEvent {
                activity: Activity::LaunchSuccessful,
                group: GroupName::new("my-asg").unwrap(),
                instance: Some("i-1234567890abcdef0".into()),
                into_warm_pool: false,
                time_ms: parse_rfc3339_ms("2026-11-20T10:00:00Z"),
            }
        );
        assert_eq!(e.activity.succeeded(), Some(Transition::Launch));
        for (name, activity) in [
            ("launch-unsuccessful", Activity::LaunchUnsuccessful),
            ("terminate-successful", Activity::TerminateSuccessful),
            ("terminate-unsuccessful", Activity::TerminateUnsuccessful),
            ("detach-successful", Activity::DetachSuccessful),
            ("detach-unsuccessful", Activity::DetachUnsuccessful),
        ] {
            assert_eq!(read(&sample(name)).activity, activity, "{name}");
        }
        assert!(read(&sample("launch-successful-to-warm-pool")).into_warm_pool);
    }

    #[test]
    fn an_activity_that_created_no_instance_names_none() {
        for id in [json!(null), json!(""), json!("  ")] {
            let mut v = sample("launch-unsuccessful");
            v["detail"]["EC2InstanceId"] = id;
            assert_eq!(read(&v).instance, None);
        }
        let mut v = sample("launch-unsuccessful");
        v["detail"].as_object_mut().unwrap().remove("EC2InstanceId");
        assert_eq!(read(&v).instance, None);
    }
}
