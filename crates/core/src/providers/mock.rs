//! The built-in `mock` kind: offline, deterministic answers derived from the prompt,
//! with realistic usage and streaming in several chunks.
//!
//! Failure scenarios, for trying routes offline, are asked for in the request text:
//! `mock:status=503` (an OpenAI-shaped error with that status; `mock:retry_after=2` adds
//! `Retry-After` to a 429), `mock:hang` (never answers), `mock:cut=3` (three stream events or
//! body pieces, then the connection breaks), `mock:stall=3` (three, then silence). A directive
//! may name the model it is for, `mock:status=503@echo-1`, so that one target of a fallback
//! chain fails and the next answers.

use super::{Outbound, TransportError, UpstreamResponse};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) async fn send(out: Outbound<'_>) -> Result<UpstreamResponse, TransportError> {
    let latency = out.target.provider.mock_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let super::OutBody::Json(raw) = &out.body else {
        return Ok(error(415, "the mock provider does not serve uploads"));
    };
    let scenario = Scenario::from_request(raw, &out.target.model);
    if let Some(status) = scenario.status {
        let mut resp = error(status, &format!("mock failure: status {status}"));
        if let Some(ra) = scenario
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            resp.headers.insert(http::header::RETRY_AFTER, ra);
        }
        return Ok(resp);
    }
    if scenario.hang {
        std::future::pending::<()>().await;
    }
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(_) => return Ok(error(400, "invalid JSON body")),
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let resp = match out.path {
        "/chat/completions" => chat(&body, &model),
        "/responses" => responses(&body, &model),
        "/embeddings" => embeddings(&body, &model),
        "/images/generations" => images(&body),
        "/audio/speech" => speech(&body),
        other => error(404, &format!("the mock provider does not serve {other}")),
    };
    Ok(scenario.apply(resp))
}

/// A failure the request asked the mock for.
#[derive(Default)]
struct Scenario {
    status: Option<u16>,
    retry_after: Option<u64>,
    hang: bool,
    cut: Option<usize>,
    stall: Option<usize>,
}

impl Scenario {
    fn from_request(raw: &[u8], model: &str) -> Scenario {
        let text = String::from_utf8_lossy(raw);
        // `mock:KEY` or `mock:KEY=VALUE`, optionally `@MODEL`; the first that applies wins.
        let find = |key: &str| -> Option<String> {
            let pat = format!("mock:{key}");
            let mut rest = text.as_ref();
            while let Some(i) = rest.find(&pat) {
                let after = &rest[i + pat.len()..];
                let token: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "=@-_.:/".contains(*c))
                    .collect();
                let (value, only_for) = match token.split_once('@') {
                    Some((v, m)) => (v.to_string(), Some(m.to_string())),
                    None => (token.clone(), None),
                };
                if only_for.is_none_or(|m| m == model) {
                    return Some(value.trim_start_matches('=').to_string());
                }
                rest = after;
            }
            None
        };
        let num = |key: &str| find(key).and_then(|v| v.parse::<u64>().ok());
        Scenario {
            status: num("status")
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (400..600).contains(s)),
            retry_after: num("retry_after"),
            hang: find("hang").is_some(),
            cut: num("cut").map(|n| n as usize),
            stall: num("stall").map(|n| n as usize),
        }
    }

    /// Cut or stall the body after the asked number of pieces.
    fn apply(&self, mut resp: UpstreamResponse) -> UpstreamResponse {
        use futures_util::StreamExt;
        if let Some(n) = self.cut {
            let broken = futures_util::stream::once(async {
                Err(TransportError::Reset("mock: connection cut".into()))
            });
            resp.body = Box::pin(resp.body.take(n).chain(broken));
        } else if let Some(n) = self.stall {
            let silent = futures_util::stream::pending();
            resp.body = Box::pin(resp.body.take(n).chain(silent));
        }
        resp
    }
}

fn response(status: u16, content_type: &'static str, chunks: Vec<Bytes>) -> UpstreamResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    let id = uuid::Uuid::new_v4().simple().to_string();
    if let Ok(v) = HeaderValue::from_str(&format!("mock-{id}")) {
        headers.insert("x-request-id", v);
    }
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, TransportError>));
    UpstreamResponse {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        body: Box::pin(stream),
    }
}

