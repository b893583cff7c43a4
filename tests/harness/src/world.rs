//! The emulated AWS every local run shares: the emulator, SDK clients pointed at it, a
//! VPC of 127.0.0.0/16 (instances get loopback addresses that local processes can bind
//! without any network setup), a launch template, a backend subnet, and the groups,
//! hooks, proxy instances and event queues a test or the demo builds on it.
//!
//! SDK calls are `async`; control-API reads (`/moto-ext/...`) are plain blocking calls,
//! so threads that only watch (the fleet, the event pump) need no runtime.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::types::{
    InstanceType, RequestLaunchTemplateData, ResourceType, Tag as Ec2Tag, TagSpecification,
};
use serde_json::{json, Value};

use crate::emulator::{Emulator, ACCOUNT, REGION};

/// The launch template every group uses.
pub const LAUNCH_TEMPLATE: &str = "backend-lt";
/// The subnet [`World::start`] creates for backend groups.
pub const BACKEND_SUBNET: &str = "127.0.1.0/24";
/// The name of the launch hook [`GroupSpec::hooks`] puts on a group.
pub const LAUNCH_HOOK: &str = "launch-hook";
/// The name of the terminate hook [`GroupSpec::hooks`] puts on a group.
pub const TERMINATE_HOOK: &str = "terminate-hook";

/// The name the project's SSM document gets in the emulator.
pub const DOCUMENT: &str = "haproxy-asg-agent";
/// The tag marking the proxy hosts (`PROXY_TAG_KEY=PROXY_TAG_VALUE`).
pub const PROXY_TAG: (&str, &str) = ("Role", "proxy");
/// Where the document runs the agent on a real host; each emulated host maps it to the
/// agent it stands for.
pub const AGENT_PATH: &str = "/usr/local/bin/agent";

/// The proxy fleet's group in local runs (`PROXY_GROUP`).
pub const PROXY_GROUP: &str = "proxies";

/// The reactor's control path in the emulator (what the Terraform reactor module
/// creates): the inbox queue the event rules and the proxies send to, the lifecycle
/// ledger, and the role whose sessions the proxies report with.
#[derive(Debug, Clone)]
pub struct ControlPath {
    /// The inbox's queue URL (`[report] queue_url` of the agents).
    pub inbox: String,
    /// The ledger table (`LEDGER_TABLE`).
    pub table: String,
    /// The proxies' role ARN.
    pub role_arn: String,
    /// Its unique id (`PROXY_ROLE_ID`).
    pub role_id: String,
}

impl ControlPath {
    /// agent.toml's `[report]` section for a proxy of this control path.
    pub fn report_toml(&self) -> String {
        format!("\n[report]\nqueue_url = \"{}\"\n", self.inbox)
    }
}

/// A message received from a queue.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its message id.
    pub id: String,
    /// Its receipt handle.
    pub handle: String,
    /// Its body.
    pub body: String,
    /// Its system attributes (`SenderId`, ...).
    pub attributes: Value,
}

/// Temporary credentials (an STS session).
#[derive(Debug, Clone)]
pub struct Session {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: String,
    /// `AWS_SESSION_TOKEN`.
    pub token: String,
}

impl Session {
    /// The environment that makes a process use these credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_SESSION_TOKEN".into(), self.token.clone()),
        ]
    }
}

/// The EventBridge pattern of the reactor's `lifecycle` and `results` rules for `groups`.
pub fn autoscaling_pattern(groups: &[&str]) -> Value {
    json!({"source": ["aws.autoscaling"], "detail": {"AutoScalingGroupName": groups}})
}

/// The EventBridge pattern of the reactor's `spot` rule: EC2's interruption warnings and
/// rebalance recommendations.
pub fn ec2_warnings_pattern() -> Value {
    json!({
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"]
    })
}

/// One proxy host as Run Command sees it (see [`World::document_hosts`]).
#[derive(Debug, Clone)]
pub struct DocumentHost {
    /// The EC2 instance id the commands target.
    pub instance: String,
    /// What the document's `agent` stands for there: an argv joined by spaces (a path, or
    /// an interpreter and a script).
    pub agent: String,
    /// Environment added to the document's run.
    pub env: Vec<(String, String)>,
}

