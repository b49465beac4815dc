//! An example function triggered by kafka-esm (or by AWS's own Kafka event source mapping: the
//! event is the same). It parses the `aws:kafka` event with `aws_lambda_events`, logs one line per
//! invocation and returns how many records it saw per partition.
//!
//! Set `FAIL_ON_VALUE` to a string to make the function fail on any record whose value contains
//! it: a way to watch retries happen.

use std::collections::BTreeMap;

use aws_lambda_events::kafka::KafkaEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<KafkaEvent>) -> Result<Value, Error> {
    let fail_on = std::env::var("FAIL_ON_VALUE").ok().filter(|s| !s.is_empty());
    let mut counts = BTreeMap::new();
    let mut total = 0usize;
    for (partition, records) in &event.payload.records {
        for record in records {
            if let (Some(marker), Some(value)) = (&fail_on, &record.value) {
                let bytes = STANDARD.decode(value)?;
                if String::from_utf8_lossy(&bytes).contains(marker.as_str()) {
                    return Err(format!("record {partition}@{} contains {marker}", record.offset).into());
                }
            }
        }
        counts.insert(partition.clone(), records.len());
        total += records.len();
    }
    let offsets: BTreeMap<_, _> = event
        .payload
        .records
        .iter()
        .map(|(p, r)| (p.clone(), (r.first().map(|r| r.offset), r.last().map(|r| r.offset))))
        .collect();
    tracing::info!(
        records = total,
        source = event.payload.event_source.as_deref().unwrap_or(""),
        ?offsets,
        "Received Kafka batch."
    );
    Ok(json!({ "records": total, "partitions": counts }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Plain text: CloudWatch Logs shows colour codes as noise, and Lambda adds the time.
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).without_time().init();
    lambda_runtime::run(service_fn(handle)).await
}
