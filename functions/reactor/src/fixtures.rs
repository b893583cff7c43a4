//! What the unit tests build a group from: a member in a lifecycle state, a group's
//! state as discovery reads it, a pool. Test code only (`#[cfg(test)]` in lib.rs).

use std::collections::BTreeMap;

use infra::aws::{GroupMember, GroupState};
use infra::{GroupName, MemberId, Pool, PoolName, Port};

/// Member `id`, running, in Auto Scaling state `state`, at `addr` if given.
pub(crate) fn member(id: &str, state: &str, addr: Option<&str>) -> GroupMember {
    GroupMember::new(
        MemberId::new(id).unwrap(),
        state,
        Some("running".into()),
        addr.map(|a| a.parse().unwrap()),
    )
}

/// Group `name` with `members`, read at `read_at_ms`, without tags.
pub(crate) fn group(name: &str, members: Vec<GroupMember>, read_at_ms: u64) -> GroupState {
    GroupState {
        name: GroupName::new(name).unwrap(),
        tags: BTreeMap::new(),
        members,
        read_at_ms,
    }
}

/// Pool `name` on `port`, without options or weight.
pub(crate) fn pool(name: &str, port: i64) -> Pool {
    Pool {
        name: PoolName::new(name).unwrap(),
        port: Port::new(port).unwrap(),
        server_options: Default::default(),
        weight: None,
    }
}
