//! The OpenAI-compatible HTTP surface: thin axum handlers around the core pipeline.

use crate::live::Live;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use signalbox_core::body::{Peeked, check_fits, peek};
use signalbox_core::error::{ApiError, ErrorCode};
use signalbox_core::execute::{Exchange, Outcome, Payload, error_outcome, execute};
use signalbox_core::headers::*;
use signalbox_core::model::{AuthMode, EndpointKind, Snapshot, TargetAuth};
use signalbox_core::multipart;
use signalbox_core::plan::{StickyIds, plan};
use signalbox_core::resolve::{Resolution, resolve};
use signalbox_core::trace::{TraceRecord, TraceSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shared state of one running gateway.
#[derive(Clone)]
pub struct AppState {
    pub live: Arc<Live>,
    pub sink: TraceSink,
    pub in_flight: Arc<AtomicUsize>,
    /// Set on SIGTERM: `/ready` answers 503.
    pub draining: Arc<AtomicBool>,
    /// Cancelled when the shutdown timeout is over: open streams end with `stream_interrupted`.
    pub hard_stop: CancellationToken,
}

impl AppState {
    pub fn new(live: Arc<Live>, sink: TraceSink) -> Self {
        AppState {
            live,
            sink,
            in_flight: Arc::new(AtomicUsize::new(0)),
            draining: Arc::new(AtomicBool::new(false)),
            hard_stop: CancellationToken::new(),
        }
    }
}

/// The proxied endpoints: path, endpoint kind, path under the provider's base URL.
const PROXIED: [(&str, EndpointKind, &str); 7] = [
    (
        "/v1/chat/completions",
        EndpointKind::Chat,
        "/chat/completions",
    ),
    ("/v1/responses", EndpointKind::Chat, "/responses"),
    ("/v1/embeddings", EndpointKind::Embeddings, "/embeddings"),
    (
        "/v1/images/generations",
        EndpointKind::ImageGeneration,
        "/images/generations",
    ),
    (
        "/v1/audio/speech",
        EndpointKind::AudioSpeech,
        "/audio/speech",
    ),
    (
        "/v1/audio/transcriptions",
        EndpointKind::AudioTranscription,
        "/audio/transcriptions",
    ),
    (
        "/v1/audio/translations",
        EndpointKind::AudioTranscription,
        "/audio/translations",
    ),
];

fn proxied(path: &str) -> Option<(EndpointKind, &'static str)> {
    PROXIED
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|&(_, kind, upstream)| (kind, upstream))
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new();
    for (path, kind, upstream) in PROXIED {
        // The request is taken whole, so its headers move into the pipeline instead of being
        // cloned by a `HeaderMap` extractor.
        r = r.route(
            path,
            post(move |State(st): State<AppState>, req: Request| async move {
                let (parts, body) = req.into_parts();
                proxy(&st, kind, upstream, parts.headers, body).await
            }),
        );
    }
    r.route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(openai_shaped_rejections))
        .with_state(state)
}

/// The listener's service: `POST` to a proxied endpoint goes straight to the pipeline, the
/// rest (and any other method on those paths) through the router with the peer's address as
/// `ConnectInfo`. The router's matching, its per-request extensions and its layers of
/// futures cost ~4k instructions a request (BENCHMARKS.md), a tenth of the gateway's own.
#[derive(Clone)]
pub struct Front {
    shared: Arc<(Router, AppState)>,
    peer: std::net::SocketAddr,
}

impl Front {
    /// The front for one connection from `peer`.
    pub fn new(shared: Arc<(Router, AppState)>, peer: std::net::SocketAddr) -> Front {
        Front { shared, peer }
    }
}

/// A request's answer, boxed once. A panic while it is polled (a gateway bug) is answered
/// `500 internal` in the OpenAI shape instead of the connection dropping under the caller,
/// and logged. Caught around the poll of the box, so the request's (large) future is never
/// moved into another one to be guarded.
pub struct FrontFuture(std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>);

