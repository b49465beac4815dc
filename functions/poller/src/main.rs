//! The poller Lambda: started by a schedule, or by another poller (relay, scale-out), it runs the
//! poll loop over every enabled mapping until shortly before its own deadline, then hands its
//! partitions over: it starts its successor first, stops intake, lets in-flight invokes finish,
//! commits and releases its leases.
//!
//! A scheduled poller that finds every partition covered by a live poller returns at once.
//! Configuration is the `ESM_*` environment (`kafka_esm::config`): `ESM_STOP_MARGIN_MS` is how
//! long before the deadline it stops taking batches (at least the drain timeout plus the time to
//! commit and release, derived from `ESM_DRAIN_TIMEOUT_MS` when unset); `ESM_POLLER_FUNCTION` is
//! this function's own name, invoked asynchronously to start more pollers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_esm::aws::poller::PollerParts;
use kafka_esm::coordination::supervisor::{Exit, Start};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why this invocation started: `relay` and `scale-out` come from another poller; anything else
/// (the EventBridge schedule, a manual test invoke) is a scheduled start.
fn start_of(event: &Value) -> Start {
    match event.pointer("/kafkaEsm/reason").and_then(Value::as_str) {
        Some("relay") => Start::Relay,
        Some("scale-out" | "minimum-pollers") => Start::ScaleOut,
        _ => Start::Schedule,
    }
}

async fn handle(parts: &PollerParts, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let deadline_ms = u128::from(event.context.deadline);
    let stop_margin = parts.deps.settings.stop_margin;
    let budget = Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0))
        .saturating_sub(stop_margin);
    if deadline_ms <= now_ms {
        warn!(
            deadline_ms = event.context.deadline,
            "The invocation's deadline has already passed (an emulator's fixed deadline?): stopping at once."
        );
    } else if budget.is_zero() {
        warn!(
            stop_margin_ms = stop_margin.as_millis(),
            "The function's timeout is shorter than ESM_STOP_MARGIN_MS: nothing can be done in this invocation. Raise the timeout."
        );
    }
    let start = start_of(&event.payload);
    info!(start = ?start, budget_s = budget.as_secs_f32(), "Poller invoked.");
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(budget).await;
            stop.cancel();
        })
    };
    // CloudWatch Embedded Metric Format on stdout (kafka_esm::ops::emf): no API call, no permission.
    let metrics_stop = CancellationToken::new();
    let metrics = tokio::spawn(kafka_esm::ops::emf::print_every(
        parts.deps.metrics.clone(),
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "poller".to_owned()),
        kafka_esm::ops::emf::DEFAULT_INTERVAL,
        std::sync::Arc::new(kafka_esm::clock::SystemClock),
        metrics_stop.clone(),
        |line| println!("{line}"),
    ));
    let before = parts.deps.metrics.totals();
    let exit = parts.run(start, stop).await;
    timer.abort();
    metrics_stop.cancel();
    let _ = metrics.await;
    let after = parts.deps.metrics.totals();
    Ok(json!({
        "start": format!("{start:?}"),
        "exit": match exit {
            Exit::Stopped => "deadline",
            Exit::NotNeeded => "not-needed",
            Exit::Idle => "idle",
        },
        "records": after.invoked - before.invoked,
        "batches": after.batches - before.batches,
        "failedInvokes": after.failed_attempts - before.failed_attempts,
        "filteredOut": after.filtered_out - before.filtered_out,
        "dropped": after.dropped - before.dropped,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // One JSON object per event, its fields (mapping, partition, offset, …) at the top level so
    // CloudWatch Logs Insights filters on them directly.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
    let sdk = kafka_esm::aws::sdk_config().await;
    let parts = PollerParts::from_env(&sdk)?;
    let parts = &parts;
    lambda_runtime::run(service_fn(move |event| handle(parts, event))).await
}
