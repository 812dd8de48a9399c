//! The governance team's web UI at `/ui/` (docs/governance.md, "Web UI"): server-rendered pages
//! (askama templates compiled into the binary, one small script and one stylesheet embedded too)
//! over what the admin API exposes — review requests with their fetch-and-scan reports, approved
//! versions, refusals, revocations, who downloaded a version, the audit log and its verification.
//!
//! Invariants:
//! - Signing stays with the approver. An approval or revocation arrives as a record signed in
//!   the browser (`static/ui.js`, WebCrypto Ed25519) and is verified by the same
//!   `Governance::add_approval` / `add_revocation` the admin API calls; the server never sees a
//!   private key. Deny needs no signature and is audited under the reviewer's name.
//! - Every page needs a session; a session needs the admin token or a `[[clients]]` token with
//!   the `reviewer` or `admin` role. Every POST carries the session's CSRF token, compared in
//!   constant time, and is authenticated before its body is read.
//! - Index, disk and audit-log reads run under `web::block`, never on the event loop.

mod session;
mod view;

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use mirror::governance::GovError;
use mirror::{Clients, Mirror, Role};
use signing::ApprovalId;

use crate::body::{BodyBudget, BodyError};
use session::{Session, Sessions};

/// Largest form body: a signed approval of a large repo (the admin API's limit).
const MAX_FORM: usize = 16 << 20;
/// Largest login form: a token and a return path.
const MAX_LOGIN: usize = 8 << 10;
/// UI bodies held at once (its own budget, as the admin API has).
const UI_BUDGET: usize = 2 * MAX_FORM;

/// The UI's state: who may log in and the live sessions.
pub struct Ui {
    clients: std::sync::Arc<Clients>,
    sessions: Sessions,
    prepared: PreparedVersions,
    failed: crate::admin::FailedLogins,
    https_public_url: bool,
}

impl Ui {
    /// From the configuration, with the `[[clients]]` registry the protocols also use (built once at
    /// start-up).
    pub fn new(
        cfg: &mirror::Config,
        clients: std::sync::Arc<Clients>,
    ) -> Result<Ui, mirror::MirrorError> {
        Ok(Ui {
            clients,
            sessions: Sessions::default(),
            prepared: PreparedVersions::default(),
            failed: crate::admin::FailedLogins::default(),
            https_public_url: cfg
                .governance
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
        })
    }

    /// Who `token` logs in as: `admin` for the admin token, else a `[[clients]]` name carrying
    /// `reviewer` or `admin`.
    fn login(&self, mirror: &Mirror, token: &str) -> Option<String> {
        if token.is_empty() {
            return None;
        }
        if let Some(admin) = mirror.governance().admin_token() {
            if crate::admin::same(token.as_bytes(), admin.expose().as_bytes()) {
                return Some("admin".into());
            }
        }
        self.clients
            .authenticate(token)
            .filter(|c| c.has(Role::Reviewer))
            .map(|c| c.name.to_string())
    }

    fn secure(&self, req: &HttpRequest) -> bool {
        self.https_public_url
            || req.app_config().secure()
            || req
                .app_data::<web::Data<crate::origin::Origin>>()
                .and_then(|o| o.asked(req))
                .is_some_and(|b| b.scheme == "https")
    }

    fn session(&self, req: &HttpRequest) -> Option<(String, Session)> {
        let cookie = req.headers().get(header::COOKIE)?.to_str().ok()?;
        let id = session::cookie_value(cookie)?;
        let s = self.sessions.get(id, Instant::now())?;
        Some((id.to_owned(), s))
    }
}

/// How long a version prepared from the UI stays reviewable at its link.
const PREPARED_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Most prepared versions kept (each holds its file list); past it the oldest goes.
const PREPARED_MAX: usize = 64;

type VersionKey = (signing::Source, String, String);

/// Versions a reviewer had fetched and scanned from the UI (`POST /ui/version`), so that the review
/// page (`GET /ui/version?…`) is a link. Bounded and expiring; the bytes themselves are in the store.
#[derive(Default)]
struct PreparedVersions {
    table: std::sync::Mutex<
        std::collections::HashMap<
            VersionKey,
            (Instant, signing::Timestamp, mirror::governance::Prepared),
        >,
    >,
}

