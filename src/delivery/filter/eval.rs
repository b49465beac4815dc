//! Matching compiled patterns against one record, with event-ruler's array-consistent semantics.
//!
//! The event a pattern sees is virtual: its top-level fields (`value`, `key`, `topic`, …) are
//! read from the [`KafkaRecord`] on demand, and `value`/`key` are decoded at most once per record,
//! only when some pattern reads them.
//!
//! An alternative (one `$or` branch combination) matches when each of its fields, taken in
//! event-ruler's order (sorted by path), can be given a leaf value that matches one of its
//! entries, such that no two chosen values sit in different elements of the same array
//! (event-ruler's `rulesForJSONEvent`: `{"a":{"x":[1],"y":[2]}}` needs one element of `a` with
//! both). `{"exists": false}` holds when no value of the field is consistent with the values
//! chosen for the fields before it.

use super::json::{Node, Tape};
use super::matcher::{Matcher, Scalar};
use crate::delivery::record::KafkaRecord;

/// Candidate checks one record may cost before matching gives up and delivers the record (a
/// pathological pattern/record pair must not stall a partition; delivering is the choice that
/// loses nothing). Ordinary records use a handful.
pub(crate) const SEARCH_BUDGET: u32 = 1_000_000;

/// A top-level field of the filtered event; names as in the `aws:kafka` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Value,
    Key,
    Headers,
    Topic,
    Partition,
    Offset,
    Timestamp,
    TimestampType,
    /// A name the event does not have: never present.
    Unknown,
}

impl Field {
    const NAMES: [(&'static str, Field); 8] = [
        ("value", Field::Value),
        ("key", Field::Key),
        ("headers", Field::Headers),
        ("topic", Field::Topic),
        ("partition", Field::Partition),
        ("offset", Field::Offset),
        ("timestamp", Field::Timestamp),
        ("timestampType", Field::TimestampType),
    ];

    /// The field a dotted path starts with, and the rest of the path below it (`None` for the
    /// field itself; `Some("")` is a key named "" inside it).
    pub fn resolve(path: &str) -> (Field, Option<&str>) {
        for (name, field) in Self::NAMES {
            if path == name {
                return (field, None);
            }
            if let Some(rest) = path.strip_prefix(name).and_then(|r| r.strip_prefix('.')) {
                return (field, Some(rest));
            }
        }
        (Field::Unknown, None)
    }
}

/// One field of an alternative, resolved against the event's top level.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub field: Field,
    pub rest: Option<Box<str>>,
    pub matchers: Vec<Matcher>,
    pub absent: bool,
}

/// Buffers reused from record to record (one set per thread).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    value: Tape,
    key: Tape,
    work: Work,
}

#[derive(Debug, Default)]
struct Work {
    /// Array memberships of candidate values, concatenated.
    chains: Vec<(u64, u32)>,
    /// Candidate values: a range of `chains`.
    candidates: Vec<(u32, u32)>,
    /// Per step: matching candidates, then (for `exists: false`) all values.
    spans: Vec<[u32; 4]>,
    membership: Vec<(u64, u32)>,
    walk: Vec<(u64, u32)>,
}

/// `value`/`key` as the filter sees them.
#[derive(Debug, Clone, Copy)]
enum Decoded<'a> {
    /// No bytes (a null value), or bytes that are not UTF-8: the field is absent.
    Absent,
    /// UTF-8 that is not JSON: one string.
    Plain(&'a str),
    /// JSON, parsed into the tape of this tag.
    Json(&'a str),
}

fn decode<'a>(bytes: Option<&'a [u8]>, tape: &mut Tape) -> Decoded<'a> {
    let Some(text) = bytes.and_then(|b| std::str::from_utf8(b).ok()) else {
        return Decoded::Absent;
    };
    match tape.parse(text) {
        Ok(()) => Decoded::Json(text),
        Err(_) => Decoded::Plain(text),
    }
}

/// The record as an event: decoded sources plus the record for metadata.
struct Event<'a> {
    record: &'a KafkaRecord,
    value: (Decoded<'a>, &'a Tape),
    key: (Decoded<'a>, &'a Tape),
}

const VALUE_TAG: u64 = 1 << 32;
const KEY_TAG: u64 = 2 << 32;

/// Whether the record matches any alternative of any pattern.
pub(crate) fn matches(
    patterns: &[Vec<Vec<Step>>],
    reads: (bool, bool),
    record: &KafkaRecord,
    scratch: &mut Scratch,
) -> bool {
    let Scratch { value, key, work } = scratch;
    let decoded_value = if reads.0 { decode(record.value.as_deref(), value) } else { Decoded::Absent };
    let decoded_key = if reads.1 { decode(record.key.as_deref(), key) } else { Decoded::Absent };
    let event = Event { record, value: (decoded_value, &*value), key: (decoded_key, &*key) };
    for alternatives in patterns {
        for steps in alternatives {
            match alternative(steps, &event, work) {
                Some(true) => return true,
                Some(false) => {}
                None => {
                    tracing::debug!(
                        topic = %record.topic,
                        partition = record.partition,
                        offset = record.offset,
                        "Filter matching ran out of budget; delivering the record."
                    );
                    return true;
                }
            }
        }
    }
    false
}

