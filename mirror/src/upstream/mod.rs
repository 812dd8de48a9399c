//! Upstream clients: the only code that talks to the network. One `reqwest::Client` per upstream,
//! built at start-up; redirects are followed only to the upstream's own origin and to the
//! configured `redirect_hosts`. Every client is built by [`client`], so `[upstream]` (proxy, extra
//! roots) applies to all of them: the Hub API, the CDN it redirects to, and the OCI registry. The
//! redirect check looks at the URL asked for, so it holds through a proxy as well.

pub mod hf;
pub mod oci;

use crate::config::UpstreamConfig;
use crate::error::MirrorError;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// The host-and-port allow list for redirects.
#[derive(Debug, Clone)]
pub(crate) struct HostList {
    entries: Vec<(String, Option<u16>)>,
}

impl HostList {
    pub(crate) fn new(origin: &url::Url, extra: &[String]) -> Result<HostList, MirrorError> {
        let mut entries = Vec::new();
        if let Some(host) = origin.host_str() {
            entries.push((host.to_ascii_lowercase(), origin.port_or_known_default()));
        }
        for e in extra {
            let parsed = url::Url::parse(&format!("http://{e}"))
                .ok()
                .filter(|u| u.path() == "/" && u.username().is_empty() && u.query().is_none())
                .and_then(|u| u.host_str().map(|h| (h.to_ascii_lowercase(), u.port())))
                .ok_or_else(|| {
                    MirrorError::Config(format!("redirect_hosts: {e:?} is not host[:port]"))
                })?;
            entries.push(parsed);
        }
        Ok(HostList { entries })
    }

    /// Whether `url` may be fetched. An entry without a port allows only the scheme's default port,
    /// so `cdn.example` does not open `cdn.example:22`.
    pub(crate) fn allows(&self, url: &url::Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|(h, p)| *h == host && p.map_or(url.port().is_none(), |p| p == port))
    }
}

/// Parses an upstream base URL (`key` names the config key in errors) and builds its client,
/// whose redirects may go only to the upstream's own origin and to `redirect_hosts`.
pub(crate) fn base_and_client(
    upstream: &str,
    redirect_hosts: &[String],
    key: &str,
    net: &UpstreamConfig,
) -> Result<(url::Url, reqwest::Client), MirrorError> {
    let base = url::Url::parse(upstream.trim_end_matches('/'))
        .map_err(|e| MirrorError::Config(format!("{key}: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(MirrorError::Config(format!("{key} must be http(s)")));
    }
    let hosts = HostList::new(&base, redirect_hosts)?;
    Ok((base, client(hosts, net)?))
}

/// Builds a client whose redirect policy enforces `hosts`, connecting as `[upstream]` says.
pub(crate) fn client(
    hosts: HostList,
    net: &UpstreamConfig,
) -> Result<reqwest::Client, MirrorError> {
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("too many redirects")
        } else if hosts.allows(attempt.url()) {
            attempt.follow()
        } else {
            let shown = format!(
                "redirect to unlisted host {}:{} refused (not in redirect_hosts)",
                attempt.url().host_str().unwrap_or("?"),
                attempt.url().port_or_known_default().unwrap_or(0)
            );
            attempt.error(shown)
        }
    });
    let mut builder = reqwest::Client::builder()
        // The bundled Mozilla roots always; the system store only when asked for (the feature
        // that can read it would otherwise turn it on by default).
        .tls_built_in_webpki_certs(true)
        .tls_built_in_native_certs(net.use_system_roots);
    for path in &net.ca_files {
        for cert in read_roots(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(proxy) = &net.proxy {
        // Without this, reqwest reads HTTPS_PROXY / HTTP_PROXY / ALL_PROXY itself; NO_PROXY
        // applies either way.
        let p = reqwest::Proxy::all(proxy)
            .map_err(|e| MirrorError::Config(format!("[upstream] proxy = {proxy:?}: {e}")))?
            .no_proxy(reqwest::NoProxy::from_env());
        builder = builder.proxy(p);
    }
    builder
        .redirect(policy)
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| MirrorError::Config(format!("HTTP client: {e}")))
}

