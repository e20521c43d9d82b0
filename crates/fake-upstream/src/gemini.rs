//! The Gemini API under `/v1beta`: `POST models/{model}:generateContent`,
//! `:streamGenerateContent` (SSE `data:` events separated by `\r\n\r\n` with
//! `?alt=sse`, else a streamed JSON array), `:countTokens`, and
//! `GET models[/{id}]`.
//!
//! The key is taken from `x-goog-api-key` or the `key` query parameter.
//! Request fields may be spelled `camelCase` or `snake_case`, as the API
//! accepts both; an unknown top-level field is refused. Errors are
//! `{"error":{"code","message","status"}}` with google.rpc status names.
//!
//! A last user text containing `BLOCK_PROMPT` is answered with
//! `promptFeedback.blockReason: SAFETY` and no candidate; one containing
//! `BLOCK_ANSWER` with part of the reply and `finishReason: SAFETY`.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use http::Method;
use http::request::Parts;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Behaviour;
use crate::body::End;
use crate::handler::{Cx, EVENT_STREAM, Resp, shape_stream, split_pieces};
use crate::reply::{Answer, Ending, Finish, Turn, Usage, words};
use crate::util::gemini_response_id;

pub(crate) const JSON: &str = "application/json; charset=UTF-8";

/// Top-level `GenerateContentRequest` fields, in both spellings.
const FIELDS: &[&str] = &[
    "model",
    "contents",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
    "serviceTier",
    "service_tier",
    "store",
];

/// The ways a part can carry data (one is required).
const PART_DATA: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];

const UNREGISTERED: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const KEY_INVALID: &str = "API key not valid. Please pass a valid API key.";

/// `google.rpc` status and default message for an HTTP status.
fn rpc_status(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401 => (
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        404 => ("NOT_FOUND", "Requested entity was not found."),
        409 => ("ABORTED", "The operation was aborted."),
        429 => (
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ),
        499 => ("CANCELLED", "The operation was cancelled."),
        501 => ("UNIMPLEMENTED", "Operation is not implemented."),
        502 | 503 => (
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
        504 => (
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        s if (400..500).contains(&s) => ("FAILED_PRECONDITION", "Precondition check failed."),
        _ => (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        ),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Value>,
}

#[derive(Serialize)]
struct ErrorDoc<'a> {
    error: ErrorBody<'a>,
}

/// `{"error":{"code","message","status"[,"details"]}}`, indented as Google
/// sends it unless `compact`.
fn error_json(code: u16, message: &str, details: Vec<Value>, compact: bool) -> String {
    let (status, _) = rpc_status(code);
    let doc = ErrorDoc {
        error: ErrorBody {
            code,
            message,
            status,
            details,
        },
    };
    to_json(&doc, compact)
}

fn to_json<T: Serialize>(v: &T, compact: bool) -> String {
    if compact {
        serde_json::to_string(v)
    } else {
        serde_json::to_string_pretty(v)
    }
    .unwrap_or_default()
}

/// The error body Google sends with `status` (for `Behaviour::Status`); a 429
/// with a `retry_after` in seconds also carries a `RetryInfo` detail.
pub(crate) fn status_error(status: u16, retry_after: Option<&str>) -> String {
    let (_, message) = rpc_status(status);
    let mut details = Vec::new();
    if let Some(secs) = retry_after.and_then(|r| r.parse::<u64>().ok()) {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{secs}s"),
        }));
    }
    error_json(status, message, details, false)
}

/// A field in either spelling (`systemInstruction` or `system_instruction`).
fn field<'a>(v: &'a Value, camel: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| {
        let mut snake = String::with_capacity(camel.len() + 4);
        for c in camel.chars() {
            if c.is_ascii_uppercase() {
                snake.push('_');
                snake.push(c.to_ascii_lowercase());
            } else {
                snake.push(c);
            }
        }
        v.get(snake.as_str())
    })
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The text of a function response: its only string field (e.g.
/// `{"result": "sunny"}` gives `sunny`), else the whole `response` as JSON.
fn response_text(fr: &Value) -> Cow<'_, str> {
    match field(fr, "response") {
        Some(Value::Object(m)) if m.len() == 1 => match m.values().next() {
            Some(Value::String(s)) => Cow::Borrowed(s),
            _ => Cow::Owned(Value::Object(m.clone()).to_string()),
        },
        Some(r) => Cow::Owned(r.to_string()),
        None => Cow::Borrowed(""),
    }
}

