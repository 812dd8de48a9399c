//! Pure checks over bytes and files: digests, signature verification and format scanners.
//!
//! Invariants: this crate does no network I/O, touches no database and reads no clock. It takes bytes
//! or readers and returns reports; it never decides policy (the `mirror` crate does that).
#![warn(missing_docs)]

mod digest;
mod error;
mod scan;
mod signature;

pub use digest::{Digest, DigestError, GitOid, HashOutcome, Hasher};
pub use error::VerifyError;
pub use scan::{
    describe, scan, scan_with, Finding, Format, GlobalDecision, ScanOptions, ScanReport, Severity,
    Verdict,
};
pub use signature::{
    verify_model_signature, verify_pgp_detached, verify_pgp_manifest, verify_sigstore_bundle,
    AnchorRule, CertificateTime, CoveredFile, ExpiredKeys, Failure, FileDigest, LegacyFormat,
    ModelFiles, Outcome, PgpKeyring, PgpOptions, PublicKey, RevokedKeys, SignatureReport, Signer,
    SignerIgnorePaths, SigstoreArtifact, SigstorePolicy, SigstoreSigner, TrustAnchor, TrustMethod,
    TrustPolicy, UnsignedFiles, DEFAULT_IGNORE_PATHS,
};
