//! The model both halves of the product share: pools, members, the change and report
//! messages, and ([`aws`]) reading Auto Scaling groups.
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
//! - [`HostReport`]: what an agent service sends the reactor's inbox when members reach
//!   their target on its host.
//! - [`now_ms`]: the wall clock in the unit every message uses (ms since the epoch).
//!
//! Every message is versioned JSON ([`MESSAGE_VERSION`]) and is validated when parsed:
//! bad input is refused whole, with an error naming the field and what to do.
//!
//! ```
//! use infra::{Change, Member, MemberId, PoolChange, PoolName, Port};
//!
//! // The reactor builds a change...
//! let web = PoolName::new("web")?;
//! let joining = Member::new(MemberId::new("i-0abc")?, "10.0.1.23".parse()?, Port::new(8080)?)?;
//! let change = Change::new(
//!     1732262400123,
//!     vec![PoolChange { pool: web, add: vec![joining], remove: vec![MemberId::new("i-0def")?], drain_by_ms: Default::default() }],
//! );
//! // ...sends it as JSON, and the agent reads back exactly what was meant.
//! let text = change.to_json();
//! assert_eq!(Change::from_json(&text)?, change);
//! // Anything else is refused whole, with the reason.
//! let bad = text.replace("8080", "99999");
//! assert!(Change::from_json(&bad).unwrap_err().to_string().contains("invalid port 99999"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod aws;
mod change;
mod clock;
mod inbox;
mod model;
mod report;

pub use change::{
    Change, Desired, MessageError, PoolChange, PoolDesired, MAX_GENERATION_AHEAD_MS,
    MESSAGE_VERSION,
};
pub use clock::now_ms;
pub use inbox::{
    HealthReport, HostReport, MemberReport, HOST_REPORT_KIND, HOST_REPORT_VERSION,
    MAX_MESSAGE_BYTES, MAX_REASON_CHARS,
};
pub use model::{
    GroupName, HostId, Member, MemberId, ModelError, Pool, PoolName, Port, ServerOptions, Weight,
    Zone,
};
pub use report::{Outcome, OutcomeStatus, Report};
