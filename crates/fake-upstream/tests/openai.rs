//! End-to-end checks of the fake over real sockets, with a bare hyper client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{connect, data_events, frames, json_body};

fn post_req(addr: SocketAddr, path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> hyper::Result<Response<Incoming>> {
    sender.ready().await?;
    sender.send_request(req).await
}

async fn post(up: &FakeHandle, path: &str, body: Value) -> Response<Incoming> {
    let mut c = connect(up.addr()).await;
    send(&mut c, post_req(up.addr(), path, &body))
        .await
        .unwrap()
}

async fn get(up: &FakeHandle, path: &str) -> Response<Incoming> {
    let mut c = connect(up.addr()).await;
    let req = Request::get(format!("http://{}{path}", up.addr()))
        .header("host", up.addr().to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&mut c, req).await.unwrap()
}

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello world"}
        ]
    })
}

#[tokio::test]
async fn non_stream_body_has_openai_shape() {
    let up = FakeUpstream::openai().start().await;
    let resp = post(&up, "/v1/chat/completions", chat(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(
        resp.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert!(resp.headers().contains_key("openai-processing-ms"));
    let v = json_body(resp).await;

    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["system_fingerprint"], "fp_fake");
    assert_eq!(v["service_tier"], "default");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "fake reply to: hello world", "refusal": null, "annotations": []})
    );
    // "be brief" + "hello world" = 19 chars -> 5 tokens; reply has 5 words.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 10);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    assert_eq!(up.hits(), 1);
    assert_eq!(up.completed(), 1);
    assert_eq!(up.disconnects(), 0);
}

#[tokio::test]
async fn stream_framing_without_usage() {
    let up = FakeUpstream::openai()
        .reply("one two three four five six seven eight")
        .start()
        .await;
    let resp = post(&up, "/v1/chat/completions", chat(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (frames, errored) = frames(resp).await;
    assert!(!errored);
    let evs = data_events(&frames, "\n\n");
    // role + 4 content pieces + finish + [DONE]
    assert_eq!(evs.len(), 7, "{evs:#?}");
    assert_eq!(evs[6], "[DONE]");
    let chunks: Vec<Value> = evs[..6]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap().to_owned();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["model"], "gpt-4o-mini");
        assert_eq!(c["created"], chunks[0]["created"]);
        assert_eq!(c["system_fingerprint"], "fp_fake");
        assert!(c.get("usage").is_none());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let text: String = chunks[1..5]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "one two three four five six seven eight");
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(up.completed(), 1);
}

#[tokio::test]
async fn stream_with_include_usage_and_custom_chunks() {
    let up = FakeUpstream::openai()
        .reply("abcdef")
        .chunks(2)
        .start()
        .await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let (frames, errored) = frames(post(&up, "/v1/chat/completions", body).await).await;
    assert!(!errored);
    let evs = data_events(&frames, "\n\n");
    // role + 2 pieces + finish + usage + [DONE]
    assert_eq!(evs.len(), 6, "{evs:#?}");
    assert_eq!(evs[5], "[DONE]");
    let chunks: Vec<Value> = evs[..5]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for c in &chunks[..4] {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.get("usage").is_some());
    }
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "abc");
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "def");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["prompt_tokens"], 5);
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 1);
    assert_eq!(chunks[4]["usage"]["total_tokens"], 6);
}

#[tokio::test]
async fn chunk_delay_paces_events() {
    let up = FakeUpstream::openai()
        .chunk_delay(Duration::from_millis(40))
        .start()
        .await;
    let resp = post(&up, "/v1/chat/completions", chat(true)).await;
    let mut body = resp.into_body();
    let t0 = Instant::now();
    let mut stamps = Vec::new();
    while let Some(f) = body.frame().await {
        if f.unwrap().is_data() {
            stamps.push(t0.elapsed());
        }
    }
    assert_eq!(stamps.len(), 7);
    // 6 gaps of 40ms after the first event.
    assert!(
        stamps[6] - stamps[0] >= Duration::from_millis(200),
        "{stamps:?}"
    );
    assert!(
        stamps[1] - stamps[0] >= Duration::from_millis(30),
        "{stamps:?}"
    );
}

#[tokio::test]
async fn fail_first_then_ok() {
    let up = FakeUpstream::openai().fail_first(2, 503).start().await;
    for _ in 0..2 {
        let resp = post(&up, "/v1/chat/completions", chat(false)).await;
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key("x-request-id"));
        let v = json_body(resp).await;
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["param"], Value::Null);
        assert!(v["error"]["message"].is_string());
    }
    let resp = post(&up, "/v1/chat/completions", chat(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.hits(), 3);
    assert_eq!(up.requests().len(), 3);
}

