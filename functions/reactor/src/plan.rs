//! From a group's truth to what to send and which lifecycle actions it serves. Pure: no
//! I/O here. (What completes an action is the ledger's: [`crate::ledger::Item`].)

use std::collections::BTreeMap;

use infra::aws::{GroupMember, GroupState, Phase};
use infra::GroupName;
use infra::{MemberId, Pool, PoolChange, PoolName};

use crate::group_change::{plan_group_change, PlannedChange};
use crate::lifecycle::Transition;

/// What a lifecycle event said about its action (hook, token, start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAction {
    /// Launch or terminate.
    pub transition: Transition,
    /// The instance.
    pub instance: String,
    /// The hook holding it.
    pub hook: String,
    /// The token, when the event carried one.
    pub token: Option<String>,
    /// When the action started (ms since the epoch).
    pub started_ms: Option<u64>,
    /// The instance is going back to the warm pool: the group no longer lists it, yet
    /// its action is pending (the event is the only word on it).
    pub to_warm_pool: bool,
}

/// A lifecycle action waiting to be completed, found in the group's truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAction {
    /// The group.
    pub group: GroupName,
    /// The instance waiting.
    pub instance: MemberId,
    /// Which hook transition it waits on.
    pub transition: Transition,
    /// The member's phase (a launch of an instance EC2 already stops is abandoned).
    pub phase: Phase,
    /// The member's EC2 state, for the log.
    pub ec2_state: Option<String>,
    /// The hook, when the event named it (otherwise every hook of the transition).
    pub hook: Option<String>,
    /// The token, when the event carried it.
    pub token: Option<String>,
    /// When it started, when known.
    pub started_ms: Option<u64>,
}

/// Which members a change about some events covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Lifecycle actions (or events naming no instance): every member not simply in
    /// service (they are in transition, and a lost event of theirs is repaired here
    /// too) plus the events' own instances, whatever their state.
    Transitions(&'a [String]),
    /// Result or state-change events, with no action of their own: only their
    /// instances. They come after those instances' actions were completed; members in
    /// transition then have their own lifecycle events in flight. Lost events are the
    /// schedule's job.
    Instances(&'a [String]),
}

impl<'a> Scope<'a> {
    /// The events' own instances.
    pub fn instances(self) -> &'a [String] {
        match self {
            Self::Transitions(i) | Self::Instances(i) => i,
        }
    }
}

/// The members `scope` covers.
pub fn event_selection<'a>(scope: Scope<'a>) -> impl Fn(&GroupMember) -> bool + 'a {
    move |m| match scope {
        Scope::Transitions(named) => {
            m.lifecycle_state != "InService" || named.iter().any(|i| i == m.id.as_str())
        }
        Scope::Instances(named) => named.iter().any(|i| i == m.id.as_str()),
    }
}

/// The change for some events: the members of `scope`. An instance an event names that
/// the group no longer lists is removed from the pools (it is gone, or detached;
/// draining an unknown member is harmless).
pub fn plan_for_event(pools: &[Pool], state: &GroupState, scope: Scope<'_>) -> PlannedChange {
    let mut plan = plan_group_change(pools, state, event_selection(scope));
    for id in scope.instances() {
        if state.member(id).is_some() {
            continue;
        }
        if let Ok(id) = MemberId::new(id.as_str()) {
            for p in &mut plan.pools {
                if !p.remove.contains(&id) {
                    p.remove.push(id.clone());
                }
            }
        }
    }
    plan
}

/// Merges pool changes naming the same pool (a pool fed by several groups).
pub fn merge_pool_changes(changes: Vec<PoolChange>) -> Vec<PoolChange> {
    let mut by_pool: BTreeMap<PoolName, PoolChange> = BTreeMap::new();
    for c in changes {
        match by_pool.get_mut(&c.pool) {
            None => {
                by_pool.insert(c.pool.clone(), c);
            }
            Some(into) => {
                for m in c.add {
                    if !into.add.iter().any(|x| x.id == m.id) && !into.remove.contains(&m.id) {
                        into.add.push(m);
                    }
                }
                for id in c.remove {
                    if !into.remove.contains(&id) && !into.add.iter().any(|x| x.id == id) {
                        into.remove.push(id);
                    }
                }
            }
        }
    }
    by_pool.into_values().collect()
}

