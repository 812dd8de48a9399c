//! The one conformance suite every `cas` backend must pass (the shape of distribution's storage
//! driver `testsuites`): run against the local backend always, and against a real Garage (the
//! S3-compatible store) started here when a `garage` binary is found (`AIRLOCK_GARAGE_BIN`, or
//! `garage` on PATH). With `AIRLOCK_REQUIRE_GARAGE=1` (set by `scripts/test.sh` when Garage is
//! installed) a missing binary fails the run instead of skipping the S3 half.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use futures_util::StreamExt;
use verifier::Digest;

use super::*;

/// Writes `bytes` to a fresh file under `dir` (a quarantine stand-in) and returns its path.
fn staged(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write staged file");
    path
}

fn put_bytes(cas: &Cas, dir: &Path, name: &str, bytes: &[u8]) -> Result<Put, CasError> {
    let path = staged(dir, name, bytes);
    let r = cas.put(Source::claimed(&path, Digest::of(bytes))?);
    let _ = std::fs::remove_file(&path);
    r
}

/// Collects a read, checking every chunk stays within `max_chunk` bytes.
async fn collect(stream: ByteStream, max_chunk: usize) -> std::io::Result<Vec<u8>> {
    let mut stream = stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        assert!(chunk.len() <= max_chunk, "a chunk of {} bytes", chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The suite. `scratch` is a local directory on the data disk for staged files.
fn conformance(cas: Cas, scratch: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = Digest::of(&bytes);
    let size = bytes.len() as u64;

    // Absent.
    assert!(!cas.has(&d).expect("has"));
    assert!(matches!(cas.size(&d), Err(CasError::NotFound { .. })));
    assert!(matches!(cas.read(&d, 0..1), Err(CasError::NotFound { .. })));

    // Put, has, size.
    assert_eq!(
        put_bytes(&cas, scratch, "a", &bytes).expect("put"),
        Put::New { size }
    );
    assert!(cas.has(&d).expect("has"));
    assert_eq!(cas.size(&d).expect("size"), size);

    // Reads: whole, first byte, last byte, middle; a range past the end is refused.
    let read = |range: Range<u64>| {
        let cas = cas.clone();
        rt.block_on(async move {
            collect(cas.read(&d, range)?, 1 << 20)
                .await
                .map_err(|e| CasError::Io {
                    path: "read".into(),
                    source: e,
                })
        })
    };
    assert_eq!(read(0..size).expect("whole"), bytes);
    assert_eq!(read(0..1).expect("first"), &bytes[..1]);
    assert_eq!(
        read(size - 1..size).expect("last"),
        &bytes[bytes.len() - 1..]
    );
    assert_eq!(read(4_000..60_123).expect("middle"), &bytes[4_000..60_123]);
    assert_eq!(read(7..7).expect("empty"), b"");
    for bad in [size - 1..size + 1, size..size + 1, size + 10..size + 20] {
        assert!(
            matches!(read(bad.clone()), Err(CasError::InvalidRange { .. })),
            "{bad:?}"
        );
    }
    assert_eq!(cas.read_small(&d, size).expect("small"), bytes);
    assert!(matches!(
        cas.read_small(&d, size - 1),
        Err(CasError::SizeMismatch { .. })
    ));
    let mut via_reader = Vec::new();
    std::io::Read::read_to_end(&mut cas.reader(&d).expect("reader"), &mut via_reader)
        .expect("read");
    assert_eq!(via_reader, bytes);

    // A second put of the same digest is a no-op and the blob is unchanged.
    assert_eq!(
        put_bytes(&cas, scratch, "a2", &bytes).expect("put again"),
        Put::Existing
    );
    assert_eq!(read(0..size).expect("whole"), bytes);

    // A wrong digest is refused and nothing is stored under it.
    let other = Digest::of(b"something else");
    let path = staged(scratch, "liar", &bytes);
    let r = cas.put(Source::claimed(&path, other).expect("source"));
    assert!(
        matches!(r, Err(CasError::DigestMismatch { claimed, actual }) if claimed == other && actual == d),
        "{r:?}"
    );
    assert!(!cas.has(&other).expect("has"));
    // Also when the file is larger than one part (the S3 backend's multipart path).
    let big: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 253) as u8).collect();
    let path = staged(scratch, "big-liar", &big);
    let r = cas.put(Source::claimed(&path, other).expect("source"));
    assert!(matches!(r, Err(CasError::DigestMismatch { .. })), "{r:?}");
    assert!(!cas.has(&other).expect("has"));
    let _ = std::fs::remove_file(&path);

    // Concurrent puts of one digest: all succeed, at least one stored it, the blob is intact.
    let racing: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let rd = Digest::of(&racing);
    let outcomes: Vec<Result<Put, CasError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (cas, racing) = (cas.clone(), &racing);
                s.spawn(move || put_bytes(&cas, scratch, &format!("race-{i}"), racing))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert!(outcomes.iter().any(|o| matches!(o, Ok(Put::New { .. }))));
    let whole = rt.block_on(async {
        let stream = cas.read(&rd, 0..racing.len() as u64).expect("read");
        collect(stream, 1 << 20).await.expect("read")
    });
    assert_eq!(whole, racing);

    // List names every blob with its size.
    let listed = cas.list().expect("list");
    for (digest, len) in [(d, size), (rd, racing.len() as u64)] {
        assert!(
            listed
                .iter()
                .any(|l| l.digest == Some(digest) && l.size == len),
            "{digest} missing from {listed:?}"
        );
    }

    // Delete: gone, and deleting again is not an error.
    cas.delete(&rd).expect("delete");
    assert!(!cas.has(&rd).expect("has"));
    cas.delete(&rd).expect("delete absent");
    assert!(!cas
        .list()
        .expect("list")
        .iter()
        .any(|l| l.digest == Some(rd)));
    assert!(cas.has(&d).expect("other blob stays"));

    // A 64 MiB blob, staged without holding it in memory, read back in bounded chunks.
    let path = scratch.join("large");
    let mut hasher = verifier::Hasher::new(None);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let block: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 239) as u8).collect();
        for i in 0..64u8 {
            let mut b = block.clone();
            b[0] = i;
            hasher.update(&b);
            f.write_all(&b).expect("write");
        }
        f.flush().expect("flush");
    }
    let ld = hasher.finish().sha256;
    assert_eq!(
        cas.put(Source::claimed(&path, ld).expect("source"))
            .expect("put large"),
        Put::New { size: 64 << 20 }
    );
    let _ = std::fs::remove_file(&path);
    let (digest, len) = rt.block_on(async {
        let mut stream = cas.read(&ld, 0..64 << 20).expect("read large");
        let mut h = verifier::Hasher::new(None);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            // Chunks stay small whatever the blob size: the read never buffers the blob.
            assert!(chunk.len() <= 1 << 20, "a chunk of {} bytes", chunk.len());
            h.update(&chunk);
        }
        let out = h.finish();
        (out.sha256, out.len)
    });
    assert_eq!((digest, len), (ld, 64 << 20));
    rt.shutdown_background();
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("quarantine");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let cas = Cas::Local(LocalCas::new(dir.path()).expect("open"));
    conformance(cas, &scratch);
}

