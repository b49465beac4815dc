//! The supervisor: reads the mapping items, keeps one lease per partition of every enabled
//! mapping, consumes its fair share of them, and moves mappings through their states.
//!
//! Every refresh it re-reads the mappings table: new or re-enabled mappings get a consumer, disabled
//! or deleted ones stop (committing what they delivered), changed ones restart with the new
//! configuration. Transitional states are moved to their end state (`Creating`/`Enabling`/
//! `Updating` → `Enabled`, `Disabling` → `Disabled`, `Deleting` → item removed). A mapping whose
//! item is malformed or invalid, or whose consumer hit an unrecoverable error, is set to
//! `Disabled` with the reason; the others keep running.
//!
//! Many pollers run at once (scheduled Lambdas overlap, `esm poll` on several machines). Each
//! partition is consumed only under its lease (see [`crate::lease`]): every lease scan a poller
//! counts the live pollers, takes free leases up to its fair share (⌈partitions ÷ live pollers⌉,
//! at most `MaximumPollers` distinct pollers per mapping) and hands surplus partitions over
//! (stop intake, finish the in-flight batch, commit, then release) so a newcomer gets work within
//! a scan. On stop it hands everything over the same way; as a Lambda it first starts its
//! successor (relay), so the partitions move within about a second. The poller with the lowest id
//! starts more pollers when lag keeps growing or fewer than `MinimumPollers` run, never more than
//! the partitions or the configured maximum; an idle poller beyond the minimum stops.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::error::StopReason;
use crate::invoke::Invoker;
use crate::lease::{
    Lease, LeaseError, LeaseGuard, LeaseSettings, LeaseStore, Load, PollerInfo, fair_share, now_epoch_ms,
};
use crate::mapping::{EventSourceMapping, State};
use crate::poller::{MappingExit, PartitionTicket, PollerEnv, run_mapping};
use crate::store::{Loaded, MappingStore, Status, StoreError};

/// Starts another poller: the Lambda invokes its own function asynchronously.
pub trait Spawner: Send + Sync + 'static {
    /// `reason` ends up in the new poller's event (`relay`, `scale-out`).
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

/// How one poller joins, scales and leaves.
#[derive(Debug, Clone)]
pub struct PollerOptions<P> {
    /// Starts more pollers (scale-out, relay); `None` for `esm poll`.
    pub spawner: Option<Arc<P>>,
    /// Started by the schedule: stay only if some work has no live poller (free leases, a mapping
    /// without leases yet, fewer pollers than `MinimumPollers`); otherwise exit at once.
    pub join_if_needed: bool,
    /// Started by a stopping poller: look for free leases often at first.
    pub successor: bool,
    /// On stop, start a successor first when holding leases.
    pub relay: bool,
    /// Stop when idle beyond the minimum (Lambda pollers).
    pub scale_in: bool,
    /// Most pollers at once across all mappings (`ESM_MAX_POLLERS`).
    pub max_pollers: usize,
    /// How long lag must keep growing before another poller starts, and stay at zero before an
    /// idle poller stops (`ESM_SCALE_WINDOW_MS`, default 60 s).
    pub scale_window: Duration,
    /// How often leases are scanned (`ESM_LEASE_SCAN_MS`, default 5000); 250 ms while partitions
    /// are about to move.
    pub scan_every: Duration,
}

impl Default for PollerOptions<NoSpawner> {
    fn default() -> Self {
        Self {
            spawner: None,
            join_if_needed: false,
            successor: false,
            relay: false,
            scale_in: false,
            max_pollers: usize::MAX,
            scale_window: Duration::from_secs(60),
            scan_every: Duration::from_secs(5),
        }
    }
}

impl<P> PollerOptions<P> {
    /// `ESM_MAX_POLLERS`, `ESM_SCALE_WINDOW_MS` and `ESM_LEASE_SCAN_MS` over the defaults.
    ///
    /// # Errors
    /// A variable is set but is not a positive whole number.
    pub fn with_env(mut self) -> Result<Self, String> {
        let var = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!("{name}={v} is not a positive whole number")),
                },
                _ => Ok(None),
            }
        };
        if let Some(n) = var("ESM_MAX_POLLERS")? {
            self.max_pollers = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(ms) = var("ESM_SCALE_WINDOW_MS")? {
            self.scale_window = Duration::from_millis(ms);
        }
        if let Some(ms) = var("ESM_LEASE_SCAN_MS")? {
            self.scan_every = Duration::from_millis(ms);
        }
        Ok(self)
    }
}

const FAST_SCAN: Duration = Duration::from_millis(250);
/// How long a successor scans fast for its predecessor's partitions.
const SUCCESSOR_WARMUP: Duration = Duration::from_secs(15);

/// The configuration that matters to a running consumer: everything but status fields.
fn fingerprint(mapping: &EventSourceMapping) -> String {
    let mut value = serde_json::to_value(mapping).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        for field in ["State", "StateTransitionReason", "LastProcessingResult", "LastModified", "Version"] {
            obj.remove(field);
        }
    }
    value.to_string()
}

