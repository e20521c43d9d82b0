//! `POST /v1/messages`: the Anthropic Messages API, plain and streamed.
//!
//! Requests need `anthropic-version` (`2023-06-01`, or `2026-10-21` as the
//! 2.x SDKs send) and, when a key is required, `x-api-key` or (as the 2.x
//! SDKs send it) `Authorization: Bearer`. They are validated like the real
//! API validates them: required fields, block types, image sources, no
//! unknown top-level field unless an `anthropic-beta` header is sent, and on
//! `2026-10-21` no `temperature`/`top_p`/`top_k`, no `document` block in an
//! assistant message and no `citations` on a user's text. Errors are
//! `{"type":"error","error":{"type","message"},"request_id"}`; every response
//! carries a `request-id` header.
//!
//! A stream is `message_start`, one `ping`, `content_block_start`, the
//! deltas (`text_delta`, or `input_json_delta` for a tool call),
//! `content_block_stop`, `message_delta` (stop reason and usage) and
//! `message_stop`.

use std::collections::VecDeque;

use bytes::Bytes;
use http::Method;
use http::request::Parts;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::Behaviour;
use crate::handler::{Cx, JSON, Resp, content_text, split_pieces, sse_event};
use crate::reply::{Answer, Ending, Finish, Turn, Usage};
use crate::util::{anthropic_id, json_str};

const SSE: &str = "text/event-stream; charset=utf-8";
const VERSIONS: [&str; 3] = ["2023-06-01", "2023-01-01", LATEST];
/// The version that removed the sampling parameters.
const LATEST: &str = "2026-10-21";
const SAMPLING: [&str; 3] = ["temperature", "top_p", "top_k"];
/// Anthropic's own ping, spaced as the API sends it.
const PING: &str = "{\"type\": \"ping\"}";

/// Top-level request fields; any other is refused without an `anthropic-beta` header.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
    "container",
    "cache_control",
    "context_management",
    "diagnostics",
    "inference_geo",
    "mcp_servers",
    "output_config",
    "speed",
    "user_profile_id",
    "workspace_id",
];

/// Content block types a request message may hold.
const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
];
const TOOL_RESULT_TYPES: &[&str] = &["text", "image", "document", "search_result"];
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// `{"type":"error","error":{"type":kind,"message":message}}`, with `request_id` if given.
fn error_body(kind: &str, message: &str, request_id: Option<&str>) -> String {
    let mut out = format!(
        "{{\"type\":\"error\",\"error\":{{\"type\":{},\"message\":{}}}",
        json_str(kind),
        json_str(message)
    );
    if let Some(id) = request_id {
        out.push_str(",\"request_id\":");
        out.push_str(&json_str(id));
    }
    out.push('}');
    out
}

/// The error body Anthropic sends with `status` (for `Behaviour::Status`).
pub(crate) fn status_error(status: u16, request_id: &str) -> String {
    let (kind, message) = match status {
        400 => (
            "invalid_request_error",
            "There was an issue with the format or content of your request.",
        ),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization. Please reduce the prompt length or the maximum tokens requested, or try again later.",
        ),
        504 => ("timeout_error", "Request timed out"),
        529 => ("overloaded_error", "Overloaded"),
        s if (400..500).contains(&s) => ("invalid_request_error", "Invalid request"),
        _ => ("api_error", "Internal server error"),
    };
    error_body(kind, message, Some(request_id))
}

/// A validated request.
struct Request<'a> {
    model: &'a str,
    stream: bool,
    turn: Turn<'a>,
}

type Check = Result<(), String>;

fn quoted(tags: &[&str]) -> String {
    let tags: Vec<String> = tags.iter().map(|t| format!("'{t}'")).collect();
    tags.join(", ")
}

fn string_field<'a>(o: &'a Map<String, Value>, path: &str, name: &str) -> Result<&'a str, String> {
    match o.get(name) {
        None => Err(format!("{path}.{name}: Field required")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{path}.{name}: Input should be a valid string")),
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{path}: Input should be a valid dictionary"))
}

fn list<'a>(v: &'a Value, path: &str) -> Result<&'a [Value], String> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("{path}: Input should be a valid list"))
}