impl PreparedVersions {
    fn get(
        &self,
        key: &VersionKey,
        now: Instant,
    ) -> Option<(signing::Timestamp, mirror::governance::Prepared)> {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.get(key)
            .filter(|(at, _, _)| now.duration_since(*at) < PREPARED_TTL)
            .map(|(_, when, p)| (*when, p.clone()))
    }

    fn put(&self, key: VersionKey, p: mirror::governance::Prepared, now: Instant) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, (at, _, _)| now.duration_since(*at) < PREPARED_TTL);
        while t.len() >= PREPARED_MAX {
            let Some(oldest) = t
                .iter()
                .min_by_key(|(_, (at, _, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            t.remove(&oldest);
        }
        let when = signing::Timestamp::from_system_time(std::time::SystemTime::now())
            .or_else(|_| signing::Timestamp::from_unix(0));
        if let Ok(when) = when {
            t.insert(key, (now, when, p));
        }
    }
}

/// A UI failure: an HTML page with a status. The one place UI errors become responses.
#[derive(Debug)]
pub struct UiError(StatusCode, String);

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        self.0
    }
    fn error_response(&self) -> HttpResponse {
        let page = MessagePage {
            who: String::new(),
            csrf: String::new(),
            heading: self.0.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.1.clone(),
            error: true,
            link: "/ui/".into(),
            link_text: "Back to the review pages".into(),
        };
        html(self.0, page.render().unwrap_or_else(|_| self.1.clone()))
    }
}

impl From<GovError> for UiError {
    fn from(e: GovError) -> Self {
        match e {
            GovError::Rejected(m) => UiError(StatusCode::BAD_REQUEST, m),
            GovError::NotFound(m) => UiError(StatusCode::NOT_FOUND, format!("{m} not found")),
            GovError::Mirror(e) => e.into(),
        }
    }
}

impl From<mirror::MirrorError> for UiError {
    fn from(e: mirror::MirrorError) -> Self {
        tracing::warn!(error = %e, "web UI request failed");
        internal()
    }
}

impl From<signing::SigningError> for UiError {
    fn from(e: signing::SigningError) -> Self {
        tracing::warn!(error = %e, "web UI: reading the audit log failed");
        internal()
    }
}

impl From<actix_web::error::BlockingError> for UiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        internal()
    }
}

impl From<askama::Error> for UiError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "web UI template failed");
        internal()
    }
}

impl From<BodyError> for UiError {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Broken => StatusCode::BAD_REQUEST,
        };
        UiError(status, e.to_string())
    }
}

fn internal() -> UiError {
    UiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (see server log)".into(),
    )
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

type M = web::Data<Arc<Mirror>>;
type U = web::Data<Ui>;
type B = web::Data<BodyBudget>;

/// Registers `/ui/…`.
pub fn configure(cfg: &mut web::ServiceConfig, ui: web::Data<Ui>) {
    cfg.service(
        web::scope("/ui")
            .app_data(ui)
            .app_data(web::Data::new(BodyBudget::new(UI_BUDGET)))
            // Scripts and styles only from /ui/static, no framing, no referrer leaking request
            // ids to other sites, nothing cached (pages show live governance state).
            .wrap(
                DefaultHeaders::new()
                    .add((
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    ))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .route("", web::get().to(|| async { see_other("/ui/") }))
            .route("/", web::get().to(home))
            .route("/static/ui.js", web::get().to(script))
            .route("/static/ui.css", web::get().to(style))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/requests", web::get().to(requests))
            .route("/requests/{id}", web::get().to(request))
            .route("/requests/{id}/deny", web::post().to(deny))
            .route("/approvals", web::get().to(approvals))
            .route("/approvals", web::post().to(approve))
            .route("/approvals/{id}", web::get().to(approval))
            .route("/version", web::get().to(version))
            .route("/version", web::post().to(prepare_version))
            .route("/revocations", web::get().to(revocations))
            .route("/revocations", web::post().to(revoke))
            .route("/refusals", web::get().to(refusals))
            .route("/audit", web::get().to(audit)),
    );
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("static/ui.js"))
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("static/ui.css"))
}

