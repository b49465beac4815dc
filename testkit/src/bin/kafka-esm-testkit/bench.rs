//! `bench`: measures the poller's throughput and memory against local services and prints the
//! numbers with the command that reproduces them (`scripts/bench.sh` builds and runs it). Nothing
//! here asserts a timing; targets are reported as met or not met.
//!
//! It pre-fills a topic on a fresh tansu (one record per producer batch by default: a tansu 0.6
//! fetch that starts inside a multi-record batch skips the rest of it; `--batched` sends batches
//! as real producers do) and measures:
//!
//! - (a) on broker A, the raw fetch rate of the product's Kafka client setup: an rdkafka
//!   `StreamConsumer` with the product's settings, every partition assigned from offset 0 and
//!   split into its own queue, one tokio task per partition (as `kafka_esm::kafka` does), reading
//!   every record;
//! - (b) on broker B (fresh, same records), the end-to-end rate through a real `esm poll` process
//!   into a counting Invoke stub served by this process, with commits, checked afterwards by the
//!   test kit's own offsets reader (committed == end offset, lag 0);
//! - (c) the poller's peak RSS (`VmHWM`), read just before it is stopped.
//!
//! Each rate is the first read of a fresh broker because tansu 0.6 gets slower with every full
//! read of a topic; a last raw read of broker B shows by how much. CPU seconds of every process
//! are printed per phase, so a run on a busy 2-core machine can be told apart from a slow poller.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use kafka_esm_testkit::kafka::{Batching, ValueShape, Workload};
use kafka_esm_testkit::{Dynalite, InvokeStub, Tansu, kafka};

mod latency;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Records to pre-fill (spread round-robin over the partitions).
    #[arg(long, env = "BENCH_RECORDS", default_value_t = 200_000)]
    records: u64,
    #[arg(long, env = "BENCH_PARTITIONS", default_value_t = 8)]
    partitions: u32,
    /// Size of each record's value.
    #[arg(long, env = "BENCH_RECORD_BYTES", default_value_t = 1024)]
    record_bytes: usize,
    /// The mapping's BatchSize.
    #[arg(long, env = "BENCH_BATCH_SIZE", default_value_t = 1000)]
    batch_size: u32,
    /// The mapping's MaximumBatchingWindowInSeconds.
    #[arg(long, env = "BENCH_WINDOW_S", default_value_t = 0)]
    window_s: u32,
    /// The poller's `fetch.wait.max.ms`, also used by the raw reader (tansu holds every fetch
    /// this long, so local runs use 10).
    #[arg(long, env = "ESM_FETCH_WAIT_MS", default_value_t = 10)]
    fetch_wait_ms: u32,
    /// The poller's per-partition fetch-ahead buffer, also used by the raw reader.
    #[arg(long, env = "ESM_QUEUED_MAX_KBYTES", default_value_t = 2048)]
    queued_max_kbytes: u32,
    /// The poller's fetch-ahead budget shared by the topic's partitions; the raw reader gets the
    /// same per-partition share.
    #[arg(long, env = "ESM_FETCH_BUFFER_KBYTES", default_value_t = 16384)]
    fetch_buffer_kbytes: u32,
    /// The poller's `fetch.queue.backoff.ms`, also used by the raw reader.
    #[arg(long, env = "ESM_FETCH_QUEUE_BACKOFF_MS", default_value_t = 10)]
    fetch_queue_backoff_ms: u32,
    /// Produce requests in flight while pre-filling.
    #[arg(long, env = "BENCH_PRODUCE_IN_FLIGHT", default_value_t = 64)]
    produce_in_flight: usize,
    /// Pre-fill with producer batches as real producers send them (`linger.ms` 5, up to 10,000
    /// records per batch; the default), or one record per batch (`BENCH_BATCHED=0`), which makes
    /// tansu itself the bottleneck of both readers.
    #[arg(
        long,
        env = "BENCH_BATCHED",
        default_value = "1",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    batched: bool,
    /// Seconds of the latency measurement at each fetch wait (0: no latency phase): records
    /// produced at `--latency-rate` are read by a raw consumer and by `esm poll` at once, and the
    /// produce -> consume and produce -> invoke times compared.
    #[arg(long, env = "BENCH_LATENCY_S", default_value_t = 10)]
    latency_s: u64,
    /// Records per second of the latency measurement, over `--latency-partitions`.
    #[arg(long, env = "BENCH_LATENCY_RATE", default_value_t = 1000)]
    latency_rate: u32,
    #[arg(long, env = "BENCH_LATENCY_PARTITIONS", default_value_t = 4)]
    latency_partitions: u32,
    /// The `fetch.wait.max.ms` values the latency is measured at, one phase each.
    #[arg(long, env = "BENCH_LATENCY_FETCH_WAITS", value_delimiter = ',', default_values_t = [10, 1])]
    latency_fetch_waits: Vec<u32>,
    /// Measure only the latency.
    #[arg(long, env = "BENCH_LATENCY_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    latency_only: bool,
    /// The `esm` binary to run.
    #[arg(long, env = "BENCH_ESM", default_value = "target/profiling/esm")]
    esm: PathBuf,
    /// Gives up on a phase after this long.
    #[arg(long, env = "BENCH_TIMEOUT_S", default_value_t = 600)]
    timeout_s: u64,
    /// librdkafka `debug` contexts for the raw reader (e.g. `fetch`), logged to stderr.
    #[arg(long, env = "BENCH_RDKAFKA_DEBUG")]
    rdkafka_debug: Option<String>,
    /// Measure only the raw fetch rate.
    #[arg(long, env = "BENCH_RAW_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    raw_only: bool,
    /// Extra librdkafka settings for the raw reader only, `key=value,key=value` (experiments:
    /// what would a product setting change?).
    #[arg(long, env = "BENCH_RAW_CONFIG", value_delimiter = ',')]
    raw_config: Vec<String>,
    /// How long the Invoke stub takes per invocation: a slow function keeps librdkafka's
    /// fetch-ahead buffers full, the poller's worst case for memory.
    #[arg(long, env = "BENCH_STUB_DELAY_MS", default_value_t = 0)]
    stub_delay_ms: u64,
    /// With `--raw-only`: how many raw reads, one after the other.
    #[arg(long, env = "BENCH_RAW_RUNS", default_value_t = 2)]
    raw_runs: u32,
    /// The mapping's `FilterCriteria` (JSON); the end-to-end rate then counts every record
    /// read (sent or filtered out) until all are committed (scripts/bench-filter.sh).
    #[arg(long, env = "BENCH_FILTER_CRITERIA")]
    filter_criteria: Option<String>,
    /// With a filter: how many records it lets through to the function.
    #[arg(long, env = "BENCH_EXPECT_INVOKED")]
    expect_invoked: Option<u64>,
    /// The mapping's `ParallelizationFactor` (batches of one partition in flight at once; every
    /// record of the bench has its own key).
    #[arg(long, env = "BENCH_PARALLELIZATION_FACTOR")]
    parallelization_factor: Option<u32>,
}

