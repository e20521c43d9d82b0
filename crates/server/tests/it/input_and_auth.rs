//! Bad input, authentication, resolution order, wrong endpoints and passthrough.

use crate::common::*;
use fake_upstream::FakeUpstream;
use serde_json::json;

async fn one_fake_gateway(extra: &str) -> (fake_upstream::FakeHandle, Gw) {
    let fake = FakeUpstream::openai().start().await;
    let toml = format!(
        "{}\n{}\n[api_keys.app]\nkey = \"env::APP_KEY\"\n\n[targets.main]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n\n[routes.summarize]\ntargets = [\"main\"]\n{extra}",
        provider(
            "up",
            &fake.base_url(),
            &["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
        ),
        FAST_RETRY,
    );
    let gw = Gw::start_with_env(
        &toml,
        &[("UP_KEY", "sk-up-credential"), ("APP_KEY", "sb-app-key")],
    )
    .await;
    (fake, gw)
}

#[tokio::test]
async fn bad_bodies_get_openai_shaped_errors_and_never_go_upstream() {
    let (fake, gw) = one_fake_gateway("").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid_json",
            b"{\"model\": \"route::summarize\",".to_vec(),
        ),
        ("empty_body", b"".to_vec()),
        ("non_object", b"[\"route::summarize\"]".to_vec()),
        ("missing_model", br#"{"messages":[]}"#.to_vec()),
        (
            "non_string_model",
            br#"{"model":42,"messages":[]}"#.to_vec(),
        ),
        (
            "invalid_utf8",
            b"{\"model\":\"route::summarize\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(),
        ),
        (
            "stream_not_bool",
            br#"{"model":"route::summarize","stream":"yes"}"#.to_vec(),
        ),
    ];
    for (name, body) in cases {
        let r = gw
            .post("/v1/chat/completions")
            .bearer_auth("sb-app-key")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(header(&r, "x-request-id").is_some());
        let (status, body) = error_of(r).await;
        assert_eq!(status, 400, "{name}");
        let mut body = body;
        // The parser's position detail is not part of the contract.
        if name == "invalid_json" {
            body["error"]["message"] = json!("<parser detail>");
        }
        insta::assert_json_snapshot!(name, body);
    }
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let (fake, gw) = one_fake_gateway("[server]\nmax_body_bytes = 1024\n").await;
    let big = "x".repeat(4096);
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sb-app-key")
        .json(&json!({"model": "route::summarize", "messages": [{"role": "user", "content": big}]}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 413);
    insta::assert_json_snapshot!(body);
    assert_eq!(fake.hits(), 0);
}

/// A body refused before it is read whole (over the limit by its Content-Length, or while
/// it streams in) is still taken in, so a client that writes its whole body before reading
/// gets the 413 instead of a reset connection.
#[tokio::test]
async fn a_client_that_sends_its_whole_oversized_body_first_still_reads_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (fake, gw) = one_fake_gateway("[server]\nmax_body_bytes = 1000\n").await;
    let big = vec![b'x'; 8 << 20];
    for chunked in [false, true] {
        let mut tcp = tokio::net::TcpStream::connect(gw.running.addr)
            .await
            .unwrap();
        let head = if chunked {
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sb-app-key\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
        } else {
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sb-app-key\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                big.len()
            )
        };
        tcp.write_all(head.as_bytes()).await.unwrap();
        if chunked {
            for part in big.chunks(64 << 10) {
                tcp.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await
                    .unwrap();
                tcp.write_all(part).await.unwrap();
                tcp.write_all(b"\r\n").await.unwrap();
            }
            tcp.write_all(b"0\r\n\r\n").await.unwrap();
        } else {
            tcp.write_all(&big).await.expect("the whole body goes out");
        }
        let mut answer = vec![0u8; 4096];
        let n = tcp.read(&mut answer).await.expect("the answer comes back");
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {text}"
        );
    }
    assert_eq!(fake.hits(), 0);
}

