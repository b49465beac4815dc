//! `esm`: the EventSourceMapping commands with the AWS CLI's names, flags and JSON, plus `init`
//! (create the tables) and `poll` (run the poll loop here, over every enabled mapping).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, ApiError, CreateRequest, Item, UpdateRequest};
use crate::aws::lambda::LambdaFunctionResolver;
use crate::aws::mappings::{DynamoMappingStore, ensure_tables};
use crate::aws::poller::PollerParts;
use crate::config::Settings;
use crate::coordination::supervisor::Start;
use crate::model::mapping::{EventSourceMapping, StartingPosition};

/// kafka-esm: a self-hosted Kafka event source mapping for AWS Lambda.
///
/// The mapping commands take the same flags and print the same JSON as
/// `aws lambda …-event-source-mapping`. Tables: ESM_MAPPINGS_TABLE, ESM_LEASES_TABLE.
#[derive(Debug, Parser)]
#[command(name = "esm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the mappings and leases tables if they do not exist.
    Init,
    /// Create a mapping (as `aws lambda create-event-source-mapping`).
    CreateEventSourceMapping(CreateArgs),
    /// List mappings (as `aws lambda list-event-source-mappings`).
    ListEventSourceMappings(ListArgs),
    /// Show one mapping (as `aws lambda get-event-source-mapping`).
    GetEventSourceMapping(UuidArg),
    /// Change a mapping (as `aws lambda update-event-source-mapping`).
    UpdateEventSourceMapping(UpdateArgs),
    /// Delete a mapping (as `aws lambda delete-event-source-mapping`).
    DeleteEventSourceMapping(UuidArg),
    /// Run the poll loop here over every enabled mapping until Ctrl-C / SIGTERM (or --duration).
    Poll(PollArgs),
}

#[derive(Debug, Args)]
struct UuidArg {
    #[arg(long)]
    uuid: String,
}

/// Flags shared by create and update.
#[derive(Debug, Args)]
struct CommonArgs {
    #[arg(long)]
    batch_size: Option<u32>,
    #[arg(long)]
    maximum_batching_window_in_seconds: Option<u32>,
    /// Enable the mapping (the default on create).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enabled")]
    enabled: bool,
    /// Create or leave the mapping disabled.
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "enabled")]
    no_enabled: bool,
    /// JSON list of {"Type","URI"}, or shorthand `Type=…,URI=… Type=…,URI=…`.
    #[arg(long, num_args = 1..)]
    source_access_configurations: Vec<String>,
    /// JSON `{"Filters":[{"Pattern":"…"}]}`: records no pattern matches are committed, never sent.
    #[arg(long)]
    filter_criteria: Option<String>,
    /// JSON `{"OnFailure":{"Destination":"…"}}`: SQS, SNS or S3 ARN, kafka://TOPIC or
    /// kafka://HOST:PORT[,HOST:PORT]/TOPIC; where given-up records go.
    #[arg(long)]
    destination_config: Option<String>,
    /// Retries after the first attempt before a batch is given up: -1 (forever; 10 with a
    /// destination) or 0–10000.
    #[arg(long, allow_hyphen_values = true)]
    maximum_retry_attempts: Option<i32>,
    /// Records older than this (by Kafka timestamp) are given up: -1 (never) or 60–604800.
    #[arg(long, allow_hyphen_values = true)]
    maximum_record_age_in_seconds: Option<i32>,
    /// Split a batch in two halves on a function error.
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_bisect_batch_on_function_error")]
    bisect_batch_on_function_error: bool,
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "bisect_batch_on_function_error")]
    no_bisect_batch_on_function_error: bool,
    /// ReportBatchItemFailures: the function may name the first record to send again.
    #[arg(long, num_args = 1..)]
    function_response_types: Vec<String>,
    /// JSON or shorthand `MinimumPollers=1,MaximumPollers=3`.
    #[arg(long)]
    provisioned_poller_config: Option<String>,
    /// JSON or shorthand `Metrics=EventCount`. Stored and echoed: every metric is always counted.
    #[arg(long)]
    metrics_config: Option<String>,
    /// JSON or shorthand `ConsumerGroupId=…`.
    #[arg(long)]
    amazon_managed_kafka_event_source_config: Option<String>,
    /// JSON or shorthand `ConsumerGroupId=…`.
    #[arg(long)]
    self_managed_kafka_event_source_config: Option<String>,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Function name, ARN, or qualified ARN.
    #[arg(long)]
    function_name: String,
    /// The MSK cluster's ARN.
    #[arg(long)]
    event_source_arn: Option<String>,
    /// JSON `{"Endpoints":{"KAFKA_BOOTSTRAP_SERVERS":["host:port"]}}` or shorthand
    /// `Endpoints={KAFKA_BOOTSTRAP_SERVERS=[host:port,host:port]}`.
    #[arg(long)]
    self_managed_event_source: Option<String>,
    #[arg(long, num_args = 1..)]
    topics: Vec<String>,
    /// TRIM_HORIZON, LATEST or AT_TIMESTAMP.
    #[arg(long)]
    starting_position: Option<String>,
    /// Seconds since the epoch, or an RFC 3339 time (with AT_TIMESTAMP).
    #[arg(long)]
    starting_position_timestamp: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    #[arg(long)]
    uuid: String,
    #[arg(long)]
    function_name: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[arg(long)]
    function_name: Option<String>,
    #[arg(long)]
    event_source_arn: Option<String>,
    #[arg(long)]
    max_items: Option<usize>,
    #[arg(long)]
    starting_token: Option<String>,
}

