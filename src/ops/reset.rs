//! Moving a mapping's committed offsets while it runs (`esm reset-offsets`), and replay (a reset
//! backwards).
//!
//! The command resolves the target of every partition to a concrete offset and writes it on the
//! partition's lease item as a request (`ResetRequest`, `ResetTo`). Whoever runs the partition
//! applies it with no invoke in flight: the poller holding the lease hands the request to the
//! partition ([`ResetSlot`]), whose worker stops intake, lets the batch in flight finish and
//! commit, then commits the requested offset, restarts reading there and marks the request
//! applied (`ResetApplied`, conditional on still holding the lease). A partition that starts
//! under a new lease applies a pending request before reading its committed offset. So no poller
//! ever commits over a reset: the only committer of a partition is its lease holder, and it
//! applies the request before its next batch.
//!
//! A partition whose lease nobody live holds is reset by the command itself: it takes the lease
//! as a poller would (conditional on the counter it read), commits, marks the request applied
//! and releases the lease. A poller that takes the lease in between applies the same request.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::coordination::connector::{Connector, MappingClient, StartAt};
use crate::coordination::leases::{LeaseError, LeaseId, LeaseStore, OffsetReset, PollerInfo};
use crate::delivery::checkpoint::{Checkpoint, CheckpointError};
use crate::model::mapping::{EventSourceMapping, StartingPosition};

/// A partition's pending reset inside one poller: set by the supervisor from the lease scan,
/// applied by the partition's worker, acknowledged on the lease item by the supervisor.
#[derive(Debug, Default)]
pub struct ResetSlot {
    state: Mutex<SlotState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    pending: Option<OffsetReset>,
    /// Applied and committed, not yet acknowledged on the lease item.
    applied: Option<String>,
    /// The last request taken by the worker (applied or being applied).
    taken: Option<String>,
}

impl ResetSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease scan found `reset` pending; wakes the worker unless it has it already.
    pub fn request(&self, reset: OffsetReset) {
        let mut state = self.lock();
        if state.taken.as_ref() == Some(&reset.request) || state.pending.as_ref() == Some(&reset) {
            return;
        }
        state.pending = Some(reset);
        drop(state);
        self.notify.notify_one();
    }

    /// For the worker: the request to apply now, if any.
    pub fn take(&self) -> Option<OffsetReset> {
        let mut state = self.lock();
        let reset = state.pending.take()?;
        state.taken = Some(reset.request.clone());
        Some(reset)
    }

    /// Resolves once a request is pending.
    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.lock().pending.is_some() {
                return;
            }
            notified.await;
        }
    }

    /// For the worker: `request` is committed.
    pub fn applied(&self, request: &str) {
        self.lock().applied = Some(request.to_owned());
    }

    /// For the supervisor: a request applied and not yet acknowledged.
    pub fn to_acknowledge(&self) -> Option<String> {
        self.lock().applied.clone()
    }

    /// For the supervisor: `request` is marked applied on the lease item (or the lease moved on).
    pub fn acknowledged(&self, request: &str) {
        let mut state = self.lock();
        if state.applied.as_deref() == Some(request) {
            state.applied = None;
        }
    }
}

/// Commits a reset's offset for its partition.
///
/// # Errors
/// The commit failed; the request stays pending and is applied again.
pub async fn commit_reset<C: Checkpoint>(checkpoint: &C, reset: &OffsetReset) -> Result<(), CheckpointError> {
    checkpoint.commit(&BTreeMap::from([(reset.id.partition, reset.offset)])).await
}

/// Where to move the offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    /// The first record at or after this time (epoch milliseconds); the end when there is none.
    Timestamp(i64),
    /// Explicit offsets of some partitions.
    Offsets(BTreeMap<i32, i64>),
}

/// Why a reset was refused or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("partition {partition}: offset {offset} is beyond the log end {end}")]
    BeyondEnd { partition: i32, offset: i64, end: i64 },
    #[error("partition {partition} does not exist in topic {topic}")]
    NoSuchPartition { partition: i32, topic: String },
    #[error(
        "the consumer group {group} has active members that are not kafka-esm pollers; Kafka refuses the commit: stop them first ({message})"
    )]
    ActiveGroup { group: String, message: String },
    #[error(transparent)]
    Leases(#[from] LeaseError),
    #[error(
        "not applied within {waited_s} s on partitions {partitions:?}: their pollers did not acknowledge (still starting, or busy with a long invoke); the request stays on the leases and is applied when they get to it"
    )]
    Timeout { waited_s: u64, partitions: Vec<i32> },
    #[error("partition {partition}: another reset ({request}) replaced this one")]
    Superseded { partition: i32, request: String },
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionMove {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset before; `None` without one.
    pub current_offset: Option<i64>,
    pub new_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Who applied it: a poller's id, `esm` (no poller ran the partition), or `None` (dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
}

