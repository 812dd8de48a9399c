//! A strict JSON parser that, unlike serde_json's `Value`, notices duplicate object keys (two
//! parsers can pick different duplicates, which hides a tensor from one of them) and bounds its
//! recursion depth.

/// A parsed JSON value. Objects keep their order and every key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// The number's literal text; callers parse it into the type they need.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// What went wrong, with the byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonError {
    pub(crate) offset: usize,
    pub(crate) reason: String,
}

const MAX_DEPTH: u32 = 128;

/// Parses `text` as one JSON value (surrounding whitespace allowed). Duplicate keys anywhere are
/// reported in `dups` (as dotted paths), not as errors, so callers can grade them.
pub(crate) fn parse(text: &[u8], dups: &mut Vec<String>) -> Result<Json, JsonError> {
    let mut p = Parser {
        b: text,
        i: 0,
        dups,
    };
    p.ws();
    let v = p.value(0, "")?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

/// Parses one JSON value at the start of `text` and returns it with the number of bytes it
/// spans; whatever follows is ignored (for JSON embedded in binary containers).
pub(crate) fn parse_prefix(
    text: &[u8],
    dups: &mut Vec<String>,
) -> Result<(Json, usize), JsonError> {
    let mut p = Parser {
        b: text,
        i: 0,
        dups,
    };
    let v = p.value(0, "")?;
    Ok((v, p.i))
}

struct Parser<'a, 'd> {
    b: &'a [u8],
    i: usize,
    dups: &'d mut Vec<String>,
}

impl Parser<'_, '_> {
    fn err(&self, reason: &str) -> JsonError {
        JsonError {
            offset: self.i,
            reason: reason.to_owned(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8], v: Json) -> Result<Json, JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn value(&mut self, depth: u32, path: &str) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth, path),
            Some(b'[') => {
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(out));
                }
                loop {
                    self.ws();
                    out.push(self.value(depth + 1, path)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(out));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.lit(b"true", Json::Bool(true)),
            Some(b'f') => self.lit(b"false", Json::Bool(false)),
            Some(b'n') => self.lit(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn object(&mut self, depth: u32, path: &str) -> Result<Json, JsonError> {
        self.i += 1;
        let mut out: Vec<(String, Json)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Obj(out));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let k = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let v = self.value(depth + 1, &sub)?;
            if out.iter().any(|(old, _)| *old == k) && self.dups.len() < 100 {
                self.dups.push(sub);
            }
            out.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Obj(out));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        let s = std::str::from_utf8(self.b.get(start..self.i).unwrap_or(&[])).unwrap_or("");
        if s.parse::<f64>().is_err() {
            return Err(self.err("invalid number"));
        }
        Ok(Json::Num(s.to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let s = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        let s = std::str::from_utf8(s).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let chunk = self.b.get(start..self.i).unwrap_or(&[]);
            out.push_str(
                std::str::from_utf8(chunk).map_err(|_| self.err("invalid UTF-8 in string"))?,
            );
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = self.peek().ok_or_else(|| self.err("truncated escape"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi)
                                && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                _ => return Err(self.err("unterminated string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_finds_duplicates() {
        let mut d = Vec::new();
        let v = parse(
            br#"{"a": {"x": 1, "x": 2}, "b": [true, null, "s\u00e9"]}"#,
            &mut d,
        )
        .expect("valid");
        assert_eq!(d, vec!["a.x".to_owned()]);
        assert_eq!(
            v.get("b"),
            Some(&Json::Arr(vec![
                Json::Bool(true),
                Json::Null,
                Json::Str("sé".into())
            ]))
        );
    }

    #[test]
    fn rejects_truncated_and_deep() {
        let mut d = Vec::new();
        assert!(parse(br#"{"a": [1, 2"#, &mut d).is_err());
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(parse(deep.as_bytes(), &mut d).is_err());
    }
}
