//! `esm`: the EventSourceMapping commands with the AWS CLI's names, flags and JSON, plus `init`
//! (create the tables) and `poll` (run the poll loop here, over every enabled mapping).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
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

mod output;
mod skeleton;

use output::{Color, OutputFormat, Query};

/// kafka-esm: a self-hosted Kafka event source mapping for AWS Lambda.
///
/// The mapping commands take the same flags and print the same JSON as
/// `aws lambda …-event-source-mapping`. Tables: ESM_MAPPINGS_TABLE, ESM_LEASES_TABLE.
#[derive(Debug, Parser)]
#[command(name = "esm", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// The AWS CLI's global options, accepted before or after the command.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// The region of the DynamoDB tables and the Lambda API (default: AWS_REGION, the profile).
    #[arg(long, global = true)]
    region: Option<String>,
    /// A named profile from the shared config and credentials files.
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Send every AWS call of the command to this URL: DynamoDB and Lambda (and for `poll` also
    /// Secrets Manager and MSK). Per service: AWS_ENDPOINT_URL_<SERVICE>.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// json (default), text or table, as the AWS CLI prints them.
    #[arg(long, global = true, value_enum, env = "AWS_DEFAULT_OUTPUT", hide_env_values = true)]
    output: Option<OutputFormat>,
    /// A JMESPath expression applied to the response before it is printed.
    #[arg(long, global = true)]
    query: Option<String>,
    /// Colour table output: auto (on a terminal), on, off.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Log at DEBUG (esm and the AWS SDK) on stderr, whatever RUST_LOG says.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for scripts written for AWS CLI v2: esm never sends its output to a pager.
    #[arg(long, global = true)]
    no_cli_pager: bool,
}

/// `--cli-input-json` / `--generate-cli-skeleton`, on the commands that take many parameters.
#[derive(Debug, Args)]
struct InputArgs {
    /// The request as JSON (or file://path), with botocore's parameter names; flags given on
    /// the command line take precedence.
    #[arg(long)]
    cli_input_json: Option<String>,
    /// Print a JSON skeleton of the request's parameters for --cli-input-json, and exit.
    #[arg(long, value_name = "input", num_args = 0..=1, default_missing_value = "input", value_parser = ["input"])]
    generate_cli_skeleton: Option<String>,
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
    GetEventSourceMapping(UuidInputArg),
    /// Change a mapping (as `aws lambda update-event-source-mapping`).
    UpdateEventSourceMapping(UpdateArgs),
    /// Delete a mapping (as `aws lambda delete-event-source-mapping`).
    DeleteEventSourceMapping(UuidInputArg),
    /// Add or overwrite tags of a mapping (as `aws lambda tag-resource`).
    TagResource(TagResourceArgs),
    /// Remove tags from a mapping (as `aws lambda untag-resource`).
    UntagResource(UntagResourceArgs),
    /// Show a mapping's tags (as `aws lambda list-tags`).
    ListTags(ResourceArg),
    /// Run the poll loop here over every enabled mapping until Ctrl-C / SIGTERM (or --duration).
    Poll(PollArgs),
    /// Per mapping and partition: owner, committed and end offsets, lag, rate, last invoke and
    /// error, stuck partitions.
    Status(crate::ops::command::StatusArgs),
    /// Move a mapping's committed offsets (replay, skip), applied by the running pollers.
    ResetOffsets(crate::ops::command::ResetArgs),
}

#[derive(Debug, Args)]
struct ResourceArg {
    /// The mapping's ARN: arn:aws:lambda:REGION:ACCOUNT:event-source-mapping:UUID (required,
    /// here or in --cli-input-json).
    #[arg(long)]
    resource: Option<String>,
    #[command(flatten)]
    input: InputArgs,
}

/// `--uuid` of get and delete, which also take `--cli-input-json`.
#[derive(Debug, Args)]
struct UuidInputArg {
    /// Required, here or in --cli-input-json.
    #[arg(long)]
    uuid: Option<String>,
    #[command(flatten)]
    input: InputArgs,
}

/// The `--cli-input-json` of each command without a request type of its own in `api`, by
/// botocore's member names.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct OperationInput {
    #[serde(rename = "UUID", default)]
    uuid: String,
    #[serde(default)]
    resource: String,
    tags: Option<std::collections::BTreeMap<String, String>>,
    tag_keys: Option<Vec<String>>,
}

