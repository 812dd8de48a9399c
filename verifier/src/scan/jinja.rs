//! Chat templates (Jinja2) in GGUF metadata and tokenizer configs. llama-cpp-python rendered them
//! outside Jinja's sandbox (CVE-2024-34359), so an attribute walk such as
//! `().__class__.__base__.__subclasses__()` reached `os.popen`. Sandboxed or not, no chat template
//! needs Python internals, so any reach for them is a finding.
//!
//! Only the code inside `{{ … }}` and `{% … %}` is examined; literal text outside them (the chat
//! markup itself) is output, never evaluated.

use super::{Severity, Sink};

/// Identifiers that only a sandbox escape needs: Python process and reflection APIs, and Jinja
/// globals whose `__globals__` lead to `os`.
const ESCAPE_WORDS: &[&str] = &[
    "popen",
    "subprocess",
    "eval",
    "exec",
    "builtins",
    "globals",
    "getattr",
    "mro",
    "subclasses",
    "func_globals",
    "f_globals",
    "gi_frame",
    "gi_code",
    "tb_frame",
    "lipsum",
    "cycler",
    "joiner",
    "os",
    "attr",
    "url_for",
    "get_flashed_messages",
];

/// Checks one template and reports what it finds at `loc` (`key` names the field).
pub(crate) fn check(template: &str, loc: &str, key: &str, sink: &mut Sink) {
    let mut reported = 0;
    for code in code_segments(template) {
        for (sev, why) in examine(code) {
            if reported < 5 {
                sink.add(sev, loc, None, format!("{key}: {why}"));
            }
            reported += 1;
        }
    }
    if reported > 5 {
        sink.add(
            Severity::Info,
            loc,
            None,
            format!("{key}: {} further template findings", reported - 5),
        );
    }
}

/// The code parts of a template: the insides of `{{ }}` and `{% %}` (comments `{# #}` skipped).
fn code_segments(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = rest.get(i + 1..).unwrap_or("");
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                rest = after;
                continue;
            }
        };
        let body = after.get(1..).unwrap_or("");
        let end = body.find(close).unwrap_or(body.len());
        if close != "#}" {
            out.push(body.get(..end).unwrap_or(""));
        }
        rest = body.get(end..).unwrap_or("");
    }
    out
}

/// Findings in one code segment.
fn examine(code: &str) -> Vec<(Severity, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars.get(i).copied().unwrap_or(' ');
        if c == '\'' || c == '"' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars.get(j) != Some(&c) {
                if chars.get(j) == Some(&'\\') {
                    j += 1;
                }
                j += 1;
            }
            let lit: String = chars
                .get(start..j.min(chars.len()))
                .unwrap_or(&[])
                .iter()
                .collect();
            if lit.contains("__") {
                out.push((
                    Severity::Critical,
                    format!("string {lit:?} names Python internals (sandbox escape)"),
                ));
            } else if !lit.is_empty() && lit.chars().all(|c| c == '_') {
                out.push((
                    Severity::High,
                    "string of bare underscores (assembling a dunder name)".to_owned(),
                ));
            } else if lit.contains("%c") {
                out.push((
                    Severity::High,
                    "format string with %c (assembling characters by code)".to_owned(),
                ));
            }
            let low = lit.to_ascii_lowercase();
            if low.contains("\\x5f")
                || low.contains("\\u005f")
                || low.contains("\\137")
                || low.contains("\\u0000005f")
            {
                out.push((
                    Severity::High,
                    format!("string {lit:?} spells '_' with an escape (obfuscated attribute name)"),
                ));
            }
            i = j + 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && chars
                    .get(i)
                    .is_some_and(|x| x.is_ascii_alphanumeric() || *x == '_')
            {
                i += 1;
            }
            let ident: String = chars.get(start..i).unwrap_or(&[]).iter().collect();
            if ident.starts_with("__") || ident.ends_with("__") {
                out.push((
                    Severity::Critical,
                    format!(
                        "reaches Python internals via {ident} (sandbox escape, CVE-2024-34359)"
                    ),
                ));
            } else if ident.starts_with('_') {
                out.push((
                    Severity::High,
                    format!("accesses private attribute {ident}"),
                ));
            } else if ESCAPE_WORDS.contains(&ident.as_str()) {
                out.push((
                    Severity::High,
                    format!("uses {ident}, which only a sandbox escape needs"),
                ));
            }
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst(t: &str) -> Option<Severity> {
        let mut s = Sink::default();
        check(t, "", "chat_template", &mut s);
        s.findings.iter().map(|f| f.severity).max()
    }

    #[test]
    fn classic_ssti_is_critical() {
        let t = "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}";
        assert_eq!(worst(t), Some(Severity::Critical));
        assert!(worst("{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}")
            .is_some_and(|s| s >= Severity::High));
        assert!(worst("{{ lipsum.x.os.popen('id').read() }}").is_some_and(|s| s >= Severity::High));
    }

    #[test]
    fn ordinary_templates_are_clean() {
        let t = "{%- set ns = namespace(system=none) %}{%- for m in messages %}{{- '<|im_start|>system\\n' + m['content'] | trim }}{%- endfor %}{{ tool | tojson }}{% if add_generation_prompt %}{{ raise_exception('x') }}{% endif %}";
        assert_eq!(worst(t), None);
    }
}
