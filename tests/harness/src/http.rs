//! A minimal HTTP/1.1 client for loopback, bounded in time: one request per connection
//! for the backends and HAProxy's frontends, connections kept open between requests
//! ([`KeepAlive`]) for the emulator's APIs, as the AWS SDKs keep theirs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body text (de-chunked).
    pub body: String,
}

/// `GET path` from `addr` with `Connection: close`, failing after `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Response> {
    request(addr, "GET", path, &[], "", timeout)
}

/// One request to `addr` (`host:port` or a socket address): `headers` are sent as given,
/// `body` with its Content-Length. The answer is read up to its Content-Length when it
/// has one (some servers close the connection only a few milliseconds after the
/// answer), otherwise to the end of the connection.
pub fn request(
    addr: impl ToSocketAddrs + std::fmt::Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    exchange(addr, &[], method, path, headers, body, timeout)
}

/// `GET path` from `addr` as a load balancer speaking proxy protocol v2 sends it: the
/// binary PROXY header saying the connection comes from `client` (TCP over IPv4), then
/// the request. What a frontend bound with `accept-proxy` expects from an NLB.
pub fn get_behind_proxy(
    addr: SocketAddr,
    client: std::net::SocketAddrV4,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    let SocketAddr::V4(dst) = addr else {
        return Err(std::io::Error::other(format!(
            "{addr}: only IPv4 destinations are written here"
        )));
    };
    exchange(
        addr,
        &proxy_v2_header(client, dst),
        "GET",
        path,
        &[],
        "",
        timeout,
    )
}

/// The proxy protocol v2 header of a TCP/IPv4 connection from `src` to `dst`.
pub fn proxy_v2_header(src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY command
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src.ip().octets());
    h.extend_from_slice(&dst.ip().octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

fn exchange(
    addr: impl ToSocketAddrs + std::fmt::Display,
    preamble: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut s = connect(&addr, timeout)?;
    // One write: split writes stall on Nagle + delayed ACK (~40 ms per request).
    let mut bytes = preamble.to_vec();
    bytes.extend_from_slice(&request_bytes(&addr, method, path, headers, body, true));
    s.write_all(&bytes)?;
    let (raw, _) = read_answer(&mut s)?;
    abort_on_close(&s);
    parse_answer(&raw)
}

fn connect(
    addr: &(impl ToSocketAddrs + std::fmt::Display),
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} does not resolve")))?;
    let s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The request as sent: `close` asks the server to close the connection after it.
fn request_bytes(
    host: &impl std::fmt::Display,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    close: bool,
) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

fn parse_answer(raw: &[u8]) -> std::io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::other(format!("no HTTP status in {:?}", head.lines().next()))
        })?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(Response { status, body })
}

