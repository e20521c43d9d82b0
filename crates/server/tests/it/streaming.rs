//! Streaming: pass-through, usage, commit point, cuts, stalls, cancellation.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDS: [&str; 3] = ["a", "b", "c"];
const RETRY: &str = "retry = { max_retries = 2, backoff_base_ms = 10, backoff_max_ms = 50 }";

/// A gateway (auth off) over upstreams at `urls`: upstream `i` is provider `IDS[i]`
/// serving `model-<id>`, with a target `t<id>` (plus `target_extra` lines).
async fn gateway_at(ups: &[(String, &str)], rest: &str) -> Gw {
    let mut toml = format!("[server]\nauth = \"off\"\n\n{FAST_RETRY}\n");
    for (i, (url, target_extra)) in ups.iter().enumerate() {
        let id = IDS[i];
        toml.push_str(&provider(id, url, &[&format!("model-{id}")]));
        toml.push_str(&format!(
            "\n[targets.t{id}]\nprovider = \"{id}\"\nmodel = \"model-{id}\"\n{target_extra}\n"
        ));
    }
    toml.push_str(rest);
    Gw::start_with_env(
        &toml,
        &[("A_KEY", "sk-a"), ("B_KEY", "sk-b"), ("C_KEY", "sk-c")],
    )
    .await
}

async fn gateway(ups: &[(&FakeHandle, &str)], rest: &str) -> Gw {
    let ups: Vec<(String, &str)> = ups.iter().map(|(f, x)| (f.base_url(), *x)).collect();
    gateway_at(&ups, rest).await
}

/// A single-target route `r` over target `ta`.
fn single() -> String {
    format!("[routes.r]\nstrategy = \"single\"\ntargets = [\"ta\"]\n{RETRY}\n")
}

/// A fallback route `r` over `ta`, `tb` without same-target retries.
const FALLBACK: &str = "[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\nretry = { max_retries = 0 }\n";

fn stream_body(include_usage: Option<bool>) -> serde_json::Value {
    let mut body = chat_body("route::r", true);
    if let Some(u) = include_usage {
        body["stream_options"] = serde_json::json!({ "include_usage": u });
    }
    body
}

async fn stream(gw: &Gw, body: &serde_json::Value) -> reqwest::Response {
    gw.post("/v1/chat/completions")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The events of an SSE body (split on blank lines; the fake and the gateway use `\n\n`).
fn events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect()
}

fn data_of(event: &str) -> &str {
    event
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("not a data event: {event:?}"))
}

fn json_of(event: &str) -> Option<serde_json::Value> {
    serde_json::from_str(data_of(event)).ok()
}

fn is_error(event: &str) -> bool {
    json_of(event).is_some_and(|j| j.get("error").is_some())
}

/// Caller-side checks shared by every interrupted stream: some data, then exactly one
/// `stream_interrupted` error event as the very last event, and no `[DONE]`.
fn assert_interrupted(text: &str, min_data_events: usize) {
    let ev = events(text);
    assert!(
        !text.contains("[DONE]"),
        "a cut stream must not end with [DONE]:\n{text}"
    );
    let errors: Vec<&&str> = ev.iter().filter(|e| is_error(e)).collect();
    assert_eq!(errors.len(), 1, "exactly one error event:\n{text}");
    let last = ev.last().copied().unwrap_or_default();
    let err = json_of(last).unwrap_or_default();
    assert_eq!(
        err["error"]["code"], "stream_interrupted",
        "last event: {last}"
    );
    for k in ["message", "type", "param", "code"] {
        assert!(
            err["error"].get(k).is_some(),
            "error event lacks `{k}`: {last}"
        );
    }
    assert!(
        ev.len() > min_data_events,
        "expected {min_data_events}+ data events first:\n{text}"
    );
    assert!(
        ev[..ev.len() - 1]
            .iter()
            .all(|e| json_of(e).is_some_and(|j| j.get("choices").is_some())),
        "the events before the error are the upstream's chunks:\n{text}"
    );
}

