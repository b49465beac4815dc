//! How `esm` prints a response, the AWS CLI's way: `--query` (JMESPath) and
//! `--output json|text|table`, ported from the AWS CLI's `formatter.py`, `text.py` and
//! `table.py` so scripts written against `aws lambda …` read ours the same.

use std::collections::HashMap;
use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::Value;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
    Table,
}

/// A compiled `--query`, with its text (kept to restore the key order of what it builds).
#[derive(Debug)]
pub struct Query {
    text: String,
    expression: jmespath::Expression<'static>,
}

impl Query {
    /// Compiles the expression before anything is sent, as the AWS CLI does.
    ///
    /// # Errors
    /// The expression is not valid JMESPath: the parser's message, with a caret under the fault.
    pub fn compile(text: &str) -> Result<Self, String> {
        let expression = jmespath::compile(text).map_err(|e| e.to_string())?;
        Ok(Self { text: text.to_owned(), expression })
    }

    /// Evaluates the expression over `value`.
    ///
    /// JMESPath objects have no key order in this implementation; the AWS CLI's keep the
    /// response's order (the service model's) and a multi-select hash's order as written, so
    /// that order is put back: an object of the response keeps its own order, a multi-select
    /// hash the order its keys are written in, anything else the order keys first appear in the
    /// response.
    ///
    /// # Errors
    /// A runtime error of the expression (a function given the wrong type, …).
    pub fn search(&self, value: &Value) -> Result<Value, String> {
        let result = self.expression.search(value).map_err(|e| e.to_string())?;
        let result = serde_json::to_value(&*result).map_err(|e| e.to_string())?;
        let mut order = KeyOrder { objects: Vec::new(), first_seen: HashMap::new(), query: &self.text };
        order.collect(value);
        Ok(order.apply(result))
    }
}

/// What [`Query::search`] restores key order from.
struct KeyOrder<'a> {
    /// Every object of the response.
    objects: Vec<&'a serde_json::Map<String, Value>>,
    /// Each key's first appearance in the response.
    first_seen: HashMap<&'a str, usize>,
    query: &'a str,
}

impl<'a> KeyOrder<'a> {
    fn collect(&mut self, value: &'a Value) {
        match value {
            Value::Object(fields) => {
                self.objects.push(fields);
                for (key, child) in fields {
                    let next = self.first_seen.len();
                    self.first_seen.entry(key).or_insert(next);
                    self.collect(child);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect(i)),
            _ => {}
        }
    }

    fn apply(&self, value: Value) -> Value {
        match value {
            Value::Object(fields) => {
                let fields: serde_json::Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k, self.apply(v))).collect();
                let same_keys = |source: &&&serde_json::Map<String, Value>| {
                    source.len() == fields.len() && fields.keys().all(|k| source.contains_key(k))
                };
                // The response's object itself (map equality ignores order), else one of its shape.
                let source = self
                    .objects
                    .iter()
                    .find(|s| same_keys(s) && ***s == fields)
                    .or_else(|| self.objects.iter().find(same_keys));
                let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
                if let Some(source) = source {
                    fields.sort_by_key(|(k, _)| source.keys().position(|s| s == k));
                } else if let Some(positions) =
                    fields.iter().map(|(k, _)| hash_key_position(self.query, k)).collect::<Option<Vec<usize>>>()
                {
                    // Every key is written as `key:` in the expression: a multi-select hash.
                    let mut ranked: Vec<(usize, (String, Value))> = positions.into_iter().zip(fields).collect();
                    ranked.sort_by_key(|(position, _)| *position);
                    fields = ranked.into_iter().map(|(_, field)| field).collect();
                } else {
                    fields.sort_by_key(|(k, _)| self.first_seen.get(k.as_str()).copied().unwrap_or(usize::MAX));
                }
                Value::Object(fields.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.apply(v)).collect()),
            other => other,
        }
    }
}

/// Where `key` is written as a multi-select hash key (`{key: …` or `, key: …`, bare or quoted).
fn hash_key_position(query: &str, key: &str) -> Option<usize> {
    let quoted = format!("\"{key}\"");
    [key, quoted.as_str()].into_iter().find_map(|written| {
        query.match_indices(written).map(|(at, _)| at).find(|&at| {
            let before = query[..at].trim_end().chars().next_back();
            let after = query[at + written.len()..].trim_start().chars().next();
            matches!(before, Some('{' | ',')) && after == Some(':')
        })
    })
}

