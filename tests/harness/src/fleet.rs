//! The fleet: plays the instances' boot and shutdown. A thread watches the running EC2
//! instances of a subnet and starts a real HTTP backend bound to each new instance's
//! private (loopback) address on the pool port, and stops it once the instance is gone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::unix_ms;
use crate::{http, Backend};

use crate::world::World;

/// One instance's life as the fleet saw it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The instance id.
    pub id: String,
    /// Its private address.
    pub ip: String,
    /// The last scale request (unix ms) before it appeared.
    pub requested_ms: u64,
    /// When its backend started (unix ms).
    pub started_ms: u64,
    /// When its backend served its first request (unix ms).
    pub first_ms: Option<u64>,
    /// Requests it served.
    pub served: u64,
    /// When its backend was stopped (unix ms).
    pub stopped_ms: Option<u64>,
}

#[derive(Default)]
struct State {
    instances: BTreeMap<String, Instance>,
    running: BTreeMap<String, Backend>,
    /// Instances whose backend was made to fail: never started again.
    failed: std::collections::BTreeSet<String>,
    errors: Vec<String>,
}

/// The running fleet loop; stops every backend when stopped or dropped.
pub struct Fleet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    state: Arc<Mutex<State>>,
    /// Set this (unix ms) just before each scale request.
    pub requested_ms: Arc<AtomicU64>,
}

fn stats(addr: SocketAddr) -> Option<(u64, Option<u64>)> {
    let r = http::get(addr, "/__stats", Duration::from_secs(2)).ok()?;
    let v: serde_json::Value = serde_json::from_str(r.body.trim()).ok()?;
    Some((v["requests"].as_u64()?, v["first_ms"].as_u64()))
}

/// Stops instance `id`'s backend, keeping what it served (count, first request) and
/// when it stopped.
fn retire(instances: &mut BTreeMap<String, Instance>, id: &str, mut backend: Backend) {
    let served = stats(backend.addr);
    backend.stop();
    if let Some(i) = instances.get_mut(id) {
        if let Some((n, first)) = served {
            i.served += n;
            i.first_ms = i.first_ms.or(first);
        }
        i.stopped_ms = Some(unix_ms());
    }
}

impl Fleet {
    /// Starts the loop for `subnet`: backends named `<tag>-<instance>` on `<ip>:<port>`,
    /// polling every `every`, for at most `max`.
    pub fn start(
        world: Arc<World>,
        subnet: &str,
        port: u16,
        tag: &str,
        every: Duration,
        max: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state: Arc<Mutex<State>> = Arc::default();
        let requested_ms = Arc::new(AtomicU64::new(unix_ms()));
        let thread = {
            let (stop, state, requested) = (stop.clone(), state.clone(), requested_ms.clone());
            let (subnet, tag) = (subnet.to_string(), tag.to_string());
            std::thread::spawn(move || {
                let deadline = Instant::now() + max;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let running = match world.running_in_subnet(&subnet) {
                        Ok(r) => r,
                        Err(e) => {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            if s.errors.len() < 20 {
                                s.errors.push(format!("{e:#}"));
                            }
                            std::thread::sleep(every);
                            continue;
                        }
                    };
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    for (id, ip) in &running {
                        if s.running.contains_key(id) || s.failed.contains(id) {
                            continue;
                        }
                        match Backend::spawn(&format!("{tag}-{id}"), &format!("{ip}:{port}"), false)
                        {
                            Ok(b) => {
                                s.running.insert(id.clone(), b);
                                match s.instances.get_mut(id) {
                                    // Started again (out of a warm pool): it boots anew.
                                    Some(i) => {
                                        i.stopped_ms = None;
                                        i.started_ms = unix_ms();
                                    }
                                    None => {
                                        s.instances.insert(
                                            id.clone(),
                                            Instance {
                                                id: id.clone(),
                                                ip: ip.clone(),
                                                requested_ms: requested.load(Ordering::SeqCst),
                                                started_ms: unix_ms(),
                                                first_ms: None,
                                                served: 0,
                                                stopped_ms: None,
                                            },
                                        );
                                    }
                                }
                            }
                            Err(e) => {
                                if s.errors.len() < 20 {
                                    s.errors
                                        .push(format!("backend for {id} on {ip}:{port}: {e:#}"));
                                }
                            }
                        }
                    }
                    let gone: Vec<String> = s
                        .running
                        .keys()
                        .filter(|id| !running.iter().any(|(r, _)| r == *id))
                        .cloned()
                        .collect();
                    for id in gone {
                        if let Some(b) = s.running.remove(&id) {
                            retire(&mut s.instances, &id, b);
                        }
                    }
                    // Record first requests as they happen.
                    let pending: Vec<(String, SocketAddr)> = s
                        .running
                        .iter()
                        .filter(|(id, _)| {
                            s.instances.get(*id).is_some_and(|i| i.first_ms.is_none())
                        })
                        .map(|(id, b)| (id.clone(), b.addr))
                        .collect();
                    for (id, addr) in pending {
                        if let (Some((n, first)), Some(i)) = (stats(addr), s.instances.get_mut(&id))
                        {
                            i.served = n;
                            i.first_ms = first;
                        }
                    }
                    drop(s);
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
            state,
            requested_ms,
        }
    }

    /// Every instance seen so far.
    pub fn instances(&self) -> Vec<Instance> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.instances.values().cloned().collect()
    }

    /// One instance.
    pub fn instance(&self, id: &str) -> Option<Instance> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.instances.get(id).cloned()
    }

    /// Instances whose backend runs now.
    pub fn running(&self) -> Vec<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.running.keys().cloned().collect()
    }

    /// Makes instance `id`'s backend fail (stops it for good, while the instance runs):
    /// its health checks fail from now on. Returns whether it was running.
    pub fn fail(&self, id: &str) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failed.insert(id.to_string());
        match s.running.remove(id) {
            Some(b) => {
                retire(&mut s.instances, id, b);
                true
            }
            None => false,
        }
    }

    /// Errors met (starting backends, reading the instances).
    pub fn errors(&self) -> Vec<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.errors.clone()
    }

    /// Stops the loop and every backend (recording what they served).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let running = std::mem::take(&mut s.running);
        for (id, b) in running {
            retire(&mut s.instances, &id, b);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}