/// Connections to one server kept open between requests, as an AWS SDK's pool keeps
/// them: a request takes an idle one (or opens one), and gives it back once its answer
/// is read, unless the server said it closes it or the answer had no length to end it.
pub struct KeepAlive {
    addr: String,
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

/// An idle connection older than this is not used again: the emulator closes its idle
/// connections after two minutes (`tests/emulator/keepalive.py`).
const KEEP_IDLE: Duration = Duration::from_secs(60);

impl KeepAlive {
    /// A pool for the server at `addr` (`host:port`); no connection is opened yet.
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// [`request`] over a kept connection. A kept connection the server closed
    /// meanwhile (no byte of an answer) is dropped and the request sent once more on a
    /// new one: the server closes only idle connections, so it never read the request.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        timeout: Duration,
    ) -> std::io::Result<Response> {
        let bytes = request_bytes(&self.addr, method, path, headers, body, false);
        if let Some(mut s) = self.take() {
            let kept = s.set_read_timeout(Some(timeout)).and_then(|()| {
                s.set_write_timeout(Some(timeout))?;
                s.write_all(&bytes)?;
                read_answer(&mut s)
            });
            match kept {
                Ok((raw, reusable)) if !raw.is_empty() => return self.finish(s, &raw, reusable),
                Ok(_) => {}
                Err(e) if is_closed(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut s = connect(&self.addr.as_str(), timeout)?;
        s.write_all(&bytes)?;
        let (raw, reusable) = read_answer(&mut s)?;
        self.finish(s, &raw, reusable)
    }

    fn take(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((s, since)) = idle.pop() {
            if since.elapsed() < KEEP_IDLE {
                return Some(s);
            }
        }
        None
    }

    fn finish(&self, s: TcpStream, raw: &[u8], reusable: bool) -> std::io::Result<Response> {
        let answer = parse_answer(raw)?;
        if reusable {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push((s, Instant::now()));
        } else {
            abort_on_close(&s);
        }
        Ok(answer)
    }
}

/// Whether `e` says the peer closed the connection (a kept connection gone stale).
fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

/// Makes dropping `s` reset the connection instead of closing it: the answer is read,
/// and a client that closes first keeps the connection in TIME_WAIT for a minute. At a
/// few hundred requests a second (a hundred stand-in proxies, the pollers) those use up
/// the ephemeral ports to the emulator and `connect` fails with EAGAIN.
fn abort_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        // Only the port's reuse is at stake; the answer is read.
        eprintln!(
            "warning: SO_LINGER on a client socket: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The answer's bytes, and whether the connection may carry another request: the
/// answer ended at its Content-Length and the server did not say it closes.
fn read_answer(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, bool)> {
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok((raw, false));
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
        let Some(length) = length else {
            s.read_to_end(&mut raw)?;
            return Ok((raw, false));
        };
        while raw.len() < end + 4 + length {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((raw, false));
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let closes = header(&head, "connection") == Some("close");
        let exact = raw.len() == end + 4 + length;
        return Ok((raw, !closes && exact));
    }
}

/// The value of the first header `name` (lower case) in `head` (lower-cased), trimmed.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// How a test server answers on each connection it accepts.
    #[derive(Clone, Copy)]
    enum Serve {
        /// Every request of the connection, with its length, keeping it open.
        KeepOpen,
        /// One request, then closes the connection without saying so.
        OneThenClose,
        /// One request, answered with `Connection: close`.
        SaysClose,
    }

    /// A loopback server answering each request with its own body; counts the
    /// connections it accepted.
    fn server(serve: Serve) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || answer_each(stream, serve));
            }
        });
        (addr, accepted)
    }

    fn answer_each(stream: TcpStream, serve: Serve) {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        loop {
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end().to_ascii_lowercase();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let close = if matches!(serve, Serve::SaysClose) {
                "Connection: close\r\n"
            } else {
                ""
            };
            let head = format!("HTTP/1.1 200 OK\r\n{close}Content-Length: {len}\r\n\r\n");
            w.write_all(&[head.as_bytes(), &body].concat()).unwrap();
            if !matches!(serve, Serve::KeepOpen) {
                return;
            }
        }
    }

    fn send(pool: &KeepAlive, body: &str) -> Response {
        pool.request("POST", "/", &[], body, Duration::from_secs(5))
            .unwrap()
    }

    /// Sends `bodies` one after the other through a pool to a server answering as
    /// `serve` does, each answered with itself; the pool, and the connections accepted.
    fn answered(serve: Serve, bodies: &[&str]) -> (KeepAlive, usize) {
        let (addr, accepted) = server(serve);
        let pool = KeepAlive::new(&addr);
        for body in bodies {
            let r = send(&pool, body);
            assert_eq!((r.status, r.body.as_str()), (200, *body));
        }
        (pool, accepted.load(Ordering::SeqCst))
    }

    #[test]
    fn requests_share_one_kept_connection() {
        let (_, accepted) = answered(Serve::KeepOpen, &["r0", "r1", "r2", "r3", "r4"]);
        assert_eq!(accepted, 1);
    }

    #[test]
    fn a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_again() {
        // The server closes each connection after one answer: every kept one is stale
        // when the next request goes out on it.
        let (_, accepted) = answered(Serve::OneThenClose, &["first", "second", "third"]);
        assert_eq!(accepted, 3);
    }

    #[test]
    fn a_connection_the_server_says_it_closes_is_not_kept() {
        let (pool, accepted) = answered(Serve::SaysClose, &["a", "b"]);
        assert_eq!(accepted, 2);
        assert!(pool.idle.lock().unwrap().is_empty());
    }
}
