//! The instance map: which member (instance id) is in which slot, for HAProxy's log
//! line. HAProxy knows a slot only as `slot<N>`; the log line names the instance that
//! served the request by looking the slot up in this map.
//!
//! The file is `<state_dir>/instances.map` ([`crate::config::INSTANCES_MAP`]), one
//! `<pool>/slot<N> <instance id>` line per slot that holds a member (joining, up or
//! draining):
//!
//! ```text
//! api/slot1 i-0def
//! web/slot1 i-0abc
//! web/slot3 i-0123
//! ```
//!
//! The key is pool-qualified because every pool numbers its slots from 1; backend
//! names are unique in HAProxy, so two pools' slots never share a key. Each pool's
//! backend sets `txn.asg_slot` to `%b/%s` (backend/server) after the response, and the
//! frontend's `log-format` ends with `%[var(txn.asg_slot),map(<file>,-)]`
//! ([`crate::haproxy_cfg::render`]): `-` when the slot has no entry.
//!
//! HAProxy reads the file when it starts and at every reload, and needs it to exist
//! then (HAProxy 2.6 has no optional map files). Between reloads the running worker's
//! copy changes only through the runtime API: [`commands`] gives the `del map` /
//! `add map` groups that take one set of entries to another. The service keeps both
//! in step: it writes [`render`] of the table with the table, and sends [`commands`]
//! from what HAProxy has to what the table says with the slot commands.

use std::collections::BTreeMap;

use infra::{MemberId, PoolName};

use crate::haproxy::{Command, MapFile, Op};
use crate::haproxy_cfg::{slot_name, slot_number};
use crate::slots::SlotTable;

/// A slot: its pool and number.
pub type Slot = (PoolName, u32);

/// Slot -> the member in it.
pub type Entries = BTreeMap<Slot, MemberId>;

/// The map key of a slot: `<pool>/slot<N>`.
pub fn key(pool: &PoolName, slot: u32) -> String {
    format!("{pool}/{}", slot_name(slot))
}

/// The slot a map key names, if it is one of ours.
pub fn parse_key(key: &str) -> Option<Slot> {
    let (pool, server) = key.split_once('/')?;
    Some((PoolName::new(pool).ok()?, slot_number(server)?))
}

/// Every slot of `table` that holds a member.
pub fn entries(table: &SlotTable) -> Entries {
    let mut out = Entries::new();
    for (pool, t) in &table.pools {
        let Ok(pool) = PoolName::new(pool.as_str()) else {
            continue;
        };
        for (id, e) in &t.members {
            out.insert((pool.clone(), e.slot), id.clone());
        }
    }
    out
}

/// The map file's content for `entries`: one `<pool>/slot<N> <instance>` line each,
/// sorted by pool and slot number.
pub fn render(entries: &Entries) -> String {
    let mut s = String::new();
    for ((pool, slot), id) in entries {
        s.push_str(&key(pool, *slot));
        s.push(' ');
        s.push_str(id.as_str());
        s.push('\n');
    }
    s
}

/// The entries of a live map ([`crate::haproxy::Client::show_map`]) in the form
/// [`commands`] takes. Keys that are not `<pool>/slot<N>` are left out (and alone).
pub fn parse_live(pairs: &[(String, String)]) -> Vec<(Slot, MemberId)> {
    pairs
        .iter()
        .filter_map(|(k, v)| Some((parse_key(k)?, MemberId::new(v.as_str()).ok()?)))
        .collect()
}

/// The commands that take the map from `current` (what HAProxy has: may hold a key
/// twice; `None` when that is unknown) to `wanted`, one command per slot where one
/// does: `add map` for a slot without an entry, `set map` for a slot whose one entry
/// names another member, a [`Command::map_put`] group (`del` then `add`) where the key
/// is duplicated or what HAProxy has is unknown, and a `del map` for every slot that no
/// longer has a member. Nothing for slots already right.
pub fn commands(
    map: &MapFile,
    current: Option<Vec<(Slot, MemberId)>>,
    wanted: &Entries,
) -> Vec<Vec<Command>> {
    let known = current.is_some();
    let mut have: BTreeMap<Slot, Vec<MemberId>> = BTreeMap::new();
    for (slot, id) in current.into_iter().flatten() {
        have.entry(slot).or_default().push(id);
    }
    let mut out = Vec::new();
    for ((pool, slot), ids) in &have {
        if !wanted.contains_key(&(pool.clone(), *slot)) && !ids.is_empty() {
            out.push(vec![Command::new(
                pool,
                *slot,
                Op::MapDel { map: map.clone() },
            )]);
        }
    }
    for ((pool, slot), id) in wanted {
        let (map, member) = (map.clone(), id.clone());
        let group = match have.get(&(pool.clone(), *slot)).map(Vec::as_slice) {
            Some([one]) if one == id => continue,
            None | Some([]) if known => vec![Command::new(pool, *slot, Op::MapAdd { map, member })],
            Some([_]) => vec![Command::new(pool, *slot, Op::MapSet { map, member })],
            _ => Command::map_put(pool, *slot, &map, id),
        };
        out.push(group);
    }
    out
}

