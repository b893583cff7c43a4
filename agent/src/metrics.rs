//! The agent service's own metrics, in Prometheus' text format (version 0.0.4), served
//! on `[metrics] agent` (see [`crate::service`]). HAProxy's own figures (sessions, rates,
//! server states) come from its built-in exporter on `[metrics] haproxy`; these are what
//! only the agent knows: slots, members' life stages, operations and how long they took,
//! reloads, errors, and the last sync from AWS.
//!
//! Pure: a [`Registry`] holds the counters and the histogram, fed by the service where
//! things happen; the gauges that describe the slot table are taken from it at scrape
//! time ([`Snapshot::of`]), so they never drift from the table. [`Registry::render`]
//! writes both.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `haproxy_asg_agent_slots` | gauge | `pool` | slots HAProxy declares |
//! | `haproxy_asg_agent_slots_used` | gauge | `pool` | slots held by a member or an eviction |
//! | `haproxy_asg_agent_slots_free` | gauge | `pool` | declared minus used |
//! | `haproxy_asg_agent_members` | gauge | `pool`, `state` | members by life stage (`joining`, `up`, `draining`) |
//! | `haproxy_asg_agent_operations_in_flight` | gauge | `pool`, `kind` | joins, drains, evictions in flight |
//! | `haproxy_asg_agent_members_by_zone` | gauge | `pool`, `zone` | members joining or up, by Availability Zone (`zone=""`: no message said it) |
//! | `haproxy_asg_agent_pool_spilled` | gauge | `pool` | 1 while the pool prefers this host's zone but too few of its members are UP there, so every zone takes traffic |
//! | `haproxy_asg_agent_zones_away` | gauge | | zones taken away on this host (`agent zone away`) |
//! | `haproxy_asg_agent_operation_duration_seconds` | histogram | `pool`, `outcome` | a change reaching the service -> the member's outcome (`up`, `drained`, `failed`) |
//! | `haproxy_asg_agent_reloads_total` | counter | | hitless reloads (slot growth) |
//! | `haproxy_asg_agent_external_reloads_total` | counter | | HAProxy workers this service did not start (a reload or restart by someone else) |
//! | `haproxy_asg_agent_restored_total` | counter | | members and drains re-sent to HAProxy because it lacked them (after such a reload, or a restart of the service) |
//! | `haproxy_asg_agent_servers_added_total` | counter | | servers added at runtime past a pool's declared slots (HAProxy 3.0+, no reload) |
//! | `haproxy_asg_agent_servers_removed_total` | counter | | empty servers past a pool's `slots` given back with `del server` |
//! | `haproxy_asg_agent_haproxy_info` | gauge | `version` | 1, labelled with the version HAProxy reported (absent until the agent reached it) |
//! | `haproxy_asg_agent_errors_total` | counter | `kind` | see [`ErrorKind`] |
//! | `haproxy_asg_agent_aws_syncs_total` | counter | | successful syncs from AWS |
//! | `haproxy_asg_agent_aws_last_sync_timestamp_seconds` | gauge | | unix time of the last one (0: none yet) |
//! | `haproxy_asg_agent_start_time_seconds` | gauge | | unix time the service started |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use infra::OutcomeStatus;

use crate::slots::{EntryState, SlotTable};

/// Every metric's name starts with this.
pub const PREFIX: &str = "haproxy_asg_agent_";

