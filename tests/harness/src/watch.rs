//! Watching a host's runtime socket: a thread polls `show stat` and records, per server
//! address, when HAProxy was first told about it (the server left MAINT with that
//! address: the change reached the socket) and when it first was UP (health checks
//! passed). Used to split event-to-serving latency into "until HAProxy knew" and "until
//! the checks passed".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::haproxy::Client;

use crate::unix_ms;

/// What was seen of one address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// First time (unix ms) a server of the backend had this address and was not in MAINT.
    pub ready_ms: Option<u64>,
    /// First time (unix ms) it was UP.
    pub up_ms: Option<u64>,
}

/// A polling watch of one backend on one host; stops when dropped.
pub struct SocketWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
}

impl SocketWatch {
    /// Polls `show stat` through `client` every `every` for at most `max`, for servers
    /// of `backend`. Addresses are keyed by IP (without the port).
    pub fn start(client: Client, backend: &str, every: Duration, max: Duration) -> Self {
        Self::watch(client, Some(backend.to_string()), every, max)
    }

    /// As [`SocketWatch::start`], for the servers of every backend: one `show stat` a
    /// tick for a host's pools together (a watch per pool would ask HAProxy for every
    /// server once per pool, a load of its own on a host with many members). Addresses
    /// must then be unique across the host's pools.
    pub fn start_every_backend(client: Client, every: Duration, max: Duration) -> Self {
        Self::watch(client, None, every, max)
    }

    fn watch(client: Client, backend: Option<String>, every: Duration, max: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + max;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok(rows) = client.stats() {
                        let now = unix_ms();
                        let mut map = seen.lock().unwrap_or_else(|e| e.into_inner());
                        for r in rows
                            .iter()
                            .filter(|r| backend.as_ref().is_none_or(|b| r.backend == *b))
                        {
                            let ip = r
                                .addr
                                .rsplit_once(':')
                                .map_or(r.addr.as_str(), |(ip, _)| ip);
                            if ip.is_empty() || ip == "0.0.0.0" || r.status.starts_with("MAINT") {
                                continue;
                            }
                            let e = map.entry(ip.to_string()).or_default();
                            e.ready_ms.get_or_insert(now);
                            if r.is_up() {
                                e.up_ms.get_or_insert(now);
                            }
                        }
                    }
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
            seen,
        }
    }

    /// Everything seen so far, by address.
    pub fn all(&self) -> BTreeMap<String, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What was seen of `ip` so far.
    pub fn get(&self, ip: &str) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ip)
            .copied()
    }

    /// Stops the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SocketWatch {
    fn drop(&mut self) {
        self.stop();
    }
}