/// `None` when the search budget ran out.
fn alternative(steps: &[Step], event: &Event<'_>, work: &mut Work) -> Option<bool> {
    let Work { chains, candidates, spans, membership, walk } = work;
    chains.clear();
    candidates.clear();
    spans.clear();
    for step in steps {
        let matching_start = candidates.len() as u32;
        event.leaves(step.field, step.rest.as_deref(), walk, &mut |value, chain| {
            if step.matchers.iter().any(|m| m.matches(value)) {
                push_candidate(chains, candidates, matching_start, chain);
            }
        });
        let matching_end = candidates.len() as u32;
        if matching_start == matching_end && !step.absent {
            return Some(false);
        }
        if step.absent {
            event.leaves(step.field, step.rest.as_deref(), walk, &mut |_, chain| {
                push_candidate(chains, candidates, matching_end, chain);
            });
        }
        spans.push([matching_start, matching_end, matching_end, candidates.len() as u32]);
    }
    membership.clear();
    let mut budget = SEARCH_BUDGET;
    let search = Search { steps, spans, chains, candidates };
    search.from(0, membership, &mut budget)
}

/// Records a candidate's array membership, skipping a repeat of the previous candidate's in the
/// same list (values of one array share it, and trying them again cannot change the outcome).
fn push_candidate(
    chains: &mut Vec<(u64, u32)>,
    candidates: &mut Vec<(u32, u32)>,
    list_start: u32,
    chain: &[(u64, u32)],
) {
    if candidates.len() > list_start as usize
        && let Some(&(start, end)) = candidates.last()
        && chains[start as usize..end as usize] == *chain
    {
        return;
    }
    let start = chains.len() as u32;
    chains.extend_from_slice(chain);
    candidates.push((start, chains.len() as u32));
}

struct Search<'a> {
    steps: &'a [Step],
    spans: &'a [[u32; 4]],
    chains: &'a [(u64, u32)],
    candidates: &'a [(u32, u32)],
}

impl Search<'_> {
    fn chain(&self, candidate: u32) -> &[(u64, u32)] {
        let (start, end) = self.candidates[candidate as usize];
        &self.chains[start as usize..end as usize]
    }

    fn from(&self, i: usize, membership: &mut Vec<(u64, u32)>, budget: &mut u32) -> Option<bool> {
        let Some(&[m_start, m_end, a_start, a_end]) = self.spans.get(i) else {
            return Some(true);
        };
        for candidate in m_start..m_end {
            *budget = budget.checked_sub(1)?;
            let chain = self.chain(candidate);
            if !consistent(membership, chain) {
                continue;
            }
            let mark = membership.len();
            for &(array, index) in chain {
                if !membership.iter().any(|&(a, _)| a == array) {
                    membership.push((array, index));
                }
            }
            let found = self.from(i + 1, membership, budget)?;
            membership.truncate(mark);
            if found {
                return Some(true);
            }
        }
        if self.steps[i].absent {
            for candidate in a_start..a_end {
                *budget = budget.checked_sub(1)?;
                if consistent(membership, self.chain(candidate)) {
                    return Some(false);
                }
            }
            return self.from(i + 1, membership, budget);
        }
        Some(false)
    }
}

/// No array of `chain` is pinned to another element in `membership`.
fn consistent(membership: &[(u64, u32)], chain: &[(u64, u32)]) -> bool {
    chain.iter().all(|&(array, index)| membership.iter().all(|&(a, i)| a != array || i == index))
}