impl UuidInputArg {
    fn uuid(self) -> Result<String, ApiError> {
        let input = operation_input(&self.input, &["UUID"])?;
        required(self.uuid, input.uuid, "--uuid (UUID)")
    }
}

impl ResourceArg {
    fn resource(self) -> Result<String, ApiError> {
        let input = operation_input(&self.input, &["Resource"])?;
        required(self.resource, input.resource, "--resource (Resource)")
    }
}

impl TagResourceArgs {
    fn request(self) -> Result<(String, std::collections::BTreeMap<String, String>), ApiError> {
        let input = operation_input(&self.input, &["Resource", "Tags"])?;
        let tags = match self.tags {
            Some(raw) => tags_arg(&raw)?,
            None => input.tags.ok_or_else(|| {
                ApiError::invalid("--tags (Tags) is required: give the flag or set it in --cli-input-json.")
            })?,
        };
        Ok((required(self.resource, input.resource, "--resource (Resource)")?, tags))
    }
}

impl UntagResourceArgs {
    fn request(self) -> Result<(String, Vec<String>), ApiError> {
        let input = operation_input(&self.input, &["Resource", "TagKeys"])?;
        let keys = if self.tag_keys.is_empty() { input.tag_keys.unwrap_or_default() } else { self.tag_keys };
        if keys.is_empty() {
            return Err(ApiError::invalid(
                "--tag-keys (TagKeys) is required: give the flag or set it in --cli-input-json.",
            ));
        }
        Ok((required(self.resource, input.resource, "--resource (Resource)")?, keys))
    }
}

/// `--cli-input-json` of get, delete or a tagging command: only that operation's `members`.
fn operation_input(args: &InputArgs, members: &[&str]) -> Result<OperationInput, ApiError> {
    let Some(raw) = args.cli_input_json.as_deref() else { return Ok(OperationInput::default()) };
    let value: Value = json_arg("cli-input-json", raw)?;
    if let Some(other) = value.as_object().and_then(|o| o.keys().find(|k| !members.contains(&k.as_str()))) {
        return Err(ApiError::invalid(format!(
            "--cli-input-json: unknown parameter {other}, must be one of: {}",
            members.join(", ")
        )));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("--cli-input-json: {e}")))
}

#[derive(Debug, Args)]
struct TagResourceArgs {
    /// The mapping's ARN (required, here or in --cli-input-json).
    #[arg(long)]
    resource: Option<String>,
    /// `Key=Value,Key2=Value2` or JSON `{"Key":"Value"}` (required, here or in --cli-input-json).
    #[arg(long)]
    tags: Option<String>,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Debug, Args)]
struct UntagResourceArgs {
    /// The mapping's ARN (required, here or in --cli-input-json).
    #[arg(long)]
    resource: Option<String>,
    /// Required, here or in --cli-input-json.
    #[arg(long, num_args = 1..)]
    tag_keys: Vec<String>,
    #[command(flatten)]
    input: InputArgs,
}

/// Flags shared by create and update.
#[derive(Debug, Args)]
struct CommonArgs {
    #[arg(long)]
    batch_size: Option<u32>,
    #[arg(long)]
    maximum_batching_window_in_seconds: Option<u32>,
    /// Batches of one partition in flight at once (1–10), records of one key strictly in order.
    /// kafka-esm's extension: AWS takes it for Kinesis and DynamoDB streams only.
    #[arg(long)]
    parallelization_factor: Option<u32>,
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
    /// JSON or shorthand `MaximumConcurrency=N` (2–1000): invokes of the mapping in flight at
    /// once over all its partitions and pollers. kafka-esm's extension: AWS takes it for SQS only.
    #[arg(long)]
    scaling_config: Option<String>,
    /// JSON or shorthand `Metrics=EventCount`: which CloudWatch metrics the pollers print.
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
    /// Function name, ARN, or qualified ARN (required, here or in --cli-input-json).
    #[arg(long)]
    function_name: Option<String>,
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
    /// `Key=Value,Key2=Value2` or JSON `{"Key":"Value"}`.
    #[arg(long)]
    tags: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// Required, here or in --cli-input-json.
    #[arg(long)]
    uuid: Option<String>,
    #[arg(long)]
    function_name: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[arg(long)]
    function_name: Option<String>,
    #[arg(long)]
    event_source_arn: Option<String>,
    /// The most mappings to print; a NextToken follows when there are more.
    #[arg(long)]
    max_items: Option<usize>,
    /// Resume from a NextToken.
    #[arg(long)]
    starting_token: Option<String>,
    /// Mappings per service call (the AWS CLI paginator's page size; 1–10000).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    page_size: Option<u16>,
}

