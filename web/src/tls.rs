//! HTTPS: the server's certificate, held by a rustls resolver whose `CertifiedKey` is swapped in
//! place when the files change (or on SIGHUP). A handshake takes the key current at that moment,
//! so open connections keep theirs and are never dropped by a reload.
//!
//! A reload that fails (a half-written file, a key that does not match the certificate) keeps the
//! certificate being served and logs why: a rotation mistake must not take the mirror down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are looked at for a change.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The serving certificate and where it comes from.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// (modified time, length) of both files when last read, to notice a change.
    seen: RwLock<Stamp>,
}

type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [one(cert), one(key)]
}

/// Reads a PEM chain and key and checks that they belong together.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("[tls] cert_file {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("[tls] cert_file {}: not PEM certificates", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "[tls] cert_file {} holds no certificate",
        cert.display()
    );
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("[tls] key_file {}: no PEM private key", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .with_context(|| format!("[tls] key_file {}: unusable key", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().with_context(|| {
        format!(
            "[tls] key_file {} does not belong to cert_file {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(ck)
}

impl CertStore {
    /// Reads both files; fails (Airlock does not start) if they are unusable.
    pub fn open(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<CertStore>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = stamp(cert_file, key_file);
        let ck = load(cert_file, key_file, &provider)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(ck)),
            seen: RwLock::new(seen),
        }))
    }

    /// The rustls server configuration that resolves through this store. actix-web adds the
    /// ALPN protocols (h2, http/1.1).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        Ok(
            rustls::ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        )
    }

    /// Reads the files again and swaps the certificate in. Blocking (file reads).
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = stamp(&self.cert_file, &self.key_file);
        let loaded = load(&self.cert_file, &self.key_file, &self.provider);
        // Remember what was read even if it failed, so a broken file is reported once, not
        // every poll; the next change of either file is tried again.
        if let Ok(mut s) = self.seen.write() {
            *s = seen;
        }
        let ck = loaded?;
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(ck);
        }
        Ok(())
    }

    /// Reloads if either file changed since it was last read. Blocking.
    pub fn reload_if_changed(&self) -> Option<anyhow::Result<()>> {
        let now = stamp(&self.cert_file, &self.key_file);
        let changed = self.seen.read().map(|s| *s != now).unwrap_or(true);
        changed.then(|| self.reload())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock means a writer panicked mid-swap; the Arc inside is still whole.
        Some(match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }
}

/// Watches for SIGHUP and for file changes on the engine runtime (file reads stay off the HTTP
/// event loops), reloading the certificate.
pub fn watch(store: Arc<CertStore>, rt: &tokio::runtime::Handle) {
    let handle = rt.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; the certificate is reloaded on file changes only");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
            };
            let s = store.clone();
            let outcome = handle
                .spawn_blocking(move || {
                    if forced {
                        Some(s.reload())
                    } else {
                        s.reload_if_changed()
                    }
                })
                .await;
            match outcome {
                Ok(Some(Ok(()))) => tracing::info!(
                    cert = %store.cert_file.display(),
                    trigger = if forced { "SIGHUP" } else { "file change" },
                    "TLS certificate reloaded"
                ),
                Ok(Some(Err(e))) => tracing::error!(
                    error = format!("{e:#}"),
                    "TLS certificate not reloaded; still serving the previous one"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
            }
        }
    });
}
