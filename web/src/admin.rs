//! The admin API (`/admin/…`, see `docs/governance.md`): review requests, prepare versions for
//! approval, accept signed approval and revocation records. Enabled only with an admin token;
//! every call must carry it as a bearer token, compared in constant time. One guard on the whole
//! scope checks it before any handler runs, so nothing of an unauthenticated request's body is
//! read or parsed; failures are audited.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::dev::{Service, ServiceRequest};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use mirror::governance::GovError;
use mirror::Mirror;
use signing::Source;

use crate::body::{BodyBudget, BodyError};

/// Largest admin body: an approval of a large repo pins up to 100000 files (about 150 bytes each).
const MAX_BODY: usize = 16 << 20;
/// Admin bodies held at once. Its own budget: only authenticated requests reach a body read, and
/// a large approval must not wait for protocol traffic.
const ADMIN_BUDGET: usize = 2 * MAX_BODY;

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
            GovError::Mirror(e) if e.is_internal() => AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::internal::report(&e, "admin"),
            ),
            GovError::Mirror(e) => {
                tracing::warn!(error = %e, "admin request failed");
                AdminError(StatusCode::BAD_GATEWAY, e.to_string())
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
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

impl From<BodyError> for AdminError {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Broken => StatusCode::BAD_REQUEST,
        };
        AdminError(status, e.to_string())
    }
}

/// Whether the request carries the admin token, or the token of a `[[clients]]` entry with the
/// `admin` role.
fn authorize(req: &HttpRequest, mirror: &Mirror) -> Result<(), AdminError> {
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let identity = req.app_data::<web::Data<crate::client::Identity>>();
    let admin_client = identity
        .filter(|_| !given.is_empty())
        .and_then(|id| id.clients().authenticate(given))
        .is_some_and(|c| c.has(mirror::Role::Admin));
    let Some(token) = mirror.governance().admin_token() else {
        if admin_client {
            return Ok(());
        }
        // No token configured (and no admin client asking): the admin API does not exist.
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "the admin API is disabled (no admin token configured)".into(),
        ));
    };
    if same(given.as_bytes(), token.expose().as_bytes()) || admin_client {
        Ok(())
    } else {
        Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token".into(),
        ))
    }
}

