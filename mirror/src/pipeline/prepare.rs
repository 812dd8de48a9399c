//! Preparing a version for review: fetch every file through the pipeline (verified against what
//! upstream declared, scanned, promoted into the content-addressed store but served to nobody
//! until approved), then report digests, sizes, licence and refusals. Used by the review-request
//! prefetch and by `airlock approve` through the admin API. Policy is not consulted: the
//! governance team is the one asking.

use std::time::Duration;

use futures_util::StreamExt;
use signing::Source;

use super::{FileState, Lookup, Mirror};
use crate::governance::{
    licence_of_model_card, licence_of_text, Prepared, PreparedFile, RefusedFile,
};
use crate::names::{HfRepo, OllamaName, Reference, RepoId, RepoKind, RevisionName};

/// How long one file may take to fetch and check while preparing.
const FILE_BUDGET: Duration = Duration::from_secs(3600);
/// Files fetched at once.
const PARALLEL: usize = 4;

impl Mirror {
    /// Fetches, verifies and scans a whole version, unless it is larger than `max_bytes`.
    pub async fn prepare(
        &self,
        source: Source,
        name: &str,
        revision: &str,
        max_bytes: Option<u64>,
    ) -> Result<Prepared, String> {
        match source {
            Source::Hf => self.prepare_hf(name, revision, max_bytes).await,
            Source::Ollama => self.prepare_ollama(name, revision, max_bytes).await,
        }
    }

