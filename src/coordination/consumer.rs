//! The mapping consumer: one mapping's connection to its topic in one poller, running the
//! partitions whose tenures the supervisor hands it.
//!
//! It connects through the [`Connector`] (reconnecting with backoff through transient failures),
//! publishes the topic's partitions so the supervisor keeps one lease per partition, and runs
//! each partition under its [`Tenure`]: read the committed offset (or resolve the starting
//! position and commit it at once), open the partition, run the partition worker until the tenure
//! ends, close it, report done. A new tenure of a partition whose previous one is still ending
//! waits for it, so it starts from that tenure's last commit. Unrecoverable errors end the
//! consumer with the reason to record on the mapping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::concurrency::Gate;
use super::connector::{AfterRefusal, ConnectError, Connector, MappingClient, StartAt};
use super::tenure::Tenure;
use crate::backoff::Backoff;
use crate::config::Settings;
use crate::delivery::batch::BatchLimits;
use crate::delivery::budget::Budget;
use crate::delivery::checkpoint::{Checkpoint, CheckpointError};
use crate::delivery::event::{Envelope, EventSource};
use crate::delivery::fate::FatePolicy;
use crate::delivery::filter::Filters;
use crate::delivery::guard::LeaseGuard;
use crate::delivery::invoke::Invoker;
use crate::delivery::metrics::{MappingMetrics, Metrics};
use crate::delivery::partition::consume;
use crate::delivery::policy::{Disposition, StopReason};
use crate::delivery::record::SourceError;
use crate::delivery::worker::{Fate, WorkerError, WorkerSpec, longest_run};
use crate::model::mapping::EventSourceMapping;
use crate::ops::reset::commit_reset;

/// How often a consumer re-reads its topic's partitions (new ones get leases) and measures lag.
const METADATA_EVERY: Duration = Duration::from_secs(30);
const LAG_EVERY: Duration = Duration::from_secs(1);
/// A partition that fails this many times in a row without running a minute stops its mapping:
/// something in it cannot be read or delivered, and retrying forever would hide it.
const MAX_PARTITION_FAILURES: u32 = 8;

/// What every mapping consumer of one poller shares.
#[derive(Debug)]
pub struct Deps<C, I> {
    pub connector: C,
    pub invoker: Arc<I>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
}

/// What a consumer tells the supervisor while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStatus {
    /// The topic's partitions, once found.
    pub partitions: Option<Vec<i32>>,
    /// A failure being retried (unreachable brokers, a missing topic, a partition that keeps
    /// failing), for `LastProcessingResult`; `None` once things work again.
    pub problem: Option<String>,
    /// Consecutive failed attempts behind `problem`.
    pub failures: u32,
}

/// How a mapping's consumer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerExit {
    Stopped,
    /// Needs a human: record `reason` and `message` on the mapping and disable it.
    Unrecoverable {
        reason: StopReason,
        message: String,
    },
}

/// Why one partition's run ended early.
#[derive(Debug, thiserror::Error)]
enum PartitionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("partition task failed: {0}")]
    Panicked(String),
}

impl PartitionError {
    /// Stop the mapping (with the reason and `LastProcessingResult`), or retry the partition.
    fn stop(&self) -> Option<(StopReason, String)> {
        match self {
            Self::Connect(ConnectError { disposition: Disposition::Stop(reason), message, .. }) => {
                Some((*reason, message.clone()))
            }
            Self::Worker(WorkerError::Invoke { reason, error }) => Some((*reason, format!("PROBLEM: {error}"))),
            Self::Worker(WorkerError::Source(SourceError::Fatal { stop: Some(reason), message, .. })) => {
                Some((*reason, format!("PROBLEM: {message}")))
            }
            Self::Connect(_) | Self::Worker(_) | Self::Checkpoint(_) | Self::Panicked(_) => None,
        }
    }
}

