//! The AWS side of the local stack, in the emulator: a loopback VPC, backend groups
//! (launch template, optional launch and terminate lifecycle hooks, pool tags), and an
//! EventBridge rule delivering the groups' Auto Scaling events to an SQS queue.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use e2e::moto::{MotoServer, ACCOUNT, REGION};
use reactor::testkit;
use serde_json::{json, Value};

/// The launch template every group uses.
pub const LAUNCH_TEMPLATE: &str = "demo-backend-lt";

/// The emulator, the SDK clients, and a runtime to drive them from plain threads.
pub struct World {
    /// The emulator process.
    pub moto: MotoServer,
    /// The SDK configuration (endpoint = the emulator).
    pub sdk: aws_config::SdkConfig,
    /// Auto Scaling.
    pub asg: aws_sdk_autoscaling::Client,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// The loopback VPC (127.0.0.0/16).
    pub vpc: String,
    rt: tokio::runtime::Runtime,
}

/// One instance of a group: id, lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    /// The instance id.
    pub id: String,
    /// `Pending:Wait`, `InService`, `Terminating:Wait`...
    pub state: String,
}

/// A backend group to create.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// Its subnet id.
    pub subnet: String,
    /// Launch and terminate lifecycle hooks (the product's setup), or none (baselines).
    pub hooks: bool,
    /// The pool its members feed (tag `haproxy:pool`).
    pub pool: String,
    /// The members' port (tag `haproxy:port`).
    pub port: u16,
    /// Maximum size.
    pub max: i32,
}

impl World {
    /// Starts the emulator (stderr to `log`), points the process's AWS environment at it
    /// (the agents it starts inherit it), and creates the VPC and the launch template.
    ///
    /// Call it before starting other threads: it sets environment variables.
    pub fn start(log: &Path) -> anyhow::Result<Self> {
        let moto = MotoServer::start(Some(log))?;
        for (k, v) in [
            ("AWS_ENDPOINT_URL", moto.url()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ] {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let sdk = rt.block_on(
            infra::aws::sdk_loader()
                .endpoint_url(moto.url())
                .region(aws_config::Region::new(REGION))
                .load(),
        );
        let asg = aws_sdk_autoscaling::Client::new(&sdk);
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let vpc = rt
            .block_on(testkit::loopback_vpc(&ec2, LAUNCH_TEMPLATE))
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            moto,
            sdk,
            asg,
            ec2,
            vpc,
            rt,
        })
    }

    /// Runs a future on the world's runtime (from any plain thread).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A subnet of the VPC (e.g. `127.0.1.0/24`); its id.
    pub fn subnet(&self, cidr: &str) -> anyhow::Result<String> {
        self.block_on(testkit::subnet(&self.ec2, &self.vpc, cidr))
            .map_err(anyhow::Error::msg)
    }