/// Runs the poller over every mapping in `store` until `stop` fires, then hands every partition
/// over: intake stops at once, in-flight invokes get `drain_timeout` to finish, what succeeded is
/// committed and the leases are released.
pub async fn run_poller<S: MappingStore, L: LeaseStore, I: Invoker>(
    store: Arc<S>,
    leases: Arc<L>,
    env: Arc<PollerEnv<I>>,
    stop: CancellationToken,
) {
    run_poller_with(store, leases, env, stop, PollerOptions::default()).await;
}

/// Why a poller ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollerExit {
    /// `stop` fired.
    Stopped,
    /// Started by the schedule and found nothing no live poller covers.
    NotNeeded,
    /// Idle beyond the minimum: scaled in.
    Idle,
}

/// [`run_poller`] with scaling and relay.
pub async fn run_poller_with<S: MappingStore, L: LeaseStore, I: Invoker, P: Spawner>(
    store: Arc<S>,
    leases: Arc<L>,
    env: Arc<PollerEnv<I>>,
    stop: CancellationToken,
    options: PollerOptions<P>,
) -> PollerExit {
    let mut poller = Poller::new(store, leases, env, options);
    if poller.options.join_if_needed && !poller.needed().await {
        info!("Every partition has a live poller; this scheduled poller is not needed.");
        return PollerExit::NotNeeded;
    }
    let exit = poller.run(&stop).await;
    poller.shutdown().await;
    exit
}

/// A mapping's consumer in this poller.
struct Runner {
    fingerprint: String,
    tickets: mpsc::UnboundedSender<PartitionTicket>,
    partitions: watch::Receiver<Option<Vec<i32>>>,
    stop: CancellationToken,
    handle: JoinHandle<MappingExit>,
}

/// A lease this poller holds and the ticket its consumer runs under.
struct Held {
    lease: Lease,
    owner: Arc<str>,
    ticket: PartitionTicket,
}

/// This poller's identity: its heartbeat item and the root of all its lease guards.
struct Identity {
    id: Arc<str>,
    root: Arc<LeaseGuard>,
    heartbeat: JoinHandle<()>,
}

struct Poller<S, L, I, P> {
    store: Arc<S>,
    leases: Arc<L>,
    env: Arc<PollerEnv<I>>,
    options: PollerOptions<P>,
    settings: LeaseSettings,
    identity: Option<Identity>,
    load: Arc<Mutex<Load>>,
    runners: HashMap<String, Runner>,
    /// By lease key.
    held: BTreeMap<String, Held>,
    /// Lease keys being handed over (stopping, committing, releasing).
    handing_over: Arc<Mutex<HashSet<String>>>,
    handovers: Vec<JoinHandle<()>>,
    /// The valid, wanted mappings as of the last refresh.
    wanted: Vec<EventSourceMapping>,
    last_refresh: Option<Instant>,
    refresh_backoff: Backoff,
    started: Instant,
    /// (when, total lag of all live pollers), newest last.
    lag_history: VecDeque<(Instant, u64)>,
    last_spawn: Option<Instant>,
    fast_scan: bool,
}

impl<S: MappingStore, L: LeaseStore, I: Invoker, P: Spawner> Poller<S, L, I, P> {
    fn new(store: Arc<S>, leases: Arc<L>, env: Arc<PollerEnv<I>>, options: PollerOptions<P>) -> Self {
        let settings = env.settings.lease;
        let refresh_backoff = Backoff::new(env.settings.reconnect_base, env.settings.reconnect_cap);
        Self {
            store,
            leases,
            env,
            options,
            settings,
            identity: None,
            load: Arc::default(),
            runners: HashMap::new(),
            held: BTreeMap::new(),
            handing_over: Arc::default(),
            handovers: Vec::new(),
            wanted: Vec::new(),
            last_refresh: None,
            refresh_backoff,
            started: Instant::now(),
            lag_history: VecDeque::new(),
            last_spawn: None,
            fast_scan: false,
        }
    }

    fn id(&self) -> Option<Arc<str>> {
        self.identity.as_ref().map(|i| i.id.clone())
    }

    /// For a scheduled poller: is there work no live poller covers?
    async fn needed(&mut self) -> bool {
        let Ok(items) = self.store.list().await else { return true };
        // A malformed or invalid item not yet disabled needs a poller to disable it.
        let broken = items.iter().any(|i| match i {
            Loaded::Malformed { state, .. } => state.as_deref() != Some("Disabled"),
            Loaded::Invalid { mapping, .. } => mapping.state != State::Disabled,
            Loaded::Valid(_) => false,
        });
        if broken {
            return true;
        }
        let wanted: Vec<EventSourceMapping> = items
            .into_iter()
            .filter_map(|i| match i {
                Loaded::Valid(m) => Some(m),
                _ => None,
            })
            .collect();
        // Transitions and clean-ups of mappings also need a poller.
        if wanted.iter().any(|m| m.state != State::Enabled && m.state != State::Disabled) {
            return true;
        }
        let Ok(live) = self.leases.live_pollers(now_epoch_ms()).await else { return true };
        let active = live.iter().filter(|p| !p.load.stopping).count();
        let minimum = wanted.iter().filter(|m| m.state.wants_consumer()).map(minimum_pollers).max().unwrap_or(0);
        if active == 0 || active < minimum {
            return wanted.iter().any(|m| m.state.wants_consumer());
        }
        for mapping in wanted.iter().filter(|m| m.state.wants_consumer()) {
            match self.leases.leases(&mapping.uuid).await {
                Ok(leases) if !leases.is_empty() && leases.iter().all(|l| !l.is_free(&live)) => {}
                _ => return true,
            }
        }
        false
    }