impl std::future::Future for FrontFuture {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => {
                tracing::error!("a request's handling panicked; answered 500 internal");
                // Never polled again: the answer below ends it.
                self.0 = Box::pin(std::future::pending());
                Poll::Ready(Ok(error_response(
                    &ApiError::internal(),
                    &signalbox_core::trace::new_trace_id().0,
                )))
            }
        }
    }
}

impl tower_service::Service<Request> for Front {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = FrontFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() == Method::POST
            && let Some((kind, upstream)) = proxied(req.uri().path())
        {
            let shared = self.shared.clone();
            return FrontFuture(Box::pin(async move {
                let (parts, body) = req.into_parts();
                proxy(&shared.1, kind, upstream, parts.headers, body).await
            }));
        }
        let head_bytes = req.headers().iter().map(header_bytes).sum();
        if let Some(err) = head_too_large(head_bytes) {
            let out = error_response(&err, &signalbox_core::trace::new_trace_id().0);
            return FrontFuture(Box::pin(std::future::ready(out)));
        }
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let mut router = self.shared.0.clone();
        let routed = tower_service::Service::call(&mut router, req);
        FrontFuture(Box::pin(async move {
            routed.await.unwrap_or_else(|e| match e {})
        }))
    }
}

/// Most bytes of request headers (names and values) a request may carry. HTTP/1 requests
/// with more than 100 header fields are refused by the HTTP layer before this (431, no body).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A header's share of [`MAX_HEADER_BYTES`]: its name, value, `: ` and line end.
fn header_bytes((name, value): (&http::HeaderName, &HeaderValue)) -> usize {
    name.as_str().len() + value.len() + 4
}

/// 431 when the request's headers add up to more than [`MAX_HEADER_BYTES`].
fn head_too_large(head_bytes: usize) -> Option<ApiError> {
    (head_bytes > MAX_HEADER_BYTES).then(|| {
        ApiError::bad_request(format!(
            "request headers are larger than {} KiB",
            MAX_HEADER_BYTES / 1024
        ))
        .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    })
}

/// Counts a request in flight until dropped (for streams: until the stream ends).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Rejections the framework answers itself (a path parameter that does not decode, a body
/// over the admin limit, a wrong method) come in plain text or with no body; a caller gets
/// the same OpenAI-shaped error as for every other failure. A layer on the routers (the
/// proxied `POST`s never pass through it).
pub async fn openai_shaped_rejections(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.headers().contains_key(X_ERROR_CODE)
    {
        return resp;
    }
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(ct.is_empty() || ct.starts_with("text/plain")) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if status.is_server_error() {
        // Never the framework's own words about a failure of the gateway's.
        message = "the gateway failed to handle the request".into();
    } else if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_ascii_lowercase();
    }
    let code = if status.is_server_error() {
        ErrorCode::Internal
    } else {
        ErrorCode::BadRequest
    };
    let err = ApiError::new(code, message).with_status(status);
    let mut out = error_response(&err, &signalbox_core::trace::new_trace_id().0);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

fn error_response(err: &ApiError, request_id: &str) -> Response {
    into_response(error_outcome(err, HeaderMap::new()), request_id, None, None)
}

