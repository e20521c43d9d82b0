//! The dashboard (`/ui`) on the real binary: session cookies, CSRF, the Content-Security-Policy
//! and logout over plain HTTP; then the whole dashboard in a real headless browser
//! (tests/ui/dashboard.mjs: playwright-core driving Debian's chromium, with axe-core).

use fake_upstream::{Behaviour, FakeUpstream};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "dashboard-admin-password";
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// The browser run takes about half a minute; longer than this is a hang.
const BROWSER_LIMIT: Duration = Duration::from_secs(300);

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Gateway {
    url: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// The real binary on port 0, with a store in a temp dir and a known admin password.
fn start_gateway(toml: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signalbox.toml");
    std::fs::write(&config, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("SIGNALBOX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("SIGNALBOX_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start signalbox");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("signalbox exited before listening")
            .unwrap();
        if let Some(i) = line.find("Signalbox listening on http://") {
            let rest = &line[i + "Signalbox listening on ".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Gateway {
        url,
        _child: Child(child),
        _dir: dir,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_named<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

fn value_of(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v)
        .unwrap()
}

fn assert_ui_headers(r: &reqwest::Response) {
    let h = r.headers();
    assert_eq!(
        h.get("content-security-policy")
            .and_then(|v| v.to_str().ok()),
        Some(CSP),
        "{}",
        r.url()
    );
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert!(h.get("access-control-allow-origin").is_none(), "no CORS");
}

#[tokio::test]
async fn dashboard_sessions_use_strict_cookies_csrf_and_a_strict_csp() {
    let gw = start_gateway("[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n");
    let http = no_redirects();
    let u = |p: &str| format!("{}{p}", gw.url);

    // Static files: the CSP and friends on every answer, the 404 included.
    let r = http.get(u("/ui")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/");
    assert_ui_headers(&r);
    let r = http.get(u("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ui_headers(&r);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/js/app.js">"#));
    let r = http.get(u("/ui/js/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ui_headers(&r);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = http.get(u("/ui/js/missing.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_ui_headers(&r);

    // A wrong password: the API's answer, with the dashboard's headers.
    let r = http
        .post(u("/ui/login"))
        .json(&json!({"username": "admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_ui_headers(&r);
    assert!(set_cookies(&r).is_empty());

    // A sign-in posted from another site is refused.
    let r = http
        .post(u("/ui/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // JSON sign-in: an HttpOnly, SameSite=Strict session cookie and a readable CSRF cookie.
    let r = http
        .post(u("/ui/login"))
        .header("origin", gw.url.as_str())
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ui_headers(&r);
    let cookies = set_cookies(&r);
    let session = cookie_named(&cookies, "signalbox_session").to_string();
    let csrf_cookie = cookie_named(&cookies, "signalbox_csrf").to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain HTTP: no Secure flag: {session}"
    );
    assert!(!csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");
    assert!(csrf_cookie.contains("SameSite=Strict"), "{csrf_cookie}");
    let body: Value = r.json().await.unwrap();
    let token = value_of(&session).to_string();
    let csrf = value_of(&csrf_cookie).to_string();
    assert!(token.starts_with("sbxa-"));
    assert_eq!(body["csrf"], csrf.as_str());
    assert_eq!(body["user"], "admin");
    let cookie = format!("signalbox_session={token}; signalbox_csrf={csrf}");

    // Reads need only the cookie.
    let r = http
        .get(u("/admin/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Admin answers, which the session cookie can reach, are never rendered or sniffed.
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(r.json::<Value>().await.unwrap()["user"], "admin");
    let r = http
        .get(u("/admin/v1/settings"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let settings: Value = r.json().await.unwrap();
    assert_eq!(settings["traces"]["retention_days"], 30);
    assert_eq!(settings["traces"]["stored"], true);
    let doc: Value = http
        .get(u("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/admin/v1/settings").is_some());
    assert_eq!(
        doc["components"]["securitySchemes"]["dashboardSession"]["name"],
        "signalbox_session"
    );

    // Writes with the cookie need the CSRF header: without it, or with a wrong one, 403.
    let write = |csrf_header: Option<&str>, name: &str| {
        let mut rq = http
            .post(u("/admin/v1/projects/default/credentials"))
            .header("cookie", &cookie)
            .json(&json!({"name": name, "value": "sk-secret-value"}));
        if let Some(v) = csrf_header {
            rq = rq.header("x-signalbox-csrf", v);
        }
        rq.send()
    };
    let r = write(None, "c1").await.unwrap();
    assert_eq!(r.status(), 403);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "forbidden");
    assert_eq!(err["error"]["param"], "x-signalbox-csrf");
    let r = write(Some("0000"), "c1").await.unwrap();
    assert_eq!(r.status(), 403);
    let r = write(Some(&csrf), "c1").await.unwrap();
    assert_eq!(r.status(), 201);
    // The CSRF token of another session does not do.
    let other = http
        .post(u("/ui/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let other_csrf = value_of(cookie_named(&set_cookies(&other), "signalbox_csrf")).to_string();
    assert_ne!(other_csrf, csrf);
    let r = write(Some(&other_csrf), "c2").await.unwrap();
    assert_eq!(r.status(), 403);

    // Bearer tokens are unchanged: no CSRF header needed.
    let r = http
        .post(u("/admin/v1/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let bearer = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http
        .post(u("/admin/v1/projects/default/credentials"))
        .bearer_auth(&bearer)
        .json(&json!({"name": "c3", "value": "sk-other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Behind an HTTPS proxy the cookies are Secure; a form sign-in redirects to the dashboard.
    let r = http
        .post(u("/ui/login"))
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=admin&password={ADMIN_PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/#/overview");
    let cookies = set_cookies(&r);
    assert!(cookie_named(&cookies, "signalbox_session").contains("; Secure"));
    assert!(cookie_named(&cookies, "signalbox_csrf").contains("; Secure"));
    let r = http
        .post(u("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=admin&password=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/?login=failed");

    // Logout needs the CSRF header, revokes the session's token and clears both cookies.
    let r = http
        .post(u("/ui/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(u("/ui/logout"))
        .header("cookie", &cookie)
        .header("x-signalbox-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_ui_headers(&r);
    let cleared = set_cookies(&r);
    assert!(cookie_named(&cleared, "signalbox_session").contains("Max-Age=0"));
    assert!(cookie_named(&cleared, "signalbox_csrf").contains("Max-Age=0"));
    let r = http
        .get(u("/admin/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the logged-out session's token is revoked");

    // The dashboard's sign-in shares the API's failed-login limit (last: it blocks this client).
    // Two failures from this client were counted above; eight more reach the limit of ten.
    for _ in 0..8 {
        let r = http
            .post(u("/ui/login"))
            .json(&json!({"username": "mallory", "password": "guess"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http
        .post(u("/admin/v1/login"))
        .json(&json!({"username": "mallory", "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = http
        .post(u("/ui/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

fn ui_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui")
}

fn run_with_limit(program: &str, args: &[String], limit: Duration) -> (bool, String, String) {
    crate::common::run_script(program, args, &ui_dir(), limit)
}

/// Fails, never skips, when the browser or the pinned Node packages are missing.
#[tokio::test]
async fn the_dashboard_works_end_to_end_in_a_headless_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "the dashboard test needs Debian's chromium at {chromium} (or $CHROMIUM). \
         Run ./scripts/test.sh (the README test command): it installs it when missing."
    );
    let (ok, out, err) = tokio::task::spawn_blocking(|| {
        run_with_limit(
            "node",
            &["../check_node_install.mjs".to_string(), ".".to_string()],
            Duration::from_secs(30),
        )
    })
    .await
    .unwrap();
    assert!(
        ok,
        "the dashboard test needs the packages pinned in tests/ui/package-lock.json: {}{}\n\
         Run ./scripts/test.sh (the README test command): it runs `npm ci --prefix tests/ui` \
         when node_modules is missing or stale.",
        err.trim(),
        out.trim()
    );

    let up = FakeUpstream::openai()
        .require_key("sk-fake-house")
        .start()
        .await;
    let down = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    // A file-managed provider and route: the dashboard shows them read-only.
    let gw = start_gateway(
        "[routing.retry]\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n\
         [providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n\
         [targets.demo-echo]\nprovider = \"demo\"\nmodel = \"echo-1\"\n\
         [routes.hello]\ntargets = [\"demo-echo\"]\n",
    );
    // Screenshots go to docs/screenshots with SIGNALBOX_UPDATE_SCREENSHOTS=1, else to a temp dir
    // (taking them is part of the test either way).
    let shots_tmp = tempfile::tempdir().unwrap();
    let shots = if std::env::var("SIGNALBOX_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        shots_tmp.path().to_path_buf()
    };
    let args = vec![
        "dashboard.mjs".to_string(),
        gw.url.clone(),
        ADMIN_PASSWORD.to_string(),
        up.base_url(),
        down.base_url(),
        shots.display().to_string(),
    ];
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_with_limit("node", &args, BROWSER_LIMIT))
            .await
            .unwrap();
    assert!(
        ok && out.contains("all checks passed"),
        "the browser test failed:\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    eprint!("{out}");
    for name in [
        "login",
        "overview",
        "providers",
        "connect-provider-1-details",
        "connect-provider-2-test",
        "credentials",
        "routing-new-rule",
        "route",
        "route-edit-diff",
        "keys",
        "traces",
        "trace",
        "experiments",
        "settings",
    ] {
        let p = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", p.display());
    }
    assert!(up.hits() > 0);
    assert!(
        down.hits() > 0,
        "the fallback chain tried the failing upstream"
    );
}
