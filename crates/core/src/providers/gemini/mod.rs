//! The `gemini` kind: Google's Gemini API (generateContent, and streamGenerateContent with
//! SSE) behind OpenAI's chat completions. A prompt blocked for safety is 400
//! `content_policy`; an answer stopped for safety is a 200 with `finish_reason:
//! "content_filter"`. The API key travels in `x-goog-api-key` (or the `key` query
//! parameter), never in a log or an error.

mod stream;
mod wire;

use super::chat::{self, Content, Message, OutChoice, OutFunction, OutToolCall, OutUsage, Part};
use super::translate;
use super::{OutBody, Outbound, SendError, UpstreamResponse};
use crate::error::ApiError;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Pseudo-paths of a Gemini target's two pre-built URLs (see `model::gemini_urls`).
pub const GENERATE: &str = "/chat/completions";
pub const STREAM: &str = "/chat/completions#stream";

pub(super) async fn send(out: Outbound<'_>) -> Result<UpstreamResponse, SendError> {
    let pid = out.target.provider.id.clone();
    let OutBody::Json(body) = &out.body else {
        return Err(SendError::Request(super::chat::chat_only(&pid, "gemini")));
    };
    if out.path != "/chat/completions" {
        return Err(SendError::Request(super::chat::chat_only(&pid, "gemini")));
    }
    let (req, include_usage) = to_gemini(body, &pid)?;
    let bytes = serde_json::to_vec(&req).map_err(|_| SendError::Request(ApiError::internal()))?;
    let stream = out.stream;
    let model = out.target.model.clone();
    let out = Outbound {
        path: if stream { STREAM } else { GENERATE },
        body: OutBody::Json(bytes.into()),
        ..out
    };
    let mut resp = super::openai::post(out, HeaderMap::new()).await?;
    if !resp.status.is_success() {
        let body = translate::collect(&mut resp.body, 64 * 1024).await?;
        return Ok(error_answer(resp.status, resp.headers, &body));
    }
    if stream {
        let tr = stream::Translator::new(include_usage, model, pid);
        return Ok(translate::streamed(
            resp.status,
            resp.headers,
            translate::stream(resp.body, tr),
        ));
    }
    let body = translate::collect(&mut resp.body, crate::execute::MAX_ANSWER_BYTES).await?;
    // Every field of a response is optional in Gemini's schema, so any JSON object would
    // read as one: an answer has candidates, or says why it has none.
    let Ok(r) = serde_json::from_slice::<wire::Response>(&body) else {
        return Ok(translate::unreadable(&pid, resp.headers));
    };
    if r.candidates.is_empty() && r.prompt_feedback.is_none() {
        return Ok(translate::unreadable(&pid, resp.headers));
    }
    // Every candidate a function call Gemini could not form: no answer, and another sample
    // usually is one, so the target failed (retried, then the next), not "stop" with nothing.
    if !r.candidates.is_empty()
        && r.candidates
            .iter()
            .all(|c| c.finish_reason.as_deref() == Some("MALFORMED_FUNCTION_CALL"))
    {
        let body = translate::error_body(
            &format!("provider '{pid}' answered with a malformed function call"),
            "upstream_error",
            None,
        );
        return Ok(translate::answer(
            StatusCode::BAD_GATEWAY,
            resp.headers,
            body,
            false,
        ));
    }
    if let Some(reason) = blocked(&r) {
        let body = translate::error_body(&reason, "invalid_request_error", Some("content_policy"));
        return Ok(translate::answer(
            StatusCode::BAD_REQUEST,
            resp.headers,
            body,
            false,
        ));
    }
    let json = from_gemini(r, &model);
    Ok(translate::answer(resp.status, resp.headers, json, false))
}

/// Why the prompt was blocked, when it was (no candidates, a block reason).
fn blocked(r: &wire::Response) -> Option<String> {
    let fb = r.prompt_feedback.as_ref()?;
    let reason = fb.block_reason.as_deref()?;
    if !r.candidates.is_empty() {
        return None;
    }
    Some(match &fb.block_reason_message {
        Some(m) if !m.is_empty() => format!("the provider blocked the prompt ({reason}): {m}"),
        _ => format!("the provider blocked the prompt ({reason})"),
    })
}

