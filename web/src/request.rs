//! What happens around every request: its [`RequestId`] (taken from a well-formed incoming
//! `X-Request-Id` or drawn fresh, returned in `X-Request-Id`, and a field of the tracing span that
//! every log line of the request is written in), and its count in `/metrics` by protocol, route
//! pattern and status.

use std::fmt;
use std::future::Future;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, Error};
use tracing::Instrument;

use crate::ops::HttpMetrics;

/// The header a request id travels in.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id: 1 to 64 characters of `A-Z a-z 0-9 - _ . :`, so it is safe in a header and a
/// log line (a proxy's UUID or trace id fits). Anything else the client sends is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The longest id accepted from a client.
    pub const MAX: usize = 64;

    /// A fresh id: 16 random bytes as hex.
    pub fn generate() -> RequestId {
        let mut bytes = [0u8; 16];
        // A failing random source would only make ids less unique; fall back to the clock.
        if getrandom::getrandom(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
        RequestId(hex::encode(bytes))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for RequestId {
    type Error = ();
    fn try_from(s: &str) -> Result<Self, ()> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if ok {
            Ok(RequestId(s.to_owned()))
        } else {
            Err(())
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A refusal's class, left in a response's extensions by the protocol error mappings so that the
/// refusal is counted here, once, whichever path answered it.
#[derive(Debug, Clone, Copy)]
pub struct RefusalClass(pub &'static str);

/// What `begin` learnt about a request, for `finish`.
pub struct Begun {
    id: RequestId,
    span: tracing::Span,
    protocol: &'static str,
    route: &'static str,
}

/// The protocol and route pattern of a path: bounded label values, never the raw path.
fn classify(method: &str, path: &str) -> (&'static str, &'static str) {
    match path {
        "/metrics" | "/healthz" | "/readyz" => {
            return ("ops", crate::ops::pattern(path));
        }
        _ => {}
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return ("oci", crate::ollama::pattern(path));
    }
    if path == "/admin" || path.starts_with("/admin/") {
        return ("admin", "/admin/*");
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return ("ui", "/ui/*");
    }
    ("hf", crate::hf::pattern(method, path))
}

/// Starts a request: its id (the client's if well formed) and its span.
pub fn begin(req: &actix_web::dev::ServiceRequest) -> Begun {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| RequestId::try_from(v).ok())
        .unwrap_or_else(RequestId::generate);
    let (protocol, route) = classify(req.method().as_str(), req.path());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route);
    Begun {
        id,
        span,
        protocol,
        route,
    }
}

/// Runs the rest of the request inside its span, then stamps `X-Request-Id` on the answer and
/// counts it. Handlers' errors arrive here as responses already; a middleware that returns an
/// `Err` instead passes through unstamped (guards answer with `ServiceRequest::error_response`).
pub fn finish<B, F>(
    begun: Begun,
    call: F,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, Error>>
where
    B: MessageBody + 'static,
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    let Begun {
        id,
        span,
        protocol,
        route,
    } = begun;
    async move {
        let mut res = call.await?.map_into_boxed_body();
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        let status = res.status().as_u16();
        tracing::debug!(status, "answered");
        if let Some(m) = res.request().app_data::<web::Data<HttpMetrics>>() {
            // A HEAD declares the length of a body it does not send.
            let head = res.request().method() == actix_web::http::Method::HEAD;
            let bytes = match res.response().body().size() {
                BodySize::Sized(n) if !head => n,
                _ => 0,
            };
            m.observe(protocol, route, status, bytes);
        }
        let refusal = res.response().extensions().get::<RefusalClass>().copied();
        if let (Some(RefusalClass(class)), Some(mirror)) = (
            refusal,
            res.request()
                .app_data::<web::Data<std::sync::Arc<mirror::Mirror>>>(),
        ) {
            mirror.metrics().refused_class(class);
        }
        Ok(res)
    }
    .instrument(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_clients_are_checked() {
        assert!(RequestId::try_from("3f2a-11:ab.CD_9").is_ok());
        assert!(RequestId::try_from("").is_err());
        assert!(RequestId::try_from("a b").is_err());
        assert!(RequestId::try_from("a\r\nSet-Cookie: x").is_err());
        assert!(RequestId::try_from("x".repeat(65).as_str()).is_err());
        let g = RequestId::generate();
        assert_eq!(g.as_str().len(), 32);
        assert_ne!(g, RequestId::generate());
    }

    #[test]
    fn routes_are_patterns_not_paths() {
        assert_eq!(classify("GET", "/metrics"), ("ops", "/metrics"));
        assert_eq!(
            classify("GET", "/v2/library/x/blobs/sha256:zz"),
            ("oci", "unmatched")
        );
        assert_eq!(
            classify("GET", "/v2/library/x/manifests/latest"),
            ("oci", "/v2/{name}/manifests/{reference}")
        );
        assert_eq!(
            classify("HEAD", "/acme/tiny/resolve/main/config.json"),
            ("hf", "/{repo}/resolve/{rev}/{path}")
        );
        assert_eq!(
            classify("GET", "/no/such/thing/at/all"),
            ("hf", "unmatched")
        );
        assert_eq!(
            classify("GET", "/admin/requests/req-1"),
            ("admin", "/admin/*")
        );
    }
}
