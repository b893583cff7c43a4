//! `EC2 Instance-launch Lifecycle Action` / `EC2 Instance-terminate Lifecycle Action`: a
//! lifecycle hook holds an instance in `Pending:Wait` or `Terminating:Wait`. AWS's
//! sample (Amazon EC2 Auto Scaling event reference; `tests/samples`):
//!
//! ```json
//! { "version": "0", "id": "12345678-1234-1234-1234-123456789012",
//!   "detail-type": "EC2 Instance-launch Lifecycle Action", "source": "aws.autoscaling",
//!   "account": "123456789012", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-west-2",
//!   "resources": [ "auto-scaling-group-arn" ],
//!   "detail": { "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
//!     "AutoScalingGroupName": "my-asg", "LifecycleHookName": "my-lifecycle-hook",
//!     "EC2InstanceId": "i-1234567890abcdef0",
//!     "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
//!     "NotificationMetadata": "additional-info",
//!     "Origin": "EC2", "Destination": "AutoScalingGroup" } }
//! ```
//!
//! The events of one batch are one change: their groups and every other group `POOLS`
//! names are read at once (every member not simply in service rides along, so a lost
//! event is repaired too, and a burst over several groups is sent by the first batch
//! that sees it), the actions are opened in the ledger and the change goes to every
//! proxy. A member an earlier change already carries is left out (its hosts have it),
//! unless its own event comes back from the inbox (that change may have failed). A move into
//! or out of the warm pool never touches a pool: it is continued at once. The truth
//! decides, not the event: a late launch event of an instance already terminating
//! removes it.

use std::collections::BTreeMap;

use infra::aws::{Discovery, GroupState, Listed, PENDING_WAIT, TERMINATING_WAIT};
use infra::GroupName;
use infra::MemberId;
use serde::Deserialize;
use tracing::Instrument;

use super::{check_source, group_name, ignored, non_empty, parse_rfc3339_ms, Envelope, Input};
use crate::handler::{Batch, Boundaries, Reactor, ReactorError};
use crate::ledger::{self, ActionKey, Item, Ledger, Opening, Verdict};
use crate::lifecycle::Transition;
use crate::outgoing::Outgoing;
use crate::plan::{
    event_selection, hook_transition, pending_actions, plan_for_event, EventAction, Scope,
};
use crate::summary::{Summary, MIXED};

/// The launch detail type.
pub const LAUNCH_DETAIL_TYPE: &str = "EC2 Instance-launch Lifecycle Action";
/// The terminate detail type.
pub const TERMINATE_DETAIL_TYPE: &str = "EC2 Instance-terminate Lifecycle Action";

/// The detail of a lifecycle action event.
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
    /// Where the instance comes from: `EC2`, `AutoScalingGroup`, `WarmPool`.
    #[serde(default)]
    pub origin: Option<String>,
    /// Where it goes.
    #[serde(default)]
    pub destination: Option<String>,
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

/// A lifecycle action event, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Launch or terminate.
    pub transition: Transition,
    /// The group.
    pub group: GroupName,
    /// The instance.
    pub instance: String,
    /// The hook.
    pub hook: String,
    /// The token, when the event carried one.
    pub token: Option<String>,
    /// When the action started (ms since the epoch), from the event's time.
    pub started_ms: Option<u64>,
    /// Where a warm pool is involved, which way the instance moves.
    pub warm: WarmMove,
    /// The inbox delivered it before (SQS `ApproximateReceiveCount` > 1: the batch that
    /// had it failed). Its member is sent again even when an earlier change carries it,
    /// since that change may never have reached the hosts.
    pub redelivered: bool,
}

impl LifecycleEvent {
    /// `launch-lifecycle-action` or `terminate-lifecycle-action`.
    pub fn kind(&self) -> &'static str {
        self.transition.event_kind()
    }

    /// Its action's ledger key (`None` for an instance id that is not one).
    fn key(&self) -> Option<ActionKey> {
        Some(ActionKey {
            instance: MemberId::new(self.instance.as_str()).ok()?,
            transition: self.transition,
        })
    }

    fn action(&self) -> EventAction {
        EventAction {
            transition: self.transition,
            instance: self.instance.clone(),
            hook: self.hook.clone(),
            token: self.token.clone(),
            started_ms: self.started_ms,
            to_warm_pool: self.warm == WarmMove::BackToPool,
        }
    }
}

