//! The proxy fleet's own group (`PROXY_GROUP`): its Route 53 records (one value per
//! proxy in service), its own lifecycle actions (continued once the records are
//! right: a proxy gates nothing), and the proxies that leave service, which are removed
//! from every open action's quorum (their reports will never come).

use infra::aws::{Discovery, GroupState, Phase};
use infra::now_ms;
use infra::GroupName;
use infra::{HostId, MemberId};

use crate::dns::{batch_changes, plan_records, DnsApi, RecordChange};
use crate::handler::{Boundaries, Reactor, ReactorError};
use crate::input::activity::{Activity, ActivityEvent};
use crate::input::lifecycle::LifecycleEvent;
use crate::ledger::{self, ActionKey, Item, Ledger, Opening, Verdict};
use crate::lifecycle::Transition;
use crate::summary::{DnsSummary, Summary};

impl<B: Boundaries> Reactor<B> {
    /// The proxy group's lifecycle actions: records in step, each action continued; a
    /// proxy terminating leaves every open quorum.
    pub(crate) async fn proxy_lifecycle(
        &self,
        group: &GroupName,
        events: Vec<LifecycleEvent>,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        self.sync_dns(group, summary).await?;
        let leaving: Vec<HostId> = events
            .iter()
            .filter(|e| e.transition == Transition::Terminate)
            .filter_map(|e| HostId::new(e.instance.as_str()).ok())
            .collect();
        self.proxies_left(&leaving, summary).await?;
        for e in events {
            if !self.config.owns_hook(&e.hook) {
                continue;
            }
            let Ok(instance) = MemberId::new(e.instance.as_str()) else {
                continue;
            };
            let reason = match e.transition {
                Transition::Launch => {
                    "proxy instance: its agent syncs at boot; it gets a record once in service"
                }
                Transition::Terminate => "proxy instance: its record is removed",
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
            self.complete_at_once(opening, Verdict::Continue, reason, false, summary)
                .await?;
        }
        Ok(())
    }

    /// The proxy group's activities: records in step; proxies terminated or detached
    /// leave every open quorum.
    pub(crate) async fn proxy_activity(
        &self,
        group: &GroupName,
        events: &[ActivityEvent],
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        self.sync_dns(group, summary).await?;
        let gone: Vec<HostId> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.activity,
                    Activity::TerminateSuccessful | Activity::DetachSuccessful
                )
            })
            .filter_map(|e| e.instance.as_deref())
            .filter_map(|i| HostId::new(i).ok())
            .collect();
        self.proxies_left(&gone, summary).await
    }

    /// Removes `hosts` from the quorum of every open action, and decides what that
    /// completes.
    pub(crate) async fn proxies_left(
        &self,
        hosts: &[HostId],
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
        if hosts.is_empty() {
            return Ok(());
        }
        let open = self.ledger.open().await?;
        let keys: Vec<ActionKey> = open
            .iter()
            .filter(|i| hosts.iter().any(|h| i.hosts.contains_key(h)))
            .map(Item::key)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let by = ledger::claim_id();
        let now = now_ms();
        let items = ledger::update(&self.ledger, &keys, |_, item| {
            let mut item = item.filter(Item::is_open)?;
            for h in hosts {
                item.remove_host(h, "the proxy left service");
            }
            item.claim(&by, now);
            Some(item)
        })
        .await?;
        for item in &items {
            for h in hosts.iter().filter(|h| item.hosts.contains_key(*h)) {
                summary
                    .reports
                    .hosts_dropped
                    .push(format!("{h} {} (the proxy left service)", item.key()));
            }
        }
        tracing::info!(
            proxies = hosts.len(),
            actions = items.len(),
            at_ms = now,
            "proxies that left service removed from the open actions"
        );
        self.decide_items(&items, &by, false, summary).await
    }

    /// Brings the fleet's Route 53 records to one per in-service proxy.
    pub(crate) async fn sync_dns(
        &self,
        group: &GroupName,
        summary: &mut Summary,
    ) -> Result<(), ReactorError> {
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
            group = %group,
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