#[test]
fn local_backend_keeps_the_existing_layout() {
    // A data dir written before the cas existed: `blobs/sha256/ab/abcdef…`.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Digest::of(b"old blob");
    let hex = d.hex();
    let shard = dir.path().join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&shard).expect("shard");
    std::fs::write(shard.join(&hex), b"old blob").expect("blob");
    std::fs::write(dir.path().join("blobs/sha256/stray"), b"x").expect("stray");
    let cas = Cas::Local(LocalCas::new(dir.path()).expect("open"));
    assert_eq!(cas.size(&d).expect("size"), 8);
    assert_eq!(cas.read_small(&d, 8).expect("read"), b"old blob");
    let listed = cas.list().expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|l| l.digest == Some(d)));
    let stray = listed.iter().find(|l| l.digest.is_none()).expect("stray");
    cas.delete_stray(&stray.location).expect("delete stray");
    assert_eq!(cas.list().expect("list").len(), 1);
}

/// A single-node Garage on 127.0.0.1, in a temporary directory, stopped on drop.
pub(crate) struct Garage {
    child: Child,
    pub settings: S3Settings,
    _dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The garage binary, if one is to be used.
fn garage_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AIRLOCK_GARAGE_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("garage"))
            .find(|p| p.is_file())
    });
    let required = std::env::var("AIRLOCK_REQUIRE_GARAGE").is_ok_and(|v| v == "1");
    assert!(
        on_path.is_some() || !required,
        "AIRLOCK_REQUIRE_GARAGE=1 but no garage binary (set AIRLOCK_GARAGE_BIN or put garage on PATH)"
    );
    on_path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Garage {
    /// Starts a node, lays it out, and creates a bucket and a key with read/write on it. None when
    /// there is no garage binary (and none is required).
    pub(crate) fn start() -> Option<Garage> {
        let bin = garage_bin()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let secret = Digest::of(dir.path().to_string_lossy().as_bytes()).hex();
        let conf = dir.path().join("garage.toml");
        let d = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#
            ),
        )
        .expect("garage.toml");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .arg("server")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start garage");
        let mut garage = Garage {
            child,
            settings: S3Settings {
                bucket: "airlock".into(),
                endpoint: Some(format!("http://127.0.0.1:{s3}")),
                region: "garage".into(),
                access_key_id: String::new(),
                secret_access_key: String::new(),
                prefix: "blobs".into(),
                cache: None,
            },
            _dir: dir,
        };
        let cli = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        };
        // The node answers its RPC port a moment after it starts.
        let mut node = Err(String::new());
        for _ in 0..100 {
            node = cli(&["node", "id", "-q"]);
            if node.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let node = node.expect("garage node id");
        let id = node.trim().split('@').next().unwrap_or_default().to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]).expect("layout assign");
        cli(&["layout", "apply", "--version", "1"]).expect("layout apply");
        cli(&["bucket", "create", "airlock"]).expect("bucket create");
        let key = cli(&["key", "create", "airlock-test"]).expect("key create");
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {name} in garage's answer: {key}"))
        };
        garage.settings.access_key_id = field("Key ID:");
        garage.settings.secret_access_key = field("Secret key:");
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "airlock",
            "--key",
            "airlock-test",
        ])
        .expect("bucket allow");
        Some(garage)
    }
}

