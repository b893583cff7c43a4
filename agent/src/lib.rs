//! The on-host agent: keeps HAProxy's backends in step with Auto Scaling groups over
//! HAProxy's runtime socket, without reloads while slots are free and without losing a
//! request when a member leaves.
//!
//! One long-running service per host ([`service`], `agent run`) owns HAProxy's runtime
//! state; `agent apply`, `agent sync` and `agent status` talk to it over its control
//! socket ([`control`]).
//!
//! - [`slots`]: the slot table and every member's state machine (pure logic).
//! - [`reassert`]: what HAProxy is sent when it lost state (a restart of the service, a
//!   reload or restart of HAProxy by anyone; pure logic).
//! - [`service`]: carries the plans out: health-gated joins, drains, growth with a
//!   hitless reload, persistence and resume, the periodic sync from AWS.
//! - [`haproxy`]: the one HAProxy client (typed commands, framing, parsers).
//! - [`haproxy_cfg`]: the slot lines inside haproxy.cfg; renders and checks it.
//! - [`instances`]: the map from slot to instance id the log line reads.
//! - [`units`]: the systemd units for the agent and HAProxy.
//! - [`config`]: reads and checks `agent.toml`.
//! - [`limits`]: what a message may ask (member addresses, members per pool, slots,
//!   generations), checked before anything changes.
//! - [`control`]: the control socket's requests and answers, and its client.
//! - [`status`]: what `agent status` shows.
//! - [`metrics`]: the service's own Prometheus metrics (`[metrics] agent`).
//! - [`outbox`]: members' outcomes waiting for the reactor's inbox (pure).
//! - [`health`]: members that went DOWN or came back UP after they were UP (pure).
//! - [`store`]: atomic file writes and the service's lock.
//! - [`aws`]: the desired state read from AWS.
//! - [`zones`]: members' weights, same-zone routing with spill, zones taken away
//!   (pure logic).
#![warn(missing_docs)]

pub mod aws;
pub mod config;
pub mod control;
pub mod haproxy;
pub mod haproxy_cfg;
pub mod health;
pub mod instances;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod reassert;
pub mod service;
pub mod slots;
pub mod status;
pub mod store;
pub mod units;
pub mod zones;
