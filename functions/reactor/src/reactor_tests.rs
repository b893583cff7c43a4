//! The whole flow against in-process fakes of the four boundaries.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use infra::aws::{AwsError, Discovery, GroupMember, GroupState};
use infra::{Change, MemberId, Outcome, OutcomeStatus, Report};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::context::Context;
use crate::dispatch::{CommandInfo, DispatchError, Dispatcher, HostFailure, HostResult, Sent};
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
/// removed one; records every command sent, and answers its results when asked (as SSM
/// does once the command ended).
struct FakeHosts {
    hosts: usize,
    failing: Vec<String>,
    broken_host: bool,
    sent: Mutex<Vec<(String, Change, Context)>>,
    /// Commands still running (the schedule heartbeats their actions).
    running: Mutex<Vec<String>>,
    /// Per command, per host: what it reports for every added member (default: up).
    scripted: BTreeMap<String, Vec<OutcomeStatus>>,
}

impl FakeHosts {
    fn new(hosts: usize) -> Self {
        Self {
            hosts,
            failing: Vec::new(),
            broken_host: false,
            sent: Mutex::new(Vec::new()),
            running: Mutex::new(Vec::new()),
            scripted: BTreeMap::new(),
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
    async fn hosts(&self, _: &str) -> Result<Vec<String>, DispatchError> {
        Ok((0..self.hosts).map(|h| format!("h{h}")).collect())
    }

    async fn send(
        &self,
        hosts: &[String],
        change: &Change,
        context: &Context,
        _: &str,
    ) -> Result<Vec<Sent>, DispatchError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let mut sent = self.sent.lock().unwrap();
        let id = format!("cmd-{}", sent.len() + 1);
        sent.push((id.clone(), change.clone(), context.clone()));
        Ok(vec![Sent {
            command_id: id,
            hosts: hosts.to_vec(),
        }])
    }

    async fn results(&self, command_id: &str) -> Result<Vec<HostResult>, DispatchError> {
        let script = self.scripted.get(command_id).cloned();
        let Some((_, change, _)) = self
            .sent
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.0 == command_id)
            .cloned()
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for h in 0..self.hosts {
            let host = format!("h{h}");
            if self.broken_host && h == self.hosts - 1 {
                out.push(HostResult::failed(
                    host,
                    HostFailure::Exit {
                        code: Some(2),
                        excerpt: "error: HAProxy unreachable".into(),
                    },
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
                            script
                                .as_ref()
                                .and_then(|s| s.get(h).copied())
                                .unwrap_or(OutcomeStatus::Up)
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

    async fn commands(&self, _: u64) -> Result<Vec<CommandInfo>, DispatchError> {
        let running = self.running.lock().unwrap().clone();
        Ok(self
            .sent
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(n, (id, _, ctx))| CommandInfo {
                command_id: id.clone(),
                finished: !running.contains(id),
                status: if running.contains(id) {
                    "InProgress"
                } else {
                    "Success"
                }
                .into(),
                requested_ms: 1_000 + n as u64,
                context: Some(ctx.clone()),
            })
            .collect())
    }
}

#[derive(Default)]
struct FakeLifecycle {
    completed: Mutex<Vec<(String, String, String, &'static str)>>,
    heartbeats: Mutex<Vec<String>>,
    /// Instances tagged interrupted, with the tag's value.
    marked: Mutex<Vec<(String, String)>>,
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
        let mut done = self.completed.lock().unwrap();
        // An action is completed once; Auto Scaling refuses the second.
        if done
            .iter()
            .any(|(g, h, i, _)| g == group && h == hook && i == instance)
        {
            return Ok(Completion::NotPending("No active Lifecycle Action".into()));
        }
        done.push((group.into(), hook.into(), instance.into(), result));
        Ok(Completion::Done)
    }
    async fn heartbeat(
        &self,
        _: &str,
        _: &str,
        instance: &str,
        _: Option<&str>,
    ) -> Result<Completion, AwsError> {
        self.heartbeats.lock().unwrap().push(instance.to_string());
        Ok(Completion::Done)
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
        "SSM_DOCUMENT" => Some("doc".into()),
        "PROXY_TAG_KEY" => Some("Role".into()),
        "PROXY_TAG_VALUE" => Some("proxy".into()),
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

/// The status event of command `id`, as SSM puts it on EventBridge when it ends.
fn ended(r: &Fixture, id: &str) -> Value {
    let ctx = r
        .dispatcher
        .sent
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.0 == id)
        .map(|s| s.2.encode())
        .unwrap_or_default();
    json!({"version":"0","id":"ev","detail-type":"EC2 Command Status-change Notification",
        "source":"aws.ssm","detail":{"command-id":id,"document-name":"doc","status":"Success",
        "parameters":{"Action":["apply"],"Change":["e30="],"Context":[ctx]}}})
}

/// Ends the last command sent: its status event, handled.
async fn end_last(r: &Fixture) -> Summary {
    let id = r.dispatcher.sent.lock().unwrap().last().unwrap().0.clone();
    r.handle(&ended(r, &id)).await.unwrap()
}

fn sched() -> Value {
    json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}})
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
        "SSM_DOCUMENT" => Some("doc".into()),
        "PROXY_TAG_KEY" => Some("Role".into()),
        "PROXY_TAG_VALUE" => Some("proxy".into()),
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
    let s = r.handle(&event).await.unwrap();
    assert!(
        s.ignored
            .as_deref()
            .is_some_and(|i| i.contains("bootstrap")),
        "{s:?}"
    );
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());
    assert!(completed(&r).is_empty());

    // Our hook's event completes our hook only, once its command ended.
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    end_last(&r).await;
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
    r.handle(&sched()).await.unwrap();
    end_last(&r).await;
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
async fn a_launch_is_sent_at_once_and_continued_when_its_command_reports_up_everywhere() {
    let r = fixture(FakeHosts::new(3));
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1000,
    ));
    let s = r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].pools[0].add.len(),
        1,
        "only the member in transition"
    );
    assert_eq!(sent[0].pools[0].add[0].id.as_str(), "i-2");
    // The invocation returned without completing: the hosts have not reported yet.
    assert!(completed(&r).is_empty());
    assert_eq!(s.commands, ["cmd-1"]);
    assert_eq!(s.actions[0].decision, "WAIT");
    assert_eq!(s.generation, Some(1000));
    // The context carries what completes the action.
    let ctx = r.dispatcher.sent.lock().unwrap()[0].2.clone();
    assert_eq!(ctx.actions.len(), 1);
    assert_eq!(ctx.actions[0].instance.as_str(), "i-2");
    assert_eq!(ctx.actions[0].hooks, ["launch-hook"]);
    assert_eq!(ctx.actions[0].token.as_deref(), Some("tok"));
    assert_eq!(ctx.actions[0].pools[0].as_str(), "web");

    let s = end_last(&r).await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert_eq!(s.hosts.len(), 3);
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
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    let s = end_last(&r).await;
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
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    let s = end_last(&r).await;
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
    // The schedule sends it again, and the next command's end settles it.
    r.handle(&sched()).await.unwrap();
    assert_eq!(r.dispatcher.changes().len(), 2);
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
    r.handle(&lifecycle_event("terminate", "i-2"))
        .await
        .unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent[0].pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert!(sent[0].pools[0].add.is_empty());
    assert!(completed(&r).is_empty(), "no invocation waits for a drain");
    end_last(&r).await;
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
    let s = r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    let sent = r.dispatcher.changes();
    assert!(sent[0].pools[0].add.is_empty());
    assert_eq!(sent[0].pools[0].remove.len(), 1);
    assert!(s.notes.iter().any(|n| n.contains("not pending")));
    // Its terminate action is what is pending, and it is drained: continued.
    end_last(&r).await;
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
}

