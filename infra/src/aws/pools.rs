//! Which pools an Auto Scaling group feeds: pure parsing, no I/O.
//!
//! A group maps to one or more pools (HAProxy backends). What a group *may* feed comes
//! from the configuration alone: the reactor's `POOLS` (and `MANAGED_GROUPS` entries,
//! `glob -> pools`), the agents' `[aws] groups`. Each allowed pool is an
//! [`AllowedPool`]: the pool (name, port, server options) and the ports a group's tag may
//! choose for it.
//!
//! `POOLS` (JSON, see `docs/interfaces.md`):
//! `{"web-asg": [{"name": "web", "port": 8080, "ports": [8080, 8443]}]}`, each entry an
//! [`infra::Pool`](crate::Pool) (`name`, `port`, optional `server_options`, optional
//! `weight`: the weight of this group's members in that pool, 0-256) with an optional
//! `ports` (the ports `haproxy:port` may choose; default: `port` alone).
//!
//! **Tags only narrow.** Whoever can tag a group must not be able to move its instances
//! into another pool or onto another port. So, for one group ([`resolve_pools`]):
//! 1. `haproxy:pool` (comma-separated pool names) picks among the allowed pools. A tag
//!    naming a pool that is not allowed, or that cannot be read, is refused whole: the
//!    group feeds every allowed pool, as if untagged.
//! 2. `haproxy:port` chooses the port of each chosen pool that lists it in its `ports`;
//!    for a pool that does not, or when the value is not a port, the tag is refused and
//!    the pool keeps its own port.
//! 3. Every refusal comes back as a [`TagRefused`] for the caller to log and count; it
//!    is never an error (a tag does not fix itself on a retry).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::{GroupName, ModelError, Pool, PoolName, Port, ServerOptions, Weight};

/// Tag naming the pools (comma-separated) a group feeds, among those allowed.
pub const POOL_TAG: &str = "haproxy:pool";
/// Tag giving the port a group's members serve on, among those its pools allow.
pub const PORT_TAG: &str = "haproxy:port";

/// Why the pool configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupPoolsError {
    /// The `POOLS` configuration is not the expected JSON.
    #[error("invalid POOLS configuration: {0}. Expected JSON like {{\"web-asg\": [{{\"name\": \"web\", \"port\": 8080}}]}}")]
    Config(String),
}

/// A pool a group may feed, and the ports its `haproxy:port` tag may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPool {
    /// The pool, with the port its members serve on when no tag chooses another.
    pub pool: Pool,
    /// The ports a tag may choose (always holds `pool.port`).
    pub ports: Vec<Port>,
}

impl AllowedPool {
    /// A pool whose port no tag may change.
    pub fn only(pool: Pool) -> Self {
        Self::with_ports(pool, Vec::new())
    }

    /// A pool whose tag may choose any of `ports` (its own port always among them).
    pub fn with_ports(pool: Pool, mut ports: Vec<Port>) -> Self {
        if !ports.contains(&pool.port) {
            ports.insert(0, pool.port);
        }
        Self { pool, ports }
    }
}

/// A tag that was not followed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRefused {
    /// The Auto Scaling group.
    pub group: GroupName,
    /// The tag key.
    pub tag: &'static str,
    /// The tag's value.
    pub value: String,
    /// Why it was refused, and what is used instead.
    pub reason: String,
}

impl fmt::Display for TagRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group {}: tag {}={:?} refused: {}",
            self.group, self.tag, self.value, self.reason
        )
    }
}

/// The pools of one group after its tags, and the tags that were refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// The pools the group feeds, each with its port.
    pub pools: Vec<Pool>,
    /// The tags that were not followed.
    pub refused: Vec<TagRefused>,
}

/// One `POOLS` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolEntry {
    name: PoolName,
    port: Port,
    #[serde(default)]
    server_options: ServerOptions,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    weight: Option<Weight>,
}

/// The `POOLS` configuration: Auto Scaling group name -> the pools it may feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPools {
    groups: BTreeMap<GroupName, Vec<AllowedPool>>,
}

impl GroupPools {
    /// Wraps an already-built mapping.
    pub fn new(groups: BTreeMap<GroupName, Vec<AllowedPool>>) -> Self {
        Self { groups }
    }

