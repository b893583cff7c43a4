//! The runtime-API commands the agent sends about a slot, typed: nothing else in the
//! agent writes command text, so no value can break out of its command line.
//!
//! Every part is validated before it gets here ([`PoolName`] and [`MemberId`] hold only
//! socket-safe characters, a slot is a number, an address is an IP literal, a port is
//! 1-65535, a [`MapFile`] is an absolute path of safe characters).
//!
//! Besides the slot's own state, a slot has an entry in the instance map
//! ([`crate::instances`]): `add map`, `set map` and `del map` keep the key
//! `<pool>/slot<N>` pointing at the member in the slot, for the log line.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use infra::{MemberId, PoolName, Port, ServerOptions};

use crate::haproxy_cfg::slot_name;

/// A map file path that is safe to write unquoted into haproxy.cfg and onto a
/// runtime-API line, where HAProxy knows the map by exactly this text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapFile(Arc<str>);

/// A map file path that could break out of a configuration or command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("map file {0:?} must be an absolute path of letters, digits, '/', '.', '_' and '-' (it is written unquoted into haproxy.cfg and runtime commands); choose a state_dir of such characters")]
pub struct MapFileError(pub String);

impl MapFile {
    /// Checks `path`: absolute, and only `[A-Za-z0-9/._-]`.
    pub fn new(path: &Path) -> Result<Self, MapFileError> {
        let text = path.to_str().unwrap_or_default();
        let ok = text.starts_with('/')
            && text.len() > 1
            && text.len() <= 1024
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
        if !ok {
            return Err(MapFileError(path.display().to_string()));
        }
        Ok(Self(Arc::from(text)))
    }

    /// The path as HAProxy names the map (`show map` lists it so).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&*self.0)
    }
}

impl fmt::Display for MapFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to do to one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `add map M B/S I`: the slot's instance, in the map the log line reads. HAProxy
    /// keeps duplicates (a lookup returns the first), so an entry that may exist is
    /// replaced with [`Command::map_put`] instead.
    MapAdd {
        /// The instance map.
        map: MapFile,
        /// The member in the slot.
        member: MemberId,
    },
    /// `set map M B/S I`: changes an existing entry; HAProxy answers `entry not found.`
    /// (a refusal) when there is none.
    MapSet {
        /// The instance map.
        map: MapFile,
        /// The member in the slot.
        member: MemberId,
    },
    /// `del map M B/S`: removes every entry of the slot. `Key not found.` counts as
    /// done: the slot has no entry either way.
    MapDel {
        /// The instance map.
        map: MapFile,
    },
    /// `add server B/S 0.0.0.0:P <options> disabled` (3.0+ here): a slot added at
    /// runtime, in maintenance at 0.0.0.0 like a declared slot, with the pool's server
    /// options. HAProxy answers `New server registered.`; an option it does not take
    /// for a server added at runtime (`'init-addr' option is not accepted for dynamic
    /// server`) or a static balance algorithm (`Backend must use a dynamic load
    /// balancing to support dynamic servers.`) is a refusal in its own words.
    AddServer {
        /// The port the slot starts on (the pool's; a join sets the member's).
        port: Port,
        /// The pool's server options.
        options: ServerOptions,
    },
    /// `enable health B/S`: a server added at runtime has its checks off until this.
    EnableHealth,
    /// `wait <ms>ms srv-removable B/S` (3.0+): waits up to `ms` for the server to be
    /// removable (in maintenance, no connection left): `Done.`; otherwise `Failed.` (no
    /// such server), or when the delay ends `Wait delay expired.` (3.0) or
    /// `Interrupted.` (3.2).
    WaitRemovable {
        /// The longest wait, ms.
        ms: u32,
    },
    /// `del server B/S`: gives a slot beyond the pool's `slots` back once it is empty
    /// and in maintenance. `No such server.` counts as done (a reload already dropped
    /// it).
    DelServer,
    /// `set server B/S weight N` (0-256; 0 takes no new traffic but is still
    /// health-checked), or `weight 100%` with [`SetWeight::Initial`]: the weight the
    /// configuration gave it. Silent on success. A backend with a static balance
    /// algorithm refuses any weight but 0 and 100%.
    Weight(SetWeight),
}

/// The weight a [`Op::Weight`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetWeight {
    /// This many (0-256).
    To(u16),
    /// The configured one (`100%`): HAProxy's own behaviour for a member without a
    /// weight.
    Initial,
}

impl SetWeight {
    /// Whether a server whose runtime weight is `uweight` and configured one
    /// `iweight` has this weight.
    pub fn holds(self, uweight: u16, iweight: u16) -> bool {
        match self {
            Self::To(n) => uweight == n,
            Self::Initial => uweight == iweight,
        }
    }
}

