//! What a message may ask of this host: checked before anything is planned, so a
//! refused message changes nothing (exit 2 for `agent apply` and `agent sync`).
//!
//! - Member addresses: link-local (169.254.0.0/16, fe80::/10) and multicast addresses
//!   are always refused (a link-local member would send traffic to the instance
//!   metadata service or a neighbour, not to a member); with `member_networks` set in
//!   agent.toml, an address outside every listed network is refused too.
//! - Members per pool in one message: `[[pool]] max_members` (default 1000).
//! - Slots: a pool never grows past `[[pool]] max_slots` (default 4096).
//! - Generations: at most [`MAX_GENERATION_AHEAD_MS`] ahead of this host's clock.
//!   Generations are the unix time in ms at which the reactor read the group, and a
//!   member ignores every message older than the last one applied to it: one huge
//!   generation would make every later change about its members stale.
//!
//! The 1 MiB bound on a message is enforced before it is parsed
//! ([`crate::control::MAX_MESSAGE`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use infra::{Change, Desired, Member, MemberId, PoolName};

use crate::config::{AgentConfig, PoolConfig};
use crate::slots::{EntryState, SlotTable};

/// How far ahead of this host's clock a generation may be: five minutes (the reactor
/// holds host reports to the same bound).
pub use infra::MAX_GENERATION_AHEAD_MS;

/// Why a message (or the growth it needs) was refused. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A member would share its address and port with another member.
    #[error("member {member} of pool {pool} at {addr} is refused: {holder} already holds that address and port ({how}), so nothing was changed. Two members at one address get twice its share of the traffic: if the instance behind it changed, remove {holder} in the same change; otherwise fix the address")]
    AddressHeld {
        /// The pool.
        pool: PoolName,
        /// The member refused.
        member: MemberId,
        /// Its address and port.
        addr: String,
        /// The member holding them.
        holder: MemberId,
        /// Where the holder is (`joining on this host`, `up on this host`, `also named
        /// by this change`).
        how: String,
    },
    /// A member's address is one the agent never sends traffic to.
    #[error("member {member} of pool {pool} has address {address}, which is {why}; the message was refused and nothing was changed. Fix the member's address in the message (or its group)")]
    Address {
        /// The pool.
        pool: PoolName,
        /// The member.
        member: MemberId,
        /// Its address.
        address: IpAddr,
        /// Which rule refused it.
        why: String,
    },
    /// More members of one pool in one message than `max_members`.
    #[error("the message names {count} members of pool {pool}, more than its max_members = {max} (agent.toml [[pool]]); it was refused and nothing was changed. Split it into messages of at most {max} members per pool, or raise max_members")]
    TooManyMembers {
        /// The pool.
        pool: PoolName,
        /// Members named (adds and removes).
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A pool would grow past `max_slots`.
    #[error("pool {pool} needs {needed} slots, more than its max_slots = {max} (agent.toml [[pool]]): the growth was refused and nothing was changed. Remove members first, or raise max_slots")]
    SlotCap {
        /// The pool.
        pool: PoolName,
        /// The slot count the change needs.
        needed: u32,
        /// The bound.
        max: u32,
    },
    /// A generation far ahead of this host's clock.
    #[error("generation {generation} is {ahead_s} s ahead of this host's clock (now {now_ms} ms since 1970), more than 5 minutes: it would make every later change about its members stale, so the message was refused and nothing was changed. Generations are the unix time in ms at which the sender read the group: check the sender's and this host's clocks (NTP)")]
    FutureGeneration {
        /// The message's generation.
        generation: u64,
        /// This host's clock, unix ms.
        now_ms: u64,
        /// How far ahead, in seconds.
        ahead_s: u64,
    },
}

/// An IP network (`10.0.0.0/16`, `fd00::/8`) members may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> u32 {
    let bits = u32::from(ip);
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> u128 {
    let bits = u128::from(ip);
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Network {
    type Err = String;

    /// Reads `address/prefix`; the address must be the network's first (host bits 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((a, p)) = s.trim().split_once('/') else {
            return Err(format!(
                "{s:?} is not a network: write address/prefix, such as 10.0.0.0/16 or fd00::/8"
            ));
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{s:?}: the prefix must be a number from 0 to {max}"))?;
        let net = Self { addr, prefix };
        let first = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(mask_v4(v4, prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask_v6(v6, prefix))),
        };
        if first != addr {
            return Err(format!(
                "{s:?} has host bits set: did you mean {first}/{prefix}?"
            ));
        }
        Ok(net)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why `ip` can never be a member, if it can not.
fn always_refused(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("link-local (169.254.0.0/16 and fe80::/10 are always refused)")
        }
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            Some("link-local (169.254.0.0/16 and fe80::/10 are always refused)")
        }
        a if a.is_multicast() => Some("multicast (always refused)"),
        a if a.is_unspecified() => Some("unspecified (always refused)"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast (always refused)"),
        _ => None,
    }
}

