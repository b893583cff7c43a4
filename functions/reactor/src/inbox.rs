//! The inbox: the SQS queue every input reaches the reactor through, as Lambda's event
//! source mapping delivers it (a batch of records), and the answer that names the
//! records to retry. Pure.
//!
//! A record's body is either an EventBridge event (the rules target the queue) or a
//! host report ([`infra::HostReport`], sent by an agent service with its instance
//! profile). Who sent it is SQS's `SenderId`, which AWS sets from the sender's
//! credentials: for an instance profile's role session, `<role unique id>:<instance
//! id>`. A report is believed only when that is `PROXY_ROLE_ID:<the host it names>`;
//! an event body sent from a proxy's session is refused. Neither kind of refusal is
//! retried: it is logged, counted and acknowledged.

use infra::HostReport;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::input::lifecycle::LifecycleEvent;
use crate::input::report::HostMessage;
use crate::input::{classify, Input};

/// One record of a batch, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its message id (what the answer names to retry it).
    pub id: String,
    /// What it says.
    pub input: Input,
    /// Why it was refused as forged, if it was.
    pub forged: Option<String>,
}

#[derive(Deserialize)]
struct SqsEvent {
    #[serde(rename = "Records")]
    records: Vec<SqsRecord>,
}

#[derive(Deserialize)]
struct SqsRecord {
    #[serde(rename = "messageId", default)]
    message_id: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    attributes: SqsAttributes,
}

#[derive(Deserialize, Default)]
struct SqsAttributes {
    #[serde(rename = "SenderId", default)]
    sender_id: String,
    /// How many times SQS has handed the message out, this time included ("1" the
    /// first time); absent or unreadable reads as the first.
    #[serde(rename = "ApproximateReceiveCount", default)]
    receive_count: String,
}

impl SqsAttributes {
    /// The inbox handed the message out before (a batch that had it failed).
    fn redelivered(&self) -> bool {
        self.receive_count.parse::<u32>().is_ok_and(|n| n > 1)
    }
}

/// The records of an SQS batch, or `None` when `payload` is not one (a bare event).
pub fn records(payload: &Value, proxy_role_id: &str) -> Option<Vec<Record>> {
    payload.get("Records")?;
    let batch: SqsEvent = match SqsEvent::deserialize(payload) {
        Ok(b) => b,
        Err(e) => {
            return Some(vec![Record {
                id: String::new(),
                input: Input::Ignored(format!("an SQS batch that can not be read: {e}")),
                forged: None,
            }])
        }
    };
    Some(
        batch
            .records
            .into_iter()
            .map(|r| record(r, proxy_role_id))
            .collect(),
    )
}

fn record(r: SqsRecord, proxy_role_id: &str) -> Record {
    let id = r.message_id;
    let redelivered = r.attributes.redelivered();
    let sender = r.attributes.sender_id;
    let refuse = |id: String, why: String| Record {
        id,
        input: Input::Ignored(why.clone()),
        forged: Some(why),
    };
    let body: Value = match serde_json::from_str(&r.body) {
        Ok(v) => v,
        Err(e) => {
            return Record {
                id,
                input: Input::Ignored(format!("message {} is not JSON: {e}", short(&r.body))),
                forged: None,
            }
        }
    };
    let session = sender
        .strip_prefix(proxy_role_id)
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|_| !proxy_role_id.is_empty());
    if HostReport::is_host_report(&body) {
        return report_record(id, &r.body, session, &sender, proxy_role_id);
    }
    if let Some(instance) = session {
        if crate::input::recheck::Recheck::is_recheck(&body) {
            return refuse(
                id,
                format!("a reminder sent by proxy {instance}: refused (proxies send reports only)"),
            );
        }
        return refuse(
            id,
            format!("an event body sent by proxy {instance}: refused (events come from EventBridge only)"),
        );
    }
    if crate::input::recheck::Recheck::is_recheck(&body) {
        use crate::input::recheck::Recheck;
        let input = match (
            Recheck::from_json(&r.body),
            Recheck::health_from_json(&r.body),
        ) {
            (Ok(keys), Ok(health)) if health.is_empty() => Input::Recheck(keys),
            (Ok(_), Ok(health)) => Input::HealthRecheck(health),
            (Err(e), _) | (_, Err(e)) => Input::Ignored(e),
        };
        return Record {
            id,
            input,
            forged: None,
        };
    }
    let input = match classify(&body) {
        Input::Lifecycle(e) => Input::Lifecycle(LifecycleEvent { redelivered, ..e }),
        other => other,
    };
    Record {
        id,
        input,
        forged: None,
    }
}

