//! What happens to records, counted per mapping: the numbers behind the CloudWatch metrics (AWS's
//! `EventCount` names where they exist), `esm poll`'s progress line and the poller Lambda's
//! summary. Counting is a few relaxed atomic adds per batch; emitting is elsewhere.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A distribution measured over an interval: count, sum, min, max.
#[derive(Debug)]
pub struct Timings {
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for Timings {
    fn default() -> Self {
        Self { count: AtomicU64::new(0), sum: AtomicU64::new(0), min: AtomicU64::new(u64::MAX), max: AtomicU64::new(0) }
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

/// Every mapping's counters in one poller.
#[derive(Debug, Default)]
pub struct Metrics {
    mappings: Mutex<BTreeMap<String, Arc<MappingMetrics>>>,
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
