//! The record-source seam: one partition's records, in offset order, from whatever Kafka client
//! reads them. [`crate::kafka`] has the librdkafka implementation; [`MemorySource`] is the fake
//! the unit tests drive.

use std::collections::VecDeque;
use std::future::Future;

use crate::event::KafkaRecord;

/// Why a source could not produce a record.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Worth waiting for: the client keeps retrying by itself (broker restarts, leader moves).
    #[error("transient Kafka error on partition {partition}: {message}")]
    Transient { partition: i32, message: String },
    /// The partition cannot be read until someone fixes something (authorisation, deleted topic).
    #[error("Kafka error on partition {partition}: {message}")]
    Fatal { partition: i32, message: String },
}

/// One partition's records in offset order.
pub trait RecordSource: Send {
    /// The next record, waiting as long as it takes. `None` means the source has ended (only the
    /// fakes end; a Kafka partition never does). Must be cancel-safe: dropping the future loses
    /// no record.
    fn next_record(&mut self) -> impl Future<Output = Option<Result<KafkaRecord, SourceError>>> + Send;
}

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
