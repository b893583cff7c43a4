//! The slot table and every transition of a member on one host. Pure logic, no I/O, so
//! every rule here is unit-tested; the service ([`crate::service`]) carries out what it
//! decides.
//!
//! A member is its own state machine, persisted in its [`Entry`]:
//!
//! ```text
//!   (new) --plan--> Joining --UP--> Up --remove--> Draining --sessions 0--> (free, retired)
//!                      |  \--deadline, fresh--> (failed, slot released)
//!                      \--remove, no traffic yet--> (released at once)
//!   Draining --re-added--> Joining (back to ready at once)
//! ```
//!
//! Rules:
//! - A member keeps its slot for its whole life; the lowest free slot is taken first, so
//!   freed slots are reused before untouched ones and high slots stay free to shrink.
//! - A slot is free only when the table has no member in it, no eviction runs in it, and
//!   HAProxy shows it in maintenance; a slot HAProxy serves that the table does not know
//!   is left alone until a sync evicts it.
//! - Every member remembers the generation of the last message that touched it, and
//!   members that left are remembered (bounded) with the generation that removed them:
//!   an older message about them is `stale` and changes nothing.
//! - An operation (join, drain) belongs to the change that started it ([`Op::change`]).
//!   A later change asking the same thing does not start it twice: it reports the member
//!   `pending`, naming that change. The same change sent again waits for it. A later
//!   change asking the opposite takes over, and the earlier one's outcome is `stale`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use infra::{Member, MemberId, OutcomeStatus, PoolName, Port, Weight, Zone};
use serde::{Deserialize, Serialize};

use crate::haproxy::{self, Command, ServerState, StatRow};

/// How many departed members are remembered per pool for generation checks. Late
/// events arrive seconds to minutes late, and the reactor also checks the group's
/// truth before sending, so a thousand departures back is plenty; the table stays
/// small enough to read and write on every change.
pub const RETIRED_KEEP: usize = 1024;

/// The table format version written to disk (version 1 had no operations; it is read
/// and upgraded).
pub const TABLE_VERSION: u32 = 2;

/// Every pool's slots; written to `slots.json` after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTable {
    /// [`TABLE_VERSION`] once written by this build.
    pub version: u32,
    /// Per pool (HAProxy backend name).
    pub pools: BTreeMap<String, PoolSlots>,
    /// Zones taken away on this host (`agent zone away`): their members are drained,
    /// not removed, until `agent zone back`. Absent from tables written before zones.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub away_zones: BTreeSet<Zone>,
}

/// One pool's members, departed members and evictions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSlots {
    /// Members holding a slot.
    pub members: BTreeMap<MemberId, Entry>,
    /// Members that left, with the generation that removed them.
    #[serde(default)]
    pub retired: BTreeMap<MemberId, u64>,
    /// Slots HAProxy served without an owner, being drained (by slot number).
    #[serde(default)]
    pub evicting: BTreeMap<u32, Eviction>,
}

/// Where a member is in its life on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Given its slot; waiting to pass health checks.
    Joining,
    /// Passed its checks; serving.
    Up,
    /// Taking no new requests; finishing the ones it has.
    Draining,
}

impl std::fmt::Display for EntryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Joining => "joining",
            Self::Up => "up",
            Self::Draining => "draining",
        })
    }
}

/// A join or drain in flight. Persisted, so a restarted service resumes it with what is
/// left of its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The generation of the change that started it: its outcome is that change's.
    pub change: u64,
    /// When it started (unix ms).
    pub started_ms: u64,
    /// When it gives up (join: failed) or forces (drain: sessions closed), unix ms.
    pub deadline_ms: u64,
    /// A first join on this host: if it fails, the slot is released.
    #[serde(default)]
    pub fresh: bool,
}

/// A member in its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The slot number (server `slot<N>`).
    pub slot: u32,
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: Port,
    /// The generation of the last message that touched it.
    pub generation: u64,
    /// Where it is in its life.
    pub state: EntryState,
    /// The join or drain in flight (`Joining`, `Draining`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Its Availability Zone, as the last message naming it said (kept when a later
    /// message does not say: an instance never changes zone). Absent from older tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<Zone>,
    /// Its configured weight, as the last message naming it said (`None`: HAProxy's).
    /// Absent from older tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
    /// The service's change counter when this entry last changed; a stats reading
    /// taken before that is not applied to it. Not persisted.
    #[serde(skip)]
    pub touched: u64,
}

/// A slot served without an owner, being drained before it is put in maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    /// What HAProxy had there (`addr:port`).
    pub addr: String,
    /// When the drain started (unix ms).
    pub started_ms: u64,
    /// When remaining sessions are closed (unix ms).
    pub deadline_ms: u64,
    /// See [`Entry::touched`].
    #[serde(skip)]
    pub touched: u64,
}

/// How long operations may take, per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A join's time to pass its checks, ms.
    pub health_ms: u64,
    /// A drain's time for its sessions to end, ms.
    pub drain_ms: u64,
}

impl SlotTable {
    /// The slots `pool` uses (by members or evictions; none for a pool it does not hold).
    pub fn used(&self, pool: &str) -> BTreeSet<u32> {
        self.pools
            .get(pool)
            .map(PoolSlots::used)
            .unwrap_or_default()
    }

    /// The highest slot `pool` uses (a member or an eviction; 0 for none): the slot
    /// block must declare at least this many.
    pub fn highest_used(&self, pool: &str) -> u32 {
        self.used(pool).into_iter().next_back().unwrap_or(0)
    }
}

impl PoolSlots {
    /// Slot numbers taken (by members or evictions).
    pub fn used(&self) -> BTreeSet<u32> {
        self.members
            .values()
            .map(|e| e.slot)
            .chain(self.evicting.keys().copied())
            .collect()
    }

    /// The member in `slot`, if any.
    pub fn member_in(&self, slot: u32) -> Option<(&MemberId, &Entry)> {
        self.members.iter().find(|(_, e)| e.slot == slot)
    }

