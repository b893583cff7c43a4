//! The on-host agent: keeps HAProxy's backends in step with Auto Scaling groups over
//! HAProxy's runtime socket, without reloads while slots are free and without losing a
//! request when a member leaves.
//!
//! - [`haproxy`] is the one HAProxy client (admin and master sockets, framing, parsers).
//! - [`config`] reads `agent.toml`.
//! - [`cfgfile`] owns the slot lines inside haproxy.cfg; renders and checks it.
//! - [`slots`] holds the slot table and the planner (pure logic).
//! - [`engine`] carries out plans: growth with a hitless reload, health-gated joins,
//!   drains, persistence.
//! - [`store`] writes files atomically and holds the per-host lock.
//! - [`status`] is what `agent status` shows.
//! - [`aws`] reads the desired state from AWS (`agent sync` without `--desired`).

pub mod aws;
pub mod cfgfile;
pub mod config;
pub mod engine;
pub mod haproxy;
pub mod slots;
pub mod status;
pub mod store;