#[test]
fn s3_backend_conforms_on_garage() {
    let Some(garage) = Garage::start() else {
        eprintln!("no garage binary: S3 conformance skipped (set AIRLOCK_GARAGE_BIN)");
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let cas = Cas::S3(S3Cas::open(&garage.settings).expect("open"));
    conformance(cas.clone(), scratch.path());
    // A second client (another replica, or this one restarted) sees the same blobs.
    let again = Cas::S3(S3Cas::open(&garage.settings).expect("open"));
    let d = Digest::of(
        &(0..100_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    assert_eq!(again.size(&d).expect("size"), 100_000);

    // With a disk cache: the first serve comes from the bucket and leaves a verified copy behind;
    // later serves are local files; deleting the blob deletes its copy.
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = garage.settings.clone();
    settings.cache = Some((cache_dir.path().to_owned(), 1 << 20));
    let cached = Cas::S3(S3Cas::open(&settings).expect("open"));
    assert!(matches!(cached.open(&d).expect("open"), Blob::Remote(_)));
    let mut copy = None;
    for _ in 0..200 {
        if let Blob::File(f) = cached.open(&d).expect("open") {
            copy = Some(f);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut copy.expect("the cache never held the blob"),
        &mut bytes,
    )
    .expect("read copy");
    assert_eq!(Digest::of(&bytes), d);
    cached.delete(&d).expect("delete");
    assert!(matches!(cached.open(&d), Err(CasError::NotFound { .. })));
    let left = walk(cache_dir.path());
    assert!(left.is_empty(), "copies left after delete: {left:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn credentials_come_from_the_default_profile_of_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("credentials");
    std::fs::write(
        &path,
        "[other]\naws_access_key_id = NO\naws_secret_access_key = NO\n\n[default]\n\
         aws_access_key_id = GKid\naws_secret_access_key = s3cr3t\n",
    )
    .expect("write");
    assert_eq!(
        super::credentials(Some(&path)).expect("credentials"),
        ("GKid".to_owned(), "s3cr3t".to_owned())
    );
    std::fs::write(&path, "aws_access_key_id = GKid\n").expect("write");
    assert!(matches!(
        super::credentials(Some(&path)),
        Err(CasError::Config(m)) if m.contains("aws_secret_access_key")
    ));
}
