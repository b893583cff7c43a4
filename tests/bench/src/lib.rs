//! The benchmarks are the binaries in `src/bin`; this library holds what two of them
//! share: counting a child process's CPU time.
//!
//! ```no_run
//! let child = std::process::Command::new("true").spawn().expect("spawn");
//! let (code, cpu_s) = bench::wait_cpu(child);
//! println!("exit {code}, {cpu_s:.3} s of CPU");
//! ```

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
