//! `cas`: the content-addressed blob store. The only module that knows where blob bytes live
//! (a directory on the data disk, or keys in an S3-compatible bucket) and builds their paths or
//! keys. Everything above it names a blob by its [`Digest`] only.
//!
//! The contract every backend keeps (checked by the one conformance suite in `tests.rs`, which
//! every backend must pass, as distribution's storage-driver `testsuites` do):
//! - **Written once, from a verified local file.** [`Cas::put`] takes a [`Source`]: a complete
//!   local file (in quarantine or an import's staging directory) and the digest it is stored
//!   under. A blob becomes visible under its digest only complete; there is no partial state a
//!   reader can see. The bytes are checked against the digest before they become visible unless
//!   the digest was computed from those very bytes as they were written ([`Source::hashed`]); a
//!   claimed digest that does not match is refused with [`CasError::DigestMismatch`] and nothing
//!   is stored.
//! - **Never overwritten.** A put of a digest that is already stored is a no-op
//!   ([`Put::Existing`]): content addressing means a second writer has nothing to add. Two puts of
//!   one digest racing each other both succeed and leave one intact blob.
//! - **Reads are ranged and bounded.** [`Cas::read`] streams `start..end` in chunks, a few ahead of
//!   the consumer, so memory per read does not grow with the blob. A range past the end is
//!   [`CasError::InvalidRange`], never a short read.
//! - **Delete is for eviction, gc and fsck repair only**: the index must stop naming a blob before
//!   its bytes go. Deleting an absent blob is not an error.
//! - **List** is for fsck and reindex: every stored object, with the digest its name states (or
//!   none, for an object Airlock did not write).
//!
//! All methods except [`Cas::read`] are blocking: call them from a thread that may block (a
//! `spawn_blocking` task or a CLI), never on an async worker.
//!
//! Why an enum and not a trait object: the set of backends is closed (local and S3), dispatch is a
//! `match` with no boxing of async calls, and the local backend keeps a file-level fast path
//! ([`Blob::File`], served memory-mapped) that a trait would have to expose through a downcast.

mod cache;
mod local;
mod s3;
#[cfg(test)]
mod tests;

use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use verifier::Digest;

pub(crate) use local::LocalCas;
pub(crate) use s3::{S3Cas, S3Settings};

/// Why a blob operation failed. Callers match on the kind, never on message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CasError {
    /// No blob is stored under this digest.
    #[error("blob {digest} is not stored")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// A read asked for bytes outside the blob.
    #[error("range {start}..{end} lies outside blob {digest} of {size} bytes")]
    InvalidRange {
        /// The blob.
        digest: Digest,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// A put's bytes do not hash to the digest they were offered under: nothing was stored.
    #[error("refused to store {claimed}: the file's bytes hash to {actual}")]
    DigestMismatch {
        /// The digest the put named.
        claimed: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A stored object is not the size its blob had when it was put (damage, or a hand edit).
    #[error("blob {digest}: stored object is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size expected.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The object store failed or refused a request.
    #[error("object store {op} of {key}: {source}")]
    Remote {
        /// What was being done (`put`, `head`, `get`, `delete`, `list`).
        op: &'static str,
        /// The object key.
        key: String,
        /// The client's error (HTTP status, connection failure, bad credentials).
        source: Box<object_store::Error>,
    },
    /// The backend cannot be set up (bad endpoint, missing credentials).
    #[error("[store] backend: {0}")]
    Config(String),
}

impl CasError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CasError {
        let path = path.into();
        move |source| CasError::Io { path, source }
    }
}

/// A complete local file offered to [`Cas::put`], and the digest it is to be stored under.
pub(crate) struct Source<'a> {
    path: &'a Path,
    digest: Digest,
    size: u64,
    proof: Proof,
}

/// Why the digest of a [`Source`] can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// Computed from these bytes as they were written (the quarantine writer hashes each chunk
    /// before it reaches the disk, and only this process writes into quarantine).
    Streamed,
    /// Only claimed by the caller: the backend hashes the file before it stores anything.
    Claimed,
}

