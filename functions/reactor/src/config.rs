//! The reactor's configuration, from its environment (see `docs/interfaces.md`). Pure:
//! [`Config::from_lookup`] takes any variable lookup.

use crate::health::HealthPolicy;
use std::collections::BTreeSet;
use std::time::Duration;

use infra::aws::{AllowedPool, GroupPools, GroupPoolsError};
use infra::GroupName;

use crate::managed::ManagedGroups;

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

/// What to do with an `EC2 Instance Rebalance Recommendation` (`REBALANCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rebalance {
    /// Nothing: Auto Scaling's own termination (with its hook) drains it later.
    #[default]
    Ignore,
    /// Drain it at once, like an interruption warning, without the two-minute deadline.
    Drain,
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
    /// `POOLS`: group -> the pools it may feed (its tags may narrow them).
    pub pools: GroupPools,
    /// `MANAGED_GROUPS`: the other groups (globs) and the pools each may feed.
    pub managed: ManagedGroups,
    /// SSM Run Command of the project's document to the proxies (`SSM_DOCUMENT`,
    /// `PROXY_GROUP`, `PROXY_TAG_KEY`, `PROXY_TAG_VALUE`).
    pub ssm: SsmSettings,
    /// `PROXY_GROUP`: the proxy fleet's own group; its in-service instances carrying the
    /// proxy tag are the proxies.
    pub proxy_group: GroupName,
    /// `PROXY_ROLE_ID`: the unique id (`AROA...`) of the proxies' instance role. A host
    /// report is believed only from a session of it named after the host it reports for.
    pub proxy_role_id: String,
    /// `LEDGER_TABLE`: the lifecycle ledger's DynamoDB table.
    pub ledger_table: String,
    /// `INBOX_QUEUE_URL`: the reactor's inbox, where it sends itself reminders.
    pub inbox_url: String,
    /// `LEDGER_TTL_S` (default 86400): how long a decided item stays in the ledger.
    pub ledger_ttl: Duration,
    /// `HOST_REPORT_TIMEOUT_S` (default 30): a host silent this long after another host
    /// reported on an action is dropped from that action's quorum.
    pub host_report_timeout: Duration,
    /// Route 53 records of the proxy fleet, when configured.
    pub dns: Option<DnsConfig>,
    /// `HEALTH_TIMEOUT_S` (default 60): how long a launch may take to get healthy.
    pub health_timeout: Duration,
    /// `DRAIN_TIMEOUT_S` (default 120): how long a drain may take.
    pub drain_timeout: Duration,
    /// `REBALANCE` (`drain` or `ignore`, default `ignore`).
    pub rebalance: Rebalance,
    /// `SPOT_DRAIN_TIMEOUT_S` (default 90): the drain deadline after a Spot interruption
    /// warning, which comes two minutes before the instance is reclaimed.
    pub spot_drain_timeout: Duration,
    /// `LIFECYCLE_HOOKS`: the lifecycle hooks the reactor completes (comma separated).
    /// A group may carry other systems' hooks too (bootstrap, backup); an AWS load
    /// balancer never completes those, and neither may the reactor. Unset: every hook
    /// of the transition (a group holding only ours).
    pub hooks: Option<BTreeSet<String>>,
    /// `MEMBER_ZONES` (`true` or `false`, default `false`): send each member's
    /// Availability Zone in changes (for the agents' same-zone routing). Agents older
    /// than zones refuse a change carrying one: upgrade them first.
    pub member_zones: bool,
    /// `PROXY_HEALTH_GROUPS`, `UNHEALTHY_AFTER_S`, `UNHEALTHY_QUORUM`,
    /// `MAX_UNHEALTHY_FRACTION`: proxy-detected health ([`crate::health`]).
    pub health: HealthPolicy,
}

impl Config {
    /// Whether the reactor completes actions of this hook.
    pub fn owns_hook(&self, name: &str) -> bool {
        self.hooks.as_ref().is_none_or(|h| h.contains(name))
    }

    /// Whether `group` may feed pools: `POOLS` names it or it matches `MANAGED_GROUPS`.
    pub fn manages(&self, group: &str) -> bool {
        self.allowed(group).is_some()
    }

    /// The pools `group` may feed (`POOLS`' entry, else the first `MANAGED_GROUPS`
    /// glob it matches); its tags may only narrow them.
    pub fn allowed(&self, group: &str) -> Option<&[AllowedPool]> {
        self.pools
            .get(group)
            .or_else(|| self.managed.allowed(group))
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
    secs_in(lookup, name, default, 1..=86_400)
}

fn secs_in(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Duration::from_secs(n)),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                reason: format!(
                    "a number of seconds from {} to {}",
                    range.start(),
                    range.end()
                ),
            }),
        },
    }
}

