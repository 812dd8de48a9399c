//! Signature requirements: `[[trust]]` rules compiled into the verifier's trust policies. A repo
//! a rule matches is served only after its signature verified over the whole revision, and then
//! only the files the signature covers.

use std::path::Path;
use std::sync::Arc;

use verifier::{
    PgpKeyring, PgpOptions, PublicKey, SigstorePolicy, SigstoreSigner, TrustMethod, TrustPolicy,
};

use crate::config::TrustRule;
use crate::error::MirrorError;
use crate::names::{HfRepo, RepoKind};

/// What a matching rule requires.
#[derive(Debug, Clone)]
pub enum Requirement {
    /// OpenSSF model signing: `signature` verified with `policy`.
    ModelSigning {
        /// The trust policy.
        policy: TrustPolicy,
    },
    /// A detached OpenPGP signature (`signature`) over a `sha256sum` list (`manifest`).
    Pgp {
        /// Trusted keys.
        keyring: PgpKeyring,
        /// Strictness.
        options: PgpOptions,
        /// The list file in the repo.
        manifest: String,
    },
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    kind: RepoKind,
    org: Option<String>,
    name: Option<String>,
    /// The signature file in the repo.
    pub signature: String,
    /// `None` for `require = "none"`.
    pub requirement: Option<Requirement>,
    /// The pattern, for messages.
    pub pattern: String,
}

/// All rules, first match wins.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    rules: Vec<Arc<Rule>>,
}

fn read(path: &Path) -> Result<Vec<u8>, MirrorError> {
    std::fs::read(path).map_err(MirrorError::io(path))
}

impl Trust {
    /// Compiles the `[[trust]]` rules, reading their key and root files.
    pub fn new(rules: &[TrustRule]) -> Result<Trust, MirrorError> {
        let mut out = Vec::new();
        for r in rules {
            let bad = |why: String| {
                MirrorError::Config(format!("[[trust]] match = {:?}: {why}", r.pattern))
            };
            let (kind, rest) = match r.pattern.strip_prefix("datasets/") {
                Some(rest) => (RepoKind::Dataset, rest),
                None => (RepoKind::Model, r.pattern.as_str()),
            };
            let (org, name) = match rest.split_once('/') {
                _ if rest == "*" => (None, None),
                Some((org, "*")) => (Some(org.to_ascii_lowercase()), None),
                Some((org, name)) => (
                    Some(org.to_ascii_lowercase()),
                    Some(name.to_ascii_lowercase()),
                ),
                None => (Some(rest.to_ascii_lowercase()), Some(String::new())),
            };
            let verr = |e: verifier::VerifyError| bad(e.to_string());
            let (requirement, default_sig) = match r.require.as_str() {
                "none" => (None, "model.sig"),
                "model-signing" => {
                    let method = if !r.keys.is_empty() {
                        let mut keys = Vec::new();
                        for k in &r.keys {
                            keys.push(PublicKey::from_pem(&read(k)?).map_err(verr)?);
                        }
                        TrustMethod::Key { keys }
                    } else if !r.cert_roots.is_empty() {
                        let mut pem = Vec::new();
                        for k in &r.cert_roots {
                            pem.extend(read(k)?);
                            pem.push(b'\n');
                        }
                        TrustPolicy::certificate_pem(&pem).map_err(verr)?.method
                    } else if let (Some(identity), Some(issuer), Some(root)) =
                        (&r.identity, &r.issuer, &r.trusted_root)
                    {
                        let signer = SigstoreSigner::Identity {
                            identity: identity.clone(),
                            issuer: issuer.clone(),
                        };
                        TrustMethod::Sigstore(Box::new(
                            SigstorePolicy::new(&read(root)?, signer).map_err(verr)?,
                        ))
                    } else {
                        return Err(bad("model-signing needs keys, cert_roots, or identity + issuer + trusted_root".into()));
                    };
                    (
                        Some(Requirement::ModelSigning {
                            policy: TrustPolicy::new(method),
                        }),
                        "model.sig",
                    )
                }
                "pgp" => {
                    if r.pgp_keys.is_empty() {
                        return Err(bad("pgp needs pgp_keys".into()));
                    }
                    let mut keyring = PgpKeyring::new();
                    for k in &r.pgp_keys {
                        keyring.add(&read(k)?).map_err(verr)?;
                    }
                    let manifest = r.manifest.clone().unwrap_or_else(|| "SHA256SUMS".into());
                    (
                        Some(Requirement::Pgp {
                            keyring,
                            options: PgpOptions::default(),
                            manifest,
                        }),
                        "SHA256SUMS.asc",
                    )
                }
                other => {
                    return Err(bad(format!(
                        "require must be model-signing, pgp or none, not {other:?}"
                    )))
                }
            };
            out.push(Arc::new(Rule {
                kind,
                org,
                name,
                signature: r.signature.clone().unwrap_or_else(|| default_sig.into()),
                requirement,
                pattern: r.pattern.clone(),
            }));
        }
        Ok(Trust { rules: out })
    }

    /// The rule for `repo`, if one matches and it requires a signature.
    pub fn rule_for(&self, repo: &HfRepo) -> Option<Arc<Rule>> {
        let id = repo.id.as_str().to_ascii_lowercase();
        let (org, name) = id.split_once('/').unwrap_or((id.as_str(), ""));
        let hit = self.rules.iter().find(|r| {
            r.kind == repo.kind
                && r.org.as_ref().is_none_or(|o| o == org)
                && r.name.as_ref().is_none_or(|n| n == name)
        })?;
        hit.requirement.is_some().then(|| hit.clone())
    }
}
