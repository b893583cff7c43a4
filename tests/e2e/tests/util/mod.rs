//! What the suites share: changes and members as the reactor sends them
//! ([`member`], [`change`]), reading a host's report ([`outcome`], [`all`]), and the
//! whole local loop the lifecycle suites run on ([`lifecycle`]).

pub mod lifecycle;

use std::net::SocketAddr;

use infra::{Change, Member, MemberId, OutcomeStatus, PoolChange, PoolName, Port, Report};

/// Member `id` at `addr`.
pub fn member(id: &str, addr: SocketAddr) -> Member {
    Member::new(
        MemberId::new(id).unwrap(),
        addr.ip(),
        Port::new(i64::from(addr.port())).unwrap(),
    )
    .unwrap()
}

/// A change of pool `web` at `generation`: `add` joins, `remove` (member ids) leaves.
pub fn change(generation: u64, add: Vec<Member>, remove: &[&str]) -> Change {
    Change::new(
        generation,
        vec![PoolChange {
            pool: PoolName::new("web").unwrap(),
            add,
            remove: remove.iter().map(|r| MemberId::new(*r).unwrap()).collect(),
            drain_by_ms: Default::default(),
        }],
    )
}

/// Member `id`'s outcome in `r` and its reason (empty without); panics without one.
pub fn outcome(r: &Report, id: &str) -> (OutcomeStatus, String) {
    r.outcomes
        .iter()
        .find(|o| o.member.as_str() == id)
        .map(|o| (o.status, o.reason.clone().unwrap_or_default()))
        .unwrap_or_else(|| panic!("no outcome for {id} in {r:?}"))
}

/// Whether `r` has outcomes and every one is `s`.
pub fn all(r: &Report, s: OutcomeStatus) -> bool {
    !r.outcomes.is_empty() && r.outcomes.iter().all(|o| o.status == s)
}
