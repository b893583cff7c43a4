//! `backend`: a small real HTTP server standing in for an instance of a backend group.
//!
//! `GET /` answers its name; `GET /slow?ms=N` answers after N ms (at most 60 s);
//! `GET /stream?ms=N` streams its answer over N ms (at most an hour), a byte a second,
//! as a long download or a websocket would, so no idle timeout cuts it; `GET /healthz` answers
//! 200 (or 503 with `--unhealthy`); `GET /__stats` answers `{"requests":N,"first_ms":T}`:
//! the number of requests served other than health checks and stats, and the unix time
//! in ms of the first of them (`null` before any). It prints
//! `listening ADDR` on stdout once it accepts connections, and serves until killed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

/// A real HTTP backend for tests and the demo.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The name it answers with.
    #[arg(long, default_value = "backend")]
    name: String,
    /// Fail health checks (`/healthz` answers 503) while still serving `/`.
    #[arg(long)]
    unhealthy: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let served = Arc::new(Served::default());
    let name: Arc<str> = args.name.into();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let served = served.clone();
        let name = name.clone();
        let unhealthy = args.unhealthy;
        std::thread::spawn(move || {
            let _ = serve(conn, &name, unhealthy, &served);
        });
    }
    Ok(())
}

/// Requests served (health checks and stats excluded) and when the first one came.
#[derive(Default)]
struct Served {
    requests: AtomicU64,
    /// Unix ms of the first request; 0 before any.
    first_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Answers over `ms`: the headers at once, then one `.` a second, then the name.
fn stream(out: &mut TcpStream, name: &str, ms: u64) -> std::io::Result<()> {
    let ticks = ms / 1000;
    let rest = Duration::from_millis(ms % 1000);
    let len = usize::try_from(ticks).unwrap_or(usize::MAX) + name.len() + 1;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n"
    )?;
    out.flush()?;
    for _ in 0..ticks {
        std::thread::sleep(Duration::from_secs(1));
        out.write_all(b".")?;
        out.flush()?;
    }
    std::thread::sleep(rest);
    writeln!(out, "{name}")?;
    out.flush()
}

fn serve(conn: TcpStream, name: &str, unhealthy: bool, served: &Served) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = line.contains("HTTP/1.0");
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let (status, body) = if target == "/healthz" {
            if unhealthy {
                ("503 Service Unavailable", "unhealthy\n".to_string())
            } else {
                ("200 OK", "ok\n".to_string())
            }
        } else if target == "/__stats" {
            let first = match served.first_ms.load(Ordering::SeqCst) {
                0 => "null".to_string(),
                t => t.to_string(),
            };
            (
                "200 OK",
                format!(
                    "{{\"requests\":{},\"first_ms\":{first}}}\n",
                    served.requests.load(Ordering::SeqCst)
                ),
            )
        } else {
            let _ =
                served
                    .first_ms
                    .compare_exchange(0, unix_ms(), Ordering::SeqCst, Ordering::SeqCst);
            served.requests.fetch_add(1, Ordering::SeqCst);
            if let Some(ms) = target
                .strip_prefix("/stream?ms=")
                .and_then(|v| v.parse::<u64>().ok())
            {
                stream(&mut out, name, ms.min(3_600_000))?;
                if close {
                    return Ok(());
                }
                continue;
            }
            if let Some(ms) = target
                .strip_prefix("/slow?ms=")
                .and_then(|v| v.parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_millis(ms.min(60_000)));
            }
            ("200 OK", format!("{name}\n"))
        };
        let conn_hdr = if close { "close" } else { "keep-alive" };
        // One write per response: several small writes meet Nagle + delayed ACK (40 ms).
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn_hdr}\r\n\r\n{body}",
            body.len()
        );
        out.write_all(response.as_bytes())?;
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}
