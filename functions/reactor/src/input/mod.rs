//! What arrives in the inbox, read and classified. One file per kind of input, each
//! opening with AWS's own sample of it, holding how it is read (pure) and what the
//! reactor does with it (its `apply`):
//!
//! - [`lifecycle`]: `EC2 Instance-launch/terminate Lifecycle Action` (an instance waits
//!   in `Pending:Wait` or `Terminating:Wait`);
//! - [`activity`]: `EC2 Instance Launch/Terminate/Detach Successful/Unsuccessful`;
//! - [`ec2_state`]: `EC2 Instance State-change Notification`;
//! - [`warning`]: `EC2 Spot Instance Interruption Warning`, `EC2 Instance Rebalance
//!   Recommendation`;
//! - [`report`]: a host report, sent by an agent service when members reach their
//!   target on its host;
//! - [`recheck`]: a reminder the reactor set itself, to look at actions again;
//! - [`schedule`]: the schedule's `Scheduled Event` (reconcile).
//!
//! The model is a `detail-type`-tagged enum ([`Event`]) with an untagged catch-all, so
//! anything the reactor does not know still deserialises; [`classify`] turns it into
//! what the reactor acts on ([`Input`]) or a reason to ignore it.

pub mod activity;
pub mod ec2_state;
pub mod health;
pub mod lifecycle;
pub mod recheck;
pub mod report;
pub mod schedule;
pub mod warning;

use infra::GroupName;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The envelope every EventBridge event shares (only the fields the reactor reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<D> {
    /// The event id (for logs).
    #[serde(default)]
    pub id: String,
    /// `aws.autoscaling`, `aws.ec2`, `aws.events`.
    #[serde(default)]
    pub source: String,
    /// When it happened (RFC 3339, UTC).
    #[serde(default)]
    pub time: Option<String>,
    /// The detail, whose shape depends on the detail type.
    pub detail: D,
}

/// Every event the reactor understands, by `detail-type`, and a catch-all.
// Parsed once per record and consumed at once: the size of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "detail-type")]
pub enum Event {
    /// An instance waits in `Pending:Wait`.
    #[serde(rename = "EC2 Instance-launch Lifecycle Action")]
    LaunchLifecycleAction(Envelope<lifecycle::LifecycleActionDetail>),
    /// An instance waits in `Terminating:Wait`.
    #[serde(rename = "EC2 Instance-terminate Lifecycle Action")]
    TerminateLifecycleAction(Envelope<lifecycle::LifecycleActionDetail>),
    /// A launch finished.
    #[serde(rename = "EC2 Instance Launch Successful")]
    LaunchSuccessful(Envelope<activity::ActivityDetail>),
    /// A launch failed.
    #[serde(rename = "EC2 Instance Launch Unsuccessful")]
    LaunchUnsuccessful(Envelope<activity::ActivityDetail>),
    /// A termination finished.
    #[serde(rename = "EC2 Instance Terminate Successful")]
    TerminateSuccessful(Envelope<activity::ActivityDetail>),
    /// A termination failed.
    #[serde(rename = "EC2 Instance Terminate Unsuccessful")]
    TerminateUnsuccessful(Envelope<activity::ActivityDetail>),
    /// An instance was detached from its group.
    #[serde(rename = "EC2 Instance Detach Successful")]
    DetachSuccessful(Envelope<activity::ActivityDetail>),
    /// A detach failed.
    #[serde(rename = "EC2 Instance Detach Unsuccessful")]
    DetachUnsuccessful(Envelope<activity::ActivityDetail>),
    /// EC2 changed an instance's state.
    #[serde(rename = "EC2 Instance State-change Notification")]
    Ec2StateChange(Envelope<ec2_state::Ec2StateDetail>),
    /// EC2 reclaims a Spot instance in two minutes.
    #[serde(rename = "EC2 Spot Instance Interruption Warning")]
    SpotInterruption(Envelope<warning::Ec2WarningDetail>),
    /// EC2 says a Spot instance is at elevated risk of interruption.
    #[serde(rename = "EC2 Instance Rebalance Recommendation")]
    RebalanceRecommendation(Envelope<warning::Ec2WarningDetail>),
    /// The schedule: reconcile everything.
    #[serde(rename = "Scheduled Event")]
    Scheduled(Envelope<Value>),
    /// Anything else, or a known detail type with a malformed body.
    #[serde(untagged)]
    Other(Value),
}

/// What the reactor does with one record of the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A lifecycle hook holds an instance.
    Lifecycle(lifecycle::LifecycleEvent),
    /// An activity (launch, termination, detach) ended.
    Activity(activity::ActivityEvent),
    /// EC2 changed an instance's state.
    Ec2State(ec2_state::StateChange),
    /// EC2 warned that an instance goes away.
    Warning(warning::WarningEvent),
    /// A proxy reported members that reached their target (its sender checked).
    Report(report::HostMessage),
    /// A reminder the reactor set itself: look at these actions again.
    Recheck(Vec<crate::ledger::ActionKey>),
    /// A reminder the reactor set itself: look at these members' health watches again.
    HealthRecheck(Vec<infra::MemberId>),
    /// Reconcile every managed group, decide what is overdue.
    Schedule,
    /// Nothing to do, and why.
    Ignored(String),
}