/// A record whose body is a host report: believed only from the session of the host it
/// names.
fn report_record(
    id: String,
    body: &str,
    session: Option<&str>,
    sender: &str,
    role: &str,
) -> Record {
    let report = match HostReport::from_json(body) {
        Ok(report) => report,
        Err(e) => {
            return Record {
                id,
                input: Input::Ignored(format!("a host report that can not be read: {e}")),
                forged: None,
            }
        }
    };
    let why = match session {
        Some(instance) if instance == report.host.as_str() => {
            return Record {
                id,
                input: Input::Report(HostMessage {
                    host: report.host.clone(),
                    report,
                }),
                forged: None,
            }
        }
        Some(instance) => format!(
            "a report naming host {} sent by proxy {instance}: refused (a proxy reports only for itself)",
            report.host
        ),
        None => format!(
            "a report naming host {} sent by {sender:?}, not a session of the proxy role (PROXY_ROLE_ID {role}): refused",
            report.host
        ),
    };
    Record {
        id,
        input: Input::Ignored(why.clone()),
        forged: Some(why),
    }
}

fn short(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    format!("{cut:?}")
}

/// The answer to a batch: the records to retry (`ReportBatchItemFailures`).
pub fn batch_response(failed: &[String]) -> Value {
    json!({
        "batchItemFailures": failed
            .iter()
            .filter(|id| !id.is_empty())
            .map(|id| json!({"itemIdentifier": id}))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::samples::sample;
    use infra::{HostId, MemberId, MemberReport, OutcomeStatus, PoolName, MAX_MESSAGE_BYTES};

    const ROLE: &str = "AROAEXAMPLEPROXYROLE";

    fn report_body(host: &str) -> String {
        HostReport {
            host: HostId::new(host).unwrap(),
            sent_ms: 1,
            reports: vec![MemberReport::new(
                PoolName::new("web").unwrap(),
                MemberId::new("i-1").unwrap(),
                5,
                OutcomeStatus::Up,
                None,
                3,
            )],
            health: Vec::new(),
        }
        .to_messages(MAX_MESSAGE_BYTES)
        .remove(0)
    }

    /// AWS's sample SQS event with `bodies` as its records' bodies and senders.
    fn batch(bodies: &[(&str, String)]) -> Value {
        let mut event = sample("sqs-lambda-event");
        let template = event["Records"][0].clone();
        event["Records"] = bodies
            .iter()
            .enumerate()
            .map(|(i, (sender, body))| {
                let mut r = template.clone();
                r["messageId"] = json!(format!("m-{i}"));
                r["body"] = json!(body);
                r["attributes"]["SenderId"] = json!(sender);
                r
            })
            .collect();
        event
    }

    #[test]
    fn reports_are_believed_only_from_the_host_they_name() {
        let own = format!("{ROLE}:i-0aaa");
        let other = format!("{ROLE}:i-0bbb");
        let event = sample("launch-lifecycle-action").to_string();
        let records = records(
            &batch(&[
                (&own, report_body("i-0aaa")),
                (&other, report_body("i-0aaa")),
                ("AIDAUSERKEY", report_body("i-0aaa")),
                ("AIDAEVENTBRIDGE", event.clone()),
                (&own, event),
                ("AIDA", "not json".into()),
            ]),
            ROLE,
        )
        .unwrap();
        assert_eq!(records.len(), 6);
        assert!(matches!(&records[0].input, Input::Report(m) if m.host.as_str() == "i-0aaa"));
        assert!(records[1]
            .forged
            .as_deref()
            .is_some_and(|w| w.contains("sent by proxy i-0bbb")));
        assert!(records[2]
            .forged
            .as_deref()
            .is_some_and(|w| w.contains("not a session of the proxy role")));
        assert!(matches!(records[3].input, Input::Lifecycle(_)));
        assert!(records[4]
            .forged
            .as_deref()
            .is_some_and(|w| w.contains("event body sent by proxy")));
        assert!(matches!(&records[5].input, Input::Ignored(w) if w.contains("not JSON")));
        assert!(records[5].forged.is_none());
    }

    #[test]
    fn a_bare_event_is_not_a_batch_and_the_answer_names_the_failures() {
        assert!(records(&sample("scheduled-event"), ROLE).is_none());
        assert_eq!(
            batch_response(&["m-1".into(), String::new()]),
            json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
        // The documented shape of the answer.
        let documented = sample("sqs-batch-response");
        assert!(documented["batchItemFailures"].is_array());
        assert_eq!(batch_response(&[]), json!({"batchItemFailures": []}));
    }
}