#[tokio::test]
async fn duplicate_and_late_events_change_nothing() {
    let r = fixture(FakeHosts::new(1));
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    end_last(&r).await;
    // The action completed; the group now says InService. The duplicate lifecycle event
    // re-sends the same truth with a newer generation and carries no action.
    r.discovery
        .set(group("web-asg", vec![member("i-2", "InService", 2)], 1000));
    let s = r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].generation > sent[0].generation);
    assert_eq!(sent[1].pools[0].add[0].id.as_str(), "i-2");
    assert!(s.actions.is_empty());
    let s = end_last(&r).await;
    assert!(s.ignored.unwrap().contains("no lifecycle action"));
    // The first command's status event again (duplicated, late): nothing new completes.
    let again = r.handle(&ended(&r, "cmd-1")).await.unwrap();
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert!(!again.actions[0].completed, "{again:?}");
}

#[tokio::test]
async fn status_events_of_other_documents_and_unreadable_contexts_change_nothing() {
    let r = fixture(FakeHosts::new(1));
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    let mut other = ended(&r, "cmd-1");
    other["detail"]["document-name"] = json!("AWS-RunShellScript");
    let s = r.handle(&other).await.unwrap();
    assert!(s.ignored.unwrap().contains("not ours"));
    let mut garbled = ended(&r, "cmd-1");
    garbled["detail"]["parameters"]["Context"] = json!(["@@@"]);
    let s = r.handle(&garbled).await.unwrap();
    assert!(s.ignored.unwrap().contains("base64"));
    let mut running = ended(&r, "cmd-1");
    running["detail"]["status"] = json!("InProgress");
    r.handle(&running).await.unwrap();
    assert!(completed(&r).is_empty());
}

