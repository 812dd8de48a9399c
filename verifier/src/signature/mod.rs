//! Signature verification: OpenSSF model signing (`model.sig`), Sigstore bundles in general, and
//! OpenPGP detached signatures.
//!
//! Everything here is pure: the caller hands in bytes, a description of the file set
//! ([`ModelFiles`]) and the trust material, plus the time to judge expiry by. Nothing reads the
//! network, and nothing here reads the clock, with one exception documented on
//! [`verify_sigstore_bundle`] (the Sigstore library refuses log entries "from the future" by the
//! wall clock).
//!
//! A signature that does not verify is a [`SignatureReport`] whose outcome is
//! [`Outcome::Failed`] with a typed [`Failure`]; only an I/O problem (a file that cannot be
//! read, a trust file that cannot be parsed) is a [`crate::VerifyError`].
//!
//! Strictness, where the reference tool (model_signing 1.1.1) is lax: a resource name that
//! escapes the model directory, a duplicate resource, a symlink, or a file that is neither
//! signed nor ignored fails; the signature is checked over the raw payload bytes, never a
//! re-serialisation; the certificate chain is validated at an explicit time.
//!
//! Where the reference vectors say "policy", the caller chooses; the default comes first:
//! - [`CertificateTime`]: `Now` (an expired leaf fails) | `LeafNotBefore` (model_signing).
//! - [`AnchorRule`]: `SelfSignedRoots` (a configured intermediate alone trusts nothing) |
//!   `AnyConfigured` (partial chains).
//! - [`UnsignedFiles`]: `Refuse` | `Exclude` (verified, extras listed as `unsigned`, not served).
//! - [`SignerIgnorePaths`]: `Honour` (signer's recorded `ignore_paths` apply; matches listed as
//!   `ignored`, not served) | `Disregard`. `TrustPolicy::extra_ignore_paths` defaults to the git
//!   paths ([`DEFAULT_IGNORE_PATHS`]) for signatures older than v1.1.0, which record none.
//! - [`LegacyFormat`]: `Refuse` | `Accept` (model_signing v0.2: `Digests/v0.1`, buggy PAE).
//! - [`ExpiredKeys`] (OpenPGP): `Refuse` | `AcceptIfValidWhenSigned` (sqv's rule).
//! - [`RevokedKeys`] (OpenPGP): `Refuse` | `Accept`.

mod bundle;
mod cert;
mod dsse;
mod files;
mod key;
mod keyless;
mod oms;
mod pgp;
mod report;

pub use cert::TrustAnchor;
pub use files::ModelFiles;
pub use key::PublicKey;
pub use keyless::{verify_sigstore_bundle, SigstoreArtifact, SigstorePolicy, SigstoreSigner};
pub use oms::{
    verify_model_signature, AnchorRule, CertificateTime, LegacyFormat, SignerIgnorePaths,
    TrustMethod, TrustPolicy, UnsignedFiles, DEFAULT_IGNORE_PATHS,
};
pub use pgp::{
    verify_pgp_detached, verify_pgp_manifest, ExpiredKeys, PgpKeyring, PgpOptions, RevokedKeys,
};
pub use report::{CoveredFile, Failure, FileDigest, Outcome, SignatureReport, Signer};
