//! A Kafka record as the data plane sees it, and the record-source seam: one partition's records,
//! in offset order, from whatever client reads them ([`crate::kafka`] has the librdkafka
//! implementation; the test kit's `MemorySource` is the fake the unit tests drive).

use std::future::Future;
use std::sync::Arc;

use super::event::{EncodedRecord, RecordEncoder, RecordView};
use super::policy::StopReason;

/// How Kafka stamped a record's `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
    /// Pre-0.10 message format: Java's `TimestampType.NO_TIMESTAMP_TYPE`, with timestamp -1.
    NoTimestampType,
}

impl TimestampType {
    /// The name Java's `TimestampType` enum serialises to, which AWS copies into the event.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreateTime => "CREATE_TIME",
            Self::LogAppendTime => "LOG_APPEND_TIME",
            Self::NoTimestampType => "NO_TIMESTAMP_TYPE",
        }
    }
}

/// One record header. Kafka allows duplicate keys and a null value; order is significant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A record as read from a partition, independent of the Kafka client that read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Epoch milliseconds.
    pub timestamp_ms: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// Why a source could not produce a record.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Worth waiting for: the client keeps retrying by itself (broker restarts, leader moves).
    #[error("transient Kafka error on partition {partition}: {message}")]
    Transient { partition: i32, message: String },
    /// The partition cannot be read on: it is restarted from its committed offset, or, with
    /// `stop`, its mapping is stopped until someone fixes the cause (authorisation).
    #[error("Kafka error on partition {partition}: {message}")]
    Fatal { partition: i32, message: String, stop: Option<StopReason> },
}

/// One partition's records in offset order.
pub trait RecordSource: Send {
    /// The next record, waiting as long as it takes. `None` means the source has ended (only the
    /// fakes end; a Kafka partition never does). Must be cancel-safe: dropping the future loses
    /// no record.
    fn next_record(&mut self) -> impl Future<Output = Option<Result<KafkaRecord, SourceError>>> + Send;

    /// The next record already encoded by `encoder`, as [`RecordSource::next_record`] otherwise.
    /// A source that can read a record in place (librdkafka's borrowed messages) encodes it from
    /// there, without an owned copy first. Cancel-safe as `next_record`.
    fn next_encoded(
        &mut self,
        encoder: &RecordEncoder,
    ) -> impl Future<Output = Option<Result<EncodedRecord, SourceError>>> + Send {
        async move { Some(self.next_record().await?.map(|record| encoder.encode(RecordView::of(&record)))) }
    }
}
