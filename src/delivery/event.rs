//! The `aws:kafka` invocation payload, byte for byte as AWS sends it.
//!
//! Each record is encoded to JSON once, when it is read, so that the batcher can keep an exact
//! running size of the request body (the 6 MB rule lives in [`super::batch`]) and the final body
//! is assembled by concatenation, never re-serialised.
//!
//! Shape (AWS's, field for field):
//! `{"eventSource":"aws:kafka","eventSourceArn":…,"bootstrapServers":"a:9092,b:9092",
//!   "records":{"topic-0":[{"topic","partition","offset","timestamp","timestampType","key","value","headers"}]}}`

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

pub use super::record::{Header, KafkaRecord, TimestampType};
use crate::model::mapping::EventSourceMapping;

/// The synchronous-invoke request limit, which AWS applies to the whole encoded event.
pub const MAX_PAYLOAD_BYTES: usize = 6_291_456;

/// A record already encoded as its JSON object inside `records["topic-partition"]`.
#[derive(Debug, Clone)]
pub struct EncodedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub json: Vec<u8>,
}

/// Encodes one record as the JSON object AWS puts in the event.
pub fn encode_record(record: &KafkaRecord) -> EncodedRecord {
    let base64_len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, |b| b.len().div_ceil(3) * 4);
    let mut json = Vec::with_capacity(160 + record.topic.len() + base64_len(&record.key) + base64_len(&record.value));
    // Writing into a Vec cannot fail, and every field serialises infallibly.
    let _ = serde_json::to_writer(&mut json, &RecordJson(record));
    EncodedRecord { partition: record.partition, offset: record.offset, timestamp_ms: record.timestamp_ms, json }
}

struct RecordJson<'a>(&'a KafkaRecord);

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("topic", &*r.topic)?;
        map.serialize_entry("partition", &r.partition)?;
        map.serialize_entry("offset", &r.offset)?;
        map.serialize_entry("timestamp", &r.timestamp_ms)?;
        map.serialize_entry("timestampType", r.timestamp_type.as_str())?;
        // A null key or value is left out of the record, as AWS does.
        if let Some(key) = &r.key {
            map.serialize_entry("key", &Base64(key))?;
        }
        if let Some(value) = &r.value {
            map.serialize_entry("value", &Base64(value))?;
        }
        map.serialize_entry("headers", &HeadersJson(&r.headers))?;
        map.end()
    }
}

struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

/// `[{"k1":[…]},{"k2":[…]}]`: a list of one-entry objects, so order and duplicates survive.
struct HeadersJson<'a>(&'a [Header]);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for header in self.0 {
            seq.serialize_element(&OneHeader(header))?;
        }
        seq.end()
    }
}

struct OneHeader<'a>(&'a Header);

impl Serialize for OneHeader<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        // A null header value is sent as an empty array: deserialisers typed `byte[]`/`Vec<i8>`
        // (aws_lambda_events among them) would reject `null`.
        map.serialize_entry(&self.0.key, &SignedBytes(self.0.value.as_deref().unwrap_or_default()))?;
        map.end()
    }
}

/// Bytes as Java serialises `byte[]`: signed, -128..127.
struct SignedBytes<'a>(&'a [u8]);

impl Serialize for SignedBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|&b| b as i8))
    }
}

/// Where the records came from, which decides `eventSource` and `eventSourceArn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    /// Amazon MSK: `"eventSource":"aws:kafka"` with the cluster ARN.
    Msk { cluster_arn: String },
    /// Self-managed Kafka: `"eventSource":"SelfManagedKafka"`, no ARN.
    SelfManaged,
}

impl EventSource {
    /// Where a mapping's records come from.
    pub fn of(mapping: &EventSourceMapping) -> Self {
        match &mapping.event_source_arn {
            Some(arn) => Self::Msk { cluster_arn: arn.clone() },
            None => Self::SelfManaged,
        }
    }
}

/// The fixed head of every payload of one mapping, encoded once.
#[derive(Debug, Clone)]
pub struct Envelope {
    prefix: Vec<u8>,
}

