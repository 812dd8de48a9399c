//! Signed approval and revocation records.
//!
//! An approval pins one version of one artifact: the source, the name, the resolved revision (a
//! commit, or a manifest digest for Ollama) and every file's sha256 and size. A revocation
//! withdraws an approval by id. Both are signed by a governance key and kept as one pretty,
//! key-sorted JSON file each, so they can be reviewed and versioned in git.
//!
//! What a signature covers: the bytes `FORMAT "\n"` followed by the record's canonical JSON (the
//! record's own fields only, keys sorted, no whitespace; see [`crate::canonical`]), where `FORMAT`
//! is `airlock-approval-v1` or `airlock-revocation-v1`. The prefix keeps a signature on one kind
//! of record from being replayed as another. The file adds four envelope fields that are not
//! signed themselves: `format`, `signature` (128 hex digits), `signed_by` (the [`KeyId`]) and, for
//! approvals, `id`, which must equal the hash of the signed bytes and so is bound by them.

use crate::canonical;
use crate::error::SigningError;
use crate::keys::{KeyId, KeyPair, PublicKey};
use crate::timestamp::Timestamp;
use ed25519_dalek::Signature;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use verifier::Digest;

/// A record file larger than this is refused unread. 16 MiB holds an approval of roughly 100 000
/// files; no real repository comes close.
const MAX_RECORD_FILE: u64 = 16 * 1024 * 1024;
/// Most files one approval may pin.
const MAX_FILES: usize = 100_000;
/// Longest free-text field (reason, approver).
/// Longest reason (approval, revocation, denial) in bytes: refusals quote it to every client.
pub const MAX_REASON: usize = 4096;
/// Longest name of who approved, revoked or denied, in bytes.
pub const MAX_WHO: usize = 256;
const MAX_TEXT: usize = MAX_REASON;

/// The id of an approval: `appr-` and the first 12 hex digits of the sha256 of its signed bytes.
/// Derived from the content, so equal records have equal ids and a changed record a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApprovalId(String);

impl ApprovalId {
    /// The id as written (`appr-0123456789ab`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ApprovalId {
    type Err = SigningError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("appr-") {
            Some(h)
                if h.len() == 12 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(ApprovalId(s.to_owned()))
            }
            _ => Err(SigningError::Invalid {
                field: "approval id",
                why: "expected appr- followed by 12 lowercase hex digits",
            }),
        }
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ApprovalId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ApprovalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an approved artifact comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Hugging Face: `name` is `org/repo`, `repo` or `datasets/org/repo`; `revision` a 40-hex
    /// commit.
    Hf,
    /// Ollama (an OCI registry): `name` is `namespace/model`; `revision` the manifest digest
    /// `sha256:…`.
    Ollama,
}

/// One file an approval pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    /// Repo-relative path (HF) or layer name (Ollama).
    pub path: String,
    /// The sha256 of the approved bytes.
    pub sha256: Digest,
    /// Their length.
    pub size: u64,
}

/// What a governance approver signs: one exact version of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRecord {
    /// Hugging Face or Ollama.
    pub source: Source,
    /// The artifact's name (`acme/tiny`, `datasets/acme/ds`, `library/llama3`).
    pub name: String,
    /// The resolved version: a 40-hex commit (HF) or `sha256:…` manifest digest (Ollama),
    /// lowercase.
    pub revision: String,
    /// The branch or tag the approver asked for (`main`, `8b`), if not a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// Every approved file. [`sign`] sorts them by path; paths are unique.
    pub files: Vec<PinnedFile>,
    /// Who approved (a person or team, as the governance team names them).
    pub approved_by: String,
    /// When.
    pub approved_at: Timestamp,
    /// After this instant the approval no longer covers anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Why it was approved.
    pub reason: String,
    /// The licence identifier read from the model card or Ollama licence layer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The approver accepts a licence outside `[policy] licenses`.
    pub license_override: bool,
}

impl ApprovalRecord {
    /// The id this record will have (and has, once signed).
    pub fn id(&self) -> Result<ApprovalId, SigningError> {
        let message = signed_message(self)?;
        let h = sha2::Sha256::digest(&message);
        Ok(ApprovalId(format!("appr-{}", hex::encode(&h[..6]))))
    }

