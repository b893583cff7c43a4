//! `demo --quick` end to end, as a process: it must pass its own checks, fail no
//! request, leave no lifecycle action pending, and leave no process behind; and when a
//! terminal's Ctrl-C interrupts it, stop everything in order.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::process::{alive, processes_matching};

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
