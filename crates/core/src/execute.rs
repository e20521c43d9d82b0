//! Carrying out a plan: attempts, same-target retries with backoff, fallback, degraded
//! mode, the request deadline, and the commit point of a stream (SPEC section 4).
//!
//! An attempt goes connect -> response head -> (stream: first event) -> committed.
//! Before "committed" every failure is the plan's business; after it, only an in-band
//! SSE error event.

use crate::body::{Peeked, rewrite};
use crate::error::{ApiError, ErrorCode};
use crate::headers::*;
use crate::model::{EndpointKind, RetryPolicy, TargetAuth};
use crate::plan::{Plan, PlannedTarget};
use crate::providers::{
    self, BodyStream, FORWARDED_RESPONSE_HEADERS, OutBody, Outbound, SendError, TransportError,
};
use crate::sse::{EventInfo, Protocol, SseFramer, Usage, inspect_as};
use crate::trace::{AttemptRecord, TraceRecord, TraceSink, cost};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use rand::Rng;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

/// A response body as it is produced. An `Err` aborts the response mid-way (the client sees
/// a broken transfer, never a clean end), used for binary bodies that fail after the first byte.
pub type OutStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub enum Payload {
    Full(Bytes),
    Stream(OutStream),
}

/// What the caller gets back.
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub payload: Payload,
}

/// One request, as the executor needs it.
pub struct Exchange<'a> {
    pub endpoint: EndpointKind,
    /// Path under the provider's base URL, e.g. `/chat/completions`.
    pub upstream_path: &'static str,
    pub body: Bytes,
    pub peeked: Peeked,
    /// For uploads: the body kept for replay (then `body` is empty and `peeked` synthetic).
    pub multipart: Option<std::sync::Arc<crate::multipart::MultipartBody>>,
    pub inbound: &'a HeaderMap,
    pub caller_key: Option<String>,
    pub started: Instant,
    pub deadline: Instant,
    pub shutdown: CancellationToken,
    /// `x-signalbox-route` value.
    pub route_label: HeaderValue,
}

impl Exchange<'_> {
    /// The streaming protocol of this endpoint.
    pub fn protocol(&self) -> Protocol {
        match self.upstream_path {
            "/chat/completions" => Protocol::ChatCompletions,
            "/responses" => Protocol::Responses,
            // Image and speech streams: passed through, complete when the upstream closes.
            _ => Protocol::Passthrough,
        }
    }
}

fn hv(s: &str) -> Option<HeaderValue> {
    Some(crate::model::header_value(s))
}

