//! What the local loop's processes use, measured one way for every program: peak
//! memory ([`peak_rss_kb`], `/proc/<pid>/status`) and CPU time: of a thread of this process
//! (the reactor's, a baseline's control loop: `getrusage`), of a child waited for
//! ([`wait_cpu`]: `wait4`), and of the processes outside this one that do an approach's
//! work (the hosts' agent services and the Run Commands the emulator ran, read from
//! `/proc/<pid>/stat`); [`CpuMark`] takes the latter before the cycles so that only the
//! cycles count.

use harness::Host;

/// The counters at the start of the cycles.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    /// [`services_cpu_s`] of the hosts.
    pub services_s: f64,
    /// [`children_cpu_s`] of the emulator.
    pub commands_s: f64,
}

impl CpuMark {
    /// Both counters now.
    pub fn take(hosts: &[Host], emulator: Option<u32>) -> Self {
        Self {
            services_s: services_cpu_s(hosts),
            commands_s: children_cpu_s(emulator),
        }
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces), that is
/// from field 3 (`state`) on; empty when the process is gone.
fn proc_stat(pid: u32) -> Vec<f64> {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Vec::new();
    };
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect()
}

/// Seconds per clock tick of `/proc/<pid>/stat`'s times.
fn tick_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1.0 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64)
}

/// CPU time (user + system, seconds) the hosts' agent services have used so far, from
/// `/proc/<pid>/stat` (a service that is not running counts 0).
pub fn services_cpu_s(hosts: &[Host]) -> f64 {
    hosts
        .iter()
        .filter_map(|h| h.service_pid())
        .map(|pid| {
            let f = proc_stat(pid);
            // utime, stime: fields 14 and 15.
            (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) * tick_s()
        })
        .sum()
}

/// CPU time (user + system, seconds) of the children `pid` has reaped so far: for the
/// emulator, every Run Command it ran (the document's shell and the `agent` it execs).
pub fn children_cpu_s(pid: Option<u32>) -> f64 {
    let f = pid.map(proc_stat).unwrap_or_default();
    // cutime, cstime: fields 16 and 17.
    (f.get(13).unwrap_or(&0.0) + f.get(14).unwrap_or(&0.0)) * tick_s()
}

/// CPU time (user + system, seconds) of the calling thread.
pub fn thread_cpu_s() -> f64 {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Waits for `child` with `wait4`: its exit code (-1 if it was signalled) and the CPU
/// time it and the children it waited for used, user + system seconds.
pub fn wait_cpu(mut child: std::process::Child) -> (i32, f64) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return (child.wait().ok().and_then(|s| s.code()).unwrap_or(-1), 0.0);
    };
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is valid; wait4 on our own child fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers, our own child.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    if rc != pid {
        return (child.wait().ok().and_then(|s| s.code()).unwrap_or(-1), 0.0);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let cpu = u.ru_utime.tv_sec as f64
        + u.ru_utime.tv_usec as f64 / 1e6
        + u.ru_stime.tv_sec as f64
        + u.ru_stime.tv_usec as f64 / 1e6;
    (code, cpu)
}

/// The peak resident memory of process `pid` (its `VmHWM`, KiB), if it runs.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}
