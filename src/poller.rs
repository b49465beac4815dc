//! The poll loop: partitions → batches → synchronous invokes → checkpoints.
//!
//! [`consume`] is the loop itself, generic over the seams (record sources, checkpoint, invoker)
//! so it runs the same over Kafka and over the in-memory fakes. Each partition has its own worker
//! with at most one batch in flight; partitions run in parallel; a batch is retried (capped
//! exponential backoff with jitter) until it succeeds, and only then is its last offset + 1 handed
//! to the committer. [`run_mapping`] wires one mapping to Kafka for the partitions this poller
//! holds leases on ([`PartitionTicket`]s from the supervisor), adding and removing partitions
//! one at a time, and keeps it running through broker outages; unrecoverable errors end it with
//! the `StateTransitionReason` to record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::batch::{BatchLimits, Batcher, NextBatch};
use crate::checkpoint::{Checkpoint, CommitReport, CommitSender, CommitterSettings, spawn_committer};
use crate::cluster::{ClusterResolver, ResolveError};
use crate::error::{Disposition, StopReason, invoke_disposition, kafka_disposition};
use crate::event::Envelope;
use crate::invoke::{InvokeError, InvokeOutcome, Invoker};
use crate::kafka::{KafkaClient, KafkaClientError, KafkaSettings};
use crate::lease::{LeaseGuard, LeaseSettings};
use crate::mapping::{EventSourceMapping, StartingPosition};
use crate::source::{RecordSource, SourceError};

/// Tunables of the poller process, from `ESM_*` environment variables.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    /// `ESM_FETCH_WAIT_MS` (default 500, Kafka's `fetch.max.wait.ms`): how long a broker may hold
    /// an empty fetch. Tansu holds every fetch this long, so the local stack sets 10.
    pub fetch_wait_max_ms: u32,
    /// `ESM_QUEUED_MAX_KBYTES` (default 2048): per-partition fetch-ahead buffer.
    pub queued_max_kbytes: u32,
    /// `ESM_FETCH_QUEUE_BACKOFF_MS` (default 10, librdkafka's is 1000): how soon a partition
    /// whose buffer was full is fetched again.
    pub fetch_queue_backoff_ms: u32,
    /// `ESM_KAFKA_REQUEST_TIMEOUT_MS` (default 10000): metadata/offset/commit requests.
    pub request_timeout: Duration,
    /// `ESM_RETRY_BASE_MS` / `ESM_RETRY_CAP_MS` (default 250 / 30000): failed-batch retries.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// `ESM_RECONNECT_BASE_MS` / `ESM_RECONNECT_CAP_MS` (default 1000 / 60000): a mapping that
    /// cannot reach its cluster.
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    /// `ESM_REFRESH_INTERVAL_MS` (default 3000): how often mapping items are re-read.
    pub refresh_interval: Duration,
    /// `ESM_DRAIN_TIMEOUT_MS` (default 30000): on stop, how long an in-flight invoke may finish
    /// before it is abandoned (its batch is then redelivered later).
    pub drain_timeout: Duration,
    /// `ESM_LEASE_DURATION_MS` / `ESM_LEASE_RENEW_MS` / `ESM_LEASE_MARGIN_MS` (20000 /
    /// 2/5 of the duration / 3000): the pollers' heartbeats, which keep their partition leases.
    pub lease: LeaseSettings,
}

impl Default for PollerSettings {
    fn default() -> Self {
        Self {
            fetch_wait_max_ms: 500,
            queued_max_kbytes: 2048,
            fetch_queue_backoff_ms: 10,
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(250),
            retry_cap: Duration::from_secs(30),
            reconnect_base: Duration::from_secs(1),
            reconnect_cap: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(30),
            lease: LeaseSettings::default(),
        }
    }
}

