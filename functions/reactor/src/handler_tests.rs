//! The whole flow against in-process fakes of the boundaries: inputs arrive as the
//! inbox delivers them (SQS batches of EventBridge events and host reports), the
//! ledger is the in-memory one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use infra::aws::{AwsError, Discovery, GroupMember, GroupState};
use infra::GroupName;
use infra::{
    Change, HostId, HostReport, MemberId, MemberReport, OutcomeStatus, PoolName, MAX_MESSAGE_BYTES,
};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher, Sent};
use crate::dns::{DnsApi, DnsError, Record, RecordChange};
use crate::fixtures::group;
use crate::input::samples::sample;
use crate::ledger::memory::MemoryLedger;
use crate::ledger::ActionKey;
use crate::lifecycle::{ActionAnswer, Hook, LifecycleApi, Transition};
use crate::summary::DnsSummary;

const ROLE: &str = "AROAPROXYROLEEXAMPLE";

#[derive(Default)]
struct FakeDiscovery {
    groups: Mutex<Vec<GroupState>>,
    instance_groups: BTreeMap<String, String>,
    /// Groups whose reads fail.
    broken: Vec<String>,
}

impl FakeDiscovery {
    /// A throttled read when one of `names` is broken.
    fn read(&self, names: &[GroupName]) -> Result<(), AwsError> {
        match self
            .broken
            .iter()
            .find(|b| names.iter().any(|n| n.as_str() == b.as_str()))
        {
            Some(b) => Err(AwsError::Api {
                api: "DescribeAutoScalingGroups",
                subject: format!("group {b}"),
                message: "throttled".into(),
            }),
            None => Ok(()),
        }
    }

    fn set(&self, state: GroupState) {
        let mut g = self.groups.lock().unwrap();
        g.retain(|s| s.name != state.name);
        g.push(state);
    }
}

impl Discovery for FakeDiscovery {
    async fn group(&self, name: &GroupName) -> Result<Option<GroupState>, AwsError> {
        self.read(std::slice::from_ref(name))?;
        Ok(self
            .groups
            .lock()
            .unwrap()
            .iter()
            .find(|g| &g.name == name)
            .cloned())
    }
    async fn groups(&self, names: &[GroupName]) -> Result<Vec<GroupState>, AwsError> {
        self.read(names)?;
        Ok(self
            .groups
            .lock()
            .unwrap()
            .iter()
            .filter(|g| names.contains(&g.name))
            .cloned()
            .collect())
    }
    async fn group_of_instance(&self, id: &str) -> Result<Option<GroupName>, AwsError> {
        Ok(self
            .instance_groups
            .get(id)
            .map(|g| GroupName::new(g.as_str()).unwrap()))
    }
    async fn tagged_groups(&self) -> Result<Vec<GroupName>, AwsError> {
        Ok(self
            .groups
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.tags.contains_key("haproxy:pool"))
            .map(|g| g.name.clone())
            .collect())
    }
}

/// The proxies: records every change sent (to whom); reports come as inbox messages
/// the tests write.
struct FakeHosts {
    hosts: Mutex<Vec<HostId>>,
    sent: Mutex<Vec<(Vec<HostId>, Change)>>,
}

impl FakeHosts {
    fn new(n: usize) -> Self {
        Self {
            hosts: Mutex::new(
                (0..n)
                    .map(|h| HostId::new(format!("i-p{h}")).unwrap())
                    .collect(),
            ),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn changes(&self) -> Vec<Change> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect()
    }
}

impl Dispatcher for FakeHosts {
    async fn hosts(&self) -> Result<Vec<HostId>, DispatchError> {
        Ok(self.hosts.lock().unwrap().clone())
    }

    /// Its own list: the tests set the proxies here, whatever the proxy group says.
    async fn hosts_among(&self, _: Vec<String>) -> Result<Vec<HostId>, DispatchError> {
        self.hosts().await
    }

