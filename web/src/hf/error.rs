//! The one place where engine outcomes become Hugging Face error responses: status, `X-Error-Code`,
//! `X-Error-Message` and the JSON `{"error": …}` body that `huggingface_hub` reads. Codes follow the
//! protocol note: refusals are `404 RepoNotFound` with the reason (the form whose message reaches
//! the user), a refused revision is `RevisionNotFound` (which also defeats client-side cache
//! fallback), missing files are `EntryNotFound` with `X-Repo-Commit`.

use crate::body::BodyError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use mirror::{MirrorError, Refusal, Revision};
use std::fmt;

/// An HF-protocol error answer.
#[derive(Debug)]
pub enum HfError {
    /// Airlock refuses.
    Refused(Refusal),
    /// Upstream has no such repo.
    RepoNotFound(String),
    /// No such revision.
    RevisionNotFound(String),
    /// No such file or folder at this commit.
    EntryNotFound {
        /// The commit looked in (sent as `X-Repo-Commit`, so clients record the miss).
        commit: Revision,
        /// What was missing.
        what: String,
    },
    /// The request itself is malformed (bad names, bad range syntax).
    BadRequest(String),
    /// A route that Airlock does not serve.
    NoRoute(String),
    /// The file is still being fetched and checked: retry later.
    Pending {
        /// Seconds.
        retry_after: u64,
        /// Whether the request was a HEAD (503, which the client's HEAD retries) or a GET (429,
        /// the only busy status the client's GET path retries).
        head: bool,
    },
    /// A `Range` that starts past the end.
    RangeNotSatisfiable {
        /// The file size.
        size: u64,
    },
    /// The request body was too large, too slow, or could not be held now.
    Body(crate::body::BodyError),
    /// `[policy] require_client_token`: no token, or one no client entry knows.
    Unauthorized(crate::client::Unauthorized),
    /// The engine failed.
    Mirror(MirrorError),
}

impl From<MirrorError> for HfError {
    fn from(e: MirrorError) -> Self {
        HfError::Mirror(e)
    }
}

impl From<mirror::NameError> for HfError {
    fn from(e: mirror::NameError) -> Self {
        HfError::BadRequest(format!("airlock: {e}"))
    }
}

impl fmt::Display for HfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts().2)
    }
}

