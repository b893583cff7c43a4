//! Which pools an Auto Scaling group feeds: pure parsing, no I/O.
//!
//! A group maps to one or more pools (HAProxy backends). The mapping comes from two
//! places, the group's own tags winning over the configuration:
//!
//! - the `POOLS` configuration (JSON, see `docs/interfaces.md`):
//!   `{"web-asg": [{"name": "web", "port": 8080}]}`, each entry an [`infra::Pool`](crate::Pool)
//!   (`name`, `port`, optional `server_options`);
//! - the group tags `haproxy:pool` (comma-separated pool names) and `haproxy:port` (the
//!   port its members serve on).
//!
//! Resolution for one group:
//! 1. `haproxy:pool` present: those pools. Each pool's port is `haproxy:port` when
//!    present, otherwise the port the configuration gives that pool for this group;
//!    server options come from the configuration or the default.
//! 2. `haproxy:pool` absent: the configured pools, with `haproxy:port` (if present)
//!    overriding each port.
//! 3. Neither tag nor configuration: the group is not managed (`Ok(None)`).
//!
//! An invalid or incomplete tag is an error naming the group and the tag.

use std::collections::BTreeMap;

#[cfg(test)]
use crate::ServerOptions;
use crate::{ModelError, Pool, PoolName, Port};

/// Tag naming the pools (comma-separated) a group feeds.
pub const POOL_TAG: &str = "haproxy:pool";
/// Tag giving the port a group's members serve on.
pub const PORT_TAG: &str = "haproxy:port";

/// Why a group's pools could not be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupPoolsError {
    /// The `POOLS` configuration is not the expected JSON.
    #[error("invalid POOLS configuration: {0}. Expected JSON like {{\"web-asg\": [{{\"name\": \"web\", \"port\": 8080}}]}}")]
    Config(String),
    /// A tag on the group has a value that can not be used.
    #[error("group {group}: tag {tag}={value:?} is invalid: {reason}")]
    InvalidTag {
        /// The Auto Scaling group.
        group: String,
        /// The tag key.
        tag: &'static str,
        /// The tag's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag the group needs is missing.
    #[error("group {group}: tag {tag} is missing: {reason}")]
    MissingTag {
        /// The Auto Scaling group.
        group: String,
        /// The tag key.
        tag: &'static str,
        /// Why it is needed.
        reason: String,
    },
}

/// The `POOLS` configuration: Auto Scaling group name -> the pools it feeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPools {
    groups: BTreeMap<String, Vec<Pool>>,
}

impl GroupPools {
    /// Wraps an already-built mapping.
    pub fn new(groups: BTreeMap<String, Vec<Pool>>) -> Self {
        Self { groups }
    }

    /// Parses the `POOLS` JSON. An empty or blank string is an empty configuration
    /// (every group then needs its tags).
    pub fn from_json(text: &str) -> Result<Self, GroupPoolsError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let groups: BTreeMap<String, Vec<Pool>> =
            serde_json::from_str(text).map_err(|e| GroupPoolsError::Config(e.to_string()))?;
        for (group, pools) in &groups {
            if pools.is_empty() {
                return Err(GroupPoolsError::Config(format!(
                    "group {group} has an empty pool list"
                )));
            }
            let mut names: Vec<&PoolName> = pools.iter().map(|p| &p.name).collect();
            names.sort();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(GroupPoolsError::Config(format!(
                    "group {group} names the same pool twice"
                )));
            }
        }
        Ok(Self { groups })
    }

    /// The configured pools of `group`, if any.
    pub fn get(&self, group: &str) -> Option<&[Pool]> {
        self.groups.get(group).map(Vec::as_slice)
    }

    /// The configured group names.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The whole mapping.
    pub fn as_map(&self) -> &BTreeMap<String, Vec<Pool>> {
        &self.groups
    }
}

/// Works out the pools of `group` from its tags and the configured fallback.
///
/// `Ok(None)`: the group is not managed (no tag, no configuration).
pub fn resolve_pools(
    group: &str,
    tags: &BTreeMap<String, String>,
    configured: Option<&[Pool]>,
) -> Result<Option<Vec<Pool>>, GroupPoolsError> {
    let port_tag = match tags.get(PORT_TAG) {
        Some(v) => Some(parse_port_tag(group, v)?),
        None => None,
    };
    match tags.get(POOL_TAG) {
        Some(value) => {
            let names = parse_pool_tag(group, value)?;
            let mut pools = Vec::with_capacity(names.len());
            for name in names {
                let conf = configured.and_then(|c| c.iter().find(|p| p.name == name));
                let port = match (port_tag, conf) {
                    (Some(p), _) => p,
                    (None, Some(c)) => c.port,
                    (None, None) => {
                        return Err(GroupPoolsError::MissingTag {
                            group: group.to_string(),
                            tag: PORT_TAG,
                            reason: format!(
                                "pool {name} is named by {POOL_TAG} but no port is known for it; tag the group {PORT_TAG}=<port> or configure the pool in POOLS"
                            ),
                        })
                    }
                };
                let server_options = conf.map(|c| c.server_options.clone()).unwrap_or_default();
                pools.push(Pool {
                    name,
                    port,
                    server_options,
                });
            }
            Ok(Some(pools))
        }
        None => match configured {
            Some(conf) => Ok(Some(
                conf.iter()
                    .map(|p| Pool {
                        port: port_tag.unwrap_or(p.port),
                        ..p.clone()
                    })
                    .collect(),
            )),
            None if port_tag.is_some() => Err(GroupPoolsError::MissingTag {
                group: group.to_string(),
                tag: POOL_TAG,
                reason: format!(
                    "the group has {PORT_TAG} but no pool: tag it {POOL_TAG}=<pool>[,<pool>...] or configure it in POOLS"
                ),
            }),
            None => Ok(None),
        },
    }
}