impl fmt::Display for SetWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::To(n) => write!(f, "{n}"),
            Self::Initial => f.write_str("100%"),
        }
    }
}

impl Op {
    /// Whether `reply` (one command's reply, without its final empty line) means the
    /// command did what it was sent for.
    pub fn succeeded(&self, reply: &str) -> bool {
        let reply = reply.trim();
        match self {
            // A map command succeeds silently (every version).
            Self::MapAdd { .. } | Self::MapSet { .. } => reply.is_empty(),
            Self::MapDel { .. } => reply.is_empty() || reply == "Key not found.",
            Self::SetAddr { .. } => set_addr_succeeded(reply),
            Self::AddServer { .. } => reply == "New server registered.",
            Self::WaitRemovable { .. } => reply == "Done.",
            Self::DelServer => reply == "Server deleted." || reply == "No such server.",
            // The state and session commands are silent.
            _ => reply.is_empty(),
        }
    }
}

/// Whether a reply to `set server B/S addr A port P` says the server now has that
/// address and port. HAProxy reports each part it looked at, then who asked:
/// - changed: `IP changed from '0.0.0.0' to '10.0.0.5', port changed from '80' to
///   '8080' by 'stats socket command'` (every version; 3.0+ leaves out the part that did
///   not change: `port changed from '9999' to '9998' by ...`);
/// - unchanged: 2.6 and 2.8 say `no need to change the addr, no need to change the
///   port by 'stats socket command'`, 3.0 and later `nothing changed`. Either is
///   success: the server has what was asked (a member back at its old address);
/// - a part it refused (`problem converting port 'abc' to an int`, on 2.6 after the
///   address was applied) or any other text is a refusal.
fn set_addr_succeeded(reply: &str) -> bool {
    if reply == "nothing changed" {
        return true;
    }
    let parts = match reply.rsplit_once(" by '") {
        Some((parts, who)) if who.ends_with('\'') => parts,
        _ => return false,
    };
    parts.split(", ").all(|part| {
        part.starts_with("IP changed from '")
            || part.starts_with("port changed from '")
            || part == "no need to change the addr"
            || part == "no need to change the port"
    })
}

