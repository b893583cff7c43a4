//! What one invocation did: its answer to a direct invocation, its last log line, and
//! what its metrics are made of ([`crate::metrics`]).

use std::collections::BTreeMap;

use infra::GroupName;
use serde::Serialize;

/// One lifecycle action's fate in this invocation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActionSummary {
    /// The group.
    pub group: GroupName,
    /// The instance.
    pub instance: String,
    /// `launch` or `terminate`.
    pub transition: String,
    /// `CONTINUE`, `ABANDON`, or `WAIT` (sent, waiting for the hosts' reports).
    pub decision: String,
    /// Why.
    pub reason: String,
    /// Whether Auto Scaling took the completion (false: it was no longer pending).
    pub completed: bool,
}

/// Route 53 work done.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DnsSummary {
    /// Records created or replaced.
    pub upserts: usize,
    /// Records deleted.
    pub deletes: usize,
    /// `ChangeResourceRecordSets` requests.
    pub requests: usize,
}

/// One change sent to the proxies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SentChange {
    /// What it was for (a group, `(reconcile)`).
    pub label: String,
    /// Its generation.
    pub generation: u64,
    /// The Run Command commands carrying it.
    pub commands: Vec<String>,
    /// How many hosts it went to.
    pub hosts: usize,
    /// The change (members added and removed per pool).
    pub change: infra::Change,
    /// When it went out (ms since the epoch).
    pub sent_ms: u64,
    /// The earliest time of the events it answers (ms since the epoch), if they said.
    #[serde(skip)]
    pub event_ms: Option<u64>,
    /// The kind of input that sent it.
    #[serde(skip)]
    pub kind: String,
}

/// What the hosts' reports did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReportsSummary {
    /// Member reports recorded in the ledger.
    pub applied: usize,
    /// Member reports that changed nothing (duplicates, late, no open action...).
    pub ignored: usize,
    /// Messages refused because their sender is not the host they name, or not a proxy.
    pub forged: usize,
    /// Hosts dropped from an action's quorum (silent, or out of service): `host action`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts_dropped: Vec<String>,
}

/// Lifecycle actions open when the schedule ran.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PendingSummary {
    /// How many.
    pub actions: usize,
    /// How long the oldest has been open (s); 0 when none is.
    pub max_age_s: u64,
}

/// What one invocation did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Records (inputs) handled, by kind.
    pub inputs: BTreeMap<String, usize>,
    /// Why inputs were ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// The groups it touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupName>,
    /// The changes sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<SentChange>,
    /// Lifecycle actions decided (or sent, waiting for the hosts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionSummary>,
    /// Lifecycle actions whose heartbeat was recorded (`transition instance`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<String>,
    /// What the hosts' reports did.
    pub reports: ReportsSummary,
    /// Route 53 work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSummary>,
    /// Anything else worth knowing (late events, members without address...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Group tags that were not followed (tags only narrow), once each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags_refused: Vec<String>,
    /// The schedule's count of open lifecycle actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingSummary>,
    /// Members set unhealthy in Auto Scaling from the proxies' health checks, with the
    /// evidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
    /// Members the proxies see down but held back by `MAX_UNHEALTHY_FRACTION`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_held: Vec<String>,
    /// Records given back to the queue to be retried (their message ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// Why they were (one line per input that failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The kind of an invocation, or of a change, that serves inputs of several kinds.
pub const MIXED: &str = "mixed";

impl Summary {
    /// Notes `s`, and logs it.
    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        tracing::info!(note = %s);
        self.notes.push(s);
    }

    /// Notes a refused group tag (once per invocation), and logs it as a warning.
    pub fn tag_refused(&mut self, refused: &infra::aws::TagRefused) {
        let s = refused.to_string();
        if !self.tags_refused.contains(&s) {
            tracing::warn!(group = %refused.group, tag = refused.tag, refused = %s, "a group tag was refused");
            self.tags_refused.push(s);
        }
    }

    /// Notes why an input was ignored, and logs it.
    pub fn ignore(&mut self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::info!(reason = %reason, "input ignored");
        self.ignored.push(reason);
    }

    /// The one kind of input handled, or [`MIXED`].
    pub fn kind(&self) -> String {
        match self.inputs.keys().collect::<Vec<_>>().as_slice() {
            [] => "empty".into(),
            [one] => (*one).clone(),
            _ => MIXED.into(),
        }
    }

    /// The decision this invocation recorded for `transition` of `instance`, if any.
    pub fn decision(&self, instance: &str, transition: &str) -> Option<&ActionSummary> {
        self.actions
            .iter()
            .find(|a| a.instance == instance && a.transition == transition)
    }
}
