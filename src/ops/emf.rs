//! CloudWatch Embedded Metric Format: one JSON line per mapping (and, with `KafkaMetrics`, per
//! partition) every interval, printed to stdout. In Lambda, CloudWatch Logs turns the lines into
//! metrics: no API call, no extra permission.
//!
//! Namespace [`NAMESPACE`]; dimension `EventSourceMappingUUID` (per partition also `Topic` and
//! `Partition`); `FunctionName` and `PollerId` ride along as properties for Logs Insights.
//!
//! | metric | unit | when |
//! |---|---|---|
//! | `OffsetLag` (AWS's name) | Count | always; records behind in this poller's partitions |
//! | `PolledEventCount`, `FilteredOutEventCount`, `InvokedEventCount`, `FailedInvokeEventCount`, `DroppedEventCount`, `OnFailureDestinationDeliveredEventCount` (AWS's names) | Count | `MetricsConfig.Metrics` has `EventCount` |
//! | `FailedInvokeCount` (failed invoke attempts), `OversizedRecordCount` (ours) | Count | `ErrorCount` |
//! | `OffsetLag` per `Topic` and `Partition` | Count | `KafkaMetrics` |
//! | `InvokeDuration`, `CommitLatency` | Milliseconds | always (ours) |
//! | `BatchRecords` | Count, `BatchBytes` Bytes | always (ours) |
//!
//! Counts are the interval's increase; latencies and batch sizes are the interval's values (the
//! first 100, EMF's limit for one metric). Summed over a minute, `OffsetLag` of all pollers is
//! the mapping's lag when the interval is a minute (the default).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::delivery::metrics::{MappingMetrics, Metrics, PartitionReport};

/// The CloudWatch namespace of every metric (AWS's own `AWS/Lambda` is reserved to AWS).
pub const NAMESPACE: &str = "KafkaEsm";
/// How often the poller prints its metrics.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

const EVENT_COUNTS: [&str; 6] = [
    "PolledEventCount",
    "FilteredOutEventCount",
    "InvokedEventCount",
    "FailedInvokeEventCount",
    "DroppedEventCount",
    "OnFailureDestinationDeliveredEventCount",
];
const ERROR_COUNTS: [&str; 2] = ["FailedInvokeCount", "OversizedRecordCount"];

fn counters(m: &MappingMetrics) -> [(&'static str, &AtomicU64); 8] {
    [
        ("PolledEventCount", &m.polled),
        ("FilteredOutEventCount", &m.filtered_out),
        ("InvokedEventCount", &m.invoked),
        ("FailedInvokeEventCount", &m.failed_invoke),
        ("DroppedEventCount", &m.dropped),
        ("OnFailureDestinationDeliveredEventCount", &m.on_failure_delivered),
        ("FailedInvokeCount", &m.failed_attempts),
        ("OversizedRecordCount", &m.oversized),
    ]
}

/// The `FunctionName` of a function ARN (`arn:aws:lambda:…:function:NAME[:QUALIFIER]`), or the
/// name as stored when it is not an ARN.
pub fn function_name(function: &str) -> String {
    match function.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest).to_owned(),
        None => function.to_owned(),
    }
}

/// Turns counters into interval documents; remembers what it last reported.
#[derive(Debug, Default)]
pub struct EmfWriter {
    poller: String,
    last: BTreeMap<(String, &'static str), u64>,
}

impl EmfWriter {
    /// `poller` names this process in every line (a property, not a dimension).
    pub fn new(poller: impl Into<String>) -> Self {
        Self { poller: poller.into(), last: BTreeMap::new() }
    }

    /// The documents for the interval ending at `now_ms` (epoch milliseconds).
    pub fn documents(&mut self, metrics: &Metrics, now_ms: i64) -> Vec<Value> {
        let infos = metrics.infos();
        let partitions = metrics.partitions();
        let mut docs = Vec::new();
        for (uuid, counts) in metrics.mappings() {
            let info = infos.get(&uuid).cloned().unwrap_or_default();
            let wants = |kind: &str| info.metrics.iter().any(|m| m == kind);
            let mine: Vec<&PartitionReport> = partitions.iter().filter(|p| p.mapping == uuid).collect();
            let mut doc = Document::new(now_ms, &["EventSourceMappingUUID"]);
            doc.property("EventSourceMappingUUID", json!(uuid));
            doc.property("FunctionName", json!(info.function));
            doc.property("PollerId", json!(self.poller));
            doc.metric("OffsetLag", "Count", json!(mine.iter().map(|p| p.lag).sum::<u64>()));
            for (name, counter) in counters(&counts) {
                let now = counter.load(Ordering::Relaxed);
                let before = self.last.insert((uuid.clone(), name), now).unwrap_or(0);
                let wanted = (wants("EventCount") && EVENT_COUNTS.contains(&name))
                    || (wants("ErrorCount") && ERROR_COUNTS.contains(&name));
                if wanted {
                    doc.metric(name, "Count", json!(now.saturating_sub(before)));
                }
            }
            for (name, unit, timings) in [
                ("InvokeDuration", "Milliseconds", &counts.invoke_ms),
                ("BatchRecords", "Count", &counts.batch_records),
                ("BatchBytes", "Bytes", &counts.batch_bytes),
                ("CommitLatency", "Milliseconds", &counts.commit_ms),
            ] {
                let samples = timings.take_samples();
                timings.take();
                if !samples.is_empty() {
                    doc.metric(name, unit, json!(samples));
                }
            }
            docs.push(doc.finish());
            if wants("KafkaMetrics") {
                for p in mine {
                    let mut doc = Document::new(now_ms, &["EventSourceMappingUUID", "Topic", "Partition"]);
                    doc.property("EventSourceMappingUUID", json!(uuid));
                    doc.property("Topic", json!(p.topic));
                    doc.property("Partition", json!(p.partition.to_string()));
                    doc.property("FunctionName", json!(info.function));
                    doc.property("PollerId", json!(self.poller));
                    doc.metric("OffsetLag", "Count", json!(p.lag));
                    docs.push(doc.finish());
                }
            }
        }
        docs
    }
}

/// One EMF document under construction.
struct Document {
    root: Map<String, Value>,
    dimensions: Vec<&'static str>,
    definitions: Vec<Value>,
    timestamp_ms: i64,
}

impl Document {
    fn new(timestamp_ms: i64, dimensions: &[&'static str]) -> Self {
        Self { root: Map::new(), dimensions: dimensions.to_vec(), definitions: Vec::new(), timestamp_ms }
    }

    fn property(&mut self, name: &str, value: Value) {
        self.root.insert(name.to_owned(), value);
    }

    fn metric(&mut self, name: &str, unit: &str, value: Value) {
        self.definitions.push(json!({ "Name": name, "Unit": unit }));
        self.root.insert(name.to_owned(), value);
    }

    fn finish(mut self) -> Value {
        self.root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions],
                    "Metrics": self.definitions,
                }],
            }),
        );
        Value::Object(self.root)
    }
}

