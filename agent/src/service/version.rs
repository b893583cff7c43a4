//! Which HAProxy the service drives: read over the admin socket when the service first
//! reaches HAProxy and after each of its reloads, logged when it changes, shown in
//! `agent status` and `/metrics`; a version the agent does not support refuses the
//! service's start-up resume (and so every change) with HAProxy's version named.

use tracing::{info, warn};

use super::{Service, ServiceError, State};
use crate::haproxy::{Client, TESTED_BRANCHES, TESTED_VERSIONS};

impl Service {
    /// Reads HAProxy's version into `st`; an unsupported one is an error.
    pub(super) fn learn_version(
        &self,
        st: &mut State,
        client: &Client,
    ) -> Result<(), ServiceError> {
        let v = match client.version() {
            Ok(v) => v,
            Err(e) => {
                st.haproxy_version = None;
                return Err(e.into());
            }
        };
        if st.haproxy_version.as_deref() != Some(v.text.as_str()) {
            let tested = TESTED_BRANCHES.contains(&v.branch);
            if tested {
                info!(version = %v, "driving HAProxy {v}");
            } else {
                warn!(version = %v, "driving HAProxy {v}, a version not tested with this agent (tested: {TESTED_VERSIONS})");
            }
            st.haproxy_version = Some(v.text);
        }
        Ok(())
    }
}