/// Oversized request headers are refused with an OpenAI-shaped 431, on the proxied endpoints
/// and elsewhere alike; nothing goes upstream.
#[tokio::test]
async fn request_headers_over_64_kib_get_an_openai_shaped_431() {
    let (fake, gw) = one_fake_gateway("").await;
    let big = "c".repeat(70 * 1024);
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sb-app-key")
        .header("cookie", &big)
        .json(
            &json!({"model": "route::summarize", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-signalbox-error-code"), Some("bad_request"));
    assert!(header(&r, "x-request-id").is_some());
    let (status, body) = error_of(r).await;
    assert_eq!(status, 431);
    insta::assert_json_snapshot!(body);
    let r = gw
        .get("/v1/models")
        .bearer_auth("sb-app-key")
        .header("cookie", &big)
        .send()
        .await
        .unwrap();
    let (status, other) = error_of(r).await;
    assert_eq!((status, &other), (431, &body));
    // Just under the limit is served.
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sb-app-key")
        .header("cookie", "c".repeat(60 * 1024))
        .json(
            &json!({"model": "route::summarize", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn gateway_keys_are_required_and_checked() {
    let (fake, gw) = one_fake_gateway("").await;
    let (s, b) = error_of(gw.chat("route::summarize", None).await).await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("auth")));
    insta::assert_json_snapshot!("missing_key", b);
    let (s, b) = error_of(gw.chat("route::summarize", Some("sb-wrong")).await).await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("auth")));
    insta::assert_json_snapshot!("unknown_key", b);
    assert_eq!(fake.hits(), 0);

    // All three ways of sending the key work.
    assert_eq!(
        gw.chat("route::summarize", Some("sb-app-key"))
            .await
            .status(),
        200
    );
    for h in ["x-signalbox-authorization", "x-to11-authorization"] {
        let r = gw
            .post("/v1/chat/completions")
            .header(h, "Bearer sb-app-key")
            .json(&chat_body("route::summarize", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{h}");
    }
    // A project header must match the key's project.
    for (h, p, want) in [
        ("x-signalbox-project-id", "default", 200),
        ("x-signalbox-project-id", "other", 403),
        ("x-to11-project-id", "other", 403),
    ] {
        let r = gw
            .post("/v1/chat/completions")
            .bearer_auth("sb-app-key")
            .header(h, p)
            .json(&chat_body("route::summarize", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{h}: {p}");
        if want == 403 {
            let (_, b) = error_of(r).await;
            assert_eq!(b["error"]["code"], "forbidden");
        }
    }
}

#[tokio::test]
async fn a_caller_key_is_a_bearer_token_and_a_wrapped_gateway_key_never_goes_upstream() {
    let (fake, gw) = one_fake_gateway("").await;
    let call = |authz: &'static str, x_api_key: Option<&'static str>| {
        let mut r = gw
            .post("/v1/chat/completions")
            .header("x-signalbox-authorization", "Bearer sb-app-key")
            .header("authorization", authz)
            .json(&chat_body("up::gpt-4o", false));
        if let Some(k) = x_api_key {
            r = r.header("x-api-key", k);
        }
        async move { r.send().await.unwrap() }
    };
    // No usable caller key: the gateway key wrapped once more (in either header), an empty
    // bearer, another scheme. Each is 401 `auth` and nothing is sent.
    for (authz, x_api_key) in [
        ("Bearer Bearer sb-app-key", None),
        ("bearer  BEARER sb-app-key ", None),
        ("Bearer", None),
        ("Bearer ", Some("Bearer sb-app-key")),
        ("Basic dXNlcjpwYXNz", None),
    ] {
        let (s, b) = error_of(call(authz, x_api_key).await).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("auth")),
            "{authz:?} {x_api_key:?}"
        );
    }
    assert_eq!(fake.hits(), 0);
    // A real one goes on as a bearer token, once.
    assert_eq!(call("Bearer  sk-callers-own ", None).await.status(), 200);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer sk-callers-own"));
}

#[tokio::test]
async fn resolution_follows_prefixes_then_bare_names_top_down() {
    let fake = FakeUpstream::openai().start().await;
    let toml = format!(
        r#"{p}
{FAST_RETRY}
[server]
auth = "off"

[models.text-embedding-3-small]
endpoint = "embeddings"

[targets.t-fn]
provider = "up"
model = "m-fn"
[targets.t-route]
provider = "up"
model = "m-route"
[targets.t-listed]
provider = "up"
model = "m-listed"
[targets.t-bare]
provider = "up"
model = "m-bare"
[targets.t-embed]
provider = "up"
model = "text-embedding-3-small"

[functions.shared]
targets = ["t-fn"]
[routes.shared]
targets = ["t-route"]
[routes.listing]
models = ["gpt-4o"]
targets = ["t-listed"]
[routes.embed]
endpoint = "embeddings"
targets = ["t-embed"]
"#,
        p = provider(
            "up",
            &fake.base_url(),
            &[
                "m-fn",
                "m-route",
                "m-listed",
                "m-bare",
                "gpt-4o",
                "text-embedding-3-small"
            ]
        ),
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", "sk-up")]).await;
    let upstream_model =
        |r: &reqwest::Response| header(r, "x-signalbox-model").unwrap_or("").to_string();
    let route_header =
        |r: &reqwest::Response| header(r, "x-signalbox-route").unwrap_or("").to_string();

    // Prefixes.
    let r = gw.chat("function::shared", None).await;
    assert_eq!(
        (route_header(&r), upstream_model(&r)),
        ("function:shared".into(), "m-fn".into())
    );
    let r = gw.chat("route::shared", None).await;
    assert_eq!(
        (route_header(&r), upstream_model(&r)),
        ("route:shared".into(), "m-route".into())
    );
    // Bare: a function shadows a route of the same name.
    let r = gw.chat("shared", None).await;
    assert_eq!(route_header(&r), "function:shared");
    // Bare: a route's `models` list beats the provider's model.
    let r = gw.chat("gpt-4o", None).await;
    assert_eq!(
        (route_header(&r), upstream_model(&r)),
        ("route:listing".into(), "m-listed".into())
    );
    // Bare: the implicit route of an unused target.
    let r = gw.chat("m-bare", None).await;
    assert_eq!(route_header(&r), "target:t-bare");
    // Forced passthrough needs the caller's own key (the refusal names where it would have
    // gone); with one, it goes straight through.
    let r = gw.chat("up::gpt-4o", None).await;
    assert_eq!(route_header(&r), "passthrough:up");
    let (s, b) = error_of(r).await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("auth")));
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sk-callers-own")
        .json(&chat_body("up::gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(route_header(&r), "passthrough:up");
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer sk-callers-own"));
    assert_eq!(last.json()["model"], "gpt-4o");
    // Upstream bodies carry the target's model, never the route name.
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.json()["model"].as_str().unwrap().contains("::"))
    );

    // Unknown names: 404 with hints.
    let before = fake.hits();
    for (model, hint) in [
        ("route::nope", "route 'nope' does not exist"),
        ("function::nope", "function 'nope' does not exist"),
        ("nope::gpt-4o", "there is no provider 'nope'"),
        ("up::not-listed", "does not list model 'not-listed'"),
        ("nothing", "model 'nothing' not found"),
        (
            "embed",
            "route 'embed' serves embeddings: POST /v1/embeddings",
        ),
        // A prefix on a bare model name; a function prefix on a route of another kind.
        (
            "route::gpt-4o",
            "'gpt-4o' is a model: call it without a prefix",
        ),
        (
            "function::embed",
            "route 'embed' serves embeddings: POST /v1/embeddings",
        ),
        // A prefix on a model of another kind names its endpoint.
        ("route::text-embedding-3-small", "serves embeddings"),
    ] {
        let (s, b) = error_of(gw.chat(model, None).await).await;
        assert_eq!(s, 404, "{model}");
        assert_eq!(b["error"]["code"], "model_not_found");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(hint), "{model}: {msg}");
    }
    // A prefixed route of another kind: 400 wrong_endpoint naming the right endpoint.
    let (s, b) = error_of(gw.chat("route::embed", None).await).await;
    assert_eq!(s, 400);
    insta::assert_json_snapshot!("wrong_endpoint", b);
    let r = gw
        .post("/v1/embeddings")
        .json(&json!({"model": "route::shared", "input": "x"}))
        .send()
        .await
        .unwrap();
    let (s, b) = error_of(r).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("wrong_endpoint"))
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /v1/chat/completions")
    );
    assert_eq!(fake.hits(), before, "nothing unresolved goes upstream");

    // The embeddings route works on its own endpoint.
    let r = gw
        .post("/v1/embeddings")
        .json(&json!({"model": "route::embed", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
}

#[tokio::test]
async fn models_endpoint_lists_what_the_key_can_call_with_kinds() {
    // `gpt-4o` is a provider model (chat) and an embeddings route's bare model: callable on both.
    let (_fake, gw) = one_fake_gateway(
        "[models.text-embedding-3-small]\nendpoint = \"embeddings\"\n[targets.emb]\nprovider = \"up\"\nmodel = \"text-embedding-3-small\"\n[routes.emb-route]\nendpoint = \"embeddings\"\ntargets = [\"emb\"]\nmodels = [\"gpt-4o\"]\n",
    )
    .await;
    let r = gw
        .get("/v1/models")
        .bearer_auth("sb-app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<(&str, &str)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["endpoint"].as_str().unwrap()))
        .collect();
    assert!(ids.contains(&("route::summarize", "chat")), "{ids:?}");
    assert!(
        ids.contains(&("text-embedding-3-small", "embeddings")),
        "{ids:?}"
    );
    assert!(ids.contains(&("up::gpt-4o-mini", "chat")), "{ids:?}");
    assert!(
        ids.contains(&("gpt-4o", "chat")) && ids.contains(&("gpt-4o", "embeddings")),
        "{ids:?}"
    );
    let r = gw
        .get("/v1/models/route::summarize")
        .bearer_auth("sb-app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let one: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (one["id"].as_str(), one["endpoints"].clone()),
        (Some("route::summarize"), json!(["chat"]))
    );
    // A name callable on two kinds: one object, every kind in `endpoints`.
    let r = gw
        .get("/v1/models/gpt-4o")
        .bearer_auth("sb-app-key")
        .send()
        .await
        .unwrap();
    let both: serde_json::Value = r.json().await.unwrap();
    let mut kinds: Vec<&str> = both["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["chat", "embeddings"], "{both}");
    assert_eq!(
        both["endpoint"],
        json!(kinds.iter().find(|k| **k == both["endpoint"]).unwrap())
    );
    let r = gw
        .get("/v1/models/nope")
        .bearer_auth("sb-app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    // An unknown id is not echoed at any length.
    let long = "n".repeat(5000);
    let r = gw
        .get(&format!("/v1/models/{long}"))
        .bearer_auth("sb-app-key")
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!(s, 404);
    assert!(e["error"]["message"].as_str().unwrap().len() < 400, "{e}");
    let r = gw.get("/v1/models").send().await.unwrap();
    assert_eq!(error_of(r).await.0, 401);
}

/// A provider's static headers win over the same allow-listed header from the caller, and go
/// once, for streaming and non-streaming requests alike; the caller's other allow-listed
/// headers still go.
#[tokio::test]
async fn a_providers_static_headers_win_over_the_callers_and_go_once() {
    let (fake, gw) =
        one_fake_gateway("[providers.up.headers]\n\"openai-organization\" = \"org-static\"\n")
            .await;
    for stream in [false, true] {
        let r = gw
            .post("/v1/chat/completions")
            .bearer_auth("sb-app-key")
            .header("openai-organization", "org-from-caller")
            .header("accept-language", "fr")
            .json(&chat_body("route::summarize", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        let req = fake.requests().pop().unwrap();
        let values = |name: &str| -> Vec<&str> {
            req.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(
            values("openai-organization"),
            ["org-static"],
            "stream {stream}"
        );
        assert_eq!(values("accept-language"), ["fr"], "stream {stream}");
        assert_eq!(values("authorization"), ["Bearer sk-up-credential"]);
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert_eq!(values("accept"), [accept]);
    }
}

#[tokio::test]
async fn only_allow_listed_headers_go_upstream() {
    let (fake, gw) = one_fake_gateway("").await;
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sb-app-key")
        .header("x-signalbox-user-id", "u1")
        .header("x-signalbox-session-id", "s1")
        .header("x-to11-project-id", "default")
        .header("cookie", "session=secret-cookie")
        .header("x-api-key", "sk-not-for-managed")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("openai-organization", "org-123")
        .header("x-custom-thing", "nope")
        .json(&chat_body("route::summarize", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        "traceparent is echoed back"
    );
    let req = fake.requests().pop().unwrap();
    for (name, _) in &req.headers {
        let n = name.to_ascii_lowercase();
        assert!(
            !n.starts_with("x-signalbox") && !n.starts_with("x-to11"),
            "{n} leaked upstream"
        );
        assert!(
            n != "cookie" && n != "x-api-key" && n != "x-custom-thing",
            "{n} leaked upstream"
        );
    }
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-up-credential"),
        "the target's credential is injected"
    );
    let once = |name: &str| req.headers.iter().filter(|(n, _)| n == name).count();
    assert_eq!((once("authorization"), once("host")), (1, 1));
    assert_eq!(
        req.header("host"),
        Some(fake.addr().to_string().as_str()),
        "Host names the upstream, port included"
    );
    assert_eq!(
        req.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(req.header("openai-organization"), Some("org-123"));
}

#[tokio::test]
async fn odd_requests_get_openai_shaped_errors_and_nothing_goes_upstream() {
    let (fake, gw) = one_fake_gateway("").await;
    let post = || gw.post("/v1/chat/completions").bearer_auth("sb-app-key");
    // A compressed body: 415, not "invalid JSON".
    let r = post()
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    let (s, b) = error_of(r).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("bad_request")),
        "{b}"
    );
    // A model name longer than any is refused without being echoed back.
    let long = "m".repeat(100_000);
    let r = post().json(&chat_body(&long, false)).send().await.unwrap();
    let (s, b) = error_of(r).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("model")));
    assert!(b.to_string().len() < 1_000);
    // Two project headers naming different projects: refused, whichever comes first.
    for (first, second) in [
        ("x-signalbox-project-id", "x-to11-project-id"),
        ("x-to11-project-id", "x-signalbox-project-id"),
    ] {
        let r = post()
            .header(first, "default")
            .header(second, "other")
            .json(&chat_body("route::summarize", false))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 403, "{first} then {second}");
    }
    // A model id that does not decode, and a wrong method: JSON errors with the code header.
    let r = gw
        .get("/v1/models/%C3")
        .bearer_auth("sb-app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-signalbox-error-code"), Some("bad_request"));
    assert_eq!(error_of(r).await.0, 400);
    let r = gw.get("/v1/chat/completions").send().await.unwrap();
    assert_eq!(header(&r, "x-signalbox-error-code"), Some("bad_request"));
    assert_eq!(error_of(r).await.0, 405);
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn an_invalid_traceparent_is_neither_propagated_nor_echoed() {
    let (fake, gw) = one_fake_gateway("").await;
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sb-app-key")
        .header("traceparent", "garbage-value")
        .header("tracestate", "vendor=x")
        .json(&chat_body("route::summarize", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "traceparent"), None);
    assert_eq!(header(&r, "tracestate"), None);
    let req = fake.requests().pop().unwrap();
    assert_eq!(
        (req.header("traceparent"), req.header("tracestate")),
        (None, None)
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_replaced_when_the_upstream_closes_them() {
    let (fake, gw) = one_fake_gateway("").await;
    let call = || async {
        let r = gw
            .post("/v1/chat/completions")
            .bearer_auth("sb-app-key")
            .json(&chat_body("route::summarize", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    call().await;
    let first = fake.connections();
    for _ in 0..5 {
        call().await;
    }
    assert_eq!(
        fake.connections(),
        first,
        "sequential requests reuse one connection"
    );
    // The upstream closes its idle connections; the very next requests still succeed (a
    // pooled connection found closed is replaced, the request sent once) on a new one.
    for round in 1..=3 {
        fake.close_connections();
        for _ in 0..3 {
            call().await;
        }
        assert_eq!(fake.connections(), first + round, "round {round}");
    }
    assert_eq!(
        fake.hits(),
        1 + 5 + 9,
        "each request reached the upstream once"
    );
    // Streams hand their connection back too, once read to the end.
    let before = fake.connections();
    for _ in 0..3 {
        let r = gw
            .post("/v1/chat/completions")
            .bearer_auth("sb-app-key")
            .json(&chat_body("route::summarize", true))
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
        // The stream's connection goes back from a task of its own, just after the last event.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(fake.connections(), before);
}

#[tokio::test]
async fn response_headers_name_route_provider_model_and_request_id() {
    let (_fake, gw) = one_fake_gateway("").await;
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sb-app-key")
        .header("x-request-id", "client-chosen-id")
        .json(&chat_body("route::summarize", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = header(&r, "x-request-id").unwrap();
    assert_ne!(
        rid, "client-chosen-id",
        "the gateway's own id, never the client's"
    );
    assert_eq!(header(&r, "x-signalbox-route"), Some("route:summarize"));
    assert_eq!(header(&r, "x-signalbox-provider"), Some("up"));
    assert_eq!(header(&r, "x-signalbox-model"), Some("gpt-4o"));
    assert_eq!(header(&r, "x-signalbox-attempts"), Some("1"));
    assert!(
        header(&r, "x-signalbox-upstream-request-id")
            .unwrap()
            .starts_with("req_")
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["model"], "gpt-4o",
        "the body's model is the upstream's own"
    );
}

#[tokio::test]
async fn auth_off_serves_without_a_key_and_says_so_in_health() {
    let gw = Gw::start(
        "[server]\nauth = \"off\"\n[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n[targets.echo]\nmodel = \"echo-1\"\n[routes.hello]\ntargets = [\"echo\"]\n",
    )
    .await;
    let r = gw.chat("route::hello", None).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Say hello")
    );
    let h: serde_json::Value = gw
        .get("/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["auth"], "off");
}

#[tokio::test]
async fn auth_off_on_a_public_address_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signalbox.toml");
    std::fs::write(&path, "[server]\nauth = \"off\"\n").unwrap();
    let err = signalbox::live::Live::load(Some(&path), Some("0.0.0.0"), env_of(&[]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopback"), "{err}");
    std::fs::write(&path, "[server]\nauth = \"off\"\nhost = \"0.0.0.0\"\n").unwrap();
    assert!(signalbox::live::Live::load(Some(&path), None, env_of(&[])).is_err());
}

#[tokio::test]
async fn over_max_in_flight_is_503_overloaded() {
    let fake = FakeUpstream::openai()
        .latency(std::time::Duration::from_millis(400))
        .start()
        .await;
    let toml = format!(
        "{}\n[server]\nauth = \"off\"\nmax_in_flight = 1\n[targets.t]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n[routes.slow]\ntargets = [\"t\"]\n",
        provider("up", &fake.base_url(), &["gpt-4o"])
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", "k")]).await;
    let first = gw.chat("route::slow", None);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        gw.chat("route::slow", None).await
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!(a.status(), 200);
    assert_eq!(
        header(&b, "retry-after"),
        Some("1"),
        "says when to come back"
    );
    let (s, body) = error_of(b).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
}
