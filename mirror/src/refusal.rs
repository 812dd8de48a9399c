//! Refusals: every "no" Airlock can say, as a value with the data its message needs. The protocol
//! adapters in `web` turn each into their client's own error form in one place.

use crate::names::Revision;
use std::fmt;

/// Why Airlock will not serve something.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// Nothing approves the name. A review request may have been recorded.
    NotApproved {
        /// The name as asked (`org/repo`, `datasets/org/repo`, `library/model:tag`).
        name: String,
        /// The review request recorded for it, and where to see it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<RequestNote>,
    },
    /// The governance team denied the request for this name.
    Denied {
        /// The name.
        name: String,
        /// Who denied it.
        by: String,
        /// Why.
        reason: String,
    },
    /// The name looks like an approved or well-known one: refused outright, not queued.
    Typosquat {
        /// The name as asked.
        name: String,
        /// What it looks like and the suggestion ("looks like …; did you mean …?").
        reason: String,
    },
    /// The allow rule pins a commit and the client asked for another one.
    PinnedElsewhere {
        /// The name.
        name: String,
        /// What the client asked for.
        asked: String,
        /// The only approved commit.
        pinned: Revision,
    },
    /// Approvals exist for the name, but none covers the asked revision.
    RevisionNotApproved {
        /// The name.
        name: String,
        /// What the client asked for.
        asked: String,
        /// The approved revisions, for the message.
        approved: String,
    },
    /// The approval that covered this version was revoked.
    Revoked {
        /// The name.
        name: String,
        /// The approval id.
        approval: String,
        /// Who revoked it.
        by: String,
        /// Why.
        reason: String,
    },
    /// The approval that covered this version has expired.
    Expired {
        /// The name.
        name: String,
        /// The approval id.
        approval: String,
    },
    /// A file failed a check (size, digest, scan, signature). Sticky: the same bytes are never
    /// fetched again until an operator clears the refusal.
    Verification {
        /// The artifact: a repo-relative file, or an OCI blob digest.
        file: String,
        /// What failed, phrased for the client ("sha256 mismatch: upstream declared …").
        reason: String,
    },
    /// A required signature is missing or does not verify (a whole revision is refused).
    Signature {
        /// The name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The model's licence is not in `[policy] licenses` and no approval overrides it.
    Licence {
        /// The name.
        name: String,
        /// The licence found (`unknown` if none).
        license: String,
    },
    /// A Hugging Face pull-request ref (`refs/pr/N`): anyone can open one on any repo, so its files
    /// are not the repo owner's. Refused unless a rule sets `allow_pr_refs` or an approval names it.
    PullRequestRef {
        /// The repo.
        name: String,
        /// The pull request number as asked.
        pr: String,
    },
    /// The name's approvals no longer count: signed by a key removed from `[governance] keys`, or
    /// by a revoked key after its revocation.
    Untrusted {
        /// The name.
        name: String,
        /// The (newest) approval concerned.
        approval: String,
        /// Which key, and why it no longer counts.
        why: String,
    },
    /// This mirror is offline (air-gapped) and holds no imported copy of what was asked.
    Offline {
        /// The name (and revision or file) asked for.
        name: String,
    },
    /// The upstream refuses Airlock access (gated or private repo, bad token).
    UpstreamDenied {
        /// The name.
        name: String,
        /// The upstream's message, if any.
        detail: String,
    },
}

/// A review request, as a refusal mentions it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestNote {
    /// The request id (`req-…`).
    pub id: String,
    /// Where the governance team reviews it.
    pub url: String,
}

impl Refusal {
    /// Whether the refusal is about the revision (clients should forget cached copies: HF maps
    /// these to `RevisionNotFound`) rather than the name.
    pub fn is_about_revision(&self) -> bool {
        matches!(
            self,
            Refusal::PinnedElsewhere { .. }
                | Refusal::RevisionNotApproved { .. }
                | Refusal::Revoked { .. }
                | Refusal::Expired { .. }
                | Refusal::Untrusted { .. }
                | Refusal::PullRequestRef { .. }
        )
    }

    /// A short, fixed name for the kind of refusal (the `reason` label of `/metrics`, so the
    /// series stay few whatever names are refused).
    pub fn class(&self) -> &'static str {
        match self {
            Refusal::NotApproved { .. } => "not_approved",
            Refusal::Denied { .. } => "denied",
            Refusal::Typosquat { .. } => "typosquat",
            Refusal::PinnedElsewhere { .. } => "pinned_elsewhere",
            Refusal::RevisionNotApproved { .. } => "revision_not_approved",
            Refusal::Revoked { .. } => "revoked",
            Refusal::Expired { .. } => "expired",
            Refusal::Untrusted { .. } => "untrusted",
            Refusal::Verification { .. } => "verification",
            Refusal::Signature { .. } => "signature",
            Refusal::Licence { .. } => "licence",
            Refusal::PullRequestRef { .. } => "pull_request_ref",
            Refusal::Offline { .. } => "offline",
            Refusal::UpstreamDenied { .. } => "upstream_denied",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotApproved { name, request: Some(r) } => write!(
                f,
                "airlock: {name} is not approved on this mirror; request {} is pending review at {}",
                r.id, r.url
            ),
            Refusal::NotApproved { name, request: None } => write!(
                f,
                "airlock: {name} is not approved on this mirror (no approval or [[policy.allow]] rule matches); ask your model-governance team to approve it"
            ),
            Refusal::Denied { name, by, reason } => {
                write!(f, "airlock: {name} was denied by {by}: {reason}")
            }
            Refusal::Typosquat { name, reason } => write!(f, "airlock: {name} refused: {reason}"),
            Refusal::PinnedElsewhere { name, asked, pinned } => write!(
                f,
                "airlock: {name} is approved only at commit {pinned}; revision {asked} is not approved"
            ),
            Refusal::RevisionNotApproved { name, asked, approved } => write!(
                f,
                "airlock: revision {asked} of {name} is not approved (approved: {approved})"
            ),
            Refusal::Untrusted { name, approval, why } => write!(
                f,
                "airlock: approval {approval} of {name} no longer counts: {why}; ask your \
                 model-governance team to approve it again with a current key"
            ),
            Refusal::Revoked { name, approval, by, reason } => {
                write!(f, "airlock: approval {approval} of {name} was revoked by {by}: {reason}")
            }
            Refusal::Expired { name, approval } => {
                write!(f, "airlock: approval {approval} of {name} has expired")
            }
            Refusal::Verification { file, reason } => write!(f, "airlock: {file} refused: {reason}"),
            Refusal::Signature { name, reason } => write!(f, "airlock: {name} refused: {reason}"),
            Refusal::Licence { name, license } => write!(
                f,
                "airlock: {name} has licence {license}, which is not in the allowed licences; an approval must override it"
            ),
            Refusal::PullRequestRef { name, pr } => write!(
                f,
                "airlock: refs/pr/{pr} of {name} is a pull request (anyone can open one); pull request refs are not served unless a rule sets allow_pr_refs = true or an approval names the ref"
            ),
            Refusal::Offline { name } => write!(
                f,
                "airlock: {name} is not available on this offline mirror; export it from the connected mirror"
            ),
            Refusal::UpstreamDenied { name, detail } => {
                write!(f, "airlock: upstream denied access to {name} (gated or private): {detail}")
            }
        }
    }
}