fn kafka(e: impl std::fmt::Display) -> ResetError {
    ResetError::Kafka(e.to_string())
}

/// Resolves `target` to a concrete offset per partition (every partition, or those named).
///
/// # Errors
/// Kafka cannot answer; a named partition does not exist; an offset is beyond the log end.
pub async fn plan<C: Connector>(
    connector: &C,
    mapping: &EventSourceMapping,
    target: &Target,
) -> Result<Vec<PartitionMove>, ResetError> {
    let client = connector.connect(mapping).await.map_err(kafka)?;
    let result = plan_with(&client, mapping, target).await;
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    result
}

async fn plan_with<M: MappingClient>(
    client: &M,
    mapping: &EventSourceMapping,
    target: &Target,
) -> Result<Vec<PartitionMove>, ResetError> {
    let all = client.partitions().await.map_err(kafka)?;
    let partitions: Vec<i32> = match target {
        Target::Offsets(offsets) => {
            if let Some(&partition) = offsets.keys().find(|p| !all.contains(p)) {
                return Err(ResetError::NoSuchPartition { partition, topic: mapping.topic().to_owned() });
            }
            offsets.keys().copied().collect()
        }
        _ => all,
    };
    let committed = client.checkpoint().committed(&partitions).await.map_err(kafka)?;
    let at = |position, timestamp_ms| StartAt { position, timestamp_ms };
    let mut moves = Vec::new();
    for partition in partitions {
        let (start, _) =
            client.start_offset(partition, None, at(StartingPosition::TrimHorizon, None)).await.map_err(kafka)?;
        let (end, _) = client.start_offset(partition, None, at(StartingPosition::Latest, None)).await.map_err(kafka)?;
        let new_offset = match target {
            Target::Earliest => start,
            Target::Latest => end,
            Target::Timestamp(ms) => {
                client
                    .start_offset(partition, None, at(StartingPosition::AtTimestamp, Some(*ms)))
                    .await
                    .map_err(kafka)?
                    .0
            }
            Target::Offsets(offsets) => {
                let offset = offsets.get(&partition).copied().unwrap_or(start);
                if offset > end {
                    return Err(ResetError::BeyondEnd { partition, offset, end });
                }
                // Below the log start there is nothing: start at the first record, as
                // kafka-consumer-groups.sh does.
                offset.max(start)
            }
        };
        moves.push(PartitionMove {
            topic: mapping.topic().to_owned(),
            partition,
            current_offset: committed.get(&partition).copied().flatten(),
            new_offset,
            log_start_offset: start,
            log_end_offset: end,
            applied_by: None,
        });
    }
    Ok(moves)
}

/// How [`apply`] waits for pollers.
#[derive(Debug, Clone, Copy)]
pub struct ApplySettings {
    /// How long to wait for every partition to be applied.
    pub timeout: Duration,
    /// The pollers' lease duration: a heartbeat this long past its expiry is a dead poller's.
    pub lease_duration: Duration,
    /// Between reads of the leases table while waiting.
    pub poll_every: Duration,
}