impl<'a> Source<'a> {
    /// A quarantine file whose digest and size the hashing writer computed from its bytes.
    pub(crate) fn hashed(q: &'a crate::quarantine::Quarantined) -> Source<'a> {
        Source {
            path: q.path(),
            digest: q.outcome().sha256,
            size: q.outcome().len,
            proof: Proof::Streamed,
        }
    }

    /// A file the caller says holds `digest`; the put checks it.
    pub(crate) fn claimed(path: &'a Path, digest: Digest) -> Result<Source<'a>, CasError> {
        let size = std::fs::metadata(path).map_err(CasError::io(path))?.len();
        Ok(Source {
            path,
            digest,
            size,
            proof: Proof::Claimed,
        })
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// The blob is now stored (`size` new bytes).
    New {
        /// Its size.
        size: u64,
    },
    /// It was already stored: nothing was written.
    Existing,
}

/// One stored object, as [`Cas::list`] reports it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The digest its name states; `None` for an object Airlock did not write (a stray file).
    pub digest: Option<Digest>,
    /// Where it is, for people (a path or an object key).
    pub location: String,
    /// Its size.
    pub size: u64,
    /// Local: when it was last served (serving refreshes the mtime); S3: when it was stored.
    pub used: SystemTime,
}

/// A stream of blob bytes, in chunks, with bounded read-ahead.
pub type ByteStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// An opened blob, ready to serve.
pub enum Blob {
    /// A local file (the local backend): served memory-mapped, chunk by chunk.
    File(std::fs::File),
    /// A remote object: served by ranged reads.
    Remote(RemoteBlob),
}

/// A blob in an object store, opened for ranged reads.
pub struct RemoteBlob {
    cas: Cas,
    digest: Digest,
}

impl RemoteBlob {
    /// Streams `start..start + len` of the blob. Memory stays bounded: the object store's
    /// response is read a few chunks ahead of the consumer. A range outside the blob yields one
    /// error item (the caller has already checked it against the size it serves). Call inside a
    /// Tokio runtime.
    pub fn stream(self, start: u64, len: u64) -> ByteStream {
        let range = start..start.saturating_add(len);
        match self.cas.read(&self.digest, range) {
            Ok(s) => s,
            Err(e) => Box::pin(futures_util::stream::once(async move {
                Err(std::io::Error::other(e.to_string()))
            })),
        }
    }
}

/// The blob store: one of its backends.
#[derive(Clone)]
pub(crate) enum Cas {
    /// A directory on the data disk (the default).
    Local(LocalCas),
    /// An S3-compatible bucket.
    S3(S3Cas),
}

impl Cas {
    /// Stores `src` under its digest, once (see the module contract). Blocking.
    pub(crate) fn put(&self, src: Source<'_>) -> Result<Put, CasError> {
        match self {
            Cas::Local(c) => c.put(src),
            Cas::S3(c) => c.put(src),
        }
    }

    /// Whether a blob is stored. Blocking.
    pub(crate) fn has(&self, digest: &Digest) -> Result<bool, CasError> {
        match self.size(digest) {
            Ok(_) => Ok(true),
            Err(CasError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A stored blob's size; [`CasError::NotFound`] if it is not stored. Blocking.
    pub(crate) fn size(&self, digest: &Digest) -> Result<u64, CasError> {
        match self {
            Cas::Local(c) => c.size(digest),
            Cas::S3(c) => c.size(digest),
        }
    }

    /// Streams `range` of a blob. The range is checked against the blob's size first: one that
    /// ends past the blob is [`CasError::InvalidRange`]. Call inside a Tokio runtime (the stream
    /// is fed by a blocking task or by the object store's client).
    pub(crate) fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream, CasError> {
        let size = self.size(digest)?;
        if range.start > range.end || range.end > size {
            return Err(CasError::InvalidRange {
                digest: *digest,
                start: range.start,
                end: range.end,
                size,
            });
        }
        Ok(match self {
            Cas::Local(c) => c.stream(digest, range),
            Cas::S3(c) => c.stream(*digest, range),
        })
    }

    /// Opens a blob for serving: the local file itself, or a handle for ranged reads. Blocking.
    pub(crate) fn open(&self, digest: &Digest) -> Result<Blob, CasError> {
        match self {
            Cas::Local(c) => c.open(digest).map(Blob::File),
            Cas::S3(c) => {
                if let Some(file) = c.cached(digest) {
                    return Ok(Blob::File(file));
                }
                // Fails now, not mid-response, if the object is gone.
                let size = c.size(digest)?;
                c.warm(*digest, size);
                Ok(Blob::Remote(RemoteBlob {
                    cas: self.clone(),
                    digest: *digest,
                }))
            }
        }
    }

    /// A blocking reader over a whole blob (for hashing, export, small reads). Blocking.
    pub(crate) fn reader(
        &self,
        digest: &Digest,
    ) -> Result<Box<dyn std::io::Read + Send>, CasError> {
        self.reader_from(digest, 0)
    }

    /// A blocking reader over a blob from byte `from` on (past the end: nothing). Blocking.
    pub(crate) fn reader_from(
        &self,
        digest: &Digest,
        from: u64,
    ) -> Result<Box<dyn std::io::Read + Send>, CasError> {
        match self {
            Cas::Local(c) => {
                use std::io::Seek;
                let mut f = c.open(digest)?;
                f.seek(std::io::SeekFrom::Start(from))
                    .map_err(CasError::io(c.path(digest)))?;
                Ok(Box::new(f))
            }
            Cas::S3(c) => c.reader(*digest, from),
        }
    }

    /// Reads a whole blob of at most `limit` bytes; a larger one is [`CasError::SizeMismatch`].
    /// Blocking.
    pub(crate) fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, CasError> {
        let size = self.size(digest)?;
        if size > limit {
            return Err(CasError::SizeMismatch {
                digest: *digest,
                expected: limit,
                actual: size,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        std::io::Read::read_to_end(&mut self.reader(digest)?.take(limit + 1), &mut out).map_err(
            |source| CasError::Io {
                path: PathBuf::from(digest.to_string()),
                source,
            },
        )?;
        Ok(out)
    }

    /// Removes a blob (eviction, gc and fsck repair only). Absent is not an error. Blocking.
    pub(crate) fn delete(&self, digest: &Digest) -> Result<(), CasError> {
        match self {
            Cas::Local(c) => c.delete(digest),
            Cas::S3(c) => c.delete(digest),
        }
    }

    /// Removes an object that is not a blob (what [`Cas::list`] reported without a digest).
    /// Blocking.
    pub(crate) fn delete_stray(&self, location: &str) -> Result<(), CasError> {
        match self {
            Cas::Local(c) => c.delete_stray(location),
            Cas::S3(c) => c.delete_stray(location),
        }
    }

    /// Every stored object, sorted by location. Blocking.
    pub(crate) fn list(&self) -> Result<Vec<Listed>, CasError> {
        match self {
            Cas::Local(c) => c.list(),
            Cas::S3(c) => c.list(),
        }
    }

    /// Which backend this is, for logs and reports.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Cas::Local(_) => "local",
            Cas::S3(_) => "s3",
        }
    }
}

/// The blob store `[store]` names, for the data directory `data_dir`. Blocking (the local
/// backend creates its directory; the S3 backend makes no request until used).
pub(crate) fn open(data_dir: &Path, cfg: &crate::config::StoreConfig) -> Result<Cas, CasError> {
    use crate::config::StoreBackend;
    match cfg.backend {
        StoreBackend::Local => Ok(Cas::Local(LocalCas::new(data_dir)?)),
        StoreBackend::S3 => {
            let bucket = cfg
                .bucket
                .clone()
                .ok_or_else(|| CasError::Config("backend = \"s3\" needs a bucket".into()))?;
            let (access_key_id, secret_access_key) = credentials(cfg.credentials_file.as_deref())?;
            Ok(Cas::S3(S3Cas::open(&S3Settings {
                bucket,
                endpoint: cfg.endpoint.clone(),
                region: cfg.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key_id,
                secret_access_key,
                prefix: "blobs".into(),
                cache: cfg
                    .cache_dir
                    .clone()
                    .map(|dir| (dir, cfg.cache_max_bytes.unwrap_or(DEFAULT_CACHE_BYTES))),
            })?))
        }
    }
}

/// `[store] cache_max_bytes` when only `cache_dir` is given.
const DEFAULT_CACHE_BYTES: u64 = 10 << 30;

/// The object store's credentials: from `file` (AWS credentials file format, its `[default]`
/// profile or its only one), else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
fn credentials(file: Option<&Path>) -> Result<(String, String), CasError> {
    let (mut id, mut secret) = (None, None);
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(CasError::io(path))?;
        let mut section = String::from("default");
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            if section != "default" {
                continue;
            }
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        if id.is_none() || secret.is_none() {
            return Err(CasError::Config(format!(
                "{}: needs aws_access_key_id and aws_secret_access_key lines",
                path.display()
            )));
        }
    } else {
        id = std::env::var("AWS_ACCESS_KEY_ID").ok();
        secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok();
    }
    match (id, secret) {
        (Some(i), Some(s)) if !i.is_empty() && !s.is_empty() => Ok((i, s)),
        _ => Err(CasError::Config(
            "backend = \"s3\" needs credentials: credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        )),
    }
}

/// Hashes a local file (a claimed [`Source`]), streaming.
fn hash_file(path: &Path) -> Result<(Digest, u64), CasError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(CasError::io(path))?;
    let mut hasher = verifier::Hasher::new(None);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(CasError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let out = hasher.finish();
    Ok((out.sha256, out.len))
}

/// The key (relative path) of a blob: `sha256/ab/abcdef…`, the layout data dirs have always had.
fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("sha256/{}/{hex}", &hex[..2])
}

/// The digest a key names, if it is a blob key (`sha256/ab/ab…`, shard matching).
fn digest_of_key(key: &str) -> Option<Digest> {
    let rest = key.strip_prefix("sha256/")?;
    let (shard, hex) = rest.split_once('/')?;
    let d = Digest::from_hex(hex).ok()?;
    (shard.len() == 2 && hex.starts_with(shard) && d.hex() == hex).then_some(d)
}
