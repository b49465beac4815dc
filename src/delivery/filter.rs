//! `FilterCriteria`: which records of a mapping reach the function, with the grammar and the
//! semantics of AWS Lambda event filtering for Kafka sources.
//!
//! A mapping has up to 5 filters; each is a pattern (the JSON text in `Pattern`, at most 4096
//! characters). A record is sent when any pattern matches it; a record no pattern matches is not
//! sent (the poller still commits past it). With no filters every record is sent.
//!
//! # What a pattern is matched against
//!
//! The record as its JSON object in the `aws:kafka` event, except that `value` is decoded as
//! AWS decodes it for filtering:
//!
//! - valid UTF-8 that is valid JSON → that JSON (an object, array, string, number, …);
//! - valid UTF-8 that is not JSON → one string (a "plain string" message);
//! - not UTF-8, or a null value (tombstone) → no `value` at all, so only `{"exists": false}` on
//!   it can match (AWS: "Lambda filters on the other metadata properties only").
//!
//! ```json
//! { "value": { "device_ID": [ { "prefix": "AB" } ] } }
//! { "value": [ { "anything-but": [ "error" ] } ] }
//! ```
//!
//! **Extension (kafka-esm):** AWS supports filtering on `value` only. Here a pattern may also
//! name the record's other fields, with the names of the event the function receives:
//! `key` (decoded like `value`), `topic`, `partition`, `offset`, `timestamp` (epoch ms),
//! `timestampType` (`"CREATE_TIME"`, …) and `headers`. `headers` is an object of header key →
//! value as UTF-8 text (a null value is `null`; a value that is not UTF-8 is absent; a key sent
//! twice has both values, and matches when either does) — not the byte arrays of the event,
//! which no pattern could usefully match. A pattern that names only `value` behaves exactly as
//! in AWS.
//!
//! ```json
//! { "topic": [ { "prefix": "orders-" } ], "headers": { "type": [ "created" ] } }
//! ```
//!
//! # Grammar
//!
//! A pattern is a JSON object whose structure follows the event; nested objects are fields of
//! fields, and every leaf is an array of entries. Fields are AND'ed; a field matches when any
//! entry matches any of its values (when the event has an array there, any element).
//!
//! | Rule | Syntax |
//! | --- | --- |
//! | Equals (string, number, `true`/`false`) | `"Name": [ "Alice" ]`, `"n": [ 100 ]` |
//! | Null / Empty | `"UserID": [ null ]` / `"LastName": [ "" ]` |
//! | Or (values) | `"PaymentType": [ "Credit", "Debit" ]` |
//! | And | `"Location": [ "New York" ], "Day": [ "Monday" ]` |
//! | Or (fields) | `"$or": [ { "Location": [ "New York" ] }, { "Day": [ "Monday" ] } ]` |
//! | Equals, ignoring case | `"Name": [ { "equals-ignore-case": "alice" } ]` |
//! | Begins / ends with | `[ { "prefix": "us-" } ]`, `[ { "suffix": ".png" } ]`; either with `{ "equals-ignore-case": "…" }` as operand |
//! | Not | `[ { "anything-but": "Raining" } ]`, `[ { "anything-but": [ "a", "b" ] } ]`, `[ { "anything-but": [ 100, 200 ] } ]` |
//! | Not (begins/ends with, ignoring case, wildcard) | `[ { "anything-but": { "prefix": "init" } } ]`, `{ "suffix": … }`, `{ "equals-ignore-case": … }`, `{ "wildcard": … }` (each a string or a list) |
//! | Numeric | `[ { "numeric": [ "=", 100 ] } ]`, `[ { "numeric": [ ">", 10, "<=", 20 ] } ]` (`<`, `<=`, `=`, `>=`, `>`) |
//! | Exists / does not exist | `[ { "exists": true } ]` / `[ { "exists": false } ]` |
//! | IP address in a network | `[ { "cidr": "10.0.0.0/24" } ]` |
//! | Wildcard | `[ { "wildcard": "*.png" } ]` (`*` any run; `\*`, `\\` literal) |
//! | Exactly (a string, even one that looks like an operator) | `[ { "exactly": "x" } ]` |
//!
//! Lambda's documentation lists Null, Empty, Equals, Equals (ignore case), And, Or, Or (multiple
//! fields), Not, Numeric, Exists, Does not exist, Begins with and Ends with. The other forms
//! (`prefix`/`suffix` ignoring case, `anything-but` on prefixes, suffixes, case or wildcards,
//! `wildcard`, `cidr`, `exactly`) are event-ruler's; kafka-esm accepts them too.
//!
//! Matching follows AWS's documentation, and event-ruler (the engine behind it) where AWS is
//! silent:
//!
//! - Strings match character by character, without normalisation. Bare numbers match by their
//!   JSON text (AWS: 300, 300.0 and 3.0e2 are not equal); `numeric` compares values (as IEEE
//!   doubles; a number with more precision than a double holds is not comparable and only ever
//!   matches exactly). String operators never match numbers, `numeric` never matches strings.
//! - `anything-but` matches every value of the field — of any type — that it does not exclude,
//!   and does not match a field that has no value.
//! - `exists` looks at leaf values: `{"exists": true}` matches any value including `null`; a
//!   field holding an object or an empty array does not exist.
//! - Arrays: a field matches when any element does; fields under one array must match within the
//!   same element (`{"a":{"x":[1],"y":[2]}}` does not match `{"a":[{"x":1},{"y":2}]}`).
//! - A key written twice in a pattern keeps its last value list.
//! - "Valid JSON" is strict RFC 8259 (no trailing commas, `NaN`, comments or trailing text).
//!
//! # Limits and errors
//!
//! Invalid criteria are refused when the mapping is created or updated, with the AWS message
//! `Invalid filter pattern definition.` and a reason ([`InvalidFilter`]). Beyond AWS's limits
//! (5 filters, 4096 characters), a pattern's `$or` combinations may not expand past 256
//! alternatives, nor an alternative hold more than 256 fields.
//!
//! Patterns are compiled once per mapping version. A record's `value`/`key` is parsed at most
//! once, only when a pattern reads it, into buffers reused from record to record. A pathological
//! record/pattern pair that would need over a million array-consistency checks is delivered
//! rather than filtered, so no record can stall its partition.