#[tokio::test]
async fn a_lost_status_event_is_repaired_by_the_schedule_and_running_drains_get_heartbeats() {
    let r = fixture(FakeHosts::new(2));
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-2", "Pending:Wait", 2),
            member("i-3", "InService", 3),
        ],
        1000,
    ));
    // The launch's command ended, but its status event never arrived.
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    // The terminate's command still drains.
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-2", "Pending:Wait", 2),
            member("i-3", "Terminating:Wait", 3),
        ],
        2000,
    ));
    r.handle(&lifecycle_event("terminate", "i-3"))
        .await
        .unwrap();
    r.dispatcher.running.lock().unwrap().push("cmd-2".into());
    let s = r.handle(&sched()).await.unwrap();
    // The launch is decided from its command's reports...
    assert!(
        completed(&r).contains(&("i-2".to_string(), "CONTINUE")),
        "{s:?}"
    );
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("without its status event")));
    // ...the drain still running is kept alive, not completed, not sent again.
    assert!(!completed(&r).iter().any(|c| c.0 == "i-3"));
    assert!(r
        .lifecycle
        .heartbeats
        .lock()
        .unwrap()
        .contains(&"i-3".to_string()));
    let last = r.dispatcher.sent.lock().unwrap().last().unwrap().2.clone();
    assert!(
        last.actions.is_empty(),
        "the schedule's change carries no action another command serves: {last:?}"
    );
}

#[tokio::test]
async fn a_launch_of_a_leaving_instance_is_abandoned_and_no_host_means_continue() {
    let r = fixture(FakeHosts::new(1));
    let leaving = GroupMember::new(
        MemberId::new("i-2").unwrap(),
        "Pending:Wait",
        Some("shutting-down".into()),
        Some("10.0.0.2".parse().unwrap()),
    );
    r.discovery.set(group("web-asg", vec![leaving], 1000));
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    assert_eq!(completed(&r), [("i-2".to_string(), "ABANDON")]);

    let r = fixture(FakeHosts::new(0));
    r.discovery.set(group(
        "web-asg",
        vec![member("i-2", "Pending:Wait", 2)],
        1000,
    ));
    let s = r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")]);
    assert!(s.actions[0].reason.contains("no proxy host"));
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
    let s = r.handle(&ev).await.unwrap();
    assert!(s.ignored.unwrap().contains("not managed"));
    ev["detail"]["AutoScalingGroupName"] = json!("gone-asg");
    let s = r.handle(&ev).await.unwrap();
    assert!(s.ignored.unwrap().contains("not managed"));
    let s = r.handle(&json!({"detail-type": 3})).await.unwrap();
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
        .handle(&lifecycle_event("launch", "i-2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("web-asg") && e.contains("haproxy:port"), "{e}");
}

fn schedule_fixture(managed: Option<&'static str>) -> Fixture {
    let config = Config::from_lookup(|k| match k {
        "POOLS" => Some(r#"{"web-asg":[{"name":"web","port":8080}]}"#.into()),
        "SSM_DOCUMENT" => Some("doc".into()),
        "PROXY_TAG_KEY" => Some("Role".into()),
        "PROXY_TAG_VALUE" => Some("proxy".into()),
        "MANAGED_GROUPS" => managed.map(str::to_string),
        _ => None,
    })
    .unwrap();
    let r = Reactor::new(
        config,
        FakeDiscovery::default(),
        FakeHosts::new(2),
        FakeLifecycle::default(),
        None,
    );
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
    r
}

#[tokio::test]
async fn the_schedule_completes_what_events_missed() {
    let r = schedule_fixture(None);
    r.handle(&sched()).await.unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent.len(), 1, "one change for every group");
    let web = sent[0]
        .pools
        .iter()
        .find(|p| p.pool.as_str() == "web")
        .unwrap();
    assert_eq!(web.add.len(), 2);
    assert_eq!(web.remove.len(), 1);
    end_last(&r).await;
    let mut done = completed(&r);
    done.sort();
    assert_eq!(
        done,
        [
            ("i-2".to_string(), "CONTINUE"),
            ("i-3".to_string(), "CONTINUE")
        ]
    );
}

#[tokio::test]
async fn a_tagged_group_reaches_a_pool_only_when_allowed() {
    // Tagging a group is not enough: it is never added, and the schedule says why.
    let r = schedule_fixture(None);
    let s = r.handle(&sched()).await.unwrap();
    let sent = r.dispatcher.changes();
    assert!(
        sent[0].pools.iter().all(|p| p.pool.as_str() != "api"),
        "{sent:?}"
    );
    assert!(!s.groups.contains(&"tagged-asg".to_string()));
    assert_eq!(
        s.notes
            .iter()
            .filter(|n| n.contains("tagged-asg") && n.contains("not managed"))
            .count(),
        1,
        "{s:?}"
    );
    let mut ev = lifecycle_event("launch", "i-7");
    ev["detail"]["AutoScalingGroupName"] = json!("tagged-asg");
    assert!(r
        .handle(&ev)
        .await
        .unwrap()
        .ignored
        .unwrap()
        .contains("not managed"));
    // Allowed by MANAGED_GROUPS: its tags choose its pool and port.
    let r = schedule_fixture(Some("tagged-*"));
    let s = r.handle(&sched()).await.unwrap();
    let sent = r.dispatcher.changes();
    let api = sent[0]
        .pools
        .iter()
        .find(|p| p.pool.as_str() == "api")
        .unwrap();
    assert_eq!(api.add[0].port.get(), 9000);
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
    r.handle(&ev).await.unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent[0].pools[0].remove[0].as_str(), "i-2");
    let ev = json!({"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2",
        "detail":{"instance-id":"i-404","state":"running"}});
    let s = r.handle(&ev).await.unwrap();
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
        r.dispatcher.sent.lock().unwrap().is_empty(),
        "no change for the proxy group itself"
    );
}