fn into_response(
    outcome: Outcome,
    request_id: &str,
    guard: Option<InFlight>,
    inbound: Option<&HeaderMap>,
) -> Response {
    let body = match outcome.payload {
        Payload::Full(b) => {
            drop(guard);
            Body::from(b)
        }
        Payload::Stream(s) => Body::from_stream(s.map(move |chunk| {
            let _hold = &guard;
            chunk
        })),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = outcome.status;
    *resp.headers_mut() = outcome.headers;
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    if let Some(inb) = inbound {
        for name in [TRACEPARENT, TRACESTATE] {
            for v in inb.get_all(&name) {
                resp.headers_mut().append(name.clone(), v.clone());
            }
        }
    }
    resp
}

/// A header's text: trimmed, and `None` when empty or not visible ASCII.
/// The longest caller-given id (`x-request-id`, user and session ids) a trace keeps; the
/// rest is cut (and sticky assignment hashes the id as kept).
const MAX_ID_CHARS: usize = 256;

/// `s` cut to at most `max` characters.
fn capped(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// As [`text`], but a value with bytes outside visible ASCII (UTF-8, say) is read instead of
/// dropped: UTF-8 as it is, any byte that is not UTF-8 as `%XX`, so two different ids never
/// read the same.
fn lossy(v: Option<&HeaderValue>) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    use std::fmt::Write;
    let v = v?;
    match v.to_str() {
        Ok(s) => Some(Cow::Borrowed(s.trim())),
        Err(_) => {
            let mut out = String::with_capacity(v.len());
            for chunk in v.as_bytes().utf8_chunks() {
                out.push_str(chunk.valid());
                for b in chunk.invalid() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            Some(Cow::Owned(out.trim().to_string()))
        }
    }
    .filter(|s| !s.is_empty())
}

fn text(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The request headers the gateway reads, each its first value, found in one pass over the
/// caller's headers (a dozen map lookups cost ~2k instructions a request).
#[derive(Default)]
pub struct Inbound<'h> {
    request_id: Option<&'h HeaderValue>,
    user_id: Option<&'h HeaderValue>,
    session_id: Option<&'h HeaderValue>,
    traceparent: Option<&'h HeaderValue>,
    content_type: Option<&'h HeaderValue>,
    content_length: Option<&'h HeaderValue>,
    content_encoding: Option<&'h HeaderValue>,
    signalbox_authorization: Option<&'h HeaderValue>,
    to11_authorization: Option<&'h HeaderValue>,
    authorization: Option<&'h HeaderValue>,
    x_api_key: Option<&'h HeaderValue>,
    signalbox_project: Option<&'h HeaderValue>,
    to11_project: Option<&'h HeaderValue>,
    /// A valid `traceparent` came: it and `tracestate` are echoed on the answer.
    trace_context: bool,
    /// Bytes of all the headers, names and values (see [`MAX_HEADER_BYTES`]).
    head_bytes: usize,
}

impl<'h> Inbound<'h> {
    pub fn of(headers: &'h HeaderMap) -> Self {
        let mut i = Inbound::default();
        for (name, value) in headers {
            i.head_bytes += header_bytes((name, value));
            let slot = match name.as_str() {
                "content-type" => &mut i.content_type,
                "content-length" => &mut i.content_length,
                "content-encoding" => &mut i.content_encoding,
                "authorization" => &mut i.authorization,
                X_API_KEY => &mut i.x_api_key,
                "x-request-id" => &mut i.request_id,
                X_SIGNALBOX_AUTHORIZATION => &mut i.signalbox_authorization,
                X_TO11_AUTHORIZATION => &mut i.to11_authorization,
                X_SIGNALBOX_PROJECT_ID => &mut i.signalbox_project,
                X_TO11_PROJECT_ID => &mut i.to11_project,
                X_USER_ID => &mut i.user_id,
                X_SESSION_ID => &mut i.session_id,
                // An invalid `traceparent` (W3C) is ignored, its `tracestate` with it: not
                // recorded, echoed or sent upstream.
                "traceparent" => {
                    if i.traceparent.is_none() && valid_traceparent(value.as_bytes()) {
                        i.trace_context = true;
                    }
                    &mut i.traceparent
                }
                "tracestate" => continue,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        if !i.trace_context {
            i.traceparent = None;
        }
        i
    }
}

/// The key in a credential header's value: without its `Bearer` scheme (repeated ones too: a
/// wrapped key is still that key, and a gateway key wrapped twice must not pass for a provider
/// key), or `None` when nothing is left or what is left is not one token (another scheme,
/// such as `Basic ...`, is no key the gateway can use or forward).
fn key_of(v: &str) -> Option<&str> {
    let mut v = v.trim();
    while let Some(p) = v.get(..6)
        && p.eq_ignore_ascii_case("bearer")
        && v[6..].chars().next().is_none_or(char::is_whitespace)
    {
        v = v[6..].trim_start();
    }
    (!v.is_empty() && !v.contains(char::is_whitespace)).then_some(v)
}

/// Who is calling: the project, the key id, and the caller's own provider key if any.
pub struct Caller {
    pub project: String,
    pub key_id: Option<String>,
    pub caller_key: Option<String>,
}

pub fn authenticate(snap: &Snapshot, h: &Inbound<'_>) -> Result<Caller, ApiError> {
    let sb = text(h.signalbox_authorization).or_else(|| text(h.to11_authorization));
    let authz = text(h.authorization).and_then(key_of);
    let x_api_key = text(h.x_api_key).and_then(key_of);
    let (gateway_key, caller_key) = match sb {
        Some(k) => (key_of(k), authz.or(x_api_key)),
        None => (authz, x_api_key),
    };
    let project_header = text(h.signalbox_project).or_else(|| text(h.to11_project));
    // Both project headers sent must name the same project (each is checked, not the first).
    if let (Some(a), Some(b)) = (text(h.signalbox_project), text(h.to11_project))
        && a != b
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "x-signalbox-project-id '{a}' and x-to11-project-id '{b}' name different projects"
            ),
        ));
    }
    if snap.server.auth == AuthMode::Off {
        // With the gateway key in x-signalbox-authorization or none at all, `Authorization`
        // (else `x-api-key`) is the caller's own provider key.
        let caller_key = authz.or(x_api_key);
        let project = project_header.unwrap_or("default").to_string();
        if snap.project(&project).is_none() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("unknown project '{project}'"),
            ));
        }
        return Ok(Caller {
            project,
            key_id: None,
            caller_key: not_a_gateway_key(snap, caller_key),
        });
    }
    let Some(key) = gateway_key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::auth(
            "missing gateway key: send it as `Authorization: Bearer <key>` or `x-signalbox-authorization: Bearer <key>`",
        ));
    };
    let Some(entry) = snap.key(key) else {
        return Err(ApiError::auth("invalid gateway key"));
    };
    if let Some(p) = project_header
        && p != entry.project
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this key does not belong to project '{p}'"),
        ));
    }
    Ok(Caller {
        project: entry.project.clone(),
        key_id: Some(entry.id.clone()),
        caller_key: not_a_gateway_key(snap, caller_key),
    })
}