/// The session of a page view, or a redirect to the login page that comes back here.
fn page_session(req: &HttpRequest, ui: &Ui) -> Result<Session, Box<HttpResponse>> {
    match ui.session(req) {
        Some((_, s)) => Ok(s),
        None => {
            let next = percent_encoding::utf8_percent_encode(
                req.path(),
                percent_encoding::NON_ALPHANUMERIC,
            );
            Err(Box::new(see_other(&format!("/ui/login?next={next}"))))
        }
    }
}

/// The session of a form post: authenticated first (nothing of the body is read before), then
/// the body's CSRF token checked against it.
async fn form_session<T: serde::de::DeserializeOwned + HasCsrf>(
    req: &HttpRequest,
    ui: &Ui,
    budget: &BodyBudget,
    payload: web::Payload,
) -> Result<(String, Session, T), UiError> {
    let Some((id, s)) = ui.session(req) else {
        return Err(UiError(
            StatusCode::UNAUTHORIZED,
            "not logged in (or the session expired): log in again".into(),
        ));
    };
    let bytes = budget.read(payload, MAX_FORM).await?;
    let form: T = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| UiError(StatusCode::BAD_REQUEST, format!("bad form: {e}")))?;
    let given = form.csrf().unwrap_or("");
    if !crate::admin::same(given.as_bytes(), s.csrf.as_bytes()) {
        return Err(UiError(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again".into(),
        ));
    }
    Ok((id, s, form))
}

trait HasCsrf {
    fn csrf(&self) -> Option<&str>;
}

#[derive(serde::Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(serde::Deserialize)]
struct ReasonForm {
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

impl HasCsrf for ReasonForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[derive(serde::Deserialize)]
struct RecordForm {
    csrf: Option<String>,
    #[serde(default)]
    record: String,
}

impl HasCsrf for RecordForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

// ---- login -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    error: Option<String>,
    next: String,
    csrf: String,
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// A return path after login: one of ours, so a crafted link cannot send a reviewer elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && n.len() < 200
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)) =>
        {
            n.to_owned()
        }
        _ => "/ui/requests".into(),
    }
}

