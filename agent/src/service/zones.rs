//! The traffic policy carried out ([`crate::zones`] decides): members' weights and
//! same-zone routing kept true as HAProxy's view of its servers changes (the ticker's
//! look, only while some pool prefers its zone or a zone is away), zones taken away and
//! brought back (`agent zone`), and everything re-sent after a resume.

use std::collections::BTreeMap;

use infra::{PoolName, Zone};
use tracing::{info, info_span, warn};

use super::*;
use crate::control::{ZoneAction, ZonesReply};
use crate::haproxy::{Op, ServerState, SetWeight};
use crate::zones::{self, Policy, PoolZones};

/// How often HAProxy's servers are looked at while some pool prefers its zone (or a
/// zone is away): a member going DOWN spills traffic within this plus its checks.
pub(super) const ZONE_LOOK: Duration = Duration::from_millis(200);

/// Every pool's slots among `states`.
pub(super) fn lives_of(cfg: &AgentConfig, states: &[ServerState]) -> BTreeMap<PoolName, LiveSlots> {
    cfg.pools
        .iter()
        .map(|pc| (pc.name().clone(), LiveSlots::of(pc.name().as_str(), states)))
        .collect()
}

/// What `plans` send, one command a group (logged): what gives traffic, then what
/// takes it away.
pub(super) fn staged(
    plans: &BTreeMap<PoolName, PoolZones>,
) -> (Vec<Vec<Command>>, Vec<Vec<Command>>) {
    for (pool, z) in plans {
        if z.raise.is_empty() && z.lower.is_empty() {
            continue;
        }
        let span = info_span!("zones", pool = %pool);
        let _g = span.enter();
        info!(
            raise = z.raise.len(),
            lower = z.lower.len(),
            spilled = z.spilled,
            "traffic policy: {} commands give traffic, {} take it away",
            z.raise.len(),
            z.lower.len()
        );
        for c in z.raise.iter().chain(&z.lower) {
            tracing::debug!(slot = %slot_name(c.slot), command = %c, "traffic policy");
        }
    }
    let one = |c: &Command| vec![c.clone()];
    let raise = plans
        .values()
        .flat_map(|z| z.raise.iter().map(one))
        .collect();
    let lower = plans
        .values()
        .flat_map(|z| z.lower.iter().map(one))
        .collect();
    (raise, lower)
}

