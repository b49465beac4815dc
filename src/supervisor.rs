//! The supervisor: reads the mapping items, runs one consumer per mapping that should run, and
//! moves mappings through their states.
//!
//! Every refresh it re-reads the table: new or re-enabled mappings start, disabled or deleted ones
//! stop (committing what they delivered), changed ones restart with the new configuration.
//! Transitional states are moved to their end state (`Creating`/`Enabling`/`Updating` →
//! `Enabled`, `Disabling` → `Disabled`, `Deleting` → item removed). A mapping whose item is
//! malformed or invalid, or whose consumer hit an unrecoverable error, is set to `Disabled` with
//! the reason; the others keep running.
//!
//! Many pollers may run at once (scheduled Lambdas overlap, `esm poll` on several machines). A
//! mapping is consumed only under a lease in the leases table (one lease per mapping in this
//! version, `LeaseKey = lease#UUID#TOPIC#-1`): a poller takes a mapping only while the lease is free or
//! expired and it holds fewer than its fair share (⌈enabled mappings ÷ live pollers⌉), renews the
//! lease every `renew_every`, and stops the consumer the moment a renewal is refused. Consumers
//! check the lease (with its safety margin) before every invoke and every commit.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::error::StopReason;
use crate::invoke::Invoker;
use crate::lease::{Lease, LeaseError, LeaseGuard, LeaseSettings, LeaseStore, fair_share, now_epoch_ms};
use crate::mapping::{EventSourceMapping, State};
use crate::poller::{MappingExit, PollerEnv, run_mapping};
use crate::store::{Loaded, MappingStore, Status, StoreError};

struct Running {
    fingerprint: String,
    version: u64,
    stop: CancellationToken,
    abandon: CancellationToken,
    handle: JoinHandle<MappingExit>,
}

/// The poller's identity and lease store, shared by its lease keepers.
struct Leasing<L> {
    store: Arc<L>,
    owner: Arc<str>,
    settings: LeaseSettings,
}

/// The lease key's partition for a whole-mapping lease.
const WHOLE_MAPPING: i32 = -1;

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

