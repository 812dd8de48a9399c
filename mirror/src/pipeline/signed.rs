//! The signature gate: for a repo under a `[[trust]]` rule, the whole revision is fetched into the
//! store (verified and scanned file by file, served to nobody), then its signature is verified
//! over exactly those bytes. Until that succeeds nothing of the revision is served; afterwards only
//! the files the signature covers (and the signature itself) are.

use std::sync::Arc;
use std::time::Duration;

use signing::AuditEvent;

use super::hf::Snapshot;
use super::{FileState, Lookup, Mirror};
use crate::error::MirrorError;
use crate::flight::Waited;
use crate::names::RepoPath;
use crate::refusal::Refusal;
use crate::store::Store;
use crate::trust::{Requirement, Rule};

/// A revision's signature verdict (kept in the index, keyed by repo and commit).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum SignedState {
    /// Verified: these files are covered.
    Verified {
        covered: Vec<String>,
        signer: String,
    },
    /// Refused, with why.
    Refused { reason: String },
}

/// How long one file may take while the revision is gathered for verification.
const FILE_BUDGET: Duration = Duration::from_secs(3600);

fn key(snap: &Snapshot, rule: &Rule) -> Vec<u8> {
    format!(
        "{}\0{}\0{}",
        snap.repo.index_key(),
        snap.commit,
        rule.pattern
    )
    .into_bytes()
}