/// The emulator and the network built in it.
pub struct World {
    /// The emulator process.
    pub emulator: Emulator,
    /// The SDK configuration (endpoint = the emulator).
    pub sdk: aws_config::SdkConfig,
    /// Auto Scaling.
    pub asg: aws_sdk_autoscaling::Client,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// The loopback VPC (127.0.0.0/16).
    pub vpc: String,
    /// The backend subnet ([`BACKEND_SUBNET`]): instances get 127.0.1.4, .5, ...
    pub subnet: String,
}

/// One instance of a group: id and lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    /// The instance id.
    pub id: String,
    /// `Pending:Wait`, `InService`, `Terminating:Wait`...
    pub state: String,
    /// Auto Scaling holds it healthy (its `HealthStatus`).
    pub healthy: bool,
    /// Its Availability Zone (empty when not said).
    pub zone: String,
}

/// A group to create (desired capacity 0 unless said).
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// Its subnet id.
    pub subnet: String,
    /// Maximum size.
    pub max: i32,
    /// Initial desired capacity.
    pub desired: i32,
    /// Heartbeat timeout (s) of a launch hook, when it has one.
    pub launch_hook: Option<i32>,
    /// Heartbeat timeout (s) of a terminate hook, when it has one.
    pub terminate_hook: Option<i32>,
    /// Group tags.
    pub tags: Vec<(String, String)>,
}

impl GroupSpec {
    /// A group of at most 20 instances, none yet, no hooks, no tags.
    pub fn new(name: &str, subnet: &str) -> Self {
        Self {
            name: name.into(),
            subnet: subnet.into(),
            max: 20,
            desired: 0,
            launch_hook: None,
            terminate_hook: None,
            tags: Vec::new(),
        }
    }

    /// Launch and terminate hooks (the product's setup), both with `heartbeat_s`.
    pub fn hooks(mut self, heartbeat_s: i32) -> Self {
        self.launch_hook = Some(heartbeat_s);
        self.terminate_hook = Some(heartbeat_s);
        self
    }

    /// One more group tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// The `haproxy:pool` and `haproxy:port` tags.
    pub fn pool(self, pool: &str, port: u16) -> Self {
        self.tag(infra::aws::POOL_TAG, pool)
            .tag(infra::aws::PORT_TAG, &port.to_string())
    }
}

