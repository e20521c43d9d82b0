//! A fake LLM upstream for Signalbox's tests and benchmarks: one server that
//! speaks the OpenAI, Anthropic and Gemini wire formats, chosen by path.
//!
//! - **OpenAI** (`/v1/...`): `POST /v1/chat/completions` (plain and SSE
//!   streaming, with tool calls), `POST /v1/embeddings`, `GET /v1/models[/{id}]`,
//!   `POST /v1/responses` (plain and SSE streaming with named events),
//!   `POST /v1/audio/speech` (binary audio: mp3, opus, aac, flac, wav, pcm),
//!   `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`
//!   (`multipart/form-data` in; json, text, srt, vtt or verbose_json out),
//!   `POST /v1/images/generations`, and Azure OpenAI's
//!   `/openai/deployments/{deployment}/...?api-version=...` paths.
//! - **Anthropic** (`POST /v1/messages`, base URL [`FakeHandle::base_url`]):
//!   the Messages API, plain and streamed (`message_start`, `ping`,
//!   `content_block_*`, `message_delta`, `message_stop`), with tool use,
//!   request validation, Anthropic error bodies and a `request-id` header.
//! - **Gemini** (`/v1beta/...`, base URL [`FakeHandle::gemini_base_url`]):
//!   `models/{model}:generateContent`, `:streamGenerateContent` (SSE with
//!   `?alt=sse`, else a streamed JSON array), `:countTokens` and
//!   `GET models[/{id}]`, with function calls, safety blocks and google.rpc
//!   error bodies.
//!
//! Every format answers by the same rules: a fixed [`FakeUpstream::reply`] or
//! `"fake reply to: <last user text>"`; one call of the first declared (or
//! forced) tool when the request has tools and ends with the user; `"fake
//! reply to tool result: <result>"` when it ends with tool results; the reply
//! cut at the request's stop sequences and to its max tokens (in words).
//! Prompt tokens are the prompt's characters / 4 (rounded up, at least 1),
//! completion tokens its words, plus any [`FakeUpstream::cache_tokens`].
//!
//! The fake can be told to misbehave in the ways real providers do, in each
//! provider's own shape: error statuses, rate limits, connections reset
//! without a response, hung requests, streams that are cut, stall, end
//! without their last event or end with an error event.
//!
//! ```no_run
//! # async fn demo() {
//! use fake_upstream::{Behaviour, FakeUpstream};
//! let up = FakeUpstream::openai()
//!     .reply("hello there")
//!     .fail_first(1, 503)
//!     .then(Behaviour::CutAfter(2))
//!     .start()
//!     .await;
//! let base = up.base_url(); // "http://127.0.0.1:PORT/v1" (OpenAI, Anthropic)
//! let gemini = up.gemini_base_url(); // "http://127.0.0.1:PORT/v1beta"
//! # let _ = (base, gemini);
//! # }
//! ```
//!
//! Behaviours are consumed one per request, in arrival order, whatever the
//! path; once the queue is empty every request gets the `always` behaviour
//! (default [`Behaviour::Ok`]).

mod anthropic;
mod audio;
mod body;
mod gemini;
mod handler;
mod images;
mod media;
mod multipart;
mod reply;
mod responses;
mod util;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use body::FakeBody;

/// What the fake does with one request.
///
/// Stream-shaping variants (`SlowFirstEvent`, `CutAfter`, `StallAfter`,
/// `EndWithoutDone`, `ErrorEventAfter`) count "events" as SSE `data:` events,
/// the first being the `role` chunk (the tool call's first chunk when the
/// reply is a tool call). On non-streaming responses
/// `SlowFirstEvent` sends the headers at once and the body after the delay,
/// `CutAfter`/`StallAfter` send the headers and the first half of the body
/// before aborting/stalling, and `EndWithoutDone`/`ErrorEventAfter` behave
/// like `Ok`.
///
/// On a streamed Responses API request the events are the named SSE events
/// (`response.created` first); `EndWithoutDone` stops after
/// `response.output_item.done`, without `response.completed`, and
/// `ErrorEventAfter` sends an `event: error`. On `/v1/audio/speech` the
/// events are the body frames of the audio (see [`FakeUpstream::chunks`]),
/// and `EndWithoutDone`/`ErrorEventAfter` behave like `Ok`.
///
/// On an Anthropic stream the events are `message_start` (1), `ping` (2),
/// `content_block_start`, the deltas, `content_block_stop`, `message_delta`
/// and `message_stop`; `EndWithoutDone` leaves out `message_stop`, and
/// `ErrorEventAfter` sends `event: error` with an `overloaded_error`. On a
/// Gemini stream each `GenerateContentResponse` is an event (an SSE `data:`
/// event, or an element of the JSON array without `alt=sse`);
/// `EndWithoutDone` leaves out the last one, which carries the finish reason
/// and the full usage, and `ErrorEventAfter` ends with
/// `{"error":{"code":500,...,"status":"INTERNAL"}}`. `Status` answers with
/// each provider's own error body for the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer normally.
    #[default]
    Ok,
    /// Answer with this status. `body: None` => the error the path's provider sends
    /// for the status (OpenAI, Anthropic or Google shape).
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    /// Close the connection without any response.
    Reset,
    /// Accept the request and never send headers (until the client goes away).
    Hang,
    /// Stream: headers at once, first event after the delay. Non-stream: body after the delay.
    SlowFirstEvent(Duration),
    /// Stream: K events then abort the connection mid-body (no finish_reason, no `[DONE]`).
    CutAfter(usize),
    /// Stream: K events then nothing more, connection kept open.
    StallAfter(usize),
    /// Stream: every event including the finish_reason (and usage) chunk, but no `[DONE]`
    /// (Anthropic: no `message_stop`; Gemini: no final event).
    EndWithoutDone,
    /// Stream: K events then `data: {"error":{...}}` (Anthropic: `event: error`) then a clean end.
    ErrorEventAfter(usize),
}

