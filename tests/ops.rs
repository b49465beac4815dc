//! Operating a running mapping on the local stack: `esm status` (exact offsets and lag per
//! partition, stuck partitions with their last error), offset resets while pollers run (replay
//! exactly once more, no commit over the reset) and with none running (a timestamp lands on the
//! first record at or after it), and the EMF lines the poller prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Harness, WAIT, request, settings, wait_for};
use kafka_esm::config::Settings;
use kafka_esm::coordination::connector::{Connector, MappingClient};
use kafka_esm::coordination::leases::LeaseStore;
use kafka_esm::delivery::checkpoint::Checkpoint;
use kafka_esm::model::mapping::EventSourceMapping;
use kafka_esm::ops::emf::EmfWriter;
use kafka_esm::ops::reset::{self, ApplySettings, ResetError, Target};
use kafka_esm::ops::status::{self, MappingStatus};
use kafka_esm_testkit::Tansu;
use kafka_esm_testkit::invoke_stub::{Reply, Rule};
use kafka_esm_testkit::kafka::{Producer, TestRecord, create_topic, random_topic};

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Test settings with lease scans often enough that progress and reset requests move quickly.
fn ops_settings() -> Settings {
    Settings { scan_every: Duration::from_millis(500), ..settings() }
}

async fn status_of(h: &Harness, mapping: &EventSourceMapping, stuck_after: Duration) -> MappingStatus {
    let deps = h.env(settings());
    let offsets = status::offsets(&deps.connector, mapping).await;
    let snapshot = h.leases.snapshot().await.unwrap();
    let progress = h.leases.progress().await.unwrap();
    status::build(mapping, offsets.as_ref().map_err(String::as_str), &snapshot, &progress, now_ms(), stuck_after)
}

async fn committed(h: &Harness, mapping: &EventSourceMapping) -> BTreeMap<i32, Option<i64>> {
    let deps = h.env(settings());
    let client = deps.connector.connect(mapping).await.unwrap();
    let partitions = client.partitions().await.unwrap();
    client.checkpoint().committed(&partitions).await.unwrap()
}

fn apply_settings() -> ApplySettings {
    ApplySettings { timeout: WAIT, lease_duration: settings().lease.duration, poll_every: Duration::from_millis(200) }
}

