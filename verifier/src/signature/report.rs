//! What a signature check found: who signed, which files the signature covers, or why it
//! failed. A failure is a value here, not an error: the mirror turns it into a refusal.

use serde::Serialize;

/// The result of one signature check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    /// Verified or failed, with the details of each.
    pub outcome: Outcome,
}

/// Verified (with what was verified) or failed (with why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The signature verifies under the trust policy and covers the files listed.
    Verified {
        /// Who signed, as established by the trust material (not as claimed by the signature).
        signer: Signer,
        /// Files the signature covers, with the digests that were recomputed and matched.
        /// Only these may be served.
        covered: Vec<CoveredFile>,
        /// Files present but excluded by the signer's recorded `ignore_paths` or the caller's
        /// extra ignore list. They are not covered and must not be served.
        ignored: Vec<String>,
        /// Unsigned files tolerated because the policy says `UnsignedFiles::Exclude`. They are
        /// not covered and must not be served. Empty under the default policy.
        unsigned: Vec<String>,
    },
    /// The signature does not verify, or does not cover the file set.
    Failed {
        /// Why.
        reason: Failure,
    },
}

impl SignatureReport {
    /// A failed report.
    pub fn failed(reason: Failure) -> Self {
        SignatureReport {
            outcome: Outcome::Failed { reason },
        }
    }
    /// Whether the outcome is `Verified`.
    pub fn is_verified(&self) -> bool {
        matches!(self.outcome, Outcome::Verified { .. })
    }
    /// The failure, if the check failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed { reason } => Some(reason),
            Outcome::Verified { .. } => None,
        }
    }
}

/// Who signed, as far as the trust material establishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Signer {
    /// A configured ECDSA public key.
    Key {
        /// `P-256`, `P-384` or `P-521`.
        curve: &'static str,
        /// sha256 of the key's DER SubjectPublicKeyInfo, lowercase hex.
        spki_sha256: String,
    },
    /// An X.509 leaf certificate that chains to a configured anchor.
    Certificate {
        /// The leaf's subject, RFC 4514 style.
        subject: String,
        /// The subject of the configured anchor the chain ended at.
        anchor: String,
    },
    /// A Sigstore keyless signature (Fulcio certificate, transparency log).
    Sigstore {
        /// The certificate's identity (SAN email or URI).
        identity: String,
        /// The OIDC issuer recorded in the certificate.
        issuer: String,
    },
    /// A Sigstore bundle signed with a managed key.
    SigstoreKey {
        /// sha256 of the key's DER SubjectPublicKeyInfo, lowercase hex.
        spki_sha256: String,
    },
    /// An OpenPGP key from the configured keyring.
    Pgp {
        /// Fingerprint of the primary key, uppercase hex.
        fingerprint: String,
        /// Fingerprint of the (sub)key that made the signature, uppercase hex.
        signing_key: String,
        /// The key's user ids (as bound by self-signatures).
        user_ids: Vec<String>,
        /// Signature creation time, seconds since the Unix epoch.
        signed_at: u64,
    },
}

/// A file the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoveredFile {
    /// Model-relative POSIX path (`"."` for a single-file model).
    pub path: String,
    /// The digests that were recomputed and matched (one per file, or one per shard).
    pub digests: Vec<FileDigest>,
}

/// One recomputed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// The algorithm as the signature names it (`sha256`, `blake2b`, `blake3`,
    /// `sha256-sharded-64`, ...).
    pub algorithm: String,
    /// Byte range for a shard, `None` for the whole file.
    pub range: Option<(u64, u64)>,
    /// Lowercase hex.
    pub hex: String,
}

