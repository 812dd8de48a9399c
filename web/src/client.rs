//! Who is asking: the client as requests and the audit log name it.

use actix_web::HttpRequest;

/// `<address>`, plus a short fingerprint of the bearer token if one was sent (the token itself
/// is never recorded).
pub fn describe(req: &HttpRequest) -> String {
    let addr = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) => format!(
            "{addr} token:{}",
            &verifier::Digest::of(t.as_bytes()).hex()[..8]
        ),
        None => addr,
    }
}