/// The transition `m` waits in a lifecycle hook for (`Pending:Wait`, `Terminating:Wait`).
pub fn hook_transition(m: &GroupMember) -> Option<Transition> {
    if m.is_pending_wait() {
        Some(Transition::Launch)
    } else if m.is_terminating_wait() {
        Some(Transition::Terminate)
    } else {
        None
    }
}

/// The lifecycle actions pending among the selected members, with what the events said
/// about their own, plus notes on events whose action is no longer pending (late or
/// duplicate events: nothing to complete, the truth rules).
pub fn pending_actions(
    state: &GroupState,
    select: impl Fn(&GroupMember) -> bool,
    events: &[EventAction],
) -> (Vec<PendingAction>, Vec<String>) {
    let mut actions = Vec::new();
    let mut notes = Vec::new();
    for m in state.members.iter().filter(|m| select(m)) {
        let Some(transition) = hook_transition(m) else {
            continue;
        };
        let from_event = events
            .iter()
            .rev()
            .find(|e| e.instance == m.id.as_str() && e.transition == transition);
        actions.push(PendingAction {
            group: state.name.clone(),
            instance: m.id.clone(),
            transition,
            phase: m.phase,
            ec2_state: m.ec2_state.clone(),
            hook: from_event.map(|e| e.hook.clone()),
            token: from_event.and_then(|e| e.token.clone()),
            started_ms: from_event.and_then(|e| e.started_ms),
        });
    }
    for e in events {
        let matched = actions
            .iter()
            .any(|a| a.instance.as_str() == e.instance && a.transition == e.transition);
        let unlisted = state.member(&e.instance).is_none();
        if !matched && e.to_warm_pool && unlisted {
            if let Ok(instance) = MemberId::new(e.instance.as_str()) {
                actions.push(PendingAction {
                    group: state.name.clone(),
                    instance,
                    transition: e.transition,
                    phase: Phase::Leaving,
                    ec2_state: None,
                    hook: Some(e.hook.clone()),
                    token: e.token.clone(),
                    started_ms: e.started_ms,
                });
            }
        } else if !matched {
            let now = match state.member(&e.instance) {
                Some(m) => format!("is {}", m.lifecycle_state),
                None => "is no longer in the group".to_string(),
            };
            notes.push(format!(
                "{} lifecycle event for instance {} of group {}, which {now}: the action is not pending, nothing to complete",
                e.transition, e.instance, state.name
            ));
        }
    }
    (actions, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, member};

    fn group(members: Vec<GroupMember>) -> GroupState {
        fixtures::group("g", members, 1)
    }

    fn pool(name: &str) -> Pool {
        fixtures::pool(name, 8080)
    }

    #[test]
    fn the_truth_not_the_event_decides() {
        // A late launch event for an instance already terminating: it is removed, and
        // the launch action is not pending (its terminate action is).
        let s = group(vec![
            member("i-1", "InService", Some("10.0.0.1")),
            member("i-2", "Terminating:Wait", Some("10.0.0.2")),
            member("i-3", "Pending:Wait", Some("10.0.0.3")),
        ]);
        let plan = plan_for_event(&[pool("web")], &s, Scope::Transitions(&["i-2".to_string()]));
        assert!(plan.pools[0].add.iter().all(|m| m.id.as_str() != "i-2"));
        assert_eq!(plan.pools[0].remove, [MemberId::new("i-2").unwrap()]);
        // The steady member is left alone; the other one in transition is carried along.
        assert_eq!(
            plan.pools[0]
                .add
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>(),
            ["i-3"]
        );
        let ev = EventAction {
            transition: Transition::Launch,
            instance: "i-2".into(),
            hook: "h".into(),
            token: Some("t".into()),
            started_ms: None,
            to_warm_pool: false,
        };
        let (actions, notes) = pending_actions(
            &s,
            event_selection(Scope::Transitions(&["i-2".to_string()])),
            &[ev],
        );
        assert_eq!(actions.len(), 2);
        let term = actions
            .iter()
            .find(|a| a.instance.as_str() == "i-2")
            .unwrap();
        assert_eq!(term.transition, Transition::Terminate);
        assert_eq!(
            term.token, None,
            "the launch token is not the terminate token"
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("is Terminating:Wait"), "{}", notes[0]);
        // The event's own action gets its hook and token.
        let ev = EventAction {
            transition: Transition::Launch,
            instance: "i-3".into(),
            hook: "h".into(),
            token: Some("t".into()),
            started_ms: Some(5),
            to_warm_pool: false,
        };
        let (actions, notes) = pending_actions(
            &s,
            event_selection(Scope::Transitions(&["i-3".to_string()])),
            &[ev],
        );
        let launch = actions
            .iter()
            .find(|a| a.instance.as_str() == "i-3")
            .unwrap();
        assert_eq!(launch.hook.as_deref(), Some("h"));
        assert_eq!(launch.token.as_deref(), Some("t"));
        assert!(notes.is_empty());
    }

    #[test]
    fn a_result_event_covers_only_its_instance() {
        let s = group(vec![
            member("i-1", "InService", Some("10.0.0.1")),
            member("i-2", "Terminating:Wait", Some("10.0.0.2")),
            member("i-3", "Pending:Wait", Some("10.0.0.3")),
        ]);
        // "Launch Successful" for i-1: the others in transition are left to their own
        // lifecycle events.
        let plan = plan_for_event(&[pool("web")], &s, Scope::Instances(&["i-1".to_string()]));
        let added: Vec<&str> = plan.pools[0].add.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(added, ["i-1"]);
        assert!(plan.pools[0].remove.is_empty());
        let (actions, _) = pending_actions(
            &s,
            event_selection(Scope::Instances(&["i-1".to_string()])),
            &[],
        );
        assert!(actions.is_empty(), "{actions:?}");
        // A lifecycle action about i-1 carries them along.
        let plan = plan_for_event(&[pool("web")], &s, Scope::Transitions(&["i-1".to_string()]));
        let mut added: Vec<&str> = plan.pools[0].add.iter().map(|m| m.id.as_str()).collect();
        added.sort_unstable();
        assert_eq!(added, ["i-1", "i-3"]);
        assert_eq!(plan.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    }

    #[test]
    fn a_missing_instance_is_removed() {
        let s = group(vec![member("i-1", "InService", Some("10.0.0.1"))]);
        let nine = ["i-9".to_string()];
        for scope in [Scope::Transitions(&nine), Scope::Instances(&nine)] {
            let plan = plan_for_event(&[pool("web"), pool("api")], &s, scope);
            for p in &plan.pools {
                assert!(p.add.is_empty());
                assert_eq!(p.remove, [MemberId::new("i-9").unwrap()]);
            }
        }
        let (actions, notes) = pending_actions(
            &s,
            event_selection(Scope::Transitions(&nine)),
            &[EventAction {
                transition: Transition::Terminate,
                instance: "i-9".into(),
                hook: "h".into(),
                token: None,
                started_ms: None,
                to_warm_pool: false,
            }],
        );
        assert!(actions.is_empty());
        assert!(notes[0].contains("no longer in the group"));
    }

    #[test]
    fn pool_changes_of_several_groups_merge() {
        let a = plan_group_change(
            &[pool("web")],
            &group(vec![member("i-1", "InService", Some("10.0.0.1"))]),
            |_| true,
        );
        let b = plan_group_change(
            &[pool("web"), pool("api")],
            &group(vec![member("i-2", "Terminating", Some("10.0.0.2"))]),
            |_| true,
        );
        let merged = merge_pool_changes(a.pools.into_iter().chain(b.pools).collect());
        assert_eq!(merged.len(), 2);
        let web = merged.iter().find(|p| p.pool.as_str() == "web").unwrap();
        assert_eq!(web.add.len(), 1);
        assert_eq!(web.remove.len(), 1);
        let c = infra::Change::new(1, merged);
        assert!(infra::Change::from_json(&c.to_json()).is_ok());
    }
}
