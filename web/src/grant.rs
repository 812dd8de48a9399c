//! Credentials Airlock issues to a client it has authenticated: the bearer token of the OCI token
//! flow (`/v2/token`), and the grant a blob redirect carries to the direct URL, which ollama
//! fetches without any `Authorization` (it treats the target like a CDN URL).
//!
//! A credential is `alk1.<client name>.<expiry>.<mac>`, the mac an HMAC-SHA256 over the scope,
//! the name and the expiry under a key drawn at start-up. So it names the client without
//! carrying its token, expires by itself, is bound to its scope (a blob grant opens one blob),
//! and stops working when the server restarts (clients then run the token flow again).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a `/v2/token` bearer token lasts (clients ask again after a 401).
pub const REGISTRY_TTL: Duration = Duration::from_secs(300);
/// How long a blob redirect's grant lasts: ollama resolves the direct URL once and fetches every
/// part of a large blob from it, which can take hours on a slow link.
pub const BLOB_TTL: Duration = Duration::from_secs(12 * 3600);

const PREFIX: &str = "alk1.";

/// What a credential opens.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The registry API, as a bearer token.
    Registry,
    /// One blob's direct URL (the digest as the path names it).
    Blob(&'a str),
}

impl Scope<'_> {
    fn tag(&self) -> String {
        match self {
            Scope::Registry => "registry".into(),
            Scope::Blob(d) => format!("blob:{d}"),
        }
    }
}

/// The issuing key.
pub struct Grants {
    key: [u8; 32],
}

impl Default for Grants {
    fn default() -> Self {
        Self::new()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Grants {
    /// A fresh key from the OS's random source.
    pub fn new() -> Grants {
        let mut key = [0u8; 32];
        // Without randomness nothing Airlock issues could be trusted: stop rather than use a
        // guessable key (getrandom fails only on a broken system).
        getrandom::getrandom(&mut key).expect("the OS random source works");
        Grants { key }
    }

    fn mac(&self, scope: Scope<'_>, name: &str, expiry: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: the expect cannot fire.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("{}\n{name}\n{expiry}", scope.tag()).as_bytes());
        mac
    }

    /// A credential naming `name` for `scope`, valid for `ttl`.
    pub fn issue(&self, name: &str, scope: Scope<'_>, ttl: Duration) -> String {
        let expiry = now_secs() + ttl.as_secs();
        let tag = self.mac(scope, name, expiry).finalize().into_bytes();
        format!("{PREFIX}{name}.{expiry}.{}", hex::encode(tag))
    }

    /// The client name a credential carries, if it is ours, unexpired and for `scope`.
    pub fn check(&self, credential: &str, scope: Scope<'_>) -> Option<String> {
        let rest = credential.strip_prefix(PREFIX)?;
        let mut parts = rest.rsplitn(3, '.');
        let (tag, expiry, name) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry: u64 = expiry.parse().ok()?;
        if expiry < now_secs() {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        // verify_slice compares in constant time.
        self.mac(scope, name, expiry).verify_slice(&tag).ok()?;
        Some(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_opens_its_scope_only_and_cannot_be_edited() {
        let g = Grants::new();
        let t = g.issue("ci.bot", Scope::Registry, REGISTRY_TTL);
        assert_eq!(g.check(&t, Scope::Registry).as_deref(), Some("ci.bot"));
        assert_eq!(g.check(&t, Scope::Blob("sha256:00")), None);
        let b = g.issue("ci.bot", Scope::Blob("sha256:aa"), BLOB_TTL);
        assert_eq!(
            g.check(&b, Scope::Blob("sha256:aa")).as_deref(),
            Some("ci.bot")
        );
        assert_eq!(g.check(&b, Scope::Blob("sha256:bb")), None);
        assert_eq!(
            g.check(&t.replace("ci.bot", "ci.bou"), Scope::Registry),
            None
        );
        assert_eq!(
            Grants::new().check(&t, Scope::Registry),
            None,
            "another key"
        );
        let expired = g.issue("x", Scope::Registry, Duration::ZERO);
        let old = expired.replace(
            &format!(".{}.", now_secs()),
            &format!(".{}.", now_secs() - 10),
        );
        assert_eq!(g.check(&old, Scope::Registry), None);
        assert_eq!(g.check("alk1.", Scope::Registry), None);
        assert_eq!(g.check("garbage", Scope::Registry), None);
    }
}
