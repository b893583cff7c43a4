//! A minimal HTTP/1.1 client for loopback: one request per connection, bounded in time.
//! Used for the backends, HAProxy's frontends and the emulator's APIs alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

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
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} does not resolve")))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    // One write: split writes stall on Nagle + delayed ACK (~40 ms per request).
    let mut bytes = preamble.to_vec();
    bytes.extend_from_slice(req.as_bytes());
    s.write_all(&bytes)?;
    let raw = read_answer(&mut s)?;
    abort_on_close(&s);
    let text = String::from_utf8_lossy(&raw);
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

fn read_answer(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let Some(length) = length else {
            s.read_to_end(&mut raw)?;
            return Ok(raw);
        };
        while raw.len() < end + 4 + length {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        return Ok(raw);
    }
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
