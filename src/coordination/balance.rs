//! Fair share: which leases one poller keeps, takes, hands over and repairs after a lease scan —
//! a pure function of what the scan read, what this poller holds and what it is handing over.
//! The supervisor carries the plan out.
//!
//! Rules:
//! - Every partition of every wanted mapping has a lease item; partitions that appear after a
//!   mapping already has leases get theirs marked "from earliest" (see
//!   [`super::leases::Lease::from_earliest`]).
//! - A poller holds at most ⌈partitions ÷ active pollers⌉ of the mappings any poller may consume,
//!   and never more than the per-poller cap. Over it, it hands the surplus over (highest lease
//!   ids first, so pollers agree); under it, it takes free leases in random order (racing pollers
//!   rarely collide; the conditional write decides).
//! - A mapping limited to fewer pollers (`MaximumPollers`) than are active is split among at most
//!   that many, outside the shared count. Pollers racing for its free leases can overshoot for
//!   one scan; all but the lowest ids among its holders then hand theirs back.
//! - A lease this poller holds that the table gives to someone else was lost: it stops at once.
//!   A lease the table gives to this poller that it does not run (an acquire whose answer was
//!   lost, a failed release) is released.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::leases::{Lease, LeaseId, fair_share};

/// One wanted mapping as the scan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingView {
    pub uuid: Arc<str>,
    pub topic: Arc<str>,
    /// `ProvisionedPollerConfig.MaximumPollers` (unlimited: `usize::MAX`).
    pub maximum_pollers: usize,
    /// Its readable lease items for `topic`, by partition.
    pub leases: Vec<Lease>,
    /// The topic's partitions, once this poller's consumer of the mapping has found them.
    pub discovered: Option<Vec<i32>>,
}

/// What one scan read and what this poller has.
#[derive(Debug, Clone)]
pub struct BalanceInput<'a> {
    pub me: &'a str,
    /// Live pollers by id (this one included).
    pub live: &'a BTreeSet<String>,
    /// Live pollers that are not stopping, and their held counts (this one included).
    pub active: &'a BTreeMap<String, u32>,
    /// Some other poller is stopping: its partitions are about to be free.
    pub others_stopping: bool,
    pub mappings: &'a [MappingView],
    /// Leases this poller runs, with the counter it holds them at.
    pub held: &'a BTreeMap<LeaseId, u64>,
    /// Leases this poller is handing over (not yet released).
    pub busy: &'a BTreeSet<LeaseId>,
    /// `ESM_MAX_PARTITIONS_PER_POLLER`.
    pub max_partitions: usize,
    /// Shuffles the free leases (seeded in tests).
    pub seed: u64,
}

/// What to do after a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Lease items to create: (partition, from earliest).
    pub ensure: Vec<(LeaseId, bool)>,
    /// Held here, but the table gives them to someone else: stop at once, release nothing.
    pub lost: Vec<LeaseId>,
    /// The table says this poller holds them, but it does not run them: release.
    pub orphaned: Vec<Lease>,
    /// Over the share (or no longer wanted): hand over.
    pub hand_over: Vec<LeaseId>,
    /// Free leases to take, within the share.
    pub take: Vec<Lease>,
    /// Scan again soon: partitions are about to move.
    pub fast_scan: bool,
}

