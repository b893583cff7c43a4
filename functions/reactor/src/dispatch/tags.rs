//! What the reactor remembers of the proxy tag: that an instance of the proxy group
//! carries it, per instance id, for [`TAG_MEMORY`]. Which instances are in service is
//! read afresh for every change; that a proxy seen lately carries the tag is not, so a
//! burst of changes costs one `DescribeTags` per warm function instance and minute
//! instead of one per change. Only the tag's presence is remembered: an instance seen
//! without it (a tag not yet visible on a new instance) is asked about again at the
//! next change, and a tag taken off a proxy counts within [`TAG_MEMORY`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an instance seen with the proxy tag is believed to carry it.
pub const TAG_MEMORY: Duration = Duration::from_secs(60);

/// The instances seen with the proxy tag, with when.
#[derive(Debug, Default)]
pub struct TagMemory {
    tagged: HashMap<String, Instant>,
}

impl TagMemory {
    fn fresh(&self, id: &str, now: Instant) -> bool {
        self.tagged
            .get(id)
            .is_some_and(|at| now.saturating_duration_since(*at) < TAG_MEMORY)
    }

    /// The ids of `in_service` not seen with the tag within [`TAG_MEMORY`] of `now`:
    /// those to ask about.
    pub fn unknown(&self, in_service: &[String], now: Instant) -> Vec<String> {
        in_service
            .iter()
            .filter(|id| !self.fresh(id, now))
            .cloned()
            .collect()
    }

    /// Records that `tagged` carry the tag as read at `now`; forgets what is older than
    /// [`TAG_MEMORY`].
    pub fn record(&mut self, tagged: &[String], now: Instant) {
        self.tagged
            .retain(|_, at| now.saturating_duration_since(*at) < TAG_MEMORY);
        for id in tagged {
            self.tagged.insert(id.clone(), now);
        }
    }

    /// The ids of `in_service` seen with the tag within [`TAG_MEMORY`] of `now`.
    pub fn tagged<'a>(&self, in_service: &'a [String], now: Instant) -> Vec<&'a String> {
        in_service.iter().filter(|id| self.fresh(id, now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_proxy_seen_tagged_is_believed_for_a_minute_and_no_other() {
        let t0 = Instant::now();
        let mut m = TagMemory::default();
        let fleet = ids(&["i-1", "i-2", "i-3"]);
        assert_eq!(m.unknown(&fleet, t0), fleet, "nothing known at first");
        m.record(&ids(&["i-1", "i-3"]), t0);
        let soon = t0 + Duration::from_secs(59);
        assert_eq!(m.tagged(&fleet, soon), vec!["i-1", "i-3"]);
        // One seen without the tag is asked about again; so is a new proxy.
        let grown = ids(&["i-1", "i-2", "i-3", "i-4"]);
        assert_eq!(m.unknown(&grown, soon), ids(&["i-2", "i-4"]));
        // Past the minute every proxy is asked about again: a tag taken off counts.
        let later = t0 + TAG_MEMORY;
        assert_eq!(m.unknown(&fleet, later), fleet);
        assert!(m.tagged(&fleet, later).is_empty());
        m.record(&ids(&["i-3"]), later);
        assert_eq!(m.tagged(&fleet, later), vec!["i-3"]);
        // An instance no longer in service is not a proxy, whatever its tag.
        assert!(m.tagged(&ids(&["i-2"]), later).is_empty());
    }
}
