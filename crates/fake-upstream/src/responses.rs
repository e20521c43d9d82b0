//! `POST /v1/responses` (the Responses API), plain and streamed.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Behaviour;
use crate::handler::{Cx, EVENT_STREAM, Resp, content_text, split_pieces, sse_event};
use crate::reply::words;
use crate::util::{random_u64, unix_now};

#[derive(Deserialize)]
struct ResponsesRequest {
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<Value>,
    stream: Option<bool>,
    max_output_tokens: Option<Value>,
    max_tool_calls: Option<Value>,
    metadata: Option<Value>,
    parallel_tool_calls: Option<Value>,
    previous_response_id: Option<Value>,
    prompt_cache_key: Option<Value>,
    reasoning: Option<Value>,
    safety_identifier: Option<Value>,
    store: Option<Value>,
    temperature: Option<Value>,
    text: Option<Value>,
    tool_choice: Option<Value>,
    tools: Option<Value>,
    top_logprobs: Option<Value>,
    top_p: Option<Value>,
    truncation: Option<Value>,
    user: Option<Value>,
}

/// The `response` object, in OpenAI's field order.
#[derive(Clone, Serialize)]
struct ResponseObject {
    id: String,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    completed_at: Option<u64>,
    error: Value,
    incomplete_details: Value,
    instructions: Value,
    max_output_tokens: Value,
    max_tool_calls: Value,
    model: String,
    output: Vec<Message>,
    parallel_tool_calls: Value,
    previous_response_id: Value,
    prompt_cache_key: Value,
    reasoning: Value,
    safety_identifier: Value,
    service_tier: &'static str,
    store: Value,
    temperature: Value,
    text: Value,
    tool_choice: Value,
    tools: Value,
    top_logprobs: Value,
    top_p: Value,
    truncation: Value,
    usage: Option<Usage>,
    user: Value,
    metadata: Value,
}

#[derive(Clone, Serialize)]
struct Message {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    content: Vec<OutputText>,
    role: &'static str,
}

#[derive(Clone, Serialize)]
struct OutputText {
    #[serde(rename = "type")]
    kind: &'static str,
    annotations: [Value; 0],
    logprobs: [Value; 0],
    text: String,
}

impl OutputText {
    fn new(text: &str) -> Self {
        Self {
            kind: "output_text",
            annotations: [],
            logprobs: [],
            text: text.to_owned(),
        }
    }
}

#[derive(Clone, Copy, Serialize)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Clone, Copy, Serialize)]
struct InputDetails {
    cached_tokens: u64,
    /// Newer SDKs require it.
    cache_write_tokens: u64,
}

#[derive(Clone, Copy, Serialize)]
struct OutputDetails {
    reasoning_tokens: u64,
}

/// One SSE event: `type` and `sequence_number` first, then the event's own fields.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: usize,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct WithResponse<'a> {
    response: &'a ResponseObject,
}

#[derive(Serialize)]
struct WithItem<'a> {
    output_index: usize,
    item: &'a Message,
}

#[derive(Serialize)]
struct WithPart<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: &'a OutputText,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    logprobs: [Value; 0],
}

#[derive(Serialize)]
struct TextDone<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
    logprobs: [Value; 0],
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    param: Value,
}

/// `prefix` followed by 48 lowercase hex digits, like OpenAI's response and item ids.
fn hex_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:016x}{:016x}",
        random_u64(),
        random_u64(),
        random_u64()
    )
}

/// Every text of `input` (for token counts) and the last user message's text.
/// `None` if `input` is neither a string nor a list.
fn input_texts(input: Option<&Value>) -> Option<(usize, Option<Cow<'_, str>>)> {
    match input {
        None => Some((0, None)),
        Some(Value::String(s)) => Some((s.chars().count(), Some(Cow::Borrowed(s)))),
        Some(Value::Array(items)) => {
            let mut chars = 0;
            let mut last_user = None;
            for item in items {
                let text = match item.get("content") {
                    Some(c) => content_text(Some(c)),
                    // e.g. function_call_output items
                    None => content_text(item.get("output")),
                };
                chars += text.chars().count();
                if item.get("role").and_then(Value::as_str) == Some("user") {
                    last_user = Some(text);
                }
            }
            Some((chars, last_user))
        }
        Some(_) => None,
    }
}

fn event<T: Serialize>(kind: &str, seq: &mut usize, body: T) -> Bytes {
    let ev = Event {
        kind,
        sequence_number: *seq,
        body,
    };
    *seq += 1;
    sse_event(kind, &serde_json::to_string(&ev).unwrap_or_default())
}

