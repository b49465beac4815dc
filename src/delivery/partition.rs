//! The partition worker: one partition's records → batches → synchronous invokes → checkpoints.
//!
//! [`consume`] runs one partition until it is stopped, generic over the seams (record source,
//! checkpoint, invoker) so it runs the same over Kafka and over the in-memory fakes. At most one
//! batch is in flight; what happens to it ([`super::deliver`]: retries with capped exponential
//! backoff and jitter, bisect, partial responses, give-up to the on-failure destination) ends with
//! its last offset + 1 handed to the committer. Records no filter matches are committed, never
//! sent. Stopping lets the in-flight batch finish (or drops it when `abandon` fires) and delivers
//! a batch that was waiting for its window, then commits what succeeded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::batch::{Batcher, NextBatch};
use super::checkpoint::{Checkpoint, CommitReport, CommitSender, CommitterSettings, spawn_committer};
use super::deliver::{Ended, Run};
use super::invoke::Invoker;
use super::keyed::Keyed;
use super::metrics::MappingMetrics;
use super::record::RecordSource;
use super::worker::{WorkerError, WorkerSpec, show_commit_failure, show_commit_recovery};
use crate::config::Backoffs;

/// Runs one partition until `stop`, then lets the in-flight invoke finish (or drops it when
/// `abandon` fires), commits what succeeded and reports it.
///
/// # Errors
/// The partition hit an unrecoverable error; what succeeded before it was committed.
#[allow(clippy::too_many_arguments)]
pub async fn consume<S, C, I>(
    spec: &WorkerSpec,
    source: S,
    checkpoint: C,
    invoker: Arc<I>,
    retry: Backoffs,
    stop: &CancellationToken,
    abandon: &CancellationToken,
) -> Result<CommitReport, WorkerError>
where
    S: RecordSource + 'static,
    C: Checkpoint,
    I: Invoker,
{
    let committer_settings =
        CommitterSettings { retry_base: retry.base, retry_cap: retry.cap, ..CommitterSettings::default() };
    let (commits, committer) =
        spawn_committer(checkpoint, spec.mapping.clone(), spec.guard.clone(), committer_settings);
    let result = if spec.parallelization > 1 {
        let run = Run { spec, invoker: &invoker, commits: &commits, retry, stop, abandon };
        let result = Keyed::new(&run, source, spec.parallelization).run().await;
        // The committer makes its final commit once every sender is gone.
        drop(commits);
        result
    } else {
        let batcher = Batcher::new(source, spec.topic.clone(), spec.envelope.clone(), spec.limits)
            .with_filters(spec.fate.filters.clone())
            .with_budget(spec.budget.clone());
        run_partition(batcher, spec, invoker, commits, retry, stop, abandon).await
    };
    let report = committer.await.unwrap_or_default();
    result.map(|()| report)
}

