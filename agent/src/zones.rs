//! Traffic policy on one host: members' weights, same-zone routing with spill, and
//! zones taken away. Pure: the slot table, HAProxy's server states and the policy in,
//! the weights and admin states each slot should have out; the service
//! ([`crate::service`]) sends only what differs from what HAProxy has.
//!
//! - A member with a weight (its group's `POOLS` / `[aws] weights`) has that weight; one
//!   without keeps HAProxy's (`weight 100%`: the server options' `weight`, else 1).
//! - With `zone_affinity = "prefer"` on a host in zone Z, while at least
//!   `min_zone_members` members of Z are UP in HAProxy (passing checks, ready, their zone
//!   not away, not leaving), Z's members share HAProxy's top weight (256) by their own
//!   weights and members of other zones (and members without a zone) stand by at weight
//!   1 ([`STANDBY_WEIGHT`]): a trickle of about 1 request in 256 per local member. That
//!   trickle is what makes an unannounced death cost nothing: the moment Z's last member
//!   fails, HAProxy's own retry (`option redispatch`) and balancing find the members
//!   standing by, before its checks mark the member DOWN and without waiting for the
//!   agent's next look, which then gives every member its own weight back (the spill).
//!   At weight 0 they would get nothing, and HAProxy would answer 503 until that look.
//! - Members of a zone taken away (`agent zone away`) are drained, not removed; they are
//!   made ready again when the zone comes back.

use std::collections::{BTreeMap, BTreeSet};

use infra::{MemberId, PoolName, Weight, Zone};

use crate::config::ZoneAffinity;
use crate::haproxy::{Command, Op, SetWeight};
use crate::slots::{EntryState, LiveSlots, PoolSlots};

/// The weight members outside this host's zone stand by at while it holds its traffic
/// (a member whose own weight is 0 keeps 0).
pub const STANDBY_WEIGHT: u16 = 1;

/// The weight the heaviest local member gets while its zone holds the traffic
/// (HAProxy's maximum); the others get theirs in proportion.
pub const LOCAL_TOP_WEIGHT: u16 = Weight::MAX;

/// What one pool's traffic policy depends on besides its members.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// This host's zone (agent.toml `zone`).
    pub host_zone: Option<&'a Zone>,
    /// The pool's `zone_affinity`.
    pub affinity: ZoneAffinity,
    /// The pool's `min_zone_members` (at least 1).
    pub min_zone_members: u32,
    /// The zones taken away on this host.
    pub away: &'a BTreeSet<Zone>,
}

impl Policy<'_> {
    /// Whether a member in `zone` is in this host's zone, and that zone is not away.
    pub fn local(&self, zone: Option<&Zone>) -> bool {
        match (self.host_zone, zone) {
            (Some(h), Some(z)) => h == z && !self.away.contains(z),
            _ => false,
        }
    }

    /// Whether members of `zone` are drained because it is away.
    pub fn is_away(&self, zone: Option<&Zone>) -> bool {
        zone.is_some_and(|z| self.away.contains(z))
    }

    fn prefers(&self) -> bool {
        self.affinity == ZoneAffinity::Prefer && self.host_zone.is_some()
    }
}

/// One member as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<'a> {
    /// Its zone, if known.
    pub zone: Option<&'a Zone>,
    /// Its configured weight (`None`: HAProxy's).
    pub weight: Option<Weight>,
    /// HAProxy's initial weight for its slot (the server options' `weight`, else 1).
    pub initial: u16,
    /// UP in HAProxy: passing its checks and ready (not drained, not in maintenance).
    pub up: bool,
    /// Leaving (being drained out of the pool): it counts for nothing.
    pub leaving: bool,
}

/// The weights a pool's members should have now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// One per member, in the order given.
    pub weights: Vec<SetWeight>,
    /// Affinity is on and this host's zone has too few members UP: every zone takes
    /// traffic (and some member of another zone is there to take it).
    pub spilled: bool,
    /// Members of this host's zone UP (not away, not leaving).
    pub local_up: u32,
}

