//! Records' fate on the local stack: tansu (Kafka), dynalite, the Invoke stub and moto (SQS, SNS,
//! S3). Partial batch responses redeliver exactly the reported offset onward; a retry limit gives
//! up after exactly 1 + N attempts and writes the AWS failure record to each destination kind,
//! then the partition moves on; old records are given up by age; bisect narrows a poison record
//! to a batch of one; a destination that is down holds the commit; filters commit what they drop
//! and never send it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Harness, WAIT, bootstrap, request, settings, wait_for};
use kafka_esm::api::CreateRequest;
use kafka_esm::aws::lambda::LambdaInvoker;
use kafka_esm::coordination::consumer::Deps;
use kafka_esm::kafka::KafkaConnector;
use kafka_esm::kafka::cluster::ClusterResolver;
use kafka_esm::model::mapping::EventSourceMapping;
use kafka_esm::model::store::Loaded;
use kafka_esm_testkit::kafka::{Producer, TestRecord, committed_offsets_out_of_process, create_topic, random_topic};
use kafka_esm_testkit::{Moto, Reply, Rule, Tansu, sdk_config};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "123456789012";

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().expect("start moto_server (scripts/install-deps.sh installs it)"))
}

/// A poller whose SQS, SNS and S3 clients talk to moto.
struct Poller {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<kafka_esm::coordination::supervisor::Exit>,
}

impl Poller {
    async fn start(h: &Harness) -> Self {
        let settings = settings();
        let lambda = sdk_config(&h.stub.endpoint).await;
        let aws = moto().sdk_config().await;
        let deps = Arc::new(Deps {
            connector: KafkaConnector::new(ClusterResolver::new(&lambda), settings.kafka).with_destination_sdk(&aws),
            invoker: Arc::new(LambdaInvoker::new(&lambda).unwrap()),
            metrics: h.metrics.clone(),
            settings,
        });
        let stop = CancellationToken::new();
        let task = h.spawn_poller_with(deps, &stop);
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("poller stops").expect("poller task");
    }
}

fn committed(mapping: &EventSourceMapping, topic: &str) -> BTreeMap<i32, i64> {
    committed_offsets_out_of_process(bootstrap(), &mapping.uuid, topic).unwrap_or_default()
}

async fn wait_committed(mapping: &EventSourceMapping, topic: &str, partition: i32, offset: i64) -> bool {
    wait_for(WAIT, || {
        let (uuid, topic) = (mapping.clone(), topic.to_owned());
        async move {
            tokio::task::spawn_blocking(move || committed(&uuid, &topic).get(&partition) == Some(&offset))
                .await
                .unwrap()
        }
    })
    .await
    .is_some()
}

/// Invocations (successful or not) that held `offset` of `key`.
fn attempts_of(h: &Harness, key: &str, offset: i64) -> usize {
    h.stub.invocations().iter().filter(|i| i.offsets().iter().any(|(k, o)| k == key && o.contains(&offset))).count()
}

async fn produce(topic: &str, values: &[&str]) {
    let producer = Producer::new(bootstrap()).unwrap();
    for (i, value) in values.iter().enumerate() {
        let record = TestRecord {
            partition: 0,
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        };
        producer.send(topic, &record).await.unwrap();
    }
}

/// Every message of `topic` partition 0 on `servers`, as (key, value), once `n` arrived.
async fn read_topic(servers: &str, topic: &str, n: usize) -> Vec<(Option<Vec<u8>>, Value)> {
    let (servers, topic) = (servers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning).unwrap();
        consumer.assign(&list).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        let mut out = Vec::new();
        while out.len() < n && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
                ));
            }
        }
        out
    })
    .await
    .unwrap()
}

/// The failure record of the poison record at offset 1, after 1 + 2 attempts, field by field.
fn check_failure_record(
    record: &Value,
    mapping: &EventSourceMapping,
    topic: &str,
    offsets: (i64, i64),
    batch_size: u64,
) {
    let request = &record["requestContext"];
    assert!(uuid::Uuid::parse_str(request["requestId"].as_str().unwrap()).is_ok(), "{record}");
    assert_eq!(request["functionArn"], mapping.function_arn.as_str());
    assert_eq!(request["condition"], "RetryAttemptsExhausted");
    assert_eq!(request["approximateInvokeCount"], 3);
    assert_eq!(
        record["responseContext"],
        json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
    );
    assert_eq!(record["version"], "1.0");
    let ts = record["timestamp"].as_str().unwrap();
    assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    let info = &record["KafkaBatchInfo"];
    assert_eq!(info["batchSize"], batch_size);
    assert_eq!(info["bootstrapServers"], bootstrap());
    assert!(info.get("eventSourceArn").is_none(), "self-managed: no eventSourceArn");
    assert!(info["payloadSize"].as_u64().unwrap() > 100);
    let records = info["recordsInfo"].as_object().unwrap();
    assert_eq!(records.len(), 1);
    let part = &records[&format!("{topic}-0")];
    assert_eq!(part["firstRecordOffset"], offsets.0.to_string());
    assert_eq!(part["lastRecordOffset"], offsets.1.to_string());
    for field in ["firstRecordTimestamp", "lastRecordTimestamp"] {
        assert!(part[field].as_str().unwrap().ends_with('Z'), "{field}");
    }
}

