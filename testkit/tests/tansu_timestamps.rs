//! Which tansu engine answers ListOffsets by timestamp the way Kafka does (`AT_TIMESTAMP` starting
//! positions and `esm reset-offsets --to-timestamp` depend on it): the earliest offset whose
//! record timestamp is at or after T, and "none" (-1, librdkafka's `Offset::End`) when every
//! record is older than T.
//!
//! The experiment: one partition; 10 records with CreateTime base + i s (base = an hour ago), one
//! per produce batch; then 5 records stamped by the producer's clock (now); then lookups.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_esm_testkit::Tansu;
use kafka_esm_testkit::kafka::{Producer, TestRecord, create_topic, random_topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `(T, what Kafka answers)` and what the broker answered.
async fn experiment(tansu: &Tansu) -> Vec<(String, Offset, Offset)> {
    let topic = random_topic("ts");
    create_topic(&tansu.bootstrap, &topic, 1).await.unwrap();
    let producer = Producer::new(&tansu.bootstrap).unwrap();
    let base = now_ms() - 3_600_000;
    for i in 0..10 {
        let record = TestRecord { partition: 0, value: Some(format!("old-{i}").into_bytes()), ..TestRecord::default() };
        assert_eq!(producer.send_at(&topic, &record, base + i * 1000).await.unwrap(), i);
    }
    let before_now = now_ms();
    for i in 10..15 {
        let record = TestRecord { partition: 0, value: Some(format!("new-{i}").into_bytes()), ..TestRecord::default() };
        producer.send(&topic, &record).await.unwrap();
    }
    let lookups = [
        ("before every record (base - 10 s)".to_owned(), base - 10_000, Offset::Offset(0)),
        ("exactly record 3's timestamp".to_owned(), base + 3000, Offset::Offset(3)),
        ("between records 3 and 4 (base + 3.5 s)".to_owned(), base + 3500, Offset::Offset(4)),
        ("after the old records, before the new ones".to_owned(), base + 60_000, Offset::Offset(10)),
        ("just before the new records were produced".to_owned(), before_now - 1, Offset::Offset(10)),
        ("an hour after every record".to_owned(), now_ms() + 3_600_000, Offset::End),
    ];
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .set("group.id", random_topic("ts-lookup"))
        .create()
        .unwrap();
    let mut results = Vec::new();
    for (what, t, kafka) in lookups {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(t)).unwrap();
        let answer = tokio::task::block_in_place(|| consumer.offsets_for_times(tpl, Duration::from_secs(10)))
            .map_or(Offset::Invalid, |r| r.find_partition(&topic, 0).map_or(Offset::Invalid, |e| e.offset()));
        results.push((what, kafka, answer));
    }
    results
}

fn print(engine: &str, results: &[(String, Offset, Offset)]) {
    println!("ListOffsets by timestamp on tansu {engine}:");
    for (what, kafka, answer) in results {
        let verdict = if kafka == answer { "as Kafka" } else { "DIFFERS" };
        println!("  {what:<45} Kafka {kafka:?}  tansu {answer:?}  {verdict}");
    }
}

/// The sqlite engine, for tests that need timestamp lookups; run with `--nocapture` to see the
/// table.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_answers_timestamp_lookups_from_record_timestamps() {
    let tansu = Tansu::start_sqlite().expect("tansu with the sqlite engine (scripts/install-deps.sh builds it)");
    let results = experiment(&tansu).await;
    print("sqlite", &results);
    // Every lookup that has a record at or after T.
    for (what, kafka, answer) in results.iter().filter(|(_, kafka, _)| *kafka != Offset::End) {
        assert_eq!(answer, kafka, "{what}");
    }
}

/// The memory engine, for comparison (prints only; it looks at when batches were written):
/// `cargo test -p kafka-esm-testkit --test tansu_timestamps -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "an experiment that prints, for comparison"]
async fn memory_engine_timestamp_lookups_for_comparison() {
    let tansu = Tansu::start().unwrap();
    let results = experiment(&tansu).await;
    print("memory", &results);
    assert_eq!(results.len(), 6);
}