    async fn send(
        &self,
        hosts: &[HostId],
        change: &Change,
        _: &str,
    ) -> Result<Vec<Sent>, DispatchError> {
        let mut sent = self.sent.lock().unwrap();
        sent.push((hosts.to_vec(), change.clone()));
        Ok(vec![Sent {
            command_id: format!("cmd-{}", sent.len()),
            hosts: hosts.to_vec(),
        }])
    }
}

#[derive(Default)]
struct FakeLifecycle {
    completed: Mutex<Vec<(String, String, String, &'static str)>>,
    /// Every CompleteLifecycleAction call, taken or refused.
    calls: Mutex<usize>,
    /// CompleteLifecycleAction calls in flight now, and at most.
    in_flight: Mutex<(usize, usize)>,
    heartbeats: Mutex<Vec<String>>,
    marked: Mutex<Vec<(String, String)>>,
    /// Instance -> its group, as DescribeAutoScalingInstances answers.
    groups_of: Mutex<Vec<(String, String)>>,
    /// SetInstanceHealth(Unhealthy) calls, in order.
    unhealthy: Mutex<Vec<String>>,
    /// Other systems' hooks on the group.
    foreign: Vec<Hook>,
}

impl LifecycleApi for FakeLifecycle {
    async fn hooks(&self, _: &GroupName) -> Result<Vec<Hook>, AwsError> {
        let hook = |name: &str, transition| Hook {
            name: name.into(),
            transition,
            heartbeat_timeout: Duration::from_secs(300),
        };
        Ok([
            hook("launch-hook", Transition::Launch),
            hook("terminate-hook", Transition::Terminate),
        ]
        .into_iter()
        .chain(self.foreign.iter().cloned())
        .collect())
    }
    async fn complete(
        &self,
        group: &GroupName,
        hook: &str,
        instance: &str,
        _: Option<&str>,
        result: &'static str,
    ) -> Result<ActionAnswer, AwsError> {
        *self.calls.lock().unwrap() += 1;
        {
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        // A network call: other invocations run meanwhile.
        tokio::task::yield_now().await;
        self.in_flight.lock().unwrap().0 -= 1;
        let mut done = self.completed.lock().unwrap();
        // An action is completed once; Auto Scaling refuses the second.
        if done
            .iter()
            .any(|(g, h, i, _)| g == group.as_str() && h == hook && i == instance)
        {
            return Ok(ActionAnswer::NotPending(
                "No active Lifecycle Action".into(),
            ));
        }
        done.push((group.into(), hook.into(), instance.into(), result));
        Ok(ActionAnswer::Done)
    }
    async fn heartbeat(
        &self,
        _: &GroupName,
        _: &str,
        instance: &str,
        _: Option<&str>,
    ) -> Result<ActionAnswer, AwsError> {
        self.heartbeats.lock().unwrap().push(instance.to_string());
        Ok(ActionAnswer::Done)
    }
    async fn mark_interrupted(
        &self,
        instance: &str,
        interruption: &infra::aws::Interruption,
    ) -> Result<(), AwsError> {
        self.marked
            .lock()
            .unwrap()
            .push((instance.to_string(), interruption.tag_value()));
        Ok(())
    }
    async fn instances(
        &self,
        instances: &[String],
    ) -> Result<Vec<crate::lifecycle::InstanceOfGroup>, AwsError> {
        let unhealthy = self.unhealthy.lock().unwrap();
        Ok(self
            .groups_of
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| instances.contains(i))
            .map(|(i, g)| crate::lifecycle::InstanceOfGroup {
                instance: i.clone(),
                group: GroupName::new(g.as_str()).unwrap(),
                lifecycle_state: "InService".into(),
                healthy: !unhealthy.contains(i),
            })
            .collect())
    }
    async fn set_unhealthy(&self, instance: &str) -> Result<(), AwsError> {
        self.unhealthy.lock().unwrap().push(instance.to_string());
        Ok(())
    }
}

#[derive(Default)]
struct FakeDns {
    records: Mutex<Vec<Record>>,
}

impl DnsApi for FakeDns {
    async fn list(&self, _: &str, _: &str) -> Result<Vec<Record>, DnsError> {
        Ok(self.records.lock().unwrap().clone())
    }
    async fn change(&self, _: &str, _: &str, batch: &[RecordChange]) -> Result<(), DnsError> {
        let mut r = self.records.lock().unwrap();
        for c in batch {
            match c {
                RecordChange::Upsert(x) => {
                    r.retain(|y| y.set_id != x.set_id);
                    r.push(x.clone());
                }
                RecordChange::Delete(x) => r.retain(|y| y != x),
            }
        }
        Ok(())
    }
}

/// Reminders, recorded (the tests deliver them when they want).
#[derive(Default)]
struct FakeReminders {
    set: Mutex<Vec<(Vec<ActionKey>, Duration)>>,
    health: Mutex<Vec<(Vec<MemberId>, Duration)>>,
}

impl crate::remind::Reminders for FakeReminders {
    async fn remind(&self, actions: &[ActionKey], after: Duration) -> Result<(), AwsError> {
        self.set.lock().unwrap().push((actions.to_vec(), after));
        Ok(())
    }
    async fn remind_health(&self, members: &[MemberId], after: Duration) -> Result<(), AwsError> {
        self.health.lock().unwrap().push((members.to_vec(), after));
        Ok(())
    }
}

struct Fakes;

impl Boundaries for Fakes {
    type Discovery = FakeDiscovery;
    type Dispatcher = FakeHosts;
    type Lifecycle = FakeLifecycle;
    type Dns = FakeDns;
    type Ledger = MemoryLedger;
    type Reminders = FakeReminders;
}

type Fixture = Reactor<Fakes>;

fn member(id: &str, state: &str, n: u8) -> GroupMember {
    GroupMember::new(
        MemberId::new(id).unwrap(),
        state,
        Some("running".into()),
        Some(format!("10.0.0.{n}").parse().unwrap()),
    )
}

fn config(extra: &[(&str, &str)]) -> Config {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| {
        if let Some((_, v)) = extra.iter().find(|(n, _)| n == k) {
            return Some(v.clone());
        }
        match k {
            "POOLS" => Some(r#"{"web-asg":[{"name":"web","port":8080}]}"#.into()),
            "SSM_DOCUMENT" => Some("doc".into()),
            "PROXY_TAG_KEY" => Some("Role".into()),
            "PROXY_TAG_VALUE" => Some("proxy".into()),
            "PROXY_GROUP" => Some("proxies".into()),
            "PROXY_ROLE_ID" => Some(ROLE.into()),
            "LEDGER_TABLE" => Some("ledger".into()),
            "INBOX_QUEUE_URL" => {
                Some("https://sqs.us-east-1.amazonaws.com/123456789012/inbox".into())
            }
            "DNS_ZONE_ID" => Some("Z1".into()),
            "DNS_RECORD_NAME" => Some("lb.example.com".into()),
            _ => None,
        }
    })
    .unwrap()
}

fn build(config: Config, hosts: FakeHosts, lifecycle: FakeLifecycle) -> Fixture {
    let mut d = FakeDiscovery::default();
    for i in ["i-1", "i-2", "i-3"] {
        d.instance_groups.insert(i.into(), "web-asg".into());
    }
    d.instance_groups.insert("i-9".into(), "other-asg".into());
    Reactor::new(
        config,
        Parts {
            discovery: d,
            dispatcher: hosts,
            lifecycle,
            dns: Some(FakeDns::default()),
            ledger: MemoryLedger::default(),
            reminders: FakeReminders::default(),
        },
    )
}

/// Two proxies, a group with i-1 in service.
fn fixture() -> Fixture {
    let r = build(config(&[]), FakeHosts::new(2), FakeLifecycle::default());
    r.discovery
        .set(group("web-asg", vec![member("i-1", "InService", 1)], 1000));
    r
}

/// `ms` since the epoch as EventBridge writes times.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[test]
fn times_written_here_read_back() {
    let now = infra::now_ms() / 1000 * 1000;
    assert_eq!(crate::input::parse_rfc3339_ms(&rfc3339(now)), Some(now));
}

/// AWS's sample of a lifecycle action event about `instance` of web-asg, happening now.
fn lifecycle_event(kind: &str, instance: &str) -> Value {
    let mut e = sample(&format!("{kind}-lifecycle-action"));
    e["time"] = json!(rfc3339(infra::now_ms()));
    e["detail"]["AutoScalingGroupName"] = json!("web-asg");
    e["detail"]["LifecycleHookName"] = json!(format!("{kind}-hook"));
    e["detail"]["EC2InstanceId"] = json!(instance);
    e
}

/// An SQS record as the inbox delivers it.
fn record(id: &str, sender: &str, body: &str) -> Value {
    let mut r = sample("sqs-lambda-event")["Records"][0].clone();
    r["messageId"] = json!(id);
    r["body"] = json!(body);
    r["attributes"]["SenderId"] = json!(sender);
    r
}

/// An EventBridge event delivered to the inbox.
fn event_record(id: &str, event: &Value) -> Value {
    record(id, "AIDAEVENTBRIDGEEXAMPLE", &event.to_string())
}

/// Host `host`'s report of `members`, sent from its own session.
fn report_record(host: &str, members: &[(&str, OutcomeStatus, u64)]) -> Value {
    let body = report_body(host, members);
    record(&format!("r-{host}"), &format!("{ROLE}:{host}"), &body)
}

fn report_body(host: &str, members: &[(&str, OutcomeStatus, u64)]) -> String {
    pool_report_body(host, "web", members)
}

/// A host's report about members of `pool`.
fn pool_report_body(host: &str, pool: &str, members: &[(&str, OutcomeStatus, u64)]) -> String {
    HostReport {
        host: HostId::new(host).unwrap(),
        sent_ms: 1,
        reports: members
            .iter()
            .map(|(m, status, generation)| {
                MemberReport::new(
                    PoolName::new(pool).unwrap(),
                    MemberId::new(*m).unwrap(),
                    *generation,
                    *status,
                    (*status == OutcomeStatus::Failed).then(|| "did not pass health checks".into()),
                    5,
                )
            })
            .collect(),
        health: Vec::new(),
    }
    .to_messages(MAX_MESSAGE_BYTES)
    .remove(0)
}

async fn deliver(r: &Fixture, records: Vec<Value>) -> Invocation {
    r.invoke(&json!({ "Records": records })).await
}

/// `instance` (the group's `n`th address) alone in web-asg's launch hook, and its launch
/// event delivered.
async fn launch_alone(r: &Fixture, instance: &str, n: u8) -> Invocation {
    r.discovery.set(group(
        "web-asg",
        vec![member(instance, "Pending:Wait", n)],
        1000,
    ));
    deliver(
        r,
        vec![event_record("e1", &lifecycle_event("launch", instance))],
    )
    .await
}

/// The generation of the last change sent.
fn last_generation(r: &Fixture) -> u64 {
    r.dispatcher.changes().last().map(|c| c.generation).unwrap()
}

fn completed(r: &Fixture) -> Vec<(String, &'static str)> {
    r.lifecycle
        .completed
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, i, res)| (i.clone(), *res))
        .collect()
}

fn key(instance: &str, transition: Transition) -> ActionKey {
    ActionKey {
        instance: MemberId::new(instance).unwrap(),
        transition,
    }
}

fn sched() -> Value {
    sample("scheduled-event")
}

use OutcomeStatus::{Drained, Failed, Stale, Up};

#[tokio::test]
async fn a_launch_is_sent_at_once_and_continued_when_every_host_reports_it_up() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1000,
    ));
    let i = deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    assert_eq!(i.response, json!({"batchItemFailures": []}));
    // Sent to both proxies, the action opened and waiting, nothing completed yet.
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.len(), 2);
    assert_eq!(sent[0].1.pools[0].add[0].id.as_str(), "i-2");
    assert_eq!(i.summary.actions[0].decision, "WAIT");
    assert!(completed(&r).is_empty());
    let g = last_generation(&r);
    let item = r.ledger.item(&key("i-2", Transition::Launch)).unwrap();
    assert_eq!((item.first_generation, item.hosts.len()), (g, 2));
    assert_eq!(
        item.token.as_deref(),
        Some("87654321-4321-4321-4321-210987654321")
    );

    // One host reports it up: still waiting for the other.
    let i = deliver(&r, vec![report_record("i-p0", &[("i-2", Up, g)])]).await;
    assert_eq!(i.summary.reports.applied, 1);
    assert!(completed(&r).is_empty());
    // The other one too: continued at once, the item closed.
    let i = deliver(&r, vec![report_record("i-p1", &[("i-2", Up, g)])]).await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(i.summary.actions[0].reason, "UP on all 2 host(s)");
    assert!(r.ledger.open_items().is_empty());
}

