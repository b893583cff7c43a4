//! What a group holds: its members, where each is in its life ([`Phase`]), and the
//! group's state at one moment. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::{GroupName, MemberId, Zone};

/// Where a member is in its life, as far as the pools are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Launching (`Pending`, `Pending:Wait`, `Pending:Proceed`): added to the pools,
    /// but takes traffic only once healthy.
    Joining,
    /// `InService`: should be serving.
    Serving,
    /// Terminating, terminated, detaching, standby, or stopped in EC2: drained and
    /// released.
    Leaving,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Joining => "joining",
            Self::Serving => "serving",
            Self::Leaving => "leaving",
        })
    }
}

/// The Auto Scaling lifecycle state of a member waiting on a launch hook.
pub const PENDING_WAIT: &str = "Pending:Wait";
/// The Auto Scaling lifecycle state of a member waiting on a terminate hook.
pub const TERMINATING_WAIT: &str = "Terminating:Wait";

/// Maps an Auto Scaling lifecycle state (and, when known, the EC2 instance state) to a
/// [`Phase`].
///
/// An instance EC2 reports as stopping, stopped, shutting down or terminated is leaving
/// whatever Auto Scaling still says. Unknown Auto Scaling states (including `Standby`
/// and warm-pool states) count as leaving: a member is only added when the group says
/// it is launching or in service.
pub fn phase_of(lifecycle_state: &str, ec2_state: Option<&str>) -> Phase {
    if matches!(
        ec2_state,
        Some("shutting-down" | "terminated" | "stopping" | "stopped")
    ) {
        return Phase::Leaving;
    }
    match lifecycle_state {
        "Pending" | "Pending:Wait" | "Pending:Proceed" => Phase::Joining,
        "InService" => Phase::Serving,
        _ => Phase::Leaving,
    }
}

/// The instance tag the reactor sets on a member EC2 warned about (a Spot interruption
/// warning, or a rebalance recommendation the deployment drains on). Its value is the
/// time (ms since the epoch) by which the drain must end, or [`REBALANCE_MARK`] for no
/// deadline of its own. A tagged member is leaving whatever Auto Scaling says: neither a
/// later event nor the schedule adds it back while the group still lists it `InService`.
///
/// Anyone allowed to tag instances can put it, so it is believed only where EC2 itself
/// could have warned ([`Interruption::believed`]): on a Spot instance that is no longer
/// launching, with a deadline close to now.
pub const INTERRUPTED_TAG: &str = "haproxy:interrupted";

/// The [`INTERRUPTED_TAG`] value of a rebalance recommendation (no deadline of its own).
pub const REBALANCE_MARK: &str = "rebalance";

/// How long after its deadline an interruption is still believed: EC2 reclaims a Spot
/// instance two minutes after its warning, so an older deadline is no warning of EC2's.
pub const INTERRUPTION_PAST_MS: u64 = 600_000;

/// How far ahead a deadline may be: the reactor writes the warning's time plus
/// `SPOT_DRAIN_TIMEOUT_S`, which is under the two minutes EC2 gives.
pub const INTERRUPTION_AHEAD_MS: u64 = 120_000;

/// EC2 warned that the member goes away: it is drained now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    /// When the drain must end (ms since the epoch), if sooner than the pool's drain
    /// timeout.
    pub drain_by_ms: Option<u64>,
}

impl Interruption {
    /// The interruption an [`INTERRUPTED_TAG`] value says, if it is to be believed on an
    /// instance that is `spot` (EC2's `InstanceLifecycle`) in Auto Scaling's
    /// `lifecycle_state`, read at `now_ms`; otherwise why not.
    pub fn believed(
        value: &str,
        spot: bool,
        lifecycle_state: &str,
        now_ms: u64,
    ) -> Result<Self, String> {
        if !spot {
            return Err(
                "the instance is not a Spot instance: EC2 warns Spot instances only".into(),
            );
        }
        if lifecycle_state.starts_with("Pending") || lifecycle_state.starts_with("Warmed:Pending") {
            return Err(format!(
                "the instance is still launching ({lifecycle_state}): EC2's warnings are drained once it serves"
            ));
        }
        let value = value.trim();
        if value == REBALANCE_MARK {
            return Ok(Self { drain_by_ms: None });
        }
        let Ok(by) = value.parse::<u64>() else {
            return Err(format!(
                "{value:?} is neither a deadline (ms since 1970) nor {REBALANCE_MARK:?}"
            ));
        };
        if by.saturating_add(INTERRUPTION_PAST_MS) < now_ms
            || by > now_ms.saturating_add(INTERRUPTION_AHEAD_MS)
        {
            return Err(format!(
                "its deadline {by} is not within 10 minutes before or 2 minutes after now ({now_ms})"
            ));
        }
        Ok(Self {
            drain_by_ms: Some(by),
        })
    }

    /// The [`INTERRUPTED_TAG`] value.
    pub fn tag_value(&self) -> String {
        self.drain_by_ms
            .map_or_else(|| REBALANCE_MARK.to_string(), |t| t.to_string())
    }
}

