//! The reactor's configuration, from its environment (see `docs/interfaces.md`). Pure:
//! [`Config::from_lookup`] takes any variable lookup.

use std::collections::BTreeSet;
use std::time::Duration;

use infra::aws::{GroupPools, GroupPoolsError};

use crate::dispatch::SsmSettings;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `POOLS` is not valid.
    #[error(transparent)]
    Pools(#[from] GroupPoolsError),
    /// A variable has an unusable value.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A variable that the chosen setup needs is missing.
    #[error("environment variable {name} is required: {reason}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// How changes reach the proxy hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// SSM Run Command of the project's document.
    Ssm {
        /// `SSM_DOCUMENT`.
        document: String,
        /// `PROXY_TAG_KEY`.
        tag_key: String,
        /// `PROXY_TAG_VALUE`.
        tag_value: String,
    },
    /// The agent binary run directly (`LOCAL_AGENTS`: one argv prefix per host).
    Local(Vec<Vec<String>>),
}

impl Transport {
    /// The SSM settings, when SSM is the transport.
    pub fn ssm_settings(&self) -> Option<SsmSettings> {
        match self {
            Self::Ssm {
                document,
                tag_key,
                tag_value,
            } => Some(SsmSettings {
                document: document.clone(),
                tag_key: tag_key.clone(),
                tag_value: tag_value.clone(),
            }),
            Self::Local(_) => None,
        }
    }
}

/// The proxy fleet's Route 53 records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `DNS_ZONE_ID` (with or without `/hostedzone/`).
    pub zone_id: String,
    /// `DNS_RECORD_NAME`, normalised with a trailing dot.
    pub record_name: String,
    /// `DNS_TTL` (default 60).
    pub ttl: i64,
}

/// Everything the reactor reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `POOLS`: group -> pools fallback (tags override).
    pub pools: GroupPools,
    /// How changes reach the hosts.
    pub transport: Transport,
    /// `PROXY_GROUP`: the proxy fleet's own group.
    pub proxy_group: Option<String>,
    /// Route 53 records of the proxy fleet, when configured.
    pub dns: Option<DnsConfig>,
    /// `HEALTH_TIMEOUT_S` (default 60): how long a launch may take to get healthy.
    pub health_timeout: Duration,
    /// `DRAIN_TIMEOUT_S` (default 120): how long a drain may take.
    pub drain_timeout: Duration,
    /// `LIFECYCLE_HOOKS`: the lifecycle hooks the reactor completes (comma separated).
    /// A group may carry other systems' hooks too (bootstrap, backup); an AWS load
    /// balancer never completes those, and neither may the reactor. Unset: every hook
    /// of the transition (a group holding only ours).
    pub hooks: Option<BTreeSet<String>>,
}

impl Config {
    /// Whether the reactor completes actions of this hook.
    pub fn owns_hook(&self, name: &str) -> bool {
        self.hooks.as_ref().is_none_or(|h| h.contains(name))
    }
}

/// `LIFECYCLE_HOOKS`: names as Auto Scaling allows them (1-255 of `A-Za-z0-9-_/`).
fn hook_names(value: &str) -> Result<BTreeSet<String>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "LIFECYCLE_HOOKS",
        value: value.to_string(),
        reason,
    };
    let mut names = BTreeSet::new();
    for name in value.split(',').map(str::trim) {
        let valid = (1..=255).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
        if !valid {
            return Err(invalid(format!(
                "{name:?} is not a lifecycle hook name (1-255 of A-Za-z0-9-_/); \
                 expected names separated by commas, like my-reactor-launch,my-reactor-terminate"
            )));
        }
        names.insert(name.to_string());
    }
    Ok(names)
}

