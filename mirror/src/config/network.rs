//! The enterprise-network parts of the configuration: `[tls]` (how Airlock serves), `[upstream]`
//! (how it reaches the upstreams through a corporate network) and `[[governance.revoked_keys]]`
//! (key rotation).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[tls]`: serve HTTPS on `listen`. Both files are PEM and are read again on SIGHUP or when
/// either changes, without dropping open connections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain (leaf first). TLS is on when this and `key_file` are set.
    pub cert_file: Option<PathBuf>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// A plain-HTTP listener that answers `/healthz` only (for probes that cannot do TLS); no
    /// other route is served on it, so tokens never cross it.
    pub plain_listen: Option<SocketAddr>,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on.
    pub fn files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// `[upstream]`: how every upstream client (HF API, its CDN, the OCI registry) connects.
/// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` from the environment apply when
/// `proxy` is not set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// An HTTP proxy (`http://proxy:3128`, credentials in the URL if needed) for every upstream
    /// request; HTTPS goes through it with CONNECT. `NO_PROXY` still exempts hosts.
    pub proxy: Option<String>,
    /// PEM files of extra root certificates (a corporate CA that re-signs TLS), trusted in
    /// addition to the bundled roots.
    pub ca_files: Vec<PathBuf>,
    /// Also trust the operating system's certificate store.
    pub use_system_roots: bool,
}

/// `[[governance.revoked_keys]]`: a governance key that counts only for records signed before
/// `since`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedKeyConfig {
    /// The public key (PEM).
    pub key: PathBuf,
    /// From when (RFC 3339) its signatures no longer count.
    pub since: signing::Timestamp,
    /// Why, shown in refusals.
    #[serde(default)]
    pub reason: Option<String>,
}
