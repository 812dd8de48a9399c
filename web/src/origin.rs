//! How Airlock names itself in URLs it hands out: the tree `Link` header and the OCI blob
//! redirect. Request headers are the client's to write, so none reaches a URL unchecked: the
//! configured `public_url` wins; otherwise `Host` (and, only from a configured trusted proxy,
//! `Forwarded` / `X-Forwarded-*`) must pass a strict `host[:port]` grammar and an http|https
//! scheme, or the address the connection arrived on is used instead.

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use mirror::ProxyNet;

use crate::ollama::LocalAddr;

/// What the server knows about its own public name (app data).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `[governance] public_url`, without a trailing `/`.
    public_url: Option<String>,
    /// `trusted_proxies`.
    trusted: Vec<ProxyNet>,
    /// The listener speaks TLS: URLs default to https (a trusted proxy's header still decides).
    tls: bool,
}

/// A scheme and authority that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `host[:port]`, checked.
    pub authority: String,
}

impl Origin {
    /// From the configuration.
    pub fn new(public_url: Option<&str>, trusted: &[ProxyNet]) -> Origin {
        Origin {
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            trusted: trusted.to_vec(),
            tls: false,
        }
    }

    /// Marks the listener as HTTPS (`[tls]` on).
    pub fn with_tls(mut self, tls: bool) -> Origin {
        self.tls = tls;
        self
    }

    /// The scheme of this listener.
    pub fn own_scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The base (`scheme://authority[/prefix]`) of URLs pointing back at this server.
    pub fn base_url(&self, req: &HttpRequest) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let b = self
            .asked(req)
            .unwrap_or_else(|| local(req, self.own_scheme()));
        format!("{}://{}", b.scheme, b.authority)
    }

    /// Whether the request came from a trusted proxy (whose forwarding headers count).
    pub fn via_proxy(&self, req: &HttpRequest) -> bool {
        req.peer_addr()
            .is_some_and(|p| self.trusted.iter().any(|n| n.contains(p.ip())))
    }

    /// The scheme and authority the client used, if they pass the checks (forwarding headers
    /// count only from a trusted proxy).
    pub fn asked(&self, req: &HttpRequest) -> Option<Base> {
        let headers = req.headers();
        let via_proxy = self.via_proxy(req);
        let (scheme, host) = if via_proxy {
            forwarded(headers)
        } else {
            (None, None)
        };
        let host = match host {
            Some(h) => h,
            None => header(headers, "host")
                .map(str::to_owned)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))?,
        };
        let scheme = match scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => self.own_scheme(),
            Some("http") => "http",
            Some("https") => "https",
            Some(_) => return None,
        };
        valid_authority(&host).then_some(Base {
            scheme,
            authority: host,
        })
    }
}

/// The address the connection arrived on: always reachable by this client, never client-written.
fn local(req: &HttpRequest, scheme: &'static str) -> Base {
    let authority = match req.conn_data::<LocalAddr>().map(|l| l.0) {
        Some(std::net::SocketAddr::V4(a)) => a.to_string(),
        Some(std::net::SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
        None => "127.0.0.1".into(),
    };
    Base { scheme, authority }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The first hop's proto and host from `Forwarded` (RFC 7239), else `X-Forwarded-Proto` and
/// `X-Forwarded-Host`.
pub(crate) fn forwarded(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    if let Some(v) = header(headers, "forwarded") {
        let first = v.split(',').next().unwrap_or("");
        let mut proto = None;
        let mut host = None;
        for pair in first.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "proto" => proto = Some(v),
                    "host" => host = Some(v),
                    _ => {}
                }
            }
        }
        return (proto, host);
    }
    let first =
        |name| header(headers, name).map(|v| v.split(',').next().unwrap_or("").trim().to_owned());
    (first("x-forwarded-proto"), first("x-forwarded-host"))
}

/// `host[:port]`: a DNS name (letters, digits, `-`, `.`; labels of 1–63), an IPv4 address, or a
/// bracketed IPv6 address; the port, if any, 1–65535.
pub fn valid_authority(s: &str) -> bool {
    if s.is_empty() || s.len() > 261 || s.ends_with(':') {
        return false;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => ("", p),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (s, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)));
    if !port_ok {
        return false;
    }
    if s.starts_with('[') {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_authority;

    #[test]
    fn authority_grammar() {
        for ok in [
            "airlock",
            "a.example:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "[::1]",
            "x-y.z.",
        ] {
            assert!(valid_authority(ok), "{ok} refused");
        }
        for bad in [
            "",
            "evil.example>; rel=\"next\", <http://attacker",
            "a b",
            "a:0",
            "a:65536",
            "a:",
            "a:8080:1",
            "[::1",
            "[zz]:1",
            "-a.example",
            "a..b",
            "a/b",
            "a@b",
            "javascript:alert(1)",
        ] {
            assert!(!valid_authority(bad), "{bad:?} accepted");
        }
    }
}
