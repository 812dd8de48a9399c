//! The one error type of the engine: things that went wrong (I/O, upstream trouble, bad config),
//! as opposed to a policy or verification "no", which is a [`crate::Refusal`] value.

use std::path::PathBuf;
use std::sync::Arc;

/// An engine failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// A file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process (a running `airlock serve`, `reindex` or `fsck`) holds the data directory.
    #[error("{} is locked by another airlock process (stop `airlock serve` first)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The data directory has no room for the artifact (checked before a fetch starts, and a
    /// full disk during one). Nothing was written; the request can be retried once space is freed.
    #[error("insufficient storage: {needed} bytes needed, {free} free in the data directory")]
    InsufficientStorage {
        /// Bytes the artifact needs (its declared size, plus the headroom kept for the index).
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// The blob store (local directory or object store) failed.
    #[error("blob store: {0}")]
    Blob(#[from] crate::cas::CasError),
    /// The index (sled) failed.
    #[error("index: {0}")]
    Index(#[from] sled::Error),
    /// A stored record could not be decoded: the index is damaged (`airlock reindex` rebuilds it).
    #[error("index record {key} is damaged: {detail}")]
    Corrupt {
        /// Which record.
        key: String,
        /// What was wrong.
        detail: String,
    },
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The upstream could not be reached or answered with something unusable (5xx, garbage JSON,
    /// a redirect to an unlisted host). The message is safe to show to clients.
    #[error("upstream: {0}")]
    Upstream(String),
    /// The upstream asks us to come back later (429/503 that outlasted our retries).
    #[error("upstream busy; retry in {retry_after_secs}s")]
    UpstreamBusy {
        /// Seconds the upstream asked for.
        retry_after_secs: u64,
    },
    /// An air-gap bundle cannot be written (`airlock export`): the artifact and why.
    #[error("{item}: {reason}")]
    Bundle {
        /// The version, file or path concerned.
        item: String,
        /// What is wrong, phrased so the operator can fix it.
        reason: String,
    },
    /// The data directory's format version cannot be used by this build (newer, unreadable, or
    /// waiting for `airlock migrate`): nothing was opened or changed.
    #[error("{}: {problem}", path.display())]
    DataFormat {
        /// The data directory.
        path: PathBuf,
        /// What is wrong, with the command that fixes it.
        problem: crate::format::FormatProblem,
    },
    /// A background task died (a bug): reported instead of hanging the client.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The failure of a single-flight task, shared by every waiter. The original error travels
    /// (not its text), so each protocol's mapping point still knows what kind it was and keeps its
    /// detail out of the client's answer.
    #[error(transparent)]
    Shared(Arc<MirrorError>),
}

impl MirrorError {
    /// The error itself, looking through [`MirrorError::Shared`].
    pub fn root(&self) -> &MirrorError {
        match self {
            MirrorError::Shared(e) => e.root(),
            e => e,
        }
    }

    /// Whether this is the mirror's own failure (disk, index, a bug), as opposed to upstream
    /// trouble or a full disk, whose text is meant for clients. Its detail (paths under the data
    /// directory, library error text) is for the server log only.
    pub fn is_internal(&self) -> bool {
        !matches!(
            self.root(),
            MirrorError::Upstream(_)
                | MirrorError::UpstreamBusy { .. }
                | MirrorError::InsufficientStorage { .. }
        )
    }

    /// A stable short code for the kind of failure: what a client is shown next to the reason and
    /// the server log carries next to the detail, so an operator can match the two.
    pub fn code(&self) -> &'static str {
        match self.root() {
            MirrorError::Io { .. } => "E-IO",
            MirrorError::Locked { .. } => "E-LOCKED",
            MirrorError::InsufficientStorage { .. } => "E-NOSPACE",
            MirrorError::Index(_) => "E-INDEX",
            MirrorError::Corrupt { .. } => "E-CORRUPT",
            MirrorError::Config(_) => "E-CONFIG",
            MirrorError::Upstream(_) => "E-UPSTREAM",
            MirrorError::UpstreamBusy { .. } => "E-BUSY",
            MirrorError::Bundle { .. } => "E-BUNDLE",
            MirrorError::Task(_) => "E-TASK",
            MirrorError::Shared(_) => "E-TASK",
            MirrorError::Blob(_) => "E-BLOB",
            MirrorError::DataFormat { .. } => "E-FORMAT",
        }
    }

    /// What a client may be told about an internal failure: the kind, in words, without paths or
    /// library text.
    pub fn public_reason(&self) -> &'static str {
        match self.root() {
            MirrorError::Io { .. } => "the mirror could not read or write its storage",
            MirrorError::Locked { .. } => "the mirror's data directory is locked",
            MirrorError::Index(_) => "the mirror's index failed",
            MirrorError::Corrupt { .. } => "a record in the mirror's index is damaged",
            MirrorError::Config(_) => "the mirror is misconfigured",
            MirrorError::Bundle { .. } => "an air-gap bundle could not be handled",
            MirrorError::Blob(_) => "the mirror's blob store failed",
            MirrorError::DataFormat { .. } => "the mirror's data directory needs migrating",
            _ => "an internal task of the mirror failed",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MirrorError {
        let path = path.into();
        move |source| MirrorError::Io { path, source }
    }
}
