//! A reminder the reactor set itself ([`crate::remind`]): "look at these lifecycle
//! actions again". Not an AWS event: an SQS message of the inbox, delayed by SQS, whose
//! body lists the actions:
//!
//! ```json
//! {"kind": "haproxy-asg.recheck", "version": 1, "actions": ["i-0aaa#launch", "i-0bbb#terminate"]}
//! ```
//!
//! Each action still open is looked at as the schedule would, in the pass that records
//! the batch's host reports ([`crate::input::report`]): hosts silent past
//! `HOST_REPORT_TIMEOUT_S` after another reported are dropped from its quorum, and what
//! is decided then is completed. A reminder can only make the reactor look again, so its
//! sender does not matter (a proxy's is refused all the same: proxies send reports only).

use infra::MemberId;
use serde::{Deserialize, Serialize};

use crate::ledger::ActionKey;
use crate::lifecycle::Transition;

/// The `kind` of a reminder.
pub const RECHECK_KIND: &str = "haproxy-asg.recheck";
/// Actions per message (an id is at most 140 bytes: far below SQS's 256 KiB).
const PER_MESSAGE: usize = 1_000;

/// A reminder's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recheck {
    kind: String,
    version: u32,
    /// The actions, as ledger ids (`<instance>#<launch|terminate>`).
    #[serde(default)]
    actions: Vec<String>,
    /// Members whose health watch to look at again ([`crate::health`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    health: Vec<MemberId>,
}

impl Recheck {
    /// The messages reminding of `actions`.
    pub fn messages(actions: &[ActionKey]) -> Vec<String> {
        actions
            .chunks(PER_MESSAGE)
            .map(|c| {
                let r = Recheck {
                    kind: RECHECK_KIND.into(),
                    version: 1,
                    actions: c.iter().map(ActionKey::id).collect(),
                    health: Vec::new(),
                };
                serde_json::to_string(&r).unwrap_or_default()
            })
            .collect()
    }

    /// The messages reminding of the health watches of `members`.
    pub fn health_messages(members: &[MemberId]) -> Vec<String> {
        members
            .chunks(PER_MESSAGE)
            .map(|c| {
                let r = Recheck {
                    kind: RECHECK_KIND.into(),
                    version: 1,
                    actions: Vec::new(),
                    health: c.to_vec(),
                };
                serde_json::to_string(&r).unwrap_or_default()
            })
            .collect()
    }

    /// The members whose health watch a reminder's body names (none for one about
    /// actions).
    pub fn health_from_json(text: &str) -> Result<Vec<MemberId>, String> {
        let r: Recheck = serde_json::from_str(text)
            .map_err(|e| format!("a reminder that can not be read: {e}"))?;
        Ok(r.health)
    }

    /// Whether a message body is a reminder.
    pub fn is_recheck(body: &serde_json::Value) -> bool {
        body.get("kind").and_then(serde_json::Value::as_str) == Some(RECHECK_KIND)
    }

    /// The actions of a reminder's body; an id that is not one is an error naming it.
    pub fn from_json(text: &str) -> Result<Vec<ActionKey>, String> {
        let r: Recheck = serde_json::from_str(text)
            .map_err(|e| format!("a reminder that can not be read: {e}"))?;
        r.actions
            .iter()
            .map(|id| {
                let (instance, transition) = id
                    .rsplit_once('#')
                    .ok_or_else(|| format!("{id:?} is not an action id"))?;
                let transition = match transition {
                    "launch" => Transition::Launch,
                    "terminate" => Transition::Terminate,
                    other => return Err(format!("{other:?} is not a transition")),
                };
                let instance = MemberId::new(instance).map_err(|e| e.to_string())?;
                Ok(ActionKey {
                    instance,
                    transition,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_round_trips_and_bad_ones_are_refused() {
        let keys = vec![
            ActionKey {
                instance: MemberId::new("i-1").unwrap(),
                transition: Transition::Launch,
            },
            ActionKey {
                instance: MemberId::new("i-2").unwrap(),
                transition: Transition::Terminate,
            },
        ];
        let m = Recheck::messages(&keys);
        assert_eq!(m.len(), 1);
        assert!(Recheck::is_recheck(&serde_json::from_str(&m[0]).unwrap()));
        assert_eq!(Recheck::from_json(&m[0]).unwrap(), keys);
        assert!(Recheck::from_json(&m[0].replace("launch", "jump"))
            .unwrap_err()
            .contains("not a transition"));
        assert!(Recheck::from_json(&m[0].replace("i-1#", "i 1#")).is_err());
        assert!(Recheck::from_json("{}").is_err());
        assert_eq!(Recheck::messages(&vec![keys[0].clone(); 2_500]).len(), 3);
    }
}
