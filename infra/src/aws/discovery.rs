//! Reading groups: the [`Discovery`] boundary (tests use in-process fakes) and
//! [`AwsDiscovery`], Auto Scaling for membership and lifecycle states, EC2 for addresses.
//!
//! A group of any size costs one `DescribeAutoScalingGroups` page (up to 100 groups and
//! their instances per page) plus one `DescribeInstances` per 1000 instance ids: a group
//! of 100 is read in 2 calls. For events about some instances, both calls go out at
//! once (one round trip), see [`Discovery::groups_for_events`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::AutoScalingGroup;

use crate::{GroupName, MemberId, Zone};

use super::group::{GroupMember, GroupState, Interruption, INTERRUPTED_TAG};
use super::pools::POOL_TAG;
use super::{api_error, AwsError};
use crate::now_ms;

/// Reads groups and their members. Implemented for AWS by
/// [`AwsDiscovery`]; fakes implement it in tests.
pub trait Discovery: Send + Sync {
    /// One group, or `None` when it does not exist.
    fn group(
        &self,
        name: &GroupName,
    ) -> impl Future<Output = Result<Option<GroupState>, AwsError>> + Send;

    /// One group as events about `instances` need it: every member's lifecycle state,
    /// and EC2's facts (address, state) for the members such events' change names,
    /// those not `InService` and `instances` themselves. In-service members may come
    /// without EC2 facts. `None` when the group does not exist. See
    /// [`Discovery::groups_for_events`].
    fn group_for_event(
        &self,
        name: &GroupName,
        instances: &[String],
    ) -> impl Future<Output = Result<Option<GroupState>, AwsError>> + Send {
        async move {
            let mut states = self
                .groups_for_events(std::slice::from_ref(name), instances)
                .await?;
            Ok(states.pop())
        }
    }

    /// The groups `names` as events about `instances` (members of any of them) need
    /// them, as [`Discovery::group_for_event`] reads one; missing groups are left out.
    ///
    /// This is the reactor's hot path: AWS reads the events' instances at the same time
    /// as the groups, so a batch of launches into several groups costs one round trip
    /// (plus one call for other members in transition) instead of two per group. The
    /// default reads the whole groups with [`Discovery::groups`].
    fn groups_for_events(
        &self,
        names: &[GroupName],
        instances: &[String],
    ) -> impl Future<Output = Result<Vec<GroupState>, AwsError>> + Send {
        let _ = instances;
        self.groups(names)
    }

    /// [`Discovery::groups_for_events`] in two steps: first the groups' members as Auto
    /// Scaling lists them ([`Listing::listed`]), then, with
    /// [`Discovery::finish_listing`], the states with EC2's facts about the other members
    /// in transition. What the caller reads about the listed members elsewhere (their
    /// ledger items, the proxies' tags) goes out at the same time as that second step:
    /// one round trip less. The default reads the whole groups at once.
    fn list_for_events(
        &self,
        names: &[GroupName],
        instances: &[String],
    ) -> impl Future<Output = Result<Listing, AwsError>> + Send {
        async move {
            Ok(Listing::read(
                self.groups_for_events(names, instances).await?,
            ))
        }
    }

    /// The states of a [`Listing`], reading what it still lacks.
    fn finish_listing(
        &self,
        listing: Listing,
    ) -> impl Future<Output = Result<Vec<GroupState>, AwsError>> + Send {
        async move {
            match listing.rest {
                Rest::Read(states) => Ok(states),
                // Only `AwsDiscovery::list_for_events` leaves EC2's reads to do, and it
                // finishes its own listings: a reader that overrides `list_for_events`
                // must override this too.
                Rest::Ec2(_) => Err(AwsError::Api {
                    api: "DescribeInstances",
                    subject: "a listing".into(),
                    message: "its EC2 facts are read by the reader that listed it (AwsDiscovery); this reader implements list_for_events without finish_listing".into(),
                }),
            }
        }
    }