/// Failed logins, for the audit log: at most one entry per second, so a flood of guesses cannot
/// grow the log (or its fsyncs) without bound; the rest are counted into the next entry.
#[derive(Default)]
pub(crate) struct FailedLogins {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl FailedLogins {
    pub(crate) fn record(&self, mirror: &Mirror, req: &HttpRequest) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_second.swap(now, Ordering::AcqRel);
        if last == now {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let event = signing::AuditEvent::AdminAuthFailed {
            client: crate::client::describe(req),
            path: req.path().chars().take(200).collect(),
            suppressed: self.suppressed.swap(0, Ordering::AcqRel),
        };
        let gov = mirror.governance().clone();
        // The append fsyncs: off the event loop.
        actix_web::rt::task::spawn_blocking(move || gov.audit(event));
    }
}

/// Registers `/admin/…` behind the token guard.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let failed = Arc::new(FailedLogins::default());
    cfg.service(
        web::scope("/admin")
            .app_data(web::Data::new(BodyBudget::new(ADMIN_BUDGET)))
            .wrap_fn(move |req: ServiceRequest, srv| {
                let denied = req
                    .app_data::<M>()
                    .map(|m| (authorize(req.request(), m), m.clone()));
                let verdict = match denied {
                    Some((Ok(()), _)) => Ok(()),
                    Some((Err(e), m)) => {
                        if e.0 == StatusCode::UNAUTHORIZED {
                            failed.record(&m, req.request());
                        }
                        Err(e)
                    }
                    // The app is built with the mirror; without it, this is a wiring bug.
                    None => Err(AdminError(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        crate::internal::report(
                            &mirror::MirrorError::Task("admin scope has no mirror".into()),
                            "admin",
                        ),
                    )),
                };
                // A refusal is answered as a response, not an `Err`, so the request middleware
                // around every route stamps and counts it too.
                let call = match verdict {
                    Ok(()) => Ok(srv.call(req)),
                    Err(e) => Err(req.error_response(e)),
                };
                async move {
                    match call {
                        Ok(fut) => fut.await,
                        Err(res) => Ok(res),
                    }
                }
            })
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

/// Reads a JSON body (after the guard let the request in).
async fn json<T: serde::de::DeserializeOwned>(
    budget: &BodyBudget,
    payload: web::Payload,
) -> Result<T, AdminError> {
    let bytes = budget.read(payload, MAX_BODY).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

type M = web::Data<Arc<Mirror>>;
type B = web::Data<BodyBudget>;

/// Runs governance work (index reads and writes, audit fsyncs, approval checks) on actix's
/// blocking pool instead of the event loop that serves every other request.
async fn off_loop<T: Send + 'static>(
    m: &M,
    f: impl FnOnce(&Mirror) -> Result<T, GovError> + Send + 'static,
) -> Result<T, AdminError> {
    let m = m.clone().into_inner();
    web::block(move || f(&m))
        .await
        .map_err(|_| {
            AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::internal::report(
                    &mirror::MirrorError::Task("admin task failed".into()),
                    "admin",
                ),
            )
        })?
        .map_err(AdminError::from)
}

async fn list_requests(m: M) -> Result<HttpResponse, AdminError> {
    let list = off_loop(&m, |m| Ok(m.governance().list_requests()?)).await?;
    Ok(HttpResponse::Ok().json(list))
}

async fn show_request(m: M, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let id = id.into_inner();
    let id2 = id.clone();
    match off_loop(&m, move |m| Ok(m.governance().get_request(&id2)?)).await? {
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
    m: M,
    budget: B,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AdminError> {
    let body: Deny = json(&budget, payload).await?;
    let by = body
        .by
        .clone()
        .unwrap_or_else(|| "the governance team".into());
    let id = id.into_inner();
    let rec = off_loop(&m, move |m| {
        m.governance().deny_request(&id, &body.reason, &by)
    })
    .await?;
    Ok(HttpResponse::Ok().json(rec))
}

#[derive(serde::Deserialize)]
struct PrepareAsk {
    source: Source,
    name: String,
    #[serde(default)]
    revision: Option<String>,
}

async fn prepare(m: M, budget: B, payload: web::Payload) -> Result<HttpResponse, AdminError> {
    let body: PrepareAsk = json(&budget, payload).await?;
    let revision = body.revision.clone().unwrap_or_else(|| match body.source {
        Source::Hf => "main".into(),
        Source::Ollama => "latest".into(),
    });
    match m.prepare(body.source, &body.name, &revision, None).await {
        Ok(p) => Ok(HttpResponse::Ok().json(p)),
        Err(e) => Err(AdminError(StatusCode::BAD_GATEWAY, e)),
    }
}

async fn list_approvals(m: M) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::Ok().json(m.governance().list_approvals()))
}

async fn add_approval(m: M, budget: B, payload: web::Payload) -> Result<HttpResponse, AdminError> {
    let body = budget.read(payload, MAX_BODY).await?;
    let id = off_loop(&m, move |m| m.governance().add_approval(&body)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id.to_string() })))
}

async fn add_revocation(
    m: M,
    budget: B,
    payload: web::Payload,
) -> Result<HttpResponse, AdminError> {
    let body = budget.read(payload, MAX_BODY).await?;
    let id = off_loop(&m, move |m| m.governance().add_revocation(&body)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "approval": id.to_string() })))
}

async fn reload(m: M) -> Result<HttpResponse, AdminError> {
    let (loaded, rejected) = off_loop(&m, |m| Ok(m.governance().reload()?)).await?;
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