#[derive(Debug, Args)]
struct PollArgs {
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    progress_interval: f64,
    /// `text`: a progress line on stderr; `emf`: CloudWatch Embedded Metric Format lines on
    /// stdout every --progress-interval (crate::ops::emf).
    #[arg(long, default_value = "text", value_parser = ["text", "emf"])]
    metrics_format: String,
}

/// A failed command: printed the way the AWS CLI prints it.
#[derive(Debug)]
struct Failure {
    operation: &'static str,
    error: ApiError,
}

/// The AWS CLI's exit status for a service error.
const SERVICE_ERROR: u8 = 254;
/// The AWS CLI's exit status for a bad option value.
const USAGE_ERROR: u8 = 252;
/// The AWS CLI's exit status for any other failure (here: a `--query` that fails at run time).
const OTHER_ERROR: u8 = 255;
/// `ListEventSourceMappings`'s default page size (the API's `MaxItems` default).
const DEFAULT_PAGE_SIZE: usize = 100;

/// Runs `esm` with the process's arguments.
pub async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The AWS operation's name (`list-event-source-mappings` → `ListEventSourceMappings`): the
    // table's title.
    let operation = pascal_case(matches.subcommand_name().unwrap_or_default());
    // The poll loop logs what it does at INFO; a command prints its answer, and only warnings
    // besides it (RUST_LOG or --debug for more).
    let default_level = if matches!(cli.command, Command::Poll(_)) { "info" } else { "warn" };
    let filter = if cli.global.debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A command's warnings read as one plain line; the long-running poller keeps timestamps.
    if matches!(cli.command, Command::Poll(_)) {
        logs.init();
    } else {
        logs.without_time().with_target(false).init();
    }
    let query = match cli.global.query.as_deref().map(Query::compile).transpose() {
        Ok(query) => query,
        Err(e) => return usage_error(&format!("Bad value for --query {}: {e}", cli.global.query.unwrap_or_default())),
    };
    if let Some(url) = &cli.global.endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return usage_error(&format!(
            "Bad value for --endpoint-url \"{url}\": scheme is missing.  Must be of the form http://<hostname>/ or https://<hostname>/"
        ));
    }
    // As the AWS CLI: --output, else AWS_DEFAULT_OUTPUT, else the profile's `output`, else json.
    let format = match cli.global.output {
        Some(format) => format,
        None => match profile_output(cli.global.profile.as_deref()).await {
            Ok(format) => format.unwrap_or(OutputFormat::Json),
            Err(message) => return usage_error(&message),
        },
    };
    if let Some(skeleton) = skeleton::requested(&cli.command) {
        print(output::json(&skeleton));
        return ExitCode::SUCCESS;
    }
    // The AWS CLI prints `--output text` of a paginated command page by page.
    let text_pages = match &cli.command {
        Command::ListEventSourceMappings(args) if format == OutputFormat::Text => {
            Some(args.page_size.map_or(DEFAULT_PAGE_SIZE, usize::from))
        }
        _ => None,
    };
    let sdk = crate::aws::SdkOverrides {
        region: cli.global.region.clone(),
        profile: cli.global.profile.clone(),
        endpoint_url: cli.global.endpoint_url.clone(),
    };
    match run(cli.command, &sdk, cli.global.output).await {
        Ok(Some(response)) => match emit(format, cli.global.color, &operation, &response, query.as_ref(), text_pages) {
            Ok(text) => {
                print(text);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("\n{e}");
                ExitCode::from(OTHER_ERROR)
            }
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(Failure { operation, error }) => {
            eprintln!("\nAn error occurred ({}) when calling the {operation} operation: {}", error.code, error.message);
            ExitCode::from(SERVICE_ERROR)
        }
    }
}

