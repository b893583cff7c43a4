//! The model both halves of the product share.
//!
//! The reactor (a Lambda reacting to Auto Scaling events) and the agent (on every
//! HAProxy host) never share memory, only messages. This crate is the one place those
//! messages and the words in them are defined, so the two can not drift apart:
//!
//! - [`PoolName`], [`MemberId`], [`Port`], [`Member`]: validated names and addresses. A
//!   value of these types is always safe to put on an HAProxy runtime-socket line or in
//!   its configuration.
//! - [`Pool`]: an HAProxy backend fed by an Auto Scaling group.
//! - [`Change`]: what the reactor sends to the agent after an event (members to add and
//!   to remove), and [`Desired`]: the full membership of pools, used by `agent sync`.
//!   Both carry a *generation*, a number that only grows, so a duplicate or late message
//!   can never undo a newer one.
//! - [`Outcome`] / [`Report`]: what the agent answers, per member.
//!
//! Every message is versioned JSON ([`MESSAGE_VERSION`]) and is validated when parsed:
//! bad input is refused whole, with an error naming the field and what to do.

#[cfg(feature = "aws")]
pub mod aws;
mod change;
mod model;
mod report;

pub use change::{Change, Desired, MessageError, PoolChange, PoolDesired, MESSAGE_VERSION};
pub use model::{Member, MemberId, ModelError, Pool, PoolName, Port, ServerOptions};
pub use report::{Outcome, OutcomeStatus, Report};
