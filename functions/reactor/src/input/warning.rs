//! `EC2 Spot Instance Interruption Warning` and `EC2 Instance Rebalance Recommendation`:
//! EC2 warns that an instance goes away. AWS's samples (EC2 User Guide, Spot Instance
//! interruption notices and rebalance recommendations; `tests/samples`):
//!
//! ```json
//! { "version": "0", "id": "12345678-1234-1234-1234-123456789012",
//!   "detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2",
//!   "account": "123456789012", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-east-2",
//!   "resources": ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
//!   "detail": { "instance-id": "i-1234567890abcdef0", "instance-action": "terminate" } }
//!
//! { "version": "0", "id": "12345678-1234-1234-1234-123456789012",
//!   "detail-type": "EC2 Instance Rebalance Recommendation", "source": "aws.ec2",
//!   "account": "123456789012", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-east-2",
//!   "resources": ["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
//!   "detail": { "instance-id": "i-1234567890abcdef0" } }
//! ```
//!
//! A member EC2 warned about is marked on the instance (`haproxy:interrupted`, so no
//! later read adds it back) and drained on every host at once; a Spot one with a
//! deadline that ends the drain before EC2 reclaims it. Its terminate action, when Auto
//! Scaling starts one, is opened then: the hosts report it drained as soon as it is.

use infra::aws::{Discovery, GroupState, Interruption};
use infra::now_ms;
use infra::HostId;
use serde::Deserialize;

use super::{check_source, ignored, non_empty, parse_rfc3339_ms, Envelope, Input};
use crate::config::Rebalance;
use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::lifecycle::LifecycleApi;
use crate::outgoing::Outgoing;
use crate::plan::Scope;
use crate::summary::Summary;

/// The Spot interruption detail type.
pub const SPOT_DETAIL_TYPE: &str = "EC2 Spot Instance Interruption Warning";
/// The rebalance recommendation detail type.
pub const REBALANCE_DETAIL_TYPE: &str = "EC2 Instance Rebalance Recommendation";

/// The detail of both warnings.
#[derive(Debug, Clone, Deserialize)]
pub struct Ec2WarningDetail {
    /// The instance.
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// What EC2 will do (`terminate`, `stop`, `hibernate`); interruption warnings only.
    #[serde(rename = "instance-action", default)]
    pub instance_action: Option<String>,
}

/// Which warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// Reclaimed two minutes later.
    SpotInterruption,
    /// At elevated risk of interruption.
    Rebalance,
}

impl Warning {
    /// Its kind, for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::SpotInterruption => "spot-interruption-warning",
            Self::Rebalance => "rebalance-recommendation",
        }
    }
}

/// A warning, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarningEvent {
    /// Which.
    pub kind: Warning,
    /// The instance.
    pub instance: String,
    /// When EC2 sent it (ms since the epoch).
    pub time_ms: Option<u64>,
}

/// Reads a warning of `kind`.
pub fn classify(env: Envelope<Ec2WarningDetail>, kind: Warning) -> Input {
    let dt = match kind {
        Warning::SpotInterruption => SPOT_DETAIL_TYPE,
        Warning::Rebalance => REBALANCE_DETAIL_TYPE,
    };
    if let Some(i) = check_source(&env.source, "aws.ec2", dt) {
        return i;
    }
    match non_empty(&env.detail.instance_id) {
        Some(instance) => Input::Warning(WarningEvent {
            kind,
            instance,
            time_ms: env.time.as_deref().and_then(parse_rfc3339_ms),
        }),
        None => ignored(format!("{dt} without an instance id")),
    }
}

