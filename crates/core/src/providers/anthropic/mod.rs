//! The `anthropic` kind: the Messages API behind OpenAI's chat completions. Requests are
//! rebuilt in Anthropic's shape, answers and streams translated back as they arrive,
//! usage reported in OpenAI's terms and errors mapped so the failure contract treats an
//! overloaded Anthropic like an overloaded anyone.

mod stream;
mod wire;

use super::chat::{self, Content, Message, OutChoice, OutFunction, OutToolCall, OutUsage, Part};
use super::translate;
use super::{OutBody, Outbound, SendError, UpstreamResponse};
use crate::error::ApiError;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use wire::{Block, ImageSource, Role};

/// The path under the provider's base URL (which ends in `/v1`).
pub(crate) const PATH: &str = "/messages";

/// `max_tokens` is required by Anthropic; when the caller sends none, the model's
/// documented output limit is asked for (docs/providers.md): 4096 for the Claude 3 models,
/// 8192 for everything newer.
pub(crate) fn default_max_tokens(model: &str) -> u64 {
    let claude3 = ["claude-3-opus", "claude-3-sonnet", "claude-3-haiku"];
    if claude3.iter().any(|p| model.starts_with(p)) {
        4096
    } else {
        8192
    }
}

/// Caller headers Anthropic documents and the gateway forwards.
const FORWARDED: [HeaderName; 1] = [HeaderName::from_static("anthropic-beta")];

pub(super) async fn send(out: Outbound<'_>) -> Result<UpstreamResponse, SendError> {
    let pid = out.target.provider.id.clone();
    let OutBody::Json(body) = &out.body else {
        return Err(SendError::Request(super::chat::chat_only(
            &pid,
            "anthropic",
        )));
    };
    if out.path != "/chat/completions" {
        return Err(SendError::Request(super::chat::chat_only(
            &pid,
            "anthropic",
        )));
    }
    let (req, include_usage) = to_anthropic(body, out.stream, &pid)?;
    let bytes = serde_json::to_vec(&req).map_err(|_| SendError::Request(ApiError::internal()))?;
    let mut extra = HeaderMap::new();
    extra.insert(
        "anthropic-version",
        HeaderValue::from_static(wire::API_VERSION),
    );
    for name in &FORWARDED {
        for v in out.inbound.get_all(name) {
            extra.append(name.clone(), v.clone());
        }
    }
    let stream = out.stream;
    let out = Outbound {
        path: PATH,
        body: OutBody::Json(bytes.into()),
        ..out
    };
    let mut resp = super::openai::post(out, extra).await?;
    if !resp.status.is_success() {
        let body = translate::collect(&mut resp.body, 64 * 1024).await?;
        return Ok(error_answer(resp.status, resp.headers, &body));
    }
    if stream {
        let tr = stream::Translator::new(include_usage, pid);
        return Ok(translate::streamed(
            resp.status,
            resp.headers,
            translate::stream(resp.body, tr),
        ));
    }
    let body = translate::collect(&mut resp.body, crate::execute::MAX_ANSWER_BYTES).await?;
    Ok(match from_anthropic(&body) {
        Some(json) => translate::answer(resp.status, resp.headers, json, false),
        None => translate::unreadable(&pid, resp.headers),
    })
}

/// An Anthropic error answer in OpenAI's shape, status kept (529 stays 529: overloaded).
fn error_answer(status: StatusCode, headers: HeaderMap, body: &[u8]) -> UpstreamResponse {
    let detail = serde_json::from_slice::<wire::ErrorEnvelope>(body).ok();
    let (message, kind) = match &detail {
        Some(d) => (d.error.message.as_str(), d.error.kind.as_str()),
        None => ("", "api_error"),
    };
    let message = if message.is_empty() {
        format!("provider returned status {}", status.as_u16())
    } else {
        message.to_string()
    };
    let body = translate::error_body(&message, kind, None);
    translate::answer(status, headers, body, false)
}

