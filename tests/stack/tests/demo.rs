//! `demo --quick` end to end, as a process: it must pass its own checks, fail no
//! request, leave no lifecycle action pending, leave no process behind, and leave the
//! run's page, whose series and marks agree with its report; and when a terminal's
//! Ctrl-C interrupts it, stop everything in order.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::process::{alive, processes_matching};
use stack::page::{attr, tags};

#[test]
fn quick_demo_serves_everything_and_cleans_up() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--quick")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_at_most(&mut child, Duration::from_secs(150));
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let log = format!("--- stdout\n{out}\n--- stderr\n{err}");
    let status =
        status.unwrap_or_else(|| panic!("demo --quick did not finish within 150 s\n{log}"));
    assert_nothing_left(&out, &log);

    let stats: serde_json::Value = out
        .lines()
        .find_map(|l| l.strip_prefix("STATS "))
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| panic!("no STATS line\n{log}"));
    assert_eq!(stats["failed_requests"], 0, "requests failed\n{log}");
    assert!(
        stats["requests"].as_u64().unwrap_or(0) > 0,
        "no requests were sent\n{log}"
    );
    assert_eq!(
        stats["lifecycle_pending"], 0,
        "lifecycle actions left pending\n{log}"
    );
    assert!(
        stats["lifecycle_completed"].as_u64().unwrap_or(0) > 0,
        "no lifecycle action completed\n{log}"
    );
    assert_eq!(
        stats["checks_ok"], true,
        "the demo's own checks failed\n{log}"
    );
    assert!(status.success(), "demo exited with {status}\n{log}");
    assert!(out.contains("RESULT ok"), "{log}");
    check_page(&out, &stats, &log);
    remove_run_dir(&out);
}

/// A series' `t:v` samples.
type Samples = Vec<(f64, f64)>;

/// The page the summary names exists, is self-contained, has one polyline per series
/// it claims (capacity, UP per host, requests and failures per second), and its figures
/// agree with the run's report: the totals of the rates are the requests sent and
/// failed, each host's last UP count and the last desired capacity are the group's
/// final members, and there is one mark per lifecycle hook event, per host report, per
/// reload of each host, and for the fault.
fn check_page(out: &str, stats: &serde_json::Value, log: &str) {
    let path = stats["page"]
        .as_str()
        .unwrap_or_else(|| panic!("no page in STATS\n{log}"));
    assert!(
        out.lines()
            .any(|l| l.starts_with("page ") && l.trim_end().ends_with(path)),
        "the summary does not print the page's path\n{log}"
    );
    let html = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the page {path}: {e}\n{log}"));
    for banned in [
        "<script", "src=", "href=", "url(", "@import", "http:", "https:",
    ] {
        assert!(
            !html.contains(banned),
            "{banned} in the page: not self-contained"
        );
    }
    // Series name -> (its tag, its samples).
    let mut series: BTreeMap<&str, (&str, Samples)> = BTreeMap::new();
    for tag in tags(&html, "polyline") {
        let name = attr(tag, "data-series").expect("every polyline names its series");
        let values: Vec<(f64, f64)> = attr(tag, "data-values")
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| {
                let (t, v) = p.split_once(':').expect("t:v");
                (t.parse().expect("t"), v.parse().expect("v"))
            })
            .collect();
        assert!(
            values.windows(2).all(|w| w[0].0 <= w[1].0),
            "{name}: samples out of time order"
        );
        assert!(
            series.insert(name, (tag, values)).is_none(),
            "{name} drawn twice"
        );
    }
    let hosts: Vec<String> = stats["reloads_by_host"]
        .as_object()
        .expect("reloads_by_host")
        .keys()
        .cloned()
        .collect();
    let mut want: Vec<String> = ["desired", "instances", "requests_per_s", "failures_per_s"]
        .map(String::from)
        .to_vec();
    want.extend(hosts.iter().map(|h| format!("up-{h}")));
    want.sort();
    assert_eq!(
        series.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
        want
    );
    for (name, (_, values)) in &series {
        assert!(!values.is_empty(), "{name} has no samples");
    }
    let total = |name: &str| attr(series[name].0, "data-total").and_then(|t| t.parse::<u64>().ok());
    assert_eq!(total("requests_per_s"), stats["requests"].as_u64());
    assert_eq!(total("failures_per_s"), stats["failed_requests"].as_u64());
    let last = |name: &str| series[name].1.last().map(|p| p.1);
    let members = stats["final_members"].as_u64().map(|n| n as f64);
    assert_eq!(last("desired"), members, "the last desired capacity");
    for h in &hosts {
        assert_eq!(
            last(&format!("up-{h}")),
            members,
            "members UP on {h} at the end"
        );
    }
    let max_up = series[format!("up-{}", hosts[0]).as_str()]
        .1
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max);
    assert!(
        max_up > members.unwrap_or(0.0),
        "the scale-out shows: {max_up}"
    );

    let marks: Vec<&str> = tags(&html, "line")
        .into_iter()
        .filter(|t| attr(t, "class") == Some("mark"))
        .filter_map(|t| attr(t, "data-mark"))
        .collect();
    let count = |kind: &str| marks.iter().filter(|m| **m == kind).count() as u64;
    assert_eq!(Some(count("launch-hook")), stats["launch_hooks"].as_u64());
    assert_eq!(
        Some(count("terminate-hook")),
        stats["terminate_hooks"].as_u64()
    );
    for h in &hosts {
        assert_eq!(
            Some(count(&format!("reload-{h}"))),
            stats["reloads_by_host"][h].as_u64(),
            "reload marks of {h}"
        );
    }
    // One mark per report message the reactor got from a host; the actions were
    // completed from those reports.
    assert_eq!(Some(count("report")), stats["host_reports"].as_u64());
    assert!(
        stats["reports_applied"].as_u64().unwrap_or(0) > 0,
        "no host report was applied: {stats}"
    );
    assert_eq!(count("fault"), 1);
    assert!(count("scale") > 0);
}