/// Build an OpenAI-shaped error response with the gateway's error headers.
pub fn error_outcome(err: &ApiError, mut headers: HeaderMap) -> Outcome {
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(X_ERROR_CODE, HeaderValue::from_static(err.code.as_str()));
    if let Some(p) = err.upstream_provider.as_deref().and_then(hv) {
        headers.insert(X_UPSTREAM_PROVIDER, p);
    }
    match err.retry_after {
        Some(s) => {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        // A 429 always says when to come back (one from a stream's first error event, too).
        None if err.code == ErrorCode::RateLimit => {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        None => {}
    }
    if err.plan_spent {
        headers.insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
    }
    if let Some(id) = &err.upstream_request_id {
        headers.insert(X_UPSTREAM_REQUEST_ID, (**id).clone());
    }
    Outcome {
        status: err.status,
        headers,
        payload: Payload::Full(err.body()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailKind {
    /// The caller's own mistake or a content refusal: returned at once.
    Answer,
    /// Connect error, reset, 408, 429, 5xx: retried on the same target.
    Transient,
    /// No headers / first event in time: move on at once.
    Timeout,
    /// The target cannot serve (credential, model, TLS): move on.
    Target,
}

#[derive(Debug)]
struct Failure {
    kind: FailKind,
    /// The error the caller would get if this is the last failure.
    error: ApiError,
    retry_after: Option<Duration>,
    status: Option<u16>,
}

enum Success {
    Full {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    Stream {
        status: StatusCode,
        headers: HeaderMap,
        block: Bytes,
        ends: Vec<usize>,
        framer: SseFramer,
        body: BodyStream,
    },
    Raw {
        status: StatusCode,
        headers: HeaderMap,
        /// The answer's first bytes: the attempt commits only once they have come.
        first: Bytes,
        body: BodyStream,
    },
}

/// Run the plan and produce the response. The trace is finished here for buffered
/// answers, and by the stream itself for streams.
///
/// (A function returning an `async move` block, not an `async fn`: an `async fn` keeps a
/// second copy of its by-value arguments in its state, which is part of every request's.)
#[allow(clippy::manual_async_fn)] // see the comment above
pub fn execute<'a>(
    ex: Exchange<'a>,
    plan: &'a Plan,
    trace: Box<TraceRecord>,
    sink: TraceSink,
) -> impl Future<Output = Outcome> + 'a {
    async move {
        // POST /v1/responses reaches only targets whose adapter serves it: the others are left
        // out of the plan (nothing is sent to them), and a plan left empty is refused at once.
        let served: Plan;
        let plan = if ex.protocol() == Protocol::Responses
            && plan
                .targets
                .iter()
                .any(|e| !e.target.provider.kind.serves_responses_api())
        {
            let targets: Vec<PlannedTarget> = plan
                .targets
                .iter()
                .filter(|e| e.target.provider.kind.serves_responses_api())
                .cloned()
                .collect();
            if targets.is_empty() {
                let first = &plan.targets[0];
                let err = ApiError::bad_request(format!(
                "POST /v1/responses reaches only openai-kind providers for now; provider '{}' is {} (use POST /v1/chat/completions)",
                first.target.provider.id,
                first.target.provider.kind.as_str()
            ))
            .with_param("model");
                return finish_error(&ex, None, false, plan, 0, err, trace, &sink);
            }
            served = Plan {
                targets,
                assigned_variant: plan.assigned_variant.clone(),
                sticky: plan.sticky,
            };
            &served
        } else {
            plan
        };
        // Until an answer takes the trace over, a caller that goes away (the future is dropped)
        // still leaves a trace, with the attempt that was in flight.
        let mut guard = Pending {
            held: Some((trace, sink)),
            started: ex.started,
            in_flight: None,
        };
        let mut attempts = 0u32;
        let mut last: Option<(usize, Failure)> = None;
        let n = plan.targets.len();
        // (entry, max_retries, degraded): each target in turn, then one degraded-mode attempt.
        let order = (0..n)
            .map(|i| (i, plan.targets[i].retry.max_retries, false))
            .chain((n >= 2).then_some((0, 0, true)));
        'plan: for (idx, max_retries, degraded) in order {
            let entry = &plan.targets[idx];
            let mut retry = 0u32;
            loop {
                if Instant::now() >= ex.deadline {
                    break 'plan;
                }
                attempts += 1;
                let t0 = Instant::now();
                guard.in_flight = Some((entry.target.clone(), t0, retry, degraded));
                // With OTLP export on, the attempt's own span is the upstream's parent.
                let traceparent = guard
                    .held
                    .as_ref()
                    .and_then(|(t, _)| t.otel)
                    .and_then(|ids| ids.upstream_traceparent(attempts as usize - 1));
                // At the end of a shutdown's drain, requests still waiting on an upstream stop
                // with a clear error (and their trace) instead of being cut off with the process.
                let result = tokio::select! {
                    r = attempt(&ex, entry, traceparent) => r,
                    _ = ex.shutdown.cancelled() => Err(shutting_down()),
                };
                guard.in_flight = None;
                let stopped = ex.shutdown.is_cancelled()
                    && matches!(&result, Err(f) if f.error.code == ErrorCode::Overloaded);
                let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
                let (status, code) = match &result {
                    Ok(s) => (Some(s.status().as_u16()), None),
                    Err(f) => (f.status, Some(f.error.code.as_str())),
                };
                let started_ms = t0.duration_since(ex.started).as_secs_f64() * 1000.0;
                if let Some(t) = guard.trace_mut() {
                    t.attempts.push(AttemptRecord {
                        target: entry.target.clone(),
                        status,
                        error_code: code,
                        retry,
                        degraded,
                        started_ms,
                        latency_ms,
                    });
                }
                if stopped {
                    // The shutdown's drain ended with the attempt under way (it is on the
                    // trace, cut short).
                    last = result.err().map(|f| (idx, f));
                    break 'plan;
                }
                match result {
                    Ok(success) => {
                        let (trace, sink) = guard.take();
                        return respond(&ex, entry, plan, attempts, success, trace, sink);
                    }
                    Err(f) => {
                        tracing::debug!(target: "signalbox::attempt", provider = %entry.target.provider.id, target = %entry.target.name, code = ?f.error.code, status = ?f.status, retry, "attempt failed");
                        if f.kind == FailKind::Answer {
                            let mut err = f.error;
                            err.upstream_provider = Some(entry.target.provider.id.clone());
                            let (trace, sink) = guard.take();
                            return finish_error(
                                &ex,
                                Some(entry),
                                true,
                                plan,
                                attempts,
                                err,
                                trace,
                                &sink,
                            );
                        }
                        let kind = f.kind;
                        let retry_after = f.retry_after;
                        last = Some((idx, f));
                        if kind != FailKind::Transient || retry >= max_retries {
                            continue 'plan;
                        }
                        let policy = entry.retry;
                        let delay = match retry_after {
                            Some(ra) if ra > policy.backoff_max => continue 'plan,
                            Some(ra) => ra,
                            None => backoff(policy, retry),
                        };
                        if Instant::now() + delay >= ex.deadline {
                            continue 'plan;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = ex.shutdown.cancelled() => {
                                last = Some((idx, shutting_down()));
                                break 'plan;
                            }
                        }
                        retry += 1;
                    }
                }
            }
        }
        let deadline_hit = Instant::now() >= ex.deadline;
        let (entry, mut err) = match last {
            Some((idx, f)) if !deadline_hit => (Some(&plan.targets[idx]), f.error),
            Some((idx, _)) => (
                Some(&plan.targets[idx]),
                ApiError::new(
                    ErrorCode::Timeout,
                    "the request deadline was reached before any provider answered",
                ),
            ),
            None => (
                None,
                ApiError::new(
                    ErrorCode::Timeout,
                    "the request deadline was reached before any provider answered",
                ),
            ),
        };
        // A shutdown is not the plan being spent: the client may well retry elsewhere.
        err.plan_spent = !ex.shutdown.is_cancelled();
        if let Some(e) = entry {
            err.upstream_provider = Some(e.target.provider.id.clone());
        }
        let (trace, sink) = guard.take();
        finish_error(&ex, entry, false, plan, attempts, err, trace, &sink)
    }
}

/// The trace of a request still being worked on. Dropped while it still holds the trace
/// (the caller disconnected before any answer), it records the request as status 499
/// `client_closed`, with the attempt that was in flight.
struct Pending {
    /// The trace and where it goes, until an answer takes them over.
    held: Option<(Box<TraceRecord>, TraceSink)>,
    started: Instant,
    in_flight: Option<(std::sync::Arc<crate::model::Target>, Instant, u32, bool)>,
}

/// The trace-only code of a request whose caller went away before its answer.
pub const CLIENT_CLOSED: &str = "client_closed";

impl Pending {
    fn trace_mut(&mut self) -> Option<&mut TraceRecord> {
        self.held.as_mut().map(|(t, _)| &mut **t)
    }

    /// Hand the trace and its sink over (called once, on the way out).
    fn take(&mut self) -> (Box<TraceRecord>, TraceSink) {
        match self.held.take() {
            Some(h) => h,
            // Unreachable: execute() takes them once, on its way out.
            None => (Box::default(), TraceSink::closed()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some((mut t, sink)) = self.held.take() else {
            return;
        };
        // Dropped while a panic unwinds: the caller is answered `500 internal` (the
        // listener's guard), and the trace says so, not that the client left.
        let (status, code) = if std::thread::panicking() {
            (500, ErrorCode::Internal.as_str())
        } else {
            (499, CLIENT_CLOSED)
        };
        if let Some((target, t0, retry, degraded)) = self.in_flight.take() {
            t.attempts.push(AttemptRecord {
                target,
                status: None,
                error_code: Some(code),
                retry,
                degraded,
                started_ms: t0.duration_since(self.started).as_secs_f64() * 1000.0,
                latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
            });
        }
        t.status = status;
        t.error_code = Some(code);
        t.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        sink.record(*t);
    }
}

fn shutting_down() -> Failure {
    Failure {
        kind: FailKind::Target,
        error: ApiError::new(
            ErrorCode::Overloaded,
            "the gateway is shutting down; retry on another instance",
        ),
        retry_after: None,
        status: None,
    }
}

/// Exponential backoff with equal jitter: half the step fixed, half random.
fn backoff(policy: RetryPolicy, retry: u32) -> Duration {
    let step = policy
        .backoff_base
        .saturating_mul(1u32 << retry.min(20))
        .min(policy.backoff_max);
    let half = step / 2;
    let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
    half + Duration::from_micros(jitter)
}

impl Success {
    fn status(&self) -> StatusCode {
        match self {
            Success::Full { status, .. }
            | Success::Stream { status, .. }
            | Success::Raw { status, .. } => *status,
        }
    }
}

fn gateway_headers(
    ex: &Exchange<'_>,
    entry: Option<&PlannedTarget>,
    plan: &Plan,
    attempts: u32,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(12);
    h.insert(X_ROUTE, ex.route_label.clone());
    if let Some(e) = entry {
        h.insert(X_PROVIDER, e.target.provider.id_header.clone());
        h.insert(X_MODEL, e.target.model_header.clone());
        if let Some(v) = e.variant.as_ref().and_then(|v| hv(&v.name)) {
            h.insert(X_VARIANT, v.clone());
            h.insert(X_GATEWAY_VARIANT, v);
        }
    }
    if plan.assigned_variant.is_some() && entry.and_then(|e| e.variant.as_ref()).is_none() {
        // An experiment that failed everywhere still says which variant was assigned.
        if let Some(v) = plan.assigned_variant.as_deref().and_then(hv) {
            h.insert(X_VARIANT, v.clone());
            h.insert(X_GATEWAY_VARIANT, v);
        }
    }
    h.insert(X_ATTEMPTS, attempts_value(attempts));
    h
}

/// `x-signalbox-attempts`: small counts without an allocation.
fn attempts_value(attempts: u32) -> HeaderValue {
    const SMALL: [&str; 9] = ["0", "1", "2", "3", "4", "5", "6", "7", "8"];
    match SMALL.get(attempts as usize) {
        Some(v) => HeaderValue::from_static(v),
        None => HeaderValue::from(attempts),
    }
}

/// The variant's params and what the caller had sent for the same keys (null: nothing).
/// Parses the body again, but only for experiments whose variants set params. A field that
/// carries the caller's content is kept only when the project captures content.
fn overridden_params(
    body: &Bytes,
    params: &serde_json::Map<String, serde_json::Value>,
    capture: bool,
) -> serde_json::Value {
    let caller: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).unwrap_or_default();
    const CONTENT: &[&str] = &[
        "messages",
        "input",
        "prompt",
        "instructions",
        "prediction",
        "tools",
        "functions",
    ];
    let mine: serde_json::Map<String, serde_json::Value> = params
        .keys()
        .map(|k| {
            let v = match caller.get(k) {
                None => serde_json::Value::Null,
                Some(_) if !capture && CONTENT.contains(&k.as_str()) => {
                    serde_json::Value::String("(not recorded)".into())
                }
                Some(v) => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_json::json!({ "variant": params, "caller": mine })
}

/// The request ends with `err`: the answer of `entry` when `answered`, else the last failure
/// (or a refusal before any attempt).
#[allow(clippy::too_many_arguments)]
fn finish_error(
    ex: &Exchange<'_>,
    entry: Option<&PlannedTarget>,
    answered: bool,
    plan: &Plan,
    attempts: u32,
    err: ApiError,
    mut trace: Box<TraceRecord>,
    sink: &TraceSink,
) -> Outcome {
    trace.status = err.status.as_u16();
    trace.error_code = Some(err.code.as_str());
    trace.latency_ms = ex.started.elapsed().as_secs_f64() * 1000.0;
    // An error that is the answer (a 400 for a variant's params, say) was served by the entry
    // that gave it: the trace names that variant and its params, as the headers do. A failed
    // plan was served by none.
    let served = entry.filter(|_| answered);
    trace.serving_variant = served
        .and_then(|e| e.variant.as_ref())
        .map(|v| v.name.clone());
    if let Some(v) = served
        .and_then(|e| e.variant.as_ref())
        .filter(|v| !v.params.is_empty())
    {
        trace.params = Some(Box::new(overridden_params(
            &ex.body,
            &v.params,
            trace.content.is_some(),
        )));
    }
    sink.record(*trace);
    error_outcome(&err, gateway_headers(ex, entry, plan, attempts))
}

fn respond(
    ex: &Exchange<'_>,
    entry: &PlannedTarget,
    plan: &Plan,
    attempts: u32,
    success: Success,
    mut trace: Box<TraceRecord>,
    sink: TraceSink,
) -> Outcome {
    let mut headers = gateway_headers(ex, Some(entry), plan, attempts);
    trace.serving_variant = entry.variant.as_ref().map(|v| v.name.clone());
    if let Some(v) = entry.variant.as_ref().filter(|v| !v.params.is_empty()) {
        trace.params = Some(Box::new(overridden_params(
            &ex.body,
            &v.params,
            trace.content.is_some(),
        )));
    }
    // One pass over the upstream's headers (a handful) beats a lookup per allowed name.
    let copy_upstream = |up: &HeaderMap, headers: &mut HeaderMap| {
        for (name, v) in up {
            if name == http::header::CONTENT_TYPE || FORWARDED_RESPONSE_HEADERS.contains(name) {
                headers.insert(name.clone(), v.clone());
            } else if name == X_REQUEST_ID {
                headers.insert(X_UPSTREAM_REQUEST_ID, v.clone());
            }
        }
    };
    match success {
        Success::Full {
            status,
            headers: up,
            body,
        } => {
            copy_upstream(&up, &mut headers);
            trace.status = status.as_u16();
            set_answered_model(
                &mut headers,
                &entry.target.model,
                answer_model(&body).as_deref(),
            );
            // Usage and cost are read by the trace writer, after the answer has gone out.
            trace.unread_answer = Some((body.clone(), entry.target.price));
            trace.latency_ms = ex.started.elapsed().as_secs_f64() * 1000.0;
            if let Some(c) = trace.content.as_mut() {
                c.push_response(&body);
            }
            sink.record(*trace);
            Outcome {
                status,
                headers,
                payload: Payload::Full(body),
            }
        }
        Success::Raw {
            status,
            headers: up,
            first,
            body,
        } => {
            copy_upstream(&up, &mut headers);
            trace.status = status.as_u16();
            trace.ttft_ms = Some(ex.started.elapsed().as_secs_f64() * 1000.0);
            let fwd = RawForward {
                first: Some(first),
                body,
                idle: entry.target.timeouts.idle,
                ended: false,
                deadline: ex.deadline,
                shutdown: ex.shutdown.clone(),
                trace: Some((trace, sink)),
                started: ex.started,
            };
            Outcome {
                status,
                headers,
                payload: Payload::Stream(Box::pin(futures_util::stream::unfold(
                    fwd,
                    RawForward::next,
                ))),
            }
        }
        Success::Stream {
            status,
            headers: up,
            block,
            ends,
            framer,
            body,
        } => {
            copy_upstream(&up, &mut headers);
            headers.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            trace.status = status.as_u16();
            trace.ttft_ms = Some(ex.started.elapsed().as_secs_f64() * 1000.0);
            let first = ends
                .iter()
                .scan(0, |start, &end| {
                    let ev = &block[*start..end];
                    *start = end;
                    Some(ev)
                })
                .find(|ev| {
                    matches!(
                        inspect_as(ex.protocol(), ev),
                        EventInfo::Chunk { .. } | EventInfo::Terminal { .. }
                    )
                });
            let first_model = first
                .and_then(crate::sse::event_data)
                .and_then(|d| answer_model(&d).map(std::borrow::Cow::into_owned));
            set_answered_model(&mut headers, &entry.target.model, first_model.as_deref());
            let mut fwd = Forward {
                body,
                framer,
                out: VecDeque::new(),
                protocol: ex.protocol(),
                events: 0,
                strip_usage: ex.protocol() == Protocol::ChatCompletions && !ex.peeked.include_usage,
                idle: entry.target.timeouts.idle,
                deadline: ex.deadline,
                shutdown: ex.shutdown.clone(),
                finished: false,
                done: false,
                finish_seen: false,
                choices_seen: 0,
                choices_done: 0,
                failed: None,
                usage: None,
                invalid: 0,
                price: entry.target.price,
                started: ex.started,
                trace: Some((trace, sink)),
            };
            fwd.take_block(block, &ends);
            Outcome {
                status,
                headers,
                payload: Payload::Stream(Box::pin(futures_util::stream::unfold(
                    fwd,
                    Forward::next,
                ))),
            }
        }
    }
}

/// The `model` of a JSON answer: the first `"model"` key, with just its value parsed (the
/// answer's long content is not scanned). Inside JSON strings quotes are escaped, so this
/// byte pattern only matches a real key. (Its `usage` is read by the trace writer, through
/// [`crate::sse::last_usage`].)
fn answer_model(body: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static MODEL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"model\""));
    MODEL
        .find(body)
        .and_then(|i| string_after_key(&body[i + 7..]))
}

/// The string value after a key (`: "…"`), borrowed when it has no escapes.
fn string_after_key(rest: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let i = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = rest[i..].strip_prefix(b":")?;
    let i = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let quoted = &rest[i..];
    let text = quoted.strip_prefix(b"\"")?;
    let end = crate::sse::string_end(text, 0)?;
    match std::str::from_utf8(&text[..end]) {
        // No escape before the closing quote: the text as it is.
        Ok(s) if !s.contains('\\') => Some(std::borrow::Cow::Borrowed(s)),
        // Escapes: decoded by serde_json, quotes included.
        _ => serde_json::from_slice::<String>(&quoted[..end + 2])
            .ok()
            .map(std::borrow::Cow::Owned),
    }
}

/// `x-signalbox-model`: the model the upstream says answered (already set to the target's
/// model, which it usually is).
fn set_answered_model(headers: &mut HeaderMap, target_model: &str, model: Option<&str>) {
    if let Some(v) = model
        .filter(|m| !m.is_empty() && *m != target_model)
        .and_then(hv)
    {
        headers.insert(X_MODEL, v);
    }
}

/// The next chunk of an answer not committed yet, before `until`. Silence past it (`what`
/// it did not do in time), an end (`ended`: what that means) or a broken connection is the
/// target failing, and the plan goes on.
async fn chunk_before_commit(
    body: &mut BodyStream,
    until: Instant,
    pid: &str,
    status: StatusCode,
    what: &str,
    ended: &str,
) -> Result<Bytes, Failure> {
    match timeout_at(until, body.next()).await {
        Err(_) => Err(Failure {
            status: Some(status.as_u16()),
            ..timeout_failure(pid, what)
        }),
        Ok(None) => Err(Failure {
            kind: FailKind::Transient,
            error: ApiError::new(ErrorCode::Upstream, format!("provider '{pid}' {ended}")),
            retry_after: None,
            status: Some(status.as_u16()),
        }),
        Ok(Some(Err(e))) => Err(transport_failure(e, pid)),
        Ok(Some(Ok(chunk))) => Ok(chunk),
    }
}

/// Read at most `limit` bytes of a body before `until`.
async fn read_body(
    body: &mut BodyStream,
    limit: usize,
    until: Instant,
) -> Result<Bytes, Option<TransportError>> {
    let mut body_read = crate::body::Gathered::default();
    loop {
        match timeout_at(until, body.next()).await {
            Err(_) => return Err(None),
            Ok(None) => return Ok(body_read.into_bytes()),
            Ok(Some(Err(e))) => return Err(Some(e)),
            Ok(Some(Ok(chunk))) => {
                body_read.push(chunk);
                if body_read.len() >= limit {
                    return Ok(body_read.into_bytes());
                }
            }
        }
    }
}

fn transport_failure(e: TransportError, provider: &str) -> Failure {
    // A connect timeout is a timeout: on to the next target at once, 504 if it is the last.
    if let TransportError::ConnectTimeout(_) = e {
        return timeout_failure(provider, "accept a connection");
    }
    let (kind, message) = match &e {
        TransportError::Connect(_) | TransportError::ConnectTimeout(_) => (
            FailKind::Transient,
            format!("could not connect to provider '{provider}'"),
        ),
        TransportError::Reset(_) => (
            FailKind::Transient,
            format!("the connection to provider '{provider}' failed"),
        ),
        TransportError::Tls(_) => (
            FailKind::Target,
            format!("TLS failure talking to provider '{provider}'"),
        ),
    };
    Failure {
        kind,
        error: ApiError::new(ErrorCode::Upstream, message),
        retry_after: None,
        status: None,
    }
}

fn timeout_failure(provider: &str, what: &str) -> Failure {
    Failure {
        kind: FailKind::Timeout,
        error: ApiError::new(
            ErrorCode::Timeout,
            format!("provider '{provider}' did not {what} in time"),
        ),
        retry_after: None,
        status: None,
    }
}

async fn attempt(
    ex: &Exchange<'_>,
    entry: &PlannedTarget,
    traceparent: Option<HeaderValue>,
) -> Result<Success, Failure> {
    let t = &entry.target;
    let pid = t.provider.id.as_str();
    let force_usage = ex.peeked.stream
        && ex.protocol() == Protocol::ChatCompletions
        && ex.endpoint == EndpointKind::Chat
        && !ex.peeked.include_usage;
    let translated;
    let params = match entry.variant.as_ref().map(|v| &v.params) {
        Some(p) if !p.is_empty() && ex.protocol() == Protocol::Responses => {
            translated = crate::body::responses_params(p);
            Some(&translated)
        }
        p => p,
    };
    let answer = |e| Failure {
        kind: FailKind::Answer,
        error: e,
        retry_after: None,
        status: None,
    };
    let body = match &ex.multipart {
        None => OutBody::Json(
            rewrite(&ex.body, &ex.peeked, &t.model, params, force_usage).map_err(answer)?,
        ),
        Some(m) => {
            let (len, stream) = m.replay(&t.model).await.map_err(answer)?;
            OutBody::Multipart {
                content_type: m.content_type(),
                len,
                stream,
            }
        }
    };
    let head_until = match t.timeouts.headers {
        Some(d) => (Instant::now() + d).min(ex.deadline),
        None => ex.deadline,
    };
    let out = Outbound {
        target: t,
        path: ex.upstream_path,
        body,
        inbound: ex.inbound,
        caller_key: ex.caller_key.as_deref(),
        stream: ex.peeked.stream,
        traceparent,
    };
    let mut resp = match timeout_at(head_until, providers::send(out)).await {
        Err(_) => return Err(timeout_failure(pid, "send response headers")),
        Ok(Err(SendError::Transport(e))) => return Err(transport_failure(e, pid)),
        Ok(Err(SendError::Request(e))) => return Err(answer(e)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status;
    if !status.is_success() {
        let body = read_body(
            &mut resp.body,
            64 * 1024,
            head_until.min(Instant::now() + Duration::from_secs(10)),
        )
        .await
        .unwrap_or_default();
        return Err(scrubbed(
            classify_status(status, &resp.headers, &body, entry),
            ex,
            entry,
            &resp.headers,
        ));
    }
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_sse = content_type.is_some_and(|v| v.starts_with("text/event-stream"));
    let is_json = content_type.is_none_or(|v| v.contains("json") || v.starts_with("text/plain"));
    if ex.peeked.stream && is_sse {
        let first_until = (Instant::now() + t.timeouts.first_byte).min(ex.deadline);
        let mut framer = SseFramer::new();
        // Comment-only events (keep-alives) seen so far: held back, since a comment is not
        // an event and must neither commit the stream nor stop the first-event clock.
        let mut held = bytes::BytesMut::new();
        let mut held_ends: Vec<usize> = Vec::new();
        loop {
            let chunk = chunk_before_commit(
                &mut resp.body,
                first_until,
                pid,
                status,
                "send the first stream event",
                "ended the stream before its first event",
            )
            .await?;
            if framer.pending().len() + chunk.len() > MAX_EVENT_BYTES {
                return Err(Failure {
                    kind: FailKind::Target,
                    error: ApiError::new(
                        ErrorCode::Upstream,
                        format!(
                            "provider '{pid}' sent a first event larger than the gateway accepts"
                        ),
                    ),
                    retry_after: None,
                    status: Some(status.as_u16()),
                });
            }
            if let Some((block, ends)) = framer.push(&chunk) {
                let mut start = 0;
                let mut first = EventInfo::Empty;
                for &end in &ends {
                    first = inspect_as(ex.protocol(), &block[start..end]);
                    if first != EventInfo::Empty {
                        break;
                    }
                    start = end;
                }
                let base = held.len();
                held.extend_from_slice(&block);
                held_ends.extend(ends.iter().map(|e| e + base));
                if first == EventInfo::Empty {
                    continue;
                }
                if first == EventInfo::Error {
                    let ev = &held[..];
                    return Err(scrubbed(
                        first_event_error(ev, pid, status),
                        ex,
                        entry,
                        &resp.headers,
                    ));
                }
                return Ok(Success::Stream {
                    status,
                    headers: resp.headers,
                    block: held.freeze(),
                    ends: held_ends,
                    framer,
                    body: resp.body,
                });
            }
        }
    }
    // Chat, embeddings and image answers are JSON whatever the upstream labels them, as is
    // any answer labelled JSON: one that is not (an HTML error page with status 200, a cut
    // body) is the target failing, not an answer for the caller.
    let must_be_json = matches!(
        ex.endpoint,
        EndpointKind::Chat | EndpointKind::Embeddings | EndpointKind::ImageGeneration
    ) || content_type.is_some_and(|v| v.contains("json"));
    if !is_json && !ex.peeked.stream && !must_be_json {
        // Binary answers (audio) stream through as they arrive, once their first bytes have:
        // until then a reset, a silence past the first-byte limit or an empty answer is the
        // target failing, and the plan goes on.
        let first_until = (Instant::now() + t.timeouts.first_byte).min(ex.deadline);
        loop {
            let first = chunk_before_commit(
                &mut resp.body,
                first_until,
                pid,
                status,
                "send the first bytes of its answer",
                "sent an empty answer",
            )
            .await?;
            if !first.is_empty() {
                return Ok(Success::Raw {
                    status,
                    headers: resp.headers,
                    first,
                    body: resp.body,
                });
            }
        }
    }
    match read_body(&mut resp.body, MAX_ANSWER_BYTES + 1, head_until).await {
        Ok(body) if body.len() > MAX_ANSWER_BYTES => Err(Failure {
            kind: FailKind::Target,
            error: ApiError::new(
                ErrorCode::Upstream,
                format!("provider '{pid}' sent an answer larger than {MAX_ANSWER_BYTES} bytes"),
            ),
            retry_after: None,
            status: Some(status.as_u16()),
        }),
        Ok(body) if must_be_json && !looks_like_json(&body) => Err(Failure {
            kind: FailKind::Transient,
            error: ApiError::new(
                ErrorCode::Upstream,
                format!("provider '{pid}' sent an answer that is not JSON"),
            )
            .with_status(StatusCode::BAD_GATEWAY),
            retry_after: None,
            status: Some(status.as_u16()),
        }),
        Ok(body) => Ok(Success::Full {
            status,
            headers: resp.headers,
            body,
        }),
        Err(None) => Err(Failure {
            status: Some(status.as_u16()),
            ..timeout_failure(pid, "finish its answer")
        }),
        Err(Some(e)) => Err(transport_failure(e, pid)),
    }
}

/// An upstream failure as the caller may see it: its message never carries a key (the
/// target's own credential, the caller's key, or a key in a URL the message quotes), and
/// it keeps the upstream's request id (`x-signalbox-upstream-request-id`).
fn scrubbed(
    mut f: Failure,
    ex: &Exchange<'_>,
    entry: &PlannedTarget,
    upstream: &HeaderMap,
) -> Failure {
    f.error.upstream_request_id = upstream.get(X_REQUEST_ID).cloned().map(Box::new);
    let own = match &entry.target.auth {
        TargetAuth::Credential(s) => Some(s.expose()),
        _ => None,
    };
    f.error.message = scrub_keys(
        std::mem::take(&mut f.error.message),
        &[own, ex.caller_key.as_deref()],
    );
    f
}

/// `message` with each of `secrets` (and any `key=` URL parameter value, the way Gemini
/// takes its key) replaced by `***`.
fn scrub_keys(message: String, secrets: &[Option<&str>]) -> String {
    let mut out = message;
    for s in secrets.iter().flatten().filter(|s| s.len() >= 4) {
        if out.contains(s) {
            out = out.replace(s, "***");
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("key=") {
        let start = from + i + 4;
        let before = out[..from + i].chars().last();
        let end = out[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '%'))
            .map_or(out.len(), |e| start + e);
        // `key=` as a parameter (after `?`, `&` or a word boundary), with a value.
        if end > start && before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            out.replace_range(start..end, "***");
            from = start + 3;
        } else {
            from = start;
        }
    }
    out
}

/// Whether a body passed through could be a JSON object or array: its first and last
/// non-blank bytes only (the answer is not parsed on its way through).
fn looks_like_json(body: &[u8]) -> bool {
    let body = body.trim_ascii();
    matches!(
        (body.first(), body.last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    )
}

/// A stream whose first event is an error: nothing has reached the caller, so it is
/// classified like an error status. Its code (the translating adapters write the gateway's
/// own codes; OpenAI writes its error types) decides whether to retry, move on or answer.
fn first_event_error(events: &[u8], pid: &str, status: StatusCode) -> Failure {
    let upstream = first_error_object(events);
    let message = upstream.as_ref().and_then(|u| u.message.clone());
    let failure = |kind, error| Failure {
        kind,
        error,
        retry_after: None,
        status: Some(status.as_u16()),
    };
    // Its `code` when that is a name the gateway knows, else its `type` (OpenAI gives
    // `invalid_request_error` as the type of `context_length_exceeded`), else a numeric `code`
    // read as an HTTP status (some OpenAI-compatible servers write `"code": 400`).
    let by_name = |name: &str| -> Option<ErrorClass> {
        Some(match name {
            "content_policy" | "content_filter" | "content_policy_violation" => ErrorClass::Content,
            "bad_request"
            | "invalid_request_error"
            | "BadRequestError"
            | "context_length_exceeded" => ErrorClass::Caller,
            "rate_limit" | "rate_limit_error" | "rate_limit_exceeded" => ErrorClass::RateLimit,
            "overloaded" | "overloaded_error" => ErrorClass::Overloaded,
            _ => return None,
        })
    };
    let code = upstream.as_ref().and_then(|u| u.code.as_ref());
    let class = code
        .and_then(|c| c.as_str())
        .and_then(by_name)
        .or_else(|| upstream.as_ref()?.kind.as_deref().and_then(by_name))
        .or_else(|| match code.and_then(serde_json::Value::as_u64)? {
            400 | 413 | 422 => Some(ErrorClass::Caller),
            429 => Some(ErrorClass::RateLimit),
            503 | 529 => Some(ErrorClass::Overloaded),
            _ => None,
        });
    match class {
        Some(ErrorClass::Content) => failure(
            FailKind::Answer,
            ApiError::new(
                ErrorCode::ContentPolicy,
                message
                    .unwrap_or_else(|| "the provider's content filter refused the request".into()),
            ),
        ),
        Some(ErrorClass::Caller) => failure(
            FailKind::Answer,
            ApiError::bad_request(
                message.unwrap_or_else(|| format!("provider '{pid}' refused the request")),
            ),
        ),
        Some(ErrorClass::RateLimit) => failure(
            FailKind::Transient,
            ApiError::new(
                ErrorCode::RateLimit,
                format!("provider '{pid}' is rate limiting requests"),
            ),
        ),
        Some(ErrorClass::Overloaded) => failure(
            FailKind::Transient,
            ApiError::new(
                ErrorCode::Overloaded,
                format!("provider '{pid}' is overloaded"),
            ),
        ),
        None => failure(
            FailKind::Target,
            ApiError::new(
                ErrorCode::Upstream,
                format!("provider '{pid}' sent an error event"),
            ),
        ),
    }
}

/// What a first-event error from the upstream is, for [`first_event_error`].
enum ErrorClass {
    Content,
    Caller,
    RateLimit,
    Overloaded,
}

/// The error object of the first error event among `events` (whole SSE events).
fn first_error_object(events: &[u8]) -> Option<UpstreamError> {
    let mut framer = SseFramer::new();
    let (block, ends) = framer.push(events)?;
    let mut start = 0;
    for end in ends {
        let ev = &block[start..end];
        start = end;
        if let Some(d) = crate::sse::event_data(ev)
            && let Ok(b) = serde_json::from_slice::<UpstreamErrorBody>(&d)
            && b.error.is_some()
        {
            return b.error;
        }
    }
    None
}

/// The largest buffered (non-streamed) answer the gateway accepts from an upstream.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;
/// The largest single SSE event (image streams carry whole partial images in one event).
pub const MAX_EVENT_BYTES: usize = 32 * 1024 * 1024;

fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        // A value too large for a Duration is "longer than any backoff": move on.
        return Duration::try_from_secs_f64(secs)
            .ok()
            .or((secs.is_finite() && secs > 0.0).then_some(Duration::MAX));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[derive(serde::Deserialize)]
struct UpstreamErrorBody {
    error: Option<UpstreamError>,
}

#[derive(serde::Deserialize)]
struct UpstreamError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    entry: &PlannedTarget,
) -> Failure {
    let code = status.as_u16();
    let pid = entry.target.provider.id.as_str();
    let caller_key = matches!(entry.target.auth, TargetAuth::Caller);
    let upstream = serde_json::from_slice::<UpstreamErrorBody>(body)
        .ok()
        .and_then(|b| b.error);
    let retry_after = retry_after_of(headers);
    let fail = |kind, error: ApiError| Failure {
        kind,
        error,
        retry_after,
        status: Some(code),
    };
    let is_content_policy = upstream.as_ref().is_some_and(|u| {
        let c = u.code.as_ref().and_then(|c| c.as_str()).unwrap_or_default();
        let k = u.kind.as_deref().unwrap_or_default();
        c.contains("content_filter") || c.contains("content_policy") || k.contains("content_filter")
    });
    match code {
        408 => fail(
            FailKind::Transient,
            ApiError::new(
                ErrorCode::Timeout,
                format!("provider '{pid}' returned status 408"),
            )
            .with_status(StatusCode::GATEWAY_TIMEOUT),
        ),
        429 => {
            let mut e = ApiError::new(
                ErrorCode::RateLimit,
                format!("provider '{pid}' is rate limiting requests"),
            );
            // The caller always gets a `Retry-After`: the upstream's, in whole seconds (at
            // most a day), or one second when it sent none.
            e.retry_after =
                Some(retry_after.map_or(1, |d| (d.as_secs_f64().ceil() as u64).clamp(1, 86_400)));
            fail(FailKind::Transient, e)
        }
        500..=599 => {
            let ec = if code == 503 || code == 529 {
                ErrorCode::Overloaded
            } else {
                ErrorCode::Upstream
            };
            fail(
                FailKind::Transient,
                ApiError::new(ec, format!("provider returned status {code}")).with_status(status),
            )
        }
        401 | 403 if caller_key => fail(
            FailKind::Answer,
            ApiError::new(
                ErrorCode::Auth,
                format!("provider '{pid}' rejected the API key you sent (status {code})"),
            ),
        ),
        404 if caller_key => fail(
            FailKind::Answer,
            ApiError::new(
                ErrorCode::ModelNotFound,
                format!(
                    "provider '{pid}' does not know model '{}'",
                    entry.target.model
                ),
            )
            .with_param("model"),
        ),
        400 | 413 | 415 | 422 if is_content_policy => {
            let msg = upstream
                .and_then(|u| u.message)
                .unwrap_or_else(|| "the provider's content filter refused the request".into());
            fail(
                FailKind::Answer,
                ApiError::new(ErrorCode::ContentPolicy, msg),
            )
        }
        400 | 413 | 415 | 422 => {
            let (msg, param) = match upstream {
                Some(u) => (
                    u.message
                        .unwrap_or_else(|| format!("provider returned status {code}")),
                    u.param,
                ),
                None => (
                    format!("provider '{pid}' rejected the request with status {code}"),
                    None,
                ),
            };
            let mut e = ApiError::bad_request(msg).with_status(status);
            e.param = param;
            fail(FailKind::Answer, e)
        }
        400..=499 if caller_key => {
            let msg = upstream
                .and_then(|u| u.message)
                .unwrap_or_else(|| format!("provider returned status {code}"));
            fail(
                FailKind::Answer,
                ApiError::bad_request(msg).with_status(status),
            )
        }
        // A managed target's 401/403/404 (and other 4xx): the gateway's credential or
        // model is at fault, not the caller. The provider's message is dropped: it may
        // quote part of the key.
        _ => fail(
            FailKind::Target,
            ApiError::new(
                ErrorCode::Upstream,
                format!("provider '{pid}' rejected the gateway's request (status {code})"),
            ),
        ),
    }
}

/// `,"usage":null` as OpenAI writes it into each chunk of a stream asked for usage.
static USAGE_NULL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b",\"usage\":null"));
const USAGE_NULL_LEN: usize = 13;

/// Forwards a committed SSE stream event by event, completing or cutting it cleanly.
struct Forward {
    body: BodyStream,
    framer: SseFramer,
    out: VecDeque<Bytes>,
    protocol: Protocol,
    /// Events passed through so far (the next Responses API `sequence_number`).
    events: u64,
    strip_usage: bool,
    idle: Duration,
    deadline: Instant,
    shutdown: CancellationToken,
    finished: bool,
    done: bool,
    finish_seen: bool,
    choices_seen: u64,
    choices_done: u64,
    failed: Option<&'static str>,
    usage: Option<Usage>,
    invalid: u32,
    price: crate::model::Price,
    started: Instant,
    trace: Option<(Box<TraceRecord>, TraceSink)>,
}

impl Forward {
    fn take_block(&mut self, block: Bytes, ends: &[usize]) {
        let mut start = 0;
        let mut keep_from = 0;
        for &end in ends {
            let info = inspect_as(self.protocol, &block[start..end]);
            if info != EventInfo::Empty {
                self.events += 1;
            }
            match info {
                EventInfo::Terminal { usage } => {
                    if usage.is_some() {
                        self.usage = usage;
                    }
                    self.done = true;
                    self.out.push_back(block.slice(keep_from..end));
                    self.finished = true;
                    return;
                }
                EventInfo::Done => {
                    self.done = true;
                    self.out.push_back(block.slice(keep_from..end));
                    self.finished = true;
                    return;
                }
                EventInfo::Chunk {
                    choices,
                    finished,
                    usage,
                    usage_only,
                    ..
                } => {
                    self.choices_seen |= choices;
                    self.choices_done |= finished;
                    // Complete once every choice begun has its finish_reason (n > 1 streams
                    // interleave them).
                    self.finish_seen =
                        self.choices_seen != 0 && self.choices_seen & !self.choices_done == 0;
                    if usage.is_some() {
                        self.usage = usage;
                    }
                    if usage_only && self.strip_usage {
                        if start > keep_from {
                            self.out.push_back(block.slice(keep_from..start));
                        }
                        keep_from = end;
                    } else if self.strip_usage
                        && usage.is_some()
                        && let Some(fixed) = crate::sse::without_usage(&block[start..end])
                    {
                        // Some OpenAI-compatible servers put the usage asked for on the
                        // caller's behalf on the last chunk with choices: the member comes out.
                        if start > keep_from {
                            self.out.push_back(block.slice(keep_from..start));
                        }
                        self.out.push_back(Bytes::from(fixed));
                        keep_from = end;
                    } else if self.strip_usage
                        && let Some(at) = USAGE_NULL.find(&block[start..end])
                    {
                        // Asked for usage on the caller's behalf, the upstream writes
                        // `"usage":null` into every chunk: taken out, so the caller's stream
                        // is what it would have been without the question.
                        if start > keep_from {
                            self.out.push_back(block.slice(keep_from..start));
                        }
                        let ev = &block[start..end];
                        let mut fixed = Vec::with_capacity(ev.len());
                        fixed.extend_from_slice(&ev[..at]);
                        fixed.extend_from_slice(&ev[at + USAGE_NULL_LEN..]);
                        self.out.push_back(Bytes::from(fixed));
                        keep_from = end;
                    }
                }
                EventInfo::Error => {
                    // What came before goes out; the upstream's own error event becomes ours
                    // (its message may carry provider internals), and the stream ends.
                    if start > keep_from {
                        self.out.push_back(block.slice(keep_from..start));
                    }
                    self.interrupt("the provider reported an error mid-stream");
                    return;
                }
                EventInfo::Invalid => self.invalid += 1,
                EventInfo::Empty => {}
            }
            start = end;
        }
        if start > keep_from {
            self.out.push_back(block.slice(keep_from..start));
        }
    }

    fn interrupt(&mut self, why: &'static str) {
        let err = ApiError::new(
            ErrorCode::StreamInterrupted,
            format!("the stream was interrupted: {why}"),
        );
        self.out.push_back(match self.protocol {
            Protocol::ChatCompletions | Protocol::Passthrough => err.sse_event(),
            Protocol::Responses => err.responses_error_event(self.events),
        });
        self.failed = Some(why);
        self.finished = true;
    }

    /// The upstream stopped (ended, failed or went silent, or the deadline or shutdown came)
    /// without `[DONE]`: after a chunk
    /// with a `finish_reason` the answer is complete and gets its `[DONE]`; else it was cut.
    /// A half-sent event after the finish is dropped (it was never a whole event).
    fn end(&mut self, why: &'static str) {
        if self.finish_seen && self.protocol == Protocol::ChatCompletions {
            self.out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
            self.done = true;
            self.finished = true;
        } else {
            self.interrupt(why);
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            if let Some(b) = self.out.pop_front() {
                if let Some((t, _)) = self.trace.as_mut()
                    && let Some(c) = t.content.as_mut()
                {
                    c.push_response(&b);
                }
                return Some((Ok(b), self));
            }
            if self.finished {
                self.finish_trace();
                return None;
            }
            let until = (Instant::now() + self.idle).min(self.deadline);
            let shutdown = self.shutdown.clone();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => self.end("the gateway is shutting down"),
                r = timeout_at(until, self.body.next()) => match r {
                    Err(_) if Instant::now() >= self.deadline => self.end("the request deadline was reached"),
                    Err(_) => self.end("the provider stopped sending events"),
                    Ok(Some(Err(_))) => self.end("the connection to the provider failed"),
                    Ok(Some(Ok(chunk))) => {
                        if let Some((block, ends)) = self.framer.push(&chunk) {
                            self.take_block(block, &ends);
                        }
                        if self.framer.pending().len() > MAX_EVENT_BYTES {
                            self.interrupt("the provider sent an event larger than the gateway accepts");
                        }
                    }
                    Ok(None) => {
                        // A last event without its blank line is completed and inspected like
                        // any other (it may carry the finish_reason, or be a usage chunk to strip).
                        let rest = self.framer.take_pending();
                        let rest = rest.slice(..rest.trim_ascii_end().len());
                        if !rest.trim_ascii().is_empty() {
                            let mut ev = bytes::BytesMut::with_capacity(rest.len() + 2);
                            ev.extend_from_slice(&rest);
                            ev.extend_from_slice(b"\n\n");
                            let end = ev.len();
                            if inspect_as(self.protocol, &ev) == EventInfo::Invalid {
                                // Not JSON: the upstream was cut mid-event. A fragment is no
                                // event to pass on (after a finish it would come before
                                // `[DONE]`); it is counted.
                                self.invalid += 1;
                            } else {
                                self.take_block(ev.freeze(), &[end]);
                            }
                        }
                        if self.finished {
                            // The last event was `[DONE]` or an error event.
                        } else if self.protocol == Protocol::Passthrough {
                            self.done = true;
                            self.finished = true;
                        } else {
                            self.end("the provider ended the stream before it was complete");
                        }
                    }
                }
            }
        }
    }

    fn finish_trace(&mut self) {
        if let Some((mut t, sink)) = self.trace.take() {
            t.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            t.usage = self.usage;
            t.cost_usd = self.usage.as_ref().and_then(|u| cost(&self.price, u));
            t.invalid_stream_events = self.invalid;
            if (self.failed.is_some() || !self.done) && t.error_code.is_none() {
                t.error_code = Some(ErrorCode::StreamInterrupted.as_str());
            }
            sink.record(*t);
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let finished = self.finished;
        if let Some((t, _)) = self.trace.as_mut().filter(|_| !finished) {
            // The client went away: dropping `body` cancels the upstream request.
            t.error_code = Some("client_closed");
        }
        self.finish_trace();
    }
}

/// Forwards a binary answer (audio) as it arrives.
struct RawForward {
    /// The first bytes, read before the attempt committed.
    first: Option<Bytes>,
    body: BodyStream,
    idle: Duration,
    ended: bool,
    deadline: Instant,
    shutdown: CancellationToken,
    trace: Option<(Box<TraceRecord>, TraceSink)>,
    started: Instant,
}

impl RawForward {
    fn finish(&mut self, error: Option<&'static str>) {
        if let Some((mut t, sink)) = self.trace.take() {
            t.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            t.error_code = error;
            sink.record(*t);
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.ended {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        let shutdown = self.shutdown.clone();
        let until = (Instant::now() + self.idle).min(self.deadline);
        let r = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err("the gateway is shutting down"),
            r = timeout_at(until, self.body.next()) => match r {
                Err(_) => Err("the provider stopped sending"),
                Ok(Some(Err(_))) => Err("the connection to the provider failed"),
                Ok(Some(Ok(b))) => Ok(Some(b)),
                Ok(None) => Ok(None),
            },
        };
        match r {
            Ok(Some(b)) => Some((Ok(b), self)),
            Ok(None) => {
                self.finish(None);
                None
            }
            Err(why) => {
                // Abort the response: a truncated binary body must not look complete.
                self.ended = true;
                self.finish(Some(ErrorCode::StreamInterrupted.as_str()));
                Some((Err(std::io::Error::other(why)), self))
            }
        }
    }
}

impl Drop for RawForward {
    fn drop(&mut self) {
        if let Some((mut t, sink)) = self.trace.take() {
            t.error_code = Some("client_closed");
            t.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            sink.record(*t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> BodyStream {
        let items: Vec<Result<Bytes, TransportError>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    #[tokio::test]
    async fn answers_are_read_whole_whether_in_one_chunk_or_many() {
        let until = Instant::now() + Duration::from_secs(5);
        let one = read_body(&mut chunks(&[b"{\"a\":1}"]), 1024, until).await;
        assert_eq!(one.ok().as_deref(), Some(&b"{\"a\":1}"[..]));
        let many = read_body(&mut chunks(&[b"{\"a\"", b"", b":1", b"}"]), 1024, until).await;
        assert_eq!(many.ok().as_deref(), Some(&b"{\"a\":1}"[..]));
        let none = read_body(&mut chunks(&[]), 1024, until).await;
        assert_eq!(none.ok().as_deref(), Some(&b""[..]));
        // At the limit, reading stops: what was read comes back, whatever follows is left.
        let capped = read_body(&mut chunks(&[b"abc", b"def", b"ghi"]), 5, until).await;
        assert_eq!(capped.ok().as_deref(), Some(&b"abcdef"[..]));
        let big_first = read_body(&mut chunks(&[b"abcdefgh", b"ij"]), 5, until).await;
        assert_eq!(big_first.ok().as_deref(), Some(&b"abcdefgh"[..]));
    }

    use std::sync::Arc;

    /// Keeps the records it is given.
    struct Kept(std::sync::Mutex<Vec<TraceRecord>>);
    impl crate::trace::TraceStore for Kept {
        fn write(
            &self,
            batch: Vec<TraceRecord>,
        ) -> Pin<Box<dyn std::future::Future<Output = crate::trace::Written> + Send + '_>> {
            if let Ok(mut kept) = self.0.lock() {
                kept.extend(batch.iter().cloned());
            }
            Box::pin(async move { (batch, Ok(())) })
        }
    }

    /// A committed stream of `protocol` fed `parts` (then a clean end): what the caller gets,
    /// and the request's trace.
    async fn forwarded(
        protocol: Protocol,
        strip_usage: bool,
        parts: &[&'static [u8]],
    ) -> (String, TraceRecord) {
        let kept = Arc::new(Kept(Default::default()));
        let (sink, _writer) = TraceSink::start_with(
            16,
            CancellationToken::new(),
            Some(kept.clone()),
            Arc::new(crate::metrics::Metrics::new()),
        );
        let fwd = Forward {
            body: chunks(parts),
            framer: SseFramer::new(),
            out: VecDeque::new(),
            protocol,
            events: 0,
            strip_usage,
            idle: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(5),
            shutdown: CancellationToken::new(),
            finished: false,
            done: false,
            finish_seen: false,
            choices_seen: 0,
            choices_done: 0,
            failed: None,
            usage: None,
            invalid: 0,
            price: Default::default(),
            started: Instant::now(),
            trace: Some((Box::default(), sink)),
        };
        let out: Vec<Bytes> = futures_util::stream::unfold(fwd, Forward::next)
            .map(|r| r.unwrap())
            .collect()
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let trace = kept.0.lock().unwrap().pop().expect("a trace");
        (String::from_utf8(out.concat()).unwrap(), trace)
    }

    /// An error chunk that also carries a choice (finish_reason "error", as some
    /// OpenAI-compatible servers send it) is an upstream error mid-stream, not a finish: the
    /// stream ends with `stream_interrupted`, no `[DONE]`, and a failed trace.
    #[tokio::test]
    async fn an_error_chunk_with_a_choice_interrupts_the_stream() {
        let (out, trace) = forwarded(
            Protocol::ChatCompletions,
            false,
            &[
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
                b"data: {\"error\":{\"message\":\"backend down\"},\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"error\"}]}\n\n",
            ],
        )
        .await;
        assert!(out.contains("stream_interrupted"), "{out}");
        assert!(
            !out.contains("[DONE]") && !out.contains("backend down"),
            "{out}"
        );
        assert_eq!(trace.error_code, Some("stream_interrupted"));
    }

    /// A Responses stream that ends in `response.failed` is a failed request.
    #[tokio::test]
    async fn a_failed_response_is_a_failed_trace() {
        let (out, trace) = forwarded(
            Protocol::Responses,
            false,
            &[
                b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n",
                b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"x\"}}}\n\n",
            ],
        )
        .await;
        assert!(out.contains("stream_interrupted"), "{out}");
        assert_eq!(trace.error_code, Some("stream_interrupted"));
        let (_, trace) = forwarded(
            Protocol::Responses,
            false,
            &[b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n"],
        )
        .await;
        assert_eq!(trace.error_code, None);
    }

    /// A stream whose upstream closes cleanly in the middle of its last event: the fragment
    /// is not passed on (it would reach the caller before the gateway's `[DONE]`), it is
    /// counted; a last event that is whole but lacks its blank line still goes out.
    #[tokio::test]
    async fn a_fragment_at_the_end_of_a_stream_is_dropped_and_counted() {
        let finish: &[u8] =
            b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let (out, trace) = forwarded(
            Protocol::ChatCompletions,
            true,
            &[finish, b"data: {\"choices\":[],\"usage\":{\"prompt_tok"],
        )
        .await;
        assert_eq!(out.as_bytes(), [finish, b"data: [DONE]\n\n"].concat());
        assert_eq!((trace.error_code, trace.invalid_stream_events), (None, 1));
        let (out, _) =
            forwarded(Protocol::ChatCompletions, false, &[finish, b"data: [DONE]"]).await;
        assert_eq!(out.as_bytes(), [finish, b"data: [DONE]\n\n"].concat());
    }

    /// A first event that is an error is classified by its code, else its type, else a
    /// numeric code: the caller's own mistakes are answers, not target failures.
    #[test]
    fn first_event_errors_are_classified_by_code_then_type() {
        let kind = |ev: &str| first_event_error(ev.as_bytes(), "p", StatusCode::OK);
        for (ev, want, code) in [
            (
                r#"{"error":{"type":"invalid_request_error","code":"context_length_exceeded","message":"too long"}}"#,
                FailKind::Answer,
                ErrorCode::BadRequest,
            ),
            (
                r#"{"error":{"type":"BadRequestError","code":400,"message":"bad"}}"#,
                FailKind::Answer,
                ErrorCode::BadRequest,
            ),
            (
                r#"{"error":{"type":"server_error","code":429}}"#,
                FailKind::Transient,
                ErrorCode::RateLimit,
            ),
            (
                r#"{"error":{"code":"content_filter","message":"no"}}"#,
                FailKind::Answer,
                ErrorCode::ContentPolicy,
            ),
            (
                r#"{"error":{"type":"overloaded_error"}}"#,
                FailKind::Transient,
                ErrorCode::Overloaded,
            ),
            (
                r#"{"error":{"type":"server_error","code":"boom"}}"#,
                FailKind::Target,
                ErrorCode::Upstream,
            ),
        ] {
            let f = kind(&format!("data: {ev}\n\n"));
            assert_eq!((f.kind, f.error.code), (want, code), "{ev}");
        }
    }

    #[test]
    fn relayed_upstream_messages_never_carry_a_key() {
        let msg = "API key not valid for https://x.googleapis.com/v1/m:generate?alt=sse&key=AIzaSECRET. Also sk-house-123456 and the caller's ck-abcdef; monkey=fine".to_string();
        assert_eq!(
            scrub_keys(msg, &[Some("sk-house-123456"), Some("ck-abcdef"), None]),
            "API key not valid for https://x.googleapis.com/v1/m:generate?alt=sse&key=***. Also *** and the caller's ***; monkey=fine"
        );
    }

    #[test]
    fn retry_after_of_any_size_never_panics() {
        let mut h = HeaderMap::new();
        for (v, want) in [
            ("2", Some(Duration::from_secs(2))),
            ("0.5", Some(Duration::from_millis(500))),
            ("1e20", Some(Duration::MAX)),
            ("18446744073709551615", Some(Duration::MAX)),
            ("-3", None),
            ("soon", None),
        ] {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(v));
            assert_eq!(retry_after_of(&h), want, "{v}");
        }
    }

    #[test]
    fn an_answers_usage_and_model_are_read_without_being_fooled_by_content() {
        let body = br#"{"id":"x","model":"gpt-4o-2024","choices":[{"message":{"content":"say \"usage\": {} and \"model\": \"no\""}}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":1}}}"#;
        let mut record = TraceRecord {
            unread_answer: Some((
                Bytes::from_static(body),
                crate::model::Price {
                    input: Some(1.0),
                    output: Some(2.0),
                    cached_input: None,
                },
            )),
            ..Default::default()
        };
        record.settle();
        let usage = record.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens()
            ),
            (3, 5, 1)
        );
        assert!(record.cost_usd.is_some_and(|c| c > 0.0));
        assert_eq!(answer_model(body).as_deref(), Some("gpt-4o-2024"));
        assert_eq!(answer_model(b"not json"), None);
        for (answer, model) in [
            (&br#"{"model" :  "a\u0042c\"d"}"#[..], Some("aBc\"d")),
            (br#"{"model":"plain","x":"y"}"#, Some("plain")),
            (br#"{"model":5}"#, None),
            (br#"{"model":"cut"#, None),
        ] {
            assert_eq!(answer_model(answer).as_deref(), model);
        }
        assert_eq!(crate::sse::last_usage(b"not json"), None);
        assert_eq!(crate::sse::last_usage(br#"{"usage": null}"#), None);
    }
}