/// Prints librdkafka's logs with the time since the client was created.
struct PrintLogs(Instant);

impl rdkafka::ClientContext for PrintLogs {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("{:9.3} {fac} {message}", self.0.elapsed().as_secs_f64());
    }
}

impl rdkafka::consumer::ConsumerContext for PrintLogs {}

impl RunArgs {
    /// The command line that repeats this run, every setting spelled out.
    fn reproduce(&self) -> String {
        // scripts/bench.sh always measures the `esm` it has just built.
        let command = if self.esm.ends_with("target/profiling/esm") {
            "scripts/bench.sh".to_owned()
        } else {
            format!("BENCH_ESM={} target/profiling/kafka-esm-testkit bench", self.esm.display())
        };
        let mut extra = String::new();
        let raw_config: Vec<&str> = self.raw_config.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if !raw_config.is_empty() {
            extra = format!("BENCH_RAW_CONFIG={} ", raw_config.join(","));
        }
        if self.stub_delay_ms > 0 {
            let _ = write!(extra, "BENCH_STUB_DELAY_MS={} ", self.stub_delay_ms);
        }
        if self.raw_only {
            let _ = write!(extra, "BENCH_RAW_ONLY=1 BENCH_RAW_RUNS={} ", self.raw_runs);
        }
        if self.latency_only {
            extra.push_str("BENCH_LATENCY_ONLY=1 ");
        }
        if let Some(n) = self.parallelization_factor {
            let _ = write!(extra, "BENCH_PARALLELIZATION_FACTOR={n} ");
        }
        if let Some(filter) = &self.filter_criteria {
            let _ = write!(extra, "BENCH_FILTER_CRITERIA='{filter}' ");
            if let Some(n) = self.expect_invoked {
                let _ = write!(extra, "BENCH_EXPECT_INVOKED={n} ");
            }
        }
        let waits: Vec<String> = self.latency_fetch_waits.iter().map(u32::to_string).collect();
        format!(
            "BENCH_RECORDS={} BENCH_PARTITIONS={} BENCH_RECORD_BYTES={} BENCH_BATCH_SIZE={} \
             BENCH_WINDOW_S={} ESM_FETCH_WAIT_MS={} ESM_QUEUED_MAX_KBYTES={} ESM_FETCH_BUFFER_KBYTES={} \
             ESM_FETCH_QUEUE_BACKOFF_MS={} BENCH_BATCHED={} BENCH_LATENCY_S={} BENCH_LATENCY_RATE={} BENCH_LATENCY_PARTITIONS={} \
             BENCH_LATENCY_FETCH_WAITS={} {extra}{command}",
            self.records,
            self.partitions,
            self.record_bytes,
            self.batch_size,
            self.window_s,
            self.fetch_wait_ms,
            self.queued_max_kbytes,
            self.fetch_buffer_kbytes,
            self.fetch_queue_backoff_ms,
            u8::from(self.batched),
            self.latency_s,
            self.latency_rate,
            self.latency_partitions,
            waits.join(",")
        )
    }
}