/// The `type` tag of an object, which must be one of `tags`.
fn tag<'a>(o: &'a Map<String, Value>, path: &str, tags: &[&str]) -> Result<&'a str, String> {
    let Some(Value::String(kind)) = o.get("type") else {
        return Err(format!(
            "{path}: Unable to extract tag using discriminator 'type'"
        ));
    };
    if tags.contains(&kind.as_str()) {
        Ok(kind)
    } else {
        Err(format!(
            "{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {}",
            quoted(tags)
        ))
    }
}

/// The `source` of an image or document block.
fn check_source(o: &Map<String, Value>, path: &str, document: bool) -> Check {
    let source = object(
        o.get("source")
            .ok_or_else(|| format!("{path}.source: Field required"))?,
        &format!("{path}.source"),
    )?;
    let path = format!("{path}.source");
    let kinds: &[&str] = if document {
        &["base64", "text", "url", "content", "file"]
    } else {
        &["base64", "url", "file"]
    };
    let kind = tag(source, &path, kinds)?;
    let path = format!("{path}.{kind}");
    match kind {
        "base64" => {
            let media_type = string_field(source, &path, "media_type")?;
            if !document && !IMAGE_TYPES.contains(&media_type) {
                return Err(format!(
                    "{path}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                ));
            }
            string_field(source, &path, "data").map(drop)
        }
        "text" => string_field(source, &path, "data").map(drop),
        "url" => string_field(source, &path, "url").map(drop),
        "file" => string_field(source, &path, "file_id").map(drop),
        _ => Ok(()),
    }
}

fn check_blocks(blocks: &[Value], path: &str, tags: &[&str]) -> Check {
    for (j, block) in blocks.iter().enumerate() {
        check_block(block, &format!("{path}.{j}"), tags)?;
    }
    Ok(())
}

fn check_block(block: &Value, path: &str, tags: &[&str]) -> Check {
    let o = object(block, path)?;
    let kind = tag(o, path, tags)?;
    let path = format!("{path}.{kind}");
    match kind {
        "text" => string_field(o, &path, "text").map(drop),
        "image" => check_source(o, &path, false),
        "document" => check_source(o, &path, true),
        "tool_use" => {
            string_field(o, &path, "id")?;
            string_field(o, &path, "name")?;
            let input = o
                .get("input")
                .ok_or_else(|| format!("{path}.input: Field required"))?;
            object(input, &format!("{path}.input")).map(drop)
        }
        "tool_result" => {
            string_field(o, &path, "tool_use_id")?;
            match o.get("content") {
                None | Some(Value::String(_)) => Ok(()),
                Some(Value::Array(blocks)) => {
                    check_blocks(blocks, &format!("{path}.content"), TOOL_RESULT_TYPES)
                }
                Some(_) => Err(format!("{path}.content: Input should be a valid list")),
            }
        }
        "thinking" => {
            string_field(o, &path, "thinking")?;
            string_field(o, &path, "signature").map(drop)
        }
        "redacted_thinking" => string_field(o, &path, "data").map(drop),
        _ => Ok(()),
    }
}

/// What `2026-10-21` refuses in a message's content blocks.
fn check_latest(blocks: &[Value], path: &str, role: &str) -> Check {
    for (j, b) in blocks.iter().enumerate() {
        let kind = b.get("type").and_then(Value::as_str);
        if role == "assistant" && kind == Some("document") {
            return Err(format!(
                "{path}.{j}: document blocks are not accepted in assistant messages"
            ));
        }
        let cited = b
            .get("citations")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if role == "user" && kind == Some("text") && cited {
            return Err(format!(
                "{path}.{j}.text.citations: citations are not accepted in user messages"
            ));
        }
    }
    Ok(())
}

/// Validates a Messages request made with API `version` and reduces it to a [`Turn`].
fn parse<'a>(v: &'a Value, version: &str, beta: bool) -> Result<Request<'a>, String> {
    let o = v.as_object().ok_or("Input should be a valid dictionary")?;
    let latest = version == LATEST;
    let removed = |k: &str| latest && SAMPLING.contains(&k);
    let extra = o
        .keys()
        .find(|k| removed(k) || (!beta && !FIELDS.contains(&k.as_str())));
    if let Some(extra) = extra {
        return Err(format!("{extra}: Extra inputs are not permitted"));
    }
    let model = match o.get("model") {
        None => return Err("model: Field required".into()),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err("model: Input should be a valid string".into()),
    };
    let max_tokens = match o.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(n), _) if n >= 1 => n,
            (_, Some(_)) | (Some(_), _) => {
                return Err("max_tokens: Input should be greater than or equal to 1".into());
            }
            _ => return Err("max_tokens: Input should be a valid integer".into()),
        },
        Some(_) => return Err("max_tokens: Input should be a valid integer".into()),
    };
    let messages = list(
        o.get("messages").ok_or("messages: Field required")?,
        "messages",
    )?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }

    let mut turn = Turn::new();
    turn.max_tokens = Some(max_tokens);
    match o.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => turn.prompt_chars += s.chars().count(),
        Some(Value::Array(blocks)) => {
            check_blocks(blocks, "system", &["text"])?;
            turn.prompt_chars += content_text(o.get("system")).chars().count();
        }
        Some(_) => return Err("system: Input should be a valid string".into()),
    }
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages.{i}");
        let mo = object(m, &path)?;
        let role = match mo.get("role") {
            None => return Err(format!("{path}.role: Field required")),
            Some(Value::String(r)) if r == "user" || r == "assistant" => r.as_str(),
            Some(_) => {
                return Err(format!(
                    "{path}.role: Input should be 'user' or 'assistant'"
                ));
            }
        };
        let content = mo
            .get("content")
            .ok_or_else(|| format!("{path}.content: Field required"))?;
        let mut results = Vec::new();
        match content {
            Value::String(_) => {}
            Value::Array(blocks) => {
                check_blocks(blocks, &format!("{path}.content"), BLOCK_TYPES)?;
                if latest {
                    check_latest(blocks, &format!("{path}.content"), role)?;
                }
                results = blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    .map(|b| content_text(b.get("content")))
                    .collect();
            }
            _ => return Err(format!("{path}.content: Input should be a valid list")),
        }
        let text = content_text(Some(content));
        turn.prompt_chars += text.chars().count();
        turn.prompt_chars += results.iter().map(|r| r.chars().count()).sum::<usize>();
        turn.ending = match role {
            "assistant" => Ending::Other,
            _ if !results.is_empty() => Ending::ToolResult(results.join(" ").into()),
            _ => Ending::User,
        };
        if role == "user" {
            turn.last_user = Some(text);
        }
    }

    if let Some(stop) = o.get("stop_sequences").filter(|s| !s.is_null()) {
        for (i, s) in list(stop, "stop_sequences")?.iter().enumerate() {
            let s = s
                .as_str()
                .ok_or_else(|| format!("stop_sequences.{i}: Input should be a valid string"))?;
            turn.stop.push(s);
        }
    }
    let mut first_tool = None;
    if let Some(tools) = o.get("tools").filter(|t| !t.is_null()) {
        for (i, tool) in list(tools, "tools")?.iter().enumerate() {
            let path = format!("tools.{i}");
            let to = object(tool, &path)?;
            let custom = matches!(to.get("type"), None | Some(Value::Null))
                || to.get("type").and_then(Value::as_str) == Some("custom");
            let path = if custom {
                format!("{path}.custom")
            } else {
                path
            };
            let name = string_field(to, &path, "name")?;
            if custom {
                let schema = to
                    .get("input_schema")
                    .ok_or_else(|| format!("{path}.input_schema: Field required"))?;
                object(schema, &format!("{path}.input_schema"))?;
            }
            first_tool = first_tool.or(Some(name));
        }
    }
    let mut forced = None;
    let mut none = false;
    if let Some(choice) = o.get("tool_choice").filter(|c| !c.is_null()) {
        let co = object(choice, "tool_choice")?;
        match tag(co, "tool_choice", &["auto", "any", "tool", "none"])? {
            "tool" => forced = Some(string_field(co, "tool_choice.tool", "name")?),
            "none" => none = true,
            _ => {}
        }
    }
    turn.tool = first_tool
        .filter(|_| !none)
        .map(|first| forced.unwrap_or(first));
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".into()),
    };
    Ok(Request {
        model,
        stream,
        turn,
    })
}

