//! Producing and inspecting test data with librdkafka, independently of the code under test: the
//! test kit's own producers, and an offsets reader with its own client that asks the group
//! coordinator for a group's committed offsets without ever joining the group.
//!
//! Two producer shapes, because they exercise different broker paths:
//! - [`Batching::OnePerBatch`]: every produce batch holds one record. Tests use it because a
//!   tansu 0.6 fetch that starts inside a multi-record batch skips the rest of that batch.
//! - [`Batching::Batched`]: `linger.ms` 5 and up to 10,000 records per batch, what real producers
//!   send; benchmarks need it to see real fetch sizes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

/// A random topic name, so tests never share data.
pub fn random_topic(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    create_topic_with(bootstrap, topic, partitions, &[]).await
}

/// Like [`create_topic`], with extra client settings (e.g. TLS).
pub async fn create_topic_with(bootstrap: &str, topic: &str, partitions: i32, extra: &[(&str, &str)]) -> Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("create topic {name}: {code}");
        }
    }
    Ok(())
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// How a producer groups records into produce batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batching {
    /// One record per batch (`linger.ms` 0, `batch.num.messages` 1): what tansu 0.6 needs.
    #[default]
    OnePerBatch,
    /// `linger.ms` 5, `batch.num.messages` 10000: what real producers send.
    Batched,
}

impl Batching {
    fn settings(self) -> [(&'static str, &'static str); 2] {
        match self {
            Self::OnePerBatch => [("linger.ms", "0"), ("batch.num.messages", "1")],
            Self::Batched => [("linger.ms", "5"), ("batch.num.messages", "10000")],
        }
    }
}

/// A producer of test records.
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer")
    }
}

impl Producer {
    /// One record per batch, one request in flight: each [`Producer::send`] is acknowledged
    /// before the next record leaves, so offsets follow the order of the calls.
    pub fn new(bootstrap: &str) -> Result<Self> {
        Self::with_config(bootstrap, &[])
    }

    /// Like [`Producer::new`], with extra client settings (e.g. TLS).
    pub fn with_config(bootstrap: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let mut settings = vec![("max.in.flight.requests.per.connection", "1")];
        settings.extend_from_slice(extra);
        Self::with_batching(bootstrap, Batching::OnePerBatch, &settings)
    }

    /// A producer batching as real producers do (see [`Batching::Batched`]).
    pub fn batched(bootstrap: &str, extra: &[(&str, &str)]) -> Result<Self> {
        Self::with_batching(bootstrap, Batching::Batched, extra)
    }