fn parse_port_tag(group: &str, value: &str) -> Result<Port, GroupPoolsError> {
    value
        .trim()
        .parse::<Port>()
        .map_err(|_| GroupPoolsError::InvalidTag {
            group: group.to_string(),
            tag: PORT_TAG,
            value: value.to_string(),
            reason: "a port is a number from 1 to 65535".into(),
        })
}

fn parse_pool_tag(group: &str, value: &str) -> Result<Vec<PoolName>, GroupPoolsError> {
    let invalid = |reason: String| GroupPoolsError::InvalidTag {
        group: group.to_string(),
        tag: POOL_TAG,
        value: value.to_string(),
        reason,
    };
    let mut names: Vec<PoolName> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let name = PoolName::new(part).map_err(|e: ModelError| invalid(e.to_string()))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(invalid(
            "no pool name: give one or more comma-separated HAProxy backend names".into(),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn conf() -> GroupPools {
        GroupPools::from_json(
            r#"{"web-asg":[{"name":"web","port":8080,"server_options":"check inter 1s"}],
                "api-asg":[{"name":"api","port":9000},{"name":"api-internal","port":9001}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn configuration_alone_maps_a_group() {
        let c = conf();
        let pools = resolve_pools("web-asg", &tags(&[]), c.get("web-asg"))
            .unwrap()
            .unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].name.as_str(), "web");
        assert_eq!(pools[0].port.get(), 8080);
        assert_eq!(pools[0].server_options.as_str(), "check inter 1s");
        let pools = resolve_pools("api-asg", &tags(&[]), c.get("api-asg"))
            .unwrap()
            .unwrap();
        assert_eq!(pools.len(), 2);
    }

    #[test]
    fn tags_override_the_configuration() {
        let c = conf();
        let pools = resolve_pools(
            "web-asg",
            &tags(&[(POOL_TAG, "web, web-canary"), (PORT_TAG, "8443")]),
            c.get("web-asg"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(pools.len(), 2);
        assert!(pools.iter().all(|p| p.port.get() == 8443));
        // Options of a configured pool survive; an unknown pool gets the default.
        assert_eq!(pools[0].server_options.as_str(), "check inter 1s");
        assert_eq!(pools[1].server_options, ServerOptions::default());
        // Port tag alone overrides every configured pool's port.
        let pools = resolve_pools("api-asg", &tags(&[(PORT_TAG, "7000")]), c.get("api-asg"))
            .unwrap()
            .unwrap();
        assert!(pools.iter().all(|p| p.port.get() == 7000));
        // Pool tag alone takes the configured port of that pool.
        let pools = resolve_pools("api-asg", &tags(&[(POOL_TAG, "api")]), c.get("api-asg"))
            .unwrap()
            .unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].port.get(), 9000);
    }

    #[test]
    fn tags_alone_map_a_group() {
        let pools = resolve_pools("x", &tags(&[(POOL_TAG, "a,b,a"), (PORT_TAG, " 80 ")]), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn unmanaged_groups_are_none() {
        assert_eq!(
            resolve_pools("other", &tags(&[("Name", "x")]), None),
            Ok(None)
        );
    }

    #[test]
    fn bad_tags_name_the_group_and_the_tag() {
        let e = resolve_pools("g1", &tags(&[(POOL_TAG, "web"), (PORT_TAG, "99999")]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("group g1") && e.contains("haproxy:port"), "{e}");
        let e = resolve_pools(
            "g2",
            &tags(&[(POOL_TAG, "web;evil"), (PORT_TAG, "80")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("group g2") && e.contains("haproxy:pool"), "{e}");
        let e = resolve_pools("g3", &tags(&[(POOL_TAG, " , ")]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("group g3") && e.contains("no pool name"), "{e}");
        let e = resolve_pools("g4", &tags(&[(POOL_TAG, "web")]), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("group g4") && e.contains("haproxy:port is missing"),
            "{e}"
        );
        let e = resolve_pools("g5", &tags(&[(PORT_TAG, "80")]), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("group g5") && e.contains("haproxy:pool is missing"),
            "{e}"
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(GroupPools::from_json("").unwrap().as_map().is_empty());
        let e = GroupPools::from_json(r#"{"g":[{"name":"web","port":0}]}"#).unwrap_err();
        assert!(e.to_string().contains("invalid POOLS"), "{e}");
        assert!(GroupPools::from_json(r#"{"g":[]}"#).is_err());
        assert!(
            GroupPools::from_json(r#"{"g":[{"name":"a","port":1},{"name":"a","port":2}]}"#)
                .is_err()
        );
        assert!(GroupPools::from_json("[1]").is_err());
    }
}
