//! OpenAI chat completions as the translating adapters see them: the request read in full
//! (an adapter has to rebuild it in another format) and the answer and stream chunks they
//! write back. The OpenAI fast path never uses this module: it passes bodies through.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// A chat completions request, read whole.
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// Every other parameter: each adapter takes the ones it honours and refuses the rest.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub(crate) enum Message {
    System {
        content: Content,
    },
    Developer {
        content: Content,
    },
    User {
        content: Content,
    },
    Assistant {
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        tool_calls: Option<Vec<ToolCall>>,
        #[serde(default)]
        refusal: Option<String>,
    },
    Tool {
        content: Content,
        tool_call_id: String,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio {},
    File {},
    Refusal { refusal: String },
}

#[derive(Deserialize)]
pub(crate) struct ImageUrl {
    pub url: String,
}

#[derive(Deserialize)]
pub(crate) struct ToolCall {
    pub id: String,
    pub function: FunctionCall,
}

#[derive(Deserialize)]
pub(crate) struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Deserialize)]
pub(crate) struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Deserialize)]
pub(crate) struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// `tool_choice` in OpenAI's terms.
pub(crate) enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

impl Content {
    /// No text and no parts: nothing a provider would take as a message.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(s) => s.is_empty(),
            Content::Parts(p) => p.is_empty(),
        }
    }

    /// The text of a content, for places that only take text (system prompts, tool
    /// results): the text parts joined; anything else is refused by naming `param`.
    pub fn text_only(&self, param: &str, provider: &str) -> Result<String, ApiError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Text { text } => {
                            if !out.is_empty() {
                                out.push('\n');
                            }
                            out.push_str(text);
                        }
                        _ => {
                            return Err(cannot(
                                provider,
                                param,
                                "only text content is accepted here",
                            ));
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// An image given as a data URL, split into media type and base64 data.
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

/// 400 for a request an adapter cannot honour, naming the parameter and the provider.
pub(crate) fn cannot(provider: &str, param: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "provider '{provider}' cannot honour `{param}`: {why}"
    ))
    .with_param(param)
}

/// 400 for an endpoint a translating adapter does not serve (the config refuses such
/// routes; this catches what reaches it anyway).
pub(crate) fn chat_only(provider: &str, kind: &str) -> ApiError {
    ApiError::bad_request(format!(
        "provider '{provider}' ({kind}) serves chat completions only"
    ))
    .with_param("model")
}

/// Parse a chat request body, naming what is wrong with it.
pub(crate) fn parse_request(body: &[u8], provider: &str) -> Result<ChatRequest, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // The field at fault by its path (`messages[2].role`), and the parser's words
        // without its byte position.
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let why = inner
            .rfind(" at line ")
            .map_or(inner.as_str(), |i| &inner[..i]);
        let param = if path == "." {
            "messages".to_string()
        } else {
            path
        };
        ApiError::bad_request(format!(
            "the request cannot be translated for provider '{provider}': {param}: {why}"
        ))
        .with_param(param)
    })
}