    async fn run(&mut self, stop: &CancellationToken) -> PollerExit {
        let mut last_scan: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return PollerExit::Stopped;
            }
            self.keep_identity().await;
            self.reap().await;
            let refresh_due = self.last_refresh.is_none_or(|at| at.elapsed() >= self.env.settings.refresh_interval);
            let mut changed = false;
            if refresh_due {
                let before: Vec<(String, u64)> = self.wanted.iter().map(|m| (m.uuid.clone(), m.version)).collect();
                self.refresh().await;
                changed = self.wanted.iter().map(|m| (m.uuid.clone(), m.version)).ne(before);
            }
            // A change of the wanted mappings is acted on at once, with a scan.
            let scan_due = changed || last_scan.is_none_or(|at: Instant| at.elapsed() >= self.scan_every());
            if self.identity.is_some() && scan_due {
                last_scan = Some(Instant::now());
                if self.balance().await == Some(PollerExit::Idle) {
                    return PollerExit::Idle;
                }
            }
            // Wake for whichever is due first: the next lease scan or the next mappings refresh.
            let until = |last: Option<Instant>, every: Duration| {
                last.map_or(Duration::ZERO, |at| every.saturating_sub(at.elapsed()))
            };
            let delay = until(last_scan, self.scan_every())
                .min(until(self.last_refresh, self.env.settings.refresh_interval))
                .max(Duration::from_millis(50));
            tokio::select! {
                () = stop.cancelled() => return PollerExit::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// How long until the next lease scan: short while partitions are about to move.
    fn scan_every(&self) -> Duration {
        let warming_up = self.options.successor && self.started.elapsed() < SUCCESSOR_WARMUP && self.held.is_empty();
        if self.fast_scan || warming_up { FAST_SCAN } else { self.options.scan_every }
    }

    /// Registers this poller (first heartbeat), or starts over under a new identity when its
    /// heartbeat could not be confirmed in time: whatever it held may have been taken already.
    async fn keep_identity(&mut self) {
        if let Some(identity) = &self.identity {
            if identity.root.is_valid() {
                return;
            }
            warn!(poller = %identity.id, "Heartbeat not confirmed in time: giving up every lease and starting over under a new identity.");
            for (_, held) in std::mem::take(&mut self.held) {
                held.ticket.guard.revoke();
                held.ticket.stop.cancel();
                held.ticket.abandon.cancel();
            }
            identity.heartbeat.abort();
            let old = identity.id.clone();
            self.identity = None;
            // Frees the old identity's leases at once; its guards are already invalid.
            let _ = self.leases.remove_poller(&old).await;
        }
        let id: Arc<str> = Arc::from(format!("poller-{}", uuid::Uuid::new_v4()));
        let sent = now_epoch_ms();
        let load = *self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.leases.heartbeat(&id, sent, self.settings.duration, load).await {
            Ok(()) => {
                let root = Arc::new(LeaseGuard::until(valid_until(sent, self.settings)));
                let heartbeat = tokio::spawn(heartbeat_loop(
                    self.leases.clone(),
                    id.clone(),
                    root.clone(),
                    self.settings,
                    self.load.clone(),
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
            self.runners.iter().filter(|(_, r)| r.handle.is_finished()).map(|(u, _)| u.clone()).collect();
        for uuid in finished {
            let Some(runner) = self.runners.remove(&uuid) else { continue };
            self.hand_over_mapping(&uuid);
            match runner.handle.await {
                Ok(MappingExit::Unrecoverable { reason, message }) => {
                    disable(&*self.store, &uuid, None, reason, &message).await;
                    self.last_refresh = None;
                }
                Ok(MappingExit::Stopped) => {}
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
                self.last_refresh = Some(Instant::now() + delay.saturating_sub(self.env.settings.refresh_interval));
                error!(error = %e, retry_in_s = delay.as_secs_f32(), "Cannot read the mappings table; running consumers continue.");
                return;
            }
        };
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        for item in items {
            let Some(uuid) = item.uuid().map(str::to_owned) else {
                error!("A mappings-table item has no UUID string; it is ignored. Remove it or give it a UUID.");
                continue;
            };
            seen.insert(uuid.clone());
            match item {
                Loaded::Malformed { state, reason, .. } => {
                    self.stop_runner(&uuid);
                    if state.as_deref() == Some("Deleting") || state.as_deref() == Some("Disabled") {
                        continue;
                    }
                    error!(mapping = %uuid, error = %reason, "Mapping item is malformed; disabling it.");
                    let message = format!("PROBLEM: malformed mapping item: {reason}");
                    disable(&*self.store, &uuid, None, StopReason::EsmConfigNotValid, &message).await;
                }
                Loaded::Invalid { mapping, error } => {
                    self.stop_runner(&uuid);
                    if mapping.state == State::Deleting {
                        let _ = self.store.delete(&uuid, mapping.version).await;
                    } else if mapping.state != State::Disabled {
                        error!(mapping = %uuid, error = %error, "Mapping is not valid; disabling it.");
                        let message = format!("PROBLEM: {error}");
                        disable(&*self.store, &uuid, Some(mapping.version), StopReason::EsmConfigNotValid, &message)
                            .await;
                    }
                }
                Loaded::Valid(mapping) => match mapping.state {
                    State::Creating | State::Enabling | State::Enabled | State::Updating => {
                        let fp = fingerprint(&mapping);
                        if self.runners.get(&uuid).is_some_and(|r| r.fingerprint != fp) {
                            info!(mapping = %uuid, "Mapping configuration changed; restarting its consumer.");
                            self.stop_runner(&uuid);
                        }
                        if mapping.state != State::Enabled {
                            set_state(&*self.store, &mapping, State::Enabled).await;
                        }
                        wanted.push(mapping);
                    }
                    State::Disabling | State::Disabled => {
                        self.stop_runner(&uuid);
                        if mapping.state == State::Disabling {
                            set_state(&*self.store, &mapping, State::Disabled).await;
                        }
                    }
                    State::Deleting => {
                        self.stop_runner(&uuid);
                        match self.store.delete(&uuid, mapping.version).await {
                            Ok(()) => {
                                info!(mapping = %uuid, "Mapping deleted.");
                                let leases = self.leases.clone();
                                let handing_over = self.handing_over.clone();
                                let prefix = format!("lease#{uuid}#");
                                // After the hand-over released them.
                                tokio::spawn(async move {
                                    handed_over(&handing_over, &prefix, Duration::from_secs(60)).await;
                                    if let Err(e) = leases.delete_mapping(&uuid).await {
                                        warn!(mapping = %uuid, error = %e, "Could not remove the deleted mapping's leases.");
                                    }
                                });
                            }
                            Err(StoreError::Conflict { .. }) => {}
                            Err(e) => warn!(mapping = %uuid, error = %e, "Could not delete the mapping item."),
                        }
                    }
                },
            }
        }
        let gone: Vec<String> = self.runners.keys().filter(|u| !seen.contains(*u)).cloned().collect();
        for uuid in gone {
            info!(mapping = %uuid, "Mapping item removed.");
            self.stop_runner(&uuid);
        }
        self.wanted = wanted;
    }

    /// Starts the mapping's consumer if it has none.
    fn ensure_runner(&mut self, mapping: &EventSourceMapping) -> &Runner {
        let uuid = mapping.uuid.clone();
        self.runners.entry(uuid).or_insert_with(|| {
            let (tickets_tx, tickets_rx) = mpsc::unbounded_channel();
            let (partitions_tx, partitions_rx) = watch::channel(None);
            let stop = CancellationToken::new();
            info!(mapping = %mapping.uuid, topic = mapping.topic(), function = %mapping.function_arn, "Starting consumer.");
            let handle =
                tokio::spawn(run_mapping(self.env.clone(), mapping.clone(), tickets_rx, partitions_tx, stop.clone()));
            Runner {
                fingerprint: fingerprint(mapping),
                tickets: tickets_tx,
                partitions: partitions_rx,
                stop,
                handle,
            }
        })
    }

    /// Hands the mapping's partitions over and stops its consumer once they are done.
    fn stop_runner(&mut self, uuid: &str) {
        self.hand_over_mapping(uuid);
        if let Some(runner) = self.runners.remove(uuid) {
            info!(mapping = %uuid, "Stopping consumer.");
            let stop = runner.stop.clone();
            let handing_over = self.handing_over.clone();
            let prefix = format!("lease#{uuid}#");
            // The consumer ends after its partitions have committed; a new consumer for the same
            // mapping may start meanwhile: offsets are only committed after delivery.
            tokio::spawn(async move {
                handed_over(&handing_over, &prefix, Duration::from_secs(60)).await;
                stop.cancel();
                let _ = runner.handle.await;
            });
        }
    }

    fn hand_over_mapping(&mut self, uuid: &str) {
        let keys: Vec<String> =
            self.held.iter().filter(|(_, h)| h.lease.mapping == uuid).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.hand_over(&key);
        }
    }

    /// Stops the partition (no new batch, in-flight one finishes within the drain timeout), then
    /// releases the lease once its last commit is done.
    fn hand_over(&mut self, key: &str) {
        let Some(held) = self.held.remove(key) else { return };
        held.ticket.stop.cancel();
        self.handing_over.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned());
        let leases = self.leases.clone();
        let handing_over = self.handing_over.clone();
        let drain = self.env.settings.drain_timeout;
        let key = key.to_owned();
        self.handovers.retain(|h| !h.is_finished());
        self.handovers.push(tokio::spawn(async move {
            let ticket = &held.ticket;
            tokio::select! {
                () = ticket.done.cancelled() => {}
                () = tokio::time::sleep(drain) => {
                    warn!(mapping = %held.lease.mapping, partition = ticket.partition, "In-flight invoke did not finish in time; abandoning it (its batch will be redelivered).");
                    ticket.abandon.cancel();
                    // The consumer notices at once; don't wait on a wedged one forever.
                    let _ = tokio::time::timeout(Duration::from_secs(5), ticket.done.cancelled()).await;
                }
            }
            ticket.guard.revoke();
            match leases.release(&held.lease, &held.owner).await {
                Ok(()) => info!(mapping = %held.lease.mapping, partition = ticket.partition, "Partition handed over."),
                Err(LeaseError::Lost { .. }) => {}
                Err(e) => warn!(mapping = %held.lease.mapping, error = %e, "Could not release the lease; the next lease scan retries."),
            }
            handing_over.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        }));
    }

    /// One lease scan: keep lease items for every partition, take free leases up to the fair
    /// share, hand surplus over, notice lost leases, and scale.
    async fn balance(&mut self) -> Option<PollerExit> {
        let id = self.id()?;
        let now = now_epoch_ms();
        let snapshot = match self.leases.snapshot(now).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                warn!(error = %e, "Cannot read the leases table; keeping the current leases.");
                return None;
            }
        };
        let live = snapshot.pollers.clone();
        let active: Vec<&PollerInfo> = live.iter().filter(|p| !p.load.stopping || *p.id == *id).collect();
        let active_count = active.len().max(1);
        let mut by_mapping: Vec<(EventSourceMapping, Vec<Lease>)> = Vec::new();
        let mut discovering = false;
        for mapping in self.wanted.clone() {
            let mut leases = match snapshot.leases_of(&mapping.uuid) {
                Ok(leases) => leases,
                Err(e) => {
                    warn!(mapping = %mapping.uuid, error = %e, "Cannot read the mapping's leases.");
                    continue;
                }
            };
            // Lease items for partitions the consumer has seen but the table lacks (a new
            // mapping, or the topic grew). A mapping without any needs its consumer to find out.
            let discovered = if leases.is_empty() || self.runners.contains_key(&mapping.uuid) {
                self.ensure_runner(&mapping).partitions.borrow().clone()
            } else {
                None
            };
            // Its consumer is still finding the partitions: look again soon.
            discovering |= leases.is_empty() && discovered.is_none();
            if let Some(partitions) = discovered {
                let missing: Vec<i32> = partitions
                    .iter()
                    .copied()
                    .filter(|p| !leases.iter().any(|l| l.partition == *p && l.topic == mapping.topic()))
                    .collect();
                if !missing.is_empty() {
                    for p in &missing {
                        if let Err(e) = self.leases.ensure(&mapping.uuid, mapping.topic(), *p).await {
                            warn!(mapping = %mapping.uuid, partition = p, error = %e, "Cannot create the partition's lease.");
                        }
                    }
                    info!(mapping = %mapping.uuid, topic = mapping.topic(), partitions = ?missing, "Leases created for new partitions.");
                    leases = self.leases.leases(&mapping.uuid).await.unwrap_or(leases);
                }
            }
            leases.retain(|l| l.topic == mapping.topic());
            by_mapping.push((mapping, leases));
        }
        // Leases we hold that the table says someone else has: stop at once, release nothing.
        for (_, leases) in &by_mapping {
            for lease in leases {
                let key = lease.key();
                if let Some(held) = self.held.get(&key)
                    && (lease.owner.as_deref() != Some(&*held.owner) || lease.counter != held.lease.counter)
                {
                    warn!(mapping = %lease.mapping, partition = lease.partition, "Lease taken by another poller; stopping the partition at once.");
                    if let Some(held) = self.held.remove(&key) {
                        held.ticket.guard.revoke();
                        held.ticket.stop.cancel();
                        held.ticket.abandon.cancel();
                    }
                }
            }
        }
        // Leases the table says are ours but we don't run: an acquire whose answer was lost, or
        // a release that failed. Nobody else would take them while we live: free them.
        let busy = busy_now(&self.handing_over);
        for (_, leases) in &by_mapping {
            for lease in leases {
                let key = lease.key();
                if lease.owner.as_deref() == Some(&*id) && !self.held.contains_key(&key) && !busy.contains(&key) {
                    info!(mapping = %lease.mapping, partition = lease.partition, "Releasing a lease this poller holds but does not run.");
                    match self.leases.release(lease, &id).await {
                        // Released meanwhile by the hand-over that just finished.
                        Ok(()) | Err(LeaseError::Lost { .. }) => {}
                        Err(e) => {
                            warn!(mapping = %lease.mapping, partition = lease.partition, error = %e, "Cannot release the lease.")
                        }
                    }
                }
            }
        }
        // Fair share over the mappings any poller may consume; a mapping limited to fewer pollers
        // (`MaximumPollers`) than are live is split among at most that many, on top of it.
        let limited = |m: &EventSourceMapping| maximum_pollers(m) < active_count;
        let total: usize = by_mapping.iter().filter(|(m, _)| !limited(m)).map(|(_, l)| l.len()).sum();
        let share = fair_share(total, active_count);
        let mapping_of =
            |key: &str| by_mapping.iter().position(|(m, _)| key.starts_with(&format!("lease#{}#", m.uuid)));
        let mut held_by: Vec<usize> = vec![0; by_mapping.len()];
        let mut held_shared: usize = 0;
        for key in self.held.keys() {
            match mapping_of(key) {
                Some(i) if limited(&by_mapping[i].0) => held_by[i] += 1,
                Some(i) => {
                    held_by[i] += 1;
                    held_shared += 1;
                }
                None => held_shared += 1,
            }
        }
        let limited_share =
            |i: usize| fair_share(by_mapping[i].1.len(), maximum_pollers(&by_mapping[i].0).min(active_count));
        // Over a share: hand the surplus over (highest keys first, so pollers agree).
        let mut surplus: Vec<String> = Vec::new();
        let shared_keys: Vec<&String> =
            self.held.keys().filter(|k| mapping_of(k).is_none_or(|i| !limited(&by_mapping[i].0))).collect();
        surplus.extend(shared_keys.iter().rev().take(held_shared.saturating_sub(share)).map(|k| (*k).clone()));
        for (i, (m, leases)) in by_mapping.iter().enumerate().filter(|(_, (m, _))| limited(m)) {
            let prefix = format!("lease#{}#", m.uuid);
            let keys: Vec<&String> = self.held.keys().filter(|k| k.starts_with(&prefix)).collect();
            if permitted(leases, &live, &id, maximum_pollers(m)) {
                surplus
                    .extend(keys.iter().rev().take(held_by[i].saturating_sub(limited_share(i))).map(|k| (*k).clone()));
            } else {
                // Pollers racing for a limited mapping's free leases can overshoot its
                // MaximumPollers; all but the lowest ids give theirs back.
                info!(mapping = %m.uuid, poller = %id, maximum = maximum_pollers(m), "More pollers than MaximumPollers hold this mapping; handing its partitions over.");
                surplus.extend(keys.iter().map(|k| (*k).clone()));
            }
        }
        if !surplus.is_empty() {
            info!(poller = %id, held = self.held.len(), share, live = active_count, handing_over = surplus.len(), "Over fair share; handing partitions over.");
            for key in surplus {
                self.hand_over(&key);
            }
        }
        // Under it: take free leases, in random order so racing pollers rarely collide.
        let mut free_left = 0;
        let mut candidates: Vec<(usize, &Lease)> = Vec::new();
        for (i, (mapping, leases)) in by_mapping.iter().enumerate() {
            let allowed = permitted(leases, &live, &id, maximum_pollers(mapping));
            for lease in leases.iter().filter(|l| l.is_free(&live) && !busy.contains(&l.key())) {
                free_left += 1;
                if allowed {
                    candidates.push((i, lease));
                }
            }
        }
        fastrand::shuffle(&mut candidates);
        let mut taken = Vec::new();
        // What is held once the surplus is gone.
        let mut shared_now = held_shared.min(share);
        let mut by_now: Vec<usize> = (0..by_mapping.len())
            .map(|i| if limited(&by_mapping[i].0) { held_by[i].min(limited_share(i)) } else { held_by[i] })
            .collect();
        for (i, lease) in candidates {
            if !self.identity.as_ref().is_some_and(|i| i.root.is_valid()) {
                break;
            }
            let room = if limited(&by_mapping[i].0) { by_now[i] < limited_share(i) } else { shared_now < share };
            if !room {
                continue;
            }
            match self.leases.acquire(lease, &id).await {
                Ok(acquired) => {
                    free_left -= 1;
                    by_now[i] += 1;
                    if !limited(&by_mapping[i].0) {
                        shared_now += 1;
                    }
                    taken.push((i, acquired));
                }
                Err(LeaseError::Lost { .. }) => free_left -= 1,
                Err(e) => {
                    warn!(mapping = %lease.mapping, partition = lease.partition, error = %e, "Cannot take the lease.")
                }
            }
        }
        for (i, lease) in taken {
            let mapping = by_mapping[i].0.clone();
            let Some(root) = self.identity.as_ref().map(|i| i.root.clone()) else { break };
            let ticket = PartitionTicket::new(lease.partition, lease.counter, Arc::new(LeaseGuard::child(root)));
            info!(mapping = %mapping.uuid, partition = lease.partition, poller = %id, "Lease taken.");
            let runner = self.ensure_runner(&mapping);
            if runner.tickets.send(ticket.clone()).is_err() {
                ticket.guard.revoke();
            }
            self.held.insert(lease.key(), Held { lease, owner: id.clone(), ticket });
        }
        // A consumer started only to find the partitions is not needed once their leases exist
        // and none is ours.
        let idle: Vec<String> = by_mapping
            .iter()
            .filter(|(m, leases)| {
                let prefix = format!("lease#{}#", m.uuid);
                !leases.is_empty()
                    && !self.held.keys().any(|k| k.starts_with(&prefix))
                    && !busy_now(&self.handing_over).iter().any(|k| k.starts_with(&prefix))
                    && self.runners.get(&m.uuid).is_some_and(|r| {
                        r.partitions
                            .borrow()
                            .as_ref()
                            .is_some_and(|ps| ps.iter().all(|p| leases.iter().any(|l| l.partition == *p)))
                    })
            })
            .map(|(m, _)| m.uuid.clone())
            .collect();
        for uuid in idle {
            self.stop_runner(&uuid);
        }
        // Scan often while partitions are about to move: free leases in sight, a mapping's
        // partitions being found, a poller stopping, or this one under its share while another
        // is over it (a hand-over is due).
        let held_now = self.held.len();
        self.fast_scan = free_left > 0
            || discovering
            || live.iter().any(|p| p.load.stopping && *p.id != *id)
            || (held_now < share && active.iter().any(|p| *p.id != *id && p.load.held as usize > share));
        // Report load with the next heartbeat.
        {
            let lag: u64 = self.held.values().map(|h| h.ticket.lag.load(Ordering::Relaxed)).sum();
            let mut load = self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            load.held = u32::try_from(self.held.len()).unwrap_or(u32::MAX);
            load.lag = lag;
        }
        self.scale(&id, &active, &by_mapping)
    }

    /// The poller with the lowest id starts more pollers when needed; an idle poller beyond the
    /// minimum stops.
    fn scale(
        &mut self,
        id: &str,
        active: &[&PollerInfo],
        by_mapping: &[(EventSourceMapping, Vec<Lease>)],
    ) -> Option<PollerExit> {
        let now = Instant::now();
        let total_lag: u64 = active.iter().map(|p| p.load.lag).sum();
        self.lag_history.push_back((now, total_lag));
        while self.lag_history.len() > 2
            && self.lag_history.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= self.options.scale_window)
        {
            self.lag_history.pop_front();
        }
        let window_full =
            self.lag_history.front().is_some_and(|(at, _)| now.duration_since(*at) >= self.options.scale_window);
        let minimum = by_mapping.iter().map(|(m, _)| minimum_pollers(m)).max().unwrap_or(0);
        let partitions: usize = by_mapping.iter().map(|(_, l)| l.len()).sum();
        let cap = by_mapping
            .iter()
            .map(|(m, l)| l.len().min(maximum_pollers(m)))
            .sum::<usize>()
            .min(self.options.max_pollers)
            .min(partitions);
        let leader = active.iter().map(|p| p.id.as_str()).min().is_none_or(|lowest| lowest == id);
        if let Some(spawner) = self.options.spawner.clone()
            && leader
            && self
                .last_spawn
                .is_none_or(|at| now.duration_since(at) >= self.options.scale_window.min(Duration::from_secs(30)))
        {
            // More records waiting now than a whole window ago, and never drained in between.
            let growing = window_full
                && self.lag_history.iter().all(|(_, lag)| *lag > 0)
                && self.lag_history.back().map(|(_, l)| *l) > self.lag_history.front().map(|(_, l)| *l);
            let want = if active.len() < minimum {
                minimum
            } else if growing {
                active.len() + 1
            } else {
                active.len()
            };
            let more = want.min(cap).saturating_sub(active.len());
            if more > 0 {
                self.last_spawn = Some(now);
                let reason = if growing { "scale-out" } else { "minimum-pollers" };
                info!(poller = %id, live = active.len(), starting = more, cap, lag = total_lag, reason, "Starting more pollers.");
                let from = id.to_owned();
                tokio::spawn(async move {
                    for _ in 0..more {
                        if let Err(e) = spawner.spawn(reason, &from).await {
                            warn!(error = %e, "Cannot start another poller.");
                        }
                    }
                });
            }
        }
        if self.options.scale_in
            && window_full
            && self.started.elapsed() >= self.options.scale_window
            && active.len() > minimum.max(1)
            && self.lag_history.iter().all(|(_, lag)| *lag == 0)
            && active.iter().map(|p| p.id.as_str()).max() == Some(id)
        {
            info!(poller = %id, live = active.len(), minimum, "No lag for the whole window and more pollers than needed; this one stops.");
            return Some(PollerExit::Idle);
        }
        None
    }