fn delivered(h: &Harness, topic: &str, partition: i32) -> Vec<i64> {
    h.delivered().get(&format!("{topic}-{partition}")).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_shows_exact_offsets_and_lag_per_partition_while_records_flow() {
    let h = Harness::new().await;
    let topic = random_topic("status");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    let producer = Producer::new(common::bootstrap()).unwrap();
    producer.fill(&topic, 2, 20, "v").await.unwrap();
    // Partition 0 is held up by a slow batch from offset 10 on; partition 1 runs through.
    h.stub.add_rule(Rule::reply(Reply::success()).record(&format!("{topic}-0"), 10).delay(Duration::from_secs(120)));
    let mut req = request("status-fn", &topic);
    req.batch_size = Some(5);
    req.maximum_batching_window_in_seconds = Some(0);
    req.metrics_config = Some(serde_json::json!({ "Metrics": ["EventCount", "KafkaMetrics"] }));
    let mapping = h.create(req).await;
    let poller = h.start_poller(ops_settings());

    let settled = wait_for(WAIT, || async {
        let s = status_of(&h, &mapping, status::STUCK_AFTER).await;
        let p = |n: usize| s.partitions.get(n).cloned();
        p(0).is_some_and(|p| p.committed_offset == Some(10) && p.owner.is_some() && p.last_invoke_ms.is_some())
            && p(1).is_some_and(|p| p.committed_offset == Some(20) && p.last_invoke_ms.is_some())
    })
    .await;
    assert!(settled.is_some(), "{:#?}", status_of(&h, &mapping, status::STUCK_AFTER).await);
    // More records while it runs: the end moves, partition 0's commit does not.
    producer.fill(&topic, 1, 5, "more").await.unwrap();
    let s = status_of(&h, &mapping, status::STUCK_AFTER).await;
    assert_eq!(s.error, None);
    let row = |p: i32| s.partitions.iter().find(|r| r.partition == p).cloned().unwrap();
    let (p0, p1) = (row(0), row(1));
    assert_eq!((p0.committed_offset, p0.end_offset, p0.lag), (Some(10), Some(25), Some(15)));
    assert_eq!((p1.committed_offset, p1.end_offset, p1.lag), (Some(20), Some(20), Some(0)));
    assert!(!p0.stuck && !p1.stuck, "5 minutes have not passed");
    assert!(!p0.owner_expired && p0.owner == p1.owner, "one live poller holds both");
    let table = status::table(std::slice::from_ref(&s), |ms| ms.to_string());
    assert!(table.contains("PARTITION") && table.lines().count() == 4, "{table}");

    // The poller's EMF lines follow the specification and carry the mapping's lag.
    let docs = EmfWriter::new("test").documents(&h.metrics, now_ms());
    assert!(!docs.is_empty());
    for doc in &docs {
        kafka_esm::testing::emf::validate(&doc.to_string()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    }
    let line = docs
        .iter()
        .find(|d| d["EventSourceMappingUUID"] == mapping.uuid.as_str() && d.get("Partition").is_none())
        .unwrap();
    assert!(line["PolledEventCount"].as_u64().unwrap() >= 35, "{line}");
    assert!(docs.iter().any(|d| d["Partition"] == "0"), "KafkaMetrics: one line per partition");
    h.stub.clear_rules();
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_whose_function_always_fails_shows_as_stuck_with_its_last_error() {
    let h = Harness::new().await;
    let topic = random_topic("stuck");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 2, 10, "v").await.unwrap();
    h.stub.add_rule(Rule::reply(Reply::function_error("boom: cannot parse order")).partition(&format!("{topic}-1")));
    let mut req = request("stuck-fn", &topic);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let poller = h.start_poller(ops_settings());
    let stuck_after = Duration::from_secs(2);
    let found = wait_for(WAIT, || async {
        let s = status_of(&h, &mapping, stuck_after).await;
        s.partitions.iter().any(|p| p.partition == 1 && p.stuck)
            && s.partitions.iter().any(|p| p.partition == 0 && p.committed_offset == Some(10))
    })
    .await;
    let s = status_of(&h, &mapping, stuck_after).await;
    assert!(found.is_some(), "{s:#?}");
    let p1 = s.partitions.iter().find(|p| p.partition == 1).unwrap();
    assert_eq!((p1.committed_offset, p1.lag), (Some(0), Some(10)));
    // The function's errorType, never its message or body (they may hold record data, and status
    // is published through the leases table).
    let last_error = p1.last_error.as_deref().unwrap_or_default();
    assert!(last_error.starts_with("function error (Unhandled): ") && !last_error.contains("boom"), "{p1:?}");
    assert!(p1.idle_s.is_some_and(|s| s >= 2));
    let p0 = s.partitions.iter().find(|p| p.partition == 0).unwrap();
    assert!(!p0.stuck && p0.lag == Some(0) && p0.last_error.is_none(), "{p0:?}");
    // With the default threshold (5 minutes) it is not stuck yet.
    let s = status_of(&h, &mapping, status::stuck_after(&mapping)).await;
    assert!(!s.partitions.iter().any(|p| p.stuck));
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_to_earliest_on_a_running_mapping_redelivers_everything_once_more_and_nothing_commits_over_it() {
    let h = Harness::new().await;
    let topic = random_topic("replay");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 2, 10, "v").await.unwrap();
    let mut req = request("replay-fn", &topic);
    req.batch_size = Some(4);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let poller = h.start_poller(ops_settings());
    let all_committed = BTreeMap::from([(0, Some(10)), (1, Some(10))]);
    assert!(wait_for(WAIT, || async { committed(&h, &mapping).await == all_committed }).await.is_some());
    assert_eq!((delivered(&h, &topic, 0), delivered(&h, &topic, 1)), ((0..10).collect(), (0..10).collect()));

    // Every invoke fails from now on, so whatever is committed after the reset can only come
    // from the reset itself or from a poller committing over it.
    h.stub.add_rule(Rule::reply(Reply::function_error("down")));
    let deps = h.env(settings());
    let moves = reset::plan(&deps.connector, &mapping, &Target::Earliest).await.unwrap();
    assert_eq!(
        moves.iter().map(|m| (m.partition, m.current_offset, m.new_offset)).collect::<Vec<_>>(),
        [(0, Some(10), 0), (1, Some(10), 0)]
    );
    let applied = reset::apply(&*h.leases, &deps.connector, &mapping, moves, apply_settings(), now_ms).await.unwrap();
    let owners = common::live_owners(&h, &mapping.uuid).await;
    for m in &applied {
        assert_eq!(m.applied_by.as_ref(), owners.get(&m.partition), "applied by the partition's poller");
    }
    let reset_committed = BTreeMap::from([(0, Some(0)), (1, Some(0))]);
    assert_eq!(committed(&h, &mapping).await, reset_committed);
    // The poller keeps retrying the first batch; nothing moves the commit meanwhile.
    assert!(
        wait_for(Duration::from_secs(10), || async {
            h.stub.invocations().iter().filter(|i| !i.succeeded).count() >= 4
        })
        .await
        .is_some()
    );
    assert_eq!(committed(&h, &mapping).await, reset_committed, "a poller committed over the reset");

    h.stub.clear_rules();
    assert!(wait_for(WAIT, || async { committed(&h, &mapping).await == all_committed }).await.is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let twice: Vec<i64> = (0..10).chain(0..10).collect();
    assert_eq!(delivered(&h, &topic, 0), twice);
    assert_eq!(delivered(&h, &topic, 1), twice);
    poller.stop().await;
}

static SQLITE: OnceLock<Tansu> = OnceLock::new();

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_to_a_timestamp_lands_on_the_first_offset_at_or_after_it_and_beyond_the_end_is_refused() {
    // tansu's memory engine answers every timestamp lookup with 0; its sqlite engine does not.
    let broker = SQLITE.get_or_init(|| Tansu::start_sqlite().expect("tansu with the sqlite engine"));
    let h = Harness::new().await;
    let topic = random_topic("reset-ts");
    create_topic(&broker.bootstrap, &topic, 1).await.unwrap();
    let producer = Producer::new(&broker.bootstrap).unwrap();
    let base = now_ms() - 3_600_000;
    for i in 0..10 {
        let record = TestRecord { partition: 0, value: Some(format!("r-{i}").into_bytes()), ..TestRecord::default() };
        producer.send_at(&topic, &record, base + i * 1000).await.unwrap();
    }
    let mut req = request("ts-fn", &topic);
    req.self_managed_event_source.as_mut().unwrap().endpoints.kafka_bootstrap_servers = vec![broker.bootstrap.clone()];
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let deps = h.env(settings());

    let refused = reset::plan(&deps.connector, &mapping, &Target::Offsets(BTreeMap::from([(0, 11)]))).await;
    assert_eq!(refused, Err(ResetError::BeyondEnd { partition: 0, offset: 11, end: 10 }));

    // Between records 3 and 4: lands on 4. No poller runs: the command commits itself.
    let moves = reset::plan(&deps.connector, &mapping, &Target::Timestamp(base + 3500)).await.unwrap();
    assert_eq!(moves.iter().map(|m| (m.current_offset, m.new_offset)).collect::<Vec<_>>(), [(None, 4)]);
    let applied = reset::apply(&*h.leases, &deps.connector, &mapping, moves, apply_settings(), now_ms).await.unwrap();
    assert_eq!(applied[0].applied_by.as_deref(), Some("esm"));
    assert_eq!(committed(&h, &mapping).await, BTreeMap::from([(0, Some(4))]));
    // A poller started afterwards begins there (and does not apply the request again).
    let done = h.poll_until(ops_settings(), |h| delivered(h, &topic, 0).len() >= 6).await;
    assert!(done);
    assert_eq!(delivered(&h, &topic, 0), (4..10).collect::<Vec<_>>());
}

/// `esm` with the harness's tables and endpoints.
fn esm(h: &Harness, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_esm"));
    command
        .args(args)
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
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(h: &Harness, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(WAIT, esm(h, args).output()).await.expect("esm finishes").expect("run esm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_esm_commands_show_status_reset_a_live_poll_process_and_it_prints_emf() {
    let h = Harness::new().await;
    let topic = random_topic("cli-ops");
    create_topic(common::bootstrap(), &topic, 1).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 1, 6, "v").await.unwrap();
    let mut req = request("cli-ops-fn", &topic);
    req.maximum_batching_window_in_seconds = Some(0);
    req.batch_size = Some(2);
    let mapping = h.create(req).await;
    let uuid = mapping.uuid.as_str();
    let poll = esm(&h, &["poll", "--duration", "40", "--metrics-format", "emf", "--progress-interval", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let committed_at = |o: i64| {
        let h = &h;
        let mapping = &mapping;
        move || async move { committed(h, mapping).await == BTreeMap::from([(0, Some(o))]) }
    };
    assert!(wait_for(WAIT, committed_at(6)).await.is_some());

    let out = run(&h, &["status", "--uuid", uuid, "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p0 = &json["EventSourceMappings"][0]["Partitions"][0];
    assert_eq!(
        (&p0["CommittedOffset"], &p0["EndOffset"], &p0["Lag"], &p0["Stuck"]),
        (&6.into(), &6.into(), &0.into(), &false.into()),
        "{json}"
    );
    assert!(p0["Owner"].as_str().is_some_and(|o| o.starts_with("poller-")), "{json}");
    let table = run(&h, &["status", "--uuid", uuid]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("COMMITTED"));

    let beyond = run(&h, &["reset-offsets", "--uuid", uuid, "--to-offset", "0=7"]).await;
    assert!(!beyond.status.success());
    assert!(
        String::from_utf8_lossy(&beyond.stderr).contains("beyond the log end 6"),
        "{}",
        String::from_utf8_lossy(&beyond.stderr)
    );
    let dry = run(&h, &["reset-offsets", "--uuid", uuid, "--to-offset", "0=2", "--dry-run"]).await;
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success() && dry_out.contains("NEW-OFFSET") && dry_out.contains("(dry run)"), "{dry_out}");
    assert_eq!(committed(&h, &mapping).await, BTreeMap::from([(0, Some(6))]), "a dry run changes nothing");

    let reset = run(&h, &["reset-offsets", "--uuid", uuid, "--to-offset", "0=2", "--output", "json"]).await;
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    let reset: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    assert_eq!(
        (&reset["Partitions"][0]["CurrentOffset"], &reset["Partitions"][0]["NewOffset"]),
        (&6.into(), &2.into())
    );
    assert!(reset["Partitions"][0]["AppliedBy"].as_str().is_some_and(|o| o.starts_with("poller-")), "{reset}");
    assert!(wait_for(WAIT, || async { delivered(&h, &topic, 0).len() >= 10 }).await.is_some());
    assert_eq!(delivered(&h, &topic, 0), [0, 1, 2, 3, 4, 5, 2, 3, 4, 5]);

    let status = std::process::Command::new("kill").args(["-TERM", &poll.id().unwrap().to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(WAIT, poll.wait_with_output()).await.unwrap().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        kafka_esm::testing::emf::validate(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!((&last["EventSourceMappingUUID"], &last["OffsetLag"]), (&uuid.into(), &0.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_applied_just_before_a_hand_over_is_not_applied_again_by_the_next_holder() {
    let h = Harness::new().await;
    let topic = random_topic("reset-handover");
    create_topic(common::bootstrap(), &topic, 1).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 1, 10, "v").await.unwrap();
    let mut req = request("handover-fn", &topic);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    // Lease scans (which also acknowledge applied resets) every 5 s: the hand-over below comes
    // between the poller applying the reset and its next scan.
    let first = h.start_poller(Settings { scan_every: Duration::from_secs(5), ..settings() });
    let done = BTreeMap::from([(0, Some(10))]);
    assert!(wait_for(WAIT, || async { committed(&h, &mapping).await == done }).await.is_some());

    let apply = {
        let (leases, connector, mapping) = (h.leases.clone(), h.env(settings()), mapping.clone());
        tokio::spawn(async move {
            let moves = reset::plan(&connector.connector, &mapping, &Target::Earliest).await.unwrap();
            reset::apply(&*leases, &connector.connector, &mapping, moves, apply_settings(), now_ms).await
        })
    };
    assert!(wait_for(WAIT, || async { delivered(&h, &topic, 0).len() > 10 }).await.is_some(), "replay started");
    first.stop().await;
    let second = h.start_poller(ops_settings());
    let applied = tokio::time::timeout(WAIT, apply).await.unwrap().unwrap().unwrap();
    assert_eq!(applied.len(), 1);
    assert!(wait_for(WAIT, || async { committed(&h, &mapping).await == done }).await.is_some());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let twice: Vec<i64> = (0..10).chain(0..10).collect();
    assert_eq!(delivered(&h, &topic, 0), twice, "replayed exactly once");
    second.stop().await;
}
