//! The control plane in-process: several pollers over the in-memory stores, Kafka and function,
//! with tokio's clock paused — joins, hand-overs, kills, heartbeat loss, `MaximumPollers`
//! races, scaling, new partitions and broken lease items, deterministic and in well under a
//! second each. The same rules run against real services in `processes.rs`, `pollers.rs` and
//! `scaling.rs` (the outer tier).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_esm::api::{self, ApiError, CreateRequest, FunctionResolver};
use kafka_esm::clock::SystemClock;
use kafka_esm::config::Settings;
use kafka_esm::coordination::consumer::Deps;
use kafka_esm::coordination::leases::{Heartbeat, Lease, LeaseError, LeaseId, LeaseStore, PollerInfo, Snapshot};
use kafka_esm::coordination::supervisor::{Exit, NoSpawner, Spawner, Start, run_poller};
use kafka_esm::model::mapping::{
    Endpoints, ProvisionedPollerConfig, ScalingConfig, SelfManagedEventSource, StartingPosition,
};
use kafka_esm::model::store::{Loaded, MappingStore};
use kafka_esm::testing::{MemoryInvoker, MemoryKafka, MemoryLeaseStore, MemoryMappingStore, Mortal};
use tokio::task::JoinHandle;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

struct Functions;

impl FunctionResolver for Functions {
    async fn resolve(&self, name: &str) -> Result<String, ApiError> {
        Ok(format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"))
    }
}

/// Records what pollers start.
#[derive(Debug, Default)]
struct Spawns(Mutex<Vec<&'static str>>);

impl Spawner for Spawns {
    async fn spawn(&self, reason: &'static str, _from: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(reason);
        Ok(())
    }
}

impl Spawns {
    fn reasons(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

/// A leases table whose heartbeat writes for one poller fail while `failing` is set (one
/// poller's network trouble, the others unaffected), each after hanging `hang`.
#[derive(Debug, Clone)]
struct FlakyHeartbeats {
    inner: Mortal<MemoryLeaseStore>,
    failing: Arc<AtomicBool>,
    hang: Duration,
    /// The id the poller registered under.
    registered: Arc<Mutex<Option<String>>>,
}

impl LeaseStore for FlakyHeartbeats {
    async fn ensure(&self, id: &LeaseId, from_earliest: bool) -> Result<(), LeaseError> {
        self.inner.ensure(id, from_earliest).await
    }
    async fn acquire(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        self.inner.acquire(lease, owner).await
    }
    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        self.inner.release(lease, owner).await
    }
    async fn release_fenced(&self, lease: &Lease, owner: &str, fence: Duration) -> Result<(), LeaseError> {
        self.inner.release_fenced(lease, owner, fence).await
    }
    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        self.inner.delete_mapping(mapping).await
    }
    async fn delete_malformed(&self, key: &str) -> Result<(), LeaseError> {
        self.inner.delete_malformed(key).await
    }
    async fn register(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        *self.registered.lock().unwrap() = Some(poller.to_owned());
        self.inner.register(poller, beat).await
    }
    async fn heartbeat(&self, poller: &str, beat: Heartbeat) -> Result<(), LeaseError> {
        if self.failing.load(Ordering::Relaxed) {
            sleep(self.hang).await;
            return Err(LeaseError::Dynamo { table: "leases".into(), message: "timed out (injected)".into() });
        }
        self.inner.heartbeat(poller, beat).await
    }
    async fn remove_poller(&self, poller: &str) -> Result<(), LeaseError> {
        self.inner.remove_poller(poller).await
    }
    async fn remove_dead_poller(&self, poller: &PollerInfo) -> Result<(), LeaseError> {
        self.inner.remove_dead_poller(poller).await
    }
    async fn snapshot(&self) -> Result<Snapshot, LeaseError> {
        self.inner.snapshot().await
    }
}

#[derive(Clone)]
struct World {
    kafka: MemoryKafka,
    store: MemoryMappingStore,
    leases: MemoryLeaseStore,
    function: MemoryInvoker,
    settings: Settings,
}

struct Poller {
    stop: CancellationToken,
    dead: CancellationToken,
    task: JoinHandle<Exit>,
}

impl Poller {
    /// SIGTERM: hand everything over, then exit.
    async fn stop(self) -> Exit {
        self.stop.cancel();
        self.task.await.unwrap()
    }

    /// SIGKILL: everything it does from now on goes nowhere.
    fn kill(&self) {
        self.dead.cancel();
    }
}

impl World {
    fn new() -> Self {
        Self {
            kafka: MemoryKafka::default(),
            store: MemoryMappingStore::default(),
            leases: MemoryLeaseStore::default(),
            function: MemoryInvoker::default(),
            settings: Settings { refresh_interval: Duration::from_secs(1), ..Settings::default() },
        }
    }

    fn deps(
        &self,
        dead: &CancellationToken,
    ) -> Arc<Deps<kafka_esm::testing::MemoryConnector, kafka_esm::testing::PollerInvoker>> {
        Arc::new(Deps {
            connector: self.kafka.connector(dead.clone()),
            invoker: Arc::new(self.function.for_poller(dead.clone())),
            settings: self.settings.clone(),
            metrics: Arc::default(),
        })
    }

    fn poller_with<L: LeaseStore, P: Spawner>(
        &self,
        leases: L,
        dead: CancellationToken,
        spawner: Option<Arc<P>>,
        start: Start,
    ) -> Poller {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_poller(
            Arc::new(Mortal::new(self.store.clone(), dead.clone())),
            Arc::new(leases),
            self.deps(&dead),
            Arc::new(SystemClock),
            spawner,
            start,
            stop.clone(),
        ));
        Poller { stop, dead, task }
    }

    fn poller(&self) -> Poller {
        let dead = CancellationToken::new();
        self.poller_with(Mortal::new(self.leases.clone(), dead.clone()), dead, None::<Arc<NoSpawner>>, Start::Process)
    }

    async fn mapping(&self, topic: &str, partitions: usize, tweak: impl FnOnce(&mut CreateRequest)) -> String {
        self.kafka.create_topic(topic, partitions);
        let mut request = CreateRequest {
            function_name: "f".into(),
            self_managed_event_source: Some(SelfManagedEventSource {
                endpoints: Endpoints { kafka_bootstrap_servers: vec!["memory:9092".into()] },
            }),
            topics: vec![topic.into()],
            starting_position: Some(StartingPosition::TrimHorizon),
            batch_size: Some(10),
            maximum_batching_window_in_seconds: Some(0),
            ..CreateRequest::default()
        };
        tweak(&mut request);
        api::create(&self.store, &Functions, request).await.unwrap().uuid
    }

    fn produce(&self, topic: &str, partitions: i32, per_partition: usize) {
        for p in 0..partitions {
            for i in 0..per_partition {
                self.kafka.produce(topic, p, format!("{p}-{i}").as_bytes(), 0);
            }
        }
    }

    /// Partition → owner, as the leases table says.
    async fn owners(&self, uuid: &str) -> BTreeMap<i32, Option<String>> {
        let snapshot = self.leases.snapshot().await.unwrap();
        snapshot.of(uuid).leases.into_iter().map(|l| (l.id.partition, l.owner)).collect()
    }

    /// How many partitions each live owner holds, sorted.
    async fn shares(&self, uuid: &str) -> Vec<usize> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for owner in self.owners(uuid).await.into_values().flatten() {
            *counts.entry(owner).or_default() += 1;
        }
        let mut shares: Vec<usize> = counts.into_values().collect();
        shares.sort_unstable();
        shares
    }

