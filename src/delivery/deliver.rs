//! One batch to its fate: invoke, read the answer, then retry, split or give up as
//! [`super::fate`] decides, store what was given up in the on-failure destination, and hand the
//! committer each offset once everything before it is done.
//!
//! A batch is worked as a queue of pieces (ranges of its records, in offset order); only the
//! front piece is ever in flight. A piece is resolved when its invoke succeeded, or when it was
//! given up and its failure record stored (or, without a destination, dropped with a log line
//! and the `dropped` metric). After each resolved piece the offset of the next piece's first
//! record (or the batch's end) is committed: nothing is committed past records that are neither
//! delivered nor stored. A destination that cannot be written is retried with backoff, holding
//! the partition, until it can.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::batch::{Batch, OversizedRecord};
use super::checkpoint::CommitSender;
use super::destination::{FailedRecord, GivenUp, record_key};
use super::event::{EncodedRecord, Payload};
use super::fate::{
    Condition, FailureRecord, FatePolicy, KafkaBatchInfo, Next, RecordsInfo, RequestContext, Response, ResponseContext,
    read_response, rfc3339_ms,
};
use super::invoke::{InvokeError, InvokeOutcome, Invoker};
use super::metrics::MappingMetrics;
use super::policy::{Disposition, invoke_disposition};
use super::worker::{WorkerError, WorkerSpec};
use crate::backoff::Backoff;
use crate::config::Backoffs;

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every record delivered or given up; the batch's end was committed.
    Resolved,
    /// Stopped, abandoned or the lease was lost before the batch was resolved: what is
    /// unresolved was not committed.
    Stopped,
}

/// What one worker needs to run batches.
#[derive(Debug)]
pub struct Run<'a, I> {
    pub spec: &'a WorkerSpec,
    pub invoker: &'a Arc<I>,
    pub commits: &'a CommitSender,
    pub retry: Backoffs,
    pub stop: &'a CancellationToken,
    pub abandon: &'a CancellationToken,
}

#[derive(Debug)]
struct Piece {
    range: Range<usize>,
    retries: u32,
    invokes: u32,
    /// Too old to be sent: give up at once.
    expired: bool,
    /// The last invoke's answer.
    response: Option<ResponseContext>,
}

impl Piece {
    const fn new(range: Range<usize>, invokes: u32, response: Option<ResponseContext>) -> Self {
        Self { range, retries: 0, invokes, expired: false, response }
    }
}

