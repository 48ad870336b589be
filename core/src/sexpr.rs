//! The one S-expression reader used for every file flotilla reads: ship configuration,
//! flood daemon configuration (seed 002's syntax) and simulator scenarios (SPEC.md §4).
//!
//! ```text
//! ; a comment runs to the end of the line
//! (:site-define (:site-name master) (:client-port 2000) (:latitude 40.5))
//! (:path "/with spaces/quoted" /or/bare/symbols 5s -3)
//! ```
//!
//! Atoms are keywords (`:name`), integers, floats, double-quoted strings (escapes `\"`,
//! `\\`, `\n`, `\t`) and symbols (any other run of non-space, non-paren characters, so
//! paths, host names, addresses such as `10.0.0.1` and durations such as `200ms` need no
//! quotes). Every node keeps its line and column, and every error names one. Nesting
//! depth and input size are bounded, so hostile input cannot exhaust the stack or memory.

use core::fmt;
use core::time::Duration;

use thiserror::Error;

/// Deepest list nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Largest input accepted, in bytes.
pub const MAX_INPUT: usize = 4 << 20;

/// A 1-based line and column (columns count characters).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// What an atom or list holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `:name`, stored without the colon.
    Keyword(String),
    /// A bare word that is not a number or keyword.
    Symbol(String),
    /// A double-quoted string, escapes resolved.
    Str(String),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// `( … )`.
    List(Vec<Node>),
}

/// A value with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
    /// A number exactly as written (`1.10`, `007`, `1e3`), so that text read from a file
    /// is given back as it was written; `None` for everything else.
    pub raw: Option<Box<str>>,
}

/// A syntax error, or a well-formed file that does not mean anything valid. Displays as
/// `line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{pos}: {message}")]
pub struct SexprError {
    /// Where.
    pub pos: Pos,
    /// What is wrong, in words for a person.
    pub message: String,
}

impl SexprError {
    /// An error at `pos`.
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        SexprError {
            pos,
            message: message.into(),
        }
    }
}

struct Lexer<'a> {
    chars: core::iter::Peekable<core::str::Chars<'a>>,
    pos: Pos,
}

impl Lexer<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c == ';' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')' || c == ';' || c == '"'
}

/// Why `c` cannot appear outside a string or comment, if it cannot: control characters
/// and invisible marks are almost always a file saved with the wrong encoding or pasted
/// from somewhere odd, and would otherwise become part of a name no one can see.
fn unexpected(c: char) -> Option<String> {
    Some(match c {
        '\u{FEFF}' => "unexpected byte-order mark (U+FEFF)".to_string(),
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' => {
            format!("unexpected zero-width character U+{:04X}", c as u32)
        }
        '\u{FFFD}' => {
            "unexpected replacement character (U+FFFD): was the file saved in another encoding?"
                .to_string()
        }
        c if c.is_control() => format!("unexpected control character U+{:04X}", c as u32),
        _ => return None,
    })
}

/// The text of a file's bytes, or an error at the first byte that is not UTF-8 (a binary
/// file, or one saved in another encoding), with its line and column.
pub fn utf8(bytes: &[u8]) -> Result<&str, SexprError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        // The valid prefix is UTF-8, so its lines and characters can be counted.
        let good = std::str::from_utf8(good).unwrap_or_default();
        let line = good.matches('\n').count() as u32 + 1;
        let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
        let byte = bytes[e.valid_up_to()];
        SexprError::new(
            Pos { line, col },
            format!("byte 0x{byte:02x} is not UTF-8 text: is this a binary file, or saved in another encoding?"),
        )
    })
}

/// The text of a file's bytes, at most `limit` of them: the size is checked before the
/// encoding, so an oversized binary file is refused for its size, the more useful of the
/// two complaints; then, as [`utf8`], an error at the first byte that is not UTF-8.
pub fn file_text(bytes: &[u8], limit: usize) -> Result<&str, SexprError> {
    if bytes.len() > limit {
        return Err(SexprError::new(
            Pos { line: 1, col: 1 },
            format!(
                "input of {} bytes exceeds the {limit}-byte limit",
                bytes.len()
            ),
        ));
    }
    utf8(bytes)
}

/// Parses every top-level form in `text`, which may be at most [`MAX_INPUT`] bytes.
pub fn parse(text: &str) -> Result<Vec<Node>, SexprError> {
    parse_with_limit(text, MAX_INPUT)
}