mod eval;
mod json;
mod matcher;
mod pattern;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use serde_json::Value;

use crate::delivery::record::KafkaRecord;
use eval::{Field, Scratch, Step};

/// Filters per mapping. AWS's default quota (it can be raised to 10 in AWS; not here).
pub const MAX_FILTERS: usize = 5;

/// Longest `Pattern`, in UTF-16 code units as AWS's API model counts string length.
pub const MAX_PATTERN_LENGTH: usize = 4096;

/// Why a mapping's `FilterCriteria` was refused. The messages name the filter and are worded for
/// an `InvalidParameterValueException` (see [`InvalidFilter::aws_error_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidFilter {
    /// `FilterCriteria` is not `{"Filters":[{"Pattern":"<JSON text>"}]}`.
    #[error("{at}: {reason}")]
    Shape { at: String, reason: String },
    #[error("FilterCriteria.Filters: {count} filters, more than the maximum of {max}")]
    TooManyFilters { count: usize, max: usize },
    #[error(
        "FilterCriteria.Filters[{index}].Pattern: Member must have length less than or equal to {max} (it has {length})"
    )]
    PatternTooLong { index: usize, length: usize, max: usize },
    /// The pattern is not valid filter grammar; `reason` says where and why.
    #[error("FilterCriteria.Filters[{index}].Pattern: Invalid filter pattern definition. {reason}")]
    Pattern { index: usize, reason: String },
}

impl InvalidFilter {
    /// The AWS error this is reported as: the pattern length is a constraint of the API model
    /// (`ValidationException`); everything else is `InvalidParameterValueException`.
    pub fn aws_error_code(&self) -> &'static str {
        match self {
            Self::PatternTooLong { .. } => "ValidationException",
            _ => "InvalidParameterValueException",
        }
    }
}

