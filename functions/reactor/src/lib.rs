//! The reactor Lambda: what reaches its inbox (Auto Scaling and EC2 events, the
//! schedule, the proxies' reports) in; HAProxy backend changes out to every proxy host;
//! lifecycle actions completed from a ledger of what the hosts reported; the proxy
//! fleet's DNS records kept in step.
//!
//! - [`inbox`]: the SQS batch Lambda delivers, read record by record (who sent what),
//!   and the answer naming the records to retry (pure).
//! - [`input`]: one file per kind of input, each opening with AWS's own sample of it:
//!   how it is read (pure) and what the reactor does with it.
//! - [`group_change`]: from a group's truth to the change for its pools (pure).
//! - [`plan`]: which members a change covers and which lifecycle actions it serves
//!   (pure).
//! - [`ledger`]: one item per lifecycle action: the hosts it waits for, what each
//!   reported, the decision ([`ledger::Item`], pure); the [`ledger::Ledger`] boundary
//!   and its DynamoDB adapter.
//! - [`dispatch`]: the [`Dispatcher`](dispatch::Dispatcher) boundary and SSM Run
//!   Command to the proxies.
//! - [`lifecycle`]: completing and heartbeating lifecycle actions.
//! - [`dns`]: the proxy fleet's Route 53 records (planning and batching pure).
//! - [`fleet`]: the proxy fleet's own events.
//! - [`remind`]: reminders the reactor sends itself through its inbox.
//! - [`metrics`]: the invocation's metrics as CloudWatch Embedded Metric Format lines
//!   (pure).
//! - [`handler`]: the [`Reactor`](handler::Reactor) handling one invocation (a batch of
//!   the inbox), generic over those boundaries; [`summary`]: what an invocation did.
//! - [`config`]: the environment; [`managed`]: `MANAGED_GROUPS`, the globs and the
//!   pools each may feed (pure).
#![warn(missing_docs)]

pub mod config;
mod decide;
pub mod dispatch;
pub mod dns;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod group_change;
pub mod handler;
pub mod health;
pub mod inbox;
pub mod input;
mod join;
pub mod ledger;
pub mod lifecycle;
pub mod managed;
pub mod metrics;
mod outgoing;
pub mod plan;
pub mod remind;
pub mod summary;

use infra::aws::AwsDiscovery;

use crate::config::Config;
use crate::dispatch::SsmDispatcher;
use crate::dns::Route53Dns;
use crate::handler::{Boundaries, Parts, Reactor};
use crate::ledger::DynamoLedger;
use crate::lifecycle::AwsLifecycle;
use crate::remind::SqsReminders;

/// The reactor's boundaries on AWS.
pub struct OnAws;

impl Boundaries for OnAws {
    type Discovery = AwsDiscovery;
    type Dispatcher = SsmDispatcher;
    type Lifecycle = AwsLifecycle;
    type Dns = Route53Dns;
    type Ledger = DynamoLedger;
    type Reminders = SqsReminders;
}

/// The reactor wired to AWS.
pub type AwsReactor = Reactor<OnAws>;

/// Builds the reactor from a configuration and an SDK configuration.
pub fn build(config: Config, sdk: &aws_config::SdkConfig) -> AwsReactor {
    let dns = config
        .dns
        .as_ref()
        .map(|_| Route53Dns::new(sdk, config.proxy_group.clone()));
    let ledger = DynamoLedger::new(sdk, &config.ledger_table, config.ledger_ttl.as_secs());
    Reactor::new(
        config.clone(),
        Parts {
            discovery: AwsDiscovery::new(sdk),
            dispatcher: SsmDispatcher::new(config.ssm.clone(), sdk),
            lifecycle: AwsLifecycle::new(sdk),
            dns,
            ledger,
            reminders: SqsReminders::new(sdk, &config.inbox_url),
        },
    )
}
