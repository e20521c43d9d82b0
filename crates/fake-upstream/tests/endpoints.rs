//! End-to-end checks of the audio, images and Responses API endpoints over
//! real sockets, with a bare hyper client (and the official Python SDK when
//! it is installed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_upstream::{Behaviour, FakeHandle, FakeUpstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

mod common;
use common::{
    assert_stalls_after, bytes, connect, event_names, frames, json_body, named_events, root_url,
    sdk_check,
};

async fn send_raw(
    up: &FakeHandle,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    key: Option<&str>,
) -> Response<Incoming> {
    let mut c = connect(up.addr()).await;
    let mut req = Request::post(format!("http://{}{path}", up.addr()))
        .header("host", up.addr().to_string())
        .header("content-type", content_type);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    c.ready().await.unwrap();
    c.send_request(req).await.unwrap()
}

async fn post(up: &FakeHandle, path: &str, body: Value) -> Response<Incoming> {
    send_raw(
        up,
        path,
        "application/json",
        body.to_string().into_bytes(),
        None,
    )
    .await
}

fn content_type(resp: &Response<Incoming>) -> &str {
    resp.headers()["content-type"].to_str().unwrap()
}

/// A `multipart/form-data` body: `(content type, body)`.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    const B: &str = "----fakeboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some((filename, data)) = file {
        body.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={B}"), body)
}