/// The `output` setting of the selected profile (`--profile`, else `AWS_PROFILE`, else
/// `default`) in the shared config files.
async fn profile_output(profile: Option<&str>) -> Result<Option<OutputFormat>, String> {
    let profiles = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &aws_runtime::env_config::file::EnvConfigFiles::default(),
        profile.map(|p| std::borrow::Cow::Owned(p.to_owned())),
    )
    .await;
    // Unreadable files are reported by the SDK when it loads credentials and region.
    let Some(value) = profiles.ok().and_then(|p| p.get("output").map(str::to_owned)) else { return Ok(None) };
    <OutputFormat as clap::ValueEnum>::from_str(&value, true).map(Some).map_err(|_| {
        format!("The profile's output \"{value}\" is not one esm prints: json, text or table. Give --output.")
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("\n{message}");
    ExitCode::from(USAGE_ERROR)
}

fn pascal_case(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

fn print(text: Option<String>) {
    if let Some(text) = text {
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
}

/// The response as the AWS CLI prints it: `--query` applied, then `--output`. `text_pages`:
/// the page size of a paginated list printed as text, which the AWS CLI prints page by page
/// (the query applied to each page) and then the `NextToken` (the query applied to that too).
fn emit(
    format: OutputFormat,
    color: Color,
    title: &str,
    response: &Value,
    query: Option<&Query>,
    text_pages: Option<usize>,
) -> Result<Option<String>, String> {
    let search = |value: &Value| query.map_or_else(|| Ok(value.clone()), |q| q.search(value));
    let Some(page_size) = text_pages else {
        return Ok(output::render(format, color, title, &search(response)?));
    };
    let items = response["EventSourceMappings"].as_array().cloned().unwrap_or_default();
    let mut pages: Vec<&[Value]> = items.chunks(page_size.max(1)).collect();
    if pages.is_empty() {
        pages.push(&[]);
    }
    let mut out = String::new();
    for page in pages {
        out.push_str(&output::text(&search(&serde_json::json!({ "EventSourceMappings": page }))?));
    }
    if let Some(token) = response.get("NextToken") {
        out.push_str(&output::text(&search(&serde_json::json!({ "NextToken": { "NextToken": token } }))?));
    }
    Ok(Some(out))
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
    // Tags are not part of the AWS mapping shape (`list-tags` shows them).
    fields.remove("Tags");
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

async fn run(
    command: Command,
    overrides: &crate::aws::SdkOverrides,
    output: Option<OutputFormat>,
) -> Result<Option<Value>, Failure> {
    // `status` and `reset-offsets` print their own table unless JSON or text is asked for.
    let ops_output = match output {
        None | Some(OutputFormat::Table) => crate::ops::command::Output::Table,
        Some(OutputFormat::Json | OutputFormat::Text) => crate::ops::command::Output::Json,
    };
    let sdk = crate::aws::sdk_config_with(overrides).await;
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
            let (items, next_token) = paginate(&store, &args)
                .await
                .map_err(|error| Failure { operation: "ListEventSourceMappings", error })?;
            let mut out = serde_json::json!({ "EventSourceMappings": items.iter().map(item_json).collect::<Vec<_>>() });
            if let Some(token) = next_token {
                out["NextToken"] = Value::String(token);
            }
            Ok(Some(out))
        }
        Command::GetEventSourceMapping(args) => {
            let op = "GetEventSourceMapping";
            let uuid = args.uuid().map_err(|error| Failure { operation: op, error })?;
            let item = api::get(&store, &uuid).await.map_err(|error| Failure { operation: op, error })?;
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
            let op = "DeleteEventSourceMapping";
            let uuid = args.uuid().map_err(|error| Failure { operation: op, error })?;
            let item = api::delete(&store, &uuid).await.map_err(|error| Failure { operation: op, error })?;
            Ok(Some(item_json(&item)))
        }
        Command::Status(args) => crate::ops::command::status(&sdk, &settings, args, ops_output)
            .await
            .map_err(|error| Failure { operation: "Status", error }),
        Command::ResetOffsets(args) => crate::ops::command::reset_offsets(&sdk, &settings, args, ops_output)
            .await
            .map_err(|error| Failure { operation: "ResetOffsets", error }),
        Command::TagResource(args) => {
            let op = "TagResource";
            let (resource, tags) = args.request().map_err(|error| Failure { operation: op, error })?;
            api::tag_resource(&store, &resource, &tags).await.map_err(|error| Failure { operation: op, error })?;
            Ok(None)
        }
        Command::UntagResource(args) => {
            let op = "UntagResource";
            let (resource, keys) = args.request().map_err(|error| Failure { operation: op, error })?;
            api::untag_resource(&store, &resource, &keys).await.map_err(|error| Failure { operation: op, error })?;
            Ok(None)
        }
        Command::ListTags(args) => {
            let op = "ListTags";
            let resource = args.resource().map_err(|error| Failure { operation: op, error })?;
            let tags = api::list_tags(&store, &resource).await.map_err(|error| Failure { operation: op, error })?;
            Ok(Some(serde_json::json!({ "Tags": tags })))
        }
        Command::Poll(args) => {
            poll(&sdk, settings, args)
                .await
                .map_err(|message| Failure { operation: "Poll", error: ApiError::invalid(message) })?;
            Ok(None)
        }
    }
}

/// The AWS CLI's paginator over `ListEventSourceMappings`: calls of `--page-size` mappings
/// until `--max-items` are collected (then a `NextToken` to resume from) or none are left.
async fn paginate(store: &DynamoMappingStore, args: &ListArgs) -> Result<(Vec<Item>, Option<String>), ApiError> {
    let page_size = args.page_size.map_or(DEFAULT_PAGE_SIZE, usize::from);
    let mut marker = args.starting_token.as_deref().map(decode_token).transpose()?;
    let mut items = Vec::new();
    loop {
        let want = args.max_items.map_or(page_size, |max| page_size.min(max.saturating_sub(items.len())));
        if want == 0 {
            // --max-items 0: nothing to print, everything from the starting token still to come.
            return Ok((items, marker.as_deref().map(encode_token)));
        }
        let page = api::list(
            store,
            args.function_name.as_deref(),
            args.event_source_arn.as_deref(),
            marker.as_deref(),
            Some(want),
        )
        .await?;
        items.extend(page.mappings);
        match page.next_marker {
            None => return Ok((items, None)),
            Some(next) if args.max_items.is_some_and(|max| items.len() >= max) => {
                return Ok((items, Some(encode_token(&next))));
            }
            Some(next) => marker = Some(next),
        }
    }
}

/// botocore's pagination token: base64 of Python's `json.dumps({"Marker": …})`. Pages end on
/// whole API pages, so the token never needs botocore's `boto_truncate_amount`.
fn encode_token(marker: &str) -> String {
    use base64::Engine as _;
    let json = format!("{{\"Marker\": {}}}", Value::String(marker.to_owned()));
    base64::engine::general_purpose::STANDARD.encode(json)
}

fn decode_token(token: &str) -> Result<String, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .and_then(|value| value.get("Marker").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| ApiError::invalid(format!("--starting-token {token}: not a NextToken that esm printed.")))
}

/// `--tags`: `Key=Value,…` or a JSON object; shorthand values are strings whatever they look like.
fn tags_arg(raw: &str) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let value: Value = if raw.trim_start().starts_with('{') || raw.starts_with("file://") {
        json_arg("tags", raw)?
    } else {
        shorthand_strings(raw).map_err(|e| ApiError::invalid(format!("--tags: {e}")))?
    };
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("--tags: expected Key=Value,Key2=Value2 or a JSON object"));
    };
    fields
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
            other => Err(ApiError::invalid(format!("--tags: the value of '{k}' must be a string, not {other}"))),
        })
        .collect()
}