impl Behaviour {
    /// `Status` with no `retry-after` and the provider's default error body.
    pub fn status(code: u16) -> Self {
        Behaviour::Status {
            status: code,
            retry_after: None,
            body: None,
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

impl RecordedRequest {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The parts of a `multipart/form-data` body (empty if it is not one).
    fn multipart_parts(&self) -> Vec<multipart::Part<'_>> {
        multipart::parse(self.header("content-type"), &self.body).unwrap_or_default()
    }

    /// The value (lossy UTF-8) of the first `multipart/form-data` part named
    /// `name`; `None` if the body is not multipart or has no such part.
    pub fn multipart_field(&self, name: &str) -> Option<String> {
        self.multipart_parts()
            .iter()
            .find(|p| p.name == name)
            .map(multipart::Part::text)
    }

    /// The values of every `multipart/form-data` part named `name`, in order
    /// (e.g. `timestamp_granularities[]`).
    pub fn multipart_fields(&self, name: &str) -> Vec<String> {
        self.multipart_parts()
            .iter()
            .filter(|p| p.name == name)
            .map(multipart::Part::text)
            .collect()
    }

    /// Length in bytes of the uploaded `file` part of a `multipart/form-data` body.
    pub fn multipart_file_len(&self) -> Option<usize> {
        self.multipart_parts()
            .iter()
            .find(|p| p.name == "file")
            .map(|p| p.data.len())
    }

    /// The `filename` of the uploaded `file` part of a `multipart/form-data` body.
    pub fn multipart_file_name(&self) -> Option<String> {
        self.multipart_parts()
            .into_iter()
            .find(|p| p.name == "file")
            .and_then(|p| p.filename)
    }

    /// The bytes of the uploaded `file` part (a slice of [`RecordedRequest::body`]).
    pub fn multipart_file(&self) -> Option<Bytes> {
        self.multipart_parts()
            .iter()
            .find(|p| p.name == "file")
            .map(|p| self.body.slice_ref(p.data))
    }
}

/// Builder for a fake upstream (every API on one server, see the crate docs).
#[derive(Clone, Debug)]
pub struct FakeUpstream {
    reply: Option<String>,
    models: Vec<String>,
    chunks: usize,
    chunk_delay: Duration,
    latency: Duration,
    api_key: Option<String>,
    cache_read: u64,
    cache_write: u64,
    usage_on_finish: bool,
    queue: VecDeque<Behaviour>,
    always: Behaviour,
    record: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for FakeUpstream {
    fn default() -> Self {
        Self::openai()
    }
}

impl FakeUpstream {
    /// A fake with default settings (it serves the Anthropic and Gemini paths too).
    pub fn openai() -> Self {
        Self {
            reply: None,
            models: vec!["gpt-4o".to_owned(), "gpt-4o-mini".to_owned()],
            chunks: 4,
            chunk_delay: Duration::ZERO,
            latency: Duration::ZERO,
            api_key: None,
            cache_read: 0,
            cache_write: 0,
            usage_on_finish: false,
            queue: VecDeque::new(),
            always: Behaviour::Ok,
            record: true,
            tls: None,
        }
    }

    /// A fixed reply text for chat completions, the Responses API, Anthropic
    /// messages and Gemini. Default: `"fake reply to: <last user message>"`
    /// (the message cut to 256 characters), or `"fake reply"` without one.
    /// Tool calls and replies to tool results ignore it. Transcriptions always say
    /// `"fake transcript of <filename> (<n> bytes)"` (translations:
    /// `"fake translation of ..."`).
    pub fn reply(mut self, text: impl Into<String>) -> Self {
        self.reply = Some(text.into());
        self
    }

    /// Model ids listed by `GET /v1/models` (and as `models/<id>` by Gemini's
    /// `GET /v1beta/models`). Chat, messages, generateContent and embeddings accept any model.
    pub fn models(mut self, ids: &[&str]) -> Self {
        self.models = ids.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Number of content pieces in a stream (default 4; fewer if the reply
    /// has fewer characters; at least 1; at least 2 for a tool call's
    /// arguments, except Gemini's, which come whole), and of body frames of
    /// the audio from `/v1/audio/speech`.
    pub fn chunks(mut self, n: usize) -> Self {
        self.chunks = n.max(1);
        self
    }

    /// Delay between stream events and audio body frames (default 0).
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Delay before the response headers of every request (default 0).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    /// Require the key the way each API sends it: `Authorization: Bearer <key>`
    /// (or Azure's `api-key`) on OpenAI paths, else 401 `invalid_api_key`;
    /// `x-api-key` on `/v1/messages`, else 401 `authentication_error`; the
    /// `x-goog-api-key` header or the `key` query parameter on `/v1beta/...`,
    /// else 403 `PERMISSION_DENIED` without a key and 400 `INVALID_ARGUMENT`
    /// (`API_KEY_INVALID`) with a wrong one.
    pub fn require_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Prompt-cache tokens to report (default 0, 0): Anthropic's usage says
    /// `cache_read_input_tokens: read` and `cache_creation_input_tokens: write`
    /// beside the uncached `input_tokens`; Gemini's `cachedContentTokenCount:
    /// read` and OpenAI's `prompt_tokens_details.cached_tokens: read` (Responses
    /// API: `input_tokens_details.cached_tokens`) are included in their prompt
    /// counts, which are then the uncached count plus `read`.
    pub fn cache_tokens(mut self, read: u64, write: u64) -> Self {
        self.cache_read = read;
        self.cache_write = write;
        self
    }

    /// Streams asked for usage (`stream_options.include_usage`) carry it on the chunk with
    /// the `finish_reason` instead of a chunk of its own, as some OpenAI-compatible servers do.
    pub fn usage_on_finish_chunk(mut self, on: bool) -> Self {
        self.usage_on_finish = on;
        self
    }

    /// Enqueue a one-shot behaviour (consumed in order, one per request).
    pub fn then(mut self, b: Behaviour) -> Self {
        self.queue.push_back(b);
        self
    }

    /// `n` times `then(Behaviour::status(status))`.
    pub fn fail_first(mut self, n: usize, status: u16) -> Self {
        for _ in 0..n {
            self.queue.push_back(Behaviour::status(status));
        }
        self
    }

    /// `n` times a 429 `rate_limit_exceeded` with `retry-after: <secs>`.
    pub fn rate_limit_first(mut self, n: usize, retry_after_secs: u64) -> Self {
        for _ in 0..n {
            self.queue.push_back(Behaviour::Status {
                status: 429,
                retry_after: Some(retry_after_secs.to_string()),
                body: None,
            });
        }
        self
    }

    /// `n` times `then(Behaviour::Reset)`.
    pub fn reset_first(mut self, n: usize) -> Self {
        for _ in 0..n {
            self.queue.push_back(Behaviour::Reset);
        }
        self
    }

    /// Behaviour once the queue is empty (default [`Behaviour::Ok`]).
    pub fn always(mut self, b: Behaviour) -> Self {
        self.always = b;
        self
    }

    /// Serve HTTPS with this PEM certificate chain and private key (e.g. the bundled
    /// `tls/localhost.crt` and `tls/localhost.key`, see [`test_tls_identity`]).
    #[expect(
        clippy::expect_used,
        reason = "test support: a bad test identity should fail loudly"
    )]
    pub fn tls(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Self {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .expect("fake-upstream: TLS certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("fake-upstream: TLS key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("fake-upstream: TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("fake-upstream: TLS identity");
        self.tls = Some(Arc::new(config));
        self
    }

    /// Keep a copy of every request for [`FakeHandle::requests`] (default on).
    /// The standalone binary turns it off so long benchmarks don't grow memory.
    pub fn record_requests(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// Bind `127.0.0.1:0` and serve in a background tokio task.
    ///
    /// # Panics
    /// If no loopback port can be bound (this is a test helper).
    #[allow(clippy::expect_used)]
    pub async fn start(self) -> FakeHandle {
        self.start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("fake-upstream: bind 127.0.0.1:0")
    }

    /// Bind `addr` and serve in a background tokio task.
    pub async fn start_on(self, addr: SocketAddr) -> std::io::Result<FakeHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            addr,
            https: self.tls.is_some(),
            reply: self.reply,
            models: self.models,
            chunks: self.chunks.max(1),
            chunk_delay: self.chunk_delay,
            latency: self.latency,
            auth_header: self.api_key.as_ref().map(|k| format!("Bearer {k}")),
            api_key: self.api_key,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            usage_on_finish: self.usage_on_finish,
            record: self.record,
            behaviours: Mutex::new(Behaviours {
                queue: self.queue,
                always: self.always,
            }),
            requests: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            disconnects: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            connections: AtomicUsize::new(0),
            close_open: Mutex::new(CancellationToken::new()),
        });
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), tls));
        Ok(FakeHandle { shared })
    }
}

pub(crate) struct Behaviours {
    queue: VecDeque<Behaviour>,
    always: Behaviour,
}

/// State shared by the handle, the accept loop and every request.
pub(crate) struct Shared {
    addr: SocketAddr,
    https: bool,
    pub(crate) reply: Option<String>,
    pub(crate) models: Vec<String>,
    pub(crate) chunks: usize,
    pub(crate) chunk_delay: Duration,
    pub(crate) latency: Duration,
    /// The exact expected `authorization` value, if a key is required.
    pub(crate) auth_header: Option<String>,
    /// The key itself, if one is required.
    pub(crate) api_key: Option<String>,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
    pub(crate) usage_on_finish: bool,
    pub(crate) record: bool,
    behaviours: Mutex<Behaviours>,
    requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) hits: AtomicUsize,
    pub(crate) disconnects: AtomicUsize,
    pub(crate) completed: AtomicUsize,
    pub(crate) shutdown: CancellationToken,
    /// Connections accepted so far.
    connections: AtomicUsize,
    /// Cancelled (and replaced) to close the connections open at that moment.
    close_open: Mutex<CancellationToken>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn next_behaviour(&self) -> Behaviour {
        let mut b = lock(&self.behaviours);
        match b.queue.pop_front() {
            Some(x) => x,
            None => b.always.clone(),
        }
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        lock(&self.requests).push(req);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Typically EMFILE/ECONNABORTED: back off briefly and keep serving.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let builder = Arc::clone(&builder);
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        let close = lock(&shared.close_open).clone();
        tokio::spawn(async move {
            let token = shared.shutdown.clone();
            let svc = service_fn(move |req| handler::handle(Arc::clone(&shared), req));
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = token.cancelled() => {}
                        () = close.cancelled() => {}
                    }
                }
                Some(acceptor) => {
                    // A failed handshake (e.g. a client that does not trust us) just closes.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = token.cancelled() => {}
                        () = close.cancelled() => {}
                    }
                }
            }
        });
    }
}

