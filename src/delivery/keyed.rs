//! Key-ordered concurrency inside one partition: `ParallelizationFactor`, which AWS offers for
//! Kinesis and DynamoDB streams and kafka-esm extends to Kafka.
//!
//! Up to N batches of one partition are in flight at once, and no record key is in two of them:
//! records of one key are invoked strictly in offset order (a record waits while an earlier
//! record of its key is in flight, retried, split or given up), while records of other keys go
//! ahead. Records without a key are one key. The committed offset is the lowest offset not yet
//! resolved (delivered, or given up and stored), so it never passes a record whose batch has not
//! succeeded, however the batches finish.
//!
//! Records read ahead wait in a buffer of at most N × `BatchSize` records and
//! [`PENDING_BYTES`] bytes; a key that stays busy (a batch retried forever) fills it with its
//! records and then holds the partition, as one batch does without this setting. Each batch is
//! worked by [`super::deliver`] exactly as a batch of an ordinary partition (retries, bisect,
//! partial responses, record age, on-failure destination). Records are hashed by key to tell keys
//! apart; two keys with the same 64-bit hash are only ordered as if they were one.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Mutex;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, sleep_until};
use tracing::warn;

use super::batch::{Batch, OversizedRecord};
use super::budget::Held;
use super::deliver::{Ended, Run};
use super::event::{EncodedRecord, Payload, RecordEncoder, RecordView};
use super::invoke::Invoker;
use super::metrics::MappingMetrics;
use super::record::{RecordSource, SourceError};
use super::worker::{WorkerError, show_commit_failure, show_commit_recovery};

/// Encoded bytes the read-ahead buffer of a partition may hold (besides the batches in flight):
/// one full payload, so a batch can reach the 6 MB limit.
pub const PENDING_BYTES: usize = super::event::MAX_PAYLOAD_BYTES;

/// A record read and waiting for a batch.
#[derive(Debug)]
struct Waiting {
    record: EncodedRecord,
    key: u64,
    arrived: Instant,
    /// Too large to be invoked even alone: goes to the on-failure destination, in its key's turn.
    oversized: Option<OversizedRecord>,
    /// Its bytes in the poller's batch memory, from when it was read until its batch resolves.
    held: Option<Held>,
}

/// What the committed offset may be: the lowest offset read and not yet resolved.
#[derive(Debug, Default)]
struct Frontier {
    unresolved: BTreeSet<i64>,
    /// One past the last offset read.
    read_end: Option<i64>,
    reported: Option<i64>,
}

impl Frontier {
    fn read(&mut self, offset: i64, to_resolve: bool) {
        self.read_end = Some(offset + 1);
        if to_resolve {
            self.unresolved.insert(offset);
        }
    }

    /// Of `offsets` (one batch's, ascending), those below `below` are resolved.
    fn resolve(&mut self, offsets: &[i64], below: i64) {
        for offset in offsets.iter().take_while(|&&o| o < below) {
            self.unresolved.remove(offset);
        }
    }

    /// The offset to commit when it moved since last reported.
    fn advanced(&mut self) -> Option<i64> {
        let next = self.unresolved.first().copied().or(self.read_end)?;
        if self.reported.is_some_and(|r| r >= next) {
            return None;
        }
        self.reported = Some(next);
        Some(next)
    }
}

type InFlight<'a> = Pin<Box<dyn Future<Output = (Vec<u64>, Result<Ended, WorkerError>)> + Send + 'a>>;

/// What one look at the buffer found.
enum Plan {
    /// A batch (or an oversized record) was taken out of the buffer.
    Taken(Taken),
    /// Records wait for their window to end at this instant.
    WaitUntil(Instant),
    /// Nothing can be sent now (no records, or all their keys are busy).
    Nothing,
}

enum Taken {
    Batch { batch: Batch, offsets: Vec<i64>, keys: Vec<u64> },
    Oversized { record: OversizedRecord, key: u64 },
}

/// One partition's records, key-ordered, `parallel` batches at a time.
#[derive(Debug)]
pub struct Keyed<'r, 'a, I, S> {
    run: &'r Run<'a, I>,
    source: S,
    encoder: RecordEncoder,
    parallel: usize,
    /// Learnt from the first record read.
    partition: i32,
    pending: VecDeque<Waiting>,
    pending_bytes: usize,
    /// Keys of the batches in flight.
    busy: HashSet<u64>,
    /// A record read when the poller's batch memory had no room for it: reading waits for room.
    stalled: Option<Waiting>,
}

