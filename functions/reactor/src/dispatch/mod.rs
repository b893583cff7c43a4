//! Getting a change to every proxy host.
//!
//! [`Dispatcher`] is the boundary: [`SsmDispatcher`] sends through SSM Run Command of the
//! project's document to the proxies (the in-service instances of the proxy group that
//! carry the proxy tag); unit tests use fakes. Sending never waits for the hosts, and
//! nothing is read back from Run Command: each host's agent service reports the outcome
//! of every member to the reactor's inbox ([`crate::input::report`]).

use std::future::Future;

use infra::aws::AwsError;
use infra::{Change, HostId};

mod ssm;
mod tags;

pub use ssm::{split_change, SsmDispatcher, SsmSettings, PARAMETERS_BUDGET, SSM_INSTANCE_BATCH};

/// One command sent (a change goes out as one command per 50 hosts, and per part when it
/// is too large for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The command id.
    pub command_id: String,
    /// The hosts it targets.
    pub hosts: Vec<HostId>,
}

/// Why a change could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// An AWS call failed after retries.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Sends changes to every proxy host.
pub trait Dispatcher: Send + Sync {
    /// The proxies a change goes to now: the in-service instances of the proxy group
    /// that carry the proxy tag. Listed apart from [`Dispatcher::send`] so that the
    /// reactor reads them while it reads a group, and once per batch.
    fn hosts(&self) -> impl Future<Output = Result<Vec<HostId>, DispatchError>> + Send;

    /// The proxies among `in_service`, the in-service instances of the proxy group as
    /// the caller read them with other groups (one read fewer than [`Self::hosts`]).
    fn hosts_among(
        &self,
        in_service: Vec<String>,
    ) -> impl Future<Output = Result<Vec<HostId>, DispatchError>> + Send;

    /// Sends `change` (about `label`, for logs and the command's comment) to `hosts` and
    /// returns at once; no host means nothing is sent and the list is empty.
    fn send(
        &self,
        hosts: &[HostId],
        change: &Change,
        label: &str,
    ) -> impl Future<Output = Result<Vec<Sent>, DispatchError>> + Send;
}
