//! Several pollers over one table: each partition is consumed by one poller at a time (its lease),
//! work spreads to a fair share, a poller that stops hands its partitions over, and no partition
//! ever sees two invocations at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, bootstrap, live_owners, request, settings, wait_for};
use kafka_esm::config::{LeaseSettings, Settings};
use kafka_esm_testkit::kafka::{Producer, committed_offsets_out_of_process, create_topic, random_topic};

fn fast_leases() -> Settings {
    Settings {
        lease: LeaseSettings {
            duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            safety_margin: Duration::from_millis(1000),
        },
        ..settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_pollers_share_six_partitions_exclusively_and_hand_over_on_stop() {
    let h = Harness::new().await;
    h.stub.set_delay(Duration::from_millis(20));
    let producer = Producer::new(bootstrap()).unwrap();
    let mut mappings = Vec::new();
    for i in 0..3 {
        let topic = random_topic(&format!("shared{i}"));
        create_topic(bootstrap(), &topic, 2).await.unwrap();
        producer.fill(&topic, 2, 20, "a").await.unwrap();
        let mut req = request("consumer", &topic);
        req.batch_size = Some(5);
        req.maximum_batching_window_in_seconds = Some(0);
        mappings.push((h.create(req).await, topic));
    }
    let pollers = vec![h.start_poller(fast_leases()), h.start_poller(fast_leases()), h.start_poller(fast_leases())];
    assert!(
        wait_for(common::WAIT, || async { h.delivered_count() == 120 }).await.is_some(),
        "delivered {}",
        h.delivered_count()
    );

    // Fair share: once settled, the six partition leases are held two by each poller.
    let owners = || async {
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        for (m, _) in &mappings {
            for owner in live_owners(&h, &m.uuid).await.into_values() {
                *owners.entry(owner).or_default() += 1;
            }
        }
        owners.into_values().collect::<Vec<usize>>()
    };
    assert!(
        wait_for(Duration::from_secs(20), || async { owners().await == [2, 2, 2] }).await.is_some(),
        "leases per poller {:?}",
        owners().await
    );

    // One poller stops (SIGTERM in a real process): its mapping moves to the others.
    let mut pollers = pollers.into_iter();
    pollers.next().unwrap().stop().await;
    for (_, topic) in &mappings {
        producer.fill(topic, 2, 10, "b").await.unwrap();
    }
    assert!(
        wait_for(common::WAIT, || async { h.delivered_count() == 180 }).await.is_some(),
        "delivered {}",
        h.delivered_count()
    );
    for p in pollers {
        p.stop().await;
    }

    // Every record exactly once (clean stops), in order, and never two invocations of one
    // partition at the same time.
    let delivered = h.delivered();
    for (m, topic) in &mappings {
        for p in 0..2 {
            assert_eq!(delivered[&format!("{topic}-{p}")], (0..30).collect::<Vec<i64>>());
        }
        assert_eq!(
            committed_offsets_out_of_process(bootstrap(), &m.uuid, topic).unwrap(),
            BTreeMap::from([(0, 30), (1, 30)])
        );
    }
    let mut by_partition: BTreeMap<String, Vec<(tokio::time::Instant, tokio::time::Instant)>> = BTreeMap::new();
    for inv in h.stub.invocations() {
        for (key, _) in inv.offsets() {
            by_partition.entry(key).or_default().push((inv.started, inv.finished));
        }
    }
    for (key, mut spans) in by_partition {
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "two invocations of {key} overlapped");
        }
    }
}
