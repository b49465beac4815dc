//! What one entry of a pattern's value list (`"Name": [ <entry>, … ]`) does to one leaf value of
//! the event, with event-ruler's typing rules: string operators (`prefix`, `suffix`,
//! `equals-ignore-case`, `wildcard`, `cidr`) only ever match strings, `numeric` only matches JSON
//! numbers, and `anything-but` matches every value — of any type — that is not excluded.

use std::io::Write as _;
use std::net::IpAddr;

/// One leaf value of the event. Numbers keep their text: an exact match compares text (AWS:
/// "300, 300.0 and 3.0e2 are not considered equal"), `numeric` compares values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Num(&'a str),
    True,
    False,
    Null,
}

/// A literal that is not a string or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Literal {
    True,
    False,
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    /// `"x"`. A string that is an IP address literal matches any spelling of that address, as
    /// event-ruler turns such strings into single-address ranges.
    ExactString {
        text: Box<str>,
        ip: Option<IpAddr>,
    },
    /// A bare number, compared by its JSON text.
    ExactNumber(Box<str>),
    ExactLiteral(Literal),
    Prefix(Box<str>),
    Suffix(Box<str>),
    EqualsIgnoreCase(Folded),
    PrefixIgnoreCase(Folded),
    SuffixIgnoreCase(Folded),
    Wildcard(Glob),
    Numeric(Range),
    Cidr(Cidr),
    /// `{"exists": true}`: any leaf value, `null` included.
    Exists,
    AnythingBut(AnythingBut),
}

/// The values an `anything-but` excludes; a list holds one kind only.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnythingBut {
    Strings(Vec<Box<str>>),
    /// Compared numerically: `{"anything-but": 100}` also excludes `100.0`.
    Numbers(Vec<f64>),
    Prefixes(Vec<Box<str>>),
    Suffixes(Vec<Box<str>>),
    IgnoreCase(Vec<Folded>),
    Wildcards(Vec<Glob>),
}

impl Matcher {
    pub fn matches(&self, value: Scalar<'_>) -> bool {
        match (self, value) {
            (Self::Exists, _) => true,
            (Self::ExactString { text, ip }, Scalar::Str(s)) => {
                **text == *s || ip.is_some_and(|ip| parse_ip(s) == Some(ip))
            }
            (Self::ExactNumber(text), Scalar::Num(n)) => **text == *n,
            (Self::ExactLiteral(l), v) => matches!(
                (l, v),
                (Literal::True, Scalar::True) | (Literal::False, Scalar::False) | (Literal::Null, Scalar::Null)
            ),
            (Self::Prefix(p), Scalar::Str(s)) => s.starts_with(&**p),
            (Self::Suffix(p), Scalar::Str(s)) => s.ends_with(&**p),
            (Self::EqualsIgnoreCase(f), Scalar::Str(s)) => f.matches(s, Anchor::Whole),
            (Self::PrefixIgnoreCase(f), Scalar::Str(s)) => f.matches(s, Anchor::Start),
            (Self::SuffixIgnoreCase(f), Scalar::Str(s)) => f.matches(s, Anchor::End),
            (Self::Wildcard(g), Scalar::Str(s)) => g.matches(s),
            (Self::Numeric(r), Scalar::Num(n)) => comparable(n).is_some_and(|v| r.contains(v)),
            (Self::Cidr(c), Scalar::Str(s)) => parse_ip(s).is_some_and(|ip| c.contains(ip)),
            (Self::AnythingBut(a), v) => !a.excludes(v),
            _ => false,
        }
    }
}