/// A Gemini error answer in OpenAI's shape. An invalid API key is a 400 at Google; here
/// it is 401, so a managed target's bad key moves on instead of blaming the caller. A
/// failed precondition (billing, region) is the target's fault too: 403.
fn error_answer(status: StatusCode, mut headers: HeaderMap, body: &[u8]) -> UpstreamResponse {
    let detail = serde_json::from_slice::<wire::ErrorEnvelope>(body)
        .ok()
        .map(|e| e.error)
        .unwrap_or_default();
    // Gemini says how long to wait in the body (`RetryInfo.retryDelay`, "37s"), not in a
    // `Retry-After` header: it becomes one, so the plan and the caller both honour it.
    if !headers.contains_key(http::header::RETRY_AFTER)
        && let Some(secs) = detail.details.iter().find_map(|d| {
            d.get("retryDelay")
                .and_then(Value::as_str)
                .and_then(|v| v.strip_suffix('s'))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        })
    {
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(secs.ceil() as u64),
        );
    }
    let key_invalid = detail
        .details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || detail.message.contains("API key not valid");
    let status = match (status.as_u16(), detail.status.as_str()) {
        (400, _) if key_invalid => StatusCode::UNAUTHORIZED,
        (400, "FAILED_PRECONDITION") => StatusCode::FORBIDDEN,
        _ => status,
    };
    let message = if detail.message.is_empty() {
        format!("provider returned status {}", status.as_u16())
    } else {
        detail.message.clone()
    };
    let kind = if detail.status.is_empty() {
        "api_error".to_string()
    } else {
        detail.status.to_ascii_lowercase()
    };
    translate::answer(
        status,
        headers,
        translate::error_body(&message, &kind, None),
        false,
    )
}

/// Whether a chat request translates for Gemini (the error names what it cannot honour).
pub(crate) fn check_request(body: &[u8], pid: &str) -> Result<(), ApiError> {
    to_gemini(body, pid).map(|_| ())
}

