//! The lifecycle ledger: one item per lifecycle action, written only by the reactor.
//!
//! An item ([`Item`], pure) holds the action (group, instance, transition, hooks,
//! token), the hosts it waits for, what each reported, its deadline and, once made,
//! the decision. [`Ledger`] is the boundary: [`DynamoLedger`] keeps items in a DynamoDB
//! table (on-demand, TTL on decided items, a sparse index of the open ones); unit tests
//! use an in-memory one.
//!
//! Writes are optimistic: every item carries a version, a write succeeds only if the
//! stored version is still the one read, and [`update`] re-reads and re-applies what
//! conflicted (another invocation wrote the same item meanwhile): at once with what the
//! refused write returned (and, for the items a cancelled transaction left out although
//! their own condition held, with what was read of them), then after a jittered pause
//! with a fresh read ([`conflict_pause`]). Items of one batch go out together (up to
//! 100 per DynamoDB transaction), so a burst of reports costs a few calls, not one per
//! host.

mod dynamo;
mod item;
#[cfg(test)]
pub mod memory;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use infra::aws::AwsError;

pub use dynamo::{DynamoLedger, OPEN_INDEX};
pub use item::{
    claim_id, ActionKey, Applied, Claim, Decided, Decision, HostReports, Item, Opening,
    PoolOutcome, Timing, Verdict, CLAIM_MS,
};

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A DynamoDB call failed after retries.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// An item the table holds is not one this build can read.
    #[error("ledger item {id} is unreadable ({reason}); delete it, the schedule opens it again from the group's truth")]
    Corrupt {
        /// The item's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Concurrent writers kept changing the same items.
    #[error("ledger items {ids} kept changing under concurrent writers ({rounds} tries); the message is retried")]
    Contended {
        /// The items.
        ids: String,
        /// How many tries.
        rounds: u32,
    },
}

/// Where items live.
pub trait Ledger: Send + Sync {
    /// The items of `keys` that exist (strongly consistent reads).
    fn get(
        &self,
        keys: &[ActionKey],
    ) -> impl Future<Output = Result<Vec<Item>, LedgerError>> + Send;

    /// Writes `items`: one whose version is 0 only if it does not exist, any other only
    /// if the stored version is still its version; the stored version becomes one more.
    /// Returns the items not written because a condition failed (theirs, or that of an
    /// item written with them all or nothing); the others were written.
    fn put(
        &self,
        items: &[Item],
    ) -> impl Future<Output = Result<Vec<Unwritten>, LedgerError>> + Send;

    /// Every undecided item.
    fn open(&self) -> impl Future<Output = Result<Vec<Item>, LedgerError>> + Send;

    /// The records of `ids` kept beside the actions (health watches, a group's marks)
    /// that exist (strongly consistent reads).
    fn docs(&self, ids: &[String]) -> impl Future<Output = Result<Vec<Doc>, LedgerError>> + Send;

    /// Writes `doc` only if the stored version is still its version (0: it does not
    /// exist); the stored version becomes one more. Returns whether it was written.
    fn put_doc(&self, doc: &Doc) -> impl Future<Output = Result<bool, LedgerError>> + Send;
}

/// An item [`Ledger::put`] did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritten {
    /// Its key.
    pub key: ActionKey,
    /// What the failed write told of the item as stored.
    pub stored: Stored,
}

/// What a failed write told of an item it did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Its own condition failed and the answer carried the item as stored (DynamoDB's
    /// `ALL_OLD`).
    Returned(Box<Item>),
    /// Its own condition held: it was left out only because another item of the same
    /// transaction failed (all or nothing), so what was read of it is still stored.
    AsRead,
    /// Nothing: read it again.
    Unknown,
}

/// A record kept beside the actions: its id, version and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Its id (`health#<instance>`, `unhealthy#<group>`).
    pub id: String,
    /// The version read (0: new).
    pub version: u64,
    /// The record as JSON.
    pub body: String,
    /// When TTL may remove it (epoch seconds), if ever.
    pub expires_at_s: Option<u64>,
}

/// How many times [`update`] re-reads conflicting items before it gives up.
pub const MAX_ROUNDS: u32 = 8;
/// The longest pause before a round after a conflict ([`conflict_pause`]).
const MAX_PAUSE: Duration = Duration::from_millis(160);

