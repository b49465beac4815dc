//! Batching: where `BatchSize`, `MaximumBatchingWindowInSeconds` and the 6 MB rule are applied.
//!
//! A batch closes at `BatchSize` records, when the batching window (started by its first record)
//! ends, or when one more record would push the encoded payload over
//! [`super::event::MAX_PAYLOAD_BYTES`]. A record too large to be sent even alone is handed back
//! as [`NextBatch::Oversized`] so the caller can report it and move past it: the partition is never
//! stuck behind it. Records that match none of the mapping's `FilterCriteria` are never put in a
//! batch; the batch (or a [`NextBatch::Filtered`] run) accounts for them so they are committed.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::budget::{Budget, Held};
use super::event::{EncodedRecord, Envelope, MAX_PAYLOAD_BYTES, Payload, RecordEncoder, RecordView};
use super::filter::Filters;
use super::record::{RecordSource, SourceError};
use crate::model::mapping::EventSourceMapping;

/// AWS's default `BatchSize` for Kafka.
pub const fn default_batch_size() -> u32 {
    100
}

/// AWS's batching window for Kafka when `MaximumBatchingWindowInSeconds` was never set.
pub const fn default_batching_window() -> Duration {
    Duration::from_millis(500)
}

/// When a batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// `BatchSize`: 1–10,000.
    pub max_records: usize,
    /// `MaximumBatchingWindowInSeconds`, or 500 ms when never set.
    pub window: Duration,
    /// The request-body limit; [`MAX_PAYLOAD_BYTES`] except in tests.
    pub max_payload_bytes: usize,
}

impl BatchLimits {
    /// A mapping's `BatchSize` and window (500 ms for Kafka when never set), and the 6 MB rule.
    pub fn of(mapping: &EventSourceMapping) -> Self {
        Self {
            max_records: mapping.batch_size.unwrap_or_else(default_batch_size) as usize,
            window: mapping
                .maximum_batching_window_in_seconds
                .map_or_else(default_batching_window, |s| Duration::from_secs(u64::from(s))),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
        }
    }
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_records: default_batch_size() as usize,
            window: default_batching_window(),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
        }
    }
}

/// Records of one partition ready to be sent.
#[derive(Debug)]
pub struct Batch {
    pub partition: i32,
    pub payload: Payload,
    pub first_offset: i64,
    /// The last offset read for this batch: its last record's, or a later filtered-out record's.
    pub last_offset: i64,
    /// Records read for this batch that matched no filter (not in `payload`).
    pub filtered: usize,
    /// Its records' bytes in the poller's batch memory ([`super::budget`]), until it is dropped.
    pub held: Option<Held>,
}

impl Batch {
    /// The offset to commit once the batch succeeded: the next one to read.
    pub const fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// A record whose one-record payload is over the limit: it can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The size its one-record payload would have had.
    pub payload_bytes: usize,
    /// Its key, for on-failure destinations that key messages with it.
    pub key: Option<Vec<u8>>,
}

/// What [`Batcher::next`] produced.
#[derive(Debug)]
pub enum NextBatch {
    Batch(Batch),
    Oversized(OversizedRecord),
    /// Records that matched no filter, up to `last_offset`, and nothing to send before them.
    Filtered {
        partition: i32,
        last_offset: i64,
        records: usize,
    },
    /// Stop was requested before a record was gathered.
    Stopped,
    /// The source ended (test sources only) and nothing was left.
    Ended,
}

/// Turns one partition's records into batches.
#[derive(Debug)]
pub struct Batcher<S> {
    source: S,
    topic: Arc<str>,
    envelope: Arc<Envelope>,
    limits: BatchLimits,
    filters: Arc<Filters>,
    encoder: RecordEncoder,
    /// A record read but not fitting the previous batch: it opens the next one.
    carried: Option<EncodedRecord>,
    /// The poller's batch memory, when bounded.
    budget: Option<Arc<Budget>>,
}

impl<S: RecordSource> Batcher<S> {
    pub fn new(source: S, topic: Arc<str>, envelope: Arc<Envelope>, limits: BatchLimits) -> Self {
        let encoder = RecordEncoder::new(&topic);
        Self { source, topic, envelope, limits, filters: Arc::default(), encoder, carried: None, budget: None }
    }

