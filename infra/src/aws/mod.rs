//! Reading the truth from AWS: which pools a group feeds, which members it has and where
//! they are in their life, and the desired state built from that.
//!
//! - [`pools`]: the group -> pools mapping ([`GroupPools`], the `POOLS` configuration,
//!   and the `haproxy:pool` / `haproxy:port` group tags). Pure.
//! - [`group`]: a group's members and where each is in its life ([`Phase`]). Pure.
//! - [`discovery`]: reading groups ([`Discovery`]); [`AwsDiscovery`] is the AWS
//!   implementation (one `DescribeAutoScalingGroups` plus one `DescribeInstances` per
//!   1000 members).
//! - [`desired`]: the pure step from groups' truth to an
//!   [`infra::Desired`](crate::Desired) ([`desired_pools`]), and the [`Generations`]
//!   that order every message. (The change an event needs is planned by the reactor.)
//! - [`desired_from_aws`]: what `agent sync` without `--desired` calls.
//!
//! The SDK configuration ([`sdk_config`]) honours `AWS_ENDPOINT_URL` (the emulator in
//! tests), `AWS_REGION` and the usual credential chain, and retries throttling and 5xx
//! answers in the SDK's standard mode with more attempts than the default.

use std::collections::BTreeMap;
use std::time::Duration;

pub mod desired;
pub mod discovery;
pub mod group;
pub mod pools;

pub use desired::{desired_from_states, desired_pools, Generations};
pub use discovery::{AwsDiscovery, Discovery, Listed, Listing, DESCRIBE_INSTANCES_BATCH};
pub use group::{
    phase_of, GroupMember, GroupState, Interruption, Phase, INTERRUPTED_TAG, PENDING_WAIT,
    REBALANCE_MARK, TERMINATING_WAIT,
};
pub use pools::{
    resolve_pools, AllowedPool, GroupPools, GroupPoolsError, Resolved, TagRefused, POOL_TAG,
    PORT_TAG,
};

use crate::{now_ms, Desired, GroupName, Pool};

/// Attempts per AWS call (the first one included) before an error is returned.
pub const MAX_ATTEMPTS: u32 = 8;

/// Why something could not be read from (or done in) AWS.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An API call failed after the SDK's retries.
    #[error("{api} for {subject} failed: {message}")]
    Api {
        /// The API operation, e.g. `DescribeAutoScalingGroups`.
        api: &'static str,
        /// What it was about: `group web-asg`, `instance i-1`, `zone Z1`...
        subject: String,
        /// The SDK's error with its causes.
        message: String,
    },
}

/// The one mapping of an SDK error to [`AwsError::Api`]: the operation, its subject, and
/// the error with every cause (the SDK's own `Display` hides them).
pub fn api_error<E: std::error::Error>(api: &'static str, subject: &str, e: &E) -> AwsError {
    AwsError::Api {
        api,
        subject: subject.to_string(),
        message: aws_sdk_autoscaling::error::DisplayErrorContext(e).to_string(),
    }
}

/// Why the desired state could not be read from AWS.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// Reading the groups failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The SDK configuration every client of this project uses: the environment's
/// region, credentials and endpoint (`AWS_ENDPOINT_URL`), standard retry mode with
/// [`MAX_ATTEMPTS`] attempts and short backoff, and bounded timeouts.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_loader().load().await
}

/// The loader behind [`sdk_config`], for callers that set more (an explicit endpoint,
/// region or credentials, as the tests do against the emulator).
pub fn sdk_loader() -> aws_config::ConfigLoader {
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5));
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(20))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts)
}

/// The desired state of every pool fed by `groups` (Auto Scaling group name -> the
/// pools it may feed on this host), read from AWS now.
///
/// Each group's tags pick among those pools and their allowed ports exactly as the
/// reactor's do ([`resolve_pools`]: tags only narrow); a refused tag is logged as a
/// warning and returned in [`Desired`]'s company ([`DesiredFromAws::refused`]). A group
/// that does not exist contributes no members, so its pools are emptied. The generation
/// is the read time in ms.
///
/// Uses the environment's AWS configuration ([`sdk_config`]); see
/// [`desired_from_discovery`] to supply another [`Discovery`].
pub async fn desired_from_aws(
    groups: &BTreeMap<GroupName, Vec<AllowedPool>>,
) -> Result<DesiredFromAws, DesiredError> {
    let discovery = AwsDiscovery::from_env().await;
    desired_from_discovery(&discovery, groups, &Generations::new()).await
}

/// What [`desired_from_discovery`] read: the desired state and the tags it refused.
#[derive(Debug, Clone)]
pub struct DesiredFromAws {
    /// Every pool's members.
    pub desired: Desired,
    /// The group tags that were not followed (once per group).
    pub refused: Vec<TagRefused>,
}

