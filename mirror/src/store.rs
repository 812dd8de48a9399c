//! The store: content-addressed blobs on disk, the quarantine beside them (same filesystem, so
//! promotion is an atomic rename), and the sled index over them. Only this module builds paths
//! under the data directory.
//!
//! Layout of `data_dir`:
//! - `blobs/sha256/ab/abcdef…` — promoted, verified content; immutable; a blob's name is its sha256.
//! - `quarantine/` — in-flight downloads; emptied at start-up (a crash leaves only garbage here).
//! - `manifests/hf/{models|datasets}/{repo}/{commit}.json` — upstream listings that files were
//!   verified against.
//! - `index/` — sled: refs, manifests, file records, refusals. A fast index, rebuildable.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};
use verifier::Digest;

use crate::error::MirrorError;
use crate::manifest::Manifest;
use crate::names::{HfRepo, RepoPath, Revision, RevisionName};
use crate::quarantine::{Quarantined, Writer};
use crate::refusal::Refusal;

/// A verified, promoted file of a commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    /// The blob holding the bytes.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The ETag clients get (sha256 hex for LFS files, git blob id otherwise).
    pub etag: String,
    /// The scan report's one-line summary, kept with the record for `airlock scan`/admin views.
    pub scan: String,
}

/// A branch or tag resolution.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct RefRecord {
    /// The commit it pointed at.
    pub commit: Revision,
    /// When it was resolved (unix seconds).
    pub resolved_at: u64,
}

/// The store.
pub struct Store {
    blobs: PathBuf,
    quarantine: PathBuf,
    manifests: PathBuf,
    refs: sled::Tree,
    manifest_index: sled::Tree,
    files: sled::Tree,
    refusals: sled::Tree,
}

fn key(parts: &[&str]) -> Vec<u8> {
    // NUL cannot occur in any validated name, so the joined key is unambiguous.
    parts.join("\0").into_bytes()
}