    /// Whether the approval has run out at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// The pinned file at `path`.
    pub fn file(&self, path: &str) -> Option<&PinnedFile> {
        // Sorted by construction (sign sorts, verify rejects unsorted), so binary search is valid.
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.files.get(i))
    }
}

/// A signed withdrawal of an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRecord {
    /// The approval withdrawn.
    pub approval: ApprovalId,
    /// Why; shown to clients that are refused because of it.
    pub reason: String,
    /// Who revoked it.
    pub revoked_by: String,
    /// When.
    pub revoked_at: Timestamp,
}

mod sealed {
    /// Keeps [`super::Record`] implemented by this crate's records only: each fixes a format
    /// string that is part of what its signatures cover.
    pub trait Sealed {
        const FORMAT: &'static str;
        const WHAT: &'static str;
        fn normalise(&mut self);
        fn validate(&self) -> Result<(), crate::SigningError>;
        fn file_name(&self) -> Result<String, crate::SigningError>;
        /// Names of the unsigned envelope fields derived from the content (the approval id).
        const DERIVED: &'static [&'static str];
        /// Their values, in the order of `DERIVED`.
        fn derived(&self) -> Result<Vec<String>, crate::SigningError>;
        /// Checks the values a file states for `DERIVED` against the content.
        fn check_derived(&self, stated: &[String]) -> Result<(), crate::SigningError>;
    }
}

/// A record kind that can be signed: [`ApprovalRecord`] or [`RevocationRecord`].
pub trait Record: sealed::Sealed + Serialize + DeserializeOwned {}

impl Record for ApprovalRecord {}
impl Record for RevocationRecord {}

impl sealed::Sealed for ApprovalRecord {
    const FORMAT: &'static str = "airlock-approval-v1";
    const WHAT: &'static str = "approval record";

    fn normalise(&mut self) {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
    }

    fn validate(&self) -> Result<(), SigningError> {
        check_name(self.source, &self.name)?;
        check_revision(self.source, &self.revision)?;
        if let Some(r) = &self.revision_name {
            if r.is_empty() || r.len() > 255 || r.chars().any(char::is_control) {
                return Err(invalid(
                    "revision_name",
                    "must be 1 to 255 printable characters",
                ));
            }
        }
        if self.files.is_empty() {
            return Err(invalid("files", "an approval pins at least one file"));
        }
        if self.files.len() > MAX_FILES {
            return Err(invalid("files", "more than 100000 files"));
        }
        for f in &self.files {
            check_path(&f.path)?;
        }
        if self.files.windows(2).any(|w| w[0].path >= w[1].path) {
            return Err(invalid(
                "files",
                "must be sorted by path with no path twice",
            ));
        }
        check_text("approved_by", &self.approved_by, MAX_WHO)?;
        check_text("reason", &self.reason, MAX_TEXT)?;
        if let Some(l) = &self.license {
            check_text("license", l, 128)?;
        }
        if self.expires_at.is_some_and(|t| t <= self.approved_at) {
            return Err(invalid("expires_at", "must be later than approved_at"));
        }
        Ok(())
    }

    fn file_name(&self) -> Result<String, SigningError> {
        Ok(format!("{}.json", self.id()?))
    }

    const DERIVED: &'static [&'static str] = &["id"];

    fn derived(&self) -> Result<Vec<String>, SigningError> {
        Ok(vec![self.id()?.0])
    }

    fn check_derived(&self, stated: &[String]) -> Result<(), SigningError> {
        let computed = self.id()?;
        match stated {
            [id] if *id == computed.0 => Ok(()),
            _ => Err(SigningError::IdMismatch {
                // The stated value comes from the file: show a bounded prefix only.
                stated: stated.concat().chars().take(40).collect(),
                computed,
            }),
        }
    }
}

impl sealed::Sealed for RevocationRecord {
    const FORMAT: &'static str = "airlock-revocation-v1";
    const WHAT: &'static str = "revocation record";

    fn normalise(&mut self) {}

    fn validate(&self) -> Result<(), SigningError> {
        check_text("reason", &self.reason, MAX_TEXT)?;
        check_text("revoked_by", &self.revoked_by, MAX_WHO)
    }

    fn file_name(&self) -> Result<String, SigningError> {
        Ok(format!("revocation-{}.json", self.approval))
    }

