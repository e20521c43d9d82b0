//! Audio transcription uploads: multipart in, model rewritten, replayed on retry and fallback
//! (from memory, or from a spilled temporary file for large uploads).

use crate::common::*;
use fake_upstream::{Behaviour, FakeUpstream};

fn config(a: &str, b: &str) -> String {
    config_with(a, b, "")
}

fn config_with(a: &str, b: &str, server_extra: &str) -> String {
    format!(
        "[server]\nauth = \"off\"\n{server_extra}\n{}\n{}\n{FAST_RETRY}\n[models.whisper-1]\nendpoint = \"audio_transcription\"\n[models.whisper-2]\nendpoint = \"audio_transcription\"\n[targets.ta]\nprovider = \"a\"\nmodel = \"whisper-1\"\n[targets.tb]\nprovider = \"b\"\nmodel = \"whisper-2\"\n[routes.listen]\nendpoint = \"audio_transcription\"\ntargets = [\"ta\", \"tb\"]\n",
        provider("a", a, &["whisper-1"]),
        provider("b", b, &["whisper-2"]),
    )
}

fn form(model: &str, audio: Vec<u8>, format: Option<&str>) -> reqwest::multipart::Form {
    let mut f = reqwest::multipart::Form::new()
        .text("model", model.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio)
                .file_name("clip.wav")
                .mime_str("audio/wav")
                .unwrap(),
        );
    if let Some(fmt) = format {
        f = f.text("response_format", fmt.to_string());
    }
    f
}

fn audio(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn a_transcription_upload_reaches_the_target_with_its_model_and_every_byte() {
    let a = FakeUpstream::openai().start().await;
    let b = FakeUpstream::openai().start().await;
    let gw = Gw::start_with_env(
        &config(&a.base_url(), &b.base_url()),
        &[("A_KEY", "k"), ("B_KEY", "k")],
    )
    .await;
    let clip = audio(50_000);
    for (format, ct) in [
        ("json", "application/json"),
        ("text", "text/plain"),
        ("srt", "text/plain"),
        ("verbose_json", "application/json"),
        ("vtt", "text/plain"),
    ] {
        let r = gw
            .post("/v1/audio/transcriptions")
            .multipart(form("route::listen", clip.clone(), Some(format)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{format}");
        assert!(
            header(&r, "content-type").unwrap().starts_with(ct),
            "{format}: {:?}",
            header(&r, "content-type")
        );
        assert_eq!(header(&r, "x-signalbox-route"), Some("route:listen"));
        let body = r.text().await.unwrap();
        assert!(!body.is_empty());
    }
    let req = a.requests().pop().unwrap();
    assert_eq!(req.multipart_field("model").as_deref(), Some("whisper-1"));
    assert_eq!(req.multipart_file_len(), Some(clip.len()));
    assert_eq!(
        req.multipart_field("response_format").as_deref(),
        Some("vtt")
    );
}

#[tokio::test]
async fn a_failed_attempt_replays_the_same_upload_to_the_next_target_from_memory_and_from_a_spill()
{
    for size in [10_000usize, 3 * 1024 * 1024] {
        let a = FakeUpstream::openai().fail_first(3, 503).start().await;
        let b = FakeUpstream::openai().start().await;
        let gw = Gw::start_with_env(
            &config(&a.base_url(), &b.base_url()),
            &[("A_KEY", "k"), ("B_KEY", "k")],
        )
        .await;
        let clip = audio(size);
        let r = gw
            .post("/v1/audio/translations")
            .multipart(form("route::listen", clip.clone(), None))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "size {size}");
        assert_eq!(header(&r, "x-signalbox-provider"), Some("b"));
        assert_eq!(a.hits(), 3, "first target tried with retries");
        for req in a.requests().iter().chain(b.requests().iter()) {
            assert_eq!(
                req.multipart_file_len(),
                Some(size),
                "every attempt carries the whole file"
            );
        }
        assert_eq!(
            b.requests()[0].multipart_field("model").as_deref(),
            Some("whisper-2")
        );
    }
}

#[tokio::test]
async fn uploads_that_do_not_fit_get_clear_errors_and_never_go_upstream() {
    let a = FakeUpstream::openai().start().await;
    let gw = Gw::start_with_env(
        &config_with(&a.base_url(), &a.base_url(), "max_upload_bytes = 100000"),
        &[("A_KEY", "k"), ("B_KEY", "k")],
    )
    .await;
    // JSON on the upload endpoint: 415.
    let r = gw
        .post("/v1/audio/transcriptions")
        .json(&serde_json::json!({"model": "route::listen"}))
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(r).await;
    assert_eq!(status, 415);
    // No file: 400 naming `file`; no model: 400 naming `model`.
    let r = gw
        .post("/v1/audio/transcriptions")
        .multipart(reqwest::multipart::Form::new().text("model", "route::listen"))
        .send()
        .await
        .unwrap();
    let (status, b) = error_of(r).await;
    assert_eq!((status, b["error"]["param"].as_str()), (400, Some("file")));
    let r = gw
        .post("/v1/audio/transcriptions")
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.wav"),
        ))
        .send()
        .await
        .unwrap();
    let (status, b) = error_of(r).await;
    assert_eq!((status, b["error"]["param"].as_str()), (400, Some("model")));
    // Over max_upload_bytes: 413.
    let r = gw
        .post("/v1/audio/transcriptions")
        .multipart(form("route::listen", audio(200_000), None))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 413);
    // A chat route called on the upload endpoint is wrong_endpoint.
    assert_eq!(a.hits(), 0);
    let _ = Behaviour::Ok;
}

/// `stream=true` in the form: the transcription comes back as events, passed through, and
/// the request's usage (from `transcript.text.done`) is counted.
#[tokio::test]
async fn a_streamed_transcription_passes_through_and_its_usage_is_counted() {
    let a = FakeUpstream::openai().start().await;
    let gw = Gw::start_with_env(
        &format!(
            "[server]\nauth = \"off\"\n{}\n[models.gpt-4o-transcribe]\nendpoint = \"audio_transcription\"\n[targets.t]\nprovider = \"a\"\nmodel = \"gpt-4o-transcribe\"\n[routes.listen]\nendpoint = \"audio_transcription\"\ntargets = [\"t\"]\n",
            provider("a", &a.base_url(), &["gpt-4o-transcribe"])
        ),
        &[("A_KEY", "k")],
    )
    .await;
    let r = gw
        .post("/v1/audio/transcriptions")
        .multipart(form("route::listen", audio(20_000), None).text("stream", "true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("transcript.text.delta") && text.contains("transcript.text.done"),
        "{text}"
    );
    let sent = a.requests().pop().unwrap();
    assert!(
        String::from_utf8_lossy(&sent.body).contains("name=\"stream\"\r\n\r\ntrue"),
        "the field goes upstream"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let metrics = gw.running.state.sink.metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gen_ai_client_token_usage_sum")
                && l.contains("gen_ai_token_type=\"input\"")
                && !l.ends_with(" 0")
                && !l.ends_with(" 0.0")),
        "{metrics}"
    );
}
