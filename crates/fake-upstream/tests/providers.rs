//! The Anthropic and Gemini wire formats and OpenAI tool calls over real
//! sockets: framing, behaviours, keys, errors and the reply rules that the
//! Python SDK checks (tests/*_sdk_check.py) do not pin down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream};
use hyper::Method;
use hyper::Response;
use hyper::body::Incoming;
use serde_json::{Value, json};

mod common;
use common::{
    assert_stalls_after, call, data_events, event_names, frames, json_body, named_events,
};

const EIGHT: &str = "one two three four five six seven eight";
const ANTHROPIC: &[(&str, &str)] = &[("anthropic-version", "2023-06-01")];

async fn messages(up: &FakeHandle, body: Value) -> Response<Incoming> {
    call(up, Method::POST, "/v1/messages", ANTHROPIC, Some(&body)).await
}

async fn messages_with(
    up: &FakeHandle,
    headers: &[(&str, &str)],
    body: &Value,
) -> Response<Incoming> {
    call(up, Method::POST, "/v1/messages", headers, Some(body)).await
}

fn claude(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": text}]})
}

async fn generate(up: &FakeHandle, method: &str, query: &str, body: Value) -> Response<Incoming> {
    let path = format!("/v1beta/models/gemini-2.5-flash:{method}{query}");
    call(up, Method::POST, &path, &[], Some(&body)).await
}

