//! The audit log: an append-only file of JSON lines, each entry hash-chained to the line before it
//! and signed with the mirror's own key.
//!
//! One line is the canonical JSON (keys sorted, no whitespace) of
//! `{"event":{"kind":…,…},"key":KEYID,"prev":HEX,"seq":N,"sig":HEX,"time":RFC3339}` followed by
//! `\n`, where
//! - `seq` is the line number, starting at 1;
//! - `prev` is the hex sha256 of the previous line's bytes (without its newline), or 64 zeros on
//!   the first line;
//! - `sig` is the Ed25519 signature, by the key whose id is `key`, over `airlock-audit-v1\n`
//!   followed by the canonical JSON of the entry without `sig`.
//!
//! So editing any byte breaks that line's signature or canonical form, and deleting or reordering
//! lines breaks `seq` and `prev`; [`verify`] reports the first line where that shows. What the
//! chain alone cannot show is lines cut off the *end*: compare [`VerifyOutcome::head`] with a copy
//! kept elsewhere for that.
//!
//! One process owns the file: [`AuditLog`] serialises its own writers through a mutex, but two
//! processes appending to one log would fork the chain. Every append is fsynced before it returns,
//! and all calls block, so async callers run them under `spawn_blocking`.

use crate::approval::{ApprovalId, Source};
use crate::canonical;
use crate::error::SigningError;
use crate::keys::{KeyId, KeyPair, PublicKey};
use crate::timestamp::Timestamp;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use verifier::Digest;

/// Longest line the log accepts or reads, newline excluded. Entries are a few hundred bytes; the
/// bound keeps a damaged or hostile log from exhausting memory.
pub const MAX_LINE: usize = 64 * 1024;

const DOMAIN: &[u8] = b"airlock-audit-v1\n";
const HANDOVER_DOMAIN: &[u8] = b"airlock-audit-handover-v1\n";

/// What the new key signs in a hand-over: its own PEM, the old key, and the line's place in the
/// chain, so the endorsement cannot be replayed at another point or in another log.
fn handover_message(
    new_key: &str,
    old_key: &KeyId,
    prev: &str,
    seq: u64,
) -> Result<Vec<u8>, SigningError> {
    let body = serde_json::json!({
        "new_key": new_key,
        "old_key": old_key.to_string(),
        "prev": prev,
        "seq": seq,
    });
    let mut m = HANDOVER_DOMAIN.to_vec();
    m.extend_from_slice(&canonical::bytes(body)?);
    Ok(m)
}

/// Something worth a line in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// An approval record was written or imported.
    Approval {
        /// Its id.
        approval: ApprovalId,
        /// Hugging Face or Ollama.
        source: Source,
        /// The approved name.
        name: String,
        /// The pinned commit or manifest digest.
        revision: String,
        /// The approver.
        approved_by: String,
    },
    /// A pending request was denied.
    Denial {
        /// The request's id.
        request: String,
        /// What was asked for.
        name: String,
        /// Why, as the client will see it.
        reason: String,
        /// Who denied it.
        denied_by: String,
    },
    /// A client was refused (not approved, typosquat, licence, verification, revoked).
    Refusal {
        /// The client (address, and token name if any).
        client: String,
        /// What it asked for.
        name: String,
        /// The revision it asked for, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
        /// The refusal as the client saw it.
        reason: String,
    },
    /// A client asked for something not approved and a review request was recorded.
    Request {
        /// The request's id.
        request: String,
        /// The client.
        client: String,
        /// What it asked for.
        name: String,
        /// The revision it asked for, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
    },
    /// Bytes were served to a client.
    Download {
        /// The client.
        client: String,
        /// The artifact's name.
        name: String,
        /// The commit or manifest digest served.
        revision: String,
        /// The file (repo path or layer).
        file: String,
        /// The sha256 of the bytes served.
        digest: Digest,
        /// The approval that covered them, if one did (config allow rules have none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalId>,
    },
    /// More requests for a download already audited in the same window (ranged parts, re-reads):
    /// counted rather than written one by one.
    DownloadRepeats {
        /// The client.
        client: String,
        /// The artifact's name.
        name: String,
        /// The commit or manifest digest served.
        revision: String,
        /// The file (repo path or layer).
        file: String,
        /// The sha256 of the bytes served.
        digest: Digest,
        /// The approval that covered them, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalId>,
        /// Requests after the window's first (which has its own `download` entry).
        count: u64,
        /// When the window's first request came.
        since: Timestamp,
    },
    /// An approval was revoked.
    Revocation {
        /// The approval.
        approval: ApprovalId,
        /// Why.
        reason: String,
        /// Who revoked it.
        revoked_by: String,
    },
    /// The mirror's key was handed over (`airlock rotate-key`). The line is signed by the old key;
    /// `endorsement` is the new key's signature over the hand-over (see [`AuditLog::hand_over`]),
    /// so both keys sign it. Every later line must be signed by the new key.
    KeyHandover {
        /// The new key (SubjectPublicKeyInfo PEM).
        new_key: String,
        /// The new key's signature (hex) over `airlock-audit-handover-v1\n` and the canonical
        /// JSON of `{"new_key", "old_key", "prev", "seq"}` of this line.
        endorsement: String,
    },
    /// An operator cut a torn last line off the log (`airlock audit recover`).
    TornTailCut {
        /// The log's length after the cut.
        offset: u64,
        /// How many bytes were cut.
        len: u64,
        /// Their sha256 (they are kept in the saved file).
        sha256: Digest,
    },
    /// A request to the admin API carried no or a wrong token. At most one entry per second is
    /// written; `suppressed` counts the failures folded into this one since the last entry.
    AdminAuthFailed {
        /// The client.
        client: String,
        /// The admin path asked for.
        path: String,
        /// Failures since the previous entry that were not written separately.
        suppressed: u64,
    },
    /// A scanned file passed only because the operator's `[scan] allow_globals` admitted pickle
    /// globals it references.
    ScanAllowance {
        /// The file (repo path or layer digest).
        file: String,
        /// The sha256 of its bytes.
        digest: Digest,
        /// The admitted globals it relies on.
        globals: Vec<String>,
    },
    /// The configuration was loaded or reloaded.
    ConfigReload {
        /// The sha256 of the configuration file's bytes.
        sha256: Digest,
    },
    /// An air-gap bundle was written.
    Export {
        /// The sha256 of the bundle's manifest file.
        bundle: Digest,
        /// The versions it carries (`hf acme/tiny@<commit>`, `ollama library/x@sha256:…`).
        versions: Vec<String>,
        /// Artifacts (blobs, listings, records) it carries.
        items: u64,
        /// Their total size.
        bytes: u64,
    },
    /// An air-gap bundle was imported, or refused.
    Import {
        /// The sha256 of the bundle's manifest file.
        bundle: Digest,
        /// The exporting mirror's key, if the manifest's signature verified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exporter: Option<KeyId>,
        /// The versions that came in (empty if refused).
        versions: Vec<String>,
        /// Artifacts newly added to the store.
        items: u64,
        /// Their total size.
        bytes: u64,
        /// Why the bundle was refused, naming the first bad item (absent if imported).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
}

