//! Why a request to the agent service could not be carried out, and the metric kind
//! each error counts as.

use infra::{MessageError, PoolName};

use super::*;

/// Why a request could not be carried out. Errors before any command was sent change
/// nothing; a failed send puts the table back as it was.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The message is malformed or invalid.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The message names a pool agent.toml does not define.
    #[error("unknown pool {pool}: this host manages {known}; add a [[pool]] entry to agent.toml or fix the message")]
    UnknownPool {
        /// The pool named.
        pool: PoolName,
        /// The pools this host manages.
        known: String,
    },
    /// HAProxy has no slots for a pool agent.toml defines.
    #[error("HAProxy has no slots for pool {pool}: its backend lacks the `server-template slot` line, or HAProxy runs another configuration. Run `agent config check`")]
    NoBackend {
        /// The pool.
        pool: PoolName,
    },
    /// Talking to HAProxy failed.
    #[error(transparent)]
    Haproxy(#[from] HaproxyError),
    /// A state file or the lock failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// haproxy.cfg could not be read or written.
    #[error("{action} {path}: {source}")]
    ConfigFile {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A pool that must grow has no slot line in haproxy.cfg.
    #[error("{path}: backend {pool} has no `server-template slot` line to grow; run `agent config check`")]
    NoSlotLine {
        /// haproxy.cfg.
        path: PathBuf,
        /// The pool.
        pool: PoolName,
    },
    /// `haproxy -c` could not be run.
    #[error("cannot run {binary} -c: {source}; set haproxy.binary in agent.toml")]
    Check {
        /// The haproxy binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The grown configuration failed `haproxy -c`; the running one is untouched.
    #[error("the configuration with more slots failed `haproxy -c` and was not installed; HAProxy keeps running the old one. HAProxy said:\n{output}")]
    ConfigInvalid {
        /// HAProxy's own output.
        output: String,
    },
    /// The reload did not take.
    #[error("HAProxy reload failed: {0}. The previous configuration was put back; the old worker keeps serving")]
    Reload(String),
    /// Reading the desired state from AWS failed.
    #[error(transparent)]
    Aws(#[from] crate::aws::SourceError),
    /// The message (or the growth it needs) is beyond what this host accepts.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

/// The metrics kind of an error a request or a tick met.
pub(super) fn error_kind(e: &ServiceError) -> ErrorKind {
    match e {
        ServiceError::Message(_) | ServiceError::UnknownPool { .. } | ServiceError::Limit(_) => {
            ErrorKind::RefusedMessage
        }
        ServiceError::NoBackend { .. } => ErrorKind::NoSlots,
        ServiceError::Haproxy(h) => haproxy_kind(h),
        ServiceError::Store(_) => ErrorKind::StateWriteFailed,
        ServiceError::ConfigFile { .. }
        | ServiceError::NoSlotLine { .. }
        | ServiceError::Check { .. }
        | ServiceError::ConfigInvalid { .. }
        | ServiceError::Reload(_) => ErrorKind::ReloadFailed,
        ServiceError::Aws(_) => ErrorKind::SyncFailed,
    }
}

/// The metrics kind of a failed exchange with HAProxy.
pub(super) fn haproxy_kind(e: &HaproxyError) -> ErrorKind {
    match e {
        HaproxyError::Connect { .. } | HaproxyError::Io { .. } => ErrorKind::HaproxyUnreachable,
        HaproxyError::Refused { .. } | HaproxyError::Protocol { .. } => ErrorKind::BatchFailed,
        HaproxyError::NoMaster | HaproxyError::Binary { .. } => ErrorKind::ReloadFailed,
        HaproxyError::Unsupported { .. } => ErrorKind::UnsupportedHaproxy,
    }
}