fn gemini(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

fn header<'a>(resp: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The JSON of each Gemini SSE event (`data: <json>\r\n\r\n`, one a frame).
fn gemini_events(frames: &[Bytes]) -> Vec<Value> {
    data_events(frames, "\r\n\r\n")
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn text_of(v: &Value) -> String {
    v["candidates"][0]["content"]["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default()
}

/// A fake answering its requests, in turn, with these statuses and `retry-after`s.
fn statuses_in_turn<'a>(
    statuses: impl IntoIterator<Item = (u16, Option<&'a str>)>,
) -> FakeUpstream {
    statuses
        .into_iter()
        .fold(FakeUpstream::openai(), |up, (status, retry_after)| {
            up.then(Behaviour::Status {
                status,
                retry_after: retry_after.map(str::to_owned),
                body: None,
            })
        })
}

// ---------------------------------------------------------------- Anthropic

#[tokio::test]
async fn anthropic_message_shape_headers_and_cache_tokens() {
    let up = FakeUpstream::openai().cache_tokens(7, 3).start().await;
    let mut body = claude("hello there", false);
    body["system"] = json!([{"type": "text", "text": "be brief"}]);
    let resp = messages(&up, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    let id = header(&resp, "request-id").unwrap().to_owned();
    assert!(id.starts_with("req_011C") && id.len() == 28, "{id}");
    assert!(header(&resp, "x-request-id").is_none());
    assert!(header(&resp, "openai-version").is_none());
    let v = json_body(resp).await;
    let msg_id = v["id"].as_str().unwrap();
    assert!(msg_id.starts_with("msg_01"), "{msg_id}");
    // "be brief" + "hello there" = 19 chars -> 5 uncached tokens.
    assert_eq!(
        v,
        json!({"id": msg_id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "fake reply to: hello there"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 5, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7,
                "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 5, "service_tier": "standard"}})
    );
    let rec = &up.requests()[0];
    assert_eq!(
        (rec.path.as_str(), rec.query.as_deref()),
        ("/v1/messages", None)
    );
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rec.json()["system"][0]["text"], "be brief");
}

#[tokio::test]
async fn anthropic_stream_events_in_order() {
    let up = FakeUpstream::openai()
        .reply(EIGHT)
        .cache_tokens(2, 1)
        .start()
        .await;
    let resp = messages(&up, claude("hi", true)).await;
    assert_eq!(
        header(&resp, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(header(&resp, "request-id").is_some());
    let (frames, errored) = frames(resp).await;
    assert!(!errored);
    let evs = named_events(&frames);
    assert_eq!(
        event_names(&evs),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &evs {
        assert_eq!(data["type"], name.as_str());
    }
    // The ping is sent as Anthropic spaces it.
    assert_eq!(
        &frames[1][..],
        b"event: ping\ndata: {\"type\": \"ping\"}\n\n"
    );
    let start = &evs[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 1);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 2);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        evs[2].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let text: String = evs[3..7]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, EIGHT);
    assert_eq!(
        evs[8].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 1, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 8}})
    );
    assert_eq!(evs[9].1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn anthropic_stream_behaviours() {
    let up = FakeUpstream::openai()
        .reply(EIGHT)
        .then(Behaviour::CutAfter(2))
        .then(Behaviour::EndWithoutDone)
        .then(Behaviour::ErrorEventAfter(4))
        .then(Behaviour::StallAfter(3))
        .then(Behaviour::SlowFirstEvent(Duration::from_millis(150)))
        .start()
        .await;

    let (f, errored) = frames(messages(&up, claude("hi", true)).await).await;
    assert!(errored, "cut streams end with an error");
    let names: Vec<String> = named_events(&f).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["message_start", "ping"]);

    let (f, errored) = frames(messages(&up, claude("hi", true)).await).await;
    assert!(!errored);
    let evs = named_events(&f);
    assert_eq!(evs.len(), 9);
    assert_eq!(evs[8].0, "message_delta", "no message_stop");

    let (f, errored) = frames(messages(&up, claude("hi", true)).await).await;
    assert!(!errored);
    let evs = named_events(&f);
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[3].0, "content_block_delta");
    assert_eq!(
        &f[4][..],
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    );

    assert_stalls_after(messages(&up, claude("hi", true)).await, 3).await;
    assert!(up.wait_disconnects(1, Duration::from_secs(5)).await);

    let t = Instant::now();
    let (f, _) = frames(messages(&up, claude("hi", true)).await).await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(named_events(&f).len(), 10);
}

#[tokio::test]
async fn anthropic_tool_use_plain_and_streamed() {
    let up = FakeUpstream::openai().chunks(3).start().await;
    let tools = json!([{"name": "lookup", "input_schema": {"type": "object"}},
        {"name": "other", "input_schema": {"type": "object"}}]);
    let mut body = claude("find \"it\"", false);
    body["tools"] = tools.clone();
    let v = json_body(messages(&up, body.clone()).await).await;
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "lookup");
    assert_eq!(block["input"], json!({"input": "find \"it\""}));
    let id = block["id"].as_str().unwrap();
    assert!(id.starts_with("toolu_01") && id.len() == 30, "{id}");

    body["stream"] = json!(true);
    body["tool_choice"] = json!({"type": "tool", "name": "other"});
    let (f, _) = frames(messages(&up, body.clone()).await).await;
    let evs = named_events(&f);
    let start = &evs[2].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "other");
    assert_eq!(start["input"], json!({}));
    let partials: Vec<&str> = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(partials[0], "", "the API opens with an empty fragment");
    assert_eq!(partials.len(), 4);
    let input: Value = serde_json::from_str(&partials.concat()).unwrap();
    assert_eq!(input, json!({"input": "find \"it\""}));
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // The last user message is a tool result: no second call.
    body["stream"] = json!(false);
    body["messages"] = json!([
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "found"}, {"type": "text", "text": "twice"}]},
            {"type": "text", "text": "thanks"}
        ]}
    ]);
    let v = json_body(messages(&up, body).await).await;
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["content"][0]["text"],
        "fake reply to tool result: found twice"
    );
}