enum Attempt {
    Delivered,
    /// The function reported this many records at the start of the piece done.
    Progress(usize),
    Failed {
        function_error: bool,
        error: String,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl<I: Invoker> Run<'_, I> {
    /// Runs `batch` until it is resolved or the worker stops.
    ///
    /// # Errors
    /// An Invoke API error that stops the mapping (the function is gone, access denied).
    pub async fn batch(&self, batch: Batch) -> Result<Ended, WorkerError> {
        let partition = batch.partition;
        self.batch_reporting(batch, &|next| self.commit(partition, next)).await
    }

    /// [`Run::batch`], telling `resolved` instead of the committer each time every record of the
    /// batch before an offset is resolved (key-ordered batches are not contiguous: their
    /// dispatcher works out what may be committed).
    ///
    /// # Errors
    /// As [`Run::batch`].
    pub async fn batch_reporting(&self, batch: Batch, resolved: &(dyn Fn(i64) + Sync)) -> Result<Ended, WorkerError> {
        let spec = self.spec;
        let fate = &*spec.fate;
        let whole = batch.payload.finish();
        let Some((topic, partition, records)) = batch.payload.partitions().next() else {
            resolved(batch.last_offset + 1);
            return Ok(Ended::Resolved);
        };
        let key = format!("{topic}-{partition}");
        let end = batch.last_offset + 1;
        let mut pieces = VecDeque::from([Piece::new(0..records.len(), 0, None)]);
        let mut backoff = Backoff::new(self.retry.base, self.retry.cap);
        let started = tokio::time::Instant::now();
        while let Some(piece) = pieces.front_mut() {
            if fate.policy.max_age.is_some() && !piece.expired {
                let now = now_ms();
                let runs = runs_by_age(&records[piece.range.clone()], |r| fate.policy.expired(now, r.timestamp_ms));
                if runs.len() > 1 || runs.first().is_some_and(|(_, expired)| *expired) {
                    let base = piece.range.start;
                    let (invokes, response, retries) = (piece.invokes, piece.response.clone(), piece.retries);
                    pieces.pop_front();
                    for (range, expired) in runs.into_iter().rev() {
                        let mut p = Piece::new(base + range.start..base + range.end, invokes, response.clone());
                        (p.expired, p.retries) = (expired, retries);
                        pieces.push_front(p);
                    }
                    continue;
                }
            }
            if piece.expired {
                let Some(piece) = pieces.pop_front() else { break };
                if self.give_up(&key, records, &piece, Condition::RecordAgeExceeded, &whole).await? == Ended::Stopped {
                    return Ok(Ended::Stopped);
                }
                resolved(next_to_commit(records, &pieces, end));
                continue;
            }
            if !spec.guard.is_valid() {
                warn!(mapping = %spec.mapping, partition, "Lease no longer held; stopping this partition without invoking.");
                return Ok(Ended::Stopped);
            }
            let range = piece.range.clone();
            let body =
                if range == (0..records.len()) { whole.clone() } else { self.body(topic, &records[range.clone()]) };
            // A slot of the mapping's MaximumConcurrency, held until the invoke cannot be
            // running any more (through an unanswered invoke's wait).
            let slot = match &spec.gate {
                None => None,
                Some(gate) => tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return Ok(Ended::Stopped),
                    () = self.abandon.cancelled() => return Ok(Ended::Stopped),
                    slot = gate.acquire() => Some(slot),
                },
            };
            if slot.is_some() && !spec.guard.is_valid() {
                warn!(mapping = %spec.mapping, partition, "Lease no longer held; stopping this partition without invoking.");
                return Ok(Ended::Stopped);
            }
            piece.invokes += 1;
            // Until answered, the function may be running it: a hand-over that abandons it
            // fences the lease for that long (never two invocations of a partition at once).
            spec.progress.invoke_sent(fate.unanswered_wait);
            let result = tokio::select! {
                biased;
                () = self.abandon.cancelled() => return Ok(Ended::Stopped),
                result = self.invoker.invoke(&spec.function, body.clone()) => result,
            };
            if !matches!(result, Err(InvokeError::Unanswered { .. })) {
                spec.progress.invoke_answered();
            }
            let attempt = match result {
                Ok(outcome) => read_outcome(outcome, piece, &fate.policy, &key, &records[range.clone()]),
                Err(error) => match invoke_disposition(&error) {
                    Disposition::Stop(reason) => {
                        error!(mapping = %spec.mapping, function = %spec.function, partition, error = %error, "Cannot invoke the function; stopping this mapping.");
                        return Err(WorkerError::Invoke { reason, error });
                    }
                    Disposition::Retry => {
                        if let InvokeError::Unanswered { .. } = &error {
                            // Never two invocations of a partition at once: wait until this one
                            // cannot be running before sending anything of the partition again.
                            // Only abandoning (the poller's last seconds) cuts the wait short.
                            let wait = fate.unanswered_wait;
                            warn!(mapping = %spec.mapping, partition, error = %error, wait_ms = wait.as_millis(), "Invoke unanswered; the function may still be running, waiting before sending again.");
                            tokio::select! {
                                biased;
                                () = self.abandon.cancelled() => return Ok(Ended::Stopped),
                                () = tokio::time::sleep(wait) => {}
                            }
                            // It cannot be running any more.
                            spec.progress.invoke_answered();
                        }
                        piece.response = Some(api_error_context(&error));
                        Attempt::Failed { function_error: false, error: error.to_string() }
                    }
                },
            };
            drop(slot);
            let metrics = &spec.metrics;
            match attempt {
                Attempt::Delivered => {
                    let n = range.len() as u64;
                    MappingMetrics::add(&metrics.invoked, n);
                    MappingMetrics::add(&metrics.batches, 1);
                    metrics.invoke_ms.record(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                    metrics.batch_records.record(n);
                    metrics.batch_bytes.record(body.len() as u64);
                    spec.progress.batches.fetch_add(1, Ordering::Relaxed);
                    spec.progress.note_attempt(None);
                    metrics.set_result("OK");
                    pieces.pop_front();
                    backoff.reset();
                    resolved(next_to_commit(records, &pieces, end));
                }
                Attempt::Progress(done) => {
                    let at = range.start + done;
                    MappingMetrics::add(&metrics.invoked, done as u64);
                    MappingMetrics::add(&metrics.failed_invoke, (range.end - at) as u64);
                    let offset = records[at].offset;
                    debug!(mapping = %spec.mapping, partition, offset, "Partial batch response: sending again from the reported offset.");
                    // Records before `at` are done: the rest is a new, smaller batch.
                    (piece.range.start, piece.retries) = (at, 0);
                    backoff.reset();
                    resolved(offset);
                }
                Attempt::Failed { function_error, error } => {
                    spec.progress.note_attempt(Some(&error));
                    // Shown on the mapping until a batch is delivered again (review #16a: a
                    // function failing forever showed nothing).
                    metrics.set_result(&format!("PROBLEM: function call failed: {error}"));
                    MappingMetrics::add(&metrics.failed_attempts, 1);
                    MappingMetrics::add(&metrics.failed_invoke, range.len() as u64);
                    let (first_offset, last_offset) = (records[range.start].offset, records[range.end - 1].offset);
                    match fate.policy.after_failure(range.len(), piece.retries, function_error) {
                        Next::Split => {
                            let mid = range.start + range.len() / 2;
                            let (invokes, response) = (piece.invokes, piece.response.clone());
                            warn!(mapping = %spec.mapping, partition, first_offset, last_offset, error = %error, "Batch failed; splitting it in two (BisectBatchOnFunctionError).");
                            pieces.pop_front();
                            pieces.push_front(Piece::new(mid..range.end, invokes, response.clone()));
                            pieces.push_front(Piece::new(range.start..mid, invokes, response));
                        }
                        Next::Retry => {
                            piece.retries += 1;
                            let delay = backoff.next_delay();
                            warn!(
                                mapping = %spec.mapping, partition, first_offset, last_offset, attempt = piece.invokes,
                                retry_in_ms = delay.as_millis(), error = %error, "Batch failed; retrying it."
                            );
                            tokio::select! {
                                biased;
                                () = self.stop.cancelled() => return Ok(Ended::Stopped),
                                () = tokio::time::sleep(delay) => {}
                            }
                        }
                        Next::GiveUp(condition) => {
                            let Some(piece) = pieces.pop_front() else { break };
                            warn!(
                                mapping = %spec.mapping, partition, first_offset, last_offset, attempts = piece.invokes,
                                condition = condition.as_str(), error = %error, "Batch failed; giving it up."
                            );
                            if self.give_up(&key, records, &piece, condition, &whole).await? == Ended::Stopped {
                                return Ok(Ended::Stopped);
                            }
                            backoff.reset();
                            resolved(next_to_commit(records, &pieces, end));
                        }
                    }
                }
            }
        }
        Ok(Ended::Resolved)
    }

    /// A record too large to be invoked even alone: to the destination, then past it.
    ///
    /// # Errors
    /// Never today; kept for symmetry with [`Run::batch`].
    pub async fn oversized(&self, record: OversizedRecord) -> Result<Ended, WorkerError> {
        let partition = record.partition;
        self.oversized_reporting(record, &|next| self.commit(partition, next)).await
    }

    /// [`Run::oversized`], telling `resolved` instead of the committer.
    ///
    /// # Errors
    /// As [`Run::oversized`].
    pub async fn oversized_reporting(
        &self,
        record: OversizedRecord,
        resolved: &(dyn Fn(i64) + Sync),
    ) -> Result<Ended, WorkerError> {
        let spec = self.spec;
        let info = RecordsInfo::new((record.offset, record.timestamp_ms), (record.offset, record.timestamp_ms));
        let key = format!("{}-{}", spec.topic, record.partition);
        let given_up = GivenUp {
            record: self.failure_record(
                Condition::MaximumPayloadSizeExceeded,
                0,
                None,
                1,
                record.payload_bytes,
                key,
                info,
            ),
            payload: Bytes::new(),
            records: vec![FailedRecord {
                topic: spec.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key.clone(),
                event: None,
            }],
        };
        warn!(
            mapping = %spec.mapping, topic = %spec.topic, partition = record.partition, offset = record.offset,
            payload_bytes = record.payload_bytes, "Record too large for a synchronous invoke even alone (MaximumPayloadSizeExceeded)."
        );
        MappingMetrics::add(&spec.metrics.oversized, 1);
        if self.store(&given_up).await == Ended::Stopped {
            return Ok(Ended::Stopped);
        }
        resolved(record.offset + 1);
        Ok(Ended::Resolved)
    }

    fn body(&self, topic: &str, records: &[EncodedRecord]) -> Bytes {
        let mut payload = Payload::new(self.spec.envelope.clone());
        let topic: Arc<str> = Arc::from(topic);
        for record in records {
            payload.push(&topic, record.clone());
        }
        payload.finish()
    }

    pub(super) fn commit(&self, partition: i32, next_offset: i64) {
        self.spec.progress.position.store(next_offset, Ordering::Relaxed);
        self.commits.delivered(partition, next_offset);
    }

    #[allow(clippy::too_many_arguments)]
    fn failure_record(
        &self,
        condition: Condition,
        invokes: u32,
        response: Option<ResponseContext>,
        batch_size: usize,
        payload_size: usize,
        key: String,
        info: RecordsInfo,
    ) -> FailureRecord {
        let fate = &*self.spec.fate;
        FailureRecord {
            request_context: RequestContext {
                request_id: uuid::Uuid::new_v4().to_string(),
                function_arn: self.spec.function.to_string(),
                condition,
                approximate_invoke_count: invokes,
            },
            response_context: response,
            version: "1.0",
            timestamp: rfc3339_ms(now_ms()),
            kafka_batch_info: KafkaBatchInfo {
                batch_size,
                event_source_arn: fate.event_source_arn.clone(),
                bootstrap_servers: fate.bootstrap_servers.clone(),
                payload_size,
                records_info: [(key, info)].into(),
            },
        }
    }

    /// Gives up `piece`: its failure record to the destination (retried until stored), or dropped.
    async fn give_up(
        &self,
        key: &str,
        records: &[EncodedRecord],
        piece: &Piece,
        condition: Condition,
        whole: &Bytes,
    ) -> Result<Ended, WorkerError> {
        let spec = self.spec;
        let part = &records[piece.range.clone()];
        let (Some(first), Some(last)) = (part.first(), part.last()) else { return Ok(Ended::Resolved) };
        let payload = if piece.range == (0..records.len()) { whole.clone() } else { self.body(&spec.topic, part) };
        let info = RecordsInfo::new((first.offset, first.timestamp_ms), (last.offset, last.timestamp_ms));
        let record = self.failure_record(
            condition,
            piece.invokes,
            piece.response.clone(),
            part.len(),
            payload.len(),
            key.to_owned(),
            info,
        );
        let failed = part
            .iter()
            .map(|r| FailedRecord {
                topic: spec.topic.to_string(),
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                key: record_key(&r.json),
                event: Some(self.body(&spec.topic, std::slice::from_ref(r))),
            })
            .collect();
        Ok(self.store(&GivenUp { record, payload, records: failed }).await)
    }

    /// Stores `given_up`, retrying with backoff while the destination cannot be written.
    async fn store(&self, given_up: &GivenUp) -> Ended {
        let spec = self.spec;
        let n = given_up.records.len() as u64;
        let info = &given_up.record.kafka_batch_info.records_info;
        let (first, last) = info
            .values()
            .next()
            .map_or((String::new(), String::new()), |i| (i.first_record_offset.clone(), i.last_record_offset.clone()));
        let condition = given_up.record.request_context.condition.as_str();
        let Some(destination) = &spec.fate.on_failure else {
            warn!(mapping = %spec.mapping, partition_key = ?info.keys().next(), first_offset = %first, last_offset = %last, records = n, condition, "Records given up with no on-failure destination; dropped.");
            MappingMetrics::add(&spec.metrics.dropped, n);
            spec.metrics
                .set_result(&format!("PROBLEM: records given up ({condition}) and dropped: offsets {first} to {last}"));
            return Ended::Resolved;
        };
        let mut backoff = Backoff::new(self.retry.base, self.retry.cap);
        loop {
            if !spec.guard.is_valid() {
                return Ended::Stopped;
            }
            let stored = tokio::select! {
                biased;
                () = self.abandon.cancelled() => return Ended::Stopped,
                stored = destination.store(given_up) => stored,
            };
            match stored {
                Ok(()) => {
                    MappingMetrics::add(&spec.metrics.on_failure_delivered, n);
                    spec.metrics.set_result(&format!(
                        "PROBLEM: records given up ({condition}) and sent to the on-failure destination: offsets {first} to {last}"
                    ));
                    return Ended::Resolved;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(mapping = %spec.mapping, first_offset = %first, last_offset = %last, error = %e, retry_in_ms = delay.as_millis(), "Cannot store given-up records; the partition waits.");
                    spec.metrics.set_result(&format!("PROBLEM: {e}"));
                    tokio::select! {
                        biased;
                        () = self.stop.cancelled() => return Ended::Stopped,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// What an invoke's answer means for `piece` (its `records`), noting the answer on it.
fn read_outcome(
    outcome: InvokeOutcome,
    piece: &mut Piece,
    policy: &FatePolicy,
    key: &str,
    records: &[EncodedRecord],
) -> Attempt {
    match outcome {
        InvokeOutcome::Success { .. } if !policy.partial_responses => {
            piece.response = Some(response_context(None));
            Attempt::Delivered
        }
        InvokeOutcome::Success { body } => {
            piece.response = Some(response_context(None));
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            match read_response(&body, key, &offsets) {
                Response::Success => Attempt::Delivered,
                Response::RetryFrom(offset) => match offsets.partition_point(|&o| o < offset) {
                    0 => Attempt::Failed {
                        function_error: false,
                        error: format!("the function reported offset {offset}, the first of the batch"),
                    },
                    done => Attempt::Progress(done),
                },
                Response::Invalid(reason) => Attempt::Failed {
                    function_error: false,
                    error: format!("invalid partial batch response: {reason}"),
                },
            }
        }
        InvokeOutcome::FunctionError { kind, body } => {
            // Only the errorType above DEBUG: the body may hold record data.
            debug!(partition = key, body = %String::from_utf8_lossy(&body[..body.len().min(4096)]), "Function error body.");
            let error = format!("function error ({kind}): {}", error_type(&body));
            piece.response = Some(response_context(Some(kind)));
            Attempt::Failed { function_error: true, error }
        }
    }
}

/// Everything before the next piece (or the batch's end) is resolved: the offset to report.
fn next_to_commit(records: &[EncodedRecord], pieces: &VecDeque<Piece>, end: i64) -> i64 {
    pieces.front().map_or(end, |p| records[p.range.start].offset)
}

/// Consecutive runs of `records` that are (or are not) too old, in order.
fn runs_by_age(records: &[EncodedRecord], expired: impl Fn(&EncodedRecord) -> bool) -> Vec<(Range<usize>, bool)> {
    let mut runs: Vec<(Range<usize>, bool)> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let old = expired(record);
        match runs.last_mut() {
            Some((range, e)) if *e == old => range.end = i + 1,
            _ => runs.push((i..i + 1, old)),
        }
    }
    runs
}

fn response_context(function_error: Option<String>) -> ResponseContext {
    ResponseContext { status_code: 200, executed_version: "$LATEST".into(), function_error }
}

fn api_error_context(error: &InvokeError) -> ResponseContext {
    let status_code = match error {
        InvokeError::Throttled { .. } => 429,
        InvokeError::RequestTooLarge { .. } => 413,
        InvokeError::InvalidRequest { status, .. } | InvokeError::Service { status, .. } => *status,
        InvokeError::FunctionNotFound { .. } => 404,
        InvokeError::AccessDenied { .. } => 403,
        InvokeError::Transport { .. } | InvokeError::Unanswered { .. } => 0,
    };
    ResponseContext { status_code, executed_version: "$LATEST".into(), function_error: None }
}

/// The `errorType` of a function error body, which is all that is logged above DEBUG: the body
/// may hold record data.
fn error_type(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error_type)
        .unwrap_or_else(|| "no errorType".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::batch::BatchLimits;
    use crate::delivery::destination::Destination;
    use crate::delivery::destination::DestinationError;
    use crate::delivery::event::{Envelope, EventSource};
    use crate::delivery::filter::Filters;
    use crate::delivery::guard::LeaseGuard;
    use crate::delivery::partition::consume;
    use crate::delivery::record::{KafkaRecord, TimestampType};
    use crate::delivery::worker::Fate;
    use crate::testing::{MemoryCheckpoint, MemorySource};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    #[test]
    fn error_type_only_never_the_message() {
        assert_eq!(error_type(br#"{"errorType":"KeyError","errorMessage":"card 4111"}"#), "KeyError");
        assert_eq!(error_type(b"secret"), "no errorType");
    }

    #[test]
    fn age_runs_keep_order() {
        let rec =
            |offset: i64, ts: i64| EncodedRecord { partition: 0, offset, timestamp_ms: ts, json: vec![], omitted: 0 };
        let records = [rec(0, 1), rec(1, 1), rec(2, 9), rec(3, 1), rec(4, 9)];
        let runs = runs_by_age(&records, |r| r.timestamp_ms < 5);
        assert_eq!(runs, vec![(0..2, true), (2..3, false), (3..4, true), (4..5, false)]);
    }

    type Reply = Box<dyn Fn(&[i64]) -> InvokeOutcome + Send + Sync>;

    /// Answers each invoke with `reply(offsets of the batch)`, recording the offsets.
    struct Scripted {
        calls: Mutex<Vec<Vec<i64>>>,
        reply: Reply,
    }

    impl Invoker for Scripted {
        async fn invoke(&self, _function: &str, payload: Bytes) -> Result<InvokeOutcome, InvokeError> {
            let event: Value = serde_json::from_slice(&payload).unwrap();
            let offsets: Vec<i64> =
                event["records"]["t-0"].as_array().unwrap().iter().map(|r| r["offset"].as_i64().unwrap()).collect();
            self.calls.lock().unwrap().push(offsets.clone());
            Ok((self.reply)(&offsets))
        }
    }

    fn scripted(reply: impl Fn(&[i64]) -> InvokeOutcome + Send + Sync + 'static) -> Arc<Scripted> {
        Arc::new(Scripted { calls: Mutex::default(), reply: Box::new(reply) })
    }

    fn ok() -> InvokeOutcome {
        InvokeOutcome::Success { body: Bytes::from_static(b"null") }
    }

    fn fail() -> InvokeOutcome {
        InvokeOutcome::FunctionError {
            kind: "Unhandled".into(),
            body: Bytes::from_static(br#"{"errorType":"Poison"}"#),
        }
    }

    /// Stores failure records after failing `failures` times.
    #[derive(Debug, Default)]
    struct Recording {
        stored: Mutex<Vec<GivenUp>>,
        failures: Mutex<u32>,
    }

    impl Destination for Recording {
        fn store<'a>(&'a self, given_up: &'a GivenUp) -> futures::future::BoxFuture<'a, Result<(), DestinationError>> {
            Box::pin(async move {
                let mut failures = self.failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(DestinationError { destination: "test".into(), message: "down".into() });
                }
                self.stored.lock().unwrap().push(given_up.clone());
                Ok(())
            })
        }
    }

    fn records(n: i64) -> Vec<KafkaRecord> {
        (0..n)
            .map(|offset| KafkaRecord {
                topic: Arc::from("t"),
                partition: 0,
                offset,
                timestamp_ms: now_ms(),
                timestamp_type: TimestampType::CreateTime,
                key: Some(format!("k{offset}").into_bytes()),
                value: Some(format!("{{\"n\":{offset}}}").into_bytes()),
                headers: vec![],
            })
            .collect()
    }

    fn spec(max_records: usize, fate: Fate) -> WorkerSpec {
        WorkerSpec {
            mapping: Arc::from("m"),
            function: Arc::from("arn:f"),
            topic: Arc::from("t"),
            envelope: Arc::new(Envelope::new(&EventSource::SelfManaged, "k:9092")),
            limits: BatchLimits { max_records, window: Duration::ZERO, ..BatchLimits::default() },
            guard: Arc::new(LeaseGuard::unconditional()),
            progress: Arc::default(),
            metrics: Arc::default(),
            fate: Arc::new(fate),
            parallelization: 1,
            gate: None,
            budget: None,
        }
    }

    fn fate(policy: FatePolicy, destination: Option<Arc<Recording>>) -> Fate {
        Fate {
            policy,
            on_failure: destination.map(|d| d as Arc<dyn Destination>),
            bootstrap_servers: "k:9092".into(),
            ..Fate::default()
        }
    }

    async fn run(spec: &WorkerSpec, records: Vec<KafkaRecord>, invoker: Arc<Scripted>) -> MemoryCheckpoint {
        let checkpoint = MemoryCheckpoint::default();
        let retry = Backoffs { base: Duration::from_millis(10), cap: Duration::from_millis(100) };
        consume(
            spec,
            MemorySource::ending_after(records),
            checkpoint.clone(),
            invoker,
            retry,
            &CancellationToken::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        checkpoint
    }

    fn given_up_offsets(d: &Recording) -> Vec<(String, Vec<i64>)> {
        d.stored
            .lock()
            .unwrap()
            .iter()
            .map(|g| {
                (g.record.request_context.condition.as_str().to_owned(), g.records.iter().map(|r| r.offset).collect())
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn partial_response_redelivers_exactly_from_the_reported_offset() {
        let policy = FatePolicy { partial_responses: true, ..FatePolicy::default() };
        let first = Mutex::new(true);
        let invoker = scripted(move |offsets| {
            if offsets.contains(&2) && std::mem::replace(&mut *first.lock().unwrap(), false) {
                InvokeOutcome::Success {
                    body: Bytes::from_static(br#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":3}},{"itemIdentifier":{"partition":"t-0","offset":2}}]}"#),
                }
            } else {
                ok()
            }
        });
        let s = spec(5, fate(policy, None));
        let checkpoint = run(&s, records(7), invoker.clone()).await;
        assert_eq!(*invoker.calls.lock().unwrap(), vec![vec![0, 1, 2, 3, 4], vec![2, 3, 4], vec![5, 6]]);
        // Commits only ever at resolved points: the reported offset, the batches' ends.
        let commits: Vec<i64> = checkpoint.history().iter().filter_map(|c| c.get(&0).copied()).collect();
        assert!(commits.iter().all(|c| [2, 5, 7].contains(c)), "{commits:?}");
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 7)]));

        // Without ReportBatchItemFailures the body is ignored: the batch succeeded.
        let invoker =
            scripted(|_| InvokeOutcome::Success { body: Bytes::from_static(b"{\"batchItemFailures\":[{}]}") });
        let s = spec(5, fate(FatePolicy::default(), None));
        run(&s, records(5), invoker.clone()).await;
        assert_eq!(invoker.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_partial_response_fails_the_whole_batch() {
        let policy = FatePolicy { partial_responses: true, max_retries: Some(1), ..FatePolicy::default() };
        let invoker = scripted(|_| InvokeOutcome::Success {
            body: Bytes::from_static(br#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":99}}]}"#),
        });
        let dest = Arc::new(Recording::default());
        let s = spec(3, fate(policy, Some(dest.clone())));
        let checkpoint = run(&s, records(3), invoker.clone()).await;
        assert_eq!(invoker.calls.lock().unwrap().len(), 2);
        assert_eq!(given_up_offsets(&dest), vec![("RetryAttemptsExhausted".to_owned(), vec![0, 1, 2])]);
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 3)]));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_limit_gives_up_after_one_plus_n_attempts_then_moves_on() {
        let policy = FatePolicy { max_retries: Some(2), ..FatePolicy::default() };
        let invoker = scripted(|offsets| if offsets.contains(&1) { fail() } else { ok() });
        let dest = Arc::new(Recording::default());
        let s = spec(3, fate(policy, Some(dest.clone())));
        let checkpoint = run(&s, records(6), invoker.clone()).await;
        assert_eq!(*invoker.calls.lock().unwrap(), vec![vec![0, 1, 2], vec![0, 1, 2], vec![0, 1, 2], vec![3, 4, 5]]);
        let stored = dest.stored.lock().unwrap().clone();
        assert_eq!(stored.len(), 1);
        let record = serde_json::to_value(&stored[0].record).unwrap();
        assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(record["requestContext"]["functionArn"], "arn:f");
        assert_eq!(
            record["responseContext"],
            json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
        );
        assert_eq!(record["KafkaBatchInfo"]["batchSize"], 3);
        assert_eq!(record["KafkaBatchInfo"]["recordsInfo"]["t-0"]["firstRecordOffset"], "0");
        assert_eq!(record["KafkaBatchInfo"]["recordsInfo"]["t-0"]["lastRecordOffset"], "2");
        assert_eq!(stored[0].records.iter().map(|r| r.key.clone().unwrap()).collect::<Vec<_>>(), [b"k0", b"k1", b"k2"]);
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 6)]));
        let m = &s.metrics;
        assert_eq!(m.on_failure_delivered.load(Ordering::Relaxed), 3);
        assert_eq!(m.result().as_deref(), Some("OK"));
    }

    #[tokio::test(start_paused = true)]
    async fn bisect_narrows_a_poison_record_down_to_a_batch_of_one() {
        let policy = FatePolicy { max_retries: Some(1), bisect: true, ..FatePolicy::default() };
        let invoker = scripted(|offsets| if offsets.contains(&5) { fail() } else { ok() });
        let dest = Arc::new(Recording::default());
        let s = spec(8, fate(policy, Some(dest.clone())));
        let checkpoint = run(&s, records(8), invoker.clone()).await;
        assert_eq!(
            *invoker.calls.lock().unwrap(),
            vec![
                vec![0, 1, 2, 3, 4, 5, 6, 7],
                vec![0, 1, 2, 3],
                vec![4, 5, 6, 7],
                vec![4, 5],
                vec![4],
                vec![5],
                vec![5],
                vec![6, 7]
            ]
        );
        assert_eq!(given_up_offsets(&dest), vec![("RetryAttemptsExhausted".to_owned(), vec![5])]);
        // Offset 5 was in five invokes: the batch, two halves, itself and its one retry.
        assert_eq!(dest.stored.lock().unwrap()[0].record.request_context.approximate_invoke_count, 5);
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 8)]));
    }

    #[tokio::test(start_paused = true)]
    async fn destination_down_commits_nothing_past_the_given_up_batch_until_it_is_stored() {
        let policy = FatePolicy { max_retries: Some(0), ..FatePolicy::default() };
        let invoker = scripted(|offsets| if offsets.contains(&3) { fail() } else { ok() });
        let dest = Arc::new(Recording { failures: Mutex::new(4), ..Recording::default() });
        let s = spec(3, fate(policy, Some(dest.clone())));
        let checkpoint = run(&s, records(9), invoker.clone()).await;
        assert_eq!(given_up_offsets(&dest), vec![("RetryAttemptsExhausted".to_owned(), vec![3, 4, 5])]);
        let commits: Vec<i64> = checkpoint.history().iter().filter_map(|c| c.get(&0).copied()).collect();
        assert!(commits.iter().all(|&c| c == 3 || c == 6 || c == 9), "{commits:?}");
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 9)]));
        // The batch after it waited for the destination.
        assert_eq!(invoker.calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn old_records_are_given_up_without_an_invoke_and_without_a_destination_dropped() {
        let policy = FatePolicy { max_age: Some(Duration::from_secs(60)), ..FatePolicy::default() };
        let invoker = scripted(|_| ok());
        let mut recs = records(4);
        recs[0].timestamp_ms -= 3_600_000;
        recs[1].timestamp_ms -= 3_600_000;
        let dest = Arc::new(Recording::default());
        let s = spec(4, fate(policy, Some(dest.clone())));
        run(&s, recs.clone(), invoker.clone()).await;
        assert_eq!(*invoker.calls.lock().unwrap(), vec![vec![2, 3]]);
        assert_eq!(given_up_offsets(&dest), vec![("RecordAgeExceeded".to_owned(), vec![0, 1])]);
        assert_eq!(
            serde_json::to_value(&dest.stored.lock().unwrap()[0].record).unwrap()["responseContext"],
            Value::Null
        );

        let s = spec(4, fate(policy, None));
        let checkpoint = run(&s, recs, scripted(|_| ok())).await;
        assert_eq!(s.metrics.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 4)]));
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_record_goes_to_the_destination_with_its_key() {
        let invoker = scripted(|_| ok());
        let mut recs = records(3);
        recs[1].value = Some(vec![b'x'; 7_000_000]);
        let dest = Arc::new(Recording::default());
        let s = spec(10, fate(FatePolicy::default(), Some(dest.clone())));
        let checkpoint = run(&s, recs, invoker.clone()).await;
        assert_eq!(*invoker.calls.lock().unwrap(), vec![vec![0], vec![2]]);
        let stored = dest.stored.lock().unwrap().clone();
        assert_eq!(given_up_offsets(&dest), vec![("MaximumPayloadSizeExceeded".to_owned(), vec![1])]);
        assert_eq!(stored[0].records[0].key.as_deref(), Some(&b"k1"[..]));
        assert!(stored[0].record.response_context.is_none());
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 3)]));
    }

    #[tokio::test(start_paused = true)]
    async fn filtered_out_records_are_committed_and_never_sent() {
        let criteria = json!({"Filters": [{"Pattern": "{\"value\":{\"n\":[{\"numeric\":[\">=\",7]}]}}"}]});
        let invoker = scripted(|_| ok());
        let s = spec(2, Fate { filters: Arc::new(Filters::compile(&criteria).unwrap()), ..Fate::default() });
        let checkpoint = run(&s, records(10), invoker.clone()).await;
        let sent: Vec<i64> = invoker.calls.lock().unwrap().iter().flatten().copied().collect();
        assert_eq!(sent, [7, 8, 9]);
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 10)]));
        assert_eq!(s.metrics.filtered_out.load(Ordering::Relaxed), 7);
        assert_eq!(s.metrics.polled.load(Ordering::Relaxed), 10);
    }

    /// Review finding #19: an invoke whose connection broke after it was sent was sent again at
    /// once, while the function could still be running it.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_invoke_is_not_sent_again_until_it_cannot_be_running() {
        #[derive(Debug)]
        struct FailsOnce {
            error: InvokeError,
            at: Mutex<Vec<tokio::time::Instant>>,
        }
        impl Invoker for FailsOnce {
            async fn invoke(&self, _function: &str, _payload: Bytes) -> Result<InvokeOutcome, InvokeError> {
                let mut at = self.at.lock().unwrap();
                at.push(tokio::time::Instant::now());
                if at.len() == 1 { Err(self.error.clone()) } else { Ok(InvokeOutcome::Success { body: Bytes::new() }) }
            }
        }
        let wait = Duration::from_secs(60);
        for (error, at_least) in [
            (InvokeError::Unanswered { message: "connection reset".into() }, wait),
            (InvokeError::Transport { message: "connection refused".into() }, Duration::ZERO),
        ] {
            let invoker = Arc::new(FailsOnce { error, at: Mutex::default() });
            let s = spec(10, Fate { unanswered_wait: wait, ..Fate::default() });
            let checkpoint = MemoryCheckpoint::default();
            let retry = Backoffs { base: Duration::from_millis(10), cap: Duration::from_millis(100) };
            let never = CancellationToken::new();
            consume(
                &s,
                MemorySource::ending_after(records(3)),
                checkpoint.clone(),
                invoker.clone(),
                retry,
                &never,
                &never,
            )
            .await
            .unwrap();
            let at = invoker.at.lock().unwrap().clone();
            assert_eq!(at.len(), 2);
            let gap = at[1] - at[0];
            assert!(
                gap >= at_least && gap < at_least + Duration::from_secs(1),
                "{:?}: sent again after {gap:?}",
                invoker.error
            );
            assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 3)]));
        }
    }
}