    /// Waits (in virtual time) until `topic` is committed to its end under `group`.
    async fn caught_up(&self, group: &str, topic: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let ends = self.kafka.end_offsets(topic);
            if self.kafka.committed(group, topic) == ends && !ends.is_empty() {
                return true;
            }
            sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Every produced offset of every partition was delivered at least once, in order within
    /// each tenure (offsets never go down except when a batch is delivered again from an
    /// earlier commit).
    fn all_delivered(&self, topic: &str) -> bool {
        let delivered = self.function.delivered();
        self.kafka.end_offsets(topic).iter().all(|(p, end)| {
            let seen = delivered.get(&format!("{topic}-{p}")).cloned().unwrap_or_default();
            (0..*end).all(|o| seen.contains(&o))
        })
    }

    fn duplicates(&self) -> usize {
        self.function
            .delivered()
            .values()
            .map(|offsets| {
                let mut sorted = offsets.clone();
                sorted.sort_unstable();
                let before = sorted.len();
                sorted.dedup();
                before - sorted.len()
            })
            .sum()
    }
}

#[tokio::test(start_paused = true)]
async fn pollers_share_partitions_fairly_and_a_newcomer_gets_its_share() {
    let w = World::new();
    let uuid = w.mapping("orders", 12, |_| {}).await;
    let pollers: Vec<Poller> = (0..3).map(|_| w.poller()).collect();
    sleep(Duration::from_secs(20)).await;
    assert_eq!(w.shares(&uuid).await, [4, 4, 4]);
    let fourth = w.poller();
    sleep(Duration::from_secs(20)).await;
    assert_eq!(w.shares(&uuid).await, [3, 3, 3, 3]);
    w.produce("orders", 12, 25);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(60)).await);
    assert!(w.all_delivered("orders"));
    assert_eq!(w.duplicates(), 0);
    assert_eq!(w.function.max_in_flight(), 1);
    for p in pollers.into_iter().chain([fourth]) {
        assert_eq!(p.stop().await, Exit::Stopped);
    }
    // Everything released, every heartbeat removed.
    assert!(w.owners(&uuid).await.values().all(Option::is_none));
    assert!(w.leases.snapshot().await.unwrap().pollers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stopped_poller_hands_over_without_a_duplicate_or_a_gap() {
    let w = World::new();
    w.function.set_delay(Duration::from_millis(300));
    let uuid = w.mapping("orders", 4, |_| {}).await;
    let a = w.poller();
    let b = w.poller();
    w.produce("orders", 4, 50);
    sleep(Duration::from_secs(5)).await;
    assert_eq!(a.stop().await, Exit::Stopped);
    w.produce("orders", 4, 50);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(120)).await);
    assert!(w.all_delivered("orders"));
    assert_eq!(w.duplicates(), 0, "a graceful hand-over commits before it releases");
    assert_eq!(w.function.max_in_flight(), 1);
    assert_eq!(w.shares(&uuid).await, [4]);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_killed_pollers_partitions_move_after_the_lease_duration_with_nothing_lost() {
    let w = World::new();
    w.function.set_delay(Duration::from_secs(1));
    let uuid = w.mapping("orders", 4, |_| {}).await;
    let a = w.poller();
    sleep(Duration::from_secs(10)).await;
    let b = w.poller();
    w.produce("orders", 4, 40);
    sleep(Duration::from_secs(3)).await;
    a.kill();
    let killed_at = tokio::time::Instant::now();
    // The killed poller's partitions stay put until its heartbeat has been silent for a lease
    // duration, then move.
    let duration = w.settings.lease.duration;
    let mut moved_after = None;
    while killed_at.elapsed() < duration * 3 {
        if w.shares(&uuid).await == [4] {
            moved_after = Some(killed_at.elapsed());
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    let moved_after = moved_after.expect("the killed poller's partitions never moved");
    assert!(
        moved_after >= duration - w.settings.scan_every,
        "moved after {moved_after:?}, before its heartbeat could have lapsed"
    );
    println!(
        "takeover after a kill: {moved_after:?} (lease duration {duration:?}, scan every {:?})",
        w.settings.scan_every
    );
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(120)).await);
    assert!(w.all_delivered("orders"), "a kill loses nothing: the uncommitted batches are delivered again");
    assert_eq!(w.function.max_in_flight(), 1, "the killed poller's invokes had ended before the takeover");
    b.stop().await;
}

