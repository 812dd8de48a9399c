//! Keeping the blob store under `[store] max_bytes`: least-recently-served blobs go first, and a
//! blob an approval or a pin needs never goes unless the operator forces it (`airlock gc
//! --force`). An evicted file is simply absent again: the next request fetches, verifies and
//! scans it anew.
//!
//! "Recently served" is the blob file's mtime, which serving refreshes (at most every
//! [`TOUCH_EVERY`], so a hot file costs no metadata write per request). Keeping it in the file
//! system means the order survives restarts and needs no index of its own. With an object-store
//! backend an object cannot be touched: the order is then the order blobs were stored in.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use verifier::Digest;

use super::{FileRecord, Store};
use crate::error::MirrorError;

/// How stale a blob's mtime may get before serving refreshes it.
pub(crate) const TOUCH_EVERY: Duration = Duration::from_secs(600);

/// What an eviction pass did.
#[derive(Debug, Default, Clone)]
pub struct EvictReport {
    /// Blob bytes before the pass.
    pub before: u64,
    /// Blob bytes after it.
    pub after: u64,
    /// Blobs removed, least recently served first.
    pub evicted: Vec<(Digest, u64)>,
    /// Needed (approved or pinned) blobs removed because `force` was given.
    pub forced: usize,
    /// Needed bytes that kept the store above the target (nothing else was left to evict).
    pub kept_needed: u64,
}

impl Store {
    /// Bytes held in `blobs/` (kept as a running count; computed once at open).
    pub fn blob_bytes(&self) -> u64 {
        self.blob_bytes.load(Ordering::Relaxed)
    }

    /// Marks a served blob as recently used (for eviction order). Cheap: it writes only when the
    /// mtime is older than [`TOUCH_EVERY`]. Blocking; failures only cost eviction accuracy.
    pub fn touch(&self, file: &std::fs::File) {
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
    }

    /// Evicts least-recently-served blobs until at most `target` bytes remain. Blobs in `needed`
    /// stay unless `force`; OCI manifests (tiny, and what names resolve through) always stay.
    /// Index records go before the bytes, so the index never names an evicted blob, and a crash
    /// in between leaves only an orphan that `fsck` lists. Blocking.
    pub fn evict_to(
        &self,
        target: u64,
        needed: &HashSet<Digest>,
        force: bool,
    ) -> Result<EvictReport, MirrorError> {
        // One pass evicts at a time: two concurrent passes would count the same bytes twice.
        let _pass = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = EvictReport {
            before: self.blob_bytes(),
            ..EvictReport::default()
        };
        let mut current = report.before;
        if current <= target {
            report.after = current;
            return Ok(report);
        }
        let mut blobs = Vec::new();
        for listed in self.cas.list()? {
            let Some(digest) = listed.digest else {
                continue;
            };
            if self.get_oci_manifest(&digest)?.is_some() {
                continue;
            }
            blobs.push((needed.contains(&digest), listed.used, digest, listed.size));
        }
        // Unneeded before needed, then least recently served first.
        blobs.sort_by_key(|(needed, used, digest, _)| (*needed, *used, digest.hex()));
        let refs = self.records_by_digest()?;
        for (is_needed, _, digest, size) in blobs {
            if current <= target {
                break;
            }
            if is_needed && !force {
                report.kept_needed += size;
                continue;
            }
            for (tree, key) in refs.get(&digest).into_iter().flatten() {
                tree.remove(key)?;
            }
            self.files.flush()?;
            self.oci_blobs.flush()?;
            self.cas.delete(&digest)?;
            self.blob_bytes.fetch_sub(size, Ordering::Relaxed);
            current = current.saturating_sub(size);
            report.forced += usize::from(is_needed);
            report.evicted.push((digest, size));
        }
        report.after = current;
        Ok(report)
    }

    /// The index records (tree, key) that name each blob.
    fn records_by_digest(
        &self,
    ) -> Result<HashMap<Digest, Vec<(&sled::Tree, sled::IVec)>>, MirrorError> {
        let mut out: HashMap<Digest, Vec<(&sled::Tree, sled::IVec)>> = HashMap::new();
        for tree in [&self.files, &self.oci_blobs] {
            for item in tree.iter() {
                let (k, v) = item?;
                if let Ok(rec) = serde_json::from_slice::<FileRecord>(&v) {
                    out.entry(rec.digest).or_default().push((tree, k));
                }
            }
        }
        Ok(out)
    }

    /// Digests of the verified files of `commit` in any repo (what a pin on that commit needs).
    pub fn file_digests_at(
        &self,
        commit: &crate::names::Revision,
    ) -> Result<Vec<Digest>, MirrorError> {
        let hex = commit.hex();
        let mut out = Vec::new();
        for item in self.files.iter() {
            let (k, v) = item?;
            // Keys are `repo \0 commit \0 path`.
            let at_commit = k.split(|b| *b == 0).nth(1) == Some(hex.as_bytes());
            if at_commit {
                if let Ok(rec) = serde_json::from_slice::<FileRecord>(&v) {
                    out.push(rec.digest);
                }
            }
        }
        Ok(out)
    }
}

/// Total size of the stored blobs (at open).
pub(super) fn measure(store: &Store) -> Result<u64, MirrorError> {
    Ok(store.cas.list()?.iter().map(|l| l.size).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &Store, bytes: &[u8], age_secs: u64) -> Digest {
        let d = store.write_blob(bytes).expect("blob");
        store
            .put_blob_record(&FileRecord {
                digest: d,
                size: bytes.len() as u64,
                etag: d.hex(),
                scan: "clean".into(),
            })
            .expect("record");
        let f = std::fs::File::options()
            .write(true)
            .open(store.local_blob_path(&d).expect("local"))
            .expect("open");
        f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .expect("mtime");
        d
    }

    #[test]
    fn least_recently_served_goes_first_and_needed_blobs_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let old = put(&store, &[1u8; 100], 3000);
        let needed_old = put(&store, &[2u8; 100], 4000);
        let recent = put(&store, &[3u8; 100], 10);
        assert_eq!(store.blob_bytes(), 300);
        let needed: HashSet<_> = [needed_old].into();

        let r = store.evict_to(150, &needed, false).expect("evict");
        assert_eq!(r.evicted, vec![(old, 100), (recent, 100)]);
        assert_eq!((r.before, r.after), (300, 100));
        assert!(!store.has_blob(&old) && store.has_blob(&needed_old));
        assert!(store.get_blob_record(&old).expect("get").is_none());
        assert_eq!(store.blob_bytes(), 100);
        assert!(store.fsck(false, |_| {}).expect("fsck").problems.is_empty());

        // Needed bytes stay above the target unless forced.
        let r = store.evict_to(0, &needed, false).expect("evict");
        assert_eq!((r.evicted.len(), r.kept_needed), (0, 100));
        let r = store.evict_to(0, &needed, true).expect("force");
        assert_eq!((r.evicted.len(), r.forced, r.after), (1, 1, 0));
    }

    #[test]
    fn serving_refreshes_the_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = put(&store, &[1u8; 10], 3000);
        let b = put(&store, &[2u8; 10], 2000);
        match store.open_blob(&a).expect("open") {
            crate::cas::Blob::File(f) => store.touch(&f),
            crate::cas::Blob::Remote(_) => panic!("a local store"),
        }
        let r = store.evict_to(10, &HashSet::new(), false).expect("evict");
        assert_eq!(r.evicted, vec![(b, 10)]);
    }

    #[test]
    fn the_count_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            put(&store, &[7u8; 42], 0);
        }
        assert_eq!(Store::open(dir.path()).expect("reopen").blob_bytes(), 42);
    }
}