impl Service {
    /// `pc`'s policy on this host.
    pub(super) fn policy<'a>(&'a self, pc: &'a PoolConfig, table: &'a SlotTable) -> Policy<'a> {
        Policy {
            host_zone: self.cfg.zone.as_ref(),
            affinity: pc.zone_affinity,
            min_zone_members: pc.min_zone_members,
            away: &table.away_zones,
        }
    }

    /// Whether the ticker looks at HAProxy for the policy: some pool prefers its zone,
    /// or a zone is away.
    pub(super) fn zones_watched(&self) -> bool {
        self.cfg.affinity_anywhere() || !self.lock().table.away_zones.is_empty()
    }

    /// Each pool's weights and away drains from the table and HAProxy's `lives`; with
    /// `back`, that zone's drained members are made ready.
    pub(super) fn zone_plans(
        &self,
        table: &SlotTable,
        lives: &BTreeMap<PoolName, LiveSlots>,
        back: Option<&Zone>,
    ) -> BTreeMap<PoolName, PoolZones> {
        let mut out = BTreeMap::new();
        for pc in &self.cfg.pools {
            let (Some(t), Some(live)) = (table.pools.get(pc.name().as_str()), lives.get(pc.name()))
            else {
                continue;
            };
            let policy = self.policy(pc, table);
            out.insert(
                pc.name().clone(),
                zones::plan_pool(pc.name(), t, live, &policy, back),
            );
        }
        out
    }

    /// Sends what `plans` hold not yet sent: what gives traffic first, then what takes
    /// it away. Returns how many commands went.
    pub(super) fn send_zone_plans(
        &self,
        st: &mut State,
        client: &Client,
        plans: BTreeMap<PoolName, PoolZones>,
    ) -> Result<usize, ServiceError> {
        let (raise, lower) = staged(&plans);
        client.batch(&raise)?;
        client.batch(&lower)?;
        self.note_spills(st, &plans);
        Ok(raise.len() + lower.len())
    }

    /// Logs each pool whose traffic starts or stops spilling out of this host's zone.
    pub(super) fn note_spills(&self, st: &mut State, plans: &BTreeMap<PoolName, PoolZones>) {
        for (pool, z) in plans {
            let was = st.spilled.insert(pool.clone(), z.spilled).unwrap_or(false);
            if was == z.spilled {
                continue;
            }
            let zone = self.cfg.zone.as_ref().map_or("-", Zone::as_str);
            let min = self.cfg.pool(pool).map_or(1, |p| p.min_zone_members);
            if z.spilled {
                warn!(pool = %pool, zone, up = z.local_up, min_zone_members = min, "traffic spills to other zones: {} of the {min} members of zone {zone} needed are UP (and not away)", z.local_up);
            } else {
                info!(pool = %pool, zone, up = z.local_up, "traffic back in zone {zone}: members of other zones stand by at weight 1");
            }
        }
    }

    /// Reads HAProxy's servers and sends what the policy needs (with `back`, that
    /// zone's drained members are made ready); under the lock.
    fn enforce_zones(&self, st: &mut State, back: Option<&Zone>) -> Result<usize, ServiceError> {
        let client = self.haproxy(st);
        let states = client.servers_state(None)?;
        let lives = lives_of(&self.cfg, &states);
        let plans = self.zone_plans(&st.table, &lives, back);
        self.send_zone_plans(st, &client, plans)
    }

    /// After a resume: HAProxy's weights and away drains made true again (a new worker
    /// starts from its configuration and the server-state file).
    pub(super) fn zones_after_resume(&self, st: &mut State) {
        if let Err(e) = self.enforce_zones(st, None) {
            self.metric(|m| m.error(error_kind(&e)));
            warn!(error = %e, "cannot set the members' weights and away drains after the resume; the next look tries again");
        }
    }

    /// The ticker's look at HAProxy for the policy: a member that went DOWN or came
    /// UP moves traffic between zones at once.
    pub fn rebalance(&self) {
        let client = {
            let st = self.lock();
            if !st.resumed {
                return;
            }
            self.haproxy(&st)
        };
        let states = match client.servers_state(None) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read HAProxy's servers for the traffic policy");
                return;
            }
        };
        // A change meanwhile may have sent some of this already: what is sent again is
        // the same (the table is read now, and a weight or state command is idempotent),
        // so a steady flow of changes does not hold the policy back.
        let mut st = self.lock();
        if !st.resumed {
            return;
        }
        let lives = lives_of(&self.cfg, &states);
        let plans = self.zone_plans(&st.table, &lives, None);
        match self.send_zone_plans(&mut st, &client, plans) {
            Ok(0) => {}
            Ok(_) => self.persist(&st),
            Err(e) => {
                self.metric(|m| m.error(error_kind(&e)));
                warn!(error = %e, "cannot send the members' weights; the next look tries again");
            }
        }
    }

    /// `agent zone`: takes a zone away (its members drained on this host, not removed),
    /// brings it back (made ready again), or only says which are away.
    pub fn zone(&self, action: Option<ZoneAction>) -> Result<ZonesReply, ServiceError> {
        let span = info_span!("zone", action = ?action);
        let _g = span.enter();
        let mut st = self.lock();
        let mut members = 0;
        if let Some(a) = &action {
            let (zone, back) = match a {
                ZoneAction::Away(z) => (z, None),
                ZoneAction::Back(z) => (z, Some(z)),
            };
            let before = st.table.away_zones.clone();
            let changed = match back {
                None => st.table.away_zones.insert(zone.clone()),
                Some(_) => st.table.away_zones.remove(zone),
            };
            // Taking traffic away goes ahead even when the table cannot be written;
            // bringing it back does not (a restart would take the zone away again).
            if let Err(e) = self.save_intent(&st, back.is_some()) {
                st.table.away_zones = before;
                return Err(e);
            }
            let sent = self.enforce_zones(&mut st, back);
            self.persist(&st);
            members = sent?;
            info!(zone = %zone, changed, commands = members, "zone {}", if back.is_some() { "back" } else { "away" });
        }
        Ok(ZonesReply {
            host_zone: self.cfg.zone.as_ref().map(ToString::to_string),
            away: st
                .table
                .away_zones
                .iter()
                .map(ToString::to_string)
                .collect(),
            spilled: st
                .spilled
                .iter()
                .filter(|(_, s)| **s)
                .map(|(p, _)| p.to_string())
                .collect(),
            commands: members as u64,
        })
    }

    /// `agent status`'s zones: this host's, those away, each member's effective weight
    /// (with HAProxy's servers `lives`, when it answered) and the pools spilled.
    pub(super) fn fill_zones(
        &self,
        status: &mut crate::status::Status,
        table: &SlotTable,
        lives: Option<&BTreeMap<PoolName, LiveSlots>>,
    ) {
        status.host_zone = self.cfg.zone.as_ref().map(ToString::to_string);
        status.away_zones = table.away_zones.iter().map(ToString::to_string).collect();
        let Some(lives) = lives else { return };
        let plans = self.zone_plans(table, lives, None);
        for p in &mut status.pools {
            let Some(z) = PoolName::new(p.pool.as_str())
                .ok()
                .and_then(|n| plans.get(&n))
            else {
                continue;
            };
            for i in &mut p.instances {
                let id = infra::MemberId::new(i.instance.as_str()).ok();
                i.effective = id
                    .and_then(|m| z.effective.get(&m))
                    .map(ToString::to_string);
            }
        }
        status.spilled = plans
            .iter()
            .filter(|(_, z)| z.spilled)
            .map(|(p, _)| p.to_string())
            .collect();
    }

    /// The commands a join sends for the policy, around its own: its weight first
    /// (before it is made ready), and `drain` last when its zone is away.
    pub(super) fn around_join(
        zones: Option<&mut PoolZones>,
        policy: &Policy,
        entry: Option<&slots::Entry>,
        live: &LiveSlots,
        join: (&PoolName, &infra::MemberId, u32),
        group: Vec<Command>,
    ) -> Vec<Command> {
        let (pool, member, slot) = join;
        let mut before: Vec<Command> = Vec::new();
        if let Some(z) = zones {
            before = z.take_slot(slot);
            before.retain(|c| matches!(c.op, Op::Weight(_)));
            let w = z.effective.get(member).copied();
            if let (Some(w @ SetWeight::To(_)), false) = (w, live.slots.contains_key(&slot)) {
                before.push(Command::new(pool, slot, Op::Weight(w)));
            }
        }
        before.extend(group);
        if policy.is_away(entry.and_then(|e| e.zone.as_ref())) {
            before.push(Command::new(pool, slot, Op::Drain));
        }
        before
    }
}
