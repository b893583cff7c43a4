//! Validated names and values: a value of these types is always safe to write into an
//! HAProxy command line or configuration file.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name, port or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A pool name HAProxy would not accept as a backend name.
    #[error("invalid pool name {0:?}: use 1-64 characters of letters, digits, '-', '_', '.' or ':' (it is the HAProxy backend name)")]
    PoolName(String),
    /// A member id that could not be written safely on a runtime-socket line.
    #[error("invalid member id {0:?}: use 1-128 characters of letters, digits, '-', '_', '.' or ':' (an EC2 instance id such as i-0abc123 fits)")]
    MemberId(String),
    /// A proxy host id (its EC2 instance id) that could not be used.
    #[error("invalid host id {0:?}: use 1-128 characters of letters, digits, '-', '_', '.' or ':' (on AWS, the proxy's EC2 instance id such as i-0abc123)")]
    HostId(String),
    /// Port 0 or above 65535 (HAProxy silently wraps 99999 to 34463, so it is refused here).
    #[error("invalid port {0}: a port is a number from 1 to 65535")]
    Port(i64),
    /// Not an IPv4 or IPv6 literal.
    #[error("invalid address {0:?}: give an IPv4 or IPv6 literal such as 10.0.1.23 (host names are not resolved)")]
    Address(String),
    /// An address that would make HAProxy send traffic somewhere unintended.
    #[error("address {0} can not be a member: unspecified (0.0.0.0, ::), multicast and broadcast addresses are refused")]
    UnusableAddress(IpAddr),
    /// Server options that could break out of their configuration line.
    #[error("invalid server options {0:?}: keep to one line of letters, digits, spaces and '-_.:,/' (no '#', quotes or newlines)")]
    ServerOptions(String),
    /// An Availability Zone name that could not be used.
    #[error("invalid zone {0:?}: use 1-64 characters of letters, digits, '-', '_', '.' or ':' (an Availability Zone name such as us-east-1a, or its id such as use1-az1)")]
    Zone(String),
    /// A weight HAProxy would not take.
    #[error("invalid weight {0}: a weight is a number from 0 to 256 (HAProxy's range; 0 takes no new traffic)")]
    Weight(i64),
    /// An Auto Scaling group name AWS would not have given.
    #[error("invalid Auto Scaling group name {0:?}: a group name is 1-255 characters, without control characters")]
    GroupName(String),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, ModelError> {
                let s = s.into();
                if s.is_empty() || s.len() > $max || !s.chars().all(is_name_char) {
                    return Err(ModelError::$err(s));
                }
                Ok(Self(s))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, ModelError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The name of a pool, which is also the name of its HAProxy backend.
    PoolName, 64, PoolName
);
name_type!(
    /// A member's stable identity, normally its EC2 instance id. It keeps its slot for
    /// its whole life, whatever its address does.
    MemberId, 128, MemberId
);
name_type!(
    /// A proxy host's identity: on AWS its EC2 instance id, which is also the role
    /// session name of its instance profile (how the reactor knows who sent a report).
    HostId, 128, HostId
);

/// An Auto Scaling group's name: 1-255 characters (AWS's limit) without control
/// characters; any other character AWS allows (spaces too). Reads as a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Validates and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, ModelError> {
        let s = s.into();
        let n = s.chars().count();
        if n == 0 || n > 255 || s.chars().any(char::is_control) {
            return Err(ModelError::GroupName(s));
        }
        Ok(Self(s))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for GroupName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for GroupName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for GroupName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<GroupName> for String {
    fn from(g: GroupName) -> String {
        g.0
    }
}

impl From<&GroupName> for String {
    fn from(g: &GroupName) -> String {
        g.0.clone()
    }
}

impl FromStr for GroupName {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Self::new(s)
    }
}

impl Serialize for GroupName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

name_type!(
    /// An Availability Zone (its name, such as `us-east-1a`): where a member or a proxy
    /// host runs, for same-zone routing.
    Zone, 64, Zone
);

/// A member's share of its pool's traffic against the other members (HAProxy's
/// `weight`, 0 to 256; 0 takes no new traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Weight(u16);

impl Weight {
    /// HAProxy's largest weight.
    pub const MAX: u16 = 256;

