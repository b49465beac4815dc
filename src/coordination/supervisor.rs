//! The supervisor: one poller's control loop. It keeps the poller's identity (its heartbeat),
//! reads the mapping items and applies their states ([`super::reconcile`]), scans the leases and
//! carries out the fair-share plan ([`super::balance`]), runs one mapping consumer per mapping it
//! holds partitions of ([`super::consumer`]), scales ([`super::scaling`]) and hands everything
//! over when it stops.
//!
//! The rules live in those pure modules; this one does the I/O between them, in one task.
//!
//! Identity: a poller registers a heartbeat item under a random id and renews it every
//! `renew_every`, retrying a failed write at once within the guard's slack. If a renewal is
//! confirmed too late (or the item is gone), every guard of the poller lapses: it stops intake on
//! all its partitions, lets the invokes in flight finish (never abandoning them, so no other
//! poller invokes their records while they run — its old heartbeat is kept alive meanwhile, up to
//! the drain timeout), removes the old item and starts over under a new identity.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::balance::{BalanceInput, MappingView, plan};
use super::concurrency::{Gate, Grants, SLOT_TURN, step};
use super::connector::Connector;
use super::consumer::{ConsumerExit, ConsumerStatus, Deps, run_consumer};
use super::leases::{Heartbeat, Lease, LeaseError, LeaseId, LeaseStore, Load, OffsetReset, Snapshot};
use super::liveness::Liveness;
use super::reconcile::{Write, fingerprint, reconcile};
use super::scaling::{ScaleDecision, ScaleInput, Scaling};
use super::tenure::Tenure;
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::delivery::guard::LeaseGuard;
use crate::delivery::invoke::Invoker;
use crate::delivery::metrics::{MappingInfo, Metrics};
use crate::delivery::policy::StopReason;
use crate::model::mapping::EventSourceMapping;
use crate::model::state::State;
use crate::model::store::{Loaded, MappingStore, Status, StoreError};
use crate::ops::progress::ProgressBook;

/// Starts another poller: the Lambda invokes its own function asynchronously.
pub trait Spawner: Send + Sync + 'static {
    /// `reason` ends up in the new poller's event (`relay`, `scale-out`, `minimum-pollers`).
    fn spawn(&self, reason: &'static str, from: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Starts nothing: `esm poll`, where the user runs the processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSpawner;

impl Spawner for NoSpawner {
    async fn spawn(&self, _reason: &'static str, _from: &str) -> Result<(), String> {
        Err("this poller cannot start others".into())
    }
}

/// How this poller was started, which decides how it joins, scales and leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `esm poll`: runs until stopped, never relays or scales.
    Process,
    /// The Lambda's schedule: stays only if some work has no live poller.
    Schedule,
    /// A stopping Lambda poller's successor: scans fast for its predecessor's partitions.
    Relay,
    /// Started to scale out (or up to `MinimumPollers`).
    ScaleOut,
}

impl Start {
    const fn is_lambda(self) -> bool {
        !matches!(self, Self::Process)
    }
}

/// Why a poller ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `stop` fired (the deadline, a signal).
    Stopped,
    /// Started by the schedule and found nothing no live poller covers.
    NotNeeded,
    /// Idle beyond the minimum: scaled in (no successor).
    Idle,
}

const FAST_SCAN: Duration = Duration::from_millis(250);
/// How long a successor scans fast for its predecessor's partitions.
const SUCCESSOR_WARMUP: Duration = Duration::from_secs(15);
/// Malformed lease items are repaired after this many scans saw them (another version may be
/// mid-write only for an instant; a hand-written one stays).
const MALFORMED_SCANS: u32 = 3;
/// Heartbeat items silent for this many lease durations are removed.
const DEAD_POLLER_FACTOR: u32 = 3;
/// A consumer failing this many times in a row puts its problem on the mapping.
const PROBLEM_AFTER_FAILURES: u32 = 3;

/// A mapping's consumer in this poller.
struct ConsumerHandle {
    fingerprint: String,
    version: u64,
    tenures: mpsc::UnboundedSender<Tenure>,
    status: watch::Receiver<ConsumerStatus>,
    stop: CancellationToken,
    handle: JoinHandle<ConsumerExit>,
}

/// This poller's identity: its heartbeat item and the root of all its lease guards.
struct Identity {
    id: Arc<str>,
    root: Arc<LeaseGuard>,
    heartbeat: JoinHandle<()>,
}

/// A hand-over in progress: cancelled when the lease is released (or given up).
type Handovers = BTreeMap<LeaseId, CancellationToken>;

/// Runs one poller until `stop`, then hands every partition over (relaying first when it is a
/// Lambda stopping at its deadline).
#[allow(clippy::too_many_arguments)]
pub async fn run_poller<S, L, C, I, P>(
    store: Arc<S>,
    leases: Arc<L>,
    deps: Arc<Deps<C, I>>,
    clock: Arc<dyn Clock>,
    spawner: Option<Arc<P>>,
    start: Start,
    stop: CancellationToken,
) -> Exit
where
    S: MappingStore,
    L: LeaseStore,
    C: Connector,
    I: Invoker,
    P: Spawner,
{
    let mut poller = Supervisor::new(store, leases, deps, clock, spawner, start);
    poller.stopping = stop.child_token();
    if start == Start::Schedule && !poller.needed().await {
        info!("Every partition has a live poller; this scheduled poller is not needed.");
        return Exit::NotNeeded;
    }
    let exit = poller.run(&stop).await;
    poller.shutdown(exit == Exit::Stopped && start.is_lambda()).await;
    exit
}

