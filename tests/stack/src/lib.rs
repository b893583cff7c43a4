//! The whole local loop, for its two programs (the embedded demo, `demo`, and the
//! end-to-end benchmark, `e2e-bench`) and for the end-to-end tests: on top of the
//! harness's emulated world, instances and HAProxy hosts, the project's control plane as
//! Terraform deploys it ([`plane`]: the document, the reactor's inbox and ledger, the
//! proxy fleet) and the reactor in-process, fed by its inbox (EventBridge's events and
//! the proxies' reports, through SQS) as Lambda's event source mapping feeds it
//! ([`control`], which also accounts for CPU time). The demo records its run
//! ([`recorder`]) and draws it as one HTML page ([`page`]), as `e2e-bench --html` draws
//! its latencies.
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod control;
pub mod page;
pub mod plane;
pub mod recorder;
pub mod usage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use harness::{Host, HostSpec, PoolSpec};

static STOP: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// A fresh run directory named `<prefix>XXXXXX` and that name (the tag). It becomes
/// `TMPDIR`, so every host's directory goes under it and every process of the run
/// (HAProxy, agents, backends named after the tag) is findable by the tag.
///
/// Call it before starting other threads: it sets an environment variable.
pub fn run_dir(prefix: &str) -> std::io::Result<(tempfile::TempDir, String)> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let tag = dir
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(prefix)
        .to_string();
    std::env::set_var("TMPDIR", dir.path());
    Ok((dir, tag))
}

/// Installs SIGINT/SIGTERM handlers that only set the stop flag ([`stopping`]); every
/// loop checks it, and the stack's handles kill their processes when dropped.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether a stop was requested (Ctrl-C, SIGTERM).
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Seconds since the first call (the run's clock for progress lines).
pub fn elapsed_s() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Prints one progress line with the run's clock.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        println!("[{:>8.3}s] {}", $crate::elapsed_s(), format!($($arg)*));
    }};
}

/// Prints one progress line stamped with a time taken earlier ([`elapsed_s`]).
#[macro_export]
macro_rules! say_at {
    ($at:expr, $($arg:tt)*) => {{
        println!("[{:>8.3}s] {}", $at, format!($($arg)*));
    }};
}

/// The `p`-th percentile (0-100, nearest rank) of `v`; 0 for an empty list.
pub fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// A proxy host's spec for the local stack: pool `pool` on the members' `port` with
/// `slots` slots, HTTP health checks (inter 100ms, rise 2), 10 s health and 15 s drain
/// timeouts, and with `group` an `[aws]` section mapping it to the pool (its agent
/// service syncs from AWS at start and every 300 s; a host something else manages, like
/// the bench's baselines, has none). [`harness::World::proxy_fleet`] names it after its
/// instance and points its reports at the inbox. The port is the one the reactor's
/// `POOLS` gives the pool: a group's tag cannot move it (tags only narrow).
pub fn proxy_spec(pool: &str, port: u16, slots: u32, group: Option<&str>) -> HostSpec {
    let mut p = PoolSpec::new(pool, slots);
    p.port = port;
    p.health_path = Some("/healthz".into());
    p.health_timeout_s = 10.0;
    p.drain_timeout_s = 15.0;
    HostSpec {
        name: String::new(),
        pools: vec![p],
        extra_toml: group
            .map(|g| format!("[aws]\ngroups = {{ \"{g}\" = [\"{pool}\"] }}\n"))
            .unwrap_or_default(),
        env: Vec::new(),
    }
}

/// A proxy host outside the proxy fleet (the bench's baselines): [`proxy_spec`] named
/// `name`, with `env` (the emulator's AWS environment) for the agent's runs.
pub fn proxy_host(
    name: &str,
    (pool, port): (&str, u16),
    slots: u32,
    group: Option<&str>,
    env: Vec<(String, String)>,
) -> anyhow::Result<Host> {
    let mut spec = proxy_spec(pool, port, slots, group);
    spec.name = name.into();
    spec.env = env;
    Host::start(&spec)
}

/// Polls `f` ([`harness::wait_for`]) until true, the deadline, or a stop request.
pub fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    harness::wait_for(timeout, || {
        if f() {
            Some(true)
        } else {
            stopping().then_some(false)
        }
    })
    .unwrap_or(false)
}
