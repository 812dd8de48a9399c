//! The one error type of the verifier crate.

/// Why a check could not be carried out (as opposed to a check that ran and found a problem,
/// which is a report, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Reading the input failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// Reading a named file failed.
    #[error("cannot read {path}: {source}")]
    ReadPath {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file-set entry name is not a usable model-relative POSIX path.
    #[error("model file name {name:?} rejected: {reason}")]
    BadModelPath {
        /// The name given.
        name: String,
        /// Why (absolute, `..`, backslash, duplicate, not UTF-8, ...).
        reason: &'static str,
    },
    /// An input exceeds a bound that protects the verifier.
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An admitted pickle global (`[scan] allow_globals`, `--allow-global`) is unusable.
    #[error("cannot admit pickle global {global:?}: {reason}")]
    AllowGlobal {
        /// The entry given.
        global: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Trust material (key, certificate, keyring, trusted root) cannot be used.
    #[error("unusable {what}: {detail}")]
    TrustMaterial {
        /// Which kind of material.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
}