/// The client did not finish sending its body within the request deadline.
fn body_timeout() -> ApiError {
    ApiError::new(
        ErrorCode::Timeout,
        "the request body did not arrive within the request deadline",
    )
    .with_status(StatusCode::REQUEST_TIMEOUT)
}

/// A caller key equal to a gateway key is never forwarded: the gateway key must not leave.
fn not_a_gateway_key(snap: &Snapshot, key: Option<&str>) -> Option<String> {
    key.filter(|k| !snap.keys.contains_key(&snap.key_hasher.hash(k)))
        .map(str::to_string)
}

/// Read a JSON body of at most `limit` bytes. Over the limit, the error comes with the body
/// still unread, to be [`drain`]ed.
async fn read_limited(
    mut body: Body,
    limit: usize,
    content_length: Option<&str>,
) -> Result<bytes::Bytes, (ApiError, Option<Body>)> {
    let too_large = || {
        ApiError::bad_request(format!(
            "request body is larger than the limit of {limit} bytes"
        ))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if let Some(len) = content_length.and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err((too_large(), Some(body)));
    }
    let mut gathered = signalbox_core::body::Gathered::default();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers
            },
            Err(e) if client_went_away(&e) => {
                return Err((
                    ApiError::bad_request(
                        "the client closed the connection before sending the whole body",
                    )
                    .with_status(CLIENT_CLOSED_STATUS),
                    None,
                ));
            }
            Err(_) => {
                return Err((
                    ApiError::bad_request("could not read the request body"),
                    None,
                ));
            }
        };
        if gathered.len() + data.len() > limit {
            return Err((too_large(), Some(body)));
        }
        gathered.push(data);
    }
    Ok(gathered.into_bytes())
}