/// Reads a lifecycle action event of `expected` transition.
pub fn classify(env: Envelope<LifecycleActionDetail>, expected: Transition) -> Input {
    let detail_type = match expected {
        Transition::Launch => LAUNCH_DETAIL_TYPE,
        Transition::Terminate => TERMINATE_DETAIL_TYPE,
    };
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
        group_name(&d.auto_scaling_group_name),
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
    Input::Lifecycle(LifecycleEvent {
        transition,
        group,
        instance,
        hook,
        token: d.lifecycle_action_token.and_then(|t| non_empty(&t)),
        started_ms: env.time.as_deref().and_then(parse_rfc3339_ms),
        warm,
        redelivered: false,
    })
}

/// A batch's lifecycle events by group, with the records each came from.
pub(crate) type LifecycleWork = BTreeMap<GroupName, (Vec<String>, Vec<LifecycleEvent>)>;

/// Records that failed, with why (they go back to the queue).
pub(crate) type Failed = Vec<(Vec<String>, ReactorError)>;

/// One group's events that go into the batch's change.
struct Unit {
    group: GroupName,
    ids: Vec<String>,
    actions: Vec<LifecycleEvent>,
}

impl<B: Boundaries> Reactor<B> {
    /// The lifecycle events of one batch. The proxy group's are handled apart; every
    /// other group is read at once and all of them make one change (one generation,
    /// one ledger write, one command per 50 proxies), so a burst spread over groups
    /// costs what one group's does. Returns the records that failed, with why.
    pub(crate) async fn lifecycle_events(
        &self,
        batch: &Batch,
        work: LifecycleWork,
        summary: &mut Summary,
    ) -> Failed {
        let mut failed = Vec::new();
        let mut units = Vec::new();
        for (group, (ids, events)) in work {
            summary.groups.push(group.clone());
            match self.group_actions(&group, events, summary).await {
                Ok(actions) if actions.is_empty() => {}
                Ok(actions) => units.push(Unit {
                    group,
                    ids,
                    actions,
                }),
                Err(e) => failed.push((ids, e)),
            }
        }
        let (mut units, known) = self.without_in_flight(units, summary).await;
        if units.is_empty() {
            return failed;
        }
        for group in self.config.pools.groups() {
            if *group != self.config.proxy_group && !units.iter().any(|u| &u.group == group) {
                units.push(Unit {
                    group: group.clone(),
                    ids: Vec::new(),
                    actions: Vec::new(),
                });
            }
        }
        let names: Vec<&str> = units.iter().map(|u| u.group.as_str()).collect();
        let span = tracing::info_span!(
            "lifecycle",
            groups = %names.join(","),
            generation = tracing::field::Empty
        );
        let (out, mut unplanned) = self
            .lifecycle_change(batch, &units, known, summary)
            .instrument(span.clone())
            .await;
        failed.append(&mut unplanned);
        if let Some((out, ids)) = out {
            if let Err(e) = self.send(out, summary).instrument(span).await {
                failed.push((ids, e));
            }
        }
        failed
    }