/// `PROXY_ROLE_ID`: an IAM role's unique id.
fn role_id(value: String) -> Result<String, ConfigError> {
    let valid = value.len() >= 9
        && value.starts_with("AROA")
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if valid {
        return Ok(value);
    }
    Err(ConfigError::Invalid {
        name: "PROXY_ROLE_ID",
        value,
        reason: "an IAM role's unique id: AROA followed by upper-case letters and digits (aws iam get-role --query Role.RoleId; Terraform: the proxy fleet's role_unique_id)".into(),
    })
}

/// `REBALANCE`.
fn rebalance(value: Option<String>) -> Result<Rebalance, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("ignore") => Ok(Rebalance::Ignore),
        Some("drain") => Ok(Rebalance::Drain),
        Some(other) => Err(ConfigError::Invalid {
            name: "REBALANCE",
            value: other.to_string(),
            reason: "`drain` or `ignore`".into(),
        }),
    }
}

/// `DNS_ZONE_ID`, `DNS_RECORD_NAME`, `DNS_TTL`: both names or neither.
fn dns(
    zone: Option<String>,
    name: Option<String>,
    ttl: Option<String>,
) -> Result<Option<DnsConfig>, ConfigError> {
    let (zone, name) = match (zone, name) {
        (Some(zone), Some(name)) => (zone, name),
        (None, None) => return Ok(None),
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
    let ttl = match ttl {
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
    Ok(Some(DnsConfig {
        zone_id: zone.trim().to_string(),
        record_name,
        ttl,
    }))
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
        let managed = ManagedGroups::parse(&get("MANAGED_GROUPS").unwrap_or_default(), &pools)?;
        let required = |name: &'static str, reason: &'static str| {
            get(name)
                .map(|v| v.trim().to_string())
                .ok_or(ConfigError::Missing { name, reason })
        };
        let document = required("SSM_DOCUMENT", "the SSM document that runs the agent")?;
        let tag_key = required(
            "PROXY_TAG_KEY",
            "the tag key marking the proxy fleet's instances",
        )?;
        let tag_value = required(
            "PROXY_TAG_VALUE",
            "the tag value marking the proxy fleet's instances",
        )?;
        let proxy_group = required("PROXY_GROUP", "the proxy fleet's Auto Scaling group: its in-service instances carrying the proxy tag are the proxies changes go to and reports are believed from")?;
        let proxy_group =
            GroupName::new(proxy_group.as_str()).map_err(|e| ConfigError::Invalid {
                name: "PROXY_GROUP",
                value: proxy_group.clone(),
                reason: e.to_string(),
            })?;
        let proxy_role_id = role_id(required("PROXY_ROLE_ID", "the unique id (AROA...) of the proxies' instance role: host reports are believed only from its sessions")?)?;
        let ledger_table = required(
            "LEDGER_TABLE",
            "the lifecycle ledger's DynamoDB table (the reactor module creates it)",
        )?;
        let inbox_url = required("INBOX_QUEUE_URL", "the reactor's inbox (the SQS queue its event source mapping reads): it sends itself reminders there")?;
        let ssm = SsmSettings {
            proxy_group: proxy_group.clone(),
            document,
            tag_key,
            tag_value,
        };
        let rebalance = rebalance(get("REBALANCE"))?;
        let spot_drain_timeout = secs(&get, "SPOT_DRAIN_TIMEOUT_S", 90)?;
        if spot_drain_timeout >= Duration::from_secs(120) {
            return Err(ConfigError::Invalid {
                name: "SPOT_DRAIN_TIMEOUT_S",
                value: spot_drain_timeout.as_secs().to_string(),
                reason: "less than 120: a Spot instance is reclaimed two minutes after its warning"
                    .into(),
            });
        }
        let dns = dns(get("DNS_ZONE_ID"), get("DNS_RECORD_NAME"), get("DNS_TTL"))?;
        Ok(Self {
            pools,
            managed,
            ssm,
            rebalance,
            spot_drain_timeout,
            proxy_group,
            proxy_role_id,
            ledger_table,
            inbox_url,
            ledger_ttl: secs_in(&get, "LEDGER_TTL_S", 86_400, 60..=31_536_000)?,
            host_report_timeout: secs_in(&get, "HOST_REPORT_TIMEOUT_S", 30, 1..=3_600)?,
            dns,
            health_timeout: secs(&get, "HEALTH_TIMEOUT_S", 60)?,
            drain_timeout: secs(&get, "DRAIN_TIMEOUT_S", 120)?,
            hooks: get("LIFECYCLE_HOOKS").map(|v| hook_names(&v)).transpose()?,
            member_zones: flag(&get, "MEMBER_ZONES")?,
            health: health_policy(&get)?,
        })
    }
}

/// A `true`/`false` variable (unset: false).
fn flag(lookup: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match lookup(name).as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(ConfigError::Invalid {
            name,
            value: v.to_string(),
            reason: "give true or false".into(),
        }),
    }
}

