//! The emulator's teardown after an approach: deleting a group.

use anyhow::Context;
use harness::world::Blocking;

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
