//! The one place where engine outcomes become OCI-distribution error responses:
//! `{"errors":[{"code","message"}]}` with the status each code is registered with. Refusals are
//! `403 DENIED` (ollama shows any non-404 body to the user; a 404 loses the text and a 401 starts
//! its token flow). Internal detail is logged here and never sent.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use mirror::{MirrorError, Refusal};
use std::fmt;

/// An OCI-protocol error answer.
#[derive(Debug)]
pub enum OciError {
    /// Airlock refuses the name or its bytes.
    Denied(Refusal),
    /// No such manifest (upstream says so).
    ManifestUnknown(String),
    /// No such blob under this name.
    BlobUnknown(String),
    /// Malformed name.
    NameInvalid(String),
    /// Malformed digest.
    DigestInvalid(String),
    /// Push, delete and other operations a read-only mirror does not do.
    Unsupported,
    /// A path that is not part of the API.
    NotFound,
    /// A `Range` outside the blob.
    RangeNotSatisfiable {
        /// The blob size.
        size: u64,
    },
    /// `[policy] require_client_token`: no credentials, or unknown ones.
    Unauthorized {
        /// Which.
        why: crate::client::Unauthorized,
        /// The token endpoint the challenge names (empty: answer with a basic challenge, as the
        /// token endpoint itself does).
        realm: String,
    },
    /// The engine failed.
    Mirror(MirrorError),
}

impl From<MirrorError> for OciError {
    fn from(e: MirrorError) -> Self {
        OciError::Mirror(e)
    }
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, code, msg) = self.parts();
        write!(f, "{code}: {msg}")
    }
}

impl OciError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            OciError::Denied(r) => (StatusCode::FORBIDDEN, "DENIED", r.to_string()),
            OciError::ManifestUnknown(m) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", m.clone()),
            OciError::BlobUnknown(m) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN", m.clone()),
            OciError::NameInvalid(m) => (StatusCode::BAD_REQUEST, "NAME_INVALID", m.clone()),
            OciError::DigestInvalid(m) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID", m.clone()),
            OciError::Unsupported => (
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "airlock is a read-only mirror".into(),
            ),
            OciError::NotFound => (
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such registry route".into(),
            ),
            OciError::RangeNotSatisfiable { size } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                format!("range outside the blob's {size} bytes"),
            ),
            OciError::Unauthorized { why, .. } => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                why.message().to_owned(),
            ),
            OciError::Mirror(e) if e.is_internal() => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                format!(
                    "airlock: internal error {}: {}",
                    e.code(),
                    e.public_reason()
                ),
            ),
            OciError::Mirror(e) => Self::public_mirror(e.root()),
        }
    }

    /// Upstream trouble and a full disk: their text is meant for the client.
    fn public_mirror(e: &MirrorError) -> (StatusCode, &'static str, String) {
        match e {
            MirrorError::Upstream(m) => (
                StatusCode::BAD_GATEWAY,
                "UNAVAILABLE",
                format!("airlock: upstream error: {m}"),
            ),
            MirrorError::UpstreamBusy { retry_after_secs } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                format!("airlock: upstream busy; retry in {retry_after_secs}s"),
            ),
            MirrorError::InsufficientStorage { .. } => (
                StatusCode::INSUFFICIENT_STORAGE,
                "UNAVAILABLE",
                "airlock: insufficient storage: the mirror's disk is full; ask its operators to free space (the blob was not fetched)".into(),
            ),
            e => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                format!("airlock: internal error {}: {}", e.code(), e.public_reason()),
            ),
        }
    }
}

impl ResponseError for OciError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, mut message) = self.parts();
        match self {
            // The detail is logged here, once, under a reference the client is given.
            OciError::Mirror(e) if e.is_internal() => message = crate::internal::report(e, "oci"),
            OciError::Mirror(e) if status.is_server_error() => {
                tracing::warn!(error = %e, "registry request failed")
            }
            _ => tracing::debug!(%code, %message, "registry request refused"),
        }
        let mut resp = HttpResponse::build(status);
        match self {
            OciError::Mirror(e) => {
                if let MirrorError::UpstreamBusy { retry_after_secs } = e.root() {
                    resp.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                }
            }
            OciError::RangeNotSatisfiable { size } => {
                resp.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            // The challenge makes oras, docker and ollama run the token flow against our own
            // `/v2/token` with the credentials they were given.
            OciError::Unauthorized { realm, .. } => {
                let challenge = if realm.is_empty() {
                    "Basic realm=\"airlock\"".to_owned()
                } else {
                    format!("Bearer realm=\"{realm}\",service=\"airlock\"")
                };
                resp.insert_header((header::WWW_AUTHENTICATE, challenge));
                resp.extensions_mut()
                    .insert(crate::request::RefusalClass("client_token"));
            }
            OciError::Denied(r) => {
                resp.extensions_mut()
                    .insert(crate::request::RefusalClass(r.class()));
            }
            _ => {}
        }
        resp.json(serde_json::json!({ "errors": [{ "code": code, "message": message }] }))
    }
}
