//! Compiles one filter pattern (the JSON text of a `Pattern`) into alternatives of sorted
//! field steps, with the grammar and the error messages of event-ruler's `JsonRuleCompiler`.
//!
//! Nested objects flatten into dotted paths (`{"value":{"a":[1]}}` is the path `value.a`), and
//! `$or` forks the rule: `{"x":[1],"$or":[{"a":[1]},{"b":[2]}]}` becomes the two alternatives
//! `{x, a}` and `{x, b}`, each matched on its own (disjunctive normal form). A path written twice
//! in one alternative keeps its last value list, as Lambda documents for duplicate keys.

use super::json::{Node, Tape};
use super::matcher::{AnythingBut, Cidr, Folded, Glob, Literal, Matcher, Range, comparable, parse_ip};

/// More alternatives than this (from `$or` combinations) are refused: each one costs time on
/// every record. event-ruler has no such limit; 256 matches its limit on fields per rule.
pub(crate) const MAX_ALTERNATIVES: usize = 256;

/// event-ruler's `MAXIMUM_RULE_SIZE`: fields in one rule (one `$or` alternative).
pub(crate) const MAX_FIELDS: usize = 256;

/// Names that cannot be field names inside `$or` (event-ruler's
/// `RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP`), so an operator misplaced in a branch is an error
/// rather than a field that never exists.
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

/// A compiled pattern: it matches an event when any alternative does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    pub alternatives: Vec<Alternative>,
}

/// Fields that must all match, sorted by path in event-ruler's order (Java `String` order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alternative {
    pub steps: Vec<Step>,
}

/// One field of an alternative: its dotted path and value list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub path: Box<str>,
    /// Entries that match a leaf value at `path`.
    pub matchers: Vec<Matcher>,
    /// The list holds `{"exists": false}`: the step also holds when `path` has no value.
    pub absent: bool,
}

type Fields = Vec<(String, Step)>;

/// Compiles a pattern. The error is a sentence for the user, without the filter's index.
pub(crate) fn compile(text: &str) -> Result<Pattern, String> {
    let mut tape = Tape::default();
    if let Err(e) = tape.parse(text) {
        let (line, column) = e.line_column(text);
        return Err(format!("Invalid JSON: {} at line {line}, column {column}.", e.message));
    }
    if !matches!(tape.node(0), Node::Object { .. }) {
        return Err("Filter is not an object.".into());
    }
    let c = Compiler { tape: &tape, src: text };
    let mut rules: Vec<Fields> = Vec::new();
    c.object(0, "", false, &mut rules)?;
    let alternatives = rules
        .into_iter()
        .map(|fields| {
            if fields.len() > MAX_FIELDS {
                return Err(format!("A rule has {} fields, more than the maximum of {MAX_FIELDS}.", fields.len()));
            }
            let mut steps: Vec<Step> = fields.into_iter().map(|(_, step)| step).collect();
            steps.sort_by(|a, b| a.path.encode_utf16().cmp(b.path.encode_utf16()));
            Ok(Alternative { steps })
        })
        .collect::<Result<_, String>>()?;
    Ok(Pattern { alternatives })
}

struct Compiler<'a> {
    tape: &'a Tape,
    src: &'a str,
}

