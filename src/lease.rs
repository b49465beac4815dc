//! Partition leases: which poller consumes which partition of a mapping, as items in the leases
//! table (`ESM_LEASES_TABLE`, key `LeaseKey`), after the Kinesis Client Library's lease table.
//!
//! Each (mapping, topic, partition) has one lease item naming its `Owner`. Every write bumps the
//! item's `Counter` and is conditional on the counter the writer last saw, so of two pollers
//! racing for a lease exactly one wins. There are no transactions and no TTL: conditional writes
//! are the whole protocol.
//!
//! Unlike KCL, a lease carries no expiry of its own: it lives as long as its owner's heartbeat
//! (`poller#ID` items, `ExpiresAtMs` on the owner's clock). One heartbeat write every
//! [`LeaseSettings::renew_every`] renews every lease the poller holds, so the table sees 7.5
//! writes per poller-minute by default instead of KCL's 18 per partition-minute. A lease is free when it has
//! no owner or its owner's heartbeat has expired (or is gone) by the taker's clock.
//!
//! The owner confirms each heartbeat before its previous one ran out by the
//! [`LeaseSettings::safety_margin`]; the [`LeaseGuard`] it checks before every invoke and every
//! commit fails that margin before the heartbeat's expiry. A heartbeat confirmed too late never
//! revives a guard: the poller gives up all its leases and starts over under a new identity. While
//! clocks disagree by less than the margin, a poller therefore never invokes or commits for a
//! partition another poller has taken. An invoke already in flight when the lease moves may still
//! finish, so delivery stays at least once: the new holder resumes from the last commit.
//!
//! Heartbeats also let each poller count the live pollers and take no more than its
//! [`fair_share`] of partitions, and carry each poller's load for scaling decisions.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::store::LEASE_KEY;

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

const LEASE_PREFIX: &str = "lease#";
const POLLER_PREFIX: &str = "poller#";

/// Unchanged since the taker read it (and found it free, or its owner's heartbeat expired).
const ACQUIRE_CONDITION: &str = "#c = :c";
/// Still ours, and unchanged since our last write.
const HELD_CONDITION: &str = "#o = :o AND #c = :c";

/// One partition's lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The mapping's UUID.
    pub mapping: String,
    pub topic: String,
    pub partition: i32,
    /// The poller holding it; `None` when free (released, or never taken). The lease is also
    /// free once this poller's heartbeat has expired.
    pub owner: Option<String>,
    /// Bumped by every write; every write is conditional on it.
    pub counter: u64,
}

impl Lease {
    /// Whether a poller may take it: nobody owns it, or its owner is not among `live` pollers.
    pub fn is_free(&self, live: &[PollerInfo]) -> bool {
        self.owner.as_deref().is_none_or(|owner| !live.iter().any(|p| p.id == owner))
    }

    /// The item's `LeaseKey`: `lease#{mapping}#{topic}#{partition}`.
    pub fn key(&self) -> String {
        lease_key(&self.mapping, &self.topic, self.partition)
    }
}

/// The `LeaseKey` of a partition's lease. Kafka topic names cannot contain `#`, nor can UUIDs, so
/// keys of different mappings never share the `lease#{mapping}#` prefix.
pub fn lease_key(mapping: &str, topic: &str, partition: i32) -> String {
    format!("{LEASE_PREFIX}{mapping}#{topic}#{partition}")
}

fn mapping_prefix(mapping: &str) -> String {
    format!("{LEASE_PREFIX}{mapping}#")
}

fn poller_key(poller: &str) -> String {
    format!("{POLLER_PREFIX}{poller}")
}

/// Lease timing for a poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a heartbeat (and so every lease of its poller) lasts: KCL's `failoverTimeMillis`
    /// (default 20 s here), the time after which a silent holder is considered gone and its
    /// partitions move.
    pub duration: Duration,
    /// How often a poller writes its heartbeat (default 8 s), so one lost write still leaves
    /// time for the next.
    pub renew_every: Duration,
    /// A holder treats its leases as lost this long before its heartbeat expires (default 3 s),
    /// covering clock skew between holder and taker plus the time an invoke or commit takes to
    /// start.
    pub safety_margin: Duration,
}