    /// A producer of the given shape; `extra` settings win over the shape's.
    pub fn with_batching(bootstrap: &str, batching: Batching, extra: &[(&str, &str)]) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "false")
            .set("message.max.bytes", "10000000");
        for (k, v) in batching.settings() {
            config.set(k, v);
        }
        for (k, v) in extra {
            config.set(*k, *v);
        }
        Ok(Self { inner: config.create().context("create the test producer")? })
    }

    /// The underlying client, for pipelined sends.
    pub fn client(&self) -> &FutureProducer {
        &self.inner
    }

    /// Produces `record` to `topic` and returns its offset.
    pub async fn send(&self, topic: &str, record: &TestRecord) -> Result<i64> {
        self.send_timestamped(topic, record, None).await
    }

    /// Like [`Producer::send`], with the record's timestamp (CreateTime, epoch milliseconds)
    /// set instead of the producer's clock.
    pub async fn send_at(&self, topic: &str, record: &TestRecord, timestamp_ms: i64) -> Result<i64> {
        self.send_timestamped(topic, record, Some(timestamp_ms)).await
    }

    async fn send_timestamped(&self, topic: &str, record: &TestRecord, timestamp_ms: Option<i64>) -> Result<i64> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: value.as_deref() });
        }
        let mut future = FutureRecord::<[u8], [u8]>::to(topic).partition(record.partition).headers(headers);
        if let Some(k) = &record.key {
            future = future.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            future = future.payload(v.as_slice());
        }
        if let Some(ts) = timestamp_ms {
            future = future.timestamp(ts);
        }
        let delivery = self.inner.send(future, Duration::from_secs(10)).await.map_err(|(e, _)| e).context("produce")?;
        Ok(delivery.offset)
    }

    /// Produces `count` records per partition with values `"{prefix}-{partition}-{i}"`.
    pub async fn fill(&self, topic: &str, partitions: i32, count: usize, prefix: &str) -> Result<()> {
        for i in 0..count {
            for p in 0..partitions {
                let value = format!("{prefix}-{p}-{i}").into_bytes();
                self.send(
                    topic,
                    &TestRecord {
                        partition: p,
                        key: Some(format!("k{i}").into_bytes()),
                        value: Some(value),
                        headers: vec![],
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Produces `workload` (see [`Workload`]) until it is complete or `stop` resolves, with up to
    /// `workload.in_flight` records awaiting acknowledgement. Each record is handed to librdkafka
    /// when it is due (paced by `workload.rate`), and acknowledgements are collected meanwhile.
    /// Delivery errors are counted, not fatal: the report says how many records each partition
    /// got.
    pub async fn run(&self, workload: &Workload, stop: impl Future<Output = ()>) -> Produced {
        let started = Instant::now();
        let started_at = epoch_s();
        let partitions = usize::try_from(workload.partitions.max(1)).unwrap_or(1);
        let mut tally = Tally { partitions: vec![0; partitions], errors: Vec::new(), error_count: 0 };
        let mut pending = FuturesUnordered::new();
        let mut stop = std::pin::pin!(stop);
        let mut i: u64 = 0;
        'produce: while workload.count.is_none_or(|n| i < n) {
            // Record i is due at start + i / rate (now, without a rate); room for it is needed.
            let due = workload.rate.filter(|r| *r > 0.0).map(|rate| started + Duration::from_secs_f64(i as f64 / rate));
            loop {
                let waiting = due.is_some_and(|d| d > Instant::now()) || pending.len() >= workload.in_flight.max(1);
                if !waiting {
                    break;
                }
                let sleep = tokio::time::sleep_until(due.map_or_else(tokio::time::Instant::now, Into::into));
                tokio::select! {
                    biased;
                    () = &mut stop => break 'produce,
                    Some(result) = pending.next(), if !pending.is_empty() => tally.add(result),
                    () = sleep, if due.is_some_and(|d| d > Instant::now()) => {}
                }
            }
            if futures::poll!(&mut stop).is_ready() {
                break;
            }
            let record = workload.record(i);
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key, value: value.as_deref() });
            }
            let mut future =
                FutureRecord::<[u8], [u8]>::to(&workload.topic).partition(record.partition).headers(headers);
            if let Some(k) = &record.key {
                future = future.key(k.as_slice());
            }
            if let Some(v) = &record.value {
                future = future.payload(v.as_slice());
            }
            // Enqueued now (an async `send` would only enqueue when first polled).
            loop {
                match self.inner.send_result(future) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        future = back;
                        match pending.next().await {
                            Some(result) => tally.add(result),
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        tally.error(format!("partition {}: {e}", record.partition));
                        break;
                    }
                }
            }
            i += 1;
        }
        let stopped_at = epoch_s();
        while let Some(result) = pending.next().await {
            tally.add(result);
        }
        Produced {
            partitions: tally.partitions,
            started_at,
            stopped_at,
            seconds: started.elapsed().as_secs_f64(),
            errors: tally.errors,
            error_count: tally.error_count,
        }
    }
}

/// Acknowledgements counted per partition, and the first few errors.
struct Tally {
    partitions: Vec<u64>,
    errors: Vec<String>,
    error_count: u64,
}

impl Tally {
    fn add(&mut self, result: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>) {
        match result {
            Ok(Ok(delivery)) => {
                if let Some(n) = usize::try_from(delivery.partition).ok().and_then(|p| self.partitions.get_mut(p)) {
                    *n += 1;
                }
            }
            Ok(Err((e, message))) => self.error(format!("partition {}: {e}", message.partition())),
            Err(_) => self.error("the producer went away before acknowledging".to_owned()),
        }
    }

    fn error(&mut self, error: String) {
        self.error_count += 1;
        if self.errors.len() < 5 {
            self.errors.push(error);
        }
    }
}

