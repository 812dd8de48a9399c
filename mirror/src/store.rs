//! The store: content-addressed blobs (through [`crate::cas`], on the data disk or in an
//! S3-compatible bucket), the quarantine on the data disk, and the sled index over them. Only this
//! module builds paths under the data directory, and only `cas` builds blob paths or keys.
//!
//! Layout of `data_dir`:
//! - `blobs/sha256/ab/abcdef…` — promoted, verified content (the local backend); immutable; a
//!   blob's name is its sha256.
//! - `quarantine/` — in-flight downloads; emptied at start-up (a crash leaves only garbage here).
//! - `manifests/hf/{models|datasets}/{repo}/{commit}.json` — upstream listings that files were
//!   verified against.
//! - `index/` — sled: refs, manifests, file records, refusals. A fast index, rebuildable.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};
use verifier::{Digest, GitOid};

use crate::cas::{Blob, Cas, Put, Source};
use crate::config::StoreConfig;
use crate::error::MirrorError;
use crate::manifest::Manifest;
use crate::names::{HfRepo, OllamaName, RepoPath, Revision, RevisionName, Tag};
use crate::quarantine::Writer;
use crate::refusal::Refusal;

mod evict;
mod fsck;
mod health;
pub use evict::EvictReport;
pub use fsck::{FsckProblem, FsckReport};

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

/// An Ollama tag resolution (or, for pinned tags, the last upstream check).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct TagRecord {
    /// The manifest digest upstream had for the tag.
    pub digest: Digest,
    /// When it was asked (unix seconds).
    pub resolved_at: u64,
}

/// A verified manifest (its bytes are the blob named by its digest).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestRecord {
    /// Media type as served upstream.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// A blob listed by a verified manifest of a name: what may be fetched under that name.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// Declared size.
    pub size: u64,
    /// Declared media type.
    pub media_type: String,
    /// The manifest that lists it.
    pub manifest: Digest,
}

/// An upstream tag that moved away from its pinned manifest: kept for review.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DriftRecord {
    /// The name (`namespace/model:tag`).
    pub name: String,
    /// What the pin says.
    pub pinned: Digest,
    /// What upstream now has.
    pub upstream: Digest,
    /// When it was seen (unix seconds).
    pub seen_at: u64,
}

/// What `airlock reindex` rebuilt.
#[derive(Debug, Default)]
pub struct ReindexReport {
    /// HF commit listings indexed.
    pub listings: usize,
    /// Ollama manifests indexed.
    pub manifests: usize,
    /// Verified files and blobs indexed.
    pub files: usize,
    /// Files that could not be used, with why.
    pub skipped: Vec<String>,
}

/// Every `*.json` file under `dir`, recursively (missing dir = none).
fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), MirrorError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry.map_err(MirrorError::io(dir))?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Free space a fetch must leave for the index, the audit log and the listings.
const HEADROOM: u64 = 64 << 20;

/// Takes the data directory's lock file (`airlock.lock`), without waiting.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, MirrorError> {
    let path = data_dir.join("airlock.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(MirrorError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(MirrorError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(MirrorError::io(path)(e)),
    }
}

