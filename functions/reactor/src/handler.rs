//! The handler: the [`Reactor`] and one invocation of it. A batch of the inbox in
//! (EventBridge events and host reports), changes out to every proxy host, lifecycle
//! actions completed from the ledger. No invocation waits for a host: a change is sent
//! and the invocation returns; the hosts' reports come back as messages, and the one
//! that completes an action's picture decides it.
//!
//! Generic over its boundaries ([`Boundaries`]: discovery, dispatch, lifecycle API,
//! DNS, ledger) so the whole flow runs against fakes in unit tests and against AWS (or
//! the emulator) in the Lambda. What each kind of input does is in [`crate::input`];
//! sending a change is [`crate::outgoing`], deciding and completing actions
//! [`crate::decide`], the proxy fleet's own events [`crate::fleet`].

use std::collections::BTreeMap;

use infra::aws::{resolve_pools, AwsError, Discovery, Generations, GroupState};
use infra::GroupName;
use infra::HostId;
use infra::Pool;
use serde_json::Value;
use tracing::Instrument;

use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher};
use crate::dns::{DnsApi, DnsError};
use crate::inbox::{self, Record};
use crate::input::activity::ActivityEvent;
use crate::input::lifecycle::LifecycleWork;
use crate::input::report::HostMessage;
use crate::input::{classify, Input};
use crate::ledger::ActionKey;
use crate::ledger::{Ledger, LedgerError};
use crate::lifecycle::LifecycleApi;
use crate::remind::Reminders;
use crate::summary::Summary;

/// The reactor's boundaries with the world, as one set of types.
pub trait Boundaries: 'static {
    /// Reads groups and members.
    type Discovery: Discovery;
    /// Sends changes to the proxies.
    type Dispatcher: Dispatcher;
    /// Completes and heartbeats lifecycle actions.
    type Lifecycle: LifecycleApi;
    /// The proxy fleet's DNS records.
    type Dns: DnsApi;
    /// The lifecycle ledger.
    type Ledger: Ledger;
    /// Reminders through the inbox.
    type Reminders: Reminders;
}

/// The boundaries a reactor is built from.
pub struct Parts<B: Boundaries> {
    /// Discovery.
    pub discovery: B::Discovery,
    /// Dispatch.
    pub dispatcher: B::Dispatcher,
    /// Lifecycle API.
    pub lifecycle: B::Lifecycle,
    /// DNS, when configured.
    pub dns: Option<B::Dns>,
    /// The ledger.
    pub ledger: B::Ledger,
    /// Reminders.
    pub reminders: B::Reminders,
}

/// Why an input could not be handled (after retries). Unknown, malformed or forged
/// inputs are not errors: they are acknowledged and logged.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// Reading a group or completing an action failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The change could not be sent.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// The proxy fleet's records could not be updated.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The ledger could not be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What the inputs of one batch share: the proxy hosts, listed once.
#[derive(Default)]
pub(crate) struct Batch {
    hosts: tokio::sync::OnceCell<Vec<HostId>>,
}

impl Batch {
    /// The proxies in service (listed at the first call).
    pub(crate) async fn hosts<P: Dispatcher>(
        &self,
        dispatcher: &P,
    ) -> Result<Vec<HostId>, DispatchError> {
        self.hosts
            .get_or_try_init(|| dispatcher.hosts())
            .await
            .cloned()
    }

    /// Whether the proxies were listed already.
    pub(crate) fn has_hosts(&self) -> bool {
        self.hosts.initialized()
    }

    /// The proxies in service, among `in_service` (the proxy group's in-service
    /// instances as the caller read them) when not listed yet.
    pub(crate) async fn hosts_among<P: Dispatcher>(
        &self,
        dispatcher: &P,
        in_service: Vec<String>,
    ) -> Result<Vec<HostId>, DispatchError> {
        self.hosts
            .get_or_try_init(|| dispatcher.hosts_among(in_service))
            .await
            .cloned()
    }
}

/// What one invocation did and what it answers.
#[derive(Debug)]
pub struct Invocation {
    /// What was done.
    pub summary: Summary,
    /// The answer: the records to retry for a batch, the summary for a bare event.
    pub response: Value,
    /// A bare event's failure (a batch's failures are in its answer).
    pub result: Result<(), ReactorError>,
}

