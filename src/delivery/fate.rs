//! Records' fate: the rules, without I/O, that decide what happens to a batch after an attempt —
//! AWS's `FunctionResponseTypes`, `MaximumRetryAttempts`, `MaximumRecordAgeInSeconds` and
//! `BisectBatchOnFunctionError`, and the on-failure record AWS writes when it gives records up.
//! [`super::deliver`] runs a batch through these rules; [`super::destination`] stores what is given up.
//!
//! - **Partial batch responses** (`ReportBatchItemFailures`): [`read_response`]. An empty body,
//!   `null`, `{}`, a `null` or empty `batchItemFailures` is success; otherwise the records from the
//!   lowest reported offset onward are sent again (those before it are done). A response that is
//!   not JSON, or names a record that was not in the batch, fails the whole batch.
//! - **Retries**: the first attempt is not counted; `MaximumRetryAttempts` -1 retries forever,
//!   except with an on-failure destination, where AWS caps it at [`DESTINATION_RETRY_CAP`]. Every
//!   failed attempt counts (function errors, partial failures without progress, Invoke API errors
//!   worth retrying).
//! - **Bisect**: on a function error, a batch of more than one record is split in two halves, tried
//!   in order. AWS: "Splitting a batch does not count towards the retry quota", so each half starts
//!   with no retries counted; a half of one record that keeps failing is retried
//!   `MaximumRetryAttempts` times, then given up alone.
//! - **Partial progress**: a partial response that moves past the first record makes the rest a new,
//!   smaller batch (its retries start again, as for a split); one that reports the first record
//!   is a failed attempt.
//! - **Record age**: before every attempt, records older than `MaximumRecordAgeInSeconds` (by their
//!   Kafka timestamp; records without one never expire) are given up with `RecordAgeExceeded`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::model::mapping::EventSourceMapping;

/// AWS: "infinite" retries with an on-failure destination become this many.
pub const DESTINATION_RETRY_CAP: u32 = 10;

/// The fate settings of one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FatePolicy {
    /// Retries after the first attempt; `None` retries forever.
    pub max_retries: Option<u32>,
    /// `None`: records never expire.
    pub max_age: Option<Duration>,
    pub bisect: bool,
    /// `FunctionResponseTypes: ["ReportBatchItemFailures"]`.
    pub partial_responses: bool,
}

impl FatePolicy {
    /// A validated mapping's settings, with AWS's defaults (-1 everywhere, no bisect).
    pub fn of(mapping: &EventSourceMapping) -> Self {
        let has_destination = crate::model::destination::on_failure_destination(mapping).is_some();
        let max_retries = match mapping.maximum_retry_attempts {
            Some(n) if n >= 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ if has_destination => Some(DESTINATION_RETRY_CAP),
            _ => None,
        };
        let max_age = match mapping.maximum_record_age_in_seconds {
            Some(s) if s >= 0 => Some(Duration::from_secs(u64::try_from(s).unwrap_or(0))),
            _ => None,
        };
        Self {
            max_retries,
            max_age,
            bisect: mapping.bisect_batch_on_function_error.unwrap_or(false),
            partial_responses: mapping.function_response_types.iter().flatten().any(|t| t == "ReportBatchItemFailures"),
        }
    }

    /// Whether a record stamped `timestamp_ms` (epoch ms; negative: no timestamp) is too old at
    /// `now_ms`.
    pub fn expired(&self, now_ms: i64, timestamp_ms: i64) -> bool {
        let Some(max_age) = self.max_age else { return false };
        let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        timestamp_ms >= 0 && now_ms.saturating_sub(timestamp_ms) > max_ms
    }

    /// What to do after a failed attempt of a batch of `records` records that has had `retries`
    /// retries so far. `function_error`: the function itself failed (bisect applies only then).
    pub fn after_failure(&self, records: usize, retries: u32, function_error: bool) -> Next {
        if self.bisect && function_error && records > 1 {
            Next::Split
        } else if self.max_retries.is_some_and(|max| retries >= max) {
            Next::GiveUp(Condition::RetryAttemptsExhausted)
        } else {
            Next::Retry
        }
    }
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Retry,
    /// Split in two halves, each with its own retries (a split is not a retry).
    Split,
    GiveUp(Condition),
}

/// Why records were given up: AWS's `requestContext.condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
    MaximumPayloadSizeExceeded,
}

impl Condition {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Self::RecordAgeExceeded => "RecordAgeExceeded",
            Self::MaximumPayloadSizeExceeded => "MaximumPayloadSizeExceeded",
        }
    }
}

/// What a successful invoke's response says under `ReportBatchItemFailures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Success,
    /// Send again from this offset (the lowest reported) onward.
    RetryFrom(i64),
    /// Malformed, or names a record not in the batch: the whole batch failed.
    Invalid(String),
}