/// `--color`: the AWS CLI colours table output on a terminal (`auto`), always (`on`) or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Color {
    #[default]
    Auto,
    On,
    Off,
}

impl Color {
    fn enabled(self) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }
}

/// Renders `value` the way the AWS CLI renders a response in `format`; `title` is the
/// operation's name (the table's heading). `None` when nothing is printed.
pub fn render(format: OutputFormat, color: Color, title: &str, value: &Value) -> Option<String> {
    match format {
        OutputFormat::Json => json(value),
        OutputFormat::Text => Some(text(value)),
        OutputFormat::Table => table(title, value, terminal_width(), color.enabled()),
    }
}

/// Python's `json.dump(indent=4, ensure_ascii=False)` plus a newline; an empty object (an
/// operation without a response body) prints nothing.
pub fn json(value: &Value) -> Option<String> {
    if value.as_object().is_some_and(serde_json::Map::is_empty) {
        return None;
    }
    let mut out = Vec::new();
    let formatter = PythonJson(serde_json::ser::PrettyFormatter::with_indent(b"    "));
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser).ok()?;
    out.push(b'\n');
    String::from_utf8(out).ok()
}

/// serde_json's pretty printer with floats written as Python writes them (`1e-07`, `1e+20`).
struct PythonJson<'a>(serde_json::ser::PrettyFormatter<'a>);

impl serde_json::ser::Formatter for PythonJson<'_> {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, value: f64) -> std::io::Result<()> {
        writer.write_all(py_float(value).as_bytes())
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// A scalar as Python's `str()` prints it (the AWS CLI's text and table cells).
fn py_str(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => py_float(f),
            _ => n.to_string(),
        },
        // A list or object where a scalar was expected (keys that differ in type between list
        // items): Python prints its `repr`.
        other => py_repr(other),
    }
}

/// Python's `repr()` of a parsed JSON value.
fn py_repr(value: &Value) -> String {
    match value {
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields.iter().map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v))).collect::<Vec<_>>().join(", ")
        ),
        scalar => py_str(scalar),
    }
}

/// Python's `repr(str)`: single quotes unless the text has one and no double quote.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on whole numbers, exponent form
/// from 1e16 up and below 1e-4.
fn py_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "nan".into()
        } else if f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let s = f.to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

const fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

// ---------------------------------------------------------------------------------------------
// --output text (awscli/text.py)

/// The AWS CLI's text output: one line per object of scalars, tab-separated, keys sorted,
/// nested lists and objects on their own lines under their upper-cased key.
pub fn text(value: &Value) -> String {
    let mut out = String::new();
    format_text(value, &mut out, None, None);
    out
}

fn format_text(item: &Value, out: &mut String, identifier: Option<&str>, scalar_keys: Option<&[String]>) {
    match item {
        Value::Object(_) => format_dict(scalar_keys, item, identifier, out),
        Value::Array(items) => format_list(items, identifier, out),
        scalar => {
            out.push_str(&py_str(scalar));
            out.push('\n');
        }
    }
}

fn format_list(items: &[Value], identifier: Option<&str>, out: &mut String) {
    if items.is_empty() {
        return;
    }
    if items.iter().any(Value::is_object) {
        let all_keys = all_scalar_keys(items);
        for element in items {
            format_text(element, out, identifier, Some(&all_keys));
        }
    } else if items.iter().any(Value::is_array) {
        let (scalars, non_scalars): (Vec<&Value>, Vec<&Value>) = items.iter().partition(|v| is_scalar(v));
        if !scalars.is_empty() {
            format_scalar_list(&scalars, identifier, out);
        }
        for non_scalar in non_scalars {
            format_text(non_scalar, out, identifier, None);
        }
    } else {
        format_scalar_list(&items.iter().collect::<Vec<_>>(), identifier, out);
    }
}

fn format_scalar_list(elements: &[&Value], identifier: Option<&str>, out: &mut String) {
    match identifier {
        Some(identifier) => {
            for item in elements {
                let _ = writeln!(out, "{}\t{}", identifier.to_uppercase(), py_str(item));
            }
        }
        None => {
            out.push_str(&elements.iter().map(|v| py_str(v)).collect::<Vec<_>>().join("\t"));
            out.push('\n');
        }
    }
}