#[derive(Debug, Args)]
struct PollArgs {
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    progress_interval: f64,
}

/// A failed command: printed the way the AWS CLI prints it.
#[derive(Debug)]
struct Failure {
    operation: &'static str,
    error: ApiError,
}

/// Runs `esm` with the process's arguments.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command).await {
        Ok(Some(output)) => {
            print_json(&output);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(Failure { operation, error }) => {
            eprintln!("\nAn error occurred ({}) when calling the {operation} operation: {}", error.code, error.message);
            // The AWS CLI's exit status for a service error.
            ExitCode::from(254)
        }
    }
}

fn print_json(value: &Value) {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    if serde::Serialize::serialize(value, &mut ser).is_ok() {
        out.push(b'\n');
        let _ = std::io::stdout().write_all(&out);
    }
}

/// `EventSourceMappingConfiguration`'s members in the order of the Lambda service model
/// (botocore's `lambda/2015-03-31/service-2.json`). The AWS CLI prints a response's keys in this
/// order whatever order the service sent them in: its JSON parser walks the shape's members.
const AWS_KEY_ORDER: [&str; 33] = [
    "UUID",
    "StartingPosition",
    "StartingPositionTimestamp",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "EventSourceArn",
    "FilterCriteria",
    "FilterCriteriaError",
    "KMSKeyArn",
    "MetricsConfig",
    "LoggingConfig",
    "ScalingConfig",
    "FunctionArn",
    "LastModified",
    "LastProcessingResult",
    "State",
    "StateTransitionReason",
    "DestinationConfig",
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "FunctionResponseTypes",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "EventSourceMappingArn",
    "ProvisionedPollerConfig",
];

/// The AWS shape of a mapping: the stored item without kafka-esm's `Version`, keys in the order
/// the AWS CLI prints them.
pub fn aws_json(mapping: &EventSourceMapping) -> Value {
    item_json(&Item::Mapping(Box::new(mapping.clone())))
}

/// [`aws_json`] for anything `get`/`list` return, unreadable items included.
pub fn item_json(item: &Item) -> Value {
    let Value::Object(mut fields) = item.to_json() else {
        return Value::Null;
    };
    fields.remove("Version");
    let mut ordered = serde_json::Map::new();
    for key in AWS_KEY_ORDER {
        if let Some(value) = fields.remove(key) {
            ordered.insert(key.to_owned(), value);
        }
    }
    // Anything the list does not know yet keeps its place at the end.
    ordered.extend(fields);
    Value::Object(ordered)
}

