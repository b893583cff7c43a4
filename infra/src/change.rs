//! The messages the reactor sends to the agent.
//!
//! ```json
//! {"version": 1, "generation": 1732262400123,
//!  "pools": [{"pool": "web",
//!             "add": [{"id": "i-0abc", "address": "10.0.1.23", "port": 8080}],
//!             "remove": ["i-0def"]}]}
//! ```
//!
//! A [`Change`] is a delta (bring these members up, drain and release those); a
//! [`Desired`] is the whole membership of each pool it names. Both carry a
//! `generation`: the agent remembers, per member, the generation of the last message
//! that touched it and ignores anything older, so duplicated, reordered or late
//! messages can never undo a newer decision. The reactor uses the time (in ms) at which
//! it read the group's state as the generation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Member, MemberId, PoolName};

/// The message format version this build reads and writes.
pub const MESSAGE_VERSION: u32 = 1;

/// How far ahead of a reader's clock a generation may be (five minutes: generations are
/// read times, and clocks kept by NTP differ by far less): the agent refuses a message
/// further ahead, and the reactor a host report. One generation far in the future would
/// make every later change about its members (or every later report of that host) look
/// older.
pub const MAX_GENERATION_AHEAD_MS: u64 = 300_000;

/// Why a message was refused. Nothing of a refused message is applied.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or a field with the wrong shape or an invalid value.
    #[error("malformed {kind} message: {source}. Expected JSON like {example}")]
    Json {
        /// Which message was being read.
        kind: &'static str,
        /// The parser's reason, with line and column.
        source: serde_json::Error,
        /// A minimal valid message to compare with.
        example: &'static str,
    },
    /// A version this build does not know.
    #[error("unsupported {kind} message version {found}: this agent reads version {MESSAGE_VERSION}; upgrade the older side")]
    Version {
        /// Which message was being read.
        kind: &'static str,
        /// The version in the message.
        found: u32,
    },
    /// A contradiction inside the message.
    #[error("invalid {kind} message: {reason}")]
    Invalid {
        /// Which message was being read.
        kind: &'static str,
        /// What is contradictory.
        reason: String,
    },
}

const CHANGE_EXAMPLE: &str = r#"{"version":1,"generation":1,"pools":[{"pool":"web","add":[{"id":"i-1","address":"10.0.0.5","port":8080}],"remove":[]}]}"#;
const DESIRED_EXAMPLE: &str = r#"{"version":1,"generation":1,"pools":[{"pool":"web","members":[{"id":"i-1","address":"10.0.0.5","port":8080}]}]}"#;

/// Members to bring up and members to drain and release, per pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// Grows with every decision; older messages lose against newer ones.
    pub generation: u64,
    /// The pools this change touches.
    pub pools: Vec<PoolChange>,
}

/// The part of a [`Change`] for one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolChange {
    /// The pool (HAProxy backend) name.
    pub pool: PoolName,
    /// Members that should be serving: each takes a slot and is brought up once healthy.
    #[serde(default)]
    pub add: Vec<Member>,
    /// Members that should leave: drained, then their slot is released.
    #[serde(default)]
    pub remove: Vec<MemberId>,
    /// For some of `remove`: the time (ms since the epoch) by which their drain must end,
    /// sooner than the pool's drain timeout would (a Spot instance reclaimed two minutes
    /// after its warning). Sessions still open then are shut.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drain_by_ms: BTreeMap<MemberId, u64>,
}

/// The complete membership of some pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// Grows with every decision; see [`Change::generation`].
    pub generation: u64,
    /// Pools named here are converged to exactly their member list; others are untouched.
    pub pools: Vec<PoolDesired>,
}

/// The complete membership of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDesired {
    /// The pool (HAProxy backend) name.
    pub pool: PoolName,
    /// Every member that should be serving; anything else in the pool is drained.
    pub members: Vec<Member>,
}

fn check_version(kind: &'static str, v: u32) -> Result<(), MessageError> {
    if v != MESSAGE_VERSION {
        return Err(MessageError::Version { kind, found: v });
    }
    Ok(())
}

fn check_unique_pools<'a>(
    kind: &'static str,
    pools: impl Iterator<Item = &'a PoolName>,
) -> Result<(), MessageError> {
    let mut seen = BTreeSet::new();
    for p in pools {
        if !seen.insert(p) {
            return Err(MessageError::Invalid {
                kind,
                reason: format!("pool {p} appears twice; merge its entries"),
            });
        }
    }
    Ok(())
}

fn check_unique_members<'a>(
    kind: &'static str,
    pool: &PoolName,
    ids: impl Iterator<Item = &'a MemberId>,
) -> Result<(), MessageError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(MessageError::Invalid {
                kind,
                reason: format!("member {id} appears more than once in pool {pool}"),
            });
        }
    }
    Ok(())
}

impl Change {
    /// Builds a change of the current version.
    pub fn new(generation: u64, pools: Vec<PoolChange>) -> Self {
        Self {
            version: MESSAGE_VERSION,
            generation,
            pools,
        }
    }

