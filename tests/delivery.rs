//! The spine against real services: tansu (Kafka), dynalite (DynamoDB) and the Invoke stub.
//! Every record is delivered once and in order, the payload is the contract's, batch limits
//! hold, offsets are committed under the group and visible to another client process, a failing
//! function blocks only its partition, and a restart resumes from the committed offset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::kafka::KafkaEvent;
use common::{Harness, bootstrap, request, settings};
use kafka_esm::aws::lambda::LambdaInvoker;
use kafka_esm::delivery::invoke::{InvokeError, InvokeOutcome, Invoker};
use kafka_esm::model::store::Loaded;
use kafka_esm_testkit::StubBehaviour;
use kafka_esm_testkit::kafka::{Producer, TestRecord, committed_offsets_out_of_process, create_topic, random_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_once_in_order_within_batch_limits_and_committed() {
    let h = Harness::new().await;
    let topic = random_topic("spine");
    create_topic(bootstrap(), &topic, 3).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 3, 120, "v").await.unwrap();

    let mut req = request("consumer", &topic);
    req.batch_size = Some(25);
    req.maximum_batching_window_in_seconds = Some(1);
    let mapping = h.create(req).await;
    let total = 360;
    assert!(
        h.poll_until(settings(), |h| h.delivered_count() >= total).await,
        "delivered {} of {total}",
        h.delivered_count()
    );

    let delivered = h.delivered();
    for p in 0..3 {
        assert_eq!(
            delivered[&format!("{topic}-{p}")],
            (0..120).collect::<Vec<i64>>(),
            "partition {p}: every record once, in order"
        );
    }
    for inv in h.stub.invocations() {
        let n: usize = inv.offsets().iter().map(|(_, o)| o.len()).sum();
        assert!((1..=25).contains(&n), "batch of {n} records breaks BatchSize 25");
    }
    // Offsets under the mapping's group (its UUID), read by another process and client.
    let committed = committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap();
    assert_eq!(committed, BTreeMap::from([(0, 120), (1, 120), (2, 120)]));
    // The poller moved the new mapping from Creating to Enabled.
    match h.mapping(&mapping.uuid).await {
        Some(Loaded::Valid(m)) => assert_eq!(m.state.as_str(), "Enabled"),
        other => panic!("unexpected item {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payload_is_the_aws_kafka_event_and_deserialises_into_kafka_event() {
    let h = Harness::new().await;
    let topic = random_topic("payload");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    let first = TestRecord {
        partition: 0,
        key: Some(b"key".to_vec()),
        value: Some(b"Hello".to_vec()),
        headers: vec![
            ("traceId".into(), Some("ab\u{eb}".as_bytes().to_vec())),
            ("dup".into(), Some(vec![1])),
            ("dup".into(), Some(vec![0xff, 0x80])),
        ],
    };
    let tombstone = TestRecord { partition: 0, key: Some(b"gone".to_vec()), value: None, headers: vec![] };
    let keyless = TestRecord { partition: 0, key: None, value: Some(b"{}".to_vec()), headers: vec![] };
    for r in [&first, &tombstone, &keyless] {
        producer.send(&topic, r).await.unwrap();
    }
    let mapping = h.create(request("consumer", &topic)).await;
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 3).await);

    let inv = &h.stub.invocations()[0];
    let event = &inv.event;
    assert_eq!(event["eventSource"], "SelfManagedKafka");
    assert!(event.get("eventSourceArn").is_none(), "self-managed events carry no eventSourceArn");
    assert_eq!(event["bootstrapServers"], bootstrap());
    let records = event["records"][format!("{topic}-0")].as_array().unwrap();
    assert_eq!(records.len(), 3);
    let r0 = &records[0];
    assert_eq!(r0["topic"], topic.as_str());
    assert_eq!(r0["partition"], 0);
    assert_eq!(r0["offset"], 0);
    assert_eq!(r0["timestampType"], "CREATE_TIME");
    assert!(r0["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(r0["key"], "a2V5");
    assert_eq!(r0["value"], "SGVsbG8=");
    assert_eq!(r0["headers"], serde_json::json!([{"traceId": [97, 98, -61, -85]}, {"dup": [1]}, {"dup": [-1, -128]}]));
    assert!(records[1].get("value").is_none(), "a null value is left out");
    assert_eq!(records[1]["key"], "Z29uZQ==");
    assert!(records[2].get("key").is_none(), "a null key is left out");
    // Field order matches AWS's (checked on the raw body: `Value` sorts its keys).
    let text = &inv.raw[inv.raw.find("{\"topic\"").unwrap()..];
    assert!(
        inv.raw.starts_with("{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":"),
        "envelope order {}",
        inv.raw
    );
    let order = [
        "\"topic\"",
        "\"partition\"",
        "\"offset\"",
        "\"timestamp\"",
        "\"timestampType\"",
        "\"key\"",
        "\"value\"",
        "\"headers\"",
    ];
    let positions: Vec<usize> = order.iter().map(|f| text.find(f).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "field order {text}");

    // What a Rust function sees.
    let parsed: KafkaEvent = serde_json::from_value(event.clone()).unwrap();
    assert_eq!(parsed.event_source.as_deref(), Some("SelfManagedKafka"));
    assert_eq!(parsed.bootstrap_servers.as_deref(), Some(bootstrap()));
    let recs = &parsed.records[&format!("{topic}-0")];
    assert_eq!(recs[0].offset, 0);
    assert_eq!(recs[0].headers[0]["traceId"], vec![97i8, 98, -61, -85]);
    assert_eq!(recs[1].value, None);
    let _ = mapping;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_function_blocks_only_its_partition_and_nothing_past_the_failure_is_committed() {
    let h = Harness::new().await;
    let topic = random_topic("poison");
    create_topic(bootstrap(), &topic, 3).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    for i in 0..30 {
        for p in 0..3 {
            let value = if p == 1 && i == 10 { "poison".to_owned() } else { format!("ok-{p}-{i}") };
            producer
                .send(&topic, &TestRecord { partition: p, value: Some(value.into_bytes()), ..TestRecord::default() })
                .await
                .unwrap();
        }
    }
    h.stub.set_behaviour("consumer", StubBehaviour::FailOnValue("poison".into()));
    let mut req = request("consumer", &topic);
    req.batch_size = Some(5);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let healthy = |h: &Harness| {
        let d = h.delivered();
        let fails = h.stub.invocations().iter().filter(|i| !i.succeeded).count();
        d.get(&format!("{topic}-0")).map_or(0, Vec::len) == 30
            && d.get(&format!("{topic}-2")).map_or(0, Vec::len) == 30
            && fails >= 3
    };
    assert!(h.poll_until(settings(), healthy).await, "other partitions must finish while partition 1 retries");

    let delivered = h.delivered();
    let p1 = &delivered[&format!("{topic}-1")];
    assert_eq!(*p1, (0..10).collect::<Vec<i64>>(), "partition 1 stops before the failing batch");
    // The failing batch was retried, unchanged, starting at the poison record's batch.
    let failed: Vec<_> = h.stub.invocations().into_iter().filter(|i| !i.succeeded).collect();
    assert!(failed.len() >= 3);
    assert!(failed.iter().all(|f| f.offsets() == failed[0].offsets()), "retries resend the same batch");
    let committed = committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap();
    assert_eq!(committed, BTreeMap::from([(0, 30), (1, 10), (2, 30)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_resumes_from_the_committed_offset() {
    let h = Harness::new().await;
    let topic = random_topic("restart");
    create_topic(bootstrap(), &topic, 2).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 2, 50, "first").await.unwrap();
    let mapping = h.create(request("consumer", &topic)).await;
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 100).await);
    let first_run = h.stub.invocations().len();

    producer.fill(&topic, 2, 20, "second").await.unwrap();
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 140).await);
    let delivered = h.delivered();
    for p in 0..2 {
        assert_eq!(
            delivered[&format!("{topic}-{p}")],
            (0..70).collect::<Vec<i64>>(),
            "no record twice after a clean restart"
        );
    }
    let second_run: Vec<_> = h.stub.invocations().into_iter().skip(first_run).collect();
    assert!(second_run.iter().all(|i| i.offsets().iter().all(|(_, o)| o.iter().all(|&o| o >= 50))));
    let committed = committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap();
    assert_eq!(committed, BTreeMap::from([(0, 70), (1, 70)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_starts_at_the_end_and_is_pinned_by_a_commit() {
    let h = Harness::new().await;
    let topic = random_topic("latest");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 1, 5, "old").await.unwrap();
    let mut req = request("consumer", &topic);
    req.starting_position = Some(kafka_esm::model::mapping::StartingPosition::Latest);
    let mapping = h.create(req).await;
    // The first run finds no committed offset, resolves LATEST (5) and commits it at once.
    h.poll_for(settings(), Duration::from_secs(2)).await;
    assert_eq!(h.delivered_count(), 0);
    assert_eq!(committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(), BTreeMap::from([(0, 5)]));
    // Records written while no poller runs are not skipped by the next one.
    producer.fill(&topic, 1, 3, "new").await.unwrap();
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 3).await);
    assert_eq!(h.delivered()[&format!("{topic}-0")], vec![5, 6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_and_emulator_errors_are_retried_until_success() {
    let h = Harness::new().await;
    let topic = random_topic("throttle");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    Producer::new(bootstrap()).unwrap().fill(&topic, 1, 10, "v").await.unwrap();
    h.stub.set_behaviour("consumer", StubBehaviour::Throttle(4));
    let mapping = h.create(request("consumer", &topic)).await;
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 10).await);
    assert_eq!(h.delivered()[&format!("{topic}-0")], (0..10).collect::<Vec<i64>>());
    assert_eq!(
        committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(),
        BTreeMap::from([(0, 10)])
    );

    // `cargo lambda watch` reports function errors as a bare 500: retried, never committed past.
    let topic = random_topic("emulator");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    Producer::new(bootstrap()).unwrap().fill(&topic, 1, 4, "v").await.unwrap();
    h.stub.set_behaviour("flaky", StubBehaviour::EmulatorError);
    let mapping = h.create(request("flaky", &topic)).await;
    assert!(
        h.poll_until(settings(), |h| h.stub.invocations().iter().filter(|i| i.function == "flaky").count() >= 3).await
    );
    assert_eq!(committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(), BTreeMap::from([(0, 0)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_too_large_for_one_invoke_is_skipped_and_the_partition_moves_on() {
    let h = Harness::new().await;
    let topic = random_topic("oversized");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 1, 2, "before").await.unwrap();
    // 4.8 MB of value is 6.4 MB of base64: over the 6,291,456-byte request limit on its own.
    let big = TestRecord { partition: 0, value: Some(vec![b'x'; 4_800_000]), ..TestRecord::default() };
    producer.send(&topic, &big).await.unwrap();
    producer.fill(&topic, 1, 2, "after").await.unwrap();
    let mapping = h.create(request("consumer", &topic)).await;
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 4).await);
    assert_eq!(h.delivered()[&format!("{topic}-0")], vec![0, 1, 3, 4]);
    assert_eq!(h.metrics.totals().oversized, 1, "one oversized record reported");
    assert_eq!(committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(), BTreeMap::from([(0, 5)]));
}

/// The Invoke client the poller uses, pointed at `endpoint`.
async fn invoker_at(endpoint: &str) -> LambdaInvoker {
    LambdaInvoker::new(&kafka_esm_testkit::sdk_config(endpoint).await).unwrap()
}

/// An `aws:kafka` event with no records.
fn no_records() -> bytes::Bytes {
    bytes::Bytes::from_static(br#"{"eventSource":"aws:kafka","records":{}}"#)
}

/// The client half of every established TCP connection to `port` on 127.0.0.1, as the kernel
/// lists it: `(timer kind, timer expiry in clock ticks)` from `/proc/net/tcp` (`tr:tm->when`;
/// kind 2 is the keep-alive timer of an established connection, 0 no timer).
fn client_timers_to(port: u16) -> Vec<(u8, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (remote, state, timer) = (fields.get(2)?, fields.get(3)?, fields.get(5)?);
            let remote_port = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
            let (kind, when) = timer.split_once(':')?;
            (remote_port == port && *state == "01")
                .then(|| Some((u8::from_str_radix(kind, 16).ok()?, u64::from_str_radix(when, 16).ok()?)))?
        })
        .collect()
}

/// A synchronous invoke may send nothing for up to 15 minutes; NAT gateways forget a flow idle
/// for 350 s, after which the answer never arrives and the poller waits out the operation
/// timeout. The Invoke connections therefore probe every 60 s (review #19): while an invoke
/// waits, its socket has the kernel's keep-alive timer set, due within 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_invoke_keeps_its_connection_alive_with_tcp_keepalive() {
    let stub = kafka_esm_testkit::InvokeStub::start().await;
    stub.set_delay(Duration::from_secs(4));
    let port: u16 = stub.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let invoker = invoker_at(&stub.endpoint).await;
    let invoke = tokio::spawn(async move { invoker.invoke("keepalive-fn", no_records()).await });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = client_timers_to(port);
        if seen.iter().any(|&(kind, _)| kind == 2) {
            break;
        }
    }
    // USER_HZ is 100 on Linux: 60 s is 6000 ticks.
    assert!(
        seen.iter().any(|&(kind, when)| kind == 2 && when > 0 && when <= 6000),
        "the waiting invoke's connection has no keep-alive timer due within 60 s: {seen:?}"
    );
    assert!(matches!(invoke.await.unwrap(), Ok(InvokeOutcome::Success { .. })));
}

/// What the Invoke client's own transport reports decides whether a batch may be sent again at
/// once: a refused connection never reached the function (`Transport`, retried), one closed
/// after the request was sent may have started it (`Unanswered`, the partition waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_transport_failures_say_whether_the_function_may_be_running() {
    use tokio::io::AsyncReadExt;

    let payload = no_records();
    let closed = kafka_esm_testkit::free_port();
    let invoker = invoker_at(&format!("http://127.0.0.1:{closed}")).await;
    let refused = invoker.invoke("f", payload.clone()).await;
    assert!(matches!(refused, Err(InvokeError::Transport { .. })), "{refused:?}");

    // Reads the whole request, then hangs up without an answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hang_up = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&request).contains("records") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request was not sent whole");
            request.extend_from_slice(&buf[..n]);
        }
    });
    let invoker = invoker_at(&format!("http://127.0.0.1:{port}")).await;
    let broken = invoker.invoke("f", payload).await;
    hang_up.await.unwrap();
    assert!(matches!(broken, Err(InvokeError::Unanswered { .. })), "{broken:?}");
}

