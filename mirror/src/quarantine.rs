//! The quarantine: where upstream bytes land while they are hashed and checked. Nothing here is
//! ever served. A [`Writer`] hashes every chunk before writing it, enforces the declared size, and
//! deletes its file when dropped unfinished; a [`Quarantined`] file is deleted when dropped
//! unpromoted. So an error, a cancelled fetch or a refusal leaves no debris.
//!
//! Bytes may arrive out of order (a parallel ranged fetch writes each range at its offset). The
//! digest is computed over the contiguous prefix only, as it grows: a chunk that extends the prefix
//! is hashed from memory, and a stretch written ahead of it is read back from this very file once
//! the prefix reaches it. So the digest always covers exactly the bytes on disk, and [`Writer::finish`]
//! refuses a file with a hole.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
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
    /// A stretch was written twice (a range overlapping one already written): a fetch bug or a
    /// lying upstream; either way the file cannot be trusted to be what was hashed.
    #[error("bytes {start}..{end} were written twice")]
    Overlap {
        /// First byte of the offending write.
        start: u64,
        /// One past its last byte.
        end: u64,
    },
    /// `finish` was called with bytes missing.
    #[error("only {have} of {limit} bytes arrived")]
    Incomplete {
        /// Contiguous bytes from the start.
        have: u64,
        /// The declared size.
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
    /// Stretches written past the hashed prefix, not yet hashed: start → end, never overlapping.
    ahead: BTreeMap<u64, u64>,
    done: bool,
}

/// Read-back block when the hashed prefix catches up with bytes written ahead of it.
const READ_BACK: usize = 1 << 20;

impl Writer {
    /// Creates a fresh file in `dir` (`create_new`: two writers never share a path).
    pub(crate) fn create(
        dir: &Path,
        limit: u64,
        git_size: Option<u64>,
    ) -> Result<Writer, MirrorError> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.part", std::process::id()));
        // Readable too: stretches written ahead of the hashed prefix are read back to be hashed.
        let file = OpenOptions::new()
            .read(true)
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
            ahead: BTreeMap::new(),
            done: false,
        })
    }

    /// Bytes hashed so far: the contiguous prefix from byte 0.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Hashes and appends a chunk at the end of the hashed prefix.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        self.write_at(self.hasher.len(), chunk)
    }

    /// Writes a chunk at `offset`. The size check comes first, so a lying upstream never gets a
    /// byte past the declared size onto disk; a chunk overlapping bytes already written is refused.
    /// A chunk that extends the hashed prefix is hashed from memory; one further on is hashed later,
    /// read back from the file, when the prefix reaches it.
    pub fn write_at(&mut self, offset: u64, chunk: &[u8]) -> Result<(), WriteError> {
        let end = offset
            .checked_add(chunk.len() as u64)
            .filter(|e| *e <= self.limit)
            .ok_or(WriteError::TooLarge { limit: self.limit })?;
        if chunk.is_empty() {
            return Ok(());
        }
        let hashed = self.hasher.len();
        let overlaps_ahead = self
            .ahead
            .range(..end)
            .next_back()
            .is_some_and(|(_, e)| *e > offset);
        if offset < hashed || overlaps_ahead {
            return Err(WriteError::Overlap { start: offset, end });
        }
        self.file
            .write_all_at(chunk, offset)
            .map_err(MirrorError::io(&self.path))?;
        if offset == hashed {
            self.hasher.update(chunk);
            self.catch_up()?;
        } else {
            self.insert_ahead(offset, end);
        }
        Ok(())
    }

    /// Records a stretch written ahead of the prefix, merging it with its neighbours.
    fn insert_ahead(&mut self, mut start: u64, mut end: u64) {
        if let Some((&s, &e)) = self.ahead.range(..start).next_back() {
            if e == start {
                self.ahead.remove(&s);
                start = s;
            }
        }
        if let Some(e) = self.ahead.remove(&end) {
            end = e;
        }
        self.ahead.insert(start, end);
    }

    /// Hashes stretches written ahead once the prefix has reached them, reading them back.
    fn catch_up(&mut self) -> Result<(), MirrorError> {
        let mut buf = Vec::new();
        while let Some(end) = self.ahead.remove(&self.hasher.len()) {
            buf.resize(READ_BACK, 0);
            let mut at = self.hasher.len();
            while at < end {
                let n = READ_BACK.min((end - at) as usize);
                self.file
                    .read_exact_at(&mut buf[..n], at)
                    .map_err(MirrorError::io(&self.path))?;
                self.hasher.update(&buf[..n]);
                at += n as u64;
            }
        }
        Ok(())
    }

    /// Discards everything written (an upstream that ignored our `Range` and restarted from 0).
    pub fn reset(&mut self) -> Result<(), MirrorError> {
        self.file.set_len(0).map_err(MirrorError::io(&self.path))?;
        self.hasher = Hasher::new(self.git_size);
        self.ahead.clear();
        Ok(())
    }

    /// Flushes to disk and returns the hashed file, which must be complete: every byte up to the
    /// limit, no hole. The caller compares the outcome with what upstream declared before anything
    /// is promoted.
    pub fn finish(mut self) -> Result<Quarantined, WriteError> {
        if !self.ahead.is_empty() {
            return Err(WriteError::Incomplete {
                have: self.hasher.len(),
                limit: self.limit,
            });
        }
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
    fn out_of_order_writes_hash_the_whole_file_and_holes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = Writer::create(dir.path(), data.len() as u64, None).unwrap();
        // Three ranges, the last first, the middle in two pieces: the prefix catches up by reading
        // back what was written ahead of it.
        w.write_at(2_000_000, &data[2_000_000..]).unwrap();
        w.write_at(1_500_000, &data[1_500_000..2_000_000]).unwrap();
        w.write_at(1_000_000, &data[1_000_000..1_500_000]).unwrap();
        assert_eq!(w.len(), 0);
        assert!(matches!(
            w.write_at(1_200_000, b"x"),
            Err(WriteError::Overlap { .. })
        ));
        assert!(matches!(
            w.write_at(2_999_999, b"xy"),
            Err(WriteError::TooLarge { .. })
        ));
        w.write_at(0, &data[..1_000_000]).unwrap();
        assert_eq!(w.len(), data.len() as u64);
        let q = w.finish().unwrap();
        assert_eq!(q.outcome().sha256, Digest::of(&data));
        assert_eq!(std::fs::read(q.path()).unwrap(), data);

        let mut w = Writer::create(dir.path(), 10, None).unwrap();
        w.write_at(5, b"fghij").unwrap();
        assert!(matches!(
            w.finish(),
            Err(WriteError::Incomplete { have: 0, limit: 10 })
        ));
        drop(q);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
