//! The dashboard at `/ui`: static files compiled into the binary (plain HTML, CSS and
//! JavaScript modules from `crates/server/ui/`, no build step), and the session endpoints
//! `POST /ui/login` and `POST /ui/logout`. Every data call the page makes goes to the public
//! admin API, authenticated by the session cookie (see `admin::session`).
//!
//! Every `/ui` answer carries a strict Content-Security-Policy (scripts, styles and connections
//! from this origin only, no inline code, no framing), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use crate::admin::session::{CSRF_COOKIE, SESSION_COOKIE, cookie, csrf_for, csrf_ok};
use crate::admin::{AdminError, AdminState, password_login, rfc3339};
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;
use std::net::SocketAddr;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard's files: path under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../ui/favicon.svg"),
    ),
    (
        "js/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/app.js"),
    ),
    (
        "js/api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/api.js"),
    ),
    (
        "js/dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/dom.js"),
    ),
    (
        "js/charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/charts.js"),
    ),
    (
        "js/catalog.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/catalog.js"),
    ),
    (
        "js/pages/overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/overview.js"),
    ),
    (
        "js/pages/providers.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/providers.js"),
    ),
    (
        "js/pages/credentials.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/credentials.js"),
    ),
    (
        "js/pages/routing.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/routing.js"),
    ),
    (
        "js/pages/keys.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/keys.js"),
    ),
    (
        "js/pages/traces.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/traces.js"),
    ),
    (
        "js/pages/experiments.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/experiments.js"),
    ),
    (
        "js/pages/settings.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/js/pages/settings.js"),
    ),
];

/// The paths of the embedded files (for tests that check none is missing).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(p, _, _)| *p)
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/ui", get(redirect_to_index))
        .route("/ui/", get(index))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/{*path}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// What every answer a browser may reach with the session cookie carries: its Content
/// Security Policy, and no guessing of its type.
pub(crate) fn csp_and_nosniff(h: &mut http::HeaderMap, csp: &'static str) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    csp_and_nosniff(h, CONTENT_SECURITY_POLICY);
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn redirect_to_index() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response()
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        // Revalidated on every load, so a new binary's files are picked up at once.
        Some((_, ctype, bytes)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such dashboard file",
        )
            .into_response(),
    }
}

/// Whether the dashboard is reached over HTTPS (directly, or behind a proxy that says so):
/// the session cookies are then marked `Secure`.
fn over_https(headers: &HeaderMap) -> bool {
    let proto = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase())
    };
    proto("x-forwarded-proto").is_some_and(|v| v.split(',').next().map(str::trim) == Some("https"))
        || proto("forwarded").is_some_and(|v| v.contains("proto=https"))
}

/// A sign-in posted from another site is refused (login CSRF). The browser's own verdict
/// (`Sec-Fetch-Site`) decides when it sends one; otherwise the origin it names must be this
/// host, as the request reached Signalbox (`Host`) or as the client addressed it through a
/// reverse proxy that rewrites `Host` (`X-Forwarded-Host`).
fn cross_site(headers: &HeaderMap) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match get("sec-fetch-site") {
        Some("cross-site" | "same-site") => return true,
        Some("same-origin" | "none") => return false,
        _ => {}
    }
    match get("origin") {
        Some("null") => true,
        Some(origin) => {
            let o = origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or(origin);
            let forwarded = get("x-forwarded-host").and_then(|v| v.split(',').next());
            ![get("host"), forwarded]
                .into_iter()
                .flatten()
                .any(|h| o.eq_ignore_ascii_case(h.trim()))
        }
        None => false,
    }
}

/// `Set-Cookie` values for a session: the token (`HttpOnly`) and its CSRF token (readable).
fn session_cookies(token: &str, max_age_secs: i64, secure: bool) -> Vec<HeaderValue> {
    let sec = if secure { "; Secure" } else { "" };
    [
        format!(
            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{sec}"
        ),
        format!(
            "{CSRF_COOKIE}={}; SameSite=Strict; Path=/; Max-Age={max_age_secs}{sec}",
            csrf_for(token)
        ),
    ]
    .iter()
    .filter_map(|c| HeaderValue::from_str(c).ok())
    .collect()
}

