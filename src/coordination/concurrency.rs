//! `ScalingConfig.MaximumConcurrency` for Kafka mappings (an extension: AWS takes it for SQS
//! only): at most M invokes of a mapping in flight at once, over all its partitions and pollers.
//!
//! The M slots are shared out as grants, kept on one item per mapping in the leases table
//! ([`Grants`]). Each poller running the mapping writes there what it wants (its partitions of the
//! mapping × the mapping's `ParallelizationFactor`) and holds a grant; every write is conditional
//! on the item's counter, and no write lets the grants of the live pollers sum to more than M. A
//! poller invokes through a local [`Gate`] sized to its grant: it widens the gate only after a
//! write granting more succeeded, and writes a smaller grant only once its invokes in flight fit
//! under it (the gate narrows at once). Grants of pollers that are no longer live (the observer's
//! judgement, as for leases) are dropped by whoever writes next; a poller that stops removes its
//! own. So the bound holds whatever the pollers do, up to the invokes of a poller that lost its
//! identity with invokes in flight — the same caveat as a partition's lease.
//!
//! The fair share is water-filled over the live pollers' wants; slots that do not divide evenly go
//! first to the pollers served longest ago (the item keeps when each last got a grant). A poller
//! gives slots back only after holding its grant for
//! [`SLOT_TURN`]: with fewer slots than pollers wanting one, slots take turns of that length and
//! nobody waits for good, without slots changing hands faster than invokes can use them. A poller
//! looks at the item at every lease scan (every second while a grant is moving).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::Notify;

/// How long a poller keeps a grant before it gives slots to others that want them.
pub const SLOT_TURN: std::time::Duration = std::time::Duration::from_secs(10);

/// A mapping's grants item, as read (or written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Bumped by every write; every write is conditional on it. 0: the item does not exist.
    pub counter: u64,
    /// Slots each poller holds.
    pub granted: BTreeMap<String, u32>,
    /// Slots each poller could use.
    pub wanted: BTreeMap<String, u32>,
    /// The counter of the write that last gave each poller a grant after it held none.
    pub served: BTreeMap<String, u64>,
}

/// What one poller should do about its grant after a look at the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The item to write (conditional on the counter read), if anything changes.
    pub write: Option<Grants>,
    /// The gate's size until the write succeeds (or without one).
    pub gate_now: u32,
    /// The gate's size once the write succeeded.
    pub gate_after: u32,
}

/// The shares of `limit` slots over `wants`: each live poller gets what it wants if there is
/// enough, otherwise equal parts (water-filling); slots that do not divide go first to the pollers
/// `served` longest ago (never: first), ties in an order fixed by a hash of the id.
pub fn shares(limit: u32, wants: &BTreeMap<String, u32>, served: &BTreeMap<String, u64>) -> BTreeMap<String, u32> {
    let mut order: Vec<(&String, u32)> = wants.iter().filter(|(_, w)| **w > 0).map(|(id, w)| (id, *w)).collect();
    order.sort_by_key(|(id, _)| {
        let mut hasher = std::hash::DefaultHasher::new();
        id.hash(&mut hasher);
        (served.get(*id).copied().unwrap_or(0), hasher.finish(), (*id).clone())
    });
    let mut given: BTreeMap<String, u32> = BTreeMap::new();
    let mut left = limit;
    loop {
        let hungry: Vec<(&String, u32)> =
            order.iter().filter(|(id, want)| given.get(*id).copied().unwrap_or(0) < *want).copied().collect();
        if hungry.is_empty() || left == 0 {
            break;
        }
        let each = (left / u32::try_from(hungry.len()).unwrap_or(u32::MAX)).max(1);
        for (id, want) in hungry {
            let have = given.entry(id.clone()).or_default();
            let give = each.min(want - *have).min(left);
            *have += give;
            left -= give;
            if left == 0 {
                break;
            }
        }
    }
    given
}