fn warning_event(kind: &str, instance: &str) -> Value {
    let dt = match kind {
        "spot" => "EC2 Spot Instance Interruption Warning",
        _ => "EC2 Instance Rebalance Recommendation",
    };
    json!({"version":"0","id":"w1","detail-type":dt,"source":"aws.ec2",
        "time":"2026-11-20T10:00:00Z",
        "detail":{"instance-id":instance,"instance-action":"terminate"}})
}

fn fixture_with(extra: &[(&str, &str)]) -> Fixture {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_lookup(|k| {
        if let Some((_, v)) = extra.iter().find(|(n, _)| n == k) {
            return Some(v.clone());
        }
        match k {
            "POOLS" => Some(r#"{"web-asg":[{"name":"web","port":8080}]}"#.into()),
            "SSM_DOCUMENT" => Some("doc".into()),
            "PROXY_TAG_KEY" => Some("Role".into()),
            "PROXY_TAG_VALUE" => Some("proxy".into()),
            _ => None,
        }
    })
    .unwrap();
    let mut d = FakeDiscovery::default();
    d.instance_groups.insert("i-1".into(), "web-asg".into());
    d.instance_groups.insert("i-2".into(), "web-asg".into());
    d.instance_groups.insert("i-9".into(), "other-asg".into());
    let r = Reactor::new(config, d, FakeHosts::new(2), FakeLifecycle::default(), None);
    r.discovery.set(group(
        "web-asg",
        vec![member("i-1", "InService", 1), member("i-2", "InService", 2)],
        1000,
    ));
    r
}

#[tokio::test]
async fn a_spot_warning_drains_at_once_by_a_deadline_and_its_terminate_is_continued_from_that_drain(
) {
    let r = fixture_with(&[]);
    let s = r.handle(&warning_event("spot", "i-2")).await.unwrap();
    assert_eq!(s.event, "spot-interruption-warning");
    // Marked on the instance, with the deadline: the warning's time + 90 s.
    let warned = crate::event::parse_rfc3339_ms("2026-11-20T10:00:00Z").unwrap();
    let deadline = warned + 90_000;
    assert_eq!(
        r.lifecycle.marked.lock().unwrap().clone(),
        [("i-2".to_string(), deadline.to_string())]
    );
    // Drained on every host at once, by that deadline; i-1 untouched.
    let sent = r.dispatcher.changes();
    assert_eq!(sent.len(), 1);
    let web = &sent[0].pools[0];
    assert_eq!(web.remove, [MemberId::new("i-2").unwrap()]);
    assert!(web.add.is_empty());
    assert_eq!(
        web.drain_by_ms.values().copied().collect::<Vec<_>>(),
        [deadline]
    );

    // While it drains, Auto Scaling starts terminating it; the drain ends.
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-2", "Terminating:Wait", 2).interrupt(infra::aws::Interruption {
                drain_by_ms: Some(deadline),
            }),
        ],
        2000,
    ));
    let s = r.handle(&ended(&r, "cmd-1")).await.unwrap();
    assert_eq!(completed(&r), [("i-2".to_string(), "CONTINUE")], "{s:?}");
}

