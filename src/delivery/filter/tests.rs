//! Table tests for `FilterCriteria`: every rule of the AWS syntax table, the Kafka decoding rules,
//! refused criteria with their exact messages, numbers, arrays, the kafka-esm extension fields,
//! and a share of event-ruler's own pattern tests.
//!
//! `EVENT_RULER` cases are ported from aws/event-ruler (https://github.com/aws/event-ruler),
//! Apache License 2.0, Copyright Amazon.com, Inc. or its affiliates: `RulerTest.java`,
//! `ACMachineTest.java` and `JsonRuleCompilerTest.java` under
//! `src/test/software/amazon/event/ruler/`. Each rule is used as the pattern under `value`, each
//! event as the record's value; the expected outcomes are event-ruler's assertions.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::delivery::record::{Header, KafkaRecord, TimestampType};

fn record(value: Option<&[u8]>) -> KafkaRecord {
    KafkaRecord {
        topic: Arc::from("orders"),
        partition: 3,
        offset: 42,
        timestamp_ms: 1_545_084_650_987,
        timestamp_type: TimestampType::CreateTime,
        key: None,
        value: value.map(<[u8]>::to_vec),
        headers: Vec::new(),
    }
}

fn criteria(patterns: &[&str]) -> Value {
    json!({ "Filters": patterns.iter().map(|p| json!({ "Pattern": p })).collect::<Vec<_>>() })
}

fn filters(patterns: &[&str]) -> Filters {
    Filters::compile(&criteria(patterns)).unwrap_or_else(|e| panic!("{patterns:?} should compile: {e}"))
}

fn value_matches(pattern: &str, value: &str) -> bool {
    filters(&[pattern]).matches(&record(Some(value.as_bytes())))
}

