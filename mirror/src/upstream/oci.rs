//! An OCI-distribution registry as an upstream (registry.ollama.ai, or any distribution): fetch a
//! manifest by tag or digest with the docker-v2 `Accept`, open a blob (following the redirect to
//! the blob host only if it is listed; a plain 200 is accepted too, as distribution answers).

use reqwest::{header, StatusCode};
use url::Url;

use super::{describe, read_limited, FileResponse, OpenError};
use crate::config::{OllamaConfig, Secret};
use crate::error::MirrorError;
use crate::names::{OllamaName, Reference};
use verifier::Digest;

/// The manifest media type ollama asks for, and the only one it can read.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Manifests larger than this are refused (real ones are a few hundred bytes).
pub const MAX_MANIFEST: usize = 4 << 20;

/// What the registry said about a manifest.
#[derive(Debug, Clone)]
pub enum ManifestAnswer {
    /// The raw bytes and the `Content-Type` they came with.
    Found {
        /// Raw manifest bytes (kept byte for byte: their sha256 is the manifest digest).
        bytes: bytes::Bytes,
        /// Media type as served.
        content_type: String,
    },
    /// No such name or tag.
    NotFound(String),
    /// Access refused.
    Denied(String),
}

/// The registry client.
pub struct OciUpstream {
    client: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    meter: super::Meter,
}

impl OciUpstream {
    /// Builds the client from `[ollama]` and `[upstream]`; its requests are counted in `metrics`.
    pub fn new(
        cfg: &OllamaConfig,
        net: &crate::config::UpstreamConfig,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<OciUpstream, MirrorError> {
        let (base, client) =
            super::base_and_client(&cfg.upstream, &cfg.redirect_hosts, "ollama.upstream", net)?;
        Ok(OciUpstream {
            client,
            base,
            token: cfg.token.clone(),
            meter: super::Meter {
                metrics,
                upstream: "ollama",
            },
        })
    }

    fn get(&self, path: &str) -> Result<reqwest::RequestBuilder, MirrorError> {
        let base = self.base.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path}"))
            .map_err(|e| MirrorError::Upstream(format!("bad URL: {e}")))?;
        let req = self.client.get(url);
        Ok(match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        })
    }

    /// Fetches a manifest.
    pub async fn manifest(
        &self,
        name: &OllamaName,
        reference: &Reference,
    ) -> Result<ManifestAnswer, MirrorError> {
        let req = self
            .get(&format!(
                "/v2/{}/{}/manifests/{reference}",
                name.namespace(),
                name.model()
            ))?
            .header(header::ACCEPT, DOCKER_MANIFEST_V2);
        let resp = self
            .meter
            .send(req)
            .await
            .map_err(|e| MirrorError::Upstream(describe(&e)))?;
        let status = resp.status();
        match status {
            s if s.is_success() => {
                let content_type = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(DOCKER_MANIFEST_V2)
                    .to_owned();
                let bytes = read_limited(resp, MAX_MANIFEST).await?;
                Ok(ManifestAnswer::Found {
                    bytes,
                    content_type,
                })
            }
            StatusCode::NOT_FOUND => Ok(ManifestAnswer::NotFound(format!(
                "{name}:{reference} not found upstream"
            ))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(ManifestAnswer::Denied(
                format!("upstream answered {status}"),
            )),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Err(MirrorError::UpstreamBusy {
                    retry_after_secs: super::retry_after(&resp).unwrap_or(5),
                })
            }
            s => Err(MirrorError::Upstream(format!(
                "manifest request answered {s}"
            ))),
        }
    }

    /// Opens a blob (a range of it, or all).
    pub async fn open_blob(
        &self,
        name: &OllamaName,
        digest: &Digest,
        range: super::ByteRange,
    ) -> Result<FileResponse, OpenError> {
        let req = self
            .get(&format!(
                "/v2/{}/{}/blobs/{digest}",
                name.namespace(),
                name.model()
            ))
            .map_err(|e| OpenError::Permanent(e.to_string()))?;
        super::open_ranged(&self.meter, req, range, &digest.to_string()).await
    }
}