impl<'r, 'a, I: Invoker, S: RecordSource> Keyed<'r, 'a, I, S> {
    pub fn new(run: &'r Run<'a, I>, source: S, parallel: usize) -> Self {
        let encoder = RecordEncoder::new(&run.spec.topic);
        Self {
            run,
            source,
            encoder,
            parallel: parallel.max(1),
            partition: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            busy: HashSet::new(),
            stalled: None,
        }
    }

    /// Runs the partition until it is stopped (or its source ends): on stop, what is due is sent
    /// without waiting for its window, then the batches in flight finish.
    ///
    /// # Errors
    /// An Invoke API error that stops the mapping, or a fatal Kafka error once the batches in
    /// flight are done.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        let run = self.run;
        let stop = run.stop;
        let frontier = Mutex::new(Frontier::default());
        let frontier = &frontier;
        let mut in_flight: FuturesUnordered<InFlight<'_>> = FuturesUnordered::new();
        // Reading stops when the source ends or fails; sending stops once the poller stops.
        let (mut reading, mut sending) = (true, true);
        let mut fatal: Option<SourceError> = None;
        let mut last_round = false;
        let mut paused = false;
        loop {
            // A stalled record whose partition has nothing left waiting or in flight goes ahead.
            if self.pending.is_empty()
                && self.busy.is_empty()
                && let Some(budget) = &run.spec.budget
                && let Some(mut waiting) = self.stalled.take()
            {
                waiting.held = Some(budget.force_hold(waiting.record.json.len()));
                self.pending_bytes += waiting.record.size();
                self.pending.push_back(waiting);
            }
            if reading {
                while self.has_room() {
                    let Some(item) = self.source.next_record().now_or_never() else { break };
                    if !self.accept(item, frontier, &mut reading, &mut fatal) {
                        break;
                    }
                }
            }
            self.report(frontier);
            if stop.is_cancelled() || fatal.is_some() {
                // Deliver what is due once, then nothing new.
                last_round = sending;
                reading = false;
            }
            let mut wake = None;
            let failing = match run.commits.failing() {
                Some(error) if sending => {
                    if !paused {
                        show_commit_failure(run.spec, &error);
                    }
                    true
                }
                _ => {
                    if paused {
                        show_commit_recovery(run.spec);
                    }
                    false
                }
            };
            paused = failing;
            if sending && !failing {
                while in_flight.len() < self.parallel {
                    match self.plan(last_round || !reading) {
                        Plan::Taken(taken) => in_flight.push(self.start(taken, frontier)),
                        Plan::WaitUntil(at) => {
                            wake = Some(at);
                            break;
                        }
                        Plan::Nothing => break,
                    }
                }
            }
            if last_round {
                sending = false;
            }
            if in_flight.is_empty() && (!sending || (!reading && self.pending.is_empty() && self.stalled.is_none())) {
                self.report(frontier);
                return fatal.map_or(Ok(()), |e| Err(WorkerError::Source(e)));
            }
            let can_read = reading && sending && self.has_room();
            let stalled = self.stalled.as_ref().map(|w| w.record.json.len()).filter(|_| sending);
            let room = async {
                match (&run.spec.budget, stalled) {
                    (Some(budget), Some(bytes)) => budget.hold(bytes).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = stop.cancelled(), if sending => {}
                done = in_flight.next(), if !in_flight.is_empty() => {
                    let Some((keys, result)) = done else { continue };
                    for key in keys {
                        self.busy.remove(&key);
                    }
                    match result {
                        Ok(Ended::Resolved) => {}
                        // The lease was lost or the poller abandons: nothing new is sent.
                        Ok(Ended::Stopped) => sending = false,
                        Err(e) => return Err(e),
                    }
                }
                () = run.commits.recovered(), if failing => {}
                item = self.source.next_record(), if can_read => {
                    self.accept(item, frontier, &mut reading, &mut fatal);
                }
                held = room, if stalled.is_some() => {
                    if let Some(mut waiting) = self.stalled.take() {
                        waiting.held = Some(held);
                        self.pending_bytes += waiting.record.size();
                        self.pending.push_back(waiting);
                    }
                }
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
    }

    fn has_room(&self) -> bool {
        self.stalled.is_none()
            && self.pending.len() < self.parallel * self.run.spec.limits.max_records
            && self.pending_bytes < PENDING_BYTES
    }

    /// Takes one read result in; false when reading must stop.
    fn accept(
        &mut self,
        item: Option<Result<super::record::KafkaRecord, SourceError>>,
        frontier: &Mutex<Frontier>,
        reading: &mut bool,
        fatal: &mut Option<SourceError>,
    ) -> bool {
        let spec = self.run.spec;
        let record = match item {
            None => {
                *reading = false;
                return false;
            }
            Some(Err(SourceError::Transient { partition, message })) => {
                warn!(topic = %spec.topic, partition, error = %message, "Kafka read error; the client retries.");
                return true;
            }
            Some(Err(e)) => {
                *reading = false;
                *fatal = Some(e);
                return false;
            }
            Some(Ok(record)) => record,
        };
        MappingMetrics::add(&spec.metrics.polled, 1);
        self.partition = record.partition;
        let mut frontier = frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !spec.fate.filters.matches(&record) {
            MappingMetrics::add(&spec.metrics.filtered_out, 1);
            frontier.read(record.offset, false);
            return true;
        }
        frontier.read(record.offset, true);
        drop(frontier);
        let key = key_hash(record.key.as_deref());
        let encoded = self.encoder.encode(RecordView::of(&record));
        let alone = Payload::new(spec.envelope.clone()).size_with(&spec.topic, &encoded);
        let oversized = (alone > spec.limits.max_payload_bytes).then(|| OversizedRecord {
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            payload_bytes: alone,
            key: record.key.clone(),
        });
        let mut waiting = Waiting { record: encoded, key, arrived: Instant::now(), oversized, held: None };
        if let (Some(budget), None) = (&spec.budget, &waiting.oversized) {
            let bytes = waiting.record.json.len();
            let held = match budget.try_hold(bytes) {
                Some(held) => held,
                // Nothing of this partition waiting or in flight: take it anyway (no partition
                // waits on others' batches).
                None if self.pending.is_empty() && self.busy.is_empty() => budget.force_hold(bytes),
                None => {
                    // No room in the poller's batch memory: read nothing more until there is.
                    self.stalled = Some(waiting);
                    return false;
                }
            };
            waiting.held = Some(held);
        }
        self.pending_bytes += waiting.record.size();
        self.pending.push_back(waiting);
        true
    }

    /// Commits as far as every record before is resolved.
    fn report(&self, frontier: &Mutex<Frontier>) {
        let next = frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner).advanced();
        if let Some(next) = next {
            self.run.commit(self.partition, next);
        }
    }

    /// The next batch to send: the oldest waiting records whose keys are free, in offset order,
    /// up to `BatchSize` and the payload limit, once full or once the oldest has waited out the
    /// window (at once when `now`).
    fn plan(&mut self, now: bool) -> Plan {
        let limits = self.run.spec.limits;
        // First look: is a batch due, and from when?
        let mut blocked: HashSet<u64> = HashSet::new();
        let (mut eligible, mut bytes, mut oldest) = (0usize, 0usize, None::<Instant>);
        for w in &self.pending {
            if self.busy.contains(&w.key) || blocked.contains(&w.key) {
                continue;
            }
            if w.oversized.is_some() {
                if eligible == 0 {
                    // Goes alone, at once.
                    eligible = limits.max_records;
                    oldest = Some(w.arrived);
                    break;
                }
                blocked.insert(w.key);
                continue;
            }
            eligible += 1;
            bytes += w.record.size() + 1;
            oldest = Some(oldest.map_or(w.arrived, |o| o.min(w.arrived)));
            if eligible >= limits.max_records || bytes >= limits.max_payload_bytes {
                break;
            }
        }
        let Some(oldest) = oldest else { return Plan::Nothing };
        let full = eligible >= limits.max_records || bytes >= limits.max_payload_bytes;
        let due_at = oldest + limits.window;
        if !(now || full || limits.window.is_zero() || due_at <= Instant::now()) {
            return Plan::WaitUntil(due_at);
        }
        // Then take it out of the buffer, in one pass.
        let spec = self.run.spec;
        let mut payload = Payload::new(spec.envelope.clone());
        let (mut offsets, mut keys) = (Vec::new(), Vec::new());
        let mut blocked: HashSet<u64> = HashSet::new();
        let mut kept = VecDeque::with_capacity(self.pending.len());
        let mut taking = true;
        let mut oversized = None;
        let mut batch_held: Option<Held> = None;
        for w in self.pending.drain(..) {
            let free = taking && !self.busy.contains(&w.key) && !blocked.contains(&w.key);
            if !free {
                kept.push_back(w);
                continue;
            }
            if let Some(record) = &w.oversized {
                if payload.is_empty() {
                    oversized = Some((record.clone(), w.key));
                    self.pending_bytes -= w.record.size();
                    taking = false;
                    continue;
                }
                blocked.insert(w.key);
                kept.push_back(w);
                continue;
            }
            if payload.len() >= limits.max_records
                || payload.size_with(&spec.topic, &w.record) > limits.max_payload_bytes
            {
                taking = false;
                kept.push_back(w);
                continue;
            }
            let Waiting { record, key, held, .. } = w;
            self.pending_bytes -= record.size();
            offsets.push(record.offset);
            if !keys.contains(&key) {
                keys.push(key);
            }
            if let Some(held) = held {
                match batch_held.as_mut() {
                    Some(all) => all.merge(held),
                    None => batch_held = Some(held),
                }
            }
            payload.push(&spec.topic, record);
        }
        self.pending = kept;
        if let Some((record, key)) = oversized {
            self.busy.insert(key);
            return Plan::Taken(Taken::Oversized { record, key });
        }
        let (Some(&first_offset), Some(&last_offset)) = (offsets.first(), offsets.last()) else {
            return Plan::Nothing;
        };
        self.busy.extend(keys.iter().copied());
        let batch =
            Batch { partition: self.partition, payload, first_offset, last_offset, filtered: 0, held: batch_held };
        Plan::Taken(Taken::Batch { batch, offsets, keys })
    }

    fn start<'f>(&self, taken: Taken, frontier: &'f Mutex<Frontier>) -> InFlight<'f>
    where
        'r: 'f,
        'a: 'f,
    {
        let run = self.run;
        match taken {
            Taken::Batch { batch, offsets, keys } => Box::pin(async move {
                let partition = batch.partition;
                let resolved = |next: i64| {
                    let mut f = frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    f.resolve(&offsets, next);
                    if let Some(next) = f.advanced() {
                        run.commit(partition, next);
                    }
                };
                let result = run.batch_reporting(batch, &resolved).await;
                (keys, result)
            }),
            Taken::Oversized { record, key } => Box::pin(async move {
                let (partition, offsets) = (record.partition, vec![record.offset]);
                let resolved = |next: i64| {
                    let mut f = frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    f.resolve(&offsets, next);
                    if let Some(next) = f.advanced() {
                        run.commit(partition, next);
                    }
                };
                let result = run.oversized_reporting(record, &resolved).await;
                (vec![key], result)
            }),
        }
    }
}

