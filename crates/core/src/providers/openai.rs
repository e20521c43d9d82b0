//! The `openai` kind: OpenAI and any OpenAI-compatible API. Bodies pass through as they are.
//! Its HTTP sending is shared by the translating adapters.

use super::transport::{PlainError, Transport, chain};
use super::{FORWARDED_REQUEST_HEADERS, OutBody, Outbound, TransportError, UpstreamResponse};
use crate::model::{AuthType, ProviderKind, TargetAuth};
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, header};

const USER_AGENT: &str = concat!("signalbox/", env!("CARGO_PKG_VERSION"));

/// The upstream request head: allow-listed caller headers, the provider's static headers,
/// then the credential (so nothing can override it).
fn request_headers(
    out: &Outbound<'_>,
    extra: HeaderMap,
) -> Result<(HeaderMap, Option<(String, String)>), TransportError> {
    let t = out.target;
    let p = &t.provider;
    // The usual request (a JSON body, no adapter headers, the gateway's own credential in a
    // header or none) starts from the target's prebuilt head: one clone instead of a dozen
    // inserts. The caller's headers the head already names are left out, as the general
    // path below overwrites them (static headers and the credential win).
    if matches!(out.body, OutBody::Json(_))
        && extra.is_empty()
        && (t.credential_header.is_some() || matches!(t.auth, TargetAuth::None))
    {
        let heads = t
            .request_head
            .get_or_init(|| [false, true].map(|stream| prebuilt_head(t, stream)));
        let head = &heads[usize::from(out.stream)];
        let mut h = head.clone();
        forward_caller_headers(out, &mut h, |name| head.contains_key(name));
        if let Some(tp) = &out.traceparent
            && !head.contains_key(crate::headers::TRACEPARENT)
        {
            h.insert(crate::headers::TRACEPARENT, tp.clone());
        }
        return Ok((h, None));
    }
    let mut h = base_headers(p, &out.body, out.stream);
    forward_caller_headers(out, &mut h, |_| false);
    if let Some(tp) = &out.traceparent {
        h.insert(crate::headers::TRACEPARENT, tp.clone());
    }
    let mut last = None;
    for (name, value) in extra {
        if let Some(name) = name {
            h.remove(&name);
            last = Some(name);
        }
        if let Some(name) = &last {
            h.append(name.clone(), value);
        }
    }
    if static_and_credential(t, &mut h) {
        return Ok((h, None));
    }
    let key = match &t.auth {
        TargetAuth::Credential(s) => Some(s.expose()),
        TargetAuth::Caller => out.caller_key,
        TargetAuth::None => None,
    };
    let bad = || TransportError::Connect("the credential is not a valid header value".into());
    let mut query = None;
    if let Some(key) = key {
        match p.auth_type {
            AuthType::Bearer => {
                let mut v = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| bad())?;
                v.set_sensitive(true);
                h.insert(p.auth_header_name.clone(), v);
            }
            AuthType::ApiKeyHeader => {
                let mut v = HeaderValue::try_from(key).map_err(|_| bad())?;
                v.set_sensitive(true);
                h.insert(p.auth_header_name.clone(), v);
            }
            AuthType::QueryParam => {
                query = Some((p.auth_header_name.as_str().to_string(), key.to_string()))
            }
        }
    }
    Ok((h, query))
}

/// What every request to `t` with a JSON body starts with: [`base_headers`], the provider's
/// static headers and the credential header (when the credential goes in one).
fn prebuilt_head(t: &crate::model::Target, stream: bool) -> HeaderMap {
    let p = &t.provider;
    let mut h = base_headers(p, &OutBody::Json(bytes::Bytes::new()), stream);
    static_and_credential(t, &mut h);
    h
}

/// The provider's static headers over what `h` has, then the prebuilt credential header (so
/// nothing overrides it); `true` when the credential went in that header.
fn static_and_credential(t: &crate::model::Target, h: &mut HeaderMap) -> bool {
    let p = &t.provider;
    for (name, value) in &p.headers {
        h.insert(name.clone(), value.clone());
    }
    if let Some(v) = &t.credential_header {
        h.insert(p.auth_header_name.clone(), v.clone());
        return true;
    }
    false
}

