//! Dashboard sessions: an admin token carried in an `HttpOnly` cookie instead of an
//! `Authorization` header, and the CSRF token every write made with that cookie must repeat in
//! a header.
//!
//! The CSRF token is derived from the session token (SHA-256 over a label and the token), so it
//! needs no storage, is bound to the one session, and does not reveal the token: the page can
//! read it (a second, readable cookie) while the session token stays out of reach of scripts.
//! A cross-site page can neither read that cookie nor set the header on a request that carries
//! the session cookie (`SameSite=Strict`, no CORS).

use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

/// The cookie holding the session's admin token (`HttpOnly`).
pub const SESSION_COOKIE: &str = "signalbox_session";
/// The readable cookie holding the session's CSRF token.
pub const CSRF_COOKIE: &str = "signalbox_csrf";
/// The header a cookie-authenticated write must carry, equal to the CSRF token.
pub const CSRF_HEADER: &str = "x-signalbox-csrf";

/// The CSRF token of a session token.
pub fn csrf_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"signalbox dashboard csrf v1\0");
    h.update(session_token.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Methods that never change anything: a session needs no CSRF header for them.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request carries the CSRF token of `session_token` (constant-time compare).
pub fn csrf_ok(headers: &HeaderMap, session_token: &str) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let want = csrf_for(session_token);
    let (a, b) = (sent.trim().as_bytes(), want.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others_and_csrf_is_bound_to_the_token() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; signalbox_session=sbxa-abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("signalbox_csrf=x"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("sbxa-abc"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "missing"), None);
        assert!(!csrf_ok(&h, "sbxa-abc"));
        let good = csrf_for("sbxa-abc");
        h.insert(CSRF_HEADER, HeaderValue::from_str(&good).unwrap());
        assert!(csrf_ok(&h, "sbxa-abc"));
        assert!(!csrf_ok(&h, "sbxa-other"));
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(good.len(), 64);
    }
}
