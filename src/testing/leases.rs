//! The leases table in memory, with DynamoDB's conditional-write rules; can be told to fail its
//! next calls, or to be unreachable until told otherwise.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::coordination::leases::{
    Grants, Heartbeat, Lease, LeaseError, LeaseId, LeaseStore, MalformedLease, MappingLeases, OffsetReset, PollerInfo,
    Snapshot,
};

/// In-memory leases and heartbeats.
#[derive(Debug, Clone, Default)]
pub struct MemoryLeaseStore {
    inner: Arc<Mutex<MemoryInner>>,
    down: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    leases: BTreeMap<LeaseId, Lease>,
    /// Items that cannot be parsed, by the partition whose key they occupy.
    malformed: BTreeMap<LeaseId, MalformedLease>,
    pollers: BTreeMap<String, PollerInfo>,
    /// Offset resets: the last requested (request, offset) and the last applied request.
    resets: BTreeMap<LeaseId, ((String, i64), Option<String>)>,
    /// Concurrency grants by mapping.
    grants: BTreeMap<String, Grants>,
    failures_left: usize,
    writes: u64,
}

impl MemoryLeaseStore {
    /// The next `n` calls, whatever they are, fail with `LeaseError::Dynamo` and change nothing.
    pub fn fail_next(&self, n: usize) {
        self.lock().failures_left = n;
    }

    /// Every call fails while `down` (an outage).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Writes made so far (successful ones).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Replaces a partition's lease item with one that cannot be parsed, as someone writing by
    /// hand would.
    pub fn put_malformed(&self, id: &LeaseId, problem: &str) {
        let key = format!("lease#{}#{}#{}", id.mapping, id.topic, id.partition);
        let mut inner = self.lock();
        inner.leases.remove(id);
        inner
            .malformed
            .insert(id.clone(), MalformedLease { key, partition: Some(id.partition), problem: problem.to_owned() });
    }

    /// The stored lease of a partition.
    pub fn lease(&self, id: &LeaseId) -> Option<Lease> {
        self.lock().leases.get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state, unless a failure is due.
    fn begin(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, LeaseError> {
        let mut inner = self.lock();
        if self.down.load(Ordering::Relaxed) {
            return Err(LeaseError::Dynamo { table: "memory".into(), message: "unreachable (injected)".into() });
        }
        if inner.failures_left > 0 {
            inner.failures_left -= 1;
            return Err(LeaseError::Dynamo { table: "memory".into(), message: "injected failure".into() });
        }
        Ok(inner)
    }

    /// Releases a held lease, leaving `fence_ms` on it.
    fn give_up(&self, lease: &Lease, owner: &str, fence_ms: Option<u64>) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        match inner.leases.get_mut(&lease.id) {
            Some(stored) if stored.owner.as_deref() == Some(owner) && stored.counter == lease.counter => {
                stored.owner = None;
                stored.counter += 1;
                stored.fence_ms = fence_ms;
                Ok(())
            }
            _ => Err(LeaseError::Lost { what: lease.id.to_string() }),
        }
    }

    fn write(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, LeaseError> {
        let mut inner = self.begin()?;
        inner.writes += 1;
        Ok(inner)
    }
}

impl LeaseStore for MemoryLeaseStore {
    async fn ensure(&self, id: &LeaseId, from_earliest: bool) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        // The key is taken by an unreadable item: as DynamoDB's attribute_not_exists.
        if inner.malformed.contains_key(id) {
            return Ok(());
        }
        inner.leases.entry(id.clone()).or_insert_with(|| Lease {
            id: id.clone(),
            owner: None,
            counter: 0,
            from_earliest,
            fence_ms: None,
        });
        Ok(())
    }

    async fn acquire(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        let mut inner = self.write()?;
        match inner.leases.get_mut(&lease.id) {
            Some(stored) if stored.counter == lease.counter => {
                stored.owner = Some(owner.to_owned()).filter(|o| !o.is_empty());
                stored.counter += 1;
                stored.fence_ms = None;
                Ok(stored.clone())
            }
            _ => Err(LeaseError::Lost { what: lease.id.to_string() }),
        }
    }

    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        self.give_up(lease, owner, None)
    }