    /// Parses the `POOLS` JSON. An empty or blank string is an empty configuration.
    pub fn from_json(text: &str) -> Result<Self, GroupPoolsError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let raw: BTreeMap<String, Vec<PoolEntry>> =
            serde_json::from_str(text).map_err(|e| GroupPoolsError::Config(e.to_string()))?;
        let mut groups = BTreeMap::new();
        for (group, entries) in raw {
            let group =
                GroupName::new(group).map_err(|e| GroupPoolsError::Config(e.to_string()))?;
            if entries.is_empty() {
                return Err(GroupPoolsError::Config(format!(
                    "group {group} has an empty pool list"
                )));
            }
            let mut names: Vec<&PoolName> = entries.iter().map(|p| &p.name).collect();
            names.sort();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(GroupPoolsError::Config(format!(
                    "group {group} names the same pool twice"
                )));
            }
            let pools = entries
                .into_iter()
                .map(|e| {
                    let pool = Pool {
                        name: e.name,
                        port: e.port,
                        server_options: e.server_options,
                        weight: e.weight,
                    };
                    AllowedPool::with_ports(pool, e.ports)
                })
                .collect();
            groups.insert(group, pools);
        }
        Ok(Self { groups })
    }

    /// The pools `group` may feed, if `POOLS` names it.
    pub fn get(&self, group: &str) -> Option<&[AllowedPool]> {
        self.groups.get(group).map(Vec::as_slice)
    }

    /// The configured group names.
    pub fn groups(&self) -> impl Iterator<Item = &GroupName> {
        self.groups.keys()
    }

    /// The first definition of pool `name` (its port, options and ports), whichever
    /// group it is given for.
    pub fn pool(&self, name: &PoolName) -> Option<&AllowedPool> {
        self.groups
            .values()
            .flatten()
            .find(|a| &a.pool.name == name)
    }
}