fn format_dict(scalar_keys: Option<&[String]>, item: &Value, identifier: Option<&str>, out: &mut String) {
    let Value::Object(fields) = item else { return };
    let mut scalars = Vec::new();
    let mut non_scalars: Vec<(&str, &Value)> = Vec::new();
    match scalar_keys {
        None => {
            let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
            sorted.sort_by_key(|(k, _)| k.as_str());
            for (key, value) in sorted {
                if is_scalar(value) {
                    scalars.push(py_str(value));
                } else {
                    non_scalars.push((key, value));
                }
            }
        }
        Some(keys) => {
            for key in keys {
                scalars.push(fields.get(key).map(py_str).unwrap_or_default());
            }
            let mut remaining: Vec<(&String, &Value)> = fields.iter().filter(|(k, _)| !keys.contains(k)).collect();
            remaining.sort_by_key(|(k, _)| k.as_str());
            non_scalars.extend(remaining.into_iter().map(|(k, v)| (k.as_str(), v)));
        }
    }
    if !scalars.is_empty() {
        if let Some(identifier) = identifier {
            scalars.insert(0, identifier.to_uppercase());
        }
        out.push_str(&scalars.join("\t"));
        out.push('\n');
    }
    for (key, value) in non_scalars {
        format_text(value, out, Some(key), None);
    }
}

fn all_scalar_keys(items: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| o.iter().filter(|(_, v)| is_scalar(v)).map(|(k, _)| k.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

// ---------------------------------------------------------------------------------------------
// --output table (awscli/formatter.py TableFormatter, awscli/table.py MultiTable)

/// The terminal's width when stdout is one, else 80, as the AWS CLI measures it.
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stdout()).map_or(80, |(w, _)| usize::from(w.0))
}

/// Text width as the AWS CLI counts it: East Asian wide, full-width and ambiguous characters
/// take two columns, every other character one.
fn text_len(text: &str) -> usize {
    text.chars().map(|c| if unicode_width::UnicodeWidthChar::width_cjk(c) == Some(2) { 2 } else { 1 }).sum()
}

#[derive(Debug, Default)]
struct Section {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    indent_level: usize,
    max_widths: Vec<usize>,
}

impl Section {
    fn add_header(&mut self, headers: Vec<String>) {
        self.update_max_widths(&headers);
        self.headers = headers;
    }

    fn add_row(&mut self, row: Vec<String>) {
        self.update_max_widths(&row);
        self.rows.push(row);
    }

    fn update_max_widths(&mut self, row: &[String]) {
        if self.max_widths.is_empty() {
            self.max_widths = row.iter().map(|c| text_len(c)).collect();
        } else {
            for (width, cell) in self.max_widths.iter_mut().zip(row) {
                *width = (*width).max(text_len(cell));
            }
        }
    }

    /// Column widths with `padding`, scaled to fill `max_width` (Python's banker's rounding,
    /// then the difference taken off the first columns or given to the last ones).
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn column_widths(&self, padding: usize, max_width: Option<usize>) -> Vec<usize> {
        let unscaled: Vec<usize> = self.max_widths.iter().map(|w| w + padding).collect();
        let Some(max_width) = max_width else { return unscaled };
        let total: usize = unscaled.iter().sum();
        if unscaled.is_empty() || total == 0 {
            return unscaled;
        }
        let scale = max_width as f64 / total as f64;
        let mut scaled: Vec<i64> = unscaled.iter().map(|&w| (scale * w as f64).round_ties_even() as i64).collect();
        let mut off_by = scaled.iter().sum::<i64>() - max_width as i64;
        while off_by != 0 {
            let order: Vec<usize> =
                if off_by < 0 { (0..scaled.len()).rev().collect() } else { (0..scaled.len()).collect() };
            for i in order {
                if off_by > 0 {
                    scaled[i] -= 1;
                    off_by -= 1;
                } else {
                    scaled[i] += 1;
                    off_by += 1;
                }
                if off_by == 0 {
                    break;
                }
            }
        }
        scaled.into_iter().map(|w| w.max(0) as usize).collect()
    }