impl ChatRequest {
    /// Remove a parameter, if sent (`null` counts as not sent).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.rest.remove(key).filter(|v| !v.is_null())
    }

    pub fn take_f64(&mut self, key: &str, provider: &str) -> Result<Option<f64>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| cannot(provider, key, "expected a number")),
        }
    }

    pub fn take_u64(&mut self, key: &str, provider: &str) -> Result<Option<u64>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| cannot(provider, key, "expected a non-negative integer")),
        }
    }

    /// `stop` as a list of sequences.
    pub fn take_stop(&mut self, provider: &str) -> Result<Vec<String>, ApiError> {
        match self.take("stop") {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s]),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(cannot(provider, "stop", "expected strings")),
                })
                .collect(),
            Some(_) => Err(cannot(provider, "stop", "expected a string or an array")),
        }
    }

    /// `max_completion_tokens`, or the older `max_tokens`.
    pub fn take_max_tokens(&mut self, provider: &str) -> Result<Option<u64>, ApiError> {
        let newer = self.take_u64("max_completion_tokens", provider)?;
        let older = self.take_u64("max_tokens", provider)?;
        if newer == Some(0) || (newer.is_none() && older == Some(0)) {
            let param = if newer.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            return Err(cannot(provider, param, "it must be at least 1"));
        }
        Ok(newer.or(older))
    }

    pub fn take_tools(&mut self, provider: &str) -> Result<Vec<Tool>, ApiError> {
        let Some(v) = self.take("tools") else {
            return Ok(Vec::new());
        };
        let tools: Vec<Tool> = serde_json::from_value(v)
            .map_err(|e| cannot(provider, "tools", &format!("not a list of tools: {e}")))?;
        if let Some(t) = tools.iter().find(|t| t.kind != "function") {
            return Err(cannot(
                provider,
                "tools",
                &format!("tools of type '{}' (only 'function')", t.kind),
            ));
        }
        Ok(tools)
    }

    pub fn take_tool_choice(&mut self, provider: &str) -> Result<Option<ToolChoice>, ApiError> {
        let bad = || {
            cannot(
                provider,
                "tool_choice",
                "expected none, auto, required or a function",
            )
        };
        match self.take("tool_choice") {
            None => Ok(None),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Ok(Some(ToolChoice::Auto)),
                "none" => Ok(Some(ToolChoice::None)),
                "required" => Ok(Some(ToolChoice::Required)),
                _ => Err(bad()),
            },
            Some(Value::Object(o)) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(|n| Some(ToolChoice::Function(n.to_string())))
                .ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    /// `stream_options.include_usage`.
    pub fn take_include_usage(&mut self) -> bool {
        self.take("stream_options")
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false)
    }

    /// Refuse `key` unless it is absent or has the value that asks for nothing.
    pub fn refuse_unless(
        &mut self,
        key: &str,
        harmless: impl Fn(&Value) -> bool,
        provider: &str,
        why: &str,
    ) -> Result<(), ApiError> {
        match self.take(key) {
            Some(v) if !harmless(&v) => Err(cannot(provider, key, why)),
            _ => Ok(()),
        }
    }

    /// Parameters every adapter ignores (documented in docs/providers.md): they change
    /// nothing about the answer.
    pub fn drop_ignorable(&mut self) {
        for k in IGNORABLE {
            self.rest.remove(*k);
        }
    }

    /// Anything still unread is a parameter the adapter does not honour.
    pub fn refuse_rest(&self, provider: &str) -> Result<(), ApiError> {
        match self.rest.keys().next() {
            None => Ok(()),
            Some(k) => Err(cannot(provider, k, "the provider has no such parameter")),
        }
    }
}

/// Request parameters a translating adapter drops without an error: OpenAI-only
/// bookkeeping that does not change the answer.
pub(crate) const IGNORABLE: &[&str] = &["store", "metadata", "service_tier", "stream"];

/// Usage in OpenAI's terms, written into answers and the usage chunk.
#[derive(Serialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct OutUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct PromptDetails {
    pub cached_tokens: u64,
}

#[derive(Serialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct CompletionDetails {
    pub reasoning_tokens: u64,
}

impl OutUsage {
    pub fn new(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Self {
        OutUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: cached,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: reasoning,
            },
        }
    }
}

#[derive(Serialize)]
pub(crate) struct OutToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: OutFunction,
}

#[derive(Serialize)]
pub(crate) struct OutFunction {
    pub name: String,
    pub arguments: String,
}

/// One choice of a whole answer.
pub(crate) struct OutChoice {
    pub text: Option<String>,
    pub tool_calls: Vec<OutToolCall>,
    pub finish_reason: &'static str,
}

