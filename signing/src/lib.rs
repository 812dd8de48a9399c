/*!
Airlock's own trust: Ed25519 keys, signed approval and revocation records, and the hash-chained,
signed audit log. No HTTP, no database, no clock: callers pass the time in.

```
use signing::{sign, ApprovalRecord, KeyPair, PinnedFile, Source, Timestamp};

let governance = KeyPair::from_seed(&[7; 32]);
let record = ApprovalRecord {
    source: Source::Hf,
    name: "acme/tiny".into(),
    revision: "0123456789abcdef0123456789abcdef01234567".into(),
    revision_name: Some("main".into()),
    files: vec![PinnedFile {
        path: "model.safetensors".into(),
        sha256: verifier::Digest::of(b"weights"),
        size: 7,
    }],
    approved_by: "model-governance".into(),
    approved_at: "2026-01-31T12:00:00Z".parse()?,
    expires_at: None,
    reason: "evaluated for the search team".into(),
    license: Some("apache-2.0".into()),
    license_override: false,
};
let signed = sign(record, &governance)?;
let json = signed.to_json()?; // the record file, for review in git
let back = signing::SignedApproval::from_json(json.as_bytes())?;
assert_eq!(back.verify(&[governance.public()])?.name, "acme/tiny");
assert!(back.verify(&[KeyPair::from_seed(&[8; 32]).public()]).is_err());
# Ok::<(), signing::SigningError>(())
```

Invariants:
- A record is trusted only through [`Signed::verify`] against the configured keys (or as returned
  by [`load_dir`]/[`load_revocations`], which verify): its signature covers every field of the
  record, including each pinned file's sha256 and size, so a changed pin is a bad signature.
- Signatures are domain-separated (`airlock-approval-v1`, `airlock-revocation-v1`,
  `airlock-audit-v1`): a signature on one kind of object never verifies as another.
- An approval's id is the hash of its signed bytes, so an id names exactly one content.
- The audit log is append-only and each line commits to the line before it; [`verify_log`] finds
  the first edited, deleted or reordered line. A torn last line stops [`AuditLog::open`] instead of
  being extended.
- Every file read is bounded (key files 16 KiB, records 16 MiB, log lines [`MAX_LINE`]).
*/
#![warn(missing_docs)]

mod approval;
mod audit;
mod bundle;
mod canonical;
mod error;
mod keys;
mod timestamp;

pub use approval::{
    check_text, load_dir, load_revocations, sign, ApprovalId, ApprovalRecord, Loaded, PinnedFile,
    Record, RevocationRecord, Signed, SignedApproval, SignedRevocation, Source, MAX_REASON,
    MAX_WHO,
};
pub use audit::{
    cut_torn_tail, downloads_of, entries as log_entries, export as export_log,
    verify as verify_log, AuditEntry, AuditEvent, AuditLog, CutTail, Entries, Export, Head,
    Problem, ProblemKind, VerifyOutcome, MAX_LINE,
};
pub use bundle::{sign_bundle, verify_bundle};
pub use error::SigningError;
pub use keys::{KeyId, KeyPair, PublicKey};
pub use timestamp::Timestamp;
