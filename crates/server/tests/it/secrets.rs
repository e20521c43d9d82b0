//! A canary secret sent as gateway key, caller key and credential, through success and
//! failure paths, must never appear in a log line, an error body or a response header.

use crate::common::*;
use fake_upstream::{Behaviour, FakeUpstream};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

const CANARY: &str = "sk-CANARY-7f3a9e51c2";
/// The caller's own provider key for passthrough (a gateway key is never forwarded).
const CALLER: &str = "sk-CANARY-caller-42aa";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Buf {
    static LOGS: OnceLock<Buf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Buf::default();
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .try_init();
        buf
    })
}

fn assert_clean(r: &reqwest::Response, body: &str, what: &str) {
    assert!(
        !body.contains(CANARY),
        "{what}: the body leaks the canary: {body}"
    );
    assert!(
        !body.contains("CANARY"),
        "{what}: the body leaks part of the canary: {body}"
    );
    for (k, v) in r.headers() {
        assert!(
            !v.to_str().unwrap_or("").contains("CANARY"),
            "{what}: header {k} leaks the canary"
        );
    }
}

#[tokio::test]
async fn a_canary_secret_never_reaches_logs_errors_or_headers() {
    let logs = logs();
    let echo = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {CANARY}","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
    );
    let fake = FakeUpstream::openai().start().await;
    let toml = format!(
        "{}\n[providers.pt]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"pm\"]\n[providers.q]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"qm\"]\nauth_type = \"query_param\"\ncredential = \"env::UP_KEY\"\n[api_keys.app]\nkey = \"env::APP_KEY\"\n[routing.retry]\nmax_retries = 0\n[targets.t]\nprovider = \"up\"\nmodel = \"m\"\n[targets.tq]\nprovider = \"q\"\nmodel = \"qm\"\n[routes.r]\ntargets = [\"t\"]\nretry = {{ max_retries = 0 }}\n[routes.rq]\ntargets = [\"tq\"]\nretry = {{ max_retries = 0 }}\n",
        provider("up", &fake.base_url(), &["m"]),
        fake.base_url(),
        fake.base_url(),
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", CANARY), ("APP_KEY", CANARY)]).await;

    let send = |model: &str, stream: bool, gateway_key: &str, caller_key: Option<&str>| {
        let mut rb = gw
            .post("/v1/chat/completions")
            .header("x-signalbox-authorization", format!("Bearer {gateway_key}"))
            .json(&chat_body(model, stream));
        if let Some(k) = caller_key {
            rb = rb.bearer_auth(k);
        }
        rb.send()
    };
    // Success: managed (header and query-param auth), passthrough with the caller's key, streaming.
    for (model, stream, caller) in [
        ("route::r", false, None),
        ("route::r", true, None),
        ("route::rq", false, None),
        ("pt::pm", false, Some(CALLER)),
        ("pt::pm", true, Some(CALLER)),
    ] {
        let r = send(model, stream, CANARY, caller).await.unwrap();
        assert_eq!(r.status(), 200, "{model}");
        let h = r.headers().clone();
        let body = r.text().await.unwrap();
        assert!(!body.contains(CANARY), "{model}: {body}");
        assert!(
            h.values()
                .all(|v| !v.to_str().unwrap_or("").contains("CANARY"))
        );
    }
    // Failures: the upstream echoes the key in its error (managed -> 502; passthrough -> 401),
    // a 500, a connection reset, and a wrong gateway key that contains the canary.
    for b in [
        Behaviour::Status { status: 401, retry_after: None, body: Some(echo.clone()) },
        Behaviour::Status { status: 500, retry_after: None, body: Some(echo.clone()) },
        Behaviour::Status { status: 400, retry_after: None, body: Some(r#"{"error":{"message":"bad messages","type":"invalid_request_error","param":"messages","code":null}}"#.into()) },
        Behaviour::Reset,
    ] {
        for (model, caller) in [("route::r", None), ("route::rq", None), ("pt::pm", Some(CALLER))] {
            fake.push(b.clone());
            let r = send(model, false, CANARY, caller).await.unwrap();
            assert_ne!(r.status(), 200, "{model} {b:?}");
            let hdrs = r.headers().clone();
            let body = r.text().await.unwrap();
            let fake_resp = reqwest::Response::from(http::Response::builder().body(Vec::<u8>::new()).unwrap());
            assert_clean(&fake_resp, &body, &format!("{model} {b:?}"));
            assert!(hdrs.values().all(|v| !v.to_str().unwrap_or("").contains("CANARY")));
        }
    }
    // A caller mistake whose message (relayed to the caller) quotes the house key it was sent
    // with, bare and as a key in a URL.
    let quoting = format!(
        r#"{{"error":{{"message":"bad request for {CANARY} at https://up.example/v1?key={CANARY}","type":"invalid_request_error","param":null,"code":null}}}}"#
    );
    for model in ["route::r", "route::rq"] {
        fake.push(Behaviour::Status {
            status: 400,
            retry_after: None,
            body: Some(quoting.clone()),
        });
        let r = send(model, false, CANARY, None).await.unwrap();
        assert_eq!(r.status(), 400, "{model}");
        let body = r.text().await.unwrap();
        let fake_resp =
            reqwest::Response::from(http::Response::builder().body(Vec::<u8>::new()).unwrap());
        assert_clean(&fake_resp, &body, model);
        assert!(body.contains("bad request for ***"), "{body}");
    }
    let r = send("route::r", false, &format!("{CANARY}-wrong"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(!body.contains("CANARY"), "{body}");

    // Give the trace writer a moment, then read every log line.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let all = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(!all.is_empty(), "the log capture must have seen something");
    assert!(
        !all.contains("CANARY"),
        "a log line leaks the canary:\n{}",
        all.lines()
            .filter(|l| l.contains("CANARY"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The control plane's secrets: a stored credential, a user's password, a gateway key and an
/// admin token, through success and failure paths, never reach the log or an admin answer.
#[tokio::test]
async fn control_plane_secrets_never_reach_logs_or_admin_answers() {
    use crate::admin::{BASE, Node, login};
    use serde_json::json;
    let logs = logs();
    let upstream_echo = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {CANARY}","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
    );
    let fake = FakeUpstream::openai()
        .always(Behaviour::Status {
            status: 401,
            retry_after: None,
            body: Some(upstream_echo),
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let node = Node::start(&db, &signalbox_store::MasterKey::generate(), BASE).await;
    let mut answers = String::new();
    async fn keep(r: reqwest::Response) -> String {
        r.text().await.unwrap()
    }
    let r = node
        .post_json(
            "/projects/default/credentials",
            json!({"name": "c", "value": CANARY}),
        )
        .await;
    answers.push_str(&keep(r).await);
    let r = node
        .put_json(
            "/projects/default/providers/up",
            json!({"kind": "openai", "base_url": fake.base_url(), "models": ["gpt-4o"], "credential": "credential::c"}),
        )
        .await;
    answers.push_str(&keep(r).await);
    node.put_json(
        "/projects/default/targets/t",
        json!({"provider": "up", "model": "gpt-4o"}),
    )
    .await;
    node.put_json(
        "/projects/default/routes/r",
        json!({"targets": ["t"], "retry": {"max_retries": 0}}),
    )
    .await;
    let (s, body) = node.chat("route::r").await;
    assert_eq!(
        s, 502,
        "a managed credential rejected upstream is the gateway's fault: {body}"
    );
    answers.push_str(&body.to_string());
    // A user whose password is the canary, a failed and a good login.
    let r = node
        .post_json("/users", json!({"name": "u", "password": CANARY}))
        .await;
    answers.push_str(&keep(r).await);
    let _ = login(&node.url, "u", &format!("{CANARY}x")).await;
    let token = login(&node.url, "u", CANARY).await.unwrap();
    // A wrong token and a wrong gateway key that are the canary.
    let r = crate::common::client()
        .get(format!("{}/admin/v1/projects", node.url))
        .bearer_auth(CANARY)
        .send()
        .await
        .unwrap();
    answers.push_str(&keep(r).await);
    answers.push_str(&node.chat_with("route::r", CANARY).await.1.to_string());
    for path in [
        "/projects/default/credentials",
        "/projects/default/providers",
        "/audit",
        "/users",
        "/tokens",
        "/projects/default/export",
    ] {
        let r = node.admin(reqwest::Method::GET, path).send().await.unwrap();
        answers.push_str(&keep(r).await);
    }
    assert!(
        !answers.contains("CANARY"),
        "an admin answer leaks the canary:\n{answers}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let all = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(!all.is_empty());
    assert!(!all.contains("CANARY"), "a log line leaks the canary");
    assert!(!all.contains(&token), "a log line leaks an admin token");
    assert!(
        !all.contains(ADMIN_PW),
        "a log line leaks the admin password"
    );
}

const ADMIN_PW: &str = crate::admin::ADMIN_PASSWORD;
