//! `[report]`: the thread that sends members' outcomes to the reactor's inbox.
//!
//! It takes the outbox's batches ([`crate::outbox`]: outcomes that ended within
//! `batch_ms` of each other go together), writes them as host-report messages
//! ([`infra::HostReport`], naming this host) and sends them through a [`Sink`]: the SQS
//! queue of agent.toml, with the host's own credentials, so the reactor can tell who
//! sent them. A batch that fails stays in the outbox and goes again after a backoff; the
//! failure is logged (once when it starts, once when it ends) and counted.

use std::time::Duration;

use infra::{HostId, HostReport, MAX_MESSAGE_BYTES};
use tracing::{info, warn};

use super::{now_ms, Service};

/// Where reports go.
pub trait Sink: Send {
    /// Sends one message body.
    fn send(&mut self, body: &str) -> Result<(), String>;
}

/// The reactor's inbox: an SQS queue, reached with the environment's AWS configuration
/// (`AWS_REGION`, the instance profile's credentials, `AWS_ENDPOINT_URL` locally).
pub struct SqsSink {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsSink {
    /// A client for `queue_url`.
    pub fn new(queue_url: &str) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sdk = runtime.block_on(infra::aws::sdk_config());
        Ok(Self {
            client: aws_sdk_sqs::Client::new(&sdk),
            runtime,
            queue_url: queue_url.to_string(),
        })
    }
}

impl Sink for SqsSink {
    fn send(&mut self, body: &str) -> Result<(), String> {
        let sent = self.runtime.block_on(
            self.client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .send(),
        );
        sent.map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }
}

/// How long the sender sleeps at most between looks at the stop flag.
const IDLE: Duration = Duration::from_millis(500);

/// Sends the outbox's batches through `sink` until the service stops.
pub(super) fn run(service: &Service, host: &HostId, window: Duration, sink: &mut dyn Sink) {
    let mut failing = false;
    while !service.stopping() {
        let batch = {
            let mut st = service.lock();
            let now = now_ms();
            match st.outbox.take(now, window) {
                Some(b) => b,
                None => {
                    let wait = st
                        .outbox
                        .due_ms(window)
                        .map_or(IDLE, |due| Duration::from_millis(due.saturating_sub(now)))
                        .clamp(Duration::from_millis(1), IDLE);
                    let _ = service.changed.wait_timeout(st, wait);
                    continue;
                }
            }
        };
        let count = batch.reports.len() + batch.health.len();
        let message = HostReport {
            host: host.clone(),
            sent_ms: now_ms(),
            reports: batch.reports,
            health: batch.health,
        };
        let result = message
            .to_messages(MAX_MESSAGE_BYTES)
            .iter()
            .try_for_each(|m| sink.send(m));
        let mut st = service.lock();
        match result {
            Ok(()) => {
                st.outbox.sent(batch.upto);
                service.save_outbox(&st);
                let pending = st.outbox.len();
                drop(st);
                service.metric(|m| m.reports_sent(count));
                if failing {
                    failing = false;
                    info!(
                        reports = count,
                        pending, "reports reach the reactor's inbox again"
                    );
                }
            }
            Err(e) => {
                let backoff = st.outbox.failed(now_ms());
                let (pending, failures) = (st.outbox.len(), st.outbox.failures());
                drop(st);
                service.metric(|m| m.report_failed());
                if !failing {
                    failing = true;
                    warn!(error = %e, pending, "cannot send reports to the reactor's inbox; they stay in the outbox and are sent again (check [report] queue_url, the instance profile's sqs:SendMessage and the network)");
                } else {
                    tracing::debug!(error = %e, pending, failures, backoff_ms = backoff.as_millis() as u64, "reports still not sent");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use infra::{MemberId, MemberReport, OutcomeStatus, PoolName};
    use std::sync::{Arc, Mutex};

    /// Fails its first `fail` sends, then keeps what it is given.
    struct Flaky {
        fail: usize,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Sink for Flaky {
        fn send(&mut self, body: &str) -> Result<(), String> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err("ServiceUnavailable".into());
            }
            self.got.lock().unwrap().push(body.to_string());
            Ok(())
        }
    }

    fn service(dir: &std::path::Path) -> Arc<Service> {
        let cfg = AgentConfig::parse(&format!(
            "host = \"i-0abc\"\n[haproxy]\nconfig = \"{d}/haproxy.cfg\"\nadmin_socket = \"{d}/admin.sock\"\nstate_dir = \"{d}\"\n[[pool]]\nname = \"web\"\nport = 8080\n[report]\nqueue_url = \"http://127.0.0.1:9/1/inbox\"\nbatch_ms = 0\n",
            d = dir.display()
        ))
        .unwrap();
        Arc::new(Service::open(cfg).unwrap())
    }

    fn report(i: usize) -> MemberReport {
        MemberReport::new(
            PoolName::new("web").unwrap(),
            MemberId::new(format!("i-{i}")).unwrap(),
            9,
            OutcomeStatus::Up,
            None,
            1,
        )
    }

    #[test]
    fn reports_are_sent_again_after_failures_and_leave_the_outbox_only_once_sent() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        for i in 0..3 {
            s.lock().outbox.push(report(i), now_ms());
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Flaky {
            fail: 2,
            got: got.clone(),
        };
        let sender = {
            let s = s.clone();
            std::thread::spawn(move || {
                run(
                    &s,
                    &HostId::new("i-0abc").unwrap(),
                    Duration::ZERO,
                    &mut sink,
                )
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !s.lock().outbox.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.shutdown();
        sender.join().unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            1,
            "one message for the three, after two failed tries"
        );
        let message = HostReport::from_json(&got[0]).unwrap();
        assert_eq!(message.host.as_str(), "i-0abc");
        assert_eq!(message.reports, (0..3).map(report).collect::<Vec<_>>());
        let metrics = s.metrics_text();
        assert!(
            metrics.contains("haproxy_asg_agent_report_send_failures_total 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("haproxy_asg_agent_reports_sent_total 3"),
            "{metrics}"
        );
        // What was sent is gone from the outbox file too.
        let file = std::fs::read_to_string(dir.path().join("reports.json")).unwrap();
        assert!(!file.contains("i-1"), "{file}");
    }

    #[test]
    fn an_outbox_left_by_a_stopped_service_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        s.lock().outbox.push(report(5), now_ms());
        s.save_outbox(&s.lock());
        drop(s);
        let again = service(dir.path());
        assert_eq!(again.lock().outbox.len(), 1);
    }
}