    /// Holds every batch's bytes in `budget` until the batch is dropped: a batch closes early
    /// when the budget has no room for its next record (its first is always taken).
    #[must_use]
    pub fn with_budget(mut self, budget: Option<Arc<Budget>>) -> Self {
        self.budget = budget;
        self
    }

    /// Leaves out records that match none of `filters` (none: every record is sent).
    #[must_use]
    pub fn with_filters(mut self, filters: Arc<Filters>) -> Self {
        self.filters = filters;
        self
    }

    pub const fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Waits for the next batch.
    ///
    /// # Errors
    /// A [`SourceError::Fatal`] from the source. Transient source errors are logged and waited out.
    pub async fn next(&mut self, stop: &CancellationToken) -> Result<NextBatch, SourceError> {
        let first = match self.carried.take() {
            Some(record) => record,
            None => loop {
                let item = tokio::select! {
                    biased;
                    () = stop.cancelled() => return Ok(NextBatch::Stopped),
                    item = self.read() => item,
                };
                match self.accept(item)? {
                    Accepted::Record(record) => break record,
                    Accepted::Filtered { partition, offset } => return self.filtered_run(partition, offset),
                    Accepted::Skip => {}
                    Accepted::Ended => return Ok(NextBatch::Ended),
                }
            },
        };
        if stop.is_cancelled() {
            return Ok(NextBatch::Stopped);
        }

        let mut payload = Payload::new(self.envelope.clone());
        let alone = payload.size_with(&self.topic, &first);
        if alone > self.limits.max_payload_bytes {
            return Ok(NextBatch::Oversized(OversizedRecord {
                partition: first.partition,
                offset: first.offset,
                timestamp_ms: first.timestamp_ms,
                payload_bytes: alone,
                key: super::destination::record_key(&first.json),
            }));
        }
        // The first record is always taken, room or not: no partition waits on others' batches.
        let mut held = self.budget.as_ref().map(|budget| budget.force_hold(first.size()));
        let (partition, first_offset) = (first.partition, first.offset);
        let mut last_offset = first.offset;
        let mut filtered = 0;
        payload.push(&self.topic, first);

        let deadline = Instant::now() + self.limits.window;
        while payload.len() < self.limits.max_records {
            let item = if self.limits.window.is_zero() {
                // No window: take what is already buffered, never wait.
                match self.read().now_or_never() {
                    Some(item) => item,
                    None => break,
                }
            } else {
                tokio::select! {
                    biased;
                    // Stopping (a hand-over, the poller's deadline) ends the window early: what
                    // was gathered is delivered now, or a window longer than a poller's life
                    // would never deliver a quiet partition's records.
                    () = stop.cancelled() => break,
                    () = sleep_until(deadline) => break,
                    item = self.read() => item,
                }
            };
            match self.accept(item)? {
                Accepted::Record(record) => {
                    if payload.size_with(&self.topic, &record) > self.limits.max_payload_bytes {
                        self.carried = Some(record);
                        break;
                    }
                    if let (Some(budget), Some(held)) = (&self.budget, held.as_mut()) {
                        // No room in the poller's batch memory: send what is gathered.
                        let Some(more) = budget.try_hold(record.size()) else {
                            self.carried = Some(record);
                            break;
                        };
                        held.merge(more);
                    }
                    last_offset = record.offset;
                    payload.push(&self.topic, record);
                }
                Accepted::Filtered { offset, .. } => {
                    last_offset = offset;
                    filtered += 1;
                }
                Accepted::Skip => {}
                Accepted::Ended => break,
            }
        }
        Ok(NextBatch::Batch(Batch { partition, payload, first_offset, last_offset, filtered, held }))
    }

    /// A filtered-out record with nothing gathered before it: it and the filtered-out records
    /// already buffered behind it, up to the next record to send (carried into the next batch).
    fn filtered_run(&mut self, partition: i32, mut last_offset: i64) -> Result<NextBatch, SourceError> {
        let mut records = 1;
        while records < self.limits.max_records.max(1000) {
            let Some(item) = self.read().now_or_never() else { break };
            match self.accept(item)? {
                Accepted::Filtered { offset, .. } => {
                    last_offset = offset;
                    records += 1;
                }
                Accepted::Record(record) => {
                    self.carried = Some(record);
                    break;
                }
                Accepted::Skip => {}
                Accepted::Ended => break,
            }
        }
        Ok(NextBatch::Filtered { partition, last_offset, records })
    }

