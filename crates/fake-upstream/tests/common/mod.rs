//! Helpers shared by the integration tests: a bare hyper client over real
//! sockets, SSE parsing, and running the official Python SDKs' checks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use bytes::Bytes;
use fake_upstream::FakeHandle;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request on a new connection: `path` may carry a query string.
pub async fn call(
    up: &FakeHandle,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response<Incoming> {
    let mut c = connect(up.addr()).await;
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", up.addr()))
        .header("host", up.addr().to_string());
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    c.ready().await.unwrap();
    c.send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap()
}

pub async fn bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

pub async fn json_body(resp: Response<Incoming>) -> Value {
    serde_json::from_slice(&bytes(resp).await).unwrap()
}

/// Every data frame of the body, and whether the body ended with an error.
pub async fn frames(resp: Response<Incoming>) -> (Vec<Bytes>, bool) {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return (out, false),
            Some(Err(_)) => return (out, true),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.push(d);
                }
            }
        }
    }
}

/// Each frame must be exactly one unnamed SSE event, `data: <payload><end>`
/// (`end` is `"\n\n"`, or Google's `"\r\n\r\n"`); returns the payloads.
pub fn data_events(frames: &[Bytes], end: &str) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            let s = std::str::from_utf8(f).unwrap();
            let payload = s
                .strip_prefix("data: ")
                .and_then(|p| p.strip_suffix(end))
                .unwrap_or_else(|| panic!("not one event: {s:?}"));
            assert!(!payload.contains('\n'), "two events in one frame: {s:?}");
            payload.to_owned()
        })
        .collect()
}

/// The names of named SSE events.
pub fn event_names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// Each frame must be exactly one named SSE event: `(event name, data json)`.
pub fn named_events(frames: &[Bytes]) -> Vec<(String, Value)> {
    frames
        .iter()
        .map(|f| {
            let s = std::str::from_utf8(f).unwrap();
            let s = s
                .strip_suffix("\n\n")
                .unwrap_or_else(|| panic!("unterminated: {s:?}"));
            let (name, data) = s
                .split_once('\n')
                .unwrap_or_else(|| panic!("not a named event: {s:?}"));
            let name = name.strip_prefix("event: ").unwrap();
            let data = data.strip_prefix("data: ").unwrap();
            assert!(!data.contains('\n'), "two events in one frame: {s:?}");
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

/// Reads `k` frames of `resp`, checks that no more arrive within 100 ms, then
/// drops the body (the client going away).
pub async fn assert_stalls_after(resp: Response<Incoming>, k: usize) {
    let mut body = resp.into_body();
    for _ in 0..k {
        body.frame().await.unwrap().unwrap();
    }
    let next = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
    assert!(next.is_err(), "the stream should stall after {k} frames");
}

/// `http://HOST:PORT`: the root the Anthropic and Google SDKs are given.
pub fn root_url(up: &FakeHandle) -> String {
    up.base_url().trim_end_matches("/v1").to_owned()
}

/// Runs `python3 tests/<script> <args>` with the SDK environment cleared;
/// `None` (and a note) when `python3 -c "import <module>"` fails.
pub async fn sdk_check(module: &str, script: &str, args: Vec<String>) -> Option<Output> {
    let has_sdk = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}, pydantic")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        println!("note: skipping {script}: `python3 -c \"import {module}\"` failed");
        return None;
    }
    let script = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script).args(args);
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "OPENAI_BASE_URL",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "GOOGLE_API_KEY",
            "GEMINI_API_KEY",
            "GOOGLE_GEMINI_BASE_URL",
            "GOOGLE_GENAI_USE_VERTEXAI",
            "GOOGLE_CLOUD_PROJECT",
            "GOOGLE_CLOUD_LOCATION",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("NO_PROXY", "*").output()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("python timed out")
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}