impl HfError {
    /// Status, error code and client-facing message.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            // Revocations and unapproved revisions must be RevisionNotFound: the one code clients
            // do not paper over with a cached copy (protocol note, trap T7).
            HfError::Refused(r) if r.is_about_revision() => {
                (StatusCode::NOT_FOUND, "RevisionNotFound", r.to_string())
            }
            HfError::Refused(r) => (StatusCode::NOT_FOUND, "RepoNotFound", r.to_string()),
            HfError::RepoNotFound(m) => (
                StatusCode::NOT_FOUND,
                "RepoNotFound",
                upstream_said("Repository not found", m),
            ),
            HfError::RevisionNotFound(m) => (
                StatusCode::NOT_FOUND,
                "RevisionNotFound",
                upstream_said("Invalid rev id", m),
            ),
            HfError::EntryNotFound { what, .. } => (
                StatusCode::NOT_FOUND,
                "EntryNotFound",
                format!("{what} does not exist at this revision"),
            ),
            HfError::BadRequest(m) => (StatusCode::BAD_REQUEST, "BadRequest", m.clone()),
            HfError::NoRoute(p) => (
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("airlock does not serve {p}"),
            ),
            HfError::Pending { retry_after, head } => (
                if *head {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                },
                "Pending",
                format!("airlock: fetching and verifying; retry in {retry_after}s"),
            ),
            HfError::RangeNotSatisfiable { size } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RangeNotSatisfiable",
                format!("range outside the file's {size} bytes"),
            ),
            HfError::Body(e) => (
                match e {
                    BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
                    BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    BodyError::Broken => StatusCode::BAD_REQUEST,
                },
                match e {
                    BodyError::TooLarge { .. } => "PayloadTooLarge",
                    BodyError::TimedOut => "RequestTimeout",
                    BodyError::Busy => "Busy",
                    BodyError::Broken => "BadRequest",
                },
                format!("airlock: {e}"),
            ),
            // huggingface_hub (`hf_raise_for_status`) appends X-Error-Message to whatever it
            // raises: over http a plain 401 error, over https a RepositoryNotFoundError ("make
            // sure you are authenticated"). The header, not the body, is what a HEAD (every
            // hf_hub_download starts with one) can show, so the reason goes there. (The Hub's own
            // "Invalid credentials in Authorization header" would avoid the RepositoryNotFound
            // wording but hide our reason on HEADs.)
            HfError::Unauthorized(why) => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                why.message().to_owned(),
            ),
            HfError::Mirror(e) if e.is_internal() => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!(
                    "airlock: internal error {}: {}",
                    e.code(),
                    e.public_reason()
                ),
            ),
            HfError::Mirror(e) => Self::public_mirror(e.root()),
        }
    }

    /// Upstream trouble and a full disk: their text is meant for the client.
    fn public_mirror(e: &MirrorError) -> (StatusCode, &'static str, String) {
        match e {
            MirrorError::Upstream(m) => (
                StatusCode::BAD_GATEWAY,
                "UpstreamError",
                format!("airlock: upstream error: {m}"),
            ),
            MirrorError::UpstreamBusy { retry_after_secs } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UpstreamBusy",
                format!("airlock: upstream busy; retry in {retry_after_secs}s"),
            ),
            MirrorError::InsufficientStorage { .. } => (
                StatusCode::INSUFFICIENT_STORAGE,
                "InsufficientStorage",
                "airlock: insufficient storage: the mirror's disk is full; ask its operators to free space (the file was not fetched)".into(),
            ),
            e => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("airlock: internal error {}: {}", e.code(), e.public_reason()),
            ),
        }
    }
}

fn upstream_said(default: &str, m: &str) -> String {
    if m.is_empty() {
        format!("airlock: {default}")
    } else {
        format!("airlock: upstream says: {m}")
    }
}

/// Header values must be visible ASCII; messages can carry names from clients or upstream.
fn header_safe(s: &str) -> String {
    s.chars()
        .take(1000)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl ResponseError for HfError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, mut message) = self.parts();
        match self {
            // The detail is logged here, once, under a reference the client is given.
            HfError::Mirror(e) if e.is_internal() => message = crate::internal::report(e, "hf"),
            HfError::Mirror(e) if status.is_server_error() => {
                tracing::warn!(error = %e, "request failed")
            }
            _ => tracing::debug!(%code, %message, "refused"),
        }
        let mut resp = HttpResponse::build(status);
        resp.insert_header(("X-Error-Code", code))
            .insert_header(("X-Error-Message", header_safe(&message)));
        if let HfError::Unauthorized(_) = self {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"airlock\""));
        }
        match self {
            HfError::Refused(r) => {
                resp.extensions_mut()
                    .insert(crate::request::RefusalClass(r.class()));
            }
            HfError::Unauthorized(_) => {
                resp.extensions_mut()
                    .insert(crate::request::RefusalClass("client_token"));
            }
            _ => {}
        }
        match self {
            HfError::EntryNotFound { commit, .. } => {
                resp.insert_header(("X-Repo-Commit", commit.hex()));
            }
            HfError::Pending { retry_after, .. } => {
                resp.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            HfError::Mirror(e) => {
                if let MirrorError::UpstreamBusy { retry_after_secs } = e.root() {
                    resp.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                }
            }
            HfError::RangeNotSatisfiable { size } => {
                resp.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            // The rest of the body is not wanted: close instead of draining it, which frees the
            // connection's buffers now rather than whenever the client finishes sending.
            HfError::Body(_) => {
                resp.force_close();
            }
            _ => {}
        }
        resp.json(serde_json::json!({ "error": message }))
    }
}
