//! The desired state read from AWS: what the service syncs to at start, every
//! `sync_interval_s`, and on `agent sync` without `--desired`.
//!
//! The same discovery the reactor uses (`infra::aws`), with one difference that matters
//! on a proxy host: a group named in agent.toml that AWS does not know is an error, not
//! an empty group. A typo or a wrong region must never drain a whole pool.

use std::collections::BTreeMap;

use infra::aws::{
    AllowedPool, AwsDiscovery, AwsError, DesiredError, DesiredFromAws, Discovery, Generations,
    GroupState,
};

use infra::{Desired, GroupName, Member, MemberId, PoolName};

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
    async fn group(&self, name: &GroupName) -> Result<Option<GroupState>, AwsError> {
        self.0.group(name).await
    }

    async fn groups(&self, names: &[GroupName]) -> Result<Vec<GroupState>, AwsError> {
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

    async fn group_of_instance(&self, instance_id: &str) -> Result<Option<GroupName>, AwsError> {
        self.0.group_of_instance(instance_id).await
    }

    async fn tagged_groups(&self) -> Result<Vec<GroupName>, AwsError> {
        self.0.tagged_groups().await
    }
}

/// The groups of agent.toml's `[aws]` section with the pools each may feed (and the
/// ports a tag may choose for them, and the group's weight from `[aws] weights`): a
/// group's tags only narrow these, as the reactor's do.
pub fn groups(cfg: &AgentConfig) -> BTreeMap<GroupName, Vec<AllowedPool>> {
    cfg.aws_groups
        .iter()
        .map(|(g, names)| {
            let pools = names
                .iter()
                .filter_map(|n| cfg.pool(n))
                .map(|p| {
                    let pool = infra::Pool {
                        weight: cfg.aws_weights.get(g).copied(),
                        ..p.pool.clone()
                    };
                    AllowedPool::with_ports(pool, p.ports.clone())
                })
                .collect();
            (g.clone(), pools)
        })
        .collect()
}

/// Reads every configured group from AWS (the environment's configuration:
/// `AWS_REGION`, credentials, `AWS_ENDPOINT_URL`) and returns its pools' desired state,
/// with the group tags that were refused.
pub fn desired(cfg: &AgentConfig) -> Result<DesiredFromAws, SourceError> {
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

/// A member this host serves that the groups agent.toml maps do not list, and the Auto
/// Scaling group its instance is in (`None`: in none, e.g. terminated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// Its pool.
    pub pool: PoolName,
    /// The member, as this host serves it.
    pub member: Member,
    /// Its instance's group, if any.
    pub group: Option<GroupName>,
}

/// The Auto Scaling group of each of `instances` (`None`: in no group), read from AWS
/// (`DescribeAutoScalingInstances`, one call per instance).
pub fn groups_of(
    instances: &[MemberId],
) -> Result<BTreeMap<MemberId, Option<GroupName>>, SourceError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SourceError::Runtime)?;
    rt.block_on(async {
        let discovery = AwsDiscovery::from_env().await;
        let mut out = BTreeMap::new();
        for id in instances {
            let group = discovery
                .group_of_instance(id.as_str())
                .await
                .map_err(DesiredError::from)?;
            out.insert(id.clone(), group);
        }
        Ok(out)
    })
}

/// Keeps in `desired` the strays whose instance is in a group agent.toml does not map:
/// the reactor put them there (its map holds that group), so draining them would only
/// have the next reconcile add them back. Those in no group, or in a mapped group that
/// no longer lists them, stay out (drained as before). Returns the ones kept.
pub fn keep_unmapped(
    desired: &mut Desired,
    strays: Vec<Stray>,
    mapped: &BTreeMap<GroupName, Vec<PoolName>>,
) -> Vec<Stray> {
    let kept: Vec<Stray> = strays
        .into_iter()
        .filter(|s| s.group.as_ref().is_some_and(|g| !mapped.contains_key(g)))
        .collect();
    for s in &kept {
        if let Some(p) = desired.pools.iter_mut().find(|p| p.pool == s.pool) {
            p.members.push(s.member.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stray(id: &str, group: Option<&str>) -> Stray {
        Stray {
            pool: PoolName::new("web").unwrap(),
            member: Member::new(
                MemberId::new(id).unwrap(),
                "10.0.0.9".parse().unwrap(),
                infra::Port::new(8080).unwrap(),
            )
            .unwrap(),
            group: group.map(|g| GroupName::new(g).unwrap()),
        }
    }

    #[test]
    fn a_groups_weight_goes_with_every_pool_it_feeds() {
        let cfg = crate::config::AgentConfig::parse(
            "[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"\nadmin_socket = \"/run/admin.sock\"\nstate_dir = \"/var/lib/asg\"\n[[pool]]\nname = \"web\"\nport = 80\n[aws]\ngroups = { \"blue\" = [\"web\"], \"green\" = [\"web\"] }\nweights = { \"blue\" = 90 }\n",
        )
        .unwrap();
        let g = groups(&cfg);
        assert_eq!(g["blue"][0].pool.weight.map(infra::Weight::get), Some(90));
        assert_eq!(g["green"][0].pool.weight, None);
    }

    #[test]
    fn only_members_of_groups_agent_toml_does_not_map_are_kept() {
        let mut desired = Desired::from_json(
            r#"{"version":1,"generation":5,"pools":[{"pool":"web","members":[]}]}"#,
        )
        .unwrap();
        let mapped = BTreeMap::from([(
            GroupName::new("web-asg").unwrap(),
            vec![PoolName::new("web").unwrap()],
        )]);
        let kept = keep_unmapped(
            &mut desired,
            vec![
                stray("i-other", Some("batch-asg")),
                stray("i-gone", None),
                stray("i-left", Some("web-asg")),
            ],
            &mapped,
        );
        let kept: Vec<&str> = kept.iter().map(|s| s.member.id.as_str()).collect();
        assert_eq!(kept, ["i-other"]);
        let listed: Vec<&str> = desired.pools[0]
            .members
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(
            listed,
            ["i-other"],
            "terminated members and those a mapped group dropped are still drained"
        );
    }
}
