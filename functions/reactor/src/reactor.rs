//! The reactor: one event in, the change out to every host, lifecycle actions completed.
//!
//! Generic over its four boundaries ([`Discovery`], [`Dispatcher`], [`LifecycleApi`],
//! [`DnsApi`]) so the whole flow runs against fakes in unit tests and against AWS (or
//! the emulator) in the Lambda.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use infra::aws::{
    now_ms, plan_group_change, resolve_pools, AwsError, Discovery, Generations, GroupState, Phase,
    PlannedChange,
};
use infra::{Pool, PoolName};
use serde::Serialize;
use serde_json::Value;
use tracing::{field, Instrument};

use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher, HostResult};
use crate::dns::{batch_changes, plan_records, DnsApi, DnsError, RecordChange};
use crate::event::{classify, Classified, Transition};
use crate::lifecycle::{Completion, LifecycleApi};
use crate::plan::{
    decide, event_selection, merge_pool_changes, pending_actions, plan_for_event, Decision,
    EventAction, PendingAction, Scope,
};

/// Why an invocation failed (after retries). Unknown or malformed events are not
/// errors: they are acknowledged and logged.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// Reading a group or completing an action failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A group's tags name pools or ports that can not be used.
    #[error(transparent)]
    Pools(#[from] infra::aws::GroupPoolsError),
    /// The change could not be sent.
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

/// One lifecycle action's fate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActionSummary {
    /// The group.
    pub group: String,
    /// The instance.
    pub instance: String,
    /// `launch` or `terminate`.
    pub transition: String,
    /// `CONTINUE`, `ABANDON` or `WAIT`.
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
    /// Every host's answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSummary>,
    /// Lifecycle actions decided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionSummary>,
    /// Route 53 work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSummary>,
    /// Anything else worth knowing (late events, members without address...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Summary {
    fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        tracing::info!(note = %s);
        self.notes.push(s);
    }
}

/// How long before the Lambda deadline the reactor stops waiting, to leave time to
/// complete actions and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// A pending action with the hooks it is completed on.
struct Target {
    action: PendingAction,
    pools: Vec<PoolName>,
    hooks: Vec<String>,
    heartbeat: Duration,
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