/// The `Content-Type` of [`Registry::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The histogram's upper bounds, seconds: joins take a few health-check intervals
/// (tenths of a second to seconds), drains up to `drain_timeout_s` (a minute by
/// default), failed joins `health_timeout_s`.
pub const BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// What went wrong, for `haproxy_asg_agent_errors_total{kind}`. Every kind is rendered
/// from the start (at 0), so an alert on an increase works before the first error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// HAProxy's sockets did not answer (not running, restarting, overloaded).
    HaproxyUnreachable,
    /// HAProxy refused a batch of commands or answered it unexpectedly.
    BatchFailed,
    /// A sync from AWS (periodic or `agent sync` without `--desired`) failed.
    SyncFailed,
    /// A request or message was refused: malformed, too large, an unknown pool, or
    /// beyond the limits.
    RefusedMessage,
    /// Slot growth failed: the grown configuration failed `haproxy -c`, or the reload
    /// did not take.
    ReloadFailed,
    /// HAProxy has no slots for a pool agent.toml defines (the configuration lacks the
    /// slot line, or HAProxy runs another one).
    NoSlots,
    /// The slot table, instance map or server-state file could not be written.
    StateWriteFailed,
    /// A group's `haproxy:pool` or `haproxy:port` tag was refused (it named a pool or
    /// port agent.toml does not allow that group): counted once per refusal.
    TagRefused,
    /// A member from a group agent.toml does not map was kept instead of drained by a
    /// sync from AWS (the maps of the reactor and the agents differ): once per member.
    UnmappedMember,
    /// HAProxy is a version the agent does not drive (older than 2.6).
    UnsupportedHaproxy,
}

impl ErrorKind {
    /// Every kind, in the order rendered.
    pub const ALL: [ErrorKind; 10] = [
        Self::HaproxyUnreachable,
        Self::BatchFailed,
        Self::SyncFailed,
        Self::RefusedMessage,
        Self::ReloadFailed,
        Self::NoSlots,
        Self::StateWriteFailed,
        Self::TagRefused,
        Self::UnmappedMember,
        Self::UnsupportedHaproxy,
    ];

    /// The `kind` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::HaproxyUnreachable => "haproxy_unreachable",
            Self::BatchFailed => "batch_failed",
            Self::SyncFailed => "sync_failed",
            Self::RefusedMessage => "refused_message",
            Self::ReloadFailed => "reload_failed",
            Self::NoSlots => "no_slots",
            Self::StateWriteFailed => "state_write_failed",
            Self::TagRefused => "tag_refused",
            Self::UnmappedMember => "unmapped_member",
            Self::UnsupportedHaproxy => "unsupported_haproxy",
        }
    }
}

/// The outcomes the histogram has (`stale` and `pending` are not operations ending).
const OUTCOMES: [OutcomeStatus; 3] = [
    OutcomeStatus::Up,
    OutcomeStatus::Drained,
    OutcomeStatus::Failed,
];

/// The `outcome` label of an outcome the histogram counts.
fn outcome_label(o: OutcomeStatus) -> Option<&'static str> {
    match o {
        OutcomeStatus::Up => Some("up"),
        OutcomeStatus::Drained => Some("drained"),
        OutcomeStatus::Failed => Some("failed"),
        OutcomeStatus::Stale | OutcomeStatus::Pending => None,
    }
}

/// One histogram series: counts per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// The counters and the histogram, fed by the service as things happen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    pools: Vec<String>,
    slots: BTreeMap<String, u64>,
    durations: BTreeMap<(String, &'static str), Histogram>,
    errors: BTreeMap<ErrorKind, u64>,
    aws_syncs: u64,
    aws_last_sync_s: f64,
    start_time_s: f64,
    reports_sent: u64,
    report_failures: u64,
    reports_dropped: u64,
    external_reloads: u64,
    restored: u64,
    servers_added: u64,
    servers_removed: u64,
    /// What [`Registry::once`] already counted, by kind.
    counted_once: std::collections::BTreeSet<(ErrorKind, String)>,
}

/// One pool's gauges, read from the slot table at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// The pool.
    pub pool: String,
    /// Slots held by a member or an eviction.
    pub used: u64,
    /// Members joining, up, draining.
    pub members: [u64; 3],
    /// Joins, drains, evictions in flight.
    pub operations: [u64; 3],
    /// Members joining or up, by zone (`""`: unknown).
    pub zones: BTreeMap<String, u64>,
    /// Traffic spills out of this host's zone.
    pub spilled: bool,
}

