//! A Kafka cluster in memory, behind the control plane's [`Connector`] seam: topics whose
//! partitions are logs, consumer-group offsets, and readers that wait for new records. It lets
//! the supervisor, the mapping consumers and the partition workers run in-process, under paused
//! time, with no broker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::coordination::connector::{ConnectError, Connector, MappingClient, StartAt};
use crate::delivery::checkpoint::{Checkpoint, CheckpointError};
use crate::delivery::record::{KafkaRecord, RecordSource, SourceError, TimestampType};
use crate::model::mapping::{EventSourceMapping, StartingPosition};

/// The cluster. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryKafka {
    inner: Arc<Mutex<State>>,
    produced: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    /// Topic → partition → log.
    topics: BTreeMap<String, Vec<Vec<KafkaRecord>>>,
    /// (group, topic) → partition → committed offset.
    groups: BTreeMap<(String, String), BTreeMap<i32, i64>>,
    /// Every commit, in order: (group, topic, partition, offset).
    commits: Vec<(String, String, i32, i64)>,
    /// Set: connecting fails with this.
    connect_error: Option<ConnectError>,
}

impl MemoryKafka {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates `topic` with `partitions` empty partitions.
    pub fn create_topic(&self, topic: &str, partitions: usize) {
        self.lock().topics.insert(topic.to_owned(), vec![Vec::new(); partitions]);
    }

    /// Adds partitions to `topic` (as `kafka-topics --alter --partitions`).
    pub fn add_partitions(&self, topic: &str, more: usize) {
        if let Some(logs) = self.lock().topics.get_mut(topic) {
            logs.extend(std::iter::repeat_with(Vec::new).take(more));
        }
    }

    /// Appends a record (value = `value`, timestamp = `timestamp_ms`); returns its offset.
    pub fn produce(&self, topic: &str, partition: i32, value: &[u8], timestamp_ms: i64) -> i64 {
        let offset = {
            let mut state = self.lock();
            let Some(log) =
                state.topics.get_mut(topic).and_then(|t| t.get_mut(usize::try_from(partition).unwrap_or(usize::MAX)))
            else {
                return -1;
            };
            let offset = i64::try_from(log.len()).unwrap_or(i64::MAX);
            log.push(KafkaRecord {
                topic: Arc::from(topic),
                partition,
                offset,
                timestamp_ms,
                timestamp_type: TimestampType::CreateTime,
                key: None,
                value: Some(value.to_vec()),
                headers: Vec::new(),
            });
            offset
        };
        self.produced.notify_waiters();
        offset
    }