    /// Handles one event, stopping its waits at `deadline`.
    pub async fn handle(&self, event: &Value, deadline: Instant) -> Result<Summary, ReactorError> {
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
            ..Summary::default()
        };
        let result = self
            .dispatch_event(classified, deadline, &mut summary)
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
        result.map(|()| summary)
    }

    async fn dispatch_event(
        &self,
        classified: Classified,
        deadline: Instant,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let span = tracing::Span::current();
        match classified {
            Classified::Ignored { reason } => {
                tracing::warn!(reason = %reason, "event ignored");
                summary.ignored = Some(reason);
                Ok(())
            }
            Classified::Reconcile => self.reconcile(deadline, summary).await,
            Classified::LifecycleAction {
                transition,
                group,
                instance,
                hook,
                token,
                started_ms,
            } => {
                span.record("group", group.as_str());
                span.record("instance", instance.as_str());
                if !self.config.owns_hook(&hook) {
                    let reason = format!(
                        "hook {hook} of group {group} is not one of LIFECYCLE_HOOKS: \
                         left to the system that owns it"
                    );
                    tracing::info!(reason = %reason, "event ignored");
                    summary.ignored = Some(reason);
                    return Ok(());
                }
                let action = EventAction {
                    transition,
                    instance: instance.clone(),
                    hook,
                    token,
                    started_ms,
                };
                self.group_event(&group, Some(&instance), Some(action), deadline, summary)
                    .await
            }
            Classified::Activity {
                group, instance, ..
            } => {
                span.record("group", group.as_str());
                if let Some(i) = &instance {
                    span.record("instance", i.as_str());
                }
                self.group_event(&group, instance.as_deref(), None, deadline, summary)
                    .await
            }
            Classified::Ec2State { instance, state } => {
                span.record("instance", instance.as_str());
                match self.discovery.group_of_instance(&instance).await? {
                    None => {
                        let reason = format!(
                            "instance {instance} (now {state}) is in no Auto Scaling group"
                        );
                        tracing::info!(reason = %reason, "event ignored");
                        summary.ignored = Some(reason);
                        Ok(())
                    }
                    Some(group) => {
                        span.record("group", group.as_str());
                        self.group_event(&group, Some(&instance), None, deadline, summary)
                            .await
                    }
                }
            }
        }
    }

    /// An event about `group` (and maybe one of its instances).
    async fn group_event(
        &self,
        group: &str,
        instance: Option<&str>,
        action: Option<EventAction>,
        deadline: Instant,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        summary.groups.push(group.to_string());
        if self.config.proxy_group.as_deref() == Some(group) {
            return self.proxy_fleet_event(group, action, summary).await;
        }
        let Some(state) = self.discovery.group_for_event(group, instance).await? else {
            let reason = format!("group {group} does not exist (any more)");
            tracing::warn!(reason = %reason, "event ignored");
            summary.ignored = Some(reason);
            return Ok(());
        };
        let Some(pools) = resolve_pools(group, &state.tags, self.config.pools.get(group))? else {
            let reason =
                format!("group {group} is not managed: no haproxy:pool tag and not in POOLS");
            tracing::info!(reason = %reason, "event ignored");
            summary.ignored = Some(reason);
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
        let mut groups = BTreeMap::new();
        groups.insert(group.to_string(), pools);
        self.apply_and_complete(
            plan,
            actions,
            &groups,
            state.read_at_ms,
            group,
            deadline,
            summary,
        )
        .await
    }

    /// Scheduled: every managed group fully, pending actions completed, DNS in step.
    async fn reconcile(
        &self,
        deadline: Instant,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        let mut names: BTreeSet<String> = self.config.pools.groups().map(str::to_string).collect();
        match self.discovery.tagged_groups().await {
            Ok(tagged) => names.extend(tagged),
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
        let plan = PlannedChange {
            pools: merge_pool_changes(pool_changes),
            unaddressed,
        };
        if !groups.is_empty() {
            self.apply_and_complete(
                plan,
                all_actions,
                &groups,
                read_at,
                "(reconcile)",
                deadline,
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

    /// Sends the change, waits for every host (heartbeating pending actions), decides
    /// and completes the actions.
    #[allow(clippy::too_many_arguments)]
    async fn apply_and_complete(
        &self,
        plan: PlannedChange,
        actions: Vec<PendingAction>,
        groups: &BTreeMap<String, Vec<Pool>>,
        read_at_ms: u64,
        label: &str,
        deadline: Instant,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        for id in &plan.unaddressed {
            summary.note(format!(
                "instance {id} has no private address yet; it is added later"
            ));
        }
        if plan.is_empty() && actions.is_empty() {
            summary.note("nothing to change");
            return Ok(());
        }
        let targets = self.targets(actions, groups, summary).await?;
        let hosts = if plan.is_empty() {
            None
        } else {
            let generation = self.generations.next(read_at_ms);
            tracing::Span::current().record("generation", generation);
            let change = plan.into_change(generation);
            summary.generation = Some(generation);
            summary.change = Some(change.clone());
            let wait =
                self.config.health_timeout.max(self.config.drain_timeout) + Duration::from_secs(30);
            let until = deadline.min(Instant::now() + wait);
            let started = Instant::now();
            let hosts = tokio::select! {
                r = self.dispatcher.dispatch(&change, label, until) => r?,
                never = self.heartbeats(&targets) => match never {},
            };
            tracing::info!(
                generation,
                hosts = hosts.len(),
                ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "change applied"
            );
            self.log_hosts(&hosts, generation, summary);
            Some(hosts)
        };
        let mut first_error = None;
        for t in &targets {
            let decision = match &hosts {
                Some(h) => decide(
                    &t.action,
                    &t.pools,
                    h,
                    now_ms(),
                    u64::try_from(self.config.drain_timeout.as_millis()).unwrap_or(u64::MAX),
                ),
                None => Decision::Wait(format!(
                    "instance {} could not be sent to the hosts (no address yet)",
                    t.action.instance
                )),
            };
            if let Err(e) = self.complete(t, &decision, summary).await {
                tracing::error!(error = %e, instance = %t.action.instance, "lifecycle completion failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The hooks each action is completed on.
    async fn targets(
        &self,
        actions: Vec<PendingAction>,
        groups: &BTreeMap<String, Vec<Pool>>,
        summary: &mut Summary,
    ) -> Result<Vec<Target>, ReactorError> {
        let mut out = Vec::new();
        for action in actions {
            let hooks = self.lifecycle.hooks(&action.group).await?;
            let of_transition: Vec<_> = hooks
                .iter()
                .filter(|h| h.transition == action.transition)
                .collect();
            let names: Vec<String> = match &action.hook {
                Some(h) => vec![h.clone()],
                None => of_transition
                    .iter()
                    .filter(|h| self.config.owns_hook(&h.name))
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
            let heartbeat = of_transition
                .iter()
                .filter(|h| names.contains(&h.name))
                .map(|h| h.heartbeat_timeout)
                .min()
                .unwrap_or(Duration::from_secs(3600));
            let pools = groups
                .get(&action.group)
                .map(|p| p.iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default();
            out.push(Target {
                action,
                pools,
                hooks: names,
                heartbeat,
            });
        }
        Ok(out)
    }

    /// Keeps the pending actions alive while hosts work: a heartbeat every half
    /// heartbeat timeout. Never returns (it is raced against the dispatch).
    async fn heartbeats(&self, targets: &[Target]) -> Infallible {
        let interval = targets
            .iter()
            .map(|t| t.heartbeat / 2)
            .min()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(interval).await;
            for t in targets {
                for hook in &t.hooks {
                    let r = self
                        .lifecycle
                        .heartbeat(
                            &t.action.group,
                            hook,
                            t.action.instance.as_str(),
                            t.action.token.as_deref(),
                        )
                        .await;
                    match r {
                        Ok(Completion::Done) => {
                            tracing::info!(instance = %t.action.instance, hook, "lifecycle heartbeat recorded")
                        }
                        Ok(Completion::NotPending(m)) => {
                            tracing::info!(instance = %t.action.instance, hook, reason = %m, "no action to heartbeat")
                        }
                        Err(e) => {
                            tracing::warn!(instance = %t.action.instance, hook, error = %e, "lifecycle heartbeat failed")
                        }
                    }
                }
            }
        }
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
                Err(reason) => {
                    tracing::error!(host = %h.host, generation, reason = %reason, "host failed");
                    summary.hosts.push(HostSummary {
                        host: h.host.clone(),
                        ok: false,
                        error: Some(reason.clone()),
                    });
                }
            }
        }
    }

    async fn complete(
        &self,
        t: &Target,
        decision: &Decision,
        summary: &mut Summary,
    ) -> Result<(), AwsError> {
        let a = &t.action;
        let mut completed = false;
        let mut result = Ok(());
        if let Some(r) = decision.result() {
            for hook in &t.hooks {
                match self
                    .lifecycle
                    .complete(&a.group, hook, a.instance.as_str(), a.token.as_deref(), r)
                    .await
                {
                    Ok(Completion::Done) => completed = true,
                    Ok(Completion::NotPending(m)) => {
                        tracing::info!(instance = %a.instance, hook, reason = %m, "action no longer pending")
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        for pool in &t.pools {
            tracing::info!(
                pool = %pool,
                instance = %a.instance,
                transition = %a.transition,
                outcome = decision.label(),
                reason = decision.reason(),
                completed,
                "lifecycle decision"
            );
        }
        summary.actions.push(ActionSummary {
            group: a.group.clone(),
            instance: a.instance.to_string(),
            transition: a.transition.to_string(),
            decision: decision.label().to_string(),
            reason: decision.reason().to_string(),
            completed,
        });
        result
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
            let Ok(instance) = infra::MemberId::new(&a.instance) else {
                return Ok(());
            };
            let target = Target {
                action: PendingAction {
                    group: group.to_string(),
                    instance,
                    transition: a.transition,
                    phase: Phase::Joining,
                    ec2_state: None,
                    hook: Some(a.hook.clone()),
                    token: a.token.clone(),
                    started_ms: a.started_ms,
                },
                pools: Vec::new(),
                hooks: vec![a.hook],
                heartbeat: Duration::from_secs(3600),
            };
            self.complete(&target, &Decision::Continue(reason.into()), summary)
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
