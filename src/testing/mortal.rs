//! One poller's view of the shared stores, which dies with it: once `dead` fires every call
//! hangs forever, as if the process had been killed (its heartbeat stops, its writes never land,
//! nothing answers). Lets in-process tests kill a poller mid-flight.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::coordination::leases::{Heartbeat, Lease, LeaseError, LeaseId, LeaseStore, PollerInfo, Snapshot};
use crate::model::mapping::EventSourceMapping;
use crate::model::store::{Loaded, MappingStore, Status, StoreError};

/// `inner` as seen by a poller that may die.
#[derive(Debug, Clone)]
pub struct Mortal<S> {
    pub inner: S,
    pub dead: CancellationToken,
}

impl<S> Mortal<S> {
    pub const fn new(inner: S, dead: CancellationToken) -> Self {
        Self { inner, dead }
    }

    async fn call<T>(&self, f: impl Future<Output = T>) -> T {
        if self.dead.is_cancelled() {
            return std::future::pending().await;
        }
        let out = f.await;
        if self.dead.is_cancelled() {
            return std::future::pending().await;
        }
        out
    }
}

impl<S: LeaseStore> LeaseStore for Mortal<S> {
    async fn ensure(&self, id: &LeaseId, from_earliest: bool) -> Result<(), LeaseError> {
        self.call(self.inner.ensure(id, from_earliest)).await
    }

    async fn acquire(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        self.call(self.inner.acquire(lease, owner)).await
    }

    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        self.call(self.inner.release(lease, owner)).await
    }

    async fn release_fenced(&self, lease: &Lease, owner: &str, fence: std::time::Duration) -> Result<(), LeaseError> {
        self.call(self.inner.release_fenced(lease, owner, fence)).await
    }

    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        self.call(self.inner.delete_mapping(mapping)).await
    }

    async fn delete_malformed(&self, key: &str) -> Result<(), LeaseError> {
        self.call(self.inner.delete_malformed(key)).await
    }

    async fn register(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        self.call(self.inner.register(poller, beat)).await
    }

    async fn heartbeat(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        self.call(self.inner.heartbeat(poller, beat)).await
    }

    async fn remove_poller(&self, poller: &str) -> Result<(), LeaseError> {
        self.call(self.inner.remove_poller(poller)).await
    }

    async fn remove_dead_poller(&self, poller: &PollerInfo) -> Result<(), LeaseError> {
        self.call(self.inner.remove_dead_poller(poller)).await
    }

    async fn snapshot(&self) -> Result<Snapshot, LeaseError> {
        self.call(self.inner.snapshot()).await
    }

    async fn heartbeat_with_progress(&self, poller: &str, beat: Heartbeat, progress: &str) -> Result<(), LeaseError> {
        self.call(self.inner.heartbeat_with_progress(poller, beat, progress)).await
    }

    async fn request_reset(&self, id: &LeaseId, request: &str, offset: i64) -> Result<(), LeaseError> {
        self.call(self.inner.request_reset(id, request, offset)).await
    }

    async fn reset_applied(&self, lease: &Lease, owner: &str, request: &str) -> Result<(), LeaseError> {
        self.call(self.inner.reset_applied(lease, owner, request)).await
    }

    async fn grants(&self, mapping: &str) -> Result<crate::coordination::leases::Grants, LeaseError> {
        self.call(self.inner.grants(mapping)).await
    }

    async fn write_grants(
        &self,
        mapping: &str,
        grants: &crate::coordination::leases::Grants,
    ) -> Result<u64, LeaseError> {
        self.call(self.inner.write_grants(mapping, grants)).await
    }
}

impl<S: MappingStore> MappingStore for Mortal<S> {
    async fn list(&self) -> Result<Vec<Loaded>, StoreError> {
        self.call(self.inner.list()).await
    }

    async fn get(&self, uuid: &str) -> Result<Option<Loaded>, StoreError> {
        self.call(self.inner.get(uuid)).await
    }

    async fn create(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        self.call(self.inner.create(mapping)).await
    }

    async fn replace(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        self.call(self.inner.replace(mapping)).await
    }

    async fn delete(&self, uuid: &str, version: u64) -> Result<(), StoreError> {
        self.call(self.inner.delete(uuid, version)).await
    }

    async fn set_status(&self, uuid: &str, expected_version: Option<u64>, status: &Status) -> Result<(), StoreError> {
        self.call(self.inner.set_status(uuid, expected_version, status)).await
    }

    async fn set_processing_result(&self, uuid: &str, result: &str) -> Result<(), StoreError> {
        self.call(self.inner.set_processing_result(uuid, result)).await
    }
}