async fn run(command: Command) -> Result<Option<Value>, Failure> {
    let sdk = crate::aws::sdk_config().await;
    let settings = Settings::from_env()
        .map_err(|e| Failure { operation: "Configure", error: ApiError::invalid(e.to_string()) })?;
    let tables = settings.tables.clone();
    let dynamo = crate::aws::dynamodb_client(&sdk);
    let store = DynamoMappingStore::new(dynamo.clone(), &tables.mappings);
    let functions = LambdaFunctionResolver::new(aws_sdk_lambda::Client::new(&sdk));
    match command {
        Command::Init => {
            let created = ensure_tables(&dynamo, &tables).await.map_err(|e| Failure {
                operation: "CreateTable",
                error: ApiError { code: "ServiceException", message: e.to_string() },
            })?;
            Ok(Some(
                serde_json::json!({ "MappingsTable": tables.mappings, "LeasesTable": tables.leases, "Created": created }),
            ))
        }
        Command::CreateEventSourceMapping(args) => {
            let op = "CreateEventSourceMapping";
            let request = create_request(args).map_err(|error| Failure { operation: op, error })?;
            let mapping =
                api::create(&store, &functions, request).await.map_err(|error| Failure { operation: op, error })?;
            Ok(Some(aws_json(&mapping)))
        }
        Command::ListEventSourceMappings(args) => {
            let page = api::list(
                &store,
                args.function_name.as_deref(),
                args.event_source_arn.as_deref(),
                args.starting_token.as_deref(),
                args.max_items,
            )
            .await
            .map_err(|error| Failure { operation: "ListEventSourceMappings", error })?;
            let mut out =
                serde_json::json!({ "EventSourceMappings": page.mappings.iter().map(item_json).collect::<Vec<_>>() });
            if let Some(token) = page.next_marker {
                out["NextToken"] = Value::String(token);
            }
            Ok(Some(out))
        }
        Command::GetEventSourceMapping(args) => {
            let item = api::get(&store, &args.uuid)
                .await
                .map_err(|error| Failure { operation: "GetEventSourceMapping", error })?;
            Ok(Some(item_json(&item)))
        }
        Command::UpdateEventSourceMapping(args) => {
            let op = "UpdateEventSourceMapping";
            let request = update_request(args).map_err(|error| Failure { operation: op, error })?;
            let mapping =
                api::update(&store, &functions, request).await.map_err(|error| Failure { operation: op, error })?;
            Ok(Some(aws_json(&mapping)))
        }
        Command::DeleteEventSourceMapping(args) => {
            let item = api::delete(&store, &args.uuid)
                .await
                .map_err(|error| Failure { operation: "DeleteEventSourceMapping", error })?;
            Ok(Some(item_json(&item)))
        }
        Command::Poll(args) => {
            poll(&sdk, settings, args)
                .await
                .map_err(|message| Failure { operation: "Poll", error: ApiError::invalid(message) })?;
            Ok(None)
        }
    }
}

async fn poll(sdk: &aws_config::SdkConfig, settings: Settings, args: PollArgs) -> Result<(), String> {
    let seconds = |flag: &str, s: f64| {
        Duration::try_from_secs_f64(s.max(0.0)).map_err(|_| format!("--{flag} {s}: not a number of seconds"))
    };
    let duration = args.duration.map(|s| seconds("duration", s)).transpose()?;
    let progress_every = seconds("progress-interval", args.progress_interval)?;
    let parts = PollerParts::new(sdk, settings);
    let metrics = parts.deps.metrics.clone();
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    if let Some(duration) = duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
    if !progress_every.is_zero() {
        let (metrics, stop) = (metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(progress_every) => {}
                }
                let t = metrics.totals();
                let rate = t.invoked as f64 / start.elapsed().as_secs_f64().max(0.001);
                info!(
                    records = t.invoked,
                    batches = t.batches,
                    failed_invokes = t.failed_attempts,
                    filtered = t.filtered_out,
                    dropped = t.dropped,
                    records_per_s = rate.round(),
                    "Progress."
                );
            }
        });
    }
    parts.run(Start::Process, stop).await;
    let t = metrics.totals();
    info!(
        records = t.invoked,
        batches = t.batches,
        failed_invokes = t.failed_attempts,
        filtered = t.filtered_out,
        dropped = t.dropped,
        "Done."
    );
    Ok(())
}

/// The first Ctrl-C or SIGTERM stops the poller gracefully (finish in-flight invokes, commit,
/// release); a second one exits at once (the partitions move once the heartbeat is silent, and
/// what was not committed is delivered again).
fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            info!("Stopping: finishing in-flight invokes and committing (signal again to exit at once).");
            stop.cancel();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::warn!("Second signal: exiting now; what was not committed will be delivered again.");
        std::process::exit(130);
    });
}

/// Reads a JSON argument the way the AWS CLI does: inline JSON, `file://path`, or shorthand.
fn json_arg<T: DeserializeOwned>(flag: &str, raw: &str) -> Result<T, ApiError> {
    let text = match raw.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ApiError::invalid(format!("--{flag}: cannot read {path}: {e}")))?,
        None => raw.to_owned(),
    };
    let value: Value = if text.trim_start().starts_with(['{', '[']) {
        serde_json::from_str(&text).map_err(|e| ApiError::invalid(format!("--{flag}: invalid JSON: {e}")))?
    } else {
        shorthand(&text).map_err(|e| ApiError::invalid(format!("--{flag}: {e}")))?
    };
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("--{flag}: {e}")))
}

