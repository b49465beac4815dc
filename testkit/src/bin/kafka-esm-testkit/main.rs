//! `kafka-esm-testkit`: the test kit as one command for the scripts (`scripts/*.sh`), so test
//! tooling is written once, in Rust, and shared with the tests (`kafka_esm_testkit`).
//!
//! - `produce`: records into a topic, one per producer batch (tansu) or producer-batched, at a
//!   rate or as fast as possible, with sizes, keys, headers and a produce-time stamp.
//! - `offsets`: a consumer group's committed offsets, end offsets and lag, read by the test
//!   kit's own client.
//! - `stub`: the counting Invoke API stub.
//! - `bench`: the throughput and memory benchmark (`scripts/bench.sh`).
//! - `lambda-front`, `sample-offsets`, `handoff-report`: `scripts/handoff-gap.sh`.
//! - `ddb-proxy`, `ddb-leases`, `ddb-reset`, `ddb-report`: `scripts/ddb-calls.sh`.
//! - `soak`: `esm poll` processes killed, terminated and restarted at random while records flow
//!   and the leases table has outages (`scripts/soak.sh`).
//! - `json-field`: one field of a JSON document on stdin (the scripts need no other JSON tool).
//!
//! Long-running subcommands stop cleanly on SIGTERM or SIGINT.

mod bench;
mod ddb;
mod front;
mod handoff;
mod http;
mod soak;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use kafka_esm_testkit::InvokeStub;
use kafka_esm_testkit::kafka::{self, Batching, Stamp, ValueShape, Workload};
use rdkafka::producer::Producer as _;

/// The test kit's tools for scripts: producers, offsets, stubs, fronts, proxies, benchmarks.
#[derive(Debug, Parser)]
#[command(name = "kafka-esm-testkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce records to a topic.
    Produce(ProduceArgs),
    /// Print a consumer group's committed offsets, end offsets and lag on a topic.
    Offsets(OffsetsArgs),
    /// Serve the counting Invoke API stub (`GET /__stub/counts`, `POST /__stub/reset`).
    Stub {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// How long each invocation takes.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Print nothing but the address (no counts every second).
        #[arg(long)]
        quiet: bool,
    },
    /// Throughput and memory of `esm poll` (scripts/bench.sh).
    #[command(alias = "run")]
    Bench(bench::RunArgs),
    /// A front for `cargo lambda watch`: real deadlines, asynchronous invokes (handoff-gap.sh).
    LambdaFront(front::FrontArgs),
    /// Sample a group's committed offsets and high watermarks to a JSON-lines file until SIGTERM.
    SampleOffsets(handoff::SampleArgs),
    /// The handoff-gap report; exits 1 when a check fails.
    HandoffReport(handoff::ReportArgs),
    /// A counting proxy in front of DynamoDB (ddb-calls.sh).
    DdbProxy(ddb::ProxyArgs),
    /// Are the leases settled? Exit 0 steady, 3 not, 4 steady but changed since --compare.
    DdbLeases(ddb::LeasesArgs),
    /// Zero the counting proxy's and the Invoke stub's counts.
    DdbReset(ddb::ResetArgs),
    /// The DynamoDB calls report.
    DdbReport(ddb::ReportArgs),
    /// Kill, terminate and restart `esm poll` processes while records flow (scripts/soak.sh);
    /// exits 1 when a record was lost or a partition had two invocations at once.
    Soak(soak::SoakArgs),
    /// Print one field of the JSON document on stdin (strings bare, other values as JSON).
    JsonField {
        /// A top-level field name, or a JSON pointer (`/a/0/b`).
        field: String,
    },
}

#[derive(Debug, Args)]
struct ProduceArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    /// Partitions to spread over, round-robin (default: all of the topic's).
    #[arg(long)]
    partitions: Option<i32>,
    /// Records to produce (default: until SIGTERM or --stop-file).
    #[arg(long)]
    count: Option<u64>,
    /// Records per second over all partitions (default: as fast as acknowledgements allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop when this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Batch as real producers do (linger.ms 5, batch.num.messages 10000) instead of one
    /// record per batch (what tansu 0.6 needs: a fetch starting inside a multi-record batch
    /// skips the rest of it).
    #[arg(long)]
    batched: bool,
    #[arg(long, value_enum, default_value_t = ValueShape::Sequence)]
    value: ValueShape,
    /// Pad or size values to this many bytes.
    #[arg(long, default_value_t = 0)]
    record_bytes: usize,
    /// Cycle through this many keys (`{key-prefix}{i % N}`); 0: a new key per record.
    #[arg(long, default_value_t = 0, conflicts_with = "no_keys")]
    keys: u64,
    #[arg(long)]
    no_keys: bool,
    #[arg(long, default_value = "k-")]
    key_prefix: String,
    /// Put the produce time (epoch ms) in the value or a `produced-at-ms` header.
    #[arg(long, value_enum, default_value_t = Stamp::None)]
    stamp: Stamp,
    /// A header on every record, NAME=VALUE (repeat for more).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Records awaiting acknowledgement at most.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// Produce requests in flight per connection (1 keeps every partition in order).
    #[arg(long, default_value_t = 1)]
    requests_in_flight: u32,
    /// Write the per-partition counts as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{text}: not NAME=VALUE"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OffsetsFormat {
    /// One line per partition and the total lag.
    Text,
    Json,
    /// `LAG COMMITTED END` summed over the partitions, on one line (for shell loops).
    Totals,
}

