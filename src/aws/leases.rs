//! The leases table in DynamoDB (`ESM_LEASES_TABLE`, key `LeaseKey`): one item per partition
//! lease (`lease#{mapping}#{topic}#{partition}`) and one heartbeat item per poller
//! (`poller#{id}`), and for a mapping with `ScalingConfig.MaximumConcurrency` one grants item
//! (`grants#{mapping}`, [`crate::coordination::concurrency`]). See
//! [`crate::coordination::leases`] for the protocol.
//!
//! Kafka topic names cannot contain `#`, nor can UUIDs, so keys of different mappings never share
//! the `lease#{mapping}#` prefix. Heartbeat items carry `Ttl` (epoch seconds, a day after their
//! expiry) so a table with DynamoDB TTL enabled on it drops what a crash left behind; pollers
//! also remove items of pollers they have watched dead for a while.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::coordination::leases::{
    Grants, Heartbeat, Lease, LeaseError, LeaseId, LeaseStore, Load, MalformedLease, OffsetReset, PollerInfo, Snapshot,
};

/// The table's partition key.
pub const LEASE_KEY: &str = "LeaseKey";
const FROM_EARLIEST: &str = "FromEarliest";
/// On lease items: how long an invoke abandoned by the last holder may still run (ms).
const FENCE_MS: &str = "FenceMs";
const TTL: &str = "Ttl";
/// How long after its expiry a heartbeat item may be dropped by DynamoDB TTL.
const TTL_AFTER_EXPIRY_S: i64 = 24 * 3600;

const MAPPING_UUID: &str = "MappingUuid";
const TOPIC: &str = "Topic";
const PARTITION: &str = "Partition";
const OWNER: &str = "Owner";
const EXPIRES_AT_MS: &str = "ExpiresAtMs";
const COUNTER: &str = "Counter";
const POLLER_ID: &str = "PollerId";
const STARTED_AT_MS: &str = "StartedAtMs";
const HELD: &str = "Held";
const LAG: &str = "Lag";
const STOPPING: &str = "Stopping";
/// On heartbeat items: the poller's partitions' progress (JSON, for `esm status`).
const PROGRESS: &str = "Progress";
/// On lease items: an offset reset requested by `esm reset-offsets`, and the last one applied.
const RESET_REQUEST: &str = "ResetRequest";
const RESET_TO: &str = "ResetTo";
const RESET_APPLIED: &str = "ResetApplied";

const LEASE_PREFIX: &str = "lease#";
const GRANTS_PREFIX: &str = "grants#";
/// On grants items: poller id → slots held, and poller id → slots it could use.
const GRANTED: &str = "Granted";
const WANTED: &str = "Wanted";
const SERVED: &str = "Served";
const POLLER_PREFIX: &str = "poller#";

/// Unchanged since the taker read it (and found it free, or its owner's heartbeat expired).
const ACQUIRE_CONDITION: &str = "#c = :c";
/// Still ours, and unchanged since our last write.
const HELD_CONDITION: &str = "#o = :o AND #c = :c";

/// The DynamoDB table.
///
/// The SDK retries failed requests; a conditional write whose first attempt succeeded but whose
/// answer was lost then fails its retry with `Lost`. That errs on the safe side: the caller does
/// not use a lease it does hold, and its next lease scan finds the lease under its own id and
/// releases it.
#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLeaseStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(super::dynamodb_client(sdk), table)
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        key: &str,
        e: SdkError<E, R>,
    ) -> LeaseError {
        if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") {
            LeaseError::Lost { what: key.to_owned() }
        } else {
            self.dynamo(DisplayErrorContext(&e).to_string())
        }
    }

    fn dynamo(&self, message: String) -> LeaseError {
        LeaseError::Dynamo { table: self.table.clone(), message }
    }

    /// Releases a held lease, leaving `fence` ([`Lease::fence_ms`]) on it when given.
    async fn give_up(&self, lease: &Lease, owner: &str, fence: Option<std::time::Duration>) -> Result<(), LeaseError> {
        let key = lease_key(&lease.id);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .condition_expression(HELD_CONDITION)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":c", n(lease.counter));
        let update = match fence {
            None => update.update_expression("SET #c = #c + :one REMOVE #o"),
            Some(fence) => update
                .update_expression("SET #c = #c + :one, #f = :f REMOVE #o")
                .expression_attribute_names("#f", FENCE_MS)
                .expression_attribute_values(":f", n(fence.as_millis())),
        };
        update.send().await.map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    /// Every item whose key starts with `prefix`, with only the `projection` attributes if given.
    async fn scan_prefix(
        &self,
        prefix: &str,
        projection: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, LeaseError> {
        self.client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(#k, :p)")
            .expression_attribute_names("#k", LEASE_KEY)
            .expression_attribute_values(":p", s(prefix))
            .set_projection_expression(projection.map(str::to_owned))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| self.err(&format!("{prefix}*"), e))
    }

    /// Every heartbeat item's progress.
    ///
    /// # Errors
    /// The table cannot be read.
    pub async fn progress(&self) -> Result<Vec<PollerProgress>, LeaseError> {
        let items = self.scan_prefix(POLLER_PREFIX, None).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let poller = key_of(item).strip_prefix(POLLER_PREFIX)?.to_owned();
                let expires_at_ms = item.get(EXPIRES_AT_MS)?.as_n().ok()?.parse().ok()?;
                let progress = item.get(PROGRESS).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                Some(PollerProgress { poller, expires_at_ms, progress })
            })
            .collect())
    }
}

