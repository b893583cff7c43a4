//! From a group's truth and the hosts' reports to what to send and what to complete.
//! Pure: no I/O here.

use std::collections::BTreeMap;

use infra::aws::{plan_group_change, GroupMember, GroupState, Phase, PlannedChange};
use infra::{MemberId, OutcomeStatus, Pool, PoolChange, PoolName};

use crate::context::ActionRef;
use crate::dispatch::HostResult;
use crate::event::Transition;

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
    pub group: String,
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

/// What to do with a pending action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Complete with CONTINUE.
    Continue(String),
    /// Complete with ABANDON.
    Abandon(String),
    /// Leave it pending (a later invocation or the reconcile finishes it).
    Wait(String),
}

impl Decision {
    /// The lifecycle action result to send, if any.
    pub fn result(&self) -> Option<&'static str> {
        match self {
            Self::Continue(_) => Some("CONTINUE"),
            Self::Abandon(_) => Some("ABANDON"),
            Self::Wait(_) => None,
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Self::Continue(r) | Self::Abandon(r) | Self::Wait(r) => r,
        }
    }

    /// `CONTINUE`, `ABANDON` or `WAIT`.
    pub fn label(&self) -> &'static str {
        self.result().unwrap_or("WAIT")
    }
}

/// Which members a change about one event covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A lifecycle action (or an event naming no instance): every member not simply in
    /// service (they are in transition, and a lost event of theirs is repaired here
    /// too) plus the event's own instance, whatever its state.
    Transitions(Option<&'a str>),
    /// A result or state-change event, with no action of its own: only its instance.
    /// It comes after that instance's action was completed; members in transition then
    /// have their own lifecycle events in flight, and re-asserting them here would queue
    /// a second drain behind theirs on every host (one agent run at a time per host),
    /// delaying whatever change comes next. Lost events are the schedule's job.
    Instance(&'a str),
}

impl<'a> Scope<'a> {
    /// The event's own instance, if it names one.
    pub fn instance(self) -> Option<&'a str> {
        match self {
            Self::Transitions(i) => i,
            Self::Instance(i) => Some(i),
        }
    }
}

/// The members `scope` covers.
pub fn event_selection<'a>(scope: Scope<'a>) -> impl Fn(&GroupMember) -> bool + 'a {
    move |m| match scope {
        Scope::Transitions(instance) => {
            m.lifecycle_state != "InService" || Some(m.id.as_str()) == instance
        }
        Scope::Instance(id) => m.id.as_str() == id,
    }
}