/// Runs `(pattern, record value, expected)` rows and reports every row that disagrees.
fn check_rows(rows: &[(&str, &str, bool)]) {
    let failures: Vec<String> = rows
        .iter()
        .filter(|(pattern, value, expected)| value_matches(pattern, value) != *expected)
        .map(|(pattern, value, expected)| format!("pattern {pattern} on value {value}: expected {expected}"))
        .collect();
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_rule_of_the_aws_syntax_table() {
    check_rows(&[
        // Null
        (r#"{"value":{"UserID":[null]}}"#, r#"{"UserID":null}"#, true),
        (r#"{"value":{"UserID":[null]}}"#, r#"{"UserID":""}"#, false),
        (r#"{"value":{"UserID":[null]}}"#, r#"{}"#, false),
        // Empty
        (r#"{"value":{"LastName":[""]}}"#, r#"{"LastName":""}"#, true),
        (r#"{"value":{"LastName":[""]}}"#, r#"{"LastName":null}"#, false),
        // Equals
        (r#"{"value":{"Name":["Alice"]}}"#, r#"{"Name":"Alice"}"#, true),
        (r#"{"value":{"Name":["Alice"]}}"#, r#"{"Name":"alice"}"#, false),
        // Equals (ignore case)
        (r#"{"value":{"Name":[{"equals-ignore-case":"alice"}]}}"#, r#"{"Name":"ALICE"}"#, true),
        (r#"{"value":{"Name":[{"equals-ignore-case":"alice"}]}}"#, r#"{"Name":"Dalice"}"#, false),
        // And
        (r#"{"value":{"Location":["New York"],"Day":["Monday"]}}"#, r#"{"Location":"New York","Day":"Monday"}"#, true),
        (r#"{"value":{"Location":["New York"],"Day":["Monday"]}}"#, r#"{"Location":"New York","Day":"Sunday"}"#, false),
        // Or
        (r#"{"value":{"PaymentType":["Credit","Debit"]}}"#, r#"{"PaymentType":"Debit"}"#, true),
        (r#"{"value":{"PaymentType":["Credit","Debit"]}}"#, r#"{"PaymentType":"Cash"}"#, false),
        // Or (multiple fields)
        (r#"{"value":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}}"#, r#"{"Day":"Monday"}"#, true),
        (r#"{"value":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}}"#, r#"{"Location":"New York"}"#, true),
        (
            r#"{"value":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}}"#,
            r#"{"Location":"Paris","Day":"Sunday"}"#,
            false,
        ),
        // Not
        (r#"{"value":{"Weather":[{"anything-but":["Raining"]}]}}"#, r#"{"Weather":"Sunny"}"#, true),
        (r#"{"value":{"Weather":[{"anything-but":["Raining"]}]}}"#, r#"{"Weather":"Raining"}"#, false),
        (r#"{"value":{"Weather":[{"anything-but":["Raining"]}]}}"#, r#"{}"#, false),
        // Numeric (equals)
        (r#"{"value":{"Price":[{"numeric":["=",100]}]}}"#, r#"{"Price":100}"#, true),
        (r#"{"value":{"Price":[{"numeric":["=",100]}]}}"#, r#"{"Price":1.0e2}"#, true),
        (r#"{"value":{"Price":[{"numeric":["=",100]}]}}"#, r#"{"Price":"100"}"#, false),
        (r#"{"value":{"Price":[{"numeric":["=",100]}]}}"#, r#"{"Price":100.5}"#, false),
        // Numeric (range)
        (r#"{"value":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#, r#"{"Price":10}"#, false),
        (r#"{"value":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#, r#"{"Price":10.5}"#, true),
        (r#"{"value":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#, r#"{"Price":20}"#, true),
        (r#"{"value":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#, r#"{"Price":20.01}"#, false),
        // Exists
        (r#"{"value":{"ProductName":[{"exists":true}]}}"#, r#"{"ProductName":"x"}"#, true),
        (r#"{"value":{"ProductName":[{"exists":true}]}}"#, r#"{"ProductName":null}"#, true),
        (r#"{"value":{"ProductName":[{"exists":true}]}}"#, r#"{"Other":"x"}"#, false),
        (r#"{"value":{"ProductName":[{"exists":true}]}}"#, r#"{"ProductName":{"a":1}}"#, false),
        // Does not exist
        (r#"{"value":{"ProductName":[{"exists":false}]}}"#, r#"{"Other":"x"}"#, true),
        (r#"{"value":{"ProductName":[{"exists":false}]}}"#, r#"{"ProductName":"x"}"#, false),
        (r#"{"value":{"ProductName":[{"exists":false}]}}"#, r#"{"ProductName":null}"#, false),
        // Begins with
        (r#"{"value":{"Region":[{"prefix":"us-"}]}}"#, r#"{"Region":"us-east-1"}"#, true),
        (r#"{"value":{"Region":[{"prefix":"us-"}]}}"#, r#"{"Region":"eu-west-1"}"#, false),
        // Ends with
        (r#"{"value":{"FileName":[{"suffix":".png"}]}}"#, r#"{"FileName":"photo.png"}"#, true),
        (r#"{"value":{"FileName":[{"suffix":".png"}]}}"#, r#"{"FileName":"photo.jpg"}"#, false),
        // Multi-level, as in the AWS examples.
        (
            r#"{"value":{"dynamodb":{"Keys":{"Id":{"N":["101"]}}}}}"#,
            r#"{"dynamodb":{"Keys":{"Id":{"N":"101"}}}}"#,
            true,
        ),
        (
            r#"{"value":{"dynamodb":{"Keys":{"Id":{"N":["101"]}}}}}"#,
            r#"{"dynamodb":{"Keys":{"Id":{"N":"102"}}}}"#,
            false,
        ),
    ]);
}

#[test]
fn beyond_the_table_event_ruler_operators() {
    check_rows(&[
        (r#"{"value":{"s":[{"prefix":{"equals-ignore-case":"EC2"}}]}}"#, r#"{"s":"ec2.amazonaws.com"}"#, true),
        (r#"{"value":{"s":[{"prefix":{"equals-ignore-case":"EC2"}}]}}"#, r#"{"s":"aws.ec2"}"#, false),
        (r#"{"value":{"s":[{"suffix":{"equals-ignore-case":".PNG"}}]}}"#, r#"{"s":"a.png"}"#, true),
        (r#"{"value":{"s":[{"anything-but":{"prefix":"init"}}]}}"#, r#"{"s":"running"}"#, true),
        (r#"{"value":{"s":[{"anything-but":{"prefix":"init"}}]}}"#, r#"{"s":"initializing"}"#, false),
        (r#"{"value":{"s":[{"anything-but":{"suffix":[".png",".jpg"]}}]}}"#, r#"{"s":"a.jpg"}"#, false),
        (r#"{"value":{"s":[{"anything-but":{"suffix":[".png",".jpg"]}}]}}"#, r#"{"s":"a.gif"}"#, true),
        (
            r#"{"value":{"s":[{"anything-but":{"equals-ignore-case":["Stopped","OverLoaded"]}}]}}"#,
            r#"{"s":"STOPPED"}"#,
            false,
        ),
        (r#"{"value":{"s":[{"anything-but":{"wildcard":"*/lib/*"}}]}}"#, r#"{"s":"/usr/lib/x"}"#, false),
        (r#"{"value":{"s":[{"anything-but":{"wildcard":"*/lib/*"}}]}}"#, r#"{"s":"/usr/bin/x"}"#, true),
        (r#"{"value":{"s":[{"wildcard":"dir/*.png"}]}}"#, r#"{"s":"dir/a/b.png"}"#, true),
        (r#"{"value":{"s":[{"wildcard":"dir/*.png"}]}}"#, r#"{"s":"dir/a.jpg"}"#, false),
        (r#"{"value":{"ip":[{"cidr":"10.0.0.0/24"}]}}"#, r#"{"ip":"10.0.0.33"}"#, true),
        (r#"{"value":{"ip":[{"cidr":"10.0.0.0/24"}]}}"#, r#"{"ip":"10.0.1.33"}"#, false),
        (r#"{"value":{"ip":[{"cidr":"2001:db8::/32"}]}}"#, r#"{"ip":"2001:db8::7"}"#, true),
        (r#"{"value":{"ip":["10.0.0.1"]}}"#, r#"{"ip":"::ffff:a00:1"}"#, true),
        (r#"{"value":{"s":[{"exactly":"prefix"}]}}"#, r#"{"s":"prefix"}"#, true),
        // Operators on strings never match other types.
        (r#"{"value":{"s":[{"prefix":"1"}]}}"#, r#"{"s":123}"#, false),
        (r#"{"value":{"s":[{"suffix":"e"}]}}"#, r#"{"s":true}"#, false),
        (r#"{"value":{"s":[{"equals-ignore-case":"NULL"}]}}"#, r#"{"s":null}"#, false),
        (r#"{"value":{"s":[{"wildcard":"*"}]}}"#, r#"{"s":1}"#, false),
        (r#"{"value":{"s":[{"wildcard":"*"}]}}"#, r#"{"s":""}"#, true),
        (r#"{"value":{"s":[{"prefix":""}]}}"#, r#"{"s":"anything"}"#, true),
        // anything-but matches values of every other type.
        (r#"{"value":{"s":[{"anything-but":"x"}]}}"#, r#"{"s":5}"#, true),
        (r#"{"value":{"s":[{"anything-but":"x"}]}}"#, r#"{"s":null}"#, true),
        (r#"{"value":{"s":[{"anything-but":{"prefix":"x"}}]}}"#, r#"{"s":false}"#, true),
        (r#"{"value":{"s":[{"anything-but":5}]}}"#, r#"{"s":"5"}"#, true),
        (r#"{"value":{"s":[true]}}"#, r#"{"s":true}"#, true),
        (r#"{"value":{"s":[true]}}"#, r#"{"s":"true"}"#, false),
        (r#"{"value":{"s":["true"]}}"#, r#"{"s":true}"#, false),
        // A key written twice keeps its last list (Lambda's "duplicate keys" rule).
        (r#"{"value":{"k":["hello"],"k":["world"]}}"#, r#"{"k":"world"}"#, true),
        (r#"{"value":{"k":["hello"],"k":["world"]}}"#, r#"{"k":"hello"}"#, false),
        // Dotted keys and nesting are the same path to event-ruler, both ways.
        (r#"{"value":{"a.b":["x"]}}"#, r#"{"a":{"b":"x"}}"#, true),
        (r#"{"value":{"a":{"b":["x"]}}}"#, r#"{"a.b":"x"}"#, true),
        (r#"{"value.a":["x"]}"#, r#"{"a":"x"}"#, true),
        // A key named "" is a key like any other, not the object holding it.
        (r#"{"value":{"":["x"]}}"#, r#"{"":"x"}"#, true),
        (r#"{"value":{"":["x"]}}"#, r#""x""#, false),
        (r#"{"value":{"a":{"":[1]}}}"#, r#"{"a":{"":1}}"#, true),
        // Nested $or with an And inside.
        (
            r#"{"value":{"source":["cw"],"$or":[{"metricName":["CPU"]},{"metricType":["M"],"$or":[{"metricId":[1234]},{"spaceId":[1000]}]}]}}"#,
            r#"{"source":"cw","metricType":"M","spaceId":1000}"#,
            true,
        ),
        (
            r#"{"value":{"source":["cw"],"$or":[{"metricName":["CPU"]},{"metricType":["M"],"$or":[{"metricId":[1234]},{"spaceId":[1000]}]}]}}"#,
            r#"{"source":"cw","spaceId":1000}"#,
            false,
        ),
    ]);
}

#[test]
fn kafka_values_are_json_when_they_parse_and_strings_when_not() {
    let plain = r#"{"value":[{"anything-but":["error"]}]}"#;
    check_rows(&[
        // The AWS example: plain-string messages.
        (plain, "error", false),
        (plain, "warning", true),
        // A JSON string is the same string.
        (plain, r#""error""#, false),
        (r#"{"value":["hello world"]}"#, "hello world", true),
        (r#"{"value":["hello"]}"#, r#""hello""#, true),
        (r#"{"value":["hello"]}"#, r#" "hello" "#, true),
        // JSON that is not an object.
        (r#"{"value":[42]}"#, "42", true),
        (r#"{"value":["42"]}"#, "42", false),
        (r#"{"value":[null]}"#, "null", true),
        (r#"{"value":[true]}"#, "true", true),
        (r#"{"value":[2]}"#, "[1,2,3]", true),
        (r#"{"value":[4]}"#, "[1,2,3]", false),
        // The AWS example: JSON messages.
        (
            r#"{"value":{"device_ID":[{"prefix":"AB"}]}}"#,
            r#"{"device_ID":"AB1234","session":{"start_time":"x","duration":162}}"#,
            true,
        ),
        (r#"{"value":{"device_ID":[{"prefix":"AB"}]}}"#, r#"{"device_ID":"CD1234"}"#, false),
        // Format mismatches match nothing.
        (r#"{"value":{"device_ID":[{"prefix":"AB"}]}}"#, "AB1234 as plain text", false),
        (r#"{"value":[{"prefix":"{"}]}"#, r#"{"device_ID":"AB1234"}"#, false),
        (r#"{"value":[{"anything-but":"x"}]}"#, r#"{"device_ID":"AB1234"}"#, false),
        // Not JSON after all (strict RFC 8259): filtered as plain strings.
        (r#"{"value":[{"prefix":"{"}]}"#, r#"{"a":1,}"#, true),
        (r#"{"value":[{"prefix":"{"}]}"#, r#"{"a":1} trailing"#, true),
        (r#"{"value":["NaN"]}"#, "NaN", true),
        (r#"{"value":["01"]}"#, "01", true),
        // An empty value is the empty string.
        (r#"{"value":[""]}"#, "", true),
        // Whitespace around JSON is still JSON.
        (r#"{"value":{"a":[1]}}"#, " \n{\"a\":1}\r\n", true),
    ]);
}

#[test]
fn values_that_are_null_or_not_utf8_are_absent() {
    let binary: &[u8] = &[0x00, 0xff, 0xfe, 0x41];
    let tombstone = record(None);
    let undecodable = record(Some(binary));
    for (pattern, expected) in [
        (r#"{"value":[{"exists":false}]}"#, true),
        (r#"{"value":[{"exists":true}]}"#, false),
        (r#"{"value":[{"anything-but":"x"}]}"#, false),
        (r#"{"value":[null]}"#, false),
        (r#"{"value":{"a":[{"exists":false}]}}"#, true),
    ] {
        let f = filters(&[pattern]);
        assert_eq!(f.matches(&tombstone), expected, "{pattern} on a null value");
        assert_eq!(f.matches(&undecodable), expected, "{pattern} on a non-UTF-8 value");
    }
    // The metadata of such records is still filtered (extension fields).
    assert!(filters(&[r#"{"topic":["orders"],"value":[{"exists":false}]}"#]).matches(&undecodable));
}

#[test]
fn numbers_match_exactly_by_text_and_numerically_by_value() {
    check_rows(&[
        // Bare numbers: JSON text (AWS: 300, 300.0 and 3.0e2 are not equal).
        (r#"{"value":{"n":[300]}}"#, r#"{"n":300}"#, true),
        (r#"{"value":{"n":[300]}}"#, r#"{"n":300.0}"#, false),
        (r#"{"value":{"n":[300]}}"#, r#"{"n":3.0e2}"#, false),
        (r#"{"value":{"n":[3.0e2]}}"#, r#"{"n":3.0e2}"#, true),
        (r#"{"value":{"n":[300]}}"#, r#"{"n":"300"}"#, false),
        (r#"{"value":{"n":[123456789012]}}"#, r#"{"n":123456789012}"#, true),
        (r#"{"value":{"n":[12345678901234567890123]}}"#, r#"{"n":12345678901234567890123}"#, true),
        // numeric: values.
        (r#"{"value":{"n":[{"numeric":["=",300]}]}}"#, r#"{"n":300.0}"#, true),
        (r#"{"value":{"n":[{"numeric":["=",300]}]}}"#, r#"{"n":3.0e2}"#, true),
        (r#"{"value":{"n":[{"numeric":["=",3.018e2]}]}}"#, r#"{"n":301.8}"#, true),
        (r#"{"value":{"n":[{"numeric":["<",0]}]}}"#, r#"{"n":-0.1}"#, true),
        (r#"{"value":{"n":[{"numeric":["<",0]}]}}"#, r#"{"n":0}"#, false),
        (r#"{"value":{"n":[{"numeric":["<=",0]}]}}"#, r#"{"n":0}"#, true),
        (r#"{"value":{"n":[{"numeric":[">=",0]}]}}"#, r#"{"n":0}"#, true),
        (r#"{"value":{"n":[{"numeric":[">",0,"<",1]}]}}"#, r#"{"n":0.999999}"#, true),
        (r#"{"value":{"n":[{"numeric":[">",0,"<",1]}]}}"#, r#"{"n":1}"#, false),
        (r#"{"value":{"n":[{"numeric":[">=",99.999,"<=",100]}]}}"#, r#"{"n":100}"#, true),
        (r#"{"value":{"n":[{"numeric":[">=",100.00001,"<=",1001]}]}}"#, r#"{"n":100}"#, false),
        (r#"{"value":{"n":[{"numeric":[">",-1e9,"<",1e9]}]}}"#, r#"{"n":-5e8}"#, true),
        (r#"{"value":{"n":[{"numeric":[">",0]}]}}"#, r#"{"n":1E-320}"#, true),
        (r#"{"value":{"n":[{"numeric":[">",5e11]}]}}"#, r#"{"n":500000000000.0001}"#, true),
        // Beyond a double's precision a number is not comparable: exact text only.
        (r#"{"value":{"n":[{"numeric":[">",0]}]}}"#, r#"{"n":0.30000000000000001}"#, false),
        (r#"{"value":{"n":[{"numeric":[">",0]}]}}"#, r#"{"n":1e400}"#, false),
        (r#"{"value":{"n":[0.30000000000000001]}}"#, r#"{"n":0.30000000000000001}"#, true),
        // -0 sorts below 0, as in event-ruler (IEEE bits).
        (r#"{"value":{"n":[{"numeric":["=",0]}]}}"#, r#"{"n":-0}"#, false),
        (r#"{"value":{"n":[{"numeric":["=",0]}]}}"#, r#"{"n":0.0}"#, true),
        // numeric never matches strings, booleans or null.
        (r#"{"value":{"n":[{"numeric":[">",0]}]}}"#, r#"{"n":"5"}"#, false),
        (r#"{"value":{"n":[{"numeric":[">",0]}]}}"#, r#"{"n":true}"#, false),
        // anything-but numbers compare values; other types are not excluded.
        (r#"{"value":{"n":[{"anything-but":[100,200]}]}}"#, r#"{"n":100.0}"#, false),
        (r#"{"value":{"n":[{"anything-but":[100,200]}]}}"#, r#"{"n":2e2}"#, false),
        (r#"{"value":{"n":[{"anything-but":[100,200]}]}}"#, r#"{"n":150}"#, true),
        (r#"{"value":{"n":[{"anything-but":[100,200]}]}}"#, r#"{"n":"100"}"#, true),
        (r#"{"value":{"n":[{"anything-but":100}]}}"#, r#"{"n":1e400}"#, true),
    ]);
}

#[test]
fn arrays_match_any_element_within_one_element_per_array() {
    check_rows(&[
        (r#"{"value":{"tags":["b"]}}"#, r#"{"tags":["a","b"]}"#, true),
        (r#"{"value":{"tags":["c"]}}"#, r#"{"tags":["a","b"]}"#, false),
        (r#"{"value":{"tags":["c"]}}"#, r#"{"tags":[["a"],["b",["c"]]]}"#, true),
        (r#"{"value":{"tags":[{"anything-but":"a"}]}}"#, r#"{"tags":["a","b"]}"#, true),
        (r#"{"value":{"tags":[{"anything-but":"a"}]}}"#, r#"{"tags":["a","a"]}"#, false),
        (r#"{"value":{"tags":[{"exists":false}]}}"#, r#"{"tags":[]}"#, true),
        (r#"{"value":{"tags":[{"exists":true}]}}"#, r#"{"tags":[]}"#, false),
        (r#"{"value":{"tags":[{"exists":true}]}}"#, r#"{"tags":[{"a":1}]}"#, false),
        // Objects in arrays: fields must match within one element.
        (
            r#"{"value":{"e":{"first":["Anna"],"last":["Smith"]}}}"#,
            r#"{"e":[{"first":"John","last":"Smith"},{"first":"Anna","last":"Smith"}]}"#,
            true,
        ),
        (
            r#"{"value":{"e":{"first":["Anna"],"last":["Doe"]}}}"#,
            r#"{"e":[{"first":"John","last":"Doe"},{"first":"Anna","last":"Smith"}]}"#,
            false,
        ),
        // Different arrays are independent.
        (r#"{"value":{"a":{"x":[1]},"b":{"y":[2]}}}"#, r#"{"a":[{"x":0},{"x":1}],"b":[{"y":2},{"y":3}]}"#, true),
        // exists:false is judged within the element the earlier fields chose.
        (
            r#"{"value":{"e":{"first":["Anna"],"ids":[{"exists":false}]}}}"#,
            r#"{"e":[{"first":"John","ids":[1]},{"first":"Anna"}]}"#,
            true,
        ),
        (
            r#"{"value":{"e":{"first":["John"],"ids":[{"exists":false}]}}}"#,
            r#"{"e":[{"first":"John","ids":[1]},{"first":"Anna"}]}"#,
            false,
        ),
        // A key with both exists:false and values.
        (r#"{"value":{"foo":["a"],"bar":[{"exists":false},"1"]}}"#, r#"{"foo":"a"}"#, true),
        (r#"{"value":{"foo":["a"],"bar":[{"exists":false},"1"]}}"#, r#"{"foo":"a","bar":"1"}"#, true),
        (r#"{"value":{"foo":["a"],"bar":[{"exists":false},"1"]}}"#, r#"{"foo":"a","bar":"2"}"#, false),
    ]);
}

#[test]
fn several_filters_are_ored_and_none_lets_everything_through() {
    let f = filters(&[r#"{"value":{"kind":["a"]}}"#, r#"{"value":{"kind":["b"]}}"#]);
    assert_eq!(f.len(), 2);
    assert!(f.matches(&record(Some(br#"{"kind":"b"}"#))));
    assert!(!f.matches(&record(Some(br#"{"kind":"c"}"#))));

    for empty in [Value::Null, json!({}), json!({ "Filters": [] }), json!({ "Filters": null })] {
        let f = Filters::compile(&empty).unwrap();
        assert!(f.is_empty(), "{empty}");
        assert!(f.matches(&record(None)));
        assert!(f.matches(&record(Some(b"anything"))));
    }
    assert!(!filters(&[r#"{"value":["x"]}"#]).is_empty());
}

#[test]
fn extension_fields_match_the_event_names() {
    let mut r = record(Some(br#"{"kind":"created"}"#));
    r.key = Some(br#"{"tenant":"acme"}"#.to_vec());
    r.headers = vec![
        Header { key: "type".into(), value: Some(b"created".to_vec()) },
        Header { key: "trace.id".into(), value: Some(b"abc".to_vec()) },
        Header { key: "empty".into(), value: None },
        Header { key: "binary".into(), value: Some(vec![0xff]) },
        Header { key: "type".into(), value: Some(b"v2".to_vec()) },
    ];
    for (pattern, expected) in [
        (r#"{"topic":["orders"]}"#, true),
        (r#"{"topic":[{"prefix":"ord"}]}"#, true),
        (r#"{"topic":["payments"]}"#, false),
        (r#"{"partition":[3]}"#, true),
        (r#"{"partition":[{"numeric":[">=",4]}]}"#, false),
        (r#"{"offset":[{"numeric":[">",41,"<",43]}]}"#, true),
        (r#"{"timestamp":[{"numeric":[">",1545084650000]}]}"#, true),
        (r#"{"timestamp":[1545084650987]}"#, true),
        (r#"{"timestampType":["CREATE_TIME"]}"#, true),
        (r#"{"timestampType":["LOG_APPEND_TIME"]}"#, false),
        (r#"{"key":{"tenant":["acme"]}}"#, true),
        (r#"{"key":{"tenant":["other"]}}"#, false),
        (r#"{"headers":{"type":["created"]}}"#, true),
        (r#"{"headers":{"type":["v2"]}}"#, true),
        (r#"{"headers":{"type":["v3"]}}"#, false),
        (r#"{"headers":{"trace.id":["abc"]}}"#, true),
        (r#"{"headers":{"empty":[null]}}"#, true),
        (r#"{"headers":{"binary":[{"exists":false}]}}"#, true),
        (r#"{"headers":{"missing":[{"exists":false}]}}"#, true),
        (r#"{"headers":{"type":["created"],"trace.id":["abc"]}}"#, true),
        (r#"{"headers":[{"exists":false}]}"#, true),
        (r#"{"headers":{"":[{"exists":true}]}}"#, false),
        // Combined with value, and across fields with $or.
        (r#"{"topic":["orders"],"value":{"kind":["created"]}}"#, true),
        (r#"{"topic":["orders"],"value":{"kind":["deleted"]}}"#, false),
        (r#"{"$or":[{"topic":["payments"]},{"headers":{"type":["v2"]}}]}"#, true),
        // A top-level name the event does not have never exists.
        (r#"{"Value":{"kind":["created"]}}"#, false),
        (r#"{"eventSource":[{"exists":false}]}"#, true),
    ] {
        assert_eq!(filters(&[pattern]).matches(&r), expected, "{pattern}");
    }

    // Keys decode like values: plain text, and absent when not UTF-8 or null.
    r.key = Some(b"customer-17".to_vec());
    assert!(filters(&[r#"{"key":[{"prefix":"customer-"}]}"#]).matches(&r));
    r.key = Some(vec![0xc3]);
    assert!(filters(&[r#"{"key":[{"exists":false}]}"#]).matches(&r));
    r.key = None;
    assert!(!filters(&[r#"{"key":[{"exists":true}]}"#]).matches(&r));
    r.timestamp_type = TimestampType::NoTimestampType;
    r.timestamp_ms = -1;
    assert!(filters(&[r#"{"timestamp":[-1],"timestampType":["NO_TIMESTAMP_TYPE"]}"#]).matches(&r));
}

#[test]
fn value_and_key_are_decoded_only_when_a_pattern_reads_them() {
    assert_eq!(filters(&[r#"{"topic":["t"]}"#]).reads, (false, false));
    assert_eq!(filters(&[r#"{"topic":["t"]}"#, r#"{"value":["v"]}"#]).reads, (true, false));
    assert_eq!(filters(&[r#"{"$or":[{"key":["k"]},{"value.a":["v"]}]}"#]).reads, (true, true));
}

/// (criteria, exact error message).
fn refused() -> Vec<(Value, &'static str)> {
    let p = |pattern: &str| criteria(&[pattern]);
    vec![
        (json!([]), r#"FilterCriteria: must be an object: {"Filters": [{"Pattern": "…"}]}"#),
        (json!({ "filters": [] }), r#"FilterCriteria: unknown field "filters", expected "Filters""#),
        (json!({ "Filters": {} }), r#"FilterCriteria.Filters: must be a list of {"Pattern": "…"}"#),
        (json!({ "Filters": ["{}"] }), r#"FilterCriteria.Filters[0]: must be an object: {"Pattern": "…"}"#),
        (
            json!({ "Filters": [{ "Pattern": "{\"a\":[1]}", "Extra": 1 }] }),
            r#"FilterCriteria.Filters[0]: unknown field "Extra", expected "Pattern""#,
        ),
        (
            json!({ "Filters": [{}] }),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. The pattern is missing.",
        ),
        (
            json!({ "Filters": [{ "Pattern": { "value": ["x"] } }] }),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. The pattern must be a string of JSON text.",
        ),
        (criteria(&[r#"{"a":["1"]}"#; 6]), "FilterCriteria.Filters: 6 filters, more than the maximum of 5"),
        (
            criteria(&[r#"{"a":["1"]}"#, &format!(r#"{{"value":["{}"]}}"#, "x".repeat(4083))]),
            "FilterCriteria.Filters[1].Pattern: Member must have length less than or equal to 4096 (it has 4097)",
        ),
        (
            p(""),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Invalid JSON: unexpected end of text, expected a value at line 1, column 1.",
        ),
        (
            p(r#"{"value": [1,]}"#),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Invalid JSON: expected a value at line 1, column 14.",
        ),
        (
            p("{\n  \"value\" [\"x\"]\n}"),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Invalid JSON: expected ':' at line 2, column 11.",
        ),
        (
            p(r#"{"value":["x"]} {}"#),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Invalid JSON: unexpected text after the JSON value at line 1, column 17.",
        ),
        (
            p(r#"["value"]"#),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Filter is not an object.",
        ),
        (
            p("{}"),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Empty objects are not allowed.",
        ),
        (
            p(r#"{"value":{}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Empty objects are not allowed (field "value")."#,
        ),
        (
            p(r#"{"value":[]}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Empty arrays are not allowed (field "value")."#,
        ),
        (
            p(r#"{"value":"x"}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. "value" must be an object or an array (field "value")."#,
        ),
        (
            p(r#"{"value":{"a":[["x"]]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Match value must be String, number, true, false, or null (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Match expression name not found (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"contains":"x"}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Unrecognized match type contains (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"prefix":"x","suffix":"y"}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Only one key allowed in match expression (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"prefix":3}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. prefix match pattern must be a string (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"suffix":["x"]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. suffix match pattern must be a string (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"prefix":{"exactly":"x"}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Unsupported prefix pattern: exactly (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"suffix":{}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Suffix expression name not found (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"equals-ignore-case":5}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. equals-ignore-case match pattern must be a string (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"exactly":33}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. exact match pattern must be a string (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"exists":"yes"}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. exists match pattern must be either true or false (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"exists":false,"x":1}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Only one key allowed in match expression (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"wildcard":"a**b"}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Consecutive wildcard characters at pos 2 (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"cidr":"10.0.0.0/33"}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. IPv4 mask bits must be < 32 (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":100}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Value of numeric must be an array (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":[]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Invalid member in numeric match: ] (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":["==",1]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Unrecognized numeric range operator: == (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":["=","1"]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Value of equals must be numeric (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":["<"]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Value of < must be numeric (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":["<",1,">",0]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Too many elements in numeric expression (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":[">",1,">",5]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Bad numeric range operator: > (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":[">",1,5]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Bad value in numeric range: 5 (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":[">",1,"<",30,false]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Too many terms in numeric range expression (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":[">",30,"<",1]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Bottom must be less than top (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":[">",1,"<=",1]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Bottom must be less than top (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":["=",1E309]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Cannot compare number : 1E309 (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"numeric":["<",0.30000000000000001]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Cannot compare number : 0.30000000000000001 (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":[]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Empty arrays are not allowed (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":["x",1]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Inside anything but list, either all values are number or string, mixed type is not supported (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":[null]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Inside anything but list, start|null|boolean is not supported (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":true}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Value of anything-but must be an array or single string/number value (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":{"numeric":[">",1]}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Unsupported anything-but pattern: numeric (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":{"prefix":""}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Null prefix/suffix not allowed (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":{"suffix":[1,2]}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. prefix/suffix match pattern must be a string (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":{"equals-ignore-case":[1]}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"a":[{"anything-but":{"prefix":"x","suffix":"y"}}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Only one key allowed in match expression (field "value.a")."#,
        ),
        (
            p(r#"{"value":{"$or":[{"a":["x"]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. There must have at least 2 Objects in $or relationship (field "value")."#,
        ),
        (
            p(r#"{"$or":{"a":["x"]}}"#),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. It must be an Array followed with $or.",
        ),
        (
            p(r#"{"$or":[{"a":["x"]},["b"]]}"#),
            "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. Only JSON object is allowed in array of $or relationship.",
        ),
        (
            p(r#"{"value":{"$or":[{"numeric":[1]},{"b":["x"]}]}}"#),
            r#"FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. numeric is Ruler reserved fieldName which cannot be used inside $or (field "value")."#,
        ),
    ]
}

#[test]
fn invalid_criteria_are_refused_with_exact_messages() {
    let failures: Vec<String> = refused()
        .into_iter()
        .filter_map(|(criteria, expected)| match Filters::compile(&criteria) {
            Ok(_) => Some(format!("{criteria} was accepted; expected: {expected}")),
            Err(e) if e.to_string() != expected => Some(format!("{criteria}\n   got: {e}\n  want: {expected}")),
            Err(_) => None,
        })
        .collect();
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn refusals_carry_the_aws_error_code() {
    let long = format!(r#"{{"value":["{}"]}}"#, "x".repeat(5000));
    assert_eq!(Filters::compile(&criteria(&[&long])).unwrap_err().aws_error_code(), "ValidationException");
    assert_eq!(Filters::compile(&criteria(&["{}"])).unwrap_err().aws_error_code(), "InvalidParameterValueException");
    assert_eq!(
        Filters::compile(&criteria(&[r#"{"a":["1"]}"#; 6])).unwrap_err().aws_error_code(),
        "InvalidParameterValueException"
    );
    // Length counts UTF-16 code units, as AWS does: 4096 units of an astral character is 2048 chars.
    let astral = format!(r#"{{"v":["{}"]}}"#, "😀".repeat(2040));
    assert_eq!(astral.encode_utf16().count(), 4090);
    assert!(Filters::compile(&criteria(&[&astral])).is_ok());
}

#[test]
fn or_expansion_and_rule_size_are_bounded() {
    // 9 independent two-way $or: 512 alternatives.
    let ors: Vec<String> = (0..9).map(|i| format!(r#""f{i}":{{"$or":[{{"a":["x"]}},{{"b":["y"]}}]}}"#)).collect();
    let err = Filters::compile(&criteria(&[&format!("{{{}}}", ors.join(","))])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "FilterCriteria.Filters[0].Pattern: Invalid filter pattern definition. The $or combinations expand to more than 256 alternatives; simplify the pattern or split it into several filters."
    );
    // 8 of them (256 alternatives) are fine.
    let f = filters(&[&format!("{{{}}}", ors[..8].join(","))]);
    assert_eq!(f.patterns[0].len(), 256);

    let fields: Vec<String> = (0..257).map(|i| format!(r#""f{i}":[1]"#)).collect();
    let err = Filters::compile(&criteria(&[&format!("{{{}}}", fields.join(","))])).unwrap_err();
    assert!(err.to_string().ends_with("A rule has 257 fields, more than the maximum of 256."), "{err}");
}

#[test]
fn a_pathological_record_is_delivered_when_matching_runs_out_of_budget() {
    // Two independent arrays whose every pair must be tried before the third field fails.
    let pattern = r#"{"value":{"a":{"x":[1]},"b":{"y":[1],"zz":[1]}}}"#;
    let value = |n: usize| {
        let a = vec![r#"{"x":1}"#; n].join(",");
        let b = vec![r#"{"y":1}"#; n].join(",");
        format!(r#"{{"a":[{a}],"b":[{b},{{"zz":1}}]}}"#)
    };
    assert!(!value_matches(pattern, &value(100)), "10,000 pairs fit the budget and none matches");
    assert!(value_matches(pattern, &value(1100)), "1.2 million pairs do not: the record is delivered");
}

#[test]
fn the_hot_path_can_reuse_one_filter_across_threads() {
    let f = Arc::new(filters(&[r#"{"value":{"n":[{"numeric":[">",10]}]}}"#]));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                (0..200).filter(|i| f.matches(&record(Some(format!(r#"{{"n":{}}}"#, i + t).as_bytes())))).count()
            })
        })
        .collect();
    let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(counts, [189, 190, 191, 192]);
}

/// A port of one event-ruler assertion: rule, event, whether it matches.
struct Case {
    from: &'static str,
    rule: &'static str,
    event: &'static str,
    matches: bool,
}

const JSON_FROM_README: &str = r#"{
  "version": "0",
  "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
  "detail-type": "EC2 Instance State-change Notification",
  "source": "aws.ec2",
  "account": "012345679012",
  "time": "2017-10-02T16:24:49Z",
  "region": "us-east-1",
  "resources": [ "arn:aws:ec2:us-east-1:012345679012:instance/i-000000aaaaaa00000" ],
  "detail": {
    "c.count": 5,
    "d.count": 3,
    "x.limit": 301.8,
    "source-ip": "10.0.0.33",
    "instance-id": "i-000000aaaaaa00000",
    "state": "running"
  }
}"#;

const JSON_FROM_RFC: &str = r#"{
  "Image": {
    "Width":  800,
    "Height": 600,
    "Title":  "View from 15th Floor",
    "Thumbnail": { "Url": "http://www.example.com/image/481989943", "Height": 125, "Width": 100 },
    "Animated" : false,
    "IDs": [116, 943, 234, 38793]
  }
}"#;

const JSON_WITH_COMPLEX_ARRAYS: &str = r#"{
  "employees":[
    [
      { "firstName":"John", "lastName":"Doe" , "ids" : [ 1234, 1000, 9999 ] },
      { "firstName":"Anna", "lastName":"Smith" }
    ],
    [
      { "firstName":"Peter", "lastName":"Jones", "ids" : [ ]  }
    ]
  ]
}"#;

const SONGS: &str = r#"{
  "Year": 1966,
  "Genres": [ { "Pop": true }, { "Classical": false } ],
  "Songs": [
    { "Name": "Paperback Writer",
      "Writers": [ { "First": "John", "Last": "Lennon" }, { "First": "Paul", "Last": "McCartney" } ] },
    { "Name": "Paint It Black",
      "Writers": [ { "First": "Mick", "Last": "Jagger" }, { "First": "Keith", "Last": "Richards" } ] }
  ]
}"#;

const TASKS_RULE_1: &str = r#"{"requestContext":{"taskInstances":{"taskInstanceState":["ACTIVE"],"provider":{"id":["XXXXXXXXXXXX"]},
  "resources":{"additionalContext":{"capabilityInterfaces":{"interfaceName":[{"exists":false}]}}}}}}"#;
const TASKS_RULE_2: &str = r#"{"requestContext":{"taskInstances":{"taskInstanceState":["ACTIVE"],"provider":{"id":["XXXXXXXXXXXX"]},
  "resources":{"additionalContext":{"capabilityInterfaces":{"abc":[{"exists":false}]}}}}}}"#;
const TASKS_EVENT_1: &str = r#"{"requestContext":{"taskInstances":[
  {"taskInstanceId":"id1","taskInstanceState":"ACTIVE","provider":{"id":"XXXXXXXXXXXX","type":"XXXXXXXX"},
   "resources":[{"legacyFocusCategory":"XXXXXFocus","endpointIdentifier":{"type":"XXXIdentifier","MaskedNumber":"XXXXXXXXXX"}}]},
  {"taskInstanceId":"id1","taskInstanceState":"InACTIVE","provider":{"id":"SomeRandom","type":"XXXXXXXX"},
   "resources":[{"legacyFocusCategory":"XXXXXFocus","endpointIdentifier":{"type":"XXXIdentifier","MaskedNumber":"XXXXXXXXXXXX"},
     "additionalContext":{"capabilityInterfaces":[{"interfaceName":"Dummy.DummyDumDum"}]}}]}]}}"#;
const TASKS_EVENT_2: &str = r#"{"requestContext":{"taskInstances":[
  {"taskInstanceId":"id1","taskInstanceState":"ACTIVE","provider":{"id":"XXXXXXXXXXXX","type":"XXXXXXXX"},
   "resources":[{"legacyFocusCategory":"XXXXXFocus","endpointIdentifier":{"type":"XXXIdentifier","MaskedNumber":"XXXXXXXXXX"},
     "additionalContext":{"capabilityInterfaces":[{"interfaceName":"XXXX.XXXXXXXXXXXXXX"}]}}]},
  {"taskInstanceId":"id1","taskInstanceState":"InACTIVE","provider":{"id":"SomeRandom","type":"XXXXXXXX"},
   "resources":[{"legacyFocusCategory":"XXXXXFocus","endpointIdentifier":{"type":"XXXIdentifier","MaskedNumber":"XXXXXXXXXXXX"},
     "additionalContext":{"capabilityInterfaces":[{"interfaceName":"XXXX.XXXXXXXXXXXXXX"}]}}]}]}}"#;

const INTENSITIES: &str = r#"{"lines":[{"intensities":[[0.5]],
  "points":[[[{"pp":"index0"},483.3474497412421,287.48116291799363],[{"pp":"index1"},489.9999497412421,299.99996291799363]]]}]}"#;

const ANYTHING_BUT_RULE: &str = r#"{
"a": [ { "anything-but": [ "dad0","dad1","dad2" ] } ],
"b": [ { "anything-but": [ 111, 222, 333 ] } ],
"c": [ { "anything-but": "zdd" } ],
"d": [ { "anything-but": 444 } ],
"z": [ { "numeric": [ ">", 0, "<", 1 ] } ],
"w": [ { "anything-but": { "prefix": "zax" } } ],
"n": [ { "anything-but": { "suffix": "ing" } } ],
"o": [ { "anything-but": {"equals-ignore-case": "CamelCase" } } ],
"p": [ { "anything-but": {"equals-ignore-case": ["CamelCase", "AbC"] } } ]
}"#;

macro_rules! case {
    ($from:literal, $rule:expr, $event:expr, $matches:literal) => {
        Case { from: $from, rule: $rule, event: $event, matches: $matches }
    };
}

const EVENT_RULER: &[Case] = &[
    // RulerTest.WHEN_RulesFromReadmeAreTried_THEN_TheyWork
    case!(
        "RulerTest.readme",
        r#"{"detail-type":["EC2 Instance State-change Notification"],"resources":["arn:aws:ec2:us-east-1:012345679012:instance/i-000000aaaaaa00000"],"detail":{"state":["initializing","running"]}}"#,
        JSON_FROM_README,
        true
    ),
    case!(
        "RulerTest.readme",
        r#"{"time":[{"prefix":"2017-10-02"}],"detail":{"state":[{"anything-but":"initializing"}]}}"#,
        JSON_FROM_README,
        true
    ),
    case!(
        "RulerTest.readme",
        r#"{"detail":{"source-ip":[{"cidr":"10.0.0.0/24"}],"c.count":[{"numeric":[">",0,"<=",5]}],"d.count":[{"numeric":["<",10]}],"x.limit":[{"numeric":["=",3.018e2]}]}}"#,
        JSON_FROM_README,
        true
    ),
    case!("RulerTest.readme", r#"{"detail":{"state":[{"anything-but":{"prefix":"init"}}]}}"#, JSON_FROM_README, true),
    case!(
        "RulerTest.readme",
        r#"{"detail":{"state":[{"prefix":{"equals-ignore-case":"RuNn"}}]}}"#,
        JSON_FROM_README,
        true
    ),
    case!("RulerTest.readme", r#"{"detail":{"state":[{"suffix":"ning"}]}}"#, JSON_FROM_README, true),
    case!(
        "RulerTest.readme",
        r#"{"detail":{"state":[{"suffix":{"equals-ignore-case":"nInG"}}]}}"#,
        JSON_FROM_README,
        true
    ),
    case!("RulerTest.readme", r#"{"detail":{"source-ip":[{"cidr":"10.0.0.0/8"}]}}"#, JSON_FROM_README, true),
    // RulerTest.WHEN_WeWriteRulesToMatchVariousFieldCombos_THEN_TheyWork
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Width":[800],"Thumbnail":{"Height":[125,300]}}}"#,
        JSON_FROM_RFC,
        true
    ),
    case!("RulerTest.fieldCombos", r#"{"Image":{"Thumbnail":{"Url":[{"prefix":"http"}]}}}"#, JSON_FROM_RFC, true),
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Title":[{"prefix":{"equals-ignore-case":"VIeW"}}]}}"#,
        JSON_FROM_RFC,
        true
    ),
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Title":[{"suffix":{"equals-ignore-case":"LoOr"}}]}}"#,
        JSON_FROM_RFC,
        true
    ),
    case!("RulerTest.fieldCombos", r#"{"Image":{"Title":[{"suffix":"loor"}]}}"#, JSON_FROM_RFC, true),
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Width":[{"numeric":["<",1000]}],"Height":[{"numeric":["<=",600]}],"Title":[{"anything-but":"View from 15th Flood"}],"Thumbnail":{"Url":[{"prefix":"http"}],"Height":[{"numeric":[">",124,"<",126]}],"Width":[{"numeric":[">=",99.999,"<=",100]}]},"Animated":[false]}}"#,
        JSON_FROM_RFC,
        true
    ),
    case!("RulerTest.fieldCombos", r#"{"Image":{"Width":[{"numeric":["<",800]}]}}"#, JSON_FROM_RFC, false),
    case!("RulerTest.fieldCombos", r#"{"Image":{"Height":[{"numeric":["<",599]}]}}"#, JSON_FROM_RFC, false),
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Title":[{"anything-but":"View from 15th Floor"}]}}"#,
        JSON_FROM_RFC,
        false
    ),
    case!("RulerTest.fieldCombos", r#"{"Image":{"Thumbnail":{"Url":[{"prefix":"https"}]}}}"#, JSON_FROM_RFC, false),
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Thumbnail":{"Height":[{"numeric":[">",124,"<",125]}]}}}"#,
        JSON_FROM_RFC,
        false
    ),
    case!(
        "RulerTest.fieldCombos",
        r#"{"Image":{"Thumbnail":{"Width":[{"numeric":[">=",100.00001,"<=",1001]}]}}}"#,
        JSON_FROM_RFC,
        false
    ),
    case!("RulerTest.fieldCombos", r#"{"Image":{"Animated":[true]}}"#, JSON_FROM_RFC, false),
    // RulerTest.WHEN_JSONContainsArrays_THEN_RulerNoCompileMatchesWork
    case!("RulerTest.arrays", r#"{"employees":{"firstName":["Anna"]}}"#, JSON_WITH_COMPLEX_ARRAYS, true),
    case!("RulerTest.arrays", r#"{"employees":{"firstName":["John"],"ids":[1000]}}"#, JSON_WITH_COMPLEX_ARRAYS, true),
    case!(
        "RulerTest.arrays",
        r#"{"employees":{"firstName":["Anna"],"ids":[{"exists":false}]}}"#,
        JSON_WITH_COMPLEX_ARRAYS,
        true
    ),
    case!("RulerTest.arrays", r#"{"employees":{"firstName":["Alice"]}}"#, JSON_WITH_COMPLEX_ARRAYS, false),
    case!(
        "RulerTest.arrays",
        r#"{"employees":{"firstName":["Anna"],"lastName":["Jones"]}}"#,
        JSON_WITH_COMPLEX_ARRAYS,
        false
    ),
    case!(
        "RulerTest.arrays",
        r#"{"employees":{"firstName":["Alice"],"lastName":["Bob"]}}"#,
        JSON_WITH_COMPLEX_ARRAYS,
        false
    ),
    case!("RulerTest.arrays", r#"{"a":["b"]}"#, JSON_WITH_COMPLEX_ARRAYS, false),
    case!("RulerTest.arrays", r#"{"employees":["b"]}"#, JSON_WITH_COMPLEX_ARRAYS, false),
    case!("RulerTest.arrays", r#"{"employees":{"firstName":["Anna"],"ids":[1000]}}"#, JSON_WITH_COMPLEX_ARRAYS, false),
    case!(
        "RulerTest.arrays",
        r#"{"employees":{"firstName":["Anna"],"ids":[{"exists":true}]}}"#,
        JSON_WITH_COMPLEX_ARRAYS,
        false
    ),
    // RulerTest.WHEN_WeTryToMatchExistsRules_THEN_TheyWork
    case!("RulerTest.exists", r#"{"a":[{"exists":true}]}"#, r#"{"a":1}"#, true),
    case!("RulerTest.exists", r#"{"b":[{"exists":false}]}"#, r#"{"a":1}"#, true),
    case!("RulerTest.exists", r#"{"x":[{"exists":true}]}"#, r#"{"a":1}"#, false),
    case!("RulerTest.exists", r#"{"x":[{"exists":false}]}"#, r#"{"a":1}"#, true),
    case!("RulerTest.exists", r#"{"a":[{"exists":true}]}"#, r#"{"b":2}"#, false),
    case!("RulerTest.exists", r#"{"b":[{"exists":false}]}"#, r#"{"b":2}"#, false),
    case!("RulerTest.exists", r#"{"x":[{"exists":true}]}"#, r#"{"b":2}"#, false),
    case!("RulerTest.exists", r#"{"x":[{"exists":false}]}"#, r#"{"b":2}"#, true),
    case!("RulerTest.exists", r#"{"a":[{"exists":true}]}"#, r#"{"x":"X"}"#, false),
    case!("RulerTest.exists", r#"{"b":[{"exists":false}]}"#, r#"{"x":"X"}"#, true),
    case!("RulerTest.exists", r#"{"x":[{"exists":true}]}"#, r#"{"x":"X"}"#, true),
    case!("RulerTest.exists", r#"{"x":[{"exists":false}]}"#, r#"{"x":"X"}"#, false),
    // RulerTest.WHEN_WeTryReallySimpleRules_THEN_TheyWork
    case!("RulerTest.simple", r#"{"a":[1]}"#, r#"{"a":1}"#, true),
    case!("RulerTest.simple", r#"{"b":[2]}"#, r#"{"b":2}"#, true),
    case!("RulerTest.simple", r#"{"x":["X"]}"#, r#"{"x":"X"}"#, true),
    case!("RulerTest.simple", r#"{"a":[1]}"#, r#"{"x":true}"#, false),
    case!("RulerTest.simple", r#"{"b":[2]}"#, r#"{"x":true}"#, false),
    case!("RulerTest.simple", r#"{"x":["X"]}"#, r#"{"x":true}"#, false),
    // RulerTest.WHEN_WeTryAnythingButRules_THEN_Theywork
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"child1","b":"444","c":"child1","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        true
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"dad789","b":789,"c":"zdd","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"dad789","b":789,"c":"child1","d":123,"w":"xaz","z":1.01,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"dad1","b":345,"c":"child1","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"abc","b":111,"c":"child1","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"dad1","b":333,"c":"child1","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"abc","b":0,"c":"child1","d":444,"w":"xaz","z":0.999999,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"child1","b":"444","c":"child1","d":123,"w":"zaxonie","z":0.001,"n":"nomatch","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"child1","b":"444","c":"child1","d":123,"w":"xaz","z":0.001,"n":"matching","o":"nomatch","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"child1","b":"444","c":"child1","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"camelcase","p":"nomatch"}"#,
        false
    ),
    case!(
        "RulerTest.anythingBut",
        ANYTHING_BUT_RULE,
        r#"{"a":"child1","b":"444","c":"child1","d":123,"w":"xaz","z":0.001,"n":"nomatch","o":"nomatch","p":"abc"}"#,
        false
    ),
    // RulerTest.WHEN_WeTryEqualsIgnoreCaseRules_THEN_TheyWork
    case!(
        "RulerTest.ignoreCase",
        r#"{"a":[{"equals-ignore-case":"aBc"}],"b":[{"equals-ignore-case":"Def"}],"c":[{"equals-ignore-case":"xyZ"}]}"#,
        r#"{"a":"ABC","b":"defx","c":"xYz","d":"rst"}"#,
        false
    ),
    case!(
        "RulerTest.ignoreCase",
        r#"{"a":[{"equals-ignore-case":"aBc"}],"b":[{"equals-ignore-case":"Def"}],"c":[{"equals-ignore-case":"xyZ"}]}"#,
        r#"{"a":"ABC","c":"xYz","d":"rst"}"#,
        false
    ),
    case!(
        "RulerTest.ignoreCase",
        r#"{"a":[{"equals-ignore-case":"aBc"}],"b":[{"equals-ignore-case":"Def"}],"c":[{"equals-ignore-case":"xyZ"}]}"#,
        r#"{"a":"ABC","b":"xYz","c":"def","d":"rst"}"#,
        false
    ),
    case!(
        "RulerTest.ignoreCase",
        r#"{"a":[{"equals-ignore-case":"aBc"}],"b":[{"equals-ignore-case":"Def"}],"c":[{"equals-ignore-case":"xyZ"}]}"#,
        r#"{"a":"ABC","b":"def","c":"xYz","d":"rst"}"#,
        true
    ),
    // RulerTest.WHEN_WeTryWildcardRules_THEN_TheyWork
    case!(
        "RulerTest.wildcard",
        r#"{"a":[{"wildcard":"*bc"}],"b":[{"wildcard":"d*f"}],"c":[{"wildcard":"xy*"}],"d":[{"wildcard":"xy*"}]}"#,
        r#"{"a":"abcbc","b":"deeeefx","c":"xy","d":"xyzzz"}"#,
        false
    ),
    case!(
        "RulerTest.wildcard",
        r#"{"a":[{"wildcard":"*bc"}],"b":[{"wildcard":"d*f"}],"c":[{"wildcard":"xy*"}],"d":[{"wildcard":"xy*"}]}"#,
        r#"{"a":"abcbc","b":"deeeef","d":"xyzzz"}"#,
        false
    ),
    case!(
        "RulerTest.wildcard",
        r#"{"a":[{"wildcard":"*bc"}],"b":[{"wildcard":"d*f"}],"c":[{"wildcard":"xy*"}],"d":[{"wildcard":"xy*"}]}"#,
        r#"{"a":"abcbc","b":"xy","c":"deeeef","d":"xyzzz"}"#,
        false
    ),
    case!(
        "RulerTest.wildcard",
        r#"{"a":[{"wildcard":"*bc"}],"b":[{"wildcard":"d*f"}],"c":[{"wildcard":"xy*"}],"d":[{"wildcard":"xy*"}]}"#,
        r#"{"a":"abcbc","b":"deeeef","c":"xy","d":"xyzzz"}"#,
        true
    ),
    // ACMachineTest.songsACTest
    case!(
        "ACMachineTest.songs",
        r#"{"Year":[1966],"Songs":{"Name":["Paperback Writer"],"Writers":{"First":["Paul"],"Last":["McCartney"]}}}"#,
        SONGS,
        true
    ),
    case!("ACMachineTest.songs", r#"{"Genres":{"Pop":[true]},"Songs":{"Name":["Paint It Black"]}}"#, SONGS, true),
    case!("ACMachineTest.songs", r#"{"Year":[1966],"Songs":{"Name":["Paint It Black"]}}"#, SONGS, true),
    case!(
        "ACMachineTest.songs",
        r#"{"Songs":{"Name":["Paperback Writer"],"Writers":{"First":["Paul"],"Last":["McCartney"]}}}"#,
        SONGS,
        true
    ),
    case!(
        "ACMachineTest.songs",
        r#"{"Year":[1966],"Songs":{"Name":["Paperback Writer"],"Writers":{"First":["Mick"]}}}"#,
        SONGS,
        false
    ),
    case!("ACMachineTest.songs", r#"{"Songs":{"Writers":{"First":["Mick"],"Last":["McCartney"]}}}"#, SONGS, false),
    case!(
        "ACMachineTest.songs",
        r#"{"Genres":{"Pop":[true]},"Songs":{"Writers":{"First":["Mick"],"Last":["McCartney"]}}}"#,
        SONGS,
        false
    ),
    // ACMachineTest.intensitiesACTest: the duplicate key "points" names two paths.
    case!(
        "ACMachineTest.intensities",
        r#"{"lines":{"points":[287.48116291799363],"points":{"pp":["index0"]}}}"#,
        INTENSITIES,
        true
    ),
    // ACMachineTest.testACWithExistFalseRule
    case!("ACMachineTest.existsFalse", TASKS_RULE_1, TASKS_EVENT_1, true),
    case!("ACMachineTest.existsFalse", TASKS_RULE_2, TASKS_EVENT_1, true),
    case!("ACMachineTest.existsFalse", TASKS_RULE_1, TASKS_EVENT_2, false),
    case!("ACMachineTest.existsFalse", TASKS_RULE_2, TASKS_EVENT_2, true),
    // ACMachineTest.testExists
    case!("ACMachineTest.exists", r#"{"abc":[{"exists":false}]}"#, r#"{"abc":"xyz"}"#, false),
    case!("ACMachineTest.exists", r#"{"abc":[{"exists":true}]}"#, r#"{"abc":"xyz"}"#, true),
    case!("ACMachineTest.exists", r#"{"abc":[{"exists":false}]}"#, r#"{"xyz":"abc"}"#, true),
    case!("ACMachineTest.exists", r#"{"abc":[{"exists":true}]}"#, r#"{"xyz":"abc"}"#, false),
    // ACMachineTest.testIPAddressOfCIDRIsEqualToMaximumOfRange
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.153.171/31"}]}"#,
        r#"{"sourceIPAddress":"220.160.153.170"}"#,
        true
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.153.171/31"}]}"#,
        r#"{"sourceIPAddress":"220.160.153.171"}"#,
        true
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.153.171/31"}]}"#,
        r#"{"sourceIPAddress":"220.160.153.169"}"#,
        false
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.153.171/31"}]}"#,
        r#"{"sourceIPAddress":"220.160.153.172"}"#,
        false
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.154.255/24"}]}"#,
        r#"{"sourceIPAddress":"220.160.154.0"}"#,
        true
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.154.255/24"}]}"#,
        r#"{"sourceIPAddress":"220.160.154.255"}"#,
        true
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.154.255/24"}]}"#,
        r#"{"sourceIPAddress":"220.160.153.255"}"#,
        false
    ),
    case!(
        "ACMachineTest.cidr",
        r#"{"sourceIPAddress":[{"cidr":"220.160.154.255/24"}]}"#,
        r#"{"sourceIPAddress":"220.160.155.0"}"#,
        false
    ),
    // ACMachineTest.testPrefixMatching / testPrefixEqualsIgnoreCase / testSuffixEqualsIgnoreCase
    case!("ACMachineTest.prefix", r#"{"a":[{"prefix":"zoo"}]}"#, r#"{"a":"zookeeper"}"#, true),
    case!("ACMachineTest.prefix", r#"{"a":[{"prefix":"zoo"}]}"#, r#"{"a":"zoo"}"#, true),
    case!("ACMachineTest.prefix", r#"{"b":[{"prefix":"child"}]}"#, r#"{"b":"childhood"}"#, true),
    case!("ACMachineTest.prefix", r#"{"a":[{"prefix":"zoo"}]}"#, r#"{"b":"childhood"}"#, false),
    case!(
        "ACMachineTest.prefixIgnoreCase",
        r#"{"a":[{"prefix":{"equals-ignore-case":"zoo"}}]}"#,
        r#"{"a":"zOokeeper"}"#,
        true
    ),
    case!(
        "ACMachineTest.prefixIgnoreCase",
        r#"{"b":[{"prefix":{"equals-ignore-case":"child"}}]}"#,
        r#"{"b":"cHildlike"}"#,
        true
    ),
    case!(
        "ACMachineTest.prefixIgnoreCase",
        r#"{"a":[{"prefix":{"equals-ignore-case":"al"}}]}"#,
        r#"{"a":"ALbert"}"#,
        true
    ),
    case!(
        "ACMachineTest.suffixIgnoreCase",
        r#"{"a":[{"suffix":{"equals-ignore-case":"eper"}}]}"#,
        r#"{"a":"zookeePer"}"#,
        true
    ),
    case!(
        "ACMachineTest.suffixIgnoreCase",
        r#"{"b":[{"suffix":{"equals-ignore-case":"hood"}}]}"#,
        r#"{"b":"childhOoD"}"#,
        true
    ),
    case!(
        "ACMachineTest.suffixIgnoreCase",
        r#"{"b":[{"suffix":{"equals-ignore-case":"hood"}}]}"#,
        r#"{"b":"childhOoDs"}"#,
        false
    ),
    case!(
        "ACMachineTest.suffixChinese",
        r#"{"status":{"weatherText":[{"suffix":"统治者"}]}}"#,
        r#"{"status":{"weatherText":"事件统治者","pm25":23}}"#,
        true
    ),
    // ACMachineTest.OneEventWithDuplicatedKeyButDifferentValueMatchRules
    case!("ACMachineTest.duplicatedKey", r#"{"foo":{"bar":["ab"]}}"#, r#"{"foo":{"bar":["ab","cd"]}}"#, true),
    case!("ACMachineTest.duplicatedKey", r#"{"foo":{"bar":["cd"]}}"#, r#"{"foo":{"bar":["ab","cd"]}}"#, true),
    case!("ACMachineTest.duplicatedKey", r#"{"foo":{"bar":["cd"]}}"#, r#"{"foo":{"bar":"ab"}}"#, false),
    // ACMachineTest.OneRuleMadeByTwoConditions (as one $or rule)
    case!(
        "ACMachineTest.twoConditions",
        r#"{"$or":[{"A":["on"]},{"B":["on"]}],"C":["on"],"D":["off"]}"#,
        r#"{"A":"on","C":"on","D":"off"}"#,
        true
    ),
    case!(
        "ACMachineTest.twoConditions",
        r#"{"$or":[{"A":["on"]},{"B":["on"]}],"C":["on"],"D":["off"]}"#,
        r#"{"B":"on","C":"on","D":"off"}"#,
        true
    ),
    case!(
        "ACMachineTest.twoConditions",
        r#"{"$or":[{"A":["on"]},{"B":["on"]}],"C":["on"],"D":["off"]}"#,
        r#"{"A":"on","B":"on","C":"on","D":"on"}"#,
        false
    ),
    // ACMachineTest.testNumericMatch
    case!(
        "ACMachineTest.numeric",
        r#"{"a":[{"numeric":["=",0]}],"b":[{"numeric":["<",0]}],"c":[{"numeric":["<=",0]}],"x":[{"numeric":[">",0]}],"y":[{"numeric":[">=",0]}],"z":[{"numeric":[">",0,"<",1]}]}"#,
        r#"{"a":[0],"b":[-0.1],"c":[0],"x":[1],"y":[0],"z":[0.1]}"#,
        true
    ),
    // ACMachineTest.testAnythingButPrefix / Suffix and their Set variants
    case!("ACMachineTest.anythingButPrefix", r#"{"a":[{"anything-but":{"prefix":"$"}}]}"#, r#"{"a":"value$"}"#, true),
    case!(
        "ACMachineTest.anythingButPrefix",
        r#"{"a":[{"anything-but":{"prefix":"$"}}]}"#,
        r#"{"a":"$notvalue"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButPrefixSet",
        r#"{"a":[{"anything-but":{"prefix":["$","%"]}}]}"#,
        r#"{"a":"notvalue%"}"#,
        true
    ),
    case!(
        "ACMachineTest.anythingButPrefixSet",
        r#"{"a":[{"anything-but":{"prefix":["$","%"]}}]}"#,
        r#"{"a":"%notvalue"}"#,
        false
    ),
    case!("ACMachineTest.anythingButSuffix", r#"{"a":[{"anything-but":{"suffix":"$"}}]}"#, r#"{"a":"value$"}"#, false),
    case!(
        "ACMachineTest.anythingButSuffix",
        r#"{"a":[{"anything-but":{"suffix":"$"}}]}"#,
        r#"{"a":"$notvalue"}"#,
        true
    ),
    case!(
        "ACMachineTest.anythingButSuffixSet",
        r#"{"a":[{"anything-but":{"suffix":["$","%"]}}]}"#,
        r#"{"a":"notvalue%"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButSuffixSet",
        r#"{"a":[{"anything-but":{"suffix":["$","%"]}}]}"#,
        r#"{"a":"%notvalue"}"#,
        true
    ),
    // ACMachineTest.testAnythingButEqualsIgnoreCase
    case!(
        "ACMachineTest.anythingButIgnoreCase",
        r#"{"a":[{"anything-but":{"equals-ignore-case":["yes","please"]}}],"b":[{"anything-but":{"equals-ignore-case":"no"}}]}"#,
        r#"{"a":"value","b":"nothing"}"#,
        true
    ),
    case!(
        "ACMachineTest.anythingButIgnoreCase",
        r#"{"a":[{"anything-but":{"equals-ignore-case":["yes","please"]}}],"b":[{"anything-but":{"equals-ignore-case":"no"}}]}"#,
        r#"{"a":"yEs","b":"nothing"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButIgnoreCase",
        r#"{"a":[{"anything-but":{"equals-ignore-case":["yes","please"]}}],"b":[{"anything-but":{"equals-ignore-case":"no"}}]}"#,
        r#"{"a":"PLEASE","b":"nothing"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButIgnoreCase",
        r#"{"a":[{"anything-but":{"equals-ignore-case":["yes","please"]}}],"b":[{"anything-but":{"equals-ignore-case":"no"}}]}"#,
        r#"{"a":"value","b":"No"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButIgnoreCase",
        r#"{"a":[{"anything-but":{"equals-ignore-case":["yes","please"]}}],"b":[{"anything-but":{"equals-ignore-case":"no"}}]}"#,
        r#"{"a":"value","b":"No!"}"#,
        true
    ),
    // ACMachineTest.testAnythingButWildcard / testAnythingButWildcardSet
    case!(
        "ACMachineTest.anythingButWildcard",
        r#"{"a":[{"anything-but":{"wildcard":"*foo*"}}]}"#,
        r#"{"a":"barfoobar"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButWildcard",
        r#"{"a":[{"anything-but":{"wildcard":"*foo*"}}]}"#,
        r#"{"a":"barfobarobar"}"#,
        true
    ),
    case!(
        "ACMachineTest.anythingButWildcardSet",
        r#"{"a":[{"anything-but":{"wildcard":["*foo*","*bar*"]}}]}"#,
        r#"{"a":"sbars"}"#,
        false
    ),
    case!(
        "ACMachineTest.anythingButWildcardSet",
        r#"{"a":[{"anything-but":{"wildcard":["*foo*","*bar*"]}}]}"#,
        r#"{"a":"fobaor"}"#,
        true
    ),
    // ACMachineTest.testDuplicateKeyLastOneWins
    case!("ACMachineTest.duplicateKeyLastWins", r#"{"x":["y"],"x":["z"]}"#, r#"{"x":"y"}"#, false),
    case!("ACMachineTest.duplicateKeyLastWins", r#"{"x":["y"],"x":["z"]}"#, r#"{"x":"z"}"#, true),
    // ACMachineTest shared-name-state cases (each rule on its own)
    case!("ACMachineTest.existsFalseFinalKey", r#"{"bar":["b"],"foo":[{"exists":false}]}"#, r#"{"bar":"a"}"#, false),
    case!("ACMachineTest.existsFalseFinalKey", r#"{"bar":["a","b"]}"#, r#"{"bar":"a"}"#, true),
    case!(
        "ACMachineTest.existsTrueFinalKey",
        r#"{"bar":["b"],"foo":[{"exists":true}]}"#,
        r#"{"bar":"a","foo":"1"}"#,
        false
    ),
    case!("ACMachineTest.existsFalseShared", r#"{"foo":["a"],"bar":[{"exists":false}]}"#, r#"{"foo":"a"}"#, true),
    case!("ACMachineTest.existsFalseShared", r#"{"foo":["b"],"bar":[{"exists":false},"1"]}"#, r#"{"foo":"a"}"#, false),
    case!("ACMachineTest.existsFalseShared", r#"{"foo":["a"],"bar":["1"]}"#, r#"{"foo":"a"}"#, false),
    case!("ACMachineTest.twoMustNotExists", r#"{"bar":[{"exists":false}]}"#, r#"{"zoo":"a"}"#, true),
    case!("ACMachineTest.twoMustNotExists", r#"{"foo":[{"exists":false}],"zoo":["a"]}"#, r#"{"zoo":"a"}"#, true),
    case!(
        "ACMachineTest.multipleAnythingButs",
        r#"{"bar":[{"anything-but":"a"},{"anything-but":"b"}]}"#,
        r#"{"bar":"b"}"#,
        true
    ),
    case!(
        "ACMachineTest.orAtFirstNameState",
        r#"{"$or":[{"bar":["1"]},{"bar":["2"]}],"foo":["a"]}"#,
        r#"{"bar":"2","foo":"a"}"#,
        true
    ),
    case!("ACMachineTest.subsetOfOtherRule", r#"{"zoo":["1"],"foo":["b"]}"#, r#"{"zoo":"1","foo":"a"}"#, false),
    // ACMachineTest.testCIDRRuleWith… (an IP-looking string against other operators)
    case!(
        "ACMachineTest.cidrAnythingBut",
        r#"{"ip":[{"anything-but":"10.0.1.200"}]}"#,
        r#"{"ip":"10.0.1.200"}"#,
        false
    ),
    case!("ACMachineTest.cidrAnythingBut", r#"{"ip":["10.0.1.200"]}"#, r#"{"ip":"10.0.1.200"}"#, true),
    case!(
        "ACMachineTest.cidrAnythingButPrefix",
        r#"{"ip":[{"anything-but":{"prefix":"10.0."}}]}"#,
        r#"{"ip":"10.0.1.200"}"#,
        false
    ),
    case!(
        "ACMachineTest.cidrAnythingButSuffix",
        r#"{"ip":[{"anything-but":{"suffix":"1.200"}}]}"#,
        r#"{"ip":"10.0.1.200"}"#,
        false
    ),
    case!(
        "ACMachineTest.cidrAnythingButIgnoreCase",
        r#"{"ip":[{"anything-but":{"equals-ignore-case":"10.0.1.200"}}]}"#,
        r#"{"ip":"10.0.1.200"}"#,
        false
    ),
    case!("ACMachineTest.cidrNumeric", r#"{"ip":[{"numeric":[">",0,"<=",5]}]}"#, r#"{"ip":"10.0.1.200"}"#, false),
    // JsonRuleCompilerTest.testBigNumbers / testVariantForms / testBasicFunctionOfOrRelationshipRules
    case!("JsonRuleCompilerTest.bigNumbers", r#"{"account":[123456789012]}"#, r#"{"account":123456789012}"#, true),
    case!("JsonRuleCompilerTest.variantForms", r#"{"a":[133.3]}"#, r#"{"a":133.3,"b":"192.0.2.0"}"#, true),
    case!(
        "JsonRuleCompilerTest.variantForms",
        r#"{"a":[{"numeric":[">",120,"<=",140]}]}"#,
        r#"{"a":133.3,"b":"192.0.2.0"}"#,
        true
    ),
    case!("JsonRuleCompilerTest.variantForms", r#"{"b":["192.0.2.0"]}"#, r#"{"a":133.3,"b":"192.0.2.0"}"#, true),
    case!(
        "JsonRuleCompilerTest.variantForms",
        r#"{"b":[{"cidr":"192.0.2.0/24"}]}"#,
        r#"{"a":133.3,"b":"192.0.2.0"}"#,
        true
    ),
    case!(
        "JsonRuleCompilerTest.or",
        r#"{"detail":{"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]},{"x-limit":[{"numeric":["=",3.018e2]}]}]}}"#,
        r#"{"detail":{"detail-type":"EC2 Instance State-change Notification","resources":"arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000","info":{"state-status":"running","state-count":{"count":100}},"c-count":1,"d-count":8},"news":{"newsProviders":"p1","newCondition1":"news111","newCondition2":"news222"}}"#,
        true
    ),
    case!(
        "JsonRuleCompilerTest.or",
        r#"{"detail":{"detail-type":["EC2 Instance State-change Notification"],"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],"info":{"state-status":["initializing","running"],"state-count":{"count":[100]}},"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]},{"x-limit":[{"numeric":["=",3.018e2]}]}]},"news":{"newsProviders":["p1","p2"],"$or":[{"newCondition1":["news111"]},{"newCondition2":["news222"]}]}}"#,
        r#"{"detail":{"detail-type":"EC2 Instance State-change Notification","resources":"arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000","info":{"state-status":"running","state-count":{"count":100}},"c-count":1,"d-count":8},"news":{"newsProviders":"p1","newCondition1":"news111","newCondition2":"news222"}}"#,
        true
    ),
];

#[test]
fn event_ruler_pattern_tests_hold_for_record_values() {
    assert!(EVENT_RULER.len() >= 150, "a real share of event-ruler's cases: {}", EVENT_RULER.len());
    let failures: Vec<String> = EVENT_RULER
        .iter()
        .filter_map(|case| {
            let pattern = format!(r#"{{"value":{}}}"#, case.rule);
            match Filters::compile(&criteria(&[&pattern])) {
                Err(e) => Some(format!("{}: {} did not compile: {e}", case.from, case.rule)),
                Ok(f) if f.matches(&record(Some(case.event.as_bytes()))) != case.matches => {
                    Some(format!("{}: {} on {}: expected {}", case.from, case.rule, case.event, case.matches))
                }
                Ok(_) => None,
            }
        })
        .collect();
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// event-ruler's `JsonRuleCompilerTest.testCompile` bad patterns, which must all be refused.
#[test]
fn event_ruler_bad_patterns_are_refused() {
    let bad = [
        r#"{"a": [ { "exactly": 33 } ] }"#,
        r#"{"a": [ { "prefix": "child", "foo": [] } ] }"#,
        r#"{"a": [ { "prefix": 3 } ] }"#,
        r#"{"a": [ { "prefix": [1, 2 3] } ] }"#,
        r#"{"a": [ { "suffix": "child", "foo": [] } ] }"#,
        r#"{"a": [ { "suffix": 3 } ] }"#,
        r#"{"a": [ { "foo": "child" } ] }"#,
        r#"{"a": [ { "cidr": "foo" } ] }"#,
        r#"{"a": [ { "anything-but": "child", "foo": [] } ] }"#,
        r#"{"a": [ { "anything-but": [1, 2 3] } ] }"#,
        r#"{"a": [ { "anything-but": ["child0",111,"child2"] } ] }"#,
        r#"{"a": [ { "anything-but": { "foo": 3 } ] }"#,
        r#"{"a": [ { "anything-but": { "prefix": 27 } } ] }"#,
        r#"{"a": [ { "anything-but": { "prefix": "" } } ] }"#,
        r#"{"a": [ { "anything-but": { "prefix": "foo", "a":1 } } ] }"#,
        r#"{"a": [ { "anything-but": { "prefix": "foo" }, "x": 1 } ] }"#,
        r#"{"a": [ { "anything-but": { "prefix": ["1", ""] } } ] }"#,
        r#"{"a": [ { "anything-but": { "prefix": [1, 2, 3] } } ] }"#,
        r#"{"a": [ { "anything-but": { "suffix": 27 } } ] }"#,
        r#"{"a": [ { "anything-but": { "suffix": "" } } ] }"#,
        r#"{"a": [ { "anything-but": { "suffix": ["1", ""] } } ] }"#,
        r#"{"a": [ { "anything-but": { "equals-ignore-case": [1, 2, 3] } } ] }"#,
        r#"{"a": [ { "anything-but": { "wildcard": 27 } } ] }"#,
        r#"{"a": [ { "anything-but": { "wildcard": "foo**bar" } } ] }"#,
        r#"{"a": [ { "anything-but": { "wildcard": "foo*bar\\" } } ] }"#,
        r#"{"a": [ { "anything-but": { "wildcard": ["1", "foo**bar"] } } ] }"#,
        r#"{"a": [ { "equals-ignore-case": 5 } ] }"#,
        r#"{"a": [ { "equals-ignore-case": [ "abc" ] } ] }"#,
        r#"{"a": [ { "prefix": { "invalid-expression": [ "abc" ] } } ] }"#,
        r#"{"a": [ { "prefix": { "equals-ignore-case": 5 } } ] }"#,
        r#"{"a": [ { "prefix": { "equals-ignore-case": "abc", "test": "def" } } ] }"#,
        r#"{"a": [ { "prefix": { "equals-ignore-case": "abc" }, "test": "def" } ] }"#,
        r#"{"a": [ { "suffix": { "equals-ignore-case": [ "abc" ] } } ] }"#,
        r#"{"a": [ { "wildcard": 5 } ] }"#,
        r#"{"a": [ { "wildcard": [ "abc" ] } ] }"#,
        r#"{"x": [{"numeric": ["=", true]}]}"#,
        r#"{"x": [{"numeric": ["=", 2.0e422]}]}"#,
        r#"{"x": [{"numeric": ["=", "-4e-6"]}]}"#,
        r#"{"x": [{"numeric": ["="]}]}"#,
        r#"{"x": [{"numeric": ["=", 1E-325]}]}"#,
        r#"{"x": [{"numeric": ["<>", 1, ">", 0]}]}"#,
        r#"{"x": [{"numeric": [">", 1, "<", 1]}]}"#,
        r#"{"x": [{"exists": "badString"}]}"#,
        r#"{"x": [{"exists": true, "extraKey": "extraValue"}]}"#,
        "[1,2,3]",
        r#"{"a":1}"#,
        r#"{"a":[ { "x":2 } ]}"#,
        r#"{ "foo": {}}"#,
        r#"{ "foo": []}"#,
    ];
    let accepted: Vec<&str> = bad.iter().copied().filter(|p| Filters::compile(&criteria(&[p])).is_ok()).collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    // And its good ones compile.
    for good in [
        r#"{"a": [ { "anything-but": {"equals-ignore-case": "" } } ] }"#,
        r#"{"a": [ { "anything-but": { "wildcard": "" } } ] }"#,
        r#"{"a": [ { "exactly": "child" } ] }"#,
        r#"{"x": [{"numeric": ["=", 1E-320]}]}"#,
        r#"{"x": [{"numeric": [">=", 0, "<", 1]}]}"#,
        r#"{"x": [{"numeric": ["<=", -4e-6]}]}"#,
    ] {
        assert!(Filters::compile(&criteria(&[good])).is_ok(), "{good}");
    }
}

/// Prints the cost per record of typical filters on ~1 KB JSON values. Run with
/// `cargo test --release --lib filter::tests::bench -- --ignored --nocapture`; it asserts nothing
/// about time.
#[test]
#[ignore = "benchmark: prints ns/record"]
fn bench_ns_per_record_on_1kb_values() {
    let items: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"sku":"SKU-{i:05}","qty":{},"price":{}.99,"tags":["a","b","c"]}}"#, i % 4 + 1, 10 + i))
        .collect();
    let value = |i: usize| {
        format!(
            r#"{{"device_ID":"{}{i:06}","type":"order.created","customer":{{"id":{i},"name":"Customer {i}","tier":"gold"}},"items":[{}],"note":"{}"}}"#,
            if i.is_multiple_of(10) { "AB" } else { "CD" },
            items.join(","),
            "x".repeat(200)
        )
    };
    let records: Vec<KafkaRecord> = (0..1000).map(|i| record(Some(value(i).as_bytes()))).collect();
    let size = records[0].value.as_ref().map_or(0, Vec::len);
    for (name, patterns) in [
        ("prefix on value (AWS example)", vec![r#"{"value":{"device_ID":[{"prefix":"AB"}]}}"#]),
        (
            "numeric + anything-but + $or",
            vec![
                r#"{"value":{"customer":{"tier":[{"anything-but":"bronze"}]},"$or":[{"items":{"qty":[{"numeric":[">=",4]}]}},{"type":["order.deleted"]}]}}"#,
            ],
        ),
        ("array-consistent nested fields", vec![r#"{"value":{"items":{"sku":["SKU-00011"],"qty":[4]}}}"#]),
        ("metadata only (no decoding)", vec![r#"{"topic":["orders"],"partition":[{"numeric":["<",8]}]}"#]),
        ("decoding only (a field that is never there)", vec![r#"{"value":{"zzz":[{"exists":false}]}}"#]),
        (
            "5 filters, none matching",
            vec![
                r#"{"value":{"type":["a"]}}"#,
                r#"{"value":{"type":["b"]}}"#,
                r#"{"value":{"type":["c"]}}"#,
                r#"{"value":{"type":["d"]}}"#,
                r#"{"value":{"type":["e"]}}"#,
            ],
        ),
    ] {
        let f = filters(&patterns);
        let rounds = 20;
        // One untimed pass: warm caches and the reused parse buffers.
        let warm = records.iter().filter(|r| f.matches(r)).count();
        let start = Instant::now();
        let mut matched = 0;
        for _ in 0..rounds {
            matched += records.iter().filter(|r| f.matches(r)).count();
        }
        let ns = start.elapsed().as_nanos() / (rounds * records.len()) as u128;
        assert_eq!(matched, warm * rounds, "the same records match every round");
        println!("filter bench: {name}: {ns} ns/record ({size}-byte values, {warm} of {} match)", records.len());
    }
}