#[tokio::test]
async fn a_launch_failing_on_one_host_is_abandoned() {
    let r = fixture();
    launch_alone(&r, "i-2", 2).await;
    let g = last_generation(&r);
    let i = deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-2", Up, g)]),
            report_record("i-p1", &[("i-2", Failed, g)]),
        ],
    )
    .await;
    assert_eq!(completed(&r), [("i-2".to_string(), "ABANDON")]);
    assert!(i.summary.actions[0].reason.contains("host i-p1"), "{i:?}");
}

#[tokio::test]
async fn a_terminate_is_continued_once_drained_everywhere() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-3", "Terminating:Wait", 3),
        ],
        1000,
    ));
    deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("terminate", "i-3"))],
    )
    .await;
    let change = r.dispatcher.changes().remove(0);
    assert_eq!(change.pools[0].remove, [MemberId::new("i-3").unwrap()]);
    assert!(
        change.pools[0].add.is_empty(),
        "the steady member is not sent"
    );
    let g = change.generation;
    // A join's report says nothing about a drain; the drain reports do.
    deliver(&r, vec![report_record("i-p0", &[("i-3", Up, g)])]).await;
    assert!(completed(&r).is_empty());
    deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-3", Drained, g)]),
            report_record("i-p1", &[("i-3", Drained, g)]),
        ],
    )
    .await;
    assert_eq!(completed(&r), [("i-3".to_string(), "CONTINUE")]);
}

#[tokio::test]
async fn events_of_one_group_in_a_batch_are_one_change() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "Pending:Wait", 2),
            member("i-3", "Terminating:Wait", 3),
        ],
        1000,
    ));
    let i = deliver(
        &r,
        vec![
            event_record("e1", &lifecycle_event("launch", "i-1")),
            event_record("e2", &lifecycle_event("launch", "i-2")),
            event_record("e3", &lifecycle_event("terminate", "i-3")),
        ],
    )
    .await;
    let changes = r.dispatcher.changes();
    assert_eq!(changes.len(), 1, "one change for the group");
    assert_eq!(
        (
            changes[0].pools[0].add.len(),
            changes[0].pools[0].remove.len()
        ),
        (2, 1)
    );
    assert_eq!(i.summary.inputs.get("launch-lifecycle-action"), Some(&2));
    assert_eq!(r.ledger.open_items().len(), 3);
    // Each action keeps its own event's hook and token.
    assert!(r
        .ledger
        .open_items()
        .iter()
        .all(|i| i.token.is_some() && i.hooks.len() == 1));
}

#[tokio::test]
async fn a_member_in_flight_is_sent_once_and_one_whose_event_was_lost_is_repaired() {
    let r = fixture();
    let adds = |r: &Fixture| -> Vec<Vec<String>> {
        r.dispatcher
            .changes()
            .iter()
            .map(|c| {
                c.pools
                    .iter()
                    .flat_map(|p| p.add.iter().map(|m| m.id.to_string()))
                    .collect()
            })
            .collect()
    };
    // i-1's event was lost; i-2's opens its action and repairs i-1 on the way.
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1000,
    ));
    deliver(
        &r,
        vec![event_record("e2", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    assert_eq!(adds(&r), [vec!["i-1", "i-2"]]);
    // The next launch sends its own member only: the others are in flight.
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "Pending:Wait", 2),
            member("i-3", "Pending:Wait", 3),
        ],
        1001,
    ));
    let i = deliver(
        &r,
        vec![event_record("e3", &lifecycle_event("launch", "i-3"))],
    )
    .await;
    assert_eq!(adds(&r)[1], ["i-3"]);
    assert_eq!(i.summary.actions.len(), 1, "{:?}", i.summary.actions);
    // i-1's own event arriving late: the change that opened its action carried it. It
    // is done without a ledger write (which would race the hosts' reports).
    let writes = r.ledger.writes();
    let i = deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("launch", "i-1"))],
    )
    .await;
    assert_eq!(adds(&r).len(), 2, "sent again: {:?}", adds(&r));
    assert!(i.summary.changes.is_empty());
    assert_eq!(
        r.ledger.writes(),
        writes,
        "an event in flight writes nothing"
    );
    assert!(
        i.summary
            .notes
            .iter()
            .any(|n| n.contains("a change already carries")),
        "{:?}",
        i.summary.notes
    );
    // An event redelivered for a member in flight (the batch that had it failed, so
    // its hosts may have missed it) sends it again, and nothing else.
    let mut again = event_record("e2", &lifecycle_event("launch", "i-2"));
    again["attributes"]["ApproximateReceiveCount"] = json!("2");
    deliver(&r, vec![again]).await;
    assert_eq!(adds(&r)[2], ["i-2"]);
    assert_eq!(r.ledger.open_items().len(), 3);
}

#[tokio::test]
async fn a_lifecycle_event_reads_the_ledger_once() {
    let r = fixture();
    let reads = r.ledger.reads();
    let i = launch_alone(&r, "i-1", 1).await;
    assert_eq!(i.summary.changes.len(), 1);
    // The read that tells whether its member is in flight also serves the opening.
    assert_eq!(r.ledger.reads(), reads + 1);
}

#[tokio::test]
async fn a_member_a_concurrent_invocation_opened_at_a_newer_generation_is_left_to_it() {
    let r = fixture();
    launch_alone(&r, "i-1", 1).await;
    // Another invocation, reading the group a moment later, opened i-1's action at a
    // newer generation than this one is about to take: its change carries i-1 (and
    // hosts would take it over this one's anyway).
    let k1 = key("i-1", Transition::Launch);
    let mut newer = r.ledger.item(&k1).unwrap();
    newer.first_generation = infra::now_ms() + 60_000;
    assert!(r.ledger.put(&[newer]).await.unwrap().is_empty());
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1001,
    ));
    deliver(
        &r,
        vec![event_record("e2", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    let changes = r.dispatcher.changes();
    let adds: Vec<String> = changes[1].pools[0]
        .add
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(adds, ["i-2"], "i-1 rides with the newer change only");
}

#[tokio::test]
async fn a_burst_over_the_groups_of_pools_is_sent_by_the_first_batch_that_sees_it() {
    let r = two_groups();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "InService", 2),
        ],
        1000,
    ));
    r.discovery.set(group(
        "api-asg",
        vec![
            member("i-3", "Pending:Wait", 3),
            member("i-4", "Terminating:Wait", 4),
            member("i-5", "InService", 5),
        ],
        1000,
    ));
    // web-asg's event: api-asg's waiting members ride along in the same change.
    let i = deliver(
        &r,
        vec![event_record("e1", &group_event("launch", "web-asg", "i-1"))],
    )
    .await;
    assert_eq!(i.summary.changes.len(), 1);
    let change = &r.dispatcher.changes()[0];
    let pool = |name: &str| {
        change
            .pools
            .iter()
            .find(|p| p.pool.as_str() == name)
            .unwrap_or_else(|| panic!("no pool {name} in {change:?}"))
    };
    assert_eq!(pool("web").add.len(), 1);
    assert_eq!(pool("api").add.len(), 1, "{change:?}");
    assert_eq!(pool("api").add[0].id.as_str(), "i-3");
    assert_eq!(pool("api").remove, [MemberId::new("i-4").unwrap()]);
    assert_eq!(r.ledger.open_items().len(), 3);
    // Their own events come next: nothing more to send.
    let i = deliver(
        &r,
        vec![
            event_record("e3", &group_event("launch", "api-asg", "i-3")),
            event_record("e4", &group_event("terminate", "api-asg", "i-4")),
        ],
    )
    .await;
    assert!(i.summary.changes.is_empty(), "{:?}", i.summary.changes);
    assert_eq!(r.dispatcher.changes().len(), 1);
}

/// Two proxies, `web-asg` (pool `web`) and `api-asg` (pool `api`) in `POOLS`.
fn two_groups() -> Fixture {
    let pools =
        r#"{"web-asg":[{"name":"web","port":8080}],"api-asg":[{"name":"api","port":8081}]}"#;
    build(
        config(&[("POOLS", pools)]),
        FakeHosts::new(2),
        FakeLifecycle::default(),
    )
}