/// The login page with a fresh login CSRF token in the form and in a cookie.
fn login_form(
    req: &HttpRequest,
    ui: &Ui,
    status: StatusCode,
    error: Option<String>,
    next: String,
) -> Result<HttpResponse, UiError> {
    let csrf = session::random_hex().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a CSRF token");
        internal()
    })?;
    let page = LoginPage {
        error,
        next,
        csrf: csrf.clone(),
    };
    let mut resp = html(status, page.render()?);
    if let Ok(v) = HeaderValue::from_str(&session::login_cookie(&csrf, ui.secure(req))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn login_page(
    req: HttpRequest,
    ui: U,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, UiError> {
    login_form(
        &req,
        &ui,
        StatusCode::OK,
        None,
        safe_next(q.next.as_deref()),
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
    csrf: Option<String>,
}

async fn login(
    req: HttpRequest,
    m: M,
    ui: U,
    budget: B,
    payload: web::Payload,
) -> Result<HttpResponse, UiError> {
    let bytes = budget.read(payload, MAX_LOGIN).await?;
    let form: LoginForm = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| UiError(StatusCode::BAD_REQUEST, format!("bad form: {e}")))?;
    let next = safe_next(form.next.as_deref());
    // Login CSRF (another site logging the reviewer in as someone else): the form's token must
    // equal the SameSite=Strict cookie set with the form.
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::named_cookie(c, session::LOGIN_COOKIE))
        .unwrap_or("");
    let given = form.csrf.as_deref().unwrap_or("");
    if cookie.is_empty() || !crate::admin::same(given.as_bytes(), cookie.as_bytes()) {
        return login_form(
            &req,
            &ui,
            StatusCode::FORBIDDEN,
            Some("missing or wrong CSRF token: the login form expired, try again".into()),
            next,
        );
    }
    let Some(who) = ui.login(&m, form.token.trim()) else {
        ui.failed.record(&m, &req);
        return login_form(
            &req,
            &ui,
            StatusCode::UNAUTHORIZED,
            Some(
                "wrong token, or the token carries neither the reviewer nor the admin role".into(),
            ),
            next,
        );
    };
    let (id, _) = ui.sessions.create(&who, Instant::now()).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session id");
        internal()
    })?;
    tracing::info!(%who, "web UI login");
    let mut resp = see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, ui.secure(&req))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(
    req: HttpRequest,
    ui: U,
    budget: B,
    payload: web::Payload,
) -> Result<HttpResponse, UiError> {
    let (id, _, _form) = form_session::<CsrfOnly>(&req, &ui, &budget, payload).await?;
    ui.sessions.remove(&id);
    let mut resp = see_other("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(ui.secure(&req))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn home(req: HttpRequest, ui: U) -> HttpResponse {
    match page_session(&req, &ui) {
        Ok(_) => see_other("/ui/requests"),
        Err(to_login) => *to_login,
    }
}

// ---- pages -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "ui/message.html")]
struct MessagePage {
    who: String,
    csrf: String,
    heading: String,
    message: String,
    error: bool,
    link: String,
    link_text: String,
}

struct RequestRow {
    id: String,
    status: String,
    source: &'static str,
    name: String,
    revision: String,
    count: u64,
    clients: String,
    last_seen: String,
    scan: String,
}

#[derive(Template)]
#[template(path = "ui/requests.html")]
struct RequestsPage {
    who: String,
    csrf: String,
    rows: Vec<RequestRow>,
}

fn status_word(s: &mirror::governance::RequestStatus) -> String {
    match s {
        mirror::governance::RequestStatus::Pending => "pending",
        mirror::governance::RequestStatus::Approved => "approved",
        mirror::governance::RequestStatus::Denied => "denied",
    }
    .into()
}

async fn requests(req: HttpRequest, m: M, ui: U) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let mirror = (**m).clone();
    let list = web::block(move || mirror.governance().list_requests()).await??;
    let rows = list
        .into_iter()
        .map(|r| RequestRow {
            scan: match (&r.report, &r.report_error) {
                (Some(p), _) if p.refused.is_empty() => format!("{} files clean", p.files.len()),
                (Some(p), _) => format!("{} file(s) refused", p.refused.len()),
                (None, Some(_)) => "fetch failed".into(),
                (None, None) => "not fetched".into(),
            },
            id: r.id,
            status: status_word(&r.status),
            source: view::source_str(r.source),
            name: r.name,
            revision: r.revision,
            count: r.count,
            clients: r
                .clients
                .iter()
                .rev()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            last_seen: r.last_seen.to_string(),
        })
        .collect();
    let page = RequestsPage {
        who: s.who,
        csrf: s.csrf,
        rows,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "ui/request.html")]
struct RequestPage {
    who: String,
    csrf: String,
    /// A stored review request (false: a version a reviewer prepared from the UI).
    request: bool,
    v: view::RequestView,
    status: String,
    cli: String,
}

/// A request id as the store names them (`req-` and hex digits): anything else is not one.
fn request_id(id: &str) -> Result<String, UiError> {
    match id.strip_prefix("req-") {
        Some(h) if !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(id.to_owned())
        }
        _ => Err(UiError(
            StatusCode::NOT_FOUND,
            format!(
                "{:?} is not a request id",
                id.chars().take(80).collect::<String>()
            ),
        )),
    }
}

/// The name as `airlock approve` takes it: Ollama names carry their tag (`library/x:8b`); a
/// manifest digest is not a tag, and the CLI resolves the default tag then.
fn cli_name(source: signing::Source, name: &str, revision: &str) -> String {
    match source {
        signing::Source::Ollama if !revision.starts_with("sha256:") => format!("{name}:{revision}"),
        _ => name.to_owned(),
    }
}

/// A shell word, quoted when it needs it (for the CLI commands the pages show).
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@=".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

