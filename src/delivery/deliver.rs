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
use super::destination::{Destination, FailedRecord, GivenUp, record_key};
use super::event::{EncodedRecord, Payload};
use super::fate::{
    Condition, FailureRecord, FatePolicy, KafkaBatchInfo, Next, RecordsInfo, RequestContext, Response,
    ResponseContext, read_response, rfc3339_ms,
};
use super::filter::Filters;
use super::invoke::{InvokeError, InvokeOutcome, Invoker};
use super::metrics::MappingMetrics;
use super::partition::{WorkerError, WorkerSpec};
use super::policy::{Disposition, invoke_disposition};
use crate::backoff::Backoff;
use crate::config::Backoffs;

/// A mapping's fate settings, filters and destination, shared by its partitions.
#[derive(Debug, Default)]
pub struct Fate {
    pub policy: FatePolicy,
    pub filters: Arc<Filters>,
    pub on_failure: Option<Arc<dyn Destination>>,
    /// For the failure record's `KafkaBatchInfo`.
    pub event_source_arn: Option<String>,
    pub bootstrap_servers: String,
}

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
    /// The function reported records before this index done.
    Progress(usize),
    Failed { function_error: bool, error: String },
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
        let spec = self.spec;
        let fate = &*spec.fate;
        let whole = batch.payload.finish();
        let Some((topic, partition, records)) = batch.payload.partitions().next() else {
            self.commit(batch.partition, batch.last_offset + 1);
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
                let piece = pieces.pop_front().unwrap_or_else(|| unreachable!());
                if self.give_up(&key, records, &piece, Condition::RecordAgeExceeded, &whole).await? == Ended::Stopped {
                    return Ok(Ended::Stopped);
                }
                self.commit_next(partition, records, &pieces, end);
                continue;
            }
            if !spec.guard.is_valid() {
                warn!(mapping = %spec.mapping, partition, "Lease no longer held; stopping this partition without invoking.");
                return Ok(Ended::Stopped);
            }
            let range = piece.range.clone();
            let body = if range == (0..records.len()) { whole.clone() } else { self.body(topic, &records[range.clone()]) };
            piece.invokes += 1;
            let result = tokio::select! {
                biased;
                () = self.abandon.cancelled() => return Ok(Ended::Stopped),
                result = self.invoker.invoke(&spec.function, body.clone()) => result,
            };
            let attempt = match result {
                Ok(InvokeOutcome::Success { body: response }) => {
                    piece.response = Some(response_context(None));
                    if fate.policy.partial_responses {
                        let offsets: Vec<i64> = records[range.clone()].iter().map(|r| r.offset).collect();
                        match read_response(&response, &key, &offsets) {
                            Response::Success => Attempt::Delivered,
                            Response::RetryFrom(offset) => {
                                let at = range.start + offsets.partition_point(|&o| o < offset);
                                if at > range.start {
                                    Attempt::Progress(at)
                                } else {
                                    Attempt::Failed {
                                        function_error: false,
                                        error: format!("the function reported offset {offset}, the first of the batch"),
                                    }
                                }
                            }
                            Response::Invalid(reason) => Attempt::Failed {
                                function_error: false,
                                error: format!("invalid partial batch response: {reason}"),
                            },
                        }
                    } else {
                        Attempt::Delivered
                    }
                }
                Ok(InvokeOutcome::FunctionError { kind, body }) => {
                    piece.response = Some(response_context(Some(kind.clone())));
                    debug!(mapping = %spec.mapping, partition, body = %String::from_utf8_lossy(&body[..body.len().min(4096)]), "Function error body.");
                    Attempt::Failed { function_error: true, error: format!("function error ({kind}): {}", error_type(&body)) }
                }
                Err(error) => match invoke_disposition(&error) {
                    Disposition::Stop(reason) => {
                        error!(mapping = %spec.mapping, function = %spec.function, partition, error = %error, "Cannot invoke the function; stopping this mapping.");
                        return Err(WorkerError::Invoke { reason, error });
                    }
                    Disposition::Retry => {
                        piece.response = Some(api_error_context(&error));
                        Attempt::Failed { function_error: false, error: error.to_string() }
                    }
                },
            };
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
                    metrics.set_result("OK");
                    pieces.pop_front();
                    backoff.reset();
                    self.commit_next(partition, records, &pieces, end);
                }
                Attempt::Progress(at) => {
                    MappingMetrics::add(&metrics.invoked, (at - range.start) as u64);
                    MappingMetrics::add(&metrics.failed_invoke, (range.end - at) as u64);
                    let offset = records[at].offset;
                    debug!(mapping = %spec.mapping, partition, offset, "Partial batch response: sending again from the reported offset.");
                    // Records before `at` are done: the rest is a new, smaller batch.
                    (piece.range.start, piece.retries) = (at, 0);
                    backoff.reset();
                    self.commit(partition, offset);
                }
                Attempt::Failed { function_error, error } => {
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
                            let piece = pieces.pop_front().unwrap_or_else(|| unreachable!());
                            warn!(
                                mapping = %spec.mapping, partition, first_offset, last_offset, attempts = piece.invokes,
                                condition = condition.as_str(), error = %error, "Batch failed; giving it up."
                            );
                            if self.give_up(&key, records, &piece, condition, &whole).await? == Ended::Stopped {
                                return Ok(Ended::Stopped);
                            }
                            backoff.reset();
                            self.commit_next(partition, records, &pieces, end);
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
        let spec = self.spec;
        let info = RecordsInfo::new((record.offset, record.timestamp_ms), (record.offset, record.timestamp_ms));
        let key = format!("{}-{}", spec.topic, record.partition);
        let given_up = GivenUp {
            record: self.failure_record(Condition::MaximumPayloadSizeExceeded, 0, None, 1, record.payload_bytes, key, info),
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
        error!(
            mapping = %spec.mapping, topic = %spec.topic, partition = record.partition, offset = record.offset,
            payload_bytes = record.payload_bytes, "Record too large for a synchronous invoke even alone (MaximumPayloadSizeExceeded)."
        );
        MappingMetrics::add(&spec.metrics.oversized, 1);
        if self.store(&given_up).await == Ended::Stopped {
            return Ok(Ended::Stopped);
        }
        self.commit(record.partition, record.offset + 1);
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

    fn commit(&self, partition: i32, next_offset: i64) {
        self.spec.progress.position.store(next_offset, Ordering::Relaxed);
        self.commits.delivered(partition, next_offset);
    }

    /// Everything before the next piece (or the batch's end) is resolved: commit it.
    fn commit_next(&self, partition: i32, records: &[EncodedRecord], pieces: &VecDeque<Piece>, end: i64) {
        let next = pieces.front().map_or(end, |p| records[p.range.start].offset);
        self.commit(partition, next);
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
        let payload =
            if piece.range == (0..records.len()) { whole.clone() } else { self.body(&spec.topic, part) };
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
        let (first, last) = info.values().next().map_or((String::new(), String::new()), |i| {
            (i.first_record_offset.clone(), i.last_record_offset.clone())
        });
        let condition = given_up.record.request_context.condition.as_str();
        let Some(destination) = &spec.fate.on_failure else {
            warn!(mapping = %spec.mapping, partition_key = ?info.keys().next(), first_offset = %first, last_offset = %last, records = n, condition, "Records given up with no on-failure destination; dropped.");
            MappingMetrics::add(&spec.metrics.dropped, n);
            spec.metrics.set_result(&format!("PROBLEM: {n} records dropped ({condition}), offsets {first} to {last}"));
            return Ended::Resolved;
        };
        let mut backoff = Backoff::new(self.retry.base, self.retry.cap);
        loop {
            if !spec.guard.is_valid() {
                return Ended::Stopped;
            }
            match destination.store(given_up).await {
                Ok(()) => {
                    MappingMetrics::add(&spec.metrics.on_failure_delivered, n);
                    spec.metrics.set_result(&format!(
                        "PROBLEM: {n} records sent to the on-failure destination ({condition}), offsets {first} to {last}"
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
        InvokeError::Transport { .. } => 0,
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

    #[test]
    fn error_type_only_never_the_message() {
        assert_eq!(error_type(br#"{"errorType":"KeyError","errorMessage":"card 4111"}"#), "KeyError");
        assert_eq!(error_type(b"secret"), "no errorType");
    }

    #[test]
    fn age_runs_keep_order() {
        let rec = |offset: i64, ts: i64| EncodedRecord { partition: 0, offset, timestamp_ms: ts, json: vec![] };
        let records = [rec(0, 1), rec(1, 1), rec(2, 9), rec(3, 1), rec(4, 9)];
        let runs = runs_by_age(&records, |r| r.timestamp_ms < 5);
        assert_eq!(runs, vec![(0..2, true), (2..3, false), (3..4, true), (4..5, false)]);
    }
}
