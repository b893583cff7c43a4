//! The service's `/metrics` endpoint (agent.toml `[metrics] agent`): a small HTTP/1.1
//! server on its own thread, so Prometheus can scrape the agent without another
//! dependency or process.
//!
//! It answers one connection at a time and closes it (`Connection: close`): a scrape
//! every few seconds needs no more, and nothing a client does can hold more than one
//! thread. Each connection is bounded: its request head is at most [`MAX_HEAD`] bytes
//! and must arrive within [`DEADLINE`], and writing the answer may stall at most that
//! long.
//! Only `GET /metrics` is served (Prometheus' text format, [`crate::metrics`]);
//! another path is a 404, another method on `/metrics` a 405.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::Service;
use crate::metrics::CONTENT_TYPE;

/// The largest request head read (request line and headers).
pub const MAX_HEAD: usize = 8192;
/// How long a client may take to send its request, and the answer to be written.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How often the accept loop looks at the stop flag when no one connects (a connection
/// wakes it at once).
const IDLE: Duration = Duration::from_millis(50);

/// Listens on `addr` (before the service reports itself ready, so a taken port stops
/// the start with a clear error).
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `listener` until the service stops.
pub(super) fn serve(listener: &TcpListener, service: &Service) {
    while !service.stopping() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = handle(stream, service) {
                    debug!(peer = %peer, error = %e, "metrics request ended early");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                super::server::wait_readable(listener, IDLE)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                warn!(error = %e, "metrics: accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Reads one request (bounded in size and time) and writes its answer.
fn handle(mut stream: TcpStream, service: &Service) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let request = loop {
        if let Some(end) = head_end(&head) {
            break parse(&head[..end]);
        }
        if head.len() > MAX_HEAD {
            break Err(Answer::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(Answer::Timeout);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            // The client went away before a whole request.
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Err(Answer::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let bytes = match request {
        Ok(()) => response(200, "OK", CONTENT_TYPE, &service.metrics_text(), &[]),
        Err(a) => a.response(),
    };
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(&bytes)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Where the head ends (the blank line), if it arrived.
fn head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Any answer but the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Not an HTTP/1.x request line.
    BadRequest,
    /// Not `/metrics`.
    NotFound,
    /// `/metrics` with a method other than GET.
    NotAllowed,
    /// The head is larger than [`MAX_HEAD`].
    TooLarge,
    /// The head did not arrive within [`DEADLINE`].
    Timeout,
}

impl Answer {
    fn response(self) -> Vec<u8> {
        let text = "text/plain; charset=utf-8";
        match self {
            Self::BadRequest => response(400, "Bad Request", text, "bad request\n", &[]),
            Self::NotFound => response(
                404,
                "Not Found",
                text,
                "not found: the agent's metrics are at /metrics\n",
                &[],
            ),
            Self::NotAllowed => response(
                405,
                "Method Not Allowed",
                text,
                "only GET /metrics\n",
                &[("Allow", "GET")],
            ),
            Self::TooLarge => response(
                431,
                "Request Header Fields Too Large",
                text,
                "request head too large\n",
                &[],
            ),
            Self::Timeout => response(408, "Request Timeout", text, "request timeout\n", &[]),
        }
    }
}

/// Judges a request head: `Ok` for `GET /metrics` (a query string is ignored).
fn parse(head: &[u8]) -> Result<(), Answer> {
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .ok_or(Answer::BadRequest)?;
    let line = std::str::from_utf8(line).map_err(|_| Answer::BadRequest)?;
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Answer::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(Answer::BadRequest);
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Err(Answer::NotFound);
    }
    if method != "GET" {
        return Err(Answer::NotAllowed);
    }
    Ok(())
}

/// A whole HTTP/1.1 response that closes the connection.
fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(()));
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Ok(()));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(Answer::NotFound));
        assert_eq!(
            parse(b"GET /metricsx HTTP/1.1\r\n\r\n"),
            Err(Answer::NotFound)
        );
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Err(Answer::NotAllowed)
        );
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Err(Answer::BadRequest));
        assert_eq!(
            parse(b"GET /metrics SPDY/3\r\n\r\n"),
            Err(Answer::BadRequest)
        );
        assert_eq!(parse(b"\xff\xfe\r\n\r\n"), Err(Answer::BadRequest));
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
    }

    #[test]
    fn responses_have_a_length_and_close() {
        let r = String::from_utf8(response(200, "OK", CONTENT_TYPE, "a 1\n", &[])).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(r.contains("\r\nContent-Length: 4\r\n"));
        assert!(r.contains("\r\nConnection: close\r\n"));
        assert!(r.ends_with("\r\n\r\na 1\n"));
        let r = String::from_utf8(Answer::NotAllowed.response()).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("\r\nAllow: GET\r\n"),
            "{r}"
        );
    }
}