    /// Several groups at once (missing ones are left out), in as few calls as the API
    /// allows.
    fn groups(
        &self,
        names: &[GroupName],
    ) -> impl Future<Output = Result<Vec<GroupState>, AwsError>> + Send;

    /// The group an instance belongs to, or `None` when it is in no group.
    fn group_of_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<GroupName>, AwsError>> + Send;

    /// Names of the groups carrying the `haproxy:pool` tag.
    fn tagged_groups(&self) -> impl Future<Output = Result<Vec<GroupName>, AwsError>> + Send;
}

/// A member as Auto Scaling lists it, before EC2's facts about it are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its group.
    pub group: GroupName,
    /// The instance.
    pub id: MemberId,
    /// The Auto Scaling lifecycle state (`InService`, `Pending:Wait`, ...).
    pub lifecycle_state: String,
}

/// Groups read as far as Auto Scaling's answer ([`Discovery::list_for_events`]).
#[derive(Debug)]
pub struct Listing {
    /// Their members as Auto Scaling lists them.
    pub listed: Vec<Listed>,
    rest: Rest,
}

impl Listing {
    /// Groups read whole already.
    pub fn read(states: Vec<GroupState>) -> Self {
        Self {
            listed: listed_states(&states),
            rest: Rest::Read(states),
        }
    }
}

/// What a [`Listing`] still lacks.
#[derive(Debug)]
enum Rest {
    /// Nothing: the states.
    Read(Vec<GroupState>),
    /// EC2's facts about some members.
    Ec2(Box<Ec2Rest>),
}

/// Auto Scaling's answer, EC2's facts read so far, and the members still to ask EC2
/// about.
#[derive(Debug)]
struct Ec2Rest {
    groups: Vec<(GroupName, AutoScalingGroup)>,
    ec2: HashMap<String, Ec2Facts>,
    ids: Vec<String>,
    context: String,
    read_at_ms: u64,
}

/// Instance ids per `DescribeInstances` call.
pub const DESCRIBE_INSTANCES_BATCH: usize = 1000;
/// Values per EC2 filter (the fallback when an id is unknown to EC2).
const FILTER_VALUES_BATCH: usize = 200;
/// Group names per `DescribeAutoScalingGroups` call.
const DESCRIBE_GROUPS_BATCH: usize = 100;

/// Reads groups from Auto Scaling and addresses from EC2.
#[derive(Debug, Clone)]
pub struct AwsDiscovery {
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
}

/// What EC2 says about one instance.
#[derive(Debug, Clone, Default)]
struct Ec2Facts {
    address: Option<IpAddr>,
    state: Option<String>,
    /// EC2's `InstanceLifecycle` is `spot`.
    spot: bool,
    /// The [`INTERRUPTED_TAG`] value, as tagged (believed or not in [`group_state`]).
    interrupted: Option<String>,
}

