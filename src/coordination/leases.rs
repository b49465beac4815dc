//! Partition leases: which poller consumes which partition of a mapping, after the Kinesis Client
//! Library's lease table. This module holds the protocol's types and the store seam; the
//! DynamoDB table is [`crate::aws::leases`], the in-memory one is in the test kit.
//!
//! Each (mapping, topic, partition) has one lease naming its owner. Every write bumps the lease's
//! counter and is conditional on the counter the writer last saw, so of two pollers racing for a
//! lease exactly one wins. There are no transactions and no TTL: conditional writes are the whole
//! protocol.
//!
//! A lease carries no expiry of its own: it lives as long as its owner's heartbeat. One heartbeat
//! write every [`crate::config::LeaseSettings::renew_every`] renews every lease the poller holds
//! (KCL renews lease by lease). Whether another poller is still alive is decided by the observer
//! alone, on its own monotonic clock, as KCL does: a heartbeat whose counter has not moved for a
//! whole lease duration since this poller first saw that value is dead (see
//! [`super::liveness`]). No two machines' wall clocks are ever compared for safety.
//!
//! The owner checks a guard before every invoke and every commit ([`crate::delivery::guard`]); it
//! lapses a safety margin before the owner's heartbeat could be declared dead by anyone, and a
//! heartbeat confirmed too late never revives it: the poller gives up all its leases and starts
//! over under a new identity. A poller therefore never invokes or commits for a partition another
//! poller has taken. An invoke already in flight when the lease moves may still finish, so
//! delivery stays at least once: the new holder resumes from the last commit.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use super::concurrency::Grants;

/// Which partition a lease is for. Ordered by mapping, topic, partition, so every poller lists
/// leases in the same order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId {
    /// The mapping's UUID.
    pub mapping: Arc<str>,
    pub topic: Arc<str>,
    pub partition: i32,
}

impl LeaseId {
    pub fn new(mapping: &str, topic: &str, partition: i32) -> Self {
        Self { mapping: Arc::from(mapping), topic: Arc::from(topic), partition }
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}-{}", self.mapping, self.topic, self.partition)
    }
}

/// One partition's lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// The poller holding it; `None` when free (released, or never taken). The lease is also free
    /// once this poller's heartbeat is dead.
    pub owner: Option<String>,
    /// Bumped by every write; every write is conditional on it.
    pub counter: u64,
    /// The partition appeared after the mapping's starting position was applied to its first
    /// partitions: without a committed offset it starts at its earliest record, whatever the
    /// `StartingPosition` (a `LATEST` mapping must not skip what was written before the partition
    /// was noticed).
    pub from_earliest: bool,
    /// Set by a holder that released the lease while an invoke it abandoned could still be
    /// running (a stopping poller whose function outlived the drain timeout): how much longer, in
    /// milliseconds from the release. Whoever takes the lease waits that long, on its own clock,
    /// before it invokes anything of the partition; taking the lease clears it.
    pub fence_ms: Option<u64>,
}

impl Lease {
    /// Whether a poller may take it: nobody owns it, or its owner is not live.
    pub fn is_free(&self, live: &impl Fn(&str) -> bool) -> bool {
        self.owner.as_deref().is_none_or(|owner| !live(owner))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// A conditional write lost: someone else holds the lease, or it changed (or vanished) since
    /// it was read. The caller must stop using the partition and read the leases again.
    #[error("lease {what} is held by someone else or changed since it was read")]
    Lost { what: String },
    #[error("DynamoDB error on table {table}: {message}")]
    Dynamo { table: String, message: String },
}

/// What a poller reports about itself with each heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Leases it holds.
    pub held: u32,
    /// Records waiting in its partitions (high watermark minus position), summed.
    pub lag: u64,
    /// It is handing its partitions over and about to stop.
    pub stopping: bool,
}

/// One heartbeat write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Wall-clock expiry on the writer's clock, for people reading the table and for removing
    /// items of pollers long gone; never used to decide liveness.
    pub expires_at_ms: i64,
    pub load: Load,
}

/// A poller's heartbeat item, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerInfo {
    pub id: String,
    /// Moves with every heartbeat: what observers watch.
    pub counter: u64,
    pub expires_at_ms: i64,
    pub load: Load,
}

/// A lease item that cannot be parsed (written by hand, or by another version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLease {
    /// The item's key, as stored.
    pub key: String,
    /// The partition, when the key still says which.
    pub partition: Option<i32>,
    pub problem: String,
}

/// A request, written on a lease item by `esm reset-offsets`, to move the partition's committed
/// offset. Whoever runs the partition applies it between batches (or before its first one),
/// commits `offset` and marks the request applied; see [`crate::ops::reset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub id: LeaseId,
    /// Tells requests apart; the lease item keeps the last one applied.
    pub request: String,
    pub offset: i64,
}