    /// Relay (if configured), hand everything over, stop the consumers, remove the heartbeat.
    async fn shutdown(&mut self) {
        let id = self.id();
        if self.options.relay
            && !self.held.is_empty()
            && let (Some(spawner), Some(id)) = (self.options.spawner.clone(), id.clone())
        {
            match spawner.spawn("relay", &id).await {
                Ok(()) => info!(poller = %id, partitions = self.held.len(), "Successor started."),
                Err(e) => warn!(poller = %id, error = %e, "Cannot start a successor; the schedule will."),
            }
        }
        self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stopping = true;
        if let Some(id) = &id {
            // Tell the others at once that these partitions are about to be free.
            let load = *self.load.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = self.leases.heartbeat(id, now_epoch_ms(), self.settings.duration, load).await;
        }
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            self.hand_over(&key);
        }
        for handover in std::mem::take(&mut self.handovers) {
            let _ = handover.await;
        }
        let runners: Vec<(String, Runner)> = self.runners.drain().collect();
        for (uuid, runner) in runners {
            runner.stop.cancel();
            // A consumer that hit an unrecoverable error just before the stop still records it.
            if let Ok(MappingExit::Unrecoverable { reason, message }) = runner.handle.await {
                disable(&*self.store, &uuid, None, reason, &message).await;
            }
        }
        if let Some(identity) = self.identity.take() {
            identity.heartbeat.abort();
            if let Err(e) = self.leases.remove_poller(&identity.id).await {
                warn!(poller = %identity.id, error = %e, "Could not remove the poller's heartbeat; it expires by itself.");
            }
            info!(poller = %identity.id, "Poller stopped.");
        }
    }
}

