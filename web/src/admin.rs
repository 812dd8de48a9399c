//! The admin API (`/admin/…`, see `docs/governance.md`): review requests, prepare versions for
//! approval, accept signed approval and revocation records. Enabled only with an admin token;
//! every call must carry it as a bearer token, compared in constant time.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use mirror::governance::GovError;
use mirror::Mirror;
use signing::Source;

/// An admin API error: JSON `{"error": …}` with a status.
#[derive(Debug)]
pub struct AdminError(StatusCode, String);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.0
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.0).json(serde_json::json!({ "error": self.1 }))
    }
}

impl From<GovError> for AdminError {
    fn from(e: GovError) -> Self {
        match e {
            GovError::Rejected(m) => AdminError(StatusCode::BAD_REQUEST, m),
            GovError::NotFound(m) => AdminError(StatusCode::NOT_FOUND, format!("{m} not found")),
            GovError::Mirror(e) => {
                tracing::warn!(error = %e, "admin request failed");
                AdminError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (see server log)".into(),
                )
            }
        }
    }
}

impl From<mirror::MirrorError> for AdminError {
    fn from(e: mirror::MirrorError) -> Self {
        GovError::Mirror(e).into()
    }
}

/// Equal-time comparison, so response timing does not reveal how much of a guessed token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn authorize(req: &HttpRequest, mirror: &Mirror) -> Result<(), AdminError> {
    let Some(token) = mirror.governance().admin_token() else {
        // No token configured: the admin API does not exist.
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "the admin API is disabled (no admin token configured)".into(),
        ));
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token".into(),
        ))
    }
}

/// Registers `/admin/…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/requests", web::get().to(list_requests))
            .route("/requests/{id}", web::get().to(show_request))
            .route("/requests/{id}/deny", web::post().to(deny_request))
            .route("/prepare", web::post().to(prepare))
            .route("/approvals", web::get().to(list_approvals))
            .route("/approvals", web::post().to(add_approval))
            .route("/revocations", web::post().to(add_revocation))
            .route("/reload", web::post().to(reload))
            .route("/fetches", web::get().to(list_fetches))
            .default_service(web::to(|| async {
                AdminError(StatusCode::NOT_FOUND, "no such admin route".into()).error_response()
            })),
    );
}

type M = web::Data<Arc<Mirror>>;

async fn list_requests(req: HttpRequest, m: M) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    Ok(HttpResponse::Ok().json(m.governance().list_requests()?))
}

async fn show_request(
    req: HttpRequest,
    m: M,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    match m.governance().get_request(&id)? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("request {id} not found"),
        )),
    }
}

#[derive(serde::Deserialize)]
struct Deny {
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

async fn deny_request(
    req: HttpRequest,
    m: M,
    id: web::Path<String>,
    body: web::Json<Deny>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    let by = body
        .by
        .clone()
        .unwrap_or_else(|| "the governance team".into());
    Ok(HttpResponse::Ok().json(m.governance().deny_request(&id, &body.reason, &by)?))
}

#[derive(serde::Deserialize)]
struct PrepareAsk {
    source: Source,
    name: String,
    #[serde(default)]
    revision: Option<String>,
}

async fn prepare(
    req: HttpRequest,
    m: M,
    body: web::Json<PrepareAsk>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    let revision = body.revision.clone().unwrap_or_else(|| match body.source {
        Source::Hf => "main".into(),
        Source::Ollama => "latest".into(),
    });
    match m.prepare(body.source, &body.name, &revision, None).await {
        Ok(p) => Ok(HttpResponse::Ok().json(p)),
        Err(e) => Err(AdminError(StatusCode::BAD_GATEWAY, e)),
    }
}

async fn list_approvals(req: HttpRequest, m: M) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    Ok(HttpResponse::Ok().json(m.governance().list_approvals()))
}

async fn add_approval(
    req: HttpRequest,
    m: M,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    let id = m.governance().add_approval(&body)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id.to_string() })))
}

async fn add_revocation(
    req: HttpRequest,
    m: M,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    let id = m.governance().add_revocation(&body)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "approval": id.to_string() })))
}

async fn reload(req: HttpRequest, m: M) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    let (loaded, rejected) = m.governance().reload()?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "approvals": loaded, "rejected": rejected })))
}

/// Upstream fetches in flight: artifact, bytes, total, rate, elapsed, ETA.
async fn list_fetches(req: HttpRequest, m: M) -> Result<HttpResponse, AdminError> {
    authorize(&req, &m)?;
    Ok(HttpResponse::Ok().json(m.fetches()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_compare() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secret1"));
        assert!(!super::same(b"", b"x"));
        assert!(super::same(b"", b""));
    }
}
