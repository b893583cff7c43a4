//! The end-to-end suites, one test binary (it links the AWS SDK once), a module each
//! over [`util`]. Every suite runs real processes: HAProxy (Debian 12's 2.6, or
//! `$HAPROXY_BIN`: `scripts/test` runs the suites that drive it again against 3.0 and
//! 3.2), the real agent, real backends on loopback, and where AWS is involved the moto
//! emulator with the project's extension. Every wait is bounded.
//!
//! - [`agent`]: `agent apply`/`sync` against HAProxy: slots, joins, drains, growth.
//! - [`service`]: the agent service: members in flight on their own, resumes.
//! - [`zones`]: the traffic policy: weights, same-zone routing, zones taken away.
//! - [`confined`]: HAProxy confined and logging; the bounds on a message
//!   (`#[ignore]`d where root or systemd-analyze is needed: `scripts/check-confined`).
//! - [`observability`]: what an operator sees of a host (status, metrics, logs).
//! - [`sync_aws`]: `agent sync` reading the desired state from AWS.
//! - [`run_command`]: the reactor driving a host through Run Command of the document.
//! - [`completion`]: lifecycle actions completed from the hosts' reports (the whole loop).
//! - [`spot`]: EC2's warnings and warm pools end to end, under load.
//! - [`proxy_boot`]: a proxy booted from the rendered user data (`#[ignore]`d:
//!   `scripts/check-proxy-boot`).
//!
//! Run one suite with a filter on its module: `cargo test --test e2e -- zones::`.

mod util;

mod agent;
mod completion;
mod confined;
mod observability;
mod proxy_boot;
mod run_command;
mod service;
mod spot;
mod sync_aws;
mod zones;