    const DERIVED: &'static [&'static str] = &[];

    fn derived(&self) -> Result<Vec<String>, SigningError> {
        Ok(Vec::new())
    }

    fn check_derived(&self, _stated: &[String]) -> Result<(), SigningError> {
        Ok(())
    }
}

/// A record with its detached signature and the id of the key that made it.
///
/// A value from [`Signed::from_json`] is only parsed; [`Signed::verify`] is what trusts it.
/// [`sign`], [`load_dir`] and [`load_revocations`] only hand out verified values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<T> {
    record: T,
    signature: Signature,
    signed_by: KeyId,
}

/// A signed [`ApprovalRecord`].
pub type SignedApproval = Signed<ApprovalRecord>;
/// A signed [`RevocationRecord`].
pub type SignedRevocation = Signed<RevocationRecord>;

/// Checks and signs `record` (sorting an approval's files first).
pub fn sign<T: Record>(mut record: T, key: &KeyPair) -> Result<Signed<T>, SigningError> {
    record.normalise();
    record.validate()?;
    let signature = key.sign(&signed_message(&record)?);
    Ok(Signed {
        record,
        signature,
        signed_by: key.public().id(),
    })
}

/// `FORMAT "\n" canonical-json(record)`.
fn signed_message<T: Record>(record: &T) -> Result<Vec<u8>, SigningError> {
    let body = canonical::bytes(Value::Object(canonical::to_object(record)?))?;
    let mut m = Vec::with_capacity(T::FORMAT.len() + 1 + body.len());
    m.extend_from_slice(T::FORMAT.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&body);
    Ok(m)
}