    /// Remembers that `id` left at `generation`, forgetting the oldest beyond the bound.
    pub fn retire(&mut self, id: &MemberId, generation: u64) {
        self.members.remove(id);
        let g = self.retired.entry(id.clone()).or_insert(0);
        *g = (*g).max(generation);
        while self.retired.len() > RETIRED_KEEP {
            let oldest = self
                .retired
                .iter()
                .min_by_key(|(_, g)| **g)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.retired.remove(&k),
                None => break,
            };
        }
    }

    /// Gives operations a table written before they were persisted (format 1) their
    /// deadlines, counted from `now_ms`.
    pub fn upgrade(&mut self, now_ms: u64, t: Timeouts) {
        for e in self.members.values_mut() {
            if e.op.is_none() && e.state != EntryState::Up {
                let ms = match e.state {
                    EntryState::Draining => t.drain_ms,
                    _ => t.health_ms,
                };
                e.op = Some(Op {
                    change: e.generation,
                    started_ms: now_ms,
                    deadline_ms: now_ms + ms,
                    fresh: e.state == EntryState::Joining,
                });
            }
        }
    }
}

/// What the live HAProxy says about one pool's slots, by slot number.
#[derive(Debug, Clone, Default)]
pub struct LiveSlots {
    /// Slots declared in HAProxy, by number.
    pub slots: BTreeMap<u32, ServerState>,
}

impl LiveSlots {
    /// The slots of `backend` among `states`.
    pub fn of(backend: &str, states: &[ServerState]) -> Self {
        let slots = states
            .iter()
            .filter(|s| s.backend == backend)
            .filter_map(|s| crate::haproxy_cfg::slot_number(&s.server).map(|n| (n, s.clone())))
            .collect();
        Self { slots }
    }

    /// The number of slots HAProxy has (the highest slot number).
    pub fn size(&self) -> u32 {
        self.slots.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether `slot` is at `addr:port`, ready (not maint, not drain).
    pub fn serves(&self, slot: u32, addr: IpAddr, port: Port) -> bool {
        self.slots.get(&slot).is_some_and(|s| {
            !s.in_maint()
                && !s.draining()
                && s.port == port.get()
                && s.addr.parse::<IpAddr>().ok() == Some(addr)
        })
    }

    /// Whether `slot` is at `addr:port` and not in maintenance (ready or drained).
    pub fn holds(&self, slot: u32, addr: IpAddr, port: Port) -> bool {
        self.slots.get(&slot).is_some_and(|s| {
            !s.in_maint() && s.port == port.get() && s.addr.parse::<IpAddr>().ok() == Some(addr)
        })
    }

    /// Whether `slot` is running (UP or going down, so it may hold sessions).
    pub fn running(&self, slot: u32) -> bool {
        self.slots.get(&slot).is_some_and(ServerState::running)
    }
}

/// One thing to do, or to report, for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bring `member` up in `slot` and wait for UP (the table holds its operation).
    Join {
        /// The member.
        member: MemberId,
        /// Its slot.
        slot: u32,
        /// What to send first.
        send: JoinSend,
    },
    /// Drain `member` and wait for its sessions to end (the table holds its operation).
    Drain {
        /// The member.
        member: MemberId,
        /// Its slot.
        slot: u32,
    },
    /// Removed while joining, before it took traffic: its slot goes back to maintenance
    /// now, and it is drained.
    Release {
        /// The member.
        member: MemberId,
        /// Its slot.
        slot: u32,
    },
    /// A slot HAProxy serves that no member owns (drift): drain it, then maintenance.
    Evict {
        /// The slot.
        slot: u32,
        /// What HAProxy has there.
        addr: String,
    },
    /// Nothing to do; the outcome is known now.
    Done {
        /// The member.
        member: MemberId,
        /// Its slot, if it has one.
        slot: Option<u32>,
        /// The outcome.
        status: OutcomeStatus,
        /// Why, when not obvious.
        reason: Option<String>,
    },
    /// Already converging to the same target under an earlier change: reported
    /// `pending` at once, naming that change (its outcome is that change's).
    Pending {
        /// The member.
        member: MemberId,
        /// Its slot.
        slot: u32,
        /// The change converging it.
        change: u64,
    },
    /// This very change already started the operation (the message was sent again):
    /// wait for it.
    Await {
        /// The member.
        member: MemberId,
        /// Its slot.
        slot: u32,
    },
}

impl Action {
    /// Whether it brings a member into service (a join): everything else takes traffic
    /// away or changes nothing, which is safe to do even when the intent cannot be
    /// written first.
    pub fn is_join(&self) -> bool {
        matches!(self, Self::Join { .. })
    }
}

/// What a join sends before waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSend {
    /// Address, ready, health down (one line: never UP before its checks pass).
    Join {
        /// The member's address.
        addr: IpAddr,
        /// The member's port.
        port: Port,
    },
    /// Back to ready from a drain: it was serving and healthy a moment ago.
    Ready,
}

/// An operation a newer change took over: the older change's outcome for the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    /// The member.
    pub member: MemberId,
    /// The change whose operation stopped.
    pub change: u64,
    /// Why (names the newer change).
    pub reason: String,
}

/// The actions for one pool and the slot count they need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolPlan {
    /// One per member named, in message order (adds, then removes), then evictions.
    pub actions: Vec<Action>,
    /// Operations of earlier changes that this one took over.
    pub superseded: Vec<Superseded>,
    /// Slots HAProxy must have for these actions (more than it has: grow first).
    pub size_needed: u32,
}

/// When a plan is made and what it may take.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Now, unix ms.
    pub now_ms: u64,
    /// The pool's timeouts.
    pub timeouts: Timeouts,
    /// The service's change counter, stamped on every entry the plan touches.
    pub epoch: u64,
}

impl Clock {
    fn op(&self, change: u64, ms: u64, fresh: bool) -> Op {
        Op {
            change,
            started_ms: self.now_ms,
            deadline_ms: self.now_ms.saturating_add(ms),
            fresh,
        }
    }
}

fn stale(id: &MemberId, slot: Option<u32>, reason: String) -> Action {
    Action::Done {
        member: id.clone(),
        slot,
        status: OutcomeStatus::Stale,
        reason: Some(reason),
    }
}

fn newer(id: &MemberId, e: &Entry, generation: u64) -> Action {
    stale(
        id,
        Some(e.slot),
        format!(
            "generation {} already applied is newer than this message's {generation}",
            e.generation
        ),
    )
}