/// What poller `me`, which could use `want` slots and has `in_use` invokes in flight, should do,
/// given the item as read, the live pollers and the mapping's `limit`. Unless `may_yield` (it has
/// held its grant for a [`SLOT_TURN`]), it keeps what it holds (within the limit).
#[allow(clippy::too_many_arguments)]
pub fn step(
    read: &Grants,
    me: &str,
    want: u32,
    in_use: usize,
    live: &BTreeSet<String>,
    limit: u32,
    may_yield: bool,
) -> Step {
    let is_live = |id: &String| id == me || live.contains(id);
    let mut wanted: BTreeMap<String, u32> =
        read.wanted.iter().filter(|(id, w)| is_live(id) && **w > 0).map(|(id, w)| (id.clone(), *w)).collect();
    let mut granted: BTreeMap<String, u32> =
        read.granted.iter().filter(|(id, g)| is_live(id) && **g > 0).map(|(id, g)| (id.clone(), *g)).collect();
    if want > 0 {
        wanted.insert(me.to_owned(), want);
    } else {
        wanted.remove(me);
    }
    let current = granted.get(me).copied().unwrap_or(0);
    let others: u32 = granted.iter().filter(|(id, _)| *id != me).map(|(_, g)| *g).sum();
    let mut served: BTreeMap<String, u64> =
        read.served.iter().filter(|(id, _)| is_live(id)).map(|(id, c)| (id.clone(), *c)).collect();
    let mut target = shares(limit, &wanted, &served).get(me).copied().unwrap_or(0);
    if !may_yield && want > 0 {
        target = target.max(current.min(want));
    }
    // Never more than what the others leave (they may not have given up their surplus yet).
    let desired = target.min(limit.saturating_sub(others));
    let in_use = u32::try_from(in_use).unwrap_or(u32::MAX);
    // Shrinking waits until the invokes in flight fit under the smaller grant.
    let new = if desired >= current || in_use <= desired { desired } else { current };
    if new > 0 {
        granted.insert(me.to_owned(), new);
        if current == 0 {
            served.insert(me.to_owned(), read.counter + 1);
        }
    } else {
        granted.remove(me);
    }
    let changed = granted != read.granted || wanted != read.wanted || served != read.served;
    Step {
        write: changed.then_some(Grants { counter: read.counter, granted, wanted, served }),
        gate_now: current.min(desired),
        gate_after: new.min(desired),
    }
}