    /// `units` without the events whose action an earlier change opened, and so
    /// carried (the ledger has it open; the event was not delivered again and names no
    /// other token): a burst's later events find their members sent by the first batch
    /// that saw them, and are done without reading a group or writing the ledger. A
    /// ledger that cannot be read leaves every event in (the change leaves out what is
    /// in flight anyway). Also what was read of the events left (opening their actions
    /// does not read them again).
    async fn without_in_flight(
        &self,
        units: Vec<Unit>,
        summary: &mut Summary,
    ) -> (Vec<Unit>, ledger::Known) {
        let keys: Vec<ActionKey> = units
            .iter()
            .flat_map(|u| &u.actions)
            .filter(|e| !e.redelivered)
            .filter_map(LifecycleEvent::key)
            .collect();
        if keys.is_empty() {
            return (units, ledger::Known::new());
        }
        let known = match self.ledger.get(&keys).await {
            Ok(items) => ledger::known_from(keys, items),
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell which events are in flight; each is planned");
                return (units, ledger::Known::new());
            }
        };
        let open: BTreeMap<&ActionKey, &Item> = known
            .iter()
            .filter_map(|(k, i)| Some((k, i.as_ref().filter(|i| i.is_open())?)))
            .collect();
        let carried = |e: &LifecycleEvent| {
            !e.redelivered
                && e.key()
                    .and_then(|k| open.get(&k).copied())
                    .is_some_and(|item| {
                        matches!((&item.token, &e.token), (Some(a), Some(b)) if a == b)
                            || item.token.is_none()
                            || e.token.is_none()
                    })
        };
        let mut left = 0;
        let units: Vec<Unit> = units
            .into_iter()
            .filter_map(|mut u| {
                let before = u.actions.len();
                u.actions.retain(|e| !carried(e));
                left += before - u.actions.len();
                (!u.actions.is_empty()).then_some(u)
            })
            .collect();
        if left > 0 {
            summary.note(format!(
                "{left} event(s) of members a change already carries (their actions are open): nothing to send for them"
            ));
        }
        (units, known)
    }

    /// The events of `group` that go into the batch's change: the proxy group's and
    /// moves into or out of a warm pool are handled here, other hooks' left alone.
    async fn group_actions(
        &self,
        group: &GroupName,
        events: Vec<LifecycleEvent>,
        summary: &mut Summary,
    ) -> Result<Vec<LifecycleEvent>, ReactorError> {
        if &self.config.proxy_group == group {
            self.proxy_lifecycle(group, events, summary).await?;
            return Ok(Vec::new());
        }
        if !self.config.manages(group) {
            summary.ignore(format!("group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"));
            return Ok(Vec::new());
        }
        let mut actions = Vec::new();
        for e in events {
            if !self.config.owns_hook(&e.hook) {
                summary.ignore(format!("hook {} of group {group} is not one of LIFECYCLE_HOOKS: left to the system that owns it", e.hook));
            } else if matches!(e.warm, WarmMove::IntoPool | WarmMove::OutOfPool) {
                self.warm_pool_move(group, &e, summary).await?;
            } else {
                actions.push(e);
            }
        }
        Ok(actions)
    }

    /// The groups of `units`, read at once with the proxies, as one change with the
    /// records it answers (`None` when no group feeds a pool); the records of groups
    /// that could not be planned, with why.
    async fn lifecycle_change(
        &self,
        batch: &Batch,
        units: &[Unit],
        known: ledger::Known,
        summary: &mut Summary,
    ) -> (Option<(Outgoing, Vec<String>)>, Failed) {
        let all = || units.iter().flat_map(|u| u.ids.iter().cloned()).collect();
        let mut known = known;
        let (states, hosts) = match self.groups_and_hosts(batch, units, &mut known).await {
            Ok(read) => read,
            Err(e) => return (None, vec![(all(), e)]),
        };
        let (mut merged, mut ids) = (None::<Outgoing>, Vec::new());
        for u in units {
            let Some(state) = states.iter().find(|s| s.name == u.group) else {
                if !u.actions.is_empty() {
                    summary.ignore(format!("group {} does not exist (any more)", u.group));
                }
                continue;
            };
            if u.actions.is_empty() && !state.members.iter().any(|m| hook_transition(m).is_some()) {
                continue; // a group of POOLS with nothing in transition
            }
            let named = sorted_instances(&u.actions);
            let event_actions: Vec<EventAction> =
                u.actions.iter().map(LifecycleEvent::action).collect();
            let Some(out) =
                self.group_change(state, Scope::Transitions(&named), &event_actions, summary)
            else {
                continue;
            };
            let out = Outgoing {
                event_ms: u.actions.iter().filter_map(|e| e.started_ms).min(),
                kind: kind_of(&u.actions, state),
                resend: Some(sorted_instances(u.actions.iter().filter(|e| e.redelivered))),
                ..out
            };
            ids.extend(u.ids.iter().cloned());
            merged = Some(match merged {
                None => out,
                Some(m) => m.merge(out),
            });
        }
        let out = merged.map(|m| (Outgoing { hosts, known, ..m }, ids));
        (out, Vec::new())
    }

    /// The groups of `units` and the proxies, read at once: the proxy group is read
    /// with the others (one `DescribeAutoScalingGroups`) unless the batch listed the
    /// proxies already. As soon as Auto Scaling has listed the members, the ledger items
    /// of those in transition that `known` lacks (the change's other members) are read,
    /// and the proxies' tags looked at, while EC2 is asked about those members: what
    /// was read joins `known`, so opening the actions reads nothing again.
    async fn groups_and_hosts(
        &self,
        batch: &Batch,
        units: &[Unit],
        known: &mut ledger::Known,
    ) -> Result<(Vec<GroupState>, Vec<infra::HostId>), ReactorError> {
        let mut names: Vec<GroupName> = units.iter().map(|u| u.group.clone()).collect();
        let instances = sorted_instances(units.iter().flat_map(|u| &u.actions));
        let proxy = &self.config.proxy_group;
        let listed_hosts = batch.has_hosts() || names.contains(proxy);
        if !listed_hosts {
            names.push(proxy.clone());
        }
        let listing = self.discovery.list_for_events(&names, &instances).await?;
        let already: Vec<ActionKey> = known.keys().cloned().collect();
        let riders = riders_of(&listing.listed, proxy, &already);
        let in_service: Vec<String> = listing
            .listed
            .iter()
            .filter(|m| &m.group == proxy && m.lifecycle_state == "InService")
            .map(|m| m.id.as_str().to_string())
            .collect();
        let hosts = async {
            if listed_hosts {
                batch.hosts(&self.dispatcher).await
            } else {
                batch.hosts_among(&self.dispatcher, in_service).await
            }
        };
        let (states, hosts, riders) = tokio::join!(
            self.discovery.finish_listing(listing),
            hosts,
            self.read_riders(riders)
        );
        let mut states = states?;
        if !listed_hosts {
            states.retain(|s| &s.name != proxy);
        }
        known.extend(riders);
        Ok((states, hosts?))
    }

    /// The ledger items of `keys` as read now, each key absent from the ledger with
    /// `None`; nothing when they cannot be read (opening them reads them then).
    async fn read_riders(&self, keys: Vec<ActionKey>) -> ledger::Known {
        if keys.is_empty() {
            return ledger::Known::new();
        }
        match self.ledger.get(&keys).await {
            Ok(items) => ledger::known_from(keys, items),
            Err(e) => {
                tracing::debug!(error = %e, "reading the ledger items of the change's other members failed; they are read when opened");
                ledger::Known::new()
            }
        }
    }

    /// The change for `scope` of a group's `state`, with the actions it serves (`None`
    /// when the group feeds no pool).
    pub(crate) fn group_change(
        &self,
        state: &GroupState,
        scope: Scope<'_>,
        events: &[EventAction],
        summary: &mut Summary,
    ) -> Option<Outgoing> {
        let group = state.name.as_str();
        let Some(pools) = self.pools_of(state, summary) else {
            summary.ignore(format!("group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"));
            return None;
        };
        let plan = plan_for_event(&pools, state, scope);
        let (actions, notes) = pending_actions(state, event_selection(scope), events);
        for n in notes {
            summary.note(n);
        }
        Some(Outgoing {
            plan,
            actions,
            hosts: Vec::new(),
            groups: BTreeMap::from([(state.name.clone(), pools)]),
            read_at_ms: state.read_at_ms,
            label: group.to_string(),
            kind: "",
            event_ms: None,
            resend: None,
            known: crate::ledger::Known::new(),
        })
    }

    /// A lifecycle action of an instance entering or leaving the warm pool without being
    /// in the group: no pool ever had it, so it is continued at once (a launch into the
    /// pool goes on to be stopped there).
    async fn warm_pool_move(
        &self,
        group: &GroupName,
        e: &LifecycleEvent,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let Ok(instance) = MemberId::new(e.instance.as_str()) else {
            summary.ignore(format!("instance id {:?} is not usable", e.instance));
            return Ok(());
        };
        let why = match e.warm {
            WarmMove::IntoPool => "launched into the warm pool: it joins no pool until it leaves the warm pool for the group",
            _ => "leaves the warm pool: no pool has had it since it entered the warm pool",
        };
        let opening = Opening {
            key: ActionKey {
                instance,
                transition: e.transition,
            },
            group: group.clone(),
            hooks: vec![e.hook.clone()],
            token: e.token.clone(),
            pools: Vec::new(),
            started_ms: e.started_ms.unwrap_or_default(),
            generation: 0,
            hosts: Vec::new(),
        };
        self.complete_at_once(opening, Verdict::Continue, why, false, summary)
            .await
    }
}