    /// Creates a group with desired capacity 0.
    pub fn group(&self, spec: &GroupSpec) -> anyhow::Result<()> {
        self.block_on(async {
            let tag = |k: &str, v: &str| {
                AsgTag::builder()
                    .key(k)
                    .value(v)
                    .resource_id(&spec.name)
                    .resource_type("auto-scaling-group")
                    .propagate_at_launch(false)
                    .build()
            };
            self.asg
                .create_auto_scaling_group()
                .auto_scaling_group_name(&spec.name)
                .min_size(0)
                .max_size(spec.max)
                .desired_capacity(0)
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_name(LAUNCH_TEMPLATE)
                        .build(),
                )
                .vpc_zone_identifier(&spec.subnet)
                .tags(tag(infra::aws::POOL_TAG, &spec.pool))
                .tags(tag(infra::aws::PORT_TAG, &spec.port.to_string()))
                .send()
                .await
                .with_context(|| format!("CreateAutoScalingGroup {}", spec.name))?;
            if spec.hooks {
                for (name, transition) in [
                    ("launch-hook", "autoscaling:EC2_INSTANCE_LAUNCHING"),
                    ("terminate-hook", "autoscaling:EC2_INSTANCE_TERMINATING"),
                ] {
                    self.asg
                        .put_lifecycle_hook()
                        .auto_scaling_group_name(&spec.name)
                        .lifecycle_hook_name(name)
                        .lifecycle_transition(transition)
                        .heartbeat_timeout(120)
                        .default_result("ABANDON")
                        .send()
                        .await
                        .with_context(|| format!("PutLifecycleHook {name}"))?;
                }
            }
            anyhow::Ok(())
        })
    }

    /// `SetDesiredCapacity`.
    pub fn scale(&self, group: &str, desired: i32) -> anyhow::Result<()> {
        self.block_on(
            self.asg
                .set_desired_capacity()
                .auto_scaling_group_name(group)
                .desired_capacity(desired)
                .send(),
        )
        .with_context(|| format!("SetDesiredCapacity {group} {desired}"))?;
        Ok(())
    }

    /// The group's instances and their lifecycle states.
    pub fn members(&self, group: &str) -> anyhow::Result<Vec<GroupInstance>> {
        let members = self
            .block_on(testkit::group_members(&self.asg, group))
            .map_err(anyhow::Error::msg)?;
        Ok(members
            .into_iter()
            .map(|(id, state)| GroupInstance { id, state })
            .collect())
    }

    /// Running (or pending) EC2 instances of a subnet: id -> private address.
    ///
    /// Read from the extension's `/moto-ext/instances` listing rather than
    /// DescribeInstances: the fleet polls this every few tens of milliseconds, and an
    /// emulated DescribeInstances would hold the emulator's lock 10-30 ms each time,
    /// slowing the AWS calls being measured.
    pub fn running_in_subnet(&self, subnet: &str) -> anyhow::Result<Vec<(String, String)>> {
        let listed = self.moto.control("GET", "/moto-ext/instances", None)?;
        let all = listed
            .as_array()
            .context("/moto-ext/instances did not return a list")?;
        Ok(all
            .iter()
            .filter(|i| {
                i["subnet"].as_str() == Some(subnet)
                    && matches!(i["state"].as_str(), Some("pending" | "running"))
            })
            .filter_map(|i| Some((i["id"].as_str()?.to_string(), i["ip"].as_str()?.to_string())))
            .collect())
    }

    /// An SQS queue receiving the Auto Scaling events of `groups` through an EventBridge
    /// rule (source `aws.autoscaling`); the queue URL.
    pub fn event_queue(&self, name: &str, groups: &[&str]) -> anyhow::Result<String> {
        let t = Duration::from_secs(30);
        let q = self.moto.aws_json(
            "sqs",
            "AmazonSQS.CreateQueue",
            &json!({"QueueName": name}),
            t,
        )?;
        let url = q["QueueUrl"]
            .as_str()
            .context("CreateQueue gave no QueueUrl")?
            .to_string();
        let pattern =
            json!({"source": ["aws.autoscaling"], "detail": {"AutoScalingGroupName": groups}});
        let rule = format!("{name}-rule");
        self.moto.aws_json(
            "events",
            "AWSEvents.PutRule",
            &json!({"Name": rule, "EventPattern": pattern.to_string(), "State": "ENABLED"}),
            t,
        )?;
        let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
        let r = self.moto.aws_json(
            "events",
            "AWSEvents.PutTargets",
            &json!({"Rule": rule, "Targets": [{"Id": "queue", "Arn": arn}]}),
            t,
        )?;
        anyhow::ensure!(
            r["FailedEntryCount"].as_u64().unwrap_or(0) == 0,
            "PutTargets failed: {r}"
        );
        Ok(url)
    }

    /// Up to 10 messages from the queue, long-polling `wait_s` seconds: the events
    /// (EventBridge events, the message bodies) and the receipt handles to
    /// [`World::delete`] them with once they are handed on.
    pub fn receive(&self, url: &str, wait_s: u32) -> anyhow::Result<(Vec<Value>, Vec<String>)> {
        let t = Duration::from_secs(u64::from(wait_s) + 10);
        let r = self.moto.aws_json(
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

    /// Deletes received messages (one DeleteMessageBatch per 10).
    pub fn delete(&self, url: &str, handles: &[String]) -> anyhow::Result<()> {
        for chunk in handles.chunks(10) {
            let entries: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| json!({"Id": i.to_string(), "ReceiptHandle": h}))
                .collect();
            let r = self.moto.aws_json(
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

    /// When Auto Scaling announced each instance: instance id -> when the emulator
    /// emitted the first event about it (unix ms; `/moto-ext/events`). For a group with
    /// a launch hook that is the lifecycle action, otherwise Launch Successful. The
    /// event-to-serving latencies start here.
    pub fn announced(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let events = self.moto.control("GET", "/moto-ext/events", None)?;
        let mut out = BTreeMap::new();
        for e in events.as_array().map(Vec::as_slice).unwrap_or_default() {
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
        let v = self.moto.control("GET", "/moto-ext/lifecycle", None)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}
