//! What arrives: EventBridge events, classified. Pure.
//!
//! The model is a `detail-type`-tagged enum ([`Event`]) with an untagged catch-all, so
//! anything the reactor does not know still deserialises; [`classify`] turns it into
//! what the reactor acts on ([`Classified`]) or a reason to ignore it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
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

/// `EC2 Instance-launch Lifecycle Action` / `EC2 Instance-terminate Lifecycle Action`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleActionDetail {
    /// The token completing this very action.
    #[serde(default)]
    pub lifecycle_action_token: Option<String>,
    /// The group.
    pub auto_scaling_group_name: String,
    /// The hook holding the instance.
    pub lifecycle_hook_name: String,
    /// The instance.
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    /// `autoscaling:EC2_INSTANCE_LAUNCHING` or `autoscaling:EC2_INSTANCE_TERMINATING`.
    pub lifecycle_transition: String,
    /// Free text set on the hook.
    #[serde(default)]
    pub notification_metadata: Option<String>,
    /// Warm pools only: `EC2`, `AutoScalingGroup`, `WarmPool`.
    #[serde(default)]
    pub origin: Option<String>,
    /// Warm pools only.
    #[serde(default)]
    pub destination: Option<String>,
}

/// `EC2 Instance Launch/Terminate Successful/Unsuccessful`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivityDetail {
    /// The instance (empty when a launch failed before an instance existed).
    #[serde(rename = "EC2InstanceId", default)]
    pub ec2_instance_id: String,
    /// The group.
    pub auto_scaling_group_name: String,
    /// `InProgress`, `Successful`, `Failed`, ...
    #[serde(default)]
    pub status_code: Option<String>,
    /// Why the activity happened.
    #[serde(default)]
    pub cause: Option<String>,
}

/// `EC2 Command Status-change Notification` (source `aws.ssm`): a Run Command command
/// changed status. Its parameters carry the completion context.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandStatusDetail {
    /// The command.
    #[serde(rename = "command-id")]
    pub command_id: String,
    /// The document it runs.
    #[serde(rename = "document-name", default)]
    pub document_name: String,
    /// `Pending`, `InProgress`, `Success`, `Failed`, `TimedOut`, `Cancelled`...
    #[serde(default)]
    pub status: String,
    /// Its parameters, each a list of values.
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<String>>,
}

/// `EC2 Instance State-change Notification` (source `aws.ec2`).
#[derive(Debug, Clone, Deserialize)]
pub struct Ec2StateDetail {
    /// The instance.
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
}

/// `EC2 Spot Instance Interruption Warning` and `EC2 Instance Rebalance Recommendation`
/// (source `aws.ec2`).
#[derive(Debug, Clone, Deserialize)]
pub struct Ec2WarningDetail {
    /// The instance.
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// What EC2 will do (`terminate`, `stop`, `hibernate`); interruption warnings only.
    #[serde(rename = "instance-action", default)]
    pub instance_action: Option<String>,
}

