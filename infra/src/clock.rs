//! The wall clock both sides stamp messages and deadlines with: milliseconds since the
//! Unix epoch, as generations, `drain_by_ms` and report times are written.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, now (0 for a clock before the epoch, `u64::MAX` past
/// what fits).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
