//! Request handling: behaviours, auth, routing and the OpenAI wire format.
//! The Anthropic and Gemini formats live in `anthropic.rs` and `gemini.rs`;
//! what every format answers is decided in `reply.rs`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER,
};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use crate::audio::Task;
use crate::body::{End, FakeBody, Guard};
use crate::reply::{Answer, Ending, Finish, Turn, Usage};
use crate::util::{
    anthropic_request_id, base64, call_id, completion_id, fnv1a, json_str, push_json_str,
    request_id, splitmix64, unix_now,
};
use crate::{Behaviour, RecordedRequest, Shared, anthropic, gemini};

pub(crate) const JSON: &str = "application/json";
pub(crate) const EVENT_STREAM: &str = "text/event-stream";
const FINGERPRINT: &str = "fp_fake";
const MODEL_CREATED: u64 = 1_686_935_002;
const MAX_DIMENSIONS: u64 = 16_384;
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

static OPENAI_PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");
static OPENAI_VERSION: HeaderName = HeaderName::from_static("openai-version");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Which provider's API a request is for, chosen by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// Everything else (including Azure OpenAI's deployment paths).
    OpenAi,
    /// `/v1/messages`.
    Anthropic,
    /// `/v1beta/...`.
    Gemini,
}

impl Api {
    fn of(path: &str) -> Self {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Api::Anthropic
        } else if path == "/v1beta" || path.starts_with("/v1beta/") {
            Api::Gemini
        } else {
            Api::OpenAi
        }
    }

    /// The request id this API puts in its response headers (none for Gemini).
    fn request_id(self) -> String {
        match self {
            Api::OpenAi => request_id(),
            Api::Anthropic => anthropic_request_id(),
            Api::Gemini => String::new(),
        }
    }
}

pub(crate) type Resp = Response<FakeBody>;

/// The hyper service. `Err` makes hyper close the connection without a response.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, io::Error> {
    let start = Instant::now();
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let behaviour = shared.next_behaviour();

    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    if shared.record {
        shared.record(RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
            at: start,
        });
    }

    if !shared.latency.is_zero() {
        let mut guard = Guard::new(&shared);
        tokio::time::sleep(shared.latency).await;
        guard.disarm();
    }

    let api = Api::of(parts.uri.path());
    let cx = Cx {
        shared: &shared,
        start,
        api,
        request_id: api.request_id(),
    };
    match &behaviour {
        Behaviour::Reset => return Err(io::Error::other("fake-upstream: reset")),
        Behaviour::Hang => {
            let _guard = Guard::new(&shared);
            shared.shutdown.cancelled().await;
            return Err(io::Error::other("fake-upstream: shut down"));
        }
        Behaviour::Status {
            status,
            retry_after,
            body,
        } => return Ok(cx.status_response(*status, retry_after.as_deref(), body.as_deref())),
        _ => {}
    }
    match api {
        Api::Anthropic => return Ok(cx.anthropic(&parts, &body, &behaviour)),
        Api::Gemini => return Ok(cx.gemini(&parts, &body, &behaviour)),
        Api::OpenAi => {}
    }

    // Azure OpenAI: `/openai/deployments/{deployment}/...?api-version=...`, key in `api-key`.
    let azure_path = parts
        .uri
        .path()
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, tail)| format!("/v1/{tail}"));
    if azure_path.is_some()
        && !parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=")))
    {
        return Ok(cx.error(
            404,
            "Resource not found",
            "invalid_request_error",
            None,
            Some("404"),
        ));
    }
    let azure_key = parts
        .headers
        .get("api-key")
        .map(|v| format!("Bearer {}", String::from_utf8_lossy(v.as_bytes())));
    if let Some(expected) = &shared.auth_header {
        let given = match &azure_key {
            Some(k) => {
                Some(http::HeaderValue::from_str(k).unwrap_or(http::HeaderValue::from_static("x")))
            }
            None => parts.headers.get(AUTHORIZATION).cloned(),
        };
        match given.as_ref() {
            Some(v) if v.as_bytes() == expected.as_bytes() => {}
            Some(_) => {
                return Ok(cx.error(
                    401,
                    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ));
            }
            None => {
                return Ok(cx.error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ));
            }
        }
    }

    let path = azure_path.as_deref().unwrap_or(parts.uri.path());
    let resp = match (&parts.method, path) {
        (&Method::POST, "/v1/chat/completions") => cx.chat(&body, &behaviour),
        (&Method::POST, "/v1/embeddings") => cx.embeddings(&body, &behaviour),
        (&Method::GET, "/v1/models") => cx.models(&behaviour),
        (&Method::GET, p) if p.starts_with("/v1/models/") => {
            cx.model(&p["/v1/models/".len()..], &behaviour)
        }
        (&Method::POST, "/v1/responses") => cx.responses(&body, &behaviour),
        (&Method::POST, "/v1/audio/speech") => cx.speech(&body, &behaviour),
        (&Method::POST, "/v1/audio/transcriptions") => {
            cx.transcription(&parts.headers, &body, &behaviour, Task::Transcribe)
        }
        (&Method::POST, "/v1/audio/translations") => {
            cx.transcription(&parts.headers, &body, &behaviour, Task::Translate)
        }
        (&Method::POST, "/v1/images/generations") => cx.images(&body, &behaviour),
        (m, p) => cx.error(
            404,
            &format!("Invalid URL ({m} {p})"),
            "invalid_request_error",
            None,
            None,
        ),
    };
    Ok(resp)
}

