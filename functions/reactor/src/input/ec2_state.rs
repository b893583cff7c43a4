//! `EC2 Instance State-change Notification`: EC2 changed an instance's state. AWS's
//! sample (EC2 User Guide, instance state-change events; `tests/samples`):
//!
//! ```json
//! { "id": "7bf73129-1428-4cd3-a780-95db273d1602",
//!   "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
//!   "account": "123456789012", "time": "2021-11-11T21:29:54Z", "region": "us-east-1",
//!   "resources": [ "arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0" ],
//!   "detail": { "instance-id": "i-1234567890abcdef0", "state": "pending" } }
//! ```
//!
//! No rule of the Terraform module routes these (Auto Scaling's own events cover the
//! groups' instances); an operator may route them to the inbox. The instance's group is
//! looked up and the instance sent as the truth has it.

use infra::aws::Discovery;
use serde::Deserialize;

use super::{check_source, ignored, non_empty, Envelope, Input};
use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::outgoing::Outgoing;
use crate::plan::Scope;
use crate::summary::Summary;

/// The detail type.
pub const DETAIL_TYPE: &str = "EC2 Instance State-change Notification";

/// The detail of a state-change event.
#[derive(Debug, Clone, Deserialize)]
pub struct Ec2StateDetail {
    /// The instance.
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
}

/// A state change, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The instance.
    pub instance: String,
    /// Its new state.
    pub state: String,
}

/// Reads a state-change event.
pub fn classify(env: Envelope<Ec2StateDetail>) -> Input {
    if let Some(i) = check_source(&env.source, "aws.ec2", DETAIL_TYPE) {
        return i;
    }
    match non_empty(&env.detail.instance_id) {
        Some(instance) => Input::Ec2State(StateChange {
            instance,
            state: env.detail.state,
        }),
        None => ignored(format!("{DETAIL_TYPE} without an instance id")),
    }
}

impl<B: Boundaries> Reactor<B> {
    /// The instance's group re-read, the instance sent as it is now.
    pub(crate) async fn ec2_state(
        &self,
        batch: &Batch,
        s: StateChange,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let Some(group) = self.discovery.group_of_instance(&s.instance).await? else {
            summary.ignore(format!(
                "instance {} (now {}) is in no Auto Scaling group",
                s.instance, s.state
            ));
            return Ok(());
        };
        tracing::Span::current().record("group", group.as_str());
        summary.groups.push(group.clone());
        if self.config.proxy_group == group || !self.config.manages(&group) {
            summary.ignore(format!(
                "instance {} is in group {group}, which feeds no pool",
                s.instance
            ));
            return Ok(());
        }
        let instances = [s.instance.clone()];
        let (state, hosts) = tokio::join!(
            self.discovery.group_for_event(&group, &instances),
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
        self.send(
            Outgoing {
                hosts: hosts?,
                kind: "ec2-state-change",
                ..out
            },
            summary,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::classify as classify_event;
    use crate::input::samples::sample;

    #[test]
    fn the_aws_sample_is_read() {
        assert_eq!(
            classify_event(&sample("instance-state-change")),
            Input::Ec2State(StateChange {
                instance: "i-1234567890abcdef0".into(),
                state: "pending".into(),
            })
        );
        let mut v = sample("instance-state-change");
        v["source"] = "aws.autoscaling".into();
        assert!(
            matches!(classify_event(&v), Input::Ignored(r) if r.contains("expected \"aws.ec2\""))
        );
    }
}
