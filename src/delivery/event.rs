//! The `aws:kafka` invocation payload, byte for byte as AWS sends it.
//!
//! Each record is encoded to JSON once, when it is read, so that the batcher can keep an exact
//! running size of the request body (the 6 MB rule lives in [`super::batch`]) and the final body
//! is assembled by concatenation, never re-serialised. [`RecordEncoder`] writes the JSON by hand
//! from borrowed fields (librdkafka's message in place): it was the poller's largest CPU cost
//! through `serde` (docs/performance.md); a test checks it against `serde_json` byte for byte.
//!
//! Shape (AWS's, field for field):
//! `{"eventSource":"aws:kafka","eventSourceArn":…,"bootstrapServers":"a:9092,b:9092",
//!   "records":{"topic-0":[{"topic","partition","offset","timestamp","timestampType","key","value","headers"}]}}`

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

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
    /// Bytes left out of `json` because the record could never be sent (its value alone, in
    /// base64, is over [`MAX_PAYLOAD_BYTES`]): the `"value"` member was not encoded. 0 for every
    /// record that may be sent; its size is `json` plus this.
    pub omitted: usize,
}

impl EncodedRecord {
    /// Its size in the event, `omitted` included.
    pub fn size(&self) -> usize {
        self.json.len() + self.omitted
    }
}

/// Encodes one record as the JSON object AWS puts in the event.
pub fn encode_record(record: &KafkaRecord) -> EncodedRecord {
    RecordEncoder::new(&record.topic).encode(RecordView::of(record))
}

/// A record as the encoder reads it: every field borrowed from wherever the record lives (a
/// librdkafka message, a [`KafkaRecord`]), so encoding copies each byte once, into the JSON.
#[derive(Debug, Clone)]
pub struct RecordView<'a, H> {
    pub partition: i32,
    pub offset: i64,
    /// Epoch milliseconds.
    pub timestamp_ms: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// `(key, value)` in record order; duplicates and null values allowed.
    pub headers: H,
}

impl<'a> RecordView<'a, std::iter::Map<std::slice::Iter<'a, Header>, fn(&'a Header) -> (&'a str, Option<&'a [u8]>)>> {
    /// The view of an owned record.
    pub fn of(record: &'a KafkaRecord) -> Self {
        Self {
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            timestamp_type: record.timestamp_type,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: record.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())),
        }
    }
}

/// Encodes records of one topic as the JSON objects AWS puts in the event, straight into one
/// pre-sized buffer per record (base64 written in place with SIMD, numbers with `itoa`, no
/// intermediate strings or JSON values). Byte for byte what `serde_json` makes of the same object
/// (a test compares the two).
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    /// `{"topic":"<topic, JSON-escaped>","partition":`
    head: String,
}

impl RecordEncoder {
    pub fn new(topic: &str) -> Self {
        let mut head = String::with_capacity(24 + topic.len());
        head.push_str("{\"topic\":");
        push_json_str(&mut head, topic);
        head.push_str(",\"partition\":");
        Self { head }
    }

    /// The record's JSON object.
    pub fn encode<'a, H>(&self, record: RecordView<'a, H>) -> EncodedRecord
    where
        H: Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let RecordView { partition, offset, timestamp_ms, timestamp_type, key, value, headers } = record;
        let mut json = String::with_capacity(self.capacity(key, value, headers.clone()));
        let mut numbers = itoa::Buffer::new();
        json.push_str(&self.head);
        json.push_str(numbers.format(partition));
        json.push_str(",\"offset\":");
        json.push_str(numbers.format(offset));
        json.push_str(",\"timestamp\":");
        json.push_str(numbers.format(timestamp_ms));
        json.push_str(",\"timestampType\":\"");
        json.push_str(timestamp_type.as_str());
        json.push('"');
        // A null key or value is left out of the record, as AWS does.
        if let Some(key) = key {
            json.push_str(",\"key\":\"");
            base64_simd::STANDARD.encode_append(key, &mut json);
            json.push('"');
        }
        // A value that cannot fit any payload is not encoded (review #15: a huge record was
        // base64-encoded whole before being found too large); its size is still exact.
        let mut omitted = 0;
        if let Some(value) = value {
            let encoded = value.len().div_ceil(3) * 4;
            if encoded > MAX_PAYLOAD_BYTES {
                omitted = ",\"value\":\"\"".len() + encoded;
            } else {
                json.push_str(",\"value\":\"");
                base64_simd::STANDARD.encode_append(value, &mut json);
                json.push('"');
            }
        }
        // `[{"k1":[…]},{"k2":[…]}]`: a list of one-entry objects, so order and duplicates survive.
        json.push_str(",\"headers\":[");
        for (i, (name, bytes)) in headers.enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push('{');
            push_json_str(&mut json, name);
            json.push_str(":[");
            // Bytes as Java serialises `byte[]`: signed, -128..127. A null header value is sent as
            // an empty array: deserialisers typed `byte[]`/`Vec<i8>` (aws_lambda_events among
            // them) would reject `null`.
            for (j, &b) in bytes.unwrap_or_default().iter().enumerate() {
                if j > 0 {
                    json.push(',');
                }
                json.push_str(numbers.format(b as i8));
            }
            json.push_str("]}");
        }
        json.push_str("]}");
        EncodedRecord { partition, offset, timestamp_ms, json: json.into_bytes(), omitted }
    }

    /// An upper bound of the record's encoded size (exact but for escapes and digit counts), so
    /// the buffer is allocated once.
    fn capacity<'a>(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> usize {
        let base64 = |b: Option<&[u8]>| b.map_or(0, |b| 10 + b.len().div_ceil(3) * 4);
        // head, 3 numbers, the fixed names and the longest timestamp type, the header brackets.
        let fixed = self.head.len() + 11 + 12 + 13 + 20 + 20 + 37 + 16;
        let headers: usize = headers.map(|(k, v)| 8 + k.len() * 6 + v.map_or(0, |v| v.len() * 5)).sum();
        fixed + base64(key) + base64(value) + headers
    }
}