/// A mapping's `FilterCriteria`, compiled once per mapping version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Per pattern, its alternatives; per alternative, its steps in event-ruler's order.
    patterns: Vec<Vec<Vec<Step>>>,
    /// Whether any step reads `value` / `key`, which then must be decoded.
    reads: (bool, bool),
}

thread_local! {
    /// Parse buffers reused across records, so steady-state matching does not allocate.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Filters {
    /// From the mapping's stored `FilterCriteria` JSON: `{"Filters":[{"Pattern":"<JSON text>"}]}`.
    /// `null`, `{}` and `{"Filters":[]}` mean no filtering.
    ///
    /// # Errors
    ///
    /// [`InvalidFilter`] naming the filter index and what is wrong.
    pub fn compile(criteria: &Value) -> Result<Filters, InvalidFilter> {
        let shape = |at: &str, reason: &str| InvalidFilter::Shape { at: at.into(), reason: reason.into() };
        let filters = match criteria {
            Value::Null => return Ok(Self::default()),
            Value::Object(map) => {
                if let Some(other) = map.keys().find(|k| *k != "Filters") {
                    return Err(shape("FilterCriteria", &format!("unknown field \"{other}\", expected \"Filters\"")));
                }
                match map.get("Filters") {
                    None | Some(Value::Null) => return Ok(Self::default()),
                    Some(Value::Array(filters)) => filters,
                    Some(_) => return Err(shape("FilterCriteria.Filters", "must be a list of {\"Pattern\": \"…\"}")),
                }
            }
            _ => return Err(shape("FilterCriteria", "must be an object: {\"Filters\": [{\"Pattern\": \"…\"}]}")),
        };
        if filters.len() > MAX_FILTERS {
            return Err(InvalidFilter::TooManyFilters { count: filters.len(), max: MAX_FILTERS });
        }
        let mut compiled = Self::default();
        for (index, filter) in filters.iter().enumerate() {
            let at = format!("FilterCriteria.Filters[{index}]");
            let Value::Object(filter) = filter else {
                return Err(shape(&at, "must be an object: {\"Pattern\": \"…\"}"));
            };
            if let Some(other) = filter.keys().find(|k| *k != "Pattern") {
                return Err(shape(&at, &format!("unknown field \"{other}\", expected \"Pattern\"")));
            }
            let text = match filter.get("Pattern") {
                Some(Value::String(text)) => text,
                None | Some(Value::Null) => {
                    return Err(InvalidFilter::Pattern { index, reason: "The pattern is missing.".into() });
                }
                Some(_) => {
                    return Err(InvalidFilter::Pattern {
                        index,
                        reason: "The pattern must be a string of JSON text.".into(),
                    });
                }
            };
            let length = text.encode_utf16().count();
            if length > MAX_PATTERN_LENGTH {
                return Err(InvalidFilter::PatternTooLong { index, length, max: MAX_PATTERN_LENGTH });
            }
            let pattern = pattern::compile(text).map_err(|reason| InvalidFilter::Pattern { index, reason })?;
            let alternatives = pattern
                .alternatives
                .into_iter()
                .map(|alternative| {
                    alternative
                        .steps
                        .into_iter()
                        .map(|step| {
                            let (field, rest) = Field::resolve(&step.path);
                            compiled.reads.0 |= field == Field::Value;
                            compiled.reads.1 |= field == Field::Key;
                            Step { field, rest: rest.map(Into::into), matchers: step.matchers, absent: step.absent }
                        })
                        .collect()
                })
                .collect();
            compiled.patterns.push(alternatives);
        }
        Ok(compiled)
    }

    /// No filters: everything passes.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Number of filters (patterns).
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the record should be sent to the function: some pattern matches it, or there are
    /// no filters.
    pub fn matches(&self, record: &KafkaRecord) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => eval::matches(&self.patterns, self.reads, record, &mut scratch),
            // Only reachable if matching re-entered itself on this thread; stay correct anyway.
            Err(_) => eval::matches(&self.patterns, self.reads, record, &mut Scratch::default()),
        })
    }
}
