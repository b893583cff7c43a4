//! The project's control plane on the emulated world, as the Terraform modules deploy
//! it: the SSM document, the reactor's control path (its inbox fed by EventBridge rules,
//! its ledger, the proxies' role) and the proxy fleet (instances of the proxy group,
//! each a real HAProxy host whose agent service reports to the inbox). The backend
//! group is the caller's (its hooks, tags, subnets and warm pool differ); the reactor
//! that consumes the inbox is [`crate::control::ReactorRun`].

use harness::world::ControlPath;
use harness::{Host, HostSpec, World};
use serde_json::Value;

/// What [`ControlPlane::start`] builds.
#[derive(Debug, Clone)]
pub struct PlaneSpec {
    /// The control path's name: its inbox is `<name>-inbox`, its ledger `<name>-ledger`,
    /// the proxies' role `<name>-proxy`.
    pub name: String,
    /// The EventBridge patterns whose events the inbox gets.
    pub rules: Vec<Value>,
    /// The SSM document's execution timeout (Terraform's template: the agent returns as
    /// soon as its service accepted the change).
    pub document_timeout_s: u64,
    /// The proxy fleet's subnet (a CIDR in 127.0.0.0/16).
    pub proxy_subnet: String,
    /// One proxy per spec, in order.
    pub proxies: Vec<HostSpec>,
    /// Proxy `i`'s zone (agent.toml `zone`, as the proxy fleet's user data writes it);
    /// empty: no zone.
    pub zones: Vec<String>,
}

/// The document, the control path and the proxy fleet, running.
pub struct ControlPlane {
    /// The reactor's control path.
    pub path: ControlPath,
    /// The proxy fleet's hosts, in the specs' order.
    pub hosts: Vec<Host>,
}

impl ControlPlane {
    /// Creates the document, the control path and the proxy fleet of `spec` in `world`.
    pub async fn start(world: &World, spec: PlaneSpec) -> anyhow::Result<Self> {
        world.ssm_document(spec.document_timeout_s).await?;
        let path = world.control_path(&spec.name, &spec.rules)?;
        let subnet = world.add_subnet(&spec.proxy_subnet).await?;
        let hosts = if spec.zones.is_empty() {
            world.proxy_fleet(&path, &subnet, spec.proxies).await?
        } else {
            let zones: Vec<&str> = spec.zones.iter().map(String::as_str).collect();
            world
                .proxy_fleet_in_zones(&path, &subnet, spec.proxies, &zones)
                .await?
        };
        Ok(Self { path, hosts })
    }
}