#[tokio::test]
async fn anthropic_stop_sequence_and_max_tokens_streamed() {
    let up = FakeUpstream::openai().reply(EIGHT).start().await;
    let mut body = claude("x", true);
    body["stop_sequences"] = json!(["five", "seven"]);
    let (f, _) = frames(messages(&up, body.clone()).await).await;
    let evs = named_events(&f);
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "five"})
    );
    assert_eq!(delta["usage"]["output_tokens"], 4);

    body["stop_sequences"] = json!([]);
    body["max_tokens"] = json!(3);
    body["stream"] = json!(false);
    let v = json_body(messages(&up, body).await).await;
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["content"][0]["text"], "one two three");
    assert_eq!(v["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn anthropic_status_behaviours_use_anthropic_errors() {
    let cases = [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ];
    let up = statuses_in_turn(cases.iter().map(|&(status, _)| (status, Some("3"))))
        .then(Behaviour::Status {
            status: 418,
            retry_after: None,
            body: Some("{\"custom\":true}".into()),
        })
        .start()
        .await;
    for (status, kind) in cases {
        let resp = messages(&up, claude("x", false)).await;
        assert_eq!(resp.status(), status);
        assert_eq!(header(&resp, "retry-after"), Some("3"));
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
        let id = header(&resp, "request-id").unwrap().to_owned();
        let v = json_body(resp).await;
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind, "{status}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(v["request_id"], id.as_str());
    }
    let resp = messages(&up, claude("x", false)).await;
    assert_eq!(resp.status(), 418);
    assert_eq!(json_body(resp).await, json!({"custom": true}));
}

#[tokio::test]
async fn anthropic_keys_versions_and_validation() {
    let up = FakeUpstream::openai().require_key("sk-ant").start().await;
    let body = claude("x", false);
    let error_of = |v: Value| {
        (
            v["error"]["type"].as_str().unwrap().to_owned(),
            v["error"]["message"].as_str().unwrap().to_owned(),
        )
    };
    let v2023 = ("anthropic-version", "2023-06-01");
    let resp = messages_with(&up, &[v2023], &body).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        error_of(json_body(resp).await),
        (
            "authentication_error".into(),
            "x-api-key header is required".into()
        )
    );
    let resp = messages_with(&up, &[v2023, ("x-api-key", "nope")], &body).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error_of(json_body(resp).await).1, "invalid x-api-key");
    // An OpenAI-style bearer token is what the 2.x SDKs send; x-api-key wins over it.
    assert_eq!(
        messages_with(&up, &[v2023, ("x-api-key", "sk-ant")], &body)
            .await
            .status(),
        200
    );
    assert_eq!(
        messages_with(&up, &[v2023, ("authorization", "Bearer sk-ant")], &body)
            .await
            .status(),
        200
    );
    let both = &[
        v2023,
        ("x-api-key", "sk-ant"),
        ("authorization", "Bearer no"),
    ];
    assert_eq!(messages_with(&up, both, &body).await.status(), 200);
    let both = &[
        v2023,
        ("x-api-key", "no"),
        ("authorization", "Bearer sk-ant"),
    ];
    assert_eq!(messages_with(&up, both, &body).await.status(), 401);

    let resp = messages_with(&up, &[("x-api-key", "sk-ant")], &body).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        error_of(json_body(resp).await),
        (
            "invalid_request_error".into(),
            "anthropic-version: header is required".into()
        )
    );
    let resp = messages_with(
        &up,
        &[("x-api-key", "sk-ant"), ("anthropic-version", "2024-01-01")],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        error_of(json_body(resp).await).1,
        "anthropic-version: \"2024-01-01\" is not a valid version"
    );
    let latest = &[("x-api-key", "sk-ant"), ("anthropic-version", "2026-10-21")];
    assert_eq!(messages_with(&up, latest, &body).await.status(), 200);

    let key = &[("x-api-key", "sk-ant"), v2023];
    let invalid = [
        (
            json!({"max_tokens": 5, "messages": []}),
            "model: Field required",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5}),
            "messages: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]}]}),
            "messages.0.content.0.image.source.url.url: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
            "messages.0.content.0.tool_result.tool_use_id: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "n": 2}),
            "n: Extra inputs are not permitted",
        ),
    ];
    for (body, message) in invalid {
        let resp = call(&up, Method::POST, "/v1/messages", key, Some(&body)).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(error_of(json_body(resp).await).1, message);
    }
    let image = json!({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": "what is this"}]}]});
    let resp = call(&up, Method::POST, "/v1/messages", key, Some(&image)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_body(resp).await["content"][0]["text"],
        "fake reply to: what is this"
    );
}

#[tokio::test]
async fn anthropic_reset_and_hang() {
    let up = FakeUpstream::openai()
        .then(Behaviour::Reset)
        .then(Behaviour::Hang)
        .start()
        .await;
    let mut c = common::connect(up.addr()).await;
    let req = hyper::Request::post(format!("http://{}/v1/messages", up.addr()))
        .header("host", "x")
        .header("anthropic-version", "2023-06-01")
        .body(http_body_util::Full::new(Bytes::from(
            claude("x", false).to_string(),
        )))
        .unwrap();
    c.ready().await.unwrap();
    assert!(c.send_request(req).await.is_err(), "reset: no response");
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        messages(&up, claude("x", false)),
    )
    .await;
    assert!(hung.is_err(), "hang: no headers");
    assert!(up.wait_disconnects(1, Duration::from_secs(5)).await);
    assert_eq!(up.hits(), 2);
}