impl World {
    /// Starts the emulator (stderr to `log`) and creates the VPC, the launch template
    /// and the backend subnet.
    pub async fn start(log: Option<&Path>) -> anyhow::Result<Self> {
        let log = log.map(Path::to_path_buf);
        let emulator = tokio::task::spawn_blocking(move || Emulator::start(log.as_deref()))
            .await
            .context("starting the emulator")??;
        let sdk = emulator.sdk().await;
        let asg = aws_sdk_autoscaling::Client::new(&sdk);
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let vpc = ec2
            .create_vpc()
            .cidr_block("127.0.0.0/16")
            .send()
            .await
            .context("CreateVpc")?
            .vpc()
            .and_then(|v| v.vpc_id())
            .context("CreateVpc returned no id")?
            .to_string();
        ec2.create_launch_template()
            .launch_template_name(LAUNCH_TEMPLATE)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id("ami-12c6146b")
                    .instance_type(InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .context("CreateLaunchTemplate")?;
        let mut world = Self {
            emulator,
            sdk,
            asg,
            ec2,
            vpc,
            subnet: String::new(),
        };
        world.subnet = world.add_subnet(BACKEND_SUBNET).await?;
        Ok(world)
    }

    /// One more subnet of the VPC (e.g. `127.0.2.0/24`); its id.
    pub async fn add_subnet(&self, cidr: &str) -> anyhow::Result<String> {
        self.add_subnet_in(cidr, None).await
    }

    /// One more subnet of the VPC in Availability Zone `zone` (the emulator's choice when
    /// `None`); its id.
    pub async fn add_subnet_in(&self, cidr: &str, zone: Option<&str>) -> anyhow::Result<String> {
        self.ec2
            .create_subnet()
            .vpc_id(&self.vpc)
            .cidr_block(cidr)
            .set_availability_zone(zone.map(str::to_string))
            .send()
            .await
            .with_context(|| format!("CreateSubnet {cidr}"))?
            .subnet()
            .and_then(|s| s.subnet_id())
            .map(str::to_string)
            .with_context(|| format!("CreateSubnet {cidr} returned no id"))
    }

    /// Creates a group from `spec`.
    pub async fn group(&self, spec: &GroupSpec) -> anyhow::Result<()> {
        let mut req = self
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(&spec.name)
            .min_size(0)
            .max_size(spec.max)
            .desired_capacity(spec.desired)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(LAUNCH_TEMPLATE)
                    .build(),
            )
            .vpc_zone_identifier(&spec.subnet);
        for (k, v) in &spec.tags {
            req = req.tags(
                AsgTag::builder()
                    .key(k)
                    .value(v)
                    .resource_id(&spec.name)
                    .resource_type("auto-scaling-group")
                    .propagate_at_launch(true)
                    .build(),
            );
        }
        req.send()
            .await
            .with_context(|| format!("CreateAutoScalingGroup {}", spec.name))?;
        if let Some(t) = spec.launch_hook {
            self.hook(
                &spec.name,
                LAUNCH_HOOK,
                "autoscaling:EC2_INSTANCE_LAUNCHING",
                t,
            )
            .await?;
        }
        if let Some(t) = spec.terminate_hook {
            self.hook(
                &spec.name,
                TERMINATE_HOOK,
                "autoscaling:EC2_INSTANCE_TERMINATING",
                t,
            )
            .await?;
        }
        Ok(())
    }

    /// A lifecycle hook (default result ABANDON).
    pub async fn hook(
        &self,
        group: &str,
        name: &str,
        transition: &str,
        heartbeat_s: i32,
    ) -> anyhow::Result<()> {
        self.asg
            .put_lifecycle_hook()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(name)
            .lifecycle_transition(transition)
            .heartbeat_timeout(heartbeat_s)
            .default_result("ABANDON")
            .send()
            .await
            .with_context(|| format!("PutLifecycleHook {name} on {group}"))?;
        Ok(())
    }