/// The events' one kind, or [`MIXED`] (a batch of launches and terminations); for a
/// group that rides along without events, its waiting members'.
fn kind_of(events: &[LifecycleEvent], state: &GroupState) -> &'static str {
    let kinds: Vec<&'static str> = if events.is_empty() {
        state
            .members
            .iter()
            .filter_map(hook_transition)
            .map(Transition::event_kind)
            .collect()
    } else {
        events.iter().map(LifecycleEvent::kind).collect()
    };
    match kinds.split_first() {
        Some((first, rest)) if rest.iter().all(|k| k == first) => first,
        _ => MIXED,
    }
}

/// The lifecycle actions of the members `listed` in transition outside the proxy
/// group, but those of `already`.
fn riders_of(listed: &[Listed], proxy: &GroupName, already: &[ActionKey]) -> Vec<ActionKey> {
    listed
        .iter()
        .filter(|m| &m.group != proxy)
        .filter_map(|m| {
            let transition = match m.lifecycle_state.as_str() {
                PENDING_WAIT => Transition::Launch,
                TERMINATING_WAIT => Transition::Terminate,
                _ => return None,
            };
            Some(ActionKey {
                instance: m.id.clone(),
                transition,
            })
        })
        .filter(|k| !already.contains(k))
        .collect()
}

