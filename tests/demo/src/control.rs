//! The control plane of the local stack: the reactor, in-process, on its own thread and
//! runtime (the same code as the Lambda), fed by the harness's event pump, plus a
//! periodic reconcile ("Scheduled Event").

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::pump::scheduled_event;
use harness::World;
use reactor::config::Config;
use reactor::reactor::Summary;
use serde_json::{json, Value};
use tokio::sync::mpsc as tmpsc;

/// One event the reactor handled.
#[derive(Debug, Clone)]
pub struct Handled {
    /// `detail-type` of the event (`Scheduled Event` for reconciles).
    pub detail_type: String,
    /// The instance it was about, if any.
    pub instance: Option<String>,
    /// When the reactor got it (unix ms).
    pub received_ms: u64,
    /// How long handling took.
    pub ms: u64,
    /// When it was done, on the run's clock ([`crate::elapsed_s`]).
    pub at_s: f64,
    /// The reactor's summary, or its error.
    pub result: Result<Summary, String>,
}

/// The reactor's thread; its CPU time comes back from [`ReactorRun::finish`].
pub struct ReactorRun {
    stop: Arc<AtomicBool>,
    tx: tmpsc::UnboundedSender<Value>,
    thread: Option<JoinHandle<f64>>,
}

/// CPU time (user + system, seconds) of the calling thread.
pub fn thread_cpu_s() -> f64 {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time (user + system, seconds) of the waited-for children of this process.
pub fn children_cpu_s() -> f64 {
    // SAFETY: as above.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

impl ReactorRun {
    /// Starts the reactor thread: every event sent to [`ReactorRun::sender`] is handled
    /// concurrently (as Lambda invocations are), a reconcile runs every `reconcile`
    /// (when given and none is running), and every outcome goes to `report`.
    pub fn start(
        world: &World,
        config: Config,
        reconcile: Option<Duration>,
        report: mpsc::Sender<Handled>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tmpsc::unbounded_channel::<Value>();
        let sdk = world.sdk.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let reactor = Rc::new(reactor::build(config, &sdk));
                    let in_flight = Rc::new(Cell::new(0usize));
                    let reconciling = Rc::new(Cell::new(false));
                    let mut tick =
                        tokio::time::interval(reconcile.unwrap_or(Duration::from_secs(3600)));
                    tick.tick().await;
                    let handle = |event: Value, reconcile: bool| {
                        let (reactor, in_flight, report, reconciling) = (
                            reactor.clone(),
                            in_flight.clone(),
                            report.clone(),
                            reconciling.clone(),
                        );
                        in_flight.set(in_flight.get() + 1);
                        if reconcile {
                            reconciling.set(true);
                        }
                        tokio::task::spawn_local(async move {
                            let received_ms = harness::unix_ms();
                            let started = Instant::now();
                            let result = reactor.handle(&event).await.map_err(|e| e.to_string());
                            let _ = report.send(Handled {
                                detail_type: event["detail-type"]
                                    .as_str()
                                    .unwrap_or("?")
                                    .to_string(),
                                instance: event["detail"]["EC2InstanceId"]
                                    .as_str()
                                    .map(str::to_string),
                                received_ms,
                                ms: u64::try_from(started.elapsed().as_millis())
                                    .unwrap_or(u64::MAX),
                                at_s: crate::elapsed_s(),
                                result,
                            });
                            in_flight.set(in_flight.get().saturating_sub(1));
                            if reconcile {
                                reconciling.set(false);
                            }
                        });
                    };
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        tokio::select! {
                            ev = rx.recv() => match ev {
                                Some(ev) => handle(ev, false),
                                None => break,
                            },
                            _ = tick.tick(), if reconcile.is_some() => {
                                if !reconciling.get() {
                                    handle(scheduled_event("demo-reconcile"), true);
                                }
                            }
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                    // Let what is running finish (bounded).
                    let until = Instant::now() + Duration::from_secs(60);
                    while in_flight.get() > 0 && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                thread_cpu_s()
            })
        };
        Ok(Self {
            stop,
            tx,
            thread: Some(thread),
        })
    }

    /// Where to send events.
    pub fn sender(&self) -> tmpsc::UnboundedSender<Value> {
        self.tx.clone()
    }

    /// Stops taking events, waits (at most 60 s) for those in flight; the reactor
    /// thread's CPU time in seconds.
    pub fn finish(&mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for ReactorRun {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The reactor's configuration for the local stack: `group` feeds `pool` on `port`;
/// changes go to the proxy fleet through the project's SSM document, as in AWS.
pub fn reactor_config(group: &str, pool: &str, port: u16) -> anyhow::Result<Config> {
    let pools = json!({ group: [{"name": pool, "port": port}] }).to_string();
    let (tag_key, tag_value) = harness::world::PROXY_TAG;
    Config::from_lookup(|k| match k {
        "POOLS" => Some(pools.clone()),
        "SSM_DOCUMENT" => Some(harness::world::DOCUMENT.into()),
        "PROXY_TAG_KEY" => Some(tag_key.into()),
        "PROXY_TAG_VALUE" => Some(tag_value.into()),
        "HEALTH_TIMEOUT_S" => Some(HEALTH_TIMEOUT_S.to_string()),
        "DRAIN_TIMEOUT_S" => Some(DRAIN_TIMEOUT_S.to_string()),
        "LIFECYCLE_HOOKS" => Some(format!(
            "{},{}",
            harness::world::LAUNCH_HOOK,
            harness::world::TERMINATE_HOOK
        )),
        _ => None,
    })
    .map_err(|e| anyhow::anyhow!("reactor configuration: {e}"))
}

/// How long a launch may take to get healthy on the local stack: the reactor's setting.
/// The agents' own timeouts ([`crate::proxy_host`]: 10 s health, 15 s drain) are shorter,
/// so a host reports its outcome before the reactor stops waiting for it.
pub const HEALTH_TIMEOUT_S: u64 = 15;
/// How long a drain may take on the local stack: the reactor's setting.
pub const DRAIN_TIMEOUT_S: u64 = 20;

/// The SSM document's execution timeout on the local stack (as Terraform sets it).
pub const EXECUTION_TIMEOUT_S: u64 = HEALTH_TIMEOUT_S + DRAIN_TIMEOUT_S + 60;