/// A lifecycle event of `kind` about `instance` of `group`.
fn group_event(kind: &str, group: &str, instance: &str) -> Value {
    let mut e = lifecycle_event(kind, instance);
    e["detail"]["AutoScalingGroupName"] = json!(group);
    e
}

#[tokio::test]
async fn events_of_several_groups_in_a_batch_are_one_change() {
    let r = two_groups();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "Terminating:Wait", 2),
        ],
        1000,
    ));
    r.discovery.set(group(
        "api-asg",
        vec![member("i-3", "Pending:Wait", 3)],
        1000,
    ));
    let i = deliver(
        &r,
        vec![
            event_record("e1", &group_event("launch", "web-asg", "i-1")),
            event_record("e2", &group_event("terminate", "web-asg", "i-2")),
            event_record("e3", &group_event("launch", "api-asg", "i-3")),
        ],
    )
    .await;
    let changes = r.dispatcher.changes();
    assert_eq!(changes.len(), 1, "one change for both groups: {changes:?}");
    let pool = |name: &str| {
        let p = changes[0].pools.iter().find(|p| p.pool.as_str() == name);
        p.map(|p| (p.add.len(), p.remove.len()))
    };
    assert_eq!((pool("web"), pool("api")), (Some((1, 1)), Some((1, 0))));
    assert_eq!(i.summary.changes.len(), 1);
    assert_eq!(i.summary.changes[0].kind, "mixed");
    // Every action waits for that one change's reports.
    let g = changes[0].generation;
    let items = r.ledger.open_items();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.first_generation == g), "{items:?}");
    let mut reports = Vec::new();
    for host in ["i-p0", "i-p1"] {
        reports.push(report_record(host, &[("i-1", Up, g), ("i-2", Drained, g)]));
        let api = pool_report_body(host, "api", &[("i-3", Up, g)]);
        reports.push(record(
            &format!("a-{host}"),
            &format!("{ROLE}:{host}"),
            &api,
        ));
    }
    deliver(&r, reports).await;
    assert_eq!(completed(&r).len(), 3, "{:?}", completed(&r));
}

#[tokio::test]
async fn a_burst_of_decisions_is_completed_a_few_at_once() {
    let r = fixture();
    let ids: Vec<String> = (1..=12).map(|n| format!("i-{n}")).collect();
    let members = ids
        .iter()
        .zip(1u8..)
        .map(|(id, n)| member(id, "Pending:Wait", n))
        .collect();
    r.discovery.set(group("web-asg", members, 1000));
    let events = ids
        .iter()
        .map(|id| event_record(&format!("e-{id}"), &lifecycle_event("launch", id)))
        .collect();
    deliver(&r, events).await;
    let g = last_generation(&r);
    let up: Vec<(&str, OutcomeStatus, u64)> = ids.iter().map(|id| (id.as_str(), Up, g)).collect();
    deliver(
        &r,
        vec![report_record("i-p0", &up), report_record("i-p1", &up)],
    )
    .await;
    assert_eq!(completed(&r).len(), 12);
    assert_eq!(
        r.lifecycle.in_flight.lock().unwrap().1,
        5,
        "completions side by side, five at most"
    );
}

#[tokio::test]
async fn a_bad_tag_in_a_batch_is_refused_and_its_group_still_served() {
    let r = two_groups();
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    let mut bad = group("api-asg", vec![member("i-5", "Pending:Wait", 5)], 1000);
    bad.tags.insert("haproxy:port".into(), "not-a-port".into());
    r.discovery.set(bad);
    let i = deliver(
        &r,
        vec![
            event_record("ok", &group_event("launch", "web-asg", "i-2")),
            event_record("bad", &group_event("launch", "api-asg", "i-5")),
            record("junk", "AIDA", "{not json"),
        ],
    )
    .await;
    assert_eq!(i.response, json!({"batchItemFailures": []}));
    let changes = r.dispatcher.changes();
    assert_eq!(changes.len(), 1, "one change for both groups");
    let ports: Vec<(&str, u16)> = changes[0]
        .pools
        .iter()
        .flat_map(|p| p.add.iter().map(|m| (p.pool.as_str(), m.port.get())))
        .collect();
    assert_eq!(
        ports,
        [("api", 8081), ("web", 8080)],
        "the port POOLS gives"
    );
    assert_eq!(i.summary.tags_refused.len(), 1, "{:?}", i.summary);
    let why = &i.summary.tags_refused[0];
    assert!(
        why.contains("api-asg") && why.contains("haproxy:port"),
        "{why}"
    );
    assert!(i.summary.ignored.iter().any(|w| w.contains("not JSON")));
}

#[tokio::test]
async fn a_failed_read_gives_back_the_lifecycle_records_only() {
    let mut r = two_groups();
    r.discovery.broken.push("api-asg".into());
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    let i = deliver(
        &r,
        vec![
            event_record("web", &group_event("launch", "web-asg", "i-2")),
            event_record("api", &group_event("launch", "api-asg", "i-5")),
            report_record("i-p0", &[("i-9", Up, 1)]),
        ],
    )
    .await;
    // The groups are read in one call: when it fails, both groups' events are retried
    // (nothing was sent for either); the report is not.
    let failed = i.response["batchItemFailures"].as_array().unwrap().clone();
    let ids: BTreeSet<&str> = failed
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    assert_eq!(ids, BTreeSet::from(["api", "web"]));
    assert!(r.dispatcher.changes().is_empty());
    assert!(r.ledger.open_items().is_empty());
}

#[tokio::test]
async fn reports_lost_duplicated_reordered_or_late_change_nothing_wrong() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    // A report that comes before the action exists (about an earlier change) is ignored.
    deliver(&r, vec![report_record("i-p0", &[("i-2", Failed, 1)])]).await;
    deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    let g = last_generation(&r);
    // Duplicated and older reports of one host count once.
    deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-2", Up, g)]),
            report_record("i-p0", &[("i-2", Up, g)]),
        ],
    )
    .await;
    let i = deliver(&r, vec![report_record("i-p0", &[("i-2", Failed, g - 1)])]).await;
    assert_eq!(i.summary.reports.applied, 0);
    assert!(completed(&r).is_empty());
    // A stale report (a newer change rules the member) decides nothing.
    deliver(&r, vec![report_record("i-p1", &[("i-2", Stale, g)])]).await;
    assert!(completed(&r).is_empty());
    deliver(&r, vec![report_record("i-p1", &[("i-2", Up, g + 5)])]).await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    // After the decision, a late failure changes nothing.
    let i = deliver(&r, vec![report_record("i-p1", &[("i-2", Failed, g + 9)])]).await;
    assert_eq!(completed(&r).len(), 1);
    assert_eq!(i.summary.reports.applied, 0);
}

#[tokio::test]
async fn concurrent_invocations_complete_an_action_once_and_a_dead_claimant_is_replaced() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-2", "Pending:Wait", 2),
            member("i-3", "Pending:Wait", 3),
        ],
        1000,
    ));
    deliver(
        &r,
        vec![
            event_record("e1", &lifecycle_event("launch", "i-2")),
            event_record("e2", &lifecycle_event("launch", "i-3")),
        ],
    )
    .await;
    let g = last_generation(&r);
    deliver(
        &r,
        vec![report_record("i-p0", &[("i-2", Up, g), ("i-3", Up, g)])],
    )
    .await;
    // The last report, delivered twice (SQS is at-least-once) to two invocations that
    // run at the same time: both read the item decided, one completes it.
    let last = report_record("i-p1", &[("i-2", Up, g)]);
    let (a, b) = tokio::join!(deliver(&r, vec![last.clone()]), deliver(&r, vec![last]));
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(
        *r.lifecycle.calls.lock().unwrap(),
        1,
        "one CompleteLifecycleAction"
    );
    assert_eq!(a.summary.actions.len() + b.summary.actions.len(), 1);
    assert!(r
        .ledger
        .item(&key("i-2", Transition::Launch))
        .unwrap()
        .decided
        .is_some());

    // An invocation that claimed i-3 and died before completing it: while its claim
    // holds, a duplicate report completes nothing; once it lapsed, the schedule does.
    let k3 = key("i-3", Transition::Launch);
    let mut dead = r.ledger.item(&k3).unwrap();
    dead.apply(
        &HostId::new("i-p1").unwrap(),
        &MemberReport::new(
            PoolName::new("web").unwrap(),
            k3.instance.clone(),
            g,
            Up,
            None,
            1,
        ),
        infra::now_ms(),
    );
    assert!(dead.claim("dead", infra::now_ms()));
    assert!(r.ledger.put(&[dead]).await.unwrap().is_empty());
    deliver(&r, vec![report_record("i-p1", &[("i-3", Up, g)])]).await;
    r.handle(&sched()).await.unwrap();
    assert_eq!(completed(&r).len(), 1, "i-3 is someone else's, for now");
    r.ledger.age(crate::ledger::CLAIM_MS);
    r.handle(&sched()).await.unwrap();
    assert_eq!(
        completed(&r),
        [("i-2".into(), "CONTINUE"), ("i-3".into(), "CONTINUE")]
    );
    assert!(r.ledger.open_items().is_empty());
}