async fn request(
    req: HttpRequest,
    m: M,
    ui: U,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let id = request_id(&id)?;
    let mirror = (**m).clone();
    let wanted = id.clone();
    let v = web::block(move || view::request(&mirror, &wanted))
        .await??
        .ok_or_else(|| UiError(StatusCode::NOT_FOUND, format!("request {id} not found")))?;
    let base = m.governance().public_url().to_owned();
    let cli = format!(
        "airlock requests approve {} --key governance.key --by {} --reason '…' --server {}{}\n\
         # or: airlock approve {} {}{} --key governance.key --by {} --reason '…'",
        v.rec.id,
        sh(&s.who),
        sh(&base),
        if v.license_allowed || v.rec.report.is_none() {
            ""
        } else {
            " --license-override"
        },
        v.source,
        sh(&cli_name(v.rec.source, &v.rec.name, &v.rec.revision)),
        match v.rec.source {
            signing::Source::Hf => format!(" --revision {}", sh(&v.rec.revision)),
            signing::Source::Ollama => String::new(),
        },
        sh(&s.who),
    );
    let page = RequestPage {
        request: true,
        status: status_word(&v.rec.status),
        who: s.who,
        csrf: s.csrf,
        v,
        cli,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

async fn deny(
    req: HttpRequest,
    m: M,
    ui: U,
    budget: B,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, UiError> {
    let (_, s, form) = form_session::<ReasonForm>(&req, &ui, &budget, payload).await?;
    let id = request_id(&id)?;
    let mirror = (**m).clone();
    let (rid, who) = (id.clone(), s.who.clone());
    // Audited as a denial under the reviewer's name (the audit append fsyncs: off the loop).
    web::block(move || mirror.governance().deny_request(&rid, &form.reason, &who)).await??;
    Ok(see_other(&format!("/ui/requests/{id}")))
}

struct ApprovalRow {
    id: String,
    source: &'static str,
    name: String,
    pin: String,
    files: usize,
    approved_at: String,
    by: String,
    signer: String,
    expires: String,
    status: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "ui/approvals.html")]
struct ApprovalsPage {
    who: String,
    csrf: String,
    rows: Vec<ApprovalRow>,
    rejected: Vec<String>,
}

async fn approvals(req: HttpRequest, m: M, ui: U) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let mut all = m.governance().approvals();
    all.sort_by_key(|a| std::cmp::Reverse(a.record.approved_at));
    let rows = all
        .iter()
        .map(|a| ApprovalRow {
            id: a.id.to_string(),
            source: view::source_str(a.record.source),
            name: a.record.name.clone(),
            pin: match &a.record.revision_name {
                Some(n) => format!("{n} = {}", a.record.revision),
                None => a.record.revision.clone(),
            },
            files: a.record.files.len(),
            approved_at: a.record.approved_at.to_string(),
            by: a.record.approved_by.clone(),
            signer: a.signed.signed_by().to_string(),
            expires: a
                .record
                .expires_at
                .map_or_else(|| "never".into(), |t| t.to_string()),
            status: view::status_of(a),
            reason: a.record.reason.clone(),
        })
        .collect();
    let listed = m.governance().list_approvals();
    let rejected = listed
        .get("rejected")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}: {}",
                r.get("path").and_then(|v| v.as_str()).unwrap_or("?"),
                r.get("error").and_then(|v| v.as_str()).unwrap_or("?")
            )
        })
        .collect();
    let page = ApprovalsPage {
        who: s.who,
        csrf: s.csrf,
        rows,
        rejected,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "ui/approval.html")]
struct ApprovalPage {
    who: String,
    csrf: String,
    id: String,
    source: &'static str,
    r: signing::ApprovalRecord,
    signer: String,
    status: String,
    expires: String,
    downloads: Vec<view::DownloadRow>,
    revocable: bool,
    template: String,
    cli: String,
}

