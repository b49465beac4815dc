//! What happens to records, counted per mapping: the numbers behind the CloudWatch metrics (AWS's
//! `EventCount` names where they exist), `esm poll`'s progress line and the poller Lambda's
//! summary; and what the poller last published about its partitions (lag, position, last error)
//! for the metrics and the heartbeat. Counting is a few relaxed atomic adds per batch; emitting
//! is [`crate::ops::emf`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many values of one interval a [`Timings`] keeps (the EMF limit for one metric's values).
pub const MAX_SAMPLES: usize = 100;

/// A distribution measured over an interval: count, sum, min, max, and its first
/// [`MAX_SAMPLES`] values.
#[derive(Debug)]
pub struct Timings {
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    samples: Mutex<Vec<u64>>,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            samples: Mutex::default(),
        }
    }
}

/// One interval of a [`Timings`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl Timings {
    pub fn record(&self, value: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.min.fetch_min(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES {
            samples.push(value);
        }
    }

    /// The values kept since the last call, and a fresh interval for them.
    pub fn take_samples(&self) -> Vec<u64> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The interval so far, and a fresh one from now.
    pub fn take(&self) -> Stats {
        let count = self.count.swap(0, Ordering::Relaxed);
        let sum = self.sum.swap(0, Ordering::Relaxed);
        let min = self.min.swap(u64::MAX, Ordering::Relaxed);
        let max = self.max.swap(0, Ordering::Relaxed);
        Stats { count, sum, min: if count == 0 { 0 } else { min }, max }
    }
}

/// Counters of one mapping in one poller, shared by its partitions. Counts only grow; readers
/// take differences.
#[derive(Debug, Default)]
pub struct MappingMetrics {
    /// Records read from Kafka (AWS: `PolledEventCount`).
    pub polled: AtomicU64,
    /// Records that matched no filter (AWS: `FilteredOutEventCount`).
    pub filtered_out: AtomicU64,
    /// Records sent in invokes that succeeded (AWS: `InvokedEventCount` counts sent records).
    pub invoked: AtomicU64,
    /// Records sent in invokes that failed (AWS: `FailedInvokeEventCount`).
    pub failed_invoke: AtomicU64,
    /// Records given up without an on-failure destination (AWS: `DroppedEventCount`).
    pub dropped: AtomicU64,
    /// Records written to the on-failure destination (AWS:
    /// `OnFailureDestinationDeliveredEventCount`).
    pub on_failure_delivered: AtomicU64,
    /// Records too large for an invoke even alone.
    pub oversized: AtomicU64,
    /// Successful invokes.
    pub batches: AtomicU64,
    /// Failed invoke attempts (function errors, throttles, API errors).
    pub failed_attempts: AtomicU64,
    /// Per successful invoke: milliseconds, records, bytes.
    pub invoke_ms: Timings,
    pub batch_records: Timings,
    pub batch_bytes: Timings,
    /// Per commit: milliseconds.
    pub commit_ms: Timings,
    /// What the mapping's `LastProcessingResult` should say from the data plane: `OK` after a
    /// delivered batch, the problem after a give-up or a destination failure.
    pub last_result: Mutex<Option<String>>,
}

impl MappingMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets what `LastProcessingResult` should say.
    pub fn set_result(&self, result: &str) {
        let mut last = self.last_result.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() != Some(result) {
            *last = Some(result.to_owned());
        }
    }

    /// What `LastProcessingResult` should say, if a batch was resolved since this poller started.
    pub fn result(&self) -> Option<String> {
        self.last_result.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Totals over every mapping of one poller, for progress lines and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub polled: u64,
    pub invoked: u64,
    pub batches: u64,
    pub failed_attempts: u64,
    pub filtered_out: u64,
    pub dropped: u64,
    pub on_failure_delivered: u64,
    pub oversized: u64,
}

/// One partition this poller runs, as published with its heartbeat (for `esm status`) and in
/// the metrics. Times are epoch milliseconds on this poller's clock. About 200 bytes as JSON: a
/// heartbeat item stays within one DynamoDB write unit (1 KB) up to about 4 partitions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionReport {
    pub mapping: String,
    pub topic: String,
    pub partition: i32,
    /// Next offset to deliver; -1 until known.
    pub position: i64,
    /// Records after `position`, as last measured.
    pub lag: u64,
    /// Offsets delivered per second over the last interval.
    pub records_per_second: f64,
    /// When `position` last moved (or the partition started here).
    pub advanced_at_ms: i64,
    /// The last successful invoke seen, if any since the partition started here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_invoke_ms: Option<i64>,
    /// The last failed attempt's error, while the batch it hit is not yet delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the metrics need to know about a mapping this poller runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingInfo {
    pub function: String,
    /// `MetricsConfig.Metrics`: `EventCount`, `ErrorCount`, `KafkaMetrics`.
    pub metrics: Vec<String>,
}

/// Every mapping's counters in one poller.
#[derive(Debug, Default)]
pub struct Metrics {
    mappings: Mutex<BTreeMap<String, Arc<MappingMetrics>>>,
    published: Mutex<Published>,
}

#[derive(Debug, Default)]
struct Published {
    partitions: Vec<PartitionReport>,
    infos: BTreeMap<String, MappingInfo>,
}

impl Metrics {
    /// The counters of `mapping` (created on first use).
    pub fn mapping(&self, mapping: &str) -> Arc<MappingMetrics> {
        self.mappings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(mapping.to_owned())
            .or_default()
            .clone()
    }

    /// Every mapping's counters.
    pub fn mappings(&self) -> Vec<(String, Arc<MappingMetrics>)> {
        self.mappings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Replaces what this poller publishes about its partitions and mappings.
    pub fn publish(&self, partitions: Vec<PartitionReport>, infos: BTreeMap<String, MappingInfo>) {
        let mut published = self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *published = Published { partitions, infos };
    }

    /// The partitions as last published.
    pub fn partitions(&self) -> Vec<PartitionReport> {
        self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner).partitions.clone()
    }

    /// The mappings as last published.
    pub fn infos(&self) -> BTreeMap<String, MappingInfo> {
        self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner).infos.clone()
    }

    /// Sums over every mapping.
    pub fn totals(&self) -> Totals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.mappings().iter().fold(Totals::default(), |t, (_, m)| Totals {
            polled: t.polled + get(&m.polled),
            invoked: t.invoked + get(&m.invoked),
            batches: t.batches + get(&m.batches),
            failed_attempts: t.failed_attempts + get(&m.failed_attempts),
            filtered_out: t.filtered_out + get(&m.filtered_out),
            dropped: t.dropped + get(&m.dropped),
            on_failure_delivered: t.on_failure_delivered + get(&m.on_failure_delivered),
            oversized: t.oversized + get(&m.oversized),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_report_an_interval_and_start_afresh() {
        let t = Timings::default();
        assert_eq!(t.take(), Stats::default());
        for v in [5, 2, 9] {
            t.record(v);
        }
        assert_eq!(t.take(), Stats { count: 3, sum: 16, min: 2, max: 9 });
        assert_eq!(t.take(), Stats::default());
    }

    #[test]
    fn totals_add_up_every_mapping() {
        let metrics = Metrics::default();
        MappingMetrics::add(&metrics.mapping("a").invoked, 3);
        MappingMetrics::add(&metrics.mapping("b").invoked, 4);
        MappingMetrics::add(&metrics.mapping("a").batches, 1);
        let totals = metrics.totals();
        assert_eq!((totals.invoked, totals.batches), (7, 1));
    }
}