/// The AWS CLI shorthand subset in common use: `K=V,K2=V2`, nested `K={…}`, lists `K=[a,b]`.
/// Numbers and booleans are typed as such.
pub fn shorthand(text: &str) -> Result<Value, String> {
    let mut parser = Shorthand { chars: text.trim().chars().collect(), pos: 0 };
    let value = parser.object(None)?;
    if parser.pos < parser.chars.len() {
        return Err(format!("unexpected '{}' at position {}", parser.chars[parser.pos], parser.pos));
    }
    Ok(value)
}

struct Shorthand {
    chars: Vec<char>,
    pos: usize,
}

impl Shorthand {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn object(&mut self, close: Option<char>) -> Result<Value, String> {
        let mut map = serde_json::Map::new();
        loop {
            let key: String = self.take_while(|c| c != '=' && c != ',' && Some(c) != close);
            if self.peek() != Some('=') {
                return Err(format!("expected '=' after '{key}'"));
            }
            self.pos += 1;
            let value = self.value(close)?;
            map.insert(key.trim().to_owned(), value);
            match self.peek() {
                Some(',') => self.pos += 1,
                c if c == close => return Ok(Value::Object(map)),
                None => return Ok(Value::Object(map)),
                Some(c) => return Err(format!("unexpected '{c}'")),
            }
        }
    }

    fn value(&mut self, close: Option<char>) -> Result<Value, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let v = self.object(Some('}'))?;
                self.expect('}')?;
                Ok(v)
            }
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() != Some(']') {
                    if self.peek().is_none() {
                        return Err("missing ']'".into());
                    }
                    if self.peek() == Some('{') {
                        items.push(self.value(Some(']'))?);
                    } else {
                        let raw = self.take_while(|c| c != ',' && c != ']');
                        items.push(scalar(raw.trim()));
                    }
                    if self.peek() == Some(',') {
                        self.pos += 1;
                    }
                }
                self.expect(']')?;
                Ok(Value::Array(items))
            }
            _ => {
                let raw = self.take_while(|c| c != ',' && Some(c) != close);
                Ok(scalar(raw.trim()))
            }
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{c}'"))
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

fn scalar(raw: &str) -> Value {
    if let Ok(n) = raw.parse::<i64>() {
        return Value::from(n);
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(raw.to_owned()),
    }
}

/// `--source-access-configurations` takes a JSON list or one shorthand item per word.
fn access_configs(raw: &[String]) -> Result<Option<Vec<crate::model::mapping::SourceAccessConfiguration>>, ApiError> {
    match raw {
        [] => Ok(None),
        [one] if one.trim_start().starts_with('[') || one.starts_with("file://") => {
            json_arg("source-access-configurations", one).map(Some)
        }
        items => {
            items.iter().map(|i| json_arg("source-access-configurations", i)).collect::<Result<Vec<_>, _>>().map(Some)
        }
    }
}

