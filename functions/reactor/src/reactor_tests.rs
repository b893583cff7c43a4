//! The whole flow against in-process fakes of the four boundaries.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use infra::aws::{AwsError, Discovery, GroupMember, GroupState};
use infra::{Change, MemberId, Outcome, OutcomeStatus, Report};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher, HostResult};
use crate::dns::{DnsApi, DnsError, Record, RecordChange};
use crate::lifecycle::{Completion, Hook, LifecycleApi};

#[derive(Default)]
struct FakeDiscovery {
    groups: Mutex<Vec<GroupState>>,
    instance_groups: BTreeMap<String, String>,
}

impl FakeDiscovery {
    fn set(&self, state: GroupState) {
        let mut g = self.groups.lock().unwrap();
        g.retain(|s| s.name != state.name);
        g.push(state);
    }
}

impl Discovery for FakeDiscovery {
    async fn group(&self, name: &str) -> Result<Option<GroupState>, AwsError> {
        Ok(self
            .groups
            .lock()
            .unwrap()
            .iter()
            .find(|g| g.name == name)
            .cloned())
    }
    async fn groups(&self, names: &[String]) -> Result<Vec<GroupState>, AwsError> {
        Ok(self
            .groups
            .lock()
            .unwrap()
            .iter()
            .filter(|g| names.contains(&g.name))
            .cloned()
            .collect())
    }
    async fn group_of_instance(&self, id: &str) -> Result<Option<String>, AwsError> {
        Ok(self.instance_groups.get(id).cloned())
    }
    async fn tagged_groups(&self) -> Result<Vec<String>, AwsError> {
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

/// Hosts that bring every added member up (unless told it fails) and drain every
/// removed one; records every change.
struct FakeHosts {
    hosts: usize,
    failing: Vec<String>,
    broken_host: bool,
    sent: Mutex<Vec<Change>>,
}

impl FakeHosts {
    fn new(hosts: usize) -> Self {
        Self {
            hosts,
            failing: Vec::new(),
            broken_host: false,
            sent: Mutex::new(Vec::new()),
        }
    }
}

impl Dispatcher for FakeHosts {
    async fn dispatch(
        &self,
        change: &Change,
        _: &str,
        _: Instant,
    ) -> Result<Vec<HostResult>, DispatchError> {
        self.sent.lock().unwrap().push(change.clone());
        let mut out = Vec::new();
        for h in 0..self.hosts {
            let host = format!("h{h}");
            if self.broken_host && h == self.hosts - 1 {
                out.push(HostResult::failed(
                    host,
                    "SSM status Failed: agent exited with code 2: HAProxy unreachable",
                ));
                continue;
            }
            let mut outcomes = Vec::new();
            for p in &change.pools {
                for m in &p.add {
                    let failed = self.failing.contains(&m.id.to_string()) && h == 0;
                    outcomes.push(Outcome {
                        pool: p.pool.clone(),
                        member: m.id.clone(),
                        slot: None,
                        status: if failed {
                            OutcomeStatus::Failed
                        } else {
                            OutcomeStatus::Up
                        },
                        reason: failed.then(|| "health check timed out".into()),
                        ms: 1,
                    });
                }
                for id in &p.remove {
                    outcomes.push(Outcome {
                        pool: p.pool.clone(),
                        member: id.clone(),
                        slot: None,
                        status: OutcomeStatus::Drained,
                        reason: None,
                        ms: 1,
                    });
                }
            }
            out.push(HostResult::report(
                host.clone(),
                Report {
                    host,
                    generation: change.generation,
                    ok: true,
                    reloads: 0,
                    outcomes,
                },
            ));
        }
        Ok(out)
    }
}

#[derive(Default)]
struct FakeLifecycle {
    completed: Mutex<Vec<(String, String, String, &'static str)>>,
    /// Other systems' hooks on the group.
    foreign: Vec<Hook>,
}

impl LifecycleApi for FakeLifecycle {
    async fn hooks(&self, _: &str) -> Result<Vec<Hook>, AwsError> {
        Ok([
            Hook {
                name: "launch-hook".into(),
                transition: Transition::Launch,
                heartbeat_timeout: Duration::from_secs(300),
            },
            Hook {
                name: "terminate-hook".into(),
                transition: Transition::Terminate,
                heartbeat_timeout: Duration::from_secs(300),
            },
        ]
        .into_iter()
        .chain(self.foreign.iter().cloned())
        .collect())
    }
    async fn complete(
        &self,
        group: &str,
        hook: &str,
        instance: &str,
        _: Option<&str>,
        result: &'static str,
    ) -> Result<Completion, AwsError> {
        self.completed
            .lock()
            .unwrap()
            .push((group.into(), hook.into(), instance.into(), result));
        Ok(Completion::Done)
    }
    async fn heartbeat(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<Completion, AwsError> {
        Ok(Completion::Done)
    }
}

#[derive(Default)]
struct FakeDns {
    records: Mutex<Vec<Record>>,
    requests: Mutex<usize>,
}

impl DnsApi for FakeDns {
    async fn list(&self, _: &str, _: &str) -> Result<Vec<Record>, DnsError> {
        Ok(self.records.lock().unwrap().clone())
    }
    async fn change(&self, _: &str, _: &str, batch: &[RecordChange]) -> Result<(), DnsError> {
        *self.requests.lock().unwrap() += 1;
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

type Fixture = Reactor<FakeDiscovery, FakeHosts, FakeLifecycle, FakeDns>;

fn member(id: &str, state: &str, n: u8) -> GroupMember {
    GroupMember::new(
        MemberId::new(id).unwrap(),
        state,
        Some("running".into()),
        Some(format!("10.0.0.{n}").parse().unwrap()),
    )
}

fn group(name: &str, members: Vec<GroupMember>, read_at_ms: u64) -> GroupState {
    GroupState {
        name: name.into(),
        tags: BTreeMap::new(),
        members,
        read_at_ms,
    }
}

fn fixture(hosts: FakeHosts) -> Fixture {
    let config = Config::from_lookup(|k| match k {
        "POOLS" => Some(r#"{"web-asg":[{"name":"web","port":8080}]}"#.into()),
        "LOCAL_AGENTS" => Some("[]".into()),
        "PROXY_GROUP" => Some("proxies".into()),
        "DNS_ZONE_ID" => Some("Z1".into()),
        "DNS_RECORD_NAME" => Some("lb.example.com".into()),
        _ => None,
    })
    .unwrap();
    let mut d = FakeDiscovery::default();
    d.instance_groups.insert("i-2".into(), "web-asg".into());
    Reactor::new(
        config,
        d,
        hosts,
        FakeLifecycle::default(),
        Some(FakeDns::default()),
    )
}

fn lifecycle_event(kind: &str, instance: &str) -> Value {
    let (dt, tr) = match kind {
        "launch" => (
            "EC2 Instance-launch Lifecycle Action",
            "autoscaling:EC2_INSTANCE_LAUNCHING",
        ),
        _ => (
            "EC2 Instance-terminate Lifecycle Action",
            "autoscaling:EC2_INSTANCE_TERMINATING",
        ),
    };
    let hook = format!("{kind}-hook");
    json!({"version":"0","id":"e1","detail-type":dt,"source":"aws.autoscaling",
        "time":"2026-11-20T10:00:00Z",
        "detail":{"LifecycleActionToken":"tok","AutoScalingGroupName":"web-asg",
          "LifecycleHookName":hook,"EC2InstanceId":instance,"LifecycleTransition":tr}})
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
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

/// A group also holding another system's launch hook ("bootstrap"), and a reactor told
/// its own hooks.
fn fixture_with_a_foreign_hook() -> Fixture {
    let config = Config::from_lookup(|k| match k {
        "POOLS" => Some(r#"{"web-asg":[{"name":"web","port":8080}]}"#.into()),
        "LOCAL_AGENTS" => Some("[]".into()),
        "LIFECYCLE_HOOKS" => Some("launch-hook,terminate-hook".into()),
        _ => None,
    })
    .unwrap();
    let lifecycle = FakeLifecycle {
        foreign: vec![Hook {
            name: "bootstrap".into(),
            transition: Transition::Launch,
            heartbeat_timeout: Duration::from_secs(300),
        }],
        ..FakeLifecycle::default()
    };
    let r = Reactor::new(
        config,
        FakeDiscovery::default(),
        FakeHosts::new(2),
        lifecycle,
        None,
    );
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1000,
    ));
    r
}

#[tokio::test]
async fn another_systems_hook_is_never_completed() {
    // Its event is left alone: nothing sent, nothing completed.
    let r = fixture_with_a_foreign_hook();
    let mut event = lifecycle_event("launch", "i-2");
    event["detail"]["LifecycleHookName"] = json!("bootstrap");
    let s = r.handle(&event, far()).await.unwrap();
    assert!(
        s.ignored
            .as_deref()
            .is_some_and(|i| i.contains("bootstrap")),
        "{s:?}"
    );
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());
    assert!(completed(&r).is_empty());

    // Our hook's event completes our hook only.
    r.handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    let hooks: Vec<String> = r
        .lifecycle
        .completed
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(hooks, ["launch-hook"]);

    // The schedule, which knows no hook from an event, completes ours only too.
    let r = fixture_with_a_foreign_hook();
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    r.handle(&sched, far()).await.unwrap();
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
async fn launch_is_continued_once_up_on_every_host() {
    let r = fixture(FakeHosts::new(3));
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1000,
    ));
    let s = r
        .handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].pools[0].add.len(),
        1,
        "only the member in transition"
    );
    assert_eq!(sent[0].pools[0].add[0].id.as_str(), "i-2");
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(s.hosts.len(), 3);
    assert_eq!(s.generation, Some(1000));
}

#[tokio::test]
async fn launch_failing_on_one_host_is_abandoned() {
    let mut hosts = FakeHosts::new(2);
    hosts.failing.push("i-2".into());
    let r = fixture(hosts);
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    let s = r
        .handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    assert_eq!(completed(&r), [("i-2".to_string(), "ABANDON")]);
    assert!(s.actions[0].reason.contains("health check timed out"));
}

#[tokio::test]
async fn a_broken_host_leaves_the_launch_pending_and_names_the_host() {
    let mut hosts = FakeHosts::new(2);
    hosts.broken_host = true;
    let r = fixture(hosts);
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    let s = r
        .handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    assert!(completed(&r).is_empty());
    assert_eq!(s.actions[0].decision, "WAIT");
    assert!(
        s.actions[0].reason.contains("host h1 failed"),
        "{}",
        s.actions[0].reason
    );
    assert!(s.hosts[1]
        .error
        .as_deref()
        .unwrap()
        .contains("HAProxy unreachable"));
}

#[tokio::test]
async fn terminate_is_continued_after_the_drain() {
    let r = fixture(FakeHosts::new(2));
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Terminating:Wait", 2),
        ],
        1000,
    ));
    r.handle(&lifecycle_event("terminate", "i-2"), far())
        .await
        .unwrap();
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert_eq!(sent[0].pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert!(sent[0].pools[0].add.is_empty());
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
}

#[tokio::test]
async fn a_late_launch_event_never_adds_a_terminating_instance() {
    let r = fixture(FakeHosts::new(1));
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Terminating:Wait", 2)],
        1000,
    ));
    let s = r
        .handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert!(sent[0].pools[0].add.is_empty());
    assert_eq!(sent[0].pools[0].remove.len(), 1);
    // Its terminate action is what is pending, and it is drained: continued.
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert!(s.notes.iter().any(|n| n.contains("not pending")));
}

