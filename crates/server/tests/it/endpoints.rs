//! Every endpoint kind behind named routes: Responses API, speech, images, embeddings, and the
//! wrong-endpoint matrix.

use crate::common::*;
use serde_json::json;

const MOCK: &str = r#"
[server]
auth = "off"

[providers.demo]
kind = "mock"
models = ["echo-1", "embed-1", "tts-1", "img-1"]

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
models = ["whisper-1"]

[models.embed-1]
endpoint = "embeddings"
[models.tts-1]
endpoint = "audio_speech"
[models.img-1]
endpoint = "image_generation"
[models.whisper-1]
endpoint = "audio_transcription"

[targets.chat]
model = "echo-1"
[targets.embed]
model = "embed-1"
[targets.tts]
model = "tts-1"
[targets.img]
model = "img-1"
[targets.stt]
model = "whisper-1"

[routes.talk]
targets = ["chat"]
[routes.embed]
endpoint = "embeddings"
targets = ["embed"]
[routes.speak]
endpoint = "audio_speech"
targets = ["tts"]
[routes.draw]
endpoint = "image_generation"
targets = ["img"]
[routes.listen]
endpoint = "audio_transcription"
targets = ["stt"]
"#;

#[tokio::test]
async fn the_responses_api_is_a_chat_ingress_plain_and_streaming() {
    let gw = Gw::start(MOCK).await;
    let r = gw
        .post("/v1/responses")
        .json(&json!({"model": "route::talk", "input": "Hi there"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-route"), Some("route:talk"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], "echo-1");
    assert!(
        v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Hi there")
    );

    let r = gw
        .post("/v1/responses")
        .json(&json!({"model": "route::talk", "input": "Hi there", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(text.contains("event: response.output_text.delta\n"));
    assert!(
        text.trim_end().ends_with('}'),
        "ends with the response.completed event: {text}"
    );
    assert!(text.contains("event: response.completed\n"));
    assert!(!text.contains("[DONE]"), "the Responses API has no [DONE]");
    assert!(!text.contains("stream_interrupted"));
}

#[tokio::test]
async fn speech_streams_audio_with_the_upstream_content_type() {
    let gw = Gw::start(MOCK).await;
    let r = gw
        .post("/v1/audio/speech")
        .json(&json!({"model": "route::speak", "input": "Hello there", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("audio/wav"));
    assert_eq!(header(&r, "x-signalbox-model"), Some("tts-1"));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let declared = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(declared + 8, bytes.len(), "a complete WAV file");
}

#[tokio::test]
async fn images_pass_url_and_b64_json_answers_through() {
    let gw = Gw::start(MOCK).await;
    for (format, key) in [("url", "url"), ("b64_json", "b64_json")] {
        let r = gw
            .post("/v1/images/generations")
            .json(&json!({"model": "route::draw", "prompt": "a lighthouse", "response_format": format}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["data"][0][key].is_string(), "{v}");
    }
}

#[tokio::test]
async fn embeddings_take_strings_arrays_and_token_arrays() {
    let gw = Gw::start(MOCK).await;
    for input in [
        json!("one"),
        json!(["a", "b"]),
        json!([1, 2, 3]),
        json!([[1, 2], [3]]),
    ] {
        let r = gw
            .post("/v1/embeddings")
            .json(&json!({"model": "route::embed", "input": input, "dimensions": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{input}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn mock_embeddings_answer_base64_when_asked_and_refuse_bad_dimensions() {
    use base64::Engine;
    let gw = Gw::start(MOCK).await;
    let call = |body: serde_json::Value| gw.post("/v1/embeddings").json(&body).send();
    let floats: serde_json::Value = call(json!({"model": "route::embed", "input": "hi"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = call(json!({"model": "route::embed", "input": "hi", "encoding_format": "base64"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        decoded, expected,
        "the same vector, as little-endian f32 bytes"
    );
    for bad in [json!(0), json!(-1), json!(5000), json!("abc")] {
        let r = call(json!({"model": "route::embed", "input": "hi", "dimensions": bad}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], "dimensions", "{e}");
    }
    let r = call(json!({"model": "route::embed", "input": "hi", "encoding_format": "int8"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_body_that_does_not_fit_its_endpoint_names_the_missing_field() {
    let gw = Gw::start(MOCK).await;
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "route::embed", "messages": [{"role": "user", "content": "x"}]}),
            "input",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "route::talk", "input": "x"}),
            "messages",
        ),
        (
            "/v1/images/generations",
            json!({"model": "route::draw"}),
            "prompt",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "route::speak", "voice": "alloy"}),
            "input",
        ),
    ];
    for (path, body, field) in cases {
        let r = gw.post(path).json(&body).send().await.unwrap();
        // The model resolved: the answer names the route, as the trace does, and no attempt.
        let route = format!(
            "route:{}",
            body["model"]
                .as_str()
                .unwrap()
                .trim_start_matches("route::")
        );
        assert_eq!(
            header(&r, "x-signalbox-route"),
            Some(route.as_str()),
            "{path}"
        );
        assert_eq!(header(&r, "x-signalbox-attempts"), Some("0"), "{path}");
        let (status, b) = error_of(r).await;
        assert_eq!(
            (status, b["error"]["param"].as_str()),
            (400, Some(field)),
            "{path}: {b}"
        );
        assert_eq!(b["error"]["code"], "bad_request");
    }
    // The model resolved: the refusal is counted under its route.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let metrics = gw.running.state.sink.metrics().encode();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("gen_ai_client_operation_duration_seconds_count")
                && l.contains("route=\"route:talk\"")
                && l.contains("status_class=\"4xx\"")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_route_kind_called_on_another_endpoint_is_wrong_endpoint_naming_the_right_one() {
    let gw = Gw::start(MOCK).await;
    let routes = [
        ("talk", "POST /v1/chat/completions"),
        ("embed", "POST /v1/embeddings"),
        ("speak", "POST /v1/audio/speech"),
        ("draw", "POST /v1/images/generations"),
        ("listen", "POST /v1/audio/transcriptions"),
    ];
    let paths = [
        ("/v1/chat/completions", "talk"),
        ("/v1/responses", "talk"),
        ("/v1/embeddings", "embed"),
        ("/v1/audio/speech", "speak"),
        ("/v1/images/generations", "draw"),
    ];
    for (path, own) in paths {
        for (route, right) in routes {
            if route == own {
                continue;
            }
            let body = json!({"model": format!("route::{route}"), "messages": [], "input": "x", "prompt": "x"});
            let r = gw.post(path).json(&body).send().await.unwrap();
            let (status, b) = error_of(r).await;
            assert_eq!(status, 400, "{route} on {path}");
            assert_eq!(b["error"]["code"], "wrong_endpoint", "{route} on {path}");
            assert!(
                b["error"]["message"].as_str().unwrap().contains(right),
                "{route} on {path}: {b}"
            );
        }
    }
}

/// `PROVIDER::MODEL` of a provider that serves no passthrough is unknown on every endpoint
/// (404), never a pointer to another endpoint; one that does serve passthrough, called on
/// the wrong endpoint, names the right one.
#[tokio::test]
async fn a_provider_model_without_passthrough_is_not_found_on_any_endpoint() {
    let gw = Gw::start(
        "[server]\nauth = \"off\"\n[providers.shut]\nkind = \"mock\"\npassthrough = \"off\"\nmodels = [\"tts-z\"]\n[providers.open]\nkind = \"mock\"\nmodels = [\"tts-y\"]\n[models.tts-z]\nendpoint = \"audio_speech\"\n[models.tts-y]\nendpoint = \"audio_speech\"\n",
    )
    .await;
    for path in ["/v1/chat/completions", "/v1/audio/speech"] {
        let body = json!({"model": "shut::tts-z", "messages": [], "input": "x", "voice": "alloy"});
        let (status, b) = error_of(gw.post(path).json(&body).send().await.unwrap()).await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (404, Some("model_not_found")),
            "{path}: {b}"
        );
    }
    let body = json!({"model": "open::tts-y", "messages": []});
    let (status, b) = error_of(
        gw.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("wrong_endpoint")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /v1/audio/speech"),
        "{b}"
    );
}

async fn fake_gateway(fake: &fake_upstream::FakeHandle) -> Gw {
    let toml = format!(
        "[server]\nauth = \"off\"\n{}\n{FAST_RETRY}\n[models.tts-1]\nendpoint = \"audio_speech\"\n[targets.t]\nprovider = \"up\"\nmodel = \"gpt-4o\"\n[targets.s]\nprovider = \"up\"\nmodel = \"tts-1\"\n[routes.r]\ntargets = [\"t\"]\n[routes.speak]\nendpoint = \"audio_speech\"\ntargets = [\"s\"]\n",
        provider("up", &fake.base_url(), &["gpt-4o", "tts-1"])
    );
    Gw::start_with_env(&toml, &[("UP_KEY", "k")]).await
}

async fn responses_stream(gw: &Gw) -> (u16, String) {
    let r = gw
        .post("/v1/responses")
        .json(&json!({"model": "route::r", "input": "Hello", "stream": true}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_responses_stream_cut_after_the_first_byte_ends_with_stream_interrupted() {
    use fake_upstream::{Behaviour, FakeUpstream};
    for b in [
        Behaviour::CutAfter(3),
        Behaviour::EndWithoutDone,
        Behaviour::ErrorEventAfter(3),
    ] {
        let fake = FakeUpstream::openai().always(b.clone()).start().await;
        let gw = fake_gateway(&fake).await;
        let (status, text) = responses_stream(&gw).await;
        assert_eq!(status, 200, "{b:?}");
        assert!(text.starts_with("event: response.created"), "{b:?}: {text}");
        assert!(!text.contains("event: response.completed"), "{b:?}");
        assert!(text.contains("stream_interrupted"), "{b:?}: {text}");
        assert!(!text.contains("[DONE]"), "{b:?}");
        assert_eq!(fake.hits(), 1, "no retry after the first byte: {b:?}");
    }
}

#[tokio::test]
async fn a_responses_stream_that_fails_before_its_first_event_is_retried_cleanly() {
    use fake_upstream::FakeUpstream;
    let fake = FakeUpstream::openai().fail_first(1, 503).start().await;
    let gw = fake_gateway(&fake).await;
    let (status, text) = responses_stream(&gw).await;
    assert_eq!(status, 200);
    assert!(text.contains("event: response.completed"), "{text}");
    assert!(!text.contains("stream_interrupted"));
    assert_eq!(fake.hits(), 2);
    let sent = fake.requests().pop().unwrap().json();
    assert_eq!(sent["model"], "gpt-4o");
    assert!(
        sent.get("stream_options").is_none(),
        "the Responses API gets no chat-only stream_options"
    );
}

#[tokio::test]
async fn speech_cut_mid_body_aborts_the_response_instead_of_ending_cleanly() {
    use fake_upstream::{Behaviour, FakeUpstream};
    let fake = FakeUpstream::openai()
        .chunks(8)
        .always(Behaviour::CutAfter(2))
        .start()
        .await;
    let gw = fake_gateway(&fake).await;
    let r = gw
        .post("/v1/audio/speech")
        .json(&json!({"model": "route::speak", "input": "Hello there", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.is_err(),
        "a truncated audio body must not look complete"
    );
}

/// Speech audio commits only with its first bytes: a target that sends the headers and then
/// resets, or goes silent past `first_byte_timeout_ms`, fails like any other, and the chain
/// moves on; the caller gets the next target's whole audio.
#[tokio::test]
async fn speech_that_fails_before_its_first_byte_falls_back_to_the_next_target() {
    use fake_upstream::{Behaviour, FakeUpstream};
    for (behaviour, a_hits) in [(Behaviour::CutAfter(0), 3), (Behaviour::StallAfter(0), 1)] {
        let a = FakeUpstream::openai()
            .always(behaviour.clone())
            .start()
            .await;
        let b = FakeUpstream::openai().start().await;
        let toml = format!(
            "[server]\nauth = \"off\"\n{}\n{}\n{FAST_RETRY}\n[models.tts-1]\nendpoint = \"audio_speech\"\nfirst_byte_timeout_ms = 300\n[targets.a]\nprovider = \"a\"\nmodel = \"tts-1\"\n[targets.b]\nprovider = \"b\"\nmodel = \"tts-1\"\n[routes.speak]\nendpoint = \"audio_speech\"\nstrategy = \"fallback\"\ntargets = [\"a\", \"b\"]\n",
            provider("a", &a.base_url(), &["tts-1"]),
            provider("b", &b.base_url(), &["tts-1"]),
        );
        let gw = Gw::start_with_env(&toml, &[("A_KEY", "k"), ("B_KEY", "k")]).await;
        let r = gw
            .post("/v1/audio/speech")
            .json(&json!({"model": "route::speak", "input": "Hello there", "voice": "alloy", "response_format": "wav"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{behaviour:?}");
        assert_eq!(
            header(&r, "x-signalbox-provider"),
            Some("b"),
            "{behaviour:?}"
        );
        let audio = r.bytes().await.expect("the whole audio");
        assert!(audio.starts_with(b"RIFF"), "{behaviour:?}");
        assert_eq!(
            (a.hits(), b.hits()),
            (a_hits, 1),
            "{behaviour:?}: a reset is retried, a silence is not"
        );
    }
}

#[tokio::test]
async fn the_mock_provider_fails_on_request_so_routes_can_be_tried_offline() {
    let gw = Gw::start(
        "[server]\nauth = \"off\"\n[routing.retry]\nmax_retries = 1\nbackoff_base_ms = 1\nbackoff_max_ms = 5\n[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\", \"echo-2\"]\n[targets.a]\nmodel = \"echo-1\"\n[targets.b]\nmodel = \"echo-2\"\n[routes.chain]\nstrategy = \"fallback\"\ntargets = [\"a\", \"b\"]\n[routes.solo]\ntargets = [\"a\"]\n",
    )
    .await;
    let ask = |model: &'static str, text: &'static str, stream: bool| {
        gw.post("/v1/chat/completions")
            .json(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}))
            .send()
    };
    // A directive for one model: that target fails (and is retried), the next one answers.
    let r = ask("route::chain", "hi mock:status=503@echo-1", false)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-signalbox-model"), Some("echo-2"));
    assert_eq!(header(&r, "x-signalbox-attempts"), Some("3"));
    // For every model: the last failure reaches the caller as the contract says.
    let r = ask(
        "route::solo",
        "hi mock:status=429 mock:retry_after=7",
        false,
    )
    .await
    .unwrap();
    assert_eq!(header(&r, "retry-after"), Some("7"));
    let (status, b) = error_of(r).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (429, Some("rate_limit"))
    );
    // A stream cut after its first events.
    let r = ask("route::solo", "hi mock:cut=2", true).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("stream_interrupted") && !text.contains("[DONE]"),
        "{text}"
    );
}

#[tokio::test]
async fn the_mock_honours_n_tools_and_response_format() {
    let gw = Gw::start(MOCK).await;
    let chat = |extra: serde_json::Value| {
        let mut body = json!({"model": "route::talk", "messages": [{"role": "user", "content": "weather in Paris?"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        gw.post("/v1/chat/completions").json(&body).send()
    };
    // n choices.
    let v: serde_json::Value = chat(json!({"n": 3})).await.unwrap().json().await.unwrap();
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2]);
    assert_eq!(chat(json!({"n": 0})).await.unwrap().status(), 400);

    // A tool the conversation waits on: called, with arguments of the declared shape.
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "unit"]}}}]);
    let v: serde_json::Value = chat(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}))
        .await.unwrap().json().await.unwrap();
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{v}");
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "mock", "unit": "c"}));
    // After the tool's result, `auto` answers in text.
    let r = gw.post("/v1/chat/completions").json(&json!({"model": "route::talk", "tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    // `none` never calls; an unknown function is refused.
    let v: serde_json::Value = chat(json!({"tools": tools, "tool_choice": "none"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string());
    let r = chat(
        json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = chat(json!({"tools": tools, "tool_choice": "sometimes"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Each of n choices calls with its own id.
    let v: serde_json::Value = chat(json!({"tools": tools, "tool_choice": "required", "n": 2}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = |c: usize| v["choices"][c]["message"]["tool_calls"][0]["id"].clone();
    assert_ne!(ids(0), ids(1), "{v}");

    // Streamed, the call arrives in tool_call deltas and ends with finish_reason tool_calls.
    let text = chat(json!({"tools": tools, "tool_choice": "required", "stream": true}))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"name\":\"get_weather\""), "{text}");
    assert!(text.contains("\"finish_reason\":\"tool_calls\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));

    // Structured output: JSON of the schema's shape.
    let v: serde_json::Value = chat(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "number"}}, "required": ["answer", "score"]}}}}))
        .await.unwrap().json().await.unwrap();
    let content: serde_json::Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(
        content["answer"]
            .as_str()
            .unwrap()
            .contains("weather in Paris?"),
        "{content}"
    );
    assert_eq!(content["score"], 0);
}