/// Every event the reactor understands, by `detail-type`, and a catch-all.
// Parsed once per invocation and consumed at once: the size of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "detail-type")]
pub enum Event {
    /// An instance waits in `Pending:Wait`.
    #[serde(rename = "EC2 Instance-launch Lifecycle Action")]
    LaunchLifecycleAction(Envelope<LifecycleActionDetail>),
    /// An instance waits in `Terminating:Wait`.
    #[serde(rename = "EC2 Instance-terminate Lifecycle Action")]
    TerminateLifecycleAction(Envelope<LifecycleActionDetail>),
    /// A launch finished.
    #[serde(rename = "EC2 Instance Launch Successful")]
    LaunchSuccessful(Envelope<ActivityDetail>),
    /// A launch failed.
    #[serde(rename = "EC2 Instance Launch Unsuccessful")]
    LaunchUnsuccessful(Envelope<ActivityDetail>),
    /// A termination finished.
    #[serde(rename = "EC2 Instance Terminate Successful")]
    TerminateSuccessful(Envelope<ActivityDetail>),
    /// A termination failed.
    #[serde(rename = "EC2 Instance Terminate Unsuccessful")]
    TerminateUnsuccessful(Envelope<ActivityDetail>),
    /// EC2 changed an instance's state.
    #[serde(rename = "EC2 Instance State-change Notification")]
    Ec2StateChange(Envelope<Ec2StateDetail>),
    /// EC2 reclaims a Spot instance in two minutes.
    #[serde(rename = "EC2 Spot Instance Interruption Warning")]
    SpotInterruption(Envelope<Ec2WarningDetail>),
    /// EC2 says a Spot instance is at elevated risk of interruption.
    #[serde(rename = "EC2 Instance Rebalance Recommendation")]
    RebalanceRecommendation(Envelope<Ec2WarningDetail>),
    /// A Run Command command changed status.
    #[serde(rename = "EC2 Command Status-change Notification")]
    CommandStatus(Envelope<CommandStatusDetail>),
    /// The schedule: reconcile everything.
    #[serde(rename = "Scheduled Event")]
    Scheduled(Envelope<Value>),
    /// Anything else, or a known detail type with a malformed body.
    #[serde(untagged)]
    Other(Value),
}

/// Which lifecycle hook transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// `autoscaling:EC2_INSTANCE_LAUNCHING`.
    Launch,
    /// `autoscaling:EC2_INSTANCE_TERMINATING`.
    Terminate,
}

impl Transition {
    /// The name Auto Scaling uses.
    pub fn as_aws(self) -> &'static str {
        match self {
            Self::Launch => "autoscaling:EC2_INSTANCE_LAUNCHING",
            Self::Terminate => "autoscaling:EC2_INSTANCE_TERMINATING",
        }
    }

    /// Parses the Auto Scaling name.
    pub fn from_aws(s: &str) -> Option<Self> {
        match s {
            "autoscaling:EC2_INSTANCE_LAUNCHING" => Some(Self::Launch),
            "autoscaling:EC2_INSTANCE_TERMINATING" => Some(Self::Terminate),
            _ => None,
        }
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Launch => "launch",
            Self::Terminate => "terminate",
        })
    }
}

/// What the reactor does with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// A lifecycle hook holds an instance.
    LifecycleAction {
        /// Launch or terminate.
        transition: Transition,
        /// The group.
        group: String,
        /// The instance.
        instance: String,
        /// The hook.
        hook: String,
        /// The token, when the event carried one.
        token: Option<String>,
        /// When the action started (ms since the epoch), from the event time.
        started_ms: Option<u64>,
        /// Where a warm pool is involved, which way the instance moves.
        warm: WarmMove,
    },
    /// EC2 warned that an instance goes away: drain it now.
    Warning {
        /// A Spot interruption or a rebalance recommendation.
        kind: Warning,
        /// The instance.
        instance: String,
        /// When EC2 sent it (ms since the epoch), from the event time.
        time_ms: Option<u64>,
    },
    /// An activity (launch or termination) finished: re-read the group.
    Activity {
        /// The group.
        group: String,
        /// The instance, when there is one.
        instance: Option<String>,
        /// The transition the activity completed (`Launch/Terminate Successful`); `None`
        /// when it failed. A transition completed through a lifecycle hook of ours went
        /// through our own change first.
        succeeded: Option<Transition>,
    },
    /// A Run Command command of some document ended: its hosts have reported.
    CommandEnded {
        /// The command.
        command_id: String,
        /// Its document.
        document: String,
        /// Its final status.
        status: String,
        /// Its `Context` parameter (the completion context, base64), if any.
        context: Option<String>,
    },
    /// EC2 changed an instance's state: find its group, re-read it.
    Ec2State {
        /// The instance.
        instance: String,
        /// Its new state.
        state: String,
    },
    /// Reconcile every managed group, complete what is pending.
    Reconcile,
    /// Nothing to do, and why.
    Ignored {
        /// The reason, for the log.
        reason: String,
    },
}

