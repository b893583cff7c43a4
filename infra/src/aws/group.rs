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
    /// Derived from the two states with [`phase_of`].
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
            phase,
        }
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
}
