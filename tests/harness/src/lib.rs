//! The one test harness: everything the end-to-end tests, the benchmarks and the demo
//! build a local run from, with real parts only.
//!
//! - [`emulator`]: the project's AWS emulator (`tests/emulator`) as a child process.
//! - [`world`]: the emulated network in it (VPC, subnets, groups, hooks, proxy
//!   instances, EventBridge rules to SQS) and what the emulator saw.
//! - [`host`]: a real HAProxy host driven by the real `agent` binary.
//! - [`boot`]: a proxy host booted from its rendered user data in a throwaway root.
//! - [`backend`], [`fleet`]: real HTTP servers, one per instance of a group;
//!   [`listeners`]: many of them in one process, for hundreds of instances.
//! - [`load`], [`http`]: bounded HTTP load and a small HTTP client.
//! - [`watch`]: when HAProxy learned about a server and when it came UP.
//! - [`syslog`]: a UDP syslog receiver for HAProxy's log lines.
//! - [`metrics`]: scraping and reading a Prometheus endpoint.
//! - [`pump`]: the reactor's inbox (SQS) to a consumer, as Lambda's event source
//!   mapping delivers it.
//! - [`standin`]: stand-in proxies that answer Run Command and report to the inbox like
//!   the agent service, without HAProxy.
//! - [`reactor_env`]: the reactor's environment (settings), assembled in one place.
//! - [`runtime_api`]: a Lambda Runtime API, to run the real reactor binary.
//! - [`process`]: the project's binaries and the processes a run started.
//!
//! It depends on `infra`, the AWS SDK and the agent's HAProxy client, never on the
//! reactor, so the reactor's own tests can use it. Everything listens on loopback only,
//! every process is stopped when its handle drops, and every wait and load loop is
//! bounded in count and time. The binaries (`agent`, `backend`) are found in the cargo
//! target directory: build them first (`cargo build --workspace --bins`, which the
//! project's test command does).
#![warn(missing_docs)]

pub mod backend;
pub mod boot;
pub mod emulator;
pub mod fleet;
pub mod host;
pub mod http;
pub mod listeners;
pub mod load;
pub mod metrics;
pub mod process;
pub mod pump;
pub mod reactor_env;
pub mod runtime_api;
pub mod standin;
pub mod syslog;
pub mod watch;
pub mod world;

pub use backend::Backend;
pub use emulator::Emulator;
pub use host::{Host, HostSpec, PoolSpec};
pub use load::{probe, Load, LoadStats, Probe};
pub use reactor_env::ReactorEnv;
pub use world::{GroupSpec, World};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A free TCP port on 127.0.0.1 (bound then released; good enough on loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `f` every 20 ms until it returns `Some`, or `None` after `timeout`: the one
/// bounded wait every test and tool uses.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`]'s twin for async code: polls `f` every `every` (sleeping on the
/// runtime, never blocking it) until it returns `Some`, or `None` after `timeout`.
pub async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Unix time in ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
