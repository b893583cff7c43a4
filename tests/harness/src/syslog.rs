//! A syslog receiver for HAProxy's log lines: every datagram sent to a UDP socket on
//! 127.0.0.1, kept as text. Point agent.toml's `[render] log` at [`Syslog::addr`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{http, wait_for};

/// The receiver; its thread stops when dropped.
pub struct Syslog {
    /// Where it listens (UDP, loopback).
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syslog {
    /// Listens on a free UDP port of 127.0.0.1.
    pub fn start() -> std::io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = sock.local_addr()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                    l.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                }
            }
        });
        Ok(Self {
            addr,
            lines,
            stop,
            thread: Some(thread),
        })
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The request lines logged for `GET /?n=<tag>-...` (see [`tagged_requests`]).
    pub fn requests(&self, tag: &str) -> Vec<String> {
        let needle = format!("\"GET /?n={tag}-");
        self.lines()
            .into_iter()
            .filter(|l| l.contains(&needle))
            .collect()
    }

    /// Waits (bounded by `timeout`) until at least `n` request lines tagged `tag`
    /// arrived; them, or `None`.
    pub fn wait_requests(&self, tag: &str, n: usize, timeout: Duration) -> Option<Vec<String>> {
        wait_for(timeout, || {
            let l = self.requests(tag);
            (l.len() >= n).then_some(l)
        })
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `n` requests `GET /?n=<tag>-<i>` to `frontend`, each expected to answer 200,
/// and returns which backend (its name, what it answers) served each `<tag>-<i>`.
pub fn tagged_requests(
    frontend: SocketAddr,
    tag: &str,
    n: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let path = format!("/?n={tag}-{i}");
        let r = http::get(frontend, &path, Duration::from_secs(5))?;
        anyhow::ensure!(r.status == 200, "{path} answered {}: {}", r.status, r.body);
        out.insert(format!("{tag}-{i}"), r.body.trim().to_string());
    }
    Ok(out)
}
