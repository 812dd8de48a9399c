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
