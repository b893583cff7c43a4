//! Stand-in proxies: the agent's side of the control path without HAProxy, for the
//! reactor's own tests and for benchmarks of many proxies.
//!
//! The emulator's Run Command forwards every invocation of the project's document on a
//! stand-in's instance to one loopback HTTP endpoint (its `forward` program). A
//! stand-in reads the change with the agent's own types ([`infra::Change`]), answers at
//! once as `agent apply` does, and reports every member's outcome to the reactor's inbox
//! as the agent service does ([`infra::HostReport`], sent with the instance's own
//! session, outcomes that end together in one message): a join `UP` after its health
//! rise (or `FAILED` once its health timeout passed, for members told to fail), a drain
//! `DRAINED` after its drain time, a member already there at once. Later changes win
//! over earlier ones as on a real host (an older one is `STALE`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use infra::{Change, HostId, HostReport, MemberId, MemberReport, OutcomeStatus, PoolName};
use serde_json::{json, Value};

use crate::world::{ControlPath, Session, World};

/// How a stand-in behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// A join's time to pass its health checks.
    pub rise: Duration,
    /// A drain's time for its sessions to end.
    pub drain: Duration,
    /// A failing join's time before it is reported `FAILED`.
    pub health_timeout: Duration,
    /// Members that never pass their checks.
    pub failing: BTreeSet<String>,
    /// Accepts changes but never reports (a dead agent service).
    pub silent: bool,
    /// Outcomes ending within this window of each other share a message.
    pub batch: Duration,
    /// The reports of the next this many changes applied are lost on the way (a message
    /// lost between the host and the reactor); a later change asking for the same member
    /// is reported again.
    pub lose: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            rise: Duration::from_millis(200),
            drain: Duration::from_millis(200),
            health_timeout: Duration::from_secs(2),
            failing: BTreeSet::new(),
            silent: false,
            batch: Duration::from_millis(5),
            lose: 0,
        }
    }
}

/// A member on one stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Up,
    Out,
}

/// One stand-in proxy.
struct Host {
    session: Session,
    behaviour: Behaviour,
    /// Member -> (target, the newest generation asking it).
    members: BTreeMap<(PoolName, MemberId), (Target, u64)>,
    /// Reports due: when, the report, whether it is lost on the way.
    due: Vec<(Instant, MemberReport, bool)>,
    /// The changes it got.
    changes: Vec<Change>,
    /// Reports lost so far ([`Behaviour::lose`]).
    lost: usize,
}

impl Host {
    /// Applies `change` at `now`: what it reports and when.
    fn apply(&mut self, change: &Change, now: Instant) {
        let g = change.generation;
        let lose = self.behaviour.lose > 0;
        self.behaviour.lose = self.behaviour.lose.saturating_sub(1);
        for p in &change.pools {
            let wanted = p
                .add
                .iter()
                .map(|m| (m.id.clone(), Target::Up))
                .chain(p.remove.iter().map(|id| (id.clone(), Target::Out)));
            for (id, target) in wanted {
                let key = (p.pool.clone(), id.clone());
                let report = |status, reason: Option<&str>| {
                    MemberReport::new(
                        p.pool.clone(),
                        id.clone(),
                        g,
                        status,
                        reason.map(str::to_string),
                        0,
                    )
                };
                match self.members.get(&key).copied() {
                    Some((_, known)) if known > g => {
                        self.due.push((
                            now,
                            report(OutcomeStatus::Stale, Some("a newer generation was applied")),
                            lose,
                        ));
                    }
                    Some((t, _)) if t == target => {
                        // Already there, or converging: its outcome is reported under g too.
                        self.members.insert(key.clone(), (target, g));
                        let pending = self
                            .due
                            .iter_mut()
                            .find(|(_, r, _)| r.pool == p.pool && r.member == id);
                        match pending {
                            Some((_, r, lost)) => {
                                r.generation = r.generation.max(g);
                                *lost = lose;
                            }
                            None => self.due.push((now, report(status_of(target), None), lose)),
                        }
                    }
                    _ => {
                        self.members.insert(key.clone(), (target, g));
                        self.due
                            .retain(|(_, r, _)| !(r.pool == p.pool && r.member == id));
                        let (after, status, reason) = match target {
                            Target::Up if self.behaviour.failing.contains(id.as_str()) => (
                                self.behaviour.health_timeout,
                                OutcomeStatus::Failed,
                                Some("did not pass health checks (stand-in)"),
                            ),
                            Target::Up => (self.behaviour.rise, OutcomeStatus::Up, None),
                            Target::Out => (self.behaviour.drain, OutcomeStatus::Drained, None),
                        };
                        self.due.push((now + after, report(status, reason), lose));
                    }
                }
            }
        }
        self.changes.push(change.clone());
    }
}