/// Seconds since the Unix epoch, as a float (the scripts' JSON files use it).
pub fn epoch_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn epoch_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// What each record's value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ValueShape {
    /// `{"n":I,"partition":P}` (plus `produced_at_ms` with the value stamp, and padding).
    #[default]
    Sequence,
    /// The demo's orders: `{"order":I,"amount":…,"currency":"EUR"}`.
    Order,
    /// `--record-bytes` bytes: the record's index in ASCII, then `x`s (benchmarks).
    Fill,
}

/// Where the produce time goes, for produce→invoke latency measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Stamp {
    #[default]
    None,
    /// In the value: a `produced_at_ms` JSON field, or `I:MS:` at the start of a fill value.
    Value,
    /// A `produced-at-ms` header (epoch milliseconds, ASCII).
    Header,
}

/// The header [`Stamp::Header`] writes.
pub const STAMP_HEADER: &str = "produced-at-ms";

/// A stream of records to produce: record `i` goes to partition `i % partitions`.
#[derive(Debug, Clone)]
pub struct Workload {
    pub topic: String,
    pub partitions: i32,
    /// Stop after this many records (`None`: until stopped).
    pub count: Option<u64>,
    /// Records per second over all partitions (`None`: as fast as acknowledgements allow).
    pub rate: Option<f64>,
    pub value: ValueShape,
    /// Pad (sequence, order) or size (fill) values to at least this many bytes.
    pub record_bytes: usize,
    /// Keys are `{key_prefix}{i % keys}`; 0 gives every record its own key (`{key_prefix}{i}`);
    /// `None` produces no keys.
    pub keys: Option<u64>,
    pub key_prefix: String,
    pub stamp: Stamp,
    pub headers: Vec<(String, String)>,
    /// Records awaiting acknowledgement at most.
    pub in_flight: usize,
}

impl Workload {
    /// `count` sequence records over `partitions`, one in flight at a time.
    pub fn new(topic: &str, partitions: i32, count: u64) -> Self {
        Self {
            topic: topic.to_owned(),
            partitions,
            count: Some(count),
            rate: None,
            value: ValueShape::Sequence,
            record_bytes: 0,
            keys: Some(0),
            key_prefix: "k-".to_owned(),
            stamp: Stamp::None,
            headers: Vec::new(),
            in_flight: 1,
        }
    }

    /// Record `i` of the workload.
    pub fn record(&self, i: u64) -> TestRecord {
        let partitions = u64::try_from(self.partitions.max(1)).unwrap_or(1);
        let partition = i32::try_from(i % partitions).unwrap_or(0);
        let key = self.keys.map(|k| {
            let n = if k == 0 { i } else { i % k };
            format!("{}{n}", self.key_prefix).into_bytes()
        });
        let stamp_ms = epoch_ms();
        let mut value = match self.value {
            ValueShape::Fill => {
                let head = match self.stamp {
                    Stamp::Value => format!("{i}:{stamp_ms}:"),
                    _ => i.to_string(),
                };
                let mut v = head.into_bytes();
                if v.len() < self.record_bytes {
                    v.resize(self.record_bytes, b'x');
                }
                v
            }
            ValueShape::Sequence | ValueShape::Order => {
                let mut object = serde_json::Map::new();
                if self.value == ValueShape::Order {
                    object.insert("order".into(), i.into());
                    // Two decimals, as a price would be.
                    let amount = ((10.0 + i as f64 * 0.37) * 100.0).round() / 100.0;
                    object.insert("amount".into(), amount.into());
                    object.insert("currency".into(), "EUR".into());
                } else {
                    object.insert("n".into(), i.into());
                    object.insert("partition".into(), partition.into());
                }
                if self.stamp == Stamp::Value {
                    object.insert("produced_at_ms".into(), serde_json::Value::from(stamp_ms as u64));
                }
                let mut text = serde_json::Value::Object(object.clone()).to_string();
                if text.len() < self.record_bytes {
                    // `,"pad":""` is 9 bytes.
                    let pad = self.record_bytes.saturating_sub(text.len() + 9);
                    object.insert("pad".into(), "x".repeat(pad).into());
                    text = serde_json::Value::Object(object).to_string();
                }
                text.into_bytes()
            }
        };
        value.shrink_to_fit();
        let mut headers: Vec<(String, Option<Vec<u8>>)> =
            self.headers.iter().map(|(k, v)| (k.clone(), Some(v.clone().into_bytes()))).collect();
        if self.stamp == Stamp::Header {
            headers.push((STAMP_HEADER.to_owned(), Some(stamp_ms.to_string().into_bytes())));
        }
        TestRecord { partition, key, value: Some(value), headers }
    }
}