    fn total_width(&self, padding: usize, outer_padding: usize) -> usize {
        const BORDER: usize = 2;
        let columns: usize = self.column_widths(0, None).iter().map(|w| w + padding).sum();
        let total = columns + BORDER + 2 * outer_padding;
        total.max(text_len(&self.title) + BORDER + 2 * outer_padding)
    }
}

#[derive(Debug, Default)]
struct MultiTable {
    sections: Vec<Section>,
    /// The AWS CLI's colours (cells bright blue, nesting bars dim yellow), as on a terminal.
    color: bool,
}

/// colorama's codes, as the AWS CLI's `ColorizedStyler` writes them.
const BRIGHT_BLUE: &str = "\x1b[1m\x1b[34m";
const DIM_YELLOW: &str = "\x1b[2m\x1b[33m";
const RESET: &str = "\x1b[0m";

impl MultiTable {
    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.sections.push(Section::default());
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    fn new_section(&mut self, title: &str, indent_level: usize) {
        self.sections.push(Section { title: title.to_owned(), indent_level, ..Section::default() });
    }

    fn max_width(&self) -> usize {
        self.sections.iter().map(|s| s.total_width(4, s.indent_level)).max().unwrap_or(0)
    }

    fn render(mut self, terminal_width: usize) -> String {
        let mut max_width = self.max_width();
        if max_width > terminal_width {
            // Too wide: every one-row section with headers becomes `header | value` rows.
            for section in &mut self.sections {
                if section.rows.len() == 1 && !section.headers.is_empty() {
                    let mut vertical = Section {
                        title: std::mem::take(&mut section.title),
                        indent_level: section.indent_level,
                        ..Section::default()
                    };
                    for (header, cell) in section.headers.iter().zip(&section.rows[0]) {
                        vertical.add_row(vec![header.clone(), cell.clone()]);
                    }
                    *section = vertical;
                }
            }
            max_width = self.max_width();
        }
        let mut out = "-".repeat(max_width);
        out.push('\n');
        for section in &self.sections {
            render_section(section, max_width, self.color, &mut out);
        }
        out
    }
}

/// One line of a section, inside the `|` of the sections it is nested in.
fn indented(out: &mut String, indent_level: usize, color: bool, line: &str) {
    let bar = if color { format!("{DIM_YELLOW}|{RESET}") } else { "|".to_owned() };
    let _ = writeln!(out, "{bars}{line}{bars}", bars = bar.repeat(indent_level));
}

#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
fn center(text: &str, length: usize, left_edge: &str, right_edge: &str) -> String {
    // Signed, as in Python: a text wider than its column shifts the right edge.
    let text_length = text_len(text) as i64;
    let start = (length as i64 / 2) - (text_length / 2) - 1;
    let so_far = left_edge.len() as i64 + start + text_length;
    let right = length as i64 - right_edge.len() as i64 - so_far;
    let spaces = |n: i64| " ".repeat(n.max(0) as usize);
    format!("{left_edge}{}{text}{}{right_edge}", spaces(start), spaces(right))
}

/// `text` (possibly coloured) left-aligned in `length` columns; `text_length` is its width
/// without colour codes.
fn align_left(text: &str, text_length: usize, length: usize, left_edge: &str, right_edge: &str) -> String {
    let padding = if length >= text_length + 2 + left_edge.len() + right_edge.len() { 2 } else { 0 };
    let so_far = left_edge.len() + padding + text_length;
    let right = length.saturating_sub(so_far).saturating_sub(right_edge.len());
    format!("{left_edge}{}{text}{}{right_edge}", " ".repeat(padding), " ".repeat(right))
}

fn line_break(widths: &[usize]) -> String {
    widths
        .iter()
        .enumerate()
        .map(
            |(i, &w)| {
                if i == 0 {
                    format!("+{}+", "-".repeat(w.saturating_sub(2)))
                } else {
                    format!("{}+", "-".repeat(w - 1))
                }
            },
        )
        .collect()
}