/// Parses every top-level form in `text`, which may be at most `limit` bytes (a ship's
/// configuration file may be as large as the configuration it describes).
pub fn parse_with_limit(text: &str, limit: usize) -> Result<Vec<Node>, SexprError> {
    if text.len() > limit {
        return Err(SexprError::new(
            Pos { line: 1, col: 1 },
            format!(
                "input of {} bytes exceeds the {limit}-byte limit",
                text.len()
            ),
        ));
    }
    // Editors on some systems start UTF-8 files with a byte-order mark: it means nothing
    // here, so a leading one is passed over (anywhere else it is an error).
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut lx = Lexer {
        chars: text.chars().peekable(),
        pos: Pos { line: 1, col: 1 },
    };
    // An explicit stack instead of recursion: depth is bounded by MAX_DEPTH either way,
    // but this keeps stack use flat whatever the input.
    let mut stack: Vec<(Pos, Vec<Node>)> = Vec::new();
    let mut top = Vec::new();
    loop {
        lx.skip_space_and_comments();
        let start = lx.pos;
        let Some(&c) = lx.chars.peek() else { break };
        let node = match c {
            '(' => {
                lx.bump();
                if stack.len() >= MAX_DEPTH {
                    return Err(SexprError::new(
                        start,
                        format!("lists nested deeper than {MAX_DEPTH}"),
                    ));
                }
                stack.push((start, Vec::new()));
                continue;
            }
            ')' => {
                lx.bump();
                let Some((open, items)) = stack.pop() else {
                    return Err(SexprError::new(start, "unexpected ')' with no open list"));
                };
                Node {
                    value: Value::List(items),
                    pos: open,
                    raw: None,
                }
            }
            '"' => {
                lx.bump();
                let mut s = String::new();
                loop {
                    match lx.bump() {
                        None => return Err(SexprError::new(start, "unterminated string")),
                        Some('"') => break,
                        Some('\\') => match lx.bump() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(e @ ('"' | '\\')) => s.push(e),
                            Some(e) => {
                                return Err(SexprError::new(
                                    lx.pos,
                                    format!("unknown escape '\\{e}' in string"),
                                ));
                            }
                            None => return Err(SexprError::new(start, "unterminated string")),
                        },
                        Some(ch) => s.push(ch),
                    }
                }
                Node {
                    value: Value::Str(s),
                    pos: start,
                    raw: None,
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = lx.chars.peek() {
                    if is_delimiter(ch) {
                        break;
                    }
                    if let Some(why) = unexpected(ch) {
                        return Err(SexprError::new(lx.pos, why));
                    }
                    word.push(ch);
                    lx.bump();
                }
                let value = atom(&word, start)?;
                let raw = matches!(value, Value::Int(_) | Value::Float(_)).then(|| word.into());
                Node {
                    value,
                    pos: start,
                    raw,
                }
            }
        };
        match stack.last_mut() {
            Some((_, items)) => items.push(node),
            None => top.push(node),
        }
    }
    if let Some((open, _)) = stack.last() {
        return Err(SexprError::new(*open, "list opened here is never closed"));
    }
    Ok(top)
}

fn atom(word: &str, pos: Pos) -> Result<Value, SexprError> {
    if let Some(name) = word.strip_prefix(':') {
        if name.is_empty() {
            return Err(SexprError::new(pos, "a keyword needs a name after ':'"));
        }
        return Ok(Value::Keyword(name.to_string()));
    }
    let numeric_start = word
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit());
    if numeric_start {
        if let Ok(i) = word.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        // Digits with two or more dots are an IPv4 address or a version, never a number:
        // a symbol, so that `(:inet-address 10.0.0.1)` needs no quotes.
        if word.matches('.').count() > 1 && word.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Ok(Value::Symbol(word.to_string()));
        }
        if word.contains(['.', 'e', 'E'])
            && word
                .chars()
                .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        {
            return word
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| SexprError::new(pos, format!("malformed number '{word}'")));
        }
    }
    Ok(Value::Symbol(word.to_string()))
}

