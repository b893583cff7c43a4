//! The agent service's control socket: what `agent apply`, `agent sync` and `agent
//! status` say to the service, and what it answers.
//!
//! One connection carries one request, a JSON line, and its answers, JSON lines: any
//! number of [`Reply::Progress`] while the service waits, then one final reply. A
//! request is at most [`MAX_REQUEST`] bytes; the service reads no more than that.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::Report;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::Status;

/// The largest request the service reads (a change message of 1 MiB plus its envelope).
pub const MAX_REQUEST: u64 = 1024 * 1024 + 4096;
/// The largest change or desired-state message accepted, in bytes.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// How long a client waits for the next line before it gives up on the service (the
/// service sends progress every second while it waits).
pub const LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the service waits for a client's request line: a client that connects and
/// stays silent must not hold one of the service's request slots.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Apply a change message (JSON, validated by the service).
    Apply {
        /// The change.
        change: Value,
        /// Wait for the members' outcomes (false: they are `pending`).
        wait: bool,
    },
    /// Converge to a desired state: the given one, or the groups read from AWS.
    Sync {
        /// The desired state; `None`: read agent.toml's `[aws]` groups from AWS.
        desired: Option<Value>,
        /// Only say what would change.
        dry_run: bool,
        /// Wait for the members' outcomes.
        wait: bool,
    },
    /// Every slot and every operation in flight.
    Status,
    /// Take a zone away, bring it back, or (`None`) only say which are away.
    Zone {
        /// What to do.
        action: Option<ZoneAction>,
    },
}

/// What `agent zone` asks of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneAction {
    /// Drain this zone's members on this host (kept, not removed) until it is back.
    Away(infra::Zone),
    /// Make this zone's members ready again.
    Back(infra::Zone),
}

/// What `agent zone` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonesReply {
    /// This host's zone (agent.toml `zone`).
    pub host_zone: Option<String>,
    /// The zones away on this host.
    pub away: Vec<String>,
    /// Pools whose traffic spills out of this host's zone.
    pub spilled: Vec<String>,
    /// Commands this request sent to HAProxy (drains, readies, weights).
    pub commands: u64,
}

/// One line of what `agent sync` changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    /// The pool.
    pub pool: String,
    /// `+` join, `-` leave, `!` evict unknown server, `=` unchanged, `~` re-set.
    pub op: char,
    /// The member (or `-` for an unknown server).
    pub member: String,
    /// The slot.
    pub slot: Option<String>,
    /// What happens.
    pub detail: String,
}

/// What `agent sync` did: the diff, and the outcomes unless it was a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    /// Nothing was changed.
    pub dry_run: bool,
    /// What changes (or would).
    pub diff: Vec<DiffLine>,
    /// The members' outcomes (`None` on a dry run).
    pub report: Option<Report>,
}

/// What the service answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// While waiting: what is still in flight.
    Progress(String),
    /// The outcome of an apply.
    Report(Report),
    /// The outcome of a sync.
    Sync(SyncReply),
    /// The slots and operations.
    Status(Status),
    /// The zones away.
    Zones(ZonesReply),
    /// The request could not be carried out; nothing was changed.
    Error(String),
}

/// Why a client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No service listens.
    #[error("the agent service is not running: cannot connect to {path} ({source}). Start it with `systemctl start haproxy-asg-agent`, or run `agent run` in the foreground")]
    NotRunning {
        /// The control socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection broke or went silent.
    #[error("the agent service stopped answering ({0}); it was stopped or restarted while this request was in flight. Its operations resume when it runs again; send the request again to get the outcome")]
    Lost(String),
    /// The service refused the request; its reason.
    #[error("{0}")]
    Refused(String),
}

/// Sends `request` to the service at `socket`, calls `progress` with every progress
/// line, and returns the final reply.
pub fn call(
    socket: &Path,
    request: &Request,
    mut progress: impl FnMut(&str),
) -> Result<Reply, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::NotRunning {
        path: socket.to_path_buf(),
        source,
    })?;
    let lost = |e: std::io::Error| ClientError::Lost(e.to_string());
    stream.set_read_timeout(Some(LINE_TIMEOUT)).map_err(lost)?;
    let mut line = serde_json::to_string(request).map_err(|e| ClientError::Lost(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(lost)?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut answer = String::new();
        let n = reader.read_line(&mut answer).map_err(lost)?;
        if n == 0 {
            return Err(ClientError::Lost("the connection closed".into()));
        }
        match serde_json::from_str::<Reply>(&answer) {
            Ok(Reply::Progress(p)) => progress(&p),
            Ok(Reply::Error(e)) => return Err(ClientError::Refused(e)),
            Ok(reply) => return Ok(reply),
            Err(e) => return Err(ClientError::Lost(format!("unreadable answer ({e})"))),
        }
    }
}

