//! The reactor Lambda: Auto Scaling (and EC2, and scheduled) events in, HAProxy backend
//! changes out to every proxy host, lifecycle actions completed, the proxy fleet's DNS
//! records kept in step.
//!
//! - [`event`]: classification of EventBridge events (pure).
//! - [`plan`]: which members a change covers, which actions are pending, and the
//!   completion decision from the hosts' reports (pure).
//! - [`dispatch`]: the [`Dispatcher`](dispatch::Dispatcher) boundary, SSM and local.
//! - [`lifecycle`]: completing and heartbeating lifecycle actions.
//! - [`dns`]: the proxy fleet's Route 53 records (planning and batching pure).
//! - [`reactor`]: the flow, generic over those boundaries.
//! - [`config`]: the environment.

pub mod config;
pub mod dispatch;
pub mod dns;
pub mod event;
pub mod lifecycle;
pub mod plan;
pub mod reactor;

use std::time::Instant;

use infra::aws::AwsDiscovery;
use infra::Change;

use crate::config::{Config, Transport};
use crate::dispatch::{DispatchError, Dispatcher, HostResult, LocalDispatcher, SsmDispatcher};
use crate::dns::Route53Dns;
use crate::lifecycle::AwsLifecycle;

/// The dispatcher the configuration chose.
#[derive(Debug, Clone)]
pub enum AnyDispatcher {
    /// SSM Run Command.
    Ssm(SsmDispatcher),
    /// The agent binary run directly.
    Local(LocalDispatcher),
}

impl Dispatcher for AnyDispatcher {
    async fn dispatch(
        &self,
        change: &Change,
        group: &str,
        deadline: Instant,
    ) -> Result<Vec<HostResult>, DispatchError> {
        match self {
            Self::Ssm(d) => d.dispatch(change, group, deadline).await,
            Self::Local(d) => d.dispatch(change, group, deadline).await,
        }
    }
}

/// The reactor wired to AWS.
pub type AwsReactor = reactor::Reactor<AwsDiscovery, AnyDispatcher, AwsLifecycle, Route53Dns>;

/// Builds the reactor from a configuration and an SDK configuration.
pub fn build(config: Config, sdk: &aws_config::SdkConfig) -> AwsReactor {
    let dispatcher = match &config.transport {
        Transport::Local(hosts) => AnyDispatcher::Local(LocalDispatcher::new(hosts.clone())),
        Transport::Ssm { .. } => match config.transport.ssm_settings() {
            Some(s) => AnyDispatcher::Ssm(SsmDispatcher::new(s, sdk)),
            None => AnyDispatcher::Local(LocalDispatcher::new(Vec::new())),
        },
    };
    let dns = match (&config.dns, &config.proxy_group) {
        (Some(_), Some(group)) => Some(Route53Dns::new(sdk, group.clone())),
        _ => None,
    };
    reactor::Reactor::new(
        config,
        AwsDiscovery::new(sdk),
        dispatcher,
        AwsLifecycle::new(sdk),
        dns,
    )
}