impl LeaseSettings {
    /// Twice KCL's `failoverTimeMillis` default (10 s): heartbeats every 8 s keep the table at
    /// 7.5 writes per poller-minute, under 2 per partition-minute from 4 partitions per poller,
    /// and a killed poller's partitions still move within 20 s.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(20);
    /// Two heartbeats per lifetime, so one lost write still leaves the margin.
    pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(8);
    /// Ours, not KCL's: the Amazon Time Sync Service keeps Lambda and EC2 clocks within about a
    /// millisecond, so most of the 3 s is for a poller stalled between its check and its write.
    pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(3);

    /// Checks that a lease renewed on time is still valid (by the margin) when renewed again.
    ///
    /// # Errors
    /// A zero duration or interval, or `renew_every + safety_margin >= duration`.
    pub fn validate(&self) -> Result<(), InvalidLeaseSettings> {
        if self.duration.is_zero() || self.renew_every.is_zero() {
            return Err(InvalidLeaseSettings::Zero);
        }
        if self.renew_every.saturating_add(self.safety_margin) >= self.duration {
            return Err(InvalidLeaseSettings::RenewTooRare {
                duration: self.duration,
                renew_every: self.renew_every,
                safety_margin: self.safety_margin,
            });
        }
        Ok(())
    }
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            duration: Self::DEFAULT_DURATION,
            renew_every: Self::DEFAULT_RENEW_EVERY,
            safety_margin: Self::DEFAULT_SAFETY_MARGIN,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLeaseSettings {
    #[error("the lease duration and the renewal interval must be greater than zero")]
    Zero,
    #[error(
        "leases renewed every {renew_every:?} with a {safety_margin:?} safety margin are no longer \
         valid when renewed; make the lease duration ({duration:?}) longer than renewal interval \
         plus safety margin"
    )]
    RenewTooRare { duration: Duration, renew_every: Duration, safety_margin: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// A conditional write lost: someone else holds the lease, or it changed (or vanished) since
    /// it was read. The caller must stop using the partition and read the leases again.
    #[error("lease {key} is held by someone else or changed since it was read")]
    Lost { key: String },
    #[error("DynamoDB error on table {table}: {message}")]
    Dynamo { table: String, message: String },
    /// An item under a lease key lacks an attribute or has the wrong type, e.g. one written by
    /// hand. Deleting it is safe: `ensure` recreates it free.
    #[error("lease item {key} is malformed: {message}")]
    Malformed { key: String, message: String },
}

/// How many partitions one poller may hold: `ceil(total / pollers)`, counting at least one
/// poller (the caller itself, before its first heartbeat is visible).
pub fn fair_share(total_partitions: usize, live_pollers: usize) -> usize {
    total_partitions.div_ceil(live_pollers.max(1))
}

/// A live poller, as its heartbeat shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerInfo {
    pub id: String,
    /// Epoch milliseconds on the poller's clock.
    pub expires_at_ms: i64,
    /// What it reported with its last heartbeat.
    pub load: Load,
}

/// What a poller reports about itself with each heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Leases it holds.
    pub held: u32,
    /// Records waiting in its partitions (high watermark minus position), summed.
    pub lag: u64,
    /// It is handing its partitions over and about to stop.
    pub stopping: bool,
}

