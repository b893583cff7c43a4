//! What the service keeps on disk (the slot table, the instance map, HAProxy's
//! server-state file, the outbox of reports) and when it writes it.

use infra::{MemberId, OutcomeStatus, PoolName};
use tracing::{debug, warn};

use super::*;

impl Service {
    /// Writes the slot table: the intent, before HAProxy is touched.
    pub(super) fn save_table(&self, st: &State) -> Result<(), ServiceError> {
        let json = serde_json::to_vec(&st.table).map_err(|e| StoreError::Encode(e.to_string()))?;
        store::write_atomic(&self.cfg.haproxy.slots_path(), &json)?;
        Ok(())
    }

    /// Writes the slot table before a change touches HAProxy. When it cannot be written,
    /// a change that `joins` nothing goes ahead anyway: taking traffic away must never
    /// wait for a disk (the table stays in memory and the next change writes it).
    pub(super) fn save_intent(&self, st: &State, joins: bool) -> Result<(), ServiceError> {
        match self.save_table(st) {
            Err(e) if !joins => {
                self.metric(|m| m.error(ErrorKind::StateWriteFailed));
                tracing::error!(error = %e, "cannot write the slot table; draining anyway (the table is kept in memory until it can be written; a restart before then forgets these drains and the reactor's next reconcile repeats them)");
                Ok(())
            }
            r => r,
        }
    }

    /// Writes the instance map HAProxy reads at its next start or reload. Written after
    /// the commands (the running worker gets its entries over the socket, and a reload
    /// only happens under the lock this change holds): one synced write less before a
    /// member reaches HAProxy. A service killed before it re-writes it when it resumes.
    pub(super) fn save_map(&self, st: &State) -> Result<(), ServiceError> {
        let map = instances::render(&instances::entries(&st.table));
        store::write_atomic(
            std::path::Path::new(self.cfg.haproxy.instances_map.as_str()),
            map.as_bytes(),
        )?;
        Ok(())
    }

    /// The commands that bring the worker's instance map to the table; once they are
    /// sent the worker holds the table's entries. Asks HAProxy first when what it holds
    /// is unknown, and puts every entry when it cannot say (a put replaces).
    pub(super) fn map_commands(&self, st: &mut State, client: &Client) -> Vec<Vec<Command>> {
        let map = &self.cfg.haproxy.instances_map;
        let wanted = instances::entries(&st.table);
        let current: Option<Vec<(instances::Slot, MemberId)>> = match st.instances.take() {
            Some(known) => Some(known.into_iter().collect()),
            None => match client.show_map(map) {
                Ok(pairs) => Some(instances::parse_live(&pairs)),
                Err(e) if e.is_unknown_map() => {
                    // The running configuration does not load the map (an operator's
                    // haproxy.cfg whose frontends do not log with it): nothing to keep
                    // in step in this worker, and nothing to hold up what else is sent.
                    // The file is still written for a configuration that loads it.
                    debug!(map = %map, "HAProxy's configuration does not load the instance map: no map commands");
                    return Vec::new();
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the instance map; sending it whole");
                    None
                }
            },
        };
        let groups = instances::commands(map, current, &wanted);
        st.instances = Some(wanted);
        groups
    }

    /// Writes HAProxy's server-state file, which a reload or restart loads.
    pub(super) fn save_server_state(&self, st: &State) -> Result<(), ServiceError> {
        let text = self.haproxy(st).servers_state_text()?;
        store::write_atomic(&self.cfg.haproxy.server_state_path(), text.as_bytes())?;
        Ok(())
    }

    /// Writes the outbox (`[report]` only); a failure is logged and counted, the
    /// reports stay in memory and the next write tries again.
    pub(super) fn save_outbox(&self, st: &State) {
        if self.cfg.report.is_none() {
            return;
        }
        let written = serde_json::to_vec(&st.outbox)
            .map_err(|e| StoreError::Encode(e.to_string()))
            .and_then(|json| store::write_atomic(&self.cfg.haproxy.reports_path(), &json));
        if let Err(e) = written {
            self.metric(|m| m.error(ErrorKind::StateWriteFailed));
            warn!(error = %e, "cannot write the outbox of reports; they stay in memory");
        }
    }

    /// Puts a member's outcome in the outbox for the reactor's inbox (`[report]` only):
    /// under the newest generation that asked for it, when a later change found it
    /// converging.
    pub(super) fn report(&self, st: &mut State, pool: &PoolName, member: &MemberId, f: Reported) {
        let asked = st.asked.remove(&(pool.clone(), member.clone()));
        if self.cfg.report.is_none() || f.status == OutcomeStatus::Pending {
            return;
        }
        let generation = asked.map_or(f.generation, |a| a.max(f.generation));
        let dropped = st.outbox.push(
            infra::MemberReport::new(
                pool.clone(),
                member.clone(),
                generation,
                f.status,
                f.reason,
                f.ms,
            ),
            now_ms(),
        );
        if dropped > 0 {
            self.metric(|m| m.reports_dropped(dropped));
            tracing::error!(dropped, "the outbox is full: the oldest reports were dropped (the reactor's schedule repairs what they said)");
        }
    }

    /// Every file; failures are logged (the next change writes them again).
    pub(super) fn persist(&self, st: &State) {
        if let Err(e) = self.save_table(st).and_then(|()| self.save_map(st)) {
            self.metric(|m| m.error(ErrorKind::StateWriteFailed));
            warn!(error = %e, "cannot write the slot table or the instance map");
        }
        self.save_outbox(st);
        if let Err(e) = self.save_server_state(st) {
            self.metric(|m| m.error(error_kind(&e)));
            warn!(error = %e, "cannot write the server-state file");
        }
    }
}
