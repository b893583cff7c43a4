//! The runtime-API commands the agent sends about a slot, typed: nothing else in the
//! agent writes command text, so no value can break out of its command line.
//!
//! Every part is validated before it gets here ([`PoolName`] holds only socket-safe
//! characters, a slot is a number, an address is an IP literal, a port is 1-65535).

use std::fmt;
use std::net::IpAddr;

use infra::{PoolName, Port};

use crate::haproxy_cfg::slot_name;

/// What to do to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `set server B/S addr A port P`: where the slot sends traffic (and checks).
    SetAddr {
        /// The member's address.
        addr: IpAddr,
        /// The member's port.
        port: Port,
    },
    /// `set server B/S state ready`: takes traffic (not health-gated by itself).
    Ready,
    /// `set server B/S health down`: DOWN until `rise` checks pass. Sent on the same line
    /// as [`Op::Ready`], a new member is never UP in between.
    HealthDown,
    /// `set server B/S state drain`: no new requests; the ones it has finish.
    Drain,
    /// `set server B/S state maint`: no traffic, no checks; the slot can be reused.
    Maint,
    /// `shutdown sessions server B/S`: closes what a drain left open at its deadline.
    ShutdownSessions,
}

/// One command: an [`Op`] on slot `slot` of pool `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The pool (HAProxy backend).
    pub pool: PoolName,
    /// The slot number (server `slot<N>`).
    pub slot: u32,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// `op` on `pool`'s slot `slot`.
    pub fn new(pool: &PoolName, slot: u32, op: Op) -> Self {
        Self {
            pool: pool.clone(),
            slot,
            op,
        }
    }

    /// The commands that bring a member into a slot without letting it take traffic
    /// before its checks pass: address, ready, and (with checks) health down. They form
    /// one group: [`Client::batch`](super::Client::batch) keeps a group on one line.
    pub fn join(pool: &PoolName, slot: u32, addr: IpAddr, port: Port, check: bool) -> Vec<Self> {
        let mut g = vec![
            Self::new(pool, slot, Op::SetAddr { addr, port }),
            Self::new(pool, slot, Op::Ready),
        ];
        if check {
            g.push(Self::new(pool, slot, Op::HealthDown));
        }
        g
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = format!("{}/{}", self.pool, slot_name(self.slot));
        match self.op {
            Op::SetAddr { addr, port } => write!(f, "set server {server} addr {addr} port {port}"),
            Op::Ready => write!(f, "set server {server} state ready"),
            Op::HealthDown => write!(f, "set server {server} health down"),
            Op::Drain => write!(f, "set server {server} state drain"),
            Op::Maint => write!(f, "set server {server} state maint"),
            Op::ShutdownSessions => write!(f, "shutdown sessions server {server}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_as_haproxy_expects_them() {
        let web = PoolName::new("web").unwrap();
        let join = Command::join(
            &web,
            3,
            "10.0.0.5".parse().unwrap(),
            Port::new(8080).unwrap(),
            true,
        );
        let text: Vec<String> = join.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "set server web/slot3 addr 10.0.0.5 port 8080",
                "set server web/slot3 state ready",
                "set server web/slot3 health down"
            ]
        );
        assert_eq!(
            Command::join(
                &web,
                1,
                "::1".parse().unwrap(),
                Port::new(80).unwrap(),
                false
            )
            .len(),
            2
        );
        assert_eq!(
            Command::new(&web, 2, Op::Drain).to_string(),
            "set server web/slot2 state drain"
        );
        assert_eq!(
            Command::new(&web, 2, Op::ShutdownSessions).to_string(),
            "shutdown sessions server web/slot2"
        );
    }
}
