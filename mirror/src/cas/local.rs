//! The local backend: `data_dir/blobs/sha256/ab/abcdef…`, exactly the layout data directories have
//! always had, so existing ones keep working unchanged. The quarantine lies on the same
//! filesystem, so a put is a hard link (atomic, and it fails rather than replace an existing
//! name) followed by removing the quarantine name: no byte is copied.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use verifier::Digest;

use super::{blob_key, digest_of_key, hash_file, ByteStream, CasError, Listed, Proof, Put, Source};

/// Bytes per chunk of a streamed read.
const CHUNK: usize = 512 * 1024;
/// Chunks read ahead of the consumer per stream.
const AHEAD: usize = 2;

/// Blobs in a directory.
#[derive(Debug, Clone)]
pub(crate) struct LocalCas {
    /// `data_dir/blobs`: keys (`sha256/ab/…`) are relative to it.
    root: PathBuf,
}

/// fsyncs a directory, so the entries created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), CasError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CasError::io(dir))
}

impl LocalCas {
    /// The blob directory of `data_dir` (created if missing). Blocking.
    pub(crate) fn new(data_dir: &Path) -> Result<LocalCas, CasError> {
        let root = data_dir.join("blobs");
        let sha = root.join("sha256");
        std::fs::create_dir_all(&sha).map_err(CasError::io(&sha))?;
        Ok(LocalCas { root })
    }

    /// The blob directory of `data_dir`, creating nothing (for a check that must leave a data
    /// directory untouched, such as an import that may yet be refused).
    pub(crate) fn at(data_dir: &Path) -> LocalCas {
        LocalCas {
            root: data_dir.join("blobs"),
        }
    }

    /// Where a blob's file is (whether or not it exists).
    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_key(digest))
    }

    pub(super) fn put(&self, src: Source<'_>) -> Result<Put, CasError> {
        let target = self.path(&src.digest);
        if target.is_file() {
            return Ok(Put::Existing);
        }
        if src.proof == Proof::Claimed {
            let (actual, _) = hash_file(src.path)?;
            if actual != src.digest {
                return Err(CasError::DigestMismatch {
                    claimed: src.digest,
                    actual,
                });
            }
        }
        let size = std::fs::metadata(src.path)
            .map_err(CasError::io(src.path))?
            .len();
        if size != src.size {
            return Err(CasError::SizeMismatch {
                digest: src.digest,
                expected: src.size,
                actual: size,
            });
        }
        let shard = target.parent().unwrap_or(&self.root);
        if !shard.is_dir() {
            std::fs::create_dir_all(shard).map_err(CasError::io(shard))?;
            // A new shard directory is itself an entry of `blobs/sha256/`: without this sync a
            // crash could lose the directory, and with it the blob the index points at.
            sync_dir(&self.root.join("sha256"))?;
        }
        crate::crash::point("promote.before");
        // A hard link never replaces an existing name: of two puts racing on one digest, one
        // links and the other finds the blob there, and no reader ever sees a name change inode.
        let put = match std::fs::hard_link(src.path, &target) {
            Ok(()) => Put::New { size },
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Put::Existing,
            // A filesystem without hard links (some FUSE and network mounts): the rename that
            // promotion always used, after the existence check above.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                std::fs::rename(src.path, &target).map_err(CasError::io(&target))?;
                Put::New { size }
            }
            Err(e) => return Err(CasError::io(&target)(e)),
        };
        crate::crash::point("promote.renamed");
        // The quarantine name goes either way (the caller would delete it too).
        let _ = std::fs::remove_file(src.path);
        if let Put::New { .. } = put {
            // Make the new name durable before the index points at it. A failure is returned,
            // so nothing indexes a blob whose name may not survive a crash.
            sync_dir(shard)?;
        }
        Ok(put)
    }

    pub(super) fn size(&self, digest: &Digest) -> Result<u64, CasError> {
        let path = self.path(digest);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(CasError::NotFound { digest: *digest }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(CasError::NotFound { digest: *digest })
            }
            Err(e) => Err(CasError::io(path)(e)),
        }
    }

    pub(super) fn open(&self, digest: &Digest) -> Result<std::fs::File, CasError> {
        let path = self.path(digest);
        std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CasError::NotFound { digest: *digest },
            _ => CasError::io(path)(e),
        })
    }

    /// Streams `range` (already checked against the size) from a blocking task, at most
    /// [`AHEAD`] chunks ahead of the consumer; it stops when the consumer goes away.
    pub(super) fn stream(&self, digest: &Digest, range: Range<u64>) -> ByteStream {
        let opened = self.open(digest);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(AHEAD);
        tokio::task::spawn_blocking(move || {
            let file = match opened {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let mut pos = range.start;
            while pos < range.end {
                let n = CHUNK.min((range.end - pos) as usize);
                let mut buf = vec![0u8; n];
                let read = file.read_exact_at(&mut buf, pos).map(|()| buf.into());
                let failed = read.is_err();
                if tx.blocking_send(read).is_err() || failed {
                    return;
                }
                pos += n as u64;
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    pub(super) fn delete(&self, digest: &Digest) -> Result<(), CasError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CasError::io(path)(e)),
        }
    }

    pub(super) fn delete_stray(&self, location: &str) -> Result<(), CasError> {
        let path = Path::new(location);
        // Only ever a file under the blob directory.
        if !path.starts_with(&self.root) {
            return Err(CasError::Config(format!(
                "{location} is not under {}",
                self.root.display()
            )));
        }
        std::fs::remove_file(path).map_err(CasError::io(path))
    }

    pub(super) fn list(&self) -> Result<Vec<Listed>, CasError> {
        let top = self.root.join("sha256");
        let mut out = Vec::new();
        let stat = |path: &Path, digest: Option<Digest>| -> Listed {
            let meta = std::fs::metadata(path).ok();
            Listed {
                digest,
                location: path.display().to_string(),
                size: meta.as_ref().map_or(0, |m| m.len()),
                used: meta
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH),
            }
        };
        for shard in std::fs::read_dir(&top).map_err(CasError::io(&top))? {
            let shard = shard.map_err(CasError::io(&top))?.path();
            if !shard.is_dir() {
                out.push(stat(&shard, None));
                continue;
            }
            for entry in std::fs::read_dir(&shard).map_err(CasError::io(&shard))? {
                let path = entry.map_err(CasError::io(&shard))?.path();
                let digest = path
                    .strip_prefix(&self.root)
                    .ok()
                    .and_then(|k| k.to_str())
                    .and_then(digest_of_key)
                    .filter(|_| path.is_file());
                out.push(stat(&path, digest));
            }
        }
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }
}
