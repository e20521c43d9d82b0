//! Admin API errors: the same OpenAI-shaped envelope as the data plane, with field paths in
//! `param` and, for a rejected config, every problem in `details`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use signalbox_store::StoreError;

#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub details: Vec<(String, String)>,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
            param: None,
            details: Vec::new(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 | 412 => "conflict_error",
            429 => "rate_limit_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AdminError::not_found(m),
            StoreError::Conflict(m) => AdminError::conflict(m),
            StoreError::Stale(m) => {
                AdminError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m)
            }
            StoreError::Invalid(m) => AdminError::bad_request(m),
            StoreError::Refused(m) => AdminError::forbidden(m),
            StoreError::Rejected(errs) => {
                let details: Vec<(String, String)> = errs
                    .0
                    .iter()
                    .map(|e| {
                        let mut m = e.message.clone();
                        if let (Some(f), Some(l)) = (&e.file, e.line) {
                            m = format!("{m} ({f}:{l})");
                        }
                        (e.key.clone(), m)
                    })
                    .collect();
                let message = details
                    .iter()
                    .map(|(k, m)| {
                        if k.is_empty() {
                            m.clone()
                        } else {
                            format!("{k}: {m}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                AdminError {
                    status: StatusCode::BAD_REQUEST,
                    code: "invalid_config",
                    message: format!("the change was not applied: {message}"),
                    param: details
                        .first()
                        .map(|d| d.0.clone())
                        .filter(|k| !k.is_empty()),
                    details,
                }
            }
            StoreError::MasterKey(m) => {
                tracing::error!("store: {m}");
                AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m)
            }
            StoreError::Db(e) => {
                tracing::error!("store: {e}");
                AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; nothing was changed. The gateway keeps serving its last good config.",
                )
            }
            other => {
                tracing::error!("store: {other}");
                AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut inner = serde_json::json!({
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        });
        if !self.details.is_empty() {
            inner["details"] = self
                .details
                .iter()
                .map(|(k, m)| serde_json::json!({"param": k, "message": m}))
                .collect();
        }
        let mut resp = (
            self.status,
            axum::Json(serde_json::json!({ "error": inner })),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(self.code) {
            resp.headers_mut().insert("x-signalbox-error-code", v);
        }
        resp
    }
}