/// This poller's share of a mapping's slots: invokes wait here for a free one.
#[derive(Debug, Default)]
pub struct Gate {
    state: std::sync::Mutex<GateState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct GateState {
    capacity: u32,
    in_use: u32,
}

/// A slot in use; freed when dropped.
#[derive(Debug)]
pub struct Permit(Arc<Gate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.lock().in_use -= 1;
        self.0.changed.notify_waiters();
    }
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a free slot. Cancel-safe.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.in_use < state.capacity {
                    state.in_use += 1;
                    return Permit(self.clone());
                }
            }
            notified.await;
        }
    }

    /// Resizes the gate; invokes in flight beyond a smaller size finish, no new one starts.
    pub fn set_capacity(&self, capacity: u32) {
        self.lock().capacity = capacity;
        self.changed.notify_waiters();
    }

    pub fn capacity(&self) -> u32 {
        self.lock().capacity
    }

    pub fn in_use(&self) -> usize {
        self.lock().in_use as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wants(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(id, w)| ((*id).to_owned(), *w)).collect()
    }

    #[test]
    fn shares_fill_small_wants_first_and_never_exceed_the_limit() {
        let none = BTreeMap::new();
        let s = shares(10, &wants(&[("a", 2), ("b", 20), ("c", 20)]), &none);
        assert_eq!(s, wants(&[("a", 2), ("b", 4), ("c", 4)]));
        let s = shares(10, &wants(&[("a", 1), ("b", 1)]), &none);
        assert_eq!(s, wants(&[("a", 1), ("b", 1)]));
        for limit in 0..30 {
            let s = shares(limit, &wants(&[("a", 3), ("b", 7), ("c", 1), ("d", 12)]), &none);
            assert_eq!(s.values().sum::<u32>(), limit.min(23));
        }
    }

    #[test]
    fn with_fewer_slots_than_pollers_the_slots_take_turns() {
        // Three pollers, two slots: each look, the one left out is served first.
        let live: BTreeSet<String> = ["a", "b", "c"].map(str::to_owned).into();
        let mut item = Grants::default();
        let mut served: BTreeSet<String> = BTreeSet::new();
        for round in 0..12 {
            for me in ["a", "b", "c"] {
                let s = step(&item, me, 5, 0, &live, 2, true);
                if let Some(mut write) = s.write {
                    write.counter += 1;
                    item = write;
                }
                assert!(item.granted.values().sum::<u32>() <= 2, "round {round}: {item:?}");
            }
            served.extend(item.granted.keys().cloned());
        }
        assert_eq!(served.len(), 3, "every poller held a slot at some point");
    }

    #[test]
    fn a_poller_grows_only_into_what_others_left_and_shrinks_once_its_invokes_fit() {
        let live: BTreeSet<String> = ["a", "b"].map(str::to_owned).into();
        // b holds all 4 slots; a arrives wanting 4: it gets nothing until b gives back.
        let read =
            Grants { counter: 3, granted: wants(&[("b", 4)]), wanted: wants(&[("b", 4)]), served: BTreeMap::new() };
        let s = step(&read, "a", 4, 0, &live, 4, true);
        assert_eq!((s.gate_now, s.gate_after), (0, 0));
        assert_eq!(s.write.as_ref().unwrap().wanted, wants(&[("a", 4), ("b", 4)]));
        let read = s.write.unwrap();
        // b sees the new want: its share is 2, but 3 invokes are in flight: gate 2 now, no shrink.
        let s = step(&read, "b", 4, 3, &live, 4, true);
        assert_eq!((s.gate_now, s.gate_after), (2, 2));
        assert!(s.write.is_none(), "the grant stays 4 until the invokes fit");
        // Once they fit, b writes 2; then a takes 2.
        let s = step(&read, "b", 4, 2, &live, 4, true);
        let read = s.write.unwrap();
        assert_eq!(read.granted, wants(&[("b", 2)]));
        let s = step(&read, "a", 4, 0, &live, 4, true);
        assert_eq!((s.gate_now, s.gate_after), (0, 2));
        assert_eq!(s.write.unwrap().granted, wants(&[("a", 2), ("b", 2)]));
        // A poller that is not live loses its grant to whoever writes next.
        let read = Grants {
            counter: 9,
            granted: wants(&[("dead", 4)]),
            wanted: wants(&[("dead", 4)]),
            served: [("dead".to_owned(), 1)].into(),
        };
        let s = step(&read, "a", 4, 0, &live, 4, true);
        assert_eq!(s.write.unwrap().granted, wants(&[("a", 4)]));
        // Nothing changes: nothing to write.
        let read = Grants {
            counter: 2,
            granted: wants(&[("a", 4)]),
            wanted: wants(&[("a", 4)]),
            served: [("a".to_owned(), 1)].into(),
        };
        assert_eq!(step(&read, "a", 4, 1, &live, 4, true), Step { write: None, gate_now: 4, gate_after: 4 });
    }

    #[test]
    fn a_poller_keeps_its_grant_for_a_turn() {
        let live: BTreeSet<String> = ["a", "b"].map(str::to_owned).into();
        let read = Grants {
            counter: 1,
            granted: wants(&[("a", 2)]),
            wanted: wants(&[("a", 2), ("b", 2)]),
            served: [("a".to_owned(), 1)].into(),
        };
        // b waits: a's turn is not over.
        assert_eq!(step(&read, "a", 2, 0, &live, 2, false), Step { write: None, gate_now: 2, gate_after: 2 });
        // Its turn over, a gives b its share.
        let s = step(&read, "a", 2, 0, &live, 2, true);
        assert_eq!(s.write.unwrap().granted, wants(&[("a", 1)]));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_lets_capacity_invokes_through_and_wakes_waiters() {
        let gate = Arc::new(Gate::default());
        gate.set_capacity(2);
        let a = gate.acquire().await;
        let _b = gate.acquire().await;
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert_eq!(gate.in_use(), 2);
        gate.set_capacity(0);
        let blocked = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!blocked.is_finished());
        gate.set_capacity(3);
        tokio::time::timeout(Duration::from_secs(1), blocked).await.unwrap().unwrap();
    }
}