#[tokio::test]
async fn a_forged_report_and_an_event_from_a_proxy_complete_nothing() {
    let r = fixture();
    launch_alone(&r, "i-2", 2).await;
    let g = last_generation(&r);
    let body = report_body("i-p0", &[("i-2", Up, g)]);
    let body1 = report_body("i-p1", &[("i-2", Up, g)]);
    let i = deliver(
        &r,
        vec![
            // i-p1 sends a report naming i-p0; someone else (not a proxy session) does too.
            record("f1", &format!("{ROLE}:i-p1"), &body),
            record("f2", "AIDAOTHERUSER", &body),
            record("f3", "AROAOTHERROLE:i-p1", &body1),
            // A proxy sends an event body: refused too.
            record(
                "f4",
                &format!("{ROLE}:i-p0"),
                &lifecycle_event("terminate", "i-2").to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(i.summary.reports.forged, 4, "{i:?}");
    assert_eq!(
        i.response,
        json!({"batchItemFailures": []}),
        "refused, not retried"
    );
    assert!(completed(&r).is_empty());
    assert_eq!(r.dispatcher.changes().len(), 1, "nothing more sent");
    // A report from a host that is not one the action waits for changes nothing either.
    deliver(&r, vec![report_record("i-p7", &[("i-2", Up, g)])]).await;
    assert!(completed(&r).is_empty());
}

/// i-2 launched alone on the two proxies, and UP on i-p0 only; its generation.
async fn up_on_one_of_two(r: &Fixture) -> u64 {
    launch_alone(r, "i-2", 2).await;
    let g = last_generation(r);
    deliver(r, vec![report_record("i-p0", &[("i-2", Up, g)])]).await;
    g
}

#[tokio::test]
async fn a_silent_host_is_dropped_after_the_report_timeout_and_never_vetoes() {
    let r = fixture();
    up_on_one_of_two(&r).await;
    assert!(completed(&r).is_empty());
    // 31 s later (HOST_REPORT_TIMEOUT_S 30), the schedule drops the silent host.
    r.ledger.age(31_000);
    let i = r.handle(&sched()).await.unwrap();
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(i.reports.hosts_dropped.len(), 1);
    assert!(
        i.reports.hosts_dropped[0].starts_with("i-p1 launch i-2"),
        "{i:?}"
    );
}

#[tokio::test]
async fn the_first_report_sets_a_reminder_that_drops_a_silent_host_when_it_comes() {
    let r = fixture();
    launch_alone(&r, "i-2", 2).await;
    let g = last_generation(&r);
    assert!(
        r.reminders.set.lock().unwrap().is_empty(),
        "no report yet: no reminder"
    );
    deliver(&r, vec![report_record("i-p0", &[("i-2", Up, g)])]).await;
    let set = r.reminders.set.lock().unwrap().clone();
    assert_eq!(
        set,
        [(
            vec![key("i-2", Transition::Launch)],
            Duration::from_secs(31)
        )]
    );
    // The reminder comes back after the timeout, as a message of the inbox.
    r.ledger.age(31_000);
    let body = crate::input::recheck::Recheck::messages(&set[0].0).remove(0);
    let i = deliver(
        &r,
        vec![record("m-recheck", "AROAREACTORROLE:reactor", &body)],
    )
    .await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(i.summary.reports.hosts_dropped.len(), 1, "{i:?}");
    // One from a proxy is refused.
    let i = deliver(&r, vec![record("m-forged", &format!("{ROLE}:i-p0"), &body)]).await;
    assert_eq!(i.summary.reports.forged, 1);
}

#[tokio::test]
async fn a_reminder_that_rides_with_reports_costs_no_read_of_its_own() {
    let r = fixture();
    let g = up_on_one_of_two(&r).await;
    // Its reminder, once the other host's silence has lasted the timeout.
    let (keys, _) = r.reminders.set.lock().unwrap()[0].clone();
    let body = crate::input::recheck::Recheck::messages(&keys).remove(0);
    r.ledger.age(31_000);
    let reads = r.ledger.reads();
    // The reminder and a report (the same one again) in one batch: one pass.
    let i = deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-2", Up, g)]),
            record("m-recheck", "AROAREACTORROLE:reactor", &body),
        ],
    )
    .await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(i.summary.reports.hosts_dropped.len(), 1, "{i:?}");
    assert!(i.summary.failed.is_empty(), "{i:?}");
    assert_eq!(r.ledger.reads(), reads + 1, "one read for both");
    // A reminder of an action decided since changes nothing, with reports or alone.
    let writes = r.ledger.writes();
    deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-2", Up, g)]),
            record("m-recheck-2", "AROAREACTORROLE:reactor", &body),
        ],
    )
    .await;
    assert_eq!(r.ledger.writes(), writes);
}

#[tokio::test]
async fn a_proxy_leaving_service_is_removed_from_every_open_action() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    r.discovery.set(group(
        "proxies",
        vec![
            member("i-p0", "InService", 10),
            member("i-p1", "Terminating:Wait", 11),
        ],
        1000,
    ));
    deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    let g = last_generation(&r);
    deliver(&r, vec![report_record("i-p0", &[("i-2", Up, g)])]).await;
    let mut ev = lifecycle_event("terminate", "i-p1");
    ev["detail"]["AutoScalingGroupName"] = json!("proxies");
    let i = deliver(&r, vec![event_record("p", &ev)]).await;
    let done = completed(&r);
    assert!(
        done.contains(&("i-p1".to_string(), "CONTINUE")),
        "the proxy's own action: {done:?}"
    );
    assert!(
        done.contains(&("i-2".to_string(), "CONTINUE")),
        "the launch no longer waits for it: {done:?}"
    );
    assert!(i
        .summary
        .reports
        .hosts_dropped
        .iter()
        .any(|d| d.contains("left service")));
}

#[tokio::test]
async fn a_late_launch_event_never_adds_a_terminating_instance() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Terminating:Wait", 2)],
        1000,
    ));
    let i = deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    let change = r.dispatcher.changes().remove(0);
    assert!(change.pools[0].add.is_empty());
    assert_eq!(change.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert!(
        i.summary.notes.iter().any(|n| n.contains("not pending")),
        "{i:?}"
    );
    assert!(r.ledger.item(&key("i-2", Transition::Launch)).is_none());
    assert!(r.ledger.item(&key("i-2", Transition::Terminate)).is_some());
}

#[tokio::test]
async fn a_launch_of_a_leaving_instance_is_abandoned_and_no_proxy_means_continue() {
    let r = fixture();
    let leaving = GroupMember::new(
        MemberId::new("i-2").unwrap(),
        "Pending:Wait",
        Some("shutting-down".into()),
        Some("10.0.0.2".parse().unwrap()),
    );
    r.discovery.set(group("web-asg", vec![leaving], 1000));
    deliver(
        &r,
        vec![event_record("e1", &lifecycle_event("launch", "i-2"))],
    )
    .await;
    assert_eq!(completed(&r), [("i-2".to_string(), "ABANDON")]);

    let r = build(config(&[]), FakeHosts::new(0), FakeLifecycle::default());
    let i = launch_alone(&r, "i-2", 2).await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert!(i.summary.actions[0].reason.contains("no proxy host"));
    assert!(r.dispatcher.changes().is_empty());
}