struct Supervisor<S, L, C, I, P> {
    store: Arc<S>,
    leases: Arc<L>,
    deps: Arc<Deps<C, I>>,
    clock: Arc<dyn Clock>,
    spawner: Option<Arc<P>>,
    start: Start,
    started: Instant,
    identity: Option<Identity>,
    load: Arc<Mutex<Load>>,
    liveness: Liveness,
    consumers: HashMap<String, ConsumerHandle>,
    held: BTreeMap<LeaseId, Tenure>,
    handovers: Handovers,
    /// Cancelled when this poller stops: from then on hand-overs abandon invokes that outlive the
    /// drain timeout ([`Tenure::hand_over`]).
    stopping: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The valid, consumed mappings as of the last refresh.
    wanted: Vec<EventSourceMapping>,
    /// Every UUID in the mappings table as of the last refresh (`None` before the first).
    known: Option<BTreeSet<String>>,
    last_refresh: Option<Instant>,
    refresh_backoff: Backoff,
    last_scan: Option<Instant>,
    fast_scan: bool,
    scaling: Scaling,
    /// Malformed lease items by key: how many scans saw them.
    malformed: BTreeMap<String, u32>,
    /// What this poller last wrote as a mapping's `LastProcessingResult`.
    reported: HashMap<String, String>,
    /// Its partitions' progress between scans, for the heartbeat and the metrics.
    progress: ProgressBook,
    /// This poller's share of each capped mapping's invoke slots (`MaximumConcurrency`).
    gates: HashMap<String, Arc<Gate>>,
    /// Each capped mapping's grant as this poller last saw it, and since when.
    grant_since: HashMap<String, (u32, Instant)>,
}

