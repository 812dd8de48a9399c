//! The Hugging Face Hub front door: the subset of the Hub API that `huggingface_hub`,
//! `transformers` and `datasets` use to download (see `shared/docs/hf-protocol.md`). Handlers are
//! thin: parse into typed names, ask the engine, render. Xet metadata never leaves this module:
//! listings carry no `xetHash`, responses no `X-Xet-*`, and `/xet-read-token` is a 404.

mod error;
pub(crate) mod route;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use mirror::{Entry, EntryKind, FileState, Lookup, Mirror, RepoPath, Snapshot};
use serde_json::{json, Value};

use crate::blob;
pub use error::HfError;
use route::Route;

/// How long a request waits for a cold file before answering "retry later". Below the clients'
/// 10-second silence timeout (trap T15).
const FILE_WAIT: Duration = Duration::from_secs(7);
/// A fetch expected to finish within this many seconds after [`FILE_WAIT`] is waited for a little
/// longer: "retry later" costs the client at least Retry-After + 1 = 2 s.
const NEARLY_DONE_SECS: u64 = 2;
/// The extra wait for such a fetch: with [`FILE_WAIT`], 8.5 s, leaving a margin under the clients'
/// 10 s timeout on a loaded machine.
const EXTRA_WAIT: Duration = Duration::from_millis(1500);
/// Largest accepted `paths-info` body (about 10000 paths; the handler looks at no more).
const MAX_FORM: usize = 1 << 20;

/// Settings of the HF front door.
#[derive(Debug, Clone, Copy)]
pub struct HfSettings {
    /// Entries per `/tree` page.
    pub tree_page_size: usize,
}

/// The route pattern of an HF request, for `/metrics` (`unmatched` for what no route parses).
pub fn pattern(method: &str, path: &str) -> &'static str {
    route::parse(method, path).map_or("unmatched", |r| r.pattern())
}

/// Registers the HF routes: every path not claimed by another front door lands here.
pub fn configure(cfg: &mut web::ServiceConfig, settings: HfSettings) {
    cfg.app_data(web::Data::new(settings))
        .default_service(web::to(dispatch));
}

async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    mirror: web::Data<Arc<Mirror>>,
    settings: web::Data<HfSettings>,
    budget: web::Data<crate::body::BodyBudget>,
    origin: web::Data<crate::origin::Origin>,
) -> Result<HttpResponse, HfError> {
    let route = route::parse(req.method().as_str(), req.uri().path())?;
    if let Route::Health = route {
        return Ok(HttpResponse::Ok().content_type("text/plain").body("ok\n"));
    }
    let caller = crate::client::admit(&req).map_err(HfError::Unauthorized)?;
    match route {
        Route::Health => Ok(HttpResponse::Ok().content_type("text/plain").body("ok\n")),
        Route::XetToken => Err(HfError::NoRoute(
            "xet-read-token: airlock serves files over plain HTTP only".into(),
        )),
        Route::Info { repo, rev } => {
            let snap = snapshot(&caller, &mirror, &repo, &rev).await?;
            Ok(HttpResponse::Ok().json(info_json(&snap, query_flag(&req, "blobs"))))
        }
        Route::Tree { repo, rev, path } => {
            let snap = snapshot(&caller, &mirror, &repo, &rev).await?;
            let base = origin.base_url(&req);
            tree(
                &req,
                &base,
                &snap,
                path.as_ref(),
                settings.tree_page_size.max(1),
            )
        }
        Route::PathsInfo { repo, rev } => {
            // The body first: a refused or slow request must not hold a connection's body open
            // while the engine resolves the revision.
            let body = budget
                .read(payload, MAX_FORM)
                .await
                .map_err(HfError::Body)?;
            let snap = snapshot(&caller, &mirror, &repo, &rev).await?;
            paths_info(&snap, &body)
        }
        Route::Resolve { repo, rev, path } => {
            let snap = snapshot(&caller, &mirror, &repo, &rev).await?;
            resolve(&req, &caller, &mirror, &snap, &path).await
        }
    }
}

async fn snapshot(
    caller: &mirror::Caller,
    mirror: &Mirror,
    repo: &mirror::HfRepo,
    rev: &mirror::RevisionName,
) -> Result<Snapshot, HfError> {
    match mirror.snapshot(repo, rev, caller).await? {
        Lookup::Found(s) => Ok(s),
        Lookup::Refused(r) => Err(HfError::Refused(r)),
        Lookup::RepoNotFound(m) => Err(HfError::RepoNotFound(m)),
        Lookup::RevisionNotFound(m) => Err(HfError::RevisionNotFound(m)),
        Lookup::EntryNotFound { commit } => Err(HfError::EntryNotFound {
            commit,
            what: rev.to_string(),
        }),
    }
}

fn query_flag(req: &HttpRequest, name: &str) -> bool {
    req.query_string().split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        k == name && matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "")
    })
}

fn query_value<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.query_string().split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// An entry as the Hub lists it (without `xetHash`, ever).
fn entry_json(e: &Entry) -> Value {
    match e.kind {
        EntryKind::Directory => {
            json!({"type": "directory", "oid": e.oid.hex(), "size": 0, "path": e.path.as_str()})
        }
        EntryKind::File => {
            let mut v = json!({"type": "file", "oid": e.oid.hex(), "size": e.size, "path": e.path.as_str()});
            if let Some(lfs) = &e.lfs {
                v["lfs"] = json!({"oid": lfs.sha256.hex(), "size": lfs.size, "pointerSize": lfs.pointer_size});
            }
            v
        }
    }
}