#[derive(Clone, Copy, Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

/// The `usage` of a message (and of `message_start`).
#[derive(Clone, Copy, Serialize)]
struct MessageUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

impl MessageUsage {
    fn new(u: &Usage) -> Self {
        Self {
            input_tokens: u.prompt,
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cache_read,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: u.cache_write,
                ephemeral_1h_input_tokens: 0,
            },
            output_tokens: u.completion,
            service_tier: "standard",
        }
    }
}

/// The cumulative `usage` of `message_delta`.
#[derive(Serialize)]
struct DeltaUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: MessageUsage,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

/// The data of one stream event (`type` first, as Anthropic sends it).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: &'a Message<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: &'a Block<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta<'a>,
        usage: DeltaUsage,
    },
    MessageStop,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
        }
    }

    fn sse(&self) -> Bytes {
        sse_event(self.name(), &to_json(self))
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Cx<'_> {
    fn anthropic_error(&self, status: u16, kind: &str, message: &str) -> Resp {
        let body = error_body(kind, message, Some(&self.request_id));
        self.full(status, JSON, Bytes::from(body))
    }

    fn invalid_request(&self, message: &str) -> Resp {
        self.anthropic_error(400, "invalid_request_error", message)
    }

    /// Every request on an Anthropic path: key, version, then routing.
    pub(crate) fn anthropic(&self, parts: &Parts, body: &[u8], behaviour: &Behaviour) -> Resp {
        if let Some(key) = &self.shared.api_key {
            // `x-api-key` wins when both are sent.
            let bearer = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"\0"));
            match parts
                .headers
                .get("x-api-key")
                .map(|v| v.as_bytes())
                .or(bearer)
            {
                None => {
                    return self.anthropic_error(
                        401,
                        "authentication_error",
                        "x-api-key header is required",
                    );
                }
                Some(v) if v != key.as_bytes() => {
                    return self.anthropic_error(401, "authentication_error", "invalid x-api-key");
                }
                Some(_) => {}
            }
        }
        let version = match parts.headers.get("anthropic-version") {
            None => return self.invalid_request("anthropic-version: header is required"),
            Some(v) => match v.to_str() {
                Ok(v) if VERSIONS.contains(&v) => v,
                _ => {
                    let given = String::from_utf8_lossy(v.as_bytes());
                    return self.invalid_request(&format!(
                        "anthropic-version: {given:?} is not a valid version"
                    ));
                }
            },
        };
        if parts.method == Method::POST && parts.uri.path() == "/v1/messages" {
            let beta = parts.headers.contains_key("anthropic-beta");
            self.messages(body, behaviour, version, beta)
        } else {
            self.anthropic_error(404, "not_found_error", "Not Found")
        }
    }

    fn messages(&self, body: &[u8], behaviour: &Behaviour, version: &str, beta: bool) -> Resp {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return self.invalid_request(&format!("Request body is not valid JSON: {e}")),
        };
        let req = match parse(&v, version, beta) {
            Ok(r) => r,
            Err(message) => return self.invalid_request(&message),
        };
        let reply = self.shared.answer(req.turn);
        let id = anthropic_id("msg_");
        let tool_id = anthropic_id("toolu_");
        let input;
        let (block, stop_reason, stop_sequence) = match &reply.answer {
            Answer::Text { text, finish } => {
                let (reason, seq) = match finish {
                    Finish::Stop => ("end_turn", None),
                    Finish::StopSequence(s) => ("stop_sequence", Some(s.as_str())),
                    Finish::MaxTokens => ("max_tokens", None),
                };
                (Block::Text { text }, reason, seq)
            }
            Answer::Call { name, arguments } => {
                input = serde_json::from_str::<Value>(arguments).unwrap_or_default();
                let block = Block::ToolUse {
                    id: &tool_id,
                    name,
                    input: &input,
                };
                (block, "tool_use", None)
            }
        };
        let usage = MessageUsage::new(&reply.usage);

        if !req.stream {
            let message = Message {
                id: &id,
                kind: "message",
                role: "assistant",
                model: req.model,
                content: vec![block],
                stop_reason: Some(stop_reason),
                stop_sequence,
                usage,
            };
            return self.shaped_ok(JSON, Bytes::from(to_json(&message)), behaviour);
        }

        let start = Message {
            id: &id,
            kind: "message",
            role: "assistant",
            model: req.model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: MessageUsage {
                output_tokens: 1,
                ..usage
            },
        };
        let mut events = VecDeque::with_capacity(self.shared.chunks + 8);
        events.push_back(Event::MessageStart { message: &start }.sse());
        events.push_back(sse_event("ping", PING));
        let deltas: Vec<Delta<'_>> = match &reply.answer {
            Answer::Text { text, .. } => {
                events.push_back(
                    Event::ContentBlockStart {
                        index: 0,
                        content_block: &Block::Text { text: "" },
                    }
                    .sse(),
                );
                split_pieces(text, self.shared.chunks)
                    .into_iter()
                    .map(|text| Delta::TextDelta { text })
                    .collect()
            }
            Answer::Call { name, arguments } => {
                let empty = Value::Object(Map::new());
                events.push_back(
                    Event::ContentBlockStart {
                        index: 0,
                        content_block: &Block::ToolUse {
                            id: &tool_id,
                            name,
                            input: &empty,
                        },
                    }
                    .sse(),
                );
                // The API opens a tool's input with an empty fragment.
                std::iter::once("")
                    .chain(split_pieces(arguments, self.shared.chunks.max(2)))
                    .map(|partial_json| Delta::InputJsonDelta { partial_json })
                    .collect()
            }
        };
        for delta in deltas {
            events.push_back(Event::ContentBlockDelta { index: 0, delta }.sse());
        }
        events.push_back(Event::ContentBlockStop { index: 0 }.sse());
        events.push_back(
            Event::MessageDelta {
                delta: StopDelta {
                    stop_reason,
                    stop_sequence,
                },
                usage: DeltaUsage {
                    input_tokens: usage.input_tokens,
                    cache_creation_input_tokens: usage.cache_creation_input_tokens,
                    cache_read_input_tokens: usage.cache_read_input_tokens,
                    output_tokens: usage.output_tokens,
                },
            }
            .sse(),
        );
        events.push_back(Event::MessageStop.sse());
        self.stream_ok(SSE, events, behaviour, |_| {
            sse_event("error", &error_body("overloaded_error", "Overloaded", None))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse(&v, "2023-06-01", false).err().unwrap_or_default()
    }

    #[test]
    fn validation_names_the_problem() {
        let ok =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        assert!(parse(&ok, "2023-06-01", false).is_ok());
        let mut v = ok.clone();
        v["temperature"] = json!(1.0);
        assert!(parse(&v, "2023-06-01", false).is_ok());
        assert_eq!(
            parse(&v, LATEST, true).err().unwrap_or_default(),
            "temperature: Extra inputs are not permitted"
        );
        let mut v = ok.clone();
        v["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "x", "citations": [{"type": "char_location"}]}]}]);
        assert!(parse(&v, "2023-06-01", false).is_ok());
        assert!(parse(&v, LATEST, false).is_err());
        let mut v = ok.clone();
        v["max_tokens"] = json!(0);
        assert_eq!(
            err(v),
            "max_tokens: Input should be greater than or equal to 1"
        );
        let mut v = ok.clone();
        v["max_tokens"] = json!("5");
        assert_eq!(err(v), "max_tokens: Input should be a valid integer");
        let mut v = ok.clone();
        v["messages"] = json!([]);
        assert_eq!(err(v), "messages: at least one message is required");
        let mut v = ok.clone();
        v["messages"][0]["content"] = json!([{"type": "video"}]);
        assert!(err(v).starts_with("messages.0.content.0: Input tag 'video' found"));
        let mut v = ok.clone();
        v["messages"][0]["content"] = json!([{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}]);
        assert_eq!(
            err(v),
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        );
        let mut v = ok.clone();
        v["stop"] = json!(["x"]);
        assert_eq!(err(v.clone()), "stop: Extra inputs are not permitted");
        assert!(parse(&v, "2023-06-01", true).is_ok());
        let mut v = ok;
        v["tools"] = json!([{"name": "t"}]);
        assert_eq!(err(v), "tools.0.custom.input_schema: Field required");
    }

    #[test]
    fn tool_choice_picks_the_tool() {
        let v = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}]});
        let with = |choice: Value| {
            let mut v = v.clone();
            v["tool_choice"] = choice;
            parse(&v, LATEST, false).map(|r| r.turn.tool.map(str::to_owned))
        };
        assert_eq!(parse(&v, LATEST, false).map(|r| r.turn.tool), Ok(Some("a")));
        assert_eq!(
            with(json!({"type": "tool", "name": "b"})),
            Ok(Some("b".into()))
        );
        assert_eq!(with(json!({"type": "none"})), Ok(None));
        assert_eq!(with(json!({"type": "any"})), Ok(Some("a".into())));
    }
}