impl Event<'_> {
    /// Calls `f` with every leaf value at `rest` below `field`, and the arrays (id, element)
    /// the value sits in.
    fn leaves<F: FnMut(Scalar<'_>, &[(u64, u32)])>(
        &self,
        field: Field,
        rest: Option<&str>,
        walk: &mut Vec<(u64, u32)>,
        f: &mut F,
    ) {
        walk.clear();
        let r = self.record;
        match field {
            Field::Value | Field::Key => {
                let ((decoded, tape), tag) =
                    if field == Field::Value { (self.value, VALUE_TAG) } else { (self.key, KEY_TAG) };
                match (decoded, rest) {
                    (Decoded::Absent, _) | (Decoded::Plain(_), Some(_)) => {}
                    (Decoded::Plain(text), None) => f(Scalar::Str(text), walk),
                    (Decoded::Json(src), None) => Json { tape, src, tag }.leaf(0, walk, f),
                    (Decoded::Json(src), Some(rest)) => Json { tape, src, tag }.walk(0, rest, walk, f),
                }
            }
            Field::Headers => {
                for header in &r.headers {
                    // A header's value is text; one that is not UTF-8 is absent.
                    if rest == Some(header.key.as_str()) {
                        match header.value.as_deref().map(std::str::from_utf8) {
                            None => f(Scalar::Null, walk),
                            Some(Ok(text)) => f(Scalar::Str(text), walk),
                            Some(Err(_)) => {}
                        }
                    }
                }
            }
            Field::Topic if rest.is_none() => f(Scalar::Str(&r.topic), walk),
            Field::TimestampType if rest.is_none() => f(Scalar::Str(r.timestamp_type.as_str()), walk),
            Field::Partition | Field::Offset | Field::Timestamp if rest.is_none() => {
                let n = match field {
                    Field::Partition => i64::from(r.partition),
                    Field::Offset => r.offset,
                    _ => r.timestamp_ms,
                };
                let mut buf = [0u8; 20];
                f(Scalar::Num(format_i64(n, &mut buf)), walk);
            }
            _ => {}
        }
    }
}

/// `n` in decimal, without allocating.
fn format_i64(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

struct Json<'a> {
    tape: &'a Tape,
    src: &'a str,
    tag: u64,
}

impl Json<'_> {
    /// Follows `rest` (one or more keys) down from `node`. Keys are matched against the dotted
    /// path the way event-ruler joins them, so `"a.b"` reaches both `{"a":{"b":…}}` and
    /// `{"a.b":…}`.
    fn walk<F: FnMut(Scalar<'_>, &[(u64, u32)])>(
        &self,
        node: usize,
        rest: &str,
        walk: &mut Vec<(u64, u32)>,
        f: &mut F,
    ) {
        match self.tape.node(node) {
            Node::Object { .. } => {
                for (key, value) in self.tape.members(self.src, node) {
                    if key == rest {
                        self.leaf(value, walk, f);
                    } else if let Some(below) = rest.strip_prefix(key).and_then(|r| r.strip_prefix('.')) {
                        self.walk(value, below, walk, f);
                    }
                }
            }
            Node::Array { .. } => {
                for (index, element) in self.tape.elements(node).enumerate() {
                    if matches!(self.tape.node(element), Node::Object { .. } | Node::Array { .. }) {
                        walk.push((self.tag | node as u64, index as u32));
                        self.walk(element, rest, walk, f);
                        walk.pop();
                    }
                }
            }
            _ => {}
        }
    }

    /// The leaf values at `node`: itself if it is a scalar, the scalars of an array (nested
    /// arrays flattened); an object has none.
    fn leaf<F: FnMut(Scalar<'_>, &[(u64, u32)])>(&self, node: usize, walk: &mut Vec<(u64, u32)>, f: &mut F) {
        match self.tape.node(node) {
            Node::Object { .. } => {}
            Node::Array { .. } => {
                for (index, element) in self.tape.elements(node).enumerate() {
                    match self.tape.node(element) {
                        Node::Object { .. } => {}
                        Node::Array { .. } => {
                            walk.push((self.tag | node as u64, index as u32));
                            self.leaf(element, walk, f);
                            walk.pop();
                        }
                        _ => self.leaf(element, walk, f),
                    }
                }
            }
            Node::String(t) => f(Scalar::Str(self.tape.text(self.src, t)), walk),
            Node::Number { start, end } => f(Scalar::Num(Tape::number(self.src, start, end)), walk),
            Node::True => f(Scalar::True, walk),
            Node::False => f(Scalar::False, walk),
            Node::Null => f(Scalar::Null, walk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_top_level_fields() {
        assert_eq!(Field::resolve("value"), (Field::Value, None));
        assert_eq!(Field::resolve("value.a.b"), (Field::Value, Some("a.b")));
        assert_eq!(Field::resolve("value."), (Field::Value, Some("")));
        assert_eq!(Field::resolve("valueX"), (Field::Unknown, None));
        assert_eq!(Field::resolve("timestampType"), (Field::TimestampType, None));
        assert_eq!(Field::resolve("timestamp"), (Field::Timestamp, None));
        assert_eq!(Field::resolve("headers.trace.id"), (Field::Headers, Some("trace.id")));
    }

    #[test]
    fn integers_format_like_json() {
        let mut buf = [0u8; 20];
        for n in [0, 7, -1, 1_545_084_650_987, i64::MIN, i64::MAX] {
            assert_eq!(format_i64(n, &mut buf), n.to_string());
        }
    }
}
