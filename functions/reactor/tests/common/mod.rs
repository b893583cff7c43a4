//! A small AWS world in the emulator on the control path the reactor runs on: the
//! inbox (SQS) every input reaches it through, the lifecycle ledger (DynamoDB), the
//! proxies' role, the project's SSM document, the proxy fleet's group whose instances
//! are stand-in proxies (Run Command forwards the document to them; they answer at once
//! and report every member's outcome to the inbox with their own role session, as the
//! agent service does), backend groups with hooks, and the reactor wired to all of it.
//!
//! No EventBridge rule feeds the inbox here: the tests hand Auto Scaling's events over
//! themselves (directly, or through the inbox), so they can lose, duplicate and reorder
//! them. [`Fixture::settle`] plays Lambda's event source mapping for the inbox.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::standin::{Behaviour, StandIns};
use harness::world::{ControlPath, Received};
use harness::{GroupSpec, ReactorEnv, World};
use infra::{HostReport, MemberReport};
use reactor::config::Config;
use reactor::summary::Summary;
use reactor::AwsReactor;
use serde_json::{json, Value};

pub const GROUP: &str = "web-asg";
pub const POOLS: &str = r#"{"web-asg":[{"name":"web","port":8080}]}"#;
/// The proxies' subnet (the backends are in the world's own, 127.0.1.0/24).
pub const PROXY_SUBNET: &str = "127.0.2.0/24";
pub const LAUNCH: &str = "EC2 Instance-launch Lifecycle Action";
pub const TERMINATE: &str = "EC2 Instance-terminate Lifecycle Action";

/// The reactor's settings in these tests besides the control path's: short health and
/// drain timeouts, and a host report timeout no slow stand-in reaches (the test of a
/// silent host sets its own).
pub const SETTINGS: [(&str, &str); 4] = [
    ("POOLS", POOLS),
    ("HEALTH_TIMEOUT_S", "10"),
    ("DRAIN_TIMEOUT_S", "10"),
    ("HOST_REPORT_TIMEOUT_S", "10"),
];

/// The emulated world, its control path, and the proxy fleet of stand-ins. Derefs to
/// the [`World`]; its helpers panic with the reason, as test code may.
pub struct Fixture {
    pub world: Arc<World>,
    pub path: ControlPath,
    /// The proxies (instances of the proxy group), in the group's order.
    pub proxies: Vec<String>,
    pub standins: StandIns,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

/// One invocation of the reactor with a batch of the inbox.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The records it was given.
    pub records: Vec<Received>,
    /// What it did.
    pub summary: Summary,
    /// Its answer (`batchItemFailures`).
    pub response: Value,
}

impl Handled {
    /// The host reports among its records: (sender's host, report).
    pub fn reports(&self) -> Vec<(String, MemberReport)> {
        self.records
            .iter()
            .filter_map(|r| HostReport::from_json(&r.body).ok())
            .flat_map(|m| {
                let host = m.host.to_string();
                m.reports.into_iter().map(move |r| (host.clone(), r))
            })
            .collect()
    }