// ---------------------------------------------------------------- Gemini

#[tokio::test]
async fn gemini_response_shape_and_cached_tokens() {
    let up = FakeUpstream::openai().cache_tokens(7, 3).start().await;
    assert!(up.gemini_base_url().ends_with("/v1beta"));
    assert_eq!(
        up.gemini_base_url().trim_end_matches("/v1beta"),
        up.base_url().trim_end_matches("/v1")
    );
    let mut body = gemini("hello there");
    body["systemInstruction"] = json!({"parts": [{"text": "be brief"}]});
    let resp = generate(&up, "generateContent", "", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert!(header(&resp, "request-id").is_none() && header(&resp, "x-request-id").is_none());
    let v = json_body(resp).await;
    let id = v["responseId"].as_str().unwrap();
    assert_eq!(
        v,
        json!({"candidates": [{"content": {"parts": [{"text": "fake reply to: hello there"}], "role": "model"},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17,
                "cachedContentTokenCount": 7, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 7}]},
            "modelVersion": "gemini-2.5-flash", "responseId": id})
    );
}

#[tokio::test]
async fn gemini_sse_stream_and_behaviours() {
    let up = FakeUpstream::openai()
        .reply(EIGHT)
        .then(Behaviour::Ok)
        .then(Behaviour::CutAfter(2))
        .then(Behaviour::EndWithoutDone)
        .then(Behaviour::ErrorEventAfter(1))
        .then(Behaviour::StallAfter(1))
        .start()
        .await;
    let resp = generate(&up, "streamGenerateContent", "?alt=sse", gemini("hi")).await;
    assert_eq!(header(&resp, "content-type"), Some("text/event-stream"));
    let (f, errored) = frames(resp).await;
    assert!(!errored);
    let evs = gemini_events(&f);
    assert_eq!(evs.len(), 5, "4 pieces and the final event");
    let text: String = evs.iter().map(text_of).collect();
    assert_eq!(text, EIGHT);
    for e in &evs[..4] {
        assert!(e["candidates"][0].get("finishReason").is_none(), "{e}");
        assert!(
            e["usageMetadata"].get("candidatesTokenCount").is_none(),
            "{e}"
        );
        assert_eq!(e["responseId"], evs[0]["responseId"]);
    }
    assert_eq!(evs[4]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(evs[4]["usageMetadata"]["candidatesTokenCount"], 8);

    let (f, errored) =
        frames(generate(&up, "streamGenerateContent", "?alt=sse", gemini("hi")).await).await;
    assert!(errored);
    assert_eq!(gemini_events(&f).len(), 2);

    let (f, errored) =
        frames(generate(&up, "streamGenerateContent", "?alt=sse", gemini("hi")).await).await;
    assert!(!errored);
    let evs = gemini_events(&f);
    assert_eq!(evs.len(), 4, "no final event");
    assert!(
        evs.iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none())
    );

    let (f, errored) =
        frames(generate(&up, "streamGenerateContent", "?alt=sse", gemini("hi")).await).await;
    assert!(!errored);
    let evs = gemini_events(&f);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[1]["error"]["code"], 500);
    assert_eq!(evs[1]["error"]["status"], "INTERNAL");

    let resp = generate(&up, "streamGenerateContent", "?alt=sse", gemini("hi")).await;
    assert_stalls_after(resp, 1).await;
}