impl AnythingBut {
    fn excludes(&self, value: Scalar<'_>) -> bool {
        match (self, value) {
            (Self::Strings(list), Scalar::Str(s)) => list.iter().any(|x| **x == *s),
            (Self::Numbers(list), Scalar::Num(n)) => {
                comparable(n).is_some_and(|v| list.iter().any(|x| x.total_cmp(&v).is_eq()))
            }
            (Self::Prefixes(list), Scalar::Str(s)) => list.iter().any(|p| s.starts_with(&**p)),
            (Self::Suffixes(list), Scalar::Str(s)) => list.iter().any(|p| s.ends_with(&**p)),
            (Self::IgnoreCase(list), Scalar::Str(s)) => list.iter().any(|f| f.matches(s, Anchor::Whole)),
            (Self::Wildcards(list), Scalar::Str(s)) => list.iter().any(|g| g.matches(s)),
            _ => false,
        }
    }
}

/// A numeric interval; `None` bounds are event-ruler's ±`Double.MAX_VALUE`, which every finite
/// number satisfies. Compared with IEEE total order, as event-ruler compares the bits of doubles
/// (so `-0` sorts below `0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub low: Option<(f64, bool)>,
    pub high: Option<(f64, bool)>,
}

impl Range {
    /// `(value, open)` bounds: open excludes the bound itself.
    fn contains(&self, v: f64) -> bool {
        let above = self.low.is_none_or(|(lo, open)| {
            let c = v.total_cmp(&lo);
            c.is_gt() || (!open && c.is_eq())
        });
        let below = self.high.is_none_or(|(hi, open)| {
            let c = v.total_cmp(&hi);
            c.is_lt() || (!open && c.is_eq())
        });
        above && below
    }
}

/// An IP network (`{"cidr": "10.0.0.0/24"}`), both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `v6/n` with event-ruler's rules (and messages): an IPv4 mask must
    /// be below 32 and an IPv6 mask below 128.
    pub fn parse(text: &str) -> Result<Self, String> {
        // Java's `split("/")` drops trailing empty parts, so "10.0.0.0/" has one part.
        let parts: Vec<&str> = text.trim_end_matches('/').split('/').collect();
        let [ip, bits] = parts[..] else {
            return Err("Malformed CIDR, one '/' required".into());
        };
        let bits: i64 = java_parse_int(bits).ok_or("Malformed CIDR, mask bits must be an integer")?;
        if bits < 0 {
            return Err("Malformed CIDR, mask bits must not be negative".into());
        }
        let base = if looks_like_ip(ip) {
            parse_ip(ip).ok_or_else(|| format!("Invalid IP address: {ip}"))?
        } else {
            return Err(format!("Nonstandard IP address: {ip}"));
        };
        match base {
            IpAddr::V4(_) if bits > 31 => Err("IPv4 mask bits must be < 32".into()),
            IpAddr::V6(_) if bits > 127 => Err("IPv6 mask bits must be < 128".into()),
            _ => Ok(Self { base, bits: bits as u8 }),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `Integer.parseInt`: optional sign, decimal digits, 32-bit range.
fn java_parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i32>().ok().map(i64::from)
}

/// event-ruler only treats strings shaped like `d+.d+.d+.d+` or `[0-9a-fA-F:]*:[0-9a-fA-F:]*`
/// as addresses (its guard against DNS look-ups).
fn looks_like_ip(s: &str) -> bool {
    let v4 = {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let v6 = s.contains(':') && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    v4 || v6
}

/// An address literal as Java's `InetAddress` reads it: an IPv4-mapped IPv6 address is the IPv4
/// address.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    if !looks_like_ip(s) {
        return None;
    }
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// Where an ignore-case comparison is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Whole,
    Start,
    End,
}

/// A string compiled for case-insensitive comparison the way event-ruler does it: each pattern
/// character matches its lower-case or its upper-case form (which may differ in length, e.g.
/// `ß`/`SS`), and nothing else — no Unicode normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Folded {
    chars: Vec<(Box<str>, Option<Box<str>>)>,
}

impl Folded {
    pub fn new(pattern: &str) -> Self {
        let chars = pattern
            .chars()
            .map(|c| {
                let lower: String = c.to_lowercase().collect();
                let upper: String = c.to_uppercase().collect();
                if lower == upper {
                    (lower.into_boxed_str(), None)
                } else {
                    (lower.into_boxed_str(), Some(upper.into_boxed_str()))
                }
            })
            .collect();
        Self { chars }
    }