/// `PROXY_HEALTH_GROUPS` and the settings of proxy-detected health.
fn health_policy(lookup: &impl Fn(&str) -> Option<String>) -> Result<HealthPolicy, ConfigError> {
    let invalid = |name, value: String, reason: &str| ConfigError::Invalid {
        name,
        value,
        reason: reason.into(),
    };
    let groups: Vec<String> = lookup("PROXY_HEALTH_GROUPS")
        .unwrap_or_default()
        .split(',')
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect();
    if let Some(bad) = groups
        .iter()
        .find(|g| g.len() > 255 || g.chars().any(char::is_whitespace))
    {
        return Err(invalid("PROXY_HEALTH_GROUPS", bad.clone(), "comma-separated Auto Scaling group names or globs with *, each 1-255 characters without spaces"));
    }
    let quorum = match lookup("UNHEALTHY_QUORUM") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| {
                invalid(
                    "UNHEALTHY_QUORUM",
                    v.clone(),
                    "0 (a majority of the proxies in service) or a number of proxies up to 1000",
                )
            })?,
    };
    let max_fraction = match lookup("MAX_UNHEALTHY_FRACTION") {
        None => 0.25,
        Some(v) => v.trim().parse::<f64>().ok().filter(|f| *f > 0.0 && *f <= 1.0).ok_or_else(|| {
            invalid("MAX_UNHEALTHY_FRACTION", v.clone(), "a fraction above 0 and at most 1 (0.25: at most a quarter of a group's members at once)")
        })?,
    };
    Ok(HealthPolicy {
        groups,
        after: secs_in(lookup, "UNHEALTHY_AFTER_S", 30, 5..=3_600)?,
        quorum,
        max_fraction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SSM: [(&str, &str); 7] = [
        ("SSM_DOCUMENT", "doc"),
        ("PROXY_TAG_KEY", "Role"),
        ("PROXY_TAG_VALUE", "proxy"),
        ("PROXY_GROUP", "proxies"),
        ("PROXY_ROLE_ID", "AROAEXAMPLEPROXY1"),
        ("LEDGER_TABLE", "r-ledger"),
        (
            "INBOX_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/r-inbox",
        ),
    ];

    fn cfg(kv: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = SSM
            .iter()
            .filter(|(k, _)| !kv.iter().any(|(n, _)| n == k))
            .chain(kv)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| m.get(k).cloned())
    }

    #[test]
    fn zones_and_proxy_health_default_off_and_validate() {
        let c = cfg(&[]).unwrap();
        assert!(!c.member_zones && !c.health.is_on());
        assert_eq!(c.health, HealthPolicy::default());
        let c = cfg(&[
            ("MEMBER_ZONES", "true"),
            ("PROXY_HEALTH_GROUPS", "web-asg, api-*"),
            ("UNHEALTHY_AFTER_S", "60"),
            ("UNHEALTHY_QUORUM", "2"),
            ("MAX_UNHEALTHY_FRACTION", "0.5"),
        ])
        .unwrap();
        assert!(c.member_zones);
        assert_eq!(c.health.groups, vec!["web-asg", "api-*"]);
        assert_eq!(
            (c.health.after, c.health.quorum, c.health.max_fraction),
            (Duration::from_secs(60), 2, 0.5)
        );
        for (name, value) in [
            ("MEMBER_ZONES", "yes"),
            ("UNHEALTHY_AFTER_S", "1"),
            ("UNHEALTHY_QUORUM", "-1"),
            ("MAX_UNHEALTHY_FRACTION", "0"),
            ("MAX_UNHEALTHY_FRACTION", "1.5"),
            ("PROXY_HEALTH_GROUPS", "web asg,x"),
        ] {
            let e = cfg(&[(name, value)]).unwrap_err().to_string();
            assert!(e.contains(name), "{name}={value}: {e}");
        }
    }

    #[test]
    fn lifecycle_hooks_name_the_hooks_completed() {
        let c = cfg(&[]).unwrap();
        assert!(c.owns_hook("anything"), "unset: every hook");
        let c = cfg(&[("LIFECYCLE_HOOKS", " r-launch, r-terminate ")]).unwrap();
        assert!(c.owns_hook("r-launch") && c.owns_hook("r-terminate"));
        assert!(!c.owns_hook("bootstrap"));
        for bad in ["r-launch,,r-terminate", "r launch", "r-launch;rm"] {
            let e = cfg(&[("LIFECYCLE_HOOKS", bad)]).unwrap_err().to_string();
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
            ("PROXY_GROUP", "proxies"),
            ("DNS_ZONE_ID", "/hostedzone/Z1"),
            ("DNS_RECORD_NAME", "LB.Example.com"),
            ("HEALTH_TIMEOUT_S", "30"),
        ])
        .unwrap();
        assert_eq!(c.ssm.document, "doc");
        assert_eq!(c.pools.get("web-asg").unwrap().len(), 1);
        let dns = c.dns.clone().unwrap();
        assert_eq!(dns.record_name, "lb.example.com.");
        assert_eq!(dns.ttl, 60);
        assert_eq!(c.health_timeout, Duration::from_secs(30));
        assert_eq!(c.drain_timeout, Duration::from_secs(120));
        assert_eq!(c.host_report_timeout, Duration::from_secs(30));
        assert_eq!(c.ledger_ttl, Duration::from_secs(86_400));
        assert_eq!(
            (
                c.proxy_group.as_str(),
                c.proxy_role_id.as_str(),
                c.ledger_table.as_str()
            ),
            ("proxies", "AROAEXAMPLEPROXY1", "r-ledger")
        );
        assert_eq!(c.rebalance, Rebalance::Ignore);
        assert_eq!(c.spot_drain_timeout, Duration::from_secs(90));
    }

    #[test]
    fn managed_groups_are_pools_groups_and_the_allow_list() {
        let c = cfg(&[
            ("POOLS", r#"{"web-asg":[{"name":"web","port":8080}]}"#),
            ("MANAGED_GROUPS", "api-* -> api:9000, batch -> web, web-asg"),
        ])
        .unwrap();
        assert!(
            c.manages("web-asg")
                && c.manages("api-blue")
                && c.manages("api-")
                && c.manages("batch")
        );
        assert!(!c.manages("batch-2") && !c.manages("evil") && !c.manages("xapi-1"));
        assert!(
            !cfg(&[]).unwrap().manages("anything"),
            "unset: only POOLS' groups"
        );
        let e = cfg(&[("MANAGED_GROUPS", "web asg -> web")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MANAGED_GROUPS") && e.contains("glob"), "{e}");
        let e = cfg(&[("MANAGED_GROUPS", "api-*")]).unwrap_err().to_string();
        assert!(e.contains("names no pools"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let e = Config::from_lookup(|_| None).unwrap_err().to_string();
        assert!(e.contains("SSM_DOCUMENT"), "{e}");
        let e = cfg(&[("POOLS", "{")]).unwrap_err().to_string();
        assert!(e.contains("POOLS"), "{e}");
        let e = cfg(&[("DRAIN_TIMEOUT_S", "soon")]).unwrap_err().to_string();
        assert!(e.contains("DRAIN_TIMEOUT_S"), "{e}");
        let e = cfg(&[("DNS_ZONE_ID", "Z")]).unwrap_err().to_string();
        assert!(e.contains("DNS_RECORD_NAME"), "{e}");
        let e = cfg(&[("PROXY_GROUP", "")]).unwrap_err().to_string();
        assert!(e.contains("PROXY_GROUP is required"), "{e}");
        let e = cfg(&[("PROXY_GROUP", "proxies\tb")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PROXY_GROUP") && e.contains("1-255 characters"),
            "{e}"
        );
        let e = cfg(&[("PROXY_ROLE_ID", "arn:aws:iam::1:role/p")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PROXY_ROLE_ID") && e.contains("AROA"), "{e}");
        let e = cfg(&[("LEDGER_TABLE", " ")]).unwrap_err().to_string();
        assert!(e.contains("LEDGER_TABLE is required"), "{e}");
        let e = cfg(&[("HOST_REPORT_TIMEOUT_S", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HOST_REPORT_TIMEOUT_S") && e.contains("1 to 3600"),
            "{e}"
        );
        let e = cfg(&[("REBALANCE", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("REBALANCE"), "{e}");
        let e = cfg(&[("SPOT_DRAIN_TIMEOUT_S", "150")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SPOT_DRAIN_TIMEOUT_S"), "{e}");
    }
}
