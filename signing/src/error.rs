//! The crate's one error type.

use crate::approval::ApprovalId;
use crate::audit::Problem;
use crate::keys::KeyId;
use std::path::PathBuf;

/// Everything that can go wrong while handling keys, records and the audit log.
///
/// A record that fails verification is an error here: to the caller it is a file to reject
/// loudly, not a policy answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than any legitimate key, record or log line could be.
    #[error("{}: larger than the {limit}-byte limit; not a file Airlock wrote", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// Refused to replace an existing file (a key, or a record with different content).
    #[error("{}: already exists; refusing to overwrite it (move it away first)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A key file does not hold the expected kind of key.
    #[error("{}: not a {expected}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What was expected there.
        expected: &'static str,
    },
    /// The operating system's random source failed (key generation only).
    #[error("cannot read randomness from the operating system: {0}")]
    Random(getrandom::Error),
    /// A record file is not JSON of the expected shape.
    #[error("not a valid {what}: {source}")]
    Json {
        /// What was being parsed ("approval record", "revocation record").
        what: &'static str,
        /// The parser's message (it names line and column).
        #[source]
        source: serde_json::Error,
    },
    /// Serialising a value to JSON failed (should not happen for this crate's types).
    #[error("cannot encode JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// A field does not hold a valid value.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field or kind of value ("timestamp", "revision", "files").
        field: &'static str,
        /// What is wrong, phrased so the author can fix it.
        why: &'static str,
    },
    /// A free-text field (reason, who) is longer than its limit: every refusal that quotes it, and
    /// every copy of the record, would carry it.
    #[error("invalid {field}: {len} bytes, longer than the {max}-byte limit")]
    TextTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The record names a signer that is not among the trusted keys.
    #[error("signed by key {key}, which is not a trusted governance key")]
    UnknownSigner {
        /// The key id the record names.
        key: KeyId,
    },
    /// The signature does not match the record: a field, pin or the signature itself was changed
    /// after signing.
    #[error("signature by key {key} does not verify: the record was changed after it was signed")]
    BadSignature {
        /// The key id the record names.
        key: KeyId,
    },
    /// The `id` written in an approval file is not the hash of its content.
    #[error("approval id {stated:?} does not match the record's content (expected {computed}): the record was changed")]
    IdMismatch {
        /// The id in the file (shown truncated if long).
        stated: String,
        /// The id the content hashes to.
        computed: ApprovalId,
    },
    /// A record file's name does not match its content.
    #[error("{}: a record with this content must be named {expected}", path.display())]
    FileName {
        /// The file.
        path: PathBuf,
        /// The name it should have.
        expected: String,
    },
    /// The audit log's last line has no newline: a write was cut short (crash, full disk). The
    /// log is not extended until an operator has looked at it.
    #[error("{}: the last line, starting at byte {offset}, is incomplete (a torn write); run `airlock audit recover` to continue (it saves the torn bytes beside the log, cuts them off at byte {offset} and records the cut)", path.display())]
    TornTail {
        /// The log.
        path: PathBuf,
        /// Where the incomplete line starts (the length to truncate to).
        offset: u64,
    },
    /// An audit log line cannot be read as an entry.
    #[error("{}: {problem}", path.display())]
    AuditEntry {
        /// The log.
        path: PathBuf,
        /// Where and what.
        problem: Problem,
    },
    /// An audit entry would exceed the line-length limit (some field is unreasonably long).
    #[error("audit entry of {len} bytes exceeds the {limit}-byte line limit")]
    EntryTooLarge {
        /// The entry's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An earlier write to the audit log failed and could not be rolled back; the log is not
    /// written again by this process.
    #[error("{}: an earlier write failed and could not be undone; restart and check the log", path.display())]
    LogBroken {
        /// The log.
        path: PathBuf,
    },
}
