//! X.509 chains for the certificate method: the bundle's leaf (plus untrusted intermediates)
//! must chain to a configured anchor, every certificate on the path must be valid at the time
//! the policy chooses, issuers must be CAs, and the leaf must be for signing (KeyUsage
//! digitalSignature or ExtendedKeyUsage codeSigning).
//!
//! Signatures are checked over the TBS bytes exactly as they appear in the certificate, not a
//! re-encoding of the parsed structure.

use super::key::{Hash, PublicKey};
use super::oms::{AnchorRule, CertificateTime};
use super::report::Failure;
use crate::VerifyError;
use x509_cert::der::{Decode as _, Encode as _, Header, Reader as _, SliceReader};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::spki::ObjectIdentifier;
use x509_cert::Certificate;

/// Longer chains are not something a code-signing PKI issues; the bound also caps the work.
const MAX_CHAIN: usize = 10;
/// Bound on a PEM anchor file.
const MAX_PEM_BYTES: usize = 4 << 20;

const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// A configured X.509 trust anchor.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    parsed: Parsed,
}

#[derive(Debug, Clone)]
struct Parsed {
    der: Vec<u8>,
    cert: Certificate,
    key: PublicKey,
    subject: String,
}

impl Parsed {
    fn from_der(der: Vec<u8>) -> Result<Self, String> {
        let cert = Certificate::from_der(&der).map_err(|e| e.to_string())?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        let key = PublicKey::from_spki_der(&spki)?;
        let subject = cert.tbs_certificate.subject.to_string();
        Ok(Parsed {
            der,
            cert,
            key,
            subject,
        })
    }

    fn validity(&self) -> (u64, u64) {
        let v = &self.cert.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    fn check_time(&self, at: u64) -> Result<(), Failure> {
        let (not_before, not_after) = self.validity();
        if at < not_before || at > not_after {
            return Err(Failure::CertificateExpired {
                subject: self.subject.clone(),
                at,
                not_before,
                not_after,
            });
        }
        Ok(())
    }

    fn issuer_is(&self, issuer: &Parsed) -> bool {
        self.cert.tbs_certificate.issuer == issuer.cert.tbs_certificate.subject
    }

    /// Whether `issuer`'s key made this certificate's signature.
    fn signed_by(&self, issuer: &PublicKey) -> bool {
        let hash = match self.cert.signature_algorithm.oid {
            o if o == ECDSA_SHA256 || o == RSA_SHA256 => Hash::Sha256,
            o if o == ECDSA_SHA384 || o == RSA_SHA384 => Hash::Sha384,
            o if o == ECDSA_SHA512 || o == RSA_SHA512 => Hash::Sha512,
            _ => return false,
        };
        let is_ecdsa_alg =
            [ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512].contains(&self.cert.signature_algorithm.oid);
        if is_ecdsa_alg != issuer.is_ecdsa() {
            return false;
        }
        let Some(signature) = self.cert.signature.as_bytes() else {
            return false;
        };
        match tbs_bytes(&self.der) {
            Some(tbs) => issuer.verify(hash, tbs, signature),
            None => false,
        }
    }

    fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.cert
            .tbs_certificate
            .get::<BasicConstraints>()
            .ok()
            .flatten()
            .map(|(_, bc)| bc)
    }

    /// May issue certificates: BasicConstraints cA, and KeyUsage keyCertSign if KU is present.
    fn is_ca(&self) -> bool {
        let ca = self.basic_constraints().is_some_and(|bc| bc.ca);
        let ku_ok = match self.cert.tbs_certificate.get::<KeyUsage>() {
            Ok(Some((_, ku))) => ku.0.contains(KeyUsages::KeyCertSign),
            Ok(None) => true,
            Err(_) => false,
        };
        ca && ku_ok
    }

    fn self_signed(&self) -> bool {
        self.issuer_is(self) && self.signed_by(&self.key)
    }
}

/// The raw TBSCertificate TLV inside a DER certificate.
fn tbs_bytes(der: &[u8]) -> Option<&[u8]> {
    let mut reader = SliceReader::new(der).ok()?;
    Header::decode(&mut reader).ok()?;
    reader.tlv_bytes().ok()
}

impl TrustAnchor {
    /// Every `CERTIFICATE` block in a PEM file.
    pub fn from_pem_bundle(pem: &[u8]) -> Result<Vec<TrustAnchor>, VerifyError> {
        let bad = |detail: String| VerifyError::TrustMaterial {
            what: "certificate PEM",
            detail,
        };
        if pem.len() > MAX_PEM_BYTES {
            return Err(VerifyError::TooLarge {
                what: "certificate PEM",
                limit: MAX_PEM_BYTES as u64,
            });
        }
        let text = std::str::from_utf8(pem).map_err(|e| bad(e.to_string()))?;
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let mut anchors = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let Some(end) = rest[start..].find(END) else {
                return Err(bad("unterminated CERTIFICATE block".into()));
            };
            let block = &rest[start..start + end + END.len()];
            let (_, der) = x509_cert::der::pem::decode_vec(block.as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            anchors.push(TrustAnchor {
                parsed: Parsed::from_der(der).map_err(bad)?,
            });
            rest = &rest[start + end + END.len()..];
        }
        if anchors.is_empty() {
            return Err(bad("no CERTIFICATE block".into()));
        }
        Ok(anchors)
    }