fn key_of(item: &HashMap<String, AttributeValue>) -> String {
    item.get(LEASE_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

fn lease_key(id: &LeaseId) -> String {
    format!("{LEASE_PREFIX}{}#{}#{}", id.mapping, id.topic, id.partition)
}

fn mapping_prefix(mapping: &str) -> String {
    format!("{LEASE_PREFIX}{mapping}#")
}

fn grants_key(mapping: &str) -> String {
    format!("{GRANTS_PREFIX}{mapping}")
}

/// A map attribute of numbers (`Granted`, `Wanted`, `Served`); entries that are not numbers are
/// left out.
fn number_map<T: std::str::FromStr>(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> std::collections::BTreeMap<String, T> {
    item.get(name)
        .and_then(|v| v.as_m().ok())
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?))).collect())
        .unwrap_or_default()
}

fn to_number_map<T: std::fmt::Display>(map: &std::collections::BTreeMap<String, T>) -> AttributeValue {
    AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), n(v))).collect())
}

fn poller_key(poller: &str) -> String {
    format!("{POLLER_PREFIX}{poller}")
}

/// A lease item, or what is wrong with it.
fn parse_lease(item: &HashMap<String, AttributeValue>) -> Result<Lease, String> {
    let string = |name: &str| -> Result<&str, String> {
        item.get(name)
            .ok_or_else(|| format!("{name} is missing"))?
            .as_s()
            .map(String::as_str)
            .map_err(|_| format!("{name} is not a string (S)"))
    };
    let number = |name: &str| -> Result<&str, String> {
        item.get(name)
            .ok_or_else(|| format!("{name} is missing"))?
            .as_n()
            .map(String::as_str)
            .map_err(|_| format!("{name} is not a number (N)"))
    };
    let partition = number(PARTITION)?;
    let counter = number(COUNTER)?;
    let owner = match item.get(OWNER) {
        None => None,
        Some(v) => Some(v.as_s().map_err(|_| format!("{OWNER} is not a string (S)"))?.clone()),
    };
    let from_earliest = match item.get(FROM_EARLIEST) {
        None => false,
        Some(v) => *v.as_bool().map_err(|_| format!("{FROM_EARLIEST} is not a boolean (BOOL)"))?,
    };
    let fence_ms = match item.get(FENCE_MS) {
        None => None,
        Some(v) => Some(
            v.as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{FENCE_MS} is not a whole number (N)"))?,
        ),
    };
    Ok(Lease {
        id: LeaseId::new(
            string(MAPPING_UUID)?,
            string(TOPIC)?,
            partition.parse().map_err(|_| format!("{PARTITION} {partition} is not a 32-bit integer"))?,
        ),
        owner: owner.filter(|o| !o.is_empty()),
        counter: counter.parse().map_err(|_| format!("{COUNTER} {counter} is not a non-negative integer"))?,
        from_earliest,
        fence_ms,
    })
}

/// A heartbeat item; `None` if it lacks its counter or expiry. The key names the poller;
/// `PollerId` is there for people reading the table.
fn parse_poller(item: &HashMap<String, AttributeValue>) -> Option<PollerInfo> {
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok());
    let id = key_of(item).strip_prefix(POLLER_PREFIX)?.to_owned();
    let load = Load {
        held: number(HELD).and_then(|v| v.parse().ok()).unwrap_or(0),
        lag: number(LAG).and_then(|v| v.parse().ok()).unwrap_or(0),
        stopping: item.get(STOPPING).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
    };
    Some(PollerInfo {
        id,
        counter: number(COUNTER)?.parse().ok()?,
        expires_at_ms: number(EXPIRES_AT_MS)?.parse().ok()?,
        load,
    })
}

/// The reset a lease item asks for and that was not applied yet.
fn pending_reset(id: &LeaseId, item: &HashMap<String, AttributeValue>) -> Option<OffsetReset> {
    let string = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    let request = string(RESET_REQUEST)?;
    let offset = item.get(RESET_TO)?.as_n().ok()?.parse().ok()?;
    (string(RESET_APPLIED) != Some(request)).then(|| OffsetReset { id: id.clone(), request: request.clone(), offset })
}

