//! Who is asking: the one place a request's credentials become a [`Caller`] (a configured client,
//! an anonymous one, or an unknown token), for every protocol.
//!
//! Credentials are what each client already sends: huggingface_hub sends `HF_TOKEN` as
//! `Authorization: Bearer …`; OCI clients send basic auth (the token as the password, or as the
//! user name when there is no password) or a bearer token, which is either a client token or one
//! Airlock issued at `/v2/token` (see [`crate::grant`]). A client's `Authorization` is read here
//! and nowhere else, and never travels upstream: the upstream clients build their own requests
//! with the upstream token.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use base64::Engine;
use mirror::{Caller, Clients};

use crate::grant::{Grants, Scope};

/// The client registry and the token rule, built once at start-up and shared (app data).
pub struct Identity {
    clients: Arc<Clients>,
    require_token: bool,
    grants: Grants,
}

impl Identity {
    /// `require_token`: `[policy] require_client_token`.
    pub fn new(clients: Arc<Clients>, require_token: bool) -> Identity {
        Identity {
            clients,
            require_token,
            grants: Grants::new(),
        }
    }

    /// The configured clients (the admin guard looks up admin-role tokens here).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The credentials Airlock issues to authenticated clients.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
}

/// Why a caller is refused when `[policy] require_client_token` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No credentials at all.
    Missing,
    /// Credentials no `[[clients]]` entry knows.
    Unknown,
}

impl Unauthorized {
    /// What the client is told (each protocol's error mapping wraps it in its own envelope).
    pub fn message(self) -> &'static str {
        match self {
            Unauthorized::Missing => {
                "airlock: this mirror requires a client token; set HF_TOKEN (huggingface_hub) \
                 or registry credentials (OCI clients) to the token your Airlock operators \
                 issued you"
            }
            Unauthorized::Unknown => {
                "airlock: the client token is not known to this mirror; check HF_TOKEN or the \
                 registry credentials (a Hugging Face token is not an Airlock client token)"
            }
        }
    }
}

/// The token the request carries: `Bearer <token>`, or basic auth's password (its user name when
/// the password is empty; `docker login` style clients put a lone token in either field).
pub fn token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let token = if password.is_empty() { user } else { password };
        return (!token.is_empty()).then(|| token.to_owned());
    }
    None
}

/// How far an ollama token request's `ts` may be from now: the signature covers the URL with its
/// `ts` and `nonce`, so a captured request stops working after this.
const OLLAMA_SKEW_SECS: i64 = 300;

/// The configured client whose ollama key signed this token request. ollama sends
/// `Authorization: <base64 SSH public key>:<base64 ed25519 signature>` over
/// `GET,<the request URL>,<base64(hex(sha256("")))>` to the challenge's realm (its `auth.Sign`,
/// shared/docs/ollama-protocol.md §1.5); the URL carries `ts` and `nonce`.
pub fn ollama_signer(req: &HttpRequest, id: &Identity) -> Option<Arc<mirror::Client>> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    if value.contains(' ') {
        return None; // Basic or Bearer: a scheme, not a signature.
    }
    let (key_b64, sig_b64) = value.split_once(':')?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = mirror::ollama_key_from_wire(&b64.decode(key_b64).ok()?)?;
    let client = id.clients.by_ollama_key(&key)?;
    let sig: [u8; 64] = b64.decode(sig_b64).ok()?.try_into().ok()?;
    let ts: i64 = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("ts="))?
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    if (now - ts).abs() > OLLAMA_SKEW_SECS {
        return None;
    }
    // The URL as the client built it: the realm we named (this server's checked base URL) plus
    // the path and query exactly as they arrived.
    let base = req
        .app_data::<web::Data<crate::origin::Origin>>()?
        .base_url(req);
    let url = format!("{}{}", base.trim_end_matches('/'), req.uri());
    let empty = hex::encode(verifier::Digest::of(b"").as_bytes());
    let data = format!("GET,{url},{}", b64.encode(empty));
    VerifyingKey::from_bytes(&key)
        .ok()?
        .verify_strict(data.as_bytes(), &Signature::from_bytes(&sig))
        .ok()?;
    Some(client)
}

fn address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn identity(req: &HttpRequest) -> Option<&Identity> {
    req.app_data::<web::Data<Identity>>().map(|d| d.get_ref())
}

/// Resolves the caller, accepting a credential Airlock issued for `scope` besides client tokens.
fn resolve_with(req: &HttpRequest, extra: Option<(&str, Scope<'_>)>) -> Caller {
    let addr = address(req);
    let Some(id) = identity(req) else {
        return Caller::anonymous(addr);
    };
    let issued = extra
        .and_then(|(grant, scope)| id.grants.check(grant, scope))
        .and_then(|name| id.clients.named(&name));
    if let Some(client) = issued {
        return Caller::named(client, addr);
    }
    match token(req) {
        None => Caller::anonymous(addr),
        Some(t) => match id.clients.authenticate(&t).or_else(|| {
            id.grants
                .check(&t, Scope::Registry)
                .and_then(|name| id.clients.named(&name))
        }) {
            Some(client) => Caller::named(client, addr),
            None => Caller::unknown(&t, addr),
        },
    }
}

/// Who is asking (no rule applied): for the audit lines of requests that are not protocol
/// traffic (the admin API's failed logins).
pub fn caller(req: &HttpRequest) -> Caller {
    resolve_with(req, None)
}

/// Who is asking, with `[policy] require_client_token` applied: an anonymous caller or an unknown
/// token is refused when it is on.
pub fn admit(req: &HttpRequest) -> Result<Caller, Unauthorized> {
    admit_with(req, None)
}

/// [`admit`], also accepting `grant` (a credential Airlock issued) for `scope`.
pub fn admit_with(
    req: &HttpRequest,
    grant: Option<(&str, Scope<'_>)>,
) -> Result<Caller, Unauthorized> {
    let caller = resolve_with(req, grant);
    let required = identity(req).is_some_and(|id| id.require_token);
    if !required || caller.client().is_some() {
        return Ok(caller);
    }
    let why = if token(req).is_some() {
        Unauthorized::Unknown
    } else {
        Unauthorized::Missing
    };
    tracing::info!(client = %caller, reason = ?why, "client token required; refused");
    Err(why)
}

/// `<address>`, plus a short fingerprint of the token if one was sent (the token itself is never
/// recorded), or the client's name.
pub fn describe(req: &HttpRequest) -> String {
    caller(req).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn tokens_from_bearer_and_basic() {
        let t = |v: &str| {
            token(
                &TestRequest::default()
                    .insert_header((header::AUTHORIZATION, v))
                    .to_http_request(),
            )
        };
        assert_eq!(t("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(t("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(t(&basic("user:tok")).as_deref(), Some("tok"));
        assert_eq!(t(&basic("tok:")).as_deref(), Some("tok"));
        assert_eq!(t(&basic("tok")).as_deref(), Some("tok"));
        assert_eq!(t("Basic !!!"), None);
        assert_eq!(t("Bearer "), None);
        assert_eq!(t("Digest x"), None);
        assert_eq!(token(&TestRequest::default().to_http_request()), None);
    }
}
