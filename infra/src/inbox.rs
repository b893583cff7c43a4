//! What an agent service tells the reactor's inbox: the members that reached their
//! target on its host.
//!
//! ```json
//! {"kind": "haproxy-asg.host-report", "version": 1, "host": "i-0123456789abcdef0",
//!  "sent_ms": 1764000000123,
//!  "reports": [{"pool": "web", "member": "i-0aaa", "generation": 1764000000001,
//!               "status": "up", "ms": 520}]}
//! ```
//!
//! A message may also carry `health`: members whose health checks changed on the host
//! after they had been UP there (`{"pool": "web", "member": "i-0aaa", "healthy": false,
//! "since_ms": 1764000000100}`), which the reactor weighs against the other proxies'
//! before it tells Auto Scaling an instance is unhealthy. An older reactor refuses a
//! message carrying it: upgrade the reactor first.
//!
//! The agent sends one when operations end (reports finished within a few milliseconds
//! share a message) as an SQS message to the reactor's inbox; the reactor records each
//! in its lifecycle ledger. `host` is the proxy's instance id, and the reactor believes
//! it only when SQS's `SenderId` (the instance profile's role session, which is the
//! instance id) says the same. A message is at most [`MAX_MESSAGE_BYTES`]: more reports
//! are split over several ([`HostReport::to_messages`]).

use serde::{Deserialize, Serialize};

use crate::change::MessageError;
use crate::model::{HostId, MemberId, PoolName};
use crate::report::OutcomeStatus;

/// The `kind` every host report carries (the inbox also holds EventBridge events).
pub const HOST_REPORT_KIND: &str = "haproxy-asg.host-report";
/// The host report format this build writes and reads.
pub const HOST_REPORT_VERSION: u32 = 1;
/// The largest message written: SQS takes 262,144 bytes; the rest is headroom.
pub const MAX_MESSAGE_BYTES: usize = 250_000;
/// The longest reason kept in a report (longer ones are cut, on a char boundary).
pub const MAX_REASON_CHARS: usize = 1_000;

const EXAMPLE: &str = r#"{"kind":"haproxy-asg.host-report","version":1,"host":"i-0abc","sent_ms":1,"reports":[{"pool":"web","member":"i-1","generation":1,"status":"up","ms":5}]}"#;

/// One member that reached (or failed to reach) its target on the reporting host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberReport {
    /// The pool (HAProxy backend).
    pub pool: PoolName,
    /// The member.
    pub member: MemberId,
    /// The newest generation that asked for this target on the host: a change that
    /// found the member already converging under an earlier one is named here too.
    pub generation: u64,
    /// `up`, `drained`, `failed` (a join that did not pass its checks) or `stale` (the
    /// host holds a newer decision about the member); never `pending`.
    pub status: OutcomeStatus,
    /// Why, when it failed, was stale or was drained by force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long the operation took on the host, ms.
    pub ms: u64,
}

impl MemberReport {
    /// A report with its reason bounded to [`MAX_REASON_CHARS`].
    pub fn new(
        pool: PoolName,
        member: MemberId,
        generation: u64,
        status: OutcomeStatus,
        reason: Option<String>,
        ms: u64,
    ) -> Self {
        Self {
            pool,
            member,
            generation,
            status,
            reason: reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
            ms,
        }
    }
}

/// A member whose health checks changed on the reporting host after it had been UP
/// there: DOWN (`healthy` false) or back UP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    /// The pool (HAProxy backend).
    pub pool: PoolName,
    /// The member.
    pub member: MemberId,
    /// Whether HAProxy sees it UP now.
    pub healthy: bool,
    /// When HAProxy saw it change (the host's clock, ms since the epoch).
    pub since_ms: u64,
}

/// Everything one message of a host says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// The reporting proxy (its instance id).
    pub host: HostId,
    /// When the message was written (the host's clock, ms since the epoch).
    pub sent_ms: u64,
    /// The members that reached (or failed to reach) their target.
    pub reports: Vec<MemberReport>,
    /// Members whose health changed after they were UP.
    pub health: Vec<HealthReport>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    kind: String,
    version: u32,
    host: HostId,
    sent_ms: u64,
    reports: Vec<MemberReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    health: Vec<HealthReport>,
}

impl HostReport {
    /// Whether `body` looks like a host report at all (its `kind`), so that the inbox
    /// can tell reports from events before it reads either.
    pub fn is_host_report(body: &serde_json::Value) -> bool {
        body.get("kind").and_then(serde_json::Value::as_str) == Some(HOST_REPORT_KIND)
    }

