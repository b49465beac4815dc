//! The leases table unreachable for a while: a short outage changes nothing (the heartbeat's
//! lifetime covers it, records keep flowing); a long one stops the poller's invokes before its
//! heartbeat expires, and once the table is back the poller registers again and carries on from
//! the committed offsets: nothing lost, never two invocations of a partition at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Harness, bootstrap, request, settings, wait_for};
use kafka_esm::lease::{DynamoLeaseStore, Lease, LeaseError, LeaseSettings, LeaseStore, Load, PollerInfo, Snapshot};
use kafka_esm::poller::PollerSettings;
use kafka_esm::supervisor::{PollerOptions, run_poller_with};
use kafka_esm_testkit::kafka::{Producer, committed_offsets_out_of_process, create_topic, random_topic};
use tokio_util::sync::CancellationToken;

/// The real table, unreachable while `down` is set.
struct Flaky {
    inner: Arc<DynamoLeaseStore>,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), LeaseError> {
        if self.down.load(Ordering::SeqCst) {
            Err(LeaseError::Dynamo { table: "leases".into(), message: "connection refused (test outage)".into() })
        } else {
            Ok(())
        }
    }
}

impl LeaseStore for Flaky {
    async fn leases(&self, mapping: &str) -> Result<Vec<Lease>, LeaseError> {
        self.check()?;
        self.inner.leases(mapping).await
    }
    async fn ensure(&self, mapping: &str, topic: &str, partition: i32) -> Result<(), LeaseError> {
        self.check()?;
        self.inner.ensure(mapping, topic, partition).await
    }
    async fn acquire(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        self.check()?;
        self.inner.acquire(lease, owner).await
    }
    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), LeaseError> {
        self.check()?;
        self.inner.release(lease, owner).await
    }
    async fn delete_mapping(&self, mapping: &str) -> Result<(), LeaseError> {
        self.check()?;
        self.inner.delete_mapping(mapping).await
    }
    async fn heartbeat(&self, poller: &str, now_ms: i64, ttl: Duration, load: Load) -> Result<(), LeaseError> {
        self.check()?;
        self.inner.heartbeat(poller, now_ms, ttl, load).await
    }
    async fn live_pollers(&self, now_ms: i64) -> Result<Vec<PollerInfo>, LeaseError> {
        self.check()?;
        self.inner.live_pollers(now_ms).await
    }
    async fn remove_poller(&self, poller: &str) -> Result<(), LeaseError> {
        self.check()?;
        self.inner.remove_poller(poller).await
    }
    async fn snapshot(&self, now_ms: i64) -> Result<Snapshot, LeaseError> {
        self.check()?;
        self.inner.snapshot(now_ms).await
    }
}

const LEASE: LeaseSettings = LeaseSettings {
    duration: Duration::from_secs(4),
    renew_every: Duration::from_millis(1000),
    safety_margin: Duration::from_millis(1000),
};

fn poller_settings() -> PollerSettings {
    PollerSettings { lease: LEASE, ..settings() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_outage_changes_nothing_and_a_long_one_stops_invokes_then_recovers() {
    let h = Harness::new().await;
    let topic = random_topic("outage");
    create_topic(bootstrap(), &topic, 2).await.unwrap();
    let mut req = request("consumer", &topic);
    req.batch_size = Some(5);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let leases = Arc::new(Flaky { inner: h.leases.clone(), down: AtomicBool::new(false) });
    let stop = CancellationToken::new();
    let options = PollerOptions { scan_every: Duration::from_millis(250), ..PollerOptions::default() };
    let poller =
        tokio::spawn(run_poller_with(h.store.clone(), leases.clone(), h.env(poller_settings()), stop.clone(), options));
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 2, 10, "a").await.unwrap();
    assert!(wait_for(common::WAIT, || async { h.delivered_count() == 20 }).await.is_some());
    let owner = || async {
        let owners: BTreeSet<String> =
            h.leases.leases(&mapping.uuid).await.unwrap().into_iter().filter_map(|l| l.owner).collect();
        owners
    };
    let before = owner().await;
    assert_eq!(before.len(), 1);

    // Short: 1.5 s, well inside the 4 s heartbeat (3 s with the margin). Records keep flowing
    // during it; the same identity holds the leases afterwards.
    leases.down.store(true, Ordering::SeqCst);
    producer.fill(&topic, 2, 5, "b").await.unwrap();
    assert!(
        wait_for(Duration::from_millis(1500), || async { h.delivered_count() == 30 }).await.is_some(),
        "records flow while the table is briefly unreachable"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    leases.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(owner().await, before, "a short outage keeps the leases");

    // Long: 8 s. Invokes stop once the guard lapses (heartbeat + duration - margin), before
    // anyone else could take the partitions.
    leases.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let count_then = h.stub.invocations().len();
    producer.fill(&topic, 2, 5, "c").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.stub.invocations().len(), count_then, "no invoke without a confirmed heartbeat");
    leases.down.store(false, Ordering::SeqCst);
    assert!(
        wait_for(common::WAIT, || async { h.delivered_count() >= 40 }).await.is_some(),
        "after the outage the poller registers again and delivers what arrived; delivered {}",
        h.delivered_count()
    );
    assert_ne!(owner().await, before, "it started over under a new identity");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), poller).await.unwrap().unwrap();

    let delivered = h.delivered();
    for p in 0..2 {
        let seen: BTreeSet<i64> = delivered[&format!("{topic}-{p}")].iter().copied().collect();
        assert_eq!(seen, (0..20).collect(), "partition {p}: every record");
    }
    assert_eq!(
        committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(),
        [(0, 20), (1, 20)].into_iter().collect()
    );
}
