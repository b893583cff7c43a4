//! An in-memory [`Ledger`] for unit tests, with the same conditional writes as the
//! table, and a way to make another writer interfere.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{ActionKey, Doc, Item, Ledger, LedgerError, Unwritten};

type Interference = Box<dyn FnMut(&mut Item) + Send>;

/// Items by id.
#[derive(Default)]
pub struct MemoryLedger {
    items: Mutex<BTreeMap<String, Item>>,
    docs: Mutex<BTreeMap<String, Doc>>,
    writes: Mutex<usize>,
    reads: Mutex<usize>,
    interfere: Mutex<Option<(Interference, bool)>>,
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

    /// Before the next write, another writer applies `f` to the stored item.
    pub fn interfere_once(&self, f: impl FnMut(&mut Item) + Send + 'static) {
        *self.interfere.lock().unwrap() = Some((Box::new(f), false));
    }

    /// Before every write, another writer bumps the stored item.
    pub fn interfere_always(&self) {
        *self.interfere.lock().unwrap() = Some((Box::new(|_| {}), true));
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
        if let Some((f, always)) = interfere.as_mut() {
            for i in items {
                if let Some(s) = stored.get_mut(&i.key().id()) {
                    f(s);
                    s.version += 1;
                }
            }
            if !*always {
                *interfere = None;
            }
        }
        let mut conflicts = Vec::new();
        for i in items {
            let id = i.key().id();
            let current = stored.get(&id).map(|s| s.version).unwrap_or(0);
            if current != i.version {
                conflicts.push(Unwritten {
                    key: i.key(),
                    stored: stored.get(&id).cloned(),
                });
                continue;
            }
            let mut written = i.clone();
            written.version += 1;
            stored.insert(id, written);
            *self.writes.lock().unwrap() += 1;
        }
        Ok(conflicts)
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