/// Most bytes, and longest, a request body refused before it was read is still taken in for:
/// long enough for a client that sends its whole body before reading (most HTTP clients) to
/// get to the answer instead of a reset connection.
const DRAIN_MAX_BYTES: usize = 64 << 20;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Read and discard what is left of a refused request's body, in a task of its own, up to
/// [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`]: the answer goes out meanwhile, and the
/// connection closes only after the client has sent what it meant to (closing with unread
/// bytes resets it, and the client sees a broken connection instead of the answer).
fn drain(body: Body) {
    tokio::spawn(async move {
        let mut body = body;
        let mut taken = 0usize;
        let read = async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    taken += d.len();
                    if taken > DRAIN_MAX_BYTES {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, read).await;
    });
}

/// The status a request whose client went away is traced with (with code `client_closed`);
/// no one receives it.
const CLIENT_CLOSED_STATUS: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Whether a body read failed because the client closed or reset its connection.
fn client_went_away(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    signalbox_core::providers::transport::caused_by(e, |err| {
        err.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed())
            || err.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
                )
            })
    })
}

/// (A function returning an `async move` block, not an `async fn`: an `async fn` keeps a
/// second copy of its by-value arguments in its state.)
#[allow(clippy::manual_async_fn)] // see the comment above
fn proxy(
    st: &AppState,
    endpoint: EndpointKind,
    upstream_path: &'static str,
    headers: HeaderMap,
    body: Body,
) -> impl Future<Output = Response> {
    async move {
        let started = Instant::now();
        let (request_id, time_unix_ms) = signalbox_core::trace::new_trace_id();
        let snap = st.live.snapshot();
        let inb = Inbound::of(&headers);
        // The caller's trace context (a valid one) is echoed on the answer.
        let echo = inb.trace_context.then_some(&headers);
        let mut trace = Box::new(TraceRecord {
            id: request_id.clone(),
            client_request_id: text(inb.request_id).map(|v| capped(v, MAX_ID_CHARS).to_string()),
            time_unix_ms,
            endpoint: endpoint.as_str(),
            // Ids are whatever bytes the caller's stack sent (UTF-8 often): read, not dropped.
            user_id: lossy(inb.user_id).map(|v| capped(&v, MAX_ID_CHARS).to_string()),
            session_id: lossy(inb.session_id).map(|v| capped(&v, MAX_ID_CHARS).to_string()),
            traceparent: text(inb.traceparent).map(str::to_string),
            otel: signalbox_core::otlp::enabled()
                .then(|| signalbox_core::otlp::SpanIds::new(text(inb.traceparent))),
            ..Default::default()
        });
        // `headers`: what the answer says beside the error (the route, once resolved).
        let fail_with = |err: ApiError, mut trace: Box<TraceRecord>, headers: HeaderMap| {
            trace.status = err.status.as_u16();
            trace.error_code = Some(if err.status == CLIENT_CLOSED_STATUS {
                signalbox_core::execute::CLIENT_CLOSED
            } else {
                err.code.as_str()
            });
            trace.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            st.sink.record(*trace);
            into_response(error_outcome(&err, headers), &request_id, None, echo)
        };
        let fail = |err: ApiError, trace: Box<TraceRecord>| fail_with(err, trace, HeaderMap::new());

        // Refused before its body is read: the body is still taken in (`drain`), so the
        // client gets to the end of sending it and reads the answer.
        if let Some(err) = head_too_large(inb.head_bytes) {
            drain(body);
            return fail(err, trace);
        }
        let max = snap.server.max_in_flight;
        if st.in_flight.fetch_add(1, Ordering::Relaxed) >= max {
            st.in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut err = ApiError::new(
                ErrorCode::Overloaded,
                format!("the gateway is at its limit of {max} requests in flight; retry shortly"),
            );
            err.retry_after = Some(1);
            drain(body);
            return fail(err, trace);
        }
        let guard = InFlight(st.in_flight.clone());

        let caller = match authenticate(&snap, &inb) {
            Ok(c) => c,
            Err(e) => {
                drain(body);
                return fail(e, trace);
            }
        };
        let Caller {
            project,
            key_id,
            caller_key,
        } = caller;
        trace.project = project;
        trace.key_id = key_id;
        if let Some(enc) = text(inb.content_encoding)
            && !enc.eq_ignore_ascii_case("identity")
        {
            let err = ApiError::bad_request(format!(
            "request bodies with Content-Encoding '{}' are not accepted; send the body uncompressed",
            capped(enc, 64)
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            drain(body);
            return fail(err, trace);
        }
        let (bytes, peeked, multipart) = if upstream_path.starts_with("/audio/trans") {
            // An upload: read once into a replay store (memory, then a temporary file).
            let ct = text(inb.content_type);
            let boundary = match multipart::boundary_of(ct, &format!("POST /v1{upstream_path}")) {
                Ok(b) => b,
                Err(e) => {
                    drain(body);
                    return fail(e, trace);
                }
            };
            let limit = snap.server.max_upload_bytes;
            let read = multipart::ingest(body.into_data_stream(), boundary, limit);
            // Boxed: the upload reader's state would otherwise size every request's future.
            let read = Box::pin(async {
                tokio::time::timeout_at(started + snap.server.request_timeout, read)
                    .await
                    .unwrap_or_else(|_| Err(body_timeout()))
            });
            match read.await {
                Ok(m) if m.model.len() > signalbox_core::body::MAX_MODEL_BYTES => {
                    return fail(signalbox_core::body::model_too_long(), trace);
                }
                Ok(m) => {
                    let mut peeked = Peeked::for_model(m.model.clone());
                    peeked.stream = m.stream;
                    (bytes::Bytes::new(), peeked, Some(Arc::new(m)))
                }
                Err(e) => return fail(e, trace),
            }
        } else {
            if let Some(ct) = text(inb.content_type)
                && ct.starts_with("multipart/")
            {
                let err = ApiError::bad_request(format!(
                    "{} takes a JSON body, not {ct}",
                    endpoint.endpoint_hint()
                ))
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
                drain(body);
                return fail(err, trace);
            }
            let read = read_limited(body, snap.server.max_body_bytes, text(inb.content_length));
            let read = tokio::time::timeout_at(started + snap.server.request_timeout, read);
            let bytes = match read.await.unwrap_or_else(|_| Err((body_timeout(), None))) {
                Ok(b) => b,
                Err((e, rest)) => {
                    if let Some(rest) = rest {
                        drain(rest);
                    }
                    return fail(e, trace);
                }
            };
            match peek(&bytes) {
                Ok(p) => (bytes, p, None),
                Err(e) => return fail(e, trace),
            }
        };
        trace.requested_model = Some(peeked.model.clone());
        trace.stream = peeked.stream;
        let Some(ps) = snap.project(&trace.project) else {
            return fail(
                ApiError::new(ErrorCode::Forbidden, "the key's project no longer exists"),
                trace,
            );
        };
        if ps.capture_content {
            trace.content = Some(Box::new(signalbox_core::trace::Captured::of_request(
                &bytes,
            )));
        }
        let resolved = match resolve(ps, endpoint, &peeked.model) {
            Ok(r) => r,
            Err(e) => return fail(e, trace),
        };
        // Routing errors first (a wrong endpoint names the right one), then the body's shape.
        trace.layer = Some(resolved.layer());
        let label = resolved.label();
        trace.route = Some(label.to_string());
        if let Resolution::Route(r) = &resolved.resolution {
            trace.route_version = (r.version > 0).then_some(r.version);
        }
        // Refused after resolving: the answer names the route as the trace does, with no
        // attempt made.
        let routed = || {
            let mut h = HeaderMap::with_capacity(4);
            h.insert(X_ROUTE, resolved.label_header().clone());
            h.insert(X_ATTEMPTS, HeaderValue::from_static("0"));
            h
        };
        // After the resolution is on the trace: a body that does not fit its endpoint is
        // counted under its route.
        if let Err(e) = check_fits(upstream_path, &peeked) {
            return fail_with(e, trace, routed());
        }
        if let Resolution::Passthrough(t) = &resolved.resolution
            && matches!(t.auth, TargetAuth::Caller)
            && caller_key.is_none()
        {
            let err = ApiError::auth(format!(
                "model '{}' is served by passthrough to provider '{}': send your own provider key in `Authorization` (with the gateway key in `x-signalbox-authorization`) or `x-api-key`",
                peeked.model, t.provider.id
            ));
            return fail_with(err, trace, routed());
        }
        let ids = StickyIds {
            user: trace.user_id.as_deref(),
            session: trace.session_id.as_deref(),
            // An empty `user` is no id, as an empty header is none.
            body_user: peeked
                .user
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty()),
        };
        let plan = plan(&resolved.resolution, ids, snap.default_retry);
        trace.assigned_variant = plan.assigned_variant.clone();
        trace.sticky_source = plan.sticky.map(|s| s.as_str());
        let ex = Exchange {
            endpoint,
            upstream_path,
            body: bytes,
            peeked,
            multipart,
            inbound: &headers,
            caller_key,
            started,
            deadline: started + snap.server.request_timeout,
            shutdown: st.hard_stop.clone(),
            route_label: resolved.label_header().clone(),
        };
        let outcome = execute(ex, &plan, trace, st.sink.clone()).await;
        into_response(outcome, &request_id, Some(guard), echo)
    }
}

#[derive(serde::Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: String,
    endpoint: &'static str,
}