/// The certificates of one `[upstream] ca_files` entry (PEM, one or more).
fn read_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, MirrorError> {
    let pem = std::fs::read(path).map_err(MirrorError::io(path))?;
    let bad = |why: String| {
        MirrorError::Config(format!("[upstream] ca_files: {}: {why}", path.display()))
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Describes a reqwest error for a client-visible message: a short category, plus our own
/// redirect refusal (which names the unlisted host, useful to the operator and no secret). The
/// full cause chain, which carries the client library's internals, is logged here instead.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut chain = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    tracing::debug!(error = %e, cause = %chain, "upstream request failed");
    if e.is_redirect() {
        let why = chain.rsplit(": ").next().unwrap_or("").trim();
        return if why.starts_with("redirect to unlisted host") {
            why.to_owned()
        } else {
            "redirect refused".into()
        };
    }
    // rustls says "invalid peer certificate: UnknownIssuer" (or NotValidForName, Expired, …):
    // the one failure the operator fixes in config, so it is named, with the fix.
    if let Some(at) = chain.find("invalid peer certificate") {
        let why = chain[at..]
            .split(": ")
            .take(2)
            .collect::<Vec<_>>()
            .join(": ");
        let host = e.url().and_then(|u| u.host_str()).unwrap_or("?");
        tracing::warn!(host, cause = %chain, "upstream TLS certificate refused");
        return format!(
            "TLS certificate of {host} not trusted ({why}); if a proxy re-signs TLS, add its CA \
             to [upstream] ca_files"
        );
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "unreachable (connection failed)".into()
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the body".into()
    } else {
        "request failed".into()
    }
}

/// Reads a whole (small) response body, refusing more than `limit` bytes, so a hostile upstream
/// cannot make Airlock buffer without bound.
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, MirrorError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(MirrorError::Upstream(format!(
            "response larger than {limit} bytes"
        )));
    }
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| MirrorError::Upstream(describe(&e)))?;
        if buf.len() + chunk.len() > limit {
            return Err(MirrorError::Upstream(format!(
                "response larger than {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses `Retry-After` in seconds (the HTTP-date form is treated as "a few seconds").
pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    Some(v.trim().parse::<u64>().unwrap_or(5).min(120))
}

/// A response carrying file bytes.
pub struct FileResponse {
    /// The response, positioned at the first byte asked for.
    pub response: reqwest::Response,
    /// Whether the upstream honoured the `Range` (206); if not, the body starts at byte 0.
    pub partial: bool,
}

/// A failure to open a file, split by whether retrying can help.
#[derive(Debug)]
pub enum OpenError {
    /// Worth retrying (network trouble, 5xx, 429), after `retry_after` seconds if given.
    Transient {
        /// What happened.
        detail: String,
        /// Upstream's `Retry-After`.
        retry_after: Option<u64>,
    },
    /// Retrying will not help (4xx, refused redirect, inconsistent headers).
    Permanent(String),
}

/// Which bytes of a file to ask for: `start..end`, or `start..` to the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte; `None` for the rest of the file.
    pub end: Option<u64>,
}

impl ByteRange {
    /// The `Range` header value, or `None` for the whole file.
    fn header(&self) -> Option<String> {
        match self.end {
            None if self.start == 0 => None,
            None => Some(format!("bytes={}-", self.start)),
            Some(end) => Some(format!("bytes={}-{}", self.start, end.saturating_sub(1))),
        }
    }
}

/// Counts the requests one upstream client sends, by answer class (`/metrics`).
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub upstream: &'static str,
}

impl Meter {
    /// Sends `req` and counts it.
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let sent = req.send().await;
        let status = sent.as_ref().ok().map(|r| r.status().as_u16());
        self.metrics.upstream_request(self.upstream, status);
        sent
    }
}

/// Sends a GET for file bytes (a `Range` request unless the whole file is asked for) and
/// classifies the answer. `label` names the file in messages.
pub(crate) async fn open_ranged(
    meter: &Meter,
    req: reqwest::RequestBuilder,
    range: ByteRange,
    label: &str,
) -> Result<FileResponse, OpenError> {
    use reqwest::{header, StatusCode};
    let mut req = req.header(header::ACCEPT_ENCODING, "identity");
    let asked = range.header();
    if let Some(h) = &asked {
        req = req.header(header::RANGE, h.as_str());
    }
    let offset = range.start;
    let resp = meter.send(req).await.map_err(|e| {
        if e.is_redirect() {
            OpenError::Permanent(describe(&e))
        } else {
            OpenError::Transient {
                detail: describe(&e),
                retry_after: None,
            }
        }
    })?;
    let status = resp.status();
    match status {
        StatusCode::OK => Ok(FileResponse {
            response: resp,
            partial: false,
        }),
        StatusCode::PARTIAL_CONTENT if asked.is_some() => {
            let start = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(OpenError::Permanent(
                    "upstream answered a different range than asked".into(),
                ));
            }
            Ok(FileResponse {
                response: resp,
                partial: true,
            })
        }
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::REQUEST_TIMEOUT => Err(OpenError::Transient {
            detail: format!("answered {status}"),
            retry_after: retry_after(&resp),
        }),
        s if s.is_server_error() => Err(OpenError::Transient {
            detail: format!("answered {s}"),
            retry_after: None,
        }),
        s => Err(OpenError::Permanent(format!("answered {s} for {label}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_list() {
        let origin = url::Url::parse("https://huggingface.co").unwrap();
        let l = HostList::new(&origin, &["cdn.example".into(), "127.0.0.1:9000".into()]).unwrap();
        let ok = |u: &str| l.allows(&url::Url::parse(u).unwrap());
        assert!(ok("https://huggingface.co/x"));
        assert!(ok("https://cdn.example/blob?sig=1"));
        assert!(!ok("https://cdn.example:22/"));
        assert!(ok("http://127.0.0.1:9000/a"));
        assert!(!ok("http://127.0.0.1:9001/a"));
        assert!(!ok("http://127.0.0.2:9000/a"));
        assert!(!ok("file:///etc/passwd"));
        assert!(HostList::new(&origin, &["http://x/y".into()]).is_err());
    }
}
