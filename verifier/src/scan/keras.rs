//! Keras models: the HDF5 format of Keras 2 (`.h5`/`.hdf5`, config in the `model_config`
//! attribute) and the `config.json` of Keras 3 `.keras` zips. Weights cannot run code; the config
//! can: `Lambda` layers carry marshalled bytecode (CVE-2024-3660), `TFSMLayer` loads and runs a
//! TensorFlow SavedModel from a path, and function references can name any module, including
//! `keras.config.enable_unsafe_deserialization`, which switches safe mode off mid-load (CVE-2025-9906).
//!
//! The HDF5 file is not parsed structurally: the config attribute is a JSON string stored
//! contiguously, so the file is streamed in chunks and every `{"class_name"` object is parsed.
//! A file that mentions `model_config` but yields no parseable config is unscannable.

use std::io::{Read, Seek};

use super::json::{self, Json};
use super::{read_at, Severity, Sink, Stop};

/// Largest config examined.
pub(crate) const MAX_CONFIG: u64 = 16 << 20;
const CHUNK: usize = 8 << 20;
const OVERLAP: usize = 2 << 20;
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// True if the file carries the HDF5 signature at 0 or at a user-block offset.
pub(crate) fn is_hdf5<R: Read + Seek + ?Sized>(r: &mut R, head: &[u8]) -> Result<bool, Stop> {
    if head.starts_with(HDF5_MAGIC) {
        return Ok(true);
    }
    for off in [512u64, 1024, 2048] {
        let mut b = [0u8; 8];
        if read_at(r, off, &mut b)? == 8 && b == HDF5_MAGIC {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Module prefixes whose plain functions (activations, losses, …) a config may name.
const FUNCTION_MODULES: &[&str] = &[
    "keras.activations",
    "keras.losses",
    "keras.metrics",
    "keras.src.activations",
    "keras.src.losses",
    "keras.src.metrics",
    "keras.initializers",
    "keras.regularizers",
    "keras.constraints",
    "keras.ops",
    "keras.src.ops",
];

/// Checks one parsed Keras config.
pub(crate) fn check_config(v: &Json, loc: &str, sink: &mut Sink) {
    walk(v, loc, sink, 0);
}

fn walk(v: &Json, loc: &str, sink: &mut Sink, depth: u32) {
    if depth > 64 {
        sink.add(
            Severity::High,
            loc,
            None,
            "Keras config nested too deeply to check",
        );
        return;
    }
    match v {
        Json::Arr(a) => a.iter().for_each(|x| walk(x, loc, sink, depth + 1)),
        Json::Obj(m) => {
            let class = v.get("class_name").and_then(Json::as_str).unwrap_or("");
            let module = v.get("module").and_then(Json::as_str);
            let name = v
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Json::as_str)
                .unwrap_or("");
            match class {
                "Lambda" => sink.add(
                    Severity::Critical,
                    loc,
                    None,
                    format!("Lambda layer {name:?} carries Python code that runs on load"),
                ),
                "__lambda__" => sink.add(
                    Severity::Critical,
                    loc,
                    None,
                    "serialized __lambda__ function (marshalled bytecode)",
                ),
                "TFSMLayer" => sink.add(
                    Severity::High,
                    loc,
                    None,
                    format!(
                        "TFSMLayer {name:?} loads and runs a TensorFlow SavedModel from a path"
                    ),
                ),
                "function" => {
                    let fname = v.get("config").and_then(Json::as_str).unwrap_or("?");
                    let m = module.unwrap_or("");
                    if fname.contains("unsafe") {
                        sink.add(
                            Severity::Critical,
                            loc,
                            None,
                            format!("config calls {m}.{fname}, switching Keras safe mode off during load"),
                        );
                    } else if !FUNCTION_MODULES
                        .iter()
                        .any(|p| m == *p || m.starts_with(&format!("{p}.")))
                    {
                        sink.add(
                            Severity::High,
                            loc,
                            None,
                            format!("config references function {m}.{fname}"),
                        );
                    }
                }
                _ => {}
            }
            if let Some(m) = module {
                if !m.starts_with("keras") && class != "function" {
                    sink.add(
                        Severity::High,
                        loc,
                        None,
                        format!("config imports class {class} from module {m}"),
                    );
                }
            }
            // Preprocessing layers read vocabularies from a path at load time (arbitrary local
            // file read); a saved model carries its vocabulary inline as a list.
            if let Some(Json::Str(p)) = v.get("vocabulary") {
                sink.add(
                    Severity::High,
                    loc,
                    None,
                    format!("layer {name:?} loads its vocabulary from the path {p:?}"),
                );
            }
            for key in ["function_type", "output_shape_type"] {
                if v.get(key).and_then(Json::as_str) == Some("lambda") {
                    sink.add(
                        Severity::Critical,
                        loc,
                        None,
                        format!("{key} is lambda (marshalled bytecode)"),
                    );
                }
            }
            for (_, x) in m {
                walk(x, loc, sink, depth + 1);
            }
        }
        _ => {}
    }
}

/// Parses and checks a `.keras` `config.json`.
pub(crate) fn check_config_bytes(b: &[u8], loc: &str, sink: &mut Sink) {
    let mut dups = Vec::new();
    match json::parse(b, &mut dups) {
        Ok(v) => {
            for d in dups {
                sink.add(
                    Severity::Medium,
                    loc,
                    None,
                    format!("duplicate key {d:?} in Keras config"),
                );
            }
            check_config(&v, loc, sink);
        }
        Err(e) => sink.add(
            Severity::High,
            loc,
            Some(e.offset as u64),
            format!("Keras config is not valid JSON: {}", e.reason),
        ),
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Scans an HDF5 file for Keras configs.
pub(crate) fn scan_h5<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<(), Stop> {
    let mut pos = 0u64;
    let mut configs = 0usize;
    let mut mentions = false;
    let mut last_parsed_end = 0u64;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(CHUNK).min(CHUNK)];
    while pos < len {
        let n = read_at(r, pos, &mut buf)?;
        let chunk = buf.get(..n).unwrap_or(&[]);
        if find(chunk, b"model_config", 0).is_some() {
            mentions = true;
        }
        let mut from = 0;
        while let Some(i) = find(chunk, b"{\"class_name\"", from) {
            from = i + 1;
            let abs = pos + i as u64;
            if abs < last_parsed_end {
                continue;
            }
            let mut dups = Vec::new();
            if let Ok((v, used)) = json::parse_prefix(chunk.get(i..).unwrap_or(&[]), &mut dups) {
                configs += 1;
                last_parsed_end = abs + used as u64;
                check_config(&v, loc, sink);
                from = i + used;
            }
        }
        if n < CHUNK || pos + (n as u64) >= len {
            break;
        }
        pos += (CHUNK - OVERLAP) as u64;
    }
    if configs == 0 && mentions {
        sink.unscannable(format!(
            "{}HDF5 model_config is present but not stored as plain JSON; cannot check it",
            if loc.is_empty() {
                String::new()
            } else {
                format!("{loc}: ")
            }
        ));
    } else if configs == 0 {
        sink.add(
            Severity::Info,
            loc,
            None,
            "HDF5 file without a model config (weights only)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst(cfg: &str) -> Option<Severity> {
        let mut s = Sink::default();
        check_config_bytes(cfg.as_bytes(), "config.json", &mut s);
        s.findings.iter().map(|f| f.severity).max()
    }

    #[test]
    fn code_carrying_layers_are_found() {
        assert_eq!(
            worst(r#"{"class_name":"Lambda","config":{"name":"l"}}"#),
            Some(Severity::Critical)
        );
        assert_eq!(
            worst(
                r#"{"module":"keras.layers","class_name":"TFSMLayer","config":{"filepath":"/tmp/x"}}"#
            ),
            Some(Severity::High)
        );
        assert_eq!(
            worst(
                r#"{"module":"keras.config","class_name":"function","config":"enable_unsafe_deserialization"}"#
            ),
            Some(Severity::Critical)
        );
        assert_eq!(
            worst(r#"{"module":"os","class_name":"function","config":"system"}"#),
            Some(Severity::High)
        );
    }

    #[test]
    fn plain_dense_is_clean() {
        let c = r#"{"module":"keras","class_name":"Sequential","config":{"layers":[{"module":"keras.layers","class_name":"Dense","config":{"activation":"relu"}}]}}"#;
        assert_eq!(worst(c), None);
    }
}
