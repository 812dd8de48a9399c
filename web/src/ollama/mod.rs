//! The Ollama registry front door: the read side of OCI distribution as `ollama pull` uses it
//! (see `shared/docs/ollama-protocol.md`), also enough for oras and curl.
//!
//! Blob GETs answer `307` to the same path on *another hostname* with `?direct=1`: ollama follows
//! a redirect only while the hostname stays the same and needs the final answer to be a 307 (or a
//! 200) carrying `Location`, which it then fetches in parallel `Range` parts; oras and curl simply
//! follow the 307 and get the bytes. The direct URL serves only verified, promoted blobs.

mod error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use mirror::{FileState, Lookup, Mirror, OllamaName, Reference};
use verifier::Digest;

use crate::blob;
pub use error::OciError;

/// How long a blob GET waits for a cold blob before redirecting to the direct URL anyway: ollama
/// resolves the direct URL under a 30 s deadline (download.go), so the answer must come well
/// before that; a blob refused within this time is answered here, with a body ollama shows.
const BLOB_WAIT: Duration = Duration::from_secs(20);
/// How long a direct-URL GET waits for a cold blob per round. It keeps waiting, round after round,
/// as long as the fetch runs (the fetch's own stall timeout bounds that): oras and curl set no read
/// timeout, and ollama re-sends a part that saw no byte for 30 s without counting it as a retry.
const DIRECT_WAIT: Duration = Duration::from_secs(20);
/// A HEAD only waits briefly: its answer (the declared size) does not need the bytes.
const HEAD_WAIT: Duration = Duration::from_millis(200);

/// Settings of the registry front door.
#[derive(Debug, Clone, Default)]
pub struct OllamaSettings {
    /// `[ollama] blob_url`: where blob GETs redirect to.
    pub blob_url: Option<String>,
}

/// The local address a connection arrived on (recorded by the server's `on_connect` hook), used
/// to build a redirect to a different hostname that the client can certainly reach.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// Registers `/v2/…`.
pub fn configure(cfg: &mut web::ServiceConfig, settings: OllamaSettings) {
    cfg.service(
        web::scope("/v2")
            .app_data(web::Data::new(settings))
            .default_service(web::to(dispatch)),
    );
}

enum Route {
    Base,
    Manifest(OllamaName, Reference),
    Blob(OllamaName, Digest),
}

/// Whether `path` parses as a route (for the parser fuzz harness, `crate::parse_fuzz`).
#[cfg(test)]
pub(crate) fn parse_route(path: &str) -> bool {
    parse(path).is_ok()
}

fn parse(path: &str) -> Result<Route, OciError> {
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let name = |ns: &str, m: &str| {
        OllamaName::new(ns, m).map_err(|e| OciError::NameInvalid(format!("airlock: {e}")))
    };
    match segs.as_slice() {
        [] => Ok(Route::Base),
        [ns, m, "manifests", r] => {
            let reference =
                Reference::parse(r).map_err(|e| OciError::NameInvalid(format!("airlock: {e}")))?;
            Ok(Route::Manifest(name(ns, m)?, reference))
        }
        [ns, m, "blobs", d] => {
            let digest = d.parse::<Digest>().map_err(|_| {
                OciError::DigestInvalid(format!("airlock: {d:?} is not a sha256 digest"))
            })?;
            Ok(Route::Blob(name(ns, m)?, digest))
        }
        [.., "manifests", _] | [.., "blobs", _] => Err(OciError::NameInvalid(
            "airlock: names are namespace/model (e.g. library/llama3)".into(),
        )),
        _ => Err(OciError::NotFound),
    }
}

async fn dispatch(
    req: HttpRequest,
    mirror: web::Data<Arc<Mirror>>,
    settings: web::Data<OllamaSettings>,
) -> Result<HttpResponse, OciError> {
    let method = req.method().clone();
    let head = method == actix_web::http::Method::HEAD;
    if !head && method != actix_web::http::Method::GET {
        return Err(OciError::Unsupported);
    }
    match parse(req.uri().path())? {
        Route::Base => Ok(HttpResponse::Ok()
            .insert_header(("Docker-Distribution-API-Version", "registry/2.0"))
            .json(serde_json::json!({}))),
        Route::Manifest(name, reference) => {
            manifest(&mirror, &name, &reference, &crate::client::describe(&req)).await
        }
        Route::Blob(name, digest) => {
            let direct = req.query_string().split('&').any(|kv| kv == "direct=1");
            blob_route(&req, &mirror, &settings, &name, &digest, head, direct).await
        }
    }
}

async fn manifest(
    mirror: &Mirror,
    name: &OllamaName,
    reference: &Reference,
    client: &str,
) -> Result<HttpResponse, OciError> {
    let doc = match mirror.ollama_manifest(name, reference, client).await? {
        Lookup::Found(doc) => doc,
        Lookup::Refused(r) => return Err(OciError::Denied(r)),
        Lookup::RepoNotFound(m) | Lookup::RevisionNotFound(m) => {
            return Err(OciError::ManifestUnknown(m))
        }
        Lookup::EntryNotFound { .. } => {
            return Err(OciError::ManifestUnknown(format!("{name}:{reference}")))
        }
    };
    let bytes = mirror.read_manifest(&doc).await?;
    // Served byte for byte: the digest the client was promised is the sha256 of exactly these bytes.
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, doc.content_type.clone()))
        .insert_header(("Docker-Content-Digest", doc.digest.to_string()))
        .insert_header((header::ETAG, format!("\"{}\"", doc.digest)))
        .body(bytes))
}