/// Prints every interval's documents, one line each, until `stop`, then a last interval.
pub async fn print_every(
    metrics: Arc<Metrics>,
    poller: String,
    every: Duration,
    clock: Arc<dyn crate::clock::Clock>,
    stop: CancellationToken,
    mut print: impl FnMut(&str) + Send,
) {
    let mut writer = EmfWriter::new(poller);
    loop {
        let stopped = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(every) => false,
        };
        for doc in writer.documents(&metrics, clock.epoch_ms()) {
            print(&doc.to_string());
        }
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::metrics::MappingInfo;
    use crate::testing::emf::validate;

    fn report(mapping: &str, partition: i32, lag: u64) -> PartitionReport {
        PartitionReport {
            mapping: mapping.into(),
            topic: "orders".into(),
            partition,
            position: 5,
            lag,
            records_per_second: 0.0,
            advanced_at_ms: 0,
            last_invoke_ms: None,
            last_error: None,
        }
    }

    #[test]
    fn metrics_config_chooses_the_aws_kinds_and_lines_follow_the_emf_specification() {
        let metrics = Metrics::default();
        let (a, b) = (metrics.mapping("a"), metrics.mapping("b"));
        MappingMetrics::add(&a.polled, 10);
        MappingMetrics::add(&a.invoked, 8);
        MappingMetrics::add(&a.failed_attempts, 2);
        a.invoke_ms.record(12);
        a.invoke_ms.record(30);
        MappingMetrics::add(&b.polled, 4);
        metrics.publish(
            vec![report("a", 0, 3), report("a", 1, 4), report("b", 0, 9)],
            BTreeMap::from([
                (
                    "a".to_owned(),
                    MappingInfo { function: "fa".into(), metrics: vec!["EventCount".into(), "KafkaMetrics".into()] },
                ),
                ("b".to_owned(), MappingInfo { function: "fb".into(), metrics: vec!["ErrorCount".into()] }),
            ]),
        );
        let mut writer = EmfWriter::new("p1");
        let docs = writer.documents(&metrics, 1_700_000_000_000);
        for doc in &docs {
            validate(&doc.to_string()).unwrap_or_else(|e| panic!("{e}: {doc}"));
        }
        // a: mapping line + one per partition (KafkaMetrics); b: mapping line only.
        assert_eq!(docs.len(), 4);
        let names = |d: &Value| -> Vec<String> {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(docs[0]["OffsetLag"], 7);
        assert_eq!(docs[0]["PolledEventCount"], 10);
        assert_eq!(docs[0]["InvokedEventCount"], 8);
        assert_eq!(docs[0]["InvokeDuration"], json!([12, 30]));
        assert!(!names(&docs[0]).contains(&"FailedInvokeCount".to_owned()), "ErrorCount not asked for on a");
        assert_eq!((docs[1]["Partition"].as_str(), &docs[1]["OffsetLag"]), (Some("0"), &json!(3)));
        assert_eq!(docs[3]["OffsetLag"], 9);
        assert_eq!(docs[3]["FailedInvokeCount"], 0);
        assert!(!names(&docs[3]).contains(&"PolledEventCount".to_owned()), "EventCount not asked for on b");
        assert_eq!(function_name("arn:aws:lambda:us-east-1:111122223333:function:my-fn:live"), "my-fn");
        assert_eq!(function_name("example-consumer"), "example-consumer");
        // The next interval reports increases only.
        MappingMetrics::add(&a.polled, 5);
        let next = writer.documents(&metrics, 1_700_000_060_000);
        assert_eq!(next[0]["PolledEventCount"], 5);
        assert!(next[0].get("InvokeDuration").is_none(), "no invoke in the interval");
    }
}