#[allow(clippy::too_many_arguments)]
async fn run_partition<S: RecordSource, I: Invoker>(
    mut batcher: Batcher<S>,
    spec: &WorkerSpec,
    invoker: Arc<I>,
    commits: CommitSender,
    retry: Backoffs,
    stop: &CancellationToken,
    abandon: &CancellationToken,
) -> Result<(), WorkerError> {
    let metrics = &spec.metrics;
    let run = Run { spec, invoker: &invoker, commits: &commits, retry, stop, abandon };
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if let Some(error) = commits.failing() {
            // Each new batch would widen what a crash redelivers, without bound: wait for a commit.
            show_commit_failure(spec, &error);
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                () = commits.recovered() => {}
            }
            show_commit_recovery(spec);
        }
        let ended = match batcher.next(stop).await? {
            NextBatch::Stopped | NextBatch::Ended => return Ok(()),
            NextBatch::Filtered { partition, last_offset, records } => {
                MappingMetrics::add(&metrics.polled, records as u64);
                MappingMetrics::add(&metrics.filtered_out, records as u64);
                spec.progress.position.store(last_offset + 1, Ordering::Relaxed);
                commits.delivered(partition, last_offset + 1);
                continue;
            }
            NextBatch::Oversized(record) => {
                MappingMetrics::add(&metrics.polled, 1);
                run.oversized(record).await?
            }
            NextBatch::Batch(batch) => {
                MappingMetrics::add(&metrics.polled, (batch.payload.len() + batch.filtered) as u64);
                MappingMetrics::add(&metrics.filtered_out, batch.filtered as u64);
                run.batch(batch).await?
            }
        };
        if ended == Ended::Stopped {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::batch::BatchLimits;
    use crate::delivery::event::Envelope;
    use crate::delivery::event::EventSource;
    use crate::delivery::guard::LeaseGuard;
    use crate::delivery::invoke::InvokeError;
    use crate::delivery::invoke::InvokeOutcome;
    use crate::delivery::policy::StopReason;
    use crate::delivery::record::{KafkaRecord, TimestampType};
    use crate::testing::{MemoryCheckpoint, MemorySource};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Fails the first `failures` invokes of every partition named in `failing`, records all.
    #[derive(Debug, Default)]
    struct ScriptedInvoker {
        calls: Mutex<Vec<serde_json::Value>>,
        failing_partition: Option<i32>,
        failures_left: Mutex<u32>,
        error: Option<InvokeError>,
    }

    impl Invoker for ScriptedInvoker {
        async fn invoke(&self, _function: &str, payload: bytes::Bytes) -> Result<InvokeOutcome, InvokeError> {
            let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let key = event["records"].as_object().unwrap().keys().next().unwrap().clone();
            self.calls.lock().unwrap().push(event);
            if let Some(e) = &self.error {
                return Err(e.clone());
            }
            let failing = self.failing_partition.is_some_and(|p| key.ends_with(&format!("-{p}")));
            let mut left = self.failures_left.lock().unwrap();
            if failing && *left > 0 {
                *left -= 1;
                return Ok(InvokeOutcome::FunctionError { kind: "Unhandled".into(), body: "{}".into() });
            }
            Ok(InvokeOutcome::Success { body: "null".into() })
        }
    }

    fn records(partition: i32, n: i64) -> Vec<KafkaRecord> {
        (0..n)
            .map(|offset| KafkaRecord {
                topic: Arc::from("t"),
                partition,
                offset,
                timestamp_ms: offset,
                timestamp_type: TimestampType::CreateTime,
                key: None,
                value: Some(offset.to_string().into_bytes()),
                headers: vec![],
            })
            .collect()
    }

    fn spec(max_records: usize) -> WorkerSpec {
        WorkerSpec {
            mapping: Arc::from("m"),
            function: Arc::from("f"),
            topic: Arc::from("t"),
            envelope: Arc::new(Envelope::new(&EventSource::SelfManaged, "k:9092")),
            limits: BatchLimits { max_records, window: Duration::from_millis(100), ..BatchLimits::default() },
            guard: Arc::new(LeaseGuard::unconditional()),
            progress: Arc::default(),
            metrics: Arc::default(),
            fate: Arc::default(),
            parallelization: 1,
            gate: None,
            budget: None,
        }
    }

    fn delivered_offsets(calls: &[serde_json::Value], partition: i32) -> Vec<i64> {
        calls
            .iter()
            .filter_map(|c| c["records"].get(format!("t-{partition}")))
            .flat_map(|r| r.as_array().unwrap().iter().map(|r| r["offset"].as_i64().unwrap()))
            .collect()
    }

    fn retry() -> Backoffs {
        crate::config::Settings::default().retry
    }

    #[tokio::test(start_paused = true)]
    async fn failing_partition_is_retried_in_order_without_blocking_the_others_or_committing_past_it() {
        let invoker = Arc::new(ScriptedInvoker {
            failing_partition: Some(1),
            failures_left: Mutex::new(3),
            ..Default::default()
        });
        let checkpoint = MemoryCheckpoint::default();
        let stop = CancellationToken::new();
        let never = CancellationToken::new();
        let (spec0, spec1) = (spec(4), spec(4));
        let (r0, r1) = tokio::join!(
            consume(
                &spec0,
                MemorySource::ending_after(records(0, 10)),
                checkpoint.clone(),
                invoker.clone(),
                retry(),
                &stop,
                &never
            ),
            consume(
                &spec1,
                MemorySource::ending_after(records(1, 10)),
                checkpoint.clone(),
                invoker.clone(),
                retry(),
                &stop,
                &never
            ),
        );
        assert_eq!(r0.unwrap().committed, BTreeMap::from([(0, 10)]));
        assert_eq!(r1.unwrap().committed, BTreeMap::from([(1, 10)]));
        let calls = invoker.calls.lock().unwrap().clone();
        assert_eq!(delivered_offsets(&calls, 0), (0..10).collect::<Vec<_>>());
        // Partition 1's first batch was sent four times (three failures), then the rest in order.
        let p1 = delivered_offsets(&calls, 1);
        assert_eq!(&p1[..12], &[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(&p1[12..], &(0..10).collect::<Vec<_>>()[..]);
        // Partition 0 was done before partition 1's first batch finally succeeded (its fourth call).
        let last_p0 = calls.iter().rposition(|c| c["records"].get("t-0").is_some()).unwrap();
        let p1_first_success =
            calls.iter().enumerate().filter(|(_, c)| c["records"].get("t-1").is_some()).nth(3).unwrap().0;
        assert!(last_p0 < p1_first_success, "partition 0 was blocked by partition 1's failures");
        // No commit ever went past an undelivered batch of partition 1.
        for commit in checkpoint.history() {
            if let Some(&o) = commit.get(&1) {
                assert!(o == 4 || o == 8 || o == 10, "unexpected commit {o}");
            }
        }
    }

    /// Review finding #12: failing commits never paused intake, so what a crash would redeliver
    /// grew without bound, and the mapping showed nothing.
    #[tokio::test(start_paused = true)]
    async fn failing_commits_pause_intake_and_show_on_the_mapping_until_one_succeeds() {
        /// Invokes take 10 ms, as real ones take time (the committer runs meanwhile).
        #[derive(Debug, Default)]
        struct Timed(ScriptedInvoker);
        impl Invoker for Timed {
            async fn invoke(&self, function: &str, payload: bytes::Bytes) -> Result<InvokeOutcome, InvokeError> {
                tokio::time::sleep(Duration::from_millis(10)).await;
                self.0.invoke(function, payload).await
            }
        }
        let invoker = Arc::new(Timed::default());
        let checkpoint = MemoryCheckpoint::default();
        checkpoint.fail_next(usize::MAX);
        let stop = CancellationToken::new();
        let s = spec(5);
        let worker = {
            let (s, checkpoint, invoker, stop) = (s.clone(), checkpoint.clone(), invoker.clone(), stop.clone());
            tokio::spawn(async move {
                let never = CancellationToken::new();
                consume(&s, MemorySource::idle_after(records(0, 20)), checkpoint, invoker, retry(), &stop, &never).await
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The pause starts once the first commit has failed: the batch taken while that commit was
        // in flight is the only one after it (without the pause all four were invoked).
        let invoked = invoker.0.calls.lock().unwrap().len();
        assert!(invoked <= 2, "{invoked} batches invoked while commits failed");
        assert!(checkpoint.offsets().is_empty());
        let result = s.metrics.last_result.lock().unwrap().clone().unwrap_or_default();
        assert!(result.starts_with("PROBLEM: offset commit failing: "), "{result}");
        assert!(s.progress.last_error().is_some_and(|e| e.contains("injected failure")));

        checkpoint.fail_next(0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(delivered_offsets(&invoker.0.calls.lock().unwrap(), 0), (0..20).collect::<Vec<_>>());
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 20)]));
        assert_eq!(s.metrics.last_result.lock().unwrap().as_deref(), Some("OK"));
        stop.cancel();
        worker.await.unwrap().unwrap();
    }

    /// Review finding #16a: a function failing on every attempt never showed on the mapping.
    #[tokio::test(start_paused = true)]
    async fn a_failing_function_shows_on_the_mapping_until_a_batch_is_delivered() {
        let invoker = Arc::new(ScriptedInvoker {
            failing_partition: Some(0),
            failures_left: Mutex::new(4),
            ..Default::default()
        });
        let s = spec(5);
        let worker = {
            let (s, invoker) = (s.clone(), invoker.clone());
            tokio::spawn(async move {
                let never = CancellationToken::new();
                let source = MemorySource::idle_after(records(0, 5));
                consume(&s, source, MemoryCheckpoint::default(), invoker, retry(), &never, &never).await
            })
        };
        let result = || s.metrics.last_result.lock().unwrap().clone().unwrap_or_default();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(result(), "PROBLEM: function call failed: function error (Unhandled): no errorType");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(invoker.calls.lock().unwrap().len(), 5);
        assert_eq!(result(), "OK");
        worker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_during_retries_commits_nothing_past_the_failure() {
        let invoker = Arc::new(ScriptedInvoker {
            failing_partition: Some(0),
            failures_left: Mutex::new(u32::MAX),
            ..Default::default()
        });
        let checkpoint = MemoryCheckpoint::default();
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(120)).await;
            stopper.cancel();
        });
        let report = consume(
            &spec(5),
            MemorySource::idle_after(records(0, 10)),
            checkpoint.clone(),
            invoker.clone(),
            retry(),
            &stop,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(report.committed.is_empty());
        assert!(checkpoint.offsets().is_empty());
        let attempts = invoker.calls.lock().unwrap().len();
        // Backoff: 120 s with a 250 ms base and a 30 s cap is well under 20 attempts, never a busy loop.
        assert!((3..20).contains(&attempts), "{attempts} attempts in 120 s");
    }

    #[tokio::test(start_paused = true)]
    async fn missing_function_stops_the_mapping_with_function_config_not_valid() {
        let invoker = Arc::new(ScriptedInvoker {
            error: Some(InvokeError::FunctionNotFound { function: "f".into(), message: "Function not found".into() }),
            ..Default::default()
        });
        let checkpoint = MemoryCheckpoint::default();
        let err = consume(
            &spec(5),
            MemorySource::idle_after(records(0, 3)),
            checkpoint.clone(),
            invoker,
            retry(),
            &CancellationToken::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, WorkerError::Invoke { reason: StopReason::FunctionConfigNotValid, .. }));
        assert!(checkpoint.offsets().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_record_is_skipped_and_committed_past_after_earlier_records() {
        let invoker = Arc::new(ScriptedInvoker::default());
        let mut recs = records(0, 5);
        recs[2].value = Some(vec![b'x'; 7_000_000]);
        let checkpoint = MemoryCheckpoint::default();
        let mut s = spec(100);
        s.limits.window = Duration::ZERO;
        let report = consume(
            &s,
            MemorySource::ending_after(recs),
            checkpoint.clone(),
            invoker.clone(),
            retry(),
            &CancellationToken::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.committed, BTreeMap::from([(0, 5)]));
        let calls = invoker.calls.lock().unwrap().clone();
        assert_eq!(delivered_offsets(&calls, 0), [0, 1, 3, 4]);
        let m = &s.metrics;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (get(&m.polled), get(&m.invoked), get(&m.batches), get(&m.oversized), get(&m.dropped)),
            (5, 4, 2, 1, 1)
        );
    }
}