impl PollerSettings {
    /// Defaults overridden by whichever `ESM_*` variables are set.
    ///
    /// # Errors
    /// A variable is set but is not a number.
    pub fn from_env() -> Result<Self, String> {
        fn var(name: &str) -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => {
                    v.trim().parse().map(Some).map_err(|_| format!("{name}={v} is not a whole number"))
                }
                _ => Ok(None),
            }
        }
        let ms = |name: &str, default: Duration| -> Result<Duration, String> {
            Ok(var(name)?.map_or(default, Duration::from_millis))
        };
        let d = Self::default();
        Ok(Self {
            fetch_wait_max_ms: var("ESM_FETCH_WAIT_MS")?.map_or(Ok(d.fetch_wait_max_ms), |v| {
                u32::try_from(v).map_err(|_| "ESM_FETCH_WAIT_MS is too large".to_owned())
            })?,
            queued_max_kbytes: var("ESM_QUEUED_MAX_KBYTES")?.map_or(Ok(d.queued_max_kbytes), |v| {
                u32::try_from(v).map_err(|_| "ESM_QUEUED_MAX_KBYTES is too large".to_owned())
            })?,
            fetch_queue_backoff_ms: var("ESM_FETCH_QUEUE_BACKOFF_MS")?.map_or(Ok(d.fetch_queue_backoff_ms), |v| {
                u32::try_from(v).map_err(|_| "ESM_FETCH_QUEUE_BACKOFF_MS is too large".to_owned())
            })?,
            request_timeout: ms("ESM_KAFKA_REQUEST_TIMEOUT_MS", d.request_timeout)?,
            retry_base: ms("ESM_RETRY_BASE_MS", d.retry_base)?,
            retry_cap: ms("ESM_RETRY_CAP_MS", d.retry_cap)?,
            reconnect_base: ms("ESM_RECONNECT_BASE_MS", d.reconnect_base)?,
            reconnect_cap: ms("ESM_RECONNECT_CAP_MS", d.reconnect_cap)?,
            refresh_interval: ms("ESM_REFRESH_INTERVAL_MS", d.refresh_interval)?,
            drain_timeout: ms("ESM_DRAIN_TIMEOUT_MS", d.drain_timeout)?,
            lease: {
                let duration = ms("ESM_LEASE_DURATION_MS", d.lease.duration)?;
                let lease = LeaseSettings {
                    duration,
                    renew_every: ms("ESM_LEASE_RENEW_MS", duration * 2 / 5)?,
                    safety_margin: ms("ESM_LEASE_MARGIN_MS", d.lease.safety_margin)?,
                };
                lease.validate().map_err(|e| e.to_string())?;
                lease
            },
        })
    }
}

/// Counters for progress lines and benchmarks.
#[derive(Debug, Default)]
pub struct Metrics {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub failed_invokes: AtomicU64,
    pub oversized_records: AtomicU64,
}

impl Metrics {
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
            self.failed_invokes.load(Ordering::Relaxed),
            self.oversized_records.load(Ordering::Relaxed),
        )
    }
}

/// What one consumer delivers where.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub mapping: Arc<str>,
    pub function: Arc<str>,
    pub topic: Arc<str>,
    pub envelope: Arc<Envelope>,
    pub limits: BatchLimits,
    /// Checked before every invoke and every commit.
    pub guard: Arc<LeaseGuard>,
    /// The next offset to deliver, updated after every delivered batch (for lag).
    pub position: Arc<AtomicI64>,
}

/// Why a partition worker gave up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{error}")]
    Invoke { reason: StopReason, error: InvokeError },
}