/// What [`Producer::run`] delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Produced {
    /// Records acknowledged, per partition.
    pub partitions: Vec<u64>,
    pub started_at: f64,
    /// When production stopped (epoch seconds); acknowledgements may follow.
    pub stopped_at: f64,
    pub seconds: f64,
    /// The first few delivery errors.
    pub errors: Vec<String>,
    pub error_count: u64,
}

impl Produced {
    pub fn total(&self) -> u64 {
        self.partitions.iter().sum()
    }
}

/// One partition's committed offset and watermarks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The group's committed offset (the next offset to read); `None` if never committed.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
    /// `high - committed` (`high - low` when nothing is committed).
    pub lag: i64,
}

/// A group's committed offsets on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupOffsets {
    pub group: String,
    pub topic: String,
    pub partitions: Vec<PartitionOffsets>,
    /// Summed over the partitions.
    pub lag: i64,
}

impl GroupOffsets {
    /// Committed offsets of the partitions that have one.
    pub fn committed(&self) -> BTreeMap<i32, i64> {
        self.partitions.iter().filter_map(|p| Some((p.partition, p.committed?))).collect()
    }

    /// The human-readable table the demo prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for p in &self.partitions {
            let committed = p.committed.map_or_else(|| "None".to_owned(), |c| c.to_string());
            out.push_str(&format!(
                "  {}-{}: committed={committed} end={} lag={}\n",
                self.topic, p.partition, p.high, p.lag
            ));
        }
        out.push_str(&format!("  total lag: {}\n", self.lag));
        out
    }
}

/// Reads a group's committed offsets with a client of its own: it asks the group coordinator
/// (OffsetFetch) under the group's id but never subscribes, so it never joins the group nor
/// moves its partitions, and it commits nothing.
pub struct OffsetReader {
    consumer: BaseConsumer,
    group: String,
    topic: String,
    partitions: Vec<i32>,
    timeout: Duration,
}

impl std::fmt::Debug for OffsetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetReader").field("group", &self.group).field("topic", &self.topic).finish()
    }
}

impl OffsetReader {
    /// Connects and looks the topic's partitions up. Blocking (run it off async workers in
    /// long-running code).
    pub fn new(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let consumer: BaseConsumer = config.create().context("create the offsets reader")?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(topic), timeout).context("read topic metadata")?;
        let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
            bail!("topic {topic} not found");
        };
        if let Some(e) = meta.error() {
            bail!("topic {topic}: {e:?}");
        }
        let mut partitions: Vec<i32> = meta.partitions().iter().map(rdkafka::metadata::MetadataPartition::id).collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            bail!("topic {topic} has no partitions");
        }
        Ok(Self { consumer, group: group.to_owned(), topic: topic.to_owned(), partitions, timeout })
    }

    /// The partitions of the topic, as found when the reader was created.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// The group's committed offsets, fresh from the coordinator.
    pub fn committed(&self) -> Result<Vec<Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for p in &self.partitions {
            list.add_partition(&self.topic, *p);
        }
        let committed = self.consumer.committed_offsets(list, self.timeout).context("read committed offsets")?;
        Ok(self
            .partitions
            .iter()
            .map(|p| match committed.find_partition(&self.topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None,
            })
            .collect())
    }

    /// `(low, high)` watermarks of every partition, fresh from the broker.
    pub fn watermarks(&self) -> Result<Vec<(i64, i64)>> {
        self.partitions
            .iter()
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, *p, self.timeout)
                    .with_context(|| format!("read the watermarks of {}-{p}", self.topic))
            })
            .collect()
    }

    /// Committed offsets, watermarks and lag.
    pub fn read(&self) -> Result<GroupOffsets> {
        let committed = self.committed()?;
        let watermarks = self.watermarks()?;
        let partitions: Vec<PartitionOffsets> = self
            .partitions
            .iter()
            .zip(committed)
            .zip(watermarks)
            .map(|((partition, committed), (low, high))| PartitionOffsets {
                partition: *partition,
                committed,
                low,
                high,
                lag: high - committed.unwrap_or(low),
            })
            .collect();
        let lag = partitions.iter().map(|p| p.lag).sum();
        Ok(GroupOffsets { group: self.group.clone(), topic: self.topic.clone(), partitions, lag })
    }
}