/// An error about the field at `path`.
fn at(path: &str, message: impl std::fmt::Display) -> String {
    if path.is_empty() { format!("{message}.") } else { format!("{message} (field \"{path}\").") }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

impl Compiler<'_> {
    fn object(&self, node: usize, path: &str, in_or: bool, rules: &mut Vec<Fields>) -> Result<(), String> {
        let mut members = self.tape.members(self.src, node).peekable();
        if members.peek().is_none() {
            return Err(at(path, "Empty objects are not allowed"));
        }
        for (key, value) in members {
            if key == "$or" {
                self.or(value, path, rules)?;
                continue;
            }
            if in_or && RESERVED_IN_OR.contains(&key) {
                return Err(at(
                    path,
                    format_args!("{key} is Ruler reserved fieldName which cannot be used inside $or"),
                ));
            }
            let name = join(path, key);
            match self.tape.node(value) {
                Node::Object { .. } => self.object(value, &name, in_or, rules)?,
                Node::Array { .. } => self.values(value, name, rules)?,
                _ => return Err(at(&name, format_args!("\"{key}\" must be an object or an array"))),
            }
        }
        Ok(())
    }

    fn or(&self, node: usize, path: &str, rules: &mut Vec<Fields>) -> Result<(), String> {
        if !matches!(self.tape.node(node), Node::Array { .. }) {
            return Err(at(path, "It must be an Array followed with $or"));
        }
        let before = std::mem::take(rules);
        let mut branches = 0;
        for branch in self.tape.elements(node) {
            branches += 1;
            if !matches!(self.tape.node(branch), Node::Object { .. }) {
                return Err(at(path, "Only JSON object is allowed in array of $or relationship"));
            }
            let mut forked = before.clone();
            if forked.is_empty() {
                forked.push(Fields::new());
            }
            self.object(branch, path, true, &mut forked)?;
            rules.extend(forked);
            if rules.len() > MAX_ALTERNATIVES {
                return Err(format!(
                    "The $or combinations expand to more than {MAX_ALTERNATIVES} alternatives; simplify the pattern or split it into several filters."
                ));
            }
        }
        if branches < 2 {
            return Err(at(path, "There must have at least 2 Objects in $or relationship"));
        }
        Ok(())
    }

    /// A field's value list: `"name": [ … ]`.
    fn values(&self, node: usize, name: String, rules: &mut Vec<Fields>) -> Result<(), String> {
        let mut step = Step { path: name.clone().into_boxed_str(), matchers: Vec::new(), absent: false };
        for element in self.tape.elements(node) {
            match self.tape.node(element) {
                Node::Object { .. } => match self.expression(element, &name)? {
                    Expression::Absent => step.absent = true,
                    Expression::Matcher(m) => step.matchers.push(m),
                },
                Node::String(t) => {
                    let text = self.tape.text(self.src, t);
                    step.matchers.push(Matcher::ExactString { text: text.into(), ip: parse_ip(text) });
                }
                Node::Number { start, end } => {
                    step.matchers.push(Matcher::ExactNumber(Tape::number(self.src, start, end).into()))
                }
                Node::True => step.matchers.push(Matcher::ExactLiteral(Literal::True)),
                Node::False => step.matchers.push(Matcher::ExactLiteral(Literal::False)),
                Node::Null => step.matchers.push(Matcher::ExactLiteral(Literal::Null)),
                Node::Array { .. } => {
                    return Err(at(&name, "Match value must be String, number, true, false, or null"));
                }
            }
        }
        if step.matchers.is_empty() && !step.absent {
            return Err(at(&name, "Empty arrays are not allowed"));
        }
        if rules.is_empty() {
            rules.push(Fields::new());
        }
        for fields in rules.iter_mut() {
            match fields.iter_mut().find(|(path, _)| *path == name) {
                Some((_, existing)) => *existing = step.clone(),
                None => fields.push((name.clone(), step.clone())),
            }
        }
        Ok(())
    }

    /// One `{ "<operator>": … }` entry of a value list.
    fn expression(&self, node: usize, path: &str) -> Result<Expression, String> {
        let mut members = self.tape.members(self.src, node);
        let Some((op, value)) = members.next() else {
            return Err(at(path, "Match expression name not found"));
        };
        let result = match op {
            "exactly" => Matcher::ExactString {
                text: self.string(value, path, "exact match pattern must be a string")?.into(),
                ip: None,
            },
            "prefix" => match self.tape.node(value) {
                Node::Object { .. } => {
                    Matcher::PrefixIgnoreCase(Folded::new(self.ignore_case_operand(value, path, "prefix")?))
                }
                _ => Matcher::Prefix(self.string(value, path, "prefix match pattern must be a string")?.into()),
            },
            "suffix" => match self.tape.node(value) {
                Node::Object { .. } => {
                    Matcher::SuffixIgnoreCase(Folded::new(self.ignore_case_operand(value, path, "suffix")?))
                }
                _ => Matcher::Suffix(self.string(value, path, "suffix match pattern must be a string")?.into()),
            },
            "equals-ignore-case" => Matcher::EqualsIgnoreCase(Folded::new(self.string(
                value,
                path,
                "equals-ignore-case match pattern must be a string",
            )?)),
            "wildcard" => Matcher::Wildcard(
                Glob::parse(self.string(value, path, "wildcard match pattern must be a string")?)
                    .map_err(|e| at(path, e))?,
            ),
            "cidr" => Matcher::Cidr(
                Cidr::parse(self.string(value, path, "cidr match pattern must be a string")?)
                    .map_err(|e| at(path, e))?,
            ),
            "numeric" => {
                if !matches!(self.tape.node(value), Node::Array { .. }) {
                    return Err(at(path, "Value of numeric must be an array"));
                }
                Matcher::Numeric(self.numeric(value, path)?)
            }
            "anything-but" => Matcher::AnythingBut(self.anything_but(value, path)?),
            "exists" => match self.tape.node(value) {
                Node::True => Matcher::Exists,
                Node::False => {
                    self.only_key(members, path)?;
                    return Ok(Expression::Absent);
                }
                _ => return Err(at(path, "exists match pattern must be either true or false")),
            },
            other => return Err(at(path, format_args!("Unrecognized match type {other}"))),
        };
        self.only_key(members, path)?;
        Ok(Expression::Matcher(result))
    }

    fn only_key(&self, mut rest: super::json::Members<'_>, path: &str) -> Result<(), String> {
        match rest.next() {
            Some(_) => Err(at(path, "Only one key allowed in match expression")),
            None => Ok(()),
        }
    }

    fn string(&self, node: usize, path: &str, message: &str) -> Result<&str, String> {
        match self.tape.node(node) {
            Node::String(t) => Ok(self.tape.text(self.src, t)),
            _ => Err(at(path, message)),
        }
    }

    /// `{"equals-ignore-case": "x"}` as the operand of `prefix`/`suffix`.
    fn ignore_case_operand(&self, node: usize, path: &str, op: &str) -> Result<&str, String> {
        let mut members = self.tape.members(self.src, node);
        let Some((name, value)) = members.next() else {
            return Err(at(path, format_args!("{} expression name not found", capitalised(op))));
        };
        if name != "equals-ignore-case" {
            return Err(at(path, format_args!("Unsupported {op} pattern: {name}")));
        }
        let text = self.string(value, path, "equals-ignore-case match pattern must be a string")?;
        self.only_key(members, path)?;
        Ok(text)
    }

    fn number(&self, node: usize) -> Option<&str> {
        match self.tape.node(node) {
            Node::Number { start, end } => Some(Tape::number(self.src, start, end)),
            _ => None,
        }
    }

    /// A number `numeric`/`anything-but` can compare.
    fn comparable(&self, text: &str, path: &str) -> Result<f64, String> {
        comparable(text).ok_or_else(|| at(path, format_args!("Cannot compare number : {text}")))
    }

    /// `["<op>", n]` or `[">"|">=", n, "<"|"<=", m]`.
    fn numeric(&self, node: usize, path: &str) -> Result<Range, String> {
        let items: Vec<usize> = self.tape.elements(node).collect();
        let describe = |i: usize| match items.get(i).map(|&n| self.tape.node(n)) {
            Some(Node::String(t)) => self.tape.text(self.src, t).to_owned(),
            Some(Node::Number { start, end }) => Tape::number(self.src, start, end).to_owned(),
            Some(Node::True) => "true".into(),
            Some(Node::False) => "false".into(),
            Some(Node::Null) => "null".into(),
            Some(Node::Array { .. }) => "[".into(),
            Some(Node::Object { .. }) => "{".into(),
            None => "]".into(),
        };
        let op = match items.first().map(|&n| self.tape.node(n)) {
            Some(Node::String(t)) => self.tape.text(self.src, t),
            _ => return Err(at(path, format_args!("Invalid member in numeric match: {}", describe(0)))),
        };
        let operand = |i: usize, name: &str| -> Result<f64, String> {
            let text = items
                .get(i)
                .and_then(|&n| self.number(n))
                .ok_or_else(|| at(path, format_args!("Value of {name} must be numeric")))?;
            self.comparable(text, path)
        };
        let too_many = |n: usize| {
            if items.len() > n { Err(at(path, "Too many elements in numeric expression")) } else { Ok(()) }
        };
        match op {
            "=" => {
                let v = operand(1, "equals")?;
                too_many(2)?;
                Ok(Range { low: Some((v, false)), high: Some((v, false)) })
            }
            "<" | "<=" => {
                let v = operand(1, op)?;
                too_many(2)?;
                Ok(Range { low: None, high: Some((v, op == "<")) })
            }
            ">" | ">=" => {
                let low = operand(1, op)?;
                if items.len() == 2 {
                    return Ok(Range { low: Some((low, op == ">")), high: None });
                }
                let top_op = match items.get(2).map(|&n| self.tape.node(n)) {
                    Some(Node::String(t)) => self.tape.text(self.src, t),
                    _ => return Err(at(path, format_args!("Bad value in numeric range: {}", describe(2)))),
                };
                if top_op != "<" && top_op != "<=" {
                    return Err(at(path, format_args!("Bad numeric range operator: {top_op}")));
                }
                let high = operand(3, top_op)?;
                if items.len() > 4 {
                    return Err(at(path, "Too many terms in numeric range expression"));
                }
                if low.total_cmp(&high).is_ge() {
                    return Err(at(path, "Bottom must be less than top"));
                }
                Ok(Range { low: Some((low, op == ">")), high: Some((high, top_op == "<")) })
            }
            other => Err(at(path, format_args!("Unrecognized numeric range operator: {other}"))),
        }
    }

    fn anything_but(&self, node: usize, path: &str) -> Result<AnythingBut, String> {
        // `{"anything-but": {"<op>": …}}` applies to prefix/suffix/equals-ignore-case/wildcard.
        let (op, operand) = match self.tape.node(node) {
            Node::Object { .. } => {
                let mut members = self.tape.members(self.src, node);
                let Some((op, operand)) = members.next() else {
                    return Err(at(path, "Anything-But expression name not found"));
                };
                if !matches!(op, "equals-ignore-case" | "prefix" | "suffix" | "wildcard") {
                    return Err(at(path, format_args!("Unsupported anything-but pattern: {op}")));
                }
                self.only_key(members, path)?;
                (Some(op), operand)
            }
            _ => (None, node),
        };
        let items: Vec<usize> = match self.tape.node(operand) {
            Node::Array { .. } => self.tape.elements(operand).collect(),
            Node::String(_) | Node::Number { .. } => vec![operand],
            _ => return Err(at(path, "Value of anything-but must be an array or single string/number value")),
        };
        if items.is_empty() {
            return Err(at(path, "Empty arrays are not allowed"));
        }
        let Some(op) = op else {
            let mut strings = Vec::new();
            let mut numbers = Vec::new();
            for &item in &items {
                match self.tape.node(item) {
                    Node::String(t) => strings.push(self.tape.text(self.src, t).into()),
                    Node::Number { start, end } => {
                        numbers.push(self.comparable(Tape::number(self.src, start, end), path)?)
                    }
                    _ => return Err(at(path, "Inside anything but list, start|null|boolean is not supported")),
                }
            }
            return match (strings.is_empty(), numbers.is_empty()) {
                (false, true) => Ok(AnythingBut::Strings(strings)),
                (true, false) => Ok(AnythingBut::Numbers(numbers)),
                _ => Err(at(
                    path,
                    "Inside anything but list, either all values are number or string, mixed type is not supported",
                )),
            };
        };
        let wrong_type = match op {
            "equals-ignore-case" => {
                "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported"
            }
            "wildcard" => "wildcard match pattern must be a string",
            _ => "prefix/suffix match pattern must be a string",
        };
        let mut texts = Vec::with_capacity(items.len());
        for &item in &items {
            let text = self.string(item, path, wrong_type)?;
            if text.is_empty() && matches!(op, "prefix" | "suffix") {
                return Err(at(path, "Null prefix/suffix not allowed"));
            }
            texts.push(text);
        }
        Ok(match op {
            "equals-ignore-case" => AnythingBut::IgnoreCase(texts.into_iter().map(Folded::new).collect()),
            "prefix" => AnythingBut::Prefixes(texts.into_iter().map(Into::into).collect()),
            "suffix" => AnythingBut::Suffixes(texts.into_iter().map(Into::into).collect()),
            _ => AnythingBut::Wildcards(
                texts.into_iter().map(|t| Glob::parse(t).map_err(|e| at(path, e))).collect::<Result<_, _>>()?,
            ),
        })
    }
}

enum Expression {
    Matcher(Matcher),
    Absent,
}

fn capitalised(op: &str) -> String {
    let mut chars = op.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