/// Checks one member's address against the rules and `networks`.
pub fn check_member(
    networks: &[Network],
    pool: &PoolName,
    member: &Member,
) -> Result<(), LimitError> {
    let refuse = |why: String| LimitError::Address {
        pool: pool.clone(),
        member: member.id.clone(),
        address: member.address,
        why,
    };
    if let Some(why) = always_refused(member.address) {
        return Err(refuse(why.to_string()));
    }
    if !networks.is_empty() && !networks.iter().any(|n| n.contains(member.address)) {
        let list = networks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(refuse(format!(
            "outside member_networks ({list}) in agent.toml; add its network there if it belongs"
        )));
    }
    Ok(())
}

/// Checks a generation against this host's clock (`now_ms`, unix ms).
pub fn check_generation(generation: u64, now_ms: u64) -> Result<(), LimitError> {
    if generation > now_ms.saturating_add(MAX_GENERATION_AHEAD_MS) {
        return Err(LimitError::FutureGeneration {
            generation,
            now_ms,
            ahead_s: (generation - now_ms) / 1000,
        });
    }
    Ok(())
}

fn check_count(pc: &PoolConfig, count: usize) -> Result<(), LimitError> {
    if count > pc.max_members {
        return Err(LimitError::TooManyMembers {
            pool: pc.name().clone(),
            count,
            max: pc.max_members,
        });
    }
    Ok(())
}

/// Checks a change message against `cfg` at `now_ms`: its generation, and for every
/// pool agent.toml defines, the members it names and their addresses. (A pool it does
/// not define is refused by the service, naming the pools it has.)
pub fn check_change(cfg: &AgentConfig, change: &Change, now_ms: u64) -> Result<(), LimitError> {
    check_generation(change.generation, now_ms)?;
    for p in &change.pools {
        let Some(pc) = cfg.pool(&p.pool) else {
            continue;
        };
        check_count(pc, p.add.len() + p.remove.len())?;
        for m in &p.add {
            check_member(&cfg.member_networks, &p.pool, m)?;
        }
    }
    Ok(())
}

