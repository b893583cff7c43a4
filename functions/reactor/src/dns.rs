//! The proxy fleet's Route 53 records: one multi-value A record per proxy instance (set
//! identifier = instance id), kept in step with the fleet's group.
//!
//! Planning and batching are pure; [`DnsApi`] is the boundary, [`Route53Dns`] its AWS
//! implementation (retries `PriorRequestNotComplete` and throttling with backoff).

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_route53::types::{
    ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use infra::GroupName;

/// At most this many records per `ChangeResourceRecordSets` (an UPSERT counts twice).
pub const MAX_RECORDS_PER_REQUEST: usize = 1000;
/// At most this many characters of values per request (an UPSERT counts twice).
pub const MAX_CHARS_PER_REQUEST: usize = 32_000;

/// One record set of the fleet's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The set identifier (the proxy's instance id).
    pub set_id: String,
    /// Its values (one address for the records this project writes).
    pub values: Vec<String>,
    /// Its TTL.
    pub ttl: i64,
    /// Whether it is a multi-value answer record.
    pub multi_value: bool,
}

/// One change to a record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// Create or replace.
    Upsert(Record),
    /// Delete (the record exactly as it exists).
    Delete(Record),
}

impl RecordChange {
    fn weight(&self) -> (usize, usize) {
        let (r, factor) = match self {
            Self::Upsert(r) => (r, 2),
            Self::Delete(r) => (r, 1),
        };
        let records = r.values.len().max(1) * factor;
        let chars = r.values.iter().map(String::len).sum::<usize>() * factor;
        (records, chars)
    }
}

/// The changes bringing `existing` to one record per proxy (`proxies`: instance id ->
/// address): upserts for new or changed proxies first, then deletes of gone ones.
pub fn plan_records(
    existing: &[Record],
    proxies: &[(String, IpAddr)],
    ttl: i64,
) -> Vec<RecordChange> {
    let mut out = Vec::new();
    for (id, addr) in proxies {
        let want = Record {
            set_id: id.clone(),
            values: vec![addr.to_string()],
            ttl,
            multi_value: true,
        };
        if existing.contains(&want) {
            continue;
        }
        out.push(RecordChange::Upsert(want));
    }
    for r in existing {
        if !proxies.iter().any(|(id, _)| *id == r.set_id) {
            out.push(RecordChange::Delete(r.clone()));
        }
    }
    out
}