#[tokio::test]
async fn another_systems_hook_is_never_completed() {
    let lifecycle = FakeLifecycle {
        foreign: vec![Hook {
            name: "bootstrap".into(),
            transition: Transition::Launch,
            heartbeat_timeout: Duration::from_secs(300),
        }],
        ..FakeLifecycle::default()
    };
    let r = build(
        config(&[("LIFECYCLE_HOOKS", "launch-hook,terminate-hook")]),
        FakeHosts::new(1),
        lifecycle,
    );
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    let mut event = lifecycle_event("launch", "i-2");
    event["detail"]["LifecycleHookName"] = json!("bootstrap");
    let i = deliver(&r, vec![event_record("e1", &event)]).await;
    assert!(i
        .summary
        .ignored
        .iter()
        .any(|w| w.contains("not one of LIFECYCLE_HOOKS")));
    assert!(r.dispatcher.changes().is_empty());
    // The schedule finds the action pending and completes only our hook.
    r.handle(&sched()).await.unwrap();
    let g = last_generation(&r);
    deliver(&r, vec![report_record("i-p0", &[("i-2", Up, g)])]).await;
    let hooks: Vec<String> = r
        .lifecycle
        .completed
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(hooks, ["launch-hook"]);
}

#[tokio::test]
async fn the_schedule_opens_what_events_missed_closes_what_settled_and_heartbeats_long_drains() {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Pending:Wait", 2),
            member("i-3", "Terminating:Wait", 3),
        ],
        1000,
    ));
    // No event came: the schedule sends the whole membership with both actions.
    let s = r.handle(&sched()).await.unwrap();
    let change = r.dispatcher.changes().remove(0);
    assert_eq!(
        (change.pools[0].add.len(), change.pools[0].remove.len()),
        (2, 1)
    );
    assert_eq!(r.ledger.open_items().len(), 2);
    assert_eq!(
        s.pending.map(|p| p.actions),
        Some(0),
        "nothing was open before"
    );
    // A minute on, the drain still runs: heartbeat; the launch completed elsewhere is closed.
    r.ledger.age(60_000);
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "InService", 2),
            member("i-3", "Terminating:Wait", 3),
        ],
        2000,
    ));
    let s = r.handle(&sched()).await.unwrap();
    assert_eq!(s.heartbeats, ["terminate i-3"]);
    assert_eq!(s.pending.map(|p| p.actions), Some(1));
    let launch = r.ledger.item(&key("i-2", Transition::Launch)).unwrap();
    assert!(launch
        .decided
        .is_some_and(|d| !d.completed && d.reason.contains("settled elsewhere")));
    assert!(completed(&r).is_empty(), "nothing completed by us");
    // Past its drain timeout (120 s) the terminate is continued anyway.
    r.ledger.age(61_000);
    r.handle(&sched()).await.unwrap();
    assert_eq!(completed(&r), [("i-3".to_string(), "CONTINUE")]);
}

#[tokio::test]
async fn unknown_groups_and_malformed_events_are_acknowledged_without_effect() {
    let r = fixture();
    let mut unknown = lifecycle_event("launch", "i-5");
    unknown["detail"]["AutoScalingGroupName"] = json!("someone-elses-asg");
    let i = deliver(
        &r,
        vec![event_record("u", &unknown), record("m", "AIDA", "[1,2]")],
    )
    .await;
    assert_eq!(i.response, json!({"batchItemFailures": []}));
    assert!(i.summary.ignored.iter().any(|w| w.contains("not managed")));
    assert!(i.summary.ignored.iter().any(|w| w.contains("JSON array")));
    assert!(r.dispatcher.changes().is_empty() && completed(&r).is_empty());
}

/// The members each pool of the one change sent gets, with their ports.
fn added(r: &Fixture) -> Vec<(String, String, u16)> {
    r.dispatcher
        .changes()
        .iter()
        .flat_map(|c| c.pools.clone())
        .flat_map(|p| {
            p.add
                .iter()
                .map(|m| (p.pool.to_string(), m.id.to_string(), m.port.get()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_group_tagged_into_another_pool_or_port_reaches_neither() {
    let pools = r#"{"web-asg":[{"name":"web","port":8080}],
                    "internal-asg":[{"name":"internal","port":9999}]}"#;
    let r = build(
        config(&[("POOLS", pools), ("MANAGED_GROUPS", "api-* -> api:9000")]),
        FakeHosts::new(1),
        FakeLifecycle::default(),
    );
    // Whoever can tag a managed group tries to move it into the internal pool, onto
    // the internal port; whoever can create a group matching the glob, the same.
    let mut web = group("web-asg", vec![member("i-2", "Pending:Wait", 2)], 1);
    web.tags.insert("haproxy:pool".into(), "internal".into());
    web.tags.insert("haproxy:port".into(), "9999".into());
    r.discovery.set(web);
    let s = r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    assert_eq!(added(&r), [("web".into(), "i-2".into(), 8080)]);
    let refused = s.tags_refused.join("\n");
    assert!(
        refused.contains("haproxy:pool=\"internal\"") && refused.contains("haproxy:port=\"9999\""),
        "{refused}"
    );
    let mut api = group("api-blue", vec![member("i-5", "Pending:Wait", 5)], 1);
    api.tags
        .insert("haproxy:pool".into(), "internal,api".into());
    r.discovery.set(api);
    let mut e = lifecycle_event("launch", "i-5");
    e["detail"]["AutoScalingGroupName"] = json!("api-blue");
    let s = r.handle(&e).await.unwrap();
    assert!(added(&r).contains(&("api".into(), "i-5".into(), 9000)));
    assert!(!added(&r).iter().any(|(p, _, _)| p == "internal"));
    // (web-asg's waiting member rides along, so its refusals are told again.)
    let of_api: Vec<&String> = s
        .tags_refused
        .iter()
        .filter(|t| t.starts_with("group api-blue:"))
        .collect();
    assert_eq!(of_api.len(), 1, "{s:?}");
}

#[tokio::test]
async fn a_tagged_group_reaches_a_pool_only_when_allowed() {
    let r = build(
        config(&[("MANAGED_GROUPS", "api-* -> api:9000")]),
        FakeHosts::new(1),
        FakeLifecycle::default(),
    );
    for (name, n) in [("api-blue", 5), ("evil", 6)] {
        let mut g = group(name, vec![member(&format!("i-{n}"), "InService", n)], 1);
        g.tags.insert("haproxy:pool".into(), "api".into());
        g.tags.insert("haproxy:port".into(), "9000".into());
        r.discovery.set(g);
    }
    let s = r.handle(&sched()).await.unwrap();
    let change = r.dispatcher.changes().remove(0);
    let added: Vec<&str> = change
        .pools
        .iter()
        .flat_map(|p| p.add.iter().map(|m| m.id.as_str()))
        .collect();
    assert_eq!(added, ["i-5"]);
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("evil") && n.contains("not managed")));
}

#[tokio::test]
async fn ec2_state_changes_find_their_group() {
    let r = fixture();
    let m = GroupMember::new(
        MemberId::new("i-2").unwrap(),
        "InService",
        Some("shutting-down".into()),
        Some("10.0.0.2".parse().unwrap()),
    );
    r.discovery.set(group("web-asg", vec![m], 1));
    let mut ev = sample("instance-state-change");
    ev["detail"]["instance-id"] = json!("i-2");
    r.handle(&ev).await.unwrap();
    assert_eq!(r.dispatcher.changes()[0].pools[0].remove[0].as_str(), "i-2");
    ev["detail"]["instance-id"] = json!("i-404");
    let s = r.handle(&ev).await.unwrap();
    assert!(s
        .ignored
        .iter()
        .any(|w| w.contains("no Auto Scaling group")));
}

#[tokio::test]
async fn activities_send_their_instance_unless_it_changes_nothing() {
    let activity = |name: &str, instance: Value| {
        let mut e = sample(name);
        e["detail"]["AutoScalingGroupName"] = json!("web-asg");
        e["detail"]["EC2InstanceId"] = instance;
        e
    };
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![member("i-1", "InService", 1), member("i-2", "InService", 2)],
        1,
    ));
    // Gated by a hook of ours: the change already went through.
    for name in ["launch-successful", "terminate-successful"] {
        let s = r.handle(&activity(name, json!("i-2"))).await.unwrap();
        assert!(
            s.ignored
                .iter()
                .any(|w| w.contains("hook launch-hook") || w.contains("hook terminate-hook")),
            "{name}: {s:?}"
        );
    }
    // Into the warm pool, or no instance at all: nothing to send.
    let s = r
        .handle(&activity("launch-successful-to-warm-pool", json!("i-7")))
        .await
        .unwrap();
    assert!(s.ignored.iter().any(|w| w.contains("warm pool")));
    let s = r
        .handle(&activity("launch-unsuccessful", Value::Null))
        .await
        .unwrap();
    assert!(s.ignored.iter().any(|w| w.contains("names no instance")));
    assert!(r.dispatcher.changes().is_empty());
    // A failed launch is re-read and sent; a detached member leaves the pools.
    r.handle(&activity("launch-unsuccessful", json!("i-2")))
        .await
        .unwrap();
    assert_eq!(r.dispatcher.changes().len(), 1);
    r.discovery
        .set(group("web-asg", vec![member("i-1", "InService", 1)], 2));
    r.handle(&activity("detach-successful", json!("i-2")))
        .await
        .unwrap();
    let change = r.dispatcher.changes().pop().unwrap();
    assert_eq!(change.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert!(change.pools[0].add.is_empty());
}

#[tokio::test]
async fn proxy_fleet_changes_keep_the_records_in_step() {
    let r = fixture();
    r.dns
        .as_ref()
        .unwrap()
        .records
        .lock()
        .unwrap()
        .push(Record {
            set_id: "p-old".into(),
            values: vec!["10.9.9.9".into()],
            ttl: 60,
            multi_value: true,
        });
    r.discovery.set(group(
        "proxies",
        vec![
            member("p-1", "InService", 11),
            member("p-2", "InService", 12),
            member("p-3", "Pending:Wait", 13),
        ],
        1,
    ));
    let mut ev = lifecycle_event("launch", "p-3");
    ev["detail"]["AutoScalingGroupName"] = json!("proxies");
    let s = r.handle(&ev).await.unwrap();
    let mut ids: Vec<String> = r
        .dns
        .as_ref()
        .unwrap()
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.set_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["p-1", "p-2"]);
    assert_eq!(
        s.dns,
        Some(DnsSummary {
            upserts: 2,
            deletes: 1,
            requests: 1
        })
    );
    assert_eq!(completed(&r), [("p-3".to_string(), "CONTINUE")]);
    assert!(
        r.dispatcher.changes().is_empty(),
        "no change for the proxy group itself"
    );
}

