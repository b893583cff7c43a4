//! The reactor: one event in, the change out to every host together with what completes
//! it; when the hosts' command ends, its status-change event brings their reports back
//! and the lifecycle actions are completed from them. No invocation waits for a host,
//! and nothing is kept between invocations.
//!
//! Generic over its four boundaries ([`Discovery`], [`Dispatcher`], [`LifecycleApi`],
//! [`DnsApi`]) so the whole flow runs against fakes in unit tests and against AWS (or
//! the emulator) in the Lambda.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use infra::aws::{
    now_ms, plan_group_change, resolve_pools, AwsError, Discovery, Generations, GroupPoolsError,
    GroupState, Interruption, Phase, PlannedChange,
};
use infra::{MemberId, Pool, PoolName};
use serde::Serialize;
use serde_json::Value;
use tracing::{field, Instrument};

use crate::config::Config;
use crate::config::Rebalance;
use crate::context::Rider;
use crate::context::{ActionRef, Context};
use crate::dispatch::{CommandInfo, DispatchError, Dispatcher, HostResult};
use crate::dns::{batch_changes, plan_records, DnsApi, DnsError, RecordChange};
use crate::event::{classify, Classified, Transition, WarmMove, Warning};
use crate::lifecycle::{Completion, LifecycleApi};
use crate::plan::{
    converging_elsewhere, decide, event_selection, merge_pool_changes, merge_reports,
    pending_actions, plan_for_event, Decision, EventAction, PendingAction, Scope,
};

/// How far back the schedule looks for commands whose status event may have been lost,
/// beyond the longest a command runs.
const LOST_EVENT_LOOKBACK: Duration = Duration::from_secs(15 * 60);

/// What one event sends: the change, the lifecycle actions its command's status event
/// completes, the drained members riding along, and the proxy hosts it goes to (listed
/// while the group was read).
struct Outgoing {
    plan: PlannedChange,
    actions: Vec<PendingAction>,
    riders: Vec<Rider>,
    hosts: Vec<String>,
}

/// Why an invocation failed (after retries). Unknown or malformed events are not
/// errors: they are acknowledged and logged.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// Reading a group or completing an action failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A group's tags name pools or ports that can not be used.
    #[error(transparent)]
    Pools(#[from] GroupPoolsError),
    /// The change could not be sent, or a command's results not read.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// The proxy fleet's records could not be updated.
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// One host's answer, summarised.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostSummary {
    /// The host.
    pub host: String,
    /// Whether it reported.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One lifecycle action's fate in this invocation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActionSummary {
    /// The group.
    pub group: String,
    /// The instance.
    pub instance: String,
    /// `launch` or `terminate`.
    pub transition: String,
    /// `CONTINUE`, `ABANDON`, or `WAIT` (sent, or waiting for hosts).
    pub decision: String,
    /// Why.
    pub reason: String,
    /// Whether Auto Scaling took the completion (false: it was no longer pending).
    pub completed: bool,
}

/// Route 53 work done.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DnsSummary {
    /// Records created or replaced.
    pub upserts: usize,
    /// Records deleted.
    pub deletes: usize,
    /// `ChangeResourceRecordSets` requests.
    pub requests: usize,
}

/// What one invocation did: the Lambda's answer, and the last log line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// The event's kind.
    pub event: String,
    /// Why it was ignored, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// The groups it touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The change's generation, when one was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The change sent, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<infra::Change>,
    /// The Run Command commands that carry it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Every host's answer, for a command that ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSummary>,
    /// Lifecycle actions decided (or sent, waiting for the hosts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionSummary>,
    /// Lifecycle actions whose heartbeat was recorded (their command still runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<String>,
    /// Route 53 work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSummary>,
    /// Anything else worth knowing (late events, members without address...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The schedule's count of lifecycle actions still pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingSummary>,
    /// When the event happened (its `time`, ms since the epoch), for the metrics.
    #[serde(skip)]
    pub event_time_ms: Option<u64>,
    /// When the change went out (ms since the epoch), for the metrics.
    #[serde(skip)]
    pub dispatched_ms: Option<u64>,
}

/// Lifecycle actions pending when the schedule ran.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PendingSummary {
    /// How many.
    pub actions: usize,
    /// How long the oldest has been pending (s), as far as the commands that carried it
    /// tell; 0 when none is.
    pub max_age_s: u64,
}

impl Summary {
    fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        tracing::info!(note = %s);
        self.notes.push(s);
    }

    fn ignore(&mut self, reason: String) {
        tracing::info!(reason = %reason, "event ignored");
        self.ignored = Some(reason);
    }
}

/// The reactor with its boundaries.
pub struct Reactor<D, P, L, N> {
    config: Config,
    discovery: D,
    dispatcher: P,
    lifecycle: L,
    dns: Option<N>,
    generations: Generations,
}