fn assert_clean(text: &str) {
    let ev = events(text);
    assert_eq!(
        ev.last().copied(),
        Some("data: [DONE]"),
        "stream must end with [DONE]:\n{text}"
    );
    assert_eq!(text.matches("[DONE]").count(), 1, "one [DONE]:\n{text}");
    assert!(!ev.iter().any(|e| is_error(e)), "no error event:\n{text}");
    assert!(
        ev.iter()
            .any(|e| json_of(e).is_some_and(|j| j["choices"][0]["finish_reason"] == "stop")),
        "a finish_reason chunk:\n{text}"
    );
}

/// Replace the per-response `id` and `created` of the fake's chunks by fixed values.
fn normalise(text: &str) -> String {
    let first = events(text)
        .first()
        .and_then(|e| json_of(e))
        .unwrap_or_default();
    let mut out = text.to_string();
    if let Some(id) = first["id"].as_str() {
        out = out.replace(id, "chatcmpl-ID");
    }
    if let Some(c) = first["created"].as_u64() {
        out = out.replace(&format!("\"created\":{c}"), "\"created\":0");
    }
    out
}

// ---------------------------------------------------------------- pass-through and usage

#[tokio::test]
async fn stream_with_include_usage_is_passed_through_unchanged() {
    let a = FakeUpstream::openai().chunks(5).start().await;
    let gw = gateway(&[(&a, "")], &single()).await;
    let body = stream_body(Some(true));
    let r = stream(&gw, &body).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    assert_eq!(header(&r, "x-signalbox-provider"), Some("a"));
    let via_gateway = r.text().await.unwrap();

    // The same request straight to the fake.
    let mut direct_body = body.clone();
    direct_body["model"] = "model-a".into();
    let direct = client()
        .post(format!("{}/chat/completions", a.base_url()))
        .json(&direct_body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        normalise(&via_gateway),
        normalise(&direct),
        "byte-for-byte but for id/created"
    );

    // The usage chunk arrives exactly as the upstream sent it.
    let ev = events(&via_gateway);
    let usage = ev[ev.len() - 2];
    let u = json_of(usage).unwrap_or_default();
    assert_eq!(u["choices"], serde_json::json!([]));
    assert!(
        u["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0,
        "{usage}"
    );
    assert_eq!(ev.last().copied(), Some("data: [DONE]"));
    // The upstream got the caller's stream_options as they were.
    assert_eq!(
        a.requests()[0].json()["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn stream_without_include_usage_asks_upstream_and_strips_the_usage_chunk() {
    // The usage comes in a chunk of its own (OpenAI), or on the chunk with the finish_reason
    // (some OpenAI-compatible servers).
    for (caller_options, on_finish) in [(None, false), (Some(false), false), (None, true)] {
        let a = FakeUpstream::openai()
            .usage_on_finish_chunk(on_finish)
            .start()
            .await;
        let gw = gateway(&[(&a, "")], &single()).await;
        let r = stream(&gw, &stream_body(caller_options)).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let sent = a.requests()[0].json();
        assert_eq!(
            sent["stream_options"]["include_usage"], true,
            "upstream asked for usage: {sent}"
        );
        assert_eq!(sent["model"], "model-a");
        assert_eq!(sent["stream"], true);
        assert_eq!(
            sent["messages"][0]["content"], "Say hello",
            "the rest of the body is untouched"
        );
        assert_clean(&text);
        assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
        for e in events(&text) {
            if let Some(j) = json_of(e) {
                assert_ne!(
                    j["choices"],
                    serde_json::json!([]),
                    "usage-only chunk leaked: {e}"
                );
                assert!(
                    j.get("usage").is_none(),
                    "no usage, not even the upstream's `\"usage\":null`, reaches a caller who did not ask: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- before the first byte

#[tokio::test]
async fn stream_failing_with_503_before_its_first_event_falls_back_cleanly() {
    let a = FakeUpstream::openai().fail_first(1, 503).start().await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(&[(&a, ""), (&b, "")], FALLBACK).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_eq!(header(&r, "x-signalbox-attempts"), Some("2"));
    assert_clean(&r.text().await.unwrap());
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn stream_with_a_slow_first_event_times_out_and_falls_back() {
    let a = FakeUpstream::openai()
        .then(Behaviour::SlowFirstEvent(Duration::from_secs(3)))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let rest =
        format!("[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n{RETRY}\n");
    let gw = gateway(&[(&a, "first_byte_timeout_ms = 200"), (&b, "")], &rest).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_clean(&r.text().await.unwrap());
    assert_eq!(
        a.hits(),
        1,
        "a first-event timeout is not retried on the same target"
    );
    assert_eq!(b.hits(), 1);
    assert!(
        a.wait_disconnects(1, Duration::from_secs(5)).await,
        "the slow stream was abandoned"
    );
}

#[tokio::test]
async fn stream_cut_before_its_first_event_is_retried() {
    let a = FakeUpstream::openai()
        .then(Behaviour::CutAfter(0))
        .start()
        .await;
    let gw = gateway(&[(&a, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-attempts"), Some("2"));
    assert_clean(&r.text().await.unwrap());
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn stream_whose_first_event_is_an_error_falls_back() {
    let a = FakeUpstream::openai()
        .always(Behaviour::ErrorEventAfter(0))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway(&[(&a, ""), (&b, "")], FALLBACK).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_clean(&r.text().await.unwrap());
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn stream_failing_everywhere_before_the_first_byte_is_a_plain_error() {
    let a = FakeUpstream::openai()
        .always(Behaviour::status(503))
        .start()
        .await;
    let b = FakeUpstream::openai()
        .always(Behaviour::status(500))
        .start()
        .await;
    let gw = gateway(&[(&a, ""), (&b, "")], FALLBACK).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    assert!(
        header(&r, "content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let (st, body) = error_of(r).await;
    assert_eq!(st, 503, "last failure is the degraded attempt on a: {body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!((a.hits(), b.hits()), (2, 1));
}

// ---------------------------------------------------------------- after the first byte

#[tokio::test]
async fn stream_cut_after_the_first_byte_ends_with_one_stream_interrupted_event() {
    let a = FakeUpstream::openai()
        .then(Behaviour::CutAfter(2))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let rest =
        format!("[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n{RETRY}\n");
    let gw = gateway(&[(&a, ""), (&b, "")], &rest).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(
        r.status(),
        200,
        "the commit point has passed: the status is already sent"
    );
    let text = r.text().await.unwrap();
    assert_interrupted(&text, 2);
    assert_eq!(
        (a.hits(), b.hits()),
        (1, 0),
        "no retry or fallback after the first byte"
    );
}

#[tokio::test]
async fn stream_stalling_after_the_first_byte_ends_with_stream_interrupted() {
    let a = FakeUpstream::openai()
        .then(Behaviour::StallAfter(2))
        .start()
        .await;
    let gw = gateway(&[(&a, "idle_timeout_ms = 300")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_interrupted(&text, 2);
    assert_eq!(a.hits(), 1);
    assert!(
        a.wait_disconnects(1, Duration::from_secs(5)).await,
        "the stalled upstream was let go"
    );
}

#[tokio::test]
async fn stream_outliving_the_request_deadline_ends_with_stream_interrupted() {
    let a = FakeUpstream::openai()
        .reply("one two three four five six seven eight nine ten")
        .chunks(10)
        .chunk_delay(Duration::from_millis(100))
        .start()
        .await;
    // The deadline lives in [server]; this gateway's config is written out in full.
    let toml = format!(
        "[server]\nauth = \"off\"\nrequest_timeout_ms = 350\n\n{}\n[targets.ta]\nprovider = \"a\"\nmodel = \"model-a\"\n\n{}",
        provider("a", &a.base_url(), &["model-a"]),
        single()
    );
    let gw = Gw::start_with_env(&toml, &[("A_KEY", "sk-a")]).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_interrupted(&r.text().await.unwrap(), 2);
}

#[tokio::test]
async fn stream_ending_after_finish_reason_without_done_gets_done_appended() {
    for caller_usage in [None, Some(true)] {
        let a = FakeUpstream::openai()
            .then(Behaviour::EndWithoutDone)
            .start()
            .await;
        let gw = gateway(&[(&a, "")], &single()).await;
        let r = stream(&gw, &stream_body(caller_usage)).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert_clean(&text);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text:?}");
        let has_usage_chunk = events(&text)
            .iter()
            .any(|e| json_of(e).is_some_and(|j| j["choices"] == serde_json::json!([])));
        assert_eq!(has_usage_chunk, caller_usage == Some(true), "{text}");
    }
}

#[tokio::test]
async fn upstream_error_event_after_the_first_byte_becomes_stream_interrupted_and_no_done() {
    let a = FakeUpstream::openai()
        .then(Behaviour::ErrorEventAfter(2))
        .start()
        .await;
    let b = FakeUpstream::openai().start().await;
    let rest =
        format!("[routes.r]\nstrategy = \"fallback\"\ntargets = [\"ta\", \"tb\"]\n{RETRY}\n");
    let gw = gateway(&[(&a, ""), (&b, "")], &rest).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    let ev = events(&text);
    let errors: Vec<&&str> = ev.iter().filter(|e| is_error(e)).collect();
    assert_eq!(errors.len(), 1, "exactly one error event:\n{text}");
    assert_eq!(
        ev.last(),
        errors.first().copied(),
        "the error event ends the stream"
    );
    assert!(
        errors[0].contains("stream_interrupted"),
        "the gateway's own error event: {text}"
    );
    assert!(
        !errors[0].contains("The server had an error while processing your request"),
        "the upstream's message is not relayed: {text}"
    );
    assert_eq!(ev.len(), 3, "two chunks, then the error:\n{text}");
    assert_eq!((a.hits(), b.hits()), (1, 0));
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let reply = "word ".repeat(60);
    let a = FakeUpstream::openai()
        .reply(reply.trim())
        .chunks(50)
        .chunk_delay(Duration::from_millis(200))
        .start()
        .await;
    let gw = gateway(&[(&a, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    drop(body);
    assert!(
        a.wait_disconnects(1, Duration::from_secs(5)).await,
        "the upstream stream was not cancelled when the caller went away"
    );
    assert_eq!(a.completed(), 0);
}

// ---------------------------------------------------------------- a scripted upstream

/// A minimal HTTP/1.1 upstream that answers every request with `200 text/event-stream`
/// and the given pieces as separate chunked-encoding chunks (a few ms apart, so they
/// reach the gateway as separate reads). Returns its base URL and the request bodies.
async fn scripted_upstream(pieces: Vec<&'static [u8]>) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    scripted_upstream_holding(pieces, Duration::ZERO).await
}

/// [`scripted_upstream`] that keeps the connection open for `hold` before ending the body.
async fn scripted_upstream_holding(
    pieces: Vec<&'static [u8]>,
    hold: Duration,
) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    scripted_upstream_ending(pieces, hold, true).await
}

/// [`scripted_upstream_holding`]; with `complete` false the connection is closed without the
/// body's last chunk, which the gateway sees as a broken connection.
async fn scripted_upstream_ending(
    pieces: Vec<&'static [u8]>,
    hold: Duration,
    complete: bool,
) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let pieces = pieces.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                seen.lock()
                    .unwrap()
                    .push(buf[head_end..head_end + len].to_vec());
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                    .await;
                for p in pieces {
                    let mut chunk = format!("{:x}\r\n", p.len()).into_bytes();
                    chunk.extend_from_slice(p);
                    chunk.extend_from_slice(b"\r\n");
                    let _ = sock.write_all(&chunk).await;
                    let _ = sock.flush().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::sleep(hold).await;
                if complete {
                    let _ = sock.write_all(b"0\r\n\r\n").await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/v1"), bodies)
}

const ROLE: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const HELLO: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
const STOP: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";

#[tokio::test]
async fn stream_bytes_pass_through_exactly_whatever_the_framing() {
    // Events split across reads, a comment, CRLF line ends, a multi-line data event,
    // an `event:` field and unusual spacing: the caller gets the very same bytes.
    let pieces: Vec<&'static [u8]> = vec![
        b": keep-alive\n\n",
        &ROLE[..40],
        &ROLE[40..],
        b"data:{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\r\n\r\n",
        b"event: message\ndata: {\"id\":\"c1\",\"choices\":\ndata: [{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":null}]}\n\n",
        STOP,
        &USAGE[..10],
        &USAGE[10..],
        b"data: [DO",
        b"NE]\n\n",
    ];
    let expected: Vec<u8> = pieces.concat();
    let (url, bodies) = scripted_upstream(pieces).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(Some(true))).await;
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected),
        "the gateway changed the stream's bytes"
    );
    assert_eq!(bodies.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn usage_chunk_is_removed_byte_exactly_when_the_caller_did_not_ask() {
    let (url, bodies) = scripted_upstream(vec![ROLE, HELLO, STOP, USAGE, DONE]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    let got = r.bytes().await.unwrap();
    let expected = [ROLE, HELLO, STOP, DONE].concat();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    let sent: serde_json::Value = serde_json::from_slice(&bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn invalid_json_event_is_passed_through_and_not_fatal() {
    let bad: &'static [u8] = b"data: {this is not json\n\n";
    let (url, _) = scripted_upstream(vec![ROLE, bad, HELLO, STOP, DONE]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(Some(true))).await;
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    let expected = [ROLE, bad, HELLO, STOP, DONE].concat();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn invalid_json_first_event_commits_the_stream() {
    let bad: &'static [u8] = b"data: not-json\n\n";
    let (url, _) = scripted_upstream(vec![bad, ROLE, HELLO, STOP, DONE]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(Some(true))).await;
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got, [bad, ROLE, HELLO, STOP, DONE].concat());
}

#[tokio::test]
async fn stream_ending_with_neither_done_nor_finish_reason_is_a_cut() {
    let (url, _) = scripted_upstream(vec![ROLE, HELLO]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_interrupted(&r.text().await.unwrap(), 2);
}

#[tokio::test]
async fn a_stream_of_two_choices_ending_when_only_one_has_finished_is_a_cut() {
    const B0: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
    const B_STOP: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    // Choice 1 started, only choice 0 finished: truncated, whatever choice 0 says.
    let (url, _) = scripted_upstream(vec![ROLE, B0, HELLO, STOP]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_interrupted(&r.text().await.unwrap(), 4);
    // Both finished: complete, [DONE] added.
    let (url, _) = scripted_upstream(vec![ROLE, B0, STOP, B_STOP]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let text = stream(&gw, &stream_body(None)).await.text().await.unwrap();
    assert_clean(&text);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn stream_ending_after_finish_reason_with_an_unterminated_last_event_is_completed() {
    // The upstream's last event lacks its blank line: it is kept, terminated, then [DONE].
    let (url, _) = scripted_upstream(vec![ROLE, HELLO, &STOP[..STOP.len() - 2]]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    let text = r.text().await.unwrap();
    assert_clean(&text);
    assert_eq!(
        text.as_bytes(),
        [ROLE, HELLO, STOP, DONE].concat().as_slice()
    );
}

#[tokio::test]
async fn stream_broken_or_stalled_after_finish_reason_is_complete_not_interrupted() {
    // The answer is whole once the finish_reason chunk is through: a connection that then
    // breaks, or goes silent past the idle timeout, ends the stream with [DONE], not an error
    // (an OpenAI SDK would throw away a complete answer).
    let (broken, _) =
        scripted_upstream_ending(vec![ROLE, HELLO, STOP, USAGE], Duration::ZERO, false).await;
    let (silent, _) =
        scripted_upstream_holding(vec![ROLE, HELLO, STOP], Duration::from_secs(5)).await;
    for url in [broken, silent] {
        let gw = gateway_at(&[(url, "idle_timeout_ms = 300")], &single()).await;
        let r = stream(&gw, &stream_body(None)).await;
        let text = r.text().await.unwrap();
        assert_clean(&text);
        assert_eq!(
            text.as_bytes(),
            [ROLE, HELLO, STOP, DONE].concat().as_slice()
        );
    }
}

#[tokio::test]
async fn unterminated_last_usage_chunk_is_still_stripped_for_a_caller_who_did_not_ask() {
    let (url, _) = scripted_upstream(vec![ROLE, HELLO, STOP, &USAGE[..USAGE.len() - 2]]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    let text = r.text().await.unwrap();
    assert_eq!(
        text.as_bytes(),
        [ROLE, HELLO, STOP, DONE].concat().as_slice(),
        "{text}"
    );
}

#[tokio::test]
async fn unterminated_last_done_is_not_doubled() {
    let (url, _) = scripted_upstream(vec![ROLE, HELLO, STOP, b"data: [DONE]"]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    let text = r.text().await.unwrap();
    assert_eq!(
        text.as_bytes(),
        [ROLE, HELLO, STOP, DONE].concat().as_slice(),
        "{text}"
    );
}

#[tokio::test]
async fn usage_chunk_is_stripped_when_the_whole_stream_arrives_in_one_read() {
    let all: &'static [u8] =
        Box::leak([ROLE, HELLO, STOP, USAGE, DONE].concat().into_boxed_slice());
    let (url, _) = scripted_upstream(vec![all]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    let text = r.text().await.unwrap();
    assert_eq!(
        text.as_bytes(),
        [ROLE, HELLO, STOP, DONE].concat().as_slice(),
        "{text}"
    );
}

// SSE comments are not events: they neither commit the stream nor stop the first-event clock.

#[tokio::test]
async fn stream_of_only_comments_that_ends_falls_back() {
    let (url, _) = scripted_upstream(vec![b": keep-alive\n\n", b": still here\n\n"]).await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway_at(&[(url, ""), (b.base_url(), "")], FALLBACK).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    let text = r.text().await.unwrap();
    assert_clean(&text);
    assert!(
        !text.contains("keep-alive"),
        "a failed attempt's bytes never reach the caller"
    );
}

#[tokio::test]
async fn error_event_after_a_leading_comment_is_a_target_failure() {
    let err: &'static [u8] = b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    let (url, _) = scripted_upstream(vec![b": ping\n\n", err]).await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway_at(&[(url, ""), (b.base_url(), "")], FALLBACK).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_clean(&r.text().await.unwrap());
}

#[tokio::test]
async fn comments_do_not_stop_the_first_event_timeout() {
    let (url, _) = scripted_upstream_holding(vec![b": ping\n\n"], Duration::from_secs(3)).await;
    let b = FakeUpstream::openai().start().await;
    let gw = gateway_at(
        &[
            (url, "first_byte_timeout_ms = 200\nidle_timeout_ms = 1000"),
            (b.base_url(), ""),
        ],
        FALLBACK,
    )
    .await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
    assert_clean(&r.text().await.unwrap());
}

#[tokio::test]
async fn leading_comments_are_passed_on_once_the_stream_commits() {
    let (url, _) = scripted_upstream(vec![b": ping\n\n", ROLE, HELLO, STOP, DONE]).await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(Some(true))).await;
    let got = r.bytes().await.unwrap();
    assert_eq!(
        got,
        [b": ping\n\n" as &[u8], ROLE, HELLO, STOP, DONE].concat()
    );
}

#[tokio::test]
async fn an_image_generation_stream_passes_through_untouched_and_ends_cleanly() {
    let pieces: Vec<&'static [u8]> = vec![
        b"event: image_generation.partial_image\ndata: {\"type\":\"image_generation.partial_image\",\"b64_json\":\"AAAA\",\"partial_image_index\":0}\n\n",
        b"event: image_generation.completed\ndata: {\"type\":\"image_generation.completed\",\"b64_json\":\"BBBB\",\"usage\":{\"input_tokens\":5,\"output_tokens\":9,\"total_tokens\":14}}\n\n",
    ];
    let expected: Vec<u8> = pieces.concat();
    let (url, _) = scripted_upstream(pieces).await;
    let rest = "[models.model-a]\nendpoint = \"image_generation\"\n[routes.img]\nendpoint = \"image_generation\"\ntargets = [\"ta\"]\n";
    let gw = gateway_at(&[(url, "")], rest).await;
    let r = gw
        .post("/v1/images/generations")
        .json(&serde_json::json!({"model": "route::img", "prompt": "a lighthouse", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn a_rate_limit_error_as_the_first_event_ends_as_429_with_retry_after() {
    let (url, _) = scripted_upstream(vec![
        b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
    ])
    .await;
    let gw = gateway_at(&[(url, "")], &single()).await;
    let r = stream(&gw, &stream_body(None)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-signalbox-error-code"), Some("rate_limit"));
    assert_eq!(header(&r, "retry-after"), Some("1"));
}
