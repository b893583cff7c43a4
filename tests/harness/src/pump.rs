//! The inbox delivered to a consumer as Lambda's SQS event source mapping delivers it:
//! pollers long-poll the queue, gather a batch ([`Batching`]: up to 10 messages at once
//! by default, as the mapping's defaults), hand it (an SQS event:
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
use crate::world::{Received, World};

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

/// How each poller gathers a batch: the event source mapping's `batch_size` and
/// `maximum_batching_window_in_seconds`. It hands over what it has once it holds `size`
/// messages or `window` has passed since its first one (with no window: what one
/// receive brings, at most 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The most messages a batch holds.
    pub size: usize,
    /// How long a poller may gather.
    pub window: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            size: 10,
            window: Duration::ZERO,
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
        Self::start_batched(world, queue, to, max, pollers, Batching::default())
    }

    /// [`Pump::start`], each poller gathering its batches as `batching` says.
    pub fn start_batched(
        world: Arc<World>,
        queue: String,
        to: UnboundedSender<Delivery>,
        max: Duration,
        pollers: usize,
        batching: Batching,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + max;
        let threads = (0..pollers.max(1))
            .map(|_| {
                let (stop, world, queue, to) =
                    (stop.clone(), world.clone(), queue.clone(), to.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if !poll_once(&world, &queue, &to, batching) {
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

/// The SQS event Lambda's event source mapping hands the function for `records`
/// received from the queue `url`.
pub fn sqs_event(url: &str, records: &[Received]) -> Value {
    let arn = format!(
        "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
        url.rsplit('/').next().unwrap_or_default()
    );
    let records: Vec<Value> = records
        .iter()
        .map(|m| {
            json!({
                "messageId": m.id, "receiptHandle": m.handle, "body": m.body,
                "attributes": m.attributes, "messageAttributes": {},
                "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Up to `batching.size` messages: a long poll, then (with a window) more receives
/// until the batch is full or the window since the first message passed.
fn gather(world: &World, queue: &str, batching: Batching) -> anyhow::Result<Vec<Received>> {
    let mut messages = world.receive_up_to(queue, 1, batching.size)?;
    let Some(until) = Instant::now().checked_add(batching.window) else {
        return Ok(messages);
    };
    while !messages.is_empty() && messages.len() < batching.size {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // A long poll waits whole seconds: with less left, short polls a beat apart.
        let wait = u32::try_from(left.as_secs()).unwrap_or(u32::MAX).min(1);
        let more = world.receive_up_to(queue, wait, batching.size - messages.len())?;
        if more.is_empty() && wait == 0 {
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        messages.extend(more);
    }
    Ok(messages)
}

/// One batch, one invocation, the deletes. `false` once the consumer is gone.
fn poll_once(
    world: &World,
    queue: &str,
    to: &UnboundedSender<Delivery>,
    batching: Batching,
) -> bool {
    let messages = match gather(world, queue, batching) {
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
    let (tx, rx) = std::sync::mpsc::channel();
    let delivery = Delivery {
        event: sqs_event(queue, &messages),
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