#[tokio::test]
async fn an_interrupted_member_is_never_added_back_and_duplicate_warnings_do_nothing() {
    let r = fixture_with(&[]);
    let marked = |id: &str| {
        member(id, "InService", 2).interrupt(infra::aws::Interruption {
            drain_by_ms: Some(5),
        })
    };
    r.discovery.set(group(
        "web-asg",
        vec![member("i-1", "InService", 1), marked("i-2")],
        1000,
    ));
    let s = r.handle(&warning_event("spot", "i-2")).await.unwrap();
    assert!(s.ignored.unwrap().contains("already draining"));
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());
    assert!(r.lifecycle.marked.lock().unwrap().is_empty());
    // The schedule and a launch event's re-read remove it, never add it.
    r.handle(&sched()).await.unwrap();
    let sent = r.dispatcher.changes();
    let web = &sent[0].pools[0];
    assert!(web.add.iter().all(|m| m.id.as_str() != "i-2"), "{web:?}");
    assert_eq!(web.remove, [MemberId::new("i-2").unwrap()]);
    assert_eq!(web.drain_by_ms.values().copied().collect::<Vec<_>>(), [5]);
}

#[tokio::test]
async fn rebalance_recommendations_drain_only_when_configured() {
    let r = fixture_with(&[]);
    let s = r.handle(&warning_event("rebalance", "i-2")).await.unwrap();
    assert!(s.ignored.unwrap().contains("REBALANCE is ignore"));
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());

    let r = fixture_with(&[("REBALANCE", "drain")]);
    r.handle(&warning_event("rebalance", "i-2")).await.unwrap();
    assert_eq!(
        r.lifecycle.marked.lock().unwrap().clone(),
        [("i-2".to_string(), String::new())],
        "marked without a deadline of its own"
    );
    let sent = r.dispatcher.changes();
    assert_eq!(sent[0].pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert!(sent[0].pools[0].drain_by_ms.is_empty());
}

#[tokio::test]
async fn warnings_about_unknown_or_unmanaged_instances_are_acknowledged_without_effect() {
    let r = fixture_with(&[]);
    let s = r.handle(&warning_event("spot", "i-404")).await.unwrap();
    assert!(s.ignored.unwrap().contains("in no Auto Scaling group"));
    let s = r.handle(&warning_event("spot", "i-9")).await.unwrap();
    assert!(s.ignored.unwrap().contains("not managed"));
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());
    assert!(r.lifecycle.marked.lock().unwrap().is_empty());
}

fn warm_event(kind: &str, instance: &str, origin: &str, destination: &str) -> Value {
    let mut e = lifecycle_event(kind, instance);
    e["detail"]["Origin"] = json!(origin);
    e["detail"]["Destination"] = json!(destination);
    e
}

