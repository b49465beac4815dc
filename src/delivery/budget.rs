//! The poller's memory for batches (`ESM_BATCH_MEMORY_MB`): every record in a batch, from when the
//! batcher takes it until the batch is resolved, holds its encoded size from one budget shared by
//! all the poller's partitions. So a poller's batches never need more than the budget, however many
//! partitions it holds and however large their batches may grow (review #15: a mapping with many
//! partitions and 6 MB batches took every poller down).
//!
//! Never a deadlock, never a partition starved by others (another mapping's batches retried
//! forever, say): a batch's first record is always taken, over the budget if need be; only its
//! further records need room, and a batch that has none for its next record closes early and is
//! sent as it is. So a poller's batches hold at most the budget plus one record per partition.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Bytes the poller's batches may hold at once.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    used: Mutex<usize>,
    freed: Notify,
}

/// Bytes held from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self { total, used: Mutex::new(0), freed: Notify::new() })
    }

    /// The process's budget of `total` bytes: one poller per process, so one budget for all its
    /// mappings (pollers run in one process, as in tests, share it).
    pub fn for_process(total: usize) -> Arc<Self> {
        static BUDGETS: Mutex<Vec<(usize, std::sync::Weak<Budget>)>> = Mutex::new(Vec::new());
        let mut budgets = BUDGETS.lock().unwrap_or_else(PoisonError::into_inner);
        budgets.retain(|(_, b)| b.strong_count() > 0);
        if let Some(budget) = budgets.iter().find(|(t, _)| *t == total).and_then(|(_, b)| b.upgrade()) {
            return budget;
        }
        let budget = Self::new(total);
        budgets.push((total, Arc::downgrade(&budget)));
        budget
    }

    pub const fn total(&self) -> usize {
        self.total
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `bytes` if there is room now (or nothing else holds any).
    pub fn try_hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if *used > 0 && *used + bytes > self.total {
            return None;
        }
        *used += bytes;
        Some(Held { budget: self.clone(), bytes })
    }

    /// `bytes`, room or not: a batch's first record.
    pub fn force_hold(self: &Arc<Self>, bytes: usize) -> Held {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) += bytes;
        Held { budget: self.clone(), bytes }
    }

    /// `bytes`, waiting for room. Cancel-safe.
    pub async fn hold(self: &Arc<Self>, bytes: usize) -> Held {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(held) = self.try_hold(bytes) {
                return held;
            }
            freed.await;
        }
    }
}

impl Held {
    /// Adds `more` (held from the same budget) to this.
    pub fn merge(&mut self, mut more: Self) {
        self.bytes += std::mem::take(&mut more.bytes);
    }

    pub const fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        *self.budget.used.lock().unwrap_or_else(PoisonError::into_inner) -= self.bytes;
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn holds_up_to_the_total_and_waiters_get_room_as_it_is_freed() {
        let budget = Budget::new(100);
        let mut a = budget.try_hold(60).unwrap();
        a.merge(budget.try_hold(30).unwrap());
        assert_eq!((a.bytes(), budget.used()), (90, 90));
        assert!(budget.try_hold(20).is_none());
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.hold(50).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert_eq!(budget.used(), 50);
        drop(b);
        // A record larger than the budget passes alone.
        let huge = budget.try_hold(500).unwrap();
        assert!(budget.try_hold(1).is_none());
        drop(huge);
        assert_eq!(budget.used(), 0);
    }
}
