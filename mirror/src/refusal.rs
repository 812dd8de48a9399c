//! Refusals: every "no" Airlock can say, as a value with the data its message needs. The protocol
//! adapters in `web` turn each into their client's own error form in one place.

use crate::names::Revision;
use std::fmt;

/// Why Airlock will not serve something.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// No allow rule matches the name (allowlist mode).
    NotApproved {
        /// The name as asked (`org/repo` or `datasets/org/repo`).
        name: String,
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
    /// A file failed a check (size, digest, scan, signature). Sticky: the same bytes are never
    /// fetched again until an operator clears the refusal.
    Verification {
        /// The artifact: a repo-relative file, or an OCI blob digest.
        file: String,
        /// What failed, phrased for the client ("sha256 mismatch: upstream declared …").
        reason: String,
    },
    /// The upstream refuses Airlock access (gated or private repo, bad token).
    UpstreamDenied {
        /// The name.
        name: String,
        /// The upstream's message, if any.
        detail: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotApproved { name } => write!(
                f,
                "airlock: {name} is not approved on this mirror (no [[policy.allow]] rule matches); ask your model-governance team to approve it"
            ),
            Refusal::PinnedElsewhere { name, asked, pinned } => write!(
                f,
                "airlock: {name} is approved only at commit {pinned}; revision {asked} is not approved"
            ),
            Refusal::Verification { file, reason } => write!(f, "airlock: {file} refused: {reason}"),
            Refusal::UpstreamDenied { name, detail } => {
                write!(f, "airlock: upstream denied access to {name} (gated or private): {detail}")
            }
        }
    }
}