    async fn release_fenced(&self, lease: &Lease, owner: &str, fence: std::time::Duration) -> Result<(), LeaseError> {
        self.give_up(lease, owner, Some(u64::try_from(fence.as_millis()).unwrap_or(u64::MAX)))
    }

    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        inner.leases.retain(|id, _| &*id.mapping != mapping);
        inner.malformed.retain(|id, _| &*id.mapping != mapping);
        inner.resets.retain(|id, _| &*id.mapping != mapping);
        inner.grants.remove(mapping);
        Ok(())
    }

    async fn delete_malformed(&self, key: &str) -> Result<(), LeaseError> {
        self.write()?.malformed.retain(|_, bad| bad.key != key);
        Ok(())
    }

    async fn register(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        if inner.pollers.contains_key(poller) {
            return Err(LeaseError::Lost { what: format!("poller {poller}") });
        }
        inner.pollers.insert(
            poller.to_owned(),
            PollerInfo { id: poller.to_owned(), counter: 1, expires_at_ms: beat.expires_at_ms, load: beat.load },
        );
        Ok(())
    }

    async fn heartbeat(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        let Some(info) = inner.pollers.get_mut(poller) else {
            return Err(LeaseError::Lost { what: format!("poller {poller}") });
        };
        info.counter += 1;
        info.expires_at_ms = beat.expires_at_ms;
        info.load = beat.load;
        Ok(())
    }

    async fn remove_poller(&self, poller: &str) -> Result<(), LeaseError> {
        self.write()?.pollers.remove(poller);
        Ok(())
    }

    async fn remove_dead_poller(&self, poller: &PollerInfo) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        match inner.pollers.get(&poller.id) {
            Some(stored) if stored.counter == poller.counter => {
                inner.pollers.remove(&poller.id);
                Ok(())
            }
            _ => Err(LeaseError::Lost { what: format!("poller {}", poller.id) }),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot, LeaseError> {
        let inner = self.begin()?;
        let mut mappings: BTreeMap<String, MappingLeases> = BTreeMap::new();
        for lease in inner.leases.values() {
            mappings.entry(lease.id.mapping.to_string()).or_default().leases.push(lease.clone());
        }
        for (id, ((request, offset), applied)) in &inner.resets {
            if applied.as_ref() != Some(request) {
                let reset = OffsetReset { id: id.clone(), request: request.clone(), offset: *offset };
                mappings.entry(id.mapping.to_string()).or_default().resets.push(reset);
            }
        }
        for (id, bad) in &inner.malformed {
            mappings.entry(id.mapping.to_string()).or_default().malformed.push(bad.clone());
        }
        Ok(Snapshot { pollers: inner.pollers.values().cloned().collect(), mappings }.sorted())
    }

    async fn request_reset(&self, id: &LeaseId, request: &str, offset: i64) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        if !inner.leases.contains_key(id) {
            return Err(LeaseError::Lost { what: id.to_string() });
        }
        let applied = inner.resets.get(id).and_then(|(_, applied)| applied.clone());
        inner.resets.insert(id.clone(), ((request.to_owned(), offset), applied));
        Ok(())
    }

    async fn reset_applied(&self, lease: &Lease, owner: &str, request: &str) -> Result<(), LeaseError> {
        let mut inner = self.write()?;
        let held = inner
            .leases
            .get(&lease.id)
            .is_some_and(|l| l.owner.as_deref() == Some(owner) && l.counter == lease.counter);
        match inner.resets.get_mut(&lease.id) {
            Some(((requested, _), applied)) if held && requested == request => {
                *applied = Some(request.to_owned());
                Ok(())
            }
            _ => Err(LeaseError::Lost { what: lease.id.to_string() }),
        }
    }

    async fn grants(&self, mapping: &str) -> Result<Grants, LeaseError> {
        Ok(self.begin()?.grants.get(mapping).cloned().unwrap_or_default())
    }

    async fn write_grants(&self, mapping: &str, grants: &Grants) -> Result<u64, LeaseError> {
        let mut inner = self.write()?;
        let stored = inner.grants.get(mapping).map_or(0, |g| g.counter);
        if stored != grants.counter {
            return Err(LeaseError::Lost { what: format!("grants of {mapping}") });
        }
        let counter = stored + 1;
        inner.grants.insert(mapping.to_owned(), Grants { counter, ..grants.clone() });
        Ok(counter)
    }
}
