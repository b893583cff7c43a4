//! The on-host agent: keeps HAProxy's backends in step with Auto Scaling groups over
//! HAProxy's runtime socket, without reloads while slots are free and without losing a
//! request when a member leaves.
//!
//! - [`haproxy`]: the one HAProxy client (admin and master sockets, framing, parsers).
//! - [`config`]: `agent.toml`.
//! - [`cfgfile`]: the slot lines the agent owns inside haproxy.cfg; render and check.
//! - [`slots`]: the slot table and the planner (pure logic).
//! - [`engine`]: carries out plans: growth with a hitless reload, health-gated joins,
//!   drains, persistence.
//! - [`store`]: atomic files and the per-host lock.
//! - [`status`]: what `agent status` shows.
//! - [`aws`]: the desired state read from AWS (`agent sync` without `--desired`).

pub mod aws;
pub mod cfgfile;
pub mod config;
pub mod engine;
pub mod haproxy;
pub mod slots;
pub mod status;
pub mod store;
