//! Provider adapters. Only `providers/<kind>` knows a provider's wire format; everything
//! else sees OpenAI-shaped requests and responses.

mod anthropic;
mod chat;
pub mod gemini;
mod mock;
mod openai;
mod translate;
pub mod transport;

pub use transport::Transport;

use crate::model::{ProviderKind, Target};

/// What a translating adapter refuses among a variant's params (chat completions' names), as
/// its own request translation refuses them: checked when a config loads, so a variant no
/// request of could ever be served is a config error, not a 400 on every request.
pub fn refused_params(
    kind: ProviderKind,
    provider: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), crate::error::ApiError> {
    if !matches!(kind, ProviderKind::Anthropic | ProviderKind::Gemini) || params.is_empty() {
        return Ok(());
    }
    let mut body = params.clone();
    body.insert("model".into(), "m".into());
    body.insert(
        "messages".into(),
        serde_json::json!([{"role": "user", "content": "x"}]),
    );
    let body = serde_json::to_vec(&body).unwrap_or_default();
    match kind {
        ProviderKind::Anthropic => anthropic::check_request(&body, provider),
        _ => gemini::check_request(&body, provider),
    }
}
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderName, StatusCode};
use std::pin::Pin;

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, TransportError>> + Send>>;

/// An upstream answer once its head has arrived; the body is read by the caller.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

/// Network-level failures. Messages never contain a URL (a key may sit in its query).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("could not connect to the provider: {0}")]
    Connect(String),
    /// The connect timeout passed before a connection was made.
    #[error("connecting to the provider timed out: {0}")]
    ConnectTimeout(String),
    #[error("TLS failure talking to the provider: {0}")]
    Tls(String),
    #[error("the connection to the provider failed: {0}")]
    Reset(String),
}

/// Why an attempt could not be made or answered.
#[derive(Debug)]
pub enum SendError {
    Transport(TransportError),
    /// The request cannot be translated for this provider (a parameter it cannot honour).
    Request(crate::error::ApiError),
}

impl From<TransportError> for SendError {
    fn from(e: TransportError) -> Self {
        SendError::Transport(e)
    }
}

impl From<crate::error::ApiError> for SendError {
    fn from(e: crate::error::ApiError) -> Self {
        SendError::Request(e)
    }
}

/// A request body as it goes upstream.
pub enum OutBody {
    /// JSON, built in memory (the `model` spliced in).
    Json(Bytes),
    /// A replayed multipart upload, streamed with its exact length.
    Multipart {
        content_type: String,
        len: u64,
        stream: crate::multipart::UploadStream,
    },
}

/// What one attempt sends.
pub struct Outbound<'a> {
    pub target: &'a Target,
    /// Path under the provider's base URL, e.g. `/chat/completions`.
    pub path: &'a str,
    pub body: OutBody,
    pub inbound: &'a HeaderMap,
    /// The caller's own provider key, for passthrough `caller_key` targets.
    pub caller_key: Option<&'a str>,
    pub stream: bool,
    /// The gateway's own `traceparent` for this attempt (OTLP export on); else the caller's
    /// passes through.
    pub traceparent: Option<http::HeaderValue>,
}

/// Request headers a caller may send upstream (SPEC section 2); everything else stays here.
pub const FORWARDED_REQUEST_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("accept-language"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    HeaderName::from_static("openai-beta"),
];

/// Response headers passed back to the caller besides the gateway's own.
pub const FORWARDED_RESPONSE_HEADERS: [HeaderName; 8] = [
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// (A function returning an `async move` block, not an `async fn`: see `PlainPool::send`.)
#[allow(clippy::manual_async_fn)] // see the comment above
pub fn send(out: Outbound<'_>) -> impl Future<Output = Result<UpstreamResponse, SendError>> {
    async move {
        match out.target.provider.kind {
            // Azure OpenAI speaks OpenAI's format; only its URLs and auth header differ, and
            // those are set when the config loads.
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi => {
                Ok(openai::post(out, HeaderMap::new()).await?)
            }
            // Boxed: their translation states are larger than the OpenAI path's, and every
            // future above this one (up to the request's own) is as large as its largest state.
            ProviderKind::Anthropic => Box::pin(anthropic::send(out)).await,
            ProviderKind::Gemini => Box::pin(gemini::send(out)).await,
            ProviderKind::Mock => Ok(mock::send(out).await?),
        }
    }
}