/// Tells keys apart; no key (`None`) is a key of its own, distinct from the empty key.
fn key_hash(key: Option<&[u8]>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backoffs;
    use crate::delivery::batch::BatchLimits;
    use crate::delivery::checkpoint::{Checkpoint, CheckpointError};
    use crate::delivery::event::{Envelope, EventSource};
    use crate::delivery::fate::FatePolicy;
    use crate::delivery::guard::LeaseGuard;
    use crate::delivery::invoke::{InvokeError, InvokeOutcome};
    use crate::delivery::partition::consume;
    use crate::delivery::record::{KafkaRecord, TimestampType};
    use crate::delivery::worker::{Fate, WorkerSpec};
    use crate::testing::{MemoryCheckpoint, MemorySource};
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    fn record(offset: i64, key: &str) -> KafkaRecord {
        KafkaRecord {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            timestamp_ms: 1_000,
            timestamp_type: TimestampType::CreateTime,
            key: Some(key.as_bytes().to_vec()),
            value: Some(offset.to_string().into_bytes()),
            headers: vec![],
        }
    }

    fn spec(max_records: usize, parallelization: usize, policy: FatePolicy) -> WorkerSpec {
        WorkerSpec {
            mapping: Arc::from("m"),
            function: Arc::from("f"),
            topic: Arc::from("t"),
            envelope: Arc::new(Envelope::new(&EventSource::SelfManaged, "k:9092")),
            limits: BatchLimits { max_records, window: Duration::ZERO, ..BatchLimits::default() },
            guard: Arc::new(LeaseGuard::unconditional()),
            progress: Arc::default(),
            metrics: Arc::default(),
            fate: Arc::new(Fate { policy, ..Fate::default() }),
            parallelization,
            gate: None,
            budget: None,
        }
    }

    fn retry() -> Backoffs {
        Backoffs { base: Duration::from_millis(50), cap: Duration::from_secs(1) }
    }

    /// What the function saw: every invoke's offsets, which offsets it has done, which keys are in
    /// flight, and every breach of the rules the dispatcher promises.
    #[derive(Debug, Default)]
    struct Ledger {
        keys: HashMap<i64, String>,
        invokes: Vec<Vec<i64>>,
        done: std::collections::BTreeSet<i64>,
        in_flight: HashMap<String, usize>,
        most_in_flight: usize,
        now_in_flight: usize,
        breaches: Vec<String>,
    }

    impl Ledger {
        fn start(&mut self, offsets: &[i64]) {
            self.invokes.push(offsets.to_vec());
            self.now_in_flight += 1;
            self.most_in_flight = self.most_in_flight.max(self.now_in_flight);
            let mut keys: Vec<&String> = offsets.iter().map(|o| &self.keys[o]).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                if self.in_flight.insert(key.clone(), 1).is_some() {
                    self.breaches.push(format!("key {key} in two batches at once ({offsets:?})"));
                }
            }
            // Every earlier record of each key is done, or earlier in this batch.
            for (i, o) in offsets.iter().enumerate() {
                let key = &self.keys[o];
                let waiting = self
                    .keys
                    .iter()
                    .filter(|(e, k)| *e < o && *k == key && !self.done.contains(*e) && !offsets[..i].contains(*e))
                    .count();
                if waiting > 0 {
                    self.breaches
                        .push(format!("offset {o} (key {key}) sent before {waiting} earlier record(s) of its key"));
                }
            }
        }

        fn end(&mut self, offsets: &[i64], done_until: usize) {
            self.now_in_flight -= 1;
            for o in offsets {
                self.in_flight.remove(&self.keys[o]);
            }
            self.done.extend(&offsets[..done_until]);
        }
    }

    /// A function that takes `invoke_ms` (or a random 10–200 ms), and with `flaky` fails whole
    /// batches or part of them at random.
    #[derive(Debug)]
    struct Function {
        ledger: Arc<Mutex<Ledger>>,
        invoke_ms: Option<u64>,
        flaky: Option<Mutex<fastrand::Rng>>,
    }

    impl Invoker for Function {
        async fn invoke(&self, _function: &str, payload: bytes::Bytes) -> Result<InvokeOutcome, InvokeError> {
            let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let offsets: Vec<i64> =
                event["records"]["t-0"].as_array().unwrap().iter().map(|r| r["offset"].as_i64().unwrap()).collect();
            self.ledger.lock().unwrap().start(&offsets);
            let (ms, fate) = match &self.flaky {
                Some(rng) => {
                    let mut rng = rng.lock().unwrap();
                    (self.invoke_ms.unwrap_or_else(|| rng.u64(10..200)), rng.u32(0..10))
                }
                None => (self.invoke_ms.unwrap_or(100), 9),
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let (done, outcome) = match fate {
                0..=2 => (0, InvokeOutcome::FunctionError { kind: "Unhandled".into(), body: "{}".into() }),
                3 | 4 => {
                    let at = offsets.len() / 2;
                    let body = format!(
                        r#"{{"batchItemFailures":[{{"itemIdentifier":{{"partition":"t-0","offset":{}}}}}]}}"#,
                        offsets[at]
                    );
                    (at, InvokeOutcome::Success { body: body.into() })
                }
                _ => (offsets.len(), InvokeOutcome::Success { body: "null".into() }),
            };
            self.ledger.lock().unwrap().end(&offsets, done);
            Ok(outcome)
        }
    }

    /// Checks at every commit that nothing below it is undone.
    #[derive(Debug, Clone)]
    struct Checked {
        ledger: Arc<Mutex<Ledger>>,
        inner: MemoryCheckpoint,
    }

    impl Checkpoint for Checked {
        async fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, CheckpointError> {
            self.inner.committed(partitions).await
        }

        async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), CheckpointError> {
            {
                let mut ledger = self.ledger.lock().unwrap();
                if let Some(&next) = offsets.get(&0) {
                    let undone = (0..next).filter(|o| !ledger.done.contains(o)).count();
                    if undone > 0 {
                        ledger.breaches.push(format!("committed {next} with {undone} record(s) below it undone"));
                    }
                }
            }
            self.inner.commit(offsets).await
        }
    }

    async fn deliver(records: Vec<KafkaRecord>, spec: &WorkerSpec, function: Function) -> (Arc<Mutex<Ledger>>, i64) {
        let ledger = function.ledger.clone();
        ledger.lock().unwrap().keys =
            records.iter().map(|r| (r.offset, String::from_utf8(r.key.clone().unwrap()).unwrap())).collect();
        let checkpoint = Checked { ledger: ledger.clone(), inner: MemoryCheckpoint::default() };
        let report = consume(
            spec,
            MemorySource::ending_after(records),
            checkpoint,
            Arc::new(function),
            retry(),
            &CancellationToken::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        (ledger, report.committed.get(&0).copied().unwrap_or(-1))
    }

    #[tokio::test(start_paused = true)]
    async fn ten_batches_in_flight_deliver_ten_times_faster_with_keys_in_order() {
        // 1,000 records over 100 keys, batches of 10, a function taking 100 ms.
        let records: Vec<KafkaRecord> = (0..1000).map(|o| record(o, &format!("k{}", o % 100))).collect();
        let mut elapsed = Vec::new();
        for parallel in [1, 10] {
            let function = Function { ledger: Arc::default(), invoke_ms: Some(100), flaky: None };
            let start = tokio::time::Instant::now();
            let (ledger, committed) =
                deliver(records.clone(), &spec(10, parallel, FatePolicy::default()), function).await;
            elapsed.push(start.elapsed());
            let ledger = ledger.lock().unwrap();
            assert_eq!(committed, 1000);
            assert_eq!(ledger.done.len(), 1000);
            assert_eq!(ledger.invokes.len(), 100, "every batch full, each sent once");
            assert_eq!(ledger.most_in_flight, parallel);
            assert!(ledger.breaches.is_empty(), "{:?}", ledger.breaches);
        }
        assert_eq!(elapsed[0], Duration::from_secs(10));
        assert!(elapsed[1] <= Duration::from_millis(1250), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_waits_while_other_keys_go_ahead() {
        // Key "hot" has every other record: its records queue behind each other, the rest overtake.
        let records: Vec<KafkaRecord> =
            (0..40).map(|o| record(o, &if o % 2 == 0 { "hot".to_owned() } else { format!("k{o}") })).collect();
        let function = Function { ledger: Arc::default(), invoke_ms: Some(100), flaky: None };
        let (ledger, committed) = deliver(records, &spec(4, 4, FatePolicy::default()), function).await;
        let ledger = ledger.lock().unwrap();
        assert_eq!(committed, 40);
        assert!(ledger.breaches.is_empty(), "{:?}", ledger.breaches);
        // The first batch holds "hot" twice (in order, in one batch is fine); the next ones, sent
        // while it is in flight, hold no "hot".
        assert_eq!(ledger.invokes[0], [0, 1, 2, 3]);
        assert_eq!(ledger.invokes[1], [5, 7, 9, 11]);
        assert!(ledger.most_in_flight == 4);
    }

    #[tokio::test(start_paused = true)]
    async fn per_key_order_and_no_loss_under_random_failures_retries_splits_and_partial_responses() {
        for seed in 0..8 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let records: Vec<KafkaRecord> = (0..400).map(|o| record(o, &format!("k{}", rng.u32(0..12)))).collect();
            let function = Function {
                ledger: Arc::default(),
                invoke_ms: None,
                flaky: Some(Mutex::new(fastrand::Rng::with_seed(seed + 100))),
            };
            let policy =
                FatePolicy { max_retries: None, max_age: None, bisect: seed % 2 == 0, partial_responses: true };
            let (ledger, committed) = deliver(records, &spec(8, 5, policy), function).await;
            let ledger = ledger.lock().unwrap();
            assert!(ledger.breaches.is_empty(), "seed {seed}: {:?}", ledger.breaches);
            assert_eq!(ledger.done.len(), 400, "seed {seed}: records never delivered");
            assert_eq!(committed, 400, "seed {seed}");
            assert!(ledger.most_in_flight > 1, "seed {seed}: never concurrent");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_lets_batches_in_flight_finish_and_commits_only_below_what_is_undone() {
        let records: Vec<KafkaRecord> = (0..100).map(|o| record(o, &format!("k{}", o % 15))).collect();
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        ledger.lock().unwrap().keys =
            records.iter().map(|r| (r.offset, String::from_utf8(r.key.clone().unwrap()).unwrap())).collect();
        let function = Arc::new(Function { ledger: ledger.clone(), invoke_ms: Some(1_000), flaky: None });
        let checkpoint = Checked { ledger: ledger.clone(), inner: MemoryCheckpoint::default() };
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            stopper.cancel();
        });
        let report = consume(
            &spec(5, 3, FatePolicy::default()),
            MemorySource::idle_after(records),
            checkpoint,
            function,
            retry(),
            &stop,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let ledger = ledger.lock().unwrap();
        assert!(ledger.breaches.is_empty(), "{:?}", ledger.breaches);
        // Three rounds of three batches (the third started before the stop, and finished).
        assert_eq!(ledger.invokes.len(), 9);
        assert_eq!(ledger.done.len(), 45);
        assert_eq!(report.committed, BTreeMap::from([(0, 45)]));
    }

    /// The poller's batch memory bounds a keyed partition's read-ahead and batches too.
    #[tokio::test(start_paused = true)]
    async fn the_batch_memory_bounds_read_ahead_and_batches_in_flight() {
        #[derive(Debug)]
        struct Watching(Function, Arc<crate::delivery::budget::Budget>, Mutex<usize>);
        impl Invoker for Watching {
            async fn invoke(&self, function: &str, payload: bytes::Bytes) -> Result<InvokeOutcome, InvokeError> {
                {
                    let mut most = self.2.lock().unwrap();
                    *most = (*most).max(self.1.used());
                }
                self.0.invoke(function, payload).await
            }
        }
        let records: Vec<KafkaRecord> = (0..60).map(|o| record(o, &format!("k{o}"))).collect();
        let one = crate::delivery::event::encode_record(&records[0]).size();
        let budget = crate::delivery::budget::Budget::new(one * 6);
        let mut s = spec(4, 4, FatePolicy::default());
        s.budget = Some(budget.clone());
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        ledger.lock().unwrap().keys =
            records.iter().map(|r| (r.offset, String::from_utf8(r.key.clone().unwrap()).unwrap())).collect();
        let function = Function { ledger: ledger.clone(), invoke_ms: Some(100), flaky: None };
        let watching = Arc::new(Watching(function, budget.clone(), Mutex::new(0)));
        let checkpoint = Checked { ledger: ledger.clone(), inner: MemoryCheckpoint::default() };
        let never = CancellationToken::new();
        let report =
            consume(&s, MemorySource::ending_after(records), checkpoint, watching.clone(), retry(), &never, &never)
                .await
                .unwrap();
        assert_eq!(report.committed, BTreeMap::from([(0, 60)]));
        let ledger = ledger.lock().unwrap();
        assert!(ledger.breaches.is_empty(), "{:?}", ledger.breaches);
        assert_eq!(ledger.done.len(), 60);
        // Never more than the budget held at once.
        assert!(*watching.2.lock().unwrap() <= one * 6, "budget passed: {}", watching.2.lock().unwrap());
        assert!(ledger.most_in_flight >= 2, "still concurrent");
        assert_eq!(budget.used(), 0, "everything given back");
    }

    #[test]
    fn the_frontier_is_the_lowest_unresolved_offset() {
        let mut f = Frontier::default();
        assert_eq!(f.advanced(), None);
        for o in 0..6 {
            f.read(o, o != 2);
        }
        // 2 was filtered out; batches {0, 3, 5} and {1, 4}.
        f.resolve(&[1, 4], 5);
        assert_eq!(f.advanced(), Some(0));
        f.resolve(&[0, 3, 5], 4);
        assert_eq!(f.advanced(), Some(5));
        assert_eq!(f.advanced(), None, "reported once");
        f.resolve(&[0, 3, 5], 6);
        assert_eq!(f.advanced(), Some(6));
        f.read(6, false);
        assert_eq!(f.advanced(), Some(7));
    }
}