/// What one change asks of a pool: the inputs of [`plan_change_by`].
#[derive(Debug, Clone, Copy)]
pub struct ChangeInput<'a> {
    /// Members to add (message order).
    pub add: &'a [Member],
    /// Members to remove (message order).
    pub remove: &'a [MemberId],
    /// Removals that must end their drain by a time of their own (ms since the epoch).
    pub drain_by_ms: &'a BTreeMap<MemberId, u64>,
    /// The change's generation.
    pub generation: u64,
}

impl<'a> ChangeInput<'a> {
    /// The part of a change message for one pool.
    pub fn of(change: &'a infra::PoolChange, generation: u64) -> Self {
        Self {
            add: &change.add,
            remove: &change.remove,
            drain_by_ms: &change.drain_by_ms,
            generation,
        }
    }
}

/// Plans adding `add` and removing `remove` at `generation`, updating `table` as if the
/// actions succeed (the caller persists it before touching HAProxy, so a killed service
/// leaves an accurate record of its intent).
pub fn plan_change(
    table: &mut PoolSlots,
    live: &LiveSlots,
    add: &[Member],
    remove: &[MemberId],
    generation: u64,
    clock: Clock,
) -> PoolPlan {
    let input = ChangeInput {
        add,
        remove,
        drain_by_ms: &BTreeMap::new(),
        generation,
    };
    plan_change_by(table, live, input, clock)
}

/// [`plan_change`] where some removals must end their drain by a time of their own
/// (`drain_by_ms`, ms since the epoch: a Spot instance reclaimed two minutes after its
/// warning): the drain's deadline is the sooner of that and the pool's drain timeout,
/// and a drain already running is held to it too. Sessions still open at the deadline
/// are shut.
pub fn plan_change_by(
    table: &mut PoolSlots,
    live: &LiveSlots,
    input: ChangeInput<'_>,
    clock: Clock,
) -> PoolPlan {
    let ChangeInput {
        add,
        remove,
        drain_by_ms,
        generation,
    } = input;
    let mut plan = PoolPlan {
        size_needed: live.size(),
        ..PoolPlan::default()
    };
    let mut taken = table.used();
    // Slots are only taken within one plan, so the search resumes where it stopped.
    let mut cursor = 1;
    let is_free = |n: u32, taken: &BTreeSet<u32>| {
        !taken.contains(&n) && live.slots.get(&n).is_none_or(ServerState::in_maint)
    };
    for m in add {
        if let Some(&r) = table.retired.get(&m.id) {
            if r >= generation {
                plan.actions.push(stale(&m.id, None, format!("it left this host (removed, or its first join failed) at generation {r}, newer than or equal to this message's {generation}")));
                continue;
            }
        }
        if let Some(e) = table.members.get_mut(&m.id) {
            plan.actions.push(join_existing(
                e,
                m,
                live,
                generation,
                clock,
                &mut plan.superseded,
            ));
            continue;
        }
        while !is_free(cursor, &taken) {
            cursor += 1;
        }
        let slot = cursor;
        taken.insert(slot);
        plan.size_needed = plan.size_needed.max(slot);
        plan.actions
            .push(join_new(table, m, slot, generation, clock));
    }
    for id in remove {
        let drain_by = drain_by_ms.get(id).copied();
        let action = leave(
            table,
            id,
            live,
            (generation, drain_by),
            clock,
            &mut plan.superseded,
        );
        plan.actions.push(action);
    }
    plan
}

/// An add for a member the table does not hold: it joins in the free `slot`.
fn join_new(table: &mut PoolSlots, m: &Member, slot: u32, generation: u64, clock: Clock) -> Action {
    table.members.insert(
        m.id.clone(),
        Entry {
            slot,
            address: m.address,
            port: m.port,
            generation,
            state: EntryState::Joining,
            op: Some(clock.op(generation, clock.timeouts.health_ms, true)),
            zone: m.zone.clone(),
            weight: m.weight,
            touched: clock.epoch,
        },
    );
    Action::Join {
        member: m.id.clone(),
        slot,
        send: JoinSend::Join {
            addr: m.address,
            port: m.port,
        },
    }
}

/// A remove of `id` at `generation` (its drain to end by `drain_by`, ms since the epoch,
/// when the change says so); a member released leaves the table for good.
fn leave(
    table: &mut PoolSlots,
    id: &MemberId,
    live: &LiveSlots,
    (generation, drain_by): (u64, Option<u64>),
    clock: Clock,
    superseded: &mut Vec<Superseded>,
) -> Action {
    let action = match table.members.get_mut(id) {
        Some(e) if e.generation > generation => newer(id, e, generation),
        Some(e) => {
            let action = leave_existing(id, e, live, generation, clock, superseded);
            if let (Some(by), Some(op)) = (drain_by, e.op.as_mut()) {
                if e.state == EntryState::Draining && by < op.deadline_ms {
                    op.deadline_ms = by;
                }
            }
            action
        }
        None => {
            table.retire(id, generation);
            Action::Done {
                member: id.clone(),
                slot: None,
                status: OutcomeStatus::Drained,
                reason: Some("not in the pool on this host".into()),
            }
        }
    };
    if let Action::Release { member, .. } = &action {
        table.retire(member, generation);
    }
    action
}