/// fsyncs a directory, so the entries created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), MirrorError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(MirrorError::io(dir))
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
/// the directory: after a crash `path` holds either its old content or all of the new, never a
/// torn or empty file. Each call has its own temporary name (`create_new`), so concurrent writers
/// of the same record (same content: records are named by what they hold) cannot collide.
fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), MirrorError> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(MirrorError::io(&tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(MirrorError::io(path)(e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The store.
pub struct Store {
    /// Held (exclusively locked) for the store's lifetime: one process per data directory, so
    /// `airlock reindex` or `fsck` can never wipe a live server's quarantine or index.
    _lock: std::fs::File,
    /// The blobs: the only way to their bytes.
    cas: Cas,
    quarantine: PathBuf,
    manifests: PathBuf,
    refs: sled::Tree,
    manifest_index: sled::Tree,
    files: sled::Tree,
    refusals: sled::Tree,
    oci_tags: sled::Tree,
    oci_manifests: sled::Tree,
    oci_layers: sled::Tree,
    oci_blobs: sled::Tree,
    oci_refusals: sled::Tree,
    oci_drift: sled::Tree,
    /// (name, manifest) pairs the upstream answered under that name: what an open rule covers.
    oci_confirmed: sled::Tree,
    /// (name, blob, manifest) triples: a blob listed by a manifest that was served under the name.
    oci_served: sled::Tree,
    /// Review requests (also recorded in the audit log).
    pub(crate) requests: sled::Tree,
    /// Signature verdicts per (repo, commit).
    pub(crate) signed: sled::Tree,
    /// Bytes of stored blobs (measured at open, then kept by promotion and eviction).
    blob_bytes: std::sync::atomic::AtomicU64,
    /// Held by an eviction pass.
    evicting: std::sync::Mutex<()>,
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
    /// Opens (creating if needed) the store under `data_dir`, blobs in the local directory
    /// backend, and clears leftovers in quarantine. Fails with [`MirrorError::Locked`] if another
    /// process has the directory open.
    pub fn open(data_dir: &Path) -> Result<Store, MirrorError> {
        Store::open_with(data_dir, &StoreConfig::default())
    }

    /// Like [`Store::open`], with the blob backend `[store]` names (the quarantine, the index
    /// and the listings stay in `data_dir` whatever it is).
    pub fn open_with(data_dir: &Path, cfg: &StoreConfig) -> Result<Store, MirrorError> {
        let quarantine = data_dir.join("quarantine");
        let manifests = data_dir.join("manifests");
        std::fs::create_dir_all(data_dir).map_err(MirrorError::io(data_dir))?;
        let lock = lock_data_dir(data_dir)?;
        // Before anything below creates or reads a directory: a newer or unmigrated layout is
        // refused here, untouched.
        crate::format::check(data_dir)?;
        std::fs::create_dir_all(&manifests).map_err(MirrorError::io(&manifests))?;
        let cas = crate::cas::open(data_dir, cfg)?;
        tracing::debug!(backend = cas.kind(), "blob store");
        // Whatever is in quarantine at start-up belongs to a process that died mid-fetch: the
        // lock above proves no live process owns it.
        if quarantine.exists() {
            std::fs::remove_dir_all(&quarantine).map_err(MirrorError::io(&quarantine))?;
        }
        std::fs::create_dir_all(&quarantine).map_err(MirrorError::io(&quarantine))?;
        let db = sled::open(data_dir.join("index"))?;
        let store = Store {
            _lock: lock,
            cas,
            quarantine,
            manifests,
            refs: db.open_tree("refs")?,
            manifest_index: db.open_tree("manifests")?,
            files: db.open_tree("files")?,
            refusals: db.open_tree("refusals")?,
            oci_tags: db.open_tree("oci_tags")?,
            oci_manifests: db.open_tree("oci_manifests")?,
            oci_layers: db.open_tree("oci_layers")?,
            oci_blobs: db.open_tree("oci_blobs")?,
            oci_refusals: db.open_tree("oci_refusals")?,
            oci_drift: db.open_tree("oci_drift")?,
            oci_confirmed: db.open_tree("oci_confirmed")?,
            oci_served: db.open_tree("oci_served")?,
            requests: db.open_tree("requests")?,
            signed: db.open_tree("signed")?,
            blob_bytes: std::sync::atomic::AtomicU64::new(0),
            evicting: std::sync::Mutex::new(()),
        };
        store.blob_bytes.store(
            evict::measure(&store)?,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(store)
    }

    /// The blob store.
    pub(crate) fn cas(&self) -> &Cas {
        &self.cas
    }

    /// Where a promoted blob's file is, when blobs are local files (the signature verifier and
    /// `airlock export` read them by path). None with an object store backend.
    pub(crate) fn local_blob_path(&self, digest: &Digest) -> Option<PathBuf> {
        match &self.cas {
            Cas::Local(c) => Some(c.path(digest)),
            Cas::S3(_) => None,
        }
    }

    /// Whether a blob has been promoted. Blocking. A backend failure counts as absent (logged):
    /// the caller then fetches and verifies the file again, which costs traffic, never trust.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.cas.has(digest).unwrap_or_else(|e| {
            tracing::warn!(%digest, error = %e, "blob store: presence check failed");
            false
        })
    }

    /// A promoted blob's size. Blocking.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, MirrorError> {
        Ok(self.cas.size(digest)?)
    }

    /// Opens a promoted blob for serving (a local file, or an object for ranged reads). Blocking.
    pub fn open_blob(&self, digest: &Digest) -> Result<Blob, MirrorError> {
        Ok(self.cas.open(digest)?)
    }

    /// A promoted blob as a local file for a scanner, which needs to seek: the blob file itself
    /// with the local backend; with an object store, a copy spooled into quarantine (unlinked
    /// at once, so it goes away with the handle). Blocking.
    pub(crate) fn blob_file(&self, digest: &Digest) -> Result<std::fs::File, MirrorError> {
        if let Blob::File(file) = self.cas.open(digest)? {
            return Ok(file);
        }
        let path = self
            .quarantine
            .join(format!("scan-{}-{}", digest.hex(), std::process::id()));
        let mut spool = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(MirrorError::io(&path))?;
        let _ = std::fs::remove_file(&path);
        let mut reader = self.cas.reader(digest)?;
        std::io::copy(&mut reader, &mut spool).map_err(MirrorError::io(&path))?;
        use std::io::Seek;
        spool
            .seek(std::io::SeekFrom::Start(0))
            .map_err(MirrorError::io(&path))?;
        Ok(spool)
    }

    /// Starts a quarantine file. Blocking.
    pub(crate) fn quarantine_writer(
        &self,
        limit: u64,
        git_size: Option<u64>,
    ) -> Result<Writer, MirrorError> {
        // Pre-flight: a file that cannot fit is refused before a byte is fetched, instead of
        // filling the disk mid-stream (where the index and the audit log live too).
        let free =
            fs2::available_space(&self.quarantine).map_err(MirrorError::io(&self.quarantine))?;
        let needed = limit.saturating_add(HEADROOM);
        if needed > free {
            return Err(MirrorError::InsufficientStorage { needed, free });
        }
        Writer::create(&self.quarantine, limit, git_size)
    }

    /// Stores a verified quarantine file as the blob named by its digest. Only the pipeline's
    /// verify step makes a [`Verified`](crate::pipeline::Verified), so nothing else can promote.
    /// If the blob already exists (same content fetched for another name), the copy is simply
    /// dropped: content addressing means there is nothing to add. Blocking.
    pub(crate) fn promote(&self, file: crate::pipeline::Verified) -> Result<Digest, MirrorError> {
        let q = file.quarantined();
        let digest = q.outcome().sha256;
        if let Put::New { size } = self.cas.put(Source::hashed(q))? {
            self.blob_bytes
                .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(digest)
    }

    /// Stores a file that an import verified and scanned (in its staging directory) as the blob
    /// `digest`; likewise nothing to do if the blob is already there. The staged file survives
    /// an interrupted import on disk, so its digest is only claimed: the blob store checks it.
    /// Blocking.
    pub(crate) fn adopt(&self, staged: &Path, digest: &Digest) -> Result<(), MirrorError> {
        let put = self.cas.put(Source::claimed(staged, *digest)?);
        let _ = std::fs::remove_file(staged);
        if let Put::New { size } = put? {
            self.blob_bytes
                .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Every HF listing in the index: (repo index key, commit).
    pub(crate) fn hf_listings(&self) -> Result<Vec<(String, Revision)>, MirrorError> {
        let mut out = Vec::new();
        for item in self.manifest_index.iter() {
            let (k, _) = item?;
            let k = String::from_utf8_lossy(&k).into_owned();
            if let Some((repo, commit)) = k.split_once('\0') {
                if let Ok(c) = Revision::parse(commit) {
                    out.push((repo.to_owned(), c));
                }
            }
        }
        Ok(out)
    }

    /// Every stored branch/tag resolution: (repo index key, name, commit).
    pub(crate) fn hf_refs(&self) -> Result<Vec<(String, String, Revision)>, MirrorError> {
        let mut out = Vec::new();
        for item in self.refs.iter() {
            let (k, v) = item?;
            let k = String::from_utf8_lossy(&k).into_owned();
            let rec: Option<RefRecord> = serde_json::from_slice(&v).ok();
            if let (Some((repo, name)), Some(rec)) = (k.split_once('\0'), rec) {
                out.push((repo.to_owned(), name.to_owned(), rec.commit));
            }
        }
        Ok(out)
    }

    /// Every stored Ollama tag resolution: (name index key, tag, manifest digest).
    pub(crate) fn ollama_tags(&self) -> Result<Vec<(String, String, Digest)>, MirrorError> {
        let mut out = Vec::new();
        for item in self.oci_tags.iter() {
            let (k, v) = item?;
            let k = String::from_utf8_lossy(&k).into_owned();
            let rec: Option<TagRecord> = serde_json::from_slice(&v).ok();
            if let (Some((name, tag)), Some(rec)) = (k.split_once('\0'), rec) {
                out.push((name.to_owned(), tag.to_owned(), rec.digest));
            }
        }
        Ok(out)
    }

    pub(crate) fn get<T: DeserializeOwned>(
        tree: &sled::Tree,
        k: &[u8],
    ) -> Result<Option<T>, MirrorError> {
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

    pub(crate) fn put<T: Serialize>(
        tree: &sled::Tree,
        k: Vec<u8>,
        v: &T,
    ) -> Result<(), MirrorError> {
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
        let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| MirrorError::Corrupt {
            key: path.display().to_string(),
            detail: e.to_string(),
        })?;
        write_durable(&path, &bytes)?;
        Self::put(
            &self.manifest_index,
            key(&[&repo.index_key(), &commit.hex()]),
            manifest,
        )
    }
    /// Records, as a file and in the index, that `name` has the verified manifest `digest` (its
    /// bytes are a blob). The file is what `airlock reindex` rebuilds the OCI index from. Blocking.
    pub fn put_name_manifest(
        &self,
        name: &OllamaName,
        digest: &Digest,
        rec: &ManifestRecord,
    ) -> Result<(), MirrorError> {
        let dir = self.manifests.join(name.index_key());
        std::fs::create_dir_all(&dir).map_err(MirrorError::io(&dir))?;
        let path = dir.join(format!("{}.json", digest.hex()));
        if !path.exists() {
            let bytes = serde_json::to_vec_pretty(rec).map_err(|e| MirrorError::Corrupt {
                key: path.display().to_string(),
                detail: e.to_string(),
            })?;
            write_durable(&path, &bytes)?;
        }
        self.put_oci_manifest(digest, rec)
    }

    /// Rebuilds the index from the files that are the sources of truth: the listings under
    /// `manifests/hf/` and `manifests/ollama/` and the blobs themselves. Branch and tag
    /// resolutions and refusals are not rebuilt: they are asked again (and re-checked) on demand.
    /// Blocking; run with the server stopped.
    pub fn rebuild_index(&self) -> Result<ReindexReport, MirrorError> {
        let mut report = ReindexReport::default();
        for tree in [
            &self.refs,
            &self.manifest_index,
            &self.files,
            &self.refusals,
            &self.oci_tags,
            &self.oci_manifests,
            &self.oci_layers,
            &self.oci_blobs,
            &self.oci_refusals,
        ] {
            tree.clear()?;
        }
        let hf_root = self.manifests.join("hf");
        let mut listings = Vec::new();
        for kind in ["models", "datasets"] {
            collect_json(&hf_root.join(kind), &mut listings)?;
        }
        let mut wanted_sizes = HashSet::new();
        let mut parsed = Vec::new();
        for path in listings {
            let commit = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| Revision::parse(s).ok());
            let repo_key = path
                .parent()
                .and_then(|p| p.strip_prefix(&hf_root).ok())
                .and_then(|p| p.to_str())
                .map(str::to_owned);
            let (Some(commit), Some(repo_key)) = (commit, repo_key) else {
                report
                    .skipped
                    .push(format!("{}: unexpected name", path.display()));
                continue;
            };
            let bytes = std::fs::read(&path).map_err(MirrorError::io(&path))?;
            let manifest: Manifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    report.skipped.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            for e in manifest.files().filter(|e| e.lfs.is_none()) {
                wanted_sizes.insert(e.size);
            }
            parsed.push((repo_key, commit, manifest));
        }
        // Files kept in git are known upstream only by their git blob id: map ids to blobs by
        // hashing the blobs whose size some such file declares.
        let git_ids = self.git_ids_of_blobs(&wanted_sizes)?;
        for (repo_key, commit, manifest) in parsed {
            Self::put(
                &self.manifest_index,
                key(&[&repo_key, &commit.hex()]),
                &manifest,
            )?;
            report.listings += 1;
            for e in manifest.files() {
                let digest = match &e.lfs {
                    Some(lfs) => Some(lfs.sha256).filter(|d| self.has_blob(d)),
                    None => git_ids.get(&e.oid).copied(),
                };
                if let Some(digest) = digest {
                    let rec = FileRecord {
                        digest,
                        size: e.size,
                        etag: e.etag(),
                        scan: "reindexed".into(),
                    };
                    let k = key(&[&repo_key, &commit.hex(), e.path.as_str()]);
                    Self::put(&self.files, k, &rec)?;
                    report.files += 1;
                }
            }
        }
        let mut names = Vec::new();
        collect_json(&self.manifests.join("ollama"), &mut names)?;
        for path in names {
            let digest = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| Digest::from_hex(s).ok());
            let name_key = path
                .parent()
                .and_then(|p| p.strip_prefix(&self.manifests).ok())
                .and_then(|p| p.to_str())
                .map(str::to_owned);
            let (Some(digest), Some(name_key)) = (digest, name_key) else {
                report
                    .skipped
                    .push(format!("{}: unexpected name", path.display()));
                continue;
            };
            let rec: Option<ManifestRecord> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(rec) = rec.filter(|_| self.has_blob(&digest)) else {
                report.skipped.push(format!(
                    "{}: record or manifest blob unusable",
                    path.display()
                ));
                continue;
            };
            let bytes = self.read_small_blob(&digest, crate::upstream::oci::MAX_MANIFEST as u64)?;
            let Ok(layers) = crate::pipeline::manifest_layers(&bytes) else {
                report
                    .skipped
                    .push(format!("{}: manifest does not parse", path.display()));
                continue;
            };
            self.put_oci_manifest(&digest, &rec)?;
            report.manifests += 1;
            for (d, mut layer) in layers {
                layer.manifest = digest;
                Self::put(&self.oci_layers, key(&[&name_key, &d.hex()]), &layer)?;
                if self.has_blob(&d) {
                    self.put_blob_record(&FileRecord {
                        digest: d,
                        size: layer.size,
                        etag: d.hex(),
                        scan: "reindexed".into(),
                    })?;
                    report.files += 1;
                }
            }
        }
        Ok(report)
    }

    /// git blob ids of the blobs whose size is in `sizes`.
    fn git_ids_of_blobs(
        &self,
        sizes: &HashSet<u64>,
    ) -> Result<HashMap<GitOid, Digest>, MirrorError> {
        let mut out = HashMap::new();
        for listed in self.cas.list()? {
            let Some(digest) = listed.digest else {
                continue;
            };
            if !sizes.contains(&listed.size) {
                continue;
            }
            let mut reader = self.cas.reader(&digest)?;
            let mut hasher = verifier::Hasher::new(Some(listed.size));
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(MirrorError::io(&listed.location))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if let Some(oid) = hasher.finish().git_oid {
                out.insert(oid, digest);
            }
        }
        Ok(out)
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
        crate::crash::point("index.file");
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

    /// Writes small bytes straight into the blob store, for tests that need blobs to exist.
    #[cfg(test)]
    pub(crate) fn write_blob(&self, bytes: &[u8]) -> Result<Digest, MirrorError> {
        let dir =
            tempfile::tempdir_in(&self.quarantine).map_err(MirrorError::io(&self.quarantine))?;
        let path = dir.path().join("blob");
        std::fs::write(&path, bytes).map_err(MirrorError::io(&path))?;
        let digest = Digest::of(bytes);
        self.adopt(&path, &digest)?;
        Ok(digest)
    }

    /// Reads a whole small blob (a manifest). Blocking.
    pub fn read_small_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, MirrorError> {
        match self.cas.read_small(digest, limit) {
            Err(crate::cas::CasError::SizeMismatch { .. }) => Err(MirrorError::Corrupt {
                key: digest.to_string(),
                detail: "blob larger than expected".into(),
            }),
            other => Ok(other?),
        }
    }

    /// The last resolution of an Ollama tag.
    pub fn get_tag(&self, name: &OllamaName, tag: &Tag) -> Result<Option<TagRecord>, MirrorError> {
        Self::get(
            &self.oci_tags,
            &key(&[&name.index_key(), &tag.as_str().to_ascii_lowercase()]),
        )
    }

    /// Records an Ollama tag resolution.
    pub fn put_tag(&self, name: &OllamaName, tag: &Tag, digest: Digest) -> Result<(), MirrorError> {
        let k = key(&[&name.index_key(), &tag.as_str().to_ascii_lowercase()]);
        Self::put(
            &self.oci_tags,
            k,
            &TagRecord {
                digest,
                resolved_at: now_unix(),
            },
        )
    }

    /// A verified manifest's record.
    pub fn get_oci_manifest(&self, digest: &Digest) -> Result<Option<ManifestRecord>, MirrorError> {
        Self::get(&self.oci_manifests, &key(&[&digest.hex()]))
    }

    /// Records a verified manifest (its bytes must already be a promoted blob).
    pub fn put_oci_manifest(
        &self,
        digest: &Digest,
        rec: &ManifestRecord,
    ) -> Result<(), MirrorError> {
        Self::put(&self.oci_manifests, key(&[&digest.hex()]), rec)
    }

    /// A blob listed for `name` by one of its verified manifests.
    pub fn get_layer(
        &self,
        name: &OllamaName,
        digest: &Digest,
    ) -> Result<Option<LayerRecord>, MirrorError> {
        Self::get(&self.oci_layers, &key(&[&name.index_key(), &digest.hex()]))
    }

    /// Records a blob listed by a verified manifest of `name`.
    pub fn put_layer(
        &self,
        name: &OllamaName,
        digest: &Digest,
        rec: &LayerRecord,
    ) -> Result<(), MirrorError> {
        Self::put(
            &self.oci_layers,
            key(&[&name.index_key(), &digest.hex()]),
            rec,
        )
    }

    /// A verified, promoted OCI blob.
    pub fn get_blob_record(&self, digest: &Digest) -> Result<Option<FileRecord>, MirrorError> {
        Self::get(&self.oci_blobs, &key(&[&digest.hex()]))
    }

    /// Records a verified, promoted OCI blob.
    pub fn put_blob_record(&self, rec: &FileRecord) -> Result<(), MirrorError> {
        crate::crash::point("index.blob");
        Self::put(&self.oci_blobs, key(&[&rec.digest.hex()]), rec)
    }

    /// A refused OCI blob.
    pub fn get_blob_refusal(&self, digest: &Digest) -> Result<Option<Refusal>, MirrorError> {
        Self::get(&self.oci_refusals, &key(&[&digest.hex()]))
    }

    /// Records a refused OCI blob (sticky).
    pub fn put_blob_refusal(&self, digest: &Digest, r: &Refusal) -> Result<(), MirrorError> {
        Self::put(&self.oci_refusals, key(&[&digest.hex()]), r)
    }

    /// Whether the upstream answered `manifest` under `name` (asked by tag or by digest).
    pub fn is_confirmed(&self, name: &OllamaName, manifest: &Digest) -> Result<bool, MirrorError> {
        Ok(self
            .oci_confirmed
            .contains_key(key(&[&name.index_key(), &manifest.hex()]))?)
    }

    /// Records that the upstream answered `manifest` under `name`.
    pub fn put_confirmed(&self, name: &OllamaName, manifest: &Digest) -> Result<(), MirrorError> {
        Self::put(
            &self.oci_confirmed,
            key(&[&name.index_key(), &manifest.hex()]),
            &now_unix(),
        )
    }

    /// Records that `manifest`, listing `blobs`, was served under `name`: from now on those blobs
    /// may be served under that name (while the manifest stays in the name's scope).
    pub fn put_served(
        &self,
        name: &OllamaName,
        manifest: &Digest,
        blobs: impl IntoIterator<Item = Digest>,
    ) -> Result<(), MirrorError> {
        // Every pull serves the manifest again: write (and flush) only what is new.
        let mut batch = sled::Batch::default();
        let mut new = false;
        for b in blobs {
            let k = key(&[&name.index_key(), &b.hex(), &manifest.hex()]);
            if !self.oci_served.contains_key(&k)? {
                batch.insert(k, &[]);
                new = true;
            }
        }
        if new {
            self.oci_served.apply_batch(batch)?;
            self.oci_served.flush()?;
        }
        Ok(())
    }

    /// The manifests served under `name` that list `blob`.
    pub fn served_manifests(
        &self,
        name: &OllamaName,
        blob: &Digest,
    ) -> Result<Vec<Digest>, MirrorError> {
        let mut prefix = key(&[&name.index_key(), &blob.hex()]);
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.oci_served.scan_prefix(&prefix) {
            let (k, _) = item?;
            let hex = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let d =
                format!("sha256:{hex}")
                    .parse::<Digest>()
                    .map_err(|_| MirrorError::Corrupt {
                        key: String::from_utf8_lossy(&k).replace('\0', " "),
                        detail: "not a manifest digest".into(),
                    })?;
            out.push(d);
        }
        Ok(out)
    }

    /// Records a pinned tag's drift.
    pub fn put_drift(&self, rec: &DriftRecord) -> Result<(), MirrorError> {
        Self::put(&self.oci_drift, key(&[&rec.name.to_ascii_lowercase()]), rec)
    }

    /// Every recorded drift.
    pub fn drifts(&self) -> Result<Vec<DriftRecord>, MirrorError> {
        let mut out = Vec::new();
        for item in self.oci_drift.iter() {
            let (k, v) = item?;
            out.push(
                serde_json::from_slice(&v).map_err(|e| MirrorError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}