/// The OpenAI request as an Anthropic one; also whether the caller asked for usage in the
/// stream.
/// Whether a chat request translates for Anthropic (the error names what it cannot honour).
pub(crate) fn check_request(body: &[u8], pid: &str) -> Result<(), ApiError> {
    to_anthropic(body, false, pid).map(|_| ())
}

fn to_anthropic(body: &[u8], stream: bool, pid: &str) -> Result<(wire::Request, bool), ApiError> {
    let mut r = chat::parse_request(body, pid)?;
    let include_usage = r.take_include_usage();
    let temperature = r.take_f64("temperature", pid)?;
    if temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(chat::cannot(
            pid,
            "temperature",
            "Anthropic accepts temperatures from 0 to 1",
        ));
    }
    // Current Claude models refuse `temperature` and `top_p` together: `top_p` goes when
    // `temperature` is given (a `top_p` of 1, the usual default, changes nothing anyway).
    let top_p = r
        .take_f64("top_p", pid)?
        .filter(|p| temperature.is_none() && *p < 1.0);
    let stop_sequences = r.take_stop(pid)?;
    let max_tokens = r
        .take_max_tokens(pid)?
        .unwrap_or_else(|| default_max_tokens(&r.model));
    let tools = r
        .take_tools(pid)?
        .into_iter()
        .map(|t| wire::Tool {
            name: t.function.name,
            description: t.function.description,
            input_schema: t
                .function
                .parameters
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
        .collect::<Vec<_>>();
    let parallel = match r.take("parallel_tool_calls") {
        None => true,
        Some(v) => v.as_bool().unwrap_or(true),
    };
    let choice = r.take_tool_choice(pid)?;
    let disable = !parallel;
    let tool_choice = match choice {
        None if disable && !tools.is_empty() => Some(wire::ToolChoice::Auto {
            disable_parallel_tool_use: true,
        }),
        None => None,
        Some(chat::ToolChoice::Auto) => Some(wire::ToolChoice::Auto {
            disable_parallel_tool_use: disable,
        }),
        Some(chat::ToolChoice::Required) => Some(wire::ToolChoice::Any {
            disable_parallel_tool_use: disable,
        }),
        Some(chat::ToolChoice::None) => Some(wire::ToolChoice::None),
        Some(chat::ToolChoice::Function(name)) => Some(wire::ToolChoice::Tool {
            name,
            disable_parallel_tool_use: disable,
        }),
    };
    let metadata = match r.take("user") {
        // Anthropic refuses a `user_id` that looks like an email address or a phone number
        // (it wants an opaque id); OpenAI callers often put an email in `user`. Such a value
        // is sent as a hash of itself: still one id per user, and no personal data.
        Some(serde_json::Value::String(u)) if looks_personal(&u) => Some(wire::Metadata {
            user_id: hashed(&u),
        }),
        Some(serde_json::Value::String(u)) => Some(wire::Metadata { user_id: u }),
        Some(_) => return Err(chat::cannot(pid, "user", "expected a string")),
        None => None,
    };
    r.refuse_unless(
        "n",
        |v| v.as_u64() == Some(1),
        pid,
        "Anthropic returns one choice",
    )?;
    r.refuse_unless(
        "logprobs",
        |v| *v == false,
        pid,
        "Anthropic returns no log probabilities",
    )?;
    r.refuse_unless(
        "top_logprobs",
        |v| v.as_u64() == Some(0),
        pid,
        "Anthropic returns no log probabilities",
    )?;
    for k in ["presence_penalty", "frequency_penalty"] {
        r.refuse_unless(
            k,
            |v| v.as_f64() == Some(0.0),
            pid,
            "Anthropic has no penalties",
        )?;
    }
    r.refuse_unless(
        "logit_bias",
        |v| v.as_object().is_some_and(|o| o.is_empty()),
        pid,
        "Anthropic has no logit bias",
    )?;
    r.refuse_unless(
        "response_format",
        |v| v.get("type").and_then(|t| t.as_str()) == Some("text"),
        pid,
        "Anthropic has no JSON mode; describe the format in the prompt or use a tool",
    )?;
    r.refuse_unless(
        "modalities",
        |v| v.as_array().is_some_and(|a| a.iter().all(|m| m == "text")),
        pid,
        "Anthropic answers with text only",
    )?;
    // A seed asks for best-effort determinism, which Anthropic does not offer; it is
    // documented as ignorable.
    r.take("seed");
    r.drop_ignorable();
    r.refuse_rest(pid)?;

    let mut system = Vec::new();
    let mut messages: Vec<wire::Message> = Vec::new();
    for (i, m) in r.messages.into_iter().enumerate() {
        let param = format!("messages[{i}]");
        match m {
            Message::System { content } | Message::Developer { content } => {
                let text = content.text_only(&format!("{param}.content"), pid)?;
                // Anthropic refuses empty text blocks; an empty system prompt says nothing.
                if !text.trim().is_empty() {
                    system.push(wire::TextBlock { kind: "text", text });
                }
            }
            Message::User { content } => {
                let blocks = user_blocks(content, &param, pid)?;
                push(&mut messages, Role::User, blocks);
            }
            Message::Assistant {
                content,
                tool_calls,
                refusal,
            } => {
                let turn = chat::assistant_turn(content, tool_calls, refusal, &param, pid)?;
                let mut blocks: Vec<Block> = turn
                    .texts
                    .into_iter()
                    .map(|text| Block::Text { text })
                    .collect();
                blocks.extend(
                    turn.calls
                        .into_iter()
                        .map(|(id, name, input)| Block::ToolUse {
                            id: tool_id(id),
                            name,
                            input,
                        }),
                );
                push(&mut messages, Role::Assistant, blocks);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let text = content.text_only(&format!("{param}.content"), pid)?;
                push(
                    &mut messages,
                    Role::User,
                    vec![Block::ToolResult {
                        tool_use_id: tool_id(tool_call_id),
                        content: text,
                    }],
                );
            }
        }
    }
    if messages.is_empty() {
        return Err(chat::cannot(
            pid,
            "messages",
            "Anthropic needs at least one user or assistant message besides the system prompt",
        ));
    }
    Ok((
        wire::Request {
            model: r.model,
            max_tokens,
            messages,
            system,
            temperature,
            top_p,
            stop_sequences,
            tools,
            tool_choice,
            metadata,
            stream,
        },
        include_usage,
    ))
}

/// Consecutive messages of one role become one (tool results and the user's next words
/// share a user turn, as Anthropic requires).
fn push(messages: &mut Vec<wire::Message>, role: Role, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => {
            // Tool results must come first in a user turn.
            if role == Role::User && blocks.iter().any(|b| matches!(b, Block::ToolResult { .. })) {
                let at = last
                    .content
                    .iter()
                    .position(|b| !matches!(b, Block::ToolResult { .. }))
                    .unwrap_or(last.content.len());
                last.content.splice(at..at, blocks);
            } else {
                last.content.extend(blocks);
            }
        }
        _ => messages.push(wire::Message {
            role,
            content: blocks,
        }),
    }
}

