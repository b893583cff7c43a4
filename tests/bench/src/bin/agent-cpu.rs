//! `agent-cpu LOG AGENT ARGS...`: runs the agent with this process's stdio, appends a
//! line to LOG (its CPU time, user + system seconds from `wait4`, and when it started
//! and ended, unix ms), and exits with its code.
//!
//! `e2e-bench` has Run Command run the agent through this on its proxy hosts, so the CPU
//! of every `agent apply` is counted exactly. It is its own small program (it links
//! next to nothing) because it sits on the measured path of every change: starting the
//! benchmark's own 20 MB binary there cost a few milliseconds per command.

use std::io::Write as _;
use std::process::{Command, ExitCode};

use harness::unix_ms;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [log, program, args @ ..] = argv.as_slice() else {
        eprintln!("usage: agent-cpu LOG AGENT [ARGS...]");
        return ExitCode::from(2);
    };
    let started_ms = unix_ms();
    let child = match Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-cpu: cannot start {program}: {e}");
            return ExitCode::from(2);
        }
    };
    let (code, cpu) = bench::wait_cpu(child);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        // One write per line: agents of both hosts finish at the same time, and
        // `writeln!` may split a line into several writes that would interleave.
        let line = format!("{cpu:.6} {started_ms} {}\n", unix_ms());
        let _ = f.write_all(line.as_bytes());
    }
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}