#[tokio::test]
async fn gemini_json_array_stream() {
    let up = FakeUpstream::openai()
        .reply(EIGHT)
        .chunks(2)
        .then(Behaviour::Ok)
        .then(Behaviour::CutAfter(2))
        .then(Behaviour::EndWithoutDone)
        .then(Behaviour::ErrorEventAfter(1))
        .start()
        .await;
    let resp = generate(&up, "streamGenerateContent", "", gemini("hi")).await;
    assert_eq!(
        header(&resp, "content-type"),
        Some("application/json; charset=UTF-8")
    );
    let (f, _) = frames(resp).await;
    assert_eq!(f.len(), 4, "3 elements and the closing bracket");
    assert!(f[0].starts_with(b"[{") && f[1].starts_with(b",\r\n{") && &f[3][..] == b"]");
    let all: Vec<Value> = serde_json::from_slice(&f.concat()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(text_of).collect::<String>(), EIGHT);
    assert_eq!(all[2]["candidates"][0]["finishReason"], "STOP");

    let (f, errored) = frames(generate(&up, "streamGenerateContent", "", gemini("hi")).await).await;
    assert!(errored && f.len() == 2 && !f[1].ends_with(b"]"));

    let (f, _) = frames(generate(&up, "streamGenerateContent", "", gemini("hi")).await).await;
    let all: Vec<Value> = serde_json::from_slice(&f.concat()).unwrap();
    assert_eq!(
        all.len(),
        2,
        "the final element is left out, the array still closes"
    );

    let (f, _) = frames(generate(&up, "streamGenerateContent", "", gemini("hi")).await).await;
    let all: Vec<Value> = serde_json::from_slice(&f.concat()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["error"]["status"], "INTERNAL");
}

#[tokio::test]
async fn gemini_status_behaviours_use_google_errors() {
    let cases = [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ];
    let retry_after = |status| (status == 429).then_some("12");
    let up = statuses_in_turn(
        cases
            .iter()
            .map(|&(status, _)| (status, retry_after(status))),
    )
    .start()
    .await;
    for (status, name) in cases {
        let resp = generate(&up, "generateContent", "", gemini("x")).await;
        assert_eq!(resp.status(), status);
        assert_eq!(
            header(&resp, "retry-after"),
            (status == 429).then_some("12")
        );
        let v = json_body(resp).await;
        assert_eq!(v["error"]["code"], status);
        assert_eq!(v["error"]["status"], name);
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if status == 429 {
            assert_eq!(
                v["error"]["details"],
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}])
            );
        } else {
            assert!(v["error"].get("details").is_none());
        }
    }
}