/// A poller stops (SIGTERM) while its function runs longer than the drain timeout: the invoke is
/// abandoned and the lease released. `longest_invoke` is `ESM_UNANSWERED_INVOKE_WAIT_MS`,
/// `timeout` what the function reports as its timeout. Returns the most invokes of one partition
/// at once; the partition must catch up within 300 s.
async fn stop_during_a_long_invoke(longest_invoke: Duration, timeout: Option<Duration>) -> usize {
    let mut w = World::new();
    w.settings.drain_timeout = Duration::from_secs(1);
    w.settings.unanswered_invoke_wait = longest_invoke;
    w.function.set_delay(Duration::from_secs(20));
    w.function.set_timeout(timeout);
    let uuid = w.mapping("orders", 2, |_| {}).await;
    let a = w.poller();
    sleep(Duration::from_secs(10)).await;
    assert_eq!(w.shares(&uuid).await, [2]);
    let b = w.poller();
    w.produce("orders", 2, 10);
    sleep(Duration::from_secs(2)).await;
    // A's two invokes run until t+22 s; it stops now and abandons them after 1 s.
    assert_eq!(a.stop().await, Exit::Stopped);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(300)).await);
    assert!(w.all_delivered("orders"));
    b.stop().await;
    w.function.max_in_flight()
}

