//! A small AWS world in the emulator: a loopback VPC, backend groups with hooks, the
//! project's SSM document, proxy hosts on which Run Command runs it with `fake_host.py`
//! playing the agent, an EventBridge rule bringing the document's command status events
//! back through SQS, and the reactor wired to it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::emulator::venv_python;
use harness::world::{commands_pattern, DocumentHost, DOCUMENT};
use harness::{GroupSpec, World};
use reactor::config::Config;
use reactor::AwsReactor;
use serde_json::{json, Value};

pub const GROUP: &str = "web-asg";
pub const POOLS: &str = r#"{"web-asg":[{"name":"web","port":8080}]}"#;

/// The harness's emulated world, plus proxy hosts whose Run Command plays an agent
/// (`fake_host.py`, each with its own directory) and the reactor wired to it. Derefs to
/// the [`World`]; its helpers panic with the reason, as test code may.
pub struct Fixture {
    pub world: World,
    pub dir: tempfile::TempDir,
    pub python: PathBuf,
    /// The SQS queue the `commands` rule delivers to.
    pub queue: String,
}

impl std::ops::Deref for Fixture {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

pub fn fake_host_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fake_host.py")
}

impl Fixture {
    pub async fn new() -> Fixture {
        let python = venv_python().expect("emulator virtualenv");
        let world = World::start(None).await.expect("emulated world");
        world
            .ssm_document(600)
            .await
            .expect("the project's SSM document");
        let queue = world
            .event_queue("commands", &[commands_pattern(DOCUMENT)])
            .expect("the commands rule");
        Fixture {
            world,
            dir: tempfile::tempdir().expect("tempdir"),
            python,
            queue,
        }
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

    /// `n` running proxy hosts (tag Role=proxy): Run Command runs the project's document
    /// there, `fake_host.py` playing the agent with `env` (FAKE_DIR is set per host under
    /// the fixture's temp dir).
    pub async fn proxies(&self, n: i32, env: &[HashMap<&str, &str>]) -> Vec<String> {
        let ids = self
            .world
            .run_instances(n, &self.world.subnet, "Role", "proxy")
            .await
            .expect("run instances");
        let agent = format!("{} {}", self.python.display(), fake_host_script().display());
        let hosts: Vec<DocumentHost> = ids
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let mut e = vec![("FAKE_DIR".to_string(), self.host_dir(id))];
                if let Some(extra) = env.get(k) {
                    e.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
                }
                DocumentHost {
                    instance: id.clone(),
                    agent: agent.clone(),
                    env: e,
                }
            })
            .collect();
        self.world.document_hosts(&hosts).expect("program hosts");
        ids
    }

    pub fn host_dir(&self, host: &str) -> String {
        self.dir.path().join(host).display().to_string()
    }

    /// What a fake host applied, in order.
    pub fn host_log(&self, host: &str) -> Vec<Value> {
        std::fs::read_to_string(format!("{}/log.jsonl", self.host_dir(host)))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A fake host's member table: pool -> member -> {gen, present, ...}.
    pub fn host_state(&self, host: &str) -> Value {
        std::fs::read_to_string(format!("{}/state.json", self.host_dir(host)))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// The members a fake host serves in `pool`.
    pub fn serving(&self, host: &str, pool: &str) -> Vec<String> {
        let state = self.host_state(host);
        let mut out: Vec<String> = state[pool]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v["present"] == json!(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
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

    /// The reactor's configuration: SSM to the Role=proxy hosts, plus `extra`.
    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut env: HashMap<String, String> = [
            ("POOLS", POOLS),
            ("SSM_DOCUMENT", DOCUMENT),
            ("PROXY_TAG_KEY", "Role"),
            ("PROXY_TAG_VALUE", "proxy"),
            ("HEALTH_TIMEOUT_S", "10"),
            ("DRAIN_TIMEOUT_S", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|k| env.get(k).cloned()).expect("config")
    }

    pub fn reactor(&self, extra: &[(&str, &str)]) -> AwsReactor {
        reactor::build(self.config(extra), &self.world.sdk)
    }

    /// How many AWS calls of `action` the emulator served.
    pub fn count(&self, action: &str) -> usize {
        self.world.count(action).expect("calls")
    }
}

/// What handling the events took: the summaries, in order.
pub type Handled = Vec<reactor::reactor::Summary>;

impl Fixture {
    /// Lambda's part: handles every status event the `commands` rule delivers, one at a
    /// time, until `done` says so or `timeout` passes (then it panics with what was
    /// handled). Returns the summaries.
    pub async fn settle(
        &self,
        r: &AwsReactor,
        timeout: Duration,
        mut done: impl FnMut(&Fixture) -> bool,
    ) -> Handled {
        self.settle_with(r, timeout, &mut done, |_| None).await
    }

    /// [`Fixture::settle`], also handling what `extra` returns each round (e.g. a
    /// scheduled event every few seconds).
    pub async fn settle_with(
        &self,
        r: &AwsReactor,
        timeout: Duration,
        done: &mut dyn FnMut(&Fixture) -> bool,
        mut extra: impl FnMut(Instant) -> Option<Value>,
    ) -> Handled {
        let until = Instant::now() + timeout;
        let mut handled = Vec::new();
        while !done(self) {
            assert!(
                Instant::now() < until,
                "not settled within {timeout:?}; handled: {handled:#?}"
            );
            if let Some(ev) = extra(Instant::now()) {
                handled.push(r.handle(&ev).await.expect("handled"));
            }
            let (events, handles) = self.world.receive(&self.queue, 0).expect("receive");
            for ev in events {
                handled.push(r.handle(&ev).await.expect("handled"));
            }
            self.world.delete(&self.queue, &handles).expect("delete");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        handled
    }

    /// The result (`CONTINUE`/`ABANDON`) of `instance`'s `transition` action, if it was
    /// completed.
    pub fn result(&self, instance: &str, transition: &str) -> Option<String> {
        self.actions_of(instance, transition)
            .iter()
            .find_map(|r| r["result"].as_str().map(str::to_string))
    }
}

pub fn host_env<'a>(pairs: &[(&'a str, &'a str)]) -> HashMap<&'a str, &'a str> {
    pairs.iter().cloned().collect()
}
