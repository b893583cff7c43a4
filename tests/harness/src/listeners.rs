//! Many loopback HTTP listeners in one process: a backend for each of hundreds of
//! instances (one [`crate::Backend`] process each would cost a process per instance).
//! Every listener answers every request `200 OK` with a short body naming its address,
//! which is all a health check and a load generator need.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// The listeners and their threads.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
}

impl Listeners {
    /// One listener per address of `addrs` (loopback addresses only).
    pub fn start(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for a in addrs {
            anyhow::ensure!(a.ip().is_loopback(), "{a} is not a loopback address");
            // Blocking accepts: an idle listener costs nothing; stop() wakes each one.
            let l = TcpListener::bind(a).with_context(|| format!("listening on {a}"))?;
            let (stop, served) = (stop.clone(), served.clone());
            let body = format!("{a}\n");
            threads.push(
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .name("listener".into())
                    .spawn(move || serve(&l, &body, &stop, &served))?,
            );
        }
        Ok(Self {
            stop,
            served,
            threads,
            addrs: addrs.to_vec(),
        })
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops every listener.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for a in &self.addrs {
            let _ = std::net::TcpStream::connect_timeout(a, Duration::from_millis(200));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(l: &TcpListener, body: &str, stop: &AtomicBool, served: &AtomicU64) {
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                // Read the request head (a check's or a client's), then answer.
                let mut buf = [0u8; 2048];
                let mut head = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(buf.get(..n).unwrap_or_default());
                    if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 16 * 1024 {
                        break;
                    }
                }
                if !head.is_empty() {
                    let _ = s.write_all(answer.as_bytes());
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
