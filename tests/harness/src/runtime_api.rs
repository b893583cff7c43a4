//! A minimal Lambda Runtime API, so the real reactor binary runs here as it runs in
//! Lambda: it hands out queued events one by one and records the answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What the runtime API server saw.
#[derive(Debug, Clone, Default)]
pub struct RuntimeLog {
    /// When each `next` request arrived (from the server's start).
    pub next_at: Vec<Instant>,
    /// `(request id, body)` of each `/response`.
    pub responses: Vec<(String, Value)>,
    /// `(request id, body)` of each `/error` (init errors use id `init`).
    pub errors: Vec<(String, Value)>,
}

/// A minimal Lambda Runtime API: hands out the queued events one by one on
/// `GET /2018-06-01/runtime/invocation/next`, records `/response` and `/error`. When
/// the queue is empty a `next` request is held open (as Lambda does) until an event is
/// pushed or the server is dropped.
pub struct RuntimeApi {
    /// `127.0.0.1:PORT`: the value of `AWS_LAMBDA_RUNTIME_API`.
    pub addr: SocketAddr,
    log: Arc<Mutex<RuntimeLog>>,
    invocations: Arc<Mutex<Invocations>>,
    /// Milliseconds each invocation may take (its deadline).
    pub timeout_ms: u64,
}

/// Events waiting for a `next` request, and `next` requests waiting for an event.
#[derive(Default)]
struct Invocations {
    /// Oldest last.
    queue: Vec<Value>,
    held: Vec<TcpStream>,
    issued: u64,
}

impl Invocations {
    /// Hands `event` to `stream` as the next invocation.
    fn invoke(&mut self, stream: &mut TcpStream, event: &Value, timeout_ms: u64) {
        self.issued += 1;
        let n = self.issued;
        let deadline = infra::now_ms() + timeout_ms;
        let headers = vec![
            (
                "Lambda-Runtime-Aws-Request-Id".to_string(),
                format!("req-{n}"),
            ),
            (
                "Lambda-Runtime-Deadline-Ms".to_string(),
                deadline.to_string(),
            ),
            (
                "Lambda-Runtime-Invoked-Function-Arn".to_string(),
                "arn:aws:lambda:us-east-1:123456789012:function:reactor".to_string(),
            ),
            (
                "Lambda-Runtime-Trace-Id".to_string(),
                format!("Root=1-00000000-{n:024}"),
            ),
        ];
        write_response(stream, "200 OK", &headers, &event.to_string());
    }
}

fn write_response(stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &str) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

impl RuntimeApi {
    /// Starts serving on a free loopback port.
    pub fn start(events: Vec<Value>, timeout_ms: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(RuntimeLog::default()));
        let invocations = Arc::new(Mutex::new(Invocations {
            queue: events.into_iter().rev().collect(),
            ..Invocations::default()
        }));
        let (l2, i2) = (Arc::clone(&log), Arc::clone(&invocations));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((method, path, body)) = read_request(&mut stream) else {
                    continue;
                };
                if method == "GET" && path.ends_with("/runtime/invocation/next") {
                    if let Ok(mut l) = l2.lock() {
                        l.next_at.push(Instant::now());
                    }
                    if let Ok(mut inv) = i2.lock() {
                        match inv.queue.pop() {
                            Some(ev) => inv.invoke(&mut stream, &ev, timeout_ms),
                            // Hold the request open: Lambda would freeze the process here.
                            None => inv.held.push(stream),
                        }
                    }
                    continue;
                }
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                let id = path.split('/').rev().nth(1).unwrap_or_default().to_string();
                if let Ok(mut l) = l2.lock() {
                    if path.ends_with("/response") {
                        l.responses.push((id, value));
                    } else if path.ends_with("/error") {
                        let id = if path.contains("/init/") {
                            "init".to_string()
                        } else {
                            id
                        };
                        l.errors.push((id, value));
                    }
                }
                write_response(&mut stream, "202 Accepted", &[], "{\"status\":\"OK\"}");
            }
        });
        Ok(Self {
            addr,
            log,
            invocations,
            timeout_ms,
        })
    }

    /// Queues one more event, or hands it at once to a `next` request held open.
    pub fn push(&self, event: Value) {
        if let Ok(mut inv) = self.invocations.lock() {
            match inv.held.pop() {
                Some(mut stream) => inv.invoke(&mut stream, &event, self.timeout_ms),
                None => inv.queue.insert(0, event),
            }
        }
    }

    /// A copy of what was seen so far.
    pub fn log(&self) -> RuntimeLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (bounded) until `n` responses or errors arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> RuntimeLog {
        let until = Instant::now() + timeout;
        loop {
            let l = self.log();
            if l.responses.len() + l.errors.len() >= n || Instant::now() >= until {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The environment `lambda_runtime` requires, for a runtime API at `addr`.
pub fn lambda_env(addr: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "reactor".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".to_string()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/reactor".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
