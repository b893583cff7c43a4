//! The reactor's environment on the local stack, assembled in this one place: what the
//! Terraform reactor module sets on the Lambda (the control path, the proxy fleet's
//! document, tag and group, `POOLS`, timeouts, hooks), for the tests, benchmarks and the
//! demo that run the reactor in-process (`Config::from_lookup(|k| env.get(k))`) or as
//! its binary ([`ReactorEnv::vars`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::world::{ControlPath, DOCUMENT, PROXY_GROUP, PROXY_TAG};

/// The reactor's settings, by name; a later setting of a name replaces the earlier one.
#[derive(Debug, Clone)]
pub struct ReactorEnv {
    vars: BTreeMap<String, String>,
    /// `POOLS`: group name -> its pool entries, as the reactor reads them.
    pools: BTreeMap<String, Vec<Value>>,
}

impl ReactorEnv {
    /// The settings of `path` and the local proxy fleet ([`DOCUMENT`], [`PROXY_TAG`],
    /// [`PROXY_GROUP`]): no pool, timeout or hook yet.
    pub fn new(path: &ControlPath) -> Self {
        let vars = [
            ("SSM_DOCUMENT", DOCUMENT.to_string()),
            ("PROXY_TAG_KEY", PROXY_TAG.0.to_string()),
            ("PROXY_TAG_VALUE", PROXY_TAG.1.to_string()),
            ("PROXY_GROUP", PROXY_GROUP.to_string()),
            ("PROXY_ROLE_ID", path.role_id.clone()),
            ("LEDGER_TABLE", path.table.clone()),
            ("INBOX_QUEUE_URL", path.inbox.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            vars,
            pools: BTreeMap::new(),
        }
    }

    /// Group `group` feeds pool `pool` on the members' `port` (`POOLS`).
    pub fn pool(self, group: &str, pool: &str, port: u16) -> Self {
        self.pool_entry(group, json!({"name": pool, "port": port}))
    }

    /// Group `group` feeds the pool `entry` describes (`POOLS`' entry as the reactor
    /// reads it: `name`, `port`, optionally `weight`).
    pub fn pool_entry(mut self, group: &str, entry: Value) -> Self {
        self.pools.entry(group.to_string()).or_default().push(entry);
        self
    }

    /// `HEALTH_TIMEOUT_S` and `DRAIN_TIMEOUT_S`.
    pub fn timeouts(self, health_s: u64, drain_s: u64) -> Self {
        self.set("HEALTH_TIMEOUT_S", health_s.to_string())
            .set("DRAIN_TIMEOUT_S", drain_s.to_string())
    }

    /// `LIFECYCLE_HOOKS`: the hooks the reactor answers.
    pub fn hooks(self, hooks: &[&str]) -> Self {
        self.set("LIFECYCLE_HOOKS", hooks.join(","))
    }

    /// Any other setting (`MEMBER_ZONES`, `HOST_REPORT_TIMEOUT_S`, ...).
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    /// [`ReactorEnv::set`] for each of `settings`, in order.
    pub fn set_all<K: AsRef<str>, V: ToString>(
        self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        settings
            .into_iter()
            .fold(self, |e, (k, v)| e.set(k.as_ref(), v.to_string()))
    }

    /// The value of `key`, as the reactor's `Config::from_lookup` asks for it.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.vars.get(key) {
            Some(v) => Some(v.clone()),
            None if key == "POOLS" => self.gathered_pools(),
            None => None,
        }
    }

    /// Every setting, for a process's environment (the reactor's binary).
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !self.vars.contains_key("POOLS") {
            out.extend(self.gathered_pools().map(|p| ("POOLS".to_string(), p)));
        }
        out
    }

    /// `POOLS` from [`ReactorEnv::pool`] and [`ReactorEnv::pool_entry`], if any.
    fn gathered_pools(&self) -> Option<String> {
        (!self.pools.is_empty()).then(|| json!(self.pools).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> ControlPath {
        ControlPath {
            inbox: "http://127.0.0.1/q".into(),
            table: "ledger".into(),
            role_arn: "arn:aws:iam::123456789012:role/proxy".into(),
            role_id: "AROAEXAMPLE".into(),
        }
    }

    #[test]
    fn pools_gather_per_group_and_a_later_setting_wins() {
        let e = ReactorEnv::new(&path())
            .pool("web-asg", "web", 8080)
            .pool("web-asg", "api", 9090)
            .pool("b", "web", 8080)
            .timeouts(10, 20)
            .set("DRAIN_TIMEOUT_S", "5")
            .hooks(&["launch-hook", "terminate-hook"]);
        let pools: Value = serde_json::from_str(&e.get("POOLS").unwrap()).unwrap();
        assert_eq!(
            pools,
            json!({"web-asg": [{"name": "web", "port": 8080}, {"name": "api", "port": 9090}],
                   "b": [{"name": "web", "port": 8080}]})
        );
        assert_eq!(e.get("DRAIN_TIMEOUT_S").as_deref(), Some("5"));
        assert_eq!(e.get("HEALTH_TIMEOUT_S").as_deref(), Some("10"));
        assert_eq!(
            e.get("LIFECYCLE_HOOKS").as_deref(),
            Some("launch-hook,terminate-hook")
        );
        assert_eq!(e.get("LEDGER_TABLE").as_deref(), Some("ledger"));
        assert_eq!(e.vars().iter().filter(|(k, _)| k == "POOLS").count(), 1);
        assert_eq!(e.get("NOT_SET"), None);
    }

    #[test]
    fn a_pools_setting_given_whole_replaces_the_gathered_one() {
        let e = ReactorEnv::new(&path())
            .pool("a", "web", 1)
            .set("POOLS", r#"{"x":[]}"#);
        assert_eq!(e.get("POOLS").as_deref(), Some(r#"{"x":[]}"#));
        assert_eq!(e.vars().iter().filter(|(k, _)| k == "POOLS").count(), 1);
    }
}