    /// Parses and validates a change; a refused message is refused whole.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        const KIND: &str = "change";
        let c: Change = serde_json::from_str(text).map_err(|source| MessageError::Json {
            kind: KIND,
            source,
            example: CHANGE_EXAMPLE,
        })?;
        check_version(KIND, c.version)?;
        check_unique_pools(KIND, c.pools.iter().map(|p| &p.pool))?;
        for p in &c.pools {
            check_unique_members(
                KIND,
                &p.pool,
                p.add.iter().map(|m| &m.id).chain(p.remove.iter()),
            )?;
            if let Some(id) = p.drain_by_ms.keys().find(|id| !p.remove.contains(id)) {
                return Err(MessageError::Invalid {
                    kind: KIND,
                    reason: format!(
                        "pool {}: drain_by_ms names {id}, which is not in remove (a deadline only applies to a member being removed)",
                        p.pool
                    ),
                });
            }
        }
        Ok(c)
    }

    /// The compact JSON form sent over SSM or to the local agent.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers can not fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Desired {
    /// Builds a desired state of the current version.
    pub fn new(generation: u64, pools: Vec<PoolDesired>) -> Self {
        Self {
            version: MESSAGE_VERSION,
            generation,
            pools,
        }
    }

    /// Parses and validates a desired state; a refused message is refused whole.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        const KIND: &str = "desired-state";
        let d: Desired = serde_json::from_str(text).map_err(|source| MessageError::Json {
            kind: KIND,
            source,
            example: DESIRED_EXAMPLE,
        })?;
        check_version(KIND, d.version)?;
        check_unique_pools(KIND, d.pools.iter().map(|p| &p.pool))?;
        for p in &d.pools {
            check_unique_members(KIND, &p.pool, p.members.iter().map(|m| &m.id))?;
        }
        Ok(d)
    }

    /// The compact JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_change_round_trips() {
        let c = Change::from_json(CHANGE_EXAMPLE).unwrap();
        assert_eq!(c.pools[0].add[0].port.get(), 8080);
        assert_eq!(Change::from_json(&c.to_json()).unwrap(), c);
        let d = Desired::from_json(DESIRED_EXAMPLE).unwrap();
        assert_eq!(Desired::from_json(&d.to_json()).unwrap(), d);
    }

    fn err(text: &str) -> String {
        Change::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_changes_are_refused_with_the_reason() {
        let e = err(
            r#"{"version":1,"generation":1,"pools":[{"pool":"web","add":[{"id":"i-1","address":"10.0.0.5","port":99999}]}]}"#,
        );
        assert!(e.contains("invalid port 99999"), "{e}");
        let e = err(
            r#"{"version":1,"generation":1,"pools":[{"pool":"web","add":[{"id":"i-1","address":"10.0.0.5","port":0}]}]}"#,
        );
        assert!(e.contains("invalid port 0"), "{e}");
        let e = err(
            r#"{"version":1,"generation":1,"pools":[{"pool":"web","add":[{"id":"i-1","address":"999.1.1.1","port":80}]}]}"#,
        );
        assert!(e.contains("invalid address \"999.1.1.1\""), "{e}");
        let e = err(r#"{"version":2,"generation":1,"pools":[]}"#);
        assert!(e.contains("unsupported change message version 2"), "{e}");
        let e = err(
            r#"{"version":1,"generation":1,"pools":[{"pool":"web","add":[{"id":"i-1","address":"10.0.0.5","port":80}],"remove":["i-1"]}]}"#,
        );
        assert!(e.contains("member i-1 appears more than once"), "{e}");
        let e = err(r#"{"version":1,"generation":1,"pools":[{"pool":"web"},{"pool":"web"}]}"#);
        assert!(e.contains("pool web appears twice"), "{e}");
        let e = err("{not json");
        assert!(e.contains("malformed change message"), "{e}");
        assert!(e.contains("Expected JSON like"), "{e}");
        let e = err(r#"{"version":1,"generation":1,"pools":[],"extra":true}"#);
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = err(r#"{"version":1,"generation":-3,"pools":[]}"#);
        assert!(e.contains("malformed"), "{e}");
        let e = err(
            r#"{"version":1,"generation":1,"pools":[{"pool":"web","remove":["i-1"],"drain_by_ms":{"i-2":5}}]}"#,
        );
        assert!(
            e.contains("drain_by_ms names i-2, which is not in remove"),
            "{e}"
        );
    }

    #[test]
    fn a_drain_deadline_round_trips_and_is_left_out_when_there_is_none() {
        let text = r#"{"version":1,"generation":1,"pools":[{"pool":"web","remove":["i-1"],"drain_by_ms":{"i-1":1700000000000}}]}"#;
        let c = Change::from_json(text).unwrap();
        assert_eq!(
            c.pools[0].drain_by_ms.get(&MemberId::new("i-1").unwrap()),
            Some(&1_700_000_000_000)
        );
        assert_eq!(Change::from_json(&c.to_json()).unwrap(), c);
        let plain =
            r#"{"version":1,"generation":1,"pools":[{"pool":"web","add":[],"remove":["i-1"]}]}"#;
        assert!(!Change::from_json(plain)
            .unwrap()
            .to_json()
            .contains("drain_by_ms"));
    }
}