#[tokio::test]
async fn gemini_safety_tool_calls_and_validation() {
    let up = FakeUpstream::openai()
        .models(&["gemini-2.5-flash", "gemini-2.5-pro"])
        .start()
        .await;
    let v =
        json_body(generate(&up, "generateContent", "", gemini("BLOCK_PROMPT please")).await).await;
    assert!(v.get("candidates").is_none());
    assert_eq!(v["promptFeedback"]["blockReason"], "SAFETY");
    assert!(v["usageMetadata"].get("candidatesTokenCount").is_none());
    let (f, _) = frames(
        generate(
            &up,
            "streamGenerateContent",
            "?alt=sse",
            gemini("BLOCK_PROMPT"),
        )
        .await,
    )
    .await;
    let evs = gemini_events(&f);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["promptFeedback"]["blockReason"], "SAFETY");

    let v = json_body(
        generate(
            &up,
            "generateContent",
            "",
            gemini("please BLOCK_ANSWER now"),
        )
        .await,
    )
    .await;
    let c = &v["candidates"][0];
    assert_eq!(c["finishReason"], "SAFETY");
    assert_eq!(text_of(&v), "fake reply to:");
    assert!(
        c["safetyRatings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["blocked"] == true)
    );

    let mut body = gemini("call it");
    body["tools"] = json!([{"googleSearch": {}}, {"function_declarations": [{"name": "lookup"}]}]);
    let (f, _) =
        frames(generate(&up, "streamGenerateContent", "?alt=sse", body.clone()).await).await;
    let evs = gemini_events(&f);
    assert_eq!(evs.len(), 1, "one chunk with the whole call");
    assert_eq!(
        evs[0]["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "lookup", "args": {"input": "call it"}}}])
    );
    assert_eq!(evs[0]["candidates"][0]["finishReason"], "STOP");
    body["contents"] = json!([
        {"role": "user", "parts": [{"text": "call it"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"output": {"n": 1}}}}]}
    ]);
    let v = json_body(generate(&up, "generateContent", "", body).await).await;
    assert_eq!(
        text_of(&v),
        r#"fake reply to tool result: {"output":{"n":1}}"#
    );

    let bad = [
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "messages": []}),
            "Unknown name \"messages\"",
        ),
        (json!({"contents": []}), "contents is not specified"),
        (
            json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
            "Please use a valid role: user, model.",
        ),
        (json!({"contents": [{"parts": []}]}), "contents[0].parts"),
    ];
    for (body, message) in bad {
        let resp = generate(&up, "generateContent", "", body).await;
        assert_eq!(resp.status(), 400);
        let v = json_body(resp).await;
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(message), "{m}");
    }

    let v = json_body(call(&up, Method::GET, "/v1beta/models", &[], None).await).await;
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["models/gemini-2.5-flash", "models/gemini-2.5-pro"]);
    assert_eq!(v["models"][0]["displayName"], "gemini-2.5-flash");
    assert_eq!(
        v["models"][0]["supportedGenerationMethods"],
        json!(["generateContent", "countTokens"])
    );
    let resp = call(&up, Method::GET, "/v1beta/models/gemini-2.5-pro", &[], None).await;
    assert_eq!(json_body(resp).await["name"], "models/gemini-2.5-pro");
    let resp = call(&up, Method::GET, "/v1beta/models/nope", &[], None).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_body(resp).await["error"]["status"], "NOT_FOUND");
}

// ---------------------------------------------------------------- keys across the APIs

/// A request and the status it gets: `(method, path, headers, body, status)`.
type Case<'a> = (
    Method,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a Value>,
    u16,
);

#[tokio::test]
async fn require_key_is_checked_the_way_each_api_sends_it() {
    let up = FakeUpstream::openai().require_key("k1").start().await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let (body, generate) = (gemini("x"), "/v1beta/models/g:generateContent");
    let cases: [Case<'_>; 9] = [
        (
            Method::POST,
            "/v1/chat/completions",
            &[("x-api-key", "k1")],
            Some(&chat),
            401,
        ),
        (
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", "Bearer k1")],
            Some(&chat),
            200,
        ),
        (Method::POST, generate, &[], Some(&body), 403),
        (
            Method::POST,
            generate,
            &[("x-goog-api-key", "k2")],
            Some(&body),
            400,
        ),
        (
            Method::POST,
            "/v1beta/models/g:generateContent?key=k2",
            &[],
            Some(&body),
            400,
        ),
        (
            Method::POST,
            generate,
            &[("x-goog-api-key", "k1")],
            Some(&body),
            200,
        ),
        (
            Method::POST,
            "/v1beta/models/g:streamGenerateContent?alt=sse&key=k1",
            &[],
            Some(&body),
            200,
        ),
        (Method::GET, "/v1beta/models?key=k1", &[], None, 200),
        (
            Method::GET,
            "/v1beta/models",
            &[("authorization", "Bearer k1")],
            None,
            403,
        ),
    ];
    for (method, path, headers, body, status) in cases {
        let resp = call(&up, method, path, headers, body).await;
        assert_eq!(resp.status(), status, "{path} {headers:?}");
        if status == 200 {
            continue;
        }
        let v = json_body(resp).await;
        match status {
            403 => {
                assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
                let message = v["error"]["message"].as_str().unwrap();
                assert!(message.contains("unregistered callers"), "{message}");
            }
            400 => {
                assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
                assert_eq!(
                    v["error"]["message"],
                    "API key not valid. Please pass a valid API key."
                );
                assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");
            }
            _ => {}
        }
    }
    let recorded = up.requests();
    let stream = recorded
        .iter()
        .find(|r| r.path.ends_with(":streamGenerateContent"))
        .unwrap();
    assert_eq!(stream.query.as_deref(), Some("alt=sse&key=k1"));
}

