//! The `openai` kind: OpenAI and any OpenAI-compatible API. Bodies pass through as they are.

use super::{FORWARDED_REQUEST_HEADERS, Outbound, TransportError, UpstreamResponse};
use crate::model::{AuthType, TargetAuth};
use futures_util::TryStreamExt;
use http::HeaderValue;

const USER_AGENT: &str = concat!("signalbox/", env!("CARGO_PKG_VERSION"));

pub(super) async fn send(out: Outbound<'_>) -> Result<UpstreamResponse, TransportError> {
    let t = out.target;
    let p = &t.provider;
    let url = p.url(out.path).map_err(TransportError::Connect)?;
    let mut rb = t
        .transport
        .client
        .post(url)
        .header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        )
        .header(
            http::header::ACCEPT,
            if out.stream {
                HeaderValue::from_static("text/event-stream")
            } else {
                HeaderValue::from_static("application/json")
            },
        )
        .header(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    for name in &FORWARDED_REQUEST_HEADERS {
        if let Some(v) = out.inbound.get(name) {
            rb = rb.header(name.clone(), v.clone());
        }
    }
    if !p.headers.is_empty() {
        // Static provider headers replace same-named ones rather than doubling them.
        rb = rb.headers(p.headers.clone());
    }
    let key = match &t.auth {
        TargetAuth::Credential(s) => Some(s.expose()),
        TargetAuth::Caller => out.caller_key,
        TargetAuth::None => None,
    };
    if let Some(key) = key {
        match p.auth_type {
            AuthType::Bearer => {
                let mut v = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
                    TransportError::Connect("the credential is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                rb = rb.header(p.auth_header_name.clone(), v);
            }
            AuthType::ApiKeyHeader => {
                let mut v = HeaderValue::try_from(key).map_err(|_| {
                    TransportError::Connect("the credential is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                rb = rb.header(p.auth_header_name.clone(), v);
            }
            AuthType::QueryParam => {
                rb = rb.query(&[(p.auth_header_name.as_str(), key)]);
            }
        }
    }
    let resp = rb.body(out.body).send().await.map_err(classify)?;
    // Take the head apart instead of cloning its headers.
    let (parts, body) = http::Response::from(resp).into_parts();
    let (status, headers) = (parts.status, parts.headers);
    let body = http_body_util::BodyDataStream::new(body)
        .map_err(|e| TransportError::Reset(e.without_url().to_string()));
    Ok(UpstreamResponse {
        status,
        headers,
        body: Box::pin(body),
    })
}

fn classify(e: reqwest::Error) -> TransportError {
    let e = e.without_url();
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        chain.push_str(&s.to_string());
        chain.push(' ');
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        TransportError::Tls(short(&e))
    } else if e.is_connect() {
        TransportError::Connect(short(&e))
    } else {
        TransportError::Reset(short(&e))
    }
}

fn short(e: &reqwest::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(s) => {
            let mut inner = s.to_string();
            if let Some(s2) = s.source() {
                inner = format!("{inner}: {s2}");
            }
            inner
        }
        None => e.to_string(),
    }
}