/// Handle to a running fake. Cheap to clone.
#[derive(Clone)]
pub struct FakeHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHandle")
            .field("addr", &self.shared.addr)
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl FakeHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://HOST:PORT/v1` (an unspecified bind address is replaced by loopback):
    /// the base URL of the OpenAI and Anthropic APIs.
    pub fn base_url(&self) -> String {
        self.url_with("v1")
    }

    /// `http://HOST:PORT/v1beta`: the base URL of the Gemini API.
    pub fn gemini_base_url(&self) -> String {
        self.url_with("v1beta")
    }

    fn url_with(&self, version: &str) -> String {
        let mut addr = self.shared.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            });
        }
        if self.shared.https {
            // The bundled test certificate names `localhost`.
            format!("https://localhost:{}/{version}", addr.port())
        } else {
            format!("http://{addr}/{version}")
        }
    }

    /// Requests received (all paths, whatever their behaviour).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Recorded requests, in the order their bodies finished arriving.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Enqueue a one-shot behaviour.
    pub fn push(&self, b: Behaviour) {
        lock(&self.shared.behaviours).queue.push_back(b);
    }

    /// Behaviour once the queue is empty.
    pub fn set_always(&self, b: Behaviour) {
        lock(&self.shared.behaviours).always = b;
    }

    /// Responses (streams, stalls, hangs, latency waits) abandoned by the
    /// client before they finished.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Responses whose body was fully handed to the connection.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Wait until `disconnects() >= n`; false on timeout.
    pub async fn wait_disconnects(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.disconnects() >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop accepting and drop every open connection abruptly.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Connections accepted so far (keep-alive reuse shows as fewer connections than hits).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Close every connection open now, as a server does with idle keep-alive connections;
    /// later connections are served as usual.
    pub fn close_connections(&self) {
        let old = std::mem::replace(
            &mut *lock(&self.shared.close_open),
            CancellationToken::new(),
        );
        old.cancel();
    }
}

/// A self-signed certificate and key for `localhost` (valid until 2126), for HTTPS tests.
pub fn test_tls_identity() -> (&'static [u8], &'static [u8]) {
    (
        include_bytes!("../tls/localhost.crt"),
        include_bytes!("../tls/localhost.key"),
    )
}

/// Path of the bundled test certificate, to trust it through a CA bundle file.
pub fn test_tls_cert_path() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tls/localhost.crt")
}
