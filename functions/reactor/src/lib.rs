//! The reactor Lambda: Auto Scaling (and EC2, Run Command, scheduled) events in, HAProxy
//! backend changes out to every proxy host, lifecycle actions completed from the hosts'
//! reports, the proxy fleet's DNS records kept in step.
//!
//! - [`event`]: classification of EventBridge events (pure).
//! - [`plan`]: which members a change covers, which actions are pending, and the
//!   completion decision from the hosts' reports (pure).
//! - [`context`]: what travels with a change so its status event can complete the
//!   actions it serves (pure).
//! - [`dispatch`]: the [`Dispatcher`](dispatch::Dispatcher) boundary and SSM Run Command.
//! - [`lifecycle`]: completing and heartbeating lifecycle actions.
//! - [`dns`]: the proxy fleet's Route 53 records (planning and batching pure).
//! - [`metrics`]: the invocation's metrics as CloudWatch Embedded Metric Format lines
//!   (pure).
//! - [`reactor`]: the flow, generic over those boundaries.
//! - [`config`]: the environment.
#![warn(missing_docs)]

pub mod config;
pub mod context;
pub mod dispatch;
pub mod dns;
pub mod event;
pub mod lifecycle;
pub mod metrics;
pub mod plan;
pub mod reactor;

use infra::aws::AwsDiscovery;

use crate::config::Config;
use crate::dispatch::SsmDispatcher;
use crate::dns::Route53Dns;
use crate::lifecycle::AwsLifecycle;

/// The reactor wired to AWS.
pub type AwsReactor = reactor::Reactor<AwsDiscovery, SsmDispatcher, AwsLifecycle, Route53Dns>;

/// Builds the reactor from a configuration and an SDK configuration.
pub fn build(config: Config, sdk: &aws_config::SdkConfig) -> AwsReactor {
    let dispatcher = SsmDispatcher::new(config.ssm.clone(), sdk);
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