async fn poll(sdk: &aws_config::SdkConfig, settings: Settings, args: PollArgs) -> Result<(), String> {
    let seconds = |flag: &str, s: f64| {
        Duration::try_from_secs_f64(s.max(0.0)).map_err(|_| format!("--{flag} {s}: not a number of seconds"))
    };
    let duration = args.duration.map(|s| seconds("duration", s)).transpose()?;
    let progress_every = seconds("progress-interval", args.progress_interval)?;
    let parts = PollerParts::new(sdk, settings).map_err(|e| e.to_string())?;
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
    if args.metrics_format == "emf" && !progress_every.is_zero() {
        let poller = format!("esm-poll-{}", std::process::id());
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        tokio::spawn(crate::ops::emf::print_every(
            metrics.clone(),
            poller,
            progress_every,
            clock,
            stop.clone(),
            |line| {
                println!("{line}");
            },
        ));
    } else if !progress_every.is_zero() {
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
    if text.trim_start().starts_with(['{', '[']) {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| ApiError::invalid(format!("--{flag}: invalid JSON: {e}")))?;
        return serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("--{flag}: {e}")));
    }
    let typed = shorthand(&text).map_err(|e| ApiError::invalid(format!("--{flag}: {e}")))?;
    serde_json::from_value(typed).or_else(|e| {
        // The AWS CLI types shorthand values by the parameter's model: a string parameter that
        // looks like a number (`ConsumerGroupId=12345`) stays a string.
        shorthand_strings(&text)
            .ok()
            .and_then(|strings| serde_json::from_value(strings).ok())
            .ok_or_else(|| ApiError::invalid(format!("--{flag}: {e}")))
    })
}

