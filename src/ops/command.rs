//! The `esm status` and `esm reset-offsets` commands: flags, reading the stores, printing. The
//! rules are in [`super::status`] and [`super::reset`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use super::reset::{self, ApplySettings, Target};
use super::status::{self, MappingStatus};
use crate::api::ApiError;
use crate::aws::leases::DynamoLeaseStore;
use crate::aws::mappings::DynamoMappingStore;
use crate::config::Settings;
use crate::coordination::leases::LeaseStore;
use crate::kafka::KafkaConnector;
use crate::kafka::cluster::ClusterResolver;
use crate::model::mapping::EventSourceMapping;
use crate::model::store::{Loaded, MappingStore};

/// How a command prints: the global `--output`. Without one, or with `table`, status and resets
/// print their own table; `json` and `text` print the response the way every command does (and
/// `--query` applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One mapping (default: every mapping).
    #[arg(long)]
    uuid: Option<String>,
    /// Seconds without progress, with records waiting, after which a partition is stuck
    /// (default: 300, and at least 3 batching windows).
    #[arg(long)]
    stuck_after: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_timestamp", "to_offset"])))]
pub struct ResetArgs {
    #[arg(long)]
    uuid: String,
    /// Every partition to its first record (replay everything).
    #[arg(long)]
    to_earliest: bool,
    /// Every partition to its end (skip what waits).
    #[arg(long)]
    to_latest: bool,
    /// Every partition to its first record at or after this time: ISO 8601 / RFC 3339
    /// (`2026-11-30T08:00:00Z`) or epoch milliseconds.
    #[arg(long)]
    to_timestamp: Option<String>,
    /// `PARTITION=OFFSET`, repeatable; an offset beyond the log end is refused.
    #[arg(long, num_args = 1..)]
    to_offset: Vec<String>,
    /// Show the moves without making them.
    #[arg(long)]
    dry_run: bool,
    /// Seconds to wait for the pollers to apply the reset.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn format_ms(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn service(message: impl ToString) -> ApiError {
    ApiError { code: "ServiceException", message: message.to_string() }
}

async fn mappings(store: &DynamoMappingStore, uuid: Option<&str>) -> Result<Vec<EventSourceMapping>, ApiError> {
    let loaded =
        match uuid {
            Some(uuid) => vec![store.get(uuid).await.map_err(service)?.ok_or_else(|| {
                ApiError::not_found(format!("The resource you requested does not exist. (UUID {uuid})"))
            })?],
            None => store.list().await.map_err(service)?,
        };
    Ok(loaded
        .into_iter()
        .filter_map(|l| match l {
            Loaded::Valid(m) | Loaded::Invalid { mapping: m, .. } => Some(m),
            Loaded::Malformed { .. } => None,
        })
        .collect())
}

/// `esm status`. Prints the table itself; returns the JSON to print.
///
/// # Errors
/// The mapping does not exist, or a table cannot be read.
pub async fn status(
    sdk: &aws_config::SdkConfig,
    settings: &Settings,
    args: StatusArgs,
    output: Output,
) -> Result<Option<Value>, ApiError> {
    let dynamo = crate::aws::dynamodb_client(sdk);
    let store = DynamoMappingStore::new(dynamo.clone(), &settings.tables.mappings);
    let leases = DynamoLeaseStore::new(dynamo, &settings.tables.leases);
    let connector = KafkaConnector::new(ClusterResolver::new(sdk), settings.kafka);
    let mappings = mappings(&store, args.uuid.as_deref()).await?;
    let snapshot = leases.snapshot().await.map_err(service)?;
    let progress = leases.progress().await.map_err(service)?;
    let mut statuses: Vec<MappingStatus> = Vec::new();
    for mapping in &mappings {
        let offsets = status::offsets(&connector, mapping).await;
        let stuck_after = args.stuck_after.map_or_else(|| status::stuck_after(mapping), Duration::from_secs);
        statuses.push(status::build(
            mapping,
            offsets.as_ref().map_err(String::as_str),
            &snapshot,
            &progress,
            now_ms(),
            stuck_after,
        ));
    }
    match output {
        Output::Json => Ok(Some(json!({ "EventSourceMappings": statuses }))),
        Output::Table => {
            print!("{}", status::table(&statuses, format_ms));
            Ok(None)
        }
    }
}

fn target(args: &ResetArgs) -> Result<Target, ApiError> {
    if args.to_earliest {
        return Ok(Target::Earliest);
    }
    if args.to_latest {
        return Ok(Target::Latest);
    }
    if let Some(raw) = &args.to_timestamp {
        return parse_time_ms(raw).map(Target::Timestamp);
    }
    let mut offsets = BTreeMap::new();
    for pair in &args.to_offset {
        let parsed = pair
            .split_once('=')
            .and_then(|(p, o)| Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?)));
        match parsed {
            Some((p, o)) if p >= 0 && o >= 0 => {
                offsets.insert(p, o);
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "--to-offset {pair}: expected PARTITION=OFFSET, both non-negative integers"
                )));
            }
        }
    }
    Ok(Target::Offsets(offsets))
}

/// Epoch milliseconds, or ISO 8601 / RFC 3339.
///
/// # Errors
/// Neither form.
pub fn parse_time_ms(raw: &str) -> Result<i64, ApiError> {
    let raw = raw.trim();
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(raw)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::invalid(format!("--to-timestamp '{raw}' is neither epoch milliseconds nor an ISO 8601 time"))
        })
}

/// `esm reset-offsets`. Prints the table itself; returns the JSON to print.
///
/// # Errors
/// The request is invalid or refused, or the pollers did not apply it in time.
pub async fn reset_offsets(
    sdk: &aws_config::SdkConfig,
    settings: &Settings,
    args: ResetArgs,
    output: Output,
) -> Result<Option<Value>, ApiError> {
    let target = target(&args)?;
    let dynamo = crate::aws::dynamodb_client(sdk);
    let store = DynamoMappingStore::new(dynamo.clone(), &settings.tables.mappings);
    let leases = DynamoLeaseStore::new(dynamo, &settings.tables.leases);
    let connector = KafkaConnector::new(ClusterResolver::new(sdk), settings.kafka);
    let mapping = mappings(&store, Some(&args.uuid))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(args.uuid.clone()))?;
    let refused = |e: reset::ResetError| ApiError::invalid(e.to_string());
    let mut moves = reset::plan(&connector, &mapping, &target).await.map_err(refused)?;
    if !args.dry_run {
        let apply = ApplySettings {
            timeout: Duration::from_secs(args.timeout),
            lease_duration: settings.lease.duration,
            poll_every: Duration::from_millis(500),
        };
        moves = reset::apply(&leases, &connector, &mapping, moves, apply, now_ms).await.map_err(refused)?;
    }
    match output {
        Output::Json => Ok(Some(json!({ "UUID": mapping.uuid, "DryRun": args.dry_run, "Partitions": moves }))),
        Output::Table => {
            print!("{}", reset::table(&moves));
            Ok(None)
        }
    }
}
