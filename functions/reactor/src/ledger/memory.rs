//! An in-memory [`Ledger`] for unit tests, with the same conditional writes as the
//! table, and a way to make another writer interfere.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{ActionKey, Doc, Item, Ledger, LedgerError, Stored, Unwritten};

type Interference = Box<dyn FnMut(&mut Item) + Send>;

/// Items by id.
#[derive(Default)]
pub struct MemoryLedger {
    items: Mutex<BTreeMap<String, Item>>,
    docs: Mutex<BTreeMap<String, Doc>>,
    writes: Mutex<usize>,
    reads: Mutex<usize>,
    /// Another writer: what it does, to which item (`None`: each), and whether always.
    interfere: Mutex<Option<(Interference, Option<String>, bool)>>,
}

impl MemoryLedger {
    /// Every item.
    pub fn items(&self) -> Vec<Item> {
        self.items.lock().unwrap().values().cloned().collect()
    }

    /// The undecided items.
    pub fn open_items(&self) -> Vec<Item> {
        self.items().into_iter().filter(Item::is_open).collect()
    }

    /// The item of `key`.
    pub fn item(&self, key: &ActionKey) -> Option<Item> {
        self.items.lock().unwrap().get(&key.id()).cloned()
    }

    /// Items written so far.
    pub fn writes(&self) -> usize {
        *self.writes.lock().unwrap()
    }

    /// Reads ([`Ledger::get`] calls) so far.
    pub fn reads(&self) -> usize {
        *self.reads.lock().unwrap()
    }

    /// Makes every stored item `ms` older: its start, deadline and reports, as if that
    /// much time had passed.
    pub fn age(&self, ms: u64) {
        for item in self.items.lock().unwrap().values_mut() {
            item.started_ms = item.started_ms.saturating_sub(ms);
            item.deadline_ms = item.deadline_ms.saturating_sub(ms);
            for h in item.hosts.values_mut() {
                for o in h.pools.values_mut() {
                    o.at_ms = o.at_ms.saturating_sub(ms);
                }
            }
            if let Some(d) = item.decided.as_mut() {
                d.at_ms = d.at_ms.saturating_sub(ms);
            }
            if let Some(c) = item.claim.as_mut() {
                c.at_ms = c.at_ms.saturating_sub(ms);
            }
        }
    }

    /// Before the next write, another writer applies `f` to the stored items it writes.
    pub fn interfere_once(&self, f: impl FnMut(&mut Item) + Send + 'static) {
        *self.interfere.lock().unwrap() = Some((Box::new(f), None, false));
    }

    /// Before the next write, another writer applies `f` to the stored item of `key`
    /// only.
    pub fn interfere_once_with(&self, key: &ActionKey, f: impl FnMut(&mut Item) + Send + 'static) {
        *self.interfere.lock().unwrap() = Some((Box::new(f), Some(key.id()), false));
    }

    /// Before every write, another writer bumps the stored item.
    pub fn interfere_always(&self) {
        *self.interfere.lock().unwrap() = Some((Box::new(|_| {}), None, true));
    }
}

impl Ledger for MemoryLedger {
    async fn get(&self, keys: &[ActionKey]) -> Result<Vec<Item>, LedgerError> {
        *self.reads.lock().unwrap() += 1;
        let items = self.items.lock().unwrap();
        Ok(keys
            .iter()
            .filter_map(|k| items.get(&k.id()).cloned())
            .collect())
    }

    async fn put(&self, items: &[Item]) -> Result<Vec<Unwritten>, LedgerError> {
        let mut stored = self.items.lock().unwrap();
        let mut interfere = self.interfere.lock().unwrap();
        if let Some((f, target, always)) = interfere.as_mut() {
            for i in items {
                let id = i.key().id();
                if target.as_ref().is_some_and(|t| *t != id) {
                    continue;
                }
                if let Some(s) = stored.get_mut(&id) {
                    f(s);
                    s.version += 1;
                }
            }
            if !*always {
                *interfere = None;
            }
        }
        // All or nothing, as a transaction: a failed condition leaves every item out,
        // the failed ones returned as stored, the others as they were read.
        let failed = |i: &Item| stored.get(&i.key().id()).map_or(0, |s| s.version) != i.version;
        if items.iter().any(failed) {
            return Ok(items
                .iter()
                .map(|i| Unwritten {
                    key: i.key(),
                    stored: match stored.get(&i.key().id()) {
                        Some(s) if failed(i) => Stored::Returned(Box::new(s.clone())),
                        None if failed(i) => Stored::Unknown,
                        _ => Stored::AsRead,
                    },
                })
                .collect());
        }
        for i in items {
            let mut written = i.clone();
            written.version += 1;
            stored.insert(i.key().id(), written);
            *self.writes.lock().unwrap() += 1;
        }
        Ok(Vec::new())
    }

    async fn open(&self) -> Result<Vec<Item>, LedgerError> {
        Ok(self.open_items())
    }

    async fn docs(&self, ids: &[String]) -> Result<Vec<Doc>, LedgerError> {
        let docs = self.docs.lock().unwrap();
        Ok(ids.iter().filter_map(|id| docs.get(id).cloned()).collect())
    }

    async fn put_doc(&self, doc: &Doc) -> Result<bool, LedgerError> {
        let mut docs = self.docs.lock().unwrap();
        let current = docs.get(&doc.id).map_or(0, |d| d.version);
        if current != doc.version {
            return Ok(false);
        }
        let mut written = doc.clone();
        written.version += 1;
        docs.insert(doc.id.clone(), written);
        Ok(true)
    }
}