/// A group's committed offsets and lag on `topic`, read by an independent client (blocking).
pub fn group_offsets(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Result<GroupOffsets> {
    OffsetReader::new(bootstrap, group, topic, extra)?.read()
}

/// The TLS settings that trust `ca_file`.
pub fn tls_settings(ca_file: &Path) -> Vec<(&'static str, String)> {
    vec![("security.protocol", "ssl".to_owned()), ("ssl.ca.location", ca_file.display().to_string())]
}

/// The group's committed offsets per partition (partitions without one are left out), read by a
/// separate client with its own connection and group metadata read (see [`OffsetReader`]).
///
/// The name is historical: this used to run a Python script; the independence that matters is
/// a client that shares nothing with the code under test, which an in-process rdkafka client
/// gives as well.
pub fn committed_offsets_out_of_process(bootstrap: &str, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
    committed_offsets_out_of_process_tls(bootstrap, group, topic, None)
}

/// Like [`committed_offsets_out_of_process`], over TLS trusting `ca_file` when given.
pub fn committed_offsets_out_of_process_tls(
    bootstrap: &str,
    group: &str,
    topic: &str,
    ca_file: Option<&Path>,
) -> Result<BTreeMap<i32, i64>> {
    let tls = ca_file.map(tls_settings).unwrap_or_default();
    let extra: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(group_offsets(bootstrap, group, topic, &extra)?.committed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_round_robin_with_the_requested_keys() {
        let mut w = Workload::new("t", 3, 10);
        w.keys = Some(2);
        w.key_prefix = "customer-".into();
        let r = w.record(4);
        assert_eq!(r.partition, 1);
        assert_eq!(r.key.as_deref(), Some(&b"customer-0"[..]));
        w.keys = None;
        assert_eq!(w.record(4).key, None);
        w.keys = Some(0);
        assert_eq!(w.record(7).key.as_deref(), Some(&b"customer-7"[..]));
    }

    #[test]
    fn values_are_padded_to_the_record_size() {
        let mut w = Workload::new("t", 2, 10);
        w.record_bytes = 200;
        w.stamp = Stamp::Value;
        let v: serde_json::Value = serde_json::from_slice(&w.record(3).value.unwrap()).unwrap();
        assert_eq!(v["n"], 3);
        assert_eq!(v["partition"], 1);
        assert!(v["produced_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(v.to_string().len(), 200);
        w.value = ValueShape::Fill;
        w.stamp = Stamp::None;
        let fill = w.record(12).value.unwrap();
        assert_eq!(fill.len(), 200);
        assert!(fill.starts_with(b"12x"));
    }

    #[test]
    fn the_header_stamp_is_epoch_milliseconds() {
        let mut w = Workload::new("t", 1, 1);
        w.stamp = Stamp::Header;
        w.headers = vec![("source".into(), "demo".into())];
        let r = w.record(0);
        assert_eq!(r.headers[0], ("source".to_owned(), Some(b"demo".to_vec())));
        let (name, value) = &r.headers[1];
        assert_eq!(name, STAMP_HEADER);
        let ms: u128 = String::from_utf8(value.clone().unwrap()).unwrap().parse().unwrap();
        assert!(ms > 1_600_000_000_000);
    }

    #[test]
    fn order_values_are_the_demo_shape() {
        let mut w = Workload::new("t", 3, 10);
        w.value = ValueShape::Order;
        let v: serde_json::Value = serde_json::from_slice(&w.record(2).value.unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"order": 2, "amount": 10.74, "currency": "EUR"}));
    }
}
