//! On-failure destinations: the seam through which given-up records are stored, and what a
//! destination receives. The SQS, SNS and S3 writers are in [`crate::aws::destinations`], the
//! Kafka writer in [`crate::kafka::destination`].
//!
//! `DestinationConfig.OnFailure.Destination` is one of:
//!
//! | destination | what is written |
//! |---|---|
//! | `arn:aws:sqs:REGION:ACCOUNT:QUEUE` | one message: the [`FailureRecord`] |
//! | `arn:aws:sns:REGION:ACCOUNT:TOPIC` | one message: the [`FailureRecord`] |
//! | `arn:aws:s3:::BUCKET` | one object: the [`FailureRecord`] with `payload`, the invoke event as a JSON string |
//! | `kafka://TOPIC` | per record, on the mapping's cluster with its authentication: a message keyed with the record's key, holding the record's [`FailureRecord`] with `payload`, its one-record event as a JSON object |
//! | `kafka://HOST:PORT[,HOST:PORT…]/TOPIC` | the same on another cluster (kafka-esm's extension), with the mapping's transport security and credentials |

use std::fmt::Debug;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;

use super::fate::{FailureRecord, RecordsInfo};
pub use crate::model::destination::{Target, on_failure_destination};

/// One given-up record, for destinations that write one message per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    /// The record's one-record invoke event; `None` when it is too large to be one.
    pub event: Option<Bytes>,
}

/// Records given up together, ready for a destination.
#[derive(Debug, Clone)]
pub struct GivenUp {
    pub record: FailureRecord,
    /// The invoke event of all these records (empty when they could not make one).
    pub payload: Bytes,
    pub records: Vec<FailedRecord>,
}

impl GivenUp {
    /// The failure record as JSON, with the invoke event as the `payload` string (S3's form).
    pub fn with_payload_string(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(&self.record).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value
            && !self.payload.is_empty()
        {
            map.insert("payload".into(), Value::String(String::from_utf8_lossy(&self.payload).into_owned()));
        }
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// The failure record as JSON, without the payload (SQS's and SNS's form).
    pub fn without_payload(&self) -> Vec<u8> {
        serde_json::to_vec(&self.record).unwrap_or_default()
    }

    /// Per record: its key and its own failure record, with `payload` its one-record event as a
    /// JSON object (the `kafka://` form). A message that would be over `max_bytes` with its
    /// payload is written without it: a destination that can never take it would hold the
    /// partition forever.
    pub fn per_record(&self, max_bytes: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        self.records
            .iter()
            .map(|r| {
                let mut record = self.record.clone();
                record.kafka_batch_info.batch_size = 1;
                record.kafka_batch_info.payload_size = r.event.as_ref().map_or(0, Bytes::len);
                record.kafka_batch_info.records_info = [(
                    format!("{}-{}", r.topic, r.partition),
                    RecordsInfo::new((r.offset, r.timestamp_ms), (r.offset, r.timestamp_ms)),
                )]
                .into();
                let without = serde_json::to_vec(&record).unwrap_or_default();
                let mut value = serde_json::to_value(&record).unwrap_or(Value::Null);
                let with = match (&mut value, &r.event) {
                    (Value::Object(map), Some(event)) if without.len() + event.len() + 12 <= max_bytes => {
                        match serde_json::from_slice::<Value>(event) {
                            Ok(event) => {
                                map.insert("payload".into(), event);
                                serde_json::to_vec(&value).ok()
                            }
                            Err(_) => None,
                        }
                    }
                    _ => None,
                };
                (r.key.clone(), with.unwrap_or(without))
            })
            .collect()
    }
}

/// A destination could not store a failure record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("on-failure destination {destination}: {message}")]
pub struct DestinationError {
    pub destination: String,
    pub message: String,
}

/// Stores given-up records. Each call either stores all of them or fails (and is retried: a
/// record may then be stored twice, never lost).
pub trait Destination: Send + Sync + Debug + 'static {
    fn store<'a>(&'a self, given_up: &'a GivenUp) -> BoxFuture<'a, Result<(), DestinationError>>;
}

/// A record's key, read back from its encoded JSON (`"key"` is base64).
pub fn record_key(json: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Key {
        key: Option<String>,
    }
    let key: Key = serde_json::from_slice(json).ok()?;
    STANDARD.decode(key.key?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn per_record_messages_carry_their_event_unless_too_large() {
        use crate::delivery::fate::{Condition, KafkaBatchInfo, RequestContext};
        let record = FailureRecord {
            request_context: RequestContext {
                request_id: "r".into(),
                function_arn: "f".into(),
                condition: Condition::RetryAttemptsExhausted,
                approximate_invoke_count: 1,
            },
            response_context: None,
            version: "1.0",
            timestamp: "t".into(),
            kafka_batch_info: KafkaBatchInfo {
                batch_size: 2,
                event_source_arn: None,
                bootstrap_servers: "b:9092".into(),
                payload_size: 10,
                records_info: BTreeMap::new(),
            },
        };
        let failed = |offset: i64, event: &str| FailedRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: Some(vec![b'k', u8::try_from(offset).unwrap()]),
            event: Some(Bytes::from(event.to_owned())),
        };
        let big = format!("{{\"records\":{{\"t-0\":[{{\"value\":\"{}\"}}]}}}}", "x".repeat(2000));
        let given_up = GivenUp {
            record,
            payload: Bytes::new(),
            records: vec![failed(1, r#"{"records":{"t-0":[{"offset":1}]}}"#), failed(2, &big)],
        };
        let messages = given_up.per_record(1000);
        let values: Vec<Value> = messages.iter().map(|(_, v)| serde_json::from_slice(v).unwrap()).collect();
        assert_eq!(messages[0].0.as_deref(), Some(&b"k\x01"[..]));
        assert_eq!(values[0]["payload"]["records"]["t-0"][0]["offset"], 1);
        assert_eq!(values[0]["KafkaBatchInfo"]["batchSize"], 1);
        assert_eq!(values[0]["KafkaBatchInfo"]["recordsInfo"]["t-0"]["firstRecordOffset"], "1");
        assert!(values[1].get("payload").is_none(), "over the limit: no payload");
        assert_eq!(values[1]["KafkaBatchInfo"]["recordsInfo"]["t-0"]["lastRecordOffset"], "2");
        assert!(given_up.with_payload_string().len() < 400, "empty payload: none written");
    }

    #[test]
    fn keys_are_read_back_from_the_encoded_record() {
        assert_eq!(record_key(br#"{"topic":"t","key":"a2V5","value":"eA=="}"#), Some(b"key".to_vec()));
        assert_eq!(record_key(br#"{"topic":"t","value":"eA=="}"#), None);
    }
}
