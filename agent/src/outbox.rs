//! Members' outcomes waiting to reach the reactor's inbox (agent.toml `[report]`), and
//! the health changes of members that were UP ([`infra::HealthReport`]). Pure: the
//! service adds what ends, its sender takes a batch, then says whether it went out.
//!
//! The outbox is persisted with the slot table (`reports.json` in the state directory),
//! so a report survives a restart of the service until it was sent. A batch that fails
//! stays, and is sent again after a backoff that doubles from [`FIRST_BACKOFF`] up to
//! [`MAX_BACKOFF`]; nothing is dropped unless the outbox holds [`MAX_PENDING`] reports,
//! and then the oldest go, counted (the sender logs them).

use std::collections::VecDeque;
use std::time::Duration;

use infra::{HealthReport, MemberReport};
use serde::{Deserialize, Serialize};

/// The most reports kept waiting; beyond it the oldest are dropped (and counted).
pub const MAX_PENDING: usize = 100_000;
/// The most reports one batch takes (one SQS message holds about 2,000).
pub const MAX_BATCH: usize = 1_000;
/// The wait after a first failed batch.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One report waiting: a member's outcome or a health change (files written before
/// health changes existed hold outcomes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Queued {
    seq: u64,
    added_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<MemberReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<HealthReport>,
}

/// Reports taken to be sent, up to and including sequence number `upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The last sequence number taken.
    pub upto: u64,
    /// The outcomes, oldest first.
    pub reports: Vec<MemberReport>,
    /// The health changes, oldest first.
    pub health: Vec<HealthReport>,
}

/// The reports waiting, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    next_seq: u64,
    pending: VecDeque<Queued>,
    /// Consecutive failed batches.
    #[serde(skip)]
    failures: u32,
    /// No batch is taken before this (unix ms): the backoff after a failure.
    #[serde(skip)]
    retry_at_ms: u64,
    /// A batch is out (taken, not yet acknowledged or failed).
    #[serde(skip)]
    in_flight: bool,
}

impl Outbox {
    /// Adds a report at `now_ms`; returns how many of the oldest were dropped to stay
    /// within [`MAX_PENDING`].
    pub fn push(&mut self, report: MemberReport, now_ms: u64) -> usize {
        self.queue(Some(report), None, now_ms)
    }

    /// Adds a health change at `now_ms`, as [`Outbox::push`] does an outcome.
    pub fn push_health(&mut self, health: HealthReport, now_ms: u64) -> usize {
        self.queue(None, Some(health), now_ms)
    }

