//! What a running consumer checks before every invoke and every commit: that this poller still
//! holds the partition's lease.
//!
//! A poller's root guard follows its confirmed heartbeats: each heartbeat confirmed in time moves
//! it to (send time + lease duration − safety margin) on this machine's monotonic clock, which is
//! before any other poller can see the heartbeat as dead (they wait a whole lease duration after
//! they saw it move, see [`crate::coordination::liveness`]). Each partition has a child guard,
//! revoked when the partition is handed over. A lapsed guard is never revived.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validity {
    Until(Instant),
    Always,
    Revoked,
}

/// Whether this poller may still act on a lease.
#[derive(Debug)]
pub struct LeaseGuard {
    validity: Mutex<Validity>,
    parent: Option<Arc<LeaseGuard>>,
}

impl LeaseGuard {
    /// Valid until `deadline` (monotonic).
    pub const fn until(deadline: Instant) -> Self {
        Self { validity: Mutex::new(Validity::Until(deadline)), parent: None }
    }

    /// Valid while `parent` is, until revoked.
    pub const fn child(parent: Arc<Self>) -> Self {
        Self { validity: Mutex::new(Validity::Always), parent: Some(parent) }
    }

    /// A guard that never expires: for a consumer that owns its partitions by construction
    /// (tests of the poll loop alone).
    pub const fn unconditional() -> Self {
        Self { validity: Mutex::new(Validity::Always), parent: None }
    }

    fn own(&self) -> Validity {
        *self.validity.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_valid(&self) -> bool {
        let own = match self.own() {
            Validity::Until(deadline) => Instant::now() < deadline,
            Validity::Always => true,
            Validity::Revoked => false,
        };
        own && self.parent.as_ref().is_none_or(|p| p.is_valid())
    }

    /// When it lapses at the latest (`None`: never, unless revoked; a revoked guard has lapsed
    /// already and reports the current instant).
    pub fn deadline(&self) -> Option<Instant> {
        let own = match self.own() {
            Validity::Until(deadline) => Some(deadline),
            Validity::Always => None,
            Validity::Revoked => Some(Instant::now()),
        };
        match (own, self.parent.as_ref().and_then(|p| p.deadline())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the deadline to `deadline` unless the guard has already lapsed: a lapsed guard stays
    /// lapsed, since someone else may have taken the leases in between. Returns whether it is
    /// still valid.
    pub fn extend_if_valid(&self, deadline: Instant) -> bool {
        let mut validity = self.validity.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *validity {
            Validity::Until(current) if Instant::now() < current => {
                *validity = Validity::Until(deadline.max(current));
                true
            }
            Validity::Always => true,
            Validity::Until(_) | Validity::Revoked => false,
        }
    }

    pub fn revoke(&self) {
        *self.validity.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Validity::Revoked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_child_guard_is_valid_only_while_its_parent_is_and_until_revoked() {
        let poller = Arc::new(LeaseGuard::until(Instant::now() + Duration::from_secs(60)));
        let partition = LeaseGuard::child(poller.clone());
        assert!(partition.is_valid());
        partition.revoke();
        assert!(!partition.is_valid());
        let other = LeaseGuard::child(poller.clone());
        assert!(other.is_valid());
        assert_eq!(other.deadline(), poller.deadline());
        poller.revoke();
        assert!(!other.is_valid(), "the poller's heartbeat lapsed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_guard_is_never_revived_and_time_ends_it() {
        let guard = LeaseGuard::until(Instant::now() + Duration::from_secs(10));
        assert!(guard.extend_if_valid(Instant::now() + Duration::from_secs(20)));
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(guard.is_valid());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!guard.is_valid());
        assert!(!guard.extend_if_valid(Instant::now() + Duration::from_secs(60)), "a lapsed guard is never revived");
        assert!(!guard.is_valid());
    }
}