/// Reads a partial batch response for a batch of `key` (`"topic-partition"`) holding `offsets`
/// (ascending).
pub fn read_response(body: &[u8], key: &str, offsets: &[i64]) -> Response {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Response::Success;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return Response::Invalid(format!("the response is not JSON: {e}")),
    };
    let failures = match &value {
        Value::Null => return Response::Success,
        Value::Object(map) => match map.get("batchItemFailures") {
            None | Some(Value::Null) => return Response::Success,
            Some(Value::Array(items)) => items,
            Some(_) => return Response::Invalid("batchItemFailures is not a list".into()),
        },
        _ => return Response::Invalid("the response is neither an object nor null".into()),
    };
    let mut lowest: Option<i64> = None;
    for item in failures {
        let Some(id) = item.get("itemIdentifier") else {
            return Response::Invalid(format!("{item} has no itemIdentifier"));
        };
        let partition = id.get("partition").and_then(Value::as_str);
        let offset = match id.get("offset") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse::<i64>().ok(),
            _ => None,
        };
        let (Some(partition), Some(offset)) = (partition, offset) else {
            return Response::Invalid(format!("itemIdentifier {id} is not {{\"partition\":\"topic-N\",\"offset\":N}}"));
        };
        if partition != key || offsets.binary_search(&offset).is_err() {
            return Response::Invalid(format!("itemIdentifier {id} is not a record of the batch"));
        }
        lowest = Some(lowest.map_or(offset, |l| l.min(offset)));
    }
    lowest.map_or(Response::Success, Response::RetryFrom)
}

/// The on-failure record, AWS's shape field for field (`payload` is added for S3 only).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    pub request_context: RequestContext,
    /// `null` when the records were never invoked (too large, or expired before an attempt).
    pub response_context: Option<ResponseContext>,
    pub version: &'static str,
    /// When the records were given up, RFC 3339 with milliseconds.
    pub timestamp: String,
    #[serde(rename = "KafkaBatchInfo")]
    pub kafka_batch_info: KafkaBatchInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub request_id: String,
    pub function_arn: String,
    pub condition: Condition,
    /// Invokes that held these records.
    pub approximate_invoke_count: u32,
}

/// The last invoke's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    pub status_code: u16,
    pub executed_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchInfo {
    pub batch_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<String>,
    pub bootstrap_servers: String,
    pub payload_size: usize,
    /// By `"topic-partition"`.
    pub records_info: BTreeMap<String, RecordsInfo>,
}

/// Offsets as strings and timestamps as RFC 3339, as AWS writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordsInfo {
    pub first_record_offset: String,
    pub last_record_offset: String,
    pub first_record_timestamp: String,
    pub last_record_timestamp: String,
}

impl RecordsInfo {
    /// `first` and `last` are `(offset, timestamp_ms)`.
    pub fn new(first: (i64, i64), last: (i64, i64)) -> Self {
        Self {
            first_record_offset: first.0.to_string(),
            last_record_offset: last.0.to_string(),
            first_record_timestamp: rfc3339_ms(first.1),
            last_record_timestamp: rfc3339_ms(last.1),
        }
    }
}

