//! SIGHUP (the unit's `ExecReload`): agent.toml read again. A file that does not read,
//! or that changes what the running process holds open (its state directory and lock,
//! its control socket, its metrics listener), is refused with a log line naming what to
//! do, and the service goes on as it was. Otherwise the service restarts in place with
//! the new configuration ([`super::server::run`]): limits, timeouts, server options,
//! pools added or removed, the groups to sync, HAProxy's sockets and files, reporting,
//! and the traffic policy: the host's `zone`, a pool's `zone_affinity` and
//! `min_zone_members`, `[aws] weights` (the restarted service's resume sends every
//! member's weight again; the zones taken away are in the slot table and stay away).

use std::path::Path;

use tracing::{error, info};

use crate::config::AgentConfig;

/// What in `new` differs from `old`, by agent.toml's names.
pub fn changed(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    let sections = [
        ("host", old.host != new.host),
        ("zone", old.zone != new.zone),
        ("[haproxy]", old.haproxy != new.haproxy),
        ("[service]", old.service != new.service),
        ("[render]", old.render != new.render),
        ("[[pool]]", old.pools != new.pools),
        (
            "[aws]",
            old.aws_groups != new.aws_groups
                || old.aws_weights != new.aws_weights
                || old.sync_interval != new.sync_interval,
        ),
        (
            "member_networks",
            old.member_networks != new.member_networks,
        ),
        ("[metrics]", old.metrics != new.metrics),
        ("[report]", old.report != new.report),
    ];
    sections
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

/// What in `new` cannot change while the process runs: it holds them open.
pub fn fixed(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    let keys = [
        (
            "[haproxy] state_dir",
            old.haproxy.state_dir != new.haproxy.state_dir,
        ),
        (
            "[service] control_socket",
            old.service.control_socket != new.service.control_socket,
        ),
        ("[metrics] agent", old.metrics.agent != new.metrics.agent),
    ];
    keys.into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

/// Reads `path` again: the configuration to restart with, or `None` (logged) when it
/// does not read, changes nothing, or changes what cannot change in place.
pub fn reread(path: &Path, old: &AgentConfig) -> Option<AgentConfig> {
    let file = path.display().to_string();
    let new = match AgentConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!(file = %file, error = %e, "SIGHUP: {file} does not read, so nothing changed: the service goes on with the configuration it started with; fix the file and send SIGHUP again (systemctl reload haproxy-asg-agent)");
            return None;
        }
    };
    let fixed = fixed(old, &new);
    if !fixed.is_empty() {
        error!(file = %file, keys = %fixed.join(", "), "SIGHUP: {} changed in {file}, which the running service holds open, so nothing changed; restart it to use them (systemctl restart haproxy-asg-agent)", fixed.join(", "));
        return None;
    }
    let changed = changed(old, &new);
    if changed.is_empty() {
        info!(file = %file, "SIGHUP: {file} re-read; nothing changed");
        return None;
    }
    info!(file = %file, changed = %changed.join(", "), "SIGHUP: {file} re-read; {} changed", changed.join(", "));
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra_pool: &str, state_dir: &str) -> AgentConfig {
        AgentConfig::parse(&format!(
            "[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"\nadmin_socket = \"/run/admin.sock\"\nstate_dir = \"{state_dir}\"\n[[pool]]\nname = \"web\"\nport = 8080\n{extra_pool}"
        ))
        .unwrap()
    }

    #[test]
    fn what_changed_is_named_and_what_is_held_open_is_refused() {
        let old = cfg("", "/var/lib/asg");
        assert!(changed(&old, &old.clone()).is_empty());
        let more = cfg("max_members = 10\n", "/var/lib/asg");
        assert_eq!(changed(&old, &more), vec!["[[pool]]"]);
        assert!(fixed(&old, &more).is_empty());
        let prefer = "zone_affinity = \"prefer\"\nmin_zone_members = 2\n";
        let zoned = AgentConfig::parse(&format!(
            "zone = \"zone-a\"\n[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"\nadmin_socket = \"/run/admin.sock\"\nstate_dir = \"/var/lib/asg\"\n[[pool]]\nname = \"web\"\nport = 8080\n{prefer}"
        ))
        .unwrap();
        assert_eq!(changed(&old, &zoned), vec!["zone", "[[pool]]"]);
        assert!(
            fixed(&old, &zoned).is_empty(),
            "the traffic policy changes in place"
        );
        let moved = cfg("", "/var/lib/other");
        assert!(fixed(&old, &moved).contains(&"[haproxy] state_dir"));
    }
}
