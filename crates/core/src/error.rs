//! The one error type a caller can see, and the table of stable codes.
//!
//! Every error leaving the gateway is OpenAI-shaped:
//! `{"error":{"message","type","param","code"}}` plus the `x-signalbox-error-code` header.

use http::StatusCode;
use serde::Serialize;

/// Stable error codes (SPEC section 7). The status of each is fixed here and only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Auth,
    Forbidden,
    BadRequest,
    WrongEndpoint,
    ModelNotFound,
    RateLimit,
    Overloaded,
    ContentPolicy,
    Timeout,
    Upstream,
    StreamInterrupted,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Auth => "auth",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::WrongEndpoint => "wrong_endpoint",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::RateLimit => "rate_limit",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::ContentPolicy => "content_policy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Upstream => "upstream",
            ErrorCode::StreamInterrupted => "stream_interrupted",
            ErrorCode::Internal => "internal",
        }
    }

    /// The default status of each code. Some codes allow a more precise status
    /// (413/415/422 for `bad_request`, 5xx for `upstream`), set on the error itself.
    pub fn default_status(self) -> StatusCode {
        match self {
            ErrorCode::Auth => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::WrongEndpoint => StatusCode::BAD_REQUEST,
            ErrorCode::ModelNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RateLimit => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ContentPolicy => StatusCode::BAD_REQUEST,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Upstream => StatusCode::BAD_GATEWAY,
            ErrorCode::StreamInterrupted => StatusCode::BAD_GATEWAY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI `type` field, so SDKs classify the error as they would OpenAI's own.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorCode::Auth => "authentication_error",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::BadRequest | ErrorCode::WrongEndpoint | ErrorCode::ContentPolicy => {
                "invalid_request_error"
            }
            ErrorCode::ModelNotFound => "invalid_request_error",
            ErrorCode::RateLimit => "rate_limit_error",
            ErrorCode::Overloaded => "overloaded_error",
            ErrorCode::Timeout => "timeout_error",
            ErrorCode::Upstream | ErrorCode::StreamInterrupted => "upstream_error",
            ErrorCode::Internal => "server_error",
        }
    }
}

/// An error as the caller sees it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?} ({status}): {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// Provider id of the upstream that produced the final failure.
    pub upstream_provider: Option<String>,
    /// Set once the gateway has spent its retry and fallback plan.
    pub plan_spent: bool,
    /// The upstream's own id for the request that failed, when it sent one.
    pub upstream_request_id: Option<Box<http::HeaderValue>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status: code.default_status(),
            message: message.into(),
            param: None,
            retry_after: None,
            upstream_provider: None,
            plan_spent: false,
            upstream_request_id: None,
        }
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Auth, message)
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal gateway error")
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> bytes::Bytes {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            param: Option<&'a str>,
            code: &'static str,
        }
        let env = Envelope {
            error: Inner {
                message: &self.message,
                kind: self.code.openai_type(),
                param: self.param.as_deref(),
                code: self.code.as_str(),
            },
        };
        // Serialising plain strings cannot fail.
        bytes::Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
    }

    /// The same error as a Responses API `error` event: the documented flat fields
    /// (`code`, `message`, `param`, `sequence_number`) plus the nested `error` object, so
    /// every client raises it.
    pub fn responses_error_event(&self, sequence_number: u64) -> bytes::Bytes {
        let inner = serde_json::json!({
            "type": self.code.openai_type(),
            "code": self.code.as_str(),
            "message": self.message,
            "param": self.param,
        });
        let ev = serde_json::json!({
            "type": "error",
            "sequence_number": sequence_number,
            "code": self.code.as_str(),
            "message": self.message,
            "param": self.param,
            "error": inner,
        });
        bytes::Bytes::from(format!("event: error\ndata: {ev}\n\n"))
    }

    /// The same error as one SSE event, for failures after a stream has started.
    pub fn sse_event(&self) -> bytes::Bytes {
        let body = self.body();
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        bytes::Bytes::from(out)
    }
}
