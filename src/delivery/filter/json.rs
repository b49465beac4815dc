//! A strict JSON parser into a flat, reusable tape, for filter patterns and record values.
//!
//! Why not `serde_json::Value`: the filter grammar compares bare numbers by their *text* (AWS:
//! "300, 300.0 and 3.0e2 are not considered equal"), which `serde_json` discards, and the hot
//! path wants no allocation per record: a [`Tape`] keeps its buffers between parses, strings
//! without escapes point into the source, and only escaped strings are copied (into one shared
//! buffer).
//!
//! The grammar is RFC 8259, strictly: no comments, no trailing commas, no leading zeros, no
//! `NaN`, nothing after the value but whitespace, and no lone UTF-16 surrogates in `\u` escapes
//! (a Rust `str` cannot hold them). Text that breaks any rule is "not JSON", which for a record
//! value means it is filtered as a plain string.

use std::fmt;

/// Deepest nesting accepted; Jackson's default limit (`StreamReadConstraints`, 1000), so that a
/// value AWS would parse as JSON is parsed as JSON here too.
pub(crate) const MAX_DEPTH: usize = 1000;

/// Where a string's text lives: in the parsed source, or (when it had escapes) in the tape's
/// buffer of unescaped text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Text {
    start: u32,
    end: u32,
    unescaped: bool,
}

/// One node of the tape. Containers record where their subtree ends, so a reader can skip a
/// value without looking inside it. An object's children alternate key ([`Node::String`]) and
/// value (one subtree each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Null,
    True,
    False,
    /// The number's text, as written (byte range in the source).
    Number {
        start: u32,
        end: u32,
    },
    String(Text),
    /// `end` is the index of the first node after the array's subtree.
    Array {
        end: u32,
    },
    /// `end` is the index of the first node after the object's subtree.
    Object {
        end: u32,
    },
}

/// Why a text is not JSON, and where (byte offset in the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub offset: usize,
    pub message: &'static str,
}