#[tokio::test]
async fn warm_pool_instances_never_reach_a_pool_and_one_going_back_is_drained_first() {
    let r = fixture_with(&[]);
    // Launched into the warm pool: continued at once, nothing sent.
    let s = r
        .handle(&warm_event("launch", "i-7", "EC2", "WarmPool"))
        .await
        .unwrap();
    assert_eq!(completed(&r), [("i-7".to_string(), "CONTINUE")], "{s:?}");
    // Terminated out of the warm pool: the same.
    r.handle(&warm_event("terminate", "i-8", "WarmPool", "EC2"))
        .await
        .unwrap();
    assert_eq!(completed(&r).len(), 2);
    assert!(r.dispatcher.sent.lock().unwrap().is_empty());

    // Scale-in with reuse: i-2 goes back to the pool; the group no longer lists it.
    r.discovery
        .set(group("web-asg", vec![member("i-1", "InService", 1)], 2000));
    let s = r
        .handle(&warm_event(
            "terminate",
            "i-2",
            "AutoScalingGroup",
            "WarmPool",
        ))
        .await
        .unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent[0].pools[0].remove, [MemberId::new("i-2").unwrap()]);
    assert_eq!(s.actions[0].decision, "WAIT", "{s:?}");
    end_last(&r).await;
    assert_eq!(completed(&r)[2], ("i-2".to_string(), "CONTINUE"));

    // From the pool into the group: a launch like any other, health-gated.
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "InService", 1),
            member("i-7", "Pending:Wait", 7),
        ],
        3000,
    ));
    r.handle(&warm_event("launch", "i-7", "WarmPool", "AutoScalingGroup"))
        .await
        .unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent[1].pools[0].add.len(), 1);
    assert_eq!(sent[1].pools[0].add[0].id.as_str(), "i-7");
}

#[tokio::test]
async fn two_launch_commands_crossing_on_the_hosts_complete_the_actions_together() {
    use OutcomeStatus::{Pending, Stale, Up};
    // Two launch events, two commands: cmd-1 reached h0 first, cmd-2 reached h1 first.
    let mut hosts = FakeHosts::new(2);
    hosts.scripted.insert("cmd-1".into(), vec![Up, Stale]);
    hosts.scripted.insert("cmd-2".into(), vec![Pending, Up]);
    let r = fixture(hosts);
    r.discovery.set(group(
        "web-asg",
        vec![
            member("i-1", "Pending:Wait", 1),
            member("i-2", "Pending:Wait", 2),
        ],
        1000,
    ));
    r.handle(&lifecycle_event("launch", "i-1")).await.unwrap();
    r.handle(&lifecycle_event("launch", "i-2")).await.unwrap();
    // The first to end cannot tell while the other runs; the last one decides.
    r.dispatcher.running.lock().unwrap().push("cmd-2".into());
    let first = r.handle(&ended(&r, "cmd-1")).await.unwrap();
    assert!(completed(&r).is_empty(), "{first:?}");
    r.dispatcher.running.lock().unwrap().clear();
    let last = r.handle(&ended(&r, "cmd-2")).await.unwrap();
    let mut done = completed(&r);
    done.sort();
    assert_eq!(
        done,
        [
            ("i-1".to_string(), "CONTINUE"),
            ("i-2".to_string(), "CONTINUE")
        ],
        "{last:?}"
    );
}

fn activity_event(detail_type: &str, instance: &str) -> Value {
    json!({"version":"0","id":"a1","detail-type":detail_type,"source":"aws.autoscaling",
        "time":"2026-11-20T10:00:00Z",
        "detail":{"AutoScalingGroupName":"web-asg","EC2InstanceId":instance,"StatusCode":"Successful"}})
}

#[tokio::test]
async fn a_transition_gated_by_a_hook_of_ours_is_not_sent_again_when_it_succeeds() {
    // The group has our launch and terminate hooks: the instance went through the change
    // their events sent, and its action was completed from the hosts' reports.
    let r = fixture_with(&[]);
    for dt in [
        "EC2 Instance Launch Successful",
        "EC2 Instance Terminate Successful",
    ] {
        let s = r.handle(&activity_event(dt, "i-2")).await.unwrap();
        let why = s.ignored.clone().unwrap_or_default();
        assert!(why.contains("hook") && why.contains("i-2"), "{dt}: {s:?}");
    }
    assert!(r.dispatcher.changes().is_empty(), "nothing sent");
    // A failed activity is still re-read and sent.
    r.handle(&activity_event("EC2 Instance Launch Unsuccessful", "i-2"))
        .await
        .unwrap();
    assert_eq!(r.dispatcher.changes().len(), 1);

    // No hook of ours gates the group's launches (LIFECYCLE_HOOKS names another): the
    // success is the only signal, and the member is sent.
    let r = fixture_with(&[("LIFECYCLE_HOOKS", "someone-elses-hook")]);
    r.handle(&activity_event("EC2 Instance Launch Successful", "i-2"))
        .await
        .unwrap();
    let sent = r.dispatcher.changes();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].pools[0].add.iter().any(|m| m.id.as_str() == "i-2"));
}
