//! The inbox delivered to a consumer as Lambda's SQS event source mapping delivers it:
//! pollers long-poll the queue, hand each batch of up to 10 messages (an SQS event:
//! `Records` with each message's body and `SenderId`) to the consumer, wait for its
//! answer, and delete the records it did not name in `batchItemFailures`; those become
//! visible again after the queue's visibility timeout and are delivered again. And the
//! scheduled event a schedule rule sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::emulator::{ACCOUNT, REGION};
use crate::world::World;

/// How long a poller waits for the consumer's answer to a batch (a Lambda's timeout).
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// One invocation for the consumer: an SQS event of the inbox, or a bare event (the
/// schedule's, sent directly), and where its answer goes.
pub struct Delivery {
    /// The payload.
    pub event: Value,
    /// The consumer's answer (`{"batchItemFailures": [...]}` for a batch).
    pub reply: Option<std::sync::mpsc::Sender<Value>>,
}

impl Delivery {
    /// A bare event, its answer not awaited.
    pub fn bare(event: Value) -> Self {
        Self { event, reply: None }
    }

    /// Answers the delivery (a consumer that is gone or a bare event: nothing to do).
    pub fn answer(self, response: Value) {
        if let Some(r) = self.reply {
            let _ = r.send(response);
        }
    }
}

/// The pollers: queue -> consumer, until stopped.
pub struct Pump {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Pump {
    /// `pollers` threads long-polling `queue` (1 s waits) and handing each batch to
    /// `to`, for at most `max`.
    pub fn start(
        world: Arc<World>,
        queue: String,
        to: UnboundedSender<Delivery>,
        max: Duration,
        pollers: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + max;
        let threads = (0..pollers.max(1))
            .map(|_| {
                let (stop, world, queue, to) =
                    (stop.clone(), world.clone(), queue.clone(), to.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if !poll_once(&world, &queue, &to) {
                            break;
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops the pollers (within their 1 s long poll and a batch in flight).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One receive, one invocation, the deletes. `false` once the consumer is gone.
fn poll_once(world: &World, queue: &str, to: &UnboundedSender<Delivery>) -> bool {
    let messages = match world.receive_records(queue, 1) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("warning: receiving from the inbox failed: {e:#}");
            std::thread::sleep(Duration::from_millis(200));
            return true;
        }
    };
    if messages.is_empty() {
        return true;
    }
    let arn = format!(
        "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
        queue.rsplit('/').next().unwrap_or_default()
    );
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.id, "receiptHandle": m.handle, "body": m.body,
                "attributes": m.attributes, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": REGION,
            })
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let delivery = Delivery {
        event: json!({ "Records": records }),
        reply: Some(tx),
    };
    if to.send(delivery).is_err() {
        return false;
    }
    // A consumer that does not answer in time failed the whole batch, as Lambda does.
    let answer = rx.recv_timeout(INVOCATION_TIMEOUT).ok();
    let failed: Vec<String> = match &answer {
        Some(a) => a["batchItemFailures"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
            .collect(),
        None => messages.iter().map(|m| m.id.clone()).collect(),
    };
    let handles: Vec<String> = messages
        .iter()
        .filter(|m| !failed.contains(&m.id))
        .map(|m| m.handle.clone())
        .collect();
    if let Err(e) = world.delete(queue, &handles) {
        eprintln!("warning: deleting handled records failed: {e:#}");
    }
    true
}

/// A "Scheduled Event" as EventBridge sends it for a schedule rule named `rule`.
pub fn scheduled_event(rule: &str) -> Value {
    json!({
        "version": "0", "id": format!("schedule-{}", crate::unix_ms()),
        "detail-type": "Scheduled Event", "source": "aws.events", "account": ACCOUNT,
        "time": "2026-01-01T00:00:00Z", "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}")],
        "detail": {}
    })
}