#[tokio::test]
async fn duplicates_get_newer_generations_and_converge() {
    let r = fixture(FakeHosts::new(1));
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    r.handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    // The action completed; the group now says InService. The duplicate re-sends the
    // same truth with a newer generation and completes nothing.
    r.discovery
        .set(group("web-asg", vec![member("i-2", "InService", 2)], 1000));
    let s = r
        .handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap();
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].generation > sent[0].generation);
    assert_eq!(sent[1].pools[0].add[0].id.as_str(), "i-2");
    assert_eq!(completed(&r).len(), 1);
    assert!(s.actions.is_empty());
}

#[tokio::test]
async fn unknown_groups_and_malformed_events_are_acknowledged_without_effect() {
    let r = fixture(FakeHosts::new(1));
    r.discovery.set(group(
        "other-asg",
        vec![member("i-9", "Pending:Wait", 9)],
        1,
    ));
    let mut ev = lifecycle_event("launch", "i-9");
    ev["detail"]["AutoScalingGroupName"] = json!("other-asg");
    let s = r.handle(&ev, far()).await.unwrap();
    assert!(s.ignored.unwrap().contains("not managed"));
    ev["detail"]["AutoScalingGroupName"] = json!("gone-asg");
    let s = r.handle(&ev, far()).await.unwrap();
    assert!(s.ignored.unwrap().contains("does not exist"));
    let s = r.handle(&json!({"detail-type": 3}), far()).await.unwrap();
    assert!(s.ignored.is_some());
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());
    assert!(completed(&r).is_empty());
}