/// `2026-01-01T00:00:00.000Z` for epoch milliseconds (proleptic Gregorian, UTC).
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    let (days, ms_of_day) = (epoch_ms.div_euclid(86_400_000), epoch_ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, ms) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_batch_responses_follow_aws_rules() {
        let offsets = [10, 11, 12, 13];
        let cases: &[(&str, Response)] = &[
            ("", Response::Success),
            ("  \n", Response::Success),
            ("null", Response::Success),
            ("{}", Response::Success),
            (r#"{"batchItemFailures":null}"#, Response::Success),
            (r#"{"batchItemFailures":[]}"#, Response::Success),
            (r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":12}}]}"#, Response::RetryFrom(12)),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":13}},{"itemIdentifier":{"partition":"t-0","offset":11}}]}"#,
                Response::RetryFrom(11),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":"10"}}]}"#,
                Response::RetryFrom(10),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(&read_response(body.as_bytes(), "t-0", &offsets), expected, "{body}");
        }
        let invalid = [
            "not json",
            "\"ok\"",
            "[]",
            r#"{"batchItemFailures":{}}"#,
            r#"{"batchItemFailures":[{}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0"}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-1","offset":12}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":14}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":12}},{"itemIdentifier":{"partition":"t-0","offset":99}}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":1.5}}]}"#,
        ];
        for body in invalid {
            assert!(matches!(read_response(body.as_bytes(), "t-0", &offsets), Response::Invalid(_)), "{body}");
        }
    }

    fn mapping(patch: Value) -> EventSourceMapping {
        let mut v = json!({
            "UUID": "6d9bce8e-836b-442c-8070-74e77903c815", "StartingPosition": "LATEST",
            "FunctionArn": "f", "LastModified": 0.0, "State": "Enabled", "Topics": ["t"],
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b:9092"]}}
        });
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn policy_takes_aws_defaults_and_caps_infinite_retries_with_a_destination() {
        let dest = json!({"OnFailure": {"Destination": "kafka://dlt"}});
        let cases = [
            (json!({}), FatePolicy::default()),
            (json!({"MaximumRetryAttempts": -1, "MaximumRecordAgeInSeconds": -1}), FatePolicy::default()),
            (json!({"MaximumRetryAttempts": 0}), FatePolicy { max_retries: Some(0), ..FatePolicy::default() }),
            (json!({"DestinationConfig": dest}), FatePolicy { max_retries: Some(10), ..FatePolicy::default() }),
            (
                json!({"DestinationConfig": dest, "MaximumRetryAttempts": -1}),
                FatePolicy { max_retries: Some(10), ..FatePolicy::default() },
            ),
            (
                json!({"DestinationConfig": dest, "MaximumRetryAttempts": 500}),
                FatePolicy { max_retries: Some(500), ..FatePolicy::default() },
            ),
            (
                json!({"MaximumRecordAgeInSeconds": 60, "BisectBatchOnFunctionError": true, "FunctionResponseTypes": ["ReportBatchItemFailures"]}),
                FatePolicy {
                    max_retries: None,
                    max_age: Some(Duration::from_secs(60)),
                    bisect: true,
                    partial_responses: true,
                },
            ),
        ];
        for (patch, expected) in cases {
            assert_eq!(FatePolicy::of(&mapping(patch.clone())), expected, "{patch}");
        }
    }

    #[test]
    fn retries_count_after_the_first_attempt_and_splits_do_not_count() {
        let two = FatePolicy { max_retries: Some(2), ..FatePolicy::default() };
        // Attempt 1 fails (0 retries so far), attempt 2 (1), attempt 3 (2): given up after 1 + 2.
        assert_eq!(two.after_failure(5, 0, true), Next::Retry);
        assert_eq!(two.after_failure(5, 1, true), Next::Retry);
        assert_eq!(two.after_failure(5, 2, true), Next::GiveUp(Condition::RetryAttemptsExhausted));
        let zero = FatePolicy { max_retries: Some(0), ..FatePolicy::default() };
        assert_eq!(zero.after_failure(5, 0, false), Next::GiveUp(Condition::RetryAttemptsExhausted));
        let forever = FatePolicy::default();
        assert_eq!(forever.after_failure(5, u32::MAX, true), Next::Retry);
        let bisect = FatePolicy { bisect: true, ..zero };
        // Function errors split down to one record, whatever the retry count; then it counts.
        assert_eq!(bisect.after_failure(2, 0, true), Next::Split);
        assert_eq!(bisect.after_failure(1, 0, true), Next::GiveUp(Condition::RetryAttemptsExhausted));
        // Invoke API errors (throttles) are not function errors: no split.
        assert_eq!(bisect.after_failure(8, 0, false), Next::GiveUp(Condition::RetryAttemptsExhausted));
    }

    #[test]
    fn records_expire_by_their_timestamp() {
        let policy = FatePolicy { max_age: Some(Duration::from_secs(60)), ..FatePolicy::default() };
        let now = 1_000_000_000;
        assert!(!policy.expired(now, now - 60_000));
        assert!(policy.expired(now, now - 60_001));
        // No timestamp (NO_TIMESTAMP_TYPE, -1): never expires. Future timestamps do not either.
        assert!(!policy.expired(now, -1));
        assert!(!policy.expired(now, now + 5_000));
        assert!(!FatePolicy::default().expired(now, 0));
    }

    #[test]
    fn failure_record_has_the_aws_shape() {
        let record = FailureRecord {
            request_context: RequestContext {
                request_id: "r".into(),
                function_arn: "arn:f".into(),
                condition: Condition::RetryAttemptsExhausted,
                approximate_invoke_count: 3,
            },
            response_context: Some(ResponseContext {
                status_code: 200,
                executed_version: "$LATEST".into(),
                function_error: Some("Unhandled".into()),
            }),
            version: "1.0",
            timestamp: rfc3339_ms(1_767_225_600_000),
            kafka_batch_info: KafkaBatchInfo {
                batch_size: 500,
                event_source_arn: Some("arn:k".into()),
                bootstrap_servers: "b:9092".into(),
                payload_size: 2_039_086,
                records_info: BTreeMap::from([(
                    "orders-0".to_owned(),
                    RecordsInfo::new((10, 1_545_084_650_987), (509, 1_545_084_651_000)),
                )]),
            },
        };
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            json!({
                "requestContext": {"requestId": "r", "functionArn": "arn:f", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "version": "1.0",
                "timestamp": "2026-01-01T00:00:00.000Z",
                "KafkaBatchInfo": {"batchSize": 500, "eventSourceArn": "arn:k", "bootstrapServers": "b:9092", "payloadSize": 2039086,
                    "recordsInfo": {"orders-0": {"firstRecordOffset": "10", "lastRecordOffset": "509",
                        "firstRecordTimestamp": "2018-12-17T22:10:50.987Z", "lastRecordTimestamp": "2018-12-17T22:10:51.000Z"}}}
            })
        );
        let oversized = FailureRecord { response_context: None, ..record };
        assert_eq!(serde_json::to_value(&oversized).unwrap()["responseContext"], Value::Null);
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
