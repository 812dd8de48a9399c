//! A stable-Rust fuzz harness for what the front doors parse from the network before anything
//! else runs: Hugging Face routes (method + raw path), OCI routes, `Range` headers, and the
//! `Forwarded` / `X-Forwarded-*` headers and authorities the public base is built from. cargo-fuzz
//! needs a toolchain this workspace's CI does not have, so this is a `cargo test` loop: seed
//! inputs mutated by a seeded PRNG (byte edits, percent-encodings, separators, dot segments,
//! Unicode, length). The property is no panic, plus each parser's own invariants on what it
//! accepts (a resolved file path has no dot or empty segment, a repo id has at most one `/`, a
//! range lies inside the file).
//!
//! `AIRLOCK_FUZZ_EXECS` sets the inputs per target (default 20000, so `cargo test` stays quick);
//! `AIRLOCK_FUZZ_SEED` the PRNG seed. `scripts/fuzz.sh` runs it with 10 M per target.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

/// xorshift64*: deterministic, so a failing seed reproduces.
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
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const PIECES: &[&str] = &[
    "/",
    "//",
    "%2F",
    "%2f",
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%00",
    "%",
    "%zz",
    "%c3%a9",
    "é",
    "\u{202e}",
    " ",
    "?",
    "#",
    ";",
    ":",
    "@",
    "-",
    "_",
    "~",
    "refs%2Fpr%2F1",
    "resolve",
    "tree",
    "revision",
    "main",
    "api",
    "models",
    "datasets",
    "blobs",
    "manifests",
    "v2",
    "sha256:",
    "latest",
    "0",
    "bytes=",
    ",",
    "=",
    "\"",
    "\\",
    "\t",
    "\r\n",
    "[",
    "]",
    "[::1]",
    "127.0.0.1",
    ":65536",
    "18446744073709551615",
    "-1",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// One mutation of `seed`: a few edits at random char boundaries.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s = seed.to_owned();
    for _ in 0..1 + rng.below(4) {
        let cut = |s: &str, rng: &mut Rng| {
            let mut i = rng.below(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match rng.below(7) {
            0 | 1 => {
                let i = cut(&s, rng);
                s.insert_str(i, rng.pick(PIECES));
            }
            2 => {
                let (a, b) = (cut(&s, rng), cut(&s, rng));
                s.replace_range(a.min(b)..a.max(b), "");
            }
            3 => {
                let i = cut(&s, rng);
                let byte = (rng.next() & 0x7f) as u8 as char;
                s.insert(i, byte);
            }
            4 => {
                let (a, b) = (cut(&s, rng), cut(&s, rng));
                let part = s[a.min(b)..a.max(b)].to_owned();
                s.insert_str(a.max(b), &part);
            }
            5 => {
                let i = cut(&s, rng);
                s.truncate(i);
            }
            _ => {
                let n = rng.below(3000);
                let i = cut(&s, rng);
                s.insert_str(i, &"a/".repeat(n / 2));
            }
        }
    }
    s
}

fn execs() -> usize {
    std::env::var("AIRLOCK_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn rng() -> Rng {
    let seed = std::env::var("AIRLOCK_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_a1f1_0c4b_u64);
    Rng(seed | 1)
}

/// Runs `check` on `execs()` mutations of the seeds; prints the count (for fuzz.sh's report).
fn run(target: &str, seeds: &[&str], mut check: impl FnMut(&str)) {
    let (n, mut rng) = (execs(), rng());
    for i in 0..n {
        let input = if i < seeds.len() {
            seeds[i].to_owned()
        } else {
            let seed = seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        check(&input);
    }
    println!("fuzz {target}: {n} execs, no failure");
}

#[test]
fn hf_routes() {
    let seeds = [
        "/api/models/acme/tiny",
        "/api/models/acme/tiny/revision/main",
        "/api/datasets/acme/tiny-ds/tree/main/sub/dir?recursive=1",
        "/api/models/gpt2/paths-info/refs%2Fpr%2F1",
        "/acme/tiny/resolve/main/config.json",
        "/datasets/acme/tiny-ds/resolve/0123456789abcdef0123456789abcdef01234567/a/b.txt",
        "/api/models/acme/tiny/xet-read-token/main",
        "/healthz",
    ];
    run("hf_routes", &seeds, |input| {
        for method in ["GET", "HEAD", "POST"] {
            if let Ok(route) = crate::hf::route::parse(method, input) {
                use crate::hf::route::Route;
                let (repo, path) = match &route {
                    Route::Info { repo, .. } | Route::PathsInfo { repo, .. } => (Some(repo), None),
                    Route::Tree { repo, path, .. } => (Some(repo), path.as_ref()),
                    Route::Resolve { repo, path, .. } => (Some(repo), Some(path)),
                    Route::XetToken | Route::Health => (None, None),
                };
                if let Some(repo) = repo {
                    let id = repo.id.as_str();
                    assert!(id.matches('/').count() <= 1, "{input:?} -> repo {id:?}");
                }
                if let Some(p) = path {
                    let p = p.as_str();
                    assert!(
                        !p.starts_with('/')
                            && p.split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
                        "{input:?} -> path {p:?}"
                    );
                }
            }
        }
    });
}

#[test]
fn oci_routes() {
    let seeds = [
        "/v2/",
        "/v2/library/tiny/manifests/latest",
        "/v2/library/tiny/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/v2/library/tiny/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/v2/a/b/c/blobs/sha256:00",
    ];
    run("oci_routes", &seeds, |input| {
        let _ = crate::ollama::parse_route(input);
    });
}

#[test]
fn range_headers() {
    let seeds = [
        "bytes=0-",
        "bytes=0-99",
        "bytes=-5",
        "bytes=10-5",
        "bytes=1-2,3-4",
        "bytes= 7 - 9 ",
    ];
    let mut sizes = rng();
    run("range_headers", &seeds, |input| {
        let size = match sizes.below(4) {
            0 => 0,
            1 => 1,
            2 => sizes.next() % 10_000,
            _ => u64::MAX,
        };
        if let crate::blob::RangeAsk::Part { start, len } =
            crate::blob::parse_range(Some(input), size)
        {
            assert!(
                len >= 1 && start < size && start.checked_add(len).is_some_and(|e| e <= size),
                "{input:?} size {size} -> {start}+{len}"
            );
        }
    });
}

#[test]
fn forwarded_headers() {
    let seeds = [
        "for=1.2.3.4;proto=https;host=models.example.org",
        "proto=http;host=\"[::1]:8080\", proto=https",
        "models.example.org:443",
        "[2001:db8::1]:8443",
    ];
    run("forwarded_headers", &seeds, |input| {
        let _ = crate::origin::valid_authority(input);
        let Ok(value) = HeaderValue::from_str(input) else {
            return;
        };
        for name in ["forwarded", "x-forwarded-host", "x-forwarded-proto"] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), value.clone());
            let (proto, host) = crate::origin::forwarded(&h);
            if let Some(host) = host {
                let _ = crate::origin::valid_authority(&host);
            }
            let _ = proto;
        }
    });
}