fn info_json(snap: &Snapshot, blobs: bool) -> Value {
    let siblings: Vec<Value> = snap
        .manifest
        .files()
        .map(|e| {
            let mut v = json!({"rfilename": e.path.as_str()});
            if blobs {
                v["size"] = json!(e.size);
                v["blobId"] = json!(e.oid.hex());
                if let Some(lfs) = &e.lfs {
                    v["lfs"] = json!({"sha256": lfs.sha256.hex(), "size": lfs.size, "pointerSize": lfs.pointer_size});
                }
            }
            v
        })
        .collect();
    let id = snap.repo.id.as_str();
    let mut v = json!({
        "_id": id, "id": id, "sha": snap.commit.hex(), "private": false, "gated": false, "disabled": false,
        "tags": [], "siblings": siblings,
    });
    if snap.repo.kind == mirror::RepoKind::Model {
        v["modelId"] = json!(id);
    }
    v
}

fn tree(
    req: &HttpRequest,
    base: &str,
    snap: &Snapshot,
    path: Option<&RepoPath>,
    page_size: usize,
) -> Result<HttpResponse, HfError> {
    let recursive = query_flag(req, "recursive");
    let start: usize = query_value(req, "cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // One page's worth of work per request, so paging through a snapshot is O(files).
    let (entries, more) = snap
        .manifest
        .list_page(path.map(|p| p.as_str()), recursive, start, page_size)
        .ok_or_else(|| HfError::EntryNotFound {
            commit: snap.commit,
            what: path.map_or("/".into(), |p| p.to_string()),
        })?;
    let page: Vec<Value> = entries.iter().map(|e| entry_json(e)).collect();
    let mut resp = HttpResponse::Ok();
    // The cursor is client input: a huge one must not overflow (a panic in debug builds).
    let end = start.saturating_add(page_size);
    if more {
        // Absolute and pointing at Airlock itself (trap T11), from the checked public base.
        let query: Vec<&str> = req
            .query_string()
            .split('&')
            .filter(|kv| !kv.starts_with("cursor=") && !kv.is_empty())
            .collect();
        let mut next = format!("{base}{}?", req.uri().path());
        for q in query {
            next.push_str(q);
            next.push('&');
        }
        next.push_str(&format!("cursor={end}"));
        resp.insert_header((header::LINK, format!("<{next}>; rel=\"next\"")));
    }
    Ok(resp.json(page))
}

fn paths_info(snap: &Snapshot, body: &[u8]) -> Result<HttpResponse, HfError> {
    let mut out = Vec::new();
    let text = std::str::from_utf8(body)
        .map_err(|_| HfError::BadRequest("airlock: body is not UTF-8".into()))?;
    let mut wanted: Vec<String> = Vec::new();
    if text.trim_start().starts_with('{') {
        // The JSON form `{"paths": [...]}` some clients send.
        let v: Value = serde_json::from_str(text)
            .map_err(|e| HfError::BadRequest(format!("airlock: bad JSON body: {e}")))?;
        if let Some(arr) = v.get("paths").and_then(Value::as_array) {
            wanted.extend(arr.iter().filter_map(Value::as_str).map(String::from));
        }
    } else {
        for kv in text.split('&') {
            if let Some(("paths", v)) = kv.split_once('=') {
                let v = v.replace('+', " ");
                let decoded = percent_encoding::percent_decode_str(&v)
                    .decode_utf8()
                    .map_err(|_| HfError::BadRequest("airlock: paths are not UTF-8".into()))?;
                wanted.push(decoded.into_owned());
            }
        }
    }
    for p in wanted.iter().take(10_000) {
        if let Some(e) = snap.manifest.get(p.trim_matches('/')) {
            out.push(entry_json(e));
        }
    }
    Ok(HttpResponse::Ok().json(out))
}

async fn resolve(
    req: &HttpRequest,
    caller: &mirror::Caller,
    mirror: &Mirror,
    snap: &Snapshot,
    path: &RepoPath,
) -> Result<HttpResponse, HfError> {
    let head = req.method() == actix_web::http::Method::HEAD;
    let mut state = mirror.file(snap, path, FILE_WAIT).await?;
    if let Lookup::Found(FileState::Pending { retry_after }) = state {
        if retry_after <= NEARLY_DONE_SECS {
            state = mirror.file(snap, path, EXTRA_WAIT).await?;
        }
    }
    let rec = match state {
        Lookup::Found(FileState::Ready(rec)) => rec,
        Lookup::Found(FileState::Pending { retry_after }) => {
            return Err(HfError::Pending { retry_after, head })
        }
        Lookup::Refused(r) => return Err(HfError::Refused(r)),
        Lookup::EntryNotFound { commit } => {
            return Err(HfError::EntryNotFound {
                commit,
                what: path.to_string(),
            })
        }
        Lookup::RepoNotFound(m) => return Err(HfError::RepoNotFound(m)),
        Lookup::RevisionNotFound(m) => return Err(HfError::RevisionNotFound(m)),
    };
    let etag = format!("\"{}\"", rec.etag);
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Repo-Commit", snap.commit.hex()))
        .insert_header((header::ETAG, etag.clone()))
        .insert_header(("X-Linked-Etag", etag))
        .insert_header(("X-Linked-Size", rec.size.to_string()))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"));
    let body = if head {
        blob::Body::Head
    } else {
        blob::open(&mirror, &rec).await?
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    if !head {
        mirror.audit_download(
            caller,
            snap.repo.policy_name(),
            snap.commit.hex(),
            path.to_string(),
            rec.digest,
            snap.approval.as_ref().map(|a| a.id.clone()),
        );
    }
    blob::respond(resp, range, rec.size, body)
        .map_err(|_| HfError::RangeNotSatisfiable { size: rec.size })
}