impl AwsDiscovery {
    /// Clients from a loaded SDK configuration (see [`sdk_config`](super::sdk_config)).
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            asg: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
        }
    }

    /// Clients built from the environment ([`sdk_config`](super::sdk_config)).
    pub async fn from_env() -> Self {
        Self::new(&super::sdk_config().await)
    }

    async fn describe_groups(
        &self,
        names: &[GroupName],
        context: &str,
    ) -> Result<Vec<AutoScalingGroup>, AwsError> {
        let mut out = Vec::new();
        for chunk in names.chunks(DESCRIBE_GROUPS_BATCH) {
            let mut pages = self
                .asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(
                    chunk.iter().map(GroupName::to_string).collect(),
                ))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| api_error("DescribeAutoScalingGroups", context, &e))?;
                out.extend(page.auto_scaling_groups().iter().cloned());
            }
        }
        Ok(out)
    }

    /// EC2 facts for `ids`, batched; ids EC2 no longer knows are simply absent.
    async fn describe_instances(
        &self,
        ids: &[String],
        context: &str,
    ) -> Result<HashMap<String, Ec2Facts>, AwsError> {
        let mut facts = HashMap::new();
        // Each id once: a repeated one is no more information, and not every endpoint
        // takes it.
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(DESCRIBE_INSTANCES_BATCH) {
            match self.describe_ids(chunk, &mut facts).await {
                Ok(()) => {}
                // One unknown id fails the whole call: look the batch up by filter
                // instead, which skips unknown ids.
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {
                    tracing::debug!(
                        group = context,
                        "an instance id is unknown to EC2; looking the batch up by filter"
                    );
                    for part in chunk.chunks(FILTER_VALUES_BATCH) {
                        self.describe_filtered(part, &mut facts)
                            .await
                            .map_err(|e| api_error("DescribeInstances", context, &e))?;
                    }
                }
                Err(e) => return Err(api_error("DescribeInstances", context, &e)),
            }
        }
        Ok(facts)
    }

    async fn describe_ids(
        &self,
        ids: &[String],
        facts: &mut HashMap<String, Ec2Facts>,
    ) -> Result<
        (),
        aws_sdk_ec2::error::SdkError<
            aws_sdk_ec2::operation::describe_instances::DescribeInstancesError,
        >,
    > {
        let mut pages = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            collect_instances(&page?, facts);
        }
        Ok(())
    }

    async fn describe_filtered(
        &self,
        ids: &[String],
        facts: &mut HashMap<String, Ec2Facts>,
    ) -> Result<
        (),
        aws_sdk_ec2::error::SdkError<
            aws_sdk_ec2::operation::describe_instances::DescribeInstancesError,
        >,
    > {
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name("instance-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            collect_instances(&page?, facts);
        }
        Ok(())
    }
}

fn collect_instances(
    page: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput,
    facts: &mut HashMap<String, Ec2Facts>,
) {
    for r in page.reservations() {
        for i in r.instances() {
            let Some(id) = i.instance_id() else { continue };
            facts.insert(
                id.to_string(),
                Ec2Facts {
                    address: i.private_ip_address().and_then(|a| a.parse().ok()),
                    state: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string()),
                    spot: i.instance_lifecycle()
                        == Some(&aws_sdk_ec2::types::InstanceLifecycleType::Spot),
                    interrupted: i
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some(INTERRUPTED_TAG))
                        .map(|t| t.value().unwrap_or_default().to_string()),
                },
            );
        }
    }
}

fn group_state(
    name: &GroupName,
    g: &AutoScalingGroup,
    ec2: &HashMap<String, Ec2Facts>,
    read_at_ms: u64,
) -> GroupState {
    let name = name.clone();
    let tags: BTreeMap<String, String> = g
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let mut members = Vec::new();
    for i in g.instances() {
        let Some(raw_id) = i.instance_id() else {
            continue;
        };
        let Ok(id) = MemberId::new(raw_id) else {
            tracing::warn!(group = %name, instance = raw_id, "instance id not usable as a member id; skipped");
            continue;
        };
        let lifecycle = i
            .lifecycle_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let facts = ec2.get(raw_id).cloned().unwrap_or_default();
        let zone = i.availability_zone().and_then(|z| Zone::new(z).ok());
        members.push(member(&name, id, lifecycle, facts, read_at_ms).in_zone(zone));
    }
    GroupState {
        name,
        tags,
        members,
        read_at_ms,
    }
}

/// One member from what Auto Scaling and EC2 say of it, read at `now_ms`: interrupted
/// when its [`INTERRUPTED_TAG`] is to be believed (a warning is logged when not).
fn member(
    group: &str,
    id: MemberId,
    lifecycle: String,
    facts: Ec2Facts,
    now_ms: u64,
) -> GroupMember {
    let m = GroupMember::new(id, lifecycle, facts.state, facts.address);
    let Some(value) = facts.interrupted else {
        return m;
    };
    match Interruption::believed(&value, facts.spot, &m.lifecycle_state, now_ms) {
        Ok(i) => m.interrupt(i),
        Err(why) => {
            tracing::warn!(group, instance = %m.id, value = %value, "tag {INTERRUPTED_TAG} ignored: {why}");
            m
        }
    }
}