/// The plan for one scan.
pub fn plan(input: &BalanceInput<'_>) -> Plan {
    let me = input.me;
    let is_live = |id: &str| input.live.contains(id);
    let active = input.active.len().max(1);
    let mut plan = Plan::default();

    let mut discovering = false;
    for m in input.mappings {
        if let Some(partitions) = &m.discovered {
            let from_earliest = !m.leases.is_empty();
            for &p in partitions {
                if !m.leases.iter().any(|l| l.id.partition == p) {
                    plan.ensure.push((
                        LeaseId { mapping: m.uuid.clone(), topic: m.topic.clone(), partition: p },
                        from_earliest,
                    ));
                }
            }
        } else if m.leases.is_empty() {
            discovering = true;
        }
    }

    // Held leases: lost to someone else, no longer wanted, or kept.
    let by_id: BTreeMap<&LeaseId, &Lease> =
        input.mappings.iter().flat_map(|m| m.leases.iter().map(|l| (&l.id, l))).collect();
    let mut kept: BTreeSet<&LeaseId> = BTreeSet::new();
    for (id, &counter) in input.held {
        match by_id.get(id) {
            Some(stored) if stored.owner.as_deref() != Some(me) || stored.counter != counter => {
                plan.lost.push(id.clone())
            }
            Some(_) => {
                kept.insert(id);
            }
            // The mapping is no longer wanted, or its item vanished or became unreadable.
            None => plan.hand_over.push(id.clone()),
        }
    }
    for lease in by_id.values() {
        if lease.owner.as_deref() == Some(me) && !input.held.contains_key(&lease.id) && !input.busy.contains(&lease.id)
        {
            plan.orphaned.push((*lease).clone());
        }
    }

    // Fair share over the mappings any poller may consume; limited mappings on top.
    let limited = |m: &MappingView| m.maximum_pollers < active;
    let total: usize = input.mappings.iter().filter(|m| !limited(m)).map(|m| m.leases.len()).sum();
    let share = fair_share(total, active).min(input.max_partitions);
    let limited_share = |m: &MappingView| fair_share(m.leases.len(), m.maximum_pollers.min(active));
    let permitted = |m: &MappingView| permitted(&m.leases, &is_live, me, m.maximum_pollers);

    let mut shared_held: Vec<&LeaseId> = Vec::new();
    let mut room_limited: Vec<usize> = vec![0; input.mappings.len()];
    let mut surplus: Vec<LeaseId> = Vec::new();
    for (i, m) in input.mappings.iter().enumerate() {
        let mine: Vec<&LeaseId> = kept.iter().copied().filter(|id| id.mapping == m.uuid).collect();
        if !limited(m) {
            shared_held.extend(mine);
        } else if permitted(m) {
            let keep = limited_share(m);
            surplus.extend(mine.iter().rev().take(mine.len().saturating_sub(keep)).map(|id| (*id).clone()));
            room_limited[i] = keep.saturating_sub(mine.len());
        } else {
            surplus.extend(mine.iter().map(|id| (*id).clone()));
        }
    }
    shared_held.sort();
    surplus.extend(shared_held.iter().rev().take(shared_held.len().saturating_sub(share)).map(|id| (*id).clone()));
    let mut room_shared = share.saturating_sub(shared_held.len());
    plan.hand_over.extend(surplus);

    // Under the share: take free leases, in random order.
    let mut candidates: Vec<(usize, &Lease)> = Vec::new();
    let mut free = 0;
    for (i, m) in input.mappings.iter().enumerate() {
        let allowed = permitted(m);
        for lease in m
            .leases
            .iter()
            .filter(|l| l.is_free(&is_live) && !input.busy.contains(&l.id) && !input.held.contains_key(&l.id))
        {
            free += 1;
            if allowed {
                candidates.push((i, lease));
            }
        }
    }
    let mut rng = fastrand::Rng::with_seed(input.seed);
    rng.shuffle(&mut candidates);
    for (i, lease) in candidates {
        let room = if limited(&input.mappings[i]) { &mut room_limited[i] } else { &mut room_shared };
        if *room > 0 {
            *room -= 1;
            plan.take.push(lease.clone());
        }
    }

    let held_after = input.held.len().saturating_sub(plan.lost.len() + plan.hand_over.len()) + plan.take.len();
    let someone_over = input.active.iter().any(|(id, held)| id != me && *held as usize > share);
    plan.fast_scan = free > plan.take.len()
        || discovering
        || !plan.ensure.is_empty()
        || input.others_stopping
        || (held_after < share && someone_over);
    plan
}