#[derive(Debug, Args)]
struct OffsetsArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    topic: String,
    #[arg(long, value_enum, default_value_t = OffsetsFormat::Text)]
    format: OffsetsFormat,
    /// Same as --format json.
    #[arg(long)]
    json: bool,
    /// PEM CA bundle: connect over TLS trusting it.
    #[arg(long)]
    ca: Option<PathBuf>,
}

/// Resolves on SIGTERM or SIGINT.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Produce(args) => produce(args).await,
        Command::Offsets(args) => offsets(args).await,
        Command::Stub { port, delay_ms, quiet } => serve_stub(port, delay_ms, quiet).await,
        Command::Bench(args) => bench::run(args).await,
        Command::LambdaFront(args) => front::run(args).await,
        Command::SampleOffsets(args) => handoff::sample(args).await,
        Command::HandoffReport(args) => exit_on(handoff::report(&args)?),
        Command::DdbProxy(args) => ddb::proxy(args).await,
        Command::DdbLeases(args) => std::process::exit(ddb::leases(args).await?),
        Command::DdbReset(args) => ddb::reset(args).await,
        Command::DdbReport(args) => ddb::report(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::JsonField { field } => json_field(&field),
    }
}

fn exit_on(ok: bool) -> Result<()> {
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn produce(args: ProduceArgs) -> Result<()> {
    let batching = if args.batched { Batching::Batched } else { Batching::OnePerBatch };
    let requests = args.requests_in_flight.to_string();
    let producer = kafka::Producer::with_batching(
        &args.bootstrap,
        batching,
        &[("max.in.flight.requests.per.connection", requests.as_str())],
    )?;
    let partitions = match args.partitions {
        Some(p) if p > 0 => p,
        Some(p) => bail!("--partitions {p}: must be positive"),
        None => {
            let (client, topic) = (producer.client().client(), args.topic.clone());
            let metadata = tokio::task::block_in_place(|| client.fetch_metadata(Some(&topic), Duration::from_secs(10)))
                .context("read the topic's metadata")?;
            let count = metadata.topics().iter().find(|t| t.name() == args.topic).map_or(0, |t| t.partitions().len());
            if count == 0 {
                bail!("topic {} not found (or it has no partitions)", args.topic);
            }
            i32::try_from(count)?
        }
    };
    let workload = Workload {
        topic: args.topic.clone(),
        partitions,
        count: args.count,
        rate: args.rate,
        value: args.value,
        record_bytes: args.record_bytes,
        keys: (!args.no_keys).then_some(args.keys),
        key_prefix: args.key_prefix,
        stamp: args.stamp,
        headers: args.headers,
        in_flight: args.in_flight,
    };
    let stop_file = args.stop_file.clone();
    let stop = async move {
        let file = async {
            match stop_file {
                Some(path) => {
                    while !path.exists() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = terminated() => {}
            () = file => {}
        }
    };
    let produced = producer.run(&workload, stop).await;
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string(&produced)?).with_context(|| format!("write {}", out.display()))?;
    }
    if produced.error_count > 0 {
        bail!("produce failed for {} records, e.g. {}", produced.error_count, produced.errors.join("; "));
    }
    println!("produced {} records to {} in {:.1} s", produced.total(), args.topic, produced.seconds);
    Ok(())
}

async fn offsets(args: OffsetsArgs) -> Result<()> {
    let format = if args.json { OffsetsFormat::Json } else { args.format };
    let offsets = tokio::task::spawn_blocking(move || {
        let tls = args.ca.as_deref().map(kafka::tls_settings).unwrap_or_default();
        let extra: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (*k, v.as_str())).collect();
        kafka::group_offsets(&args.bootstrap, &args.group, &args.topic, &extra)
    })
    .await??;
    match format {
        OffsetsFormat::Text => print!("{}", offsets.to_text()),
        OffsetsFormat::Json => println!("{}", serde_json::to_string(&offsets)?),
        OffsetsFormat::Totals => {
            let committed: i64 = offsets.partitions.iter().filter_map(|p| p.committed).sum();
            let end: i64 = offsets.partitions.iter().map(|p| p.high).sum();
            println!("{} {committed} {end}", offsets.lag);
        }
    }
    Ok(())
}

async fn serve_stub(port: u16, delay_ms: u64, quiet: bool) -> Result<()> {
    let stub = InvokeStub::start_on(port, false).await;
    stub.set_delay(Duration::from_millis(delay_ms));
    println!("Invoke stub at {}", stub.endpoint);
    let mut last = (u64::MAX, 0);
    let mut stop = std::pin::pin!(terminated());
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let counts = stub.counts();
        if !quiet && counts != last {
            println!("invocations={} records={}", counts.0, counts.1);
            last = counts;
        }
    }
}

fn json_field(field: &str) -> Result<()> {
    let value: serde_json::Value = serde_json::from_reader(std::io::stdin().lock()).context("stdin is not JSON")?;
    let found = if field.starts_with('/') { value.pointer(field) } else { value.get(field) };
    match found {
        Some(serde_json::Value::String(s)) => println!("{s}"),
        Some(other) => println!("{other}"),
        None => bail!("no field {field} in the JSON on stdin"),
    }
    Ok(())
}