fn status_of(t: Target) -> OutcomeStatus {
    match t {
        Target::Up => OutcomeStatus::Up,
        Target::Out => OutcomeStatus::Drained,
    }
}

/// The stand-ins and their threads.
pub struct StandIns {
    hosts: Arc<Mutex<BTreeMap<String, Host>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    sent: Arc<AtomicUsize>,
    /// The endpoint Run Command forwards to.
    pub url: String,
}

impl StandIns {
    /// Stand-ins for `instances` (proxy instances of `path`'s fleet), each reporting to
    /// the inbox with its own session; Run Command on them forwards to the stand-ins.
    pub fn start(
        world: Arc<World>,
        path: &ControlPath,
        instances: &[String],
        behaviour: &Behaviour,
    ) -> anyhow::Result<Self> {
        let mut hosts = BTreeMap::new();
        for id in instances {
            let session = world.proxy_session(path, id)?;
            hosts.insert(
                id.clone(),
                Host {
                    session,
                    behaviour: behaviour.clone(),
                    members: BTreeMap::new(),
                    due: Vec::new(),
                    changes: Vec::new(),
                    lost: 0,
                },
            );
        }
        let hosts = Arc::new(Mutex::new(hosts));
        let listener = TcpListener::bind("127.0.0.1:0").context("stand-ins' listener")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}/invoke", listener.local_addr()?);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let server = {
            let (hosts, stop) = (hosts.clone(), stop.clone());
            std::thread::spawn(move || serve(&listener, &hosts, &stop))
        };
        let reporter = {
            let (hosts, stop, sent, inbox) = (
                hosts.clone(),
                stop.clone(),
                sent.clone(),
                path.inbox.clone(),
            );
            std::thread::spawn(move || report(&world, &inbox, &hosts, &stop, &sent))
        };
        let me = Self {
            hosts,
            stop,
            threads: vec![server, reporter],
            sent,
            url,
        };
        Ok(me)
    }

    /// The Run Command programs that forward `instances`' invocations here.
    pub fn programs(&self) -> Value {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        Value::Object(
            hosts
                .keys()
                .map(|id| (id.clone(), json!({"forward": self.url})))
                .collect(),
        )
    }

    /// Changes how `instance` behaves from now on.
    pub fn set(&self, instance: &str, f: impl FnOnce(&mut Behaviour)) {
        if let Some(h) = self
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(instance)
        {
            f(&mut h.behaviour);
        }
    }

    /// The changes `instance` got, in order.
    pub fn changes(&self, instance: &str) -> Vec<Change> {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .map(|h| h.changes.clone())
            .unwrap_or_default()
    }

    /// The member reports `instance` lost on the way so far ([`Behaviour::lose`]).
    pub fn lost(&self, instance: &str) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .map_or(0, |h| h.lost)
    }

    /// Report messages sent so far.
    pub fn messages_sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers Run Command's forwarded invocations until stopped.
fn serve(listener: &TcpListener, hosts: &Mutex<BTreeMap<String, Host>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let answer = match read_body(&stream) {
                    Ok(body) => invocation(&body, hosts),
                    Err(e) => json!({"code": 2, "stderr": format!("unreadable invocation: {e}")}),
                };
                let text = answer.to_string();
                let _ = (&stream).write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len())
                        .as_bytes(),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn read_body(stream: &TcpStream) -> anyhow::Result<String> {
    let mut r = BufReader::new(stream);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            anyhow::bail!("the connection closed in the headers");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse()?;
            }
        }
    }
    let mut body = vec![0; len.min(8 << 20)];
    r.read_exact(&mut body)?;
    Ok(String::from_utf8(body)?)
}

