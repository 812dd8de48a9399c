//! Lenient reading of the Sigstore bundle that carries a model signature (`model.sig`).
//!
//! Own structs rather than a strict proto-JSON reader, because real signers produced shapes a
//! strict reader rejects: `"keyid": null`, `publicKey.rawBytes` + `keyDetails` instead of
//! `hint`, a missing `tlogEntries`. Unknown fields are ignored; a duplicated field is an error
//! (serde's derive refuses it), so no two readers can see different values.

use base64::Engine as _;
use serde::Deserialize;

/// Media type the key and certificate methods accept (model_signing writes only this one).
pub(crate) const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE payload type of an in-toto statement.
pub(crate) const IN_TOTO: &str = "application/vnd.in-toto+json";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Bundle {
    pub media_type: String,
    #[serde(default)]
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerificationMaterial {
    pub public_key: Option<PublicKeyRef>,
    pub x509_certificate_chain: Option<CertificateChain>,
    pub certificate: Option<CertificateRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PublicKeyRef {
    pub hint: Option<String>,
    /// Older signers (v0.3.1–v1.0.1): base64 of the PEM public key.
    pub raw_bytes: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CertificateChain {
    #[serde(default)]
    pub certificates: Vec<CertificateRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CertificateRef {
    pub raw_bytes: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope {
    pub payload: String,
    pub payload_type: String,
    #[serde(default)]
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EnvelopeSignature {
    pub sig: String,
}

/// Decodes base64 as Sigstore writes it (standard alphabet), accepting the URL-safe alphabet
/// the DSSE spec also allows.
pub(crate) fn decode_b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_null_keyid_and_raw_bytes() {
        let json = r#"{"mediaType":"m","verificationMaterial":{"publicKey":{"rawBytes":"eA==","keyDetails":"PKIX_ECDSA_P384_SHA_384"}},
            "dsseEnvelope":{"payload":"e30=","payloadType":"t","signatures":[{"sig":"AA==","keyid":null}]}}"#;
        let bundle: Bundle = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        let key = bundle.verification_material.public_key;
        assert_eq!(key.and_then(|k| k.raw_bytes).as_deref(), Some("eA=="));
    }

    #[test]
    fn refuses_duplicate_fields() {
        let json = r#"{"mediaType":"a","mediaType":"b"}"#;
        assert!(serde_json::from_str::<Bundle>(json).is_err());
    }
}