fn models_for(snap: &Snapshot, project: &str) -> Vec<ModelEntry> {
    let Some(ps) = snap.project(project) else {
        return Vec::new();
    };
    let mut out: Vec<ModelEntry> = Vec::new();
    // A name callable on two endpoint kinds is listed once for each.
    let mut seen = std::collections::HashSet::new();
    let mut push = |id: String, owner: String, kind: EndpointKind| {
        if seen.insert((id.clone(), kind)) {
            out.push(ModelEntry {
                id,
                object: "model",
                created: 0,
                owned_by: owner,
                endpoint: kind.as_str(),
            });
        }
    };
    for (name, r) in &ps.routes {
        push(format!("route::{name}"), "signalbox".into(), r.endpoint);
    }
    for (name, f) in &ps.functions {
        push(format!("function::{name}"), "signalbox".into(), f.endpoint);
    }
    for (model, r) in &ps.implicit {
        push(model.clone(), "signalbox".into(), r.endpoint);
    }
    for ((endpoint, model), _) in ps
        .route_models
        .iter()
        .collect::<std::collections::BTreeMap<_, _>>()
    {
        push(model.clone(), "signalbox".into(), *endpoint);
    }
    let mut pass: Vec<_> = ps.passthrough.iter().collect();
    pass.sort_by(|a, b| a.0.cmp(b.0));
    for ((provider, model), t) in pass {
        push(model.clone(), provider.clone(), t.endpoint);
        push(format!("{provider}::{model}"), provider.clone(), t.endpoint);
    }
    out
}