pub(crate) struct Cx<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    start: Instant,
    pub(crate) api: Api,
    /// Sent in `x-request-id` (OpenAI) or `request-id` (Anthropic, and in its error bodies).
    pub(crate) request_id: String,
}

impl Cx<'_> {
    fn respond(&self, status: u16, content_type: &'static str, body: FakeBody) -> Resp {
        let mut resp = Response::new(body);
        *resp.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let id = HeaderValue::from_str(&self.request_id);
        match self.api {
            Api::OpenAi => {
                if let Ok(v) = id {
                    h.insert(X_REQUEST_ID.clone(), v);
                }
                h.insert(OPENAI_PROCESSING_MS.clone(), HeaderValue::from(ms));
                h.insert(
                    OPENAI_VERSION.clone(),
                    HeaderValue::from_static("2020-10-01"),
                );
            }
            Api::Anthropic => {
                if let Ok(v) = id {
                    h.insert(REQUEST_ID.clone(), v);
                }
            }
            Api::Gemini => {
                if let Ok(v) = HeaderValue::from_str(&format!("gfet4t7; dur={ms}")) {
                    h.insert(SERVER_TIMING.clone(), v);
                }
            }
        }
        resp
    }

    /// The content type of this API's JSON bodies.
    pub(crate) fn json_type(&self) -> &'static str {
        match self.api {
            Api::Gemini => gemini::JSON,
            _ => JSON,
        }
    }

    pub(crate) fn full(&self, status: u16, content_type: &'static str, body: Bytes) -> Resp {
        self.respond(
            status,
            content_type,
            FakeBody::full(body, Guard::new(self.shared)),
        )
    }

    /// A 200 JSON response shaped by the stream behaviours (see [`Behaviour`]).
    pub(crate) fn json_ok(&self, body: String, behaviour: &Behaviour) -> Resp {
        self.shaped_ok(self.json_type(), Bytes::from(body), behaviour)
    }

    /// A 200 response of one body shaped by the stream behaviours (see [`Behaviour`]).
    pub(crate) fn shaped_ok(
        &self,
        content_type: &'static str,
        body: Bytes,
        behaviour: &Behaviour,
    ) -> Resp {
        let len = body.len();
        let paced = |events: Bytes, first_delay: Duration, end: End| {
            let mut resp = self.respond(
                200,
                content_type,
                FakeBody::paced(
                    VecDeque::from([events]),
                    first_delay,
                    Duration::ZERO,
                    end,
                    Guard::new(self.shared),
                ),
            );
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
            resp
        };
        match behaviour {
            Behaviour::SlowFirstEvent(d) => paced(body, *d, End::Complete),
            Behaviour::CutAfter(_) => paced(body.slice(..len / 2), Duration::ZERO, End::Cut),
            Behaviour::StallAfter(_) => paced(body.slice(..len / 2), Duration::ZERO, End::Stall),
            _ => self.full(200, content_type, body),
        }
    }

    /// A 200 response sent as one frame per element of `events`: the first
    /// after `first_delay`, the others `chunk_delay` apart, then ending as `end` says.
    pub(crate) fn paced_ok(
        &self,
        content_type: &'static str,
        events: VecDeque<Bytes>,
        first_delay: Duration,
        end: End,
    ) -> Resp {
        let body = FakeBody::paced(
            events,
            first_delay,
            self.shared.chunk_delay,
            end,
            Guard::new(self.shared),
        );
        let mut resp = self.respond(200, content_type, body);
        if content_type.starts_with(EVENT_STREAM) {
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
        }
        resp
    }

    /// A 200 stream of `events` shaped by the stream behaviours (see [`shape_stream`]).
    pub(crate) fn stream_ok(
        &self,
        content_type: &'static str,
        mut events: VecDeque<Bytes>,
        behaviour: &Behaviour,
        error: impl FnOnce(usize) -> Bytes,
    ) -> Resp {
        let (first_delay, end) = shape_stream(&mut events, behaviour, error);
        self.paced_ok(content_type, events, first_delay, end)
    }

    fn error(
        &self,
        status: u16,
        message: &str,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Resp {
        self.full(
            status,
            JSON,
            Bytes::from(error_json(message, kind, param, code)),
        )
    }

    /// `Behaviour::Status`: `body`, or this API's own error for `status`.
    fn status_response(&self, status: u16, retry_after: Option<&str>, body: Option<&str>) -> Resp {
        let body = match (body, self.api) {
            (Some(b), _) => b.to_owned(),
            (None, Api::OpenAi) => {
                let (message, kind, code) = default_error(status);
                error_json(message, kind, None, code)
            }
            (None, Api::Anthropic) => anthropic::status_error(status, &self.request_id),
            (None, Api::Gemini) => gemini::status_error(status, retry_after),
        };
        let mut resp = self.full(status, self.json_type(), Bytes::from(body));
        if let Some(v) = retry_after.and_then(|r| HeaderValue::from_str(r).ok()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
        resp
    }

    /// 400 `Missing required parameter: '<param>'.`
    pub(crate) fn missing(&self, param: &str) -> Resp {
        self.bad_request(
            &format!("Missing required parameter: '{param}'."),
            Some(param),
            Some("missing_required_parameter"),
        )
    }

    /// 400 `Invalid value: '<value>'. Supported values are: ...`
    pub(crate) fn invalid_value(&self, param: &str, value: &str, supported: &[&str]) -> Resp {
        let list = match supported {
            [] => String::new(),
            [one] => format!("'{one}'"),
            [init @ .., last] => {
                let init: Vec<String> = init.iter().map(|s| format!("'{s}'")).collect();
                format!("{}, and '{last}'", init.join(", "))
            }
        };
        self.bad_request(
            &format!("Invalid value: '{value}'. Supported values are: {list}."),
            Some(param),
            Some("invalid_value"),
        )
    }

    pub(crate) fn bad_request(
        &self,
        message: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Resp {
        self.error(400, message, "invalid_request_error", param, code)
    }

    pub(crate) fn invalid_json(&self, err: &serde_json::Error) -> Resp {
        if err.is_data() {
            self.bad_request(&format!("Invalid body: {err}"), None, None)
        } else {
            self.bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
                None,
                None,
            )
        }
    }

    fn chat(&self, body: &[u8], behaviour: &Behaviour) -> Resp {
        let req: ChatRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return self.invalid_json(&e),
        };
        let Some(model) = req.model else {
            return self.bad_request("you must provide a model parameter", None, None);
        };
        let Some(messages) = req.messages else {
            return self.missing("messages");
        };

        let mut turn = Turn::new();
        for m in &messages {
            let text = content_text(m.content.as_ref());
            turn.prompt_chars += text.chars().count();
            if m.role.as_deref() == Some("user") {
                turn.last_user = Some(text);
            }
        }
        turn.ending = match messages.last() {
            Some(m) if m.role.as_deref() == Some("tool") => {
                Ending::ToolResult(content_text(m.content.as_ref()))
            }
            Some(m) if m.role.as_deref() == Some("user") => Ending::User,
            _ => Ending::Other,
        };
        turn.tool = openai_tool(req.tools.as_deref(), req.tool_choice.as_ref());
        turn.stop = match &req.stop {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        turn.max_tokens = req.max_completion_tokens.or(req.max_tokens);
        let reply = self.shared.answer(turn);
        let usage = usage_json(&reply.usage);
        let id = completion_id();
        let created = unix_now();
        let finish = match &reply.answer {
            Answer::Call { .. } => "\"tool_calls\"",
            Answer::Text {
                finish: Finish::MaxTokens,
                ..
            } => "\"length\"",
            Answer::Text { .. } => "\"stop\"",
        };

        let stream = req.stream.unwrap_or(false);
        if !stream {
            let mut out = String::with_capacity(700 + model.len());
            out.push_str("{\"id\":\"");
            out.push_str(&id);
            let _ = write!(
                out,
                "\",\"object\":\"chat.completion\",\"created\":{created},\"model\":"
            );
            push_json_str(&mut out, &model);
            out.push_str(
                ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
            );
            match &reply.answer {
                Answer::Text { text, .. } => push_json_str(&mut out, text),
                Answer::Call { name, arguments } => {
                    out.push_str("null,\"tool_calls\":[{\"id\":\"");
                    out.push_str(&call_id());
                    out.push_str("\",\"type\":\"function\",\"function\":{\"name\":");
                    push_json_str(&mut out, name);
                    out.push_str(",\"arguments\":");
                    push_json_str(&mut out, arguments);
                    out.push_str("}}]");
                }
            }
            let _ = write!(
                out,
                ",\"refusal\":null,\"annotations\":[]}},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":{usage}"
            );
            out.push_str(",\"service_tier\":\"default\",\"system_fingerprint\":\"");
            out.push_str(FINGERPRINT);
            out.push_str("\"}");
            return self.json_ok(out, behaviour);
        }

        let include_usage = req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let prefix = format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{},\"service_tier\":\"default\",\"system_fingerprint\":\"{FINGERPRINT}\",\"choices\":",
            json_str(&model)
        );
        let suffix = if include_usage {
            ",\"usage\":null}\n\n"
        } else {
            "}\n\n"
        };
        let chunk = |delta: &str, finish: &str| {
            let mut s = String::with_capacity(prefix.len() + delta.len() + 80);
            s.push_str(&prefix);
            s.push_str("[{\"index\":0,\"delta\":");
            s.push_str(delta);
            s.push_str(",\"logprobs\":null,\"finish_reason\":");
            s.push_str(finish);
            s.push('}');
            s.push(']');
            s.push_str(suffix);
            Bytes::from(s)
        };

        let mut events = VecDeque::with_capacity(self.shared.chunks + 5);
        match &reply.answer {
            Answer::Text { text, .. } => {
                events.push_back(chunk(
                    "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
                    "null",
                ));
                for piece in split_pieces(text, self.shared.chunks) {
                    let mut delta = String::with_capacity(piece.len() + 16);
                    delta.push_str("{\"content\":");
                    push_json_str(&mut delta, piece);
                    delta.push('}');
                    events.push_back(chunk(&delta, "null"));
                }
            }
            Answer::Call { name, arguments } => {
                let mut delta = String::from(
                    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"",
                );
                delta.push_str(&call_id());
                delta.push_str("\",\"type\":\"function\",\"function\":{\"name\":");
                push_json_str(&mut delta, name);
                delta.push_str(",\"arguments\":\"\"}}],\"refusal\":null}");
                events.push_back(chunk(&delta, "null"));
                for piece in split_pieces(arguments, self.shared.chunks.max(2)) {
                    let mut delta =
                        String::from("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
                    push_json_str(&mut delta, piece);
                    delta.push_str("}}]}");
                    events.push_back(chunk(&delta, "null"));
                }
            }
        }
        if include_usage && self.shared.usage_on_finish {
            let last = chunk("{}", finish);
            let last = String::from_utf8_lossy(&last)
                .replace(",\"usage\":null}\n\n", &format!(",\"usage\":{usage}}}\n\n"));
            events.push_back(Bytes::from(last));
        } else {
            events.push_back(chunk("{}", finish));
        }
        if include_usage && !self.shared.usage_on_finish {
            events.push_back(Bytes::from(format!("{prefix}[],\"usage\":{usage}}}\n\n")));
        }
        events.push_back(Bytes::from_static(DONE_EVENT));
        self.stream_ok(EVENT_STREAM, events, behaviour, |_| {
            let err = error_json(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
                None,
            );
            Bytes::from(format!("data: {err}\n\n"))
        })
    }

    fn embeddings(&self, body: &[u8], behaviour: &Behaviour) -> Resp {
        let req: EmbeddingsRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return self.invalid_json(&e),
        };
        let Some(model) = req.model else {
            return self.bad_request("you must provide a model parameter", None, None);
        };
        let Some(input) = req.input else {
            return self.bad_request(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            );
        };
        let dims = match req.dimensions {
            None => 8,
            Some(d) if (1..=MAX_DIMENSIONS).contains(&d) => d as usize,
            Some(d) => {
                return self.bad_request(
                    &format!("Invalid 'dimensions': {d}. Expected a value between 1 and {MAX_DIMENSIONS}."),
                    Some("dimensions"),
                    Some("invalid_value"),
                );
            }
        };
        let base64_out = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return self.bad_request(
                    &format!("Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."),
                    Some("encoding_format"),
                    Some("invalid_value"),
                );
            }
        };
        let Some(items) = embedding_inputs(&input) else {
            return self.bad_request(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                None,
                None,
            );
        };

        let mut tokens = 0usize;
        let mut out = String::with_capacity(items.len() * (dims * 12 + 64) + 128);
        out.push_str("{\"object\":\"list\",\"data\":[");
        for (i, (seed, n)) in items.iter().enumerate() {
            tokens += n;
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"object\":\"embedding\",\"index\":{i},\"embedding\":"
            );
            let v = embedding_vector(*seed, dims);
            if base64_out {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                out.push('"');
                out.push_str(&base64(&bytes));
                out.push('"');
            } else {
                out.push('[');
                for (j, f) in v.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{f}");
                }
                out.push(']');
            }
            out.push('}');
        }
        out.push_str("],\"model\":");
        push_json_str(&mut out, &model);
        let _ = write!(
            out,
            ",\"usage\":{{\"prompt_tokens\":{tokens},\"total_tokens\":{tokens}}}}}"
        );
        self.json_ok(out, behaviour)
    }

    fn models(&self, behaviour: &Behaviour) -> Resp {
        let mut out = String::from("{\"object\":\"list\",\"data\":[");
        for (i, id) in self.shared.models.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_model(&mut out, id);
        }
        out.push_str("]}");
        self.json_ok(out, behaviour)
    }

    fn model(&self, id: &str, behaviour: &Behaviour) -> Resp {
        if self.shared.models.iter().any(|m| m == id) {
            let mut out = String::new();
            push_model(&mut out, id);
            self.json_ok(out, behaviour)
        } else {
            self.error(
                404,
                &format!("The model `{id}` does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            )
        }
    }
}

fn push_model(out: &mut String, id: &str) {
    out.push_str("{\"id\":");
    push_json_str(out, id);
    let _ = write!(
        out,
        ",\"object\":\"model\",\"created\":{MODEL_CREATED},\"owned_by\":\"fake\"}}"
    );
}

/// `(message, type, code)` of the error OpenAI sends with `status`.
fn default_error(status: u16) -> (&'static str, &'static str, Option<&'static str>) {
    const INVALID: &str = "invalid_request_error";
    match status {
        400 => ("Bad request.", INVALID, None),
        401 => (
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            INVALID,
            Some("invalid_api_key"),
        ),
        403 => (
            "Country, region, or territory not supported",
            "request_forbidden",
            Some("unsupported_country_region_territory"),
        ),
        404 => (
            "The model does not exist or you do not have access to it.",
            INVALID,
            Some("model_not_found"),
        ),
        408 => ("Request timed out.", INVALID, Some("request_timeout")),
        409 => ("Conflict.", INVALID, None),
        413 => ("Request too large.", INVALID, Some("request_too_large")),
        422 => ("Unprocessable entity.", INVALID, None),
        429 => (
            "Rate limit reached for requests. Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        502 => ("Bad gateway.", "server_error", None),
        503 | 529 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            Some("overloaded"),
        ),
        504 => ("Gateway timeout.", "server_error", None),
        s if (400..500).contains(&s) => ("Request failed.", INVALID, None),
        _ => (
            "The server had an error while processing your request.",
            "server_error",
            None,
        ),
    }
}

pub(crate) fn error_json(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> String {
    let mut out = String::with_capacity(message.len() + 96);
    out.push_str("{\"error\":{\"message\":");
    push_json_str(&mut out, message);
    out.push_str(",\"type\":");
    push_json_str(&mut out, kind);
    out.push_str(",\"param\":");
    match param {
        Some(p) => push_json_str(&mut out, p),
        None => out.push_str("null"),
    }
    out.push_str(",\"code\":");
    match code {
        Some(c) => push_json_str(&mut out, c),
        None => out.push_str("null"),
    }
    out.push_str("}}");
    out
}

/// Chat completions usage: cached tokens are part of `prompt_tokens`.
fn usage_json(u: &Usage) -> String {
    let (prompt, completion, cached) = (u.prompt + u.cache_read, u.completion, u.cache_read);
    format!(
        "{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":{cached},\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}",
        prompt + completion
    )
}

/// The tool a chat request makes the fake call: the forced one
/// (`{"type":"function","function":{"name":X}}`) or the first declared;
/// none without tools or with `tool_choice: "none"`.
fn openai_tool<'a>(tools: Option<&'a [Value]>, choice: Option<&'a Value>) -> Option<&'a str> {
    let first = tools?.first()?.get("function")?.get("name")?.as_str()?;
    match choice {
        Some(Value::String(s)) if s == "none" => None,
        Some(c) => Some(
            c.get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(first),
        ),
        None => Some(first),
    }
}

/// Applies the stream-shaping behaviours to `events` (see [`Behaviour`]):
/// returns the delay before the first event and how the body ends.
/// `EndWithoutDone` drops the last event (`[DONE]`, `message_stop`, ...);
/// `ErrorEventAfter(k)` keeps `k` events and appends `error(k)`.
pub(crate) fn shape_stream(
    events: &mut VecDeque<Bytes>,
    behaviour: &Behaviour,
    error: impl FnOnce(usize) -> Bytes,
) -> (Duration, End) {
    match behaviour {
        Behaviour::SlowFirstEvent(d) => return (*d, End::Complete),
        Behaviour::CutAfter(k) => {
            events.truncate(*k);
            return (Duration::ZERO, End::Cut);
        }
        Behaviour::StallAfter(k) => {
            events.truncate(*k);
            return (Duration::ZERO, End::Stall);
        }
        Behaviour::EndWithoutDone => {
            events.pop_back();
        }
        Behaviour::ErrorEventAfter(k) => {
            events.truncate(*k);
            events.push_back(error(events.len()));
        }
        _ => {}
    }
    (Duration::ZERO, End::Complete)
}

/// One named SSE event: `event: <name>` and one `data:` line.
pub(crate) fn sse_event(name: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// The text of a message's `content`: a string, or the `text` of its parts.
pub(crate) fn content_text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            Cow::Owned(texts.join(" "))
        }
        _ => Cow::Borrowed(""),
    }
}

