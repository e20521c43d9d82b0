//! The Gemini adapter's translations against Gemini's documented shapes.

use super::super::translate::testing::{chunks, reassemble, run};
use super::*;
use serde_json::json;

fn translate(body: serde_json::Value) -> Result<serde_json::Value, ApiError> {
    let (req, _) = to_gemini(body.to_string().as_bytes(), "gem")?;
    Ok(serde_json::to_value(req).unwrap())
}

#[test]
fn roles_system_instruction_and_generation_config_are_gemini_shaped() {
    let r = translate(json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}
        ],
        "temperature": 1.2, "top_p": 0.5, "max_tokens": 64, "stop": "END", "n": 2, "seed": 3,
        "presence_penalty": 0.1, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    }))
    .unwrap();
    assert_eq!(
        r["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        r["contents"][0],
        json!({"role": "user", "parts": [{"text": "Hi"}]})
    );
    assert_eq!(r["contents"][1]["role"], "model");
    assert_eq!(
        r["contents"][2]["parts"][1],
        json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}})
    );
    let g = &r["generationConfig"];
    assert_eq!(g["temperature"], 1.2);
    assert_eq!(g["topP"], 0.5);
    assert_eq!(g["maxOutputTokens"], 64);
    assert_eq!(g["stopSequences"], json!(["END"]));
    assert_eq!(g["candidateCount"], 2);
    assert_eq!(g["seed"], 3);
    assert_eq!(g["presencePenalty"], 0.1);
    assert_eq!(g["responseMimeType"], "application/json");
    assert_eq!(g["responseJsonSchema"], json!({"type": "object"}));
}

#[test]
fn function_declarations_calls_and_responses_translate_by_name() {
    let r = translate(json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "{\"temp\": 18}"},
            {"role": "tool", "tool_call_id": "call_9", "content": "plain text"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "additionalProperties": false}}}],
        "tool_choice": "required"
    }))
    .unwrap();
    // A call another model made carries no signature: the first of its turn gets Google's
    // placeholder for histories Gemini did not write.
    assert_eq!(
        r["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "skip_thought_signature_validator"})
    );
    assert_eq!(r["contents"][2]["role"], "user");
    assert_eq!(
        r["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "weather", "response": {"temp": 18}}})
    );
    assert_eq!(
        r["contents"][2]["parts"][1]["functionResponse"]["response"],
        json!({"result": "plain text"})
    );
    assert_eq!(
        r["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
        false
    );
    assert_eq!(
        r["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    let forced = translate(
        json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}}),
    )
    .unwrap();
    assert_eq!(
        forced["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["weather"]})
    );
    let orphan = translate(
        json!({"model": "g", "messages": [{"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "nope", "content": "1"}]}),
    )
    .unwrap_err();
    assert_eq!(orphan.param.as_deref(), Some("messages[1].tool_call_id"));
}

#[test]
fn parameters_gemini_cannot_honour_are_refused_by_name() {
    let msg = json!([{"role": "user", "content": "Hi"}]);
    for (param, value) in [
        ("logprobs", json!(true)),
        ("parallel_tool_calls", json!(false)),
        ("response_format", json!({"type": "xml"})),
        ("reasoning_effort", json!("high")),
        ("prediction", json!({"type": "content", "content": "x"})),
        ("max_completion_tokens", json!(0)),
    ] {
        let mut body = json!({"model": "gemini-2.5-flash", "messages": msg});
        body[param] = value;
        let e = translate(body).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{param}");
        assert!(e.message.contains("provider 'gem'"));
    }
    let empty = json!({"model": "g", "messages": [{"role": "user", "content": ""}]});
    assert_eq!(
        translate(empty).unwrap_err().param.as_deref(),
        Some("messages[0].content")
    );
    let img = json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y"}}]}]});
    assert_eq!(
        translate(img).unwrap_err().param.as_deref(),
        Some("messages[0].content[0]")
    );
}

#[test]
fn an_answer_reads_back_with_usage_and_finish_reasons_in_openai_terms() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"text": "Sunny"},
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 8, "totalTokenCount": 138,
            "cachedContentTokenCount": 100, "thoughtsTokenCount": 10},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"
    });
    let r: wire::Response = serde_json::from_value(body).unwrap();
    let out: serde_json::Value = serde_json::from_slice(&from_gemini(r, "g")).unwrap();
    let c = &out["choices"][0];
    assert_eq!(
        c["message"]["content"], "Sunny",
        "thoughts are not the answer"
    );
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["tool_calls"][0]["function"]["name"], "weather");
    assert_eq!(c["message"]["tool_calls"][0]["id"], "call_abc_0_0");
    assert_eq!(out["model"], "gemini-2.5-flash");
    assert_eq!(out["usage"]["prompt_tokens"], 120);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(out["usage"]["completion_tokens"], 18);
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        10
    );
    assert_eq!(finish_reason("SAFETY", false), "content_filter");
    assert_eq!(finish_reason("MAX_TOKENS", false), "length");
}

