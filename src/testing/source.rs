//! A partition in memory.

use std::collections::VecDeque;

use crate::delivery::record::{KafkaRecord, RecordSource, SourceError};

/// An in-memory partition for tests: yields its records, then waits forever (like an idle
/// partition) or ends, as chosen.
#[derive(Debug, Default)]
pub struct MemorySource {
    records: VecDeque<Result<KafkaRecord, SourceError>>,
    end_when_empty: bool,
}

impl MemorySource {
    /// A source that idles (never ends) after its records, like a real partition.
    pub fn idle_after(records: impl IntoIterator<Item = KafkaRecord>) -> Self {
        Self { records: records.into_iter().map(Ok).collect(), end_when_empty: false }
    }

    /// A source that ends after its records.
    pub fn ending_after(records: impl IntoIterator<Item = KafkaRecord>) -> Self {
        Self { records: records.into_iter().map(Ok).collect(), end_when_empty: true }
    }

    pub fn push(&mut self, item: Result<KafkaRecord, SourceError>) {
        self.records.push_back(item);
    }
}

impl RecordSource for MemorySource {
    async fn next_record(&mut self) -> Option<Result<KafkaRecord, SourceError>> {
        match self.records.pop_front() {
            Some(item) => Some(item),
            None if self.end_when_empty => None,
            None => std::future::pending().await,
        }
    }
}