/// Milliseconds since the Unix epoch on this machine's clock, the time base of `ExpiresAtMs`.
pub fn now_epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where leases and poller heartbeats live.
///
/// Writes take the [`Lease`] the caller last read or got back from a write, and are conditional
/// on its `counter`: nothing here reads before it writes.
pub trait LeaseStore: Send + Sync + 'static {
    /// Every lease of one mapping, ordered by topic and partition (consistent reads).
    ///
    /// # Errors
    /// `Malformed` if any of the mapping's lease items cannot be parsed: a hidden partition must
    /// not go unconsumed silently.
    fn leases(&self, mapping: &str) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;

    /// Creates the lease item for a partition, free with counter 0, unless it exists.
    fn ensure(&self, mapping: &str, topic: &str, partition: i32)
    -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Takes `lease` for `owner` (non-empty) if its counter is still `lease.counter`. The caller
    /// has checked [`Lease::is_free`] on what it read; the counter proves nothing changed since.
    /// Returns the lease as now stored.
    ///
    /// # Errors
    /// `Lost` if it changed since read, or does not exist.
    fn acquire(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Gives a held lease up (no owner) so another poller can take it at once.
    ///
    /// # Errors
    /// `Lost` if `owner` no longer holds it or its counter moved.
    fn release(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Deletes every lease of a mapping. Call it once no poller runs the mapping any more: a
    /// poller still running would recreate its leases with `ensure`.
    fn delete_mapping(&self, mapping: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Registers or refreshes `poller`'s heartbeat, live until `now_ms + ttl`: this renews every
    /// lease `poller` holds.
    fn heartbeat(
        &self,
        poller: &str,
        now_ms: i64,
        ttl: Duration,
        load: Load,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// The pollers whose heartbeat is live at `now_ms` (`expires_at_ms >= now_ms`), by id.
    fn live_pollers(&self, now_ms: i64) -> impl Future<Output = Result<Vec<PollerInfo>, LeaseError>> + Send;

    /// Removes `poller`'s heartbeat (a stopping poller, after releasing its leases): whatever it
    /// still holds becomes free at once. No error if there is none.
    fn remove_poller(&self, poller: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// The live pollers and every mapping's leases, in one consistent read of the table: what a
    /// poller's lease scan needs, for one Scan instead of one per mapping plus one for pollers.
    fn snapshot(&self, now_ms: i64) -> impl Future<Output = Result<Snapshot, LeaseError>> + Send;
}

/// The whole leases table at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Live at the time asked, by id.
    pub pollers: Vec<PollerInfo>,
    /// By mapping UUID, each ordered by topic and partition; `Malformed` if any of the
    /// mapping's items cannot be parsed.
    pub leases: BTreeMap<String, Result<Vec<Lease>, LeaseError>>,
}

impl Snapshot {
    /// Pollers by id, each mapping's leases by topic and partition.
    fn sorted(mut self) -> Self {
        self.pollers.sort_by(|a, b| a.id.cmp(&b.id));
        for leases in self.leases.values_mut().filter_map(|l| l.as_mut().ok()) {
            leases.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        }
        self
    }

    /// One mapping's leases (none if it has no items yet).
    ///
    /// # Errors
    /// One of its lease items is malformed.
    pub fn leases_of(&self, mapping: &str) -> Result<Vec<Lease>, LeaseError> {
        self.leases.get(mapping).cloned().unwrap_or_else(|| Ok(Vec::new()))
    }
}

impl<S: LeaseStore> LeaseStore for Arc<S> {
    fn leases(&self, mapping: &str) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send {
        (**self).leases(mapping)
    }

    fn ensure(
        &self,
        mapping: &str,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).ensure(mapping, topic, partition)
    }

    fn acquire(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        (**self).acquire(lease, owner)
    }

    fn release(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).release(lease, owner)
    }

    fn delete_mapping(&self, mapping: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).delete_mapping(mapping)
    }

    fn heartbeat(
        &self,
        poller: &str,
        now_ms: i64,
        ttl: Duration,
        load: Load,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).heartbeat(poller, now_ms, ttl, load)
    }

    fn live_pollers(&self, now_ms: i64) -> impl Future<Output = Result<Vec<PollerInfo>, LeaseError>> + Send {
        (**self).live_pollers(now_ms)
    }

    fn remove_poller(&self, poller: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).remove_poller(poller)
    }

    fn snapshot(&self, now_ms: i64) -> impl Future<Output = Result<Snapshot, LeaseError>> + Send {
        (**self).snapshot(now_ms)
    }
}

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
        Self::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        key: &str,
        e: SdkError<E, R>,
    ) -> LeaseError {
        if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") {
            LeaseError::Lost { key: key.to_owned() }
        } else {
            self.dynamo(DisplayErrorContext(&e).to_string())
        }
    }

    fn dynamo(&self, message: String) -> LeaseError {
        LeaseError::Dynamo { table: self.table.clone(), message }
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
}

