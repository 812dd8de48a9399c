//! `airlock fsck`: checks that the index and the blobs agree, and that every blob still hashes to
//! its name. The blobs and the listing files are the sources of truth; the index is only a fast
//! way in. So a repair may only *remove* what it can no longer vouch for (a blob whose bytes
//! changed, an index record whose blob is gone): the next client request then fetches and
//! verifies the file again. It never adds anything, and never trusts a byte it has not hashed.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use verifier::Digest;

use super::{FileRecord, Store};
use crate::error::MirrorError;

/// One thing `fsck` found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsckProblem {
    /// A blob's bytes no longer hash to its name (bit rot, or a hand edit).
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What its bytes hash to now.
        actual: Digest,
    },
    /// A file under `blobs/` that is not named by a sha256 (nothing Airlock writes).
    StrayFile {
        /// Where.
        path: PathBuf,
    },
    /// An index record points at a blob that does not exist.
    MissingBlob {
        /// Which record (index key, readable).
        record: String,
        /// The blob it names.
        digest: Digest,
    },
    /// A temporary file left by a write that a crash interrupted.
    Leftover {
        /// Where.
        path: PathBuf,
    },
}

impl std::fmt::Display for FsckProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsckProblem::CorruptBlob { digest, actual } => {
                write!(f, "corrupt blob {digest}: its bytes hash to {actual}")
            }
            FsckProblem::StrayFile { path } => {
                write!(f, "stray file {} (not a blob)", path.display())
            }
            FsckProblem::MissingBlob { record, digest } => {
                write!(f, "index record {record} names missing blob {digest}")
            }
            FsckProblem::Leftover { path } => {
                write!(f, "leftover temporary file {}", path.display())
            }
        }
    }
}

/// What `fsck` found, and (with repair) what it removed.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// Blobs hashed.
    pub blobs: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// Index records checked.
    pub records: usize,
    /// Problems, in the order found.
    pub problems: Vec<FsckProblem>,
    /// Verified blobs no index record reaches (a crash between promotion and the index write
    /// leaves these). Not damage: `airlock reindex` binds those a listing names, and the next
    /// fetch of the file binds it too.
    pub orphans: Vec<Digest>,
    /// Whether the problems were repaired.
    pub repaired: bool,
}

/// The index trees whose values are [`FileRecord`]s naming a blob.
fn record_trees(store: &Store) -> [(&'static str, &sled::Tree); 2] {
    [("files", &store.files), ("oci_blobs", &store.oci_blobs)]
}

impl Store {
    /// Checks the store: every blob hashes to its name, every index record's blob exists, no
    /// temporary leftovers. With `repair`, removes corrupt blobs, records whose blob is missing
    /// (or was corrupt) and leftovers, so those files are fetched and verified again on demand.
    /// `progress` is called with the bytes hashed so far. Blocking; the store's lock keeps a
    /// running server out.
    pub fn fsck(
        &self,
        repair: bool,
        mut progress: impl FnMut(u64),
    ) -> Result<FsckReport, MirrorError> {
        let mut report = FsckReport {
            repaired: repair,
            ..FsckReport::default()
        };
        let mut present = HashSet::new();
        let mut corrupt = HashSet::new();
        for listed in self.cas.list()? {
            let Some(digest) = listed.digest else {
                report.problems.push(FsckProblem::StrayFile {
                    path: PathBuf::from(listed.location),
                });
                continue;
            };
            let mut reader = self.cas.reader(&digest)?;
            let actual = hash_reader(
                &mut reader,
                &listed.location,
                &mut report.bytes,
                &mut progress,
            )?;
            report.blobs += 1;
            if actual != digest {
                report
                    .problems
                    .push(FsckProblem::CorruptBlob { digest, actual });
                corrupt.insert(digest);
            } else {
                present.insert(digest);
            }
        }
        let mut reached = HashSet::new();
        let mut dead_keys: Vec<(&sled::Tree, sled::IVec)> = Vec::new();
        for (tree_name, tree) in record_trees(self) {
            for item in tree.iter() {
                let (k, v) = item?;
                report.records += 1;
                let Ok(rec) = serde_json::from_slice::<FileRecord>(&v) else {
                    return Err(MirrorError::Corrupt {
                        key: readable(&k),
                        detail: "not a file record (run `airlock reindex`)".into(),
                    });
                };
                if present.contains(&rec.digest) {
                    reached.insert(rec.digest);
                    continue;
                }
                if !corrupt.contains(&rec.digest) {
                    report.problems.push(FsckProblem::MissingBlob {
                        record: format!("{tree_name}:{}", readable(&k)),
                        digest: rec.digest,
                    });
                }
                dead_keys.push((tree, k));
            }
        }
        // An OCI manifest's bytes are the blob named by its digest.
        for item in self.oci_manifests.iter() {
            let (k, _) = item?;
            report.records += 1;
            let Some(digest) = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| Digest::from_hex(s).ok())
            else {
                continue;
            };
            if present.contains(&digest) {
                reached.insert(digest);
            } else {
                if !corrupt.contains(&digest) {
                    report.problems.push(FsckProblem::MissingBlob {
                        record: format!("oci_manifests:{}", readable(&k)),
                        digest,
                    });
                }
                dead_keys.push((&self.oci_manifests, k));
            }
        }
        let mut leftovers = Vec::new();
        collect_leftovers(&self.manifests, &mut leftovers)?;
        for path in leftovers {
            report.problems.push(FsckProblem::Leftover { path });
        }
        report.orphans = present.difference(&reached).copied().collect();
        report.orphans.sort_by_key(|d| d.hex());
        if repair {
            for problem in &report.problems {
                match problem {
                    FsckProblem::CorruptBlob { digest, .. } => self.cas.delete(digest)?,
                    FsckProblem::StrayFile { path } => {
                        self.cas.delete_stray(&path.to_string_lossy())?
                    }
                    FsckProblem::Leftover { path } => {
                        std::fs::remove_file(path).map_err(MirrorError::io(path))?;
                    }
                    FsckProblem::MissingBlob { .. } => {}
                }
            }
            for (tree, k) in dead_keys {
                tree.remove(k)?;
            }
            for (_, tree) in record_trees(self) {
                tree.flush()?;
            }
            self.oci_manifests.flush()?;
        }
        Ok(report)
    }
}

