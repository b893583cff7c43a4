//! Members that went DOWN (or came back UP) after they were UP on this host: what the
//! service tells the reactor's inbox so that a quorum of proxies can have Auto Scaling
//! replace an instance they all see failing. Pure: the service hands it what the slot
//! table and HAProxy say at each look; it answers the changes to report.
//!
//! Only members the table holds as `up` with nothing in flight are watched (a join, a
//! drain or maintenance is no health observation). A member first seen DOWN (after a
//! restart of the service, say) is reported DOWN: the reactor keeps the newest word of
//! each host, so a repeat changes nothing there.

use std::collections::BTreeMap;

use infra::{HealthReport, MemberId, PoolName};

/// What HAProxy says of a watched member at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Passing its checks (`UP`, or `UP 1/2` while a failure is counted).
    Up,
    /// Failed its checks (`DOWN`, or `DOWN 1/2` while it rises again).
    Down,
    /// Anything else (maintenance, drain, no row): not an observation.
    Other,
}

impl Seen {
    /// Reads a stats row's status.
    pub fn of_status(status: &str) -> Self {
        if status == "UP" || status.starts_with("UP ") || status == "no check" {
            Self::Up
        } else if status == "DOWN" || status.starts_with("DOWN ") {
            Self::Down
        } else {
            Self::Other
        }
    }
}

/// The last health seen of each watched member.
#[derive(Debug, Default)]
pub struct HealthWatch {
    healthy: BTreeMap<(PoolName, MemberId), bool>,
}

impl HealthWatch {
    /// One look at `members` (every watched member, with what HAProxy says of it) at
    /// `now_ms`: the changes since the last look. Members not given are forgotten.
    pub fn look(
        &mut self,
        members: impl IntoIterator<Item = (PoolName, MemberId, Seen)>,
        now_ms: u64,
    ) -> Vec<HealthReport> {
        let mut next = BTreeMap::new();
        let mut changes = Vec::new();
        for (pool, member, seen) in members {
            let key = (pool, member);
            let before = self.healthy.get(&key).copied();
            let now = match seen {
                Seen::Up => true,
                Seen::Down => false,
                Seen::Other => continue,
            };
            // First seen UP: nothing to say; first seen DOWN: it was UP in the table.
            if before.unwrap_or(true) != now {
                changes.push(HealthReport {
                    pool: key.0.clone(),
                    member: key.1.clone(),
                    healthy: now,
                    since_ms: now_ms,
                });
            }
            next.insert(key, now);
        }
        self.healthy = next;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, seen: Seen) -> (PoolName, MemberId, Seen) {
        (
            PoolName::new("web").unwrap(),
            MemberId::new(id).unwrap(),
            seen,
        )
    }

    #[test]
    fn a_member_that_goes_down_and_back_is_reported_once_each_way() {
        let mut w = HealthWatch::default();
        assert!(w
            .look([m("i-1", Seen::Up), m("i-2", Seen::Up)], 1)
            .is_empty());
        let c = w.look([m("i-1", Seen::Down), m("i-2", Seen::Up)], 2);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].member.as_str(), c[0].healthy, c[0].since_ms),
            ("i-1", false, 2)
        );
        assert!(w.look([m("i-1", Seen::Down)], 3).is_empty(), "said once");
        // Maintenance is no observation, and keeps nothing: i-1 is forgotten.
        assert!(w.look([m("i-1", Seen::Other)], 4).is_empty());
        let c = w.look([m("i-1", Seen::Up)], 5);
        assert!(c.is_empty(), "forgotten, then first seen UP");
        assert!(w.look([m("i-1", Seen::Down)], 6)[0].since_ms == 6);
        let c = w.look([m("i-1", Seen::Up)], 7);
        assert_eq!((c.len(), c[0].healthy), (1, true));
    }

    #[test]
    fn a_member_first_seen_down_is_reported_down() {
        let mut w = HealthWatch::default();
        let c = w.look([m("i-1", Seen::Down)], 1);
        assert_eq!((c.len(), c[0].healthy), (1, false));
    }

    #[test]
    fn statuses_read_as_haproxy_writes_them() {
        assert_eq!(Seen::of_status("UP"), Seen::Up);
        assert_eq!(Seen::of_status("UP 1/2"), Seen::Up);
        assert_eq!(Seen::of_status("DOWN"), Seen::Down);
        assert_eq!(Seen::of_status("DOWN 1/2"), Seen::Down);
        assert_eq!(Seen::of_status("MAINT"), Seen::Other);
        assert_eq!(Seen::of_status("DRAIN"), Seen::Other);
    }
}
