//! The pipeline: name → policy → revision → listing → fetch into quarantine (hashing as bytes
//! arrive) → verify against the listing → scan → promote → index. One task per artifact
//! (single-flight); only promoted blobs are ever handed to the protocol adapters.
//!
//! States of a file: Absent → Fetching → Quarantined → Verified → Ready, or → Refused(reason).
//! Refusals of bytes are sticky (recorded in the index); upstream trouble is not.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::MirrorError;
use crate::flight::{Progress, SingleFlight, Waited};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::names::{HfRepo, RepoPath, Revision, RevisionName};
use crate::policy::{Decision, Policy};
use crate::quarantine::{Quarantined, WriteError};
use crate::refusal::Refusal;
use crate::store::{now_unix, FileRecord, Store};
use crate::upstream::hf::{Answer, HfUpstream, OpenError};

/// The answer to a lookup: found, refused by Airlock, or absent upstream.
#[derive(Debug)]
pub enum Lookup<T> {
    /// Here it is.
    Found(T),
    /// Airlock says no.
    Refused(Refusal),
    /// The repository does not exist (upstream says so).
    RepoNotFound(String),
    /// The revision does not exist.
    RevisionNotFound(String),
    /// The path does not exist at this commit.
    EntryNotFound {
        /// The commit that was looked in.
        commit: Revision,
    },
}

/// A resolved revision of a repository with its file listing.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The repository.
    pub repo: HfRepo,
    /// The commit.
    pub commit: Revision,
    /// Its files.
    pub manifest: Arc<Manifest>,
}

/// Where a file stands.
#[derive(Debug, Clone)]
pub enum FileState {
    /// Verified and promoted; serve this blob.
    Ready(FileRecord),
    /// Being fetched or checked; come back in `retry_after` seconds.
    Pending {
        /// Seconds.
        retry_after: u64,
    },
}

/// Outcome of a fetch task, shared by every waiter.
#[derive(Debug, Clone)]
enum Fetched {
    Ready(FileRecord),
    Refused(Refusal),
    Failed(String),
    Busy(u64),
}

type FileKey = (String, Revision, RepoPath);
type MetaKey = String;

/// The engine.
pub struct Mirror {
    store: Arc<Store>,
    policy: Policy,
    hf: Arc<HfUpstream>,
    revision_ttl: u64,
    rt: tokio::runtime::Handle,
    files: SingleFlight<FileKey, Fetched>,
    refs: SingleFlight<MetaKey, Result<Answer<Revision>, String>>,
    listings: SingleFlight<MetaKey, Result<Answer<Arc<Manifest>>, String>>,
}

/// How many times a broken download is resumed before giving up.
const MAX_ATTEMPTS: u32 = 6;

impl Mirror {
    /// Opens the store and builds the upstream clients. Background work runs on `rt` (the engine
    /// runtime, separate from the HTTP workers' event loops).
    pub fn open(cfg: &Config, rt: tokio::runtime::Handle) -> Result<Mirror, MirrorError> {
        let store = Arc::new(Store::open(&cfg.data_dir)?);
        Ok(Mirror {
            store,
            policy: Policy::new(&cfg.policy)?,
            hf: Arc::new(HfUpstream::new(&cfg.huggingface)?),
            revision_ttl: cfg.huggingface.revision_ttl_secs,
            files: SingleFlight::new(rt.clone()),
            refs: SingleFlight::new(rt.clone()),
            listings: SingleFlight::new(rt.clone()),
            rt,
        })
    }