/// Whether `id` may hold leases of a mapping shared by at most `maximum` pollers: while fewer
/// hold it, anyone; otherwise only the `maximum` lowest ids among its live holders.
fn permitted(leases: &[Lease], live: &[PollerInfo], id: &str, maximum: usize) -> bool {
    let mut owners: Vec<&str> = leases.iter().filter(|l| !l.is_free(live)).filter_map(|l| l.owner.as_deref()).collect();
    owners.sort_unstable();
    owners.dedup();
    if owners.len() < maximum {
        return true;
    }
    owners.iter().take(maximum).any(|o| *o == id)
}

/// Waits until no lease key starting with `prefix` is being handed over, at most `limit` (a
/// hand-over is itself bounded by the drain timeout).
async fn handed_over(handing_over: &Mutex<HashSet<String>>, prefix: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && busy_now(handing_over).iter().any(|k| k.starts_with(prefix)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn busy_now(handing_over: &Mutex<HashSet<String>>) -> HashSet<String> {
    handing_over.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// The guard's deadline for a heartbeat sent at `sent_ms`.
fn valid_until(sent_ms: i64, settings: LeaseSettings) -> i64 {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    sent_ms.saturating_add(ms(settings.duration)).saturating_sub(ms(settings.safety_margin))
}

/// Writes the heartbeat every `renew_every`; each confirmed in time extends the root guard, the
/// first one confirmed too late ends the loop (the supervisor then starts over).
async fn heartbeat_loop<L: LeaseStore>(
    leases: Arc<L>,
    id: Arc<str>,
    root: Arc<LeaseGuard>,
    settings: LeaseSettings,
    load: Arc<Mutex<Load>>,
) {
    loop {
        tokio::time::sleep(settings.renew_every).await;
        let sent = now_epoch_ms();
        let current = *load.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match leases.heartbeat(&id, sent, settings.duration, current).await {
            Ok(()) => {
                if !root.extend_if_valid(valid_until(sent, settings)) {
                    warn!(poller = %id, "Heartbeat confirmed too late; this poller's leases may have moved.");
                    return;
                }
            }
            Err(e) => {
                warn!(poller = %id, error = %e, "Heartbeat failed; retrying.");
                if !root.is_valid() {
                    return;
                }
            }
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

async fn disable<S: MappingStore>(store: &S, uuid: &str, version: Option<u64>, reason: StopReason, message: &str) {
    let status = Status {
        state: State::Disabled,
        reason: reason.as_str().to_owned(),
        last_processing_result: message.to_owned(),
    };
    match store.set_status(uuid, version, &status).await {
        Ok(()) => {
            warn!(mapping = %uuid, reason = reason.as_str(), result = message, "Mapping disabled.")
        }
        Err(e) => warn!(mapping = %uuid, error = %e, "Could not record the mapping's error state."),
    }
}

async fn set_state<S: MappingStore>(store: &S, mapping: &EventSourceMapping, state: State) {
    let status = Status {
        state,
        reason: mapping.state_transition_reason.clone().unwrap_or_else(|| "USER_INITIATED".to_owned()),
        last_processing_result: mapping.last_processing_result.clone().unwrap_or_else(|| "OK".to_owned()),
    };
    match store.set_status(&mapping.uuid, Some(mapping.version), &status).await {
        Ok(()) => {
            info!(mapping = %mapping.uuid, from = mapping.state.as_str(), to = state.as_str(), "Mapping state changed.")
        }
        // Someone else (another poller, a user) wrote first: the next refresh sees their change.
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => {
            warn!(mapping = %mapping.uuid, error = %e, "Could not update the mapping's state.")
        }
    }
}