#[derive(Serialize)]
struct EnvelopeHead<'a> {
    #[serde(rename = "eventSource")]
    event_source: &'a str,
    #[serde(rename = "eventSourceArn", skip_serializing_if = "Option::is_none")]
    event_source_arn: Option<&'a str>,
    #[serde(rename = "bootstrapServers")]
    bootstrap_servers: &'a str,
}

impl Envelope {
    /// `bootstrap_servers` is the comma-separated broker list, as AWS sends it.
    pub fn new(source: &EventSource, bootstrap_servers: &str) -> Self {
        let (event_source, event_source_arn) = match source {
            EventSource::Msk { cluster_arn } => ("aws:kafka", Some(cluster_arn.as_str())),
            EventSource::SelfManaged => ("SelfManagedKafka", None),
        };
        let head = EnvelopeHead { event_source, event_source_arn, bootstrap_servers };
        let mut prefix = serde_json::to_vec(&head).unwrap_or_default();
        // Re-open the object to append `"records":{`.
        prefix.pop();
        prefix.extend_from_slice(b",\"records\":{");
        Self { prefix }
    }

    /// Size of a payload with no records: `…"records":{}}`.
    pub fn empty_size(&self) -> usize {
        self.prefix.len() + 2
    }
}

/// A payload being filled: its exact encoded size is known before every addition.
#[derive(Debug)]
pub struct Payload {
    envelope: Arc<Envelope>,
    groups: BTreeMap<(Arc<str>, i32), Group>,
    size: usize,
    records: usize,
}

#[derive(Debug)]
struct Group {
    /// `"topic-partition":[`, JSON-escaped.
    open: Vec<u8>,
    records: Vec<EncodedRecord>,
}

impl Payload {
    pub fn new(envelope: Arc<Envelope>) -> Self {
        let size = envelope.empty_size();
        Self { envelope, groups: BTreeMap::new(), size, records: 0 }
    }

    /// Exact size in bytes of the body [`Payload::finish`] would produce now.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Exact size the body would have with `record` added.
    pub fn size_with(&self, topic: &Arc<str>, record: &EncodedRecord) -> usize {
        self.size + self.growth(topic, record)
    }

    fn growth(&self, topic: &Arc<str>, record: &EncodedRecord) -> usize {
        match self.groups.get(&(topic.clone(), record.partition)) {
            // `,` + record
            Some(_) => 1 + record.json.len(),
            // [`,`] + `"t-p":[` + record + `]`
            None => {
                usize::from(!self.groups.is_empty()) + group_open(topic, record.partition).len() + record.json.len() + 1
            }
        }
    }

    /// Adds a record; records of one partition must be pushed in offset order.
    pub fn push(&mut self, topic: &Arc<str>, record: EncodedRecord) {
        self.size += self.growth(topic, &record);
        self.records += 1;
        self.groups
            .entry((topic.clone(), record.partition))
            .or_insert_with(|| Group { open: group_open(topic, record.partition), records: Vec::new() })
            .records
            .push(record);
    }

    /// Records per `(topic, partition)`, in offset order.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, i32, &[EncodedRecord])> {
        self.groups.iter().map(|((t, p), g)| (&**t, *p, g.records.as_slice()))
    }

    /// The request body, shared so a retried invoke re-sends it without a copy.
    pub fn finish(&self) -> bytes::Bytes {
        let mut body = Vec::with_capacity(self.size);
        body.extend_from_slice(&self.envelope.prefix);
        for (i, group) in self.groups.values().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&group.open);
            for (j, record) in group.records.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&record.json);
            }
            body.push(b']');
        }
        body.extend_from_slice(b"}}");
        debug_assert_eq!(body.len(), self.size, "payload size accounting drifted");
        bytes::Bytes::from(body)
    }
}