impl<B: Boundaries> Reactor<B> {
    /// Marks the member interrupted and drains it everywhere now.
    pub(crate) async fn warning(
        &self,
        batch: &Batch,
        w: WarningEvent,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let instance = w.instance.as_str();
        if w.kind == Warning::Rebalance && self.config.rebalance == Rebalance::Ignore {
            summary.ignore(format!("rebalance recommendation for instance {instance}: REBALANCE is ignore (set REBALANCE=drain to drain on it)"));
            return Ok(());
        }
        let Some((mut state, hosts)) = self.warned_group(batch, instance, summary).await? else {
            return Ok(());
        };
        let group = state.name.clone();
        let Some(member) = state.members.iter_mut().find(|m| m.id.as_str() == instance) else {
            summary.ignore(format!(
                "instance {instance} is no longer in group {group}: its own events removed it"
            ));
            return Ok(());
        };
        if let Some(earlier) = member.interrupted {
            summary.ignore(format!(
                "instance {instance} is already draining on an earlier warning (deadline {}): nothing more to do",
                earlier
                    .drain_by_ms
                    .map_or("the pool's drain timeout".to_string(), |t| format!("{t} ms"))
            ));
            return Ok(());
        }
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let interruption = Interruption {
            drain_by_ms: match w.kind {
                Warning::SpotInterruption => Some(
                    w.time_ms
                        .unwrap_or_else(now_ms)
                        .saturating_add(ms(self.config.spot_drain_timeout)),
                ),
                Warning::Rebalance => None,
            },
        };
        self.lifecycle
            .mark_interrupted(instance, &interruption)
            .await?;
        *member = member.clone().interrupt(interruption);
        tracing::info!(
            drain_by_ms = interruption.drain_by_ms,
            "instance marked interrupted; draining it on every host"
        );
        let instances = [w.instance.clone()];
        let Some(out) = self.group_change(&state, Scope::Instances(&instances), &[], summary)
        else {
            return Ok(());
        };
        self.send(
            Outgoing {
                hosts,
                event_ms: w.time_ms,
                kind: w.kind.label(),
                ..out
            },
            summary,
        )
        .await
    }

    /// The managed group of a warned `instance`, read, and the proxies; `None` (noted)
    /// when the instance is in no group of ours or its group feeds no pool.
    async fn warned_group(
        &self,
        batch: &Batch,
        instance: &str,
        summary: &mut Summary,
    ) -> Result<Option<(GroupState, Vec<HostId>)>, ReactorError> {
        let Some(group) = self.discovery.group_of_instance(instance).await? else {
            summary.ignore(format!(
                "instance {instance} is in no Auto Scaling group: not a pool member"
            ));
            return Ok(None);
        };
        tracing::Span::current().record("group", group.as_str());
        summary.groups.push(group.clone());
        if self.config.proxy_group == group {
            summary.ignore(format!("instance {instance} is a proxy host: its record follows its group's lifecycle events"));
            return Ok(None);
        }
        if !self.config.manages(&group) {
            summary.ignore(format!("group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"));
            return Ok(None);
        }
        let instances = [instance.to_string()];
        let (state, hosts) = tokio::join!(
            self.discovery.group_for_event(&group, &instances),
            batch.hosts(&self.dispatcher)
        );
        let Some(state) = state? else {
            summary.ignore(format!("group {group} does not exist (any more)"));
            return Ok(None);
        };
        Ok(Some((state, hosts?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::classify as classify_event;
    use crate::input::samples::sample;
    use serde_json::json;

    #[test]
    fn the_aws_samples_are_read() {
        let t = parse_rfc3339_ms("2026-11-20T10:00:00Z");
        assert_eq!(
            classify_event(&sample("spot-interruption-warning")),
            Input::Warning(WarningEvent {
                kind: Warning::SpotInterruption,
                instance: "i-1234567890abcdef0".into(),
                time_ms: t,
            })
        );
        assert_eq!(
            classify_event(&sample("rebalance-recommendation")),
            Input::Warning(WarningEvent {
                kind: Warning::Rebalance,
                instance: "i-1234567890abcdef0".into(),
                time_ms: t,
            })
        );
        let reason = |v: serde_json::Value| match classify_event(&v) {
            Input::Ignored(r) => r,
            other => panic!("expected ignored, got {other:?}"),
        };
        let mut v = sample("spot-interruption-warning");
        v["source"] = json!("aws.autoscaling");
        assert!(reason(v).contains("expected \"aws.ec2\""));
        let mut v = sample("spot-interruption-warning");
        v["detail"]["instance-id"] = json!(" ");
        assert!(reason(v).contains("without an instance id"));
        let mut v = sample("rebalance-recommendation");
        v["detail"] = json!({"instance": 1});
        assert!(reason(v).contains("EC2 Instance Rebalance Recommendation"));
    }
}