fn to_gemini(body: &[u8], pid: &str) -> Result<(wire::Request, bool), ApiError> {
    let mut r = chat::parse_request(body, pid)?;
    let include_usage = r.take_include_usage();
    let mut g = wire::GenerationConfig {
        temperature: r.take_f64("temperature", pid)?,
        top_p: r.take_f64("top_p", pid)?,
        max_output_tokens: r.take_max_tokens(pid)?,
        stop_sequences: r.take_stop(pid)?,
        candidate_count: r.take_u64("n", pid)?.filter(|n| *n != 1),
        presence_penalty: r.take_f64("presence_penalty", pid)?,
        frequency_penalty: r.take_f64("frequency_penalty", pid)?,
        ..Default::default()
    };
    g.seed = match r.take("seed") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| chat::cannot(pid, "seed", "expected an integer"))?,
        ),
    };
    match r.take("response_format") {
        None => {}
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => g.response_mime_type = Some("application/json"),
            Some("json_schema") => {
                let schema = v
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .cloned()
                    .ok_or_else(|| {
                        chat::cannot(pid, "response_format", "json_schema needs a `schema`")
                    })?;
                g.response_mime_type = Some("application/json");
                g.response_json_schema = Some(schema);
            }
            _ => {
                return Err(chat::cannot(
                    pid,
                    "response_format",
                    "expected text, json_object or json_schema",
                ));
            }
        },
    }
    let tools = r.take_tools(pid)?;
    let tool_config = match r.take_tool_choice(pid)? {
        None => None,
        Some(c) => {
            let (mode, names) = match c {
                chat::ToolChoice::Auto => ("AUTO", Vec::new()),
                chat::ToolChoice::None => ("NONE", Vec::new()),
                chat::ToolChoice::Required => ("ANY", Vec::new()),
                chat::ToolChoice::Function(n) => ("ANY", vec![n]),
            };
            Some(wire::ToolConfig {
                function_calling_config: wire::FunctionCallingConfig {
                    mode,
                    allowed_function_names: names,
                },
            })
        }
    };
    r.refuse_unless(
        "parallel_tool_calls",
        |v| *v == true,
        pid,
        "Gemini decides itself how many functions to call",
    )?;
    r.refuse_unless(
        "logprobs",
        |v| *v == false,
        pid,
        "the Gemini adapter returns no log probabilities",
    )?;
    r.refuse_unless(
        "top_logprobs",
        |v| v.as_u64() == Some(0),
        pid,
        "the Gemini adapter returns no log probabilities",
    )?;
    r.refuse_unless(
        "logit_bias",
        |v| v.as_object().is_some_and(|o| o.is_empty()),
        pid,
        "Gemini has no logit bias",
    )?;
    r.refuse_unless(
        "modalities",
        |v| v.as_array().is_some_and(|a| a.iter().all(|m| m == "text")),
        pid,
        "the Gemini adapter translates text answers only",
    )?;
    // An end-user id for abuse monitoring has no Gemini counterpart (documented as ignorable).
    r.take("user");
    r.drop_ignorable();
    r.refuse_rest(pid)?;

    // Tool call id -> function name, for the tool results that follow.
    let mut call_names: Vec<(String, String)> = Vec::new();
    let mut system: Vec<wire::Part> = Vec::new();
    let mut contents: Vec<wire::Content> = Vec::new();
    for (i, m) in r.messages.into_iter().enumerate() {
        let param = format!("messages[{i}]");
        match m {
            Message::System { content } | Message::Developer { content } => {
                system.push(wire::Part::Text(
                    content.text_only(&format!("{param}.content"), pid)?,
                ));
            }
            Message::User { content } => {
                let parts = user_parts(content, &param, pid)?;
                push(&mut contents, "user", parts);
            }
            Message::Assistant {
                content,
                tool_calls,
                refusal,
            } => {
                let turn = chat::assistant_turn(content, tool_calls, refusal, &param, pid)?;
                let mut parts: Vec<wire::Part> =
                    turn.texts.into_iter().map(wire::Part::Text).collect();
                // Gemini 3 wants a thought signature on the first function call of each
                // step. Calls another provider made (a fallback, or a history from another
                // model) carry none: the first gets the placeholder Google documents for
                // histories it did not write.
                let signed = turn
                    .calls
                    .iter()
                    .any(|(id, _, _)| signature_of(id).is_some());
                for (n, (id, name, args)) in turn.calls.into_iter().enumerate() {
                    let thought_signature = signature_of(&id)
                        .or_else(|| (n == 0 && !signed).then(|| UNSIGNED_CALL.to_string()));
                    call_names.push((id, name.clone()));
                    parts.push(wire::Part::FunctionCall {
                        function_call: wire::FunctionCall {
                            id: None,
                            name,
                            args,
                        },
                        thought_signature,
                    });
                }
                push(&mut contents, "model", parts);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let text = content.text_only(&format!("{param}.content"), pid)?;
                let name = call_names
                    .iter()
                    .find(|(id, _)| *id == tool_call_id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| {
                        chat::cannot(
                            pid,
                            &format!("{param}.tool_call_id"),
                            "no earlier assistant message made this tool call",
                        )
                    })?;
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => serde_json::json!({ "result": text }),
                };
                push(
                    &mut contents,
                    "user",
                    vec![wire::Part::FunctionResponse { name, response }],
                );
            }
        }
    }
    if contents.is_empty() {
        return Err(chat::cannot(
            pid,
            "messages",
            "Gemini needs at least one user or assistant message besides the system prompt",
        ));
    }
    let tools = if tools.is_empty() {
        Vec::new()
    } else {
        vec![wire::Tools {
            function_declarations: tools
                .into_iter()
                .map(|t| wire::FunctionDeclaration {
                    name: t.function.name,
                    description: t.function.description,
                    parameters_json_schema: t.function.parameters,
                })
                .collect(),
        }]
    };
    Ok((
        wire::Request {
            contents,
            system_instruction: (!system.is_empty()).then_some(wire::Content {
                role: None,
                parts: system,
            }),
            tools,
            tool_config,
            generation_config: g,
        },
        include_usage,
    ))
}

fn push(contents: &mut Vec<wire::Content>, role: &'static str, parts: Vec<wire::Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role == Some(role) => last.parts.extend(parts),
        _ => contents.push(wire::Content {
            role: Some(role),
            parts,
        }),
    }
}

/// Media types Gemini reads from an image URL's file extension.
fn image_type(url: &str) -> Option<&'static str> {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit('.').next()?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "gif" => "image/gif",
        _ => return None,
    })
}

fn user_parts(content: Content, param: &str, pid: &str) -> Result<Vec<wire::Part>, ApiError> {
    if content.is_empty() {
        return Err(chat::cannot(
            pid,
            &format!("{param}.content"),
            "a user message needs some content",
        ));
    }
    match content {
        Content::Text(text) => Ok(vec![wire::Part::Text(text)]),
        Content::Parts(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(j, p)| {
                let at = format!("{param}.content[{j}]");
                match p {
                    Part::Text { text } => Ok(wire::Part::Text(text)),
                    Part::Refusal { refusal } => Ok(wire::Part::Text(refusal)),
                    Part::ImageUrl { image_url } => match chat::data_url(&image_url.url) {
                        Some((media, data)) => Ok(wire::Part::InlineData {
                            mime_type: media.to_string(),
                            data: data.to_string(),
                        }),
                        None => match image_type(&image_url.url) {
                            Some(mime) if image_url.url.starts_with("https://") => {
                                Ok(wire::Part::FileData {
                                    mime_type: mime.to_string(),
                                    file_uri: image_url.url,
                                })
                            }
                            _ => Err(chat::cannot(
                                pid,
                                &at,
                                "images must be base64 data URLs or https URLs ending in .png, .jpg, .jpeg, .webp, .gif, .heic or .heif",
                            )),
                        },
                    },
                    Part::InputAudio {} | Part::File {} => Err(chat::cannot(
                        pid,
                        &at,
                        "the Gemini adapter translates text and images only",
                    )),
                }
            })
            .collect(),
    }
}