fn user_blocks(content: Content, param: &str, pid: &str) -> Result<Vec<Block>, ApiError> {
    if content.is_empty() {
        return Err(chat::cannot(
            pid,
            &format!("{param}.content"),
            "a user message needs some content",
        ));
    }
    match content {
        Content::Text(text) => Ok(vec![Block::Text { text }]),
        Content::Parts(parts) => parts
            .into_iter()
            .enumerate()
            // Anthropic refuses empty text blocks (one beside an image says nothing).
            .filter(|(_, p)| !matches!(p, Part::Text { text } if text.trim().is_empty()))
            .map(|(j, p)| {
                let at = format!("{param}.content[{j}]");
                match p {
                    Part::Text { text } => Ok(Block::Text { text }),
                    Part::ImageUrl { image_url } => {
                        let source = match chat::data_url(&image_url.url) {
                            Some((media, _))
                                if !matches!(
                                    media,
                                    "image/jpeg" | "image/png" | "image/gif" | "image/webp"
                                ) =>
                            {
                                return Err(chat::cannot(
                                    pid,
                                    &at,
                                    &format!(
                                        "Anthropic takes JPEG, PNG, GIF or WebP images, not {media}"
                                    ),
                                ));
                            }
                            Some((media, data)) => ImageSource::Base64 {
                                media_type: media.to_string(),
                                data: data.to_string(),
                            },
                            None if image_url.url.starts_with("https://")
                                || image_url.url.starts_with("http://") =>
                            {
                                ImageSource::Url { url: image_url.url }
                            }
                            None => {
                                return Err(chat::cannot(
                                    pid,
                                    &at,
                                    "images must be http(s) URLs or base64 data URLs",
                                ));
                            }
                        };
                        Ok(Block::Image { source })
                    }
                    Part::Refusal { refusal } => Ok(Block::Text { text: refusal }),
                    Part::InputAudio {} | Part::File {} => Err(chat::cannot(
                        pid,
                        &at,
                        "the Anthropic adapter translates text and images only",
                    )),
                }
            })
            .collect(),
    }
}