    /// The store (for serving promoted blobs).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs blocking work (disk, hashing, scanning) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, MirrorError> + Send + 'static,
    ) -> Result<T, MirrorError> {
        self.rt
            .spawn_blocking(f)
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))?
    }

    /// Resolves `rev` of `repo` to a commit and its listing, applying policy and pins.
    pub async fn snapshot(
        &self,
        repo: &HfRepo,
        rev: &RevisionName,
    ) -> Result<Lookup<Snapshot>, MirrorError> {
        let pin = match self.policy.decide(repo) {
            Decision::Refused(r) => return Ok(Lookup::Refused(r)),
            Decision::Allowed { pin } => pin,
        };
        let commit = match (pin, rev.as_commit()) {
            (Some(pin), Some(asked)) if asked != pin => {
                return Ok(Lookup::Refused(Refusal::PinnedElsewhere {
                    name: repo.policy_name(),
                    asked: rev.to_string(),
                    pinned: pin,
                }))
            }
            // A pinned rule never moves: every branch or tag name means the pinned commit.
            (Some(pin), _) => pin,
            (None, Some(asked)) => asked,
            (None, None) => match self.resolve(repo, rev).await? {
                Lookup::Found(c) => c,
                Lookup::Refused(r) => return Ok(Lookup::Refused(r)),
                Lookup::RepoNotFound(m) => return Ok(Lookup::RepoNotFound(m)),
                Lookup::RevisionNotFound(m) => return Ok(Lookup::RevisionNotFound(m)),
                Lookup::EntryNotFound { commit } => return Ok(Lookup::EntryNotFound { commit }),
            },
        };
        let manifest = match self.store.get_manifest(repo, commit)? {
            Some(m) => Arc::new(m),
            None => match self.listing(repo, commit).await? {
                Answer::Found(m) => m,
                Answer::RepoNotFound(m) => return Ok(Lookup::RepoNotFound(m)),
                Answer::RevisionNotFound(m) | Answer::EntryNotFound(m) => {
                    return Ok(Lookup::RevisionNotFound(m))
                }
                Answer::Denied(m) => {
                    return Ok(Lookup::Refused(Refusal::UpstreamDenied {
                        name: repo.policy_name(),
                        detail: m,
                    }))
                }
            },
        };
        Ok(Lookup::Found(Snapshot {
            repo: repo.clone(),
            commit,
            manifest,
        }))
    }

    /// Branch/tag → commit: a fresh stored resolution, else upstream (single-flight), else a stale
    /// stored one if upstream is unreachable.
    async fn resolve(
        &self,
        repo: &HfRepo,
        rev: &RevisionName,
    ) -> Result<Lookup<Revision>, MirrorError> {
        let stored = self.store.get_ref(repo, rev)?;
        if let Some(r) =
            stored.filter(|r| now_unix().saturating_sub(r.resolved_at) < self.revision_ttl)
        {
            return Ok(Lookup::Found(r.commit));
        }
        let key = format!("{}\0{}", repo.index_key(), rev);
        let (hf, store, repo2, rev2) = (
            self.hf.clone(),
            self.store.clone(),
            repo.clone(),
            rev.clone(),
        );
        let flight = self.refs.join(
            key,
            || None,
            move |_| async move {
                let answer = hf.resolve(&repo2, &rev2).await.map_err(|e| e.to_string())?;
                if let Answer::Found(c) = &answer {
                    let c = *c;
                    tokio::task::spawn_blocking(move || store.put_ref(&repo2, &rev2, c))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                }
                Ok(answer)
            },
        );
        let answer = match flight.wait(Duration::from_secs(60)).await {
            Waited::Done(a) => a,
            Waited::Running { .. } => Err("upstream did not answer in time".to_string()),
            Waited::Lost => Err("revision lookup task failed".to_string()),
        };
        match answer {
            Ok(Answer::Found(c)) => Ok(Lookup::Found(c)),
            Ok(Answer::RepoNotFound(m)) => Ok(Lookup::RepoNotFound(m)),
            Ok(Answer::RevisionNotFound(m)) | Ok(Answer::EntryNotFound(m)) => {
                Ok(Lookup::RevisionNotFound(m))
            }
            Ok(Answer::Denied(m)) => Ok(Lookup::Refused(Refusal::UpstreamDenied {
                name: repo.policy_name(),
                detail: m,
            })),
            Err(e) => match stored {
                Some(r) => {
                    tracing::warn!(repo = %repo, rev = %rev, error = %e, "upstream unavailable; using stored resolution");
                    Ok(Lookup::Found(r.commit))
                }
                None => Err(MirrorError::Upstream(e)),
            },
        }
    }

    /// Fetches (single-flight) and stores the listing of a commit.
    async fn listing(
        &self,
        repo: &HfRepo,
        commit: Revision,
    ) -> Result<Answer<Arc<Manifest>>, MirrorError> {
        let key = format!("{}\0{}", repo.index_key(), commit);
        let (hf, store, repo2) = (self.hf.clone(), self.store.clone(), repo.clone());
        let flight = self.listings.join(
            key,
            || None,
            move |_| async move {
                match hf
                    .manifest(&repo2, commit)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Answer::Found(m) => {
                        let m = Arc::new(m);
                        let m2 = m.clone();
                        tokio::task::spawn_blocking(move || {
                            store.put_manifest(&repo2, commit, &m2)
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                        Ok(Answer::Found(m))
                    }
                    Answer::RepoNotFound(m) => Ok(Answer::RepoNotFound(m)),
                    Answer::RevisionNotFound(m) => Ok(Answer::RevisionNotFound(m)),
                    Answer::EntryNotFound(m) => Ok(Answer::EntryNotFound(m)),
                    Answer::Denied(m) => Ok(Answer::Denied(m)),
                }
            },
        );
        match flight.wait(Duration::from_secs(120)).await {
            Waited::Done(a) => a.map_err(MirrorError::Upstream),
            Waited::Running { .. } => Err(MirrorError::Upstream(
                "upstream listing did not finish in time".into(),
            )),
            Waited::Lost => Err(MirrorError::Task("listing task failed".into())),
        }
    }

    /// The state of one file of a snapshot, starting its fetch if needed and waiting at most
    /// `wait` for it to become ready.
    pub async fn file(
        &self,
        snap: &Snapshot,
        path: &RepoPath,
        wait: Duration,
    ) -> Result<Lookup<FileState>, MirrorError> {
        let entry = match snap.manifest.get(path.as_str()) {
            Some(e) if e.kind == EntryKind::File => e.clone(),
            _ => {
                return Ok(Lookup::EntryNotFound {
                    commit: snap.commit,
                })
            }
        };
        if let Some(r) = self.store.get_refusal(&snap.repo, snap.commit, path)? {
            return Ok(Lookup::Refused(r));
        }
        let key = (snap.repo.index_key(), snap.commit, path.clone());
        let store = self.store.clone();
        let (repo, commit, path2) = (snap.repo.clone(), snap.commit, path.clone());
        let settled = || match store.get_file(&repo, commit, &path2) {
            Ok(Some(rec)) => Some(Fetched::Ready(rec)),
            _ => None,
        };
        let task = FetchTask {
            store: self.store.clone(),
            hf: self.hf.clone(),
            repo: snap.repo.clone(),
            commit: snap.commit,
            entry,
        };
        let flight = self
            .files
            .join(key, settled, move |progress| task.run(progress));
        Ok(match flight.wait(wait).await {
            Waited::Done(Fetched::Ready(rec)) => Lookup::Found(FileState::Ready(rec)),
            Waited::Done(Fetched::Refused(r)) => Lookup::Refused(r),
            Waited::Done(Fetched::Failed(m)) => return Err(MirrorError::Upstream(m)),
            Waited::Done(Fetched::Busy(s)) => {
                return Err(MirrorError::UpstreamBusy {
                    retry_after_secs: s,
                })
            }
            Waited::Running { eta_secs } => Lookup::Found(FileState::Pending {
                retry_after: eta_secs.clamp(1, 10),
            }),
            Waited::Lost => return Err(MirrorError::Task("fetch task failed".into())),
        })
    }

    /// Opens a promoted blob for serving.
    pub async fn open_blob(&self, rec: &FileRecord) -> Result<std::fs::File, MirrorError> {
        let (store, digest) = (self.store.clone(), rec.digest);
        self.blocking(move || store.open_blob(&digest)).await
    }
}

