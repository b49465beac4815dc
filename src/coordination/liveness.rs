//! Which pollers are alive, decided by the observer alone on its monotonic clock — the Kinesis
//! Client Library's rule (`Lease.isExpired`): a heartbeat whose counter has not moved for a whole
//! lease duration since this poller first saw that value is dead.
//!
//! The heartbeat's wall-clock `ExpiresAtMs` is never compared with this machine's clock, so a
//! taker whose clock runs ahead cannot take a live poller's partitions. The price is that a poller
//! that has just started treats every heartbeat it has not yet watched for a lease duration as
//! live (it cannot know how long it has been silent), so its first takeover of a dead poller's
//! partitions comes at most one lease duration after it starts.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::leases::PollerInfo;

#[derive(Debug, Clone, Copy)]
struct Seen {
    counter: u64,
    /// When this poller first saw `counter`.
    since: Instant,
}

/// Observations of other pollers' heartbeats.
#[derive(Debug, Clone)]
pub struct Liveness {
    duration: Duration,
    seen: HashMap<String, Seen>,
}

impl Liveness {
    /// `duration`: how long a heartbeat may stay unchanged before its poller counts as dead.
    pub fn new(duration: Duration) -> Self {
        Self { duration, seen: HashMap::new() }
    }

    /// Records what a lease scan read at `now`; forgets pollers whose items are gone.
    pub fn observe(&mut self, pollers: &[PollerInfo], now: Instant) {
        self.seen.retain(|id, _| pollers.iter().any(|p| p.id == *id));
        for p in pollers {
            match self.seen.get_mut(&p.id) {
                Some(seen) if seen.counter == p.counter => {}
                Some(seen) => *seen = Seen { counter: p.counter, since: now },
                None => {
                    self.seen.insert(p.id.clone(), Seen { counter: p.counter, since: now });
                }
            }
        }
    }

    /// Whether `id`'s heartbeat moved within the lease duration before `now`. A poller never
    /// seen (no item) is not live.
    pub fn is_live(&self, id: &str, now: Instant) -> bool {
        self.seen.get(id).is_some_and(|seen| now.duration_since(seen.since) < self.duration)
    }

    /// Whether some live poller's heartbeat is overdue (unchanged for longer than `renew_every`
    /// and a second): it may be dead, so the observer should scan often to act the moment it
    /// can be declared so.
    pub fn any_overdue(&self, now: Instant, renew_every: Duration) -> bool {
        let late = renew_every + Duration::from_secs(1);
        self.seen.values().any(|seen| {
            let silent = now.duration_since(seen.since);
            silent > late && silent < self.duration
        })
    }

    /// The pollers seen unchanged for more than `factor` lease durations: their items can be
    /// removed from the table.
    pub fn long_dead<'a>(&self, pollers: &'a [PollerInfo], now: Instant, factor: u32) -> Vec<&'a PollerInfo> {
        pollers
            .iter()
            .filter(|p| {
                self.seen.get(&p.id).is_some_and(|seen| {
                    seen.counter == p.counter && now.duration_since(seen.since) >= self.duration * factor
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::leases::Load;

    fn poller(id: &str, counter: u64, expires_at_ms: i64) -> PollerInfo {
        PollerInfo { id: id.into(), counter, expires_at_ms, load: Load::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_is_dead_once_unchanged_for_a_lease_duration_since_first_seen() {
        let d = Duration::from_secs(10);
        let mut live = Liveness::new(d);
        let t0 = Instant::now();
        // Its wall-clock expiry is long past by any clock: irrelevant.
        live.observe(&[poller("a", 1, 0)], t0);
        assert!(live.is_live("a", t0 + Duration::from_secs(9)));
        // It moved at 9 s: live for another duration from then.
        live.observe(&[poller("a", 2, 0)], t0 + Duration::from_secs(9));
        assert!(live.is_live("a", t0 + Duration::from_secs(18)));
        assert!(!live.is_live("a", t0 + Duration::from_secs(19)));
        assert!(!live.is_live("never-seen", t0));
    }

    #[tokio::test(start_paused = true)]
    async fn skewed_wall_clocks_cannot_make_a_live_poller_look_dead() {
        let d = Duration::from_secs(10);
        let mut live = Liveness::new(d);
        let t0 = Instant::now();
        // The owner's clock is an hour behind: its ExpiresAtMs is an hour in the past by ours.
        for i in 0..10u64 {
            let at = t0 + Duration::from_secs(4 * i);
            live.observe(&[poller("slow-clock", i, -3_600_000)], at);
            assert!(live.is_live("slow-clock", at + Duration::from_secs(3)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn items_that_never_move_are_reported_for_removal_after_the_factor() {
        let mut live = Liveness::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let items = [poller("gone", 5, 0), poller("alive", 1, 0)];
        live.observe(&items, t0);
        let items = [poller("gone", 5, 0), poller("alive", 2, 0)];
        live.observe(&items, t0 + Duration::from_secs(25));
        let dead: Vec<&str> =
            live.long_dead(&items, t0 + Duration::from_secs(30), 3).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(dead, ["gone"]);
        // An item that disappeared is forgotten.
        live.observe(&items[1..], t0 + Duration::from_secs(31));
        assert!(!live.is_live("gone", t0 + Duration::from_secs(31)));
    }
}
