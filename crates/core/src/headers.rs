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

/// Whether a `traceparent` value is one W3C Trace Context allows to propagate:
/// `VERSION-TRACEID-PARENTID-FLAGS`, lowercase hex of 2, 32, 16 and 2 digits, version not
/// `ff`, ids not all zeros (a later version may append `-...`). An invalid one is neither sent
/// upstream (with its `tracestate`) nor echoed.
pub fn valid_traceparent(v: &[u8]) -> bool {
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |s: &[u8]| s.iter().all(|&b| b == b'0');
    if v.len() < 55 || (v.len() > 55 && (v[..2] == *b"00" || v[55] != b'-')) {
        return false;
    }
    let (version, trace, parent, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    v[2] == b'-'
        && v[35] == b'-'
        && v[52] == b'-'
        && hex(version)
        && version != b"ff"
        && hex(trace)
        && !zeros(trace)
        && hex(parent)
        && !zeros(parent)
        && hex(flags)
}

#[cfg(test)]
mod tests {
    use super::valid_traceparent;

    #[test]
    fn names_in_response_headers_are_plain_ascii() {
        let v = crate::model::header_value("weird model/\u{e9}?#%\n");
        assert_eq!(v.to_str().unwrap(), "weird model/%C3%A9?#%25%0A");
        assert_eq!(
            crate::model::header_value("gpt-4o").to_str().unwrap(),
            "gpt-4o"
        );
    }

    #[test]
    fn traceparent_validity_follows_w3c_trace_context() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid_traceparent(ok.as_bytes()));
        assert!(valid_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"
        ));
        for bad in [
            "garbage-value",
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(!valid_traceparent(bad.as_bytes()), "{bad}");
        }
    }
}