/// An add for a member the table already holds.
fn join_existing(
    e: &mut Entry,
    m: &Member,
    live: &LiveSlots,
    generation: u64,
    clock: Clock,
    superseded: &mut Vec<Superseded>,
) -> Action {
    if e.generation > generation {
        return newer(&m.id, e, generation);
    }
    // The message says its weight (none: HAProxy's); a zone it does not say is kept.
    e.weight = m.weight;
    if m.zone.is_some() {
        e.zone.clone_from(&m.zone);
    }
    let moved = e.address != m.address || e.port != m.port;
    let join = |e: &mut Entry, send: JoinSend, fresh: bool| {
        e.generation = generation;
        e.address = m.address;
        e.port = m.port;
        e.state = EntryState::Joining;
        e.op = Some(clock.op(generation, clock.timeouts.health_ms, fresh));
        e.touched = clock.epoch;
        Action::Join {
            member: m.id.clone(),
            slot: e.slot,
            send,
        }
    };
    let full = JoinSend::Join {
        addr: m.address,
        port: m.port,
    };
    match (e.state, e.op) {
        _ if moved => {
            if let Some(op) = e.op.filter(|op| op.change != generation) {
                superseded.push(Superseded {
                    member: m.id.clone(),
                    change: op.change,
                    reason: format!(
                        "its address changed to {}:{} at generation {generation}",
                        m.address, m.port
                    ),
                });
            }
            join(e, full, true)
        }
        (EntryState::Up, _) if live.serves(e.slot, m.address, m.port) => {
            e.generation = generation;
            e.touched = clock.epoch;
            Action::Done {
                member: m.id.clone(),
                slot: Some(e.slot),
                status: OutcomeStatus::Up,
                reason: None,
            }
        }
        // HAProxy lost it (restarted without its state, put in maint by hand).
        (EntryState::Up, _) => join(e, full, false),
        (EntryState::Joining, Some(op)) if op.change == generation => Action::Await {
            member: m.id.clone(),
            slot: e.slot,
        },
        (EntryState::Joining, Some(op)) => {
            e.generation = generation;
            Action::Pending {
                member: m.id.clone(),
                slot: e.slot,
                change: op.change,
            }
        }
        (EntryState::Joining, None) => join(e, full, false),
        (EntryState::Draining, op) => {
            if let Some(op) = op {
                superseded.push(Superseded {
                    member: m.id.clone(),
                    change: op.change,
                    reason: format!("added again at generation {generation} while draining"),
                });
            }
            join(e, JoinSend::Ready, false)
        }
    }
}

/// A removal of a member the table holds (not newer than the message).
fn leave_existing(
    id: &MemberId,
    e: &mut Entry,
    live: &LiveSlots,
    generation: u64,
    clock: Clock,
    superseded: &mut Vec<Superseded>,
) -> Action {
    match (e.state, e.op) {
        (EntryState::Draining, Some(op)) if op.change == generation => Action::Await {
            member: id.clone(),
            slot: e.slot,
        },
        (EntryState::Draining, Some(op)) => {
            e.generation = generation;
            Action::Pending {
                member: id.clone(),
                slot: e.slot,
                change: op.change,
            }
        }
        (state, op) => {
            if let Some(op) = op.filter(|op| op.change != generation) {
                superseded.push(Superseded {
                    member: id.clone(),
                    change: op.change,
                    reason: format!("removed at generation {generation} while joining"),
                });
            }
            e.generation = generation;
            e.touched = clock.epoch;
            if state == EntryState::Joining && !live.running(e.slot) {
                // Never UP: it took no traffic, nothing to wait for.
                return Action::Release {
                    member: id.clone(),
                    slot: e.slot,
                };
            }
            e.state = EntryState::Draining;
            e.op = Some(clock.op(generation, clock.timeouts.drain_ms, false));
            Action::Drain {
                member: id.clone(),
                slot: e.slot,
            }
        }
    }
}

/// Plans converging a pool to exactly `members` at `generation`: joins for every
/// member, leaves for table members not listed (unless a newer message added them), and
/// evictions for slots HAProxy serves that no member owns.
pub fn plan_sync(
    table: &mut PoolSlots,
    live: &LiveSlots,
    members: &[Member],
    generation: u64,
    clock: Clock,
) -> PoolPlan {
    let wanted: BTreeSet<&MemberId> = members.iter().map(|m| &m.id).collect();
    let remove: Vec<MemberId> = table
        .members
        .iter()
        .filter(|(id, e)| !wanted.contains(id) && e.generation <= generation)
        .map(|(id, _)| id.clone())
        .collect();
    let mut plan = plan_change(table, live, members, &remove, generation, clock);
    let used = table.used();
    for (n, s) in &live.slots {
        if !used.contains(n) && !s.in_maint() {
            let addr = format!("{}:{}", s.addr, s.port);
            table.evicting.insert(
                *n,
                Eviction {
                    addr: addr.clone(),
                    started_ms: clock.now_ms,
                    deadline_ms: clock.now_ms.saturating_add(clock.timeouts.drain_ms),
                    touched: clock.epoch,
                },
            );
            plan.actions.push(Action::Evict { slot: *n, addr });
        }
    }
    plan
}

/// The commands an action sends (as groups: each stays on one line).
pub fn commands(pool: &PoolName, action: &Action, check: bool) -> Vec<Vec<Command>> {
    match action {
        Action::Join {
            slot,
            send: JoinSend::Join { addr, port },
            ..
        } => vec![Command::join(pool, *slot, *addr, *port, check)],
        Action::Join {
            slot,
            send: JoinSend::Ready,
            ..
        } => vec![vec![Command::new(pool, *slot, haproxy::Op::Ready)]],
        Action::Drain { slot, .. } | Action::Evict { slot, .. } => {
            vec![vec![Command::new(pool, *slot, haproxy::Op::Drain)]]
        }
        Action::Release { slot, .. } => vec![vec![Command::new(pool, *slot, haproxy::Op::Maint)]],
        Action::Done { .. } | Action::Pending { .. } | Action::Await { .. } => Vec::new(),
    }
}

/// An operation that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The member (`None` for an eviction).
    pub member: Option<MemberId>,
    /// Its slot.
    pub slot: u32,
    /// The change it belonged to.
    pub change: u64,
    /// Where it ended.
    pub status: OutcomeStatus,
    /// Why, when it failed or was forced.
    pub reason: Option<String>,
    /// How long it took, ms.
    pub ms: u64,
}

/// What a look at HAProxy's stats moved on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    /// Operations that ended.
    pub finished: Vec<Finished>,
    /// Commands to send for them (maintenance, closing what a drain left open).
    pub commands: Vec<Command>,
}