fn enabled_flag(common: &CommonArgs) -> Option<bool> {
    match (common.enabled, common.no_enabled) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

fn bisect_flag(common: &CommonArgs) -> Option<bool> {
    match (common.bisect_batch_on_function_error, common.no_bisect_batch_on_function_error) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

fn opt_json<T: DeserializeOwned>(flag: &str, raw: Option<&String>) -> Result<Option<T>, ApiError> {
    raw.map(|r| json_arg(flag, r)).transpose()
}

/// `--metrics-config`: the AWS CLI reads the shorthand `Metrics=EventCount` as a one-item list
/// (it knows from the model that `Metrics` is a list); so do we.
fn metrics_config(raw: Option<&String>) -> Result<Option<Value>, ApiError> {
    let mut config: Option<Value> = opt_json("metrics-config", raw)?;
    if let Some(metrics) = config.as_mut().and_then(|c| c.get_mut("Metrics"))
        && metrics.is_string()
    {
        *metrics = Value::Array(vec![metrics.take()]);
    }
    Ok(config)
}

fn create_request(args: CreateArgs) -> Result<CreateRequest, ApiError> {
    let c = &args.common;
    let starting_position = args
        .starting_position
        .as_deref()
        .map(|p| {
            serde_json::from_value::<StartingPosition>(Value::String(p.to_owned())).map_err(|_| {
                ApiError::invalid(format!("StartingPosition '{p}' is not one of TRIM_HORIZON, LATEST, AT_TIMESTAMP."))
            })
        })
        .transpose()?;
    let starting_position_timestamp = args.starting_position_timestamp.as_deref().map(parse_timestamp).transpose()?;
    Ok(CreateRequest {
        function_name: args.function_name,
        event_source_arn: args.event_source_arn,
        self_managed_event_source: opt_json("self-managed-event-source", args.self_managed_event_source.as_ref())?,
        topics: args.topics,
        starting_position,
        starting_position_timestamp,
        batch_size: c.batch_size,
        maximum_batching_window_in_seconds: c.maximum_batching_window_in_seconds,
        enabled: enabled_flag(c),
        amazon_managed_kafka_event_source_config: opt_json(
            "amazon-managed-kafka-event-source-config",
            c.amazon_managed_kafka_event_source_config.as_ref(),
        )?,
        self_managed_kafka_event_source_config: opt_json(
            "self-managed-kafka-event-source-config",
            c.self_managed_kafka_event_source_config.as_ref(),
        )?,
        source_access_configurations: access_configs(&c.source_access_configurations)?,
        filter_criteria: opt_json("filter-criteria", c.filter_criteria.as_ref())?,
        destination_config: opt_json("destination-config", c.destination_config.as_ref())?,
        maximum_retry_attempts: c.maximum_retry_attempts,
        maximum_record_age_in_seconds: c.maximum_record_age_in_seconds,
        bisect_batch_on_function_error: bisect_flag(c),
        function_response_types: (!c.function_response_types.is_empty()).then(|| c.function_response_types.clone()),
        provisioned_poller_config: opt_json("provisioned-poller-config", c.provisioned_poller_config.as_ref())?,
        metrics_config: metrics_config(c.metrics_config.as_ref())?,
    })
}

fn update_request(args: UpdateArgs) -> Result<UpdateRequest, ApiError> {
    let c = &args.common;
    Ok(UpdateRequest {
        uuid: args.uuid,
        function_name: args.function_name,
        enabled: enabled_flag(c),
        batch_size: c.batch_size,
        maximum_batching_window_in_seconds: c.maximum_batching_window_in_seconds,
        source_access_configurations: access_configs(&c.source_access_configurations)?,
        filter_criteria: opt_json("filter-criteria", c.filter_criteria.as_ref())?,
        destination_config: opt_json("destination-config", c.destination_config.as_ref())?,
        maximum_retry_attempts: c.maximum_retry_attempts,
        maximum_record_age_in_seconds: c.maximum_record_age_in_seconds,
        bisect_batch_on_function_error: bisect_flag(c),
        function_response_types: (!c.function_response_types.is_empty()).then(|| c.function_response_types.clone()),
        provisioned_poller_config: opt_json("provisioned-poller-config", c.provisioned_poller_config.as_ref())?,
        metrics_config: metrics_config(c.metrics_config.as_ref())?,
        amazon_managed_kafka_event_source_config: opt_json(
            "amazon-managed-kafka-event-source-config",
            c.amazon_managed_kafka_event_source_config.as_ref(),
        )?,
        self_managed_kafka_event_source_config: opt_json(
            "self-managed-kafka-event-source-config",
            c.self_managed_kafka_event_source_config.as_ref(),
        )?,
    })
}

/// Epoch seconds, or RFC 3339 (`2026-11-25T10:00:00Z`).
fn parse_timestamp(raw: &str) -> Result<f64, ApiError> {
    if let Ok(seconds) = raw.trim().parse::<f64>() {
        return Ok(seconds);
    }
    humantime::parse_rfc3339_weak(raw.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "StartingPositionTimestamp '{raw}' is neither epoch seconds nor an RFC 3339 time."
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shorthand_covers_the_common_aws_cli_forms() {
        assert_eq!(
            shorthand("Endpoints={KAFKA_BOOTSTRAP_SERVERS=[b-1:9092,b-2:9092]}").unwrap(),
            json!({"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1:9092", "b-2:9092"]}})
        );
        assert_eq!(
            shorthand("MinimumPollers=1,MaximumPollers=3").unwrap(),
            json!({"MinimumPollers": 1, "MaximumPollers": 3})
        );
        assert_eq!(
            shorthand("Type=SERVER_ROOT_CA_CERTIFICATE,URI=arn:aws:secretsmanager:us-east-1:111111111111:secret:ca")
                .unwrap(),
            json!({"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": "arn:aws:secretsmanager:us-east-1:111111111111:secret:ca"})
        );
        assert!(shorthand("NoEquals").is_err());
    }

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(parse_timestamp("1700000000").unwrap(), 1_700_000_000.0);
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000.0);
        assert!(parse_timestamp("yesterday").is_err());
    }
}
