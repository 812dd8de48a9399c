//! The canonical byte form that signatures cover, and bounded file reads.
//!
//! Canonical JSON here means: the value as serde produces it, every object's keys sorted by their
//! UTF-8 bytes (recursively), no insignificant whitespace, serde_json's string escaping, integers
//! only (no record or entry holds a float). The keys are re-sorted by hand rather than trusting
//! `serde_json::Map` to be a `BTreeMap`: another crate in the build turning on serde_json's
//! `preserve_order` feature must not change what a signature covers.

use crate::error::SigningError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;

/// Rebuilds `v` with every object's keys inserted in sorted order.
pub(crate) fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, sorted(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `t` as a JSON value (objects only: records and entries are structs).
pub(crate) fn to_object<T: Serialize>(t: &T) -> Result<Map<String, Value>, SigningError> {
    match serde_json::to_value(t).map_err(SigningError::Encode)? {
        Value::Object(map) => Ok(map),
        _ => Err(SigningError::Invalid {
            field: "record",
            why: "does not serialise to a JSON object",
        }),
    }
}

/// Compact, key-sorted bytes of a JSON value.
pub(crate) fn bytes(v: Value) -> Result<Vec<u8>, SigningError> {
    serde_json::to_vec(&sorted(v)).map_err(SigningError::Encode)
}

/// Indented, key-sorted text with a final newline: the form of record files, meant for review
/// in git.
pub(crate) fn pretty(v: Value) -> Result<String, SigningError> {
    let mut s = serde_json::to_string_pretty(&sorted(v)).map_err(SigningError::Encode)?;
    s.push('\n');
    Ok(s)
}

/// Reads a whole file, refusing anything over `limit` bytes without reading past it: key and
/// record files may come from untrusted places (a git checkout, an import directory).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, SigningError> {
    let io = |source| SigningError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(SigningError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_recursively_and_compact() {
        let v = json!({"b": 1, "a": {"z": [ {"y": 2, "x": 1} ], "c": "é\n"}});
        let out = bytes(v).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"c":"é\n","z":[{"x":1,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn bounded_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap(), b"12345");
        assert!(matches!(
            read_bounded(&p, 4),
            Err(SigningError::TooLarge { limit: 4, .. })
        ));
    }
}
