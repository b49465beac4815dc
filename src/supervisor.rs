//! The supervisor: reads the mapping items, runs one consumer per mapping that should run, and
//! moves mappings through their states.
//!
//! Every refresh it re-reads the table: new or re-enabled mappings start, disabled or deleted ones
//! stop (committing what they delivered), changed ones restart with the new configuration.
//! Transitional states are moved to their end state (`Creating`/`Enabling`/`Updating` →
//! `Enabled`, `Disabling` → `Disabled`, `Deleting` → item removed). A mapping whose item is
//! malformed or invalid, or whose consumer hit an unrecoverable error, is set to `Disabled` with
//! the reason; the others keep running.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::error::StopReason;
use crate::invoke::Invoker;
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
/// committed.
pub async fn run_poller<S: MappingStore, I: Invoker>(store: Arc<S>, env: Arc<PollerEnv<I>>, stop: CancellationToken) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut backoff = Backoff::new(env.settings.reconnect_base, env.settings.reconnect_cap);
    loop {
        reap(&*store, &mut running).await;
        let delay = match store.list().await {
            Ok(items) => {
                backoff.reset();
                reconcile(&*store, &env, &mut running, items).await;
                env.settings.refresh_interval
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
    info!("Poller stopped.");
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

async fn reconcile<S: MappingStore, I: Invoker>(
    store: &S,
    env: &Arc<PollerEnv<I>>,
    running: &mut HashMap<String, Running>,
    items: Vec<Loaded>,
) {
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
                    if current != Some(true) {
                        start_consumer(env, running, mapping.clone(), fp);
                    } else if let Some(r) = running.get_mut(&uuid) {
                        r.version = mapping.version;
                    }
                    if mapping.state != State::Enabled {
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
                        Ok(()) => info!(mapping = %uuid, "Mapping deleted."),
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
}

fn start_consumer<I: Invoker>(
    env: &Arc<PollerEnv<I>>,
    running: &mut HashMap<String, Running>,
    mapping: EventSourceMapping,
    fingerprint: String,
) {
    let stop = CancellationToken::new();
    let abandon = CancellationToken::new();
    let uuid = mapping.uuid.clone();
    let version = mapping.version;
    info!(mapping = %uuid, topic = mapping.topic(), function = %mapping.function_arn, "Starting consumer.");
    let handle = tokio::spawn(run_mapping(env.clone(), mapping, stop.clone(), abandon.clone()));
    running.insert(uuid, Running { fingerprint, version, stop, abandon, handle });
}