/// Whether `me` may hold leases of a mapping shared by at most `maximum` pollers: while fewer
/// hold it, anyone; otherwise only the `maximum` lowest ids among its live holders.
fn permitted(leases: &[Lease], is_live: &impl Fn(&str) -> bool, me: &str, maximum: usize) -> bool {
    let mut owners: Vec<&str> =
        leases.iter().filter(|l| !l.is_free(is_live)).filter_map(|l| l.owner.as_deref()).collect();
    owners.sort_unstable();
    owners.dedup();
    owners.len() < maximum || owners.iter().take(maximum).any(|o| *o == me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: i32) -> LeaseId {
        LeaseId::new("m", "t", p)
    }

    fn lease(p: i32, owner: Option<&str>, counter: u64) -> Lease {
        Lease { id: id(p), owner: owner.map(str::to_owned), counter, from_earliest: false, fence_ms: None }
    }

    fn view(leases: Vec<Lease>, maximum_pollers: usize) -> MappingView {
        MappingView { uuid: Arc::from("m"), topic: Arc::from("t"), maximum_pollers, leases, discovered: None }
    }

    struct World {
        live: BTreeSet<String>,
        active: BTreeMap<String, u32>,
        mappings: Vec<MappingView>,
        held: BTreeMap<LeaseId, u64>,
        busy: BTreeSet<LeaseId>,
    }

    impl World {
        fn new(pollers: &[&str], mappings: Vec<MappingView>) -> Self {
            let mut w = Self {
                live: pollers.iter().map(|p| (*p).to_owned()).collect(),
                active: BTreeMap::new(),
                mappings,
                held: BTreeMap::new(),
                busy: BTreeSet::new(),
            };
            for p in pollers {
                let held = w.mappings.iter().flat_map(|m| &m.leases).filter(|l| l.owner.as_deref() == Some(*p)).count();
                w.active.insert((*p).to_owned(), u32::try_from(held).unwrap());
            }
            w
        }

        fn holding(mut self, me: &str) -> Self {
            for l in self.mappings.iter().flat_map(|m| &m.leases) {
                if l.owner.as_deref() == Some(me) {
                    self.held.insert(l.id.clone(), l.counter);
                }
            }
            self
        }

        fn plan(&self, me: &str) -> Plan {
            plan(&BalanceInput {
                me,
                live: &self.live,
                active: &self.active,
                others_stopping: false,
                mappings: &self.mappings,
                held: &self.held,
                busy: &self.busy,
                max_partitions: usize::MAX,
                seed: 7,
            })
        }
    }

    #[test]
    fn a_newcomer_takes_its_share_and_the_holder_hands_the_surplus_over() {
        let leases = (0..12).map(|p| lease(p, Some("a"), 1)).collect();
        let w = World::new(&["a", "b", "c"], vec![view(leases, usize::MAX)]).holding("a");
        let a = w.plan("a");
        assert_eq!(a.hand_over, (4..12).rev().map(id).collect::<Vec<_>>(), "highest ids first");
        assert!(a.take.is_empty() && a.lost.is_empty());
        // Once they are free, b takes 4.
        let leases = (0..12).map(|p| lease(p, (p < 4).then_some("a"), 2)).collect();
        let w = World::new(&["a", "b", "c"], vec![view(leases, usize::MAX)]);
        let b = w.plan("b");
        assert_eq!(b.take.len(), 4);
        assert!(b.take.iter().all(|l| l.id.partition >= 4));
        assert!(b.fast_scan, "free leases remain for c");
    }

    #[test]
    fn leases_of_dead_owners_are_free_and_a_lost_lease_stops_at_once() {
        let leases = vec![lease(0, Some("dead"), 5), lease(1, Some("b"), 3)];
        let mut w = World::new(&["a", "b"], vec![view(leases, usize::MAX)]);
        // a thinks it holds partition 1 at counter 2: b took it since.
        w.held.insert(id(1), 2);
        let a = w.plan("a");
        assert_eq!(a.lost, [id(1)]);
        assert_eq!(a.take.iter().map(|l| l.id.partition).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn an_orphaned_lease_is_released_but_not_one_being_handed_over() {
        let leases = vec![lease(0, Some("a"), 5), lease(1, Some("a"), 3)];
        let mut w = World::new(&["a"], vec![view(leases, usize::MAX)]);
        w.busy.insert(id(1));
        let a = w.plan("a");
        assert_eq!(a.orphaned.iter().map(|l| l.id.partition).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn maximum_pollers_overshoot_resolves_to_the_lowest_ids() {
        // Three pollers raced for a MaximumPollers=2 mapping and all got some.
        let leases = vec![lease(0, Some("a"), 1), lease(1, Some("b"), 1), lease(2, Some("c"), 1), lease(3, None, 0)];
        let w = World::new(&["a", "b", "c"], vec![view(leases, 2)]);
        let c = w.clone_holding("c").plan("c");
        assert_eq!(c.hand_over, [id(2)], "c is not among the two lowest holders");
        assert!(c.take.is_empty());
        let a = w.clone_holding("a").plan("a");
        assert!(a.hand_over.is_empty());
        assert_eq!(
            a.take.iter().map(|l| l.id.partition).collect::<Vec<_>>(),
            [3],
            "a's share of 4 over 2 pollers is 2"
        );
    }

    #[test]
    fn new_partitions_of_a_mapping_with_leases_start_from_earliest() {
        let mut m = view(vec![lease(0, None, 0)], usize::MAX);
        m.discovered = Some(vec![0, 1, 2]);
        let w = World::new(&["a"], vec![m]);
        assert_eq!(w.plan("a").ensure, [(id(1), true), (id(2), true)]);
        let mut fresh = view(vec![], usize::MAX);
        fresh.discovered = Some(vec![0, 1]);
        let w = World::new(&["a"], vec![fresh]);
        let p = w.plan("a");
        assert_eq!(
            p.ensure,
            [(id(0), false), (id(1), false)],
            "the mapping's first partitions use its StartingPosition"
        );
        assert!(p.fast_scan);
    }

    #[test]
    fn the_per_poller_cap_limits_the_share() {
        let leases = (0..10).map(|p| lease(p, None, 0)).collect();
        let w = World::new(&["a"], vec![view(leases, usize::MAX)]);
        let p = plan(&BalanceInput { max_partitions: 3, ..w.input("a") });
        assert_eq!(p.take.len(), 3);
    }

    #[test]
    fn unwanted_mappings_are_handed_over() {
        let mut w = World::new(&["a"], vec![]);
        w.held.insert(LeaseId::new("gone", "t", 0), 1);
        assert_eq!(w.plan("a").hand_over, [LeaseId::new("gone", "t", 0)]);
    }

    impl World {
        fn clone_holding(&self, me: &str) -> Self {
            Self {
                live: self.live.clone(),
                active: self.active.clone(),
                mappings: self.mappings.clone(),
                held: BTreeMap::new(),
                busy: self.busy.clone(),
            }
            .holding(me)
        }

        fn input<'a>(&'a self, me: &'a str) -> BalanceInput<'a> {
            BalanceInput {
                me,
                live: &self.live,
                active: &self.active,
                others_stopping: false,
                mappings: &self.mappings,
                held: &self.held,
                busy: &self.busy,
                max_partitions: usize::MAX,
                seed: 7,
            }
        }
    }
}