/// One heartbeat item as `esm status` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerProgress {
    pub poller: String,
    /// Wall-clock expiry the poller wrote (display only: liveness is never judged on it).
    pub expires_at_ms: i64,
    /// The `Progress` JSON, empty when the poller wrote none.
    pub progress: String,
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl DynamoLeaseStore {
    /// The attributes every heartbeat write sets.
    fn beat_values(
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        poller: &str,
        beat: Heartbeat,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        update
            .expression_attribute_names("#p", POLLER_ID)
            .expression_attribute_names("#e", EXPIRES_AT_MS)
            .expression_attribute_names("#t", TTL)
            .expression_attribute_names("#h", HELD)
            .expression_attribute_names("#l", LAG)
            .expression_attribute_names("#x", STOPPING)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":p", s(poller))
            .expression_attribute_values(":e", n(beat.expires_at_ms))
            .expression_attribute_values(":t", n(beat.expires_at_ms / 1000 + TTL_AFTER_EXPIRY_S))
            .expression_attribute_values(":h", n(beat.load.held))
            .expression_attribute_values(":l", n(beat.load.lag))
            .expression_attribute_values(":x", AttributeValue::Bool(beat.load.stopping))
            .expression_attribute_values(":one", n(1))
    }
}

impl LeaseStore for DynamoLeaseStore {
    async fn ensure(&self, id: &LeaseId, from_earliest: bool) -> Result<(), LeaseError> {
        let key = lease_key(id);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(LEASE_KEY, s(&key))
            .item(MAPPING_UUID, s(&id.mapping))
            .item(TOPIC, s(&id.topic))
            .item(PARTITION, n(id.partition))
            .item(COUNTER, n(0));
        if from_earliest {
            put = put.item(FROM_EARLIEST, AttributeValue::Bool(true));
        }
        let result = put
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY)
            .send()
            .await;
        match result.map_err(|e| self.err(&key, e)) {
            Ok(_) | Err(LeaseError::Lost { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn acquire(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        let key = lease_key(&lease.id);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #o = :o, #c = #c + :one REMOVE #f")
            .condition_expression(ACQUIRE_CONDITION)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#f", FENCE_MS)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":c", n(lease.counter))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        parse_lease(&out.attributes.unwrap_or_default())
            .map_err(|problem| self.dynamo(format!("lease {key} after acquire: {problem}")))
    }

    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        self.give_up(lease, owner, None).await
    }

    async fn release_fenced(&self, lease: &Lease, owner: &str, fence: std::time::Duration) -> Result<(), LeaseError> {
        self.give_up(lease, owner, Some(fence)).await
    }

    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        // One DeleteItem per lease: a mapping has few, and the poller's role then needs no
        // BatchWriteItem permission.
        let items = self.scan_prefix(&mapping_prefix(mapping), Some(LEASE_KEY)).await?;
        for key in items.iter().map(key_of) {
            self.delete_malformed(&key).await?;
        }
        self.delete_malformed(&grants_key(mapping)).await
    }

    async fn delete_malformed(&self, key: &str) -> Result<(), LeaseError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(key))
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(())
    }

    async fn register(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        let key = poller_key(poller);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #p = :p, #e = :e, #t = :t, #s = :e, #h = :h, #l = :l, #x = :x, #c = :one")
            .expression_attribute_names("#s", STARTED_AT_MS)
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY);
        Self::beat_values(update, poller, beat).send().await.map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn heartbeat(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        let key = poller_key(poller);
        // Conditional on the item existing: a write still on the wire when the poller removed its
        // item (or others removed it as dead) must not bring the poller back.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #p = :p, #e = :e, #t = :t, #h = :h, #l = :l, #x = :x ADD #c :one")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY);
        Self::beat_values(update, poller, beat).send().await.map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn heartbeat_with_progress(&self, poller: &str, beat: Heartbeat, progress: &str) -> Result<(), LeaseError> {
        let key = poller_key(poller);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #p = :p, #e = :e, #t = :t, #h = :h, #l = :l, #x = :x, #g = :g ADD #c :one")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY)
            .expression_attribute_names("#g", PROGRESS)
            .expression_attribute_values(":g", s(progress));
        Self::beat_values(update, poller, beat).send().await.map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn request_reset(&self, id: &LeaseId, request: &str, offset: i64) -> Result<(), LeaseError> {
        let key = lease_key(id);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #r = :r, #t = :t")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY)
            .expression_attribute_names("#r", RESET_REQUEST)
            .expression_attribute_names("#t", RESET_TO)
            .expression_attribute_values(":r", s(request))
            .expression_attribute_values(":t", n(offset))
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn reset_applied(&self, lease: &Lease, owner: &str, request: &str) -> Result<(), LeaseError> {
        let key = lease_key(&lease.id);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #a = :r")
            .condition_expression("#o = :o AND #c = :c AND #r = :r")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_names("#r", RESET_REQUEST)
            .expression_attribute_names("#a", RESET_APPLIED)
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":c", n(lease.counter))
            .expression_attribute_values(":r", s(request))
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn remove_poller(&self, poller: &str) -> Result<(), LeaseError> {
        let key = poller_key(poller);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn remove_dead_poller(&self, poller: &PollerInfo) -> Result<(), LeaseError> {
        let key = poller_key(&poller.id);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .condition_expression("#c = :c")
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":c", n(poller.counter))
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn grants(&self, mapping: &str) -> Result<Grants, LeaseError> {
        let key = grants_key(mapping);
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        let Some(item) = got.item() else { return Ok(Grants::default()) };
        let counter = item
            .get(COUNTER)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.dynamo(format!("{key} has no numeric {COUNTER}")))?;
        Ok(Grants {
            counter,
            granted: number_map(item, GRANTED),
            wanted: number_map(item, WANTED),
            served: number_map(item, SERVED),
        })
    }

    async fn write_grants(&self, mapping: &str, grants: &Grants) -> Result<u64, LeaseError> {
        let key = grants_key(mapping);
        let counter = grants.counter + 1;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(LEASE_KEY, s(&key))
            .item(MAPPING_UUID, s(mapping))
            .item(COUNTER, n(counter))
            .item(GRANTED, to_number_map(&grants.granted))
            .item(WANTED, to_number_map(&grants.wanted))
            .item(SERVED, to_number_map(&grants.served));
        let put = if grants.counter == 0 {
            put.condition_expression("attribute_not_exists(#k)").expression_attribute_names("#k", LEASE_KEY)
        } else {
            put.condition_expression("#c = :c")
                .expression_attribute_names("#c", COUNTER)
                .expression_attribute_values(":c", n(grants.counter))
        };
        put.send().await.map_err(|e| self.err(&key, e))?;
        Ok(counter)
    }

    async fn snapshot(&self) -> Result<Snapshot, LeaseError> {
        let items: Vec<HashMap<String, AttributeValue>> = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| self.err("*", e))?;
        let mut snapshot = Snapshot::default();
        for item in &items {
            let key = key_of(item);
            if key.starts_with(POLLER_PREFIX) {
                snapshot.pollers.extend(parse_poller(item));
            } else if let Some(rest) = key.strip_prefix(LEASE_PREFIX) {
                let mut parts = rest.split('#');
                let mapping = parts.next().unwrap_or_default().to_owned();
                let entry = snapshot.mappings.entry(mapping).or_default();
                match parse_lease(item) {
                    Ok(lease) => {
                        entry.resets.extend(pending_reset(&lease.id, item));
                        entry.leases.push(lease);
                    }
                    Err(problem) => entry.malformed.push(MalformedLease {
                        partition: parts.nth(1).and_then(|p| p.parse().ok()),
                        key,
                        problem,
                    }),
                }
            }
        }
        Ok(snapshot.sorted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_mappings_apart() {
        assert_eq!(lease_key(&LeaseId::new("u", "orders", 3)), "lease#u#orders#3");
        assert!(!lease_key(&LeaseId::new("ab", "t", 0)).starts_with(&mapping_prefix("a")));
    }

    #[test]
    fn items_parse_and_report_what_is_wrong() {
        let mut item = HashMap::from([
            (LEASE_KEY.to_owned(), s("lease#m#t#0")),
            (MAPPING_UUID.to_owned(), s("m")),
            (TOPIC.to_owned(), s("t")),
            (PARTITION.to_owned(), n(0)),
            (OWNER.to_owned(), s("")),
            (COUNTER.to_owned(), n(7)),
        ]);
        let parsed = parse_lease(&item).unwrap();
        assert_eq!(parsed.owner, None, "an empty owner means free");
        assert_eq!(parsed.counter, 7);
        assert!(!parsed.from_earliest);
        item.insert(FROM_EARLIEST.to_owned(), AttributeValue::Bool(true));
        assert!(parse_lease(&item).unwrap().from_earliest);
        item.insert(COUNTER.to_owned(), s("7"));
        assert_eq!(parse_lease(&item), Err("Counter is not a number (N)".into()));
        item.insert(COUNTER.to_owned(), n(-1));
        assert!(parse_lease(&item).is_err());
        item.remove(COUNTER);
        assert_eq!(parse_lease(&item), Err("Counter is missing".into()));
    }
}