async fn approval(
    req: HttpRequest,
    m: M,
    ui: U,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let id: ApprovalId = id
        .parse()
        .map_err(|e: signing::SigningError| UiError(StatusCode::NOT_FOUND, e.to_string()))?;
    let Some(a) = m.governance().approvals().into_iter().find(|a| a.id == id) else {
        return Err(UiError(
            StatusCode::NOT_FOUND,
            format!("approval {id} not found"),
        ));
    };
    let mirror = (**m).clone();
    let wanted = id.clone();
    let downloads = web::block(move || view::downloads(&mirror, &wanted)).await??;
    let page = ApprovalPage {
        source: view::source_str(a.record.source),
        signer: a.signed.signed_by().to_string(),
        status: view::status_of(&a),
        expires: a
            .record
            .expires_at
            .map_or_else(|| "never".into(), |t| t.to_string()),
        downloads,
        revocable: a.revoked.is_none(),
        template: serde_json::json!({ "approval": id.to_string() }).to_string(),
        cli: format!(
            "airlock revoke {id} --key governance.key --by {} --reason '…' --server {}",
            sh(&s.who),
            sh(m.governance().public_url())
        ),
        r: a.record.clone(),
        id: id.to_string(),
        who: s.who,
        csrf: s.csrf,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

/// A signed approval from the approve page: verified exactly as `POST /admin/approvals` does.
async fn approve(
    req: HttpRequest,
    m: M,
    ui: U,
    budget: B,
    payload: web::Payload,
) -> Result<HttpResponse, UiError> {
    let (_, s, form) = form_session::<RecordForm>(&req, &ui, &budget, payload).await?;
    let mirror = (**m).clone();
    let id = web::block(move || mirror.governance().add_approval(form.record.as_bytes())).await??;
    tracing::info!(who = %s.who, approval = %id, "approval sent through the web UI");
    Ok(see_other(&format!("/ui/approvals/{id}")))
}

/// A signed revocation: verified exactly as `POST /admin/revocations` does.
async fn revoke(
    req: HttpRequest,
    m: M,
    ui: U,
    budget: B,
    payload: web::Payload,
) -> Result<HttpResponse, UiError> {
    let (_, s, form) = form_session::<RecordForm>(&req, &ui, &budget, payload).await?;
    let mirror = (**m).clone();
    let id =
        web::block(move || mirror.governance().add_revocation(form.record.as_bytes())).await??;
    tracing::info!(who = %s.who, approval = %id, "revocation sent through the web UI");
    Ok(see_other(&format!("/ui/approvals/{id}")))
}

#[derive(serde::Deserialize)]
struct VersionQuery {
    source: signing::Source,
    name: String,
    #[serde(default)]
    revision: String,
}

#[derive(serde::Deserialize)]
struct VersionForm {
    csrf: Option<String>,
    source: signing::Source,
    name: String,
    #[serde(default)]
    revision: String,
}

impl HasCsrf for VersionForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// The version asked for, bounded (the upstream clients validate the name itself).
fn version_key(source: signing::Source, name: &str, revision: &str) -> Result<VersionKey, UiError> {
    let name = name.trim();
    let revision = match revision.trim() {
        "" => match source {
            signing::Source::Hf => "main",
            signing::Source::Ollama => "latest",
        },
        r => r,
    };
    if name.is_empty() || name.len() > 300 || revision.len() > 255 {
        return Err(UiError(
            StatusCode::BAD_REQUEST,
            "give a name (at most 300 characters) and a revision".into(),
        ));
    }
    Ok((source, name.to_owned(), revision.to_owned()))
}

fn version_url(key: &VersionKey) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "/ui/version?source={}&name={}&revision={}",
        view::source_str(key.0),
        enc(&key.1),
        enc(&key.2)
    )
}

#[derive(Template)]
#[template(path = "ui/prepare.html")]
struct PreparePage {
    who: String,
    csrf: String,
    source: &'static str,
    name: String,
    revision: String,
}