    fn queue(
        &mut self,
        report: Option<MemberReport>,
        health: Option<HealthReport>,
        now_ms: u64,
    ) -> usize {
        self.pending.push_back(Queued {
            seq: self.next_seq,
            added_ms: now_ms,
            report,
            health,
        });
        self.next_seq += 1;
        let mut dropped = 0;
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// How many reports wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Consecutive failed batches (0 once one went out).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next batch may be taken (unix ms), if one is waiting: after the
    /// batching window from the oldest report, and after any backoff. `None` while a
    /// batch is out or nothing waits.
    pub fn due_ms(&self, window: Duration) -> Option<u64> {
        if self.in_flight {
            return None;
        }
        let oldest = self.pending.front()?.added_ms;
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Some(oldest.saturating_add(window).max(self.retry_at_ms))
    }

    /// Takes the oldest reports (at most [`MAX_BATCH`]) when they are due at `now_ms`.
    pub fn take(&mut self, now_ms: u64, window: Duration) -> Option<Batch> {
        if self.due_ms(window)? > now_ms {
            return None;
        }
        let taken: Vec<&Queued> = self.pending.iter().take(MAX_BATCH).collect();
        let upto = taken.last()?.seq;
        self.in_flight = true;
        Some(Batch {
            upto,
            reports: taken.iter().filter_map(|q| q.report.clone()).collect(),
            health: taken.iter().filter_map(|q| q.health.clone()).collect(),
        })
    }

    /// The batch up to `upto` went out: its reports leave the outbox.
    pub fn sent(&mut self, upto: u64) -> usize {
        self.in_flight = false;
        self.failures = 0;
        self.retry_at_ms = 0;
        let before = self.pending.len();
        self.pending.retain(|q| q.seq > upto);
        before - self.pending.len()
    }

    /// The batch failed at `now_ms`: its reports stay; returns the backoff before the
    /// next try.
    pub fn failed(&mut self, now_ms: u64) -> Duration {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let backoff = FIRST_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF);
        self.retry_at_ms = now_ms.saturating_add(u64::try_from(backoff.as_millis()).unwrap_or(0));
        backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::{MemberId, OutcomeStatus, PoolName};

    fn report(i: usize) -> MemberReport {
        MemberReport::new(
            PoolName::new("web").unwrap(),
            MemberId::new(format!("i-{i}")).unwrap(),
            1,
            OutcomeStatus::Up,
            None,
            3,
        )
    }

    const WINDOW: Duration = Duration::from_millis(5);

    #[test]
    fn reports_wait_for_the_window_then_go_out_together() {
        let mut o = Outbox::default();
        assert_eq!(o.take(0, WINDOW), None);
        o.push(report(1), 100);
        o.push(report(2), 103);
        assert_eq!(o.due_ms(WINDOW), Some(105));
        assert_eq!(o.take(104, WINDOW), None, "still within the window");
        let b = o.take(105, WINDOW).unwrap();
        assert_eq!(b.reports, vec![report(1), report(2)]);
        // Added while the batch is out: kept for the next one.
        o.push(report(3), 106);
        assert_eq!(o.take(200, WINDOW), None, "one batch out at a time");
        assert_eq!(o.sent(b.upto), 2);
        assert_eq!(o.take(200, WINDOW).unwrap().reports, vec![report(3)]);
    }

    #[test]
    fn a_failed_batch_stays_and_is_retried_after_a_growing_backoff() {
        let mut o = Outbox::default();
        o.push(report(1), 0);
        let b = o.take(10, WINDOW).unwrap();
        assert_eq!(o.failed(10), FIRST_BACKOFF);
        assert_eq!(o.len(), 1);
        assert_eq!(o.take(100, WINDOW), None, "backing off");
        let again = o.take(210, WINDOW).unwrap();
        assert_eq!(again, b);
        assert_eq!(o.failed(210), FIRST_BACKOFF * 2);
        for _ in 0..20 {
            o.take(u64::MAX / 2, WINDOW);
            assert!(o.failed(0) <= MAX_BACKOFF);
        }
        assert_eq!(o.failed(0), MAX_BACKOFF);
        assert!(o.take(u64::MAX, WINDOW).is_some());
        o.sent(b.upto);
        assert!(o.is_empty() && o.failures() == 0);
    }

    #[test]
    fn the_outbox_is_bounded_and_batches_are_too() {
        let mut o = Outbox::default();
        let mut dropped = 0;
        for i in 0..MAX_PENDING + 10 {
            dropped += o.push(report(i), 0);
        }
        assert_eq!((o.len(), dropped), (MAX_PENDING, 10));
        let b = o.take(10, WINDOW).unwrap();
        assert_eq!(b.reports.len(), MAX_BATCH);
        assert_eq!(b.reports[0], report(10), "the oldest were dropped");
    }

    #[test]
    fn health_changes_go_out_with_the_outcomes_and_old_files_still_read() {
        let mut o = Outbox::default();
        o.push(report(1), 0);
        let down = HealthReport {
            pool: PoolName::new("web").unwrap(),
            member: MemberId::new("i-9").unwrap(),
            healthy: false,
            since_ms: 1,
        };
        o.push_health(down.clone(), 1);
        let b = o.take(10, WINDOW).unwrap();
        assert_eq!((b.reports, b.health), (vec![report(1)], vec![down]));
        let old = r#"{"next_seq":1,"pending":[{"seq":0,"added_ms":7,"report":{"pool":"web","member":"i-1","generation":1,"status":"up","ms":3}}]}"#;
        let mut back: Outbox = serde_json::from_str(old).unwrap();
        assert_eq!(
            back.take(100, WINDOW).map(|b| b.reports),
            Some(vec![report(1)])
        );
    }

    #[test]
    fn the_outbox_survives_a_restart_through_its_file() {
        let mut o = Outbox::default();
        o.push(report(1), 7);
        let _ = o.take(100, WINDOW);
        let text = serde_json::to_string(&o).unwrap();
        let mut back: Outbox = serde_json::from_str(&text).unwrap();
        // A batch out when the service stopped is sent again.
        assert_eq!(
            back.take(100, WINDOW).map(|b| b.reports),
            Some(vec![report(1)])
        );
        back.push(report(2), 8);
        assert_eq!(back.pending.back().map(|q| q.seq), Some(1));
    }
}