/// Runs every partition until `stop`, then lets in-flight invokes finish (or drops them when
/// `abandon` fires), commits what succeeded and reports it.
///
/// # Errors
/// A worker hit an unrecoverable error; the others were stopped and their progress committed.
#[allow(clippy::too_many_arguments)]
pub async fn consume<S, C, I>(
    spec: &ConsumerSpec,
    sources: Vec<S>,
    checkpoint: C,
    invoker: Arc<I>,
    settings: &PollerSettings,
    metrics: Arc<Metrics>,
    stop: &CancellationToken,
    abandon: &CancellationToken,
) -> Result<CommitReport, WorkerError>
where
    S: RecordSource + 'static,
    C: Checkpoint,
    I: Invoker,
{
    let committer_settings = CommitterSettings {
        retry_base: settings.retry_base,
        retry_cap: settings.retry_cap,
        ..CommitterSettings::default()
    };
    let (commits, committer) =
        spawn_committer(checkpoint, spec.mapping.clone(), spec.guard.clone(), committer_settings);
    let workers_stop = stop.child_token();
    let mut workers = JoinSet::new();
    for source in sources {
        let batcher = Batcher::new(source, spec.topic.clone(), spec.envelope.clone(), spec.limits);
        workers.spawn(run_partition(
            batcher,
            spec.clone(),
            invoker.clone(),
            commits.clone(),
            (settings.retry_base, settings.retry_cap),
            metrics.clone(),
            workers_stop.clone(),
            abandon.clone(),
        ));
    }
    drop(commits);
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(join) => WorkerError::Source(SourceError::Fatal {
                partition: -1,
                message: format!("partition worker panicked: {join}"),
            }),
        };
        if failure.is_none() {
            workers_stop.cancel();
            failure = Some(error);
        }
    }
    let report = committer.await.unwrap_or_default();
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_partition<S: RecordSource, I: Invoker>(
    mut batcher: Batcher<S>,
    spec: ConsumerSpec,
    invoker: Arc<I>,
    commits: CommitSender,
    (retry_base, retry_cap): (Duration, Duration),
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    abandon: CancellationToken,
) -> Result<(), WorkerError> {
    loop {
        let batch = match batcher.next(&stop).await? {
            NextBatch::Stopped | NextBatch::Ended => return Ok(()),
            NextBatch::Oversized(record) => {
                error!(
                    mapping = %spec.mapping, topic = %spec.topic, partition = record.partition, offset = record.offset,
                    payload_bytes = record.payload_bytes, limit_bytes = batcher.limits().max_payload_bytes,
                    "Record too large for a synchronous invoke even alone (MaximumPayloadSizeExceeded); skipped."
                );
                metrics.oversized_records.fetch_add(1, Ordering::Relaxed);
                spec.position.store(record.offset + 1, Ordering::Relaxed);
                commits.delivered(record.partition, record.offset + 1);
                continue;
            }
            NextBatch::Batch(batch) => batch,
        };
        let body = batch.payload.finish();
        let (partition, first_offset, last_offset, records) =
            (batch.partition, batch.first_offset, batch.last_offset, batch.payload.len());
        // The encoded records live on in `body`; free the parts now.
        drop(batch);
        let mut backoff = Backoff::new(retry_base, retry_cap);
        loop {
            if !spec.guard.is_valid() {
                warn!(mapping = %spec.mapping, partition, "Lease no longer held; stopping this partition without invoking.");
                return Ok(());
            }
            let result = tokio::select! {
                biased;
                () = abandon.cancelled() => return Ok(()),
                result = invoker.invoke(&spec.function, body.clone()) => result,
            };
            let failure = match result {
                Ok(InvokeOutcome::Success { .. }) => break,
                Ok(InvokeOutcome::FunctionError { kind, body }) => {
                    format!("function error ({kind}): {}", String::from_utf8_lossy(&body[..body.len().min(512)]))
                }
                Err(error) => match invoke_disposition(&error) {
                    Disposition::Stop(reason) => {
                        error!(mapping = %spec.mapping, function = %spec.function, partition, error = %error, "Cannot invoke the function; stopping this mapping.");
                        return Err(WorkerError::Invoke { reason, error });
                    }
                    Disposition::Retry => error.to_string(),
                },
            };
            metrics.failed_invokes.fetch_add(1, Ordering::Relaxed);
            let delay = backoff.next_delay();
            warn!(
                mapping = %spec.mapping, partition, first_offset, last_offset, attempt = backoff.attempts(), retry_in_ms = delay.as_millis(),
                error = %failure, "Batch failed; retrying it."
            );
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
        metrics.records.fetch_add(records as u64, Ordering::Relaxed);
        metrics.batches.fetch_add(1, Ordering::Relaxed);
        spec.position.store(last_offset + 1, Ordering::Relaxed);
        commits.delivered(partition, last_offset + 1);
    }
}

/// How a mapping's consumer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingExit {
    Stopped,
    /// Needs a human: record `reason` and `message` on the mapping and disable it.
    Unrecoverable {
        reason: StopReason,
        message: String,
    },
}

/// What every mapping consumer of one poller shares.
#[derive(Debug)]
pub struct PollerEnv<I> {
    pub settings: PollerSettings,
    pub invoker: Arc<I>,
    pub resolver: ClusterResolver,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("{0}")]
    Checkpoint(String),
}