impl Mirror {
    /// `Some(answer)` when the gate stops the request (refused, pending, not covered); `None` to
    /// serve the file.
    pub(crate) async fn signature_gate(
        &self,
        snap: &Snapshot,
        rule: &Arc<Rule>,
        path: &RepoPath,
        wait: Duration,
    ) -> Result<Option<Lookup<FileState>>, MirrorError> {
        let k = key(snap, rule);
        let store = self.store.clone();
        let k2 = k.clone();
        let settled = move || {
            Store::get::<SignedState>(&store.signed, &k2)
                .ok()
                .flatten()
                .map(Ok)
        };
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| MirrorError::Task("mirror is shutting down".into()))?;
        let (snap2, rule2) = (snap.clone(), rule.clone());
        let flight = self.signed_flights.join(
            String::from_utf8_lossy(&k).into_owned(),
            settled,
            move |_| async move {
                let state = me.verify_revision(&snap2, &rule2).await.map_err(Arc::new)?;
                let (store, k) = (me.store.clone(), key(&snap2, &rule2));
                let s2 = state.clone();
                tokio::task::spawn_blocking(move || Store::put(&store.signed, k, &s2))
                    .await
                    .map_err(|e| Arc::new(MirrorError::Task(e.to_string())))?
                    .map_err(Arc::new)?;
                Ok(state)
            },
        );
        let state = match flight.await.wait(wait).await {
            Waited::Done(Ok(s)) => s,
            Waited::Done(Err(e)) => return Err(MirrorError::Shared(e)),
            Waited::Running {
                eta_secs,
                elapsed_secs,
            } => {
                return Ok(Some(Lookup::Found(FileState::Pending {
                    retry_after: super::retry_after(eta_secs, elapsed_secs),
                })))
            }
            Waited::Lost => return Err(MirrorError::Task("signature check failed".into())),
        };
        Ok(match state {
            SignedState::Refused { reason } => Some(Lookup::Refused(Refusal::Signature {
                name: snap.repo.policy_name(),
                reason,
            })),
            SignedState::Verified { covered, .. } => {
                let p = path.as_str();
                let is_signature_material = p == rule.signature
                    || matches!(&rule.requirement, Some(Requirement::Pgp { manifest, .. }) if manifest == p);
                if is_signature_material || covered.iter().any(|c| c == p) {
                    None
                } else {
                    // Present upstream but not signed: never served.
                    Some(Lookup::EntryNotFound {
                        commit: snap.commit,
                    })
                }
            }
        })
    }

    /// Gathers the revision and verifies its signature.
    async fn verify_revision(
        &self,
        snap: &Snapshot,
        rule: &Rule,
    ) -> Result<SignedState, MirrorError> {
        let Some(requirement) = rule.requirement.clone() else {
            return Ok(SignedState::Verified {
                covered: Vec::new(),
                signer: "none required".into(),
            });
        };
        let kind = match &requirement {
            Requirement::ModelSigning { .. } => "model-signing",
            Requirement::Pgp { .. } => "pgp",
        };
        let refuse = |reason: String| Ok(SignedState::Refused { reason });
        if snap.manifest.get(&rule.signature).is_none() {
            return refuse(format!(
                "no signature ({}) in this revision; policy [[trust]] {} requires {kind}",
                rule.signature, rule.pattern
            ));
        }
        let mut blobs = Vec::new();
        for entry in snap.manifest.files() {
            match self.file_unsigned(snap, &entry.path, FILE_BUDGET).await? {
                Lookup::Found(FileState::Ready(rec)) => {
                    blobs.push((entry.path.to_string(), rec.digest))
                }
                Lookup::Refused(r) => {
                    return refuse(format!("{} failed its checks: {r}", entry.path))
                }
                _ => {
                    return Err(MirrorError::Upstream(format!(
                        "{} could not be fetched in time",
                        entry.path
                    )))
                }
            }
        }
        let find = |name: &str| blobs.iter().find(|(p, _)| p == name).map(|(_, d)| *d);
        let Some(sig_digest) = find(&rule.signature) else {
            return refuse(format!(
                "no signature ({}) in this revision",
                rule.signature
            ));
        };
        let manifest_name = match &requirement {
            Requirement::Pgp { manifest, .. } => Some(manifest.clone()),
            Requirement::ModelSigning { .. } => None,
        };
        let manifest_digest = match &manifest_name {
            Some(m) => match find(m) {
                Some(d) => Some(d),
                None => {
                    return refuse(format!(
                        "no {m} in this revision; policy [[trust]] {} requires it",
                        rule.pattern
                    ))
                }
            },
            None => None,
        };
        let store = self.store.clone();
        let signature_name = rule.signature.clone();
        let report = self
            .blocking(move || {
                let read = |d: &verifier::Digest| store.read_small_blob(d, 16 << 20);
                let sig = read(&sig_digest)?;
                let mut files = verifier::ModelFiles::new();
                for (path, digest) in &blobs {
                    if *path == signature_name || Some(path) == manifest_name.as_ref() {
                        continue;
                    }
                    // The sha256 is trusted, so the verifier reads no file for sha256 digests; with
                    // an object store there is no local path, and a signature over another digest
                    // kind fails on the missing file (loudly, never verified).
                    let local = store.local_blob_path(digest).unwrap_or_default();
                    files
                        .add_with_sha256(path, local, *digest)
                        .map_err(|e| MirrorError::Config(format!("{path}: {e}")))?;
                }
                let now = std::time::SystemTime::now();
                let verdict = match &requirement {
                    Requirement::ModelSigning { policy } => {
                        verifier::verify_model_signature(&files, &sig, policy, now)
                    }
                    Requirement::Pgp {
                        keyring, options, ..
                    } => {
                        let list = match manifest_digest {
                            Some(d) => read(&d)?,
                            None => Vec::new(),
                        };
                        verifier::verify_pgp_manifest(&list, &sig, keyring, &files, options, now)
                    }
                };
                verdict.map_err(|e| MirrorError::Config(format!("signature check: {e}")))
            })
            .await?;
        let name = snap.repo.policy_name();
        Ok(match report.outcome {
            verifier::Outcome::Verified {
                signer, covered, ..
            } => {
                let signer = format!("{signer:?}");
                tracing::info!(repo = %name, commit = %snap.commit, %signer, "signature verified");
                SignedState::Verified {
                    covered: covered.into_iter().map(|c| c.path).collect(),
                    signer,
                }
            }
            verifier::Outcome::Failed { reason } => {
                let reason = format!("{} does not verify: {reason}", rule.signature);
                let (gov, event) = (
                    self.gov.clone(),
                    AuditEvent::Refusal {
                        client: "airlock".into(),
                        name,
                        revision: Some(snap.commit.hex()),
                        reason: reason.clone(),
                    },
                );
                // The append fsyncs: on a blocking thread, not the engine's async workers.
                self.blocking(move || {
                    gov.audit(event);
                    Ok(())
                })
                .await?;
                SignedState::Refused { reason }
            }
        })
    }
}