/// `Host` (when the provider needs one set), content type, user agent, accept, encoding.
fn base_headers(p: &crate::model::Provider, body: &OutBody, stream: bool) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(12);
    if let Some(host) = &p.host_header {
        h.insert(header::HOST, host.clone());
    }
    match body {
        OutBody::Json(_) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        OutBody::Multipart {
            content_type, len, ..
        } => {
            if let Ok(v) = HeaderValue::from_str(content_type) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(*len));
        }
    }
    h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static(if stream {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    h
}

/// The caller's allow-listed headers, appended to `h` unless `skip` says otherwise, in one
/// pass over them (a handful: cheaper than a lookup per allowed name). `openai-*` headers go
/// to OpenAI's API only (Anthropic and Gemini adapters post here too), and the trace
/// context only when its `traceparent` is valid.
fn forward_caller_headers(
    out: &Outbound<'_>,
    h: &mut HeaderMap,
    skip: impl Fn(&http::HeaderName) -> bool,
) {
    let openai = matches!(
        out.target.provider.kind,
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi
    );
    let mut trace_context = None;
    for (name, v) in out.inbound {
        if !FORWARDED_REQUEST_HEADERS.contains(name) || skip(name) {
            continue;
        }
        let n = name.as_str();
        if n == "traceparent" || n == "tracestate" {
            let valid = *trace_context.get_or_insert_with(|| {
                out.inbound
                    .get(crate::headers::TRACEPARENT)
                    .is_some_and(|tp| crate::headers::valid_traceparent(tp.as_bytes()))
            });
            if !valid {
                continue;
            }
        } else if !openai && n.starts_with("openai-") {
            continue;
        }
        h.append(name.clone(), v.clone());
    }
}

/// POST a request in the provider's own format: `extra` headers (an adapter's own, such as
/// `anthropic-version`) go after the caller's allow-listed ones and before the provider's
/// static headers and the credential.
/// (A function returning an `async move` block, not an `async fn`: see `PlainPool::send`.)
#[allow(clippy::manual_async_fn)] // see the comment above
pub(super) fn post(
    out: Outbound<'_>,
    extra: HeaderMap,
) -> impl Future<Output = Result<UpstreamResponse, TransportError>> {
    async move {
        let t = out.target;
        let (headers, query) = request_headers(&out, extra)?;
        match &t.transport {
            Transport::Plain(pool) => {
                let req = hyper_request(t, out.path, &query, headers, out.body)?;
                let resp = pool.send(req).await.map_err(|e| match e {
                    PlainError::Connect(text) => TransportError::Connect(text),
                    PlainError::ConnectTimeout(text) => TransportError::ConnectTimeout(text),
                    PlainError::Send(e) => classify(&e, false),
                })?;
                Ok(upstream_response(resp))
            }
            Transport::Direct(client) => {
                let req = hyper_request(t, out.path, &query, headers, out.body)?;
                let resp = client.request(req).await.map_err(classify_direct)?;
                Ok(upstream_response(resp))
            }
            Transport::Proxied(client) => {
                let mut rb = client
                    .post(t.url(out.path).map_err(TransportError::Connect)?)
                    .headers(headers);
                if let Some((name, key)) = &query {
                    rb = rb.query(&[(name.as_str(), key.as_str())]);
                }
                let body = match out.body {
                    OutBody::Json(b) => reqwest::Body::from(b),
                    OutBody::Multipart { stream, .. } => reqwest::Body::wrap_stream(stream),
                };
                let resp = rb.body(body).send().await.map_err(classify_reqwest)?;
                // Take the head apart instead of cloning its headers.
                let (parts, body) = http::Response::from(resp).into_parts();
                let body = http_body_util::BodyDataStream::new(body)
                    .map_err(|e| TransportError::Reset(e.without_url().to_string()));
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: Box::pin(body),
                })
            }
        }
    }
}

fn is_tls(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
}

/// The POST for a hyper client: the target's URL (with the key in the query for
/// `query_param` auth), the body, the headers.
fn hyper_request(
    t: &crate::model::Target,
    path: &str,
    query: &Option<(String, String)>,
    headers: HeaderMap,
    body: OutBody,
) -> Result<http::Request<super::transport::OutgoingBody>, TransportError> {
    let uri = match query {
        None => t.uri(path).map_err(TransportError::Connect)?,
        Some((name, key)) => {
            let mut url = t.url(path).map_err(TransportError::Connect)?;
            url.query_pairs_mut().append_pair(name, key);
            url.as_str()
                .parse()
                .map_err(|_| TransportError::Connect("invalid upstream URL".into()))?
        }
    };
    let mut req = http::Request::new(outgoing(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// A hyper answer as the adapters read it.
fn upstream_response<B>(resp: http::Response<B>) -> UpstreamResponse
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let (parts, body) = resp.into_parts();
    let body =
        http_body_util::BodyDataStream::new(body).map_err(|e| TransportError::Reset(e.to_string()));
    UpstreamResponse {
        status: parts.status,
        headers: parts.headers,
        body: Box::pin(body),
    }
}

/// A request body for hyper.
fn outgoing(body: OutBody) -> super::transport::OutgoingBody {
    use http_body_util::BodyExt;
    match body {
        OutBody::Json(b) => http_body_util::Full::new(b)
            .map_err(|never| match never {})
            .boxed_unsync(),
        OutBody::Multipart { stream, .. } => {
            http_body_util::StreamBody::new(stream.map_ok(hyper::body::Frame::data)).boxed_unsync()
        }
    }
}

/// TLS failures are target failures; other connect errors and resets are transient.
fn classify(e: &(dyn std::error::Error + 'static), is_connect: bool) -> TransportError {
    let text = chain(e);
    if is_tls(&text) {
        TransportError::Tls(text)
    } else if is_connect && super::transport::timed_out(e) {
        TransportError::ConnectTimeout(text)
    } else if is_connect {
        TransportError::Connect(text)
    } else {
        TransportError::Reset(text)
    }
}

fn classify_direct(e: hyper_util::client::legacy::Error) -> TransportError {
    classify(&e, e.is_connect())
}

fn classify_reqwest(e: reqwest::Error) -> TransportError {
    let e = e.without_url();
    if e.is_connect() && e.is_timeout() {
        return TransportError::ConnectTimeout(chain(&e));
    }
    classify(&e, e.is_connect())
}