/// The gauges that describe the slot table, and the reload count, at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per pool, in agent.toml's order.
    pub pools: Vec<PoolSnapshot>,
    /// Hitless reloads the service did.
    pub reloads: u64,
    /// Reports waiting in the outbox for the reactor's inbox.
    pub reports_pending: u64,
    /// The version HAProxy reported, once the service reached it.
    pub haproxy_version: Option<String>,
    /// Zones taken away on this host.
    pub zones_away: u64,
}

const STATES: [&str; 3] = ["joining", "up", "draining"];
const KINDS: [&str; 3] = ["join", "drain", "evict"];

impl Snapshot {
    /// The gauges of `pools` (every pool agent.toml names, even one the table has not
    /// seen yet) from `table`.
    pub fn of(table: &SlotTable, pools: &[String], reloads: u64) -> Self {
        let pools = pools
            .iter()
            .map(|p| {
                let mut s = PoolSnapshot {
                    pool: p.clone(),
                    ..PoolSnapshot::default()
                };
                if let Some(t) = table.pools.get(p) {
                    s.used = t.used().len() as u64;
                    for e in t.members.values() {
                        let i = match e.state {
                            EntryState::Joining => 0,
                            EntryState::Up => 1,
                            EntryState::Draining => 2,
                        };
                        s.members[i] += 1;
                        if e.state != EntryState::Draining {
                            let zone = e.zone.as_ref().map_or("", infra::Zone::as_str);
                            *s.zones.entry(zone.to_string()).or_default() += 1;
                        }
                        if e.op.is_some() {
                            s.operations[if e.state == EntryState::Draining {
                                1
                            } else {
                                0
                            }] += 1;
                        }
                    }
                    s.operations[2] = t.evicting.len() as u64;
                }
                s
            })
            .collect();
        Self {
            pools,
            reloads,
            reports_pending: 0,
            haproxy_version: None,
            zones_away: table.away_zones.len() as u64,
        }
    }
}

/// A label value with `\`, `"` and newlines escaped (the text format's rule).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the text format writes it (`+Inf`, `NaN`, else Rust's shortest
/// round-trip decimal).
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Writes the text format, one family at a time.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(PREFIX);
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {}", value(v));
    }
}

impl Registry {
    /// A registry for `pools` (every label set exists from the start, at 0) of a
    /// service started at `start_time_s` (unix seconds).
    pub fn new(pools: &[String], start_time_s: f64) -> Self {
        let mut r = Self {
            pools: pools.to_vec(),
            start_time_s,
            ..Self::default()
        };
        for p in pools {
            for o in OUTCOMES {
                if let Some(l) = outcome_label(o) {
                    r.durations.insert((p.clone(), l), Histogram::default());
                }
            }
        }
        for k in ErrorKind::ALL {
            r.errors.insert(k, 0);
        }
        r
    }

    /// HAProxy declares `n` slots for `pool` (read from it, or set by a reload).
    pub fn set_slots(&mut self, pool: &str, n: u32) {
        self.slots.insert(pool.to_string(), u64::from(n));
    }

    /// A member's operation in `pool` ended with `outcome` after `ms`, counted from
    /// the change reaching the service. `stale` and `pending` are not counted.
    pub fn observe(&mut self, pool: &str, outcome: OutcomeStatus, ms: u64) {
        let Some(label) = outcome_label(outcome) else {
            return;
        };
        self.durations
            .entry((pool.to_string(), label))
            .or_default()
            .observe(ms as f64 / 1000.0);
    }

    /// One error of `kind`.
    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// One error of `kind` about `what` (a refused tag, an unmapped pool/instance),
    /// counted the first time only, however often each sync meets it again. True when
    /// it is new, for the caller to log it once.
    pub fn once(&mut self, kind: ErrorKind, what: &str) -> bool {
        let new = self.counted_once.insert((kind, what.to_string()));
        if new {
            self.error(kind);
        }
        new
    }