/// One mapping's lease items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingLeases {
    /// Ordered by topic and partition.
    pub leases: Vec<Lease>,
    /// Offset resets requested and not yet applied, by topic and partition.
    pub resets: Vec<OffsetReset>,
    /// Items that cannot be read: their partitions are not consumed until repaired.
    pub malformed: Vec<MalformedLease>,
}

/// The whole leases table at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every heartbeat item, live or not, by id.
    pub pollers: Vec<PollerInfo>,
    /// By mapping UUID.
    pub mappings: BTreeMap<String, MappingLeases>,
}

impl Snapshot {
    /// Pollers by id, each mapping's leases by topic and partition.
    pub fn sorted(mut self) -> Self {
        self.pollers.sort_by(|a, b| a.id.cmp(&b.id));
        for m in self.mappings.values_mut() {
            m.leases.sort_by(|a, b| a.id.cmp(&b.id));
            m.malformed.sort_by(|a, b| a.key.cmp(&b.key));
            m.resets.sort_by(|a, b| a.id.cmp(&b.id));
        }
        self
    }

    /// One mapping's leases (none if it has no items yet).
    pub fn of(&self, mapping: &str) -> MappingLeases {
        self.mappings.get(mapping).cloned().unwrap_or_default()
    }
}

/// How many partitions one poller may hold: `ceil(total / pollers)`, counting at least one
/// poller (the caller itself, before its first heartbeat is visible).
pub fn fair_share(total_partitions: usize, live_pollers: usize) -> usize {
    total_partitions.div_ceil(live_pollers.max(1))
}

