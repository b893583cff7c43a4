//! The demo's timeline: a thread samples, every [`Recorder::start`]'s `every`, the
//! group's running instances, each host's members UP and reload count, and the load's
//! requests and failures; the scenario adds marks (scale requests, lifecycle events,
//! the fault) as they happen. [`Recorded::page`] turns it into the run's picture.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::haproxy::Client;
use harness::load::LoadCounter;
use harness::World;

use crate::page::{rates, Chart, Mark, Page, Series, Timeline};

/// One look at the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When, seconds on the run's clock ([`crate::elapsed_s`]).
    pub t: f64,
    /// The group's instances running (pending or running in EC2).
    pub instances: u64,
    /// Per host (in [`Recorder::start`]'s order): members UP in the pool (`None`: the
    /// host did not answer).
    pub up: Vec<Option<u64>>,
    /// Requests completed so far by every load.
    pub requests: u64,
    /// Of which failed.
    pub failed: u64,
}

/// What was recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// The hosts' names.
    pub hosts: Vec<String>,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
    /// The desired capacity at each change `(t, n)`.
    pub desired: Vec<(f64, u64)>,
    /// Everything marked (reloads by the sampler: one `reload-<host>` mark per reload).
    pub marks: Vec<Mark>,
}

struct Shared {
    data: Mutex<Recorded>,
    loads: Mutex<Vec<LoadCounter>>,
}

/// The sampling thread; [`Recorder::finish`] takes a last sample and stops it.
pub struct Recorder {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    look: Arc<dyn Fn() -> Sample + Send + Sync>,
}

impl Recorder {
    /// Samples `subnet`'s instances in `world` and pool `pool` on `hosts` (name, admin
    /// client) every `every`, for at most `max`.
    pub fn start(
        world: Arc<World>,
        subnet: &str,
        pool: &str,
        hosts: Vec<(String, Client)>,
        every: Duration,
        max: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            data: Mutex::new(Recorded {
                hosts: hosts.iter().map(|h| h.0.clone()).collect(),
                ..Recorded::default()
            }),
            loads: Mutex::new(Vec::new()),
        });
        let reloads = Arc::new(Mutex::new(vec![0u64; hosts.len()]));
        let look: Arc<dyn Fn() -> Sample + Send + Sync> = {
            let (shared, subnet, pool) = (shared.clone(), subnet.to_string(), pool.to_string());
            Arc::new(move || {
                let t = crate::elapsed_s();
                let instances = world
                    .running_in_subnet(&subnet)
                    .map_or(0, |r| r.len() as u64);
                let mut up = Vec::new();
                let mut new_marks = Vec::new();
                {
                    let mut seen = reloads.lock().unwrap_or_else(|e| e.into_inner());
                    for (i, (name, client)) in hosts.iter().enumerate() {
                        up.push(client.stats().ok().map(|rows| {
                            rows.iter()
                                .filter(|r| r.backend == pool && r.is_up())
                                .count() as u64
                        }));
                        if let Ok(p) = client.proc_info() {
                            while seen[i] < p.reloads {
                                seen[i] += 1;
                                new_marks.push(Mark {
                                    t,
                                    kind: format!("reload-{name}"),
                                    label: format!("{name} reload #{}", seen[i]),
                                });
                            }
                        }
                    }
                }
                let (mut requests, mut failed) = (0, 0);
                for l in shared
                    .loads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    let (r, f) = l.counts();
                    requests += r;
                    failed += f;
                }
                let s = Sample {
                    t,
                    instances,
                    up,
                    requests,
                    failed,
                };
                let mut d = shared.data.lock().unwrap_or_else(|e| e.into_inner());
                d.marks.extend(new_marks);
                d.samples.push(s.clone());
                s
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, look) = (stop.clone(), look.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + max;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    look();
                    // Sleep in short steps so a stop is seen quickly.
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < every {
                        std::thread::sleep(Duration::from_millis(20).min(every));
                    }
                }
            })
        };
        Self {
            shared,
            stop,
            thread: Some(thread),
            look,
        }
    }

    /// Counts `load`'s requests from now on.
    pub fn add_load(&self, load: LoadCounter) {
        self.shared
            .loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(load);
    }

    /// Marks something that happened now (or at `t`, seconds on the run's clock).
    pub fn mark(&self, t: f64, kind: &str, label: String) {
        self.shared
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .marks
            .push(Mark {
                t,
                kind: kind.into(),
                label,
            });
    }

    /// The desired capacity became `n` now.
    pub fn desired(&self, n: u64) {
        let t = crate::elapsed_s();
        self.shared
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .desired
            .push((t, n));
    }

    /// Stops sampling after one last look (take it once the loads stopped, so the
    /// counts are final). Marks may still be added.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            (self.look)();
        }
    }

    /// What was recorded so far.
    pub fn recorded(&self) -> Recorded {
        self.shared
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Recorded {
    /// The run's picture: capacity, members UP per host, requests per second and
    /// failures, then the marks; `facts` head the page.
    pub fn page(&self, title: &str, subtitle: &str, facts: Vec<(String, String)>) -> Page {
        let end = self.samples.last().map_or(0.0, |s| s.t);
        let mut desired: Vec<(f64, f64)> =
            self.desired.iter().map(|(t, n)| (*t, *n as f64)).collect();
        if let Some(&(t, n)) = desired.last() {
            if end > t {
                desired.push((end, n));
            }
        }
        let capacity = Timeline {
            title: "Group capacity".into(),
            y_label: "instances".into(),
            series: vec![
                Series {
                    step: true,
                    ..Series::line("desired", "desired capacity", desired)
                },
                Series::line(
                    "instances",
                    "instances running",
                    self.samples
                        .iter()
                        .map(|s| (s.t, s.instances as f64))
                        .collect(),
                ),
            ],
        };
        let up = Timeline {
            title: "Members UP per HAProxy host".into(),
            y_label: "members UP".into(),
            series: self
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    Series::line(
                        &format!("up-{h}"),
                        &format!("UP on {h}"),
                        self.samples
                            .iter()
                            .filter_map(|s| Some((s.t, s.up.get(i).copied().flatten()? as f64)))
                            .collect(),
                    )
                })
                .collect(),
        };
        let total = |f: fn(&Sample) -> u64| self.samples.last().map_or(0, f);
        let cumulative = |f: fn(&Sample) -> u64| -> Vec<(f64, u64)> {
            self.samples.iter().map(|s| (s.t, f(s))).collect()
        };
        let traffic = Timeline {
            title: "Requests per second and failures (both frontends)".into(),
            y_label: "per second".into(),
            series: vec![
                Series {
                    total: Some(total(|s| s.requests)),
                    ..Series::line(
                        "requests_per_s",
                        "requests/s",
                        rates(&cumulative(|s| s.requests)),
                    )
                },
                Series {
                    total: Some(total(|s| s.failed)),
                    ..Series::line(
                        "failures_per_s",
                        "failed requests/s",
                        rates(&cumulative(|s| s.failed)),
                    )
                },
            ],
        };
        let mut marks = self.marks.clone();
        marks.sort_by(|a, b| a.t.total_cmp(&b.t));
        Page {
            title: title.into(),
            subtitle: subtitle.into(),
            facts,
            charts: vec![
                Chart::Timeline(capacity),
                Chart::Timeline(up),
                Chart::Timeline(traffic),
                Chart::Marks {
                    title:
                        "Scale requests, lifecycle events, the hosts' reports, reloads, the fault"
                            .into(),
                    marks,
                },
            ],
        }
    }
}
