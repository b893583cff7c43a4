//! The ledger in DynamoDB (`LEDGER_TABLE`, created by the Terraform reactor module).
//!
//! | attribute | type | what |
//! |---|---|---|
//! | `id` | S | hash key: `<instance>#<launch\|terminate>` |
//! | `version` | N | bumped by every write; a write names the version it read |
//! | `doc` | S | the item as JSON ([`Item`]) |
//! | `group`, `instance`, `transition` | S | for people reading the table |
//! | `open` | S | `"1"` while undecided: the key of the sparse index [`OPEN_INDEX`] |
//! | `decision` | S | `CONTINUE` or `ABANDON`, once decided |
//! | `expires_at` | N | once decided: epoch seconds after which TTL removes it |
//!
//! Records kept beside the actions ([`Doc`]: `health#<instance>`, `unhealthy#<group>`)
//! have `id`, `version`, `doc` and `expires_at`, never `open`.
//!
//! Reads are `BatchGetItem` (100 keys a call, strongly consistent); one item is written
//! with a conditional `PutItem`, several with `TransactWriteItems` (100 a call): a
//! transaction is all or nothing, so when some conditions fail none of its items is
//! written, and all of them go back to [`super::update`], which writes them again
//! together. Each write asks for the stored item should its condition fail (`ALL_OLD`),
//! and an item whose own condition held is as it was read, so a conflict costs the next
//! write without a read.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use infra::aws::{api_error, AwsError};

use super::{ActionKey, Doc, Item, Ledger, LedgerError, Stored, Unwritten};

/// The sparse index of undecided items.
pub const OPEN_INDEX: &str = "open";
/// Keys per `BatchGetItem`, items per `TransactWriteItems` (the API's limits).
const BATCH: usize = 100;

/// The ledger table.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl_s: u64,
}

type Attrs = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoLedger {
    /// The table `table` with clients from `config`; decided items expire `ttl_s`
    /// after their decision.
    pub fn new(config: &aws_config::SdkConfig, table: &str, ttl_s: u64) -> Self {
        Self {
            client: aws_sdk_dynamodb::Client::new(config),
            table: table.to_string(),
            ttl_s,
        }
    }

    fn subject(&self) -> String {
        format!("ledger table {}", self.table)
    }

    /// The attributes `item` is stored as (its version bumped).
    fn attributes(&self, item: &Item) -> Attrs {
        let key = item.key();
        let doc = serde_json::to_string(item).unwrap_or_default();
        let mut a: Attrs = HashMap::from([
            ("id".to_string(), s(key.id())),
            ("version".into(), n(item.version + 1)),
            ("doc".into(), s(doc)),
            ("group".into(), s(item.group.clone())),
            ("instance".into(), s(item.instance.to_string())),
            ("transition".into(), s(item.transition.to_string())),
        ]);
        match &item.decided {
            None => {
                a.insert("open".into(), s("1"));
            }
            Some(d) => {
                a.insert("decision".into(), s(d.verdict.as_aws()));
                a.insert(
                    "expires_at".into(),
                    n((d.at_ms / 1000).saturating_add(self.ttl_s)),
                );
            }
        }
        a
    }

    /// The condition a write of `item` needs, with its values.
    fn condition(item: &Item) -> (&'static str, Option<Attrs>) {
        Self::condition_on(item.version)
    }

    /// The condition a write needs when `version` was read (0: the item must not exist).
    fn condition_on(version: u64) -> (&'static str, Option<Attrs>) {
        if version == 0 {
            ("attribute_not_exists(id)", None)
        } else {
            (
                "version = :v",
                Some(HashMap::from([(":v".to_string(), n(version))])),
            )
        }
    }

    fn read(attrs: &Attrs) -> Result<Item, LedgerError> {
        let id = match attrs.get("id") {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => String::new(),
        };
        let corrupt = |reason: String| LedgerError::Corrupt {
            id: id.clone(),
            reason,
        };
        let doc = match attrs.get("doc") {
            Some(AttributeValue::S(d)) => d,
            _ => return Err(corrupt("no doc attribute".into())),
        };
        let mut item: Item =
            serde_json::from_str(doc).map_err(|e| corrupt(format!("its doc: {e}")))?;
        item.version = match attrs.get("version") {
            Some(AttributeValue::N(v)) => {
                v.parse().map_err(|_| corrupt(format!("version {v:?}")))?
            }
            _ => return Err(corrupt("no version attribute".into())),
        };
        Ok(item)
    }

    /// `BatchGetItem` of at most [`BATCH`] keys, strongly consistent, asking again for
    /// the keys DynamoDB left unprocessed under load.
    async fn batch_get(&self, mut wanted: Vec<Attrs>) -> Result<Vec<Attrs>, LedgerError> {
        let mut out = Vec::new();
        for _ in 0..10 {
            if wanted.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut wanted)))
                .consistent_read(true)
                .build()
                .map_err(|e| api_error("BatchGetItem", &self.subject(), &e))?;
            let answer = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| api_error("BatchGetItem", &self.subject(), &e))?;
            if let Some(got) = answer.responses().and_then(|r| r.get(&self.table)) {
                out.extend(got.iter().cloned());
            }
            if let Some(left) = answer.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                wanted = left.keys().to_vec();
            }
        }
        if !wanted.is_empty() {
            return Err(AwsError::Api {
                api: "BatchGetItem",
                subject: self.subject(),
                message: format!("{} keys stayed unprocessed after 10 tries", wanted.len()),
            }
            .into());
        }
        Ok(out)
    }

    async fn put_one(&self, item: &Item) -> Result<bool, LedgerError> {
        self.put_if(self.attributes(item), item.version).await
    }

    /// A `PutItem` of `attrs` on the condition that the stored version is `version`;
    /// whether it was written.
    async fn put_if(&self, attrs: Attrs, version: u64) -> Result<bool, LedgerError> {
        let (condition, values) = Self::condition_on(version);
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(api_error("PutItem", &self.subject(), &e).into()),
        }
    }

    /// Writes `items` in one transaction; when a condition failed (nothing was written
    /// then), every item, with the stored one where DynamoDB returned it (`ALL_OLD`:
    /// those whose condition failed).
    async fn put_many(&self, items: &[&Item]) -> Result<Vec<Unwritten>, LedgerError> {
        let mut ops = Vec::with_capacity(items.len());
        for item in items {
            let (condition, values) = Self::condition(item);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.attributes(item)))
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| api_error("TransactWriteItems", &self.subject(), &e))?;
            ops.push(TransactWriteItem::builder().put(put).build());
        }
        let r = self
            .client
            .transact_write_items()
            .set_transact_items(Some(ops))
            .send()
            .await;
        let e = match r {
            Ok(_) => return Ok(Vec::new()),
            Err(e) => e,
        };
        let Some(canceled) = e.as_service_error().and_then(|s| match s {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        }) else {
            return Err(api_error("TransactWriteItems", &self.subject(), &e).into());
        };
        // Each item has a reason: "None" where its condition held. A conflict with
        // another transaction in flight counts as a failed condition: re-read, retry.
        let reasons = canceled.cancellation_reasons();
        if !reasons
            .iter()
            .any(|r| r.code().is_some_and(|c| c != "None"))
        {
            return Err(api_error("TransactWriteItems", &self.subject(), &e).into());
        }
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| Unwritten {
                key: item.key(),
                stored: stored_after(reasons.get(i)),
            })
            .collect())
    }
}