/// One file's journey from upstream to the blob store.
struct FetchTask {
    store: Arc<Store>,
    hf: Arc<HfUpstream>,
    repo: HfRepo,
    commit: Revision,
    entry: Entry,
}

/// A message to the blocking writer.
enum Chunk {
    Data(Bytes),
    /// The upstream ignored our `Range`: start over.
    Restart,
}

impl FetchTask {
    async fn run(self, progress: Arc<Progress>) -> Fetched {
        let path = self.entry.path.clone();
        let outcome = self.fetch_and_check(&progress).await;
        match outcome {
            Ok(Ok(rec)) => Fetched::Ready(rec),
            Ok(Err(reason)) => {
                tracing::warn!(repo = %self.repo, commit = %self.commit, file = %path, %reason, "refused");
                let refusal = Refusal::Verification {
                    file: path.clone(),
                    reason,
                };
                let (store, repo, commit, r) = (
                    self.store.clone(),
                    self.repo.clone(),
                    self.commit,
                    refusal.clone(),
                );
                let recorded = tokio::task::spawn_blocking(move || {
                    store.put_refusal(&repo, commit, &path, &r)
                })
                .await;
                if !matches!(recorded, Ok(Ok(()))) {
                    tracing::error!(
                        "could not record refusal; it will be re-checked on the next request"
                    );
                }
                Fetched::Refused(refusal)
            }
            Err(MirrorError::UpstreamBusy { retry_after_secs }) => Fetched::Busy(retry_after_secs),
            Err(e) => {
                tracing::warn!(repo = %self.repo, file = %path, error = %e, "fetch failed");
                Fetched::Failed(match e {
                    MirrorError::Upstream(m) => m,
                    _ => "internal error while fetching (see server log)".into(),
                })
            }
        }
    }