    /// HAProxy has a worker this service did not start.
    pub fn external_reload(&mut self) {
        self.external_reloads += 1;
    }

    /// `n` members or drains were re-sent because HAProxy lacked them.
    pub fn restored(&mut self, n: usize) {
        self.restored += n as u64;
    }

    /// `n` servers were added at runtime past a pool's declared slots.
    pub fn servers_added(&mut self, n: usize) {
        self.servers_added += n as u64;
    }

    /// `n` empty servers past a pool's `slots` were given back (`del server`).
    pub fn servers_removed(&mut self, n: usize) {
        self.servers_removed += n as u64;
    }

    /// How many errors of `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors.get(&kind).copied().unwrap_or(0)
    }

    /// `n` members' reports reached the reactor's inbox.
    pub fn reports_sent(&mut self, n: usize) {
        self.reports_sent += n as u64;
    }

    /// A batch of reports could not be sent (it stays in the outbox).
    pub fn report_failed(&mut self) {
        self.report_failures += 1;
    }

    /// `n` reports were dropped from a full outbox.
    pub fn reports_dropped(&mut self, n: usize) {
        self.reports_dropped += n as u64;
    }

    /// A sync from AWS succeeded at `unix_s`.
    pub fn synced(&mut self, unix_s: f64) {
        self.aws_syncs += 1;
        self.aws_last_sync_s = unix_s;
    }

    /// Every metric, in the text format, with the table's gauges from `snap`.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut o = Out(String::with_capacity(4096));
        self.render_table(&mut o, snap);
        self.render_durations(&mut o);
        self.render_counters(&mut o, snap);
        o.0
    }

    /// The gauges that describe the slot table.
    fn render_table(&self, o: &mut Out, snap: &Snapshot) {
        o.family(
            "slots",
            "gauge",
            "Slots HAProxy declares for the pool (its server-template size).",
        );
        for p in &self.pools {
            let n = self.slots.get(p).copied().unwrap_or(0);
            o.sample("slots", &[("pool", p)], n as f64);
        }
        o.family(
            "slots_used",
            "gauge",
            "Slots held by a member (joining, up or draining) or an eviction.",
        );
        for s in &snap.pools {
            o.sample("slots_used", &[("pool", &s.pool)], s.used as f64);
        }
        o.family(
            "slots_free",
            "gauge",
            "Declared slots no member holds: members that fit without a reload.",
        );
        for s in &snap.pools {
            let n = self.slots.get(&s.pool).copied().unwrap_or(0);
            o.sample(
                "slots_free",
                &[("pool", &s.pool)],
                n.saturating_sub(s.used) as f64,
            );
        }
        o.family(
            "members",
            "gauge",
            "Members on this host by life stage (joining, up, draining).",
        );
        for s in &snap.pools {
            for (state, n) in STATES.iter().zip(s.members) {
                o.sample("members", &[("pool", &s.pool), ("state", state)], n as f64);
            }
        }
        self.render_zones(o, snap);
        o.family(
            "operations_in_flight",
            "gauge",
            "Joins waiting for health checks, drains waiting for sessions to end, evictions.",
        );
        for s in &snap.pools {
            for (kind, n) in KINDS.iter().zip(s.operations) {
                o.sample(
                    "operations_in_flight",
                    &[("pool", &s.pool), ("kind", kind)],
                    n as f64,
                );
            }
        }
    }

    /// The traffic policy's gauges.
    fn render_zones(&self, o: &mut Out, snap: &Snapshot) {
        o.family(
            "members_by_zone",
            "gauge",
            "Members joining or up on this host by Availability Zone (zone=\"\": no message said it).",
        );
        for s in &snap.pools {
            for (zone, n) in &s.zones {
                o.sample(
                    "members_by_zone",
                    &[("pool", &s.pool), ("zone", zone)],
                    *n as f64,
                );
            }
        }
        o.family(
            "pool_spilled",
            "gauge",
            "1 while the pool prefers this host's zone but too few members of it are UP, so every zone takes traffic.",
        );
        for s in &snap.pools {
            o.sample(
                "pool_spilled",
                &[("pool", &s.pool)],
                f64::from(u8::from(s.spilled)),
            );
        }
        o.family(
            "zones_away",
            "gauge",
            "Zones taken away on this host (agent zone away): their members are drained.",
        );
        o.sample("zones_away", &[], snap.zones_away as f64);
    }

    /// The histogram of operations' durations.
    fn render_durations(&self, o: &mut Out) {
        o.family(
            "operation_duration_seconds",
            "histogram",
            "From a change reaching the service to its member's outcome on this host (up: passed its checks; drained: sessions ended, slot released; failed).",
        );
        for ((pool, outcome), h) in &self.durations {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                o.sample(
                    "operation_duration_seconds_bucket",
                    &[("pool", pool), ("outcome", outcome), ("le", &value(*bound))],
                    cumulative as f64,
                );
            }
            let labels = [("pool", pool.as_str()), ("outcome", outcome)];
            o.sample(
                "operation_duration_seconds_bucket",
                &[labels[0], labels[1], ("le", "+Inf")],
                h.count as f64,
            );
            o.sample("operation_duration_seconds_sum", &labels, h.sum);
            o.sample("operation_duration_seconds_count", &labels, h.count as f64);
        }
    }

    /// Reloads, the version, errors, syncs and reports.
    fn render_counters(&self, o: &mut Out, snap: &Snapshot) {
        self.render_haproxy_counters(o, snap);
        o.family(
            "errors_total",
            "counter",
            "Errors by kind: haproxy_unreachable, batch_failed, sync_failed, refused_message, reload_failed, no_slots, state_write_failed, tag_refused, unmapped_member, unsupported_haproxy.",
        );
        for (k, n) in &self.errors {
            o.sample("errors_total", &[("kind", k.label())], *n as f64);
        }
        self.render_sync_and_report_counters(o, snap);
    }

    /// What this service did to HAProxy, and which HAProxy it drives.
    fn render_haproxy_counters(&self, o: &mut Out, snap: &Snapshot) {
        o.single(
            "reloads_total",
            "counter",
            "Hitless reloads of HAProxy this service did (slot growth only).",
            snap.reloads as f64,
        );
        o.single(
            "external_reloads_total",
            "counter",
            "HAProxy workers this service did not start: reloads or restarts by someone else, each followed by a restore of what HAProxy lacked.",
            self.external_reloads as f64,
        );
        o.single(
            "restored_total",
            "counter",
            "Members and drains re-sent to HAProxy because it lacked them (after a reload by someone else, or a restart of this service).",
            self.restored as f64,
        );
        o.single(
            "servers_added_total",
            "counter",
            "Servers added at runtime past a pool's declared slots (HAProxy 3.0 and later): growth without a reload.",
            self.servers_added as f64,
        );
        o.single(
            "servers_removed_total",
            "counter",
            "Empty servers past a pool's slots given back with del server once their drain ended.",
            self.servers_removed as f64,
        );
        if let Some(version) = &snap.haproxy_version {
            o.family(
                "haproxy_info",
                "gauge",
                "The HAProxy this agent drives: 1, labelled with the version it reported (show info).",
            );
            o.sample("haproxy_info", &[("version", version)], 1.0);
        }
    }

    /// Syncs from AWS and the reports to the reactor's inbox.
    fn render_sync_and_report_counters(&self, o: &mut Out, snap: &Snapshot) {
        o.single(
            "aws_syncs_total",
            "counter",
            "Successful syncs from AWS (at start, every sync_interval_s, and agent sync without --desired).",
            self.aws_syncs as f64,
        );
        o.single(
            "aws_last_sync_timestamp_seconds",
            "gauge",
            "Unix time of the last successful sync from AWS (0: none since the service started).",
            self.aws_last_sync_s,
        );
        o.single(
            "start_time_seconds",
            "gauge",
            "Unix time the agent service started.",
            self.start_time_s,
        );
        o.single(
            "reports_sent_total",
            "counter",
            "Members' outcomes delivered to the reactor's inbox ([report] queue_url).",
            self.reports_sent as f64,
        );
        o.single(
            "report_send_failures_total",
            "counter",
            "Attempts to send a batch of reports that failed; the reports stay in the outbox and are sent again after a backoff.",
            self.report_failures as f64,
        );
        o.single(
            "reports_dropped_total",
            "counter",
            "Reports dropped because the outbox was full (100000 waiting): the reactor's schedule repairs what they would have said.",
            self.reports_dropped as f64,
        );
        o.single(
            "reports_pending",
            "gauge",
            "Reports waiting in the outbox (persisted) for the reactor's inbox.",
            snap.reports_pending as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::{Entry, Eviction, Op, PoolSlots};
    use infra::{MemberId, Port};

    fn entry(slot: u32, state: EntryState, op: bool) -> Entry {
        Entry {
            slot,
            address: [10, 0, 0, 1].into(),
            port: Port::new(80).unwrap(),
            generation: 1,
            state,
            op: op.then_some(Op {
                change: 1,
                started_ms: 0,
                deadline_ms: 1,
                fresh: true,
            }),
            zone: None,
            weight: None,
            touched: 0,
        }
    }

    fn table() -> SlotTable {
        let mut web = PoolSlots::default();
        let id = |s: &str| MemberId::new(s).unwrap();
        web.members
            .insert(id("i-a"), entry(1, EntryState::Up, false));
        web.members
            .insert(id("i-b"), entry(2, EntryState::Joining, true));
        web.members
            .insert(id("i-c"), entry(4, EntryState::Draining, true));
        web.evicting.insert(
            3,
            Eviction {
                addr: "10.0.0.9:80".into(),
                started_ms: 0,
                deadline_ms: 1,
                touched: 0,
            },
        );
        let mut t = SlotTable::default();
        t.pools.insert("web".into(), web);
        t
    }

    /// The value of the sample `line_start` (name and labels exactly), if rendered.
    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn reports_to_the_inbox_are_counted() {
        let pools = vec!["web".to_string()];
        let mut r = Registry::new(&pools, 0.0);
        let mut snap = Snapshot::of(&table(), &pools, 0);
        let text = r.render(&snap);
        for name in [
            "reports_sent_total",
            "report_send_failures_total",
            "reports_dropped_total",
            "reports_pending",
        ] {
            assert_eq!(
                sample(&text, &format!("haproxy_asg_agent_{name}")),
                Some(0.0),
                "{name} exists from the start"
            );
        }
        r.reports_sent(3);
        r.reports_sent(2);
        r.report_failed();
        r.reports_dropped(7);
        snap.reports_pending = 4;
        let text = r.render(&snap);
        assert_eq!(
            sample(&text, "haproxy_asg_agent_reports_sent_total"),
            Some(5.0)
        );
        assert_eq!(
            sample(&text, "haproxy_asg_agent_report_send_failures_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "haproxy_asg_agent_reports_dropped_total"),
            Some(7.0)
        );
        assert_eq!(
            sample(&text, "haproxy_asg_agent_reports_pending"),
            Some(4.0)
        );
    }

    #[test]
    fn the_table_gauges_follow_the_table() {
        let pools = vec!["web".to_string(), "api".to_string()];
        let mut r = Registry::new(&pools, 1_700_000_000.0);
        r.set_slots("web", 8);
        let mut snap = Snapshot::of(&table(), &pools, 2);
        assert!(
            !r.render(&snap).contains("haproxy_info"),
            "unknown until reached"
        );
        snap.haproxy_version = Some("3.0.11-9e587df".into());
        let text = r.render(&snap);
        let s = |l: &str| sample(&text, l).unwrap_or_else(|| panic!("no {l} in\n{text}"));
        assert_eq!(
            s("haproxy_asg_agent_haproxy_info{version=\"3.0.11-9e587df\"}"),
            1.0
        );
        assert_eq!(s("haproxy_asg_agent_slots{pool=\"web\"}"), 8.0);
        assert_eq!(s("haproxy_asg_agent_slots_used{pool=\"web\"}"), 4.0);
        assert_eq!(s("haproxy_asg_agent_slots_free{pool=\"web\"}"), 4.0);
        assert_eq!(
            s("haproxy_asg_agent_members{pool=\"web\",state=\"up\"}"),
            1.0
        );
        assert_eq!(
            s("haproxy_asg_agent_members{pool=\"web\",state=\"joining\"}"),
            1.0
        );
        assert_eq!(
            s("haproxy_asg_agent_members{pool=\"web\",state=\"draining\"}"),
            1.0
        );
        for kind in ["join", "drain", "evict"] {
            assert_eq!(
                s(&format!(
                    "haproxy_asg_agent_operations_in_flight{{pool=\"web\",kind=\"{kind}\"}}"
                )),
                1.0,
                "{kind}"
            );
        }
        // Zones: members not leaving by zone (none said: ""), spills, zones away.
        assert_eq!(
            s("haproxy_asg_agent_members_by_zone{pool=\"web\",zone=\"\"}"),
            2.0
        );
        assert_eq!(s("haproxy_asg_agent_pool_spilled{pool=\"web\"}"), 0.0);
        assert_eq!(s("haproxy_asg_agent_zones_away"), 0.0);
        let mut t = table();
        t.away_zones.insert(infra::Zone::new("zone-a").unwrap());
        let mut zoned = Snapshot::of(&t, &pools, 2);
        zoned.pools[0].spilled = true;
        let text = r.render(&zoned);
        assert_eq!(sample(&text, "haproxy_asg_agent_zones_away"), Some(1.0));
        assert_eq!(
            sample(&text, "haproxy_asg_agent_pool_spilled{pool=\"web\"}"),
            Some(1.0)
        );
        // A pool the table has not seen yet still has every series, at 0.
        assert_eq!(s("haproxy_asg_agent_slots{pool=\"api\"}"), 0.0);
        assert_eq!(
            s("haproxy_asg_agent_members{pool=\"api\",state=\"up\"}"),
            0.0
        );
        assert_eq!(s("haproxy_asg_agent_reloads_total"), 2.0);
        assert_eq!(s("haproxy_asg_agent_start_time_seconds"), 1_700_000_000.0);
    }

    #[test]
    fn the_histogram_is_cumulative_with_sum_and_count() {
        let pools = vec!["web".to_string()];
        let mut r = Registry::new(&pools, 0.0);
        r.observe("web", OutcomeStatus::Up, 300);
        r.observe("web", OutcomeStatus::Up, 1_000);
        r.observe("web", OutcomeStatus::Up, 900_000);
        r.observe("web", OutcomeStatus::Drained, 40);
        r.observe("web", OutcomeStatus::Stale, 5);
        r.observe("web", OutcomeStatus::Pending, 5);
        let text = r.render(&Snapshot::of(&SlotTable::default(), &pools, 0));
        let up = |le: &str| {
            sample(
                &text,
                &format!(
                    "haproxy_asg_agent_operation_duration_seconds_bucket{{pool=\"web\",outcome=\"up\",le=\"{le}\"}}"
                ),
            )
            .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
        };
        assert_eq!(up("0.25"), 0.0);
        assert_eq!(up("0.5"), 1.0);
        assert_eq!(up("1"), 2.0, "a bound holds values equal to it");
        assert_eq!(up("600"), 2.0);
        assert_eq!(up("+Inf"), 3.0, "beyond the last bound: only +Inf");
        let l = "{pool=\"web\",outcome=\"up\"}";
        assert_eq!(
            sample(
                &text,
                &format!("haproxy_asg_agent_operation_duration_seconds_count{l}")
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("haproxy_asg_agent_operation_duration_seconds_sum{l}")
            ),
            Some(901.3)
        );
        let d = "{pool=\"web\",outcome=\"drained\",le=\"0.05\"}";
        assert_eq!(
            sample(
                &text,
                &format!("haproxy_asg_agent_operation_duration_seconds_bucket{d}")
            ),
            Some(1.0)
        );
        // Stale and pending are not operations ending; failed exists at 0.
        assert!(!text.contains("outcome=\"stale\""));
        assert!(!text.contains("outcome=\"pending\""));
        assert_eq!(
            sample(
                &text,
                "haproxy_asg_agent_operation_duration_seconds_count{pool=\"web\",outcome=\"failed\"}"
            ),
            Some(0.0)
        );
    }

    #[test]
    fn errors_and_syncs_count_and_every_kind_exists_from_the_start() {
        let mut r = Registry::new(&["web".to_string()], 0.0);
        let snap = Snapshot::default();
        let text = r.render(&snap);
        for k in ErrorKind::ALL {
            assert_eq!(
                sample(
                    &text,
                    &format!("haproxy_asg_agent_errors_total{{kind=\"{}\"}}", k.label())
                ),
                Some(0.0),
                "{k:?}"
            );
        }
        assert_eq!(
            sample(&text, "haproxy_asg_agent_aws_syncs_total"),
            Some(0.0)
        );
        r.error(ErrorKind::RefusedMessage);
        r.error(ErrorKind::RefusedMessage);
        r.error(ErrorKind::HaproxyUnreachable);
        // A refused tag counts once however often each sync meets it again.
        let refused = |r: &mut Registry, why: &str| r.once(ErrorKind::TagRefused, why);
        assert!(refused(&mut r, "group g: tag haproxy:pool=\"x\" refused"));
        assert!(!refused(&mut r, "group g: tag haproxy:pool=\"x\" refused"));
        assert!(refused(&mut r, "group g: tag haproxy:port=\"22\" refused"));
        assert!(r.once(
            ErrorKind::UnmappedMember,
            "group g: tag haproxy:pool=\"x\" refused"
        ));
        assert_eq!(r.errors(ErrorKind::TagRefused), 2);
        r.synced(1_700_000_123.5);
        r.synced(1_700_000_456.25);
        let text = r.render(&snap);
        assert_eq!(r.errors(ErrorKind::RefusedMessage), 2);
        assert_eq!(
            sample(
                &text,
                "haproxy_asg_agent_errors_total{kind=\"refused_message\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "haproxy_asg_agent_errors_total{kind=\"haproxy_unreachable\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "haproxy_asg_agent_aws_syncs_total"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "haproxy_asg_agent_aws_last_sync_timestamp_seconds"),
            Some(1_700_000_456.25)
        );
    }

    /// Every line is a comment (`# HELP`/`# TYPE` naming a family with this prefix) or
    /// a sample `name{labels} value` of a declared family; counters end in `_total`, and
    /// label values are escaped.
    #[test]
    fn the_text_is_well_formed() {
        let pools = vec!["web".to_string()];
        let mut r = Registry::new(&pools, 1.0);
        r.set_slots("web", 4);
        r.observe("web", OutcomeStatus::Failed, 30_000);
        let text = r.render(&Snapshot::of(&table(), &pools, 1));
        assert!(text.ends_with('\n'));
        let mut families: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(name.starts_with(PREFIX), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                assert!(
                    families.insert(name.into(), kind.into()).is_none(),
                    "{line}"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, v) = line.rsplit_once(' ').unwrap();
            assert!(v == "+Inf" || v.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(families.contains_key(family), "undeclared: {line}");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
