//! The Hugging Face side of the pipeline: revision → commit → listing, and files checked against
//! the listing's declared size and sha256 / git blob id.

use std::sync::Arc;
use std::time::Duration;

use super::admit::{Admit, Asked};
use super::fetch::{Expect, FetchEnv, FetchTask, Scanning};
use super::{Fetched, FileState, Lookup, Mirror, Missing};
use crate::error::MirrorError;
use crate::flight::{Progress, Waited};
use crate::governance::Approval;
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::names::{HfRepo, RepoPath, Revision, RevisionName};
use crate::policy::Decision;
use crate::refusal::Refusal;
use crate::store::{now_unix, FileRecord, Store};
use crate::upstream::hf::{Answer, HfUpstream};
use signing::Source;

/// A resolved revision of a repository with its file listing.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The repository.
    pub repo: HfRepo,
    /// The commit.
    pub commit: Revision,
    /// Its files.
    pub manifest: Arc<Manifest>,
    /// The approval that covers it, if approvals decide for this repo: only its files, with its
    /// sha256 pins, are served.
    pub approval: Option<Arc<Approval>>,
    /// The signature rule the repo is under, if any.
    pub trust: Option<Arc<crate::trust::Rule>>,
}

impl Mirror {
    /// Resolves `rev` of `repo` to a commit and its listing, applying approvals, policy and pins.
    /// `client` names the asker in requests and the audit log.
    pub async fn snapshot(
        &self,
        repo: &HfRepo,
        rev: &RevisionName,
        client: &crate::Caller,
    ) -> Result<Lookup<Snapshot>, MirrorError> {
        let name = repo.policy_name();
        let config = || match self.policy.decide(repo) {
            Decision::Allowed { pin } => Ok(pin.map(|p| p.hex())),
            Decision::Refused(r) => Err(r),
        };
        let (pin, approval) = match self
            .admit(
                Source::Hf,
                &name,
                rev.as_str(),
                config,
                client,
                Asked::Hf(repo, rev),
            )
            .await?
        {
            Admit::Allowed { pin, approval } => (pin, approval),
            Admit::Refused(r) => return Ok(Lookup::Refused(r)),
            Admit::Missing(m) => return Ok(m.into()),
        };
        let pin = match pin.map(|p| Revision::parse(&p)) {
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => {
                return Ok(Lookup::Refused(Refusal::RevisionNotApproved {
                    name,
                    asked: rev.to_string(),
                    approved: "an approval whose revision is not a commit".into(),
                }))
            }
            None => None,
        };
        // A pinned rule or an approval maps every name to its commit; only an unpinned rule would
        // resolve a pull request's head, which is anyone's upload.
        if pin.is_none() {
            if let Some(r) = self.hf_revision_scope(repo, rev) {
                self.audit_refusal(client, &name, rev.as_str(), &r);
                return Ok(Lookup::Refused(r));
            }
        }
        let snap = self.resolve_snapshot(repo, rev, pin).await?;
        Ok(match snap {
            Lookup::Found(mut s) => {
                // Under an approval the version is the approved files only: listings show no
                // file a download would then refuse (snapshot_download fetches every listed one).
                if let Some(a) = &approval {
                    let kept = s.manifest.entries.iter().filter(|e| {
                        e.kind == EntryKind::Directory || a.record.file(e.path.as_str()).is_some()
                    });
                    s.manifest = Arc::new(Manifest::new(kept.cloned().collect()));
                }
                s.approval = approval;
                s.trust = self.trust.rule_for(repo);
                Lookup::Found(s)
            }
            other => other,
        })
    }

