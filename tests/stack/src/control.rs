//! The control plane of the local stack: the reactor, in-process, on its own thread and
//! runtime (the same code as the Lambda), answering the invocations the harness's pump
//! makes from its inbox ([`harness::pump`]: SQS batches of EventBridge events and host
//! reports, as Lambda's event source mapping delivers them), plus a periodic reconcile
//! (the schedule's event, sent directly).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::pump::{scheduled_event, Delivery, Pump};
use harness::world::ControlPath;
use harness::{ReactorEnv, World};
use infra::{HostReport, MemberReport};
use reactor::config::Config;
use reactor::summary::Summary;
use serde_json::Value;
use tokio::sync::mpsc as tmpsc;

/// The `detail-type`-like label of a host report ([`Record::kind`]).
pub const HOST_REPORT: &str = "Host report";
/// The kind of the reminders the reactor sends itself through its inbox.
pub const RECHECK: &str = "haproxy-asg.recheck";

/// How many pollers feed the reactor: the event source mapping's default maximum
/// concurrency (`inbox_max_concurrency`, 5), so up to 5 batches are handled at once, as
/// Lambda runs up to 5 invocations at once.
pub const POLLERS: usize = 5;

/// One record of an invocation (or the bare event of a direct one).
#[derive(Debug, Clone)]
pub struct Record {
    /// An EventBridge event's `detail-type` (`Scheduled Event` for reconciles),
    /// [`HOST_REPORT`], or [`RECHECK`] for the reactor's own reminders.
    pub kind: String,
    /// The instance an event is about, or the host a report comes from.
    pub instance: Option<String>,
    /// When the message reached the inbox (SQS's `SentTimestamp`, unix ms); `None` for
    /// a bare event.
    pub inbox_ms: Option<u64>,
    /// A host report's member reports.
    pub reports: Vec<MemberReport>,
}

impl Record {
    /// The records of an invocation's payload: an SQS batch's, or the bare event.
    pub fn of(payload: &Value) -> Vec<Record> {
        match payload["Records"].as_array() {
            Some(records) => records
                .iter()
                .map(|r| {
                    let body = r["body"].as_str().unwrap_or_default();
                    let inbox_ms = r["attributes"]["SentTimestamp"]
                        .as_str()
                        .and_then(|t| t.parse().ok());
                    let parsed: Value = serde_json::from_str(body).unwrap_or_default();
                    let mut rec = if HostReport::is_host_report(&parsed) {
                        match HostReport::from_json(body) {
                            Ok(m) => Record {
                                kind: HOST_REPORT.into(),
                                instance: Some(m.host.to_string()),
                                inbox_ms: None,
                                reports: m.reports,
                            },
                            Err(_) => Record::event(&Value::Null),
                        }
                    } else {
                        Record::event(&parsed)
                    };
                    rec.inbox_ms = inbox_ms;
                    rec
                })
                .collect(),
            None => vec![Record::event(payload)],
        }
    }

    /// An EventBridge event (its `detail-type`), or another message of the inbox (its
    /// `kind`: the reactor's reminders, `haproxy-asg.recheck`).
    fn event(event: &Value) -> Record {
        Record {
            kind: event["detail-type"]
                .as_str()
                .or_else(|| event["kind"].as_str())
                .unwrap_or("?")
                .to_string(),
            instance: event["detail"]["EC2InstanceId"]
                .as_str()
                .map(str::to_string),
            inbox_ms: None,
            reports: Vec::new(),
        }
    }
}

/// One invocation the reactor handled.
#[derive(Debug, Clone)]
pub struct Handled {
    /// What it was given.
    pub records: Vec<Record>,
    /// When the reactor got it (unix ms).
    pub received_ms: u64,
    /// How long handling took.
    pub ms: u64,
    /// When it was done, on the run's clock ([`crate::elapsed_s`]).
    pub at_s: f64,
    /// The reactor's summary (records it failed are in its `failed`), or the error of
    /// a direct invocation.
    pub result: Result<Summary, String>,
}

/// The reactor's thread; its CPU time comes back from [`ReactorRun::finish`].
pub struct ReactorRun {
    tx: tmpsc::UnboundedSender<Delivery>,
    run: CpuThread,
}

/// A thread that runs until its stop flag is set and answers its CPU seconds: the
/// reactor's here, a baseline's control loop in e2e-bench. Dropped, it is stopped and
/// joined.
pub struct CpuThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<f64>>,
}

impl CpuThread {
    /// Runs `body` on a thread of its own, given the stop flag it must watch; `body`
    /// answers its CPU seconds.
    pub fn spawn(body: impl FnOnce(Arc<AtomicBool>) -> f64 + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Self {
            stop,
            thread: Some(std::thread::spawn(move || body(flag))),
        }
    }

    /// Sets the stop flag and waits for the thread; its CPU seconds (0 once finished).
    pub fn finish(&mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for CpuThread {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How the reactor's thread takes its invocations.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// A reconcile (the schedule's event, sent directly) every this long, when none is
    /// running.
    pub reconcile: Option<Duration>,
    /// One invocation at a time, in the order received (the tests' single poller, whose
    /// batches and scheduled events then never overlap); otherwise each runs as it
    /// comes, as Lambda runs invocations side by side.
    pub one_at_a_time: bool,
}

impl ReactorRun {
    /// Starts the reactor thread: every invocation sent to [`ReactorRun::sender`] is
    /// handled concurrently (as Lambda invocations are) and answered, a reconcile runs
    /// every `reconcile` (when given and none is running), and every outcome goes to
    /// `report`.
    pub fn start(
        world: &World,
        config: Config,
        reconcile: Option<Duration>,
        report: mpsc::Sender<Handled>,
    ) -> anyhow::Result<Self> {
        let options = RunOptions {
            reconcile,
            one_at_a_time: false,
        };
        Self::start_with(world, config, options, report)
    }