/// Seconds since the epoch (the clock lives here, not in `verifier`).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir` and clears leftovers in quarantine.
    pub fn open(data_dir: &Path) -> Result<Store, MirrorError> {
        let blobs = data_dir.join("blobs").join("sha256");
        let quarantine = data_dir.join("quarantine");
        let manifests = data_dir.join("manifests");
        for dir in [&blobs, &manifests] {
            std::fs::create_dir_all(dir).map_err(MirrorError::io(dir))?;
        }
        // Whatever is in quarantine at start-up belongs to a process that died mid-fetch.
        if quarantine.exists() {
            std::fs::remove_dir_all(&quarantine).map_err(MirrorError::io(&quarantine))?;
        }
        std::fs::create_dir_all(&quarantine).map_err(MirrorError::io(&quarantine))?;
        let db = sled::open(data_dir.join("index"))?;
        Ok(Store {
            blobs,
            quarantine,
            manifests,
            refs: db.open_tree("refs")?,
            manifest_index: db.open_tree("manifests")?,
            files: db.open_tree("files")?,
            refusals: db.open_tree("refusals")?,
        })
    }

    /// Path of a promoted blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// Whether a blob has been promoted.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a promoted blob for reading. Blocking.
    pub fn open_blob(&self, digest: &Digest) -> Result<std::fs::File, MirrorError> {
        let path = self.blob_path(digest);
        std::fs::File::open(&path).map_err(MirrorError::io(path))
    }

    /// Starts a quarantine file. Blocking.
    pub fn quarantine_writer(
        &self,
        limit: u64,
        git_size: Option<u64>,
    ) -> Result<Writer, MirrorError> {
        Writer::create(&self.quarantine, limit, git_size)
    }

    /// Moves a verified file into `blobs/`. The caller has checked it; this only renames. If the
    /// blob already exists (same content fetched for another name), the copy is simply dropped:
    /// content addressing means there is nothing to add. Blocking.
    pub fn promote(&self, mut file: Quarantined) -> Result<Digest, MirrorError> {
        let digest = file.outcome().sha256;
        let target = self.blob_path(&digest);
        if !target.is_file() {
            let dir = target.parent().unwrap_or(&self.blobs);
            std::fs::create_dir_all(dir).map_err(MirrorError::io(dir))?;
            std::fs::rename(file.path(), &target).map_err(MirrorError::io(&target))?;
            file.mark_promoted();
            // Make the rename itself durable before the index points at it.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(digest)
    }

    fn get<T: DeserializeOwned>(tree: &sled::Tree, k: &[u8]) -> Result<Option<T>, MirrorError> {
        match tree.get(k)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| MirrorError::Corrupt {
                    key: String::from_utf8_lossy(k).replace('\0', " "),
                    detail: e.to_string(),
                }),
        }
    }

    fn put<T: Serialize>(tree: &sled::Tree, k: Vec<u8>, v: &T) -> Result<(), MirrorError> {
        let bytes = serde_json::to_vec(v).map_err(|e| MirrorError::Corrupt {
            key: "new record".into(),
            detail: e.to_string(),
        })?;
        tree.insert(k, bytes)?;
        tree.flush()?;
        Ok(())
    }

    /// The stored resolution of a branch/tag.
    pub fn get_ref(
        &self,
        repo: &HfRepo,
        name: &RevisionName,
    ) -> Result<Option<RefRecord>, MirrorError> {
        Self::get(&self.refs, &key(&[&repo.index_key(), name.as_str()]))
    }

    /// Stores a branch/tag resolution.
    pub fn put_ref(
        &self,
        repo: &HfRepo,
        name: &RevisionName,
        commit: Revision,
    ) -> Result<(), MirrorError> {
        Self::put(
            &self.refs,
            key(&[&repo.index_key(), name.as_str()]),
            &RefRecord {
                commit,
                resolved_at: now_unix(),
            },
        )
    }

    /// The listing of a commit.
    pub fn get_manifest(
        &self,
        repo: &HfRepo,
        commit: Revision,
    ) -> Result<Option<Manifest>, MirrorError> {
        Self::get(
            &self.manifest_index,
            &key(&[&repo.index_key(), &commit.hex()]),
        )
    }

    /// Stores the listing of a commit, as a file (the record of what was verified against) and in
    /// the index. Blocking.
    pub fn put_manifest(
        &self,
        repo: &HfRepo,
        commit: Revision,
        manifest: &Manifest,
    ) -> Result<(), MirrorError> {
        let dir = self.manifests.join("hf").join(repo.index_key());
        std::fs::create_dir_all(&dir).map_err(MirrorError::io(&dir))?;
        let path = dir.join(format!("{}.json", commit.hex()));
        let tmp = dir.join(format!("{}.json.tmp", commit.hex()));
        let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| MirrorError::Corrupt {
            key: path.display().to_string(),
            detail: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(MirrorError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(MirrorError::io(&path))?;
        Self::put(
            &self.manifest_index,
            key(&[&repo.index_key(), &commit.hex()]),
            manifest,
        )
    }

    /// The verified record of a file of a commit.
    pub fn get_file(
        &self,
        repo: &HfRepo,
        commit: Revision,
        path: &RepoPath,
    ) -> Result<Option<FileRecord>, MirrorError> {
        Self::get(
            &self.files,
            &key(&[&repo.index_key(), &commit.hex(), path.as_str()]),
        )
    }

    /// Records a verified file. Only called after [`Store::promote`].
    pub fn put_file(
        &self,
        repo: &HfRepo,
        commit: Revision,
        path: &RepoPath,
        rec: &FileRecord,
    ) -> Result<(), MirrorError> {
        Self::put(
            &self.files,
            key(&[&repo.index_key(), &commit.hex(), path.as_str()]),
            rec,
        )
    }

    /// A recorded refusal of a file of a commit.
    pub fn get_refusal(
        &self,
        repo: &HfRepo,
        commit: Revision,
        path: &RepoPath,
    ) -> Result<Option<Refusal>, MirrorError> {
        Self::get(
            &self.refusals,
            &key(&[&repo.index_key(), &commit.hex(), path.as_str()]),
        )
    }

    /// Records a refusal (sticky until an operator clears it).
    pub fn put_refusal(
        &self,
        repo: &HfRepo,
        commit: Revision,
        path: &RepoPath,
        r: &Refusal,
    ) -> Result<(), MirrorError> {
        Self::put(
            &self.refusals,
            key(&[&repo.index_key(), &commit.hex(), path.as_str()]),
            r,
        )
    }
}
