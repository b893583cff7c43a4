//! The reactor's metrics as CloudWatch Embedded Metric Format (EMF) log lines: one JSON
//! object per line on stdout, which CloudWatch Logs turns into metrics without an API
//! call from the function. Pure: [`emf_lines`] builds the lines from what an invocation
//! did.
//!
//! Namespace [`NAMESPACE`]; every metric has the dimension `Function` (the Lambda's
//! name), some a second one:
//!
//! | Metric | Unit | Dimensions | When |
//! |---|---|---|---|
//! | `Events` | Count | Function, Kind | every invocation: its inputs by kind (`-error` suffix when the input failed and was given back to the queue) |
//! | `InvocationDuration` | Milliseconds | Function, Kind | every invocation (Kind: its inputs' one kind, or `mixed`) |
//! | `EventToDispatch` | Milliseconds | Function, Kind | per change sent for events that carry a `time` |
//! | `LifecycleDecisions` | Count | Function, Result | per lifecycle action decided (CONTINUE, ABANDON) or sent and waiting (WAIT) |
//! | `ReportsApplied` | Count | Function | member reports of the proxies recorded in the ledger |
//! | `ForgedReports` | Count | Function | inbox messages refused: a report not sent by the host it names, an event body sent by a proxy |
//! | `HostsDropped` | Count | Function | hosts dropped from an action's quorum (silent past `HOST_REPORT_TIMEOUT_S`, or out of service) |
//! | `TagsRefused` | Count | Function | group tags not followed: a `haproxy:pool` or `haproxy:port` naming a pool or port the configuration does not allow that group (tags only narrow) |
//! | `SetUnhealthy` | Count | Function | members set unhealthy in Auto Scaling because a quorum of proxies saw them DOWN for `UNHEALTHY_AFTER_S` (`PROXY_HEALTH_GROUPS`) |
//! | `UnhealthyHeld` | Count | Function | members the proxies see down that were not set unhealthy: their group already has `MAX_UNHEALTHY_FRACTION` of its members set unhealthy |
//! | `PendingActions` | Count | Function | the schedule: lifecycle actions still open |
//! | `PendingActionMaxAge` | Seconds | Function | the schedule: the oldest one's age |
//!
//! ```
//! use reactor::metrics::emf_lines;
//! use reactor::summary::Summary;
//!
//! let mut summary = Summary::default();
//! summary.inputs.insert("launch-lifecycle-action".into(), 1);
//! let lines = emf_lines("haproxy-asg", &summary, true, 12, 1_700_000_000_000);
//! let first: serde_json::Value = serde_json::from_str(&lines[0])?;
//! assert_eq!(first["Events"], 1.0);
//! assert_eq!(first["Kind"], "launch-lifecycle-action");
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::summary::Summary;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "HaproxyAsg";

/// One EMF line: the values of `metrics` (name, unit, value) under `dimensions`.
fn line(timestamp_ms: u64, dimensions: &[(&str, &str)], metrics: &[(&str, &str, f64)]) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), Value::from(*v));
    }
    for (name, _, v) in metrics {
        root.insert((*name).into(), json!(v));
    }
    Value::Object(root).to_string()
}