/// A `chat.completion` object: `model` before the content and `usage` last, so the
/// gateway's key scan finds them cheaply.
pub(crate) fn completion(
    id: &str,
    model: &str,
    choices: Vec<OutChoice>,
    usage: Option<OutUsage>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Completion<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: Vec<Choice>,
        /// `null` when the provider reported none: unknown, not zero.
        usage: Option<OutUsage>,
    }
    #[derive(Serialize)]
    struct Choice {
        index: usize,
        message: Msg,
        logprobs: Option<()>,
        finish_reason: &'static str,
    }
    #[derive(Serialize)]
    struct Msg {
        role: &'static str,
        content: Option<String>,
        refusal: Option<()>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<OutToolCall>,
    }
    let c = Completion {
        id,
        object: "chat.completion",
        created: unix_now(),
        model,
        choices: choices
            .into_iter()
            .enumerate()
            .map(|(index, c)| Choice {
                index,
                message: Msg {
                    role: "assistant",
                    content: c.text,
                    refusal: None,
                    tool_calls: c.tool_calls,
                },
                logprobs: None,
                finish_reason: c.finish_reason,
            })
            .collect(),
        usage,
    };
    serde_json::to_vec(&c).unwrap_or_default()
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one streamed chunk's delta carries.
pub(crate) enum Delta<'a> {
    Role,
    Text(&'a str),
    /// The start of a tool call: its index among the calls, id and name.
    ToolStart {
        index: usize,
        id: &'a str,
        name: &'a str,
    },
    /// More of a tool call's arguments.
    ToolArgs {
        index: usize,
        arguments: &'a str,
    },
    /// A whole tool call in one chunk.
    ToolWhole {
        index: usize,
        id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    Finish(&'static str),
}

/// Writes `chat.completion.chunk` events for one answer.
pub(crate) struct ChunkWriter {
    /// `{"id":...,"object":"chat.completion.chunk","created":N,"model":...,"choices":`
    prefix: String,
}

impl ChunkWriter {
    pub fn new(id: &str, model: &str) -> Self {
        let mut prefix = String::with_capacity(96 + id.len() + model.len());
        prefix.push_str("data: {\"id\":");
        push_json(&mut prefix, id);
        prefix.push_str(",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.push_str(&unix_now().to_string());
        prefix.push_str(",\"model\":");
        push_json(&mut prefix, model);
        prefix.push_str(",\"choices\":");
        ChunkWriter { prefix }
    }

    /// One event with one choice's delta.
    pub fn delta(&self, out: &mut Vec<u8>, choice: usize, d: Delta<'_>) {
        let mut s = String::with_capacity(self.prefix.len() + 96);
        s.push_str(&self.prefix);
        s.push_str("[{\"index\":");
        let _ = write!(s, "{choice}");
        s.push_str(",\"delta\":");
        let mut finish = "null";
        match d {
            Delta::Role => s.push_str("{\"role\":\"assistant\",\"content\":\"\"}"),
            Delta::Text(t) => {
                s.push_str("{\"content\":");
                push_json(&mut s, t);
                s.push('}');
            }
            Delta::ToolStart { index, id, name } => {
                tool_delta(&mut s, index, Some((id, name)), "");
            }
            Delta::ToolArgs { index, arguments } => {
                tool_delta(&mut s, index, None, arguments);
            }
            Delta::ToolWhole {
                index,
                id,
                name,
                arguments,
            } => tool_delta(&mut s, index, Some((id, name)), arguments),
            Delta::Finish(reason) => {
                s.push_str("{}");
                finish = reason;
            }
        }
        s.push_str(",\"logprobs\":null,\"finish_reason\":");
        if finish == "null" {
            s.push_str("null");
        } else {
            push_json(&mut s, finish);
        }
        s.push_str("}]}\n\n");
        out.extend_from_slice(s.as_bytes());
    }

    /// The `include_usage` chunk: no choices, the usage.
    pub fn usage(&self, out: &mut Vec<u8>, usage: &OutUsage) {
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(b"[],\"usage\":");
        out.extend_from_slice(&serde_json::to_vec(usage).unwrap_or_default());
        out.extend_from_slice(b"}\n\n");
    }
}

fn tool_delta(s: &mut String, index: usize, head: Option<(&str, &str)>, arguments: &str) {
    s.push_str("{\"tool_calls\":[{\"index\":");
    let _ = write!(s, "{index}");
    if let Some((id, name)) = head {
        s.push_str(",\"id\":");
        push_json(s, id);
        s.push_str(",\"type\":\"function\",\"function\":{\"name\":");
        push_json(s, name);
        s.push_str(",\"arguments\":");
    } else {
        s.push_str(",\"function\":{\"arguments\":");
    }
    push_json(s, arguments);
    s.push_str("}}]}");
}

/// `[DONE]`, the end of an OpenAI stream.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// An in-band error event in OpenAI's shape, with one of the gateway's codes (the
/// gateway classifies a first event that is an error by this code).
pub(crate) fn error_event(out: &mut Vec<u8>, code: crate::ErrorCode, message: &str) {
    let e = ApiError::new(code, message);
    out.extend_from_slice(&e.sse_event());
}

pub(crate) fn push_json(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// An assistant turn as the translators rebuild it: its text pieces (content, refusal) and
/// its tool calls as (id, name, arguments object); `param` is the message's path.
pub(crate) struct AssistantTurn {
    pub texts: Vec<String>,
    pub calls: Vec<(String, String, Value)>,
}

pub(crate) fn assistant_turn(
    content: Option<Content>,
    tool_calls: Option<Vec<ToolCall>>,
    refusal: Option<String>,
    param: &str,
    provider: &str,
) -> Result<AssistantTurn, ApiError> {
    let mut texts = Vec::new();
    if let Some(c) = content {
        let text = c.text_only(&format!("{param}.content"), provider)?;
        if !text.is_empty() {
            texts.push(text);
        }
    }
    if let Some(text) = refusal.filter(|r| !r.is_empty()) {
        texts.push(text);
    }
    let mut calls = Vec::new();
    for (j, call) in tool_calls.unwrap_or_default().into_iter().enumerate() {
        let args = arguments_object(
            &call.function.arguments,
            &format!("{param}.tool_calls[{j}].function.arguments"),
            provider,
        )?;
        calls.push((call.id, call.function.name, args));
    }
    Ok(AssistantTurn { texts, calls })
}

/// Tool-call arguments (a JSON string in OpenAI's format) as the object other providers
/// want; `param` names the message field when they are not a JSON object.
pub(crate) fn arguments_object(args: &str, param: &str, provider: &str) -> Result<Value, ApiError> {
    if args.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(cannot(
            provider,
            param,
            "tool call arguments must be a JSON object",
        )),
    }
}
