//! Scope: what a name's policy lets a client fetch *under that name*, exactly. The store is shared
//! by every name (blobs are content-addressed, so one model's layer is one file however many names
//! list it), which makes "the bytes are here" no answer to "may this name serve them". These are
//! the only functions that answer that question; `docs/governance.md` states the same rule.
//!
//! Ollama: a manifest digest is in a name's scope if an approval of the name names it, a rule pins
//! it, or a rule allowing every tag of the name covers it *and* the upstream answered that digest
//! under that same name. A blob is in scope if a manifest in scope, served under that name, lists
//! it (or an approval of the name pins it). What a review request prefetched is recorded for the
//! reviewer only and never counts.
//!
//! Hugging Face: a commit is only ever looked up under the repo it was resolved or listed under
//! (the index is keyed by repo and commit), and `refs/pr/*` is refused unless a rule allows pull
//! request refs or an approval names the ref.

use std::sync::Arc;

use signing::Source;
use verifier::Digest;

use super::Mirror;
use crate::error::MirrorError;
use crate::governance::{Approval, Verdict};
use crate::names::{HfRepo, OllamaName, RevisionName};
use crate::policy::DigestCover;
use crate::refusal::Refusal;

/// Whether a manifest digest is in a name's scope.
#[derive(Debug, Clone)]
pub(crate) enum ManifestScope {
    /// In scope (by an approval, a pin, or an upstream confirmation).
    Covered,
    /// In scope if the upstream answers the digest under this name; nobody asked it yet.
    AskUpstream,
    /// Out of scope.
    Refused(Refusal),
}

/// Whether a blob is in a name's scope.
#[derive(Debug, Clone)]
pub(crate) enum BlobScope {
    /// In scope: listed by `manifest`, under `approval` if approvals decide for the name.
    Covered {
        /// The manifest in scope that lists it (for the audit log), if known.
        manifest: Option<Digest>,
        /// The approval that pins it.
        approval: Option<Arc<Approval>>,
    },
    /// The name is allowed but no manifest in its scope lists this blob.
    NotListed,
    /// The name's approvals or rules refuse it.
    Refused(Refusal),
}

impl Mirror {
    /// Decides whether the manifest `digest` may be served under `name`. Reads the store (blocking,
    /// but a few sled lookups).
    pub(crate) fn ollama_manifest_scope(
        &self,
        name: &OllamaName,
        digest: &Digest,
    ) -> Result<ManifestScope, MirrorError> {
        match self
            .gov
            .decide(Source::Ollama, &name.to_string(), &digest.to_string())
        {
            Verdict::Approved(_) => return Ok(ManifestScope::Covered),
            Verdict::Refused(r) => return Ok(ManifestScope::Refused(r)),
            Verdict::NoApprovals => {}
        }
        Ok(match self.policy.ollama_digest(name, digest) {
            DigestCover::Pinned => ManifestScope::Covered,
            DigestCover::IfUpstreamConfirms if self.store.is_confirmed(name, digest)? => {
                ManifestScope::Covered
            }
            DigestCover::IfUpstreamConfirms => ManifestScope::AskUpstream,
            DigestCover::Refused(r) => ManifestScope::Refused(r),
        })
    }

    /// Decides whether the blob `digest` may be served under `name`.
    pub(crate) fn ollama_blob_scope(
        &self,
        name: &OllamaName,
        digest: &Digest,
    ) -> Result<BlobScope, MirrorError> {
        match self
            .gov
            .blob_verdict(Source::Ollama, &name.to_string(), digest)
        {
            Verdict::Approved(a) => {
                let manifest = a.record.revision.parse::<Digest>().ok();
                return Ok(BlobScope::Covered {
                    manifest,
                    approval: Some(a),
                });
            }
            Verdict::Refused(r) => return Ok(BlobScope::Refused(r)),
            Verdict::NoApprovals if self.policy.ollama_name_allowed(name) => {}
            Verdict::NoApprovals => {
                return Ok(BlobScope::Refused(Refusal::NotApproved {
                    name: name.to_string(),
                    request: None,
                }))
            }
        }
        for m in self.store.served_manifests(name, digest)? {
            if let ManifestScope::Covered = self.ollama_manifest_scope(name, &m)? {
                return Ok(BlobScope::Covered {
                    manifest: Some(m),
                    approval: None,
                });
            }
        }
        Ok(BlobScope::NotListed)
    }

    /// Decides whether a Hugging Face revision *name* may be resolved for `repo`, before anything
    /// is asked upstream: pull-request refs are anyone's uploads, so they need a rule that allows
    /// them (or an approval that names the ref, which admission has already honoured).
    pub(crate) fn hf_revision_scope(&self, repo: &HfRepo, rev: &RevisionName) -> Option<Refusal> {
        let pr = rev.as_str().strip_prefix("refs/pr/")?;
        if self.policy.allows_pr_refs(repo) {
            return None;
        }
        Some(Refusal::PullRequestRef {
            name: repo.policy_name(),
            pr: pr.to_owned(),
        })
    }
}
