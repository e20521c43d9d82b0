//! Live config reload and graceful shutdown.

use crate::common::*;
use fake_upstream::{Behaviour, FakeUpstream};
use std::time::{Duration, Instant};

fn two_provider_config(a: &str, b: &str, serving: &str) -> String {
    format!(
        "{}\n{}\n[server]\nauth = \"off\"\n[targets.ta]\nprovider = \"a\"\nmodel = \"m\"\n[targets.tb]\nprovider = \"b\"\nmodel = \"m\"\n[routes.summarize]\ntargets = [\"{serving}\"]\n",
        provider("a", a, &["m"]),
        provider("b", b, &["m"])
    )
}

async fn provider_of(gw: &Gw) -> String {
    let r = gw.chat("route::summarize", None).await;
    assert_eq!(r.status(), 200);
    header(&r, "x-signalbox-provider").unwrap().to_string()
}

#[tokio::test]
async fn editing_the_config_file_moves_every_caller_at_once_and_a_bad_edit_changes_nothing() {
    let fa = FakeUpstream::openai().start().await;
    let fb = FakeUpstream::openai().start().await;
    let env = [("A_KEY", "ka"), ("B_KEY", "kb")];
    let gw = Gw::start_with_env(
        &two_provider_config(&fa.base_url(), &fb.base_url(), "ta"),
        &env,
    )
    .await;
    assert_eq!(provider_of(&gw).await, "a");
    let v1 = gw.live.version();

    std::fs::write(
        &gw.config_path,
        two_provider_config(&fa.base_url(), &fb.base_url(), "tb"),
    )
    .unwrap();
    let t0 = Instant::now();
    while provider_of(&gw).await != "b" {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the edit never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v2 = gw.live.version();
    assert!(v2 > v1);

    // An invalid edit (unknown target) is rejected whole: the last good config keeps serving.
    let broken = two_provider_config(&fa.base_url(), &fb.base_url(), "nope");
    std::fs::write(&gw.config_path, broken).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(provider_of(&gw).await, "b");
    assert_eq!(gw.live.version(), v2);
    // So is a syntax error.
    std::fs::write(&gw.config_path, "[routes.summarize\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(provider_of(&gw).await, "b");
    // And a file emptied in place (a tool that truncates, then writes a moment later), or
    // left with only a byte-order mark or comments.
    for emptied in ["", "\u{feff}", "# nothing here\n"] {
        std::fs::write(&gw.config_path, emptied).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(provider_of(&gw).await, "b", "{emptied:?}");
        assert_eq!(gw.live.version(), v2);
    }
    let health: serde_json::Value = gw
        .get("/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["config_version"], v2);
}

#[tokio::test]
async fn shutdown_drains_then_closes_and_interrupts_streams_after_the_timeout() {
    let fake = FakeUpstream::openai()
        .chunks(200)
        .chunk_delay(Duration::from_millis(50))
        .start()
        .await;
    let toml = format!(
        "{}\n[server]\nauth = \"off\"\ndrain_delay_ms = 400\nshutdown_timeout_ms = 600\n[targets.t]\nprovider = \"up\"\nmodel = \"m\"\n[routes.long]\ntargets = [\"t\"]\n",
        provider("up", &fake.base_url(), &["m"])
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", "k")]).await;
    assert_eq!(gw.get("/ready").send().await.unwrap().status(), 200);
    let stream = gw
        .post("/v1/chat/completions")
        .json(&chat_body("route::long", true))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(async move { stream.text().await.unwrap_or_default() });

    gw.running.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        gw.get("/ready").send().await.unwrap().status(),
        503,
        "/ready answers 503 at once"
    );
    assert_eq!(
        gw.chat("route::long", None).await.status(),
        200,
        "still serving during the drain delay"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        gw.get("/health").send().await.is_err(),
        "the listener is closed after the drain delay"
    );

    let body = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(
        body.contains("stream_interrupted"),
        "the open stream ends with an error event"
    );
    assert!(!body.contains("[DONE]"));
    let done = &mut { gw.running.done };
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .unwrap()
        .unwrap();
    let _ = Behaviour::Ok;
}

#[tokio::test]
async fn a_request_still_waiting_on_its_upstream_at_the_end_of_the_drain_gets_a_clear_503() {
    let fake = FakeUpstream::openai().always(Behaviour::Hang).start().await;
    let toml = format!(
        "{}\n[server]\nauth = \"off\"\ndrain_delay_ms = 50\nshutdown_timeout_ms = 300\n[targets.t]\nprovider = \"up\"\nmodel = \"m\"\n[routes.slow]\ntargets = [\"t\"]\n",
        provider("up", &fake.base_url(), &["m"])
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", "k")]).await;
    let pending = gw.chat("route::slow", None);
    let trigger = gw.running.shutdown.clone();
    let (r, _) = tokio::join!(pending, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    assert_eq!(header(&r, "x-signalbox-attempts"), Some("1"));
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    // The attempt cut short is on the trace (as every attempt is), with no upstream status.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = gw.running.state.sink.metrics().encode();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("signalbox_upstream_request_duration_seconds_count")
                && l.contains("status_class=\"none\"")
                && l.ends_with(" 1")
        ),
        "{metrics}"
    );
}

/// Read from a raw connection until the peer closes it; `None` if still open at `within`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|_| got)
}

#[tokio::test]
async fn silent_slow_and_idle_client_connections_are_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let fake = FakeUpstream::openai()
        .latency(Duration::from_millis(900))
        .start()
        .await;
    let toml = format!(
        "{}\n[server]\nauth = \"off\"\nheader_read_timeout_ms = 300\n[targets.t]\nprovider = \"up\"\nmodel = \"m\"\n[routes.slow]\ntargets = [\"t\"]\n",
        provider("up", &fake.base_url(), &["m"])
    );
    let gw = Gw::start_with_env(&toml, &[("UP_KEY", "k")]).await;
    let addr = gw.running.addr;
    // Open a connection, send `bytes`, and return what came back once the gateway closed it
    // (`None` if it is still open after 3 s).
    let send = |bytes: &'static [u8]| async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        closed_within(&mut tcp, Duration::from_secs(3)).await
    };

    // A connection that never sends anything.
    let t0 = Instant::now();
    assert!(send(b"").await.is_some());
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
    // One that sends half its headers and stalls.
    assert!(
        send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_some()
    );
    // One that sends a single byte of a request line and stalls.
    assert!(send(b"P").await.is_some());
    // HTTP/2: half a preface, then silence; and a whole preface and SETTINGS, then no request.
    assert!(send(b"PRI * HTTP/2.0\r\n").await.is_some());
    assert!(
        send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .is_some()
    );
    // An HTTP/1.1 method that begins like the preface is still HTTP/1.1.
    let got = send(b"PRIX /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 "),
        "{got:?}"
    );
    // A keep-alive connection left idle after an answer.
    let got = send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));

    // A request whose answer takes longer than the timeout is not cut: the timeout only
    // covers the client's side.
    let r = gw.chat("route::slow", None).await;
    assert_eq!(r.status(), 200);
    // And callers are still served normally.
    assert_eq!(gw.get("/health").send().await.unwrap().status(), 200);
}

/// A client speaking HTTP/2 with prior knowledge (h2c) gets answers, several at once on one
/// connection, and streams that end with `[DONE]`.
#[tokio::test]
async fn http2_with_prior_knowledge_answers_and_streams() {
    let gw = Gw::start(
        "[server]\nauth = \"off\"\n[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\"]\n\
         [targets.echo]\nprovider = \"demo\"\nmodel = \"echo-1\"\n[routes.hello]\ntargets = [\"echo\"]\n",
    )
    .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/v1/chat/completions", gw.url);
    let body = |stream: bool| {
        serde_json::json!({"model": "route::hello", "stream": stream,
            "messages": [{"role": "user", "content": "hello over h2"}]})
    };
    let answers =
        futures_util::future::join_all((0..8).map(|_| h2.post(&url).json(&body(false)).send()))
            .await;
    for r in answers {
        let r = r.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.version()),
            (200, reqwest::Version::HTTP_2)
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    }
    let r = h2.post(&url).json(&body(true)).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}
