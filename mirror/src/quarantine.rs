//! The quarantine: where upstream bytes land while they are hashed and checked. Nothing here is
//! ever served. A [`Writer`] hashes every chunk before writing it, enforces the declared size, and
//! deletes its file when dropped unfinished; a [`Quarantined`] file is deleted when dropped
//! unpromoted. So an error, a cancelled fetch or a refusal leaves no debris.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use verifier::{HashOutcome, Hasher};

use crate::error::MirrorError;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// More bytes than the limit (the upstream-declared size).
    #[error("upstream sent more than the declared {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The disk write failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// A file being written into quarantine.
pub struct Writer {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    limit: u64,
    git_size: Option<u64>,
    done: bool,
}

impl Writer {
    /// Creates a fresh file in `dir` (`create_new`: two writers never share a path).
    pub(crate) fn create(
        dir: &Path,
        limit: u64,
        git_size: Option<u64>,
    ) -> Result<Writer, MirrorError> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.part", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(MirrorError::io(&path))?;
        Ok(Writer {
            file,
            path,
            hasher: Hasher::new(git_size),
            limit,
            git_size,
            done: false,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Hashes and appends a chunk. The size check comes first, so a lying upstream never gets a
    /// byte past the declared size onto disk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        if self.hasher.len() + chunk.len() as u64 > self.limit {
            return Err(WriteError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(MirrorError::io(&self.path))?;
        Ok(())
    }

    /// Discards everything written (an upstream that ignored our `Range` and restarted from 0).
    pub fn reset(&mut self) -> Result<(), MirrorError> {
        self.file.set_len(0).map_err(MirrorError::io(&self.path))?;
        self.file.rewind().map_err(MirrorError::io(&self.path))?;
        self.hasher = Hasher::new(self.git_size);
        Ok(())
    }

    /// Flushes to disk and returns the hashed file. The caller compares the outcome with what
    /// upstream declared before anything is promoted.
    pub fn finish(mut self) -> Result<Quarantined, MirrorError> {
        self.file.sync_all().map_err(MirrorError::io(&self.path))?;
        self.done = true;
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(None));
        Ok(Quarantined {
            path: self.path.clone(),
            outcome: hasher.finish(),
            promoted: false,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A complete, hashed file in quarantine, not yet verified or promoted.
pub struct Quarantined {
    path: PathBuf,
    outcome: HashOutcome,
    promoted: bool,
}

impl Quarantined {
    /// Where it lies (for scanners and signature checks to read).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Its digests and length.
    pub fn outcome(&self) -> &HashOutcome {
        &self.outcome
    }
    pub(crate) fn mark_promoted(&mut self) {
        self.promoted = true;
    }
}

impl Drop for Quarantined {
    fn drop(&mut self) {
        if !self.promoted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::Digest;

    #[test]
    fn hashes_enforces_limit_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 10, Some(6)).unwrap();
        w.write(b"hello\n").unwrap();
        assert!(matches!(
            w.write(b"12345"),
            Err(WriteError::TooLarge { limit: 10 })
        ));
        let q = w.finish().unwrap();
        assert_eq!(q.outcome().sha256, Digest::of(b"hello\n"));
        assert_eq!(std::fs::read(q.path()).unwrap(), b"hello\n");
        let p = q.path().to_owned();
        drop(q);
        assert!(!p.exists(), "unpromoted file must be deleted");

        let mut w = Writer::create(dir.path(), 10, None).unwrap();
        w.write(b"abc").unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "abandoned write must be deleted"
        );
    }

    #[test]
    fn reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 10, None).unwrap();
        w.write(b"garbage").unwrap();
        w.reset().unwrap();
        w.write(b"ok").unwrap();
        let q = w.finish().unwrap();
        assert_eq!(q.outcome().sha256, Digest::of(b"ok"));
        assert_eq!(std::fs::read(q.path()).unwrap(), b"ok");
    }
}