/// The AWS CLI shorthand subset in common use: `K=V,K2=V2`, nested `K={…}`, lists `K=[a,b]`.
/// Numbers and booleans are typed as such.
pub fn shorthand(text: &str) -> Result<Value, String> {
    shorthand_with(text, true)
}

/// [`shorthand`] with every value kept as text: for map-of-string parameters such as `--tags`,
/// where the AWS CLI reads `zip=02134` as the string `02134`.
pub fn shorthand_strings(text: &str) -> Result<Value, String> {
    shorthand_with(text, false)
}

fn shorthand_with(text: &str, typed: bool) -> Result<Value, String> {
    let mut parser = Shorthand { chars: text.trim().chars().collect(), pos: 0, typed };
    let value = parser.object(None)?;
    if parser.pos < parser.chars.len() {
        return Err(format!("unexpected '{}' at position {}", parser.chars[parser.pos], parser.pos));
    }
    Ok(value)
}

struct Shorthand {
    chars: Vec<char>,
    pos: usize,
    /// Numbers and booleans typed as such (else every value is a string).
    typed: bool,
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
                        items.push(self.scalar(raw.trim()));
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
                Ok(self.scalar(raw.trim()))
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

    fn scalar(&self, raw: &str) -> Value {
        if self.typed { scalar(raw) } else { Value::String(raw.to_owned()) }
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

/// Members of the AWS request shapes that kafka-esm does not support (other event sources,
/// features it does not have): named in the error instead of serde's list.
const UNSUPPORTED_MEMBERS: [&str; 5] =
    ["TumblingWindowInSeconds", "Queues", "DocumentDBEventSourceConfig", "KMSKeyArn", "LoggingConfig"];

/// `--cli-input-json`: the request's parameters by their botocore names (`Default` when absent).
/// `required` string members may be left out of the JSON when given as flags.
fn cli_input<T: DeserializeOwned + Default>(raw: Option<&str>, required: &str) -> Result<T, ApiError> {
    let Some(raw) = raw else { return Ok(T::default()) };
    let mut value: Value = json_arg("cli-input-json", raw)?;
    let Some(fields) = value.as_object_mut() else {
        return Err(ApiError::invalid("--cli-input-json: expected a JSON object of parameters"));
    };
    if let Some(member) = UNSUPPORTED_MEMBERS.iter().find(|m| fields.contains_key(**m)) {
        return Err(ApiError::invalid(format!(
            "--cli-input-json: {member} is not supported by kafka-esm's Kafka mappings; remove it."
        )));
    }
    // The skeleton writes timestamps as ISO 8601 text, as the AWS CLI accepts them.
    if let Some(Value::String(ts)) = fields.get("StartingPositionTimestamp") {
        let seconds = parse_timestamp(ts)?;
        fields.insert("StartingPositionTimestamp".into(), Value::from(seconds));
    }
    fields.entry(required).or_insert_with(|| Value::String(String::new()));
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("--cli-input-json: {e}")))
}

/// A flag wins over the same parameter in `--cli-input-json`; an empty one is not given.
fn required(flag: Option<String>, input: String, what: &str) -> Result<String, ApiError> {
    flag.or_else(|| (!input.is_empty()).then_some(input))
        .ok_or_else(|| ApiError::invalid(format!("{what} is required: give the flag or set it in --cli-input-json.")))
}