/// One parsed line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The line number, from 1.
    pub seq: u64,
    /// When the event happened, as the writer said.
    pub time: Timestamp,
    /// The key that signed the line.
    pub key: KeyId,
    /// What happened.
    pub event: AuditEvent,
}

/// The wire form of a line. The event stays untyped so that [`verify`] checks lines whose event
/// kinds this build does not know.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    event: Value,
    key: KeyId,
    prev: String,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
    time: Timestamp,
}

fn to_value<T: Serialize>(t: &T) -> Result<Value, SigningError> {
    serde_json::to_value(t).map_err(SigningError::Encode)
}

impl RawEntry {
    /// `DOMAIN` followed by the canonical bytes of the entry without `sig`.
    fn signed_message(&self) -> Result<Vec<u8>, SigningError> {
        let mut v = to_value(self)?;
        if let Value::Object(map) = &mut v {
            map.remove("sig");
        }
        let mut m = DOMAIN.to_vec();
        m.extend_from_slice(&canonical::bytes(v)?);
        Ok(m)
    }
}

/// Where and how a log fails to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The 1-based line number.
    pub line: u64,
    /// What is wrong there.
    pub kind: ProblemKind,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Longer than [`MAX_LINE`] bytes.
    TooLong,
    /// The last line has no newline: a write was cut short.
    Incomplete,
    /// Not an audit entry (not JSON, or missing or extra fields).
    NotAnEntry {
        /// The parser's message.
        detail: String,
    },
    /// Parses, but its bytes are not the canonical form the writer produces: edited.
    NotCanonical,
    /// `seq` is not the line number: lines were deleted, reordered or duplicated.
    Sequence {
        /// The line number.
        expected: u64,
        /// The entry's `seq`.
        found: u64,
    },
    /// `prev` is not the hash of the previous line: that line was changed, or lines were deleted
    /// or reordered.
    BrokenChain,
    /// Signed by a key that is not trusted.
    UnknownKey {
        /// The key id the line names.
        key: KeyId,
    },
    /// The signature does not match: the line was edited.
    BadSignature {
        /// The key id the line names.
        key: KeyId,
    },
    /// Signed by a trusted key that had handed over to another before this line.
    RetiredKey {
        /// The key id the line names.
        key: KeyId,
        /// The key that signs lines at this point.
        active: KeyId,
    },
    /// A key hand-over whose new key or endorsement does not verify.
    BadHandover {
        /// What is wrong.
        detail: &'static str,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::TooLong => write!(f, "longer than {MAX_LINE} bytes; not written by Airlock"),
            ProblemKind::Incomplete => write!(f, "incomplete last line (no newline): a torn write"),
            ProblemKind::NotAnEntry { detail } => write!(f, "not an audit entry: {detail}"),
            ProblemKind::NotCanonical => {
                write!(f, "not in the form Airlock writes: the line was edited")
            }
            ProblemKind::Sequence { expected, found } if found > expected => write!(
                f,
                "entry {expected} is missing (found entry {found} here): a line was deleted or lines were reordered"
            ),
            ProblemKind::Sequence { expected, found } => write!(
                f,
                "entry {found} is out of place (expected entry {expected}): lines were reordered or duplicated"
            ),
            ProblemKind::BrokenChain => write!(
                f,
                "does not chain to the line before it: that line was edited, or lines were deleted or reordered"
            ),
            ProblemKind::UnknownKey { key } => {
                write!(f, "signed by key {key}, which is not a trusted audit key")
            }
            ProblemKind::BadSignature { key } => {
                write!(f, "signature by key {key} does not verify: the line was edited")
            }
            ProblemKind::RetiredKey { key, active } => write!(
                f,
                "signed by key {key}, which had handed over to key {active} earlier in the log"
            ),
            ProblemKind::BadHandover { detail } => write!(f, "key hand-over: {detail}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

/// The last entry of a verified log, to keep elsewhere: the chain cannot show lines removed from
/// the end, a recorded head can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its `seq`.
    pub seq: u64,
    /// The sha256 of its line (what the next line's `prev` will be).
    pub sha256: Digest,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// No problem found.
    pub ok: bool,
    /// Entries that verified, from the top, before the first problem (all of them when `ok`).
    pub entries: u64,
    /// The first problem, if any; checking stops there.
    pub first_problem: Option<Problem>,
    /// The last good entry.
    pub head: Option<Head>,
}

/// A writer for one log file.
pub struct AuditLog {
    path: PathBuf,
    key: KeyPair,
    key_id: KeyId,
    tail: Mutex<Tail>,
    /// Group commit: one fsync makes every line written before it durable, so appenders that
    /// arrive while a sync runs share the next one instead of each paying for their own. Held for
    /// the length of a sync; taken only after `tail` is released (lock order: `sync`, then `tail`).
    sync: Mutex<Synced>,
}

struct Synced {
    /// The log file (a second handle on the same open file).
    file: File,
    /// Every entry up to this `seq` has been fsynced.
    seq: u64,
    /// fsyncs done since open.
    count: u64,
}

struct Tail {
    file: File,
    /// `seq` of the last entry (0 for an empty log).
    seq: u64,
    /// sha256 of the last line.
    prev: [u8; 32],
    /// File length after the last complete line.
    len: u64,
    /// A failed write could not be rolled back.
    broken: bool,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending entries signed with `key`.
    ///
    /// Reads only the last line, to continue its `seq` and chain: the whole chain is checked by
    /// [`verify`], not here. A last line without a newline (a crash mid-write) is reported as
    /// [`SigningError::TornTail`] and the log is not opened: extending it would bury the damage.
    pub fn open(path: &Path, key: KeyPair) -> Result<Self, SigningError> {
        let io = |source| SigningError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (seq, prev) = if len == 0 {
            (0, [0u8; 32])
        } else {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                let offset = last_newline_before(&mut file, len)
                    .map_err(io)?
                    .map_or(0, |p| p + 1);
                return Err(SigningError::TornTail {
                    path: path.to_owned(),
                    offset,
                });
            }
            let start = last_newline_before(&mut file, len - 1)
                .map_err(io)?
                .map_or(0, |p| p + 1);
            let problem = |kind| -> Result<SigningError, SigningError> {
                // Only on this error path is it worth counting lines, to say which one.
                let line = count_lines(path)?;
                Ok(SigningError::AuditEntry {
                    path: path.to_owned(),
                    problem: Problem { line, kind },
                })
            };
            let line_len = len - 1 - start;
            if line_len > MAX_LINE as u64 {
                return Err(problem(ProblemKind::TooLong)?);
            }
            let mut line = vec![0u8; line_len as usize];
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            file.read_exact(&mut line).map_err(io)?;
            let raw: RawEntry = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    return Err(problem(ProblemKind::NotAnEntry {
                        detail: e.to_string(),
                    })?)
                }
            };
            (raw.seq, sha256(&line))
        };
        // What is already in the file is made durable once here, so `Synced::seq` starts true.
        file.sync_data().map_err(io)?;
        let sync_file = file.try_clone().map_err(io)?;
        Ok(AuditLog {
            path: path.to_owned(),
            key_id: key.public().id(),
            key,
            tail: Mutex::new(Tail {
                file,
                seq,
                prev,
                len,
                broken: false,
            }),
            sync: Mutex::new(Synced {
                file: sync_file,
                seq,
                count: 0,
            }),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` at `time` and returns the entry's `seq` once the entry is durable
    /// (fsynced). Safe to call from many threads of this process at once; entries are written one
    /// at a time, in `seq` order, and concurrent appenders share fsyncs (group commit), so the
    /// guarantee is the same as one fsync per entry at a fraction of the cost.
    pub fn append(&self, event: &AuditEvent, time: Timestamp) -> Result<u64, SigningError> {
        let seq = self.write(event, time)?;
        self.sync_through(seq)?;
        Ok(seq)
    }

    fn broken(&self) -> SigningError {
        SigningError::LogBroken {
            path: self.path.clone(),
        }
    }

    /// Hands the log over to `new`: appends a [`AuditEvent::KeyHandover`] signed by this log's key
    /// and endorsed by `new`, and returns its `seq` once durable. Later lines must be written by an
    /// [`AuditLog`] opened with `new`; this one should be dropped.
    pub fn hand_over(&self, new: &KeyPair, time: Timestamp) -> Result<u64, SigningError> {
        let new_key = new.public().to_pem()?;
        let seq = {
            let mut tail = self.tail.lock().map_err(|_| self.broken())?;
            if tail.broken {
                return Err(self.broken());
            }
            let message = handover_message(
                &new_key,
                &self.key_id,
                &hex::encode(tail.prev),
                tail.seq + 1,
            )?;
            let event = AuditEvent::KeyHandover {
                new_key,
                endorsement: hex::encode(new.sign(&message).to_bytes()),
            };
            self.write_locked(&mut tail, &event, time)?
        };
        self.sync_through(seq)?;
        Ok(seq)
    }

    /// Writes one entry (not yet fsynced) and returns its `seq`.
    fn write(&self, event: &AuditEvent, time: Timestamp) -> Result<u64, SigningError> {
        // A poisoned lock means a writer panicked mid-append; the tail may not match the file.
        let mut tail = self.tail.lock().map_err(|_| self.broken())?;
        self.write_locked(&mut tail, event, time)
    }

    fn write_locked(
        &self,
        tail: &mut Tail,
        event: &AuditEvent,
        time: Timestamp,
    ) -> Result<u64, SigningError> {
        if tail.broken {
            return Err(self.broken());
        }
        let seq = tail.seq + 1;
        let mut raw = RawEntry {
            event: to_value(event)?,
            key: self.key_id.clone(),
            prev: hex::encode(tail.prev),
            seq,
            sig: None,
            time,
        };
        let signature = self.key.sign(&raw.signed_message()?);
        raw.sig = Some(hex::encode(signature.to_bytes()));
        let mut line = canonical::bytes(to_value(&raw)?)?;
        if line.len() > MAX_LINE {
            return Err(SigningError::EntryTooLarge {
                len: line.len(),
                limit: MAX_LINE,
            });
        }
        let hash = sha256(&line);
        line.push(b'\n');
        if let Err(source) = tail.file.write_all(&line) {
            // Cut back to the last complete line, so a failed write (a full disk) leaves no torn
            // line that the next append would bury. If even that fails, stop writing altogether.
            let old = tail.len;
            if tail.file.set_len(old).is_err() {
                tail.broken = true;
            }
            return Err(SigningError::Io {
                path: self.path.clone(),
                source,
            });
        }
        tail.len += line.len() as u64;
        tail.seq = seq;
        tail.prev = hash;
        Ok(seq)
    }

    /// Returns once every entry up to `seq` is fsynced, syncing if no one else has yet.
    fn sync_through(&self, seq: u64) -> Result<(), SigningError> {
        let mut synced = self.sync.lock().map_err(|_| self.broken())?;
        if synced.seq >= seq {
            // A sync that started after our write already covered it.
            return Ok(());
        }
        // Everything written so far rides on this one sync, ours and any appender's behind us.
        let upto = {
            let tail = self.tail.lock().map_err(|_| self.broken())?;
            if tail.broken {
                return Err(self.broken());
            }
            tail.seq
        };
        if let Err(source) = synced.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good sync can be vouched for, so the log stops taking entries
            // (PostgreSQL's rule after "fsyncgate"); `airlock audit verify` shows what is there.
            if let Ok(mut tail) = self.tail.lock() {
                tail.broken = true;
            }
            return Err(SigningError::Io {
                path: self.path.clone(),
                source,
            });
        }
        synced.seq = upto;
        synced.count += 1;
        Ok(())
    }

    /// How many fsyncs appends have needed since the log was opened (for metrics: with group
    /// commit this is at most the number of appends, and far fewer under load).
    pub fn syncs(&self) -> u64 {
        self.sync.lock().map_or(0, |s| s.count)
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("key", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Checks the whole log at `path`: every line canonical, numbered, chained and signed by one of
/// `trusted`. Stops at the first problem and says which line. An I/O failure is an error; a bad
/// log is an `Ok` outcome with `ok: false`.
pub fn verify(path: &Path, trusted: &[PublicKey]) -> Result<VerifyOutcome, SigningError> {
    let mut lines = open_lines(path)?;
    // Hand-overs add their new key, and from then on only the active key may sign.
    let mut keys = Keys {
        trusted: trusted.to_vec(),
        active: None,
    };
    let mut prev = [0u8; 32];
    let mut head = None;
    let mut entries = 0;
    while let Some((line_no, raw)) = lines.next_line().map_err(|source| SigningError::Io {
        path: path.to_owned(),
        source,
    })? {
        let checked = match raw {
            RawLine::TooLong => Err(ProblemKind::TooLong),
            RawLine::Incomplete => Err(ProblemKind::Incomplete),
            RawLine::Complete(bytes) => {
                check_line(&bytes, line_no, &prev, &mut keys).map(|()| bytes)
            }
        };
        match checked {
            Ok(bytes) => {
                prev = sha256(&bytes);
                entries += 1;
                head = Some(Head {
                    seq: line_no,
                    sha256: Digest::from_bytes(prev),
                });
            }
            Err(kind) => {
                return Ok(VerifyOutcome {
                    ok: false,
                    entries,
                    first_problem: Some(Problem {
                        line: line_no,
                        kind,
                    }),
                    head,
                })
            }
        }
    }
    Ok(VerifyOutcome {
        ok: true,
        entries,
        first_problem: None,
        head,
    })
}

/// The keys [`verify`] accepts as it walks the log.
struct Keys {
    trusted: Vec<PublicKey>,
    /// The key of the lines so far (the first line's, then each hand-over's new key).
    active: Option<KeyId>,
}

fn check_line(
    bytes: &[u8],
    line_no: u64,
    prev: &[u8; 32],
    keys: &mut Keys,
) -> Result<(), ProblemKind> {
    let raw = check_signed_line(bytes, line_no, prev, &keys.trusted)?;
    if let Some(active) = &keys.active {
        if *active != raw.key {
            return Err(ProblemKind::RetiredKey {
                key: raw.key,
                active: active.clone(),
            });
        }
    }
    keys.active = Some(raw.key.clone());
    if raw.event.get("kind").and_then(Value::as_str) == Some("key_handover") {
        let bad = |detail| ProblemKind::BadHandover { detail };
        let field = |k: &str| raw.event.get(k).and_then(Value::as_str);
        let (Some(pem), Some(endorsement)) = (field("new_key"), field("endorsement")) else {
            return Err(bad("new_key or endorsement missing"));
        };
        let new = PublicKey::from_pem(pem).map_err(|_| bad("new_key is not an Ed25519 key"))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(endorsement, &mut sig)
            .map_err(|_| bad("endorsement is not 128 hex digits"))?;
        let message = handover_message(pem, &raw.key, &raw.prev, raw.seq)
            .map_err(|_| bad("cannot encode"))?;
        if !new.verifies(&message, &Signature::from_bytes(&sig)) {
            return Err(bad("the new key's endorsement does not verify"));
        }
        keys.active = Some(new.id());
        keys.trusted.push(new);
    }
    Ok(())
}

fn check_signed_line(
    bytes: &[u8],
    line_no: u64,
    prev: &[u8; 32],
    trusted: &[PublicKey],
) -> Result<RawEntry, ProblemKind> {
    let raw: RawEntry = serde_json::from_slice(bytes).map_err(|e| ProblemKind::NotAnEntry {
        detail: e.to_string(),
    })?;
    // Canonical form first: any edit that keeps the JSON meaning (spacing, key order, escapes,
    // another spelling of the time) is still an edit.
    let again = to_value(&raw)
        .and_then(canonical::bytes)
        .map_err(|_| ProblemKind::NotCanonical)?;
    if again != bytes {
        return Err(ProblemKind::NotCanonical);
    }
    if raw.seq != line_no {
        return Err(ProblemKind::Sequence {
            expected: line_no,
            found: raw.seq,
        });
    }
    if raw.prev != hex::encode(prev) {
        return Err(ProblemKind::BrokenChain);
    }
    let bad_sig = || ProblemKind::BadSignature {
        key: raw.key.clone(),
    };
    let mut sig = [0u8; 64];
    hex::decode_to_slice(raw.sig.as_deref().unwrap_or(""), &mut sig).map_err(|_| bad_sig())?;
    let signature = Signature::from_bytes(&sig);
    let message = raw.signed_message().map_err(|_| bad_sig())?;
    let mut known = false;
    for key in trusted.iter().filter(|k| k.id() == raw.key) {
        known = true;
        if key.verifies(&message, &signature) {
            return Ok(raw);
        }
    }
    if known {
        Err(bad_sig())
    } else {
        Err(ProblemKind::UnknownKey {
            key: raw.key.clone(),
        })
    }
}

/// The raw lines of the log whose `time` is at or after `since` (all lines without it), for
/// `airlock audit export`. Lines are passed through byte for byte, so an export can be verified
/// like the log when it starts at line 1. Nothing is verified here: run [`verify`] for that.
pub fn export(path: &Path, since: Option<Timestamp>) -> Result<Export, SigningError> {
    Ok(Export {
        lines: open_lines(path)?,
        path: path.to_owned(),
        since,
        done: false,
    })
}

/// Iterator returned by [`export`].
pub struct Export {
    lines: Lines<BufReader<File>>,
    path: PathBuf,
    since: Option<Timestamp>,
    done: bool,
}

impl Iterator for Export {
    type Item = Result<String, SigningError>;

    fn next(&mut self) -> Option<Self::Item> {
        #[derive(Deserialize)]
        struct TimeOnly {
            time: Timestamp,
        }
        while !self.done {
            let (line_no, bytes) = match next_complete(&mut self.lines, &self.path) {
                Ok(Some(l)) => l,
                Ok(None) => return None,
                Err(e) => {
                    // After a bad line there is no reliable way on: report it and stop.
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let parsed = serde_json::from_slice::<TimeOnly>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    String::from_utf8(bytes)
                        .map(|s| (t.time, s))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((time, line)) => match self.since {
                    Some(since) if time < since => continue,
                    _ => return Some(Ok(line)),
                },
                Err(detail) => {
                    self.done = true;
                    return Some(Err(entry_error(
                        &self.path,
                        line_no,
                        ProblemKind::NotAnEntry { detail },
                    )));
                }
            }
        }
        None
    }
}

/// The log's entries, parsed (signatures not checked: run [`verify`] first).
pub fn entries(path: &Path) -> Result<Entries, SigningError> {
    Ok(Entries {
        lines: open_lines(path)?,
        path: path.to_owned(),
        done: false,
    })
}

/// Iterator returned by [`entries`].
pub struct Entries {
    lines: Lines<BufReader<File>>,
    path: PathBuf,
    done: bool,
}

impl Iterator for Entries {
    type Item = Result<AuditEntry, SigningError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let parsed = next_complete(&mut self.lines, &self.path).and_then(|line| {
            let Some((line_no, bytes)) = line else {
                return Ok(None);
            };
            let not_entry = |e: serde_json::Error| {
                entry_error(
                    &self.path,
                    line_no,
                    ProblemKind::NotAnEntry {
                        detail: e.to_string(),
                    },
                )
            };
            let raw: RawEntry = serde_json::from_slice(&bytes).map_err(not_entry)?;
            let event: AuditEvent = serde_json::from_value(raw.event).map_err(not_entry)?;
            Ok(Some(AuditEntry {
                seq: raw.seq,
                time: raw.time,
                key: raw.key,
                event,
            }))
        });
        match parsed {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Every download the log records as covered by `approval`, oldest first: who received the bytes
/// of an approval that is being revoked.
pub fn downloads_of(path: &Path, approval: &ApprovalId) -> Result<Vec<AuditEntry>, SigningError> {
    let mut out = Vec::new();
    for entry in entries(path)? {
        let entry = entry?;
        if matches!(&entry.event, AuditEvent::Download { approval: Some(a), .. } if a == approval) {
            out.push(entry);
        }
    }
    Ok(out)
}

fn entry_error(path: &Path, line: u64, kind: ProblemKind) -> SigningError {
    SigningError::AuditEntry {
        path: path.to_owned(),
        problem: Problem { line, kind },
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

fn open_lines(path: &Path) -> Result<Lines<BufReader<File>>, SigningError> {
    let file = File::open(path).map_err(|source| SigningError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(Lines {
        reader: BufReader::new(file),
        line_no: 0,
    })
}

/// The next complete line, or the problem that stops reading.
fn next_complete(
    lines: &mut Lines<BufReader<File>>,
    path: &Path,
) -> Result<Option<(u64, Vec<u8>)>, SigningError> {
    let next = lines.next_line().map_err(|source| SigningError::Io {
        path: path.to_owned(),
        source,
    })?;
    match next {
        None => Ok(None),
        Some((n, RawLine::Complete(bytes))) => Ok(Some((n, bytes))),
        Some((n, RawLine::TooLong)) => Err(entry_error(path, n, ProblemKind::TooLong)),
        Some((n, RawLine::Incomplete)) => Err(entry_error(path, n, ProblemKind::Incomplete)),
    }
}

enum RawLine {
    Complete(Vec<u8>),
    /// Over [`MAX_LINE`]; its bytes were skipped, not kept.
    TooLong,
    /// End of file before the newline.
    Incomplete,
}

/// Splits a reader into lines of at most [`MAX_LINE`] bytes, never holding more than that.
struct Lines<R> {
    reader: R,
    line_no: u64,
}

impl<R: BufRead> Lines<R> {
    fn next_line(&mut self) -> std::io::Result<Option<(u64, RawLine)>> {
        let mut buf = Vec::new();
        let mut too_long = false;
        let mut any = false;
        loop {
            let avail = self.reader.fill_buf()?;
            if avail.is_empty() {
                if !any {
                    return Ok(None);
                }
                self.line_no += 1;
                let raw = if too_long {
                    RawLine::TooLong
                } else {
                    RawLine::Incomplete
                };
                return Ok(Some((self.line_no, raw)));
            }
            any = true;
            let (chunk, consumed, ends) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            if !too_long {
                if buf.len() + chunk.len() > MAX_LINE {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            self.reader.consume(consumed);
            if ends {
                self.line_no += 1;
                let raw = if too_long {
                    RawLine::TooLong
                } else {
                    RawLine::Complete(buf)
                };
                return Ok(Some((self.line_no, raw)));
            }
        }
    }
}

/// What [`cut_torn_tail`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    /// The length the log was truncated to (where the torn line started).
    pub offset: u64,
    /// The torn bytes' length.
    pub len: u64,
    /// Their sha256, also recorded in the log.
    pub sha256: Digest,
    /// Where they were saved, for the operator to inspect.
    pub saved: PathBuf,
}

/// Recovers a log whose last line was torn (a crash or a full disk mid-append): saves the torn
/// bytes beside the log (`<log>.torn-<offset>`, never overwriting), fsyncs them, then truncates
/// the log to the end of its last complete line and fsyncs it. Returns `None` if the log ends
/// cleanly. Nothing complete is ever removed: only bytes after the last newline, which no
/// verifier could accept as an entry. The caller then records the cut as an
/// [`AuditEvent::TornTailCut`] entry, so the recovery itself is on the chain.
pub fn cut_torn_tail(path: &Path) -> Result<Option<CutTail>, SigningError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| SigningError::Io { path: p, source }
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1)).map_err(io(path))?;
    file.read_exact(&mut last).map_err(io(path))?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    let offset = last_newline_before(&mut file, len)
        .map_err(io(path))?
        .map_or(0, |p| p + 1);
    let torn_len = len - offset;
    // A torn line is at most one entry plus its newline; anything longer is not a torn append
    // but damage that an operator must look at by hand.
    if torn_len > MAX_LINE as u64 + 1 {
        return Err(SigningError::AuditEntry {
            path: path.to_owned(),
            problem: Problem {
                line: count_lines(path)?,
                kind: ProblemKind::TooLong,
            },
        });
    }
    let mut torn = vec![0u8; torn_len as usize];
    file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    file.read_exact(&mut torn).map_err(io(path))?;
    let mut saved = path.as_os_str().to_owned();
    saved.push(format!(".torn-{offset}"));
    let saved = PathBuf::from(saved);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&saved)
        .map_err(io(&saved))?;
    out.write_all(&torn)
        .and_then(|()| out.sync_all())
        .map_err(io(&saved))?;
    file.set_len(offset).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(Some(CutTail {
        offset,
        len: torn_len,
        sha256: Digest::from_bytes(sha256(&torn)),
        saved,
    }))
}

/// Position of the last `\n` before byte `end`, scanning backwards in bounded chunks.
fn last_newline_before(file: &mut File, end: u64) -> std::io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut hi = end;
    let mut buf = vec![0u8; CHUNK as usize];
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let n = (hi - lo) as usize;
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// Number of lines (the last one counted even without its newline).
fn count_lines(path: &Path) -> Result<u64, SigningError> {
    let mut lines = open_lines(path)?;
    let mut n = 0;
    while let Some((line_no, _)) = lines.next_line().map_err(|source| SigningError::Io {
        path: path.to_owned(),
        source,
    })? {
        n = line_no;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_follows_a_key_hand_over_and_refuses_the_old_key_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (old, new) = (mirror_key(), KeyPair::from_seed(&[9; 32]));
        let t = Timestamp::from_unix(0).unwrap();
        let event = AuditEvent::ConfigReload {
            sha256: Digest::of(b""),
        };
        {
            let log = AuditLog::open(&path, mirror_key()).unwrap();
            log.append(&event, t).unwrap();
            assert_eq!(log.hand_over(&new, t).unwrap(), 2);
        }
        let log = AuditLog::open(&path, KeyPair::from_seed(&[9; 32])).unwrap();
        log.append(&event, t).unwrap();
        drop(log);
        // Only the first key is needed: the hand-over vouches for the next.
        let out = verify(&path, &[old.public()]).unwrap();
        assert!(out.ok && out.entries == 3, "{:?}", out.first_problem);
        // The old key may not sign after it handed over, even though it is trusted.
        AuditLog::open(&path, mirror_key())
            .unwrap()
            .append(&event, t)
            .unwrap();
        let p = verify(&path, &[old.public()])
            .unwrap()
            .first_problem
            .unwrap();
        assert_eq!(p.line, 4);
        assert!(matches!(p.kind, ProblemKind::RetiredKey { .. }), "{p}");
    }

    #[test]
    fn a_hand_over_without_the_new_keys_endorsement_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let new = KeyPair::from_seed(&[9; 32]);
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        let forged = AuditEvent::KeyHandover {
            new_key: new.public().to_pem().unwrap(),
            endorsement: hex::encode([0u8; 64]),
        };
        log.append(&forged, Timestamp::from_unix(0).unwrap())
            .unwrap();
        let p = verify(&path, &[mirror_key().public()])
            .unwrap()
            .first_problem
            .unwrap();
        assert!(matches!(p.kind, ProblemKind::BadHandover { .. }), "{p}");
    }

    fn mirror_key() -> KeyPair {
        KeyPair::from_seed(&[3; 32])
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_795_000_000 + secs).unwrap()
    }

    fn download(client: &str, approval: Option<&str>) -> AuditEvent {
        AuditEvent::Download {
            client: client.into(),
            name: "acme/tiny".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            file: "model.safetensors".into(),
            digest: Digest::of(b"weights"),
            approval: approval.map(|a| a.parse().unwrap()),
        }
    }

    /// A log of five downloads by clients 10.0.0.1 … 10.0.0.5, one second apart.
    fn five(dir: &Path) -> PathBuf {
        let path = dir.join("audit.log");
        // Each call starts a fresh log.
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        for i in 1..=5 {
            let seq = log
                .append(
                    &download(&format!("10.0.0.{i}"), Some("appr-0123456789ab")),
                    at(i),
                )
                .unwrap();
            assert_eq!(seq, i as u64);
        }
        path
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn problem(path: &Path) -> Problem {
        let out = verify(path, &[mirror_key().public()]).unwrap();
        assert!(!out.ok);
        out.first_problem.unwrap()
    }

    #[test]
    fn known_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        log.append(
            &AuditEvent::ConfigReload {
                sha256: Digest::of(b""),
            },
            Timestamp::from_unix(0).unwrap(),
        )
        .unwrap();
        let line = &lines(&path)[0];
        let key = mirror_key().public().id();
        let unsigned = format!(
            "{{\"event\":{{\"kind\":\"config_reload\",\"sha256\":\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}},\"key\":\"{key}\",\"prev\":\"{}\",\"seq\":1,\"time\":\"1970-01-01T00:00:00Z\"}}",
            "0".repeat(64)
        );
        let sig = mirror_key().sign(&[DOMAIN, unsigned.as_bytes()].concat());
        let want = unsigned.replace(
            ",\"time\"",
            &format!(",\"sig\":\"{}\",\"time\"", hex::encode(sig.to_bytes())),
        );
        assert_eq!(line, &want);
    }

    #[test]
    fn intact_log_verifies_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        assert_eq!(log.append(&download("10.0.0.6", None), at(6)).unwrap(), 6);
        drop(log);
        let out = verify(&path, &[mirror_key().public()]).unwrap();
        assert!(out.ok, "{:?}", out.first_problem);
        assert_eq!(out.entries, 6);
        let head = out.head.unwrap();
        assert_eq!(head.seq, 6);
        assert_eq!(head.sha256, Digest::of(lines(&path)[5].as_bytes()));
    }

    #[test]
    fn one_edited_byte_is_found_on_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let mut l = lines(&path);
        l[2] = l[2].replace("10.0.0.3", "10.0.0.9");
        write_lines(&path, &l);
        let p = problem(&path);
        assert_eq!(p.line, 3);
        assert!(matches!(p.kind, ProblemKind::BadSignature { .. }), "{p}");
        assert!(p.to_string().starts_with("line 3: signature by key"));

        // Reformatting without changing the meaning is an edit too.
        let path = five(dir.path());
        let mut l = lines(&path);
        l[1] = l[1].replacen("{\"event\"", "{ \"event\"", 1);
        write_lines(&path, &l);
        assert_eq!(
            problem(&path),
            Problem {
                line: 2,
                kind: ProblemKind::NotCanonical
            }
        );

        // An edited prev: the chain breaks on that line.
        let path = five(dir.path());
        let mut l = lines(&path);
        let prev = l[3].split("\"prev\":\"").nth(1).unwrap()[..64].to_owned();
        l[3] = l[3].replace(&prev, &"f".repeat(64));
        write_lines(&path, &l);
        assert_eq!(
            problem(&path),
            Problem {
                line: 4,
                kind: ProblemKind::BrokenChain
            }
        );

        // A byte that breaks the JSON.
        let path = five(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second_line] = b'[';
        std::fs::write(&path, bytes).unwrap();
        let p = problem(&path);
        assert_eq!(p.line, 2);
        assert!(matches!(p.kind, ProblemKind::NotAnEntry { .. }));
    }

    #[test]
    fn reordered_lines_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let mut l = lines(&path);
        l.swap(1, 2);
        write_lines(&path, &l);
        let p = problem(&path);
        assert_eq!(
            p,
            Problem {
                line: 2,
                kind: ProblemKind::Sequence {
                    expected: 2,
                    found: 3
                }
            }
        );
        assert!(p.to_string().contains("deleted or lines were reordered"));
    }

    #[test]
    fn deleted_lines_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let mut l = lines(&path);
        l.remove(2);
        write_lines(&path, &l);
        let out = verify(&path, &[mirror_key().public()]).unwrap();
        assert_eq!(out.entries, 2);
        assert_eq!(
            out.first_problem,
            Some(Problem {
                line: 3,
                kind: ProblemKind::Sequence {
                    expected: 3,
                    found: 4
                }
            })
        );

        // The first line.
        let path = five(dir.path());
        let mut l = lines(&path);
        l.remove(0);
        write_lines(&path, &l);
        assert_eq!(problem(&path).line, 1);

        // A line deleted and its seq renumbered still breaks the chain.
        let path = five(dir.path());
        let mut l = lines(&path);
        l.remove(2);
        l[2] = l[2].replace("\"seq\":4", "\"seq\":3");
        write_lines(&path, &l);
        assert_eq!(
            problem(&path),
            Problem {
                line: 3,
                kind: ProblemKind::BrokenChain
            }
        );
    }

    #[test]
    fn unknown_key_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let other = KeyPair::from_seed(&[4; 32]).public();
        let out = verify(&path, &[other]).unwrap();
        assert_eq!(
            out.first_problem,
            Some(Problem {
                line: 1,
                kind: ProblemKind::UnknownKey {
                    key: mirror_key().public().id()
                }
            })
        );
    }

    #[test]
    fn cut_torn_tail_saves_the_bytes_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        assert_eq!(
            cut_torn_tail(&path).unwrap(),
            None,
            "a clean log is left alone"
        );
        let good_len = std::fs::metadata(&path).unwrap().len();
        let torn = b"{\"event\":{\"kind\":\"downl";
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(torn).unwrap();
        drop(f);
        let cut = cut_torn_tail(&path).unwrap().expect("torn tail");
        assert_eq!(cut.offset, good_len);
        assert_eq!(cut.len, torn.len() as u64);
        assert_eq!(std::fs::read(&cut.saved).unwrap(), torn);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        log.append(
            &AuditEvent::TornTailCut {
                offset: cut.offset,
                len: cut.len,
                sha256: cut.sha256,
            },
            at(100),
        )
        .unwrap();
        let out = verify(&path, &[mirror_key().public()]).unwrap();
        assert_eq!(out.first_problem, None);
        assert_eq!(out.entries, 6);
    }

    #[test]
    fn appenders_waiting_on_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = std::sync::Arc::new(AuditLog::open(&path, mirror_key()).unwrap());
        // Hold the sync lock, as a slow fsync in progress would: every appender writes its line
        // and then waits behind it.
        let held = log.sync.lock().unwrap();
        let threads: Vec<_> = (0..10)
            .map(|i| {
                let log = log.clone();
                std::thread::spawn(move || {
                    log.append(&download(&format!("c{i}"), None), at(i as i64))
                })
            })
            .collect();
        while log.tail.lock().unwrap().seq < 10 {
            std::thread::yield_now();
        }
        drop(held);
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_eq!(log.syncs(), 1, "ten appends, one fsync");
        let out = verify(&path, &[mirror_key().public()]).unwrap();
        assert_eq!((out.first_problem, out.entries), (None, 10));
    }

    #[test]
    fn torn_tail_stops_open_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"event\":{\"kind\":\"downl").unwrap();
        drop(f);
        match AuditLog::open(&path, mirror_key()) {
            Err(SigningError::TornTail { offset, .. }) => assert_eq!(offset, good_len),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            problem(&path),
            Problem {
                line: 6,
                kind: ProblemKind::Incomplete
            }
        );
        // Nothing was appended after the torn line.
        assert_eq!(lines(&path).len(), 6);
        // After the operator truncates, the log continues.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(good_len)
            .unwrap();
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        assert_eq!(log.append(&download("x", None), at(9)).unwrap(), 6);
        assert!(verify(&path, &[mirror_key().public()]).unwrap().ok);
    }

    #[test]
    fn oversized_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        let huge = AuditEvent::Revocation {
            approval: "appr-0123456789ab".parse().unwrap(),
            reason: "x".repeat(MAX_LINE),
            revoked_by: "g".into(),
        };
        assert!(matches!(
            log.append(&huge, at(7)),
            Err(SigningError::EntryTooLarge { .. })
        ));
        // The refused entry left no trace and did not consume a seq.
        assert_eq!(log.append(&download("y", None), at(8)).unwrap(), 6);
        drop(log);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&vec![b'a'; 3 * MAX_LINE]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        assert_eq!(
            problem(&path),
            Problem {
                line: 7,
                kind: ProblemKind::TooLong
            }
        );
        assert!(matches!(
            AuditLog::open(&path, mirror_key()),
            Err(SigningError::AuditEntry {
                problem: Problem {
                    line: 7,
                    kind: ProblemKind::TooLong
                },
                ..
            })
        ));
    }

    #[test]
    fn concurrent_appends_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..25 {
                        log.append(&download(&format!("t{t}-{i}"), None), at(i))
                            .unwrap();
                    }
                });
            }
        });
        let out = verify(&path, &[mirror_key().public()]).unwrap();
        assert!(out.ok, "{:?}", out.first_problem);
        assert_eq!(out.entries, 100);
    }

    #[test]
    fn export_since_and_downloads_of() {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let log = AuditLog::open(&path, mirror_key()).unwrap();
        log.append(&download("10.0.0.6", Some("appr-ffffffffffff")), at(6))
            .unwrap();
        log.append(
            &AuditEvent::Revocation {
                approval: "appr-0123456789ab".parse().unwrap(),
                reason: "CVE".into(),
                revoked_by: "gov".into(),
            },
            at(7),
        )
        .unwrap();
        drop(log);

        let all: Vec<String> = export(&path, None).unwrap().map(Result::unwrap).collect();
        assert_eq!(all, lines(&path));
        let recent: Vec<String> = export(&path, Some(at(4)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(recent, lines(&path)[3..].to_vec());

        let revoked: ApprovalId = "appr-0123456789ab".parse().unwrap();
        let downloads = downloads_of(&path, &revoked).unwrap();
        let clients: Vec<&str> = downloads
            .iter()
            .map(|e| match &e.event {
                AuditEvent::Download { client, .. } => client.as_str(),
                _ => unreachable!("downloads_of returns downloads only"),
            })
            .collect();
        assert_eq!(
            clients,
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        );
        assert_eq!(downloads[0].seq, 1);
        assert_eq!(downloads[4].time, at(5));

        // A damaged line stops the query loudly.
        let mut l = lines(&path);
        l[3] = "garbage".into();
        write_lines(&path, &l);
        assert!(matches!(
            downloads_of(&path, &revoked),
            Err(SigningError::AuditEntry {
                problem: Problem { line: 4, .. },
                ..
            })
        ));
    }
}