fn error(status: u16, message: &str) -> UpstreamResponse {
    error_in(status, message, None)
}

/// An OpenAI-shaped error naming the request parameter at fault.
fn error_in(status: u16, message: &str, param: Option<&str>) -> UpstreamResponse {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
    response(
        status,
        "application/json",
        vec![Bytes::from(body.to_string())],
    )
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Roughly four characters a token, at least one.
fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// What one choice of a mock chat answer holds.
enum MockAnswer {
    Text(String),
    Call { name: String, arguments: String },
}

impl MockAnswer {
    fn words(&self) -> u64 {
        match self {
            MockAnswer::Text(t) => t.split_whitespace().count() as u64,
            MockAnswer::Call { arguments, .. } => tokens(arguments.len()),
        }
    }
}

/// A value of the shape a JSON schema asks for: each required (or, with none listed, each)
/// property filled with a placeholder of its type; strings are `text`.
fn sample_of(schema: &Value, text: &str, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let props = schema.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = serde_json::Map::new();
            for (name, sub) in props.into_iter().flatten() {
                if required.is_empty() || required.contains(&name.as_str()) {
                    out.insert(name.clone(), sample_of(sub, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => Value::Array(Vec::new()),
        "integer" | "number" => json!(0),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => Value::String(text.to_string()),
    }
}

/// The mock's choice for a chat request: a call of a tool when the request offers tools and
/// the conversation awaits one (tool_choice `required` or naming a function, or `auto` with
/// the last message from the user), JSON when `response_format` asks for it, else text.
fn mock_answer(body: &Value, reply: &str, last_role: &str) -> Result<MockAnswer, UpstreamResponse> {
    let tools: Vec<&Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
                .collect()
        })
        .unwrap_or_default();
    let choice = body.get("tool_choice");
    let named = choice
        .and_then(|c| c.pointer("/function/name"))
        .and_then(Value::as_str);
    if let Some(c) = choice.and_then(Value::as_str)
        && !matches!(c, "none" | "auto" | "required")
    {
        return Err(error_in(
            400,
            &format!("tool_choice '{c}' is not one of none, auto, required (or a function)"),
            Some("tool_choice"),
        ));
    }
    let wanted = match choice.and_then(Value::as_str) {
        _ if tools.is_empty() => None,
        Some("none") => None,
        Some("required") => tools.first().copied(),
        _ if named.is_some() => match tools
            .iter()
            .find(|t| t.pointer("/function/name").and_then(Value::as_str) == named)
        {
            Some(t) => Some(*t),
            None => {
                return Err(error_in(
                    400,
                    &format!(
                        "tool_choice names function '{}', which is not among the tools",
                        named.unwrap_or_default()
                    ),
                    Some("tool_choice"),
                ));
            }
        },
        _ => (last_role == "user").then(|| tools[0]),
    };
    if let Some(tool) = wanted {
        let name = tool
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("tool")
            .to_string();
        let schema = tool
            .pointer("/function/parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        let arguments = sample_of(&schema, "mock", 0).to_string();
        return Ok(MockAnswer::Call { name, arguments });
    }
    Ok(
        match body
            .pointer("/response_format/type")
            .and_then(Value::as_str)
        {
            Some("json_object") => MockAnswer::Text(json!({"reply": reply}).to_string()),
            Some("json_schema") => {
                let schema = body
                    .pointer("/response_format/json_schema/schema")
                    .cloned()
                    .unwrap_or(Value::Null);
                MockAnswer::Text(sample_of(&schema, reply, 0).to_string())
            }
            _ => MockAnswer::Text(reply.to_string()),
        },
    )
}

fn chat(body: &Value, model: &str) -> UpstreamResponse {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() {
        return error(400, "'messages' must be a non-empty array");
    }
    let n = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=128) => n as usize,
            _ => return error_in(400, "'n' must be an integer from 1 to 128", Some("n")),
        },
    };
    let prompt_chars: usize = messages
        .iter()
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)).len())
        .sum();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let last_role = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut echo: String = last_user.chars().take(200).collect();
    if echo.len() < last_user.len() {
        echo.push('…');
    }
    let reply = format!("Hello from the Signalbox mock model {model}. You said: {echo}");
    let answer = match mock_answer(body, &reply, last_role) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let prompt_tokens = tokens(prompt_chars);
    let completion_tokens = answer.words() * n as u64;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    });
    let id = format!(
        "chatcmpl-mock{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    // One id per choice: each choice's call is its own.
    let call_ids: Vec<String> = (0..n)
        .map(|_| {
            format!(
                "call_mock{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            )
        })
        .collect();
    let finish = match &answer {
        MockAnswer::Text(_) => "stop",
        MockAnswer::Call { .. } => "tool_calls",
    };
    let created = now();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let message = |i: usize| match &answer {
            MockAnswer::Text(t) => json!({"role": "assistant", "content": t, "refusal": null}),
            MockAnswer::Call { name, arguments } => {
                json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": call_ids[i], "type": "function", "function": {"name": name, "arguments": arguments}}]})
            }
        };
        let choices: Vec<Value> = (0..n)
            .map(|i| json!({"index": i, "message": message(i), "logprobs": null, "finish_reason": finish}))
            .collect();
        let out = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices,
            "usage": usage, "system_fingerprint": "fp_signalbox_mock"
        });
        return response(200, "application/json", vec![Bytes::from(out.to_string())]);
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |index: usize, delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_signalbox_mock",
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut events = Vec::new();
    for (i, call_id) in call_ids.iter().enumerate() {
        match &answer {
            MockAnswer::Text(text) => {
                events.push(chunk(
                    i,
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                ));
                let words: Vec<&str> = text.split_inclusive(' ').collect();
                for piece in words.chunks(3) {
                    events.push(chunk(i, json!({"content": piece.concat()}), Value::Null));
                }
            }
            MockAnswer::Call { name, arguments } => {
                events.push(chunk(
                    i,
                    json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id,
                           "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                events.push(chunk(
                    i,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
                    Value::Null,
                ));
            }
        }
        events.push(chunk(i, json!({}), json!(finish)));
    }
    if include_usage {
        let u = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_signalbox_mock", "choices": [], "usage": usage
        });
        events.push(Bytes::from(format!("data: {u}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    response(200, "text/event-stream", events)
}

fn embeddings(body: &Value, model: &str) -> UpstreamResponse {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => {
            vec![Value::Array(a.clone()).to_string()]
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_array) => {
            a.iter().map(Value::to_string).collect()
        }
        _ => {
            return error(
                400,
                "'input' must be a string, an array of strings or token arrays",
            );
        }
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => 8,
        Some(d) => match d.as_u64() {
            Some(n @ 1..=4096) => n as usize,
            _ => {
                return error_in(
                    400,
                    "'dimensions' must be an integer from 1 to 4096",
                    Some("dimensions"),
                );
            }
        },
    };
    // As OpenAI: floats by default; "base64" is the vector's little-endian f32 bytes in
    // base64 (what the OpenAI SDKs for Node ask for when the caller names no format).
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return error_in(
                400,
                "'encoding_format' must be 'float' or 'base64'",
                Some("encoding_format"),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
            for b in text.bytes() {
                seed = (seed ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            let v: Vec<f64> = (0..dims)
                .map(|d| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407 ^ d as u64);
                    ((seed >> 33) as f64 / (1u64 << 31) as f64) - 1.0
                })
                .collect();
            let embedding = if base64 {
                use base64::Engine;
                let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt: u64 = inputs.iter().map(|s| tokens(s.len())).sum();
    let out = json!({"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": prompt, "total_tokens": prompt}});
    response(200, "application/json", vec![Bytes::from(out.to_string())])
}

fn responses(body: &Value, model: &str) -> UpstreamResponse {
    let input = match body.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default(),
        _ => return error(400, "'input' is required"),
    };
    let echo: String = input.chars().take(200).collect();
    let reply = format!("Hello from the Signalbox mock model {model}. You said: {echo}");
    let input_tokens = tokens(input.len());
    let output_tokens = reply.split_whitespace().count() as u64;
    let id = format!(
        "resp_mock{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let msg_id = format!(
        "msg_mock{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let created = now();
    let usage = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens
    });
    let message = |text: &str, status: &str| {
        json!({"type": "message", "id": msg_id, "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let resp_obj = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": created, "status": status,
               "model": model, "output": output, "usage": usage, "error": null,
               "incomplete_details": null, "instructions": null, "metadata": {},
               "parallel_tool_calls": true, "temperature": 1.0, "tool_choice": "auto",
               "tools": [], "top_p": 1.0})
    };
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let out = resp_obj("completed", json!([message(&reply, "completed")]), usage);
        return response_json(out);
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut ev = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        events.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
    };
    ev(
        "response.created",
        json!({"response": resp_obj("in_progress", json!([]), Value::Null)}),
    );
    ev(
        "response.in_progress",
        json!({"response": resp_obj("in_progress", json!([]), Value::Null)}),
    );
    ev(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("", "in_progress")}),
    );
    ev(
        "response.content_part.added",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    let words: Vec<&str> = reply.split_inclusive(' ').collect();
    for piece in words.chunks(3) {
        ev(
            "response.output_text.delta",
            json!({"item_id": msg_id, "output_index": 0,
            "content_index": 0, "delta": piece.concat(), "logprobs": []}),
        );
    }
    ev(
        "response.output_text.done",
        json!({"item_id": msg_id, "output_index": 0,
        "content_index": 0, "text": reply, "logprobs": []}),
    );
    ev(
        "response.content_part.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": reply, "annotations": []}}),
    );
    ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": message(&reply, "completed")}),
    );
    ev(
        "response.completed",
        json!({"response": resp_obj("completed", json!([message(&reply, "completed")]), usage)}),
    );
    response(200, "text/event-stream", events)
}