/// Moves every operation of a pool on from HAProxy's `rows` (by slot) taken at
/// `now_ms`, when the service's change counter was `seen`: entries changed after that
/// are left for the next look. Joins end UP (or failed at their deadline: a first join
/// gives its slot back); drains end when their sessions and queue are empty (or at their
/// deadline, closing what is left); evictions likewise.
pub fn advance(
    pool: &PoolName,
    table: &mut PoolSlots,
    rows: &BTreeMap<u32, &StatRow>,
    now_ms: u64,
    seen: u64,
) -> Advanced {
    let mut out = Advanced::default();
    let ids: Vec<MemberId> = table
        .members
        .iter()
        .filter(|(_, e)| e.op.is_some() && e.touched <= seen)
        .map(|(id, _)| id.clone())
        .collect();
    for id in ids {
        let Some(e) = table.members.get_mut(&id) else {
            continue;
        };
        let Some(op) = e.op else { continue };
        let row = rows.get(&e.slot).copied();
        let step = Step {
            pool,
            id: &id,
            op,
            row,
            now_ms,
        };
        let retired = match e.state {
            EntryState::Joining | EntryState::Up => step.join(e, &mut out),
            EntryState::Draining => step.drain(e, &mut out),
        };
        if let Some(generation) = retired {
            table.retire(&id, generation);
        }
    }
    advance_evictions(pool, table, rows, now_ms, seen, &mut out);
    out
}

/// One member's operation in flight, looked at against HAProxy's row for its slot.
struct Step<'a> {
    pool: &'a PoolName,
    id: &'a MemberId,
    op: Op,
    row: Option<&'a StatRow>,
    now_ms: u64,
}

impl Step<'_> {
    fn finished(&self, slot: u32, status: OutcomeStatus, reason: Option<String>) -> Finished {
        Finished {
            member: Some(self.id.clone()),
            slot,
            change: self.op.change,
            status,
            reason,
            ms: self.now_ms.saturating_sub(self.op.started_ms),
        }
    }

    fn allowed(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.op.deadline_ms.saturating_sub(self.op.started_ms))
    }

    /// A join: UP once it passes its checks (or drained because its zone is away);
    /// FAILED at its deadline. Returns the generation to retire it at, when it leaves.
    fn join(&self, e: &mut Entry, out: &mut Advanced) -> Option<u64> {
        if self.row.is_some_and(StatRow::passes_checks) {
            e.state = EntryState::Up;
            e.op = None;
            out.finished
                .push(self.finished(e.slot, OutcomeStatus::Up, None));
            return None;
        }
        if self.now_ms < self.op.deadline_ms {
            return None;
        }
        let last = self.row.map(StatRow::check_summary).unwrap_or_default();
        let released = if self.op.fresh {
            "; it took no traffic and its slot was released"
        } else {
            ""
        };
        let allowed = self.allowed();
        out.finished.push(self.finished(
            e.slot,
            OutcomeStatus::Failed,
            Some(format!(
                "did not pass health checks within {allowed:?} (last check: {last}){released}"
            )),
        ));
        if self.op.fresh {
            out.commands
                .push(Command::new(self.pool, e.slot, haproxy::Op::Maint));
            // Its generation stays known: a message no newer than the one that failed
            // is stale, a newer one tries again.
            return Some(e.generation);
        }
        // It stays the slot's owner; HAProxy's checks decide its traffic.
        e.state = EntryState::Up;
        e.op = None;
        None
    }

    /// A drain: DRAINED once its sessions ended, or at its deadline with the sessions
    /// left closed. Returns the generation to retire it at, when it leaves.
    fn drain(&self, e: &Entry, out: &mut Advanced) -> Option<u64> {
        let (scur, qcur) = self.row.map_or((0, 0), |r| (r.scur, r.qcur));
        let reason = if scur == 0 && qcur == 0 {
            None
        } else if self.now_ms >= self.op.deadline_ms {
            out.commands.push(Command::new(
                self.pool,
                e.slot,
                haproxy::Op::ShutdownSessions,
            ));
            let allowed = self.allowed();
            Some(format!(
                "drain timeout ({allowed:?}): {scur} sessions were still open and were closed, {qcur} queued"
            ))
        } else {
            return None;
        };
        out.commands
            .push(Command::new(self.pool, e.slot, haproxy::Op::Maint));
        out.finished
            .push(self.finished(e.slot, OutcomeStatus::Drained, reason));
        Some(self.op.change)
    }
}

/// Evictions (servers no member owns, being drained) that ended: put in maintenance,
/// what a deadline left open closed.
fn advance_evictions(
    pool: &PoolName,
    table: &mut PoolSlots,
    rows: &BTreeMap<u32, &StatRow>,
    now_ms: u64,
    seen: u64,
    out: &mut Advanced,
) {
    let done: Vec<u32> = table
        .evicting
        .iter()
        .filter(|(_, ev)| ev.touched <= seen)
        .filter_map(|(slot, ev)| {
            let (scur, qcur) = rows.get(slot).map_or((0, 0), |r| (r.scur, r.qcur));
            if scur == 0 && qcur == 0 {
                Some(*slot)
            } else if now_ms >= ev.deadline_ms {
                out.commands
                    .push(Command::new(pool, *slot, haproxy::Op::ShutdownSessions));
                Some(*slot)
            } else {
                None
            }
        })
        .collect();
    for slot in done {
        out.commands
            .push(Command::new(pool, slot, haproxy::Op::Maint));
        table.evicting.remove(&slot);
    }
}