/// How long to wait before a round after `conflicts` conflicting rounds past the first
/// (which is retried at once with the items the refused write returned): "full
/// jitter", a share `jitter` in [0, 1) of 10 ms doubled per conflict, at most
/// [`MAX_PAUSE`]. Two invocations recording reports of the same actions otherwise
/// re-read and re-write in lockstep, and one of them lost every round (a batch of
/// reports given back after eight conflicts, measured by scale-bench at 100 proxies).
pub fn conflict_pause(conflicts: u32, jitter: f64) -> Duration {
    let ceiling = Duration::from_millis(10)
        .saturating_mul(1u32 << conflicts.min(8))
        .min(MAX_PAUSE);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A number in [0, 1) that differs between invocations and calls.
fn jitter() -> f64 {
    (item::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads the items of `keys`, lets `change` edit each (`None` for one that does not
/// exist; it returns the item to store, or `None` to leave it alone), writes what
/// changed, and repeats for the items another writer changed meanwhile (`change` is
/// called again with the fresh item, so it must only depend on what it is given; a
/// failed write that returned the stored items spares the next read).
/// Returns the items as they stand afterwards (missing ones left alone are left out).
pub async fn update<L, F>(
    ledger: &L,
    keys: &[ActionKey],
    change: F,
) -> Result<Vec<Item>, LedgerError>
where
    L: Ledger + ?Sized,
    F: FnMut(&ActionKey, Option<Item>) -> Option<Item>,
{
    update_from(ledger, keys, Known::new(), change).await
}

/// What a caller already read of some keys: the item, or `None` when there was none.
pub type Known = BTreeMap<ActionKey, Option<Item>>;

/// What a read of `keys` that returned `items` knows: each key's item, or `None`.
pub fn known_from(keys: impl IntoIterator<Item = ActionKey>, items: Vec<Item>) -> Known {
    let mut known: Known = keys.into_iter().map(|k| (k, None)).collect();
    for item in items {
        known.insert(item.key(), Some(item));
    }
    known
}

/// The stored items of `keys`: those of `known` as it has them, the others read.
async fn stored<L: Ledger + ?Sized>(
    ledger: &L,
    keys: &[ActionKey],
    known: Known,
) -> Result<BTreeMap<ActionKey, Item>, LedgerError> {
    let unknown: Vec<ActionKey> = keys
        .iter()
        .filter(|k| !known.contains_key(*k))
        .cloned()
        .collect();
    let mut items: BTreeMap<ActionKey, Item> = known
        .into_iter()
        .filter_map(|(k, i)| Some((k, i?)))
        .collect();
    if !unknown.is_empty() {
        let read = ledger.get(&unknown).await?;
        items.extend(read.into_iter().map(|i| (i.key(), i)));
    }
    Ok(items)
}

/// [`update`], starting from what the caller read of some keys already (`known`): those
/// are not read again unless their write conflicts (the write's condition is the
/// version read, so a read that aged is caught there).
pub async fn update_from<L, F>(
    ledger: &L,
    keys: &[ActionKey],
    mut known: Known,
    mut change: F,
) -> Result<Vec<Item>, LedgerError>
where
    L: Ledger + ?Sized,
    F: FnMut(&ActionKey, Option<Item>) -> Option<Item>,
{
    let mut done: BTreeMap<ActionKey, Item> = BTreeMap::new();
    let mut todo: Vec<ActionKey> = keys
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    known.retain(|k, _| todo.contains(k));
    for round in 0..MAX_ROUNDS {
        if todo.is_empty() {
            break;
        }
        if round > 1 {
            // Conflicting again: the other writer writes these items as fast as we do.
            // A pause breaks the lockstep, and what a refused write returned before it
            // is stale after it: read afresh.
            tokio::time::sleep(conflict_pause(round - 1, jitter())).await;
            known.clear();
        }
        let current = stored(ledger, &todo, std::mem::take(&mut known)).await?;
        let mut writes = Vec::new();
        for k in &todo {
            let before = current.get(k);
            match change(k, before.cloned()) {
                Some(after) if Some(&after) != before => writes.push(after),
                Some(after) => {
                    done.insert(k.clone(), after);
                }
                None => {
                    if let Some(b) = before {
                        done.insert(k.clone(), b.clone());
                    }
                }
            }
        }
        if writes.is_empty() {
            todo.clear();
            break;
        }
        let unwritten = ledger.put(&writes).await?;
        let conflicts: BTreeSet<ActionKey> = unwritten.iter().map(|u| u.key.clone()).collect();
        for mut w in writes {
            if !conflicts.contains(&w.key()) {
                w.version += 1;
                done.insert(w.key(), w);
            }
        }
        // Items a failed write told us as stored, and those it left out unchanged (a
        // transaction's other items): the next round need not read them.
        known = unwritten
            .into_iter()
            .filter_map(|u| match u.stored {
                Stored::Returned(item) => Some((u.key, Some(*item))),
                Stored::AsRead => {
                    let read = current.get(&u.key).cloned();
                    Some((u.key, read))
                }
                Stored::Unknown => None,
            })
            .collect();
        todo = conflicts.into_iter().collect();
    }
    if !todo.is_empty() {
        return Err(LedgerError::Contended {
            ids: todo
                .iter()
                .map(ActionKey::id)
                .collect::<Vec<_>>()
                .join(", "),
            rounds: MAX_ROUNDS,
        });
    }
    Ok(done.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryLedger;
    use super::*;
    use crate::lifecycle::Transition;
    use infra::{GroupName, HostId, MemberId, MemberReport, OutcomeStatus, PoolName};

    #[test]
    fn a_pause_after_a_conflict_is_jittered_doubles_and_is_bounded() {
        assert_eq!(conflict_pause(1, 0.0), Duration::ZERO);
        assert_eq!(conflict_pause(1, 0.5), Duration::from_millis(10));
        assert_eq!(conflict_pause(2, 0.5), Duration::from_millis(20));
        assert_eq!(conflict_pause(3, 0.5), Duration::from_millis(40));
        assert_eq!(conflict_pause(30, 0.5), MAX_PAUSE / 2);
        assert!(conflict_pause(30, 0.999_999) < MAX_PAUSE);
        let draws: BTreeSet<u64> = (0..20).map(|_| (jitter() * 1e6) as u64).collect();
        assert!(
            draws.len() > 10,
            "two writers must not draw the same pauses: {draws:?}"
        );
        assert!((0..1000).map(|_| jitter()).all(|j| (0.0..1.0).contains(&j)));
    }

    fn key(i: &str) -> ActionKey {
        ActionKey {
            instance: MemberId::new(i).unwrap(),
            transition: Transition::Launch,
        }
    }

    fn opening(i: &str) -> Opening {
        Opening {
            key: key(i),
            group: GroupName::new("g").unwrap(),
            hooks: vec!["h".into()],
            token: None,
            pools: vec![PoolName::new("web").unwrap()],
            started_ms: 0,
            generation: 1,
            hosts: vec![HostId::new("h1").unwrap(), HostId::new("h2").unwrap()],
        }
    }

    const T: Timing = Timing {
        health_ms: 1_000,
        drain_ms: 1_000,
        host_report_ms: 1_000,
    };

    /// `host` reports the member of `item` UP at generation 1 (at `at_ms`).
    fn report_up(item: &mut Item, host: &str, at_ms: u64) {
        let r = MemberReport::new(
            PoolName::new("web").unwrap(),
            item.instance.clone(),
            1,
            OutcomeStatus::Up,
            None,
            1,
        );
        item.apply(&HostId::new(host).unwrap(), &r, at_ms);
    }

    fn up(host: &str) -> impl FnMut(&ActionKey, Option<Item>) -> Option<Item> + '_ {
        move |_, item| {
            let mut item = item?;
            report_up(&mut item, host, 5);
            Some(item)
        }
    }

    #[tokio::test]
    async fn items_are_created_once_and_updated_by_version() {
        let l = MemoryLedger::default();
        let created = update(&l, &[key("i-1"), key("i-2")], |k, old| {
            old.or_else(|| Some(Item::open(opening(k.instance.as_str()), T)))
        })
        .await
        .unwrap();
        assert_eq!(created.len(), 2);
        assert!(created.iter().all(|i| i.version == 1));
        // Reports for an item that does not exist write nothing.
        let none = update(&l, &[key("i-9")], up("h1")).await.unwrap();
        assert!(none.is_empty());
        let after = update(&l, &[key("i-1")], up("h1")).await.unwrap();
        assert_eq!(after[0].version, 2);
        // The same report again changes nothing: no write.
        let writes = l.writes();
        let again = update(&l, &[key("i-1")], up("h1")).await.unwrap();
        assert_eq!((again[0].version, l.writes()), (2, writes));
        assert_eq!(l.open_items().len(), 2);
    }

    #[tokio::test]
    async fn a_concurrent_write_is_re_read_and_re_applied() {
        let l = MemoryLedger::default();
        update(&l, &[key("i-1")], |k, _| {
            Some(Item::open(opening(k.instance.as_str()), T))
        })
        .await
        .unwrap();
        // Another writer records h2's report between our read and our write.
        l.interfere_once(|item| report_up(item, "h2", 3));
        let reads = l.reads();
        let after = update(&l, &[key("i-1")], up("h1")).await.unwrap();
        assert_eq!(after[0].decide(0).label(), "CONTINUE", "both reports kept");
        assert_eq!(after[0].version, 3);
        // The failed write said what is stored: no second read.
        assert_eq!(l.reads(), reads + 1);
        // A writer that never lets go: a clear error after the bounded rounds.
        l.interfere_always();
        let e = update(&l, &[key("i-1")], |_, i| {
            let mut i = i?;
            i.hooks.push("x".into());
            Some(i)
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("i-1#launch"), "{e}");
    }

    #[tokio::test]
    async fn a_transaction_refused_for_one_item_reads_none_again() {
        let l = MemoryLedger::default();
        update(&l, &[key("i-1"), key("i-2")], |k, _| {
            Some(Item::open(opening(k.instance.as_str()), T))
        })
        .await
        .unwrap();
        // Another writer records h2's report on i-1 only: the transaction of both is
        // refused; i-1 comes back as stored, i-2 was not changed by anyone.
        l.interfere_once_with(&key("i-1"), |item| report_up(item, "h2", 3));
        let reads = l.reads();
        let after = update(&l, &[key("i-1"), key("i-2")], up("h1"))
            .await
            .unwrap();
        let version = |i: &str| after.iter().find(|a| a.key() == key(i)).map(|a| a.version);
        assert_eq!((version("i-1"), version("i-2")), (Some(3), Some(2)));
        let i1 = l.item(&key("i-1")).unwrap();
        assert_eq!(
            i1.decide(0).label(),
            "CONTINUE",
            "h2's report kept, h1's added"
        );
        assert_eq!(
            l.reads(),
            reads + 1,
            "neither item is read again after the refused transaction"
        );
    }
}
