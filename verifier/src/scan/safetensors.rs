//! safetensors: an 8-byte header length, a JSON header, then tensor bytes. Only the header is
//! read. The file is clean only if every byte after the header belongs to exactly one tensor:
//! overlaps, gaps and trailing bytes are places to hide a second payload (a pickle that a lenient
//! reader finds), and duplicate keys let two parsers see different tensors.

use std::io::{Read, Seek};

use super::json::{self, Json};
use super::{read_at, Severity, Sink, Stop};

/// The safetensors library refuses headers over 100 MB; so does the scanner.
const MAX_HEADER: u64 = 100_000_000;

/// True if the first bytes look like a safetensors header (`{` right after the length).
pub(crate) fn looks_like(head: &[u8], len: u64) -> bool {
    if head.len() < 9 || head.first() == Some(&0x80) {
        return false;
    }
    if head.get(8) == Some(&b'{') {
        return true;
    }
    // A header padded or malformed at its start: still JSON-ish text where the length says.
    let mut n = [0u8; 8];
    n.copy_from_slice(head.get(..8).unwrap_or(&[0; 8]));
    let n = u64::from_le_bytes(n);
    let text = head.get(8..).unwrap_or(&[]);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    n >= 2
        && n.saturating_add(8) <= len
        && matches!(first, Some(b'{' | b'['))
        && text
            .iter()
            .take(64)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
}

/// Bits per element of a safetensors dtype.
fn dtype_bits(d: &str) -> Option<u64> {
    Some(match d {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// Scans a safetensors file.
pub(crate) fn scan<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<(), Stop> {
    let mut lenb = [0u8; 8];
    read_at(r, 0, &mut lenb)?;
    let n = u64::from_le_bytes(lenb);
    if n > MAX_HEADER || n.saturating_add(8) > len {
        sink.add(
            Severity::High,
            loc,
            Some(0),
            format!("safetensors header length {n} is out of bounds (file is {len} bytes)"),
        );
        return Ok(());
    }
    let mut header = vec![0u8; usize::try_from(n).unwrap_or(0)];
    read_at(r, 8, &mut header)?;
    let mut dups = Vec::new();
    let parsed = json::parse(&header, &mut dups);
    let root = match parsed {
        Ok(v) => v,
        Err(e) => {
            sink.add(
                Severity::High,
                loc,
                Some(8 + e.offset as u64),
                format!("safetensors header is not valid JSON: {}", e.reason),
            );
            return Ok(());
        }
    };
    for d in &dups {
        sink.add(
            Severity::High,
            loc,
            Some(8),
            format!("duplicate key {d:?} in the safetensors header"),
        );
    }
    let Json::Obj(items) = root else {
        sink.add(
            Severity::High,
            loc,
            Some(8),
            "safetensors header is not a JSON object",
        );
        return Ok(());
    };
    let data_len = len - 8 - n;
    let mut ranges: Vec<(u64, u64, String)> = Vec::new();
    for (name, v) in &items {
        if name == "__metadata__" {
            let ok = matches!(v, Json::Obj(m) if m.iter().all(|(_, x)| matches!(x, Json::Str(_))));
            if !ok {
                sink.add(
                    Severity::Medium,
                    loc,
                    Some(8),
                    "__metadata__ is not a map of strings",
                );
            }
            continue;
        }
        let dtype = v.get("dtype").and_then(Json::as_str);
        let shape: Option<Vec<u64>> = match v.get("shape") {
            Some(Json::Arr(a)) => a.iter().map(Json::as_u64).collect(),
            _ => None,
        };
        let offs: Option<Vec<u64>> = match v.get("data_offsets") {
            Some(Json::Arr(a)) => a.iter().map(Json::as_u64).collect(),
            _ => None,
        };
        let (Some(dtype), Some(shape), Some(offs)) = (dtype, shape, offs) else {
            sink.add(
                Severity::High,
                loc,
                Some(8),
                format!("tensor {name:?} lacks a valid dtype, shape or data_offsets"),
            );
            continue;
        };
        let (Some(&b), Some(&e), 2) = (offs.first(), offs.get(1), offs.len()) else {
            sink.add(
                Severity::High,
                loc,
                Some(8),
                format!("tensor {name:?} data_offsets is not [begin, end]"),
            );
            continue;
        };
        if e < b {
            sink.add(
                Severity::High,
                loc,
                Some(8),
                format!("tensor {name:?} ends before it begins"),
            );
            continue;
        }
        if e > data_len {
            sink.add(
                Severity::High,
                loc,
                Some(8 + n + b),
                format!("tensor {name:?} range {b}..{e} runs past the end of the file ({data_len} data bytes)"),
            );
        }
        match dtype_bits(dtype) {
            None => sink.add(
                Severity::Medium,
                loc,
                Some(8),
                format!("tensor {name:?} has unknown dtype {dtype:?}"),
            ),
            Some(bits) => {
                let want = shape
                    .iter()
                    .try_fold(1u64, |a, d| a.checked_mul(*d))
                    .and_then(|c| c.checked_mul(bits))
                    .map(|b| b.div_ceil(8));
                if want != Some(e - b) {
                    sink.add(
                        Severity::High,
                        loc,
                        Some(8 + n + b),
                        format!(
                            "tensor {name:?} shape {shape:?} × {dtype} does not match its {} bytes",
                            e - b
                        ),
                    );
                }
            }
        }
        ranges.push((b, e, name.clone()));
    }
    ranges.sort();
    let mut cursor = 0u64;
    for (b, e, name) in &ranges {
        if *b < cursor {
            sink.add(
                Severity::High,
                loc,
                Some(8 + n + b),
                format!("tensor {name:?} overlaps the previous tensor"),
            );
        } else if *b > cursor {
            sink.add(
                Severity::High,
                loc,
                Some(8 + n + cursor),
                format!(
                    "{} bytes before tensor {name:?} belong to no tensor",
                    b - cursor
                ),
            );
        }
        cursor = cursor.max(*e);
    }
    if cursor < data_len {
        let mut first = [0u8; 1];
        read_at(r, 8 + n + cursor, &mut first)?;
        let what = if first[0] == 0x80 {
            " (they start like a pickle)"
        } else {
            ""
        };
        sink.add(
            Severity::High,
            loc,
            Some(8 + n + cursor),
            format!(
                "{} bytes after the last tensor belong to no tensor{what}",
                data_len - cursor
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn findings(b: Vec<u8>) -> Vec<String> {
        let mut s = Sink::default();
        let n = b.len() as u64;
        scan(&mut Cursor::new(b), n, "", &mut s).expect("scan");
        s.findings
            .iter()
            .filter(|f| f.severity >= Severity::Medium)
            .map(|f| f.message.clone())
            .collect()
    }

    #[test]
    fn clean_file() {
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}"#;
        assert!(findings(file(h, &[0; 12])).is_empty());
    }

    #[test]
    fn overlap_gap_duplicate_trailing() {
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        assert!(findings(file(h, &[0; 12]))
            .iter()
            .any(|m| m.contains("overlaps")));
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        assert!(findings(file(h, &[0; 8]))
            .iter()
            .any(|m| m.contains("belong to no tensor")));
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(findings(file(h, &[0; 4]))
            .iter()
            .any(|m| m.contains("duplicate key")));
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(findings(file(h, b"\0\0\0\0\x80\x02N."))
            .iter()
            .any(|m| m.contains("like a pickle")));
    }

    #[test]
    fn huge_header_length_is_refused_without_allocating() {
        let mut b = (1u64 << 62).to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        assert!(findings(b).iter().any(|m| m.contains("out of bounds")));
    }
}