/// [`desired_from_aws`] with any [`Discovery`] and generation counter.
pub async fn desired_from_discovery<D: Discovery>(
    discovery: &D,
    groups: &BTreeMap<GroupName, Vec<AllowedPool>>,
    generations: &Generations,
) -> Result<DesiredFromAws, DesiredError> {
    let names: Vec<GroupName> = groups.keys().cloned().collect();
    let states = discovery.groups(&names).await?;
    let mut resolved: Vec<(Vec<Pool>, GroupState)> = Vec::new();
    let mut refused = Vec::new();
    for (name, configured) in groups {
        let state = match states.iter().find(|s| &s.name == name) {
            Some(s) => s.clone(),
            None => {
                tracing::warn!(group = %name, "group not found; its pools will be emptied");
                GroupState {
                    name: name.clone(),
                    tags: BTreeMap::new(),
                    members: Vec::new(),
                    read_at_ms: now_ms(),
                }
            }
        };
        let r = resolve_pools(name, &state.tags, configured);
        refused.extend(r.refused);
        let pools = r.pools;
        resolved.push((pools, state));
    }
    // Pools named in the configuration keep an entry even when no group resolved to
    // them, so they are emptied rather than left alone.
    let mut desired = desired_from_states(&resolved, generations);
    for configured in groups.values() {
        for p in configured.iter().map(|a| &a.pool) {
            if !desired.pools.iter().any(|d| d.pool == p.name) {
                desired.pools.push(crate::PoolDesired {
                    pool: p.name.clone(),
                    members: Vec::new(),
                });
            }
        }
    }
    Ok(DesiredFromAws { desired, refused })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemberId, PoolName, Port};

    struct Fake(Vec<GroupState>);

    impl Discovery for Fake {
        async fn group(&self, name: &GroupName) -> Result<Option<GroupState>, AwsError> {
            Ok(self.0.iter().find(|g| &g.name == name).cloned())
        }
        async fn groups(&self, names: &[GroupName]) -> Result<Vec<GroupState>, AwsError> {
            Ok(self
                .0
                .iter()
                .filter(|g| names.contains(&g.name))
                .cloned()
                .collect())
        }
        async fn group_of_instance(&self, _: &str) -> Result<Option<GroupName>, AwsError> {
            Ok(None)
        }
        async fn tagged_groups(&self) -> Result<Vec<GroupName>, AwsError> {
            Ok(Vec::new())
        }
    }

    fn pool(name: &str, port: i64) -> Pool {
        Pool {
            name: PoolName::new(name).unwrap(),
            port: Port::new(port).unwrap(),
            server_options: Default::default(),
            weight: None,
        }
    }

    #[tokio::test]
    async fn desired_state_from_a_discovery() {
        let mut tags = BTreeMap::new();
        tags.insert(PORT_TAG.to_string(), "9090".to_string());
        let fake = Fake(vec![GroupState {
            name: GroupName::new("web-asg").unwrap(),
            tags,
            members: vec![
                GroupMember::new(
                    MemberId::new("i-1").unwrap(),
                    "InService",
                    Some("running".into()),
                    Some("10.0.0.1".parse().unwrap()),
                ),
                GroupMember::new(
                    MemberId::new("i-2").unwrap(),
                    "Terminating:Wait",
                    Some("running".into()),
                    Some("10.0.0.2".parse().unwrap()),
                ),
            ],
            read_at_ms: 42,
        }]);
        let mut groups = BTreeMap::new();
        let web = AllowedPool::with_ports(pool("web", 8080), vec![Port::new(9090).unwrap()]);
        groups.insert(GroupName::new("web-asg").unwrap(), vec![web]);
        groups.insert(
            GroupName::new("gone-asg").unwrap(),
            vec![AllowedPool::only(pool("old", 80))],
        );
        let got = desired_from_discovery(&fake, &groups, &Generations::new())
            .await
            .unwrap();
        assert!(got.refused.is_empty(), "{:?}", got.refused);
        let d = got.desired;
        assert_eq!(d.pools.len(), 2);
        let web = d.pools.iter().find(|p| p.pool.as_str() == "web").unwrap();
        assert_eq!(web.members.len(), 1);
        assert_eq!(
            web.members[0].port.get(),
            9090,
            "the port tag picks an allowed port"
        );
        let old = d.pools.iter().find(|p| p.pool.as_str() == "old").unwrap();
        assert!(old.members.is_empty());
    }

    #[tokio::test]
    async fn tags_never_widen_what_a_host_serves() {
        let mut tags = BTreeMap::new();
        tags.insert(POOL_TAG.to_string(), "internal".to_string());
        tags.insert(PORT_TAG.to_string(), "22".to_string());
        let fake = Fake(vec![GroupState {
            name: GroupName::new("web-asg").unwrap(),
            tags,
            members: vec![GroupMember::new(
                MemberId::new("i-1").unwrap(),
                "InService",
                Some("running".into()),
                Some("10.0.0.1".parse().unwrap()),
            )],
            read_at_ms: 42,
        }]);
        let mut groups = BTreeMap::new();
        groups.insert(
            GroupName::new("web-asg").unwrap(),
            vec![AllowedPool::only(pool("web", 8080))],
        );
        let got = desired_from_discovery(&fake, &groups, &Generations::new())
            .await
            .unwrap();
        let pools: Vec<(&str, Vec<u16>)> = got
            .desired
            .pools
            .iter()
            .map(|p| {
                let ports = p.members.iter().map(|m| m.port.get()).collect();
                (p.pool.as_str(), ports)
            })
            .collect();
        assert_eq!(pools, [("web", vec![8080])]);
        let tags: Vec<&str> = got.refused.iter().map(|t| t.tag).collect();
        assert_eq!(tags, [POOL_TAG, PORT_TAG]);
    }
}