/// The instances `events` name, sorted, once each.
fn sorted_instances<'a>(events: impl IntoIterator<Item = &'a LifecycleEvent>) -> Vec<String> {
    let mut out: Vec<String> = events.into_iter().map(|e| e.instance.clone()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::classify;
    use crate::input::samples::sample;
    use serde_json::json;

    fn read(v: &serde_json::Value) -> LifecycleEvent {
        match classify(v) {
            Input::Lifecycle(e) => e,
            other => panic!("expected a lifecycle event, got {other:?}"),
        }
    }

    #[test]
    fn the_aws_samples_are_read() {
        let launch = read(&sample("launch-lifecycle-action"));
        assert_eq!(
            launch,
            LifecycleEvent {
                transition: Transition::Launch,
                group: GroupName::new("my-asg").unwrap(),
                instance: "i-1234567890abcdef0".into(),
                hook: "my-lifecycle-hook".into(),
                token: Some("87654321-4321-4321-4321-210987654321".into()),
                started_ms: parse_rfc3339_ms("2026-11-20T10:00:00Z"),
                warm: WarmMove::None,
                redelivered: false,
            }
        );
        assert_eq!(launch.kind(), "launch-lifecycle-action");
        let terminate = read(&sample("terminate-lifecycle-action"));
        assert_eq!(
            (terminate.transition, terminate.warm),
            (Transition::Terminate, WarmMove::None)
        );
        // Warm pools: into the pool on launch, back to the pool on scale-in.
        assert_eq!(
            read(&sample("launch-lifecycle-action-to-warm-pool")).warm,
            WarmMove::IntoPool
        );
        assert_eq!(
            read(&sample("terminate-lifecycle-action-to-warm-pool")).warm,
            WarmMove::BackToPool
        );
        let mut out = sample("terminate-lifecycle-action");
        out["detail"]["Origin"] = json!("WarmPool");
        out["detail"]["Destination"] = json!("EC2");
        assert_eq!(read(&out).warm, WarmMove::OutOfPool);
        let mut into_group = sample("launch-lifecycle-action");
        into_group["detail"]["Origin"] = json!("WarmPool");
        assert_eq!(
            read(&into_group).warm,
            WarmMove::None,
            "a launch like any other"
        );
        // Without Origin/Destination (older events) it is read the same way.
        let mut bare = sample("launch-lifecycle-action");
        let d = bare["detail"].as_object_mut().unwrap();
        d.remove("Origin");
        d.remove("Destination");
        assert_eq!(read(&bare).warm, WarmMove::None);
    }

    #[test]
    fn a_lifecycle_event_that_lies_about_itself_is_ignored() {
        let reason = |v: serde_json::Value| match classify(&v) {
            Input::Ignored(r) => r,
            other => panic!("expected ignored, got {other:?}"),
        };
        let mut v = sample("terminate-lifecycle-action");
        v["detail"]["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_LAUNCHING");
        assert!(reason(v).contains("expected autoscaling:EC2_INSTANCE_TERMINATING"));
        let mut v = sample("terminate-lifecycle-action");
        v["source"] = json!("my.app");
        assert!(reason(v).contains("source \"my.app\""));
        let mut v = sample("launch-lifecycle-action");
        v["detail"]["EC2InstanceId"] = json!("");
        assert!(reason(v).contains("without a group, instance or hook"));
    }
}