/// The text parts of a `Content`, joined by spaces.
fn parts_text(content: &Value) -> Cow<'_, str> {
    let texts: Vec<&str> = field(content, "parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    match texts.as_slice() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(texts.join(" ")),
    }
}

fn violation(path: &str, message: &str) -> String {
    format!("* GenerateContentRequest.{path}: {message}\n")
}

/// Validates a `GenerateContentRequest` and reduces it to a [`Turn`].
fn parse(v: &Value) -> Result<Turn<'_>, String> {
    let o = v
        .as_object()
        .ok_or("Invalid JSON payload received. Expected an object.")?;
    if let Some(extra) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{extra}\": Cannot find field."
        ));
    }
    let contents = match field(v, "contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        None | Some(Value::Array(_)) => {
            return Err(violation("contents", "contents is not specified"));
        }
        Some(_) => {
            return Err("Invalid JSON payload received. Unknown name \"contents\": Proto field is not repeating, cannot start list.".into());
        }
    };

    let mut turn = Turn::new();
    if let Some(system) = field(v, "systemInstruction") {
        turn.prompt_chars += parts_text(system).chars().count();
    }
    for (i, content) in contents.iter().enumerate() {
        let user = match content.get("role") {
            None | Some(Value::Null) => true,
            Some(Value::String(r)) if r == "user" => true,
            Some(Value::String(r)) if r == "model" => false,
            Some(_) => return Err("Please use a valid role: user, model.".into()),
        };
        let parts = match field(content, "parts") {
            Some(Value::Array(p)) if !p.is_empty() => p,
            _ => {
                return Err(violation(
                    &format!("contents[{i}].parts"),
                    "contents.parts must not be empty.",
                ));
            }
        };
        let mut results = Vec::new();
        for (j, part) in parts.iter().enumerate() {
            if !PART_DATA.iter().any(|k| field(part, k).is_some()) {
                return Err(violation(
                    &format!("contents[{i}].parts[{j}].data"),
                    "required oneof field 'data' must have one initialized field",
                ));
            }
            let call = field(part, "functionCall").or(field(part, "functionResponse"));
            if call.is_some_and(|c| c.get("name").and_then(Value::as_str).is_none()) {
                return Err(violation(
                    &format!("contents[{i}].parts[{j}].name"),
                    "Name cannot be empty.",
                ));
            }
            if let Some(response) = field(part, "functionResponse") {
                results.push(response_text(response));
            }
        }
        let text = parts_text(content);
        turn.prompt_chars += text.chars().count();
        turn.prompt_chars += results.iter().map(|r| r.chars().count()).sum::<usize>();
        turn.ending = match user {
            false => Ending::Other,
            true if !results.is_empty() => Ending::ToolResult(results.join(" ").into()),
            true => Ending::User,
        };
        if user {
            turn.last_user = Some(text);
        }
    }

    if let Some(config) = field(v, "generationConfig") {
        if let Some(stop) = field(config, "stopSequences") {
            let stop = stop
                .as_array()
                .ok_or("Invalid JSON payload received. Unknown name \"stopSequences\": Proto field is not repeating, cannot start list.")?;
            turn.stop = stop.iter().filter_map(Value::as_str).collect();
        }
        if let Some(max) = field(config, "maxOutputTokens") {
            turn.max_tokens = Some(
                max.as_u64()
                    .ok_or("Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32)")?,
            );
        }
    }
    let mut first = None;
    for (i, tool) in field(v, "tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let declarations = field(tool, "functionDeclarations").and_then(Value::as_array);
        for (j, d) in declarations.into_iter().flatten().enumerate() {
            let Some(name) = d
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return Err(violation(
                    &format!("tools[{i}].function_declarations[{j}].name"),
                    "Name cannot be empty.",
                ));
            };
            first = first.or(Some(name));
        }
    }
    let calling = field(v, "toolConfig").and_then(|c| field(c, "functionCallingConfig"));
    let mode = calling
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let allowed = calling
        .and_then(|c| field(c, "allowedFunctionNames"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    turn.tool = first
        .filter(|_| mode != "NONE")
        .map(|f| allowed.unwrap_or(f));
    Ok(turn)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    modality: &'static str,
    token_count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates_token_count: Option<u64>,
    total_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_content_token_count: Option<u64>,
    prompt_tokens_details: [ModalityCount; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_tokens_details: Option<[ModalityCount; 1]>,
}

impl UsageMetadata {
    /// Cached tokens are part of `promptTokenCount`. Without `completion`
    /// (mid-stream, or a blocked prompt) there is no `candidatesTokenCount`.
    fn new(u: &Usage, completion: Option<u64>) -> Self {
        let prompt = u.prompt + u.cache_read;
        let completion = completion.filter(|c| *c > 0);
        let cached = Some(u.cache_read).filter(|c| *c > 0);
        Self {
            prompt_token_count: prompt,
            candidates_token_count: completion,
            total_token_count: prompt + completion.unwrap_or(0),
            cached_content_token_count: cached,
            prompt_tokens_details: [ModalityCount {
                modality: "TEXT",
                token_count: prompt,
            }],
            cache_tokens_details: cached.map(|c| {
                [ModalityCount {
                    modality: "TEXT",
                    token_count: c,
                }]
            }),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCall<'a> {
    name: &'a str,
    args: &'a Value,
}

#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
enum Part<'a> {
    Text { text: &'a str },
    FunctionCall { function_call: FunctionCall<'a> },
}

#[derive(Serialize)]
struct Content<'a> {
    parts: Vec<Part<'a>>,
    role: &'static str,
}

#[derive(Serialize)]
struct SafetyRating {
    category: &'static str,
    probability: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    blocked: bool,
}

/// Ratings with dangerous content rated `HIGH` and blocked.
fn blocked_ratings() -> Vec<SafetyRating> {
    let rating = |category, probability, blocked| SafetyRating {
        category,
        probability,
        blocked,
    };
    vec![
        rating("HARM_CATEGORY_SEXUALLY_EXPLICIT", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_HATE_SPEECH", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_HARASSMENT", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_DANGEROUS_CONTENT", "HIGH", true),
    ]
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_ratings: Option<Vec<SafetyRating>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: &'static str,
    safety_ratings: Vec<SafetyRating>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<[Candidate<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: UsageMetadata,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfo<'a> {
    name: String,
    version: &'static str,
    display_name: &'a str,
    description: String,
    input_token_limit: u64,
    output_token_limit: u64,
    supported_generation_methods: [&'static str; 2],
}

impl<'a> ModelInfo<'a> {
    fn new(id: &'a str) -> Self {
        Self {
            name: format!("models/{}", id.trim_start_matches("models/")),
            version: "001",
            display_name: id,
            description: format!("Fake model {id}"),
            input_token_limit: 1_048_576,
            output_token_limit: 65_536,
            supported_generation_methods: ["generateContent", "countTokens"],
        }
    }
}

/// The one candidate: the model's `parts` (if any) and the finish reason
/// (none mid-stream); a `SAFETY` finish carries the safety ratings.
fn candidate<'a>(parts: Option<Vec<Part<'a>>>, finish: Option<&'static str>) -> Candidate<'a> {
    Candidate {
        content: parts.map(|parts| Content {
            parts,
            role: "model",
        }),
        finish_reason: finish,
        index: 0,
        safety_ratings: (finish == Some("SAFETY")).then(blocked_ratings),
    }
}

/// What a generateContent request gets, before it is framed.
enum Outcome<'a> {
    /// `BLOCK_PROMPT`: prompt feedback, no candidate.
    PromptBlocked,
    /// Text (whole, or cut by `BLOCK_ANSWER`, a stop sequence or max tokens).
    Text(Cow<'a, str>, &'static str),
    Call(&'a str, Value),
}

impl Cx<'_> {
    fn google_error(&self, code: u16, message: &str, details: Vec<Value>) -> Resp {
        let body = error_json(code, message, details, false);
        self.full(code, JSON, Bytes::from(body))
    }

    fn invalid_argument(&self, message: &str) -> Resp {
        self.google_error(400, message, Vec::new())
    }

    /// Every request on a Gemini path: key, then routing.
    pub(crate) fn gemini(&self, parts: &Parts, body: &[u8], behaviour: &Behaviour) -> Resp {
        let query = parts.uri.query();
        if let Some(key) = &self.shared.api_key {
            let given = match parts.headers.get("x-goog-api-key") {
                Some(v) => Some(String::from_utf8_lossy(v.as_bytes())),
                None => query_param(query, "key").map(Cow::Borrowed),
            };
            match given {
                None => return self.google_error(403, UNREGISTERED, Vec::new()),
                Some(k) if k != key.as_str() => {
                    let details = vec![
                        json!({
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }),
                        json!({
                            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                            "locale": "en-US",
                            "message": KEY_INVALID,
                        }),
                    ];
                    return self.google_error(400, KEY_INVALID, details);
                }
                Some(_) => {}
            }
        }
        let path = parts.uri.path();
        let rest = path.strip_prefix("/v1beta/").unwrap_or_default();
        let sse = query_param(query, "alt") == Some("sse");
        match (&parts.method, rest) {
            (&Method::GET, "models") => self.gemini_models(behaviour),
            (&Method::GET, r) if r.starts_with("models/") && !r.contains(':') => {
                self.gemini_model(&r["models/".len()..], behaviour)
            }
            (&Method::POST, r) if r.starts_with("models/") => {
                match r["models/".len()..].rsplit_once(':') {
                    Some((model, "generateContent")) => self.generate(model, body, None, behaviour),
                    Some((model, "streamGenerateContent")) => {
                        self.generate(model, body, Some(sse), behaviour)
                    }
                    Some((_, "countTokens")) => self.count_tokens(body, behaviour),
                    _ => self.google_error(404, "Method not found.", Vec::new()),
                }
            }
            _ => self.google_error(404, "Method not found.", Vec::new()),
        }
    }

    fn gemini_models(&self, behaviour: &Behaviour) -> Resp {
        let models: Vec<ModelInfo<'_>> = self
            .shared
            .models
            .iter()
            .map(|m| ModelInfo::new(m))
            .collect();
        let body = serde_json::to_string_pretty(&json!({ "models": models })).unwrap_or_default();
        self.json_ok(body, behaviour)
    }

    fn gemini_model(&self, id: &str, behaviour: &Behaviour) -> Resp {
        match self.shared.models.iter().find(|m| m.as_str() == id) {
            Some(m) => {
                let body = serde_json::to_string_pretty(&ModelInfo::new(m)).unwrap_or_default();
                self.json_ok(body, behaviour)
            }
            None => self.google_error(
                404,
                &format!("models/{id} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."),
                Vec::new(),
            ),
        }
    }

    fn count_tokens(&self, body: &[u8], behaviour: &Behaviour) -> Resp {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return self.invalid_argument(&format!("Invalid JSON payload received. {e}"));
            }
        };
        let request = field(&v, "generateContentRequest").unwrap_or(&v);
        let turn = match parse(request) {
            Ok(t) => t,
            Err(message) => return self.invalid_argument(&message),
        };
        let tokens = self.shared.answer(turn).usage.prompt;
        let body = serde_json::to_string_pretty(&json!({
            "totalTokens": tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        }))
        .unwrap_or_default();
        self.json_ok(body, behaviour)
    }

    /// `generateContent` (`stream: None`) or `streamGenerateContent`
    /// (`Some(true)` with `alt=sse`, `Some(false)` for a JSON array).
    fn generate(
        &self,
        model: &str,
        body: &[u8],
        stream: Option<bool>,
        behaviour: &Behaviour,
    ) -> Resp {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return self.invalid_argument(&format!("Invalid JSON payload received. {e}"));
            }
        };
        let turn = match parse(&v) {
            Ok(t) => t,
            Err(message) => return self.invalid_argument(&message),
        };
        let last_user = turn.last_user.clone().unwrap_or_default();
        let prompt_blocked = last_user.contains("BLOCK_PROMPT");
        let answer_blocked = !prompt_blocked && last_user.contains("BLOCK_ANSWER");
        let reply = self.shared.answer(turn);
        let mut usage = reply.usage;
        let outcome = if prompt_blocked {
            usage.completion = 0;
            Outcome::PromptBlocked
        } else if answer_blocked {
            // Some text made it out before the answer was stopped.
            let text = self.shared.reply_text(Some(&last_user));
            let half = text.split_whitespace().count().div_ceil(2);
            let partial: Vec<&str> = text.split_whitespace().take(half).collect();
            let partial = partial.join(" ");
            usage.completion = words(&partial);
            Outcome::Text(Cow::Owned(partial), "SAFETY")
        } else {
            match reply.answer {
                Answer::Text { text, finish } => {
                    let reason = match finish {
                        Finish::MaxTokens => "MAX_TOKENS",
                        Finish::Stop | Finish::StopSequence(_) => "STOP",
                    };
                    Outcome::Text(text, reason)
                }
                Answer::Call { name, arguments } => {
                    Outcome::Call(name, serde_json::from_str(&arguments).unwrap_or_default())
                }
            }
        };

        let model = model.trim_start_matches("models/");
        let response_id = gemini_response_id();
        let response = |candidate: Option<Candidate<'_>>, completion: Option<u64>| {
            let blocked = matches!(outcome, Outcome::PromptBlocked);
            let r = Response {
                candidates: candidate.map(|c| [c]),
                prompt_feedback: blocked.then(|| PromptFeedback {
                    block_reason: "SAFETY",
                    safety_ratings: blocked_ratings(),
                }),
                usage_metadata: UsageMetadata::new(&usage, completion),
                model_version: model,
                response_id: &response_id,
            };
            to_json(&r, stream == Some(true))
        };
        let full = Some(usage.completion);

        // Each element is one GenerateContentResponse.
        let mut elements: VecDeque<String> = VecDeque::new();
        match &outcome {
            Outcome::PromptBlocked => elements.push_back(response(None, None)),
            Outcome::Call(name, args) => {
                let call = Part::FunctionCall {
                    function_call: FunctionCall { name, args },
                };
                elements.push_back(response(
                    Some(candidate(Some(vec![call]), Some("STOP"))),
                    full,
                ));
            }
            Outcome::Text(text, finish) if stream.is_none() => {
                let parts = vec![Part::Text { text }];
                elements.push_back(response(Some(candidate(Some(parts), Some(finish))), full));
            }
            Outcome::Text(text, finish) => {
                for piece in split_pieces(text, self.shared.chunks) {
                    let parts = vec![Part::Text { text: piece }];
                    elements.push_back(response(Some(candidate(Some(parts), None)), None));
                }
                // The last event carries the finish reason and the full usage.
                let parts = (*finish != "SAFETY").then(|| vec![Part::Text { text: "" }]);
                elements.push_back(response(Some(candidate(parts, Some(finish))), full));
            }
        }

        let Some(sse) = stream else {
            let body = elements.pop_front().unwrap_or_default();
            return self.json_ok(body, behaviour);
        };
        let mut events: VecDeque<Bytes> = elements.into_iter().map(Bytes::from).collect();
        let error = |_| {
            let (_, message) = rpc_status(500);
            Bytes::from(error_json(500, message, Vec::new(), sse))
        };
        let (first_delay, end) = shape_stream(&mut events, behaviour, error);
        if sse {
            let events = events
                .into_iter()
                .map(|e| Bytes::from([b"data: ", &e[..], b"\r\n\r\n"].concat()))
                .collect();
            return self.paced_ok(EVENT_STREAM, events, first_delay, end);
        }
        // A JSON array, sent one element at a time; closed only if the stream completes.
        let mut frames: VecDeque<Bytes> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let sep: &[u8] = if i == 0 { b"[" } else { b",\r\n" };
                Bytes::from([sep, &e[..]].concat())
            })
            .collect();
        if end == End::Complete {
            frames.push_back(Bytes::from_static(if frames.is_empty() {
                b"[]"
            } else {
                b"]"
            }));
        }
        self.paced_ok(JSON, frames, first_delay, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_either_spelling() {
        let v = json!({"system_instruction": {"parts": [{"text": "abcd"}]}, "contents": [{"parts": [{"text": "hi"}]}],
            "generation_config": {"max_output_tokens": 3, "stop_sequences": ["x"]}});
        let turn = parse(&v).unwrap();
        assert_eq!(turn.prompt_chars, 6);
        assert_eq!(turn.max_tokens, Some(3));
        assert_eq!(turn.stop, vec!["x"]);
        assert_eq!(turn.ending, Ending::User);
    }

    #[test]
    fn validation_messages() {
        let err = |v: Value| parse(&v).err().unwrap_or_default();
        assert_eq!(
            err(json!({"contents": []})),
            "* GenerateContentRequest.contents: contents is not specified\n"
        );
        assert_eq!(
            err(json!({"contents": [{"parts": [{}]}]})),
            "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have one initialized field\n"
        );
        assert_eq!(
            err(json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]})),
            "Please use a valid role: user, model."
        );
        assert_eq!(
            err(json!({"contents": [{"parts": [{"text": "x"}]}], "max_tokens": 3})),
            "Invalid JSON payload received. Unknown name \"max_tokens\": Cannot find field."
        );
    }

    #[test]
    fn tools_and_function_responses() {
        let v = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]});
        assert_eq!(parse(&v).unwrap().tool, Some("a"));
        let mut forced = v.clone();
        forced["toolConfig"] =
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}});
        assert_eq!(parse(&forced).unwrap().tool, Some("b"));
        let mut none = v.clone();
        none["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
        assert_eq!(parse(&none).unwrap().tool, None);
        let r = json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {"result": "sunny"}}}]}]});
        assert_eq!(
            parse(&r).unwrap().ending,
            Ending::ToolResult("sunny".into())
        );
        let r = json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {"t": 1, "u": "v"}}}]}]});
        assert_eq!(
            parse(&r).unwrap().ending,
            Ending::ToolResult(r#"{"t":1,"u":"v"}"#.into())
        );
    }
}