/// Runs the poller over every mapping in `store` until `stop` fires, then stops every consumer:
/// intake stops at once, in-flight invokes get `drain_timeout` to finish, what succeeded is
/// committed and the leases are released.
pub async fn run_poller<S: MappingStore, L: LeaseStore, I: Invoker>(
    store: Arc<S>,
    leases: Arc<L>,
    env: Arc<PollerEnv<I>>,
    stop: CancellationToken,
) {
    let owner: Arc<str> = Arc::from(format!("poller-{}", uuid::Uuid::new_v4()));
    let leasing = Leasing { store: leases, owner: owner.clone(), settings: env.settings.lease };
    info!(poller = %owner, "Poller started.");
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut backoff = Backoff::new(env.settings.reconnect_base, env.settings.reconnect_cap);
    let tick = env.settings.refresh_interval.min(env.settings.lease.renew_every);
    loop {
        reap(&*store, &mut running).await;
        let delay = match store.list().await {
            Ok(items) => {
                backoff.reset();
                reconcile(&*store, &leasing, &env, &mut running, items).await;
                tick
            }
            Err(e) => {
                let delay = backoff.next_delay();
                error!(error = %e, retry_in_s = delay.as_secs_f32(), "Cannot read the mappings table; running consumers continue.");
                delay
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    let uuids: Vec<String> = running.keys().cloned().collect();
    for uuid in &uuids {
        if let Some(r) = running.get(uuid) {
            r.stop.cancel();
        }
    }
    let drain = tokio::time::sleep(env.settings.drain_timeout);
    tokio::pin!(drain);
    for (uuid, mut r) in running {
        tokio::select! {
            _ = &mut r.handle => {}
            () = &mut drain => {
                warn!(mapping = %uuid, "In-flight invoke did not finish in time; abandoning it (its batch will be redelivered).");
                r.abandon.cancel();
                let _ = r.handle.await;
            }
        }
    }
    // Consumers have ended; give their lease keepers a moment to release.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    if let Err(e) = leasing.store.remove_poller(&owner).await {
        warn!(poller = %owner, error = %e, "Could not remove the poller's heartbeat; it expires by itself.");
    }
    info!(poller = %owner, "Poller stopped.");
}

/// Collects consumers that ended by themselves and records unrecoverable errors on the item.
async fn reap<S: MappingStore>(store: &S, running: &mut HashMap<String, Running>) {
    let finished: Vec<String> =
        running.iter().filter(|(_, r)| r.handle.is_finished()).map(|(u, _)| u.clone()).collect();
    for uuid in finished {
        let Some(r) = running.remove(&uuid) else {
            continue;
        };
        match r.handle.await {
            Ok(MappingExit::Unrecoverable { reason, message }) => {
                disable(store, &uuid, None, reason, &message).await;
            }
            Ok(MappingExit::Stopped) => {}
            Err(e) => {
                error!(mapping = %uuid, error = %e, "Mapping consumer crashed; it will be restarted.")
            }
        }
    }
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

async fn stop_consumer(running: &mut HashMap<String, Running>, uuid: &str) {
    if let Some(r) = running.remove(uuid) {
        r.stop.cancel();
        info!(mapping = %uuid, "Stopping consumer.");
        // Let it drain in the background; a new consumer for the same mapping may start now:
        // offsets are only ever committed after delivery, so an overlap can only redeliver.
        tokio::spawn(async move {
            let _ = r.handle.await;
        });
    }
}

async fn reconcile<S: MappingStore, L: LeaseStore, I: Invoker>(
    store: &S,
    leasing: &Leasing<L>,
    env: &Arc<PollerEnv<I>>,
    running: &mut HashMap<String, Running>,
    items: Vec<Loaded>,
) {
    let now = now_epoch_ms();
    let live = match leasing.store.heartbeat(&leasing.owner, now, leasing.settings.duration).await {
        Ok(()) => leasing.store.live_pollers(now).await.map(|p| p.len()).unwrap_or(1),
        Err(e) => {
            warn!(poller = %leasing.owner, error = %e, "Heartbeat failed.");
            1
        }
    };
    let wanted = items.iter().filter(|i| matches!(i, Loaded::Valid(m) if m.state.wants_consumer())).count();
    let share = fair_share(wanted, live);
    let mut seen = Vec::with_capacity(items.len());
    for item in items {
        let Some(uuid) = item.uuid().map(str::to_owned) else {
            error!("A mappings-table item has no UUID string; it is ignored. Remove it or give it a UUID.");
            continue;
        };
        seen.push(uuid.clone());
        match item {
            Loaded::Malformed { state, reason, .. } => {
                stop_consumer(running, &uuid).await;
                if state.as_deref() == Some("Deleting") {
                    continue;
                }
                if state.as_deref() != Some("Disabled") {
                    error!(mapping = %uuid, error = %reason, "Mapping item is malformed; disabling it.");
                    disable(
                        store,
                        &uuid,
                        None,
                        StopReason::EsmConfigNotValid,
                        &format!("PROBLEM: malformed mapping item: {reason}"),
                    )
                    .await;
                }
            }
            Loaded::Invalid { mapping, error } => {
                stop_consumer(running, &uuid).await;
                if mapping.state == State::Deleting {
                    let _ = store.delete(&uuid, mapping.version).await;
                } else if mapping.state != State::Disabled {
                    error!(mapping = %uuid, error = %error, "Mapping is not valid; disabling it.");
                    disable(
                        store,
                        &uuid,
                        Some(mapping.version),
                        StopReason::EsmConfigNotValid,
                        &format!("PROBLEM: {error}"),
                    )
                    .await;
                }
            }
            Loaded::Valid(mapping) => match mapping.state {
                State::Creating | State::Enabling | State::Enabled | State::Updating => {
                    let fp = fingerprint(&mapping);
                    let current = running.get(&uuid).map(|r| r.fingerprint == fp);
                    if current == Some(false) {
                        info!(mapping = %uuid, "Mapping configuration changed; restarting its consumer.");
                        stop_consumer(running, &uuid).await;
                    }
                    if current == Some(true) {
                        if let Some(r) = running.get_mut(&uuid) {
                            r.version = mapping.version;
                        }
                    } else if running.len() < share
                        && let Some(lease) = take_lease(leasing, &mapping).await
                    {
                        start_consumer(env, leasing, running, mapping.clone(), fp, lease);
                    }
                    if mapping.state != State::Enabled && running.contains_key(&uuid) {
                        set_state(store, &mapping, State::Enabled).await;
                    }
                }
                State::Disabling | State::Disabled => {
                    stop_consumer(running, &uuid).await;
                    if mapping.state == State::Disabling {
                        set_state(store, &mapping, State::Disabled).await;
                    }
                }
                State::Deleting => {
                    stop_consumer(running, &uuid).await;
                    match store.delete(&uuid, mapping.version).await {
                        Ok(()) => {
                            info!(mapping = %uuid, "Mapping deleted.");
                            let leases = leasing.store.clone();
                            let uuid = uuid.clone();
                            // After our consumer's lease keeper has released it.
                            tokio::spawn(async move {
                                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                                if let Err(e) = leases.delete_mapping(&uuid).await {
                                    warn!(mapping = %uuid, error = %e, "Could not remove the deleted mapping's leases.");
                                }
                            });
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => {
                            warn!(mapping = %uuid, error = %e, "Could not delete the mapping item.")
                        }
                    }
                }
            },
        }
    }
    let gone: Vec<String> = running.keys().filter(|u| !seen.contains(u)).cloned().collect();
    for uuid in gone {
        info!(mapping = %uuid, "Mapping item removed.");
        stop_consumer(running, &uuid).await;
    }
    // More pollers than before: hand surplus mappings back (commit, then release) so a newcomer
    // gets work within a renewal period.
    let mut surplus: Vec<String> = running.keys().cloned().collect();
    surplus.sort();
    for uuid in surplus.into_iter().skip(share.max(1)) {
        info!(mapping = %uuid, share, live, "Over fair share; handing the mapping over.");
        stop_consumer(running, &uuid).await;
    }
}

/// Takes the mapping's lease if it is free or expired; `None` if another poller holds it.
async fn take_lease<L: LeaseStore>(leasing: &Leasing<L>, mapping: &EventSourceMapping) -> Option<Lease> {
    let result = async {
        leasing.store.ensure(&mapping.uuid, mapping.topic(), WHOLE_MAPPING).await?;
        let current = leasing
            .store
            .leases(&mapping.uuid)
            .await?
            .into_iter()
            .find(|l| l.partition == WHOLE_MAPPING && l.topic == mapping.topic());
        let Some(current) = current else { return Ok(None) };
        let now = now_epoch_ms();
        let free = current.owner.as_deref().is_none_or(str::is_empty) || current.expires_at_ms < now;
        if !free {
            return Ok(None);
        }
        leasing.store.acquire(&current, &leasing.owner, now, leasing.settings.duration).await.map(Some)
    }
    .await;
    match result {
        Ok(lease) => lease,
        Err(LeaseError::Lost { .. }) => None,
        Err(e) => {
            warn!(mapping = %mapping.uuid, error = %e, "Cannot take the mapping's lease.");
            None
        }
    }
}

/// Renews the lease while the consumer runs; releases it when the consumer is done; stops the
/// consumer at once if the lease is lost or cannot be confirmed in time.
#[allow(clippy::too_many_arguments)]
async fn keep_lease<L: LeaseStore>(
    store: Arc<L>,
    owner: Arc<str>,
    settings: LeaseSettings,
    mut lease: Lease,
    guard: Arc<LeaseGuard>,
    done: CancellationToken,
    stop: CancellationToken,
    abandon: CancellationToken,
) {
    let margin = i64::try_from(settings.safety_margin.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = done.cancelled() => {
                guard.revoke();
                if let Err(e) = store.release(&lease, &owner).await {
                    warn!(mapping = %lease.mapping, error = %e, "Could not release the lease; it expires by itself.");
                }
                return;
            }
            () = tokio::time::sleep(settings.renew_every) => {}
        }
        match store.renew(&lease, &owner, now_epoch_ms(), settings.duration).await {
            Ok(renewed) => {
                guard.extend(renewed.expires_at_ms.saturating_sub(margin));
                lease = renewed;
            }
            Err(LeaseError::Lost { .. }) => {
                guard.revoke();
                warn!(mapping = %lease.mapping, poller = %owner, "Lease lost to another poller; stopping at once.");
                stop.cancel();
                abandon.cancel();
                return;
            }
            Err(e) => {
                warn!(mapping = %lease.mapping, error = %e, "Lease renewal failed; retrying.");
                if !guard.is_valid() {
                    // Cannot confirm the lease any more: stop before someone else may take it.
                    stop.cancel();
                    abandon.cancel();
                }
            }
        }
    }
}

fn start_consumer<L: LeaseStore, I: Invoker>(
    env: &Arc<PollerEnv<I>>,
    leasing: &Leasing<L>,
    running: &mut HashMap<String, Running>,
    mapping: EventSourceMapping,
    fingerprint: String,
    lease: Lease,
) {
    let stop = CancellationToken::new();
    let abandon = CancellationToken::new();
    let done = CancellationToken::new();
    let margin = i64::try_from(leasing.settings.safety_margin.as_millis()).unwrap_or(i64::MAX);
    let guard = Arc::new(LeaseGuard::until(lease.expires_at_ms.saturating_sub(margin)));
    let uuid = mapping.uuid.clone();
    let version = mapping.version;
    info!(mapping = %uuid, poller = %leasing.owner, topic = mapping.topic(), function = %mapping.function_arn, "Starting consumer.");
    tokio::spawn(keep_lease(
        leasing.store.clone(),
        leasing.owner.clone(),
        leasing.settings,
        lease,
        guard.clone(),
        done.clone(),
        stop.clone(),
        abandon.clone(),
    ));
    let consumer = run_mapping(env.clone(), mapping, guard, stop.clone(), abandon.clone());
    let handle = tokio::spawn(async move {
        let exit = consumer.await;
        done.cancel();
        exit
    });
    running.insert(uuid, Running { fingerprint, version, stop, abandon, handle });
}
