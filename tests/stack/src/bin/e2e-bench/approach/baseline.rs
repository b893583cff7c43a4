//! What the two baselines share: their group (no lifecycle hooks), their two HAProxy
//! hosts (whose agent services have no `[aws]` section, so no agent sync touches the
//! servers the baseline manages), and [`Baseline`], the control loop on a thread and a
//! runtime of its own, reading the group as AWS's API describes it
//! ([`serving_members`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use harness::{Host, World};
use infra::aws::{AwsDiscovery, Discovery, Phase};
use stack::control::CpuThread;
use stack::proxy_host;
use stack::usage::thread_cpu_s;

use crate::rig::Setup;
use crate::POOL;

/// Creates the group, without hooks, and the baseline's two hosts, `<name>-1` and
/// `<name>-2`.
pub fn start(setup: &Setup, name: &str) -> anyhow::Result<Vec<Host>> {
    setup.create_group(false)?;
    (1..=2)
        .map(|i| {
            proxy_host(
                &format!("{name}-{i}"),
                (POOL, setup.port),
                setup.args.slots,
                None,
                setup.world.emulator.aws_env(),
            )
        })
        .collect()
}

/// A baseline's control loop on its own thread and runtime; its CPU time (the thread's,
/// and what the loop adds: its `haproxy -c` children) comes back from
/// [`Baseline::finish`].
pub struct Baseline {
    run: CpuThread,
}

impl Baseline {
    /// Runs `body` (given the group's discovery through `world`'s SDK and the stop flag;
    /// its result: CPU seconds outside the thread) on a current-thread runtime, on a
    /// thread of its own.
    pub fn start<F, Fut>(world: &Arc<World>, body: F) -> anyhow::Result<Self>
    where
        F: FnOnce(AwsDiscovery, Arc<AtomicBool>) -> Fut + Send + 'static,
        Fut: Future<Output = f64>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the baseline's runtime")?;
        let w = world.clone();
        let run = CpuThread::spawn(move |stop| {
            let discovery = AwsDiscovery::new(&w.sdk);
            let outside = rt.block_on(body(discovery, stop));
            thread_cpu_s() + outside
        });
        Ok(Self { run })
    }

    /// Stops the loop; its CPU seconds (0 once finished).
    pub fn finish(&mut self) -> f64 {
        self.run.finish()
    }
}

/// The group's in-service members with addresses, id -> ip; `None` when the group
/// could not be read (said on stderr, as `who`) or does not exist.
pub async fn serving_members(
    discovery: &AwsDiscovery,
    group: &str,
    who: &str,
) -> Option<BTreeMap<String, String>> {
    let Ok(name) = infra::GroupName::new(group) else {
        eprintln!("{who}: {group:?} is not a group name");
        return None;
    };
    let state = match discovery.group(&name).await {
        Ok(state) => state?,
        Err(e) => {
            eprintln!("{who}: reading the group {group}: {e}");
            return None;
        }
    };
    Some(
        state
            .members
            .iter()
            .filter(|m| m.phase == Phase::Serving)
            .filter_map(|m| Some((m.id.to_string(), m.address?.to_string())))
            .collect(),
    )
}