/// Review #1(a): a stopping poller abandoned an invoke that outlived the drain timeout and the
/// next holder invoked the same records while it still ran.
#[tokio::test(start_paused = true)]
async fn the_next_holder_waits_out_an_abandoned_invoke_before_invoking_the_partition() {
    assert_eq!(stop_during_a_long_invoke(Duration::from_secs(30), None).await, 1, "never two invocations at once");
    // Without the wait (a function timeout of 0 says it cannot be running): the overlap it prevents.
    assert_eq!(stop_during_a_long_invoke(Duration::ZERO, None).await, 2);
}

/// Review #19: the wait is the function's own timeout (GetFunction's, plus slack for its Init
/// phase), not the 15-minute ceiling that covers any function: with a 25 s timeout the partition
/// moves on within a minute, still one invocation at a time.
#[tokio::test(start_paused = true)]
async fn the_fence_lasts_the_functions_own_timeout_when_lambda_reports_it() {
    let fifteen_minutes = Duration::from_secs(15 * 60);
    assert_eq!(stop_during_a_long_invoke(fifteen_minutes, Some(Duration::from_secs(25))).await, 1, "two at once");
}

/// 12 partitions over 3 pollers, a function taking 500 ms: the most invokes in flight at once.
/// With `kill`, one poller is killed half-way (its grant must come back to the others).
async fn concurrent_invokes(cap: Option<u32>, kill: bool) -> usize {
    let w = World::new();
    w.function.set_delay(Duration::from_millis(500));
    let uuid = w
        .mapping("orders", 12, |r| {
            r.scaling_config = cap.map(|n| ScalingConfig { maximum_concurrency: Some(n) });
        })
        .await;
    let pollers: Vec<Poller> = (0..3).map(|_| w.poller()).collect();
    sleep(Duration::from_secs(10)).await;
    w.produce("orders", 12, 30);
    if kill {
        sleep(Duration::from_secs(5)).await;
        pollers[0].kill();
    }
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(300)).await, "cap {cap:?}: not caught up");
    assert!(w.all_delivered("orders"));
    for p in pollers.into_iter().skip(usize::from(kill)) {
        p.stop().await;
    }
    w.function.max_concurrent_invokes()
}

#[tokio::test(start_paused = true)]
async fn maximum_concurrency_bounds_the_invokes_of_a_mapping_over_all_its_pollers() {
    // Without a cap, 12 partitions run 12 invokes at once.
    assert_eq!(concurrent_invokes(None, false).await, 12);
    assert_eq!(concurrent_invokes(Some(3), false).await, 3, "the cap is used, never passed");
    assert_eq!(concurrent_invokes(Some(2), false).await, 2, "fewer slots than pollers");
    assert!(concurrent_invokes(Some(3), true).await <= 3, "a killed poller's slots come back, never doubled");
}

/// Sleeps until `at` (virtual time since `t0`).
async fn until(t0: tokio::time::Instant, at: f64) {
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(at)).await;
}

/// A poller whose heartbeat renewals fail long enough to lose its identity while one invoke (12 s
/// to 42 s) runs, with `drain` to wind down. Returns the most invokes of one partition at once.
async fn identity_lost_during_a_long_invoke(drain: Duration, longest_invoke: Duration) -> usize {
    let mut w = World::new();
    w.settings.drain_timeout = drain;
    w.settings.unanswered_invoke_wait = longest_invoke;
    w.function.set_delay(Duration::from_secs(30));
    let uuid = w.mapping("orders", 2, |_| {}).await;
    let failing = Arc::new(AtomicBool::new(false));
    let dead = CancellationToken::new();
    let flaky = FlakyHeartbeats {
        inner: Mortal::new(w.leases.clone(), dead.clone()),
        failing: failing.clone(),
        hang: Duration::ZERO,
        registered: Arc::default(),
    };
    let t0 = tokio::time::Instant::now();
    let a = w.poller_with(flaky, dead, None::<Arc<NoSpawner>>, Start::Process);
    until(t0, 4.0).await;
    assert_eq!(w.shares(&uuid).await, [2]);
    let b = w.poller();
    // a renews every 5 s; its renewals fail from 10.5 s to 18.2 s, so its guard (from the 10 s
    // renewal) lapses at 18 s while the invoke it started at 12 s runs until 42 s; b sees the
    // heartbeat move again before it could call a dead (no sooner than 20 s).
    until(t0, 10.5).await;
    failing.store(true, Ordering::Relaxed);
    until(t0, 12.0).await;
    w.produce("orders", 2, 5);
    until(t0, 18.2).await;
    failing.store(false, Ordering::Relaxed);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(300)).await);
    assert!(w.all_delivered("orders"));
    a.stop().await;
    b.stop().await;
    w.function.max_in_flight()
}