impl<S, L, C, I, P> Supervisor<S, L, C, I, P>
where
    S: MappingStore,
    L: LeaseStore,
    C: Connector,
    I: Invoker,
    P: Spawner,
{
    fn new(
        store: Arc<S>,
        leases: Arc<L>,
        deps: Arc<Deps<C, I>>,
        clock: Arc<dyn Clock>,
        spawner: Option<Arc<P>>,
        start: Start,
    ) -> Self {
        let settings = &deps.settings;
        let now = Instant::now();
        Self {
            refresh_backoff: Backoff::new(settings.reconnect.base, settings.reconnect.cap),
            liveness: Liveness::new(settings.lease.duration),
            scaling: Scaling::new(settings.scale_window, now),
            store,
            leases,
            clock,
            spawner,
            start,
            started: now,
            identity: None,
            load: Arc::default(),
            consumers: HashMap::new(),
            held: BTreeMap::new(),
            handovers: BTreeMap::new(),
            stopping: CancellationToken::new(),
            tasks: Vec::new(),
            wanted: Vec::new(),
            known: None,
            last_refresh: None,
            last_scan: None,
            fast_scan: false,
            malformed: BTreeMap::new(),
            reported: HashMap::new(),
            progress: ProgressBook::default(),
            gates: HashMap::new(),
            grant_since: HashMap::new(),
            deps,
        }
    }

    fn id(&self) -> Option<Arc<str>> {
        self.identity.as_ref().map(|i| i.id.clone())
    }

    /// For a scheduled poller: is there work no live poller covers? Judged on the heartbeats'
    /// wall-clock expiry (a guess is enough here: joining needlessly only costs one idle run).
    async fn needed(&mut self) -> bool {
        let Ok(items) = self.store.list().await else { return true };
        let reconciled = reconcile(items, &HashMap::new());
        // Items to disable, transitions to settle, deletions to finish need a poller.
        if !reconciled.writes.is_empty() {
            return true;
        }
        if reconciled.wanted.is_empty() {
            return false;
        }
        let Ok(snapshot) = self.leases.snapshot().await else { return true };
        let now_ms = self.clock.epoch_ms();
        let live: BTreeSet<&str> =
            snapshot.pollers.iter().filter(|p| p.expires_at_ms >= now_ms).map(|p| p.id.as_str()).collect();
        let active = snapshot.pollers.iter().filter(|p| live.contains(p.id.as_str()) && !p.load.stopping).count();
        let minimum = reconciled.wanted.iter().map(minimum_pollers).max().unwrap_or(0);
        if active == 0 || active < minimum {
            return true;
        }
        reconciled.wanted.iter().any(|m| {
            let leases = snapshot.of(&m.uuid);
            leases.leases.is_empty() || leases.leases.iter().any(|l| l.is_free(&|id: &str| live.contains(id)))
        })
    }

    async fn run(&mut self, stop: &CancellationToken) -> Exit {
        loop {
            if stop.is_cancelled() {
                return Exit::Stopped;
            }
            self.keep_identity(stop).await;
            self.reap().await;
            self.handovers.retain(|_, done| !done.is_cancelled());
            let refresh_due = self.last_refresh.is_none_or(|at| at.elapsed() >= self.deps.settings.refresh_interval);
            let mut changed = false;
            if refresh_due {
                let before: Vec<(String, u64)> = self.wanted.iter().map(|m| (m.uuid.clone(), m.version)).collect();
                self.refresh().await;
                changed = self.wanted.iter().map(|m| (m.uuid.clone(), m.version)).ne(before);
            }
            // A change of the wanted mappings is acted on at once, with a scan.
            let scan_due = changed || self.last_scan.is_none_or(|at| at.elapsed() >= self.scan_every());
            if self.identity.is_some() && scan_due {
                self.last_scan = Some(Instant::now());
                if self.balance().await == Some(Exit::Idle) {
                    return Exit::Idle;
                }
            }
            self.report().await;
            // Wake for whichever is due first: the next lease scan or the next mappings refresh.
            let until = |last: Option<Instant>, every: Duration| {
                last.map_or(Duration::ZERO, |at| every.saturating_sub(at.elapsed()))
            };
            let delay = until(self.last_scan, self.scan_every())
                .min(until(self.last_refresh, self.deps.settings.refresh_interval))
                .max(Duration::from_millis(50));
            tokio::select! {
                () = stop.cancelled() => return Exit::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// How long until the next lease scan: short while partitions are about to move.
    fn scan_every(&self) -> Duration {
        let warming_up =
            self.start == Start::Relay && self.started.elapsed() < SUCCESSOR_WARMUP && self.held.is_empty();
        if self.fast_scan || warming_up { FAST_SCAN } else { self.deps.settings.scan_every }
    }

    fn heartbeat(&self, stopping: bool) -> Heartbeat {
        let mut load = *self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        load.stopping |= stopping;
        let ttl = i64::try_from(self.deps.settings.lease.duration.as_millis()).unwrap_or(i64::MAX);
        Heartbeat { expires_at_ms: self.clock.epoch_ms().saturating_add(ttl), load }
    }

    /// Registers this poller, or starts over under a new identity when its guard lapsed.
    async fn keep_identity(&mut self, stop: &CancellationToken) {
        if let Some(identity) = &self.identity {
            if identity.root.is_valid() {
                return;
            }
            let old = identity.id.clone();
            warn!(poller = %old, partitions = self.held.len(), "Heartbeat not confirmed in time: stopping every partition and starting over under a new identity.");
            identity.heartbeat.abort();
            // Keep the old heartbeat alive (best effort) while the invokes in flight finish, so
            // no other poller takes their partitions and invokes the same records meanwhile.
            let keeper = {
                let (leases, settings, beat) = (self.leases.clone(), self.deps.settings.lease, self.heartbeat(true));
                let old = old.clone();
                tokio::spawn(async move {
                    loop {
                        let _ = tokio::time::timeout(HEARTBEAT_ATTEMPT_TIMEOUT, leases.heartbeat(&old, beat)).await;
                        tokio::time::sleep(KEEPER_EVERY.min(settings.renew_every)).await;
                    }
                })
            };
            let tenures: Vec<Tenure> = std::mem::take(&mut self.held).into_values().collect();
            let drain = self.deps.settings.drain_timeout;
            let waits = tenures.iter().map(|t| t.wind_down(drain));
            let all_done = futures::future::join_all(waits).await.into_iter().all(|done| done);
            if !all_done {
                warn!(poller = %old, "An invoke outlived the drain timeout; its partition is released with a fence: the next holder waits until it cannot be running (the function's timeout).");
                for t in &tenures {
                    t.drop_now();
                }
                // The old heartbeat (kept alive meanwhile) still holds these leases: fence them.
                // DynamoDB may be what failed: retry until the fence is written, the invoke
                // cannot be running any more, someone else has the lease, or the poller stops.
                for t in tenures.iter().filter(|t| !t.is_finished()) {
                    while let Some(fence) = t.progress.unanswered_for() {
                        match self.leases.release_fenced(&t.lease, &old, fence).await {
                            Ok(()) | Err(LeaseError::Lost { .. }) => break,
                            Err(e) => {
                                warn!(lease = %t.id(), error = %e, "Cannot fence the partition yet; retrying while the abandoned invoke may run.");
                                tokio::select! {
                                    () = stop.cancelled() => break,
                                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                                }
                            }
                        }
                    }
                }
            }
            keeper.abort();
            self.identity = None;
            // Frees the old identity's leases at once: nothing runs under them any more.
            if let Err(e) = self.leases.remove_poller(&old).await {
                warn!(poller = %old, error = %e, "Cannot remove the old heartbeat; others take its leases once it is silent.");
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let id: Arc<str> = Arc::from(format!("poller-{}", uuid::Uuid::new_v4()));
        let sent = Instant::now();
        let lease = self.deps.settings.lease;
        match self.leases.register(&id, self.heartbeat(false)).await {
            Ok(()) => {
                let root = Arc::new(LeaseGuard::until(sent + lease.duration - lease.safety_margin));
                let heartbeat = tokio::spawn(heartbeat_loop(
                    self.leases.clone(),
                    id.clone(),
                    root.clone(),
                    lease,
                    self.load.clone(),
                    self.deps.metrics.clone(),
                    self.clock.clone(),
                ));
                info!(poller = %id, "Poller registered.");
                self.identity = Some(Identity { id, root, heartbeat });
            }
            Err(e) => warn!(error = %e, "Cannot register the poller's heartbeat; retrying."),
        }
    }

    /// Collects consumers that ended by themselves and records unrecoverable errors on the item.
    async fn reap(&mut self) {
        let finished: Vec<String> =
            self.consumers.iter().filter(|(_, c)| c.handle.is_finished()).map(|(u, _)| u.clone()).collect();
        for uuid in finished {
            let Some(consumer) = self.consumers.remove(&uuid) else { continue };
            self.hand_over_mapping(&uuid);
            match consumer.handle.await {
                Ok(ConsumerExit::Unrecoverable { reason, message }) => {
                    disable_consumed(&*self.store, &uuid, &consumer.fingerprint, consumer.version, reason, &message)
                        .await;
                    self.last_refresh = None;
                }
                Ok(ConsumerExit::Stopped) => {}
                Err(e) => error!(mapping = %uuid, error = %e, "Mapping consumer crashed; it will be restarted."),
            }
        }
    }

    /// Re-reads the mappings table and applies states.
    async fn refresh(&mut self) {
        let items = match self.store.list().await {
            Ok(items) => {
                self.refresh_backoff.reset();
                self.last_refresh = Some(Instant::now());
                items
            }
            Err(e) => {
                let delay = self.refresh_backoff.next_delay();
                // Try again after the backoff, not on every scan.
                self.last_refresh = Some(Instant::now() + delay.saturating_sub(self.deps.settings.refresh_interval));
                error!(error = %e, retry_in_s = delay.as_secs_f32(), "Cannot read the mappings table; running consumers continue.");
                return;
            }
        };
        let running: HashMap<String, String> =
            self.consumers.iter().map(|(u, c)| (u.clone(), c.fingerprint.clone())).collect();
        let reconciled = reconcile(items, &running);
        if reconciled.nameless > 0 {
            error!(
                items = reconciled.nameless,
                "Mappings-table items without a UUID string are ignored. Remove them or give them a UUID."
            );
        }
        for uuid in &reconciled.stop {
            info!(mapping = %uuid, "Mapping no longer wanted as it runs here (disabled, deleted or changed); stopping its consumer.");
            self.stop_consumer(uuid);
        }
        // Consumers of mappings whose items vanished.
        let gone: Vec<String> = self.consumers.keys().filter(|u| !reconciled.all.contains(*u)).cloned().collect();
        for uuid in gone {
            info!(mapping = %uuid, "Mapping item removed.");
            self.stop_consumer(&uuid);
        }
        for write in reconciled.writes {
            self.apply(write).await;
        }
        self.wanted = reconciled.wanted;
        self.known = Some(reconciled.all);
    }

    async fn apply(&mut self, write: Write) {
        match write {
            Write::Settle { mapping, to } => {
                let status = Status {
                    state: to,
                    reason: mapping.state_transition_reason.clone().unwrap_or_else(|| "USER_INITIATED".to_owned()),
                    last_processing_result: mapping
                        .last_processing_result
                        .clone()
                        .unwrap_or_else(|| "No records processed".to_owned()),
                };
                match self.store.set_status(&mapping.uuid, Some(mapping.version), &status).await {
                    Ok(()) => {
                        info!(mapping = %mapping.uuid, from = mapping.state.as_str(), to = to.as_str(), "Mapping state changed.")
                    }
                    // Someone else (another poller, a user) wrote first: the next refresh sees it.
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => warn!(mapping = %mapping.uuid, error = %e, "Could not update the mapping's state."),
                }
            }
            Write::Disable { uuid, version, reason, message } => {
                error!(mapping = %uuid, error = %message, "Mapping item is not a valid mapping; disabling it.");
                if !disable(&*self.store, &uuid, version, reason, &message).await {
                    info!(mapping = %uuid, "The item changed since it was read; the next refresh looks again.");
                }
            }
            Write::Remove { uuid, version } => match self.store.delete(&uuid, version).await {
                Ok(()) => {
                    info!(mapping = %uuid, "Mapping deleted.");
                    // Its leases go once its hand-overs released them.
                    let waits = self.mapping_handovers(&uuid);
                    let leases = self.leases.clone();
                    self.tasks.push(tokio::spawn(async move {
                        futures::future::join_all(waits.iter().map(CancellationToken::cancelled)).await;
                        if let Err(e) = leases.delete_mapping(&uuid).await {
                            warn!(mapping = %uuid, error = %e, "Could not remove the deleted mapping's leases; the next scan retries.");
                        }
                    }));
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => warn!(mapping = %uuid, error = %e, "Could not delete the mapping item."),
            },
        }
    }

    fn mapping_handovers(&self, uuid: &str) -> Vec<CancellationToken> {
        self.handovers.iter().filter(|(id, _)| &*id.mapping == uuid).map(|(_, done)| done.clone()).collect()
    }

    /// Starts the mapping's consumer if it has none.
    fn ensure_consumer(&mut self, mapping: &EventSourceMapping) -> &ConsumerHandle {
        let uuid = mapping.uuid.clone();
        let deps = self.deps.clone();
        // Closed until the first grant.
        let gate = mapping.maximum_concurrency().map(|_| self.gates.entry(uuid.clone()).or_default().clone());
        self.consumers.entry(uuid).or_insert_with(|| {
            let (tenures_tx, tenures_rx) = mpsc::unbounded_channel();
            let (status_tx, status_rx) = watch::channel(ConsumerStatus::default());
            let stop = CancellationToken::new();
            info!(mapping = %mapping.uuid, topic = mapping.topic(), function = %mapping.function_arn, "Starting consumer.");
            let handle = tokio::spawn(run_consumer(deps, mapping.clone(), tenures_rx, status_tx, stop.clone(), gate));
            ConsumerHandle {
                fingerprint: fingerprint(mapping),
                version: mapping.version,
                tenures: tenures_tx,
                status: status_rx,
                stop,
                handle,
            }
        })
    }

    /// Hands the mapping's partitions over and stops its consumer once they are done.
    fn stop_consumer(&mut self, uuid: &str) {
        self.hand_over_mapping(uuid);
        if let Some(consumer) = self.consumers.remove(uuid) {
            info!(mapping = %uuid, "Stopping consumer.");
            let waits = self.mapping_handovers(uuid);
            // The consumer ends after its partitions have committed; a new consumer for the same
            // mapping may start meanwhile: offsets are only committed after delivery.
            self.tasks.push(tokio::spawn(async move {
                futures::future::join_all(waits.iter().map(CancellationToken::cancelled)).await;
                consumer.stop.cancel();
                let _ = consumer.handle.await;
            }));
        }
    }

    fn hand_over_mapping(&mut self, uuid: &str) {
        let ids: Vec<LeaseId> = self.held.keys().filter(|id| &*id.mapping == uuid).cloned().collect();
        for id in ids {
            self.hand_over(&id);
        }
    }

    /// Stops the partition (no new batch, the in-flight one finishes within the drain timeout),
    /// then releases the lease once its last commit is done.
    fn hand_over(&mut self, id: &LeaseId) {
        let Some(tenure) = self.held.remove(id) else { return };
        let Some(owner) = self.id() else {
            tenure.drop_now();
            return;
        };
        let done = CancellationToken::new();
        self.handovers.insert(id.clone(), done.clone());
        let (leases, drain, urgent) = (self.leases.clone(), self.deps.settings.drain_timeout, self.stopping.clone());
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let _guard = done.drop_guard();
            let mut fence = None;
            if tenure.hand_over(drain, &urgent).await == super::tenure::Ended::Abandoned {
                fence = tenure.progress.unanswered_for();
                warn!(lease = %tenure.id(), fence_ms = fence.map(|f| f.as_millis()), "In-flight invoke did not finish in time; abandoned it. Its batch will be delivered again, by the next holder once the invoke cannot be running any more (the function's timeout, fence_ms from now).");
            }
            // An offset reset applied here is marked before the next holder could apply it again.
            if let Some(request) = tenure.reset.to_acknowledge()
                && let Err(e) = leases.reset_applied(&tenure.lease, &owner, &request).await
            {
                warn!(lease = %tenure.id(), error = %e, "Could not mark the offset reset applied; the next holder applies it again.");
            }
            let released = match fence {
                Some(fence) => leases.release_fenced(&tenure.lease, &owner, fence).await,
                None => leases.release(&tenure.lease, &owner).await,
            };
            match released {
                Ok(()) => info!(lease = %tenure.id(), "Partition handed over."),
                Err(LeaseError::Lost { .. }) => {}
                Err(e) => warn!(lease = %tenure.id(), error = %e, "Could not release the lease; the next lease scan retries."),
            }
        }));
    }

    /// One lease scan: read the table, observe heartbeats, carry out the fair-share plan,
    /// repair what is broken, and scale.
    async fn balance(&mut self) -> Option<Exit> {
        let id = self.id()?;
        // Grants before the heartbeats: a poller named in them registered before this read, so
        // one missing from the snapshot below is gone, not yet unseen.
        let grants = self.read_grants().await;
        let snapshot = match self.leases.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                warn!(error = %e, "Cannot read the leases table; keeping the current leases.");
                return None;
            }
        };
        let now = Instant::now();
        self.liveness.observe(&snapshot.pollers, now);
        // This poller is live whatever the table said (its own write may be newer than the read).
        let live: BTreeSet<String> = snapshot
            .pollers
            .iter()
            .map(|p| p.id.clone())
            .filter(|p| self.liveness.is_live(p, now))
            .chain(std::iter::once(id.to_string()))
            .collect();
        let mut active: BTreeMap<String, u32> = snapshot
            .pollers
            .iter()
            .filter(|p| live.contains(&p.id) && !p.load.stopping)
            .map(|p| (p.id.clone(), p.load.held))
            .collect();
        active.insert(id.to_string(), u32::try_from(self.held.len()).unwrap_or(u32::MAX));
        let others_stopping = snapshot.pollers.iter().any(|p| live.contains(&p.id) && p.load.stopping && *p.id != *id);

        let mut views = Vec::new();
        for mapping in self.wanted.clone() {
            let stored = snapshot.of(&mapping.uuid);
            self.repair_malformed(&mapping, &stored.malformed).await;
            let leases: Vec<Lease> = stored.leases.into_iter().filter(|l| *l.id.topic == *mapping.topic()).collect();
            // The consumer finds the partitions: a mapping without lease items needs one.
            let discovered = if leases.is_empty() || self.consumers.contains_key(&mapping.uuid) {
                self.ensure_consumer(&mapping).status.borrow().partitions.clone()
            } else {
                None
            };
            views.push(MappingView {
                uuid: Arc::from(mapping.uuid.as_str()),
                topic: Arc::from(mapping.topic()),
                maximum_pollers: maximum_pollers(&mapping),
                leases,
                discovered,
            });
        }
        let resets: BTreeMap<LeaseId, OffsetReset> =
            snapshot.mappings.values().flat_map(|m| m.resets.iter().map(|r| (r.id.clone(), r.clone()))).collect();
        self.apply_resets(&resets, &id).await;
        let held: BTreeMap<LeaseId, u64> = self.held.iter().map(|(id, t)| (id.clone(), t.counter())).collect();
        let busy: BTreeSet<LeaseId> = self.handovers.keys().cloned().collect();
        let plan = plan(&BalanceInput {
            me: &id,
            live: &live,
            active: &active,
            others_stopping,
            mappings: &views,
            held: &held,
            busy: &busy,
            max_partitions: self.deps.settings.max_partitions,
            seed: fastrand::u64(..),
        });
        for (lease_id, from_earliest) in &plan.ensure {
            if let Err(e) = self.leases.ensure(lease_id, *from_earliest).await {
                warn!(lease = %lease_id, error = %e, "Cannot create the partition's lease.");
            }
        }
        if !plan.ensure.is_empty() {
            info!(leases = ?plan.ensure.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>(), "Leases created for new partitions.");
        }
        for lease_id in &plan.lost {
            warn!(lease = %lease_id, "Lease taken by another poller; stopping the partition at once.");
            if let Some(tenure) = self.held.remove(lease_id) {
                tenure.drop_now();
            }
        }
        for lease in &plan.orphaned {
            info!(lease = %lease.id, "Releasing a lease this poller holds but does not run.");
            match self.leases.release(lease, &id).await {
                Ok(()) | Err(LeaseError::Lost { .. }) => {}
                Err(e) => warn!(lease = %lease.id, error = %e, "Cannot release the lease."),
            }
        }
        if !plan.hand_over.is_empty() {
            info!(poller = %id, held = self.held.len(), live = active.len(), handing_over = plan.hand_over.len(), "Over fair share; handing partitions over.");
        }
        for lease_id in &plan.hand_over {
            self.hand_over(lease_id);
        }
        let mut lost_race = false;
        for lease in plan.take {
            if !self.identity.as_ref().is_some_and(|i| i.root.is_valid()) {
                break;
            }
            match self.leases.acquire(&lease, &id).await {
                Ok(acquired) => {
                    let reset = resets.get(&acquired.id).cloned();
                    // Taking the lease cleared the fence; the tenure keeps what it said.
                    self.run_tenure(Lease { fence_ms: lease.fence_ms, ..acquired }, reset);
                }
                Err(LeaseError::Lost { .. }) => lost_race = true,
                Err(e) => warn!(lease = %lease.id, error = %e, "Cannot take the lease."),
            }
        }
        self.stop_idle_consumers(&views);
        let slots_moving = self.share_slots(&id, &live, &grants).await;
        self.clean_up(&snapshot, &live, &id, now).await;
        // Scan often while partitions are about to move, or a heartbeat is overdue (its poller
        // may be dead: its partitions move the moment it can be declared so).
        self.fast_scan = plan.fast_scan
            || lost_race
            || slots_moving
            || self.liveness.any_overdue(now, self.deps.settings.lease.renew_every);
        let own_lag = self.update_load();
        // Others' lag as their heartbeats report it; this poller's as measured now.
        let others_lag: u64 =
            snapshot.pollers.iter().filter(|p| active.contains_key(&p.id) && *p.id != *id).map(|p| p.load.lag).sum();
        self.scale(&id, &active, own_lag + others_lag, &views)
    }

    /// The grants items of the capped mappings this poller runs (those it cannot read are left
    /// out: their gates keep their size until the next scan).
    async fn read_grants(&mut self) -> BTreeMap<String, Grants> {
        let capped: BTreeSet<String> =
            self.wanted.iter().filter(|m| m.maximum_concurrency().is_some()).map(|m| m.uuid.clone()).collect();
        self.gates.retain(|uuid, _| capped.contains(uuid));
        let mut read = BTreeMap::new();
        for uuid in capped {
            match self.leases.grants(&uuid).await {
                Ok(grants) => {
                    read.insert(uuid, grants);
                }
                Err(e) => warn!(mapping = %uuid, error = %e, "Cannot read the mapping's concurrency grants."),
            }
        }
        read
    }

    /// Takes this poller's fair share of each capped mapping's slots, or gives back what it
    /// holds over it ([`super::concurrency::step`]), and sizes its gates. True while a grant is
    /// still moving (the next scan should come soon).
    async fn share_slots(&mut self, id: &str, live: &BTreeSet<String>, grants: &BTreeMap<String, Grants>) -> bool {
        let mut moving = false;
        let wanted = self.wanted.clone();
        for mapping in &wanted {
            let (Some(limit), Some(read), Some(gate)) =
                (mapping.maximum_concurrency(), grants.get(&mapping.uuid), self.gates.get(&mapping.uuid))
            else {
                continue;
            };
            let partitions = self.held.keys().filter(|l| *l.mapping == *mapping.uuid).count();
            let factor = mapping.parallelization_factor.unwrap_or(1);
            let want = u32::try_from(partitions).unwrap_or(u32::MAX).saturating_mul(factor);
            // How long this poller has held its current grant, on its own clock.
            let held = read.granted.get(id).copied().unwrap_or(0);
            let since = match self.grant_since.get(&mapping.uuid) {
                Some(&(grant, at)) if grant == held => at,
                _ => {
                    self.grant_since.insert(mapping.uuid.clone(), (held, Instant::now()));
                    Instant::now()
                }
            };
            let may_yield = since.elapsed() >= SLOT_TURN;
            let step = step(read, id, want, gate.in_use(), live, limit, may_yield);
            gate.set_capacity(step.gate_now);
            // A smaller grant waits for invokes in flight: look again soon.
            moving |= step.write.is_none() && held > step.gate_after;
            let Some(write) = step.write else { continue };
            match self.leases.write_grants(&mapping.uuid, &write).await {
                Ok(_) => {
                    if step.gate_after != step.gate_now {
                        debug!(mapping = %mapping.uuid, slots = step.gate_after, want, limit, "Concurrency grant changed.");
                    }
                    gate.set_capacity(step.gate_after);
                }
                Err(LeaseError::Lost { .. }) => moving = true,
                Err(e) => warn!(mapping = %mapping.uuid, error = %e, "Cannot write the mapping's concurrency grants."),
            }
        }
        moving
    }

    /// Hands offset resets to the partitions they are for, and marks on the lease items those
    /// the partitions applied ([`crate::ops::reset`]).
    async fn apply_resets(&mut self, pending: &BTreeMap<LeaseId, OffsetReset>, id: &str) {
        for (lease_id, tenure) in &self.held {
            if let Some(reset) = pending.get(lease_id) {
                tenure.reset.request(reset.clone());
            }
            let Some(request) = tenure.reset.to_acknowledge() else { continue };
            match self.leases.reset_applied(&tenure.lease, id, &request).await {
                Ok(()) | Err(LeaseError::Lost { .. }) => tenure.reset.acknowledged(&request),
                Err(e) => warn!(lease = %lease_id, error = %e, "Cannot mark the offset reset applied; retrying."),
            }
        }
    }

    /// Hands a taken lease to its mapping's consumer, with the offset reset it must apply first.
    fn run_tenure(&mut self, lease: Lease, reset: Option<OffsetReset>) {
        let Some(root) = self.identity.as_ref().map(|i| i.root.clone()) else { return };
        let Some(mapping) = self.wanted.iter().find(|m| *m.uuid == *lease.id.mapping).cloned() else { return };
        let tenure = Tenure::new(lease, Arc::new(LeaseGuard::child(root)));
        if let Some(reset) = reset {
            tenure.reset.request(reset);
        }
        info!(lease = %tenure.id(), counter = tenure.counter(), "Lease taken.");
        let consumer = self.ensure_consumer(&mapping);
        if consumer.tenures.send(tenure.clone()).is_err() {
            tenure.drop_now();
        }
        self.held.insert(tenure.id().clone(), tenure);
    }

    /// A consumer started only to find the partitions is not needed once their leases exist and
    /// none is this poller's.
    fn stop_idle_consumers(&mut self, views: &[MappingView]) {
        let idle: Vec<String> = views
            .iter()
            .filter(|v| {
                !v.leases.is_empty()
                    && !self.held.keys().any(|id| id.mapping == v.uuid)
                    && !self.handovers.keys().any(|id| id.mapping == v.uuid)
                    && v.discovered
                        .as_ref()
                        .is_some_and(|ps| ps.iter().all(|p| v.leases.iter().any(|l| l.id.partition == *p)))
            })
            .map(|v| v.uuid.to_string())
            .collect();
        for uuid in idle {
            if let Some(consumer) = self.consumers.remove(&uuid) {
                consumer.stop.cancel();
            }
        }
    }

    /// Lease items that cannot be read stop their partition; after a few scans they are
    /// recreated, and the mapping says so meanwhile.
    async fn repair_malformed(&mut self, mapping: &EventSourceMapping, malformed: &[super::leases::MalformedLease]) {
        for bad in malformed {
            let seen = {
                let seen = self.malformed.entry(bad.key.clone()).or_insert(0);
                *seen += 1;
                *seen
            };
            let problem = format!("PROBLEM: lease item {} is malformed ({}); recreating it", bad.key, bad.problem);
            warn!(mapping = %mapping.uuid, key = %bad.key, problem = %bad.problem, "Lease item is malformed; its partition is not consumed until it is recreated.");
            self.report_problem(&mapping.uuid, &problem).await;
            if seen >= MALFORMED_SCANS {
                match self.leases.delete_malformed(&bad.key).await {
                    Ok(()) => {
                        self.malformed.remove(&bad.key);
                        if let Some(partition) = bad.partition {
                            let id = LeaseId::new(&mapping.uuid, mapping.topic(), partition);
                            let _ = self.leases.ensure(&id, true).await;
                        }
                    }
                    Err(e) => warn!(key = %bad.key, error = %e, "Cannot remove the malformed lease item."),
                }
            }
        }
    }

    /// The leader (lowest live id) removes heartbeat items of pollers long dead and the leases of
    /// mappings that no longer exist.
    async fn clean_up(&mut self, snapshot: &Snapshot, live: &BTreeSet<String>, id: &str, now: Instant) {
        if live.iter().next().is_none_or(|lowest| lowest != id) {
            return;
        }
        for dead in self.liveness.long_dead(&snapshot.pollers, now, DEAD_POLLER_FACTOR) {
            match self.leases.remove_dead_poller(dead).await {
                Ok(()) => info!(poller = %dead.id, "Removed the heartbeat of a poller long gone."),
                Err(e) => warn!(poller = %dead.id, error = %e, "Cannot remove a dead poller's heartbeat."),
            }
        }
        let Some(known) = &self.known else { return };
        for (mapping, stored) in &snapshot.mappings {
            let owned = stored.leases.iter().any(|l| l.owner.as_deref().is_some_and(|o| live.contains(o)));
            if !known.contains(mapping) && !owned && !self.handovers.keys().any(|l| *l.mapping == **mapping) {
                info!(mapping = %mapping, "Removing the leases of a mapping that no longer exists.");
                if let Err(e) = self.leases.delete_mapping(mapping).await {
                    warn!(mapping = %mapping, error = %e, "Cannot remove a deleted mapping's leases.");
                }
            }
        }
    }

    /// The load reported with the next heartbeat, and the progress published with it and in the
    /// metrics; returns this poller's lag.
    fn update_load(&mut self) -> u64 {
        let reports = self.progress.observe(
            self.held.iter().map(|(id, t)| (id, t.counter(), &*t.progress)),
            Instant::now(),
            self.clock.epoch_ms(),
        );
        let infos = self
            .wanted
            .iter()
            .map(|m| {
                let metrics = m
                    .metrics_config
                    .as_ref()
                    .and_then(|c| c.get("Metrics"))
                    .and_then(|v| v.as_array())
                    .map(|v| v.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                (m.uuid.clone(), MappingInfo { function: crate::ops::emf::function_name(&m.function_arn), metrics })
            })
            .collect();
        self.deps.metrics.publish(reports, infos);
        let lag: u64 = self.held.values().map(|t| t.progress.lag()).sum();
        let mut load = self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        load.held = u32::try_from(self.held.len()).unwrap_or(u32::MAX);
        load.lag = lag;
        lag
    }

    fn scale(
        &mut self,
        id: &str,
        active: &BTreeMap<String, u32>,
        total_lag: u64,
        views: &[MappingView],
    ) -> Option<Exit> {
        let ids: Vec<&str> = active.keys().map(String::as_str).collect();
        let partitions: usize = views.iter().map(|v| v.leases.len()).sum();
        let cap = views
            .iter()
            .map(|v| v.leases.len().min(v.maximum_pollers))
            .sum::<usize>()
            .min(self.deps.settings.max_pollers)
            .min(partitions);
        let input = ScaleInput {
            now: Instant::now(),
            me: id,
            active: &ids,
            total_lag,
            minimum: self.wanted.iter().map(minimum_pollers).max().unwrap_or(0),
            cap,
            can_spawn: self.start.is_lambda() && self.spawner.is_some(),
            can_scale_in: self.start.is_lambda(),
            held: self.held.len(),
        };
        match self.scaling.decide(&input) {
            ScaleDecision::Stay => None,
            ScaleDecision::Spawn { count, reason } => {
                info!(poller = %id, live = ids.len(), starting = count, cap, lag = input.total_lag, reason, "Starting more pollers.");
                if let Some(spawner) = self.spawner.clone() {
                    let from = id.to_owned();
                    self.tasks.push(tokio::spawn(async move {
                        for _ in 0..count {
                            if let Err(e) = spawner.spawn(reason, &from).await {
                                warn!(error = %e, "Cannot start another poller.");
                            }
                        }
                    }));
                }
                None
            }
            ScaleDecision::StopIdle => {
                info!(poller = %id, live = ids.len(), "No lag for a whole window, or more pollers than the work can use: this one stops.");
                Some(Exit::Idle)
            }
        }
    }

    /// Puts consumers' persistent problems, and recovery, on their mappings.
    async fn report(&mut self) {
        let mut writes = Vec::new();
        for mapping in &self.wanted {
            let Some(consumer) = self.consumers.get(&mapping.uuid) else { continue };
            let status = consumer.status.borrow().clone();
            let delivered = self
                .held
                .values()
                .any(|t| *t.id().mapping == *mapping.uuid && t.progress.batches.load(Ordering::Relaxed) > 0);
            // The data plane's word (`OK`, or the last give-up or destination problem) wins
            // over "delivered" once a batch was resolved.
            let fate = self.deps.metrics.mapping(&mapping.uuid).result();
            let result = match (status.problem, fate) {
                (Some(problem), _) if status.failures >= PROBLEM_AFTER_FAILURES => problem,
                (_, Some(fate)) => fate,
                _ if delivered => "OK".to_owned(),
                _ => continue,
            };
            let stored = self.reported.get(&mapping.uuid).or(mapping.last_processing_result.as_ref());
            if stored != Some(&result) {
                writes.push((mapping.uuid.clone(), result));
            }
        }
        for (uuid, result) in writes {
            self.report_problem(&uuid, &result).await;
        }
    }

    async fn report_problem(&mut self, uuid: &str, result: &str) {
        if self.reported.get(uuid).map(String::as_str) == Some(result) {
            return;
        }
        match self.store.set_processing_result(uuid, result).await {
            Ok(()) => {
                self.reported.insert(uuid.to_owned(), result.to_owned());
            }
            Err(e) => warn!(mapping = %uuid, error = %e, "Cannot record the mapping's processing result."),
        }
    }

    /// Relay (a Lambda stopping at its deadline, holding leases), hand everything over, stop the
    /// consumers, remove the heartbeat.
    async fn shutdown(&mut self, relay: bool) {
        // Whatever ended the run, hand-overs now get the drain timeout.
        self.stopping.cancel();
        // What the batches since the last report came to (`OK` after the first delivered one):
        // a poller stopped soon after delivering would otherwise never say so.
        self.report().await;
        let id = self.id();
        if relay
            && !self.held.is_empty()
            && let (Some(spawner), Some(id)) = (self.spawner.clone(), id.clone())
        {
            match spawner.spawn("relay", &id).await {
                Ok(()) => info!(poller = %id, partitions = self.held.len(), "Successor started."),
                Err(e) => warn!(poller = %id, error = %e, "Cannot start a successor; the schedule will."),
            }
        }
        self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stopping = true;
        if let Some(id) = &id {
            // Tell the others at once that these partitions are about to be free.
            let _ = self.leases.heartbeat(id, self.heartbeat(true)).await;
        }
        let ids: Vec<LeaseId> = self.held.keys().cloned().collect();
        for lease_id in ids {
            self.hand_over(&lease_id);
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        let consumers: Vec<(String, ConsumerHandle)> = self.consumers.drain().collect();
        for (uuid, consumer) in consumers {
            consumer.stop.cancel();
            // A consumer that hit an unrecoverable error just before the stop still records it.
            if let Ok(ConsumerExit::Unrecoverable { reason, message }) = consumer.handle.await {
                disable_consumed(&*self.store, &uuid, &consumer.fingerprint, consumer.version, reason, &message).await;
            }
        }
        if let Some(identity) = self.identity.take() {
            identity.heartbeat.abort();
            if let Err(e) = self.leases.remove_poller(&identity.id).await {
                warn!(poller = %identity.id, error = %e, "Could not remove the poller's heartbeat; others take its leases once it is silent.");
            }
            info!(poller = %identity.id, "Poller stopped.");
        }
    }
}

/// How often a poller that lost its identity writes its old heartbeat while its invokes finish.
const KEEPER_EVERY: Duration = Duration::from_millis(500);
/// Heartbeat attempts that take longer than this are abandoned and retried.
const HEARTBEAT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes the heartbeat every `renew_every`; each one confirmed in time extends the root guard.
/// A failed write is retried at once with a short backoff while the guard still holds; the loop
/// ends when the guard lapses or the item is gone (the supervisor then starts over).
async fn heartbeat_loop<L: LeaseStore>(
    leases: Arc<L>,
    id: Arc<str>,
    root: Arc<LeaseGuard>,
    settings: crate::config::LeaseSettings,
    load: Arc<Mutex<Load>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) {
    let ttl = i64::try_from(settings.duration.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(settings.renew_every).await;
        let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let sent = Instant::now();
            let beat = Heartbeat {
                expires_at_ms: clock.epoch_ms().saturating_add(ttl),
                load: *load.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            // Leave room for a second attempt within the guard's slack.
            let slack = settings.duration.saturating_sub(settings.renew_every + settings.safety_margin);
            let attempt = HEARTBEAT_ATTEMPT_TIMEOUT.min(slack / 2).max(Duration::from_millis(200));
            let progress = crate::ops::progress::encode(&metrics.partitions());
            match tokio::time::timeout(attempt, leases.heartbeat_with_progress(&id, beat, &progress)).await {
                Ok(Ok(())) => {
                    if !root.extend_if_valid(sent + settings.duration - settings.safety_margin) {
                        warn!(poller = %id, "Heartbeat confirmed too late; this poller's leases may have moved.");
                        return;
                    }
                    break;
                }
                Ok(Err(LeaseError::Lost { .. })) => {
                    warn!(poller = %id, "This poller's heartbeat item is gone; it was removed as dead.");
                    root.revoke();
                    return;
                }
                Ok(Err(e)) => warn!(poller = %id, error = %e, "Heartbeat failed; retrying at once."),
                Err(_) => {
                    warn!(poller = %id, timeout_ms = attempt.as_millis(), "Heartbeat timed out; retrying at once.")
                }
            }
            if !root.is_valid() {
                return;
            }
            tokio::time::sleep(retry.next_delay()).await;
        }
    }
}

fn minimum_pollers(mapping: &EventSourceMapping) -> usize {
    mapping
        .provisioned_poller_config
        .as_ref()
        .and_then(|c| c.minimum_pollers)
        .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn maximum_pollers(mapping: &EventSourceMapping) -> usize {
    mapping
        .provisioned_poller_config
        .as_ref()
        .and_then(|c| c.maximum_pollers)
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Disables a mapping whose consumer hit an unrecoverable error. The item may have moved on
/// since the consumer started (a state settled, a processing result written): it is disabled as
/// long as its configuration (`fingerprint`) is the one that failed and a user has not disabled
/// or deleted it meanwhile; a user's fix, re-enable or delete always wins.
async fn disable_consumed<S: MappingStore>(
    store: &S,
    uuid: &str,
    fingerprint_failed: &str,
    version: u64,
    reason: StopReason,
    message: &str,
) {
    let mut version = version;
    for _ in 0..3 {
        if disable(store, uuid, version, reason, message).await {
            return;
        }
        match store.get(uuid).await {
            Ok(Some(Loaded::Valid(m))) if m.state.consumes() && fingerprint(&m) == fingerprint_failed => {
                version = m.version;
            }
            _ => {
                info!(mapping = %uuid, "The mapping was changed by a user since its consumer failed; leaving it as they set it.");
                return;
            }
        }
    }
}

/// Disables a mapping with an AWS reason, if it is still at `version` (a user's delete,
/// re-enable or fix in between wins; the next refresh sees it).
/// Returns false when the item is no longer at `version`.
async fn disable<S: MappingStore>(store: &S, uuid: &str, version: u64, reason: StopReason, message: &str) -> bool {
    let status = Status {
        state: State::Disabled,
        reason: reason.as_str().to_owned(),
        last_processing_result: message.to_owned(),
    };
    match store.set_status(uuid, Some(version), &status).await {
        Ok(()) => warn!(mapping = %uuid, reason = reason.as_str(), result = message, "Mapping disabled."),
        Err(StoreError::Conflict { .. }) => return false,
        Err(e) => warn!(mapping = %uuid, error = %e, "Could not record the mapping's error state."),
    }
    true
}
