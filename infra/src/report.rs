//! What the agent answers: one outcome per member it was asked about.
//!
//! The reactor reads this from each host (SSM keeps only the first 24,000 characters of
//! output, so the keys are short and the form compact) and completes lifecycle actions
//! from it: CONTINUE a launch only when every host says `up`, CONTINUE a termination
//! once every host says `drained`.

use serde::{Deserialize, Serialize};

use crate::model::{MemberId, PoolName};

/// Where a member ended up on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Serving: passed its health checks on this host.
    Up,
    /// Out of the pool: drained (or never there) and its slot released.
    Drained,
    /// Did not reach its target; `reason` says why.
    Failed,
    /// Not applied: the host already holds a newer decision about this member.
    Stale,
    /// Sent to HAProxy but not waited for (`--no-wait`): health checks or the drain
    /// are still running; a later apply or sync confirms it.
    Pending,
}

impl OutcomeStatus {
    /// Whether the member reached what was asked (stale counts: a newer decision rules).
    pub fn is_success(self) -> bool {
        !matches!(self, Self::Failed)
    }
}

impl std::fmt::Display for OutcomeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Up => "UP",
            Self::Drained => "DRAINED",
            Self::Failed => "FAILED",
            Self::Stale => "STALE",
            Self::Pending => "PENDING",
        })
    }
}

/// The result for one member on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The pool it belongs to.
    pub pool: PoolName,
    /// The member.
    pub member: MemberId,
    /// The HAProxy server (slot) name it holds or held, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Where it ended up.
    pub status: OutcomeStatus,
    /// Why, when it failed, was stale or was drained by force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long this member's part took, in milliseconds.
    pub ms: u64,
}

/// Everything one host reports for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The host (its hostname) that applied the message.
    pub host: String,
    /// The message's generation.
    pub generation: u64,
    /// Whether every member reached its target.
    pub ok: bool,
    /// HAProxy reloads this message caused (slot growth).
    pub reloads: u32,
    /// One entry per member named in the message.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Reads a report (the agent's `--json` output).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
