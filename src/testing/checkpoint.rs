//! Checkpoints in a map; can be told to fail its next commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::delivery::checkpoint::{Checkpoint, CheckpointError};

/// In-memory checkpoints.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoint {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    offsets: BTreeMap<i32, i64>,
    history: Vec<BTreeMap<i32, i64>>,
    failures_left: usize,
}

impl MemoryCheckpoint {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `n` commits fail.
    pub fn fail_next(&self, n: usize) {
        self.lock().failures_left = n;
    }

    pub fn offsets(&self) -> BTreeMap<i32, i64> {
        self.lock().offsets.clone()
    }

    /// Every successful commit call, in order.
    pub fn history(&self) -> Vec<BTreeMap<i32, i64>> {
        self.lock().history.clone()
    }
}

impl Checkpoint for MemoryCheckpoint {
    async fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, CheckpointError> {
        let inner = self.lock();
        Ok(partitions.iter().map(|p| (*p, inner.offsets.get(p).copied())).collect())
    }

    async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), CheckpointError> {
        let mut inner = self.lock();
        if inner.failures_left > 0 {
            inner.failures_left -= 1;
            return Err(CheckpointError { message: "injected failure".into() });
        }
        inner.offsets.extend(offsets);
        inner.history.push(offsets.clone());
        Ok(())
    }
}
