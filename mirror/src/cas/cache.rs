//! A size-limited local disk cache of hot object-store blobs (`[store] cache_dir`,
//! `cache_max_bytes`). A blob served from the bucket is copied here in the background, hashed as it
//! is written and renamed into place only if it hashes to its name; from then on it is served as a
//! local file (memory-mapped, like the local backend). Least recently served copies go first when
//! the cache is over its limit. The bucket stays the source of truth: a cache entry is only ever a
//! verified copy, and deleting a blob deletes its copy first.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use verifier::Digest;

use super::{blob_key, digest_of_key, CasError};

/// How stale a copy's mtime may get before serving refreshes it (as the local backend does).
const TOUCH_EVERY: Duration = Duration::from_secs(600);

/// The cache directory and its accounting.
pub(super) struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
    /// Blobs being copied in now: one copy per blob at a time.
    filling: Mutex<HashSet<Digest>>,
}

impl DiskCache {
    /// Opens `dir` (created if missing), dropping copies a crash left half-written.
    pub(super) fn open(dir: &Path, max_bytes: u64) -> Result<DiskCache, CasError> {
        std::fs::create_dir_all(dir.join("sha256")).map_err(CasError::io(dir))?;
        let cache = DiskCache {
            dir: dir.to_owned(),
            max_bytes,
            bytes: AtomicU64::new(0),
            filling: Mutex::new(HashSet::new()),
        };
        let mut total = 0;
        for (path, digest, size, _) in cache.entries()? {
            if digest.is_none() {
                let _ = std::fs::remove_file(&path);
            } else {
                total += size;
            }
        }
        cache.bytes.store(total, Ordering::Relaxed);
        Ok(cache)
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(blob_key(digest))
    }

    /// The verified copy of a blob, if there is one (marked as recently served).
    pub(super) fn get(&self, digest: &Digest) -> Option<std::fs::File> {
        let file = std::fs::File::open(self.path(digest)).ok()?;
        let now = SystemTime::now();
        let stale = file
            .metadata()
            .and_then(|m| m.modified())
            .map_or(true, |t| {
                now.duration_since(t).unwrap_or_default() >= TOUCH_EVERY
            });
        if stale {
            let _ = file.set_modified(now);
        }
        Some(file)
    }

    /// Whether a copy of `digest` (of `size` bytes) should be made now: it fits, is not there,
    /// and is not being made. The caller must call [`DiskCache::fill`] after a `true`.
    pub(super) fn claim(&self, digest: &Digest, size: u64) -> bool {
        if size > self.max_bytes || self.path(digest).is_file() {
            return false;
        }
        self.filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*digest)
    }

    /// Copies a blob in from `reader`, hashing as it writes; keeps it only if it hashes to its
    /// name and has `size` bytes. Then trims the cache to its limit. Blocking.
    pub(super) fn fill(&self, digest: Digest, size: u64, reader: impl Read) {
        let result = self.copy_in(digest, size, reader);
        self.filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest);
        match result {
            Ok(()) => {
                self.bytes.fetch_add(size, Ordering::Relaxed);
                self.trim();
            }
            Err(e) => tracing::warn!(%digest, error = %e, "blob cache: copy not kept"),
        }
    }

    fn copy_in(&self, digest: Digest, size: u64, mut reader: impl Read) -> Result<(), CasError> {
        let target = self.path(&digest);
        let shard = target.parent().unwrap_or(&self.dir).to_owned();
        std::fs::create_dir_all(&shard).map_err(CasError::io(&shard))?;
        // Not a blob name, so an interrupted copy is recognised (and removed) at the next open.
        let tmp = shard.join(format!("{}.part", digest.hex()));
        let mut out = std::fs::File::create(&tmp).map_err(CasError::io(&tmp))?;
        let mut hasher = verifier::Hasher::new(None);
        let mut buf = vec![0u8; 1 << 20];
        let copied = (|| -> Result<(), CasError> {
            loop {
                let n = reader.read(&mut buf).map_err(CasError::io(&tmp))?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(CasError::io(&tmp))?;
            }
        })();
        let outcome = hasher.finish();
        let checked = copied.and_then(|()| {
            if outcome.sha256 != digest {
                Err(CasError::DigestMismatch {
                    claimed: digest,
                    actual: outcome.sha256,
                })
            } else if outcome.len != size {
                Err(CasError::SizeMismatch {
                    digest,
                    expected: size,
                    actual: outcome.len,
                })
            } else {
                Ok(())
            }
        });
        if let Err(e) =
            checked.and_then(|()| std::fs::rename(&tmp, &target).map_err(CasError::io(&target)))
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Drops a blob's copy (before the blob itself is deleted).
    pub(super) fn remove(&self, digest: &Digest) {
        let path = self.path(digest);
        if let Ok(m) = std::fs::metadata(&path) {
            if std::fs::remove_file(&path).is_ok() {
                self.bytes
                    .fetch_sub(m.len().min(self.bytes()), Ordering::Relaxed);
            }
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Removes least recently served copies until the cache is within its limit.
    fn trim(&self) {
        if self.bytes() <= self.max_bytes {
            return;
        }
        let Ok(mut entries) = self.entries() else {
            return;
        };
        entries.retain(|e| e.1.is_some());
        entries.sort_by_key(|e| e.3);
        for (path, _, size, _) in entries {
            if self.bytes() <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                self.bytes
                    .fetch_sub(size.min(self.bytes()), Ordering::Relaxed);
            }
        }
    }

    /// Every file in the cache: (path, digest its name states, size, mtime).
    #[allow(clippy::type_complexity)]
    fn entries(&self) -> Result<Vec<(PathBuf, Option<Digest>, u64, SystemTime)>, CasError> {
        let top = self.dir.join("sha256");
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&top)
            .map_err(CasError::io(&top))?
            .flatten()
        {
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                let digest = path
                    .strip_prefix(&self.dir)
                    .ok()
                    .and_then(|k| k.to_str())
                    .and_then(digest_of_key);
                let meta = f.metadata().ok();
                out.push((
                    path,
                    digest,
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                ));
            }
        }
        Ok(out)
    }
}
