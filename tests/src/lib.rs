//! End-to-end harness: real HAProxy processes, real backend processes, bounded HTTP
//! load, and the agent binary driving them, for the tests and benchmarks in this crate.
//!
//! Everything listens on loopback only, every process is killed when its handle drops,
//! and every wait and load loop is bounded in count and time.
//!
//! The binaries (`agent`, `backend`) are found beside the running executable in the
//! cargo target directory; build them first (`cargo build --workspace --bins`, which
//! the project's test command does).

pub mod backend;
pub mod bins;
pub mod host;
pub mod http;
pub mod load;
pub mod moto;
pub mod watch;

pub use backend::Backend;
pub use host::{Host, HostSpec, PoolSpec};
pub use load::{Load, LoadStats};

/// A free TCP port on 127.0.0.1 (bound then released; good enough on loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `f` every 20 ms until it returns `Some`, or `None` after `timeout`.
pub fn wait_for<T>(timeout: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