impl Input {
    /// A short name for logs, metrics and the invocation's answer.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Lifecycle(e) => e.kind(),
            Self::Activity(_) => "activity",
            Self::Ec2State(_) => "ec2-state-change",
            Self::Warning(w) => w.kind.label(),
            Self::Report(_) => "host-report",
            Self::Recheck(_) | Self::HealthRecheck(_) => "recheck",
            Self::Schedule => "reconcile",
            Self::Ignored(_) => "ignored",
        }
    }

    /// When the input's event happened (ms since the epoch), when it says.
    pub fn time_ms(&self) -> Option<u64> {
        match self {
            Self::Lifecycle(e) => e.started_ms,
            Self::Warning(w) => w.time_ms,
            Self::Activity(a) => a.time_ms,
            _ => None,
        }
    }
}

pub(crate) fn ignored(reason: impl Into<String>) -> Input {
    Input::Ignored(reason.into())
}

/// `Some(ignored)` when an event of `detail_type` came from another source than
/// `expected` (only AWS sends these).
pub(crate) fn check_source(source: &str, expected: &str, detail_type: &str) -> Option<Input> {
    (source != expected).then(|| {
        ignored(format!(
            "event {detail_type:?} from source {source:?}, expected {expected:?}"
        ))
    })
}

/// The trimmed text, if any.
pub(crate) fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// An event's group name, if it has a usable one.
pub(crate) fn group_name(s: &str) -> Option<GroupName> {
    GroupName::new(s.trim()).ok()
}

/// A string field AWS may send as `null` (an activity that created no instance).
pub(crate) fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Classifies one EventBridge event (any JSON).
pub fn classify(value: &Value) -> Input {
    let event = match Event::deserialize(value) {
        Ok(e) => e,
        Err(e) => return ignored(format!("not an event: {e}")),
    };
    match event {
        Event::LaunchLifecycleAction(env) => {
            lifecycle::classify(env, crate::lifecycle::Transition::Launch)
        }
        Event::TerminateLifecycleAction(env) => {
            lifecycle::classify(env, crate::lifecycle::Transition::Terminate)
        }
        Event::LaunchSuccessful(env) => {
            activity::classify(env, activity::Activity::LaunchSuccessful)
        }
        Event::LaunchUnsuccessful(env) => {
            activity::classify(env, activity::Activity::LaunchUnsuccessful)
        }
        Event::TerminateSuccessful(env) => {
            activity::classify(env, activity::Activity::TerminateSuccessful)
        }
        Event::TerminateUnsuccessful(env) => {
            activity::classify(env, activity::Activity::TerminateUnsuccessful)
        }
        Event::DetachSuccessful(env) => {
            activity::classify(env, activity::Activity::DetachSuccessful)
        }
        Event::DetachUnsuccessful(env) => {
            activity::classify(env, activity::Activity::DetachUnsuccessful)
        }
        Event::Ec2StateChange(env) => ec2_state::classify(env),
        Event::SpotInterruption(env) => warning::classify(env, warning::Warning::SpotInterruption),
        Event::RebalanceRecommendation(env) => warning::classify(env, warning::Warning::Rebalance),
        Event::Scheduled(env) => schedule::classify(&env),
        Event::Other(v) => ignored(explain_other(&v)),
    }
}