impl<D, P, L, N> Reactor<D, P, L, N>
where
    D: Discovery,
    P: Dispatcher,
    L: LifecycleApi,
    N: DnsApi,
{
    /// Builds the reactor (once per cold start).
    pub fn new(config: Config, discovery: D, dispatcher: P, lifecycle: L, dns: Option<N>) -> Self {
        Self {
            config,
            discovery,
            dispatcher,
            lifecycle,
            dns,
            generations: Generations::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The dispatcher (the benchmark reads its timings).
    pub fn dispatcher(&self) -> &P {
        &self.dispatcher
    }

    /// Handles one event.
    pub async fn handle(&self, event: &Value) -> Result<Summary, ReactorError> {
        let (summary, result) = self.handle_summarised(event).await;
        result.map(|()| summary)
    }

    /// Handles one event; what was done is returned even when it failed (the metrics
    /// count failed invocations too).
    pub async fn handle_summarised(&self, event: &Value) -> (Summary, Result<(), ReactorError>) {
        let classified = classify(event);
        let span = tracing::info_span!(
            "event",
            kind = classified.kind(),
            group = field::Empty,
            instance = field::Empty,
            generation = field::Empty,
        );
        let mut summary = Summary {
            event: classified.kind().to_string(),
            event_time_ms: event
                .get("time")
                .and_then(Value::as_str)
                .and_then(crate::event::parse_rfc3339_ms),
            ..Summary::default()
        };
        let result = self
            .dispatch_event(classified, &mut summary)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match &result {
            Ok(()) => tracing::info!(
                summary = %serde_json::to_string(&summary).unwrap_or_default(),
                "event handled"
            ),
            Err(e) => tracing::error!(
                error = %e,
                summary = %serde_json::to_string(&summary).unwrap_or_default(),
                "event failed"
            ),
        }
        (summary, result)
    }

    async fn dispatch_event(
        &self,
        classified: Classified,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let span = tracing::Span::current();
        match classified {
            Classified::Ignored { reason } => {
                tracing::warn!(reason = %reason, "event ignored");
                summary.ignored = Some(reason);
                Ok(())
            }
            Classified::Reconcile => self.reconcile(summary).await,
            Classified::LifecycleAction {
                transition,
                group,
                instance,
                hook,
                token,
                started_ms,
                warm,
            } => {
                span.record("group", group.as_str());
                span.record("instance", instance.as_str());
                if !self.config.owns_hook(&hook) {
                    summary.ignore(format!(
                        "hook {hook} of group {group} is not one of LIFECYCLE_HOOKS: \
                         left to the system that owns it"
                    ));
                    return Ok(());
                }
                let action = EventAction {
                    transition,
                    instance: instance.clone(),
                    hook,
                    token,
                    started_ms,
                    to_warm_pool: warm == WarmMove::BackToPool,
                };
                match warm {
                    WarmMove::IntoPool | WarmMove::OutOfPool => {
                        self.warm_pool_action(&group, action, warm, summary).await
                    }
                    WarmMove::None | WarmMove::BackToPool => {
                        self.group_event(&group, Some(&instance), Some(action), summary)
                            .await
                    }
                }
            }
            Classified::Warning {
                kind,
                instance,
                time_ms,
            } => {
                span.record("instance", instance.as_str());
                self.warning(kind, &instance, time_ms, summary).await
            }
            Classified::Activity {
                group,
                instance,
                succeeded,
            } => {
                span.record("group", group.as_str());
                if let Some(i) = &instance {
                    span.record("instance", i.as_str());
                }
                if let (Some(i), Some(t)) = (&instance, succeeded) {
                    if let Some(hook) = self.gating_hook(&group, t).await {
                        summary.groups.push(group.clone());
                        summary.ignore(format!(
                            "{t} of instance {i} passed through hook {hook} of ours, which is \
                             completed only from the hosts' reports of the change that carried it: \
                             nothing left to send (the schedule's reconcile and the hosts' periodic \
                             sync repair a host a timed-out action left behind)"
                        ));
                        return Ok(());
                    }
                }
                self.group_event(&group, instance.as_deref(), None, summary)
                    .await
            }
            Classified::Ec2State { instance, state } => {
                span.record("instance", instance.as_str());
                match self.discovery.group_of_instance(&instance).await? {
                    None => {
                        summary.ignore(format!(
                            "instance {instance} (now {state}) is in no Auto Scaling group"
                        ));
                        Ok(())
                    }
                    Some(group) => {
                        span.record("group", group.as_str());
                        self.group_event(&group, Some(&instance), None, summary)
                            .await
                    }
                }
            }
            Classified::CommandEnded {
                command_id,
                document,
                status,
                context,
            } => {
                self.command_ended(&command_id, &document, &status, context.as_deref(), summary)
                    .await
            }
        }
    }

    /// An event about `group` (and maybe one of its instances): the change for the
    /// members it covers, sent with their pending lifecycle actions.
    async fn group_event(
        &self,
        group: &str,
        instance: Option<&str>,
        action: Option<EventAction>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        summary.groups.push(group.to_string());
        if self.config.proxy_group.as_deref() == Some(group) {
            return self.proxy_fleet_event(group, action, summary).await;
        }
        if !self.config.manages(group) {
            summary.ignore(format!(
                "group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"
            ));
            return Ok(());
        }
        // The proxy hosts are listed while the group is read: both are needed before
        // anything can be sent, and neither depends on the other.
        let (state, hosts) = tokio::join!(
            self.discovery.group_for_event(group, instance),
            self.dispatcher.hosts(group)
        );
        let Some(state) = state? else {
            summary.ignore(format!("group {group} does not exist (any more)"));
            return Ok(());
        };
        let Some(pools) = resolve_pools(group, &state.tags, self.config.pools.get(group))? else {
            summary.ignore(format!(
                "group {group} feeds no pool: no haproxy:pool tag and not in POOLS"
            ));
            return Ok(());
        };
        let scope = match (instance, &action) {
            (Some(id), None) => Scope::Instance(id),
            _ => Scope::Transitions(instance),
        };
        let plan = plan_for_event(&pools, &state, scope);
        let (actions, notes) = pending_actions(&state, event_selection(scope), action.as_ref());
        for n in notes {
            summary.note(n);
        }
        let riders = riders(group, &plan, &actions);
        let groups = BTreeMap::from([(group.to_string(), pools)]);
        self.send(
            Outgoing {
                plan,
                actions,
                riders,
                hosts: hosts?,
            },
            &groups,
            state.read_at_ms,
            group,
            summary,
        )
        .await
    }

    /// A lifecycle action of an instance entering or leaving the warm pool without being
    /// in the group: no pool ever had it, so it is continued at once (a launch into the
    /// pool goes on to be stopped there).
    async fn warm_pool_action(
        &self,
        group: &str,
        action: EventAction,
        warm: WarmMove,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        summary.groups.push(group.to_string());
        if !self.config.manages(group) && self.config.proxy_group.as_deref() != Some(group) {
            summary.ignore(format!(
                "group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"
            ));
            return Ok(());
        }
        let Ok(instance) = MemberId::new(action.instance.as_str()) else {
            summary.ignore(format!("instance id {:?} is not usable", action.instance));
            return Ok(());
        };
        let r = ActionRef {
            group: group.to_string(),
            instance,
            transition: action.transition,
            hooks: vec![action.hook],
            token: action.token,
            started_ms: action.started_ms,
            pools: Vec::new(),
        };
        let why = match warm {
            WarmMove::IntoPool => "launched into the warm pool: it joins no pool until it leaves the warm pool for the group",
            _ => "leaves the warm pool: no pool has had it since it entered the warm pool",
        };
        self.complete(&r, &Decision::Continue(why.into()), summary)
            .await?;
        Ok(())
    }

    /// EC2 warned that an instance goes away (a Spot interruption in two minutes, or a
    /// rebalance recommendation the deployment drains on): it is marked on the instance
    /// (so nothing adds it back) and drained on every host at once, a Spot one with a
    /// deadline that ends the drain before EC2 reclaims it. Its terminate action, when
    /// Auto Scaling starts one, is completed as soon as the drain is done.
    async fn warning(
        &self,
        kind: Warning,
        instance: &str,
        time_ms: Option<u64>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        if kind == Warning::Rebalance && self.config.rebalance == Rebalance::Ignore {
            summary.ignore(format!(
                "rebalance recommendation for instance {instance}: REBALANCE is ignore (set REBALANCE=drain to drain on it)"
            ));
            return Ok(());
        }
        let Some(group) = self.discovery.group_of_instance(instance).await? else {
            summary.ignore(format!(
                "instance {instance} is in no Auto Scaling group: not a pool member"
            ));
            return Ok(());
        };
        tracing::Span::current().record("group", group.as_str());
        summary.groups.push(group.clone());
        if self.config.proxy_group.as_deref() == Some(group.as_str()) {
            summary.ignore(format!(
                "instance {instance} is a proxy host: its record follows its group's lifecycle events"
            ));
            return Ok(());
        }
        if !self.config.manages(&group) {
            summary.ignore(format!(
                "group {group} is not managed: POOLS does not name it and it matches no MANAGED_GROUPS entry"
            ));
            return Ok(());
        }
        let (state, hosts) = tokio::join!(
            self.discovery.group_for_event(&group, Some(instance)),
            self.dispatcher.hosts(&group)
        );
        let Some(mut state) = state? else {
            summary.ignore(format!("group {group} does not exist (any more)"));
            return Ok(());
        };
        let Some(pools) = resolve_pools(&group, &state.tags, self.config.pools.get(&group))? else {
            summary.ignore(format!(
                "group {group} feeds no pool: no haproxy:pool tag and not in POOLS"
            ));
            return Ok(());
        };
        let Some(member) = state.members.iter_mut().find(|m| m.id.as_str() == instance) else {
            summary.ignore(format!(
                "instance {instance} is no longer in group {group}: its own events removed it"
            ));
            return Ok(());
        };
        if let Some(earlier) = member.interrupted {
            summary.ignore(format!(
                "instance {instance} is already draining on an earlier warning (deadline {}): nothing more to do",
                earlier
                    .drain_by_ms
                    .map_or("the pool's drain timeout".to_string(), |t| format!("{t} ms"))
            ));
            return Ok(());
        }
        let interruption = Interruption {
            drain_by_ms: match kind {
                Warning::SpotInterruption => Some(time_ms.unwrap_or_else(now_ms).saturating_add(
                    u64::try_from(self.config.spot_drain_timeout.as_millis()).unwrap_or(u64::MAX),
                )),
                Warning::Rebalance => None,
            },
        };
        self.lifecycle
            .mark_interrupted(instance, &interruption)
            .await?;
        *member = member.clone().interrupt(interruption);
        tracing::info!(
            drain_by_ms = interruption.drain_by_ms,
            "instance marked interrupted; draining it on every host"
        );
        let scope = Scope::Instance(instance);
        let plan = plan_for_event(&pools, &state, scope);
        let (actions, _) = pending_actions(&state, event_selection(scope), None);
        let riders = riders(&group, &plan, &actions);
        let groups = BTreeMap::from([(group.clone(), pools)]);
        self.send(
            Outgoing {
                plan,
                actions,
                riders,
                hosts: hosts?,
            },
            &groups,
            state.read_at_ms,
            &group,
            summary,
        )
        .await
    }

    /// Sends the change with the actions it serves in its context, and returns: the
    /// command's status event completes them. A launch whose instance is already leaving
    /// is abandoned now; with no proxy host every action is continued now.
    async fn send(
        &self,
        out: Outgoing,
        groups: &BTreeMap<String, Vec<Pool>>,
        read_at_ms: u64,
        label: &str,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let Outgoing {
            plan,
            actions,
            riders,
            hosts,
        } = out;
        for id in &plan.unaddressed {
            summary.note(format!(
                "instance {id} has no private address yet; it is added later"
            ));
        }
        let mut refs = Vec::new();
        for (action, hooks) in self.targets(actions, summary).await? {
            let r = action_ref(&action, hooks, groups);
            if action.transition == Transition::Launch && action.phase == Phase::Leaving {
                let d = Decision::Abandon(format!(
                    "instance {} is leaving (EC2 state {}) before it finished launching",
                    action.instance,
                    action.ec2_state.as_deref().unwrap_or("unknown")
                ));
                self.complete(&r, &d, summary).await?;
                continue;
            }
            refs.push(r);
        }
        if plan.is_empty() {
            if refs.is_empty() {
                summary.note("nothing to change");
            }
            for r in &refs {
                self.record(r, &Decision::Wait("nothing could be sent for it yet (no address); a later event or the schedule sends it".into()), false, summary);
            }
            return Ok(());
        }
        let generation = self.generations.next(read_at_ms);
        tracing::Span::current().record("generation", generation);
        let change = plan.into_change(generation);
        let mut context = Context::new(generation, refs);
        context.riders = riders;
        let sent = self
            .dispatcher
            .send(&hosts, &change, &context, label)
            .await?;
        summary.dispatched_ms = Some(now_ms());
        summary.generation = Some(generation);
        summary.change = Some(change);
        summary.commands = sent.iter().map(|s| s.command_id.clone()).collect();
        if sent.is_empty() {
            for r in &context.actions {
                let d = decide(r, &[], now_ms(), self.drain_ms());
                self.complete(r, &d, summary).await?;
            }
            return Ok(());
        }
        let hosts: usize = sent.iter().map(|s| s.hosts.len()).sum();
        tracing::info!(
            generation,
            commands = sent.len(),
            hosts,
            actions = context.actions.len(),
            "change sent"
        );
        let waiting = format!(
            "sent to {hosts} host(s) in {}; completed when they have reported",
            summary.commands.join(", ")
        );
        for r in &context.actions {
            self.record(r, &Decision::Wait(waiting.clone()), false, summary);
        }
        Ok(())
    }

    /// A command ended: its hosts have reported; the actions it carries are decided
    /// from their reports.
    async fn command_ended(
        &self,
        command_id: &str,
        document: &str,
        status: &str,
        context: Option<&str>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        if document != self.config.ssm.document {
            summary.ignore(format!(
                "command {command_id} runs document {document:?}, not ours ({})",
                self.config.ssm.document
            ));
            return Ok(());
        }
        let context = match Context::decode(context.unwrap_or_default()) {
            Ok(Some(c)) if !c.actions.is_empty() || !c.riders.is_empty() => c,
            Ok(_) => {
                summary.ignore(format!(
                    "command {command_id} ({status}) carries no lifecycle action to complete"
                ));
                return Ok(());
            }
            Err(e) => {
                tracing::error!(command_id, error = %e, "a command of our document carries an unreadable context");
                summary.ignore(format!("command {command_id}: {e}"));
                return Ok(());
            }
        };
        tracing::Span::current().record("generation", context.generation);
        summary.generation = Some(context.generation);
        summary.commands = vec![command_id.to_string()];
        let hosts = self.dispatcher.results(command_id).await?;
        self.log_hosts(&hosts, context.generation, summary);
        let crossing: Vec<&ActionRef> = context
            .actions
            .iter()
            .filter(|r| converging_elsewhere(r, &hosts))
            .collect();
        let others = self
            .reports_of_other_commands(command_id, &crossing)
            .await?;
        let mut first_error = None;
        for r in &context.actions {
            let merged;
            let reports = match others.get(&(r.group.clone(), r.instance.clone(), r.transition)) {
                Some(o) => {
                    merged = merge_reports(r, &hosts, o);
                    &merged
                }
                None => &hosts,
            };
            let d = decide(r, reports, now_ms(), self.drain_ms());
            if let Err(e) = self.complete(r, &d, summary).await {
                tracing::error!(error = %e, instance = %r.instance, "lifecycle completion failed");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.complete_riders(&context, &hosts, summary).await {
            tracing::error!(error = %e, "completing the actions of drained riders failed");
            return Err(e);
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// For each of `actions` (reported pending or stale by some host: another change
    /// converges it there), the reports of the other ended commands that carried it.
    async fn reports_of_other_commands(
        &self,
        command_id: &str,
        actions: &[&ActionRef],
    ) -> Result<BTreeMap<(String, MemberId, Transition), Vec<Vec<HostResult>>>, ReactorError> {
        let mut out: BTreeMap<(String, MemberId, Transition), Vec<Vec<HostResult>>> =
            BTreeMap::new();
        if actions.is_empty() {
            return Ok(out);
        }
        let lookback = self.config.execution_timeout() + LOST_EVENT_LOOKBACK;
        let since =
            now_ms().saturating_sub(u64::try_from(lookback.as_millis()).unwrap_or(u64::MAX));
        let commands = self.dispatcher.commands(since).await?;
        for c in commands
            .iter()
            .filter(|c| c.finished && c.command_id != command_id)
        {
            let Some(ctx) = &c.context else { continue };
            let carried: Vec<&ActionRef> = actions
                .iter()
                .copied()
                .filter(|a| {
                    ctx.actions.iter().any(|r| {
                        r.group == a.group
                            && r.instance == a.instance
                            && r.transition == a.transition
                    })
                })
                .collect();
            if carried.is_empty() {
                continue;
            }
            let results = self.dispatcher.results(&c.command_id).await?;
            for a in carried {
                out.entry((a.group.clone(), a.instance.clone(), a.transition))
                    .or_default()
                    .push(results.clone());
            }
        }
        Ok(out)
    }

    /// The members a command drained without a lifecycle action of their own: one that
    /// has one now (Auto Scaling started terminating the interrupted instance while it
    /// drained) is decided from the command's reports. Only a decision is acted on; an
    /// action still waiting is left to its own change.
    async fn complete_riders(
        &self,
        context: &Context,
        hosts: &[HostResult],
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        if context.riders.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = context
            .riders
            .iter()
            .map(|r| r.group.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let riders: BTreeSet<&MemberId> = context.riders.iter().map(|r| &r.instance).collect();
        let mut found = Vec::new();
        let mut groups = BTreeMap::new();
        for state in self.discovery.groups(&names).await? {
            let Some(pools) =
                resolve_pools(&state.name, &state.tags, self.config.pools.get(&state.name))?
            else {
                continue;
            };
            let (actions, _) = pending_actions(&state, |m| riders.contains(&m.id), None);
            found.extend(actions);
            groups.insert(state.name.clone(), pools);
        }
        for (action, hooks) in self.targets(found, summary).await? {
            let r = action_ref(&action, hooks, &groups);
            let d = decide(&r, hosts, now_ms(), self.drain_ms());
            if d.result().is_some() {
                self.complete(&r, &d, summary).await?;
            }
        }
        Ok(())
    }

    /// Scheduled: heartbeats the actions whose commands still run, completes those whose
    /// command ended without its status event reaching us, sends every managed group's
    /// full membership with the actions left, and keeps the proxy fleet's records.
    async fn reconcile(&self, summary: &mut Summary) -> Result<(), ReactorError> {
        let mut names: BTreeSet<String> = self.config.pools.groups().map(str::to_string).collect();
        match self.discovery.tagged_groups().await {
            Ok(tagged) => {
                for g in tagged {
                    if self.config.manages(&g) {
                        names.insert(g);
                    } else if self.config.proxy_group.as_deref() != Some(g.as_str()) {
                        tracing::warn!(group = %g, "group carries haproxy:pool but is not managed; ignored");
                        summary.note(format!(
                            "group {g} carries the haproxy:pool tag but is not managed (POOLS does not name it, it matches no MANAGED_GROUPS entry): its instances are never added"
                        ));
                    }
                }
            }
            Err(e) => summary.note(format!(
                "could not list tagged groups ({e}); reconciling the configured ones"
            )),
        }
        if let Some(p) = &self.config.proxy_group {
            names.remove(p);
        }
        let names: Vec<String> = names.into_iter().collect();
        let states = self.discovery.groups(&names).await?;
        for n in &names {
            if !states.iter().any(|s| &s.name == n) {
                summary.note(format!("group {n} does not exist"));
            }
        }
        let mut first_error: Option<ReactorError> = None;
        let mut pool_changes = Vec::new();
        let mut unaddressed = Vec::new();
        let mut all_actions = Vec::new();
        let mut groups: BTreeMap<String, Vec<Pool>> = BTreeMap::new();
        let mut read_at = 0;
        for state in &states {
            let pools =
                match resolve_pools(&state.name, &state.tags, self.config.pools.get(&state.name)) {
                    Ok(Some(p)) => p,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(group = %state.name, error = %e, "group skipped");
                        summary.notes.push(e.to_string());
                        first_error.get_or_insert(ReactorError::Pools(e));
                        continue;
                    }
                };
            summary.groups.push(state.name.clone());
            read_at = read_at.max(state.read_at_ms);
            let plan = plan_group_change(&pools, state, |_| true);
            pool_changes.extend(plan.pools);
            unaddressed.extend(plan.unaddressed);
            let (actions, _) = pending_actions(state, |_| true, None);
            all_actions.extend(actions);
            groups.insert(state.name.clone(), pools);
        }
        let left = self.follow_commands(all_actions, summary).await?;
        let plan = PlannedChange {
            pools: merge_pool_changes(pool_changes),
            unaddressed,
        };
        if !groups.is_empty() {
            let hosts = self.dispatcher.hosts("(reconcile)").await?;
            self.send(
                Outgoing {
                    plan,
                    actions: left,
                    riders: Vec::new(),
                    hosts,
                },
                &groups,
                read_at,
                "(reconcile)",
                summary,
            )
            .await?;
        }
        if let Some(proxy) = self.config.proxy_group.clone() {
            summary.groups.push(proxy.clone());
            self.sync_dns(&proxy, summary).await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The schedule's look at recent commands: a pending action carried by a command
    /// still running gets a heartbeat (a drain may outlast the hook's heartbeat timeout);
    /// one carried by a command that ended is decided from its reports (its status event
    /// was lost). Returns the pending actions neither covers.
    async fn follow_commands(
        &self,
        pending: Vec<PendingAction>,
        summary: &mut Summary,
    ) -> Result<Vec<PendingAction>, ReactorError> {
        if pending.is_empty() {
            summary.pending = Some(PendingSummary::default());
            return Ok(pending);
        }
        let lookback = self.config.execution_timeout() + LOST_EVENT_LOOKBACK;
        let since =
            now_ms().saturating_sub(u64::try_from(lookback.as_millis()).unwrap_or(u64::MAX));
        let mut commands: Vec<CommandInfo> = self.dispatcher.commands(since).await?;
        // Newest first: a later command's reports are the truest.
        commands.sort_by_key(|c| std::cmp::Reverse(c.requested_ms));
        let key = |g: &str, i: &MemberId, t: Transition| (g.to_string(), i.to_string(), t);
        let mut left: BTreeMap<_, PendingAction> = pending
            .into_iter()
            .map(|a| (key(&a.group, &a.instance, a.transition), a))
            .collect();
        // The oldest pending action's age: when it started, or when a command first
        // carried it.
        let oldest = commands
            .iter()
            .filter_map(|c| Some((c, c.context.as_ref()?)))
            .flat_map(|(c, ctx)| {
                ctx.actions
                    .iter()
                    .map(move |r| (r, r.started_ms.unwrap_or(c.requested_ms)))
            })
            .filter(|(r, _)| left.contains_key(&key(&r.group, &r.instance, r.transition)))
            .map(|(_, t)| t)
            .min();
        summary.pending = Some(PendingSummary {
            actions: left.len(),
            max_age_s: oldest.map_or(0, |t| now_ms().saturating_sub(t) / 1000),
        });
        // Ended commands first: what their reports decide needs no heartbeat.
        for c in commands.iter().filter(|c| c.finished) {
            let Some(ctx) = &c.context else { continue };
            let carried: Vec<&ActionRef> = ctx
                .actions
                .iter()
                .filter(|r| left.contains_key(&key(&r.group, &r.instance, r.transition)))
                .collect();
            if carried.is_empty() {
                continue;
            }
            let hosts = self.dispatcher.results(&c.command_id).await?;
            for r in carried {
                let d = decide(r, &hosts, now_ms(), self.drain_ms());
                if d.result().is_some() {
                    summary.note(format!(
                        "command {} ended without its status event reaching the reactor; deciding {} {} from its reports",
                        c.command_id, r.transition, r.instance
                    ));
                    self.complete(r, &d, summary).await?;
                    left.remove(&key(&r.group, &r.instance, r.transition));
                }
            }
        }
        for c in commands.iter().filter(|c| !c.finished) {
            let Some(ctx) = &c.context else { continue };
            for r in &ctx.actions {
                if left
                    .remove(&key(&r.group, &r.instance, r.transition))
                    .is_some()
                {
                    self.heartbeat(r, summary).await;
                }
            }
        }
        Ok(left.into_values().collect())
    }

    async fn heartbeat(&self, r: &ActionRef, summary: &mut Summary) {
        for hook in &r.hooks {
            match self
                .lifecycle
                .heartbeat(&r.group, hook, r.instance.as_str(), r.token.as_deref())
                .await
            {
                Ok(Completion::Done) => {
                    tracing::info!(instance = %r.instance, hook, "lifecycle heartbeat recorded");
                    summary
                        .heartbeats
                        .push(format!("{} {}", r.transition, r.instance));
                }
                Ok(Completion::NotPending(m)) => {
                    tracing::info!(instance = %r.instance, hook, reason = %m, "no action to heartbeat")
                }
                Err(e) => {
                    tracing::warn!(instance = %r.instance, hook, error = %e, "lifecycle heartbeat failed")
                }
            }
        }
    }

    /// The lifecycle hook of ours that gated `transition` in a managed backend `group`,
    /// if it has one. An instance that finished that transition then went through the
    /// change the hook's event sent, and its action was completed from every host's
    /// report of it: re-sending the member would change nothing anywhere and cost a
    /// command on every host. The proxy group's events are never covered (they keep
    /// its DNS records); a failure to read the hooks answers `None`, so the event
    /// re-sends as it would without a hook.
    async fn gating_hook(&self, group: &str, transition: Transition) -> Option<String> {
        if self.config.proxy_group.as_deref() == Some(group) || !self.config.manages(group) {
            return None;
        }
        match self.lifecycle.hooks(group).await {
            Ok(hooks) => hooks
                .into_iter()
                .find(|h| h.transition == transition && self.config.owns_hook(&h.name))
                .map(|h| h.name),
            Err(e) => {
                tracing::warn!(error = %e, "reading the group's lifecycle hooks failed; re-sending its member");
                None
            }
        }
    }

    fn drain_ms(&self) -> u64 {
        u64::try_from(self.config.drain_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// The hooks each action is completed on (the event's hook, or the transition's hooks
    /// the reactor owns); actions waiting on no hook of ours are left alone.
    async fn targets(
        &self,
        actions: Vec<PendingAction>,
        summary: &mut Summary,
    ) -> Result<Vec<(PendingAction, Vec<String>)>, ReactorError> {
        let mut out = Vec::new();
        for action in actions {
            let names: Vec<String> = match &action.hook {
                Some(h) => vec![h.clone()],
                None => self
                    .lifecycle
                    .hooks(&action.group)
                    .await?
                    .iter()
                    .filter(|h| h.transition == action.transition && self.config.owns_hook(&h.name))
                    .map(|h| h.name.clone())
                    .collect(),
            };
            if names.is_empty() {
                summary.note(format!(
                    "instance {} of group {} waits on no {} hook of ours (LIFECYCLE_HOOKS); left alone",
                    action.instance, action.group, action.transition
                ));
                continue;
            }
            out.push((action, names));
        }
        Ok(out)
    }

    fn log_hosts(&self, hosts: &[HostResult], generation: u64, summary: &mut Summary) {
        for h in hosts {
            match &h.outcome {
                Ok(report) => {
                    self.generations.observe(report.generation);
                    for o in &report.outcomes {
                        tracing::info!(
                            host = %h.host,
                            pool = %o.pool,
                            instance = %o.member,
                            generation,
                            outcome = %o.status,
                            reason = o.reason.as_deref().unwrap_or(""),
                            ms = o.ms,
                            "member outcome"
                        );
                    }
                    summary.hosts.push(HostSummary {
                        host: h.host.clone(),
                        ok: true,
                        error: None,
                    });
                }
                Err(failure) => {
                    tracing::error!(host = %h.host, generation, reason = %failure, "host failed");
                    summary.hosts.push(HostSummary {
                        host: h.host.clone(),
                        ok: false,
                        error: Some(failure.to_string()),
                    });
                }
            }
        }
    }

    /// Completes (CONTINUE/ABANDON) or leaves (WAIT) an action, and says so.
    async fn complete(
        &self,
        r: &ActionRef,
        decision: &Decision,
        summary: &mut Summary,
    ) -> Result<(), AwsError> {
        let mut completed = false;
        let mut result = Ok(());
        if let Some(res) = decision.result() {
            for hook in &r.hooks {
                match self
                    .lifecycle
                    .complete(&r.group, hook, r.instance.as_str(), r.token.as_deref(), res)
                    .await
                {
                    Ok(Completion::Done) => completed = true,
                    Ok(Completion::NotPending(m)) => {
                        tracing::info!(instance = %r.instance, hook, reason = %m, "action no longer pending")
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        self.record(r, decision, completed, summary);
        result
    }

    fn record(&self, r: &ActionRef, decision: &Decision, completed: bool, summary: &mut Summary) {
        for pool in &r.pools {
            tracing::info!(
                pool = %pool,
                instance = %r.instance,
                transition = %r.transition,
                outcome = decision.label(),
                reason = decision.reason(),
                completed,
                "lifecycle decision"
            );
        }
        summary.actions.push(ActionSummary {
            group: r.group.clone(),
            instance: r.instance.to_string(),
            transition: r.transition.to_string(),
            decision: decision.label().to_string(),
            reason: decision.reason().to_string(),
            completed,
        });
    }

    /// The proxy fleet's own group changed: records in step, its own lifecycle action
    /// (if any) continued once the records are right.
    async fn proxy_fleet_event(
        &self,
        group: &str,
        action: Option<EventAction>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        self.sync_dns(group, summary).await?;
        if let Some(a) = action {
            let reason = match a.transition {
                Transition::Launch => {
                    "proxy instance: its agent syncs at boot; it gets a record once in service"
                }
                Transition::Terminate => "proxy instance: its record is removed",
            };
            let Ok(instance) = MemberId::new(&a.instance) else {
                return Ok(());
            };
            let r = ActionRef {
                group: group.to_string(),
                instance,
                transition: a.transition,
                hooks: vec![a.hook],
                token: a.token,
                started_ms: a.started_ms,
                pools: Vec::new(),
            };
            self.complete(&r, &Decision::Continue(reason.into()), summary)
                .await?;
        }
        Ok(())
    }

    /// Brings the fleet's Route 53 records to one per in-service proxy.
    async fn sync_dns(&self, group: &str, summary: &mut Summary) -> Result<(), ReactorError> {
        let (Some(dns), Some(conf)) = (&self.dns, &self.config.dns) else {
            return Ok(());
        };
        let Some(state) = self.discovery.group(group).await? else {
            summary.note(format!(
                "proxy group {group} does not exist; DNS records left as they are"
            ));
            return Ok(());
        };
        let proxies = proxy_addresses(&state);
        let existing = dns.list(&conf.zone_id, &conf.record_name).await?;
        let changes = plan_records(&existing, &proxies, conf.ttl);
        let mut done = DnsSummary::default();
        for c in &changes {
            match c {
                RecordChange::Upsert(_) => done.upserts += 1,
                RecordChange::Delete(_) => done.deletes += 1,
            }
        }
        for batch in batch_changes(changes) {
            dns.change(&conf.zone_id, &conf.record_name, &batch).await?;
            done.requests += 1;
        }
        tracing::info!(
            group,
            proxies = proxies.len(),
            upserts = done.upserts,
            deletes = done.deletes,
            "proxy records in step"
        );
        summary.dns = Some(done);
        Ok(())
    }
}

/// The members `plan` drains that no pending action covers (see [`Context::riders`]).
fn riders(group: &str, plan: &PlannedChange, actions: &[PendingAction]) -> Vec<Rider> {
    let covered: BTreeSet<&MemberId> = actions.iter().map(|a| &a.instance).collect();
    plan.pools
        .iter()
        .flat_map(|p| p.remove.iter())
        .filter(|id| !covered.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|id| Rider {
            group: group.to_string(),
            instance: id.clone(),
        })
        .collect()
}

/// What the status event of a change needs about one of its actions.
fn action_ref(
    a: &PendingAction,
    hooks: Vec<String>,
    groups: &BTreeMap<String, Vec<Pool>>,
) -> ActionRef {
    ActionRef {
        group: a.group.clone(),
        instance: a.instance.clone(),
        transition: a.transition,
        hooks,
        token: a.token.clone(),
        started_ms: a.started_ms,
        pools: groups
            .get(&a.group)
            .map(|p| p.iter().map(|p| p.name.clone()).collect::<Vec<PoolName>>())
            .unwrap_or_default(),
    }
}

/// The in-service proxies with an address: instance id -> private address.
pub fn proxy_addresses(state: &GroupState) -> Vec<(String, std::net::IpAddr)> {
    state
        .members
        .iter()
        .filter(|m| m.phase == Phase::Serving)
        .filter_map(|m| Some((m.id.to_string(), m.address?)))
        .collect()
}

#[cfg(test)]
#[path = "reactor_tests.rs"]
mod tests;