/// [`commands`] from one table to the next (what a change or a finished operation
/// did to the slots).
pub fn table_commands(map: &MapFile, before: &SlotTable, after: &SlotTable) -> Vec<Vec<Command>> {
    commands(
        map,
        Some(entries(before).into_iter().collect()),
        &entries(after),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::{Entry, EntryState, PoolSlots};
    use infra::Port;

    fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    fn pool(s: &str) -> PoolName {
        PoolName::new(s).unwrap()
    }

    fn entry(slot: u32, state: EntryState) -> Entry {
        Entry {
            slot,
            address: "10.0.0.1".parse().unwrap(),
            port: Port::new(80).unwrap(),
            generation: 1,
            state,
            op: None,
            zone: None,
            weight: None,
            touched: 0,
        }
    }

    fn table(rows: &[(&str, &str, u32)]) -> SlotTable {
        let mut t = SlotTable::default();
        for (p, m, slot) in rows {
            t.pools
                .entry(p.to_string())
                .or_insert_with(PoolSlots::default)
                .members
                .insert(id(m), entry(*slot, EntryState::Up));
        }
        t
    }

    fn map() -> MapFile {
        MapFile::new(std::path::Path::new("/var/lib/haproxy-asg/instances.map")).unwrap()
    }

    fn text(groups: &[Vec<Command>]) -> Vec<String> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .collect()
    }

    #[test]
    fn the_file_has_one_pool_qualified_line_per_occupied_slot() {
        let mut t = table(&[("web", "i-a", 1), ("web", "i-b", 10), ("api", "i-c", 1)]);
        t.pools
            .get_mut("web")
            .unwrap()
            .members
            .insert(id("i-d"), entry(2, EntryState::Draining));
        assert_eq!(
            render(&entries(&t)),
            "api/slot1 i-c\nweb/slot1 i-a\nweb/slot2 i-d\nweb/slot10 i-b\n"
        );
        assert_eq!(render(&Entries::new()), "");
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_are_not_ours() {
        assert_eq!(key(&pool("web"), 3), "web/slot3");
        assert_eq!(parse_key("web/slot3"), Some((pool("web"), 3)));
        assert_eq!(parse_key("web/other"), None);
        assert_eq!(parse_key("slot3"), None);
        let live = parse_live(&[
            ("web/slot1".into(), "i-a".into()),
            ("somebody-else".into(), "x".into()),
        ]);
        assert_eq!(live, vec![((pool("web"), 1), id("i-a"))]);
    }

    #[test]
    fn commands_change_only_what_differs() {
        let before = table(&[("web", "i-a", 1), ("web", "i-b", 2), ("api", "i-c", 1)]);
        // i-b left slot 2, i-e took slot 3, i-f replaced i-c in api's slot 1.
        let after = table(&[("web", "i-a", 1), ("web", "i-e", 3), ("api", "i-f", 1)]);
        let m = map();
        assert_eq!(
            text(&table_commands(&m, &before, &after)),
            [
                "del map /var/lib/haproxy-asg/instances.map web/slot2",
                "set map /var/lib/haproxy-asg/instances.map api/slot1 i-f",
                "add map /var/lib/haproxy-asg/instances.map web/slot3 i-e",
            ]
        );
        assert!(table_commands(&m, &after, &after).is_empty());
    }

    #[test]
    fn an_unknown_live_map_gets_every_entry_put() {
        let m = map();
        let wanted = entries(&table(&[("web", "i-a", 1)]));
        assert_eq!(
            text(&commands(&m, None, &wanted)),
            ["del map /var/lib/haproxy-asg/instances.map web/slot1; add map /var/lib/haproxy-asg/instances.map web/slot1 i-a"]
        );
        assert!(text(&commands(&m, Some(Vec::new()), &Entries::new())).is_empty());
    }

    #[test]
    fn a_duplicated_live_key_is_put_again_or_deleted() {
        let m = map();
        let wanted = entries(&table(&[("web", "i-a", 1)]));
        let live = vec![
            ((pool("web"), 1), id("i-a")),
            ((pool("web"), 1), id("i-old")),
            ((pool("web"), 4), id("i-x")),
            ((pool("web"), 4), id("i-y")),
        ];
        assert_eq!(
            text(&commands(&m, Some(live), &wanted)),
            [
                "del map /var/lib/haproxy-asg/instances.map web/slot4",
                "del map /var/lib/haproxy-asg/instances.map web/slot1; add map /var/lib/haproxy-asg/instances.map web/slot1 i-a",
            ]
        );
    }
}