/// A warning from EC2 about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// `EC2 Spot Instance Interruption Warning`: reclaimed two minutes later.
    SpotInterruption,
    /// `EC2 Instance Rebalance Recommendation`: at elevated risk of interruption.
    Rebalance,
}

/// A lifecycle action's move with respect to a warm pool (its `Origin` and
/// `Destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmMove {
    /// No warm pool involved (or the event said nothing).
    None,
    /// Launched into the warm pool (`Destination: WarmPool`): it never joins a pool; its
    /// action is continued so it can be stopped there.
    IntoPool,
    /// Leaves the warm pool for good (terminate, `Origin: WarmPool`): it never was in a
    /// pool since it entered the warm pool.
    OutOfPool,
    /// Goes back to the warm pool on scale-in (terminate, `Destination: WarmPool`):
    /// drained and released like a termination, although the group no longer lists it.
    BackToPool,
}

impl Classified {
    /// A short name for logs and the invocation's answer.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LifecycleAction {
                transition: Transition::Launch,
                ..
            } => "launch-lifecycle-action",
            Self::LifecycleAction {
                transition: Transition::Terminate,
                ..
            } => "terminate-lifecycle-action",
            Self::Warning {
                kind: Warning::SpotInterruption,
                ..
            } => "spot-interruption-warning",
            Self::Warning {
                kind: Warning::Rebalance,
                ..
            } => "rebalance-recommendation",
            Self::Activity { .. } => "activity",
            Self::CommandEnded { .. } => "command-ended",
            Self::Ec2State { .. } => "ec2-state-change",
            Self::Reconcile => "reconcile",
            Self::Ignored { .. } => "ignored",
        }
    }
}

const LAUNCH_ACTION: &str = "EC2 Instance-launch Lifecycle Action";
const TERMINATE_ACTION: &str = "EC2 Instance-terminate Lifecycle Action";

fn ignored(reason: impl Into<String>) -> Classified {
    Classified::Ignored {
        reason: reason.into(),
    }
}