    fn matches(&self, text: &str, anchor: Anchor) -> bool {
        let n = self.chars.len();
        // Depth-first over the (rare) positions where both forms of a character fit; the stack
        // only allocates when that happens.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let (mut i, mut pos) = (0, if anchor == Anchor::End { text.len() } else { 0 });
        loop {
            let advanced = if i == n {
                let done = match anchor {
                    Anchor::Whole => pos == text.len(),
                    Anchor::Start | Anchor::End => true,
                };
                if done {
                    return true;
                }
                false
            } else {
                let (a, b) = if anchor == Anchor::End { &self.chars[n - 1 - i] } else { &self.chars[i] };
                let fits = |form: &str| {
                    if anchor == Anchor::End { text[..pos].ends_with(form) } else { text[pos..].starts_with(form) }
                };
                let step = |form: &str| if anchor == Anchor::End { pos - form.len() } else { pos + form.len() };
                let first = fits(a);
                let second = b.as_deref().filter(|b| fits(b));
                match (first, second) {
                    (true, Some(b)) => {
                        stack.push((i + 1, step(b)));
                        pos = step(a);
                        true
                    }
                    (true, None) => {
                        pos = step(a);
                        true
                    }
                    (false, Some(b)) => {
                        pos = step(b);
                        true
                    }
                    (false, None) => false,
                }
            };
            if advanced {
                i += 1;
            } else if let Some((ni, np)) = stack.pop() {
                (i, pos) = (ni, np);
            } else {
                return false;
            }
        }
    }
}

/// A `wildcard` pattern: `*` matches any run of characters (even none); `\*` and `\\` are a
/// literal star and backslash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    /// The literal pieces between stars: one more than the number of stars.
    pieces: Vec<Box<str>>,
}