/// Requests `moves` on the mapping's leases and waits until each is applied: by the poller
/// holding the partition, or by this command for a partition nobody live holds.
///
/// # Errors
/// The leases table or Kafka failed, Kafka refused the commit (an active group), or the pollers
/// did not apply every partition within the timeout.
pub async fn apply<L: LeaseStore, C: Connector>(
    leases: &L,
    connector: &C,
    mapping: &EventSourceMapping,
    mut moves: Vec<PartitionMove>,
    settings: ApplySettings,
    now_ms: impl Fn() -> i64,
) -> Result<Vec<PartitionMove>, ResetError> {
    let request = format!("reset-{}", uuid::Uuid::new_v4());
    let id = |p: i32| LeaseId::new(&mapping.uuid, mapping.topic(), p);
    for m in &moves {
        // A partition never run yet has no lease item: create it so the request has a home.
        leases.ensure(&id(m.partition), false).await?;
        leases.request_reset(&id(m.partition), &request, m.new_offset).await?;
    }
    let snapshot = leases.snapshot().await?;
    let dead = |owner: &str| {
        let grace = i64::try_from(settings.lease_duration.as_millis()).unwrap_or(i64::MAX);
        snapshot
            .pollers
            .iter()
            .find(|p: &&PollerInfo| p.id == owner)
            .is_none_or(|p| p.expires_at_ms.saturating_add(grace) < now_ms())
    };
    let stored = snapshot.of(&mapping.uuid);
    let me = format!("esm-{request}");
    let mut client = None;
    for m in &mut moves {
        let Some(lease) = stored.leases.iter().find(|l| l.id == id(m.partition)) else { continue };
        if lease.owner.as_deref().is_some_and(|o| !dead(o)) {
            continue;
        }
        // Nobody live runs it: take the lease as a poller would, so no poller starts it meanwhile.
        let held = match leases.acquire(lease, &me).await {
            Ok(held) => held,
            Err(LeaseError::Lost { .. }) => continue, // a poller took it: it applies the request
            Err(e) => return Err(e.into()),
        };
        let client = match &client {
            Some(c) => c,
            None => client.insert(connector.connect(mapping).await.map_err(kafka)?),
        };
        let reset = OffsetReset { id: held.id.clone(), request: request.clone(), offset: m.new_offset };
        let committed = commit_reset(&client.checkpoint(), &reset).await;
        let marked = match &committed {
            Ok(()) => leases.reset_applied(&held, &me, &request).await,
            Err(_) => Ok(()),
        };
        // `Lost`: a poller took the lease meanwhile; it applies the same request itself.
        match leases.release(&held, &me).await {
            Ok(()) | Err(LeaseError::Lost { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        committed.map_err(|e| refused(mapping, &e.to_string()))?;
        match marked {
            Ok(()) => {}
            Err(LeaseError::Lost { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        m.applied_by = Some("esm".to_owned());
    }
    if let Some(client) = client {
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }
    let started = tokio::time::Instant::now();
    loop {
        let snapshot = leases.snapshot().await?;
        let stored = snapshot.of(&mapping.uuid);
        let mut waiting = Vec::new();
        for m in moves.iter_mut().filter(|m| m.applied_by.is_none()) {
            match stored.resets.iter().find(|r| r.id == id(m.partition)) {
                Some(r) if r.request != request => {
                    return Err(ResetError::Superseded { partition: m.partition, request: r.request.clone() });
                }
                Some(_) => waiting.push(m.partition),
                None => {
                    let owner = stored.leases.iter().find(|l| l.id == id(m.partition)).and_then(|l| l.owner.clone());
                    m.applied_by = Some(owner.unwrap_or_else(|| "a poller".to_owned()));
                }
            }
        }
        if waiting.is_empty() {
            return Ok(moves);
        }
        if started.elapsed() >= settings.timeout {
            return Err(ResetError::Timeout { waited_s: settings.timeout.as_secs(), partitions: waiting });
        }
        tokio::time::sleep(settings.poll_every).await;
    }
}

fn refused(mapping: &EventSourceMapping, message: &str) -> ResetError {
    // A simple (unsubscribed) commit is refused while the group has members of its own.
    let active = ["UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS", "Unknown member", "generation"]
        .iter()
        .any(|m| message.contains(m));
    if active {
        ResetError::ActiveGroup { group: mapping.consumer_group_id().to_owned(), message: message.to_owned() }
    } else {
        ResetError::Kafka(message.to_owned())
    }
}

/// The moves as `kafka-consumer-groups.sh --reset-offsets` prints them.
pub fn table(moves: &[PartitionMove]) -> String {
    let mut rows =
        vec![["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "LOG-END-OFFSET", "APPLIED-BY"].map(str::to_owned)];
    for m in moves {
        rows.push([
            m.topic.clone(),
            m.partition.to_string(),
            m.current_offset.map_or_else(|| "-".to_owned(), |o| o.to_string()),
            m.new_offset.to_string(),
            m.log_end_offset.to_string(),
            m.applied_by.clone().unwrap_or_else(|| "(dry run)".to_owned()),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::leases::LeaseId;
    use std::sync::Arc;
    use std::time::Duration;

    fn reset(request: &str, offset: i64) -> OffsetReset {
        OffsetReset { id: LeaseId::new("m", "t", 0), request: request.into(), offset }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_wakes_the_worker_once_and_is_acknowledged_after_it_was_applied() {
        let slot = Arc::new(ResetSlot::default());
        let waiter = {
            let slot = slot.clone();
            tokio::spawn(async move { slot.requested().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        slot.request(reset("r1", 0));
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        let taken = slot.take().unwrap();
        assert_eq!(taken.offset, 0);
        // The next scans still see it pending on the table until it is acknowledged: no second run.
        slot.request(reset("r1", 0));
        assert!(slot.take().is_none());
        assert_eq!(slot.to_acknowledge(), None);
        slot.applied("r1");
        assert_eq!(slot.to_acknowledge().as_deref(), Some("r1"));
        slot.acknowledged("r1");
        assert_eq!(slot.to_acknowledge(), None);
        // A new request replaces it.
        slot.request(reset("r2", 7));
        assert_eq!(slot.take().map(|r| r.offset), Some(7));
    }
}