fn group_open(topic: &str, partition: i32) -> Vec<u8> {
    let mut open = serde_json::to_vec(&format!("{topic}-{partition}")).unwrap_or_default();
    open.extend_from_slice(b":[");
    open
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn record(offset: i64) -> KafkaRecord {
        KafkaRecord {
            topic: Arc::from("orders"),
            partition: 0,
            offset,
            timestamp_ms: 1_545_084_650_987,
            timestamp_type: TimestampType::CreateTime,
            key: Some(b"key".to_vec()),
            value: Some(b"Hello".to_vec()),
            headers: vec![Header { key: "traceId".into(), value: Some("ab\u{eb}".as_bytes().to_vec()) }],
        }
    }

    #[test]
    fn record_matches_the_contract_byte_for_byte() {
        let encoded = encode_record(&record(15));
        assert_eq!(
            std::str::from_utf8(&encoded.json).unwrap(),
            r#"{"topic":"orders","partition":0,"offset":15,"timestamp":1545084650987,"timestampType":"CREATE_TIME","key":"a2V5","value":"SGVsbG8=","headers":[{"traceId":[97,98,-61,-85]}]}"#
        );
    }

    #[test]
    fn null_key_and_value_are_left_out_and_headers_keep_order_and_duplicates() {
        let mut r = record(1);
        r.key = None;
        r.value = None;
        r.timestamp_type = TimestampType::LogAppendTime;
        r.headers = vec![
            Header { key: "b".into(), value: Some(vec![0xff]) },
            Header { key: "a".into(), value: None },
            Header { key: "b".into(), value: Some(vec![1, 2]) },
        ];
        let v: Value = serde_json::from_slice(&encode_record(&r).json).unwrap();
        assert_eq!(v.get("key"), None);
        assert_eq!(v.get("value"), None);
        assert_eq!(v["timestampType"], "LOG_APPEND_TIME");
        assert_eq!(v["headers"], json!([{"b":[-1]},{"a":[]},{"b":[1,2]}]));
    }

    #[test]
    fn msk_and_self_managed_envelopes() {
        let arn =
            "arn:aws:kafka:us-west-2:012345678901:cluster/ExampleMSKCluster/e9f754c6-d29a-4430-a7db-958a19fd2c54-4";
        let msk =
            Arc::new(Envelope::new(&EventSource::Msk { cluster_arn: arn.into() }, "b-1.example:9092,b-2.example:9092"));
        let mut payload = Payload::new(msk);
        payload.push(&Arc::from("orders"), encode_record(&record(15)));
        let body = payload.finish();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            concat!(
                r#"{"eventSource":"aws:kafka","eventSourceArn":"arn:aws:kafka:us-west-2:012345678901:cluster/ExampleMSKCluster/e9f754c6-d29a-4430-a7db-958a19fd2c54-4","#,
                r#""bootstrapServers":"b-1.example:9092,b-2.example:9092","records":{"orders-0":[{"topic":"orders","partition":0,"offset":15,"timestamp":1545084650987,"timestampType":"CREATE_TIME","key":"a2V5","value":"SGVsbG8=","headers":[{"traceId":[97,98,-61,-85]}]}]}}"#
            )
        );

        let own = Arc::new(Envelope::new(&EventSource::SelfManaged, "localhost:9092"));
        let v: Value = serde_json::from_slice(&Payload::new(own).finish()).unwrap();
        assert_eq!(v, json!({"eventSource":"SelfManagedKafka","bootstrapServers":"localhost:9092","records":{}}));
    }

    #[test]
    fn size_accounting_is_exact_across_partitions_and_topics() {
        let envelope = Arc::new(Envelope::new(&EventSource::SelfManaged, "a:1,b:2"));
        let mut payload = Payload::new(envelope);
        assert_eq!(payload.size(), payload.finish().len());
        let topics: [Arc<str>; 2] = [Arc::from("t\"quoted"), Arc::from("plain")];
        for i in 0..20 {
            let mut r = record(i);
            r.topic = topics[(i % 2) as usize].clone();
            r.partition = (i % 3) as i32;
            r.value = Some(vec![b'x'; i as usize * 7]);
            let e = encode_record(&r);
            let expected = payload.size_with(&r.topic, &e);
            payload.push(&r.topic, e);
            assert_eq!(payload.size(), expected);
            assert_eq!(payload.finish().len(), expected);
        }
        let v: Value = serde_json::from_slice(&payload.finish()).unwrap();
        assert_eq!(v["records"].as_object().unwrap().len(), 6);
    }
}