/// A hand-written message may say `"generation": "now"`: it becomes this host's clock in
/// ms (`now_ms`), newer than anything sent before it. Any other text is left as it is
/// (the message parser says what is wrong with it).
pub fn generation_now(text: &str, now_ms: u64) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(text) else {
        return text.to_string();
    };
    match v.get_mut("generation") {
        Some(g) if g.as_str() == Some("now") => *g = Value::from(now_ms),
        _ => return text.to_string(),
    }
    v.to_string()
}

/// Why no request could be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The client closed the connection without sending anything (a liveness probe).
    #[error("the client sent no request")]
    Empty,
    /// The client sent no whole request line in time.
    #[error(
        "no request within {0:?}: send one JSON line, ended by a newline, as soon as connected"
    )]
    Silent(Duration),
    /// Reading failed.
    #[error("cannot read the request: {0}")]
    Read(std::io::Error),
    /// The request is over [`MAX_REQUEST`] bytes, or its line never ended.
    #[error("the request is larger than {MAX_REQUEST} bytes (or incomplete): a message may be at most {MAX_MESSAGE} bytes")]
    TooLarge,
    /// The line is not a request.
    #[error("malformed request: {0}")]
    Malformed(serde_json::Error),
}

/// Reads one request from a connection, at most [`MAX_REQUEST`] bytes, within
/// [`REQUEST_TIMEOUT`].
pub fn read_request(stream: &UnixStream) -> Result<Request, RequestError> {
    read_request_within(stream, REQUEST_TIMEOUT)
}

/// [`read_request`] with another timeout.
pub fn read_request_within(
    stream: &UnixStream,
    timeout: Duration,
) -> Result<Request, RequestError> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(RequestError::Read)?;
    let mut line = String::new();
    let mut limited = BufReader::new(stream.take(MAX_REQUEST));
    limited.read_line(&mut line).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            RequestError::Silent(timeout)
        }
        _ => RequestError::Read(e),
    })?;
    if line.is_empty() {
        return Err(RequestError::Empty);
    }
    if !line.ends_with('\n') {
        return Err(RequestError::TooLarge);
    }
    serde_json::from_str(&line).map_err(RequestError::Malformed)
}

/// Writes one reply line (a client that went away is not an error worth more than
/// `false`).
pub fn send(mut stream: &UnixStream, reply: &Reply) -> bool {
    let Ok(mut line) = serde_json::to_string(reply) else {
        return false;
    };
    line.push('\n');
    stream.write_all(line.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_written_generation_now_is_the_clock() {
        let text = r#"{"version":1,"generation":"now","pools":[]}"#;
        let out = generation_now(text, 1_700_000_000_123);
        let c = infra::Change::from_json(&out).unwrap();
        assert_eq!(c.generation, 1_700_000_000_123);
        // Anything else is left for the parser to judge.
        for other in [
            r#"{"version":1,"generation":5,"pools":[]}"#,
            r#"{"generation":"soon"}"#,
            "{not json",
        ] {
            assert_eq!(generation_now(other, 1), other);
        }
    }

    #[test]
    fn a_silent_client_is_let_go_and_a_prompt_one_is_read() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let e = read_request_within(&server, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, RequestError::Silent(_)), "{e}");
        assert!(e.to_string().contains("no request within"), "{e}");
        // Half a line, then silence: let go too.
        client.write_all(b"{\"op\":").unwrap();
        let e = read_request_within(&server, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, RequestError::Silent(_)), "{e}");
        let (server, mut client) = UnixStream::pair().unwrap();
        client.write_all(b"{\"op\":\"status\"}\n").unwrap();
        assert!(matches!(
            read_request_within(&server, Duration::from_millis(100)),
            Ok(Request::Status)
        ));
    }
}
