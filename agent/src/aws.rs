//! The desired state read from AWS: what the service syncs to at start, every
//! `sync_interval_s`, and on `agent sync` without `--desired`.
//!
//! The same discovery the reactor uses (`infra::aws`), with one difference that matters
//! on a proxy host: a group named in agent.toml that AWS does not know is an error, not
//! an empty group. A typo or a wrong region must never drain a whole pool.

use std::collections::BTreeMap;

use infra::aws::{AwsDiscovery, AwsError, DesiredError, Discovery, Generations, GroupState};
use infra::{Desired, Pool};

use crate::config::AgentConfig;

/// Why the desired state could not be read from AWS.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// agent.toml names no groups.
    #[error("agent.toml has no [aws] groups: add e.g. `[aws]\\ngroups = {{ \"web-asg\" = [\"web\"] }}` naming the Auto Scaling groups that feed each pool, or pass --desired FILE")]
    NoGroups,
    /// Reading AWS failed.
    #[error("reading the desired state from AWS failed: {0}. Check AWS_REGION, the credentials (the instance profile on a proxy host) and the group names in agent.toml's [aws] section")]
    Aws(#[from] DesiredError),
    /// The async runtime could not start.
    #[error("cannot start the AWS client runtime: {0}")]
    Runtime(std::io::Error),
}

/// Discovery that refuses missing groups.
struct Strict(AwsDiscovery);

impl Discovery for Strict {
    async fn group(&self, name: &str) -> Result<Option<GroupState>, AwsError> {
        self.0.group(name).await
    }

    async fn groups(&self, names: &[String]) -> Result<Vec<GroupState>, AwsError> {
        let found = self.0.groups(names).await?;
        for n in names {
            if !found.iter().any(|g| &g.name == n) {
                return Err(AwsError::Api {
                    api: "DescribeAutoScalingGroups",
                    subject: format!("group {n}"),
                    message: "no such Auto Scaling group in this account and region; refusing to empty its pools".into(),
                });
            }
        }
        Ok(found)
    }

    async fn group_of_instance(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        self.0.group_of_instance(instance_id).await
    }

    async fn tagged_groups(&self) -> Result<Vec<String>, AwsError> {
        self.0.tagged_groups().await
    }
}

/// The groups of agent.toml's `[aws]` section with their pools' definitions.
pub fn groups(cfg: &AgentConfig) -> BTreeMap<String, Vec<Pool>> {
    cfg.aws_groups
        .iter()
        .map(|(g, names)| {
            let pools = names
                .iter()
                .filter_map(|n| cfg.pool(n))
                .map(|p| p.pool.clone())
                .collect();
            (g.clone(), pools)
        })
        .collect()
}

/// Reads every configured group from AWS (the environment's configuration:
/// `AWS_REGION`, credentials, `AWS_ENDPOINT_URL`) and returns its pools' desired state.
pub fn desired(cfg: &AgentConfig) -> Result<Desired, SourceError> {
    let groups = groups(cfg);
    if groups.is_empty() {
        return Err(SourceError::NoGroups);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SourceError::Runtime)?;
    rt.block_on(async {
        let discovery = Strict(AwsDiscovery::from_env().await);
        Ok(infra::aws::desired_from_discovery(&discovery, &groups, &Generations::new()).await?)
    })
}