    /// The message ids its answer gives back to the queue.
    pub fn failures(&self) -> Vec<String> {
        self.response["batchItemFailures"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
            .collect()
    }
}

/// Every host report of `handled`: (host, report), in the order handled.
pub fn reports(handled: &[Handled]) -> Vec<(String, MemberReport)> {
    handled.iter().flat_map(Handled::reports).collect()
}

/// When a host's report about `member` of `status` was sent (ms since the epoch), from
/// the message that carried it.
pub fn report_sent_ms(
    handled: &[Handled],
    host: &str,
    member: &str,
    status: infra::OutcomeStatus,
) -> Option<u64> {
    handled
        .iter()
        .flat_map(|h| &h.records)
        .filter_map(|r| HostReport::from_json(&r.body).ok())
        .filter(|m| m.host.as_str() == host)
        .find(|m| {
            m.reports
                .iter()
                .any(|x| x.member.as_str() == member && x.status == status)
        })
        .map(|m| m.sent_ms)
}

/// One line per invocation, for panic messages.
pub fn describe(handled: &[Handled]) -> String {
    handled
        .iter()
        .map(|h| {
            let full = serde_json::to_string(&h.summary).unwrap_or_default();
            let mut line: String = full.chars().take(3_000).collect();
            if line.len() < full.len() {
                line.push_str("...");
            }
            format!(
                "  {} record(s), failed {:?}: {line}",
                h.records.len(),
                h.failures()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub use harness::pump::sqs_event;

/// A record as EventBridge would put `event` in the inbox (its sender: not a proxy).
pub fn event_record(id: &str, event: &Value) -> Received {
    Received {
        id: id.to_string(),
        handle: format!("handle-{id}"),
        body: event.to_string(),
        attributes: json!({"SenderId": "AIDAIT2UOQQY3AUEKVGXU", "ApproximateReceiveCount": "1", "SentTimestamp": "1"}),
    }
}

/// The schedule's event, as its rule sends it.
pub fn scheduled() -> Value {
    harness::pump::scheduled_event("reactor-reconcile")
}

impl Fixture {
    /// The world, its control path, the project's SSM document and a proxy group of
    /// `proxies` stand-ins behaving as `behaviour` (per host: [`StandIns::set`]).
    pub async fn new(proxies: i32, behaviour: Behaviour) -> Fixture {
        let world = Arc::new(World::start(None).await.expect("emulated world"));
        // No rule: the tests hand the events over themselves.
        let path = world
            .control_path("reactor", &[])
            .expect("the control path");
        world
            .ssm_document(120)
            .await
            .expect("the project's SSM document");
        let subnet = world.add_subnet(PROXY_SUBNET).await.expect("proxy subnet");
        let ids = world
            .proxy_group(&subnet, proxies)
            .await
            .expect("the proxy group");
        let standins =
            StandIns::start(world.clone(), &path, &ids, &behaviour).expect("stand-in proxies");
        world
            .program_hosts(&standins.programs())
            .expect("Run Command to the stand-ins");
        Fixture {
            world,
            path,
            proxies: ids,
            standins,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Forgets the emulator's call log, then has AWS answer as `faults` says
    /// (`/moto-ext/faults`: delays, errors).
    pub fn fresh_calls_with_faults(&self, faults: &Value) {
        self.emulator
            .control("POST", "/moto-ext/calls/reset", None)
            .expect("reset the call log");
        self.emulator
            .control("POST", "/moto-ext/faults", Some(faults))
            .expect("faults");
    }

    /// AWS answers as itself again.
    pub fn clear_faults(&self) {
        self.emulator
            .control("DELETE", "/moto-ext/faults", None)
            .expect("clear faults");
    }

    /// A group (desired 0, at most 20) with optional hooks (300 s heartbeat) and tags.
    pub async fn group(
        &self,
        name: &str,
        launch_hook: bool,
        terminate_hook: bool,
        tags: &[(&str, &str)],
    ) {
        let mut spec = GroupSpec::new(name, &self.world.subnet);
        spec.launch_hook = launch_hook.then_some(300);
        spec.terminate_hook = terminate_hook.then_some(300);
        for (k, v) in tags {
            spec = spec.tag(k, v);
        }
        self.world.group(&spec).await.expect("create group");
    }

    pub async fn hook(&self, group: &str, name: &str, transition: &str, timeout: i32) {
        self.world
            .hook(group, name, transition, timeout)
            .await
            .expect("hook");
    }

    pub async fn scale(&self, group: &str, desired: i32) {
        self.world
            .scale(group, desired)
            .await
            .expect("set desired capacity");
    }

    /// Instance id -> lifecycle state.
    pub async fn members(&self, group: &str) -> Vec<(String, String)> {
        self.world
            .members(group)
            .await
            .expect("describe")
            .into_iter()
            .map(|m| (m.id, m.state))
            .collect()
    }

    pub async fn private_ip(&self, id: &str) -> String {
        self.world.private_ip(id).await.expect("describe instances")
    }

    /// The members stand-in `host` serves in `pool` after the changes it got (applied in
    /// generation order, as the agent does).
    pub fn serving(&self, host: &str, pool: &str) -> Vec<String> {
        let mut changes = self.standins.changes(host);
        changes.sort_by_key(|c| c.generation);
        let mut serving = std::collections::BTreeSet::new();
        for c in &changes {
            for p in c.pools.iter().filter(|p| p.pool.as_str() == pool) {
                for m in &p.add {
                    serving.insert(m.id.to_string());
                }
                for m in &p.remove {
                    serving.remove(m.as_str());
                }
            }
        }
        serving.into_iter().collect()
    }

    pub fn lifecycle(&self) -> Vec<Value> {
        self.world.lifecycle().expect("lifecycle")
    }

    /// The lifecycle action records of `instance` for `transition` ("launch"/"terminate").
    pub fn actions_of(&self, instance: &str, transition: &str) -> Vec<Value> {
        self.world
            .actions_of(instance, transition)
            .expect("lifecycle")
    }

    /// The events the emulator emitted of `detail_type` about `instance`.
    pub fn events(&self, detail_type: &str, instance: &str) -> Vec<Value> {
        self.world
            .events_about(detail_type, instance)
            .expect("events")
    }

    pub fn event(&self, detail_type: &str, instance: &str) -> Value {
        self.events(detail_type, instance)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {detail_type:?} event for {instance}"))
    }

    /// The reactor's environment: the control path's, [`SETTINGS`], then `extra`.
    pub fn env(&self, extra: &[(&str, &str)]) -> ReactorEnv {
        ReactorEnv::new(&self.path)
            .set_all(SETTINGS)
            .set_all(extra.iter().copied())
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let env = self.env(extra);
        Config::from_lookup(|k| env.get(k)).expect("config")
    }

    pub fn reactor(&self, extra: &[(&str, &str)]) -> AwsReactor {
        reactor::build(self.config(extra), &self.world.sdk)
    }

    /// How many AWS calls of `action` the emulator served.
    pub fn count(&self, action: &str) -> usize {
        self.world.count(action).expect("calls")
    }

    /// The result (`CONTINUE`/`ABANDON`) of `instance`'s `transition` action, if it was
    /// completed.
    pub fn result(&self, instance: &str, transition: &str) -> Option<String> {
        self.actions_of(instance, transition)
            .iter()
            .find_map(|r| r["result"].as_str().map(str::to_string))
    }

    /// Puts `event` in the inbox, as an EventBridge rule targeting it does.
    pub fn to_inbox(&self, event: &Value) {
        self.world
            .emulator
            .aws_json(
                "sqs",
                "AmazonSQS.SendMessage",
                &json!({"QueueUrl": self.path.inbox, "MessageBody": event.to_string()}),
                Duration::from_secs(30),
            )
            .expect("SendMessage to the inbox");
    }

    /// Puts `body` in the inbox as it is (e.g. not JSON).
    pub fn to_inbox_raw(&self, body: &str) {
        self.world
            .emulator
            .aws_json(
                "sqs",
                "AmazonSQS.SendMessage",
                &json!({"QueueUrl": self.path.inbox, "MessageBody": body}),
                Duration::from_secs(30),
            )
            .expect("SendMessage to the inbox");
    }

    /// Up to 10 records of the inbox (no wait).
    pub fn receive(&self) -> Vec<Received> {
        self.world
            .receive_records(&self.path.inbox, 0)
            .expect("receive from the inbox")
    }

    /// Invokes the reactor with `records` as an SQS event (records made up, or received
    /// again: nothing is deleted).
    pub async fn invoke_batch(&self, r: &AwsReactor, records: Vec<Received>) -> Handled {
        let i = r.invoke(&sqs_event(&self.path.inbox, &records)).await;
        Handled {
            records,
            summary: i.summary,
            response: i.response,
        }
    }

    /// Lambda's part for one batch received from the inbox: invokes the reactor with
    /// `records`, then deletes the records its answer does not give back (those come
    /// back after the queue's visibility timeout).
    pub async fn deliver(&self, r: &AwsReactor, records: Vec<Received>) -> Handled {
        let handled = self.invoke_batch(r, records).await;
        let failed = handled.failures();
        let done: Vec<String> = handled
            .records
            .iter()
            .filter(|m| !failed.contains(&m.id))
            .map(|m| m.handle.clone())
            .collect();
        self.world
            .delete(&self.path.inbox, &done)
            .expect("delete handled records");
        handled
    }

    /// Lambda's event source mapping: hands every batch of the inbox to `r` until `done`
    /// says so, or panics after `timeout` with what was handled. Returns the invocations.
    pub async fn settle(
        &self,
        r: &AwsReactor,
        timeout: Duration,
        mut done: impl FnMut(&Fixture) -> bool,
    ) -> Vec<Handled> {
        self.settle_with(r, timeout, &mut |w, _| done(w), |_| None)
            .await
    }

    /// [`Fixture::settle`] until `done` says so of the fixture and the invocations so
    /// far, also putting in the inbox what `extra` returns each round (e.g. the
    /// schedule's event every so often).
    pub async fn settle_with(
        &self,
        r: &AwsReactor,
        timeout: Duration,
        done: &mut dyn FnMut(&Fixture, &[Handled]) -> bool,
        mut extra: impl FnMut(Instant) -> Option<Value>,
    ) -> Vec<Handled> {
        let until = Instant::now() + timeout;
        let mut handled = Vec::new();
        while !done(self, &handled) {
            assert!(
                Instant::now() < until,
                "not settled within {timeout:?}; handled:\n{}",
                describe(&handled)
            );
            if let Some(ev) = extra(Instant::now()) {
                self.to_inbox(&ev);
            }
            let records = self.receive();
            if records.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            handled.push(self.deliver(r, records).await);
        }
        handled
    }

    /// Hands the inbox's batches to `r` until `n` records were handled (at most
    /// `timeout`).
    pub async fn settle_records(
        &self,
        r: &AwsReactor,
        n: usize,
        timeout: Duration,
    ) -> Vec<Handled> {
        let mut enough =
            |_: &Fixture, h: &[Handled]| h.iter().map(|x| x.records.len()).sum::<usize>() >= n;
        self.settle_with(r, timeout, &mut enough, |_| None).await
    }
}

/// A behaviour like the default one, changed by `f`.
pub fn behaviour(f: impl FnOnce(&mut Behaviour)) -> Behaviour {
    let mut b = Behaviour::default();
    f(&mut b);
    b
}