/// Splits changes into requests within Route 53's limits, in order.
pub fn batch_changes(changes: Vec<RecordChange>) -> Vec<Vec<RecordChange>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let (mut records, mut chars) = (0, 0);
    for c in changes {
        let (r, ch) = c.weight();
        if !current.is_empty()
            && (records + r > MAX_RECORDS_PER_REQUEST || chars + ch > MAX_CHARS_PER_REQUEST)
        {
            batches.push(std::mem::take(&mut current));
            records = 0;
            chars = 0;
        }
        records += r;
        chars += ch;
        current.push(c);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Why the records could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[error("{api} on hosted zone {zone} (proxy group {group}) failed: {message}")]
pub struct DnsError {
    /// The API operation.
    pub api: &'static str,
    /// The hosted zone.
    pub zone: String,
    /// The proxy fleet's group.
    pub group: GroupName,
    /// The SDK's error.
    pub message: String,
}

/// Route 53 records of one name.
pub trait DnsApi: Send + Sync {
    /// The record sets of `name` (type A, with a set identifier) in `zone`.
    fn list(
        &self,
        zone: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<Record>, DnsError>> + Send;

    /// Applies one batch (all-or-nothing).
    fn change(
        &self,
        zone: &str,
        name: &str,
        batch: &[RecordChange],
    ) -> impl Future<Output = Result<(), DnsError>> + Send;
}

/// [`DnsApi`] on Route 53.
#[derive(Debug, Clone)]
pub struct Route53Dns {
    r53: aws_sdk_route53::Client,
    group: GroupName,
}

/// `/hostedzone/Z123` -> `Z123`.
pub fn zone_id(zone: &str) -> &str {
    zone.trim().trim_start_matches("/hostedzone/")
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

impl Route53Dns {
    /// A client from `config`; `group` (the proxy group) names errors.
    pub fn new(config: &aws_config::SdkConfig, group: GroupName) -> Self {
        Self {
            r53: aws_sdk_route53::Client::new(config),
            group,
        }
    }

    fn err(&self, api: &'static str, zone: &str, message: String) -> DnsError {
        DnsError {
            api,
            zone: zone.to_string(),
            group: self.group.clone(),
            message,
        }
    }

    fn to_sdk(
        &self,
        zone: &str,
        name: &str,
        c: &RecordChange,
    ) -> Result<aws_sdk_route53::types::Change, DnsError> {
        let (action, r) = match c {
            RecordChange::Upsert(r) => (ChangeAction::Upsert, r),
            RecordChange::Delete(r) => (ChangeAction::Delete, r),
        };
        let bad = |e: aws_sdk_route53::error::BuildError| {
            self.err(
                "ChangeResourceRecordSets",
                zone,
                format!("could not build the request: {e}"),
            )
        };
        let mut set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .set_identifier(&r.set_id)
            .ttl(r.ttl);
        if r.multi_value {
            set = set.multi_value_answer(true);
        }
        for v in &r.values {
            set = set.resource_records(ResourceRecord::builder().value(v).build().map_err(bad)?);
        }
        aws_sdk_route53::types::Change::builder()
            .action(action)
            .resource_record_set(set.build().map_err(bad)?)
            .build()
            .map_err(bad)
    }
}

impl DnsApi for Route53Dns {
    async fn list(&self, zone: &str, name: &str) -> Result<Vec<Record>, DnsError> {
        let mut out = Vec::new();
        let mut start: Option<(String, RrType, Option<String>)> =
            Some((name.to_string(), RrType::A, None));
        while let Some((sname, stype, sid)) = start.take() {
            let page = self
                .r53
                .list_resource_record_sets()
                .hosted_zone_id(zone_id(zone))
                .start_record_name(sname)
                .start_record_type(stype)
                .set_start_record_identifier(sid)
                .send()
                .await
                .map_err(|e| {
                    self.err(
                        "ListResourceRecordSets",
                        zone,
                        DisplayErrorContext(&e).to_string(),
                    )
                })?;
            let mut past = false;
            for rs in page.resource_record_sets() {
                if !same_name(rs.name(), name) {
                    past = true;
                    break;
                }
                if rs.r#type() != &RrType::A {
                    continue;
                }
                let Some(set_id) = rs.set_identifier() else {
                    tracing::warn!(
                        record = name,
                        "an A record without a set identifier has the fleet's name; left alone"
                    );
                    continue;
                };
                out.push(Record {
                    set_id: set_id.to_string(),
                    values: rs
                        .resource_records()
                        .iter()
                        .map(|r| r.value().to_string())
                        .collect(),
                    ttl: rs.ttl().unwrap_or_default(),
                    multi_value: rs.multi_value_answer().unwrap_or(false),
                });
            }
            if page.is_truncated() && !past {
                if let (Some(n), Some(t)) = (page.next_record_name(), page.next_record_type()) {
                    start = Some((
                        n.to_string(),
                        t.clone(),
                        page.next_record_identifier().map(str::to_string),
                    ));
                }
            }
        }
        Ok(out)
    }

    async fn change(&self, zone: &str, name: &str, batch: &[RecordChange]) -> Result<(), DnsError> {
        let changes = batch
            .iter()
            .map(|c| self.to_sdk(zone, name, c))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = ChangeBatch::builder()
            .set_changes(Some(changes))
            .comment("haproxy-asg: proxy fleet records")
            .build()
            .map_err(|e| self.err("ChangeResourceRecordSets", zone, e.to_string()))?;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let r = self
                .r53
                .change_resource_record_sets()
                .hosted_zone_id(zone_id(zone))
                .change_batch(batch.clone())
                .send()
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let retryable = matches!(
                        e.code(),
                        Some("PriorRequestNotComplete" | "Throttling" | "ThrottlingException")
                    );
                    if !retryable || attempt >= 10 {
                        return Err(self.err(
                            "ChangeResourceRecordSets",
                            zone,
                            format!("after {attempt} attempt(s): {}", DisplayErrorContext(&e)),
                        ));
                    }
                    tracing::info!(
                        attempt,
                        code = e.code().unwrap_or_default(),
                        "Route 53 busy; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, v: &str) -> Record {
        Record {
            set_id: id.into(),
            values: vec![v.into()],
            ttl: 60,
            multi_value: true,
        }
    }

    #[test]
    fn records_follow_the_fleet() {
        let existing = vec![
            rec("i-1", "10.0.0.1"),
            rec("i-2", "10.0.0.2"),
            rec("i-3", "10.0.0.9"),
        ];
        let proxies = vec![
            ("i-1".to_string(), "10.0.0.1".parse().unwrap()),
            ("i-3".to_string(), "10.0.0.3".parse().unwrap()),
            ("i-4".to_string(), "10.0.0.4".parse().unwrap()),
        ];
        let plan = plan_records(&existing, &proxies, 60);
        assert_eq!(
            plan,
            vec![
                RecordChange::Upsert(rec("i-3", "10.0.0.3")),
                RecordChange::Upsert(rec("i-4", "10.0.0.4")),
                RecordChange::Delete(rec("i-2", "10.0.0.2")),
            ]
        );
        // A TTL change rewrites every record.
        assert_eq!(plan_records(&existing[..1], &proxies[..1], 30).len(), 1);
        assert!(plan_records(&existing[..1], &proxies[..1], 60).is_empty());
    }

    #[test]
    fn batches_respect_the_record_limit_counting_upserts_twice() {
        let ups: Vec<RecordChange> = (0..1200)
            .map(|i| RecordChange::Upsert(rec(&format!("i-{i}"), "10.0.0.1")))
            .collect();
        let b = batch_changes(ups);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 200]);
        let dels: Vec<RecordChange> = (0..1200)
            .map(|i| RecordChange::Delete(rec(&format!("i-{i}"), "10.0.0.1")))
            .collect();
        assert_eq!(
            batch_changes(dels).iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 200]
        );
        let mixed: Vec<RecordChange> = (0..600)
            .map(|i| {
                if i % 2 == 0 {
                    RecordChange::Upsert(rec(&format!("i-{i}"), "1.1.1.1"))
                } else {
                    RecordChange::Delete(rec(&format!("i-{i}"), "1.1.1.1"))
                }
            })
            .collect();
        for batch in batch_changes(mixed) {
            let w: usize = batch.iter().map(|c| c.weight().0).sum();
            assert!(w <= MAX_RECORDS_PER_REQUEST);
        }
        assert!(batch_changes(Vec::new()).is_empty());
    }

    #[test]
    fn batches_respect_the_character_limit() {
        // IPv6 literals of 39 characters: 32,000 / 78 per upsert = 410 per batch.
        let v6 = "2001:0db8:0000:0000:0000:0000:0000:0001";
        let ups: Vec<RecordChange> = (0..900)
            .map(|i| RecordChange::Upsert(rec(&format!("i-{i}"), v6)))
            .collect();
        let b = batch_changes(ups);
        assert_eq!(b[0].len(), 410);
        for batch in &b {
            let chars: usize = batch.iter().map(|c| c.weight().1).sum();
            assert!(chars <= MAX_CHARS_PER_REQUEST);
        }
    }

    #[test]
    fn zone_ids_and_names_are_normalised() {
        assert_eq!(zone_id("/hostedzone/Z1"), "Z1");
        assert_eq!(zone_id("Z1"), "Z1");
        assert!(same_name("LB.example.com.", "lb.example.com"));
    }
}