/// Each member's effective weight: its configured weight (or HAProxy's); while the
/// pool prefers this host's zone and at least `min_zone_members` members of it are UP,
/// local members share [`LOCAL_TOP_WEIGHT`] by their weights and every other member
/// stands by at [`STANDBY_WEIGHT`].
pub fn effective(policy: &Policy, members: &[Seen]) -> Decision {
    let own = |m: &Seen| m.weight.map_or(m.initial, Weight::get);
    let local = |m: &&Seen| !m.leaving && policy.local(m.zone) && own(m) > 0;
    let local_up = members.iter().filter(local).filter(|m| m.up).count();
    let local_up = u32::try_from(local_up).unwrap_or(u32::MAX);
    let holds = policy.prefers() && local_up >= policy.min_zone_members.max(1);
    let top = members.iter().filter(local).map(own).max().unwrap_or(1);
    let weights = members
        .iter()
        .map(|m| {
            if !holds {
                m.weight
                    .map_or(SetWeight::Initial, |w| SetWeight::To(w.get()))
            } else if policy.local(m.zone) {
                SetWeight::To(scaled(own(m), top))
            } else {
                SetWeight::To(own(m).min(STANDBY_WEIGHT))
            }
        })
        .collect();
    let others = members.iter().any(|m| !m.leaving && !policy.local(m.zone));
    Decision {
        weights,
        spilled: policy.prefers() && !holds && others,
        local_up,
    }
}

/// `w` of the heaviest `top`, as a share of [`LOCAL_TOP_WEIGHT`] (at least 1 unless 0).
fn scaled(w: u16, top: u16) -> u16 {
    if w == 0 || top == 0 {
        return 0;
    }
    let (w, top) = (u32::from(w.min(top)), u32::from(top));
    let n = (w * u32::from(LOCAL_TOP_WEIGHT) + top / 2) / top;
    u16::try_from(n.max(1)).unwrap_or(LOCAL_TOP_WEIGHT)
}

/// What a pool's slots need to match the policy, split so nothing ever leaves a pool
/// without somewhere to send traffic: `raise` (weights that grow, members made ready)
/// goes before `lower` (weights that shrink, members drained).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolZones {
    /// Commands that give traffic: send first.
    pub raise: Vec<Command>,
    /// Commands that take traffic away: send after `raise` is done.
    pub lower: Vec<Command>,
    /// Each member's effective weight (every member not leaving).
    pub effective: BTreeMap<MemberId, SetWeight>,
    /// See [`Decision::spilled`].
    pub spilled: bool,
    /// See [`Decision::local_up`].
    pub local_up: u32,
}

impl PoolZones {
    /// Takes out the commands about `slot` (a join sends them on its own line).
    pub fn take_slot(&mut self, slot: u32) -> Vec<Command> {
        let mut out: Vec<Command> = Vec::new();
        for list in [&mut self.raise, &mut self.lower] {
            let (mine, rest): (Vec<Command>, Vec<Command>) =
                list.drain(..).partition(|c| c.slot == slot);
            *list = rest;
            out.extend(mine);
        }
        out
    }
}