// ---------------------------------------------------------------- OpenAI chat tool calls

fn tool_chat(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream,
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "find it"}]})
}

#[tokio::test]
async fn openai_chat_tool_calls_plain_and_streamed() {
    let up = FakeUpstream::openai().chunks(3).start().await;
    let chat_path = "/v1/chat/completions";
    let v = json_body(call(&up, Method::POST, chat_path, &[], Some(&tool_chat(false))).await).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["content"], Value::Null);
    let call0 = &message["tool_calls"][0];
    let id = call0["id"].as_str().unwrap();
    assert!(
        id.starts_with("call_") && id[5..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(call0["type"], "function");
    assert_eq!(call0["function"]["name"], "lookup");
    assert_eq!(call0["function"]["arguments"], r#"{"input":"find it"}"#);

    let (f, _) =
        frames(call(&up, Method::POST, chat_path, &[], Some(&tool_chat(true))).await).await;
    let evs = data_events(&f, "\n\n");
    assert_eq!(evs.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    let head = &first["tool_calls"][0];
    assert_eq!(head["index"], 0);
    assert!(head["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(head["type"], "function");
    assert_eq!(head["function"], json!({"name": "lookup", "arguments": ""}));
    let fragments: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            let tc = &c["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(tc["index"], 0);
            assert!(tc.get("id").is_none());
            tc["function"]["arguments"].as_str().unwrap()
        })
        .collect();
    assert_eq!(fragments.len(), 3);
    assert_eq!(fragments.concat(), r#"{"input":"find it"}"#);
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "tool_calls");

    // Forced, "none", and the tool result.
    let mut body = tool_chat(false);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "other"}});
    let v = json_body(call(&up, Method::POST, chat_path, &[], Some(&body)).await).await;
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "other"
    );
    body["tool_choice"] = json!("none");
    let v = json_body(call(&up, Method::POST, chat_path, &[], Some(&body)).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "fake reply to: find it"
    );
    body["tool_choice"] = json!("auto");
    body["messages"] = json!([
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"}
    ]);
    let v = json_body(call(&up, Method::POST, chat_path, &[], Some(&body)).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "fake reply to tool result: found"
    );
}

#[tokio::test]
async fn openai_chat_stop_max_tokens_and_cached_tokens() {
    let up = FakeUpstream::openai()
        .reply(EIGHT)
        .cache_tokens(4, 9)
        .start()
        .await;
    let chat_path = "/v1/chat/completions";
    let ask = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let v = json_body(
        call(
            &up,
            Method::POST,
            chat_path,
            &[],
            Some(&ask(json!({"stop": "four"}))),
        )
        .await,
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "one two three ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    // Cached tokens are part of prompt_tokens: 1 uncached + 4 cached.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 8);
    let body = ask(json!({"stop": ["six", "two"], "max_tokens": 5}));
    let v = json_body(call(&up, Method::POST, chat_path, &[], Some(&body)).await).await;
    assert_eq!(v["choices"][0]["message"]["content"], "one ");
    let body = ask(json!({"max_completion_tokens": 2, "stream": true}));
    let (f, _) = frames(call(&up, Method::POST, chat_path, &[], Some(&body)).await).await;
    let evs = data_events(&f, "\n\n");
    let finish: Value = serde_json::from_str(&evs[evs.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let text: String = evs[1..evs.len() - 2]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "one two");
}

// ---------------------------------------------------------------- fixtures

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every field path of `v` (`a.b`, `a[].c`), leaving out the free-form tool
/// arguments (`input`, `args`) and the `error` event of a stream.
fn field_paths(v: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let path = format!("{prefix}{k}");
                out.insert(path.clone());
                if k != "input" && k != "args" {
                    field_paths(x, &format!("{path}."), out);
                }
            }
        }
        Value::Array(items) => {
            for x in items {
                field_paths(x, &format!("{}[].", prefix.trim_end_matches('.')), out);
            }
        }
        _ => {}
    }
}