/// Gemini's `finishReason` as OpenAI's; a stop with function calls is `tool_calls`.
fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// Usage in OpenAI's terms: the prompt count already includes cached tokens; thinking
/// tokens are completion tokens, as OpenAI counts reasoning.
fn usage(u: &wire::UsageMetadata) -> OutUsage {
    OutUsage::new(
        u.prompt_token_count + u.tool_use_prompt_token_count,
        u.candidates_token_count + u.thoughts_token_count,
        u.cached_content_token_count,
        u.thoughts_token_count,
    )
}

/// The id OpenAI callers see for the `n`th function call of an answer without ids.
fn call_id(response_id: &str, candidate: usize, n: usize) -> String {
    format!("call_{response_id}_{candidate}_{n}")
}

/// Between a tool call's id and the thought signature it carries.
const SIGNATURE_MARK: &str = "__thought__";

/// The thought signature Google documents for function calls it did not make.
const UNSIGNED_CALL: &str = "skip_thought_signature_validator";

/// The id a caller sees for a Gemini function call: Gemini's own id (or one made up), with
/// the call's thought signature appended. Callers echo tool call ids back unchanged (in the
/// assistant turn and in `tool_call_id`), so the signature returns to Gemini with the history
/// without any field beyond OpenAI's. The signature (standard base64) is written URL-safe and
/// unpadded (`-`, `_`), so the id stays within the characters other providers take in ids
/// (Anthropic: letters, digits, `_`, `-`), should a fallback send the history elsewhere.
pub(super) fn signed_call_id(id: String, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        Some(sig) => {
            let mut out = id;
            out.push_str(SIGNATURE_MARK);
            out.extend(sig.chars().filter(|c| *c != '=').map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            }));
            out
        }
        None => id,
    }
}

/// The thought signature a tool call id carries, if any, in standard base64 again.
fn signature_of(id: &str) -> Option<String> {
    let (_, sig) = id.split_once(SIGNATURE_MARK)?;
    if sig.is_empty() {
        return None;
    }
    let mut out: String = sig
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    Some(out)
}

fn response_id(r: &wire::Response) -> String {
    match &r.response_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

fn from_gemini(r: wire::Response, target_model: &str) -> Vec<u8> {
    let id = response_id(&r);
    let model = r
        .model_version
        .clone()
        .unwrap_or_else(|| target_model.to_string());
    let choices = r
        .candidates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut text: Option<String> = None;
            let mut tool_calls = Vec::new();
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(t) = p.text.filter(|_| p.thought != Some(true)) {
                    text.get_or_insert_with(String::new).push_str(&t);
                }
                if let Some(f) = p.function_call {
                    let n = tool_calls.len();
                    tool_calls.push(OutToolCall {
                        id: signed_call_id(
                            f.id.unwrap_or_else(|| call_id(&id, i, n)),
                            p.thought_signature.as_deref(),
                        ),
                        kind: "function",
                        function: OutFunction {
                            name: f.name,
                            arguments: args_text(&f.args),
                        },
                    });
                }
            }
            let finish = finish_reason(
                c.finish_reason.as_deref().unwrap_or("STOP"),
                !tool_calls.is_empty(),
            );
            OutChoice {
                text,
                tool_calls,
                finish_reason: finish,
            }
        })
        .collect();
    let u = r.usage_metadata.as_ref().map(usage);
    chat::completion(&format!("chatcmpl-{id}"), &model, choices, u)
}

fn args_text(args: &Value) -> String {
    if args.is_null() {
        "{}".into()
    } else {
        args.to_string()
    }
}

/// The gateway code for a Gemini error status (used for in-stream errors).
fn error_code(status: &str) -> crate::ErrorCode {
    use crate::ErrorCode as C;
    match status {
        "RESOURCE_EXHAUSTED" => C::RateLimit,
        "UNAVAILABLE" => C::Overloaded,
        "INVALID_ARGUMENT" => C::BadRequest,
        _ => C::Upstream,
    }
}

#[cfg(test)]
mod tests;
