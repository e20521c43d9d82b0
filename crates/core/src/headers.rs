//! Header names the gateway sets, parsed once.

use http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_ROUTE: HeaderName = HeaderName::from_static("x-signalbox-route");
pub const X_PROVIDER: HeaderName = HeaderName::from_static("x-signalbox-provider");
pub const X_MODEL: HeaderName = HeaderName::from_static("x-signalbox-model");
pub const X_ATTEMPTS: HeaderName = HeaderName::from_static("x-signalbox-attempts");
pub const X_VARIANT: HeaderName = HeaderName::from_static("x-signalbox-variant");
pub const X_GATEWAY_VARIANT: HeaderName = HeaderName::from_static("x-gateway-variant");
pub const X_UPSTREAM_REQUEST_ID: HeaderName =
    HeaderName::from_static("x-signalbox-upstream-request-id");
pub const X_ERROR_CODE: HeaderName = HeaderName::from_static("x-signalbox-error-code");
pub const X_UPSTREAM_PROVIDER: HeaderName =
    HeaderName::from_static("x-signalbox-upstream-provider");
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

// Request headers the gateway reads, by name: `app::Inbound` matches them in one pass over
// the caller's headers.
pub const X_SIGNALBOX_AUTHORIZATION: &str = "x-signalbox-authorization";
pub const X_TO11_AUTHORIZATION: &str = "x-to11-authorization";
pub const X_SIGNALBOX_PROJECT_ID: &str = "x-signalbox-project-id";
pub const X_TO11_PROJECT_ID: &str = "x-to11-project-id";
pub const X_API_KEY: &str = "x-api-key";
pub const X_USER_ID: &str = "x-signalbox-user-id";
pub const X_SESSION_ID: &str = "x-signalbox-session-id";
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