/// The groups of `groups` that `names` asked for (a filter may bring others), each with
/// its name.
fn named<'a>(
    groups: &'a [AutoScalingGroup],
    names: &'a [GroupName],
) -> impl Iterator<Item = (&'a GroupName, &'a AutoScalingGroup)> {
    groups.iter().filter_map(|g| Some((name_of(g, names)?, g)))
}

/// The name of `names` that `g` has, if any.
fn name_of<'a>(g: &AutoScalingGroup, names: &'a [GroupName]) -> Option<&'a GroupName> {
    let n = g.auto_scaling_group_name()?;
    names.iter().find(|x| x.as_str() == n)
}

/// [`named`], keeping the groups (a [`Listing`] holds them until it is finished).
fn named_owned(
    groups: Vec<AutoScalingGroup>,
    names: &[GroupName],
) -> Vec<(GroupName, AutoScalingGroup)> {
    groups
        .into_iter()
        .filter_map(|g| Some((name_of(&g, names)?.clone(), g)))
        .collect()
}

/// The members of `groups` as Auto Scaling lists them.
fn listed_groups(groups: &[(GroupName, AutoScalingGroup)]) -> Vec<Listed> {
    groups
        .iter()
        .flat_map(|(name, g)| {
            g.instances().iter().filter_map(|i| {
                Some(Listed {
                    group: name.clone(),
                    id: MemberId::new(i.instance_id()?).ok()?,
                    lifecycle_state: i.lifecycle_state()?.as_str().to_string(),
                })
            })
        })
        .collect()
}

/// The members of read `states`.
fn listed_states(states: &[GroupState]) -> Vec<Listed> {
    states
        .iter()
        .flat_map(|s| {
            s.members.iter().map(|m| Listed {
                group: s.name.clone(),
                id: m.id.clone(),
                lifecycle_state: m.lifecycle_state.clone(),
            })
        })
        .collect()
}