/// `s` as a JSON string, escaped exactly as `serde_json` escapes it: `"` and `\`, the short
/// forms `\b \t \n \f \r`, `\u00xx` (lower-case hex) for the other control characters; every
/// other character, non-ASCII included, as is.
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
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
            Some(_) => 1 + record.size(),
            // [`,`] + `"t-p":[` + record + `]`
            None => {
                usize::from(!self.groups.is_empty()) + group_open(topic, record.partition).len() + record.size() + 1
            }
        }
    }

    /// Adds a record; records of one partition must be pushed in offset order.
    pub fn push(&mut self, topic: &Arc<str>, record: EncodedRecord) {
        debug_assert_eq!(record.omitted, 0, "a record too large for any payload was pushed");
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
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};
    use serde_json::{Value, json};

    /// The encoder before [`RecordEncoder`]: `serde_json` over the record, the reference the
    /// hand-written one must match byte for byte.
    fn serde_encode(record: &KafkaRecord) -> Vec<u8> {
        serde_json::to_vec(&RecordJson(record)).unwrap()
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
            serializer.collect_str(&base64::display::Base64Display::new(self.0, &STANDARD))
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

    /// Odd records: null and empty keys and values, binary and non-UTF-8 bytes, every byte value
    /// in a header, duplicate and null headers, keys and topics needing JSON escapes, extreme
    /// numbers, each timestamp type.
    fn odd_records() -> Vec<KafkaRecord> {
        let all_bytes: Vec<u8> = (0..=255).collect();
        let topics: [Arc<str>; 3] = [Arc::from("orders"), Arc::from("t\"q\\u\u{1}\u{1f}\n\t\u{7f}é💥"), Arc::from("")];
        let keys: [Option<Vec<u8>>; 5] =
            [None, Some(vec![]), Some(b"k".to_vec()), Some(vec![0xff, 0xfe, 0x00, 0x80]), Some(all_bytes.clone())];
        let values: [Option<Vec<u8>>; 6] = [
            None,
            Some(vec![]),
            Some(b"a".to_vec()),
            Some(b"ab".to_vec()),
            Some("{\"n\":1,\"s\":\"\u{e9}\"}".as_bytes().to_vec()),
            Some(all_bytes.iter().cycle().take(3001).copied().collect()),
        ];
        let header_sets = [
            vec![],
            vec![Header { key: String::new(), value: None }],
            vec![
                Header { key: "dup".into(), value: Some(vec![1]) },
                Header { key: "dup".into(), value: None },
                Header { key: "dup".into(), value: Some(vec![]) },
                Header { key: "q\"\\\u{8}\u{c}\r\u{0}ü".into(), value: Some(all_bytes.clone()) },
            ],
        ];
        let types = [TimestampType::CreateTime, TimestampType::LogAppendTime, TimestampType::NoTimestampType];
        let mut out = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            for (j, value) in values.iter().enumerate() {
                for (k, headers) in header_sets.iter().enumerate() {
                    let n = i * 100 + j * 10 + k;
                    out.push(KafkaRecord {
                        topic: topics[n % topics.len()].clone(),
                        partition: [0, 7, i32::MAX][n % 3],
                        offset: [0, 42, i64::MAX][(n / 3) % 3],
                        timestamp_ms: [-1, 0, 1_545_084_650_987, i64::MIN][n % 4],
                        timestamp_type: types[n % types.len()],
                        key: key.clone(),
                        value: value.clone(),
                        headers: headers.clone(),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn hand_written_encoder_matches_serde_json_byte_for_byte() {
        let records = odd_records();
        assert!(records.len() >= 90);
        for r in &records {
            let encoded = encode_record(r);
            let reference = serde_encode(r);
            assert_eq!(String::from_utf8_lossy(&encoded.json), String::from_utf8_lossy(&reference), "record {r:?}");
            assert_eq!(encoded.json, reference);
            assert_eq!(
                (encoded.partition, encoded.offset, encoded.timestamp_ms),
                (r.partition, r.offset, r.timestamp_ms)
            );
            // And it is the JSON the contract describes: parses, base64 decodes to the bytes.
            let v: Value = serde_json::from_slice(&encoded.json).unwrap();
            let decoded = |field: &str| v.get(field).map(|s| STANDARD.decode(s.as_str().unwrap()).unwrap());
            assert_eq!(decoded("key"), r.key);
            assert_eq!(decoded("value"), r.value);
        }
    }

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

    /// Review #15: a record too large for any payload was base64-encoded whole first.
    #[test]
    fn a_value_too_large_for_any_payload_is_not_encoded_but_its_size_is_exact() {
        let mut huge = record(7);
        huge.value = Some(vec![b'v'; MAX_PAYLOAD_BYTES / 4 * 3 + 3]);
        let encoded = encode_record(&huge);
        assert!(encoded.json.len() < 1_000, "the value was encoded: {} bytes", encoded.json.len());
        assert!(!String::from_utf8_lossy(&encoded.json).contains("\"value\""));
        assert_eq!(encoded.size(), serde_encode(&huge).len(), "the size it would have had, exactly");
        // One byte less fits a payload on its own: encoded as ever.
        huge.value = Some(vec![b'v'; MAX_PAYLOAD_BYTES / 4 * 3]);
        let encoded = encode_record(&huge);
        assert_eq!((encoded.omitted, encoded.json), (0, serde_encode(&huge)));
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