impl RunError {
    fn disposition(&self) -> Result<(), (StopReason, String)> {
        match self {
            Self::Kafka(e) => match kafka_disposition(e) {
                Disposition::Retry => Ok(()),
                Disposition::Stop(reason) => Err((reason, format!("PROBLEM: {e}"))),
            },
            Self::Resolve(ResolveError::Unrecoverable(reason, message)) => Err((*reason, message.clone())),
            Self::Worker(WorkerError::Invoke { reason, error }) => Err((*reason, format!("PROBLEM: {error}"))),
            Self::Worker(WorkerError::Source(SourceError::Fatal { message, .. })) if message.contains("uthoriz") => {
                Err((StopReason::EventSourceAuthzError, format!("PROBLEM: {message}")))
            }
            Self::Resolve(ResolveError::Transient(_)) | Self::Worker(_) | Self::Checkpoint(_) => Ok(()),
        }
    }
}

/// One partition lease this poller holds, handed by the supervisor to the mapping's consumer.
#[derive(Debug, Clone)]
pub struct PartitionTicket {
    pub partition: i32,
    /// Tells tenures of one partition apart (the lease's counter when taken).
    pub tenure: u64,
    /// Checked before every invoke and every commit.
    pub guard: Arc<LeaseGuard>,
    /// Cancelled by the supervisor to hand the partition over: no new batch, commit, stop.
    pub stop: CancellationToken,
    /// Cancelled by the supervisor when an in-flight invoke takes too long to finish.
    pub abandon: CancellationToken,
    /// Cancelled by the consumer once the partition has stopped and its last commit is done:
    /// only then may the lease be released.
    pub done: CancellationToken,
    /// Next offset to deliver; -1 until known.
    pub position: Arc<AtomicI64>,
    /// Records waiting after `position`, as last measured.
    pub lag: Arc<AtomicU64>,
}

impl PartitionTicket {
    pub fn new(partition: i32, tenure: u64, guard: Arc<LeaseGuard>) -> Self {
        Self {
            partition,
            tenure,
            guard,
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            done: CancellationToken::new(),
            position: Arc::new(AtomicI64::new(-1)),
            lag: Arc::default(),
        }
    }

    /// Whether the partition must not run (handed over, or the lease is gone).
    fn ended(&self) -> bool {
        self.stop.is_cancelled() || !self.guard.is_valid()
    }
}