    /// `SetDesiredCapacity`.
    pub async fn scale(&self, group: &str, desired: i32) -> anyhow::Result<()> {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired)
            .send()
            .await
            .with_context(|| format!("SetDesiredCapacity {group} {desired}"))?;
        Ok(())
    }

    /// `PutWarmPool`: `prepared` instances in service or waiting stopped (at least `min`
    /// waiting), taken back on scale-in when `reuse`.
    pub async fn warm_pool(
        &self,
        group: &str,
        min: i32,
        prepared: i32,
        reuse: bool,
    ) -> anyhow::Result<()> {
        let policy = aws_sdk_autoscaling::types::InstanceReusePolicy::builder()
            .reuse_on_scale_in(reuse)
            .build();
        self.asg
            .put_warm_pool()
            .auto_scaling_group_name(group)
            .min_size(min)
            .max_group_prepared_capacity(prepared)
            .pool_state(aws_sdk_autoscaling::types::WarmPoolState::Stopped)
            .instance_reuse_policy(policy)
            .send()
            .await
            .with_context(|| format!("PutWarmPool {group}"))?;
        Ok(())
    }

    /// The warm pool's instances and their lifecycle states (`Warmed:*`).
    pub async fn warm_instances(&self, group: &str) -> anyhow::Result<Vec<GroupInstance>> {
        let out = self
            .asg
            .describe_warm_pool()
            .auto_scaling_group_name(group)
            .send()
            .await
            .with_context(|| format!("DescribeWarmPool {group}"))?;
        Ok(out
            .instances()
            .iter()
            .filter_map(|i| {
                Some(GroupInstance {
                    id: i.instance_id()?.to_string(),
                    state: i.lifecycle_state()?.as_str().to_string(),
                    healthy: i.health_status() != Some("Unhealthy"),
                    zone: i.availability_zone().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// The group's instances and their lifecycle states, in the order Auto Scaling lists
    /// them; empty when the group does not exist.
    pub async fn members(&self, group: &str) -> anyhow::Result<Vec<GroupInstance>> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .with_context(|| format!("DescribeAutoScalingGroups {group}"))?;
        Ok(out
            .auto_scaling_groups()
            .first()
            .map(|g| {
                g.instances()
                    .iter()
                    .map(|i| GroupInstance {
                        id: i.instance_id().unwrap_or_default().to_string(),
                        state: i
                            .lifecycle_state()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        healthy: i.health_status() != Some("Unhealthy"),
                        zone: i.availability_zone().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `TerminateInstanceInAutoScalingGroup`: with `decrement` false, Auto Scaling
    /// launches a replacement at once.
    pub async fn terminate(&self, instance: &str, decrement: bool) -> anyhow::Result<()> {
        self.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .with_context(|| format!("TerminateInstanceInAutoScalingGroup {instance}"))?;
        Ok(())
    }

    /// An instance's private address.
    pub async fn private_ip(&self, id: &str) -> anyhow::Result<String> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .with_context(|| format!("DescribeInstances {id}"))?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.private_ip_address())
            .map(str::to_string)
            .with_context(|| format!("instance {id} has no private address"))
    }

    /// `n` running EC2 instances in `subnet` tagged `key=value`: the proxy hosts an
    /// instance id stands for. Their ids.
    pub async fn run_instances(
        &self,
        n: i32,
        subnet: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<Vec<String>> {
        let out = self
            .ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(n)
            .max_count(n)
            .subnet_id(subnet)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Ec2Tag::builder().key(key).value(value).build())
                    .build(),
            )
            .send()
            .await
            .context("RunInstances")?;
        Ok(out
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect())
    }

    /// Creates the project's SSM document ([`DOCUMENT`]) from the Terraform module's
    /// template, its commands bounded by `execution_timeout_s`: the tests and the demo run
    /// exactly what Terraform deploys.
    pub async fn ssm_document(&self, execution_timeout_s: u64) -> anyhow::Result<()> {
        let path = crate::emulator::workspace_root()
            .join("terraform/modules/reactor/templates/ssm-document.json.tftpl");
        let template = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // The template has a fixed timeout now; older ones took `execution_timeout`.
        let content = template.replace("${execution_timeout}", &execution_timeout_s.to_string());
        aws_sdk_ssm::Client::new(&self.sdk)
            .create_document()
            .name(DOCUMENT)
            .content(content)
            .document_type(aws_sdk_ssm::types::DocumentType::Command)
            .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
            .send()
            .await
            .context("CreateDocument")?;
        Ok(())
    }

    /// Makes each host a proxy host: Run Command runs the project's document there, with
    /// [`AGENT_PATH`] standing for its `agent` and its `env` added.
    pub fn document_hosts(&self, hosts: &[DocumentHost]) -> anyhow::Result<()> {
        let mut programs = serde_json::Map::new();
        for h in hosts {
            let env: serde_json::Map<String, Value> =
                h.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            programs.insert(
                h.instance.clone(),
                json!({"document": true, "env": env, "paths": {AGENT_PATH: h.agent}}),
            );
        }
        self.program_hosts(&Value::Object(programs))
    }

    /// The proxy fleet: the proxy group with one instance per spec in `subnet`, and for
    /// each instance a real HAProxy host named after it (its `host`, as the user data
    /// writes it on AWS) whose agent service reports to `path`'s inbox with the
    /// instance's own session; Run Command runs the project's document there with that
    /// host's agent. The hosts, in the specs' order.
    pub async fn proxy_fleet(
        &self,
        path: &ControlPath,
        subnet: &str,
        specs: Vec<crate::HostSpec>,
    ) -> anyhow::Result<Vec<crate::Host>> {
        let n = i32::try_from(specs.len()).context("too many hosts")?;
        let ids = self.proxy_group(subnet, n).await?;
        self.proxy_hosts(path, &ids, specs).await
    }

    /// [`World::proxy_fleet`] whose host `i` has agent.toml's top-level `zone =
    /// zones[i]`, as the proxy fleet's user data writes it.
    pub async fn proxy_fleet_in_zones(
        &self,
        path: &ControlPath,
        subnet: &str,
        specs: Vec<crate::HostSpec>,
        zones: &[&str],
    ) -> anyhow::Result<Vec<crate::Host>> {
        let n = i32::try_from(specs.len()).context("too many hosts")?;
        let ids = self.proxy_group(subnet, n).await?;
        let tops = zones.iter().map(|z| format!("zone = \"{z}\"\n")).collect();
        self.hosts_with_top(path, &ids, specs, tops).await
    }

    /// Real HAProxy hosts for proxy instances `ids` (see [`World::proxy_fleet`]), one
    /// per spec, in order.
    pub async fn proxy_hosts(
        &self,
        path: &ControlPath,
        ids: &[String],
        specs: Vec<crate::HostSpec>,
    ) -> anyhow::Result<Vec<crate::Host>> {
        self.hosts_with_top(path, ids, specs, Vec::new()).await
    }

    /// [`World::proxy_hosts`], host `i` with top-level agent.toml keys `tops[i]`.
    async fn hosts_with_top(
        &self,
        path: &ControlPath,
        ids: &[String],
        specs: Vec<crate::HostSpec>,
        tops: Vec<String>,
    ) -> anyhow::Result<Vec<crate::Host>> {
        let agent = crate::process::bin_path("agent")?.display().to_string();
        let mut hosts = Vec::new();
        let mut programs = Vec::new();
        for (i, (id, mut spec)) in ids.iter().zip(specs).enumerate() {
            let top = tops.get(i).cloned().unwrap_or_default();
            let session = self.proxy_session(path, id)?;
            spec.name = id.clone();
            spec.extra_toml.push_str(&path.report_toml());
            spec.env.extend(self.emulator.aws_env());
            // The instance profile's credentials, not the harness's.
            spec.env
                .retain(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY");
            spec.env.extend(session.env());
            let host =
                tokio::task::spawn_blocking(move || crate::Host::start_with_top(&spec, &top))
                    .await
                    .context("starting a proxy host")??;
            programs.push(DocumentHost {
                instance: id.clone(),
                agent: agent.clone(),
                env: host.document_env(),
            });
            hosts.push(host);
        }
        self.document_hosts(&programs)?;
        Ok(hosts)
    }

    /// EC2's two-minute warning for a Spot `instance`; Auto Scaling starts replacing it
    /// `hook_after_ms` later (its terminate hooks run), and EC2 reclaims it
    /// `terminate_after_ms` after the warning, whatever Auto Scaling does.
    pub fn spot_interruption(
        &self,
        instance: &str,
        hook_after_ms: Option<u64>,
        terminate_after_ms: u64,
    ) -> anyhow::Result<()> {
        self.emulator.control(
            "POST",
            "/moto-ext/ec2/spot-interruption",
            Some(
                &json!({"instance": instance, "hook_after_ms": hook_after_ms,
                         "terminate_after_ms": terminate_after_ms}),
            ),
        )?;
        Ok(())
    }

    /// EC2's rebalance recommendation for `instance` (nothing follows it).
    pub fn rebalance_recommendation(&self, instance: &str) -> anyhow::Result<()> {
        self.emulator.control(
            "POST",
            "/moto-ext/ec2/rebalance-recommendation",
            Some(&json!({"instance": instance})),
        )?;
        Ok(())
    }

    /// Programs what Run Command does on each instance (`/moto-ext/ssm/hosts`).
    pub fn program_hosts(&self, programs: &Value) -> anyhow::Result<()> {
        self.emulator
            .control("POST", "/moto-ext/ssm/hosts", Some(programs))?;
        Ok(())
    }

    /// Running (or pending) EC2 instances of a subnet: id -> private address.
    ///
    /// Read from the emulator's `/moto-ext/instances` listing rather than
    /// DescribeInstances: the fleet polls this every few tens of milliseconds, and an
    /// emulated DescribeInstances would hold the emulator's lock 10-30 ms each time,
    /// slowing the AWS calls being measured.
    pub fn running_in_subnet(&self, subnet: &str) -> anyhow::Result<Vec<(String, String)>> {
        let listed = self.emulator.control("GET", "/moto-ext/instances", None)?;
        let all = listed
            .as_array()
            .context("/moto-ext/instances did not return a list")?;
        Ok(all
            .iter()
            .filter(|i| {
                subnet.split(',').any(|s| i["subnet"].as_str() == Some(s))
                    && matches!(i["state"].as_str(), Some("pending" | "running"))
            })
            .filter_map(|i| Some((i["id"].as_str()?.to_string(), i["ip"].as_str()?.to_string())))
            .collect())
    }

    /// An SQS queue receiving, through one EventBridge rule per pattern, the events that
    /// match any of `patterns`; the queue URL.
    pub fn event_queue(&self, name: &str, patterns: &[Value]) -> anyhow::Result<String> {
        let t = Duration::from_secs(30);
        let q = self.emulator.aws_json(
            "sqs",
            "AmazonSQS.CreateQueue",
            &json!({"QueueName": name}),
            t,
        )?;
        let url = q["QueueUrl"]
            .as_str()
            .context("CreateQueue gave no QueueUrl")?
            .to_string();
        let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
        for (i, pattern) in patterns.iter().enumerate() {
            let rule = format!("{name}-rule-{i}");
            self.emulator.aws_json(
                "events",
                "AWSEvents.PutRule",
                &json!({"Name": rule, "EventPattern": pattern.to_string(), "State": "ENABLED"}),
                t,
            )?;
            let r = self.emulator.aws_json(
                "events",
                "AWSEvents.PutTargets",
                &json!({"Rule": rule, "Targets": [{"Id": "queue", "Arn": arn}]}),
                t,
            )?;
            anyhow::ensure!(
                r["FailedEntryCount"].as_u64().unwrap_or(0) == 0,
                "PutTargets failed: {r}"
            );
        }
        Ok(url)
    }

    /// Up to 10 messages from the queue, long-polling `wait_s` seconds: the events
    /// (EventBridge events, the message bodies) and the receipt handles to
    /// [`World::delete`] them with once they are handed on.
    pub fn receive(&self, url: &str, wait_s: u32) -> anyhow::Result<(Vec<Value>, Vec<String>)> {
        let t = Duration::from_secs(u64::from(wait_s) + 10);
        let r = self.emulator.aws_json(
            "sqs",
            "AmazonSQS.ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_s}),
            t,
        )?;
        let (mut events, mut handles) = (Vec::new(), Vec::new());
        for m in r["Messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(h) = m["ReceiptHandle"].as_str() {
                handles.push(h.to_string());
            }
            match m["Body"].as_str().map(serde_json::from_str::<Value>) {
                Some(Ok(v)) => events.push(v),
                _ => eprintln!("warning: an SQS message is not an event: {m}"),
            }
        }
        Ok((events, handles))
    }

    /// Up to 10 messages of the inbox, long-polling `wait_s` seconds, as Lambda's event
    /// source mapping receives them: each with its id, receipt handle, body and system
    /// attributes (`SenderId`, `SentTimestamp`, ...).
    pub fn receive_records(&self, url: &str, wait_s: u32) -> anyhow::Result<Vec<Received>> {
        self.receive_up_to(url, wait_s, 10)
    }

    /// [`World::receive_records`], at most `n` messages (1 to 10).
    pub fn receive_up_to(&self, url: &str, wait_s: u32, n: usize) -> anyhow::Result<Vec<Received>> {
        let t = Duration::from_secs(u64::from(wait_s) + 10);
        let r = self.emulator.aws_json(
            "sqs",
            "AmazonSQS.ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": n.clamp(1, 10), "WaitTimeSeconds": wait_s,
                    "AttributeNames": ["All"], "MessageSystemAttributeNames": ["All"]}),
            t,
        )?;
        Ok(r["Messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| Received {
                id: m["MessageId"].as_str().unwrap_or_default().to_string(),
                handle: m["ReceiptHandle"].as_str().unwrap_or_default().to_string(),
                body: m["Body"].as_str().unwrap_or_default().to_string(),
                attributes: m["Attributes"].clone(),
            })
            .collect())
    }

    /// Deletes received messages (one DeleteMessageBatch per 10).
    pub fn delete(&self, url: &str, handles: &[String]) -> anyhow::Result<()> {
        for chunk in handles.chunks(10) {
            let entries: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| json!({"Id": i.to_string(), "ReceiptHandle": h}))
                .collect();
            let r = self.emulator.aws_json(
                "sqs",
                "AmazonSQS.DeleteMessageBatch",
                &json!({"QueueUrl": url, "Entries": entries}),
                Duration::from_secs(10),
            )?;
            let failed = r["Failed"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(
                failed == 0,
                "DeleteMessageBatch failed for {failed} message(s): {r}"
            );
        }
        Ok(())
    }

    /// The control path named `name`: the inbox queue (failed records visible again
    /// after 5 s, as a retried Lambda batch) fed by one EventBridge rule per pattern, the
    /// ledger table (on-demand, the sparse `open` index, TTL on `expires_at`), and the
    /// proxies' role.
    pub fn control_path(&self, name: &str, patterns: &[Value]) -> anyhow::Result<ControlPath> {
        let inbox = self.event_queue(&format!("{name}-inbox"), patterns)?;
        let t = Duration::from_secs(30);
        self.emulator.aws_json(
            "sqs",
            "AmazonSQS.SetQueueAttributes",
            &json!({"QueueUrl": inbox, "Attributes": {"VisibilityTimeout": "5"}}),
            t,
        )?;
        let table = format!("{name}-ledger");
        let attr = |n: &str| json!({"AttributeName": n, "AttributeType": "S"});
        self.emulator.aws_json(
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            &json!({
                "TableName": table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [attr("id"), attr("open")],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [{
                    "IndexName": "open",
                    "KeySchema": [{"AttributeName": "open", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"}
                }]
            }),
            t,
        )?;
        self.emulator.aws_json(
            "dynamodb",
            "DynamoDB_20120810.UpdateTimeToLive",
            &json!({"TableName": table, "TimeToLiveSpecification": {"Enabled": true, "AttributeName": "expires_at"}}),
            t,
        )?;
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
        let role = self.emulator.aws_query(
            "iam",
            "CreateRole",
            &[
                ("RoleName", &format!("{name}-proxy")),
                ("AssumeRolePolicyDocument", &trust.to_string()),
            ],
        )?;
        let text = |tag: &str| {
            crate::emulator::xml_text(&role, tag)
                .with_context(|| format!("CreateRole gave no {tag}: {role}"))
        };
        Ok(ControlPath {
            inbox,
            table,
            role_arn: text("Arn")?,
            role_id: text("RoleId")?,
        })
    }

    /// The credentials `instance`'s instance profile gets: a session of the proxies' role
    /// named after the instance (what EC2 does, and what SQS then names as the sender of
    /// its messages).
    pub fn proxy_session(&self, path: &ControlPath, instance: &str) -> anyhow::Result<Session> {
        let xml = self.emulator.aws_query(
            "sts",
            "AssumeRole",
            &[
                ("RoleArn", path.role_arn.as_str()),
                ("RoleSessionName", instance),
            ],
        )?;
        let text = |tag: &str| {
            crate::emulator::xml_text(&xml, tag)
                .with_context(|| format!("AssumeRole gave no {tag}: {xml}"))
        };
        Ok(Session {
            access_key: text("AccessKeyId")?,
            secret_key: text("SecretAccessKey")?,
            token: text("SessionToken")?,
        })
    }

    /// The proxy fleet's group ([`PROXY_GROUP`]) with `n` instances in `subnet`, tagged
    /// [`PROXY_TAG`]; their ids once every one is in service.
    pub async fn proxy_group(&self, subnet: &str, n: i32) -> anyhow::Result<Vec<String>> {
        let mut spec = GroupSpec::new(PROXY_GROUP, subnet).tag(PROXY_TAG.0, PROXY_TAG.1);
        spec.max = n.max(1) * 2;
        spec.desired = n;
        self.group(&spec).await?;
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.members(PROXY_GROUP).await?;
            if m.len() == usize::try_from(n).unwrap_or(0)
                && m.iter().all(|i| i.state == "InService")
            {
                return Ok(m.into_iter().map(|i| i.id).collect());
            }
            anyhow::ensure!(
                std::time::Instant::now() < until,
                "the proxy group did not reach {n} in-service instances: {m:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every event the emulator emitted, in order (`/moto-ext/events`).
    pub fn events(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.emulator.control("GET", "/moto-ext/events", None)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The events of `detail_type` about `instance`, in order.
    pub fn events_about(&self, detail_type: &str, instance: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .events()?
            .into_iter()
            .filter(|e| {
                e["detail-type"] == json!(detail_type)
                    && e["detail"]["EC2InstanceId"] == json!(instance)
            })
            .collect())
    }

    /// When Auto Scaling announced each instance: instance id -> when the emulator
    /// emitted the first event about it (unix ms). For a group with a launch hook that
    /// is the lifecycle action, otherwise Launch Successful. Event-to-serving latencies
    /// start here.
    pub fn announced(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for e in self.events()? {
            let (Some(id), Some(at)) =
                (e["detail"]["EC2InstanceId"].as_str(), e["emitted"].as_f64())
            else {
                continue;
            };
            // Listed in emission order: the first one wins.
            out.entry(id.to_string())
                .or_insert((at * 1000.0).round() as u64);
        }
        Ok(out)
    }

    /// Every lifecycle action the emulator knows (`/moto-ext/lifecycle`).
    pub fn lifecycle(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.emulator.control("GET", "/moto-ext/lifecycle", None)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The lifecycle actions of `instance` for `transition` (`launch` or `terminate`).
    pub fn actions_of(&self, instance: &str, transition: &str) -> anyhow::Result<Vec<Value>> {
        let t = if transition == "launch" {
            "autoscaling:EC2_INSTANCE_LAUNCHING"
        } else {
            "autoscaling:EC2_INSTANCE_TERMINATING"
        };
        Ok(self
            .lifecycle()?
            .into_iter()
            .filter(|r| r["instance"] == json!(instance) && r["transition"] == json!(t))
            .collect())
    }

    /// How many AWS calls of `action` the emulator served.
    pub fn count(&self, action: &str) -> anyhow::Result<usize> {
        Ok(self
            .emulator
            .calls()?
            .iter()
            .filter(|(_, a)| a == action)
            .count())
    }
}

/// A [`World`] for plain threads (the demo, the end-to-end bench): its SDK calls run on
/// a runtime of its own. Derefs to the [`World`] for everything else.
pub struct Blocking {
    /// The world, shareable with the threads that watch it (fleet, pump).
    pub world: std::sync::Arc<World>,
    rt: tokio::runtime::Runtime,
}

impl Blocking {
    /// Starts the world ([`World::start`]) on a runtime of two worker threads.
    pub fn start(log: Option<&Path>) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let world = std::sync::Arc::new(rt.block_on(World::start(log))?);
        Ok(Self { world, rt })
    }

    /// Runs a future on the world's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// [`World::add_subnet`].
    pub fn add_subnet(&self, cidr: &str) -> anyhow::Result<String> {
        self.block_on(self.world.add_subnet(cidr))
    }

    /// [`World::group`].
    pub fn group(&self, spec: &GroupSpec) -> anyhow::Result<()> {
        self.block_on(self.world.group(spec))
    }

    /// [`World::scale`].
    pub fn scale(&self, group: &str, desired: i32) -> anyhow::Result<()> {
        self.block_on(self.world.scale(group, desired))
    }

    /// [`World::members`].
    pub fn members(&self, group: &str) -> anyhow::Result<Vec<GroupInstance>> {
        self.block_on(self.world.members(group))
    }
}

impl std::ops::Deref for Blocking {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}