/// One instance of a group, as read from Auto Scaling and EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The instance id.
    pub id: MemberId,
    /// The Auto Scaling lifecycle state (`InService`, `Pending:Wait`, ...).
    pub lifecycle_state: String,
    /// The EC2 instance state (`running`, ...), when EC2 knows the instance.
    pub ec2_state: Option<String>,
    /// The private address, when EC2 has one for it.
    pub address: Option<IpAddr>,
    /// Its Availability Zone, as Auto Scaling lists it.
    pub zone: Option<Zone>,
    /// Set when EC2 warned that it goes away ([`INTERRUPTED_TAG`]).
    pub interrupted: Option<Interruption>,
    /// Derived from the two states with [`phase_of`], and leaving once interrupted.
    pub phase: Phase,
}

impl GroupMember {
    /// Builds a member, deriving its phase.
    pub fn new(
        id: MemberId,
        lifecycle_state: impl Into<String>,
        ec2_state: Option<String>,
        address: Option<IpAddr>,
    ) -> Self {
        let lifecycle_state = lifecycle_state.into();
        let phase = phase_of(&lifecycle_state, ec2_state.as_deref());
        Self {
            id,
            lifecycle_state,
            ec2_state,
            address,
            zone: None,
            interrupted: None,
            phase,
        }
    }

    /// The same member in `zone`.
    pub fn in_zone(mut self, zone: Option<Zone>) -> Self {
        self.zone = zone;
        self
    }

    /// Marks it interrupted: it is leaving from now on.
    pub fn interrupt(mut self, interruption: Interruption) -> Self {
        self.interrupted = Some(interruption);
        self.phase = Phase::Leaving;
        self
    }

    /// Whether it waits on a launch lifecycle hook.
    pub fn is_pending_wait(&self) -> bool {
        self.lifecycle_state == PENDING_WAIT
    }

    /// Whether it waits on a terminate lifecycle hook.
    pub fn is_terminating_wait(&self) -> bool {
        self.lifecycle_state == TERMINATING_WAIT
    }
}

/// A group's truth at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The Auto Scaling group name.
    pub name: GroupName,
    /// Its tags (key -> value).
    pub tags: BTreeMap<String, String>,
    /// Its instances, in the order Auto Scaling listed them.
    pub members: Vec<GroupMember>,
    /// When it was read (ms since the epoch): the basis of the generation.
    pub read_at_ms: u64,
}

impl GroupState {
    /// The member with this instance id, if the group still lists it.
    pub fn member(&self, id: &str) -> Option<&GroupMember> {
        self.members.iter().find(|m| m.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_states_map_to_phases() {
        for s in ["Pending", "Pending:Wait", "Pending:Proceed"] {
            assert_eq!(phase_of(s, Some("running")), Phase::Joining, "{s}");
        }
        assert_eq!(phase_of("InService", Some("running")), Phase::Serving);
        assert_eq!(phase_of("InService", None), Phase::Serving);
        for s in [
            "Terminating",
            "Terminating:Wait",
            "Terminating:Proceed",
            "Terminated",
            "Detaching",
            "Detached",
            "EnteringStandby",
            "Standby",
            "Warmed:Running",
        ] {
            assert_eq!(phase_of(s, Some("running")), Phase::Leaving, "{s}");
        }
        // EC2's word wins when the instance is going away.
        assert_eq!(phase_of("InService", Some("shutting-down")), Phase::Leaving);
        assert_eq!(phase_of("Pending:Wait", Some("terminated")), Phase::Leaving);
    }

    #[test]
    fn an_interrupted_member_is_leaving_while_the_group_lists_it_in_service() {
        let m = GroupMember::new(
            MemberId::new("i-1").unwrap(),
            "InService",
            Some("running".into()),
            None,
        );
        assert_eq!(m.phase, Phase::Serving);
        let now = 1_700_000_000_000;
        let i = Interruption::believed("1700000000000", true, "InService", now).unwrap();
        let m = m.interrupt(i);
        assert_eq!(m.phase, Phase::Leaving);
        assert_eq!(m.interrupted.and_then(|i| i.drain_by_ms), Some(now));
        let r = Interruption::believed(REBALANCE_MARK, true, "InService", now).unwrap();
        assert_eq!(r.drain_by_ms, None);
        assert_eq!(r.tag_value(), REBALANCE_MARK);
        assert_eq!(i.tag_value(), "1700000000000");
    }

    #[test]
    fn the_interrupted_tag_is_believed_only_where_ec2_could_have_warned() {
        let now = 1_700_000_000_000;
        let believed =
            |value: &str, spot, state: &str| Interruption::believed(value, spot, state, now);
        let deadline = (now + 90_000).to_string();
        assert!(believed(&deadline, true, "InService").is_ok());
        assert!(believed(&(now - 599_000).to_string(), true, "InService").is_ok());
        for (value, spot, state, says) in [
            (deadline.as_str(), false, "InService", "not a Spot instance"),
            ("rebalance", false, "InService", "not a Spot instance"),
            (deadline.as_str(), true, "Pending:Wait", "still launching"),
            (
                deadline.as_str(),
                true,
                "Warmed:Pending:Wait",
                "still launching",
            ),
            ("", true, "InService", "neither a deadline"),
            ("soon", true, "InService", "neither a deadline"),
            ("1800000000000", true, "InService", "not within"),
            ("1699999000000", true, "InService", "not within"),
        ] {
            let why = believed(value, spot, state).unwrap_err();
            assert!(why.contains(says), "{value} {spot} {state}: {why}");
        }
    }
}