async fn list_models(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let request_id = signalbox_core::trace::new_trace_id().0;
    let snap = st.live.snapshot();
    let caller = match authenticate(&snap, &Inbound::of(&headers)) {
        Ok(c) => c,
        Err(e) => return error_response(&e, &request_id),
    };
    let data = models_for(&snap, &caller.project);
    let mut resp = axum::Json(serde_json::json!({"object": "list", "data": data})).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

async fn get_model(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = signalbox_core::trace::new_trace_id().0;
    let snap = st.live.snapshot();
    let caller = match authenticate(&snap, &Inbound::of(&headers)) {
        Ok(c) => c,
        Err(e) => return error_response(&e, &request_id),
    };
    let mut matching = models_for(&snap, &caller.project)
        .into_iter()
        .filter(|m| m.id == id);
    match matching.next() {
        Some(m) => {
            // A name callable on several endpoint kinds: `endpoint` is the first as listed,
            // `endpoints` all of them.
            let mut v = serde_json::to_value(&m).unwrap_or_default();
            let kinds: Vec<&str> = std::iter::once(m.endpoint)
                .chain(matching.map(|o| o.endpoint))
                .collect();
            v["endpoints"] = serde_json::json!(kinds);
            let mut resp = axum::Json(v).into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert(X_REQUEST_ID, v);
            }
            resp
        }
        None => error_response(
            &ApiError::new(
                ErrorCode::ModelNotFound,
                format!("model '{}' not found", capped(&id, 256)),
            )
            .with_param("model"),
            &request_id,
        ),
    }
}