/// A mapping of a fresh topic holding `ok-0`, `poison-1`, `ok-2`, one record per batch, two
/// retries, giving up into `destination`; a function failing on "poison". Returns it once the
/// partition moved past everything (committed 3), checking exactly 1 + 2 attempts.
async fn give_up_into(h: &Harness, destination: &str) -> (EventSourceMapping, String) {
    let topic = random_topic("fate");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    produce(&topic, &["ok-0", "poison-1", "ok-2"]).await;
    h.stub.add_rule(Rule::reply(Reply::function_error("poisoned")).value_contains("poison"));
    let mapping = h
        .create(CreateRequest {
            batch_size: Some(1),
            maximum_retry_attempts: Some(2),
            destination_config: Some(json!({"OnFailure": {"Destination": destination}})),
            ..request("fate", &topic)
        })
        .await;
    let poller = Poller::start(h).await;
    let moved_on = wait_committed(&mapping, &topic, 0, 3).await;
    poller.stop().await;
    assert!(moved_on, "committed {:?}", committed(&mapping, &topic));
    let key = format!("{topic}-0");
    assert_eq!(attempts_of(h, &key, 1), 3, "exactly 1 + MaximumRetryAttempts attempts");
    assert_eq!(h.delivered().get(&key), Some(&vec![0, 2]));
    (mapping, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_batch_response_redelivers_exactly_the_reported_offset_onward() {
    let h = Harness::new().await;
    let topic = random_topic("partial");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    produce(&topic, &["a", "b", "c", "d", "e", "f"]).await;
    let key = format!("{topic}-0");
    h.stub.add_rule(Rule::reply(Reply::batch_item_failures(&[(&key, 4), (&key, 3)])).record(&key, 3).times(1));
    let mapping = h
        .create(CreateRequest {
            function_response_types: Some(vec!["ReportBatchItemFailures".into()]),
            maximum_batching_window_in_seconds: Some(1),
            ..request("partial", &topic)
        })
        .await;
    let poller = Poller::start(&h).await;
    let done = wait_committed(&mapping, &topic, 0, 6).await;
    poller.stop().await;
    assert!(done, "committed {:?}", committed(&mapping, &topic));
    let invocations: Vec<Vec<i64>> =
        h.stub.invocations().iter().flat_map(|i| i.offsets().into_iter().map(|(_, o)| o)).collect();
    let answered = invocations.iter().position(|o| o.contains(&3)).unwrap();
    // The next invocation starts exactly at the lowest reported offset.
    assert_eq!(invocations[answered + 1].first(), Some(&3), "{invocations:?}");
    let all: Vec<i64> = invocations.concat();
    for offset in 0..3 {
        assert_eq!(all.iter().filter(|&&o| o == offset).count(), 1, "offset {offset} sent once: {invocations:?}");
    }
    for offset in 3..6 {
        assert!(all.iter().filter(|&&o| o == offset).count() >= 1, "offset {offset}: {invocations:?}");
    }
    assert_eq!(all.iter().filter(|&&o| o == 3).count(), 2, "{invocations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_limit_then_sqs_failure_record_then_moves_on() {
    let h = Harness::new().await;
    let sqs = kafka_esm::aws::sqs_client(&moto().sdk_config().await);
    let name = format!("dlq-{}", uuid::Uuid::new_v4().simple());
    let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let (mapping, topic) = give_up_into(&h, &format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")).await;
    let messages = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<Value> =
        messages.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    check_failure_record(&bodies[0], &mapping, &topic, (1, 1), 1);
    assert!(bodies[0].get("payload").is_none(), "SQS gets no payload");
    // LastProcessingResult says what happened after a batch was resolved.
    let shown = match h.mapping(&mapping.uuid).await {
        Some(Loaded::Valid(m)) => m.last_processing_result.unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    assert!(
        shown == "OK"
            || shown
                == "PROBLEM: records given up (RetryAttemptsExhausted) and sent to the on-failure destination: offsets 1 to 1",
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_limit_then_sns_failure_record() {
    let h = Harness::new().await;
    let aws = moto().sdk_config().await;
    let (sns, sqs) = (kafka_esm::aws::sns_client(&aws), kafka_esm::aws::sqs_client(&aws));
    let name = format!("dlt-{}", uuid::Uuid::new_v4().simple());
    let topic_arn = sns.create_topic().name(&name).send().await.unwrap().topic_arn.unwrap();
    let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let queue_arn = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    let (mapping, topic) = give_up_into(&h, &topic_arn).await;
    let messages = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<Value> =
        messages.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    check_failure_record(&bodies[0], &mapping, &topic, (1, 1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_limit_then_s3_failure_record_with_the_payload() {
    let h = Harness::new().await;
    let s3 = kafka_esm::aws::s3_client(&moto().sdk_config().await);
    let bucket = format!("dlb-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let (mapping, topic) = give_up_into(&h, &format!("arn:aws:s3:::{bucket}")).await;
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("aws/lambda/{}/{topic}-0/", mapping.uuid)), "{}", keys[0]);
    let object = s3.get_object().bucket(&bucket).key(&keys[0]).send().await.unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    let record: Value = serde_json::from_slice(&body).unwrap();
    check_failure_record(&record, &mapping, &topic, (1, 1), 1);
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap()).unwrap();
    let records = payload["records"][format!("{topic}-0")].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["offset"], 1);
    assert_eq!(records[0]["value"], STANDARD.encode("poison-1"));
    assert_eq!(payload["eventSource"], "SelfManagedKafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_limit_then_kafka_failure_records_keyed_by_record_on_this_and_another_cluster() {
    let h = Harness::new().await;
    let dlt = random_topic("dlt");
    create_topic(bootstrap(), &dlt, 1).await.unwrap();
    let (mapping, topic) = give_up_into(&h, &format!("kafka://{dlt}")).await;
    let messages = read_topic(bootstrap(), &dlt, 1).await;
    assert_eq!(messages.len(), 1);
    let (key, record) = &messages[0];
    assert_eq!(key.as_deref(), Some(&b"key-1"[..]));
    check_failure_record(record, &mapping, &topic, (1, 1), 1);
    assert_eq!(record["payload"]["records"][format!("{topic}-0")][0]["value"], STANDARD.encode("poison-1"));

    // kafka://HOST:PORT/TOPIC: another cluster.
    let other = Tansu::start().expect("start a second tansu");
    let h = Harness::new().await;
    create_topic(&other.bootstrap, "dlt", 1).await.unwrap();
    let (mapping, topic) = give_up_into(&h, &format!("kafka://{}/dlt", other.bootstrap)).await;
    let messages = read_topic(&other.bootstrap, "dlt", 1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.as_deref(), Some(&b"key-1"[..]));
    check_failure_record(&messages[0].1, &mapping, &topic, (1, 1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_older_than_the_maximum_age_are_given_up_without_an_invoke() {
    let h = Harness::new().await;
    let topic = random_topic("age");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    let now = kafka_esm_testkit::kafka::epoch_s() * 1000.0;
    #[allow(clippy::cast_possible_truncation)]
    let (old, fresh) = ((now - 7_200_000.0) as i64, now as i64);
    for (i, ts) in [old, old, fresh].into_iter().enumerate() {
        let record = TestRecord { partition: 0, key: None, value: Some(format!("r{i}").into_bytes()), headers: vec![] };
        producer.send_at(&topic, &record, ts).await.unwrap();
    }
    let dlt = random_topic("age-dlt");
    create_topic(bootstrap(), &dlt, 1).await.unwrap();
    let mapping = h
        .create(CreateRequest {
            maximum_record_age_in_seconds: Some(60),
            destination_config: Some(json!({"OnFailure": {"Destination": format!("kafka://{dlt}")}})),
            ..request("age", &topic)
        })
        .await;
    let poller = Poller::start(&h).await;
    let done = wait_committed(&mapping, &topic, 0, 3).await;
    poller.stop().await;
    assert!(done);
    let key = format!("{topic}-0");
    assert_eq!(attempts_of(&h, &key, 0) + attempts_of(&h, &key, 1), 0, "old records are never sent");
    assert_eq!(h.delivered().get(&key), Some(&vec![2]));
    let messages = read_topic(bootstrap(), &dlt, 2).await;
    assert_eq!(messages.len(), 2);
    for (i, (_, record)) in messages.iter().enumerate() {
        assert_eq!(record["requestContext"]["condition"], "RecordAgeExceeded");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
        assert_eq!(record["responseContext"], Value::Null);
        assert_eq!(record["KafkaBatchInfo"]["recordsInfo"][&key]["firstRecordOffset"], i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bisect_narrows_a_poison_record_down_to_a_batch_of_one() {
    let h = Harness::new().await;
    let topic = random_topic("bisect");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    produce(&topic, &["v0", "v1", "v2", "v3", "v4", "poison-5", "v6", "v7"]).await;
    let dlt = random_topic("bisect-dlt");
    create_topic(bootstrap(), &dlt, 1).await.unwrap();
    h.stub.add_rule(Rule::reply(Reply::function_error("poisoned")).value_contains("poison"));
    let mapping = h
        .create(CreateRequest {
            batch_size: Some(8),
            maximum_batching_window_in_seconds: Some(1),
            bisect_batch_on_function_error: Some(true),
            maximum_retry_attempts: Some(0),
            destination_config: Some(json!({"OnFailure": {"Destination": format!("kafka://{dlt}")}})),
            ..request("bisect", &topic)
        })
        .await;
    let poller = Poller::start(&h).await;
    let done = wait_committed(&mapping, &topic, 0, 8).await;
    poller.stop().await;
    assert!(done);
    let key = format!("{topic}-0");
    let with_poison: Vec<usize> = h
        .stub
        .invocations()
        .iter()
        .filter(|i| i.offsets().iter().any(|(k, o)| *k == key && o.contains(&5)))
        .map(kafka_esm_testkit::invoke_stub::Invocation::record_count)
        .collect();
    // Each failure halves the batch holding it, down to the record alone (retries: 0).
    assert!(with_poison.windows(2).all(|w| w[1] < w[0]), "{with_poison:?}");
    assert_eq!(with_poison.last(), Some(&1), "{with_poison:?}");
    let delivered = h.delivered();
    assert_eq!(delivered[&key], vec![0, 1, 2, 3, 4, 6, 7]);
    let messages = read_topic(bootstrap(), &dlt, 1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.as_deref(), Some(&b"key-5"[..]));
    assert_eq!(messages[0].1["KafkaBatchInfo"]["recordsInfo"][&key]["firstRecordOffset"], "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn destination_down_holds_the_commit_until_the_failure_record_is_stored() {
    let h = Harness::new().await;
    let sqs = kafka_esm::aws::sqs_client(&moto().sdk_config().await);
    let name = format!("later-{}", uuid::Uuid::new_v4().simple());
    let topic = random_topic("down");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    produce(&topic, &["ok-0", "poison-1", "ok-2"]).await;
    h.stub.add_rule(Rule::reply(Reply::function_error("poisoned")).value_contains("poison"));
    let mapping = h
        .create(CreateRequest {
            batch_size: Some(1),
            maximum_retry_attempts: Some(0),
            // The queue does not exist yet: the destination cannot be written.
            destination_config: Some(
                json!({"OnFailure": {"Destination": format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")}}),
            ),
            ..request("down", &topic)
        })
        .await;
    let poller = Poller::start(&h).await;
    let key = format!("{topic}-0");
    assert!(wait_committed(&mapping, &topic, 0, 1).await, "the record before the poison one is committed");
    wait_for(WAIT, || async { attempts_of(&h, &key, 1) >= 1 }).await.unwrap();
    // Several destination retries later, still nothing past the given-up record.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (m, t) = (mapping.clone(), topic.clone());
    assert_eq!(tokio::task::spawn_blocking(move || committed(&m, &t)).await.unwrap().get(&0), Some(&1));
    assert_eq!(h.delivered().get(&key), Some(&vec![0]), "nothing after the given-up record was sent");
    let shown = match h.mapping(&mapping.uuid).await {
        Some(Loaded::Valid(m)) => m.last_processing_result.unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    assert!(shown.starts_with("PROBLEM: on-failure destination"), "{shown}");

    let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let done = wait_committed(&mapping, &topic, 0, 3).await;
    poller.stop().await;
    assert!(done);
    let messages = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(messages.messages().len(), 1);
    assert_eq!(attempts_of(&h, &key, 1), 1, "MaximumRetryAttempts 0: one attempt");
    assert_eq!(h.delivered().get(&key), Some(&vec![0, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_commit_what_they_drop_and_never_send_it() {
    let h = Harness::new().await;
    let topic = random_topic("filter");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let values: Vec<String> =
        (0..20)
            .map(|i| {
                if i % 5 == 0 {
                    format!(r#"{{"kind":"keep","n":{i}}}"#)
                } else {
                    format!(r#"{{"kind":"drop","n":{i}}}"#)
                }
            })
            .collect();
    let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
    // Not JSON: a plain string, which `value: [{"prefix": …}]` can match.
    values.push("plain text keep");
    values.push("plain text drop");
    produce(&topic, &values).await;
    let mapping = h
        .create(CreateRequest {
            filter_criteria: Some(json!({"Filters": [
                {"Pattern": r#"{"value":{"kind":["keep"]}}"#},
                {"Pattern": r#"{"value":[{"prefix":"plain text k"}]}"#}
            ]})),
            ..request("filter", &topic)
        })
        .await;
    let poller = Poller::start(&h).await;
    let done = wait_committed(&mapping, &topic, 0, 22).await;
    poller.stop().await;
    assert!(done, "committed {:?}", committed(&mapping, &topic));
    let key = format!("{topic}-0");
    assert_eq!(h.delivered().get(&key), Some(&vec![0, 5, 10, 15, 20]));
    let sent: usize = h.stub.invocations().iter().map(kafka_esm_testkit::invoke_stub::Invocation::record_count).sum();
    assert_eq!(sent, 5, "filtered-out records are never sent");
    match h.mapping(&mapping.uuid).await {
        Some(Loaded::Valid(m)) => assert_eq!(m.last_processing_result.as_deref(), Some("OK")),
        other => panic!("{other:?}"),
    }
}

/// `ParallelizationFactor` on the real stack: batches of one partition run at once, and no key is
/// ever in two of them at once or out of order, through a function error and its retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_ordered_batches_run_concurrently_and_each_key_stays_in_order() {
    let h = Harness::new().await;
    let topic = random_topic("keyed");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    for i in 0..60 {
        let record = TestRecord {
            partition: 0,
            key: Some(format!("k{}", i % 6).into_bytes()),
            value: Some(format!("{i}").into_bytes()),
            headers: vec![],
        };
        producer.send(&topic, &record).await.unwrap();
    }
    let partition = format!("{topic}-0");
    h.stub.add_rule(Rule::reply(Reply::function_error("boom")).record(&partition, 7).times(1));
    h.stub.set_delay(Duration::from_millis(300));
    let mapping = h
        .create(CreateRequest {
            parallelization_factor: Some(3),
            batch_size: Some(4),
            maximum_batching_window_in_seconds: Some(0),
            ..request("keyed", &topic)
        })
        .await;
    let poller = Poller::start(&h).await;
    let done = wait_committed(&mapping, &topic, 0, 60).await;
    poller.stop().await;
    assert!(done, "committed {:?}", committed(&mapping, &topic));

    // (key, offsets) of every invocation, in the order they started.
    let mut invocations = h.stub.invocations();
    invocations.sort_by_key(|i| i.started);
    let keyed: Vec<(Vec<(String, i64)>, &kafka_esm_testkit::invoke_stub::Invocation)> = invocations
        .iter()
        .map(|i| {
            let records = i.event["records"][&partition].as_array().cloned().unwrap_or_default();
            let keys = records
                .iter()
                .map(|r| {
                    let key = STANDARD.decode(r["key"].as_str().unwrap()).unwrap();
                    (String::from_utf8(key).unwrap(), r["offset"].as_i64().unwrap())
                })
                .collect();
            (keys, i)
        })
        .collect();
    assert!(h.stub.max_in_flight_of_one_partition() > 1, "batches of the partition never ran at once");
    // No key in two invocations that overlapped in time.
    for (a, (keys_a, inv_a)) in keyed.iter().enumerate() {
        for (keys_b, inv_b) in &keyed[a + 1..] {
            let overlap = inv_b.started < inv_a.finished && inv_a.started < inv_b.finished;
            let shared = keys_a.iter().any(|(k, _)| keys_b.iter().any(|(l, _)| k == l));
            assert!(!(overlap && shared), "a key in two batches at once: {keys_a:?} and {keys_b:?}");
        }
    }
    // Each key's records reach the function in offset order among the successful invocations,
    // and every record succeeded once.
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (keys, inv) in &keyed {
        if inv.succeeded {
            for (k, o) in keys {
                seen.entry(k.clone()).or_default().push(*o);
            }
        }
    }
    for (k, offsets) in &seen {
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "key {k} out of order: {offsets:?}");
    }
    let mut all: Vec<i64> = seen.into_values().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..60).collect::<Vec<_>>());
    assert_eq!(attempts_of(&h, &partition, 7), 2, "the failed batch was sent again once");
}
