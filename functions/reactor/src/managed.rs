//! `MANAGED_GROUPS`: the groups the reactor manages besides those `POOLS` names, each
//! entry a group name or `*` glob and the pools its groups may feed:
//!
//! ```text
//! MANAGED_GROUPS="api-* -> api api-internal:9001, batch-blue -> batch:8000"
//! ```
//!
//! A pool is written `name` (its port, server options and allowed ports are those
//! `POOLS` gives a pool of that name) or `name:port` (that port, and no other). A
//! group's `haproxy:pool` tag may then pick among those pools, never add one (tags only
//! narrow: see [`infra::aws::pools`]), so whoever can create a group matching a glob
//! feeds only the pools the entry allows. An entry without `->` must name a `POOLS`
//! group (it adds nothing); anything else is refused with the form to write. Pure.

use infra::aws::{AllowedPool, GroupPools};
use infra::{Pool, PoolName, Port};

use crate::config::ConfigError;

/// The parsed `MANAGED_GROUPS`: globs, each with the pools its groups may feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedGroups(Vec<(String, Vec<AllowedPool>)>);

const NAME: &str = "MANAGED_GROUPS";
const FORM: &str = "expected entries like `api-* -> api api-internal:9001` (a group name or *-glob, then the pools its groups may feed, each `name` as POOLS defines it or `name:port`), separated by commas";

impl ManagedGroups {
    /// Parses `value` (blank: none); pools written without a port are looked up in
    /// `pools` (`POOLS`).
    pub fn parse(value: &str, pools: &GroupPools) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            name: NAME,
            value: value.to_string(),
            reason: format!("{reason}; {FORM}"),
        };
        let mut out = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (glob, list) = match entry.split_once("->") {
                Some((g, l)) => (g.trim(), Some(l)),
                None => (entry, None),
            };
            let valid = !glob.is_empty()
                && glob.len() <= 255
                && glob
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "*_.:/-".contains(c));
            if !valid {
                return Err(invalid(format!(
                    "{glob:?} is not a group name or glob (1-255 of A-Za-z0-9*_.:/-)"
                )));
            }
            let Some(list) = list else {
                if pools.get(glob).is_some() {
                    continue;
                }
                return Err(invalid(format!(
                    "{glob:?} names no pools (tags only narrow, so an entry says which pools its groups may feed)"
                )));
            };
            let allowed = list
                .split_whitespace()
                .map(|p| allowed_pool(p, pools))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| invalid(format!("entry {glob:?}: {e}")))?;
            if allowed.is_empty() {
                return Err(invalid(format!("entry {glob:?} names no pool after ->")));
            }
            out.push((glob.to_string(), allowed));
        }
        Ok(Self(out))
    }

    /// The pools a group matching one of the globs may feed (the first match's).
    pub fn allowed(&self, group: &str) -> Option<&[AllowedPool]> {
        self.0
            .iter()
            .find(|(g, _)| glob(g.as_bytes(), group.as_bytes()))
            .map(|(_, a)| a.as_slice())
    }
}

/// One pool of an entry: `name` (as `POOLS` defines it) or `name:port`.
fn allowed_pool(text: &str, pools: &GroupPools) -> Result<AllowedPool, String> {
    let (name, port) = match text.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (text, None),
    };
    let name = PoolName::new(name).map_err(|e| format!("pool {name:?}: {e}"))?;
    let defined = pools.pool(&name);
    match port {
        None => defined.cloned().ok_or_else(|| {
            format!("pool {name} has no port: POOLS does not define it, so write {name}:<port>")
        }),
        Some(p) => {
            let port: Port = p
                .parse()
                .map_err(|_| format!("pool {name}: {p:?} is not a port (1-65535)"))?;
            let server_options = defined
                .map(|d| d.pool.server_options.clone())
                .unwrap_or_default();
            Ok(AllowedPool::only(Pool {
                name,
                port,
                server_options,
                weight: None,
            }))
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            (0..=text.len()).any(|i| glob(rest, text.get(i..).unwrap_or_default()))
        }
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t == c && glob(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> GroupPools {
        GroupPools::from_json(
            r#"{"web-asg":[{"name":"web","port":8080,"server_options":"check","ports":[8443]}]}"#,
        )
        .unwrap()
    }

    fn shape(a: Option<&[AllowedPool]>) -> Vec<(String, u16, usize)> {
        a.unwrap_or_default()
            .iter()
            .map(|p| (p.pool.name.to_string(), p.pool.port.get(), p.ports.len()))
            .collect()
    }

    #[test]
    fn entries_give_globs_their_pools() {
        let m = ManagedGroups::parse(
            "api-* -> api:9000 web, batch->batch:8000 , web-asg",
            &pools(),
        )
        .unwrap();
        assert_eq!(
            shape(m.allowed("api-blue")),
            [("api".into(), 9000, 1), ("web".into(), 8080, 2)]
        );
        assert_eq!(shape(m.allowed("api-")), shape(m.allowed("api-blue")));
        assert_eq!(shape(m.allowed("batch")), [("batch".into(), 8000, 1)]);
        for other in ["batch-2", "evil", "xapi-1", "web-asg"] {
            assert!(m.allowed(other).is_none(), "{other}");
        }
        assert!(ManagedGroups::parse("", &pools())
            .unwrap()
            .allowed("x")
            .is_none());
    }

    #[test]
    fn bad_entries_are_refused_with_the_form() {
        for (value, says) in [
            ("api-*", "names no pools"),
            ("web asg -> web", "not a group name or glob"),
            ("api-* -> api", "POOLS does not define it"),
            ("api-* -> api:http", "not a port"),
            ("api-* -> ", "names no pool"),
            ("api-* -> a;b:80", "pool \"a;b\""),
        ] {
            let e = ManagedGroups::parse(value, &pools())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("MANAGED_GROUPS") && e.contains(says) && e.contains("api-* -> api"),
                "{value}: {e}"
            );
        }
    }
}
