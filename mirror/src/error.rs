//! The one error type of the engine: things that went wrong (I/O, upstream trouble, bad config),
//! as opposed to a policy or verification "no", which is a [`crate::Refusal`] value.

use std::path::PathBuf;

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
}

impl MirrorError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MirrorError {
        let path = path.into();
        move |source| MirrorError::Io { path, source }
    }
}