    /// Validates `n` (0 to 256).
    pub fn new(n: i64) -> Result<Self, ModelError> {
        u16::try_from(n)
            .ok()
            .filter(|w| *w <= Self::MAX)
            .map(Self)
            .ok_or(ModelError::Weight(n))
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Self::new(n).map_err(serde::de::Error::custom)
    }
}

/// A TCP port, 1 to 65535.
///
/// HAProxy accepts `port 99999` and silently wraps it to 34463, so ports are checked
/// here, before anything reaches the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    /// Validates `n` (1-65535).
    pub fn new(n: i64) -> Result<Self, ModelError> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err(ModelError::Port(n)),
        }
    }

    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Port {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.trim().parse::<i64>() {
            Ok(n) => Self::new(n),
            Err(_) => Err(ModelError::Port(-1)),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Self::new(n).map_err(serde::de::Error::custom)
    }
}

/// Parses and checks a member address: an IP literal HAProxy can send traffic to.
pub(crate) fn parse_address(s: &str) -> Result<IpAddr, ModelError> {
    let ip: IpAddr = s.parse().map_err(|_| ModelError::Address(s.to_string()))?;
    check_address(ip)?;
    Ok(ip)
}

fn check_address(ip: IpAddr) -> Result<(), ModelError> {
    let unusable = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if unusable {
        return Err(ModelError::UnusableAddress(ip));
    }
    Ok(())
}

/// One backend server: an instance (or any process) at an address and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Stable identity (the EC2 instance id).
    pub id: MemberId,
    /// Where HAProxy sends traffic: an IP literal, never a host name.
    pub address: IpAddr,
    /// The port the member serves on.
    pub port: Port,
    /// Its Availability Zone, when the sender knows it (for same-zone routing). Absent
    /// from messages of older reactors; an older agent refuses a message carrying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<Zone>,
    /// Its weight in the pool, when its group has one (`POOLS`); absent: HAProxy's (the
    /// server options' `weight`, else 1). An older agent refuses a message carrying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
}

impl Member {
    /// Builds a member, refusing unusable addresses.
    pub fn new(id: MemberId, address: IpAddr, port: Port) -> Result<Self, ModelError> {
        check_address(address)?;
        Ok(Self {
            id,
            address,
            port,
            zone: None,
            weight: None,
        })
    }

    /// The same member in `zone`.
    pub fn with_zone(mut self, zone: Option<Zone>) -> Self {
        self.zone = zone;
        self
    }

    /// The same member with `weight`.
    pub fn with_weight(mut self, weight: Option<Weight>) -> Self {
        self.weight = weight;
        self
    }
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            id: MemberId,
            address: String,
            port: Port,
            #[serde(default)]
            zone: Option<Zone>,
            #[serde(default)]
            weight: Option<Weight>,
        }
        let raw = Raw::deserialize(d)?;
        let address = parse_address(&raw.address)
            .map_err(|e| serde::de::Error::custom(format!("member {}: {e}", raw.id)))?;
        Ok(Self {
            id: raw.id,
            address,
            port: raw.port,
            zone: raw.zone,
            weight: raw.weight,
        })
    }
}

/// Options appended to every slot's `server-template` line (for example
/// `check inter 500ms fall 2 rise 2`), checked so they can not break out of the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ServerOptions(String);