/// Works out the pools of `group` from the pools it may feed (`allowed`) and its tags:
/// tags only narrow (see the module documentation).
pub fn resolve_pools(
    group: &GroupName,
    tags: &BTreeMap<String, String>,
    allowed: &[AllowedPool],
) -> Resolved {
    let refuse = |tag: &'static str, value: &str, reason: String| TagRefused {
        group: group.clone(),
        tag,
        value: value.to_string(),
        reason,
    };
    let mut refused = Vec::new();
    let names = |a: &[&AllowedPool]| {
        a.iter()
            .map(|p| p.pool.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let all: Vec<&AllowedPool> = allowed.iter().collect();
    let chosen: Vec<&AllowedPool> = match tags.get(POOL_TAG) {
        None => all,
        Some(value) => match pick(value, allowed) {
            Ok(picked) => picked,
            Err(why) => {
                refused.push(refuse(
                    POOL_TAG,
                    value,
                    format!("{why}; the group feeds every pool it may: {}", names(&all)),
                ));
                all
            }
        },
    };
    let mut pools: Vec<Pool> = chosen.iter().map(|a| a.pool.clone()).collect();
    if let Some(value) = tags.get(PORT_TAG) {
        match value.trim().parse::<Port>() {
            Err(_) => refused.push(refuse(
                PORT_TAG,
                value,
                "a port is a number from 1 to 65535; each pool keeps its own port".into(),
            )),
            Ok(port) => {
                let mut kept = Vec::new();
                for (a, p) in chosen.iter().zip(pools.iter_mut()) {
                    if a.ports.contains(&port) {
                        p.port = port;
                    } else {
                        kept.push(format!("{} keeps {}", a.pool.name, a.pool.port));
                    }
                }
                if !kept.is_empty() {
                    refused.push(refuse(
                        PORT_TAG,
                        value,
                        format!(
                            "port {port} is not among the ports the configuration allows ({}); {}",
                            ports_of(&chosen),
                            kept.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Resolved { pools, refused }
}

fn ports_of(pools: &[&AllowedPool]) -> String {
    pools
        .iter()
        .map(|a| {
            let ports: Vec<String> = a.ports.iter().map(Port::to_string).collect();
            format!("{}: {}", a.pool.name, ports.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The allowed pools a `haproxy:pool` value names, in its order, or why it is refused.
fn pick<'a>(value: &str, allowed: &'a [AllowedPool]) -> Result<Vec<&'a AllowedPool>, String> {
    let mut picked: Vec<&AllowedPool> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let name = PoolName::new(part).map_err(|e: ModelError| e.to_string())?;
        let Some(a) = allowed.iter().find(|a| a.pool.name == name) else {
            return Err(format!(
                "pool {name} is not one the configuration lets this group feed (tags only narrow)"
            ));
        };
        if !picked.iter().any(|p| p.pool.name == name) {
            picked.push(a);
        }
    }
    if picked.is_empty() {
        return Err("it names no pool".into());
    }
    Ok(picked)
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
            r#"{"web-asg":[{"name":"web","port":8080,"server_options":"check inter 1s","ports":[8443]}],
                "api-asg":[{"name":"api","port":9000},{"name":"api-internal","port":9001}]}"#,
        )
        .unwrap()
    }

    fn resolve(group: &str, kv: &[(&str, &str)]) -> Resolved {
        let c = conf();
        let name = GroupName::new(group).unwrap();
        resolve_pools(&name, &tags(kv), c.get(group).unwrap())
    }

    fn shape(r: &Resolved) -> Vec<(String, u16)> {
        r.pools
            .iter()
            .map(|p| (p.name.to_string(), p.port.get()))
            .collect()
    }

    fn pairs(v: &[(&str, u16)]) -> Vec<(String, u16)> {
        v.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn the_configuration_alone_maps_a_group() {
        let r = resolve("web-asg", &[]);
        assert_eq!(shape(&r), pairs(&[("web", 8080)]));
        assert_eq!(r.pools[0].server_options.as_str(), "check inter 1s");
        assert!(r.refused.is_empty());
        let r = resolve("api-asg", &[]);
        assert_eq!(shape(&r), pairs(&[("api", 9000), ("api-internal", 9001)]));
    }

    #[test]
    fn tags_pick_among_the_allowed_pools_and_ports() {
        let r = resolve("api-asg", &[(POOL_TAG, "api")]);
        assert_eq!(shape(&r), pairs(&[("api", 9000)]));
        assert!(r.refused.is_empty());
        let r = resolve("web-asg", &[(PORT_TAG, " 8443 ")]);
        assert_eq!(shape(&r), pairs(&[("web", 8443)]));
        assert!(r.refused.is_empty());
        // Its own port is always allowed.
        let r = resolve("web-asg", &[(POOL_TAG, "web"), (PORT_TAG, "8080")]);
        assert_eq!(shape(&r), pairs(&[("web", 8080)]));
        assert!(r.refused.is_empty());
    }

    #[test]
    fn a_tag_naming_another_pool_is_refused_whole() {
        // An internal pool, or any pool the configuration does not give this group.
        for value in ["api-internal", "web, api-internal", "evil"] {
            let r = resolve("web-asg", &[(POOL_TAG, value)]);
            assert_eq!(shape(&r), pairs(&[("web", 8080)]), "{value}");
            assert_eq!(r.refused.len(), 1);
            let why = r.refused[0].to_string();
            assert!(
                why.contains("group web-asg")
                    && why.contains("haproxy:pool")
                    && why.contains("tags only narrow")
                    && why.contains("feeds every pool it may: web"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_port_a_pool_does_not_allow_is_refused() {
        let r = resolve("api-asg", &[(PORT_TAG, "22")]);
        assert_eq!(shape(&r), pairs(&[("api", 9000), ("api-internal", 9001)]));
        assert_eq!(r.refused.len(), 1);
        let why = r.refused[0].to_string();
        assert!(
            why.contains("haproxy:port=\"22\"")
                && why.contains("api keeps 9000")
                && why.contains("api-internal keeps 9001"),
            "{why}"
        );
        // Honoured where allowed, refused where not: web allows 8443, api-asg's pools not.
        let r = resolve("web-asg", &[(PORT_TAG, "9001")]);
        assert_eq!(shape(&r), pairs(&[("web", 8080)]));
        assert!(r.refused[0].to_string().contains("web: 8080 8443"));
    }

    #[test]
    fn unreadable_tags_are_refused_not_errors() {
        for (tag, value) in [
            (POOL_TAG, "web;evil"),
            (POOL_TAG, " , "),
            (PORT_TAG, "99999"),
        ] {
            let r = resolve("web-asg", &[(tag, value)]);
            assert_eq!(shape(&r), pairs(&[("web", 8080)]), "{tag}={value}");
            assert_eq!(r.refused.len(), 1, "{tag}={value}");
            assert_eq!(r.refused[0].tag, tag);
        }
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(GroupPools::from_json("").unwrap().groups().next().is_none());
        let e = GroupPools::from_json(r#"{"g":[{"name":"web","port":0}]}"#).unwrap_err();
        assert!(e.to_string().contains("invalid POOLS"), "{e}");
        assert!(GroupPools::from_json(r#"{"g":[]}"#).is_err());
        assert!(
            GroupPools::from_json(r#"{"g":[{"name":"a","port":1},{"name":"a","port":2}]}"#)
                .is_err()
        );
        assert!(GroupPools::from_json(r#"{"g":[{"name":"a","port":1,"ports":[0]}]}"#).is_err());
        assert!(GroupPools::from_json("[1]").is_err());
        let e = GroupPools::from_json(r#"{"":[{"name":"web","port":80}]}"#).unwrap_err();
        assert!(
            e.to_string().contains("invalid Auto Scaling group name"),
            "{e}"
        );
    }

    #[test]
    fn a_pool_is_found_by_name_whichever_group_gives_it() {
        let c = conf();
        let a = c.pool(&PoolName::new("api-internal").unwrap()).unwrap();
        assert_eq!(a.pool.port.get(), 9001);
        assert_eq!(a.ports, vec![a.pool.port]);
        let w = c.pool(&PoolName::new("web").unwrap()).unwrap();
        assert_eq!(
            w.ports.iter().map(|p| p.get()).collect::<Vec<_>>(),
            [8080, 8443]
        );
    }
}