/// The slot count a pool should have: at least `needed` (the highest slot in use or
/// about to be), doubling when it must grow; shrinking towards `floor` only when at
/// most a quarter is used, never below the highest slot in use.
pub fn target_size(current: u32, floor: u32, needed: u32, used_count: u32) -> u32 {
    if needed > current {
        let mut n = current.max(floor).max(1);
        while n < needed {
            n = n.saturating_mul(2);
        }
        return n;
    }
    if current > floor && used_count.saturating_mul(4) <= current {
        let want = used_count.saturating_mul(2).max(floor).max(needed);
        return want.min(current);
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, last: u8) -> Member {
        Member::new(
            MemberId::new(id).unwrap(),
            IpAddr::from([10, 0, 0, last]),
            Port::new(80).unwrap(),
        )
        .unwrap()
    }
    fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }
    fn web() -> PoolName {
        PoolName::new("web").unwrap()
    }
    const T: Timeouts = Timeouts {
        health_ms: 5_000,
        drain_ms: 10_000,
    };
    fn at(now_ms: u64) -> Clock {
        Clock {
            now_ms,
            timeouts: T,
            epoch: 1,
        }
    }
    fn live(n: u32) -> LiveSlots {
        LiveSlots {
            slots: (1..=n)
                .map(|i| {
                    (
                        i,
                        ServerState {
                            backend: "web".into(),
                            server: format!("slot{i}"),
                            addr: "0.0.0.0".into(),
                            port: 80,
                            op_state: 0,
                            admin_state: 5,
                            uweight: 1,
                            iweight: 1,
                        },
                    )
                })
                .collect(),
        }
    }
    fn serving(l: &mut LiveSlots, slot: u32, last: u8) {
        let s = l.slots.get_mut(&slot).unwrap();
        s.addr = format!("10.0.0.{last}");
        s.admin_state = 0;
        s.op_state = 2;
    }
    fn joins(p: &PoolPlan) -> Vec<(String, u32)> {
        p.actions
            .iter()
            .filter_map(|s| match s {
                Action::Join { member, slot, .. } => Some((member.to_string(), *slot)),
                _ => None,
            })
            .collect()
    }
    fn row(slot: u32, status: &str, scur: u64) -> StatRow {
        StatRow {
            backend: "web".into(),
            server: format!("slot{slot}"),
            scur,
            status: status.into(),
            ..StatRow::default()
        }
    }
    fn advance_with(t: &mut PoolSlots, rows: &[StatRow], now: u64) -> Advanced {
        let by_slot: BTreeMap<u32, &StatRow> = rows
            .iter()
            .filter_map(|r| Some((crate::haproxy_cfg::slot_number(&r.server)?, r)))
            .collect();
        advance(&web(), t, &by_slot, now, 1)
    }

    #[test]
    fn members_take_the_lowest_free_slots_and_freed_slots_are_reused() {
        let mut t = PoolSlots::default();
        let p = plan_change(
            &mut t,
            &live(4),
            &[m("a", 1), m("b", 2), m("c", 3)],
            &[],
            1,
            at(0),
        );
        assert_eq!(
            joins(&p),
            vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]
        );
        t.retire(&id("b"), 2);
        let p = plan_change(&mut t, &live(4), &[m("d", 4)], &[], 3, at(0));
        assert_eq!(joins(&p), vec![("d".into(), 2)]);
        assert_eq!(p.size_needed, 4);
    }

    #[test]
    fn applying_the_same_state_twice_sends_nothing() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1, at(0));
        advance_with(&mut t, &[row(1, "UP", 0)], 10);
        serving(&mut l, 1, 1);
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 1, at(20));
        assert!(matches!(
            p.actions[..],
            [Action::Done {
                status: OutcomeStatus::Up,
                ..
            }]
        ));
        assert!(commands(&web(), &p.actions[0], true).is_empty());
    }

    #[test]
    fn older_messages_are_stale() {
        let mut t = PoolSlots::default();
        let l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 5, at(0));
        let p = plan_change(&mut t, &l, &[], &[id("a")], 4, at(0));
        assert!(matches!(
            &p.actions[0],
            Action::Done {
                status: OutcomeStatus::Stale,
                ..
            }
        ));
        assert_eq!(t.members[&id("a")].state, EntryState::Joining);
        // A removal at 6, then a late add from generation 5: the member stays out.
        t.retire(&id("a"), 6);
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 5, at(0));
        assert!(matches!(
            &p.actions[0],
            Action::Done {
                status: OutcomeStatus::Stale,
                ..
            }
        ));
        assert!(t.members.is_empty());
        // A newer add brings it back.
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 7, at(0));
        assert_eq!(joins(&p), vec![("a".into(), 1)]);
    }

    #[test]
    fn a_drain_deadline_of_its_own_shortens_the_drain_and_shuts_what_is_left() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        plan_change(&mut t, &l, &[m("a", 1), m("b", 2)], &[], 1, at(0));
        advance_with(&mut t, &[row(1, "UP", 0), row(2, "UP", 0)], 10);
        serving(&mut l, 1, 1);
        serving(&mut l, 2, 2);
        // a must be drained by 5 s from now; b drains on the pool's timeout.
        let by = BTreeMap::from([(id("a"), 5_000)]);
        let removal = ChangeInput {
            add: &[],
            remove: &[id("a"), id("b")],
            drain_by_ms: &by,
            generation: 2,
        };
        plan_change_by(&mut t, &l, removal, at(0));
        let deadline = |t: &PoolSlots, who: &str| t.members[&id(who)].op.unwrap().deadline_ms;
        assert_eq!(deadline(&t, "a"), 5_000);
        assert!(deadline(&t, "b") > 5_000);
        // Sessions still open at the deadline are shut, and the drain ends.
        let adv = advance_with(&mut t, &[row(1, "DRAIN", 3), row(2, "DRAIN", 3)], 5_000);
        assert_eq!(adv.finished.len(), 1, "{:?}", adv.finished);
        assert!(adv
            .commands
            .iter()
            .any(|c| c.to_string().contains("shutdown sessions server web/slot1")));
        // A later message with a sooner deadline holds a running drain to it.
        let by = BTreeMap::from([(id("b"), 7_000)]);
        let removal = ChangeInput {
            add: &[],
            remove: &[id("b")],
            drain_by_ms: &by,
            generation: 3,
        };
        plan_change_by(&mut t, &l, removal, at(6_000));
        assert_eq!(deadline(&t, "b"), 7_000);
    }

    #[test]
    fn a_removal_of_an_unknown_member_is_already_drained() {
        let mut t = PoolSlots::default();
        let p = plan_change(&mut t, &live(2), &[], &[id("x")], 3, at(0));
        assert!(matches!(
            &p.actions[0],
            Action::Done {
                status: OutcomeStatus::Drained,
                ..
            }
        ));
        assert_eq!(t.retired[&id("x")], 3);
    }

    #[test]
    fn slots_beyond_the_block_mean_growth() {
        let mut t = PoolSlots::default();
        let p = plan_change(
            &mut t,
            &live(2),
            &[m("a", 1), m("b", 2), m("c", 3)],
            &[],
            1,
            at(0),
        );
        assert_eq!(p.size_needed, 3);
        assert_eq!(target_size(2, 2, 3, 3), 4);
        assert_eq!(target_size(16, 16, 17, 17), 32);
        assert_eq!(target_size(8, 8, 8, 8), 8);
    }

    #[test]
    fn slots_shrink_only_when_mostly_free_and_never_below_a_used_slot() {
        assert_eq!(target_size(64, 16, 3, 3), 16);
        assert_eq!(target_size(64, 16, 40, 10), 40);
        assert_eq!(target_size(64, 16, 20, 17), 64);
        assert_eq!(target_size(16, 16, 1, 1), 16);
    }

    #[test]
    fn a_slot_haproxy_serves_without_an_owner_is_not_free_and_sync_evicts_it() {
        let mut t = PoolSlots::default();
        let mut l = live(3);
        serving(&mut l, 1, 9);
        let p = plan_sync(&mut t, &l, &[m("a", 1)], 1, at(0));
        assert_eq!(joins(&p), vec![("a".into(), 2)]);
        assert!(p.actions.contains(&Action::Evict {
            slot: 1,
            addr: "10.0.0.9:80".into()
        }));
        assert!(t.used().contains(&1), "an eviction holds its slot");
        // Once its sessions are gone it goes to maintenance and the slot is free.
        let a = advance_with(&mut t, &[row(1, "DRAIN", 0)], 10);
        assert_eq!(
            a.commands,
            vec![Command::new(&web(), 1, haproxy::Op::Maint)]
        );
        assert!(!t.used().contains(&1));
    }

    #[test]
    fn sync_removes_members_not_listed_unless_newer() {
        let mut t = PoolSlots::default();
        let l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1, at(0));
        plan_change(&mut t, &l, &[m("b", 2)], &[], 9, at(0));
        advance_with(&mut t, &[row(1, "UP", 0), row(2, "UP", 0)], 10);
        let p = plan_sync(&mut t, &l, &[], 5, at(20));
        assert_eq!(
            p.actions,
            vec![Action::Drain {
                member: id("a"),
                slot: 1
            }]
        );
    }

    #[test]
    fn a_member_whose_slot_lost_its_address_is_set_again() {
        let mut t = PoolSlots::default();
        let l = live(4);
        plan_change(&mut t, &l, &[m("a", 1)], &[], 1, at(0));
        advance_with(&mut t, &[row(1, "UP", 0)], 10);
        // HAProxy shows slot 1 in maint at 0.0.0.0 (e.g. restarted without state).
        let p = plan_change(&mut t, &l, &[m("a", 1)], &[], 2, at(20));
        assert_eq!(joins(&p), vec![("a".into(), 1)]);
        assert!(!t.members[&id("a")].op.unwrap().fresh, "not a first join");
    }

    #[test]
    fn a_join_ends_up_or_fails_at_its_deadline_releasing_a_fresh_slot() {
        let mut t = PoolSlots::default();
        plan_change(&mut t, &live(4), &[m("a", 1), m("b", 2)], &[], 1, at(0));
        let a = advance_with(&mut t, &[row(1, "UP", 0), row(2, "DOWN", 0)], 1_000);
        assert_eq!(a.finished.len(), 1);
        assert_eq!(a.finished[0].status, OutcomeStatus::Up);
        assert_eq!(a.finished[0].ms, 1_000);
        assert_eq!(t.members[&id("a")].state, EntryState::Up);
        let a = advance_with(&mut t, &[row(2, "DOWN", 0)], 5_000);
        assert_eq!(a.finished[0].status, OutcomeStatus::Failed);
        assert!(a.finished[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("slot was released"));
        assert_eq!(
            a.commands,
            vec![Command::new(&web(), 2, haproxy::Op::Maint)]
        );
        assert!(!t.members.contains_key(&id("b")));
        // The failed join's generation is honoured: the same or an older message is
        // stale (a duplicate must not start it again), a newer one tries again.
        for g in [1, 0] {
            let p = plan_change(&mut t, &live(4), &[m("b", 2)], &[], g, at(6_000));
            assert!(
                matches!(&p.actions[..], [Action::Done { status: OutcomeStatus::Stale, reason: Some(r), .. }] if r.contains("its first join failed) at generation 1")),
                "{:?}",
                p.actions
            );
        }
        let p = plan_change(&mut t, &live(4), &[m("b", 2)], &[], 2, at(7_000));
        assert_eq!(joins(&p), vec![("b".into(), 2)]);
    }

    #[test]
    fn a_drain_waits_for_its_sessions_and_forces_at_its_deadline() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        plan_change(&mut t, &l, &[m("a", 1), m("b", 2)], &[], 1, at(0));
        advance_with(&mut t, &[row(1, "UP", 0), row(2, "UP", 0)], 100);
        serving(&mut l, 1, 1);
        serving(&mut l, 2, 2);
        let p = plan_change(&mut t, &l, &[], &[id("a"), id("b")], 2, at(1_000));
        assert_eq!(p.actions.len(), 2);
        assert!(p.actions.iter().all(|a| matches!(a, Action::Drain { .. })));
        let a = advance_with(&mut t, &[row(1, "DRAIN", 3), row(2, "DRAIN", 0)], 2_000);
        assert_eq!(a.finished.len(), 1, "{a:?}");
        assert_eq!(a.finished[0].member, Some(id("b")));
        assert_eq!(a.finished[0].reason, None);
        let a = advance_with(&mut t, &[row(1, "DRAIN", 3)], 11_000);
        assert_eq!(
            a.commands,
            vec![
                Command::new(&web(), 1, haproxy::Op::ShutdownSessions),
                Command::new(&web(), 1, haproxy::Op::Maint)
            ]
        );
        assert!(a.finished[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("3 sessions"));
        assert!(t.members.is_empty());
        assert_eq!(t.retired[&id("a")], 2);
    }

    #[test]
    fn a_later_change_asking_the_same_is_pending_and_the_same_change_waits() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        plan_change(&mut t, &l, &[m("x", 1)], &[], 1, at(0));
        advance_with(&mut t, &[row(1, "UP", 0)], 10);
        serving(&mut l, 1, 1);
        plan_change(&mut t, &l, &[], &[id("x")], 5, at(100));
        // A launch's change carrying the same removal: pending, naming change 5.
        let p = plan_change(&mut t, &l, &[m("y", 2)], &[id("x")], 6, at(200));
        assert_eq!(
            p.actions[1],
            Action::Pending {
                member: id("x"),
                slot: 1,
                change: 5
            }
        );
        assert!(commands(&web(), &p.actions[1], true).is_empty());
        // Change 5 sent again: it waits for its own drain.
        let p = plan_change(&mut t, &l, &[], &[id("x")], 6, at(300));
        assert!(matches!(p.actions[0], Action::Pending { change: 5, .. }));
        let p = plan_change(&mut t, &l, &[m("y", 2)], &[], 6, at(300));
        assert!(matches!(p.actions[0], Action::Await { .. }), "{p:?}");
    }

    #[test]
    fn a_newer_change_takes_over_a_member_in_flight() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        // Removed while joining (no traffic yet): released at once.
        plan_change(&mut t, &l, &[m("j", 1)], &[], 1, at(0));
        let p = plan_change(&mut t, &l, &[], &[id("j")], 2, at(100));
        assert_eq!(
            p.actions,
            vec![Action::Release {
                member: id("j"),
                slot: 1
            }]
        );
        assert_eq!(p.superseded[0].change, 1);
        assert!(t.members.is_empty() && t.retired[&id("j")] == 2);
        // Re-added while draining: back to ready at once, the drain's change superseded.
        plan_change(&mut t, &l, &[m("d", 2)], &[], 3, at(0));
        advance_with(&mut t, &[row(1, "UP", 0)], 10);
        serving(&mut l, 1, 2);
        plan_change(&mut t, &l, &[], &[id("d")], 4, at(100));
        let p = plan_change(&mut t, &l, &[m("d", 2)], &[], 5, at(200));
        assert_eq!(
            p.actions,
            vec![Action::Join {
                member: id("d"),
                slot: 1,
                send: JoinSend::Ready
            }]
        );
        assert_eq!(p.superseded[0].change, 4);
        assert_eq!(
            commands(&web(), &p.actions[0], true),
            vec![vec![Command::new(&web(), 1, haproxy::Op::Ready)]]
        );
    }

    #[test]
    fn entries_changed_after_a_stats_reading_wait_for_the_next_one() {
        let mut t = PoolSlots::default();
        plan_change(
            &mut t,
            &live(4),
            &[m("a", 1)],
            &[],
            1,
            Clock { epoch: 7, ..at(0) },
        );
        let rows = [row(1, "UP", 0)];
        let by_slot: BTreeMap<u32, &StatRow> = rows.iter().map(|r| (1, r)).collect();
        assert!(advance(&web(), &mut t, &by_slot, 10, 6).finished.is_empty());
        assert_eq!(advance(&web(), &mut t, &by_slot, 10, 7).finished.len(), 1);
    }

    #[test]
    fn a_table_without_zones_or_weights_loads_and_one_with_them_round_trips() {
        let old = r#"{"version":2,"pools":{"web":{"members":{"i-1":{"slot":1,"address":"10.0.0.1","port":80,"generation":3,"state":"up"}},"retired":{}}}}"#;
        let table: SlotTable = serde_json::from_str(old).unwrap();
        let e = &table.pools["web"].members[&id("i-1")];
        assert_eq!((&e.zone, e.weight), (&None, None));
        assert!(table.away_zones.is_empty());
        let text = serde_json::to_string(&table).unwrap();
        assert!(!text.contains("zone") && !text.contains("weight"), "{text}");
        let mut zoned = table.clone();
        zoned.away_zones.insert(Zone::new("zone-a").unwrap());
        let e = zoned
            .pools
            .get_mut("web")
            .unwrap()
            .members
            .get_mut(&id("i-1"))
            .unwrap();
        e.zone = Some(Zone::new("zone-b").unwrap());
        e.weight = Some(Weight::new(90).unwrap());
        let back: SlotTable =
            serde_json::from_str(&serde_json::to_string(&zoned).unwrap()).unwrap();
        assert_eq!(back, zoned);
    }

    #[test]
    fn a_later_message_sets_the_weight_and_keeps_a_zone_it_does_not_say() {
        let mut t = PoolSlots::default();
        let mut l = live(4);
        let zone = Some(Zone::new("zone-a").unwrap());
        let w = |n| Some(Weight::new(n).unwrap());
        plan_change(
            &mut t,
            &l,
            &[m("a", 1).with_zone(zone.clone()).with_weight(w(90))],
            &[],
            1,
            at(0),
        );
        assert_eq!(t.members[&id("a")].weight, w(90));
        advance_with(&mut t, &[row(1, "UP", 0)], 10);
        serving(&mut l, 1, 1);
        plan_change(&mut t, &l, &[m("a", 1).with_weight(w(10))], &[], 2, at(20));
        let e = &t.members[&id("a")];
        assert_eq!((&e.zone, e.weight), (&zone, w(10)));
        // An older message changes nothing.
        plan_change(&mut t, &l, &[m("a", 1).with_weight(w(50))], &[], 1, at(30));
        assert_eq!(t.members[&id("a")].weight, w(10));
        // A drained member (its zone away) passing its checks ends its join UP.
        plan_change(&mut t, &l, &[m("d", 2).with_zone(zone)], &[], 3, at(40));
        let adv = advance_with(&mut t, &[row(2, "DRAIN", 0)], 50);
        assert_eq!(adv.finished[0].status, OutcomeStatus::Up);
    }

    #[test]
    fn a_format_1_table_gets_deadlines() {
        let text = r#"{"version":1,"pools":{"web":{"members":{"i-1":{"slot":1,"address":"10.0.0.1","port":80,"generation":3,"state":"draining"}},"retired":{}}}}"#;
        let mut table: SlotTable = serde_json::from_str(text).unwrap();
        let p = table.pools.get_mut("web").unwrap();
        p.upgrade(1_000, T);
        let op = p.members[&id("i-1")].op.unwrap();
        assert_eq!((op.change, op.deadline_ms), (3, 11_000));
    }
}
