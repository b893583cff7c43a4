//! A small AWS world in the emulator: a loopback VPC, backend groups with hooks, proxy
//! hosts whose Run Command plays an agent (`fake_host.py`), and the reactor wired to it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
use reactor::config::Config;
use reactor::testkit::{group_members, loopback_vpc, subnet, venv_python, Moto};
use reactor::AwsReactor;
use serde_json::{json, Value};

pub const GROUP: &str = "web-asg";
pub const POOLS: &str = r#"{"web-asg":[{"name":"web","port":8080}]}"#;

pub struct World {
    pub moto: Moto,
    pub sdk: aws_config::SdkConfig,
    pub ec2: aws_sdk_ec2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub subnet: String,
    pub dir: tempfile::TempDir,
    pub python: PathBuf,
}

pub fn fake_host_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fake_host.py")
}

impl World {
    pub async fn new() -> World {
        let python = venv_python().expect("emulator virtualenv");
        let moto = tokio::task::spawn_blocking(Moto::start)
            .await
            .expect("join")
            .expect("emulator start");
        let sdk = moto.sdk().await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let asg = aws_sdk_autoscaling::Client::new(&sdk);
        let vpc = loopback_vpc(&ec2, "backend-lt")
            .await
            .expect("emulated VPC");
        let subnet = subnet(&ec2, &vpc, "127.0.1.0/24").await.expect("subnet");
        World {
            moto,
            sdk,
            ec2,
            asg,
            subnet,
            dir: tempfile::tempdir().expect("tempdir"),
            python,
        }
    }

    /// A group (desired 0) with optional hooks and tags.
    pub async fn group(
        &self,
        name: &str,
        launch_hook: bool,
        terminate_hook: bool,
        tags: &[(&str, &str)],
    ) {
        let mut req = self
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .min_size(0)
            .max_size(20)
            .desired_capacity(0)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name("backend-lt")
                    .build(),
            )
            .vpc_zone_identifier(&self.subnet);
        for (k, v) in tags {
            req = req.tags(
                AsgTag::builder()
                    .key(*k)
                    .value(*v)
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .propagate_at_launch(true)
                    .build(),
            );
        }
        req.send().await.expect("create group");
        if launch_hook {
            self.hook(
                name,
                "launch-hook",
                "autoscaling:EC2_INSTANCE_LAUNCHING",
                300,
            )
            .await;
        }
        if terminate_hook {
            self.hook(
                name,
                "terminate-hook",
                "autoscaling:EC2_INSTANCE_TERMINATING",
                300,
            )
            .await;
        }
    }

    pub async fn hook(&self, group: &str, name: &str, transition: &str, timeout: i32) {
        self.asg
            .put_lifecycle_hook()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(name)
            .lifecycle_transition(transition)
            .heartbeat_timeout(timeout)
            .default_result("ABANDON")
            .send()
            .await
            .expect("hook");
    }

    pub async fn scale(&self, group: &str, desired: i32) {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired)
            .send()
            .await
            .expect("set desired capacity");
    }

    /// Instance id -> lifecycle state.
    pub async fn members(&self, group: &str) -> Vec<(String, String)> {
        group_members(&self.asg, group).await.expect("describe")
    }

    pub async fn private_ip(&self, id: &str) -> String {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("describe instances");
        out.reservations()[0].instances()[0]
            .private_ip_address()
            .unwrap_or_default()
            .to_string()
    }

    /// `n` running proxy hosts (tag Role=proxy), each playing an agent with `env`
    /// (FAKE_DIR is set per host under the world's temp dir).
    pub async fn proxies(&self, n: i32, env: &[HashMap<&str, &str>]) -> Vec<String> {
        let out = self
            .ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(n)
            .max_count(n)
            .subnet_id(&self.subnet)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Ec2Tag::builder().key("Role").value("proxy").build())
                    .build(),
            )
            .send()
            .await
            .expect("run instances");
        let ids: Vec<String> = out
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect();
        let mut programs = serde_json::Map::new();
        for (k, id) in ids.iter().enumerate() {
            let mut e: serde_json::Map<String, Value> = serde_json::Map::new();
            e.insert("FAKE_DIR".into(), json!(self.host_dir(id)));
            if let Some(extra) = env.get(k) {
                for (key, v) in extra {
                    e.insert(key.to_string(), json!(v));
                }
            }
            programs.insert(
                id.clone(),
                json!({"exec": [self.python, fake_host_script()], "env": e}),
            );
        }
        self.moto
            .control(
                "POST",
                "/moto-ext/ssm/hosts",
                Some(&Value::Object(programs)),
            )
            .expect("program hosts");
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
        self.moto
            .control("GET", "/moto-ext/lifecycle", None)
            .expect("lifecycle")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The lifecycle action records of `instance` for `transition` ("launch"/"terminate").
    pub fn actions_of(&self, instance: &str, transition: &str) -> Vec<Value> {
        let t = if transition == "launch" {
            "autoscaling:EC2_INSTANCE_LAUNCHING"
        } else {
            "autoscaling:EC2_INSTANCE_TERMINATING"
        };
        self.lifecycle()
            .into_iter()
            .filter(|r| r["instance"] == json!(instance) && r["transition"] == json!(t))
            .collect()
    }

    /// The events the emulator emitted of `detail_type` about `instance`.
    pub fn events(&self, detail_type: &str, instance: &str) -> Vec<Value> {
        self.moto
            .control("GET", "/moto-ext/events", None)
            .expect("events")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e["detail-type"] == json!(detail_type)
                    && e["detail"]["EC2InstanceId"] == json!(instance)
            })
            .collect()
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
            ("SSM_DOCUMENT", "haproxy-asg-apply"),
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
        reactor::build(self.config(extra), &self.sdk)
    }

    /// How many AWS calls of `action` the emulator served.
    pub fn count(&self, action: &str) -> usize {
        self.moto
            .calls()
            .expect("calls")
            .iter()
            .filter(|(_, a)| a == action)
            .count()
    }
}

pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

pub fn host_env<'a>(pairs: &[(&'a str, &'a str)]) -> HashMap<&'a str, &'a str> {
    pairs.iter().cloned().collect()
}
