//! One poller's tenure of one partition: from taking its lease to releasing it.
//!
//! A tenure is created by the supervisor when it takes a lease and handed to the mapping's
//! consumer, which runs the partition under it. Ending it is one sequence, owned by
//! [`Tenure::hand_over`]: stop intake (no new batch) → let the in-flight invoke finish within the
//! drain timeout → if it does not, abandon it (its batch is redelivered by the next holder) →
//! the consumer commits what succeeded and reports done → the guard is revoked → the lease is
//! released. Only then may another poller take the partition at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::leases::{Lease, LeaseId};
use crate::delivery::guard::LeaseGuard;
use crate::delivery::worker::Progress;
use crate::ops::reset::ResetSlot;

/// How long an abandoned partition may take to notice and report done.
const ABANDON_GRACE: Duration = Duration::from_secs(5);

/// How a hand-over ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The in-flight batch finished (or there was none) and what succeeded was committed.
    Drained,
    /// The in-flight invoke outlived the drain timeout and was abandoned: its batch will be
    /// delivered again by the next holder.
    Abandoned,
}

/// A partition this poller holds, and the signals that end its run.
#[derive(Debug, Clone)]
pub struct Tenure {
    /// The lease as acquired (its counter tells tenures of one partition apart).
    pub lease: Lease,
    /// Checked before every invoke and every commit.
    pub guard: Arc<LeaseGuard>,
    pub progress: Arc<Progress>,
    /// An offset reset to apply between batches ([`crate::ops::reset`]).
    pub reset: Arc<ResetSlot>,
    stop: CancellationToken,
    abandon: CancellationToken,
    done: CancellationToken,
}

impl Tenure {
    pub fn new(lease: Lease, guard: Arc<LeaseGuard>) -> Self {
        Self {
            lease,
            guard,
            progress: Arc::default(),
            reset: Arc::default(),
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            done: CancellationToken::new(),
        }
    }

    pub fn id(&self) -> &LeaseId {
        &self.lease.id
    }

    pub fn partition(&self) -> i32 {
        self.lease.id.partition
    }

    /// Tells this tenure apart from earlier and later ones of the same partition.
    pub const fn counter(&self) -> u64 {
        self.lease.counter
    }

    /// Cancelled when intake must stop: no new batch.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Cancelled when the in-flight invoke must be dropped.
    pub fn abandoning(&self) -> &CancellationToken {
        &self.abandon
    }

    /// The consumer calls this once the partition has stopped and its last commit is done.
    pub fn finish(&self) {
        self.done.cancel();
    }

    pub fn is_finished(&self) -> bool {
        self.done.is_cancelled()
    }

    /// Whether the partition must not run (stopping, or the lease is gone).
    pub fn ended(&self) -> bool {
        self.stop.is_cancelled() || !self.guard.is_valid()
    }

    /// Stops the partition at once, keeping nothing: the lease was lost (another poller has it).
    pub fn drop_now(&self) {
        self.guard.revoke();
        self.stop.cancel();
        self.abandon.cancel();
    }

    /// Ends the tenure gracefully: stop intake, let the in-flight batch finish, wait for the final
    /// commit, then revoke the guard. The caller releases the lease afterwards.
    ///
    /// The in-flight invoke is waited for however long it runs until `urgent` fires (the poller
    /// is stopping: SIGTERM, the Lambda deadline); from then on it gets `drain`, and is abandoned
    /// after that. A fair-share hand-over or a changed mapping never lets the next holder invoke
    /// records whose invoke is still running; a stopping poller releases the lease with a fence
    /// ([`super::leases::Lease::fence_ms`]) the next holder waits out.
    pub async fn hand_over(&self, drain: Duration, urgent: &CancellationToken) -> Ended {
        self.stop.cancel();
        let ended = tokio::select! {
            () = self.done.cancelled() => Ended::Drained,
            () = async {
                urgent.cancelled().await;
                tokio::time::sleep(drain).await;
            } => {
                self.abandon.cancel();
                // The consumer notices at once; don't wait on a wedged one forever.
                let _ = tokio::time::timeout(ABANDON_GRACE, self.done.cancelled()).await;
                Ended::Abandoned
            }
        };
        self.guard.revoke();
        ended
    }

    /// Stops intake and waits (at most `drain`) for the partition to finish, without abandoning
    /// and without revoking: for a poller that lost its identity and must not leave an invoke
    /// running behind it.
    pub async fn wind_down(&self, drain: Duration) -> bool {
        self.stop.cancel();
        tokio::time::timeout(drain, self.done.cancelled()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenure() -> Tenure {
        let lease = Lease {
            id: LeaseId::new("m", "t", 0),
            owner: Some("p".into()),
            counter: 1,
            from_earliest: false,
            fence_ms: None,
        };
        Tenure::new(lease, Arc::new(LeaseGuard::unconditional()))
    }

    #[tokio::test(start_paused = true)]
    async fn hand_over_waits_for_the_consumer_then_revokes() {
        let t = tenure();
        let consumer = t.clone();
        tokio::spawn(async move {
            consumer.stopping().cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await; // the in-flight invoke
            consumer.finish();
        });
        let start = tokio::time::Instant::now();
        assert_eq!(t.hand_over(Duration::from_secs(30), &urgent()).await, Ended::Drained);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(!t.guard.is_valid() && !t.abandoning().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn an_invoke_outliving_the_drain_is_abandoned() {
        let t = tenure();
        let consumer = t.clone();
        tokio::spawn(async move {
            consumer.abandoning().cancelled().await;
            consumer.finish();
        });
        let start = tokio::time::Instant::now();
        assert_eq!(t.hand_over(Duration::from_secs(30), &urgent()).await, Ended::Abandoned);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert!(t.is_finished() && !t.guard.is_valid());
    }

    fn urgent() -> CancellationToken {
        let token = CancellationToken::new();
        token.cancel();
        token
    }

    /// The soak found it: a fair-share hand-over abandoned an invoke slower than the drain
    /// timeout, and the next holder invoked the same records while it still ran.
    #[tokio::test(start_paused = true)]
    async fn a_hand_over_that_is_not_urgent_waits_for_a_slow_invoke_and_never_abandons_it() {
        let t = tenure();
        let consumer = t.clone();
        tokio::spawn(async move {
            consumer.stopping().cancelled().await;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(600)) => consumer.finish(), // a 10-minute invoke
                () = consumer.abandoning().cancelled() => {}
            }
        });
        let start = tokio::time::Instant::now();
        let not_urgent = CancellationToken::new();
        assert_eq!(t.hand_over(Duration::from_secs(30), &not_urgent).await, Ended::Drained);
        assert_eq!(start.elapsed(), Duration::from_secs(600));
        assert!(!t.abandoning().is_cancelled() && !t.guard.is_valid());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_long_hand_over_gives_the_invoke_the_drain_timeout_from_then() {
        let t = tenure();
        let consumer = t.clone();
        tokio::spawn(async move {
            consumer.abandoning().cancelled().await;
            consumer.finish();
        });
        let stopping = CancellationToken::new();
        let later = stopping.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            later.cancel();
        });
        let start = tokio::time::Instant::now();
        assert_eq!(t.hand_over(Duration::from_secs(30), &stopping).await, Ended::Abandoned);
        assert_eq!(start.elapsed(), Duration::from_secs(130));
    }
}