/// How long a removal waits for a slot's last connections to go (`wait ...
/// srv-removable`); a slot still busy then is tried again at the next look.
pub const REMOVABLE_WAIT_MS: u32 = 200;

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

    /// The commands that add slot `slot` at runtime, as a declared slot is (in
    /// maintenance, nothing to serve) and with its checks on when the pool has them, so
    /// a join on it is the same as on a declared slot: one group.
    pub fn add_slot(pool: &PoolName, slot: u32, port: Port, options: &ServerOptions) -> Vec<Self> {
        let mut g = vec![Self::new(
            pool,
            slot,
            Op::AddServer {
                port,
                options: options.clone(),
            },
        )];
        if options.has_check() {
            g.push(Self::new(pool, slot, Op::EnableHealth));
        }
        g
    }

    /// The commands that give an empty slot added at runtime back: maintenance (again:
    /// a no-op when it is), wait until it holds no connection, delete. One group.
    pub fn remove_slot(pool: &PoolName, slot: u32) -> Vec<Self> {
        vec![
            Self::new(pool, slot, Op::Maint),
            Self::new(
                pool,
                slot,
                Op::WaitRemovable {
                    ms: REMOVABLE_WAIT_MS,
                },
            ),
            Self::new(pool, slot, Op::DelServer),
        ]
    }

    /// Points the slot's map entry at `member` whether or not it had one: `del map`
    /// then `add map`, one group, so HAProxy applies both on one line and no lookup
    /// sees the slot without its entry in between.
    pub fn map_put(pool: &PoolName, slot: u32, map: &MapFile, member: &MemberId) -> Vec<Self> {
        vec![
            Self::new(pool, slot, Op::MapDel { map: map.clone() }),
            Self::new(
                pool,
                slot,
                Op::MapAdd {
                    map: map.clone(),
                    member: member.clone(),
                },
            ),
        ]
    }

    /// The slot's key in the instance map: `<pool>/slot<N>`. Backend names are unique
    /// in HAProxy, so two pools' slots never share a key.
    pub fn map_key(&self) -> String {
        format!("{}/{}", self.pool, slot_name(self.slot))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = format!("{}/{}", self.pool, slot_name(self.slot));
        match &self.op {
            Op::SetAddr { addr, port } => write!(f, "set server {server} addr {addr} port {port}"),
            Op::Ready => write!(f, "set server {server} state ready"),
            Op::HealthDown => write!(f, "set server {server} health down"),
            Op::Drain => write!(f, "set server {server} state drain"),
            Op::Maint => write!(f, "set server {server} state maint"),
            Op::ShutdownSessions => write!(f, "shutdown sessions server {server}"),
            Op::MapAdd { map, member } => write!(f, "add map {map} {server} {member}"),
            Op::MapSet { map, member } => write!(f, "set map {map} {server} {member}"),
            Op::MapDel { map } => write!(f, "del map {map} {server}"),
            Op::AddServer { port, options } => {
                write!(f, "add server {server} 0.0.0.0:{port}")?;
                if !options.as_str().is_empty() {
                    write!(f, " {}", options.as_str())?;
                }
                f.write_str(" disabled")
            }
            Op::EnableHealth => write!(f, "enable health {server}"),
            Op::WaitRemovable { ms } => write!(f, "wait {ms}ms srv-removable {server}"),
            Op::DelServer => write!(f, "del server {server}"),
            Op::Weight(w) => write!(f, "set server {server} weight {w}"),
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

    #[test]
    fn map_commands_name_the_pool_qualified_slot() {
        let web = PoolName::new("web").unwrap();
        let map = MapFile::new(Path::new("/var/lib/haproxy-asg/instances.map")).unwrap();
        let id = MemberId::new("i-0abc").unwrap();
        let put: Vec<String> = Command::map_put(&web, 3, &map, &id)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            put,
            [
                "del map /var/lib/haproxy-asg/instances.map web/slot3",
                "add map /var/lib/haproxy-asg/instances.map web/slot3 i-0abc"
            ]
        );
        let set = Command::new(
            &web,
            3,
            Op::MapSet {
                map: map.clone(),
                member: id,
            },
        );
        assert_eq!(
            set.to_string(),
            "set map /var/lib/haproxy-asg/instances.map web/slot3 i-0abc"
        );
        assert_eq!(set.map_key(), "web/slot3");
    }

    #[test]
    fn map_files_that_could_break_a_line_are_refused() {
        for bad in [
            "relative/instances.map",
            "/var/lib/with space/instances.map",
            "/var/lib/x;y/instances.map",
            "/var/lib/x,y)/instances.map",
            "/",
        ] {
            let e = MapFile::new(Path::new(bad)).unwrap_err();
            assert!(e.to_string().contains("absolute path"), "{bad}: {e}");
        }
    }

    #[test]
    fn replies_are_judged_per_command() {
        // The replies HAProxy 2.6.12 gives (checked against the real binary).
        let map = MapFile::new(Path::new("/s/instances.map")).unwrap();
        let id = MemberId::new("i-1").unwrap();
        let add = Op::MapAdd {
            map: map.clone(),
            member: id.clone(),
        };
        let set = Op::MapSet {
            map: map.clone(),
            member: id,
        };
        let del = Op::MapDel { map };
        assert!(add.succeeded(""));
        assert!(!add.succeeded("Unknown map identifier. Please use #<id> or <file>."));
        assert!(set.succeeded(""));
        assert!(!set.succeeded("entry not found."));
        assert!(del.succeeded(""));
        assert!(del.succeeded("Key not found."));
        assert!(!del.succeeded("Unknown map identifier. Please use #<id> or <file>."));
        // `Key not found.` is a refusal for anything but a delete.
        assert!(!Op::Ready.succeeded("Key not found."));
        assert!(Op::SetAddr {
            addr: "10.0.0.1".parse().unwrap(),
            port: Port::new(80).unwrap()
        }
        .succeeded("IP changed from '0.0.0.0' to '10.0.0.1' by 'stats socket command'"));
        assert!(!Op::Drain.succeeded("No such server."));
    }

    /// The replies to `set server web/slot1 addr 127.0.0.9 port 9999` (and its
    /// neighbours) of each version, captured from the real binaries (2.6.12, 3.0.11,
    /// 3.2.26); 2.8's as the 2.6 code that 2.8 keeps writes them.
    #[test]
    fn set_addr_replies_of_every_version() {
        let op = Op::SetAddr {
            addr: "127.0.0.9".parse().unwrap(),
            port: Port::new(9999).unwrap(),
        };
        let by = " by 'stats socket command'";
        let changed = format!(
            "IP changed from '0.0.0.0' to '127.0.0.9', port changed from '80' to '9999'{by}"
        );
        // Both parts changed: the same text on every version.
        assert!(op.succeeded(&changed));
        // Unchanged: a member back at the address and port its slot still holds.
        let unchanged_2_6 = format!("no need to change the addr, no need to change the port{by}");
        assert!(op.succeeded(&unchanged_2_6), "2.6/2.8");
        assert!(op.succeeded("nothing changed"), "3.0/3.2");
        // One part changed.
        assert!(op.succeeded(&format!(
            "no need to change the addr, port changed from '9999' to '9998'{by}"
        )));
        assert!(op.succeeded(&format!(
            "IP changed from '127.0.0.9' to '127.0.0.8', no need to change the port{by}"
        )));
        assert!(
            op.succeeded(&format!("port changed from '9999' to '9998'{by}")),
            "3.0+"
        );
        assert!(
            op.succeeded(&format!("IP changed from '127.0.0.9' to '127.0.0.8'{by}")),
            "3.0+"
        );
        // A refused part is a refusal, even when 2.6 applied the address before it.
        assert!(!op.succeeded(&format!(
            "IP changed from '0.0.0.0' to '127.0.0.7', problem converting port 'abc' to an int{by}"
        )));
        assert!(
            !op.succeeded("problem converting port 'abc' to an int"),
            "3.0+"
        );
        assert!(!op.succeeded("No such server."));
        assert!(!op.succeeded("Require 'backend/server'."));
        // The state commands answer nothing: an address change's words are not theirs.
        assert!(!Op::Ready.succeeded("nothing changed"));
        assert!(Op::Ready.succeeded(""));
    }

    /// The slot added at runtime and given back, as the agent writes it.
    #[test]
    fn runtime_slot_commands_read_as_haproxy_expects_them() {
        let web = PoolName::new("web").unwrap();
        let port = Port::new(8080).unwrap();
        let opts = ServerOptions::new("check inter 500ms fall 2 rise 2").unwrap();
        let add: Vec<String> = Command::add_slot(&web, 5, port, &opts)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            add,
            [
                "add server web/slot5 0.0.0.0:8080 check inter 500ms fall 2 rise 2 disabled",
                "enable health web/slot5"
            ]
        );
        // Without checks there is no health to enable.
        let plain = ServerOptions::new("weight 10").unwrap();
        let add: Vec<String> = Command::add_slot(&web, 6, port, &plain)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            add,
            ["add server web/slot6 0.0.0.0:8080 weight 10 disabled"]
        );
        let none = ServerOptions::new("").unwrap();
        assert_eq!(
            Command::add_slot(&web, 7, port, &none)[0].to_string(),
            "add server web/slot7 0.0.0.0:8080 disabled"
        );
        let del: Vec<String> = Command::remove_slot(&web, 5)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            del,
            [
                "set server web/slot5 state maint",
                "wait 200ms srv-removable web/slot5",
                "del server web/slot5"
            ]
        );
    }

    /// The answers to `add server`, `enable health`, `wait ... srv-removable` and `del
    /// server`, captured from the real binaries: 3.0.11 and 3.2.26 answer alike; 2.6.12
    /// (which the agent never sends them to) has no `wait` and ends some answers
    /// without their empty line.
    #[test]
    fn runtime_slot_replies_of_every_version() {
        let add = Op::AddServer {
            port: Port::new(80).unwrap(),
            options: ServerOptions::new("check").unwrap(),
        };
        // 3.0 and 3.2 (2.6 alike).
        assert!(add.succeeded("New server registered."));
        // An option a server added at runtime does not take (every version).
        assert!(!add.succeeded("'init-addr' option is not accepted for dynamic server"));
        // A static balance algorithm (static-rr, a map-based hash; every version).
        assert!(
            !add.succeeded("Backend must use a dynamic load balancing to support dynamic servers.")
        );
        assert!(!add.succeeded("Already exists a server with the same name in backend."));
        assert!(Op::EnableHealth.succeeded(""));
        let wait = Op::WaitRemovable { ms: 200 };
        assert!(wait.succeeded("Done."), "3.0/3.2: removable");
        assert!(!wait.succeeded("Failed."), "3.0/3.2: no such server");
        // Still holding a connection when the delay ends: the versions differ.
        assert!(!wait.succeeded("Wait delay expired."), "3.0");
        assert!(!wait.succeeded("Interrupted."), "3.2");
        assert!(
            !wait.succeeded(
                "Unknown command, but maybe one of the following ones is a better match:"
            ),
            "2.6 has no `wait`"
        );
        assert!(Op::DelServer.succeeded("Server deleted."));
        assert!(Op::DelServer.succeeded("No such server."), "already gone");
        assert!(!Op::DelServer.succeeded("Only servers in maintenance mode can be deleted."));
        assert!(!Op::DelServer
            .succeeded("Server still has connections attached to it, cannot remove it."));
    }
}