impl Cx<'_> {
    pub(crate) fn responses(&self, body: &[u8], behaviour: &Behaviour) -> Resp {
        let req: ResponsesRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return self.invalid_json(&e),
        };
        let Some(model) = req.model else {
            return self.missing("model");
        };
        let Some((input_chars, last_user)) = input_texts(req.input.as_ref()) else {
            return self.bad_request(
                "Invalid type for 'input': expected one of a string or array of input items.",
                Some("input"),
                Some("invalid_type"),
            );
        };
        let instruction_chars = match &req.instructions {
            Some(Value::String(s)) => s.chars().count(),
            _ => 0,
        };
        let reply = self.shared.reply_text(last_user.as_deref());
        // Cached tokens are part of `input_tokens`.
        let cached = self.shared.cache_read;
        let input_tokens = (input_chars + instruction_chars).div_ceil(4).max(1) as u64 + cached;
        let output_tokens = words(&reply);
        let usage = Usage {
            input_tokens,
            input_tokens_details: InputDetails {
                cached_tokens: cached,
                cache_write_tokens: self.shared.cache_write,
            },
            output_tokens,
            output_tokens_details: OutputDetails {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens + output_tokens,
        };

        let or = |v: Option<Value>, default: Value| v.unwrap_or(default);
        let created_at = unix_now();
        let msg_id = hex_id("msg_");
        let message = Message {
            id: msg_id.clone(),
            kind: "message",
            status: "completed",
            content: vec![OutputText::new(&reply)],
            role: "assistant",
        };
        let done = ResponseObject {
            id: hex_id("resp_"),
            object: "response",
            created_at,
            status: "completed",
            background: false,
            completed_at: Some(created_at),
            error: Value::Null,
            incomplete_details: Value::Null,
            instructions: or(req.instructions, Value::Null),
            max_output_tokens: or(req.max_output_tokens, Value::Null),
            max_tool_calls: or(req.max_tool_calls, Value::Null),
            model,
            output: vec![message.clone()],
            parallel_tool_calls: or(req.parallel_tool_calls, Value::Bool(true)),
            previous_response_id: or(req.previous_response_id, Value::Null),
            prompt_cache_key: or(req.prompt_cache_key, Value::Null),
            reasoning: or(req.reasoning, json!({"effort": null, "summary": null})),
            safety_identifier: or(req.safety_identifier, Value::Null),
            service_tier: "default",
            store: or(req.store, Value::Bool(true)),
            temperature: or(req.temperature, json!(1.0)),
            text: or(
                req.text,
                json!({"format": {"type": "text"}, "verbosity": "medium"}),
            ),
            tool_choice: or(req.tool_choice, json!("auto")),
            tools: or(req.tools, json!([])),
            top_logprobs: or(req.top_logprobs, json!(0)),
            top_p: or(req.top_p, json!(1.0)),
            truncation: or(req.truncation, json!("disabled")),
            usage: Some(usage),
            user: or(req.user, Value::Null),
            metadata: or(req.metadata, json!({})),
        };

        if !req.stream.unwrap_or(false) {
            return self.json_ok(serde_json::to_string(&done).unwrap_or_default(), behaviour);
        }

        let mut pending = done.clone();
        pending.status = "in_progress";
        pending.completed_at = None;
        pending.output = Vec::new();
        pending.usage = None;
        let mut item = message.clone();
        item.status = "in_progress";
        item.content = Vec::new();
        let empty_part = OutputText::new("");
        let part = OutputText::new(&reply);

        let pieces = split_pieces(&reply, self.shared.chunks);
        let mut seq = 0;
        let mut events = VecDeque::with_capacity(pieces.len() + 8);
        events.push_back(event(
            "response.created",
            &mut seq,
            WithResponse { response: &pending },
        ));
        events.push_back(event(
            "response.in_progress",
            &mut seq,
            WithResponse { response: &pending },
        ));
        events.push_back(event(
            "response.output_item.added",
            &mut seq,
            WithItem {
                output_index: 0,
                item: &item,
            },
        ));
        events.push_back(event(
            "response.content_part.added",
            &mut seq,
            WithPart {
                item_id: &msg_id,
                output_index: 0,
                content_index: 0,
                part: &empty_part,
            },
        ));
        for piece in pieces {
            events.push_back(event(
                "response.output_text.delta",
                &mut seq,
                TextDelta {
                    item_id: &msg_id,
                    output_index: 0,
                    content_index: 0,
                    delta: piece,
                    logprobs: [],
                },
            ));
        }
        events.push_back(event(
            "response.output_text.done",
            &mut seq,
            TextDone {
                item_id: &msg_id,
                output_index: 0,
                content_index: 0,
                text: &reply,
                logprobs: [],
            },
        ));
        events.push_back(event(
            "response.content_part.done",
            &mut seq,
            WithPart {
                item_id: &msg_id,
                output_index: 0,
                content_index: 0,
                part: &part,
            },
        ));
        events.push_back(event(
            "response.output_item.done",
            &mut seq,
            WithItem {
                output_index: 0,
                item: &message,
            },
        ));
        events.push_back(event(
            "response.completed",
            &mut seq,
            WithResponse { response: &done },
        ));

        self.stream_ok(EVENT_STREAM, events, behaviour, |kept| {
            let mut seq = kept;
            event(
                "error",
                &mut seq,
                ErrorBody {
                    code: "server_error",
                    message: "The server had an error while processing your request. Sorry about that!",
                    param: Value::Null,
                },
            )
        })
    }
}