/// sha256 of a blob, streamed.
fn hash_reader(
    reader: &mut dyn Read,
    location: &str,
    total: &mut u64,
    progress: &mut impl FnMut(u64),
) -> Result<Digest, MirrorError> {
    let mut hasher = verifier::Hasher::new(None);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(MirrorError::io(location))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        *total += n as u64;
        progress(*total);
    }
    Ok(hasher.finish().sha256)
}

/// `*.tmp` files under `dir`: a durable write that a crash cut short before its rename.
fn collect_leftovers(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), MirrorError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry.map_err(MirrorError::io(dir))?.path();
        if path.is_dir() {
            collect_leftovers(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "tmp") {
            out.push(path);
        }
    }
    Ok(())
}

/// An index key for people: its NUL separators as spaces.
fn readable(k: &[u8]) -> String {
    String::from_utf8_lossy(k).replace('\0', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(store: &Store, bytes: &[u8]) -> Digest {
        store.write_blob(bytes).expect("write blob")
    }

    fn record(store: &Store, digest: Digest, size: u64) {
        store
            .put_blob_record(&FileRecord {
                digest,
                size,
                etag: digest.hex(),
                scan: "clean".into(),
            })
            .expect("record");
    }

    #[test]
    fn consistent_store_is_clean_and_orphans_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = blob(&store, b"indexed");
        record(&store, a, 7);
        let orphan = blob(&store, b"promoted, index write lost");
        let r = store.fsck(false, |_| {}).expect("fsck");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.blobs, 2);
        assert_eq!(r.orphans, vec![orphan]);
    }

    #[test]
    fn flipped_byte_and_missing_blob_are_found_and_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = blob(&store, b"will rot");
        record(&store, a, 8);
        let b = blob(&store, b"will vanish");
        record(&store, b, 11);
        let mut bytes = std::fs::read(store.local_blob_path(&a).expect("local")).expect("read");
        bytes[0] ^= 1;
        std::fs::write(store.local_blob_path(&a).expect("local"), &bytes).expect("rot");
        std::fs::remove_file(store.local_blob_path(&b).expect("local")).expect("vanish");
        let leftover = dir.path().join("manifests").join("x.json.tmp");
        std::fs::write(&leftover, b"{").expect("leftover");

        let r = store.fsck(false, |_| {}).expect("fsck");
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        assert!(matches!(r.problems[0], FsckProblem::CorruptBlob { digest, .. } if digest == a));
        assert!(r
            .problems
            .iter()
            .any(|p| matches!(p, FsckProblem::MissingBlob { digest, .. } if *digest == b)));
        // Without --repair nothing changed.
        assert!(store.local_blob_path(&a).expect("local").exists() && leftover.exists());
        assert!(store.get_blob_record(&a).expect("get").is_some());

        let r = store.fsck(true, |_| {}).expect("repair");
        assert_eq!(r.problems.len(), 3);
        assert!(!store.local_blob_path(&a).expect("local").exists() && !leftover.exists());
        assert!(store.get_blob_record(&a).expect("get").is_none());
        assert!(store.get_blob_record(&b).expect("get").is_none());
        let r = store.fsck(false, |_| {}).expect("after repair");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn a_second_open_of_the_data_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let q = dir.path().join("quarantine").join("in-flight");
        std::fs::write(&q, b"partial").expect("write");
        match Store::open(dir.path()) {
            Err(MirrorError::Locked { .. }) => {}
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        // The live store's in-flight file survived the refused open.
        assert!(q.exists());
        drop(store);
        Store::open(dir.path()).expect("open after the first closed");
        assert!(
            !q.exists(),
            "a fresh open clears a dead process's quarantine"
        );
    }
}
