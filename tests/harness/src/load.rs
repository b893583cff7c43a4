//! Bounded HTTP load: worker threads sending `GET /` to a frontend until stopped, or
//! until a time or request cap is reached, counting what failed.
//!
//! Each worker sends at most one request per [`PACE`], so a 2-core machine keeps CPU for
//! HAProxy and the agent under test (a few hundred requests/s is plenty to catch a
//! single failed request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http;

/// The shortest interval between two requests of one worker.
pub const PACE: Duration = Duration::from_millis(2);

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that did not get a 2xx (or got no answer).
    pub failed: u64,
    /// The first few failures, for messages.
    pub errors: Vec<String>,
    /// Answers per body (the backend's name), to see who served.
    pub by_backend: std::collections::BTreeMap<String, u64>,
}

/// A handle on a running load's counters, for a thread that samples them while the
/// load runs (the demo's timeline).
#[derive(Clone)]
pub struct LoadCounter(Arc<Mutex<LoadStats>>);

impl LoadCounter {
    /// Requests completed so far, and how many of them failed.
    pub fn counts(&self) -> (u64, u64) {
        self.0
            .lock()
            .map(|s| (s.requests, s.failed))
            .unwrap_or((0, 0))
    }
}

/// A running load; [`Load::stop`] returns its figures.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<Mutex<LoadStats>>,
}

impl Load {
    /// Starts `workers` threads against `addr`, each stopping by itself after
    /// `max_duration` or once `max_requests` were sent in total.
    pub fn start(
        addr: SocketAddr,
        workers: usize,
        max_duration: Duration,
        max_requests: u64,
    ) -> Self {
        Self::start_paced(addr, workers, PACE, max_duration, max_requests)
    }

    /// [`Load::start`] with each worker sending at most one request per `pace` (many
    /// loads at once on a 2-core machine: a fleet's worth of frontends).
    pub fn start_paced(
        addr: SocketAddr,
        workers: usize,
        pace: Duration,
        max_duration: Duration,
        max_requests: u64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let sent = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + max_duration;
        let threads = (0..workers)
            .map(|_| {
                let (stop, stats, sent) = (stop.clone(), stats.clone(), sent.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed)
                        && Instant::now() < deadline
                        && sent.fetch_add(1, Ordering::Relaxed) < max_requests
                    {
                        let sent_at = Instant::now();
                        let r = http::get(addr, "/", Duration::from_secs(10));
                        let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                        s.requests += 1;
                        match r {
                            Ok(r) if (200..300).contains(&r.status) => {
                                *s.by_backend.entry(r.body.trim().to_string()).or_default() += 1;
                            }
                            Ok(r) => {
                                s.failed += 1;
                                if s.errors.len() < 10 {
                                    s.errors.push(format!("HTTP {}", r.status));
                                }
                            }
                            Err(e) => {
                                s.failed += 1;
                                if s.errors.len() < 10 {
                                    s.errors.push(e.to_string());
                                }
                            }
                        }
                        drop(s);
                        if let Some(rest) = pace.checked_sub(sent_at.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            threads,
            stats,
        }
    }

    /// A handle on the counters for another thread; after [`Load::stop`] it holds the
    /// final counts.
    pub fn counter(&self) -> LoadCounter {
        LoadCounter(self.stats.clone())
    }

    /// Requests completed so far.
    pub fn completed(&self) -> u64 {
        self.stats.lock().map(|s| s.requests).unwrap_or(0)
    }

    /// Waits for the workers to end by themselves (their request count or duration ran
    /// out) and returns the figures: `n` requests in a row, `Load::start(.., n).wait()`.
    pub fn wait(mut self) -> LoadStats {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the workers and returns the figures.
    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One answer of [`probe`]: when its request was sent and answered (since the probe
/// began), and the status and body, or the error.
#[derive(Debug, Clone)]
pub struct Probe {
    /// When it was sent.
    pub sent: Duration,
    /// When it was answered (or failed).
    pub done: Duration,
    /// `(status, body trimmed)`, or the error.
    pub answer: Result<(u16, String), String>,
}

impl Probe {
    /// Whether it got a 2xx answer.
    pub fn ok(&self) -> bool {
        self.answer
            .as_ref()
            .is_ok_and(|(s, _)| (200..300).contains(s))
    }

    /// The body of a 2xx answer (the backend's name).
    pub fn served_by(&self) -> Option<&str> {
        match &self.answer {
            Ok((s, body)) if (200..300).contains(s) => Some(body),
            _ => None,
        }
    }
}

/// One `GET /` to `addr` every `every` for `span`, each on a thread of its own (as a
/// loaded proxy sees them: one request held back, queued or retried, does not hold back
/// the next), each waiting at most 5 s; the answers in the order sent. At most
/// `span / every` requests (and threads).
pub fn probe(addr: SocketAddr, every: Duration, span: Duration) -> Vec<Probe> {
    let t0 = Instant::now();
    let mut threads = Vec::new();
    while t0.elapsed() < span {
        let sent = t0.elapsed();
        threads.push(std::thread::spawn(move || {
            let answer = http::get(addr, "/", Duration::from_secs(5))
                .map(|r| (r.status, r.body.trim().to_string()))
                .map_err(|e| e.to_string());
            Probe {
                sent,
                done: t0.elapsed(),
                answer,
            }
        }));
        std::thread::sleep(every);
    }
    threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or_else(|_| Probe {
                sent: Duration::ZERO,
                done: Duration::ZERO,
                answer: Err("the probe's thread panicked".into()),
            })
        })
        .collect()
}