/// The EMF lines for one invocation of function `function` that did `summary` (and
/// succeeded when `ok`) in `duration_ms`, stamped `now_ms`.
pub fn emf_lines(
    function: &str,
    summary: &Summary,
    ok: bool,
    duration_ms: u64,
    now_ms: u64,
) -> Vec<String> {
    let suffix = |kind: &str| {
        if ok && summary.failed.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}-error")
        }
    };
    let mut out = Vec::new();
    for (kind, n) in &summary.inputs {
        out.push(line(
            now_ms,
            &[("Function", function), ("Kind", &suffix(kind))],
            &[("Events", "Count", *n as f64)],
        ));
    }
    out.push(line(
        now_ms,
        &[("Function", function), ("Kind", &summary.kind())],
        &[("InvocationDuration", "Milliseconds", duration_ms as f64)],
    ));
    for c in &summary.changes {
        if let Some(event) = c.event_ms {
            out.push(line(
                now_ms,
                &[("Function", function), ("Kind", &c.kind)],
                &[(
                    "EventToDispatch",
                    "Milliseconds",
                    c.sent_ms.saturating_sub(event) as f64,
                )],
            ));
        }
    }
    let mut decisions: BTreeMap<&str, f64> = BTreeMap::new();
    for a in &summary.actions {
        // A decision that Auto Scaling no longer wanted (completed elsewhere) is not one.
        if a.decision == "WAIT" || a.completed {
            *decisions.entry(a.decision.as_str()).or_default() += 1.0;
        }
    }
    for (result, n) in decisions {
        out.push(line(
            now_ms,
            &[("Function", function), ("Result", result)],
            &[("LifecycleDecisions", "Count", n)],
        ));
    }
    let r = &summary.reports;
    let mut function_only = Vec::new();
    for (name, n) in [
        ("ReportsApplied", r.applied),
        ("ForgedReports", r.forged),
        ("HostsDropped", r.hosts_dropped.len()),
        ("TagsRefused", summary.tags_refused.len()),
        ("SetUnhealthy", summary.unhealthy.len()),
        ("UnhealthyHeld", summary.unhealthy_held.len()),
    ] {
        if n > 0 {
            function_only.push((name, "Count", n as f64));
        }
    }
    if let Some(p) = summary.pending {
        function_only.push(("PendingActions", "Count", p.actions as f64));
        function_only.push(("PendingActionMaxAge", "Seconds", p.max_age_s as f64));
    }
    if !function_only.is_empty() {
        out.push(line(now_ms, &[("Function", function)], &function_only));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{ActionSummary, PendingSummary, SentChange};
    use infra::GroupName;

    fn action(decision: &str, completed: bool) -> ActionSummary {
        ActionSummary {
            group: GroupName::new("web-asg").unwrap(),
            instance: "i-1".into(),
            transition: "launch".into(),
            decision: decision.into(),
            reason: String::new(),
            completed,
        }
    }

    /// Checks a line against the EMF specification: the directive names the namespace,
    /// one dimension set whose keys are top-level strings, and metrics whose names are
    /// top-level numbers. Returns the metric names.
    fn check_emf(line: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(line).expect("one JSON object");
        let aws = &v["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some(), "{line}");
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        let dims = directive["Dimensions"][0]
            .as_array()
            .expect("a dimension set");
        assert!(dims.iter().any(|d| d == "Function"), "{line}");
        for d in dims {
            assert!(
                v[d.as_str().unwrap()].is_string(),
                "dimension {d} in {line}"
            );
        }
        directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().expect("name").to_string();
                assert!(m["Unit"].is_string());
                assert!(v[&name].is_number(), "{name} in {line}");
                name
            })
            .collect()
    }

    #[test]
    fn every_line_is_emf_and_carries_the_documented_metrics() {
        let mut summary = Summary {
            actions: vec![
                action("CONTINUE", true),
                action("CONTINUE", true),
                action("ABANDON", true),
                action("CONTINUE", false),
                action("WAIT", false),
            ],
            changes: vec![SentChange {
                label: "web-asg".into(),
                generation: 1,
                commands: vec!["c".into()],
                hosts: 2,
                change: infra::Change::new(1, Vec::new()),
                sent_ms: 1_250,
                event_ms: Some(1_000),
                kind: "launch-lifecycle-action".into(),
            }],
            pending: Some(PendingSummary {
                actions: 3,
                max_age_s: 42,
            }),
            ..Summary::default()
        };
        summary.inputs.insert("host-report".into(), 7);
        summary.inputs.insert("launch-lifecycle-action".into(), 2);
        summary.reports.applied = 9;
        summary.reports.forged = 1;
        summary
            .reports
            .hosts_dropped
            .push("i-p2 launch i-1 (silent)".into());
        summary
            .tags_refused
            .push("group g: tag haproxy:pool=\"x\" refused".into());
        summary.unhealthy.push("i-1 in web-asg".into());
        summary.unhealthy_held.push("i-2 in web-asg".into());
        let lines = emf_lines("haproxy-asg", &summary, true, 17, 5_000);
        let names: Vec<String> = lines.iter().flat_map(|l| check_emf(l)).collect();
        for m in [
            "Events",
            "InvocationDuration",
            "EventToDispatch",
            "LifecycleDecisions",
            "ReportsApplied",
            "ForgedReports",
            "HostsDropped",
            "TagsRefused",
            "SetUnhealthy",
            "UnhealthyHeld",
            "PendingActions",
            "PendingActionMaxAge",
        ] {
            assert!(names.iter().any(|n| n == m), "{m} missing from {lines:#?}");
        }
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let find = |metric: &str| parsed.iter().find(|p| p.get(metric).is_some()).unwrap();
        assert_eq!(find("EventToDispatch")["EventToDispatch"], 250.0);
        assert_eq!(find("EventToDispatch")["Kind"], "launch-lifecycle-action");
        assert_eq!(find("InvocationDuration")["Kind"], "mixed");
        let events: Vec<(String, f64)> = parsed
            .iter()
            .filter_map(|p| Some((p["Kind"].as_str()?.to_string(), p.get("Events")?.as_f64()?)))
            .collect();
        assert_eq!(
            events,
            [
                ("host-report".into(), 7.0),
                ("launch-lifecycle-action".into(), 2.0)
            ]
        );
        let decided = |r: &str| {
            parsed
                .iter()
                .find(|p| p["Result"] == r)
                .map(|p| p["LifecycleDecisions"].as_f64().unwrap())
        };
        assert_eq!(decided("CONTINUE"), Some(2.0), "one was no longer pending");
        assert_eq!(decided("ABANDON"), Some(1.0));
        assert_eq!(decided("WAIT"), Some(1.0));
        let last = parsed.last().unwrap();
        assert_eq!(last["HostsDropped"], 1.0);
        assert_eq!(last["ForgedReports"], 1.0);
        assert_eq!(last["TagsRefused"], 1.0);
        assert_eq!(last["ReportsApplied"], 9.0);
        assert_eq!(last["PendingActionMaxAge"], 42.0);
    }

    #[test]
    fn inputs_given_back_are_counted_under_their_kind_with_an_error_suffix() {
        let mut summary = Summary::default();
        summary.inputs.insert("reconcile".into(), 1);
        summary.failed.push("m-1".into());
        let lines = emf_lines("f", &summary, true, 3, 5);
        assert_eq!(lines.len(), 2);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["Kind"], "reconcile-error");
        let v: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(
            (v["Kind"].as_str(), v["InvocationDuration"].as_f64()),
            (Some("reconcile"), Some(3.0))
        );
    }
}