/// A version under review: its report, the diff against the previous approval and the signing
/// form once prepared; else the button that prepares it.
async fn version(
    req: HttpRequest,
    m: M,
    ui: U,
    q: web::Query<VersionQuery>,
) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let key = version_key(q.source, &q.name, &q.revision)?;
    let Some((when, prepared)) = ui.prepared.get(&key, Instant::now()) else {
        let page = PreparePage {
            who: s.who,
            csrf: s.csrf,
            source: view::source_str(key.0),
            name: key.1,
            revision: key.2,
        };
        return Ok(html(StatusCode::OK, page.render()?));
    };
    let rec = mirror::governance::RequestRecord {
        id: String::new(),
        source: key.0,
        name: key.1.clone(),
        revision: key.2.clone(),
        clients: Vec::new(),
        first_seen: when,
        last_seen: when,
        count: 0,
        status: mirror::governance::RequestStatus::Pending,
        reason: None,
        by: None,
        approval: None,
        report: Some(prepared),
        report_error: None,
    };
    let mirror = (**m).clone();
    let v = web::block(move || view::from_record(&mirror, rec)).await?;
    let cli = format!(
        "airlock approve {} {}{} --key governance.key --by {} --reason '…' --server {}{}",
        v.source,
        sh(&cli_name(key.0, &key.1, &key.2)),
        match key.0 {
            signing::Source::Hf => format!(" --revision {}", sh(&key.2)),
            signing::Source::Ollama => String::new(),
        },
        sh(&s.who),
        sh(m.governance().public_url()),
        if v.license_allowed {
            ""
        } else {
            " --license-override"
        },
    );
    let page = RequestPage {
        request: false,
        status: "pending".into(),
        who: s.who,
        csrf: s.csrf,
        v,
        cli,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

/// Fetches, verifies and scans a version for review (what `airlock approve` asks the admin API
/// for), then shows it at its link.
async fn prepare_version(
    req: HttpRequest,
    m: M,
    ui: U,
    budget: B,
    payload: web::Payload,
) -> Result<HttpResponse, UiError> {
    let (_, s, form) = form_session::<VersionForm>(&req, &ui, &budget, payload).await?;
    let key = version_key(form.source, &form.name, &form.revision)?;
    tracing::info!(who = %s.who, name = %key.1, revision = %key.2, "version prepared through the web UI");
    let prepared = m
        .prepare(key.0, &key.1, &key.2, None)
        .await
        .map_err(|e| UiError(StatusCode::BAD_GATEWAY, e))?;
    let url = version_url(&key);
    ui.prepared.put(key, prepared, Instant::now());
    Ok(see_other(&url))
}

struct RevocationRow {
    id: String,
    name: String,
    pin: String,
    at: String,
    by: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "ui/revocations.html")]
struct RevocationsPage {
    who: String,
    csrf: String,
    rows: Vec<RevocationRow>,
}

async fn revocations(req: HttpRequest, m: M, ui: U) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let mut rows: Vec<(signing::Timestamp, RevocationRow)> = m
        .governance()
        .approvals()
        .iter()
        .filter_map(|a| {
            let r = a.revoked.as_ref()?;
            Some((
                r.revoked_at,
                RevocationRow {
                    id: a.id.to_string(),
                    name: format!("{}:{}", view::source_str(a.record.source), a.record.name),
                    pin: a.record.revision.clone(),
                    at: r.revoked_at.to_string(),
                    by: r.revoked_by.clone(),
                    reason: r.reason.clone(),
                },
            ))
        })
        .collect();
    rows.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    let page = RevocationsPage {
        who: s.who,
        csrf: s.csrf,
        rows: rows.into_iter().map(|(_, r)| r).collect(),
    };
    Ok(html(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "ui/refusals.html")]
struct RefusalsPage {
    who: String,
    csrf: String,
    rows: Vec<view::RefusalRow>,
}

async fn refusals(req: HttpRequest, m: M, ui: U) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let mirror = (**m).clone();
    let v = web::block(move || view::audit(&mirror)).await??;
    let page = RefusalsPage {
        who: s.who,
        csrf: s.csrf,
        rows: v.refusals,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    who: String,
    csrf: String,
    ok: bool,
    status: String,
    entries: Vec<view::EntryRow>,
}

async fn audit(req: HttpRequest, m: M, ui: U) -> Result<HttpResponse, UiError> {
    let s = match page_session(&req, &ui) {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let mirror = (**m).clone();
    let v = web::block(move || view::audit(&mirror)).await??;
    let page = AuditPage {
        who: s.who,
        csrf: s.csrf,
        ok: v.ok,
        status: v.status,
        entries: v.entries,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_in_the_ui() {
        assert_eq!(
            safe_next(Some("/ui/requests/req-ab12")),
            "/ui/requests/req-ab12"
        );
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/requests");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/requests");
        assert_eq!(safe_next(Some("/ui//evil")), "/ui/requests");
        assert_eq!(safe_next(None), "/ui/requests");
    }

    #[test]
    fn request_ids_and_shell_words() {
        assert!(request_id("req-0123abcd").is_ok());
        assert!(request_id("req-../x").is_err());
        assert!(request_id("appr-0123").is_err());
        assert_eq!(sh("alice"), "alice");
        assert_eq!(
            cli_name(signing::Source::Ollama, "library/x", "8b"),
            "library/x:8b"
        );
        assert_eq!(cli_name(signing::Source::Hf, "org/x", "main"), "org/x");
        assert_eq!(sh("it's"), "'it'\\''s'");
    }
}