    /// Fetch, verify, scan, promote. The inner `Err(String)` is a refusal reason for the bytes.
    async fn fetch_and_check(
        &self,
        progress: &Progress,
    ) -> Result<Result<FileRecord, String>, MirrorError> {
        let declared = self.entry.size;
        // Git ids are over `blob <size>\0` + content: computed for files kept in git itself.
        let git_size = self.entry.lfs.is_none().then_some(declared);
        let store = self.store.clone();
        let writer =
            tokio::task::spawn_blocking(move || store.quarantine_writer(declared, git_size))
                .await
                .map_err(|e| MirrorError::Task(e.to_string()))??;
        // The writer lives on a blocking thread; chunks reach it through a bounded channel, so
        // memory stays bounded whatever the file size and hashing overlaps the network.
        let (tx, mut rx) = mpsc::channel::<Chunk>(16);
        let writer_task = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Chunk::Data(b) => writer.write(&b)?,
                    Chunk::Restart => writer.reset()?,
                }
            }
            Ok::<_, WriteError>(writer.finish()?)
        });
        let streamed = self.stream_into(&tx, declared, progress).await;
        drop(tx);
        let written = writer_task
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))?;
        if let Err(reason) = streamed? {
            return Ok(Err(reason));
        }
        let quarantined = match written {
            Ok(q) => q,
            Err(WriteError::TooLarge { limit }) => {
                return Ok(Err(format!(
                    "upstream sent more than the declared {limit} bytes"
                )))
            }
            Err(WriteError::Mirror(e)) => return Err(e),
        };
        if let Err(reason) = self.check_digests(&quarantined) {
            return Ok(Err(reason));
        }
        let scan = match self.scan(&quarantined).await? {
            Ok(summary) => summary,
            Err(reason) => return Ok(Err(reason)),
        };
        let store = self.store.clone();
        let (repo, commit, path) = (self.repo.clone(), self.commit, self.entry.path.clone());
        let rec = FileRecord {
            digest: quarantined.outcome().sha256,
            size: declared,
            etag: self.entry.etag(),
            scan,
        };
        let rec2 = rec.clone();
        tokio::task::spawn_blocking(move || {
            store.promote(quarantined)?;
            store.put_file(&repo, commit, &path, &rec2)
        })
        .await
        .map_err(|e| MirrorError::Task(e.to_string()))??;
        tracing::info!(repo = %self.repo, commit = %self.commit, file = %self.entry.path, digest = %rec.digest, "promoted");
        Ok(Ok(rec))
    }

    /// Streams the file into the writer, resuming with `Range` after breaks and honouring
    /// `Retry-After`. `Ok(Err(reason))` means the upstream's bytes are unacceptable.
    async fn stream_into(
        &self,
        tx: &mpsc::Sender<Chunk>,
        declared: u64,
        progress: &Progress,
    ) -> Result<Result<(), String>, MirrorError> {
        let mut offset = 0u64;
        let mut attempt = 0u32;
        let mut last_error = String::new();
        while offset < declared || (declared == 0 && attempt == 0) {
            if attempt > 0 {
                if attempt >= MAX_ATTEMPTS {
                    return Err(MirrorError::Upstream(format!(
                        "download of {} failed after {attempt} attempts: {last_error}",
                        self.entry.path
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
            attempt += 1;
            let resp = match self
                .hf
                .open_file(&self.repo, self.commit, &self.entry.path, offset)
                .await
            {
                Ok(r) => r,
                Err(OpenError::Permanent(m)) => return Err(MirrorError::Upstream(m)),
                Err(OpenError::Transient {
                    detail,
                    retry_after,
                }) => {
                    if let Some(s) = retry_after {
                        tokio::time::sleep(Duration::from_secs(s.min(30))).await;
                    }
                    last_error = detail;
                    continue;
                }
            };
            if !resp.partial && offset > 0 {
                offset = 0;
                if tx.send(Chunk::Restart).await.is_err() {
                    return Ok(Ok(())); // the writer stopped; its own error explains why
                }
            }
            if let Some(len) = resp.response.content_length() {
                if offset + len != declared {
                    return Ok(Err(format!(
                        "upstream Content-Length {} does not match the declared size {declared}",
                        offset + len
                    )));
                }
            }
            let mut body = resp.response.bytes_stream();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => {
                        if offset + b.len() as u64 > declared {
                            return Ok(Err(format!(
                                "upstream sent more than the declared {declared} bytes"
                            )));
                        }
                        offset += b.len() as u64;
                        progress.set(offset, declared);
                        if tx.send(Chunk::Data(b)).await.is_err() {
                            return Ok(Ok(()));
                        }
                    }
                    Err(e) => {
                        last_error = crate::upstream::describe(&e);
                        break;
                    }
                }
            }
            if offset < declared && last_error.is_empty() {
                last_error = "connection closed before the declared size".into();
            }
            if declared == 0 {
                break;
            }
        }
        Ok(Ok(()))
    }

    /// Size and digest against the listing: LFS files by sha256, git files by blob id.
    fn check_digests(&self, q: &Quarantined) -> Result<(), String> {
        let got = q.outcome();
        if got.len != self.entry.size {
            return Err(format!(
                "size {} differs from the declared {}",
                got.len, self.entry.size
            ));
        }
        match (&self.entry.lfs, got.git_oid) {
            (Some(lfs), _) if lfs.sha256 != got.sha256 => Err(format!(
                "sha256 mismatch: upstream declared {}, received bytes hash to {}",
                lfs.sha256.hex(),
                got.sha256.hex()
            )),
            (Some(_), _) => Ok(()),
            (None, Some(oid)) if oid != self.entry.oid => Err(format!(
                "git blob id mismatch: upstream declared {}, received bytes hash to {}",
                self.entry.oid, oid
            )),
            (None, Some(_)) => Ok(()),
            (None, None) => Err("no digest to check against".into()),
        }
    }

    /// Runs the scanners over the quarantined file (off the async workers). `Ok(Err(reason))` if
    /// the file must be refused.
    async fn scan(&self, q: &Quarantined) -> Result<Result<String, String>, MirrorError> {
        let path = q.path().to_owned();
        let len = q.outcome().len;
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(MirrorError::io(&path))?;
            let report = verifier::scan(std::io::BufReader::new(file), len).map_err(|e| {
                MirrorError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            Ok(if report.is_clean() {
                Ok(report.summary())
            } else {
                Err(report.summary())
            })
        })
        .await
        .map_err(|e| MirrorError::Task(e.to_string()))?
    }
}