impl<T: Record> Signed<T> {
    /// Returns the record if a key in `trusted` signed exactly this content. Rejects an unknown
    /// signer, a signature that does not verify (any changed field, pin or signature byte), and a
    /// record that breaks the format's rules.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<&T, SigningError> {
        let message = signed_message(&self.record)?;
        let mut known = false;
        for key in trusted.iter().filter(|k| k.id() == self.signed_by) {
            known = true;
            if key.verifies(&message, &self.signature) {
                self.record.validate()?;
                return Ok(&self.record);
            }
        }
        if known {
            Err(SigningError::BadSignature {
                key: self.signed_by.clone(),
            })
        } else {
            Err(SigningError::UnknownSigner {
                key: self.signed_by.clone(),
            })
        }
    }

    /// The record as stated. Trust it only if this value came from [`sign`], [`load_dir`] or
    /// [`load_revocations`], or after [`Signed::verify`].
    pub fn record(&self) -> &T {
        &self.record
    }

    /// The id of the key that signed it.
    pub fn signed_by(&self) -> &KeyId {
        &self.signed_by
    }

    /// The record file's content: pretty, key-sorted JSON with a final newline.
    pub fn to_json(&self) -> Result<String, SigningError> {
        let mut map = canonical::to_object(&self.record)?;
        map.insert("format".into(), Value::String(T::FORMAT.into()));
        map.insert(
            "signature".into(),
            Value::String(hex::encode(self.signature.to_bytes())),
        );
        map.insert(
            "signed_by".into(),
            Value::String(self.signed_by.to_string()),
        );
        for (k, v) in T::DERIVED.iter().zip(self.record.derived()?) {
            map.insert((*k).into(), Value::String(v));
        }
        canonical::pretty(Value::Object(map))
    }

    /// Parses a record file (no trust decision: call [`Signed::verify`]). Rejects unknown fields,
    /// another format, and an approval whose `id` does not match its content.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SigningError> {
        let json = |source| SigningError::Json {
            what: T::WHAT,
            source,
        };
        let mut map = match serde_json::from_slice::<Value>(bytes).map_err(json)? {
            Value::Object(map) => map,
            _ => return Err(invalid("record", "expected a JSON object")),
        };
        let mut take = |k: &'static str| match map.remove(k) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(SigningError::Invalid {
                field: k,
                why: "missing or not a string",
            }),
        };
        if take("format")? != T::FORMAT {
            return Err(invalid("format", "not a record of this kind or version"));
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(take("signature")?, &mut sig)
            .map_err(|_| invalid("signature", "expected 128 hex digits"))?;
        let signed_by: KeyId = take("signed_by")?.parse()?;
        let stated = T::DERIVED
            .iter()
            .map(|k| take(k))
            .collect::<Result<Vec<_>, _>>()?;
        // What is left must be exactly the record's fields (`deny_unknown_fields`): nothing in the
        // file goes unsigned except the envelope.
        let record: T = serde_json::from_value(Value::Object(map)).map_err(json)?;
        record.check_derived(&stated)?;
        Ok(Signed {
            record,
            signature: Signature::from_bytes(&sig),
            signed_by,
        })
    }

    /// The file name this record is stored under (`appr-….json`, `revocation-appr-….json`).
    pub fn file_name(&self) -> Result<String, SigningError> {
        self.record.file_name()
    }

    /// Writes the record into `dir` under [`Signed::file_name`], atomically (temp file, fsync,
    /// rename). Writing the same record twice is a no-op; a different file under the same name is
    /// an [`SigningError::Exists`].
    pub fn write_to_dir(&self, dir: &Path) -> Result<PathBuf, SigningError> {
        let path = dir.join(self.file_name()?);
        let text = self.to_json()?;
        match canonical::read_bounded(&path, MAX_RECORD_FILE) {
            Ok(existing) if existing == text.as_bytes() => return Ok(path),
            Ok(_) | Err(SigningError::TooLarge { .. }) => {
                return Err(SigningError::Exists { path })
            }
            Err(SigningError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        write_atomically(dir, &path, text.as_bytes())?;
        Ok(path)
    }
}

impl SignedApproval {
    /// The approval's id.
    pub fn id(&self) -> Result<ApprovalId, SigningError> {
        self.record.id()
    }
}

/// What [`load_dir`] and [`load_revocations`] return: the records that verified, and each rejected
/// file with the reason.
pub type Loaded<T> = (Vec<Signed<T>>, Vec<(PathBuf, SigningError)>);

/// Loads and verifies every approval in `dir`: each `*.json` file except `revocation-*.json` and
/// hidden files. Good records come back in file-name order; every bad one comes back with its path
/// and the reason, for the caller to reject loudly. A missing directory holds no approvals.
pub fn load_dir(dir: &Path, trusted: &[PublicKey]) -> Result<Loaded<ApprovalRecord>, SigningError> {
    load_kind(dir, trusted, |name| !name.starts_with("revocation-"))
}

/// Loads and verifies every `revocation-*.json` file in `dir`, as [`load_dir`] does approvals.
pub fn load_revocations(
    dir: &Path,
    trusted: &[PublicKey],
) -> Result<Loaded<RevocationRecord>, SigningError> {
    load_kind(dir, trusted, |name| name.starts_with("revocation-"))
}

fn load_kind<T: Record>(
    dir: &Path,
    trusted: &[PublicKey],
    wanted: impl Fn(&str) -> bool,
) -> Result<Loaded<T>, SigningError> {
    let io = |source| SigningError::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // Not UTF-8, so not a name Airlock writes; report it rather than skip it silently.
            paths.push(entry.path());
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".json") || !wanted(name) {
            continue;
        }
        if entry.file_type().map_err(io)?.is_file() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for path in paths {
        match load_one::<T>(&path, trusted) {
            Ok(s) => good.push(s),
            Err(e) => bad.push((path, e)),
        }
    }
    Ok((good, bad))
}

fn load_one<T: Record>(path: &Path, trusted: &[PublicKey]) -> Result<Signed<T>, SigningError> {
    let bytes = canonical::read_bounded(path, MAX_RECORD_FILE)?;
    let signed = Signed::<T>::from_json(&bytes)?;
    signed.verify(trusted)?;
    let expected = signed.file_name()?;
    if path.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
        return Err(SigningError::FileName {
            path: path.to_owned(),
            expected,
        });
    }
    Ok(signed)
}

/// Temp file in the same directory (so the rename cannot cross file systems), fsync, rename, then
/// fsync the directory so the new name survives a crash.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SigningError> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| SigningError::Io { path: p, source }
    };
    // A temp file left by a crash holds nothing worth keeping: the record it was for is rewritten
    // now, byte for byte (signatures are deterministic).
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        // Leave no debris; the rename either happened or the temp file is ours to remove.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn invalid(field: &'static str, why: &'static str) -> SigningError {
    SigningError::Invalid { field, why }
}