/// Why a signature check failed. Each variant carries what an operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// The signature file is not a well-formed bundle / envelope / OpenPGP signature.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which layer (`bundle`, `envelope`, `statement`, `signature`, ...).
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The bundle is well-formed but of a kind this method does not accept.
    #[error("unsupported {what}: {found}")]
    Unsupported {
        /// Which field.
        what: &'static str,
        /// Its value.
        found: String,
    },
    /// A legacy format that the policy does not accept.
    #[error(
        "legacy model signing format ({found}) refused by policy (LegacyFormat::Accept allows it)"
    )]
    LegacyRefused {
        /// The predicate type or PAE form found.
        found: String,
    },
    /// The bundle names a key (`publicKey.hint`) other than the configured one.
    #[error("signature names key {hint}, but the policy trusts {trusted:?}")]
    KeyHintMismatch {
        /// The hint in the bundle.
        hint: String,
        /// The hints of the configured keys.
        trusted: Vec<String>,
    },
    /// The cryptographic signature does not verify with any trusted key.
    #[error("signature does not verify with the trusted key(s)")]
    BadSignature,
    /// The certificate chain does not lead to a configured anchor, or a certificate in it is
    /// unusable.
    #[error("certificate not trusted: {detail}")]
    UntrustedCertificate {
        /// What broke the chain.
        detail: String,
    },
    /// A certificate in the chain is outside its validity window at the chosen time.
    #[error(
        "certificate {subject} not valid at {at} (valid {not_before}..{not_after}, Unix seconds)"
    )]
    CertificateExpired {
        /// The certificate's subject.
        subject: String,
        /// The time it was checked at.
        at: u64,
        /// notBefore.
        not_before: u64,
        /// notAfter.
        not_after: u64,
    },
    /// The leaf has neither KeyUsage digitalSignature nor ExtendedKeyUsage codeSigning.
    #[error("leaf certificate {subject} is not for signing (needs KU digitalSignature or EKU codeSigning)")]
    CertificateUsage {
        /// The leaf's subject.
        subject: String,
    },
    /// The Sigstore verifier rejected the bundle (log proof, checkpoint, SET, timestamp, chain).
    #[error("sigstore verification failed: {detail}")]
    Sigstore {
        /// The verifier's message.
        detail: String,
    },
    /// Signed by someone other than the policy requires.
    #[error("signed by {found_identity} (issuer {found_issuer}), policy requires identity {required_identity} (issuer {required_issuer})")]
    WrongSigner {
        /// Identity in the certificate.
        found_identity: String,
        /// Issuer in the certificate.
        found_issuer: String,
        /// Identity the policy requires.
        required_identity: String,
        /// Issuer the policy requires.
        required_issuer: String,
    },
    /// The in-toto statement is not a model signing statement of a supported shape.
    #[error("statement rejected: {detail}")]
    Statement {
        /// What is wrong with it.
        detail: String,
    },
    /// The subject digest is not the sha256 over the resources' digests in listed order.
    #[error(
        "subject digest does not match the resources (expected {expected}, computed {computed})"
    )]
    RootDigestMismatch {
        /// The subject's sha256.
        expected: String,
        /// sha256 over the listed raw digests.
        computed: String,
    },
    /// A resource name is not a safe model-relative path.
    #[error("resource name {name:?} is not a safe model-relative path (\".\" names a single-file model only)")]
    UnsafeResourceName {
        /// The name.
        name: String,
    },
    /// A resource is listed twice.
    #[error("resource {name:?} listed more than once")]
    DuplicateResource {
        /// The name.
        name: String,
    },
    /// A recomputed digest differs from the signed one.
    #[error("{path}: {algorithm} digest differs from the signed one")]
    DigestMismatch {
        /// The file.
        path: String,
        /// The algorithm.
        algorithm: String,
    },
    /// A signed file is absent.
    #[error("{path}: signed but missing")]
    MissingFile {
        /// The file.
        path: String,
    },
    /// A file is present that the signature does not cover and nothing ignores.
    #[error("{path}: present but not signed")]
    UnsignedFile {
        /// The file.
        path: String,
    },
    /// A symlink or special file in the model.
    #[error("{path}: not a regular file (symlinks and special files are refused)")]
    NotRegularFile {
        /// The file.
        path: String,
    },
    /// Shards of a file do not tile it exactly.
    #[error("{path}: shards do not cover the file exactly ({detail})")]
    ShardCoverage {
        /// The file.
        path: String,
        /// Where the gap or overlap is.
        detail: String,
    },
    /// The OpenPGP key has expired under the chosen rule.
    #[error("OpenPGP key {fingerprint} expired at {expired_at} (Unix seconds)")]
    KeyExpired {
        /// The key's fingerprint.
        fingerprint: String,
        /// When it expired.
        expired_at: u64,
    },
    /// The OpenPGP key is revoked.
    #[error("OpenPGP key {fingerprint} is revoked")]
    KeyRevoked {
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// No key in the keyring issued this signature.
    #[error("no trusted key made this signature (issuer {issuer})")]
    UnknownSigner {
        /// The issuer key id / fingerprint named by the signature.
        issuer: String,
    },
    /// The signature is dated outside the range the policy accepts.
    #[error("signature time {signed_at} is not acceptable: {detail}")]
    SignatureTime {
        /// Signature creation time, Unix seconds.
        signed_at: u64,
        /// Why.
        detail: String,
    },
}