impl Glob {
    /// Parses with event-ruler's rules and messages; positions count bytes of the value as
    /// event-ruler sees it, inside its quotes.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let bytes = pattern.as_bytes();
        let mut pieces = Vec::new();
        let mut piece = String::new();
        let mut rest = pattern.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '*' => {
                    if bytes.get(i + 1) == Some(&b'*') {
                        return Err(format!("Consecutive wildcard characters at pos {}", i + 1));
                    }
                    pieces.push(std::mem::take(&mut piece).into_boxed_str());
                }
                '\\' => match rest.peek() {
                    Some(&(_, e @ ('*' | '\\'))) => {
                        piece.push(e);
                        rest.next();
                    }
                    _ => return Err(format!("Invalid escape character at pos {}", i + 1)),
                },
                c => piece.push(c),
            }
        }
        pieces.push(piece.into_boxed_str());
        Ok(Self { pieces })
    }

    fn matches(&self, text: &str) -> bool {
        let [first, middle @ .., last] = &self.pieces[..] else {
            return self.pieces.first().is_some_and(|p| **p == *text);
        };
        if text.len() < first.len() + last.len() || !text.starts_with(&**first) || !text.ends_with(&**last) {
            return false;
        }
        // Leftmost placement of each middle piece is optimal for star-only globs.
        let mut rest = &text[first.len()..text.len() - last.len()];
        for piece in middle {
            match rest.find(&**piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The value of a JSON number, if event-ruler can compare it: finite, and exactly the decimal
/// that the nearest double prints as (`BigDecimal.valueOf(d).compareTo(text) == 0`). So `0.1`
/// and `1e-320` compare, `0.30000000000000001` and `1e400` do not (they only match exactly).
pub(crate) fn comparable(text: &str) -> Option<f64> {
    let v: f64 = text.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    let exact = Decimal::of(text.as_bytes())?;
    // A normal double holds any decimal of up to 15 significant digits exactly enough to give it
    // back (DBL_DIG), so such a number is its own shortest form: skip the formatting below.
    if exact.len <= 15 && (v.is_normal() || (v == 0.0 && exact.len == 0)) {
        return Some(v);
    }
    is_shortest(v, &exact).then_some(v)
}

/// Whether `exact` is the decimal `v` prints as (shortest round-trip digits).
fn is_shortest(v: f64, exact: &Decimal) -> bool {
    // Formatted into a stack buffer: no allocation.
    let mut buf = [0u8; 40];
    let mut cursor = &mut buf[..];
    if write!(cursor, "{v:e}").is_err() {
        return false;
    }
    let left = cursor.len();
    Decimal::of(&buf[..buf.len() - left]).is_some_and(|shortest| shortest == *exact)
}

/// A decimal reduced to sign, significant digits and exponent, for exact comparison. Numbers with
/// more significant digits than fit can never equal a double's shortest form (at most 17).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: [u8; 24],
    len: usize,
    /// value = 0.d1d2d3… × 10^exponent
    exponent: i64,
}

impl Decimal {
    fn of(text: &[u8]) -> Option<Self> {
        let (negative, text) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let (mantissa, exp) = match text.iter().position(|&b| b == b'e' || b == b'E') {
            Some(at) => (&text[..at], parse_exponent(&text[at + 1..])),
            None => (text, 0),
        };
        let int_len = mantissa.iter().position(|&b| b == b'.').unwrap_or(mantissa.len()) as i64;
        let mut d = Self { negative, digits: [0; 24], len: 0, exponent: 0 };
        let mut seen = 0i64; // digits read so far, before the first significant one included
        let mut first: Option<i64> = None;
        let mut zeros = 0usize;
        for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
            seen += 1;
            if b == b'0' {
                if first.is_some() {
                    zeros += 1;
                }
                continue;
            }
            if first.is_none() {
                first = Some(seen - 1);
            }
            // Zeros between significant digits are significant.
            for _ in 0..zeros {
                d.push(0)?;
            }
            zeros = 0;
            d.push(b - b'0')?;
        }
        match first {
            None => Some(Self { negative: false, digits: [0; 24], len: 0, exponent: 0 }),
            Some(z) => {
                d.exponent = int_len - z + exp;
                Some(d)
            }
        }
    }

    fn push(&mut self, digit: u8) -> Option<()> {
        *self.digits.get_mut(self.len)? = digit;
        self.len += 1;
        Some(())
    }
}

/// An exponent, saturated far beyond any double's range.
fn parse_exponent(text: &[u8]) -> i64 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits.iter().fold(0i64, |acc, &b| (acc * 10 + i64::from(b - b'0')).min(1 << 40));
    if negative { -magnitude } else { magnitude }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparable_numbers_follow_big_decimal_rules() {
        for (text, value) in [
            ("0", Some(0.0)),
            ("-0", Some(-0.0)),
            ("0.1", Some(0.1)),
            ("100", Some(100.0)),
            ("100.000", Some(100.0)),
            ("1.00e2", Some(100.0)),
            ("3.018e2", Some(301.8)),
            ("-4e-6", Some(-4e-6)),
            ("1E-320", Some(1e-320)),
            ("123456789012", Some(123_456_789_012.0)),
            ("0.30000000000000001", None),
            ("9007199254740993", None),
            ("1e400", None),
            ("1E-325", None),
            ("2.0e422", None),
        ] {
            assert_eq!(comparable(text), value, "{text}");
        }
        assert!(comparable("-0").is_some_and(|v| v.is_sign_negative()));
    }

    #[test]
    fn the_fifteen_digit_shortcut_agrees_with_formatting() {
        // Deterministic pseudo-random decimals across the whole double range.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..20_000 {
            let digits: String = (0..1 + next(17)).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let point = next(digits.len() as u64 + 1) as usize;
            let sign = if next(2) == 0 { "" } else { "-" };
            let exp = next(660) as i64 - 340;
            let mantissa = if point == 0 || point == digits.len() {
                digits.clone()
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            };
            let mantissa = match mantissa.strip_prefix('0') {
                Some(rest) if !rest.is_empty() && !rest.starts_with('.') => format!("1{rest}"),
                _ => mantissa,
            };
            let text = format!("{sign}{mantissa}e{exp}");
            let reference = text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .filter(|&v| Decimal::of(text.as_bytes()).is_some_and(|d| is_shortest(v, &d)));
            assert_eq!(comparable(&text).map(f64::to_bits), reference.map(f64::to_bits), "{text}");
        }
    }

    #[test]
    fn ranges_are_open_or_closed_at_each_end() {
        let r = Range { low: Some((10.0, true)), high: Some((20.0, false)) };
        assert!(!r.contains(10.0));
        assert!(r.contains(10.000001));
        assert!(r.contains(20.0));
        assert!(!r.contains(20.000001));
        let below = Range { low: None, high: Some((0.0, true)) };
        assert!(below.contains(f64::MIN));
        assert!(below.contains(-0.0), "-0 sorts below 0, as in event-ruler");
    }

    #[test]
    fn ignore_case_handles_length_changing_case_forms() {
        let f = Folded::new("straße");
        assert!(f.matches("STRASSE", Anchor::Whole));
        assert!(f.matches("Straße", Anchor::Whole));
        assert!(!f.matches("STRASSEN", Anchor::Whole));
        assert!(Folded::new("ⱥb").matches("ȺB", Anchor::Whole));
        assert!(Folded::new("EC2").matches("ec2-instance", Anchor::Start));
        assert!(Folded::new(".PNG").matches("photo.png", Anchor::End));
        assert!(!Folded::new(".PNG").matches("photo.pngx", Anchor::End));
        assert!(Folded::new("").matches("", Anchor::Whole));
        assert!(!Folded::new("").matches("a", Anchor::Whole));
    }

    #[test]
    fn globs_match_stars_and_escapes() {
        let g = |p: &str| Glob::parse(p).unwrap();
        assert!(g("*bc").matches("abcbc"));
        assert!(g("d*f").matches("deeeef"));
        assert!(!g("d*f").matches("deeeefx"));
        assert!(g("xy*").matches("xy"));
        assert!(g("a*b*c").matches("abc"));
        assert!(!g("a*a").matches("a"));
        assert!(g("*").matches(""));
        assert!(g("a\\*b").matches("a*b"));
        assert!(!g("a\\*b").matches("axb"));
        assert!(g("a\\\\*").matches("a\\anything"));
        assert_eq!(Glob::parse("foo**bar"), Err("Consecutive wildcard characters at pos 4".into()));
        assert_eq!(Glob::parse("foo*bar\\"), Err("Invalid escape character at pos 8".into()));
        assert_eq!(Glob::parse("a\\b"), Err("Invalid escape character at pos 2".into()));
    }

    #[test]
    fn cidr_blocks_and_ip_spellings() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(c.contains(parse_ip("10.0.0.255").unwrap()));
        assert!(!c.contains(parse_ip("10.0.1.0").unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(parse_ip("2001:0db8:ffff::1").unwrap()));
        assert_eq!(parse_ip("::ffff:a00:1"), parse_ip("10.0.0.1"));
        assert_eq!(parse_ip("example.com"), None);
        assert_eq!(Cidr::parse("10.0.0.0/32"), Err("IPv4 mask bits must be < 32".into()));
        assert_eq!(Cidr::parse("10.0.0.0"), Err("Malformed CIDR, one '/' required".into()));
        assert_eq!(Cidr::parse("10.0.0.0/x"), Err("Malformed CIDR, mask bits must be an integer".into()));
        assert_eq!(Cidr::parse("10.0.0.0/-1"), Err("Malformed CIDR, mask bits must not be negative".into()));
        assert_eq!(Cidr::parse("foo/8"), Err("Nonstandard IP address: foo".into()));
        assert_eq!(Cidr::parse("999.0.0.0/8"), Err("Invalid IP address: 999.0.0.0".into()));
    }
}