/// The run directory (kept for its page) goes once the test read it.
fn remove_run_dir(out: &str) {
    if let Some(dir) = out.lines().find_map(|l| l.strip_prefix("RUN_DIR ")) {
        if dir.contains("haproxy-asg-demo-") {
            let _ = std::fs::remove_dir_all(dir.trim());
        }
    }
}

/// A terminal's Ctrl-C sends SIGINT to the whole foreground process group. The demo must
/// stop in order (no error from a dead emulator or HAProxy under it), report itself
/// interrupted, and leave nothing running.
#[test]
fn ctrl_c_on_a_terminal_stops_the_demo_and_everything_it_started() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::sync::mpsc;

    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--quick")
        // Its own group, as a shell runs a foreground job.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let pgid = i32::try_from(child.id()).expect("pid");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let out = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Wait until the scenario runs under load, then press Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut under_way = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("scenario ") => {
                under_way = true;
                break;
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // SAFETY: kill(2) on the process group we created.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let status = wait_at_most(&mut child, Duration::from_secs(90));
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let log = format!("--- stdout\n{out}\n--- stderr\n{err}");
    assert!(under_way, "the scenario never started\n{log}");
    let status = status.unwrap_or_else(|| panic!("demo did not stop within 90 s of Ctrl-C\n{log}"));
    assert_eq!(
        status.code(),
        Some(130),
        "{status:?} (signal {:?})\n{log}",
        status.signal()
    );
    assert!(out.contains("RESULT interrupted"), "{log}");
    assert!(
        out.contains("cleanup  every process stopped"),
        "the demo's own cleanup check did not pass\n{log}"
    );
    assert!(
        !err.contains("refused") && !err.contains("demo: "),
        "something under the demo died before it was stopped\n{log}"
    );
    assert_nothing_left(&out, &log);
    remove_run_dir(&out);
}

/// The child's exit status, or `None` (after killing it) when it runs longer than `max`.
fn wait_at_most(
    child: &mut std::process::Child,
    max: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + max;
    loop {
        if let Some(s) = child.try_wait().expect("wait demo") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo's processes are all gone: everything it started carries the run
/// directory's name on its command line, except the emulator, whose pid it printed.
fn assert_nothing_left(out: &str, log: &str) {
    let run_dir = out
        .lines()
        .find_map(|l| l.strip_prefix("RUN_DIR "))
        .unwrap_or_else(|| panic!("no RUN_DIR line\n{log}"));
    let tag = run_dir.rsplit('/').next().unwrap_or(run_dir).to_string();
    let left = processes_matching(&tag);
    assert!(left.is_empty(), "processes left behind: {left:?}\n{log}");
    for pid in out.lines().filter_map(|l| l.strip_prefix("CHILD_PID ")) {
        let pid: u32 = pid.trim().parse().expect("pid");
        assert!(
            pid == 0 || !alive(pid),
            "the emulator (pid {pid}) is still running\n{log}"
        );
    }
}