/// Checks a free-text field of a record (or of a denial): not empty, at most `max` bytes, no
/// control characters but newlines.
pub fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), SigningError> {
    if s.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(SigningError::TextTooLong {
            field,
            len: s.len(),
            max,
        });
    }
    // Newlines are fine in a reason; other control characters (terminal escapes) are not.
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn check_segment(seg: &str) -> bool {
    !seg.is_empty()
        && seg.len() <= 96
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !seg.starts_with(['.', '-'])
        && !seg.contains("..")
}

fn check_name(source: Source, name: &str) -> Result<(), SigningError> {
    let segs: Vec<&str> = name.split('/').collect();
    let ok = match source {
        Source::Hf => {
            let rest = match segs.split_first() {
                Some((&"datasets", rest)) => rest,
                _ => &segs[..],
            };
            (1..=2).contains(&rest.len()) && rest.iter().all(|s| check_segment(s))
        }
        Source::Ollama => segs.len() == 2 && segs.iter().all(|s| check_segment(s)),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            "expected org/repo, repo or datasets/org/repo (hf) or namespace/model (ollama)",
        ))
    }
}

fn check_revision(source: Source, rev: &str) -> Result<(), SigningError> {
    let lower_hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = match source {
        Source::Hf => lower_hex(rev, 40),
        Source::Ollama => rev
            .strip_prefix("sha256:")
            .is_some_and(|h| lower_hex(h, 64)),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "revision",
            "expected a lowercase 40-hex commit (hf) or sha256:<64 lowercase hex> manifest digest (ollama)",
        ))
    }
}

