//! Events from EventBridge to a consumer, as Lambda's SQS trigger delivers them: a thread
//! long-polls the SQS queue an EventBridge rule feeds ([`World::event_queue`]) and hands
//! every event to a channel; and the scheduled event a schedule rule sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::emulator::{ACCOUNT, REGION};
use crate::world::World;

/// The pump thread: queue -> channel, until stopped.
pub struct Pump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    /// Long-polls `queue` (1 s waits) and sends every event to `to`, then deletes the
    /// messages, for at most `max`.
    pub fn start(
        world: Arc<World>,
        queue: String,
        to: UnboundedSender<Value>,
        max: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Deleting costs a round trip the next receive need not wait for (a
                // Lambda's SQS trigger deletes after the invocation, while its pollers
                // go on receiving): a thread of its own deletes what was handed on.
                let (done, handed) = std::sync::mpsc::channel::<Vec<String>>();
                let deleter = {
                    let (world, queue) = (world.clone(), queue.clone());
                    std::thread::spawn(move || {
                        for handles in handed {
                            if let Err(e) = world.delete(&queue, &handles) {
                                eprintln!("warning: deleting received events failed: {e:#}");
                            }
                        }
                    })
                };
                let deadline = Instant::now() + max;
                'pump: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match world.receive(&queue, 1) {
                        Ok((events, handles)) => {
                            for e in events {
                                if to.send(e).is_err() {
                                    // The consumer is gone.
                                    break 'pump;
                                }
                            }
                            if !handles.is_empty() && done.send(handles).is_err() {
                                break 'pump;
                            }
                        }
                        Err(e) => {
                            eprintln!("warning: receiving events failed: {e:#}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                drop(done);
                let _ = deleter.join();
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the pump (within its 1 s long poll).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
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