/// Runs one mapping's partitions in this poller: those whose tenures arrive on `tenures`, each
/// until it ends. Ends on `stop` (after its partitions ended) or on an unrecoverable error.
pub async fn run_consumer<C: Connector, I: Invoker>(
    deps: Arc<Deps<C, I>>,
    mapping: EventSourceMapping,
    mut tenures: mpsc::UnboundedReceiver<Tenure>,
    status: watch::Sender<ConsumerStatus>,
    stop: CancellationToken,
    gate: Option<Arc<Gate>>,
) -> ConsumerExit {
    let uuid = mapping.uuid.clone();
    let mut held: BTreeMap<i32, Tenure> = BTreeMap::new();
    let mut backoff = Backoff::new(deps.settings.reconnect.base, deps.settings.reconnect.cap);
    loop {
        let started = Instant::now();
        let error = match connected(&deps, &mapping, &mut tenures, &status, &mut held, &stop, gate.as_ref()).await {
            Ok(None) => break,
            Ok(Some((reason, message))) => {
                error!(mapping = %uuid, reason = reason.as_str(), error = %message, "Mapping stopped: fix the cause, then enable it again.");
                finish_all(&mut held);
                return ConsumerExit::Unrecoverable { reason, message };
            }
            Err(e) => e,
        };
        // Refused credentials may be a rotated secret: read it again before giving up.
        let error = if error.credentials_refused {
            match deps.connector.after_refusal(&mapping).await {
                Ok(AfterRefusal::Reconnect) => {
                    warn!(mapping = %uuid, error = %error, "The cluster refused the credentials; the secret changed, reconnecting with it.");
                    continue;
                }
                Ok(AfterRefusal::Backoff) => ConnectError {
                    disposition: Disposition::Retry,
                    message: format!("{} (the secret is read again before the mapping stops)", error.message),
                    credentials_refused: true,
                },
                Ok(AfterRefusal::Stop) => error,
                Err(e) => e,
            }
        } else {
            error
        };
        if let Disposition::Stop(reason) = error.disposition {
            error!(mapping = %uuid, reason = reason.as_str(), error = %error, "Mapping stopped: fix the cause, then enable it again.");
            finish_all(&mut held);
            return ConsumerExit::Unrecoverable { reason, message: error.message };
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        status.send_modify(|s| {
            s.problem = Some(format!("PROBLEM: {}", error.message));
            s.failures += 1;
        });
        error!(mapping = %uuid, topic = mapping.topic(), error = %error, retry_in_s = delay.as_secs_f32(), "Mapping cannot consume; retrying.");
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            // Keep taking tenures and letting ended ones go while nothing runs.
            held.retain(|_, t| {
                if t.ended() {
                    t.finish();
                }
                !t.ended()
            });
            tokio::select! {
                () = stop.cancelled() => {
                    finish_all(&mut held);
                    return ConsumerExit::Stopped;
                }
                () = &mut wait => break,
                Some(tenure) = tenures.recv() => { held.insert(tenure.partition(), tenure); }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
    finish_all(&mut held);
    ConsumerExit::Stopped
}

/// Marks every tenure done: nothing runs for them any more.
fn finish_all(held: &mut BTreeMap<i32, Tenure>) {
    for (_, tenure) in std::mem::take(held) {
        tenure.finish();
    }
}

/// What every partition of one connection shares.
#[derive(Debug)]
struct Shared {
    /// `guard` and `progress` are replaced per tenure.
    spec: WorkerSpec,
    mapping: EventSourceMapping,
}

/// One connection's life: `Ok(None)` on `stop`, `Ok(Some(..))` when a partition needs the
/// mapping stopped, `Err` when the connection must be rebuilt.
async fn connected<C: Connector, I: Invoker>(
    deps: &Arc<Deps<C, I>>,
    mapping: &EventSourceMapping,
    tenures: &mut mpsc::UnboundedReceiver<Tenure>,
    status: &watch::Sender<ConsumerStatus>,
    held: &mut BTreeMap<i32, Tenure>,
    stop: &CancellationToken,
    gate: Option<&Arc<Gate>>,
) -> Result<Option<(StopReason, String)>, ConnectError> {
    let client = deps.connector.connect(mapping).await?;
    let result = serve(deps, mapping, &client, tenures, status, held, stop, gate).await;
    // Closing a client may wait on the network: keep it off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    result
}

/// A partition being run, by the tenure it runs under.
type Running = JoinSet<(i32, u64, Result<(), PartitionError>)>;

#[allow(clippy::too_many_arguments)]
async fn serve<C: Connector, I: Invoker>(
    deps: &Arc<Deps<C, I>>,
    mapping: &EventSourceMapping,
    client: &C::Client,
    tenures: &mut mpsc::UnboundedReceiver<Tenure>,
    status: &watch::Sender<ConsumerStatus>,
    held: &mut BTreeMap<i32, Tenure>,
    stop: &CancellationToken,
    gate: Option<&Arc<Gate>>,
) -> Result<Option<(StopReason, String)>, ConnectError> {
    let known = client.partitions().await?;
    info!(mapping = %mapping.uuid, topic = mapping.topic(), group = mapping.consumer_group_id(), partitions = known.len(), function = %mapping.function_arn, "Connected.");
    status.send_modify(|s| {
        s.partitions = Some(known);
        s.problem = None;
        s.failures = 0;
    });
    let timeout = deps.invoker.timeout(&mapping.function_arn).await;
    let shared = Arc::new(Shared {
        spec: WorkerSpec {
            mapping: Arc::from(mapping.uuid.as_str()),
            function: Arc::from(mapping.function_arn.as_str()),
            topic: Arc::from(mapping.topic()),
            envelope: Arc::new(Envelope::new(&EventSource::of(mapping), client.bootstrap_servers())),
            limits: BatchLimits::of(mapping),
            parallelization: mapping.parallelization_factor.unwrap_or(1) as usize,
            gate: gate.cloned(),
            budget: Some(Budget::for_process(deps.settings.batch_memory_bytes)),
            guard: Arc::new(LeaseGuard::unconditional()),
            progress: Arc::default(),
            metrics: deps.metrics.mapping(&mapping.uuid),
            fate: Arc::new(Fate {
                policy: FatePolicy::of(mapping),
                // Mappings are validated before they are consumed (the same compile), so this
                // never falls back to no filters.
                filters: Arc::new(
                    Filters::compile(mapping.filter_criteria.as_ref().unwrap_or(&serde_json::Value::Null))
                        .unwrap_or_default(),
                ),
                on_failure: client.on_failure(),
                event_source_arn: mapping.event_source_arn.clone(),
                bootstrap_servers: client.bootstrap_servers().to_owned(),
                unanswered_wait: longest_run(timeout, deps.settings.unanswered_invoke_wait),
            }),
        },
        mapping: mapping.clone(),
    });
    let connection_stop = CancellationToken::new();
    let mut running: Running = JoinSet::new();
    // Earlier tenures still ending, by (partition, counter): the next one starts once they
    // committed.
    let mut retired: BTreeMap<(i32, u64), Tenure> = BTreeMap::new();
    // Per partition: consecutive failures, and the backoff before the next attempt.
    let mut failures: BTreeMap<i32, (u32, Backoff, Instant)> = BTreeMap::new();
    // Which tenure each task runs, to know what a task that died (a panic) was running.
    let mut tasks: BTreeMap<tokio::task::Id, (i32, u64)> = BTreeMap::new();
    let start =
        |running: &mut Running, tasks: &mut BTreeMap<tokio::task::Id, (i32, u64)>, tenure: &Tenure, delay: Duration| {
            let task = running.spawn(run_tenure(
                deps.clone(),
                client.clone(),
                shared.clone(),
                tenure.clone(),
                connection_stop.child_token(),
                delay,
            ));
            tasks.insert(task.id(), (tenure.partition(), tenure.counter()));
        };
    for tenure in held.values() {
        start(&mut running, &mut tasks, tenure, Duration::ZERO);
    }
    let mut metadata = tokio::time::interval_at(Instant::now() + METADATA_EVERY, METADATA_EVERY);
    let mut lag = tokio::time::interval(LAG_EVERY);
    let outcome = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(None),
            failure = client.failed() => break Err(failure),
            Some(tenure) = tenures.recv() => {
                if let Some(old) = held.insert(tenure.partition(), tenure.clone()) {
                    // A new tenure of a partition whose old one is still ending: let the old run
                    // finish first (it commits), then the new one starts from that commit.
                    old.stopping().cancel();
                    retired.insert((old.partition(), old.counter()), old);
                    continue;
                }
                start(&mut running, &mut tasks, &tenure, Duration::ZERO);
            }
            Some(joined) = running.join_next_with_id() => {
                let (partition, counter, result) = match joined {
                    Ok((id, done)) => {
                        tasks.remove(&id);
                        done
                    }
                    Err(e) => {
                        // The task died (a panic in it): a failed run of its partition.
                        let Some((partition, counter)) = tasks.remove(&e.id()) else { continue };
                        (partition, counter, Err(PartitionError::Panicked(e.to_string())))
                    }
                };
                if let Some(old) = retired.remove(&(partition, counter)) {
                    old.finish();
                    if let Some(next) = held.get(&partition) {
                        start(&mut running, &mut tasks, next, Duration::ZERO);
                    }
                    continue;
                }
                let Some(tenure) = held.get(&partition).cloned() else { continue };
                if tenure.ended() {
                    held.remove(&partition);
                    tenure.finish();
                    failures.remove(&partition);
                    continue;
                }
                match result {
                    Err(e) => {
                        if let Some(stop) = e.stop() {
                            break Ok(Some(stop));
                        }
                        let (count, backoff, since) = failures.entry(partition).or_insert_with(|| {
                            (0, Backoff::new(deps.settings.reconnect.base, deps.settings.reconnect.cap), Instant::now())
                        });
                        if since.elapsed() > Duration::from_secs(60) {
                            *count = 0;
                            backoff.reset();
                        }
                        *count += 1;
                        *since = Instant::now();
                        if *count >= MAX_PARTITION_FAILURES {
                            let position = tenure.progress.position();
                            break Ok(Some((
                                StopReason::EsmConfigNotValid,
                                format!("PROBLEM: partition {partition} failed {count} times in a row at offset {position}: {e}"),
                            )));
                        }
                        let delay = backoff.next_delay();
                        status.send_modify(|s| {
                            s.problem = Some(format!("PROBLEM: partition {partition}: {e}"));
                            s.failures = *count;
                        });
                        warn!(mapping = %mapping.uuid, partition, error = %e, retry_in_s = delay.as_secs_f32(), "Partition stopped; restarting it from its committed offset.");
                        start(&mut running, &mut tasks, &tenure, delay);
                    }
                    // The source ran dry (never with Kafka): start again.
                    Ok(()) => start(&mut running, &mut tasks, &tenure, Duration::ZERO),
                }
            }
            _ = metadata.tick() => {
                match client.partitions().await {
                    Ok(now) if status.borrow().partitions.as_ref() != Some(&now) => {
                        info!(mapping = %mapping.uuid, topic = mapping.topic(), partitions = now.len(), "The topic's partitions changed.");
                        status.send_modify(|s| s.partitions = Some(now));
                    }
                    Ok(_) => {}
                    Err(e) => warn!(mapping = %mapping.uuid, error = %e, "Cannot refresh the topic's partitions."),
                }
            }
            _ = lag.tick() => {
                for tenure in held.values() {
                    if let Some(waiting) = client.lag(tenure.partition(), tenure.progress.position()) {
                        tenure.progress.lag.store(waiting, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    // Stop what still runs; each commits what it delivered.
    connection_stop.cancel();
    while running.join_next().await.is_some() {}
    for (_, old) in retired {
        old.finish();
    }
    held.retain(|_, t| {
        let ended = t.ended();
        if ended {
            t.finish();
        }
        !ended
    });
    if stop.is_cancelled() {
        finish_all(held);
    }
    outcome
}

/// One tenure of one partition: from the committed offset (or the starting position, resolved
/// and committed at once) until the tenure ends or the connection stops.
async fn run_tenure<C: Connector, I: Invoker>(
    deps: Arc<Deps<C, I>>,
    client: C::Client,
    shared: Arc<Shared>,
    tenure: Tenure,
    connection_stop: CancellationToken,
    delay: Duration,
) -> (i32, u64, Result<(), PartitionError>) {
    let partition = tenure.partition();
    // Stops on the tenure or on the connection, whichever comes first.
    let stop = connection_stop.child_token();
    let forward = {
        let (stop, tenure_stop) = (stop.clone(), tenure.stopping().clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tenure_stop.cancelled() => stop.cancel(),
                () = stop.cancelled() => {}
            }
        })
    };
    let result = async {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
        if tenure.ended() {
            return Ok(());
        }
        let checkpoint = TimedCheckpoint { inner: client.checkpoint(), metrics: shared.spec.metrics.clone() };
        // A reset requested before the partition started here is applied before anything is read.
        if let Some(reset) = tenure.reset.take() {
            if !tenure.guard.is_valid() {
                return Ok(());
            }
            commit_reset(&checkpoint, &reset).await?;
            tenure.reset.applied(&reset.request);
            info!(mapping = %shared.spec.mapping, partition, offset = reset.offset, request = %reset.request, "Offset reset applied.");
        }
        let committed = checkpoint.committed(&[partition]).await?.get(&partition).copied().flatten();
        let start_at = StartAt::for_partition(&shared.mapping, tenure.lease.from_earliest);
        let (mut offset, resolved) = client.start_offset(partition, committed, start_at).await?;
        if resolved {
            if !tenure.guard.is_valid() {
                return Ok(());
            }
            // Pin the starting position at once: a restart must not re-resolve LATEST past
            // records that arrived in between.
            checkpoint.commit(&BTreeMap::from([(partition, offset)])).await?;
            info!(mapping = %shared.spec.mapping, partition, position = ?start_at.position, offset, "Starting position resolved and committed.");
        }
        let spec = WorkerSpec { guard: tenure.guard.clone(), progress: tenure.progress.clone(), ..shared.spec.clone() };
        if let Some(fence) = tenure.lease.fence_ms.filter(|ms| *ms > 0).map(Duration::from_millis) {
            // The last holder abandoned an invoke that may still be running: never two
            // invocations of a partition at once.
            warn!(mapping = %shared.spec.mapping, partition, wait_ms = fence.as_millis(), "The previous holder abandoned an invoke that may still be running; waiting before invoking this partition.");
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(fence) => {}
            }
        }
        loop {
            tenure.progress.position.store(offset, Ordering::Relaxed);
            let source = client.open(partition, offset)?;
            info!(mapping = %shared.spec.mapping, partition, offset, "Partition started.");
            // An offset reset stops intake like a hand-over: the batch in flight finishes and
            // commits first.
            let run_stop = stop.child_token();
            let on_reset = {
                let (slot, run_stop) = (tenure.reset.clone(), run_stop.clone());
                tokio::spawn(async move {
                    slot.requested().await;
                    run_stop.cancel();
                })
            };
            let result = consume(
                &spec,
                source,
                checkpoint.clone(),
                deps.invoker.clone(),
                deps.settings.retry,
                &run_stop,
                tenure.abandoning(),
            )
            .await;
            on_reset.abort();
            client.close(partition);
            let report = result?;
            let reset = if stop.is_cancelled() || !tenure.guard.is_valid() { None } else { tenure.reset.take() };
            let Some(reset) = reset else {
                info!(mapping = %shared.spec.mapping, partition, committed = ?report.committed, "Partition stopped.");
                return Ok(());
            };
            commit_reset(&checkpoint, &reset).await?;
            tenure.reset.applied(&reset.request);
            info!(mapping = %shared.spec.mapping, partition, from = ?report.committed.get(&partition), offset = reset.offset, request = %reset.request, "Offset reset applied.");
            offset = reset.offset;
        }
    }
    .await;
    forward.abort();
    (partition, tenure.counter(), result)
}

/// The group's offsets, with every commit's latency counted (`CommitLatency`).
#[derive(Debug, Clone)]
struct TimedCheckpoint<C> {
    inner: C,
    metrics: Arc<MappingMetrics>,
}

impl<C: Checkpoint> Checkpoint for TimedCheckpoint<C> {
    async fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, CheckpointError> {
        self.inner.committed(partitions).await
    }

    async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), CheckpointError> {
        let started = Instant::now();
        let result = self.inner.commit(offsets).await;
        if result.is_ok() {
            self.metrics.commit_ms.record(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        result
    }
}
