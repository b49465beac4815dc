//! Scaling as the poller Lambda does it, with the asynchronous self-invoke replaced by starting
//! another poller in this process: the poller with the lowest id starts one more when lag keeps
//! growing for the scale window, never beyond the cap; `MinimumPollers` are started at once; an
//! idle poller beyond the minimum stops, and its partitions move to the others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use common::{Harness, bootstrap, request, settings, wait_for};
use kafka_esm::invoke::LambdaInvoker;
use kafka_esm::lease::{DynamoLeaseStore, LeaseSettings, LeaseStore, now_epoch_ms};
use kafka_esm::mapping::ProvisionedPollerConfig;
use kafka_esm::poller::{PollerEnv, PollerSettings};
use kafka_esm::store::DynamoMappingStore;
use kafka_esm::supervisor::{PollerExit, PollerOptions, Spawner, run_poller_with};
use kafka_esm_testkit::kafka::{Producer, TestRecord, committed_offsets_out_of_process, create_topic, random_topic};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WINDOW: Duration = Duration::from_secs(2);

fn fast() -> PollerSettings {
    PollerSettings {
        lease: LeaseSettings {
            duration: Duration::from_secs(3),
            renew_every: Duration::from_millis(500),
            safety_margin: Duration::from_millis(1000),
        },
        ..settings()
    }
}

/// Starts pollers in this process, as the Lambda's self-invoke starts them in new sandboxes.
struct InProcess {
    store: Arc<DynamoMappingStore>,
    leases: Arc<DynamoLeaseStore>,
    env: Arc<PollerEnv<LambdaInvoker>>,
    max_pollers: usize,
    stop: CancellationToken,
    me: OnceLock<Weak<InProcess>>,
    started: Mutex<Vec<(&'static str, JoinHandle<PollerExit>)>>,
}

impl InProcess {
    fn new(h: &Harness, max_pollers: usize) -> Arc<Self> {
        let spawner = Arc::new(Self {
            store: h.store.clone(),
            leases: h.leases.clone(),
            env: h.env(fast()),
            max_pollers,
            stop: CancellationToken::new(),
            me: OnceLock::new(),
            started: Mutex::new(Vec::new()),
        });
        spawner.me.set(Arc::downgrade(&spawner)).unwrap();
        spawner
    }

    fn options(&self) -> PollerOptions<Self> {
        PollerOptions {
            spawner: self.me.get().and_then(Weak::upgrade),
            join_if_needed: false,
            successor: false,
            relay: false,
            scale_in: true,
            max_pollers: self.max_pollers,
            scale_window: WINDOW,
            scan_every: Duration::from_millis(250),
        }
    }

    fn start(&self, reason: &'static str) {
        let task = tokio::spawn(run_poller_with(
            self.store.clone(),
            self.leases.clone(),
            self.env.clone(),
            self.stop.clone(),
            self.options(),
        ));
        self.started.lock().unwrap().push((reason, task));
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.started.lock().unwrap().iter().map(|(r, _)| *r).collect()
    }

