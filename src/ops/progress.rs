//! What a poller publishes about each partition it runs: position, lag, rate, when it last moved,
//! its last error. The supervisor observes its tenures at every lease scan; the heartbeat carries
//! the result (no extra write) and the metrics print it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::coordination::leases::LeaseId;
use crate::delivery::metrics::PartitionReport;
use crate::delivery::worker::Progress;

/// The largest `Progress` attribute a heartbeat carries; DynamoDB items stop at 400 KB. Beyond
/// it the partitions with the least lag are left out.
pub const MAX_PROGRESS_BYTES: usize = 200_000;

#[derive(Debug, Clone)]
struct Seen {
    counter: u64,
    position: i64,
    batches: u64,
    at: Instant,
    advanced_at_ms: i64,
    last_invoke_ms: Option<i64>,
    rate: f64,
}

/// Per-partition observations between lease scans.
#[derive(Debug, Default)]
pub struct ProgressBook {
    seen: BTreeMap<LeaseId, Seen>,
}

impl ProgressBook {
    /// Observes every held partition (`counter` tells tenures of one partition apart) at `now`
    /// (`now_ms` on the wall clock) and returns their reports.
    pub fn observe<'a>(
        &mut self,
        held: impl IntoIterator<Item = (&'a LeaseId, u64, &'a Progress)>,
        now: Instant,
        now_ms: i64,
    ) -> Vec<PartitionReport> {
        let mut seen = BTreeMap::new();
        let mut reports = Vec::new();
        for (id, counter, progress) in held {
            let position = progress.position();
            let batches = progress.batches.load(Ordering::Relaxed);
            let entry = match self.seen.remove(id).filter(|s| s.counter == counter) {
                None => Seen {
                    counter,
                    position,
                    batches,
                    at: now,
                    advanced_at_ms: now_ms,
                    last_invoke_ms: None,
                    rate: 0.0,
                },
                Some(prev) => {
                    let elapsed = now.duration_since(prev.at).as_secs_f64();
                    let moved = position > prev.position && prev.position >= 0;
                    Seen {
                        counter,
                        position,
                        batches,
                        at: now,
                        advanced_at_ms: if position != prev.position { now_ms } else { prev.advanced_at_ms },
                        last_invoke_ms: if batches > prev.batches { Some(now_ms) } else { prev.last_invoke_ms },
                        rate: if moved && elapsed > 0.0 {
                            (position - prev.position) as f64 / elapsed
                        } else if elapsed > 0.0 {
                            0.0
                        } else {
                            prev.rate
                        },
                    }
                }
            };
            reports.push(PartitionReport {
                mapping: id.mapping.to_string(),
                topic: id.topic.to_string(),
                partition: id.partition,
                position,
                lag: progress.lag(),
                records_per_second: (entry.rate * 10.0).round() / 10.0,
                advanced_at_ms: entry.advanced_at_ms,
                last_invoke_ms: entry.last_invoke_ms,
                last_error: progress.last_error().map(|e| truncate(&e, 300)),
            });
            seen.insert(id.clone(), entry);
        }
        self.seen = seen;
        reports
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The heartbeat's `Progress` attribute: the reports as JSON, within [`MAX_PROGRESS_BYTES`].
pub fn encode(reports: &[PartitionReport]) -> String {
    let mut kept: Vec<&PartitionReport> = reports.iter().collect();
    loop {
        let json = serde_json::to_string(&kept).unwrap_or_else(|_| "[]".to_owned());
        if json.len() <= MAX_PROGRESS_BYTES || kept.is_empty() {
            return json;
        }
        // Keep the partitions an operator is most likely looking for: the most behind.
        kept.sort_by_key(|r| std::cmp::Reverse(r.lag));
        kept.truncate(kept.len() * 3 / 4);
    }
}

/// Reads a heartbeat's `Progress` attribute; nothing when absent or unreadable.
pub fn decode(progress: &str) -> Vec<PartitionReport> {
    serde_json::from_str(progress).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn rate_advance_and_last_invoke_follow_the_worker() {
        let id = LeaseId::new("m", "t", 0);
        let progress = Progress::default();
        let mut book = ProgressBook::default();
        progress.position.store(10, Ordering::Relaxed);
        let first = book.observe([(&id, 1, &progress)], Instant::now(), 1_000);
        assert_eq!((first[0].advanced_at_ms, first[0].last_invoke_ms, first[0].records_per_second), (1_000, None, 0.0));
        tokio::time::advance(Duration::from_secs(2)).await;
        progress.position.store(30, Ordering::Relaxed);
        progress.batches.fetch_add(1, Ordering::Relaxed);
        progress.note_attempt(Some("function error (Unhandled): boom"));
        let second = book.observe([(&id, 1, &progress)], Instant::now(), 3_000);
        assert_eq!(
            (second[0].advanced_at_ms, second[0].last_invoke_ms, second[0].records_per_second),
            (3_000, Some(3_000), 10.0)
        );
        assert_eq!(second[0].last_error.as_deref(), Some("function error (Unhandled): boom"));
        tokio::time::advance(Duration::from_secs(2)).await;
        let third = book.observe([(&id, 1, &progress)], Instant::now(), 5_000);
        assert_eq!((third[0].advanced_at_ms, third[0].records_per_second), (3_000, 0.0), "no progress since");
        // A new tenure starts afresh.
        let fourth = book.observe([(&id, 2, &progress)], Instant::now(), 6_000);
        assert_eq!((fourth[0].advanced_at_ms, fourth[0].last_invoke_ms), (6_000, None));
        assert_eq!(decode(&encode(&fourth)), fourth);
    }
}