fn key_of(item: &HashMap<String, AttributeValue>) -> String {
    item.get(LEASE_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

fn parse_lease(item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
    let key = key_of(item);
    let malformed = |message: String| LeaseError::Malformed { key: key.clone(), message };
    let string = |name: &str| -> Result<String, LeaseError> {
        item.get(name)
            .ok_or_else(|| malformed(format!("{name} is missing")))?
            .as_s()
            .cloned()
            .map_err(|_| malformed(format!("{name} is not a string (S)")))
    };
    let number = |name: &str| -> Result<&str, LeaseError> {
        item.get(name)
            .ok_or_else(|| malformed(format!("{name} is missing")))?
            .as_n()
            .map(String::as_str)
            .map_err(|_| malformed(format!("{name} is not a number (N)")))
    };
    let parse = |name: &str, raw: &str, what: &str| malformed(format!("{name} {raw} is not {what}"));
    let partition = number(PARTITION)?;
    let counter = number(COUNTER)?;
    let owner = match item.get(OWNER) {
        None => None,
        Some(v) => Some(v.as_s().map_err(|_| malformed(format!("{OWNER} is not a string (S)")))?.clone()),
    };
    Ok(Lease {
        mapping: string(MAPPING_UUID)?,
        topic: string(TOPIC)?,
        partition: partition.parse().map_err(|_| parse(PARTITION, partition, "a 32-bit integer"))?,
        owner: owner.filter(|o| !o.is_empty()),
        counter: counter.parse().map_err(|_| parse(COUNTER, counter, "a non-negative integer"))?,
    })
}

/// A heartbeat item; `None` if it lacks its expiry. The key names the poller; `PollerId` is
/// there for people reading the table.
fn parse_poller(item: &HashMap<String, AttributeValue>) -> Option<PollerInfo> {
    let number =
        |name: &str| -> Option<u64> { item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()) };
    let id = key_of(item).strip_prefix(POLLER_PREFIX)?.to_owned();
    let expires_at_ms = item.get(EXPIRES_AT_MS).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())?;
    let load = Load {
        held: u32::try_from(number(HELD).unwrap_or(0)).unwrap_or(u32::MAX),
        lag: number(LAG).unwrap_or(0),
        stopping: item.get(STOPPING).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
    };
    Some(PollerInfo { id, expires_at_ms, load })
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl LeaseStore for DynamoLeaseStore {
    async fn leases(&self, mapping: &str) -> Result<Vec<Lease>, LeaseError> {
        let items = self.scan_prefix(&mapping_prefix(mapping), None).await?;
        let mut leases = items.iter().map(parse_lease).collect::<Result<Vec<_>, _>>()?;
        leases.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(leases)
    }

    async fn ensure(&self, mapping: &str, topic: &str, partition: i32) -> Result<(), LeaseError> {
        let key = lease_key(mapping, topic, partition);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(LEASE_KEY, s(&key))
            .item(MAPPING_UUID, s(mapping))
            .item(TOPIC, s(topic))
            .item(PARTITION, n(partition))
            .item(COUNTER, n(0))
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
        let key = lease.key();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #o = :o, #c = #c + :one")
            .condition_expression(ACQUIRE_CONDITION)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":c", n(lease.counter))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        parse_lease(&out.attributes.unwrap_or_default())
    }

    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        let key = lease.key();
        self.client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #c = #c + :one REMOVE #o")
            .condition_expression(HELD_CONDITION)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":c", n(lease.counter))
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        // One DeleteItem per lease: a mapping has few, and the poller's role then needs no
        // BatchWriteItem permission.
        let items = self.scan_prefix(&mapping_prefix(mapping), Some(LEASE_KEY)).await?;
        for key in items.iter().map(key_of) {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(LEASE_KEY, s(&key))
                .send()
                .await
                .map_err(|e| self.err(&key, e))?;
        }
        Ok(())
    }

    async fn heartbeat(&self, poller: &str, now_ms: i64, ttl: Duration, load: Load) -> Result<(), LeaseError> {
        let key = poller_key(poller);
        // Only the poller itself writes its heartbeat, so it needs no condition; `Counter` still
        // moves, as on every item of the table, so an operator can see the heartbeat is alive.
        self.client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression(
                "SET #p = :p, #e = :e, #s = if_not_exists(#s, :now), #h = :h, #l = :l, #x = :x ADD #c :one",
            )
            .expression_attribute_names("#p", POLLER_ID)
            .expression_attribute_names("#e", EXPIRES_AT_MS)
            .expression_attribute_names("#s", STARTED_AT_MS)
            .expression_attribute_names("#h", HELD)
            .expression_attribute_names("#l", LAG)
            .expression_attribute_names("#x", STOPPING)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":p", s(poller))
            .expression_attribute_values(":e", n(now_ms.saturating_add(millis(ttl))))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":h", n(load.held))
            .expression_attribute_values(":l", n(load.lag))
            .expression_attribute_values(":x", AttributeValue::Bool(load.stopping))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| self.err(&key, e))?;
        Ok(())
    }

    async fn live_pollers(&self, now_ms: i64) -> Result<Vec<PollerInfo>, LeaseError> {
        let items = self.scan_prefix(POLLER_PREFIX, None).await?;
        let mut pollers: Vec<PollerInfo> =
            items.iter().filter_map(parse_poller).filter(|p| p.expires_at_ms >= now_ms).collect();
        pollers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(pollers)
    }

    async fn snapshot(&self, now_ms: i64) -> Result<Snapshot, LeaseError> {
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
                snapshot.pollers.extend(parse_poller(item).filter(|p| p.expires_at_ms >= now_ms));
            } else if let Some(rest) = key.strip_prefix(LEASE_PREFIX) {
                let mapping = rest.split('#').next().unwrap_or_default().to_owned();
                let entry = snapshot.leases.entry(mapping).or_insert_with(|| Ok(Vec::new()));
                match (entry.as_mut(), parse_lease(item)) {
                    (Ok(leases), Ok(lease)) => leases.push(lease),
                    (Ok(_), Err(e)) => *entry = Err(e),
                    (Err(_), _) => {}
                }
            }
        }
        Ok(snapshot.sorted())
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
}