#[test]
fn a_function_calls_thought_signature_goes_back_to_gemini_with_the_history() {
    // Gemini 3 refuses a history whose function call lost its thought signature: the
    // signature rides in the tool call id the caller echoes back.
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="},
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "responseId": "abc"
    });
    let r: wire::Response = serde_json::from_value(body).unwrap();
    let out: serde_json::Value = serde_json::from_slice(&from_gemini(r, "g")).unwrap();
    let calls = out["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    let first = calls[0]["id"].as_str().unwrap().to_string();
    // Written URL-safe and unpadded: the id keeps to letters, digits, `_` and `-`, which
    // every provider takes in ids (a fallback may carry the history to another one).
    assert_eq!(first, "call_abc_0_0__thought__c2lnLTE");
    let signed = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": "ab+/cd=="}
    ]}, "finishReason": "STOP", "index": 0}], "responseId": "x"});
    let out: serde_json::Value =
        serde_json::from_slice(&from_gemini(serde_json::from_value(signed).unwrap(), "g")).unwrap();
    let odd = out["choices"][0]["message"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        odd.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{odd}"
    );
    assert_eq!(signature_of(&odd).as_deref(), Some("ab+/cd=="));
    assert_eq!(
        calls[1]["id"], "call_abc_0_1",
        "only the signed call carries one"
    );
    let next = translate(json!({
        "model": "g",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": first, "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "{\"temp\": 25}"}
        ]
    }))
    .unwrap();
    let model_turn = &next["contents"][1];
    assert_eq!(model_turn["role"], "model");
    assert_eq!(
        model_turn["parts"][0],
        json!({"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="})
    );
    assert_eq!(
        model_turn["parts"][1],
        json!({"functionCall": {"name": "weather", "args": {"city": "Rome"}}})
    );
    assert_eq!(
        next["contents"][2]["parts"][0]["functionResponse"]["name"],
        "weather"
    );
    assert_eq!(
        next["contents"][2]["parts"][1]["functionResponse"]["response"]["temp"],
        25
    );
}

#[test]
fn a_blocked_prompt_is_a_content_policy_refusal() {
    let r: wire::Response = serde_json::from_value(json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}
    }))
    .unwrap();
    assert!(blocked(&r).unwrap().contains("SAFETY"));
    let t = "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}, \"usageMetadata\": {\"promptTokenCount\": 8}}\r\n\r\n";
    let (out, err) = run(
        stream::Translator::new(false, "g".into(), "gem".into()),
        t.as_bytes(),
        7,
    );
    assert!(err.is_none());
    assert!(out.contains("\"code\":\"content_policy\""), "{out}");
    assert!(!out.contains("[DONE]"));
}

/// A streamed answer as Google's server sends it with `alt=sse` (CRLF framing, usage in
/// every event, the finish reason in the last).
pub(crate) const TEXT_STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 9},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 12},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \".\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 5,\"totalTokenCount\": 14},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n";

pub(crate) const CALL_STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"weather\",\"args\": {\"city\": \"Paris\"}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 30,\"candidatesTokenCount\": 6,\"totalTokenCount\": 36},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r2\"}\r\n\r\n";

#[test]
fn a_text_stream_reassembles_and_ends_with_usage_and_done() {
    for piece in [1, 4, 33, TEXT_STREAM.len()] {
        let (out, err) = run(
            stream::Translator::new(true, "g".into(), "gem".into()),
            TEXT_STREAM.as_bytes(),
            piece,
        );
        assert!(err.is_none());
        let (text, _, finish) = reassemble(&out);
        assert_eq!(text, "The sky is blue.");
        assert_eq!(finish.as_deref(), Some("stop"));
        let c = chunks(&out);
        assert_eq!(c.last().unwrap()["usage"]["completion_tokens"], 5);
        assert_eq!(c.last().unwrap()["usage"]["prompt_tokens"], 9);
        assert!(out.ends_with("data: [DONE]\n\n"));
    }
}

