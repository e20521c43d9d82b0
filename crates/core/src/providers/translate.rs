//! The machinery every translating adapter shares: turning an upstream's answer (whole or
//! streamed) into OpenAI's, incrementally, with malformed input ending the stream cleanly.

use super::{BodyStream, TransportError, UpstreamResponse};
use crate::sse::SseFramer;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// An upstream event stream translated event by event into OpenAI chunk events.
pub(crate) trait StreamTranslator: Send + 'static {
    /// One upstream SSE event (`event:` name if any, joined `data:`); append OpenAI events
    /// to `out`. An error ends the stream as interrupted.
    fn event(
        &mut self,
        name: Option<&str>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed>;
    /// The upstream ended its stream; append what completes ours (nothing if the upstream
    /// stopped early, so the gateway reports the stream as interrupted).
    fn end(&mut self, out: &mut Vec<u8>);
}

/// An upstream event the translator could not read.
#[derive(Debug)]
pub(crate) struct Malformed(pub String);

/// The largest upstream event a translator reads (tool arguments arrive in pieces; text
/// deltas are small).
const MAX_EVENT: usize = 8 * 1024 * 1024;

/// The event name and joined data of one SSE event; `None` data for comments.
fn split_event(event: &[u8]) -> (Option<&str>, Option<std::borrow::Cow<'_, [u8]>>) {
    let mut name = None;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"event:") {
            name = std::str::from_utf8(rest.strip_prefix(b" ").unwrap_or(rest)).ok();
        }
    }
    (name, crate::sse::event_data(event))
}

struct State<T> {
    body: BodyStream,
    framer: SseFramer,
    tr: T,
    ended: bool,
}

/// Translate an SSE body. Upstream comments (keep-alives) pass on as comments, so the
/// caller's idle clock sees them.
pub(crate) fn stream<T: StreamTranslator>(body: BodyStream, tr: T) -> BodyStream {
    let st = State {
        body,
        framer: SseFramer::new(),
        tr,
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        if st.ended {
            return None;
        }
        loop {
            let mut out = Vec::new();
            match st.body.next().await {
                Some(Err(e)) => {
                    st.ended = true;
                    return Some((Err(e), st));
                }
                Some(Ok(chunk)) => {
                    if let Some((block, ends)) = st.framer.push(&chunk)
                        && let Err(m) = feed(&mut st.tr, &block, &ends, &mut out)
                    {
                        st.ended = true;
                        return Some((Err(malformed(m)), st));
                    }
                    if st.framer.pending().len() > MAX_EVENT {
                        st.ended = true;
                        return Some((Err(malformed(Malformed("an event too large".into()))), st));
                    }
                }
                None => {
                    st.ended = true;
                    let rest = st.framer.take_pending();
                    if !rest.trim_ascii().is_empty() {
                        let mut ev = rest.to_vec();
                        ev.extend_from_slice(b"\n\n");
                        if let Err(m) = feed(&mut st.tr, &ev, &[ev.len()], &mut out) {
                            return Some((Err(malformed(m)), st));
                        }
                    }
                    st.tr.end(&mut out);
                    if out.is_empty() {
                        return None;
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), st));
            }
            if st.ended {
                return None;
            }
        }
    }))
}

fn feed<T: StreamTranslator>(
    tr: &mut T,
    block: &[u8],
    ends: &[usize],
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    let mut start = 0;
    for &end in ends {
        let ev = &block[start..end];
        start = end;
        match split_event(ev) {
            (name, Some(data)) => tr.event(name, &data, out)?,
            (Some(name), None) => tr.event(Some(name), b"", out)?,
            (None, None) => {
                if ev.trim_ascii_start().starts_with(b":") {
                    out.extend_from_slice(b": keep-alive\n\n");
                }
            }
        }
    }
    Ok(())
}

fn malformed(m: Malformed) -> TransportError {
    TransportError::Reset(format!("the provider sent a malformed stream: {}", m.0))
}

/// Read a whole (non-streamed) upstream body, up to `limit` bytes.
pub(crate) async fn collect(
    body: &mut BodyStream,
    limit: usize,
) -> Result<Vec<u8>, TransportError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(TransportError::Reset(format!(
                "the provider sent an answer larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A translated answer: the upstream's head with our body and content type.
pub(crate) fn answer(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Vec<u8>,
    sse: bool,
) -> UpstreamResponse {
    fix_head(&mut headers, sse);
    UpstreamResponse {
        status,
        headers,
        body: Box::pin(futures_util::stream::once(
            async move { Ok(Bytes::from(body)) },
        )),
    }
}

/// A translated stream: the upstream's head with our content type.
pub(crate) fn streamed(
    status: StatusCode,
    mut headers: HeaderMap,
    body: BodyStream,
) -> UpstreamResponse {
    fix_head(&mut headers, true);
    UpstreamResponse {
        status,
        headers,
        body,
    }
}

/// Framing headers described the upstream's body, not ours; the upstream's request id
/// header (named differently by each provider) becomes `x-request-id`.
fn fix_head(headers: &mut HeaderMap, sse: bool) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if sse {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    if let Some(id) = headers.remove("request-id") {
        headers.insert("x-request-id", id);
    }
}

/// A 502 for an answer the gateway could not read.
pub(crate) fn unreadable(pid: &str, headers: HeaderMap) -> UpstreamResponse {
    let body = error_body(
        &format!("provider '{pid}' sent an answer the gateway could not read"),
        "upstream_error",
        None,
    );
    answer(StatusCode::BAD_GATEWAY, headers, body, false)
}

/// An OpenAI-shaped error body for an upstream error, keeping its message and type.
pub(crate) fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    }))
    .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Run a translator over an upstream transcript cut into `piece`-byte chunks; returns
    /// what the caller would receive, or the error that ended it.
    pub fn run<T: StreamTranslator>(
        tr: T,
        transcript: &[u8],
        piece: usize,
    ) -> (String, Option<String>) {
        let chunks: Vec<Result<Bytes, TransportError>> = transcript
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body: BodyStream = Box::pin(futures_util::stream::iter(chunks));
        let mut s = stream(body, tr);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = String::new();
            while let Some(r) = s.next().await {
                match r {
                    Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
                    Err(e) => return (out, Some(e.to_string())),
                }
            }
            (out, None)
        })
    }

    /// The JSON data of each `data:` event of an OpenAI stream (not `[DONE]`).
    pub fn chunks(sse: &str) -> Vec<serde_json::Value> {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// The text and tool calls a client reassembles from an OpenAI stream.
    pub fn reassemble(sse: &str) -> (String, Vec<(String, String, String)>, Option<String>) {
        let mut text = String::new();
        let mut tools: Vec<(String, String, String)> = Vec::new();
        let mut finish = None;
        for c in chunks(sse) {
            let Some(ch) = c["choices"].as_array().and_then(|a| a.first()) else {
                continue;
            };
            if let Some(t) = ch["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if let Some(calls) = ch["delta"]["tool_calls"].as_array() {
                for call in calls {
                    let i = call["index"].as_u64().unwrap() as usize;
                    if i == tools.len() {
                        tools.push(Default::default());
                    }
                    if let Some(id) = call["id"].as_str() {
                        tools[i].0 = id.into();
                    }
                    if let Some(n) = call["function"]["name"].as_str() {
                        tools[i].1 = n.into();
                    }
                    if let Some(a) = call["function"]["arguments"].as_str() {
                        tools[i].2.push_str(a);
                    }
                }
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
        (text, tools, finish)
    }
}
