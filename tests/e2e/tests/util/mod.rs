//! What the suites share: changes and members as the reactor sends them
//! ([`member`], [`change`]), reading a host's report ([`outcome`], [`all`]), a host of
//! one pool and real backends for it ([`host_with`], [`backends`], [`members_of`]),
//! HAProxy's servers as an agent sets them ([`servers_state`]), and the whole local loop
//! the lifecycle suites run on ([`lifecycle`]).

pub mod lifecycle;

use std::net::SocketAddr;

use harness::{Backend, Host, HostSpec, PoolSpec};
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

/// Applies a change of `generation` on `h` that adds member `id` at `addr`, and
/// asserts it came UP; the report.
pub fn join_one(h: &Host, generation: u64, id: &str, addr: SocketAddr) -> Report {
    let (r, run) = h
        .apply(&change(generation, vec![member(id, addr)], &[]))
        .expect("apply");
    assert_eq!(outcome(&r, id).0, OutcomeStatus::Up, "{}", run.stderr);
    r
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

/// A host named `name` with the one pool `pool`, its agent service running.
pub fn host_with(name: &str, pool: PoolSpec) -> Host {
    Host::start(&HostSpec {
        name: name.into(),
        pools: vec![pool],
        extra_toml: String::new(),
        env: Vec::new(),
    })
    .expect("start haproxy host")
}

/// `n` real backends on 127.0.0.1, named `<prefix>0`, `<prefix>1`, ...
pub fn backends(prefix: &str, n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend::start(&format!("{prefix}{i}"), "127.0.0.1").unwrap())
        .collect()
}

/// A member for each of `backends`, `i-<its name>` at its address.
pub fn members_of(backends: &[Backend]) -> Vec<Member> {
    backends
        .iter()
        .map(|b| member(&format!("i-{}", b.name), b.addr))
        .collect()
}

/// `show servers state web` without the columns HAProxy's health checker moves on its
/// own: time since the last change, check status, result, health counter (a member
/// that just came UP keeps climbing to rise + fall - 1) and check state (its
/// in-progress bit flips with every check). What an agent sets stays: address, port,
/// operational and admin states, weights.
pub fn servers_state(h: &Host) -> String {
    without_times(&h.client().query("show servers state web").unwrap())
}

/// A `show servers state` dump, or the server-state file the service writes in the same
/// format (on every change and when it stops), without those columns.
pub fn without_times(dump: &str) -> String {
    dump.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() > 14 && !l.starts_with('#') {
                [&f[..9], &f[14..]].concat().join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