#[tokio::test]
async fn bad_tags_are_an_error_naming_the_group_and_tag() {
    let r = fixture(FakeHosts::new(1));
    let mut g = group("web-asg", vec![member("i-2", "Pending:Wait", 2)], 1);
    g.tags.insert("haproxy:port".into(), "http".into());
    r.discovery.set(g);
    let e = r
        .handle(&lifecycle_event("launch", "i-2"), far())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("web-asg") && e.contains("haproxy:port"), "{e}");
}

#[tokio::test]
async fn the_schedule_completes_what_events_missed() {
    let r = fixture(FakeHosts::new(2));
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Pending:Wait", 2),
            member("i-3", "Terminating:Wait", 3),
        ],
        5000,
    ));
    let mut tagged = group("tagged-asg", vec![member("i-7", "InService", 7)], 5000);
    tagged.tags.insert("haproxy:pool".into(), "api".into());
    tagged.tags.insert("haproxy:port".into(), "9000".into());
    r.discovery.set(tagged);
    let sched = json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}});
    let s = r.handle(&sched, far()).await.unwrap();
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one change for every group");
    let web = sent[0]
        .pools
        .iter()
        .find(|p| p.pool.as_str() == "web")
        .unwrap();
    assert_eq!(web.add.len(), 2);
    assert_eq!(web.remove.len(), 1);
    let api = sent[0]
        .pools
        .iter()
        .find(|p| p.pool.as_str() == "api")
        .unwrap();
    assert_eq!(api.add[0].port.get(), 9000);
    let mut done = completed(&r);
    done.sort();
    assert_eq!(
        done,
        [
            ("i-2".to_string(), "CONTINUE"),
            ("i-3".to_string(), "CONTINUE")
        ]
    );
    assert!(s.groups.contains(&"tagged-asg".to_string()));
}

#[tokio::test]
async fn ec2_state_changes_find_their_group() {
    let r = fixture(FakeHosts::new(1));
    let mut m = member("i-2", "InService", 2);
    m = GroupMember::new(m.id, "InService", Some("shutting-down".into()), m.address);
    r.discovery.set(group("web-asg", vec![m], 1));
    let ev = json!({"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2",
        "detail":{"instance-id":"i-2","state":"shutting-down"}});
    r.handle(&ev, far()).await.unwrap();
    let sent = r.dispatcher.sent.lock().unwrap().clone();
    assert_eq!(sent[0].pools[0].remove[0].as_str(), "i-2");
    let ev = json!({"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2",
        "detail":{"instance-id":"i-404","state":"running"}});
    let s = r.handle(&ev, far()).await.unwrap();
    assert!(s.ignored.unwrap().contains("no Auto Scaling group"));
}

#[tokio::test]
async fn proxy_fleet_changes_keep_the_records_in_step() {
    let r = fixture(FakeHosts::new(1));
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
    let s = r.handle(&ev, far()).await.unwrap();
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
        r.dispatcher.sent.lock().unwrap().is_empty(),
        "no change for the proxy group itself"
    );
}