fn warning_event(kind: &str, instance: &str) -> Value {
    let mut e = sample(if kind == "spot" {
        "spot-interruption-warning"
    } else {
        "rebalance-recommendation"
    });
    e["detail"]["instance-id"] = json!(instance);
    e
}

#[tokio::test]
async fn a_spot_warning_drains_at_once_by_a_deadline_and_its_terminate_is_continued_from_that_drain(
) {
    let r = fixture();
    r.discovery.set(group(
        "web-asg",
        vec![member("i-1", "InService", 1), member("i-2", "InService", 2)],
        1000,
    ));
    r.handle(&warning_event("spot", "i-2")).await.unwrap();
    let warned = crate::input::parse_rfc3339_ms("2026-11-20T10:00:00Z").unwrap();
    let deadline = warned + 90_000;
    assert_eq!(
        r.lifecycle.marked.lock().unwrap().clone(),
        [("i-2".to_string(), deadline.to_string())]
    );
    let change = r.dispatcher.changes().remove(0);
    assert_eq!(change.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert_eq!(
        change.pools[0]
            .drain_by_ms
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [deadline]
    );
    assert!(r.ledger.items().is_empty(), "no action yet");
    // The drain ends on the hosts before Auto Scaling's hook: their reports find no action.
    let warning_generation = change.generation;
    deliver(
        &r,
        vec![report_record(
            "i-p0",
            &[("i-2", Drained, warning_generation)],
        )],
    )
    .await;
    // Auto Scaling starts the terminate: the hosts answer for the new change (a host
    // still draining reports under its generation when done).
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Terminating:Wait", 2),
        ],
        2000,
    ));
    deliver(
        &r,
        vec![event_record("t", &lifecycle_event("terminate", "i-2"))],
    )
    .await;
    let g = last_generation(&r);
    assert!(g > warning_generation);
    deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-2", Drained, g)]),
            report_record("i-p1", &[("i-2", Drained, g)]),
        ],
    )
    .await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
}

#[tokio::test]
async fn an_interrupted_member_is_never_added_back_and_duplicate_warnings_do_nothing() {
    let r = fixture();
    let interrupted = member("i-2", "InService", 2).interrupt(infra::aws::Interruption {
        drain_by_ms: Some(5),
    });
    r.discovery.set(group(
        "web-asg",
        vec![member("i-1", "InService", 1), interrupted],
        1000,
    ));
    let s = r.handle(&warning_event("spot", "i-2")).await.unwrap();
    assert!(s.ignored.iter().any(|w| w.contains("already draining")));
    r.handle(&sched()).await.unwrap();
    let change = r.dispatcher.changes().remove(0);
    assert!(change.pools[0].add.iter().all(|m| m.id.as_str() != "i-2"));
    assert!(change.pools[0].remove.iter().any(|m| m.as_str() == "i-2"));
}