/// Where leases and poller heartbeats live.
///
/// Writes take the [`Lease`] the caller last read or got back from a write, and are conditional
/// on its `counter`: nothing here reads before it writes.
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates the lease item for a partition, free with counter 0, unless it exists.
    fn ensure(&self, id: &LeaseId, from_earliest: bool) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Takes `lease` for `owner` if its counter is still `lease.counter`. The caller has checked
    /// [`Lease::is_free`] on what it read; the counter proves nothing changed since. Returns the
    /// lease as now stored.
    ///
    /// # Errors
    /// `Lost` if it changed since read, or does not exist.
    fn acquire(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Gives a held lease up (no owner) so another poller can take it at once.
    ///
    /// # Errors
    /// `Lost` if `owner` no longer holds it or its counter moved.
    fn release(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// [`LeaseStore::release`], leaving `fence` on the item ([`Lease::fence_ms`]): an invoke this
    /// holder abandoned may run that much longer. A store without fences refuses.
    ///
    /// # Errors
    /// As [`LeaseStore::release`].
    fn release_fenced(
        &self,
        lease: &Lease,
        _owner: &str,
        _fence: std::time::Duration,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        let what = lease.id.to_string();
        async move { Err(LeaseError::Dynamo { table: what, message: "this lease store keeps no fences".into() }) }
    }

    /// Deletes every lease item of a mapping, malformed ones included. Call it once no poller
    /// runs the mapping any more: a poller still running it would recreate its leases.
    fn delete_mapping(&self, mapping: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Deletes one lease item that cannot be parsed, so it can be recreated free.
    fn delete_malformed(&self, key: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Creates `poller`'s heartbeat item.
    ///
    /// # Errors
    /// `Lost` if an item with that id exists (ids are random: never reuse one).
    fn register(&self, poller: &str, beat: Heartbeat) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Renews `poller`'s heartbeat (and so every lease it holds).
    ///
    /// # Errors
    /// `Lost` if the item is gone: the poller was removed (by itself while stopping, or by others
    /// after it was dead) and must not come back under this id.
    fn heartbeat(&self, poller: &str, beat: Heartbeat) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Removes `poller`'s heartbeat (a stopping poller, after releasing its leases): whatever it
    /// still holds becomes free at once. No error if there is none.
    fn remove_poller(&self, poller: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Removes the heartbeat item of a poller that is dead, if it has not moved since it was
    /// read (`counter`), so dead pollers do not pile up in the table.
    fn remove_dead_poller(&self, poller: &PollerInfo) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Every heartbeat and every mapping's leases, in one consistent read of the table.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, LeaseError>> + Send;

    /// [`LeaseStore::heartbeat`] carrying the poller's per-partition progress (JSON, for
    /// `esm status`) in the same write. A store that keeps no progress writes the heartbeat alone.
    fn heartbeat_with_progress(
        &self,
        poller: &str,
        beat: Heartbeat,
        _progress: &str,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        self.heartbeat(poller, beat)
    }

    /// Asks whoever runs the partition to commit `offset` (no counter bump: the owner keeps its
    /// lease). `Lost` when the lease item does not exist. A store without resets refuses.
    fn request_reset(
        &self,
        id: &LeaseId,
        _request: &str,
        _offset: i64,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        let what = id.to_string();
        async move { Err(LeaseError::Dynamo { table: what, message: "this lease store keeps no offset resets".into() }) }
    }

    /// Marks `request` applied by `owner`, who holds `lease` unchanged.
    fn reset_applied(
        &self,
        lease: &Lease,
        _owner: &str,
        _request: &str,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        let what = lease.id.to_string();
        async move { Err(LeaseError::Dynamo { table: what, message: "this lease store keeps no offset resets".into() }) }
    }

    /// A mapping's concurrency grants ([`super::concurrency`]); counter 0 when it has none. A
    /// store without grants refuses (a capped mapping then invokes nothing, visibly).
    fn grants(&self, mapping: &str) -> impl Future<Output = Result<Grants, LeaseError>> + Send {
        let what = format!("grants of {mapping}");
        async move {
            Err(LeaseError::Dynamo { table: what, message: "this lease store keeps no concurrency grants".into() })
        }
    }

    /// Stores `grants` with its counter bumped if the stored counter is still `grants.counter`
    /// (0: no item yet). Returns the new counter.
    ///
    /// # Errors
    /// `Lost` if the item changed since it was read.
    fn write_grants(&self, mapping: &str, _grants: &Grants) -> impl Future<Output = Result<u64, LeaseError>> + Send {
        let what = format!("grants of {mapping}");
        async move {
            Err(LeaseError::Dynamo { table: what, message: "this lease store keeps no concurrency grants".into() })
        }
    }
}

impl<S: LeaseStore> LeaseStore for Arc<S> {
    fn ensure(&self, id: &LeaseId, from_earliest: bool) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).ensure(id, from_earliest)
    }

    fn acquire(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
        (**self).acquire(lease, owner)
    }

    fn release(&self, lease: &Lease, owner: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).release(lease, owner)
    }

    fn release_fenced(
        &self,
        lease: &Lease,
        owner: &str,
        fence: std::time::Duration,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).release_fenced(lease, owner, fence)
    }

    fn delete_mapping(&self, mapping: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).delete_mapping(mapping)
    }

    fn delete_malformed(&self, key: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).delete_malformed(key)
    }

    fn register(&self, poller: &str, beat: Heartbeat) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).register(poller, beat)
    }

    fn heartbeat(&self, poller: &str, beat: Heartbeat) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).heartbeat(poller, beat)
    }

    fn remove_poller(&self, poller: &str) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).remove_poller(poller)
    }

    fn grants(&self, mapping: &str) -> impl Future<Output = Result<Grants, LeaseError>> + Send {
        (**self).grants(mapping)
    }

    fn write_grants(&self, mapping: &str, grants: &Grants) -> impl Future<Output = Result<u64, LeaseError>> + Send {
        (**self).write_grants(mapping, grants)
    }

    fn remove_dead_poller(&self, poller: &PollerInfo) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).remove_dead_poller(poller)
    }

    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, LeaseError>> + Send {
        (**self).snapshot()
    }

    fn heartbeat_with_progress(
        &self,
        poller: &str,
        beat: Heartbeat,
        progress: &str,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).heartbeat_with_progress(poller, beat, progress)
    }

    fn request_reset(
        &self,
        id: &LeaseId,
        request: &str,
        offset: i64,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).request_reset(id, request, offset)
    }

    fn reset_applied(
        &self,
        lease: &Lease,
        owner: &str,
        request: &str,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send {
        (**self).reset_applied(lease, owner, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_is_the_ceiling_over_at_least_one_poller() {
        assert_eq!(fair_share(0, 3), 0);
        assert_eq!(fair_share(10, 0), 10);
        assert_eq!(fair_share(10, 1), 10);
        assert_eq!(fair_share(9, 3), 3);
        assert_eq!(fair_share(10, 3), 4);
        assert_eq!(fair_share(1, 5), 1);
        assert_eq!(fair_share(7, 7), 1);
    }

    #[test]
    fn a_lease_is_free_without_an_owner_or_when_its_owner_is_not_live() {
        let lease = |owner: Option<&str>| Lease {
            id: LeaseId::new("m", "t", 0),
            owner: owner.map(str::to_owned),
            counter: 1,
            from_earliest: false,
            fence_ms: None,
        };
        let live = |ids: &'static [&'static str]| move |id: &str| ids.contains(&id);
        assert!(lease(None).is_free(&live(&["a"])));
        assert!(!lease(Some("a")).is_free(&live(&["a", "b"])));
        assert!(lease(Some("a")).is_free(&live(&["b"])), "owner's heartbeat dead or removed");
        assert!(lease(Some("a")).is_free(&live(&[])));
    }

    #[test]
    fn lease_ids_order_by_mapping_topic_partition() {
        let mut ids = [LeaseId::new("b", "t", 0), LeaseId::new("a", "t", 10), LeaseId::new("a", "t", 2)];
        ids.sort();
        assert_eq!(ids.iter().map(ToString::to_string).collect::<Vec<_>>(), ["a/t-2", "a/t-10", "b/t-0"]);
    }
}