fn check_source(source: &str, expected: &str, detail_type: &str) -> Option<Classified> {
    (source != expected).then(|| {
        ignored(format!(
            "event {detail_type:?} from source {source:?}, expected {expected:?}"
        ))
    })
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Classifies one event (any JSON).
pub fn classify(value: &Value) -> Classified {
    let event = match Event::deserialize(value) {
        Ok(e) => e,
        Err(e) => return ignored(format!("not an event: {e}")),
    };
    match event {
        Event::LaunchLifecycleAction(env) => lifecycle(env, Transition::Launch, LAUNCH_ACTION),
        Event::TerminateLifecycleAction(env) => {
            lifecycle(env, Transition::Terminate, TERMINATE_ACTION)
        }
        Event::LaunchSuccessful(env) => activity(env, Some(Transition::Launch)),
        Event::TerminateSuccessful(env) => activity(env, Some(Transition::Terminate)),
        Event::LaunchUnsuccessful(env) | Event::TerminateUnsuccessful(env) => activity(env, None),
        Event::CommandStatus(env) => command_status(env),
        Event::SpotInterruption(env) => warning(
            env,
            Warning::SpotInterruption,
            "EC2 Spot Instance Interruption Warning",
        ),
        Event::RebalanceRecommendation(env) => warning(
            env,
            Warning::Rebalance,
            "EC2 Instance Rebalance Recommendation",
        ),
        Event::Ec2StateChange(env) => {
            if let Some(i) = check_source(
                &env.source,
                "aws.ec2",
                "EC2 Instance State-change Notification",
            ) {
                return i;
            }
            match non_empty(&env.detail.instance_id) {
                Some(instance) => Classified::Ec2State {
                    instance,
                    state: env.detail.state,
                },
                None => ignored("EC2 state-change event without an instance id"),
            }
        }
        Event::Scheduled(env) => {
            if let Some(i) = check_source(&env.source, "aws.events", "Scheduled Event") {
                return i;
            }
            Classified::Reconcile
        }
        Event::Other(v) => ignored(explain_other(&v)),
    }
}

fn lifecycle(
    env: Envelope<LifecycleActionDetail>,
    expected: Transition,
    detail_type: &str,
) -> Classified {
    if let Some(i) = check_source(&env.source, "aws.autoscaling", detail_type) {
        return i;
    }
    let d = env.detail;
    let transition = match Transition::from_aws(&d.lifecycle_transition) {
        Some(t) if t == expected => t,
        _ => {
            return ignored(format!(
                "{detail_type} with LifecycleTransition {:?}, expected {}",
                d.lifecycle_transition,
                expected.as_aws()
            ))
        }
    };
    let (Some(group), Some(instance), Some(hook)) = (
        non_empty(&d.auto_scaling_group_name),
        non_empty(&d.ec2_instance_id),
        non_empty(&d.lifecycle_hook_name),
    ) else {
        return ignored(format!(
            "{detail_type} without a group, instance or hook name"
        ));
    };
    let to_pool = d.destination.as_deref() == Some("WarmPool");
    let from_pool = d.origin.as_deref() == Some("WarmPool");
    let warm = match transition {
        Transition::Launch if to_pool => WarmMove::IntoPool,
        Transition::Terminate if to_pool => WarmMove::BackToPool,
        Transition::Terminate if from_pool => WarmMove::OutOfPool,
        _ => WarmMove::None,
    };
    Classified::LifecycleAction {
        transition,
        group,
        instance,
        hook,
        token: d.lifecycle_action_token.and_then(|t| non_empty(&t)),
        started_ms: env.time.as_deref().and_then(parse_rfc3339_ms),
        warm,
    }
}

fn warning(env: Envelope<Ec2WarningDetail>, kind: Warning, detail_type: &str) -> Classified {
    if let Some(i) = check_source(&env.source, "aws.ec2", detail_type) {
        return i;
    }
    match non_empty(&env.detail.instance_id) {
        Some(instance) => Classified::Warning {
            kind,
            instance,
            time_ms: env.time.as_deref().and_then(parse_rfc3339_ms),
        },
        None => ignored(format!("{detail_type} without an instance id")),
    }
}

fn activity(env: Envelope<ActivityDetail>, succeeded: Option<Transition>) -> Classified {
    if let Some(i) = check_source(&env.source, "aws.autoscaling", "Auto Scaling activity") {
        return i;
    }
    let Some(group) = non_empty(&env.detail.auto_scaling_group_name) else {
        return ignored("Auto Scaling activity event without a group name");
    };
    Classified::Activity {
        group,
        instance: non_empty(&env.detail.ec2_instance_id),
        succeeded,
    }
}

/// The statuses with which a command has ended.
const COMMAND_ENDED: [&str; 4] = ["Success", "Failed", "TimedOut", "Cancelled"];

fn command_status(env: Envelope<CommandStatusDetail>) -> Classified {
    const DT: &str = "EC2 Command Status-change Notification";
    if let Some(i) = check_source(&env.source, "aws.ssm", DT) {
        return i;
    }
    let d = env.detail;
    let Some(command_id) = non_empty(&d.command_id) else {
        return ignored(format!("{DT} without a command id"));
    };
    if !COMMAND_ENDED.contains(&d.status.as_str()) {
        return ignored(format!(
            "command {command_id} is {:?}, not ended: nothing to decide yet",
            d.status
        ));
    }
    Classified::CommandEnded {
        command_id,
        document: d.document_name,
        status: d.status,
        context: d
            .parameters
            .get("Context")
            .and_then(|v| v.first())
            .and_then(|v| non_empty(v)),
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
        LAUNCH_ACTION | TERMINATE_ACTION => Envelope::<LifecycleActionDetail>::deserialize(v).err(),
        "EC2 Instance Launch Successful"
        | "EC2 Instance Launch Unsuccessful"
        | "EC2 Instance Terminate Successful"
        | "EC2 Instance Terminate Unsuccessful" => Envelope::<ActivityDetail>::deserialize(v).err(),
        "EC2 Instance State-change Notification" => {
            Envelope::<Ec2StateDetail>::deserialize(v).err()
        }
        "EC2 Spot Instance Interruption Warning" | "EC2 Instance Rebalance Recommendation" => {
            Envelope::<Ec2WarningDetail>::deserialize(v).err()
        }
        "EC2 Command Status-change Notification" => {
            Envelope::<CommandStatusDetail>::deserialize(v).err()
        }
        "Scheduled Event" => Envelope::<Value>::deserialize(v).err(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The terminate lifecycle action sample of AWS.md.
    pub(crate) fn terminate_sample() -> Value {
        json!({"version":"0","id":"12345678-1234-1234-1234-123456789012",
         "detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling",
         "account":"123456789012","time":"2026-11-20T10:00:00Z","region":"us-west-2",
         "resources":["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:...:autoScalingGroupName/my-asg"],
         "detail":{"LifecycleActionToken":"87654321-4321-4321-4321-210987654321",
          "AutoScalingGroupName":"my-asg","LifecycleHookName":"my-lifecycle-hook",
          "EC2InstanceId":"i-1234567890abcdef0",
          "LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING",
          "NotificationMetadata":"additional-info"}})
    }

    fn launch_sample() -> Value {
        let mut v = terminate_sample();
        v["detail-type"] = json!("EC2 Instance-launch Lifecycle Action");
        v["detail"]["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_LAUNCHING");
        v
    }

    fn launch_successful_sample() -> Value {
        json!({"version":"0","id":"3e3c153a-8339-4e30-8c35-687ebef853fe",
          "detail-type":"EC2 Instance Launch Successful","source":"aws.autoscaling",
          "account":"123456789012","time":"2026-11-20T10:01:00Z","region":"us-west-2",
          "resources":["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:...:autoScalingGroupName/my-asg",
                       "arn:aws:ec2:us-west-2:123456789012:instance/i-1234567890abcdef0"],
          "detail":{"StatusCode":"InProgress","AutoScalingGroupName":"my-asg",
            "ActivityId":"9cabb81f-42de-417d-8aa7-ce16bf026590",
            "Details":{"Availability Zone":"us-west-2b","Subnet ID":"subnet-12345678"},
            "RequestId":"9cabb81f-42de-417d-8aa7-ce16bf026590","EndTime":"2026-11-20T10:01:00Z",
            "EC2InstanceId":"i-1234567890abcdef0","StartTime":"2026-11-20T10:00:00Z",
            "Cause":"At 2026-11-20T09:59:00Z a user request update of AutoScalingGroup constraints..."}})
    }

    #[test]
    fn the_aws_samples_are_classified() {
        let c = classify(&terminate_sample());
        assert_eq!(
            c,
            Classified::LifecycleAction {
                transition: Transition::Terminate,
                group: "my-asg".into(),
                instance: "i-1234567890abcdef0".into(),
                hook: "my-lifecycle-hook".into(),
                token: Some("87654321-4321-4321-4321-210987654321".into()),
                started_ms: parse_rfc3339_ms("2026-11-20T10:00:00Z"),
                warm: WarmMove::None,
            }
        );
        assert!(matches!(
            classify(&launch_sample()),
            Classified::LifecycleAction {
                transition: Transition::Launch,
                ..
            }
        ));
        assert_eq!(
            classify(&launch_successful_sample()),
            Classified::Activity {
                group: "my-asg".into(),
                instance: Some("i-1234567890abcdef0".into()),
                succeeded: Some(Transition::Launch),
            }
        );
        let mut v = launch_successful_sample();
        v["detail-type"] = json!("EC2 Instance Terminate Successful");
        assert!(matches!(
            classify(&v),
            Classified::Activity {
                succeeded: Some(Transition::Terminate),
                ..
            }
        ));
        v["detail-type"] = json!("EC2 Instance Terminate Unsuccessful");
        assert!(matches!(
            classify(&v),
            Classified::Activity {
                succeeded: None,
                ..
            }
        ));
        let ec2 = json!({"version":"0","id":"x","detail-type":"EC2 Instance State-change Notification",
            "source":"aws.ec2","time":"2026-11-20T10:00:00Z","detail":{"instance-id":"i-0abc","state":"terminated"}});
        assert_eq!(
            classify(&ec2),
            Classified::Ec2State {
                instance: "i-0abc".into(),
                state: "terminated".into()
            }
        );
        let sched = json!({"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events",
            "time":"2026-11-20T10:00:00Z","resources":["arn:aws:events:us-west-2:123456789012:rule/r"],"detail":{}});
        assert_eq!(classify(&sched), Classified::Reconcile);
    }

    #[test]
    fn a_command_status_event_carries_its_context() {
        let ev = serde_json::json!({"version":"0","id":"51c0891d-0e34-45b1-83d6-95db273d1602","detail-type":"EC2 Command Status-change Notification","source":"aws.ssm","account":"123456789012","time":"2016-07-10T21:51:32Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],"detail":{"command-id":"e8d3c0e4-71f7-4491-898f-c9b35bee5f3b","document-name":"r-agent","expire-after":"2016-07-14T22:01:30.049Z","parameters":{"Action":["apply"],"Change":["e30="],"Context":["eyJ2IjoxfQ=="]},"requested-date-time":"2016-07-10T21:51:30.049Z","status":"Success"}});
        assert_eq!(
            classify(&ev),
            Classified::CommandEnded {
                command_id: "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b".into(),
                document: "r-agent".into(),
                status: "Success".into(),
                context: Some("eyJ2IjoxfQ==".into()),
            }
        );
        let mut running = ev.clone();
        running["detail"]["status"] = "InProgress".into();
        assert!(
            matches!(classify(&running), Classified::Ignored { reason } if reason.contains("not ended"))
        );
        let mut other = ev.clone();
        other["source"] = "aws.ec2".into();
        assert!(matches!(classify(&other), Classified::Ignored { .. }));
        let mut bare = ev;
        bare["detail"]["parameters"] = serde_json::json!({});
        assert!(matches!(
            classify(&bare),
            Classified::CommandEnded { context: None, .. }
        ));
    }

    #[test]
    fn warm_pool_fields_are_accepted() {
        let mut v = launch_sample();
        v["detail"]["Origin"] = json!("EC2");
        v["detail"]["Destination"] = json!("AutoScalingGroup");
        assert!(matches!(classify(&v), Classified::LifecycleAction { .. }));
        assert!(matches!(
            classify(&v),
            Classified::LifecycleAction {
                warm: WarmMove::None,
                ..
            }
        ));
        v["detail"]["Destination"] = json!("WarmPool");
        assert!(matches!(
            classify(&v),
            Classified::LifecycleAction {
                warm: WarmMove::IntoPool,
                ..
            }
        ));
        let mut t = terminate_sample();
        t["detail"]["Origin"] = json!("AutoScalingGroup");
        t["detail"]["Destination"] = json!("WarmPool");
        assert!(matches!(
            classify(&t),
            Classified::LifecycleAction {
                warm: WarmMove::BackToPool,
                ..
            }
        ));
        t["detail"]["Origin"] = json!("WarmPool");
        t["detail"]["Destination"] = json!("EC2");
        assert!(matches!(
            classify(&t),
            Classified::LifecycleAction {
                warm: WarmMove::OutOfPool,
                ..
            }
        ));
        // Into the group from the pool: a launch like any other.
        v["detail"]["Origin"] = json!("WarmPool");
        v["detail"]["Destination"] = json!("AutoScalingGroup");
        assert!(matches!(
            classify(&v),
            Classified::LifecycleAction {
                warm: WarmMove::None,
                ..
            }
        ));
    }

    /// The samples kept with the Terraform module (its EventBridge patterns are tested
    /// against the same files).
    fn module_sample(name: &str) -> Value {
        let text = match name {
            "spot" => include_str!(
                "../../../terraform/modules/reactor/tests/events/spot-interruption-warning.json"
            ),
            _ => include_str!(
                "../../../terraform/modules/reactor/tests/events/rebalance-recommendation.json"
            ),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn spot_warnings_are_classified_from_the_module_samples() {
        let t = parse_rfc3339_ms("2026-11-20T10:00:00Z");
        assert_eq!(
            classify(&module_sample("spot")),
            Classified::Warning {
                kind: Warning::SpotInterruption,
                instance: "i-1234567890abcdef0".into(),
                time_ms: t,
            }
        );
        assert_eq!(
            classify(&module_sample("rebalance")),
            Classified::Warning {
                kind: Warning::Rebalance,
                instance: "i-1234567890abcdef0".into(),
                time_ms: t,
            }
        );
        let mut v = module_sample("spot");
        v["source"] = json!("aws.autoscaling");
        assert!(reason(v).contains("expected \"aws.ec2\""));
        let mut v = module_sample("spot");
        v["detail"]["instance-id"] = json!(" ");
        assert!(reason(v).contains("without an instance id"));
        let mut v = module_sample("rebalance");
        v["detail"] = json!({"instance": 1});
        assert!(reason(v).contains("EC2 Instance Rebalance Recommendation"));
    }

    fn reason(v: Value) -> String {
        match classify(&v) {
            Classified::Ignored { reason } => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    #[test]
    fn unknown_and_malformed_events_are_ignored_with_the_reason() {
        assert!(reason(json!([1, 2])).contains("a JSON array"));
        assert!(reason(json!("x")).contains("a JSON string"));
        assert!(reason(json!({"hello": 1})).contains("no \"detail-type\""));
        let mut v = terminate_sample();
        v["detail-type"] = json!("AWS API Call via CloudTrail");
        assert!(reason(v).contains("unknown detail-type"));
        let mut v = terminate_sample();
        v["detail"].as_object_mut().unwrap().remove("EC2InstanceId");
        let r = reason(v);
        assert!(
            r.contains("malformed") && r.contains("EC2InstanceId"),
            "{r}"
        );
        let mut v = terminate_sample();
        v["detail"] = json!("nope");
        assert!(reason(v).contains("malformed"));
        let mut v = terminate_sample();
        v["detail"]["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_LAUNCHING");
        assert!(reason(v).contains("expected autoscaling:EC2_INSTANCE_TERMINATING"));
        let mut v = terminate_sample();
        v["source"] = json!("my.app");
        assert!(reason(v).contains("source \"my.app\""));
        let mut v = terminate_sample();
        v["detail"]["EC2InstanceId"] = json!("");
        assert!(reason(v).contains("without a group, instance or hook"));
    }

    #[test]
    fn aws_lambda_events_reads_the_samples_too() {
        // The crate's envelope reads the lifecycle sample; its AutoScalingEvent detail is
        // an untyped map, which is why the reactor has its own detail structs.
        use aws_lambda_events::event::autoscaling::AutoScalingEvent;
        use aws_lambda_events::event::eventbridge::EventBridgeEvent;
        let e: EventBridgeEvent<Value> = serde_json::from_value(terminate_sample()).unwrap();
        assert_eq!(e.detail_type, "EC2 Instance-terminate Lifecycle Action");
        let a: AutoScalingEvent = serde_json::from_value(terminate_sample()).unwrap();
        assert_eq!(
            a.detail.get("EC2InstanceId"),
            Some(&json!("i-1234567890abcdef0"))
        );
        // Its detail stays untyped (a map of JSON values): the typed structs above give
        // the fields the reactor needs, and a missing one is a clear error.
        if let Ok(a) = serde_json::from_value::<AutoScalingEvent>(launch_successful_sample()) {
            assert!(a.detail.contains_key("AutoScalingGroupName"));
        }
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
}