/// One invocation of the document: `agent apply --change-base64` on a stand-in.
fn invocation(body: &str, hosts: &Mutex<BTreeMap<String, Host>>) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let instance = v["instance_id"].as_str().unwrap_or_default();
    let param = |name: &str| {
        v["parameters"][name][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    if param("Action") != "apply" {
        return json!({"code": 0, "stdout": "{\"dry_run\":false,\"diff\":[],\"report\":null}"});
    }
    let change = base64::engine::general_purpose::STANDARD
        .decode(param("Change"))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|t| Change::from_json(&t));
    let change = match change {
        Some(Ok(c)) => c,
        Some(Err(e)) => return json!({"code": 2, "stderr": format!("agent: error: {e}")}),
        None => {
            return json!({"code": 2, "stderr": "agent: error: --change-base64 is not valid base64"})
        }
    };
    let mut hosts = hosts.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = hosts.get_mut(instance) else {
        return json!({"code": 2, "stderr": format!("no stand-in for {instance}")});
    };
    host.apply(&change, Instant::now());
    json!({"code": 0, "stdout": format!("accepted generation {}", change.generation)})
}

/// Report messages in flight at once, at most: the stand-ins' hosts send side by side
/// as a fleet's do.
const SENDERS: usize = 8;

/// Sends one host's `reports` to the inbox with its own session.
fn send_report(
    world: &World,
    inbox: &str,
    id: &str,
    session: &Session,
    reports: &[MemberReport],
    sent: &AtomicUsize,
) {
    let Ok(host) = HostId::new(id) else {
        return;
    };
    let message = HostReport {
        host,
        sent_ms: crate::unix_ms(),
        reports: reports.to_vec(),
        health: Vec::new(),
    };
    for body in message.to_messages(infra::MAX_MESSAGE_BYTES) {
        let r = world.emulator.aws_json_as(
            &session.access_key,
            "sqs",
            "AmazonSQS.SendMessage",
            &json!({"QueueUrl": inbox, "MessageBody": body}),
            Duration::from_secs(30),
        );
        match r {
            Ok(_) => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => eprintln!("warning: stand-in {id} could not report: {e:#}"),
        }
    }
}

/// Sends the reports that are due, batched per host, until stopped.
fn report(
    world: &World,
    inbox: &str,
    hosts: &Mutex<BTreeMap<String, Host>>,
    stop: &AtomicBool,
    sent: &AtomicUsize,
) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut out: Vec<(String, Session, Vec<MemberReport>)> = Vec::new();
        {
            let mut hosts = hosts.lock().unwrap_or_else(|e| e.into_inner());
            for (id, h) in hosts.iter_mut() {
                let first = h.due.iter().map(|(t, _, _)| *t).min();
                if first.is_none_or(|t| t + h.behaviour.batch > now) {
                    continue;
                }
                let (ready, later): (Vec<_>, Vec<_>) =
                    h.due.drain(..).partition(|(t, _, _)| *t <= now);
                h.due = later;
                let (lost, ready): (Vec<_>, Vec<_>) =
                    ready.into_iter().partition(|(_, _, lost)| *lost);
                h.lost += lost.len();
                if !h.behaviour.silent && !ready.is_empty() {
                    out.push((
                        id.clone(),
                        h.session.clone(),
                        ready.into_iter().map(|(_, r, _)| r).collect(),
                    ));
                }
            }
        }
        // Each host sends on its own as real hosts do, a few at once.
        let chunk = out.len().div_ceil(SENDERS).max(1);
        std::thread::scope(|scope| {
            for part in out.chunks(chunk) {
                scope.spawn(move || {
                    for (id, session, reports) in part {
                        send_report(world, inbox, id, session, reports, sent);
                    }
                });
            }
        });
        std::thread::sleep(Duration::from_millis(2));
    }
}
