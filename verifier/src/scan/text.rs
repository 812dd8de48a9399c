//! Text: model cards, vocabularies, JSON configs and tokenizer files. Text is data, never
//! executed, with one exception that is checked: chat templates (Jinja) in tokenizer configs and
//! template files, which some runtimes render without a sandbox.

use std::io::{Read, Seek};

use super::json::{self, Json};
use super::{jinja, keras, read_at, Format, Severity, Sink, Stop};

/// Text files up to this size are read whole (to check they are text throughout and to parse
/// JSON); larger ones are judged by their head.
const MAX_TEXT: u64 = 64 << 20;

/// True for UTF-8 without NUL bytes (`complete` false: `b` is a head that may cut a character).
pub(crate) fn is_text(b: &[u8], complete: bool) -> bool {
    if b.contains(&0) {
        return false;
    }
    match std::str::from_utf8(b) {
        Ok(_) => true,
        // A multi-byte character cut by the end of the head is fine.
        Err(e) => !complete && e.error_len().is_none() && e.valid_up_to() + 4 > b.len(),
    }
}

/// Scans `r` as text if it is text; `None` if it is not.
pub(crate) fn scan<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    head: &[u8],
    loc: &str,
    sink: &mut Sink,
) -> Result<Option<Format>, Stop> {
    if !is_text(head, head.len() as u64 == len) {
        return Ok(None);
    }
    if len > MAX_TEXT {
        sink.add(
            Severity::Info,
            loc,
            None,
            "large text file judged by its first KiB",
        );
        return Ok(Some(Format::Text));
    }
    let mut all = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let n = read_at(r, 0, &mut all)?;
    all.truncate(n);
    if !is_text(&all, true) {
        return Ok(None);
    }
    let trimmed = all
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| all.get(i));
    if matches!(trimmed, Some(b'{' | b'[')) {
        let mut dups = Vec::new();
        if let Ok(v) = json::parse(&all, &mut dups) {
            for d in dups.iter().filter(|d| d.contains("chat_template")) {
                sink.add(
                    Severity::High,
                    loc,
                    None,
                    format!("duplicate key {d:?}: parsers disagree on the template"),
                );
            }
            check_json(&v, loc, sink, 0);
            if v.get("class_name").is_some() && v.get("config").is_some() {
                keras::check_config(&v, loc, sink);
            }
            return Ok(Some(Format::Json));
        }
    }
    if let Ok(s) = std::str::from_utf8(&all) {
        // A template file (chat_template.jinja) rather than text that happens to hold braces:
        // it opens with a tag, or it has Jinja control flow.
        let opens_with_tag = s.trim_start().starts_with("{{") || s.trim_start().starts_with("{%");
        let control_flow = s.contains("{%") && (s.contains("endfor") || s.contains("endif"));
        if opens_with_tag || control_flow {
            jinja::check(s, loc, "template", sink);
        }
    }
    Ok(Some(Format::Text))
}

/// Finds chat templates in a JSON document (`chat_template` as a string or as a list of
/// `{name, template}`) and checks them.
fn check_json(v: &Json, loc: &str, sink: &mut Sink, depth: u32) {
    if depth > 16 {
        return;
    }
    match v {
        Json::Obj(m) => {
            for (k, x) in m {
                if k.contains("chat_template") {
                    match x {
                        Json::Str(s) => jinja::check(s, loc, k, sink),
                        Json::Arr(a) => {
                            for t in a {
                                let name = t.get("name").and_then(Json::as_str).unwrap_or("?");
                                if let Some(s) = t.get("template").and_then(Json::as_str) {
                                    jinja::check(s, loc, &format!("{k}[{name}]"), sink);
                                }
                            }
                        }
                        _ => {}
                    }
                } else {
                    check_json(x, loc, sink, depth + 1);
                }
            }
        }
        Json::Arr(a) => a.iter().for_each(|x| check_json(x, loc, sink, depth + 1)),
        _ => {}
    }
}