    /// [`ReactorRun::start`] with `options`.
    pub fn start_with(
        world: &World,
        config: Config,
        options: RunOptions,
        report: mpsc::Sender<Handled>,
    ) -> anyhow::Result<Self> {
        let (tx, mut rx) = tmpsc::unbounded_channel::<Delivery>();
        let sdk = world.sdk.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let run = CpuThread::spawn(move |stop| {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let reactor = Rc::new(reactor::build(config, &sdk));
                let in_flight = Rc::new(Cell::new(0usize));
                let reconciling = Rc::new(Cell::new(false));
                let mut tick =
                    tokio::time::interval(options.reconcile.unwrap_or(Duration::from_secs(3600)));
                tick.tick().await;
                let handle = |delivery: Delivery, reconcile: bool| {
                    let (reactor, in_flight, report, reconciling) = (
                        reactor.clone(),
                        in_flight.clone(),
                        report.clone(),
                        reconciling.clone(),
                    );
                    in_flight.set(in_flight.get() + 1);
                    reconciling.set(reconciling.get() || reconcile);
                    tokio::task::spawn_local(async move {
                        let _ = report.send(invoke(&reactor, delivery).await);
                        in_flight.set(in_flight.get().saturating_sub(1));
                        if reconcile {
                            reconciling.set(false);
                        }
                    })
                };
                while !stop.load(Ordering::Relaxed) {
                    let running = tokio::select! {
                        d = rx.recv() => match d {
                            Some(d) => Some(handle(d, false)),
                            None => break,
                        },
                        _ = tick.tick(), if options.reconcile.is_some() => {
                            (!reconciling.get()).then(|| {
                                handle(Delivery::bare(scheduled_event("demo-reconcile")), true)
                            })
                        }
                        _ = tokio::time::sleep(Duration::from_millis(100)) => None,
                    };
                    if let Some(running) = running.filter(|_| options.one_at_a_time) {
                        let _ = running.await;
                    }
                }
                // Let what is running finish (bounded); a delivery still queued is
                // dropped unanswered, and its poller gives its records back.
                let until = Instant::now() + Duration::from_secs(60);
                while in_flight.get() > 0 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            crate::usage::thread_cpu_s()
        });
        Ok(Self { tx, run })
    }

    /// Where invocations go.
    pub fn sender(&self) -> tmpsc::UnboundedSender<Delivery> {
        self.tx.clone()
    }

    /// The inbox of `path` feeding this reactor: `pollers` pollers (the event source
    /// mapping's concurrency: [`POLLERS`] by default), for at most `max`.
    pub fn pump(
        &self,
        world: &Arc<World>,
        path: &ControlPath,
        pollers: usize,
        max: Duration,
    ) -> Pump {
        Pump::start(
            world.clone(),
            path.inbox.clone(),
            self.sender(),
            max,
            pollers,
        )
    }

    /// Stops taking invocations, waits (at most 60 s) for those in flight; the reactor
    /// thread's CPU time in seconds.
    pub fn finish(&mut self) -> f64 {
        self.run.finish()
    }
}

/// Hands `delivery` to `reactor`, answers it, and says what happened.
async fn invoke(reactor: &reactor::AwsReactor, delivery: Delivery) -> Handled {
    let received_ms = harness::unix_ms();
    let started = Instant::now();
    let i = reactor.invoke(&delivery.event).await;
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let records = Record::of(&delivery.event);
    delivery.answer(i.response);
    Handled {
        records,
        received_ms,
        ms,
        at_s: crate::elapsed_s(),
        result: i.result.map(|()| i.summary).map_err(|e| e.to_string()),
    }
}

/// The reactor's configuration for the local stack: `group` feeds `pool` on `port`;
/// changes go to the proxy fleet through the project's SSM document, the hosts report
/// to `path`'s inbox and the ledger is `path`'s table, as in AWS.
pub fn reactor_config(
    path: &ControlPath,
    group: &str,
    pool: &str,
    port: u16,
) -> anyhow::Result<Config> {
    let env = ReactorEnv::new(path)
        .pool(group, pool, port)
        .timeouts(HEALTH_TIMEOUT_S, DRAIN_TIMEOUT_S)
        .hooks(&[harness::world::LAUNCH_HOOK, harness::world::TERMINATE_HOOK]);
    Config::from_lookup(|k| env.get(k)).map_err(|e| anyhow::anyhow!("reactor configuration: {e}"))
}

/// How long a launch may take to get healthy on the local stack: the reactor's setting.
/// The agents' own timeouts ([`crate::proxy_spec`]: 10 s health, 15 s drain) are
/// shorter, so a host reports its outcome before the reactor stops waiting for it.
pub const HEALTH_TIMEOUT_S: u64 = 15;
/// How long a drain may take on the local stack: the reactor's setting.
pub const DRAIN_TIMEOUT_S: u64 = 20;
/// The SSM document's timeout (fixed in Terraform's template: the agent returns as soon
/// as its service accepted the change).
pub const DOCUMENT_TIMEOUT_S: u64 = 120;
