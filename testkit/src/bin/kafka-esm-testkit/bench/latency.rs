//! The latency phase of `bench`: records produced at a fixed rate, each stamped with its send
//! time (microseconds since the epoch, in ASCII at the start of the value), are read at the same
//! time by a raw librdkafka consumer with the product's settings and by a real `esm poll` invoking
//! a recording stub. The produce -> consume times of the one and the produce -> invoke times of
//! the other (the stub's arrival time of the request) come from the same records on the same
//! broker, so their difference is what the product adds.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use kafka_esm_testkit::{Dynalite, InvokeStub, kafka};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{CpuMeter, RunArgs, esm_command, esm_env};

/// Digits of the send time at the start of every value.
const STAMP_DIGITS: usize = 20;

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn stamp_of(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value.get(..STAMP_DIGITS)?).ok()?.parse().ok()
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(mut us: Vec<i64>) -> Self {
        if us.is_empty() {
            return Self::default();
        }
        us.sort_unstable();
        let at = |q: f64| {
            let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
            us[i] as f64 / 1000.0
        };
        Self { count: us.len(), p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} records)",
            self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// One latency phase.
#[derive(Debug, Clone)]
pub struct Latency {
    pub fetch_wait_ms: u32,
    pub raw: Percentiles,
    pub e2e: Percentiles,
    /// `esm poll` CPU seconds over the measured records, per record (microseconds).
    pub poller_cpu_us_per_record: Option<f64>,
}

fn delivered_ok(delivered: <rdkafka::producer::DeliveryFuture as std::future::Future>::Output) -> Result<()> {
    match delivered {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => bail!("produce failed: {e}"),
        Err(_) => bail!("produce cancelled"),
    }
}

/// Send times of the records produced in the measured interval.
type Stamps = Arc<Mutex<Vec<i64>>>;

fn push(stamps: &Stamps, value: i64) {
    stamps.lock().unwrap_or_else(PoisonError::into_inner).push(value);
}

