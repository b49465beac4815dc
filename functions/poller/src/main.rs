//! The poller Lambda: started by a schedule, or by another poller (relay, scale-out), it runs the
//! poll loop over every enabled mapping until shortly before its own deadline, then hands its
//! partitions over: it starts its successor first, stops intake, lets in-flight invokes finish,
//! commits and releases its leases.
//!
//! A scheduled poller that finds every partition covered by a live poller returns at once.
//!
//! Environment: `ESM_STOP_MARGIN_MS` (default 10000) is how long before the deadline it stops
//! taking new batches (`ESM_DRAIN_TIMEOUT_MS` must be smaller so abandoned invokes still leave
//! time to commit); `ESM_POLLER_FUNCTION` is this function's own name, invoked asynchronously to
//! start more pollers (unset: no relay, no scale-out); `ESM_MAX_POLLERS` caps the pollers across
//! all mappings; `ESM_SCALE_WINDOW_MS` is how long lag must keep growing before one more starts.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use kafka_esm::cluster::ClusterResolver;
use kafka_esm::invoke::LambdaInvoker;
use kafka_esm::lease::DynamoLeaseStore;
use kafka_esm::poller::{Metrics, PollerEnv, PollerSettings};
use kafka_esm::store::{DynamoMappingStore, Tables};
use kafka_esm::supervisor::{PollerExit, PollerOptions, Spawner, run_poller_with};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Starts another poller by invoking this function asynchronously (`InvocationType=Event`).
#[derive(Debug, Clone)]
struct SelfInvoke {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl Spawner for SelfInvoke {
    async fn spawn(&self, reason: &'static str, from: &str) -> Result<(), String> {
        let event = json!({ "kafkaEsm": { "reason": reason, "from": from } });
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(event.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!("invoke {} asynchronously: {}", self.function, aws_sdk_lambda::error::DisplayErrorContext(&e))
            })
    }
}

struct Poller {
    store: Arc<DynamoMappingStore>,
    leases: Arc<DynamoLeaseStore>,
    env: Arc<PollerEnv<LambdaInvoker>>,
    options: PollerOptions<SelfInvoke>,
    stop_margin: Duration,
}

/// Why this invocation started: `relay` and `scale-out` come from another poller; anything else
/// (the EventBridge schedule, a manual test invoke) is a scheduled start.
fn reason(event: &Value) -> &str {
    event.pointer("/kafkaEsm/reason").and_then(Value::as_str).unwrap_or("schedule")
}

async fn handle(poller: &Poller, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let deadline_ms = u128::from(event.context.deadline);
    let budget = Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0))
        .saturating_sub(poller.stop_margin);
    if deadline_ms <= now_ms {
        warn!(
            deadline_ms = event.context.deadline,
            "The invocation's deadline has already passed (an emulator's fixed deadline?): stopping at once."
        );
    }
    let reason = reason(&event.payload).to_owned();
    let mut options = poller.options.clone();
    options.join_if_needed = reason == "schedule";
    options.successor = reason == "relay";
    info!(reason, budget_s = budget.as_secs_f32(), "Poller invoked.");
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(budget).await;
            stop.cancel();
        })
    };
    let before = poller.env.metrics.snapshot();
    let exit = run_poller_with(poller.store.clone(), poller.leases.clone(), poller.env.clone(), stop, options).await;
    timer.abort();
    let after = poller.env.metrics.snapshot();
    Ok(json!({
        "reason": reason,
        "exit": match exit {
            PollerExit::Stopped => "deadline",
            PollerExit::NotNeeded => "not-needed",
            PollerExit::Idle => "idle",
        },
        "records": after.0 - before.0,
        "batches": after.1 - before.1,
        "failedInvokes": after.2 - before.2,
        "oversizedRecords": after.3 - before.3,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
    let sdk = kafka_esm::aws::sdk_config().await;
    let tables = Tables::from_env();
    let settings = PollerSettings::from_env()?;
    let stop_margin = std::env::var("ESM_STOP_MARGIN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let invoker = LambdaInvoker::new(&sdk);
    let spawner = std::env::var("ESM_POLLER_FUNCTION")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .map(|function| Arc::new(SelfInvoke { client: invoker.client().clone(), function }));
    let options = PollerOptions {
        spawner,
        join_if_needed: true,
        successor: false,
        relay: true,
        scale_in: true,
        max_pollers: usize::MAX,
        scale_window: Duration::from_secs(60),
        scan_every: Duration::from_secs(5),
    }
    .with_env()?;
    let poller = Poller {
        store: Arc::new(DynamoMappingStore::from_sdk(&sdk, &tables.mappings)),
        leases: Arc::new(DynamoLeaseStore::from_sdk(&sdk, &tables.leases)),
        env: Arc::new(PollerEnv {
            settings,
            invoker: Arc::new(invoker),
            resolver: ClusterResolver::new(&sdk),
            metrics: Arc::new(Metrics::default()),
        }),
        options,
        stop_margin,
    };
    let poller = &poller;
    lambda_runtime::run(service_fn(move |event| handle(poller, event))).await
}