#[tokio::test(start_paused = true)]
async fn a_lost_heartbeat_never_leaves_an_invoke_running_while_another_poller_invokes_the_same_records() {
    // The default 30 s drain outlasts the invoke: the old identity waits for it.
    let drain = Settings::default().drain_timeout;
    assert_eq!(identity_lost_during_a_long_invoke(drain, Duration::from_secs(40)).await, 1);
}

/// Review #2: a poller that lost its identity abandoned an invoke that outlived the drain timeout
/// and the next holder invoked the same records while it ran. It now fences the lease.
#[tokio::test(start_paused = true)]
async fn a_poller_that_lost_its_identity_fences_the_invokes_it_abandons() {
    // A 2 s drain ends (at 20 s) long before the invoke (42 s).
    let drain = Duration::from_secs(2);
    assert_eq!(identity_lost_during_a_long_invoke(drain, Duration::from_secs(40)).await, 1, "two at once");
    // Without the fence (a function timeout of 0): the overlap it prevents.
    assert_eq!(identity_lost_during_a_long_invoke(drain, Duration::ZERO).await, 2);
}

#[tokio::test(start_paused = true)]
async fn a_one_off_heartbeat_failure_under_default_settings_keeps_the_identity() {
    let w = World::new();
    let uuid = w.mapping("orders", 2, |_| {}).await;
    let failing = Arc::new(AtomicBool::new(false));
    let dead = CancellationToken::new();
    // Writes hang 5 s (an SDK timeout) and fail.
    let flaky = FlakyHeartbeats {
        inner: Mortal::new(w.leases.clone(), dead.clone()),
        failing: failing.clone(),
        hang: Duration::from_secs(5),
        registered: Arc::default(),
    };
    let t0 = tokio::time::Instant::now();
    let a = w.poller_with(flaky, dead, None::<Arc<NoSpawner>>, Start::Process);
    until(t0, 4.0).await;
    let owners = w.owners(&uuid).await;
    assert!(owners.values().all(Option::is_some));
    // The renewal at 15 s hangs and fails; DynamoDB is back at 15.7 s. The guard of the 10 s
    // renewal runs until 18 s: the retry must land before then.
    until(t0, 14.5).await;
    failing.store(true, Ordering::Relaxed);
    until(t0, 15.7).await;
    failing.store(false, Ordering::Relaxed);
    until(t0, 60.0).await;
    assert_eq!(w.owners(&uuid).await, owners, "the poller kept its identity and its leases");
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pollers_racing_for_a_limited_mapping_end_with_at_most_maximum_pollers() {
    let w = World::new();
    let uuid = w
        .mapping("orders", 6, |r| {
            r.provisioned_poller_config =
                Some(ProvisionedPollerConfig { minimum_pollers: None, maximum_pollers: Some(2) });
        })
        .await;
    let pollers: Vec<Poller> = (0..3).map(|_| w.poller()).collect();
    sleep(Duration::from_secs(30)).await;
    assert_eq!(w.shares(&uuid).await, [3, 3]);
    w.produce("orders", 6, 10);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(60)).await);
    for p in pollers {
        p.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_poller_scaling_in_does_not_start_a_successor_but_one_at_its_deadline_does() {
    let w = World::new();
    w.mapping("orders", 2, |_| {}).await;
    let spawns = Arc::new(Spawns::default());
    let lambda = |w: &World| {
        let dead = CancellationToken::new();
        w.poller_with(Mortal::new(w.leases.clone(), dead.clone()), dead, Some(spawns.clone()), Start::ScaleOut)
    };
    let a = lambda(&w);
    let b = lambda(&w);
    // No lag for a whole scale window: one of the two stops, without a relay.
    sleep(w.settings.scale_window * 3).await;
    let idle = [a.task.is_finished(), b.task.is_finished()];
    assert_eq!(idle.iter().filter(|f| **f).count(), 1, "exactly one poller scaled in");
    let (gone, staying) = if idle[0] { (a, b) } else { (b, a) };
    assert_eq!(gone.task.await.unwrap(), Exit::Idle);
    assert!(!spawns.reasons().contains(&"relay"), "{:?}", spawns.reasons());
    // The other stops at its deadline holding leases: it relays.
    assert_eq!(staying.stop().await, Exit::Stopped);
    assert_eq!(spawns.reasons().iter().filter(|r| **r == "relay").count(), 1);
}

/// Starts real in-process pollers when asked, as the Lambda's asynchronous self-invoke does.
struct InProcess {
    world: World,
    pollers: Mutex<Vec<Poller>>,
    reasons: Mutex<Vec<&'static str>>,
}

impl Spawner for InProcess {
    async fn spawn(&self, reason: &'static str, _from: &str) -> Result<(), String> {
        self.reasons.lock().unwrap().push(reason);
        // The poller it starts cannot start others (this test counts what the first one does).
        let dead = CancellationToken::new();
        let poller = self.world.poller_with(
            Mortal::new(self.world.leases.clone(), dead.clone()),
            dead,
            None::<Arc<NoSpawner>>,
            Start::ScaleOut,
        );
        self.pollers.lock().unwrap().push(poller);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn minimum_pollers_are_started_at_once_and_kept_when_idle() {
    let w = World::new();
    let uuid = w
        .mapping("orders", 4, |r| {
            r.provisioned_poller_config =
                Some(ProvisionedPollerConfig { minimum_pollers: Some(2), maximum_pollers: Some(3) });
        })
        .await;
    let spawner = Arc::new(InProcess { world: w.clone(), pollers: Mutex::default(), reasons: Mutex::default() });
    let dead = CancellationToken::new();
    let first =
        w.poller_with(Mortal::new(w.leases.clone(), dead.clone()), dead, Some(spawner.clone()), Start::Schedule);
    sleep(Duration::from_secs(20)).await;
    assert_eq!(w.shares(&uuid).await, [2, 2], "MinimumPollers=2 started a second poller");
    assert_eq!(*spawner.reasons.lock().unwrap(), ["minimum-pollers"]);
    // Idle for well over the scale window: neither stops, none more starts.
    sleep(w.settings.scale_window * 3).await;
    assert_eq!(w.shares(&uuid).await, [2, 2]);
    assert_eq!(spawner.reasons.lock().unwrap().len(), 1);
    assert_eq!(first.stop().await, Exit::Stopped);
    let started = std::mem::take(&mut *spawner.pollers.lock().unwrap());
    for p in started {
        assert_eq!(p.stop().await, Exit::Stopped);
    }
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_poller_exits_at_once_when_every_partition_has_a_live_poller() {
    let w = World::new();
    let uuid = w.mapping("orders", 2, |_| {}).await;
    let scheduled = |w: &World| {
        let dead = CancellationToken::new();
        w.poller_with(Mortal::new(w.leases.clone(), dead.clone()), dead, None::<Arc<NoSpawner>>, Start::Schedule)
    };
    // Nothing runs yet: the scheduled poller stays and takes the partitions.
    let first = scheduled(&w);
    sleep(Duration::from_secs(10)).await;
    assert_eq!(w.shares(&uuid).await, [2]);
    // Every partition covered: the next one returns at once, without registering.
    let started = tokio::time::Instant::now();
    let second = scheduled(&w);
    assert_eq!(second.task.await.unwrap(), Exit::NotNeeded);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert_eq!(w.leases.snapshot().await.unwrap().pollers.len(), 1, "it never registered");
    assert_eq!(first.stop().await, Exit::Stopped);
}

#[tokio::test(start_paused = true)]
async fn growing_lag_starts_one_more_poller() {
    let w = World::new();
    w.function.set_delay(Duration::from_secs(5));
    w.mapping("orders", 4, |_| {}).await;
    let spawns = Arc::new(Spawns::default());
    let dead = CancellationToken::new();
    let a = w.poller_with(Mortal::new(w.leases.clone(), dead.clone()), dead, Some(spawns.clone()), Start::Schedule);
    // 40 records per partition every 10 s; the function takes 20 s for them (4 batches of 10).
    for _ in 0..12 {
        w.produce("orders", 4, 40);
        sleep(Duration::from_secs(10)).await;
    }
    assert!(spawns.reasons().contains(&"scale-out"), "{:?}", spawns.reasons());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn partitions_added_to_a_latest_mapping_are_read_from_their_beginning() {
    let w = World::new();
    let uuid = w.mapping("orders", 1, |r| r.starting_position = Some(StartingPosition::Latest)).await;
    // Written before the mapping started: LATEST skips these.
    w.produce("orders", 1, 3);
    let a = w.poller();
    sleep(Duration::from_secs(10)).await;
    w.kafka.add_partitions("orders", 2);
    // Producers write to the new partitions before the poller notices them.
    w.produce("orders", 3, 5);
    assert!(
        w.caught_up(&uuid, "orders", Duration::from_secs(120)).await,
        "committed {:?}",
        w.kafka.committed(&uuid, "orders")
    );
    let delivered = w.function.delivered();
    for p in 1..3 {
        assert_eq!(delivered[&format!("orders-{p}")], (0..5).collect::<Vec<_>>(), "partition {p}");
    }
    // The first partition started at LATEST: what was written before the start is not delivered.
    assert_eq!(delivered["orders-0"], (3..8).collect::<Vec<_>>());
    a.stop().await;
}

/// Found by the demo: records delivered, then the poller stopped before its next report, and
/// the mapping still said "No records processed".
#[tokio::test(start_paused = true)]
async fn a_poller_stopped_right_after_delivering_reports_ok() {
    let mut w = World::new();
    // No report falls due between the delivery and the stop.
    w.settings.refresh_interval = Duration::from_secs(600);
    w.settings.scan_every = Duration::from_secs(600);
    let uuid = w.mapping("orders", 1, |_| {}).await;
    w.produce("orders", 1, 5);
    let a = w.poller();
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(60)).await);
    a.stop().await;
    let Some(Loaded::Valid(m)) = w.store.get(&uuid).await.unwrap() else { panic!() };
    assert_eq!(m.last_processing_result.as_deref(), Some("OK"));
}

#[tokio::test(start_paused = true)]
async fn a_malformed_lease_item_is_reported_and_recreated() {
    let w = World::new();
    let uuid = w.mapping("orders", 2, |_| {}).await;
    // Partition 1's lease item is unreadable from the start (written by hand).
    w.leases.put_malformed(&LeaseId::new(&uuid, "orders", 1), "Counter is not a number (N)");
    let a = w.poller();
    sleep(Duration::from_secs(3)).await;
    let Some(Loaded::Valid(m)) = w.store.get(&uuid).await.unwrap() else { panic!() };
    assert!(m.last_processing_result.as_deref().is_some_and(|r| r.contains("malformed")), "{m:?}");
    w.produce("orders", 2, 5);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(120)).await);
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn leases_of_deleted_mappings_and_heartbeats_of_dead_pollers_are_removed() {
    let w = World::new();
    let uuid = w.mapping("orders", 2, |_| {}).await;
    // Leftovers: leases of a mapping that is gone, and a poller that died long ago.
    let gone = "00000000-0000-4000-8000-000000000000";
    w.leases.ensure(&LeaseId::new(gone, "old", 0), false).await.unwrap();
    w.leases.register("poller-dead", Heartbeat { expires_at_ms: 0, load: Default::default() }).await.unwrap();
    let a = w.poller();
    sleep(w.settings.lease.duration * 4).await;
    let snapshot = w.leases.snapshot().await.unwrap();
    assert!(!snapshot.mappings.contains_key(gone), "{snapshot:?}");
    assert!(snapshot.pollers.iter().all(|p| p.id != "poller-dead"));
    assert!(snapshot.mappings.contains_key(&uuid));
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn deleting_a_mapping_stops_it_and_removes_its_item_and_leases() {
    let w = World::new();
    let uuid = w.mapping("orders", 2, |_| {}).await;
    let a = w.poller();
    w.produce("orders", 2, 5);
    assert!(w.caught_up(&uuid, "orders", Duration::from_secs(60)).await);
    api::delete(&w.store, &uuid).await.unwrap();
    sleep(Duration::from_secs(15)).await;
    assert!(w.store.get(&uuid).await.unwrap().is_none());
    assert!(!w.leases.snapshot().await.unwrap().mappings.contains_key(&uuid));
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unrecoverable_error_disables_the_mapping_even_after_its_state_was_settled() {
    use kafka_esm::coordination::connector::ConnectError;
    use kafka_esm::delivery::policy::StopReason;
    use kafka_esm::model::mapping::State;
    let w = World::new();
    let uuid = w.mapping("orders", 2, |_| {}).await;
    // The consumer starts while the item is still Creating (version 1); the poller settles it to
    // Enabled (version 2) before the cluster refuses the credentials.
    w.kafka.fail_connects(Some(ConnectError::stop(StopReason::EventSourceAuthnError, "SASL authentication failed")));
    let a = w.poller();
    sleep(Duration::from_secs(10)).await;
    let Some(Loaded::Valid(m)) = w.store.get(&uuid).await.unwrap() else { panic!() };
    assert_eq!(m.state, State::Disabled);
    assert_eq!(m.state_transition_reason.as_deref(), Some("EVENT_SOURCE_AUTHN_ERROR"));
    assert_eq!(m.last_processing_result.as_deref(), Some("SASL authentication failed"));
    a.stop().await;
}

/// The trade-off between crash takeover time and DynamoDB writes, measured on the real control
/// plane (in-process, virtual time): three pollers over 12 partitions, one killed at several
/// points of its heartbeat cycle. `cargo test --test control_plane -- --ignored --nocapture`.
#[tokio::test(start_paused = true)]
#[ignore = "a measurement that prints the curve for the README"]
async fn takeover_and_write_rate_trade_off() {
    use kafka_esm::config::LeaseSettings;
    println!("lease duration | renew | margin | scan | writes/partition-min | takeover min / avg / max (s)");
    for (d, r, m, scan) in [
        (20, 8, 3, 5),
        (15, 6, 2, 5),
        (12, 5, 2, 5),
        (10, 5, 2, 5),
        (10, 4, 2, 5),
        (10, 4, 2, 2),
        (10, 4, 2, 1),
        (6, 2, 1, 1),
    ] {
        let mut takeovers = Vec::new();
        let mut rate = 0.0;
        for phase in [0.1, 0.35, 0.6, 0.85] {
            let mut w = World::new();
            w.settings.lease = LeaseSettings {
                duration: Duration::from_secs(d),
                renew_every: Duration::from_secs(r),
                safety_margin: Duration::from_secs(m),
            };
            w.settings.scan_every = Duration::from_secs(scan);
            let uuid = w.mapping("orders", 12, |_| {}).await;
            let t0 = tokio::time::Instant::now();
            let dead = CancellationToken::new();
            let failing = Arc::new(AtomicBool::new(false));
            let tagged = FlakyHeartbeats {
                inner: Mortal::new(w.leases.clone(), dead.clone()),
                failing,
                hang: Duration::ZERO,
                registered: Arc::default(),
            };
            let victim_id = tagged.registered.clone();
            let victim = w.poller_with(tagged, dead, None::<Arc<NoSpawner>>, Start::Process);
            let others: Vec<Poller> = (0..2).map(|_| w.poller()).collect();
            sleep(Duration::from_secs(40)).await;
            assert_eq!(w.shares(&uuid).await, [4, 4, 4]);
            let writes_before = w.leases.writes();
            sleep(Duration::from_secs(60)).await;
            #[allow(clippy::cast_precision_loss)]
            let per_partition_minute = (w.leases.writes() - writes_before) as f64 / 12.0;
            rate = per_partition_minute;
            // The victim registered at t0 and renews every r seconds: kill it `phase` of a
            // cycle after one of its renewals.
            let cycles = (t0.elapsed().as_secs_f64() / r as f64).ceil();
            until(t0, (cycles + phase) * r as f64).await;
            let victim_id = victim_id.lock().unwrap().clone();
            assert!(victim_id.is_some());
            victim.kill();
            let killed = tokio::time::Instant::now();
            let mut moved = None;
            while killed.elapsed() < Duration::from_secs(d * 4) {
                let owners = w.owners(&uuid).await;
                let left = owners.values().flatten().filter(|o| Some(*o) == victim_id.as_ref()).count();
                if left == 0 && owners.values().all(Option::is_some) {
                    moved = Some(killed.elapsed());
                    break;
                }
                sleep(Duration::from_millis(50)).await;
            }
            takeovers.push(moved.expect("the killed poller's partitions moved").as_secs_f64());
            for p in others {
                p.stop().await;
            }
        }
        let min = takeovers.iter().copied().fold(f64::MAX, f64::min);
        let max = takeovers.iter().copied().fold(0.0, f64::max);
        let avg = takeovers.iter().sum::<f64>() / takeovers.len() as f64;
        println!("{d:>14} s | {r:>3} s | {m:>4} s | {scan:>2} s | {rate:>20.2} | {min:.1} / {avg:.1} / {max:.1}");
    }
}