fn render_section(section: &Section, max_width: usize, color: bool, out: &mut String) {
    let level = section.indent_level;
    let max_width = max_width.saturating_sub(level * 2);
    if !section.title.is_empty() {
        indented(out, level, color, &center(&section.title, max_width, "|", "|"));
        if section.headers.is_empty() && section.rows.is_empty() {
            indented(out, level, color, &format!("+{}+", "-".repeat(max_width.saturating_sub(2))));
        }
    }
    if !section.headers.is_empty() {
        let widths = section.column_widths(4, Some(max_width));
        let line: String = widths
            .iter()
            .zip(&section.headers)
            .enumerate()
            .map(|(i, (&w, h))| center(h, w, if i == 0 { "|" } else { "" }, "|"))
            .collect();
        indented(out, level, color, &line_break(&widths));
        indented(out, level, color, &line);
    }
    if section.rows.is_empty() {
        return;
    }
    let widths = section.column_widths(4, Some(max_width));
    if widths.is_empty() {
        return;
    }
    indented(out, level, color, &line_break(&widths));
    for row in &section.rows {
        let line: String = widths
            .iter()
            .zip(row)
            .enumerate()
            .map(|(i, (&w, cell))| {
                let styled = if color { format!("{BRIGHT_BLUE}{cell}{RESET}") } else { cell.clone() };
                align_left(&styled, text_len(cell), w, if i == 0 { "|" } else { "" }, "|")
            })
            .collect();
        indented(out, level, color, &line);
    }
    indented(out, level, color, &line_break(&widths));
}