/// A tool call id as Anthropic takes it (`^[a-zA-Z0-9_-]+$`): any other character becomes
/// `_`, the same way in the assistant's `tool_use` and in the `tool_result` that answers it,
/// so the two still pair (ids made by another provider may carry `.`, `:`, `+`, `/`, `=`).
fn tool_id(id: String) -> String {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return id;
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `sha256:` and the hex SHA-256 of `value`.
fn hashed(value: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        crate::otlp::hex(&sha2::Sha256::digest(value.as_bytes()))
    )
}

/// Whether a `user` value looks like an email address or a phone number.
fn looks_personal(user: &str) -> bool {
    let u = user.trim();
    let digits = u.chars().filter(char::is_ascii_digit).count();
    u.contains('@')
        || (digits >= 7
            && u.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c)))
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Usage in OpenAI's terms: every input token counts as a prompt token, cache reads and
/// writes included; reads are also the cached tokens.
fn usage(u: &wire::Usage) -> OutUsage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_creation_input_tokens.unwrap_or(0);
    OutUsage::new(
        u.input_tokens.unwrap_or(0) + read + write,
        u.output_tokens.unwrap_or(0),
        read,
        0,
    )
}

/// A whole Anthropic answer as a `chat.completion`; `None` when it cannot be read.
fn from_anthropic(body: &[u8]) -> Option<Vec<u8>> {
    let r: wire::Response = serde_json::from_slice(body).ok()?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for b in r.content {
        match b {
            wire::OutBlock::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            wire::OutBlock::ToolUse { id, name, input } => tool_calls.push(OutToolCall {
                id,
                kind: "function",
                function: OutFunction {
                    name,
                    arguments: if input.is_null() {
                        "{}".into()
                    } else {
                        input.to_string()
                    },
                },
            }),
            wire::OutBlock::Other => {}
        }
    }
    let choice = OutChoice {
        text,
        tool_calls,
        finish_reason: finish_reason(r.stop_reason.as_deref()),
    };
    Some(chat::completion(
        &r.id,
        &r.model,
        vec![choice],
        Some(usage(&r.usage)),
    ))
}

/// The gateway code an Anthropic error type maps to (used for in-stream errors).
fn error_code(kind: &str) -> crate::ErrorCode {
    use crate::ErrorCode as C;
    match kind {
        "overloaded_error" => C::Overloaded,
        "rate_limit_error" => C::RateLimit,
        "invalid_request_error" => C::BadRequest,
        "authentication_error" | "permission_error" | "not_found_error" => C::Upstream,
        _ => C::Upstream,
    }
}

#[cfg(test)]
mod tests;