/// The Invoke client over HTTPS checks the endpoint's certificate against the system's roots:
/// one from a private CA is refused and the function never runs; with that CA in
/// `SSL_CERT_FILE` (read like the system bundle, in a child process so this one's roots stay as
/// they are) the invoke goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invokes_over_https_verify_the_endpoint_against_the_system_roots() {
    const CHILD: &str = "KAFKA_ESM_TEST_HTTPS_INVOKE";
    let payload = no_records();
    if let Ok(endpoint) = std::env::var(CHILD) {
        let invoker = invoker_at(&endpoint).await;
        let got = invoker.invoke("tls-fn", payload).await;
        assert!(matches!(got, Ok(InvokeOutcome::Success { .. })), "{got:?}");
        return;
    }
    let stub = kafka_esm_testkit::InvokeStub::start().await;
    let stub_port: u16 = stub.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let ca = kafka_esm_testkit::tls::TestCa::new().unwrap();
    let front = kafka_esm_testkit::tls::TlsFront::start(&ca, kafka_esm_testkit::free_port(), stub_port).unwrap();
    let endpoint = format!("https://{}", front.bootstrap);

    let invoker = invoker_at(&endpoint).await;
    let untrusted = invoker.invoke("tls-fn", payload).await;
    match &untrusted {
        Err(InvokeError::Transport { message }) => assert!(message.contains("certificate"), "{message}"),
        other => panic!("an untrusted certificate was not refused: {other:?}"),
    }
    assert_eq!(stub.invocation_count("tls-fn"), 0);

    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "invokes_over_https_verify_the_endpoint_against_the_system_roots", "--nocapture"])
        .env(CHILD, &endpoint)
        .env("SSL_CERT_FILE", ca.ca_path())
        .output()
        .await
        .unwrap();
    assert!(
        child.status.success() && String::from_utf8_lossy(&child.stdout).contains("1 passed"),
        "the child's invoke over HTTPS with the CA trusted failed:\n{}\n{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert_eq!(stub.invocation_count("tls-fn"), 1);
}

/// How long a function may run is read from GetFunction (`Configuration.Timeout`); a function
/// that cannot be read gives `None`, and the poller then assumes `ESM_UNANSWERED_INVOKE_WAIT_MS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_timeout_is_read_from_get_function() {
    let stub = kafka_esm_testkit::InvokeStub::start().await;
    stub.set_known_functions(&["orders-fn"]);
    stub.set_timeout(42);
    let invoker = invoker_at(&stub.endpoint).await;
    assert_eq!(invoker.timeout("orders-fn").await, Some(Duration::from_secs(42)));
    assert_eq!(
        invoker.timeout("arn:aws:lambda:us-east-1:123456789012:function:orders-fn:live").await,
        Some(Duration::from_secs(42))
    );
    assert_eq!(invoker.timeout("missing-fn").await, None);
    let closed = kafka_esm_testkit::free_port();
    let unreachable = invoker_at(&format!("http://127.0.0.1:{closed}")).await;
    assert_eq!(unreachable.timeout("orders-fn").await, None);
}
