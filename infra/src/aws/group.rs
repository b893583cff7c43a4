//! What a group holds: its members, where each is in its life ([`Phase`]), and the
//! group's state at one moment. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::MemberId;

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
/// time (ms since the epoch) by which the drain must end, or empty for no deadline of
/// its own. A tagged member is leaving whatever Auto Scaling says: neither a later event
/// nor the schedule adds it back while the group still lists it `InService`.
pub const INTERRUPTED_TAG: &str = "haproxy:interrupted";

/// EC2 warned that the member goes away: it is drained now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    /// When the drain must end (ms since the epoch), if sooner than the pool's drain
    /// timeout.
    pub drain_by_ms: Option<u64>,
}

impl Interruption {
    /// Reads the [`INTERRUPTED_TAG`] value; anything not a number means no deadline.
    pub fn from_tag(value: &str) -> Self {
        Self {
            drain_by_ms: value.trim().parse().ok(),
        }
    }

    /// The [`INTERRUPTED_TAG`] value.
    pub fn tag_value(&self) -> String {
        self.drain_by_ms.map(|t| t.to_string()).unwrap_or_default()
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
            interrupted: None,
            phase,
        }
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
    pub name: String,
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
        let m = m.interrupt(Interruption::from_tag("1700000000000"));
        assert_eq!(m.phase, Phase::Leaving);
        assert_eq!(
            m.interrupted.and_then(|i| i.drain_by_ms),
            Some(1_700_000_000_000)
        );
        assert_eq!(Interruption::from_tag("").drain_by_ms, None);
        assert_eq!(Interruption::from_tag("x").tag_value(), "");
    }
}