/// The units of work a batch holds, with the records each came from.
#[derive(Default)]
struct Work {
    lifecycle: LifecycleWork,
    activity: BTreeMap<GroupName, (Vec<String>, Vec<ActivityEvent>)>,
    singles: Vec<(String, Input)>,
    reports: (Vec<String>, Vec<HostMessage>),
    rechecks: (Vec<String>, Vec<ActionKey>),
    health: (Vec<String>, Vec<infra::MemberId>),
    schedule: Vec<String>,
}

impl Work {
    fn add(&mut self, id: String, input: Input, summary: &mut Summary) {
        match input {
            Input::Lifecycle(e) => {
                let unit = self.lifecycle.entry(e.group.clone()).or_default();
                unit.0.push(id);
                unit.1.push(e);
            }
            Input::Activity(e) => {
                let unit = self.activity.entry(e.group.clone()).or_default();
                unit.0.push(id);
                unit.1.push(e);
            }
            Input::Report(m) => {
                self.reports.0.push(id);
                self.reports.1.push(m);
            }
            Input::Recheck(keys) => {
                self.rechecks.0.push(id);
                self.rechecks.1.extend(keys);
            }
            Input::HealthRecheck(members) => {
                self.health.0.push(id);
                self.health.1.extend(members);
            }
            Input::Schedule => self.schedule.push(id),
            Input::Ignored(reason) => summary.ignore(reason),
            other => self.singles.push((id, other)),
        }
    }
}

/// The reactor with its boundaries.
pub struct Reactor<B: Boundaries> {
    pub(crate) config: Config,
    pub(crate) discovery: B::Discovery,
    pub(crate) dispatcher: B::Dispatcher,
    pub(crate) lifecycle: B::Lifecycle,
    pub(crate) dns: Option<B::Dns>,
    pub(crate) ledger: B::Ledger,
    pub(crate) reminders: B::Reminders,
    pub(crate) generations: Generations,
}

impl<B: Boundaries> Reactor<B> {
    /// The pools `state`'s group feeds: those the configuration allows it, narrowed by
    /// its tags (refused tags noted); `None` when the group is not managed.
    pub(crate) fn pools_of(&self, state: &GroupState, summary: &mut Summary) -> Option<Vec<Pool>> {
        let allowed = self.config.allowed(&state.name)?;
        let r = resolve_pools(&state.name, &state.tags, allowed);
        for t in &r.refused {
            summary.tag_refused(t);
        }
        Some(r.pools)
    }