    /// The anchor's subject.
    pub fn subject(&self) -> &str {
        &self.parsed.subject
    }
}

/// A chain that verified: the leaf's key (to check the signature with) and names for the
/// report.
pub(crate) struct ChainOk {
    pub leaf_key: PublicKey,
    pub leaf_subject: String,
    pub anchor_subject: String,
}

fn untrusted(detail: impl ToString) -> Failure {
    Failure::UntrustedCertificate {
        detail: detail.to_string(),
    }
}

/// Verifies `chain` (leaf first, then untrusted intermediates, DER) against `anchors`.
pub(crate) fn verify_chain(
    chain: &[Vec<u8>],
    anchors: &[TrustAnchor],
    rule: AnchorRule,
    time: CertificateTime,
    now: u64,
) -> Result<ChainOk, Failure> {
    if chain.is_empty() {
        return Err(untrusted("the bundle carries no certificate"));
    }
    if chain.len() > MAX_CHAIN {
        return Err(untrusted("certificate chain too long"));
    }
    let mut certs = Vec::with_capacity(chain.len());
    for der in chain {
        certs.push(
            Parsed::from_der(der.clone()).map_err(|e| Failure::Malformed {
                what: "certificate",
                detail: e,
            })?,
        );
    }
    // Non-empty: checked above, and `certs` has one entry per element of `chain`.
    let leaf = &certs[0];
    let at = match time {
        CertificateTime::Now => now,
        CertificateTime::LeafNotBefore => leaf.validity().0,
    };
    // A leaf with BasicConstraints cA=TRUE is not refused: model-transparency's own release
    // test PKI signs with one (its usage says digitalSignature + codeSigning), and X.509 does
    // not forbid a CA key from signing data. What the leaf may do is decided by KU/EKU below.
    let digital_signature = matches!(
        leaf.cert.tbs_certificate.get::<KeyUsage>(),
        Ok(Some((_, ku))) if ku.digital_signature()
    );
    let code_signing = matches!(
        leaf.cert.tbs_certificate.get::<ExtendedKeyUsage>(),
        Ok(Some((_, eku))) if eku.0.contains(&CODE_SIGNING)
    );
    if !digital_signature && !code_signing {
        return Err(Failure::CertificateUsage {
            subject: leaf.subject.clone(),
        });
    }
    let usable: Vec<&Parsed> = anchors
        .iter()
        .map(|a| &a.parsed)
        .filter(|a| rule == AnchorRule::AnyConfigured || a.self_signed())
        .collect();
    if usable.is_empty() {
        return Err(untrusted(
            "no configured certificate is a usable anchor (by default only self-signed roots are; partial chains need AnchorRule::AnyConfigured)",
        ));
    }

    let mut used = vec![false; certs.len()];
    used[0] = true;
    let mut current = 0usize;
    // Number of intermediate CAs between the leaf and `current`, for pathLenConstraint.
    let mut below = 0u64;
    loop {
        let cert = &certs[current];
        cert.check_time(at)?;
        for anchor in &usable {
            if cert.issuer_is(anchor) && cert.signed_by(&anchor.key) {
                if !anchor.is_ca() {
                    return Err(untrusted(format!("anchor {} is not a CA", anchor.subject)));
                }
                anchor.check_time(at)?;
                return Ok(ChainOk {
                    leaf_key: leaf.key.clone(),
                    leaf_subject: leaf.subject.clone(),
                    anchor_subject: anchor.subject.clone(),
                });
            }
            // The bundle may carry the anchor itself (a root in the chain): reaching it is
            // the same as reaching the configured copy.
            if cert.der == anchor.der && current != 0 {
                return Ok(ChainOk {
                    leaf_key: leaf.key.clone(),
                    leaf_subject: leaf.subject.clone(),
                    anchor_subject: anchor.subject.clone(),
                });
            }
        }
        let next = (0..certs.len())
            .find(|&j| !used[j] && cert.issuer_is(&certs[j]) && cert.signed_by(&certs[j].key));
        let Some(next) = next else {
            return Err(untrusted(format!(
                "no path from {} to a configured anchor",
                cert.subject
            )));
        };
        let issuer = &certs[next];
        if !issuer.is_ca() {
            return Err(untrusted(format!("{} is not a CA", issuer.subject)));
        }
        if let Some(limit) = issuer
            .basic_constraints()
            .and_then(|bc| bc.path_len_constraint)
        {
            if below > u64::from(limit) {
                return Err(untrusted(format!(
                    "{} path length constraint exceeded",
                    issuer.subject
                )));
            }
        }
        used[next] = true;
        current = next;
        below += 1;
    }
}