fn paths_of<'a>(values: impl IntoIterator<Item = &'a Value>) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for v in values {
        field_paths(v, "", &mut out);
    }
    out
}

/// Every field path of `sent` is one of `documented`'s.
fn assert_documented(sent: &[Value], documented: &[Value], what: &str) {
    let extra: Vec<String> = paths_of(sent)
        .difference(&paths_of(documented))
        .cloned()
        .collect();
    assert!(extra.is_empty(), "{what} no fixture has: {extra:?}");
}

/// The fake sends no field that the documented transcripts in fixtures/ lack.
#[tokio::test]
async fn the_fake_sends_only_fields_the_fixtures_have() {
    let up = FakeUpstream::openai().cache_tokens(5, 2).start().await;
    let tools = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);

    let documented: Vec<Value> = [
        "anthropic/message_text.json",
        "anthropic/message_tool_use.json",
    ]
    .iter()
    .map(|f| serde_json::from_str(&fixture(f)).unwrap())
    .collect();
    let mut with_tools = claude("x", false);
    with_tools["tools"] = tools.clone();
    let sent = [
        json_body(messages(&up, claude("x", false)).await).await,
        json_body(messages(&up, with_tools.clone()).await).await,
    ];
    assert_documented(&sent, &documented, "Anthropic fields");

    let parse_sse = |text: &str| -> Vec<Value> {
        text.split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| serde_json::from_str(b.split_once("\ndata: ").unwrap().1).unwrap())
            .collect()
    };
    let documented: Vec<Value> = ["anthropic/stream_text.sse", "anthropic/stream_tool_use.sse"]
        .iter()
        .flat_map(|f| parse_sse(&fixture(f)))
        .collect();
    with_tools["stream"] = json!(true);
    let mut sent = Vec::new();
    for body in [claude("x", true), with_tools] {
        let (f, _) = frames(messages(&up, body).await).await;
        sent.extend(named_events(&f).into_iter().map(|(_, v)| v));
    }
    assert_documented(&sent, &documented, "Anthropic event fields");

    let documented: Vec<Value> = [
        "gemini/response_text.json",
        "gemini/response_function_call.json",
        "gemini/prompt_blocked.json",
    ]
    .iter()
    .map(|f| serde_json::from_str(&fixture(f)).unwrap())
    .chain(
        ["gemini/stream_text.sse", "gemini/stream_function_call.sse"]
            .iter()
            .flat_map(|f| {
                let frames: Vec<Bytes> = fixture(f)
                    .split_inclusive("\r\n\r\n")
                    .map(|e| Bytes::from(e.to_owned()))
                    .collect();
                gemini_events(&frames)
            })
            .collect::<Vec<_>>(),
    )
    .collect();
    let mut call_it = gemini("x");
    call_it["tools"] = json!([{"functionDeclarations": [{"name": "lookup"}]}]);
    let mut sent = Vec::new();
    for body in [gemini("x"), gemini("BLOCK_PROMPT"), call_it] {
        sent.push(json_body(generate(&up, "generateContent", "", body.clone()).await).await);
        let (f, _) = frames(generate(&up, "streamGenerateContent", "?alt=sse", body).await).await;
        sent.extend(gemini_events(&f));
    }
    assert_documented(&sent, &documented, "Gemini fields");
}