impl Node {
    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Node]> {
        match &self.value {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// For a list whose first item is a keyword, the keyword's name: the form's "head".
    pub fn head(&self) -> Option<&str> {
        match self.as_list()?.first()?.value {
            Value::Keyword(ref k) => Some(k),
            _ => None,
        }
    }

    /// The items after the head keyword.
    pub fn args(&self) -> &[Node] {
        match self.as_list() {
            Some(items) if !items.is_empty() => &items[1..],
            _ => &[],
        }
    }

    /// A short description of the value, for error messages.
    pub fn describe(&self) -> &'static str {
        match self.value {
            Value::Keyword(_) => "a keyword",
            Value::Symbol(_) => "a symbol",
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::List(_) => "a list",
        }
    }

    fn wrong(&self, wanted: &str) -> SexprError {
        SexprError::new(
            self.pos,
            format!("expected {wanted}, found {}", self.describe()),
        )
    }

    /// The text of a symbol, string, or number, exactly as written (site names such as
    /// `inferno`, host names and numeric-looking values such as `1.10` or `007` are all
    /// text to the caller).
    pub fn text(&self) -> Result<String, SexprError> {
        match (&self.value, &self.raw) {
            (Value::Symbol(s) | Value::Str(s), _) => Ok(s.clone()),
            (Value::Int(_) | Value::Float(_), Some(raw)) => Ok(raw.to_string()),
            (Value::Int(i), None) => Ok(i.to_string()),
            (Value::Float(f), None) => Ok(f.to_string()),
            _ => Err(self.wrong("a name or string")),
        }
    }

    /// An integer within `lo..=hi`.
    pub fn int_in(&self, lo: i64, hi: i64) -> Result<i64, SexprError> {
        match self.value {
            Value::Int(i) if (lo..=hi).contains(&i) => Ok(i),
            Value::Int(i) => Err(SexprError::new(
                self.pos,
                format!("{i} is out of range {lo}..={hi}"),
            )),
            _ => Err(self.wrong("an integer")),
        }
    }

    /// A number (integer or float).
    pub fn number(&self) -> Result<f64, SexprError> {
        match self.value {
            Value::Int(i) => Ok(i as f64),
            Value::Float(f) if f.is_finite() => Ok(f),
            _ => Err(self.wrong("a number")),
        }
    }

    /// A duration: a bare number means seconds (floodd's `(:ping-period 15.0)`), or a
    /// symbol with a unit: `250ms`, `5s`, `2m`, `1h`, `30us`.
    pub fn duration(&self) -> Result<Duration, SexprError> {
        let (num, unit) = match &self.value {
            Value::Int(i) => (*i as f64, "s"),
            Value::Float(f) => (*f, "s"),
            Value::Symbol(s) => {
                let split = s
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(s.len());
                let n: f64 = s[..split]
                    .parse()
                    .map_err(|_| SexprError::new(self.pos, format!("malformed duration '{s}'")))?;
                (n, &s[split..])
            }
            _ => return Err(self.wrong("a duration")),
        };
        let scale = match unit {
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(SexprError::new(
                    self.pos,
                    format!("unknown duration unit '{other}' (use us, ms, s, m or h)"),
                ));
            }
        };
        let secs = num * scale;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(SexprError::new(self.pos, "duration out of range"));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

impl fmt::Display for Node {
    /// Prints the node back in reader syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Keyword(k) => write!(f, ":{k}"),
            Value::Symbol(s) => f.write_str(s),
            Value::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\t' => f.write_str("\\t")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Value::Int(_) | Value::Float(_) if self.raw.is_some() => {
                f.write_str(self.raw.as_deref().unwrap_or_default())
            }
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::List(items) => {
                f.write_str("(")?;
                for (i, n) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{n}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_floodd_seed_example() {
        let text = include_str!("../tests/data/floodd-seed.conf");
        let forms = parse(text).unwrap();
        let heads: Vec<_> = forms.iter().map(|f| f.head().unwrap()).collect();
        assert_eq!(
            heads,
            ["site-define", "site-define", "group-define", "local"]
        );
        let group = &forms[2];
        let ping = group
            .args()
            .iter()
            .find(|n| n.head() == Some("ping-period"))
            .unwrap();
        assert_eq!(ping.args()[0].duration().unwrap(), Duration::from_secs(15));
        let local = &forms[3];
        assert_eq!(
            local.args()[0].args()[0].text().unwrap(),
            "/homes/dante/mirrord/inferno/bin/filer"
        );
        assert_eq!(forms[0].pos, Pos { line: 8, col: 1 });
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("(:a\n  (:b 1)\n  \"open").unwrap_err();
        assert_eq!(e.to_string(), "3:3: unterminated string");
        let e = parse("(:a (:b 1)").unwrap_err();
        assert_eq!(e.to_string(), "1:1: list opened here is never closed");
        let e = parse("\n )").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 2 });
        let e = parse(&"(".repeat(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.message.contains("nested deeper"));
        assert_eq!(parse(": x").unwrap_err().pos, Pos { line: 1, col: 1 });
    }

    #[test]
    fn atoms() {
        let f = parse(r#"(:k sym -12 3.5 1e3 "a \"q\"\n" 250ms /path/x 10.0.0.1:7000)"#).unwrap();
        let v: Vec<Value> = f[0]
            .as_list()
            .unwrap()
            .iter()
            .map(|n| n.value.clone())
            .collect();
        assert_eq!(
            v,
            vec![
                Value::Keyword("k".into()),
                Value::Symbol("sym".into()),
                Value::Int(-12),
                Value::Float(3.5),
                Value::Float(1000.0),
                Value::Str("a \"q\"\n".into()),
                Value::Symbol("250ms".into()),
                Value::Symbol("/path/x".into()),
                Value::Symbol("10.0.0.1:7000".into()),
            ]
        );
    }

    /// Dotted digits are addresses and versions, not malformed numbers; a word that
    /// really is a malformed number is still an error.
    #[test]
    fn dotted_digits_are_symbols() {
        let f = parse("(10.0.0.1 1.2.3 1.5)").unwrap();
        let v: Vec<Value> = f[0]
            .as_list()
            .unwrap()
            .iter()
            .map(|n| n.value.clone())
            .collect();
        assert_eq!(
            v,
            [
                Value::Symbol("10.0.0.1".into()),
                Value::Symbol("1.2.3".into()),
                Value::Float(1.5),
            ]
        );
        assert_eq!(
            parse("1.2e").unwrap_err().message,
            "malformed number '1.2e'"
        );
    }

    /// A number is given back as written: a configuration value `1.10` is `1.10`, not
    /// `1.1`.
    #[test]
    fn numbers_keep_their_text() {
        let f = parse("(1.10 007 1e3 1e999999 -0 123456789012345678901234567890)").unwrap();
        let texts: Vec<String> = f[0]
            .as_list()
            .unwrap()
            .iter()
            .map(|n| n.text().unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "1.10",
                "007",
                "1e3",
                "1e999999",
                "-0",
                "123456789012345678901234567890"
            ]
        );
        assert_eq!(f[0].as_list().unwrap()[1].int_in(0, 10), Ok(7));
        assert!(
            f[0].as_list().unwrap()[3].number().is_err(),
            "infinite is not a number"
        );
        assert_eq!(
            f[0].to_string(),
            "(1.10 007 1e3 1e999999 -0 123456789012345678901234567890)"
        );
    }

    /// A leading byte-order mark is passed over; one elsewhere, or a control character,
    /// is an error at its position.
    #[test]
    fn byte_order_marks_and_control_characters() {
        assert_eq!(parse("\u{FEFF}(:a b)").unwrap().len(), 1);
        let e = parse("(:a\n b\u{FEFF}c)").unwrap_err();
        assert_eq!(
            (e.pos, e.message.as_str()),
            (
                Pos { line: 2, col: 3 },
                "unexpected byte-order mark (U+FEFF)"
            )
        );
        let e = parse("(:a \u{1}x)").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 5 });
        assert!(e.message.contains("control character U+0001"), "{e}");
    }

    #[test]
    fn binary_input_names_its_first_bad_byte() {
        assert_eq!(utf8(b"(:a b)"), Ok("(:a b)"));
        let e = utf8(b"(:param a 1)\n(:param b \xff\xfe)").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 11 });
        assert!(e.message.starts_with("byte 0xff is not UTF-8 text"), "{e}");
    }

    #[test]
    fn durations() {
        let d = |s: &str| parse(s).unwrap()[0].duration();
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(d("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(d("1.5").unwrap(), Duration::from_millis(1500));
        assert!(d("5 parsecs").is_ok());
        assert!(
            d("5parsecs")
                .unwrap_err()
                .message
                .contains("unknown duration unit")
        );
        assert!(d("-1").is_err());
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            "[a-z][a-z0-9-]{0,8}".prop_map(Value::Keyword),
            "[a-z/][a-z0-9/._-]{0,8}".prop_map(Value::Symbol),
            ".{0,12}".prop_map(Value::Str),
            any::<i64>().prop_map(Value::Int),
        ]
        .prop_map(|value| Node {
            value,
            pos: Pos::default(),
            raw: None,
        });
        leaf.prop_recursive(4, 32, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(|items| Node {
                value: Value::List(items),
                pos: Pos::default(),
                raw: None,
            })
        })
    }

    fn strip(n: &Node) -> Value {
        match &n.value {
            Value::List(items) => Value::List(
                items
                    .iter()
                    .map(|i| Node {
                        value: strip(i),
                        pos: Pos::default(),
                        raw: None,
                    })
                    .collect(),
            ),
            v => v.clone(),
        }
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(n in arb_node()) {
            let text = n.to_string();
            let back = parse(&text).unwrap();
            prop_assert_eq!(back.len(), 1);
            prop_assert_eq!(strip(&back[0]), strip(&n));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = parse(&s);
        }
    }
}