fn create_request(args: CreateArgs) -> Result<CreateRequest, ApiError> {
    let base: CreateRequest = cli_input(args.input.cli_input_json.as_deref(), "FunctionName")?;
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
    let function_response_types = (!c.function_response_types.is_empty()).then(|| c.function_response_types.clone());
    Ok(CreateRequest {
        function_name: required(args.function_name, base.function_name, "--function-name (FunctionName)")?,
        event_source_arn: args.event_source_arn.or(base.event_source_arn),
        self_managed_event_source: opt_json("self-managed-event-source", args.self_managed_event_source.as_ref())?
            .or(base.self_managed_event_source),
        topics: if args.topics.is_empty() { base.topics } else { args.topics },
        starting_position: starting_position.or(base.starting_position),
        starting_position_timestamp: starting_position_timestamp.or(base.starting_position_timestamp),
        batch_size: c.batch_size.or(base.batch_size),
        maximum_batching_window_in_seconds: c
            .maximum_batching_window_in_seconds
            .or(base.maximum_batching_window_in_seconds),
        parallelization_factor: c.parallelization_factor.or(base.parallelization_factor),
        enabled: enabled_flag(c).or(base.enabled),
        amazon_managed_kafka_event_source_config: opt_json(
            "amazon-managed-kafka-event-source-config",
            c.amazon_managed_kafka_event_source_config.as_ref(),
        )?
        .or(base.amazon_managed_kafka_event_source_config),
        self_managed_kafka_event_source_config: opt_json(
            "self-managed-kafka-event-source-config",
            c.self_managed_kafka_event_source_config.as_ref(),
        )?
        .or(base.self_managed_kafka_event_source_config),
        source_access_configurations: access_configs(&c.source_access_configurations)?
            .or(base.source_access_configurations),
        filter_criteria: opt_json("filter-criteria", c.filter_criteria.as_ref())?.or(base.filter_criteria),
        destination_config: opt_json("destination-config", c.destination_config.as_ref())?.or(base.destination_config),
        maximum_retry_attempts: c.maximum_retry_attempts.or(base.maximum_retry_attempts),
        maximum_record_age_in_seconds: c.maximum_record_age_in_seconds.or(base.maximum_record_age_in_seconds),
        bisect_batch_on_function_error: bisect_flag(c).or(base.bisect_batch_on_function_error),
        function_response_types: function_response_types.or(base.function_response_types),
        provisioned_poller_config: opt_json("provisioned-poller-config", c.provisioned_poller_config.as_ref())?
            .or(base.provisioned_poller_config),
        metrics_config: metrics_config(c.metrics_config.as_ref())?.or(base.metrics_config),
        scaling_config: opt_json("scaling-config", c.scaling_config.as_ref())?.or(base.scaling_config),
        tags: args.tags.as_deref().map(tags_arg).transpose()?.or(base.tags),
    })
}

fn update_request(args: UpdateArgs) -> Result<UpdateRequest, ApiError> {
    let base: UpdateRequest = cli_input(args.input.cli_input_json.as_deref(), "UUID")?;
    let c = &args.common;
    let function_response_types = (!c.function_response_types.is_empty()).then(|| c.function_response_types.clone());
    Ok(UpdateRequest {
        uuid: required(args.uuid, base.uuid, "--uuid (UUID)")?,
        function_name: args.function_name.or(base.function_name),
        enabled: enabled_flag(c).or(base.enabled),
        batch_size: c.batch_size.or(base.batch_size),
        maximum_batching_window_in_seconds: c
            .maximum_batching_window_in_seconds
            .or(base.maximum_batching_window_in_seconds),
        parallelization_factor: c.parallelization_factor.or(base.parallelization_factor),
        source_access_configurations: access_configs(&c.source_access_configurations)?
            .or(base.source_access_configurations),
        filter_criteria: opt_json("filter-criteria", c.filter_criteria.as_ref())?.or(base.filter_criteria),
        destination_config: opt_json("destination-config", c.destination_config.as_ref())?.or(base.destination_config),
        maximum_retry_attempts: c.maximum_retry_attempts.or(base.maximum_retry_attempts),
        maximum_record_age_in_seconds: c.maximum_record_age_in_seconds.or(base.maximum_record_age_in_seconds),
        bisect_batch_on_function_error: bisect_flag(c).or(base.bisect_batch_on_function_error),
        function_response_types: function_response_types.or(base.function_response_types),
        provisioned_poller_config: opt_json("provisioned-poller-config", c.provisioned_poller_config.as_ref())?
            .or(base.provisioned_poller_config),
        metrics_config: metrics_config(c.metrics_config.as_ref())?.or(base.metrics_config),
        scaling_config: opt_json("scaling-config", c.scaling_config.as_ref())?.or(base.scaling_config),
        amazon_managed_kafka_event_source_config: opt_json(
            "amazon-managed-kafka-event-source-config",
            c.amazon_managed_kafka_event_source_config.as_ref(),
        )?
        .or(base.amazon_managed_kafka_event_source_config),
        self_managed_kafka_event_source_config: opt_json(
            "self-managed-kafka-event-source-config",
            c.self_managed_kafka_event_source_config.as_ref(),
        )?
        .or(base.self_managed_kafka_event_source_config),
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