fn response_json(v: Value) -> UpstreamResponse {
    response(200, "application/json", vec![Bytes::from(v.to_string())])
}

/// A 1x1 transparent PNG.
const PNG_1X1_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn images(body: &Value) -> UpstreamResponse {
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return error(400, "'prompt' is required");
    };
    let n = body
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 10);
    let b64 = body.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if b64 {
                json!({"b64_json": PNG_1X1_B64, "revised_prompt": prompt})
            } else {
                json!({"url": format!("https://mock.signalbox.local/images/{i}.png"), "revised_prompt": prompt})
            }
        })
        .collect();
    response_json(json!({"created": now(), "data": data}))
}

/// A short, valid WAV (24 kHz, 16-bit mono silence) or, for other formats, bytes that start
/// with the format's magic number; streamed in several chunks like a real speech endpoint.
fn speech(body: &Value) -> UpstreamResponse {
    let Some(input) = body.get("input").and_then(Value::as_str) else {
        return error(400, "'input' is required");
    };
    let format = body
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("mp3");
    let samples = (2400 + input.len() * 240).min(240_000);
    let (content_type, bytes): (&'static str, Vec<u8>) = match format {
        "wav" | "pcm" => {
            let data_len = (samples * 2) as u32;
            let mut v = Vec::with_capacity(44 + samples * 2);
            if format == "wav" {
                v.extend_from_slice(b"RIFF");
                v.extend_from_slice(&(36 + data_len).to_le_bytes());
                v.extend_from_slice(b"WAVEfmt ");
                v.extend_from_slice(&16u32.to_le_bytes());
                v.extend_from_slice(&1u16.to_le_bytes());
                v.extend_from_slice(&1u16.to_le_bytes());
                v.extend_from_slice(&24_000u32.to_le_bytes());
                v.extend_from_slice(&48_000u32.to_le_bytes());
                v.extend_from_slice(&2u16.to_le_bytes());
                v.extend_from_slice(&16u16.to_le_bytes());
                v.extend_from_slice(b"data");
                v.extend_from_slice(&data_len.to_le_bytes());
            }
            v.resize(v.len() + samples * 2, 0);
            (
                if format == "wav" {
                    "audio/wav"
                } else {
                    "audio/pcm"
                },
                v,
            )
        }
        other => {
            let (ct, magic): (&'static str, &[u8]) = match other {
                "opus" => ("audio/opus", b"OggS"),
                "aac" => ("audio/aac", &[0xFF, 0xF1]),
                "flac" => ("audio/flac", b"fLaC"),
                _ => ("audio/mpeg", b"ID3"),
            };
            let mut v = magic.to_vec();
            v.resize(samples / 4, 0);
            (ct, v)
        }
    };
    let chunks: Vec<Bytes> = bytes.chunks(4096).map(Bytes::copy_from_slice).collect();
    response(200, content_type, chunks)
}
