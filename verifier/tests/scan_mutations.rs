//! A cheap, deterministic stand-in for the cargo-fuzz targets (fuzz/) that runs with the normal
//! test suite: every corpus file, truncated at many points and with random bytes flipped, must
//! still produce a report. A panic or an abort here is a bug; so is an error (the input is in
//! memory, so reading cannot fail).

use std::io::Cursor;
use std::path::Path;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn files(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(std::fs::read(&p).expect("fixture file"));
        }
    }
}

fn scan(bytes: &[u8]) {
    let n = bytes.len() as u64;
    verifier::scan(Cursor::new(bytes.to_vec()), n).expect("in-memory input cannot fail to read");
}

#[test]
fn mutated_corpus_never_panics() {
    let mut all = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan-corpus/corpus"),
        &mut all,
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // SCAN_MUTATIONS=1000 for a longer local run; the default keeps the suite fast.
    let rounds: usize = std::env::var("SCAN_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    for original in &all {
        for k in 0..12 {
            let cut = original.len() * k / 12;
            scan(original.get(..cut).unwrap_or(&[]));
        }
        for _ in 0..rounds {
            let mut b = original.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    // Bias towards values that stress length fields.
                    *x = match rng.below(4) {
                        0 => 0xff,
                        1 => 0x00,
                        2 => 0x80,
                        _ => rng.next() as u8,
                    };
                }
            }
            scan(&b);
        }
    }
}