fn check_path(p: &str) -> Result<(), SigningError> {
    if p.is_empty()
        || p.len() > 1024
        || p.chars().any(|c| c.is_control() || c == '\\')
        || p.split('/').any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(invalid(
            "files",
            "each path must be relative, 1 to 1024 bytes, without empty, '.' or '..' segments, backslashes or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn governance() -> KeyPair {
        KeyPair::from_seed(&[1; 32])
    }

    fn record() -> ApprovalRecord {
        ApprovalRecord {
            source: Source::Hf,
            name: "acme/tiny".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            revision_name: Some("main".into()),
            files: vec![
                PinnedFile {
                    path: "model.safetensors".into(),
                    sha256: Digest::of(b"weights"),
                    size: 7,
                },
                PinnedFile {
                    path: "config.json".into(),
                    sha256: Digest::of(b"{}"),
                    size: 2,
                },
            ],
            approved_by: "governance@example.org".into(),
            approved_at: "2026-01-31T12:00:00Z".parse().unwrap(),
            expires_at: Some("2027-01-31T12:00:00Z".parse().unwrap()),
            reason: "evaluated".into(),
            license: Some("apache-2.0".into()),
            license_override: false,
        }
    }

    #[test]
    fn signed_bytes_are_canonical_and_pinned() {
        let rev = RevocationRecord {
            approval: "appr-0123456789ab".parse().unwrap(),
            reason: "CVE".into(),
            revoked_by: "gov".into(),
            revoked_at: "2026-02-01T00:00:00Z".parse().unwrap(),
        };
        assert_eq!(
            String::from_utf8(signed_message(&rev).unwrap()).unwrap(),
            "airlock-revocation-v1\n{\"approval\":\"appr-0123456789ab\",\"reason\":\"CVE\",\"revoked_at\":\"2026-02-01T00:00:00Z\",\"revoked_by\":\"gov\"}"
        );
        // Files are sorted before signing, and the id is the hash of the signed bytes.
        let signed = sign(record(), &governance()).unwrap();
        assert_eq!(signed.record().files[0].path, "config.json");
        let expected = format!(
            "airlock-approval-v1\n{{\"approved_at\":\"2026-01-31T12:00:00Z\",\"approved_by\":\"governance@example.org\",\"expires_at\":\"2027-01-31T12:00:00Z\",\"files\":[{{\"path\":\"config.json\",\"sha256\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2}},{{\"path\":\"model.safetensors\",\"sha256\":\"sha256:{}\",\"size\":7}}],\"license\":\"apache-2.0\",\"license_override\":false,\"name\":\"acme/tiny\",\"reason\":\"evaluated\",\"revision\":\"0123456789abcdef0123456789abcdef01234567\",\"revision_name\":\"main\",\"source\":\"hf\"}}",
            Digest::of(b"weights").hex()
        );
        assert_eq!(
            String::from_utf8(signed_message(signed.record()).unwrap()).unwrap(),
            expected
        );
        let h = sha2::Sha256::digest(expected.as_bytes());
        assert_eq!(
            signed.id().unwrap().as_str(),
            format!("appr-{}", hex::encode(&h[..6]))
        );
        assert_eq!(signed.id().unwrap().as_str(), KNOWN_ID);
        assert_eq!(signed.record().file("model.safetensors").unwrap().size, 7);
        assert!(signed.record().file("nope").is_none());
    }

    const KNOWN_ID: &str = "appr-4b8a812d524d";

    #[test]
    fn round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = governance();
        let signed = sign(record(), &key).unwrap();
        let path = signed.write_to_dir(dir.path()).unwrap();
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("{}.json", signed.id().unwrap())
        );
        // Idempotent.
        assert_eq!(signed.write_to_dir(dir.path()).unwrap(), path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n  \"approved_at\": \"2026-01-31T12:00:00Z\",\n"));
        assert!(text.ends_with("}\n"));

        let rev = sign(
            RevocationRecord {
                approval: signed.id().unwrap(),
                reason: "withdrawn".into(),
                revoked_by: "gov".into(),
                revoked_at: "2026-02-01T00:00:00Z".parse().unwrap(),
            },
            &key,
        )
        .unwrap();
        rev.write_to_dir(dir.path()).unwrap();
        std::fs::write(dir.path().join("README.md"), "not a record").unwrap();

        let (good, bad) = load_dir(dir.path(), &[key.public()]).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good, vec![signed.clone()]);
        let (revs, bad) = load_revocations(dir.path(), &[key.public()]).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(revs[0].record().approval, signed.id().unwrap());

        let missing = dir.path().join("nope");
        assert_eq!(load_dir(&missing, &[key.public()]).unwrap().0.len(), 0);
    }

    #[test]
    fn unknown_signer_rejected() {
        let signed = sign(record(), &governance()).unwrap();
        let other = KeyPair::from_seed(&[2; 32]).public();
        assert!(matches!(
            signed.verify(&[other]),
            Err(SigningError::UnknownSigner { key }) if key == governance().public().id()
        ));
        assert!(signed.verify(&[]).is_err());
    }

    /// Writes `text` as the record's file and loads the directory; returns the rejection.
    fn load_tampered(text: &str, name: &str) -> SigningError {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let (good, mut bad) = load_dir(dir.path(), &[governance().public()]).unwrap();
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, dir.path().join(name));
        bad.remove(0).1
    }

    #[test]
    fn one_changed_byte_is_rejected() {
        let signed = sign(record(), &governance()).unwrap();
        let name = signed.file_name().unwrap();
        let text = signed.to_json().unwrap();
        let pin = Digest::of(b"weights").hex();
        let changed_pin = pin.replacen(&pin[..1], if &pin[..1] == "0" { "1" } else { "0" }, 1);

        // A changed pin: the id no longer matches the content.
        let e = load_tampered(&text.replace(&pin, &changed_pin), &name);
        assert!(matches!(e, SigningError::IdMismatch { .. }), "{e}");

        // A changed pin with the id recomputed to match: the signature catches it.
        let mut forged: serde_json::Value = serde_json::from_str(&text).unwrap();
        forged["files"][1]["sha256"] = format!("sha256:{changed_pin}").into();
        let forged_record: ApprovalRecord = {
            let mut m = forged.as_object().unwrap().clone();
            for k in ["id", "format", "signature", "signed_by"] {
                m.remove(k);
            }
            serde_json::from_value(serde_json::Value::Object(m)).unwrap()
        };
        let new_id = forged_record.id().unwrap();
        forged["id"] = new_id.to_string().into();
        let e = load_tampered(&forged.to_string(), &format!("{new_id}.json"));
        assert!(matches!(e, SigningError::BadSignature { .. }), "{e}");

        // A changed size, approver, or licence flag: same.
        for (from, to) in [
            ("\"size\": 7", "\"size\": 8"),
            ("\"license_override\": false", "\"license_override\": true"),
        ] {
            assert!(text.contains(from));
            let e = load_tampered(&text.replace(from, to), &name);
            assert!(matches!(e, SigningError::IdMismatch { .. }), "{from}: {e}");
        }

        // One flipped signature digit.
        let sig = hex::encode(signed.signature.to_bytes());
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let e = load_tampered(
            &text.replace(&sig, std::str::from_utf8(&flipped).unwrap()),
            &name,
        );
        assert!(matches!(e, SigningError::BadSignature { .. }), "{e}");

        // An extra, unsigned field.
        let e = load_tampered(&text.replacen("{\n", "{\n  \"note\": \"x\",\n", 1), &name);
        assert!(matches!(e, SigningError::Json { .. }), "{e}");

        // A good record under the wrong name.
        let e = load_tampered(&text, "appr-ffffffffffff.json");
        assert!(matches!(e, SigningError::FileName { .. }), "{e}");

        // Not JSON at all.
        let e = load_tampered("{", &name);
        assert!(matches!(e, SigningError::Json { .. }), "{e}");
    }

    #[test]
    fn a_revocation_signature_is_not_an_approval_signature() {
        let key = governance();
        let rev = sign(
            RevocationRecord {
                approval: "appr-0123456789ab".parse().unwrap(),
                reason: "r".into(),
                revoked_by: "g".into(),
                revoked_at: "2026-02-01T00:00:00Z".parse().unwrap(),
            },
            &key,
        )
        .unwrap();
        let text = rev.to_json().unwrap();
        assert!(SignedApproval::from_json(text.as_bytes()).is_err());
        let relabelled = text.replace("airlock-revocation-v1", "airlock-approval-v1");
        assert!(SignedApproval::from_json(relabelled.as_bytes()).is_err());
    }

    #[test]
    fn invalid_records_are_not_signed() {
        let key = governance();
        type Change = Box<dyn Fn(&mut ApprovalRecord)>;
        let cases: Vec<(&str, Change)> = vec![
            ("revision", Box::new(|r| r.revision = "main".into())),
            (
                "revision",
                Box::new(|r| r.revision = r.revision.to_uppercase()),
            ),
            ("name", Box::new(|r| r.name = "../etc/passwd".into())),
            ("name", Box::new(|r| r.name = "a/b/c".into())),
            ("files", Box::new(|r| r.files.clear())),
            ("files", Box::new(|r| r.files[0].path = "../x".into())),
            (
                "files",
                Box::new(|r| r.files[1].path = r.files[0].path.clone()),
            ),
            ("reason", Box::new(|r| r.reason = " ".into())),
            (
                "approved_by",
                Box::new(|r| r.approved_by = "a\u{1b}[31m".into()),
            ),
            (
                "expires_at",
                Box::new(|r| r.expires_at = Some("2020-01-01T00:00:00Z".parse().unwrap())),
            ),
        ];
        for (field, change) in cases {
            let mut r = record();
            change(&mut r);
            match sign(r, &key) {
                Err(SigningError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut ollama = record();
        ollama.source = Source::Ollama;
        ollama.name = "library/llama3".into();
        ollama.revision = format!("sha256:{}", Digest::of(b"manifest").hex());
        assert!(sign(ollama, &key).is_ok());
        let mut dataset = record();
        dataset.name = "datasets/acme/ds".into();
        assert!(sign(dataset, &key).is_ok());
    }

    #[test]
    fn expiry() {
        let r = record();
        assert!(!r.is_expired("2026-06-01T00:00:00Z".parse().unwrap()));
        assert!(r.is_expired("2027-01-31T12:00:00Z".parse().unwrap()));
        let mut forever = record();
        forever.expires_at = None;
        assert!(!forever.is_expired("9999-01-01T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn approval_ids_parse() {
        assert!("appr-0123456789ab".parse::<ApprovalId>().is_ok());
        for bad in [
            "appr-0123456789AB",
            "appr-0123",
            "0123456789ab",
            "appr-0123456789abc",
        ] {
            assert!(bad.parse::<ApprovalId>().is_err(), "{bad}");
        }
    }
}
