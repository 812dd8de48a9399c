//! The operators' endpoints, outside every protocol's policy (no client token, no allow rules):
//! `/healthz` (the process answers), `/readyz` (the store takes a file, the audit log takes an
//! entry, the index answers; 503 naming the failing check otherwise) and `/metrics` (Prometheus
//! scrape, OpenMetrics text). `/metrics` is open unless `[metrics] token` is set: it shows counts
//! by fixed labels, never names, paths or clients.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use mirror::{Mirror, Secret};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The OpenMetrics content type (Prometheus negotiates it; its parser then reads `# EOF`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

/// The front doors' request counters (the engine keeps its own, see [`mirror::Metrics`]).
pub struct HttpMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<ProtocolLabel, Counter>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("airlock_http");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by protocol, route pattern and status",
            requests.clone(),
        );
        let bytes = Family::<ProtocolLabel, Counter>::default();
        registry.register(
            "response_bytes",
            "Bytes of response bodies with a declared length (files, blobs, listings)",
            bytes.clone(),
        );
        HttpMetrics {
            registry,
            requests,
            bytes,
        }
    }
}

impl HttpMetrics {
    /// One answered request.
    pub fn observe(&self, protocol: &'static str, route: &'static str, status: u16, bytes: u64) {
        self.requests
            .get_or_create(&RequestLabels {
                protocol,
                route,
                status,
            })
            .inc();
        if bytes > 0 {
            self.bytes
                .get_or_create(&ProtocolLabel { protocol })
                .inc_by(bytes);
        }
    }
}

/// `[metrics] token`, as app data.
#[derive(Clone, Default)]
pub struct MetricsToken(pub Option<Secret>);

/// The route pattern of an operators' path.
pub fn pattern(path: &str) -> &'static str {
    match path {
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        _ => "/readyz",
    }
}

/// Registers `/healthz`, `/readyz` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(mirror: web::Data<Arc<Mirror>>) -> HttpResponse {
    let m = mirror.get_ref().clone();
    // A small write, an fsync and an open: off the event loop.
    let checks = match web::block(move || m.readiness()).await {
        Ok(c) => c,
        Err(e) => vec![("probe", Err(format!("the check did not run: {e}")))],
    };
    let failing: Vec<String> = checks
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    let report: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            };
            ((*name).to_owned(), serde_json::Value::String(v))
        })
        .collect();
    if failing.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready", "checks": report}))
    } else {
        tracing::warn!(failing = %failing.join("; "), "not ready");
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .json(serde_json::json!({"status": "not ready", "failing": failing, "checks": report}))
    }
}

async fn metrics(
    req: HttpRequest,
    mirror: web::Data<Arc<Mirror>>,
    http: web::Data<HttpMetrics>,
    token: web::Data<MetricsToken>,
) -> HttpResponse {
    if let Some(want) = &token.0 {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Comparing digests, not the tokens: the time taken says nothing about how much of a
        // guess matched.
        if verifier::Digest::of(given.as_bytes()) != verifier::Digest::of(want.expose().as_bytes())
        {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"airlock-metrics\""))
                .body("missing or wrong [metrics] token\n");
        }
    }
    let mut out = String::new();
    mirror.encode_metrics(&mut out);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &http.registry);
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    HttpResponse::Ok().content_type(OPENMETRICS).body(out)
}