/// Checks that no member `change` adds takes the address and port of another: one
/// joining or up in `table` (a draining member is leaving, and one the change removes
/// is let go), or another member of the same change.
pub fn check_addresses(change: &Change, table: &SlotTable) -> Result<(), LimitError> {
    for p in &change.pools {
        let held = table.pools.get(p.pool.as_str());
        let mut named: Vec<&Member> = Vec::new();
        for m in &p.add {
            let refuse = |holder: &MemberId, how: String| LimitError::AddressHeld {
                pool: p.pool.clone(),
                member: m.id.clone(),
                addr: std::net::SocketAddr::new(m.address, m.port.get()).to_string(),
                holder: holder.clone(),
                how,
            };
            if let Some(other) = named
                .iter()
                .find(|o| o.id != m.id && (o.address, o.port) == (m.address, m.port))
            {
                return Err(refuse(&other.id, "also named by this change".into()));
            }
            named.push(m);
            let holders = held.into_iter().flat_map(|t| t.members.iter());
            for (id, e) in holders {
                let leaving = e.state == EntryState::Draining || p.remove.contains(id);
                if id != &m.id && !leaving && (e.address, e.port) == (m.address, m.port) {
                    return Err(refuse(
                        id,
                        format!("{} on this host in slot{}", e.state, e.slot),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks a desired state against `cfg` at `now_ms`, as [`check_change`] does.
pub fn check_desired(cfg: &AgentConfig, desired: &Desired, now_ms: u64) -> Result<(), LimitError> {
    check_generation(desired.generation, now_ms)?;
    for p in &desired.pools {
        let Some(pc) = cfg.pool(&p.pool) else {
            continue;
        };
        check_count(pc, p.members.len())?;
        for m in &p.members {
            check_member(&cfg.member_networks, &p.pool, m)?;
        }
    }
    Ok(())
}

/// Checks that `pool` may grow from `current` slots to `needed`. A pool already
/// larger than its cap (the cap was lowered) keeps what it has.
pub fn check_growth(pool: &PoolConfig, current: u32, needed: u32) -> Result<(), LimitError> {
    if needed > pool.max_slots && needed > current {
        return Err(LimitError::SlotCap {
            pool: pool.name().clone(),
            needed,
            max: pool.max_slots,
        });
    }
    Ok(())
}

/// The size a pool's slot block grows or shrinks to (`target`), kept within its cap
/// but never below `needed`.
pub fn capped_size(pool: &PoolConfig, target: u32, needed: u32) -> u32 {
    target.min(pool.max_slots.max(needed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::{PoolChange, PoolDesired, Port};

    const NOW: u64 = 1_732_262_400_000;

    fn cfg(extra_top: &str, pool_extra: &str) -> AgentConfig {
        AgentConfig::parse(&format!(
            r#"{extra_top}
[haproxy]
config = "/etc/haproxy/haproxy.cfg"
admin_socket = "/run/haproxy/admin.sock"
state_dir = "/var/lib/haproxy-asg"
[[pool]]
name = "web"
port = 8080
{pool_extra}
"#
        ))
        .unwrap()
    }

    fn web() -> PoolName {
        PoolName::new("web").unwrap()
    }

    fn m(id: &str, addr: &str) -> Member {
        Member::new(
            MemberId::new(id).unwrap(),
            addr.parse().unwrap(),
            Port::new(8080).unwrap(),
        )
        .unwrap()
    }

    fn change(generation: u64, add: Vec<Member>, remove: Vec<&str>) -> Change {
        Change::new(
            generation,
            vec![PoolChange {
                pool: web(),
                add,
                remove: remove
                    .into_iter()
                    .map(|r| MemberId::new(r).unwrap())
                    .collect(),
                drain_by_ms: Default::default(),
            }],
        )
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Network = "10.0.0.0/16".parse().unwrap();
        assert!(n.contains("10.0.255.1".parse().unwrap()));
        assert!(!n.contains("10.1.0.1".parse().unwrap()));
        assert!(!n.contains("fd00::1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.0.0.9".parse().unwrap()),
            "IPv4-mapped"
        );
        let n6: Network = "fd00::/8".parse().unwrap();
        assert!(n6.contains("fd12:3456::1".parse().unwrap()));
        assert!(!n6.contains("fe80::1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let host: Network = "127.0.0.1/32".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert_eq!(n6.to_string(), "fd00::/8");
        for (bad, says) in [
            ("10.0.0.0", "address/prefix"),
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.1/16", "did you mean 10.0.0.0/16"),
            ("ten/8", "not an IPv4 or IPv6"),
        ] {
            let e = bad.parse::<Network>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn link_local_and_multicast_are_always_refused() {
        let c = cfg("", "");
        for addr in ["169.254.169.254", "fe80::1", "::ffff:169.254.1.1"] {
            let e = check_change(&c, &change(NOW, vec![m("i-ll", addr)], vec![]), NOW).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("member i-ll of pool web")
                    && text.contains(addr)
                    && text.contains("link-local")
                    && text.contains("nothing was changed"),
                "{text}"
            );
        }
        // Member::new refuses multicast already; a member built otherwise is refused here.
        let mut mc = m("i-mc", "10.0.0.1");
        mc.address = "224.0.0.1".parse().unwrap();
        let e = check_member(&[], &web(), &mc).unwrap_err();
        assert!(e.to_string().contains("multicast"), "{e}");
        // Without member_networks, other unicast addresses pass (loopback included).
        for addr in ["10.0.0.5", "127.0.0.1", "2001:db8::5", "203.0.113.7"] {
            check_change(&c, &change(NOW, vec![m("i-ok", addr)], vec![]), NOW).unwrap();
        }
    }

    #[test]
    fn member_networks_bound_the_addresses() {
        let c = cfg("member_networks = [\"10.0.0.0/16\", \"fd00::/8\"]", "");
        check_change(
            &c,
            &change(NOW, vec![m("i-a", "10.0.3.4"), m("i-b", "fd00::7")], vec![]),
            NOW,
        )
        .unwrap();
        let e = check_change(
            &c,
            &change(
                NOW,
                vec![m("i-a", "10.0.3.4"), m("i-out", "192.168.1.5")],
                vec![],
            ),
            NOW,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("member i-out of pool web has address 192.168.1.5")
                && text.contains("outside member_networks (10.0.0.0/16, fd00::/8)"),
            "{text}"
        );
        let d = Desired::new(
            NOW,
            vec![PoolDesired {
                pool: web(),
                members: vec![m("i-out", "172.16.0.1")],
            }],
        );
        assert!(matches!(
            check_desired(&c, &d, NOW),
            Err(LimitError::Address { .. })
        ));
        // Removals name no address: nothing to check.
        check_change(&c, &change(NOW, vec![], vec!["i-gone"]), NOW).unwrap();
    }

    #[test]
    fn members_per_pool_are_bounded() {
        let c = cfg("", "max_members = 3");
        let adds: Vec<Member> = (0..2)
            .map(|i| m(&format!("i-{i}"), &format!("10.0.0.{}", i + 1)))
            .collect();
        check_change(&c, &change(NOW, adds.clone(), vec!["i-x"]), NOW).unwrap();
        let e = check_change(&c, &change(NOW, adds, vec!["i-x", "i-y"]), NOW).unwrap_err();
        assert_eq!(
            e,
            LimitError::TooManyMembers {
                pool: web(),
                count: 4,
                max: 3
            }
        );
        assert!(e.to_string().contains("max_members = 3"), "{e}");
        let d = Desired::new(
            NOW,
            vec![PoolDesired {
                pool: web(),
                members: (0..4)
                    .map(|i| m(&format!("i-{i}"), &format!("10.0.0.{}", i + 1)))
                    .collect(),
            }],
        );
        assert!(matches!(
            check_desired(&c, &d, NOW),
            Err(LimitError::TooManyMembers { count: 4, .. })
        ));
        // The default bound is 1000.
        let c = cfg("", "");
        let many: Vec<&str> = vec!["i-r"; 1];
        check_change(&c, &change(NOW, vec![], many), NOW).unwrap();
        let d = Desired::new(
            NOW,
            vec![PoolDesired {
                pool: web(),
                members: (0..1001u32)
                    .map(|i| {
                        m(
                            &format!("i-{i}"),
                            &std::net::Ipv4Addr::from(0x0a00_0001 + i).to_string(),
                        )
                    })
                    .collect(),
            }],
        );
        assert!(matches!(
            check_desired(&c, &d, NOW),
            Err(LimitError::TooManyMembers {
                count: 1001,
                max: 1000,
                ..
            })
        ));
    }

    #[test]
    fn a_generation_more_than_five_minutes_ahead_is_refused() {
        let c = cfg("", "");
        check_change(
            &c,
            &change(NOW + MAX_GENERATION_AHEAD_MS, vec![], vec![]),
            NOW,
        )
        .unwrap();
        check_change(&c, &change(1, vec![], vec![]), NOW).unwrap();
        let e = check_change(
            &c,
            &change(NOW + MAX_GENERATION_AHEAD_MS + 1, vec![], vec![]),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(e, LimitError::FutureGeneration { ahead_s: 300, .. }),
            "{e:?}"
        );
        let e = check_desired(&c, &Desired::new(u64::MAX, vec![]), NOW).unwrap_err();
        assert!(e.to_string().contains("more than 5 minutes"), "{e}");
    }

    #[test]
    fn growth_stops_at_max_slots() {
        let c = cfg("", "slots = 4\nmax_slots = 8");
        let pc = &c.pools[0];
        check_growth(pc, 4, 8).unwrap();
        let e = check_growth(pc, 4, 9).unwrap_err();
        assert_eq!(
            e,
            LimitError::SlotCap {
                pool: web(),
                needed: 9,
                max: 8
            }
        );
        assert!(e.to_string().contains("max_slots = 8"), "{e}");
        // A pool already past a lowered cap keeps its slots.
        check_growth(pc, 16, 12).unwrap();
        // Doubling stops at the cap, never below what is needed.
        assert_eq!(capped_size(pc, 16, 5), 8);
        assert_eq!(capped_size(pc, 4, 3), 4);
        assert_eq!(capped_size(pc, 16, 12), 12);
    }

    #[test]
    fn a_second_member_at_a_held_address_is_refused_naming_the_holder() {
        let entry = |addr: &str, state| crate::slots::Entry {
            slot: 3,
            address: addr.parse().unwrap(),
            port: Port::new(8080).unwrap(),
            generation: 1,
            state,
            op: None,
            zone: None,
            weight: None,
            touched: 0,
        };
        let mut table = SlotTable::default();
        let pool = table.pools.entry("web".into()).or_default();
        pool.members.insert(
            MemberId::new("i-a").unwrap(),
            entry("10.0.0.5", EntryState::Up),
        );
        pool.members.insert(
            MemberId::new("i-old").unwrap(),
            entry("10.0.0.6", EntryState::Draining),
        );
        let e = check_addresses(&change(2, vec![m("i-twin", "10.0.0.5")], vec![]), &table)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("member i-twin of pool web at 10.0.0.5:8080")
                && e.contains("i-a already holds")
                && e.contains("up on this host in slot3")
                && e.contains("nothing was changed"),
            "{e}"
        );
        // The holder itself, a holder the change removes, and a draining one: fine.
        for (add, remove) in [
            (m("i-a", "10.0.0.5"), vec![]),
            (m("i-new", "10.0.0.5"), vec!["i-a"]),
            (m("i-new", "10.0.0.6"), vec![]),
        ] {
            check_addresses(&change(2, vec![add], remove), &table).unwrap();
        }
        // Two members of one change at one address.
        let e = check_addresses(
            &change(2, vec![m("i-x", "10.0.0.9"), m("i-y", "10.0.0.9")], vec![]),
            &table,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("i-x already holds") && e.contains("also named by this change"),
            "{e}"
        );
    }
}