    /// Resolves a revision to a commit (or takes the pin) and loads its listing. No policy: callers
    /// decide first ([`Mirror::snapshot`]) or are the governance team ([`Mirror::prepare`]).
    pub(crate) async fn resolve_snapshot(
        &self,
        repo: &HfRepo,
        rev: &RevisionName,
        pin: Option<Revision>,
    ) -> Result<Lookup<Snapshot>, MirrorError> {
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
            (None, Some(asked)) => match self.missing.get(&missing_key(repo, &asked.hex())) {
                Some(miss) => return Ok(miss.into()),
                None => asked,
            },
            (None, None) => match self.resolve(repo, rev).await? {
                Lookup::Found(c) => c,
                Lookup::Refused(r) => return Ok(Lookup::Refused(r)),
                Lookup::RepoNotFound(m) => return Ok(Lookup::RepoNotFound(m)),
                Lookup::RevisionNotFound(m) => return Ok(Lookup::RevisionNotFound(m)),
                Lookup::EntryNotFound { commit } => return Ok(Lookup::EntryNotFound { commit }),
            },
        };
        // Reading and decoding a whole listing is disk and CPU work: off the event loop, and
        // only when it is not already decoded in memory.
        let hot_key = format!("{}\0{commit}", repo.index_key());
        let stored = match self.listings_hot.get(&hot_key) {
            Some(m) => Some(m),
            None => {
                let (store, repo2) = (self.store.clone(), repo.clone());
                let m = self
                    .blocking(move || store.get_manifest(&repo2, commit))
                    .await?
                    .map(Arc::new);
                if let Some(m) = &m {
                    self.listings_hot.insert(hot_key, m.clone());
                }
                m
            }
        };
        let manifest = match stored {
            Some(m) => m,
            None if self.offline => {
                return Ok(Lookup::Refused(Refusal::Offline {
                    name: format!("{} at {commit}", repo.policy_name()),
                }))
            }
            None => match self.listing(repo, commit).await? {
                Answer::Found(m) => m,
                Answer::RepoNotFound(m) => {
                    return Ok(self.remember_missing(repo, &commit.hex(), Missing::Repo(m)))
                }
                Answer::RevisionNotFound(m) | Answer::EntryNotFound(m) => {
                    return Ok(self.remember_missing(repo, &commit.hex(), Missing::Revision(m)))
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
            approval: None,
            trust: None,
        }))
    }

    /// Branch/tag → commit: a fresh stored resolution, else upstream (single-flight), else a stale
    /// stored one if upstream is unreachable.
    pub(super) async fn resolve(
        &self,
        repo: &HfRepo,
        rev: &RevisionName,
    ) -> Result<Lookup<Revision>, MirrorError> {
        let hot_key = missing_key(repo, rev.as_str());
        let stored = match self
            .refs_hot
            .get(&hot_key)
            .filter(|r| now_unix().saturating_sub(r.resolved_at) < self.revision_ttl)
        {
            Some(r) => Some(r),
            None => {
                let (store, repo2, rev2) = (self.store.clone(), repo.clone(), rev.clone());
                let r = self.blocking(move || store.get_ref(&repo2, &rev2)).await?;
                if let Some(r) = r {
                    self.refs_hot.insert(hot_key, r);
                }
                r
            }
        };
        // Offline, an imported resolution never goes stale: there is nothing to ask.
        if self.offline {
            return Ok(match stored {
                Some(r) => Lookup::Found(r.commit),
                None => Lookup::Refused(Refusal::Offline {
                    name: format!("{} revision {rev}", repo.policy_name()),
                }),
            });
        }
        if let Some(r) =
            stored.filter(|r| now_unix().saturating_sub(r.resolved_at) < self.revision_ttl)
        {
            return Ok(Lookup::Found(r.commit));
        }
        let key = missing_key(repo, rev.as_str());
        if let Some(miss) = self.missing.get(&key) {
            return Ok(miss.into());
        }
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
                let answer = hf.resolve(&repo2, &rev2).await.map_err(Arc::new)?;
                if let Answer::Found(c) = &answer {
                    let c = *c;
                    tokio::task::spawn_blocking(move || store.put_ref(&repo2, &rev2, c))
                        .await
                        .map_err(|e| Arc::new(MirrorError::Task(e.to_string())))?
                        .map_err(Arc::new)?;
                }
                Ok(answer)
            },
        );
        let answer = match flight.await.wait(Duration::from_secs(60)).await {
            Waited::Done(a) => a,
            Waited::Running { .. } => Err(Arc::new(MirrorError::Upstream(
                "upstream did not answer in time".into(),
            ))),
            Waited::Lost => Err(Arc::new(MirrorError::Task(
                "revision lookup task failed".into(),
            ))),
        };
        match answer {
            Ok(Answer::Found(c)) => Ok(Lookup::Found(c)),
            Ok(Answer::RepoNotFound(m)) => {
                Ok(self.remember_missing(repo, rev.as_str(), Missing::Repo(m)))
            }
            Ok(Answer::RevisionNotFound(m)) | Ok(Answer::EntryNotFound(m)) => {
                Ok(self.remember_missing(repo, rev.as_str(), Missing::Revision(m)))
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
                None => Err(MirrorError::Shared(e)),
            },
        }
    }

    /// Remembers an upstream miss for [`MISSING_TTL`](super::MISSING_TTL) and returns it.
    fn remember_missing<T>(&self, repo: &HfRepo, rev: &str, miss: Missing) -> Lookup<T> {
        self.missing.insert(missing_key(repo, rev), miss.clone());
        miss.into()
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
                match hf.manifest(&repo2, commit).await.map_err(Arc::new)? {
                    Answer::Found(m) => {
                        let m = Arc::new(m);
                        let m2 = m.clone();
                        tokio::task::spawn_blocking(move || {
                            store.put_manifest(&repo2, commit, &m2)
                        })
                        .await
                        .map_err(|e| Arc::new(MirrorError::Task(e.to_string())))?
                        .map_err(Arc::new)?;
                        Ok(Answer::Found(m))
                    }
                    Answer::RepoNotFound(m) => Ok(Answer::RepoNotFound(m)),
                    Answer::RevisionNotFound(m) => Ok(Answer::RevisionNotFound(m)),
                    Answer::EntryNotFound(m) => Ok(Answer::EntryNotFound(m)),
                    Answer::Denied(m) => Ok(Answer::Denied(m)),
                }
            },
        );
        match flight.await.wait(Duration::from_secs(120)).await {
            Waited::Done(a) => a.map_err(MirrorError::Shared),
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
        // A repo under a signature rule: nothing of a revision is served before its signature
        // verified over the whole revision, and then only the files it covers.
        if let Some(rule) = &snap.trust {
            if let Some(stop) = self.signature_gate(snap, rule, path, wait).await? {
                return Ok(stop);
            }
        }
        self.file_unsigned(snap, path, wait).await
    }

    /// [`Mirror::file`] without the signature gate (approval pins still apply).
    pub(crate) async fn file_unsigned(
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
        // Under an approval, only approved files are part of the version.
        let pinned = match &snap.approval {
            Some(a) => match a.record.file(path.as_str()) {
                Some(f) => Some((f.sha256, f.size)),
                None => {
                    return Ok(Lookup::EntryNotFound {
                        commit: snap.commit,
                    })
                }
            },
            None => None,
        };
        let (store, repo, commit, path2) = (
            self.store.clone(),
            snap.repo.clone(),
            snap.commit,
            path.clone(),
        );
        // Offline, a file that is not stored is refused before a fetch could start. Online, the
        // sticky refusal is read by `settled` below, in the one blocking hop a warm request makes.
        if self.offline {
            let (refused, missing) = self
                .blocking(move || {
                    let refused = store.get_refusal(&repo, commit, &path2)?;
                    Ok((refused, store.get_file(&repo, commit, &path2)?.is_none()))
                })
                .await?;
            if let Some(r) = refused {
                return Ok(Lookup::Refused(r));
            }
            if missing {
                return Ok(Lookup::Refused(Refusal::Offline {
                    name: format!("{} file {path} at {}", snap.repo.policy_name(), snap.commit),
                }));
            }
        }
        let key = (snap.repo.index_key(), snap.commit, path.clone());
        let store = self.store.clone();
        let scanning = self.scanning.clone();
        let (repo, commit, path2) = (snap.repo.clone(), snap.commit, path.clone());
        // A record whose blob is gone (a crash before the blob's directory was durable, or an
        // operator's hand) is not Ready: fetch and verify the file again instead of a 500.
        let settled = move || {
            if let Ok(Some(r)) = store.get_refusal(&repo, commit, &path2) {
                return Some(Fetched::Refused(r));
            }
            match store.get_file(&repo, commit, &path2) {
                Ok(Some(rec)) if store.has_blob(&rec.digest) => Some(Fetched::Ready(rec)),
                _ => None,
            }
        };
        let (store, hf, repo) = (self.store.clone(), self.hf.clone(), snap.repo.clone());
        let (commit, env) = (snap.commit, self.fetch_env.clone());
        let flight = self.files.join(key, settled, move |progress| {
            fetch_file(store, env, scanning, hf, repo, commit, entry, progress)
        });
        match flight.await.wait(wait).await {
            Waited::Done(Fetched::Ready(rec)) => match pinned {
                // The approval pinned other bytes than upstream now declares for this commit.
                Some((sha, size)) if sha != rec.digest || size != rec.size => {
                    Ok(Lookup::Refused(Refusal::Verification {
                        file: path.to_string(),
                        reason: format!(
                            "does not match the approved sha256 {} (approval {})",
                            sha.hex(),
                            snap.approval
                                .as_ref()
                                .map(|a| a.id.to_string())
                                .unwrap_or_default()
                        ),
                    }))
                }
                _ => Ok(Lookup::Found(FileState::Ready(rec))),
            },
            Waited::Done(f) => Mirror::settle(f),
            Waited::Running {
                eta_secs,
                elapsed_secs,
            } => Ok(Lookup::Found(FileState::Pending {
                retry_after: super::retry_after(eta_secs, elapsed_secs),
            })),
            Waited::Lost => Err(MirrorError::Task("fetch task failed".into())),
        }
    }
}