#[tokio::test]
async fn rebalance_recommendations_drain_only_when_configured() {
    let r = fixture();
    r.discovery
        .set(group("web-asg", vec![member("i-2", "InService", 2)], 1000));
    let s = r.handle(&warning_event("rebalance", "i-2")).await.unwrap();
    assert!(s.ignored.iter().any(|w| w.contains("REBALANCE is ignore")));
    assert!(r.dispatcher.changes().is_empty());
    let r = build(
        config(&[("REBALANCE", "drain")]),
        FakeHosts::new(1),
        FakeLifecycle::default(),
    );
    r.discovery
        .set(group("web-asg", vec![member("i-2", "InService", 2)], 1000));
    r.handle(&warning_event("rebalance", "i-2")).await.unwrap();
    let change = r.dispatcher.changes().remove(0);
    assert_eq!(change.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert!(
        change.pools[0].drain_by_ms.is_empty(),
        "no deadline of its own"
    );
}

#[tokio::test]
async fn warnings_about_unknown_or_unmanaged_instances_are_acknowledged_without_effect() {
    let r = fixture();
    for i in ["i-404", "i-9"] {
        r.handle(&warning_event("spot", i)).await.unwrap();
    }
    assert!(r.dispatcher.changes().is_empty());
    assert!(r.lifecycle.marked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn warm_pool_instances_never_reach_a_pool_and_one_going_back_is_drained_first() {
    let r = fixture();
    let warm = |kind: &str, instance: &str, origin: &str, destination: &str| {
        let mut e = lifecycle_event(kind, instance);
        e["detail"]["Origin"] = json!(origin);
        e["detail"]["Destination"] = json!(destination);
        e
    };
    r.handle(&warm("launch", "i-7", "EC2", "WarmPool"))
        .await
        .unwrap();
    r.handle(&warm("terminate", "i-8", "WarmPool", "EC2"))
        .await
        .unwrap();
    assert_eq!(
        completed(&r),
        [
            ("i-7".to_string(), "CONTINUE"),
            ("i-8".to_string(), "CONTINUE")
        ]
    );
    assert!(r.dispatcher.changes().is_empty());
    // Scale-in with reuse: i-2 goes back to the pool; the group no longer lists it.
    r.discovery
        .set(group("web-asg", vec![member("i-1", "InService", 1)], 2000));
    r.handle(&warm("terminate", "i-2", "AutoScalingGroup", "WarmPool"))
        .await
        .unwrap();
    let change = r.dispatcher.changes().remove(0);
    assert_eq!(change.pools[0].remove, [MemberId::new("i-2").unwrap()]);
    let g = change.generation;
    deliver(
        &r,
        vec![
            report_record("i-p0", &[("i-2", Drained, g)]),
            report_record("i-p1", &[("i-2", Drained, g)]),
        ],
    )
    .await;
    assert_eq!(completed(&r)[2], ("i-2".to_string(), "CONTINUE"));
}

/// Host `host`'s word on the health of `members` (DOWN since `since_ms` when
/// `healthy` is false), sent from its own session.
fn health_record(host: &str, members: &[&str], healthy: bool, since_ms: u64) -> Value {
    let body = HostReport {
        host: HostId::new(host).unwrap(),
        sent_ms: since_ms,
        reports: Vec::new(),
        health: members
            .iter()
            .map(|m| infra::HealthReport {
                pool: PoolName::new("web").unwrap(),
                member: MemberId::new(*m).unwrap(),
                healthy,
                since_ms,
            })
            .collect(),
    }
    .to_messages(MAX_MESSAGE_BYTES)
    .remove(0);
    record(
        &format!("h-{host}-{since_ms}"),
        &format!("{ROLE}:{host}"),
        &body,
    )
}

/// Three proxies, web-asg of four members in service, opted in to proxy health.
fn health_fixture(extra: &[(&str, &str)]) -> Fixture {
    // The first of a name wins: `extra` before the defaults.
    let mut kv = extra.to_vec();
    kv.extend([
        ("PROXY_HEALTH_GROUPS", "web-*"),
        ("UNHEALTHY_AFTER_S", "30"),
    ]);
    let lifecycle = FakeLifecycle::default();
    let ids = ["i-1", "i-2", "i-3", "i-4"];
    *lifecycle.groups_of.lock().unwrap() =
        ids.map(|i| (i.to_string(), "web-asg".to_string())).to_vec();
    let r = build(config(&kv), FakeHosts::new(3), lifecycle);
    let members = ids
        .iter()
        .zip(1..)
        .map(|(i, n)| member(i, "InService", n))
        .collect();
    r.discovery.set(group("web-asg", members, 1000));
    r
}

fn set_unhealthy(r: &Fixture) -> Vec<String> {
    r.lifecycle.unhealthy.lock().unwrap().clone()
}

#[tokio::test]
async fn a_member_a_quorum_of_proxies_sees_down_long_enough_is_set_unhealthy_once() {
    let r = health_fixture(&[]);
    let now = infra::now_ms();
    // One of three proxies: no quorum, however long.
    deliver(
        &r,
        vec![health_record("i-p0", &["i-2"], false, now - 120_000)],
    )
    .await;
    assert!(
        set_unhealthy(&r).is_empty(),
        "one proxy of three is no majority"
    );
    // A second, just now: a quorum, but not for 30 s yet; a reminder comes back then.
    deliver(&r, vec![health_record("i-p1", &["i-2"], false, now)]).await;
    assert!(
        set_unhealthy(&r).is_empty(),
        "not down for UNHEALTHY_AFTER_S yet"
    );
    let reminded = r.reminders.health.lock().unwrap().clone();
    assert_eq!(reminded.len(), 1);
    assert_eq!(reminded[0].0, vec![MemberId::new("i-2").unwrap()]);
    assert!(
        reminded[0].1 >= Duration::from_secs(30) && reminded[0].1 <= Duration::from_secs(32),
        "{:?}",
        reminded[0].1
    );
    // The same words, older: now the quorum has seen it down for long enough.
    deliver(
        &r,
        vec![health_record("i-p1", &["i-2"], false, now - 60_000)],
    )
    .await;
    assert!(
        set_unhealthy(&r).is_empty(),
        "an older word changes nothing"
    );
    let inv = deliver(
        &r,
        vec![health_record("i-p2", &["i-2"], false, now - 40_000)],
    )
    .await;
    assert_eq!(set_unhealthy(&r), vec!["i-2".to_string()]);
    assert_eq!(inv.summary.unhealthy.len(), 1);
    assert!(
        inv.summary.unhealthy[0].contains("i-p0") && inv.summary.unhealthy[0].contains("i-p2"),
        "{:?}",
        inv.summary.unhealthy
    );
    // Said again, and reminded: never a second call.
    deliver(
        &r,
        vec![health_record("i-p1", &["i-2"], false, now - 50_000)],
    )
    .await;
    let body =
        crate::input::recheck::Recheck::health_messages(&[MemberId::new("i-2").unwrap()]).remove(0);
    deliver(&r, vec![record("rh", "AIDAREACTOREXAMPLE", &body)]).await;
    assert_eq!(set_unhealthy(&r), vec!["i-2".to_string()], "once");
}

#[tokio::test]
async fn a_member_back_up_or_a_group_not_opted_in_is_never_set_unhealthy() {
    let r = health_fixture(&[("PROXY_HEALTH_GROUPS", "api-*")]);
    let old = infra::now_ms() - 120_000;
    let all: Vec<Value> = ["i-p0", "i-p1", "i-p2"]
        .iter()
        .map(|h| health_record(h, &["i-1"], false, old))
        .collect();
    deliver(&r, all).await;
    assert!(set_unhealthy(&r).is_empty(), "web-asg did not opt in");
    let r = health_fixture(&[]);
    deliver(&r, vec![health_record("i-p0", &["i-1"], false, old)]).await;
    deliver(&r, vec![health_record("i-p0", &["i-1"], true, old + 1_000)]).await;
    deliver(&r, vec![health_record("i-p1", &["i-1"], false, old)]).await;
    assert!(
        set_unhealthy(&r).is_empty(),
        "i-p0 sees it up again: one of three"
    );
    // Opted out entirely: reports are not even kept.
    let r = build(config(&[]), FakeHosts::new(1), FakeLifecycle::default());
    deliver(&r, vec![health_record("i-p0", &["i-1"], false, old)]).await;
    assert!(r
        .ledger
        .docs(&["health#i-1".to_string()])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn every_member_failing_at_once_sets_at_most_the_fraction_unhealthy() {
    let r = health_fixture(&[]);
    let old = infra::now_ms() - 120_000;
    let ids = ["i-1", "i-2", "i-3", "i-4"];
    let words: Vec<Value> = ["i-p0", "i-p1", "i-p2"]
        .iter()
        .map(|h| health_record(h, &ids, false, old))
        .collect();
    let inv = deliver(&r, words).await;
    assert_eq!(
        set_unhealthy(&r).len(),
        1,
        "a quarter of four: {:?}",
        set_unhealthy(&r)
    );
    assert_eq!(inv.summary.unhealthy_held.len(), 3, "{:?}", inv.summary);
    // The held ones are looked at again later: their group's place may be free then.
    let reminded = r.reminders.health.lock().unwrap().clone();
    assert_eq!(
        reminded.last().map(|(m, _)| m.len()),
        Some(3),
        "{reminded:?}"
    );
    // The one set unhealthy is replaced (it left the group): the next may go.
    let gone = set_unhealthy(&r)[0].clone();
    let members = ids
        .iter()
        .zip(1..)
        .filter(|(i, _)| **i != gone)
        .map(|(i, n)| member(i, "InService", n))
        .collect();
    r.discovery.set(group("web-asg", members, 2000));
    let next = ids.iter().find(|i| **i != gone).unwrap();
    let body =
        crate::input::recheck::Recheck::health_messages(&[MemberId::new(*next).unwrap()]).remove(0);
    deliver(&r, vec![record("rh", "AIDAREACTOREXAMPLE", &body)]).await;
    assert_eq!(set_unhealthy(&r).len(), 2, "{:?}", set_unhealthy(&r));
}

#[tokio::test]
async fn members_carry_their_zone_only_with_member_zones_and_their_groups_weight() {
    for (zones, weight) in [("false", None), ("true", Some(90))] {
        let pools = match weight {
            Some(w) => format!(r#"{{"web-asg":[{{"name":"web","port":8080,"weight":{w}}}]}}"#),
            None => r#"{"web-asg":[{"name":"web","port":8080}]}"#.to_string(),
        };
        let cfg = config(&[("MEMBER_ZONES", zones), ("POOLS", &pools)]);
        let r = build(cfg, FakeHosts::new(2), FakeLifecycle::default());
        let zone = Some(infra::Zone::new("us-east-1b").unwrap());
        let joining = member("i-2", "Pending:Wait", 2).in_zone(zone.clone());
        r.discovery.set(group("web-asg", vec![joining], 1000));
        deliver(
            &r,
            vec![event_record("e1", &lifecycle_event("launch", "i-2"))],
        )
        .await;
        let change = r.dispatcher.changes().pop().unwrap();
        let added = &change.pools[0].add[0];
        assert_eq!(
            added.zone,
            zone.filter(|_| zones == "true"),
            "MEMBER_ZONES={zones}"
        );
        assert_eq!(added.weight.map(infra::Weight::get), weight.map(|w: u16| w));
    }
}