    async fn stop_all(&self) -> Vec<PollerExit> {
        self.stop.cancel();
        let tasks: Vec<_> = self.started.lock().unwrap().drain(..).collect();
        let mut exits = Vec::new();
        for (_, task) in tasks {
            exits.push(tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap());
        }
        exits
    }
}

impl Spawner for InProcess {
    async fn spawn(&self, reason: &'static str, _from: &str) -> Result<(), String> {
        self.start(reason);
        Ok(())
    }
}

/// Leases per live poller, when every partition is leased.
async fn shares(h: &Harness, mapping: &str, partitions: usize) -> Vec<usize> {
    let live: BTreeSet<String> =
        h.leases.live_pollers(now_epoch_ms()).await.unwrap().into_iter().map(|p| p.id).collect();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for lease in h.leases.leases(mapping).await.unwrap() {
        if let Some(owner) = lease.owner.filter(|o| live.contains(o)) {
            *per.entry(owner).or_default() += 1;
        }
    }
    let mut shares: Vec<usize> = per.into_values().collect();
    shares.sort_unstable();
    if shares.iter().sum::<usize>() == partitions { shares } else { Vec::new() }
}

async fn live_count(h: &Harness) -> usize {
    h.leases.live_pollers(now_epoch_ms()).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn growing_lag_starts_one_more_poller_up_to_the_cap_and_idle_pollers_stop() {
    let h = Harness::new().await;
    let topic = random_topic("scale");
    create_topic(bootstrap(), &topic, 4).await.unwrap();
    let mut req = request("consumer", &topic);
    req.batch_size = Some(5);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    // A slow function: 4 partitions x 5 records per 250 ms = 80 records/s at most.
    h.stub.set_delay(Duration::from_millis(250));

    let pollers = InProcess::new(&h, 2);
    pollers.start("schedule");
    let producer = Producer::new(bootstrap()).unwrap();
    let mut produced = BTreeMap::<i32, i64>::new();
    let mut send = async |n: usize| {
        for i in 0..n {
            let partition = i32::try_from(i % 4).unwrap();
            let value = Some(format!("v{i}").into_bytes());
            let offset =
                producer.send(&topic, &TestRecord { partition, value, ..TestRecord::default() }).await.unwrap();
            produced.insert(partition, offset + 1);
        }
    };
    // About 400 records/s for 8 s: lag keeps growing.
    for _ in 0..40 {
        send(80).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pollers.reasons().iter().filter(|r| **r == "scale-out").count(),
        1,
        "one more poller, capped at 2: {:?}",
        pollers.reasons()
    );
    assert!(
        wait_for(Duration::from_secs(10), || async { shares(&h, &mapping.uuid, 4).await == [2, 2] }).await.is_some(),
        "two pollers share the partitions; shares {:?}",
        shares(&h, &mapping.uuid, 4).await
    );

    // The backlog drains; after a whole window without lag one poller stops by itself.
    h.stub.set_delay(Duration::ZERO);
    let scaled_in = wait_for(Duration::from_secs(30), || async { live_count(&h).await == 1 }).await;
    assert!(scaled_in.is_some(), "an idle poller beyond the minimum stops; live {}", live_count(&h).await);
    assert!(
        wait_for(Duration::from_secs(10), || async { shares(&h, &mapping.uuid, 4).await == [4] }).await.is_some(),
        "the remaining poller holds every partition; shares {:?}",
        shares(&h, &mapping.uuid, 4).await
    );
    send(20).await;
    assert!(
        wait_for(common::WAIT, || async {
            committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap() == produced
        })
        .await
        .is_some(),
        "everything delivered and committed"
    );
    let exits = pollers.stop_all().await;
    assert_eq!(exits.iter().filter(|e| **e == PollerExit::Idle).count(), 1, "{exits:?}");
    // Each record at least once, in order per partition, never two invocations of one partition
    // at a time.
    let delivered = h.delivered();
    for (p, end) in &produced {
        let seen: BTreeSet<i64> = delivered[&format!("{topic}-{p}")].iter().copied().collect();
        assert!((0..*end).all(|o| seen.contains(&o)), "partition {p} lost records");
    }
    let mut spans: BTreeMap<String, Vec<(tokio::time::Instant, tokio::time::Instant)>> = BTreeMap::new();
    for inv in h.stub.invocations() {
        for (key, _) in inv.offsets() {
            spans.entry(key).or_default().push((inv.started, inv.finished));
        }
    }
    for (key, mut list) in spans {
        list.sort();
        assert!(list.windows(2).all(|w| w[0].1 <= w[1].0), "two invocations of {key} overlapped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minimum_pollers_are_started_at_once_and_kept_when_idle() {
    let h = Harness::new().await;
    let topic = random_topic("minimum");
    create_topic(bootstrap(), &topic, 4).await.unwrap();
    let mut req = request("consumer", &topic);
    req.provisioned_poller_config =
        Some(ProvisionedPollerConfig { minimum_pollers: Some(2), maximum_pollers: Some(3) });
    let mapping = h.create(req).await;
    let pollers = InProcess::new(&h, 10);
    pollers.start("schedule");
    assert!(
        wait_for(Duration::from_secs(15), || async { shares(&h, &mapping.uuid, 4).await == [2, 2] }).await.is_some(),
        "MinimumPollers=2 starts a second poller; shares {:?}, started {:?}",
        shares(&h, &mapping.uuid, 4).await,
        pollers.reasons()
    );
    assert_eq!(pollers.reasons(), ["schedule", "minimum-pollers"]);
    // Idle for well over the window: neither stops, no more start.
    tokio::time::sleep(WINDOW * 3).await;
    assert_eq!(live_count(&h).await, 2);
    assert_eq!(pollers.reasons().len(), 2);
    let exits = pollers.stop_all().await;
    assert!(exits.iter().all(|e| *e == PollerExit::Stopped), "{exits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maximum_pollers_limits_how_many_pollers_share_a_mapping() {
    let h = Harness::new().await;
    let topic = random_topic("maxpollers");
    create_topic(bootstrap(), &topic, 4).await.unwrap();
    let other_topic = random_topic("unlimited");
    create_topic(bootstrap(), &other_topic, 6).await.unwrap();
    let mut req = request("consumer", &topic);
    req.provisioned_poller_config =
        Some(ProvisionedPollerConfig { minimum_pollers: Some(1), maximum_pollers: Some(2) });
    let limited = h.create(req).await;
    let unlimited = h.create(request("consumer", &other_topic)).await;
    let pollers: Vec<_> = (0..3).map(|_| h.start_poller(fast())).collect();
    // The limited mapping: every partition leased, by exactly two pollers; the other mapping
    // spreads over all three.
    let settled = wait_for(Duration::from_secs(20), || async {
        shares(&h, &limited.uuid, 4).await == [2, 2] && shares(&h, &unlimited.uuid, 6).await == [2, 2, 2]
    })
    .await;
    assert!(
        settled.is_some(),
        "limited {:?}, unlimited {:?}",
        shares(&h, &limited.uuid, 4).await,
        shares(&h, &unlimited.uuid, 6).await
    );
    Producer::new(bootstrap()).unwrap().fill(&topic, 4, 5, "m").await.unwrap();
    assert!(wait_for(common::WAIT, || async { h.delivered_count() == 20 }).await.is_some());
    for p in pollers {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_poller_exits_at_once_when_every_partition_has_a_live_poller() {
    let h = Harness::new().await;
    let topic = random_topic("covered");
    create_topic(bootstrap(), &topic, 2).await.unwrap();
    let mapping = h.create(request("consumer", &topic)).await;
    let spawner = InProcess::new(&h, 10);
    let scheduled = |spawner: &Arc<InProcess>| PollerOptions { join_if_needed: true, ..spawner.options() };

    // Nothing runs yet: the scheduled poller stays and takes the partitions.
    let first_stop = CancellationToken::new();
    let first = tokio::spawn(run_poller_with(
        h.store.clone(),
        h.leases.clone(),
        h.env(fast()),
        first_stop.clone(),
        scheduled(&spawner),
    ));
    assert!(
        wait_for(Duration::from_secs(15), || async { shares(&h, &mapping.uuid, 2).await == [2] }).await.is_some(),
        "the first scheduled poller takes both partitions"
    );

    // Every partition covered: the next scheduled poller returns within a second.
    let started = tokio::time::Instant::now();
    let exit = run_poller_with(
        h.store.clone(),
        h.leases.clone(),
        h.env(fast()),
        CancellationToken::new(),
        scheduled(&spawner),
    )
    .await;
    assert_eq!(exit, PollerExit::NotNeeded);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert_eq!(live_count(&h).await, 1, "it never registered");

    first_stop.cancel();
    assert_eq!(first.await.unwrap(), PollerExit::Stopped);
}