#[tokio::test]
async fn rate_limit_and_custom_status_body() {
    let up = FakeUpstream::openai()
        .rate_limit_first(1, 7)
        .then(Behaviour::Status {
            status: 400,
            retry_after: None,
            body: Some(
                r#"{"error":{"message":"custom","type":"x","param":null,"code":null}}"#.into(),
            ),
        })
        .then(Behaviour::status(401))
        .then(Behaviour::status(404))
        .start()
        .await;
    let resp = post(&up, "/v1/chat/completions", chat(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v = json_body(resp).await;
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let v = json_body(post(&up, "/v1/chat/completions", chat(false)).await).await;
    assert_eq!(v["error"]["message"], "custom");
    let v = json_body(post(&up, "/v1/chat/completions", chat(false)).await).await;
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let v = json_body(post(&up, "/v1/chat/completions", chat(false)).await).await;
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn reset_closes_without_response() {
    let up = FakeUpstream::openai().reset_first(1).start().await;
    let mut s = TcpStream::connect(up.addr()).await.unwrap();
    let body = chat(false).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        read.is_err() || buf.is_empty(),
        "got a response: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(up.hits(), 1);

    // The next request is served normally.
    assert_eq!(
        post(&up, "/v1/chat/completions", chat(false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn cut_after_aborts_mid_body() {
    let up = FakeUpstream::openai()
        .then(Behaviour::CutAfter(2))
        .start()
        .await;
    let resp = post(&up, "/v1/chat/completions", chat(true)).await;
    assert_eq!(resp.status(), 200);
    let (frames, errored) = frames(resp).await;
    assert!(errored, "body should end with an error");
    let evs = data_events(&frames, "\n\n");
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().all(|e| !e.contains("\"stop\"") && e != "[DONE]"));
    assert_eq!(up.completed(), 0);
    assert_eq!(up.disconnects(), 0);

    // Non-streaming: half a body, then abort.
    up.push(Behaviour::CutAfter(0));
    let resp = post(&up, "/v1/chat/completions", chat(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.into_body().collect().await.is_err());
}

#[tokio::test]
async fn end_without_done_and_error_event() {
    let up = FakeUpstream::openai()
        .then(Behaviour::EndWithoutDone)
        .then(Behaviour::ErrorEventAfter(1))
        .start()
        .await;
    let (f, errored) = frames(post(&up, "/v1/chat/completions", chat(true)).await).await;
    assert!(!errored);
    let evs = data_events(&f, "\n\n");
    assert_eq!(evs.len(), 6);
    assert!(evs.last().unwrap().contains("\"stop\""));

    let (f, errored) = frames(post(&up, "/v1/chat/completions", chat(true)).await).await;
    assert!(!errored);
    let evs = data_events(&f, "\n\n");
    assert_eq!(evs.len(), 2);
    let err: Value = serde_json::from_str(&evs[1]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert_eq!(up.completed(), 2);
}

#[tokio::test]
async fn stall_and_hang_count_disconnects() {
    let up = FakeUpstream::openai()
        .then(Behaviour::StallAfter(1))
        .then(Behaviour::Hang)
        .start()
        .await;

    let resp = post(&up, "/v1/chat/completions", chat(true)).await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    let next = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
    assert!(next.is_err(), "stream should stall");
    drop(body); // closes the connection
    assert!(up.wait_disconnects(1, Duration::from_secs(5)).await);

    let mut c = connect(up.addr()).await;
    let pending = tokio::time::timeout(
        Duration::from_millis(100),
        send(
            &mut c,
            post_req(up.addr(), "/v1/chat/completions", &chat(false)),
        ),
    )
    .await;
    assert!(pending.is_err(), "hang should send nothing");
    drop(c);
    assert!(up.wait_disconnects(2, Duration::from_secs(5)).await);
    assert_eq!(up.completed(), 0);
}

#[tokio::test]
async fn latency_and_slow_first_event() {
    let up = FakeUpstream::openai()
        .latency(Duration::from_millis(60))
        .then(Behaviour::SlowFirstEvent(Duration::from_millis(150)))
        .start()
        .await;
    let t0 = Instant::now();
    let resp = post(&up, "/v1/chat/completions", chat(true)).await;
    let headers_at = t0.elapsed();
    assert!(headers_at >= Duration::from_millis(60), "{headers_at:?}");
    assert!(headers_at < Duration::from_millis(150), "{headers_at:?}");
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    while body.frame().await.is_some() {}
    assert!(up.wait_disconnects(0, Duration::ZERO).await);
    assert_eq!(up.completed(), 1);
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let up = FakeUpstream::openai().start().await;
    let v = json_body(
        post(
            &up,
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["hello", "world"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let e0: Vec<f64> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(e0.len(), 8);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));

    // Same text -> same vector; dimensions honoured; base64 = LE f32.
    let v2 = json_body(
        post(
            &up,
            "/v1/embeddings",
            json!({"model": "m", "input": "hello", "encoding_format": "base64"}),
        )
        .await,
    )
    .await;
    let b64 = v2["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b64.len(), 44); // 32 bytes
    let v3 = json_body(
        post(
            &up,
            "/v1/embeddings",
            json!({"model": "m", "input": "hello", "dimensions": 3}),
        )
        .await,
    )
    .await;
    assert_eq!(v3["data"][0]["embedding"].as_array().unwrap().len(), 3);
    let v4 = json_body(
        post(
            &up,
            "/v1/embeddings",
            json!({"model": "m", "input": "hello"}),
        )
        .await,
    )
    .await;
    assert_eq!(v4["data"][0]["embedding"], data[0]["embedding"]);

    let tokens = json_body(
        post(
            &up,
            "/v1/embeddings",
            json!({"model": "m", "input": [[1, 2, 3], [4]]}),
        )
        .await,
    )
    .await;
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);
    let bad = post(&up, "/v1/embeddings", json!({"model": "m", "input": []})).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn models_and_errors() {
    let up = FakeUpstream::openai().models(&["a", "b"]).start().await;
    let v = json_body(get(&up, "/v1/models").await).await;
    assert_eq!(
        v,
        json!({"object": "list", "data": [
            {"id": "a", "object": "model", "created": 1_686_935_002, "owned_by": "fake"},
            {"id": "b", "object": "model", "created": 1_686_935_002, "owned_by": "fake"}
        ]})
    );
    assert_eq!(json_body(get(&up, "/v1/models/b").await).await["id"], "b");
    let resp = get(&up, "/v1/models/zzz").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_body(resp).await["error"]["code"], "model_not_found");

    let resp = get(&up, "/v2/nope").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        json_body(resp).await["error"]["message"],
        "Invalid URL (GET /v2/nope)"
    );

    let mut c = connect(up.addr()).await;
    let req = Request::post(format!("http://{}/v1/chat/completions", up.addr()))
        .header("host", "x")
        .body(Full::new(Bytes::from_static(b"{not json")))
        .unwrap();
    let resp = send(&mut c, req).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_body(resp).await["error"]["type"],
        "invalid_request_error"
    );

    let resp = post(&up, "/v1/chat/completions", json!({"model": "a"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "messages");
}

#[tokio::test]
async fn require_key_and_recording_over_keep_alive() {
    let up = FakeUpstream::openai()
        .require_key("sk-good")
        .reply("ok")
        .start()
        .await;
    let mut c = connect(up.addr()).await;

    let resp = send(
        &mut c,
        post_req(up.addr(), "/v1/chat/completions?x=1", &chat(false)),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json_body(resp).await["error"]["code"], "invalid_api_key");

    let mut req = post_req(up.addr(), "/v1/chat/completions", &chat(false));
    req.headers_mut()
        .insert("authorization", "Bearer sk-bad".parse().unwrap());
    let resp = send(&mut c, req).await.unwrap();
    assert_eq!(resp.status(), 401);
    json_body(resp).await;

    let mut req = post_req(up.addr(), "/v1/chat/completions", &chat(false));
    req.headers_mut()
        .insert("authorization", "Bearer sk-good".parse().unwrap());
    let resp = send(&mut c, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_body(resp).await["choices"][0]["message"]["content"],
        "ok"
    );

    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].query.as_deref(), Some("x=1"));
    assert_eq!(reqs[2].header("Authorization"), Some("Bearer sk-good"));
    assert_eq!(reqs[2].json()["model"], "gpt-4o-mini");
    assert!(reqs[0].at <= reqs[2].at);
}

#[tokio::test]
async fn set_always_and_shutdown() {
    let up = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    assert_eq!(
        post(&up, "/v1/chat/completions", chat(false))
            .await
            .status(),
        500
    );
    up.set_always(Behaviour::Ok);
    assert_eq!(
        post(&up, "/v1/chat/completions", chat(false))
            .await
            .status(),
        200
    );
    up.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(up.addr()).await.is_err());
}

#[tokio::test]
async fn client_leaving_during_latency_counts_disconnect() {
    let up = FakeUpstream::openai()
        .latency(Duration::from_secs(30))
        .start()
        .await;
    let mut c = connect(up.addr()).await;
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        send(
            &mut c,
            post_req(
                up.addr(),
                "/v1/embeddings",
                &json!({"model": "m", "input": "x"}),
            ),
        ),
    )
    .await;
    assert!(r.is_err());
    drop(c);
    assert!(up.wait_disconnects(1, Duration::from_secs(5)).await);
    assert_eq!(up.hits(), 1);
}
