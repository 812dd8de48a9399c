//! The labelled scan corpus (copied from the shared fixtures): every malicious file must be
//! refused and every benign one must be clean, with no file left unscannable or erroring.

use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan-corpus")
}

/// (file, label, format, family) rows of labels.csv.
fn labels() -> Vec<(String, String, String, String)> {
    let text =
        std::fs::read_to_string(corpus().join("labels.csv")).expect("labels.csv is checked in");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split(',');
            let mut next = || it.next().unwrap_or("").to_owned();
            (next(), next(), next(), next())
        })
        .collect()
}

#[test]
fn every_labelled_file_gets_its_verdict() {
    let mut failures = Vec::new();
    let rows = labels();
    assert!(rows.len() >= 100, "corpus incomplete: {} rows", rows.len());
    for (file, label, format, family) in &rows {
        let path = corpus().join("corpus").join(file);
        let f = std::fs::File::open(&path).expect("corpus file exists");
        let len = f.metadata().expect("metadata").len();
        let report = match verifier::scan(std::io::BufReader::new(f), len) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{file}: error {e}"));
                continue;
            }
        };
        let ok = match label.as_str() {
            "malicious" => !report.is_clean(),
            _ => report.is_clean(),
        };
        println!(
            "{:<9} {:<10} {:<24} {:<48} {:?} | {}",
            label,
            format,
            family,
            file,
            report.format,
            report.summary()
        );
        if !ok {
            failures.push(format!(
                "{file} ({label}): {} {:?}",
                report.summary(),
                report.findings
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} misjudged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn scan_corpus_file(rel: &str) -> verifier::ScanReport {
    let path = corpus().join("corpus").join(rel);
    let f = std::fs::File::open(&path).expect("corpus file exists");
    let len = f.metadata().expect("metadata").len();
    verifier::scan(std::io::BufReader::new(f), len).expect("scan")
}

/// Each technique is caught for its own reason, not only because the sample also happens to
/// carry an `os.system` pickle.
#[test]
fn techniques_are_named() {
    let cases: &[(&str, &str)] = &[
        ("torch/zip_bad_crc.pt", "CRC mismatch"),
        ("torch/zip_flag_0x40.pt", "encryption flag"),
        ("torch/zip_flag_encrypted.pt", "encryption flag"),
        ("torch/zip_name_mismatch.pt", "local header names"),
        ("pickle/trailing_garbage.pkl", "after the pickle's STOP"),
        ("pickle/proto_header_mismatch.pkl", "belongs to protocol 4"),
        ("pickle/getattr_import_chain.pkl", "builtins.getattr"),
        ("pickle/dotted_logging_os_system.pkl", "attribute path"),
        ("torch/dotted_torch_os.pt", "attribute path"),
        ("numpy/object_array_v1.npy", "object dtype"),
        ("safetensors/overlapping_offsets.safetensors", "overlaps"),
        ("safetensors/trailing_pickle.safetensors", "like a pickle"),
        ("gguf/malformed_kv_count.gguf", "cannot fit"),
        ("gguf/tensor_offset_oob.gguf", "beyond the end"),
        ("keras/enable_unsafe_then_lambda.keras", "Lambda layer"),
        (
            "onnx/external_data_traversal.onnx",
            "external data location",
        ),
        ("torch/legacy_tar.pt", "storages"),
    ];
    let mut missing = Vec::new();
    for (file, needle) in cases {
        let r = scan_corpus_file(file);
        let hit = r
            .findings
            .iter()
            .any(|f| f.message.contains(needle) || f.location.contains(needle));
        if !hit {
            missing.push(format!(
                "{file}: no finding mentions {needle:?}: {:#?}",
                r.findings
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The refusal line the mirror shows a client names the entry, the callable and the offset.
#[test]
fn summary_names_entry_callable_and_offset() {
    let r = scan_corpus_file("torch/zip_payload.pt");
    assert_eq!(r.format, verifier::Format::PytorchZip);
    let s = r.summary();
    assert!(s.starts_with("archive/data.pkl calls os.system"), "{s}");
    assert!(s.contains("at offset 0x"), "{s}");
}
