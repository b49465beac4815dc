//! Checkpoints: the consumer group's committed offsets, the only record of progress.
//!
//! [`Checkpoint`] is the seam (Kafka's group offsets in [`crate::kafka`], a map in the test
//! kit). [`spawn_committer`] runs one background committer per consumer: the
//! partition workers hand it "batch up to offset N succeeded", it coalesces those per partition and
//! commits the highest, retrying with backoff. It never learns of an offset that was not
//! delivered, so nothing can be committed past a failure; a crash before a commit only means
//! redelivery. While commits fail, [`CommitSender::failing`] says why, and the partition worker
//! takes no new batch: what could be redelivered stays one batch, not everything since.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use super::guard::LeaseGuard;
use crate::backoff::Backoff;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset checkpoint failed: {message}")]
pub struct CheckpointError {
    pub message: String,
}

/// Committed offsets of one consumer group on one topic. An offset is the next one to read.
pub trait Checkpoint: Send + Sync + 'static {
    /// The committed offset of each partition, `None` where the group has none.
    fn committed(
        &self,
        partitions: &[i32],
    ) -> impl Future<Output = Result<BTreeMap<i32, Option<i64>>, CheckpointError>> + Send;

    /// Commits `partition → next offset` for every entry.
    fn commit(&self, offsets: &BTreeMap<i32, i64>) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

impl<C: Checkpoint> Checkpoint for Arc<C> {
    fn committed(
        &self,
        partitions: &[i32],
    ) -> impl Future<Output = Result<BTreeMap<i32, Option<i64>>, CheckpointError>> + Send {
        (**self).committed(partitions)
    }

    fn commit(&self, offsets: &BTreeMap<i32, i64>) -> impl Future<Output = Result<(), CheckpointError>> + Send {
        (**self).commit(offsets)
    }
}

/// Hands "partition P succeeded up to next offset N" to the committer.
#[derive(Debug, Clone)]
pub struct CommitSender {
    tx: mpsc::UnboundedSender<(i32, i64)>,
    /// The last commit's error while commits fail; `None` once one succeeds.
    health: watch::Receiver<Option<String>>,
}

impl CommitSender {
    /// Records that everything before `next_offset` in `partition` was delivered.
    pub fn delivered(&self, partition: i32, next_offset: i64) {
        // The committer outlives every sender (it ends when they are all dropped).
        let _ = self.tx.send((partition, next_offset));
    }

    /// Why commits fail, while they do (`None`: the last commit succeeded).
    pub fn failing(&self) -> Option<String> {
        self.health.borrow().clone()
    }

    /// Waits until a commit succeeds again (at once when none is failing).
    pub async fn recovered(&self) {
        let mut health = self.health.clone();
        // An error means the committer is gone: nothing to wait for.
        let _ = health.wait_for(Option::is_none).await;
    }
}

/// What the committer had committed when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    pub committed: BTreeMap<i32, i64>,
    /// Offsets delivered but never committed (the final commit failed): they will be redelivered.
    pub uncommitted: BTreeMap<i32, i64>,
}

/// Timing of commit retries.
#[derive(Debug, Clone, Copy)]
pub struct CommitterSettings {
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Attempts of the final commit after the last sender is gone.
    pub final_attempts: u32,
}

impl Default for CommitterSettings {
    fn default() -> Self {
        Self { retry_base: Duration::from_millis(100), retry_cap: Duration::from_secs(5), final_attempts: 5 }
    }
}

/// Starts the committer. It runs until every [`CommitSender`] is dropped, then makes a final
/// commit of what is pending and reports.
pub fn spawn_committer<C: Checkpoint>(
    checkpoint: C,
    mapping: Arc<str>,
    guard: Arc<LeaseGuard>,
    settings: CommitterSettings,
) -> (CommitSender, JoinHandle<CommitReport>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (health_tx, health) = watch::channel(None);
    let handle = tokio::spawn(run_committer(checkpoint, rx, health_tx, mapping, guard, settings));
    (CommitSender { tx, health }, handle)
}