impl ServerOptions {
    /// Validates `s`: one line of harmless characters.
    pub fn new(s: impl Into<String>) -> Result<Self, ModelError> {
        let s = s.into();
        let ok = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -_.:,/".contains(c));
        if !ok || s.len() > 512 {
            return Err(ModelError::ServerOptions(s));
        }
        Ok(Self(s.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    /// The normalised text (single spaces).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the options enable health checks (`check`), which health-gated adds need.
    pub fn has_check(&self) -> bool {
        self.0.split(' ').any(|w| w == "check")
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self("check inter 500ms fall 2 rise 2".into())
    }
}

impl<'de> Deserialize<'de> for ServerOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// An HAProxy backend fed by an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The HAProxy backend name.
    pub name: PoolName,
    /// The port members serve on when the group does not say otherwise.
    pub port: Port,
    /// Options for every slot of the pool (health checks, weights, TLS...).
    #[serde(default)]
    pub server_options: ServerOptions,
    /// The weight of the members a group brings into this pool (`POOLS`' `weight`: two
    /// groups feeding one pool at 90 and 10 share its traffic 90/10); none: HAProxy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_1_65535_are_refused() {
        assert!(Port::new(0).is_err());
        assert!(Port::new(99999).is_err());
        assert!(Port::new(-1).is_err());
        assert_eq!(Port::new(65535).unwrap().get(), 65535);
        assert_eq!("8080".parse::<Port>().unwrap().get(), 8080);
        assert!("abc".parse::<Port>().is_err());
    }

    #[test]
    fn names_are_restricted_to_socket_safe_characters() {
        assert!(PoolName::new("web").is_ok());
        assert!(PoolName::new("web;shutdown").is_err());
        assert!(PoolName::new("").is_err());
        assert!(PoolName::new("a b").is_err());
        assert!(MemberId::new("i-0123456789abcdef0").is_ok());
        assert!(MemberId::new("i-1\nset server").is_err());
        assert!(MemberId::new("x".repeat(129)).is_err());
    }

    #[test]
    fn addresses_must_be_usable_literals() {
        assert!(parse_address("10.0.0.5").is_ok());
        assert!(parse_address("::1").is_ok());
        assert!(parse_address("999.1.1.1").is_err());
        assert!(parse_address("example.com").is_err());
        assert!(matches!(
            parse_address("0.0.0.0"),
            Err(ModelError::UnusableAddress(_))
        ));
        assert!(parse_address("255.255.255.255").is_err());
    }

    #[test]
    fn server_options_can_not_escape_their_line() {
        assert!(ServerOptions::new("check inter 500ms rise 2").is_ok());
        assert!(ServerOptions::new("check\nbackend evil").is_err());
        assert!(ServerOptions::new("check # comment").is_err());
        assert!(ServerOptions::new("check;").is_err());
        assert!(ServerOptions::default().has_check());
        assert!(!ServerOptions::new("weight 10").unwrap().has_check());
    }

    #[test]
    fn group_names_are_what_auto_scaling_gives() {
        for ok in ["web-asg", "blue green (canary)", "ä", &"g".repeat(255)] {
            assert_eq!(GroupName::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a\nb", "tab\there", &"g".repeat(256)] {
            let e = GroupName::new(bad).unwrap_err().to_string();
            assert!(e.contains("1-255 characters"), "{e}");
        }
        let g: GroupName = serde_json::from_str("\"web-asg\"").unwrap();
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            "\"web-asg\"",
            "a plain string"
        );
        assert!(serde_json::from_str::<GroupName>("\"\"").is_err());
        assert_eq!(&*g, "web-asg");
    }

    #[test]
    fn weights_are_haproxys_0_to_256_and_zones_are_names() {
        assert_eq!(Weight::new(0).unwrap().get(), 0);
        assert_eq!(Weight::new(256).unwrap().get(), 256);
        assert!(Weight::new(257)
            .unwrap_err()
            .to_string()
            .contains("0 to 256"));
        assert!(Weight::new(-1).is_err());
        assert!(Zone::new("us-east-1a").is_ok());
        assert!(Zone::new("use1-az1").is_ok());
        assert!(Zone::new("a zone").is_err());
        assert!(Zone::new("").is_err());
    }

    #[test]
    fn a_member_without_zone_or_weight_reads_and_writes_as_before() {
        let old = r#"{"id":"i-1","address":"10.0.0.5","port":8080}"#;
        let m: Member = serde_json::from_str(old).unwrap();
        assert_eq!((m.zone.as_ref(), m.weight), (None, None));
        assert_eq!(serde_json::to_string(&m).unwrap(), old);
        let new =
            r#"{"id":"i-1","address":"10.0.0.5","port":8080,"zone":"us-east-1a","weight":90}"#;
        let m: Member = serde_json::from_str(new).unwrap();
        assert_eq!(m.zone.as_ref().map(Zone::as_str), Some("us-east-1a"));
        assert_eq!(m.weight.map(Weight::get), Some(90));
        assert_eq!(serde_json::to_string(&m).unwrap(), new);
        let bad = new.replace("90", "300");
        assert!(serde_json::from_str::<Member>(&bad).is_err());
    }
}