    async fn prepare_hf(
        &self,
        name: &str,
        revision: &str,
        max_bytes: Option<u64>,
    ) -> Result<Prepared, String> {
        let (kind, id) = match name.strip_prefix("datasets/") {
            Some(rest) => (RepoKind::Dataset, rest),
            None => (RepoKind::Model, name),
        };
        let repo = HfRepo {
            kind,
            id: RepoId::parse(id).map_err(|e| e.to_string())?,
        };
        let rev = RevisionName::parse(revision).map_err(|e| e.to_string())?;
        let snap = match self
            .resolve_snapshot(&repo, &rev, None)
            .await
            .map_err(|e| e.to_string())?
        {
            Lookup::Found(s) => s,
            Lookup::Refused(r) => return Err(r.to_string()),
            Lookup::RepoNotFound(m) => return Err(format!("repository not found upstream: {m}")),
            Lookup::RevisionNotFound(m) => return Err(format!("revision not found upstream: {m}")),
            Lookup::EntryNotFound { .. } => return Err("revision not found upstream".into()),
        };
        let total: u64 = snap.manifest.files().map(|e| e.size).sum();
        check_size(total, max_bytes)?;
        let paths: Vec<_> = snap.manifest.files().map(|e| e.path.clone()).collect();
        let results: Vec<_> = futures_util::stream::iter(paths)
            .map(|path| {
                let snap = &snap;
                async move { (path.clone(), self.file(snap, &path, FILE_BUDGET).await) }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut prepared = Prepared {
            source: Source::Hf,
            name: repo.policy_name(),
            revision: snap.commit.hex(),
            revision_name: rev.as_commit().is_none().then(|| rev.to_string()),
            files: Vec::new(),
            license: None,
            license_allowed: false,
            refused: Vec::new(),
        };
        for (path, outcome) in results {
            match outcome {
                Ok(Lookup::Found(FileState::Ready(rec))) => {
                    if path.as_str().eq_ignore_ascii_case("README.md") && rec.size < (1 << 20) {
                        let (store, d) = (self.store.clone(), rec.digest);
                        if let Ok(bytes) = self
                            .blocking(move || store.read_small_blob(&d, 1 << 20))
                            .await
                        {
                            prepared.license =
                                licence_of_model_card(&String::from_utf8_lossy(&bytes));
                        }
                    }
                    prepared.files.push(PreparedFile {
                        path: path.to_string(),
                        sha256: rec.digest,
                        size: rec.size,
                    });
                }
                Ok(Lookup::Refused(r)) => prepared.refused.push(RefusedFile {
                    file: path.to_string(),
                    reason: r.to_string(),
                }),
                Ok(_) => prepared.refused.push(RefusedFile {
                    file: path.to_string(),
                    reason: "not fetched in time".into(),
                }),
                Err(e) => prepared.refused.push(RefusedFile {
                    file: path.to_string(),
                    reason: e.to_string(),
                }),
            }
        }
        prepared.files.sort_by(|a, b| a.path.cmp(&b.path));
        prepared.license_allowed = self.gov.licence_allowed(prepared.license.as_deref());
        Ok(prepared)
    }

    async fn prepare_ollama(
        &self,
        name: &str,
        revision: &str,
        max_bytes: Option<u64>,
    ) -> Result<Prepared, String> {
        let (ns, model) = name.split_once('/').ok_or("expected namespace/model")?;
        let name = OllamaName::new(ns, model).map_err(|e| e.to_string())?;
        let reference = Reference::parse(revision).map_err(|e| e.to_string())?;
        let doc = match self
            .fetch_manifest_unchecked(&name, &reference)
            .await
            .map_err(|e| e.to_string())?
        {
            Lookup::Found(d) => d,
            Lookup::Refused(r) => return Err(r.to_string()),
            _ => return Err(format!("{name}:{reference} not found upstream")),
        };
        let (store, d) = (self.store.clone(), doc.digest);
        let bytes = self
            .blocking(move || store.read_small_blob(&d, crate::upstream::oci::MAX_MANIFEST as u64))
            .await
            .map_err(|e| e.to_string())?;
        let total: u64 = super::manifest_layers(&bytes)?
            .iter()
            .map(|(_, l)| l.size)
            .sum();
        check_size(total, max_bytes)?;
        let layers = self
            .record_layers(&name, &doc)
            .await
            .map_err(|e| e.to_string())?;
        let mut prepared = Prepared {
            source: Source::Ollama,
            name: name.to_string(),
            revision: doc.digest.to_string(),
            revision_name: match &reference {
                Reference::Tag(t) => Some(t.to_string()),
                Reference::Digest(_) => None,
            },
            files: Vec::new(),
            license: None,
            license_allowed: false,
            refused: Vec::new(),
        };
        for (digest, layer) in layers {
            let label = if layer.media_type.is_empty() {
                digest.to_string()
            } else {
                format!("{} {digest}", layer.media_type)
            };
            match self
                .ollama_blob_unchecked(&name, &digest, FILE_BUDGET)
                .await
            {
                Ok(Lookup::Found(info)) => match info.state {
                    FileState::Ready(rec) => {
                        if layer.media_type.ends_with(".license") && rec.size < (1 << 20) {
                            let (store, d) = (self.store.clone(), rec.digest);
                            if let Ok(bytes) = self
                                .blocking(move || store.read_small_blob(&d, 1 << 20))
                                .await
                            {
                                prepared.license =
                                    licence_of_text(&String::from_utf8_lossy(&bytes));
                            }
                        }
                        prepared.files.push(PreparedFile {
                            path: label,
                            sha256: rec.digest,
                            size: rec.size,
                        });
                    }
                    FileState::Pending { .. } => prepared.refused.push(RefusedFile {
                        file: label,
                        reason: "not fetched in time".into(),
                    }),
                },
                Ok(Lookup::Refused(r)) => prepared.refused.push(RefusedFile {
                    file: label,
                    reason: r.to_string(),
                }),
                Ok(_) => prepared.refused.push(RefusedFile {
                    file: label,
                    reason: "unknown blob".into(),
                }),
                Err(e) => prepared.refused.push(RefusedFile {
                    file: label,
                    reason: e.to_string(),
                }),
            }
        }
        prepared.files.sort_by(|a, b| a.path.cmp(&b.path));
        prepared.license_allowed = self.gov.licence_allowed(prepared.license.as_deref());
        Ok(prepared)
    }
}

fn check_size(total: u64, max_bytes: Option<u64>) -> Result<(), String> {
    match max_bytes {
        Some(max) if total > max => Err(format!(
            "{total} bytes is more than the background prefetch limit of {max} bytes; it is fetched when a reviewer runs `airlock approve`"
        )),
        _ => Ok(()),
    }
}