/// An in-memory store for tests, with the same conditional-write rules; can be told to fail its
/// next calls.
#[derive(Debug, Clone, Default)]
pub struct MemoryLeaseStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    /// By `LeaseKey`.
    leases: BTreeMap<String, Lease>,
    /// Poller id → heartbeat expiry and load.
    pollers: BTreeMap<String, (i64, Load)>,
    failures_left: usize,
}

impl MemoryLeaseStore {
    /// The next `n` calls, whatever they are, fail with `LeaseError::Dynamo` and change nothing.
    pub fn fail_next(&self, n: usize) {
        self.lock().failures_left = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state, unless a failure is due.
    fn begin(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, LeaseError> {
        let mut inner = self.lock();
        if inner.failures_left > 0 {
            inner.failures_left -= 1;
            return Err(LeaseError::Dynamo { table: "memory".into(), message: "injected failure".into() });
        }
        Ok(inner)
    }
}

impl MemoryInner {
    /// The stored lease if it is held by `owner` at `counter`, the condition of release.
    fn held(&mut self, lease: &Lease, owner: &str) -> Result<&mut Lease, LeaseError> {
        let key = lease.key();
        match self.leases.get_mut(&key) {
            Some(stored) if stored.owner.as_deref() == Some(owner) && stored.counter == lease.counter => Ok(stored),
            _ => Err(LeaseError::Lost { key }),
        }
    }
}

impl LeaseStore for MemoryLeaseStore {
    async fn leases(&self, mapping: &str) -> Result<Vec<Lease>, LeaseError> {
        let inner = self.begin()?;
        let mut leases: Vec<Lease> = inner.leases.values().filter(|l| l.mapping == mapping).cloned().collect();
        leases.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(leases)
    }

    async fn ensure(&self, mapping: &str, topic: &str, partition: i32) -> Result<(), LeaseError> {
        self.begin()?.leases.entry(lease_key(mapping, topic, partition)).or_insert_with(|| Lease {
            mapping: mapping.to_owned(),
            topic: topic.to_owned(),
            partition,
            owner: None,
            counter: 0,
        });
        Ok(())
    }

    async fn acquire(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        let mut inner = self.begin()?;
        let key = lease.key();
        match inner.leases.get_mut(&key) {
            Some(stored) if stored.counter == lease.counter => {
                stored.owner = Some(owner.to_owned()).filter(|o| !o.is_empty());
                stored.counter += 1;
                Ok(stored.clone())
            }
            _ => Err(LeaseError::Lost { key }),
        }
    }

    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        let mut inner = self.begin()?;
        let stored = inner.held(lease, owner)?;
        stored.owner = None;
        stored.counter += 1;
        Ok(())
    }

    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        self.begin()?.leases.retain(|_, l| l.mapping != mapping);
        Ok(())
    }