/// The AWS CLI's table output of `value` under the heading `title`, fitted to `width`; `None`
/// for an empty response (nothing is printed).
pub fn table(title: &str, value: &Value, width: usize, color: bool) -> Option<String> {
    let mut table = MultiTable { color, ..MultiTable::default() };
    build_table(&mut table, Some(title), value, 0).then(|| table.render(width))
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn build_table(table: &mut MultiTable, title: Option<&str>, current: &Value, indent_level: usize) -> bool {
    // Python's `if not current`.
    if is_empty(current) {
        return false;
    }
    if let Some(title) = title {
        table.new_section(title, indent_level);
    }
    match current {
        Value::Array(items) => {
            if items[0].is_object() {
                sub_table_from_list(table, items, indent_level, title.unwrap_or_default());
            } else {
                for item in items {
                    match item {
                        Value::Array(row) if row.iter().all(is_scalar) => {
                            table.current().add_row(row.iter().map(py_str).collect());
                        }
                        // The AWS CLI iterates an object here as Python does, over its keys
                        // (all strings): the row is the keys.
                        Value::Object(fields) => table.current().add_row(fields.keys().cloned().collect()),
                        Value::Array(_) => {
                            build_table(table, None, item, 0);
                        }
                        scalar => table.current().add_row(vec![py_str(scalar)]),
                    }
                }
            }
        }
        Value::Object(_) => sub_table_from_dict(table, current, indent_level),
        // A scalar result (`--query` picked one value): the AWS CLI opens the section and
        // prints no row for it.
        _ => {}
    }
    true
}

fn scalar_keys(current: &serde_json::Map<String, Value>) -> (Vec<String>, Vec<String>) {
    let (mut headers, mut more): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for (key, value) in current {
        if is_scalar(value) { headers.push(key.clone()) } else { more.push(key.clone()) }
    }
    headers.sort();
    more.sort();
    (headers, more)
}

fn sub_table_from_dict(table: &mut MultiTable, current: &Value, indent_level: usize) {
    let Value::Object(fields) = current else { return };
    let (headers, more) = scalar_keys(fields);
    if headers.len() == 1 {
        let value = py_str(&fields[&headers[0]]);
        table.current().add_row(vec![headers[0].clone(), value]);
    } else if !headers.is_empty() {
        let row = headers.iter().map(|h| py_str(&fields[h])).collect();
        table.current().add_header(headers);
        table.current().add_row(row);
    }
    for key in more {
        build_table(table, Some(&key), &fields[&key], indent_level + 1);
    }
}

fn sub_table_from_list(table: &mut MultiTable, items: &[Value], indent_level: usize, title: &str) {
    let mut headers = Vec::new();
    let mut more = Vec::new();
    for item in items.iter().filter_map(Value::as_object) {
        let (h, m) = scalar_keys(item);
        headers.extend(h);
        more.extend(m);
    }
    headers.sort();
    headers.dedup();
    more.sort();
    more.dedup();
    table.current().add_header(headers.clone());
    for (i, element) in items.iter().enumerate() {
        if i > 0 && !more.is_empty() {
            table.new_section(title, indent_level);
            table.current().add_header(headers.clone());
        }
        let row = headers.iter().map(|h| element.get(h).map(py_str).unwrap_or_default()).collect();
        table.current().add_row(row);
        for key in &more {
            if let Some(value) = element.get(key) {
                build_table(table, Some(key), value, indent_level + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn golden(name: &str) -> String {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The files `tests/golden/render-with-aws-cli.py` made with the AWS CLI's own formatters.
    #[test]
    fn text_and_table_match_the_aws_cli_byte_for_byte() {
        let query = "EventSourceMappings[].{Topic: Topics[0], UUID: UUID, State: State}";
        let cases = [
            ("get-msk.table", "get-msk.json", "GetEventSourceMapping", OutputFormat::Table, None),
            ("get-msk.text", "get-msk.json", "GetEventSourceMapping", OutputFormat::Text, None),
            ("list-msk.table", "list-msk.json", "ListEventSourceMappings", OutputFormat::Table, None),
            ("list-msk.text", "list-msk.json", "ListEventSourceMappings", OutputFormat::Text, None),
            (
                "create-self-managed.table",
                "create-self-managed.json",
                "CreateEventSourceMapping",
                OutputFormat::Table,
                None,
            ),
            (
                "create-self-managed.text",
                "create-self-managed.json",
                "CreateEventSourceMapping",
                OutputFormat::Text,
                None,
            ),
            ("list-msk-query.table", "list-msk.json", "ListEventSourceMappings", OutputFormat::Table, Some(query)),
            ("list-msk-query.text", "list-msk.json", "ListEventSourceMappings", OutputFormat::Text, Some(query)),
        ];
        let colored = table(
            "CreateEventSourceMapping",
            &serde_json::from_str(&golden("create-self-managed.json")).unwrap(),
            80,
            true,
        );
        assert_eq!(colored.unwrap_or_default(), golden("create-self-managed.table-color"), "--color on");
        for (expected, source, operation, format, query) in cases {
            let mut response: Value = serde_json::from_str(&golden(source)).unwrap();
            if let Some(query) = query {
                response = Query::compile(query).unwrap().search(&response).unwrap();
            }
            let rendered = match format {
                OutputFormat::Table => table(operation, &response, 80, false),
                _ => render(format, Color::Off, operation, &response),
            };
            assert_eq!(rendered.unwrap_or_default(), golden(expected), "{expected}");
        }
    }

    /// Random responses (`tests/golden/formatter-corpus.jsonl`, made by the same script) with
    /// the AWS CLI's table, text and `--query` JSON output for each.
    #[test]
    fn random_responses_print_as_the_aws_cli_prints_them() {
        for (line, case) in golden("formatter-corpus.jsonl").lines().enumerate() {
            let case: Value = serde_json::from_str(case).unwrap();
            let response = &case["response"];
            let expected = |key: &str| case[key].as_str().unwrap().to_owned();
            assert_eq!(
                table("SomeOperation", response, 80, false).unwrap_or_default(),
                expected("table"),
                "line {line}"
            );
            assert_eq!(text(response), expected("text"), "line {line}");
            let query = case["query"].as_str().unwrap();
            let result = Query::compile(query).unwrap().search(response).unwrap();
            assert_eq!(json(&result).unwrap_or_else(|| "{}\n".into()), expected("json"), "line {line}: {query}");
        }
    }

    #[test]
    fn floats_print_as_python_does() {
        assert_eq!(py_float(1_580_331_394.363), "1580331394.363");
        assert_eq!(py_float(100.0), "100.0");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(0.00001), "1e-05");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(null)), "None");
    }

    #[test]
    fn query_keeps_the_response_order_and_the_written_hash_order() {
        let doc = json!({"Items": [{"UUID": "u", "State": "Enabled", "BatchSize": 1}]});
        let picked = Query::compile("Items[0]").unwrap().search(&doc).unwrap();
        assert_eq!(picked.as_object().unwrap().keys().collect::<Vec<_>>(), ["UUID", "State", "BatchSize"]);
        let hash = Query::compile("Items[0].{z: State, a: UUID}").unwrap().search(&doc).unwrap();
        assert_eq!(hash.as_object().unwrap().keys().collect::<Vec<_>>(), ["z", "a"]);
        assert!(Query::compile("Items[").is_err());
    }
}