async fn blob_route(
    req: &HttpRequest,
    mirror: &Mirror,
    settings: &OllamaSettings,
    name: &OllamaName,
    digest: &Digest,
    head: bool,
    direct: bool,
) -> Result<HttpResponse, OciError> {
    let wait = match (head, direct) {
        (true, _) => HEAD_WAIT,
        (false, true) => DIRECT_WAIT,
        (false, false) => BLOB_WAIT,
    };
    let info = loop {
        let info = match mirror.ollama_blob(name, digest, wait).await? {
            Lookup::Found(info) => info,
            Lookup::Refused(r) => return Err(OciError::Denied(r)),
            Lookup::RepoNotFound(m) | Lookup::RevisionNotFound(m) => {
                return Err(OciError::BlobUnknown(m))
            }
            Lookup::EntryNotFound { .. } => return Err(OciError::BlobUnknown(digest.to_string())),
        };
        // The direct URL is where the bytes come from: it holds the request until they are
        // verified (or the fetch fails), so no client retry budget is spent on a slow upstream.
        if direct && !head && matches!(info.state, FileState::Pending { .. }) {
            continue;
        }
        break info;
    };
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header((header::ETAG, format!("\"{digest}\"")))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"));
    let rec = match info.state {
        FileState::Ready(rec) => rec,
        // The declared size comes from the verified manifest, so a HEAD can answer before the
        // bytes are in; the bytes themselves are served only once verified.
        FileState::Pending { .. } if head => {
            return blob::respond(resp, None, info.size, blob::Body::Head)
                .map_err(|_| OciError::RangeNotSatisfiable { size: info.size })
        }
        // Still arriving: send the client on to the direct URL, which waits for the bytes.
        FileState::Pending { .. } => return Ok(redirect(req, settings, name, digest)),
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    if head || direct {
        let body = if head {
            blob::Body::Head
        } else if rec.size <= blob::SMALL {
            blob::Body::Small(mirror.read_blob(&rec).await?.into())
        } else {
            blob::Body::File(mirror.open_blob(&rec).await?)
        };
        if !head {
            mirror.audit_download(
                &crate::client::describe(req),
                name.to_string(),
                info.manifest.to_string(),
                digest.to_string(),
                rec.digest,
                info.approval.clone(),
            );
        }
        return blob::respond(resp, range, rec.size, body)
            .map_err(|_| OciError::RangeNotSatisfiable { size: rec.size });
    }
    Ok(redirect(req, settings, name, digest))
}

/// The blob answer ollama accepts: a 307 to a different hostname (which oras and curl follow), or,
/// when no other hostname is known, a 200 with `Location` and an empty body.
fn redirect(
    req: &HttpRequest,
    settings: &OllamaSettings,
    name: &OllamaName,
    digest: &Digest,
) -> HttpResponse {
    let path = format!(
        "/v2/{}/{}/blobs/{digest}?direct=1",
        name.namespace(),
        name.model()
    );
    let target = match &settings.blob_url {
        Some(base) => Some(format!("{}{path}", base.trim_end_matches('/'))),
        // The local listener speaks plain HTTP: that is the scheme of an address it names.
        None => other_host(req).map(|authority| format!("http://{authority}{path}")),
    };
    match target {
        Some(url) => HttpResponse::TemporaryRedirect()
            .insert_header((header::LOCATION, url))
            .insert_header(("Docker-Content-Digest", digest.to_string()))
            .finish(),
        None => HttpResponse::Ok()
            .insert_header((header::LOCATION, path))
            .insert_header(("Docker-Content-Digest", digest.to_string()))
            .finish(),
    }
}

/// A `host:port` naming this server under a hostname other than the one the client used: the
/// local address the connection arrived on, or `localhost` when the client already used that.
fn other_host(req: &HttpRequest) -> Option<String> {
    let local = req.conn_data::<LocalAddr>()?.0;
    // The host the client used, checked (forwarding headers only from a trusted proxy); one that
    // fails the checks is no name of ours, so any other name will do.
    let asked = req
        .app_data::<web::Data<crate::origin::Origin>>()
        .and_then(|o| o.asked(req))
        .map(|b| b.authority)
        .unwrap_or_default();
    let asked = asked.as_str();
    let asked_host = match asked.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => asked,
    }
    .trim_start_matches('[')
    .trim_end_matches(']');
    let ip = local.ip();
    let ip_text = ip.to_string();
    if !asked_host.eq_ignore_ascii_case(&ip_text) {
        return Some(match ip {
            std::net::IpAddr::V4(_) => format!("{ip_text}:{}", local.port()),
            std::net::IpAddr::V6(_) => format!("[{ip_text}]:{}", local.port()),
        });
    }
    if ip.is_loopback() {
        return Some(format!("localhost:{}", local.port()));
    }
    None
}