/// How often a consumer re-reads its topic's partitions (new ones get leases) and measures lag.
const METADATA_EVERY: Duration = Duration::from_secs(30);
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Runs one mapping's partitions in this poller: those whose tickets arrive on `tickets`, each
/// until its ticket is stopped. Publishes the topic's partitions on `partitions` so the
/// supervisor can keep one lease per partition. Reconnects with backoff through transient
/// failures; ends on `stop` (after its partitions ended) or on an unrecoverable error.
pub async fn run_mapping<I: Invoker>(
    env: Arc<PollerEnv<I>>,
    mapping: EventSourceMapping,
    mut tickets: mpsc::UnboundedReceiver<PartitionTicket>,
    partitions: watch::Sender<Option<Vec<i32>>>,
    stop: CancellationToken,
) -> MappingExit {
    let uuid = mapping.uuid.clone();
    let mut held: BTreeMap<i32, PartitionTicket> = BTreeMap::new();
    let mut backoff = Backoff::new(env.settings.reconnect_base, env.settings.reconnect_cap);
    loop {
        let started = Instant::now();
        let error = match connected(&env, &mapping, &mut tickets, &partitions, &mut held, &stop).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if let Err((reason, message)) = error.disposition() {
            error!(mapping = %uuid, reason = reason.as_str(), error = %error, "Mapping stopped: fix the cause, then enable it again.");
            finish(&mut held);
            return MappingExit::Unrecoverable { reason, message };
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        error!(mapping = %uuid, topic = mapping.topic(), error = %error, retry_in_s = delay.as_secs_f32(), "Mapping cannot consume; retrying.");
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            // Keep taking tickets and letting stopped ones go while nothing runs.
            held.retain(|_, t| {
                let ended = t.ended();
                if ended {
                    t.done.cancel();
                }
                !ended
            });
            tokio::select! {
                () = stop.cancelled() => {
                    finish(&mut held);
                    return MappingExit::Stopped;
                }
                () = &mut wait => break,
                Some(ticket) = tickets.recv() => { held.insert(ticket.partition, ticket); }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
    finish(&mut held);
    MappingExit::Stopped
}

/// Marks every ticket done: nothing runs for them any more.
fn finish(held: &mut BTreeMap<i32, PartitionTicket>) {
    for (_, ticket) in std::mem::take(held) {
        ticket.done.cancel();
    }
}

/// One connection's life: returns `Ok` on `stop`, `Err` when the mapping must reconnect or stop.
async fn connected<I: Invoker>(
    env: &Arc<PollerEnv<I>>,
    mapping: &EventSourceMapping,
    tickets: &mut mpsc::UnboundedReceiver<PartitionTicket>,
    partitions_tx: &watch::Sender<Option<Vec<i32>>>,
    held: &mut BTreeMap<i32, PartitionTicket>,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let connection = env.resolver.connection(mapping).await?;
    let settings = KafkaSettings {
        bootstrap_servers: connection.bootstrap_servers.clone(),
        group_id: mapping.consumer_group_id().to_owned(),
        security: connection.security.clone(),
        fetch_wait_max_ms: env.settings.fetch_wait_max_ms,
        queued_max_kbytes: env.settings.queued_max_kbytes,
        fetch_queue_backoff_ms: env.settings.fetch_queue_backoff_ms,
        request_timeout: env.settings.request_timeout,
    };
    let client = KafkaClient::new(settings, mapping.topic(), &mapping.uuid)?;
    // Serve the client's main queue from the start: librdkafka reports connection and TLS
    // failures there, and they are what makes a failed request explain itself.
    let connection_stop = CancellationToken::new();
    let main_queue = {
        let client = client.clone();
        tokio::spawn(async move { client.serve_main_queue().await })
    };
    let result = serve(
        env,
        mapping,
        &client,
        &connection.bootstrap_servers,
        tickets,
        partitions_tx,
        held,
        stop,
        &connection_stop,
        main_queue,
    )
    .await;
    connection_stop.cancel();
    // Closing a consumer may wait on the network: keep it off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve<I: Invoker>(
    env: &Arc<PollerEnv<I>>,
    mapping: &EventSourceMapping,
    client: &KafkaClient,
    bootstrap_servers: &str,
    tickets: &mut mpsc::UnboundedReceiver<PartitionTicket>,
    partitions_tx: &watch::Sender<Option<Vec<i32>>>,
    held: &mut BTreeMap<i32, PartitionTicket>,
    stop: &CancellationToken,
    connection_stop: &CancellationToken,
    mut main_queue: tokio::task::JoinHandle<KafkaClientError>,
) -> Result<(), RunError> {
    let known = client.partitions().await?;
    partitions_tx.send_replace(Some(known.clone()));
    info!(mapping = %mapping.uuid, topic = mapping.topic(), group = mapping.consumer_group_id(), partitions = known.len(), function = %mapping.function_arn, "Connected.");
    let shared = Arc::new(PartitionShared {
        spec: ConsumerSpec {
            mapping: Arc::from(mapping.uuid.as_str()),
            function: Arc::from(mapping.function_arn.as_str()),
            topic: client.topic().clone(),
            envelope: Arc::new(Envelope::new(&mapping.event_source(), bootstrap_servers)),
            limits: mapping.batch_limits(),
            guard: Arc::new(LeaseGuard::unconditional()),
            position: Arc::default(),
        },
        position: mapping.starting_position.unwrap_or(StartingPosition::Latest),
        timestamp_ms: mapping.starting_timestamp_ms(),
    });
    let mut running: JoinSet<(i32, u64, Result<(), RunError>)> = JoinSet::new();
    // Earlier tenures still ending, by tenure: the next one starts once they committed.
    let mut retired: BTreeMap<u64, PartitionTicket> = BTreeMap::new();
    let start = |running: &mut JoinSet<_>, ticket: &PartitionTicket, delay: Duration| {
        running.spawn(run_leased_partition(
            env.clone(),
            client.clone(),
            shared.clone(),
            ticket.clone(),
            connection_stop.child_token(),
            delay,
        ));
    };
    for ticket in held.values() {
        start(&mut running, ticket, Duration::ZERO);
    }
    let mut metadata = tokio::time::interval_at(Instant::now() + METADATA_EVERY, METADATA_EVERY);
    let mut lag = tokio::time::interval(LAG_EVERY);
    let mut retry = Backoff::new(env.settings.reconnect_base, env.settings.reconnect_cap);
    let outcome = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            misrouted = &mut main_queue => {
                break Err(RunError::Kafka(misrouted.unwrap_or_else(|e| KafkaClientError::Other { detail: e.to_string() })));
            }
            Some(ticket) = tickets.recv() => {
                if let Some(old) = held.insert(ticket.partition, ticket.clone()) {
                    // A new tenure of a partition whose old one is still ending: let the old run
                    // finish first (it commits), then the new one starts from that commit.
                    old.stop.cancel();
                    retired.insert(old.tenure, old);
                    continue;
                }
                start(&mut running, &ticket, Duration::ZERO);
            }
            Some(joined) = running.join_next() => {
                let (partition, tenure, result) = match joined {
                    Ok(done) => done,
                    Err(e) => {
                        error!(mapping = %mapping.uuid, error = %e, "Partition task failed.");
                        continue;
                    }
                };
                if let Some(old) = retired.remove(&tenure) {
                    old.done.cancel();
                    if let Some(next) = held.get(&partition) {
                        start(&mut running, next, Duration::ZERO);
                    }
                    continue;
                }
                let Some(ticket) = held.get(&partition).cloned() else { continue };
                if ticket.ended() {
                    held.remove(&partition);
                    ticket.done.cancel();
                    continue;
                }
                match result {
                    Err(e) => {
                        if e.disposition().is_err() {
                            break Err(e);
                        }
                        let delay = retry.next_delay();
                        warn!(mapping = %mapping.uuid, partition, error = %e, retry_in_s = delay.as_secs_f32(), "Partition stopped; restarting it from its committed offset.");
                        start(&mut running, &ticket, delay);
                    }
                    // The source ran dry (never with Kafka): start again.
                    Ok(()) => start(&mut running, &ticket, Duration::ZERO),
                }
            }
            _ = metadata.tick() => {
                match client.partitions().await {
                    Ok(now) if now != *partitions_tx.borrow().as_deref().unwrap_or_default() => {
                        info!(mapping = %mapping.uuid, topic = mapping.topic(), partitions = now.len(), "The topic's partitions changed.");
                        partitions_tx.send_replace(Some(now));
                    }
                    Ok(_) => {}
                    Err(e) => warn!(mapping = %mapping.uuid, error = %e, "Cannot refresh the topic's partitions."),
                }
            }
            _ = lag.tick() => {
                for ticket in held.values() {
                    let position = ticket.position.load(Ordering::Relaxed);
                    if let Some(waiting) = client.lag(ticket.partition, position) {
                        ticket.lag.store(waiting, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    // Stop what still runs (partitions whose tickets were not stopped end only on `stop` or an
    // error); each commits what it delivered.
    connection_stop.cancel();
    while running.join_next().await.is_some() {}
    for (_, old) in retired {
        old.done.cancel();
    }
    held.retain(|_, t| {
        let ended = t.ended();
        if ended {
            t.done.cancel();
        }
        !ended
    });
    if stop.is_cancelled() {
        finish(held);
    }
    outcome
}

/// What every partition of one mapping's connection shares.
#[derive(Debug)]
struct PartitionShared {
    /// `guard` and `position` are per partition and replaced from the ticket.
    spec: ConsumerSpec,
    position: StartingPosition,
    timestamp_ms: Option<i64>,
}

/// One tenure of one partition: from the committed offset (or the starting position, resolved
/// and committed at once) until its ticket is stopped, its lease is lost, or `connection_stop`.
async fn run_leased_partition<I: Invoker>(
    env: Arc<PollerEnv<I>>,
    client: KafkaClient,
    shared: Arc<PartitionShared>,
    ticket: PartitionTicket,
    connection_stop: CancellationToken,
    delay: Duration,
) -> (i32, u64, Result<(), RunError>) {
    let partition = ticket.partition;
    // Stops on the ticket or on the connection, whichever comes first.
    let stop = connection_stop.child_token();
    let forward = {
        let (stop, ticket_stop) = (stop.clone(), ticket.stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = ticket_stop.cancelled() => stop.cancel(),
                () = stop.cancelled() => {}
            }
        })
    };
    let result = async {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
        if ticket.ended() {
            return Ok(());
        }
        let checkpoint = client.checkpoint();
        let committed = checkpoint.committed(&[partition]).await.map_err(|e| RunError::Checkpoint(e.to_string()))?;
        let (start, resolved) = client.start_offsets(&committed, shared.position, shared.timestamp_ms).await?;
        if !resolved.is_empty() {
            if !ticket.guard.is_valid() {
                return Ok(());
            }
            // Pin the starting position at once: a restart must not re-resolve LATEST past
            // records that arrived in between.
            checkpoint.commit(&resolved).await.map_err(|e| RunError::Checkpoint(e.to_string()))?;
            info!(mapping = %shared.spec.mapping, partition, position = ?shared.position, offsets = ?resolved, "Starting position resolved and committed.");
        }
        let Some(&offset) = start.get(&partition) else { return Ok(()) };
        ticket.position.store(offset, Ordering::Relaxed);
        let source = client.open_partition(partition, offset)?;
        info!(mapping = %shared.spec.mapping, partition, offset, "Partition started.");
        let spec = ConsumerSpec { guard: ticket.guard.clone(), position: ticket.position.clone(), ..shared.spec.clone() };
        let result =
            consume(&spec, vec![source], checkpoint, env.invoker.clone(), &env.settings, env.metrics.clone(), &stop, &ticket.abandon)
                .await;
        if let Err(e) = client.close_partition(partition) {
            warn!(mapping = %shared.spec.mapping, partition, error = %e, "Cannot unassign the partition.");
        }
        let report = result?;
        info!(mapping = %shared.spec.mapping, partition, committed = ?report.committed, "Partition stopped.");
        Ok(())
    }
    .await;
    forward.abort();
    (partition, ticket.tenure, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryCheckpoint;
    use crate::event::{EventSource, KafkaRecord, TimestampType};
    use crate::source::MemorySource;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

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

    fn spec(max_records: usize) -> ConsumerSpec {
        ConsumerSpec {
            mapping: Arc::from("m"),
            function: Arc::from("f"),
            topic: Arc::from("t"),
            envelope: Arc::new(Envelope::new(&EventSource::SelfManaged, "k:9092")),
            limits: BatchLimits { max_records, window: Duration::from_millis(100), ..BatchLimits::default() },
            guard: Arc::new(LeaseGuard::unconditional()),
            position: Arc::default(),
        }
    }

    fn delivered_offsets(calls: &[serde_json::Value], partition: i32) -> Vec<i64> {
        calls
            .iter()
            .filter_map(|c| c["records"].get(format!("t-{partition}")))
            .flat_map(|r| r.as_array().unwrap().iter().map(|r| r["offset"].as_i64().unwrap()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failing_partition_is_retried_in_order_without_blocking_the_others_or_committing_past_it() {
        let invoker = Arc::new(ScriptedInvoker {
            failing_partition: Some(1),
            failures_left: Mutex::new(3),
            ..Default::default()
        });
        let checkpoint = MemoryCheckpoint::default();
        let sources = vec![MemorySource::ending_after(records(0, 10)), MemorySource::ending_after(records(1, 10))];
        let settings = PollerSettings::default();
        let stop = CancellationToken::new();
        let report = consume(
            &spec(4),
            sources,
            checkpoint.clone(),
            invoker.clone(),
            &settings,
            Arc::default(),
            &stop,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.committed, BTreeMap::from([(0, 10), (1, 10)]));
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
            vec![MemorySource::idle_after(records(0, 10))],
            checkpoint.clone(),
            invoker.clone(),
            &PollerSettings::default(),
            Arc::default(),
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
            vec![MemorySource::idle_after(records(0, 3))],
            checkpoint.clone(),
            invoker,
            &PollerSettings::default(),
            Arc::default(),
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
        let metrics = Arc::new(Metrics::default());
        let mut s = spec(100);
        s.limits.window = Duration::ZERO;
        let report = consume(
            &s,
            vec![MemorySource::ending_after(recs)],
            checkpoint.clone(),
            invoker.clone(),
            &PollerSettings::default(),
            metrics.clone(),
            &CancellationToken::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.committed, BTreeMap::from([(0, 5)]));
        let calls = invoker.calls.lock().unwrap().clone();
        assert_eq!(delivered_offsets(&calls, 0), [0, 1, 3, 4]);
        assert_eq!(metrics.snapshot(), (4, 2, 0, 1));
    }
}