fn secs(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                reason: "a number of seconds from 1 to 86400".into(),
            }),
        },
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (variable name -> value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let pools = GroupPools::from_json(&get("POOLS").unwrap_or_default())?;
        let transport = match get("LOCAL_AGENTS") {
            Some(v) => {
                let hosts: Vec<Vec<String>> =
                    serde_json::from_str(&v).map_err(|e| ConfigError::Invalid {
                        name: "LOCAL_AGENTS",
                        value: v.clone(),
                        reason: format!("a JSON list of argv prefixes, like [[\"/path/agent\",\"--config\",\"/tmp/h1/agent.toml\"]] ({e})"),
                    })?;
                if hosts.iter().any(Vec::is_empty) {
                    return Err(ConfigError::Invalid {
                        name: "LOCAL_AGENTS",
                        value: v,
                        reason: "an argv prefix is empty".into(),
                    });
                }
                Transport::Local(hosts)
            }
            None => Transport::Ssm {
                document: get("SSM_DOCUMENT").ok_or(ConfigError::Missing {
                    name: "SSM_DOCUMENT",
                    reason: "the SSM document that runs the agent (or set LOCAL_AGENTS)",
                })?,
                tag_key: get("PROXY_TAG_KEY").ok_or(ConfigError::Missing {
                    name: "PROXY_TAG_KEY",
                    reason: "the tag key marking the proxy fleet's instances",
                })?,
                tag_value: get("PROXY_TAG_VALUE").ok_or(ConfigError::Missing {
                    name: "PROXY_TAG_VALUE",
                    reason: "the tag value marking the proxy fleet's instances",
                })?,
            },
        };
        let dns = match (get("DNS_ZONE_ID"), get("DNS_RECORD_NAME")) {
            (Some(zone), Some(name)) => {
                let ttl = match get("DNS_TTL") {
                    None => 60,
                    Some(v) => match v.trim().parse::<i64>() {
                        Ok(n) if (0..=2_147_483_647).contains(&n) => n,
                        _ => {
                            return Err(ConfigError::Invalid {
                                name: "DNS_TTL",
                                value: v,
                                reason: "a number of seconds".into(),
                            })
                        }
                    },
                };
                let name = name.trim().to_ascii_lowercase();
                let record_name = if name.ends_with('.') {
                    name
                } else {
                    format!("{name}.")
                };
                Some(DnsConfig {
                    zone_id: zone.trim().to_string(),
                    record_name,
                    ttl,
                })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "DNS_RECORD_NAME",
                    reason: "DNS_ZONE_ID is set, so the record name is needed too",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "DNS_ZONE_ID",
                    reason: "DNS_RECORD_NAME is set, so the hosted zone is needed too",
                })
            }
        };
        if dns.is_some() && get("PROXY_GROUP").is_none() {
            return Err(ConfigError::Missing {
                name: "PROXY_GROUP",
                reason: "the DNS records follow the proxy fleet's group",
            });
        }
        Ok(Self {
            pools,
            transport,
            proxy_group: get("PROXY_GROUP"),
            dns,
            health_timeout: secs(&get, "HEALTH_TIMEOUT_S", 60)?,
            drain_timeout: secs(&get, "DRAIN_TIMEOUT_S", 120)?,
            hooks: get("LIFECYCLE_HOOKS").map(|v| hook_names(&v)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(kv: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| m.get(k).cloned())
    }

    #[test]
    fn lifecycle_hooks_name_the_hooks_completed() {
        let base = [("LOCAL_AGENTS", "[]")];
        let c = cfg(&base).unwrap();
        assert!(c.owns_hook("anything"), "unset: every hook");
        let c = cfg(&[base[0], ("LIFECYCLE_HOOKS", " r-launch, r-terminate ")]).unwrap();
        assert!(c.owns_hook("r-launch") && c.owns_hook("r-terminate"));
        assert!(!c.owns_hook("bootstrap"));
        for bad in ["r-launch,,r-terminate", "r launch", "r-launch;rm"] {
            let e = cfg(&[base[0], ("LIFECYCLE_HOOKS", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("LIFECYCLE_HOOKS") && e.contains("hook name"),
                "{e}"
            );
        }
    }

    #[test]
    fn ssm_setup() {
        let c = cfg(&[
            ("POOLS", r#"{"web-asg":[{"name":"web","port":8080}]}"#),
            ("SSM_DOCUMENT", "doc"),
            ("PROXY_TAG_KEY", "Role"),
            ("PROXY_TAG_VALUE", "proxy"),
            ("PROXY_GROUP", "proxies"),
            ("DNS_ZONE_ID", "/hostedzone/Z1"),
            ("DNS_RECORD_NAME", "LB.Example.com"),
            ("HEALTH_TIMEOUT_S", "30"),
        ])
        .unwrap();
        assert!(matches!(c.transport, Transport::Ssm { .. }));
        assert_eq!(c.pools.get("web-asg").unwrap().len(), 1);
        let dns = c.dns.unwrap();
        assert_eq!(dns.record_name, "lb.example.com.");
        assert_eq!(dns.ttl, 60);
        assert_eq!(c.health_timeout, Duration::from_secs(30));
        assert_eq!(c.drain_timeout, Duration::from_secs(120));
    }

    #[test]
    fn local_agents_replace_ssm() {
        let c = cfg(&[(
            "LOCAL_AGENTS",
            r#"[["/bin/agent","--config","/tmp/a.toml"]]"#,
        )])
        .unwrap();
        assert_eq!(
            c.transport,
            Transport::Local(vec![vec![
                "/bin/agent".into(),
                "--config".into(),
                "/tmp/a.toml".into()
            ]])
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let e = cfg(&[]).unwrap_err().to_string();
        assert!(e.contains("SSM_DOCUMENT"), "{e}");
        let e = cfg(&[("LOCAL_AGENTS", "x")]).unwrap_err().to_string();
        assert!(e.contains("LOCAL_AGENTS"), "{e}");
        let e = cfg(&[("LOCAL_AGENTS", "[[]]")]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = cfg(&[("LOCAL_AGENTS", "[]"), ("POOLS", "{")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("POOLS"), "{e}");
        let e = cfg(&[("LOCAL_AGENTS", "[]"), ("DRAIN_TIMEOUT_S", "soon")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DRAIN_TIMEOUT_S"), "{e}");
        let e = cfg(&[("LOCAL_AGENTS", "[]"), ("DNS_ZONE_ID", "Z")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DNS_RECORD_NAME"), "{e}");
        let e = cfg(&[
            ("LOCAL_AGENTS", "[]"),
            ("DNS_ZONE_ID", "Z"),
            ("DNS_RECORD_NAME", "a.b"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("PROXY_GROUP"), "{e}");
    }
}