/// Plans `pool`'s weights and away drains from the table `t` and HAProxy's `live`
/// slots: a weight is sent only where HAProxy has another; members of an away zone that
/// HAProxy does not drain are drained; with `back`, members of that zone that HAProxy
/// drains (and that are not leaving) are made ready.
pub fn plan_pool(
    pool: &PoolName,
    t: &PoolSlots,
    live: &LiveSlots,
    policy: &Policy,
    back: Option<&Zone>,
) -> PoolZones {
    let members: Vec<(&MemberId, &crate::slots::Entry)> = t.members.iter().collect();
    let seen: Vec<Seen> = members
        .iter()
        .map(|(_, e)| {
            let state = live.slots.get(&e.slot);
            Seen {
                zone: e.zone.as_ref(),
                weight: e.weight,
                initial: state.map_or(1, |s| s.iweight),
                up: state.is_some_and(|s| s.running() && !s.in_maint() && !s.draining()),
                leaving: e.state == EntryState::Draining,
            }
        })
        .collect();
    let d = effective(policy, &seen);
    let mut out = PoolZones {
        spilled: d.spilled,
        local_up: d.local_up,
        ..PoolZones::default()
    };
    for (((id, e), w), s) in members.iter().zip(d.weights).zip(&seen) {
        if s.leaving {
            continue;
        }
        out.effective.insert((*id).clone(), w);
        let Some(state) = live.slots.get(&e.slot) else {
            continue;
        };
        if !w.holds(state.uweight, state.iweight) {
            let c = Command::new(pool, e.slot, Op::Weight(w));
            let to = match w {
                SetWeight::To(n) => n,
                SetWeight::Initial => state.iweight,
            };
            if to < state.uweight {
                out.lower.push(c);
            } else {
                out.raise.push(c);
            }
        }
        if state.in_maint() {
            continue;
        }
        if policy.is_away(s.zone) && !state.draining() {
            out.lower.push(Command::new(pool, e.slot, Op::Drain));
        } else if back.is_some_and(|b| s.zone == Some(b)) && state.draining() {
            out.raise.push(Command::new(pool, e.slot, Op::Ready));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use infra::Port;

    use super::*;
    use crate::haproxy::ServerState;
    use crate::slots::Entry;

    fn z(s: &str) -> Zone {
        Zone::new(s).unwrap()
    }

    fn seen<'a>(zone: Option<&'a Zone>, up: bool) -> Seen<'a> {
        Seen {
            zone,
            weight: None,
            initial: 1,
            up,
            leaving: false,
        }
    }

    fn policy<'a>(host: &'a Zone, away: &'a BTreeSet<Zone>, min: u32) -> Policy<'a> {
        Policy {
            host_zone: Some(host),
            affinity: ZoneAffinity::Prefer,
            min_zone_members: min,
            away,
        }
    }

    const STANDBY: SetWeight = SetWeight::To(STANDBY_WEIGHT);
    const TOP: SetWeight = SetWeight::To(LOCAL_TOP_WEIGHT);
    const INITIAL: SetWeight = SetWeight::Initial;

    #[test]
    fn other_zones_stand_by_while_enough_local_members_are_up() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let none = BTreeSet::new();
        let p = policy(&a, &none, 1);
        let d = effective(
            &p,
            &[seen(Some(&a), true), seen(Some(&b), true), seen(None, true)],
        );
        assert_eq!(
            d.weights,
            [TOP, STANDBY, STANDBY],
            "the local member at the top weight, the others standing by; no zone counts as another zone"
        );
        assert!(!d.spilled);
        assert_eq!(d.local_up, 1);
        // The local member goes DOWN: everyone takes traffic (spill).
        let d = effective(&p, &[seen(Some(&a), false), seen(Some(&b), true)]);
        assert_eq!(d.weights, [INITIAL, INITIAL]);
        assert!(d.spilled);
        // Leaving (drained out) counts for nothing, even while HAProxy shows it UP.
        let leaving = Seen {
            leaving: true,
            ..seen(Some(&a), true)
        };
        let d = effective(&p, &[leaving, seen(Some(&b), true)]);
        assert_eq!(d.weights[1], INITIAL);
        assert!(d.spilled);
    }

    #[test]
    fn min_zone_members_is_the_threshold_and_weights_are_kept() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let none = BTreeSet::new();
        let weighted = |zone, up, w| Seen {
            weight: Some(Weight::new(w).unwrap()),
            ..seen(Some(zone), up)
        };
        let members = [
            weighted(&a, true, 90),
            weighted(&a, false, 90),
            weighted(&b, true, 10),
        ];
        let d = effective(&policy(&a, &none, 2), &members);
        assert_eq!(
            d.weights,
            [SetWeight::To(90), SetWeight::To(90), SetWeight::To(10)],
            "one of two local members UP: spilled, everyone at its weight"
        );
        assert!(d.spilled);
        let d = effective(&policy(&a, &none, 1), &members);
        assert_eq!(
            d.weights,
            [TOP, TOP, STANDBY],
            "local members share the top weight by their own weights"
        );
        assert!(!d.spilled);
    }

    #[test]
    fn local_members_keep_their_proportions_and_a_zero_weight_stays_zero() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let none = BTreeSet::new();
        let weighted = |zone, w| Seen {
            weight: Some(Weight::new(w).unwrap()),
            ..seen(Some(zone), true)
        };
        let d = effective(
            &policy(&a, &none, 1),
            &[
                weighted(&a, 90),
                weighted(&a, 10),
                weighted(&a, 0),
                weighted(&b, 0),
                Seen {
                    initial: 100,
                    ..seen(Some(&a), true)
                },
            ],
        );
        assert_eq!(
            d.weights,
            [
                SetWeight::To(230),
                SetWeight::To(26),
                SetWeight::To(0),
                SetWeight::To(0),
                TOP
            ],
            "90/10 of the heaviest (HAProxy's initial 100 for the last), 0 stays 0"
        );
        // A local member at weight 0 takes no traffic: it does not hold the zone.
        let d = effective(
            &policy(&a, &none, 1),
            &[weighted(&a, 0), seen(Some(&b), true)],
        );
        assert_eq!(d.weights, [SetWeight::To(0), INITIAL]);
        assert!(d.spilled);
        assert_eq!(scaled(1, 256), 1);
        assert_eq!(scaled(1, 1000), 1, "never 0 unless 0");
    }

    #[test]
    fn without_affinity_or_a_host_zone_every_member_keeps_its_weight() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let none = BTreeSet::new();
        let members = [
            seen(Some(&a), true),
            Seen {
                weight: Some(Weight::new(10).unwrap()),
                ..seen(Some(&b), true)
            },
        ];
        let off = Policy {
            affinity: ZoneAffinity::Off,
            ..policy(&a, &none, 1)
        };
        let no_zone = Policy {
            host_zone: None,
            ..policy(&a, &none, 1)
        };
        for p in [off, no_zone] {
            let d = effective(&p, &members);
            assert_eq!(d.weights, [INITIAL, SetWeight::To(10)]);
            assert!(!d.spilled);
        }
    }

    #[test]
    fn an_away_local_zone_spills_and_an_empty_other_side_is_no_spill() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let away = BTreeSet::from([a.clone()]);
        let d = effective(
            &policy(&a, &away, 1),
            &[seen(Some(&a), true), seen(Some(&b), true)],
        );
        assert_eq!(d.weights, [INITIAL, INITIAL]);
        assert!(d.spilled);
        assert_eq!(d.local_up, 0);
        let none = BTreeSet::new();
        let d = effective(&policy(&a, &none, 1), &[seen(Some(&a), false)]);
        assert!(!d.spilled, "nowhere else to go: nothing spilled");
    }

    fn entry(slot: u32, zone: &Zone, state: EntryState) -> Entry {
        Entry {
            slot,
            address: IpAddr::from([10, 0, 0, slot as u8]),
            port: Port::new(80).unwrap(),
            generation: 1,
            state,
            op: None,
            zone: Some(zone.clone()),
            weight: None,
            touched: 0,
        }
    }

    fn live(slots: &[(u32, bool, u32, u16)]) -> LiveSlots {
        LiveSlots {
            slots: slots
                .iter()
                .map(|&(n, up, admin, uweight)| {
                    let s = ServerState {
                        backend: "web".into(),
                        server: format!("slot{n}"),
                        addr: format!("10.0.0.{n}"),
                        port: 80,
                        op_state: if up { 2 } else { 0 },
                        admin_state: admin,
                        uweight,
                        iweight: 1,
                    };
                    (n, s)
                })
                .collect(),
        }
    }

    fn text(cs: &[Command]) -> Vec<String> {
        cs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn only_differences_are_sent_raises_before_lowers() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let web = PoolName::new("web").unwrap();
        let mut t = PoolSlots::default();
        t.members
            .insert(MemberId::new("i-a").unwrap(), entry(1, &a, EntryState::Up));
        t.members
            .insert(MemberId::new("i-b").unwrap(), entry(2, &b, EntryState::Up));
        let none = BTreeSet::new();
        let p = policy(&a, &none, 1);
        // Both at HAProxy's weight 1: i-a goes to the top, i-b stands by at 1 already.
        let z1 = plan_pool(
            &web,
            &t,
            &live(&[(1, true, 0, 1), (2, true, 0, 1)]),
            &p,
            None,
        );
        assert_eq!(text(&z1.raise), ["set server web/slot1 weight 256"]);
        assert!(z1.lower.is_empty());
        // Already so: nothing to send.
        let z2 = plan_pool(
            &web,
            &t,
            &live(&[(1, true, 0, 256), (2, true, 0, 1)]),
            &p,
            None,
        );
        assert!(z2.raise.is_empty() && z2.lower.is_empty());
        // i-b was at 100 (someone set it): standing by is a lower.
        let z2b = plan_pool(
            &web,
            &t,
            &live(&[(1, true, 0, 256), (2, true, 0, 100)]),
            &p,
            None,
        );
        assert_eq!(text(&z2b.lower), ["set server web/slot2 weight 1"]);
        // i-a goes DOWN: both get HAProxy's weight back (1 for i-b, which it has
        // already: standing by at 1 is its whole weight here); i-a's is a lower.
        let z3 = plan_pool(
            &web,
            &t,
            &live(&[(1, false, 0, 256), (2, true, 0, 1)]),
            &p,
            None,
        );
        assert!(z3.raise.is_empty(), "{:?}", text(&z3.raise));
        assert_eq!(text(&z3.lower), ["set server web/slot1 weight 100%"]);
        assert!(z3.spilled);
        // i-a is removed (draining): spill, and nothing is sent to i-a.
        t.members
            .get_mut(&MemberId::new("i-a").unwrap())
            .unwrap()
            .state = EntryState::Draining;
        let z4 = plan_pool(
            &web,
            &t,
            &live(&[(1, true, 0x08, 1), (2, true, 0, 0)]),
            &p,
            None,
        );
        assert_eq!(text(&z4.raise), ["set server web/slot2 weight 100%"]);
        assert!(z4.lower.is_empty());
        assert_eq!(z4.effective.len(), 1);
    }

    #[test]
    fn an_away_zone_is_drained_and_made_ready_when_it_comes_back() {
        let (a, b) = (z("zone-a"), z("zone-b"));
        let web = PoolName::new("web").unwrap();
        let mut t = PoolSlots::default();
        t.members
            .insert(MemberId::new("i-a").unwrap(), entry(1, &a, EntryState::Up));
        t.members
            .insert(MemberId::new("i-b").unwrap(), entry(2, &b, EntryState::Up));
        let away = BTreeSet::from([a.clone()]);
        let p = Policy {
            affinity: ZoneAffinity::Off,
            ..policy(&a, &away, 1)
        };
        let both_up = live(&[(1, true, 0, 1), (2, true, 0, 1)]);
        let zs = plan_pool(&web, &t, &both_up, &p, None);
        assert_eq!(text(&zs.lower), ["set server web/slot1 state drain"]);
        // Back: the drained member of zone-a is made ready; i-b is left alone.
        let none = BTreeSet::new();
        let p = Policy { away: &none, ..p };
        let drained = live(&[(1, true, 0x08, 1), (2, true, 0, 1)]);
        let zs = plan_pool(&web, &t, &drained, &p, Some(&a));
        assert_eq!(text(&zs.raise), ["set server web/slot1 state ready"]);
        // Without `back`, a drained member is not touched (someone else drained it).
        assert!(plan_pool(&web, &t, &drained, &p, None).raise.is_empty());
    }
}
