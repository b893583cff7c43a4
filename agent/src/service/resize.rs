//! Resizing slot blocks: a configuration whose blocks are grown where a pool needs more
//! slots (and shrunk where mostly free), validated with `haproxy -c`, installed, and a
//! hitless reload through the master socket. Runs under the state's lock, so changes
//! arriving meanwhile wait for it and reach the new worker. Called when a pool needs more
//! slots than HAProxy has; mostly-free blocks shrink in the same reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use infra::PoolName;
use tracing::{info, info_span, warn};

use super::{Service, ServiceError, State};
use crate::haproxy::{Command, Op, ReloadAnswer};
use crate::haproxy_cfg::{self, CheckFailure};
use crate::slots::{self, LiveSlots};
use crate::store;

/// How long a reload may take before it is reported as stuck.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the candidate configuration is written for `haproxy -c`.
pub(super) fn candidate_path(config: &Path) -> PathBuf {
    let dir = config.parent().unwrap_or(Path::new("."));
    let name = config
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("haproxy.cfg");
    dir.join(format!(".{name}.agent-new"))
}

/// The file holding the slot blocks, resized.
struct Resized {
    /// Its new text.
    text: String,
    /// `pool cur -> new` for each block that changed.
    sizes: Vec<String>,
    /// Each pool's size after it.
    targets: Vec<(PoolName, u32)>,
    /// HAProxy serves fewer slots than needed although the file has them.
    short: bool,
}

impl Service {
    /// Resizes slot blocks (growing those in `needs` to at least the size given,
    /// shrinking mostly-free ones), validates the configuration and reloads HAProxy.
    pub(super) fn resize_slots(
        &self,
        st: &mut State,
        needs: &BTreeMap<PoolName, u32>,
    ) -> Result<(), ServiceError> {
        let client = self.haproxy(st);
        // Every pool may shrink here, so read every pool's slots (rare: reloads only).
        let states = client.servers_state(None)?;
        let path = self.cfg.haproxy.slots_file();
        let old = std::fs::read_to_string(path).map_err(|source| ServiceError::ConfigFile {
            action: "cannot read",
            path: path.to_path_buf(),
            source,
        })?;
        let resized = self.resized_file(st, &old, &states, needs)?;
        if resized.text == old && !resized.short {
            return Ok(());
        }
        let sizes = resized.sizes.join(", ");
        let span = info_span!("reload", slots = %sizes);
        let _g = span.enter();
        info!("slots {sizes}: validating and reloading HAProxy");
        self.validate(&resized.text)?;
        if !client.has_master() {
            return Err(crate::haproxy::HaproxyError::NoMaster.into());
        }
        // Slots ready but DOWN would come back UP after the reload until their first
        // failed check: park them in maint across it and restore them after.
        let parked = self.parked(&states);
        let park: Vec<Vec<Command>> = parked
            .iter()
            .map(|(p, n)| vec![Command::new(p, *n, Op::Maint)])
            .collect();
        client.batch(&park)?;
        self.save_server_state(st)?;
        let result = self.reload(path, &old, &resized.text);
        if result.is_ok() {
            self.reloaded(st, &resized.targets);
        }
        // The new worker read the map file; what it holds is known again by asking.
        st.instances = None;
        // The parked slots come back (to the new worker, or the old one on failure).
        let restore: Vec<Vec<Command>> = parked
            .iter()
            .map(|(p, n)| {
                vec![
                    Command::new(p, *n, Op::Ready),
                    Command::new(p, *n, Op::HealthDown),
                ]
            })
            .collect();
        if let Err(e) = self.haproxy(st).batch(&restore) {
            warn!(error = %e, "cannot restore the slots parked across the reload");
        }
        result?;
        info!(reloads = st.reloads, "reloaded");
        Ok(())
    }

    /// `text` (the file holding the slot blocks) with each pool's block at the size it
    /// needs: what `needs` asks, the table uses and HAProxy serves, within its limits.
    fn resized_file(
        &self,
        st: &State,
        text: &str,
        states: &[crate::haproxy::ServerState],
        needs: &BTreeMap<PoolName, u32>,
    ) -> Result<Resized, ServiceError> {
        let mut out = Resized {
            text: text.to_string(),
            sizes: Vec::new(),
            targets: Vec::new(),
            short: false,
        };
        for pc in &self.cfg.pools {
            let name = pc.name().as_str();
            let Some((_, cur)) = haproxy_cfg::find_block(&out.text, name) else {
                if needs.contains_key(pc.name()) {
                    return Err(ServiceError::NoSlotLine {
                        path: self.cfg.haproxy.slots_file().to_path_buf(),
                        pool: pc.name().clone(),
                    });
                }
                continue;
            };
            let live = LiveSlots::of(name, states);
            let busy_max = live
                .slots
                .iter()
                .filter(|(_, s)| !s.in_maint())
                .map(|(n, _)| *n)
                .max()
                .unwrap_or(0);
            let used = st.table.used(name);
            let used_max = used.iter().next_back().copied().unwrap_or(0);
            let asked = needs.get(pc.name()).copied().unwrap_or(0);
            let needed = asked.max(used_max).max(busy_max);
            let used_count = u32::try_from(used.len()).unwrap_or(u32::MAX);
            crate::limits::check_growth(pc, cur, needed)?;
            let target = slots::target_size(cur, pc.slots, needed, used_count);
            let target = crate::limits::capped_size(pc, target, needed);
            out.targets.push((pc.name().clone(), target));
            if target != cur {
                out.sizes.push(format!("{name} {cur} -> {target}"));
                if let Some(t) = haproxy_cfg::set_slots(&out.text, name, target) {
                    out.text = t;
                }
            }
            // A reload cut short: the file already has the slots, HAProxy does not.
            out.short |= live.size() < needed.min(target);
        }
        Ok(out)
    }