impl JsonError {
    /// 1-based line and column (in characters) of the error in `src`.
    pub fn line_column(&self, src: &str) -> (usize, usize) {
        let mut at = self.offset.min(src.len());
        while !src.is_char_boundary(at) {
            at -= 1;
        }
        let before = &src[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

/// A parsed JSON text: nodes in document order, starting with the root at index 0.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    nodes: Vec<Node>,
    unescaped: String,
    /// Open containers while parsing: (node index, is object).
    stack: Vec<(u32, bool)>,
}

impl Tape {
    /// Parses `src` as exactly one JSON text, replacing what the tape held.
    pub fn parse(&mut self, src: &str) -> Result<(), JsonError> {
        self.nodes.clear();
        self.unescaped.clear();
        self.stack.clear();
        if u32::try_from(src.len()).is_err() {
            return Err(JsonError { offset: 0, message: "text too large" });
        }
        let mut p = Parser { b: src.as_bytes(), pos: 0 };
        p.skip_ws();
        'value: loop {
            // Expecting a value.
            match p.peek() {
                Some(b'{') => {
                    p.pos += 1;
                    self.open(&p, true)?;
                    p.skip_ws();
                    if p.peek() == Some(b'}') {
                        p.pos += 1;
                        self.close();
                    } else {
                        self.key(&mut p)?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    p.pos += 1;
                    self.open(&p, false)?;
                    p.skip_ws();
                    if p.peek() == Some(b']') {
                        p.pos += 1;
                        self.close();
                    } else {
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let text = self.string(&mut p)?;
                    self.nodes.push(Node::String(text));
                }
                Some(b't') => self.literal(&mut p, b"true", Node::True)?,
                Some(b'f') => self.literal(&mut p, b"false", Node::False)?,
                Some(b'n') => self.literal(&mut p, b"null", Node::Null)?,
                Some(b'-' | b'0'..=b'9') => {
                    let start = p.pos;
                    p.number()?;
                    self.nodes.push(Node::Number { start: start as u32, end: p.pos as u32 });
                }
                Some(_) => return Err(p.error("expected a value")),
                None => return Err(p.error("unexpected end of text, expected a value")),
            }
            // After a value: close containers or move to the next member.
            loop {
                p.skip_ws();
                let Some(&(_, is_object)) = self.stack.last() else {
                    if p.pos != p.b.len() {
                        return Err(p.error("unexpected text after the JSON value"));
                    }
                    return Ok(());
                };
                match p.peek() {
                    Some(b',') => {
                        p.pos += 1;
                        p.skip_ws();
                        if is_object {
                            self.key(&mut p)?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if is_object => {
                        p.pos += 1;
                        self.close();
                    }
                    Some(b']') if !is_object => {
                        p.pos += 1;
                        self.close();
                    }
                    Some(_) if is_object => return Err(p.error("expected ',' or '}'")),
                    Some(_) => return Err(p.error("expected ',' or ']'")),
                    None => return Err(p.error("unexpected end of text")),
                }
            }
        }
    }

    fn open(&mut self, p: &Parser<'_>, is_object: bool) -> Result<(), JsonError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(p.error("nesting too deep"));
        }
        self.stack.push((self.nodes.len() as u32, is_object));
        self.nodes.push(if is_object { Node::Object { end: 0 } } else { Node::Array { end: 0 } });
        Ok(())
    }

    fn close(&mut self) {
        if let Some((at, _)) = self.stack.pop() {
            let end = self.nodes.len() as u32;
            if let Some(Node::Object { end: e } | Node::Array { end: e }) = self.nodes.get_mut(at as usize) {
                *e = end;
            }
        }
    }

    /// An object member's key and the `:` after it; leaves the parser at the value.
    fn key(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError> {
        if p.peek() != Some(b'"') {
            return Err(p.error("expected a string key"));
        }
        let text = self.string(p)?;
        self.nodes.push(Node::String(text));
        p.skip_ws();
        if p.peek() != Some(b':') {
            return Err(p.error("expected ':'"));
        }
        p.pos += 1;
        p.skip_ws();
        Ok(())
    }

    fn literal(&mut self, p: &mut Parser<'_>, word: &[u8], node: Node) -> Result<(), JsonError> {
        if p.b[p.pos..].starts_with(word) {
            p.pos += word.len();
            self.nodes.push(node);
            Ok(())
        } else {
            Err(p.error("invalid literal"))
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self, p: &mut Parser<'_>) -> Result<Text, JsonError> {
        p.pos += 1;
        let start = p.pos;
        // Fast path: no escapes, the text stays in the source.
        p.pos += p.b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(p.b.len() - start);
        match p.peek() {
            Some(b'"') => {
                let end = p.pos;
                p.pos += 1;
                return Ok(Text { start: start as u32, end: end as u32, unescaped: false });
            }
            Some(b'\\') => {}
            Some(_) => return Err(p.error("control character in string")),
            None => return Err(p.error("unterminated string")),
        }
        let out_start = self.unescaped.len();
        // The source is a `str`, and we only split it at ASCII bytes, so every slice is valid.
        self.unescaped.push_str(p.slice(start, p.pos));
        loop {
            let run = p.pos;
            p.pos += p.b[run..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(p.b.len() - run);
            self.unescaped.push_str(p.slice(run, p.pos));
            match p.peek() {
                Some(b'"') => {
                    p.pos += 1;
                    let end = self.unescaped.len();
                    if u32::try_from(end).is_err() {
                        return Err(p.error("text too large"));
                    }
                    return Ok(Text { start: out_start as u32, end: end as u32, unescaped: true });
                }
                Some(b'\\') => {
                    p.pos += 1;
                    let c = match p.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            p.pos += 1;
                            let hi = p.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !p.b[p.pos..].starts_with(b"\\u") {
                                    return Err(p.error("lone surrogate in \\u escape"));
                                }
                                p.pos += 2;
                                let lo = p.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(p.error("lone surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(p.error("lone surrogate in \\u escape"));
                            } else {
                                hi
                            };
                            // Surrogates were excluded above, so this is a scalar value.
                            self.unescaped.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            continue;
                        }
                        _ => return Err(p.error("invalid escape")),
                    };
                    p.pos += 1;
                    self.unescaped.push(c);
                }
                Some(_) => return Err(p.error("control character in string")),
                None => return Err(p.error("unterminated string")),
            }
        }
    }

    pub fn node(&self, i: usize) -> Node {
        self.nodes.get(i).copied().unwrap_or(Node::Null)
    }

    /// Index of the first node after the subtree rooted at `i`.
    pub fn skip(&self, i: usize) -> usize {
        match self.node(i) {
            Node::Array { end } | Node::Object { end } => end as usize,
            _ => i + 1,
        }
    }

    /// A string node's text; `src` must be the text this tape was parsed from.
    pub fn text<'a>(&'a self, src: &'a str, t: Text) -> &'a str {
        let (from, start, end) = if t.unescaped {
            (self.unescaped.as_str(), t.start as usize, t.end as usize)
        } else {
            (src, t.start as usize, t.end as usize)
        };
        from.get(start..end).unwrap_or_default()
    }

    /// A number node's text; `src` must be the text this tape was parsed from.
    pub fn number(src: &str, start: u32, end: u32) -> &str {
        src.get(start as usize..end as usize).unwrap_or_default()
    }

    /// The (key text, value index) members of the object at `i`.
    pub fn members<'a>(&'a self, src: &'a str, i: usize) -> Members<'a> {
        let end = match self.node(i) {
            Node::Object { end } => end as usize,
            _ => i + 1,
        };
        Members { tape: self, src, at: i + 1, end }
    }

    /// The element indexes of the array at `i`.
    pub fn elements(&self, i: usize) -> Elements<'_> {
        let end = match self.node(i) {
            Node::Array { end } => end as usize,
            _ => i + 1,
        };
        Elements { tape: self, at: i + 1, end }
    }
}

#[derive(Debug)]
pub(crate) struct Members<'a> {
    tape: &'a Tape,
    src: &'a str,
    at: usize,
    end: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let key = match self.tape.node(self.at) {
            Node::String(t) => self.tape.text(self.src, t),
            _ => "",
        };
        let value = self.at + 1;
        self.at = self.tape.skip(value);
        Some((key, value))
    }
}

#[derive(Debug)]
pub(crate) struct Elements<'a> {
    tape: &'a Tape,
    at: usize,
    end: usize,
}

impl Iterator for Elements<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.at >= self.end {
            return None;
        }
        let element = self.at;
        self.at = self.tape.skip(element);
        Some(element)
    }
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn error(&self, message: &'static str) -> JsonError {
        JsonError { offset: self.pos, message }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn slice(&self, start: usize, end: usize) -> &str {
        // Callers only cut at ASCII bytes of a `str`, so this never fails; an empty string is
        // a harmless fallback that cannot be reached.
        std::str::from_utf8(&self.b[start..end]).unwrap_or_default()
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("leading zero in number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Tape, JsonError> {
        let mut tape = Tape::default();
        tape.parse(src).map(|()| tape)
    }

    #[test]
    fn accepts_what_rfc_8259_accepts() {
        for ok in [
            "0",
            "-0",
            "1.5e-3",
            "-12E+2",
            "\"\"",
            " \"a\\u00e9\\ud83d\\ude00\\n\" ",
            "true",
            "null",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}],\"x\"]",
            "{\"a\":{\"b\":null},\"a\":1}",
            "\t\r\n{ \"k\" : [ 1 , 2 ] }\n",
        ] {
            assert!(parse(ok).is_ok(), "{ok:?} should parse");
        }
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        for bad in [
            "",
            " ",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "NaN",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "'a'",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"tab\there\"",
            "[1] [2]",
            "{\"a\" 1}",
            "[",
            "{\"a\":",
            "tru",
            "nul",
            "// c\n1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn depth_is_limited_like_jackson() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&deep).err().map(|e| e.message), Some("nesting too deep"));
    }

    #[test]
    fn tape_walks_objects_arrays_and_escaped_text() {
        let src = r#"{"a":[1,{"b":"x\"y"},[]],"c\u0041":-2.50e1,"d":true}"#;
        let tape = parse(src).unwrap();
        let members: Vec<_> = tape.members(src, 0).map(|(k, v)| (k.to_owned(), tape.node(v))).collect();
        assert_eq!(members.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "cA", "d"]);
        let Node::Number { start, end } = members[1].1 else { panic!("number expected") };
        assert_eq!(Tape::number(src, start, end), "-2.50e1");
        assert_eq!(members[2].1, Node::True);
        let a = tape.members(src, 0).next().unwrap().1;
        let elements: Vec<_> = tape.elements(a).collect();
        assert_eq!(elements.len(), 3);
        let (_, b) = tape.members(src, elements[1]).next().unwrap();
        let Node::String(t) = tape.node(b) else { panic!("string expected") };
        assert_eq!(tape.text(src, t), "x\"y");
        assert_eq!(tape.elements(elements[2]).count(), 0);
    }

    #[test]
    fn errors_know_their_line_and_column() {
        let src = "{\n  \"a\": [1,,2]\n}";
        let err = parse(src).unwrap_err();
        assert_eq!(err.line_column(src), (2, 11));
    }
}