    /// Reads a message, refusing anything that is not a valid report whole.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        let wire: Wire = serde_json::from_str(text).map_err(|source| MessageError::Json {
            kind: "host report",
            source,
            example: EXAMPLE,
        })?;
        if wire.kind != HOST_REPORT_KIND {
            return Err(MessageError::Invalid {
                kind: "host report",
                reason: format!("kind is {:?}, expected {HOST_REPORT_KIND:?}", wire.kind),
            });
        }
        if wire.version != HOST_REPORT_VERSION {
            return Err(MessageError::Version {
                kind: "host report",
                found: wire.version,
            });
        }
        if let Some(r) = wire
            .reports
            .iter()
            .find(|r| r.status == OutcomeStatus::Pending)
        {
            return Err(MessageError::Invalid {
                kind: "host report",
                reason: format!(
                    "member {} of pool {} is reported pending: only final outcomes are reported",
                    r.member, r.pool
                ),
            });
        }
        Ok(Self {
            host: wire.host,
            sent_ms: wire.sent_ms,
            reports: wire.reports,
            health: wire.health,
        })
    }

    fn wire(&self, reports: &[MemberReport], health: &[HealthReport]) -> String {
        let wire = Wire {
            kind: HOST_REPORT_KIND.into(),
            version: HOST_REPORT_VERSION,
            host: self.host.clone(),
            sent_ms: self.sent_ms,
            reports: reports.to_vec(),
            health: health.to_vec(),
        };
        // Plain strings and numbers: serialising can not fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// The report as messages of at most `max_bytes` each (every report in exactly one,
    /// in order; the health changes in the first, which is never larger than the
    /// limit for them: a host has far fewer members than a message holds). A single
    /// report larger than that on its own (it can not be: reasons are bounded) would
    /// still get a message of its own.
    pub fn to_messages(&self, max_bytes: usize) -> Vec<String> {
        let mut health: &[HealthReport] = &self.health;
        let envelope = self.wire(&[], health).len();
        let mut out = Vec::new();
        let mut start = 0;
        let mut size = envelope;
        for (i, r) in self.reports.iter().enumerate() {
            let len = serde_json::to_string(r).map(|s| s.len()).unwrap_or(0) + 1;
            if size + len > max_bytes && i > start {
                out.push(self.wire(self.reports.get(start..i).unwrap_or_default(), health));
                health = &[];
                start = i;
                size = self.wire(&[], &[]).len();
            }
            size += len;
        }
        if start < self.reports.len() || out.is_empty() {
            out.push(self.wire(self.reports.get(start..).unwrap_or_default(), health));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(member: &str, status: OutcomeStatus) -> MemberReport {
        MemberReport::new(
            PoolName::new("web").unwrap(),
            MemberId::new(member).unwrap(),
            7,
            status,
            (status == OutcomeStatus::Failed).then(|| "x".repeat(5_000)),
            12,
        )
    }

    fn host_report(n: usize) -> HostReport {
        HostReport {
            host: HostId::new("i-0123456789abcdef0").unwrap(),
            sent_ms: 1_764_000_000_123,
            reports: (0..n)
                .map(|i| report(&format!("i-{i}"), OutcomeStatus::Up))
                .collect(),
            health: Vec::new(),
        }
    }

    #[test]
    fn a_report_round_trips_and_is_told_from_an_event() {
        let mut r = host_report(2);
        r.reports.push(report("i-9", OutcomeStatus::Failed));
        let messages = r.to_messages(MAX_MESSAGE_BYTES);
        assert_eq!(messages.len(), 1);
        let back = HostReport::from_json(&messages[0]).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            back.reports[2].reason.as_ref().map(|s| s.chars().count()),
            Some(MAX_REASON_CHARS)
        );
        let v: serde_json::Value = serde_json::from_str(&messages[0]).unwrap();
        assert!(HostReport::is_host_report(&v));
        let event = serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events"});
        assert!(!HostReport::is_host_report(&event));
    }

    #[test]
    fn a_large_report_is_split_into_messages_under_the_limit() {
        let r = host_report(5_000);
        let messages = r.to_messages(MAX_MESSAGE_BYTES);
        assert!(messages.len() > 1, "{} message(s)", messages.len());
        let mut members = Vec::new();
        for m in &messages {
            assert!(m.len() <= MAX_MESSAGE_BYTES, "{} bytes", m.len());
            members.extend(HostReport::from_json(m).unwrap().reports);
        }
        assert_eq!(members, r.reports);
        // Tiny limits still put every report somewhere, once.
        let tiny = host_report(3).to_messages(10);
        assert_eq!(tiny.len(), 3);
        assert_eq!(host_report(0).to_messages(MAX_MESSAGE_BYTES).len(), 1);
    }

    #[test]
    fn health_changes_ride_in_the_first_message_and_old_messages_read_without_them() {
        let mut r = host_report(5_000);
        r.health.push(HealthReport {
            pool: PoolName::new("web").unwrap(),
            member: MemberId::new("i-7").unwrap(),
            healthy: false,
            since_ms: 1_764_000_000_000,
        });
        let messages = r.to_messages(MAX_MESSAGE_BYTES);
        assert!(messages.len() > 1);
        let read: Vec<HostReport> = messages
            .iter()
            .map(|m| HostReport::from_json(m).unwrap())
            .collect();
        assert_eq!(read[0].health, r.health);
        assert!(read[1..].iter().all(|m| m.health.is_empty()));
        let plain = host_report(1).to_messages(MAX_MESSAGE_BYTES).remove(0);
        assert!(!plain.contains("health"), "{plain}");
        assert!(HostReport::from_json(&plain).unwrap().health.is_empty());
    }

    #[test]
    fn bad_reports_are_refused_with_the_reason() {
        let ok = host_report(1).to_messages(MAX_MESSAGE_BYTES).remove(0);
        let e = HostReport::from_json(&ok.replace("host-report", "other"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected \"haproxy-asg.host-report\""), "{e}");
        let e = HostReport::from_json(&ok.replace("\"version\":1", "\"version\":2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 2"), "{e}");
        let e = HostReport::from_json(&ok.replace("\"up\"", "\"pending\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only final outcomes"), "{e}");
        let e = HostReport::from_json(&ok.replace("i-0123456789abcdef0", "i-1;reboot"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid host id"), "{e}");
        assert!(HostReport::from_json("{").is_err());
    }
}
