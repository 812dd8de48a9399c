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
    /// `/v2/token`: the OCI token flow's endpoint (see [`crate::grant`]).
    Token,
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
        ["token"] => Ok(Route::Token),
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

/// The route pattern of a registry request, for `/metrics`.
pub fn pattern(path: &str) -> &'static str {
    match parse(path) {
        Ok(Route::Base) => "/v2/",
        Ok(Route::Token) => "/v2/token",
        Ok(Route::Manifest(..)) => "/v2/{name}/manifests/{reference}",
        Ok(Route::Blob(..)) => "/v2/{name}/blobs/{digest}",
        Err(_) => "unmatched",
    }
}

fn query(req: &HttpRequest, key: &str) -> Option<String> {
    req.query_string().split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .and_then(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8().ok())
            .map(|v| v.into_owned())
    })
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
    let route = parse(req.uri().path())?;
    if let Route::Token = route {
        return token(&req);
    }
    // A blob's direct URL may carry the grant its redirect issued (ollama fetches it without
    // credentials); everything else needs the client's own.
    let grant = match &route {
        Route::Blob(_, digest) => query(&req, "grant").map(|g| (g, digest.to_string())),
        _ => None,
    };
    let caller = crate::client::admit_with(
        &req,
        grant
            .as_ref()
            .map(|(g, d)| (g.as_str(), crate::grant::Scope::Blob(d.as_str()))),
    )
    .map_err(|why| OciError::Unauthorized {
        why,
        realm: token_realm(&req),
    })?;
    match route {
        Route::Base | Route::Token => Ok(HttpResponse::Ok()
            .insert_header(("Docker-Distribution-API-Version", "registry/2.0"))
            .json(serde_json::json!({}))),
        Route::Manifest(name, reference) => manifest(&mirror, &name, &reference, &caller).await,
        Route::Blob(name, digest) => {
            let direct = req.query_string().split('&').any(|kv| kv == "direct=1");
            blob_route(
                &req, &caller, &mirror, &settings, &name, &digest, head, direct,
            )
            .await
        }
    }
}

/// Where the token flow's challenge sends clients: this server's `/v2/token`.
fn token_realm(req: &HttpRequest) -> String {
    let base = req
        .app_data::<web::Data<crate::origin::Origin>>()
        .map(|o| o.base_url(req))
        .unwrap_or_default();
    format!("{}/v2/token", base.trim_end_matches('/'))
}

/// `GET /v2/token`: a client that authenticates with its own token (basic auth, as oras and
/// docker send it to a token realm, or bearer) gets a short-lived bearer token naming it; the
/// client token itself is never echoed. A token Airlock issued does not buy another one, so an
/// issued token cannot be renewed forever without the client's own.
fn token(req: &HttpRequest) -> Result<HttpResponse, OciError> {
    let id = req.app_data::<web::Data<crate::client::Identity>>();
    // Its own token, or (ollama, which has none) a request signed with its configured ollama key.
    let client = id.and_then(|id| {
        crate::client::token(req)
            .and_then(|t| id.clients().authenticate(&t))
            .or_else(|| crate::client::ollama_signer(req, id))
    });
    let (Some(client), Some(id)) = (client, id) else {
        return Err(OciError::Unauthorized {
            why: if crate::client::token(req).is_some() {
                crate::client::Unauthorized::Unknown
            } else {
                crate::client::Unauthorized::Missing
            },
            realm: String::new(),
        });
    };
    let ttl = crate::grant::REGISTRY_TTL;
    let token = id
        .grants()
        .issue(client.name.as_str(), crate::grant::Scope::Registry, ttl);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": ttl.as_secs(),
        })))
}

async fn manifest(
    mirror: &Mirror,
    name: &OllamaName,
    reference: &Reference,
    client: &mirror::Caller,
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

#[allow(clippy::too_many_arguments)]
async fn blob_route(
    req: &HttpRequest,
    caller: &mirror::Caller,
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
        FileState::Pending { .. } => return Ok(redirect(req, caller, settings, name, digest)),
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    if head || direct {
        let body = if head {
            blob::Body::Head
        } else {
            blob::open(&mirror, &rec).await?
        };
        if !head {
            mirror.audit_download(
                caller,
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
    Ok(redirect(req, caller, settings, name, digest))
}

/// The blob answer ollama accepts: a 307 to a different hostname (which oras and curl follow), or,
/// when no other hostname is known, a 200 with `Location` and an empty body.
fn redirect(
    req: &HttpRequest,
    caller: &mirror::Caller,
    settings: &OllamaSettings,
    name: &OllamaName,
    digest: &Digest,
) -> HttpResponse {
    let mut path = format!(
        "/v2/{}/{}/blobs/{digest}?direct=1",
        name.namespace(),
        name.model()
    );
    // ollama fetches the direct URL without credentials: a known client's redirect carries a
    // grant for this one blob, so the download is audited under its name (and passes a
    // required-token rule).
    let id = req.app_data::<web::Data<crate::client::Identity>>();
    if let (Some(client), Some(id)) = (caller.client(), id) {
        let digest_text = digest.to_string();
        let grant = id.grants().issue(
            client.name.as_str(),
            crate::grant::Scope::Blob(&digest_text),
            crate::grant::BLOB_TTL,
        );
        path.push_str("&grant=");
        path.push_str(&grant);
    }
    let target = match &settings.blob_url {
        Some(base) => Some(format!("{}{path}", base.trim_end_matches('/'))),
        None => other_host(req).map(|(scheme, authority)| format!("{scheme}://{authority}{path}")),
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

/// A scheme and `host:port` naming this server under a hostname other than the one the client
/// used: the local address the connection arrived on, or `localhost` when the client already used
/// that. Behind a trusted proxy the local address is not the client's to reach: the proxy's
/// scheme and port are kept, and only a loopback name is swapped for its other spelling.
fn other_host(req: &HttpRequest) -> Option<(&'static str, String)> {
    let origin = req.app_data::<web::Data<crate::origin::Origin>>();
    // The host the client used, checked (forwarding headers only from a trusted proxy); one that
    // fails the checks is no name of ours, so any other name will do.
    let asked_base = origin.and_then(|o| o.asked(req));
    let scheme = match (&asked_base, origin) {
        (Some(b), _) => b.scheme,
        (None, Some(o)) => o.own_scheme(),
        (None, None) => "http",
    };
    if origin.is_some_and(|o| o.via_proxy(req)) {
        let b = asked_base?;
        let (host, port) = b.authority.rsplit_once(':')?;
        let other = match host {
            "127.0.0.1" => "localhost",
            h if h.eq_ignore_ascii_case("localhost") => "127.0.0.1",
            _ => return None,
        };
        return Some((scheme, format!("{other}:{port}")));
    }
    let local = req.conn_data::<LocalAddr>()?.0;
    let asked = asked_base.map(|b| b.authority).unwrap_or_default();
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
        return Some((
            scheme,
            match ip {
                std::net::IpAddr::V4(_) => format!("{ip_text}:{}", local.port()),
                std::net::IpAddr::V6(_) => format!("[{ip_text}]:{}", local.port()),
            },
        ));
    }
    if ip.is_loopback() {
        return Some((scheme, format!("localhost:{}", local.port())));
    }
    None
}
