//! Web UI sessions: a random id in a cookie, the rest in a server-side table.
//!
//! The cookie carries only a 256-bit id from the OS random source (`HttpOnly`, `SameSite=Strict`,
//! `Path=/ui`, `Secure` when the request came over https). The table maps the id to who logged in
//! and the session's CSRF token; it is bounded ([`MAX_SESSIONS`]) and every entry expires
//! ([`LIFETIME`]), so neither a long uptime nor many logins can grow it without limit. Logging out
//! removes the entry, so a copied cookie dies with it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "airlock_ui";
/// How long a session lives after login (a working day); then the reviewer logs in again.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once. Only a valid token creates one, so this bounds memory against a
/// script logging in in a loop; past it the oldest session is dropped.
pub const MAX_SESSIONS: usize = 1000;

/// Who a session belongs to and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The reviewer's name as decisions are audited under it (`admin` for the admin token, else
    /// the `[[clients]]` name).
    pub who: String,
    /// The per-session CSRF token every form carries (64 hex digits).
    pub csrf: String,
    expires: Instant,
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

/// The cookie of the login form's CSRF token (before there is a session to hold one).
pub const LOGIN_COOKIE: &str = "airlock_ui_login";

/// 32 random bytes as 64 hex digits.
pub fn random_hex() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Sessions {
    /// Starts a session for `who`; returns its id (the cookie value) and the session.
    pub fn create(&self, who: &str, now: Instant) -> Result<(String, Session), getrandom::Error> {
        let id = random_hex()?;
        let session = Session {
            who: who.to_owned(),
            csrf: random_hex()?,
            expires: now + LIFETIME,
        };
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, s| s.expires > now);
        while t.len() >= MAX_SESSIONS {
            // Full of live sessions: the one closest to expiry (the oldest login) goes.
            let Some(oldest) = t
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            t.remove(&oldest);
        }
        t.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session with this id. The lookup is a hash-map probe on a 256-bit random value:
    /// timing can reveal nothing useful about other ids.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match t.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                t.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

/// The `Set-Cookie` value that installs session `id`.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value of the login form's CSRF token: the form carries the same value, and a
/// `SameSite=Strict` cookie is not sent with another site's post, so a forged login is refused.
pub fn login_cookie(token: &str, secure: bool) -> String {
    format!(
        "{LOGIN_COOKIE}={token}; Path=/ui/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    named_cookie(header, COOKIE)
}

/// A 64-hex-digit cookie `name` in a `Cookie` header.
pub fn named_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, sess) = s.create("alice", t0).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sess.csrf.len(), 64);
        assert_ne!(id, sess.csrf);
        assert_eq!(s.get(&id, t0).unwrap().who, "alice");
        assert!(s.get(&id, t0 + LIFETIME).is_none(), "expired");
        assert!(s.get(&id, t0).is_none(), "an expired session is removed");
        for _ in 0..MAX_SESSIONS + 10 {
            s.create("bob", t0).unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let (id, _) = s.create("carol", t0).unwrap();
        s.remove(&id);
        assert!(s.get(&id, t0).is_none());
    }

    #[test]
    fn cookies() {
        let id = "a".repeat(64);
        assert_eq!(
            cookie_value(&format!("x=1; {COOKIE}={id}; y=2")),
            Some(id.as_str())
        );
        assert_eq!(cookie_value(&format!("{COOKIE}=short")), None);
        assert_eq!(cookie_value("other=1"), None);
        let c = set_cookie(&id, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/ui"));
        assert!(c.ends_with("; Secure"));
        assert!(!set_cookie(&id, false).contains("Secure"));
    }
}