    /// The next record, encoded, or marked filtered when it matches none of the filters. Without
    /// filters it is encoded straight from the client's buffer; with them it is read as a record
    /// first, for the patterns to look at.
    fn read(&mut self) -> impl Future<Output = Option<Result<Read, SourceError>>> + Send + '_ {
        let (source, encoder, filters) = (&mut self.source, &self.encoder, &self.filters);
        async move {
            if filters.is_empty() {
                return source.next_encoded(encoder).await.map(|r| r.map(Read::Record));
            }
            source.next_record().await.map(|r| {
                r.map(|record| {
                    if filters.matches(&record) {
                        Read::Record(encoder.encode(RecordView::of(&record)))
                    } else {
                        Read::Filtered { partition: record.partition, offset: record.offset }
                    }
                })
            })
        }
    }

    fn accept(&self, item: Option<Result<Read, SourceError>>) -> Result<Accepted, SourceError> {
        match item {
            None => Ok(Accepted::Ended),
            Some(Ok(Read::Filtered { partition, offset })) => Ok(Accepted::Filtered { partition, offset }),
            Some(Ok(Read::Record(record))) => Ok(Accepted::Record(record)),
            Some(Err(SourceError::Transient { partition, message })) => {
                warn!(topic = %self.topic, partition, error = %message, "Kafka read error; the client retries.");
                Ok(Accepted::Skip)
            }
            Some(Err(fatal)) => Err(fatal),
        }
    }
}

enum Read {
    Record(EncodedRecord),
    Filtered { partition: i32, offset: i64 },
}

enum Accepted {
    Record(EncodedRecord),
    Filtered { partition: i32, offset: i64 },
    Skip,
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::event::{EventSource, encode_record};
    use crate::delivery::record::{KafkaRecord, TimestampType};
    use crate::testing::MemorySource;

    fn rec(offset: i64, value_len: usize) -> KafkaRecord {
        KafkaRecord {
            topic: Arc::from("t"),
            partition: 3,
            offset,
            timestamp_ms: 1_000 + offset,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(vec![b'v'; value_len]),
            headers: vec![],
        }
    }

    fn batcher(source: MemorySource, limits: BatchLimits) -> Batcher<MemorySource> {
        let envelope = Arc::new(Envelope::new(&EventSource::SelfManaged, "k:9092"));
        Batcher::new(source, Arc::from("t"), envelope, limits)
    }