#[test]
fn a_streamed_function_call_arrives_whole() {
    let (out, _) = run(
        stream::Translator::new(false, "g".into(), "gem".into()),
        CALL_STREAM.as_bytes(),
        16,
    );
    let (_, tools, finish) = reassemble(&out);
    assert_eq!(
        tools,
        vec![(
            "call_r2_0_0".to_string(),
            "weather".to_string(),
            "{\"city\":\"Paris\"}".to_string()
        )]
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[test]
fn a_stream_without_its_finish_reason_is_incomplete() {
    let cut = &TEXT_STREAM[..TEXT_STREAM.rfind("data:").unwrap()];
    let (out, err) = run(
        stream::Translator::new(true, "g".into(), "gem".into()),
        cut.as_bytes(),
        10,
    );
    assert!(err.is_none());
    assert!(!out.contains("[DONE]"));
    assert_eq!(reassemble(&out).2, None);
    let errored = format!(
        "{cut}data: {{\"error\": {{\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}}}\r\n\r\n"
    );
    let (out, _) = run(
        stream::Translator::new(true, "g".into(), "gem".into()),
        errored.as_bytes(),
        10,
    );
    assert!(out.contains("\"code\":\"overloaded\""));
    assert!(!out.contains("[DONE]"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Mangled Gemini streams never panic and never look complete without a finish reason.
    #[test]
    fn any_mangled_stream_ends_cleanly(
        cut in 0usize..1500,
        flips in proptest::collection::vec((0usize..1500, proptest::prelude::any::<u8>()), 0..6),
        piece in 1usize..40,
        call in proptest::prelude::any::<bool>(),
    ) {
        let mut t = if call { CALL_STREAM } else { TEXT_STREAM }.as_bytes().to_vec();
        for (at, b) in flips {
            let n = t.len();
            t[at % n] = b;
        }
        t.truncate(cut.min(t.len()));
        let (out, err) = run(stream::Translator::new(true, "g".into(), "gem".into()), &t, piece);
        if err.is_none() && out.contains("[DONE]") {
            proptest::prop_assert!(reassemble(&out).2.is_some());
        }
    }
}

/// The fake upstream's fixtures: Gemini's documented shapes, validated there with the
/// official `google-genai` SDK.
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../fake-upstream/fixtures/gemini/", $name))
    };
}

#[test]
fn the_documented_transcripts_translate_completely() {
    let (out, err) = run(
        stream::Translator::new(true, "g".into(), "gem".into()),
        fixture!("stream_text.sse").as_bytes(),
        6,
    );
    assert!(err.is_none());
    let (text, _, finish) = reassemble(&out);
    assert!(!text.is_empty());
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(out.ends_with("data: [DONE]\n\n"));

    let (out, _) = run(
        stream::Translator::new(true, "g".into(), "gem".into()),
        fixture!("stream_function_call.sse").as_bytes(),
        6,
    );
    let (_, tools, finish) = reassemble(&out);
    assert_eq!(tools[0].1, "get_forecast");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&tools[0].2).unwrap(),
        json!({"city": "Lyon", "days": 3})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let usage = chunks(&out).last().unwrap()["usage"].clone();
    assert_eq!(
        usage["completion_tokens"],
        18 + 52,
        "thinking tokens are completion tokens"
    );
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 52);

    let refused: wire::Response = serde_json::from_str(fixture!("prompt_blocked.json")).unwrap();
    assert!(blocked(&refused).is_some());
    for body in [
        fixture!("response_text.json"),
        fixture!("response_function_call.json"),
    ] {
        let r: wire::Response = serde_json::from_str(body).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&from_gemini(r, "g")).unwrap();
        assert_eq!(out["object"], "chat.completion");
        assert!(out["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
}

#[test]
fn a_streamed_malformed_function_call_is_an_error_not_an_empty_stop() {
    let t = "data: {\"candidates\":[{\"content\":{},\"finishReason\":\"MALFORMED_FUNCTION_CALL\",\"index\":0}]}\r\n\r\n";
    let (out, err) = run(
        stream::Translator::new(false, "g".into(), "gem".into()),
        t.as_bytes(),
        t.len(),
    );
    assert!(err.is_none());
    assert!(out.starts_with("data: {\"error\""), "{out}");
    assert!(
        !out.contains("[DONE]") && !out.contains("\"stop\""),
        "{out}"
    );
}