/// Why an event fell into the catch-all: an unknown detail type, or a known one whose
/// body did not match (then the parser's reason).
fn explain_other(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return format!("not an EventBridge event (a JSON {})", json_kind(v));
    };
    let Some(dt) = obj.get("detail-type").and_then(Value::as_str) else {
        return "not an EventBridge event: no \"detail-type\"".into();
    };
    let err = match dt {
        lifecycle::LAUNCH_DETAIL_TYPE | lifecycle::TERMINATE_DETAIL_TYPE => {
            Envelope::<lifecycle::LifecycleActionDetail>::deserialize(v).err()
        }
        d if activity::DETAIL_TYPES.contains(&d) => {
            Envelope::<activity::ActivityDetail>::deserialize(v).err()
        }
        ec2_state::DETAIL_TYPE => Envelope::<ec2_state::Ec2StateDetail>::deserialize(v).err(),
        warning::SPOT_DETAIL_TYPE | warning::REBALANCE_DETAIL_TYPE => {
            Envelope::<warning::Ec2WarningDetail>::deserialize(v).err()
        }
        schedule::DETAIL_TYPE => Envelope::<Value>::deserialize(v).err(),
        other => return format!("unknown detail-type {other:?}"),
    };
    match err {
        Some(e) => format!("malformed {dt:?} event: {e}"),
        None => format!("malformed {dt:?} event"),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (the form EventBridge uses) to ms since the
/// epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let se: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let ms: i64 = match frac {
        Some(f) => {
            let digits: String = f.chars().take(3).collect();
            let n: i64 = digits.parse().ok()?;
            n * 10_i64.pow(3 - u32::try_from(digits.len()).ok()?)
        }
        None => 0,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + h) * 60 + mi) * 60 + se;
    u64::try_from(total * 1000 + ms).ok()
}

/// AWS's own samples (`tests/samples`, with their sources in its README).
#[cfg(test)]
pub(crate) mod samples {
    use serde_json::Value;

    /// The sample `name` (file name without `.json`).
    pub fn sample(name: &str) -> Value {
        // cargo test's own (a build cache shared with another checkout bakes in its).
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = format!("{dir}/tests/samples/{name}.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(v: Value) -> String {
        match classify(&v) {
            Input::Ignored(reason) => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    #[test]
    fn unknown_and_malformed_events_are_ignored_with_the_reason() {
        assert!(reason(json!([1, 2])).contains("a JSON array"));
        assert!(reason(json!("x")).contains("a JSON string"));
        assert!(reason(json!({"hello": 1})).contains("no \"detail-type\""));
        let mut v = samples::sample("terminate-lifecycle-action");
        v["detail-type"] = json!("AWS API Call via CloudTrail");
        assert!(reason(v).contains("unknown detail-type"));
        let mut v = samples::sample("terminate-lifecycle-action");
        v["detail"].as_object_mut().unwrap().remove("EC2InstanceId");
        let r = reason(v);
        assert!(
            r.contains("malformed") && r.contains("EC2InstanceId"),
            "{r}"
        );
        let mut v = samples::sample("terminate-lifecycle-action");
        v["detail"] = json!("nope");
        assert!(reason(v).contains("malformed"));
        // The Run Command status events of the old control path are no longer routed.
        let cmd = json!({"detail-type": "EC2 Command Status-change Notification", "source": "aws.ssm", "detail": {}});
        assert!(reason(cmd).contains("unknown detail-type"));
    }

    #[test]
    fn event_times_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-20T10:00:00Z"),
            Some(1_795_168_800_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2026-13-20T10:00:00Z"), None);
    }

    #[test]
    fn aws_lambda_events_reads_the_samples_too() {
        // The crate's envelope reads the lifecycle sample; its AutoScalingEvent detail is
        // an untyped map, which is why the reactor has its own detail structs.
        use aws_lambda_events::event::autoscaling::AutoScalingEvent;
        use aws_lambda_events::event::eventbridge::EventBridgeEvent;
        let sample = samples::sample("terminate-lifecycle-action");
        let e: EventBridgeEvent<Value> = serde_json::from_value(sample.clone()).unwrap();
        assert_eq!(e.detail_type, "EC2 Instance-terminate Lifecycle Action");
        let a: AutoScalingEvent = serde_json::from_value(sample).unwrap();
        assert_eq!(
            a.detail.get("EC2InstanceId"),
            Some(&json!("i-1234567890abcdef0"))
        );
    }
}
