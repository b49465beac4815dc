//! The poller Lambda: started by a schedule (or by another poller), it runs the poll loop over
//! every enabled mapping until shortly before its own deadline, then stops intake, lets in-flight
//! invokes finish, commits and returns.
//!
//! `ESM_STOP_MARGIN_MS` (default 10000) is how long before the deadline it stops taking new
//! batches; `ESM_DRAIN_TIMEOUT_MS` must be smaller so abandoned invokes still leave time to
//! commit.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_esm::cluster::ClusterResolver;
use kafka_esm::invoke::LambdaInvoker;
use kafka_esm::lease::DynamoLeaseStore;
use kafka_esm::poller::{Metrics, PollerEnv, PollerSettings};
use kafka_esm::store::{DynamoMappingStore, Tables};
use kafka_esm::supervisor::run_poller;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Poller {
    store: Arc<DynamoMappingStore>,
    leases: Arc<DynamoLeaseStore>,
    env: Arc<PollerEnv<LambdaInvoker>>,
    stop_margin: Duration,
}

async fn handle(poller: &Poller, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let deadline_ms = u128::from(event.context.deadline);
    let budget = Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0))
        .saturating_sub(poller.stop_margin);
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(budget).await;
            stop.cancel();
        })
    };
    let before = poller.env.metrics.snapshot();
    run_poller(poller.store.clone(), poller.leases.clone(), poller.env.clone(), stop).await;
    timer.abort();
    let after = poller.env.metrics.snapshot();
    Ok(json!({
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
    let poller = Poller {
        store: Arc::new(DynamoMappingStore::from_sdk(&sdk, &tables.mappings)),
        leases: Arc::new(DynamoLeaseStore::from_sdk(&sdk, &tables.leases)),
        env: Arc::new(PollerEnv {
            settings,
            invoker: Arc::new(LambdaInvoker::new(&sdk)),
            resolver: ClusterResolver::new(&sdk),
            metrics: Arc::new(Metrics::default()),
        }),
        stop_margin,
    };
    let poller = &poller;
    lambda_runtime::run(service_fn(move |event| handle(poller, event))).await
}