/// The change for an event: the members of `scope`. An instance the event names that
/// the group no longer lists is removed from the pools (it is gone; draining an unknown
/// member is harmless).
pub fn plan_for_event(pools: &[Pool], state: &GroupState, scope: Scope<'_>) -> PlannedChange {
    let mut plan = plan_group_change(pools, state, event_selection(scope));
    if let Some(id) = scope.instance() {
        if state.member(id).is_none() {
            if let Ok(id) = MemberId::new(id) {
                for p in &mut plan.pools {
                    if !p.remove.contains(&id) {
                        p.remove.push(id.clone());
                    }
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

/// The lifecycle actions pending among the selected members, with what the event said
/// about its own, plus notes on an event whose action is no longer pending (a late or
/// duplicate event: nothing to complete, the truth rules).
pub fn pending_actions(
    state: &GroupState,
    select: impl Fn(&GroupMember) -> bool,
    event: Option<&EventAction>,
) -> (Vec<PendingAction>, Vec<String>) {
    let mut actions = Vec::new();
    let mut notes = Vec::new();
    for m in state.members.iter().filter(|m| select(m)) {
        let transition = if m.is_pending_wait() {
            Transition::Launch
        } else if m.is_terminating_wait() {
            Transition::Terminate
        } else {
            continue;
        };
        let from_event =
            event.filter(|e| e.instance == m.id.as_str() && e.transition == transition);
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
    if let Some(e) = event {
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

/// Decides an action from every host's report about its member in its pools (the
/// reports of the command that carried it).
///
/// - launch: CONTINUE when every host reports it `up` in every pool; ABANDON as soon as
///   one host reports it `failed` (it never got healthy there); otherwise wait.
/// - terminate: CONTINUE when every host reports it `drained` in every pool, or once
///   the drain timeout has passed since the action started; otherwise wait.
///
/// A host that failed as a whole (no report) means waiting: the member's state on it is
/// unknown, and the schedule sends the change again. A member a host reports `pending`
/// converges under another change, whose own event decides it. With no proxy host at all
/// there is nothing to gate: CONTINUE.
pub fn decide(
    action: &ActionRef,
    hosts: &[HostResult],
    now_ms: u64,
    drain_timeout_ms: u64,
) -> Decision {
    let id = &action.instance;
    if hosts.is_empty() {
        return Decision::Continue("no proxy host to gate on".into());
    }
    let target = match action.transition {
        Transition::Launch => OutcomeStatus::Up,
        Transition::Terminate => OutcomeStatus::Drained,
    };
    let mut waiting: Vec<String> = Vec::new();
    for h in hosts {
        let report = match &h.outcome {
            Ok(r) => r,
            Err(failure) => {
                waiting.push(format!("host {} failed: {failure}", h.host));
                continue;
            }
        };
        for pool in &action.pools {
            let outcome = report
                .outcomes
                .iter()
                .find(|o| &o.pool == pool && &o.member == id);
            match outcome {
                None => waiting.push(format!(
                    "host {} did not report {id} in pool {pool}",
                    h.host
                )),
                Some(o) if o.status == target => {}
                Some(o) if o.status == OutcomeStatus::Failed => {
                    let why = o.reason.as_deref().unwrap_or("no reason given");
                    if action.transition == Transition::Launch {
                        return Decision::Abandon(format!(
                            "host {} reports {id} failed in pool {pool}: {why}",
                            h.host
                        ));
                    }
                    waiting.push(format!(
                        "host {} failed to drain {id} in pool {pool}: {why}",
                        h.host
                    ));
                }
                Some(o) => waiting.push(format!(
                    "host {} reports {id} {} in pool {pool}{}",
                    h.host,
                    o.status,
                    o.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )),
            }
        }
    }
    let everywhere = match target {
        OutcomeStatus::Up => "UP",
        _ => "drained",
    };
    if waiting.is_empty() {
        return Decision::Continue(format!("{everywhere} on all {} host(s)", hosts.len()));
    }
    let summary = waiting.join("; ");
    if action.transition == Transition::Terminate {
        if let Some(started) = action.started_ms {
            if now_ms.saturating_sub(started) >= drain_timeout_ms {
                return Decision::Continue(format!(
                    "drain timeout ({} s) passed without a drain everywhere: {summary}",
                    drain_timeout_ms / 1000
                ));
            }
        }
    }
    Decision::Wait(summary)
}

/// Whether some host reports `action`'s member converging under another change there
/// (`pending`: an older change is bringing it to the same target; `stale`: a newer change
/// decided it): that other change's reports tell what happened on that host.
pub fn converging_elsewhere(action: &ActionRef, hosts: &[HostResult]) -> bool {
    hosts.iter().any(|h| {
        h.outcome.as_ref().is_ok_and(|r| {
            r.outcomes.iter().any(|o| {
                o.member == action.instance
                    && action.pools.contains(&o.pool)
                    && matches!(o.status, OutcomeStatus::Pending | OutcomeStatus::Stale)
            })
        })
    })
}

/// `hosts` (one command's reports) where each `pending` or `stale` outcome of
/// `action`'s member is replaced by the same host's final outcome (up, drained, failed)
/// in `others` (the reports of other commands that carried the same action), when one
/// of them has it. Two changes about the same members can reach the hosts in different
/// orders, so each command alone may see only part of what happened; together they tell
/// what every host finally did.
pub fn merge_reports(
    action: &ActionRef,
    hosts: &[HostResult],
    others: &[Vec<HostResult>],
) -> Vec<HostResult> {
    let is_final = |s: OutcomeStatus| {
        matches!(
            s,
            OutcomeStatus::Up | OutcomeStatus::Drained | OutcomeStatus::Failed
        )
    };
    let final_elsewhere = |host: &str, pool: &PoolName| {
        others
            .iter()
            .flatten()
            .filter(|h| h.host == host)
            .filter_map(|h| h.outcome.as_ref().ok())
            .flat_map(|r| r.outcomes.iter())
            .find(|o| &o.pool == pool && o.member == action.instance && is_final(o.status))
            .cloned()
    };
    hosts
        .iter()
        .map(|h| {
            let mut h = h.clone();
            if let Ok(report) = &mut h.outcome {
                for o in &mut report.outcomes {
                    if o.member == action.instance
                        && action.pools.contains(&o.pool)
                        && !is_final(o.status)
                    {
                        if let Some(f) = final_elsewhere(&h.host, &o.pool) {
                            *o = f;
                        }
                    }
                }
            }
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::{Outcome, Port, Report};

    fn member(id: &str, state: &str, addr: Option<&str>) -> GroupMember {
        GroupMember::new(
            MemberId::new(id).unwrap(),
            state,
            Some("running".into()),
            addr.map(|a| a.parse().unwrap()),
        )
    }

    fn group(members: Vec<GroupMember>) -> GroupState {
        GroupState {
            name: "g".into(),
            tags: BTreeMap::new(),
            members,
            read_at_ms: 1,
        }
    }

    fn pool(name: &str) -> Pool {
        Pool {
            name: PoolName::new(name).unwrap(),
            port: Port::new(8080).unwrap(),
            server_options: Default::default(),
        }
    }

    fn report(host: &str, outcomes: &[(&str, &str, OutcomeStatus)]) -> HostResult {
        HostResult::report(
            host,
            Report {
                host: host.into(),
                generation: 1,
                ok: true,
                reloads: 0,
                outcomes: outcomes
                    .iter()
                    .map(|(p, m, s)| Outcome {
                        pool: PoolName::new(*p).unwrap(),
                        member: MemberId::new(*m).unwrap(),
                        slot: None,
                        status: *s,
                        reason: (*s == OutcomeStatus::Failed)
                            .then(|| "health check timed out".into()),
                        ms: 1,
                    })
                    .collect(),
            },
        )
    }

    fn action(id: &str, t: Transition) -> ActionRef {
        action_in(id, t, pools())
    }

    fn action_in(id: &str, t: Transition, pools: Vec<PoolName>) -> ActionRef {
        ActionRef {
            group: "g".into(),
            instance: MemberId::new(id).unwrap(),
            transition: t,
            hooks: vec!["h".into()],
            token: None,
            started_ms: Some(1_000),
            pools,
        }
    }

    fn pools() -> Vec<PoolName> {
        vec![PoolName::new("web").unwrap()]
    }

    use OutcomeStatus::*;

    #[test]
    fn two_changes_crossing_on_the_hosts_decide_together() {
        // Change A reached h1 first, change B reached h2 first: on h1, B found the
        // member joining under A (pending); on h2, A came after B (stale).
        let a = action("i-1", Transition::Launch);
        let cmd_a = [
            report("h1", &[("web", "i-1", Up)]),
            report("h2", &[("web", "i-1", Stale)]),
        ];
        let cmd_b = [
            report("h1", &[("web", "i-1", Pending)]),
            report("h2", &[("web", "i-1", Up)]),
        ];
        // Alone, neither decides.
        assert!(converging_elsewhere(&a, &cmd_a));
        assert!(matches!(decide(&a, &cmd_a, 0, 0), Decision::Wait(_)));
        assert!(matches!(decide(&a, &cmd_b, 0, 0), Decision::Wait(_)));
        // Together, whichever ends last decides.
        let merged = merge_reports(&a, &cmd_b, &[cmd_a.to_vec()]);
        assert!(matches!(decide(&a, &merged, 0, 0), Decision::Continue(_)));
        let merged = merge_reports(&a, &cmd_a, &[cmd_b.to_vec()]);
        assert!(matches!(decide(&a, &merged, 0, 0), Decision::Continue(_)));
        // A failure elsewhere is taken as well; another member's outcome is not.
        let failed = [report("h2", &[("web", "i-1", Failed)])];
        let merged = merge_reports(&a, &cmd_a, &[failed.to_vec()]);
        assert!(matches!(decide(&a, &merged, 0, 0), Decision::Abandon(_)));
        let other = [report("h2", &[("web", "i-2", Up)])];
        let merged = merge_reports(&a, &cmd_a, &[other.to_vec()]);
        assert!(matches!(decide(&a, &merged, 0, 0), Decision::Wait(_)));
        assert!(!converging_elsewhere(
            &a,
            &[report("h1", &[("web", "i-1", Up)])]
        ));
    }

    #[test]
    fn launch_continues_only_when_up_everywhere() {
        let a = action("i-1", Transition::Launch);
        let both = [
            report("h1", &[("web", "i-1", Up)]),
            report("h2", &[("web", "i-1", Up)]),
        ];
        assert!(matches!(decide(&a, &both, 0, 0), Decision::Continue(_)));
        let one = [
            report("h1", &[("web", "i-1", Up)]),
            report("h2", &[("web", "i-2", Up)]),
        ];
        let d = decide(&a, &one, 0, 0);
        assert!(
            matches!(d, Decision::Wait(ref r) if r.contains("host h2 did not report i-1")),
            "{d:?}"
        );
        let broken = [
            report("h1", &[("web", "i-1", Up)]),
            HostResult::failed(
                "h2",
                crate::dispatch::HostFailure::Status {
                    status: "TimedOut".into(),
                    details: None,
                    excerpt: String::new(),
                },
            ),
        ];
        let d = decide(&a, &broken, 0, 0);
        assert!(
            matches!(d, Decision::Wait(ref r) if r.contains("host h2 failed: SSM status TimedOut")),
            "{d:?}"
        );
        // Two pools: up in one is not enough.
        let two = vec![PoolName::new("web").unwrap(), PoolName::new("api").unwrap()];
        let a2 = action_in("i-1", Transition::Launch, two);
        assert!(matches!(decide(&a2, &both, 0, 0), Decision::Wait(_)));
        let stale = [report("h1", &[("web", "i-1", Stale)])];
        assert!(matches!(decide(&a, &stale, 0, 0), Decision::Wait(_)));
    }

    #[test]
    fn launch_is_abandoned_when_a_host_reports_it_failed() {
        let a = action("i-1", Transition::Launch);
        let hosts = [
            HostResult::failed(
                "h0",
                crate::dispatch::HostFailure::Unreadable("down".into()),
            ),
            report("h1", &[("web", "i-1", Up)]),
            report("h2", &[("web", "i-1", Failed)]),
        ];
        let d = decide(&a, &hosts, 0, 0);
        assert_eq!(d.label(), "ABANDON");
        assert!(d.reason().contains("host h2") && d.reason().contains("health check timed out"));
    }

    #[test]
    fn terminate_continues_once_drained_everywhere_or_after_the_drain_timeout() {
        let a = action("i-1", Transition::Terminate);
        let drained = [
            report("h1", &[("web", "i-1", Drained)]),
            report("h2", &[("web", "i-1", Drained)]),
        ];
        assert_eq!(decide(&a, &drained, 2_000, 60_000).label(), "CONTINUE");
        let partial = [
            report("h1", &[("web", "i-1", Drained)]),
            report("h2", &[("web", "i-1", Failed)]),
        ];
        assert_eq!(decide(&a, &partial, 2_000, 60_000).label(), "WAIT");
        let d = decide(&a, &partial, 61_000, 60_000);
        assert_eq!(d.label(), "CONTINUE");
        assert!(d.reason().contains("drain timeout"));
        let mut unknown_start = a.clone();
        unknown_start.started_ms = None;
        assert_eq!(
            decide(&unknown_start, &partial, u64::MAX, 1).label(),
            "WAIT"
        );
    }

    #[test]
    fn no_proxy_host_means_nothing_to_gate() {
        assert_eq!(
            decide(&action("i-1", Transition::Launch), &[], 0, 0).label(),
            "CONTINUE"
        );
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
        let plan = plan_for_event(&[pool("web")], &s, Scope::Transitions(Some("i-2")));
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
            event_selection(Scope::Transitions(Some("i-2"))),
            Some(&ev),
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
            event_selection(Scope::Transitions(Some("i-3"))),
            Some(&ev),
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
        let plan = plan_for_event(&[pool("web")], &s, Scope::Instance("i-1"));
        let added: Vec<&str> = plan.pools[0].add.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(added, ["i-1"]);
        assert!(plan.pools[0].remove.is_empty());
        let (actions, _) = pending_actions(&s, event_selection(Scope::Instance("i-1")), None);
        assert!(actions.is_empty(), "{actions:?}");
        // A lifecycle action about i-1 carries them along.
        let plan = plan_for_event(&[pool("web")], &s, Scope::Transitions(Some("i-1")));
        let mut added: Vec<&str> = plan.pools[0].add.iter().map(|m| m.id.as_str()).collect();
        added.sort_unstable();
        assert_eq!(added, ["i-1", "i-3"]);
        assert_eq!(plan.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    }

    #[test]
    fn a_missing_instance_is_removed() {
        let s = group(vec![member("i-1", "InService", Some("10.0.0.1"))]);
        for scope in [Scope::Transitions(Some("i-9")), Scope::Instance("i-9")] {
            let plan = plan_for_event(&[pool("web"), pool("api")], &s, scope);
            for p in &plan.pools {
                assert!(p.add.is_empty());
                assert_eq!(p.remove, [MemberId::new("i-9").unwrap()]);
            }
        }
        let (actions, notes) = pending_actions(
            &s,
            event_selection(Scope::Transitions(Some("i-9"))),
            Some(&EventAction {
                transition: Transition::Terminate,
                instance: "i-9".into(),
                hook: "h".into(),
                token: None,
                started_ms: None,
                to_warm_pool: false,
            }),
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