async fn run_committer<C: Checkpoint>(
    checkpoint: C,
    mut rx: mpsc::UnboundedReceiver<(i32, i64)>,
    health: watch::Sender<Option<String>>,
    mapping: Arc<str>,
    guard: Arc<LeaseGuard>,
    settings: CommitterSettings,
) -> CommitReport {
    let mut pending = BTreeMap::new();
    let mut report = CommitReport::default();
    let mut backoff = Backoff::new(settings.retry_base, settings.retry_cap);
    // Offsets only move forward: a late, lower offset is ignored.
    let merge = |pending: &mut BTreeMap<i32, i64>, committed: &BTreeMap<i32, i64>, (partition, offset): (i32, i64)| {
        if committed.get(&partition).is_some_and(|&c| c >= offset) {
            return;
        }
        let entry = pending.entry(partition).or_insert(offset);
        *entry = (*entry).max(offset);
    };
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(item) => merge(&mut pending, &report.committed, item),
                None => break,
            }
        }
        while let Ok(item) = rx.try_recv() {
            merge(&mut pending, &report.committed, item);
        }
        if !guard.is_valid() {
            // Another poller may own these partitions now: leave the offsets to it.
            warn!(mapping = %mapping, offsets = ?pending, "Lease no longer held; not committing (these records may be delivered again).");
            report.uncommitted.append(&mut pending);
            continue;
        }
        match checkpoint.commit(&pending).await {
            Ok(()) => {
                debug!(mapping = %mapping, offsets = ?pending, "Committed offsets.");
                report.committed.append(&mut pending);
                backoff.reset();
                health.send_if_modified(|h| h.take().is_some());
            }
            Err(e) => {
                health.send_replace(Some(e.message.clone()));
                let delay = backoff.next_delay();
                warn!(mapping = %mapping, error = %e, retry_in_ms = delay.as_millis(), "Offset commit failed; retrying.");
                // Keep collecting while waiting, so the retry commits the newest offsets.
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        item = rx.recv() => match item {
                            Some(item) => merge(&mut pending, &report.committed, item),
                            None => break,
                        },
                    }
                }
                if rx.is_closed() && rx.is_empty() {
                    break;
                }
            }
        }
    }
    // Every sender is gone: one last commit of whatever is pending.
    for attempt in 1..=settings.final_attempts {
        if pending.is_empty() {
            break;
        }
        if !guard.is_valid() {
            warn!(mapping = %mapping, offsets = ?pending, "Lease no longer held; not committing (these records may be delivered again).");
            break;
        }
        match checkpoint.commit(&pending).await {
            Ok(()) => {
                debug!(mapping = %mapping, offsets = ?pending, "Committed offsets.");
                report.committed.append(&mut pending);
            }
            Err(e) if attempt < settings.final_attempts => {
                warn!(mapping = %mapping, error = %e, attempt, "Final offset commit failed; retrying.");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                error!(mapping = %mapping, error = %e, offsets = ?pending, "Final offset commit failed; these records will be delivered again.");
            }
        }
    }
    report.uncommitted.append(&mut pending);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryCheckpoint;

    #[tokio::test(start_paused = true)]
    async fn coalesces_retries_and_flushes_on_close() {
        let checkpoint = MemoryCheckpoint::default();
        checkpoint.fail_next(2);
        let (sender, handle) = spawn_committer(
            checkpoint.clone(),
            Arc::from("m"),
            Arc::new(LeaseGuard::unconditional()),
            CommitterSettings::default(),
        );
        sender.delivered(0, 10);
        sender.delivered(1, 5);
        sender.delivered(0, 20);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 20), (1, 5)]));
        // Offsets never go backwards, even if an older one arrives late.
        sender.delivered(0, 15);
        sender.delivered(1, 9);
        drop(sender);
        let report = handle.await.unwrap();
        assert_eq!(report.committed, BTreeMap::from([(0, 20), (1, 9)]));
        assert!(report.uncommitted.is_empty());
        assert_eq!(checkpoint.offsets(), BTreeMap::from([(0, 20), (1, 9)]));
    }

    #[tokio::test(start_paused = true)]
    async fn reports_what_it_could_not_commit() {
        let checkpoint = MemoryCheckpoint::default();
        checkpoint.fail_next(100);
        let settings = CommitterSettings { final_attempts: 3, ..CommitterSettings::default() };
        let (sender, handle) =
            spawn_committer(checkpoint.clone(), Arc::from("m"), Arc::new(LeaseGuard::unconditional()), settings);
        sender.delivered(2, 7);
        drop(sender);
        let report = handle.await.unwrap();
        assert_eq!(report.uncommitted, BTreeMap::from([(2, 7)]));
        assert!(checkpoint.offsets().is_empty());
    }
}