async fn health(State(st): State<AppState>) -> Response {
    let snap = st.live.snapshot();
    let auth = match snap.server.auth {
        AuthMode::Keys => "keys",
        AuthMode::Off => "off",
    };
    axum::Json(serde_json::json!({
        "status": "ok",
        "auth": auth,
        "version": env!("CARGO_PKG_VERSION"),
        "config_version": st.live.version(),
    }))
    .into_response()
}

/// Prometheus metrics; with `[server] metrics_token` set, only for `Authorization: Bearer <token>`.
async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let snap = st.live.snapshot();
    if let Some(token) = &snap.server.metrics_token {
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme's case and the spaces around the token do not matter (RFC 7235).
            .and_then(|v| {
                let v = v.trim();
                v.get(..6)
                    .filter(|p| p.eq_ignore_ascii_case("bearer"))
                    .map(|_| v[6..].trim())
            });
        let ok = given.is_some_and(|g| {
            use sha2::Digest;
            // Compare digests: equal length, no early exit on the first differing byte.
            sha2::Sha256::digest(g.as_bytes()) == sha2::Sha256::digest(token.expose().as_bytes())
        });
        if !ok {
            let err = ApiError::auth(
                "a metrics token is required: send `Authorization: Bearer <metrics_token>`",
            );
            return error_response(&err, &signalbox_core::trace::new_trace_id().0);
        }
    }
    let m = st.sink.metrics();
    m.in_flight.set(st.in_flight.load(Ordering::Relaxed) as i64);
    m.config_version.set(st.live.version() as i64);
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

async fn ready(State(st): State<AppState>) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    if !st.live.store_reachable() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "store_unreachable", "config_version": st.live.version()})),
        )
            .into_response();
    }
    if !st.live.store_in_sync() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "store_config_rejected", "config_version": st.live.version()})),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({"status": "ready", "config_version": st.live.version()}))
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let request_id = signalbox_core::trace::new_trace_id().0;
    let err = ApiError::bad_request(format!("unknown endpoint: {method} {}", uri.path()))
        .with_status(StatusCode::NOT_FOUND);
    error_response(&err, &request_id)
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let request_id = signalbox_core::trace::new_trace_id().0;
    let err = ApiError::bad_request(format!("{method} is not allowed on {}", uri.path()))
        .with_status(StatusCode::METHOD_NOT_ALLOWED);
    error_response(&err, &request_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// Ids in caller headers are read whatever their bytes: UTF-8 as it is, other bytes as
    /// `%XX`, so two different ids never collapse into one (one sticky bucket, one filter).
    #[test]
    fn id_headers_keep_every_byte_apart() {
        let read = |b: &[u8]| {
            let v = HeaderValue::from_bytes(b).unwrap();
            lossy(Some(&v)).map(|c| c.into_owned())
        };
        assert_eq!(read("josé".as_bytes()).as_deref(), Some("josé"));
        assert_eq!(read(b"jos\xE9").as_deref(), Some("jos%E9"));
        assert_ne!(read(b"jos\xE9"), read(b"jos\xE8"));
        assert_eq!(read(b" user-1 ").as_deref(), Some("user-1"));
        assert_eq!(read(b"  "), None);
    }

    /// A handler that panics gets the caller a 500 `internal` in the OpenAI shape, with the
    /// gateway's headers, instead of a dropped connection; an answer that does not panic goes
    /// through untouched.
    #[tokio::test]
    async fn a_panicking_request_is_answered_500_internal() {
        let r = FrontFuture(Box::pin(async { panic!("a bug") }))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()["x-signalbox-error-code"], "internal");
        assert!(r.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(v["error"]["type"], "server_error");
        let ok = FrontFuture(Box::pin(async { StatusCode::ACCEPTED.into_response() }))
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::ACCEPTED);
    }
}