/// Splits `s` into `n` pieces of (nearly) equal character count; fewer if `s`
/// has fewer than `n` characters, and one empty piece if `s` is empty.
pub(crate) fn split_pieces(s: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    let total = bounds.len();
    if total == 0 {
        return vec![""];
    }
    let n = n.clamp(1, total);
    (0..n)
        .map(|k| {
            let a = bounds[k * total / n];
            let b = if k + 1 == n {
                s.len()
            } else {
                bounds[(k + 1) * total / n]
            };
            &s[a..b]
        })
        .collect()
}

/// `(seed, token count)` per input, or `None` if the input shape is invalid.
fn embedding_inputs(input: &Value) -> Option<Vec<(u64, usize)>> {
    fn text(s: &str) -> Option<(u64, usize)> {
        if s.is_empty() {
            return None;
        }
        Some((fnv1a(s.as_bytes()), s.chars().count().div_ceil(4).max(1)))
    }
    fn tokens(a: &[Value]) -> Option<(u64, usize)> {
        if a.is_empty() {
            return None;
        }
        let mut bytes = Vec::with_capacity(a.len() * 8);
        for t in a {
            bytes.extend_from_slice(&t.as_u64()?.to_le_bytes());
        }
        Some((fnv1a(&bytes), a.len()))
    }
    match input {
        Value::String(s) => Some(vec![text(s)?]),
        Value::Array(items) => match items.first()? {
            Value::String(_) => items.iter().map(|v| text(v.as_str()?)).collect(),
            Value::Number(_) => Some(vec![tokens(items)?]),
            Value::Array(_) => items.iter().map(|v| tokens(v.as_array()?)).collect(),
            _ => None,
        },
        _ => None,
    }
}