    /// Builds the reactor (once per cold start).
    pub fn new(config: Config, parts: Parts<B>) -> Self {
        Self {
            config,
            discovery: parts.discovery,
            dispatcher: parts.dispatcher,
            lifecycle: parts.lifecycle,
            dns: parts.dns,
            ledger: parts.ledger,
            reminders: parts.reminders,
            generations: Generations::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The dispatcher (the benchmarks read its timings).
    pub fn dispatcher(&self) -> &B::Dispatcher {
        &self.dispatcher
    }

    /// The ledger.
    pub fn ledger(&self) -> &B::Ledger {
        &self.ledger
    }

    /// Handles one invocation: a batch of the inbox (the answer names the records to
    /// retry: `ReportBatchItemFailures`), or one EventBridge event sent directly.
    pub async fn invoke(&self, payload: &Value) -> Invocation {
        match inbox::records(payload, &self.config.proxy_role_id) {
            Some(records) => {
                let (summary, _) = self.run(records).await;
                let response = inbox::batch_response(&summary.failed);
                Invocation {
                    summary,
                    response,
                    result: Ok(()),
                }
            }
            None => {
                let record = Record {
                    id: String::new(),
                    input: classify(payload),
                    forged: None,
                };
                let (summary, result) = self.run(vec![record]).await;
                let response = serde_json::to_value(&summary).unwrap_or_default();
                Invocation {
                    summary,
                    response,
                    result,
                }
            }
        }
    }

    /// Handles one EventBridge event sent directly (tests, operators).
    pub async fn handle(&self, event: &Value) -> Result<Summary, ReactorError> {
        let i = self.invoke(event).await;
        i.result.map(|()| i.summary)
    }

    /// Handles records: events about one group together (one read, one change), the
    /// reports together (one pass over the ledger), the schedule once. Returns what was
    /// done (with the records to retry) and the first error.
    async fn run(&self, records: Vec<Record>) -> (Summary, Result<(), ReactorError>) {
        let span = tracing::info_span!("batch", records = records.len());
        async move {
            let mut summary = Summary::default();
            let mut work = Work::default();
            for r in records {
                *summary.inputs.entry(r.input.kind().to_string()).or_default() += 1;
                if let Some(why) = &r.forged {
                    tracing::warn!(record = %r.id, reason = %why, "forged input refused");
                    summary.reports.forged += 1;
                }
                work.add(r.id, r.input, &mut summary);
            }
            let batch = Batch::default();
            let mut first_error = None;
            let mut failed = |ids: &[String], e: ReactorError, summary: &mut Summary| {
                tracing::error!(error = %e, records = ids.len(), "input failed; its records are retried");
                summary.failed.extend(ids.iter().cloned());
                summary.errors.push(e.to_string());
                first_error.get_or_insert(e);
            };
            for (ids, e) in self.lifecycle_events(&batch, work.lifecycle, &mut summary).await {
                failed(&ids, e, &mut summary);
            }
            for (id, input) in work.singles {
                if let Err(e) = self.single(&batch, input, &mut summary).await {
                    failed(&[id], e, &mut summary);
                }
            }
            for (group, (ids, events)) in work.activity {
                let span = tracing::info_span!("activity", group = %group, generation = tracing::field::Empty);
                if let Err(e) = self.activity_events(&batch, &group, events, &mut summary).instrument(span).await {
                    failed(&ids, e, &mut summary);
                }
            }
            // Reports and reminders in one pass (one read and one write of the ledger).
            let (mut ids, reports) = work.reports;
            let (recheck_ids, rechecks) = work.rechecks;
            if !reports.is_empty() || !rechecks.is_empty() {
                ids.extend(recheck_ids);
                if let Err(e) = self.host_reports(&batch, reports, rechecks, &mut summary).await {
                    failed(&ids, e, &mut summary);
                }
            }
            let (ids, members) = work.health;
            if !members.is_empty() {
                if let Err(e) = self.judge_health(&batch, &members, &mut summary).await {
                    failed(&ids, e, &mut summary);
                }
            }
            if !work.schedule.is_empty() {
                let span = tracing::info_span!("reconcile", generation = tracing::field::Empty);
                if let Err(e) = self.reconcile(&batch, &mut summary).instrument(span).await {
                    failed(&work.schedule, e, &mut summary);
                }
            }
            let line = serde_json::to_string(&summary).unwrap_or_default();
            match &first_error {
                None => tracing::info!(summary = %line, "batch handled"),
                Some(e) => tracing::error!(error = %e, summary = %line, "batch handled with failures"),
            }
            (summary, first_error.map_or(Ok(()), Err))
        }
        .instrument(span)
        .await
    }

    /// An input handled on its own: a warning, an EC2 state change.
    async fn single(
        &self,
        batch: &Batch,
        input: Input,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        match input {
            Input::Warning(w) => {
                let span = tracing::info_span!("warning", instance = %w.instance, group = tracing::field::Empty, generation = tracing::field::Empty);
                self.warning(batch, w, summary).instrument(span).await
            }
            Input::Ec2State(s) => {
                let span = tracing::info_span!("ec2-state", instance = %s.instance, group = tracing::field::Empty, generation = tracing::field::Empty);
                self.ec2_state(batch, s, summary).instrument(span).await
            }
            other => {
                summary.ignore(format!(
                    "{} handled on its own: nothing to do",
                    other.kind()
                ));
                Ok(())
            }
        }
    }

    /// The pools' timeouts as the ledger counts them.
    pub(crate) fn timing(&self) -> crate::ledger::Timing {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        crate::ledger::Timing {
            health_ms: ms(self.config.health_timeout),
            drain_ms: ms(self.config.drain_timeout),
            host_report_ms: ms(self.config.host_report_timeout),
        }
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