/// The negative cache's key (also the refs flight's): repo and revision as asked.
fn missing_key(repo: &HfRepo, rev: &str) -> String {
    format!("{}\0{rev}", repo.index_key())
}

impl<T> From<Missing> for Lookup<T> {
    fn from(m: Missing) -> Self {
        match m {
            Missing::Repo(m) => Lookup::RepoNotFound(m),
            Missing::Revision(m) => Lookup::RevisionNotFound(m),
        }
    }
}

/// Fetches one file of a commit through the shared pipeline and records the outcome in the index
/// (the file record, or a sticky refusal).
async fn fetch_file(
    store: Arc<Store>,
    env: Arc<FetchEnv>,
    scanning: Arc<Scanning>,
    hf: Arc<HfUpstream>,
    repo: HfRepo,
    commit: Revision,
    entry: Entry,
    progress: Arc<Progress>,
) -> Fetched {
    let expect = match &entry.lfs {
        Some(lfs) => Expect::Sha256(lfs.sha256),
        None => Expect::GitBlob(entry.oid),
    };
    let (hf2, repo2, path2) = (hf.clone(), repo.clone(), entry.path.clone());
    let task = FetchTask {
        store: store.clone(),
        env,
        open: Box::new(move |range| {
            let (hf, repo, path) = (hf2.clone(), repo2.clone(), path2.clone());
            Box::pin(async move { hf.open_file(&repo, commit, &path, range).await })
        }),
        label: format!("{repo}/{}", entry.path),
        upstream: "hf",
        size: entry.size,
        expect,
        formats: None,
        scanning,
    };
    let path = entry.path.clone();
    match task.run(&progress).await {
        Ok(Ok(promoted)) => {
            let rec = FileRecord {
                digest: promoted.digest,
                size: entry.size,
                etag: entry.etag(),
                scan: promoted.scan,
            };
            let (rec2, repo2, path2) = (rec.clone(), repo.clone(), path.clone());
            let put =
                tokio::task::spawn_blocking(move || store.put_file(&repo2, commit, &path2, &rec2))
                    .await;
            match put {
                Ok(Ok(())) => Fetched::Ready(rec),
                Ok(Err(e)) => Fetched::from_error(e, &path.to_string()),
                Err(e) => Fetched::from_error(MirrorError::Task(e.to_string()), &path.to_string()),
            }
        }
        Ok(Err(reason)) => {
            tracing::warn!(%repo, %commit, file = %path, %reason, "refused");
            let refusal = Refusal::Verification {
                file: path.to_string(),
                reason,
            };
            let r = refusal.clone();
            let put =
                tokio::task::spawn_blocking(move || store.put_refusal(&repo, commit, &path, &r))
                    .await;
            if !matches!(put, Ok(Ok(()))) {
                tracing::error!(
                    "could not record a refusal; it will be re-checked on the next request"
                );
            }
            Fetched::Refused(refusal)
        }
        Err(e) => Fetched::from_error(e, &path.to_string()),
    }
}