    /// The pools' slots that are ready but DOWN.
    fn parked(&self, states: &[crate::haproxy::ServerState]) -> Vec<(PoolName, u32)> {
        states
            .iter()
            .filter(|s| !s.in_maint() && !s.running())
            .filter_map(|s| {
                let slot = haproxy_cfg::slot_number(&s.server)?;
                let pool = self
                    .cfg
                    .pools
                    .iter()
                    .find(|p| p.name().as_str() == s.backend)?;
                Some((pool.name().clone(), slot))
            })
            .collect()
    }

    /// After a reload of ours: counted, its worker known as ours (the watch must not
    /// take it for someone else's), its version read, the slot gauges set.
    fn reloaded(&self, st: &mut State, targets: &[(PoolName, u32)]) {
        st.reloads += 1;
        st.reloaded_at = Some(Instant::now());
        st.worker = self
            .client
            .proc_info()
            .ok()
            .and_then(|p| p.current_worker());
        // The new worker may be another binary (a package upgrade reloads into it).
        let client = self.haproxy(st);
        if let Err(e) = self.learn_version(st, &client) {
            warn!(error = %e, "cannot read HAProxy's version after the reload");
        }
        self.metric(|m| {
            for (pool, n) in targets {
                m.set_slots(pool.as_str(), *n);
            }
        });
    }

    /// With `[haproxy] pools_config`: writes the agent's own file of backends when it is
    /// missing or differs from agent.toml (a pool added, options changed), each block at
    /// least as large as it was and as the table uses; checked with haproxy.cfg first.
    /// HAProxy reads it at its next start or reload. Returns whether it was written.
    pub(super) fn write_pools_file(&self) -> Result<bool, ServiceError> {
        let Some(path) = &self.cfg.haproxy.pools_config else {
            return Ok(false);
        };
        let st = self.lock();
        let existing = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ServiceError::ConfigFile {
                    action: "cannot read",
                    path: path.clone(),
                    source,
                })
            }
        };
        let text = haproxy_cfg::pools_file(&self.cfg, existing.as_deref(), &st.table);
        if existing.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        self.validate(&text)?;
        store::write_atomic(path, text.as_bytes())?;
        info!(file = %path.display(), "wrote the pools' backends from agent.toml; HAProxy loads them at its next start or reload");
        Ok(true)
    }

    /// `haproxy -c` on a candidate file beside the configuration.
    pub(super) fn validate(&self, text: &str) -> Result<(), ServiceError> {
        let candidate = candidate_path(self.cfg.haproxy.slots_file());
        let binary = &self.cfg.haproxy.binary;
        // The agent's own file of backends is checked after haproxy.cfg, as HAProxy loads it.
        let before = self
            .cfg
            .haproxy
            .pools_config
            .as_ref()
            .map(|_| self.cfg.haproxy.config.as_path());
        haproxy_cfg::haproxy_check(binary, &candidate, text, before, None).map_err(|e| match e {
            CheckFailure::Write(source) => ServiceError::ConfigFile {
                action: "cannot write",
                path: candidate.clone(),
                source,
            },
            CheckFailure::Run(source) => ServiceError::Check {
                binary: binary.clone(),
                source,
            },
            CheckFailure::Invalid(output) => ServiceError::ConfigInvalid { output },
        })
    }

    /// Installs `new`, reloads through the master, and waits for the new worker; puts
    /// `old` back when the reload does not take.
    fn reload(&self, path: &Path, old: &str, new: &str) -> Result<(), ServiceError> {
        let before = self.client.proc_info()?;
        store::write_atomic(path, new.as_bytes())?;
        let put_back = |reason: String| {
            let _ = store::write_atomic(path, old.as_bytes());
            ServiceError::Reload(reason)
        };
        // 2.8+ answer once the new worker is up or failed (a failure with HAProxy's
        // reasons); 2.6 answers nothing at once: then `show proc` tells. One deadline
        // for both.
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        match self.client.reload(RELOAD_TIMEOUT) {
            Ok(ReloadAnswer::Failed { log }) => {
                // Its [ALERT] lines say why; the [NOTICE] lines around them do not.
                let alerts: Vec<&str> = log.lines().filter(|l| l.contains("[ALERT]")).collect();
                let why = if alerts.is_empty() {
                    log.replace('\n', " | ")
                } else {
                    alerts.join(" | ")
                };
                return Err(put_back(format!(
                    "HAProxy did not load the new configuration: {why}"
                )));
            }
            Ok(ReloadAnswer::Succeeded { .. } | ReloadAnswer::Unconfirmed) => {}
            Err(e) => warn!(error = %e, "no answer to the reload; asking `show proc`"),
        }
        loop {
            if Instant::now() >= deadline {
                return Err(put_back(format!("no new worker within {RELOAD_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
            // The master refuses connections for ~130 ms while it re-executes.
            let Ok(now) = self.client.proc_info() else {
                continue;
            };
            if now.failed > before.failed {
                return Err(put_back(
                    "the master reported `[failed]` for the new configuration".into(),
                ));
            }
            if now.reloads > before.reloads
                && now.current_worker().is_some()
                && now.current_worker() != before.current_worker()
            {
                return Ok(());
            }
        }
    }
}