async fn upload(
    up: &FakeHandle,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> Response<Incoming> {
    let (ct, body) = multipart(fields, file);
    send_raw(up, path, &ct, body, None).await
}

fn speech(input: &str, format: &str) -> Value {
    json!({"model": "gpt-4o-mini-tts", "input": input, "voice": "alloy", "response_format": format})
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

// ---------------------------------------------------------------- speech

#[tokio::test]
async fn speech_wav_is_a_valid_file_sent_in_frames() {
    let up = FakeUpstream::openai().chunks(5).start().await;
    let resp = post(&up, "/v1/audio/speech", speech("hello there", "wav")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "audio/wav");
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(!resp.headers().contains_key("content-length"), "chunked");
    let (frames, errored) = frames(resp).await;
    assert!(!errored);
    // Sent as 5 body frames (the client may see a large frame in pieces).
    assert!(frames.len() >= 5, "{}", frames.len());
    let wav: Vec<u8> = frames.concat();

    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u32_le(&wav[4..]) as usize, wav.len() - 8);
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(u32_le(&wav[16..]), 16);
    assert_eq!(&wav[20..24], &[1, 0, 1, 0]); // PCM, mono
    assert_eq!(u32_le(&wav[24..]), 24_000);
    assert_eq!(u32_le(&wav[28..]), 48_000);
    assert_eq!(&wav[32..36], &[2, 0, 16, 0]);
    assert_eq!(&wav[36..40], b"data");
    let data_len = u32_le(&wav[40..]) as usize;
    assert_eq!(data_len, wav.len() - 44);
    // 200 ms + 12 ms per character, at 48 000 bytes a second.
    assert_eq!(data_len, (200 + 12 * 11) * 48);
    let samples: Vec<i16> = wav[44..]
        .chunks(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert!(samples.iter().any(|s| *s > 5_000), "a tone, not silence");

    // Deterministic, and longer input means longer audio.
    let again = bytes(post(&up, "/v1/audio/speech", speech("hello there", "wav")).await).await;
    assert_eq!(again, wav);
    let longer =
        bytes(post(&up, "/v1/audio/speech", speech("hello there, again", "wav")).await).await;
    assert!(longer.len() > wav.len());

    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, "/v1/audio/speech");
    assert_eq!(reqs[0].json()["voice"], "alloy");
    assert_eq!(up.completed(), 3);
}

#[tokio::test]
async fn speech_formats_content_types_and_magic_bytes() {
    let up = FakeUpstream::openai().start().await;
    let cases: [(&str, &str, &[u8]); 6] = [
        ("mp3", "audio/mpeg", b"ID3"),
        ("opus", "audio/opus", b"OggS"),
        ("aac", "audio/aac", &[0xFF, 0xF1]),
        ("flac", "audio/flac", b"fLaC"),
        ("wav", "audio/wav", b"RIFF"),
        ("pcm", "audio/pcm", b""),
    ];
    for (format, ct, magic) in cases {
        let resp = post(&up, "/v1/audio/speech", speech("abc", format)).await;
        assert_eq!(resp.status(), 200, "{format}");
        assert_eq!(content_type(&resp), ct, "{format}");
        let body = bytes(resp).await;
        assert!(body.starts_with(magic), "{format}: {:02x?}", &body[..8]);
        assert!(body.len() > 60, "{format}: {}", body.len());
        if format == "pcm" {
            assert_eq!(body.len(), (200 + 12 * 3) * 48);
        }
    }
    // mp3 is the default format.
    let mut req = speech("abc", "mp3");
    req.as_object_mut().unwrap().remove("response_format");
    let resp = post(&up, "/v1/audio/speech", req).await;
    assert_eq!(content_type(&resp), "audio/mpeg");
}

#[tokio::test]
async fn speech_validation_errors() {
    let up = FakeUpstream::openai().start().await;
    let cases = [
        (json!({"model": "tts-1", "voice": "alloy"}), "input"),
        (json!({"model": "tts-1", "input": "hi"}), "voice"),
        (
            json!({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "ogg"}),
            "response_format",
        ),
        (
            json!({"model": "tts-1", "input": "x".repeat(4097), "voice": "alloy"}),
            "input",
        ),
    ];
    for (body, param) in cases {
        let resp = post(&up, "/v1/audio/speech", body).await;
        assert_eq!(resp.status(), 400);
        let v = json_body(resp).await;
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn speech_cut_and_stall_send_part_of_the_audio() {
    let up = FakeUpstream::openai()
        .chunks(4)
        .then(Behaviour::CutAfter(2))
        .then(Behaviour::StallAfter(1))
        .then(Behaviour::status(429))
        .start()
        .await;
    let full_len = (200 + 12 * 5) * 48 + 44;

    let resp = post(&up, "/v1/audio/speech", speech("hello", "wav")).await;
    assert_eq!(resp.status(), 200);
    let (frames, errored) = frames(resp).await;
    assert!(errored, "the body should be cut");
    // Two of four body frames.
    assert_eq!(frames.concat().len(), full_len / 2);
    assert!(frames[0].starts_with(b"RIFF"));

    let resp = post(&up, "/v1/audio/speech", speech("hello", "wav")).await;
    let mut body = resp.into_body();
    let mut got = 0;
    // One of four body frames, then nothing.
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(100), body.frame()).await {
        got += frame.unwrap().unwrap().into_data().unwrap().len();
    }
    assert_eq!(got, full_len / 4);
    drop(body);
    assert!(up.wait_disconnects(1, Duration::from_secs(5)).await);

    let resp = post(&up, "/v1/audio/speech", speech("hello", "wav")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        json_body(resp).await["error"]["code"],
        "rate_limit_exceeded"
    );
    assert_eq!(up.hits(), 3);
    assert_eq!(up.completed(), 1); // the 429
}

#[tokio::test]
async fn speech_honours_key_latency_and_pacing() {
    let up = FakeUpstream::openai()
        .require_key("sk-k")
        .latency(Duration::from_millis(50))
        .chunk_delay(Duration::from_millis(30))
        .chunks(3)
        .start()
        .await;
    let body = speech("hi", "flac").to_string().into_bytes();
    let resp = send_raw(
        &up,
        "/v1/audio/speech",
        "application/json",
        body.clone(),
        None,
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json_body(resp).await["error"]["code"], "invalid_api_key");

    let t0 = Instant::now();
    let resp = send_raw(
        &up,
        "/v1/audio/speech",
        "application/json",
        body,
        Some("sk-k"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(50));
    let (frames, errored) = frames(resp).await;
    assert!(!errored);
    // Three body frames, 30 ms apart.
    assert!(t0.elapsed() >= Duration::from_millis(50 + 60));
    assert!(frames[0].starts_with(b"fLaC"));
    assert_eq!(
        up.requests()[1].header("authorization"),
        Some("Bearer sk-k")
    );
}

// ---------------------------------------------------------------- transcriptions

/// A real WAV file from the fake's own speech endpoint.
async fn some_wav(up: &FakeHandle) -> Bytes {
    bytes(post(up, "/v1/audio/speech", speech("twelve chars", "wav")).await).await
}

#[tokio::test]
async fn transcription_formats() {
    let up = FakeUpstream::openai().start().await;
    let wav = some_wav(&up).await;
    let n = wav.len();
    let text = format!("fake transcript of clip.wav ({n} bytes)");
    let file = Some(("clip.wav", &wav[..]));
    let path = "/v1/audio/transcriptions";

    // json (default), whisper-1: usage in seconds.
    let resp = upload(&up, path, &[("model", "whisper-1")], file).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "application/json");
    assert_eq!(
        json_body(resp).await,
        json!({"text": text, "usage": {"type": "duration", "seconds": 1}})
    );

    // json, gpt-4o-transcribe: usage in tokens.
    let resp = upload(&up, path, &[("model", "gpt-4o-transcribe")], file).await;
    let v = json_body(resp).await;
    assert_eq!(v["text"], text.as_str());
    assert_eq!(v["usage"]["type"], "tokens");
    assert_eq!(v["usage"]["output_tokens"], 6);

    let resp = upload(
        &up,
        path,
        &[("model", "whisper-1"), ("response_format", "text")],
        file,
    )
    .await;
    assert_eq!(content_type(&resp), "text/plain; charset=utf-8");
    assert_eq!(bytes(resp).await, format!("{text}\n"));

    // 200 ms + 12 * 12 ms = 0.344 s, 6 words in 2 segments.
    let resp = upload(
        &up,
        path,
        &[("model", "whisper-1"), ("response_format", "srt")],
        file,
    )
    .await;
    assert_eq!(content_type(&resp), "text/plain; charset=utf-8");
    assert_eq!(
        bytes(resp).await,
        format!(
            "1\n00:00:00,000 --> 00:00:00,172\nfake transcript of\n\n2\n00:00:00,172 --> 00:00:00,344\nclip.wav ({n} bytes)\n\n"
        )
    );
    let resp = upload(
        &up,
        path,
        &[("model", "whisper-1"), ("response_format", "vtt")],
        file,
    )
    .await;
    assert_eq!(
        bytes(resp).await,
        format!(
            "WEBVTT\n\n00:00:00.000 --> 00:00:00.172\nfake transcript of\n\n00:00:00.172 --> 00:00:00.344\nclip.wav ({n} bytes)\n\n"
        )
    );

    let resp = upload(
        &up,
        path,
        &[
            ("model", "whisper-1"),
            ("response_format", "verbose_json"),
            ("language", "fr"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ],
        file,
    )
    .await;
    let v = json_body(resp).await;
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "french");
    assert_eq!(v["duration"], 0.344);
    assert_eq!(v["text"], text.as_str());
    assert_eq!(v["usage"], json!({"type": "duration", "seconds": 1}));
    assert_eq!(v["words"].as_array().unwrap().len(), 6);
    assert_eq!(
        v["words"][0],
        json!({"word": "fake", "start": 0.0, "end": 0.057})
    );
    let segs = v["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[1]["id"], 1);
    assert_eq!(segs[1]["text"], format!(" clip.wav ({n} bytes)"));
    assert_eq!(segs[1]["end"], 0.344);
    for key in [
        "seek",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ] {
        assert!(segs[0].get(key).is_some(), "{key}");
    }

    // The recorded request exposes the multipart fields and the file.
    let reqs = up.requests();
    let last = reqs.last().unwrap();
    assert_eq!(last.path, path);
    assert_eq!(last.multipart_field("model").as_deref(), Some("whisper-1"));
    assert_eq!(last.multipart_field("language").as_deref(), Some("fr"));
    assert_eq!(last.multipart_field("prompt"), None);
    assert_eq!(
        last.multipart_fields("timestamp_granularities[]"),
        vec!["word", "segment"]
    );
    assert_eq!(last.multipart_file_len(), Some(n));
    assert_eq!(last.multipart_file_name().as_deref(), Some("clip.wav"));
    assert_eq!(last.multipart_file().unwrap(), wav);
    assert_eq!(
        reqs[0].multipart_field("model"),
        None,
        "speech request is JSON"
    );
}

#[tokio::test]
async fn translation_verbose_json() {
    let up = FakeUpstream::openai().start().await;
    let mp3 = vec![0xFFu8; 32_000]; // not a WAV: 16 kB a second
    let resp = upload(
        &up,
        "/v1/audio/translations",
        &[("model", "whisper-1"), ("response_format", "verbose_json")],
        Some(("talk.mp3", &mp3)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json_body(resp).await;
    assert_eq!(v["task"], "translate");
    assert_eq!(v["language"], "english");
    assert_eq!(v["duration"], 2.0);
    assert_eq!(v["text"], "fake translation of talk.mp3 (32000 bytes)");
    assert!(v.get("words").is_none());
    assert_eq!(v["segments"].as_array().unwrap().len(), 2);

    let resp = upload(
        &up,
        "/v1/audio/translations",
        &[("model", "whisper-1")],
        Some(("talk.mp3", &mp3)),
    )
    .await;
    assert_eq!(
        json_body(resp).await,
        json!({"text": "fake translation of talk.mp3 (32000 bytes)"})
    );
    assert_eq!(up.requests()[1].multipart_file_len(), Some(32_000));
}

#[tokio::test]
async fn transcription_errors_and_failures() {
    let up = FakeUpstream::openai()
        .then(Behaviour::Ok)
        .then(Behaviour::Ok)
        .then(Behaviour::Ok)
        .then(Behaviour::Ok)
        .then(Behaviour::status(500))
        .then(Behaviour::CutAfter(0))
        .start()
        .await;
    let path = "/v1/audio/transcriptions";
    let file = Some(("a.wav", &b"RIFF"[..]));

    let resp = post(&up, path, json!({"model": "whisper-1"})).await;
    assert_eq!(resp.status(), 400);
    let v = json_body(resp).await;
    assert_eq!(v["error"]["param"], Value::Null);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid Content-Type header (application/json)"),
        "{v}"
    );

    let resp = upload(&up, path, &[("model", "whisper-1")], None).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "file");

    let resp = upload(&up, path, &[], file).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "model");

    let resp = upload(
        &up,
        path,
        &[("model", "whisper-1"), ("response_format", "xml")],
        file,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "response_format");

    let resp = upload(&up, path, &[("model", "whisper-1")], file).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(json_body(resp).await["error"]["type"], "server_error");

    // Half the text body, then an abort.
    let resp = upload(
        &up,
        path,
        &[("model", "whisper-1"), ("response_format", "text")],
        file,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (frames, errored) = frames(resp).await;
    assert!(errored);
    let full = b"fake transcript of a.wav (4 bytes)\n";
    assert_eq!(frames.concat(), &full[..full.len() / 2]);

    // A broken multipart body.
    let resp = send_raw(
        &up,
        path,
        "multipart/form-data; boundary=abc",
        b"no parts here".to_vec(),
        None,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(up.hits(), 7);
    assert_eq!(up.requests().len(), 7);
}

// ---------------------------------------------------------------- images

#[tokio::test]
async fn images_url_and_b64() {
    let up = FakeUpstream::openai().start().await;
    let resp = post(
        &up,
        "/v1/images/generations",
        json!({"model": "dall-e-3", "prompt": "a red fox", "size": "1024x1024"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json_body(resp).await;
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    let url = data[0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://fake.local/img/") && url.ends_with(".png"),
        "{url}"
    );
    assert_eq!(data[0]["revised_prompt"], "a red fox");
    assert!(v.get("usage").is_none());
    // Same prompt, same url.
    let again = json_body(
        post(
            &up,
            "/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "a red fox"}),
        )
        .await,
    )
    .await;
    assert_eq!(again["data"][0]["url"], url);

    let v = json_body(
        post(
            &up,
            "/v1/images/generations",
            json!({"model": "dall-e-2", "prompt": "a red fox", "n": 2, "response_format": "b64_json"}),
        )
        .await,
    )
    .await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        // base64 of the PNG signature.
        assert!(d["b64_json"].as_str().unwrap().starts_with("iVBORw0KGgo"));
        assert!(d.get("url").is_none());
    }
    assert_ne!(data[0]["b64_json"], data[1]["b64_json"]);

    // gpt-image models: always base64, with usage.
    let v = json_body(
        post(
            &up,
            "/v1/images/generations",
            json!({"model": "gpt-image-1", "prompt": "a red fox"}),
        )
        .await,
    )
    .await;
    assert!(v["data"][0]["b64_json"].is_string());
    assert_eq!(v["usage"]["input_tokens"], 3);
    assert_eq!(
        v["usage"]["total_tokens"],
        v["usage"]["input_tokens"].as_u64().unwrap()
            + v["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(v["output_format"], "png");
    assert_eq!(up.requests()[3].json()["model"], "gpt-image-1");
}

#[tokio::test]
async fn images_errors_and_failures() {
    let up = FakeUpstream::openai()
        .then(Behaviour::Ok)
        .then(Behaviour::Ok)
        .then(Behaviour::Reset)
        .then(Behaviour::SlowFirstEvent(Duration::from_millis(100)))
        .start()
        .await;
    let resp = post(&up, "/v1/images/generations", json!({"model": "dall-e-3"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "prompt");
    let resp = post(
        &up,
        "/v1/images/generations",
        json!({"prompt": "p", "n": 11}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "n");

    // Reset: no response at all.
    let mut c = connect(up.addr()).await;
    let req = Request::post(format!("http://{}/v1/images/generations", up.addr()))
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({"prompt": "p"}).to_string())))
        .unwrap();
    c.ready().await.unwrap();
    assert!(c.send_request(req).await.is_err());

    // SlowFirstEvent: headers at once, body later.
    let t0 = Instant::now();
    let resp = post(&up, "/v1/images/generations", json!({"prompt": "p"})).await;
    assert!(t0.elapsed() < Duration::from_millis(100));
    let v = json_body(resp).await;
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------- responses

#[tokio::test]
async fn responses_non_streaming_object() {
    let up = FakeUpstream::openai().start().await;
    let resp = post(
        &up,
        "/v1/responses",
        json!({
            "model": "gpt-4.1-mini",
            "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "no markdown"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello world"}]}
            ],
            "temperature": 0.2,
            "metadata": {"k": "v"}
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "application/json");
    let v = json_body(resp).await;
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert!(v["created_at"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-4.1-mini");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(v["instructions"], "be brief");
    assert_eq!(v["temperature"], 0.2);
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert_eq!(v["tools"], json!([]));
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["parallel_tool_calls"], true);
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "message");
    assert!(out[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(out[0]["role"], "assistant");
    assert_eq!(
        out[0]["content"],
        json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": "fake reply to: hello world"}])
    );
    // "be brief" + "no markdown" + "hello world" = 30 chars -> 8 tokens; 5 words out.
    assert_eq!(v["usage"]["input_tokens"], 8);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(v["usage"]["output_tokens"], 5);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(v["usage"]["total_tokens"], 13);

    // String input, fixed reply.
    let up = FakeUpstream::openai().reply("fixed").start().await;
    let v = json_body(post(&up, "/v1/responses", json!({"model": "m", "input": "hi"})).await).await;
    assert_eq!(v["output"][0]["content"][0]["text"], "fixed");
    let resp = post(&up, "/v1/responses", json!({"input": "hi"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "model");
    let resp = post(&up, "/v1/responses", json!({"model": "m", "input": 3})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["error"]["param"], "input");
}

fn stream_req(input: &str) -> Value {
    json!({"model": "gpt-4.1-mini", "input": input, "stream": true})
}

#[tokio::test]
async fn responses_stream_event_sequence() {
    let up = FakeUpstream::openai()
        .reply("one two three four five six")
        .chunks(3)
        .start()
        .await;
    let resp = post(&up, "/v1/responses", stream_req("hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "text/event-stream");
    let (frames, errored) = frames(resp).await;
    assert!(!errored);
    let evs = named_events(&frames);
    let names = event_names(&evs);
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in evs.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    let created = &evs[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["usage"], Value::Null);
    let item = &evs[2].1;
    assert_eq!(item["output_index"], 0);
    assert_eq!(item["item"]["status"], "in_progress");
    assert_eq!(item["item"]["content"], json!([]));
    let item_id = item["item"]["id"].as_str().unwrap();
    assert_eq!(evs[3].1["part"]["text"], "");
    let text: String = evs[4..7]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["item_id"], item_id);
            assert_eq!(d["content_index"], 0);
            d["delta"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "one two three four five six");
    assert_eq!(evs[7].1["text"], text.as_str());
    assert_eq!(evs[8].1["part"]["text"], text.as_str());
    assert_eq!(evs[9].1["item"]["status"], "completed");
    let done = &evs[10].1["response"];
    assert_eq!(done["id"], created["id"]);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["id"], item_id);
    assert_eq!(done["output"][0]["content"][0]["text"], text.as_str());
    assert_eq!(done["usage"]["output_tokens"], 6);
    assert!(frames.iter().all(|f| !f.windows(6).any(|w| w == b"[DONE]")));
    assert_eq!(up.completed(), 1);
}

#[tokio::test]
async fn responses_stream_failures() {
    let up = FakeUpstream::openai()
        .then(Behaviour::CutAfter(5))
        .then(Behaviour::EndWithoutDone)
        .then(Behaviour::ErrorEventAfter(3))
        .then(Behaviour::StallAfter(2))
        .start()
        .await;

    let (frames_, errored) = frames(post(&up, "/v1/responses", stream_req("hi")).await).await;
    assert!(errored, "cut");
    let evs = named_events(&frames_);
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[4].0, "response.output_text.delta");

    let (frames_, errored) = frames(post(&up, "/v1/responses", stream_req("hi")).await).await;
    assert!(!errored);
    let evs = named_events(&frames_);
    assert_eq!(evs.last().unwrap().0, "response.output_item.done");
    assert!(evs.iter().all(|(n, _)| n != "response.completed"));

    let (frames_, errored) = frames(post(&up, "/v1/responses", stream_req("hi")).await).await;
    assert!(!errored);
    let evs = named_events(&frames_);
    assert_eq!(evs.len(), 4);
    let (name, err) = &evs[3];
    assert_eq!(name, "error");
    assert_eq!(err["type"], "error");
    assert_eq!(err["sequence_number"], 3);
    assert_eq!(err["code"], "server_error");
    assert_eq!(err["param"], Value::Null);
    assert!(err["message"].is_string());

    assert_stalls_after(post(&up, "/v1/responses", stream_req("hi")).await, 2).await;
    assert!(up.wait_disconnects(1, Duration::from_secs(5)).await);
    assert_eq!(up.completed(), 2);
    assert_eq!(up.hits(), 4);
}

// ---------------------------------------------------------------- official SDK

/// The official `openai` Python SDK parses (and strictly validates) what the
/// fake sends. Skipped when `python3` with `openai` is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_parses_the_wire_formats() {
    let up = FakeUpstream::openai()
        .require_key("sk-sdk")
        .cache_tokens(7, 3)
        .start()
        .await;
    let failing = FakeUpstream::openai()
        .always(Behaviour::ErrorEventAfter(3))
        .start()
        .await;
    let args = vec![up.base_url(), "sk-sdk".into(), failing.base_url()];
    let Some(out) = sdk_check("openai", "openai_sdk_check.py", args).await else {
        return;
    };
    assert!(String::from_utf8_lossy(&out.stdout).contains("openai sdk check: ok"));
    assert!(up.hits() >= 9, "{}", up.hits());
}

/// The SDK's Azure client (deployment URLs, `api-version`, `api-key`) against the fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdks_azure_client_parses_the_fakes_azure_paths() {
    let up = FakeUpstream::openai().require_key("az-key").start().await;
    let args = vec![root_url(&up), "az-key".into()];
    if sdk_check("openai", "azure_sdk_check.py", args)
        .await
        .is_none()
    {
        return;
    }
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p == "/openai/deployments/prod-gpt-4o/chat/completions"),
        "{paths:?}"
    );
    assert!(up.requests().iter().all(|r| {
        r.query
            .as_deref()
            .is_some_and(|q| q.contains("api-version=2024-10-21"))
    }));
}

/// The arguments of an SDK check: the main fake's root URL and `key`, then
/// `NAME=ROOT_URL` for a new fake per `(NAME, status)` that always fails with
/// that status (`retry-after: 7` on a 429) or, for `streamerr`, whose streams
/// end with an error event after `error_after` events. Keep the fakes alive.
async fn sdk_args(
    up: &FakeHandle,
    key: &str,
    statuses: &[(&str, u16)],
    error_after: usize,
) -> (Vec<String>, Vec<FakeHandle>) {
    let mut args = vec![root_url(up), key.to_owned()];
    let mut fakes = Vec::new();
    let behaviours = statuses
        .iter()
        .map(|&(name, status)| {
            let retry_after = (status == 429).then(|| "7".to_owned());
            let body = None;
            (
                name,
                Behaviour::Status {
                    status,
                    retry_after,
                    body,
                },
            )
        })
        .chain([("streamerr", Behaviour::ErrorEventAfter(error_after))]);
    for (name, behaviour) in behaviours {
        let fake = FakeUpstream::openai().always(behaviour).start().await;
        args.push(format!("{name}={}", root_url(&fake)));
        fakes.push(fake);
    }
    (args, fakes)
}

/// The official `anthropic` Python SDK against `/v1/messages`: every call,
/// stream and error class, strictly validated (see anthropic_sdk_check.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_python_sdk_parses_the_messages_api() {
    let up = FakeUpstream::openai()
        .require_key("sk-ant")
        .cache_tokens(7, 3)
        .start()
        .await;
    let statuses = [("rate", 429), ("overloaded", 529), ("server", 500)];
    let (args, _fakes) = sdk_args(&up, "sk-ant", &statuses, 3).await;
    let Some(out) = sdk_check("anthropic", "anthropic_sdk_check.py", args).await else {
        return;
    };
    assert!(String::from_utf8_lossy(&out.stdout).contains("anthropic sdk check"));
    let reqs = up.requests();
    assert!(reqs.len() >= 20, "{}", reqs.len());
    assert!(reqs.iter().all(|r| r.path == "/v1/messages"));
    // The 2.x SDK sends the key as a bearer token and the 2026-10-21 version.
    let sdk = reqs
        .iter()
        .find(|r| {
            r.header("user-agent")
                .is_some_and(|ua| ua.starts_with("Anthropic/Python"))
        })
        .unwrap();
    assert_eq!(sdk.header("authorization"), Some("Bearer sk-ant"));
    assert_eq!(sdk.header("anthropic-version"), Some("2026-10-21"));
    assert_eq!(sdk.json()["messages"][0]["role"], "user");
}

/// The official `google-genai` Python SDK against `/v1beta/models/...`: every
/// call, stream and error class, strictly validated (see gemini_sdk_check.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_python_sdk_parses_the_generate_content_api() {
    let up = FakeUpstream::openai()
        .models(&["gemini-2.5-flash"])
        .require_key("g-key")
        .cache_tokens(7, 3)
        .start()
        .await;
    let statuses = [("rate", 429), ("unavailable", 503), ("server", 500)];
    let (args, _fakes) = sdk_args(&up, "g-key", &statuses, 2).await;
    let Some(out) = sdk_check("google.genai", "gemini_sdk_check.py", args).await else {
        return;
    };
    assert!(String::from_utf8_lossy(&out.stdout).contains("gemini sdk check"));
    let reqs = up.requests();
    assert!(reqs.iter().all(|r| r.path.starts_with("/v1beta/")));
    let sdk = reqs
        .iter()
        .find(|r| {
            r.path.ends_with(":streamGenerateContent") && r.header("x-goog-api-client").is_some()
        })
        .unwrap();
    assert_eq!(sdk.query.as_deref(), Some("alt=sse"));
    assert_eq!(sdk.header("x-goog-api-key"), Some("g-key"));
    assert_eq!(
        sdk.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
}