/// CPU seconds (user + system) each process used over a phase.
#[derive(Debug, Default, Clone)]
struct CpuUse(Vec<(&'static str, f64)>);

impl CpuUse {
    /// Seconds of the process named `name`.
    fn of(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(name, s)| format!("{name} {s:.2}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Samples the CPU time of named processes at the start and end of a phase.
struct CpuMeter {
    ticks_per_s: f64,
    start: Vec<(&'static str, u32, f64)>,
}

impl CpuMeter {
    fn start(ticks_per_s: f64, pids: &[(&'static str, Option<u32>)]) -> Self {
        let start = pids
            .iter()
            .filter_map(|(name, pid)| {
                let pid = (*pid)?;
                Some((*name, pid, cpu_ticks(pid)?))
            })
            .collect();
        Self { ticks_per_s, start }
    }

    fn stop(&self) -> CpuUse {
        CpuUse(
            self.start
                .iter()
                .filter_map(|(name, pid, before)| Some((*name, (cpu_ticks(*pid)? - before) / self.ticks_per_s)))
                .collect(),
        )
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/PID/status` field in kB (`VmHWM`, `VmRSS`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The process whose command line contains every needle and that is not the testkit's
/// watchdog shell (whose command line repeats the service's).
fn find_pid(needles: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let line = args.join(" ");
        let argv0 = args.first().map(|a| a.rsplit('/').next().unwrap_or(a));
        (argv0 != Some("bash") && needles.iter().all(|n| line.contains(n))).then_some(pid)
    })
}

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().next().map(str::to_owned)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn revision() -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn per_s(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

const MB: f64 = 1_000_000.0;

/// Writes `records` round-robin over the partitions, many sends in flight. Returns the time it
/// took and the records acknowledged per partition.
async fn prefill(bootstrap: &str, topic: &str, args: &RunArgs) -> Result<(Duration, Vec<u64>)> {
    let batching = if args.batched { Batching::Batched } else { Batching::OnePerBatch };
    let in_flight = args.produce_in_flight.to_string();
    let producer = kafka::Producer::with_batching(
        bootstrap,
        batching,
        &[("max.in.flight.requests.per.connection", in_flight.as_str())],
    )?;
    let mut workload = Workload::new(topic, i32::try_from(args.partitions)?, args.records);
    workload.value = ValueShape::Fill;
    workload.record_bytes = args.record_bytes;
    workload.key_prefix = "k".to_owned();
    workload.in_flight = if args.batched { 100_000 } else { args.produce_in_flight.max(1) * 4 };
    let produced = producer.run(&workload, std::future::pending()).await;
    if produced.error_count > 0 {
        bail!("pre-fill: {} records failed, e.g. {}", produced.error_count, produced.errors.join("; "));
    }
    Ok((Duration::from_secs_f64(produced.seconds), produced.partitions))
}

const COMMIT_PROBES: u32 = 20;

/// End offsets, and what the offset requests the poller makes cost on this broker.
#[derive(Debug)]
struct OffsetLookups {
    ends: BTreeMap<i32, i64>,
    /// Watermarks of every partition, one partition after the other.
    one_by_one: Duration,
    /// Earliest offsets of every partition in one ListOffsets request.
    batched: Duration,
    /// One synchronous OffsetCommit of every partition (mean).
    commit: Duration,
}

/// End offsets of every partition, read through a fresh client the way the poller resolves a
/// starting position (one watermark query per partition, in turn), and how long that took
/// compared with asking for every partition's earliest offset in one ListOffsets request.
async fn end_offsets(bootstrap: &str, topic: &str, partitions: u32) -> Result<OffsetLookups> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "kafka-esm-bench-watermarks")
            .create()?;
        // Connect first, so neither timing includes it.
        consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let started = Instant::now();
        let mut ends = BTreeMap::new();
        for p in 0..i32::try_from(partitions)? {
            let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
            ends.insert(p, high);
        }
        let one_by_one = started.elapsed();
        let mut tpl = TopicPartitionList::new();
        for &p in ends.keys() {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        let started = Instant::now();
        consumer.offsets_for_times(tpl, Duration::from_secs(10))?;
        let batched = started.elapsed();
        // What one commit of every partition costs (the poller commits after each batch).
        let mut tpl = TopicPartitionList::new();
        for (&p, &end) in &ends {
            tpl.add_partition_offset(&topic, p, Offset::Offset(end))?;
        }
        let started = Instant::now();
        for _ in 0..COMMIT_PROBES {
            consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)?;
        }
        let commit = started.elapsed() / COMMIT_PROBES;
        anyhow::Ok(OffsetLookups { ends, one_by_one, batched, commit })
    })
    .await?
}

/// One timed read of everything.
#[derive(Debug, Clone, Copy)]
struct Rate {
    records: u64,
    bytes: u64,
    /// From the start (client creation, or poller process start) to the last record.
    from_start: Duration,
    /// From the first record to the last.
    from_first: Duration,
}

impl Rate {
    fn records_per_s(&self) -> f64 {
        per_s(self.records as f64, self.from_start)
    }

    fn steady_records_per_s(&self) -> f64 {
        per_s(self.records as f64, self.from_first)
    }

    fn describe(&self) -> String {
        format!(
            "{} records in {:.2} s = {:.0} records/s, {:.1} MB/s; from the first record: {:.0} records/s, {:.1} MB/s",
            self.records,
            self.from_start.as_secs_f64(),
            self.records_per_s(),
            per_s(self.bytes as f64 / MB, self.from_start),
            self.steady_records_per_s(),
            per_s(self.bytes as f64 / MB, self.from_first),
        )
    }
}

/// Reads every partition from offset 0 to its end with the product's client setup.
async fn raw_fetch(bootstrap: &str, topic: &str, ends: &BTreeMap<i32, i64>, args: &RunArgs) -> Result<Rate> {
    let started = Instant::now();
    // Exactly the product's client settings (plaintext).
    let settings = kafka_esm::kafka::KafkaSettings {
        bootstrap_servers: bootstrap.to_owned(),
        group_id: kafka::random_topic("kafka-esm-bench-raw"),
        security: kafka_esm::kafka::Security::Plaintext,
        fetch_wait_max_ms: args.fetch_wait_ms,
        queued_max_kbytes: kafka_esm::kafka::fetch_share_kbytes(
            args.fetch_buffer_kbytes,
            ends.len(),
            args.queued_max_kbytes,
        ),
        fetch_queue_backoff_ms: args.fetch_queue_backoff_ms,
        request_timeout: Duration::from_secs(10),
    };
    let mut config = kafka_esm::kafka::consumer_config(&settings, "kafka-esm-bench-raw");
    if let Some(debug) = &args.rdkafka_debug {
        config.set("debug", debug).set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    for setting in args.raw_config.iter().filter(|s| !s.trim().is_empty()) {
        let (key, value) =
            setting.split_once('=').with_context(|| format!("BENCH_RAW_CONFIG: {setting} is not key=value"))?;
        config.set(key.trim(), value.trim());
    }
    let consumer: Arc<StreamConsumer<PrintLogs>> =
        Arc::new(config.create_with_context(PrintLogs(started)).context("create the raw consumer")?);
    let mut tpl = TopicPartitionList::new();
    for &p in ends.keys() {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))?;
    }
    consumer.assign(&tpl)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (&p, &end) in ends {
        let queue = consumer.split_partition_queue(topic, p).with_context(|| format!("split partition {p}"))?;
        tasks.spawn(async move {
            let (mut records, mut bytes, mut first) = (0_u64, 0_u64, None);
            if end > 0 {
                loop {
                    let message = queue.recv().await?;
                    first.get_or_insert_with(Instant::now);
                    records += 1;
                    bytes += (message.payload_len() + message.key_len()) as u64;
                    if message.offset() >= end - 1 {
                        break;
                    }
                }
            }
            anyhow::Ok((records, bytes, first, Instant::now()))
        });
    }
    let main_queue = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                // Every record goes to a partition queue; one here would leave a task waiting.
                if let Ok(m) = consumer.recv().await {
                    eprintln!("record {}-{}@{} arrived on the main queue", m.topic(), m.partition(), m.offset());
                }
            }
        })
    };
    let collect = async {
        let (mut records, mut bytes, mut first, mut last) = (0, 0, None::<Instant>, started);
        while let Some(joined) = tasks.join_next().await {
            let (r, b, f, l) = joined??;
            records += r;
            bytes += b;
            first = match (first, f) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last = last.max(l);
        }
        anyhow::Ok((records, bytes, first, last))
    };
    let outcome = tokio::time::timeout(Duration::from_secs(args.timeout_s), collect).await;
    main_queue.abort();
    // Closing a consumer may block on the network.
    tokio::task::spawn_blocking(move || drop(consumer)).await?;
    let (records, bytes, first, last) =
        outcome.map_err(|_| anyhow::anyhow!("raw fetch did not finish within {} s", args.timeout_s))??;
    Ok(Rate { records, bytes, from_start: last - started, from_first: last - first.unwrap_or(started) })
}

/// Environment of every `esm` command: the local endpoints and the poller's tunables.
fn esm_env(dynamodb: &str, lambda: &str, args: &RunArgs) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.to_owned()),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.to_owned()),
        ("ESM_FETCH_WAIT_MS", args.fetch_wait_ms.to_string()),
        ("ESM_QUEUED_MAX_KBYTES", args.queued_max_kbytes.to_string()),
        ("ESM_FETCH_BUFFER_KBYTES", args.fetch_buffer_kbytes.to_string()),
        ("ESM_FETCH_QUEUE_BACKOFF_MS", args.fetch_queue_backoff_ms.to_string()),
    ]
}

async fn esm_command(esm: &Path, env: &[(&str, String)], cli: &[String]) -> Result<String> {
    let out = tokio::process::Command::new(esm)
        .args(cli)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .with_context(|| format!("run {}", esm.display()))?;
    if !out.status.success() {
        bail!("esm {} failed: {}", cli.first().map_or("", String::as_str), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the end-to-end phase measured.
#[derive(Debug)]
struct EndToEnd {
    rate: Rate,
    first_delivery: Duration,
    /// From 10 % to 90 % of the records delivered.
    middle: Option<Duration>,
    invocations: u64,
    peak_rss_kb: Option<u64>,
    rss_at_end_kb: Option<u64>,
    cpu: CpuUse,
    /// `esm poll` CPU per record from the first delivered record to the last.
    steady_cpu_us_per_record: Option<f64>,
    /// Records delivered in each second after the poller started.
    per_second: Vec<u64>,
    shutdown: Duration,
    offsets: OffsetCheck,
    log: PathBuf,
}

#[derive(Debug)]
struct OffsetCheck {
    ok: bool,
    summary: String,
}

#[allow(clippy::too_many_arguments)]
async fn end_to_end(
    args: &RunArgs,
    bootstrap: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    total: u64,
    bytes: u64,
    dynalite: &Dynalite,
    stub: &InvokeStub,
    other_pids: &[(&'static str, Option<u32>)],
    ticks: f64,
) -> Result<EndToEnd> {
    let env = esm_env(&dynalite.endpoint, &stub.endpoint, args);
    esm_command(&args.esm, &env, &["init".to_owned()]).await?;
    let source = format!(r#"{{"Endpoints":{{"KAFKA_BOOTSTRAP_SERVERS":["{bootstrap}"]}}}}"#);
    let mut create: Vec<String> = [
        "create-event-source-mapping",
        "--function-name",
        "bench",
        "--topics",
        topic,
        "--starting-position",
        "TRIM_HORIZON",
        "--batch-size",
        &args.batch_size.to_string(),
        "--maximum-batching-window-in-seconds",
        &args.window_s.to_string(),
        "--self-managed-event-source",
        &source,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(filter) = &args.filter_criteria {
        create.extend(["--filter-criteria".to_owned(), filter.clone()]);
    }
    if let Some(n) = args.parallelization_factor {
        create.extend(["--parallelization-factor".to_owned(), n.to_string()]);
    }
    let created = esm_command(&args.esm, &env, &create).await?;
    // With a filter, the stub sees only what passes it; the run ends once all is committed.
    let invoked_total = args.expect_invoked.filter(|_| args.filter_criteria.is_some()).unwrap_or(total);
    let mapping: serde_json::Value = serde_json::from_str(&created).context("parse the created mapping")?;
    let uuid = mapping["UUID"].as_str().context("the created mapping has no UUID")?.to_owned();

    let log = std::env::temp_dir().join(format!("kafka-esm-bench-poll-{uuid}.log"));
    let log_file = std::fs::File::create(&log)?;
    let started = Instant::now();
    let mut poller = tokio::process::Command::new(&args.esm)
        .args(["poll", "--progress-interval", "0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .context("start esm poll")?;
    let pid = poller.id().context("esm poll has no pid")?;
    let mut pids = vec![("esm poll", Some(pid)), ("bench+stub", Some(std::process::id()))];
    pids.extend_from_slice(other_pids);
    let cpu = CpuMeter::start(ticks, &pids);

    let deadline = started + Duration::from_secs(args.timeout_s);
    let (mut first, mut ten, mut ninety) = (None, None, None);
    // The poller's CPU from the first delivered record on: its start-up is no per-record cost.
    let mut steady: Option<(CpuMeter, u64)> = None;
    let mut per_second = Vec::new();
    let (invocations, delivered) = loop {
        let (invocations, records) = stub.counts();
        let now = Instant::now();
        let second = (now - started).as_secs() as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, records);
        }
        per_second[second] = records;
        if records > 0 && first.is_none() {
            first = Some(now);
            steady = Some((CpuMeter::start(ticks, &[("esm poll", Some(pid))]), records));
        }
        if records * 10 >= invoked_total {
            ten.get_or_insert(now);
        }
        if records * 10 >= invoked_total * 9 {
            ninety.get_or_insert(now);
        }
        if records >= invoked_total {
            break (invocations, records);
        }
        if let Some(status) = poller.try_wait()? {
            bail!("esm poll exited ({status}) after delivering {records} of {total} records; log: {}", log.display());
        }
        if now > deadline {
            bail!(
                "esm poll delivered {records} of {total} records within {} s; log: {}",
                args.timeout_s,
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if args.filter_criteria.is_some() {
        // The records after the last one sent were filtered out: done once they are committed.
        while !check_offsets(bootstrap, &uuid, topic, ends).await?.ok {
            if Instant::now() > deadline {
                bail!("esm poll did not commit every filtered-out record within {} s", args.timeout_s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Records the poller is done with: with a filter, every record read.
    let delivered = if args.filter_criteria.is_some() { total } else { delivered };
    let last = Instant::now();
    let cpu = cpu.stop();
    let steady_cpu_us_per_record = steady.and_then(|(meter, before)| {
        let seconds = meter.stop().of("esm poll")?;
        Some(seconds * 1e6 / delivered.saturating_sub(before).max(1) as f64)
    });
    let peak_rss_kb = status_kb(pid, "VmHWM");
    let rss_at_end_kb = status_kb(pid, "VmRSS");
    let delivered_per_second = per_second
        .iter()
        .scan(0, |prev, &cumulative| {
            let d = cumulative - *prev;
            *prev = cumulative;
            Some(d)
        })
        .collect();

    let stopping = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    if !killed.success() {
        bail!("could not send SIGTERM to esm poll ({pid})");
    }
    let status = tokio::time::timeout(Duration::from_secs(60), poller.wait())
        .await
        .context("esm poll did not stop within 60 s of SIGTERM")??;
    let shutdown = stopping.elapsed();
    if !status.success() {
        bail!("esm poll exited with {status}; log: {}", log.display());
    }
    let offsets = check_offsets(bootstrap, &uuid, topic, ends).await?;
    Ok(EndToEnd {
        middle: ten.zip(ninety).map(|(ten, ninety)| ninety - ten),
        rate: Rate {
            records: delivered,
            bytes: bytes * delivered / total.max(1),
            from_start: last - started,
            from_first: last - first.unwrap_or(started),
        },
        first_delivery: first.unwrap_or(last) - started,
        invocations,
        peak_rss_kb,
        rss_at_end_kb,
        cpu,
        steady_cpu_us_per_record,
        per_second: delivered_per_second,
        shutdown,
        offsets,
        log,
    })
}

/// Committed offsets of the mapping's group, read by the test kit's own client, against the end of
/// every partition (`ends`: the acknowledged records, as tansu's own end offsets can be wrong).
async fn check_offsets(bootstrap: &str, group: &str, topic: &str, ends: &BTreeMap<i32, i64>) -> Result<OffsetCheck> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    let offsets = tokio::task::spawn_blocking(move || kafka::group_offsets(&bootstrap, &group, &topic, &[])).await??;
    let committed: BTreeMap<i32, Option<i64>> = offsets.partitions.iter().map(|p| (p.partition, p.committed)).collect();
    let behind: Vec<String> = ends
        .iter()
        .filter(|(p, end)| committed.get(p).copied().flatten() != Some(**end))
        .map(|(p, end)| {
            let c = committed.get(p).copied().flatten();
            format!("{p}: committed {} end {end}", c.map_or_else(|| "null".to_owned(), |c| c.to_string()))
        })
        .collect();
    let ok = behind.is_empty() && !ends.is_empty();
    let summary = if ok {
        format!("committed == end offset on all {} partitions", ends.len())
    } else {
        format!("MISMATCH: {}", behind.join("; "))
    };
    Ok(OffsetCheck { ok, summary })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// A fresh tansu with the benchmark's records in a new topic.
struct Filled {
    tansu: Tansu,
    pid: Option<u32>,
    topic: String,
    ends: BTreeMap<i32, i64>,
    /// Records in the topic (the sum of the end offsets).
    total: u64,
}

/// Starts a tansu, creates the topic and pre-fills it. Each measurement gets a broker of its own:
/// tansu 0.6 gets slower with every full read of a topic (see the "after (b)" read), so a second
/// reader on the same broker would be handicapped.
async fn fresh_broker(args: &RunArgs, label: &str) -> Result<Filled> {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await??;
    let pid = find_pid(&["tansu", &format!("tcp://127.0.0.1:{} ", tansu.port)])
        .or_else(|| find_pid(&["tansu", &format!("tcp://127.0.0.1:{}", tansu.port)]));
    let topic = kafka::random_topic("bench");
    kafka::create_topic(&tansu.bootstrap, &topic, i32::try_from(args.partitions)?).await?;
    let (fill, produced) = prefill(&tansu.bootstrap, &topic, args).await?;
    let mut lookups = end_offsets(&tansu.bootstrap, &topic, args.partitions).await?;
    if args.batched {
        // tansu 0.6 answers wrong end offsets after multi-record batches: a new topic's partition
        // ends where the acknowledged records end.
        let acknowledged: BTreeMap<i32, i64> =
            (0..).zip(&produced).map(|(p, &n)| Ok((p, i64::try_from(n)?))).collect::<Result<_>>()?;
        if acknowledged != lookups.ends {
            println!(
                "    note: tansu's end offsets {:?} are not the acknowledged records {:?} (tansu 0.6 after producer batches); measuring against the acknowledged",
                lookups.ends.values().collect::<Vec<_>>(),
                acknowledged.values().collect::<Vec<_>>()
            );
        }
        lookups.ends = acknowledged;
    }
    let total = u64::try_from(lookups.ends.values().sum::<i64>())?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: fresh tansu, {} records pre-filled in {:.1} s ({:.0} records/s, {})",
        args.records,
        fill.as_secs_f64(),
        per_s(args.records as f64, fill),
        if args.batched { "producer-batched" } else { "one record per produce batch" }
    );
    println!(
        "    offset requests: watermarks of {} partitions one by one (as the poller resolves a starting position) {:.0} ms; earliest offsets of all in one ListOffsets request {:.0} ms; one synchronous OffsetCommit of all {:.1} ms (mean of {COMMIT_PROBES})",
        args.partitions,
        ms(lookups.one_by_one),
        ms(lookups.batched),
        ms(lookups.commit)
    );
    if total != args.records {
        println!("    note: the end offsets add up to {total}, not {}; measuring against {total}", args.records);
    }
    Ok(Filled { tansu, pid, topic, ends: lookups.ends, total })
}

async fn measure_raw(label: &str, broker: &Filled, args: &RunArgs, ticks: f64) -> Result<(Rate, CpuUse)> {
    let meter = CpuMeter::start(ticks, &[("bench", Some(std::process::id())), ("tansu", broker.pid)]);
    let rate = raw_fetch(&broker.tansu.bootstrap, &broker.topic, &broker.ends, args).await?;
    if rate.records != broker.total {
        bail!("raw fetch read {} records, expected {}", rate.records, broker.total);
    }
    let cpu = meter.stop();
    println!("    {label}: {}", rate.describe());
    println!(
        "        CPU seconds: {cpu}; the reading process {} per record",
        cpu.of("bench").map_or("unknown".to_owned(), |s| format!("{:.2} us", s * 1e6 / rate.records.max(1) as f64))
    );
    Ok((rate, cpu))
}

#[allow(clippy::too_many_lines)]
pub async fn run(args: RunArgs) -> Result<()> {
    if args.partitions == 0 || args.records == 0 {
        bail!("BENCH_RECORDS and BENCH_PARTITIONS must be positive");
    }
    if !args.raw_only && !args.esm.exists() {
        bail!(
            "{} not found: build it with `cargo build --profile profiling --bin esm -p kafka-esm`",
            args.esm.display()
        );
    }
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let ticks = clock_ticks_per_second();
    println!(
        "kafka-esm bench: {} records x {} B over {} partitions, BatchSize {}, window {} s, fetch.wait.max.ms {}, queued.max.messages.kbytes {}, fetch.queue.backoff.ms {}",
        args.records,
        args.record_bytes,
        args.partitions,
        args.batch_size,
        args.window_s,
        args.fetch_wait_ms,
        args.queued_max_kbytes,
        args.fetch_queue_backoff_ms
    );
    println!(
        "machine: nproc {cores} ({}), load average at start {}, revision {}",
        cpu_model(),
        first_line("/proc/loadavg").unwrap_or_default(),
        revision()
    );
    let raw_label = format!(
        "(a) raw fetch: rdkafka StreamConsumer with the product's settings, all partitions assigned from offset 0, split partition queues, one tokio task per partition{}",
        if args.raw_config.iter().all(|s| s.trim().is_empty()) {
            String::new()
        } else {
            format!("; extra settings {}", args.raw_config.join(","))
        }
    );

    if args.raw_only {
        let broker = fresh_broker(&args, "(a) broker A").await?;
        println!("{raw_label}");
        for run in 1..=args.raw_runs {
            measure_raw(&format!("read {run}"), &broker, &args, ticks).await?;
        }
        return Ok(());
    }
    let dynalite = tokio::task::spawn_blocking(Dynalite::start).await??;
    let throughput =
        if args.latency_only { None } else { Some(throughput(&args, &raw_label, &dynalite, ticks).await?) };
    let mut latencies = Vec::new();
    if args.latency_s > 0 {
        let tansu = tokio::task::spawn_blocking(Tansu::start).await??;
        for &wait in &args.latency_fetch_waits {
            println!(
                "(d) latency at fetch.wait.max.ms {wait}: {} records/s over {} partitions for {} s, read at once by a raw consumer (produce -> consume) and by esm poll (produce -> the stub receiving the invoke), window 0, on a fresh tansu",
                args.latency_rate, args.latency_partitions, args.latency_s
            );
            let l = latency::measure(&args, &tansu.bootstrap, &dynalite, wait, ticks).await?;
            let (p50, p99) = latency::overhead(&l);
            println!("    raw: {}", l.raw);
            println!("    e2e: {}", l.e2e);
            println!(
                "    overhead: p50 {p50:+.1} ms (target <= 1 ms: {}), p99 {p99:+.1} ms (target <= 5 ms: {}); esm poll CPU {} per record at this rate",
                verdict(p50 <= 1.0),
                verdict(p99 <= 5.0),
                l.poller_cpu_us_per_record.map_or("unknown".to_owned(), |us| format!("{us:.0} us"))
            );
            latencies.push(l);
        }
    }

    println!("summary (revision {}):", revision());
    println!("    | measure | raw consumer | esm poll | ratio / overhead | target |");
    println!("    |---|---|---|---|---|");
    if let Some(t) = &throughput {
        // From the first record to the last, as the poller's start-up (DynamoDB, leases,
        // starting offsets: about half a second) is no part of its throughput.
        let ratio = t.e2e.rate.steady_records_per_s() / t.raw.steady_records_per_s();
        println!(
            "    | records/s, first to last record ({} x {} B, {} partitions, {}) | {:.0} | {:.0} | {ratio:.2} (from start {:.2}) | >= 0.90: {} |",
            t.total,
            args.record_bytes,
            args.partitions,
            if args.batched { "producer-batched" } else { "one record per batch" },
            t.raw.steady_records_per_s(),
            t.e2e.rate.steady_records_per_s(),
            t.e2e.rate.records_per_s() / t.raw.records_per_s(),
            verdict(ratio >= 0.9)
        );
        let per_record =
            |s: Option<f64>| s.map_or("unknown".to_owned(), |s| format!("{:.2}", s * 1e6 / t.total as f64));
        let steady = t.e2e.steady_cpu_us_per_record;
        println!(
            "    | CPU us per record (reading process; esm poll from its first record, and over its life) | {} | {} ({}) | | esm poll <= 3: {} |",
            per_record(t.raw_cpu.of("bench")),
            steady.map_or("unknown".to_owned(), |us| format!("{us:.2}")),
            per_record(t.e2e.cpu.of("esm poll")),
            verdict(steady.is_some_and(|us| us <= 3.0))
        );
        let peak_mib = t.e2e.peak_rss_kb.map(|kb| kb as f64 / 1024.0);
        println!(
            "    | peak RSS, {} partitions, function {} ms | | {} | | <= 64 MiB: {} |",
            args.partitions,
            args.stub_delay_ms,
            peak_mib.map_or("unknown".to_owned(), |m| format!("{m:.1} MiB")),
            verdict(peak_mib.is_some_and(|m| m <= 64.0))
        );
    }
    for l in &latencies {
        let (p50, p99) = latency::overhead(l);
        println!(
            "    | latency p50 / p99 ms, fetch wait {} ms | {:.1} / {:.1} | {:.1} / {:.1} | {p50:+.1} / {p99:+.1} | <= +1 / +5: {} |",
            l.fetch_wait_ms,
            l.raw.p50_ms,
            l.raw.p99_ms,
            l.e2e.p50_ms,
            l.e2e.p99_ms,
            verdict(p50 <= 1.0 && p99 <= 5.0)
        );
    }
    println!("reproduce: {}", args.reproduce());
    if let Some(t) = &throughput
        && !t.e2e.offsets.ok
    {
        bail!("the poller did not commit every delivered record");
    }
    Ok(())
}

/// The throughput phases' results.
struct Throughput {
    total: u64,
    raw: Rate,
    raw_cpu: CpuUse,
    e2e: EndToEnd,
}

#[allow(clippy::too_many_lines)]
async fn throughput(args: &RunArgs, raw_label: &str, dynalite: &Dynalite, ticks: f64) -> Result<Throughput> {
    let broker = fresh_broker(args, "(a) broker A").await?;
    println!("{raw_label}");
    let (raw, raw_cpu) = measure_raw("first read of broker A", &broker, args, ticks).await?;
    drop(broker);

    let dynalite_port = dynalite.endpoint.rsplit(':').next().unwrap_or_default();
    let dynalite_pid = find_pid(&["dynalite", "--port", dynalite_port]);
    let stub = InvokeStub::start_on(0, false).await;
    stub.set_delay(Duration::from_millis(args.stub_delay_ms));
    let broker = fresh_broker(args, "(b) broker B").await?;
    let total = broker.total;
    println!(
        "(b) end to end: {} poll -> counting Invoke stub ({} ms per invocation), offsets committed",
        args.esm.display(),
        args.stub_delay_ms
    );
    let services = [("tansu", broker.pid), ("dynalite", dynalite_pid)];
    let e2e = end_to_end(
        args,
        &broker.tansu.bootstrap,
        &broker.topic,
        &broker.ends,
        total,
        raw.bytes,
        dynalite,
        &stub,
        &services,
        ticks,
    )
    .await?;
    println!("    {}", e2e.rate.describe());
    println!(
        "    first record delivered {:.2} s after the poller started; {} invocations, {:.0} records each on average",
        e2e.first_delivery.as_secs_f64(),
        e2e.invocations,
        e2e.rate.records as f64 / e2e.invocations.max(1) as f64
    );
    if let Some(middle) = e2e.middle {
        println!(
            "    10% -> 90% of the records took {:.2} s = {:.0} records/s",
            middle.as_secs_f64(),
            per_s(total as f64 * 0.8, middle)
        );
    }
    let mut timeline = String::new();
    for (i, n) in e2e.per_second.iter().enumerate() {
        let _ = write!(timeline, "{}{n}", if i == 0 { "" } else { " " });
    }
    println!("    records delivered in each second: {timeline}");
    println!(
        "    CPU seconds: {}; esm poll from its first record {} per record",
        e2e.cpu,
        e2e.steady_cpu_us_per_record.map_or("unknown".to_owned(), |us| format!("{us:.2} us"))
    );
    println!("    stopped {:.2} s after SIGTERM; offsets: {}", e2e.shutdown.as_secs_f64(), e2e.offsets.summary);
    println!("    poller log: {}", e2e.log.display());
    let kb_to_mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "(c) poller peak RSS (VmHWM before SIGTERM): {}; RSS then: {}",
        e2e.peak_rss_kb.map_or("unknown".to_owned(), |kb| format!("{:.1} MiB", kb_to_mib(kb))),
        e2e.rss_at_end_kb.map_or("unknown".to_owned(), |kb| format!("{:.1} MiB", kb_to_mib(kb)))
    );
    println!("(a') raw fetch again, on broker B after (b): how much the broker slowed down (not used in the ratio)");
    let (raw_after, _) = measure_raw("second read of broker B", &broker, args, ticks).await?;

    let ratio = e2e.rate.records_per_s() / raw.records_per_s();
    let steady_ratio = e2e.rate.steady_records_per_s() / raw.steady_records_per_s();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("throughput:");
    println!(
        "    records {total}, record value {} B, partitions {}, BatchSize {}, window {} s, nproc {cores}, load average now {}",
        args.record_bytes,
        args.partitions,
        args.batch_size,
        args.window_s,
        first_line("/proc/loadavg").unwrap_or_default()
    );
    println!(
        "    raw fetch {:.0} records/s ({:.1} MB/s), end to end {:.0} records/s ({:.1} MB/s); each the first read of a fresh broker, from start",
        raw.records_per_s(),
        per_s(raw.bytes as f64 / MB, raw.from_start),
        e2e.rate.records_per_s(),
        per_s(e2e.rate.bytes as f64 / MB, e2e.rate.from_start)
    );
    println!(
        "    e2e / raw = {ratio:.2} from start, {steady_ratio:.2} from the first record (target >= 0.90: {}); a raw read of broker B after (b) ran at {:.2} x the raw read of broker A",
        verdict(steady_ratio >= 0.9),
        raw_after.records_per_s() / raw.records_per_s()
    );
    println!("    offsets committed: {}", if e2e.offsets.ok { "yes" } else { "NO" });
    Ok(Throughput { total, raw, raw_cpu, e2e })
}
