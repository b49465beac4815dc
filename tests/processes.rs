//! Real `esm poll` processes sharing one 12-partition topic through the leases table while records
//! flow: every partition has one poller at a time (no two invocations of a partition overlap),
//! every record is delivered and committed, order holds within each tenure, a fourth poller gets
//! its fair share, a SIGTERM hands partitions over without duplicates and a SIGKILL mid-batch is
//! taken over after the heartbeat expires, with at most the killed poller's unfinished batches
//! delivered again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Harness, bootstrap, request, wait_for};

use kafka_esm_testkit::kafka::{Producer, TestRecord, committed_offsets_out_of_process, create_topic, random_topic};
use tokio::process::{Child, Command};

const PARTITIONS: i32 = 12;
const BATCH_SIZE: u32 = 10;
/// The pollers' heartbeat lifetime: a killed poller's partitions are free this long after its
/// last heartbeat.
const LEASE_MS: u64 = 3000;

struct EsmPoll {
    child: Child,
    log: std::path::PathBuf,
}

impl EsmPoll {
    fn start(h: &Harness, dir: &std::path::Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_esm"))
            .arg("poll")
            .env("AWS_ENDPOINT_URL_DYNAMODB", &common::services().1.endpoint)
            .env("AWS_ENDPOINT_URL_LAMBDA", &h.stub.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ESM_MAPPINGS_TABLE", &h.tables.mappings)
            .env("ESM_LEASES_TABLE", &h.tables.leases)
            .env("ESM_FETCH_WAIT_MS", "10")
            .env("ESM_REFRESH_INTERVAL_MS", "500")
            .env("ESM_LEASE_SCAN_MS", "250")
            .env("ESM_LEASE_DURATION_MS", LEASE_MS.to_string())
            .env("ESM_LEASE_RENEW_MS", "1000")
            .env("ESM_LEASE_MARGIN_MS", "1000")
            .env("ESM_RETRY_BASE_MS", "50")
            .env("ESM_RETRY_CAP_MS", "500")
            .env("ESM_DRAIN_TIMEOUT_MS", "5000")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start esm poll");
        Self { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    async fn sigterm(mut self) {
        let status = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("esm poll did not stop within 20 s of SIGTERM; log {}", self.log.display()))
            .unwrap();
        assert!(exit.success(), "esm poll exited with {exit} after SIGTERM; log {}", self.log.display());
    }

    async fn sigkill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

/// Owner of every partition's lease, counting only live pollers' leases.
async fn owners(h: &Harness, mapping: &str) -> BTreeMap<i32, String> {
    common::live_owners(h, mapping).await
}

/// Leases per live poller, sorted, when all partitions are leased; empty otherwise.
async fn shares(h: &Harness, mapping: &str) -> Vec<usize> {
    let owners = owners(h, mapping).await;
    if owners.len() != PARTITIONS as usize {
        return Vec::new();
    }
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for owner in owners.into_values() {
        *per.entry(owner).or_default() += 1;
    }
    let mut shares: Vec<usize> = per.into_values().collect();
    shares.sort_unstable();
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pollers_share_partitions_exclusively_rebalance_and_survive_sigterm_and_sigkill() {
    let h = Harness::new().await;
    let logs = tempfile::tempdir().unwrap();
    let topic = random_topic("procs");
    create_topic(bootstrap(), &topic, PARTITIONS).await.unwrap();
    let mut req = request("consumer", &topic);
    req.batch_size = Some(BATCH_SIZE);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    // Invocations take a while, so a kill lands mid-batch and overlaps would show.
    h.stub.set_delay(Duration::from_millis(100));

    // Records keep flowing through the whole test, round robin over the partitions.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (topic, producing) = (topic.clone(), producing.clone());
        tokio::spawn(async move {
            let producer = Producer::new(bootstrap()).unwrap();
            let mut produced = BTreeMap::<i32, i64>::new();
            let mut i = 0_i32;
            while producing.load(Ordering::Relaxed) {
                let partition = i % PARTITIONS;
                let record =
                    TestRecord { partition, value: Some(format!("r{i}").into_bytes()), ..TestRecord::default() };
                let offset = producer.send(&topic, &record).await.unwrap();
                produced.insert(partition, offset + 1);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            produced
        })
    };

    let mut pollers: Vec<EsmPoll> = (0..3).map(|i| EsmPoll::start(&h, logs.path(), &format!("p{i}"))).collect();
    assert!(
        wait_for(Duration::from_secs(60), || async { shares(&h, &mapping.uuid).await == [4, 4, 4] }).await.is_some(),
        "three pollers should hold 4 partitions each; shares {:?}",
        shares(&h, &mapping.uuid).await
    );

    // A fourth joins: everyone moves to 3.
    pollers.push(EsmPoll::start(&h, logs.path(), "p3"));
    let joined = wait_for(Duration::from_secs(30), || async { shares(&h, &mapping.uuid).await == [3, 3, 3, 3] }).await;
    assert!(
        joined.is_some(),
        "a fourth poller should get its fair share; shares {:?}",
        shares(&h, &mapping.uuid).await
    );

    // SIGTERM: the partitions are handed over (commit, then release) and retaken quickly.
    let before = owners(&h, &mapping.uuid).await;
    pollers.remove(0).sigterm().await;
    let handed = wait_for(Duration::from_secs(30), || async {
        let shares = shares(&h, &mapping.uuid).await;
        shares.len() == 3 && shares.iter().sum::<usize>() == PARTITIONS as usize
    })
    .await;
    assert!(handed.is_some(), "after SIGTERM the 3 left should hold all; shares {:?}", shares(&h, &mapping.uuid).await);
    let handed = handed.unwrap();
    assert!(handed < Duration::from_millis(LEASE_MS), "a graceful hand-over must not wait for expiry: {handed:?}");

    // SIGKILL mid-batch: the partitions stay blocked until the heartbeat expires, then move.
    let owners_before_kill = owners(&h, &mapping.uuid).await;
    let live_before: BTreeSet<String> = owners_before_kill.values().cloned().collect();
    pollers.remove(0).sigkill().await;
    let killed_at = tokio::time::Instant::now();
    let taken = wait_for(Duration::from_secs(30), || async {
        let shares = shares(&h, &mapping.uuid).await;
        shares.len() == 2 && shares.iter().sum::<usize>() == PARTITIONS as usize
    })
    .await;
    assert!(taken.is_some(), "after SIGKILL the 2 left should hold all; shares {:?}", shares(&h, &mapping.uuid).await);
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_millis(LEASE_MS) + Duration::from_secs(3),
        "takeover should follow the heartbeat's expiry ({LEASE_MS} ms), took {takeover:?}"
    );
    let live_after: BTreeSet<String> = owners(&h, &mapping.uuid).await.into_values().collect();
    let killed: Vec<&String> = live_before.difference(&live_after).collect();
    assert_eq!(killed.len(), 1, "exactly one poller disappeared: before {live_before:?}, after {live_after:?}");
    let killed_partitions: BTreeSet<String> =
        owners_before_kill.iter().filter(|(_, o)| *o == killed[0]).map(|(p, _)| format!("{topic}-{p}")).collect();

    // Stop producing; everything produced gets delivered and committed.
    producing.store(false, Ordering::Relaxed);
    let produced = producer.await.unwrap();
    let all_delivered = || {
        let delivered = h.delivered();
        produced.iter().all(|(p, end)| {
            let seen: BTreeSet<i64> = delivered.get(&format!("{topic}-{p}")).into_iter().flatten().copied().collect();
            (0..*end).all(|o| seen.contains(&o))
        })
    };
    assert!(
        wait_for(common::WAIT, || async { all_delivered() }).await.is_some(),
        "every produced record is delivered; produced {produced:?}"
    );
    for poller in pollers {
        poller.sigterm().await;
    }
    assert_eq!(committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(), produced);

    // No two invocations of one partition ever overlapped: one consumer per partition at a time.
    let invocations = h.stub.invocations();
    let mut spans: BTreeMap<String, Vec<(tokio::time::Instant, tokio::time::Instant, Vec<i64>)>> = BTreeMap::new();
    for inv in &invocations {
        for (key, offsets) in inv.offsets() {
            spans.entry(key).or_default().push((inv.started, inv.finished, offsets));
        }
    }
    let mut duplicates = 0;
    for (key, mut list) in spans {
        list.sort_by_key(|(started, _, _)| *started);
        for w in list.windows(2) {
            assert!(w[0].1 <= w[1].0, "two invocations of {key} overlapped");
        }
        // Order within a tenure: each batch continues the previous one, except where a new
        // holder resumes from the last commit (a rewind), which only the killed poller's
        // partitions may show, by at most its unfinished batches.
        let offsets: Vec<i64> = list.iter().flat_map(|(_, _, o)| o.iter().copied()).collect();
        let mut rewinds = 0;
        for w in offsets.windows(2) {
            if w[1] != w[0] + 1 {
                assert!(w[1] <= w[0], "{key}: gap from {} to {}: a record was skipped", w[0], w[1]);
                rewinds += 1;
            }
        }
        let redelivered = offsets.len() - offsets.iter().collect::<BTreeSet<_>>().len();
        if !killed_partitions.contains(&key) {
            assert_eq!((rewinds, redelivered), (0, 0), "{key} moved only by graceful hand-overs: no duplicates");
        } else {
            assert!(rewinds <= 1, "{key}: {rewinds} rewinds");
            // The in-flight batch, and one delivered whose commit had not landed yet.
            assert!(redelivered <= 2 * BATCH_SIZE as usize, "{key}: {redelivered} records redelivered");
        }
        duplicates += redelivered;
    }
    eprintln!(
        "processes: {} invocations, join rebalance {joined:?}, SIGTERM hand-over {handed:?}, SIGKILL takeover {takeover:?}, {duplicates} records redelivered after the kill, owners before SIGTERM {before:?}",
        invocations.len()
    );
}
