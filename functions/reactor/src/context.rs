//! What travels with a change so that the event reporting its end can complete the
//! lifecycle actions it serves, with no table anywhere: the actions (group, instance,
//! transition, hooks, token, start), the pools whose outcomes decide them, and the
//! change's generation.
//!
//! It rides in the SSM document's `Context` parameter (base64 of compact JSON, a
//! pattern the document restricts; the agent never reads it), and comes back in the
//! command's status-change event, which carries the command's parameters. Pure.

use base64::Engine as _;
use infra::{MemberId, PoolName};
use serde::{Deserialize, Serialize};

use crate::event::Transition;

/// The context format this build writes and reads.
pub const CONTEXT_VERSION: u32 = 1;

/// Why a context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Not base64.
    #[error("the Context parameter is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Not the expected JSON.
    #[error("the Context parameter is not a completion context: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a build this one does not understand.
    #[error("the Context parameter has version {0}; this reactor reads version {CONTEXT_VERSION}")]
    Version(u32),
}

/// A lifecycle action a change serves, as its status event needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRef {
    /// The Auto Scaling group.
    #[serde(rename = "g")]
    pub group: String,
    /// The instance waiting.
    #[serde(rename = "i")]
    pub instance: MemberId,
    /// Which transition it waits in.
    #[serde(rename = "t")]
    pub transition: Transition,
    /// The hooks to complete.
    #[serde(rename = "h")]
    pub hooks: Vec<String>,
    /// The token the lifecycle event carried, if any.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the action started (ms since the epoch), if known: a drain that outlives
    /// the drain timeout from here is continued anyway.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// The pools whose outcomes decide it.
    #[serde(rename = "p")]
    pub pools: Vec<PoolName>,
}

/// Everything a change's status event needs to complete its actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// [`CONTEXT_VERSION`].
    #[serde(rename = "v")]
    pub version: u32,
    /// The change's generation.
    #[serde(rename = "n")]
    pub generation: u64,
    /// The actions it serves.
    #[serde(rename = "a", default)]
    pub actions: Vec<ActionRef>,
    /// Members it drains that had no lifecycle action yet (a Spot instance drained on
    /// its warning, before Auto Scaling's terminate hook): when the command ends, an
    /// action that has appeared for one of them meanwhile is decided from its reports.
    #[serde(rename = "r", default, skip_serializing_if = "Vec::is_empty")]
    pub riders: Vec<Rider>,
}

/// A member drained by a change without a lifecycle action of its own (yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rider {
    /// Its Auto Scaling group.
    #[serde(rename = "g")]
    pub group: String,
    /// The instance.
    #[serde(rename = "i")]
    pub instance: MemberId,
}

impl Context {
    /// A context of this build's version.
    pub fn new(generation: u64, actions: Vec<ActionRef>) -> Self {
        Self {
            version: CONTEXT_VERSION,
            generation,
            actions,
            riders: Vec::new(),
        }
    }

    /// The parameter's value: base64 of the compact JSON.
    pub fn encode(&self) -> String {
        // Serialising plain strings and numbers can not fail; an empty value means "no
        // context" to the reader, never a wrong one.
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Reads a parameter value; an empty one is no context.
    pub fn decode(value: &str) -> Result<Option<Self>, ContextError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(value)?;
        let c: Self = serde_json::from_slice(&bytes)?;
        if c.version != CONTEXT_VERSION {
            return Err(ContextError::Version(c.version));
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> ActionRef {
        ActionRef {
            group: "web-asg".into(),
            instance: MemberId::new("i-0abc").unwrap(),
            transition: Transition::Terminate,
            hooks: vec!["r-terminate".into()],
            token: Some("87654321-4321-4321-4321-210987654321".into()),
            started_ms: Some(1_764_000_000_000),
            pools: vec![PoolName::new("web").unwrap()],
        }
    }

    #[test]
    fn a_context_round_trips_and_fits_the_documents_pattern() {
        let mut c = Context::new(42, vec![action()]);
        c.riders.push(Rider {
            group: "web-asg".into(),
            instance: MemberId::new("i-0def").unwrap(),
        });
        let text = c.encode();
        assert!(text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "+/=".contains(ch)));
        assert_eq!(text.len() % 4, 0, "padded base64, as the pattern wants");
        assert_eq!(Context::decode(&text).unwrap(), Some(c));
        assert_eq!(Context::decode("").unwrap(), None);
    }

    #[test]
    fn a_bad_context_is_an_error_naming_why() {
        assert!(Context::decode("not base64!")
            .unwrap_err()
            .to_string()
            .contains("base64"));
        let json = base64::engine::general_purpose::STANDARD.encode("{\"v\":1}");
        assert!(Context::decode(&json)
            .unwrap_err()
            .to_string()
            .contains("completion context"));
        let v2 = base64::engine::general_purpose::STANDARD.encode("{\"v\":2,\"n\":1}");
        assert!(Context::decode(&v2)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        // A member id that could break a command line is refused on the way in too.
        let bad = Context::new(1, vec![action()]).encode();
        let json = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(bad)
                .unwrap(),
        )
        .unwrap()
        .replace("i-0abc", "i-0abc;reboot");
        let bad = base64::engine::general_purpose::STANDARD.encode(json);
        assert!(Context::decode(&bad).is_err());
    }
}