#[allow(clippy::too_many_lines)]
pub async fn measure(
    args: &RunArgs,
    bootstrap: &str,
    dynalite: &Dynalite,
    fetch_wait_ms: u32,
    ticks: f64,
) -> Result<Latency> {
    let topic = kafka::random_topic("bench-latency");
    let partitions = args.latency_partitions.max(1);
    kafka::create_topic(bootstrap, &topic, i32::try_from(partitions)?).await?;
    let stub = InvokeStub::start_on(0, true).await;

    // The poller, on tables of its own so no earlier phase's mapping is polled too.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let mut env = esm_env(&dynalite.endpoint, &stub.endpoint, args);
    for (name, value) in &mut env {
        if *name == "ESM_FETCH_WAIT_MS" {
            *value = fetch_wait_ms.to_string();
        }
    }
    env.push(("ESM_MAPPINGS_TABLE", format!("bench-latency-mappings-{suffix}")));
    env.push(("ESM_LEASES_TABLE", format!("bench-latency-leases-{suffix}")));
    esm_command(&args.esm, &env, &["init".to_owned()]).await?;
    let source = format!(r#"{{"Endpoints":{{"KAFKA_BOOTSTRAP_SERVERS":["{bootstrap}"]}}}}"#);
    esm_command(
        &args.esm,
        &env,
        &[
            "create-event-source-mapping",
            "--function-name",
            "bench-latency",
            "--topics",
            &topic,
            "--starting-position",
            "TRIM_HORIZON",
            "--batch-size",
            &args.batch_size.to_string(),
            "--maximum-batching-window-in-seconds",
            "0",
            "--self-managed-event-source",
            &source,
        ]
        .map(str::to_owned),
    )
    .await?;
    let log = std::env::temp_dir().join(format!("kafka-esm-bench-latency-{suffix}.log"));
    let mut poller = tokio::process::Command::new(&args.esm)
        .args(["poll", "--progress-interval", "0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .context("start esm poll")?;
    let pid = poller.id().context("esm poll has no pid")?;

    // The raw reader: the product's client settings, every partition from offset 0.
    let settings = kafka_esm::kafka::KafkaSettings {
        bootstrap_servers: bootstrap.to_owned(),
        group_id: kafka::random_topic("kafka-esm-bench-latency-raw"),
        security: kafka_esm::kafka::Security::Plaintext,
        fetch_wait_max_ms: fetch_wait_ms,
        queued_max_kbytes: kafka_esm::kafka::fetch_share_kbytes(
            args.fetch_buffer_kbytes,
            partitions as usize,
            args.queued_max_kbytes,
        ),
        fetch_queue_backoff_ms: args.fetch_queue_backoff_ms,
        request_timeout: Duration::from_secs(10),
    };
    let consumer: Arc<StreamConsumer> = Arc::new(
        kafka_esm::kafka::consumer_config(&settings, "kafka-esm-bench-latency-raw")
            .create()
            .context("create the raw consumer")?,
    );
    let mut tpl = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions)? {
        tpl.add_partition_offset(&topic, p, Offset::Offset(0))?;
    }
    consumer.assign(&tpl)?;
    // (send time, latency) of every record the raw reader saw.
    let raw_seen: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let mut readers = tokio::task::JoinSet::new();
    for p in 0..i32::try_from(partitions)? {
        let queue = consumer.split_partition_queue(&topic, p).with_context(|| format!("split partition {p}"))?;
        let seen = raw_seen.clone();
        readers.spawn(async move {
            while let Ok(message) = queue.recv().await {
                let now = now_us();
                if let Some(stamp) = message.payload().and_then(stamp_of) {
                    seen.lock().unwrap_or_else(PoisonError::into_inner).push((stamp, now - stamp));
                }
            }
        });
    }
    let main_queue = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                let _ = consumer.recv().await;
            }
        })
    };

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("enable.idempotence", "false")
        .create()
        .context("create the producer")?;
    let measured: Stamps = Arc::default();
    let rate = f64::from(args.latency_rate.max(1));
    let padding = "x".repeat(args.record_bytes.saturating_sub(STAMP_DIGITS + 1));
    // Warm up until both readers have seen a record (the poller takes its leases first), then
    // one more second, then measure.
    let warmup_deadline = Instant::now() + Duration::from_secs(args.timeout_s.min(120));
    let mut measuring_since: Option<Instant> = None;
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let mut sent = 0_u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut cpu = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(delivered) = pending.next(), if !pending.is_empty() => {
                delivered_ok(delivered)?;
                continue;
            }
        }
        let now = Instant::now();
        match measuring_since {
            None => {
                let both = stub.counts().1 > 0 && !raw_seen.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
                if both {
                    measuring_since = Some(now + Duration::from_secs(1));
                } else if now > warmup_deadline {
                    bail!("no record reached both readers within the warm-up; poller log: {}", log.display());
                }
            }
            Some(since) if now >= since + Duration::from_secs(args.latency_s) => break,
            Some(since) if now >= since && cpu.is_none() => {
                cpu = Some(CpuMeter::start(ticks, &[("esm poll", Some(pid))]));
            }
            Some(_) => {}
        }
        let due = (now - started).as_secs_f64() * rate;
        while (sent as f64) < due {
            let partition = i32::try_from(sent % u64::from(partitions))?;
            let stamp = now_us();
            let value = format!("{stamp:0width$}:{padding}", width = STAMP_DIGITS);
            let key = sent.to_string();
            let record = FutureRecord::to(&topic).partition(partition).key(&key).payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => bail!("produce failed: {e}"),
            }
            if measuring_since.is_some_and(|since| now >= since) && cpu.is_some() {
                push(&measured, stamp);
            }
            sent += 1;
        }
    }
    let produced_measured = measured.lock().unwrap_or_else(PoisonError::into_inner).clone();
    while let Some(delivered) = pending.next().await {
        delivered_ok(delivered)?;
    }
    producer.flush(Timeout::After(Duration::from_secs(10)))?;
    let (Some(first), Some(last)) = (produced_measured.first().copied(), produced_measured.last().copied()) else {
        bail!("no record was produced in the measured interval");
    };

    // Wait for both readers to have every measured record (or give up after 30 s).
    let e2e_latencies = |stub: &InvokeStub| -> Vec<i64> {
        let (base_instant, base_us) = (Instant::now(), now_us());
        let mut out = Vec::new();
        for invocation in stub.invocations() {
            let arrived = base_us
                - i64::try_from(base_instant.saturating_duration_since(invocation.started.into()).as_micros())
                    .unwrap_or(0);
            let Some(records) = invocation.event["records"].as_object() else { continue };
            for record in records.values().filter_map(|v| v.as_array()).flatten() {
                let stamp = record["value"].as_str().and_then(|v| STANDARD.decode(v).ok()).and_then(|v| stamp_of(&v));
                if let Some(stamp) = stamp.filter(|s| (first..=last).contains(s)) {
                    out.push(arrived - stamp);
                }
            }
        }
        out
    };
    let raw_latencies = || -> Vec<i64> {
        raw_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(stamp, _)| (first..=last).contains(stamp))
            .map(|(_, latency)| *latency)
            .collect()
    };
    let want = produced_measured.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (raw, e2e) = loop {
        let (raw, e2e) = (raw_latencies(), e2e_latencies(&stub));
        if (raw.len() >= want && e2e.len() >= want) || Instant::now() > deadline {
            break (raw, e2e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cpu = cpu.map(|c| c.stop());

    // Stop the poller and the raw reader.
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = tokio::time::timeout(Duration::from_secs(60), poller.wait()).await;
    readers.abort_all();
    main_queue.abort();
    tokio::task::spawn_blocking(move || drop(consumer)).await?;

    if raw.len() < want || e2e.len() < want {
        bail!(
            "of {want} measured records the raw reader saw {} and the poller delivered {}; poller log: {}",
            raw.len(),
            e2e.len(),
            log.display()
        );
    }
    let poller_cpu_us_per_record = cpu.and_then(|c| c.of("esm poll")).map(|s| s * 1e6 / want as f64);
    Ok(Latency { fetch_wait_ms, raw: Percentiles::of(raw), e2e: Percentiles::of(e2e), poller_cpu_us_per_record })
}

/// Differences of the percentiles, e2e minus raw.
pub fn overhead(l: &Latency) -> (f64, f64) {
    (l.e2e.p50_ms - l.raw.p50_ms, l.e2e.p99_ms - l.raw.p99_ms)
}