    /// The group's committed offsets on `topic`.
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.lock().groups.get(&(group.to_owned(), topic.to_owned())).cloned().unwrap_or_default()
    }

    /// Every commit made so far: (group, topic, partition, offset).
    pub fn commits(&self) -> Vec<(String, String, i32, i64)> {
        self.lock().commits.clone()
    }

    /// Records in each partition of `topic`.
    pub fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        self.lock()
            .topics
            .get(topic)
            .map(|logs| {
                logs.iter()
                    .enumerate()
                    .map(|(p, log)| (i32::try_from(p).unwrap_or(i32::MAX), i64::try_from(log.len()).unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// From now on, connecting fails with `error` (or works again with `None`).
    pub fn fail_connects(&self, error: Option<ConnectError>) {
        self.lock().connect_error = error;
    }

    /// A connector for one poller; everything it hands out hangs forever once `dead` fires (a
    /// killed process: no reads, no commits, no answers).
    pub fn connector(&self, dead: CancellationToken) -> MemoryConnector {
        MemoryConnector { kafka: self.clone(), dead }
    }

    fn log_len(&self, topic: &str, partition: i32) -> Option<i64> {
        let state = self.lock();
        let log = state.topics.get(topic)?.get(usize::try_from(partition).ok()?)?;
        Some(i64::try_from(log.len()).unwrap_or(i64::MAX))
    }

    fn record(&self, topic: &str, partition: i32, offset: i64) -> Option<KafkaRecord> {
        let state = self.lock();
        state.topics.get(topic)?.get(usize::try_from(partition).ok()?)?.get(usize::try_from(offset).ok()?).cloned()
    }
}

/// Opens clients on a [`MemoryKafka`].
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    kafka: MemoryKafka,
    dead: CancellationToken,
}

async fn or_dead<T>(dead: &CancellationToken, f: impl Future<Output = T>) -> T {
    tokio::select! {
        biased;
        () = dead.cancelled() => std::future::pending().await,
        out = f => out,
    }
}

use std::future::Future;

impl Connector for MemoryConnector {
    type Client = MemoryClient;

    async fn connect(&self, mapping: &EventSourceMapping) -> Result<MemoryClient, ConnectError> {
        or_dead(&self.dead, async {
            if let Some(e) = self.kafka.lock().connect_error.clone() {
                return Err(e);
            }
            Ok(MemoryClient {
                kafka: self.kafka.clone(),
                topic: mapping.topic().to_owned(),
                group: mapping.consumer_group_id().to_owned(),
                dead: self.dead.clone(),
            })
        })
        .await
    }
}

/// One mapping's client.
#[derive(Debug, Clone)]
pub struct MemoryClient {
    kafka: MemoryKafka,
    topic: String,
    group: String,
    dead: CancellationToken,
}

impl MappingClient for MemoryClient {
    type Source = MemoryPartition;
    type Checkpoint = MemoryGroup;

    fn bootstrap_servers(&self) -> &str {
        "memory:9092"
    }

    async fn partitions(&self) -> Result<Vec<i32>, ConnectError> {
        or_dead(&self.dead, async {
            let n = self.kafka.lock().topics.get(&self.topic).map(Vec::len);
            match n {
                Some(n) if n > 0 => Ok((0..i32::try_from(n).unwrap_or(i32::MAX)).collect()),
                _ => Err(ConnectError::retry(format!("topic '{}' does not exist", self.topic))),
            }
        })
        .await
    }

    async fn start_offset(
        &self,
        partition: i32,
        committed: Option<i64>,
        start: StartAt,
    ) -> Result<(i64, bool), ConnectError> {
        or_dead(&self.dead, async {
            if let Some(offset) = committed.filter(|o| *o >= 0) {
                return Ok((offset, false));
            }
            let end =
                self.kafka.log_len(&self.topic, partition).ok_or_else(|| ConnectError::retry("no such partition"))?;
            let offset = match start.position {
                StartingPosition::TrimHorizon => 0,
                StartingPosition::Latest => end,
                StartingPosition::AtTimestamp => {
                    let ts = start.timestamp_ms.unwrap_or(0);
                    (0..end)
                        .find(|o| self.kafka.record(&self.topic, partition, *o).is_some_and(|r| r.timestamp_ms >= ts))
                        .unwrap_or(end)
                }
            };
            Ok((offset, true))
        })
        .await
    }

    fn open(&self, partition: i32, offset: i64) -> Result<MemoryPartition, ConnectError> {
        Ok(MemoryPartition {
            kafka: self.kafka.clone(),
            topic: self.topic.clone(),
            partition,
            next: offset,
            dead: self.dead.clone(),
        })
    }

    fn close(&self, _partition: i32) {}

    fn lag(&self, partition: i32, next_offset: i64) -> Option<u64> {
        let end = self.kafka.log_len(&self.topic, partition)?;
        u64::try_from(end.saturating_sub(next_offset.max(0))).ok()
    }

    fn checkpoint(&self) -> MemoryGroup {
        MemoryGroup {
            kafka: self.kafka.clone(),
            topic: self.topic.clone(),
            group: self.group.clone(),
            dead: self.dead.clone(),
        }
    }

    async fn failed(&self) -> ConnectError {
        std::future::pending().await
    }
}

/// One partition's reader.
#[derive(Debug)]
pub struct MemoryPartition {
    kafka: MemoryKafka,
    topic: String,
    partition: i32,
    next: i64,
    dead: CancellationToken,
}

impl RecordSource for MemoryPartition {
    async fn next_record(&mut self) -> Option<Result<KafkaRecord, SourceError>> {
        loop {
            // Register interest before looking, so a record produced in between wakes us.
            let produced = self.kafka.produced.clone();
            let notified = produced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.dead.is_cancelled() {
                std::future::pending::<()>().await;
            }
            if let Some(record) = self.kafka.record(&self.topic, self.partition, self.next) {
                self.next += 1;
                return Some(Ok(record));
            }
            tokio::select! {
                () = notified => {}
                () = self.dead.cancelled() => {}
            }
        }
    }
}

/// A consumer group's offsets on one topic.
#[derive(Debug, Clone)]
pub struct MemoryGroup {
    kafka: MemoryKafka,
    topic: String,
    group: String,
    dead: CancellationToken,
}

impl Checkpoint for MemoryGroup {
    async fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, CheckpointError> {
        or_dead(&self.dead, async {
            let offsets = self.kafka.committed(&self.group, &self.topic);
            Ok(partitions.iter().map(|p| (*p, offsets.get(p).copied())).collect())
        })
        .await
    }

    async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), CheckpointError> {
        or_dead(&self.dead, async {
            let mut state = self.kafka.lock();
            for (&p, &o) in offsets {
                state.groups.entry((self.group.clone(), self.topic.clone())).or_default().insert(p, o);
                state.commits.push((self.group.clone(), self.topic.clone(), p, o));
            }
            Ok(())
        })
        .await
    }
}
