//! Removing what an approach created in the emulator, so that the next one finds it as
//! this one did: its groups (their instances terminated at once, hooks or not), the
//! EventBridge rules and the queue they fed, the project's SSM document.

use std::time::Duration;

use anyhow::Context;
use harness::world::{Blocking, DOCUMENT};
use serde_json::json;

/// How long one of these calls may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes group `name` with ForceDelete: its instances go with it.
pub fn delete_group(world: &Blocking, name: &str) -> anyhow::Result<()> {
    world
        .block_on(
            world
                .asg
                .delete_auto_scaling_group()
                .auto_scaling_group_name(name)
                .force_delete(true)
                .send(),
        )
        .with_context(|| format!("DeleteAutoScalingGroup {name}"))?;
    Ok(())
}

/// Deletes the queue `name` (at `url`) that [`harness::World::event_queue`] made, and
/// first its `rules` EventBridge rules (`<name>-rule-<i>`): no event goes to a queue
/// that is gone.
pub fn delete_queue(world: &Blocking, name: &str, url: &str, rules: usize) -> anyhow::Result<()> {
    for i in 0..rules {
        let rule = format!("{name}-rule-{i}");
        world
            .emulator
            .aws_json(
                "events",
                "AWSEvents.RemoveTargets",
                &json!({"Rule": rule, "Ids": ["queue"]}),
                TIMEOUT,
            )
            .with_context(|| format!("RemoveTargets {rule}"))?;
        world
            .emulator
            .aws_json(
                "events",
                "AWSEvents.DeleteRule",
                &json!({"Name": rule}),
                TIMEOUT,
            )
            .with_context(|| format!("DeleteRule {rule}"))?;
    }
    world
        .emulator
        .aws_json(
            "sqs",
            "AmazonSQS.DeleteQueue",
            &json!({"QueueUrl": url}),
            TIMEOUT,
        )
        .with_context(|| format!("DeleteQueue {name}"))?;
    Ok(())
}

/// Deletes the project's SSM document ([`DOCUMENT`]).
pub fn delete_document(world: &Blocking) -> anyhow::Result<()> {
    world
        .emulator
        .aws_json(
            "ssm",
            "AmazonSSM.DeleteDocument",
            &json!({"Name": DOCUMENT}),
            TIMEOUT,
        )
        .context("DeleteDocument")?;
    Ok(())
}