    fn offsets(next: &NextBatch) -> Vec<i64> {
        match next {
            NextBatch::Batch(b) => b.payload.partitions().flat_map(|(_, _, r)| r.iter().map(|r| r.offset)).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closes_at_batch_size_without_waiting_for_the_window() {
        let limits = BatchLimits { max_records: 3, window: Duration::from_secs(300), ..BatchLimits::default() };
        let mut b = batcher(MemorySource::idle_after((0..7).map(|o| rec(o, 10))), limits);
        let stop = CancellationToken::new();
        let start = Instant::now();
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [0, 1, 2]);
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [3, 4, 5]);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // One record left: the window (300 s) closes the batch.
        let batch = b.next(&stop).await.unwrap();
        assert_eq!(offsets(&batch), [6]);
        assert_eq!(start.elapsed(), Duration::from_secs(300));
        if let NextBatch::Batch(batch) = batch {
            assert_eq!((batch.first_offset, batch.last_offset, batch.next_offset()), (6, 6, 7));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn window_starts_at_the_first_record_and_zero_window_never_waits() {
        let limits = BatchLimits { max_records: 100, window: Duration::from_millis(500), ..BatchLimits::default() };
        let mut b = batcher(MemorySource::idle_after((0..2).map(|o| rec(o, 1))), limits);
        let stop = CancellationToken::new();
        let start = Instant::now();
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [0, 1]);
        assert_eq!(start.elapsed(), Duration::from_millis(500));

        let zero = BatchLimits { window: Duration::ZERO, ..limits };
        let mut b = batcher(MemorySource::idle_after((0..5).map(|o| rec(o, 1))), zero);
        let start = Instant::now();
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [0, 1, 2, 3, 4]);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn payload_limit_splits_batches_exactly_and_skips_a_record_too_large_alone() {
        let envelope = Envelope::new(&EventSource::SelfManaged, "k:9092");
        let one = {
            let mut p = Payload::new(Arc::new(envelope.clone()));
            p.push(&Arc::from("t"), encode_record(&rec(0, 100)));
            p.size()
        };
        // Room for exactly two 100-byte records; record 2 is far too large; 3 and 4 fit again.
        let two = {
            let mut p = Payload::new(Arc::new(envelope));
            p.push(&Arc::from("t"), encode_record(&rec(0, 100)));
            p.push(&Arc::from("t"), encode_record(&rec(1, 100)));
            p.size()
        };
        assert!(two > one);
        let limits = BatchLimits { max_records: 100, window: Duration::from_secs(1), max_payload_bytes: two };
        let records = vec![rec(0, 100), rec(1, 100), rec(2, 10_000), rec(3, 100), rec(4, 100), rec(5, 100)];
        let mut b = batcher(MemorySource::ending_after(records), limits);
        let stop = CancellationToken::new();
        let first = b.next(&stop).await.unwrap();
        assert_eq!(offsets(&first), [0, 1]);
        if let NextBatch::Batch(batch) = &first {
            assert!(batch.payload.size() <= two);
            assert_eq!(batch.payload.finish().len(), batch.payload.size());
        }
        match b.next(&stop).await.unwrap() {
            NextBatch::Oversized(o) => {
                assert_eq!((o.partition, o.offset), (3, 2));
                assert!(o.payload_bytes > two);
            }
            other => panic!("expected the oversized record, got {other:?}"),
        }
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [3, 4]);
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [5]);
        assert!(matches!(b.next(&stop).await.unwrap(), NextBatch::Ended));
    }

    /// Review #15: each partition held a whole batch (up to 6 MB) however many partitions a
    /// poller had; the poller's batch memory now bounds them all (but for one record each).
    #[tokio::test(start_paused = true)]
    async fn a_full_budget_closes_batches_early_but_always_takes_a_first_record() {
        let one = encode_record(&rec(0, 100)).size();
        let budget = Budget::new(one * 3);
        let limits = BatchLimits { max_records: 10, window: Duration::ZERO, ..BatchLimits::default() };
        let mut b =
            batcher(MemorySource::idle_after((0..10).map(|o| rec(o, 100))), limits).with_budget(Some(budget.clone()));
        let stop = CancellationToken::new();
        let first = b.next(&stop).await.unwrap();
        assert_eq!(offsets(&first), [0, 1, 2], "closed at the budget, not at BatchSize");
        assert_eq!(budget.used(), one * 3);
        // Full: the next batch still takes its first record (nobody waits on others' batches).
        let second = b.next(&stop).await.unwrap();
        assert_eq!(offsets(&second), [3]);
        assert_eq!(budget.used(), one * 4);
        drop((first, second));
        assert_eq!(budget.used(), 0);
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [4, 5, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_delivers_what_the_window_gathered_and_transient_errors_are_waited_out() {
        // A window far longer than the poller's life (a 300 s window, a poller stopping at 1 s):
        // the gathered records go out when it stops, not never.
        let mut source = MemorySource::idle_after([]);
        source.push(Err(SourceError::Transient { partition: 3, message: "leader moved".into() }));
        source.push(Ok(rec(0, 1)));
        source.push(Ok(rec(1, 1)));
        let limits = BatchLimits { max_records: 10, window: Duration::from_secs(300), ..BatchLimits::default() };
        let mut b = batcher(source, limits);
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.cancel();
        });
        let start = Instant::now();
        assert_eq!(offsets(&b.next(&stop).await.unwrap()), [0, 1]);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Nothing gathered: stopped.
        assert!(matches!(b.next(&stop).await.unwrap(), NextBatch::Stopped));

        let mut fatal = MemorySource::idle_after([]);
        fatal.push(Err(SourceError::Fatal { partition: 3, message: "topic authorization failed".into(), stop: None }));
        let mut b = batcher(fatal, limits);
        assert!(matches!(b.next(&CancellationToken::new()).await, Err(SourceError::Fatal { .. })));
    }
}