    async fn heartbeat(&self, poller: &str, now_ms: i64, ttl: Duration, load: Load) -> Result<(), LeaseError> {
        self.begin()?.pollers.insert(poller.to_owned(), (now_ms.saturating_add(millis(ttl)), load));
        Ok(())
    }

    async fn live_pollers(&self, now_ms: i64) -> Result<Vec<PollerInfo>, LeaseError> {
        Ok(self
            .begin()?
            .pollers
            .iter()
            .filter(|(_, (expires, _))| *expires >= now_ms)
            .map(|(id, (expires_at_ms, load))| PollerInfo {
                id: id.clone(),
                expires_at_ms: *expires_at_ms,
                load: *load,
            })
            .collect())
    }

    async fn remove_poller(&self, poller: &str) -> Result<(), LeaseError> {
        self.begin()?.pollers.remove(poller);
        Ok(())
    }

    async fn snapshot(&self, now_ms: i64) -> Result<Snapshot, LeaseError> {
        let inner = self.begin()?;
        let mut snapshot = Snapshot::default();
        for (id, (expires_at_ms, load)) in &inner.pollers {
            if *expires_at_ms >= now_ms {
                snapshot.pollers.push(PollerInfo { id: id.clone(), expires_at_ms: *expires_at_ms, load: *load });
            }
        }
        for lease in inner.leases.values() {
            if let Ok(leases) = snapshot.leases.entry(lease.mapping.clone()).or_insert_with(|| Ok(Vec::new())) {
                leases.push(lease.clone());
            }
        }
        Ok(snapshot.sorted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: Option<&str>) -> Lease {
        Lease { mapping: "m".into(), topic: "t".into(), partition: 0, owner: owner.map(str::to_owned), counter: 1 }
    }

    #[test]
    fn fair_share_is_the_ceiling_over_at_least_one_poller() {
        assert_eq!(fair_share(0, 3), 0);
        assert_eq!(fair_share(10, 0), 10);
        assert_eq!(fair_share(10, 1), 10);
        assert_eq!(fair_share(9, 3), 3);
        assert_eq!(fair_share(10, 3), 4);
        assert_eq!(fair_share(1, 5), 1);
        assert_eq!(fair_share(7, 7), 1);
    }

    #[test]
    fn a_lease_is_free_without_an_owner_or_when_its_owner_is_not_live() {
        let live = |ids: &[&str]| -> Vec<PollerInfo> {
            ids.iter().map(|id| PollerInfo { id: (*id).to_owned(), expires_at_ms: 0, load: Load::default() }).collect()
        };
        assert!(lease(None).is_free(&live(&["a"])));
        assert!(!lease(Some("a")).is_free(&live(&["a", "b"])));
        assert!(lease(Some("a")).is_free(&live(&["b"])), "owner's heartbeat expired or removed");
        assert!(lease(Some("a")).is_free(&[]));
    }

    #[test]
    fn a_child_guard_is_valid_only_while_its_parent_is_and_until_revoked() {
        let poller = Arc::new(LeaseGuard::until(now_epoch_ms() + 60_000));
        let partition = LeaseGuard::child(poller.clone());
        assert!(partition.is_valid());
        partition.revoke();
        assert!(!partition.is_valid());
        let other = LeaseGuard::child(poller.clone());
        assert!(other.is_valid());
        poller.revoke();
        assert!(!other.is_valid(), "the poller's heartbeat lapsed");
        let lapsed = LeaseGuard::until(now_epoch_ms() - 1);
        assert!(!lapsed.extend_if_valid(now_epoch_ms() + 60_000), "a lapsed guard is never revived");
        assert!(!lapsed.is_valid());
    }

    #[test]
    fn default_settings_are_valid_and_survive_one_lost_heartbeat() {
        let settings = LeaseSettings::default();
        assert_eq!(settings.duration, Duration::from_secs(20));
        assert_eq!(settings.renew_every, Duration::from_secs(8));
        assert_eq!(settings.safety_margin, Duration::from_secs(3));
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn settings_that_lapse_between_renewals_are_rejected() {
        let settings = LeaseSettings {
            duration: Duration::from_secs(5),
            renew_every: Duration::from_secs(2),
            safety_margin: Duration::from_secs(3),
        };
        assert!(matches!(settings.validate(), Err(InvalidLeaseSettings::RenewTooRare { .. })));
        let zero = LeaseSettings { renew_every: Duration::ZERO, ..LeaseSettings::default() };
        assert_eq!(zero.validate(), Err(InvalidLeaseSettings::Zero));
    }

    #[test]
    fn keys_keep_mappings_apart() {
        assert_eq!(lease_key("u", "orders", 3), "lease#u#orders#3");
        assert_eq!(lease(None).key(), "lease#m#t#0");
        assert!(!lease_key("ab", "t", 0).starts_with(&mapping_prefix("a")));
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
        item.insert(COUNTER.to_owned(), s("7"));
        assert_eq!(
            parse_lease(&item),
            Err(LeaseError::Malformed { key: "lease#m#t#0".into(), message: "Counter is not a number (N)".into() })
        );
        item.insert(COUNTER.to_owned(), n(-1));
        assert!(matches!(parse_lease(&item), Err(LeaseError::Malformed { .. })));
        item.remove(COUNTER);
        assert!(
            matches!(parse_lease(&item), Err(LeaseError::Malformed { message, .. }) if message == "Counter is missing")
        );
    }
}

/// What a running consumer checks before every invoke and every commit: that this poller still
/// holds the lease, by the safety margin. A poller's root guard follows its confirmed heartbeats;
/// each partition has a child guard, revoked when the partition is handed over.
#[derive(Debug)]
pub struct LeaseGuard {
    valid_until_ms: std::sync::atomic::AtomicI64,
    parent: Option<Arc<LeaseGuard>>,
}

impl LeaseGuard {
    /// Valid until `valid_until_ms` (the heartbeat's expiry minus the safety margin).
    pub const fn until(valid_until_ms: i64) -> Self {
        Self { valid_until_ms: std::sync::atomic::AtomicI64::new(valid_until_ms), parent: None }
    }

    /// Valid while `parent` is, until revoked.
    pub const fn child(parent: Arc<Self>) -> Self {
        Self { valid_until_ms: std::sync::atomic::AtomicI64::new(i64::MAX), parent: Some(parent) }
    }

    /// A guard that never expires: for a consumer that owns its partitions by construction
    /// (tests of the poll loop alone).
    pub const fn unconditional() -> Self {
        Self::until(i64::MAX)
    }

    pub fn is_valid(&self) -> bool {
        now_epoch_ms() < self.valid_until_ms.load(std::sync::atomic::Ordering::Acquire)
            && self.parent.as_ref().is_none_or(|p| p.is_valid())
    }

    /// Moves the deadline to `valid_until_ms` unless it has already passed: a lapsed guard stays
    /// lapsed, since someone else may have taken the leases in between. Returns whether it is
    /// still valid.
    pub fn extend_if_valid(&self, valid_until_ms: i64) -> bool {
        let now = now_epoch_ms();
        self.valid_until_ms
            .fetch_update(std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Acquire, |current| {
                (now < current).then_some(valid_until_ms.max(current))
            })
            .is_ok()
    }

    pub fn revoke(&self) {
        self.valid_until_ms.store(i64::MIN, std::sync::atomic::Ordering::Release);
    }
}