/// What a cancelled transaction's reason tells of its item: the item as stored where
/// its condition failed (`ALL_OLD`), unchanged where its reason is `None` (its condition
/// held; only another item failed), else nothing (`TransactionConflict`: another
/// transaction was writing it).
fn stored_after(reason: Option<&CancellationReason>) -> Stored {
    let Some(reason) = reason else {
        return Stored::Unknown;
    };
    if reason.code() == Some("None") {
        return Stored::AsRead;
    }
    match reason.item().map(DynamoLedger::read) {
        Some(Ok(item)) => Stored::Returned(Box::new(item)),
        _ => Stored::Unknown,
    }
}

impl Ledger for DynamoLedger {
    async fn get(&self, keys: &[ActionKey]) -> Result<Vec<Item>, LedgerError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(BATCH) {
            let ids: BTreeSet<String> = chunk.iter().map(ActionKey::id).collect();
            let wanted: Vec<Attrs> = ids
                .into_iter()
                .map(|id| HashMap::from([("id".to_string(), s(id))]))
                .collect();
            for attrs in self.batch_get(wanted).await? {
                out.push(Self::read(&attrs)?);
            }
        }
        Ok(out)
    }

    async fn put(&self, items: &[Item]) -> Result<Vec<Unwritten>, LedgerError> {
        let mut conflicts = Vec::new();
        for chunk in items.chunks(BATCH) {
            if let [one] = chunk {
                if !self.put_one(one).await? {
                    conflicts.push(Unwritten {
                        key: one.key(),
                        stored: Stored::Unknown,
                    });
                }
                continue;
            }
            // Nothing of a failed transaction was written: the caller writes its items
            // again together, reading only those DynamoDB did not return.
            let chunk: Vec<&Item> = chunk.iter().collect();
            conflicts.extend(self.put_many(&chunk).await?);
        }
        Ok(conflicts)
    }

    async fn docs(&self, ids: &[String]) -> Result<Vec<Doc>, LedgerError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(BATCH) {
            let keys: Vec<Attrs> = chunk
                .iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|id| HashMap::from([("id".to_string(), s(id.clone()))]))
                .collect();
            for attrs in self.batch_get(keys).await? {
                let field = |k: &str| match attrs.get(k) {
                    Some(AttributeValue::S(v) | AttributeValue::N(v)) => Some(v.clone()),
                    _ => None,
                };
                let (Some(id), Some(version), Some(body)) =
                    (field("id"), field("version"), field("doc"))
                else {
                    continue;
                };
                out.push(Doc {
                    id,
                    version: version.parse().unwrap_or(0),
                    body,
                    expires_at_s: field("expires_at").and_then(|e| e.parse().ok()),
                });
            }
        }
        Ok(out)
    }

    async fn put_doc(&self, doc: &Doc) -> Result<bool, LedgerError> {
        let mut item: Attrs = HashMap::from([
            ("id".to_string(), s(doc.id.clone())),
            ("version".into(), n(doc.version + 1)),
            ("doc".into(), s(doc.body.clone())),
        ]);
        if let Some(at) = doc.expires_at_s {
            item.insert("expires_at".into(), n(at));
        }
        self.put_if(item, doc.version).await
    }

    async fn open(&self) -> Result<Vec<Item>, LedgerError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_INDEX)
            .key_condition_expression("#o = :one")
            .expression_attribute_names("#o", "open")
            .expression_attribute_values(":one", s("1"))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("Query", &self.subject(), &e))?;
            for attrs in page.items() {
                out.push(Self::read(attrs)?);
            }
        }
        Ok(out)
    }
}