/// `Set-Cookie` values that remove both cookies.
fn cleared_cookies(secure: bool) -> Vec<HeaderValue> {
    let sec = if secure { "; Secure" } else { "" };
    [
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{sec}"),
        format!("{CSRF_COOKIE}=; SameSite=Strict; Path=/; Max-Age=0{sec}"),
    ]
    .iter()
    .filter_map(|c| HeaderValue::from_str(c).ok())
    .collect()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn parse_credentials(headers: &HeaderMap, body: &Bytes) -> Result<Credentials, AdminError> {
    if is_form(headers) {
        let mut username = None;
        let mut password = None;
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "username" => username = Some(v.into_owned()),
                "password" => password = Some(v.into_owned()),
                _ => {}
            }
        }
        return match (username, password) {
            (Some(username), Some(password)) => Ok(Credentials { username, password }),
            _ => Err(AdminError::bad_request(
                "username and password are required",
            )),
        };
    }
    serde_json::from_slice(body).map_err(|e| {
        AdminError::bad_request(format!(
            "the body must be JSON {{\"username\", \"password\"}} or a form: {e}"
        ))
    })
}

/// `POST /ui/login`: the same check and failed-login limit as `POST /admin/v1/login`; the new
/// token goes into the session cookie. A JSON body gets JSON back (with the CSRF token); a
/// form post gets a redirect to the dashboard.
async fn login(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    if cross_site(&headers) {
        return Err(AdminError::forbidden(
            "sign-in requests from another site are refused",
        ));
    }
    let form = is_form(&headers);
    let c = parse_credentials(&headers, &body)?;
    match password_login(&st, peer, &c.username, &c.password).await? {
        Ok((token, expires)) => {
            let max_age = ((expires - signalbox_store::now_millis()) / 1000).max(0);
            let cookies = session_cookies(&token, max_age, over_https(&headers));
            let mut resp = if form {
                (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, "/ui/#/overview")],
                )
                    .into_response()
            } else {
                axum::Json(json!({
                    "user": c.username,
                    "expires_at": rfc3339(expires),
                    "csrf": csrf_for(&token),
                }))
                .into_response()
            };
            for v in cookies {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Err(refused) if form => {
            let to = if refused.status() == StatusCode::TOO_MANY_REQUESTS {
                "/ui/?login=limited"
            } else {
                "/ui/?login=failed"
            };
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
        }
        Err(refused) => Ok(refused),
    }
}

/// `POST /ui/logout`: revokes the session's token and clears both cookies. Needs the CSRF
/// header like every other write of a session.
async fn logout(State(st): State<AdminState>, headers: HeaderMap) -> Result<Response, AdminError> {
    let secure = over_https(&headers);
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if !csrf_ok(&headers, token) {
            return Err(AdminError::forbidden(
                "a dashboard session must send its CSRF token in `x-signalbox-csrf` on every write",
            ));
        }
        if let Some(p) = st.store.authenticate(token).await? {
            st.store
                .revoke_token(
                    &signalbox_store::Actor(p.user.clone()),
                    &p.token_id,
                    Some(&p.user),
                )
                .await?;
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for v in cleared_cookies(secure) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_ui_directory_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    found.push(rel);
                }
            }
        }
        let embedded: Vec<&str> = asset_paths().collect();
        for f in &found {
            assert!(
                embedded.contains(&f.as_str()),
                "crates/server/ui/{f} is not in ui::ASSETS"
            );
        }
        assert_eq!(found.len(), embedded.len());
    }

    #[test]
    fn no_inline_script_or_style_and_no_inner_html() {
        for (path, _, bytes) in ASSETS {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains("innerHTML"), "{path} uses innerHTML");
            assert!(!text.contains("insertAdjacentHTML"), "{path} inserts HTML");
            if path.ends_with(".html") {
                assert!(!text.contains("style="), "{path} has an inline style");
                assert!(!text.contains("<style"), "{path} has a style element");
                for (i, _) in text.match_indices("<script") {
                    let tag = &text[i..text[i..].find('>').map(|j| i + j).unwrap_or(text.len())];
                    assert!(tag.contains("src="), "{path} has an inline script");
                }
            }
        }
    }

    #[test]
    fn a_sign_in_from_another_site_is_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:4000"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        // Behind a reverse proxy that rewrites Host: the browser's same-origin verdict, or
        // the host the client addressed (X-Forwarded-Host), is this site.
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://gw.example.com"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h));
        h.remove("sec-fetch-site");
        assert!(cross_site(&h));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("gw.example.com"),
        );
        assert!(!cross_site(&h));
    }
}