/// A deterministic unit-length vector derived from `seed`.
fn embedding_vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut state = seed;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            let x = splitmix64(&mut state) >> 40; // 24 bits
            (x as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    stop: Option<Value>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: Option<String>,
    content: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: Option<String>,
    input: Option<Value>,
    dimensions: Option<u64>,
    encoding_format: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pieces_is_even_and_lossless() {
        assert_eq!(split_pieces("abcdefgh", 4), vec!["ab", "cd", "ef", "gh"]);
        assert_eq!(split_pieces("abc", 4), vec!["a", "b", "c"]);
        assert_eq!(split_pieces("", 4), vec![""]);
        let s = "héllo wörld 😀!";
        assert_eq!(split_pieces(s, 5).concat(), s);
        assert_eq!(split_pieces(s, 5).len(), 5);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding_vector(fnv1a(b"hi"), 16);
        assert_eq!(a, embedding_vector(fnv1a(b"hi"), 16));
        assert_ne!(a, embedding_vector(fnv1a(b"ho"), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn embedding_input_shapes() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(embedding_inputs(&v(r#""abcdefgh""#)).unwrap()[0].1, 2);
        assert_eq!(embedding_inputs(&v(r#"["a","b","c"]"#)).unwrap().len(), 3);
        assert_eq!(
            embedding_inputs(&v("[1,2,3]")).unwrap(),
            vec![(embedding_inputs(&v("[[1,2,3]]")).unwrap()[0])]
        );
        assert_eq!(embedding_inputs(&v("[[1,2],[3]]")).unwrap().len(), 2);
        assert!(embedding_inputs(&v("[]")).is_none());
        assert!(embedding_inputs(&v(r#"["a",1]"#)).is_none());
        assert!(embedding_inputs(&v("{}")).is_none());
        assert!(embedding_inputs(&v(r#""""#)).is_none());
    }
}