fn instance_ids(groups: &[AutoScalingGroup]) -> Vec<String> {
    let mut ids: Vec<String> = groups
        .iter()
        .flat_map(|g| g.instances().iter().filter_map(|i| i.instance_id()))
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

impl Discovery for AwsDiscovery {
    async fn group(&self, name: &GroupName) -> Result<Option<GroupState>, AwsError> {
        let mut states = self.groups(std::slice::from_ref(name)).await?;
        Ok(states.pop())
    }

    async fn groups_for_events(
        &self,
        names: &[GroupName],
        instances: &[String],
    ) -> Result<Vec<GroupState>, AwsError> {
        let listing = self.list_for_events(names, instances).await?;
        self.finish_listing(listing).await
    }

    async fn list_for_events(
        &self,
        names: &[GroupName],
        instances: &[String],
    ) -> Result<Listing, AwsError> {
        if instances.is_empty() {
            return Ok(Listing::read(self.groups(names).await?));
        }
        let read_at_ms = now_ms();
        let context = format!("group {}", names.join(","));
        let (groups, ec2) = tokio::join!(
            self.describe_groups(names, &context),
            self.describe_instances(instances, &context)
        );
        let (groups, ec2) = (groups?, ec2?);
        let groups = named_owned(groups, names);
        // Other members the events' change names (a burst of launches or
        // terminations): one more call, only when there are some.
        let mut ids: Vec<String> = groups
            .iter()
            .flat_map(|(_, g)| g.instances())
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) != Some("InService"))
            .filter_map(|i| i.instance_id())
            .filter(|id| !ec2.contains_key(*id))
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        Ok(Listing {
            listed: listed_groups(&groups),
            rest: Rest::Ec2(Box::new(Ec2Rest {
                groups,
                ec2,
                ids,
                context,
                read_at_ms,
            })),
        })
    }

    async fn finish_listing(&self, listing: Listing) -> Result<Vec<GroupState>, AwsError> {
        let rest = match listing.rest {
            Rest::Read(states) => return Ok(states),
            Rest::Ec2(rest) => *rest,
        };
        let Ec2Rest {
            groups,
            mut ec2,
            ids,
            context,
            read_at_ms,
        } = rest;
        if !ids.is_empty() {
            ec2.extend(self.describe_instances(&ids, &context).await?);
        }
        Ok(groups
            .iter()
            .map(|(name, g)| group_state(name, g, &ec2, read_at_ms))
            .collect())
    }

    async fn groups(&self, names: &[GroupName]) -> Result<Vec<GroupState>, AwsError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let context = format!("group {}", names.join(","));
        let read_at_ms = now_ms();
        let groups = self.describe_groups(names, &context).await?;
        let ids = instance_ids(&groups);
        let ec2 = if ids.is_empty() {
            HashMap::new()
        } else {
            self.describe_instances(&ids, &context).await?
        };
        Ok(named(&groups, names)
            .map(|(name, g)| group_state(name, g, &ec2, read_at_ms))
            .collect())
    }

    async fn group_of_instance(&self, instance_id: &str) -> Result<Option<GroupName>, AwsError> {
        let out = self
            .asg
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| {
                api_error(
                    "DescribeAutoScalingInstances",
                    &format!("instance {instance_id}"),
                    &e,
                )
            })?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
            .and_then(|i| i.auto_scaling_group_name())
            .and_then(|n| GroupName::new(n).ok()))
    }

    async fn tagged_groups(&self) -> Result<Vec<GroupName>, AwsError> {
        let mut pages = self
            .asg
            .describe_auto_scaling_groups()
            .filters(
                aws_sdk_autoscaling::types::Filter::builder()
                    .name("tag-key")
                    .values(POOL_TAG)
                    .build(),
            )
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                api_error(
                    "DescribeAutoScalingGroups",
                    "the groups tagged haproxy:pool",
                    &e,
                )
            })?;
            names.extend(
                page.auto_scaling_groups()
                    .iter()
                    .filter_map(|g| g.auto_scaling_group_name())
                    .filter_map(|n| GroupName::new(n).ok()),
            );
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Phase;

    fn read(spot: bool, state: &str, tag: Option<&str>) -> GroupMember {
        let facts = Ec2Facts {
            address: Some("10.0.0.1".parse().unwrap()),
            state: Some("running".into()),
            spot,
            interrupted: tag.map(str::to_string),
        };
        member(
            "g",
            MemberId::new("i-1").unwrap(),
            state.into(),
            facts,
            1_700_000_000_000,
        )
    }

    #[test]
    fn a_hand_put_interrupted_tag_drains_nothing_ec2_could_not_have_warned() {
        let deadline = Some("1700000060000");
        // On-Demand, or still launching: the tag changes nothing.
        for m in [
            read(false, "InService", deadline),
            read(false, "InService", Some("rebalance")),
            read(true, "Pending:Wait", deadline),
            read(true, "InService", Some("")),
        ] {
            assert!(m.interrupted.is_none(), "{m:?}");
            assert_ne!(m.phase, Phase::Leaving, "{m:?}");
        }
        assert_eq!(read(true, "Pending:Wait", deadline).phase, Phase::Joining);
        // A Spot member with a deadline of EC2's: drained as before.
        let m = read(true, "InService", deadline);
        assert_eq!(m.phase, Phase::Leaving);
        assert_eq!(
            m.interrupted.and_then(|i| i.drain_by_ms),
            Some(1_700_000_060_000)
        );
        assert_eq!(read(true, "InService", None).phase, Phase::Serving);
    }
}
